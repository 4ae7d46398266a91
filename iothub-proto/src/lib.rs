//! # iothub-proto — the sans-IO core of an Azure IoT Hub device client
//!
//! **Contract.** This crate performs no I/O and reads no clock. It turns bytes
//! into typed values and typed values into bytes; the caller (a runtime
//! adapter such as `iothub-tokio`, or your own loop) owns sockets, TLS,
//! timers and threads. Every function is total: bad input gives a typed error,
//! never a panic.
//!
//! ```text
//!   adapter (owns socket, TLS, clock)          iothub-proto (owns meaning)
//!   ─────────────────────────────────          ─────────────────────────────
//!   bytes read from the socket   ───────────▶  mqtt::decode  → mqtt::Packet
//!   bytes written to the socket  ◀───────────  mqtt::Packet::encode
//!   PUBLISH topic name           ───────────▶  topic::parse  → topic::HubTopic
//!   connection string, Unix time ───────────▶  auth          → CONNECT credentials
//! ```
//!
//! The layers available today:
//!
//! - [`mqtt`] — MQTT 3.1.1 codec for all 14 packet types, client and server
//!   side, incremental (`Ok(None)` means "need more bytes") and zero-copy
//!   (payloads are [`bytes::Bytes`] slices of the input).
//! - [`topic`] — the IoT Hub topic grammar: builders for every device→hub
//!   topic and subscription filter, and one parser for every hub→device topic.
//! - [`properties`] — message property bags (`$.mid=…&name=value`), with
//!   system properties as typed fields.
//! - [`auth`] — identities, connection strings, SAS tokens and the CONNECT
//!   credentials (client id, username, password).
//!
//! The device session (keep-alive, correlation, twin versions, reconnection)
//! is built on these layers and is described in the project README.
//!
//! ## Features
//!
//! - `std` (default): nothing in this crate needs it; it only enables `std`
//!   in the dependencies. Without it the crate is `no_std` + `alloc`.
//! - `hub`: [`hub::Hub`], the hub's side of the protocol as a sans-IO
//!   engine: the core of `iothub-emulator`, and the in-memory peer that
//!   tests drive a device session against in simulated time.
#![no_std]
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    warn(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::print_stdout,
        clippy::print_stderr
    )
)]

extern crate alloc;
#[cfg(any(feature = "std", test))]
extern crate std;

mod text;

pub mod auth;
pub mod mqtt;
pub mod properties;
pub mod topic;

#[cfg(any(feature = "hub", test))]
pub mod hub;

#[cfg(any(feature = "fuzzing", test))]
#[doc(hidden)]
pub mod fuzzing;
