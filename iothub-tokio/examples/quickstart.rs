//! Quickstart: a device against the in-process emulator, no setup needed.
//!
//! ```sh
//! cargo run -p iothub-tokio --example quickstart
//! ```
//!
//! Starts `iothub_emulator` on free loopback ports with a generated CA,
//! creates a device, then runs the device through telemetry, a twin read
//! and a reported-properties update, a desired-properties update, a
//! direct method and a cloud-to-device message, printing each step.
//! Against a real hub, the client part is the same: only the connection
//! string (and no extra CA) changes. `RUST_LOG=info` shows the
//! connection lifecycle.

use std::time::Duration;

use iothub_emulator::Emulator;
use iothub_tokio::{Client, ClientOptions, DesiredUpdate, Message, MessageProperties};
use serde_json::json;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

#[tokio::main]
async fn main() -> Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .try_init();
    tokio::time::timeout(Duration::from_secs(30), run())
        .await
        .map_err(|_| "the quickstart took more than 30 s")?
}

async fn run() -> Result<()> {
    // 1. An emulator in this process: MQTT over TLS on a free port.
    let emulator = Emulator::builder().in_memory().start().await?;
    let device = emulator.create_device("quickstart-device")?;
    println!("1. emulator listening on {} (TLS)", emulator.mqtt_addr());
    println!(
        "   device connection string: {}",
        device.connection_string()
    );

    // 2. The client: the connection string, plus the emulator's port and CA.
    let options = ClientOptions::from_connection_string(&device.connection_string())?
        .with_port(emulator.mqtt_addr().port())
        .with_ca_pem(emulator.ca_pem().ok_or("no CA")?.as_bytes().to_vec());
    let client = Client::builder(options).build().await?;
    client.wait_connected().await?;
    println!("2. connected");

    // 3. Telemetry: resolves when the hub acknowledged it (PUBACK).
    let mut props = MessageProperties::new();
    props.content_type = Some("application/json".into());
    props.content_encoding = Some("utf-8".into());
    client
        .send_telemetry(Message::new(&br#"{"temperature":21.5}"#[..]).with_properties(props))
        .await?;
    let received = emulator.telemetry().len();
    println!("3. telemetry acknowledged; the emulator holds {received} message(s)");

    // 4. Twin: report a property, then read the twin.
    let version = client
        .update_reported(&json!({"firmware": "1.0.0", "battery": 87}))
        .await?;
    let twin = client.get_twin().await?;
    println!(
        "4. reported version {version}; twin reported = {}",
        twin.reported
    );

    // 5. Desired properties: the current state, then the service's update.
    let mut desired = client.desired_updates().await?;
    if let Some(DesiredUpdate::Full { desired, version }) = desired.recv().await {
        println!("5. desired state v{version}: {desired}");
    }
    emulator.update_desired("quickstart-device", json!({"interval": 10}))?;
    if let Some(DesiredUpdate::Patch { patch, version }) = desired.recv().await {
        println!("   desired patch v{version}: {patch}");
    }

    // 6. A direct method, answered by the device.
    let mut methods = client.method_requests().await?;
    let device_side = tokio::spawn(async move {
        if let Some(call) = methods.recv().await {
            println!(
                "6. method {:?} called with {}",
                call.name,
                String::from_utf8_lossy(&call.payload)
            );
            call.respond(200, &br#"{"rebooting":true}"#[..]).await?;
        }
        Ok::<_, iothub_tokio::Error>(())
    });
    let reply = loop {
        // The method subscription may still be on its way.
        match emulator
            .invoke_method(
                "quickstart-device",
                "reboot",
                json!({"delay": 0}),
                Duration::from_secs(10),
            )
            .await
        {
            Ok(reply) => break reply,
            Err(iothub_emulator::EmulatorError::NotConnected) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    device_side.await??;
    println!(
        "   the service got status {} and {}",
        reply.status, reply.payload
    );

    // 7. A cloud-to-device message.
    let mut c2d = client.c2d_messages().await?;
    let mut props = MessageProperties::new();
    props.add_application("command", "blink")?;
    emulator.send_c2d("quickstart-device", &b"hello, device"[..], props)?;
    if let Some(message) = c2d.recv().await {
        println!(
            "7. cloud-to-device message {:?} with properties {:?}",
            String::from_utf8_lossy(&message.payload),
            message.properties.application()
        );
    }

    // 8. Shut down: in-flight work is flushed, then DISCONNECT.
    client.shutdown(Duration::from_secs(5)).await?;
    emulator.shutdown().await;
    println!("8. done");
    Ok(())
}
