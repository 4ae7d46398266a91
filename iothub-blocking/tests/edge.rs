//! An IoT Edge module client against the in-process emulator: the
//! `IOTEDGE_*` environment given as a value (no process environment is
//! touched), the edge CA and every SAS token from a fake workload API on
//! a Unix socket in a temporary directory (iothub-testkit), tokens renewed
//! through it while the client stays connected.
#![cfg(unix)]

use std::time::Duration;

use iothub_blocking::edge::module_options;
use iothub_blocking::proto::edge::EdgeEnvironment;
use iothub_blocking::proto::session::TokenFailure;
use iothub_blocking::{Client, ClientOptions, ConnectionState, DisconnectReason, Error, Message};
use iothub_testkit::workload::FakeWorkload;
use iothub_testkit::{Emu, wait_until};

const GEN: &str = "637000000000000001";
const T: Duration = Duration::from_secs(10);

/// The emulator with module `edge1/filter`, and a workload API that signs
/// with `key` (the module's own if `None`) and serves the emulator's CA
/// as trust bundle.
fn setup(key: Option<&[u8]>) -> (Emu, FakeWorkload) {
    let emu = Emu::start();
    emu.create_device("edge1").unwrap();
    let module = emu.create_module("edge1", "filter").unwrap();
    let own = iothub_testkit::key_from_base64(&module.primary_key().unwrap()).unwrap();
    let key = key.unwrap_or(own.expose_secret());
    let ca = String::from_utf8(emu.ca()).unwrap();
    let workload = FakeWorkload::start("filter", GEN, key, &ca);
    (emu, workload)
}

/// The module's environment and options.
fn options(emu: &Emu, workload: &FakeWorkload, lifetime: u64) -> (EdgeEnvironment, ClientOptions) {
    let env = workload.environment(&emu.host_name(), None, "edge1", "filter", GEN);
    // The CA comes from the workload API's trust bundle, nowhere else.
    let options = module_options(&env)
        .unwrap()
        .with_webpki_roots(false)
        .with_port(emu.mqtt_addr().port())
        .with_session(|c| {
            c.with_sas_lifetime(Duration::from_secs(lifetime))
                .with_backoff_min(Duration::from_millis(50))
                .with_backoff_max(Duration::from_millis(300))
        });
    (env, options)
}

fn client(emu: &Emu, workload: &FakeWorkload, lifetime: u64) -> Client {
    let (env, options) = options(emu, workload, lifetime);
    Client::new_edge_module(options, env).unwrap()
}

fn telemetry_arrives(emu: &Emu, client: &Client, body: &'static str) {
    client
        .send_telemetry(Message::new(body.as_bytes()))
        .unwrap();
    let m = emu
        .wait_for_telemetry(|m| m.body_text() == Some(body), T)
        .expect("telemetry arrived");
    assert_eq!(m.identity.module_id().map(|m| m.as_str()), Some("filter"));
}

#[test]
fn a_module_connects_with_a_workload_token_and_renews_it_twice() {
    let (emu, workload) = setup(None);
    let client = client(&emu, &workload, 3);
    client.wait_connected(T).unwrap();
    assert_eq!(workload.sign_calls(), 1);
    assert!(emu.is_connected("edge1/filter"));
    telemetry_arrives(&emu, &client, "from the edge");

    // 3 s tokens, renewed at 80 %: two more sign calls, each followed by
    // a reconnection with the new token.
    assert!(wait_until(Duration::from_secs(20), || workload
        .sign_calls()
        >= 3));
    let s = client
        .wait_status(
            |s| s.connection >= 3 && s.state == ConnectionState::Connected,
            T,
        )
        .unwrap();
    assert_eq!(s.last_disconnect, Some(DisconnectReason::TokenRenewal));
    assert_eq!(s.stopped, None);
    assert!(emu.is_connected("edge1/filter"));
    telemetry_arrives(&emu, &client, "after two renewals");
    client.shutdown(Duration::from_secs(2)).unwrap();
}

#[test]
fn a_failing_workload_api_is_asked_again_until_it_signs() {
    let (emu, workload) = setup(None);
    workload.fail_next_signs(2);
    let client = client(&emu, &workload, 3600);
    client.wait_connected(Duration::from_secs(15)).unwrap();
    // Two refusals (500), then the token the client connected with.
    assert_eq!(workload.sign_calls(), 1);
    telemetry_arrives(&emu, &client, "after two refusals");
}

#[test]
fn a_token_signed_with_another_key_is_refused_by_the_hub() {
    let (emu, workload) = setup(Some(&[9u8; 32]));
    let client = client(&emu, &workload, 3600);
    assert!(matches!(client.wait_connected(T), Err(Error::Refused(_))));
    assert_eq!(workload.sign_calls(), 1);
}

#[test]
fn a_failing_workload_api_shows_in_the_status_until_the_client_connects() {
    let (emu, workload) = setup(None);
    workload.fail_next_signs(usize::MAX);
    let client = client(&emu, &workload, 3600);
    let s = client
        .wait_status(|s| s.last_token_failure.is_some(), T)
        .unwrap();
    let failure = s.last_token_failure.unwrap();
    assert_eq!(failure.reason, TokenFailure::Unavailable);
    let detail = failure.detail.unwrap();
    assert!(detail.contains("the workload API answered 500"), "{detail}");
    assert_ne!(s.state, ConnectionState::Connected);
    assert_eq!(workload.sign_calls(), 0);

    // The workload API signs again: connected, and the failure is gone.
    workload.fail_next_signs(0);
    client.wait_connected(T).unwrap();
    assert_eq!(client.status().last_token_failure, None);
    assert_eq!(workload.sign_calls(), 1);
    client.shutdown(Duration::from_secs(2)).unwrap();
}

#[test]
fn an_edge_module_with_its_driver_on_the_callers_thread() {
    let (emu, workload) = setup(None);
    let (env, options) = options(&emu, &workload, 3600);
    let (client, driver) = Client::new_edge_module_with_driver(options, env).unwrap();
    let thread = std::thread::spawn(move || driver.run());
    client.wait_connected(T).unwrap();
    assert_eq!(workload.sign_calls(), 1);
    telemetry_arrives(&emu, &client, "driven by the caller");
    client.shutdown(Duration::from_secs(2)).unwrap();
    thread.join().unwrap();
}
