//! `iothub-emulator`: a local Azure IoT Hub device endpoint.
//!
//! Prints, one per line on stdout, the addresses it bound, the CA file and
//! a connection string per `--device`; logs go to stderr through
//! `tracing` (`RUST_LOG` filters them).
#![forbid(unsafe_code)]

use std::net::{IpAddr, ToSocketAddrs as _};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use iothub_emulator::{DEFAULT_HOST_NAME, Emulator};

/// A local Azure IoT Hub device endpoint: MQTT over TLS, MQTT over
/// WebSocket over TLS, and the service REST API on HTTP.
#[derive(Debug, Parser)]
#[command(name = "iothub-emulator", version)]
struct Args {
    /// Keep the registry, twins, sessions, pending C2D messages and the
    /// generated TLS certificates in DIR (created if needed).
    #[arg(
        long,
        value_name = "DIR",
        default_value = "iothub-emulator-data",
        conflicts_with = "in_memory"
    )]
    data_dir: PathBuf,
    /// Keep nothing on disk (the CA goes to a temporary directory).
    #[arg(long)]
    in_memory: bool,
    /// The address to listen on: loopback only (127.0.0.1, ::1,
    /// localhost) unless --allow-non-loopback.
    #[arg(long, value_name = "H", default_value = "127.0.0.1")]
    host: String,
    /// Allow a --host that is not a loopback address.
    #[arg(long)]
    allow_non_loopback: bool,
    /// The hub host name devices use in their connection strings (and
    /// usernames, SAS resource URIs); the generated certificate is valid
    /// for localhost, 127.0.0.1 and ::1.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_HOST_NAME)]
    hub_name: String,
    /// MQTT over TLS port (0: any free port).
    #[arg(long, value_name = "P", default_value_t = 8883)]
    mqtt_port: u16,
    /// MQTT over WebSocket over TLS port, path /$iothub/websocket (0: any
    /// free port).
    #[arg(long, value_name = "P", default_value_t = 8443)]
    ws_port: u16,
    /// Service API (HTTP) port (0: any free port).
    #[arg(long, value_name = "P", default_value_t = 8080)]
    http_port: u16,
    /// Also serve plain, unencrypted MQTT on this port (0: any free port);
    /// off unless given.
    #[arg(long, value_name = "P")]
    plain_mqtt_port: Option<u16>,
    /// Register this device at start (keys generated, or kept from the
    /// data directory) and print its connection string. Repeatable.
    #[arg(long = "device", value_name = "ID")]
    devices: Vec<String>,
    /// Serve this certificate chain (PEM) instead of the generated one.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

fn resolve(host: &str) -> Result<IpAddr, String> {
    if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse() {
        return Ok(ip);
    }
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(IpAddr::from([127, 0, 0, 1]));
    }
    // Another name: resolved by the system (e.g. /etc/hosts); the address
    // must still be loopback unless allowed.
    (host, 0)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve --host {host}: {e}"))?
        .next()
        .map(|a| a.ip())
        .ok_or_else(|| format!("--host {host} resolves to nothing"))
}

/// Ctrl-C, or SIGTERM on Unix.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    let ip = match resolve(&args.host) {
        Ok(ip) => ip,
        Err(e) => {
            eprintln!("iothub-emulator: {e}");
            return ExitCode::from(2);
        }
    };
    let mut builder = Emulator::builder()
        .bind(ip)
        .allow_non_loopback(args.allow_non_loopback)
        .host_name(args.hub_name.clone())
        .mqtt_port(args.mqtt_port)
        .ws_port(args.ws_port)
        .http_port(args.http_port);
    builder = if args.in_memory {
        builder.in_memory()
    } else {
        builder.data_dir(&args.data_dir)
    };
    if let Some(p) = args.plain_mqtt_port {
        builder = builder.plain_mqtt_port(p);
    }
    if let (Some(c), Some(k)) = (&args.tls_cert, &args.tls_key) {
        builder = builder.tls_pem(c, k);
    }
    for d in &args.devices {
        builder = builder.device(d.clone());
    }
    let emulator = match builder.start().await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("iothub-emulator: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("mqtt {}", emulator.mqtt_addr());
    println!("websocket {}", emulator.ws_addr());
    println!("http {}", emulator.http_addr());
    if let Some(p) = emulator.plain_addr() {
        println!("plain-mqtt {p}");
    }
    match emulator.ca_path() {
        Some(p) => println!("ca {}", p.display()),
        None => println!("ca (user-provided certificate)"),
    }
    for d in &args.devices {
        match emulator.device(d) {
            Ok(info) => println!("device {d} {}", info.connection_string()),
            Err(e) => eprintln!("iothub-emulator: device {d}: {e}"),
        }
    }
    // Stdout may be a pipe read by a test: make sure the lines are out.
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    wait_for_signal().await;
    tracing::info!("shutting down");
    emulator.shutdown().await;
    ExitCode::SUCCESS
}
