//! What the `provision` examples of every adapter share: the flags, the
//! JSON line they print, and the end-to-end test of a built example binary
//! against the emulator. Each example keeps only its runtime's way of
//! provisioning and sending.
//!
//! ```text
//! provision --id-scope S --registration-id R (--key K | --group-key K)
//!           [--global-endpoint HOST[:PORT]] [--hub-port P] [--ca-file PEM]
//!           [--websocket] [--plain] [--payload JSON] [--message TEXT]
//! ```

use std::io::Read;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use iothub_client::{ProvisioningOptions, Transport};
use iothub_proto::provisioning::Registration;
use serde_json::{Value, json};

use crate::Emu;

pub const USAGE: &str = "usage: provision --id-scope S --registration-id R (--key K | --group-key K) \
[--global-endpoint HOST[:PORT]] [--hub-port P] [--ca-file PEM] [--websocket] [--plain] \
[--payload JSON] [--message TEXT]";

/// What the command line asks for.
pub struct Args {
    /// How to provision (and connect afterwards).
    pub options: ProvisioningOptions,
    /// The telemetry message to send once connected.
    pub message: String,
}

/// Parses the process's arguments.
pub fn parse() -> Result<Args, String> {
    let (mut scope, mut rid, mut key, mut group_key) = (None, None, None, None);
    let (mut endpoint, mut hub_port, mut ca, mut payload) = (None, None, None, None);
    let mut transport = Transport::Mqtt;
    let mut message = String::from(r#"{"provisioned":true}"#);
    let mut args = std::env::args().skip(1);
    let value = |args: &mut dyn Iterator<Item = String>, flag: &str| {
        args.next().ok_or_else(|| format!("{flag} needs a value"))
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--id-scope" => scope = Some(value(&mut args, &a)?),
            "--registration-id" => rid = Some(value(&mut args, &a)?),
            "--key" => key = Some(value(&mut args, &a)?),
            "--group-key" => group_key = Some(value(&mut args, &a)?),
            "--global-endpoint" => endpoint = Some(value(&mut args, &a)?),
            "--hub-port" => {
                hub_port = Some(
                    value(&mut args, &a)?
                        .parse::<u16>()
                        .map_err(|_| "--hub-port: a number")?,
                );
            }
            "--ca-file" => ca = Some(value(&mut args, &a)?),
            "--payload" => {
                let text = value(&mut args, &a)?;
                payload = Some(
                    serde_json::from_str::<Value>(&text)
                        .map_err(|e| format!("--payload: not JSON: {e}"))?,
                );
            }
            "--message" => message = value(&mut args, &a)?,
            "--websocket" => transport = Transport::WebSocket,
            "--plain" => transport = Transport::PlainTcp,
            "-h" | "--help" => return Err(USAGE.into()),
            _ => return Err(format!("unknown argument {a}\n{USAGE}")),
        }
    }
    let scope = scope.ok_or(format!("--id-scope is required\n{USAGE}"))?;
    let rid = rid.ok_or(format!("--registration-id is required\n{USAGE}"))?;
    let mut options = match (key, group_key) {
        (Some(k), None) => ProvisioningOptions::symmetric_key(&scope, &rid, &k),
        (None, Some(g)) => ProvisioningOptions::group_key(&scope, &rid, &g),
        _ => return Err(format!("give one of --key and --group-key\n{USAGE}")),
    }
    .map_err(|e| e.to_string())?
    .with_transport(transport);
    if let Some(e) = endpoint {
        let (host, port) = split_host_port(&e)?;
        options = options.with_endpoint(&host).map_err(|e| e.to_string())?;
        if let Some(p) = port {
            options = options.with_port(p);
        }
    }
    if let Some(p) = hub_port {
        options = options.with_hub_port(p);
    }
    if let Some(path) = ca {
        let pem = std::fs::read(&path).map_err(|e| format!("--ca-file {path}: {e}"))?;
        options = options.with_ca_pem(pem);
    }
    if payload.is_some() {
        options = options.with_session(|c| c.with_payload(payload));
    }
    Ok(Args { options, message })
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(s: &str) -> Result<(String, Option<u16>), String> {
    let bad = || format!("--global-endpoint {s:?}: HOST[:PORT]");
    let port = |p: &str| p.parse::<u16>().map(Some).map_err(|_| bad());
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        return match after.strip_prefix(':') {
            Some(p) => Ok((host.to_owned(), port(p)?)),
            None if after.is_empty() => Ok((host.to_owned(), None)),
            None => Err(bad()),
        };
    }
    match s.split_once(':') {
        Some((host, p)) if !p.contains(':') => Ok((host.to_owned(), port(p)?)),
        _ => Ok((s.to_owned(), None)),
    }
}

/// The line printed for the assignment.
pub fn assignment_json(r: &Registration) -> Value {
    json!({
        "assignedHub": r.assigned_hub.as_str(),
        "deviceId": r.device_id.as_str(),
        "substatus": r.substatus.as_ref().map(|s| s.as_str()),
        "payload": r.payload,
    })
}

/// Logs to stderr (`RUST_LOG`, default `warn`), parses the arguments and
/// runs; exit code 2 for bad arguments, 1 for a failure.
pub fn main(run: impl FnOnce(Args) -> Result<(), Box<dyn std::error::Error>>) -> ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the binary for at most 30 s: success, stdout, stderr.
fn run(binary: &Path, args: Vec<String>) -> (bool, String, String) {
    let mut child = Command::new(binary)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the example");
    // Each pipe is read to its end on a thread of its own; both end when
    // the child exits.
    let read_all = |mut pipe: Box<dyn Read + Send>| {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            let _ = tx.send(text);
        });
        rx
    };
    let out = read_all(Box::new(child.stdout.take().unwrap()));
    let err = read_all(Box::new(child.stderr.take().unwrap()));
    let limit = Duration::from_secs(30);
    let (Ok(out), Ok(err)) = (out.recv_timeout(limit), err.recv_timeout(limit)) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the example did not end within 30 s");
    };
    let status = child.wait().expect("the example's status");
    (status.success(), out, err)
}

/// The end-to-end test of a built `provision` example against the
/// emulator: an individual key over TLS (the assignment printed, the
/// message received), a group key over WebSocket, a wrong key (exit 1
/// with the reason) and a usage error (exit 2).
pub fn provision_cli_end_to_end(binary: &Path) {
    assert!(
        binary.exists(),
        "{} not built: run `cargo build --examples`",
        binary.display()
    );
    let emu = Emu::start();
    let g = emu.create_enrollment_group("cli-fleet").unwrap();
    let e = emu.create_enrollment("cli-dev").unwrap();
    let ca_file =
        std::env::temp_dir().join(format!("iothub-provision-ca-{}.pem", emu.dps_addr().port()));
    std::fs::write(&ca_file, emu.ca_pem().unwrap()).unwrap();
    let received = |device: &str, body: &str| {
        let got = emu.wait_for_telemetry(
            |m| m.identity.device_id().as_str() == device && m.body_text() == Some(body),
            Duration::from_secs(10),
        );
        assert!(got.is_some(), "no {body:?} from {device}");
    };
    let common = |rid: &str| {
        vec![
            "--id-scope".to_owned(),
            emu.id_scope(),
            "--registration-id".to_owned(),
            rid.to_owned(),
            "--global-endpoint".to_owned(),
            format!("localhost:{}", emu.dps_addr().port()),
            "--hub-port".to_owned(),
            emu.mqtt_addr().port().to_string(),
            "--ca-file".to_owned(),
            ca_file.display().to_string(),
        ]
    };
    // An individual key.
    let mut args = common("cli-dev");
    args.extend([
        "--key".to_owned(),
        e.primary_key().unwrap(),
        "--message".to_owned(),
        "from the example".to_owned(),
    ]);
    let (ok, out, err) = run(binary, args);
    assert!(ok, "{out}\n{err}");
    let assignment: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(assignment["assignedHub"], "localhost");
    assert_eq!(assignment["deviceId"], "cli-dev");
    assert_eq!(assignment["substatus"], "initialAssignment");
    received("cli-dev", "from the example");
    // A group key, over WebSocket.
    let mut args = common("cli-member");
    args[5] = format!("localhost:{}", emu.dps_ws_addr().port());
    args[7] = emu.ws_addr().port().to_string();
    args.extend([
        "--group-key".to_owned(),
        g.primary_key().unwrap(),
        "--websocket".to_owned(),
    ]);
    let (ok, out, err) = run(binary, args);
    assert!(ok, "{out}\n{err}");
    received("cli-member", r#"{"provisioned":true}"#);
    // A wrong key: exit 1 with the reason.
    let mut args = common("cli-dev");
    args.extend(["--key".to_owned(), g.primary_key().unwrap()]);
    let (ok, _, err) = run(binary, args);
    assert!(!ok);
    assert!(err.contains("refused"), "{err}");
    // Usage errors: exit 2.
    let (ok, _, err) = run(binary, vec!["--id-scope".into(), "x".into()]);
    assert!(!ok && err.contains("usage"), "{err}");
    let _ = std::fs::remove_file(&ca_file);
}
