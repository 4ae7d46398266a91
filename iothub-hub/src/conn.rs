//! Connections: bytes in and out, time, CONNECT and its checks,
//! subscriptions, closing (and the will), and what is observable of them.

use super::*;

/// The state of one connection.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) rx: BytesMut,
    pub(crate) tx: BytesMut,
    /// The identity key, once CONNECT was accepted (kept after close).
    pub(crate) client_id: Option<String>,
    pub(crate) closed: Option<CloseReason>,
    pub(crate) keep_alive_ms: u64,
    pub(crate) last_rx_ms: u64,
    /// The SAS expiry, in Unix seconds and in the caller's monotonic ms.
    pub(crate) token_expiry: Option<(u64, u64)>,
    pub(crate) will: Option<LastWill>,
    pub(crate) clean_session: bool,
    pub(crate) next_pid: Pid,
    /// The SHA-256 thumbprint of the client certificate the transport saw.
    pub(crate) thumbprint: Option<String>,
    /// The monotonic ms by which CONNECT must be accepted
    /// ([`Hub::accept`]); `None` when the deadline is off.
    pub(crate) connect_deadline: Option<u64>,
}

impl Conn {
    /// A new connection: nothing received, nothing to send.
    pub(crate) fn new(thumbprint: Option<String>, connect_deadline: Option<u64>) -> Conn {
        Conn {
            rx: BytesMut::new(),
            tx: BytesMut::new(),
            client_id: None,
            closed: None,
            keep_alive_ms: 0,
            last_rx_ms: 0,
            token_expiry: None,
            will: None,
            clean_session: true,
            next_pid: Pid::MIN,
            thumbprint,
            connect_deadline,
        }
    }

    /// The CONNECT deadline while it matters: the connection is open and
    /// no CONNECT was accepted yet.
    pub(crate) fn pending_connect_deadline(&self) -> Option<u64> {
        (self.is_open() && self.client_id.is_none())
            .then_some(self.connect_deadline)
            .flatten()
    }

    /// The timers of the connection: the CONNECT deadline before CONNECT,
    /// then the keep-alive deadline and the SAS expiry.
    pub(crate) fn deadlines(&self) -> [Option<u64>; 2] {
        if self.is_live() {
            [
                self.keep_alive_deadline(),
                self.token_expiry.map(|(_, ms)| ms),
            ]
        } else {
            [self.pending_connect_deadline(), None]
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        self.closed.is_none()
    }

    pub(crate) fn is_live(&self) -> bool {
        self.closed.is_none() && self.client_id.is_some()
    }

    /// The keep-alive deadline: the first instant at which the client has
    /// been silent for more than 1.5 × its keep-alive.
    pub(crate) fn keep_alive_deadline(&self) -> Option<u64> {
        (self.keep_alive_ms > 0).then(|| {
            self.last_rx_ms
                .saturating_add(self.keep_alive_ms.saturating_mul(3) / 2)
                .saturating_add(1)
        })
    }

    pub(crate) fn send(&mut self, packet: &Packet) {
        packet.encode(&mut self.tx);
    }

    pub(crate) fn send_publish(
        &mut self,
        topic: String,
        qospid: QosPid,
        payload: Bytes,
        dup: bool,
    ) {
        // Every topic the hub builds is a valid topic name; a failure
        // (which cannot happen) just sends nothing.
        if let Ok(p) = Publish::new(topic, qospid, payload) {
            self.send(&Packet::Publish(p.with_dup(dup)));
        }
    }

    /// The next packet id not in `in_use`.
    pub(crate) fn alloc_pid(&mut self, in_use: &[Pid]) -> Pid {
        let mut pid = self.next_pid;
        for _ in 0..=u16::MAX {
            if !in_use.contains(&pid) {
                break;
            }
            pid = pid.next();
        }
        self.next_pid = pid.next();
        pid
    }
}

impl Hub {
    /// A new connection, its transport up at `now` (the client has sent
    /// nothing yet). `thumbprint` is the SHA-256 thumbprint (hex) of the
    /// client certificate its TLS layer received, checked against X.509
    /// registrations at CONNECT; `None` when the client presented none.
    /// Unless a CONNECT is accepted by `now` +
    /// [`connect_timeout`](Self::connect_timeout),
    /// [`handle_timeout`](Self::handle_timeout) closes it with
    /// [`CloseReason::ConnectTimeout`]; [`poll_timeout`](Self::poll_timeout)
    /// includes that deadline.
    pub fn accept(&mut self, now: Instant, thumbprint: Option<String>) -> ConnId {
        let now_ms = now.as_millis();
        let deadline = self.connect_timeout_ms.map(|t| now_ms.saturating_add(t));
        self.insert_conn(Conn::new(thumbprint, deadline))
    }

    pub(crate) fn insert_conn(&mut self, conn: Conn) -> ConnId {
        self.next_conn = self.next_conn.saturating_add(1);
        let id = ConnId(self.next_conn);
        self.conns.insert(id, conn);
        id
    }

    /// Forgets a closed connection entirely (an adapter calls this once
    /// its transport is gone, so that a long-running hub does not keep every
    /// connection it ever had). No effect on an open connection.
    pub fn remove_connection(&mut self, conn: ConnId) {
        if self.conns.get(&conn).is_some_and(|c| !c.is_open()) {
            self.conns.remove(&conn);
            self.touched.remove(&conn);
        }
    }

    /// The next connection that has bytes to transmit, or was closed, since
    /// it was last returned; `None` when there is none. An adapter drains
    /// this after every call that may change the hub, then
    /// [`poll_transmit`](Self::poll_transmit) and
    /// [`is_closed`](Self::is_closed) each connection returned: a call on
    /// one connection (or a service call) can make output for another.
    #[must_use = "the connection's bytes must be delivered"]
    pub fn poll_ready(&mut self) -> Option<ConnId> {
        self.touched.pop_first()
    }

    /// Bytes from the client, at monotonic time `now` and wall-clock
    /// `unix_secs` (for SAS expiry). Packets may be split anywhere. Ignored
    /// on a closed or unknown connection. Drain [`poll_transmit`](Self::poll_transmit)
    /// and check [`is_closed`](Self::is_closed) afterwards.
    pub fn handle_input(&mut self, conn: ConnId, now: Instant, unix_secs: u64, data: &[u8]) {
        let now_ms = now.as_millis();
        match self.conns.get_mut(&conn) {
            Some(c) if c.is_open() => c.rx.extend_from_slice(data),
            _ => return,
        }
        self.touched.insert(conn);
        if self.token_expired(conn, unix_secs) {
            self.close(conn, CloseReason::TokenExpired);
            return;
        }
        loop {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            if !c.is_open() {
                c.rx.clear();
                return;
            }
            match mqtt::decode(&mut c.rx, MAX_PACKET_SIZE) {
                Ok(None) => return,
                Ok(Some(packet)) => {
                    c.last_rx_ms = now_ms;
                    self.on_packet(conn, now_ms, unix_secs, packet);
                }
                Err(DecodeError::UnsupportedProtocolLevel(_)) if c.client_id.is_none() => {
                    self.refuse(conn, ConnectReturnCode::UnacceptableProtocolVersion);
                }
                Err(DecodeError::PacketTooLarge { size, .. }) => {
                    self.violation(conn, Violation::MessageTooLarge { size });
                }
                Err(e) => self.violation(conn, Violation::Malformed(e)),
            }
        }
    }

    /// The bytes the hub has queued for the client since the last call
    /// (everything, coalesced), or `None`. Bytes queued before the hub
    /// closed a connection (a refusing CONNACK, say) remain available after
    /// the close.
    #[must_use = "the bytes must be delivered to the client"]
    pub fn poll_transmit(&mut self, conn: ConnId) -> Option<Bytes> {
        let c = self.conns.get_mut(&conn)?;
        (!c.tx.is_empty()).then(|| c.tx.split().freeze())
    }

    /// Whether the connection is closed — by the hub (then tell the client
    /// its transport closed, after draining [`poll_transmit`](Self::poll_transmit))
    /// or by [`client_closed`](Self::client_closed). True for an unknown id.
    #[must_use]
    pub fn is_closed(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_none_or(|c| !c.is_open())
    }

    /// Why the connection ended, once it has.
    #[must_use]
    pub fn close_reason(&self, conn: ConnId) -> Option<CloseReason> {
        self.conns.get(&conn).and_then(|c| c.closed)
    }

    /// The client's transport went away. Without a prior DISCONNECT the
    /// will is published. No effect on a closed connection.
    pub fn client_closed(&mut self, conn: ConnId) {
        self.close(conn, CloseReason::TransportClosed);
    }

    /// Advances the hub to monotonic `now` and wall-clock `unix_secs`:
    /// closes every connection past its CONNECT deadline without an
    /// accepted CONNECT ([`CloseReason::ConnectTimeout`]), every connection
    /// silent for more than 1.5 × its keep-alive and every connection whose
    /// SAS token has expired (will published), ends method calls past
    /// their deadline ([`MethodOutcome::TimedOut`]), and releases answers
    /// held back by [`delay_answers`](Self::delay_answers).
    pub fn handle_timeout(&mut self, now: Instant, unix_secs: u64) {
        let now_ms = now.as_millis();
        let unconnected: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.pending_connect_deadline().is_some_and(|d| now_ms >= d))
            .map(|(&id, _)| id)
            .collect();
        for id in unconnected {
            self.close(id, CloseReason::ConnectTimeout);
        }
        let live: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.is_live())
            .map(|(&id, _)| id)
            .collect();
        for id in live {
            if self.token_expired(id, unix_secs) {
                self.close(id, CloseReason::TokenExpired);
            } else if self
                .conns
                .get(&id)
                .and_then(Conn::keep_alive_deadline)
                .is_some_and(|d| now_ms >= d)
            {
                self.close(id, CloseReason::KeepAliveTimeout);
            }
        }
        let expired: Vec<String> = self
            .method_calls
            .iter()
            .filter(|(_, call)| call.deadline.is_some_and(|d| now_ms >= d))
            .map(|(rid, _)| rid.clone())
            .collect();
        for rid in expired {
            let Some(call) = self.method_calls.remove(&rid) else {
                continue;
            };
            let Some(r) = self.identities.get(&call.key) else {
                continue;
            };
            let request_id = RequestId::from_wire(rid);
            self.method_results.push_back(MethodResult {
                request_id,
                identity: r.identity.clone(),
                outcome: MethodOutcome::TimedOut,
            });
        }
        let (due, later): (Vec<Delayed>, Vec<Delayed>) = core::mem::take(&mut self.delayed)
            .into_iter()
            .partition(|d| now_ms >= d.at_ms);
        self.delayed = later;
        for d in due {
            match d.what {
                DelayedWhat::TwinAnswer { conn, topic, body } => {
                    if let Some(c) = self.conns.get_mut(&conn).filter(|c| c.is_open()) {
                        c.send_publish(topic, QosPid::AtMostOnce, body, false);
                        self.touched.insert(conn);
                    }
                }
                DelayedWhat::MethodResult(m) => self.method_results.push_back(m),
            }
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has work, on the
    /// caller's monotonic clock: the earliest CONNECT deadline of a connection
    /// still waiting for its CONNECT, keep-alive deadline or SAS expiry
    /// (translated from Unix seconds with the clocks given at CONNECT) of
    /// the live connections, method-call deadline, or end of an injected
    /// delay. `None` when nothing is pending.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let conns = self.conns.values().flat_map(Conn::deadlines).flatten();
        let calls = self.method_calls.values().filter_map(|c| c.deadline);
        let delayed = self.delayed.iter().map(|d| d.at_ms);
        conns
            .chain(calls)
            .chain(delayed)
            .min()
            .map(Instant::from_millis)
    }

    /// What the hub has counted.
    #[must_use]
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The identity a connection authenticated as (kept after it closed);
    /// `None` before an accepted CONNECT.
    #[must_use]
    pub fn connection_identity(&self, conn: ConnId) -> Option<&Identity> {
        let k = self.conns.get(&conn)?.client_id.as_ref()?;
        self.identities.get(k).map(|r| &r.identity)
    }

    /// The live connection of an identity.
    #[must_use]
    pub fn connection_of(&self, identity: &Identity) -> Option<ConnId> {
        self.identities.get(&key(identity))?.conn
    }

    /// Whether the identity has a live connection.
    #[must_use]
    pub fn is_connected(&self, identity: &Identity) -> bool {
        self.connection_of(identity).is_some()
    }

    /// The IoT Plug and Play `model-id` the identity announced in the
    /// username of its last accepted CONNECT, if any.
    #[must_use]
    pub fn model_id(&self, identity: &Identity) -> Option<&str> {
        self.identities.get(&key(identity))?.model_id.as_deref()
    }

    /// The subscriptions (filter, granted QoS) of the session a live
    /// connection belongs to; empty for a closed or unauthenticated one.
    #[must_use]
    pub fn subscriptions(&self, conn: ConnId) -> &[(String, QoS)] {
        self.conns
            .get(&conn)
            .and_then(|c| c.client_id.as_ref())
            .and_then(|k| self.identities.get(k))
            .filter(|r| r.conn == Some(conn))
            .map_or(&[], |r| r.subscriptions.as_slice())
    }

    pub(crate) fn on_packet(&mut self, conn: ConnId, now_ms: u64, unix_secs: u64, packet: Packet) {
        let connected = self.conns.get(&conn).is_some_and(|c| c.client_id.is_some());
        match packet {
            Packet::Connect(c) if !connected => self.on_connect(conn, now_ms, unix_secs, &c),
            _ if !connected => self.violation(conn, Violation::NotConnectFirst),
            Packet::Connect(_) => self.violation(conn, Violation::SecondConnect),
            Packet::Publish(p) => self.on_publish(conn, now_ms, p),
            Packet::Puback(pid) => self.on_puback(conn, pid),
            Packet::Subscribe(s) => self.on_subscribe(conn, &s),
            Packet::Unsubscribe(u) => self.on_unsubscribe(conn, &u),
            Packet::Pingreq => {
                self.counters.pings = self.counters.pings.saturating_add(1);
                if !self.faults.silence_pingresp {
                    self.send(conn, &Packet::Pingresp);
                }
            }
            Packet::Disconnect => self.close(conn, CloseReason::ClientDisconnected),
            other => self.violation(conn, Violation::UnexpectedPacket(other.packet_type())),
        }
    }

    /// Runs the CONNECT checks of the module docs; on success the identity
    /// key and the token expiry (Unix seconds).
    pub(crate) fn check_connect(
        &mut self,
        conn: ConnId,
        connect: &Connect,
        now_ms: u64,
        unix_secs: u64,
    ) -> Result<(String, Option<u64>, Option<String>), ConnectReturnCode> {
        use ConnectReturnCode as Code;
        if let (n @ 1.., Some(code)) = self.faults.refuse_connects {
            self.faults.refuse_connects.0 = n - 1;
            return Err(code);
        }
        if connect.keep_alive() > MAX_KEEP_ALIVE_SECS {
            return Err(Code::IdentifierRejected);
        }
        let username = connect
            .username()
            .and_then(|u| Username::parse(u.as_str()).ok())
            .ok_or(Code::BadUserNameOrPassword)?;
        if self.authenticate
            && !username
                .host_name
                .as_str()
                .eq_ignore_ascii_case(&self.host_name)
        {
            return Err(Code::BadUserNameOrPassword);
        }
        let k = key(&username.identity);
        if connect.client_id().as_str() != k {
            return Err(Code::IdentifierRejected);
        }
        if let Some((until, code)) = self.identities.get(&k).and_then(|r| r.refuse_until) {
            if now_ms < until {
                return Err(code);
            }
        }
        let model_id = username.model_id().map(String::from);
        if !self.authenticate {
            self.identities
                .entry(k.clone())
                .or_insert_with(|| Record::new(username.identity.clone(), None));
            return Ok((k, None, model_id));
        }
        let record = self.identities.get(&k).ok_or(Code::NotAuthorized)?;
        let (primary, secondary) = match &record.auth {
            Some(Authentication::Sas { primary, secondary }) => (primary, secondary.as_ref()),
            Some(x509 @ Authentication::X509 { .. }) => {
                let thumbprint = self
                    .conns
                    .get(&conn)
                    .and_then(|c| c.thumbprint.as_deref())
                    .ok_or(Code::NotAuthorized)?;
                if !x509.matches_thumbprint(thumbprint) {
                    return Err(Code::BadUserNameOrPassword);
                }
                return Ok((k, None, model_id));
            }
            None => return Err(Code::NotAuthorized),
        };
        let token = connect
            .password()
            .and_then(|p| core::str::from_utf8(p).ok())
            .and_then(|p| SasToken::parse(p).ok())
            .ok_or(Code::BadUserNameOrPassword)?;
        if token.resource_uri() != record.identity.resource_uri(&self.host_name) {
            return Err(Code::NotAuthorized);
        }
        // `verify` compares in constant time; both keys are always tried,
        // so the time taken does not tell which one matched.
        let with_primary = token.verify(primary);
        let with_secondary = secondary.is_some_and(|key| token.verify(key));
        if !(with_primary | with_secondary) {
            return Err(Code::BadUserNameOrPassword);
        }
        if token.is_expired_at(unix_secs) {
            return Err(Code::NotAuthorized);
        }
        Ok((k, Some(token.expiry_unix_secs()), model_id))
    }

    pub(crate) fn on_connect(
        &mut self,
        conn: ConnId,
        now_ms: u64,
        unix_secs: u64,
        connect: &Connect,
    ) {
        let (k, expiry, model_id) = match self.check_connect(conn, connect, now_ms, unix_secs) {
            Ok(ok) => ok,
            Err(code) => return self.refuse(conn, code),
        };
        // One connection per identity: the older one goes.
        if let Some(old) = self.identities.get(&k).and_then(|r| r.conn) {
            self.counters.evictions = self.counters.evictions.saturating_add(1);
            self.close(old, CloseReason::Evicted);
        }
        let clean = connect.clean_session();
        let Some(r) = self.identities.get_mut(&k) else {
            return;
        };
        let session_present = !clean && r.session_kept;
        let journal = r.session_kept == clean || (clean && !r.queue.is_empty());
        if clean {
            r.subscriptions.clear();
            r.queue.clear();
        }
        r.session_kept = !clean;
        r.conn = Some(conn);
        r.model_id = model_id;
        if journal {
            self.changed(&k);
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.client_id = Some(k.clone());
        c.keep_alive_ms = u64::from(connect.keep_alive()).saturating_mul(1000);
        c.last_rx_ms = now_ms;
        c.clean_session = clean;
        c.will = connect.last_will().cloned();
        c.token_expiry = expiry.map(|se| {
            let left_ms = se.saturating_sub(unix_secs).saturating_mul(1000);
            (se, now_ms.saturating_add(left_ms))
        });
        c.send(&Packet::Connack(Connack::new(
            session_present,
            ConnectReturnCode::Accepted,
        )));
        self.counters.connects_accepted = self.counters.connects_accepted.saturating_add(1);
        self.deliver(&k);
    }

    pub(crate) fn refuse(&mut self, conn: ConnId, code: ConnectReturnCode) {
        self.counters.connects_refused = self.counters.connects_refused.saturating_add(1);
        self.send(conn, &Packet::Connack(Connack::new(false, code)));
        self.close(conn, CloseReason::Refused(code));
    }

    pub(crate) fn on_subscribe(&mut self, conn: ConnId, subscribe: &Subscribe) {
        let Some(k) = self.conns.get(&conn).and_then(|c| c.client_id.clone()) else {
            return;
        };
        let Some(r) = self.identities.get_mut(&k) else {
            return;
        };
        // At most MAX_SUBSCRIPTIONS entries: compared after, so a SUBSCRIBE
        // that changes nothing journals nothing.
        let before = r.subscriptions.clone();
        let mut codes = Vec::with_capacity(subscribe.filters().len());
        for (filter, qos) in subscribe.filters() {
            let granted = match qos {
                QoS::AtMostOnce => QoS::AtMostOnce,
                QoS::AtLeastOnce | QoS::ExactlyOnce => QoS::AtLeastOnce,
            };
            let filter = filter.as_str();
            let code = if !r.may_subscribe(filter, &self.extra_filters) {
                SubscribeReturnCode::Failure
            } else if let Some(slot) = r.subscriptions.iter_mut().find(|(f, _)| f == filter) {
                slot.1 = granted;
                SubscribeReturnCode::Success(granted)
            } else if r.subscriptions.len() >= MAX_SUBSCRIPTIONS {
                SubscribeReturnCode::Failure
            } else {
                r.subscriptions.push((String::from(filter), granted));
                SubscribeReturnCode::Success(granted)
            };
            codes.push(code);
        }
        let changed = r.subscriptions != before;
        if let Ok(suback) = Suback::new(subscribe.pid(), codes) {
            self.send(conn, &Packet::Suback(suback));
        }
        if changed {
            self.changed(&k);
        }
        self.deliver(&k);
    }

    pub(crate) fn on_unsubscribe(&mut self, conn: ConnId, unsubscribe: &Unsubscribe) {
        if let Some(r) = self
            .conns
            .get(&conn)
            .and_then(|c| c.client_id.as_ref())
            .and_then(|k| self.identities.get_mut(k))
        {
            let before = r.subscriptions.len();
            r.subscriptions
                .retain(|(f, _)| !unsubscribe.filters().iter().any(|u| u.as_str() == f));
            // An UNSUBSCRIBE of nothing subscribed journals nothing.
            if r.subscriptions.len() != before {
                let identity = r.identity.clone();
                self.changes.insert(key(&identity), identity);
            }
        }
        self.send(conn, &Packet::Unsuback(unsubscribe.pid()));
    }

    pub(crate) fn send(&mut self, conn: ConnId, packet: &Packet) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.send(packet);
        }
    }

    pub(crate) fn token_expired(&self, conn: ConnId, unix_secs: u64) -> bool {
        self.conns
            .get(&conn)
            .filter(|c| c.is_live())
            .and_then(|c| c.token_expiry)
            .is_some_and(|(se, _)| unix_secs >= se)
    }

    pub(crate) fn violation(&mut self, conn: ConnId, violation: Violation) {
        self.close(conn, CloseReason::ProtocolViolation(violation));
    }

    /// Closes a connection (no effect if closed): detaches it from its
    /// identity, forgets the session if it was clean, publishes the will
    /// unless the reason says otherwise.
    pub(crate) fn close(&mut self, conn: ConnId, reason: CloseReason) {
        let Some(c) = self.conns.get_mut(&conn).filter(|c| c.is_open()) else {
            return;
        };
        c.closed = Some(reason);
        c.rx.clear();
        self.touched.insert(conn);
        let will = c.will.take().filter(|_| reason.publishes_will());
        let clean = c.clean_session;
        let Some(k) = c.client_id.clone() else {
            if reason == CloseReason::ConnectTimeout {
                self.counters.connect_timeouts = self.counters.connect_timeouts.saturating_add(1);
            }
            return;
        };
        match reason {
            CloseReason::KeepAliveTimeout => {
                self.counters.keep_alive_timeouts =
                    self.counters.keep_alive_timeouts.saturating_add(1);
            }
            CloseReason::TokenExpired => {
                self.counters.token_expiries = self.counters.token_expiries.saturating_add(1);
            }
            CloseReason::ProtocolViolation(_) => {
                self.counters.protocol_violations =
                    self.counters.protocol_violations.saturating_add(1);
            }
            _ => {}
        }
        let Some(r) = self.identities.get_mut(&k).filter(|r| r.conn == Some(conn)) else {
            return;
        };
        r.conn = None;
        for q in &mut r.queue {
            q.pid = None;
        }
        if clean {
            r.subscriptions.clear();
            r.session_kept = false;
        }
        let identity = r.identity.clone();
        if clean {
            self.changes.insert(k, identity.clone());
        }
        if let Some(will) = will {
            self.publish_will(conn, identity, &will);
        }
    }

    pub(crate) fn publish_will(&mut self, conn: ConnId, identity: Identity, will: &LastWill) {
        let Ok(DeviceTopic::Telemetry {
            device_id,
            module_id,
            mut properties,
        }) = crate::topic::parse_device_topic(will.topic().as_str())
        else {
            return;
        };
        if !is_own(&identity, device_id, module_id) {
            return;
        }
        let _ = properties.add_application("iothub-MessageType", "Will");
        if will.retain() {
            let _ = properties.add_application(self.retain_property.name(), "true");
        }
        crate::telemetry::stamp_sender(&identity, &mut properties);
        self.telemetry.push(Telemetry {
            identity,
            properties,
            payload: will.message().clone(),
            qos: will.qos(),
            dup: false,
            conn,
        });
    }
}
