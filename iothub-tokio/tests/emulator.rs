//! The client against the in-process emulator (`iothub_emulator`) over
//! real TLS with its generated CA: every API, reconnection without loss,
//! SAS renewal, 429 retries, eviction, WebSocket (also through an HTTP
//! CONNECT proxy), X.509 authentication, and clear errors.

mod support;

use std::time::Duration;

use iothub_emulator::{DeviceAuthentication, Emulator, EmulatorHandle};
use iothub_proto::session::{HubStatus, RequestError};
use iothub_tokio::{
    Client, ClientOptions, ConnectionState, DesiredUpdate, DisconnectReason, Error, Message,
    MessageProperties, Proxy, Transport,
};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

async fn emulator() -> EmulatorHandle {
    support::init_tracing();
    Emulator::builder()
        .in_memory()
        .start()
        .await
        .expect("emulator")
}

/// Options for `dev1` (created if needed) over MQTT/TLS, quick backoff.
fn options(emu: &EmulatorHandle, device: &str) -> ClientOptions {
    let info = emu.create_device(device).expect("device");
    ClientOptions::from_connection_string(&info.connection_string())
        .expect("connection string")
        .with_port(emu.mqtt_addr().port())
        .with_ca_pem(emu.ca_pem().expect("generated CA").as_bytes().to_vec())
        .with_session(|c| {
            c.with_backoff_min(Duration::from_millis(50))
                .with_backoff_max(Duration::from_millis(300))
        })
}

async fn within<T>(secs: u64, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("in time")
}

#[tokio::test]
async fn every_api_over_tls() {
    let emu = emulator().await;
    let client = Client::new(options(&emu, "dev1")).unwrap();
    within(10, client.wait_connected()).await.unwrap();

    // Telemetry with properties.
    let mut props = MessageProperties::new();
    props.content_type = Some("application/json".into());
    props.add_application("sensor", "t1").unwrap();
    client
        .send_telemetry(Message::new(&br#"{"t":21.5}"#[..]).with_properties(props))
        .await
        .unwrap();
    let m = emu
        .wait_for_telemetry(
            |m| m.body_text() == Some(r#"{"t":21.5}"#),
            Duration::from_secs(5),
        )
        .await
        .expect("telemetry arrived");
    assert_eq!(m.property("sensor"), Some("t1"));
    assert_eq!(
        m.properties.content_type.as_deref(),
        Some("application/json")
    );

    // Twin: report, read back.
    let v1 = client.update_reported(&json!({"fw": "1.0"})).await.unwrap();
    let v2 = client.update_reported(&json!({"fw": "1.1"})).await.unwrap();
    assert!(v2 > v1);
    let twin = client.get_twin().await.unwrap();
    assert_eq!(twin.reported["fw"], "1.1");
    assert_eq!(twin.reported_version, Some(v2));

    // Desired: full state, then a patch.
    let d1 = emu.update_desired("dev1", json!({"rate": 5})).unwrap();
    let mut desired = client.desired_updates().await.unwrap();
    match within(10, desired.recv()).await.unwrap() {
        DesiredUpdate::Full { desired, version } => {
            assert_eq!(desired["rate"], 5);
            assert_eq!(version, d1);
        }
        other => panic!("expected the full state: {other:?}"),
    }
    let d2 = emu.update_desired("dev1", json!({"rate": 9})).unwrap();
    match within(10, desired.recv()).await.unwrap() {
        DesiredUpdate::Patch { patch, version } => {
            assert_eq!(patch["rate"], 9);
            assert_eq!(version, d2);
        }
        other => panic!("expected a patch: {other:?}"),
    }

    // Direct method, answered by a task reading the stream.
    let mut methods = client.method_requests().await.unwrap();
    let answerer = tokio::spawn(async move {
        let call = methods.recv().await.unwrap();
        assert_eq!(call.name, "reboot");
        let body = format!(r#"{{"got":{}}}"#, String::from_utf8_lossy(&call.payload));
        call.respond(200, body.into_bytes()).await.unwrap();
    });
    let reply = within(20, async {
        loop {
            match emu
                .invoke_method(
                    "dev1",
                    "reboot",
                    json!({"delay": 3}),
                    Duration::from_secs(10),
                )
                .await
            {
                Ok(r) => return r,
                // Until the subscription is in place.
                Err(iothub_emulator::EmulatorError::NotConnected) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("{e}"),
            }
        }
    })
    .await;
    answerer.await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.payload, json!({"got": {"delay": 3}}));

    // Cloud-to-device, queued before the subscription exists.
    let mut props = MessageProperties::new();
    props.add_application("k", "v").unwrap();
    emu.send_c2d("dev1", &b"down"[..], props).unwrap();
    let mut c2d = client.c2d_messages().await.unwrap();
    let m = within(10, c2d.recv()).await.unwrap();
    assert_eq!(m.payload.as_ref(), b"down");
    assert_eq!(m.properties.get_application("k"), Some(Some("v")));

    // Connection state is observable; shutdown flushes and stops.
    let status = client.status().borrow().clone();
    assert_eq!(status.state, ConnectionState::Connected);
    assert_eq!(status.connection, 1);
    client
        .send_telemetry(Message::new(&b"last"[..]))
        .await
        .unwrap();
    client.shutdown(Duration::from_secs(5)).await.unwrap();
    assert_eq!(client.status().borrow().state, ConnectionState::Stopped);
    assert!(matches!(client.get_twin().await, Err(Error::Closed)));
    emu.shutdown().await;
}

#[tokio::test]
async fn a_thousand_messages_survive_five_dropped_connections() {
    let emu = emulator().await;
    let client =
        Client::new(options(&emu, "dev1").with_session(|c| c.with_max_in_flight(32))).unwrap();
    within(10, client.wait_connected()).await.unwrap();
    const N: u32 = 1_000;
    // The sender stops at six checkpoints, with up to 64 messages in
    // flight, until the test has dropped a live connection.
    let (checkpoints, dropper) = support::checkpoints();
    let sender = support::send_numbered(client.clone(), N, checkpoints);
    let drops = dropper
        .drop_at(6, client.status(), || emu.drop_connection("dev1").unwrap())
        .await;
    within(60, sender).await.unwrap();
    assert!(drops >= 5, "only {drops} drops while sending");
    let telemetry = emu.telemetry();
    let counts = support::count_numbered(telemetry.iter().map(|m| m.body.as_ref()));
    let duplicates: u32 = counts.values().map(|c| c - 1).sum();
    eprintln!(
        "{N} QoS 1 messages, {drops} dropped connections: {} distinct arrived, {duplicates} duplicates",
        counts.len()
    );
    assert_eq!(counts.len(), N as usize, "every message arrived");
    emu.shutdown().await;
}

#[tokio::test]
async fn sas_renewal_reconnects_with_a_new_token_and_loses_nothing() {
    let emu = emulator().await;
    // 4 s tokens renewed at 50 %: a fresh CONNECT every 2 s.
    let client = Client::new(options(&emu, "dev1").with_session(|c| {
        c.with_sas_lifetime(Duration::from_secs(4))
            .with_renewal_percent(50)
    }))
    .unwrap();
    within(10, client.wait_connected()).await.unwrap();
    let mut sent = 0u32;
    let end = tokio::time::Instant::now() + Duration::from_millis(5_000);
    while tokio::time::Instant::now() < end {
        client
            .send_telemetry(Message::new(sent.to_be_bytes().to_vec()))
            .await
            .unwrap();
        sent += 1;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let status = client.status().borrow().clone();
    assert!(status.connection >= 3, "renewed at least twice: {status:?}");
    assert_eq!(status.last_disconnect, Some(DisconnectReason::TokenRenewal));
    let mut seen: Vec<u32> = emu
        .telemetry()
        .iter()
        .map(|m| u32::from_be_bytes(m.body.as_ref().try_into().unwrap()))
        .collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len() as u32, sent, "nothing lost across renewals");
    emu.shutdown().await;
}

#[tokio::test]
async fn throttled_twin_requests_are_retried() {
    let emu = emulator().await;
    let client = Client::new(options(&emu, "dev1")).unwrap();
    within(10, client.wait_connected()).await.unwrap();
    emu.fail_next_twin_ops("dev1", 2, 429).unwrap();
    let v = within(30, client.update_reported(&json!({"a": 1})))
        .await
        .unwrap();
    assert!(v > 0);
    assert_eq!(client.get_twin().await.unwrap().reported["a"], 1);
    emu.fail_next_twin_ops("dev1", 10, 429).unwrap();
    let e = within(60, client.get_twin()).await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::Request(RequestError::Hub(HubStatus { status: 429 }))
        ),
        "{e}"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn a_second_client_evicts_the_first() {
    let emu = emulator().await;
    let slow = |o: ClientOptions| {
        o.with_session(|c| {
            c.with_backoff_min(Duration::from_secs(60))
                .with_backoff_max(Duration::from_secs(60))
        })
    };
    let first = Client::new(slow(options(&emu, "dev1"))).unwrap();
    within(10, first.wait_connected()).await.unwrap();
    let second = Client::new(slow(options(&emu, "dev1"))).unwrap();
    within(10, second.wait_connected()).await.unwrap();
    let mut status = first.status();
    let s = within(10, status.wait_for(|s| s.state == ConnectionState::Backoff))
        .await
        .unwrap()
        .clone();
    assert!(
        matches!(s.last_disconnect, Some(DisconnectReason::Transport(_))),
        "{s:?}"
    );
    second
        .send_telemetry(Message::new(&b"second"[..]))
        .await
        .unwrap();
    assert!(emu.is_connected("dev1"));
    emu.shutdown().await;
}

#[tokio::test]
async fn websocket_transport() {
    let emu = emulator().await;
    let client = Client::new(
        options(&emu, "dev1")
            .with_transport(Transport::WebSocket)
            .with_port(emu.ws_addr().port()),
    )
    .unwrap();
    within(10, client.wait_connected()).await.unwrap();
    for i in 0..20u8 {
        client
            .send_telemetry(Message::new(vec![i; 300]))
            .await
            .unwrap();
    }
    let v = client.update_reported(&json!({"ws": true})).await.unwrap();
    assert!(v > 0);
    assert_eq!(emu.telemetry().len(), 20);
    client.shutdown(Duration::from_secs(5)).await.unwrap();
    emu.shutdown().await;
}

/// A one-shot HTTP CONNECT proxy on loopback; counts the tunnels it made.
async fn connect_proxy() -> (u16, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") {
                    head.push(inbound.read_u8().await.unwrap());
                }
                let head = String::from_utf8(head).unwrap();
                let target = head.split(' ').nth(1).unwrap().to_string();
                let _ = tx.send(target.clone());
                // Loopback only: the target must be localhost.
                let port: u16 = target.rsplit_once(':').unwrap().1.parse().unwrap();
                let mut outbound = tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .unwrap();
                inbound
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .unwrap();
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            });
        }
    });
    (port, rx)
}

#[tokio::test]
async fn websocket_through_an_http_connect_proxy() {
    let emu = emulator().await;
    let (proxy_port, mut tunnels) = connect_proxy().await;
    let client = Client::new(
        options(&emu, "dev1")
            .with_transport(Transport::WebSocket)
            .with_port(emu.ws_addr().port())
            .with_proxy(Proxy::new("127.0.0.1", proxy_port)),
    )
    .unwrap();
    within(10, client.wait_connected()).await.unwrap();
    client
        .send_telemetry(Message::new(&b"via proxy"[..]))
        .await
        .unwrap();
    assert_eq!(
        tunnels.recv().await.unwrap(),
        format!("localhost:{}", emu.ws_addr().port())
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn x509_authentication() {
    let emu = emulator().await;
    let pki = support::Pki::new();
    let (cert_pem, key_pem) = pki.client("x509dev");
    let der = {
        use tokio_rustls::rustls::pki_types::{CertificateDer, pem::PemObject as _};
        CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap()
    };
    let info = emu
        .create_identity(
            "x509dev",
            DeviceAuthentication::X509 {
                primary_thumbprint: iothub_emulator::thumbprint(&der),
                secondary_thumbprint: None,
            },
        )
        .unwrap();
    let cs = info.connection_string();
    assert!(cs.ends_with("x509=true"), "{cs}");
    let base = ClientOptions::from_connection_string(&cs)
        .unwrap()
        .with_port(emu.mqtt_addr().port())
        .with_ca_pem(emu.ca_pem().unwrap().as_bytes().to_vec());
    // Without a certificate: refused before any socket is opened.
    assert!(matches!(
        Client::new(base.clone()),
        Err(Error::Options(
            iothub_tokio::OptionsError::MissingClientCertificate
        ))
    ));
    let client = Client::new(base.clone().with_client_certificate(cert_pem, key_pem)).unwrap();
    within(10, client.wait_connected()).await.unwrap();
    client
        .send_telemetry(Message::new(&b"signed"[..]))
        .await
        .unwrap();
    assert!(client.get_twin().await.is_ok());
    // Another certificate (same CA, other thumbprint) is refused.
    let (other_cert, other_key) = pki.client("x509dev");
    let intruder = Client::new(base.with_client_certificate(other_cert, other_key)).unwrap();
    let e = within(10, intruder.wait_connected()).await.unwrap_err();
    assert!(matches!(e, Error::Refused(_)), "{e}");
    emu.shutdown().await;
}

#[tokio::test]
async fn bad_connection_strings_and_wrong_keys_give_clear_errors() {
    let emu = emulator().await;
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
        ("DeviceId=dev1;SharedAccessKey=AAAA", "no `HostName`"),
    ] {
        let e = Client::from_connection_string(cs).unwrap_err();
        assert!(e.to_string().contains(expect), "{cs}: {e}");
    }
    // A wrong key: the hub refuses the CONNECT (code 4 or 5).
    let good = options(&emu, "dev1");
    let wrong = ClientOptions::from_connection_string(&format!(
        "HostName=localhost;DeviceId=dev1;SharedAccessKey={}",
        support::KEY_B64
    ))
    .unwrap()
    .with_port(emu.mqtt_addr().port())
    .with_ca_pem(emu.ca_pem().unwrap().as_bytes().to_vec());
    let client = Client::new(wrong).unwrap();
    let e = within(10, client.wait_connected()).await.unwrap_err();
    assert!(
        matches!(&e, Error::Refused(r) if r.is_auth_failure()),
        "{e}"
    );
    assert!(
        e.to_string().starts_with("the hub refused the connection"),
        "{e}"
    );
    // An unknown device likewise.
    let unknown = good.clone().with_session(|mut c| {
        c.identity = iothub_proto::auth::Identity::parse("nobody", None).unwrap();
        c
    });
    let e = within(10, Client::new(unknown).unwrap().wait_connected())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Refused(_)), "{e}");
    // A CA that did not sign the server certificate: a handshake failure.
    let untrusted = good
        .with_ca_pem(support::Pki::new().ca_pem.into_bytes())
        .with_webpki_roots(false);
    let client = Client::new(untrusted).unwrap();
    let mut status = client.status();
    let s = within(10, status.wait_for(|s| s.last_disconnect.is_some()))
        .await
        .unwrap()
        .clone();
    assert_eq!(
        s.last_disconnect,
        Some(DisconnectReason::Transport(
            iothub_proto::session::TransportClosed::HandshakeFailed
        ))
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn gateway_host_name_is_the_tls_peer_and_the_hub_stays_in_the_username() {
    support::init_tracing();
    let emu = Emulator::builder()
        .in_memory()
        .host_name("myhub.azure-devices.net")
        .start()
        .await
        .unwrap();
    let cs = emu.create_device("edge-child").unwrap().connection_string();
    assert!(cs.starts_with("HostName=myhub.azure-devices.net;"), "{cs}");
    // The TCP/TLS peer is the "gateway" (the emulator's certificate is for
    // localhost); the SAS token and username name the hub.
    let options = ClientOptions::from_connection_string(&format!("{cs};GatewayHostName=localhost"))
        .unwrap()
        .with_port(emu.mqtt_addr().port())
        .with_ca_pem(emu.ca_pem().unwrap().as_bytes().to_vec());
    assert_eq!(options.host(), "localhost");
    let client = Client::new(options).unwrap();
    within(10, client.wait_connected()).await.unwrap();
    client
        .send_telemetry(Message::new(&b"via gateway"[..]))
        .await
        .unwrap();
    assert!(emu.is_connected("edge-child"));
    emu.shutdown().await;
}

#[tokio::test]
async fn a_cancelled_send_is_still_delivered() {
    use futures_util::FutureExt as _;
    let emu = emulator().await;
    let client = Client::new(options(&emu, "dev1")).unwrap();
    within(10, client.wait_connected()).await.unwrap();
    // Polled once: queued to the driver, then dropped before its PUBACK.
    let dropped = client
        .send_telemetry(Message::new(&b"fire and forget"[..]))
        .now_or_never();
    assert!(
        dropped.is_none(),
        "cannot be acknowledged on the first poll"
    );
    let m = emu
        .wait_for_telemetry(
            |m| m.body_text() == Some("fire and forget"),
            Duration::from_secs(10),
        )
        .await;
    assert!(m.is_some(), "the message was delivered anyway");
    // The client is unaffected.
    client
        .send_telemetry(Message::new(&b"next"[..]))
        .await
        .unwrap();
    emu.shutdown().await;
}

#[tokio::test]
async fn dropping_every_handle_shuts_the_client_down() {
    let emu = emulator().await;
    let client = Client::new(options(&emu, "dev1")).unwrap();
    within(10, client.wait_connected()).await.unwrap();
    let mut status = client.status();
    drop(client);
    let s = within(10, status.wait_for(|s| s.state == ConnectionState::Stopped))
        .await
        .map(|s| s.clone());
    // The driver may end (and close the watch) right after its last status.
    if let Ok(s) = s {
        assert_eq!(
            s.stopped,
            Some(iothub_proto::session::StopReason::Requested)
        );
    }
    within(10, async {
        while emu.is_connected("dev1") {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    emu.shutdown().await;
}

#[tokio::test]
async fn builder_with_a_module_identity_a_fixed_token_api_version_and_model_id() {
    use iothub_proto::auth::{Credential, HostName, Identity, SasToken};
    use iothub_tokio::Config;
    let emu = emulator().await;
    emu.create_device("dev1").unwrap();
    let module = emu.create_module("dev1", "filter").unwrap();
    let key = iothub_emulator::key_from_base64(&module.primary_key().unwrap()).unwrap();
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
        .with_ca_pem(emu.ca_pem().unwrap().as_bytes().to_vec())
        .with_session(|c| c.with_keep_alive(Duration::from_secs(30)));
    let client = Client::new(options).unwrap();
    within(10, client.wait_connected()).await.unwrap();
    client
        .send_telemetry(Message::new(&b"from a module"[..]))
        .await
        .unwrap();
    let m = emu
        .wait_for_telemetry(
            |m| m.body_text() == Some("from a module"),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(m.identity.module_id().map(|m| m.as_str()), Some("filter"));
    let v = client
        .update_reported(&json!({"module": true}))
        .await
        .unwrap();
    assert!(v > 0);
    assert!(emu.is_connected("dev1/filter"));
    // The model id travelled in the CONNECT username; the device has none.
    assert_eq!(
        emu.model_id("dev1/filter").unwrap().as_deref(),
        Some("dtmi:com:example:Thermostat;1")
    );
    assert_eq!(emu.model_id("dev1").unwrap(), None);
    emu.shutdown().await;
}

/// Waits (bounded) until the emulator holds `n` unacknowledged messages
/// for `target`.
async fn pending_becomes(emu: &EmulatorHandle, target: &str, n: usize) {
    within(10, async {
        while emu.device(target).unwrap().pending_c2d != n {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn c2d_that_arrives_before_the_stream_is_held_unacknowledged_until_it_is_opened() {
    let emu = emulator().await;
    // A first process subscribed; CleanSession 0 keeps the subscription.
    let first = Client::new(options(&emu, "dev1")).unwrap();
    within(10, first.wait_connected()).await.unwrap();
    drop(first.c2d_messages().await.unwrap());
    first.shutdown(Duration::from_secs(5)).await.unwrap();
    // The next one has no stream yet when the hub delivers on the kept
    // subscription.
    let client = Client::new(options(&emu, "dev1")).unwrap();
    within(10, client.wait_connected()).await.unwrap();
    emu.send_c2d("dev1", &b"early"[..], MessageProperties::new())
        .unwrap();
    // A round trip: the hub wrote the C2D before this answer.
    client.get_twin().await.unwrap();
    assert_eq!(
        emu.device("dev1").unwrap().pending_c2d,
        1,
        "not acknowledged"
    );
    let mut c2d = client.c2d_messages().await.unwrap();
    let m = within(10, c2d.recv()).await.unwrap();
    assert_eq!(m.payload.as_ref(), b"early");
    pending_becomes(&emu, "dev1", 0).await;
    client.shutdown(Duration::from_secs(5)).await.unwrap();
    emu.shutdown().await;
}

#[tokio::test]
async fn c2d_not_taken_before_a_restart_is_received_by_the_next_process() {
    let emu = emulator().await;
    let client = Client::new(options(&emu, "dev1")).unwrap();
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
    assert_eq!(emu.device("dev1").unwrap().pending_c2d, 2);
    // The process ends with two messages it never took.
    drop(c2d);
    client.shutdown(Duration::from_secs(5)).await.unwrap();
    drop(client);
    assert_eq!(emu.device("dev1").unwrap().pending_c2d, 2, "nothing lost");
    let next = Client::new(options(&emu, "dev1")).unwrap();
    let mut c2d = next.c2d_messages().await.unwrap();
    let a = within(10, c2d.recv()).await.unwrap();
    let b = within(10, c2d.recv()).await.unwrap();
    assert_eq!(
        (a.payload.as_ref(), b.payload.as_ref()),
        (&b"m2"[..], &b"m3"[..])
    );
    pending_becomes(&emu, "dev1", 0).await;
    next.shutdown(Duration::from_secs(5)).await.unwrap();
    emu.shutdown().await;
}

#[tokio::test]
async fn a_dropped_stream_gives_its_messages_to_the_next_stream_unacknowledged() {
    let emu = emulator().await;
    let client = Client::new(options(&emu, "dev1")).unwrap();
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
    assert_eq!(
        emu.device("dev1").unwrap().pending_c2d,
        3,
        "none acknowledged"
    );
    let mut c2d = client.c2d_messages().await.unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(within(10, c2d.recv()).await.unwrap().payload);
    }
    assert_eq!(got, [&b"a"[..], &b"b"[..], &b"c"[..]], "in their order");
    pending_becomes(&emu, "dev1", 0).await;
    client.shutdown(Duration::from_secs(5)).await.unwrap();
    emu.shutdown().await;
}

#[tokio::test]
async fn an_old_stream_dropped_after_a_new_one_opened_hands_its_messages_over() {
    let emu = emulator().await;
    let client = Client::new(options(&emu, "dev1")).unwrap();
    within(10, client.wait_connected()).await.unwrap();
    let old = client.c2d_messages().await.unwrap();
    emu.send_c2d("dev1", &b"x"[..], MessageProperties::new())
        .unwrap();
    client.get_twin().await.unwrap();
    // A second stream replaces the first, which still holds "x".
    let mut new = client.c2d_messages().await.unwrap();
    drop(old);
    emu.send_c2d("dev1", &b"y"[..], MessageProperties::new())
        .unwrap();
    let mut got = vec![
        within(10, new.recv()).await.unwrap().payload,
        within(10, new.recv()).await.unwrap().payload,
    ];
    got.sort();
    assert_eq!(got, [&b"x"[..], &b"y"[..]]);
    pending_becomes(&emu, "dev1", 0).await;
    client.shutdown(Duration::from_secs(5)).await.unwrap();
    emu.shutdown().await;
}
