//! SAS tokens: renewal from a key, fixed tokens and their expiry, X.509,
//! and tokens from an external signer (IoT Edge's workload API).

use super::*;

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
