//! Errors: [`DecodeError`] (the peer sent bytes that are not MQTT 3.1.1) and
//! [`BuildError`] (the caller asked for a packet that cannot be encoded).

use core::convert::Infallible;
use core::fmt;

use super::types::PacketType;

/// The bytes received are not a valid MQTT 3.1.1 packet.
///
/// The specification requires the receiver to close the network connection
/// on any of these (MQTT 3.1.1 §4.8, [MQTT-4.8.0-1]); a server that receives
/// [`DecodeError::UnsupportedProtocolLevel`] first answers CONNACK with
/// return code 0x01 ([MQTT-3.1.2-2]).
///
/// References in brackets are the normative statements of the OASIS MQTT
/// 3.1.1 specification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DecodeError {
    /// The packet type (upper four bits of the first byte) is the reserved
    /// value 0 or 15 (§2.2.1).
    InvalidPacketType(u8),
    /// The flag bits (lower four bits of the first byte) are not the ones
    /// the specification fixes for this packet type: 0b0010 for PUBREL,
    /// SUBSCRIBE and UNSUBSCRIBE, 0 for the others except PUBLISH
    /// ([MQTT-2.2.2-1], [MQTT-2.2.2-2]).
    InvalidHeaderFlags {
        /// The packet type.
        packet_type: PacketType,
        /// The flag bits received.
        flags: u8,
    },
    /// The remaining length uses more than four bytes (§2.2.3).
    MalformedRemainingLength,
    /// The whole packet (fixed header included) is larger than the
    /// configured maximum. Reported as soon as the fixed header is complete,
    /// before the body is buffered.
    PacketTooLarge {
        /// The size the fixed header announces, in bytes, fixed header
        /// included (saturated at `usize::MAX`).
        size: usize,
        /// The configured maximum.
        max: usize,
    },
    /// A packet whose size the specification fixes (CONNACK, PUBACK,
    /// PUBREC, PUBREL, PUBCOMP, UNSUBACK: 2; PINGREQ, PINGRESP, DISCONNECT:
    /// 0) announces another remaining length.
    UnexpectedRemainingLength {
        /// The packet type.
        packet_type: PacketType,
        /// The remaining length this packet type must have.
        expected: usize,
        /// The remaining length received.
        actual: usize,
    },
    /// The packet's fields run past the end given by its remaining length.
    RemainingLengthTooShort(PacketType),
    /// Bytes are left over after the packet's last field (the remaining
    /// length is larger than the fields).
    TrailingBytes(PacketType),
    /// PUBLISH with both QoS bits set (QoS 3) ([MQTT-3.3.1-4]).
    InvalidPublishQos,
    /// PUBLISH with the DUP flag set and QoS 0 ([MQTT-3.3.1-2]).
    DupWithQos0,
    /// A string is not well-formed UTF-8 ([MQTT-1.5.3-1]).
    InvalidUtf8,
    /// A string contains the null character U+0000 ([MQTT-1.5.3-2]).
    NullCharacter,
    /// A topic name (PUBLISH, will topic) is empty ([MQTT-4.7.3-1]).
    EmptyTopicName,
    /// A topic name (PUBLISH, will topic) contains `+` or `#`
    /// ([MQTT-3.3.2-2], [MQTT-4.7.1-1]).
    WildcardInTopicName,
    /// A topic filter (SUBSCRIBE, UNSUBSCRIBE) is empty ([MQTT-4.7.3-1]).
    EmptyTopicFilter,
    /// A topic filter has `#` somewhere else than alone in the last level
    /// ([MQTT-4.7.1-2]).
    InvalidMultiLevelWildcard,
    /// A topic filter has `+` in a level with other characters
    /// ([MQTT-4.7.1-3]).
    InvalidSingleLevelWildcard,
    /// A packet identifier is 0 ([MQTT-2.3.1-1]).
    ZeroPacketId,
    /// CONNECT whose protocol name is not `"MQTT"` ([MQTT-3.1.2-1]).
    InvalidProtocolName,
    /// CONNECT with the protocol name `"MQTT"` but a protocol level other
    /// than 4. A server answers CONNACK 0x01 (unacceptable protocol version)
    /// and closes the connection ([MQTT-3.1.2-2]).
    UnsupportedProtocolLevel(u8),
    /// CONNECT with the reserved flag bit 0 set ([MQTT-3.1.2-3]).
    ConnectReservedFlag,
    /// CONNECT without the will flag but with will QoS or will retain set
    /// ([MQTT-3.1.2-11], [MQTT-3.1.2-13], [MQTT-3.1.2-15]).
    WillFlagsWithoutWill,
    /// CONNECT with will QoS 3 ([MQTT-3.1.2-14]).
    InvalidWillQos,
    /// CONNECT with the password flag but without the user name flag
    /// ([MQTT-3.1.2-22]).
    PasswordWithoutUsername,
    /// CONNACK whose acknowledge flags have a reserved bit (7–1) set
    /// (§3.2.2.1).
    InvalidConnackFlags(u8),
    /// CONNACK with a reserved return code (6–255) (§3.2.2.3).
    InvalidConnectReturnCode(u8),
    /// CONNACK with session present set and a non-zero return code
    /// ([MQTT-3.2.2-4]).
    SessionPresentWithRefusal,
    /// SUBSCRIBE or UNSUBSCRIBE without any topic filter ([MQTT-3.8.3-3],
    /// [MQTT-3.10.3-2]).
    NoTopicFilters(PacketType),
    /// SUBSCRIBE whose requested-QoS byte has a reserved bit (7–2) set or
    /// asks for QoS 3 ([MQTT-3.8.3-4]). Holds the byte received.
    InvalidRequestedQos(u8),
    /// SUBACK without any return code (it answers a SUBSCRIBE, which has at
    /// least one filter) (§3.9.3).
    NoReturnCodes,
    /// SUBACK with a return code other than 0x00, 0x01, 0x02 and 0x80
    /// ([MQTT-3.9.3-2]).
    InvalidSubackReturnCode(u8),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DecodeError::InvalidPacketType(t) => write!(f, "reserved packet type {t}"),
            DecodeError::InvalidHeaderFlags { packet_type, flags } => write!(
                f,
                "{packet_type} with invalid fixed header flags {flags:#06b}"
            ),
            DecodeError::MalformedRemainingLength => {
                f.write_str("remaining length encoded on more than four bytes")
            }
            DecodeError::PacketTooLarge { size, max } => write!(
                f,
                "packet of {size} bytes exceeds the maximum packet size of {max} bytes"
            ),
            DecodeError::UnexpectedRemainingLength {
                packet_type,
                expected,
                actual,
            } => write!(
                f,
                "{packet_type} with remaining length {actual}, expected {expected}"
            ),
            DecodeError::RemainingLengthTooShort(t) => {
                write!(f, "{t} fields run past its remaining length")
            }
            DecodeError::TrailingBytes(t) => {
                write!(f, "{t} has bytes after its last field")
            }
            DecodeError::InvalidPublishQos => f.write_str("PUBLISH with QoS 3"),
            DecodeError::DupWithQos0 => f.write_str("PUBLISH with DUP set and QoS 0"),
            DecodeError::InvalidUtf8 => f.write_str("string is not valid UTF-8"),
            DecodeError::NullCharacter => f.write_str("string contains U+0000"),
            DecodeError::EmptyTopicName => f.write_str("empty topic name"),
            DecodeError::WildcardInTopicName => f.write_str("wildcard in topic name"),
            DecodeError::EmptyTopicFilter => f.write_str("empty topic filter"),
            DecodeError::InvalidMultiLevelWildcard => {
                f.write_str("topic filter with '#' not alone in its last level")
            }
            DecodeError::InvalidSingleLevelWildcard => {
                f.write_str("topic filter with '+' not alone in its level")
            }
            DecodeError::ZeroPacketId => f.write_str("packet identifier 0"),
            DecodeError::InvalidProtocolName => f.write_str("CONNECT protocol name is not MQTT"),
            DecodeError::UnsupportedProtocolLevel(l) => {
                write!(
                    f,
                    "CONNECT protocol level {l}, only 4 (MQTT 3.1.1) is supported"
                )
            }
            DecodeError::ConnectReservedFlag => f.write_str("CONNECT reserved flag set"),
            DecodeError::WillFlagsWithoutWill => {
                f.write_str("CONNECT will QoS or will retain set without will flag")
            }
            DecodeError::InvalidWillQos => f.write_str("CONNECT will QoS 3"),
            DecodeError::PasswordWithoutUsername => {
                f.write_str("CONNECT password flag set without user name flag")
            }
            DecodeError::InvalidConnackFlags(b) => {
                write!(f, "CONNACK reserved acknowledge flags set: {b:#04x}")
            }
            DecodeError::InvalidConnectReturnCode(c) => {
                write!(f, "CONNACK reserved return code {c}")
            }
            DecodeError::SessionPresentWithRefusal => {
                f.write_str("CONNACK session present with a non-zero return code")
            }
            DecodeError::NoTopicFilters(t) => write!(f, "{t} without topic filters"),
            DecodeError::InvalidRequestedQos(b) => {
                write!(f, "SUBSCRIBE invalid requested QoS byte {b:#04x}")
            }
            DecodeError::NoReturnCodes => f.write_str("SUBACK without return codes"),
            DecodeError::InvalidSubackReturnCode(c) => {
                write!(f, "SUBACK invalid return code {c:#04x}")
            }
        }
    }
}

impl core::error::Error for DecodeError {}

/// A packet cannot be built from these values: encoding it would break the
/// MQTT 3.1.1 rules or its size limits. Returned by the constructors, so that
/// encoding a built packet never fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BuildError {
    /// A string is longer than 65,535 bytes (§1.5.3).
    StringTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// Binary data (password, will message) is longer than 65,535 bytes
    /// (§1.5.3, §3.1.3.4).
    BinaryTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// Bytes given as a string are not valid UTF-8.
    InvalidUtf8,
    /// A string contains the null character U+0000 ([MQTT-1.5.3-2]).
    NullCharacter,
    /// A topic name is empty ([MQTT-4.7.3-1]).
    EmptyTopicName,
    /// A topic name contains `+` or `#` ([MQTT-4.7.1-1]).
    WildcardInTopicName,
    /// A topic filter is empty ([MQTT-4.7.3-1]).
    EmptyTopicFilter,
    /// A topic filter has `#` somewhere else than alone in the last level
    /// ([MQTT-4.7.1-2]).
    InvalidMultiLevelWildcard,
    /// A topic filter has `+` in a level with other characters
    /// ([MQTT-4.7.1-3]).
    InvalidSingleLevelWildcard,
    /// The packet's remaining length would exceed 268,435,455 bytes, the
    /// most four bytes can encode (§2.2.3).
    PacketTooLarge,
    /// SUBSCRIBE or UNSUBSCRIBE without any topic filter ([MQTT-3.8.3-3],
    /// [MQTT-3.10.3-2]).
    NoTopicFilters,
    /// SUBACK without any return code.
    NoReturnCodes,
    /// A password was given without a user name ([MQTT-3.1.2-22]).
    PasswordWithoutUsername,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BuildError::StringTooLong { len } => write!(
                f,
                "string of {len} bytes is longer than the MQTT maximum of 65535"
            ),
            BuildError::BinaryTooLong { len } => write!(
                f,
                "binary data of {len} bytes is longer than the MQTT maximum of 65535"
            ),
            BuildError::InvalidUtf8 => f.write_str("string is not valid UTF-8"),
            BuildError::NullCharacter => f.write_str("string contains U+0000"),
            BuildError::EmptyTopicName => f.write_str("empty topic name"),
            BuildError::WildcardInTopicName => f.write_str("wildcard in topic name"),
            BuildError::EmptyTopicFilter => f.write_str("empty topic filter"),
            BuildError::InvalidMultiLevelWildcard => {
                f.write_str("topic filter with '#' not alone in its last level")
            }
            BuildError::InvalidSingleLevelWildcard => {
                f.write_str("topic filter with '+' not alone in its level")
            }
            BuildError::PacketTooLarge => {
                f.write_str("packet remaining length would exceed 268435455 bytes")
            }
            BuildError::NoTopicFilters => f.write_str("no topic filters"),
            BuildError::NoReturnCodes => f.write_str("no SUBACK return codes"),
            BuildError::PasswordWithoutUsername => f.write_str("password without user name"),
        }
    }
}

impl core::error::Error for BuildError {}

impl From<Infallible> for BuildError {
    fn from(never: Infallible) -> Self {
        match never {}
    }
}

/// Why a string or topic is invalid; shared by the decoder and the
/// constructors, converted into [`DecodeError`] or [`BuildError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StrError {
    InvalidUtf8,
    Null,
    EmptyTopicName,
    WildcardInTopicName,
    EmptyTopicFilter,
    MultiLevelWildcard,
    SingleLevelWildcard,
}

impl From<StrError> for DecodeError {
    fn from(e: StrError) -> Self {
        match e {
            StrError::InvalidUtf8 => DecodeError::InvalidUtf8,
            StrError::Null => DecodeError::NullCharacter,
            StrError::EmptyTopicName => DecodeError::EmptyTopicName,
            StrError::WildcardInTopicName => DecodeError::WildcardInTopicName,
            StrError::EmptyTopicFilter => DecodeError::EmptyTopicFilter,
            StrError::MultiLevelWildcard => DecodeError::InvalidMultiLevelWildcard,
            StrError::SingleLevelWildcard => DecodeError::InvalidSingleLevelWildcard,
        }
    }
}

impl From<StrError> for BuildError {
    fn from(e: StrError) -> Self {
        match e {
            StrError::InvalidUtf8 => BuildError::InvalidUtf8,
            StrError::Null => BuildError::NullCharacter,
            StrError::EmptyTopicName => BuildError::EmptyTopicName,
            StrError::WildcardInTopicName => BuildError::WildcardInTopicName,
            StrError::EmptyTopicFilter => BuildError::EmptyTopicFilter,
            StrError::MultiLevelWildcard => BuildError::InvalidMultiLevelWildcard,
            StrError::SingleLevelWildcard => BuildError::InvalidSingleLevelWildcard,
        }
    }
}
