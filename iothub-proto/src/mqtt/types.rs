//! Small value types shared by the packets: packet ids, QoS, return codes.

use core::fmt;
use core::num::NonZeroU16;

/// A packet identifier: a non-zero 16-bit number (MQTT 3.1.1 §2.3.1).
///
/// Zero is not a valid packet id ([MQTT-2.3.1-1]), so it cannot be
/// represented. Use [`Pid::next`] to walk through ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pid(NonZeroU16);

impl Pid {
    /// The first packet id, 1.
    pub const MIN: Pid = Pid(NonZeroU16::MIN);

    /// The id `value`, or `None` for 0.
    #[must_use]
    pub const fn new(value: u16) -> Option<Pid> {
        match NonZeroU16::new(value) {
            Some(v) => Some(Pid(v)),
            None => None,
        }
    }

    /// The id as a number (never 0).
    #[must_use]
    pub const fn get(self) -> u16 {
        self.0.get()
    }

    /// The id that follows this one: `self + 1`, wrapping from 65535 to 1
    /// (0 is skipped).
    #[must_use]
    pub const fn next(self) -> Pid {
        match NonZeroU16::new(self.0.get().wrapping_add(1)) {
            Some(v) => Pid(v),
            None => Pid::MIN,
        }
    }
}

impl Default for Pid {
    /// [`Pid::MIN`].
    fn default() -> Self {
        Pid::MIN
    }
}

impl From<NonZeroU16> for Pid {
    fn from(value: NonZeroU16) -> Self {
        Pid(value)
    }
}

impl From<Pid> for NonZeroU16 {
    fn from(pid: Pid) -> Self {
        pid.0
    }
}

impl From<Pid> for u16 {
    fn from(pid: Pid) -> Self {
        pid.get()
    }
}

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// A quality-of-service level (MQTT 3.1.1 §4.3).
///
/// Ordered: `AtMostOnce < AtLeastOnce < ExactlyOnce`, so a server can grant
/// `requested.min(supported)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum QoS {
    /// QoS 0: fire and forget.
    AtMostOnce = 0,
    /// QoS 1: acknowledged by PUBACK, may be duplicated.
    AtLeastOnce = 1,
    /// QoS 2: four-way handshake (PUBREC, PUBREL, PUBCOMP). Azure IoT Hub
    /// does not support it.
    ExactlyOnce = 2,
}

impl QoS {
    /// The QoS for the number `value` (0, 1 or 2), or `None`.
    #[must_use]
    pub const fn from_u8(value: u8) -> Option<QoS> {
        match value {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }

    /// The QoS as a number (0, 1 or 2).
    #[must_use]
    pub const fn as_u8(self) -> u8 {
        self as u8
    }
}

impl fmt::Display for QoS {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QoS {}", self.as_u8())
    }
}

/// The QoS of a PUBLISH together with its packet id: QoS 0 has none, QoS 1
/// and 2 always have one ([MQTT-2.3.1-5]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QosPid {
    /// QoS 0, no packet id.
    AtMostOnce,
    /// QoS 1 with its packet id.
    AtLeastOnce(Pid),
    /// QoS 2 with its packet id.
    ExactlyOnce(Pid),
}

impl QosPid {
    /// The QoS level.
    #[must_use]
    pub const fn qos(self) -> QoS {
        match self {
            QosPid::AtMostOnce => QoS::AtMostOnce,
            QosPid::AtLeastOnce(_) => QoS::AtLeastOnce,
            QosPid::ExactlyOnce(_) => QoS::ExactlyOnce,
        }
    }

    /// The packet id, `None` for QoS 0.
    #[must_use]
    pub const fn pid(self) -> Option<Pid> {
        match self {
            QosPid::AtMostOnce => None,
            QosPid::AtLeastOnce(pid) | QosPid::ExactlyOnce(pid) => Some(pid),
        }
    }
}

/// The protocol a CONNECT announces. This codec speaks only MQTT 3.1.1
/// (protocol name `"MQTT"`, protocol level 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Protocol {
    /// MQTT 3.1.1.
    #[default]
    Mqtt311,
}

impl Protocol {
    /// The protocol name sent in CONNECT: `"MQTT"`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        "MQTT"
    }

    /// The protocol level sent in CONNECT: 4.
    #[must_use]
    pub const fn level(self) -> u8 {
        4
    }
}

/// The return code of a CONNACK (MQTT 3.1.1 §3.2.2.3). Values 6–255 are
/// reserved and rejected by the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ConnectReturnCode {
    /// 0x00: connection accepted.
    Accepted = 0,
    /// 0x01: the server does not support the protocol level requested.
    UnacceptableProtocolVersion = 1,
    /// 0x02: the client identifier is well-formed UTF-8 but not allowed.
    IdentifierRejected = 2,
    /// 0x03: the MQTT service is unavailable.
    ServerUnavailable = 3,
    /// 0x04: the user name or password is malformed (IoT Hub: bad SAS token).
    BadUserNameOrPassword = 4,
    /// 0x05: the client is not authorized to connect.
    NotAuthorized = 5,
}

impl ConnectReturnCode {
    /// The code for `value` (0 to 5), or `None` for a reserved value.
    #[must_use]
    pub const fn from_u8(value: u8) -> Option<ConnectReturnCode> {
        Some(match value {
            0 => ConnectReturnCode::Accepted,
            1 => ConnectReturnCode::UnacceptableProtocolVersion,
            2 => ConnectReturnCode::IdentifierRejected,
            3 => ConnectReturnCode::ServerUnavailable,
            4 => ConnectReturnCode::BadUserNameOrPassword,
            5 => ConnectReturnCode::NotAuthorized,
            _ => return None,
        })
    }

    /// The code as sent on the wire.
    #[must_use]
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// Whether this is [`ConnectReturnCode::Accepted`].
    #[must_use]
    pub const fn is_accepted(self) -> bool {
        matches!(self, ConnectReturnCode::Accepted)
    }
}

impl fmt::Display for ConnectReturnCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConnectReturnCode::Accepted => "connection accepted",
            ConnectReturnCode::UnacceptableProtocolVersion => {
                "connection refused: unacceptable protocol version"
            }
            ConnectReturnCode::IdentifierRejected => "connection refused: identifier rejected",
            ConnectReturnCode::ServerUnavailable => "connection refused: server unavailable",
            ConnectReturnCode::BadUserNameOrPassword => {
                "connection refused: bad user name or password"
            }
            ConnectReturnCode::NotAuthorized => "connection refused: not authorized",
        })
    }
}

/// One return code of a SUBACK (MQTT 3.1.1 §3.9.3): the QoS granted for the
/// matching filter of the SUBSCRIBE, or failure (0x80).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubscribeReturnCode {
    /// The subscription was accepted with this maximum QoS (0x00, 0x01, 0x02).
    Success(QoS),
    /// The subscription was refused (0x80).
    Failure,
}

impl SubscribeReturnCode {
    /// The code for `value` (0x00, 0x01, 0x02 or 0x80), or `None`.
    #[must_use]
    pub const fn from_u8(value: u8) -> Option<SubscribeReturnCode> {
        match value {
            0x80 => Some(SubscribeReturnCode::Failure),
            _ => match QoS::from_u8(value) {
                Some(qos) => Some(SubscribeReturnCode::Success(qos)),
                None => None,
            },
        }
    }

    /// The code as sent on the wire.
    #[must_use]
    pub const fn as_u8(self) -> u8 {
        match self {
            SubscribeReturnCode::Success(qos) => qos.as_u8(),
            SubscribeReturnCode::Failure => 0x80,
        }
    }
}

impl From<QoS> for SubscribeReturnCode {
    fn from(qos: QoS) -> Self {
        SubscribeReturnCode::Success(qos)
    }
}

/// The kind of an MQTT control packet: the upper four bits of its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PacketType {
    /// 1: client request to connect.
    Connect = 1,
    /// 2: connect acknowledgment.
    Connack = 2,
    /// 3: publish message.
    Publish = 3,
    /// 4: publish acknowledgment (QoS 1).
    Puback = 4,
    /// 5: publish received (QoS 2, part 1).
    Pubrec = 5,
    /// 6: publish release (QoS 2, part 2).
    Pubrel = 6,
    /// 7: publish complete (QoS 2, part 3).
    Pubcomp = 7,
    /// 8: subscribe request.
    Subscribe = 8,
    /// 9: subscribe acknowledgment.
    Suback = 9,
    /// 10: unsubscribe request.
    Unsubscribe = 10,
    /// 11: unsubscribe acknowledgment.
    Unsuback = 11,
    /// 12: ping request.
    Pingreq = 12,
    /// 13: ping response.
    Pingresp = 13,
    /// 14: client is disconnecting.
    Disconnect = 14,
}

impl PacketType {
    /// The type for the 4-bit number `value` (1 to 14), or `None` for the
    /// reserved values 0 and 15 (and anything above).
    #[must_use]
    pub const fn from_u8(value: u8) -> Option<PacketType> {
        Some(match value {
            1 => PacketType::Connect,
            2 => PacketType::Connack,
            3 => PacketType::Publish,
            4 => PacketType::Puback,
            5 => PacketType::Pubrec,
            6 => PacketType::Pubrel,
            7 => PacketType::Pubcomp,
            8 => PacketType::Subscribe,
            9 => PacketType::Suback,
            10 => PacketType::Unsubscribe,
            11 => PacketType::Unsuback,
            12 => PacketType::Pingreq,
            13 => PacketType::Pingresp,
            14 => PacketType::Disconnect,
            _ => return None,
        })
    }

    /// The 4-bit number of this type.
    #[must_use]
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// The flag bits (lower four bits of the first byte) the specification
    /// fixes for this type, or `None` for PUBLISH whose flags carry DUP, QoS
    /// and RETAIN (MQTT 3.1.1 §2.2.2).
    #[must_use]
    pub const fn fixed_flags(self) -> Option<u8> {
        match self {
            PacketType::Publish => None,
            PacketType::Pubrel | PacketType::Subscribe | PacketType::Unsubscribe => Some(0b0010),
            _ => Some(0),
        }
    }

    /// The name the specification uses, e.g. `"PUBLISH"`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            PacketType::Connect => "CONNECT",
            PacketType::Connack => "CONNACK",
            PacketType::Publish => "PUBLISH",
            PacketType::Puback => "PUBACK",
            PacketType::Pubrec => "PUBREC",
            PacketType::Pubrel => "PUBREL",
            PacketType::Pubcomp => "PUBCOMP",
            PacketType::Subscribe => "SUBSCRIBE",
            PacketType::Suback => "SUBACK",
            PacketType::Unsubscribe => "UNSUBSCRIBE",
            PacketType::Unsuback => "UNSUBACK",
            PacketType::Pingreq => "PINGREQ",
            PacketType::Pingresp => "PINGRESP",
            PacketType::Disconnect => "DISCONNECT",
        }
    }
}

impl fmt::Display for PacketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_next_wraps_and_skips_zero() {
        assert_eq!(Pid::new(0), None);
        assert_eq!(Pid::MIN.get(), 1);
        assert_eq!(Pid::new(1).map(Pid::next), Pid::new(2));
        assert_eq!(Pid::new(65534).map(Pid::next), Pid::new(65535));
        assert_eq!(Pid::new(65535).map(Pid::next), Some(Pid::MIN));
    }

    #[test]
    fn codes_round_trip_through_u8() {
        for v in 0..=255u8 {
            if let Some(q) = QoS::from_u8(v) {
                assert_eq!(q.as_u8(), v);
            }
            if let Some(c) = ConnectReturnCode::from_u8(v) {
                assert_eq!(c.as_u8(), v);
            }
            if let Some(c) = SubscribeReturnCode::from_u8(v) {
                assert_eq!(c.as_u8(), v);
            }
            if let Some(t) = PacketType::from_u8(v) {
                assert_eq!(t.as_u8(), v);
            }
        }
        assert_eq!(QoS::from_u8(3), None);
        assert_eq!(ConnectReturnCode::from_u8(6), None);
        assert_eq!(SubscribeReturnCode::from_u8(3), None);
        assert_eq!(SubscribeReturnCode::from_u8(0x81), None);
        assert_eq!(PacketType::from_u8(0), None);
        assert_eq!(PacketType::from_u8(15), None);
    }

    #[test]
    fn qos_is_ordered() {
        assert!(QoS::AtMostOnce < QoS::AtLeastOnce);
        assert_eq!(QoS::ExactlyOnce.min(QoS::AtLeastOnce), QoS::AtLeastOnce);
    }
}
