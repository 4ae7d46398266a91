//! What the `device` examples of every adapter share: the flags, the
//! commands, and the JSON lines they print; and the end-to-end test of a
//! built example binary against the emulator. Each example keeps only its
//! runtime's way of running the client.
//!
//! ```text
//! device [--connection-string CS] [--ca-file PEM] [--port P] [--websocket] [--plain] <command>
//!   send <payload> [--property k=v]... [--count N]   exits 0 once every message is acknowledged
//!   twin                                             prints the twin JSON
//!   report <json>                                    prints the new reported version
//!   listen [--seconds N]                             prints C2D messages, desired updates and
//!                                                    method calls as JSON lines; answers each
//!                                                    method with 200 {"method":"<name>"}
//! ```

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use iothub_client::{ClientOptions, DesiredUpdate, Transport};
use iothub_proto::properties::MessageProperties;
use iothub_proto::session::{InboundMessage, Message, Twin};
use serde_json::{Value, json};

use crate::Emu;

pub const USAGE: &str = "usage: device [--connection-string CS] [--ca-file PEM] [--port P] [--websocket] [--plain] \
(send <payload> [--property k=v]... [--count N] | twin | report <json> | listen [--seconds N])";

/// A command of the CLI.
#[allow(clippy::large_enum_variant)] // one value per process
pub enum Cmd {
    /// Send `count` messages with these properties.
    Send { message: Message, count: u32 },
    /// Print the twin.
    Twin,
    /// Patch reported properties and print the version.
    Report(Value),
    /// Print inbound items for a while (or forever).
    Listen(Option<Duration>),
}

/// Parses the process arguments (and `IOTHUB_DEVICE_CONNECTION_STRING`).
pub fn parse() -> Result<(ClientOptions, Cmd), String> {
    let mut cs = std::env::var("IOTHUB_DEVICE_CONNECTION_STRING").ok();
    let (mut ca, mut port, mut transport) = (None, None, Transport::Mqtt);
    let mut words = Vec::new();
    let (mut properties, mut count, mut seconds) = (MessageProperties::new(), 1u64, None);
    let mut args = std::env::args().skip(1);
    let value = |args: &mut dyn Iterator<Item = String>, flag: &str| {
        args.next().ok_or_else(|| format!("{flag} needs a value"))
    };
    let number = |v: String, flag: &str| v.parse::<u64>().map_err(|_| format!("{flag}: a number"));
    while let Some(a) = args.next() {
        match a.as_str() {
            "--connection-string" => cs = Some(value(&mut args, &a)?),
            "--ca-file" => ca = Some(value(&mut args, &a)?),
            "--port" => port = Some(number(value(&mut args, &a)?, &a)?),
            "--websocket" => transport = Transport::WebSocket,
            "--plain" => transport = Transport::PlainTcp,
            "--property" => {
                let kv = value(&mut args, &a)?;
                let (k, v) = kv.split_once('=').ok_or("--property takes k=v")?;
                properties
                    .add_application(k.to_owned(), v.to_owned())
                    .map_err(|e| format!("--property {kv}: {e}"))?;
            }
            "--count" => count = number(value(&mut args, &a)?, &a)?,
            "--seconds" => seconds = Some(number(value(&mut args, &a)?, &a)?),
            "-h" | "--help" => return Err(USAGE.into()),
            _ if a.starts_with("--") => return Err(format!("unknown option {a}\n{USAGE}")),
            _ => words.push(a),
        }
    }
    let cs = cs.ok_or(
        "no connection string: pass --connection-string or set IOTHUB_DEVICE_CONNECTION_STRING",
    )?;
    let mut options = ClientOptions::from_connection_string(&cs)
        .map_err(|e| e.to_string())?
        .with_transport(transport);
    if let Some(p) = port {
        options = options.with_port(u16::try_from(p).map_err(|_| "--port: a port number")?);
    }
    if let Some(path) = ca {
        let pem = std::fs::read(&path).map_err(|e| format!("--ca-file {path}: {e}"))?;
        options = options.with_ca_pem(pem);
    }
    let mut words = words.into_iter();
    let cmd = match (words.next().as_deref(), words.next()) {
        (Some("send"), Some(payload)) => Cmd::Send {
            message: Message::new(payload.into_bytes()).with_properties(properties),
            count: u32::try_from(count).map_err(|_| "--count: too large")?,
        },
        (Some("twin"), None) => Cmd::Twin,
        (Some("report"), Some(json)) => {
            Cmd::Report(serde_json::from_str(&json).map_err(|e| format!("report: {e}"))?)
        }
        (Some("listen"), None) => Cmd::Listen(seconds.map(Duration::from_secs)),
        _ => return Err(USAGE.into()),
    };
    Ok((options, cmd))
}

/// Logs to stderr (`RUST_LOG`, default `warn`), parses the arguments and
/// runs the command; exit code 2 for bad arguments, 1 for a failure.
pub fn main(
    run: impl FnOnce(ClientOptions, Cmd) -> Result<(), Box<dyn std::error::Error>>,
) -> ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let (options, cmd) = match parse() {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(options, cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The line for a twin.
pub fn twin_json(twin: &Twin) -> Value {
    json!({"desired": twin.desired, "reported": twin.reported})
}

/// The line for a C2D message.
pub fn c2d_json(m: &InboundMessage) -> Value {
    let mut props = serde_json::Map::new();
    if let Some(id) = &m.properties.message_id {
        props.insert("$.mid".into(), id.clone().into());
    }
    for (k, v) in m.properties.application_iter() {
        props.insert(k.into(), v.map_or(Value::Null, Value::from));
    }
    json!({
        "type": "c2d",
        "payload": String::from_utf8_lossy(&m.payload),
        "properties": props,
    })
}

/// The line for a desired update.
pub fn desired_json(d: &DesiredUpdate) -> Option<Value> {
    Some(match d {
        DesiredUpdate::Full { desired, version } => {
            json!({"type": "desired", "full": true, "version": version, "desired": desired})
        }
        DesiredUpdate::Patch { patch, version } => {
            json!({"type": "desired", "full": false, "version": version, "desired": patch})
        }
        _ => return None,
    })
}

/// The line for a method call, and the body of its 200 answer.
pub fn method_json(name: &str, payload: &[u8]) -> (Value, Vec<u8>) {
    (
        json!({"type": "method", "name": name, "payload": String::from_utf8_lossy(payload)}),
        json!({"method": name}).to_string().into_bytes(),
    )
}

/// The path of an example binary built by `cargo test` beside the test
/// executable running now.
pub fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    dir.join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

/// The end-to-end test of a built `device` example against the emulator
/// over TLS: send with properties and a count, report, twin, then listen
/// (a desired update, a C2D message, a method call), then a bad
/// connection string.
pub fn device_cli_end_to_end(binary: &Path) {
    assert!(
        binary.exists(),
        "{} not built: run `cargo build --examples`",
        binary.display()
    );
    let emu = Emu::start();
    let cs = emu.create_device("cli").unwrap().connection_string();
    let ca_file =
        std::env::temp_dir().join(format!("iothub-cli-ca-{}.pem", emu.mqtt_addr().port()));
    std::fs::write(&ca_file, emu.ca_pem().unwrap()).unwrap();
    let port = emu.mqtt_addr().port().to_string();
    let command = |args: &[&str]| {
        let mut c = Command::new(binary);
        c.env("IOTHUB_DEVICE_CONNECTION_STRING", &cs)
            .args(["--ca-file", ca_file.to_str().unwrap(), "--port", &port])
            .args(args)
            .stdin(Stdio::null());
        c
    };
    let run = |args: &[&str]| {
        let out = command(args).output().expect("run device");
        assert!(
            out.status.success(),
            "device {args:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };

    run(&["send", "hello", "--property", "a=b", "--count", "3"]);
    let got = emu.telemetry();
    assert_eq!(got.len(), 3);
    assert!(
        got.iter()
            .all(|m| m.body_text() == Some("hello") && m.property("a") == Some("b"))
    );
    let version: u64 = run(&["report", r#"{"fw":"2.0"}"#]).trim().parse().unwrap();
    assert!(version > 0);
    let twin: Value = serde_json::from_str(run(&["twin"]).trim()).unwrap();
    assert_eq!(twin["reported"]["fw"], "2.0");

    emu.update_desired("cli", json!({"mode": "eco"})).unwrap();
    let mut child = command(&["listen", "--seconds", "20"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Lines arrive through a thread, so every wait has a bound.
    let (tx, lines) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let next = || -> Value {
        let line = lines
            .recv_timeout(Duration::from_secs(10))
            .expect("a line in time");
        serde_json::from_str(&line).unwrap()
    };
    let first = next();
    assert_eq!(first["type"], "desired");
    assert_eq!(first["desired"]["mode"], "eco");
    let mut props = MessageProperties::new();
    props.add_application("k", "v").unwrap();
    emu.send_c2d("cli", &b"ping"[..], props).unwrap();
    let c2d = next();
    assert_eq!(c2d["type"], "c2d");
    assert_eq!(c2d["payload"], "ping");
    assert_eq!(c2d["properties"]["k"], "v");
    let reply = emu.invoke_when_subscribed("cli", "blink", json!({"n": 2}));
    let call = next();
    let reply = emu.block_on(reply).unwrap();
    assert_eq!(call["type"], "method");
    assert_eq!(call["name"], "blink");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.payload, json!({"method": "blink"}));
    let _ = child.kill();
    let _ = child.wait();

    // A restart with CleanSession 0: the hub delivers a message on the
    // subscription it kept to a process that never asks for C2D (`twin`).
    // That process must not acknowledge it, so the next one that listens
    // gets it.
    emu.send_c2d("cli", &b"while away"[..], MessageProperties::new())
        .unwrap();
    run(&["twin"]);
    assert_eq!(
        emu.device("cli").unwrap().pending_c2d,
        1,
        "a process without a C2D stream acknowledged a message"
    );
    let mut child = command(&["listen", "--seconds", "20"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let c2d = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(10))
            .expect("a line in time");
        let v: Value = serde_json::from_str(&line).unwrap();
        if v["type"] == "c2d" {
            break v;
        }
    };
    assert_eq!(c2d["payload"], "while away");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while emu.device("cli").unwrap().pending_c2d != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "not acknowledged once taken"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();

    let out = Command::new(binary)
        .args(["--connection-string", "HostName=x;DeviceId=d", "twin"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no credential"));
    let _ = std::fs::remove_file(&ca_file);
}
