//! The emulator's Device Provisioning Service endpoint, driven by a raw
//! codec client over real sockets (TLS with the emulator's CA, WebSocket
//! over TLS, plain TCP): register, poll, assigned — then connect to the
//! emulator's hub with the result. Individual and group enrollments,
//! X.509 thumbprints, refusals, the service API, restarts, and the CLI.

mod common;

use std::io::BufRead as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::{Client, WAIT, dps_connect, http, http_json, tls_config, tls_connect, unix_now};
use iothub_emulator::{
    DEFAULT_ID_SCOPE, DeviceAuthentication, Emulator, EmulatorHandle, EnrollmentKind,
    EnrollmentSpec, thumbprint,
};
use iothub_proto::auth::{
    ConnectionString, ProvisioningAttestation, RegistrationId, SharedAccessKey, UsernameOptions,
};
use iothub_proto::mqtt::{ConnectReturnCode, Packet, QoS};
use serde_json::{Value, json};

async fn start() -> EmulatorHandle {
    Emulator::builder()
        .in_memory()
        .plain_dps(true)
        .start()
        .await
        .unwrap()
}

fn key(b64: &str) -> SharedAccessKey {
    SharedAccessKey::from_base64(b64).unwrap()
}

/// A DPS connection over TLS with the emulator's CA.
async fn dps_tls(emu: &EmulatorHandle) -> Client {
    Client::tls_with(emu.dps_addr(), tls_config(emu.ca_pem().unwrap(), None)).await
}

/// A DPS connection over WebSocket over TLS.
async fn dps_ws(emu: &EmulatorHandle) -> Client {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let config = tls_config(emu.ca_pem().unwrap(), None);
    let tls = tls_connect(emu.dps_ws_addr(), config).await.unwrap();
    let url = format!(
        "wss://localhost:{}/$iothub/websocket",
        emu.dps_ws_addr().port()
    );
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", "mqtt".parse().unwrap());
    let (ws, _) = tokio_tungstenite::client_async(req, tls).await.unwrap();
    Client::from_ws(ws)
}

/// Connects (accepted), subscribes, registers and polls to the end.
async fn provision(
    mut c: Client,
    scope: &str,
    rid: &str,
    attestation: &ProvisioningAttestation,
) -> (common::DpsAnswer, common::DpsAnswer) {
    let ack = c.connect_packet(dps_connect(scope, rid, attestation)).await;
    assert_eq!(ack.code(), ConnectReturnCode::Accepted, "{rid}");
    assert!(!ack.session_present());
    c.dps_subscribe().await;
    c.dps_provision(rid).await
}

/// A hub CONNECT built from what provisioning returned and the key the
/// device holds.
fn hub_connect(assigned: &Value, key_b64: &str) -> iothub_proto::mqtt::Connect {
    let cs = ConnectionString::parse(&format!(
        "HostName={};DeviceId={};SharedAccessKey={key_b64}",
        assigned["assignedHub"].as_str().unwrap(),
        assigned["deviceId"].as_str().unwrap(),
    ))
    .unwrap();
    let creds = cs.connect_credentials(&UsernameOptions::default(), unix_now() + 3600);
    iothub_proto::mqtt::Connect::new(creds.client_id.as_str())
        .unwrap()
        .with_keep_alive(60)
        .with_username(creds.username.as_str())
        .unwrap()
        .with_password(creds.expose_password().unwrap().to_vec())
        .unwrap()
}

/// Connects to the hub as `device` with `connect`, which must be
/// accepted, and sends one telemetry message that the emulator must
/// receive.
async fn connect_and_send(
    emu: &EmulatorHandle,
    connect: iothub_proto::mqtt::Connect,
    device: &str,
) {
    let mut hub = Client::tls(emu).await;
    let ack = hub.connect_packet(connect).await;
    assert_eq!(ack.code(), ConnectReturnCode::Accepted);
    hub.publish(
        &format!("devices/{device}/messages/events/tag={device}"),
        QoS::AtLeastOnce,
        b"provisioned",
    )
    .await;
    let m = emu
        .wait_for_telemetry(|m| m.property("tag") == Some(device), WAIT)
        .await
        .expect("telemetry from the provisioned device");
    assert_eq!(m.identity.device_id().as_str(), device);
}

#[tokio::test]
async fn individual_enrollment_register_poll_assigned_then_connect() {
    let emu = start().await;
    assert_eq!(emu.id_scope(), DEFAULT_ID_SCOPE);
    let e = emu.create_enrollment("dev-1").unwrap();
    assert_eq!(e.kind, EnrollmentKind::Individual);
    assert_eq!(e.id_scope, DEFAULT_ID_SCOPE);
    assert_eq!(e.iot_hub_host_name, "localhost");
    let device_key = e.device_key("dev-1").unwrap();
    assert_eq!(Some(device_key.clone()), e.primary_key());
    assert!(e.secondary_key().is_some());
    assert!(emu.device("dev-1").is_err(), "not in the registry yet");

    let attestation = ProvisioningAttestation::SymmetricKey(key(&device_key));
    let (first, last) =
        provision(dps_tls(&emu).await, DEFAULT_ID_SCOPE, "dev-1", &attestation).await;
    assert_eq!(first.body["status"], "assigning");
    assert_eq!(first.retry_after, Some(1), "the emulator's default");
    assert_eq!(last.status, 200);
    let state = &last.body["registrationState"];
    assert_eq!(last.body["status"], "assigned");
    assert_eq!(state["assignedHub"], "localhost");
    assert_eq!(state["deviceId"], "dev-1");
    assert_eq!(state["substatus"], "initialAssignment");

    // The device is in the registry with the enrollment's keys…
    let dev = emu.device("dev-1").unwrap();
    assert_eq!(dev.primary_key(), e.primary_key());
    assert_eq!(dev.secondary_key(), e.secondary_key());
    let reg = emu.dps_registration("dev-1").unwrap();
    assert_eq!(reg.device_id, "dev-1");
    assert_eq!(reg.assigned_hub, "localhost");
    assert_eq!(reg.enrollment_group_id, None);
    assert_eq!(reg.operation_id, last.body["operationId"].as_str().unwrap());
    assert_eq!(reg.request_payload, Some(json!({"site": "test"})));
    // …and connects with the key it provisioned with.
    connect_and_send(&emu, hub_connect(state, &device_key), "dev-1").await;

    // Provisioning again (the secondary key works too) keeps the device.
    let secondary = ProvisioningAttestation::SymmetricKey(key(&e.secondary_key().unwrap()));
    let mut c = Client::plain(emu.plain_dps_addr().unwrap()).await;
    let ack = c
        .connect_packet(dps_connect(DEFAULT_ID_SCOPE, "dev-1", &secondary))
        .await;
    assert_eq!(ack.code(), ConnectReturnCode::Accepted);
    c.dps_subscribe().await;
    let (_, last) = c.dps_provision("dev-1").await;
    assert_eq!(last.body["registrationState"]["deviceId"], "dev-1");
    assert_eq!(emu.devices().len(), 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn group_enrollment_with_a_derived_key_over_websocket() {
    let emu = Emulator::builder()
        .in_memory()
        .id_scope("0ne0000CAFE")
        .dps_retry_after(2)
        .start()
        .await
        .unwrap();
    let g = emu.create_enrollment_group("fleet").unwrap();
    assert_eq!(g.kind, EnrollmentKind::Group);
    let group_key = key(&g.primary_key().unwrap());
    let derived = group_key.derive_for_registration("sensor-7");
    assert_eq!(
        g.device_key("sensor-7").unwrap(),
        STANDARD.encode(derived.expose_secret())
    );
    let attestation =
        ProvisioningAttestation::group(&group_key, &RegistrationId::new("sensor-7").unwrap());
    let (first, last) =
        provision(dps_ws(&emu).await, "0ne0000CAFE", "sensor-7", &attestation).await;
    assert_eq!(first.retry_after, Some(2));
    let state = &last.body["registrationState"];
    assert_eq!(state["deviceId"], "sensor-7");
    assert_eq!(state["assignedHub"], "localhost");
    // The hub device has the derived keys of both group keys.
    let dev = emu.device("sensor-7").unwrap();
    assert_eq!(dev.primary_key(), g.device_key("sensor-7"));
    let derived_secondary = key(&g.secondary_key().unwrap()).derive_for_registration("sensor-7");
    assert_eq!(
        dev.secondary_key(),
        Some(STANDARD.encode(derived_secondary.expose_secret()))
    );
    assert_eq!(
        emu.dps_registration("sensor-7")
            .unwrap()
            .enrollment_group_id
            .as_deref(),
        Some("fleet")
    );
    connect_and_send(
        &emu,
        hub_connect(state, &g.device_key("sensor-7").unwrap()),
        "sensor-7",
    )
    .await;
    // The group key itself is not a device key.
    let mut c = dps_tls(&emu).await;
    let ack = c
        .connect_packet(dps_connect(
            "0ne0000CAFE",
            "sensor-8",
            &ProvisioningAttestation::SymmetricKey(group_key),
        ))
        .await;
    assert_eq!(ack.code(), ConnectReturnCode::BadUserNameOrPassword);
    emu.shutdown().await;
}

#[tokio::test]
async fn wrong_keys_unknown_ids_and_disabled_enrollments_are_refused() {
    let emu = start().await;
    let e = emu.create_enrollment("dev-1").unwrap();
    let good = ProvisioningAttestation::SymmetricKey(key(&e.primary_key().unwrap()));
    let wrong =
        ProvisioningAttestation::SymmetricKey(SharedAccessKey::from_bytes([9u8; 32]).unwrap());
    let refused = |scope: &'static str, rid: &'static str, a: ProvisioningAttestation| {
        let emu = &emu;
        async move {
            let mut c = dps_tls(emu).await;
            let ack = c.connect_packet(dps_connect(scope, rid, &a)).await;
            c.expect_closed().await;
            ack.code()
        }
    };
    assert_eq!(
        refused(DEFAULT_ID_SCOPE, "dev-1", wrong.clone()).await,
        ConnectReturnCode::BadUserNameOrPassword
    );
    assert_eq!(
        refused("0ne00000002", "dev-1", good.clone()).await,
        ConnectReturnCode::BadUserNameOrPassword,
        "another ID scope"
    );
    assert_eq!(
        refused(DEFAULT_ID_SCOPE, "nobody", wrong.clone()).await,
        ConnectReturnCode::NotAuthorized,
        "no enrollment admits it"
    );
    // With a group, an unknown id needs a key derived from the group key.
    emu.create_enrollment_group("fleet").unwrap();
    assert_eq!(
        refused(DEFAULT_ID_SCOPE, "nobody", wrong.clone()).await,
        ConnectReturnCode::BadUserNameOrPassword
    );
    // Disabled: connects, but the registration ends `disabled` and no
    // device is created.
    emu.put_enrollment("dev-1", EnrollmentSpec::default().with_enabled(false))
        .unwrap();
    assert_eq!(
        emu.enrollment("dev-1").unwrap().primary_key(),
        e.primary_key(),
        "a PUT without keys keeps them"
    );
    let (_, last) = provision(dps_tls(&emu).await, DEFAULT_ID_SCOPE, "dev-1", &good).await;
    assert_eq!(last.body["status"], "disabled");
    assert!(emu.device("dev-1").is_err());
    assert!(emu.dps_registration("dev-1").is_none());
    // Deleted: refused (only the group is left, and this is not its key).
    emu.delete_enrollment("dev-1").unwrap();
    assert!(emu.delete_enrollment("dev-1").is_err());
    assert_eq!(
        refused(DEFAULT_ID_SCOPE, "dev-1", good).await,
        ConnectReturnCode::BadUserNameOrPassword
    );
    // A registration for another id than the connection's is a 400.
    let e2 = emu.create_enrollment("dev-2").unwrap();
    let mut c = dps_tls(&emu).await;
    let a2 = ProvisioningAttestation::SymmetricKey(key(&e2.primary_key().unwrap()));
    assert!(
        c.connect_packet(dps_connect(DEFAULT_ID_SCOPE, "dev-2", &a2))
            .await
            .code()
            .is_accepted()
    );
    c.dps_subscribe().await;
    let a = c
        .dps_request(
            iothub_proto::topic::dps_register(&iothub_proto::topic::RequestId::from(5)),
            br#"{"registrationId":"dev-3"}"#,
            "5",
        )
        .await;
    assert_eq!(a.status, 400);
    emu.shutdown().await;
}

#[tokio::test]
async fn x509_enrollment_by_thumbprint_then_connect_with_the_certificate() {
    let emu = start().await;
    let make = |cn: &str| {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![cn.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem(), thumbprint(cert.der()))
    };
    let (cert, cert_key, tp) = make("cam-1");
    let (other, other_key, _) = make("cam-1");
    // Through the service API, with the certificate itself.
    let r = http_json(
        emu.http_addr(),
        "PUT",
        "/enrollments/cam-1",
        json!({"registrationId": "cam-1", "deviceId": "camera-one",
               "attestation": {"type": "x509", "x509": {"clientCertificates": {
                   "primary": {"certificate": cert}}}}}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    let body = r.json();
    assert_eq!(body["attestation"]["type"], "x509");
    assert_eq!(
        body["attestation"]["x509"]["clientCertificates"]["primary"]["info"]["sha256Thumbprint"],
        tp.as_str()
    );
    assert_eq!(body["deviceId"], "camera-one");

    let ca = emu.ca_pem().unwrap().to_owned();
    let with = |c: &str, k: &str| tls_config(&ca, Some((c, k)));
    // Another certificate: refused.
    let mut c = Client::tls_with(emu.dps_addr(), with(&other, &other_key)).await;
    let ack = c
        .connect_packet(dps_connect(
            DEFAULT_ID_SCOPE,
            "cam-1",
            &ProvisioningAttestation::X509,
        ))
        .await;
    assert_eq!(ack.code(), ConnectReturnCode::BadUserNameOrPassword);
    // The enrolled one: assigned, as `camera-one`.
    let c = Client::tls_with(emu.dps_addr(), with(&cert, &cert_key)).await;
    let (_, last) = provision(c, DEFAULT_ID_SCOPE, "cam-1", &ProvisioningAttestation::X509).await;
    assert_eq!(last.body["registrationState"]["deviceId"], "camera-one");
    let dev = emu.device("camera-one").unwrap();
    assert!(matches!(
        dev.authentication,
        DeviceAuthentication::X509 { ref primary_thumbprint, .. } if *primary_thumbprint == tp
    ));
    // The hub takes the same certificate.
    let mut hub = Client::tls_with(emu.mqtt_addr(), with(&cert, &cert_key)).await;
    let connect = iothub_proto::mqtt::Connect::new("camera-one")
        .unwrap()
        .with_username("localhost/camera-one/?api-version=2021-04-12")
        .unwrap();
    assert!(hub.connect_packet(connect).await.code().is_accepted());
    emu.shutdown().await;
}

#[tokio::test]
async fn service_api_enrollments_and_groups() {
    let emu = start().await;
    let h = emu.http_addr();
    // Keys generated when absent.
    let r = http_json(
        h,
        "PUT",
        "/enrollments/dev-1?api-version=2021-10-01",
        json!({"registrationId": "dev-1"}),
    )
    .await;
    assert_eq!(r.status, 200);
    let generated = r.json();
    assert_eq!(generated["attestation"]["type"], "symmetricKey");
    let k1 = generated["attestation"]["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(STANDARD.decode(&k1).unwrap().len(), 32);
    assert_eq!(generated["deviceId"], "dev-1");
    assert_eq!(generated["provisioningStatus"], "enabled");
    assert_eq!(generated["iotHubHostName"], "localhost");
    assert_eq!(generated["idScope"], DEFAULT_ID_SCOPE);
    assert_eq!(
        emu.enrollment("dev-1").unwrap().primary_key(),
        Some(k1.clone())
    );
    // Given keys are kept, with an initial twin.
    let given = STANDARD.encode([5u8; 32]);
    let r = http_json(
        h,
        "PUT",
        "/enrollments/dev-2",
        json!({"registrationId": "dev-2",
               "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": given, "secondaryKey": null}},
               "initialTwin": {"tags": {"site": "north"}, "properties": {"desired": {"interval": 7}}}}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["attestation"]["symmetricKey"]["primaryKey"],
        given.as_str()
    );
    assert_eq!(
        r.json()["attestation"]["symmetricKey"]["secondaryKey"],
        Value::Null
    );
    // Groups.
    let r = http_json(
        h,
        "PUT",
        "/enrollmentGroups/fleet",
        json!({"enrollmentGroupId": "fleet", "attestation": {"type": "symmetricKey"}}),
    )
    .await;
    assert_eq!(r.status, 200);
    let group = r.json();
    assert_eq!(group["enrollmentGroupId"], "fleet");
    assert!(group["attestation"]["symmetricKey"]["primaryKey"].is_string());
    assert!(group.get("registrationId").is_none());
    // Reads and lists.
    let r = http(h, "GET", "/enrollments/dev-2", &[], b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["initialTwin"]["tags"], json!({"site": "north"}));
    let list = http(h, "GET", "/enrollments", &[], b"").await.json();
    assert_eq!(list.as_array().unwrap().len(), 2);
    let groups = http(h, "GET", "/enrollmentGroups", &[], b"").await.json();
    assert_eq!(groups.as_array().unwrap().len(), 1);
    assert_eq!(
        http(h, "GET", "/enrollmentGroups/fleet", &[], b"")
            .await
            .json(),
        group
    );
    // Bad requests.
    for (path, body) in [
        ("/enrollments/dev-1", json!({"registrationId": "other"})),
        ("/enrollments/bad%20id", json!({})),
        (
            "/enrollments/dev-1",
            json!({"attestation": {"type": "tpm"}}),
        ),
        (
            "/enrollments/dev-1",
            json!({"iotHubHostName": "elsewhere.azure-devices.net"}),
        ),
        ("/enrollments/dev-1", json!({"provisioningStatus": "maybe"})),
        (
            "/enrollments/dev-1",
            json!({"deviceId": "no spaces allowed"}),
        ),
        (
            "/enrollmentGroups/fleet",
            json!({"enrollmentGroupId": "fleet2"}),
        ),
        (
            "/enrollmentGroups/fleet",
            json!({"attestation": {"type": "x509", "x509": {"clientCertificates": {"primary": {"info": {"sha256Thumbprint": "ab"}}}}}}),
        ),
    ] {
        let r = http_json(h, "PUT", path, body.clone()).await;
        assert_eq!(
            r.status,
            400,
            "{path} {body}: {:?}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(r.json()["message"].is_string());
    }
    assert_eq!(
        emu.enrollment("dev-1").unwrap().primary_key(),
        Some(k1),
        "unchanged"
    );

    // Provisioning dev-2 creates the device with the initial twin.
    let (_, last) = provision(
        dps_tls(&emu).await,
        DEFAULT_ID_SCOPE,
        "dev-2",
        &ProvisioningAttestation::SymmetricKey(SharedAccessKey::from_bytes([5u8; 32]).unwrap()),
    )
    .await;
    assert_eq!(last.body["status"], "assigned");
    let twin = http(h, "GET", "/twins/dev-2", &[], b"").await.json();
    assert_eq!(twin["tags"], json!({"site": "north"}));
    assert_eq!(twin["properties"]["desired"]["interval"], 7);
    let reg = http(h, "GET", "/registrations/dev-2", &[], b"").await;
    assert_eq!(reg.status, 200);
    assert_eq!(reg.json()["assignedHub"], "localhost");
    assert_eq!(reg.json()["status"], "assigned");
    assert_eq!(reg.json()["payload"], json!({"site": "test"}));
    assert_eq!(
        http(h, "GET", "/registrations/dev-1", &[], b"")
            .await
            .status,
        404
    );

    // Deletes.
    assert_eq!(
        http(h, "DELETE", "/enrollments/dev-2", &[], b"")
            .await
            .status,
        204
    );
    assert_eq!(
        http(h, "DELETE", "/enrollments/dev-2", &[], b"")
            .await
            .status,
        404
    );
    assert_eq!(
        http(h, "GET", "/enrollments/dev-2", &[], b"").await.status,
        404
    );
    assert!(
        emu.device("dev-2").is_ok(),
        "the device stays in the registry"
    );
    assert_eq!(
        http(h, "DELETE", "/enrollmentGroups/fleet", &[], b"")
            .await
            .status,
        204
    );
    assert_eq!(
        http(h, "GET", "/enrollmentGroups/fleet", &[], b"")
            .await
            .status,
        404
    );
    assert!(emu.enrollment_groups().is_empty());
    emu.shutdown().await;
}

#[tokio::test]
async fn enrollments_and_provisioned_devices_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let start_at = || {
        Emulator::builder()
            .data_dir(dir.path())
            .id_scope("0ne000BEEF1")
            .start()
    };
    let emu = start_at().await.unwrap();
    let e = emu.create_enrollment("dev-1").unwrap();
    let g = emu.create_enrollment_group("fleet").unwrap();
    emu.put_enrollment(
        "dev-9",
        EnrollmentSpec::default()
            .with_keys(SharedAccessKey::from_bytes([1u8; 32]).unwrap(), None)
            .with_device_id("nine")
            .with_enabled(false),
    )
    .unwrap();
    let attestation = ProvisioningAttestation::SymmetricKey(key(&e.primary_key().unwrap()));
    provision(dps_tls(&emu).await, "0ne000BEEF1", "dev-1", &attestation).await;
    emu.sync();
    emu.shutdown().await;

    let emu = start_at().await.unwrap();
    assert_eq!(emu.enrollment("dev-1").unwrap(), e);
    assert_eq!(emu.enrollment_group("fleet").unwrap(), g);
    let nine = emu.enrollment("dev-9").unwrap();
    assert_eq!(nine.device_id.as_deref(), Some("nine"));
    assert!(!nine.enabled);
    assert_eq!(emu.enrollments().len(), 2);
    // The device provisioned before the restart is still registered.
    assert_eq!(emu.device("dev-1").unwrap().primary_key(), e.primary_key());
    // A group member provisions after the restart with the kept group key.
    let rid = RegistrationId::new("member-1").unwrap();
    let member = ProvisioningAttestation::group(&key(&g.primary_key().unwrap()), &rid);
    let (_, last) = provision(dps_tls(&emu).await, "0ne000BEEF1", "member-1", &member).await;
    assert_eq!(last.body["status"], "assigned");
    // A deletion is kept too.
    emu.delete_enrollment_group("fleet").unwrap();
    emu.shutdown().await;
    let emu = start_at().await.unwrap();
    assert!(emu.enrollment_groups().is_empty());
    assert!(emu.device("member-1").is_ok());
    emu.shutdown().await;
    // Asking for existing enrollments at start leaves them as they are.
    let emu = Emulator::builder()
        .data_dir(dir.path())
        .id_scope("0ne000BEEF1")
        .enrollment("dev-9")
        .enrollment("dev-1")
        .start()
        .await
        .unwrap();
    assert_eq!(emu.enrollment("dev-9").unwrap(), nine);
    assert_eq!(emu.create_enrollment("dev-1").unwrap(), e);
    emu.shutdown().await;
}

#[tokio::test]
async fn the_binary_prints_the_dps_endpoint_and_enrollments() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_iothub-emulator"))
        .args(["--in-memory", "--id-scope", "0ne0000ABCD"])
        .args(["--mqtt-port", "0", "--ws-port", "0", "--http-port", "0"])
        .args([
            "--dps-port",
            "0",
            "--dps-ws-port",
            "0",
            "--plain-dps-port",
            "0",
        ])
        .args(["--enrollment", "cli-dev", "--enrollment-group", "cli-fleet"])
        .args(["--connect-timeout", "1"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut lines = std::collections::HashMap::new();
    while !lines.contains_key("enrollment-group") {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "exited early: {lines:?}"
        );
        let (k, v) = line.trim_end().split_once(' ').unwrap();
        lines.insert(k.to_owned(), v.to_owned());
    }
    // --connect-timeout 1: a DPS socket that sends nothing is closed
    // (EOF) after a second.
    let mut silent = tokio::net::TcpStream::connect(lines["plain-dps"].as_str())
        .await
        .unwrap();
    let t0 = tokio::time::Instant::now();
    let mut buf = [0u8; 16];
    let read =
        tokio::time::timeout(WAIT, tokio::io::AsyncReadExt::read(&mut silent, &mut buf)).await;
    let _ = (child.kill(), child.wait());
    assert!(matches!(read, Ok(Ok(0))), "{read:?}");
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(lines["id-scope"], "0ne0000ABCD");
    for k in ["dps", "dps-websocket", "plain-dps", "mqtt"] {
        let a: std::net::SocketAddr = lines[k].parse().unwrap();
        assert!(a.ip().is_loopback() && a.port() != 0, "{k}");
    }
    let e = &lines["enrollment"];
    let rest = e
        .strip_prefix("cli-dev IdScope=0ne0000ABCD;RegistrationId=cli-dev;SymmetricKey=")
        .unwrap();
    assert_eq!(STANDARD.decode(rest).unwrap().len(), 32);
    let g = &lines["enrollment-group"];
    let rest = g
        .strip_prefix("cli-fleet IdScope=0ne0000ABCD;GroupKey=")
        .unwrap();
    assert_eq!(STANDARD.decode(rest).unwrap().len(), 32);
    let help = Command::new(env!("CARGO_BIN_EXE_iothub-emulator"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--dps-port",
        "--dps-ws-port",
        "--plain-dps-port",
        "--id-scope",
        "--dps-retry-after",
        "--enrollment",
        "--enrollment-group",
        "--connect-timeout",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}

#[tokio::test]
async fn a_dps_connection_that_goes_silent_is_closed_and_forgotten() {
    let emu = start().await;
    let e = emu.create_enrollment("dev-1").unwrap();
    let a = ProvisioningAttestation::SymmetricKey(key(&e.primary_key().unwrap()));
    let mut c = Client::plain(emu.plain_dps_addr().unwrap()).await;
    let connect = dps_connect(DEFAULT_ID_SCOPE, "dev-1", &a).with_keep_alive(1);
    assert!(c.connect_packet(connect).await.code().is_accepted());
    // Keep-alive 1 s: closed after 1.5 s of silence.
    let t0 = tokio::time::Instant::now();
    assert!(matches!(
        c.recv_within(Duration::from_secs(5)).await,
        Ok(None)
    ));
    assert!(t0.elapsed() >= Duration::from_millis(1400));
    // A PINGREQ on a fresh connection is answered.
    let mut c = dps_tls(&emu).await;
    assert!(
        c.connect_packet(dps_connect(DEFAULT_ID_SCOPE, "dev-1", &a))
            .await
            .code()
            .is_accepted()
    );
    c.send(Packet::Pingreq).await;
    assert!(matches!(c.recv().await, Some(Packet::Pingresp)));
    emu.shutdown().await;
}
