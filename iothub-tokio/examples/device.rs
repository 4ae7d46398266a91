//! A small device CLI for a real hub or the emulator.
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
//!
//! The connection string may come from `IOTHUB_DEVICE_CONNECTION_STRING`.
//! `RUST_LOG=info` shows the connection lifecycle on stderr.

use std::process::ExitCode;
use std::time::Duration;

use iothub_tokio::{
    Client, ClientOptions, DesiredUpdate, InboundMessage, Message, MessageProperties, Transport,
};
use serde_json::{Value, json};

const USAGE: &str = "usage: device [--connection-string CS] [--ca-file PEM] [--port P] [--websocket] [--plain] \
(send <payload> [--property k=v]... [--count N] | twin | report <json> | listen [--seconds N])";

enum Cmd {
    Send {
        payload: String,
        properties: Vec<(String, String)>,
        count: u32,
    },
    Twin,
    Report(String),
    Listen(Option<u64>),
}

fn parse() -> Result<(ClientOptions, Cmd), String> {
    let mut cs = std::env::var("IOTHUB_DEVICE_CONNECTION_STRING").ok();
    let (mut ca, mut port, mut transport) = (None, None, Transport::Mqtt);
    let mut words = Vec::new();
    let (mut properties, mut count, mut seconds) = (Vec::new(), 1u32, None);
    let mut args = std::env::args().skip(1);
    let value = |args: &mut dyn Iterator<Item = String>, flag: &str| {
        args.next().ok_or_else(|| format!("{flag} needs a value"))
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--connection-string" => cs = Some(value(&mut args, &a)?),
            "--ca-file" => ca = Some(value(&mut args, &a)?),
            "--port" => {
                port = Some(
                    value(&mut args, &a)?
                        .parse()
                        .map_err(|_| "--port: a number")?,
                );
            }
            "--websocket" => transport = Transport::WebSocket,
            "--plain" => transport = Transport::PlainTcp,
            "--property" => {
                let kv = value(&mut args, &a)?;
                let (k, v) = kv.split_once('=').ok_or("--property takes k=v")?;
                properties.push((k.to_owned(), v.to_owned()));
            }
            "--count" => {
                count = value(&mut args, &a)?
                    .parse()
                    .map_err(|_| "--count: a number")?;
            }
            "--seconds" => {
                seconds = Some(
                    value(&mut args, &a)?
                        .parse()
                        .map_err(|_| "--seconds: a number")?,
                );
            }
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
        options = options.with_port(p);
    }
    if let Some(path) = ca {
        let pem = std::fs::read(&path).map_err(|e| format!("--ca-file {path}: {e}"))?;
        options = options.with_ca_pem(pem);
    }
    let mut words = words.into_iter();
    let cmd = match (words.next().as_deref(), words.next()) {
        (Some("send"), Some(payload)) => Cmd::Send {
            payload,
            properties,
            count,
        },
        (Some("twin"), None) => Cmd::Twin,
        (Some("report"), Some(json)) => Cmd::Report(json),
        (Some("listen"), None) => Cmd::Listen(seconds),
        _ => return Err(USAGE.into()),
    };
    Ok((options, cmd))
}

fn message_json(kind: &str, m: &InboundMessage, extra: Option<(&str, &str)>) -> Value {
    let mut props = serde_json::Map::new();
    if let Some(id) = &m.properties.message_id {
        props.insert("$.mid".into(), id.clone().into());
    }
    for (k, v) in m.properties.application_iter() {
        props.insert(k.into(), v.map_or(Value::Null, Value::from));
    }
    let mut out = json!({
        "type": kind,
        "payload": String::from_utf8_lossy(&m.payload),
        "properties": props,
    });
    if let Some((k, v)) = extra {
        out[k] = v.into();
    }
    out
}

async fn run(options: ClientOptions, cmd: Cmd) -> Result<(), Box<dyn std::error::Error>> {
    let client = Client::new(options)?;
    client.wait_connected().await?;
    match cmd {
        Cmd::Send {
            payload,
            properties,
            count,
        } => {
            let mut props = MessageProperties::new();
            for (k, v) in properties {
                props.add_application(k, v)?;
            }
            let mut pending = tokio::task::JoinSet::new();
            for _ in 0..count {
                let (client, props) = (client.clone(), props.clone());
                let msg = Message::new(payload.clone().into_bytes()).with_properties(props);
                pending.spawn(async move { client.send_telemetry(msg).await });
            }
            while let Some(r) = pending.join_next().await {
                r??;
            }
            eprintln!("{count} message(s) acknowledged");
        }
        Cmd::Twin => {
            let twin = client.get_twin().await?;
            println!(
                "{}",
                json!({"desired": twin.desired, "reported": twin.reported})
            );
        }
        Cmd::Report(text) => {
            let patch: Value = serde_json::from_str(&text)?;
            println!("{}", client.update_reported(&patch).await?);
        }
        Cmd::Listen(seconds) => {
            let mut c2d = client.c2d_messages().await?;
            let mut desired = client.desired_updates().await?;
            let mut methods = client.method_requests().await?;
            let stop = async {
                match seconds {
                    Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::pin!(stop);
            loop {
                let line = tokio::select! {
                    () = &mut stop => break,
                    Some(m) = c2d.recv() => message_json("c2d", &m, None),
                    Some(d) = desired.recv() => match d {
                        DesiredUpdate::Full { desired, version } => json!({"type": "desired", "full": true, "version": version, "desired": desired}),
                        DesiredUpdate::Patch { patch, version } => json!({"type": "desired", "full": false, "version": version, "desired": patch}),
                        _ => continue,
                    },
                    Some(call) = methods.recv() => {
                        let line = json!({"type": "method", "name": call.name, "payload": String::from_utf8_lossy(&call.payload)});
                        let body = json!({"method": call.name}).to_string();
                        call.respond(200, body.into_bytes()).await?;
                        line
                    }
                };
                println!("{line}");
            }
        }
    }
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
    let (options, cmd) = match parse() {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(options, cmd).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
