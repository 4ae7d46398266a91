//! MQTT 3.1.1 codec: all 14 control packets, client and server side.
//!
//! **Contract.** [`decode`] turns the front of a receive buffer into one
//! [`Packet`]; [`Packet::encode`] appends a packet to a send buffer. No I/O,
//! no clock, no `unsafe`. Every function is total: invalid input gives a
//! typed error, never a panic.
//!
//! ```text
//!   bytes from the socket ──▶ BytesMut ──decode──▶ Ok(Some(Packet)) ──▶ session
//!                                        │
//!                                        ├──────▶ Ok(None): read more bytes
//!                                        └──────▶ Err(DecodeError): close
//!   session ──▶ Packet ──encode──▶ BytesMut ──▶ bytes to the socket
//! ```
//!
//! - **Incremental.** `Ok(None)` means "need more bytes" and leaves the
//!   buffer untouched; so does an error. On success exactly the packet's
//!   bytes are consumed.
//! - **Zero-copy.** Topic names, strings and payloads of a decoded packet are
//!   [`bytes::Bytes`] slices of the receive buffer ([`MqttStr`],
//!   [`TopicName`], [`TopicFilter`] are `Bytes`-backed). Decoding a PUBLISH
//!   allocates nothing.
//! - **Strict.** Every rule of the specification that a single packet can
//!   break is checked, each with its own [`DecodeError`] variant (reserved
//!   flag bits, QoS 3, DUP with QoS 0, UTF-8 and U+0000, wildcards in topic
//!   names, packet id 0, protocol name and level, CONNECT and CONNACK flags,
//!   topic filter syntax, SUBACK codes, remaining length against the fields).
//!   The size limit is checked from the fixed header, before the body is
//!   buffered.
//! - **Well-typed.** [`Pid`] is non-zero, [`QosPid`] ties a packet id to
//!   QoS 1 and 2, strings and topics carry their invariants, and the
//!   constructors check every limit (65,535-byte strings, 268,435,455-byte
//!   remaining length, non-empty filter lists). So **encoding cannot fail**,
//!   and `decode(encode(p)) == p` for every packet `p`.
//!
//! ```
//! use bytes::{Bytes, BytesMut};
//! use iothub_proto::mqtt::{self, Packet, Pid, Publish, QosPid, MAX_PACKET_SIZE};
//!
//! let publish = Publish::new(
//!     "devices/dev1/messages/events/",
//!     QosPid::AtLeastOnce(Pid::MIN),
//!     Bytes::from_static(b"{\"t\":21.5}"),
//! )?;
//! let mut wire = BytesMut::new();
//! Packet::from(publish.clone()).encode(&mut wire);
//! Packet::Pingreq.encode(&mut wire);
//!
//! // The receiving side, fed one byte short of the first packet:
//! let mut rx = BytesMut::from(&wire[..wire.len() - 3]);
//! assert_eq!(mqtt::decode(&mut rx, MAX_PACKET_SIZE)?, None);
//! rx.extend_from_slice(&wire[wire.len() - 3..]);
//! assert_eq!(mqtt::decode(&mut rx, MAX_PACKET_SIZE)?, Some(Packet::Publish(publish)));
//! assert_eq!(mqtt::decode(&mut rx, MAX_PACKET_SIZE)?, Some(Packet::Pingreq));
//! assert!(rx.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! **Fuzzing.** The property a fuzz target should assert: for any input,
//! [`decode`] never panics; for every packet `p` it returns, encoding `p`
//! gives `p.encoded_len()` bytes which decode to a packet equal to `p`
//! (consuming them all), and re-encoding that gives the same bytes. On
//! `Ok(None)` and `Err` the buffer is unchanged.
//!
//! Not checked here because they need state: that a CONNECT is the first
//! packet, that a server only sends CONNACK, SUBACK, ... and a client only
//! CONNECT, SUBSCRIBE, ... ; that an empty client id comes with clean
//! session. Control characters and non-characters in strings (which the
//! specification says SHOULD NOT appear) are accepted.

mod decode;
mod error;
mod packet;
mod string;
mod types;

#[cfg(test)]
mod tests;

use bytes::BytesMut;

pub use decode::decode;
pub use error::{BuildError, DecodeError};
pub use packet::{Connack, Connect, LastWill, Packet, Publish, Suback, Subscribe, Unsubscribe};
pub use string::{MAX_STRING_LEN, MqttStr, TopicFilter, TopicName};
pub use types::{ConnectReturnCode, PacketType, Pid, Protocol, QoS, QosPid, SubscribeReturnCode};

/// The largest remaining length four bytes can encode: 268,435,455 (§2.2.3).
pub const MAX_REMAINING_LENGTH: usize = 268_435_455;

/// The largest possible MQTT 3.1.1 packet, fixed header included:
/// 1 + 4 + [`MAX_REMAINING_LENGTH`] = 268,435,460 bytes. Passing it as the
/// maximum packet size means "no limit beyond the protocol's".
pub const MAX_PACKET_SIZE: usize = 1 + 4 + MAX_REMAINING_LENGTH;

/// How many bytes the remaining length `len` takes (1 to 4).
pub(crate) const fn remaining_length_len(len: usize) -> usize {
    if len < 128 {
        1
    } else if len < 16_384 {
        2
    } else if len < 2_097_152 {
        3
    } else {
        4
    }
}

/// [`decode`] with a remembered maximum packet size.
///
/// ```
/// # use bytes::BytesMut;
/// # use iothub_proto::mqtt::{Decoder, DecodeError};
/// let decoder = Decoder::new(1024);
/// // A PUBLISH announcing 2000 bytes is refused from its fixed header alone.
/// let mut buf = BytesMut::from(&[0x30, 0xD0, 0x0F][..]);
/// assert_eq!(
///     decoder.decode(&mut buf),
///     Err(DecodeError::PacketTooLarge { size: 2003, max: 1024 })
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decoder {
    max_packet_size: usize,
}

impl Decoder {
    /// A decoder refusing packets larger than `max_packet_size` bytes, fixed
    /// header included.
    #[must_use]
    pub const fn new(max_packet_size: usize) -> Decoder {
        Decoder { max_packet_size }
    }

    /// The maximum packet size, fixed header included.
    #[must_use]
    pub const fn max_packet_size(&self) -> usize {
        self.max_packet_size
    }

    /// Decodes one packet from the front of `buf`; see [`decode`].
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Packet>, DecodeError> {
        decode(buf, self.max_packet_size)
    }
}

impl Default for Decoder {
    /// No limit beyond the protocol's ([`MAX_PACKET_SIZE`]).
    fn default() -> Self {
        Decoder::new(MAX_PACKET_SIZE)
    }
}

/// Checks the codec's contract on arbitrary input and panics if it is
/// broken (see "Fuzzing" in the module docs). For the fuzz targets and the
/// property tests.
#[cfg(any(feature = "fuzzing", test))]
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn check_round_trip(data: &[u8], max_packet_size: usize) {
    let mut buf = BytesMut::from(data);
    loop {
        let before = buf.clone();
        match decode(&mut buf, max_packet_size) {
            Ok(Some(packet)) => {
                assert!(
                    buf.len() < before.len(),
                    "a decoded packet consumed nothing"
                );
                let mut encoded = BytesMut::new();
                packet.encode(&mut encoded);
                assert_eq!(encoded.len(), packet.encoded_len(), "encoded_len");
                let bytes = encoded.clone().freeze();
                let again = decode(&mut encoded, MAX_PACKET_SIZE);
                assert!(encoded.is_empty(), "re-decoding left bytes behind");
                let Ok(Some(again)) = again else {
                    unreachable!("decode(encode(p)) failed: {again:?}");
                };
                assert_eq!(again, packet, "decode(encode(p)) != p");
                assert_eq!(again.to_bytes(), bytes, "encode is not canonical");
            }
            Ok(None) | Err(_) => {
                assert_eq!(buf, before, "Ok(None) or Err changed the buffer");
                return;
            }
        }
    }
}
