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

mod conn;
mod core;
mod dps;
mod http;
mod service;
mod store;
mod telemetry;
mod tls;
mod x509ca;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use iothub_hub::routes::Route;
use iothub_hub::{Authentication, Hub, Twin};
use iothub_proto::auth::{Identity, SharedAccessKey};
use iothub_proto::mqtt::ConnectReturnCode;
use iothub_proto::properties::MessageProperties;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

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

use crate::core::{Core, Service};
use crate::dps::DpsState;

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

/// What went wrong.
#[derive(Debug)]
#[non_exhaustive]
pub enum EmulatorError {
    /// No such device or module.
    NotFound(String),
    /// The device is not connected, or not subscribed to what the
    /// operation needs (direct methods: `$iothub/methods/POST/#`).
    NotConnected,
    /// A direct method got no answer within its response timeout.
    Timeout,
    /// The request is malformed or not allowed.
    BadRequest(String),
    /// A message or twin section over its limit.
    TooLarge {
        /// Its size in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The device already has this many C2D messages pending.
    QueueFull {
        /// The limit (50).
        max: usize,
    },
    /// The emulator is shutting down.
    Shutdown,
    /// A configuration the emulator refuses (a non-loopback address, …).
    Config(String),
    /// Certificates or keys could not be made or read.
    Tls(String),
    /// The database failed.
    Storage(String),
    /// A socket or file operation failed.
    Io(std::io::Error),
}

impl std::fmt::Display for EmulatorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EmulatorError::NotFound(m) => write!(f, "not found: {m}"),
            EmulatorError::NotConnected => {
                f.write_str("the device is not connected or not subscribed")
            }
            EmulatorError::Timeout => f.write_str("the device did not answer in time"),
            EmulatorError::BadRequest(m) => write!(f, "bad request: {m}"),
            EmulatorError::TooLarge { size, max } => {
                write!(f, "{size} bytes is over the limit of {max}")
            }
            EmulatorError::QueueFull { max } => write!(f, "{max} messages are already pending"),
            EmulatorError::Shutdown => f.write_str("the emulator is shutting down"),
            EmulatorError::Config(m) => write!(f, "configuration: {m}"),
            EmulatorError::Tls(m) => write!(f, "TLS: {m}"),
            EmulatorError::Storage(m) => write!(f, "storage: {m}"),
            EmulatorError::Io(e) => write!(f, "I/O: {e}"),
        }
    }
}

impl std::error::Error for EmulatorError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            EmulatorError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<std::io::Error> for EmulatorError {
    fn from(e: std::io::Error) -> EmulatorError {
        EmulatorError::Io(e)
    }
}

/// A registered device or module, as the registry shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeviceInfo {
    /// Who.
    pub identity: Identity,
    /// The hub host name for its connection string.
    pub host_name: String,
    /// How it authenticates (its `Debug` hides the keys).
    pub authentication: Authentication,
    /// Whether it has a live connection.
    pub connected: bool,
    /// How many C2D (or module input) messages wait for its PUBACK.
    pub pending_c2d: usize,
}

impl DeviceInfo {
    /// The primary symmetric key, base64 (SAS identities only).
    #[must_use]
    pub fn primary_key(&self) -> Option<String> {
        match &self.authentication {
            Authentication::Sas { primary, .. } => Some(STANDARD.encode(primary.expose_secret())),
            _ => None,
        }
    }

    /// The secondary symmetric key, base64, if any.
    #[must_use]
    pub fn secondary_key(&self) -> Option<String> {
        match &self.authentication {
            Authentication::Sas {
                secondary: Some(k), ..
            } => Some(STANDARD.encode(k.expose_secret())),
            _ => None,
        }
    }

    /// A ready connection string:
    /// `HostName=…;DeviceId=…[;ModuleId=…];SharedAccessKey=…` (primary
    /// key), or `…;x509=true` for an X.509 identity.
    #[must_use]
    pub fn connection_string(&self) -> String {
        let mut s = format!(
            "HostName={};DeviceId={}",
            self.host_name,
            self.identity.device_id()
        );
        if let Some(m) = self.identity.module_id() {
            s.push_str(";ModuleId=");
            s.push_str(m.as_str());
        }
        match self.primary_key() {
            Some(k) => {
                s.push_str(";SharedAccessKey=");
                s.push_str(&k);
            }
            None => s.push_str(";x509=true"),
        }
        s
    }
}

/// Entry point: [`Emulator::builder`].
#[derive(Debug)]
pub struct Emulator;

impl Emulator {
    /// A builder with the library defaults: loopback, ephemeral ports,
    /// in memory, no plain MQTT listener.
    #[must_use]
    pub fn builder() -> EmulatorBuilder {
        EmulatorBuilder::default()
    }
}

/// How to start an emulator. Every port 0 means "any free port".
#[derive(Debug, Clone)]
pub struct EmulatorBuilder {
    data_dir: Option<PathBuf>,
    bind: IpAddr,
    allow_non_loopback: bool,
    host_name: String,
    mqtt_port: u16,
    ws_port: u16,
    http_port: u16,
    plain_mqtt: Option<u16>,
    tls_files: Option<(PathBuf, PathBuf)>,
    devices: Vec<String>,
    id_scope: String,
    dps_port: u16,
    dps_ws_port: u16,
    plain_dps: Option<u16>,
    dps_retry_after: u32,
    enrollments: Vec<String>,
    enrollment_groups: Vec<String>,
    routes: Vec<(String, String)>,
    connect_timeout: Option<Duration>,
    retain_property: RetainProperty,
}

impl Default for EmulatorBuilder {
    fn default() -> EmulatorBuilder {
        EmulatorBuilder {
            data_dir: None,
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            allow_non_loopback: false,
            host_name: DEFAULT_HOST_NAME.to_owned(),
            mqtt_port: 0,
            ws_port: 0,
            http_port: 0,
            plain_mqtt: None,
            tls_files: None,
            devices: Vec::new(),
            id_scope: DEFAULT_ID_SCOPE.to_owned(),
            dps_port: 0,
            dps_ws_port: 0,
            plain_dps: None,
            dps_retry_after: DEFAULT_DPS_RETRY_AFTER_SECS,
            enrollments: Vec::new(),
            enrollment_groups: Vec::new(),
            routes: Vec::new(),
            connect_timeout: Some(DEFAULT_CONNECT_TIMEOUT),
            retain_property: RetainProperty::default(),
        }
    }
}

impl EmulatorBuilder {
    /// Keep the registry, twins, sessions, pending C2D and the generated
    /// TLS material in `dir` (created if needed).
    #[must_use]
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Keep nothing on disk (the default): the generated CA goes to a
    /// temporary directory removed at shutdown.
    #[must_use]
    pub fn in_memory(mut self) -> Self {
        self.data_dir = None;
        self
    }

    /// The address to listen on (default 127.0.0.1). A non-loopback
    /// address is refused unless [`allow_non_loopback`](Self::allow_non_loopback).
    #[must_use]
    pub fn bind(mut self, addr: IpAddr) -> Self {
        self.bind = addr;
        self
    }

    /// Allows listening on a non-loopback address (off by default: the
    /// emulator has no access control beyond device credentials).
    #[must_use]
    pub fn allow_non_loopback(mut self, allow: bool) -> Self {
        self.allow_non_loopback = allow;
        self
    }

    /// The hub host name devices must use (default `localhost`).
    #[must_use]
    pub fn host_name(mut self, name: impl Into<String>) -> Self {
        self.host_name = name.into();
        self
    }

    /// The MQTT-over-TLS port (default 0: ephemeral).
    #[must_use]
    pub fn mqtt_port(mut self, port: u16) -> Self {
        self.mqtt_port = port;
        self
    }

    /// The MQTT-over-WebSocket-over-TLS port (default 0: ephemeral).
    #[must_use]
    pub fn ws_port(mut self, port: u16) -> Self {
        self.ws_port = port;
        self
    }

    /// The HTTP service API port (default 0: ephemeral).
    #[must_use]
    pub fn http_port(mut self, port: u16) -> Self {
        self.http_port = port;
        self
    }

    /// Also listen for plain (unencrypted) MQTT on an ephemeral port.
    #[must_use]
    pub fn plain_mqtt(mut self, on: bool) -> Self {
        self.plain_mqtt = on.then_some(0);
        self
    }

    /// Also listen for plain MQTT on `port` (0: ephemeral).
    #[must_use]
    pub fn plain_mqtt_port(mut self, port: u16) -> Self {
        self.plain_mqtt = Some(port);
        self
    }

    /// Serve this certificate chain and key (PEM files) instead of the
    /// generated ones.
    #[must_use]
    pub fn tls_pem(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.tls_files = Some((cert.into(), key.into()));
        self
    }

    /// Register this device at start (keys generated; an existing device
    /// keeps its keys).
    #[must_use]
    pub fn device(mut self, id: impl Into<String>) -> Self {
        self.devices.push(id.into());
        self
    }

    /// The DPS ID scope devices provision with (default
    /// [`DEFAULT_ID_SCOPE`]; ASCII letters and digits).
    #[must_use]
    pub fn id_scope(mut self, id_scope: impl Into<String>) -> Self {
        self.id_scope = id_scope.into();
        self
    }

    /// The DPS MQTT-over-TLS port (default 0: ephemeral).
    #[must_use]
    pub fn dps_port(mut self, port: u16) -> Self {
        self.dps_port = port;
        self
    }

    /// The DPS MQTT-over-WebSocket-over-TLS port, path [`WEBSOCKET_PATH`]
    /// (default 0: ephemeral).
    #[must_use]
    pub fn dps_ws_port(mut self, port: u16) -> Self {
        self.dps_ws_port = port;
        self
    }

    /// Also serve DPS over plain (unencrypted) MQTT on an ephemeral port.
    #[must_use]
    pub fn plain_dps(mut self, on: bool) -> Self {
        self.plain_dps = on.then_some(0);
        self
    }

    /// Also serve DPS over plain MQTT on `port` (0: ephemeral).
    #[must_use]
    pub fn plain_dps_port(mut self, port: u16) -> Self {
        self.plain_dps = Some(port);
        self
    }

    /// The `retry-after` (seconds) DPS asks devices to wait before they
    /// poll (default [`DEFAULT_DPS_RETRY_AFTER_SECS`]).
    #[must_use]
    pub fn dps_retry_after(mut self, seconds: u32) -> Self {
        self.dps_retry_after = seconds;
        self
    }

    /// How long a connection (hub or DPS, any transport) may go without an
    /// accepted CONNECT, counted once its TLS or WebSocket handshake is
    /// done, before the emulator closes it, as IoT Hub does: a client that
    /// connects and sends nothing, or only part of a CONNECT, does not keep
    /// its socket. `None` turns the deadline off. Default
    /// [`DEFAULT_CONNECT_TIMEOUT`] (30 s).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The application property (value `true`) that marks telemetry
    /// published with RETAIN, and a retained will: IoT Hub stores no
    /// retained message, it passes it on marked. Default
    /// [`RetainProperty::MqttRetain`] (`mqtt-retain`, Microsoft's current
    /// docs); [`RetainProperty::XOptRetain`] is the seed document's
    /// `x-opt-retain`.
    #[must_use]
    pub fn retain_property(mut self, property: RetainProperty) -> Self {
        self.retain_property = property;
        self
    }

    /// Create an individual DPS enrollment at start (symmetric keys
    /// generated; an existing enrollment is left as it is).
    #[must_use]
    pub fn enrollment(mut self, registration_id: impl Into<String>) -> Self {
        self.enrollments.push(registration_id.into());
        self
    }

    /// Create a DPS enrollment group at start (group keys generated; an
    /// existing group is left as it is).
    #[must_use]
    pub fn enrollment_group(mut self, group_id: impl Into<String>) -> Self {
        self.enrollment_groups.push(group_id.into());
        self
    }

    /// Set the IoT Edge route `name` at start (replacing a stored route of
    /// that name), e.g. `FROM /messages/modules/filter/outputs/out1 INTO
    /// BrokeredEndpoint("/modules/sink/inputs/in1")`; see
    /// [`EmulatorHandle::set_route`]. An invalid route makes
    /// [`start`](Self::start) fail with [`EmulatorError::Config`].
    #[must_use]
    pub fn route(mut self, name: impl Into<String>, route: impl Into<String>) -> Self {
        self.routes.push((name.into(), route.into()));
        self
    }

    /// Binds every listener, restores the stored state and starts serving.
    pub async fn start(self) -> Result<EmulatorHandle, EmulatorError> {
        if !self.bind.is_loopback() && !self.allow_non_loopback {
            return Err(EmulatorError::Config(format!(
                "{} is not a loopback address (allow it explicitly to listen there)",
                self.bind
            )));
        }
        let hub_host = iothub_proto::auth::HostName::new(self.host_name.as_str())
            .map_err(|e| EmulatorError::Config(format!("host name: {e}")))?;
        let mut dps = DpsState::new(&self.id_scope, hub_host, self.dps_retry_after)?;
        let mut temp_dir = None;
        let (tls, store) = match &self.data_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                let tls = match &self.tls_files {
                    Some((c, k)) => tls::from_files(c, k)?,
                    None => tls::generated(&dir.join("tls"))?,
                };
                let (store, states) = store::Store::open(&dir.join(DATABASE_FILE))?;
                (tls, Some((store, states)))
            }
            None => {
                let tls = match &self.tls_files {
                    Some((c, k)) => tls::from_files(c, k)?,
                    None => {
                        let t = tempfile::Builder::new()
                            .prefix("iothub-emulator-")
                            .tempdir()?;
                        let tls = tls::generated(t.path())?;
                        temp_dir = Some(t);
                        tls
                    }
                };
                (tls, None)
            }
        };
        let mut hub = Hub::new(&self.host_name);
        hub.set_connect_timeout(self.connect_timeout);
        hub.set_retain_property(self.retain_property);
        dps.svc.set_connect_timeout(self.connect_timeout);
        let store = store.map(|(store, stored)| {
            for s in stored.identities {
                hub.restore_identity(s);
            }
            dps.restore(&stored.enrollments);
            dps.restore_registrations(&stored.registrations);
            for (name, text) in &stored.routes {
                match Route::parse(text) {
                    Ok(route) => {
                        hub.set_route(name, route);
                    }
                    Err(e) => tracing::warn!(route = %name, "stored route skipped: {e}"),
                }
            }
            store
        });
        let core = Core::new(hub, dps, store);
        for id in &self.devices {
            core.create_identity(&service::parse_target(id)?, None)?;
        }
        for id in &self.enrollments {
            core.ensure_enrollment(EnrollmentKind::Individual, id)?;
        }
        for id in &self.enrollment_groups {
            core.ensure_enrollment(EnrollmentKind::Group, id)?;
        }
        for (name, text) in &self.routes {
            core.set_route(name, text).map_err(|e| match e {
                EmulatorError::BadRequest(m) => EmulatorError::Config(m),
                other => other,
            })?;
        }

        let bind = |port| TcpListener::bind(SocketAddr::new(self.bind, port));
        let mqtt = bind(self.mqtt_port).await?;
        let ws = bind(self.ws_port).await?;
        let http = bind(self.http_port).await?;
        let plain = match self.plain_mqtt {
            Some(p) => Some(bind(p).await?),
            None => None,
        };
        let dps_tls = bind(self.dps_port).await?;
        let dps_ws = bind(self.dps_ws_port).await?;
        let plain_dps = match self.plain_dps {
            Some(p) => Some(bind(p).await?),
            None => None,
        };
        let addrs = Addrs {
            mqtt: mqtt.local_addr()?,
            ws: ws.local_addr()?,
            http: http.local_addr()?,
            plain: plain.as_ref().map(TcpListener::local_addr).transpose()?,
            dps: dps_tls.local_addr()?,
            dps_ws: dps_ws.local_addr()?,
            plain_dps: plain_dps
                .as_ref()
                .map(TcpListener::local_addr)
                .transpose()?,
        };
        let (stop_tx, stop) = watch::channel(false);
        let acceptor = TlsAcceptor::from(tls.config.clone());
        let mut tasks = vec![
            tokio::spawn(core.clone().run_timer(stop.clone())),
            tokio::spawn(http::serve(core.clone(), http, stop.clone())),
        ];
        let listeners = [
            (Some(mqtt), Service::Hub, conn::Kind::Tls),
            (Some(ws), Service::Hub, conn::Kind::WebSocket),
            (plain, Service::Hub, conn::Kind::Plain),
            (Some(dps_tls), Service::Dps, conn::Kind::Tls),
            (Some(dps_ws), Service::Dps, conn::Kind::WebSocket),
            (plain_dps, Service::Dps, conn::Kind::Plain),
        ];
        for (listener, service, kind) in listeners {
            if let Some(listener) = listener {
                tasks.push(tokio::spawn(conn::listen(
                    core.clone(),
                    listener,
                    service,
                    kind,
                    acceptor.clone(),
                    stop.clone(),
                )));
            }
        }
        tracing::info!(
            mqtt = %addrs.mqtt, ws = %addrs.ws, http = %addrs.http,
            plain = ?addrs.plain, dps = %addrs.dps, dps_ws = %addrs.dps_ws,
            plain_dps = ?addrs.plain_dps, id_scope = %self.id_scope,
            "iothub-emulator started"
        );
        Ok(EmulatorHandle {
            core,
            addrs,
            ca_pem: tls.ca_pem,
            ca_path: tls.ca_path,
            stop: stop_tx,
            tasks,
            _temp_dir: temp_dir,
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct Addrs {
    mqtt: SocketAddr,
    ws: SocketAddr,
    http: SocketAddr,
    plain: Option<SocketAddr>,
    dps: SocketAddr,
    dps_ws: SocketAddr,
    plain_dps: Option<SocketAddr>,
}

/// A running emulator. Dropping it stops the listeners without waiting;
/// [`shutdown`](Self::shutdown) also closes every connection and commits
/// storage.
#[derive(Debug)]
pub struct EmulatorHandle {
    core: Arc<Core>,
    addrs: Addrs,
    ca_pem: Option<String>,
    ca_path: Option<PathBuf>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    _temp_dir: Option<tempfile::TempDir>,
}

impl EmulatorHandle {
    /// The MQTT-over-TLS listener.
    #[must_use]
    pub fn mqtt_addr(&self) -> SocketAddr {
        self.addrs.mqtt
    }

    /// The MQTT-over-WebSocket-over-TLS listener (path [`WEBSOCKET_PATH`]).
    #[must_use]
    pub fn ws_addr(&self) -> SocketAddr {
        self.addrs.ws
    }

    /// The HTTP service API.
    #[must_use]
    pub fn http_addr(&self) -> SocketAddr {
        self.addrs.http
    }

    /// The plain MQTT listener, if one was asked for.
    #[must_use]
    pub fn plain_addr(&self) -> Option<SocketAddr> {
        self.addrs.plain
    }

    /// The hub host name devices use.
    #[must_use]
    pub fn host_name(&self) -> String {
        self.core.lock().hub.host_name().to_owned()
    }

    /// The DPS MQTT-over-TLS listener.
    #[must_use]
    pub fn dps_addr(&self) -> SocketAddr {
        self.addrs.dps
    }

    /// The DPS MQTT-over-WebSocket-over-TLS listener (path
    /// [`WEBSOCKET_PATH`]).
    #[must_use]
    pub fn dps_ws_addr(&self) -> SocketAddr {
        self.addrs.dps_ws
    }

    /// The plain DPS listener, if one was asked for.
    #[must_use]
    pub fn plain_dps_addr(&self) -> Option<SocketAddr> {
        self.addrs.plain_dps
    }

    /// The DPS ID scope devices provision with.
    #[must_use]
    pub fn id_scope(&self) -> String {
        self.core.lock().dps.id_scope().to_owned()
    }

    /// Creates an individual DPS enrollment with generated primary and
    /// secondary symmetric keys, or returns the existing one unchanged. A
    /// device registers as `registration_id` with
    /// [`EnrollmentInfo::device_key`].
    pub fn create_enrollment(
        &self,
        registration_id: &str,
    ) -> Result<EnrollmentInfo, EmulatorError> {
        self.core
            .ensure_enrollment(EnrollmentKind::Individual, registration_id)
    }

    /// Creates an enrollment group with generated primary and secondary
    /// group keys, or returns the existing one unchanged. A device
    /// registers with the group key derived for its registration id
    /// ([`EnrollmentInfo::device_key`]).
    pub fn create_enrollment_group(&self, group_id: &str) -> Result<EnrollmentInfo, EmulatorError> {
        self.core.ensure_enrollment(EnrollmentKind::Group, group_id)
    }

    /// Creates or replaces the individual enrollment of `registration_id`.
    pub fn put_enrollment(
        &self,
        registration_id: &str,
        spec: EnrollmentSpec,
    ) -> Result<EnrollmentInfo, EmulatorError> {
        self.core
            .put_enrollment(EnrollmentKind::Individual, registration_id, spec)
    }

    /// Creates or replaces the enrollment group `group_id`: symmetric
    /// keys, or an X.509 CA certificate
    /// ([`EnrollmentSpec::with_x509_ca_pem`]; a device whose certificate
    /// chains to it registers as the certificate's common name).
    pub fn put_enrollment_group(
        &self,
        group_id: &str,
        spec: EnrollmentSpec,
    ) -> Result<EnrollmentInfo, EmulatorError> {
        self.core
            .put_enrollment(EnrollmentKind::Group, group_id, spec)
    }

    /// An individual enrollment.
    pub fn enrollment(&self, registration_id: &str) -> Result<EnrollmentInfo, EmulatorError> {
        self.core
            .get_enrollment(EnrollmentKind::Individual, registration_id)
    }

    /// An enrollment group.
    pub fn enrollment_group(&self, group_id: &str) -> Result<EnrollmentInfo, EmulatorError> {
        self.core.get_enrollment(EnrollmentKind::Group, group_id)
    }

    /// The individual enrollments.
    #[must_use]
    pub fn enrollments(&self) -> Vec<EnrollmentInfo> {
        self.core.list_enrollments(EnrollmentKind::Individual)
    }

    /// The enrollment groups.
    #[must_use]
    pub fn enrollment_groups(&self) -> Vec<EnrollmentInfo> {
        self.core.list_enrollments(EnrollmentKind::Group)
    }

    /// Deletes an individual enrollment (devices it created stay in the
    /// registry).
    pub fn delete_enrollment(&self, registration_id: &str) -> Result<(), EmulatorError> {
        self.core
            .delete_enrollment(EnrollmentKind::Individual, registration_id)
    }

    /// Deletes an enrollment group (devices it created stay).
    pub fn delete_enrollment_group(&self, group_id: &str) -> Result<(), EmulatorError> {
        self.core.delete_enrollment(EnrollmentKind::Group, group_id)
    }

    /// The latest DPS assignment of `registration_id`, if it ever
    /// provisioned (kept across restarts with a data directory).
    #[must_use]
    pub fn dps_registration(&self, registration_id: &str) -> Option<DpsRegistration> {
        self.core.dps_registration(registration_id)
    }

    /// DPS fault: the next `n` register or poll requests are answered 429
    /// (with `retry-after` when given) and not processed.
    pub fn dps_throttle_next(&self, n: u32, retry_after: Option<u32>) {
        self.core.dps_throttle_next(n, retry_after);
    }

    /// DPS fault: the next `n` register or poll requests are answered
    /// `status` (400–599: 401, 500, 503, …) with an error body and not
    /// processed; [`EmulatorError::BadRequest`] for another status.
    pub fn dps_fail_next_requests(&self, n: u32, status: u16) -> Result<(), EmulatorError> {
        self.core.dps_fail_next_requests(n, status)
    }

    /// DPS fault: the next `n` CONNECTs to the DPS endpoint are refused
    /// with `code` (`ConnectReturnCode::Accepted` or `n == 0` turns it
    /// off).
    pub fn dps_refuse_connects(&self, n: u32, code: ConnectReturnCode) {
        self.core.dps_refuse_connects(n, code);
    }

    /// DPS fault, a slow assignment: registrations started from now on
    /// are answered `assigning` (202 with `retry-after`) for `polls` more
    /// polls before their result (0 turns it off).
    pub fn dps_delay_assignments(&self, polls: u32) {
        self.core.dps_delay_assignments(polls);
    }

    /// DPS fault: while `silent`, requests are acknowledged but never
    /// answered.
    pub fn dps_silence(&self, silent: bool) {
        self.core.dps_silence(silent);
    }

    /// DPS fault: closes the open DPS connections without a word — those
    /// of `registration_id`, or every one with `None`; returns how many.
    pub fn dps_drop_connections(&self, registration_id: Option<&str>) -> usize {
        self.core.dps_drop_connections(registration_id)
    }

    /// The PEM of the generated CA that signed the server certificate
    /// (`None` with user-provided certificates).
    #[must_use]
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// Where that CA PEM is on disk.
    #[must_use]
    pub fn ca_path(&self) -> Option<&Path> {
        self.ca_path.as_deref()
    }

    /// Registers a device with generated primary and secondary keys (an
    /// existing device keeps its keys).
    pub fn create_device(&self, device_id: &str) -> Result<DeviceInfo, EmulatorError> {
        self.core
            .create_identity(&service::parse_target(device_id)?, None)
    }

    /// Registers a module of a registered device, with generated keys.
    pub fn create_module(
        &self,
        device_id: &str,
        module_id: &str,
    ) -> Result<DeviceInfo, EmulatorError> {
        let identity = Identity::parse(device_id, Some(module_id))
            .map_err(|e| EmulatorError::BadRequest(e.to_string()))?;
        self.core.create_identity(&identity, None)
    }

    /// Registers (or re-keys) a device or module (`"dev"` or `"dev/mod"`)
    /// with the given authentication: symmetric keys
    /// ([`Authentication::Sas`]) or X.509 thumbprints
    /// ([`Authentication::X509`], see [`thumbprint`]).
    pub fn create_identity(
        &self,
        target: &str,
        authentication: Authentication,
    ) -> Result<DeviceInfo, EmulatorError> {
        self.core
            .create_identity(&service::parse_target(target)?, Some(authentication))
    }

    /// A registered device or module (`"dev"` or `"dev/mod"`).
    pub fn device(&self, target: &str) -> Result<DeviceInfo, EmulatorError> {
        self.core.get_identity(&service::parse_target(target)?)
    }

    /// Deletes a device (and its modules) or a module; a live connection
    /// is closed.
    pub fn delete_device(&self, target: &str) -> Result<(), EmulatorError> {
        self.core.delete_identity(&service::parse_target(target)?)
    }

    /// The registered devices.
    #[must_use]
    pub fn devices(&self) -> Vec<DeviceInfo> {
        self.core.list(None)
    }

    /// Whether the device or module has a live connection.
    #[must_use]
    pub fn is_connected(&self, target: &str) -> bool {
        service::parse_target(target).is_ok_and(|i| self.core.lock().hub.is_connected(&i))
    }

    /// The topic filters the device's live connection is subscribed to
    /// (empty when it is offline).
    #[must_use]
    pub fn subscriptions(&self, target: &str) -> Vec<String> {
        let Ok(identity) = service::parse_target(target) else {
            return Vec::new();
        };
        let st = self.core.lock();
        st.hub.connection_of(&identity).map_or_else(Vec::new, |c| {
            st.hub
                .subscriptions(c)
                .iter()
                .map(|(f, _)| f.clone())
                .collect()
        })
    }

    /// The twin of a device or module.
    pub fn twin(&self, target: &str) -> Result<Twin, EmulatorError> {
        Ok(self.core.twin(&service::parse_target(target)?)?.0)
    }

    /// The IoT Plug and Play model id (`model-id` in the CONNECT username)
    /// that a device or module announced when it last connected; `None`
    /// when it announced none (or never connected). The service API's twin
    /// shows it as `modelId`.
    pub fn model_id(&self, target: &str) -> Result<Option<String>, EmulatorError> {
        let identity = service::parse_target(target)?;
        self.core.get_identity(&identity)?;
        Ok(self.core.model_id(&identity))
    }

    /// Merges `patch` (a JSON object; `null` deletes) into the desired
    /// properties and returns the new desired `$version`; a connected,
    /// subscribed device gets the patch.
    pub fn update_desired(&self, target: &str, patch: Value) -> Result<u64, EmulatorError> {
        let identity = service::parse_target(target)?;
        Ok(self
            .core
            .patch_twin(&identity, Some(patch), None)?
            .0
            .desired_version)
    }

    /// Merges `patch` into the tags; returns the twin's version.
    pub fn update_tags(&self, target: &str, patch: Value) -> Result<u64, EmulatorError> {
        let identity = service::parse_target(target)?;
        Ok(self
            .core
            .patch_twin(&identity, None, Some(patch))?
            .0
            .version)
    }

    /// Calls a direct method and waits up to `timeout` (5–300 s) for the
    /// answer. [`EmulatorError::NotConnected`] when the device is offline
    /// or not subscribed to methods, [`EmulatorError::Timeout`] when it
    /// does not answer in time.
    pub async fn invoke_method(
        &self,
        target: &str,
        method: &str,
        payload: Value,
        timeout: Duration,
    ) -> Result<MethodReply, EmulatorError> {
        let identity = service::parse_target(target)?;
        self.core
            .invoke_method(&identity, method, &payload, timeout)
            .await
    }

    /// Queues a cloud-to-device message (≤ 64 KB with its properties, ≤ 50
    /// pending); `$.mid` and `$.to` are filled in when absent.
    pub fn send_c2d(
        &self,
        device_id: &str,
        body: impl Into<Bytes>,
        properties: MessageProperties,
    ) -> Result<(), EmulatorError> {
        let identity = service::parse_target(device_id)?;
        if identity.module_id().is_some() {
            return Err(EmulatorError::BadRequest(
                "C2D messages go to devices, not modules".into(),
            ));
        }
        self.core
            .send_c2d(identity.device_id(), properties, body.into())
    }

    /// Queues a message for the input `input` of a module (`"dev/mod"`),
    /// as an IoT Edge route would (≤ 64 KB with its properties, ≤ 50
    /// pending); it is delivered on `devices/{d}/modules/{m}/inputs/{input}/…`
    /// while the module is connected and subscribed, and kept until its
    /// PUBACK. [`EmulatorError::NotFound`] for an unregistered module,
    /// [`EmulatorError::BadRequest`] for a device target or an input name
    /// that is empty or holds `/`.
    pub fn send_module_input(
        &self,
        target: &str,
        input: &str,
        body: impl Into<Bytes>,
        properties: MessageProperties,
    ) -> Result<(), EmulatorError> {
        let identity = service::parse_target(target)?;
        self.core
            .send_module_input(&identity, input, properties, body.into())
    }

    /// Adds or replaces the IoT Edge route `name` (1 to 128 ASCII letters,
    /// digits and `- . _`), kept in storage:
    ///
    /// ```text
    /// FROM /messages/modules/{m}/outputs/{output} INTO BrokeredEndpoint("/modules/{m2}/inputs/{input}")
    /// FROM /messages/modules/{m}/outputs/*        INTO BrokeredEndpoint("/modules/{m2}/inputs/{input}")
    /// FROM /messages/modules/{m}/outputs/{output} INTO $upstream
    /// ```
    ///
    /// A telemetry message that module `m` of any device sends with
    /// `$.on` = an output the route takes goes to the input of module `m2`
    /// of the same device (with `$.cdid` / `$.cmid` naming the sender); a
    /// module output no route takes is stored as telemetry. The rules are
    /// the engine's: [`Hub::set_route`](iothub_hub::Hub::set_route).
    /// [`EmulatorError::BadRequest`] names what is wrong with an invalid
    /// route. Returns the route's canonical text.
    pub fn set_route(&self, name: &str, route: &str) -> Result<String, EmulatorError> {
        Ok(self.core.set_route(name, route)?.to_string())
    }

    /// Removes a route ([`EmulatorError::NotFound`] if there is none).
    pub fn remove_route(&self, name: &str) -> Result<(), EmulatorError> {
        self.core.remove_route(name)
    }

    /// The routes: name and canonical text, ordered by name.
    #[must_use]
    pub fn routes(&self) -> Vec<(String, String)> {
        self.core
            .routes()
            .into_iter()
            .map(|(n, r)| (n, r.to_string()))
            .collect()
    }

    /// Every telemetry message received so far (the last 100,000).
    #[must_use]
    pub fn telemetry(&self) -> Vec<ReceivedMessage> {
        self.core.lock().telemetry.iter().cloned().collect()
    }

    /// Waits until a received telemetry message (one already received
    /// counts) satisfies `pred`, for at most `timeout`.
    pub async fn wait_for_telemetry(
        &self,
        pred: impl Fn(&ReceivedMessage) -> bool,
        timeout: Duration,
    ) -> Option<ReceivedMessage> {
        let mut seen = self.core.telemetry_seen.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            seen.borrow_and_update();
            if let Some(m) = self.core.lock().telemetry.iter().find(|m| pred(m)) {
                return Some(m.clone());
            }
            if tokio::time::timeout_at(deadline, seen.changed())
                .await
                .is_err()
            {
                return None;
            }
        }
    }

    /// Fault: closes the device's connection without a word (its will is
    /// published). Returns whether it was connected.
    pub fn drop_connection(&self, target: &str) -> Result<bool, EmulatorError> {
        self.core.drop_connection(&service::parse_target(target)?)
    }

    /// Fault: the next `n` twin requests of the device are answered with
    /// `status` (429, 500, …).
    pub fn fail_next_twin_ops(
        &self,
        target: &str,
        n: u32,
        status: u16,
    ) -> Result<(), EmulatorError> {
        self.core
            .fail_next_twin_ops(&service::parse_target(target)?, n, status)
    }

    /// Fault: the device's CONNECTs are refused (CONNACK 3, server
    /// unavailable) for `duration`.
    pub fn refuse_connects(&self, target: &str, duration: Duration) -> Result<(), EmulatorError> {
        self.core.refuse_connects(
            &service::parse_target(target)?,
            duration,
            ConnectReturnCode::ServerUnavailable,
        )
    }

    /// Fault: the device's twin answers and method results are held back
    /// by `delay` (zero turns it off).
    pub fn delay_answers(&self, target: &str, delay: Duration) -> Result<(), EmulatorError> {
        self.core
            .delay_answers(&service::parse_target(target)?, delay)
    }

    /// Waits until everything changed so far is committed to the database
    /// (no effect in memory).
    pub fn sync(&self) {
        self.core.flush_store();
    }

    /// Stops listening, closes every connection, commits storage and
    /// closes the database (so the same data directory can be opened again).
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        self.core.close_all();
        // Let the connection tasks see the close before storage closes.
        tokio::task::yield_now().await;
        self.core.close_store();
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for t in &self.tasks {
            t.abort();
        }
        self.core.close_all();
    }
}

/// A symmetric key from base64, for [`Authentication::Sas`].
pub fn key_from_base64(key: &str) -> Result<SharedAccessKey, EmulatorError> {
    SharedAccessKey::from_base64(key).map_err(|e| EmulatorError::BadRequest(e.to_string()))
}
