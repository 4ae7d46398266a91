//! Connection bench: N devices connect over TLS (CONNECT with a SAS token,
//! SUBSCRIBE `$iothub/twin/res/#`) and stay connected; then every device
//! does one twin GET, 200 at a time, and the GET round trips are timed.
//!
//! ```text
//! cargo run --release -p iothub-emulator --example connect_bench -- 10000
//! cargo run --release -p iothub-emulator --example connect_bench -- 1000 --in-process
//! ```
//!
//! By default the emulator runs in a child process (this same program with
//! `--serve`), so that client and server each have their own file
//! descriptors (one per connection) and the server's memory is measured
//! alone: RSS (`VmRSS` of /proc/PID/status) after start and after the N
//! connections, divided by N. With `--in-process` both share one process
//! (and the RSS figure includes the clients). The soft RLIMIT_NOFILE is
//! raised to the hard limit; beyond that, raise `ulimit -n`.
#![forbid(unsafe_code)]

use std::io::{BufRead as _, Write as _};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use iothub_emulator::{DeviceAuthentication, Emulator};
use iothub_proto::auth::{ConnectionString, SharedAccessKey, UsernameOptions};
use iothub_proto::mqtt::{self, Connect, Packet, Pid, Publish, QoS, QosPid, Subscribe};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

const KEY: [u8; 32] = [7; 32];
const IN_FLIGHT: usize = 200;

fn raise_nofile() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let mut raised = limit;
    raised.current = limit.maximum;
    let _ = setrlimit(Resource::Nofile, raised);
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn device(i: usize) -> String {
    format!("bench-{i:05}")
}

async fn start_emulator(n: usize) -> iothub_emulator::EmulatorHandle {
    let emu = Emulator::builder()
        .in_memory()
        .start()
        .await
        .expect("start");
    for i in 0..n {
        let key = SharedAccessKey::from_bytes(KEY).unwrap();
        emu.create_identity(&device(i), DeviceAuthentication::sas(key))
            .expect("register");
    }
    emu
}

struct Conn {
    tls: TlsStream<TcpStream>,
    buf: BytesMut,
}

impl Conn {
    async fn send(&mut self, p: impl Into<Packet>) {
        self.tls
            .write_all(&p.into().to_bytes())
            .await
            .expect("write");
    }

    async fn recv(&mut self) -> Packet {
        loop {
            if let Some(p) = mqtt::decode(&mut self.buf, 1 << 20).expect("decode") {
                return p;
            }
            let mut chunk = [0u8; 4096];
            let n = self.tls.read(&mut chunk).await.expect("read");
            assert!(n > 0, "closed by the emulator");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

async fn open(addr: SocketAddr, tls: TlsConnector, id: String) -> Conn {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).unwrap();
    let tls = tls
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS");
    let mut c = Conn {
        tls,
        buf: BytesMut::new(),
    };
    let key = base64_key();
    let cs = ConnectionString::parse(&format!(
        "HostName=localhost;DeviceId={id};SharedAccessKey={key}"
    ))
    .unwrap();
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let creds = cs.connect_credentials(&UsernameOptions::default(), unix + 3600);
    let connect = Connect::new(creds.client_id.as_str())
        .unwrap()
        .with_keep_alive(1000)
        .with_clean_session(true)
        .with_username(creds.username.as_str())
        .unwrap()
        .with_password(creds.expose_password().unwrap().to_vec())
        .unwrap();
    c.send(connect).await;
    let Packet::Connack(ack) = c.recv().await else {
        panic!("no CONNACK")
    };
    assert!(ack.code().is_accepted(), "{ack:?}");
    let sub = Subscribe::new(Pid::MIN, [("$iothub/twin/res/#", QoS::AtMostOnce)]).unwrap();
    c.send(sub).await;
    assert!(matches!(c.recv().await, Packet::Suback(_)));
    c
}

/// Standard base64 of `KEY` (32 × 0x07).
fn base64_key() -> String {
    "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=".to_owned()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn run_clients(n: usize, addr: SocketAddr, ca_pem: &str, server_pid: u32, shared: bool) {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tls = TlsConnector::from(Arc::new(config));

    let server_before = rss_kib(server_pid);
    let client_before = rss_kib(std::process::id());
    let gate = Arc::new(Semaphore::new(IN_FLIGHT));
    let t0 = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let (tls, gate) = (tls.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire().await.unwrap();
            open(addr, tls, device(i)).await
        }));
    }
    let mut conns = Vec::with_capacity(n);
    for t in tasks {
        conns.push(t.await.expect("a connection failed"));
    }
    let connect_time = t0.elapsed();
    // Let allocator and runtime settle before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let server_after = rss_kib(server_pid);
    let client_after = rss_kib(std::process::id());

    // Twin GET latency: every device once, IN_FLIGHT at a time.
    let gate = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut tasks = Vec::with_capacity(n);
    let t1 = Instant::now();
    for (i, mut c) in conns.into_iter().enumerate() {
        let gate = gate.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire().await.unwrap();
            let topic = format!("$iothub/twin/GET/?$rid={i}");
            let start = Instant::now();
            c.send(Publish::new(topic.as_str(), QosPid::AtMostOnce, Bytes::new()).unwrap())
                .await;
            let Packet::Publish(p) = c.recv().await else {
                panic!("no twin answer")
            };
            let took = start.elapsed();
            assert!(p.topic().as_str().starts_with("$iothub/twin/res/200/"));
            (took, c)
        }));
    }
    let mut lat = Vec::with_capacity(n);
    let mut keep = Vec::with_capacity(n);
    for t in tasks {
        let (d, c) = t.await.unwrap();
        lat.push(d);
        keep.push(c);
    }
    let get_time = t1.elapsed();
    lat.sort();
    let per = |after: u64, before: u64| after.saturating_sub(before) as f64 * 1024.0 / n as f64;
    println!(
        "connections: {n} over TLS (CONNECT + SUBSCRIBE) in {connect_time:.2?} ({:.0}/s)",
        n as f64 / connect_time.as_secs_f64()
    );
    println!(
        "twin GET round trip: p50 {:?}, p99 {:?}, max {:?} ({n} GETs, {IN_FLIGHT} in flight, {get_time:.2?})",
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        lat[lat.len() - 1]
    );
    if shared {
        println!(
            "RSS (client and server in one process): {} KiB -> {} KiB, {:.1} KiB per connection (both ends)",
            server_before,
            server_after,
            per(server_after, server_before) / 1024.0
        );
    } else {
        println!(
            "server RSS: {server_before} KiB -> {server_after} KiB, {:.1} KiB per connection",
            per(server_after, server_before) / 1024.0
        );
        println!(
            "client RSS (this process): {client_before} KiB -> {client_after} KiB, {:.1} KiB per connection",
            per(client_after, client_before) / 1024.0
        );
    }
    drop(keep);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(1000);
    let nofile = raise_nofile();
    let rt = tokio::runtime::Runtime::new().unwrap();
    if args.iter().any(|a| a == "--serve") {
        // Child: serve until stdin closes.
        rt.block_on(async {
            let emu = start_emulator(n).await;
            println!(
                "READY {} {}",
                emu.mqtt_addr(),
                emu.ca_path().unwrap().display()
            );
            std::io::stdout().flush().unwrap();
            let _ = tokio::task::spawn_blocking(|| {
                let mut s = String::new();
                let _ = std::io::stdin().read_line(&mut s);
            })
            .await;
            emu.shutdown().await;
        });
        return;
    }
    let in_process = args.iter().any(|a| a == "--in-process");
    let needed = if in_process { 2 * n } else { n } as u64 + 64;
    println!("RLIMIT_NOFILE soft limit: {nofile} (need about {needed})");
    if nofile < needed {
        eprintln!("raise the limit (ulimit -n) or lower N");
        std::process::exit(2);
    }
    if in_process {
        rt.block_on(async {
            let emu = start_emulator(n).await;
            let ca = emu.ca_pem().unwrap().to_owned();
            run_clients(n, emu.mqtt_addr(), &ca, std::process::id(), true).await;
            emu.shutdown().await;
        });
        return;
    }
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([n.to_string(), "--serve".to_owned()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the server process");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let mut parts = line.split_whitespace().skip(1);
    let addr: SocketAddr = parts.next().expect("READY line").parse().unwrap();
    let ca = std::fs::read_to_string(parts.next().unwrap()).unwrap();
    rt.block_on(run_clients(n, addr, &ca, child.id(), false));
    drop(child.stdin.take());
    let _ = child.wait();
}
