//! The registry: identities, their authentication, and their durable
//! state (the change journal, snapshots, restore).

use super::*;

/// Everything the hub keeps about one identity.
#[derive(Debug)]
pub(crate) struct Record {
    pub(crate) identity: Identity,
    pub(crate) auth: Option<Authentication>,
    /// The live connection, if any.
    pub(crate) conn: Option<ConnId>,
    /// Whether a CleanSession 0 session is kept (for `session_present`).
    pub(crate) session_kept: bool,
    pub(crate) subscriptions: Vec<(String, QoS)>,
    pub(crate) queue: VecDeque<Queued>,
    pub(crate) twin: Twin,
    /// Injected failures: how many twin operations still fail, and with
    /// which status.
    pub(crate) twin_failures: (u32, u16),
    pub(crate) malformed_get_next: bool,
    /// Injected refusal: CONNECTs before this monotonic ms get this code.
    pub(crate) refuse_until: Option<(u64, ConnectReturnCode)>,
    /// Injected latency of twin answers and method results, in ms.
    pub(crate) answer_delay_ms: u64,
    /// The `model-id` (IoT Plug and Play) of the last accepted CONNECT.
    pub(crate) model_id: Option<String>,
}

impl Record {
    pub(crate) fn new(identity: Identity, auth: Option<Authentication>) -> Record {
        Record {
            identity,
            auth,
            conn: None,
            session_kept: false,
            subscriptions: Vec::new(),
            queue: VecDeque::new(),
            twin: Twin::new(),
            twin_failures: (0, 0),
            malformed_get_next: false,
            refuse_until: None,
            answer_delay_ms: 0,
            model_id: None,
        }
    }

    pub(crate) fn state(&self) -> IdentityState {
        IdentityState {
            identity: self.identity.clone(),
            authentication: self.auth.clone(),
            twin: self.twin.clone(),
            session: self.session_kept.then(|| self.subscriptions.clone()),
            queue: self
                .queue
                .iter()
                .map(|q| QueuedMessage::new(q.topic.clone(), q.payload.clone(), q.sent_before))
                .collect(),
        }
    }

    pub(crate) fn granted(&self, filter: &str) -> Option<QoS> {
        self.subscriptions
            .iter()
            .find(|(f, _)| f == filter)
            .map(|&(_, q)| q)
    }

    /// The filter this identity's queued messages are delivered on.
    pub(crate) fn delivery_filter(&self) -> String {
        match self.identity.module_id() {
            None => c2d_filter(self.identity.device_id()),
            Some(m) => module_inputs_filter(self.identity.device_id(), m),
        }
    }

    /// Whether the identity may subscribe to `filter`.
    pub(crate) fn may_subscribe(&self, filter: &str, extra: &[String]) -> bool {
        extra.iter().any(|f| f == filter)
            || filter == TWIN_RESPONSE_FILTER
            || filter == DESIRED_PATCH_FILTER
            || filter == METHOD_REQUEST_FILTER
            || filter == self.delivery_filter()
    }
}

impl Hub {
    /// Registers a device identity with its primary key (replacing the key
    /// if it exists) and returns the identity.
    pub fn add_device(&mut self, device_id: DeviceId, primary_key: SharedAccessKey) -> Identity {
        self.add_identity(Identity::device(device_id), primary_key)
    }

    /// Registers a module identity with its key (replacing the key if it
    /// exists) and returns the identity.
    pub fn add_module(
        &mut self,
        device_id: DeviceId,
        module_id: ModuleId,
        key: SharedAccessKey,
    ) -> Identity {
        self.add_identity(Identity::module(device_id, module_id), key)
    }

    pub(crate) fn add_identity(&mut self, identity: Identity, key: SharedAccessKey) -> Identity {
        self.set_authentication(&identity, Authentication::sas(key));
        identity
    }

    /// Registers an identity with `authentication`, or replaces the
    /// authentication of an existing one (its twin, session and messages
    /// stay). Returns whether the identity is new. A module needs no
    /// registered device here; the service API checks that.
    pub fn set_authentication(
        &mut self,
        identity: &Identity,
        authentication: Authentication,
    ) -> bool {
        let k = key(identity);
        let created = match self.identities.get_mut(&k) {
            Some(r) => {
                r.auth = Some(authentication);
                false
            }
            None => {
                self.identities.insert(
                    k.clone(),
                    Record::new(identity.clone(), Some(authentication)),
                );
                true
            }
        };
        self.changes.insert(k, identity.clone());
        created
    }

    /// Deletes an identity, and for a device every module of it: their live
    /// connections are closed ([`CloseReason::IdentityDeleted`], no will),
    /// their twins, sessions and pending messages are gone, and the change
    /// journal reports them [`Change::Removed`]. Returns whether the
    /// identity existed.
    pub fn remove_identity(&mut self, identity: &Identity) -> bool {
        let doomed: Vec<String> = self
            .identities
            .iter()
            .filter(|(_, r)| {
                r.identity == *identity
                    || (identity.module_id().is_none()
                        && r.identity.device_id() == identity.device_id())
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in &doomed {
            if let Some(conn) = self.identities.get(k).and_then(|r| r.conn) {
                self.close(conn, CloseReason::IdentityDeleted);
            }
            if let Some(r) = self.identities.remove(k) {
                self.changes.insert(k.clone(), r.identity);
            }
        }
        !doomed.is_empty()
    }

    /// The registered identities, devices and modules, ordered by client id
    /// (a device comes right before its modules).
    pub fn identities(&self) -> impl Iterator<Item = &Identity> + '_ {
        self.identities.values().map(|r| &r.identity)
    }

    /// Whether the identity is registered.
    #[must_use]
    pub fn contains(&self, identity: &Identity) -> bool {
        self.identities.contains_key(&key(identity))
    }

    /// How the identity authenticates.
    #[must_use]
    pub fn authentication(&self, identity: &Identity) -> Option<&Authentication> {
        self.identities.get(&key(identity))?.auth.as_ref()
    }

    /// The next identity whose durable state ([`IdentityState`]) changed
    /// since it was last returned, or `None`. An adapter that stores the
    /// hub drains this after every call that may change the hub (input,
    /// timeout, service call) and writes [`identity_state`](Self::identity_state)
    /// (or deletes, for [`Change::Removed`]); several changes of one
    /// identity are reported once.
    #[must_use = "a change that is not stored is lost on restart"]
    pub fn poll_change(&mut self) -> Option<Change> {
        let (k, identity) = self.changes.pop_first()?;
        Some(if self.identities.contains_key(&k) {
            Change::Updated(identity)
        } else {
            Change::Removed(identity)
        })
    }

    /// Everything durable about an identity, or `None` if it is unknown.
    #[must_use]
    pub fn identity_state(&self, identity: &Identity) -> Option<IdentityState> {
        self.identities.get(&key(identity)).map(Record::state)
    }

    /// Puts an identity back as stored (at start, before any connection):
    /// registration, twin, kept session and pending messages (sent again,
    /// with DUP when they were sent before, once the identity connects
    /// with CleanSession 0). Replaces an existing identity's durable state;
    /// its live connection, if any, is closed first. Not journaled.
    pub fn restore_identity(&mut self, state: IdentityState) {
        let k = key(&state.identity);
        if let Some(conn) = self.identities.get(&k).and_then(|r| r.conn) {
            self.close(conn, CloseReason::Dropped);
        }
        let mut r = Record::new(state.identity, state.authentication);
        r.twin = state.twin;
        r.session_kept = state.session.is_some();
        r.subscriptions = state.session.unwrap_or_default();
        r.queue = state
            .queue
            .into_iter()
            .take(MAX_PENDING_C2D)
            .map(|q| Queued {
                topic: q.topic,
                payload: q.payload,
                pid: None,
                sent_before: q.sent_before,
            })
            .collect();
        self.identities.insert(k, r);
    }

    /// Journals an identity key (no effect for an unknown key).
    pub(crate) fn changed(&mut self, k: &str) {
        if let Some(r) = self.identities.get(k) {
            self.changes.insert(String::from(k), r.identity.clone());
        }
    }

    /// The identity's record; created on demand when authentication is
    /// skipped.
    pub(crate) fn record_mut(&mut self, identity: &Identity) -> Result<&mut Record, HubError> {
        let k = key(identity);
        if self.authenticate {
            self.identities.get_mut(&k).ok_or(HubError::UnknownIdentity)
        } else {
            Ok(self
                .identities
                .entry(k)
                .or_insert_with(|| Record::new(identity.clone(), None)))
        }
    }
}
