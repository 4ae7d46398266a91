//! [`Emulator`] and [`EmulatorBuilder`]: how an emulator is configured
//! and started (listeners, TLS, storage, the engines' timer).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use iothub_hub::Hub;
use iothub_hub::routes::Route;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::DATABASE_FILE;
use crate::DEFAULT_DPS_RETRY_AFTER_SECS;
use crate::DEFAULT_HOST_NAME;
use crate::DEFAULT_ID_SCOPE;
use crate::EmulatorError;
use crate::EmulatorHandle;
use crate::RetainProperty;
use crate::Service;
use crate::conn;
use crate::core::Core;
use crate::dps::DpsState;
use crate::dps::EnrollmentKind;
use crate::handle::Addrs;
use crate::http;
use crate::service;
use crate::store;
use crate::tls;
use crate::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_PENDING_CONNECTIONS,
    DEFAULT_OUTPUT_LIMIT, DEFAULT_WRITE_TIMEOUT,
};

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
    write_timeout: Option<Duration>,
    output_limit: usize,
    max_connections: usize,
    max_pending: usize,
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
            write_timeout: Some(DEFAULT_WRITE_TIMEOUT),
            output_limit: DEFAULT_OUTPUT_LIMIT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_pending: DEFAULT_MAX_PENDING_CONNECTIONS,
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

    /// The DPS MQTT-over-WebSocket-over-TLS port, path [`WEBSOCKET_PATH`](crate::WEBSOCKET_PATH)
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

    /// How long a write to a connection (hub or DPS, any transport) may
    /// block, the peer not reading, before the emulator closes the
    /// connection (logged with the reason): one peer cannot hold its task,
    /// and what waits for it, for ever. `None` turns the deadline off.
    /// Default [`DEFAULT_WRITE_TIMEOUT`] (10 s).
    #[must_use]
    pub fn write_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// The most bytes that may wait to be written to one hub connection;
    /// one more closes it (logged with the reason), so a device that asks
    /// (twin GETs of a large twin) and never reads cannot grow the
    /// emulator's memory. Default [`DEFAULT_OUTPUT_LIMIT`] (4 MiB; at
    /// least 64 KiB is kept).
    #[must_use]
    pub fn output_limit(mut self, bytes: usize) -> Self {
        self.output_limit = bytes.max(64 * 1024);
        self
    }

    /// The most connections (hub and DPS, every transport) held at once;
    /// one more is closed as soon as it is accepted. Default
    /// [`DEFAULT_MAX_CONNECTIONS`] (50,000; at least 1).
    #[must_use]
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// The most connections without an accepted CONNECT (or DPS
    /// registration) held at once; one more is closed as soon as it is
    /// accepted. Default [`DEFAULT_MAX_PENDING_CONNECTIONS`] (1,000; at
    /// least 1).
    #[must_use]
    pub fn max_pending_connections(mut self, n: usize) -> Self {
        self.max_pending = n.max(1);
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
        let limits = crate::core::Limits {
            write_timeout: self.write_timeout,
            output_limit: self.output_limit,
            max_connections: self.max_connections,
            max_pending: self.max_pending,
        };
        let core = Core::new(hub, dps, store, limits);
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
