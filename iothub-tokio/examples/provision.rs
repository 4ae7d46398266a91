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
//! stdout. `RUST_LOG=info` shows the lifecycle on stderr. The flags and
//! the output are shared with the other adapters' `provision` examples
//! (`iothub_testkit::provision_cli`).
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

use iothub_testkit::provision_cli::{self, Args};
use iothub_tokio::{Message, provision};

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let provisioned = provision(&args.options).await?;
    println!(
        "{}",
        provision_cli::assignment_json(&provisioned.registration)
    );
    let client = provisioned.connect().await?;
    client.wait_connected().await?;
    client
        .send_telemetry(Message::new(args.message.into_bytes()))
        .await?;
    eprintln!("connected and sent one message");
    client.shutdown(Duration::from_secs(5)).await?;
    Ok(())
}

fn main() -> ExitCode {
    provision_cli::main(|args| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(run(args))
    })
}
