//! A custom token signer (what an HSM or a TPM does): the scenario's
//! closure holds the device's key and signs with `SasToken::generate`; the
//! client connects with its tokens, renews them, and shows the signer's
//! failure in its status.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use iothub_client::token::TokenRequest;
use iothub_client::{ClientBuilder, ClientOptions};
use iothub_proto::auth::{SasToken, SharedAccessKey};
use iothub_proto::session::{ConnectionState, DisconnectReason, Message, TokenFailure};

use super::{Device, within};
use crate::Emu;

/// The signer's state: how many tokens it signed, and whether it fails.
#[derive(Default)]
struct Hsm {
    signed: AtomicUsize,
    offline: AtomicBool,
}

/// A client of device `hsm1` whose tokens a signer holding its key signs.
async fn setup<D: Device>(lifetime: u64, offline: bool) -> (Emu, D, Arc<Hsm>) {
    let emu = Emu::start();
    let info = emu.create_device("hsm1").unwrap();
    let key = SharedAccessKey::from_base64(&info.primary_key().unwrap()).unwrap();
    let options = ClientOptions::from_connection_string(&info.connection_string())
        .unwrap()
        .with_port(emu.mqtt_addr().port())
        .with_ca_pem(emu.ca());
    let hsm = Arc::new(Hsm::default());
    hsm.offline.store(offline, Ordering::SeqCst);
    let state = hsm.clone();
    let builder = ClientBuilder::new(options)
        .configure(move |o| {
            o.with_session(|c| {
                c.with_sas_lifetime(Duration::from_secs(lifetime))
                    .with_backoff_min(Duration::from_millis(50))
                    .with_backoff_max(Duration::from_millis(300))
            })
        })
        .token_signer(move |r: &TokenRequest| {
            if state.offline.load(Ordering::SeqCst) {
                return Err("HSM offline".into());
            }
            state.signed.fetch_add(1, Ordering::SeqCst);
            Ok(SasToken::generate(
                r.resource_uri(),
                &key,
                r.expiry_unix_secs(),
                None,
            ))
        });
    let client = D::build(builder).await.unwrap();
    (emu, client, hsm)
}

pub async fn a_custom_signer_connects_and_renews<D: Device>() {
    let (emu, client, hsm) = setup::<D>(3, false).await;
    within(10, client.wait_connected()).await.unwrap();
    assert_eq!(hsm.signed.load(Ordering::SeqCst), 1);
    assert!(emu.is_connected("hsm1"));
    // 3 s tokens, renewed at 80 %: two more tokens, each followed by a
    // reconnection with it.
    let s = within(
        20,
        client
            .status()
            .wait_for(|s| s.connection >= 3 && s.state == ConnectionState::Connected),
    )
    .await
    .unwrap();
    assert!(hsm.signed.load(Ordering::SeqCst) >= 3);
    assert_eq!(s.last_disconnect, Some(DisconnectReason::TokenRenewal));
    assert_eq!(s.last_token_failure, None);
    client
        .send_telemetry(Message::new(&b"signed by the HSM"[..]))
        .await
        .unwrap();
    emu.received("hsm1", "signed by the HSM").await;
    client.shutdown(Duration::from_secs(2)).await.unwrap();
}

pub async fn a_failing_signer_shows_in_the_status_until_it_signs<D: Device>() {
    let (emu, client, hsm) = setup::<D>(3600, true).await;
    let s = within(
        10,
        client.status().wait_for(|s| s.last_token_failure.is_some()),
    )
    .await
    .unwrap();
    let failure = s.last_token_failure.unwrap();
    assert_eq!(failure.reason, TokenFailure::Unavailable);
    assert_eq!(
        failure.detail.as_deref(),
        Some("the custom signer failed: HSM offline")
    );
    assert_ne!(s.state, ConnectionState::Connected);
    assert!(!emu.is_connected("hsm1"));
    // Back online: the session asks again, connects, and the failure is
    // gone.
    hsm.offline.store(false, Ordering::SeqCst);
    within(10, client.wait_connected()).await.unwrap();
    assert_eq!(client.status().get().last_token_failure, None);
    assert_eq!(hsm.signed.load(Ordering::SeqCst), 1);
    client.shutdown(Duration::from_secs(2)).await.unwrap();
}
