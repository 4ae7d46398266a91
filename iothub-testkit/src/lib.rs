//! Test support shared by the adapters' tests (not published): the
//! in-process emulator on a tokio runtime of its own in background
//! threads (so blocking and smol tests need no tokio of their own), a
//! PKI made with rcgen, mosquitto on a free loopback port, and an HTTP
//! CONNECT proxy on loopback. Everything binds 127.0.0.1 only.
#![allow(missing_docs, unreachable_pub, missing_debug_implementations)]

use std::future::Future;
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub mod device_cli;
pub mod provision_cli;
pub mod scenarios;
#[cfg(unix)]
pub mod workload;

use iothub_client::{ClientOptions, ProvisioningOptions, Transport};
pub use iothub_emulator::{
    DeviceAuthentication, Emulator, EmulatorError, EmulatorHandle, EnrollmentSpec, MethodReply,
    ReceivedMessage, key_from_base64,
};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

/// A SAS key no emulator device has.
pub const KEY_B64: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .with_test_writer()
        .try_init();
}

/// Polls `cond` until it holds, for at most `timeout` (a bounded wait on
/// a condition, for state that has no notification).
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    cond()
}

/// The in-process emulator, run by a tokio runtime that only this test
/// support owns (its worker threads are the test's background threads).
pub struct Emu {
    handle: Arc<EmulatorHandle>,
    /// `None` only while dropping.
    rt: Option<tokio::runtime::Runtime>,
}

impl Drop for Emu {
    /// Shuts the runtime down without blocking: an `Emu` may be dropped
    /// inside another runtime (a tokio scenario).
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl std::ops::Deref for Emu {
    type Target = EmulatorHandle;
    fn deref(&self) -> &EmulatorHandle {
        &self.handle
    }
}

impl Emu {
    /// An in-memory emulator with its generated CA.
    pub fn start() -> Emu {
        Emu::start_with(Emulator::builder().in_memory())
    }

    pub fn start_with(builder: iothub_emulator::EmulatorBuilder) -> Emu {
        init_tracing();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime for the emulator");
        // Started by a task of its runtime, waited for on a channel: this
        // thread may be inside another runtime (a tokio scenario).
        let (tx, rx) = mpsc::channel();
        rt.spawn(async move {
            let _ = tx.send(builder.start().await);
        });
        let handle = rx.recv().expect("the emulator's start").expect("emulator");
        Emu {
            handle: Arc::new(handle),
            rt: Some(rt),
        }
    }

    /// An in-memory emulator with plain-TCP listeners for the hub and DPS
    /// as well (provisioning over every transport).
    pub fn start_with_plain() -> Emu {
        Emu::start_with(
            Emulator::builder()
                .in_memory()
                .plain_mqtt(true)
                .plain_dps(true),
        )
    }

    /// See [`provisioning_options`].
    pub fn provisioning(
        &self,
        base: ProvisioningOptions,
        transport: Transport,
    ) -> ProvisioningOptions {
        provisioning_options(&self.handle, base, transport)
    }

    /// Runs an emulator future to completion, blocking this thread.
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.runtime().block_on(f)
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.rt.as_ref().expect("the emulator's runtime")
    }

    /// Runs a closure over the emulator on its runtime; the returned
    /// handle can be awaited from any executor.
    pub fn spawn<T, F>(
        &self,
        f: impl FnOnce(Arc<EmulatorHandle>) -> F,
    ) -> tokio::task::JoinHandle<T>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        self.runtime().spawn(f(self.handle.clone()))
    }

    /// Calls a method once the device has subscribed to methods.
    pub fn invoke_when_subscribed(
        &self,
        device: &str,
        method: &str,
        payload: serde_json::Value,
    ) -> tokio::task::JoinHandle<MethodReply> {
        let (device, method) = (device.to_owned(), method.to_owned());
        self.spawn(move |h| async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                match h
                    .invoke_method(&device, &method, payload.clone(), Duration::from_secs(10))
                    .await
                {
                    Ok(r) => return r,
                    Err(EmulatorError::NotConnected) if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Err(e) => panic!("invoke {method}: {e}"),
                }
            }
        })
    }

    /// Waits (blocking) for a telemetry message.
    pub fn wait_for_telemetry(
        &self,
        pred: impl Fn(&ReceivedMessage) -> bool,
        timeout: Duration,
    ) -> Option<ReceivedMessage> {
        self.runtime()
            .block_on(self.handle.wait_for_telemetry(pred, timeout))
    }

    /// The CA as PEM bytes.
    pub fn ca(&self) -> Vec<u8> {
        self.handle
            .ca_pem()
            .expect("generated CA")
            .as_bytes()
            .to_vec()
    }

    /// Options for `device` (created if needed) over MQTT/TLS, quick
    /// backoff.
    pub fn options(&self, device: &str) -> ClientOptions {
        let info = self.handle.create_device(device).expect("device");
        ClientOptions::from_connection_string(&info.connection_string())
            .expect("connection string")
            .with_port(self.handle.mqtt_addr().port())
            .with_ca_pem(self.ca())
            .with_session(|c| {
                c.with_backoff_min(Duration::from_millis(50))
                    .with_backoff_max(Duration::from_millis(300))
            })
    }

    /// The telemetry bodies received so far, as big-endian `u32`s.
    pub fn numbered_telemetry(&self) -> Vec<u32> {
        self.handle
            .telemetry()
            .iter()
            .map(|m| u32::from_be_bytes(m.body.as_ref().try_into().expect("a u32 body")))
            .collect()
    }
}

/// Options for the emulator's DPS over `transport` (plain TCP needs
/// [`Emu::start_with_plain`]), with its CA and the hub port of that
/// transport; quick reconnections for the hub client.
pub fn provisioning_options(
    emu: &EmulatorHandle,
    base: ProvisioningOptions,
    transport: Transport,
) -> ProvisioningOptions {
    let (dps, hub) = match transport {
        Transport::WebSocket => (emu.dps_ws_addr().port(), emu.ws_addr().port()),
        Transport::PlainTcp => (
            emu.plain_dps_addr().expect("plain DPS").port(),
            emu.plain_addr().expect("plain MQTT").port(),
        ),
        _ => (emu.dps_addr().port(), emu.mqtt_addr().port()),
    };
    base.with_endpoint("localhost")
        .expect("host")
        .with_transport(transport)
        .with_port(dps)
        .with_hub_port(hub)
        .with_ca_pem(emu.ca_pem().expect("generated CA").as_bytes().to_vec())
        .with_client(|c| {
            c.with_session(|s| {
                s.with_backoff_min(Duration::from_millis(50))
                    .with_backoff_max(Duration::from_millis(200))
            })
        })
}

/// An individual X.509 enrollment of `registration_id` at the emulator's
/// DPS, with a new self-signed certificate: its chain and key (PEM).
pub fn x509_enrollment(emu: &EmulatorHandle, registration_id: &str) -> (String, String) {
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(vec![registration_id.to_owned()])
        .expect("params")
        .self_signed(&key)
        .expect("certificate");
    let print = iothub_emulator::thumbprint(cert.der());
    emu.put_enrollment(
        registration_id,
        EnrollmentSpec::default().with_x509_thumbprints(&print, None),
    )
    .expect("enrollment");
    (cert.pem(), key.serialize_pem())
}

/// A CA and a server certificate for `localhost` and `127.0.0.1`.
pub struct Pki {
    pub ca_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Default for Pki {
    fn default() -> Pki {
        Pki::new()
    }
}

impl Pki {
    pub fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "iothub-rs test CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        let cert = params.signed_by(&key, &ca).unwrap();
        Pki {
            ca_pem: ca.pem(),
            server_cert_pem: cert.pem(),
            server_key_pem: key.serialize_pem(),
            ca,
        }
    }

    /// A client certificate with this common name: (cert PEM, key PEM).
    pub fn client(&self, common_name: &str) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        let cert = params.signed_by(&key, &self.ca).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A rustls server configuration (ring) for the server certificate.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        use rustls_pki_types::pem::PemObject as _;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let chain = CertificateDer::pem_slice_iter(self.server_cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(self.server_key_pem.as_bytes()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(iothub_client::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        Arc::new(config)
    }

    /// The SHA-256 thumbprint the emulator registers for a certificate.
    pub fn thumbprint(cert_pem: &str) -> String {
        use rustls_pki_types::{CertificateDer, pem::PemObject as _};
        iothub_emulator::thumbprint(&CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap())
    }
}

pub fn free_port() -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind an ephemeral loopback port");
    l.local_addr().unwrap().port()
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A mosquitto broker on 127.0.0.1 and a free port; killed on drop.
pub struct Mosquitto {
    child: Child,
    pub port: u16,
    _dir: TempDir,
}

fn mosquitto_binary() -> Option<PathBuf> {
    [
        "/usr/sbin/mosquitto",
        "/usr/local/sbin/mosquitto",
        "/usr/bin/mosquitto",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

impl Mosquitto {
    /// Starts mosquitto (TLS when `pki` is given), or returns `None` after
    /// saying why when it is not installed and `IOTHUB_REQUIRE_PEERS` is
    /// not set.
    pub fn start(pki: Option<&Pki>) -> Option<Mosquitto> {
        init_tracing();
        let Some(bin) = mosquitto_binary() else {
            if std::env::var_os("IOTHUB_REQUIRE_PEERS").is_some() {
                panic!(
                    "mosquitto is required (IOTHUB_REQUIRE_PEERS is set): run scripts/install-peers.sh"
                );
            }
            eprintln!("SKIPPED: mosquitto is not installed (scripts/install-peers.sh installs it)");
            return None;
        };
        let dir = std::env::temp_dir().join(format!(
            "iothub-testkit-mosquitto-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let dir = TempDir(dir);
        let mut tls = String::new();
        if let Some(pki) = pki {
            for (name, pem) in [
                ("ca.pem", &pki.ca_pem),
                ("server.pem", &pki.server_cert_pem),
                ("server.key", &pki.server_key_pem),
            ] {
                std::fs::write(dir.0.join(name), pem).unwrap();
            }
            tls = format!(
                "cafile {0}/ca.pem\ncertfile {0}/server.pem\nkeyfile {0}/server.key\n",
                dir.0.display()
            );
        }
        for _ in 0..5 {
            let port = free_port();
            let conf = dir.0.join("mosquitto.conf");
            std::fs::write(
                &conf,
                format!(
                    "listener {port} 127.0.0.1\n{tls}allow_anonymous true\npersistence false\nlog_dest stderr\nmax_inflight_messages 0\nmax_queued_messages 100000\n"
                ),
            )
            .unwrap();
            let mut child = Command::new(&bin)
                .arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn mosquitto");
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let up = wait_until(Duration::from_secs(10), || {
                matches!(child.try_wait(), Ok(Some(_)))
                    || TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            });
            if up && matches!(child.try_wait(), Ok(None)) {
                return Some(Mosquitto {
                    child,
                    port,
                    _dir: dir,
                });
            }
            let _ = child.kill();
            let _ = child.wait();
            let mut log = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut log);
            }
            eprintln!("mosquitto did not come up on port {port}; its log:\n{log}");
        }
        panic!("could not start mosquitto on a free loopback port");
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP CONNECT proxy on loopback (std threads); reports each tunnel's
/// target. It only ever connects to 127.0.0.1.
pub fn connect_proxy() -> (u16, mpsc::Receiver<String>) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for inbound in listener.incoming() {
            let Ok(mut inbound) = inbound else { return };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if inbound.read_exact(&mut b).is_err() {
                        return;
                    }
                    head.push(b[0]);
                }
                let head = String::from_utf8(head).unwrap();
                let target = head.split(' ').nth(1).unwrap().to_string();
                let _ = tx.send(target.clone());
                let port: u16 = target.rsplit_once(':').unwrap().1.parse().unwrap();
                let outbound = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
                inbound
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .unwrap();
                let (mut a, mut b) = (inbound.try_clone().unwrap(), outbound.try_clone().unwrap());
                let (mut inbound, mut outbound) = (inbound, outbound);
                let up = std::thread::spawn(move || {
                    let _ = std::io::copy(&mut a, &mut outbound);
                    let _ = outbound.shutdown(Shutdown::Both);
                });
                let _ = std::io::copy(&mut b, &mut inbound);
                let _ = inbound.shutdown(Shutdown::Both);
                let _ = up.join();
            });
        }
    });
    (port, rx)
}

/// A bare MQTT client over plain TCP (std, blocking): our codec, no
/// session. Every read is bounded by a 20 s timeout.
pub struct RawMqtt {
    stream: TcpStream,
    buf: bytes::BytesMut,
    next_pid: u16,
}

impl RawMqtt {
    pub fn connect(port: u16, client_id: &str) -> RawMqtt {
        use iothub_proto::mqtt::{Connect, Packet};
        let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut raw = RawMqtt {
            stream,
            buf: bytes::BytesMut::new(),
            next_pid: 1,
        };
        raw.send(Connect::new(client_id).unwrap().with_keep_alive(0));
        match raw.recv() {
            Packet::Connack(a) => assert!(a.code().is_accepted()),
            p => panic!("expected CONNACK, got {p:?}"),
        }
        raw
    }

    pub fn send(&mut self, p: impl Into<iothub_proto::mqtt::Packet>) {
        self.stream.write_all(&p.into().to_bytes()).unwrap();
    }

    pub fn recv(&mut self) -> iothub_proto::mqtt::Packet {
        loop {
            if let Some(p) = iothub_proto::mqtt::decode(&mut self.buf, 1 << 20).unwrap() {
                return p;
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).expect("a packet within 20 s");
            assert!(n > 0, "broker closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn pid(&mut self) -> iothub_proto::mqtt::Pid {
        let pid = iothub_proto::mqtt::Pid::new(self.next_pid).unwrap();
        self.next_pid += 1;
        pid
    }

    /// Subscribes and waits for the SUBACK.
    pub fn subscribe(&mut self, filter: &str, qos: iothub_proto::mqtt::QoS) {
        let pid = self.pid();
        self.send(iothub_proto::mqtt::Subscribe::new(pid, [(filter, qos)]).unwrap());
        while !matches!(self.recv(), iothub_proto::mqtt::Packet::Suback(_)) {}
    }

    pub fn publish(&mut self, topic: &str, payload: &[u8], qos: iothub_proto::mqtt::QoS) {
        use iothub_proto::mqtt::{Publish, QoS, QosPid};
        let qospid = match qos {
            QoS::AtMostOnce => QosPid::AtMostOnce,
            _ => QosPid::AtLeastOnce(self.pid()),
        };
        self.send(Publish::new(topic, qospid, bytes::Bytes::copy_from_slice(payload)).unwrap());
    }

    /// The next PUBLISH (acknowledged if QoS 1); other packets are skipped.
    pub fn next_publish(&mut self) -> iothub_proto::mqtt::Publish {
        loop {
            if let iothub_proto::mqtt::Packet::Publish(p) = self.recv() {
                if let Some(pid) = p.pid() {
                    self.send(iothub_proto::mqtt::Packet::Puback(pid));
                }
                return p;
            }
        }
    }
}

/// Options for `dev1` on a local broker (any key: mosquitto ignores it).
pub fn broker_options(host: &str, port: u16, transport: iothub_client::Transport) -> ClientOptions {
    ClientOptions::from_connection_string(&format!(
        "HostName={host};DeviceId=dev1;SharedAccessKey={KEY_B64}"
    ))
    .unwrap()
    .with_transport(transport)
    .with_port(port)
}
