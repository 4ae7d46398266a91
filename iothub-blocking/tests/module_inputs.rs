//! Module input messages with the blocking client: sent through the
//! emulator's API, and routed from another module's output by an IoT Edge
//! route; each arrives on `input_messages` with its input name, body and
//! properties.

use std::time::Duration;

use iothub_blocking::{Client, ClientOptions, Message, MessageProperties};
use iothub_testkit::{Emu, wait_until};

const T: Duration = Duration::from_secs(10);

/// A connected client of module `dev1/{module}` (created if needed).
fn module_client(emu: &Emu, module: &str) -> Client {
    emu.create_device("dev1").unwrap();
    let info = emu.create_module("dev1", module).unwrap();
    let options = ClientOptions::from_connection_string(&info.connection_string())
        .unwrap()
        .with_port(emu.mqtt_addr().port())
        .with_ca_pem(emu.ca());
    let client = Client::new(options).unwrap();
    client.wait_connected(T).unwrap();
    client
}

#[test]
fn input_messages_sent_through_the_emulator_api_arrive_with_their_properties() {
    let emu = Emu::start();
    let sink = module_client(&emu, "sink");
    let inputs = sink.input_messages().unwrap();

    let mut p = MessageProperties::new();
    p.message_id = Some("m-1".into());
    p.content_type = Some("application/json".into());
    p.add_application("kind", "alert").unwrap();
    emu.send_module_input("dev1/sink", "control", &br#"{"cmd":"stop"}"#[..], p)
        .unwrap();
    emu.send_module_input(
        "dev1/sink",
        "data",
        &b"second"[..],
        MessageProperties::new(),
    )
    .unwrap();

    let first = inputs.recv_timeout(T).unwrap();
    assert_eq!(first.input, "control");
    assert_eq!(first.message.payload.as_ref(), br#"{"cmd":"stop"}"#);
    assert_eq!(first.message.properties.message_id.as_deref(), Some("m-1"));
    assert_eq!(
        first.message.properties.content_type.as_deref(),
        Some("application/json")
    );
    assert_eq!(
        first.message.properties.get_application("kind"),
        Some(Some("alert"))
    );
    let second = inputs.recv_timeout(T).unwrap();
    assert_eq!(second.input, "data");
    assert_eq!(second.message.payload.as_ref(), b"second");
    // Handed to the stream, so acknowledged to the hub.
    assert!(wait_until(T, || emu
        .device("dev1/sink")
        .unwrap()
        .pending_c2d
        == 0));
}

#[test]
fn a_route_takes_one_modules_output_to_anothers_input() {
    let emu = Emu::start();
    emu.set_route(
        "r1",
        r#"FROM /messages/modules/filter/outputs/out1 INTO BrokeredEndpoint("/modules/sink/inputs/in1")"#,
    )
    .unwrap();
    let sink = module_client(&emu, "sink");
    let inputs = sink.input_messages().unwrap();
    let filter = module_client(&emu, "filter");

    let mut p = MessageProperties::new();
    p.output_name = Some("out1".into());
    p.add_application("temp", "high").unwrap();
    filter
        .send_telemetry(Message::new(&b"21.5"[..]).with_properties(p))
        .unwrap();
    let got = inputs.recv_timeout(T).unwrap();
    assert_eq!(got.input, "in1");
    assert_eq!(got.message.payload.as_ref(), b"21.5");
    let props = &got.message.properties;
    assert_eq!(props.get_application("temp"), Some(Some("high")));
    assert_eq!(props.connection_module_id.as_deref(), Some("filter"));
    assert_eq!(props.connection_device_id.as_deref(), Some("dev1"));

    // Another output is not routed: it is telemetry (stored before the
    // PUBACK that `send_telemetry` waited for).
    let mut p = MessageProperties::new();
    p.output_name = Some("out2".into());
    filter
        .send_telemetry(Message::new(&b"unrouted"[..]).with_properties(p))
        .unwrap();
    let t = emu.telemetry();
    let last = t.last().unwrap();
    assert_eq!(last.body_text(), Some("unrouted"));
    assert!(!t.iter().any(|m| m.body_text() == Some("21.5")));
}
