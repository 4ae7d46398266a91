//! DPS registration records and the hub registry: a device told
//! `assigned` can connect to the hub at once (its identity is created
//! before the answer leaves), and the registration records are kept in
//! the data directory across a restart.

mod common;

use common::{Client, dps_connect, http_json, unix_now};
use iothub_emulator::{DEFAULT_ID_SCOPE, Emulator, EmulatorHandle};
use iothub_proto::auth::{
    ConnectionString, ProvisioningAttestation, RegistrationId, SharedAccessKey, UsernameOptions,
};
use iothub_proto::mqtt::{Connect, ConnectReturnCode};
use serde_json::Value;

fn key(b64: &str) -> SharedAccessKey {
    SharedAccessKey::from_base64(b64).unwrap()
}

/// Provisions over plain DPS; the final answer's body.
async fn provision(
    emu: &EmulatorHandle,
    registration_id: &str,
    attestation: &ProvisioningAttestation,
) -> Value {
    let mut c = Client::plain(emu.plain_dps_addr().unwrap()).await;
    let ack = c
        .connect_packet(dps_connect(DEFAULT_ID_SCOPE, registration_id, attestation))
        .await;
    assert!(ack.code().is_accepted(), "{ack:?}");
    c.dps_subscribe().await;
    let (_, last) = c.dps_provision(registration_id).await;
    assert_eq!(last.status, 200, "{last:?}");
    assert_eq!(last.body["status"], "assigned");
    last.body["registrationState"].clone()
}

/// A hub CONNECT from what provisioning returned and the device's key.
fn hub_connect(assigned: &Value, key_b64: &str) -> Connect {
    let cs = ConnectionString::parse(&format!(
        "HostName={};DeviceId={};SharedAccessKey={key_b64}",
        assigned["assignedHub"].as_str().unwrap(),
        assigned["deviceId"].as_str().unwrap(),
    ))
    .unwrap();
    let creds = cs.connect_credentials(&UsernameOptions::default(), unix_now() + 3600);
    Connect::new(creds.client_id.as_str())
        .unwrap()
        .with_keep_alive(60)
        .with_username(creds.username.as_str())
        .unwrap()
        .with_password(creds.expose_password().unwrap().to_vec())
        .unwrap()
}

#[tokio::test]
async fn a_device_connects_the_moment_it_is_told_it_is_assigned() {
    let emu = Emulator::builder()
        .in_memory()
        .plain_mqtt(true)
        .plain_dps(true)
        .start()
        .await
        .unwrap();
    let group = emu.create_enrollment_group("fleet").unwrap();
    let group_key = key(&group.primary_key().unwrap());
    // Group members: none of them exists in the registry before it is
    // assigned. Each connects right after the answer, without waiting.
    for n in 0..10 {
        let rid = format!("member-{n}");
        assert!(emu.device(&rid).is_err());
        let attestation =
            ProvisioningAttestation::group(&group_key, &RegistrationId::new(rid.as_str()).unwrap());
        let assigned = provision(&emu, &rid, &attestation).await;
        let mut hub = Client::plain(emu.plain_addr().unwrap()).await;
        let ack = hub
            .connect_packet(hub_connect(&assigned, &group.device_key(&rid).unwrap()))
            .await;
        assert_eq!(ack.code(), ConnectReturnCode::Accepted, "{rid}");
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn registration_records_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let start_at = || {
        Emulator::builder()
            .data_dir(dir.path())
            .plain_dps(true)
            .start()
    };
    let emu = start_at().await.unwrap();
    let e = emu.create_enrollment("dev-1").unwrap();
    let g = emu.create_enrollment_group("fleet").unwrap();
    provision(
        &emu,
        "dev-1",
        &ProvisioningAttestation::SymmetricKey(key(&e.primary_key().unwrap())),
    )
    .await;
    let rid = RegistrationId::new("member-1").unwrap();
    provision(
        &emu,
        "member-1",
        &ProvisioningAttestation::group(&key(&g.primary_key().unwrap()), &rid),
    )
    .await;
    let before = [
        emu.dps_registration("dev-1").unwrap(),
        emu.dps_registration("member-1").unwrap(),
    ];
    emu.shutdown().await;

    let emu = start_at().await.unwrap();
    for b in &before {
        let after = emu.dps_registration(&b.registration_id).unwrap();
        assert_eq!(after.device_id, b.device_id);
        assert_eq!(after.assigned_hub, b.assigned_hub);
        assert_eq!(after.enrollment_group_id, b.enrollment_group_id);
        assert_eq!(after.operation_id, b.operation_id);
        assert_eq!(after.substatus, b.substatus);
        assert_eq!(after.request_payload, b.request_payload);
        // Kept to the millisecond.
        let drift = after
            .assigned_at
            .duration_since(b.assigned_at)
            .unwrap_or_else(|e| e.duration());
        assert!(drift.as_millis() < 1, "{drift:?}");
    }
    assert_eq!(
        before[1].enrollment_group_id.as_deref(),
        Some("fleet"),
        "the group is recorded"
    );
    assert_eq!(
        before[0].request_payload,
        Some(serde_json::json!({"site": "test"}))
    );
    let r = http_json(
        emu.http_addr(),
        "GET",
        "/registrations/member-1",
        Value::Null,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["operationId"], before[1].operation_id.as_str());
    assert_eq!(r.json()["enrollmentGroupId"], "fleet");
    emu.shutdown().await;
}

/// The real binary on a data directory, killed with SIGKILL the moment
/// its DPS endpoint says `assigned`: the device and the registration are
/// already on disk when the answer leaves.
#[tokio::test]
async fn an_assignment_is_on_disk_before_the_device_hears_of_it() {
    use std::io::BufRead as _;
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_iothub-emulator"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--mqtt-port", "0", "--ws-port", "0", "--http-port", "0"])
        .args(["--dps-port", "0", "--dps-ws-port", "0"])
        .args(["--plain-dps-port", "0", "--enrollment", "dev-1"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let (mut dps, mut key_b64) = (None, None);
    while dps.is_none() || key_b64.is_none() {
        let mut line = String::new();
        assert!(out.read_line(&mut line).unwrap() > 0, "exited early");
        let line = line.trim_end();
        if let Some(a) = line.strip_prefix("plain-dps ") {
            dps = Some(a.parse::<std::net::SocketAddr>().unwrap());
        }
        if let Some(k) = line.split("SymmetricKey=").nth(1) {
            key_b64 = Some(k.to_owned());
        }
    }
    let mut c = Client::plain(dps.unwrap()).await;
    let attestation = ProvisioningAttestation::SymmetricKey(key(key_b64.as_ref().unwrap()));
    let ack = c
        .connect_packet(dps_connect(DEFAULT_ID_SCOPE, "dev-1", &attestation))
        .await;
    assert!(ack.code().is_accepted());
    c.dps_subscribe().await;
    let (_, last) = c.dps_provision("dev-1").await;
    assert_eq!(last.body["status"], "assigned");
    child.kill().unwrap(); // SIGKILL: no graceful shutdown.
    child.wait().unwrap();

    let emu = Emulator::builder()
        .data_dir(dir.path())
        .start()
        .await
        .unwrap();
    assert_eq!(
        emu.device("dev-1").unwrap().primary_key().as_deref(),
        key_b64.as_deref()
    );
    let r = emu
        .dps_registration("dev-1")
        .expect("the registration record");
    assert_eq!(r.operation_id, last.body["operationId"].as_str().unwrap());
    emu.shutdown().await;
}
