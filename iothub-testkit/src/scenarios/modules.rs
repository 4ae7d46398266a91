//! Module input messages: sent through the emulator's API, and routed from
//! another module's output by an IoT Edge route; each arrives on
//! `input_messages` with its input name, body and properties.

use iothub_client::ClientOptions;
use iothub_proto::properties::MessageProperties;
use iothub_proto::session::Message;

use super::{Device, Stream as _, connected, eventually, within};
use crate::Emu;

/// A connected client of module `dev1/{module}` (created if needed).
async fn module_client<D: Device>(emu: &Emu, module: &str) -> D {
    emu.create_device("dev1").unwrap();
    let info = emu.create_module("dev1", module).unwrap();
    let options = ClientOptions::from_connection_string(&info.connection_string())
        .unwrap()
        .with_port(emu.mqtt_addr().port())
        .with_ca_pem(emu.ca());
    connected(options).await
}

pub async fn input_messages_sent_through_the_emulator_api_arrive_with_their_properties<
    D: Device,
>() {
    let emu = Emu::start();
    let sink: D = module_client(&emu, "sink").await;
    let mut inputs = sink.input_messages().await.unwrap();
    assert!(
        sink.c2d_messages().await.is_err(),
        "modules have no C2D messages"
    );

    let mut p = MessageProperties::new();
    p.message_id = Some("m-1".into());
    p.add_application("kind", "alert").unwrap();
    emu.send_module_input("dev1/sink", "control", &b"stop"[..], p)
        .unwrap();
    emu.send_module_input(
        "dev1/sink",
        "data",
        &b"second"[..],
        MessageProperties::new(),
    )
    .unwrap();

    let first = within(10, inputs.recv()).await.unwrap();
    assert_eq!(first.input, "control");
    assert_eq!(first.message.payload.as_ref(), b"stop");
    assert_eq!(first.message.properties.message_id.as_deref(), Some("m-1"));
    assert_eq!(
        first.message.properties.get_application("kind"),
        Some(Some("alert"))
    );
    let second = within(10, inputs.recv()).await.unwrap();
    assert_eq!(second.input, "data");
    assert_eq!(second.message.payload.as_ref(), b"second");
    eventually(10, || emu.device("dev1/sink").unwrap().pending_c2d == 0).await;
}

pub async fn a_route_takes_one_modules_output_to_anothers_input<D: Device>() {
    let emu = Emu::start();
    emu.set_route(
        "r1",
        r#"FROM /messages/modules/filter/outputs/* INTO BrokeredEndpoint("/modules/sink/inputs/in1")"#,
    )
    .unwrap();
    let sink: D = module_client(&emu, "sink").await;
    let mut inputs = sink.input_messages().await.unwrap();
    let filter: D = module_client(&emu, "filter").await;

    let mut p = MessageProperties::new();
    p.output_name = Some("anything".into());
    p.add_application("temp", "high").unwrap();
    filter
        .send_telemetry(Message::new(&b"21.5"[..]).with_properties(p))
        .await
        .unwrap();
    let got = within(10, inputs.recv()).await.unwrap();
    assert_eq!(got.input, "in1");
    assert_eq!(got.message.payload.as_ref(), b"21.5");
    let props = &got.message.properties;
    assert_eq!(props.get_application("temp"), Some(Some("high")));
    assert_eq!(props.connection_module_id.as_deref(), Some("filter"));
    // Routed, so not stored as telemetry (the route ran before the PUBACK
    // that `send_telemetry` waited for).
    assert!(emu.telemetry().is_empty());
}
