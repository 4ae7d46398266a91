//! The provisioning session against the DPS engine (`iothub_hub::dps`),
//! end to end in simulated time; then provision-then-connect: the result
//! builds a device session that connects to the hub engine. Offline, and in
//! microseconds of real time.

mod pair;

use std::time::Duration;

use bytes::BytesMut;
use iothub_hub::dps::{DpsService, EnrollmentOptions};
use iothub_hub::{ConnId, Hub};
use iothub_proto::auth::{
    Credential, HostName, IdScope, ProvisioningAttestation, RegistrationId, SasToken,
    SharedAccessKey, dps_resource_uri,
};
use iothub_proto::mqtt::{self, ConnectReturnCode, Packet};
use iothub_proto::provisioning::{
    Config, ConnectRefused, DisconnectReason, Event, Output, ProvisioningError, ProvisioningState,
    Registration, RegistrationStatus, Session, Substatus, TransportClosed, TransportCommand,
};
use iothub_proto::session::{self, Message};
use iothub_proto::time::Instant;
use serde_json::json;

const SCOPE: &str = "0ne0000DEAD";
const HUB: &str = "assigned.azure-devices.net";
const UNIX0: u64 = 1_800_000_000;

fn key(b: u8) -> SharedAccessKey {
    SharedAccessKey::from_bytes([b; 32]).unwrap()
}

fn rid(s: &str) -> RegistrationId {
    RegistrationId::new(s).unwrap()
}

fn config(r: &str, attestation: ProvisioningAttestation) -> Config {
    Config::new(IdScope::new(SCOPE).unwrap(), rid(r), attestation).with_seed(3)
}

fn service() -> DpsService {
    DpsService::new(SCOPE, HostName::new(HUB).unwrap())
}

/// A provisioning session wired to the DPS engine; `step` jumps the clock
/// to the next wake-up of either side.
struct DpsPair {
    session: Session,
    dps: DpsService,
    conn: Option<ConnId>,
    conns: Vec<ConnId>,
    now_ms: u64,
    events: Vec<Event>,
    /// DPS→device bytes are delivered in pieces of this size.
    chunk: Option<usize>,
    /// Transports that fail to open while non-zero.
    failing_opens: u32,
    /// Every packet the device sent, decoded.
    up: Vec<Packet>,
    up_buf: BytesMut,
    /// The session's last `Output::Timeout` (set by `pump`).
    deadline: Option<Instant>,
}

impl DpsPair {
    fn new(config: Config, dps: DpsService) -> DpsPair {
        DpsPair {
            session: Session::new(config, Instant::ZERO).unwrap(),
            dps,
            conn: None,
            conns: Vec::new(),
            now_ms: 0,
            events: Vec::new(),
            chunk: None,
            failing_opens: 0,
            up: Vec::new(),
            up_buf: BytesMut::new(),
            deadline: None,
        }
    }

    fn now(&self) -> Instant {
        Instant::from_millis(self.now_ms)
    }

    fn unix(&self) -> u64 {
        UNIX0 + self.now_ms / 1000
    }

    fn pump(&mut self) {
        loop {
            let mut moved = false;
            loop {
                match self.session.poll_output() {
                    Output::Transport(cmd) => {
                        moved = true;
                        self.transport(cmd);
                    }
                    Output::Transmit(bytes) => {
                        moved = true;
                        self.up_buf.extend_from_slice(&bytes);
                        while let Some(p) =
                            mqtt::decode(&mut self.up_buf, mqtt::MAX_PACKET_SIZE).unwrap()
                        {
                            self.up.push(p);
                        }
                        if let Some(conn) = self.conn {
                            let (now, unix) = (self.now(), self.unix());
                            self.dps.handle_input(conn, now, unix, &bytes);
                        }
                    }
                    Output::Event(e) => {
                        moved = true;
                        self.events.push(e);
                    }
                    Output::Timeout(at) => {
                        self.deadline = at;
                        break;
                    }
                }
            }
            if let Some(conn) = self.conn {
                while let Some(bytes) = self.dps.poll_transmit(conn) {
                    moved = true;
                    let now = self.now();
                    match self.chunk {
                        Some(n) if n > 0 => {
                            for piece in bytes.chunks(n) {
                                self.session.handle_input(now, piece);
                            }
                        }
                        _ => self.session.handle_input(now, &bytes),
                    }
                }
                if self.dps.is_closed(conn) {
                    moved = true;
                    self.conn = None;
                    let now = self.now();
                    self.session
                        .handle_transport_closed(now, TransportClosed::ClosedByPeer);
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// Carries out a transport command of the session.
    fn transport(&mut self, cmd: TransportCommand) {
        match cmd {
            TransportCommand::Open => {
                if self.failing_opens > 0 {
                    self.failing_opens -= 1;
                    let now = self.now();
                    self.session
                        .handle_transport_closed(now, TransportClosed::ConnectFailed);
                    return;
                }
                let conn = self.dps.accept(self.now(), None, None);
                self.conn = Some(conn);
                self.conns.push(conn);
                self.up_buf.clear();
                let (now, unix) = (self.now(), self.unix());
                self.session.handle_transport_connected(now, unix);
            }
            TransportCommand::Close => {
                if let Some(old) = self.conn.take() {
                    self.dps.client_closed(old);
                }
            }
        }
    }

    /// The session's last timeout (after `pump`).
    fn timeout(&mut self) -> Option<Instant> {
        self.pump();
        self.deadline
    }

    fn next_wakeup(&self) -> Option<u64> {
        let s = self.deadline.map(Instant::as_millis);
        let d = self.dps.poll_timeout().map(Instant::as_millis);
        match (s, d) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs until the session is finished (or `max` of simulated time).
    fn run(&mut self, max: Duration) -> Option<Result<Registration, ProvisioningError>> {
        let end = self.now_ms + max.as_millis() as u64;
        for _ in 0..100_000 {
            self.pump();
            if self.session.state() == ProvisioningState::Finished {
                break;
            }
            let Some(at) = self.next_wakeup() else { break };
            if at > end {
                break;
            }
            self.now_ms = self.now_ms.max(at);
            let (now, unix) = (self.now(), self.unix());
            self.dps
                .handle_timeout(Instant::from_millis(self.now_ms), unix);
            self.session.handle_timeout(now, unix);
        }
        self.pump();
        self.session.outcome().cloned()
    }

    fn requests(&self) -> Vec<String> {
        self.up
            .iter()
            .filter_map(|p| match p {
                Packet::Publish(p) => Some(p.topic().as_str().to_owned()),
                _ => None,
            })
            .collect()
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn assigned(outcome: Option<Result<Registration, ProvisioningError>>) -> Registration {
    match outcome {
        Some(Ok(r)) => r,
        other => panic!("not assigned: {other:?}"),
    }
}

#[test]
fn register_202_poll_assigned() {
    let mut dps = service();
    dps.add_individual_enrollment(
        rid("dev-1"),
        key(1),
        EnrollmentOptions::default().with_returned_payload(json!({"fw": "2.0"})),
    );
    let attestation = ProvisioningAttestation::SymmetricKey(key(1));
    let mut p = DpsPair::new(
        config("dev-1", attestation).with_payload(Some(json!({"site": "north"}))),
        dps,
    );
    let r = assigned(p.run(secs(60)));
    assert_eq!(r.assigned_hub.as_str(), HUB);
    assert_eq!(r.device_id.as_str(), "dev-1");
    assert_eq!(r.registration_id, "dev-1");
    assert_eq!(r.substatus, Some(Substatus::InitialAssignment));
    assert_eq!(r.payload, Some(json!({"fw": "2.0"})));
    // 202 with retry-after 3, then the poll: assigned after 3 s.
    assert_eq!(p.now_ms, 3_000);
    let op = r.operation_id.clone();
    assert!(matches!(
        p.events.as_slice(),
        [
            Event::Connected,
            Event::Assigning { operation_id, retry_after },
            Event::Disconnected { reason: DisconnectReason::Requested },
            Event::Assigned(_),
        ] if *operation_id == op && *retry_after == secs(3)
    ));
    let topics = p.requests();
    assert_eq!(topics.len(), 2, "{topics:?}");
    assert_eq!(topics[0], "$dps/registrations/PUT/iotdps-register/?$rid=1");
    assert!(
        topics[1].starts_with(
            "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=2&operationId=4."
        )
    );
    assert!(matches!(p.up.last(), Some(Packet::Disconnect)));
    let Some(Packet::Connect(c)) = p.up.first() else {
        panic!()
    };
    assert!(c.clean_session());
    // The journal: what the emulator needs to create the device.
    let journal = p.dps.take_assignments();
    assert_eq!(journal.len(), 1);
    assert_eq!(journal[0].request_payload, Some(json!({"site": "north"})));
    assert_eq!(journal[0].operation_id, op);
    assert_eq!(p.timeout(), None);
    assert!(p.dps.is_closed(p.conns[0]));
}

#[test]
fn group_enrollment_with_several_polls() {
    let mut dps = service();
    dps.add_group_enrollment(
        "fleet",
        key(9),
        EnrollmentOptions::default().with_assigning_polls(3),
    );
    dps.set_retry_after(Some(2));
    let r = rid("sensor-042");
    let mut p = DpsPair::new(
        config("sensor-042", ProvisioningAttestation::group(&key(9), &r)),
        dps,
    );
    let reg = assigned(p.run(secs(60)));
    assert_eq!(reg.device_id.as_str(), "sensor-042");
    // Register + 4 polls, 2 s apart.
    assert_eq!(p.requests().len(), 5);
    assert_eq!(p.now_ms, 8_000);
    assert_eq!(
        p.events
            .iter()
            .filter(|e| matches!(e, Event::Assigning { .. }))
            .count(),
        4
    );
    assert_eq!(p.dps.assignments()[0].group.as_deref(), Some("fleet"));
}

#[test]
fn throttled_429_is_honoured() {
    let mut dps = service();
    dps.add_individual_enrollment(rid("dev-1"), key(1), EnrollmentOptions::default());
    dps.throttle_next(2, Some(10));
    let mut p = DpsPair::new(
        config("dev-1", ProvisioningAttestation::SymmetricKey(key(1))),
        dps,
    );
    let r = assigned(p.run(secs(120)));
    assert_eq!(r.device_id.as_str(), "dev-1");
    let throttled: Vec<_> = p
        .events
        .iter()
        .filter(|e| matches!(e, Event::Throttled { status: 429, retry_after } if *retry_after == secs(10)))
        .collect();
    assert_eq!(throttled.len(), 2);
    // Two refused registers 10 s apart, the accepted one, then the poll.
    assert_eq!(p.now_ms, 23_000);
    assert_eq!(p.session.throttle_retries(), 2);
    assert_eq!(p.dps.counters().throttled, 2);
    assert_eq!(p.dps.counters().register_requests, 3);
}

#[test]
fn failed_and_disabled_enrollments() {
    let mut dps = service();
    dps.add_individual_enrollment(
        rid("dev-1"),
        key(1),
        EnrollmentOptions::default().with_failure(400_209, "Custom allocation failed"),
    );
    let mut p = DpsPair::new(
        config("dev-1", ProvisioningAttestation::SymmetricKey(key(1))),
        dps,
    );
    match p.run(secs(60)) {
        Some(Err(ProvisioningError::Registration(f))) => {
            assert_eq!(f.status, RegistrationStatus::Failed);
            assert_eq!(f.error_code, Some(400_209));
            assert_eq!(f.error_message.as_deref(), Some("Custom allocation failed"));
        }
        other => panic!("{other:?}"),
    }
    assert!(p.dps.assignments().is_empty());
    assert!(matches!(p.events.last(), Some(Event::Failed(_))));

    let mut dps = service();
    dps.add_individual_enrollment(
        rid("dev-1"),
        key(1),
        EnrollmentOptions::default().with_enabled(false),
    );
    let mut p = DpsPair::new(
        config("dev-1", ProvisioningAttestation::SymmetricKey(key(1))),
        dps,
    );
    assert!(matches!(
        p.run(secs(60)),
        Some(Err(ProvisioningError::Registration(f))) if f.status == RegistrationStatus::Disabled
    ));
}

#[test]
fn wrong_key_is_refused_once() {
    let mut dps = service();
    dps.add_individual_enrollment(rid("dev-1"), key(1), EnrollmentOptions::default());
    let mut p = DpsPair::new(
        config("dev-1", ProvisioningAttestation::SymmetricKey(key(2))),
        dps,
    );
    assert_eq!(
        p.run(secs(600)),
        Some(Err(ProvisioningError::Refused(ConnectRefused {
            code: ConnectReturnCode::BadUserNameOrPassword
        })))
    );
    assert_eq!(p.dps.counters().connects_refused, 1);
    assert_eq!(p.conns.len(), 1, "no retry with a refused key");
    assert_eq!(p.now_ms, 0);
    // An unknown registration: not authorized.
    let mut p = DpsPair::new(
        config("stranger", ProvisioningAttestation::SymmetricKey(key(1))),
        {
            let mut d = service();
            d.add_individual_enrollment(rid("dev-1"), key(1), EnrollmentOptions::default());
            d
        },
    );
    assert!(matches!(
        p.run(secs(60)),
        Some(Err(ProvisioningError::Refused(r))) if r.code == ConnectReturnCode::NotAuthorized
    ));
}

#[test]
fn overall_timeout_while_dps_keeps_assigning() {
    let mut dps = service();
    dps.add_individual_enrollment(
        rid("dev-1"),
        key(1),
        EnrollmentOptions::default().with_assigning_polls(u32::MAX),
    );
    let mut p = DpsPair::new(
        config("dev-1", ProvisioningAttestation::SymmetricKey(key(1))).with_timeout(secs(60)),
        dps,
    );
    assert_eq!(p.run(secs(3600)), Some(Err(ProvisioningError::Timeout)));
    assert_eq!(p.now_ms, 60_000);
    // 20 polls, 3 s apart, then the deadline; a clean DISCONNECT.
    assert_eq!(p.requests().len(), 20);
    assert!(matches!(p.up.last(), Some(Packet::Disconnect)));
    assert_eq!(
        p.dps.close_reason(p.conns[0]),
        Some(iothub_hub::CloseReason::ClientDisconnected)
    );
}

#[test]
fn silent_service_exhausts_the_transport_retries() {
    let mut dps = service();
    dps.add_individual_enrollment(rid("dev-1"), key(1), EnrollmentOptions::default());
    dps.silence_responses(true);
    let mut p = DpsPair::new(
        config("dev-1", ProvisioningAttestation::SymmetricKey(key(1)))
            .with_response_timeout(secs(5))
            .with_max_transport_retries(2),
        dps,
    );
    assert_eq!(
        p.run(secs(600)),
        Some(Err(ProvisioningError::TransportRetriesExhausted(
            DisconnectReason::ResponseTimeout
        )))
    );
    assert_eq!(p.conns.len(), 3);
    assert_eq!(p.dps.counters().unanswered, 3);
}

#[test]
fn a_dropped_connection_resumes_polling_the_same_operation() {
    let mut dps = service();
    dps.add_individual_enrollment(
        rid("dev-1"),
        key(1),
        EnrollmentOptions::default().with_assigning_polls(1),
    );
    let mut p = DpsPair::new(
        config("dev-1", ProvisioningAttestation::SymmetricKey(key(1))),
        dps,
    );
    // Run until DPS has named the operation, then drop the connection.
    while p.session.operation_id().is_none() {
        let end = p.now_ms + 1;
        p.pump();
        p.now_ms = end;
    }
    let op = p.session.operation_id().unwrap().to_owned();
    let conn = p.conn.unwrap();
    p.dps.drop_connection(conn);
    let r = assigned(p.run(secs(120)));
    assert_eq!(r.operation_id, op);
    assert_eq!(p.conns.len(), 2);
    assert_eq!(p.dps.counters().register_requests, 1, "registered once");
    assert!(p.events.iter().any(|e| matches!(
        e,
        Event::Disconnected {
            reason: DisconnectReason::Transport(TransportClosed::ClosedByPeer)
        }
    )));
    assert!(
        p.events
            .iter()
            .any(|e| matches!(e, Event::ReconnectScheduled { .. }))
    );
}

#[test]
fn transient_failures_then_success() {
    let mut dps = service();
    dps.add_individual_enrollment(rid("dev-1"), key(1), EnrollmentOptions::default());
    dps.refuse_connects(1, ConnectReturnCode::ServerUnavailable);
    dps.fail_next_requests(1, 503);
    let mut p = DpsPair::new(
        config("dev-1", ProvisioningAttestation::SymmetricKey(key(1))),
        dps,
    );
    p.failing_opens = 2;
    let r = assigned(p.run(secs(600)));
    assert_eq!(r.device_id.as_str(), "dev-1");
    assert_eq!(p.session.transport_retries(), 3);
    assert_eq!(p.session.throttle_retries(), 1);
}

#[test]
fn answers_split_at_every_boundary() {
    for chunk in 1..=9 {
        let mut dps = service();
        dps.add_individual_enrollment(rid("dev-1"), key(1), EnrollmentOptions::default());
        let mut p = DpsPair::new(
            config("dev-1", ProvisioningAttestation::SymmetricKey(key(1))),
            dps,
        );
        p.chunk = Some(chunk);
        let r = assigned(p.run(secs(60)));
        assert_eq!(r.assigned_hub.as_str(), HUB, "chunk {chunk}");
    }
}

#[test]
fn fixed_token_and_x509_attestations() {
    let mut dps = service();
    dps.add_individual_enrollment(rid("dev-1"), key(1), EnrollmentOptions::default());
    dps.add_x509_enrollment(rid("cert-1"), EnrollmentOptions::default());
    let token = SasToken::generate(
        &dps_resource_uri(SCOPE, "dev-1"),
        &key(1),
        UNIX0 + 600,
        Some("registration"),
    );
    let mut p = DpsPair::new(
        config("dev-1", ProvisioningAttestation::SasToken(token)),
        dps,
    );
    assigned(p.run(secs(60)));
    let mut p = DpsPair::new(config("cert-1", ProvisioningAttestation::X509), p.dps);
    let r = assigned(p.run(secs(60)));
    assert_eq!(r.device_id.as_str(), "cert-1");
    assert!(matches!(
        ProvisioningAttestation::X509.hub_credential(),
        Some(Credential::X509)
    ));
}

/// Provision, then connect: the registration becomes a device session
/// configuration, the journal creates the device at the hub, and the
/// device session connects and sends telemetry — all offline.
#[test]
fn provision_then_connect() {
    let group_key = SharedAccessKey::from_base64(
        "Zm9vYmFyZm9vYmFyZm9vYmFyZm9vYmFyZm9vYmFyZm9vYmFyZm9vYmFyZm9vYmFyZm9vYmFyZm9vYmFyZm9vYmFy",
    )
    .unwrap();
    let mut dps = service();
    dps.add_group_enrollment("fleet", group_key.clone(), EnrollmentOptions::default());
    let registration_id = rid("thermostat-17");
    let attestation = ProvisioningAttestation::group(&group_key, &registration_id);
    let mut p = DpsPair::new(
        config("thermostat-17", attestation.clone()).with_model_id("dtmi:com:example:Thermostat;1"),
        dps,
    );
    let registration = assigned(p.run(secs(60)));

    // The emulator's part: create what DPS assigned in the hub's registry.
    let mut hub = Hub::new(registration.assigned_hub.as_str());
    for a in p.dps.take_assignments() {
        assert_eq!(
            a.request_payload,
            Some(json!({"modelId": "dtmi:com:example:Thermostat;1"}))
        );
        hub.add_device(a.device_id, a.key.expect("a symmetric-key device"));
    }

    // The device's part: a session for the assigned hub with the same key.
    let credential = attestation.hub_credential().expect("a key attestation");
    let device_config = registration.device_config(credential).with_username(
        iothub_proto::auth::UsernameOptions::default()
            .with_model_id("dtmi:com:example:Thermostat;1"),
    );
    let identity = registration.identity();
    let session = session::Session::new(device_config).unwrap();
    let mut pair = pair::Pair::with_hub(session, hub, identity.clone(), p.now_ms);
    let ok = pair.run_until(secs(10), |pair| {
        pair.events
            .iter()
            .any(|e| matches!(e, session::Event::Connected { .. }))
    });
    assert!(ok, "{:?}", pair.events);
    assert!(pair.hub.is_connected(&identity));
    let now = pair.now();
    let id = pair
        .session
        .send_telemetry(now, Message::new(&b"{\"t\":21.5}"[..]))
        .unwrap();
    assert!(pair.run_until(secs(10), |pair| {
        pair.events
            .contains(&session::Event::MessageAcknowledged { id })
    }));
    assert_eq!(pair.hub.telemetry().len(), 1);
    assert_eq!(pair.hub.telemetry()[0].identity, identity);
    assert_eq!(
        pair.hub.model_id(&identity),
        Some("dtmi:com:example:Thermostat;1")
    );
}

/// The re-provisioning policy end to end in simulated time: a provisioned
/// device connects; the hub deletes it; its session is refused (CONNACK
/// 5); the watch says provision again; DPS assigns it again (the
/// emulator's part re-creates it); a new session connects.
#[test]
fn refused_credentials_make_the_device_provision_again() {
    use iothub_proto::provisioning::{ReprovisionPolicy, ReprovisionReason, ReprovisionWatch};

    let key = key(42);
    let mut dps = service();
    dps.add_individual_enrollment(rid("dev-r"), key.clone(), EnrollmentOptions::default());
    let attestation = ProvisioningAttestation::SymmetricKey(key);
    let mut p = DpsPair::new(config("dev-r", attestation.clone()), dps);
    let registration = assigned(p.run(secs(60)));
    let mut hub = Hub::new(registration.assigned_hub.as_str());
    for a in p.dps.take_assignments() {
        hub.add_device(a.device_id, a.key.unwrap());
    }
    let credential = attestation.hub_credential().unwrap();
    let identity = registration.identity();
    let session = session::Session::new(registration.device_config(credential.clone())).unwrap();
    let mut pair = pair::Pair::with_hub(session, hub, identity.clone(), p.now_ms);
    assert!(pair.run_until(secs(10), |pair| pair.hub.is_connected(&pair.identity)));

    // The hub forgets the device: the connection closes, the reconnection
    // is refused with CONNACK 5.
    assert!(pair.hub.remove_identity(&identity));
    let mut watch = ReprovisionWatch::new(ReprovisionPolicy::default());
    let mut seen = 0;
    let mut reason = None;
    pair.run_until(secs(60), |pair| {
        for e in &pair.events[seen..] {
            if let Some(r) = watch.observe(e) {
                reason = Some(r);
            }
        }
        seen = pair.events.len();
        reason.is_some()
    });
    assert!(
        matches!(reason, Some(ReprovisionReason::Refused(r)) if r.code == ConnectReturnCode::NotAuthorized),
        "{reason:?} after {:?}",
        pair.events
    );

    // Provision again: the same operation flow, the device is back.
    let now_ms = pair.now_ms;
    let mut hub = std::mem::replace(&mut pair.hub, Hub::new("unused"));
    let mut p2 = DpsPair::new(
        config("dev-r", attestation.clone()),
        std::mem::replace(&mut p.dps, service()),
    );
    p2.now_ms = now_ms;
    let again = assigned(p2.run(secs(60)));
    for a in p2.dps.take_assignments() {
        hub.add_device(a.device_id, a.key.unwrap());
    }
    assert_eq!(again.device_id, registration.device_id);
    let session = session::Session::new(again.device_config(credential)).unwrap();
    let mut pair = pair::Pair::with_hub(session, hub, identity, now_ms);
    assert!(pair.run_until(secs(10), |pair| pair.hub.is_connected(&pair.identity)));
}

/// One step of the property test: a fault injected into DPS, or time.
#[derive(Debug, Clone)]
enum Op {
    Advance(u64),
    Drop,
    Throttle(u32, Option<u32>),
    Fail503(u32),
    RefuseUnavailable,
    Silence(bool),
    FailOpen,
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        4 => (1u64..20_000).prop_map(Op::Advance),
        1 => Just(Op::Drop),
        1 => (1u32..4, proptest::option::of(0u32..15)).prop_map(|(n, r)| Op::Throttle(n, r)),
        1 => (1u32..3).prop_map(Op::Fail503),
        1 => Just(Op::RefuseUnavailable),
        1 => any::<bool>().prop_map(Op::Silence),
        1 => Just(Op::FailOpen),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 128, .. Default::default() })]

    /// Whatever DPS and the network do, the session ends with exactly one
    /// result, as its last event, no later than its overall timeout; never
    /// opens more transports than its retries allow; and an assignment it
    /// reports is one DPS journaled.
    #[test]
    fn provisioning_keeps_its_promises(
        ops in proptest::collection::vec(op(), 0..25),
        polls in 0u32..4,
    ) {
        let mut dps = service();
        dps.add_individual_enrollment(
            rid("dev-1"),
            key(1),
            EnrollmentOptions::default().with_assigning_polls(polls),
        );
        let timeout = secs(120);
        let mut p = DpsPair::new(
            config("dev-1", ProvisioningAttestation::SymmetricKey(key(1)))
                .with_timeout(timeout)
                .with_response_timeout(secs(10))
                .with_max_transport_retries(4)
                .with_max_throttle_retries(3),
            dps,
        );
        for op in ops {
            match op {
                Op::Advance(ms) => {
                    p.run(Duration::from_millis(ms));
                }
                Op::Drop => {
                    if let Some(c) = p.conn {
                        p.dps.drop_connection(c);
                    }
                }
                Op::Throttle(n, r) => p.dps.throttle_next(n, r),
                Op::Fail503(n) => p.dps.fail_next_requests(n, 503),
                Op::RefuseUnavailable => p.dps.refuse_connects(1, ConnectReturnCode::ServerUnavailable),
                Op::Silence(on) => p.dps.silence_responses(on),
                Op::FailOpen => p.failing_opens += 1,
            }
            p.pump();
        }
        p.dps.silence_responses(false);
        let outcome = p.run(secs(3600));
        proptest::prop_assert!(outcome.is_some(), "not finished: {:?}", p.events);
        let results: Vec<usize> = p
            .events
            .iter()
            .enumerate()
            .filter(|(_, e)| matches!(e, Event::Assigned(_) | Event::Failed(_)))
            .map(|(i, _)| i)
            .collect();
        proptest::prop_assert_eq!(results, vec![p.events.len() - 1]);
        proptest::prop_assert!(p.now_ms <= timeout.as_millis() as u64);
        proptest::prop_assert!(p.session.transport_retries() <= 4);
        proptest::prop_assert!(p.session.throttle_retries() <= 3);
        proptest::prop_assert_eq!(p.timeout(), None);
        match outcome {
            Some(Ok(r)) => {
                let journal = p.dps.assignments();
                proptest::prop_assert!(journal.iter().any(|a| a.operation_id == r.operation_id));
            }
            Some(Err(e)) => proptest::prop_assert!(
                matches!(
                    e,
                    ProvisioningError::Timeout
                        | ProvisioningError::TransportRetriesExhausted(_)
                        | ProvisioningError::Service(_)
                ),
                "{:?}", e
            ),
            None => unreachable!(),
        }
        // Nothing is left open at DPS.
        if let Some(c) = p.conn {
            proptest::prop_assert!(p.dps.is_closed(c));
        }
    }
}
