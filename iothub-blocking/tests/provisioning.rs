//! Provisioning with the blocking adapter against the in-process
//! emulator's DPS endpoint, offline: provision, then connect to the
//! emulator's hub with the result — over MQTT/TLS, WebSocket/TLS and plain
//! TCP, with individual, group and X.509 enrollments; refusals and failed
//! registrations as typed errors; provisioning again when the hub forgets
//! the device or connections keep failing. The emulator runs on its own
//! runtime in background threads (iothub-testkit); the client has none.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use iothub_blocking::{
    ConnectionState, Error, Message, ProvisioningOptions, ReprovisionPolicy, ReprovisionReason,
    Transport, provision, provision_and_connect, run_provisioned,
};
use iothub_proto::mqtt::ConnectReturnCode;
use iothub_proto::provisioning::{ProvisioningError, RegistrationFailure};
use iothub_testkit::{DeviceAuthentication, Emu, EnrollmentSpec, KEY_B64, x509_enrollment};

const T: Duration = Duration::from_secs(10);

/// Waits for telemetry from `device` with `body`.
fn received(emu: &Emu, device: &str, body: &str) {
    let got = emu.wait_for_telemetry(
        |m| m.identity.device_id().as_str() == device && m.body_text() == Some(body),
        T,
    );
    assert!(got.is_some(), "no {body:?} from {device}");
}

#[test]
fn provision_then_connect_over_tls() {
    let emu = Emu::start();
    let e = emu.create_enrollment("blocking-dev").unwrap();
    let base = ProvisioningOptions::symmetric_key(
        &emu.id_scope(),
        "blocking-dev",
        &e.device_key("blocking-dev").unwrap(),
    )
    .unwrap()
    .with_session(|c| c.with_payload(Some(serde_json::json!({"fw": "1.0"}))));
    let p = provision(&emu.provisioning(base, Transport::Mqtt)).unwrap();
    assert_eq!(p.registration.assigned_hub.as_str(), "localhost");
    assert_eq!(p.registration.device_id.as_str(), "blocking-dev");
    assert_eq!(p.registration.registration_id, "blocking-dev");
    assert_eq!(p.options.port(), emu.mqtt_addr().port());
    assert_eq!(
        emu.dps_registration("blocking-dev")
            .unwrap()
            .request_payload,
        Some(serde_json::json!({"fw": "1.0"}))
    );
    let client = p.connect().unwrap();
    client.wait_connected(T).unwrap();
    client
        .send_telemetry(Message::new(&b"over tls"[..]))
        .unwrap();
    received(&emu, "blocking-dev", "over tls");
    client.shutdown(Duration::from_secs(2)).unwrap();
}

#[test]
fn a_group_member_over_websocket_and_plain_tcp() {
    let emu = Emu::start_with_plain();
    let g = emu.create_enrollment_group("fleet").unwrap();
    for (rid, transport) in [
        ("ws-member", Transport::WebSocket),
        ("tcp-member", Transport::PlainTcp),
    ] {
        let base = ProvisioningOptions::group_key(&emu.id_scope(), rid, &g.primary_key().unwrap())
            .unwrap();
        let (client, registration) =
            provision_and_connect(&emu.provisioning(base, transport)).unwrap();
        assert_eq!(registration.device_id.as_str(), rid);
        client.wait_connected(T).unwrap();
        client
            .send_telemetry(Message::new(rid.as_bytes().to_vec()))
            .unwrap();
        received(&emu, rid, rid);
        assert_eq!(emu.device(rid).unwrap().primary_key(), g.device_key(rid));
        client.shutdown(Duration::from_secs(2)).unwrap();
    }
}

#[test]
fn an_x509_enrollment_then_the_same_certificate_at_the_hub() {
    let emu = Emu::start();
    let (cert, key) = x509_enrollment(&emu, "cam-9");
    let base = ProvisioningOptions::x509(&emu.id_scope(), "cam-9", cert, key).unwrap();
    let (client, registration) =
        provision_and_connect(&emu.provisioning(base, Transport::Mqtt)).unwrap();
    assert_eq!(registration.device_id.as_str(), "cam-9");
    assert!(matches!(
        emu.device("cam-9").unwrap().authentication,
        DeviceAuthentication::X509 { .. }
    ));
    client.wait_connected(T).unwrap();
    client.send_telemetry(Message::new(&b"x509"[..])).unwrap();
    received(&emu, "cam-9", "x509");
    client.shutdown(Duration::from_secs(2)).unwrap();
}

#[test]
fn refusals_and_failed_registrations_are_typed_errors() {
    let emu = Emu::start();
    emu.create_enrollment("dev-1").unwrap();
    // A wrong key, and a registration id DPS does not know: refused.
    for (rid, code) in [
        ("dev-1", ConnectReturnCode::BadUserNameOrPassword),
        ("nobody", ConnectReturnCode::NotAuthorized),
    ] {
        let wrong = ProvisioningOptions::symmetric_key(&emu.id_scope(), rid, KEY_B64).unwrap();
        let err = provision(&emu.provisioning(wrong, Transport::Mqtt)).unwrap_err();
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
    let err = provision(&emu.provisioning(base, Transport::Mqtt)).unwrap_err();
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
    assert!(matches!(provision(&base), Err(Error::Options(_))));
}

#[test]
fn a_device_deleted_at_the_hub_provisions_again() {
    let emu = Arc::new(Emu::start());
    let e = emu.create_enrollment("phoenix").unwrap();
    let base =
        ProvisioningOptions::symmetric_key(&emu.id_scope(), "phoenix", &e.primary_key().unwrap())
            .unwrap();
    let opts = emu.provisioning(base, Transport::Mqtt);
    let runs = AtomicU32::new(0);
    run_provisioned(
        opts,
        ReprovisionPolicy::default(),
        |client, registration| {
            assert_eq!(registration.device_id.as_str(), "phoenix");
            let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
            client.wait_connected(T)?;
            let body = format!("run {n}");
            client.send_telemetry(Message::new(body.clone().into_bytes()))?;
            received(&emu, "phoenix", &body);
            if n == 1 {
                // The hub forgets the device: its reconnection is refused
                // (CONNACK 5), which calls for provisioning; run_provisioned
                // then stops this client.
                emu.delete_device("phoenix").unwrap();
                let stopped = client.wait_status(|s| s.state == ConnectionState::Stopped, T);
                assert!(stopped.is_some(), "the client was not stopped");
                return Err(Error::Closed);
            }
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert!(emu.device("phoenix").is_ok(), "provisioning made it again");
    assert_eq!(emu.telemetry().len(), 2);
}

#[test]
fn repeated_failed_connects_call_for_provisioning() {
    let emu = Emu::start();
    let e = emu.create_enrollment("flaky").unwrap();
    let base =
        ProvisioningOptions::symmetric_key(&emu.id_scope(), "flaky", &e.primary_key().unwrap())
            .unwrap();
    let (client, _) = provision_and_connect(&emu.provisioning(base, Transport::Mqtt)).unwrap();
    client.wait_connected(T).unwrap();
    let policy = ReprovisionPolicy::default().with_after_failed_connects(3);
    // The watch is in the driver's channel before the connection drops
    // (one channel, taken in order).
    let watch = client.watch_reprovision(policy).unwrap();
    assert!(watch.try_get().is_none(), "fired at once");
    emu.refuse_connects("flaky", Duration::from_secs(30))
        .unwrap();
    emu.drop_connection("flaky").unwrap();
    assert_eq!(
        watch.wait_timeout(Duration::from_secs(20)).unwrap(),
        ReprovisionReason::FailedConnects(3)
    );
    // The blocking form, on another thread; a client that stops ends it.
    let waiter = {
        let client = client.clone();
        std::thread::spawn(move || client.reprovision_needed(ReprovisionPolicy::never()))
    };
    // Whether its watch reached the driver before the shutdown or after,
    // it ends with `Closed`.
    client.shutdown(Duration::from_secs(1)).unwrap();
    assert!(matches!(waiter.join().unwrap(), Err(Error::Closed)));
}
