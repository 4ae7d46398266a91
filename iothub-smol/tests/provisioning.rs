//! Provisioning with the smol adapter against the in-process emulator's
//! DPS endpoint, offline — the blocking and tokio suites' scenarios — each
//! run twice: under smol and under async-std. Provision, then connect to
//! the emulator's hub with the result over MQTT/TLS, WebSocket/TLS and
//! plain TCP, with individual, group and X.509 enrollments; refusals and
//! failed registrations as typed errors; provisioning again when the hub
//! forgets the device or connections keep failing. The emulator runs on
//! its own runtime in background threads (iothub-testkit).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_io::Timer;
use futures_lite::FutureExt as _;
use iothub_proto::mqtt::ConnectReturnCode;
use iothub_proto::provisioning::{ProvisioningError, RegistrationFailure};
use iothub_smol::{
    Client, ConnectionState, Error, Message, ProvisioningOptions, ReprovisionPolicy,
    ReprovisionReason, Transport, provision, provision_and_connect, run_provisioned,
};
use iothub_testkit::{DeviceAuthentication, Emu, EnrollmentSpec, KEY_B64, x509_enrollment};

#[derive(Clone, Copy)]
enum Rt {
    Smol,
    AsyncStd,
}

impl Rt {
    fn spawn(self, f: impl Future<Output = ()> + Send + 'static) {
        match self {
            Rt::Smol => smol::spawn(f).detach(),
            Rt::AsyncStd => drop(async_std::task::spawn(f)),
        }
    }

    /// Provisions, then starts a client whose driver runs on this runtime.
    async fn provision_and_connect(
        self,
        options: &ProvisioningOptions,
    ) -> Result<(Client, iothub_smol::Registration), Error> {
        let (client, driver, registration) = provision_and_connect(options).await?;
        self.spawn(driver);
        Ok((client, registration))
    }
}

/// `f` within `secs` seconds, or the test fails.
async fn within<T>(secs: u64, f: impl Future<Output = T>) -> T {
    f.or(async {
        Timer::after(Duration::from_secs(secs)).await;
        panic!("not within {secs} s")
    })
    .await
}

macro_rules! on_both_runtimes {
    ($($name:ident),* $(,)?) => {
        mod under_smol {
            $( #[test] fn $name() { smol::block_on(super::$name(super::Rt::Smol)) } )*
        }
        mod under_async_std {
            $( #[test] fn $name() { async_std::task::block_on(super::$name(super::Rt::AsyncStd)) } )*
        }
    };
}

on_both_runtimes!(
    provision_then_connect_over_tls,
    a_group_member_over_websocket_and_plain_tcp,
    an_x509_enrollment_then_the_same_certificate_at_the_hub,
    refusals_and_failed_registrations_are_typed_errors,
    a_device_deleted_at_the_hub_provisions_again,
    repeated_failed_connects_call_for_provisioning,
);

/// Waits (on the emulator's runtime) for telemetry from `device` with
/// `body`.
async fn received(emu: &Emu, device: &str, body: &str) {
    let (device, body) = (device.to_owned(), body.to_owned());
    let got = emu
        .spawn(move |h| async move {
            h.wait_for_telemetry(
                |m| m.identity.device_id().as_str() == device && m.body_text() == Some(&body),
                Duration::from_secs(10),
            )
            .await
            .is_some()
        })
        .await
        .unwrap();
    assert!(got, "telemetry not received");
}

async fn provision_then_connect_over_tls(rt: Rt) {
    let emu = Emu::start();
    let e = emu.create_enrollment("smol-dev").unwrap();
    let base = ProvisioningOptions::symmetric_key(
        &emu.id_scope(),
        "smol-dev",
        &e.device_key("smol-dev").unwrap(),
    )
    .unwrap()
    .with_session(|c| c.with_payload(Some(serde_json::json!({"fw": "1.0"}))));
    let p = within(20, provision(&emu.provisioning(base, Transport::Mqtt)))
        .await
        .unwrap();
    assert_eq!(p.registration.assigned_hub.as_str(), "localhost");
    assert_eq!(p.registration.device_id.as_str(), "smol-dev");
    assert_eq!(p.registration.registration_id, "smol-dev");
    assert_eq!(p.options.port(), emu.mqtt_addr().port());
    assert_eq!(
        emu.dps_registration("smol-dev").unwrap().request_payload,
        Some(serde_json::json!({"fw": "1.0"}))
    );
    let (client, driver) = p.connect().unwrap();
    rt.spawn(driver);
    within(10, client.wait_connected()).await.unwrap();
    client
        .send_telemetry(Message::new(&b"over tls"[..]))
        .await
        .unwrap();
    received(&emu, "smol-dev", "over tls").await;
    client.shutdown(Duration::from_secs(2)).await.unwrap();
}

async fn a_group_member_over_websocket_and_plain_tcp(rt: Rt) {
    let emu = Emu::start_with_plain();
    let g = emu.create_enrollment_group("fleet").unwrap();
    for (rid, transport) in [
        ("ws-member", Transport::WebSocket),
        ("tcp-member", Transport::PlainTcp),
    ] {
        let base = ProvisioningOptions::group_key(&emu.id_scope(), rid, &g.primary_key().unwrap())
            .unwrap();
        let (client, registration) = within(
            20,
            rt.provision_and_connect(&emu.provisioning(base, transport)),
        )
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
}

async fn an_x509_enrollment_then_the_same_certificate_at_the_hub(rt: Rt) {
    let emu = Emu::start();
    let (cert, key) = x509_enrollment(&emu, "cam-9");
    let base = ProvisioningOptions::x509(&emu.id_scope(), "cam-9", cert, key).unwrap();
    let (client, registration) = within(
        20,
        rt.provision_and_connect(&emu.provisioning(base, Transport::Mqtt)),
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
}

async fn refusals_and_failed_registrations_are_typed_errors(_rt: Rt) {
    let emu = Emu::start();
    emu.create_enrollment("dev-1").unwrap();
    // A wrong key, and a registration id DPS does not know: refused.
    for (rid, code) in [
        ("dev-1", ConnectReturnCode::BadUserNameOrPassword),
        ("nobody", ConnectReturnCode::NotAuthorized),
    ] {
        let wrong = ProvisioningOptions::symmetric_key(&emu.id_scope(), rid, KEY_B64).unwrap();
        let err = within(20, provision(&emu.provisioning(wrong, Transport::Mqtt)))
            .await
            .unwrap_err();
        let Error::Provisioning(e) = &err else {
            panic!("{rid}: {err:?}")
        };
        assert!(
            matches!(e, ProvisioningError::Refused(r) if r.code == code),
            "{rid}: {e:?}"
        );
        assert!(!e.is_retriable(), "{rid}: {e}");
    }
    // Disabled: the registration fails, no device is made.
    let e = emu
        .put_enrollment("dev-2", EnrollmentSpec::default().with_enabled(false))
        .unwrap();
    let base =
        ProvisioningOptions::symmetric_key(&emu.id_scope(), "dev-2", &e.primary_key().unwrap())
            .unwrap();
    let err = within(20, provision(&emu.provisioning(base, Transport::Mqtt)))
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
    // Bad options come back before any socket.
    let base = ProvisioningOptions::symmetric_key(&emu.id_scope(), "dev-1", KEY_B64)
        .unwrap()
        .with_session(|c| c.with_timeout(Duration::ZERO));
    assert!(matches!(provision(&base).await, Err(Error::Options(_))));
}

async fn a_device_deleted_at_the_hub_provisions_again(_rt: Rt) {
    let emu = Arc::new(Emu::start());
    let e = emu.create_enrollment("phoenix").unwrap();
    let base =
        ProvisioningOptions::symmetric_key(&emu.id_scope(), "phoenix", &e.primary_key().unwrap())
            .unwrap();
    let opts = emu.provisioning(base, Transport::Mqtt);
    let runs = Arc::new(AtomicU32::new(0));
    within(
        30,
        run_provisioned(
            opts,
            ReprovisionPolicy::default(),
            |client, registration| {
                let (emu, runs) = (emu.clone(), runs.clone());
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
                        // refused (CONNACK 5), which calls for provisioning;
                        // run_provisioned drops this future.
                        emu.delete_device("phoenix").unwrap();
                        std::future::pending::<()>().await;
                    }
                    Ok(())
                }
            },
        ),
    )
    .await
    .unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert!(emu.device("phoenix").is_ok(), "provisioning made it again");
    assert_eq!(emu.telemetry().len(), 2);
}

async fn repeated_failed_connects_call_for_provisioning(rt: Rt) {
    let emu = Emu::start();
    let e = emu.create_enrollment("flaky").unwrap();
    let base =
        ProvisioningOptions::symmetric_key(&emu.id_scope(), "flaky", &e.primary_key().unwrap())
            .unwrap();
    let (client, _) = within(
        20,
        rt.provision_and_connect(&emu.provisioning(base, Transport::Mqtt)),
    )
    .await
    .unwrap();
    within(10, client.wait_connected()).await.unwrap();
    let policy = ReprovisionPolicy::default().with_after_failed_connects(3);
    let mut watch = std::pin::pin!(client.reprovision_needed(policy));
    registered(&client, watch.as_mut()).await;
    emu.refuse_connects("flaky", Duration::from_secs(30))
        .unwrap();
    emu.drop_connection("flaky").unwrap();
    let reason = within(20, watch).await.unwrap();
    assert_eq!(reason, ReprovisionReason::FailedConnects(3));
    // A client that stops ends the watch. (Polled once, its command is in
    // the driver's channel, ahead of the shutdown; no round trip, as the
    // hub refuses the client now.)
    let mut watch = std::pin::pin!(client.reprovision_needed(ReprovisionPolicy::never()));
    assert!(
        futures_lite::future::poll_once(watch.as_mut())
            .await
            .is_none()
    );
    client.shutdown(Duration::from_secs(1)).await.unwrap();
    assert!(matches!(within(10, watch).await, Err(Error::Closed)));
    assert_eq!(client.status().state, ConnectionState::Stopped);
}

/// Polls the watch once (its command goes to the driver's unbounded
/// channel), then makes a round trip through the same channel: the driver
/// has it.
async fn registered<F: Future>(client: &Client, watch: std::pin::Pin<&mut F>) {
    assert!(
        futures_lite::future::poll_once(watch).await.is_none(),
        "fired at once"
    );
    client.get_twin().await.unwrap();
}
