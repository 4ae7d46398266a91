//! The blocking client against the in-process emulator over real TLS
//! (the tokio adapter's scenario list): every API, a thousand messages
//! across dropped connections, SAS renewal, 429 retries, eviction,
//! WebSocket (also through an HTTP CONNECT proxy), X.509, clear errors,
//! a gateway host, a module identity with a fixed token, manual ack,
//! dropping every handle, the driver on the caller's thread, and command
//! latency while idle. The emulator runs on its own runtime in
//! background threads (iothub-testkit); the client has none.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use iothub_blocking::{
    Client, ClientOptions, ConnectionState, DesiredUpdate, DisconnectReason, Error, Message,
    MessageProperties, Proxy, Transport,
};
use iothub_proto::session::{CommandError, HubStatus, RequestError, StopReason, TransportClosed};
use iothub_testkit::{DeviceAuthentication, Emu, KEY_B64, Pki, wait_until};
use serde_json::json;

const T: Duration = Duration::from_secs(10);

#[test]
fn every_api_over_tls() {
    let emu = Emu::start();
    let client = Client::new(emu.options("dev1")).unwrap();
    client.wait_connected(T).unwrap();

    let mut props = MessageProperties::new();
    props.content_type = Some("application/json".into());
    props.add_application("sensor", "t1").unwrap();
    client
        .send_telemetry(Message::new(&br#"{"t":21.5}"#[..]).with_properties(props))
        .unwrap();
    let m = emu
        .wait_for_telemetry(|m| m.body_text() == Some(r#"{"t":21.5}"#), T)
        .expect("telemetry arrived");
    assert_eq!(m.property("sensor"), Some("t1"));
    assert_eq!(
        m.properties.content_type.as_deref(),
        Some("application/json")
    );
    // A receipt waited on later.
    let receipt = client.queue_telemetry(Message::new(&b"later"[..])).unwrap();
    receipt.wait_timeout(T).unwrap();

    let v1 = client.update_reported(&json!({"fw": "1.0"})).unwrap();
    let v2 = client.update_reported(&json!({"fw": "1.1"})).unwrap();
    assert!(v2 > v1);
    let twin = client.get_twin().unwrap();
    assert_eq!(twin.reported["fw"], "1.1");
    assert_eq!(twin.reported_version, Some(v2));

    let d1 = emu.update_desired("dev1", json!({"rate": 5})).unwrap();
    let desired = client.desired_updates().unwrap();
    match desired.recv_timeout(T).unwrap() {
        DesiredUpdate::Full { desired, version } => {
            assert_eq!(desired["rate"], 5);
            assert_eq!(version, d1);
        }
        other => panic!("expected the full state: {other:?}"),
    }
    let d2 = emu.update_desired("dev1", json!({"rate": 9})).unwrap();
    match desired.recv_timeout(T).unwrap() {
        DesiredUpdate::Patch { patch, version } => {
            assert_eq!(patch["rate"], 9);
            assert_eq!(version, d2);
        }
        other => panic!("expected a patch: {other:?}"),
    }

    // A method answered from another thread iterating the stream.
    let methods = client.method_requests().unwrap();
    let answerer = std::thread::spawn(move || {
        let call = methods.into_iter().next().unwrap();
        assert_eq!(call.name, "reboot");
        let body = format!(r#"{{"got":{}}}"#, String::from_utf8_lossy(&call.payload));
        call.respond(200, body.into_bytes()).unwrap();
    });
    let reply = emu
        .block_on(emu.invoke_when_subscribed("dev1", "reboot", json!({"delay": 3})))
        .unwrap();
    answerer.join().unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.payload, json!({"got": {"delay": 3}}));

    let mut props = MessageProperties::new();
    props.add_application("k", "v").unwrap();
    emu.send_c2d("dev1", &b"down"[..], props).unwrap();
    let c2d = client.c2d_messages().unwrap();
    let m = c2d.recv_timeout(T).unwrap();
    assert_eq!(m.payload.as_ref(), b"down");
    assert_eq!(m.properties.get_application("k"), Some(Some("v")));

    assert!(matches!(
        client.input_messages(),
        Err(Error::Command(CommandError::FeatureNotAvailable(_)))
    ));
    let status = client.status();
    assert_eq!(status.state, ConnectionState::Connected);
    assert_eq!(status.connection, 1);
    client.send_telemetry(Message::new(&b"last"[..])).unwrap();
    client.shutdown(T).unwrap();
    assert_eq!(client.status().state, ConnectionState::Stopped);
    assert!(matches!(client.get_twin(), Err(Error::Closed)));
    assert!(c2d.recv().is_none(), "streams end with the client");
}

#[test]
fn a_thousand_messages_survive_five_dropped_connections() {
    let emu = Emu::start();
    let client = Client::new(
        emu.options("dev1")
            .with_session(|c| c.with_max_in_flight(32)),
    )
    .unwrap();
    client.wait_connected(T).unwrap();
    const N: u32 = 1_000;
    // The sender stops at six checkpoints, with up to 64 messages in
    // flight, until the test has dropped a live connection: the drops
    // happen while sending whatever the speed of the machine.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let (dropped_tx, dropped_rx) = std::sync::mpsc::channel::<()>();
    let sender = {
        let client = client.clone();
        std::thread::spawn(move || {
            let mut receipts = std::collections::VecDeque::new();
            for i in 0..N {
                receipts.push_back(
                    client
                        .queue_telemetry(Message::new(i.to_be_bytes().to_vec()))
                        .unwrap(),
                );
                if receipts.len() >= 64 {
                    receipts.pop_front().unwrap().wait().unwrap();
                }
                if i % 150 == 149 && i < 900 {
                    ready_tx.send(()).unwrap();
                    dropped_rx.recv_timeout(T).unwrap();
                }
            }
            for r in receipts {
                r.wait().unwrap();
            }
        })
    };
    let mut drops = 0;
    for _ in 0..6 {
        ready_rx.recv_timeout(T).unwrap();
        assert!(
            wait_until(T, || emu.drop_connection("dev1").unwrap()),
            "no live connection to drop"
        );
        drops += 1;
        dropped_tx.send(()).unwrap();
    }
    sender.join().unwrap();
    assert!(drops >= 5, "only {drops} drops while sending");
    let mut counts: HashMap<u32, u32> = HashMap::new();
    for n in emu.numbered_telemetry() {
        *counts.entry(n).or_default() += 1;
    }
    assert_eq!(counts.len(), N as usize, "every message arrived");
}

#[test]
fn sas_renewal_reconnects_with_a_new_token_and_loses_nothing() {
    let emu = Emu::start();
    // 2 s tokens renewed at 50 %: a fresh CONNECT every second.
    let client = Client::new(emu.options("dev1").with_session(|c| {
        c.with_sas_lifetime(Duration::from_secs(2))
            .with_renewal_percent(50)
    }))
    .unwrap();
    client.wait_connected(T).unwrap();
    let mut sent = 0u32;
    while client.status().connection < 3 {
        client
            .send_telemetry(Message::new(sent.to_be_bytes().to_vec()))
            .unwrap();
        sent += 1;
        // Pace the sender by the telemetry itself: each send waits for
        // its PUBACK; a bounded wait for the next renewal keeps it short.
        let c = client.status().connection;
        client.wait_status(|s| s.connection > c, Duration::from_millis(20));
    }
    let status = client.status();
    assert_eq!(status.last_disconnect, Some(DisconnectReason::TokenRenewal));
    let mut seen = emu.numbered_telemetry();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len() as u32, sent, "nothing lost across renewals");
}

#[test]
fn throttled_twin_requests_are_retried() {
    let emu = Emu::start();
    let client = Client::new(emu.options("dev1")).unwrap();
    client.wait_connected(T).unwrap();
    emu.fail_next_twin_ops("dev1", 2, 429).unwrap();
    assert!(client.update_reported(&json!({"a": 1})).unwrap() > 0);
    assert_eq!(client.get_twin().unwrap().reported["a"], 1);
    emu.fail_next_twin_ops("dev1", 10, 429).unwrap();
    let e = client.get_twin().unwrap_err();
    assert!(
        matches!(
            e,
            Error::Request(RequestError::Hub(HubStatus { status: 429 }))
        ),
        "{e}"
    );
}

#[test]
fn a_second_client_evicts_the_first() {
    let emu = Emu::start();
    let slow = |o: ClientOptions| {
        o.with_session(|c| {
            c.with_backoff_min(Duration::from_secs(60))
                .with_backoff_max(Duration::from_secs(60))
        })
    };
    let first = Client::new(slow(emu.options("dev1"))).unwrap();
    first.wait_connected(T).unwrap();
    let second = Client::new(slow(emu.options("dev1"))).unwrap();
    second.wait_connected(T).unwrap();
    let s = first
        .wait_status(|s| s.state == ConnectionState::Backoff, T)
        .expect("evicted");
    assert!(
        matches!(s.last_disconnect, Some(DisconnectReason::Transport(_))),
        "{s:?}"
    );
    second.send_telemetry(Message::new(&b"second"[..])).unwrap();
    assert!(emu.is_connected("dev1"));
}

#[test]
fn websocket_transport() {
    let emu = Emu::start();
    let client = Client::new(
        emu.options("dev1")
            .with_transport(Transport::WebSocket)
            .with_port(emu.ws_addr().port()),
    )
    .unwrap();
    client.wait_connected(T).unwrap();
    for i in 0..20u8 {
        client.send_telemetry(Message::new(vec![i; 300])).unwrap();
    }
    // Larger than one TLS record and one read.
    client
        .send_telemetry(Message::new(vec![7u8; 100_000]))
        .unwrap();
    assert!(client.update_reported(&json!({"ws": true})).unwrap() > 0);
    assert_eq!(emu.telemetry().len(), 21);
    client.shutdown(T).unwrap();
}

#[test]
fn websocket_through_an_http_connect_proxy() {
    let emu = Emu::start();
    let (proxy_port, tunnels) = iothub_testkit::connect_proxy();
    let client = Client::new(
        emu.options("dev1")
            .with_transport(Transport::WebSocket)
            .with_port(emu.ws_addr().port())
            .with_proxy(Proxy::new("127.0.0.1", proxy_port)),
    )
    .unwrap();
    client.wait_connected(T).unwrap();
    client
        .send_telemetry(Message::new(&b"via proxy"[..]))
        .unwrap();
    assert_eq!(
        tunnels.recv_timeout(T).unwrap(),
        format!("localhost:{}", emu.ws_addr().port())
    );
}

/// A proxy that accepts the CONNECT request, then answers one byte every
/// 50 ms and never finishes its header; it stops when the client leaves.
fn dribbling_proxy() -> u16 {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let mut request = Vec::new();
                let mut byte = [0u8; 1];
                while !request.ends_with(b"\r\n\r\n") {
                    if conn.read(&mut byte).unwrap_or(0) == 0 {
                        return;
                    }
                    request.push(byte[0]);
                }
                let answer = b"HTTP/1.1 200 OK\r\nX-Pad: "
                    .iter()
                    .chain(std::iter::repeat(&b'a'));
                for b in answer {
                    if conn.write_all(&[*b]).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            });
        }
    });
    port
}

#[test]
fn a_proxy_that_answers_a_byte_at_a_time_is_bounded_by_the_open_timeout() {
    // Every byte comes well within any per-read timeout; only an overall
    // deadline ends the open (before, it waited as long as the proxy
    // kept dribbling).
    let emu = Emu::start();
    let client = Client::new(
        emu.options("dev1")
            .with_transport(Transport::WebSocket)
            .with_port(emu.ws_addr().port())
            .with_proxy(Proxy::new("127.0.0.1", dribbling_proxy()))
            .with_open_timeout(Duration::from_millis(600)),
    )
    .unwrap();
    let s = client
        .wait_status(|s| s.last_disconnect.is_some(), T)
        .unwrap();
    assert_eq!(
        s.last_disconnect,
        Some(DisconnectReason::Transport(TransportClosed::ConnectFailed))
    );
    assert_ne!(s.state, ConnectionState::Connected);
}

#[test]
fn x509_authentication() {
    let emu = Emu::start();
    let pki = Pki::new();
    let (cert_pem, key_pem) = pki.client("x509dev");
    let info = emu
        .create_identity(
            "x509dev",
            DeviceAuthentication::X509 {
                primary_thumbprint: Pki::thumbprint(&cert_pem),
                secondary_thumbprint: None,
            },
        )
        .unwrap();
    let base = ClientOptions::from_connection_string(&info.connection_string())
        .unwrap()
        .with_port(emu.mqtt_addr().port())
        .with_ca_pem(emu.ca());
    assert!(matches!(
        Client::new(base.clone()),
        Err(Error::Options(
            iothub_blocking::OptionsError::MissingClientCertificate
        ))
    ));
    let client = Client::new(base.clone().with_client_certificate(cert_pem, key_pem)).unwrap();
    client.wait_connected(T).unwrap();
    client.send_telemetry(Message::new(&b"signed"[..])).unwrap();
    assert!(client.get_twin().is_ok());
    let (other_cert, other_key) = pki.client("x509dev");
    let intruder = Client::new(base.with_client_certificate(other_cert, other_key)).unwrap();
    let e = intruder.wait_connected(T).unwrap_err();
    assert!(matches!(e, Error::Refused(_)), "{e}");
}

#[test]
fn bad_connection_strings_and_wrong_keys_give_clear_errors() {
    let emu = Emu::start();
    for (cs, expect) in [
        ("HostName=localhost;DeviceId=dev1", "no credential"),
        (
            "HostName=localhost;DeviceID=dev1;SharedAccessKey=AAAA",
            "did you mean `DeviceId`",
        ),
        (
            "HostName=localhost;DeviceId=dev1;SharedAccessKey=not*base64",
            "SharedAccessKey",
        ),
    ] {
        let e = Client::from_connection_string(cs).unwrap_err();
        assert!(e.to_string().contains(expect), "{cs}: {e}");
    }
    let good = emu.options("dev1");
    let wrong = ClientOptions::from_connection_string(&format!(
        "HostName=localhost;DeviceId=dev1;SharedAccessKey={KEY_B64}"
    ))
    .unwrap()
    .with_port(emu.mqtt_addr().port())
    .with_ca_pem(emu.ca());
    let e = Client::new(wrong).unwrap().wait_connected(T).unwrap_err();
    assert!(
        matches!(&e, Error::Refused(r) if r.is_auth_failure()),
        "{e}"
    );
    assert!(
        e.to_string().starts_with("the hub refused the connection"),
        "{e}"
    );
    let untrusted = good
        .with_ca_pem(Pki::new().ca_pem.into_bytes())
        .with_webpki_roots(false);
    let client = Client::new(untrusted).unwrap();
    let s = client
        .wait_status(|s| s.last_disconnect.is_some(), T)
        .unwrap();
    assert_eq!(
        s.last_disconnect,
        Some(DisconnectReason::Transport(
            TransportClosed::HandshakeFailed
        ))
    );
}

#[test]
fn gateway_host_name_is_the_tls_peer_and_the_hub_stays_in_the_username() {
    let emu = Emu::start_with(
        iothub_testkit::Emulator::builder()
            .in_memory()
            .host_name("myhub.azure-devices.net"),
    );
    let cs = emu.create_device("edge-child").unwrap().connection_string();
    let options = ClientOptions::from_connection_string(&format!("{cs};GatewayHostName=localhost"))
        .unwrap()
        .with_port(emu.mqtt_addr().port())
        .with_ca_pem(emu.ca());
    assert_eq!(options.host(), "localhost");
    let client = Client::new(options).unwrap();
    client.wait_connected(T).unwrap();
    client
        .send_telemetry(Message::new(&b"via gateway"[..]))
        .unwrap();
    assert!(emu.is_connected("edge-child"));
}

#[test]
fn builder_with_a_module_identity_a_fixed_token_api_version_and_model_id() {
    use iothub_blocking::Config;
    use iothub_proto::auth::{Credential, HostName, Identity, SasToken};
    let emu = Emu::start();
    emu.create_device("dev1").unwrap();
    let module = emu.create_module("dev1", "filter").unwrap();
    let key = iothub_testkit::key_from_base64(&module.primary_key().unwrap()).unwrap();
    let identity = Identity::parse("dev1", Some("filter")).unwrap();
    let expiry = iothub_net::Clock::unix_secs() + 600;
    let token = SasToken::generate(&identity.resource_uri("localhost"), &key, expiry, None);
    let config = Config::new(
        identity,
        HostName::new("localhost").unwrap(),
        Credential::SharedAccessSignature(token),
    );
    let options = ClientOptions::new(config)
        .with_api_version("2020-09-30")
        .with_model_id("dtmi:com:example:Thermostat;1")
        .with_port(emu.mqtt_addr().port())
        .with_ca_pem(emu.ca());
    let client = Client::new(options).unwrap();
    client.wait_connected(T).unwrap();
    client
        .send_telemetry(Message::new(&b"from a module"[..]))
        .unwrap();
    let m = emu
        .wait_for_telemetry(|m| m.body_text() == Some("from a module"), T)
        .unwrap();
    assert_eq!(m.identity.module_id().map(|m| m.as_str()), Some("filter"));
    assert!(matches!(
        client.c2d_messages(),
        Err(Error::Command(CommandError::FeatureNotAvailable(_)))
    ));
    assert!(client.update_reported(&json!({"module": true})).unwrap() > 0);
    assert_eq!(
        emu.model_id("dev1/filter").unwrap().as_deref(),
        Some("dtmi:com:example:Thermostat;1")
    );
    assert!(emu.model_id("dev1/nobody").is_err());
}

#[test]
fn manual_ack_acknowledges_only_when_asked() {
    let emu = Emu::start();
    let client = Client::new(
        emu.options("dev1")
            .with_session(|c| c.with_manual_ack(true)),
    )
    .unwrap();
    client.wait_connected(T).unwrap();
    let c2d = client.c2d_messages().unwrap();
    emu.send_c2d("dev1", &b"ack me"[..], MessageProperties::new())
        .unwrap();
    let m = c2d.recv_timeout(T).unwrap();
    let token = m.ack.expect("manual-ack mode gives a token");
    // A round trip through the hub: had a PUBACK gone out, it came first.
    client.get_twin().unwrap();
    assert_eq!(
        emu.device("dev1").unwrap().pending_c2d,
        1,
        "not acknowledged yet"
    );
    client.ack(token).unwrap();
    assert!(wait_until(T, || emu.device("dev1").unwrap().pending_c2d == 0));
    assert!(matches!(
        client.ack(token),
        Err(Error::Command(CommandError::AckUndeliverable))
    ));
}

#[test]
fn dropping_every_handle_shuts_the_client_down() {
    let emu = Emu::start();
    let client = Client::new(emu.options("dev1")).unwrap();
    client.wait_connected(T).unwrap();
    let methods = client.method_requests().unwrap();
    drop(client);
    assert!(wait_until(T, || !emu.is_connected("dev1")));
    assert!(methods.recv_timeout(T).is_err(), "the stream ends");
}

#[test]
fn the_driver_runs_on_the_callers_thread() {
    let emu = Emu::start();
    let (client, driver) = Client::with_driver(emu.options("dev1")).unwrap();
    let user = std::thread::spawn(move || {
        client.wait_connected(T).unwrap();
        client.send_telemetry(Message::new(&b"mine"[..])).unwrap();
        client.shutdown(T).unwrap();
        client.status()
    });
    driver.run(); // returns once the client has stopped
    let status = user.join().unwrap();
    assert_eq!(status.stopped, Some(StopReason::Requested));
    assert_eq!(emu.telemetry().len(), 1);
}

#[test]
fn commands_wake_an_idle_driver_at_once() {
    let emu = Emu::start();
    // A long keep-alive: nothing wakes the driver but the commands.
    let client = Client::new(
        emu.options("dev1")
            .with_session(|c| c.with_keep_alive(Duration::from_secs(600))),
    )
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

fn pending(emu: &Emu, target: &str) -> usize {
    emu.device(target).unwrap().pending_c2d
}

#[test]
fn c2d_that_arrives_before_the_stream_is_held_unacknowledged_until_it_is_opened() {
    let emu = Emu::start();
    // A first process subscribed; CleanSession 0 keeps the subscription.
    let first = Client::new(emu.options("dev1")).unwrap();
    first.wait_connected(T).unwrap();
    drop(first.c2d_messages().unwrap());
    first.shutdown(T).unwrap();
    // The next one has no stream yet when the hub delivers on the kept
    // subscription.
    let client = Client::new(emu.options("dev1")).unwrap();
    client.wait_connected(T).unwrap();
    emu.send_c2d("dev1", &b"early"[..], MessageProperties::new())
        .unwrap();
    // A round trip: the hub wrote the C2D before this answer.
    client.get_twin().unwrap();
    assert_eq!(pending(&emu, "dev1"), 1, "not acknowledged");
    let c2d = client.c2d_messages().unwrap();
    assert_eq!(c2d.recv_timeout(T).unwrap().payload.as_ref(), b"early");
    assert!(wait_until(T, || pending(&emu, "dev1") == 0));
    client.shutdown(T).unwrap();
}

#[test]
fn c2d_not_taken_before_a_restart_is_received_by_the_next_process() {
    let emu = Emu::start();
    let client = Client::new(emu.options("dev1")).unwrap();
    client.wait_connected(T).unwrap();
    let c2d = client.c2d_messages().unwrap();
    for body in ["m1", "m2", "m3"] {
        emu.send_c2d("dev1", body.as_bytes(), MessageProperties::new())
            .unwrap();
    }
    assert_eq!(c2d.recv_timeout(T).unwrap().payload.as_ref(), b"m1");
    // Only the message taken is acknowledged.
    assert!(wait_until(T, || pending(&emu, "dev1") == 2));
    client.get_twin().unwrap();
    assert_eq!(pending(&emu, "dev1"), 2);
    // The process ends with two messages it never took.
    drop(c2d);
    client.shutdown(T).unwrap();
    drop(client);
    assert_eq!(pending(&emu, "dev1"), 2, "nothing lost");
    let next = Client::new(emu.options("dev1")).unwrap();
    let c2d = next.c2d_messages().unwrap();
    let a = c2d.recv_timeout(T).unwrap();
    let b = c2d.recv_timeout(T).unwrap();
    assert_eq!(
        (a.payload.as_ref(), b.payload.as_ref()),
        (&b"m2"[..], &b"m3"[..])
    );
    assert!(wait_until(T, || pending(&emu, "dev1") == 0));
    next.shutdown(T).unwrap();
}

#[test]
fn a_dropped_stream_gives_its_messages_to_the_next_stream_unacknowledged() {
    let emu = Emu::start();
    let client = Client::new(emu.options("dev1")).unwrap();
    client.wait_connected(T).unwrap();
    let c2d = client.c2d_messages().unwrap();
    for body in ["a", "b"] {
        emu.send_c2d("dev1", body.as_bytes(), MessageProperties::new())
            .unwrap();
    }
    client.get_twin().unwrap();
    drop(c2d);
    emu.send_c2d("dev1", &b"c"[..], MessageProperties::new())
        .unwrap();
    client.get_twin().unwrap();
    assert_eq!(pending(&emu, "dev1"), 3, "none acknowledged");
    let c2d = client.c2d_messages().unwrap();
    let got: Vec<_> = (0..3)
        .map(|_| c2d.recv_timeout(T).unwrap().payload)
        .collect();
    assert_eq!(got, [&b"a"[..], &b"b"[..], &b"c"[..]], "in their order");
    assert!(wait_until(T, || pending(&emu, "dev1") == 0));
    client.shutdown(T).unwrap();
}

#[test]
fn an_old_stream_dropped_after_a_new_one_opened_hands_its_messages_over() {
    let emu = Emu::start();
    let client = Client::new(emu.options("dev1")).unwrap();
    client.wait_connected(T).unwrap();
    let old = client.c2d_messages().unwrap();
    emu.send_c2d("dev1", &b"x"[..], MessageProperties::new())
        .unwrap();
    client.get_twin().unwrap();
    // A second stream replaces the first, which still holds "x".
    let new = client.c2d_messages().unwrap();
    drop(old);
    emu.send_c2d("dev1", &b"y"[..], MessageProperties::new())
        .unwrap();
    let mut got = vec![
        new.recv_timeout(T).unwrap().payload,
        new.recv_timeout(T).unwrap().payload,
    ];
    got.sort();
    assert_eq!(got, [&b"x"[..], &b"y"[..]]);
    assert!(wait_until(T, || pending(&emu, "dev1") == 0));
    client.shutdown(T).unwrap();
}
