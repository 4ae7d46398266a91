//! # iothub-tokio — an async Azure IoT Hub device client
//!
//! The [tokio] face of `iothub-client`: one driver task per client owns
//! the sans-IO session of [`iothub_proto`] and the socket, moves bytes,
//! runs one timer and turns the session's events into futures and
//! streams. Every protocol decision (when to connect, backoff, SAS
//! renewal, keep-alive, retries, correlation) is the core's; the client,
//! its driver loop, transports and provisioning are `iothub-client`'s,
//! shared with `iothub-smol` — this crate is tokio's sockets (through
//! `tokio-util`'s compat), timer and tasks.
//!
//! ```no_run
//! use iothub_tokio::{Client, Message};
//!
//! # async fn run() -> Result<(), iothub_tokio::Error> {
//! let client = Client::builder("HostName=contoso.azure-devices.net;DeviceId=dev1;SharedAccessKey=...")
//!     .build()
//!     .await?; // the driver task runs on the current runtime
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
//!        ▲                        │ iothub_client's loop on Tokio: Core, Conn, one Sleep
//!        └──replies, streams,  ◀──┘ events
//!           StatusWatch
//! ```
//!
//! **Making a client.** [`Client::builder`] takes the source of identity
//! and credentials — a connection string, [`ClientOptions`] (X.509, a
//! proxy, …), or an IoT Edge module ([`Source::edge_environment`]) — then
//! options ([`configure`](iothub_client::ClientBuilder::configure)) and an
//! optional custom [`token_signer`](iothub_client::ClientBuilder::token_signer)
//! (HSM, TPM); `build().await` starts the driver as a task of the current
//! runtime, `build_with_driver().await` hands it to you.
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
//! connections kept failing — `Client::reprovision_needed`).
//!
//! ```no_run
//! # async fn run() -> Result<(), iothub_tokio::Error> {
//! use iothub_tokio::{Message, ProvisioningOptions, provision};
//!
//! let options = ProvisioningOptions::group_key("0ne00000A0A", "sensor-7", "<group key>")?;
//! let provisioned = provision(&options).await?; // assigned_hub, device_id
//! let client = provisioned.connect().await?;
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
//! Logging: the driver runs in a `tracing` span `iothub{client_id}`;
//! every transport attempt in a span `connect{attempt, host, port}`.
//! Connections, disconnections with their reason, SAS renewals and
//! reconnection delays are logged at `info`/`warn`.
#![forbid(unsafe_code)]

mod rt;

use std::future::Future;

pub use iothub_client::ClientDriver;
pub use iothub_client::exports::*;
pub use iothub_client::handle::{Events, MethodRequest, Receipt};
pub use rt::Tokio;

/// An IoT Hub device or module client on tokio; see
/// [`iothub_client::AsyncClient`] for every method.
pub type Client = iothub_client::AsyncClient<Tokio>;

/// The builder of a [`Client`] (`Client::builder`).
pub type ClientBuilder = iothub_client::ClientBuilder<Client>;

/// What provisioning gave: the assignment, and the options of a client
/// for the assigned hub; [`connect`](iothub_client::AsyncProvisioned::connect)
/// starts it.
pub type Provisioned = iothub_client::AsyncProvisioned<Tokio>;

/// Provisions the device with the Device Provisioning Service: connects,
/// registers, polls until the registration is assigned, and returns the
/// assignment with the options of a client for the assigned hub. Fails
/// with [`Error::Provisioning`] when DPS refuses the device or the
/// registration fails, is disabled or times out, and with
/// [`Error::Options`] for bad options.
pub async fn provision(options: &ProvisioningOptions) -> Result<Provisioned, Error> {
    iothub_client::rt::provision::<Tokio>(options).await
}

/// Provisions, then starts a client for the assigned hub.
pub async fn provision_and_connect(
    options: &ProvisioningOptions,
) -> Result<(Client, Registration), Error> {
    iothub_client::rt::provision_and_connect::<Tokio>(options).await
}

/// Provisions, connects, and hands the client to `run`, provisioning
/// again whenever `policy` says so (the hub refused its credentials, or
/// connections kept failing): drops `run`'s future, shuts that client
/// down, provisions again and calls `run` with the new client. Returns
/// what `run` returns, or the first provisioning error.
///
/// ```no_run
/// # async fn demo(options: iothub_tokio::ProvisioningOptions) -> Result<(), iothub_tokio::Error> {
/// use iothub_tokio::{Message, ReprovisionPolicy, run_provisioned};
///
/// run_provisioned(options, ReprovisionPolicy::default(), |client, registration| async move {
///     println!("connected as {} at {}", registration.device_id, registration.assigned_hub);
///     loop {
///         client.send_telemetry(Message::new(&b"{\"t\":21}"[..])).await?;
///         tokio::time::sleep(std::time::Duration::from_secs(60)).await;
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
    iothub_client::rt::run_provisioned::<Tokio, F, Fut>(options, policy, run).await
}
