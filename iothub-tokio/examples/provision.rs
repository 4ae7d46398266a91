//! Provision with the Device Provisioning Service, connect to the hub it
//! assigns, send one telemetry message.
//!
//! ```text
//! provision --id-scope S --registration-id R (--key K | --group-key K)
//!           [--global-endpoint HOST[:PORT]] [--hub-port P] [--ca-file PEM]
//!           [--websocket] [--plain] [--payload JSON] [--message TEXT]
//! ```
//!
//! `--key` is the device's own key (an individual enrollment's, or one
//! already derived from a group key); `--group-key` is an enrollment
//! group's key, from which the device key is derived for the
//! registration id. `--global-endpoint` defaults to the global DPS
//! endpoint; for the emulator: `--global-endpoint localhost:8884
//! --ca-file iothub-emulator-data/tls/ca.pem` (its hub listens on 8883, the
//! default; `--hub-port` otherwise). Prints the assignment as JSON on
//! stdout. `RUST_LOG=info` shows the lifecycle on stderr.
//!
//! Against the emulator:
//!
//! ```text
//! cargo run -p iothub-emulator -- --enrollment dev1      # prints IdScope and SymmetricKey
//! cargo run -p iothub-tokio --example provision -- --id-scope 0ne00000001 \
//!     --registration-id dev1 --key <SymmetricKey> \
//!     --global-endpoint localhost:8884 --ca-file iothub-emulator-data/tls/ca.pem
//! ```

use std::process::ExitCode;
use std::time::Duration;

use iothub_tokio::{Message, ProvisioningOptions, Transport, provision};
use serde_json::{Value, json};

const USAGE: &str = "usage: provision --id-scope S --registration-id R (--key K | --group-key K) \
[--global-endpoint HOST[:PORT]] [--hub-port P] [--ca-file PEM] [--websocket] [--plain] \
[--payload JSON] [--message TEXT]";

struct Args {
    options: ProvisioningOptions,
    message: String,
}

fn parse() -> Result<Args, String> {
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

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let provisioned = provision(&args.options).await?;
    let r = &provisioned.registration;
    println!(
        "{}",
        json!({
            "assignedHub": r.assigned_hub.as_str(),
            "deviceId": r.device_id.as_str(),
            "substatus": r.substatus.as_ref().map(|s| s.as_str()),
            "payload": r.payload,
        })
    );
    let client = provisioned.connect()?;
    client.wait_connected().await?;
    client
        .send_telemetry(Message::new(args.message.into_bytes()))
        .await?;
    eprintln!("connected and sent one message");
    client.shutdown(Duration::from_secs(5)).await?;
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
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
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
