//! The client against the in-process emulator over real TLS with its
//! generated CA: every API, reconnection without loss, SAS renewal, 429
//! retries, eviction, WebSocket, HTTP CONNECT proxies, X.509, a gateway,
//! a module with a fixed token, and clear errors.

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use iothub_client::DesiredUpdate;
use iothub_client::{ClientBuilder, ClientOptions, Error, OptionsError, Proxy, Transport};
use iothub_proto::auth::{Credential, HostName, Identity, SasToken};
use iothub_proto::properties::MessageProperties;
use iothub_proto::session::{
    CommandError, Config, ConnectionState, DisconnectReason, HubStatus, Message, RequestError,
    StopReason, TransportClosed,
};
use serde_json::json;

use super::{Call as _, Device, Stream as _, connected, eventually, new_client, spawn, within};
use crate::{DeviceAuthentication, Emu, KEY_B64, Pki};

pub async fn every_api_over_tls<D: Device>() {
    let emu = Emu::start();
    let client: D = connected(emu.options("dev1")).await;
    let mut props = MessageProperties::new();
    props.content_type = Some("application/json".into());
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
    let responder = spawn(move || async move {
        let call = methods.recv().await.expect("a call");
        assert_eq!(call.name(), "reboot");
        let body = format!(r#"{{"got":{}}}"#, String::from_utf8_lossy(call.payload()));
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
    responder.join().unwrap();

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
    assert_eq!(client.status().get().connection, 1);
    within(10, client.shutdown(Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(client.status().get().state, ConnectionState::Stopped);
    assert!(matches!(
        within(10, client.get_twin()).await,
        Err(Error::Closed)
    ));
    assert!(
        within(40, c2d.recv()).await.is_none(),
        "streams end with the client"
    );
}

pub async fn a_thousand_messages_survive_dropped_connections<D: Device>() {
    const N: u32 = 1_000;
    const SENDERS: u32 = 16;
    let emu = Emu::start();
    let client: D = connected(
        emu.options("dev1")
            .with_session(|c| c.with_max_in_flight(32)),
    )
    .await;
    // Senders on threads of their own, up to 16 messages in flight. They
    // stop issuing at six checkpoints until the scenario has dropped a
    // live connection, so the drops happen while messages are in flight,
    // whatever the speed of the machine.
    let allowed = Arc::new(AtomicU32::new(0));
    let issued = Arc::new(AtomicU32::new(0));
    let done = Arc::new(AtomicU32::new(0));
    let senders: Vec<_> = (0..SENDERS)
        .map(|w| {
            let (client, allowed, issued, done) = (
                client.clone(),
                allowed.clone(),
                issued.clone(),
                done.clone(),
            );
            spawn(move || async move {
                let mut i = w;
                while i < N {
                    while i >= allowed.load(Ordering::SeqCst) {
                        async_io::Timer::after(Duration::from_millis(2)).await;
                    }
                    issued.fetch_add(1, Ordering::SeqCst);
                    client
                        .send_telemetry(Message::new(i.to_be_bytes().to_vec()))
                        .await
                        .unwrap();
                    done.fetch_add(1, Ordering::SeqCst);
                    i += SENDERS;
                }
            })
        })
        .collect();
    let mut drops: u64 = 0;
    for k in 1..=6u32 {
        allowed.store(150 * k, Ordering::SeqCst);
        // Everything below the checkpoint was issued (some in flight).
        eventually(60, || issued.load(Ordering::SeqCst) >= 150 * k).await;
        // A live connection, newer than the one dropped last.
        let last = drops;
        within(
            30,
            client
                .status()
                .wait_for(|s| s.state == ConnectionState::Connected && s.connection > last),
        )
        .await
        .unwrap();
        assert!(
            emu.drop_connection("dev1").unwrap(),
            "no live connection to drop"
        );
        drops += 1;
    }
    allowed.store(N, Ordering::SeqCst);
    eventually(90, || done.load(Ordering::SeqCst) == N).await;
    for s in senders {
        s.join().unwrap();
    }
    assert_eq!(drops, 6);
    let seen: HashSet<u32> = emu.numbered_telemetry().into_iter().collect();
    assert_eq!(seen.len(), N as usize, "every message arrived");
}

pub async fn sas_renewal_reconnects_with_a_new_token_and_loses_nothing<D: Device>() {
    let emu = Emu::start();
    // 2 s tokens renewed at 50 %: a fresh CONNECT every second.
    let client: D = connected(emu.options("dev1").with_session(|c| {
        c.with_sas_lifetime(Duration::from_secs(2))
            .with_renewal_percent(50)
    }))
    .await;
    let mut sent = 0u32;
    within(60, async {
        while client.status().get().connection < 3 {
            client
                .send_telemetry(Message::new(sent.to_be_bytes().to_vec()))
                .await
                .unwrap();
            sent += 1;
        }
    })
    .await;
    assert_eq!(
        client.status().get().last_disconnect,
        Some(DisconnectReason::TokenRenewal)
    );
    let seen: HashSet<u32> = emu.numbered_telemetry().into_iter().collect();
    assert_eq!(seen.len() as u32, sent, "nothing lost across renewals");
}

pub async fn throttled_twin_requests_are_retried<D: Device>() {
    let emu = Emu::start();
    let client: D = connected(emu.options("dev1")).await;
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
}

pub async fn a_second_client_evicts_the_first<D: Device>() {
    let emu = Emu::start();
    let slow = |o: ClientOptions| {
        o.with_session(|c| {
            c.with_backoff_min(Duration::from_secs(60))
                .with_backoff_max(Duration::from_secs(60))
        })
    };
    let first: D = connected(slow(emu.options("dev1"))).await;
    let second: D = connected(slow(emu.options("dev1"))).await;
    let s = within(
        10,
        first
            .status()
            .wait_for(|s| s.state == ConnectionState::Backoff),
    )
    .await
    .unwrap();
    assert!(
        matches!(s.last_disconnect, Some(DisconnectReason::Transport(_))),
        "{s:?}"
    );
    second
        .send_telemetry(Message::new(&b"second"[..]))
        .await
        .unwrap();
    assert!(emu.is_connected("dev1"));
}

fn websocket(emu: &Emu, o: ClientOptions) -> ClientOptions {
    o.with_transport(Transport::WebSocket)
        .with_port(emu.ws_addr().port())
}

pub async fn websocket_transport<D: Device>() {
    let emu = Emu::start();
    let client: D = connected(websocket(&emu, emu.options("dev1"))).await;
    for i in 0..20u8 {
        client
            .send_telemetry(Message::new(vec![i; 300]))
            .await
            .unwrap();
    }
    // Larger than one WebSocket frame of ours.
    client
        .send_telemetry(Message::new(vec![7u8; 100_000]))
        .await
        .unwrap();
    let v = client.update_reported(&json!({"ws": true})).await.unwrap();
    assert!(v > 0);
    assert_eq!(emu.telemetry().len(), 21);
    client.shutdown(Duration::from_secs(5)).await.unwrap();
}

pub async fn mqtt_through_an_http_connect_proxy<D: Device>() {
    let emu = Emu::start();
    let (proxy_port, tunnels) = crate::connect_proxy();
    let client: D = connected(
        emu.options("dev1")
            .with_proxy(Proxy::new("127.0.0.1", proxy_port)),
    )
    .await;
    client
        .send_telemetry(Message::new(&b"via proxy"[..]))
        .await
        .unwrap();
    let target = tunnels.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(target, format!("localhost:{}", emu.mqtt_addr().port()));
}

pub async fn websocket_through_an_http_connect_proxy<D: Device>() {
    let emu = Emu::start();
    let (proxy_port, tunnels) = crate::connect_proxy();
    let client: D = connected(
        websocket(&emu, emu.options("dev1")).with_proxy(Proxy::new("127.0.0.1", proxy_port)),
    )
    .await;
    client
        .send_telemetry(Message::new(&b"via proxy"[..]))
        .await
        .unwrap();
    let target = tunnels.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(target, format!("localhost:{}", emu.ws_addr().port()));
}

/// A proxy that reads the CONNECT request, then answers one byte every
/// 50 ms and never finishes its header; it stops when the client leaves.
fn dribbling_proxy() -> u16 {
    use std::io::{Read as _, Write as _};
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
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

pub async fn a_proxy_that_answers_a_byte_at_a_time_is_bounded_by_the_open_timeout<D: Device>() {
    // Every byte comes well within any per-read timeout; only an overall
    // deadline ends the open.
    let emu = Emu::start();
    let client: D = new_client(
        websocket(&emu, emu.options("dev1"))
            .with_proxy(Proxy::new("127.0.0.1", dribbling_proxy()))
            .with_open_timeout(Duration::from_millis(600)),
    )
    .await;
    let s = within(
        10,
        client.status().wait_for(|s| s.last_disconnect.is_some()),
    )
    .await
    .unwrap();
    assert_eq!(
        s.last_disconnect,
        Some(DisconnectReason::Transport(TransportClosed::ConnectFailed))
    );
    assert_ne!(s.state, ConnectionState::Connected);
}

pub async fn x509_authentication<D: Device>() {
    let emu = Emu::start();
    let pki = Pki::new();
    let (cert_pem, key_pem) = pki.client("x509dev");
    let auth = DeviceAuthentication::X509 {
        primary_thumbprint: Pki::thumbprint(&cert_pem),
        secondary_thumbprint: None,
    };
    let info = emu.create_identity("x509dev", auth).unwrap();
    let cs = info.connection_string();
    assert!(cs.ends_with("x509=true"), "{cs}");
    let base = ClientOptions::from_connection_string(&cs)
        .unwrap()
        .with_port(emu.mqtt_addr().port())
        .with_ca_pem(emu.ca());
    // Without a certificate: refused before any socket is opened.
    assert!(matches!(
        D::build(ClientBuilder::new(base.clone())).await,
        Err(Error::Options(OptionsError::MissingClientCertificate))
    ));
    let client: D = connected(base.clone().with_client_certificate(cert_pem, key_pem)).await;
    client
        .send_telemetry(Message::new(&b"signed"[..]))
        .await
        .unwrap();
    assert!(client.get_twin().await.is_ok());
    // Another certificate (same CA, other thumbprint) is refused.
    let (other_cert, other_key) = pki.client("x509dev");
    let intruder: D = new_client(base.with_client_certificate(other_cert, other_key)).await;
    let e = within(10, intruder.wait_connected()).await.unwrap_err();
    assert!(matches!(e, Error::Refused(_)), "{e}");
}

pub async fn bad_connection_strings_and_wrong_keys_give_clear_errors<D: Device>() {
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
        ("DeviceId=dev1;SharedAccessKey=AAAA", "no `HostName`"),
    ] {
        let e = D::build(ClientBuilder::new(cs)).await.unwrap_err();
        assert!(matches!(e, Error::Options(_)), "{cs}: {e:?}");
        assert!(e.to_string().contains(expect), "{cs}: {e}");
    }
    // A wrong key: the hub refuses the CONNECT (code 4 or 5).
    let good = emu.options("dev1");
    let wrong = ClientOptions::from_connection_string(&format!(
        "HostName=localhost;DeviceId=dev1;SharedAccessKey={KEY_B64}"
    ))
    .unwrap()
    .with_port(emu.mqtt_addr().port())
    .with_ca_pem(emu.ca());
    let e = within(10, new_client::<D>(wrong).await.wait_connected())
        .await
        .unwrap_err();
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
        c.identity = Identity::parse("nobody", None).unwrap();
        c
    });
    let e = within(10, new_client::<D>(unknown).await.wait_connected())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Refused(_)), "{e}");
    // A CA that did not sign the server certificate: a handshake failure.
    let untrusted = good
        .with_ca_pem(Pki::new().ca_pem.into_bytes())
        .with_webpki_roots(false);
    let client: D = new_client(untrusted).await;
    let s = within(
        10,
        client.status().wait_for(|s| s.last_disconnect.is_some()),
    )
    .await
    .unwrap();
    assert_eq!(
        s.last_disconnect,
        Some(DisconnectReason::Transport(
            TransportClosed::HandshakeFailed
        ))
    );
}

pub async fn gateway_host_name_is_the_tls_peer_and_the_hub_stays_in_the_username<D: Device>() {
    let emu = Emu::start_with(
        iothub_emulator::Emulator::builder()
            .in_memory()
            .host_name("myhub.azure-devices.net"),
    );
    let cs = emu.create_device("edge-child").unwrap().connection_string();
    assert!(cs.starts_with("HostName=myhub.azure-devices.net;"), "{cs}");
    // The TCP/TLS peer is the "gateway" (the emulator's certificate is
    // for localhost); the SAS token and username name the hub.
    let options = ClientOptions::from_connection_string(&format!("{cs};GatewayHostName=localhost"))
        .unwrap()
        .with_port(emu.mqtt_addr().port())
        .with_ca_pem(emu.ca());
    assert_eq!(options.host(), "localhost");
    let client: D = connected(options).await;
    client
        .send_telemetry(Message::new(&b"via gateway"[..]))
        .await
        .unwrap();
    assert!(emu.is_connected("edge-child"));
}

pub async fn a_module_identity_a_fixed_token_an_api_version_and_a_model_id<D: Device>() {
    let emu = Emu::start();
    emu.create_device("dev1").unwrap();
    let module = emu.create_module("dev1", "filter").unwrap();
    let key = crate::key_from_base64(&module.primary_key().unwrap()).unwrap();
    let identity = Identity::parse("dev1", Some("filter")).unwrap();
    let expiry = iothub_client::Clock::unix_secs() + 600;
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
        .with_ca_pem(emu.ca())
        .with_session(|c| c.with_keep_alive(Duration::from_secs(30)));
    let client: D = connected(options).await;
    client
        .send_telemetry(Message::new(&b"from a module"[..]))
        .await
        .unwrap();
    emu.received("dev1/filter", "from a module").await;
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
}

pub async fn dropping_every_handle_shuts_the_client_down<D: Device>() {
    let emu = Emu::start();
    let client: D = connected(emu.options("dev1")).await;
    let status = client.status();
    let mut methods = client.method_requests().await.unwrap();
    drop(client);
    assert!(
        within(40, methods.recv()).await.is_none(),
        "the stream ends"
    );
    let s = within(10, status.wait_for(|s| s.state == ConnectionState::Stopped))
        .await
        .unwrap();
    assert_eq!(s.stopped, Some(StopReason::Requested));
    eventually(10, || !emu.is_connected("dev1")).await;
}
