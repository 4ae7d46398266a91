//! Interop of the MQTT codec and the topic grammar with a real broker:
//! mosquitto, started on a free loopback port for each test. Every one of
//! the 14 packet types is encoded by us and decoded by mosquitto, or the
//! other way round.
//!
//! Skipped (with a message) when mosquitto is not installed, unless
//! `IOTHUB_REQUIRE_PEERS` is set, as CI does.

mod peers;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use iothub_proto::auth::{ConnectionString, UsernameOptions};
use iothub_proto::mqtt::{
    self, Connack, Connect, ConnectReturnCode, LastWill, Packet, Pid, Publish, QoS, QosPid,
    Subscribe, SubscribeReturnCode, Unsubscribe,
};
use iothub_proto::properties::MessageProperties;
use iothub_proto::topic::{self, HubTopic};
use peers::Mosquitto;

/// A bare MQTT connection: our codec over a blocking socket.
struct Raw {
    stream: TcpStream,
    buf: BytesMut,
}

impl Raw {
    fn open(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).expect("connect to mosquitto");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("set read timeout");
        stream.set_nodelay(true).expect("nodelay");
        Raw {
            stream,
            buf: BytesMut::with_capacity(4096),
        }
    }

    fn send(&mut self, packet: impl Into<Packet>) {
        let bytes = packet.into().to_bytes();
        self.stream.write_all(&bytes).expect("write to mosquitto");
    }

    /// The next packet, or `None` once the broker has closed the connection.
    fn try_recv(&mut self) -> Option<Packet> {
        loop {
            if let Some(p) =
                mqtt::decode(&mut self.buf, 1 << 20).expect("mosquitto sent a valid packet")
            {
                return Some(p);
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("reading from mosquitto: {e}"),
            }
        }
    }

    fn recv(&mut self) -> Packet {
        self.try_recv().expect("mosquitto closed the connection")
    }

    fn connect(addr: SocketAddr, connect: Connect) -> (Raw, Connack) {
        let mut raw = Raw::open(addr);
        raw.send(connect);
        match raw.recv() {
            Packet::Connack(ack) => (raw, ack),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }
}

fn pid(n: u16) -> Pid {
    Pid::new(n).expect("non-zero")
}

const CONNECTION_STRING: &str = "HostName=contoso.azure-devices.net;DeviceId=dev1;SharedAccessKey=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// A CONNECT as a device would send it to the hub (mosquitto accepts any
/// user name and password here).
fn device_connect(clean_session: bool) -> Connect {
    let cs: ConnectionString = CONNECTION_STRING.parse().expect("valid connection string");
    let creds = cs.connect_credentials(&UsernameOptions::default(), 1_900_000_000);
    let password = creds.password.expect("key credential").into_secret();
    Connect::new(creds.client_id.as_str())
        .expect("client id")
        .with_keep_alive(60)
        .with_clean_session(clean_session)
        .with_username(creds.username.as_str())
        .expect("username")
        .with_password(Bytes::from(password))
        .expect("password")
}

#[test]
fn device_flow_connect_subscribe_publish_ping_unsubscribe() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let (mut dev, ack) = Raw::connect(broker.addr, device_connect(true));
    assert_eq!(ack.code(), ConnectReturnCode::Accepted);
    assert!(!ack.session_present());

    let cs: ConnectionString = CONNECTION_STRING.parse().expect("valid");
    let c2d_filter = topic::c2d_filter(cs.identity.device_id());
    dev.send(
        Subscribe::new(
            pid(1),
            [
                (c2d_filter.as_str(), QoS::AtLeastOnce),
                (topic::TWIN_RESPONSE_FILTER, QoS::AtMostOnce),
            ],
        )
        .expect("subscribe"),
    );
    match dev.recv() {
        Packet::Suback(s) => {
            assert_eq!(s.pid(), pid(1));
            assert_eq!(
                s.return_codes(),
                [
                    SubscribeReturnCode::Success(QoS::AtLeastOnce),
                    SubscribeReturnCode::Success(QoS::AtMostOnce)
                ]
            );
        }
        other => panic!("expected SUBACK, got {other:?}"),
    }

    // A C2D message as the hub would send it, published through the broker.
    let mut props = MessageProperties::new();
    props.message_id = Some("6b1c0a2e".into());
    props.to = Some("/devices/dev1/messages/deviceBound".into());
    props
        .add_application("temp unit", "°C")
        .expect("app property");
    props.add_application_opt("flag", None).expect("null value");
    let c2d_topic = topic::hub::c2d(cs.identity.device_id(), &props);
    let payload = Bytes::from_static(b"{\"setpoint\":21.5}");
    dev.send(
        Publish::new(
            c2d_topic.as_str(),
            QosPid::AtLeastOnce(pid(2)),
            payload.clone(),
        )
        .expect("publish"),
    );
    let (mut got_puback, mut delivered) = (false, None);
    while !got_puback || delivered.is_none() {
        match dev.recv() {
            Packet::Puback(p) => {
                assert_eq!(p, pid(2));
                got_puback = true;
            }
            Packet::Publish(p) => delivered = Some(p),
            other => panic!("unexpected {other:?}"),
        }
    }
    let delivered = delivered.expect("delivered");
    assert_eq!(delivered.qos(), QoS::AtLeastOnce);
    assert_eq!(delivered.payload(), &payload);
    match topic::parse(delivered.topic().as_str()).expect("a C2D topic") {
        HubTopic::C2d {
            device_id,
            properties,
        } => {
            assert_eq!(device_id, "dev1");
            assert_eq!(properties, props);
        }
        other => panic!("expected C2D, got {other:?}"),
    }
    dev.send(Packet::Puback(delivered.pid().expect("QoS 1 has a pid")));

    // QoS 0 on the twin-response filter.
    let twin_topic = topic::hub::twin_response(204, &"7".parse().expect("rid"), Some(3));
    dev.send(Publish::new(twin_topic.as_str(), QosPid::AtMostOnce, Bytes::new()).expect("publish"));
    match dev.recv() {
        Packet::Publish(p) => {
            assert_eq!(p.qos(), QoS::AtMostOnce);
            assert_eq!(
                topic::parse(p.topic().as_str()).expect("twin response"),
                HubTopic::TwinResponse {
                    status: 204,
                    request_id: "7",
                    version: Some(3)
                }
            );
        }
        other => panic!("expected PUBLISH, got {other:?}"),
    }

    dev.send(Packet::Pingreq);
    assert_eq!(dev.recv(), Packet::Pingresp);

    dev.send(Unsubscribe::new(pid(3), [topic::TWIN_RESPONSE_FILTER]).expect("unsubscribe"));
    assert_eq!(dev.recv(), Packet::Unsuback(pid(3)));
    // Unsubscribed: this one is not delivered; the PINGRESP after it proves it.
    dev.send(Publish::new(twin_topic.as_str(), QosPid::AtMostOnce, Bytes::new()).expect("publish"));
    dev.send(Packet::Pingreq);
    assert_eq!(dev.recv(), Packet::Pingresp);

    dev.send(Packet::Disconnect);
    assert_eq!(dev.try_recv(), None, "the broker closes after DISCONNECT");
}

#[test]
fn qos2_flow_uses_pubrec_pubrel_pubcomp() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let (mut c, ack) = Raw::connect(broker.addr, Connect::new("qos2").expect("id"));
    assert!(ack.code().is_accepted());
    c.send(Subscribe::new(pid(1), [("q/2", QoS::ExactlyOnce)]).expect("subscribe"));
    match c.recv() {
        Packet::Suback(s) => assert_eq!(
            s.return_codes(),
            [SubscribeReturnCode::Success(QoS::ExactlyOnce)]
        ),
        other => panic!("expected SUBACK, got {other:?}"),
    }
    c.send(
        Publish::new("q/2", QosPid::ExactlyOnce(pid(9)), Bytes::from_static(b"x"))
            .expect("publish"),
    );
    assert_eq!(c.recv(), Packet::Pubrec(pid(9)));
    c.send(Packet::Pubrel(pid(9)));
    // The broker completes our publish and delivers it back at QoS 2.
    let (mut completed, mut incoming) = (false, None);
    while !completed || incoming.is_none() {
        match c.recv() {
            Packet::Pubcomp(p) => {
                assert_eq!(p, pid(9));
                completed = true;
            }
            Packet::Publish(p) => {
                assert_eq!(p.qos(), QoS::ExactlyOnce);
                assert_eq!(p.payload().as_ref(), b"x");
                incoming = p.pid();
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let incoming = incoming.expect("incoming pid");
    c.send(Packet::Pubrec(incoming));
    assert_eq!(c.recv(), Packet::Pubrel(incoming));
    c.send(Packet::Pubcomp(incoming));
    c.send(Packet::Pingreq);
    assert_eq!(c.recv(), Packet::Pingresp);
}

#[test]
fn will_is_published_when_the_connection_dies_without_disconnect() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let will_topic = "devices/dev1/messages/events/";
    let (mut watcher, _) = Raw::connect(broker.addr, Connect::new("watcher").expect("id"));
    watcher.send(
        Subscribe::new(pid(1), [("devices/+/messages/events/#", QoS::AtLeastOnce)]).expect("sub"),
    );
    assert!(matches!(watcher.recv(), Packet::Suback(_)));

    let will = LastWill::new(
        will_topic,
        Bytes::from_static(b"offline"),
        QoS::AtLeastOnce,
        false,
    )
    .expect("will");
    let (dev, ack) = Raw::connect(broker.addr, device_connect(true).with_last_will(will));
    assert!(ack.code().is_accepted());
    dev.stream
        .shutdown(Shutdown::Both)
        .expect("drop the socket");
    drop(dev);

    match watcher.recv() {
        Packet::Publish(p) => {
            assert_eq!(p.topic().as_str(), will_topic);
            assert_eq!(p.payload().as_ref(), b"offline");
        }
        other => panic!("expected the will, got {other:?}"),
    }
}

#[test]
fn persistent_session_keeps_subscriptions_and_queues_qos1() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let cs: ConnectionString = CONNECTION_STRING.parse().expect("valid");
    let filter = topic::c2d_filter(cs.identity.device_id());

    // CleanSession 0: subscribe, then leave.
    let (mut dev, ack) = Raw::connect(broker.addr, device_connect(false));
    assert!(!ack.session_present(), "first session is new");
    dev.send(Subscribe::new(pid(1), [(filter.as_str(), QoS::AtLeastOnce)]).expect("sub"));
    assert!(matches!(dev.recv(), Packet::Suback(_)));
    dev.send(Packet::Disconnect);
    assert_eq!(dev.try_recv(), None);

    // While the device is away, the "hub" sends it a C2D message.
    let (mut hub, _) = Raw::connect(broker.addr, Connect::new("hub").expect("id"));
    let mut props = MessageProperties::new();
    props.message_id = Some("queued-1".into());
    let c2d = topic::hub::c2d(cs.identity.device_id(), &props);
    hub.send(
        Publish::new(
            c2d.as_str(),
            QosPid::AtLeastOnce(pid(5)),
            Bytes::from_static(b"q"),
        )
        .expect("pub"),
    );
    assert_eq!(hub.recv(), Packet::Puback(pid(5)));

    // Back with CleanSession 0: the session and the queued message are there.
    let (mut dev, ack) = Raw::connect(broker.addr, device_connect(false));
    assert!(ack.session_present(), "session survived");
    match dev.recv() {
        Packet::Publish(p) => {
            assert_eq!(p.payload().as_ref(), b"q");
            let HubTopic::C2d { properties, .. } = topic::parse(p.topic().as_str()).expect("c2d")
            else {
                panic!("not a C2D topic");
            };
            assert_eq!(properties.message_id.as_deref(), Some("queued-1"));
            dev.send(Packet::Puback(p.pid().expect("pid")));
        }
        other => panic!("expected the queued PUBLISH, got {other:?}"),
    }
    dev.send(Packet::Disconnect);
}
