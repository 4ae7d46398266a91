//! Hostile peers against the real binary: what one peer can make the
//! emulator hold. Memory is read from the child's `/proc/<pid>/status`
//! (Linux), so the figures are the emulator's alone.

#![cfg(target_os = "linux")]

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};

use common::*;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

/// The emulator binary on free loopback ports, in a temporary data
/// directory; killed when dropped.
struct Proc {
    child: Child,
    lines: std::collections::HashMap<String, String>,
    _dir: tempfile::TempDir,
}

impl Proc {
    fn start() -> Proc {
        Proc::start_with(&[])
    }

    /// With `extra` arguments; `--device X` lines are kept as `device X`.
    fn start_with(extra: &[&str]) -> Proc {
        let dir = tempfile::tempdir().unwrap();
        let devices = extra.iter().filter(|a| **a == "--device").count();
        let mut child = Command::new(env!("CARGO_BIN_EXE_iothub-emulator"))
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--mqtt-port", "0", "--ws-port", "0", "--http-port", "0"])
            .args(["--dps-port", "0", "--dps-ws-port", "0"])
            .args(extra)
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut lines = std::collections::HashMap::new();
        // mqtt, websocket, http, dps, dps-websocket, id-scope, ca, then
        // one line per device.
        for _ in 0..7 + devices {
            let mut line = String::new();
            assert!(
                out.read_line(&mut line).unwrap() > 0,
                "the emulator exited early"
            );
            let Some((k, v)) = line.trim_end().split_once(' ') else {
                continue;
            };
            match k {
                "device" => {
                    let (id, cs) = v.split_once(' ').unwrap();
                    lines.insert(format!("device {id}"), cs.to_owned());
                }
                _ => {
                    lines.insert(k.to_owned(), v.to_owned());
                }
            }
        }
        Proc {
            child,
            lines,
            _dir: dir,
        }
    }

    fn addr(&self, what: &str) -> std::net::SocketAddr {
        self.lines[what].parse().unwrap()
    }

    fn ca_pem(&self) -> String {
        std::fs::read_to_string(&self.lines["ca"]).unwrap()
    }

    /// The most resident memory the process has had, in KiB (`VmHWM`).
    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// A connected MQTT/TLS client of device `id`.
    async fn device(&self, id: &str) -> Client {
        let config = tls_config(&self.ca_pem(), None);
        let mut c = Client::tls_with(self.addr("mqtt"), config).await;
        let cs = &self.lines[&format!("device {id}")];
        let connect = connect_cs(cs, true, &Default::default(), unix_now() + 3600);
        let ack = c.connect_packet(connect).await;
        assert!(ack.code().is_accepted(), "{ack:?}");
        c
    }

    /// Whether the service API shows device `id` connected.
    async fn connected(&self, id: &str) -> bool {
        let r = http(
            self.addr("http"),
            "GET",
            &format!("/devices/{id}"),
            &[],
            b"",
        )
        .await;
        assert_eq!(r.status, 200);
        r.json()["connectionState"] == "Connected"
    }

    /// An MQTT-over-WebSocket client (TLS, the hub's path and
    /// subprotocol).
    async fn websocket(&self) -> Client {
        let config = tls_config(&self.ca_pem(), None);
        let ws_addr = self.addr("websocket");
        let tls = tls_connect(ws_addr, config).await.unwrap();
        let url = format!("wss://localhost:{}/$iothub/websocket", ws_addr.port());
        let mut req = url.into_client_request().unwrap();
        req.headers_mut()
            .insert("sec-websocket-protocol", "mqtt".parse().unwrap());
        let (ws, _) = tokio_tungstenite::client_async(req, tls).await.unwrap();
        Client::from_ws(ws)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The bound the emulator's peak RSS may grow by while refusing a 15 MiB
/// WebSocket message: well under the message (tungstenite's default limits
/// would buffer all of it, and the connection copy it again).
const GROWTH_BOUND_KIB: u64 = 4 * 1024;

#[tokio::test]
async fn a_15_mib_websocket_frame_before_connect_is_refused_unbuffered() {
    let emu = Proc::start();
    // Warm up: a WebSocket connection and a packet, so the baseline holds
    // the TLS and WebSocket machinery.
    let mut warm = emu.websocket().await;
    warm.send(iothub_proto::mqtt::Packet::Pingreq).await;
    warm.expect_closed().await; // a PINGREQ before CONNECT ends it
    let before = emu.peak_rss_kib();
    let mut big = emu.websocket().await;
    big.send_bytes(&vec![0u8; 15 << 20]).await;
    big.expect_closed().await;
    let grown = emu.peak_rss_kib().saturating_sub(before);
    println!("peak RSS {before} KiB before, grew by {grown} KiB");
    assert!(
        grown < GROWTH_BOUND_KIB,
        "peak RSS grew by {grown} KiB refusing a 15 MiB message (bound {GROWTH_BOUND_KIB} KiB)"
    );
}

/// The flood test's emulator: two devices, a write timeout of 1 s (with
/// the timeout off and no output limit the flooder stays connected and
/// the test fails).
const FLOOD_ARGS: &[&str] = &[
    "--device",
    "dev1",
    "--device",
    "dev2",
    "--write-timeout",
    "1",
];

#[tokio::test]
async fn a_device_that_floods_twin_gets_and_never_reads_is_disconnected() {
    use iothub_proto::mqtt::{Packet, QoS};
    let emu = Proc::start_with(FLOOD_ARGS);
    let mut flood = emu.device("dev1").await;
    flood
        .subscribe(&[("$iothub/twin/res/#", QoS::AtMostOnce)])
        .await;
    // A large reported section: every twin GET answer is about 30 KB.
    let big = format!(r#"{{"blob":"{}"}}"#, "x".repeat(30_000));
    flood
        .publish(
            "$iothub/twin/PATCH/properties/reported/?$rid=0",
            QoS::AtMostOnce,
            big.as_bytes(),
        )
        .await;
    assert!(matches!(flood.recv().await, Some(Packet::Publish(_))));
    // 3,000 GETs (about 90 MB of answers), never read.
    let mut gets = Vec::new();
    for i in 1..=3000 {
        let get = iothub_proto::mqtt::Publish::new(
            format!("$iothub/twin/GET/?$rid={i}"),
            iothub_proto::mqtt::QosPid::AtMostOnce,
            bytes::Bytes::new(),
        )
        .unwrap();
        gets.extend_from_slice(&Packet::Publish(get).to_bytes());
    }
    flood.send_bytes(&gets).await;
    // Meanwhile another device is served.
    let mut other = emu.device("dev2").await;
    other
        .subscribe(&[("$iothub/twin/res/#", QoS::AtMostOnce)])
        .await;
    other
        .publish("$iothub/twin/GET/?$rid=1", QoS::AtMostOnce, b"")
        .await;
    let answer = other.recv_publish().await;
    assert_eq!(answer.topic().as_str(), "$iothub/twin/res/200/?$rid=1");
    // The flooder is closed: over its output limit, or not reading within
    // the write timeout (1 s here). Polled for up to 15 s.
    let mut closed = false;
    for _ in 0..150 {
        if !emu.connected("dev1").await {
            closed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(closed, "the device that does not read is still connected");
    assert!(emu.connected("dev2").await);
}

#[tokio::test]
async fn connections_without_connect_are_held_to_their_limit() {
    use tokio::io::AsyncReadExt as _;
    let emu = Proc::start_with(&["--device", "dev1", "--max-pending-connections", "50"]);
    // 200 sockets that never start TLS: the first 50 are held, the rest
    // closed as soon as they are accepted.
    let mut socks = Vec::new();
    for _ in 0..200 {
        socks.push(
            tokio::net::TcpStream::connect(emu.addr("mqtt"))
                .await
                .unwrap(),
        );
    }
    let reads = socks.iter_mut().map(|s| async move {
        let mut b = [0u8; 1];
        // Closed: EOF (or a reset) at once; held: nothing within 2 s (the
        // TLS handshake deadline is 10 s).
        match tokio::time::timeout(std::time::Duration::from_secs(2), s.read(&mut b)).await {
            Ok(_) => "closed",
            Err(_) => "held",
        }
    });
    let outcomes = futures_util::future::join_all(reads).await;
    let held = outcomes.iter().filter(|o| **o == "held").count();
    assert_eq!(held, 50, "held {held} of 200");
    // Their places come back when they go: a device connects.
    drop(socks);
    let mut connected = false;
    for _ in 0..50 {
        let config = tls_config(&emu.ca_pem(), None);
        if let Ok(tls) = tls_connect(emu.addr("mqtt"), config).await {
            let mut c = Client::new(Transport::Tls(Box::new(tls)));
            let cs = &emu.lines["device dev1"];
            let connect = connect_cs(cs, true, &Default::default(), unix_now() + 3600);
            c.send(connect).await;
            if let Ok(Some(iothub_proto::mqtt::Packet::Connack(a))) =
                c.recv_within(std::time::Duration::from_secs(2)).await
            {
                connected = a.code().is_accepted();
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(connected, "no place came back");
}

#[tokio::test]
async fn connections_past_their_connect_do_not_count_as_pending() {
    let emu = Proc::start_with(&[
        "--device",
        "dev1",
        "--device",
        "dev2",
        "--device",
        "dev3",
        "--max-pending-connections",
        "2",
    ]);
    // Three devices at once with room for two before CONNECT: each leaves
    // the pending count once its CONNECT is accepted.
    let a = emu.device("dev1").await;
    let b = emu.device("dev2").await;
    let c = emu.device("dev3").await;
    for id in ["dev1", "dev2", "dev3"] {
        assert!(emu.connected(id).await, "{id}");
    }
    drop((a, b, c));
}
