//! Throughput of QoS 0 / QoS 1 telemetry to an MQTT broker: iothub-tokio
//! against rumqttc, same broker, same run, one single-threaded tokio
//! runtime each; with `--adapters`, the blocking and smol adapters too.
//!
//! ```sh
//! cargo run --release -p iothub-tokio --example throughput -- \
//!     [--n 100000] [--size 64] [--window 100] [--runs 5] [--adapters] [--emulator]
//! ```
//!
//! Starts mosquitto on free loopback ports (plain and TLS, with a CA made
//! by rcgen) unless `--port P` names a running plain broker. For each
//! transport and QoS it sends N messages of S bytes with at most W QoS 1
//! messages awaiting their PUBACK, `--runs` times (after a warm-up), and
//! prints the median messages per second and process CPU time (user +
//! system, every thread, from `CLOCK_PROCESS_CPUTIME_ID`) per message,
//! with the spread (min–max) of the runs. `--emulator` adds the in-process
//! emulator as a broker (SAS, MQTT/TLS, QoS 1): its ingest rate beside
//! mosquitto's in the same run (its own CPU is in the process, so only
//! messages per second count there). `--only TCP0|TCP1|TLS0|TLS1`
//! runs one case of iothub-tokio once (`BENCH_CLIENT=rumqttc`, `smol` or
//! `blocking`: that client instead), for profilers and
//! `scripts/bench-syscalls.sh`. Not run by the tests.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use iothub_tokio::{ClientOptions, Message, Qos, Transport};

mod broker;
mod rumqtt;

struct Args {
    n: usize,
    size: usize,
    window: usize,
    runs: usize,
    port: Option<u16>,
    adapters: bool,
    emulator: bool,
    /// Only this case (`TCP0`, `TCP1`, `TLS0`, `TLS1`), only iothub-tokio
    /// (or the client `BENCH_CLIENT` names), once, for profiling.
    only: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        n: 100_000,
        size: 64,
        window: 100,
        runs: 5,
        port: None,
        adapters: false,
        emulator: false,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--adapters" => a.adapters = true,
            "--emulator" => a.emulator = true,
            "--only" => a.only = it.next(),
            _ => {
                let value = it.next().unwrap_or_default();
                let v: usize = value
                    .parse()
                    .unwrap_or_else(|_| panic!("{flag} needs a number"));
                match flag.as_str() {
                    "--n" => a.n = v,
                    "--size" => a.size = v,
                    "--window" => a.window = v,
                    "--runs" => a.runs = v.max(1),
                    "--port" => a.port = Some(u16::try_from(v).expect("a port")),
                    _ => panic!("unknown flag {flag}"),
                }
            }
        }
    }
    a
}

/// User and system CPU seconds of this process (every thread), from
/// /proc/self/stat (Linux; clock ticks of 1/100 s).
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

/// CPU seconds of this process (every thread, those that ended too),
/// to the nanosecond: `CLOCK_PROCESS_CPUTIME_ID`.
fn cpu_total() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

fn measure(n: usize, f: impl FnOnce() -> Duration) -> Run {
    let c0 = cpu_total();
    let elapsed = f();
    let c1 = cpu_total();
    Run {
        msgs_per_sec: n as f64 / elapsed.as_secs_f64(),
        cpu_us_per_msg: (c1 - c0) * 1e6 / n as f64,
    }
}

/// The median and the spread of one measure over runs.
struct Stats {
    median: f64,
    min: f64,
    max: f64,
}

fn stats(mut v: Vec<f64>) -> Stats {
    v.sort_by(f64::total_cmp);
    Stats {
        median: v[v.len() / 2],
        min: v[0],
        max: v[v.len() - 1],
    }
}

/// `runs` measured runs of `f` after a warm-up of a tenth of the messages.
fn repeat(a: &Args, mut f: impl FnMut(usize) -> Duration) -> (Stats, Stats) {
    f(a.n / 10);
    let runs: Vec<Run> = (0..a.runs).map(|_| measure(a.n, || f(a.n))).collect();
    (
        stats(runs.iter().map(|r| r.msgs_per_sec).collect()),
        stats(runs.iter().map(|r| r.cpu_us_per_msg).collect()),
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The client options of the bench device on a broker at `port`.
fn options(a: &Args, port: u16, tls: Option<&str>) -> ClientOptions {
    let transport = if tls.is_some() {
        Transport::Mqtt
    } else {
        Transport::PlainTcp
    };
    let host = if tls.is_some() {
        "localhost"
    } else {
        "127.0.0.1"
    };
    let mut options = ClientOptions::from_connection_string(&format!(
        "HostName={host};DeviceId=bench;SharedAccessKey=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
    ))
    .expect("connection string")
    .with_transport(transport)
    .with_port(port);
    if let Some(ca) = tls {
        options = options.with_ca_pem(ca.as_bytes().to_vec());
    }
    tune(a, options)
}

fn tune(a: &Args, options: ClientOptions) -> ClientOptions {
    options.with_session(|c| {
        c.with_max_in_flight(a.window)
            .with_queue_capacity(2 * a.window)
            .with_clean_session(true)
    })
}

/// What every client run does: `n` messages, at most `2 × window` queued
/// or in flight, each receipt awaited in order.
async fn send_all<R, F>(n: usize, window: usize, payload: &bytes::Bytes, qos: Qos, mut queue: F)
where
    F: AsyncFnMut(Message) -> R,
    R: std::future::Future<Output = Result<(), iothub_tokio::Error>>,
{
    let mut receipts = VecDeque::with_capacity(2 * window);
    for _ in 0..n {
        if receipts.len() >= 2 * window {
            let r: R = receipts.pop_front().expect("a receipt");
            r.await.expect("sent");
        }
        receipts.push_back(queue(Message::new(payload.clone()).with_qos(qos)).await);
    }
    for r in receipts {
        r.await.expect("sent");
    }
}

/// The timed part of an async client's run (connected first): `n`
/// messages through [`send_all`], then a shutdown (not timed).
// The closure hands the receipt on, to be awaited in order.
#[allow(clippy::async_yields_async)]
async fn async_client_run<R: iothub_client::rt::Runtime>(
    client: &iothub_client::AsyncClient<R>,
    a: &Args,
    n: usize,
    qos: Qos,
) -> Duration {
    client.wait_connected().await.expect("connected");
    let payload = bytes::Bytes::from(vec![0x5a; a.size]);
    let start = Instant::now();
    send_all(n, a.window, &payload, qos, async |m| {
        client.queue_telemetry(m).await.expect("queued")
    })
    .await;
    let elapsed = start.elapsed();
    client
        .shutdown(Duration::from_secs(5))
        .await
        .expect("shutdown");
    elapsed
}

fn tokio_run(a: &Args, options: &ClientOptions, n: usize, qos: Qos) -> Duration {
    runtime().block_on(async {
        let client = iothub_tokio::Client::builder(options.clone())
            .build()
            .await
            .expect("client");
        async_client_run(&client, a, n, qos).await
    })
}

fn smol_run(a: &Args, options: &ClientOptions, n: usize, qos: Qos) -> Duration {
    futures_lite::future::block_on(async {
        let client = iothub_smol::Client::builder(options.clone())
            .build()
            .await
            .expect("client");
        async_client_run(&client, a, n, qos).await
    })
}

/// The smol client with its driver on the application's thread
/// (`build_with_driver`, both futures in one `block_on`): no hand-off
/// between threads.
fn smol_one_thread_run(a: &Args, options: &ClientOptions, n: usize, qos: Qos) -> Duration {
    futures_lite::future::block_on(async {
        let (client, driver) = iothub_smol::Client::builder(options.clone())
            .build_with_driver()
            .await
            .expect("client");
        futures_lite::future::zip(driver, async_client_run(&client, a, n, qos))
            .await
            .1
    })
}

fn blocking_run(a: &Args, options: &ClientOptions, n: usize, qos: Qos) -> Duration {
    let client = iothub_blocking::Client::builder(options.clone())
        .build()
        .expect("client");
    client
        .wait_connected(Duration::from_secs(10))
        .expect("connected");
    let payload = bytes::Bytes::from(vec![0x5a; a.size]);
    let start = Instant::now();
    let mut receipts = VecDeque::with_capacity(2 * a.window);
    for _ in 0..n {
        if receipts.len() >= 2 * a.window {
            let r: iothub_blocking::Receipt<()> = receipts.pop_front().expect("a receipt");
            r.wait().expect("sent");
        }
        let m = Message::new(payload.clone()).with_qos(qos);
        receipts.push_back(client.queue_telemetry(m).expect("queued"));
    }
    for r in receipts {
        r.wait().expect("sent");
    }
    let elapsed = start.elapsed();
    client.shutdown(Duration::from_secs(5)).expect("shutdown");
    elapsed
}

fn row(label: &str, qname: &str, tokio: &(Stats, Stats), other: &(Stats, Stats)) {
    let (ts, tc) = tokio;
    let (os, oc) = other;
    println!(
        "| {label} | {qname} | {:.0} ({:.0}–{:.0}) | {:.0} ({:.0}–{:.0}) | {:.2}× | {:.2} ({:.2}–{:.2}) | {:.2} ({:.2}–{:.2}) | {:.2}× |",
        ts.median,
        ts.min,
        ts.max,
        os.median,
        os.min,
        os.max,
        ts.median / os.median,
        tc.median,
        tc.min,
        tc.max,
        oc.median,
        oc.min,
        oc.max,
        tc.median / oc.median,
    );
}

fn main() {
    let a = args();
    let a = &a;
    let pki = broker::Pki::new();
    let plain = match a.port {
        Some(p) => broker::Broker::External(p),
        None => broker::Broker::start(None),
    };
    let only_tcp = a.only.as_deref().is_some_and(|o| o.starts_with("TCP"));
    let tls = (!only_tcp).then(|| broker::Broker::start(Some(&pki)));
    let cases: Vec<(&str, u16, Option<&str>)> = [("TCP", plain.port(), None)]
        .into_iter()
        .chain(
            tls.as_ref()
                .map(|b| ("TLS", b.port(), Some(pki.ca_pem.as_str()))),
        )
        .collect();
    let qoses = [("0", Qos::AtMostOnce), ("1", Qos::AtLeastOnce)];

    if let Some(only) = &a.only {
        for &(name, port, ca) in &cases {
            for (qname, qos) in qoses {
                if *only != format!("{name}{qname}") {
                    continue;
                }
                let options = options(a, port, ca);
                let (u0, s0) = cpu_split();
                let client = std::env::var("BENCH_CLIENT").unwrap_or_default();
                let run = match client.as_str() {
                    "rumqttc" => measure(a.n, || rumqtt::run(a.window, a.size, port, ca, qos, a.n)),
                    "smol" => measure(a.n, || smol_run(a, &options, a.n, qos)),
                    "smol1" => measure(a.n, || smol_one_thread_run(a, &options, a.n, qos)),
                    "blocking" => measure(a.n, || blocking_run(a, &options, a.n, qos)),
                    _ => measure(a.n, || tokio_run(a, &options, a.n, qos)),
                };
                let (u1, s1) = cpu_split();
                println!(
                    "{only}: {:.0} msg/s, {:.2} CPU µs/msg (user {:.2}, system {:.2})",
                    run.msgs_per_sec,
                    run.cpu_us_per_msg,
                    (u1 - u0) * 1e6 / a.n as f64,
                    (s1 - s0) * 1e6 / a.n as f64
                );
            }
        }
        return;
    }

    println!(
        "{} messages of {} bytes, QoS 1 window {}, median of {} runs (min–max), mosquitto on loopback, {} CPUs\n",
        a.n,
        a.size,
        a.window,
        a.runs,
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    println!(
        "| client | QoS | iothub-tokio msg/s | other msg/s | speed ratio | iothub-tokio CPU µs/msg | other CPU µs/msg | CPU ratio |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    // iothub-tokio's TLS QoS 1 rate against mosquitto, beside the
    // emulator's.
    let mut mosquitto_tls1 = None;
    for &(name, port, ca) in &cases {
        for (qname, qos) in qoses {
            let options = options(a, port, ca);
            let ours = repeat(a, |n| tokio_run(a, &options, n, qos));
            if name == "TLS" && qos == Qos::AtLeastOnce {
                mosquitto_tls1 = Some(ours.0.median);
            }
            let theirs = repeat(a, |n| rumqtt::run(a.window, a.size, port, ca, qos, n));
            row(&format!("{name} rumqttc"), qname, &ours, &theirs);
            if a.adapters {
                let smol = repeat(a, |n| smol_run(a, &options, n, qos));
                row(&format!("{name} iothub-smol"), qname, &ours, &smol);
                let smol1 = repeat(a, |n| smol_one_thread_run(a, &options, n, qos));
                row(
                    &format!("{name} iothub-smol, driver on the app's thread"),
                    qname,
                    &ours,
                    &smol1,
                );
                let blocking = repeat(a, |n| blocking_run(a, &options, n, qos));
                row(&format!("{name} iothub-blocking"), qname, &ours, &blocking);
            }
        }
    }
    if a.emulator {
        emulator(a, mosquitto_tls1);
    }
}

/// The in-process emulator as the broker: SAS over MQTT/TLS, QoS 1. Its
/// own CPU is in this process, so only the rate is reported.
fn emulator(a: &Args, mosquitto_tls1: Option<f64>) {
    let emu = iothub_testkit::Emu::start();
    let options = tune(a, emu.options("bench"));
    let (rate, _) = repeat(a, |n| tokio_run(a, &options, n, Qos::AtLeastOnce));
    let beside = mosquitto_tls1.map_or(String::new(), |m| {
        format!(" (mosquitto, MQTT/TLS, QoS 1, same run: {m:.0} msg/s)")
    });
    println!(
        "\nthe in-process emulator (SAS, MQTT/TLS, QoS 1, window {}): iothub-tokio {:.0} msg/s ({:.0}–{:.0}) ingested{beside}",
        a.window, rate.median, rate.min, rate.max
    );
}
