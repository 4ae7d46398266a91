//! The `device` CLI on the blocking client (same flags and output as
//! `iothub-tokio`'s `device` example; named `device_blocking` so the two
//! binaries do not collide in `target/`):
//!
//! ```text
//! device_blocking [--connection-string CS] [--ca-file PEM] [--port P] [--websocket] [--plain] <command>
//!   send <payload> [--property k=v]... [--count N] | twin | report <json> | listen [--seconds N]
//! ```
//!
//! The connection string may come from `IOTHUB_DEVICE_CONNECTION_STRING`.
//! `RUST_LOG=info` shows the connection lifecycle on stderr.

use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use iothub_blocking::{Client, ClientOptions};
use iothub_testkit::device_cli::{self, Cmd};

fn run(options: ClientOptions, cmd: Cmd) -> Result<(), Box<dyn std::error::Error>> {
    let client = Client::builder(options).build()?;
    client.wait_connected(Duration::from_secs(60))?;
    match cmd {
        Cmd::Send { message, count } => {
            // Queue them all, then wait for every acknowledgment.
            let receipts = (0..count)
                .map(|_| client.queue_telemetry(message.clone()))
                .collect::<Result<Vec<_>, _>>()?;
            for r in receipts {
                r.wait()?;
            }
            eprintln!("{count} message(s) acknowledged");
        }
        Cmd::Twin => println!("{}", device_cli::twin_json(&client.get_twin()?)),
        Cmd::Report(patch) => println!("{}", client.update_reported(&patch)?),
        Cmd::Listen(seconds) => {
            // Each stream feeds one channel of lines from its own thread.
            let (tx, lines) = mpsc::channel();
            let c2d = client.c2d_messages()?;
            let desired = client.desired_updates()?;
            let methods = client.method_requests()?;
            let t = tx.clone();
            std::thread::spawn(move || c2d.for_each(|m| drop(t.send(device_cli::c2d_json(&m)))));
            let t = tx.clone();
            std::thread::spawn(move || {
                desired
                    .filter_map(|d| device_cli::desired_json(&d))
                    .for_each(|line| drop(t.send(line)));
            });
            std::thread::spawn(move || {
                for call in methods {
                    let (line, answer) = device_cli::method_json(&call.name, &call.payload);
                    if call.respond(200, answer).is_ok() {
                        let _ = tx.send(line);
                    }
                }
            });
            let end = seconds.map(|s| Instant::now() + s);
            loop {
                let line = match end {
                    Some(end) => {
                        match lines.recv_timeout(end.saturating_duration_since(Instant::now())) {
                            Ok(line) => line,
                            Err(_) => break,
                        }
                    }
                    None => lines.recv()?,
                };
                println!("{line}");
            }
        }
    }
    client.shutdown(Duration::from_secs(5))?;
    Ok(())
}

fn main() -> ExitCode {
    device_cli::main(run)
}
