//! The service API over HTTP: registry (devices, modules, keys, X.509),
//! twins, module twins and methods; and restarts on the same data
//! directory, in process and with the real binary.

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};

use common::*;
use iothub_emulator::Emulator;
use iothub_proto::mqtt::{Packet, QoS};
use iothub_proto::topic::{self, HubTopic};
use serde_json::json;

#[tokio::test]
async fn registry_create_read_list_delete() {
    let emu = start().await;
    let h = emu.http_addr();
    // Keys generated when absent; api-version accepted and ignored.
    let r = http_json(
        h,
        "PUT",
        "/devices/d1?api-version=2021-04-12",
        json!({"deviceId": "d1"}),
    )
    .await;
    assert_eq!(r.status, 200);
    let d1 = r.json();
    let primary = d1["authentication"]["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap();
    let secondary = d1["authentication"]["symmetricKey"]["secondaryKey"]
        .as_str()
        .unwrap();
    assert_eq!(primary.len(), 44);
    assert_ne!(primary, secondary);
    assert_eq!(d1["authentication"]["type"], "sas");
    assert_eq!(d1["connectionState"], "Disconnected");
    // Given keys are kept; an empty body works too.
    let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let r = http_json(
        h,
        "PUT",
        "/devices/d2",
        json!({"deviceId": "d2", "authentication": {"type": "sas",
            "symmetricKey": {"primaryKey": key, "secondaryKey": null}}}),
    )
    .await;
    assert_eq!(
        r.json()["authentication"]["symmetricKey"]["primaryKey"],
        key
    );
    assert_eq!(http(h, "PUT", "/devices/d3", &[], b"").await.status, 200);
    // Re-PUT without authentication keeps the keys.
    let again = http_json(h, "PUT", "/devices/d1", json!({"deviceId": "d1"})).await;
    assert_eq!(
        again.json()["authentication"]["symmetricKey"]["primaryKey"],
        primary
    );
    // Mismatched id, bad key, bad type: 400.
    assert_eq!(
        http_json(h, "PUT", "/devices/d4", json!({"deviceId": "other"}))
            .await
            .status,
        400
    );
    let bad = json!({"authentication": {"type": "sas", "symmetricKey": {"primaryKey": "!!"}}});
    assert_eq!(http_json(h, "PUT", "/devices/d4", bad).await.status, 400);
    assert_eq!(http(h, "PUT", "/devices/d4", &[], b"{").await.status, 400);
    // Read and list.
    let r = http(h, "GET", "/devices/d2", &[], b"").await;
    assert_eq!(r.json()["deviceId"], "d2");
    assert_eq!(http(h, "GET", "/devices/nope", &[], b"").await.status, 404);
    let list = http(h, "GET", "/devices", &[], b"").await.json();
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["deviceId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["d1", "d2", "d3"]);
    // Deleting a connected device closes its connection.
    let dev = emu.device("d1").unwrap();
    let mut c = Client::plain(emu.plain_addr().unwrap()).await;
    c.connect(&dev).await;
    assert_eq!(
        http(h, "GET", "/devices/d1", &[], b"").await.json()["connectionState"],
        "Connected"
    );
    assert_eq!(http(h, "DELETE", "/devices/d1", &[], b"").await.status, 204);
    c.expect_closed().await;
    assert_eq!(http(h, "DELETE", "/devices/d1", &[], b"").await.status, 404);
    assert_eq!(http(h, "GET", "/twins/d1", &[], b"").await.status, 404);
    emu.shutdown().await;
}

#[tokio::test]
async fn modules_have_identities_twins_and_methods() {
    let emu = start().await;
    let h = emu.http_addr();
    assert_eq!(
        http(h, "PUT", "/devices/edge/modules/m1", &[], b"")
            .await
            .status,
        404,
        "no device yet"
    );
    http(h, "PUT", "/devices/edge", &[], b"").await;
    let r = http_json(
        h,
        "PUT",
        "/devices/edge/modules/m1",
        json!({"deviceId": "edge", "moduleId": "m1"}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["moduleId"], "m1");
    let cs = r.json()["connectionString"].as_str().unwrap().to_owned();
    assert!(cs.contains(";ModuleId=m1;"));
    let list = http(h, "GET", "/devices/edge/modules", &[], b"")
        .await
        .json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    // A module connects, gets a desired patch and answers a method.
    let module = emu.device("edge/m1").unwrap();
    let mut c = Client::tls(&emu).await;
    c.connect(&module).await;
    c.subscribe(&[
        ("$iothub/twin/PATCH/properties/desired/#", QoS::AtMostOnce),
        ("$iothub/methods/POST/#", QoS::AtMostOnce),
        ("devices/edge/modules/m1/inputs/#", QoS::AtLeastOnce),
    ])
    .await;
    let r = http_json(
        h,
        "PATCH",
        "/twins/edge/modules/m1",
        json!({"properties": {"desired": {"k": 1}}}),
    )
    .await;
    assert_eq!(r.json()["moduleId"], "m1");
    let p = c.recv_publish().await;
    assert!(p.topic().as_str().ends_with("?$version=2"));
    assert_eq!(
        http(h, "GET", "/twins/edge/modules/m1", &[], b"")
            .await
            .json()["properties"]["desired"]["k"],
        1
    );
    assert_eq!(
        http(h, "GET", "/twins/edge", &[], b"").await.json()["properties"]["desired"],
        json!({"$version": 1})
    );
    let caller = tokio::spawn(async move {
        http_json(
            h,
            "POST",
            "/twins/edge/modules/m1/methods",
            json!({"methodName": "ping", "responseTimeoutInSeconds": 10}),
        )
        .await
    });
    let req = c.recv_publish().await;
    let Ok(HubTopic::MethodRequest { request_id, .. }) = topic::parse(req.topic().as_str()) else {
        panic!()
    };
    let rid = topic::RequestId::new(request_id);
    c.publish(
        &topic::method_response(200, &rid),
        QoS::AtMostOnce,
        b"\"pong\"",
    )
    .await;
    assert_eq!(
        caller.await.unwrap().json(),
        json!({"status": 200, "payload": "pong"})
    );
    // Module telemetry is listed under the module.
    c.publish(
        "devices/edge/modules/m1/messages/events/",
        QoS::AtMostOnce,
        b"from module",
    )
    .await;
    emu.wait_for_telemetry(|m| m.identity.module_id().is_some(), WAIT)
        .await
        .unwrap();
    let ev = http(
        h,
        "GET",
        "/devices/edge/modules/m1/messages/events",
        &[],
        b"",
    )
    .await
    .json();
    assert_eq!(
        ev[0]["systemProperties"]["iothub-connection-module-id"],
        "m1"
    );
    assert_eq!(
        http(h, "GET", "/devices/edge/messages/events", &[], b"")
            .await
            .json(),
        json!([])
    );
    // Deleting the device takes the module.
    assert_eq!(
        http(h, "DELETE", "/devices/edge", &[], b"").await.status,
        204
    );
    c.expect_closed().await;
    assert_eq!(
        http(h, "GET", "/devices/edge/modules/m1", &[], b"")
            .await
            .status,
        404
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_a_pending_300_s_method_call() {
    let emu = start().await;
    let h = emu.http_addr();
    let dev = emu.create_device("dev1").unwrap();
    let mut c = Client::tls(&emu).await;
    c.connect(&dev).await;
    c.subscribe(&[("$iothub/methods/POST/#", QoS::AtMostOnce)])
        .await;
    let caller = tokio::spawn(async move {
        http_json(
            h,
            "POST",
            "/twins/dev1/methods",
            json!({"methodName": "slow", "responseTimeoutInSeconds": 300}),
        )
        .await
    });
    // The device has the call and never answers.
    let req = c.recv_publish().await;
    assert!(
        req.topic()
            .as_str()
            .starts_with("$iothub/methods/POST/slow/")
    );
    // Shutdown does not wait for the call's 300 s deadline: the caller
    // gets 503 and shutdown returns (bounded here by the test's wait).
    tokio::time::timeout(WAIT, emu.shutdown())
        .await
        .expect("shutdown returned while a method call was pending");
    let reply = tokio::time::timeout(WAIT, caller)
        .await
        .expect("the caller was answered")
        .unwrap();
    assert_eq!(reply.status, 503);
}

#[tokio::test]
async fn twins_pending_c2d_and_sessions_survive_an_in_process_restart() {
    let dir = tempfile::tempdir().unwrap();
    let start_at = |dir: std::path::PathBuf| async move {
        Emulator::builder()
            .data_dir(dir)
            .plain_mqtt(true)
            .start()
            .await
            .unwrap()
    };
    let emu = start_at(dir.path().to_owned()).await;
    let ca = emu.ca_pem().unwrap().to_owned();
    // The database holds every key: its owner's only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let db = dir.path().join(iothub_emulator::DATABASE_FILE);
        let mode = std::fs::metadata(&db).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", db.display());
    }
    let dev = emu.create_device("dev1").unwrap();
    let mut c = Client::plain(emu.plain_addr().unwrap()).await;
    c.connect(&dev).await;
    c.subscribe(&[
        ("$iothub/twin/res/#", QoS::AtMostOnce),
        ("devices/dev1/messages/devicebound/#", QoS::AtLeastOnce),
    ])
    .await;
    c.publish(
        "$iothub/twin/PATCH/properties/reported/?$rid=1",
        QoS::AtMostOnce,
        br#"{"fw":"1"}"#,
    )
    .await;
    c.recv_publish().await;
    emu.update_desired("dev1", json!({"interval": 10})).unwrap();
    emu.update_tags("dev1", json!({"site": "lab"})).unwrap();
    emu.send_c2d("dev1", "delivered, not acknowledged", Default::default())
        .unwrap();
    let first = c.recv_publish().await;
    assert!(!first.dup());
    drop(c);
    wait_until("disconnected", || !emu.is_connected("dev1")).await;
    emu.send_c2d("dev1", "queued while offline", Default::default())
        .unwrap();
    emu.shutdown().await;

    let emu = start_at(dir.path().to_owned()).await;
    assert_eq!(emu.ca_pem().unwrap(), ca, "the CA is reused");
    let again = emu.device("dev1").unwrap();
    assert_eq!(again.primary_key(), dev.primary_key());
    assert_eq!(again.pending_c2d, 2);
    let twin = emu.twin("dev1").unwrap();
    assert_eq!(twin.desired["interval"], 10);
    assert_eq!(twin.reported["fw"], "1");
    assert_eq!(twin.tags["site"], "lab");
    assert_eq!((twin.desired_version, twin.reported_version), (2, 2));
    // The kept session delivers without a new SUBSCRIBE: DUP for the one
    // sent before.
    let mut c = Client::plain(emu.plain_addr().unwrap()).await;
    assert!(c.connect(&dev).await.session_present());
    let a = c.recv_publish().await;
    let b = c.recv_publish().await;
    assert!(a.dup() && &a.payload()[..] == b"delivered, not acknowledged");
    assert!(!b.dup() && &b.payload()[..] == b"queued while offline");
    for p in [a, b] {
        c.send(Packet::Puback(p.pid().unwrap())).await;
    }
    wait_until("acknowledged", || {
        emu.device("dev1").unwrap().pending_c2d == 0
    })
    .await;
    emu.sync();
    emu.shutdown().await;
    let emu = start_at(dir.path().to_owned()).await;
    assert_eq!(emu.device("dev1").unwrap().pending_c2d, 0);
    emu.shutdown().await;
}

/// The real binary, killed (SIGKILL) and started again on the same data
/// directory: what the service API acknowledged is there.
struct Proc {
    child: Child,
    lines: std::collections::HashMap<String, String>,
}

impl Proc {
    fn start(dir: &std::path::Path) -> Proc {
        let mut child = Command::new(env!("CARGO_BIN_EXE_iothub-emulator"))
            .args(["--data-dir"])
            .arg(dir)
            .args([
                "--mqtt-port",
                "0",
                "--ws-port",
                "0",
                "--http-port",
                "0",
                "--plain-mqtt-port",
                "0",
                "--dps-port",
                "0",
                "--dps-ws-port",
                "0",
            ])
            .args(["--device", "dev1", "--device", "dev2"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut lines = std::collections::HashMap::new();
        // Ten lines: mqtt, websocket, http, plain-mqtt, dps,
        // dps-websocket, id-scope, ca, two devices.
        for _ in 0..10 {
            let mut line = String::new();
            assert!(
                out.read_line(&mut line).unwrap() > 0,
                "the emulator exited early"
            );
            let line = line.trim_end();
            let (k, v) = line.split_once(' ').unwrap();
            let k = if k == "device" {
                let (id, cs) = v.split_once(' ').unwrap();
                lines.insert(format!("device {id}"), cs.to_owned());
                continue;
            } else {
                k
            };
            lines.insert(k.to_owned(), v.to_owned());
        }
        Proc { child, lines }
    }

    fn http(&self) -> std::net::SocketAddr {
        self.lines["http"].parse().unwrap()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn the_binary_prints_its_addresses_and_keeps_state_across_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let first = Proc::start(dir.path());
    assert!(first.lines["ca"].ends_with("ca.pem"));
    assert!(std::path::Path::new(&first.lines["ca"]).exists());
    for k in ["mqtt", "websocket", "plain-mqtt"] {
        let a: std::net::SocketAddr = first.lines[k].parse().unwrap();
        assert!(a.ip().is_loopback() && a.port() != 0);
    }
    let cs = first.lines["device dev1"].clone();
    assert!(cs.starts_with("HostName=localhost;DeviceId=dev1;SharedAccessKey="));
    let h = first.http();
    let r = http_json(
        h,
        "PATCH",
        "/twins/dev1",
        json!({"properties": {"desired": {"a": 1}}}),
    )
    .await;
    assert_eq!(r.status, 200);
    let r = http(
        h,
        "POST",
        "/devices/dev2/messages/deviceBound",
        &[],
        b"kept",
    )
    .await;
    assert_eq!(r.status, 204);
    drop(first); // SIGKILL: no graceful shutdown.

    let second = Proc::start(dir.path());
    assert_eq!(second.lines["device dev1"], cs, "keys survive");
    let h = second.http();
    let twin = http(h, "GET", "/twins/dev1", &[], b"").await.json();
    assert_eq!(
        twin["properties"]["desired"],
        json!({"a": 1, "$version": 2})
    );
    let dev2 = http(h, "GET", "/devices/dev2", &[], b"").await.json();
    assert_eq!(dev2["cloudToDeviceMessageCount"], 1);
}

#[tokio::test]
async fn non_loopback_addresses_are_refused_unless_allowed() {
    let err = Emulator::builder()
        .bind("192.0.2.1".parse().unwrap())
        .start()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("loopback"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_iothub-emulator"))
        .args(["--in-memory", "--host", "192.0.2.1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
    let help = Command::new(env!("CARGO_BIN_EXE_iothub-emulator"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--data-dir",
        "--in-memory",
        "--host",
        "--mqtt-port",
        "--ws-port",
        "--http-port",
        "--plain-mqtt-port",
        "--device",
        "--tls-cert",
        "--tls-key",
        "--allow-non-loopback",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}
