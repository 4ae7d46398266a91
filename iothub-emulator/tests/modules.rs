//! Module input messages sent through the emulator (library and service
//! API), and IoT Edge routes between modules (builder, service API, CLI,
//! storage), with raw-codec module clients over plain TCP.

mod common;

use std::io::BufRead as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use iothub_emulator::{DeviceInfo, Emulator, EmulatorError, EmulatorHandle};
use iothub_proto::auth::{DeviceId, Identity, ModuleId};
use iothub_proto::mqtt::{Packet, Publish, QoS};
use iothub_proto::properties::MessageProperties;
use iothub_proto::topic::{self, HubTopic};
use serde_json::json;

const ROUTE: &str = r#"FROM /messages/modules/filter/outputs/out1 INTO BrokeredEndpoint("/modules/sink/inputs/in1")"#;

/// A connected module, subscribed to its inputs.
async fn module_client(emu: &EmulatorHandle, info: &DeviceInfo) -> Client {
    let mut c = Client::plain(emu.plain_addr().unwrap()).await;
    c.connect(info).await;
    let d = info.identity.device_id();
    let m = info.identity.module_id().unwrap();
    let codes = c
        .subscribe(&[(&topic::module_inputs_filter(d, m), QoS::AtLeastOnce)])
        .await;
    assert_eq!(
        codes,
        vec![iothub_proto::mqtt::SubscribeReturnCode::Success(
            QoS::AtLeastOnce
        )]
    );
    c
}

/// The input name, properties and body of a module input PUBLISH, which
/// is acknowledged.
async fn recv_input(c: &mut Client) -> (String, MessageProperties, Vec<u8>) {
    let p: Publish = c.recv_publish().await;
    assert_eq!(p.qos(), QoS::AtLeastOnce);
    c.send(Packet::Puback(p.pid().unwrap())).await;
    match topic::parse(p.topic().as_str()) {
        Ok(HubTopic::ModuleInput {
            input, properties, ..
        }) => (input.into_owned(), properties, p.payload().to_vec()),
        other => panic!("not a module input: {other:?}"),
    }
}

fn output_topic(module: &str, output: &str, app: &[(&str, &str)]) -> String {
    let mut p = MessageProperties::new();
    p.output_name = Some(output.to_owned());
    for (k, v) in app {
        p.add_application(*k, *v).unwrap();
    }
    let id = Identity::module(
        DeviceId::new("dev1").unwrap(),
        ModuleId::new(module).unwrap(),
    );
    topic::telemetry(&id, &p)
}

#[tokio::test]
async fn module_inputs_through_the_library_and_the_service_api() {
    let emu = start().await;
    emu.create_device("dev1").unwrap();
    let sink = emu.create_module("dev1", "sink").unwrap();
    let mut c = module_client(&emu, &sink).await;

    // Library.
    let mut p = MessageProperties::new();
    p.add_application("kind", "lib").unwrap();
    emu.send_module_input("dev1/sink", "in1", "from the library", p)
        .unwrap();
    let (input, props, body) = recv_input(&mut c).await;
    assert_eq!(input, "in1");
    assert_eq!(body, b"from the library");
    assert_eq!(props.get_application("kind"), Some(Some("lib")));

    // Service API: the headers of the C2D route.
    let r = http(
        emu.http_addr(),
        "POST",
        "/devices/dev1/modules/sink/messages/inputs/control?api-version=2021-04-12",
        &[
            ("iothub-messageid", "m-7"),
            ("iothub-correlationid", "c-7"),
            ("iothub-contenttype", "application/json"),
            ("iothub-app-kind", "http"),
        ],
        br#"{"cmd":"stop"}"#,
    )
    .await;
    assert_eq!(r.status, 204, "{:?}", String::from_utf8_lossy(&r.body));
    let (input, props, body) = recv_input(&mut c).await;
    assert_eq!(input, "control");
    assert_eq!(body, br#"{"cmd":"stop"}"#);
    assert_eq!(props.message_id.as_deref(), Some("m-7"));
    assert_eq!(props.correlation_id.as_deref(), Some("c-7"));
    assert_eq!(props.content_type.as_deref(), Some("application/json"));
    assert_eq!(props.get_application("kind"), Some(Some("http")));
    // Acknowledged, so nothing is pending.
    wait_until("the inputs are acknowledged", || {
        emu.device("dev1/sink").unwrap().pending_c2d == 0
    })
    .await;

    // Clear errors.
    let none = MessageProperties::new;
    assert!(matches!(
        emu.send_module_input("dev1", "in1", "x", none()),
        Err(EmulatorError::BadRequest(m)) if m.contains("modules")
    ));
    assert!(matches!(
        emu.send_module_input("dev1/sink", "a/b", "x", none()),
        Err(EmulatorError::BadRequest(m)) if m.contains("a/b")
    ));
    assert!(matches!(
        emu.send_module_input("dev1/sink", "", "x", none()),
        Err(EmulatorError::BadRequest(_))
    ));
    assert!(matches!(
        emu.send_module_input("dev1/ghost", "in1", "x", none()),
        Err(EmulatorError::NotFound(_))
    ));
    assert!(matches!(
        emu.send_module_input("dev1/sink", "in1", vec![0u8; 70 * 1024], none()),
        Err(EmulatorError::TooLarge { max: 65536, .. })
    ));
    let r = http(
        emu.http_addr(),
        "POST",
        "/devices/dev1/modules/ghost/messages/inputs/in1",
        &[],
        b"x",
    )
    .await;
    assert_eq!(r.status, 404);
    let r = http(
        emu.http_addr(),
        "POST",
        "/devices/dev1/modules/sink/messages/inputs/in1",
        &[("iothub-ack", "sometimes")],
        b"x",
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(String::from_utf8_lossy(&r.body).contains("iothub-ack"));
    // An input name that cannot be in an MQTT topic (`+` sent as %2B):
    // refused, not queued where it could never be delivered.
    let r = http(
        emu.http_addr(),
        "POST",
        "/devices/dev1/modules/sink/messages/inputs/a%2Bb",
        &[],
        b"x",
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(String::from_utf8_lossy(&r.body).contains("input name"));
    emu.shutdown().await;
}

#[tokio::test]
async fn routes_take_module_outputs_to_inputs_of_the_same_device() {
    let emu = start().await;
    let h = emu.http_addr();
    emu.create_device("dev1").unwrap();
    let filter = emu.create_module("dev1", "filter").unwrap();
    let sink = emu.create_module("dev1", "sink").unwrap();

    // An invalid route is refused with what is wrong, and nothing is set.
    let r = http_json(
        h,
        "PUT",
        "/routes/bad",
        json!({"route": "FROM /messages/* INTO $upstream"}),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("/messages/*")
    );
    let r = http_json(h, "PUT", "/routes/bad", json!({"text": ROUTE})).await;
    assert_eq!(r.status, 400);
    let r = http_json(h, "PUT", "/routes/bad%20name", json!({"route": ROUTE})).await;
    assert_eq!(r.status, 400);
    assert!(emu.routes().is_empty());

    // Set over the service API; the answer is the canonical text.
    let r = http_json(
        h,
        "PUT",
        "/routes/r1",
        json!({"route": ROUTE.replace("FROM", "from")}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"name": "r1", "route": ROUTE}));
    assert_eq!(emu.routes(), vec![("r1".to_owned(), ROUTE.to_owned())]);
    let r = http_json(h, "GET", "/routes", serde_json::Value::Null).await;
    assert_eq!(r.json(), json!([{"name": "r1", "route": ROUTE}]));

    let mut s = module_client(&emu, &sink).await;
    let mut f = Client::plain(emu.plain_addr().unwrap()).await;
    f.connect(&filter).await;

    // Module A's output reaches module B's input, with its properties.
    f.publish(
        &output_topic("filter", "out1", &[("temp", "high")]),
        QoS::AtLeastOnce,
        b"21.5",
    )
    .await;
    let (input, props, body) = recv_input(&mut s).await;
    assert_eq!(input, "in1");
    assert_eq!(body, b"21.5");
    assert_eq!(props.get_application("temp"), Some(Some("high")));
    assert_eq!(props.connection_device_id.as_deref(), Some("dev1"));
    assert_eq!(props.connection_module_id.as_deref(), Some("filter"));
    wait_until("the sink acknowledged its input", || {
        emu.device("dev1/sink").unwrap().pending_c2d == 0
    })
    .await;

    // An output no route takes is stored as telemetry, not delivered.
    f.publish(
        &output_topic("filter", "out2", &[]),
        QoS::AtLeastOnce,
        b"other",
    )
    .await;
    let t = emu
        .wait_for_telemetry(|m| m.body_text() == Some("other"), Duration::from_secs(10))
        .await
        .expect("the unrouted output is telemetry");
    assert_eq!(t.identity.module_id().map(|m| m.as_str()), Some("filter"));
    assert_eq!(t.properties.output_name.as_deref(), Some("out2"));
    // The routed one was not stored.
    assert!(
        !emu.telemetry()
            .iter()
            .any(|m| m.body_text() == Some("21.5"))
    );

    // Deleted: out1 is plain telemetry again.
    let r = http_json(h, "GET", "/routes/r1", serde_json::Value::Null).await;
    assert_eq!(r.json()["route"], ROUTE);
    let r = http_json(h, "DELETE", "/routes/r1", serde_json::Value::Null).await;
    assert_eq!(r.status, 204);
    let r = http_json(h, "DELETE", "/routes/r1", serde_json::Value::Null).await;
    assert_eq!(r.status, 404);
    let r = http_json(h, "GET", "/routes/r1", serde_json::Value::Null).await;
    assert_eq!(r.status, 404);
    f.publish(
        &output_topic("filter", "out1", &[]),
        QoS::AtLeastOnce,
        b"after",
    )
    .await;
    emu.wait_for_telemetry(|m| m.body_text() == Some("after"), Duration::from_secs(10))
        .await
        .expect("without the route, out1 is telemetry");
    // Routing happens in the step that stores the telemetry: nothing was
    // queued for the sink.
    assert_eq!(emu.device("dev1/sink").unwrap().pending_c2d, 0);
    drop(s);
    emu.shutdown().await;
}

#[tokio::test]
async fn routes_are_kept_across_a_restart_and_the_builder_refuses_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let emu = Emulator::builder()
        .data_dir(dir.path())
        .plain_mqtt(true)
        .route("r1", ROUTE)
        .start()
        .await
        .unwrap();
    emu.set_route(
        "up",
        "FROM /messages/modules/filter/outputs/* INTO $upstream",
    )
    .unwrap();
    emu.shutdown().await;

    let emu = Emulator::builder()
        .data_dir(dir.path())
        .plain_mqtt(true)
        .start()
        .await
        .unwrap();
    let names: Vec<String> = emu.routes().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["r1", "up"]);
    assert!(emu.remove_route("up").is_ok());
    assert!(matches!(
        emu.remove_route("up"),
        Err(EmulatorError::NotFound(_))
    ));
    emu.shutdown().await;

    match Emulator::builder()
        .in_memory()
        .route("r", "FROM /messages/modules/a/outputs/o INTO nowhere")
        .start()
        .await
    {
        Err(EmulatorError::Config(m)) => assert!(m.contains("nowhere"), "{m}"),
        other => panic!("expected a configuration error: {other:?}"),
    }
}

#[test]
fn the_cli_sets_routes_and_prints_them() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_iothub-emulator"))
        .args(["--in-memory", "--mqtt-port", "0", "--ws-port", "0"])
        .args(["--http-port", "0", "--dps-port", "0", "--dps-ws-port", "0"])
        .args(["--route", &format!("r1={ROUTE}")])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut route = None;
    while route.is_none() {
        let mut line = String::new();
        assert!(out.read_line(&mut line).unwrap() > 0, "exited early");
        route = line.trim_end().strip_prefix("route ").map(str::to_owned);
    }
    let _ = (child.kill(), child.wait());
    assert_eq!(route.unwrap(), format!("r1 {ROUTE}"));

    // An invalid route stops the start with the reason.
    let bad = Command::new(env!("CARGO_BIN_EXE_iothub-emulator"))
        .args(["--in-memory", "--mqtt-port", "0", "--ws-port", "0"])
        .args(["--http-port", "0", "--dps-port", "0", "--dps-ws-port", "0"])
        .args(["--route", "r1=FROM /messages/* INTO $upstream"])
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("/messages/*"));
    let bad = Command::new(env!("CARGO_BIN_EXE_iothub-emulator"))
        .args(["--in-memory", "--route", "no-equals-sign"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("NAME=ROUTE"));
}
