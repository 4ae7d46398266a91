//! The `device` example binary end to end (built by `cargo test` with the
//! other examples), against the in-process emulator over TLS: the
//! scenario every adapter's example shares (`iothub_testkit::device_cli`),
//! a restart with CleanSession 0 included.

#[test]
fn device_cli_end_to_end() {
    let binary = iothub_testkit::device_cli::example_binary("device");
    if !binary.exists() {
        // `cargo test` builds the examples first; a filtered run may not.
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "-p", "iothub-tokio", "--example", "device"])
            .status()
            .expect("run cargo");
        assert!(status.success(), "cargo build --example device");
    }
    iothub_testkit::device_cli::device_cli_end_to_end(&binary);
}
