//! A fake IoT Edge workload API: HTTP/1.1 over a Unix socket in a
//! temporary directory, signing with a known module key (HMAC-SHA256,
//! as the security daemon does), serving a trust bundle, and counting
//! sign calls. One thread; one request per connection.

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit as _, Mac as _};
use iothub_proto::edge::EdgeEnvironment;
use sha2::Sha256;

#[derive(Default)]
struct Shared {
    signs: AtomicUsize,
    /// Sign calls still to refuse with a 500.
    fail_next: AtomicUsize,
    stop: AtomicBool,
}

pub struct FakeWorkload {
    dir: tempfile::TempDir,
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeWorkload {
    /// Serves `module_id`/`generation_id` signing with `key` (raw bytes),
    /// and `trust_bundle` (PEM) on `/trust-bundle`.
    pub fn start(module_id: &str, generation_id: &str, key: &[u8], trust_bundle: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let listener = UnixListener::bind(dir.path().join("workload.sock")).expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let shared = Arc::new(Shared::default());
        let sign_path = format!("/modules/{module_id}/genid/{generation_id}/sign?");
        let (key, bundle, s) = (key.to_vec(), trust_bundle.to_owned(), shared.clone());
        let thread = std::thread::spawn(move || {
            while !s.stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => serve(conn, &sign_path, &key, &bundle, &s),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(_) => break,
                }
            }
        });
        FakeWorkload {
            dir,
            shared,
            thread: Some(thread),
        }
    }

    pub fn socket_path(&self) -> PathBuf {
        self.dir.path().join("workload.sock")
    }

    /// Sign calls answered with a digest so far.
    pub fn sign_calls(&self) -> usize {
        self.shared.signs.load(Ordering::SeqCst)
    }

    /// Refuses the next `n` sign calls (500 with a JSON message).
    pub fn fail_next_signs(&self, n: usize) {
        self.shared.fail_next.store(n, Ordering::SeqCst);
    }

    /// The IoT Edge variables of a module `device/module` at the hub
    /// `hub`, with this workload API.
    pub fn variables(
        &self,
        hub: &str,
        gateway: Option<&str>,
        device: &str,
        module: &str,
        generation_id: &str,
    ) -> HashMap<&'static str, String> {
        let mut vars = HashMap::from([
            ("IOTEDGE_IOTHUBHOSTNAME", hub.to_owned()),
            ("IOTEDGE_DEVICEID", device.to_owned()),
            ("IOTEDGE_MODULEID", module.to_owned()),
            ("IOTEDGE_AUTHSCHEME", "sasToken".to_owned()),
            (
                "IOTEDGE_WORKLOADURI",
                format!("unix://{}", self.socket_path().display()),
            ),
            ("IOTEDGE_MODULEGENERATIONID", generation_id.to_owned()),
            ("IOTEDGE_APIVERSION", "2019-01-30".to_owned()),
        ]);
        if let Some(g) = gateway {
            vars.insert("IOTEDGE_GATEWAYHOSTNAME", g.to_owned());
        }
        vars
    }

    /// The environment of [`variables`](Self::variables), read by the
    /// core (no process environment is touched).
    pub fn environment(
        &self,
        hub: &str,
        gateway: Option<&str>,
        device: &str,
        module: &str,
        generation_id: &str,
    ) -> EdgeEnvironment {
        let vars = self.variables(hub, gateway, device, module, generation_id);
        EdgeEnvironment::from_lookup(|k| vars.get(k).cloned()).expect("edge environment")
    }
}

impl Drop for FakeWorkload {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(mut conn: UnixStream, sign_path: &str, key: &[u8], bundle: &str, s: &Shared) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    // Head, then Content-Length bytes of body.
    let (head, body) = loop {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
        let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&data[..end]).into_owned();
        let length = head
            .lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0);
        if data.len() >= end + 4 + length {
            break (head, data[end + 4..end + 4 + length].to_vec());
        }
    };
    let request_line = head.lines().next().unwrap_or("");
    let has_host = head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("host:"));
    let (status, json) = if !has_host {
        (400, serde_json::json!({"message": "no Host header"}))
    } else if let Some(path) = request_line.strip_prefix("POST ") {
        if !path.starts_with(sign_path) {
            (404, serde_json::json!({"message": "no such module"}))
        } else if s
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            (500, serde_json::json!({"message": "the HSM is busy"}))
        } else {
            match sign(&body, key) {
                Some(digest) => {
                    s.signs.fetch_add(1, Ordering::SeqCst);
                    (200, serde_json::json!({ "digest": digest }))
                }
                None => (400, serde_json::json!({"message": "bad sign request"})),
            }
        }
    } else if request_line.starts_with("GET /trust-bundle?") {
        (200, serde_json::json!({ "certificate": bundle }))
    } else {
        (404, serde_json::json!({"message": "not found"}))
    };
    // Chunked, to exercise the client's parser beyond Content-Length.
    let body = json.to_string();
    let (a, b) = body.split_at(body.len() / 2);
    let response = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n\
         {:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
        a.len(),
        b.len()
    );
    let _ = conn.write_all(response.as_bytes());
}

/// `{"keyId":"primary","algo":"HMACSHA256","data":"<base64>"}` → the
/// base64 HMAC-SHA256 of `data` under `key`.
fn sign(body: &[u8], key: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    if v["keyId"] != "primary" || v["algo"] != "HMACSHA256" {
        return None;
    }
    let data = STANDARD.decode(v["data"].as_str()?).ok()?;
    let mut mac = <Hmac<Sha256>>::new_from_slice(key).ok()?;
    mac.update(&data);
    Some(STANDARD.encode(mac.finalize().into_bytes()))
}
