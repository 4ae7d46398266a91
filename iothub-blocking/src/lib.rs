//! # iothub-blocking — a blocking Azure IoT Hub device client
//!
//! A thin adapter around the sans-IO session of [`iothub_proto`] made of
//! `std::net`, rustls and tungstenite: **no async runtime inside** (no
//! tokio, no `block_on`). One driver thread per client owns the session
//! and the connection and sleeps until the session's next deadline; every
//! protocol decision (when to connect, backoff, SAS renewal, keep-alive,
//! retries, correlation) is the core's, and the order of the driver's
//! steps and the routing of events are `iothub-client`'s, shared with the
//! tokio and smol adapters.
//!
//! ```no_run
//! use std::time::Duration;
//! use iothub_blocking::{Client, Message};
//!
//! # fn run() -> Result<(), iothub_blocking::Error> {
//! let client = Client::builder("HostName=contoso.azure-devices.net;DeviceId=dev1;SharedAccessKey=...")
//!     .build()?; // the driver on a thread of its own
//! client.send_telemetry(Message::new(&b"{\"t\":21.5}"[..]))?; // returns on PUBACK
//! let receipt = client.queue_telemetry(Message::new(&b"later"[..]))?; // or wait later
//! let twin = client.get_twin()?;
//! let version = client.update_reported(&serde_json::json!({"fw": "1.2"}))?;
//! for call in client.method_requests()? {                         // an iterator
//!     call.respond(200, &b"{}"[..])?;
//! }
//! receipt.wait()?;
//! # let _ = (twin, version);
//! client.shutdown(Duration::from_secs(5))?;
//! # Ok(()) }
//! ```
//!
//! **Making a client.** [`Client::builder`] takes the source of identity
//! and credentials — a connection string, [`ClientOptions`] (X.509, a
//! proxy, …), or an IoT Edge module ([`Source::edge_environment`]) — then
//! options ([`configure`](iothub_client::ClientBuilder::configure)) and an
//! optional custom [`token_signer`](iothub_client::ClientBuilder::token_signer)
//! (HSM, TPM); `build()` starts the driver on a thread of its own,
//! `build_with_driver()` hands it to you to [`run`](Driver::run) on yours.
//! It is the same builder, with the same methods and errors, as in
//! `iothub-tokio` and `iothub-smol`.
//!
//! **Delivery.** `send_telemetry` returns on the hub's PUBACK (QoS 1) or once
//! written (QoS 0), or fails with a typed error: never silently lost.
//! Cloud-to-device and module input messages are delivered **at least once,
//! to the application**: each is acknowledged to the hub only when
//! `c2d_messages()` / `input_messages()` hands it to you (or when you call
//! `ack` with `Config::manual_ack`); until then the hub keeps it and sends it
//! again after a reconnection or a restart. Messages that arrive before you
//! ask for the stream are held, unacknowledged, and come first; those left
//! in a stream you drop go to the next one.
//!
//! ## How the driver waits
//!
//! ```text
//!  Client (Clone) ──commands──▶ ┌ driver thread ──────────────────┐ ──write──▶ TCP / TLS / WebSocket
//!                               │ owns Session, TLS state, WS     │
//!  connection thread ──bytes──▶ │ sleeps in recv_timeout(deadline │
//!   (reads the socket)          │   − now) on ONE channel         │
//!        ▲                      └─────────────────────────────────┘
//!        └── replies (mpsc), streams (Iterator), StatusWatch
//! ```
//!
//! A driver must wake for two things at once: bytes on the socket and
//! commands from other threads. `std` cannot wait on a socket and a
//! channel together without `poll(2)` (which needs `unsafe` or a non-std
//! crate), and a self-pipe or loopback socket pair only helps a thread
//! that waits *in* `poll`. So each connection has a small reader thread
//! that blocks in `read` on its own clone of the socket and forwards raw
//! bytes into the driver's channel, and the driver sleeps in
//! `Receiver::recv_timeout(deadline − now)` — str0m's
//! `set_read_timeout(deadline − now)` loop, with the channel as the one
//! thing it reads. A command wakes it at once (no polling tick, no
//! latency added), timers fire on time, and an idle client does not
//! wake at all between deadlines. The reader thread also does the
//! blocking connect and TLS/WebSocket handshakes, so the driver keeps
//! answering commands while a connection is being opened; it ends when
//! the driver shuts its socket down.
//!
//! TLS is rustls (ring provider): a `StreamOwned` for the handshake,
//! then the driver keeps the `ClientConnection` and feeds it the bytes
//! the reader thread forwards. WebSocket is tungstenite over an in-memory
//! buffer, so it needs no socket of its own.
//!
//! ## Provisioning
//!
//! [`provision`] registers the device with the Device Provisioning
//! Service (DPS) on the calling thread, over the same transports, and
//! returns the assigned hub with the options of a client for it;
//! [`run_provisioned`] provisions again whenever the hub stops accepting
//! the device ([`Client::reprovision_needed`]).
//!
//! ```no_run
//! # fn run() -> Result<(), iothub_blocking::Error> {
//! use iothub_blocking::{Message, ProvisioningOptions, provision};
//!
//! let options = ProvisioningOptions::group_key("0ne00000A0A", "sensor-7", "<group key>")?;
//! let provisioned = provision(&options)?; // assigned_hub, device_id
//! let client = provisioned.connect()?;
//! client.send_telemetry(Message::new(&b"{\"t\":21.5}"[..]))?;
//! # Ok(()) }
//! ```
//!
//!
//! Logging: `tracing`, in a span `iothub{client_id}` on the driver thread.
#![forbid(unsafe_code)]

mod client;
mod driver;
#[cfg(unix)]
mod edge;
mod provision;
mod token;
mod transport;

pub use client::{Client, Events, MethodRequest, Receipt};
pub use driver::Driver;
pub use iothub_client::exports::*;
pub use provision::{Provisioned, provision, provision_and_connect, run_provisioned};

/// The builder of a [`Client`] ([`Client::builder`]).
pub type ClientBuilder = iothub_client::ClientBuilder<Client>;
