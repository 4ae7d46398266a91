//! # iothub-smol — a runtime-neutral async Azure IoT Hub device client
//!
//! The same client as `iothub-tokio`, on `futures-io` streams
//! (`async-net`), `async-io` timers, `futures-rustls` (ring) and
//! `async-tungstenite`: it runs under smol, async-std or any executor,
//! because the client never spawns anything itself. [`Client::new`]
//! returns the client and its [`Driver`], a future you spawn on the
//! executor of your choice; it ends when the client stops. The order of
//! the driver's steps and the routing of events are `iothub-net`'s,
//! shared with the tokio and blocking adapters; the driver loop, the
//! transport and the provisioning loop are `iothub-net`'s one async
//! implementation (`iothub_net::rt`), shared with `iothub-tokio`.
//!
//! ```no_run
//! use iothub_smol::{Client, Message};
//!
//! # fn main() -> Result<(), iothub_smol::Error> {
//! smol::block_on(async {
//!     let (client, driver) = Client::from_connection_string(
//!         "HostName=contoso.azure-devices.net;DeviceId=dev1;SharedAccessKey=...",
//!     )?;
//!     smol::spawn(driver).detach(); // or async_std::task::spawn(driver)
//!     client.send_telemetry(Message::new(&b"{\"t\":21.5}"[..])).await?; // resolves on PUBACK
//!     let twin = client.get_twin().await?;
//!     let version = client.update_reported(&serde_json::json!({"fw": "1.2"})).await?;
//!     let mut methods = client.method_requests().await?; // a Stream
//!     while let Some(call) = methods.recv().await {
//!         call.respond(200, &b"{}"[..]).await?;
//!     }
//!     # let _ = (twin, version);
//!     client.shutdown(std::time::Duration::from_secs(5)).await
//! })
//! # }
//! ```
//!
//! ```text
//!  Client (Clone) ──commands──▶ Driver future ──bytes──▶ TCP / TLS / WebSocket
//!        ▲                        │ iothub_net::rt::Driver<AsyncIo>: DriverCore, Conn, one async-io Timer
//!        └──replies, streams,  ◀──┘ events
//!           StatusWatch
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
//! ## Provisioning
//!
//! [`provision`] registers the device with the Device Provisioning
//! Service (DPS) inside the caller's future, over the same transports,
//! and returns the assigned hub with the options of a client for it;
//! [`run_provisioned`] provisions again whenever the hub stops accepting
//! the device ([`Client::reprovision_needed`]).
//!
//! ```no_run
//! # async fn run() -> Result<(), iothub_smol::Error> {
//! use iothub_smol::{Message, ProvisioningOptions, provision};
//!
//! let options = ProvisioningOptions::group_key("0ne00000A0A", "sensor-7", "<group key>")?;
//! let provisioned = provision(&options).await?; // assigned_hub, device_id
//! let (client, driver) = provisioned.connect()?;
//! smol::spawn(driver).detach();
//! client.send_telemetry(Message::new(&b"{\"t\":21.5}"[..])).await?;
//! # Ok(()) }
//! ```
//!
//! Logging: `tracing`; the driver runs in a span `iothub{client_id}`.
#![forbid(unsafe_code)]

mod client;
mod driver;
#[cfg(unix)]
pub mod edge;
mod provision;
mod rt;
mod token;

pub use client::{Client, Events, MethodRequest};
pub use driver::Driver;
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
