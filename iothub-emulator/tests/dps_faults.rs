//! DPS fault injection through the service API (`POST /dps/faults`) and
//! the library, seen by a raw-codec provisioning client over plain TCP:
//! 429 with retry-after, injected error statuses, refused CONNECTs, slow
//! assignments, silence and dropped connections.

mod common;

use common::{Client, DpsAnswer, dps_connect, http_json};
use iothub_emulator::{DEFAULT_ID_SCOPE, Emulator, EmulatorError, EmulatorHandle};
use iothub_proto::auth::{ProvisioningAttestation, SharedAccessKey};
use iothub_proto::mqtt::{ConnectReturnCode, Packet};
use iothub_proto::topic::{RequestId, dps_poll, dps_register};
use serde_json::{Value, json};

async fn start() -> EmulatorHandle {
    Emulator::builder()
        .in_memory()
        .plain_dps(true)
        .start()
        .await
        .unwrap()
}

fn attestation(emu: &EmulatorHandle, registration_id: &str) -> ProvisioningAttestation {
    let e = emu.create_enrollment(registration_id).unwrap();
    ProvisioningAttestation::SymmetricKey(
        SharedAccessKey::from_base64(&e.primary_key().unwrap()).unwrap(),
    )
}

/// A connected, subscribed DPS client.
async fn dps_client(emu: &EmulatorHandle, registration_id: &str) -> Client {
    let a = attestation(emu, registration_id);
    let mut c = Client::plain(emu.plain_dps_addr().unwrap()).await;
    let ack = c
        .connect_packet(dps_connect(DEFAULT_ID_SCOPE, registration_id, &a))
        .await;
    assert!(ack.code().is_accepted(), "{ack:?}");
    c.dps_subscribe().await;
    c
}

fn register_body(registration_id: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"registrationId": registration_id})).unwrap()
}

async fn register(c: &mut Client, registration_id: &str, rid: u64) -> DpsAnswer {
    c.dps_request(
        dps_register(&RequestId::from(rid)),
        &register_body(registration_id),
        &rid.to_string(),
    )
    .await
}

async fn faults(emu: &EmulatorHandle, body: Value) -> (u16, Value) {
    let r = http_json(emu.http_addr(), "POST", "/dps/faults", body).await;
    (r.status, r.json())
}

#[tokio::test]
async fn throttling_and_injected_statuses_over_the_service_api() {
    let emu = start().await;
    let mut c = dps_client(&emu, "dev-1").await;

    let (status, body) = faults(
        &emu,
        json!({"throttle": {"count": 1, "retryAfter": 7}, "failRequests": {"count": 2, "status": 500}}),
    )
    .await;
    assert_eq!((status, body), (200, json!({"dropped": 0})));
    // Throttling comes first, then the failures, then the real answer.
    let a = register(&mut c, "dev-1", 1).await;
    assert_eq!((a.status, a.retry_after), (429, Some(7)));
    assert_eq!(a.body["errorCode"], 429_001);
    for rid in [2, 3] {
        let a = register(&mut c, "dev-1", rid).await;
        assert_eq!((a.status, a.retry_after), (500, None));
        assert_eq!(a.body["errorCode"], 500_001);
    }
    let a = register(&mut c, "dev-1", 4).await;
    assert_eq!(a.status, 202);

    // 401, through the library this time.
    emu.dps_fail_next_requests(1, 401).unwrap();
    assert_eq!(register(&mut c, "dev-1", 5).await.status, 401);
    assert_eq!(register(&mut c, "dev-1", 6).await.status, 202);
    assert!(matches!(
        emu.dps_fail_next_requests(1, 200),
        Err(EmulatorError::BadRequest(_))
    ));
    emu.shutdown().await;
}

#[tokio::test]
async fn refused_connects_and_a_slow_assignment() {
    let emu = start().await;
    let a = attestation(&emu, "dev-1");
    let (status, _) = faults(
        &emu,
        json!({"refuseConnects": {"count": 1, "returnCode": 3}, "delayAssignmentPolls": 2}),
    )
    .await;
    assert_eq!(status, 200);
    let mut c = Client::plain(emu.plain_dps_addr().unwrap()).await;
    let ack = c
        .connect_packet(dps_connect(DEFAULT_ID_SCOPE, "dev-1", &a))
        .await;
    assert_eq!(ack.code(), ConnectReturnCode::ServerUnavailable);
    c.expect_closed().await;

    let mut c = dps_client(&emu, "dev-1").await;
    let first = register(&mut c, "dev-1", 1).await;
    assert_eq!(first.status, 202);
    let op = first.body["operationId"].as_str().unwrap().to_owned();
    // Two injected `assigning` polls, then the result.
    for rid in 2..4u64 {
        let a = c
            .dps_request(dps_poll(&RequestId::from(rid), &op), b"", &rid.to_string())
            .await;
        assert_eq!(
            (a.status, a.body["status"].as_str()),
            (202, Some("assigning"))
        );
        assert!(a.retry_after.is_some());
    }
    let done = c
        .dps_request(dps_poll(&RequestId::from(4), &op), b"", "4")
        .await;
    assert_eq!(
        (done.status, done.body["status"].as_str()),
        (200, Some("assigned"))
    );
    // The device exists as soon as it was told it is assigned.
    assert!(emu.device("dev-1").is_ok());
    emu.shutdown().await;
}

#[tokio::test]
async fn silence_and_dropped_connections() {
    let emu = start().await;
    let mut c = dps_client(&emu, "dev-1").await;
    let mut other = dps_client(&emu, "dev-2").await;

    // Silent: request 1 is never answered; the first answer after the
    // silence ends is request 2's.
    let (status, _) = faults(&emu, json!({"silence": true})).await;
    assert_eq!(status, 200);
    let pid = c
        .publish(
            &dps_register(&RequestId::from(1)),
            iothub_proto::mqtt::QoS::AtLeastOnce,
            &register_body("dev-1"),
        )
        .await;
    // The PUBACK comes from the step that handled (and did not answer)
    // the request.
    assert_eq!(c.recv().await, Some(Packet::Puback(pid.unwrap())));
    emu.dps_silence(false);
    let a = register(&mut c, "dev-1", 2).await;
    assert_eq!(a.status, 202);

    // Dropping one registration's connections leaves the others.
    let (status, body) = faults(&emu, json!({"dropConnections": "dev-2"})).await;
    assert_eq!((status, body), (200, json!({"dropped": 1})));
    other.expect_closed().await;
    assert_eq!(register(&mut c, "dev-1", 3).await.status, 202);
    assert_eq!(emu.dps_drop_connections(None), 1);
    c.expect_closed().await;
    assert_eq!(emu.dps_drop_connections(None), 0);
    emu.shutdown().await;
}

#[tokio::test]
async fn bad_fault_requests_are_refused_and_apply_nothing() {
    let emu = start().await;
    for (body, says) in [
        (json!({"throttel": {}}), "throttel"),
        (json!({"failRequests": {"status": 200}}), "400 to 599"),
        (
            json!({"failRequests": {"count": -1, "status": 500}}),
            "count",
        ),
        (json!({"refuseConnects": {"returnCode": 0}}), "returnCode"),
        // A value of the wrong kind is refused, not taken as the default.
        (json!({"refuseConnects": {"returnCode": "4"}}), "returnCode"),
        (
            json!({"delayAssignmentPolls": "two"}),
            "delayAssignmentPolls",
        ),
        (json!({"silence": 1}), "silence"),
        (json!({"dropConnections": 3}), "dropConnections"),
        (json!([1]), "object"),
        // A valid member beside a bad one is not applied either.
        (
            json!({"throttle": {"count": 1}, "silence": "yes"}),
            "silence",
        ),
    ] {
        let (status, answer) = faults(&emu, body.clone()).await;
        assert_eq!(status, 400, "{body}");
        let message = answer["message"].as_str().unwrap();
        assert!(message.contains(says), "{body}: {message}");
    }
    // Nothing was applied: a registration goes through.
    let mut c = dps_client(&emu, "dev-1").await;
    assert_eq!(register(&mut c, "dev-1", 1).await.status, 202);
    emu.shutdown().await;
}
