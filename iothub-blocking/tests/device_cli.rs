//! The `device_blocking` example binary end to end (built by `cargo test`
//! with the other examples), against the in-process emulator over TLS.

#[test]
fn device_cli_end_to_end() {
    let binary = iothub_testkit::device_cli::example_binary("device_blocking");
    iothub_testkit::device_cli::device_cli_end_to_end(&binary);
}
