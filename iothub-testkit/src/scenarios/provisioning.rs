//! Provisioning against the in-process emulator's DPS endpoint, offline:
//! provision, then connect to the emulator's hub with the result over
//! MQTT/TLS, WebSocket/TLS and plain TCP, with individual, group and X.509
//! enrollments; refusals and failed registrations as typed errors;
//! provisioning again when the hub forgets the device or connections keep
//! failing.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use iothub_client::{ClientBuilder, Error, ProvisioningOptions, Transport};
use iothub_proto::mqtt::ConnectReturnCode;
use iothub_proto::provisioning::{
    ProvisioningError, RegistrationFailure, ReprovisionPolicy, ReprovisionReason,
};
use iothub_proto::session::{ConnectionState, Message};
use serde_json::json;

use super::{Device, RunFuture, spawn, within};
use crate::{DeviceAuthentication, Emu, EnrollmentSpec, KEY_B64, x509_enrollment};

pub async fn provision_then_connect_over_tls<D: Device>() {
    let emu = Emu::start();
    let e = emu.create_enrollment("dev-p").unwrap();
    let base = ProvisioningOptions::symmetric_key(
        &emu.id_scope(),
        "dev-p",
        &e.device_key("dev-p").unwrap(),
    )
    .unwrap()
    .with_session(|c| c.with_payload(Some(json!({"fw": "1.0"}))));
    let (registration, options) =
        within(20, D::provision(&emu.provisioning(base, Transport::Mqtt)))
            .await
            .unwrap();
    assert_eq!(registration.assigned_hub.as_str(), "localhost");
    assert_eq!(registration.device_id.as_str(), "dev-p");
    assert_eq!(registration.registration_id, "dev-p");
    assert_eq!(options.port(), emu.mqtt_addr().port());
    assert_eq!(
        emu.dps_registration("dev-p").unwrap().request_payload,
        Some(json!({"fw": "1.0"}))
    );
    let client = D::build(ClientBuilder::new(options)).await.unwrap();
    within(10, client.wait_connected()).await.unwrap();
    client
        .send_telemetry(Message::new(&b"over tls"[..]))
        .await
        .unwrap();
    emu.received("dev-p", "over tls").await;
    client.shutdown(Duration::from_secs(2)).await.unwrap();
}

pub async fn a_group_member_over_websocket_and_plain_tcp<D: Device>() {
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
            D::provision_and_connect(&emu.provisioning(base, transport)),
        )
        .await
        .unwrap();
        assert_eq!(registration.device_id.as_str(), rid);
        within(10, client.wait_connected()).await.unwrap();
        client
            .send_telemetry(Message::new(rid.as_bytes().to_vec()))
            .await
            .unwrap();
        emu.received(rid, rid).await;
        assert_eq!(emu.device(rid).unwrap().primary_key(), g.device_key(rid));
        client.shutdown(Duration::from_secs(2)).await.unwrap();
    }
}

pub async fn an_x509_enrollment_then_the_same_certificate_at_the_hub<D: Device>() {
    let emu = Emu::start();
    let (cert, key) = x509_enrollment(&emu, "cam-9");
    let base = ProvisioningOptions::x509(&emu.id_scope(), "cam-9", cert, key).unwrap();
    let (client, registration) = within(
        20,
        D::provision_and_connect(&emu.provisioning(base, Transport::Mqtt)),
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
    emu.received("cam-9", "x509").await;
    client.shutdown(Duration::from_secs(2)).await.unwrap();
}

pub async fn refusals_and_failed_registrations_are_typed_errors<D: Device>() {
    let emu = Emu::start();
    emu.create_enrollment("dev-1").unwrap();
    // A wrong key, and a registration id DPS does not know: refused.
    for (rid, code) in [
        ("dev-1", ConnectReturnCode::BadUserNameOrPassword),
        ("nobody", ConnectReturnCode::NotAuthorized),
    ] {
        let wrong = ProvisioningOptions::symmetric_key(&emu.id_scope(), rid, KEY_B64).unwrap();
        let err = within(20, D::provision(&emu.provisioning(wrong, Transport::Mqtt)))
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
    let err = within(20, D::provision(&emu.provisioning(base, Transport::Mqtt)))
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
    assert!(matches!(D::provision(&base).await, Err(Error::Options(_))));
}

pub async fn a_device_deleted_at_the_hub_provisions_again<D: Device>() {
    let emu = Arc::new(Emu::start());
    let e = emu.create_enrollment("phoenix").unwrap();
    let base =
        ProvisioningOptions::symmetric_key(&emu.id_scope(), "phoenix", &e.primary_key().unwrap())
            .unwrap();
    let opts = emu.provisioning(base, Transport::Mqtt);
    let runs = Arc::new(AtomicU32::new(0));
    let (emu2, runs2) = (emu.clone(), runs.clone());
    let run =
        move |client: D, registration: iothub_proto::provisioning::Registration| -> RunFuture {
            let (emu, runs) = (emu2.clone(), runs2.clone());
            Box::pin(async move {
                assert_eq!(registration.device_id.as_str(), "phoenix");
                let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
                client.wait_connected().await?;
                let body = format!("run {n}");
                client
                    .send_telemetry(Message::new(body.clone().into_bytes()))
                    .await?;
                emu.received("phoenix", &body).await;
                if n == 1 {
                    // The hub forgets the device: its reconnection is refused
                    // (CONNACK 5), which calls for provisioning. The async
                    // adapters drop this future; the blocking one stops the
                    // client, and this run ends.
                    emu.delete_device("phoenix").unwrap();
                    client
                        .status()
                        .wait_for(|s| s.state == ConnectionState::Stopped)
                        .await?;
                    return Err(Error::Closed);
                }
                Ok(())
            })
        };
    within(
        30,
        D::run_provisioned(opts, ReprovisionPolicy::default(), run),
    )
    .await
    .unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert!(emu.device("phoenix").is_ok(), "provisioning made it again");
    assert_eq!(emu.telemetry().len(), 2);
}

pub async fn repeated_failed_connects_call_for_provisioning<D: Device>() {
    let emu = Emu::start();
    let e = emu.create_enrollment("flaky").unwrap();
    let base =
        ProvisioningOptions::symmetric_key(&emu.id_scope(), "flaky", &e.primary_key().unwrap())
            .unwrap();
    let (client, _) = within(
        20,
        D::provision_and_connect(&emu.provisioning(base, Transport::Mqtt)),
    )
    .await
    .unwrap();
    within(10, client.wait_connected()).await.unwrap();
    // The watch waits on a thread of its own. It counts from when the
    // driver has it; the hub refuses every reconnection for 30 s, so the
    // three failures come after it whenever it arrives.
    let policy = ReprovisionPolicy::default().with_after_failed_connects(3);
    let (tx, fired) = std::sync::mpsc::channel();
    let watcher = {
        let client = client.clone();
        spawn(move || async move {
            let _ = tx.send(client.reprovision_needed(policy).await);
        })
    };
    client.get_twin().await.unwrap();
    assert!(fired.try_recv().is_err(), "fired at once");
    emu.refuse_connects("flaky", Duration::from_secs(30))
        .unwrap();
    emu.drop_connection("flaky").unwrap();
    let reason = fired
        .recv_timeout(Duration::from_secs(20))
        .unwrap()
        .unwrap();
    assert_eq!(reason, ReprovisionReason::FailedConnects(3));
    watcher.join().unwrap();
    // A client that stops ends a watch: `Closed`, whether the watch
    // reached the driver before the shutdown or after.
    let waiter = {
        let client = client.clone();
        spawn(move || async move {
            assert!(matches!(
                client.reprovision_needed(ReprovisionPolicy::never()).await,
                Err(Error::Closed)
            ));
        })
    };
    client.shutdown(Duration::from_secs(1)).await.unwrap();
    waiter.join().unwrap();
    assert_eq!(client.status().get().state, ConnectionState::Stopped);
}
