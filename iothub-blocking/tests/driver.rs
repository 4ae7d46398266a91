//! What only the blocking client has: its driver on the caller's thread
//! (`build_with_driver`, also for an IoT Edge module), commands that
//! wake an idle driver at once, and telemetry queued before a shutdown
//! sent in its drain.

use std::time::{Duration, Instant};

use iothub_blocking::{Client, Message, StopReason};
use iothub_testkit::Emu;

const T: Duration = Duration::from_secs(10);

#[test]
fn the_driver_runs_on_the_callers_thread() {
    let emu = Emu::start();
    let (client, driver) = Client::builder(emu.options("dev1"))
        .build_with_driver()
        .unwrap();
    let user = std::thread::spawn(move || {
        client.wait_connected(T).unwrap();
        client.send_telemetry(Message::new(&b"mine"[..])).unwrap();
        client.shutdown(T).unwrap();
        client.status().get()
    });
    driver.run(); // returns once the client has stopped
    let status = user.join().unwrap();
    assert_eq!(status.stopped, Some(StopReason::Requested));
    assert_eq!(emu.telemetry().len(), 1);
}

#[cfg(unix)]
#[test]
fn an_edge_module_with_its_driver_on_the_callers_thread() {
    use iothub_blocking::Source;
    use iothub_testkit::workload::FakeWorkload;
    const GEN: &str = "637000000000000001";
    let emu = Emu::start();
    emu.create_device("edge1").unwrap();
    let module = emu.create_module("edge1", "filter").unwrap();
    let key = iothub_testkit::key_from_base64(&module.primary_key().unwrap()).unwrap();
    let ca = String::from_utf8(emu.ca()).unwrap();
    let workload = FakeWorkload::start("filter", GEN, key.expose_secret(), &ca);
    let env = workload.environment(&emu.host_name(), None, "edge1", "filter", GEN);
    let port = emu.mqtt_addr().port();
    let (client, driver) = Client::builder(Source::edge_module(env))
        .configure(move |o| o.with_webpki_roots(false).with_port(port))
        .build_with_driver()
        .unwrap();
    let thread = std::thread::spawn(move || driver.run());
    client.wait_connected(T).unwrap();
    assert_eq!(workload.sign_calls(), 1);
    client
        .send_telemetry(Message::new(&b"driven by the caller"[..]))
        .unwrap();
    client.shutdown(Duration::from_secs(2)).unwrap();
    thread.join().unwrap();
    assert_eq!(emu.telemetry().len(), 1);
}

#[test]
fn commands_wake_an_idle_driver_at_once() {
    let emu = Emu::start();
    // A long keep-alive: nothing wakes the driver but the commands.
    let client = Client::builder(
        emu.options("dev1")
            .with_session(|c| c.with_keep_alive(Duration::from_secs(600))),
    )
    .build()
    .unwrap();
    client.wait_connected(T).unwrap();
    client.get_twin().unwrap();
    let mut worst = Duration::ZERO;
    for _ in 0..20 {
        let start = Instant::now();
        client.get_twin().unwrap();
        worst = worst.max(start.elapsed());
    }
    // A round trip to the emulator on loopback; a polling tick would show.
    assert!(
        worst < Duration::from_millis(200),
        "worst twin round trip {worst:?}"
    );
}

#[test]
fn telemetry_queued_before_shutdown_is_delivered() {
    let emu = Emu::start();
    let client = Client::builder(emu.options("dev1")).build().unwrap();
    client.wait_connected(T).unwrap();
    // Queued (the driver told once, by the bell), then shutdown at once:
    // the messages were first, so the drain sends them.
    let receipts: Vec<_> = (0..20)
        .map(|i| {
            let m = Message::new(format!("before shutdown {i}").into_bytes());
            client.queue_telemetry(m).unwrap()
        })
        .collect();
    client.shutdown(T).unwrap();
    for (i, r) in receipts.into_iter().enumerate() {
        r.wait_timeout(T)
            .unwrap_or_else(|e| panic!("message {i} queued before shutdown: {e}"));
    }
    assert_eq!(emu.telemetry().len(), 20);
}
