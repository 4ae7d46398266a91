//! A custom token signer (what an HSM or a TPM does) against the
//! in-process emulator, the driver under smol: the test's closure holds
//! the device's key and signs with `SasToken::generate`; the client
//! connects with its tokens, renews them, and shows the signer's failure
//! in its status.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_io::Timer;
use futures_lite::FutureExt as _;
use iothub_proto::auth::{SasToken, SharedAccessKey};
use iothub_proto::session::TokenFailure;
use iothub_smol::{
    Client, ClientOptions, ConnectionState, DisconnectReason, Message, SignerError, TokenRequest,
};
use iothub_testkit::Emu;

/// `f` within `secs` seconds, or the test fails.
async fn within<T>(secs: u64, f: impl Future<Output = T>) -> T {
    f.or(async {
        Timer::after(Duration::from_secs(secs)).await;
        panic!("not within {secs} s")
    })
    .await
}

/// The signer's state: how many tokens it signed, and whether it fails.
#[derive(Default)]
struct Hsm {
    signed: AtomicUsize,
    offline: AtomicBool,
}

type Signer = Box<dyn Fn(&TokenRequest) -> Result<SasToken, SignerError> + Send + Sync>;

/// Device `hsm1`'s options (its key replaced by the signer) and a signer
/// holding its key.
fn setup(lifetime: u64) -> (Emu, ClientOptions, Arc<Hsm>, Signer) {
    let emu = Emu::start();
    let info = emu.create_device("hsm1").unwrap();
    let key = SharedAccessKey::from_base64(&info.primary_key().unwrap()).unwrap();
    let options = ClientOptions::from_connection_string(&info.connection_string())
        .unwrap()
        .with_port(emu.mqtt_addr().port())
        .with_ca_pem(emu.ca())
        .with_session(|c| {
            c.with_sas_lifetime(Duration::from_secs(lifetime))
                .with_backoff_min(Duration::from_millis(50))
                .with_backoff_max(Duration::from_millis(300))
        });
    let hsm = Arc::new(Hsm::default());
    let state = hsm.clone();
    let signer: Signer = Box::new(move |r: &TokenRequest| {
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
    (emu, options, hsm, signer)
}

#[test]
fn a_custom_signer_connects_and_renews() {
    smol::block_on(async {
        let (emu, options, hsm, signer) = setup(3);
        let (client, driver) = Client::with_token_signer(options, signer).unwrap();
        smol::spawn(driver).detach();
        within(10, client.wait_connected()).await.unwrap();
        assert_eq!(hsm.signed.load(Ordering::SeqCst), 1);
        assert!(emu.is_connected("hsm1"));

        // 3 s tokens, renewed at 80 %: two more tokens, each followed by
        // a reconnection with it.
        let s = within(
            20,
            client.wait_status(|s| s.connection >= 3 && s.state == ConnectionState::Connected),
        )
        .await;
        assert!(hsm.signed.load(Ordering::SeqCst) >= 3);
        assert_eq!(s.last_disconnect, Some(DisconnectReason::TokenRenewal));
        assert_eq!(s.last_token_failure, None);
        within(
            10,
            client.send_telemetry(Message::new(&b"signed by the HSM"[..])),
        )
        .await
        .unwrap();
        emu.wait_for_telemetry(
            |m| m.body_text() == Some("signed by the HSM"),
            Duration::from_secs(10),
        )
        .expect("telemetry arrived");
        client.shutdown(Duration::from_secs(2)).await.unwrap();
    });
}

#[test]
fn a_failing_signer_shows_in_the_status_until_it_signs() {
    smol::block_on(async {
        let (emu, options, hsm, signer) = setup(3600);
        hsm.offline.store(true, Ordering::SeqCst);
        let (client, driver) = Client::with_token_signer(options, signer).unwrap();
        smol::spawn(driver).detach();
        let s = within(10, client.wait_status(|s| s.last_token_failure.is_some())).await;
        let failure = s.last_token_failure.unwrap();
        assert_eq!(failure.reason, TokenFailure::Unavailable);
        assert_eq!(
            failure.detail.as_deref(),
            Some("the custom signer failed: HSM offline")
        );
        assert_ne!(s.state, ConnectionState::Connected);
        assert!(!emu.is_connected("hsm1"));

        // Back online: the session asks again, connects, and the failure
        // is gone.
        hsm.offline.store(false, Ordering::SeqCst);
        within(10, client.wait_connected()).await.unwrap();
        assert_eq!(client.status().last_token_failure, None);
        assert_eq!(hsm.signed.load(Ordering::SeqCst), 1);
        client.shutdown(Duration::from_secs(2)).await.unwrap();
    });
}
