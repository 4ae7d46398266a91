//! Provision with the Device Provisioning Service, connect to the hub it
//! assigns, send one telemetry message — on the blocking client (same
//! flags and output as `iothub-tokio`'s `provision` example, which shares
//! them through `iothub_testkit::provision_cli`; named
//! `provision_blocking` so the two binaries do not collide in `target/`):
//!
//! ```text
//! provision_blocking --id-scope S --registration-id R (--key K | --group-key K)
//!           [--global-endpoint HOST[:PORT]] [--hub-port P] [--ca-file PEM]
//!           [--websocket] [--plain] [--payload JSON] [--message TEXT]
//! ```
//!
//! Prints the assignment as JSON on stdout. `RUST_LOG=info` shows the
//! lifecycle on stderr. Against the emulator:
//!
//! ```text
//! cargo run -p iothub-emulator -- --enrollment dev1      # prints IdScope and SymmetricKey
//! cargo run -p iothub-blocking --example provision_blocking -- --id-scope 0ne00000001 \
//!     --registration-id dev1 --key <SymmetricKey> \
//!     --global-endpoint localhost:8884 --ca-file iothub-emulator-data/tls/ca.pem
//! ```

use std::process::ExitCode;
use std::time::Duration;

use iothub_blocking::{Message, provision};
use iothub_testkit::provision_cli::{self, Args};

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let provisioned = provision(&args.options)?;
    println!(
        "{}",
        provision_cli::assignment_json(&provisioned.registration)
    );
    let client = provisioned.connect()?;
    client.wait_connected(Duration::from_secs(60))?;
    client.send_telemetry(Message::new(args.message.into_bytes()))?;
    eprintln!("connected and sent one message");
    client.shutdown(Duration::from_secs(5))?;
    Ok(())
}

fn main() -> ExitCode {
    provision_cli::main(run)
}
