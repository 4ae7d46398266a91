//! An IoT Edge pipeline on the emulator with the tokio client: module
//! `filter` sends on output `raw`, a route delivers it to module
//! `alerts`' input `in`; `alerts` answers on its output `out`, which a
//! `$upstream` route sends to the hub as telemetry. Every hop keeps the
//! message's properties.

use std::time::Duration;

use iothub_emulator::{Emulator, EmulatorHandle};
use iothub_tokio::{Client, ClientOptions, Message, MessageProperties};

async fn within<T>(secs: u64, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("in time")
}

/// A connected client of module `dev1/{module}`.
async fn module(emu: &EmulatorHandle, module: &str) -> Client {
    let info = emu.create_module("dev1", module).unwrap();
    let options = ClientOptions::from_connection_string(&info.connection_string())
        .unwrap()
        .with_port(emu.mqtt_addr().port())
        .with_ca_pem(emu.ca_pem().unwrap().as_bytes().to_vec());
    let client = Client::new(options).unwrap();
    within(10, client.wait_connected()).await.unwrap();
    client
}

fn output(name: &str, app: &[(&str, &str)]) -> MessageProperties {
    let mut p = MessageProperties::new();
    p.output_name = Some(name.to_owned());
    for (k, v) in app {
        p.add_application(*k, *v).unwrap();
    }
    p
}

#[tokio::test]
async fn a_module_output_reaches_another_modules_input_and_goes_upstream_from_there() {
    let emu = Emulator::builder()
        .in_memory()
        .route(
            "raw-to-alerts",
            r#"FROM /messages/modules/filter/outputs/raw INTO BrokeredEndpoint("/modules/alerts/inputs/in")"#,
        )
        .route(
            "alerts-up",
            "FROM /messages/modules/alerts/outputs/out INTO $upstream",
        )
        .start()
        .await
        .unwrap();
    emu.create_device("dev1").unwrap();
    let alerts = module(&emu, "alerts").await;
    let mut inputs = alerts.input_messages().await.unwrap();
    let filter = module(&emu, "filter").await;

    filter
        .send_telemetry(Message::new(&b"98.6"[..]).with_properties(output("raw", &[("unit", "F")])))
        .await
        .unwrap();
    let got = within(10, inputs.recv()).await.expect("an input message");
    assert_eq!(got.input, "in");
    assert_eq!(got.message.payload.as_ref(), b"98.6");
    assert_eq!(
        got.message.properties.get_application("unit"),
        Some(Some("F"))
    );
    assert_eq!(
        got.message.properties.connection_module_id.as_deref(),
        Some("filter")
    );
    // The routed message was not stored as telemetry.
    assert!(emu.telemetry().is_empty());

    // The receiving module answers on its own output, routed upstream.
    alerts
        .send_telemetry(
            Message::new(&b"fever"[..]).with_properties(output("out", &[("level", "high")])),
        )
        .await
        .unwrap();
    let t = emu
        .wait_for_telemetry(|m| m.body_text() == Some("fever"), Duration::from_secs(10))
        .await
        .expect("upstream telemetry");
    assert_eq!(t.identity.module_id().map(|m| m.as_str()), Some("alerts"));
    assert_eq!(t.property("level"), Some("high"));
    assert_eq!(t.properties.output_name.as_deref(), Some("out"));
    emu.shutdown().await;
}
