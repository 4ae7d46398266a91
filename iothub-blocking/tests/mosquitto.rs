//! The MQTT layer of the blocking client against a real broker:
//! mosquitto on a free loopback port per test, plain and TLS. Connect,
//! QoS 0 and 1 publish, subscribe (a C2D message and a method call
//! published by a bare client), keep-alive, and an untrusted CA.
//!
//! Skipped when mosquitto is missing, unless `IOTHUB_REQUIRE_PEERS` is set.

use std::time::Duration;

use iothub_blocking::{
    Client, ConnectionState, DisconnectReason, Message, MessageProperties, Qos, Transport,
};
use iothub_proto::mqtt::QoS;
use iothub_proto::session::TransportClosed;
use iothub_testkit::{Mosquitto, Pki, RawMqtt, broker_options};

const T: Duration = Duration::from_secs(10);

#[test]
fn plain_connect_publish_subscribe() {
    let Some(broker) = Mosquitto::start(None) else {
        return;
    };
    let client = Client::new(broker_options(
        "127.0.0.1",
        broker.port,
        Transport::PlainTcp,
    ))
    .unwrap();
    client.wait_connected(T).unwrap();
    let mut watcher = RawMqtt::connect(broker.port, "watcher");
    watcher.subscribe("devices/dev1/messages/events/#", QoS::AtLeastOnce);
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
        client.send_telemetry(msg).unwrap();
    }
    for i in 0..20u32 {
        let p = watcher.next_publish();
        assert_eq!(p.payload().as_ref(), format!("hello {i}").as_bytes());
        assert_eq!(
            p.topic().as_str(),
            format!("devices/dev1/messages/events/n={i}")
        );
    }

    let c2d = client.c2d_messages().unwrap();
    let methods = client.method_requests().unwrap();
    let mut service = RawMqtt::connect(broker.port, "service");
    service.subscribe("$iothub/methods/res/#", QoS::AtMostOnce);
    // The SUBSCRIBE may still be on its way: publish until it arrives.
    let msg = loop {
        service.publish(
            "devices/dev1/messages/devicebound/%24.mid=m1&k=v",
            b"c2d!",
            QoS::AtLeastOnce,
        );
        if let Ok(m) = c2d.recv_timeout(Duration::from_millis(200)) {
            break m;
        }
    };
    assert_eq!(msg.payload.as_ref(), b"c2d!");
    assert_eq!(msg.properties.message_id.as_deref(), Some("m1"));
    let call = loop {
        service.publish(
            "$iothub/methods/POST/reboot/?$rid=7",
            b"{\"delay\":1}",
            QoS::AtMostOnce,
        );
        if let Ok(m) = methods.recv_timeout(Duration::from_millis(200)) {
            break m;
        }
    };
    assert_eq!(call.name, "reboot");
    call.respond(200, &b"{\"ok\":true}"[..]).unwrap();
    let answer = service.next_publish();
    assert_eq!(answer.topic().as_str(), "$iothub/methods/res/200/?$rid=7");
    assert_eq!(answer.payload().as_ref(), b"{\"ok\":true}");

    client.shutdown(T).unwrap();
    let status = client.status();
    assert_eq!(status.state, ConnectionState::Stopped);
    assert_eq!(
        status.connection, 1,
        "one connection throughout: {status:?}"
    );
}

#[test]
fn keep_alive_holds_an_idle_connection() {
    let Some(broker) = Mosquitto::start(None) else {
        return;
    };
    // mosquitto drops a client silent for 1.5 keep-alives.
    let client = Client::new(
        broker_options("127.0.0.1", broker.port, Transport::PlainTcp)
            .with_session(|c| c.with_keep_alive(Duration::from_secs(1))),
    )
    .unwrap();
    client.wait_connected(T).unwrap();
    // Over three keep-alive periods, the connection must not change.
    let changed = client.wait_status(
        |s| s.connection != 1 || s.last_disconnect.is_some(),
        Duration::from_millis(3_500),
    );
    assert!(changed.is_none(), "reconnected: {changed:?}");
    client
        .send_telemetry(Message::new(&b"still here"[..]))
        .unwrap();
}

#[test]
fn tls_connect_publish() {
    let pki = Pki::new();
    let Some(broker) = Mosquitto::start(Some(&pki)) else {
        return;
    };
    let client = Client::new(
        broker_options("localhost", broker.port, Transport::Mqtt).with_ca_pem(pki.ca_pem.clone()),
    )
    .unwrap();
    client.wait_connected(T).unwrap();
    for i in 0..50u32 {
        client
            .send_telemetry(Message::new(i.to_be_bytes().to_vec()))
            .unwrap();
    }
    client.shutdown(T).unwrap();
}

#[test]
fn tls_with_an_untrusted_ca_fails_the_handshake() {
    let pki = Pki::new();
    let Some(broker) = Mosquitto::start(Some(&pki)) else {
        return;
    };
    let client = Client::new(
        broker_options("localhost", broker.port, Transport::Mqtt)
            .with_ca_pem(Pki::new().ca_pem)
            .with_webpki_roots(false),
    )
    .unwrap();
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
