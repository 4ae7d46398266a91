//! The MQTT layer of the smol adapter against mosquitto on a free
//! loopback port (plain and TLS), under smol and under async-std.
//! Skipped when mosquitto is missing, unless `IOTHUB_REQUIRE_PEERS` is set.

use std::time::Duration;

use iothub_proto::mqtt::QoS;
use iothub_proto::session::TransportClosed;
use iothub_smol::{
    Client, ClientOptions, ConnectionState, DisconnectReason, Message, Qos, Transport,
};
use iothub_testkit::{Mosquitto, Pki, RawMqtt, broker_options};

fn start(options: ClientOptions, smol: bool) -> Client {
    let (client, driver) = Client::new(options).unwrap();
    if smol {
        smol::spawn(driver).detach();
    } else {
        drop(async_std::task::spawn(driver));
    }
    client
}

async fn plain(smol: bool) {
    let Some(broker) = Mosquitto::start(None) else {
        return;
    };
    let client = start(
        broker_options("127.0.0.1", broker.port, Transport::PlainTcp),
        smol,
    );
    client.wait_connected().await.unwrap();
    let mut watcher = RawMqtt::connect(broker.port, "watcher");
    watcher.subscribe("devices/dev1/messages/events/#", QoS::AtLeastOnce);
    for i in 0..10u32 {
        let qos = if i % 2 == 0 {
            Qos::AtLeastOnce
        } else {
            Qos::AtMostOnce
        };
        client
            .send_telemetry(Message::new(format!("hello {i}").into_bytes()).with_qos(qos))
            .await
            .unwrap();
    }
    for i in 0..10u32 {
        assert_eq!(
            watcher.next_publish().payload().as_ref(),
            format!("hello {i}").as_bytes()
        );
    }
    let mut methods = client.method_requests().await.unwrap();
    let mut service = RawMqtt::connect(broker.port, "service");
    service.subscribe("$iothub/methods/res/#", QoS::AtMostOnce);
    let call = loop {
        service.publish(
            "$iothub/methods/POST/reboot/?$rid=7",
            b"{}",
            QoS::AtMostOnce,
        );
        let next = futures_lite::future::or(async { methods.recv().await }, async {
            async_io::Timer::after(Duration::from_millis(200)).await;
            None
        });
        if let Some(call) = next.await {
            break call;
        }
    };
    call.respond(200, &b"{\"ok\":true}"[..]).await.unwrap();
    assert_eq!(
        service.next_publish().topic().as_str(),
        "$iothub/methods/res/200/?$rid=7"
    );
    client.shutdown(Duration::from_secs(5)).await.unwrap();
    assert_eq!(client.status().state, ConnectionState::Stopped);
    assert_eq!(client.status().connection, 1);
}

async fn tls(smol: bool) {
    let pki = Pki::new();
    let Some(broker) = Mosquitto::start(Some(&pki)) else {
        return;
    };
    let client = start(
        broker_options("localhost", broker.port, Transport::Mqtt).with_ca_pem(pki.ca_pem.clone()),
        smol,
    );
    client.wait_connected().await.unwrap();
    for i in 0..50u32 {
        client
            .send_telemetry(Message::new(i.to_be_bytes().to_vec()))
            .await
            .unwrap();
    }
    client.shutdown(Duration::from_secs(5)).await.unwrap();
    let untrusted = start(
        broker_options("localhost", broker.port, Transport::Mqtt)
            .with_ca_pem(Pki::new().ca_pem)
            .with_webpki_roots(false),
        smol,
    );
    let s = untrusted.wait_status(|s| s.last_disconnect.is_some()).await;
    assert_eq!(
        s.last_disconnect,
        Some(DisconnectReason::Transport(
            TransportClosed::HandshakeFailed
        ))
    );
}

#[test]
fn plain_under_smol() {
    smol::block_on(plain(true));
}

#[test]
fn plain_under_async_std() {
    async_std::task::block_on(plain(false));
}

#[test]
fn tls_under_smol() {
    smol::block_on(tls(true));
}

#[test]
fn tls_under_async_std() {
    async_std::task::block_on(tls(false));
}
