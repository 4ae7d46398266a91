//! Provisioning session tests against a small scripted peer: what the
//! session transmits is decoded with `mqtt::decode`, answers are built with
//! the codec, `topic::hub` and the response types. Time is simulated.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::time::Duration;

use bytes::{Bytes, BytesMut};
use serde_json::json;

use super::*;
use crate::auth::{
    IdScope, ProvisioningAttestation, ProvisioningUsername, RegistrationId, SasToken,
    SharedAccessKey,
};
use crate::mqtt::{
    self, Connack, Connect, ConnectReturnCode, MAX_PACKET_SIZE, Publish, QoS, Suback,
    SubscribeReturnCode,
};
use crate::topic::hub;

const UNIX: u64 = 1_700_000_000;
const SCOPE: &str = "0ne00000A0A";
const RID: &str = "my-device";

fn key() -> SharedAccessKey {
    SharedAccessKey::from_bytes([5u8; 32]).unwrap()
}

fn config() -> Config {
    Config::new(
        IdScope::new(SCOPE).unwrap(),
        RegistrationId::new(RID).unwrap(),
        ProvisioningAttestation::SymmetricKey(key()),
    )
    .with_seed(7)
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A request the session sent: its topic, parsed, and body.
#[derive(Debug)]
struct Request {
    rid: String,
    operation_id: Option<String>,
    body: Bytes,
    qos: QoS,
}

struct Harness {
    s: Session,
    now: Instant,
    wire: BytesMut,
    out: Vec<Packet>,
    cmds: Vec<TransportCommand>,
    events: Vec<Event>,
    /// The last `Output::Timeout`.
    deadline: Option<Instant>,
}

impl Harness {
    fn new(config: Config) -> Harness {
        let now = Instant::from_millis(1_000);
        Harness {
            s: Session::new(config, now).unwrap(),
            now,
            wire: BytesMut::new(),
            out: Vec::new(),
            cmds: Vec::new(),
            events: Vec::new(),
            deadline: None,
        }
    }

    fn unix(&self) -> u64 {
        UNIX + self.now.as_millis() / 1000
    }

    /// Takes every output until `Timeout`.
    fn collect(&mut self) {
        loop {
            match self.s.poll_output() {
                Output::Transmit(bytes) => self.wire.extend_from_slice(&bytes),
                Output::Transport(cmd) => self.cmds.push(cmd),
                Output::Event(e) => self.events.push(e),
                Output::Timeout(at) => {
                    self.deadline = at;
                    break;
                }
            }
        }
        while let Some(p) = mqtt::decode(&mut self.wire, MAX_PACKET_SIZE).unwrap() {
            self.out.push(p);
        }
        assert!(self.wire.is_empty(), "a partial packet was transmitted");
    }

    /// When the session wants `handle_timeout` next.
    fn timeout(&mut self) -> Option<Instant> {
        self.collect();
        self.deadline
    }

    fn sent(&mut self) -> Vec<Packet> {
        self.collect();
        core::mem::take(&mut self.out)
    }

    fn commands(&mut self) -> Vec<TransportCommand> {
        self.collect();
        core::mem::take(&mut self.cmds)
    }

    fn events(&mut self) -> Vec<Event> {
        self.collect();
        core::mem::take(&mut self.events)
    }

    fn feed(&mut self, packet: impl Into<Packet>) {
        let bytes = packet.into().to_bytes();
        self.s.handle_input(self.now, &bytes);
    }

    /// Moves time to `now + d`, firing every timer due on the way.
    fn advance(&mut self, d: Duration) {
        let target = self.now + d;
        for _ in 0..10_000 {
            match self.timeout() {
                Some(at) if at <= target => {
                    self.now = self.now.max(at);
                    let unix = self.unix();
                    self.s.handle_timeout(self.now, unix);
                }
                _ => break,
            }
        }
        self.now = target;
        let unix = self.unix();
        self.s.handle_timeout(self.now, unix);
        self.collect();
    }

    /// Opens the transport the session asks for; returns the CONNECT.
    fn open(&mut self) -> Connect {
        assert_eq!(self.commands(), vec![TransportCommand::Open]);
        let unix = self.unix();
        self.s.handle_transport_connected(self.now, unix);
        match self.sent().as_slice() {
            [Packet::Connect(c)] => c.clone(),
            other => panic!("expected CONNECT, got {other:?}"),
        }
    }

    /// Opens, accepts, grants the subscription; returns the first request.
    fn connect(&mut self) -> Request {
        self.open();
        self.feed(Connack::new(false, ConnectReturnCode::Accepted));
        let sent = self.sent();
        let [Packet::Subscribe(sub)] = sent.as_slice() else {
            panic!("expected SUBSCRIBE, got {sent:?}")
        };
        assert_eq!(sub.filters().len(), 1);
        assert_eq!(sub.filters()[0].0.as_str(), "$dps/registrations/res/#");
        assert_eq!(sub.filters()[0].1, QoS::AtLeastOnce);
        let pid = sub.pid();
        self.feed(Suback::new(pid, [SubscribeReturnCode::Success(QoS::AtLeastOnce)]).unwrap());
        self.request()
    }

    /// The one request sent since the last call.
    fn request(&mut self) -> Request {
        let sent = self.sent();
        let [Packet::Publish(p)] = sent.as_slice() else {
            panic!("expected one request, got {sent:?}")
        };
        let qos = p.qos();
        // The DPS topics as the session writes them (`iothub-hub` reads
        // them in full; here the two shapes suffice).
        let topic = p.topic().as_str();
        let (rid, operation_id) = if let Some(rid) =
            topic.strip_prefix("$dps/registrations/PUT/iotdps-register/?$rid=")
        {
            (String::from(rid), None)
        } else if let Some(q) =
            topic.strip_prefix("$dps/registrations/GET/iotdps-get-operationstatus/?$rid=")
        {
            let (rid, op) = q.split_once("&operationId=").expect("an operation id");
            (
                String::from(rid),
                Some(crate::text::url_decode(op).expect("utf-8").into_owned()),
            )
        } else {
            panic!("not a DPS request: {topic}")
        };
        Request {
            rid,
            operation_id,
            body: p.payload().clone(),
            qos,
        }
    }

    /// DPS answers `rid` (QoS 0).
    fn answer(&mut self, rid: &str, status: u16, retry_after: Option<u32>, body: &[u8]) {
        let topic = hub::dps_response(status, &RequestId::new(rid), retry_after);
        let p = Publish::new(topic, QosPid::AtMostOnce, Bytes::copy_from_slice(body)).unwrap();
        self.feed(p);
    }

    fn assigning(&mut self, rid: &str, op: &str, retry_after: Option<u32>) {
        let body = OperationStatus::new(op, RegistrationStatus::Assigning).to_vec();
        self.answer(rid, 202, retry_after, &body);
    }

    fn assigned(&mut self, rid: &str, op: &str) {
        let body = json!({
            "operationId": op,
            "status": "assigned",
            "registrationState": {
                "registrationId": RID,
                "assignedHub": "contoso.azure-devices.net",
                "deviceId": "my-device",
                "status": "assigned",
                "substatus": "initialAssignment",
                "etag": "e1",
                "payload": {"site": "north"}
            }
        });
        self.answer(rid, 200, None, &serde_json::to_vec(&body).unwrap());
    }

    fn failed_with(&mut self) -> ProvisioningError {
        let events = self.events();
        match events.last() {
            Some(Event::Failed(e)) => e.clone(),
            other => panic!("expected Failed last, got {other:?} in {events:?}"),
        }
    }
}

fn assigned_registration(events: &[Event]) -> Registration {
    match events.last() {
        Some(Event::Assigned(r)) => r.clone(),
        other => panic!("expected Assigned last, got {other:?} in {events:?}"),
    }
}

#[test]
fn connect_packet_follows_the_dps_rules() {
    let mut h = Harness::new(config().with_keep_alive(secs(120)));
    let c = h.open();
    assert_eq!(c.client_id().as_str(), RID);
    assert!(c.clean_session(), "DPS sessions are never persistent");
    assert_eq!(c.keep_alive(), 120);
    assert!(c.last_will().is_none());
    let username = c.username().unwrap().as_str();
    assert_eq!(
        username,
        "0ne00000A0A/registrations/my-device/api-version=2021-06-01"
    );
    assert_eq!(
        ProvisioningUsername::parse(username)
            .unwrap()
            .registration_id
            .as_str(),
        RID
    );
    let token = SasToken::parse(core::str::from_utf8(c.password().unwrap()).unwrap()).unwrap();
    assert_eq!(token.resource_uri(), "0ne00000A0A/registrations/my-device");
    assert_eq!(token.key_name(), Some("registration"));
    assert_eq!(token.expiry_unix_secs(), h.unix() + 3600);
    assert!(token.verify(&key()));
    assert_eq!(h.s.state(), ProvisioningState::AwaitingConnack);
    assert_eq!(h.s.connection(), 1);
}

#[test]
fn api_version_client_version_and_x509() {
    let mut h = Harness::new(
        config()
            .with_api_version("2019-03-31".into())
            .with_client_version(Some("iothub-rs/0.1".into())),
    );
    let c = h.open();
    assert_eq!(
        c.username().unwrap().as_str(),
        "0ne00000A0A/registrations/my-device/api-version=2019-03-31&ClientVersion=iothub-rs%2F0.1"
    );
    let mut x509 = config();
    x509.attestation = ProvisioningAttestation::X509;
    let mut h = Harness::new(x509);
    assert!(h.open().password().is_none());
}

#[test]
fn register_then_poll_until_assigned() {
    let mut h = Harness::new(config().with_payload(Some(json!({"site": "north"}))));
    let reg = h.connect();
    assert_eq!(reg.qos, QoS::AtLeastOnce);
    assert_eq!(reg.operation_id, None);
    assert_eq!(
        RegisterRequest::parse(&reg.body).unwrap(),
        RegisterRequest::new(RID, Some(json!({"site": "north"})))
    );
    assert_eq!(h.s.state(), ProvisioningState::AwaitingResponse);
    assert_eq!(h.events(), vec![Event::Connected]);

    h.assigning(&reg.rid, "op-1", Some(2));
    assert_eq!(
        h.events(),
        vec![Event::Assigning {
            operation_id: "op-1".into(),
            retry_after: secs(2)
        }]
    );
    assert_eq!(h.s.state(), ProvisioningState::Waiting);
    assert_eq!(h.s.operation_id(), Some("op-1"));
    assert_eq!(h.s.timer(TimerKind::Retry), Some(h.now + secs(2)));
    h.advance(Duration::from_millis(1_999));
    assert!(h.sent().is_empty(), "polled before retry-after");
    h.advance(Duration::from_millis(1));
    let poll = h.request();
    assert_eq!(poll.operation_id.as_deref(), Some("op-1"));
    assert!(poll.body.is_empty());
    assert_ne!(poll.rid, reg.rid);

    // Still assigning, no retry-after: the default 3 s.
    h.assigning(&poll.rid, "op-1", None);
    h.advance(secs(3));
    let poll2 = h.request();
    h.assigned(&poll2.rid, "op-1");
    let events = h.events();
    let r = assigned_registration(&events);
    assert_eq!(r.assigned_hub.as_str(), "contoso.azure-devices.net");
    assert_eq!(r.device_id.as_str(), "my-device");
    assert_eq!(r.registration_id, RID);
    assert_eq!(r.operation_id, "op-1");
    assert_eq!(r.substatus, Some(Substatus::InitialAssignment));
    assert_eq!(r.payload, Some(json!({"site": "north"})));
    assert_eq!(r.etag.as_deref(), Some("e1"));
    assert_eq!(h.s.outcome(), Some(&Ok(r.clone())));
    assert_eq!(h.s.state(), ProvisioningState::Finished);
    // A clean DISCONNECT, then the transport is closed; nothing scheduled.
    assert_eq!(h.sent(), vec![Packet::Disconnect]);
    assert_eq!(h.commands(), vec![TransportCommand::Close]);
    assert_eq!(h.timeout(), None);
    assert!(events.contains(&Event::Disconnected {
        reason: DisconnectReason::Requested
    }));
    // A device config for the assigned hub with the attestation's key.
    let credential = h.s.config().attestation.hub_credential().unwrap();
    let device = r.device_config(credential);
    assert_eq!(device.host_name.as_str(), "contoso.azure-devices.net");
    assert_eq!(device.identity.device_id().as_str(), "my-device");
    // Nothing more happens.
    h.advance(secs(3600));
    assert!(h.sent().is_empty() && h.commands().is_empty() && h.events().is_empty());
}

#[test]
fn retry_after_is_never_below_one_second() {
    let mut h = Harness::new(config());
    let reg = h.connect();
    h.assigning(&reg.rid, "op", Some(0));
    assert_eq!(h.s.timer(TimerKind::Retry), Some(h.now + MIN_RETRY_AFTER));
    let mut h = Harness::new(config().with_default_retry_after(Duration::from_millis(10)));
    let reg = h.connect();
    h.assigning(&reg.rid, "op", None);
    assert_eq!(h.s.timer(TimerKind::Retry), Some(h.now + MIN_RETRY_AFTER));
}

#[test]
fn throttling_is_honoured_then_gives_up() {
    let mut h = Harness::new(config().with_max_throttle_retries(2));
    let reg = h.connect();
    h.answer(
        &reg.rid,
        429,
        Some(7),
        br#"{"errorCode":429001,"message":"slow down"}"#,
    );
    assert_eq!(
        h.events(),
        vec![
            Event::Connected,
            Event::Throttled {
                status: 429,
                retry_after: secs(7)
            }
        ]
    );
    h.advance(Duration::from_millis(6_999));
    assert!(h.sent().is_empty());
    h.advance(Duration::from_millis(1));
    // Nothing was registered yet: the register request again.
    let again = h.request();
    assert_eq!(again.operation_id, None);
    h.answer(&again.rid, 503, None, b"");
    h.advance(secs(3));
    let third = h.request();
    assert_eq!(h.s.throttle_retries(), 2);
    h.answer(&third.rid, 429, Some(1), br#"{"errorCode":429001}"#);
    match h.failed_with() {
        ProvisioningError::Service(f) => {
            assert_eq!(f.status, 429);
            assert_eq!(f.error.error_code, Some(429_001));
            assert!(f.is_retriable());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn throttled_poll_polls_again() {
    let mut h = Harness::new(config());
    let reg = h.connect();
    h.assigning(&reg.rid, "op-9", Some(1));
    h.advance(secs(1));
    let poll = h.request();
    h.answer(&poll.rid, 429, Some(2), b"");
    h.advance(secs(2));
    assert_eq!(h.request().operation_id.as_deref(), Some("op-9"));
}

#[test]
fn error_statuses_end_the_registration() {
    for status in [400u16, 401, 403, 404] {
        let mut h = Harness::new(config());
        let reg = h.connect();
        h.answer(
            &reg.rid,
            status,
            None,
            br#"{"errorCode":401002,"trackingId":"t","message":"Unauthorized"}"#,
        );
        let ProvisioningError::Service(f) = h.failed_with() else {
            panic!()
        };
        assert_eq!(f.status, status);
        assert_eq!(f.error.tracking_id.as_deref(), Some("t"));
        assert!(!f.is_retriable());
        assert_eq!(h.sent(), vec![Packet::Disconnect]);
    }
}

#[test]
fn failed_and_disabled_registrations() {
    for (status, wire) in [
        (RegistrationStatus::Failed, "failed"),
        (RegistrationStatus::Disabled, "disabled"),
    ] {
        let mut h = Harness::new(config());
        let reg = h.connect();
        h.assigning(&reg.rid, "op", Some(1));
        h.advance(secs(1));
        let poll = h.request();
        let body = json!({
            "operationId": "op",
            "status": wire,
            "registrationState": {"registrationId": RID, "status": wire,
                "errorCode": 400_209, "errorMessage": "Custom allocation failed"}
        });
        h.answer(&poll.rid, 200, None, &serde_json::to_vec(&body).unwrap());
        assert_eq!(
            h.failed_with(),
            ProvisioningError::Registration(RegistrationFailure {
                status,
                operation_id: "op".into(),
                error_code: Some(400_209),
                error_message: Some("Custom allocation failed".into()),
            })
        );
    }
}

#[test]
fn malformed_answers() {
    let mut h = Harness::new(config());
    let reg = h.connect();
    h.answer(&reg.rid, 202, None, b"{\"status\":\"assigning\"}");
    assert_eq!(
        h.failed_with(),
        ProvisioningError::MalformedResponse(ResponseError::MissingField("operationId"))
    );
    let mut h = Harness::new(config());
    let reg = h.connect();
    h.answer(
        &reg.rid,
        200,
        None,
        br#"{"operationId":"o","status":"assigned","registrationState":{"deviceId":"d"}}"#,
    );
    assert_eq!(
        h.failed_with(),
        ProvisioningError::MalformedResponse(ResponseError::MissingField("assignedHub"))
    );
    let mut h = Harness::new(config());
    let reg = h.connect();
    h.answer(
        &reg.rid,
        200,
        None,
        br#"{"operationId":"o","status":"assigned","registrationState":{"deviceId":"d","assignedHub":"bad host"}}"#,
    );
    assert_eq!(
        h.failed_with(),
        ProvisioningError::MalformedResponse(ResponseError::InvalidField("assignedHub"))
    );
}

#[test]
fn stale_answers_and_foreign_topics_are_ignored_qos1_acknowledged() {
    let mut h = Harness::new(config());
    let reg = h.connect();
    h.events();
    // An answer to another request id.
    h.assigning("999", "op", None);
    assert_eq!(h.s.state(), ProvisioningState::AwaitingResponse);
    // A QoS 1 answer gets its PUBACK.
    let pid = Pid::new(41).unwrap();
    let body = OperationStatus::new("op", RegistrationStatus::Assigning).to_vec();
    let topic = hub::dps_response(202, &RequestId::new(reg.rid.as_str()), Some(1));
    h.feed(Publish::new(topic, QosPid::AtLeastOnce(pid), Bytes::from(body)).unwrap());
    assert_eq!(h.sent(), vec![Packet::Puback(pid)]);
    assert_eq!(h.s.state(), ProvisioningState::Waiting);
    // A topic of another family.
    h.feed(
        Publish::new(
            "$iothub/twin/res/200/?$rid=1",
            QosPid::AtMostOnce,
            Bytes::new(),
        )
        .unwrap(),
    );
    h.feed(Publish::new("weird/topic", QosPid::AtMostOnce, Bytes::new()).unwrap());
    let events = h.events();
    assert!(matches!(
        events.as_slice(),
        [
            Event::Assigning { .. },
            Event::UnexpectedPublish {
                error: TopicError::NoMatch,
                ..
            },
            Event::UnexpectedPublish {
                error: TopicError::NoMatch,
                ..
            }
        ]
    ));
    // A stray PUBACK and a second SUBACK are harmless.
    h.feed(Packet::Puback(Pid::new(3).unwrap()));
    h.feed(Suback::new(Pid::MIN, [SubscribeReturnCode::Failure]).unwrap());
    assert_eq!(h.s.state(), ProvisioningState::Waiting);
}

#[test]
fn refused_connects_end_the_registration() {
    for code in [
        ConnectReturnCode::BadUserNameOrPassword,
        ConnectReturnCode::NotAuthorized,
        ConnectReturnCode::IdentifierRejected,
        ConnectReturnCode::UnacceptableProtocolVersion,
    ] {
        let mut h = Harness::new(config());
        h.open();
        h.feed(Connack::new(false, code));
        assert_eq!(
            h.failed_with(),
            ProvisioningError::Refused(ConnectRefused { code })
        );
        assert_eq!(h.commands(), vec![TransportCommand::Close]);
        assert!(h.sent().is_empty(), "no DISCONNECT without a CONNACK");
        h.advance(secs(600));
        assert!(h.commands().is_empty(), "no reconnection");
    }
}

#[test]
fn server_unavailable_is_retried_with_backoff() {
    let mut h = Harness::new(config());
    h.open();
    h.feed(Connack::new(false, ConnectReturnCode::ServerUnavailable));
    let events = h.events();
    assert!(matches!(
        events.as_slice(),
        [
            Event::Disconnected {
                reason: DisconnectReason::Refused(_)
            },
            Event::ReconnectScheduled { .. }
        ]
    ));
    assert_eq!(h.commands(), vec![TransportCommand::Close]);
    h.advance(DEFAULT_BACKOFF_MAX);
    let reg = h.connect();
    assert_eq!(reg.operation_id, None);
    assert_eq!(h.s.transport_retries(), 1);
    assert_eq!(h.s.connection(), 2);
}

#[test]
fn transport_failures_are_retried_up_to_the_limit() {
    let mut h = Harness::new(config().with_max_transport_retries(3));
    let mut delays = Vec::new();
    for _ in 0..3 {
        assert_eq!(h.commands(), vec![TransportCommand::Open]);
        h.s.handle_transport_closed(h.now, TransportClosed::ConnectFailed);
        for e in h.events() {
            if let Event::ReconnectScheduled { delay } = e {
                delays.push(delay);
            }
        }
        assert_eq!(h.s.state(), ProvisioningState::Backoff);
        h.advance(DEFAULT_BACKOFF_MAX);
    }
    assert_eq!(delays.len(), 3);
    for d in &delays {
        assert!(
            *d >= DEFAULT_BACKOFF_MIN && *d <= DEFAULT_BACKOFF_MAX,
            "{d:?}"
        );
    }
    assert_eq!(h.commands(), vec![TransportCommand::Open]);
    h.s.handle_transport_closed(h.now, TransportClosed::HandshakeFailed);
    assert_eq!(
        h.failed_with(),
        ProvisioningError::TransportRetriesExhausted(DisconnectReason::Transport(
            TransportClosed::HandshakeFailed
        ))
    );
    assert_eq!(h.timeout(), None);
}

#[test]
fn a_lost_connection_resumes_with_a_poll() {
    let mut h = Harness::new(config());
    let reg = h.connect();
    h.assigning(&reg.rid, "op-7", Some(5));
    h.s.handle_transport_closed(h.now, TransportClosed::ClosedByPeer);
    assert_eq!(h.s.timer(TimerKind::Retry), None);
    h.advance(DEFAULT_BACKOFF_MAX);
    let first = h.connect();
    assert_eq!(first.operation_id.as_deref(), Some("op-7"));
    h.assigned(&first.rid, "op-7");
    assert_eq!(assigned_registration(&h.events()).operation_id, "op-7");
}

#[test]
fn unanswered_requests_and_missing_acks_time_out() {
    // No answer to the register request.
    let mut h = Harness::new(config().with_response_timeout(secs(10)));
    h.connect();
    h.advance(secs(10));
    assert!(h.events().contains(&Event::Disconnected {
        reason: DisconnectReason::ResponseTimeout
    }));
    assert_eq!(h.commands(), vec![TransportCommand::Close]);
    // No CONNACK.
    let mut h = Harness::new(config().with_connect_timeout(secs(5)));
    h.open();
    h.advance(secs(5));
    assert!(h.events().contains(&Event::Disconnected {
        reason: DisconnectReason::ConnackTimeout
    }));
    // No SUBACK.
    let mut h = Harness::new(config().with_connect_timeout(secs(5)));
    h.open();
    h.feed(Connack::new(false, ConnectReturnCode::Accepted));
    h.advance(secs(5));
    assert!(h.events().contains(&Event::Disconnected {
        reason: DisconnectReason::SubackTimeout
    }));
}

#[test]
fn overall_timeout() {
    let mut h = Harness::new(config().with_timeout(secs(20)));
    let mut reg = h.connect();
    // DPS keeps saying "assigning".
    for _ in 0..10 {
        h.assigning(&reg.rid, "op", Some(3));
        if h.s.state() != ProvisioningState::Waiting {
            break;
        }
        h.advance(secs(3));
        if h.s.state() != ProvisioningState::AwaitingResponse {
            break;
        }
        reg = h.request();
    }
    assert_eq!(h.failed_with(), ProvisioningError::Timeout);
    assert_eq!(h.timeout(), None);
    // While disconnected too.
    let mut h = Harness::new(config().with_timeout(secs(20)));
    h.commands();
    h.advance(secs(20));
    assert_eq!(h.failed_with(), ProvisioningError::Timeout);
    // The adapter was opening a transport: it is told to close it.
    assert_eq!(h.commands(), vec![TransportCommand::Close]);
}

#[test]
fn refused_subscription() {
    let mut h = Harness::new(config());
    h.open();
    h.feed(Connack::new(false, ConnectReturnCode::Accepted));
    let sent = h.sent();
    let [Packet::Subscribe(sub)] = sent.as_slice() else {
        panic!()
    };
    h.feed(Suback::new(sub.pid(), [SubscribeReturnCode::Failure]).unwrap());
    assert_eq!(h.failed_with(), ProvisioningError::SubscriptionRefused);
    assert_eq!(h.sent(), vec![Packet::Disconnect]);
}

#[test]
fn keep_alive_and_ping_timeout() {
    let mut h = Harness::new(
        config()
            .with_keep_alive(secs(10))
            .with_ping_timeout(secs(4)),
    );
    let reg = h.connect();
    h.assigning(&reg.rid, "op", Some(1000));
    h.advance(secs(10));
    assert_eq!(h.sent(), vec![Packet::Pingreq]);
    h.feed(Packet::Pingresp);
    h.advance(secs(10));
    assert_eq!(h.sent(), vec![Packet::Pingreq]);
    h.advance(secs(4));
    assert!(h.events().contains(&Event::Disconnected {
        reason: DisconnectReason::PingTimeout
    }));
}

#[test]
fn protocol_errors_reconnect() {
    let mut h = Harness::new(config());
    h.open();
    h.feed(Packet::Pingresp);
    assert!(h.events().contains(&Event::Disconnected {
        reason: DisconnectReason::Protocol(ProtocolError::UnexpectedPacket(
            crate::mqtt::PacketType::Pingresp
        ))
    }));
    assert_eq!(h.s.state(), ProvisioningState::Backoff);
    assert_eq!(h.commands(), vec![TransportCommand::Close]);
    h.advance(DEFAULT_BACKOFF_MAX);
    h.connect();
    let qos2 = Publish::new(
        hub::dps_response(200, &RequestId::from(1), None),
        QosPid::ExactlyOnce(Pid::MIN),
        Bytes::new(),
    )
    .unwrap();
    h.feed(qos2);
    assert!(h.events().contains(&Event::Disconnected {
        reason: DisconnectReason::Protocol(ProtocolError::Qos2Publish)
    }));
    assert_eq!(h.commands(), vec![TransportCommand::Close]);
    h.advance(DEFAULT_BACKOFF_MAX);
    h.open();
    h.s.handle_input(h.now, &[0xff, 0xff, 0xff, 0xff, 0xff]);
    assert!(matches!(
        h.events().first(),
        Some(Event::Disconnected {
            reason: DisconnectReason::Protocol(ProtocolError::Decode(_))
        })
    ));
}

#[test]
fn expired_fixed_token_and_cancel() {
    let token = SasToken::generate(
        "0ne00000A0A/registrations/my-device",
        &key(),
        10,
        Some("registration"),
    );
    let mut c = config();
    c.attestation = ProvisioningAttestation::SasToken(token);
    let mut h = Harness::new(c);
    assert_eq!(h.commands(), vec![TransportCommand::Open]);
    let unix = h.unix();
    h.s.handle_transport_connected(h.now, unix);
    assert_eq!(h.failed_with(), ProvisioningError::TokenExpired);
    assert_eq!(h.commands(), vec![TransportCommand::Close]);

    let mut h = Harness::new(config());
    h.connect();
    h.s.cancel(h.now);
    assert_eq!(h.failed_with(), ProvisioningError::Cancelled);
    assert_eq!(h.sent(), vec![Packet::Disconnect]);
    assert_eq!(h.commands(), vec![TransportCommand::Close]);
    // Cancelling again changes nothing.
    h.s.cancel(h.now);
    assert!(h.events().is_empty());
    // Cancelling before the transport was handed out asks for nothing.
    let mut h = Harness::new(config());
    h.s.cancel(h.now);
    assert!(h.commands().is_empty());
    assert_eq!(h.failed_with(), ProvisioningError::Cancelled);
}

#[test]
fn inputs_outside_a_connection_are_ignored() {
    let mut h = Harness::new(config());
    h.feed(Connack::new(false, ConnectReturnCode::Accepted));
    h.s.handle_transport_connected(h.now, UNIX); // never asked for: no Open taken
    h.s.handle_transport_closed(h.now, TransportClosed::Io);
    assert_eq!(h.s.state(), ProvisioningState::Opening);
    assert!(h.events().is_empty());
    assert!(Session::new(config().with_timeout(Duration::ZERO), h.now).is_err());
}
