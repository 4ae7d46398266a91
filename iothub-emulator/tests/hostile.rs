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
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_iothub-emulator"))
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--mqtt-port", "0", "--ws-port", "0", "--http-port", "0"])
            .args(["--dps-port", "0", "--dps-ws-port", "0"])
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut lines = std::collections::HashMap::new();
        // mqtt, websocket, http, dps, dps-websocket, id-scope, ca.
        for _ in 0..7 {
            let mut line = String::new();
            assert!(
                out.read_line(&mut line).unwrap() > 0,
                "the emulator exited early"
            );
            if let Some((k, v)) = line.trim_end().split_once(' ') {
                lines.insert(k.to_owned(), v.to_owned());
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
