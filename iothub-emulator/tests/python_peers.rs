//! Real peers against the in-process emulator: a paho-mqtt device that
//! signs its own SAS token, and Microsoft's azure-iot-device SDK (over TCP
//! and over WebSocket, as a device and as IoT Edge modules). The Python scripts are in `tests/peers/`; the
//! virtualenv `.venv` at the repository root is made by
//! `scripts/install-peers.sh`. Without it the tests print `SKIPPED: …`,
//! unless `IOTHUB_REQUIRE_PEERS` is set (as CI does).

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{WAIT, wait_until};
use iothub_emulator::{Emulator, EmulatorHandle};
use iothub_proto::properties::MessageProperties;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader};
use tokio::process::{Child, Command};

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// The virtualenv's python, if it has both packages.
fn python() -> Option<PathBuf> {
    let py = repo_root().join(".venv/bin/python");
    let usable = py.exists()
        && std::process::Command::new(&py)
            .args(["-c", "import paho.mqtt.client, azure.iot.device"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if usable {
        return Some(py);
    }
    if std::env::var_os("IOTHUB_REQUIRE_PEERS").is_some() {
        panic!(
            "the Python peers are required (IOTHUB_REQUIRE_PEERS is set) but .venv with paho-mqtt and azure-iot-device is missing: run scripts/install-peers.sh"
        );
    }
    eprintln!(
        "SKIPPED: .venv with paho-mqtt and azure-iot-device is missing (scripts/install-peers.sh makes it)"
    );
    None
}

/// A running Python script whose stdout lines are collected.
struct Script {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Script {
    fn start(py: &Path, script: &str, env: &[(&str, String)]) -> Script {
        let mut cmd = Command::new(py);
        cmd.arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/peers")
                .join(script),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start python");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let sink = lines.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = out.next_line().await {
                sink.lock().unwrap().push(line);
            }
        });
        Script { child, lines }
    }

    fn line(&self, prefix: &str) -> Option<String> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .find(|l| l.starts_with(prefix))
            .cloned()
    }

    async fn wait_line(&self, prefix: &str) -> String {
        let t0 = tokio::time::Instant::now();
        loop {
            if let Some(l) = self.line(prefix) {
                return l;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "no line {prefix:?}; got {:?}",
                self.lines.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for the exit (bounded); panics with the output on failure.
    async fn finish(mut self) -> Vec<String> {
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("the script ends in time")
            .unwrap();
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err).await;
        }
        // Let the reader task take the last lines.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let lines = self.lines.lock().unwrap().clone();
        assert!(
            status.success(),
            "script failed: {status}\nstdout: {lines:#?}\nstderr: {err}"
        );
        lines
    }
}

async fn emulator() -> EmulatorHandle {
    Emulator::builder().in_memory().start().await.unwrap()
}

#[tokio::test]
async fn paho_mqtt_device_with_its_own_sas_token() {
    let Some(py) = python() else { return };
    let emu = emulator().await;
    let dev = emu.create_device("paho-dev").unwrap();
    let script = Script::start(
        &py,
        "paho_device.py",
        &[
            ("IOTHUB_HOST", emu.host_name()),
            ("IOTHUB_PORT", emu.mqtt_addr().port().to_string()),
            ("IOTHUB_CA", emu.ca_path().unwrap().display().to_string()),
            ("IOTHUB_DEVICE_ID", "paho-dev".into()),
            ("IOTHUB_DEVICE_KEY", dev.primary_key().unwrap()),
        ],
    );
    // The script sends telemetry once subscribed; then we send C2D.
    let m = emu
        .wait_for_telemetry(
            |m| m.property("source") == Some("paho"),
            Duration::from_secs(30),
        )
        .await
        .expect("telemetry from paho");
    assert_eq!(m.identity.device_id().as_str(), "paho-dev");
    assert_eq!(m.body_text(), Some(r#"{"temperature": 21.5}"#));
    assert_eq!(
        m.properties.content_type.as_deref(),
        Some("application/json")
    );
    let mut p = MessageProperties::new();
    p.message_id = Some("c2d-1".into());
    p.add_application("kind", "greeting").unwrap();
    emu.send_c2d("paho-dev", Bytes::from_static(b"hello paho"), p)
        .unwrap();
    let lines = script.finish().await;
    assert!(lines.contains(&"CONNACK 0".to_owned()), "{lines:?}");
    assert!(lines.contains(&"SUBACK [1]".to_owned()), "{lines:?}");
    let c2d = lines.iter().find(|l| l.starts_with("C2D ")).unwrap();
    assert!(
        c2d.contains("devices/paho-dev/messages/devicebound/"),
        "{c2d}"
    );
    assert!(c2d.contains("%24.mid=c2d-1"), "{c2d}");
    assert!(c2d.contains("kind=greeting"), "{c2d}");
    assert!(c2d.contains(" hello paho qos 1"), "{c2d}");
    wait_until("PUBACK removed the C2D message", || {
        emu.device("paho-dev").unwrap().pending_c2d == 0
    })
    .await;
    emu.shutdown().await;
}

#[tokio::test]
async fn azure_iot_device_sdk_full_device_flow() {
    let Some(py) = python() else { return };
    let emu = emulator().await;
    let dev = emu.create_device("sdk-dev").unwrap();
    emu.update_desired("sdk-dev", json!({"interval": 30}))
        .unwrap();
    let script = Script::start(
        &py,
        "azure_device.py",
        &[
            ("IOTHUB_CONNECTION_STRING", dev.connection_string()),
            ("IOTHUB_CA", emu.ca_path().unwrap().display().to_string()),
            ("IOTHUB_PORT", emu.mqtt_addr().port().to_string()),
            ("IOTHUB_WS_PORT", emu.ws_addr().port().to_string()),
        ],
    );
    let m = emu
        .wait_for_telemetry(
            |m| m.property("source") == Some("azure-sdk"),
            Duration::from_secs(30),
        )
        .await
        .expect("telemetry from the SDK");
    assert_eq!(m.body_text(), Some(r#"{"hello": "from azure-iot-device"}"#));
    assert_eq!(
        m.properties.content_type.as_deref(),
        Some("application/json")
    );
    assert_eq!(m.properties.content_encoding.as_deref(), Some("utf-8"));
    let twin_line = script.wait_line("TWIN ").await;
    let twin: Value = serde_json::from_str(&twin_line["TWIN ".len()..]).unwrap();
    assert_eq!(twin["desired"], json!({"interval": 30, "$version": 2}));
    assert_eq!(twin["reported"], json!({"$version": 1}));
    script.wait_line("PATCHED").await;
    let reported = emu.twin("sdk-dev").unwrap();
    assert_eq!(
        Value::Object(reported.reported),
        json!({"sdk": "python", "nested": {"a": 1}})
    );
    // Once the SDK has subscribed to everything, the service acts.
    script.wait_line("READY").await;
    let wanted = [
        "$iothub/twin/PATCH/properties/desired/#",
        "$iothub/methods/POST/#",
        "devices/sdk-dev/messages/devicebound/#",
    ];
    let t0 = tokio::time::Instant::now();
    while !wanted
        .iter()
        .all(|f| emu.subscriptions("sdk-dev").iter().any(|s| s == f))
    {
        assert!(
            t0.elapsed() < WAIT,
            "subscriptions: {:?}",
            emu.subscriptions("sdk-dev")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    emu.update_desired("sdk-dev", json!({"interval": 60}))
        .unwrap();
    let reply = emu
        .invoke_method(
            "sdk-dev",
            "reboot",
            json!({"delay": 2}),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 201);
    assert_eq!(reply.payload, json!({"echo": {"delay": 2}}));
    let mut p = MessageProperties::new();
    p.add_application("kind", "greeting").unwrap();
    emu.send_c2d("sdk-dev", Bytes::from_static(b"hello sdk"), p)
        .unwrap();
    let lines = script.finish().await;
    let has = |l: &str| lines.iter().any(|x| x == l);
    assert!(
        has(r#"DESIRED {"$version": 3, "interval": 60}"#),
        "{lines:#?}"
    );
    assert!(has(r#"METHOD reboot {"delay": 2}"#), "{lines:#?}");
    assert!(has(r#"C2D hello sdk {"kind": "greeting"}"#), "{lines:#?}");
    assert!(has("DONE"), "{lines:#?}");
    emu.shutdown().await;
}

#[tokio::test]
async fn azure_iot_device_sdk_over_websocket() {
    let Some(py) = python() else { return };
    let emu = emulator().await;
    let dev = emu.create_device("ws-dev").unwrap();
    let script = Script::start(
        &py,
        "azure_device.py",
        &[
            ("IOTHUB_CONNECTION_STRING", dev.connection_string()),
            ("IOTHUB_CA", emu.ca_path().unwrap().display().to_string()),
            ("IOTHUB_PORT", emu.mqtt_addr().port().to_string()),
            ("IOTHUB_WS_PORT", emu.ws_addr().port().to_string()),
            ("IOTHUB_WEBSOCKETS", "1".into()),
        ],
    );
    let lines = script.finish().await;
    assert!(
        lines.contains(&"CONNECTED websockets".to_owned()),
        "{lines:?}"
    );
    assert!(lines.iter().any(|l| l.starts_with("TWIN ")), "{lines:?}");
    assert_eq!(emu.telemetry().len(), 1);
    assert_eq!(emu.telemetry()[0].property("source"), Some("azure-sdk"));
    emu.shutdown().await;
}

/// Provisions with Microsoft's ProvisioningDeviceClient, then connects to
/// the hub with the result and sends telemetry.
async fn azure_sdk_provisions_then_connects(
    emu: &EmulatorHandle,
    py: &Path,
    registration_id: &str,
    key: String,
    websockets: bool,
) -> Vec<String> {
    let mut env = vec![
        ("DPS_ID_SCOPE", emu.id_scope()),
        ("DPS_REGISTRATION_ID", registration_id.to_owned()),
        ("DPS_KEY", key),
        ("IOTHUB_CA", emu.ca_path().unwrap().display().to_string()),
        ("DPS_PORT", emu.dps_addr().port().to_string()),
        ("DPS_WS_PORT", emu.dps_ws_addr().port().to_string()),
        ("IOTHUB_PORT", emu.mqtt_addr().port().to_string()),
        ("IOTHUB_WS_PORT", emu.ws_addr().port().to_string()),
    ];
    if websockets {
        env.push(("IOTHUB_WEBSOCKETS", "1".into()));
    }
    let lines = Script::start(py, "azure_provisioning.py", &env)
        .finish()
        .await;
    let m = emu
        .wait_for_telemetry(
            |m| {
                m.property("source") == Some("azure-sdk-dps")
                    && m.identity.device_id().as_str() == registration_id
            },
            Duration::from_secs(10),
        )
        .await
        .expect("telemetry from the provisioned SDK device");
    assert_eq!(m.body_text(), Some(r#"{"provisioned": true}"#));
    lines
}

#[tokio::test]
async fn azure_iot_device_sdk_provisions_then_connects() {
    let Some(py) = python() else { return };
    let emu = emulator().await;
    let e = emu.create_enrollment("sdk-reg").unwrap();
    let lines = azure_sdk_provisions_then_connects(
        &emu,
        &py,
        "sdk-reg",
        e.device_key("sdk-reg").unwrap(),
        false,
    )
    .await;
    assert!(lines.contains(&"STATUS assigned".to_owned()), "{lines:?}");
    assert!(
        lines.contains(&"ASSIGNED localhost sdk-reg initialAssignment".to_owned()),
        "{lines:?}"
    );
    assert!(lines.contains(&"CONNECTED tcp".to_owned()), "{lines:?}");
    assert!(lines.contains(&"DONE".to_owned()), "{lines:?}");
    assert_eq!(
        emu.device("sdk-reg").unwrap().primary_key(),
        e.primary_key()
    );
    // The SDK's registration payload reached DPS.
    assert_eq!(
        emu.dps_registration("sdk-reg").unwrap().request_payload,
        Some(json!({"source": "azure-iot-device"}))
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn azure_iot_device_sdk_provisions_from_a_group_over_websocket() {
    let Some(py) = python() else { return };
    let emu = emulator().await;
    let g = emu.create_enrollment_group("sdk-fleet").unwrap();
    let key = g.device_key("sdk-member-1").unwrap();
    let lines =
        azure_sdk_provisions_then_connects(&emu, &py, "sdk-member-1", key.clone(), true).await;
    assert!(
        lines.contains(&"ASSIGNED localhost sdk-member-1 initialAssignment".to_owned()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"CONNECTED websockets".to_owned()),
        "{lines:?}"
    );
    assert_eq!(emu.device("sdk-member-1").unwrap().primary_key(), Some(key));
    assert_eq!(
        emu.dps_registration("sdk-member-1")
            .unwrap()
            .enrollment_group_id
            .as_deref(),
        Some("sdk-fleet")
    );
    emu.shutdown().await;
}

/// Waits until `target` is subscribed to every filter of `wanted`.
async fn wait_subscribed(emu: &EmulatorHandle, target: &str, wanted: &[String]) {
    let t0 = tokio::time::Instant::now();
    while !wanted
        .iter()
        .all(|f| emu.subscriptions(target).iter().any(|s| s == f))
    {
        assert!(
            t0.elapsed() < WAIT,
            "{target} subscriptions: {:?}",
            emu.subscriptions(target)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn azure_iot_device_sdk_module_client_inputs_outputs_twin_and_methods() {
    let Some(py) = python() else { return };
    let emu = Emulator::builder()
        .in_memory()
        .route(
            "filter-to-sink",
            r#"FROM /messages/modules/filter/outputs/out1 INTO BrokeredEndpoint("/modules/sink/inputs/in1")"#,
        )
        .start()
        .await
        .unwrap();
    emu.create_device("edge-dev").unwrap();
    let filter = emu.create_module("edge-dev", "filter").unwrap();
    let sink = emu.create_module("edge-dev", "sink").unwrap();
    emu.update_desired("edge-dev/filter", json!({"threshold": 5}))
        .unwrap();
    let script = Script::start(
        &py,
        "azure_module.py",
        &[
            (
                "IOTHUB_MODULE_CONNECTION_STRING",
                filter.connection_string(),
            ),
            ("IOTHUB_SINK_CONNECTION_STRING", sink.connection_string()),
            ("IOTHUB_CA", emu.ca_path().unwrap().display().to_string()),
            ("IOTHUB_PORT", emu.mqtt_addr().port().to_string()),
        ],
    );
    // The module's twin, read and patched over the module's twin topics.
    let twin_line = script.wait_line("TWIN ").await;
    let twin: Value = serde_json::from_str(&twin_line["TWIN ".len()..]).unwrap();
    assert_eq!(twin["desired"], json!({"threshold": 5, "$version": 2}));
    assert_eq!(twin["reported"], json!({"$version": 1}));
    script.wait_line("PATCHED").await;
    assert_eq!(
        Value::Object(emu.twin("edge-dev/filter").unwrap().reported),
        json!({"module": "filter"})
    );
    assert_eq!(
        Value::Object(emu.twin("edge-dev").unwrap().reported),
        json!({}),
        "the device's twin is not the module's"
    );
    // Once both modules subscribed, the service acts.
    script.wait_line("READY").await;
    wait_subscribed(
        &emu,
        "edge-dev/filter",
        &[
            "$iothub/twin/PATCH/properties/desired/#".to_owned(),
            "$iothub/methods/POST/#".to_owned(),
            "devices/edge-dev/modules/filter/inputs/#".to_owned(),
        ],
    )
    .await;
    wait_subscribed(
        &emu,
        "edge-dev/sink",
        &["devices/edge-dev/modules/sink/inputs/#".to_owned()],
    )
    .await;
    let mut p = MessageProperties::new();
    p.add_application("kind", "reading").unwrap();
    p.add_application("unit", "C").unwrap();
    emu.send_module_input("edge-dev/filter", "in7", Bytes::from_static(b"21.5"), p)
        .unwrap();
    let reply = emu
        .invoke_method(
            "edge-dev/filter",
            "calibrate",
            json!({"offset": 1}),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.payload, json!({"module": "filter"}));
    emu.update_desired("edge-dev/filter", json!({"threshold": 7}))
        .unwrap();
    let lines = script.finish().await;
    let has = |l: &str| lines.iter().any(|x| x == l);
    assert!(
        has(r#"INPUT in7 21.5 {"kind": "reading", "unit": "C"}"#),
        "{lines:#?}"
    );
    assert!(has(r#"METHOD calibrate {"offset": 1}"#), "{lines:#?}");
    assert!(
        has(r#"DESIRED {"$version": 3, "threshold": 7}"#),
        "{lines:#?}"
    );
    // The output went through the route to the sink's input in1, with the
    // sending module as `$.cdid` / `$.cmid` (which the SDK, knowing no such
    // system property, hands over as custom properties).
    assert!(
        has(
            r#"SINK in1 filtered 21.5 {"$.cdid": "edge-dev", "$.cmid": "filter", "stage": "filtered"}"#
        ),
        "{lines:#?}"
    );
    assert!(has("DONE"), "{lines:#?}");
    wait_until("the sink's PUBACK removed the routed message", || {
        emu.device("edge-dev/sink").unwrap().pending_c2d == 0
    })
    .await;
    emu.shutdown().await;
}
