//! # iothub-proto — the sans-IO core of an Azure IoT Hub device client
//!
//! **Contract.** This crate performs no I/O and reads no clock. It turns bytes
//! into typed values and typed values into bytes; the caller (a runtime
//! adapter such as `iothub-tokio`, or your own loop) owns sockets, TLS,
//! timers and threads. Every function is total: bad input gives a typed error,
//! never a panic.
//!
//! ## Driving a session
//!
//! The heart of the crate is [`session::Session`], a device session you
//! drive with four inputs and one output. **After any input or command,
//! call `poll_output` and act on what it says until it returns
//! `Timeout`; then wait for input or for that instant.** Time is an
//! argument ([`time::Instant`], milliseconds since an epoch you choose,
//! plus Unix seconds where SAS tokens need them); randomness comes from a
//! seed in the config.
//!
//! ```text
//! loop {
//!     match session.poll_output() {
//!         Output::Transmit(bytes) => socket.write_all(&bytes)?,
//!         Output::Transport(cmd) => open_or_close(cmd), // Open → session.handle_transport_connected(now(), unix())
//!         Output::Event(event) => app.handle(event),    // then session.taken(token) for a C2D message the app has
//!         Output::Timeout(at) => match wait(socket, at) {
//!             Read(data) => session.handle_input(now(), &data),
//!             Deadline => session.handle_timeout(now(), unix()),
//!             Closed(why) => session.handle_transport_closed(now(), why),
//!         },
//!     }
//! }
//! ```
//!
//! The provisioning session ([`provisioning::Session`]) is driven by the
//! same loop: both implement [`connection::Driven`], so one driver serves
//! both.
//!
//! Who owns what:
//!
//! | the adapter | the session |
//! |---|---|
//! | opening and closing sockets when told ([`session::TransportCommand`]) | deciding when a transport is wanted: first connect, backoff, SAS renewal, dead connections |
//! | TCP, TLS, WebSocket, proxies | CONNECT, keep-alive, subscriptions, packet ids, retries |
//! | reading the clocks | every timer, in one table ([`session::TimerKind`]) |
//! | handing events to the application, and saying when it has taken a message ([`session::Session::taken`]) | correlation, twin versions, exactly-once outcome events; acknowledging a message from the hub only once it is taken (at least once to the application) |
//!
//! ```text
//!   adapter (owns socket, TLS, clock)          iothub-proto (owns meaning)
//!   ─────────────────────────────────          ─────────────────────────────
//!   bytes read from the socket   ───────────▶  session::Session::handle_input
//!   bytes written to the socket  ◀───────────  Output::Transmit   ┐
//!   open / close the socket      ◀───────────  Output::Transport  │ session::Session::poll_output
//!   application events           ◀───────────  Output::Event      │
//!   when to wake up              ◀───────────  Output::Timeout    ┘
//!   now / Unix seconds           ───────────▶  handle_timeout, handle_transport_connected
//! ```
//!
//! The layers:
//!
//! - [`connection`] — the MQTT client connection both sessions stand on
//!   (CONNECT/CONNACK, keep-alive, decode, transmit queue, packet ids,
//!   backoff), the one [`connection::Output`] and the connection-level
//!   errors.
//! - [`session`] — the device session: the driving contract, the state
//!   machine, telemetry, twin, methods, cloud-to-device messages,
//!   SAS renewal and reconnection.
//! - [`provisioning`] — the Device Provisioning Service session, driven
//!   the same way: register, poll, and the hub and device id assigned
//!   ([`provisioning::Registration::device_config`] turns the result into a
//!   [`session::Config`]).
//! - [`pnp`] — IoT Plug and Play conventions: component telemetry,
//!   writable-property acknowledgements, component commands, desired
//!   properties per component.
//! - [`edge`] — IoT Edge modules: configuration from the IoT Edge
//!   environment, output messages, the workload API's sign and trust-bundle
//!   calls as HTTP/1.1 bytes and their parsing.
//! - [`time`] — the monotonic [`time::Instant`] the session runs on.
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
//! ## Features
//!
//! - `std` (default): nothing in this crate needs it; it only enables `std`
//!   in the dependencies. Without it the crate is `no_std` + `alloc`.
//!
//! The hub's side of the protocol (the IoT Hub and DPS engines behind
//! `iothub-emulator`, and the peer the session's integration tests run
//! against) is the `iothub-hub` crate.
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
pub mod connection;
pub mod edge;
pub mod mqtt;
pub mod pnp;
pub mod properties;
pub mod provisioning;
pub mod session;
pub mod time;
pub mod topic;

#[cfg(any(feature = "fuzzing", test))]
#[doc(hidden)]
pub mod fuzzing;
