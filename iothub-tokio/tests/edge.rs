//! An IoT Edge module client against the in-process emulator: the
//! `IOTEDGE_*` environment given as a value (no process environment is
//! touched), the edge CA and every SAS token from a fake workload API on
//! a Unix socket in a temporary directory (iothub-testkit), tokens renewed
//! through it while the client stays connected.
#![cfg(unix)]

use std::time::Duration;

use iothub_emulator::{Emulator, EmulatorHandle};
use iothub_testkit::workload::FakeWorkload;
use iothub_tokio::edge::module_options;
use iothub_tokio::{Client, ConnectionState, DisconnectReason, Message};

const GEN: &str = "637000000000000001";

async fn within<T>(secs: u64, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("in time")
}

/// Waits (bounded) for a condition, checking every 20 ms.
async fn until(secs: u64, mut cond: impl FnMut() -> bool) {
    within(secs, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// The emulator with module `edge1/filter`, and a workload API that signs
/// with that module's key and serves the emulator's CA as trust bundle.
async fn setup() -> (EmulatorHandle, FakeWorkload) {
    iothub_testkit::init_tracing();
    let emu = Emulator::builder().in_memory().start().await.unwrap();
    emu.create_device("edge1").unwrap();
    let module = emu.create_module("edge1", "filter").unwrap();
    let key = iothub_testkit::key_from_base64(&module.primary_key().unwrap()).unwrap();
    let ca = emu.ca_pem().unwrap().to_owned();
    let workload = FakeWorkload::start("filter", GEN, key.expose_secret(), &ca);
    (emu, workload)
}

async fn client(emu: &EmulatorHandle, workload: &FakeWorkload, lifetime: u64) -> Client {
    let env = workload.environment(&emu.host_name(), None, "edge1", "filter", GEN);
    // The CA comes from the workload API's trust bundle, nowhere else.
    let options = module_options(&env)
        .await
        .unwrap()
        .with_webpki_roots(false)
        .with_port(emu.mqtt_addr().port())
        .with_session(|c| {
            c.with_sas_lifetime(Duration::from_secs(lifetime))
                .with_backoff_min(Duration::from_millis(50))
                .with_backoff_max(Duration::from_millis(300))
        });
    Client::new_edge_module(options, env).unwrap()
}

async fn telemetry_arrives(emu: &EmulatorHandle, client: &Client, body: &'static str) {
    within(10, client.send_telemetry(Message::new(body.as_bytes())))
        .await
        .unwrap();
    let m = emu
        .wait_for_telemetry(|m| m.body_text() == Some(body), Duration::from_secs(10))
        .await
        .expect("telemetry arrived");
    assert_eq!(m.identity.module_id().map(|m| m.as_str()), Some("filter"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_connects_with_a_workload_token_and_renews_it_twice() {
    let (emu, workload) = setup().await;
    let client = client(&emu, &workload, 3).await;
    within(10, client.wait_connected()).await.unwrap();
    assert_eq!(workload.sign_calls(), 1);
    assert!(emu.is_connected("edge1/filter"));
    telemetry_arrives(&emu, &client, "from the edge").await;

    // 3 s tokens, renewed at 80 %: two more sign calls, each followed by
    // a reconnection with the new token.
    until(20, || workload.sign_calls() >= 3).await;
    let mut status = client.status();
    within(
        10,
        status.wait_for(|s| s.connection >= 3 && s.state == ConnectionState::Connected),
    )
    .await
    .unwrap();
    let s = client.status().borrow().clone();
    assert_eq!(s.last_disconnect, Some(DisconnectReason::TokenRenewal));
    assert_eq!(s.stopped, None);
    assert!(emu.is_connected("edge1/filter"));
    telemetry_arrives(&emu, &client, "after two renewals").await;
    client.shutdown(Duration::from_secs(2)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_workload_api_is_asked_again_until_it_signs() {
    let (emu, workload) = setup().await;
    workload.fail_next_signs(2);
    let client = client(&emu, &workload, 3600).await;
    within(15, client.wait_connected()).await.unwrap();
    // Two refusals (500), then the token the client connected with.
    assert_eq!(workload.sign_calls(), 1);
    telemetry_arrives(&emu, &client, "after two refusals").await;
    client.shutdown(Duration::from_secs(2)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_workload_api_shows_in_the_status_until_the_client_connects() {
    let (emu, workload) = setup().await;
    workload.fail_next_signs(usize::MAX);
    let client = client(&emu, &workload, 3600).await;
    let mut status = client.status();
    let s = within(10, status.wait_for(|s| s.last_token_failure.is_some()))
        .await
        .unwrap()
        .clone();
    let failure = s.last_token_failure.unwrap();
    assert_eq!(
        failure.reason,
        iothub_proto::session::TokenFailure::Unavailable
    );
    let detail = failure.detail.unwrap();
    assert!(detail.contains("the workload API answered 500"), "{detail}");
    assert_ne!(s.state, ConnectionState::Connected);
    assert_eq!(workload.sign_calls(), 0);

    // The workload API signs again: connected, and the failure is gone.
    workload.fail_next_signs(0);
    within(10, client.wait_connected()).await.unwrap();
    assert_eq!(client.status().borrow().last_token_failure, None);
    assert_eq!(workload.sign_calls(), 1);
    client.shutdown(Duration::from_secs(2)).await.unwrap();
}

#[tokio::test]
async fn a_bad_environment_or_socket_is_a_typed_error() {
    use iothub_net::edge::EdgeError;
    use iothub_proto::edge::{EdgeEnvError, EdgeEnvironment};
    let missing = EdgeEnvironment::from_lookup(|_| None).unwrap_err();
    assert_eq!(missing, EdgeEnvError::Missing("IOTEDGE_AUTHSCHEME"));
    // A socket nobody listens on.
    let dir = tempfile::tempdir().unwrap();
    let sock = format!("unix://{}", dir.path().join("none.sock").display());
    let env = EdgeEnvironment::from_lookup(|k| {
        Some(
            match k {
                "IOTEDGE_IOTHUBHOSTNAME" => "localhost",
                "IOTEDGE_DEVICEID" => "edge1",
                "IOTEDGE_MODULEID" => "filter",
                "IOTEDGE_AUTHSCHEME" => "sasToken",
                "IOTEDGE_WORKLOADURI" => &sock,
                "IOTEDGE_MODULEGENERATIONID" => GEN,
                "IOTEDGE_APIVERSION" => "2019-01-30",
                _ => return None,
            }
            .to_owned(),
        )
    })
    .unwrap();
    assert!(matches!(module_options(&env).await, Err(EdgeError::Io(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_signed_with_another_key_is_refused_by_the_hub() {
    let emu = Emulator::builder().in_memory().start().await.unwrap();
    emu.create_device("edge1").unwrap();
    emu.create_module("edge1", "filter").unwrap();
    let ca = emu.ca_pem().unwrap().to_owned();
    let workload = FakeWorkload::start("filter", GEN, &[9u8; 32], &ca);
    let client = client(&emu, &workload, 3600).await;
    assert!(matches!(
        within(10, client.wait_connected()).await,
        Err(iothub_tokio::Error::Refused(_))
    ));
    assert_eq!(workload.sign_calls(), 1);
}
