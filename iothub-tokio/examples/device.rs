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
//! `RUST_LOG=info` shows the connection lifecycle on stderr. The flags
//! and the lines printed are shared with the other adapters' examples
//! (`iothub_testkit::device_cli`).

use std::process::ExitCode;
use std::time::Duration;

use iothub_testkit::device_cli::{self, Cmd};
use iothub_tokio::{Client, ClientOptions};

async fn run(options: ClientOptions, cmd: Cmd) -> Result<(), Box<dyn std::error::Error>> {
    let client = Client::builder(options).build().await?;
    client.wait_connected().await?;
    match cmd {
        Cmd::Send { message, count } => {
            let mut pending = tokio::task::JoinSet::new();
            for _ in 0..count {
                let (client, msg) = (client.clone(), message.clone());
                pending.spawn(async move { client.send_telemetry(msg).await });
            }
            while let Some(r) = pending.join_next().await {
                r??;
            }
            eprintln!("{count} message(s) acknowledged");
        }
        Cmd::Twin => println!("{}", device_cli::twin_json(&client.get_twin().await?)),
        Cmd::Report(patch) => println!("{}", client.update_reported(&patch).await?),
        Cmd::Listen(seconds) => {
            let mut c2d = client.c2d_messages().await?;
            let mut desired = client.desired_updates().await?;
            let mut methods = client.method_requests().await?;
            let stop = async {
                match seconds {
                    Some(s) => tokio::time::sleep(s).await,
                    None => std::future::pending().await,
                }
            };
            tokio::pin!(stop);
            loop {
                let line = tokio::select! {
                    () = &mut stop => break,
                    Some(m) = c2d.recv() => device_cli::c2d_json(&m),
                    Some(d) = desired.recv() => match device_cli::desired_json(&d) {
                        Some(line) => line,
                        None => continue,
                    },
                    Some(call) = methods.recv() => {
                        let (line, answer) = device_cli::method_json(&call.name, &call.payload);
                        call.respond(200, answer).await?;
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

fn main() -> ExitCode {
    device_cli::main(|options, cmd| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(run(options, cmd))
    })
}
