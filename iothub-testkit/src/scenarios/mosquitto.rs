//! The MQTT layer of the client against a real broker: mosquitto, started
//! on a free loopback port per scenario, over plain TCP and over TLS (a CA
//! and server certificate made with rcgen). Connect, QoS 0 and 1 publish,
//! subscribe (a C2D message and a method call published by a bare
//! client), keep-alive, and a TLS failure against an untrusted CA.
//!
//! Skipped when mosquitto is missing, unless `IOTHUB_REQUIRE_PEERS` is set.

use std::time::Duration;

use iothub_client::Transport;
use iothub_proto::mqtt::QoS;
use iothub_proto::properties::MessageProperties;
use iothub_proto::session::{ConnectionState, DisconnectReason, Message, Qos, TransportClosed};

use super::{Call as _, Device, Stream as _, connected, new_client, within};
use crate::{Mosquitto, Pki, RawMqtt, broker_options};

pub async fn plain_connect_publish_and_a_method<D: Device>() {
    let Some(broker) = Mosquitto::start(None) else {
        return;
    };
    let client: D = connected(broker_options(
        "127.0.0.1",
        broker.port,
        Transport::PlainTcp,
    ))
    .await;
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
        client.send_telemetry(msg).await.expect("acknowledged");
    }
    for i in 0..20u32 {
        let p = watcher.next_publish();
        assert_eq!(p.payload().as_ref(), format!("hello {i}").as_bytes());
        assert_eq!(
            p.topic().as_str(),
            format!("devices/dev1/messages/events/n={i}")
        );
    }

    // Subscribe: the broker routes what a bare client publishes on the
    // device-bound topics to the client's streams.
    let mut c2d = client.c2d_messages().await.unwrap();
    let mut methods = client.method_requests().await.unwrap();
    let mut service = RawMqtt::connect(broker.port, "service");
    service.subscribe("$iothub/methods/res/#", QoS::AtMostOnce);
    // The SUBSCRIBE may still be on its way: publish until it arrives.
    let msg = within(20, async {
        loop {
            service.publish(
                "devices/dev1/messages/devicebound/%24.mid=m1&k=v",
                b"c2d!",
                QoS::AtLeastOnce,
            );
            if let Some(m) = c2d.recv_for(Duration::from_millis(200)).await {
                break m;
            }
        }
    })
    .await;
    assert_eq!(msg.payload.as_ref(), b"c2d!");
    assert_eq!(msg.properties.message_id.as_deref(), Some("m1"));
    assert_eq!(msg.properties.get_application("k"), Some(Some("v")));
    let call = within(20, async {
        loop {
            service.publish(
                "$iothub/methods/POST/reboot/?$rid=7",
                b"{\"delay\":1}",
                QoS::AtMostOnce,
            );
            if let Some(m) = methods.recv_for(Duration::from_millis(200)).await {
                break m;
            }
        }
    })
    .await;
    assert_eq!(call.name(), "reboot");
    assert_eq!(call.payload(), b"{\"delay\":1}");
    call.respond(200, b"{\"ok\":true}".to_vec()).await.unwrap();
    let answer = service.next_publish();
    assert_eq!(answer.topic().as_str(), "$iothub/methods/res/200/?$rid=7");
    assert_eq!(answer.payload().as_ref(), b"{\"ok\":true}");

    client.shutdown(Duration::from_secs(5)).await.unwrap();
    let status = client.status().get();
    assert_eq!(status.state, ConnectionState::Stopped);
    assert_eq!(
        status.connection, 1,
        "one connection throughout: {status:?}"
    );
}

pub async fn keep_alive_holds_an_idle_connection<D: Device>() {
    let Some(broker) = Mosquitto::start(None) else {
        return;
    };
    // mosquitto drops a client silent for 1.5 keep-alives.
    let client: D = connected(
        broker_options("127.0.0.1", broker.port, Transport::PlainTcp)
            .with_session(|c| c.with_keep_alive(Duration::from_secs(1))),
    )
    .await;
    async_io::Timer::after(Duration::from_millis(3_500)).await;
    let status = client.status().get();
    assert_eq!(status.state, ConnectionState::Connected);
    assert_eq!(status.connection, 1, "never reconnected: {status:?}");
    assert_eq!(status.last_disconnect, None);
    client
        .send_telemetry(Message::new(&b"still here"[..]))
        .await
        .unwrap();
}

pub async fn tls_connect_publish_and_an_untrusted_ca<D: Device>() {
    let pki = Pki::new();
    let Some(broker) = Mosquitto::start(Some(&pki)) else {
        return;
    };
    let client: D = connected(
        broker_options("localhost", broker.port, Transport::Mqtt).with_ca_pem(pki.ca_pem.clone()),
    )
    .await;
    // The watcher cannot speak TLS; publish through the client and count
    // acknowledgments instead.
    for i in 0..50u32 {
        client
            .send_telemetry(Message::new(i.to_be_bytes().to_vec()))
            .await
            .unwrap();
    }
    client.shutdown(Duration::from_secs(5)).await.unwrap();
    let untrusted: D = new_client(
        broker_options("localhost", broker.port, Transport::Mqtt)
            .with_ca_pem(Pki::new().ca_pem)
            .with_webpki_roots(false),
    )
    .await;
    let s = within(
        10,
        untrusted.status().wait_for(|s| s.last_disconnect.is_some()),
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
