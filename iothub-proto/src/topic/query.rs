//! The query rules of the topic grammar, shared by both directions: for a
//! server that reads device→hub topics (`iothub-hub`'s parser) with the
//! rules this crate reads hub→device topics with.

use super::TopicError;

/// Splits `{segment}/?{query}` (or `{segment}?{query}` when the rest
/// holds no `/`): the segment, and the query if there is one.
#[must_use]
pub fn split(rest: &str) -> (&str, Option<&str>) {
    segment_and_query(rest)
}

/// Looks `keys` up in a `&`-separated query in one pass: a pair without
/// `=` has an empty value, other keys are ignored, a key given twice is
/// [`TopicError::DuplicateParameter`] (`retry-after` aside: matched in
/// any case, the first one counts).
pub fn params<'a, const N: usize>(
    query: &'a str,
    keys: [&'static str; N],
) -> Result<[Option<&'a str>; N], TopicError> {
    query_params(query, keys)
}

/// Whether `s` is one or more ASCII digits.
#[must_use]
pub fn is_digits(s: &str) -> bool {
    all_digits(s)
}

/// A hub status: ASCII digits fitting a `u16`
/// ([`TopicError::InvalidStatus`] otherwise).
pub fn status(s: &str) -> Result<u16, TopicError> {
    parse_status(s)
}

/// Splits `{segment}/?{query}`: the segment runs to the first `/`, and the
/// query follows it after `?`. Without any `/`, a `?` ends the segment
/// instead (`200?$rid=1`, `Reboot?$rid=1`: shapes some SDKs' test data use).
pub(super) fn segment_and_query(rest: &str) -> (&str, Option<&str>) {
    match rest.split_once('/') {
        Some((segment, tail)) => (segment, tail.strip_prefix('?')),
        None => match rest.split_once('?') {
            Some((segment, query)) => (segment, Some(query)),
            None => (rest, None),
        },
    }
}

/// `true` for one or more ASCII digits.
pub(super) fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

pub(super) fn parse_status(s: &str) -> Result<u16, TopicError> {
    if !all_digits(s) {
        return Err(TopicError::InvalidStatus);
    }
    s.parse().map_err(|_| TopicError::InvalidStatus)
}

/// The name of the DPS retry delay parameter; matched in any letter case
/// (some service paths send `Retry-After`), and the first one wins.
pub(super) const RETRY_AFTER: &str = "retry-after";

/// Looks `keys` up in a `&`-separated query in one pass. A pair without `=`
/// has an empty value; other keys are ignored. Errors when a key appears
/// twice ([`RETRY_AFTER`] aside: advice, the first one counts).
pub(super) fn query_params<'a, const N: usize>(
    query: &'a str,
    keys: [&'static str; N],
) -> Result<[Option<&'a str>; N], TopicError> {
    let mut found = [None; N];
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let hit = found.iter_mut().zip(keys).find(|(_, k)| {
            *k == name || (*k == RETRY_AFTER && name.eq_ignore_ascii_case(RETRY_AFTER))
        });
        if let Some((slot, key)) = hit {
            if slot.is_some() {
                if key == RETRY_AFTER {
                    continue;
                }
                return Err(TopicError::DuplicateParameter(key));
            }
            *slot = Some(value);
        }
    }
    Ok(found)
}
