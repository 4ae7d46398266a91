//! The `provision` example end to end: the scenario every adapter's
//! example runs (`iothub_testkit::provision_cli`), with its own emulator
//! runtime.

#[test]
fn the_provision_example_end_to_end() {
    let binary = iothub_testkit::device_cli::example_binary("provision");
    if !binary.exists() {
        // `cargo test` builds the examples first; a filtered run may not.
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "-p", "iothub-tokio", "--example", "provision"])
            .status()
            .expect("run cargo");
        assert!(
            status.success() && binary.exists(),
            "{} not built",
            binary.display()
        );
    }
    iothub_testkit::provision_cli::provision_cli_end_to_end(&binary);
}
