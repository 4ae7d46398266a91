//! [`EmulatorHandle`]: a running emulator — the registry, twins, methods,
//! C2D, DPS enrollments, fault injection — and [`DeviceInfo`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use iothub_hub::{Authentication, Twin};
use iothub_proto::auth::{Identity, SharedAccessKey};
use iothub_proto::mqtt::ConnectReturnCode;
use iothub_proto::properties::MessageProperties;
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::DpsRegistration;
use crate::EmulatorError;
use crate::EnrollmentInfo;
use crate::EnrollmentSpec;
use crate::MethodReply;
use crate::ReceivedMessage;
use crate::core::Core;
use crate::dps::EnrollmentKind;
use crate::service;

/// A registered device or module, as the registry shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeviceInfo {
    /// Who.
    pub identity: Identity,
    /// The hub host name for its connection string.
    pub host_name: String,
    /// How it authenticates (its `Debug` hides the keys).
    pub authentication: Authentication,
    /// Whether it has a live connection.
    pub connected: bool,
    /// How many C2D (or module input) messages wait for its PUBACK.
    pub pending_c2d: usize,
}

impl DeviceInfo {
    /// The primary symmetric key, base64 (SAS identities only).
    #[must_use]
    pub fn primary_key(&self) -> Option<String> {
        match &self.authentication {
            Authentication::Sas { primary, .. } => Some(STANDARD.encode(primary.expose_secret())),
            _ => None,
        }
    }

    /// The secondary symmetric key, base64, if any.
    #[must_use]
    pub fn secondary_key(&self) -> Option<String> {
        match &self.authentication {
            Authentication::Sas {
                secondary: Some(k), ..
            } => Some(STANDARD.encode(k.expose_secret())),
            _ => None,
        }
    }

    /// A ready connection string:
    /// `HostName=…;DeviceId=…[;ModuleId=…];SharedAccessKey=…` (primary
    /// key), or `…;x509=true` for an X.509 identity.
    #[must_use]
    pub fn connection_string(&self) -> String {
        let mut s = format!(
            "HostName={};DeviceId={}",
            self.host_name,
            self.identity.device_id()
        );
        if let Some(m) = self.identity.module_id() {
            s.push_str(";ModuleId=");
            s.push_str(m.as_str());
        }
        match self.primary_key() {
            Some(k) => {
                s.push_str(";SharedAccessKey=");
                s.push_str(&k);
            }
            None => s.push_str(";x509=true"),
        }
        s
    }
}

/// A running emulator. Dropping it stops the listeners without waiting;
/// [`shutdown`](Self::shutdown) also closes every connection and commits
/// storage.
#[derive(Debug)]
pub struct EmulatorHandle {
    pub(crate) core: Arc<Core>,
    pub(crate) addrs: Addrs,
    pub(crate) ca_pem: Option<String>,
    pub(crate) ca_path: Option<PathBuf>,
    pub(crate) stop: watch::Sender<bool>,
    pub(crate) tasks: Vec<JoinHandle<()>>,
    pub(crate) _temp_dir: Option<tempfile::TempDir>,
}

impl EmulatorHandle {
    /// The MQTT-over-TLS listener.
    #[must_use]
    pub fn mqtt_addr(&self) -> SocketAddr {
        self.addrs.mqtt
    }

    /// The MQTT-over-WebSocket-over-TLS listener (path [`WEBSOCKET_PATH`](crate::WEBSOCKET_PATH)).
    #[must_use]
    pub fn ws_addr(&self) -> SocketAddr {
        self.addrs.ws
    }

    /// The HTTP service API.
    #[must_use]
    pub fn http_addr(&self) -> SocketAddr {
        self.addrs.http
    }

    /// The plain MQTT listener, if one was asked for.
    #[must_use]
    pub fn plain_addr(&self) -> Option<SocketAddr> {
        self.addrs.plain
    }

    /// The hub host name devices use.
    #[must_use]
    pub fn host_name(&self) -> String {
        self.core.lock().hub.host_name().to_owned()
    }

    /// The DPS MQTT-over-TLS listener.
    #[must_use]
    pub fn dps_addr(&self) -> SocketAddr {
        self.addrs.dps
    }

    /// The DPS MQTT-over-WebSocket-over-TLS listener (path
    /// [`WEBSOCKET_PATH`](crate::WEBSOCKET_PATH)).
    #[must_use]
    pub fn dps_ws_addr(&self) -> SocketAddr {
        self.addrs.dps_ws
    }

    /// The plain DPS listener, if one was asked for.
    #[must_use]
    pub fn plain_dps_addr(&self) -> Option<SocketAddr> {
        self.addrs.plain_dps
    }

    /// The DPS ID scope devices provision with.
    #[must_use]
    pub fn id_scope(&self) -> String {
        self.core.lock().dps.id_scope().to_owned()
    }

    /// Creates an individual DPS enrollment with generated primary and
    /// secondary symmetric keys, or returns the existing one unchanged. A
    /// device registers as `registration_id` with
    /// [`EnrollmentInfo::device_key`].
    pub fn create_enrollment(
        &self,
        registration_id: &str,
    ) -> Result<EnrollmentInfo, EmulatorError> {
        self.core
            .ensure_enrollment(EnrollmentKind::Individual, registration_id)
    }

    /// Creates an enrollment group with generated primary and secondary
    /// group keys, or returns the existing one unchanged. A device
    /// registers with the group key derived for its registration id
    /// ([`EnrollmentInfo::device_key`]).
    pub fn create_enrollment_group(&self, group_id: &str) -> Result<EnrollmentInfo, EmulatorError> {
        self.core.ensure_enrollment(EnrollmentKind::Group, group_id)
    }

    /// Creates or replaces the individual enrollment of `registration_id`.
    pub fn put_enrollment(
        &self,
        registration_id: &str,
        spec: EnrollmentSpec,
    ) -> Result<EnrollmentInfo, EmulatorError> {
        self.core
            .put_enrollment(EnrollmentKind::Individual, registration_id, spec)
    }

    /// Creates or replaces the enrollment group `group_id`: symmetric
    /// keys, or an X.509 CA certificate
    /// ([`EnrollmentSpec::with_x509_ca_pem`]; a device whose certificate
    /// chains to it registers as the certificate's common name).
    pub fn put_enrollment_group(
        &self,
        group_id: &str,
        spec: EnrollmentSpec,
    ) -> Result<EnrollmentInfo, EmulatorError> {
        self.core
            .put_enrollment(EnrollmentKind::Group, group_id, spec)
    }

    /// An individual enrollment.
    pub fn enrollment(&self, registration_id: &str) -> Result<EnrollmentInfo, EmulatorError> {
        self.core
            .get_enrollment(EnrollmentKind::Individual, registration_id)
    }

    /// An enrollment group.
    pub fn enrollment_group(&self, group_id: &str) -> Result<EnrollmentInfo, EmulatorError> {
        self.core.get_enrollment(EnrollmentKind::Group, group_id)
    }

    /// The individual enrollments.
    #[must_use]
    pub fn enrollments(&self) -> Vec<EnrollmentInfo> {
        self.core.list_enrollments(EnrollmentKind::Individual)
    }

    /// The enrollment groups.
    #[must_use]
    pub fn enrollment_groups(&self) -> Vec<EnrollmentInfo> {
        self.core.list_enrollments(EnrollmentKind::Group)
    }

    /// Deletes an individual enrollment (devices it created stay in the
    /// registry).
    pub fn delete_enrollment(&self, registration_id: &str) -> Result<(), EmulatorError> {
        self.core
            .delete_enrollment(EnrollmentKind::Individual, registration_id)
    }

    /// Deletes an enrollment group (devices it created stay).
    pub fn delete_enrollment_group(&self, group_id: &str) -> Result<(), EmulatorError> {
        self.core.delete_enrollment(EnrollmentKind::Group, group_id)
    }

    /// The latest DPS assignment of `registration_id`, if it ever
    /// provisioned (kept across restarts with a data directory).
    #[must_use]
    pub fn dps_registration(&self, registration_id: &str) -> Option<DpsRegistration> {
        self.core.dps_registration(registration_id)
    }

    /// DPS fault: the next `n` register or poll requests are answered 429
    /// (with `retry-after` when given) and not processed.
    pub fn dps_throttle_next(&self, n: u32, retry_after: Option<u32>) {
        self.core.dps_throttle_next(n, retry_after);
    }

    /// DPS fault: the next `n` register or poll requests are answered
    /// `status` (400–599: 401, 500, 503, …) with an error body and not
    /// processed; [`EmulatorError::BadRequest`] for another status.
    pub fn dps_fail_next_requests(&self, n: u32, status: u16) -> Result<(), EmulatorError> {
        self.core.dps_fail_next_requests(n, status)
    }

    /// DPS fault: the next `n` CONNECTs to the DPS endpoint are refused
    /// with `code` (`ConnectReturnCode::Accepted` or `n == 0` turns it
    /// off).
    pub fn dps_refuse_connects(&self, n: u32, code: ConnectReturnCode) {
        self.core.dps_refuse_connects(n, code);
    }

    /// DPS fault, a slow assignment: registrations started from now on
    /// are answered `assigning` (202 with `retry-after`) for `polls` more
    /// polls before their result (0 turns it off).
    pub fn dps_delay_assignments(&self, polls: u32) {
        self.core.dps_delay_assignments(polls);
    }

    /// DPS fault: while `silent`, requests are acknowledged but never
    /// answered.
    pub fn dps_silence(&self, silent: bool) {
        self.core.dps_silence(silent);
    }

    /// DPS fault: closes the open DPS connections without a word — those
    /// of `registration_id`, or every one with `None`; returns how many.
    pub fn dps_drop_connections(&self, registration_id: Option<&str>) -> usize {
        self.core.dps_drop_connections(registration_id)
    }

    /// The PEM of the generated CA that signed the server certificate
    /// (`None` with user-provided certificates).
    #[must_use]
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// Where that CA PEM is on disk.
    #[must_use]
    pub fn ca_path(&self) -> Option<&Path> {
        self.ca_path.as_deref()
    }

    /// Registers a device with generated primary and secondary keys (an
    /// existing device keeps its keys).
    pub fn create_device(&self, device_id: &str) -> Result<DeviceInfo, EmulatorError> {
        self.core
            .create_identity(&service::parse_target(device_id)?, None)
    }

    /// Registers a module of a registered device, with generated keys.
    pub fn create_module(
        &self,
        device_id: &str,
        module_id: &str,
    ) -> Result<DeviceInfo, EmulatorError> {
        let identity = Identity::parse(device_id, Some(module_id))
            .map_err(|e| EmulatorError::BadRequest(e.to_string()))?;
        self.core.create_identity(&identity, None)
    }

    /// Registers (or re-keys) a device or module (`"dev"` or `"dev/mod"`)
    /// with the given authentication: symmetric keys
    /// ([`Authentication::Sas`]) or X.509 thumbprints
    /// ([`Authentication::X509`], see [`thumbprint`](crate::thumbprint)).
    pub fn create_identity(
        &self,
        target: &str,
        authentication: Authentication,
    ) -> Result<DeviceInfo, EmulatorError> {
        self.core
            .create_identity(&service::parse_target(target)?, Some(authentication))
    }

    /// A registered device or module (`"dev"` or `"dev/mod"`).
    pub fn device(&self, target: &str) -> Result<DeviceInfo, EmulatorError> {
        self.core.get_identity(&service::parse_target(target)?)
    }

    /// Deletes a device (and its modules) or a module; a live connection
    /// is closed.
    pub fn delete_device(&self, target: &str) -> Result<(), EmulatorError> {
        self.core.delete_identity(&service::parse_target(target)?)
    }

    /// The registered devices.
    #[must_use]
    pub fn devices(&self) -> Vec<DeviceInfo> {
        self.core.list(None)
    }

    /// Whether the device or module has a live connection.
    #[must_use]
    pub fn is_connected(&self, target: &str) -> bool {
        service::parse_target(target).is_ok_and(|i| self.core.lock().hub.is_connected(&i))
    }

    /// The topic filters the device's live connection is subscribed to
    /// (empty when it is offline).
    #[must_use]
    pub fn subscriptions(&self, target: &str) -> Vec<String> {
        let Ok(identity) = service::parse_target(target) else {
            return Vec::new();
        };
        let st = self.core.lock();
        st.hub.connection_of(&identity).map_or_else(Vec::new, |c| {
            st.hub
                .subscriptions(c)
                .iter()
                .map(|(f, _)| f.clone())
                .collect()
        })
    }

    /// The twin of a device or module.
    pub fn twin(&self, target: &str) -> Result<Twin, EmulatorError> {
        Ok(self.core.twin(&service::parse_target(target)?)?.0)
    }

    /// The IoT Plug and Play model id (`model-id` in the CONNECT username)
    /// that a device or module announced when it last connected; `None`
    /// when it announced none (or never connected). The service API's twin
    /// shows it as `modelId`.
    pub fn model_id(&self, target: &str) -> Result<Option<String>, EmulatorError> {
        let identity = service::parse_target(target)?;
        self.core.get_identity(&identity)?;
        Ok(self.core.model_id(&identity))
    }

    /// Merges `patch` (a JSON object; `null` deletes) into the desired
    /// properties and returns the new desired `$version`; a connected,
    /// subscribed device gets the patch.
    pub fn update_desired(&self, target: &str, patch: Value) -> Result<u64, EmulatorError> {
        let identity = service::parse_target(target)?;
        Ok(self
            .core
            .patch_twin(&identity, Some(patch), None)?
            .0
            .desired_version)
    }

    /// Merges `patch` into the tags; returns the twin's version.
    pub fn update_tags(&self, target: &str, patch: Value) -> Result<u64, EmulatorError> {
        let identity = service::parse_target(target)?;
        Ok(self
            .core
            .patch_twin(&identity, None, Some(patch))?
            .0
            .version)
    }

    /// Calls a direct method and waits up to `timeout` (5–300 s) for the
    /// answer. [`EmulatorError::NotConnected`] when the device is offline
    /// or not subscribed to methods, [`EmulatorError::Timeout`] when it
    /// does not answer in time.
    pub async fn invoke_method(
        &self,
        target: &str,
        method: &str,
        payload: Value,
        timeout: Duration,
    ) -> Result<MethodReply, EmulatorError> {
        let identity = service::parse_target(target)?;
        self.core
            .invoke_method(&identity, method, &payload, timeout)
            .await
    }

    /// Queues a cloud-to-device message (≤ 64 KB with its properties, ≤ 50
    /// pending); `$.mid` and `$.to` are filled in when absent.
    pub fn send_c2d(
        &self,
        device_id: &str,
        body: impl Into<Bytes>,
        properties: MessageProperties,
    ) -> Result<(), EmulatorError> {
        let identity = service::parse_target(device_id)?;
        if identity.module_id().is_some() {
            return Err(EmulatorError::BadRequest(
                "C2D messages go to devices, not modules".into(),
            ));
        }
        self.core
            .send_c2d(identity.device_id(), properties, body.into())
    }

    /// Queues a message for the input `input` of a module (`"dev/mod"`),
    /// as an IoT Edge route would (≤ 64 KB with its properties, ≤ 50
    /// pending); it is delivered on `devices/{d}/modules/{m}/inputs/{input}/…`
    /// while the module is connected and subscribed, and kept until its
    /// PUBACK. [`EmulatorError::NotFound`] for an unregistered module,
    /// [`EmulatorError::BadRequest`] for a device target or an input name
    /// that is empty or holds `/`.
    pub fn send_module_input(
        &self,
        target: &str,
        input: &str,
        body: impl Into<Bytes>,
        properties: MessageProperties,
    ) -> Result<(), EmulatorError> {
        let identity = service::parse_target(target)?;
        self.core
            .send_module_input(&identity, input, properties, body.into())
    }

    /// Adds or replaces the IoT Edge route `name` (1 to 128 ASCII letters,
    /// digits and `- . _`), kept in storage:
    ///
    /// ```text
    /// FROM /messages/modules/{m}/outputs/{output} INTO BrokeredEndpoint("/modules/{m2}/inputs/{input}")
    /// FROM /messages/modules/{m}/outputs/*        INTO BrokeredEndpoint("/modules/{m2}/inputs/{input}")
    /// FROM /messages/modules/{m}/outputs/{output} INTO $upstream
    /// ```
    ///
    /// A telemetry message that module `m` of any device sends with
    /// `$.on` = an output the route takes goes to the input of module `m2`
    /// of the same device (with `$.cdid` / `$.cmid` naming the sender); a
    /// module output no route takes is stored as telemetry. The rules are
    /// the engine's: [`Hub::set_route`](iothub_hub::Hub::set_route).
    /// [`EmulatorError::BadRequest`] names what is wrong with an invalid
    /// route. Returns the route's canonical text.
    pub fn set_route(&self, name: &str, route: &str) -> Result<String, EmulatorError> {
        Ok(self.core.set_route(name, route)?.to_string())
    }

    /// Removes a route ([`EmulatorError::NotFound`] if there is none).
    pub fn remove_route(&self, name: &str) -> Result<(), EmulatorError> {
        self.core.remove_route(name)
    }

    /// The routes: name and canonical text, ordered by name.
    #[must_use]
    pub fn routes(&self) -> Vec<(String, String)> {
        self.core
            .routes()
            .into_iter()
            .map(|(n, r)| (n, r.to_string()))
            .collect()
    }

    /// Every telemetry message received so far (the last 100,000).
    #[must_use]
    pub fn telemetry(&self) -> Vec<ReceivedMessage> {
        self.core.lock().telemetry.iter().cloned().collect()
    }

    /// Waits until a received telemetry message (one already received
    /// counts) satisfies `pred`, for at most `timeout`.
    pub async fn wait_for_telemetry(
        &self,
        pred: impl Fn(&ReceivedMessage) -> bool,
        timeout: Duration,
    ) -> Option<ReceivedMessage> {
        let mut seen = self.core.telemetry_seen.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            seen.borrow_and_update();
            if let Some(m) = self.core.lock().telemetry.iter().find(|m| pred(m)) {
                return Some(m.clone());
            }
            if tokio::time::timeout_at(deadline, seen.changed())
                .await
                .is_err()
            {
                return None;
            }
        }
    }

    /// Fault: closes the device's connection without a word (its will is
    /// published). Returns whether it was connected.
    pub fn drop_connection(&self, target: &str) -> Result<bool, EmulatorError> {
        self.core.drop_connection(&service::parse_target(target)?)
    }

    /// Fault: the next `n` twin requests of the device are answered with
    /// `status` (429, 500, …).
    pub fn fail_next_twin_ops(
        &self,
        target: &str,
        n: u32,
        status: u16,
    ) -> Result<(), EmulatorError> {
        self.core
            .fail_next_twin_ops(&service::parse_target(target)?, n, status)
    }

    /// Fault: the device's CONNECTs are refused (CONNACK 3, server
    /// unavailable) for `duration`.
    pub fn refuse_connects(&self, target: &str, duration: Duration) -> Result<(), EmulatorError> {
        self.core.refuse_connects(
            &service::parse_target(target)?,
            duration,
            ConnectReturnCode::ServerUnavailable,
        )
    }

    /// Fault: the device's twin answers and method results are held back
    /// by `delay` (zero turns it off).
    pub fn delay_answers(&self, target: &str, delay: Duration) -> Result<(), EmulatorError> {
        self.core
            .delay_answers(&service::parse_target(target)?, delay)
    }

    /// Waits until everything changed so far is committed to the database
    /// (no effect in memory).
    pub fn sync(&self) {
        self.core.flush_store();
    }

    /// Stops listening, closes every connection, commits storage and
    /// closes the database (so the same data directory can be opened again).
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        // The HTTP server finishes the requests it has; a direct-method
        // call among them would wait for its deadline (up to 300 s) on a
        // timer that has stopped: they end now (503).
        self.core.end_pending_methods();
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        self.core.close_all();
        // Let the connection tasks see the close before storage closes.
        tokio::task::yield_now().await;
        self.core.close_store();
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for t in &self.tasks {
            t.abort();
        }
        self.core.close_all();
    }
}

/// A symmetric key from base64, for [`Authentication::Sas`].
pub fn key_from_base64(key: &str) -> Result<SharedAccessKey, EmulatorError> {
    SharedAccessKey::from_base64(key).map_err(|e| EmulatorError::BadRequest(e.to_string()))
}

/// The addresses the listeners are bound to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Addrs {
    pub(crate) mqtt: SocketAddr,
    pub(crate) ws: SocketAddr,
    pub(crate) http: SocketAddr,
    pub(crate) plain: Option<SocketAddr>,
    pub(crate) dps: SocketAddr,
    pub(crate) dps_ws: SocketAddr,
    pub(crate) plain_dps: Option<SocketAddr>,
}
