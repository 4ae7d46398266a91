//! Test support: a bare MQTT client, and the core's hub engine served on
//! a loopback listener (plain, TLS, WebSocket); the CA made with rcgen and
//! mosquitto on a free loopback port come from `iothub-testkit`.

#![allow(dead_code, unreachable_pub)]

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt as _, StreamExt as _};
use iothub_hub::Hub;
use iothub_proto::auth::{DeviceId, Identity, SharedAccessKey};
use iothub_proto::mqtt::{self, Connect, Packet, Pid, Publish, QoS, QosPid, Subscribe};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message as WsMessage;

// The PKI, mosquitto, the free-port helper and logging are shared with
// the other adapters' tests.
#[allow(unused_imports)]
pub use iothub_testkit::{KEY_B64, Mosquitto, Pki, free_port, init_tracing};

/// A bare MQTT client over plain TCP: our codec, no session.
pub struct Raw {
    stream: TcpStream,
    buf: BytesMut,
    next_pid: u16,
}

impl Raw {
    pub async fn connect(port: u16, client_id: &str) -> Raw {
        let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .unwrap();
        stream.set_nodelay(true).unwrap();
        let mut raw = Raw {
            stream,
            buf: BytesMut::new(),
            next_pid: 1,
        };
        raw.send(Connect::new(client_id).unwrap().with_keep_alive(0))
            .await;
        match raw.recv().await {
            Packet::Connack(a) => assert!(a.code().is_accepted()),
            p => panic!("expected CONNACK, got {p:?}"),
        }
        raw
    }

    pub async fn send(&mut self, p: impl Into<Packet>) {
        self.stream.write_all(&p.into().to_bytes()).await.unwrap();
    }

    pub async fn recv(&mut self) -> Packet {
        loop {
            if let Some(p) = mqtt::decode(&mut self.buf, 1 << 20).unwrap() {
                return p;
            }
            let n =
                tokio::time::timeout(Duration::from_secs(20), self.stream.read_buf(&mut self.buf))
                    .await
                    .expect("packet within 20 s")
                    .unwrap();
            assert!(n > 0, "broker closed the connection");
        }
    }

    fn pid(&mut self) -> Pid {
        let pid = Pid::new(self.next_pid).unwrap();
        self.next_pid += 1;
        pid
    }

    /// Subscribes and waits for the SUBACK.
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) {
        let pid = self.pid();
        self.send(Subscribe::new(pid, [(filter, qos)]).unwrap())
            .await;
        loop {
            if let Packet::Suback(_) = self.recv().await {
                return;
            }
        }
    }

    pub async fn publish(&mut self, topic: &str, payload: &[u8], qos: QoS) {
        let qospid = match qos {
            QoS::AtMostOnce => QosPid::AtMostOnce,
            _ => QosPid::AtLeastOnce(self.pid()),
        };
        self.send(Publish::new(topic, qospid, Bytes::copy_from_slice(payload)).unwrap())
            .await;
    }

    /// The next PUBLISH (acknowledged if QoS 1); other packets are skipped.
    pub async fn next_publish(&mut self) -> Publish {
        loop {
            if let Packet::Publish(p) = self.recv().await {
                if let Some(pid) = p.pid() {
                    self.send(Packet::Puback(pid)).await;
                }
                return p;
            }
        }
    }
}

/// How the hub server speaks.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Serve {
    Plain,
    Tls,
    WebSocketTls,
}

/// The core's hub engine on a loopback listener: one task per
/// connection, one ticking the hub's timers.
pub struct HubServer {
    pub port: u16,
    pub hub: Arc<Mutex<Hub>>,
    pub identity: Identity,
    notify: Arc<Notify>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// The engine's monotonic clock: ms since the server started.
fn engine_now(start: std::time::Instant) -> iothub_proto::time::Instant {
    iothub_proto::time::Instant::from_millis(
        u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
    )
}

fn unix() -> u64 {
    iothub_client::Clock::unix_secs()
}

impl HubServer {
    pub const HOST: &'static str = "127.0.0.1";

    pub async fn start(serve: Serve, pki: Option<&Pki>) -> HubServer {
        let mut hub = Hub::new(Self::HOST);
        let identity = hub.add_device(
            DeviceId::new("dev1").unwrap(),
            SharedAccessKey::from_base64(KEY_B64).unwrap(),
        );
        let hub = Arc::new(Mutex::new(hub));
        let notify = Arc::new(Notify::new());
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let start = std::time::Instant::now();
        let acceptor = pki.map(|p| tokio_rustls::TlsAcceptor::from(p.server_config()));
        let (h, n) = (hub.clone(), notify.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (h, n, acceptor) = (h.clone(), n.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let _ = tcp.set_nodelay(true);
                    let io: Box<dyn Io> = match (&acceptor, serve) {
                        (Some(a), Serve::Tls | Serve::WebSocketTls) => match a.accept(tcp).await {
                            Ok(t) => Box::new(t),
                            Err(_) => return,
                        },
                        _ => Box::new(tcp),
                    };
                    if serve == Serve::WebSocketTls {
                        serve_ws(io, h, n, start).await;
                    } else {
                        serve_stream(io, h, n, start).await;
                    }
                });
            }
        });
        let (h, n) = (hub.clone(), notify.clone());
        let ticker = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                h.lock().unwrap().handle_timeout(engine_now(start), unix());
                n.notify_waiters();
            }
        });
        HubServer {
            port,
            hub,
            identity,
            notify,
            tasks: vec![accept, ticker],
        }
    }

    /// Runs `f` on the hub, then wakes every connection.
    pub fn with<R>(&self, f: impl FnOnce(&mut Hub) -> R) -> R {
        let r = f(&mut self.hub.lock().unwrap());
        self.notify.notify_waiters();
        r
    }

    pub fn connection_string(&self) -> String {
        format!(
            "HostName={};DeviceId=dev1;SharedAccessKey={KEY_B64}",
            Self::HOST
        )
    }
}

impl Drop for HubServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// What the hub has for `conn`, and whether it closed it.
fn outgoing(hub: &Mutex<Hub>, conn: iothub_hub::ConnId) -> (Vec<u8>, bool) {
    let mut hub = hub.lock().unwrap();
    let mut out = Vec::new();
    while let Some(b) = hub.poll_transmit(conn) {
        out.extend_from_slice(&b);
    }
    (out, hub.is_closed(conn))
}

async fn serve_stream(
    mut io: Box<dyn Io>,
    hub: Arc<Mutex<Hub>>,
    notify: Arc<Notify>,
    start: std::time::Instant,
) {
    let conn = hub.lock().unwrap().accept(engine_now(start), None);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let notified = notify.notified();
        tokio::select! {
            r = io.read(&mut buf) => match r {
                Ok(n) if n > 0 => {
                    hub.lock().unwrap().handle_input(conn, engine_now(start), unix(), &buf[..n]);
                }
                _ => { hub.lock().unwrap().client_closed(conn); notify.notify_waiters(); return; }
            },
            () = notified => {}
        }
        let (out, closed) = outgoing(&hub, conn);
        if !out.is_empty() && io.write_all(&out).await.is_err() {
            hub.lock().unwrap().client_closed(conn);
            return;
        }
        if closed {
            let _ = io.shutdown().await;
            notify.notify_waiters();
            return;
        }
        if !out.is_empty() {
            // Output for this connection may matter to others (eviction).
            notify.notify_waiters();
        }
    }
}

#[allow(clippy::result_large_err)]
async fn serve_ws(
    io: Box<dyn Io>,
    hub: Arc<Mutex<Hub>>,
    notify: Arc<Notify>,
    start: std::time::Instant,
) {
    use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
    let callback = |req: &Request, mut resp: Response| {
        assert_eq!(req.uri().path(), "/$iothub/websocket");
        let asked = req
            .headers()
            .get("Sec-WebSocket-Protocol")
            .map(|v| v.to_str().unwrap_or_default().to_string())
            .unwrap_or_default();
        assert!(
            asked.split(',').any(|p| p.trim() == "mqtt"),
            "subprotocol {asked}"
        );
        resp.headers_mut()
            .insert("Sec-WebSocket-Protocol", "mqtt".parse().unwrap());
        Ok(resp)
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(io, callback).await else {
        return;
    };
    let conn = hub.lock().unwrap().accept(engine_now(start), None);
    loop {
        let notified = notify.notified();
        tokio::select! {
            m = ws.next() => match m {
                Some(Ok(WsMessage::Binary(data))) => {
                    hub.lock().unwrap().handle_input(conn, engine_now(start), unix(), &data);
                }
                Some(Ok(_)) => {}
                _ => { hub.lock().unwrap().client_closed(conn); return; }
            },
            () = notified => {}
        }
        let (out, closed) = outgoing(&hub, conn);
        if !out.is_empty() && ws.send(WsMessage::Binary(out.into())).await.is_err() {
            hub.lock().unwrap().client_closed(conn);
            return;
        }
        if closed {
            let _ = ws.close(None).await;
            return;
        }
    }
}

/// Checkpoints of a sender that must see its connection dropped while it
/// sends: at each, the sender waits until the test has dropped a live
/// connection, so the drops happen while sending whatever the speed of
/// the machine.
pub struct Checkpoints {
    ready: tokio::sync::mpsc::Sender<()>,
    dropped: tokio::sync::mpsc::Receiver<()>,
}

impl Checkpoints {
    /// Sender side: stops until the test has dropped the connection.
    pub async fn reached(&mut self) {
        self.ready.send(()).await.unwrap();
        self.dropped.recv().await.unwrap();
    }
}

/// Test side of [`Checkpoints`]: drops the connection `n` times, each at
/// the sender's next checkpoint and once the client has a live connection
/// newer than the one dropped last (`drop` says whether there was one to
/// drop). Returns the sender side first; run `drop_at` beside the sender.
pub fn checkpoints() -> (Checkpoints, Dropper) {
    let (ready, ready_rx) = tokio::sync::mpsc::channel(1);
    let (dropped_tx, dropped) = tokio::sync::mpsc::channel(1);
    (
        Checkpoints { ready, dropped },
        Dropper {
            ready: ready_rx,
            dropped: dropped_tx,
        },
    )
}

/// See [`checkpoints`].
pub struct Dropper {
    ready: tokio::sync::mpsc::Receiver<()>,
    dropped: tokio::sync::mpsc::Sender<()>,
}

impl Dropper {
    /// Drops `n` connections, one at each checkpoint; returns `n`.
    pub async fn drop_at(
        mut self,
        n: u64,
        status: iothub_tokio::StatusWatch,
        mut drop: impl FnMut() -> bool,
    ) -> u64 {
        let limit = Duration::from_secs(30);
        for dropped in 0..n {
            let ready = tokio::time::timeout(limit, self.ready.recv()).await;
            ready.expect("the sender reaches its checkpoint").unwrap();
            let live = status.wait_for(|s| {
                s.state == iothub_tokio::ConnectionState::Connected && s.connection > dropped
            });
            let live = tokio::time::timeout(limit, live).await;
            live.expect("a live connection").unwrap();
            assert!(drop(), "no live connection to drop");
            self.dropped.send(()).await.unwrap();
        }
        n
    }
}

/// The sender of the thousand-message tests: sends messages `0..n` (each
/// body its number, big-endian) with up to 64 in flight, and stops at a
/// checkpoint after every 150 messages up to 900 (six stops). Every send
/// must succeed.
pub fn send_numbered(
    client: iothub_tokio::Client,
    n: u32,
    mut checkpoints: Checkpoints,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..n {
            let client = client.clone();
            tasks.spawn(async move {
                client
                    .send_telemetry(iothub_tokio::Message::new(i.to_be_bytes().to_vec()))
                    .await
            });
            while tasks.len() >= 64 {
                tasks.join_next().await.unwrap().unwrap().unwrap();
            }
            if i % 150 == 149 && i < 900 {
                checkpoints.reached().await;
            }
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap().unwrap();
        }
    })
}

/// How often each number sent by [`send_numbered`] arrived.
pub fn count_numbered<'a>(
    bodies: impl IntoIterator<Item = &'a [u8]>,
) -> std::collections::HashMap<u32, u32> {
    let mut counts = std::collections::HashMap::new();
    for body in bodies {
        let n = u32::from_be_bytes(body.try_into().expect("a 4-byte message number"));
        *counts.entry(n).or_default() += 1;
    }
    counts
}
