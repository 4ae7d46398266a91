//! The smol adapter against the in-process emulator over real TLS — the
//! tokio adapter's scenario list — each scenario run twice: under smol
//! (`smol::block_on`, driver on `smol::spawn`) and under async-std
//! (`async_std::task::block_on`, driver on `async_std::task::spawn`). The
//! emulator runs on its own runtime in background threads
//! (iothub-testkit); the client never sees tokio.

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use async_io::Timer;
use futures_lite::FutureExt as _;
use iothub_proto::session::{CommandError, HubStatus, RequestError, TransportClosed};
use iothub_smol::{
    Client, ClientOptions, ConnectionState, DesiredUpdate, DisconnectReason, Error, Message,
    MessageProperties, Proxy, Transport,
};
use iothub_testkit::{DeviceAuthentication, Emu, KEY_B64, Pki, wait_until};
use serde_json::json;

#[derive(Clone, Copy)]
enum Rt {
    Smol,
    AsyncStd,
}

impl Rt {
    fn spawn(self, f: impl Future<Output = ()> + Send + 'static) {
        match self {
            Rt::Smol => smol::spawn(f).detach(),
            Rt::AsyncStd => drop(async_std::task::spawn(f)),
        }
    }

    /// A client whose driver runs on this runtime.
    fn client(self, options: ClientOptions) -> Client {
        let (client, driver) = Client::new(options).unwrap();
        self.spawn(driver);
        client
    }
}

/// `f` within `secs` seconds, or the test fails.
async fn within<T>(secs: u64, f: impl Future<Output = T>) -> T {
    f.or(async {
        Timer::after(Duration::from_secs(secs)).await;
        panic!("not within {secs} s")
    })
    .await
}

macro_rules! on_both_runtimes {
    ($($name:ident),* $(,)?) => {
        mod under_smol {
            $( #[test] fn $name() { smol::block_on(super::$name(super::Rt::Smol)) } )*
        }
        mod under_async_std {
            $( #[test] fn $name() { async_std::task::block_on(super::$name(super::Rt::AsyncStd)) } )*
        }
    };
}

on_both_runtimes!(
    every_api_over_tls,
    a_thousand_messages_survive_dropped_connections,
    sas_renewal_loses_nothing,
    throttled_twin_requests_are_retried,
    a_second_client_evicts_the_first,
    websocket_through_an_http_connect_proxy,
    x509_authentication,
    clear_errors,
    manual_ack_and_a_module_identity,
    dropping_every_handle_shuts_the_client_down,
    c2d_that_arrives_before_the_stream_is_held_unacknowledged_until_it_is_opened,
    c2d_not_taken_before_a_restart_is_received_by_the_next_process,
    a_dropped_stream_gives_its_messages_to_the_next_stream_unacknowledged,
);

async fn every_api_over_tls(rt: Rt) {
    let emu = Emu::start();
    let client = rt.client(emu.options("dev1"));
    within(10, client.wait_connected()).await.unwrap();
    let mut props = MessageProperties::new();
    props.add_application("sensor", "t1").unwrap();
    client
        .send_telemetry(Message::new(&br#"{"t":21.5}"#[..]).with_properties(props))
        .await
        .unwrap();
    let m = emu.telemetry().pop().expect("acknowledged, so stored");
    assert_eq!(m.property("sensor"), Some("t1"));

    let v1 = client.update_reported(&json!({"fw": "1.0"})).await.unwrap();
    let twin = client.get_twin().await.unwrap();
    assert_eq!(twin.reported["fw"], "1.0");
    assert_eq!(twin.reported_version, Some(v1));

    let d1 = emu.update_desired("dev1", json!({"rate": 5})).unwrap();
    let mut desired = client.desired_updates().await.unwrap();
    match within(10, desired.recv()).await.unwrap() {
        DesiredUpdate::Full { desired, version } => {
            assert_eq!((desired["rate"].as_u64(), version), (Some(5), d1));
        }
        other => panic!("expected the full state: {other:?}"),
    }
    let d2 = emu.update_desired("dev1", json!({"rate": 9})).unwrap();
    match within(10, desired.recv()).await.unwrap() {
        DesiredUpdate::Patch { patch, version } => {
            assert_eq!((patch["rate"].as_u64(), version), (Some(9), d2));
        }
        other => panic!("expected a patch: {other:?}"),
    }

    let mut methods = client.method_requests().await.unwrap();
    rt.spawn(async move {
        let call = methods.recv().await.unwrap();
        let body = format!(r#"{{"got":{}}}"#, String::from_utf8_lossy(&call.payload));
        call.respond(200, body.into_bytes()).await.unwrap();
    });
    let reply = within(
        20,
        emu.invoke_when_subscribed("dev1", "reboot", json!({"d": 3})),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.payload, json!({"got": {"d": 3}}));

    emu.send_c2d("dev1", &b"down"[..], MessageProperties::new())
        .unwrap();
    let mut c2d = client.c2d_messages().await.unwrap();
    assert_eq!(
        within(10, c2d.recv()).await.unwrap().payload.as_ref(),
        b"down"
    );
    assert!(matches!(
        client.input_messages().await,
        Err(Error::Command(CommandError::FeatureNotAvailable(_)))
    ));
    assert_eq!(client.status().connection, 1);
    within(10, client.shutdown(Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(client.status().state, ConnectionState::Stopped);
    assert!(matches!(
        within(10, client.get_twin()).await,
        Err(Error::Closed)
    ));
    assert!(
        within(10, c2d.recv()).await.is_none(),
        "streams end with the client"
    );
}

async fn a_thousand_messages_survive_dropped_connections(rt: Rt) {
    let emu = Emu::start();
    let client = rt.client(
        emu.options("dev1")
            .with_session(|c| c.with_max_in_flight(32)),
    );
    within(10, client.wait_connected()).await.unwrap();
    const N: u32 = 1_000;
    // The sender stops at six checkpoints, with up to 64 messages in
    // flight, until the test has dropped a live connection: the drops
    // happen while sending whatever the speed of the machine.
    let (ready_tx, ready) = async_channel::bounded::<()>(1);
    let (dropped_tx, dropped) = async_channel::bounded::<()>(1);
    let (done_tx, done) = async_channel::bounded(1);
    {
        let client = client.clone();
        rt.spawn(async move {
            let (tx, rx) = async_channel::bounded::<()>(64);
            let (sent_tx, sent) = async_channel::unbounded::<()>();
            for i in 0..N {
                tx.send(()).await.unwrap(); // at most 64 in flight
                let (client, rx, sent_tx) = (client.clone(), rx.clone(), sent_tx.clone());
                rt.spawn(async move {
                    client
                        .send_telemetry(Message::new(i.to_be_bytes().to_vec()))
                        .await
                        .unwrap();
                    rx.recv().await.unwrap();
                    sent_tx.send(()).await.unwrap();
                });
                if i % 150 == 149 && i < 900 {
                    ready_tx.send(()).await.unwrap();
                    dropped.recv().await.unwrap();
                }
            }
            for _ in 0..N {
                sent.recv().await.unwrap();
            }
            done_tx.send(()).await.unwrap();
        });
    }
    let mut drops: u64 = 0;
    for _ in 0..6 {
        within(30, ready.recv()).await.unwrap();
        // A live connection, newer than the one dropped last.
        let last = drops;
        let connected =
            |s: &iothub_smol::Status| s.state == ConnectionState::Connected && s.connection > last;
        within(30, client.wait_status(connected)).await;
        assert!(
            emu.drop_connection("dev1").unwrap(),
            "no live connection to drop"
        );
        drops += 1;
        dropped_tx.send(()).await.unwrap();
    }
    within(60, done.recv()).await.unwrap();
    assert!(drops >= 5, "only {drops} drops while sending");
    let seen: HashSet<u32> = emu.numbered_telemetry().into_iter().collect();
    assert_eq!(seen.len(), N as usize, "every message arrived");
}

async fn sas_renewal_loses_nothing(rt: Rt) {
    let emu = Emu::start();
    let client = rt.client(emu.options("dev1").with_session(|c| {
        c.with_sas_lifetime(Duration::from_secs(2))
            .with_renewal_percent(50)
    }));
    within(10, client.wait_connected()).await.unwrap();
    let mut sent = 0u32;
    while client.status().connection < 3 {
        client
            .send_telemetry(Message::new(sent.to_be_bytes().to_vec()))
            .await
            .unwrap();
        sent += 1;
    }
    assert_eq!(
        client.status().last_disconnect,
        Some(DisconnectReason::TokenRenewal)
    );
    let seen: HashSet<u32> = emu.numbered_telemetry().into_iter().collect();
    assert_eq!(seen.len() as u32, sent, "nothing lost across renewals");
}

async fn throttled_twin_requests_are_retried(rt: Rt) {
    let emu = Emu::start();
    let client = rt.client(emu.options("dev1"));
    within(10, client.wait_connected()).await.unwrap();
    emu.fail_next_twin_ops("dev1", 2, 429).unwrap();
    assert!(
        within(30, client.update_reported(&json!({"a": 1})))
            .await
            .unwrap()
            > 0
    );
    emu.fail_next_twin_ops("dev1", 10, 429).unwrap();
    let e = within(60, client.get_twin()).await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::Request(RequestError::Hub(HubStatus { status: 429 }))
        ),
        "{e}"
    );
}

async fn a_second_client_evicts_the_first(rt: Rt) {
    let emu = Emu::start();
    let slow = |o: ClientOptions| {
        o.with_session(|c| {
            c.with_backoff_min(Duration::from_secs(60))
                .with_backoff_max(Duration::from_secs(60))
        })
    };
    let first = rt.client(slow(emu.options("dev1")));
    within(10, first.wait_connected()).await.unwrap();
    let second = rt.client(slow(emu.options("dev1")));
    within(10, second.wait_connected()).await.unwrap();
    let s = within(
        10,
        first.wait_status(|s| s.state == ConnectionState::Backoff),
    )
    .await;
    assert!(
        matches!(s.last_disconnect, Some(DisconnectReason::Transport(_))),
        "{s:?}"
    );
    second
        .send_telemetry(Message::new(&b"second"[..]))
        .await
        .unwrap();
}

async fn websocket_through_an_http_connect_proxy(rt: Rt) {
    let emu = Emu::start();
    let ws = |o: ClientOptions| {
        o.with_transport(Transport::WebSocket)
            .with_port(emu.ws_addr().port())
    };
    let client = rt.client(ws(emu.options("dev1")));
    within(10, client.wait_connected()).await.unwrap();
    for i in 0..20u8 {
        client
            .send_telemetry(Message::new(vec![i; 300]))
            .await
            .unwrap();
    }
    client
        .send_telemetry(Message::new(vec![7u8; 100_000]))
        .await
        .unwrap();
    client.shutdown(Duration::from_secs(5)).await.unwrap();
    let (proxy_port, tunnels) = iothub_testkit::connect_proxy();
    let proxied =
        rt.client(ws(emu.options("dev1")).with_proxy(Proxy::new("127.0.0.1", proxy_port)));
    within(10, proxied.wait_connected()).await.unwrap();
    proxied
        .send_telemetry(Message::new(&b"via proxy"[..]))
        .await
        .unwrap();
    let target = tunnels.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(target, format!("localhost:{}", emu.ws_addr().port()));
    assert_eq!(emu.telemetry().len(), 22);
}

async fn x509_authentication(rt: Rt) {
    let emu = Emu::start();
    let pki = Pki::new();
    let (cert_pem, key_pem) = pki.client("x509dev");
    let auth = DeviceAuthentication::X509 {
        primary_thumbprint: Pki::thumbprint(&cert_pem),
        secondary_thumbprint: None,
    };
    let info = emu.create_identity("x509dev", auth).unwrap();
    let base = ClientOptions::from_connection_string(&info.connection_string())
        .unwrap()
        .with_port(emu.mqtt_addr().port())
        .with_ca_pem(emu.ca());
    assert!(matches!(
        Client::new(base.clone()),
        Err(Error::Options(
            iothub_smol::OptionsError::MissingClientCertificate
        ))
    ));
    let client = rt.client(base.clone().with_client_certificate(cert_pem, key_pem));
    within(10, client.wait_connected()).await.unwrap();
    client
        .send_telemetry(Message::new(&b"signed"[..]))
        .await
        .unwrap();
    let (other_cert, other_key) = pki.client("x509dev");
    let intruder = rt.client(base.with_client_certificate(other_cert, other_key));
    let e = within(10, intruder.wait_connected()).await.unwrap_err();
    assert!(matches!(e, Error::Refused(_)), "{e}");
}

async fn clear_errors(rt: Rt) {
    let emu = Emu::start();
    let e = Client::from_connection_string("HostName=localhost;DeviceId=dev1").unwrap_err();
    assert!(e.to_string().contains("no credential"), "{e}");
    let wrong = ClientOptions::from_connection_string(&format!(
        "HostName=localhost;DeviceId=dev1;SharedAccessKey={KEY_B64}"
    ))
    .unwrap()
    .with_port(emu.mqtt_addr().port())
    .with_ca_pem(emu.ca());
    emu.create_device("dev1").unwrap();
    let e = within(10, rt.client(wrong).wait_connected())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Refused(r) if r.is_auth_failure()),
        "{e}"
    );
    let untrusted = emu
        .options("dev1")
        .with_ca_pem(Pki::new().ca_pem)
        .with_webpki_roots(false);
    let client = rt.client(untrusted);
    let s = within(10, client.wait_status(|s| s.last_disconnect.is_some())).await;
    assert_eq!(
        s.last_disconnect,
        Some(DisconnectReason::Transport(
            TransportClosed::HandshakeFailed
        ))
    );
}

async fn manual_ack_and_a_module_identity(rt: Rt) {
    let emu = Emu::start();
    let client = rt.client(
        emu.options("dev1")
            .with_session(|c| c.with_manual_ack(true)),
    );
    within(10, client.wait_connected()).await.unwrap();
    let mut c2d = client.c2d_messages().await.unwrap();
    emu.send_c2d("dev1", &b"ack me"[..], MessageProperties::new())
        .unwrap();
    let token = within(10, c2d.recv()).await.unwrap().ack.expect("a token");
    client.get_twin().await.unwrap(); // a round trip: no PUBACK went out
    assert_eq!(emu.device("dev1").unwrap().pending_c2d, 1);
    client.ack(token).await.unwrap();
    assert!(wait_until(Duration::from_secs(10), || emu
        .device("dev1")
        .unwrap()
        .pending_c2d
        == 0));

    let module = emu.create_module("dev1", "filter").unwrap();
    let options = ClientOptions::from_connection_string(&module.connection_string())
        .unwrap()
        .with_port(emu.mqtt_addr().port())
        .with_ca_pem(emu.ca());
    let m = rt.client(options);
    within(10, m.wait_connected()).await.unwrap();
    m.send_telemetry(Message::new(&b"from a module"[..]))
        .await
        .unwrap();
    let got = emu.telemetry().pop().unwrap();
    assert_eq!(got.identity.module_id().map(|m| m.as_str()), Some("filter"));
}

async fn dropping_every_handle_shuts_the_client_down(rt: Rt) {
    let emu = Emu::start();
    let client = rt.client(emu.options("dev1"));
    within(10, client.wait_connected()).await.unwrap();
    let mut methods = client.method_requests().await.unwrap();
    drop(client);
    assert!(
        within(10, methods.recv()).await.is_none(),
        "the stream ends"
    );
    assert!(wait_until(Duration::from_secs(10), || !emu.is_connected("dev1")));
}

fn pending(emu: &Emu, target: &str) -> usize {
    emu.device(target).unwrap().pending_c2d
}

/// Waits (bounded) until the emulator holds `n` unacknowledged messages.
async fn pending_becomes(emu: &Emu, target: &str, n: usize) {
    within(10, async {
        while pending(emu, target) != n {
            Timer::after(Duration::from_millis(20)).await;
        }
    })
    .await;
}

async fn c2d_that_arrives_before_the_stream_is_held_unacknowledged_until_it_is_opened(rt: Rt) {
    let emu = Emu::start();
    // A first process subscribed; CleanSession 0 keeps the subscription.
    let first = rt.client(emu.options("dev1"));
    within(10, first.wait_connected()).await.unwrap();
    drop(first.c2d_messages().await.unwrap());
    first.shutdown(Duration::from_secs(5)).await.unwrap();
    // The next one has no stream yet when the hub delivers on the kept
    // subscription.
    let client = rt.client(emu.options("dev1"));
    within(10, client.wait_connected()).await.unwrap();
    emu.send_c2d("dev1", &b"early"[..], MessageProperties::new())
        .unwrap();
    // A round trip: the hub wrote the C2D before this answer.
    client.get_twin().await.unwrap();
    assert_eq!(pending(&emu, "dev1"), 1, "not acknowledged");
    let mut c2d = client.c2d_messages().await.unwrap();
    let m = within(10, c2d.recv()).await.unwrap();
    assert_eq!(m.payload.as_ref(), b"early");
    pending_becomes(&emu, "dev1", 0).await;
    client.shutdown(Duration::from_secs(5)).await.unwrap();
}

async fn c2d_not_taken_before_a_restart_is_received_by_the_next_process(rt: Rt) {
    let emu = Emu::start();
    let client = rt.client(emu.options("dev1"));
    within(10, client.wait_connected()).await.unwrap();
    let mut c2d = client.c2d_messages().await.unwrap();
    for body in ["m1", "m2", "m3"] {
        emu.send_c2d("dev1", body.as_bytes(), MessageProperties::new())
            .unwrap();
    }
    let m = within(10, c2d.recv()).await.unwrap();
    assert_eq!(m.payload.as_ref(), b"m1");
    // Only the message taken is acknowledged.
    pending_becomes(&emu, "dev1", 2).await;
    client.get_twin().await.unwrap();
    assert_eq!(pending(&emu, "dev1"), 2);
    // The process ends with two messages it never took.
    drop(c2d);
    client.shutdown(Duration::from_secs(5)).await.unwrap();
    drop(client);
    assert_eq!(pending(&emu, "dev1"), 2, "nothing lost");
    let next = rt.client(emu.options("dev1"));
    let mut c2d = next.c2d_messages().await.unwrap();
    let a = within(10, c2d.recv()).await.unwrap();
    let b = within(10, c2d.recv()).await.unwrap();
    assert_eq!(
        (a.payload.as_ref(), b.payload.as_ref()),
        (&b"m2"[..], &b"m3"[..])
    );
    pending_becomes(&emu, "dev1", 0).await;
    next.shutdown(Duration::from_secs(5)).await.unwrap();
}

async fn a_dropped_stream_gives_its_messages_to_the_next_stream_unacknowledged(rt: Rt) {
    let emu = Emu::start();
    let client = rt.client(emu.options("dev1"));
    within(10, client.wait_connected()).await.unwrap();
    let c2d = client.c2d_messages().await.unwrap();
    for body in ["a", "b"] {
        emu.send_c2d("dev1", body.as_bytes(), MessageProperties::new())
            .unwrap();
    }
    client.get_twin().await.unwrap();
    drop(c2d);
    emu.send_c2d("dev1", &b"c"[..], MessageProperties::new())
        .unwrap();
    client.get_twin().await.unwrap();
    assert_eq!(pending(&emu, "dev1"), 3, "none acknowledged");
    let mut c2d = client.c2d_messages().await.unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(within(10, c2d.recv()).await.unwrap().payload);
    }
    assert_eq!(got, [&b"a"[..], &b"b"[..], &b"c"[..]], "in their order");
    pending_becomes(&emu, "dev1", 0).await;
    client.shutdown(Duration::from_secs(5)).await.unwrap();
}
