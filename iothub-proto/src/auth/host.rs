//! Validated host names (the hub's `HostName`, a gateway's `GatewayHostName`).

use alloc::string::String;
use core::fmt;

use crate::text::impl_str_newtype;

/// The longest host name accepted, in characters (the DNS limit).
pub const MAX_HOST_NAME_LEN: usize = 253;

/// The longest label (the text between two dots) of a host name.
const MAX_LABEL_LEN: usize = 63;

/// A host name that [`HostName::new`] refused.
///
/// Host names are not secret, so the offending character is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HostNameError {
    /// The host name is empty.
    Empty,
    /// The host name is longer than [`MAX_HOST_NAME_LEN`] bytes.
    TooLong {
        /// The length that was given, in bytes.
        len: usize,
    },
    /// A character other than an ASCII letter, digit, `-`, `_` or `.`.
    InvalidChar {
        /// The offending character.
        ch: char,
        /// Its byte offset in the host name.
        index: usize,
    },
    /// Two dots in a row, or a leading or trailing dot.
    EmptyLabel,
    /// A label (text between dots) longer than 63 characters.
    LabelTooLong,
}

impl fmt::Display for HostNameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("host name is empty"),
            Self::TooLong { len } => write!(
                f,
                "host name is {len} characters long; at most {MAX_HOST_NAME_LEN} are allowed"
            ),
            Self::InvalidChar { ch, index } => write!(
                f,
                "host name has the character {ch:?} at byte {index}; allowed are ASCII letters, digits, `-`, `_` and `.`"
            ),
            Self::EmptyLabel => f.write_str(
                "host name has an empty label (two dots in a row, or a leading or trailing dot)",
            ),
            Self::LabelTooLong => f.write_str("host name has a label longer than 63 characters"),
        }
    }
}

impl core::error::Error for HostNameError {}

/// A DNS host name or IPv4 address such as `contoso.azure-devices.net`,
/// `localhost` or `10.0.0.4`.
///
/// Accepted: 1 to 253 characters, dot-separated labels of 1 to 63 ASCII
/// letters, digits, `-` and `_` (lenient: `_` is not valid DNS but occurs
/// in private networks). No port, no scheme, no trailing dot, no IPv6
/// literal, no Unicode (use the punycode form).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostName(String);

impl HostName {
    /// Validates `host_name`.
    pub fn new(host_name: impl Into<String>) -> Result<Self, HostNameError> {
        let s = host_name.into();
        validate(&s)?;
        Ok(Self(s))
    }

    /// The host name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl HostName {
    /// A host name from a constant of this crate known to be valid
    /// (checked by a unit test), without the `Result`.
    pub(crate) fn from_trusted(s: &str) -> Self {
        debug_assert!(validate(s).is_ok(), "{s}");
        Self(String::from(s))
    }
}

fn validate(s: &str) -> Result<(), HostNameError> {
    if s.is_empty() {
        return Err(HostNameError::Empty);
    }
    if let Some((index, ch)) = s
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(HostNameError::InvalidChar { ch, index });
    }
    if s.len() > MAX_HOST_NAME_LEN {
        return Err(HostNameError::TooLong { len: s.len() });
    }
    for label in s.split('.') {
        if label.is_empty() {
            return Err(HostNameError::EmptyLabel);
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(HostNameError::LabelTooLong);
        }
    }
    Ok(())
}

impl_str_newtype!(HostName, HostNameError);

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn accepts_common_hosts() {
        for ok in [
            "contoso.azure-devices.net",
            "localhost",
            "127.0.0.1",
            "edge_gw.local",
            "global.azure-devices-provisioning.net",
        ] {
            assert_eq!(HostName::from_trusted(ok).as_str(), ok);
            assert_eq!(HostName::new(ok).unwrap().as_str(), ok);
        }
        let label = "a".repeat(63);
        let long = [label.as_str(); 4].join(".");
        assert_eq!(long.len(), 255);
        assert_eq!(
            HostName::new(long).unwrap_err(),
            HostNameError::TooLong { len: 255 }
        );
        assert!(HostName::new([label.as_str(); 3].join(".")).is_ok());
    }

    #[test]
    fn refuses_bad_hosts() {
        assert_eq!(HostName::new("").unwrap_err(), HostNameError::Empty);
        assert_eq!(
            HostName::new("h.net:8883").unwrap_err(),
            HostNameError::InvalidChar { ch: ':', index: 5 }
        );
        for bad in ["a/b", "a b", "é.net", "a;b", "[::1]"] {
            assert!(
                matches!(
                    HostName::new(bad).unwrap_err(),
                    HostNameError::InvalidChar { .. }
                ),
                "{bad}"
            );
        }
        for bad in [".a", "a.", "a..b", "."] {
            assert_eq!(HostName::new(bad).unwrap_err(), HostNameError::EmptyLabel);
        }
        assert_eq!(
            HostName::new("a".repeat(64)).unwrap_err(),
            HostNameError::LabelTooLong
        );
        assert!(HostNameError::EmptyLabel.to_string().contains("label"));
    }
}
