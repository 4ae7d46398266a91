//! Provisioning against the in-process emulator's DPS endpoint, offline:
//! provision, then connect to the emulator's hub with the result — over
//! MQTT/TLS, WebSocket/TLS and plain TCP, with individual, group and X.509
//! enrollments; refusals and failed registrations as errors; provisioning
//! again when the hub refuses the device or connections keep failing; and
//! the `provision` example binary end to end.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use iothub_emulator::{DeviceAuthentication, Emulator, EmulatorHandle, EnrollmentSpec, thumbprint};
use iothub_proto::mqtt::ConnectReturnCode;
use iothub_proto::provisioning::{ProvisioningError, RegistrationFailure};
use iothub_tokio::{
    Error, Message, ProvisioningOptions, ReprovisionPolicy, ReprovisionReason, Transport,
    provision, provision_and_connect, run_provisioned,
};

async fn emulator() -> EmulatorHandle {
    support::init_tracing();
    Emulator::builder()
        .in_memory()
        .plain_mqtt(true)
        .plain_dps(true)
        .start()
        .await
        .expect("emulator")
}

async fn within<T>(secs: u64, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("in time")
}

/// Options for the emulator's DPS over `transport` (shared with the
/// blocking and smol suites).
fn options(
    emu: &EmulatorHandle,
    base: ProvisioningOptions,
    transport: Transport,
) -> ProvisioningOptions {
    iothub_testkit::provisioning_options(emu, base, transport)
}

/// Waits for telemetry from `device` with `body`.
async fn received(emu: &EmulatorHandle, device: &str, body: &str) {
    let got = emu
        .wait_for_telemetry(
            |m| m.identity.device_id().as_str() == device && m.body_text() == Some(body),
            Duration::from_secs(10),
        )
        .await;
    assert!(got.is_some(), "no {body:?} from {device}");
}

#[tokio::test]
async fn provision_then_connect_over_tls() {
    let emu = emulator().await;
    let e = emu.create_enrollment("tokio-dev").unwrap();
    let base = ProvisioningOptions::symmetric_key(
        &emu.id_scope(),
        "tokio-dev",
        &e.device_key("tokio-dev").unwrap(),
    )
    .unwrap()
    .with_session(|c| c.with_payload(Some(serde_json::json!({"fw": "1.0"}))));
    let p = within(20, provision(&options(&emu, base, Transport::Mqtt)))
        .await
        .unwrap();
    assert_eq!(p.registration.assigned_hub.as_str(), "localhost");
    assert_eq!(p.registration.device_id.as_str(), "tokio-dev");
    assert_eq!(p.registration.registration_id, "tokio-dev");
    assert_eq!(p.options.port(), emu.mqtt_addr().port());
    assert_eq!(
        emu.dps_registration("tokio-dev").unwrap().request_payload,
        Some(serde_json::json!({"fw": "1.0"}))
    );
    let client = p.connect().unwrap();
    within(10, client.wait_connected()).await.unwrap();
    client
        .send_telemetry(Message::new(&b"over tls"[..]))
        .await
        .unwrap();
    received(&emu, "tokio-dev", "over tls").await;
    client.shutdown(Duration::from_secs(2)).await.unwrap();
    emu.shutdown().await;
}

#[tokio::test]
async fn a_group_member_over_websocket_and_plain_tcp() {
    let emu = emulator().await;
    let g = emu.create_enrollment_group("fleet").unwrap();
    for (rid, transport) in [
        ("ws-member", Transport::WebSocket),
        ("tcp-member", Transport::PlainTcp),
    ] {
        let base = ProvisioningOptions::group_key(&emu.id_scope(), rid, &g.primary_key().unwrap())
            .unwrap();
        let (client, registration) =
            within(20, provision_and_connect(&options(&emu, base, transport)))
                .await
                .unwrap();
        assert_eq!(registration.device_id.as_str(), rid);
        within(10, client.wait_connected()).await.unwrap();
        client
            .send_telemetry(Message::new(rid.as_bytes().to_vec()))
            .await
            .unwrap();
        received(&emu, rid, rid).await;
        assert_eq!(emu.device(rid).unwrap().primary_key(), g.device_key(rid));
        client.shutdown(Duration::from_secs(2)).await.unwrap();
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn an_x509_enrollment_then_the_same_certificate_at_the_hub() {
    let emu = emulator().await;
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["cam-9".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    emu.put_enrollment(
        "cam-9",
        EnrollmentSpec::default().with_x509_thumbprints(&thumbprint(cert.der()), None),
    )
    .unwrap();
    let base = ProvisioningOptions::x509(&emu.id_scope(), "cam-9", cert.pem(), key.serialize_pem())
        .unwrap();
    let (client, registration) = within(
        20,
        provision_and_connect(&options(&emu, base, Transport::Mqtt)),
    )
    .await
    .unwrap();
    assert_eq!(registration.device_id.as_str(), "cam-9");
    assert!(matches!(
        emu.device("cam-9").unwrap().authentication,
        DeviceAuthentication::X509 { .. }
    ));
    within(10, client.wait_connected()).await.unwrap();
    client
        .send_telemetry(Message::new(&b"x509"[..]))
        .await
        .unwrap();
    received(&emu, "cam-9", "x509").await;
    client.shutdown(Duration::from_secs(2)).await.unwrap();
    emu.shutdown().await;
}

#[tokio::test]
async fn refusals_and_failed_registrations_are_errors() {
    let emu = emulator().await;
    emu.create_enrollment("dev-1").unwrap();
    let wrong = ProvisioningOptions::symmetric_key(
        &emu.id_scope(),
        "dev-1",
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    )
    .unwrap();
    let err = within(20, provision(&options(&emu, wrong, Transport::Mqtt)))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Provisioning(ProvisioningError::Refused(r)) if r.code == ConnectReturnCode::BadUserNameOrPassword),
        "{err:?}"
    );
    assert!(err.to_string().contains("provisioning failed"), "{err}");
    // Disabled: the registration fails, no device is made.
    let e = emu
        .put_enrollment("dev-2", EnrollmentSpec::default().with_enabled(false))
        .unwrap();
    let base =
        ProvisioningOptions::symmetric_key(&emu.id_scope(), "dev-2", &e.primary_key().unwrap())
            .unwrap();
    let err = within(20, provision(&options(&emu, base, Transport::Mqtt)))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Provisioning(ProvisioningError::Registration(RegistrationFailure { .. }))
        ),
        "{err:?}"
    );
    assert!(emu.device("dev-2").is_err());
    // An untrusted server certificate: the TLS handshake fails, and the
    // session gives up after its transport retries.
    let e = emu.create_enrollment("dev-3").unwrap();
    let base =
        ProvisioningOptions::symmetric_key(&emu.id_scope(), "dev-3", &e.primary_key().unwrap())
            .unwrap()
            .with_endpoint("localhost")
            .unwrap()
            .with_port(emu.dps_addr().port())
            .with_session(|c| {
                c.with_max_transport_retries(1)
                    .with_backoff_min(Duration::from_millis(10))
                    .with_backoff_max(Duration::from_millis(20))
            });
    let err = within(20, provision(&base)).await.unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Provisioning(ProvisioningError::TransportRetriesExhausted(_))
        ),
        "{err:?}"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn a_device_deleted_at_the_hub_provisions_again() {
    let emu = Arc::new(emulator().await);
    let e = emu.create_enrollment("phoenix").unwrap();
    let base =
        ProvisioningOptions::symmetric_key(&emu.id_scope(), "phoenix", &e.primary_key().unwrap())
            .unwrap();
    let opts = options(&emu, base, Transport::Mqtt);
    let runs = Arc::new(AtomicU32::new(0));
    let (emu2, runs2) = (emu.clone(), runs.clone());
    let result = within(
        30,
        run_provisioned(
            opts,
            ReprovisionPolicy::default(),
            move |client, registration| {
                let (emu, runs) = (emu2.clone(), runs2.clone());
                async move {
                    assert_eq!(registration.device_id.as_str(), "phoenix");
                    let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
                    client.wait_connected().await?;
                    let body = format!("run {n}");
                    client
                        .send_telemetry(Message::new(body.clone().into_bytes()))
                        .await?;
                    received(&emu, "phoenix", &body).await;
                    if n == 1 {
                        // The hub forgets the device: its reconnection is
                        // refused (CONNACK 5), which calls for provisioning.
                        emu.delete_device("phoenix").unwrap();
                        std::future::pending::<()>().await;
                    }
                    Ok(())
                }
            },
        ),
    )
    .await;
    result.unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert!(emu.device("phoenix").is_ok(), "provisioning made it again");
    assert_eq!(emu.telemetry().len(), 2);
}

#[tokio::test]
async fn repeated_failed_connects_call_for_provisioning() {
    let emu = emulator().await;
    let e = emu.create_enrollment("flaky").unwrap();
    let base =
        ProvisioningOptions::symmetric_key(&emu.id_scope(), "flaky", &e.primary_key().unwrap())
            .unwrap();
    let (client, _) = within(
        20,
        provision_and_connect(&options(&emu, base, Transport::Mqtt)),
    )
    .await
    .unwrap();
    within(10, client.wait_connected()).await.unwrap();
    let policy = ReprovisionPolicy::default().with_after_failed_connects(3);
    let watch = client.reprovision_needed(policy);
    tokio::pin!(watch);
    registered(&client, watch.as_mut()).await;
    emu.refuse_connects("flaky", Duration::from_secs(30))
        .unwrap();
    emu.drop_connection("flaky").unwrap();
    let reason = within(20, watch).await.unwrap();
    assert_eq!(reason, ReprovisionReason::FailedConnects(3));
    // A client that stops ends the watch.
    let watch = client.reprovision_needed(ReprovisionPolicy::never());
    tokio::pin!(watch);
    tokio::select! {
        biased;
        _ = watch.as_mut() => panic!("fired at once"),
        () = std::future::ready(()) => {}
    }
    client.shutdown(Duration::from_secs(1)).await.unwrap();
    assert!(matches!(within(10, watch).await, Err(Error::Closed)));
    emu.shutdown().await;
}

/// Polls the watch once (its command goes to the driver), then makes a
/// round trip through the same command channel: the driver has it.
async fn registered<F: std::future::Future>(
    client: &iothub_tokio::Client,
    watch: std::pin::Pin<&mut F>,
) {
    tokio::select! {
        biased;
        _ = watch => panic!("fired at once"),
        () = std::future::ready(()) => {}
    }
    client.get_twin().await.unwrap();
}

/// The `provision` example end to end: the scenario every adapter's
/// example runs (`iothub_testkit::provision_cli`), with its own emulator
/// runtime (so not a tokio test).
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
