//! # iothub-smol — a runtime-neutral async Azure IoT Hub device client
//!
//! The same client as `iothub-tokio` (`iothub-client`'s, with the same
//! methods), on `futures-io` streams (`async-net`), `async-io` timers,
//! `futures-rustls` (ring) and `async-tungstenite`: it runs under smol,
//! async-std or any executor. [`build`](iothub_client::ClientBuilder::build)
//! runs the client's driver on a thread of its own (`async_io::block_on`);
//! [`build_with_driver`](iothub_client::ClientBuilder::build_with_driver)
//! hands you the driver, a future to spawn on the executor of your
//! choice (it ends when the client stops).
//!
//! ```no_run
//! use iothub_smol::{Client, Message};
//!
//! # fn main() -> Result<(), iothub_smol::Error> {
//! smol::block_on(async {
//!     let (client, driver) =
//!         Client::builder("HostName=contoso.azure-devices.net;DeviceId=dev1;SharedAccessKey=...")
//!             .build_with_driver()
//!             .await?;
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
//!  Client (Clone) ──commands──▶ driver future ──bytes──▶ TCP / TLS / WebSocket
//!        ▲                        │ iothub_client's loop on AsyncIo: Core, Conn, one async-io Timer
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
//! the device (`Client::reprovision_needed`).
//!
//! ```no_run
//! # async fn run() -> Result<(), iothub_smol::Error> {
//! use iothub_smol::{Message, ProvisioningOptions, provision};
//!
//! let options = ProvisioningOptions::group_key("0ne00000A0A", "sensor-7", "<group key>")?;
//! let provisioned = provision(&options).await?; // assigned_hub, device_id
//! let client = provisioned.connect().await?;
//! client.send_telemetry(Message::new(&b"{\"t\":21.5}"[..])).await?;
//! # Ok(()) }
//! ```
//!
//! Logging: `tracing`; the driver runs in a span `iothub{client_id}`.
#![forbid(unsafe_code)]

mod rt;

use std::future::Future;

pub use iothub_client::ClientDriver;
pub use iothub_client::exports::*;
pub use iothub_client::handle::{Events, MethodRequest, Receipt};
pub use rt::AsyncIo;

/// An IoT Hub device or module client on `async-io`; see
/// [`iothub_client::AsyncClient`] for every method.
pub type Client = iothub_client::AsyncClient<AsyncIo>;

/// The builder of a [`Client`] (`Client::builder`).
pub type ClientBuilder = iothub_client::ClientBuilder<Client>;

/// What provisioning gave: the assignment, and the options of a client
/// for the assigned hub; [`connect`](iothub_client::AsyncProvisioned::connect)
/// starts it.
pub type Provisioned = iothub_client::AsyncProvisioned<AsyncIo>;

/// Provisions the device with the Device Provisioning Service: connects,
/// registers, polls until the registration is assigned, all inside the
/// returned future. Fails with [`Error::Provisioning`] when DPS refuses
/// the device or the registration fails, is disabled or times out, and
/// with [`Error::Options`] for bad options.
pub async fn provision(options: &ProvisioningOptions) -> Result<Provisioned, Error> {
    iothub_client::rt::provision::<AsyncIo>(options).await
}

/// Provisions, then starts a client for the assigned hub.
pub async fn provision_and_connect(
    options: &ProvisioningOptions,
) -> Result<(Client, Registration), Error> {
    iothub_client::rt::provision_and_connect::<AsyncIo>(options).await
}

/// Provisions, connects, and hands the client to `run`, provisioning
/// again whenever `policy` says so (the hub refused its credentials, or
/// connections kept failing): drops `run`'s future, shuts that client
/// down, provisions again and calls `run` with the new client. Returns
/// what `run` returns, or the first provisioning error.
///
/// ```no_run
/// # async fn demo(options: iothub_smol::ProvisioningOptions) -> Result<(), iothub_smol::Error> {
/// use iothub_smol::{Message, ReprovisionPolicy, run_provisioned};
///
/// run_provisioned(options, ReprovisionPolicy::default(), |client, registration| async move {
///     println!("connected as {} at {}", registration.device_id, registration.assigned_hub);
///     loop {
///         client.send_telemetry(Message::new(&b"{\"t\":21}"[..])).await?;
///         async_io::Timer::after(std::time::Duration::from_secs(60)).await;
///     }
/// })
/// .await
/// # }
/// ```
pub async fn run_provisioned<F, Fut>(
    options: ProvisioningOptions,
    policy: ReprovisionPolicy,
    run: F,
) -> Result<(), Error>
where
    F: FnMut(Client, Registration) -> Fut,
    Fut: Future<Output = Result<(), Error>>,
{
    iothub_client::rt::run_provisioned::<AsyncIo, F, Fut>(options, policy, run).await
}
