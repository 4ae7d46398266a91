//! # iothub-tokio — an async Azure IoT Hub device client
//!
//! A thin [tokio] adapter around the sans-IO session of [`iothub_proto`]:
//! one driver task per client owns the session and the socket, moves
//! bytes, runs one timer and turns the session's events into futures and
//! streams. Every protocol decision (when to connect, backoff, SAS
//! renewal, keep-alive, retries, correlation) is the core's.
//!
//! ```no_run
//! use iothub_tokio::{Client, Message};
//!
//! # async fn run() -> Result<(), iothub_tokio::Error> {
//! let client = Client::from_connection_string(
//!     "HostName=contoso.azure-devices.net;DeviceId=dev1;SharedAccessKey=...",
//! )?;
//! client.send_telemetry(Message::new(&b"{\"t\":21.5}"[..])).await?; // resolves on PUBACK
//! let twin = client.get_twin().await?;
//! let version = client.update_reported(&serde_json::json!({"fw": "1.2"})).await?;
//! let mut methods = client.method_requests().await?;
//! while let Some(call) = methods.recv().await {
//!     call.respond(200, &b"{}"[..]).await?;
//! }
//! # let _ = (twin, version);
//! client.shutdown(std::time::Duration::from_secs(5)).await?;
//! # Ok(()) }
//! ```
//!
//! ```text
//!  Client (Clone) ──commands──▶ driver task ──bytes──▶ TCP / TLS / WebSocket
//!        ▲                        │ iothub_net::rt::Driver<Tokio>: DriverCore, Conn, one Sleep
//!        └──replies, streams,  ◀──┘ events
//!           watch<Status>
//! ```
//!
//! **Delivery.** Telemetry resolves on the hub's PUBACK (QoS 1) or once
//! written (QoS 0), or fails with a typed error: never silently lost.
//! Cloud-to-device and module input messages are delivered **at least once,
//! to the application**: each is acknowledged to the hub only when
//! `c2d_messages()` / `input_messages()` hands it to you (or when you call
//! `ack` with `Config::manual_ack`); until then the hub keeps it and sends it
//! again after a reconnection or a restart. Messages that arrive before you
//! ask for the stream are held, unacknowledged, and come first; those left
//! in a stream you drop go to the next one.
//!
//! **Provisioning.** [`provision`] registers the device with the Device
//! Provisioning Service (the core's provisioning session, over the same
//! transports) and returns the assignment with the [`ClientOptions`] for
//! the assigned hub; [`run_provisioned`] also provisions again when
//! [`ReprovisionPolicy`] says so (the hub refused the credentials, or
//! connections kept failing — [`Client::reprovision_needed`]).
//!
//! ```no_run
//! # async fn run() -> Result<(), iothub_tokio::Error> {
//! use iothub_tokio::{Message, ProvisioningOptions, provision};
//!
//! let options = ProvisioningOptions::group_key("0ne00000A0A", "sensor-7", "<group key>")?;
//! let provisioned = provision(&options).await?; // assigned_hub, device_id
//! let client = provisioned.connect()?;
//! client.send_telemetry(Message::new(&b"{\"t\":21.5}"[..])).await?;
//! # Ok(()) }
//! ```
//!
//! Transports ([`Transport`]): MQTT over TLS (8883), MQTT over WebSocket
//! over TLS (443, through an optional HTTP `CONNECT` [`Proxy`]), and plain
//! TCP for local tests only when asked for. TLS is rustls with the ring
//! provider (`futures-rustls`), trusting the webpki roots plus an optional
//! extra CA.
//!
//! The driver loop, the transport and the provisioning loop are
//! `iothub-net`'s one async implementation (`iothub_net::rt`, shared with
//! `iothub-smol`) on tokio's sockets (through `tokio-util`'s compat),
//! timer and tasks.
//!
//! Logging: the driver runs in a `tracing` span `iothub{client_id}`;
//! every transport attempt in a span `connect{attempt, host, port}`.
//! Connections, disconnections with their reason, SAS renewals and
//! reconnection delays are logged at `info`/`warn`.
#![forbid(unsafe_code)]

mod client;
#[cfg(unix)]
pub mod edge;
mod provision;
mod rt;
mod token;

pub use client::{Client, Events, MethodRequest};
pub use iothub_net::token::{SignerError, TokenRequest};
pub use iothub_net::{
    ClientOptions, DesiredUpdate, Error, InputMessage, OptionsError, ProvisioningOptions, Proxy,
    Status, TokenRequestFailure, Transport,
};
/// The sans-IO core, for every other type (errors, identities, options).
pub use iothub_proto as proto;
pub use iothub_proto::properties::MessageProperties;
pub use iothub_proto::provisioning::{Registration, ReprovisionPolicy, ReprovisionReason};
pub use iothub_proto::session::{
    AckToken, Config, ConnectionState, DisconnectReason, InboundMessage, Message, Qos, Twin,
};
pub use provision::{Provisioned, provision, provision_and_connect, run_provisioned};
