//! The packet types, their constructors and their encoding.

use alloc::vec::Vec;
use core::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use super::error::BuildError;
use super::string::{MAX_STRING_LEN, MqttStr, TopicFilter, TopicName};
use super::types::{
    ConnectReturnCode, PacketType, Pid, Protocol, QoS, QosPid, SubscribeReturnCode,
};
use super::{MAX_REMAINING_LENGTH, remaining_length_len};

/// One MQTT 3.1.1 control packet (all 14 types).
///
/// A value of this type is always valid: [`Packet::encode`] cannot fail, and
/// decoding the encoding gives back an equal packet. Build the complex
/// packets with their constructors ([`Connect::new`], [`Publish::new`],
/// [`Subscribe::new`], ...) and convert them with `Packet::from` / `.into()`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Packet {
    /// CONNECT: client request to connect to a server.
    Connect(Connect),
    /// CONNACK: acknowledgment of a CONNECT.
    Connack(Connack),
    /// PUBLISH: an application message.
    Publish(Publish),
    /// PUBACK: acknowledgment of a QoS 1 PUBLISH.
    Puback(Pid),
    /// PUBREC: first answer to a QoS 2 PUBLISH.
    Pubrec(Pid),
    /// PUBREL: answer to a PUBREC.
    Pubrel(Pid),
    /// PUBCOMP: answer to a PUBREL.
    Pubcomp(Pid),
    /// SUBSCRIBE: client subscribe request.
    Subscribe(Subscribe),
    /// SUBACK: acknowledgment of a SUBSCRIBE.
    Suback(Suback),
    /// UNSUBSCRIBE: client unsubscribe request.
    Unsubscribe(Unsubscribe),
    /// UNSUBACK: acknowledgment of an UNSUBSCRIBE.
    Unsuback(Pid),
    /// PINGREQ: keep-alive request.
    Pingreq,
    /// PINGRESP: keep-alive answer.
    Pingresp,
    /// DISCONNECT: the client is disconnecting cleanly.
    Disconnect,
}

impl Packet {
    /// The packet's type.
    #[must_use]
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::Connect(_) => PacketType::Connect,
            Packet::Connack(_) => PacketType::Connack,
            Packet::Publish(_) => PacketType::Publish,
            Packet::Puback(_) => PacketType::Puback,
            Packet::Pubrec(_) => PacketType::Pubrec,
            Packet::Pubrel(_) => PacketType::Pubrel,
            Packet::Pubcomp(_) => PacketType::Pubcomp,
            Packet::Subscribe(_) => PacketType::Subscribe,
            Packet::Suback(_) => PacketType::Suback,
            Packet::Unsubscribe(_) => PacketType::Unsubscribe,
            Packet::Unsuback(_) => PacketType::Unsuback,
            Packet::Pingreq => PacketType::Pingreq,
            Packet::Pingresp => PacketType::Pingresp,
            Packet::Disconnect => PacketType::Disconnect,
        }
    }

    /// The packet identifier, for the packets that carry one (PUBLISH with
    /// QoS 1 or 2, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBSCRIBE, SUBACK,
    /// UNSUBSCRIBE, UNSUBACK).
    #[must_use]
    pub fn pid(&self) -> Option<Pid> {
        match self {
            Packet::Publish(p) => p.pid(),
            Packet::Puback(pid)
            | Packet::Pubrec(pid)
            | Packet::Pubrel(pid)
            | Packet::Pubcomp(pid)
            | Packet::Unsuback(pid) => Some(*pid),
            Packet::Subscribe(s) => Some(s.pid()),
            Packet::Suback(s) => Some(s.pid()),
            Packet::Unsubscribe(u) => Some(u.pid()),
            Packet::Connect(_)
            | Packet::Connack(_)
            | Packet::Pingreq
            | Packet::Pingresp
            | Packet::Disconnect => None,
        }
    }

    /// The flag bits of the first byte (lower four bits).
    fn flags(&self) -> u8 {
        match self {
            Packet::Publish(p) => p.flags(),
            other => other.packet_type().fixed_flags().unwrap_or(0),
        }
    }

    /// The remaining length: the size of the variable header and payload.
    fn remaining_len(&self) -> usize {
        match self {
            Packet::Connect(c) => c.remaining_len(),
            Packet::Connack(_) => 2,
            Packet::Publish(p) => p.remaining_len(),
            Packet::Puback(_)
            | Packet::Pubrec(_)
            | Packet::Pubrel(_)
            | Packet::Pubcomp(_)
            | Packet::Unsuback(_) => 2,
            Packet::Subscribe(s) => s.remaining_len(),
            Packet::Suback(s) => s.remaining_len(),
            Packet::Unsubscribe(u) => u.remaining_len(),
            Packet::Pingreq | Packet::Pingresp | Packet::Disconnect => 0,
        }
    }

    /// The size of the encoding in bytes, fixed header included.
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        let rl = self.remaining_len();
        1 + remaining_length_len(rl) + rl
    }

    /// Appends the packet's encoding to `out`, reserving the room first.
    /// Cannot fail: every constructor has checked the limits.
    pub fn encode(&self, out: &mut BytesMut) {
        let rl = self.remaining_len();
        out.reserve(1 + remaining_length_len(rl) + rl);
        put_fixed_header(out, self.packet_type(), self.flags(), rl);
        match self {
            Packet::Connect(c) => c.put_body(out),
            Packet::Connack(c) => {
                out.put_u8(u8::from(c.session_present));
                out.put_u8(c.code.as_u8());
            }
            Packet::Publish(p) => p.put_body(out),
            Packet::Puback(pid)
            | Packet::Pubrec(pid)
            | Packet::Pubrel(pid)
            | Packet::Pubcomp(pid)
            | Packet::Unsuback(pid) => out.put_u16(pid.get()),
            Packet::Subscribe(s) => s.put_body(out),
            Packet::Suback(s) => s.put_body(out),
            Packet::Unsubscribe(u) => u.put_body(out),
            Packet::Pingreq | Packet::Pingresp | Packet::Disconnect => {}
        }
    }

    /// The packet's encoding in a new buffer.
    #[must_use]
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut out);
        out.freeze()
    }
}

macro_rules! into_packet {
    ($($ty:ident),*) => {$(
        impl From<$ty> for Packet {
            fn from(p: $ty) -> Packet {
                Packet::$ty(p)
            }
        }
    )*};
}
into_packet!(Connect, Connack, Publish, Subscribe, Suback, Unsubscribe);

/// Writes the first byte and the remaining length.
pub(crate) fn put_fixed_header(
    out: &mut BytesMut,
    packet_type: PacketType,
    flags: u8,
    remaining_len: usize,
) {
    out.put_u8(packet_type.as_u8() << 4 | flags);
    let mut len = remaining_len;
    loop {
        // `len % 128` < 128: the cast is exact.
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.put_u8(byte);
        if len == 0 {
            break;
        }
    }
}

/// Writes a 16-bit length and the bytes. The length fits: every constructor
/// bounds it to 65,535.
fn put_prefixed(out: &mut BytesMut, bytes: &[u8]) {
    // Invariant: `bytes.len() <= MAX_STRING_LEN`.
    out.put_u16(u16::try_from(bytes.len()).unwrap_or(u16::MAX));
    out.put_slice(bytes);
}

// ---------------------------------------------------------------------------
// CONNECT

/// The will message of a CONNECT: published by the server if the network
/// connection closes without DISCONNECT (MQTT 3.1.1 §3.1.2.5).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LastWill {
    topic: TopicName,
    message: Bytes,
    qos: QoS,
    retain: bool,
}

impl LastWill {
    /// A will message. `topic` is anything convertible to a [`TopicName`]
    /// (`&str`, `String`, [`MqttStr`], [`TopicName`]); `message` is binary
    /// data of at most 65,535 bytes.
    pub fn new<T>(
        topic: T,
        message: impl Into<Bytes>,
        qos: QoS,
        retain: bool,
    ) -> Result<LastWill, BuildError>
    where
        T: TryInto<TopicName>,
        BuildError: From<T::Error>,
    {
        let topic = topic.try_into()?;
        let message = message.into();
        if message.len() > MAX_STRING_LEN {
            return Err(BuildError::BinaryTooLong { len: message.len() });
        }
        Ok(LastWill {
            topic,
            message,
            qos,
            retain,
        })
    }

    pub(crate) fn from_checked(topic: TopicName, message: Bytes, qos: QoS, retain: bool) -> Self {
        LastWill {
            topic,
            message,
            qos,
            retain,
        }
    }

    /// The topic the will is published to.
    #[must_use]
    pub fn topic(&self) -> &TopicName {
        &self.topic
    }

    /// The will message (at most 65,535 bytes).
    #[must_use]
    pub fn message(&self) -> &Bytes {
        &self.message
    }

    /// The QoS the will is published with.
    #[must_use]
    pub fn qos(&self) -> QoS {
        self.qos
    }

    /// Whether the will is published as a retained message.
    #[must_use]
    pub fn retain(&self) -> bool {
        self.retain
    }
}

/// CONNECT: the first packet a client sends (MQTT 3.1.1 §3.1).
///
/// Built with [`Connect::new`] and the `with_*` methods. The protocol is
/// always MQTT 3.1.1. `Debug` prints `<redacted>` instead of the password
/// (for IoT Hub it is a SAS token).
///
/// ```
/// # use iothub_proto::mqtt::{Connect, BuildError};
/// let connect = Connect::new("dev1")?
///     .with_keep_alive(60)
///     .with_clean_session(false)
///     .with_username("hub.azure-devices.net/dev1/?api-version=2021-04-12")?
///     .with_password("SharedAccessSignature sr=...")?;
/// assert!(!format!("{connect:?}").contains("SharedAccessSignature"));
/// # Ok::<(), BuildError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Connect {
    client_id: MqttStr,
    keep_alive: u16,
    clean_session: bool,
    last_will: Option<LastWill>,
    username: Option<MqttStr>,
    password: Option<Bytes>,
}

impl Connect {
    /// A CONNECT with this client identifier, keep-alive 0 (disabled),
    /// clean session set, no will and no credentials.
    ///
    /// The empty client id is encodable; a server accepts it only with
    /// clean session set ([MQTT-3.1.3-7]).
    pub fn new<T>(client_id: T) -> Result<Connect, BuildError>
    where
        T: TryInto<MqttStr>,
        BuildError: From<T::Error>,
    {
        Ok(Connect {
            client_id: client_id.try_into()?,
            keep_alive: 0,
            clean_session: true,
            last_will: None,
            username: None,
            password: None,
        })
    }

    pub(crate) fn from_checked(
        client_id: MqttStr,
        keep_alive: u16,
        clean_session: bool,
        last_will: Option<LastWill>,
        username: Option<MqttStr>,
        password: Option<Bytes>,
    ) -> Self {
        Connect {
            client_id,
            keep_alive,
            clean_session,
            last_will,
            username,
            password,
        }
    }

    /// Sets the keep-alive interval in seconds (0 turns keep-alive off).
    #[must_use]
    pub fn with_keep_alive(mut self, seconds: u16) -> Self {
        self.keep_alive = seconds;
        self
    }

    /// Sets the clean-session flag.
    #[must_use]
    pub fn with_clean_session(mut self, clean_session: bool) -> Self {
        self.clean_session = clean_session;
        self
    }

    /// Sets (or with `None` removes) the will message.
    #[must_use]
    pub fn with_last_will(mut self, will: impl Into<Option<LastWill>>) -> Self {
        self.last_will = will.into();
        self
    }

    /// Sets the user name.
    pub fn with_username<T>(mut self, username: T) -> Result<Self, BuildError>
    where
        T: TryInto<MqttStr>,
        BuildError: From<T::Error>,
    {
        self.username = Some(username.try_into()?);
        Ok(self)
    }

    /// Sets the password: binary data of at most 65,535 bytes. A user name
    /// must have been set first ([MQTT-3.1.2-22]).
    pub fn with_password(mut self, password: impl Into<Bytes>) -> Result<Self, BuildError> {
        if self.username.is_none() {
            return Err(BuildError::PasswordWithoutUsername);
        }
        let password = password.into();
        if password.len() > MAX_STRING_LEN {
            return Err(BuildError::BinaryTooLong {
                len: password.len(),
            });
        }
        self.password = Some(password);
        Ok(self)
    }

    /// The protocol: always MQTT 3.1.1.
    #[must_use]
    pub fn protocol(&self) -> Protocol {
        Protocol::Mqtt311
    }

    /// The client identifier.
    #[must_use]
    pub fn client_id(&self) -> &MqttStr {
        &self.client_id
    }

    /// The keep-alive interval in seconds (0: off).
    #[must_use]
    pub fn keep_alive(&self) -> u16 {
        self.keep_alive
    }

    /// The clean-session flag.
    #[must_use]
    pub fn clean_session(&self) -> bool {
        self.clean_session
    }

    /// The will message.
    #[must_use]
    pub fn last_will(&self) -> Option<&LastWill> {
        self.last_will.as_ref()
    }

    /// The user name.
    #[must_use]
    pub fn username(&self) -> Option<&MqttStr> {
        self.username.as_ref()
    }

    /// The password (never present without a user name).
    #[must_use]
    pub fn password(&self) -> Option<&Bytes> {
        self.password.as_ref()
    }

    /// The connect flags byte (§3.1.2.3).
    fn flags(&self) -> u8 {
        let mut flags = 0;
        if self.clean_session {
            flags |= 0x02;
        }
        if let Some(will) = &self.last_will {
            flags |= 0x04 | will.qos.as_u8() << 3;
            if will.retain {
                flags |= 0x20;
            }
        }
        if self.password.is_some() {
            flags |= 0x40;
        }
        if self.username.is_some() {
            flags |= 0x80;
        }
        flags
    }

    /// At most 10 + 5 × 65,537 bytes: always encodable.
    fn remaining_len(&self) -> usize {
        let mut len = 10 + 2 + self.client_id.len();
        if let Some(will) = &self.last_will {
            len += 2 + will.topic.byte_len() + 2 + will.message.len();
        }
        if let Some(username) = &self.username {
            len += 2 + username.len();
        }
        if let Some(password) = &self.password {
            len += 2 + password.len();
        }
        len
    }

    fn put_body(&self, out: &mut BytesMut) {
        let protocol = Protocol::Mqtt311;
        put_prefixed(out, protocol.name().as_bytes());
        out.put_u8(protocol.level());
        out.put_u8(self.flags());
        out.put_u16(self.keep_alive);
        put_prefixed(out, self.client_id.as_bytes());
        if let Some(will) = &self.last_will {
            put_prefixed(out, will.topic.as_mqtt_str().as_bytes());
            put_prefixed(out, &will.message);
        }
        if let Some(username) = &self.username {
            put_prefixed(out, username.as_bytes());
        }
        if let Some(password) = &self.password {
            put_prefixed(out, password);
        }
    }
}

impl fmt::Debug for Connect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connect")
            .field("protocol", &self.protocol())
            .field("client_id", &self.client_id)
            .field("keep_alive", &self.keep_alive)
            .field("clean_session", &self.clean_session)
            .field("last_will", &self.last_will)
            .field("username", &self.username)
            .field(
                "password",
                &self.password.as_ref().map(|_| format_args!("<redacted>")),
            )
            .finish()
    }
}

// ---------------------------------------------------------------------------
// CONNACK

/// CONNACK: the server's answer to CONNECT (MQTT 3.1.1 §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Connack {
    session_present: bool,
    code: ConnectReturnCode,
}

impl Connack {
    /// A CONNACK. Session present is only kept with
    /// [`ConnectReturnCode::Accepted`]: a refusal always carries 0
    /// ([MQTT-3.2.2-4]).
    #[must_use]
    pub fn new(session_present: bool, code: ConnectReturnCode) -> Connack {
        Connack {
            session_present: session_present && code.is_accepted(),
            code,
        }
    }

    /// Whether the server has a stored session for this client.
    #[must_use]
    pub fn session_present(&self) -> bool {
        self.session_present
    }

    /// The return code.
    #[must_use]
    pub fn code(&self) -> ConnectReturnCode {
        self.code
    }
}

// ---------------------------------------------------------------------------
// PUBLISH

/// PUBLISH: an application message (MQTT 3.1.1 §3.3).
///
/// Topic and payload are [`Bytes`]: a decoded PUBLISH shares the receive
/// buffer, and cloning one is cheap (reference counts).
///
/// ```
/// # use iothub_proto::mqtt::{Publish, QosPid, Pid, BuildError};
/// # use bytes::Bytes;
/// let pid = Pid::MIN;
/// let publish = Publish::new("devices/dev1/messages/events/", QosPid::AtLeastOnce(pid), Bytes::from_static(b"{}"))?
///     .with_retain(false);
/// assert_eq!(publish.pid(), Some(pid));
/// # Ok::<(), BuildError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Publish {
    topic: TopicName,
    qospid: QosPid,
    dup: bool,
    retain: bool,
    payload: Bytes,
}

/// The remaining length of a PUBLISH, or `None` beyond the MQTT maximum.
pub(crate) fn publish_remaining_len(
    topic_len: usize,
    qos: QoS,
    payload_len: usize,
) -> Option<usize> {
    let pid_len = if qos == QoS::AtMostOnce { 0 } else { 2 };
    let len = (2 + pid_len + topic_len).checked_add(payload_len)?;
    (len <= MAX_REMAINING_LENGTH).then_some(len)
}

impl Publish {
    /// A PUBLISH with DUP and RETAIN clear. `topic` is anything convertible
    /// to a [`TopicName`] (`&str` is copied; `String`, [`MqttStr`] and
    /// [`TopicName`] are moved without copying).
    ///
    /// Fails on an invalid topic, or if the packet would exceed the MQTT
    /// maximum remaining length of 268,435,455 bytes.
    pub fn new<T>(topic: T, qospid: QosPid, payload: Bytes) -> Result<Publish, BuildError>
    where
        T: TryInto<TopicName>,
        BuildError: From<T::Error>,
    {
        let topic = topic.try_into()?;
        if publish_remaining_len(topic.byte_len(), qospid.qos(), payload.len()).is_none() {
            return Err(BuildError::PacketTooLarge);
        }
        Ok(Publish {
            topic,
            qospid,
            dup: false,
            retain: false,
            payload,
        })
    }

    pub(crate) fn from_checked(
        topic: TopicName,
        qospid: QosPid,
        dup: bool,
        retain: bool,
        payload: Bytes,
    ) -> Self {
        Publish {
            topic,
            qospid,
            dup,
            retain,
            payload,
        }
    }

    /// Sets the DUP flag (a re-delivery). Ignored for QoS 0, where DUP must
    /// be 0 ([MQTT-3.3.1-2]).
    #[must_use]
    pub fn with_dup(mut self, dup: bool) -> Self {
        self.dup = dup && self.qospid != QosPid::AtMostOnce;
        self
    }

    /// Sets the packet id and DUP flag in place (DUP only with QoS 1 or
    /// 2). The size was checked for the larger of QoS 0 and 1 by the
    /// caller (a packet id adds two bytes).
    pub(crate) fn set_qospid(&mut self, qospid: QosPid, dup: bool) {
        self.qospid = qospid;
        self.dup = dup && qospid != QosPid::AtMostOnce;
    }

    /// Sets the RETAIN flag.
    #[must_use]
    pub fn with_retain(mut self, retain: bool) -> Self {
        self.retain = retain;
        self
    }

    /// The topic name.
    #[must_use]
    pub fn topic(&self) -> &TopicName {
        &self.topic
    }

    /// The QoS and packet id.
    #[must_use]
    pub fn qospid(&self) -> QosPid {
        self.qospid
    }

    /// The QoS.
    #[must_use]
    pub fn qos(&self) -> QoS {
        self.qospid.qos()
    }

    /// The packet id (`None` for QoS 0).
    #[must_use]
    pub fn pid(&self) -> Option<Pid> {
        self.qospid.pid()
    }

    /// The DUP flag (never set with QoS 0).
    #[must_use]
    pub fn dup(&self) -> bool {
        self.dup
    }

    /// The RETAIN flag.
    #[must_use]
    pub fn retain(&self) -> bool {
        self.retain
    }

    /// The application message.
    #[must_use]
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// Topic and payload, consuming the packet.
    #[must_use]
    pub fn into_parts(self) -> (TopicName, Bytes) {
        (self.topic, self.payload)
    }

    /// The size of the encoding in bytes, fixed header included.
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        let rl = self.remaining_len();
        1 + remaining_length_len(rl) + rl
    }

    /// Appends the encoding to `out` (as [`Packet::encode`] would, without
    /// wrapping the PUBLISH in a [`Packet`]).
    pub fn encode(&self, out: &mut BytesMut) {
        let rl = self.remaining_len();
        out.reserve(1 + remaining_length_len(rl) + rl);
        put_fixed_header(out, PacketType::Publish, self.flags(), rl);
        self.put_body(out);
    }

    fn flags(&self) -> u8 {
        let mut flags = self.qos().as_u8() << 1;
        if self.dup {
            flags |= 0x08;
        }
        if self.retain {
            flags |= 0x01;
        }
        flags
    }

    fn remaining_len(&self) -> usize {
        // Checked against the maximum by the constructor.
        publish_remaining_len(self.topic.byte_len(), self.qos(), self.payload.len())
            .unwrap_or(MAX_REMAINING_LENGTH)
    }

    fn put_body(&self, out: &mut BytesMut) {
        put_prefixed(out, self.topic.as_mqtt_str().as_bytes());
        if let Some(pid) = self.qospid.pid() {
            out.put_u16(pid.get());
        }
        out.put_slice(&self.payload);
    }
}

// ---------------------------------------------------------------------------
// SUBSCRIBE, SUBACK, UNSUBSCRIBE

/// SUBSCRIBE: a request for one or more subscriptions (MQTT 3.1.1 §3.8).
///
/// ```
/// # use iothub_proto::mqtt::{Subscribe, Pid, QoS, BuildError};
/// let sub = Subscribe::new(Pid::MIN, [
///     ("devices/dev1/messages/devicebound/#", QoS::AtLeastOnce),
///     ("$iothub/methods/POST/#", QoS::AtMostOnce),
/// ])?;
/// assert_eq!(sub.filters().len(), 2);
/// # Ok::<(), BuildError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Subscribe {
    pid: Pid,
    filters: Vec<(TopicFilter, QoS)>,
}

impl Subscribe {
    /// A SUBSCRIBE for these `(filter, requested QoS)` pairs; each filter is
    /// anything convertible to a [`TopicFilter`].
    ///
    /// Fails without filters, on an invalid filter, or if the packet would
    /// exceed the MQTT maximum remaining length.
    pub fn new<I, T>(pid: Pid, filters: I) -> Result<Subscribe, BuildError>
    where
        I: IntoIterator<Item = (T, QoS)>,
        T: TryInto<TopicFilter>,
        BuildError: From<T::Error>,
    {
        let filters = filters
            .into_iter()
            .map(|(f, q)| Ok((f.try_into()?, q)))
            .collect::<Result<Vec<_>, BuildError>>()?;
        if filters.is_empty() {
            return Err(BuildError::NoTopicFilters);
        }
        let subscribe = Subscribe { pid, filters };
        subscribe
            .checked_remaining_len()
            .ok_or(BuildError::PacketTooLarge)?;
        Ok(subscribe)
    }

    pub(crate) fn from_checked(pid: Pid, filters: Vec<(TopicFilter, QoS)>) -> Self {
        Subscribe { pid, filters }
    }

    fn checked_remaining_len(&self) -> Option<usize> {
        self.filters
            .iter()
            .try_fold(2usize, |acc, (f, _)| acc.checked_add(3 + f.byte_len()))
            .filter(|&len| len <= MAX_REMAINING_LENGTH)
    }

    fn remaining_len(&self) -> usize {
        // Checked by the constructor (or bounded by the received packet).
        self.checked_remaining_len().unwrap_or(MAX_REMAINING_LENGTH)
    }

    /// The packet id.
    #[must_use]
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// The `(filter, requested QoS)` pairs, never empty.
    #[must_use]
    pub fn filters(&self) -> &[(TopicFilter, QoS)] {
        &self.filters
    }

    /// The `(filter, requested QoS)` pairs, consuming the packet.
    #[must_use]
    pub fn into_filters(self) -> Vec<(TopicFilter, QoS)> {
        self.filters
    }

    fn put_body(&self, out: &mut BytesMut) {
        out.put_u16(self.pid.get());
        for (filter, qos) in &self.filters {
            put_prefixed(out, filter.as_mqtt_str().as_bytes());
            out.put_u8(qos.as_u8());
        }
    }
}

/// SUBACK: the server's answer to SUBSCRIBE, one return code per filter
/// (MQTT 3.1.1 §3.9).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Suback {
    pid: Pid,
    return_codes: Vec<SubscribeReturnCode>,
}

impl Suback {
    /// A SUBACK with these return codes, in the order of the SUBSCRIBE's
    /// filters.
    ///
    /// Fails without codes or if the packet would exceed the MQTT maximum
    /// remaining length.
    pub fn new(
        pid: Pid,
        return_codes: impl IntoIterator<Item = SubscribeReturnCode>,
    ) -> Result<Suback, BuildError> {
        let return_codes: Vec<_> = return_codes.into_iter().collect();
        if return_codes.is_empty() {
            return Err(BuildError::NoReturnCodes);
        }
        if return_codes.len() > MAX_REMAINING_LENGTH - 2 {
            return Err(BuildError::PacketTooLarge);
        }
        Ok(Suback { pid, return_codes })
    }

    pub(crate) fn from_checked(pid: Pid, return_codes: Vec<SubscribeReturnCode>) -> Self {
        Suback { pid, return_codes }
    }

    /// The packet id of the SUBSCRIBE this answers.
    #[must_use]
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// The return codes, never empty.
    #[must_use]
    pub fn return_codes(&self) -> &[SubscribeReturnCode] {
        &self.return_codes
    }

    fn remaining_len(&self) -> usize {
        2 + self.return_codes.len()
    }

    fn put_body(&self, out: &mut BytesMut) {
        out.put_u16(self.pid.get());
        for code in &self.return_codes {
            out.put_u8(code.as_u8());
        }
    }
}

/// UNSUBSCRIBE: a request to remove one or more subscriptions (MQTT 3.1.1
/// §3.10).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Unsubscribe {
    pid: Pid,
    filters: Vec<TopicFilter>,
}

impl Unsubscribe {
    /// An UNSUBSCRIBE for these filters; each is anything convertible to a
    /// [`TopicFilter`].
    ///
    /// Fails without filters, on an invalid filter, or if the packet would
    /// exceed the MQTT maximum remaining length.
    pub fn new<I, T>(pid: Pid, filters: I) -> Result<Unsubscribe, BuildError>
    where
        I: IntoIterator<Item = T>,
        T: TryInto<TopicFilter>,
        BuildError: From<T::Error>,
    {
        let filters = filters
            .into_iter()
            .map(|f| f.try_into().map_err(BuildError::from))
            .collect::<Result<Vec<_>, BuildError>>()?;
        if filters.is_empty() {
            return Err(BuildError::NoTopicFilters);
        }
        let unsubscribe = Unsubscribe { pid, filters };
        unsubscribe
            .checked_remaining_len()
            .ok_or(BuildError::PacketTooLarge)?;
        Ok(unsubscribe)
    }

    pub(crate) fn from_checked(pid: Pid, filters: Vec<TopicFilter>) -> Self {
        Unsubscribe { pid, filters }
    }

    fn checked_remaining_len(&self) -> Option<usize> {
        self.filters
            .iter()
            .try_fold(2usize, |acc, f| acc.checked_add(2 + f.byte_len()))
            .filter(|&len| len <= MAX_REMAINING_LENGTH)
    }

    fn remaining_len(&self) -> usize {
        // Checked by the constructor (or bounded by the received packet).
        self.checked_remaining_len().unwrap_or(MAX_REMAINING_LENGTH)
    }

    /// The packet id.
    #[must_use]
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// The filters, never empty.
    #[must_use]
    pub fn filters(&self) -> &[TopicFilter] {
        &self.filters
    }

    /// The filters, consuming the packet.
    #[must_use]
    pub fn into_filters(self) -> Vec<TopicFilter> {
        self.filters
    }

    fn put_body(&self, out: &mut BytesMut) {
        out.put_u16(self.pid.get());
        for filter in &self.filters {
            put_prefixed(out, filter.as_mqtt_str().as_bytes());
        }
    }
}
