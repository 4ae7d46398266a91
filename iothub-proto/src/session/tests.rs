//! Session tests against a small scripted peer: what the session transmits
//! is decoded with `mqtt::decode`, answers are built with the codec and
//! `topic::hub`. Time is simulated; nothing sleeps.

use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::time::Duration;

use bytes::{Bytes, BytesMut};
use serde_json::json;

use super::event::InboundMessage;
use super::*;
use crate::auth::{HostName, Identity, SasToken, SharedAccessKey};
use crate::mqtt::{
    self, Connack, Connect, ConnectReturnCode, MAX_PACKET_SIZE, Packet, Pid, Publish, QoS, QosPid,
    Suback, Subscribe, SubscribeReturnCode,
};
use crate::properties::MessageProperties;
use crate::topic::{self, RequestId, hub};

const UNIX: u64 = 1_700_000_000;
const HOST: &str = "contoso.azure-devices.net";

fn key() -> SharedAccessKey {
    SharedAccessKey::from_bytes([7u8; 32]).unwrap()
}

fn device() -> Identity {
    Identity::parse("dev1", None).unwrap()
}

fn module() -> Identity {
    Identity::parse("dev1", Some("mod1")).unwrap()
}

fn key_credential() -> Credential {
    Credential::SharedAccessKey {
        key: key(),
        key_name: None,
    }
}

fn config() -> Config {
    Config::new(device(), HostName::new(HOST).unwrap(), key_credential()).with_seed(42)
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// The session plus a scripted peer: simulated monotonic time, Unix time
/// moving with it (plus `unix_skew` to simulate a sleeping host), and logs
/// of what the session asked for.
struct Harness {
    s: Session,
    now: Instant,
    unix_skew: u64,
    wire: BytesMut,
    /// Packets transmitted and not yet taken by `sent()`.
    out: Vec<Packet>,
    /// Transport commands not yet taken by `commands()`.
    cmds: Vec<TransportCommand>,
    /// Events not yet taken by `events()` / `next_event()`.
    evq: alloc::collections::VecDeque<Event>,
    /// The last `Output::Timeout`.
    deadline: Option<Instant>,
}

impl Harness {
    fn new(config: Config) -> Harness {
        Harness {
            s: Session::new(config).unwrap(),
            now: Instant::from_millis(1_000),
            unix_skew: 0,
            wire: BytesMut::new(),
            out: Vec::new(),
            cmds: Vec::new(),
            evq: alloc::collections::VecDeque::new(),
            deadline: None,
        }
    }

    fn unix(&self) -> u64 {
        UNIX + self.now.as_millis() / 1000 + self.unix_skew
    }

    /// Takes every output until `Timeout`: packets, transport commands
    /// and events are kept for `sent()`, `commands()` and `events()`.
    fn collect(&mut self) {
        loop {
            match self.s.poll_output() {
                Output::Transmit(bytes) => self.wire.extend_from_slice(&bytes),
                Output::Transport(cmd) => self.cmds.push(cmd),
                Output::Event(e) => self.evq.push_back(e),
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

    /// The next event, if any.
    fn next_event(&mut self) -> Option<Event> {
        self.collect();
        self.evq.pop_front()
    }

    /// When the session wants `handle_timeout` next.
    fn timeout(&mut self) -> Option<Instant> {
        self.collect();
        self.deadline
    }

    /// Every packet transmitted since the last call.
    fn sent(&mut self) -> Vec<Packet> {
        self.collect();
        core::mem::take(&mut self.out)
    }

    /// Every transport command since the last call.
    fn commands(&mut self) -> Vec<TransportCommand> {
        self.collect();
        core::mem::take(&mut self.cmds)
    }

    /// Every event so far.
    fn events(&mut self) -> Vec<Event> {
        self.collect();
        self.evq.drain(..).collect()
    }

    fn feed(&mut self, packet: impl Into<Packet>) {
        let bytes = packet.into().to_bytes();
        self.s.handle_input(self.now, &bytes);
    }

    /// Moves time forward to `now + d`, firing every timer due on the way
    /// at its own instant.
    fn advance(&mut self, d: Duration) {
        let target = self.now + d;
        for _ in 0..100_000 {
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

    /// Expects the session to want a transport; opens it and returns the
    /// CONNECT.
    fn open(&mut self) -> Connect {
        assert_eq!(self.commands(), vec![TransportCommand::Open]);
        let unix = self.unix();
        self.s.handle_transport_connected(self.now, unix);
        let sent = self.sent();
        match sent.as_slice() {
            [Packet::Connect(c)] => c.clone(),
            other => panic!("expected CONNECT, got {other:?}"),
        }
    }

    /// Opens, answers CONNACK, and returns what followed (resends,
    /// SUBSCRIBE, queued work).
    fn connect(&mut self) -> Vec<Packet> {
        self.open();
        self.feed(Connack::new(true, ConnectReturnCode::Accepted));
        assert_eq!(self.s.state(), ConnectionState::Connected);
        self.sent()
    }

    /// Connects and grants every SUBSCRIBE that follows; returns the other
    /// packets.
    fn connect_and_grant(&mut self) -> Vec<Packet> {
        let sent = self.connect();
        self.grant(sent)
    }

    /// Grants every SUBSCRIBE among `packets`; returns the other packets
    /// plus whatever the grants caused.
    fn grant(&mut self, packets: Vec<Packet>) -> Vec<Packet> {
        let mut rest = Vec::new();
        for p in packets {
            match p {
                Packet::Subscribe(s) => {
                    let codes = s
                        .filters()
                        .iter()
                        .map(|(_, q)| SubscribeReturnCode::Success(*q));
                    self.feed(Suback::new(s.pid(), codes).unwrap());
                }
                other => rest.push(other),
            }
        }
        rest.extend(self.sent());
        rest
    }

    /// The transport dies (the adapter reports it).
    fn drop_transport(&mut self) {
        self.s
            .handle_transport_closed(self.now, TransportClosed::Io);
    }

    /// Drops the transport and waits out the backoff (in steps of 100 ms);
    /// the session then wants a new transport.
    fn drop_and_wait(&mut self) {
        self.drop_transport();
        for _ in 0..700 {
            self.advance(Duration::from_millis(100));
            if self.cmds.contains(&TransportCommand::Open) {
                return;
            }
        }
        panic!("no reconnection within 70 s");
    }
}

fn publishes(packets: &[Packet]) -> Vec<&Publish> {
    packets
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p),
            _ => None,
        })
        .collect()
}

fn only_publish(packets: &[Packet]) -> Publish {
    match packets {
        [Packet::Publish(p)] => p.clone(),
        other => panic!("expected one PUBLISH, got {other:?}"),
    }
}

fn only_subscribe(packets: &[Packet]) -> Subscribe {
    match packets {
        [Packet::Subscribe(s)] => s.clone(),
        other => panic!("expected one SUBSCRIBE, got {other:?}"),
    }
}

fn filters(s: &Subscribe) -> Vec<String> {
    s.filters()
        .iter()
        .map(|(f, _)| f.as_str().to_string())
        .collect()
}

/// The `$rid` of a twin request topic.
fn rid_of(p: &Publish) -> RequestId {
    let t = p.topic().as_str();
    let rid = t.split("$rid=").nth(1).expect("a $rid");
    RequestId::new(rid)
}

fn twin_answer(status: u16, rid: &RequestId, version: Option<u64>, body: &[u8]) -> Publish {
    Publish::new(
        hub::twin_response(status, rid, version),
        QosPid::AtMostOnce,
        Bytes::copy_from_slice(body),
    )
    .unwrap()
}

fn disconnected(events: &[Event]) -> Vec<DisconnectReason> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Disconnected { reason } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

fn reconnect_delays(events: &[Event]) -> Vec<Duration> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::ReconnectScheduled { delay } => Some(*delay),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------
// a. CONNECT, CONNACK, refusals

#[test]
fn wants_a_transport_at_once_and_connect_has_the_identity_fields() {
    let mut h = Harness::new(config());
    assert_eq!(h.s.state(), ConnectionState::Opening);
    assert_eq!(
        h.s.poll_output(),
        Output::Transport(TransportCommand::Open),
        "an Open is waiting"
    );
    h.cmds.push(TransportCommand::Open);
    let c = h.open();
    assert_eq!(c.client_id().as_str(), "dev1");
    assert_eq!(
        c.username().unwrap().as_str(),
        "contoso.azure-devices.net/dev1/?api-version=2021-04-12"
    );
    let password = core::str::from_utf8(c.password().unwrap()).unwrap();
    let token = SasToken::parse(password).unwrap();
    assert_eq!(token.expiry_unix_secs(), h.unix() + 3600);
    assert_eq!(
        token.resource_uri(),
        "contoso.azure-devices.net/devices/dev1"
    );
    assert!(token.verify(&key()));
    assert!(!c.clean_session());
    assert_eq!(c.keep_alive(), 60);
    assert!(c.last_will().is_none());
    assert_eq!(h.s.state(), ConnectionState::AwaitingConnack);
    assert_eq!(h.s.timer(TimerKind::Connack), Some(h.now + secs(30)));

    h.feed(Connack::new(false, ConnectReturnCode::Accepted));
    assert_eq!(h.s.state(), ConnectionState::Connected);
    assert_eq!(
        h.events(),
        vec![Event::Connected {
            session_present: false
        }]
    );
    // No feature enabled: nothing is subscribed.
    assert!(h.sent().is_empty());
    assert_eq!(h.s.timer(TimerKind::Connack), None);
}

#[test]
fn module_identity_clean_session_keep_alive_and_will() {
    let mut props = MessageProperties::new();
    props.add_application("reason", "power").unwrap();
    let cfg = Config::new(module(), HostName::new(HOST).unwrap(), key_credential())
        .with_clean_session(true)
        .with_keep_alive(secs(1177))
        .with_will(Some(
            Will::new(&b"bye"[..])
                .with_properties(props)
                .with_qos(Qos::AtMostOnce),
        ));
    let mut h = Harness::new(cfg);
    let c = h.open();
    assert_eq!(c.client_id().as_str(), "dev1/mod1");
    assert!(c.clean_session());
    assert_eq!(c.keep_alive(), 1177);
    let will = c.last_will().unwrap();
    assert_eq!(
        will.topic().as_str(),
        "devices/dev1/modules/mod1/messages/events/reason=power"
    );
    assert_eq!(will.message().as_ref(), b"bye");
    assert_eq!(will.qos(), QoS::AtMostOnce);
}

#[test]
fn x509_sends_no_password_and_a_fixed_token_is_sent_as_is() {
    let cfg = Config::new(device(), HostName::new(HOST).unwrap(), Credential::X509);
    let mut h = Harness::new(cfg);
    let c = h.open();
    assert!(c.password().is_none());
    assert!(c.username().is_some());

    let token = SasToken::generate(
        "contoso.azure-devices.net/devices/dev1",
        &key(),
        UNIX + 7200,
        None,
    );
    let cfg = Config::new(
        device(),
        HostName::new(HOST).unwrap(),
        Credential::SharedAccessSignature(token.clone()),
    );
    let mut h = Harness::new(cfg);
    let c = h.open();
    assert_eq!(
        c.password().unwrap().as_ref(),
        token.expose_secret().as_bytes()
    );
}

#[test]
fn keep_alive_beyond_1177_is_a_config_error() {
    assert_eq!(
        Session::new(config().with_keep_alive(secs(1178))).err(),
        Some(ConfigError::KeepAliveTooLong(secs(1178)))
    );
}

#[test]
fn connack_codes_1_and_2_stop() {
    for code in [
        ConnectReturnCode::UnacceptableProtocolVersion,
        ConnectReturnCode::IdentifierRejected,
    ] {
        let mut h = Harness::new(config());
        h.open();
        h.feed(Connack::new(false, code));
        let refused = ConnectRefused { code };
        let events = h.events();
        assert_eq!(
            disconnected(&events),
            vec![DisconnectReason::Refused(refused)]
        );
        assert!(events.contains(&Event::Stopped {
            reason: StopReason::Refused(refused)
        }));
        assert_eq!(h.s.state(), ConnectionState::Stopped);
        assert_eq!(h.commands(), vec![TransportCommand::Close]);
        h.advance(secs(3600));
        assert!(h.commands().is_empty(), "no reconnection after {code:?}");
        assert_eq!(h.timeout(), None);
    }
}

#[test]
fn connack_code_3_retries_with_normal_backoff() {
    let mut h = Harness::new(config());
    h.open();
    h.feed(Connack::new(false, ConnectReturnCode::ServerUnavailable));
    let events = h.events();
    let delays = reconnect_delays(&events);
    assert_eq!(delays.len(), 1);
    assert!(delays[0] >= secs(1) && delays[0] <= secs(3), "{delays:?}");
    assert_eq!(h.commands(), vec![TransportCommand::Close]);
    assert_eq!(h.s.state(), ConnectionState::Backoff);
    h.advance(delays[0]);
    assert_eq!(h.commands(), vec![TransportCommand::Open]);
}

#[test]
fn bad_credentials_wait_long_by_default_or_stop_by_policy() {
    for code in [
        ConnectReturnCode::BadUserNameOrPassword,
        ConnectReturnCode::NotAuthorized,
    ] {
        let mut h = Harness::new(config());
        h.open();
        h.feed(Connack::new(false, code));
        assert_eq!(reconnect_delays(&h.events()), vec![secs(300)]);
        h.commands();
        h.advance(secs(299));
        assert!(h.commands().is_empty(), "no tight loop");
        h.advance(secs(1));
        // A fresh token is signed for the next attempt.
        let c = h.open();
        let token = SasToken::parse(core::str::from_utf8(c.password().unwrap()).unwrap()).unwrap();
        assert_eq!(token.expiry_unix_secs(), h.unix() + 3600);

        let mut h = Harness::new(config().with_auth_failure(AuthFailurePolicy::Stop));
        h.open();
        h.feed(Connack::new(false, code));
        assert!(h.events().contains(&Event::Stopped {
            reason: StopReason::Refused(ConnectRefused { code })
        }));
    }
}

#[test]
fn no_connack_in_time_closes_and_backs_off() {
    let mut h = Harness::new(config().with_connect_timeout(secs(10)));
    h.open();
    h.advance(secs(9));
    assert_eq!(h.s.state(), ConnectionState::AwaitingConnack);
    h.advance(secs(1));
    let events = h.events();
    assert_eq!(
        disconnected(&events),
        vec![DisconnectReason::ConnackTimeout]
    );
    assert_eq!(reconnect_delays(&events).len(), 1);
    assert_eq!(h.commands(), vec![TransportCommand::Close]);
    assert_eq!(h.s.state(), ConnectionState::Backoff);
}

#[test]
fn transport_that_fails_to_open_is_retried_with_backoff() {
    let mut h = Harness::new(config());
    assert_eq!(h.commands(), vec![TransportCommand::Open]);
    h.s.handle_transport_closed(h.now, TransportClosed::ConnectFailed);
    let events = h.events();
    assert_eq!(
        disconnected(&events),
        vec![DisconnectReason::Transport(TransportClosed::ConnectFailed)]
    );
    assert_eq!(reconnect_delays(&events).len(), 1);
    assert!(h.commands().is_empty(), "nothing to close");
}

#[test]
fn input_split_at_every_byte_boundary() {
    let mut h = Harness::new(config());
    h.s.enable(h.now, Feature::Methods).unwrap();
    h.open();
    let mut wire = BytesMut::new();
    Packet::Connack(Connack::new(false, ConnectReturnCode::Accepted)).encode(&mut wire);
    Packet::Suback(Suback::new(Pid::MIN, [SubscribeReturnCode::Success(QoS::AtMostOnce)]).unwrap())
        .encode(&mut wire);
    let rid = RequestId::new("r1");
    Packet::Publish(
        Publish::new(
            hub::method_request("reboot", &rid).unwrap(),
            QosPid::AtMostOnce,
            Bytes::from_static(b"{}"),
        )
        .unwrap(),
    )
    .encode(&mut wire);
    for byte in wire.iter() {
        h.s.handle_input(h.now, &[*byte]);
    }
    let events = h.events();
    assert!(matches!(events.first(), Some(Event::Connected { .. })));
    assert!(
        matches!(events.last(), Some(Event::MethodRequest { name, .. }) if name == "reboot"),
        "{events:?}"
    );
}

// ---------------------------------------------------------------------------
// b. Subscriptions

#[test]
fn subscribes_only_to_enabled_features_and_at_most_five() {
    let mut h = Harness::new(config());
    assert!(
        h.connect().is_empty(),
        "nothing enabled, nothing subscribed"
    );
    h.events();

    h.s.enable(h.now, Feature::Methods).unwrap();
    let sub = only_subscribe(&h.sent());
    assert_eq!(filters(&sub), vec!["$iothub/methods/POST/#"]);
    assert_eq!(sub.filters()[0].1, QoS::AtMostOnce);
    // Enabling again is harmless.
    h.s.enable(h.now, Feature::Methods).unwrap();
    assert!(h.sent().is_empty());

    h.s.enable(h.now, Feature::C2d).unwrap();
    let sub = only_subscribe(&h.sent());
    assert_eq!(filters(&sub), vec!["devices/dev1/messages/devicebound/#"]);
    assert_eq!(sub.filters()[0].1, QoS::AtLeastOnce);
    assert!(h.s.is_enabled(Feature::C2d));
    assert!(!h.s.is_enabled(Feature::DesiredProperties));
}

#[test]
fn features_enabled_before_connecting_go_in_one_subscribe() {
    let mut h = Harness::new(config());
    for f in [Feature::C2d, Feature::Methods, Feature::DesiredProperties] {
        h.s.enable(h.now, f).unwrap();
    }
    let sent = h.connect();
    let sub = only_subscribe(&sent);
    let f = filters(&sub);
    assert_eq!(
        f,
        vec![
            "$iothub/twin/res/#",
            "$iothub/twin/PATCH/properties/desired/#",
            "$iothub/methods/POST/#",
            "devices/dev1/messages/devicebound/#",
        ]
    );
    assert!(f.len() <= 5);
}

#[test]
fn features_must_fit_the_identity() {
    let mut h = Harness::new(config());
    assert_eq!(
        h.s.enable(h.now, Feature::ModuleInputs),
        Err(CommandError::FeatureNotAvailable(Feature::ModuleInputs))
    );
    let mut h = Harness::new(Config::new(
        module(),
        HostName::new(HOST).unwrap(),
        key_credential(),
    ));
    assert_eq!(
        h.s.enable(h.now, Feature::C2d),
        Err(CommandError::FeatureNotAvailable(Feature::C2d))
    );
    h.s.enable(h.now, Feature::ModuleInputs).unwrap();
    let sub = only_subscribe(&h.connect());
    assert_eq!(filters(&sub), vec!["devices/dev1/modules/mod1/inputs/#"]);
}

#[test]
fn twin_requests_wait_for_the_twin_response_suback() {
    let mut h = Harness::new(config());
    h.connect();
    let token = h.s.get_twin(h.now).unwrap();
    let sub = only_subscribe(&h.sent());
    assert_eq!(filters(&sub), vec!["$iothub/twin/res/#"]);
    // No GET before the SUBACK.
    let second = h.s.get_twin(h.now).unwrap();
    assert!(h.sent().is_empty());
    h.feed(Suback::new(sub.pid(), [SubscribeReturnCode::Success(QoS::AtMostOnce)]).unwrap());
    let sent = h.sent();
    let gets = publishes(&sent);
    assert_eq!(gets.len(), 2);
    assert!(
        gets[0]
            .topic()
            .as_str()
            .starts_with("$iothub/twin/GET/?$rid=")
    );
    assert!(gets[0].payload().is_empty());
    assert_eq!(gets[0].qos(), QoS::AtMostOnce);
    assert_ne!(token, second);
    // A third request goes out at once, without another SUBSCRIBE.
    h.s.get_twin(h.now).unwrap();
    assert_eq!(publishes(&h.sent()).len(), 1);
}

#[test]
fn suback_failure_is_an_event_and_fails_waiting_twin_requests() {
    let mut h = Harness::new(config());
    h.s.enable(h.now, Feature::Methods).unwrap();
    let token = h.s.get_twin(h.now).unwrap();
    let sub = only_subscribe(&h.connect());
    h.events();
    let codes = sub.filters().iter().map(|(f, q)| {
        if f.as_str() == "$iothub/twin/res/#" {
            SubscribeReturnCode::Failure
        } else {
            SubscribeReturnCode::Success(*q)
        }
    });
    h.feed(Suback::new(sub.pid(), codes).unwrap());
    let events = h.events();
    assert_eq!(
        events,
        vec![
            Event::SubscriptionFailed {
                subscription: Subscription::TwinResponses
            },
            Event::RequestFailed {
                token,
                error: RequestError::SubscriptionFailed
            }
        ]
    );
    assert_eq!(h.s.state(), ConnectionState::Connected, "not fatal");
}

#[test]
fn resubscribes_everything_enabled_after_each_reconnect() {
    let mut h = Harness::new(config());
    h.s.enable(h.now, Feature::Methods).unwrap();
    h.connect_and_grant();
    h.s.enable(h.now, Feature::C2d).unwrap();
    let sent = h.sent();
    h.grant(sent);
    h.s.get_twin(h.now).unwrap();
    let sent = h.sent();
    let rest = h.grant(sent);
    assert_eq!(publishes(&rest).len(), 1);
    h.drop_and_wait();
    let sent = h.connect();
    let subs: Vec<_> = sent
        .iter()
        .filter_map(|p| match p {
            Packet::Subscribe(s) => Some(filters(s)),
            _ => None,
        })
        .collect();
    assert_eq!(
        subs,
        vec![vec![
            "$iothub/twin/res/#".to_string(),
            "$iothub/methods/POST/#".to_string(),
            "devices/dev1/messages/devicebound/#".to_string(),
        ]]
    );
}

// ---------------------------------------------------------------------------
// c. Telemetry

#[test]
fn qos1_telemetry_is_acknowledged_with_its_id() {
    let mut h = Harness::new(config());
    h.connect();
    h.events();
    let mut props = MessageProperties::new();
    props.content_type = Some("application/json".into());
    props.add_application("alert", "yes").unwrap();
    let id =
        h.s.send_telemetry(h.now, Message::new(&b"{}"[..]).with_properties(props))
            .unwrap();
    let p = only_publish(&h.sent());
    assert_eq!(
        p.topic().as_str(),
        "devices/dev1/messages/events/%24.ct=application%2Fjson&alert=yes"
    );
    assert_eq!(p.qos(), QoS::AtLeastOnce);
    assert!(!p.dup());
    assert_eq!(h.s.in_flight_len(), 1);
    assert!(h.events().is_empty());
    h.feed(Packet::Puback(p.pid().unwrap()));
    assert_eq!(h.events(), vec![Event::MessageAcknowledged { id }]);
    assert_eq!(h.s.in_flight_len(), 0);
}

#[test]
fn qos0_telemetry_is_reported_sent_when_handed_out() {
    let mut h = Harness::new(config());
    h.connect();
    h.events();
    let id =
        h.s.send_telemetry(h.now, Message::new(&b"x"[..]).with_qos(Qos::AtMostOnce))
            .unwrap();
    // The event comes once the bytes were handed out.
    let Output::Transmit(bytes) = h.s.poll_output() else {
        panic!("the PUBLISH first")
    };
    assert_eq!(bytes[0] >> 4, 3, "a PUBLISH");
    assert_eq!(h.s.poll_output(), Output::Event(Event::MessageSent { id }));
    assert_eq!(h.s.in_flight_len(), 0);
}

#[test]
fn packet_ids_never_collide_and_the_window_holds() {
    let mut h = Harness::new(config().with_max_in_flight(3));
    h.connect();
    h.events();
    // A SUBSCRIBE awaiting its SUBACK holds a packet id too.
    h.s.enable(h.now, Feature::Methods).unwrap();
    let sub = only_subscribe(&h.sent());
    let ids: Vec<_> = (0..5)
        .map(|i| h.s.send_telemetry(h.now, Message::new(vec![i])).unwrap())
        .collect();
    let sent = h.sent();
    let pubs = publishes(&sent);
    assert_eq!(pubs.len(), 3, "window of 3");
    assert_eq!(h.s.queued_len(), 2);
    let mut pids: Vec<Pid> = pubs.iter().map(|p| p.pid().unwrap()).collect();
    assert!(!pids.contains(&sub.pid()));
    // Acknowledge the second: the fourth goes out with an id not in use.
    h.feed(Packet::Puback(pids[1]));
    assert_eq!(h.events(), vec![Event::MessageAcknowledged { id: ids[1] }]);
    let p = only_publish(&h.sent());
    let new = p.pid().unwrap();
    assert!(new != pids[0] && new != pids[2] && new != sub.pid());
    pids.push(new);
    assert_eq!(h.s.in_flight_len(), 3);
    assert_eq!(h.s.queued_len(), 1);
}

#[test]
fn a_timed_out_message_keeps_its_packet_id_until_its_late_puback() {
    let mut h = Harness::new(
        config()
            .with_max_in_flight(1)
            .with_message_timeout(secs(10)),
    );
    h.connect();
    h.events();
    let first = h.s.send_telemetry(h.now, Message::new(&b"1"[..])).unwrap();
    let p1 = only_publish(&h.sent()).pid().unwrap();
    h.advance(secs(10));
    assert_eq!(
        h.events(),
        vec![Event::MessageFailed {
            id: first,
            reason: MessageFailure::Timeout
        }]
    );
    let second = h.s.send_telemetry(h.now, Message::new(&b"2"[..])).unwrap();
    let p2 = only_publish(&h.sent()).pid().unwrap();
    assert_ne!(p1, p2, "the timed-out id is reserved");
    // The late PUBACK of the first message acknowledges nothing else.
    h.feed(Packet::Puback(p1));
    assert!(h.events().is_empty());
    assert_eq!(h.s.in_flight_len(), 1);
    h.feed(Packet::Puback(p2));
    assert_eq!(h.events(), vec![Event::MessageAcknowledged { id: second }]);
}

#[test]
fn unacknowledged_messages_are_resent_in_order_with_dup_after_reconnect() {
    let mut h = Harness::new(config());
    h.connect();
    let ids: Vec<_> = (0..3)
        .map(|i| h.s.send_telemetry(h.now, Message::new(vec![i])).unwrap())
        .collect();
    let sent = h.sent();
    let first: Vec<(Pid, Bytes)> = publishes(&sent)
        .iter()
        .map(|p| (p.pid().unwrap(), p.payload().clone()))
        .collect();
    // The first one is acknowledged; the connection drops.
    h.feed(Packet::Puback(first[0].0));
    h.drop_and_wait();
    // Sent while disconnected: queued behind the re-sends.
    let late =
        h.s.send_telemetry(h.now, Message::new(&b"late"[..]))
            .unwrap();
    assert_eq!(h.s.queued_len(), 1);
    h.events();
    let sent = h.connect();
    let again = publishes(&sent);
    assert_eq!(again.len(), 3);
    for (p, (pid, payload)) in again.iter().zip(&first[1..]) {
        assert!(p.dup());
        assert_eq!(p.pid(), Some(*pid));
        assert_eq!(p.payload(), payload);
    }
    assert!(!again[2].dup(), "the new message is not a re-send");
    assert_eq!(again[2].payload().as_ref(), b"late");
    for p in &again {
        h.feed(Packet::Puback(p.pid().unwrap()));
    }
    let acked: Vec<_> = h
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::MessageAcknowledged { id } => Some(id),
            _ => None,
        })
        .collect();
    assert_eq!(acked, vec![ids[1], ids[2], late]);
}

#[test]
fn with_clean_session_unacknowledged_messages_are_resent_as_new_publishes() {
    let mut h = Harness::new(config().with_clean_session(true));
    h.connect();
    for i in 0..2 {
        h.s.send_telemetry(h.now, Message::new(vec![i])).unwrap();
    }
    let sent = h.sent();
    let before: Vec<Pid> = publishes(&sent).iter().map(|p| p.pid().unwrap()).collect();
    h.drop_and_wait();
    let sent = h.connect();
    let again = publishes(&sent);
    assert_eq!(again.len(), 2);
    for p in &again {
        assert!(!p.dup());
        assert!(!before.contains(&p.pid().unwrap()), "new packet ids");
    }
    assert_eq!(again[0].payload().as_ref(), &[0]);
    assert_eq!(again[1].payload().as_ref(), &[1]);
}

#[test]
fn a_full_queue_refuses_new_messages() {
    let mut h = Harness::new(config().with_queue_capacity(2));
    // Not connected: everything waits in the queue.
    assert!(!h.s.telemetry_queue_full());
    h.s.send_telemetry(h.now, Message::new(&b"1"[..])).unwrap();
    h.s.send_telemetry(h.now, Message::new(&b"2"[..])).unwrap();
    assert!(h.s.telemetry_queue_full());
    assert_eq!(
        h.s.send_telemetry(h.now, Message::new(&b"3"[..])),
        Err(CommandError::QueueFull { capacity: 2 })
    );
    assert_eq!(h.s.queued_len(), 2);
    // Once connected they go out and there is room again.
    assert_eq!(publishes(&h.connect()).len(), 2);
    assert!(!h.s.telemetry_queue_full());
    h.s.send_telemetry(h.now, Message::new(&b"3"[..])).unwrap();
    // A stopping session is not "full": it refuses with SessionClosed.
    h.s.disconnect(h.now, secs(1));
    assert!(!h.s.telemetry_queue_full());
}

#[test]
fn queue_full_matches_what_send_telemetry_refuses() {
    // Connected with a window of 1 and a queue of 1: the first message
    // goes out, the second waits, the third is refused.
    let mut h = Harness::new(config().with_queue_capacity(1).with_max_in_flight(1));
    let _ = h.connect();
    for expect_full in [false, false, true] {
        assert_eq!(h.s.telemetry_queue_full(), expect_full);
        let r = h.s.send_telemetry(h.now, Message::new(&b"m"[..]));
        assert_eq!(r.is_err(), expect_full, "{r:?}");
    }
    // With a queue of 0 a connected session still sends while the window
    // has room.
    let mut h = Harness::new(config().with_queue_capacity(0).with_max_in_flight(1));
    assert!(h.s.telemetry_queue_full(), "nothing can wait while offline");
    let _ = h.connect();
    assert!(!h.s.telemetry_queue_full());
    h.s.send_telemetry(h.now, Message::new(&b"m"[..])).unwrap();
    assert!(h.s.telemetry_queue_full());
}

#[test]
fn a_message_past_its_ttl_before_sending_expires() {
    let mut h = Harness::new(config());
    let id =
        h.s.send_telemetry(h.now, Message::new(&b"1"[..]).with_ttl(secs(5)))
            .unwrap();
    let keep = h.s.send_telemetry(h.now, Message::new(&b"2"[..])).unwrap();
    h.advance(secs(5));
    assert!(h.events().contains(&Event::MessageFailed {
        id,
        reason: MessageFailure::Expired
    }));
    assert_eq!(h.s.queued_len(), 1);
    let p = only_publish(&h.connect());
    assert_eq!(p.payload().as_ref(), b"2");
    h.feed(Packet::Puback(p.pid().unwrap()));
    assert!(
        h.events()
            .contains(&Event::MessageAcknowledged { id: keep })
    );
}

#[test]
fn a_message_without_puback_times_out() {
    let mut h = Harness::new(config());
    h.connect();
    h.events();
    let id = h.s.send_telemetry(h.now, Message::new(&b"1"[..])).unwrap();
    h.sent();
    assert_eq!(h.s.timer(TimerKind::Message), Some(h.now + secs(60)));
    h.advance(secs(59));
    assert!(
        h.events()
            .iter()
            .all(|e| !matches!(e, Event::MessageFailed { .. }))
    );
    h.advance(secs(1));
    assert!(h.events().contains(&Event::MessageFailed {
        id,
        reason: MessageFailure::Timeout
    }));
    assert_eq!(h.s.in_flight_len(), 0);
}

#[test]
fn oversized_messages_and_bad_properties_are_refused() {
    let mut h = Harness::new(config());
    let topic_len = "devices/dev1/messages/events/".len();
    let body = vec![0u8; MAX_MESSAGE_SIZE - topic_len];
    h.s.send_telemetry(h.now, Message::new(body)).unwrap();
    let body = vec![0u8; MAX_MESSAGE_SIZE - topic_len + 1];
    assert_eq!(
        h.s.send_telemetry(h.now, Message::new(body)),
        Err(CommandError::MessageTooLarge {
            size: MAX_MESSAGE_SIZE + 1,
            max: MAX_MESSAGE_SIZE
        })
    );
    for name in ["$custom", "iothub-MessageType"] {
        let mut props = MessageProperties::new();
        props.add_application(name, "x").unwrap();
        assert!(matches!(
            h.s.send_telemetry(h.now, Message::new(&b"x"[..]).with_properties(props)),
            Err(CommandError::InvalidProperties(_))
        ));
    }
}

// ---------------------------------------------------------------------------
// d. Twin requests

/// A connected harness with the twin-response subscription granted.
fn twin_ready(cfg: Config) -> Harness {
    let mut h = Harness::new(cfg);
    h.connect();
    h.s.get_twin(h.now).unwrap();
    let sent = h.sent();
    let rest = h.grant(sent);
    let get = only_publish(&rest);
    h.feed(twin_answer(200, &rid_of(&get), None, b"{}"));
    h.events();
    h
}

#[test]
fn twin_get_accepts_both_body_shapes() {
    let mut h = twin_ready(config());
    for body in [
        json!({"desired": {"a": 1, "$version": 4}, "reported": {"b": 2, "$version": 9}}),
        json!({"properties": {"desired": {"a": 1, "$version": 4}, "reported": {"b": 2, "$version": 9}}}),
    ] {
        let token = h.s.get_twin(h.now).unwrap();
        let get = only_publish(&h.sent());
        let body = serde_json::to_vec(&body).unwrap();
        h.feed(twin_answer(200, &rid_of(&get), None, &body));
        let events = h.events();
        let [Event::TwinReceived { token: t, twin }] = events.as_slice() else {
            panic!("{events:?}");
        };
        assert_eq!(*t, token);
        assert_eq!(twin.desired["a"], json!(1));
        assert_eq!(twin.reported["b"], json!(2));
        assert_eq!(twin.desired_version, Some(4));
        assert_eq!(twin.reported_version, Some(9));
    }
    assert_eq!(h.s.pending_requests_len(), 0);
}

#[test]
fn reported_patch_returns_the_new_version() {
    let mut h = twin_ready(config());
    let token =
        h.s.update_reported(h.now, Bytes::from_static(br#"{"fw":"1.2"}"#))
            .unwrap();
    let patch = only_publish(&h.sent());
    assert!(
        patch
            .topic()
            .as_str()
            .starts_with("$iothub/twin/PATCH/properties/reported/?$rid=")
    );
    assert_eq!(patch.payload().as_ref(), br#"{"fw":"1.2"}"#);
    h.feed(twin_answer(204, &rid_of(&patch), Some(12), b""));
    assert_eq!(
        h.events(),
        vec![Event::ReportedUpdated {
            token,
            version: Some(12)
        }]
    );
}

#[test]
fn reported_patch_must_be_a_json_object_of_at_most_32_kb() {
    let mut h = Harness::new(config());
    assert_eq!(
        h.s.update_reported(h.now, Bytes::from_static(b"[1,2]")),
        Err(CommandError::NotJsonObject)
    );
    assert!(matches!(
        h.s.update_reported(h.now, Bytes::from_static(b"{nope")),
        Err(CommandError::InvalidJson(JsonError::Syntax { .. }))
    ));
    let mut big = String::from("{\"a\":\"");
    big.push_str(&"x".repeat(MAX_REPORTED_SIZE));
    big.push_str("\"}");
    assert!(matches!(
        h.s.update_reported(h.now, Bytes::from(big)),
        Err(CommandError::PayloadTooLarge { .. })
    ));
    assert_eq!(h.s.pending_requests_len(), 0);
}

#[test]
fn status_429_is_retried_with_backoff_then_succeeds() {
    let mut h = twin_ready(config());
    let token = h.s.get_twin(h.now).unwrap();
    let first = only_publish(&h.sent());
    h.feed(twin_answer(429, &rid_of(&first), None, b""));
    assert!(h.events().is_empty(), "a retriable status is not final");
    assert!(h.sent().is_empty(), "not retried at once");
    h.advance(secs(3));
    let second = only_publish(&h.sent());
    assert_ne!(
        rid_of(&first),
        rid_of(&second),
        "each attempt has its own $rid"
    );
    // A late answer to the first attempt is ignored.
    h.feed(twin_answer(200, &rid_of(&first), None, b"{}"));
    assert!(h.events().is_empty());
    h.feed(twin_answer(
        200,
        &rid_of(&second),
        None,
        br#"{"desired":{"$version":1},"reported":{}}"#,
    ));
    assert!(matches!(
        h.events().as_slice(),
        [Event::TwinReceived { token: t, .. }] if *t == token
    ));
}

#[test]
fn retriable_statuses_give_up_after_the_retry_limit() {
    let mut h = twin_ready(config().with_request_retries(2));
    let token = h.s.get_twin(h.now).unwrap();
    for _ in 0..2 {
        let p = only_publish(&h.sent());
        h.feed(twin_answer(503, &rid_of(&p), None, b""));
        // At most min * 3 then min * 9.
        h.advance(secs(9));
    }
    let p = only_publish(&h.sent());
    h.feed(twin_answer(503, &rid_of(&p), None, b""));
    let events = h.events();
    assert_eq!(
        events,
        vec![Event::RequestFailed {
            token,
            error: RequestError::Hub(HubStatus { status: 503 })
        }]
    );
}

#[test]
fn status_404_is_a_typed_error() {
    let mut h = twin_ready(config());
    let token = h.s.get_twin(h.now).unwrap();
    let p = only_publish(&h.sent());
    h.feed(twin_answer(404, &rid_of(&p), None, b""));
    let events = h.events();
    assert_eq!(
        events,
        vec![Event::RequestFailed {
            token,
            error: RequestError::Hub(HubStatus { status: 404 })
        }]
    );
    let Event::RequestFailed {
        error: RequestError::Hub(status),
        ..
    } = &events[0]
    else {
        unreachable!()
    };
    assert!(!status.is_retriable());
}

#[test]
fn malformed_json_fails_only_that_request() {
    let mut h = twin_ready(config());
    let bad = h.s.get_twin(h.now).unwrap();
    let good = h.s.get_twin(h.now).unwrap();
    let sent = h.sent();
    let gets = publishes(&sent);
    h.feed(twin_answer(200, &rid_of(gets[0]), None, b"{\"desired\":"));
    h.feed(twin_answer(
        200,
        &rid_of(gets[1]),
        None,
        br#"{"desired":{},"reported":{}}"#,
    ));
    let events = h.events();
    assert!(matches!(
        &events[0],
        Event::RequestFailed { token, error: RequestError::MalformedResponse(JsonError::Syntax { .. }) } if *token == bad
    ));
    assert!(matches!(&events[1], Event::TwinReceived { token, .. } if *token == good));
    assert_eq!(h.s.state(), ConnectionState::Connected);
}

#[test]
fn request_ids_are_unique_beyond_256_requests() {
    let mut h = twin_ready(config().with_max_pending_requests(400));
    let mut rids = Vec::new();
    for _ in 0..300 {
        h.s.get_twin(h.now).unwrap();
    }
    for p in h.sent() {
        if let Packet::Publish(p) = p {
            rids.push(rid_of(&p));
        }
    }
    assert_eq!(rids.len(), 300);
    let mut unique = rids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 300);
    assert_eq!(
        h.s.get_twin(h.now).map(|_| ()).err(),
        None,
        "301 pending is still under the limit of 400"
    );
}

#[test]
fn too_many_pending_requests_are_refused() {
    let mut h = Harness::new(config().with_max_pending_requests(2));
    h.s.get_twin(h.now).unwrap();
    h.s.get_twin(h.now).unwrap();
    assert_eq!(
        h.s.get_twin(h.now),
        Err(CommandError::TooManyRequests { max: 2 })
    );
}

#[test]
fn an_unanswered_request_times_out() {
    let mut h = twin_ready(config());
    let token = h.s.get_twin(h.now).unwrap();
    h.sent();
    h.advance(secs(30));
    assert_eq!(
        h.events(),
        vec![Event::RequestFailed {
            token,
            error: RequestError::Timeout
        }]
    );
}

#[test]
fn requests_in_flight_are_resent_after_reconnect_and_keep_their_deadline() {
    let mut h = twin_ready(config());
    let start = h.now;
    let token = h.s.get_twin(h.now).unwrap();
    let first = only_publish(&h.sent());
    h.drop_transport();
    h.advance(secs(5));
    h.events();
    let sent = h.connect();
    let rest = h.grant(sent);
    let again = only_publish(&rest);
    assert!(again.topic().as_str().starts_with("$iothub/twin/GET/"));
    assert_ne!(rid_of(&first), rid_of(&again));
    assert_eq!(h.s.timer(TimerKind::Request), Some(start + secs(30)));
    h.feed(twin_answer(
        200,
        &rid_of(&again),
        None,
        br#"{"desired":{},"reported":{}}"#,
    ));
    assert!(
        h.events()
            .iter()
            .any(|e| matches!(e, Event::TwinReceived { token: t, .. } if *t == token))
    );
}

// ---------------------------------------------------------------------------
// e. Desired properties

/// Answers the session's own full twin read with desired `$version` `v`.
fn answer_resync(h: &mut Harness, packets: &[Packet], v: u64) {
    let get = publishes(packets)
        .into_iter()
        .find(|p| p.topic().as_str().starts_with("$iothub/twin/GET/"))
        .expect("a full twin read");
    let body = json!({"desired": {"mode": v, "$version": v}, "reported": {}});
    h.feed(twin_answer(
        200,
        &rid_of(get),
        None,
        &serde_json::to_vec(&body).unwrap(),
    ));
}

fn patch(v: u64, body: serde_json::Value) -> Publish {
    Publish::new(
        hub::desired_patch(v),
        QosPid::AtMostOnce,
        Bytes::from(serde_json::to_vec(&body).unwrap()),
    )
    .unwrap()
}

fn desired_events(events: &[Event]) -> Vec<(&'static str, u64)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::DesiredState { version, .. } => Some(("state", *version)),
            Event::DesiredPatch { version, .. } => Some(("patch", *version)),
            _ => None,
        })
        .collect()
}

#[test]
fn full_desired_state_after_each_connect_only_when_the_version_moved() {
    let mut h = Harness::new(config());
    h.s.enable(h.now, Feature::DesiredProperties).unwrap();
    let rest = h.connect_and_grant();
    answer_resync(&mut h, &rest, 5);
    let events = h.events();
    assert_eq!(desired_events(&events), vec![("state", 5)]);
    assert!(events.iter().any(|e| matches!(e,
        Event::DesiredState { desired, .. } if desired["mode"] == json!(5))));
    assert_eq!(h.s.desired_version(), Some(5));
    assert_eq!(h.s.pending_requests_len(), 0, "the read is internal");

    // Reconnect: same version, no event.
    h.drop_and_wait();
    let rest = h.connect_and_grant();
    answer_resync(&mut h, &rest, 5);
    assert_eq!(desired_events(&h.events()), vec![]);

    // Reconnect: the version moved while offline.
    h.drop_and_wait();
    let rest = h.connect_and_grant();
    answer_resync(&mut h, &rest, 7);
    assert_eq!(desired_events(&h.events()), vec![("state", 7)]);
    assert_eq!(h.s.desired_version(), Some(7));
}

#[test]
fn stale_desired_patches_are_dropped_and_a_gap_triggers_a_full_read() {
    let mut h = Harness::new(config());
    h.s.enable(h.now, Feature::DesiredProperties).unwrap();
    let rest = h.connect_and_grant();
    answer_resync(&mut h, &rest, 5);
    h.events();

    h.feed(patch(5, json!({"mode": "old"})));
    h.feed(patch(4, json!({"mode": "older"})));
    assert_eq!(desired_events(&h.events()), vec![], "stale");
    h.feed(patch(6, json!({"mode": "six"})));
    let events = h.events();
    assert_eq!(desired_events(&events), vec![("patch", 6)]);
    assert!(events.iter().any(|e| matches!(e,
        Event::DesiredPatch { patch, .. } if patch["mode"] == json!("six"))));
    assert!(h.sent().is_empty());

    // Version 8 skips 7: a full read follows.
    h.feed(patch(8, json!({"mode": "eight"})));
    assert_eq!(desired_events(&h.events()), vec![]);
    let sent = h.sent();
    answer_resync(&mut h, &sent, 8);
    assert_eq!(desired_events(&h.events()), vec![("state", 8)]);
    assert_eq!(h.s.desired_version(), Some(8));
}

#[test]
fn patches_arriving_during_the_full_read_are_applied_after_it() {
    let mut h = Harness::new(config());
    h.s.enable(h.now, Feature::DesiredProperties).unwrap();
    let rest = h.connect_and_grant();
    // While the read is in flight: 5 (will be stale) and 6.
    h.feed(patch(5, json!({"a": 5})));
    h.feed(patch(6, json!({"a": 6})));
    assert_eq!(desired_events(&h.events()), vec![]);
    answer_resync(&mut h, &rest, 5);
    assert_eq!(
        desired_events(&h.events()),
        vec![("state", 5), ("patch", 6)]
    );
    assert_eq!(h.s.desired_version(), Some(6));
}

#[test]
fn an_initial_desired_version_suppresses_an_unchanged_state() {
    let mut h = Harness::new(config().with_initial_desired_version(Some(5)));
    h.s.enable(h.now, Feature::DesiredProperties).unwrap();
    let rest = h.connect_and_grant();
    answer_resync(&mut h, &rest, 5);
    assert_eq!(desired_events(&h.events()), vec![]);
}

#[test]
fn a_refused_desired_subscription_fails_the_sync_at_once() {
    let mut h = Harness::new(config());
    h.s.enable(h.now, Feature::DesiredProperties).unwrap();
    let sub = only_subscribe(&h.connect());
    h.events();
    let codes = sub.filters().iter().map(|(f, q)| {
        if f.as_str() == "$iothub/twin/PATCH/properties/desired/#" {
            SubscribeReturnCode::Failure
        } else {
            SubscribeReturnCode::Success(*q)
        }
    });
    h.feed(Suback::new(sub.pid(), codes).unwrap());
    assert_eq!(
        h.events(),
        vec![
            Event::SubscriptionFailed {
                subscription: Subscription::DesiredProperties
            },
            Event::DesiredSyncFailed {
                error: RequestError::SubscriptionFailed
            }
        ]
    );
    assert!(h.sent().is_empty(), "no twin read without notifications");
    // The next connection tries again.
    h.drop_and_wait();
    let rest = h.connect_and_grant();
    answer_resync(&mut h, &rest, 2);
    assert_eq!(desired_events(&h.events()), vec![("state", 2)]);
}

#[test]
fn desired_patches_without_the_feature_are_ignored() {
    let mut h = Harness::new(config());
    h.connect();
    h.events();
    h.feed(patch(3, json!({"a": 1})));
    assert!(h.events().is_empty());
    assert!(h.sent().is_empty(), "no twin read");
    assert_eq!(h.s.desired_version(), None);
}

#[test]
fn an_invalid_desired_patch_is_reported_and_resynced() {
    let mut h = Harness::new(config());
    h.s.enable(h.now, Feature::DesiredProperties).unwrap();
    let rest = h.connect_and_grant();
    answer_resync(&mut h, &rest, 1);
    h.events();
    h.feed(
        Publish::new(
            hub::desired_patch(2),
            QosPid::AtMostOnce,
            Bytes::from_static(b"[]"),
        )
        .unwrap(),
    );
    assert_eq!(
        h.events(),
        vec![Event::InvalidDesiredPatch {
            version: 2,
            error: JsonError::Shape
        }]
    );
    let sent = h.sent();
    answer_resync(&mut h, &sent, 2);
    assert_eq!(desired_events(&h.events()), vec![("state", 2)]);
}

// ---------------------------------------------------------------------------
// f. Direct methods

fn method_request(name: &str, rid: &str, body: &'static [u8]) -> Publish {
    Publish::new(
        hub::method_request(name, &RequestId::new(rid)).unwrap(),
        QosPid::AtMostOnce,
        Bytes::from_static(body),
    )
    .unwrap()
}

#[test]
fn a_method_request_is_answered_on_its_topic() {
    let mut h = Harness::new(config());
    h.s.enable(h.now, Feature::Methods).unwrap();
    h.connect_and_grant();
    h.events();
    h.feed(method_request("reboot", "abc", br#"{"delay":5}"#));
    let events = h.events();
    let [Event::MethodRequest { id, name, payload }] = events.as_slice() else {
        panic!("{events:?}");
    };
    assert_eq!(name, "reboot");
    assert_eq!(id.request_id().as_str(), "abc");
    assert_eq!(payload.as_ref(), br#"{"delay":5}"#);
    h.s.respond_to_method(
        h.now,
        id.clone(),
        200,
        Bytes::from_static(br#"{"ok":true}"#),
    )
    .unwrap();
    let p = only_publish(&h.sent());
    assert_eq!(p.topic().as_str(), "$iothub/methods/res/200/?$rid=abc");
    assert_eq!(p.payload().as_ref(), br#"{"ok":true}"#);
    assert_eq!(p.qos(), QoS::AtMostOnce);

    let big = Bytes::from(vec![b' '; MAX_METHOD_PAYLOAD + 1]);
    assert!(matches!(
        h.s.respond_to_method(h.now, id.clone(), 200, big),
        Err(CommandError::PayloadTooLarge { .. })
    ));
}

#[test]
fn a_method_response_after_reconnect_is_undeliverable() {
    let mut h = Harness::new(config());
    h.s.enable(h.now, Feature::Methods).unwrap();
    h.connect_and_grant();
    h.events();
    h.feed(method_request("reboot", "abc", b""));
    let Some(Event::MethodRequest { id, .. }) = h.events().pop() else {
        panic!("no method request");
    };
    assert_eq!(id.connection(), 1);
    h.drop_transport();
    assert_eq!(
        h.s.respond_to_method(h.now, id.clone(), 200, Bytes::new()),
        Err(CommandError::MethodResponseUndeliverable)
    );
    h.advance(secs(61));
    h.connect_and_grant();
    assert_eq!(h.s.connection(), 2);
    assert_eq!(
        h.s.respond_to_method(h.now, id, 200, Bytes::new()),
        Err(CommandError::MethodResponseUndeliverable)
    );
    assert!(h.sent().is_empty());
}

// ---------------------------------------------------------------------------
// g. Cloud-to-device and module input messages

fn c2d(pid: u16, props: &MessageProperties, body: &'static [u8]) -> Publish {
    Publish::new(
        hub::c2d(device().device_id(), props),
        QosPid::AtLeastOnce(Pid::new(pid).unwrap()),
        Bytes::from_static(body),
    )
    .unwrap()
}

fn c2d_topic(pid: u16, topic: &str, body: &'static [u8]) -> Publish {
    Publish::new(
        topic,
        QosPid::AtLeastOnce(Pid::new(pid).unwrap()),
        Bytes::from_static(body),
    )
    .unwrap()
}

fn take_c2d(h: &mut Harness) -> InboundMessage {
    match h.next_event() {
        Some(Event::C2dMessage(m)) => m,
        other => panic!("expected a C2D message, got {other:?}"),
    }
}

fn puback(pid: u16) -> Packet {
    Packet::Puback(Pid::new(pid).unwrap())
}

#[test]
fn c2d_is_acknowledged_only_once_taken() {
    let mut h = Harness::new(config());
    h.s.enable(h.now, Feature::C2d).unwrap();
    h.connect_and_grant();
    h.events();
    let mut props = MessageProperties::new();
    props.message_id = Some("m-1".into());
    props.add_application("color", "blue").unwrap();
    h.feed(c2d(7, &props, b"hello"));
    let msg = take_c2d(&mut h);
    assert_eq!(msg.properties, props);
    assert_eq!(msg.payload.as_ref(), b"hello");
    assert!(
        h.sent().is_empty(),
        "taking the event is not taking the message"
    );
    assert_eq!(h.s.inbound_pending_len(), 1);
    let token = msg.ack.expect("a QoS 1 message has a token");
    assert_eq!(token.pid(), Pid::new(7).unwrap());
    h.s.taken(token);
    assert_eq!(h.sent(), vec![puback(7)]);
    assert_eq!(h.s.inbound_pending_len(), 0);
    h.s.taken(token);
    assert!(h.sent().is_empty(), "once");
}

#[test]
fn c2d_bags_the_old_decoder_refused_are_delivered_and_acknowledged_once_taken() {
    // Shapes of real hub traffic and of the official SDKs' test data (see
    // tests/hub_topics.rs for their sources).
    let mut h = Harness::new(config());
    h.s.enable(h.now, Feature::C2d).unwrap();
    h.connect_and_grant();
    h.events();
    for (pid, bag) in [
        (
            1,
            "iothub-ack=Full&%24.to=%2Fdevices%2Fdev1%2Fmessages%2FdeviceBound&%24.cid&%24.uid",
        ),
        (2, "%24.cid=Corrid1&%24.mid=MessageId1&Prop1=Value1/"),
        (3, "iothub-ack=sometimes&a=%zz&&b=%FF"),
        (4, "%24.mid=1&%24.mid=2&=v"),
    ] {
        let topic = alloc::format!("devices/dev1/messages/devicebound/{bag}");
        h.feed(c2d_topic(pid, &topic, b"x"));
        let msg = take_c2d(&mut h);
        assert!(h.sent().is_empty(), "{bag}: not before it is taken");
        h.s.taken(msg.ack.unwrap());
        assert_eq!(h.sent(), vec![puback(pid)], "{bag}");
        match pid {
            1 => {
                assert_eq!(msg.properties.ack, Some(crate::properties::Ack::Full));
                assert_eq!(msg.properties.get_application("$.cid"), Some(None));
            }
            2 => assert_eq!(
                msg.properties.get_application("Prop1"),
                Some(Some("Value1"))
            ),
            3 => assert_eq!(
                msg.properties.ack,
                Some(crate::properties::Ack::Other("sometimes".into()))
            ),
            _ => assert_eq!(msg.properties.get_application("$.mid"), Some(Some("2"))),
        }
    }
}

#[test]
fn c2d_taken_after_the_connection_dropped_is_not_acknowledged() {
    let mut h = Harness::new(config());
    h.s.enable(h.now, Feature::C2d).unwrap();
    h.connect_and_grant();
    h.events();
    h.feed(c2d(7, &MessageProperties::new(), b"x"));
    let msg = take_c2d(&mut h);
    h.drop_transport();
    h.events();
    h.s.taken(msg.ack.unwrap());
    assert!(h.sent().is_empty(), "the hub redelivers it instead");
    h.drop_and_wait();
    h.connect_and_grant();
    h.s.taken(msg.ack.unwrap());
    assert!(h.sent().is_empty(), "not on a later connection either");
}

#[test]
fn manual_ack_sends_the_puback_on_ack_only_on_the_same_connection() {
    let mut h = Harness::new(config().with_manual_ack(true));
    h.s.enable(h.now, Feature::C2d).unwrap();
    h.connect_and_grant();
    h.events();
    h.feed(c2d(9, &MessageProperties::new(), b"x"));
    let msg = take_c2d(&mut h);
    let token = msg.ack.unwrap();
    h.s.taken(token);
    assert!(h.sent().is_empty(), "taking does not ack in manual mode");
    assert_eq!(token.pid(), Pid::new(9).unwrap());
    h.s.ack(token).unwrap();
    assert_eq!(h.sent(), vec![puback(9)]);
    assert_eq!(h.s.ack(token), Err(CommandError::AckUndeliverable), "twice");

    h.feed(c2d(10, &MessageProperties::new(), b"y"));
    let msg = take_c2d(&mut h);
    h.drop_and_wait();
    h.connect_and_grant();
    assert_eq!(
        h.s.ack(msg.ack.unwrap()),
        Err(CommandError::AckUndeliverable)
    );
}

#[test]
fn c2d_for_a_feature_not_asked_for_is_held_unacknowledged_until_enabled() {
    // A CleanSession 0 session's kept subscription: the hub delivers C2D
    // before the application asked for it (after a restart, say).
    let mut h = Harness::new(config());
    h.connect_and_grant();
    h.events();
    h.feed(c2d(1, &MessageProperties::new(), b"first"));
    h.feed(c2d(2, &MessageProperties::new(), b"second"));
    assert!(h.events().is_empty(), "held, not delivered");
    assert!(h.sent().is_empty(), "and not acknowledged");
    assert_eq!((h.s.held_len(), h.s.inbound_pending_len()), (2, 2));
    h.s.enable(h.now, Feature::C2d).unwrap();
    let mut subscribe = None;
    for p in h.sent() {
        match p {
            Packet::Subscribe(s) => subscribe = Some(s),
            other => panic!("only a SUBSCRIBE, got {other:?}"),
        }
    }
    assert!(subscribe.is_some());
    let first = take_c2d(&mut h);
    let second = take_c2d(&mut h);
    assert_eq!(
        (first.payload.as_ref(), second.payload.as_ref()),
        (&b"first"[..], &b"second"[..]),
        "in their order"
    );
    assert_eq!(h.s.held_len(), 0);
    h.s.taken(second.ack.unwrap());
    h.s.taken(first.ack.unwrap());
    assert_eq!(h.sent(), vec![puback(2), puback(1)]);
}

#[test]
fn held_messages_are_left_to_the_hub_when_the_connection_ends() {
    let mut h = Harness::new(config());
    h.connect_and_grant();
    h.events();
    h.feed(c2d(1, &MessageProperties::new(), b"x"));
    assert_eq!(h.s.held_len(), 1);
    h.drop_and_wait();
    assert_eq!(h.s.held_len(), 0, "the hub sends it again");
    assert_eq!(h.s.inbound_pending_len(), 0);
    h.connect_and_grant();
    h.events();
    // The hub's redelivery (DUP) is held again, then delivered once.
    h.feed(c2d(1, &MessageProperties::new(), b"x").with_dup(true));
    h.s.enable(h.now, Feature::C2d).unwrap();
    h.sent();
    let msg = take_c2d(&mut h);
    assert!(h.next_event().is_none());
    h.s.taken(msg.ack.unwrap());
    assert_eq!(h.sent(), vec![puback(1)]);
}

#[test]
fn a_message_given_back_is_held_with_the_ones_after_it_until_enabled_again() {
    let mut h = Harness::new(config());
    h.s.enable(h.now, Feature::C2d).unwrap();
    h.connect_and_grant();
    h.events();
    h.feed(c2d(1, &MessageProperties::new(), b"a"));
    let event = h.next_event().unwrap();
    // The application's stream went away before it took the message.
    h.s.hold_inbound(Feature::C2d);
    h.s.return_inbound(event);
    h.feed(c2d(2, &MessageProperties::new(), b"b"));
    assert!(h.events().is_empty());
    assert!(h.sent().is_empty(), "nothing acknowledged");
    assert_eq!(h.s.held_len(), 2);
    // A new stream.
    h.s.enable(h.now, Feature::C2d).unwrap();
    assert!(h.sent().is_empty(), "already subscribed");
    let a = take_c2d(&mut h);
    let b = take_c2d(&mut h);
    assert_eq!(
        (a.payload.as_ref(), b.payload.as_ref()),
        (&b"a"[..], &b"b"[..])
    );
    h.s.taken(a.ack.unwrap());
    h.s.taken(b.ack.unwrap());
    assert_eq!(h.sent(), vec![puback(1), puback(2)]);
    // Other events given back, and other features held, are ignored.
    h.s.return_inbound(Event::Connected {
        session_present: false,
    });
    h.s.hold_inbound(Feature::Methods);
    assert!(h.events().is_empty());
}

#[test]
fn a_message_given_back_late_is_held_in_its_arrival_place() {
    // The stream is dropped with "a" inside; "b" arrives and is held
    // before the stream's give-back of "a" reaches the session.
    let mut h = Harness::new(config());
    h.s.enable(h.now, Feature::C2d).unwrap();
    h.connect_and_grant();
    h.events();
    h.feed(c2d(1, &MessageProperties::new(), b"a"));
    let a = h.next_event().unwrap();
    h.feed(c2d(2, &MessageProperties::new(), b"b"));
    let b = h.next_event().unwrap();
    h.s.hold_inbound(Feature::C2d);
    h.s.return_inbound(b);
    h.s.return_inbound(a);
    h.s.enable(h.now, Feature::C2d).unwrap();
    let first = take_c2d(&mut h);
    let second = take_c2d(&mut h);
    assert_eq!(
        (first.payload.as_ref(), second.payload.as_ref()),
        (&b"a"[..], &b"b"[..])
    );
}

#[test]
fn a_message_left_in_an_old_stream_goes_to_the_current_one() {
    let mut h = Harness::new(config());
    h.s.enable(h.now, Feature::C2d).unwrap();
    h.connect_and_grant();
    h.events();
    h.feed(c2d(1, &MessageProperties::new(), b"a"));
    let event = h.next_event().unwrap();
    // A newer stream is open when the old one is dropped with the message
    // inside: the message is delivered again, and nothing is held.
    h.s.return_inbound(event);
    let again = take_c2d(&mut h);
    assert_eq!(again.payload.as_ref(), b"a");
    assert_eq!(h.s.held_len(), 0);
    h.feed(c2d(2, &MessageProperties::new(), b"b"));
    assert_eq!(take_c2d(&mut h).payload.as_ref(), b"b", "still delivered");
    h.s.taken(again.ack.unwrap());
    assert_eq!(h.sent(), vec![puback(1)]);
}

#[test]
fn a_message_given_back_after_its_connection_ended_is_left_to_the_hub() {
    let mut h = Harness::new(config());
    h.s.enable(h.now, Feature::C2d).unwrap();
    h.connect_and_grant();
    h.events();
    h.feed(c2d(1, &MessageProperties::new(), b"a"));
    let event = h.next_event().unwrap();
    h.drop_transport();
    h.events();
    h.s.hold_inbound(Feature::C2d);
    h.s.return_inbound(event);
    assert_eq!(h.s.held_len(), 0, "the hub sends it again");
}

#[test]
fn a_resend_of_a_waiting_packet_id_is_not_delivered_twice() {
    let mut h = Harness::new(config());
    h.s.enable(h.now, Feature::C2d).unwrap();
    h.connect_and_grant();
    h.events();
    h.feed(c2d(5, &MessageProperties::new(), b"x"));
    h.feed(c2d(5, &MessageProperties::new(), b"x"));
    let msg = take_c2d(&mut h);
    assert!(h.next_event().is_none());
    h.s.taken(msg.ack.unwrap());
    assert_eq!(h.sent(), vec![puback(5)]);
}

#[test]
fn messages_over_the_pending_limit_are_neither_delivered_nor_acknowledged() {
    let mut h = Harness::new(config().with_max_inbound_pending(2));
    h.s.enable(h.now, Feature::C2d).unwrap();
    h.connect_and_grant();
    h.events();
    for pid in 1..=3 {
        h.feed(c2d(pid, &MessageProperties::new(), b"x"));
    }
    let events = h.events();
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(matches!(
        &events[2],
        Event::InboundOverflow { topic, limit: 2 } if topic.starts_with("devices/dev1/messages/devicebound/")
    ));
    assert!(h.sent().is_empty());
    // Taking one makes room.
    let Event::C2dMessage(first) = &events[0] else {
        panic!()
    };
    h.s.taken(first.ack.unwrap());
    h.feed(c2d(4, &MessageProperties::new(), b"y"));
    assert!(matches!(h.events().as_slice(), [Event::C2dMessage(_)]));
    assert_eq!(h.sent(), vec![puback(1)]);
    assert!(
        Session::new(config().with_max_inbound_pending(0)).is_err(),
        "a limit of zero is refused"
    );
}

#[test]
fn module_input_messages_carry_their_decoded_input_name() {
    let mut h = Harness::new(Config::new(
        module(),
        HostName::new(HOST).unwrap(),
        key_credential(),
    ));
    h.s.enable(h.now, Feature::ModuleInputs).unwrap();
    h.connect_and_grant();
    h.events();
    for (pid, topic, name) in [
        (1, "devices/dev1/modules/mod1/inputs/input1/", "input1"),
        // Microsoft's C SDK test data: a trailing `/` after the bag, and
        // no bag at all.
        (
            2,
            "devices/dev1/modules/mod1/inputs/input1/%24.cdid=connected_device&%24.cmid=connected_module/",
            "input1",
        ),
        (3, "devices/dev1/modules/mod1/inputs/input1", "input1"),
        // Percent-decoded (a raw `+` cannot be in a PUBLISH topic).
        (
            4,
            "devices/dev1/modules/mod1/inputs/fake%24in%2Bput/",
            "fake$in+put",
        ),
    ] {
        h.feed(
            Publish::new(
                topic,
                QosPid::AtLeastOnce(Pid::new(pid).unwrap()),
                Bytes::from_static(b"m"),
            )
            .unwrap(),
        );
        let events = h.events();
        let [Event::InputMessage { input, message }] = events.as_slice() else {
            panic!("{topic}: {events:?}")
        };
        assert_eq!(input, name);
        assert!(h.sent().is_empty());
        h.s.taken(message.ack.unwrap());
        assert_eq!(h.sent(), vec![puback(pid)]);
        if pid == 2 {
            assert_eq!(
                message.properties.connection_module_id.as_deref(),
                Some("connected_module")
            );
        }
    }
}

#[test]
fn a_publish_the_session_cannot_read_is_reported_with_its_bytes_and_not_acknowledged() {
    let mut h = Harness::new(config());
    h.connect();
    h.events();
    for (pid, topic) in [
        (1, "some/other/topic"),
        (2, "devices/other/messages/devicebound/"),
        (3, "$iothub/methods/POST/bad%zz/?$rid=1"),
    ] {
        h.feed(
            Publish::new(
                topic,
                QosPid::AtLeastOnce(Pid::new(pid).unwrap()),
                Bytes::from_static(b"raw"),
            )
            .unwrap(),
        );
        let events = h.events();
        let [
            Event::UnexpectedPublish {
                topic: t,
                payload,
                error,
                ack,
            },
        ] = events.as_slice()
        else {
            panic!("{topic}: {events:?}")
        };
        assert_eq!((t.as_str(), payload.as_ref()), (topic, &b"raw"[..]));
        assert_eq!(
            *error,
            if pid == 3 {
                topic::TopicError::InvalidEncoding
            } else {
                topic::TopicError::NoMatch
            }
        );
        assert!(h.sent().is_empty(), "{topic}: not acknowledged");
        assert_eq!(h.s.state(), ConnectionState::Connected, "not fatal");
        if pid == 1 {
            // The application may still acknowledge it.
            h.s.ack(ack.unwrap()).unwrap();
            assert_eq!(h.sent(), vec![puback(1)]);
        }
    }
}

// ---------------------------------------------------------------------------
// h. Keep-alive

#[test]
fn pingreq_after_keep_alive_of_idle_sending() {
    let mut h = Harness::new(config());
    h.connect();
    h.advance(secs(30));
    // Sending restarts the keep-alive.
    h.s.send_telemetry(h.now, Message::new(&b"x"[..]).with_qos(Qos::AtMostOnce))
        .unwrap();
    h.sent();
    h.advance(secs(59));
    assert!(h.sent().is_empty());
    h.advance(secs(1));
    assert_eq!(h.sent(), vec![Packet::Pingreq]);
    assert_eq!(h.s.timer(TimerKind::PingResponse), Some(h.now + secs(30)));
    h.feed(Packet::Pingresp);
    assert_eq!(h.s.timer(TimerKind::PingResponse), None);
    h.advance(secs(60));
    assert_eq!(h.sent(), vec![Packet::Pingreq]);
}

#[test]
fn no_pingresp_in_time_means_a_dead_connection() {
    let mut h = Harness::new(config().with_ping_timeout(secs(10)));
    h.connect();
    h.events();
    h.advance(secs(60));
    assert_eq!(h.sent(), vec![Packet::Pingreq]);
    h.advance(secs(10));
    let events = h.events();
    assert_eq!(disconnected(&events), vec![DisconnectReason::PingTimeout]);
    assert_eq!(reconnect_delays(&events).len(), 1);
    assert_eq!(h.commands(), vec![TransportCommand::Close]);
    assert_eq!(h.s.state(), ConnectionState::Backoff);
}

// ---------------------------------------------------------------------------
// i. SAS renewal

fn expiry_of(c: &Connect) -> u64 {
    SasToken::parse(core::str::from_utf8(c.password().unwrap()).unwrap())
        .unwrap()
        .expiry_unix_secs()
}

#[test]
fn the_token_is_renewed_at_80_percent_of_its_lifetime() {
    let mut h = Harness::new(config());
    let first = h.open();
    h.feed(Connack::new(true, ConnectReturnCode::Accepted));
    h.events();
    assert_eq!(expiry_of(&first), h.unix() + 3600);
    assert_eq!(h.s.timer(TimerKind::Renewal), Some(h.now + secs(2880)));
    // Keep the connection alive with PINGRESPs until just before 80 %.
    for _ in 0..47 {
        h.advance(secs(60));
        h.feed(Packet::Pingresp);
    }
    h.sent();
    assert!(h.commands().is_empty());
    h.advance(secs(60));
    // At 2880 s: DISCONNECT, close, and a new transport at once.
    let sent = h.sent();
    assert_eq!(sent.last(), Some(&Packet::Disconnect));
    assert_eq!(
        h.commands(),
        vec![TransportCommand::Close, TransportCommand::Open]
    );
    assert_eq!(
        disconnected(&h.events()),
        vec![DisconnectReason::TokenRenewal]
    );
    let unix = h.unix();
    h.s.handle_transport_connected(h.now, unix);
    let Packet::Connect(second) = &h.sent()[0] else {
        panic!("no CONNECT");
    };
    assert_eq!(expiry_of(second), unix + 3600);
}

#[test]
fn renewal_resends_unacknowledged_messages_with_dup_on_the_new_connection() {
    let mut h = Harness::new(config());
    h.connect();
    let id = h.s.send_telemetry(h.now, Message::new(&b"m"[..])).unwrap();
    let first = only_publish(&h.sent());
    h.unix_skew = 3000;
    h.advance(secs(1));
    assert_eq!(h.sent(), vec![Packet::Disconnect]);
    assert_eq!(
        h.commands(),
        vec![TransportCommand::Close, TransportCommand::Open]
    );
    h.cmds.push(TransportCommand::Open);
    let again = only_publish(&h.connect());
    assert!(again.dup());
    assert_eq!(again.pid(), first.pid());
    h.feed(Packet::Puback(again.pid().unwrap()));
    assert!(h.events().contains(&Event::MessageAcknowledged { id }));
}

#[test]
fn a_qos0_message_lost_with_its_connection_before_sending_fails() {
    let mut h = Harness::new(config());
    h.connect();
    h.events();
    let id =
        h.s.send_telemetry(h.now, Message::new(&b"x"[..]).with_qos(Qos::AtMostOnce))
            .unwrap();
    // The transport dies before the adapter took the bytes.
    h.drop_transport();
    let events = h.events();
    assert!(events.contains(&Event::MessageFailed {
        id,
        reason: MessageFailure::ConnectionLost
    }));
    assert!(!events.contains(&Event::MessageSent { id }));
}

#[test]
fn a_unix_time_jump_renews_early() {
    let mut h = Harness::new(config());
    h.connect();
    h.events();
    // The host slept: monotonic time barely moved, Unix time passed the
    // renewal point.
    h.unix_skew = 2900;
    h.advance(secs(1));
    assert_eq!(
        h.commands(),
        vec![TransportCommand::Close, TransportCommand::Open]
    );
    assert_eq!(
        disconnected(&h.events()),
        vec![DisconnectReason::TokenRenewal]
    );
}

#[test]
fn a_fixed_token_is_not_renewed_and_its_expiry_is_reported() {
    let token = SasToken::generate(
        "contoso.azure-devices.net/devices/dev1",
        &key(),
        UNIX + 1 + 100,
        None,
    );
    let cfg = Config::new(
        device(),
        HostName::new(HOST).unwrap(),
        Credential::SharedAccessSignature(token),
    );
    let mut h = Harness::new(cfg);
    h.connect();
    h.events();
    assert_eq!(h.s.timer(TimerKind::Renewal), None);
    h.advance(secs(60));
    h.feed(Packet::Pingresp);
    h.advance(secs(39));
    assert!(h.events().is_empty());
    h.advance(secs(1));
    assert_eq!(
        h.events(),
        vec![Event::TokenExpired {
            expiry_unix_secs: UNIX + 101
        }]
    );
    // The hub drops the connection: no futile reconnection.
    h.s.handle_transport_closed(h.now, TransportClosed::ClosedByPeer);
    let events = h.events();
    assert!(events.contains(&Event::Stopped {
        reason: StopReason::TokenExpired
    }));
    assert!(reconnect_delays(&events).is_empty());
    h.advance(secs(3600));
    assert!(h.commands().is_empty());
}

#[test]
fn an_already_expired_fixed_token_stops_before_connecting() {
    let token = SasToken::generate(
        "contoso.azure-devices.net/devices/dev1",
        &key(),
        UNIX - 10,
        None,
    );
    let cfg = Config::new(
        device(),
        HostName::new(HOST).unwrap(),
        Credential::SharedAccessSignature(token),
    );
    let mut h = Harness::new(cfg);
    assert_eq!(h.commands(), vec![TransportCommand::Open]);
    let unix = h.unix();
    h.s.handle_transport_connected(h.now, unix);
    assert!(h.sent().is_empty(), "no CONNECT with an expired token");
    assert_eq!(h.commands(), vec![TransportCommand::Close]);
    let events = h.events();
    assert_eq!(
        events[0],
        Event::TokenExpired {
            expiry_unix_secs: UNIX - 10
        }
    );
    assert!(events.contains(&Event::Stopped {
        reason: StopReason::TokenExpired
    }));
}

#[test]
fn x509_is_never_renewed() {
    let cfg = Config::new(device(), HostName::new(HOST).unwrap(), Credential::X509);
    let mut h = Harness::new(cfg);
    h.connect();
    assert_eq!(h.s.timer(TimerKind::Renewal), None);
    h.unix_skew = 100_000;
    h.advance(secs(1));
    assert!(h.commands().is_empty());
}

// ---------------------------------------------------------------------------
// j. Reconnection backoff

#[test]
fn backoff_grows_within_bounds_and_resets_after_a_stable_connection() {
    let mut h = Harness::new(
        config()
            .with_backoff_min(secs(1))
            .with_backoff_max(secs(60))
            .with_stable_after(secs(60)),
    );
    let mut delays = Vec::new();
    for _ in 0..20 {
        assert_eq!(h.commands(), vec![TransportCommand::Open]);
        h.s.handle_transport_closed(h.now, TransportClosed::ConnectFailed);
        let d = reconnect_delays(&h.events());
        assert_eq!(d.len(), 1);
        assert_eq!(h.s.timer(TimerKind::Reconnect), Some(h.now + d[0]));
        // Not a moment earlier.
        h.advance(d[0] - Duration::from_millis(1));
        assert!(h.commands().is_empty());
        h.advance(Duration::from_millis(1));
        delays.push(d[0]);
    }
    let mut prev = secs(1);
    for d in &delays {
        assert!(*d >= secs(1) && *d <= secs(60), "{d:?}");
        assert!(*d <= prev * 3);
        prev = *d;
    }
    assert!(delays.iter().any(|d| *d > secs(20)), "grew: {delays:?}");

    // A connection that lasts 60 s resets the backoff.
    h.connect();
    h.advance(secs(30));
    h.feed(Packet::Pingresp);
    h.advance(secs(30));
    h.events();
    h.drop_transport();
    let d = reconnect_delays(&h.events());
    assert!(d[0] <= secs(3), "reset: {d:?}");
}

#[test]
fn a_short_connection_does_not_reset_the_backoff() {
    let mut h = Harness::new(config().with_seed(3));
    let mut last = Duration::ZERO;
    for _ in 0..8 {
        h.open();
        h.s.handle_transport_closed(h.now, TransportClosed::Io);
        last = reconnect_delays(&h.events())[0];
        h.advance(last);
    }
    assert!(last > secs(3), "{last:?}");
    h.connect();
    h.advance(secs(5));
    h.events();
    h.drop_transport();
    let d = reconnect_delays(&h.events())[0];
    assert!(d >= secs(1) && d <= secs(60));
    assert_eq!(h.s.state(), ConnectionState::Backoff);
}

// ---------------------------------------------------------------------------
// k. Protocol errors

fn assert_protocol_error(h: &mut Harness, expected: ProtocolError) {
    let events = h.events();
    assert_eq!(
        disconnected(&events),
        vec![DisconnectReason::Protocol(expected)]
    );
    assert_eq!(reconnect_delays(&events).len(), 1, "{events:?}");
    assert_eq!(h.commands(), vec![TransportCommand::Close]);
    assert_eq!(h.s.state(), ConnectionState::Backoff);
}

#[test]
fn a_qos2_publish_ends_the_connection_and_reconnects() {
    let mut h = Harness::new(config());
    h.connect();
    h.events();
    let p = Publish::new(
        hub::c2d(device().device_id(), &MessageProperties::new()),
        QosPid::ExactlyOnce(Pid::MIN),
        Bytes::new(),
    )
    .unwrap();
    h.feed(p);
    assert_protocol_error(&mut h, ProtocolError::Qos2Publish);
    assert!(h.sent().is_empty(), "no PUBREC");
    h.advance(secs(3));
    assert_eq!(h.commands(), vec![TransportCommand::Open]);
}

#[test]
fn packets_a_hub_never_sends_are_protocol_errors() {
    let sub = Subscribe::new(Pid::MIN, [("a/b", QoS::AtMostOnce)]).unwrap();
    let cases: Vec<Packet> = vec![
        Packet::Pingreq,
        Packet::Subscribe(sub),
        Packet::Unsubscribe(crate::mqtt::Unsubscribe::new(Pid::MIN, ["a"]).unwrap()),
        Packet::Unsuback(Pid::MIN),
        Packet::Pubrec(Pid::MIN),
        Packet::Pubrel(Pid::MIN),
        Packet::Pubcomp(Pid::MIN),
        Packet::Connack(Connack::new(false, ConnectReturnCode::Accepted)),
        Packet::Connect(Connect::new("x").unwrap()),
        Packet::Disconnect,
    ];
    for packet in cases {
        let mut h = Harness::new(config());
        h.connect();
        h.events();
        let t = packet.packet_type();
        h.feed(packet);
        assert_protocol_error(&mut h, ProtocolError::UnexpectedPacket(t));
    }
}

#[test]
fn anything_but_connack_before_connack_is_a_protocol_error() {
    let mut h = Harness::new(config());
    h.open();
    h.feed(Packet::Pingresp);
    assert_protocol_error(
        &mut h,
        ProtocolError::UnexpectedPacket(mqtt::PacketType::Pingresp),
    );
}

#[test]
fn undecodable_and_oversized_packets_are_protocol_errors() {
    let mut h = Harness::new(config());
    h.connect();
    h.events();
    h.s.handle_input(h.now, &[0x00, 0x00]);
    assert_protocol_error(
        &mut h,
        ProtocolError::Decode(mqtt::DecodeError::InvalidPacketType(0)),
    );

    let mut h = Harness::new(config().with_max_packet_size(2048));
    h.connect();
    h.events();
    let big = Publish::new("a/b", QosPid::AtMostOnce, Bytes::from(vec![0u8; 4096])).unwrap();
    h.feed(big);
    let events = h.events();
    assert!(matches!(
        disconnected(&events).as_slice(),
        [DisconnectReason::Protocol(ProtocolError::Decode(
            mqtt::DecodeError::PacketTooLarge { max: 2048, .. }
        ))]
    ));
}

// ---------------------------------------------------------------------------
// Graceful disconnect

#[test]
fn graceful_disconnect_lets_in_flight_work_finish_then_reports_the_rest() {
    let mut h = Harness::new(config());
    h.connect();
    h.events();
    let a = h.s.send_telemetry(h.now, Message::new(&b"a"[..])).unwrap();
    let b = h.s.send_telemetry(h.now, Message::new(&b"b"[..])).unwrap();
    let sent = h.sent();
    let pids: Vec<Pid> = publishes(&sent).iter().map(|p| p.pid().unwrap()).collect();
    h.s.disconnect(h.now, secs(10));
    assert_eq!(h.s.state(), ConnectionState::Draining);
    assert_eq!(
        h.s.send_telemetry(h.now, Message::new(&b"c"[..])),
        Err(CommandError::SessionClosed)
    );
    assert_eq!(h.s.get_twin(h.now), Err(CommandError::SessionClosed));
    h.feed(Packet::Puback(pids[0]));
    assert_eq!(h.events(), vec![Event::MessageAcknowledged { id: a }]);
    h.advance(secs(10));
    assert_eq!(h.sent(), vec![Packet::Disconnect]);
    assert_eq!(h.commands(), vec![TransportCommand::Close]);
    assert_eq!(
        h.events(),
        vec![
            Event::Disconnected {
                reason: DisconnectReason::Requested
            },
            Event::MessageFailed {
                id: b,
                reason: MessageFailure::SessionClosed
            },
            Event::Stopped {
                reason: StopReason::Requested
            },
        ]
    );
    h.advance(secs(3600));
    assert!(h.commands().is_empty(), "no reconnection");
    assert_eq!(h.timeout(), None);
}

#[test]
fn graceful_disconnect_finishes_early_when_nothing_is_pending() {
    let mut h = Harness::new(config());
    h.connect();
    h.events();
    let a = h.s.send_telemetry(h.now, Message::new(&b"a"[..])).unwrap();
    let p = only_publish(&h.sent());
    h.s.disconnect(h.now, secs(30));
    h.feed(Packet::Puback(p.pid().unwrap()));
    assert_eq!(h.sent(), vec![Packet::Disconnect]);
    assert_eq!(h.commands(), vec![TransportCommand::Close]);
    let events = h.events();
    assert_eq!(events[0], Event::MessageAcknowledged { id: a });
    assert_eq!(h.s.state(), ConnectionState::Stopped);
}

#[test]
fn disconnect_while_offline_stops_at_once_and_fails_everything() {
    let mut h = Harness::new(config());
    let id = h.s.send_telemetry(h.now, Message::new(&b"a"[..])).unwrap();
    let token = h.s.get_twin(h.now).unwrap();
    h.s.disconnect(h.now, secs(30));
    let events = h.events();
    assert!(events.contains(&Event::MessageFailed {
        id,
        reason: MessageFailure::SessionClosed
    }));
    assert!(events.contains(&Event::RequestFailed {
        token,
        error: RequestError::SessionClosed
    }));
    assert!(events.contains(&Event::Stopped {
        reason: StopReason::Requested
    }));
    // The Open that was never handed out is withdrawn; no attempt ended.
    assert!(h.commands().is_empty());
    assert!(disconnected(&events).is_empty());
    assert_eq!(
        h.s.enable(h.now, Feature::Methods),
        Err(CommandError::SessionClosed)
    );
}

// ---------------------------------------------------------------------------
// The driving contract itself

#[test]
fn close_comes_after_the_disconnect_bytes() {
    let mut h = Harness::new(config());
    h.connect();
    h.events();
    h.s.disconnect(h.now, Duration::ZERO);
    let Output::Transmit(bytes) = h.s.poll_output() else {
        panic!("DISCONNECT first")
    };
    assert_eq!(bytes.as_ref(), Packet::Disconnect.to_bytes().as_ref());
    assert_eq!(
        h.s.poll_output(),
        Output::Transport(TransportCommand::Close)
    );
    assert!(matches!(h.s.poll_output(), Output::Event(_)));
}

#[test]
fn the_output_loop_settles_and_timeout_comes_last() {
    // Several outputs pending at once: a C2D message (acknowledged only
    // when taken), a twin GET, a QoS 0 message (its event follows its
    // bytes).
    let mut h = Harness::new(config());
    h.s.enable(h.now, Feature::C2d).unwrap();
    h.connect_and_grant();
    h.events();
    h.feed(c2d(1, &MessageProperties::new(), b"a"));
    h.s.get_twin(h.now).unwrap();
    h.s.send_telemetry(h.now, Message::new(&b"x"[..]).with_qos(Qos::AtMostOnce))
        .unwrap();
    let mut kinds = Vec::new();
    let deadline = loop {
        match h.s.poll_output() {
            Output::Transmit(_) => kinds.push('T'),
            Output::Transport(_) => kinds.push('C'),
            Output::Event(e) => {
                // Taking an event queues nothing, not even the PUBACK.
                if let Event::C2dMessage(m) = &e {
                    assert!(m.ack.is_some());
                }
                kinds.push('E');
            }
            Output::Timeout(at) => break at,
        }
        assert!(kinds.len() < 100, "the loop settles");
    };
    // The twin-response SUBSCRIBE (the GET waits for its SUBACK) and the
    // QoS 0 PUBLISH, then the C2D message and the QoS 0 message's outcome.
    assert_eq!(kinds, ['T', 'T', 'E', 'E']);
    assert!(
        deadline.is_some(),
        "keep-alive and the request timer are set"
    );
    // Asked again, with no input in between: the same answer.
    assert_eq!(h.s.poll_output(), Output::Timeout(deadline));
}

#[test]
fn every_accepted_qos1_message_ends_exactly_once() {
    // Messages, drops, timeouts and a final disconnect, in a fixed
    // pseudo-random order: each id gets exactly one outcome.
    let mut h = Harness::new(
        config()
            .with_max_in_flight(2)
            .with_message_timeout(secs(20)),
    );
    let mut rng = 12345u64;
    let mut next = || {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (rng >> 33) as u32
    };
    let mut accepted = Vec::new();
    let mut outcomes: Vec<MessageId> = Vec::new();
    let record = |events: Vec<Event>, outcomes: &mut Vec<MessageId>| {
        for e in events {
            match e {
                Event::MessageAcknowledged { id } | Event::MessageFailed { id, .. } => {
                    outcomes.push(id);
                }
                _ => {}
            }
        }
    };
    for _ in 0..200 {
        match next() % 6 {
            0 | 1 => {
                if let Ok(id) = h.s.send_telemetry(h.now, Message::new(&b"m"[..])) {
                    accepted.push(id);
                }
            }
            2 => {
                for p in h.sent() {
                    if let Packet::Publish(p) = p {
                        if next() % 2 == 0 {
                            h.feed(Packet::Puback(p.pid().unwrap()));
                        }
                    }
                }
            }
            3 => {
                if h.s.state() == ConnectionState::Connected && next() % 3 == 0 {
                    h.drop_transport();
                }
            }
            4 => h.advance(Duration::from_secs(u64::from(next() % 15))),
            _ => {
                if h.commands().contains(&TransportCommand::Open) {
                    h.cmds.clear();
                    let unix = h.unix();
                    h.s.handle_transport_connected(h.now, unix);
                    h.sent();
                    h.feed(Connack::new(true, ConnectReturnCode::Accepted));
                }
            }
        }
        let events = h.events();
        record(events, &mut outcomes);
    }
    h.s.disconnect(h.now, secs(1));
    h.advance(secs(2));
    let events = h.events();
    record(events, &mut outcomes);
    let mut sorted = outcomes.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), outcomes.len(), "an id had two outcomes");
    let mut acc = accepted.clone();
    acc.sort();
    assert_eq!(sorted, acc, "an id had no outcome");
    assert!(accepted.len() > 20);
}

// ---------------------------------------------------------------------
// Tokens from an external signer (IoT Edge's workload API)

fn external_config() -> Config {
    Config::new(
        module(),
        HostName::new(HOST).unwrap(),
        Credential::ExternalSigner,
    )
    .with_keep_alive(Duration::ZERO)
    .with_sas_lifetime(secs(100))
    .with_seed(42)
}

/// What the signer would return: a token for the module expiring at
/// `expiry`.
fn signed(expiry: u64) -> SasToken {
    SasToken::generate(&module().resource_uri(HOST), &key(), expiry, None)
}

fn token_requests(events: &[Event]) -> Vec<Duration> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::TokenRequested { lifetime } => Some(*lifetime),
            _ => None,
        })
        .collect()
}

fn token_failures(events: &[Event]) -> Vec<(TokenFailure, Duration)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::TokenRequestFailed { reason, retry_in } => Some((*reason, *retry_in)),
            _ => None,
        })
        .collect()
}

impl Harness {
    /// Answers the token request with a token valid for the configured
    /// lifetime from now.
    fn provide(&mut self) -> SasToken {
        let unix = self.unix();
        let token = signed(unix + self.s.config().sas_lifetime.as_secs());
        self.s.provide_token(self.now, unix, token.clone()).unwrap();
        token
    }
}

fn password_of(c: &Connect) -> &[u8] {
    c.password().expect("a password")
}

#[test]
fn an_external_signer_is_asked_for_a_token_before_the_first_connect() {
    let mut h = Harness::new(external_config());
    // No transport yet: a token first.
    assert!(h.commands().is_empty());
    assert_eq!(token_requests(&h.events()), vec![secs(100)]);
    assert_eq!(h.s.state(), ConnectionState::Opening);
    assert!(h.s.timer(TimerKind::TokenRequest).is_some());
    let token = h.provide();
    assert_eq!(h.s.timer(TimerKind::TokenRequest), None);
    let connect = h.open();
    assert_eq!(password_of(&connect), token.expose_secret().as_bytes());
    assert_eq!(connect.client_id(), "dev1/mod1");
    h.feed(Connack::new(false, ConnectReturnCode::Accepted));
    assert_eq!(h.s.state(), ConnectionState::Connected);
    // A key credential has nothing to be given.
    let mut keyed = Harness::new(config());
    assert_eq!(
        keyed.s.provide_token(keyed.now, UNIX, signed(UNIX + 100)),
        Err(CommandError::NotExternalSigner)
    );
}

#[test]
fn an_external_token_is_renewed_at_80_percent_and_the_reconnection_uses_it() {
    let mut h = Harness::new(external_config());
    h.events();
    let first = h.provide();
    let c1 = h.open();
    assert_eq!(password_of(&c1), first.expose_secret().as_bytes());
    h.feed(Connack::new(false, ConnectReturnCode::Accepted));
    h.events();
    assert_eq!(h.s.timer(TimerKind::Renewal), Some(h.now + secs(80)));
    h.advance(secs(79));
    assert!(h.events().is_empty());
    // At 80 %: a request, while the connection goes on with the old token.
    h.advance(secs(1));
    assert_eq!(token_requests(&h.events()), vec![secs(100)]);
    assert!(h.sent().is_empty());
    assert!(h.commands().is_empty());
    assert_eq!(h.s.state(), ConnectionState::Connected);
    // The new token: DISCONNECT, close, a new transport with it.
    h.advance(secs(2));
    let second = h.provide();
    assert_eq!(h.sent(), vec![Packet::Disconnect]);
    assert_eq!(
        h.commands(),
        vec![TransportCommand::Close, TransportCommand::Open]
    );
    assert_eq!(
        disconnected(&h.events()),
        vec![DisconnectReason::TokenRenewal]
    );
    h.cmds.push(TransportCommand::Open);
    let c2 = h.open();
    assert_eq!(password_of(&c2), second.expose_secret().as_bytes());
    assert_ne!(password_of(&c2), password_of(&c1));
    assert_eq!(expiry_of(&c2), h.unix() + 100);
    h.feed(Connack::new(false, ConnectReturnCode::Accepted));
    assert_eq!(h.s.timer(TimerKind::Renewal), Some(h.now + secs(80)));
}

#[test]
fn an_unanswered_token_request_fails_and_is_asked_again_after_a_backoff() {
    let mut h = Harness::new(external_config().with_token_request_timeout(secs(5)));
    assert_eq!(token_requests(&h.events()).len(), 1);
    // Asked when the session was made (at instant zero).
    assert_eq!(
        h.s.timer(TimerKind::TokenRequest),
        Some(Instant::ZERO + secs(5))
    );
    h.advance(Duration::from_millis(3_999));
    assert!(h.events().is_empty());
    h.advance(Duration::from_millis(1));
    let failures = token_failures(&h.events());
    let [(TokenFailure::TimedOut, retry_in)] = failures.as_slice() else {
        panic!("expected one time-out, got {failures:?}");
    };
    assert!(*retry_in >= DEFAULT_BACKOFF_MIN && *retry_in <= DEFAULT_BACKOFF_MAX);
    // Never a transport without a token.
    assert!(h.commands().is_empty());
    h.advance(*retry_in);
    assert_eq!(token_requests(&h.events()), vec![secs(100)]);
    // The signer reports a failure: at once, with the next delay.
    h.s.token_unavailable(h.now);
    let failures = token_failures(&h.events());
    assert!(matches!(
        failures.as_slice(),
        [(TokenFailure::Unavailable, _)]
    ));
    // A late answer is still welcome: it is fresh.
    h.advance(secs(1));
    h.provide();
    assert_eq!(h.commands(), vec![TransportCommand::Open]);
    h.cmds.push(TransportCommand::Open);
    h.open();
    // A stray failure report with no request open changes nothing.
    h.s.token_unavailable(h.now);
    assert!(token_failures(&h.events()).is_empty());
}

#[test]
fn a_failed_renewal_keeps_the_connection_until_a_token_comes() {
    let mut h = Harness::new(external_config().with_token_request_timeout(secs(2)));
    h.events();
    h.provide();
    h.open();
    h.feed(Connack::new(false, ConnectReturnCode::Accepted));
    h.events();
    h.advance(secs(80));
    assert_eq!(token_requests(&h.events()).len(), 1);
    h.advance(secs(2));
    let failures = token_failures(&h.events());
    let [(TokenFailure::TimedOut, retry_in)] = failures.as_slice() else {
        panic!("expected one time-out, got {failures:?}");
    };
    assert_eq!(h.s.state(), ConnectionState::Connected);
    assert!(h.commands().is_empty());
    // Retried after the backoff; this one is answered.
    h.advance(*retry_in);
    assert_eq!(token_requests(&h.events()).len(), 1);
    let fresh = h.provide();
    assert_eq!(h.sent(), vec![Packet::Disconnect]);
    assert_eq!(
        h.commands(),
        vec![TransportCommand::Close, TransportCommand::Open]
    );
    h.cmds.push(TransportCommand::Open);
    assert_eq!(password_of(&h.open()), fresh.expose_secret().as_bytes());
}

#[test]
fn an_expired_token_is_never_sent() {
    let mut h = Harness::new(external_config());
    h.events();
    // Given an expired token: refused, the request fails and is retried.
    let unix = h.unix();
    assert_eq!(
        h.s.provide_token(h.now, unix, signed(unix - 1)),
        Err(CommandError::TokenExpired {
            expiry_unix_secs: unix - 1
        })
    );
    assert!(matches!(
        token_failures(&h.events()).as_slice(),
        [(TokenFailure::Expired, _)]
    ));
    assert!(h.commands().is_empty());
    // A fresh token, but the transport takes until past its renewal point
    // to open (the host slept): no CONNECT, the transport is closed and a
    // new token asked for.
    h.advance(secs(60));
    h.events();
    h.provide();
    assert_eq!(h.commands(), vec![TransportCommand::Open]);
    h.unix_skew = 500;
    let unix = h.unix();
    h.s.handle_transport_connected(h.now, unix);
    assert!(
        h.sent().is_empty(),
        "nothing may be sent with a stale token"
    );
    assert_eq!(h.commands(), vec![TransportCommand::Close]);
    let events = h.events();
    assert_eq!(token_requests(&events).len(), 1);
    assert_eq!(disconnected(&events), vec![DisconnectReason::TokenRenewal]);
    // The new token opens a transport; its CONNECT carries it.
    let fresh = h.provide();
    let c = h.open();
    assert_eq!(password_of(&c), fresh.expose_secret().as_bytes());
    assert!(expiry_of(&c) > h.unix());
}

#[test]
fn a_refused_external_token_is_not_used_again() {
    let mut h =
        Harness::new(external_config().with_auth_failure(AuthFailurePolicy::RetryAfter(secs(3))));
    h.events();
    h.provide();
    h.open();
    h.feed(Connack::new(false, ConnectReturnCode::NotAuthorized));
    h.events();
    h.advance(secs(3));
    // Not a transport with the refused token: a new token first.
    assert!(!h.commands().contains(&TransportCommand::Open));
    assert_eq!(token_requests(&h.events()).len(), 1);
    h.provide();
    assert_eq!(h.commands(), vec![TransportCommand::Open]);
}

#[test]
fn stopping_while_waiting_for_a_token_ends_the_request() {
    let mut h = Harness::new(external_config());
    h.events();
    h.s.disconnect(h.now, secs(1));
    assert_eq!(h.s.state(), ConnectionState::Stopped);
    assert_eq!(h.s.timer(TimerKind::TokenRequest), None);
    let unix = h.unix();
    assert_eq!(
        h.s.provide_token(h.now, unix, signed(unix + 100)),
        Err(CommandError::SessionClosed)
    );
    assert!(h.commands().is_empty());
}

#[test]
fn a_unix_time_jump_asks_an_external_signer_early() {
    let mut h = Harness::new(external_config());
    h.events();
    h.provide();
    h.open();
    h.feed(Connack::new(false, ConnectReturnCode::Accepted));
    h.events();
    // The host slept past the renewal point: asked at the next wake-up,
    // once, while the connection goes on.
    h.unix_skew = 90;
    h.advance(secs(1));
    assert_eq!(token_requests(&h.events()), vec![secs(100)]);
    h.advance(secs(1));
    assert!(token_requests(&h.events()).is_empty());
    assert_eq!(h.s.state(), ConnectionState::Connected);
    let fresh = h.provide();
    assert_eq!(h.sent(), vec![Packet::Disconnect]);
    h.cmds.clear();
    h.cmds.push(TransportCommand::Open);
    assert_eq!(password_of(&h.open()), fresh.expose_secret().as_bytes());
}

#[test]
fn a_token_whose_renewal_point_rounds_to_now_is_still_used() {
    // 1 % of 60 s rounds down to 0 whole seconds: the renewal point must
    // still be after the moment the token came, or the session would
    // open a transport, refuse its own token, close, ask again, and so on
    // without end.
    let mut h = Harness::new(
        external_config()
            .with_sas_lifetime(secs(60))
            .with_renewal_percent(1),
    );
    h.events();
    let token = h.provide();
    let c = h.open();
    assert_eq!(password_of(&c), token.expose_secret().as_bytes());
    h.feed(Connack::new(false, ConnectReturnCode::Accepted));
    assert_eq!(h.s.state(), ConnectionState::Connected);
    assert!(token_requests(&h.events()).is_empty());
    // Renewed one second later, while the connection goes on.
    h.advance(secs(1));
    assert_eq!(token_requests(&h.events()), vec![secs(60)]);
    assert_eq!(h.s.state(), ConnectionState::Connected);
}
