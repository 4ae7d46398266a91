//! Strings that share the packet's buffer: [`MqttStr`], [`TopicName`] and
//! [`TopicFilter`].

use alloc::string::String;
use core::fmt;

use bytes::Bytes;

use super::error::{BuildError, StrError};

/// The longest MQTT string or binary field, in bytes: its length is a
/// 16-bit prefix (§1.5.3).
pub const MAX_STRING_LEN: usize = 65_535;

/// Checks the UTF-8 rules of MQTT 3.1.1 §1.5.3: well-formed UTF-8
/// ([MQTT-1.5.3-1]) without U+0000 ([MQTT-1.5.3-2]). The length is checked
/// by the caller.
pub(crate) fn check_utf8(bytes: &[u8]) -> Result<(), StrError> {
    // U+0000 is the byte 0 in UTF-8 and byte 0 is never part of another
    // character, so a byte scan suffices.
    if bytes.contains(&0) {
        return Err(StrError::Null);
    }
    match core::str::from_utf8(bytes) {
        Ok(_) => Ok(()),
        Err(_) => Err(StrError::InvalidUtf8),
    }
}

/// The topic-name rules: non-empty ([MQTT-4.7.3-1]) and without wildcards
/// ([MQTT-4.7.1-1]). UTF-8 is checked separately.
pub(crate) fn check_topic_name(bytes: &[u8]) -> Result<(), StrError> {
    if bytes.is_empty() {
        return Err(StrError::EmptyTopicName);
    }
    if bytes.iter().any(|&b| b == b'+' || b == b'#') {
        return Err(StrError::WildcardInTopicName);
    }
    Ok(())
}

/// The topic-filter rules: non-empty ([MQTT-4.7.3-1]), `#` alone in the
/// last level ([MQTT-4.7.1-2]), `+` alone in its level ([MQTT-4.7.1-3]).
/// UTF-8 is checked separately.
pub(crate) fn check_topic_filter(bytes: &[u8]) -> Result<(), StrError> {
    if bytes.is_empty() {
        return Err(StrError::EmptyTopicFilter);
    }
    let mut levels = bytes.split(|&b| b == b'/').peekable();
    while let Some(level) = levels.next() {
        if level.contains(&b'#') {
            if level != b"#" || levels.peek().is_some() {
                return Err(StrError::MultiLevelWildcard);
            }
        } else if level.contains(&b'+') && level != b"+" {
            return Err(StrError::SingleLevelWildcard);
        }
    }
    Ok(())
}

fn check_len(len: usize) -> Result<(), BuildError> {
    if len > MAX_STRING_LEN {
        Err(BuildError::StringTooLong { len })
    } else {
        Ok(())
    }
}

/// A UTF-8 encoded string as MQTT 3.1.1 defines it (§1.5.3): well-formed
/// UTF-8, without U+0000, at most 65,535 bytes.
///
/// It is backed by [`Bytes`], so a decoded string shares the buffer it was
/// received in: decoding copies and allocates nothing. The invariant is
/// checked once, when the value is made; [`MqttStr::as_str`] re-runs the
/// (cheap, allocation-free) UTF-8 check instead of trusting it with
/// `unsafe` code.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MqttStr(Bytes);

impl MqttStr {
    /// Copies `s` after checking it (no U+0000, at most 65,535 bytes).
    pub fn new(s: &str) -> Result<MqttStr, BuildError> {
        check_len(s.len())?;
        check_utf8(s.as_bytes())?;
        Ok(MqttStr(Bytes::copy_from_slice(s.as_bytes())))
    }

    /// Wraps a static string without copying, after checking it.
    pub fn from_static(s: &'static str) -> Result<MqttStr, BuildError> {
        check_len(s.len())?;
        check_utf8(s.as_bytes())?;
        Ok(MqttStr(Bytes::from_static(s.as_bytes())))
    }

    /// Wraps `bytes` without copying, after checking it.
    pub fn from_bytes(bytes: Bytes) -> Result<MqttStr, BuildError> {
        check_len(bytes.len())?;
        check_utf8(&bytes)?;
        Ok(MqttStr(bytes))
    }

    /// Wraps bytes the caller has already checked (decoder).
    pub(crate) fn from_checked(bytes: Bytes) -> MqttStr {
        MqttStr(bytes)
    }

    /// The string. Re-validates the UTF-8 (linear, no allocation); if that
    /// ever failed, which the invariant rules out, it would return `""`.
    #[must_use]
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.0).unwrap_or("")
    }

    /// The UTF-8 bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The shared buffer holding the UTF-8 bytes.
    #[must_use]
    pub fn as_inner(&self) -> &Bytes {
        &self.0
    }

    /// The shared buffer holding the UTF-8 bytes.
    #[must_use]
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// The length in bytes (at most 65,535).
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the string is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for MqttStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for MqttStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<&str> for MqttStr {
    type Error = BuildError;
    fn try_from(s: &str) -> Result<Self, BuildError> {
        MqttStr::new(s)
    }
}

impl TryFrom<String> for MqttStr {
    type Error = BuildError;
    /// Takes over the string's buffer without copying.
    fn try_from(s: String) -> Result<Self, BuildError> {
        check_len(s.len())?;
        check_utf8(s.as_bytes())?;
        Ok(MqttStr(Bytes::from(s)))
    }
}

impl TryFrom<Bytes> for MqttStr {
    type Error = BuildError;
    fn try_from(bytes: Bytes) -> Result<Self, BuildError> {
        MqttStr::from_bytes(bytes)
    }
}

impl PartialEq<str> for MqttStr {
    fn eq(&self, other: &str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<&str> for MqttStr {
    fn eq(&self, other: &&str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

macro_rules! topic_type {
    ($(#[$doc:meta])* $name:ident, $check:path) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(MqttStr);

        impl $name {
            /// Copies `s` after checking it.
            pub fn new(s: &str) -> Result<$name, BuildError> {
                $check(s.as_bytes())?;
                MqttStr::new(s).map($name)
            }

            /// Wraps a static string without copying, after checking it.
            pub fn from_static(s: &'static str) -> Result<$name, BuildError> {
                $check(s.as_bytes())?;
                MqttStr::from_static(s).map($name)
            }

            /// Wraps `bytes` without copying, after checking it.
            pub fn from_bytes(bytes: Bytes) -> Result<$name, BuildError> {
                MqttStr::from_bytes(bytes).and_then($name::from_mqtt_str)
            }

            /// Checks an [`MqttStr`] against the topic rules.
            pub fn from_mqtt_str(s: MqttStr) -> Result<$name, BuildError> {
                $check(s.as_bytes())?;
                Ok($name(s))
            }

            /// Wraps bytes the decoder has already checked.
            pub(crate) fn from_checked(bytes: Bytes) -> $name {
                $name(MqttStr::from_checked(bytes))
            }

            /// The topic as a string (see [`MqttStr::as_str`]).
            #[must_use]
            pub fn as_str(&self) -> &str {
                self.0.as_str()
            }

            /// The topic as an [`MqttStr`].
            #[must_use]
            pub fn as_mqtt_str(&self) -> &MqttStr {
                &self.0
            }

            /// The topic as an [`MqttStr`].
            #[must_use]
            pub fn into_mqtt_str(self) -> MqttStr {
                self.0
            }

            /// The shared buffer holding the UTF-8 bytes.
            #[must_use]
            pub fn into_bytes(self) -> Bytes {
                self.0.into_bytes()
            }

            /// The length in bytes.
            pub(crate) fn byte_len(&self) -> usize {
                self.0.len()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = BuildError;
            fn try_from(s: &str) -> Result<Self, BuildError> {
                $name::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = BuildError;
            /// Takes over the string's buffer without copying.
            fn try_from(s: String) -> Result<Self, BuildError> {
                MqttStr::try_from(s).and_then($name::from_mqtt_str)
            }
        }

        impl TryFrom<&String> for $name {
            type Error = BuildError;
            fn try_from(s: &String) -> Result<Self, BuildError> {
                $name::new(s)
            }
        }

        impl TryFrom<Bytes> for $name {
            type Error = BuildError;
            fn try_from(bytes: Bytes) -> Result<Self, BuildError> {
                $name::from_bytes(bytes)
            }
        }

        impl TryFrom<MqttStr> for $name {
            type Error = BuildError;
            fn try_from(s: MqttStr) -> Result<Self, BuildError> {
                $name::from_mqtt_str(s)
            }
        }

        impl From<$name> for MqttStr {
            fn from(t: $name) -> MqttStr {
                t.0
            }
        }

        impl AsRef<MqttStr> for $name {
            fn as_ref(&self) -> &MqttStr {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == **other
            }
        }
    };
}

topic_type!(
    /// A topic name, the destination of a PUBLISH or of a will message:
    /// an [`MqttStr`] that is non-empty and has no wildcard (`+`, `#`)
    /// (MQTT 3.1.1 §4.7).
    TopicName,
    check_topic_name
);

topic_type!(
    /// A topic filter, what SUBSCRIBE and UNSUBSCRIBE name: an [`MqttStr`]
    /// that is non-empty, with `#` only alone in the last level and `+` only
    /// alone in a level (MQTT 3.1.1 §4.7).
    TopicFilter,
    check_topic_filter
);

impl TryFrom<&MqttStr> for MqttStr {
    type Error = BuildError;
    fn try_from(s: &MqttStr) -> Result<Self, BuildError> {
        Ok(s.clone())
    }
}

impl TryFrom<&String> for MqttStr {
    type Error = BuildError;
    fn try_from(s: &String) -> Result<Self, BuildError> {
        MqttStr::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn mqtt_str_rules() {
        assert_eq!(MqttStr::new("").map(|s| s.len()), Ok(0));
        assert_eq!(MqttStr::new("a\0b"), Err(BuildError::NullCharacter));
        assert_eq!(
            MqttStr::from_bytes(Bytes::from_static(&[0xC3, 0x28])),
            Err(BuildError::InvalidUtf8)
        );
        let long = "x".repeat(MAX_STRING_LEN + 1);
        assert_eq!(
            MqttStr::new(&long),
            Err(BuildError::StringTooLong { len: 65_536 })
        );
        assert!(MqttStr::new(&long[1..]).is_ok());
        let s = MqttStr::try_from("héllo".to_string()).unwrap();
        assert_eq!(s.as_str(), "héllo");
        assert_eq!(s, "héllo");
        assert_eq!(alloc::format!("{s:?}"), "\"héllo\"");
    }

    #[test]
    fn topic_name_rules() {
        assert!(TopicName::new("devices/d/messages/events/").is_ok());
        assert!(TopicName::new("/").is_ok());
        assert!(TopicName::new("$iothub/twin/res/200/?$rid=1").is_ok());
        assert_eq!(TopicName::new(""), Err(BuildError::EmptyTopicName));
        assert_eq!(TopicName::new("a/+"), Err(BuildError::WildcardInTopicName));
        assert_eq!(TopicName::new("a/#"), Err(BuildError::WildcardInTopicName));
        assert_eq!(TopicName::new("a\0"), Err(BuildError::NullCharacter));
    }

    #[test]
    fn topic_filter_rules() {
        for ok in [
            "#",
            "+",
            "/",
            "a/#",
            "+/+",
            "/+",
            "+/",
            "a//b",
            "$iothub/twin/res/#",
            "a/+/c/#",
        ] {
            assert!(TopicFilter::new(ok).is_ok(), "{ok}");
        }
        assert_eq!(TopicFilter::new(""), Err(BuildError::EmptyTopicFilter));
        for bad in ["a#", "#/a", "a/#/b", "a/b#", "##", "+#"] {
            assert_eq!(
                TopicFilter::new(bad),
                Err(BuildError::InvalidMultiLevelWildcard),
                "{bad}"
            );
        }
        for bad in ["a+", "+a", "a/b+/c", "++"] {
            assert_eq!(
                TopicFilter::new(bad),
                Err(BuildError::InvalidSingleLevelWildcard),
                "{bad}"
            );
        }
    }
}
