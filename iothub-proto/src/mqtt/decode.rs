//! Incremental, zero-copy decoding.
//!
//! Decoding runs in two steps so that the caller's buffer is only touched on
//! success: the packet is first validated on a borrowed slice, which records
//! where its strings and payload lie ([`Span`]s); then its bytes are split off
//! the buffer once, frozen, and the spans become [`Bytes`] slices of that one
//! shared buffer.

use alloc::vec::Vec;

use bytes::{Bytes, BytesMut};

use super::error::DecodeError;
use super::packet::{Connack, Connect, LastWill, Packet, Publish, Suback, Subscribe, Unsubscribe};
use super::string::{
    MqttStr, TopicFilter, TopicName, check_topic_filter, check_topic_name, check_utf8,
};
use super::types::{ConnectReturnCode, PacketType, Pid, QoS, QosPid, SubscribeReturnCode};

/// The first byte and the remaining length of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FixedHeader {
    pub(crate) packet_type: PacketType,
    pub(crate) flags: u8,
    /// 1 + the number of remaining-length bytes (2 to 5).
    pub(crate) header_len: usize,
    pub(crate) remaining_len: usize,
}

/// Decodes the remaining length at the start of `bytes`: `Ok(None)` if it is
/// not complete yet, else the value and the number of bytes it takes.
pub(crate) fn parse_remaining_length(bytes: &[u8]) -> Result<Option<(usize, usize)>, DecodeError> {
    let mut value = 0usize;
    for (i, &byte) in bytes.iter().take(4).enumerate() {
        value |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    if bytes.len() >= 4 {
        // Four bytes, all with the continuation bit.
        Err(DecodeError::MalformedRemainingLength)
    } else {
        Ok(None)
    }
}

/// The remaining length the specification fixes for a packet type.
fn fixed_remaining_len(packet_type: PacketType) -> Option<usize> {
    match packet_type {
        PacketType::Connack
        | PacketType::Puback
        | PacketType::Pubrec
        | PacketType::Pubrel
        | PacketType::Pubcomp
        | PacketType::Unsuback => Some(2),
        PacketType::Pingreq | PacketType::Pingresp | PacketType::Disconnect => Some(0),
        PacketType::Connect
        | PacketType::Publish
        | PacketType::Subscribe
        | PacketType::Suback
        | PacketType::Unsubscribe => None,
    }
}

/// Parses and checks the fixed header at the start of `buf`. Everything the
/// first byte and the remaining length can tell is checked here, before the
/// body arrives.
pub(crate) fn parse_fixed_header(buf: &[u8]) -> Result<Option<FixedHeader>, DecodeError> {
    let Some((&first, rest)) = buf.split_first() else {
        return Ok(None);
    };
    let type_bits = first >> 4;
    let flags = first & 0x0F;
    let packet_type =
        PacketType::from_u8(type_bits).ok_or(DecodeError::InvalidPacketType(type_bits))?;
    match packet_type.fixed_flags() {
        Some(expected) => {
            if flags != expected {
                return Err(DecodeError::InvalidHeaderFlags { packet_type, flags });
            }
        }
        None => {
            let qos = (flags >> 1) & 0b11;
            if qos == 3 {
                return Err(DecodeError::InvalidPublishQos);
            }
            if qos == 0 && flags & 0b1000 != 0 {
                return Err(DecodeError::DupWithQos0);
            }
        }
    }
    let Some((remaining_len, len_bytes)) = parse_remaining_length(rest)? else {
        return Ok(None);
    };
    if let Some(expected) = fixed_remaining_len(packet_type) {
        if remaining_len != expected {
            return Err(DecodeError::UnexpectedRemainingLength {
                packet_type,
                expected,
                actual: remaining_len,
            });
        }
    }
    Ok(Some(FixedHeader {
        packet_type,
        flags,
        header_len: 1 + len_bytes,
        remaining_len,
    }))
}

/// Decodes one packet from the front of `buf`.
///
/// - `Ok(None)`: `buf` does not hold a whole packet yet; read more bytes and
///   call again. `buf` is untouched.
/// - `Ok(Some(packet))`: the packet's bytes have been removed from the front
///   of `buf`. Its strings and payload are [`Bytes`] slices of those bytes:
///   nothing is copied, and decoding a PUBLISH allocates nothing (the first
///   split of a fresh `BytesMut` may allocate its shared header once).
/// - `Err(e)`: the bytes are not a valid MQTT 3.1.1 packet, or the packet is
///   larger than `max_packet_size`. `buf` is untouched; the stream cannot be
///   resynchronised, so close the connection (§4.8).
///
/// `max_packet_size` bounds the **whole** packet, fixed header included
/// (1 byte of type and flags, 1 to 4 bytes of remaining length, then the
/// remaining length). It is checked as soon as the fixed header is complete,
/// before the body is buffered, so a peer cannot make the caller buffer a
/// huge body. [`MAX_PACKET_SIZE`](super::MAX_PACKET_SIZE) means no limit
/// beyond the protocol's.
///
/// Decoding is the same on the client and on the server side. A remaining
/// length in more bytes than needed (e.g. `0x80 0x00` for 0) is accepted, as
/// MQTT 3.1.1 does not forbid it; re-encoding uses the shortest form.
///
/// Round trip: for every packet `p` this returns, `p.encode()` decodes to a
/// packet equal to `p`, and `p.encoded_len()` is the length of that encoding.
pub fn decode(buf: &mut BytesMut, max_packet_size: usize) -> Result<Option<Packet>, DecodeError> {
    let Some(header) = parse_fixed_header(buf)? else {
        return Ok(None);
    };
    // At most 5 + 268,435,455: cannot overflow on 32- or 64-bit targets.
    let total = header.header_len.saturating_add(header.remaining_len);
    if total > max_packet_size {
        return Err(DecodeError::PacketTooLarge {
            size: total,
            max: max_packet_size,
        });
    }
    let Some(frame) = buf.get(..total) else {
        return Ok(None);
    };
    let mut reader = Reader {
        data: frame,
        pos: header.header_len,
        packet_type: header.packet_type,
    };
    let layout = parse_body(&header, &mut reader)?;
    let frame = buf.split_to(total).freeze();
    Ok(Some(layout.build(&frame)))
}

/// Where a field lies in the packet's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: usize,
    end: usize,
}

impl Span {
    /// The field as a slice of the shared packet buffer (no copy).
    fn slice(self, frame: &Bytes) -> Bytes {
        // Spans come from parsing these very bytes; the check only keeps
        // this function total.
        if self.start < self.end && self.end <= frame.len() {
            frame.slice(self.start..self.end)
        } else {
            Bytes::new()
        }
    }
}

/// A cursor over one whole packet, fixed header included.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    packet_type: PacketType,
}

impl<'a> Reader<'a> {
    fn too_short(&self) -> DecodeError {
        DecodeError::RemainingLengthTooShort(self.packet_type)
    }

    fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        let byte = *self.data.get(self.pos).ok_or_else(|| self.too_short())?;
        self.pos += 1;
        Ok(byte)
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        let hi = self.u8()?;
        let lo = self.u8()?;
        Ok(u16::from_be_bytes([hi, lo]))
    }

    fn pid(&mut self) -> Result<Pid, DecodeError> {
        Pid::new(self.u16()?).ok_or(DecodeError::ZeroPacketId)
    }

    fn take(&mut self, n: usize) -> Result<Span, DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.data.len())
            .ok_or_else(|| self.too_short())?;
        let span = Span {
            start: self.pos,
            end,
        };
        self.pos = end;
        Ok(span)
    }

    fn bytes(&self, span: Span) -> &'a [u8] {
        self.data.get(span.start..span.end).unwrap_or(&[])
    }

    /// A field with a two-byte length prefix (binary data).
    fn prefixed(&mut self) -> Result<Span, DecodeError> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }

    /// A UTF-8 encoded string (§1.5.3).
    fn string(&mut self) -> Result<Span, DecodeError> {
        let span = self.prefixed()?;
        check_utf8(self.bytes(span))?;
        Ok(span)
    }

    fn topic_name(&mut self) -> Result<Span, DecodeError> {
        let span = self.string()?;
        check_topic_name(self.bytes(span))?;
        Ok(span)
    }

    fn topic_filter(&mut self) -> Result<Span, DecodeError> {
        let span = self.string()?;
        check_topic_filter(self.bytes(span))?;
        Ok(span)
    }

    /// Everything left (the PUBLISH payload).
    fn rest(&mut self) -> Span {
        let span = Span {
            start: self.pos,
            end: self.data.len(),
        };
        self.pos = self.data.len();
        span
    }

    /// Checks that every byte was used.
    fn finish(&self) -> Result<(), DecodeError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes(self.packet_type))
        }
    }
}

/// A validated packet whose byte fields are still spans.
enum Layout {
    Connect {
        client_id: Span,
        keep_alive: u16,
        clean_session: bool,
        will: Option<(Span, Span, QoS, bool)>,
        username: Option<Span>,
        password: Option<Span>,
    },
    Publish {
        topic: Span,
        qospid: QosPid,
        dup: bool,
        retain: bool,
        payload: Span,
    },
    Subscribe {
        pid: Pid,
        filters: Vec<(Span, QoS)>,
    },
    Unsubscribe {
        pid: Pid,
        filters: Vec<Span>,
    },
    /// A packet without byte fields, already complete.
    Done(Packet),
}

impl Layout {
    fn build(self, frame: &Bytes) -> Packet {
        match self {
            Layout::Connect {
                client_id,
                keep_alive,
                clean_session,
                will,
                username,
                password,
            } => Packet::Connect(Connect::from_checked(
                MqttStr::from_checked(client_id.slice(frame)),
                keep_alive,
                clean_session,
                will.map(|(topic, message, qos, retain)| {
                    LastWill::from_checked(
                        TopicName::from_checked(topic.slice(frame)),
                        message.slice(frame),
                        qos,
                        retain,
                    )
                }),
                username.map(|u| MqttStr::from_checked(u.slice(frame))),
                password.map(|p| p.slice(frame)),
            )),
            Layout::Publish {
                topic,
                qospid,
                dup,
                retain,
                payload,
            } => Packet::Publish(Publish::from_checked(
                TopicName::from_checked(topic.slice(frame)),
                qospid,
                dup,
                retain,
                payload.slice(frame),
            )),
            Layout::Subscribe { pid, filters } => Packet::Subscribe(Subscribe::from_checked(
                pid,
                filters
                    .into_iter()
                    .map(|(f, qos)| (TopicFilter::from_checked(f.slice(frame)), qos))
                    .collect(),
            )),
            Layout::Unsubscribe { pid, filters } => Packet::Unsubscribe(Unsubscribe::from_checked(
                pid,
                filters
                    .into_iter()
                    .map(|f| TopicFilter::from_checked(f.slice(frame)))
                    .collect(),
            )),
            Layout::Done(packet) => packet,
        }
    }
}

/// Validates the variable header and payload.
fn parse_body(header: &FixedHeader, r: &mut Reader<'_>) -> Result<Layout, DecodeError> {
    let layout = match header.packet_type {
        PacketType::Connect => parse_connect(r)?,
        PacketType::Connack => {
            let flags = r.u8()?;
            if flags & 0xFE != 0 {
                return Err(DecodeError::InvalidConnackFlags(flags));
            }
            let code = r.u8()?;
            let code = ConnectReturnCode::from_u8(code)
                .ok_or(DecodeError::InvalidConnectReturnCode(code))?;
            let session_present = flags & 0x01 != 0;
            if session_present && !code.is_accepted() {
                return Err(DecodeError::SessionPresentWithRefusal);
            }
            Layout::Done(Packet::Connack(Connack::new(session_present, code)))
        }
        PacketType::Publish => {
            let topic = r.topic_name()?;
            let qospid = match (header.flags >> 1) & 0b11 {
                0 => QosPid::AtMostOnce,
                1 => QosPid::AtLeastOnce(r.pid()?),
                // QoS 3 was refused with the fixed header.
                _ => QosPid::ExactlyOnce(r.pid()?),
            };
            Layout::Publish {
                topic,
                qospid,
                dup: header.flags & 0b1000 != 0,
                retain: header.flags & 0b0001 != 0,
                payload: r.rest(),
            }
        }
        PacketType::Puback => Layout::Done(Packet::Puback(r.pid()?)),
        PacketType::Pubrec => Layout::Done(Packet::Pubrec(r.pid()?)),
        PacketType::Pubrel => Layout::Done(Packet::Pubrel(r.pid()?)),
        PacketType::Pubcomp => Layout::Done(Packet::Pubcomp(r.pid()?)),
        PacketType::Unsuback => Layout::Done(Packet::Unsuback(r.pid()?)),
        PacketType::Subscribe => {
            let pid = r.pid()?;
            if r.is_empty() {
                return Err(DecodeError::NoTopicFilters(PacketType::Subscribe));
            }
            let mut filters = Vec::new();
            while !r.is_empty() {
                let filter = r.topic_filter()?;
                let options = r.u8()?;
                let qos = match QoS::from_u8(options) {
                    Some(qos) => qos,
                    None => return Err(DecodeError::InvalidRequestedQos(options)),
                };
                filters.push((filter, qos));
            }
            Layout::Subscribe { pid, filters }
        }
        PacketType::Suback => {
            let pid = r.pid()?;
            if r.is_empty() {
                return Err(DecodeError::NoReturnCodes);
            }
            let mut codes = Vec::with_capacity(header.remaining_len.saturating_sub(2));
            while !r.is_empty() {
                let code = r.u8()?;
                codes.push(
                    SubscribeReturnCode::from_u8(code)
                        .ok_or(DecodeError::InvalidSubackReturnCode(code))?,
                );
            }
            Layout::Done(Packet::Suback(Suback::from_checked(pid, codes)))
        }
        PacketType::Unsubscribe => {
            let pid = r.pid()?;
            if r.is_empty() {
                return Err(DecodeError::NoTopicFilters(PacketType::Unsubscribe));
            }
            let mut filters = Vec::new();
            while !r.is_empty() {
                filters.push(r.topic_filter()?);
            }
            Layout::Unsubscribe { pid, filters }
        }
        PacketType::Pingreq => Layout::Done(Packet::Pingreq),
        PacketType::Pingresp => Layout::Done(Packet::Pingresp),
        PacketType::Disconnect => Layout::Done(Packet::Disconnect),
    };
    r.finish()?;
    Ok(layout)
}

/// CONNECT (§3.1): variable header, then the payload fields the flags name.
fn parse_connect(r: &mut Reader<'_>) -> Result<Layout, DecodeError> {
    let name = r.prefixed()?;
    if r.bytes(name) != b"MQTT" {
        return Err(DecodeError::InvalidProtocolName);
    }
    let level = r.u8()?;
    if level != 4 {
        return Err(DecodeError::UnsupportedProtocolLevel(level));
    }
    let flags = r.u8()?;
    if flags & 0x01 != 0 {
        return Err(DecodeError::ConnectReservedFlag);
    }
    let clean_session = flags & 0x02 != 0;
    let will_flag = flags & 0x04 != 0;
    let will_qos = (flags >> 3) & 0b11;
    let will_retain = flags & 0x20 != 0;
    let password_flag = flags & 0x40 != 0;
    let username_flag = flags & 0x80 != 0;
    if !will_flag && (will_qos != 0 || will_retain) {
        return Err(DecodeError::WillFlagsWithoutWill);
    }
    let will_qos = QoS::from_u8(will_qos).ok_or(DecodeError::InvalidWillQos)?;
    if password_flag && !username_flag {
        return Err(DecodeError::PasswordWithoutUsername);
    }
    let keep_alive = r.u16()?;
    let client_id = r.string()?;
    let will = if will_flag {
        let topic = r.topic_name()?;
        let message = r.prefixed()?;
        Some((topic, message, will_qos, will_retain))
    } else {
        None
    };
    let username = if username_flag {
        Some(r.string()?)
    } else {
        None
    };
    let password = if password_flag {
        Some(r.prefixed()?)
    } else {
        None
    };
    Ok(Layout::Connect {
        client_id,
        keep_alive,
        clean_session,
        will,
        username,
        password,
    })
}
