//! Text helpers shared by the layers: URL encoding (SAS tokens, usernames,
//! property bags, topics) and the trait impls of validated string newtypes.

use alloc::borrow::Cow;
use alloc::string::String;
use core::fmt::Write as _;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// Everything except the RFC 3986 unreserved set `A-Z a-z 0-9 - . _ ~`.
pub(crate) const NOT_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Appends `s` to `out`, URL-encoded (uppercase hex, unreserved kept).
pub(crate) fn push_url_encoded(out: &mut String, s: &str) {
    // Writing into a `String` never fails.
    let _ = write!(out, "{}", utf8_percent_encode(s, NOT_UNRESERVED));
}

/// `s` URL-encoded (uppercase hex, unreserved kept).
pub(crate) fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    push_url_encoded(&mut out, s);
    out
}

/// Decodes `%XX` escapes. A `%` not followed by two hex digits is kept as
/// is (lenient, like most URL parsers); `+` stays `+`. `None` when the
/// decoded bytes are not UTF-8.
pub(crate) fn url_decode(s: &str) -> Option<Cow<'_, str>> {
    percent_decode_str(s).decode_utf8().ok()
}

/// Implements `Debug`, `Display`, `AsRef<str>`, `FromStr` and
/// `TryFrom<&str>` for a newtype `$name(String)` with a validating
/// `fn new(impl Into<String>) -> Result<Self, $err>`.
macro_rules! impl_str_newtype {
    ($name:ident, $err:ty) => {
        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                core::fmt::Debug::fmt(&self.0, f)
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl core::str::FromStr for $name {
            type Err = $err;
            fn from_str(s: &str) -> Result<Self, $err> {
                Self::new(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = $err;
            fn try_from(s: &str) -> Result<Self, $err> {
                Self::new(s)
            }
        }
    };
}
pub(crate) use impl_str_newtype;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_everything_but_unreserved() {
        assert_eq!(url_encode("aZ09-._~"), "aZ09-._~");
        assert_eq!(
            url_encode("h.net/devices/d!*'();:@&=+$,/?#[]% é"),
            "h.net%2Fdevices%2Fd%21%2A%27%28%29%3B%3A%40%26%3D%2B%24%2C%2F%3F%23%5B%5D%25%20%C3%A9"
        );
    }

    #[test]
    fn decodes_lowercase_and_keeps_plus() {
        assert_eq!(url_decode("a%2fb%2Fc+d").unwrap(), "a/b/c+d");
        assert_eq!(url_decode("100%").unwrap(), "100%");
        assert_eq!(url_decode("%zz").unwrap(), "%zz");
        assert!(url_decode("%FF").is_none());
    }
}
