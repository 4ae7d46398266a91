//! Test helpers: a raw MQTT client built from the core codec over real
//! sockets (plain TCP, TLS with the emulator's CA, WebSocket over TLS),
//! and a raw HTTP/1.1 client for the service API.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt as _, StreamExt as _};
use iothub_emulator::{DeviceInfo, EmulatorHandle};
use iothub_proto::auth::{ConnectionString, UsernameOptions};
use iothub_proto::mqtt::{self, Connack, Connect, Packet, Pid, Publish, QoS, QosPid, Subscribe};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

/// How long any single wait in a test may take.
pub const WAIT: Duration = Duration::from_secs(10);

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A TLS client configuration trusting `ca_pem`, optionally presenting a
/// client certificate.
pub fn tls_config(ca_pem: &str, client: Option<(&str, &str)>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let config = match client {
        None => b.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
            b.with_client_auth_cert(chain, key).unwrap()
        }
    };
    Arc::new(config)
}

pub async fn tls_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

pub enum Transport {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Ws(Box<WebSocketStream<TlsStream<TcpStream>>>),
}

/// A bare MQTT connection driven by the test, packet by packet.
pub struct Client {
    t: Transport,
    buf: BytesMut,
    next_pid: u16,
}

impl Client {
    pub async fn plain(addr: SocketAddr) -> Client {
        let tcp = TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        Client::new(Transport::Tcp(tcp))
    }

    pub async fn tls(emulator: &EmulatorHandle) -> Client {
        let config = tls_config(emulator.ca_pem().unwrap(), None);
        let tls = tls_connect(emulator.mqtt_addr(), config).await.unwrap();
        Client::new(Transport::Tls(Box::new(tls)))
    }

    pub async fn tls_with(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> Client {
        let tls = tls_connect(addr, config).await.unwrap();
        Client::new(Transport::Tls(Box::new(tls)))
    }

    /// MQTT over WebSocket over TLS on `path` with `subprotocol`.
    pub async fn websocket_at(
        emulator: &EmulatorHandle,
        path: &str,
        subprotocol: Option<&str>,
    ) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        let config = tls_config(emulator.ca_pem().unwrap(), None);
        let tls = tls_connect(emulator.ws_addr(), config).await.unwrap();
        let url = format!("wss://localhost:{}{path}", emulator.ws_addr().port());
        let mut req = url.into_client_request().unwrap();
        if let Some(p) = subprotocol {
            req.headers_mut()
                .insert("sec-websocket-protocol", p.parse().unwrap());
        }
        let (ws, resp) = tokio_tungstenite::client_async(req, tls).await?;
        assert_eq!(
            resp.headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok()),
            Some("mqtt")
        );
        Ok(Client::new(Transport::Ws(Box::new(ws))))
    }

    pub async fn websocket(emulator: &EmulatorHandle) -> Client {
        Client::websocket_at(emulator, "/$iothub/websocket", Some("mqtt"))
            .await
            .unwrap()
    }

    /// A client over an established WebSocket.
    pub fn from_ws(ws: WebSocketStream<TlsStream<TcpStream>>) -> Client {
        Client::new(Transport::Ws(Box::new(ws)))
    }

    pub fn new(t: Transport) -> Client {
        Client {
            t,
            buf: BytesMut::new(),
            next_pid: 0,
        }
    }

    pub fn pid(&mut self) -> Pid {
        self.next_pid = self.next_pid.wrapping_add(1).max(1);
        Pid::new(self.next_pid).unwrap()
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        let r = match &mut self.t {
            Transport::Tcp(s) => s.write_all(bytes).await,
            Transport::Tls(s) => s.write_all(bytes).await,
            Transport::Ws(ws) => ws
                .send(Message::Binary(Bytes::copy_from_slice(bytes)))
                .await
                .map_err(std::io::Error::other),
        };
        // A write to a connection the emulator closed may fail: the test
        // then sees the close on recv.
        let _ = r;
    }

    pub async fn send(&mut self, packet: impl Into<Packet>) {
        let bytes = packet.into().to_bytes();
        self.send_bytes(&bytes).await;
    }

    /// The next packet, `None` once the emulator closed the connection.
    /// Panics after [`WAIT`].
    pub async fn recv(&mut self) -> Option<Packet> {
        tokio::time::timeout(WAIT, self.recv_inner())
            .await
            .expect("timed out waiting for a packet")
    }

    /// The next packet within `d`, or `Err(())` on timeout.
    pub async fn recv_within(&mut self, d: Duration) -> Result<Option<Packet>, ()> {
        tokio::time::timeout(d, self.recv_inner())
            .await
            .map_err(|_| ())
    }

    async fn recv_inner(&mut self) -> Option<Packet> {
        loop {
            if let Some(p) =
                mqtt::decode(&mut self.buf, 1 << 20).expect("the emulator sent garbage")
            {
                return Some(p);
            }
            let mut chunk = [0u8; 8192];
            match &mut self.t {
                Transport::Tcp(s) => match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                },
                Transport::Tls(s) => match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                },
                Transport::Ws(ws) => match ws.next().await {
                    Some(Ok(Message::Binary(b))) => self.buf.extend_from_slice(&b),
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return None,
                    Some(Ok(_)) => {}
                },
            }
        }
    }

    /// Waits until the emulator closes the connection, skipping packets.
    pub async fn expect_closed(&mut self) {
        while self.recv().await.is_some() {}
    }

    /// The next PUBLISH (other packets skipped).
    pub async fn recv_publish(&mut self) -> Publish {
        loop {
            match self.recv().await {
                Some(Packet::Publish(p)) => return p,
                Some(_) => {}
                None => panic!("closed while waiting for a PUBLISH"),
            }
        }
    }

    pub async fn connect_packet(&mut self, connect: Connect) -> Connack {
        self.send(connect).await;
        match self.recv().await {
            Some(Packet::Connack(a)) => a,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// Connects as `device` (CleanSession 0, keep-alive 60 s), which must
    /// be accepted.
    pub async fn connect(&mut self, device: &DeviceInfo) -> Connack {
        let ack = self.connect_packet(connect_for(device, false)).await;
        assert!(ack.code().is_accepted(), "{ack:?}");
        ack
    }

    /// Subscribes; returns the granted codes.
    pub async fn subscribe(&mut self, filters: &[(&str, QoS)]) -> Vec<mqtt::SubscribeReturnCode> {
        let pid = self.pid();
        self.send(Subscribe::new(pid, filters.iter().copied()).unwrap())
            .await;
        loop {
            match self.recv().await {
                Some(Packet::Suback(s)) => {
                    assert_eq!(s.pid(), pid);
                    return s.return_codes().to_vec();
                }
                Some(_) => {}
                None => panic!("closed while waiting for SUBACK"),
            }
        }
    }

    pub async fn publish(&mut self, topic: &str, qos: QoS, payload: &[u8]) -> Option<Pid> {
        let qospid = match qos {
            QoS::AtMostOnce => QosPid::AtMostOnce,
            QoS::AtLeastOnce => QosPid::AtLeastOnce(self.pid()),
            QoS::ExactlyOnce => QosPid::ExactlyOnce(self.pid()),
        };
        let p = Publish::new(topic, qospid, Bytes::copy_from_slice(payload)).unwrap();
        self.send(p).await;
        qospid.pid()
    }
}

/// A CONNECT for `device` (from its connection string), token valid for
/// an hour.
pub fn connect_for(device: &DeviceInfo, clean: bool) -> Connect {
    connect_with(
        device,
        clean,
        &UsernameOptions::default(),
        unix_now() + 3600,
    )
}

pub fn connect_with(
    device: &DeviceInfo,
    clean: bool,
    options: &UsernameOptions,
    expiry: u64,
) -> Connect {
    connect_cs(&device.connection_string(), clean, options, expiry)
}

/// The CONNECT of the device of connection string `cs`.
pub fn connect_cs(cs: &str, clean: bool, options: &UsernameOptions, expiry: u64) -> Connect {
    let cs = ConnectionString::parse(cs).unwrap();
    let creds = cs.connect_credentials(options, expiry);
    let mut c = Connect::new(creds.client_id.as_str())
        .unwrap()
        .with_keep_alive(60)
        .with_clean_session(clean)
        .with_username(creds.username.as_str())
        .unwrap();
    if let Some(p) = creds.expose_password() {
        c = c.with_password(p.to_vec()).unwrap();
    }
    c
}

/// An HTTP answer.
#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl HttpReply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
}

/// One HTTP/1.1 request over a fresh connection (`Connection: close`).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpReply {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty()
        && !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
    {
        req.push_str("Content-Type: application/json\r\n");
    }
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(400), s.read_to_end(&mut raw))
        .await
        .expect("HTTP answer in time")
        .unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP head");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    HttpReply { status, body }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let n = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 2 + n + 2..];
    }
}

pub async fn http_json(addr: SocketAddr, method: &str, path: &str, body: Value) -> HttpReply {
    let bytes = if body.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(&body).unwrap()
    };
    http(addr, method, path, &[], &bytes).await
}

/// Polls `cond` every 10 ms until it holds, for at most [`WAIT`].
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub async fn start() -> EmulatorHandle {
    iothub_emulator::Emulator::builder()
        .in_memory()
        .plain_mqtt(true)
        .start()
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------
// DPS: a raw-codec provisioning client

/// A DPS CONNECT for `registration_id` in `id_scope`, token valid for an
/// hour (no password for X.509).
pub fn dps_connect(
    id_scope: &str,
    registration_id: &str,
    attestation: &iothub_proto::auth::ProvisioningAttestation,
) -> Connect {
    use iothub_proto::auth::{IdScope, ProvisioningUsername, RegistrationId};
    let username = ProvisioningUsername::new(
        IdScope::new(id_scope).unwrap(),
        RegistrationId::new(registration_id).unwrap(),
    );
    let creds = attestation.connect_credentials(&username, unix_now() + 3600);
    let mut c = Connect::new(creds.client_id.as_str())
        .unwrap()
        .with_keep_alive(60)
        .with_clean_session(true)
        .with_username(creds.username.as_str())
        .unwrap();
    if let Some(p) = creds.expose_password() {
        c = c.with_password(p.to_vec()).unwrap();
    }
    c
}

/// A DPS answer: status, retry-after and the body as JSON.
#[derive(Debug)]
pub struct DpsAnswer {
    pub status: u16,
    pub retry_after: Option<u32>,
    pub body: Value,
}

impl Client {
    /// Subscribes to the DPS answers (QoS 1, granted 1).
    pub async fn dps_subscribe(&mut self) {
        let codes = self
            .subscribe(&[(iothub_proto::topic::DPS_RESPONSE_FILTER, QoS::AtLeastOnce)])
            .await;
        assert_eq!(
            codes,
            vec![mqtt::SubscribeReturnCode::Success(QoS::AtLeastOnce)]
        );
    }

    /// Publishes a DPS request and returns the answer (acknowledged).
    pub async fn dps_request(&mut self, topic: String, body: &[u8], rid: &str) -> DpsAnswer {
        use iothub_proto::topic::HubTopic;
        self.publish(&topic, QoS::AtLeastOnce, body).await;
        let p = self.recv_publish().await;
        if let Some(pid) = p.pid() {
            self.send(Packet::Puback(pid)).await;
        }
        let Ok(HubTopic::DpsResponse {
            status,
            request_id,
            retry_after,
        }) = iothub_proto::topic::parse(p.topic().as_str())
        else {
            panic!("not a DPS answer: {}", p.topic().as_str());
        };
        assert_eq!(request_id, rid);
        let body = serde_json::from_slice(p.payload()).unwrap_or(Value::Null);
        DpsAnswer {
            status,
            retry_after,
            body,
        }
    }

    /// Register, then poll until the status is no longer `assigning`;
    /// returns the register answer and the final one.
    pub async fn dps_provision(&mut self, registration_id: &str) -> (DpsAnswer, DpsAnswer) {
        use iothub_proto::topic::{RequestId, dps_poll, dps_register};
        let body = serde_json::to_vec(
            &serde_json::json!({"registrationId": registration_id, "payload": {"site": "test"}}),
        )
        .unwrap();
        let first = self
            .dps_request(dps_register(&RequestId::from(1)), &body, "1")
            .await;
        assert_eq!(first.status, 202, "{first:?}");
        let op = first.body["operationId"].as_str().unwrap().to_owned();
        for n in 2..20u64 {
            let rid = n.to_string();
            let a = self
                .dps_request(dps_poll(&RequestId::from(n), &op), b"", &rid)
                .await;
            if a.status != 202 {
                return (first, a);
            }
        }
        panic!("still assigning after 18 polls");
    }
}
