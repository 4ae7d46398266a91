//! The MQTT layer of the client against a real broker: mosquitto, started
//! on a free loopback port per test, over plain TCP and over TLS (a CA and
//! server certificate made with rcgen). Connect, QoS 0 and 1 publish,
//! subscribe (a C2D message and a method call published by a bare client),
//! keep-alive, and a TLS failure against an untrusted CA.
//!
//! Skipped when mosquitto is missing, unless `IOTHUB_REQUIRE_PEERS` is set.

mod support;

use std::time::Duration;

use iothub_proto::mqtt::QoS;
use iothub_proto::session::TransportClosed;
use iothub_tokio::{
    Client, ClientOptions, ConnectionState, DisconnectReason, Message, MessageProperties, Qos,
    Transport,
};
use support::{KEY_B64, Mosquitto, Pki, Raw};

fn options(host: &str, port: u16, transport: Transport) -> ClientOptions {
    ClientOptions::from_connection_string(&format!(
        "HostName={host};DeviceId=dev1;SharedAccessKey={KEY_B64}"
    ))
    .unwrap()
    .with_transport(transport)
    .with_port(port)
}

async fn telemetry_round_trip(client: &Client, port: u16) {
    let mut watcher = Raw::connect(port, "watcher").await;
    watcher
        .subscribe("devices/dev1/messages/events/#", QoS::AtLeastOnce)
        .await;
    for i in 0..20u32 {
        let mut props = MessageProperties::new();
        props.add_application("n", i.to_string()).unwrap();
        let qos = if i % 2 == 0 {
            Qos::AtLeastOnce
        } else {
            Qos::AtMostOnce
        };
        let msg = Message::new(format!("hello {i}").into_bytes())
            .with_properties(props)
            .with_qos(qos);
        client.send_telemetry(msg).await.expect("acknowledged");
    }
    for i in 0..20u32 {
        let p = watcher.next_publish().await;
        assert_eq!(p.payload().as_ref(), format!("hello {i}").as_bytes());
        assert_eq!(
            p.topic().as_str(),
            format!("devices/dev1/messages/events/n={i}")
        );
    }
}

#[tokio::test]
async fn plain_connect_publish_subscribe() {
    support::init_tracing();
    let Some(broker) = Mosquitto::start(None) else {
        return;
    };
    let client = Client::new(options("127.0.0.1", broker.port, Transport::PlainTcp)).unwrap();
    client.wait_connected().await.unwrap();
    telemetry_round_trip(&client, broker.port).await;

    // Subscribe: the broker routes what a bare client publishes on the
    // device-bound topics to the client's streams.
    let mut c2d = client.c2d_messages().await.unwrap();
    let mut methods = client.method_requests().await.unwrap();
    let mut service = Raw::connect(broker.port, "service").await;
    service
        .subscribe("$iothub/methods/res/#", QoS::AtMostOnce)
        .await;
    // The SUBSCRIBE may still be on its way: publish until it arrives.
    let msg = loop {
        service
            .publish(
                "devices/dev1/messages/devicebound/%24.mid=m1&k=v",
                b"c2d!",
                QoS::AtLeastOnce,
            )
            .await;
        if let Ok(m) = tokio::time::timeout(Duration::from_millis(200), c2d.recv()).await {
            break m.unwrap();
        }
    };
    assert_eq!(msg.payload.as_ref(), b"c2d!");
    assert_eq!(msg.properties.message_id.as_deref(), Some("m1"));
    assert_eq!(msg.properties.get_application("k"), Some(Some("v")));
    let call = loop {
        service
            .publish(
                "$iothub/methods/POST/reboot/?$rid=7",
                b"{\"delay\":1}",
                QoS::AtMostOnce,
            )
            .await;
        if let Ok(m) = tokio::time::timeout(Duration::from_millis(200), methods.recv()).await {
            break m.unwrap();
        }
    };
    assert_eq!(call.name, "reboot");
    assert_eq!(call.payload.as_ref(), b"{\"delay\":1}");
    call.respond(200, &b"{\"ok\":true}"[..]).await.unwrap();
    let answer = service.next_publish().await;
    assert_eq!(answer.topic().as_str(), "$iothub/methods/res/200/?$rid=7");
    assert_eq!(answer.payload().as_ref(), b"{\"ok\":true}");

    client.shutdown(Duration::from_secs(5)).await.unwrap();
    let status = client.status().borrow().clone();
    assert_eq!(status.state, ConnectionState::Stopped);
    assert_eq!(
        status.connection, 1,
        "one connection throughout: {status:?}"
    );
}

#[tokio::test]
async fn keep_alive_holds_an_idle_connection() {
    support::init_tracing();
    let Some(broker) = Mosquitto::start(None) else {
        return;
    };
    // mosquitto drops a client silent for 1.5 keep-alives.
    let client = Client::new(
        options("127.0.0.1", broker.port, Transport::PlainTcp)
            .with_session(|c| c.with_keep_alive(Duration::from_secs(1))),
    )
    .unwrap();
    client.wait_connected().await.unwrap();
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let status = client.status().borrow().clone();
    assert_eq!(status.state, ConnectionState::Connected);
    assert_eq!(status.connection, 1, "never reconnected: {status:?}");
    assert_eq!(status.last_disconnect, None);
    client
        .send_telemetry(Message::new(&b"still here"[..]))
        .await
        .unwrap();
}

#[tokio::test]
async fn tls_connect_publish() {
    support::init_tracing();
    let pki = Pki::new();
    let Some(broker) = Mosquitto::start(Some(&pki)) else {
        return;
    };
    let client = Client::new(
        options("localhost", broker.port, Transport::Mqtt).with_ca_pem(pki.ca_pem.clone()),
    )
    .unwrap();
    client.wait_connected().await.unwrap();
    // The watcher cannot speak TLS; publish through the client and count
    // acknowledgments instead.
    for i in 0..50u32 {
        client
            .send_telemetry(Message::new(i.to_be_bytes().to_vec()))
            .await
            .unwrap();
    }
    client.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn tls_with_an_untrusted_ca_fails_the_handshake() {
    support::init_tracing();
    let pki = Pki::new();
    let other = Pki::new();
    let Some(broker) = Mosquitto::start(Some(&pki)) else {
        return;
    };
    let client = Client::new(
        options("localhost", broker.port, Transport::Mqtt)
            .with_ca_pem(other.ca_pem.clone())
            .with_webpki_roots(false),
    )
    .unwrap();
    let mut status = client.status();
    let s = tokio::time::timeout(
        Duration::from_secs(10),
        status.wait_for(|s| s.last_disconnect.is_some()),
    )
    .await
    .unwrap()
    .unwrap()
    .clone();
    assert_eq!(
        s.last_disconnect,
        Some(DisconnectReason::Transport(
            TransportClosed::HandshakeFailed
        ))
    );
}
