//! The Device Provisioning Service's side of the protocol as a sans-IO
//! engine: [`DpsService`]. The core of the emulator's DPS endpoint, and the
//! peer the provisioning session's tests run against in simulated time.
//!
//! It is driven like [`Hub`](super::Hub): [`accept`](DpsService::accept)
//! a connection, feed its bytes to [`handle_input`](DpsService::handle_input),
//! drain [`poll_transmit`](DpsService::poll_transmit), watch
//! [`is_closed`](DpsService::is_closed), and pass time to
//! [`handle_timeout`](DpsService::handle_timeout) at
//! [`poll_timeout`](DpsService::poll_timeout).
//!
//! # The service's rules
//!
//! **Enrollments.** An individual enrollment names one registration id
//! with a symmetric key ([`add_individual_enrollment`](DpsService::add_individual_enrollment))
//! or X.509 ([`add_x509_enrollment`](DpsService::add_x509_enrollment): the
//! adapter has checked the certificate's CN, the CONNECT carries no
//! password; or [`add_x509_thumbprint_enrollment`](DpsService::add_x509_thumbprint_enrollment):
//! the engine checks the certificate's thumbprint). A group enrollment ([`add_group_enrollment`](DpsService::add_group_enrollment))
//! admits any registration id whose token was signed with the group key
//! derived for it ([`SharedAccessKey::derive_for_registration`]). A
//! symmetric-key enrollment may have a secondary key too
//! ([`set_individual_secondary_key`](DpsService::set_individual_secondary_key),
//! [`set_group_secondary_key`](DpsService::set_group_secondary_key)). An
//! X.509 CA group ([`add_x509_ca_group_enrollment`](DpsService::add_x509_ca_group_enrollment))
//! admits a device whose certificate the adapter verified against the
//! group's CA, as the certificate's common name. An
//! individual enrollment wins over the groups; registration ids are
//! compared exactly. Enrollments can be removed
//! ([`remove_individual_enrollment`](DpsService::remove_individual_enrollment),
//! [`remove_group_enrollment`](DpsService::remove_group_enrollment)).
//!
//! **CONNECT** must be the first packet. A connection
//! ([`accept`](DpsService::accept)) without an accepted CONNECT
//! [`connect_timeout`](DpsService::connect_timeout) later (default
//! [`DEFAULT_CONNECT_TIMEOUT`], 30 s) is closed by
//! [`handle_timeout`](DpsService::handle_timeout)
//! ([`CloseReason::ConnectTimeout`]), as the hub does. The checks, in
//! order (the first failure answers CONNACK with the code shown and closes):
//!
//! | check | refusal |
//! |---|---|
//! | an injected refusal is pending ([`refuse_connects`](DpsService::refuse_connects)) | its code |
//! | protocol level other than 4 | 1 |
//! | keep-alive above 1177 s | 2 |
//! | username missing or not read by [`ProvisioningUsername::parse`] | 4 |
//! | username ID scope is not the service's (ASCII case ignored) | 4 |
//! | client id is not the username's registration id | 2 |
//! | no enrollment admits the registration id | 5 |
//! | X.509 enrollment with thumbprints: no client certificate ([`accept`](DpsService::accept)) | 5 |
//! | X.509 enrollment with thumbprints: the certificate's is none of them | 4 |
//! | X.509 enrollment: accepted here, without a password | — |
//! | no individual enrollment, no password, a certificate the adapter verified ([`accept`](DpsService::accept)): its common name is not the registration id, or none of its groups is an X.509 CA group | 5 |
//! | the same, admitted: accepted as a member of that group | — |
//! | no password, or not a SAS token | 4 |
//! | token resource URI is not `{idScope}/registrations/{registrationId}` | 5 |
//! | token has an `skn` other than `registration` (none is accepted: Microsoft's Python SDK sends none, and the service takes it) | 4 |
//! | signature does not verify (individual primary or secondary key, or a key derived from a group's primary or secondary key) | 4 |
//! | token expired at the `unix_secs` given | 5 |
//!
//! CONNACK never has session-present: DPS keeps no sessions, whatever the
//! CleanSession flag says.
//!
//! **Subscriptions.** Only `$dps/registrations/res/#` (QoS 2 granted as 1);
//! any other filter gets 0x80. Answers go out at the granted QoS; a client
//! not subscribed gets no answer.
//!
//! **Registration.** `$dps/registrations/PUT/iotdps-register/?$rid=` with
//! `{"registrationId":"…","payload":…}` (the id must be the connection's,
//! else 400) starts an operation and is answered 202
//! `{"operationId":"…","status":"assigning"}` with `retry-after`
//! ([`set_retry_after`](DpsService::set_retry_after), default 3 s).
//! `$dps/registrations/GET/iotdps-get-operationstatus/?$rid=&operationId=`
//! is answered 202 `assigning` for the enrollment's
//! [`assigning_polls`](EnrollmentOptions::assigning_polls) first polls,
//! then 200 with the result: `assigned` (to the enrollment's hub or the
//! service's default hub, device id = the enrollment's or the registration
//! id; an [`Assignment`] is added to the journal), `failed`
//! ([`EnrollmentOptions::failure`]) or `disabled`. An unknown operation, or
//! another registration's, is 404. A PUBLISH to any other topic closes the
//! connection.
//!
//! **Faults.** Refused CONNECTs ([`refuse_connects`](DpsService::refuse_connects)),
//! 429 with `retry-after` ([`throttle_next`](DpsService::throttle_next)),
//! any error status ([`fail_next_requests`](DpsService::fail_next_requests)),
//! no answers ([`silence_responses`](DpsService::silence_responses)), slow
//! assignments ([`delay_assignments`](DpsService::delay_assignments)) and
//! dropped connections ([`drop_connection`](DpsService::drop_connection)).

use std::collections::BTreeMap;
use std::format;
use std::string::String;
use std::vec::Vec;

use std::time::Duration;

use bytes::Bytes;
use iothub_proto::time::Instant;
use serde_json::Value;

use super::{CloseReason, Conn, ConnId, DEFAULT_CONNECT_TIMEOUT, MAX_KEEP_ALIVE_SECS, Violation};
use crate::topic::DeviceTopic;
use iothub_proto::auth::{
    DPS_KEY_NAME, DeviceId, HostName, ProvisioningUsername, RegistrationId, SasToken,
    SharedAccessKey, dps_resource_uri,
};
use iothub_proto::mqtt::{
    self, Connack, Connect, ConnectReturnCode, DecodeError, Packet, Publish, QoS, QosPid, Suback,
    Subscribe, SubscribeReturnCode,
};
use iothub_proto::provisioning::{
    OperationStatus, RegisterRequest, RegistrationState, RegistrationStatus, ServiceError,
    Substatus,
};
use iothub_proto::topic::{self, DPS_RESPONSE_FILTER, RequestId};

/// The largest packet the service decodes.
const MAX_PACKET_SIZE: usize = 64 * 1024;

/// The `retry-after` of the service's answers unless set otherwise: 3 s.
pub const DEFAULT_DPS_RETRY_AFTER: u32 = 3;

/// How an enrollment assigns its devices.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct EnrollmentOptions {
    /// The hub to assign to; default: the service's default hub.
    pub iot_hub: Option<HostName>,
    /// The device id to assign (individual enrollments); default: the
    /// registration id.
    pub device_id: Option<DeviceId>,
    /// A disabled enrollment's registrations end in status `disabled`.
    /// Default `true`.
    pub enabled: bool,
    /// Returned in `registrationState.payload` (what a custom allocation
    /// policy would return). Default none.
    pub returned_payload: Option<Value>,
    /// How many polls are answered `assigning` before the result. Default
    /// 0: the register request is answered 202, the first poll 200.
    pub assigning_polls: u32,
    /// Registrations end in status `failed` with this `errorCode` and
    /// `errorMessage`. Default none.
    pub failure: Option<(u64, String)>,
}

impl Default for EnrollmentOptions {
    fn default() -> Self {
        Self {
            iot_hub: None,
            device_id: None,
            enabled: true,
            returned_payload: None,
            assigning_polls: 0,
            failure: None,
        }
    }
}

impl EnrollmentOptions {
    /// Sets [`iot_hub`](Self::iot_hub).
    #[must_use]
    pub fn with_iot_hub(mut self, hub: HostName) -> Self {
        self.iot_hub = Some(hub);
        self
    }

    /// Sets [`device_id`](Self::device_id).
    #[must_use]
    pub fn with_device_id(mut self, device_id: DeviceId) -> Self {
        self.device_id = Some(device_id);
        self
    }

    /// Sets [`enabled`](Self::enabled).
    #[must_use]
    pub fn with_enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// Sets [`returned_payload`](Self::returned_payload).
    #[must_use]
    pub fn with_returned_payload(mut self, payload: Value) -> Self {
        self.returned_payload = Some(payload);
        self
    }

    /// Sets [`assigning_polls`](Self::assigning_polls).
    #[must_use]
    pub fn with_assigning_polls(mut self, polls: u32) -> Self {
        self.assigning_polls = polls;
        self
    }

    /// Sets [`failure`](Self::failure).
    #[must_use]
    pub fn with_failure(mut self, error_code: u64, message: &str) -> Self {
        self.failure = Some((error_code, String::from(message)));
        self
    }
}

/// A successful assignment, journaled so that the emulator can create the
/// device in its hub registry (for example with
/// [`Hub::add_device`](super::Hub::add_device)`(device_id, key)`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Assignment {
    /// The registration id.
    pub registration_id: RegistrationId,
    /// The enrollment group that admitted it, if it was a group.
    pub group: Option<String>,
    /// The hub it was assigned to.
    pub assigned_hub: HostName,
    /// The device id at that hub.
    pub device_id: DeviceId,
    /// The device's symmetric key (the individual key, or the derived group
    /// key); `None` for X.509.
    pub key: Option<SharedAccessKey>,
    /// The payload the device sent with its registration request.
    pub request_payload: Option<Value>,
    /// The payload returned to the device.
    pub returned_payload: Option<Value>,
    /// The substatus returned.
    pub substatus: Substatus,
    /// The operation id.
    pub operation_id: String,
    /// The connection the result was delivered on.
    pub conn: ConnId,
    /// The SHA-256 thumbprint of the client certificate of that
    /// connection, if it presented one (X.509 devices authenticate to the
    /// hub with it).
    pub thumbprint: Option<String>,
}

/// What the service has counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DpsCounters {
    /// CONNECTs answered with CONNACK 0.
    pub connects_accepted: u64,
    /// CONNECTs refused (injected refusals included).
    pub connects_refused: u64,
    /// Register requests received.
    pub register_requests: u64,
    /// Operation-status polls received.
    pub polls: u64,
    /// Requests answered 429 by [`DpsService::throttle_next`].
    pub throttled: u64,
    /// Requests not answered: the client had not subscribed, or
    /// [`DpsService::silence_responses`] was on.
    pub unanswered: u64,
    /// Connections closed for a [`Violation`].
    pub protocol_violations: u64,
    /// Connections closed for keep-alive silence.
    pub keep_alive_timeouts: u64,
    /// Connections closed because no CONNECT was accepted in time
    /// ([`CloseReason::ConnectTimeout`]).
    pub connect_timeouts: u64,
}

/// Who admitted a registration id.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Individual,
    Group(String),
}

#[derive(Debug, Clone)]
struct Individual {
    /// `None` for X.509.
    key: Option<SharedAccessKey>,
    /// A second key that is accepted too (symmetric-key enrollments).
    secondary: Option<SharedAccessKey>,
    /// X.509 with thumbprints: the client certificate's SHA-256
    /// thumbprint (hex) must be one of these. Empty: the adapter checked
    /// the certificate.
    thumbprints: Vec<String>,
    options: EnrollmentOptions,
}

#[derive(Debug, Clone)]
struct Group {
    /// The group key; `None` for an X.509 CA group.
    key: Option<SharedAccessKey>,
    /// A second group key whose derived keys are accepted too.
    secondary: Option<SharedAccessKey>,
    options: EnrollmentOptions,
}

/// The authenticated client of a connection.
#[derive(Debug, Clone)]
struct Client {
    registration_id: RegistrationId,
    source: Source,
    key: Option<SharedAccessKey>,
    subscribed: Option<QoS>,
}

#[derive(Debug)]
struct DpsConn {
    base: Conn,
    client: Option<Client>,
    /// The client certificate as the adapter verified it, for X.509 CA
    /// groups.
    verified: Option<VerifiedCertificate>,
}

/// A client certificate the adapter verified against the CA certificates
/// of X.509 CA enrollment groups ([`DpsService::add_x509_ca_group_enrollment`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifiedCertificate {
    /// The certificate's subject common name: the registration id it may
    /// register as.
    pub common_name: String,
    /// The groups whose CA certificate the chain verified against.
    pub groups: Vec<String>,
}

impl VerifiedCertificate {
    /// A certificate with this common name, verified against the CAs of
    /// these groups.
    #[must_use]
    pub fn new(common_name: &str, groups: Vec<String>) -> VerifiedCertificate {
        VerifiedCertificate {
            common_name: String::from(common_name),
            groups,
        }
    }
}

#[derive(Debug, Clone)]
struct Operation {
    registration_id: RegistrationId,
    source: Source,
    key: Option<SharedAccessKey>,
    request_payload: Option<Value>,
    polls_left: u32,
    /// The final answer, once computed.
    result: Option<OperationStatus>,
}

#[derive(Debug, Default)]
struct Faults {
    refuse_connects: (u32, Option<ConnectReturnCode>),
    throttle: (u32, Option<u32>),
    fail_requests: (u32, u16),
    silent: bool,
    /// Extra `assigning` polls of every registration started meanwhile.
    extra_polls: u32,
}

/// An in-memory Device Provisioning Service; see the [module docs](self).
///
/// ```
/// use iothub_proto::auth::{HostName, RegistrationId, SharedAccessKey};
/// use iothub_hub::dps::{DpsService, EnrollmentOptions};
///
/// let mut dps = DpsService::new("0ne00000A0A", HostName::new("hub.example.net")?);
/// dps.add_individual_enrollment(
///     RegistrationId::new("dev1")?,
///     SharedAccessKey::from_bytes([7u8; 32])?,
///     EnrollmentOptions::default(),
/// );
/// let conn = dps.accept(iothub_proto::time::Instant::ZERO, None, None);
/// assert!(!dps.is_closed(conn));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct DpsService {
    id_scope: String,
    default_hub: HostName,
    individual: BTreeMap<String, Individual>,
    groups: BTreeMap<String, Group>,
    conns: BTreeMap<ConnId, DpsConn>,
    operations: BTreeMap<String, Operation>,
    /// The hub each registration id was last assigned to.
    assigned: BTreeMap<String, HostName>,
    assignments: Vec<Assignment>,
    retry_after: Option<u32>,
    next_conn: u64,
    next_operation: u64,
    next_tracking: u64,
    faults: Faults,
    counters: DpsCounters,
    /// How long a connection may wait for its CONNECT ([`DpsService::set_connect_timeout`]).
    connect_timeout_ms: Option<u64>,
}

impl DpsService {
    /// A service with this ID scope that assigns to `default_hub` unless an
    /// enrollment says otherwise; no enrollments.
    #[must_use]
    pub fn new(id_scope: &str, default_hub: HostName) -> DpsService {
        DpsService {
            id_scope: String::from(id_scope),
            default_hub,
            individual: BTreeMap::new(),
            groups: BTreeMap::new(),
            conns: BTreeMap::new(),
            operations: BTreeMap::new(),
            assigned: BTreeMap::new(),
            assignments: Vec::new(),
            retry_after: Some(DEFAULT_DPS_RETRY_AFTER),
            next_conn: 0,
            next_operation: 0,
            next_tracking: 0,
            faults: Faults::default(),
            counters: DpsCounters::default(),
            connect_timeout_ms: Some(crate::millis(DEFAULT_CONNECT_TIMEOUT)),
        }
    }

    /// The ID scope.
    #[must_use]
    pub fn id_scope(&self) -> &str {
        &self.id_scope
    }

    /// Adds (or replaces) an individual enrollment with a symmetric key.
    pub fn add_individual_enrollment(
        &mut self,
        registration_id: RegistrationId,
        key: SharedAccessKey,
        options: EnrollmentOptions,
    ) {
        self.individual.insert(
            String::from(registration_id.as_str()),
            Individual {
                key: Some(key),
                secondary: None,
                thumbprints: Vec::new(),
                options,
            },
        );
    }

    /// Adds (or replaces) an individual X.509 enrollment: the adapter has
    /// verified that the client certificate's CN is `registration_id`; the
    /// CONNECT needs no password.
    pub fn add_x509_enrollment(
        &mut self,
        registration_id: RegistrationId,
        options: EnrollmentOptions,
    ) {
        self.individual.insert(
            String::from(registration_id.as_str()),
            Individual {
                key: None,
                secondary: None,
                thumbprints: Vec::new(),
                options,
            },
        );
    }

    /// Adds (or replaces) an individual X.509 enrollment checked by
    /// thumbprint: the connection's client certificate (its SHA-256
    /// thumbprint, hex, as given to [`accept`](Self::accept))
    /// must be one of `thumbprints` (ASCII case ignored), else CONNACK 5.
    /// The CONNECT needs no password.
    pub fn add_x509_thumbprint_enrollment(
        &mut self,
        registration_id: RegistrationId,
        thumbprints: Vec<String>,
        options: EnrollmentOptions,
    ) {
        self.individual.insert(
            String::from(registration_id.as_str()),
            Individual {
                key: None,
                secondary: None,
                thumbprints,
                options,
            },
        );
    }

    /// Adds (or replaces) a symmetric-key enrollment group called `name`.
    /// [`EnrollmentOptions::device_id`] does not apply to groups (each
    /// device gets its registration id).
    pub fn add_group_enrollment(
        &mut self,
        name: &str,
        group_key: SharedAccessKey,
        options: EnrollmentOptions,
    ) {
        self.groups.insert(
            String::from(name),
            Group {
                key: Some(group_key),
                secondary: None,
                options,
            },
        );
    }

    /// Adds (or replaces) an X.509 CA enrollment group called `name`: it
    /// admits a device whose client certificate chains to the group's CA
    /// certificate, as registration id the certificate's subject common
    /// name, without a password. The chain is the adapter's to verify (a
    /// sans-IO engine holds no certificates): it names the groups whose
    /// CA verified the connection's certificate, and the common name, in
    /// [`accept`](Self::accept).
    pub fn add_x509_ca_group_enrollment(&mut self, name: &str, options: EnrollmentOptions) {
        self.groups.insert(
            String::from(name),
            Group {
                key: None,
                secondary: None,
                options,
            },
        );
    }

    /// Sets (or with `None` clears) the secondary key of the symmetric-key
    /// individual enrollment of `registration_id`: a token signed with it
    /// is accepted as well as one signed with the primary key. False if
    /// there is no such symmetric-key enrollment.
    pub fn set_individual_secondary_key(
        &mut self,
        registration_id: &str,
        key: Option<SharedAccessKey>,
    ) -> bool {
        match self.individual.get_mut(registration_id) {
            Some(e) if e.key.is_some() => {
                e.secondary = key;
                true
            }
            _ => false,
        }
    }

    /// Sets (or with `None` clears) the secondary key of the enrollment
    /// group `name`: a token signed with the key derived from it is
    /// accepted as well as one signed with the key derived from the
    /// primary group key. False if there is no such group.
    pub fn set_group_secondary_key(&mut self, name: &str, key: Option<SharedAccessKey>) -> bool {
        match self.groups.get_mut(name) {
            Some(g) if g.key.is_some() => {
                g.secondary = key;
                true
            }
            _ => false,
        }
    }

    /// Removes the individual enrollment of `registration_id`. Its
    /// devices' live connections stay; new CONNECTs are refused (unless a
    /// group admits them). False if there was none.
    pub fn remove_individual_enrollment(&mut self, registration_id: &str) -> bool {
        self.individual.remove(registration_id).is_some()
    }

    /// Removes the enrollment group called `name`. False if there was none.
    pub fn remove_group_enrollment(&mut self, name: &str) -> bool {
        self.groups.remove(name).is_some()
    }

    /// Enables or disables an enrollment (individual, or else the group of
    /// that name). False if there is none.
    pub fn set_enrollment_enabled(&mut self, name: &str, enabled: bool) -> bool {
        if let Some(e) = self.individual.get_mut(name) {
            e.options.enabled = enabled;
            true
        } else if let Some(g) = self.groups.get_mut(name) {
            g.options.enabled = enabled;
            true
        } else {
            false
        }
    }

    /// How long a connection may go without an accepted CONNECT before the
    /// service closes it ([`CloseReason::ConnectTimeout`]); `None` turns the
    /// deadline off. Applies to connections accepted afterwards. Default
    /// [`DEFAULT_CONNECT_TIMEOUT`].
    pub fn set_connect_timeout(&mut self, timeout: Option<Duration>) {
        self.connect_timeout_ms = timeout.map(crate::millis);
    }

    /// The CONNECT deadline of new connections
    /// ([`set_connect_timeout`](Self::set_connect_timeout)).
    #[must_use]
    pub fn connect_timeout(&self) -> Option<Duration> {
        self.connect_timeout_ms.map(Duration::from_millis)
    }

    /// The `retry-after` (seconds) of 202 answers; `None` leaves it out.
    pub fn set_retry_after(&mut self, seconds: Option<u32>) {
        self.retry_after = seconds;
    }

    // -----------------------------------------------------------------------
    // Connections

    /// A new connection, its transport up at `now` (the client has sent
    /// nothing yet). `thumbprint` is the SHA-256 thumbprint (hex) of the
    /// client certificate its TLS layer received, checked against the
    /// thumbprints of X.509 enrollments
    /// ([`add_x509_thumbprint_enrollment`](Self::add_x509_thumbprint_enrollment));
    /// `None` when the client presented no certificate. `verified` says
    /// which X.509 CA groups' certificates the adapter verified the client
    /// certificate against, and its common name: a CONNECT without a
    /// password is then admitted by the first of those groups that is an
    /// X.509 CA group, if its registration id is the common name; otherwise
    /// it is refused with CONNACK 5. Unless a CONNECT is accepted by `now` +
    /// [`connect_timeout`](Self::connect_timeout),
    /// [`handle_timeout`](Self::handle_timeout) closes it with
    /// [`CloseReason::ConnectTimeout`]; [`poll_timeout`](Self::poll_timeout)
    /// includes that deadline.
    pub fn accept(
        &mut self,
        now: Instant,
        thumbprint: Option<String>,
        verified: Option<VerifiedCertificate>,
    ) -> ConnId {
        let now_ms = now.as_millis();
        let deadline = self.connect_timeout_ms.map(|t| now_ms.saturating_add(t));
        self.insert_conn(Conn::new(thumbprint, deadline), verified)
    }

    fn insert_conn(&mut self, base: Conn, verified: Option<VerifiedCertificate>) -> ConnId {
        self.next_conn = self.next_conn.saturating_add(1);
        let id = ConnId(self.next_conn);
        self.conns.insert(
            id,
            DpsConn {
                base,
                client: None,
                verified,
            },
        );
        id
    }

    /// Bytes from the client at monotonic `now` and wall-clock
    /// `unix_secs`. Ignored on a closed or unknown connection.
    pub fn handle_input(&mut self, conn: ConnId, now: Instant, unix_secs: u64, data: &[u8]) {
        let now_ms = now.as_millis();
        match self.conns.get_mut(&conn) {
            Some(c) if c.base.is_open() => c.base.rx.extend_from_slice(data),
            _ => return,
        }
        if self.token_expired(conn, unix_secs) {
            self.close(conn, CloseReason::TokenExpired);
            return;
        }
        loop {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            if !c.base.is_open() {
                c.base.rx.clear();
                return;
            }
            match mqtt::decode(&mut c.base.rx, MAX_PACKET_SIZE) {
                Ok(None) => return,
                Ok(Some(packet)) => {
                    c.base.last_rx_ms = now_ms;
                    self.on_packet(conn, now_ms, unix_secs, packet);
                }
                Err(DecodeError::UnsupportedProtocolLevel(_)) if c.client.is_none() => {
                    self.refuse(conn, ConnectReturnCode::UnacceptableProtocolVersion);
                }
                Err(DecodeError::PacketTooLarge { size, .. }) => {
                    self.violation(conn, Violation::MessageTooLarge { size });
                }
                Err(e) => self.violation(conn, Violation::Malformed(e)),
            }
        }
    }

    /// The bytes queued for the client since the last call, or `None`.
    #[must_use = "the bytes must be delivered to the client"]
    pub fn poll_transmit(&mut self, conn: ConnId) -> Option<Bytes> {
        let c = self.conns.get_mut(&conn)?;
        (!c.base.tx.is_empty()).then(|| c.base.tx.split().freeze())
    }

    /// Whether the connection is closed (true for an unknown id).
    #[must_use]
    pub fn is_closed(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_none_or(|c| !c.base.is_open())
    }

    /// Why the connection ended, once it has.
    #[must_use]
    pub fn close_reason(&self, conn: ConnId) -> Option<CloseReason> {
        self.conns.get(&conn).and_then(|c| c.base.closed)
    }

    /// The client's transport went away.
    pub fn client_closed(&mut self, conn: ConnId) {
        self.close(conn, CloseReason::TransportClosed);
    }

    /// Forgets a closed connection entirely (an adapter calls this once
    /// its transport is gone, so that a long-running service does not
    /// keep every connection it ever had). No effect on an open connection.
    pub fn remove_connection(&mut self, conn: ConnId) {
        if self.conns.get(&conn).is_some_and(|c| !c.base.is_open()) {
            self.conns.remove(&conn);
        }
    }

    /// The service closes the connection without a word.
    pub fn drop_connection(&mut self, conn: ConnId) {
        self.close(conn, CloseReason::Dropped);
    }

    /// Advances to `now` / `unix_secs`: closes connections past their
    /// CONNECT deadline without an accepted CONNECT, connections silent
    /// for more than 1.5 × their keep-alive, and those whose token expired.
    pub fn handle_timeout(&mut self, now: Instant, unix_secs: u64) {
        let now_ms = now.as_millis();
        let unconnected: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                c.base
                    .pending_connect_deadline()
                    .is_some_and(|d| now_ms >= d)
            })
            .map(|(&id, _)| id)
            .collect();
        for id in unconnected {
            self.counters.connect_timeouts = self.counters.connect_timeouts.saturating_add(1);
            self.close(id, CloseReason::ConnectTimeout);
        }
        let live: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.base.is_live())
            .map(|(&id, _)| id)
            .collect();
        for id in live {
            if self.token_expired(id, unix_secs) {
                self.close(id, CloseReason::TokenExpired);
            } else if self
                .conns
                .get(&id)
                .and_then(|c| c.base.keep_alive_deadline())
                .is_some_and(|d| now_ms >= d)
            {
                self.counters.keep_alive_timeouts =
                    self.counters.keep_alive_timeouts.saturating_add(1);
                self.close(id, CloseReason::KeepAliveTimeout);
            }
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has work.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.conns
            .values()
            .flat_map(|c| c.base.deadlines())
            .flatten()
            .min()
            .map(Instant::from_millis)
    }

    // -----------------------------------------------------------------------
    // Observability

    /// What the service has counted.
    #[must_use]
    pub fn counters(&self) -> &DpsCounters {
        &self.counters
    }

    /// The registration id a connection authenticated as.
    #[must_use]
    pub fn connection_registration(&self, conn: ConnId) -> Option<&RegistrationId> {
        self.conns
            .get(&conn)?
            .client
            .as_ref()
            .map(|c| &c.registration_id)
    }

    /// The assignments made, in order.
    #[must_use]
    pub fn assignments(&self) -> &[Assignment] {
        &self.assignments
    }

    /// Takes the assignments made so far (the emulator's journal).
    pub fn take_assignments(&mut self) -> Vec<Assignment> {
        core::mem::take(&mut self.assignments)
    }

    // -----------------------------------------------------------------------
    // Fault injection

    /// The next `n` CONNECTs are refused with `code` (before any other
    /// check). `Accepted` or `n == 0` turns this off.
    pub fn refuse_connects(&mut self, n: u32, code: ConnectReturnCode) {
        self.faults.refuse_connects = (n, (!code.is_accepted()).then_some(code));
    }

    /// The next `n` requests (register or poll) are answered 429, with
    /// `retry_after` if given, and not processed.
    pub fn throttle_next(&mut self, n: u32, retry_after: Option<u32>) {
        self.faults.throttle = (n, retry_after);
    }

    /// The next `n` requests are answered `status` (500, 503, 401, …) with
    /// an error body, and not processed.
    pub fn fail_next_requests(&mut self, n: u32, status: u16) {
        self.faults.fail_requests = (n, status);
    }

    /// While `true`, requests are acknowledged but never answered.
    pub fn silence_responses(&mut self, silent: bool) {
        self.faults.silent = silent;
    }

    /// A slow assignment: registrations started from now on are answered
    /// `assigning` (202, with `retry-after`) for `polls` more polls before
    /// their result, on top of the enrollment's
    /// [`assigning_polls`](EnrollmentOptions::assigning_polls). 0 turns
    /// this off.
    pub fn delay_assignments(&mut self, polls: u32) {
        self.faults.extra_polls = polls;
    }

    // -----------------------------------------------------------------------
    // Packets

    fn on_packet(&mut self, conn: ConnId, now_ms: u64, unix_secs: u64, packet: Packet) {
        let connected = self.conns.get(&conn).is_some_and(|c| c.client.is_some());
        match packet {
            Packet::Connect(c) if !connected => self.on_connect(conn, now_ms, unix_secs, &c),
            _ if !connected => self.violation(conn, Violation::NotConnectFirst),
            Packet::Connect(_) => self.violation(conn, Violation::SecondConnect),
            Packet::Publish(p) => self.on_publish(conn, p),
            // Acknowledgments of QoS 1 answers: nothing is redelivered.
            Packet::Puback(_) => {}
            Packet::Subscribe(s) => self.on_subscribe(conn, &s),
            Packet::Unsubscribe(u) => {
                if let Some(client) = self.client_mut(conn) {
                    if u.filters()
                        .iter()
                        .any(|f| f.as_str() == DPS_RESPONSE_FILTER)
                    {
                        client.subscribed = None;
                    }
                }
                self.send(conn, &Packet::Unsuback(u.pid()));
            }
            Packet::Pingreq => self.send(conn, &Packet::Pingresp),
            Packet::Disconnect => self.close(conn, CloseReason::ClientDisconnected),
            other => self.violation(conn, Violation::UnexpectedPacket(other.packet_type())),
        }
    }

    /// The CONNECT checks of the module docs; on success the client and
    /// the token expiry.
    fn check_connect(
        &mut self,
        conn: ConnId,
        connect: &Connect,
        unix_secs: u64,
    ) -> Result<(Client, Option<u64>), ConnectReturnCode> {
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
            .and_then(|u| ProvisioningUsername::parse(u.as_str()).ok())
            .ok_or(Code::BadUserNameOrPassword)?;
        if !username
            .id_scope
            .as_str()
            .eq_ignore_ascii_case(&self.id_scope)
        {
            return Err(Code::BadUserNameOrPassword);
        }
        let rid = username.registration_id;
        if connect.client_id().as_str() != rid.as_str() {
            return Err(Code::IdentifierRejected);
        }
        let individual = self.individual.get(rid.as_str());
        if individual.is_none() && self.groups.is_empty() {
            return Err(Code::NotAuthorized);
        }
        if let Some(Individual {
            key: None,
            thumbprints,
            ..
        }) = individual
        {
            if !thumbprints.is_empty() {
                let seen = self
                    .conns
                    .get(&conn)
                    .and_then(|c| c.base.thumbprint.as_deref())
                    .ok_or(Code::NotAuthorized)?;
                if !thumbprints.iter().any(|t| t.eq_ignore_ascii_case(seen)) {
                    return Err(Code::BadUserNameOrPassword);
                }
            }
            let client = Client {
                registration_id: rid,
                source: Source::Individual,
                key: None,
                subscribed: None,
            };
            return Ok((client, None));
        }
        let verified = self.conns.get(&conn).and_then(|c| c.verified.as_ref());
        if let (None, None, Some(v)) = (individual, connect.password(), verified) {
            if v.common_name != rid.as_str() {
                return Err(Code::NotAuthorized);
            }
            let group = v
                .groups
                .iter()
                .find(|g| self.groups.get(*g).is_some_and(|g| g.key.is_none()))
                .ok_or(Code::NotAuthorized)?;
            let client = Client {
                registration_id: rid,
                source: Source::Group(group.clone()),
                key: None,
                subscribed: None,
            };
            return Ok((client, None));
        }
        let token = connect
            .password()
            .and_then(|p| core::str::from_utf8(p).ok())
            .and_then(|p| SasToken::parse(p).ok())
            .ok_or(Code::BadUserNameOrPassword)?;
        if token.resource_uri() != dps_resource_uri(&self.id_scope, rid.as_str()) {
            return Err(Code::NotAuthorized);
        }
        if token.key_name().is_some_and(|name| name != DPS_KEY_NAME) {
            return Err(Code::BadUserNameOrPassword);
        }
        let (source, key) = match individual {
            Some(Individual {
                key: Some(key),
                secondary,
                ..
            }) => {
                let key = core::iter::once(key)
                    .chain(secondary)
                    .find(|k| token.verify(k))
                    .ok_or(Code::BadUserNameOrPassword)?;
                (Source::Individual, key.clone())
            }
            _ => self
                .groups
                .iter()
                .flat_map(|(name, g)| g.key.iter().chain(&g.secondary).map(move |k| (name, k)))
                .map(|(name, k)| (name, k.derive_for_registration(rid.as_str())))
                .find(|(_, derived)| token.verify(derived))
                .map(|(name, derived)| (Source::Group(name.clone()), derived))
                .ok_or(Code::BadUserNameOrPassword)?,
        };
        if token.is_expired_at(unix_secs) {
            return Err(Code::NotAuthorized);
        }
        let client = Client {
            registration_id: rid,
            source,
            key: Some(key),
            subscribed: None,
        };
        Ok((client, Some(token.expiry_unix_secs())))
    }

    fn on_connect(&mut self, conn: ConnId, now_ms: u64, unix_secs: u64, connect: &Connect) {
        let (client, expiry) = match self.check_connect(conn, connect, unix_secs) {
            Ok(ok) => ok,
            Err(code) => return self.refuse(conn, code),
        };
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.base.client_id = Some(String::from(client.registration_id.as_str()));
        c.base.keep_alive_ms = u64::from(connect.keep_alive()).saturating_mul(1000);
        c.base.last_rx_ms = now_ms;
        c.base.token_expiry = expiry.map(|se| {
            let left_ms = se.saturating_sub(unix_secs).saturating_mul(1000);
            (se, now_ms.saturating_add(left_ms))
        });
        c.client = Some(client);
        c.base.send(&Packet::Connack(Connack::new(
            false,
            ConnectReturnCode::Accepted,
        )));
        self.counters.connects_accepted = self.counters.connects_accepted.saturating_add(1);
    }

    fn refuse(&mut self, conn: ConnId, code: ConnectReturnCode) {
        self.counters.connects_refused = self.counters.connects_refused.saturating_add(1);
        self.send(conn, &Packet::Connack(Connack::new(false, code)));
        self.close(conn, CloseReason::Refused(code));
    }

    fn on_subscribe(&mut self, conn: ConnId, subscribe: &Subscribe) {
        let Some(client) = self.client_mut(conn) else {
            return;
        };
        let mut codes = Vec::with_capacity(subscribe.filters().len());
        for (filter, qos) in subscribe.filters() {
            if filter.as_str() == DPS_RESPONSE_FILTER {
                let granted = match qos {
                    QoS::AtMostOnce => QoS::AtMostOnce,
                    QoS::AtLeastOnce | QoS::ExactlyOnce => QoS::AtLeastOnce,
                };
                client.subscribed = Some(granted);
                codes.push(SubscribeReturnCode::Success(granted));
            } else {
                codes.push(SubscribeReturnCode::Failure);
            }
        }
        if let Ok(suback) = Suback::new(subscribe.pid(), codes) {
            self.send(conn, &Packet::Suback(suback));
        }
    }

    fn on_publish(&mut self, conn: ConnId, publish: Publish) {
        if publish.qos() == QoS::ExactlyOnce {
            return self.violation(conn, Violation::Qos2);
        }
        if let Some(pid) = publish.pid() {
            self.send(conn, &Packet::Puback(pid));
        }
        let (topic, payload) = publish.into_parts();
        match crate::topic::parse_device_topic(topic.as_str()) {
            Ok(DeviceTopic::DpsRegister { request_id }) => {
                self.counters.register_requests = self.counters.register_requests.saturating_add(1);
                self.on_request(conn, request_id, None, &payload);
            }
            Ok(DeviceTopic::DpsPoll {
                request_id,
                operation_id,
            }) => {
                self.counters.polls = self.counters.polls.saturating_add(1);
                self.on_request(conn, request_id, Some(&operation_id), &payload);
            }
            _ => self.violation(conn, Violation::ForeignTopic),
        }
    }

    /// A register (`operation_id` none) or poll request.
    fn on_request(
        &mut self,
        conn: ConnId,
        request_id: &str,
        operation_id: Option<&str>,
        body: &[u8],
    ) {
        let Some(client) = self.conns.get(&conn).and_then(|c| c.client.clone()) else {
            return;
        };
        let rid = RequestId::from_wire(request_id);
        let Some(qos) = client.subscribed.filter(|_| !self.faults.silent) else {
            self.counters.unanswered = self.counters.unanswered.saturating_add(1);
            return;
        };
        if let (n @ 1.., retry_after) = self.faults.throttle {
            self.faults.throttle.0 = n - 1;
            self.counters.throttled = self.counters.throttled.saturating_add(1);
            let body = self.error_body(429, 1, "Too many requests");
            return self.answer(conn, qos, 429, &rid, retry_after, body);
        }
        if let (n @ 1.., status) = self.faults.fail_requests {
            self.faults.fail_requests.0 = n - 1;
            let body = self.error_body(status, 1, "injected by DpsService");
            return self.answer(conn, qos, status, &rid, None, body);
        }
        match operation_id {
            None => self.on_register(conn, qos, &rid, client, body),
            Some(op) => self.on_poll(conn, qos, &rid, &client, op),
        }
    }

    fn on_register(
        &mut self,
        conn: ConnId,
        qos: QoS,
        rid: &RequestId,
        client: Client,
        body: &[u8],
    ) {
        let request = match RegisterRequest::parse(body) {
            Ok(r) if r.registration_id == client.registration_id.as_str() => r,
            Ok(_) => {
                let body = self.error_body(400, 4, "registrationId does not match the connection");
                return self.answer(conn, qos, 400, rid, None, body);
            }
            Err(_) => {
                let body = self.error_body(400, 5, "malformed registration request");
                return self.answer(conn, qos, 400, rid, None, body);
            }
        };
        let polls_left = self
            .options(&client.source, &client.registration_id)
            .map_or(0, |o| o.assigning_polls)
            .saturating_add(self.faults.extra_polls);
        self.next_operation = self.next_operation.saturating_add(1);
        let n = self.next_operation;
        let operation_id = format!(
            "4.{}.{n:08x}-0000-4000-8000-{n:012x}",
            self.id_scope.to_ascii_lowercase()
        );
        self.operations.insert(
            operation_id.clone(),
            Operation {
                registration_id: client.registration_id,
                source: client.source,
                key: client.key,
                request_payload: request.payload,
                polls_left,
                result: None,
            },
        );
        let body = OperationStatus::new(operation_id, RegistrationStatus::Assigning).to_vec();
        self.answer(conn, qos, 202, rid, self.retry_after, body.into());
    }

    fn on_poll(
        &mut self,
        conn: ConnId,
        qos: QoS,
        rid: &RequestId,
        client: &Client,
        operation_id: &str,
    ) {
        let known = self
            .operations
            .get(operation_id)
            .is_some_and(|op| op.registration_id == client.registration_id);
        if !known {
            let body = self.error_body(404, 6, "operation not found");
            return self.answer(conn, qos, 404, rid, None, body);
        }
        let retry_after = self.retry_after;
        let Some(op) = self.operations.get_mut(operation_id) else {
            return;
        };
        if op.polls_left > 0 {
            op.polls_left -= 1;
            let body = OperationStatus::new(operation_id, RegistrationStatus::Assigning).to_vec();
            return self.answer(conn, qos, 202, rid, retry_after, body.into());
        }
        let result = match &op.result {
            Some(r) => r.clone(),
            None => {
                let op = op.clone();
                let r = self.complete(conn, operation_id, &op);
                if let Some(stored) = self.operations.get_mut(operation_id) {
                    stored.result = Some(r.clone());
                }
                r
            }
        };
        self.answer(conn, qos, 200, rid, None, result.to_vec().into());
    }

    /// The final answer of an operation; journals an assignment.
    fn complete(&mut self, conn: ConnId, operation_id: &str, op: &Operation) -> OperationStatus {
        let options = self
            .options(&op.source, &op.registration_id)
            .cloned()
            .unwrap_or_default();
        let mut state = RegistrationState::default();
        state.registration_id = Some(String::from(op.registration_id.as_str()));
        let status = if !options.enabled {
            state.error_message = Some(String::from("the enrollment is disabled"));
            RegistrationStatus::Disabled
        } else if let Some((code, message)) = &options.failure {
            state.error_code = Some(*code);
            state.error_message = Some(message.clone());
            RegistrationStatus::Failed
        } else {
            let hub = options
                .iot_hub
                .clone()
                .unwrap_or_else(|| self.default_hub.clone());
            let device_id = match (&op.source, &options.device_id) {
                (Source::Individual, Some(d)) => d.clone(),
                // Every registration id is a valid device id.
                _ => match DeviceId::new(op.registration_id.as_str()) {
                    Ok(d) => d,
                    Err(_) => {
                        return OperationStatus::new(operation_id, RegistrationStatus::Failed);
                    }
                },
            };
            let substatus = match self.assigned.get(op.registration_id.as_str()) {
                Some(previous) if *previous != hub => Substatus::DeviceDataMigrated,
                _ => Substatus::InitialAssignment,
            };
            self.assigned
                .insert(String::from(op.registration_id.as_str()), hub.clone());
            state.assigned_hub = Some(String::from(hub.as_str()));
            state.device_id = Some(String::from(device_id.as_str()));
            state.substatus = Some(substatus.clone());
            state.payload.clone_from(&options.returned_payload);
            self.assignments.push(Assignment {
                registration_id: op.registration_id.clone(),
                group: match &op.source {
                    Source::Group(name) => Some(name.clone()),
                    Source::Individual => None,
                },
                assigned_hub: hub,
                device_id,
                key: op.key.clone(),
                request_payload: op.request_payload.clone(),
                returned_payload: options.returned_payload.clone(),
                substatus,
                operation_id: String::from(operation_id),
                conn,
                thumbprint: self
                    .conns
                    .get(&conn)
                    .and_then(|c| c.base.thumbprint.clone()),
            });
            RegistrationStatus::Assigned
        };
        state.status = Some(status);
        let mut result = OperationStatus::new(operation_id, status);
        result.registration_state = Some(state);
        result
    }

    fn options(&self, source: &Source, rid: &RegistrationId) -> Option<&EnrollmentOptions> {
        match source {
            Source::Individual => self.individual.get(rid.as_str()).map(|e| &e.options),
            Source::Group(name) => self.groups.get(name).map(|g| &g.options),
        }
    }

    fn error_body(&mut self, status: u16, detail: u64, message: &str) -> Bytes {
        self.next_tracking = self.next_tracking.saturating_add(1);
        let mut error = ServiceError::default();
        error.error_code = Some(
            u64::from(status)
                .saturating_mul(1000)
                .saturating_add(detail),
        );
        error.message = Some(String::from(message));
        error.tracking_id = Some(format!("dps-{:08x}", self.next_tracking));
        error.to_vec().into()
    }

    fn answer(
        &mut self,
        conn: ConnId,
        qos: QoS,
        status: u16,
        rid: &RequestId,
        retry_after: Option<u32>,
        body: Bytes,
    ) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let qospid = if qos == QoS::AtMostOnce {
            QosPid::AtMostOnce
        } else {
            QosPid::AtLeastOnce(c.base.alloc_pid(&[]))
        };
        let topic = topic::hub::dps_response(status, rid, retry_after);
        c.base.send_publish(topic, qospid, body, false);
    }

    // -----------------------------------------------------------------------
    // Helpers

    fn client_mut(&mut self, conn: ConnId) -> Option<&mut Client> {
        self.conns.get_mut(&conn)?.client.as_mut()
    }

    fn send(&mut self, conn: ConnId, packet: &Packet) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.base.send(packet);
        }
    }

    fn token_expired(&self, conn: ConnId, unix_secs: u64) -> bool {
        self.conns
            .get(&conn)
            .filter(|c| c.base.is_live())
            .and_then(|c| c.base.token_expiry)
            .is_some_and(|(se, _)| unix_secs >= se)
    }

    fn violation(&mut self, conn: ConnId, violation: Violation) {
        self.counters.protocol_violations = self.counters.protocol_violations.saturating_add(1);
        self.close(conn, CloseReason::ProtocolViolation(violation));
    }

    fn close(&mut self, conn: ConnId, reason: CloseReason) {
        if let Some(c) = self.conns.get_mut(&conn).filter(|c| c.base.is_open()) {
            c.base.closed = Some(reason);
            c.base.rx.clear();
        }
    }
}
