//! Module input messages with the runtime-neutral client, under smol and
//! async-std: sent through the emulator's API, and routed from another
//! module's output by an IoT Edge route; each arrives on `input_messages`
//! with its input name, body and properties.

use std::future::Future;
use std::time::Duration;

use async_io::Timer;
use futures_lite::FutureExt as _;
use iothub_smol::{Client, ClientOptions, Message, MessageProperties};
use iothub_testkit::{Emu, wait_until};

#[derive(Clone, Copy)]
enum Rt {
    Smol,
    AsyncStd,
}

impl Rt {
    /// A client whose driver runs on this runtime.
    fn client(self, options: ClientOptions) -> Client {
        let (client, driver) = Client::new(options).unwrap();
        match self {
            Rt::Smol => smol::spawn(driver).detach(),
            Rt::AsyncStd => drop(async_std::task::spawn(driver)),
        }
        client
    }
}

/// `f` within `secs` seconds, or the test fails.
async fn within<T>(secs: u64, f: impl Future<Output = T>) -> T {
    f.or(async {
        Timer::after(Duration::from_secs(secs)).await;
        panic!("not within {secs} s")
    })
    .await
}

macro_rules! on_both_runtimes {
    ($($name:ident),* $(,)?) => {
        mod under_smol {
            $( #[test] fn $name() { smol::block_on(super::$name(super::Rt::Smol)) } )*
        }
        mod under_async_std {
            $( #[test] fn $name() { async_std::task::block_on(super::$name(super::Rt::AsyncStd)) } )*
        }
    };
}

on_both_runtimes!(
    input_messages_sent_through_the_emulator_api_arrive_with_their_properties,
    a_route_takes_one_modules_output_to_anothers_input,
);

/// A connected client of module `dev1/{module}` (created if needed).
async fn module_client(rt: Rt, emu: &Emu, module: &str) -> Client {
    emu.create_device("dev1").unwrap();
    let info = emu.create_module("dev1", module).unwrap();
    let options = ClientOptions::from_connection_string(&info.connection_string())
        .unwrap()
        .with_port(emu.mqtt_addr().port())
        .with_ca_pem(emu.ca());
    let client = rt.client(options);
    within(10, client.wait_connected()).await.unwrap();
    client
}

async fn input_messages_sent_through_the_emulator_api_arrive_with_their_properties(rt: Rt) {
    let emu = Emu::start();
    let sink = module_client(rt, &emu, "sink").await;
    let mut inputs = sink.input_messages().await.unwrap();

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
    assert!(wait_until(Duration::from_secs(10), || emu
        .device("dev1/sink")
        .unwrap()
        .pending_c2d
        == 0));
}

async fn a_route_takes_one_modules_output_to_anothers_input(rt: Rt) {
    let emu = Emu::start();
    emu.set_route(
        "r1",
        r#"FROM /messages/modules/filter/outputs/* INTO BrokeredEndpoint("/modules/sink/inputs/in1")"#,
    )
    .unwrap();
    let sink = module_client(rt, &emu, "sink").await;
    let mut inputs = sink.input_messages().await.unwrap();
    let filter = module_client(rt, &emu, "filter").await;

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
