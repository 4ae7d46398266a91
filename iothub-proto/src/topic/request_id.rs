//! [`RequestId`]: a `$rid`, kept as it travels.

use alloc::borrow::Cow;
use alloc::string::{String, ToString};
use core::fmt;

use crate::properties::percent_encode_into;
use crate::text::url_decode;

/// A request id (`$rid`): an opaque value that correlates a request with
/// its response.
///
/// The seed document says a request id may be any valid property value,
/// so every `$rid` a peer sends is accepted, whatever its length or
/// characters, and kept **as it travels** in the topic (its wire form,
/// [`as_str`](Self::as_str)): an answer echoes it byte for byte, as the
/// Azure C, C#, Java and Node device SDKs do, so the peer finds exactly what
/// it sent. [`decoded`](Self::decoded) gives the value it percent-decodes
/// to (`+` stays a plus).
///
/// Ids this crate makes are decimal counters ([`RequestId::from`] a `u64`);
/// [`RequestId::new`] turns any other value into a wire form that every
/// peer reads back as that value.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(String);

impl RequestId {
    /// The request id for `value`, percent-encoded like a property bag
    /// value (RFC 3986 unreserved characters stay as they are, so numbers,
    /// UUIDs and hex strings are unchanged).
    pub fn new(value: &str) -> Self {
        let mut wire = String::with_capacity(value.len());
        percent_encode_into(value, &mut wire);
        Self(wire)
    }

    /// A request id as received in a topic's query: kept as is.
    pub fn from_wire(wire: impl Into<String>) -> Self {
        Self(wire.into())
    }

    /// The id as it travels in a topic (`$rid={this}`).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The value the id percent-decodes to; the wire form itself if that
    /// is not UTF-8.
    pub fn decoded(&self) -> Cow<'_, str> {
        url_decode(&self.0).unwrap_or(Cow::Borrowed(&self.0))
    }
}

impl From<u64> for RequestId {
    fn from(n: u64) -> Self {
        Self(n.to_string())
    }
}

/// [`RequestId::new`]: the value, percent-encoded as needed.
impl core::str::FromStr for RequestId {
    type Err = core::convert::Infallible;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Ok(Self::new(value))
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for RequestId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for RequestId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for RequestId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<RequestId> for str {
    fn eq(&self, other: &RequestId) -> bool {
        self == other.0
    }
}

impl PartialEq<RequestId> for &str {
    fn eq(&self, other: &RequestId) -> bool {
        *self == other.0
    }
}
