//! # iothub-emulator — a local Azure IoT Hub device endpoint
//!
//! Devices connect over MQTT 3.1.1 inside TLS (port 8883 by default), over
//! MQTT over WebSocket over TLS (`wss://…/$iothub/websocket`, subprotocol
//! `mqtt`), or — only when asked, for tests — over plain TCP. A service
//! REST API on loopback HTTP manages the registry, twins, direct methods,
//! cloud-to-device messages, stored telemetry and fault injection.
//!
//! **Device Provisioning Service.** A DPS endpoint on its own listeners
//! (MQTT over TLS, MQTT over WebSocket over TLS, plain TCP when asked),
//! with the same certificate, an ID scope ([`DEFAULT_ID_SCOPE`] unless
//! set) and individual and group enrollments
//! ([`EmulatorHandle::create_enrollment`],
//! [`EmulatorHandle::create_enrollment_group`], or the service API's
//! `/enrollments` and `/enrollmentGroups`). A device that provisions is
//! assigned to this emulator's hub and created in its registry with the
//! enrollment's key (for a group, the key derived for its registration
//! id), so it can connect right away with the key it provisioned with.
//! The rules are the core's sans-IO engine [`iothub_hub::dps::DpsService`].
//!
//! **One hub logic.** Every rule of the hub — CONNECT checks and CONNACK
//! codes, the CONNECT deadline, eviction, subscriptions, QoS, twins,
//! methods, C2D, will, keep-alive, token expiry, limits — lives in the
//! sans-IO engine [`iothub_hub::Hub`], the same one the core's tests drive in
//! simulated time. This crate only adds I/O around it:
//!
//! ```text
//!   sockets (TCP, TLS, WebSocket)  ──bytes──▶  Core::step(hub.handle_input)
//!   HTTP service API, library API  ──calls──▶  Core::step(hub.send_c2d, …)
//!   timer task (real clocks)       ──now───▶  Core::step(hub.handle_timeout)
//!                      after every step: hub.poll_ready    → connection writers
//!                                        hub.poll_change   → redb (storage thread)
//!                                        hub.take_telemetry → telemetry store
//!                                        hub.poll_method_result → method waiters
//! ```
//!
//! **Library use** (tests, the quickstart):
//!
//! ```no_run
//! # async fn demo() -> Result<(), iothub_emulator::EmulatorError> {
//! use std::time::Duration;
//! use iothub_emulator::Emulator;
//!
//! let emulator = Emulator::builder().in_memory().plain_mqtt(true).start().await?;
//! let device = emulator.create_device("dev1")?;
//! println!("connect to {} with {}", emulator.mqtt_addr(), device.connection_string());
//! let hello = emulator
//!     .wait_for_telemetry(|m| m.body_text() == Some("hello"), Duration::from_secs(10))
//!     .await;
//! emulator.shutdown().await;
//! # let _ = hello; Ok(()) }
//! ```
//!
//! **Modules.** Module identities have their own twins, methods and
//! telemetry; their input messages come from
//! [`EmulatorHandle::send_module_input`] and from IoT Edge routes between
//! modules ([`EmulatorHandle::set_route`], [`EmulatorBuilder::route`], the
//! service API's `/routes`), applied by the engine
//! ([`Hub::set_route`](iothub_hub::Hub::set_route)).
//!
//! Storage: with a data directory, the registry, twins, kept sessions,
//! pending C2D and module input messages, routes, and DPS enrollments and
//! registration records are kept in a redb database (`emulator.redb`), and
//! the generated TLS material in `tls/`; a restart loses none of them.
//! Telemetry is kept in memory only (the last 100,000 messages).
#![forbid(unsafe_code)]

mod builder;
mod conn;
mod core;
mod dps;
mod error;
mod handle;
mod http;
mod service;
mod store;
mod telemetry;
mod tls;
mod x509ca;

use std::time::Duration;

pub use conn::{WEBSOCKET_PATH, WEBSOCKET_SUBPROTOCOL};
pub use dps::{
    DEFAULT_DPS_RETRY_AFTER_SECS, DEFAULT_ID_SCOPE, DpsRegistration, EnrollmentAttestation,
    EnrollmentInfo, EnrollmentKind, EnrollmentSpec,
};
pub use iothub_hub::Authentication as DeviceAuthentication;
pub use iothub_hub::RetainProperty;
pub use service::{METHOD_TIMEOUT_RANGE, MethodReply};
pub use telemetry::ReceivedMessage;
pub use tls::thumbprint;

use crate::core::Service;

/// The host name devices use by default (in their connection strings, in
/// the CONNECT username and the SAS resource URI); the generated server
/// certificate is valid for it.
pub const DEFAULT_HOST_NAME: &str = "localhost";
/// The file name of the database inside the data directory.
pub const DATABASE_FILE: &str = "emulator.redb";
/// How long a connection to the hub or to DPS may go without an accepted
/// CONNECT, once its transport (and TLS or WebSocket handshake) is up,
/// before the emulator closes it: 30 s
/// ([`iothub_hub::DEFAULT_CONNECT_TIMEOUT`]); see
/// [`EmulatorBuilder::connect_timeout`].
pub const DEFAULT_CONNECT_TIMEOUT: Duration = iothub_hub::DEFAULT_CONNECT_TIMEOUT;
/// How long a write to a connection may block (the peer not reading)
/// before the emulator closes it: 10 s. IoT Hub documents no value.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// The most bytes waiting to be written to one hub connection before the
/// emulator closes it (a device that asks and never reads): 4 MiB, above
/// a full C2D queue (50 × 64 KB) delivered at once.
pub const DEFAULT_OUTPUT_LIMIT: usize = 4 << 20;
/// The most connections (hub and DPS, every transport) the emulator holds
/// at once: 50,000. A connection beyond it is closed at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 50_000;
/// The most connections without an accepted CONNECT (still in their TLS
/// or WebSocket handshake, or before CONNECT) held at once: 1,000. A
/// connection beyond it is closed at once; with the connect timeout, this
/// bounds what peers that never authenticate can hold.
pub const DEFAULT_MAX_PENDING_CONNECTIONS: usize = 1_000;

pub use builder::{Emulator, EmulatorBuilder};
pub use error::EmulatorError;
pub use handle::{DeviceInfo, EmulatorHandle, key_from_base64};
