//! The whole client API over real sockets against the core's hub engine
//! (`iothub_hub::Hub`) served on a loopback listener — plain TCP,
//! TLS, and WebSocket over TLS. The engine checks SAS tokens, evicts
//! duplicate identities, answers twins and methods, queues C2D messages,
//! and injects faults (dropped connections, 429s).

mod support;

use std::time::Duration;

use iothub_proto::auth::DeviceId;
use iothub_proto::properties::MessageProperties;
use iothub_proto::session::{CommandError, HubStatus, RequestError};
use iothub_tokio::{
    Client, ClientOptions, ConnectionState, DesiredUpdate, DisconnectReason, Error, Message,
    Transport,
};
use serde_json::json;
use support::{HubServer, Pki, Serve};

fn plain(server: &HubServer) -> ClientOptions {
    ClientOptions::from_connection_string(&server.connection_string())
        .unwrap()
        .with_transport(Transport::PlainTcp)
        .with_port(server.port)
        .with_session(|c| {
            c.with_backoff_min(Duration::from_millis(50))
                .with_backoff_max(Duration::from_millis(200))
        })
}

async fn within<T>(secs: u64, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("in time")
}

#[tokio::test]
async fn every_api_over_plain_tcp() {
    support::init_tracing();
    let server = HubServer::start(Serve::Plain, None).await;
    let id = server.identity.clone();
    let client = Client::builder(plain(&server)).build().await.unwrap();
    within(10, client.wait_connected()).await.unwrap();

    // Telemetry.
    let mut props = MessageProperties::new();
    props.content_type = Some("application/json".into());
    client
        .send_telemetry(Message::new(&b"{\"t\":1}"[..]).with_properties(props))
        .await
        .unwrap();
    let got = server.with(|h| h.take_telemetry());
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload.as_ref(), b"{\"t\":1}");
    assert_eq!(
        got[0].properties.content_type.as_deref(),
        Some("application/json")
    );

    // Twin: report, then read it back.
    let v1 = client.update_reported(&json!({"fw": "1.0"})).await.unwrap();
    let v2 = client
        .update_reported(&json!({"fw": "1.1", "x": 1}))
        .await
        .unwrap();
    assert!(v2 > v1, "{v1} {v2}");
    let twin = client.get_twin().await.unwrap();
    assert_eq!(twin.reported["fw"], "1.1");
    assert_eq!(twin.reported_version, Some(v2));

    // Desired: the full state first, then a patch.
    server
        .with(|h| h.update_desired(&id, json!({"rate": 5})))
        .unwrap();
    let mut desired = client.desired_updates().await.unwrap();
    let full_version = match within(10, desired.recv()).await.unwrap() {
        DesiredUpdate::Full { desired, version } => {
            assert_eq!(desired["rate"], 5);
            version
        }
        other => panic!("expected the full state, got {other:?}"),
    };
    server
        .with(|h| h.update_desired(&id, json!({"rate": 7})))
        .unwrap();
    match within(10, desired.recv()).await.unwrap() {
        DesiredUpdate::Patch { patch, version } => {
            assert_eq!(patch["rate"], 7);
            assert_eq!(version, full_version + 1);
        }
        other => panic!("expected a patch, got {other:?}"),
    }

    // Direct method.
    let mut methods = client.method_requests().await.unwrap();
    let rid = loop {
        // Until the subscription is in place the hub says NotConnected.
        match server
            .with(|h| h.invoke_method(&id, "reboot", bytes::Bytes::from_static(b"{\"in\":1}")))
        {
            Ok(rid) => break rid,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let call = within(10, methods.recv()).await.unwrap();
    assert_eq!(call.name, "reboot");
    assert_eq!(call.payload.as_ref(), b"{\"in\":1}");
    call.respond(201, &b"{\"done\":true}"[..]).await.unwrap();
    let answer = within(10, async {
        loop {
            if let Some(a) = server.with(|h| h.take_method_response(&rid)) {
                return a;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(answer.0, 201);
    assert_eq!(answer.1.as_ref(), b"{\"done\":true}");

    // Cloud-to-device (queued before the subscription, delivered after).
    let mut props = MessageProperties::new();
    props.add_application("k", "v").unwrap();
    server
        .with(|h| {
            h.send_c2d(
                &DeviceId::new("dev1").unwrap(),
                props,
                bytes::Bytes::from_static(b"down"),
            )
        })
        .unwrap();
    let mut c2d = client.c2d_messages().await.unwrap();
    let m = within(10, c2d.recv()).await.unwrap();
    assert_eq!(m.payload.as_ref(), b"down");
    assert_eq!(m.properties.get_application("k"), Some(Some("v")));
    within(10, async {
        while server.with(|h| h.pending_messages(&id)) > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;

    // Module inputs are for modules.
    assert!(matches!(
        client.input_messages().await,
        Err(Error::Command(CommandError::FeatureNotAvailable(_)))
    ));

    client.shutdown(Duration::from_secs(5)).await.unwrap();
    assert!(matches!(client.get_twin().await, Err(Error::Closed)));
    assert_eq!(client.status().get().state, ConnectionState::Stopped);
}

#[tokio::test]
async fn reconnects_without_losing_a_message() {
    support::init_tracing();
    let server = HubServer::start(Serve::Plain, None).await;
    let id = server.identity.clone();
    let client = Client::builder(plain(&server).with_session(|c| c.with_max_in_flight(32)))
        .build()
        .await
        .unwrap();
    within(10, client.wait_connected()).await.unwrap();
    const N: u32 = 1_000;
    // The sender stops at six checkpoints, with up to 64 messages in
    // flight, until the test has dropped a live connection.
    let (checkpoints, dropper) = support::checkpoints();
    let sender = support::send_numbered(client.clone(), N, checkpoints);
    let drops = dropper
        .drop_at(6, client.status(), || {
            match server.with(|h| h.connection_of(&id)) {
                Some(conn) => {
                    server.with(|h| h.drop_connection(conn));
                    true
                }
                None => false,
            }
        })
        .await;
    sender.await.unwrap();
    assert!(drops >= 5, "only {drops} connections dropped while sending");
    let got = server.with(|h| h.take_telemetry());
    let counts = support::count_numbered(got.iter().map(|t| t.payload.as_ref()));
    let duplicates: u32 = counts.values().map(|c| c - 1).sum();
    eprintln!(
        "{N} messages, {drops} dropped connections, {} received, {duplicates} duplicates",
        got.len()
    );
    assert_eq!(counts.len(), N as usize, "every message arrived");
    let connections = client.status().get().connection;
    assert!(
        connections >= drops,
        "{connections} connections, {drops} drops"
    );
}

#[tokio::test]
async fn sas_renewal_reconnects_with_a_fresh_token() {
    support::init_tracing();
    let server = HubServer::start(Serve::Plain, None).await;
    // 4 s tokens renewed at 50 %: a new CONNECT every 2 s.
    let client = Client::builder(plain(&server).with_session(|c| {
        c.with_sas_lifetime(Duration::from_secs(4))
            .with_renewal_percent(50)
    }))
    .build()
    .await
    .unwrap();
    within(10, client.wait_connected()).await.unwrap();
    let mut sent = 0u32;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(5_000);
    while tokio::time::Instant::now() < deadline {
        client
            .send_telemetry(Message::new(sent.to_be_bytes().to_vec()))
            .await
            .unwrap();
        sent += 1;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let status = client.status().get();
    assert!(status.connection >= 3, "renewed at least twice: {status:?}");
    assert_eq!(status.last_disconnect, Some(DisconnectReason::TokenRenewal));
    let got = server.with(|h| h.take_telemetry());
    let mut seen: Vec<u32> = got
        .iter()
        .map(|t| u32::from_be_bytes(t.payload.as_ref().try_into().unwrap()))
        .collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len() as u32, sent, "nothing lost across renewals");
}

#[tokio::test]
async fn twin_429_is_retried() {
    support::init_tracing();
    let server = HubServer::start(Serve::Plain, None).await;
    let id = server.identity.clone();
    let client = Client::builder(plain(&server)).build().await.unwrap();
    within(10, client.wait_connected()).await.unwrap();
    server.with(|h| h.fail_next_twin_ops(&id, 2, 429)).unwrap();
    let twin = within(20, client.get_twin()).await.unwrap();
    assert!(twin.desired.is_object());
    // More failures than retries: the status comes back.
    server.with(|h| h.fail_next_twin_ops(&id, 10, 429)).unwrap();
    let e = within(30, client.update_reported(&json!({"a": 1})))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Request(RequestError::Hub(HubStatus { status: 429 }))
        ),
        "{e}"
    );
}

#[tokio::test]
async fn a_second_client_with_the_same_identity_evicts_the_first() {
    support::init_tracing();
    let server = HubServer::start(Serve::Plain, None).await;
    let slow = |o: ClientOptions| {
        o.with_session(|c| {
            c.with_backoff_min(Duration::from_secs(30))
                .with_backoff_max(Duration::from_secs(30))
        })
    };
    let first = Client::builder(slow(plain(&server))).build().await.unwrap();
    within(10, first.wait_connected()).await.unwrap();
    let second = Client::builder(slow(plain(&server))).build().await.unwrap();
    within(10, second.wait_connected()).await.unwrap();
    let status = first.status();
    let s = within(10, status.wait_for(|s| s.state == ConnectionState::Backoff))
        .await
        .unwrap()
        .clone();
    assert!(
        matches!(s.last_disconnect, Some(DisconnectReason::Transport(_))),
        "{s:?}"
    );
    second
        .send_telemetry(Message::new(&b"I am dev1 now"[..]))
        .await
        .unwrap();
}

#[tokio::test]
async fn websocket_over_tls() {
    support::init_tracing();
    let pki = Pki::new();
    let server = HubServer::start(Serve::WebSocketTls, Some(&pki)).await;
    let client = Client::builder(
        ClientOptions::from_connection_string(&server.connection_string())
            .unwrap()
            .with_transport(Transport::WebSocket)
            .with_port(server.port)
            .with_ca_pem(pki.ca_pem.clone()),
    )
    .build()
    .await
    .unwrap();
    within(10, client.wait_connected()).await.unwrap();
    for i in 0..10u8 {
        client
            .send_telemetry(Message::new(vec![i; 100]))
            .await
            .unwrap();
    }
    let twin = client.get_twin().await.unwrap();
    assert!(twin.desired.is_object());
    assert_eq!(server.with(|h| h.take_telemetry()).len(), 10);
    client.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn mqtt_over_tls() {
    support::init_tracing();
    let pki = Pki::new();
    let server = HubServer::start(Serve::Tls, Some(&pki)).await;
    let client = Client::builder(
        ClientOptions::from_connection_string(&server.connection_string())
            .unwrap()
            .with_port(server.port)
            .with_ca_pem(pki.ca_pem.clone()),
    )
    .build()
    .await
    .unwrap();
    within(10, client.wait_connected()).await.unwrap();
    client
        .send_telemetry(Message::new(&b"tls"[..]))
        .await
        .unwrap();
    assert_eq!(server.with(|h| h.take_telemetry()).len(), 1);
}

#[tokio::test]
async fn bad_connection_strings_and_wrong_keys_are_clear() {
    support::init_tracing();
    let e = Client::builder("HostName=h.net;DeviceId=d;SharedAccessKey=%%%")
        .build()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("SharedAccessKey"), "{e}");
    let e = Client::builder("hostname=h.net;DeviceId=d;SharedAccessKey=AAAA")
        .build()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("did you mean `HostName`"), "{e}");
    let e = Client::builder("HostName=h.net;DeviceId=d")
        .build()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no credential"), "{e}");

    let server = HubServer::start(Serve::Plain, None).await;
    let wrong = server.connection_string().replace(
        support::KEY_B64,
        "BBECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    );
    let client = Client::builder(
        ClientOptions::from_connection_string(&wrong)
            .unwrap()
            .with_transport(Transport::PlainTcp)
            .with_port(server.port),
    )
    .build()
    .await
    .unwrap();
    let e = within(10, client.wait_connected()).await.unwrap_err();
    assert!(matches!(e, Error::Refused(r) if r.is_auth_failure()), "{e}");
    assert!(e.to_string().contains("refused"), "{e}");
}

#[tokio::test]
async fn module_identity_receives_input_messages() {
    support::init_tracing();
    let server = HubServer::start(Serve::Plain, None).await;
    let module = server.with(|h| {
        h.add_module(
            DeviceId::new("dev1").unwrap(),
            iothub_proto::auth::ModuleId::new("filter").unwrap(),
            iothub_proto::auth::SharedAccessKey::from_base64(support::KEY_B64).unwrap(),
        )
    });
    let cs = format!(
        "HostName={};DeviceId=dev1;ModuleId=filter;SharedAccessKey={}",
        HubServer::HOST,
        support::KEY_B64
    );
    let client = Client::builder(
        ClientOptions::from_connection_string(&cs)
            .unwrap()
            .with_transport(Transport::PlainTcp)
            .with_port(server.port),
    )
    .build()
    .await
    .unwrap();
    within(10, client.wait_connected()).await.unwrap();
    assert!(matches!(
        client.c2d_messages().await,
        Err(Error::Command(CommandError::FeatureNotAvailable(_)))
    ));
    let mut inputs = client.input_messages().await.unwrap();
    let mut props = MessageProperties::new();
    props.add_application("temp", "hot").unwrap();
    server
        .with(|h| {
            h.send_module_input(
                module.device_id(),
                module.module_id().unwrap(),
                "input1",
                props,
                bytes::Bytes::from_static(b"routed"),
            )
        })
        .unwrap();
    let m = within(10, inputs.recv()).await.unwrap();
    assert_eq!(m.input, "input1");
    assert_eq!(m.message.payload.as_ref(), b"routed");
    assert_eq!(
        m.message.properties.get_application("temp"),
        Some(Some("hot"))
    );
    // Telemetry from a module goes out on the module's topic.
    client
        .send_telemetry(Message::new(&b"from module"[..]))
        .await
        .unwrap();
    let got = server.with(|h| h.take_telemetry());
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].identity, module);
}

#[tokio::test]
async fn manual_ack_acknowledges_only_when_asked() {
    support::init_tracing();
    let server = HubServer::start(Serve::Plain, None).await;
    let id = server.identity.clone();
    let client = Client::builder(plain(&server).with_session(|c| c.with_manual_ack(true)))
        .build()
        .await
        .unwrap();
    within(10, client.wait_connected()).await.unwrap();
    let mut c2d = client.c2d_messages().await.unwrap();
    server
        .with(|h| {
            h.send_c2d(
                &DeviceId::new("dev1").unwrap(),
                MessageProperties::new(),
                bytes::Bytes::from_static(b"ack me"),
            )
        })
        .unwrap();
    let m = within(10, c2d.recv()).await.unwrap();
    let token = m.ack.expect("manual-ack mode gives a token");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        server.with(|h| h.pending_messages(&id)),
        1,
        "not acknowledged yet"
    );
    client.ack(token).await.unwrap();
    within(10, async {
        while server.with(|h| h.pending_messages(&id)) > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(matches!(
        client.ack(token).await,
        Err(Error::Command(CommandError::AckUndeliverable))
    ));
}

#[tokio::test]
async fn lost_pubacks_mean_resends_and_the_duplicates_are_counted() {
    support::init_tracing();
    let server = HubServer::start(Serve::Plain, None).await;
    let id = server.identity.clone();
    let client = Client::builder(plain(&server)).build().await.unwrap();
    within(10, client.wait_connected()).await.unwrap();
    // The hub stores the messages but its PUBACKs never come.
    server.with(|h| h.withhold_pubacks(true));
    let sends: Vec<_> = (0..10u32)
        .map(|i| {
            let c = client.clone();
            tokio::spawn(async move {
                c.send_telemetry(Message::new(i.to_be_bytes().to_vec()))
                    .await
            })
        })
        .collect();
    within(10, async {
        while server.with(|h| h.telemetry().len()) < 10 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // The connection dies; the client resends with DUP and this time the
    // hub answers.
    server.with(|h| {
        h.withhold_pubacks(false);
        let conn = h.connection_of(&id).unwrap();
        h.drop_connection(conn);
    });
    for s in sends {
        within(10, s).await.unwrap().unwrap();
    }
    let got = server.with(|h| h.take_telemetry());
    let resent = got.iter().filter(|t| t.dup).count();
    let mut distinct: Vec<_> = got.iter().map(|t| t.payload.clone()).collect();
    distinct.sort();
    distinct.dedup();
    eprintln!(
        "{} received, {} distinct, {resent} resent with DUP",
        got.len(),
        distinct.len()
    );
    assert_eq!(distinct.len(), 10);
    assert_eq!(got.len(), 20, "each message twice: at-least-once");
    assert_eq!(resent, 10);
}
