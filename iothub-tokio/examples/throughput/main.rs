//! Throughput of QoS 0 / QoS 1 telemetry to an MQTT broker: iothub-tokio
//! against rumqttc, same broker, same run, same single-threaded runtime.
//!
//! ```sh
//! cargo run --release -p iothub-tokio --example throughput -- [--n 50000] [--size 64] [--window 32]
//! ```
//!
//! Starts mosquitto on free loopback ports (plain and TLS, with a CA made
//! by rcgen) unless `--port P` names a running plain broker. For each
//! transport and QoS it sends N messages of S bytes with at most W QoS 1
//! messages awaiting their PUBACK, and prints messages per second and the
//! process CPU time (user + system, from `/proc/self/stat`) per message.
//! Not run by the tests.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use iothub_tokio::{Client, ClientOptions, Message, Qos, Transport};

struct Args {
    n: usize,
    size: usize,
    window: usize,
    port: Option<u16>,
    /// Only this case (`TCP0`, `TCP1`, `TLS0`, `TLS1`), only iothub-tokio
    /// (only rumqttc when `BENCH_RUMQTTC` is set), for profiling.
    only: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        n: 50_000,
        size: 64,
        window: 32,
        port: None,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_default();
        if flag == "--only" {
            a.only = Some(value);
            continue;
        }
        let v: usize = value
            .parse()
            .unwrap_or_else(|_| panic!("{flag} needs a number"));
        match flag.as_str() {
            "--n" => a.n = v,
            "--size" => a.size = v,
            "--window" => a.window = v,
            "--port" => a.port = Some(v as u16),
            _ => panic!("unknown flag {flag}"),
        }
    }
    a
}

/// Process CPU seconds (user + system), from /proc/self/stat (Linux; clock
/// ticks of 1/100 s).
fn cpu_seconds() -> f64 {
    let (user, system) = cpu_split();
    user + system
}

/// User and system CPU seconds of this process.
fn cpu_split() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0) as f64 / 100.0;
    (ticks(11), ticks(12))
}

#[derive(Clone, Copy)]
struct Run {
    msgs_per_sec: f64,
    cpu_us_per_msg: f64,
}

fn measure(n: usize, f: impl FnOnce() -> Duration) -> Run {
    let cpu0 = cpu_seconds();
    let elapsed = f();
    let cpu = cpu_seconds() - cpu0;
    Run {
        msgs_per_sec: n as f64 / elapsed.as_secs_f64(),
        cpu_us_per_msg: cpu * 1e6 / n as f64,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

const TOPIC: &str = "devices/bench/messages/events/";

fn ours(a: &Args, port: u16, tls: Option<&str>, qos: Qos) -> Duration {
    runtime().block_on(async {
        let transport = if tls.is_some() { Transport::Mqtt } else { Transport::PlainTcp };
        let host = if tls.is_some() { "localhost" } else { "127.0.0.1" };
        let mut options = ClientOptions::from_connection_string(&format!(
            "HostName={host};DeviceId=bench;SharedAccessKey=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
        ))
        .expect("connection string")
        .with_transport(transport)
        .with_port(port)
        .with_session(|c| {
            c.with_max_in_flight(a.window)
                .with_queue_capacity(2 * a.window)
                .with_clean_session(true)
        });
        if let Some(ca) = tls {
            options = options.with_ca_pem(ca.as_bytes().to_vec());
        }
        let client = Client::builder(options).build().await.expect("client");
        client.wait_connected().await.expect("connected");
        let payload = bytes::Bytes::from(vec![0x5a; a.size]);
        let start = Instant::now();
        let mut pending = FuturesUnordered::new();
        for _ in 0..a.n {
            if pending.len() >= 2 * a.window {
                let r: Result<(), iothub_tokio::Error> = pending.next().await.expect("pending");
                r.expect("sent");
            }
            let msg = Message::new(payload.clone()).with_qos(qos);
            let client = &client;
            pending.push(async move { client.send_telemetry(msg).await });
        }
        while let Some(r) = pending.next().await {
            r.expect("sent");
        }
        let elapsed = start.elapsed();
        client.shutdown(Duration::from_secs(5)).await.expect("shutdown");
        elapsed
    })
}

fn theirs(a: &Args, port: u16, tls: Option<&str>, qos: Qos) -> Duration {
    use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS, TlsConfiguration};
    runtime().block_on(async {
        let host = if tls.is_some() {
            "localhost"
        } else {
            "127.0.0.1"
        };
        let mut options = MqttOptions::new("rumqttc-bench", host, port);
        options.set_keep_alive(Duration::from_secs(60));
        options.set_inflight(a.window as u16);
        options.set_clean_session(true);
        if let Some(ca) = tls {
            let mut roots = tokio_rustls::rustls::RootCertStore::empty();
            use tokio_rustls::rustls::pki_types::pem::PemObject as _;
            for c in tokio_rustls::rustls::pki_types::CertificateDer::pem_slice_iter(ca.as_bytes())
            {
                roots.add(c.expect("ca")).expect("ca");
            }
            let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(Arc::new(
                tokio_rustls::rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
            options.set_transport(rumqttc::Transport::tls_with_config(
                TlsConfiguration::Rustls(Arc::new(config)),
            ));
        }
        let (client, mut eventloop) = AsyncClient::new(options, 2 * a.window);
        loop {
            if let Event::Incoming(Packet::ConnAck(_)) = eventloop.poll().await.expect("connack") {
                break;
            }
        }
        let qos = match qos {
            Qos::AtMostOnce => QoS::AtMostOnce,
            _ => QoS::AtLeastOnce,
        };
        let payload = vec![0x5a; a.size];
        let n = a.n;
        let start = Instant::now();
        let publisher = tokio::spawn(async move {
            for _ in 0..n {
                client
                    .publish(TOPIC, qos, false, payload.clone())
                    .await
                    .expect("publish");
            }
            client
        });
        let mut done = 0;
        while done < n {
            match eventloop.poll().await.expect("eventloop") {
                Event::Incoming(Packet::PubAck(_)) if qos == QoS::AtLeastOnce => done += 1,
                Event::Outgoing(Outgoing::Publish(_)) if qos == QoS::AtMostOnce => done += 1,
                _ => {}
            }
        }
        let elapsed = start.elapsed();
        let client = publisher.await.expect("publisher");
        let _ = client.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_secs(1), eventloop.poll()).await;
        elapsed
    })
}

mod broker;

fn main() {
    let a = args();
    let a = &a;
    let pki = broker::Pki::new();
    let plain = match a.port {
        Some(p) => broker::Broker::External(p),
        None => broker::Broker::start(None),
    };
    let tls = broker::Broker::start(Some(&pki));
    println!(
        "{} messages of {} bytes, QoS 1 window {}, one current-thread runtime per run, mosquitto on loopback\n",
        a.n, a.size, a.window
    );
    println!(
        "| transport | QoS | iothub-tokio msg/s | rumqttc msg/s | speed ratio | iothub-tokio CPU µs/msg | rumqttc CPU µs/msg | CPU ratio |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (name, port, ca) in [
        ("TCP", plain.port(), None),
        ("TLS", tls.port(), Some(pki.ca_pem.as_str())),
    ] {
        for (qname, qos) in [("0", Qos::AtMostOnce), ("1", Qos::AtLeastOnce)] {
            if let Some(only) = &a.only {
                if *only != format!("{name}{qname}") {
                    continue;
                }
                let (u0, s0) = cpu_split();
                let us = if std::env::var_os("BENCH_RUMQTTC").is_some() {
                    measure(a.n, || theirs(a, port, ca, qos))
                } else {
                    measure(a.n, || ours(a, port, ca, qos))
                };
                let (u1, s1) = cpu_split();
                println!(
                    "iothub-tokio {only}: {:.0} msg/s, {:.2} CPU µs/msg (user {:.2}, system {:.2})",
                    us.msgs_per_sec,
                    us.cpu_us_per_msg,
                    (u1 - u0) * 1e6 / a.n as f64,
                    (s1 - s0) * 1e6 / a.n as f64
                );
                continue;
            }
            // Warm up both, then measure.
            let small = Args {
                n: a.n / 10,
                size: a.size,
                window: a.window,
                port: a.port,
                only: None,
            };
            ours(&small, port, ca, qos);
            theirs(&small, port, ca, qos);
            let us = measure(a.n, || ours(a, port, ca, qos));
            let them = measure(a.n, || theirs(a, port, ca, qos));
            println!(
                "| {name} | {qname} | {:.0} | {:.0} | {:.2}× | {:.2} | {:.2} | {:.2}× |",
                us.msgs_per_sec,
                them.msgs_per_sec,
                us.msgs_per_sec / them.msgs_per_sec,
                us.cpu_us_per_msg,
                them.cpu_us_per_msg,
                us.cpu_us_per_msg / them.cpu_us_per_msg,
            );
        }
    }
}
