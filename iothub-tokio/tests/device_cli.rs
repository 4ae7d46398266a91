//! The `device` example binary end to end (built by `cargo test` with the
//! other examples), against the in-process emulator over TLS.

mod support;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use iothub_emulator::{Emulator, EmulatorHandle};
use iothub_proto::properties::MessageProperties;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Command;

fn binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    dir.join("examples")
        .join(format!("device{}", std::env::consts::EXE_SUFFIX))
}

struct Setup {
    emu: EmulatorHandle,
    cs: String,
    ca_file: PathBuf,
}

impl Setup {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(binary());
        c.env("IOTHUB_DEVICE_CONNECTION_STRING", &self.cs)
            .args([
                "--ca-file",
                self.ca_file.to_str().unwrap(),
                "--port",
                &self.emu.mqtt_addr().port().to_string(),
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
    support::init_tracing();
    if !binary().exists() {
        // `cargo test` builds the examples first; a filtered run may not.
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "-p", "iothub-tokio", "--example", "device"])
            .status()
            .expect("run cargo");
        assert!(
            status.success() && binary().exists(),
            "{} not built",
            binary().display()
        );
    }
    let emu = Emulator::builder().in_memory().start().await.unwrap();
    let cs = emu.create_device("cli").unwrap().connection_string();
    let ca_file =
        std::env::temp_dir().join(format!("iothub-cli-ca-{}.pem", emu.mqtt_addr().port()));
    std::fs::write(&ca_file, emu.ca_pem().unwrap()).unwrap();
    let s = Setup { emu, cs, ca_file };

    s.run(&["send", "hello", "--property", "a=b", "--count", "3"])
        .await;
    let got = s.emu.telemetry();
    assert_eq!(got.len(), 3);
    assert!(
        got.iter()
            .all(|m| m.body_text() == Some("hello") && m.property("a") == Some("b"))
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
    s.emu.update_desired("cli", json!({"mode": "eco"})).unwrap();
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
    s.emu.send_c2d("cli", &b"ping"[..], props).unwrap();
    let c2d = next().await;
    assert_eq!(c2d["type"], "c2d");
    assert_eq!(c2d["payload"], "ping");
    assert_eq!(c2d["properties"]["k"], "v");
    let invoke = async {
        loop {
            match s
                .emu
                .invoke_method("cli", "blink", json!({"n": 2}), Duration::from_secs(10))
                .await
            {
                Ok(reply) => return reply,
                Err(iothub_emulator::EmulatorError::NotConnected) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("{e}"),
            }
        }
    };
    let (reply, call) = tokio::join!(invoke, next());
    assert_eq!(call["type"], "method");
    assert_eq!(call["name"], "blink");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.payload, json!({"method": "blink"}));
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
