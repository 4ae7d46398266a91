//! An IoT Edge module client (`Source::edge_module`): the `IOTEDGE_*`
//! environment given as a value (no process environment is touched), the
//! edge CA and every SAS token from a fake workload API on a Unix socket
//! in a temporary directory ([`FakeWorkload`]), tokens renewed through it
//! while the client stays connected.

use std::time::Duration;

use iothub_client::{ClientBuilder, EdgeError, Error, Source};
use iothub_proto::edge::{EdgeEnvError, EdgeEnvironment};
use iothub_proto::session::{ConnectionState, DisconnectReason, Message, TokenFailure};

use super::{Device, eventually, within};
use crate::Emu;
use crate::workload::FakeWorkload;

const GEN: &str = "637000000000000001";

/// The emulator with module `edge1/filter`, and a workload API that signs
/// with `key` (the module's own if `None`) and serves the emulator's CA
/// as trust bundle.
fn setup(key: Option<&[u8]>) -> (Emu, FakeWorkload) {
    let emu = Emu::start();
    emu.create_device("edge1").unwrap();
    let module = emu.create_module("edge1", "filter").unwrap();
    let own = crate::key_from_base64(&module.primary_key().unwrap()).unwrap();
    let key = key.unwrap_or(own.expose_secret());
    let ca = String::from_utf8(emu.ca()).unwrap();
    let workload = FakeWorkload::start("filter", GEN, key, &ca);
    (emu, workload)
}

/// The module's client: its CA from the workload API's trust bundle,
/// nowhere else; `lifetime`-second tokens.
async fn module_client<D: Device>(emu: &Emu, workload: &FakeWorkload, lifetime: u64) -> D {
    let env = workload.environment(&emu.host_name(), None, "edge1", "filter", GEN);
    let port = emu.mqtt_addr().port();
    let builder = ClientBuilder::new(Source::edge_module(env)).configure(move |o| {
        o.with_webpki_roots(false)
            .with_port(port)
            .with_session(|c| {
                c.with_sas_lifetime(Duration::from_secs(lifetime))
                    .with_backoff_min(Duration::from_millis(50))
                    .with_backoff_max(Duration::from_millis(300))
            })
    });
    D::build(builder).await.unwrap()
}

async fn telemetry_arrives<D: Device>(emu: &Emu, client: &D, body: &'static str) {
    within(10, client.send_telemetry(Message::new(body.as_bytes())))
        .await
        .unwrap();
    emu.received("edge1/filter", body).await;
}

pub async fn a_module_connects_with_a_workload_token_and_renews_it_twice<D: Device>() {
    let (emu, workload) = setup(None);
    let client: D = module_client(&emu, &workload, 3).await;
    within(10, client.wait_connected()).await.unwrap();
    assert_eq!(workload.sign_calls(), 1);
    assert!(emu.is_connected("edge1/filter"));
    telemetry_arrives(&emu, &client, "from the edge").await;
    // 3 s tokens, renewed at 80 %: two more sign calls, each followed by a
    // reconnection with the new token.
    eventually(20, || workload.sign_calls() >= 3).await;
    let s = within(
        10,
        client
            .status()
            .wait_for(|s| s.connection >= 3 && s.state == ConnectionState::Connected),
    )
    .await
    .unwrap();
    assert_eq!(s.last_disconnect, Some(DisconnectReason::TokenRenewal));
    assert_eq!(s.stopped, None);
    telemetry_arrives(&emu, &client, "after two renewals").await;
    client.shutdown(Duration::from_secs(2)).await.unwrap();
}

pub async fn a_failing_workload_api_is_asked_again_until_it_signs<D: Device>() {
    let (emu, workload) = setup(None);
    workload.fail_next_signs(2);
    let client: D = module_client(&emu, &workload, 3600).await;
    within(15, client.wait_connected()).await.unwrap();
    // Two refusals (500), then the token the client connected with.
    assert_eq!(workload.sign_calls(), 1);
    telemetry_arrives(&emu, &client, "after two refusals").await;
}

pub async fn a_failing_workload_api_shows_in_the_status_until_the_client_connects<D: Device>() {
    let (emu, workload) = setup(None);
    workload.fail_next_signs(usize::MAX);
    let client: D = module_client(&emu, &workload, 3600).await;
    let s = within(
        10,
        client.status().wait_for(|s| s.last_token_failure.is_some()),
    )
    .await
    .unwrap();
    let failure = s.last_token_failure.unwrap();
    assert_eq!(failure.reason, TokenFailure::Unavailable);
    let detail = failure.detail.unwrap();
    assert!(detail.contains("the workload API answered 500"), "{detail}");
    assert_ne!(s.state, ConnectionState::Connected);
    assert_eq!(workload.sign_calls(), 0);
    // The workload API signs again: connected, and the failure is gone.
    workload.fail_next_signs(0);
    within(10, client.wait_connected()).await.unwrap();
    assert_eq!(client.status().get().last_token_failure, None);
    assert_eq!(workload.sign_calls(), 1);
    client.shutdown(Duration::from_secs(2)).await.unwrap();
}

pub async fn a_token_signed_with_another_key_is_refused_by_the_hub<D: Device>() {
    let (emu, workload) = setup(Some(&[9u8; 32]));
    let client: D = module_client(&emu, &workload, 3600).await;
    assert!(matches!(
        within(10, client.wait_connected()).await,
        Err(Error::Refused(_))
    ));
    assert_eq!(workload.sign_calls(), 1);
}

pub async fn a_bad_environment_or_socket_is_a_typed_error<D: Device>() {
    let missing = EdgeEnvironment::from_lookup(|_| None).unwrap_err();
    assert_eq!(missing, EdgeEnvError::Missing("IOTEDGE_AUTHSCHEME"));
    // A socket nobody listens on: the trust bundle cannot be fetched.
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
    let e = D::build(ClientBuilder::new(Source::edge_module(env)))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Edge(EdgeError::Io(_))), "{e:?}");
}
