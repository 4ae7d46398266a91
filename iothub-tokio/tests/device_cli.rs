//! The `device` example binary end to end (built by `cargo test` with the
//! other examples), against the hub engine over TLS on loopback.

mod support;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use iothub_proto::auth::DeviceId;
use iothub_proto::properties::MessageProperties;
use serde_json::{Value, json};
use support::{HubServer, Pki, Serve};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Command;

fn binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    dir.join("examples")
        .join(format!("device{}", std::env::consts::EXE_SUFFIX))
}

struct Setup {
    server: HubServer,
    ca_file: PathBuf,
}

impl Setup {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(binary());
        c.env(
            "IOTHUB_DEVICE_CONNECTION_STRING",
            self.server.connection_string(),
        )
        .args([
            "--ca-file",
            self.ca_file.to_str().unwrap(),
            "--port",
            &self.server.port.to_string(),
        ])
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true);
        c
    }

    async fn run(&self, args: &[&str]) -> String {
        let out = tokio::time::timeout(Duration::from_secs(30), self.command(args).output())
            .await
            .expect("in time")
            .expect("run device");
        assert!(
            out.status.success(),
            "device {args:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

#[tokio::test]
async fn device_cli_end_to_end() {
    if !binary().exists() {
        // `cargo test` builds examples; a filtered build may not have.
        panic!(
            "{} not built: run `cargo build -p iothub-tokio --examples`",
            binary().display()
        );
    }
    let pki = Pki::new();
    let server = HubServer::start(Serve::Tls, Some(&pki)).await;
    let ca_file = std::env::temp_dir().join(format!("iothub-cli-ca-{}.pem", server.port));
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();
    let s = Setup { server, ca_file };
    let id = s.server.identity.clone();

    s.run(&["send", "hello", "--property", "a=b", "--count", "3"])
        .await;
    let got = s.server.with(|h| h.take_telemetry());
    assert_eq!(got.len(), 3);
    assert!(
        got.iter().all(|t| t.payload.as_ref() == b"hello"
            && t.properties.get_application("a") == Some(Some("b")))
    );

    let version: u64 = s
        .run(&["report", r#"{"fw":"2.0"}"#])
        .await
        .trim()
        .parse()
        .unwrap();
    assert!(version > 0);
    let twin: Value = serde_json::from_str(s.run(&["twin"]).await.trim()).unwrap();
    assert_eq!(twin["reported"]["fw"], "2.0");

    // listen: a desired update, a C2D message and a method call.
    s.server
        .with(|h| h.update_desired(&id, json!({"mode": "eco"})))
        .unwrap();
    let mut child = s
        .command(&["listen", "--seconds", "20"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = async || -> Value {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("a line in time")
            .unwrap()
            .expect("a line");
        serde_json::from_str(&line).unwrap()
    };
    let first = next().await;
    assert_eq!(first["type"], "desired");
    assert_eq!(first["desired"]["mode"], "eco");
    let mut props = MessageProperties::new();
    props.add_application("k", "v").unwrap();
    s.server
        .with(|h| {
            h.send_c2d(
                &DeviceId::new("dev1").unwrap(),
                props,
                bytes::Bytes::from_static(b"ping"),
            )
        })
        .unwrap();
    let c2d = next().await;
    assert_eq!(c2d["type"], "c2d");
    assert_eq!(c2d["payload"], "ping");
    assert_eq!(c2d["properties"]["k"], "v");
    let rid = loop {
        match s
            .server
            .with(|h| h.invoke_method(&id, "blink", bytes::Bytes::from_static(b"{}")))
        {
            Ok(rid) => break rid,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let call = next().await;
    assert_eq!(call["type"], "method");
    assert_eq!(call["name"], "blink");
    let answer = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(a) = s.server.with(|h| h.take_method_response(&rid)) {
                return a;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(answer.0, 200);
    assert_eq!(
        serde_json::from_slice::<Value>(&answer.1).unwrap(),
        json!({"method": "blink"})
    );
    let _ = child.kill().await;

    // A bad connection string is a clear error and a non-zero exit.
    let out = Command::new(binary())
        .args(["--connection-string", "HostName=x;DeviceId=d", "twin"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no credential"));
    let _ = std::fs::remove_file(&s.ca_file);
}
