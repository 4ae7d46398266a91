//! The Device Provisioning Service endpoint: the enrollments (individual
//! and group, symmetric keys or X.509 thumbprints) kept beside the core's
//! DPS engine ([`DpsService`]), their storage, and the assignments that
//! create devices in the emulator's own hub.
//!
//! Every protocol rule (CONNECT checks, register → 202 → poll → assigned,
//! retry-after) is the engine's; this module only mirrors the enrollments
//! so that they can be listed, stored and given back, and turns the
//! engine's assignment journal ([`DpsService::take_assignments`]) into
//! hub registrations: the device is created (or re-keyed) with the
//! enrollment's keys — for a group, the keys derived for the registration
//! id — so that it can connect with the key it provisioned with.

use std::collections::{BTreeMap, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use iothub_hub::dps::{Assignment, DpsService, EnrollmentOptions, VerifiedCertificate};
use iothub_hub::{Authentication, ConnId, Hub};
use iothub_proto::auth::{DeviceId, HostName, Identity, RegistrationId, SharedAccessKey};
use iothub_proto::mqtt::ConnectReturnCode;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::EmulatorError;
use crate::core::{Core, Out};
use crate::service::generate_key;
use crate::store::Store;
use crate::x509ca;
use rustls_pki_types::CertificateDer;

/// The ID scope of the emulator's DPS unless configured otherwise.
pub const DEFAULT_ID_SCOPE: &str = "0ne00000001";

/// The `retry-after` (seconds) of the emulator's DPS answers unless
/// configured otherwise: 1 s, so that provisioning takes about a second
/// (the cloud service says 3).
pub const DEFAULT_DPS_RETRY_AFTER_SECS: u32 = 1;

/// Individual enrollment or enrollment group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EnrollmentKind {
    /// One registration id.
    Individual,
    /// Any registration id whose key is derived from the group key.
    Group,
}

impl EnrollmentKind {
    fn prefix(self) -> &'static str {
        match self {
            EnrollmentKind::Individual => "individual",
            EnrollmentKind::Group => "group",
        }
    }
}

/// How the devices of an enrollment prove who they are.
#[derive(Clone)]
#[non_exhaustive]
pub enum EnrollmentAttestation {
    /// Symmetric keys. For a group these are the group keys: a device
    /// signs with the key derived for its registration id
    /// ([`SharedAccessKey::derive_for_registration`]).
    SymmetricKey {
        /// The primary key.
        primary: SharedAccessKey,
        /// The secondary key, accepted too.
        secondary: Option<SharedAccessKey>,
    },
    /// An X.509 client certificate, known by its SHA-256 thumbprint (hex,
    /// see [`thumbprint`](crate::thumbprint)); individual enrollments only.
    X509 {
        /// The primary thumbprint.
        primary_thumbprint: String,
        /// The secondary thumbprint, accepted too.
        secondary_thumbprint: Option<String>,
    },
    /// A CA certificate (PEM); enrollment groups only. A device whose
    /// client certificate chains to it (verified with rustls-webpki:
    /// signatures, validity now, CA constraints, client-authentication
    /// usage) registers as its certificate's subject common name, without
    /// a password, and is created at the hub as an X.509 device with its
    /// certificate's thumbprint.
    X509Ca {
        /// The CA certificate, PEM.
        ca_pem: String,
    },
}

impl PartialEq for EnrollmentAttestation {
    fn eq(&self, other: &EnrollmentAttestation) -> bool {
        let key = |k: &SharedAccessKey| k.expose_secret().to_vec();
        match (self, other) {
            (
                EnrollmentAttestation::SymmetricKey { primary, secondary },
                EnrollmentAttestation::SymmetricKey {
                    primary: p,
                    secondary: s,
                },
            ) => key(primary) == key(p) && secondary.as_ref().map(key) == s.as_ref().map(key),
            (
                EnrollmentAttestation::X509 {
                    primary_thumbprint,
                    secondary_thumbprint,
                },
                EnrollmentAttestation::X509 {
                    primary_thumbprint: p,
                    secondary_thumbprint: s,
                },
            ) => primary_thumbprint == p && secondary_thumbprint == s,
            (
                EnrollmentAttestation::X509Ca { ca_pem },
                EnrollmentAttestation::X509Ca { ca_pem: other },
            ) => ca_pem == other,
            _ => false,
        }
    }
}

impl Eq for EnrollmentAttestation {}

impl std::fmt::Debug for EnrollmentAttestation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EnrollmentAttestation::SymmetricKey { .. } => f.write_str("SymmetricKey(<redacted>)"),
            EnrollmentAttestation::X509 {
                primary_thumbprint,
                secondary_thumbprint,
            } => f
                .debug_struct("X509")
                .field("primary_thumbprint", primary_thumbprint)
                .field("secondary_thumbprint", secondary_thumbprint)
                .finish(),
            EnrollmentAttestation::X509Ca { .. } => f.write_str("X509Ca"),
        }
    }
}

/// What to create or replace: [`EmulatorHandle::put_enrollment`](crate::EmulatorHandle::put_enrollment).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EnrollmentSpec {
    /// Keys or thumbprints; `None` keeps those of an existing enrollment,
    /// or generates two symmetric keys for a new one.
    pub attestation: Option<EnrollmentAttestation>,
    /// The device id to create (individual enrollments); default the
    /// registration id.
    pub device_id: Option<String>,
    /// A disabled enrollment's registrations end in status `disabled`.
    /// Default `true`.
    pub enabled: bool,
    /// `{"tags":{…},"properties":{"desired":{…}}}` applied to the twin of
    /// a device the enrollment creates. Default none.
    pub initial_twin: Option<Value>,
}

impl Default for EnrollmentSpec {
    fn default() -> EnrollmentSpec {
        EnrollmentSpec {
            attestation: None,
            device_id: None,
            enabled: true,
            initial_twin: None,
        }
    }
}

impl EnrollmentSpec {
    /// Symmetric keys (generated when absent).
    #[must_use]
    pub fn with_keys(
        mut self,
        primary: SharedAccessKey,
        secondary: Option<SharedAccessKey>,
    ) -> Self {
        self.attestation = Some(EnrollmentAttestation::SymmetricKey { primary, secondary });
        self
    }

    /// An X.509 CA certificate, PEM (enrollment groups).
    #[must_use]
    pub fn with_x509_ca_pem(mut self, ca_pem: &str) -> Self {
        self.attestation = Some(EnrollmentAttestation::X509Ca {
            ca_pem: ca_pem.to_owned(),
        });
        self
    }

    /// X.509 thumbprints (individual enrollments).
    #[must_use]
    pub fn with_x509_thumbprints(mut self, primary: &str, secondary: Option<&str>) -> Self {
        self.attestation = Some(EnrollmentAttestation::X509 {
            primary_thumbprint: primary.to_owned(),
            secondary_thumbprint: secondary.map(str::to_owned),
        });
        self
    }

    /// Sets [`device_id`](Self::device_id).
    #[must_use]
    pub fn with_device_id(mut self, device_id: &str) -> Self {
        self.device_id = Some(device_id.to_owned());
        self
    }

    /// Sets [`enabled`](Self::enabled).
    #[must_use]
    pub fn with_enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// Sets [`initial_twin`](Self::initial_twin).
    #[must_use]
    pub fn with_initial_twin(mut self, twin: Value) -> Self {
        self.initial_twin = Some(twin);
        self
    }
}

/// An enrollment as the emulator's DPS holds it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct EnrollmentInfo {
    /// Individual or group.
    pub kind: EnrollmentKind,
    /// The registration id (individual) or the enrollment group id.
    pub id: String,
    /// Keys or thumbprints (its `Debug` hides the keys).
    pub attestation: EnrollmentAttestation,
    /// The device id an individual enrollment creates (default: the
    /// registration id).
    pub device_id: Option<String>,
    /// Whether registrations succeed.
    pub enabled: bool,
    /// The initial twin of the devices it creates.
    pub initial_twin: Option<Value>,
    /// The DPS ID scope devices provision with.
    pub id_scope: String,
    /// The hub its devices are assigned to (the emulator's).
    pub iot_hub_host_name: String,
}

fn b64(key: &SharedAccessKey) -> String {
    STANDARD.encode(key.expose_secret())
}

impl EnrollmentInfo {
    /// The primary symmetric key, base64 (for a group: the group key).
    #[must_use]
    pub fn primary_key(&self) -> Option<String> {
        match &self.attestation {
            EnrollmentAttestation::SymmetricKey { primary, .. } => Some(b64(primary)),
            _ => None,
        }
    }

    /// The secondary symmetric key, base64, if any.
    #[must_use]
    pub fn secondary_key(&self) -> Option<String> {
        match &self.attestation {
            EnrollmentAttestation::SymmetricKey {
                secondary: Some(k), ..
            } => Some(b64(k)),
            _ => None,
        }
    }

    /// The key a device registers with, base64: the primary key of an
    /// individual enrollment, or for a group the primary group key
    /// derived for `registration_id`. `None` for X.509.
    #[must_use]
    pub fn device_key(&self, registration_id: &str) -> Option<String> {
        match (&self.attestation, self.kind) {
            (EnrollmentAttestation::SymmetricKey { primary, .. }, EnrollmentKind::Individual) => {
                Some(b64(primary))
            }
            (EnrollmentAttestation::SymmetricKey { primary, .. }, EnrollmentKind::Group) => {
                Some(b64(&primary.derive_for_registration(registration_id)))
            }
            _ => None,
        }
    }

    /// The hub authentication of a device it admits as `registration_id`
    /// (presenting a client certificate with `thumbprint`, if any).
    fn device_authentication(
        &self,
        registration_id: &str,
        thumbprint: Option<&str>,
    ) -> Option<Authentication> {
        Some(match &self.attestation {
            EnrollmentAttestation::SymmetricKey { primary, secondary } => match self.kind {
                EnrollmentKind::Individual => Authentication::Sas {
                    primary: primary.clone(),
                    secondary: secondary.clone(),
                },
                EnrollmentKind::Group => Authentication::Sas {
                    primary: primary.derive_for_registration(registration_id),
                    secondary: secondary
                        .as_ref()
                        .map(|k| k.derive_for_registration(registration_id)),
                },
            },
            EnrollmentAttestation::X509 {
                primary_thumbprint,
                secondary_thumbprint,
            } => Authentication::X509 {
                primary_thumbprint: primary_thumbprint.clone(),
                secondary_thumbprint: secondary_thumbprint.clone(),
            },
            EnrollmentAttestation::X509Ca { .. } => Authentication::X509 {
                primary_thumbprint: thumbprint?.to_owned(),
                secondary_thumbprint: None,
            },
        })
    }

    fn storage_key(&self) -> String {
        storage_key(self.kind, &self.id)
    }

    /// The stored form (the ID scope and hub come from the configuration).
    fn encode(&self) -> Vec<u8> {
        let attestation = match &self.attestation {
            EnrollmentAttestation::SymmetricKey { primary, secondary } => json!({
                "type": "symmetricKey", "primaryKey": b64(primary),
                "secondaryKey": secondary.as_ref().map(b64),
            }),
            EnrollmentAttestation::X509 {
                primary_thumbprint,
                secondary_thumbprint,
            } => json!({
                "type": "x509", "primaryThumbprint": primary_thumbprint,
                "secondaryThumbprint": secondary_thumbprint,
            }),
            EnrollmentAttestation::X509Ca { ca_pem } => json!({
                "type": "x509CA", "caPem": ca_pem,
            }),
        };
        let doc = json!({
            "kind": self.kind.prefix(), "id": self.id, "attestation": attestation,
            "deviceId": self.device_id, "enabled": self.enabled, "initialTwin": self.initial_twin,
        });
        serde_json::to_vec(&doc).unwrap_or_default()
    }

    fn decode(bytes: &[u8], id_scope: &str, hub: &str) -> Option<EnrollmentInfo> {
        let doc: Value = serde_json::from_slice(bytes).ok()?;
        let kind = match doc["kind"].as_str()? {
            "individual" => EnrollmentKind::Individual,
            "group" => EnrollmentKind::Group,
            _ => return None,
        };
        let a = &doc["attestation"];
        let key = |v: &Value| {
            v.as_str()
                .and_then(|s| SharedAccessKey::from_base64(s).ok())
        };
        let attestation = match a["type"].as_str()? {
            "symmetricKey" => EnrollmentAttestation::SymmetricKey {
                primary: key(&a["primaryKey"])?,
                secondary: key(&a["secondaryKey"]),
            },
            "x509" => EnrollmentAttestation::X509 {
                primary_thumbprint: a["primaryThumbprint"].as_str()?.to_owned(),
                secondary_thumbprint: a["secondaryThumbprint"].as_str().map(str::to_owned),
            },
            "x509CA" => EnrollmentAttestation::X509Ca {
                ca_pem: a["caPem"].as_str()?.to_owned(),
            },
            _ => return None,
        };
        Some(EnrollmentInfo {
            kind,
            id: doc["id"].as_str()?.to_owned(),
            attestation,
            device_id: doc["deviceId"].as_str().map(str::to_owned),
            enabled: doc["enabled"].as_bool().unwrap_or(true),
            initial_twin: Some(doc["initialTwin"].clone()).filter(|t| !t.is_null()),
            id_scope: id_scope.to_owned(),
            iot_hub_host_name: hub.to_owned(),
        })
    }
}

fn storage_key(kind: EnrollmentKind, id: &str) -> String {
    format!("{}/{id}", kind.prefix())
}

/// A device the DPS endpoint assigned (the latest registration of each
/// registration id; kept in storage with a data directory).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DpsRegistration {
    /// The registration id.
    pub registration_id: String,
    /// The device id created at the hub.
    pub device_id: String,
    /// The hub it was assigned to.
    pub assigned_hub: String,
    /// The enrollment group that admitted it, if it was a group.
    pub enrollment_group_id: Option<String>,
    /// The operation id of the registration.
    pub operation_id: String,
    /// `initialAssignment`, `deviceDataMigrated`, …
    pub substatus: String,
    /// The payload the device sent with its registration request.
    pub request_payload: Option<Value>,
    /// When it was assigned.
    pub assigned_at: SystemTime,
}

impl DpsRegistration {
    /// The stored form.
    fn encode(&self) -> Vec<u8> {
        let at_ms = self
            .assigned_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let doc = json!({
            "registrationId": self.registration_id, "deviceId": self.device_id,
            "assignedHub": self.assigned_hub, "enrollmentGroupId": self.enrollment_group_id,
            "operationId": self.operation_id, "substatus": self.substatus,
            "payload": self.request_payload, "assignedAtUnixMs": at_ms,
        });
        serde_json::to_vec(&doc).unwrap_or_default()
    }

    fn decode(bytes: &[u8]) -> Option<DpsRegistration> {
        let doc: Value = serde_json::from_slice(bytes).ok()?;
        let text = |k: &str| doc[k].as_str().map(str::to_owned);
        Some(DpsRegistration {
            registration_id: text("registrationId")?,
            device_id: text("deviceId")?,
            assigned_hub: text("assignedHub")?,
            enrollment_group_id: text("enrollmentGroupId"),
            operation_id: text("operationId")?,
            substatus: text("substatus")?,
            request_payload: Some(doc["payload"].clone()).filter(|p| !p.is_null()),
            assigned_at: UNIX_EPOCH
                + std::time::Duration::from_millis(doc["assignedAtUnixMs"].as_u64()?),
        })
    }
}

/// The output of a DPS connection held back until storage has committed
/// the assignment it announces.
#[derive(Debug)]
pub(crate) struct Held {
    tx: mpsc::UnboundedSender<Out>,
    out: Vec<Out>,
}

impl Held {
    /// Hands the output to the connection.
    pub(crate) fn send(self) {
        for o in self.out {
            let _ = self.tx.send(o);
        }
    }
}

/// A connection of the DPS listeners.
#[derive(Debug)]
struct DpsLink {
    tx: mpsc::UnboundedSender<Out>,
    close_sent: bool,
}

/// The DPS side of the state behind the core's lock.
#[derive(Debug)]
pub(crate) struct DpsState {
    pub(crate) svc: DpsService,
    /// The emulator's hub, where devices are assigned.
    hub_name: String,
    conns: HashMap<ConnId, DpsLink>,
    enrollments: BTreeMap<(EnrollmentKind, String), EnrollmentInfo>,
    registrations: BTreeMap<String, DpsRegistration>,
    /// The CA certificate of each X.509 CA group.
    ca_groups: BTreeMap<String, CertificateDer<'static>>,
}

/// Checks an enrollment group id: 1 to 128 ASCII letters, digits and
/// `- . _ :` (the registration id's characters).
fn check_group_id(id: &str) -> Result<(), EmulatorError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':'));
    if ok {
        Ok(())
    } else {
        Err(EmulatorError::BadRequest(format!(
            "enrollment group id {id:?}: 1 to 128 ASCII letters, digits and - . _ :"
        )))
    }
}

impl DpsState {
    /// A DPS with this ID scope assigning to `hub`, no enrollments.
    pub(crate) fn new(
        id_scope: &str,
        hub: HostName,
        retry_after: u32,
    ) -> Result<DpsState, EmulatorError> {
        iothub_proto::auth::IdScope::new(id_scope)
            .map_err(|e| EmulatorError::Config(format!("ID scope: {e}")))?;
        let hub_name = hub.as_str().to_owned();
        let mut svc = DpsService::new(id_scope, hub);
        svc.set_retry_after(Some(retry_after));
        Ok(DpsState {
            svc,
            hub_name,
            conns: HashMap::new(),
            enrollments: BTreeMap::new(),
            registrations: BTreeMap::new(),
            ca_groups: BTreeMap::new(),
        })
    }

    /// Puts back the stored enrollments (at start).
    pub(crate) fn restore(&mut self, stored: &[(String, Vec<u8>)]) {
        let (scope, hub) = (self.id_scope().to_owned(), self.hub_name.clone());
        for (k, v) in stored {
            match EnrollmentInfo::decode(v, &scope, &hub) {
                Some(info) => {
                    if let Err(e) = self.install(info) {
                        tracing::warn!(enrollment = %k, "stored enrollment skipped: {e}");
                    }
                }
                None => tracing::warn!(enrollment = %k, "unreadable stored enrollment skipped"),
            }
        }
    }

    pub(crate) fn id_scope(&self) -> &str {
        self.svc.id_scope()
    }

    /// Hands the enrollment to the engine and keeps it.
    fn install(&mut self, info: EnrollmentInfo) -> Result<(), EmulatorError> {
        let mut options = EnrollmentOptions::default().with_enabled(info.enabled);
        match info.kind {
            EnrollmentKind::Individual => {
                let rid = RegistrationId::new(info.id.as_str())
                    .map_err(|e| EmulatorError::BadRequest(e.to_string()))?;
                if let Some(d) = &info.device_id {
                    let d = DeviceId::new(d.as_str())
                        .map_err(|e| EmulatorError::BadRequest(format!("deviceId: {e}")))?;
                    options = options.with_device_id(d);
                }
                match &info.attestation {
                    EnrollmentAttestation::SymmetricKey { primary, secondary } => {
                        self.svc
                            .add_individual_enrollment(rid, primary.clone(), options);
                        self.svc
                            .set_individual_secondary_key(&info.id, secondary.clone());
                    }
                    EnrollmentAttestation::X509Ca { .. } => {
                        return Err(EmulatorError::BadRequest(
                            "a CA certificate attests an enrollment group, not an individual enrollment".into(),
                        ));
                    }
                    EnrollmentAttestation::X509 {
                        primary_thumbprint,
                        secondary_thumbprint,
                    } => {
                        let thumbprints = std::iter::once(primary_thumbprint)
                            .chain(secondary_thumbprint)
                            .cloned()
                            .collect();
                        self.svc
                            .add_x509_thumbprint_enrollment(rid, thumbprints, options);
                    }
                }
            }
            EnrollmentKind::Group => {
                check_group_id(&info.id)?;
                match &info.attestation {
                    EnrollmentAttestation::SymmetricKey { primary, secondary } => {
                        self.svc
                            .add_group_enrollment(&info.id, primary.clone(), options);
                        self.svc
                            .set_group_secondary_key(&info.id, secondary.clone());
                        self.ca_groups.remove(&info.id);
                    }
                    EnrollmentAttestation::X509Ca { ca_pem } => {
                        let ca = x509ca::ca_certificate(ca_pem)?;
                        self.svc.add_x509_ca_group_enrollment(&info.id, options);
                        self.ca_groups.insert(info.id.clone(), ca);
                    }
                    EnrollmentAttestation::X509 { .. } => {
                        return Err(EmulatorError::BadRequest(
                            "an enrollment group takes symmetric keys or a CA certificate, not client thumbprints".into(),
                        ));
                    }
                }
            }
        }
        self.enrollments.insert((info.kind, info.id.clone()), info);
        Ok(())
    }

    // -----------------------------------------------------------------
    // Connections

    /// A new connection; its client certificate chain (empty without
    /// one) is verified against the CA of every X.509 CA group.
    pub(crate) fn open(
        &mut self,
        now: iothub_proto::time::Instant,
        thumbprint: Option<String>,
        chain: &[CertificateDer<'static>],
        tx: mpsc::UnboundedSender<Out>,
    ) -> ConnId {
        let groups: Vec<String> = self
            .ca_groups
            .iter()
            .filter(|(_, ca)| x509ca::verifies(chain, ca))
            .map(|(g, _)| g.clone())
            .collect();
        let verified = match (groups.is_empty(), chain.first()) {
            (false, Some(leaf)) => {
                x509ca::common_name(leaf).map(|cn| VerifiedCertificate::new(&cn, groups))
            }
            _ => None,
        };
        let conn = self.svc.accept(now, thumbprint, verified);
        self.conns.insert(
            conn,
            DpsLink {
                tx,
                close_sent: false,
            },
        );
        conn
    }

    pub(crate) fn closed(&mut self, conn: ConnId) {
        self.svc.client_closed(conn);
        self.conns.remove(&conn);
        self.svc.remove_connection(conn);
    }

    pub(crate) fn close_all(&self) {
        for link in self.conns.values() {
            let _ = link.tx.send(Out::Close);
        }
    }

    /// Turns assignments into hub devices (their changes are then
    /// journaled by the hub) and registration records (stored), then
    /// delivers the engine's output: a device told `assigned` is in the
    /// hub's registry before the answer leaves. With storage, the output
    /// of a connection that was just assigned is returned instead of
    /// sent: the caller sends it once the device and its registration are
    /// committed ([`Held`]).
    pub(crate) fn flush(&mut self, hub: &mut Hub, store: Option<&Store>) -> Vec<Held> {
        let mut hold = Vec::new();
        for a in self.svc.take_assignments() {
            self.assign(hub, &a, store);
            if store.is_some() {
                hold.push(a.conn);
            }
        }
        let mut held = Vec::new();
        for (&conn, link) in &mut self.conns {
            let mut out = Vec::new();
            while let Some(data) = self.svc.poll_transmit(conn) {
                out.push(Out::Data(data));
            }
            if !link.close_sent && self.svc.is_closed(conn) {
                link.close_sent = true;
                out.push(Out::Close);
            }
            if out.is_empty() {
                continue;
            }
            if hold.contains(&conn) {
                held.push(Held {
                    tx: link.tx.clone(),
                    out,
                });
            } else {
                for o in out {
                    let _ = link.tx.send(o);
                }
            }
        }
        held
    }

    /// Puts back the stored registration records (at start).
    pub(crate) fn restore_registrations(&mut self, stored: &[(String, Vec<u8>)]) {
        for (k, v) in stored {
            match DpsRegistration::decode(v) {
                Some(r) => {
                    self.registrations.insert(r.registration_id.clone(), r);
                }
                None => tracing::warn!(registration = %k, "unreadable stored registration skipped"),
            }
        }
    }

    fn assign(&mut self, hub: &mut Hub, a: &Assignment, store: Option<&Store>) {
        let rid = a.registration_id.as_str();
        let enrollment = match &a.group {
            Some(g) => self.enrollments.get(&(EnrollmentKind::Group, g.clone())),
            None => self
                .enrollments
                .get(&(EnrollmentKind::Individual, rid.to_owned())),
        };
        let auth = match (enrollment, &a.key) {
            (Some(e), _) => e.device_authentication(rid, a.thumbprint.as_deref()),
            (None, Some(key)) => Some(Authentication::sas(key.clone())),
            (None, None) => None,
        };
        let Some(auth) = auth else {
            tracing::warn!(
                registration = rid,
                "assignment without an enrollment or a certificate"
            );
            return;
        };
        let initial_twin = enrollment.and_then(|e| e.initial_twin.clone());
        if a.assigned_hub
            .as_str()
            .eq_ignore_ascii_case(hub.host_name())
        {
            let identity = Identity::device(a.device_id.clone());
            let created = hub.set_authentication(&identity, auth);
            if let (true, Some(twin)) = (created, initial_twin) {
                if let Some(tags) = twin.get("tags").filter(|t| t.is_object()) {
                    let _ = hub.update_tags(&identity, tags.clone());
                }
                if let Some(desired) = twin
                    .get("properties")
                    .and_then(|p| p.get("desired"))
                    .filter(|d| d.is_object())
                {
                    let _ = hub.update_desired(&identity, desired.clone());
                }
            }
        }
        tracing::info!(
            registration = rid, device = %a.device_id, hub = %a.assigned_hub,
            group = ?a.group, "DPS assigned a device"
        );
        let registration = DpsRegistration {
            registration_id: rid.to_owned(),
            device_id: a.device_id.as_str().to_owned(),
            assigned_hub: a.assigned_hub.as_str().to_owned(),
            enrollment_group_id: a.group.clone(),
            operation_id: a.operation_id.clone(),
            substatus: a.substatus.as_str().to_owned(),
            request_payload: a.request_payload.clone(),
            assigned_at: SystemTime::now(),
        };
        if let Some(store) = store {
            store.put_registration(rid, registration.encode());
        }
        self.registrations.insert(rid.to_owned(), registration);
    }
}

impl Core {
    /// Creates or replaces an enrollment; keys are generated when the
    /// spec has none and there is no existing enrollment to keep them
    /// from.
    pub(crate) fn put_enrollment(
        &self,
        kind: EnrollmentKind,
        id: &str,
        spec: EnrollmentSpec,
    ) -> Result<EnrollmentInfo, EmulatorError> {
        let existing = self
            .lock()
            .dps
            .enrollments
            .get(&(kind, id.to_owned()))
            .map(|e| e.attestation.clone());
        let attestation = match (spec.attestation, existing) {
            (Some(a), _) => a,
            (None, Some(a)) => a,
            (None, None) => EnrollmentAttestation::SymmetricKey {
                primary: generate_key()?,
                secondary: Some(generate_key()?),
            },
        };
        if kind == EnrollmentKind::Group && spec.device_id.is_some() {
            return Err(EmulatorError::BadRequest(
                "an enrollment group has no deviceId: each device gets its registration id".into(),
            ));
        }
        let info = {
            let mut st = self.lock();
            let info = EnrollmentInfo {
                kind,
                id: id.to_owned(),
                attestation,
                device_id: spec.device_id,
                enabled: spec.enabled,
                initial_twin: spec.initial_twin,
                id_scope: st.dps.id_scope().to_owned(),
                iot_hub_host_name: st.hub.host_name().to_owned(),
            };
            st.dps.install(info.clone())?;
            if let Some(store) = &st.store {
                store.put_enrollment(info.storage_key(), info.encode());
            }
            info
        };
        self.flush_store();
        Ok(info)
    }

    /// The enrollment, created with generated keys if there is none.
    pub(crate) fn ensure_enrollment(
        &self,
        kind: EnrollmentKind,
        id: &str,
    ) -> Result<EnrollmentInfo, EmulatorError> {
        match self.get_enrollment(kind, id) {
            Ok(e) => Ok(e),
            Err(_) => self.put_enrollment(kind, id, EnrollmentSpec::default()),
        }
    }

    pub(crate) fn get_enrollment(
        &self,
        kind: EnrollmentKind,
        id: &str,
    ) -> Result<EnrollmentInfo, EmulatorError> {
        self.lock()
            .dps
            .enrollments
            .get(&(kind, id.to_owned()))
            .cloned()
            .ok_or_else(|| EmulatorError::NotFound(format!("no {} enrollment {id}", kind.prefix())))
    }

    pub(crate) fn list_enrollments(&self, kind: EnrollmentKind) -> Vec<EnrollmentInfo> {
        self.lock()
            .dps
            .enrollments
            .values()
            .filter(|e| e.kind == kind)
            .cloned()
            .collect()
    }

    pub(crate) fn delete_enrollment(
        &self,
        kind: EnrollmentKind,
        id: &str,
    ) -> Result<(), EmulatorError> {
        {
            let mut st = self.lock();
            if st.dps.enrollments.remove(&(kind, id.to_owned())).is_none() {
                return Err(EmulatorError::NotFound(format!(
                    "no {} enrollment {id}",
                    kind.prefix()
                )));
            }
            match kind {
                EnrollmentKind::Individual => st.dps.svc.remove_individual_enrollment(id),
                EnrollmentKind::Group => {
                    st.dps.ca_groups.remove(id);
                    st.dps.svc.remove_group_enrollment(id)
                }
            };
            if let Some(store) = &st.store {
                store.delete_enrollment(storage_key(kind, id));
            }
        }
        self.flush_store();
        Ok(())
    }

    /// Fault: the next `n` DPS requests are answered 429 with
    /// `retry_after`.
    pub(crate) fn dps_throttle_next(&self, n: u32, retry_after: Option<u32>) {
        self.step(|st, _, _| st.dps.svc.throttle_next(n, retry_after));
    }

    /// Fault: the next `n` DPS requests are answered `status` (400–599).
    pub(crate) fn dps_fail_next_requests(&self, n: u32, status: u16) -> Result<(), EmulatorError> {
        if !(400..=599).contains(&status) {
            return Err(EmulatorError::BadRequest(format!(
                "status {status}: an injected failure is 400 to 599"
            )));
        }
        self.step(|st, _, _| st.dps.svc.fail_next_requests(n, status));
        Ok(())
    }

    /// Fault: the next `n` DPS CONNECTs are refused with `code`
    /// (`Accepted` turns it off).
    pub(crate) fn dps_refuse_connects(&self, n: u32, code: ConnectReturnCode) {
        self.step(|st, _, _| st.dps.svc.refuse_connects(n, code));
    }

    /// Fault: registrations started from now on answer `assigning` for
    /// `polls` more polls.
    pub(crate) fn dps_delay_assignments(&self, polls: u32) {
        self.step(|st, _, _| st.dps.svc.delay_assignments(polls));
    }

    /// Fault: while `silent`, DPS requests are acknowledged, not answered.
    pub(crate) fn dps_silence(&self, silent: bool) {
        self.step(|st, _, _| st.dps.svc.silence_responses(silent));
    }

    /// Fault: closes the open DPS connections (of one registration id, or
    /// all) without a word; how many.
    pub(crate) fn dps_drop_connections(&self, registration_id: Option<&str>) -> usize {
        self.step(|st, _, _| {
            let doomed: Vec<ConnId> = st
                .dps
                .conns
                .keys()
                .copied()
                .filter(|&c| !st.dps.svc.is_closed(c))
                .filter(|&c| {
                    registration_id.is_none_or(|r| {
                        st.dps
                            .svc
                            .connection_registration(c)
                            .is_some_and(|x| x.as_str() == r)
                    })
                })
                .collect();
            for &c in &doomed {
                st.dps.svc.drop_connection(c);
            }
            doomed.len()
        })
    }

    pub(crate) fn dps_registration(&self, registration_id: &str) -> Option<DpsRegistration> {
        self.lock().dps.registrations.get(registration_id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(kind: EnrollmentKind, attestation: EnrollmentAttestation) -> EnrollmentInfo {
        EnrollmentInfo {
            kind,
            id: "reg-1".into(),
            attestation,
            device_id: Some("dev-1".into()),
            enabled: false,
            initial_twin: Some(json!({"tags": {"a": 1}})),
            id_scope: "0ne00000001".into(),
            iot_hub_host_name: "localhost".into(),
        }
    }

    #[test]
    fn enrollments_round_trip_through_json() {
        let key = |b| SharedAccessKey::from_bytes([b; 32]).unwrap();
        for e in [
            info(
                EnrollmentKind::Individual,
                EnrollmentAttestation::SymmetricKey {
                    primary: key(1),
                    secondary: Some(key(2)),
                },
            ),
            info(
                EnrollmentKind::Group,
                EnrollmentAttestation::SymmetricKey {
                    primary: key(3),
                    secondary: None,
                },
            ),
            info(
                EnrollmentKind::Individual,
                EnrollmentAttestation::X509 {
                    primary_thumbprint: "ab".into(),
                    secondary_thumbprint: None,
                },
            ),
            info(
                EnrollmentKind::Group,
                EnrollmentAttestation::X509Ca {
                    ca_pem: "-----BEGIN CERTIFICATE-----\n".into(),
                },
            ),
        ] {
            let back = EnrollmentInfo::decode(&e.encode(), "0ne00000001", "localhost");
            assert_eq!(back.as_ref(), Some(&e));
        }
        assert!(EnrollmentInfo::decode(b"{}", "s", "h").is_none());
        assert!(EnrollmentInfo::decode(b"not json", "s", "h").is_none());
    }

    #[test]
    fn device_keys_and_hub_authentication() {
        let primary = SharedAccessKey::from_bytes([7; 32]).unwrap();
        let secondary = SharedAccessKey::from_bytes([8; 32]).unwrap();
        let attestation = EnrollmentAttestation::SymmetricKey {
            primary: primary.clone(),
            secondary: Some(secondary.clone()),
        };
        let group = info(EnrollmentKind::Group, attestation.clone());
        assert_eq!(
            group.device_key("r-9"),
            Some(b64(&primary.derive_for_registration("r-9")))
        );
        assert_eq!(
            group.device_authentication("r-9", None),
            Some(Authentication::Sas {
                primary: primary.derive_for_registration("r-9"),
                secondary: Some(secondary.derive_for_registration("r-9")),
            })
        );
        let individual = info(EnrollmentKind::Individual, attestation);
        assert_eq!(individual.device_key("anything"), Some(b64(&primary)));
        assert!(format!("{:?}", individual.attestation).contains("redacted"));
    }
}
