//! The `provision_blocking` example binary end to end (built by `cargo
//! test` with the other examples), against the in-process emulator's DPS.

#[test]
fn provision_cli_end_to_end() {
    let binary = iothub_testkit::device_cli::example_binary("provision_blocking");
    iothub_testkit::provision_cli::provision_cli_end_to_end(&binary);
}
