//! `iothub-emulator`: a local Azure IoT Hub device endpoint.
//!
//! Prints, one per line on stdout, the addresses it bound, the DPS ID
//! scope, the CA file, a connection string per `--device`, the
//! provisioning values per `--enrollment` / `--enrollment-group` and each
//! route (`route {name} {route}`); logs go
//! to stderr through `tracing` (`RUST_LOG` filters them).
#![forbid(unsafe_code)]

use std::net::{IpAddr, ToSocketAddrs as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use iothub_emulator::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_DPS_RETRY_AFTER_SECS, DEFAULT_HOST_NAME, DEFAULT_ID_SCOPE,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_PENDING_CONNECTIONS, DEFAULT_OUTPUT_LIMIT,
    DEFAULT_WRITE_TIMEOUT, Emulator, RetainProperty,
};

/// A local Azure IoT Hub device endpoint: MQTT over TLS, MQTT over
/// WebSocket over TLS, the service REST API on HTTP, and a Device
/// Provisioning Service endpoint that assigns devices to this hub.
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
    /// DPS (Device Provisioning Service) MQTT over TLS port (0: any free
    /// port).
    #[arg(long, value_name = "P", default_value_t = 8884)]
    dps_port: u16,
    /// DPS MQTT over WebSocket over TLS port, path /$iothub/websocket (0:
    /// any free port).
    #[arg(long, value_name = "P", default_value_t = 8444)]
    dps_ws_port: u16,
    /// Also serve DPS over plain, unencrypted MQTT on this port (0: any
    /// free port); off unless given.
    #[arg(long, value_name = "P")]
    plain_dps_port: Option<u16>,
    /// The DPS ID scope devices provision with.
    #[arg(long, value_name = "S", default_value = DEFAULT_ID_SCOPE)]
    id_scope: String,
    /// Close a connection (hub or DPS) that has not sent an accepted
    /// CONNECT this many seconds after its TLS/WebSocket handshake; 0
    /// turns the deadline off.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_CONNECT_TIMEOUT.as_secs())]
    connect_timeout: u64,
    /// Close a connection whose peer has not taken a write for this many
    /// seconds (it does not read); 0 turns the deadline off.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_WRITE_TIMEOUT.as_secs())]
    write_timeout: u64,
    /// Close a hub connection once more than this many bytes wait to be
    /// written to it (at least 65536).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_OUTPUT_LIMIT)]
    output_limit: usize,
    /// The most connections (hub and DPS) held at once; more are closed
    /// when accepted.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// The most connections without an accepted CONNECT held at once;
    /// more are closed when accepted.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_PENDING_CONNECTIONS)]
    max_pending_connections: usize,
    /// The application property that marks a message (or will) published
    /// with RETAIN: mqtt-retain (Microsoft's current docs) or x-opt-retain
    /// (the original product page).
    #[arg(long, value_name = "NAME", default_value = "mqtt-retain", value_parser = parse_retain)]
    retain_property: RetainProperty,
    /// The retry-after (seconds) DPS answers with while assigning.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_DPS_RETRY_AFTER_SECS)]
    dps_retry_after: u32,
    /// Create an individual DPS enrollment (symmetric keys generated, or
    /// kept from the data directory) and print its ID scope, registration
    /// id and key. Repeatable.
    #[arg(long = "enrollment", value_name = "REGID")]
    enrollments: Vec<String>,
    /// Create a DPS enrollment group (group keys generated, or kept) and
    /// print its ID scope and group key; devices sign with the key derived
    /// for their registration id. Repeatable.
    #[arg(long = "enrollment-group", value_name = "ID")]
    enrollment_groups: Vec<String>,
    /// Set an IoT Edge route between modules, NAME=ROUTE, e.g.
    /// 'r1=FROM /messages/modules/filter/outputs/out1 INTO
    /// BrokeredEndpoint("/modules/sink/inputs/in1")' (kept in the data
    /// directory; an invalid route stops the start). Repeatable.
    #[arg(long = "route", value_name = "NAME=ROUTE", value_parser = parse_route)]
    routes: Vec<(String, String)>,
    /// Serve this certificate chain (PEM) instead of the generated one.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

/// `mqtt-retain` or `x-opt-retain`.
fn parse_retain(arg: &str) -> Result<RetainProperty, String> {
    RetainProperty::from_name(arg).ok_or_else(|| "expected mqtt-retain or x-opt-retain".to_owned())
}

/// `NAME=ROUTE`.
fn parse_route(arg: &str) -> Result<(String, String), String> {
    let (name, route) = arg
        .split_once('=')
        .ok_or_else(|| "expected NAME=ROUTE".to_owned())?;
    Ok((name.trim().to_owned(), route.trim().to_owned()))
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
        .http_port(args.http_port)
        .dps_port(args.dps_port)
        .dps_ws_port(args.dps_ws_port)
        .id_scope(args.id_scope.clone())
        .dps_retry_after(args.dps_retry_after)
        .retain_property(args.retain_property)
        .connect_timeout(
            (args.connect_timeout > 0).then(|| Duration::from_secs(args.connect_timeout)),
        )
        .write_timeout((args.write_timeout > 0).then(|| Duration::from_secs(args.write_timeout)))
        .output_limit(args.output_limit)
        .max_connections(args.max_connections)
        .max_pending_connections(args.max_pending_connections);
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
    if let Some(p) = args.plain_dps_port {
        builder = builder.plain_dps_port(p);
    }
    for d in &args.devices {
        builder = builder.device(d.clone());
    }
    for r in &args.enrollments {
        builder = builder.enrollment(r.clone());
    }
    for g in &args.enrollment_groups {
        builder = builder.enrollment_group(g.clone());
    }
    for (name, route) in &args.routes {
        builder = builder.route(name.clone(), route.clone());
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
    println!("dps {}", emulator.dps_addr());
    println!("dps-websocket {}", emulator.dps_ws_addr());
    if let Some(p) = emulator.plain_dps_addr() {
        println!("plain-dps {p}");
    }
    println!("id-scope {}", emulator.id_scope());
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
    for r in &args.enrollments {
        match emulator.enrollment(r) {
            Ok(e) => println!(
                "enrollment {r} IdScope={};RegistrationId={r};SymmetricKey={}",
                e.id_scope,
                e.device_key(r).unwrap_or_default()
            ),
            Err(e) => eprintln!("iothub-emulator: enrollment {r}: {e}"),
        }
    }
    for g in &args.enrollment_groups {
        match emulator.enrollment_group(g) {
            Ok(e) => println!(
                "enrollment-group {g} IdScope={};GroupKey={}",
                e.id_scope,
                e.primary_key().unwrap_or_default()
            ),
            Err(e) => eprintln!("iothub-emulator: enrollment group {g}: {e}"),
        }
    }
    for (name, route) in emulator.routes() {
        println!("route {name} {route}");
    }
    // Stdout may be a pipe read by a test: make sure the lines are out.
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    wait_for_signal().await;
    tracing::info!("shutting down");
    emulator.shutdown().await;
    ExitCode::SUCCESS
}
