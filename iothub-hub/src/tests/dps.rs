//! The DPS engine against a raw codec client.

use super::*;
use crate::dps::{DpsService, EnrollmentOptions};
use iothub_proto::auth::{
    IdScope, ProvisioningAttestation, ProvisioningUsername, RegistrationId, SasToken,
};
use iothub_proto::provisioning::{OperationStatus, RegistrationStatus, ServiceError, Substatus};
use iothub_proto::topic::{DPS_RESPONSE_FILTER, HubTopic};
use serde_json::json;
use std::string::ToString;

const SCOPE: &str = "0ne00000A0A";
const DEFAULT_HUB: &str = "hub.example.net";

fn rid(s: &str) -> RegistrationId {
    RegistrationId::new(s).unwrap()
}

fn username(r: &str) -> ProvisioningUsername {
    ProvisioningUsername::new(IdScope::new(SCOPE).unwrap(), rid(r))
}

fn connect_for(r: &str, attestation: &ProvisioningAttestation, expiry: u64) -> Connect {
    let creds = attestation.connect_credentials(&username(r), expiry);
    let mut c = Connect::new(creds.client_id.as_str())
        .unwrap()
        .with_keep_alive(60)
        .with_clean_session(true)
        .with_username(creds.username.as_str())
        .unwrap();
    if let Some(p) = creds.expose_password() {
        c = c.with_password(p.to_vec()).unwrap();
    }
    c
}

fn sym(b: u8) -> ProvisioningAttestation {
    ProvisioningAttestation::SymmetricKey(key(b))
}

/// An answer: status, request id, retry-after, body.
#[derive(Debug)]
struct Answer {
    status: u16,
    rid: String,
    retry_after: Option<u32>,
    qos: QoS,
    body: Bytes,
}

struct Dps {
    svc: DpsService,
    now_ms: u64,
    next_rid: u64,
}

impl Dps {
    fn new() -> Dps {
        Dps {
            svc: DpsService::new(SCOPE, HostName::new(DEFAULT_HUB).unwrap()),
            now_ms: 0,
            next_rid: 0,
        }
    }

    fn unix(&self) -> u64 {
        T0 + self.now_ms / 1000
    }

    fn send(&mut self, conn: ConnId, packet: impl Into<Packet>) {
        let bytes = packet.into().to_bytes();
        let (now, unix) = (Instant::from_millis(self.now_ms), self.unix());
        self.svc.handle_input(conn, now, unix, &bytes);
    }

    fn recv(&mut self, conn: ConnId) -> Vec<Packet> {
        let mut buf = BytesMut::new();
        while let Some(b) = self.svc.poll_transmit(conn) {
            buf.extend_from_slice(&b);
        }
        let mut out = Vec::new();
        while let Some(p) = mqtt::decode(&mut buf, MAX_PACKET_SIZE).unwrap() {
            out.push(p);
        }
        assert!(buf.is_empty());
        out
    }

    fn open(&mut self, connect: Connect) -> (ConnId, ConnectReturnCode) {
        let conn = self.svc.accept(Instant::ZERO, None, None);
        self.send(conn, connect);
        match self.recv(conn).as_slice() {
            [Packet::Connack(ack)] => {
                assert!(!ack.session_present());
                (conn, ack.code())
            }
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// Connects and subscribes (QoS 1).
    fn ready(&mut self, r: &str, attestation: &ProvisioningAttestation) -> ConnId {
        let unix = self.unix();
        let (conn, code) = self.open(connect_for(r, attestation, unix + 3600));
        assert_eq!(code, ConnectReturnCode::Accepted, "{r}");
        let sub = Subscribe::new(Pid::MIN, [(DPS_RESPONSE_FILTER, QoS::AtLeastOnce)]).unwrap();
        self.send(conn, sub);
        assert!(matches!(self.recv(conn).as_slice(), [Packet::Suback(_)]));
        conn
    }

    fn request(&mut self, conn: ConnId, topic: String, body: &[u8]) -> Vec<Answer> {
        let p = Publish::new(
            topic,
            QosPid::AtLeastOnce(Pid::new(9).unwrap()),
            Bytes::copy_from_slice(body),
        )
        .unwrap();
        self.send(conn, p);
        let mut answers = Vec::new();
        for p in self.recv(conn) {
            match p {
                Packet::Puback(pid) => assert_eq!(pid.get(), 9),
                Packet::Publish(p) => {
                    let Ok(HubTopic::DpsResponse {
                        status,
                        request_id,
                        retry_after,
                    }) = topic::parse(p.topic().as_str())
                    else {
                        panic!("not a DPS response: {p:?}")
                    };
                    answers.push(Answer {
                        status,
                        rid: String::from(request_id),
                        retry_after,
                        qos: p.qos(),
                        body: p.payload().clone(),
                    });
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        answers
    }

    fn one(&mut self, conn: ConnId, topic: String, body: &[u8]) -> Answer {
        let mut a = self.request(conn, topic, body);
        assert_eq!(a.len(), 1, "{a:?}");
        a.remove(0)
    }

    fn register(&mut self, conn: ConnId, r: &str, payload: Option<Value>) -> Answer {
        self.next_rid += 1;
        let body = iothub_proto::provisioning::RegisterRequest::new(r, payload).to_vec();
        let a = self.one(
            conn,
            topic::dps_register(&RequestId::from(self.next_rid)),
            &body,
        );
        assert_eq!(a.rid, format!("{}", self.next_rid));
        a
    }

    fn poll(&mut self, conn: ConnId, op: &str) -> Answer {
        self.next_rid += 1;
        self.one(
            conn,
            topic::dps_poll(&RequestId::from(self.next_rid), op),
            b"",
        )
    }
}

fn op_of(a: &Answer) -> OperationStatus {
    OperationStatus::parse(&a.body).unwrap()
}

#[test]
fn register_then_poll_assigns_and_journals() {
    let mut d = Dps::new();
    d.svc
        .add_individual_enrollment(rid("dev-1"), key(1), EnrollmentOptions::default());
    let conn = d.ready("dev-1", &sym(1));
    assert_eq!(d.svc.connection_registration(conn), Some(&rid("dev-1")));

    let a = d.register(conn, "dev-1", Some(json!({"modelId": "dtmi:x;1"})));
    assert_eq!(a.status, 202);
    assert_eq!(a.retry_after, Some(3));
    assert_eq!(a.qos, QoS::AtLeastOnce);
    let op = op_of(&a);
    assert_eq!(op.status, RegistrationStatus::Assigning);
    assert!(op.registration_state.is_none());
    assert!(d.svc.assignments().is_empty());

    let a = d.poll(conn, &op.operation_id);
    assert_eq!(a.status, 200);
    assert_eq!(a.retry_after, None);
    let body: Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(
        body,
        json!({
            "operationId": op.operation_id,
            "status": "assigned",
            "registrationState": {
                "registrationId": "dev-1",
                "assignedHub": DEFAULT_HUB,
                "deviceId": "dev-1",
                "status": "assigned",
                "substatus": "initialAssignment"
            }
        })
    );
    let journal = d.svc.take_assignments();
    assert_eq!(journal.len(), 1);
    let j = &journal[0];
    assert_eq!(j.registration_id, rid("dev-1"));
    assert_eq!(j.device_id.as_str(), "dev-1");
    assert_eq!(j.assigned_hub.as_str(), DEFAULT_HUB);
    assert_eq!(
        j.key.as_ref().unwrap().expose_secret(),
        key(1).expose_secret()
    );
    assert_eq!(j.request_payload, Some(json!({"modelId": "dtmi:x;1"})));
    assert_eq!(j.group, None);
    assert_eq!(j.conn, conn);
    // Polling again answers the same, without a second journal entry.
    let again = d.poll(conn, &op.operation_id);
    assert_eq!(again.body, a.body);
    assert!(d.svc.assignments().is_empty());
    assert_eq!(d.svc.counters().register_requests, 1);
    assert_eq!(d.svc.counters().polls, 2);
}

#[test]
fn enrollment_options_shape_the_result() {
    let mut d = Dps::new();
    let other_hub = HostName::new("other.example.net").unwrap();
    d.svc.add_individual_enrollment(
        rid("dev-1"),
        key(1),
        EnrollmentOptions::default()
            .with_iot_hub(other_hub.clone())
            .with_device_id(DeviceId::new("custom-id").unwrap())
            .with_returned_payload(json!({"fw": "1.2"}))
            .with_assigning_polls(2),
    );
    d.svc.set_retry_after(None);
    let conn = d.ready("dev-1", &sym(1));
    let a = d.register(conn, "dev-1", None);
    assert_eq!(a.retry_after, None);
    let op = op_of(&a).operation_id;
    for _ in 0..2 {
        let a = d.poll(conn, &op);
        assert_eq!(a.status, 202);
        assert_eq!(op_of(&a).status, RegistrationStatus::Assigning);
    }
    let done = op_of(&d.poll(conn, &op));
    let state = done.registration_state.unwrap();
    assert_eq!(done.status, RegistrationStatus::Assigned);
    assert_eq!(state.assigned_hub.as_deref(), Some("other.example.net"));
    assert_eq!(state.device_id.as_deref(), Some("custom-id"));
    assert_eq!(state.payload, Some(json!({"fw": "1.2"})));

    // Re-registering after the enrollment moved to another hub: migrated.
    d.svc
        .add_individual_enrollment(rid("dev-1"), key(1), EnrollmentOptions::default());
    let op = op_of(&d.register(conn, "dev-1", None)).operation_id;
    let state = op_of(&d.poll(conn, &op)).registration_state.unwrap();
    assert_eq!(state.substatus, Some(Substatus::DeviceDataMigrated));
    assert_eq!(state.assigned_hub.as_deref(), Some(DEFAULT_HUB));
}

#[test]
fn failed_and_disabled_enrollments() {
    let mut d = Dps::new();
    d.svc.add_individual_enrollment(
        rid("bad"),
        key(1),
        EnrollmentOptions::default().with_failure(400_209, "Custom allocation failed"),
    );
    d.svc
        .add_individual_enrollment(rid("off"), key(2), EnrollmentOptions::default());
    assert!(d.svc.set_enrollment_enabled("off", false));
    assert!(!d.svc.set_enrollment_enabled("nobody", false));
    let conn = d.ready("bad", &sym(1));
    let op = op_of(&d.register(conn, "bad", None)).operation_id;
    let done = op_of(&d.poll(conn, &op));
    assert_eq!(done.status, RegistrationStatus::Failed);
    let state = done.registration_state.unwrap();
    assert_eq!(state.error_code, Some(400_209));
    assert_eq!(state.status, Some(RegistrationStatus::Failed));

    let conn = d.ready("off", &sym(2));
    let op = op_of(&d.register(conn, "off", None)).operation_id;
    assert_eq!(
        op_of(&d.poll(conn, &op)).status,
        RegistrationStatus::Disabled
    );
    assert!(d.svc.assignments().is_empty());
}

#[test]
fn group_enrollments_admit_derived_keys() {
    let mut d = Dps::new();
    d.svc
        .add_group_enrollment("fleet", key(7), EnrollmentOptions::default());
    d.svc
        .add_individual_enrollment(rid("special"), key(8), EnrollmentOptions::default());
    let group_member = ProvisioningAttestation::group(&key(7), &rid("sensor-1"));
    let conn = d.ready("sensor-1", &group_member);
    let op = op_of(&d.register(conn, "sensor-1", None)).operation_id;
    assert_eq!(
        op_of(&d.poll(conn, &op)).status,
        RegistrationStatus::Assigned
    );
    let j = d.svc.take_assignments().remove(0);
    assert_eq!(j.group.as_deref(), Some("fleet"));
    assert_eq!(
        j.key.unwrap().expose_secret(),
        key(7).derive_for_registration("sensor-1").expose_secret()
    );
    // The group key itself, or another registration's derived key, is refused.
    let unix = d.unix();
    let (_, code) = d.open(connect_for("sensor-2", &sym(7), unix + 60));
    assert_eq!(code, ConnectReturnCode::BadUserNameOrPassword);
    let wrong = ProvisioningAttestation::group(&key(7), &rid("sensor-1"));
    let (_, code) = d.open(connect_for("sensor-2", &wrong, unix + 60));
    assert_eq!(code, ConnectReturnCode::BadUserNameOrPassword);
    // An individual enrollment wins over the groups.
    let derived = ProvisioningAttestation::group(&key(7), &rid("special"));
    let (_, code) = d.open(connect_for("special", &derived, unix + 60));
    assert_eq!(code, ConnectReturnCode::BadUserNameOrPassword);
    d.ready("special", &sym(8));
}

#[test]
fn x509_enrollments_need_no_password() {
    let mut d = Dps::new();
    d.svc
        .add_x509_enrollment(rid("cert-dev"), EnrollmentOptions::default());
    let conn = d.ready("cert-dev", &ProvisioningAttestation::X509);
    let op = op_of(&d.register(conn, "cert-dev", None)).operation_id;
    assert_eq!(
        op_of(&d.poll(conn, &op)).status,
        RegistrationStatus::Assigned
    );
    assert!(d.svc.take_assignments()[0].key.is_none());
}

#[test]
fn secondary_keys_and_removed_enrollments() {
    let mut d = Dps::new();
    d.svc
        .add_individual_enrollment(rid("dev-a"), key(1), EnrollmentOptions::default());
    d.svc
        .add_group_enrollment("fleet", key(3), EnrollmentOptions::default());
    let unix = d.unix();
    // Before the secondary key is set, it is refused.
    let (_, code) = d.open(connect_for("dev-a", &sym(2), unix + 60));
    assert_eq!(code, ConnectReturnCode::BadUserNameOrPassword);
    assert!(d.svc.set_individual_secondary_key("dev-a", Some(key(2))));
    assert!(d.svc.set_group_secondary_key("fleet", Some(key(4))));
    assert!(!d.svc.set_individual_secondary_key("fleet", Some(key(4))));
    assert!(!d.svc.set_group_secondary_key("dev-a", Some(key(4))));
    // Either key of the individual enrollment, and the journaled key is
    // the one that signed.
    d.ready("dev-a", &sym(1));
    let conn = d.ready("dev-a", &sym(2));
    let op = op_of(&d.register(conn, "dev-a", None)).operation_id;
    d.poll(conn, &op);
    let j = d.svc.take_assignments().remove(0);
    assert_eq!(j.key.unwrap().expose_secret(), key(2).expose_secret());
    // Keys derived from either group key.
    d.ready("g-1", &ProvisioningAttestation::group(&key(3), &rid("g-1")));
    let conn = d.ready("g-2", &ProvisioningAttestation::group(&key(4), &rid("g-2")));
    let op = op_of(&d.register(conn, "g-2", None)).operation_id;
    d.poll(conn, &op);
    let j = d.svc.take_assignments().remove(0);
    assert_eq!(j.group.as_deref(), Some("fleet"));
    assert_eq!(
        j.key.unwrap().expose_secret(),
        key(4).derive_for_registration("g-2").expose_secret()
    );
    // Cleared, then removed: refused.
    assert!(d.svc.set_individual_secondary_key("dev-a", None));
    let (_, code) = d.open(connect_for("dev-a", &sym(2), unix + 60));
    assert_eq!(code, ConnectReturnCode::BadUserNameOrPassword);
    assert!(d.svc.remove_individual_enrollment("dev-a"));
    assert!(!d.svc.remove_individual_enrollment("dev-a"));
    // A group may still admit it, with a derived key.
    let (_, code) = d.open(connect_for("dev-a", &sym(1), unix + 60));
    assert_eq!(code, ConnectReturnCode::BadUserNameOrPassword);
    d.ready(
        "dev-a",
        &ProvisioningAttestation::group(&key(3), &rid("dev-a")),
    );
    assert!(d.svc.remove_group_enrollment("fleet"));
    assert!(!d.svc.remove_group_enrollment("fleet"));
    let (_, code) = d.open(connect_for(
        "g-1",
        &ProvisioningAttestation::group(&key(3), &rid("g-1")),
        unix + 60,
    ));
    assert_eq!(code, ConnectReturnCode::NotAuthorized);
    // An X.509 enrollment has no key to add.
    d.svc
        .add_x509_enrollment(rid("cert"), EnrollmentOptions::default());
    assert!(!d.svc.set_individual_secondary_key("cert", Some(key(5))));
}

#[test]
fn x509_thumbprint_enrollments_check_the_certificate() {
    let mut d = Dps::new();
    d.svc.add_x509_thumbprint_enrollment(
        rid("cam"),
        vec!["AB01".into(), "cd02".into()],
        EnrollmentOptions::default(),
    );
    let unix = d.unix();
    let x509 = ProvisioningAttestation::X509;
    // No certificate: 5; another certificate: 4; either registered one
    // (case ignored): accepted without a password.
    let (_, code) = d.open(connect_for("cam", &x509, unix + 60));
    assert_eq!(code, ConnectReturnCode::NotAuthorized);
    for (seen, want) in [
        ("ee03", ConnectReturnCode::BadUserNameOrPassword),
        ("ab01", ConnectReturnCode::Accepted),
        ("CD02", ConnectReturnCode::Accepted),
    ] {
        let conn = d.svc.accept(Instant::ZERO, Some(seen.into()), None);
        d.send(conn, connect_for("cam", &x509, unix + 60));
        match d.recv(conn).as_slice() {
            [Packet::Connack(ack)] => assert_eq!(ack.code(), want, "{seen}"),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn closed_connections_can_be_forgotten() {
    let mut d = Dps::new();
    d.svc
        .add_individual_enrollment(rid("dev-1"), key(1), EnrollmentOptions::default());
    let conn = d.ready("dev-1", &sym(1));
    d.svc.remove_connection(conn);
    assert!(!d.svc.is_closed(conn), "an open connection stays");
    d.svc.client_closed(conn);
    assert!(d.svc.close_reason(conn).is_some());
    d.svc.remove_connection(conn);
    assert!(d.svc.is_closed(conn));
    assert_eq!(d.svc.close_reason(conn), None);
}

#[test]
fn connect_refusals() {
    use ConnectReturnCode as C;
    let mut d = Dps::new();
    d.svc
        .add_individual_enrollment(rid("dev-1"), key(1), EnrollmentOptions::default());
    let unix = d.unix();
    let good = connect_for("dev-1", &sym(1), unix + 60);
    let resource = iothub_proto::auth::dps_resource_uri(SCOPE, "dev-1");
    let token = |uri: &str, skn: Option<&str>, expiry| {
        SasToken::generate(uri, &key(1), expiry, skn)
            .expose_secret()
            .as_bytes()
            .to_vec()
    };
    let cases: Vec<(Connect, C)> = vec![
        (good.clone().with_keep_alive(1178), C::IdentifierRejected),
        (
            good.clone()
                .with_username("h.net/dev-1/?api-version=1")
                .unwrap(),
            C::BadUserNameOrPassword,
        ),
        (
            good.clone()
                .with_username("0ne99999999/registrations/dev-1/api-version=1")
                .unwrap(),
            C::BadUserNameOrPassword,
        ),
        (
            connect_for("dev-1", &sym(1), unix + 60)
                .with_username(username("dev-2").to_string())
                .unwrap(),
            C::IdentifierRejected,
        ),
        (connect_for("nobody", &sym(1), unix + 60), C::NotAuthorized),
        (
            connect_for("dev-1", &sym(2), unix + 60),
            C::BadUserNameOrPassword,
        ),
        (
            Connect::new("dev-1")
                .unwrap()
                .with_username(username("dev-1").to_string())
                .unwrap(),
            C::BadUserNameOrPassword,
        ),
        (
            good.clone()
                .with_password(token(
                    "0ne00000A0A/registrations/dev-2",
                    Some("registration"),
                    unix + 60,
                ))
                .unwrap(),
            C::NotAuthorized,
        ),
        (
            good.clone()
                .with_password(token(&resource, Some("device"), unix + 60))
                .unwrap(),
            C::BadUserNameOrPassword,
        ),
        (
            good.clone()
                .with_password(token(&resource, Some("registration"), unix))
                .unwrap(),
            C::NotAuthorized,
        ),
    ];
    for (i, (connect, want)) in cases.into_iter().enumerate() {
        let (conn, code) = d.open(connect);
        assert_eq!(code, want, "case {i}");
        assert!(d.svc.is_closed(conn));
        assert_eq!(d.svc.close_reason(conn), Some(CloseReason::Refused(want)));
    }
    d.svc.refuse_connects(1, C::ServerUnavailable);
    assert_eq!(d.open(good.clone()).1, C::ServerUnavailable);
    assert_eq!(d.open(good.clone()).1, C::Accepted);
    // A token without `skn` is accepted, as the service does (Microsoft's
    // Python SDK sends none).
    let no_skn = good
        .with_password(token(&resource, None, unix + 60))
        .unwrap();
    assert_eq!(d.open(no_skn).1, C::Accepted);
    assert_eq!(d.svc.counters().connects_refused, 11);
    assert_eq!(d.svc.counters().connects_accepted, 2);
    // No enrollment at all.
    let mut empty = Dps::new();
    let unix = empty.unix();
    assert_eq!(
        empty.open(connect_for("dev-1", &sym(1), unix + 60)).1,
        C::NotAuthorized
    );
}

#[test]
fn subscriptions_and_unanswered_requests() {
    let mut d = Dps::new();
    d.svc
        .add_individual_enrollment(rid("dev-1"), key(1), EnrollmentOptions::default());
    let unix = d.unix();
    let (conn, _) = d.open(connect_for("dev-1", &sym(1), unix + 60));
    // Not subscribed: no answer.
    let body = iothub_proto::provisioning::RegisterRequest::new("dev-1", None).to_vec();
    assert!(
        d.request(conn, topic::dps_register(&RequestId::from(1)), &body)
            .is_empty()
    );
    assert_eq!(d.svc.counters().unanswered, 1);
    let sub = Subscribe::new(
        Pid::MIN,
        [
            (DPS_RESPONSE_FILTER, QoS::ExactlyOnce),
            ("$iothub/twin/res/#", QoS::AtMostOnce),
        ],
    )
    .unwrap();
    d.send(conn, sub);
    let packets = d.recv(conn);
    let [Packet::Suback(ack)] = packets.as_slice() else {
        panic!("{packets:?}")
    };
    assert_eq!(
        ack.return_codes(),
        &[
            SubscribeReturnCode::Success(QoS::AtLeastOnce),
            SubscribeReturnCode::Failure
        ]
    );
    // Silenced: acknowledged, not answered.
    d.svc.silence_responses(true);
    assert!(
        d.request(conn, topic::dps_register(&RequestId::from(2)), &body)
            .is_empty()
    );
    d.svc.silence_responses(false);
    assert_eq!(d.register(conn, "dev-1", None).status, 202);
    // QoS 0 subscription: QoS 0 answers.
    let sub = Subscribe::new(Pid::MIN, [(DPS_RESPONSE_FILTER, QoS::AtMostOnce)]).unwrap();
    d.send(conn, sub);
    d.recv(conn);
    assert_eq!(d.register(conn, "dev-1", None).qos, QoS::AtMostOnce);
    // Unsubscribed: silence again.
    d.send(
        conn,
        iothub_proto::mqtt::Unsubscribe::new(Pid::MIN, [DPS_RESPONSE_FILTER]).unwrap(),
    );
    assert!(matches!(d.recv(conn).as_slice(), [Packet::Unsuback(_)]));
    assert!(
        d.request(conn, topic::dps_register(&RequestId::from(3)), &body)
            .is_empty()
    );
}

#[test]
fn bad_requests_and_injected_failures() {
    let mut d = Dps::new();
    d.svc
        .add_individual_enrollment(rid("dev-1"), key(1), EnrollmentOptions::default());
    d.svc
        .add_individual_enrollment(rid("dev-2"), key(2), EnrollmentOptions::default());
    let conn = d.ready("dev-1", &sym(1));
    let a = d.register(conn, "someone-else", None);
    assert_eq!(a.status, 400);
    assert_eq!(ServiceError::parse(&a.body).error_code, Some(400_004));
    let a = d.one(conn, topic::dps_register(&RequestId::from(50)), b"{");
    assert_eq!(a.status, 400);
    assert_eq!(d.poll(conn, "4.nothing").status, 404);
    // Another registration's operation is not found either.
    let conn2 = d.ready("dev-2", &sym(2));
    let theirs = op_of(&d.register(conn2, "dev-2", None)).operation_id;
    assert_eq!(d.poll(conn, &theirs).status, 404);

    d.svc.throttle_next(2, Some(5));
    let a = d.register(conn, "dev-1", None);
    assert_eq!((a.status, a.retry_after), (429, Some(5)));
    let e = ServiceError::parse(&a.body);
    assert_eq!(e.error_code, Some(429_001));
    assert!(e.tracking_id.is_some());
    assert_eq!(d.poll(conn, &theirs).status, 429);
    assert_eq!(d.svc.counters().throttled, 2);
    d.svc.fail_next_requests(1, 503);
    assert_eq!(d.register(conn, "dev-1", None).status, 503);
    assert_eq!(d.register(conn, "dev-1", None).status, 202);
}

#[test]
fn protocol_rules() {
    let mut d = Dps::new();
    d.svc
        .add_individual_enrollment(rid("dev-1"), key(1), EnrollmentOptions::default());
    // Telemetry is no DPS topic.
    let conn = d.ready("dev-1", &sym(1));
    d.request(conn, String::from("devices/dev-1/messages/events/"), b"x");
    assert_eq!(
        d.svc.close_reason(conn),
        Some(CloseReason::ProtocolViolation(Violation::ForeignTopic))
    );
    // QoS 2.
    let conn = d.ready("dev-1", &sym(1));
    let p = Publish::new(
        topic::dps_register(&RequestId::from(1)),
        QosPid::ExactlyOnce(Pid::MIN),
        Bytes::new(),
    )
    .unwrap();
    d.send(conn, p);
    assert_eq!(
        d.svc.close_reason(conn),
        Some(CloseReason::ProtocolViolation(Violation::Qos2))
    );
    // Not CONNECT first.
    let conn = d.svc.accept(Instant::ZERO, None, None);
    d.send(conn, Packet::Pingreq);
    assert_eq!(
        d.svc.close_reason(conn),
        Some(CloseReason::ProtocolViolation(Violation::NotConnectFirst))
    );
    // PINGREQ, keep-alive, DISCONNECT.
    let conn = d.ready("dev-1", &sym(1));
    d.send(conn, Packet::Pingreq);
    assert_eq!(d.recv(conn), vec![Packet::Pingresp]);
    assert_eq!(
        d.svc.poll_timeout().map(Instant::as_millis),
        Some(d.now_ms + 90_001)
    );
    d.now_ms += 90_001;
    let (now, unix) = (Instant::from_millis(d.now_ms), d.unix());
    d.svc.handle_timeout(now, unix);
    assert_eq!(
        d.svc.close_reason(conn),
        Some(CloseReason::KeepAliveTimeout)
    );
    let conn = d.ready("dev-1", &sym(1));
    d.send(conn, Packet::Disconnect);
    assert_eq!(
        d.svc.close_reason(conn),
        Some(CloseReason::ClientDisconnected)
    );
    let conn = d.ready("dev-1", &sym(1));
    d.svc.drop_connection(conn);
    assert!(d.svc.is_closed(conn));
    d.send(conn, Packet::Pingreq);
    assert!(d.recv(conn).is_empty());
    assert!(d.svc.counters().protocol_violations >= 3);
    assert_eq!(d.svc.id_scope(), SCOPE);
}

#[test]
fn delayed_assignments_answer_assigning_for_more_polls() {
    let mut d = Dps::new();
    d.svc.add_individual_enrollment(
        rid("dev-1"),
        key(1),
        EnrollmentOptions::default().with_assigning_polls(1),
    );
    let conn = d.ready("dev-1", &sym(1));
    d.svc.delay_assignments(2);
    let op = op_of(&d.register(conn, "dev-1", None)).operation_id;
    // The enrollment's one poll plus the injected two.
    for _ in 0..3 {
        let a = d.poll(conn, &op);
        assert_eq!((a.status, a.retry_after), (202, Some(3)));
        assert_eq!(op_of(&a).status, RegistrationStatus::Assigning);
    }
    assert_eq!(
        op_of(&d.poll(conn, &op)).status,
        RegistrationStatus::Assigned
    );
    // Off again: back to the enrollment's own polls.
    d.svc.delay_assignments(0);
    let op = op_of(&d.register(conn, "dev-1", None)).operation_id;
    assert_eq!(d.poll(conn, &op).status, 202);
    assert_eq!(d.poll(conn, &op).status, 200);
}

#[test]
fn x509_ca_groups_admit_verified_certificates_by_common_name() {
    use crate::dps::VerifiedCertificate;
    let mut d = Dps::new();
    d.svc
        .add_x509_ca_group_enrollment("cams", EnrollmentOptions::default());
    d.svc
        .add_group_enrollment("sym", key(1), EnrollmentOptions::default());
    assert!(!d.svc.set_group_secondary_key("cams", Some(key(2))));
    let unix = d.unix();
    let x509 = ProvisioningAttestation::X509;
    let open = |d: &mut Dps, verified: Option<VerifiedCertificate>, r: &str| {
        let conn = d.svc.accept(Instant::ZERO, Some("ab01".into()), verified);
        d.send(conn, connect_for(r, &x509, unix + 60));
        match d.recv(conn).as_slice() {
            [Packet::Connack(ack)] => (conn, ack.code()),
            other => panic!("{other:?}"),
        }
    };
    let cams = || Some(VerifiedCertificate::new("cam-1", vec![s("cams")]));
    // The common name must be the registration id; the group must be an
    // X.509 CA group; without a verified certificate there is no password.
    assert_eq!(
        open(&mut d, cams(), "cam-2").1,
        ConnectReturnCode::NotAuthorized
    );
    let sym_only = Some(VerifiedCertificate::new("cam-1", vec![s("sym")]));
    assert_eq!(
        open(&mut d, sym_only, "cam-1").1,
        ConnectReturnCode::NotAuthorized
    );
    assert_eq!(
        open(&mut d, None, "cam-1").1,
        ConnectReturnCode::BadUserNameOrPassword
    );
    let (conn, code) = open(&mut d, cams(), "cam-1");
    assert_eq!(code, ConnectReturnCode::Accepted);
    let sub = Subscribe::new(Pid::MIN, [(DPS_RESPONSE_FILTER, QoS::AtLeastOnce)]).unwrap();
    d.send(conn, sub);
    d.recv(conn);
    let op = op_of(&d.register(conn, "cam-1", None)).operation_id;
    assert_eq!(
        op_of(&d.poll(conn, &op)).status,
        RegistrationStatus::Assigned
    );
    let a = d.svc.take_assignments().remove(0);
    assert_eq!(a.group.as_deref(), Some("cams"));
    assert!(a.key.is_none());
    assert_eq!(a.thumbprint.as_deref(), Some("ab01"));
    assert_eq!(a.device_id.as_str(), "cam-1");
}

#[test]
fn a_dps_connection_without_connect_is_closed_at_the_connect_deadline() {
    let mut d = Dps::new();
    d.svc
        .add_individual_enrollment(rid("dev-1"), key(1), EnrollmentOptions::default());
    assert_eq!(d.svc.connect_timeout(), Some(DEFAULT_CONNECT_TIMEOUT));
    d.svc
        .set_connect_timeout(Some(Duration::from_millis(2_000)));
    d.now_ms = 500;
    let silent = d.svc.accept(Instant::from_millis(d.now_ms), None, None);
    // One byte of a CONNECT: not enough.
    let partial = d.svc.accept(Instant::from_millis(d.now_ms), None, None);
    let connect = connect_for("dev-1", &sym(1), d.unix() + 3600);
    let bytes = Packet::Connect(connect.clone()).to_bytes();
    let (now, unix) = (Instant::from_millis(d.now_ms), d.unix());
    d.svc.handle_input(partial, now, unix, &bytes[..1]);
    // A whole CONNECT in time: kept.
    let connected = d.svc.accept(Instant::from_millis(d.now_ms), None, None);
    d.send(connected, connect);
    assert!(matches!(d.recv(connected).as_slice(), [Packet::Connack(a)] if a.code().is_accepted()));
    assert_eq!(d.svc.poll_timeout().map(Instant::as_millis), Some(2_500));
    d.now_ms = 2_499;
    let (now, unix) = (Instant::from_millis(d.now_ms), d.unix());
    d.svc.handle_timeout(now, unix);
    assert!(!d.svc.is_closed(silent) && !d.svc.is_closed(partial));
    d.now_ms = 2_500;
    let (now, unix) = (Instant::from_millis(d.now_ms), d.unix());
    d.svc.handle_timeout(now, unix);
    for conn in [silent, partial] {
        assert_eq!(d.svc.close_reason(conn), Some(CloseReason::ConnectTimeout));
        assert!(d.recv(conn).is_empty());
    }
    assert!(!d.svc.is_closed(connected));
    assert_eq!(d.svc.counters().connect_timeouts, 2);
    // Only the connected client's keep-alive (60 s from 500 ms) is left.
    assert_eq!(d.svc.poll_timeout().map(Instant::as_millis), Some(90_501));
}
