//! The hub's rules over real sockets: plain TCP, TLS with the generated
//! CA, and WebSocket over TLS, with a raw client built from the core codec.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use iothub_emulator::{DeviceAuthentication, key_from_base64, thumbprint};
use iothub_proto::auth::UsernameOptions;
use iothub_proto::mqtt::{
    Connect, ConnectReturnCode, LastWill, Packet, Publish, QoS, QosPid, SubscribeReturnCode,
};
use iothub_proto::properties::MessageProperties;
use iothub_proto::topic::{self, HubTopic};
use serde_json::{Value, json};

const TWIN_RES: &str = "$iothub/twin/res/#";
const DESIRED: &str = "$iothub/twin/PATCH/properties/desired/#";
const METHODS: &str = "$iothub/methods/POST/#";

fn c2d_filter(d: &str) -> String {
    format!("devices/{d}/messages/devicebound/#")
}

#[tokio::test]
async fn telemetry_over_tls_is_stored_with_properties_identity_and_time() {
    let emu = start().await;
    let dev = emu.create_device("dev1").unwrap();
    let mut c = Client::tls(&emu).await;
    c.connect(&dev).await;
    let pid = c
        .publish(
            // `$.cdid` / `$.cmid` posing as another sender: the hub's stamp wins.
            "devices/dev1/messages/events/%24.ct=application%2Fjson&%24.ce=utf-8&alert=high&%24.cdid=other&%24.cmid=m9",
            QoS::AtLeastOnce,
            br#"{"t":21}"#,
        )
        .await;
    assert!(matches!(c.recv().await, Some(Packet::Puback(p)) if Some(p) == pid));
    let m = emu
        .wait_for_telemetry(|m| m.identity.device_id().as_str() == "dev1", WAIT)
        .await
        .unwrap();
    assert_eq!(m.body_text(), Some(r#"{"t":21}"#));
    assert_eq!(m.property("alert"), Some("high"));
    assert_eq!(
        m.properties.content_type.as_deref(),
        Some("application/json")
    );
    assert_eq!(m.properties.connection_device_id.as_deref(), Some("dev1"));
    assert_eq!(m.properties.connection_module_id, None);
    let age = std::time::SystemTime::now()
        .duration_since(m.enqueued_time)
        .unwrap();
    assert!(age < WAIT);
    // Also through the service API.
    let events = http(
        emu.http_addr(),
        "GET",
        "/devices/dev1/messages/events?api-version=2021-04-12",
        &[],
        b"",
    )
    .await;
    assert_eq!(events.status, 200);
    let e = &events.json()[0];
    assert_eq!(e["body"], r#"{"t":21}"#);
    assert_eq!(e["bodyEncoding"], "utf-8");
    assert_eq!(e["properties"]["alert"], "high");
    assert_eq!(e["systemProperties"]["iothub-connection-device-id"], "dev1");
    assert!(e["systemProperties"]["iothub-connection-module-id"].is_null());
    assert_eq!(e["systemProperties"]["content-type"], "application/json");
    assert!(e["enqueuedTime"].as_str().unwrap().ends_with('Z'));
    let b64 = http(
        emu.http_addr(),
        "GET",
        "/devices/dev1/messages/events?base64=true",
        &[],
        b"",
    )
    .await;
    assert_eq!(b64.json()[0]["bodyEncoding"], "base64");
    assert_eq!(b64.json()[0]["body"], "eyJ0IjoyMX0=");
    emu.shutdown().await;
}

#[tokio::test]
async fn websocket_carries_mqtt_and_refuses_other_paths_and_subprotocols() {
    let emu = start().await;
    let dev = emu.create_device("ws1").unwrap();
    let mut c = Client::websocket(&emu).await;
    c.connect(&dev).await;
    c.subscribe(&[(TWIN_RES, QoS::AtMostOnce)]).await;
    c.publish("$iothub/twin/GET/?$rid=1", QoS::AtMostOnce, b"")
        .await;
    let p = c.recv_publish().await;
    assert_eq!(p.topic().as_str(), "$iothub/twin/res/200/?$rid=1");
    assert!(
        Client::websocket_at(&emu, "/mqtt", Some("mqtt"))
            .await
            .is_err()
    );
    assert!(
        Client::websocket_at(&emu, "/$iothub/websocket", None)
            .await
            .is_err()
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn the_largest_telemetry_fits_the_websocket_limit() {
    // WebSocket messages are limited to the largest packet the hub reads
    // (see tests/hostile.rs for a larger one): the largest telemetry
    // still travels.
    let emu = start().await;
    let dev = emu.create_device("ws2").unwrap();
    let mut c = Client::websocket(&emu).await;
    c.connect(&dev).await;
    let body = vec![b'x'; iothub_hub::MAX_TELEMETRY_SIZE - 100];
    let pid = c
        .publish("devices/ws2/messages/events/", QoS::AtLeastOnce, &body)
        .await;
    assert!(matches!(c.recv().await, Some(Packet::Puback(p)) if Some(p) == pid));
    emu.shutdown().await;
}

#[tokio::test]
async fn plain_tcp_only_when_asked() {
    let emu = iothub_emulator::Emulator::builder().start().await.unwrap();
    assert!(emu.plain_addr().is_none());
    emu.shutdown().await;
    let emu = start().await;
    let dev = emu.create_device("p1").unwrap();
    let mut c = Client::plain(emu.plain_addr().unwrap()).await;
    c.connect(&dev).await;
    emu.shutdown().await;
}

#[tokio::test]
async fn credentials_are_checked_as_the_hub_does() {
    let emu = start().await;
    let addr = emu.plain_addr().unwrap();
    let dev = emu.create_device("dev1").unwrap();
    // Both username forms, with extra parameters.
    let mut c = Client::plain(addr).await;
    let legacy = UsernameOptions::legacy().with_device_client_type("test/1.0 (x)");
    let ack = c
        .connect_packet(connect_with(&dev, true, &legacy, unix_now() + 60))
        .await;
    assert_eq!(ack.code(), ConnectReturnCode::Accepted);
    let mut c = Client::plain(addr).await;
    let modern = UsernameOptions::default().with_model_id("dtmi:com:example:T;1");
    let ack = c
        .connect_packet(connect_with(&dev, true, &modern, unix_now() + 60))
        .await;
    assert_eq!(ack.code(), ConnectReturnCode::Accepted);
    // The model id of the username is the twin's modelId.
    assert_eq!(
        emu.model_id("dev1").unwrap().as_deref(),
        Some("dtmi:com:example:T;1")
    );
    let t = http(emu.http_addr(), "GET", "/twins/dev1", &[], b"")
        .await
        .json();
    assert_eq!(t["modelId"], "dtmi:com:example:T;1");
    // The secondary key signs valid tokens too.
    let mut by_secondary = dev.clone();
    by_secondary.authentication = DeviceAuthentication::Sas {
        primary: key_from_base64(&dev.secondary_key().unwrap()).unwrap(),
        secondary: None,
    };
    let mut c = Client::plain(addr).await;
    c.connect(&by_secondary).await;
    // A wrong key: 4.
    let mut wrong = dev.clone();
    wrong.authentication = DeviceAuthentication::sas(key_from_base64(&"A".repeat(44)).unwrap());
    let mut c = Client::plain(addr).await;
    assert_eq!(
        c.connect_packet(connect_for(&wrong, true)).await.code(),
        ConnectReturnCode::BadUserNameOrPassword
    );
    c.expect_closed().await;
    // An expired token: 5.
    let mut c = Client::plain(addr).await;
    let expired = connect_with(&dev, true, &UsernameOptions::default(), unix_now() - 10);
    assert_eq!(
        c.connect_packet(expired).await.code(),
        ConnectReturnCode::NotAuthorized
    );
    // An unknown device: 5.
    let ghost = emu.create_device("ghost").unwrap();
    emu.delete_device("ghost").unwrap();
    let mut c = Client::plain(addr).await;
    assert_eq!(
        c.connect_packet(connect_for(&ghost, true)).await.code(),
        ConnectReturnCode::NotAuthorized
    );
    // Another hub name in the username: 4.
    let mut other_host = dev.clone();
    other_host.host_name = "contoso.azure-devices.net".into();
    let mut c = Client::plain(addr).await;
    assert_eq!(
        c.connect_packet(connect_for(&other_host, true))
            .await
            .code(),
        ConnectReturnCode::BadUserNameOrPassword
    );
    // Keep-alive over 1177 s.
    let mut c = Client::plain(addr).await;
    let long = connect_for(&dev, true).with_keep_alive(1178);
    assert_eq!(
        c.connect_packet(long).await.code(),
        ConnectReturnCode::IdentifierRejected
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn the_connection_closes_when_the_token_expires() {
    let emu = start().await;
    let dev = emu.create_device("dev1").unwrap();
    let mut c = Client::plain(emu.plain_addr().unwrap()).await;
    let soon = connect_with(&dev, true, &UsernameOptions::default(), unix_now() + 2);
    assert!(c.connect_packet(soon).await.code().is_accepted());
    let t0 = std::time::Instant::now();
    c.expect_closed().await;
    assert!(t0.elapsed() <= Duration::from_secs(4));
    emu.shutdown().await;
}

#[tokio::test]
async fn a_client_may_only_use_its_own_topics() {
    let emu = start().await;
    let addr = emu.plain_addr().unwrap();
    let dev = emu.create_device("dev1").unwrap();
    emu.create_device("dev2").unwrap();
    let mut c = Client::plain(addr).await;
    c.connect(&dev).await;
    let codes = c
        .subscribe(&[
            (&c2d_filter("dev2"), QoS::AtLeastOnce),
            ("#", QoS::AtMostOnce),
            ("devices/dev1/messages/devicebound/+", QoS::AtLeastOnce),
            (&c2d_filter("dev1"), QoS::ExactlyOnce),
            (TWIN_RES, QoS::AtMostOnce),
            (DESIRED, QoS::AtMostOnce),
            (METHODS, QoS::AtMostOnce),
        ])
        .await;
    assert_eq!(
        codes,
        vec![
            SubscribeReturnCode::Failure,
            SubscribeReturnCode::Failure,
            SubscribeReturnCode::Failure,
            SubscribeReturnCode::Success(QoS::AtLeastOnce),
            SubscribeReturnCode::Success(QoS::AtMostOnce),
            SubscribeReturnCode::Success(QoS::AtMostOnce),
            SubscribeReturnCode::Success(QoS::AtMostOnce),
        ]
    );
    // Another device's telemetry topic: disconnected.
    c.publish("devices/dev2/messages/events/", QoS::AtMostOnce, b"x")
        .await;
    c.expect_closed().await;
    assert!(emu.telemetry().is_empty());
    // QoS 2: disconnected.
    let mut c = Client::plain(addr).await;
    c.connect(&dev).await;
    c.publish("devices/dev1/messages/events/", QoS::ExactlyOnce, b"x")
        .await;
    c.expect_closed().await;
    emu.shutdown().await;
}

#[tokio::test]
async fn retain_is_not_stored_but_passed_on_as_a_property() {
    let emu = start().await;
    let dev = emu.create_device("dev1").unwrap();
    let mut c = Client::plain(emu.plain_addr().unwrap()).await;
    c.connect(&dev).await;
    let p = Publish::new(
        "devices/dev1/messages/events/",
        QosPid::AtMostOnce,
        Bytes::from_static(b"r"),
    )
    .unwrap()
    .with_retain(true);
    c.send(p).await;
    let m = emu.wait_for_telemetry(|_| true, WAIT).await.unwrap();
    assert_eq!(m.property("mqtt-retain"), Some("true"));
    // Nothing retained comes back on a subscription.
    let codes = c
        .subscribe(&[(&c2d_filter("dev1"), QoS::AtLeastOnce)])
        .await;
    assert_eq!(codes.len(), 1);
    assert!(c.recv_within(Duration::from_millis(200)).await.is_err());
    emu.shutdown().await;
}

#[tokio::test]
async fn the_retain_property_can_be_the_seed_documents_x_opt_retain() {
    let emu = iothub_emulator::Emulator::builder()
        .in_memory()
        .plain_mqtt(true)
        .retain_property(iothub_emulator::RetainProperty::XOptRetain)
        .start()
        .await
        .unwrap();
    let dev = emu.create_device("dev1").unwrap();
    let mut c = Client::plain(emu.plain_addr().unwrap()).await;
    c.connect(&dev).await;
    let p = Publish::new(
        "devices/dev1/messages/events/",
        QosPid::AtMostOnce,
        Bytes::from_static(b"r"),
    )
    .unwrap()
    .with_retain(true);
    c.send(p).await;
    let m = emu.wait_for_telemetry(|_| true, WAIT).await.unwrap();
    assert_eq!(m.property("x-opt-retain"), Some("true"));
    assert_eq!(m.property("mqtt-retain"), None);
    emu.shutdown().await;
}

#[tokio::test]
async fn a_new_connect_evicts_the_older_connection() {
    let emu = start().await;
    let dev = emu.create_device("dev1").unwrap();
    let mut first = Client::tls(&emu).await;
    first.connect(&dev).await;
    let mut second = Client::tls(&emu).await;
    second.connect(&dev).await;
    first.expect_closed().await;
    assert!(emu.is_connected("dev1"));
    emu.shutdown().await;
}

#[tokio::test]
async fn a_silent_client_is_dropped_after_one_and_a_half_keep_alives() {
    let emu = start().await;
    let dev = emu.create_device("dev1").unwrap();
    let mut c = Client::plain(emu.plain_addr().unwrap()).await;
    let ack = c
        .connect_packet(connect_for(&dev, true).with_keep_alive(1))
        .await;
    assert!(ack.code().is_accepted());
    // A PINGREQ is answered.
    c.send(Packet::Pingreq).await;
    assert!(matches!(c.recv().await, Some(Packet::Pingresp)));
    let t0 = std::time::Instant::now();
    c.expect_closed().await;
    let waited = t0.elapsed();
    assert!(waited >= Duration::from_millis(1400), "{waited:?}");
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    emu.shutdown().await;
}

#[tokio::test]
async fn oversized_telemetry_closes_the_connection() {
    let emu = start().await;
    let dev = emu.create_device("dev1").unwrap();
    let mut c = Client::plain(emu.plain_addr().unwrap()).await;
    c.connect(&dev).await;
    let ok = vec![b'a'; 256 * 1024];
    c.publish("devices/dev1/messages/events/", QoS::AtLeastOnce, &ok)
        .await;
    assert!(matches!(c.recv().await, Some(Packet::Puback(_))));
    let big = vec![b'a'; 256 * 1024 + 1];
    c.publish("devices/dev1/messages/events/", QoS::AtLeastOnce, &big)
        .await;
    c.expect_closed().await;
    assert_eq!(emu.telemetry().len(), 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn twins_get_patch_and_desired_notifications() {
    let emu = start().await;
    let dev = emu.create_device("dev1").unwrap();
    let mut c = Client::tls(&emu).await;
    c.connect(&dev).await;
    c.subscribe(&[(TWIN_RES, QoS::AtMostOnce), (DESIRED, QoS::AtMostOnce)])
        .await;
    // GET at QoS 1 with a one-space body (the Python SDK sends that).
    let pid = c
        .publish("$iothub/twin/GET/?$rid=a1", QoS::AtLeastOnce, b" ")
        .await;
    assert!(matches!(c.recv().await, Some(Packet::Puback(p)) if Some(p) == pid));
    let p = c.recv_publish().await;
    assert_eq!(p.topic().as_str(), "$iothub/twin/res/200/?$rid=a1");
    let body: Value = serde_json::from_slice(p.payload()).unwrap();
    assert_eq!(
        body,
        json!({"desired": {"$version": 1}, "reported": {"$version": 1}})
    );
    // Reported PATCH merges, null deletes, 204 with the new version.
    c.publish(
        "$iothub/twin/PATCH/properties/reported/?$rid=a2",
        QoS::AtMostOnce,
        br#"{"fw":"1.0","tmp":{"a":1,"b":2}}"#,
    )
    .await;
    let p = c.recv_publish().await;
    assert_eq!(
        p.topic().as_str(),
        "$iothub/twin/res/204/?$rid=a2&$version=2"
    );
    c.publish(
        "$iothub/twin/PATCH/properties/reported/?$rid=a3",
        QoS::AtMostOnce,
        br#"{"tmp":{"a":null}}"#,
    )
    .await;
    assert!(
        c.recv_publish()
            .await
            .topic()
            .as_str()
            .ends_with("&$version=3")
    );
    let twin = emu.twin("dev1").unwrap();
    assert_eq!(
        Value::Object(twin.reported),
        json!({"fw": "1.0", "tmp": {"b": 2}})
    );
    // Desired from the service side (HTTP) reaches the device.
    let r = http_json(
        emu.http_addr(),
        "PATCH",
        "/twins/dev1?api-version=2021-04-12",
        json!({"properties": {"desired": {"interval": 5}}, "tags": {"site": "lab"}}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["properties"]["desired"]["$version"], 2);
    assert_eq!(r.json()["tags"]["site"], "lab");
    let p = c.recv_publish().await;
    assert_eq!(
        p.topic().as_str(),
        "$iothub/twin/PATCH/properties/desired/?$version=2"
    );
    let body: Value = serde_json::from_slice(p.payload()).unwrap();
    assert_eq!(body, json!({"interval": 5, "$version": 2}));
    assert_eq!(
        emu.update_desired("dev1", json!({"interval": null}))
            .unwrap(),
        3
    );
    let p = c.recv_publish().await;
    assert_eq!(
        serde_json::from_slice::<Value>(p.payload()).unwrap(),
        json!({"interval": null, "$version": 3})
    );
    let r = http(emu.http_addr(), "GET", "/twins/dev1", &[], b"").await;
    let t = r.json();
    assert_eq!(t["properties"]["reported"]["$version"], 3);
    assert_eq!(t["properties"]["desired"], json!({"$version": 3}));
    assert_eq!(t["connectionState"], "Connected");
    assert_eq!(t["modelId"], "", "no model id announced");
    // Sections are capped at 32 KB.
    let big = json!({"properties": {"desired": {"x": "a".repeat(33 * 1024)}}});
    let r = http_json(emu.http_addr(), "PATCH", "/twins/dev1", big).await;
    assert_eq!(r.status, 413);
    emu.shutdown().await;
}

#[tokio::test]
async fn direct_methods_answer_404_offline_and_carry_status_and_payload() {
    let emu = start().await;
    let dev = emu.create_device("dev1").unwrap();
    let http_addr = emu.http_addr();
    let call =
        json!({"methodName": "reboot", "payload": {"delay": 1}, "responseTimeoutInSeconds": 5});
    let r = http_json(http_addr, "POST", "/twins/dev1/methods", call.clone()).await;
    assert_eq!(r.status, 404, "offline");
    let mut c = Client::tls(&emu).await;
    c.connect(&dev).await;
    let r = http_json(http_addr, "POST", "/twins/dev1/methods", call.clone()).await;
    assert_eq!(r.status, 404, "not subscribed");
    c.subscribe(&[(METHODS, QoS::AtMostOnce)]).await;
    let r = http_json(
        http_addr,
        "POST",
        "/twins/dev1/methods",
        json!({"methodName": "m", "responseTimeoutInSeconds": 301}),
    )
    .await;
    assert_eq!(r.status, 400, "timeout out of range");
    let caller =
        tokio::spawn(
            async move { http_json(http_addr, "POST", "/twins/dev1/methods", call).await },
        );
    let req = c.recv_publish().await;
    let Ok(HubTopic::MethodRequest { name, request_id }) = topic::parse(req.topic().as_str())
    else {
        panic!("{req:?}")
    };
    assert_eq!(name, "reboot");
    assert_eq!(
        serde_json::from_slice::<Value>(req.payload()).unwrap(),
        json!({"delay": 1})
    );
    let rid = topic::RequestId::new(request_id);
    c.publish(
        &topic::method_response(201, &rid),
        QoS::AtMostOnce,
        br#"{"done":true}"#,
    )
    .await;
    let r = caller.await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"status": 201, "payload": {"done": true}}));
    emu.shutdown().await;
}

#[tokio::test]
async fn an_unanswered_method_times_out_with_504() {
    let emu = start().await;
    let dev = emu.create_device("dev1").unwrap();
    let mut c = Client::plain(emu.plain_addr().unwrap()).await;
    c.connect(&dev).await;
    c.subscribe(&[(METHODS, QoS::AtMostOnce)]).await;
    let t0 = std::time::Instant::now();
    let r = http_json(
        emu.http_addr(),
        "POST",
        "/twins/dev1/methods",
        json!({"methodName": "slow", "responseTimeoutInSeconds": 5}),
    )
    .await;
    assert_eq!(r.status, 504);
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_secs(5) && waited < Duration::from_secs(7),
        "{waited:?}"
    );
    // The library API says the same.
    let err = emu
        .invoke_method("ghost", "m", Value::Null, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(err, iothub_emulator::EmulatorError::NotFound(_)));
    emu.shutdown().await;
}

#[tokio::test]
async fn c2d_is_delivered_with_properties_redelivered_with_dup_and_dropped_by_clean_session() {
    let emu = start().await;
    let addr = emu.plain_addr().unwrap();
    let dev = emu.create_device("dev1").unwrap();
    let r = http(
        emu.http_addr(),
        "POST",
        "/devices/dev1/messages/deviceBound?api-version=2021-04-12",
        &[
            ("iothub-messageid", "m-1"),
            ("iothub-app-color", "red"),
            ("Content-Type", "application/octet-stream"),
        ],
        b"hello device",
    )
    .await;
    assert_eq!(r.status, 204);
    let mut c = Client::plain(addr).await;
    c.connect(&dev).await;
    c.subscribe(&[(&c2d_filter("dev1"), QoS::AtLeastOnce)])
        .await;
    let p = c.recv_publish().await;
    assert_eq!(p.qos(), QoS::AtLeastOnce);
    assert!(!p.dup());
    assert_eq!(&p.payload()[..], b"hello device");
    let Ok(HubTopic::C2d { properties, .. }) = topic::parse(p.topic().as_str()) else {
        panic!("{p:?}")
    };
    assert_eq!(properties.message_id.as_deref(), Some("m-1"));
    assert_eq!(
        properties.to.as_deref(),
        Some("/devices/dev1/messages/deviceBound")
    );
    assert_eq!(properties.get_application("color"), Some(Some("red")));
    // No PUBACK; the connection dies; CleanSession 0 brings it back with DUP.
    drop(c);
    wait_until("disconnected", || !emu.is_connected("dev1")).await;
    assert_eq!(emu.device("dev1").unwrap().pending_c2d, 1);
    let mut c = Client::plain(addr).await;
    let ack = c.connect(&dev).await;
    assert!(ack.session_present());
    let again = c.recv_publish().await;
    assert!(again.dup());
    assert_eq!(&again.payload()[..], b"hello device");
    c.send(Packet::Puback(again.pid().unwrap())).await;
    wait_until("removed after PUBACK", || {
        emu.device("dev1").unwrap().pending_c2d == 0
    })
    .await;
    c.send(Packet::Disconnect).await;
    c.expect_closed().await;
    // Sent while offline, then a CleanSession 1 connect: dropped.
    emu.send_c2d(
        "dev1",
        Bytes::from_static(b"lost"),
        MessageProperties::new(),
    )
    .unwrap();
    let mut c = Client::plain(addr).await;
    let ack = c.connect_packet(connect_for(&dev, true)).await;
    assert!(ack.code().is_accepted() && !ack.session_present());
    c.subscribe(&[(&c2d_filter("dev1"), QoS::AtLeastOnce)])
        .await;
    assert!(c.recv_within(Duration::from_millis(200)).await.is_err());
    assert_eq!(emu.device("dev1").unwrap().pending_c2d, 0);
    emu.shutdown().await;
}

#[tokio::test]
async fn c2d_limits_64_kb_and_50_pending() {
    let emu = start().await;
    emu.create_device("dev1").unwrap();
    let big = vec![b'x'; 64 * 1024 + 1];
    let r = http(
        emu.http_addr(),
        "POST",
        "/devices/dev1/messages/deviceBound",
        &[],
        &big,
    )
    .await;
    assert_eq!(r.status, 413);
    for i in 0..50 {
        let r = http(
            emu.http_addr(),
            "POST",
            "/devices/dev1/messages/deviceBound",
            &[],
            format!("{i}").as_bytes(),
        )
        .await;
        assert_eq!(r.status, 204);
    }
    let r = http(
        emu.http_addr(),
        "POST",
        "/devices/dev1/messages/deviceBound",
        &[],
        b"51",
    )
    .await;
    assert_eq!(r.status, 403);
    let r = http(
        emu.http_addr(),
        "POST",
        "/devices/nobody/messages/deviceBound",
        &[],
        b"x",
    )
    .await;
    assert_eq!(r.status, 404);
    emu.shutdown().await;
}

#[tokio::test]
async fn the_will_is_forwarded_when_the_connection_ends_without_disconnect() {
    let emu = start().await;
    let addr = emu.plain_addr().unwrap();
    let dev = emu.create_device("dev1").unwrap();
    let will = LastWill::new(
        "devices/dev1/messages/events/reason=gone",
        Bytes::from_static(b"offline"),
        QoS::AtLeastOnce,
        false,
    )
    .unwrap();
    // DISCONNECT first: no will.
    let mut c = Client::plain(addr).await;
    let ack = c
        .connect_packet(connect_for(&dev, true).with_last_will(will.clone()))
        .await;
    assert!(ack.code().is_accepted());
    c.send(Packet::Disconnect).await;
    c.expect_closed().await;
    // The transport just goes away: the will is published.
    let mut c = Client::plain(addr).await;
    let ack = c
        .connect_packet(connect_for(&dev, true).with_last_will(will))
        .await;
    assert!(ack.code().is_accepted());
    drop(c);
    let m = emu.wait_for_telemetry(|m| m.is_will(), WAIT).await.unwrap();
    assert_eq!(m.body_text(), Some("offline"));
    assert_eq!(m.property("reason"), Some("gone"));
    assert_eq!(emu.telemetry().len(), 1, "only one will");
    emu.shutdown().await;
}

#[tokio::test]
async fn x509_devices_authenticate_by_certificate_thumbprint() {
    let emu = start().await;
    let make = || {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["cam".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem(), thumbprint(cert.der()))
    };
    let (cert, key, tp) = make();
    let (other_cert, other_key, _) = make();
    // Registered through the service API.
    let r = http_json(
        emu.http_addr(),
        "PUT",
        "/devices/cam",
        json!({"deviceId": "cam", "authentication": {"type": "selfSigned",
            "x509Thumbprint": {"primaryThumbprint": tp.to_uppercase(), "secondaryThumbprint": null}}}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["authentication"]["type"], "selfSigned");
    let dev = emu.device("cam").unwrap();
    assert!(dev.connection_string().ends_with(";x509=true"));
    let connect = || {
        Connect::new("cam")
            .unwrap()
            .with_username("localhost/cam/?api-version=2021-04-12")
            .unwrap()
    };
    let ca = emu.ca_pem().unwrap().to_owned();
    let mut c = Client::tls_with(emu.mqtt_addr(), tls_config(&ca, Some((&cert, &key)))).await;
    assert_eq!(
        c.connect_packet(connect()).await.code(),
        ConnectReturnCode::Accepted
    );
    let mut c = Client::tls_with(
        emu.mqtt_addr(),
        tls_config(&ca, Some((&other_cert, &other_key))),
    )
    .await;
    assert_eq!(
        c.connect_packet(connect()).await.code(),
        ConnectReturnCode::BadUserNameOrPassword
    );
    let mut c = Client::tls(&emu).await;
    assert_eq!(
        c.connect_packet(connect()).await.code(),
        ConnectReturnCode::NotAuthorized
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn faults_drop_throttle_refuse_and_delay() {
    let emu = start().await;
    let addr = emu.plain_addr().unwrap();
    let dev = emu.create_device("dev1").unwrap();
    let h = emu.http_addr();
    let mut c = Client::plain(addr).await;
    c.connect(&dev).await;
    c.subscribe(&[(TWIN_RES, QoS::AtMostOnce)]).await;
    // 429 for the next two twin operations.
    let r = http_json(
        h,
        "POST",
        "/devices/dev1/faults",
        json!({"failTwinOps": {"count": 2, "status": 429}}),
    )
    .await;
    assert_eq!(r.status, 200);
    for rid in ["1", "2", "3"] {
        c.publish(
            &format!("$iothub/twin/GET/?$rid={rid}"),
            QoS::AtMostOnce,
            b"",
        )
        .await;
    }
    let statuses: Vec<String> = [
        c.recv_publish().await,
        c.recv_publish().await,
        c.recv_publish().await,
    ]
    .iter()
    .map(|p| p.topic().as_str().split('/').nth(3).unwrap().to_owned())
    .collect();
    assert_eq!(statuses, ["429", "429", "200"]);
    // Delayed answers.
    emu.delay_answers("dev1", Duration::from_millis(300))
        .unwrap();
    let t0 = std::time::Instant::now();
    c.publish("$iothub/twin/GET/?$rid=4", QoS::AtMostOnce, b"")
        .await;
    c.recv_publish().await;
    assert!(t0.elapsed() >= Duration::from_millis(300));
    emu.delay_answers("dev1", Duration::ZERO).unwrap();
    // Dropped: closed without a word.
    let r = http_json(
        h,
        "POST",
        "/devices/dev1/faults",
        json!({"dropConnection": true}),
    )
    .await;
    assert_eq!(r.json(), json!({"dropped": true}));
    c.expect_closed().await;
    // A member of the wrong kind is a 400, not its default.
    for bad in [
        json!({"refuseConnects": {"returnCode": "5"}}),
        json!({"refuseConnects": {"seconds": "1"}}),
        json!({"failTwinOps": {"status": 503.5}}),
    ] {
        let r = http_json(h, "POST", "/devices/dev1/faults", bad.clone()).await;
        assert_eq!(r.status, 400, "{bad}");
    }
    // Refused for a while: CONNACK 3, then accepted again.
    let r = http_json(
        h,
        "POST",
        "/devices/dev1/faults",
        json!({"refuseConnects": {"seconds": 0.5}}),
    )
    .await;
    assert_eq!(r.status, 200);
    let mut c = Client::plain(addr).await;
    assert_eq!(
        c.connect_packet(connect_for(&dev, true)).await.code(),
        ConnectReturnCode::ServerUnavailable
    );
    // Accepted again once the window has passed (polled, bounded).
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let mut c = Client::plain(addr).await;
        let code = c.connect_packet(connect_for(&dev, true)).await.code();
        if code.is_accepted() {
            break;
        }
        assert_eq!(code, ConnectReturnCode::ServerUnavailable);
        assert!(std::time::Instant::now() < deadline, "still refused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    emu.shutdown().await;
}

/// Reads from `s` until the emulator closes it, within [`WAIT`]; returns
/// how long that took. Panics if the emulator sends anything first.
async fn eof_within_wait(s: &mut (impl tokio::io::AsyncRead + Unpin)) -> Duration {
    use tokio::io::AsyncReadExt as _;
    let t0 = std::time::Instant::now();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(WAIT, s.read(&mut buf))
        .await
        .expect("the emulator kept a connection without CONNECT open")
        .expect("the emulator closed with an error instead of EOF");
    assert_eq!(n, 0, "the emulator sent {:?}", &buf[..n]);
    t0.elapsed()
}

#[tokio::test]
async fn a_connection_without_connect_is_closed_at_the_connect_timeout() {
    use tokio::io::AsyncWriteExt as _;
    const TIMEOUT: Duration = Duration::from_millis(400);
    let emu = iothub_emulator::Emulator::builder()
        .in_memory()
        .plain_mqtt(true)
        .plain_dps(true)
        .connect_timeout(Some(TIMEOUT))
        .start()
        .await
        .unwrap();
    let dev = emu.create_device("dev1").unwrap();
    // A client that connects in time is not affected: it is still served
    // after the others, opened later, were closed at their deadline.
    let mut good = Client::plain(emu.plain_addr().unwrap()).await;
    let ack = good
        .connect_packet(connect_for(&dev, true).with_keep_alive(0))
        .await;
    assert!(ack.code().is_accepted());

    // Plain TCP to the hub, nothing sent.
    let opened_at = std::time::Instant::now();
    let mut silent = tokio::net::TcpStream::connect(emu.plain_addr().unwrap())
        .await
        .unwrap();
    // A slowloris: the first byte of a CONNECT, never the rest.
    let mut partial = tokio::net::TcpStream::connect(emu.plain_addr().unwrap())
        .await
        .unwrap();
    partial.write_all(&[0x10]).await.unwrap();
    // TLS: the deadline runs once the handshake is done.
    let config = tls_config(emu.ca_pem().unwrap(), None);
    let mut tls = tls_connect(emu.mqtt_addr(), config).await.unwrap();
    // WebSocket: the deadline runs once the upgrade is done.
    let mut ws = Client::websocket(&emu).await;
    // DPS, plain TCP, nothing sent.
    let mut dps = tokio::net::TcpStream::connect(emu.plain_dps_addr().unwrap())
        .await
        .unwrap();

    // Not before the deadline: `silent` was opened less than the time the
    // other three took to open before this wait began.
    let waited = {
        let before_wait = opened_at.elapsed();
        eof_within_wait(&mut silent).await + before_wait
    };
    assert!(waited >= TIMEOUT, "closed after {waited:?}");
    eof_within_wait(&mut partial).await;
    eof_within_wait(&mut tls).await;
    eof_within_wait(&mut dps).await;
    assert_eq!(ws.recv_within(WAIT).await, Ok(None), "WebSocket closed");
    good.send(Packet::Pingreq).await;
    assert!(matches!(good.recv().await, Some(Packet::Pingresp)));
    assert!(emu.is_connected("dev1"));
    emu.shutdown().await;
}
