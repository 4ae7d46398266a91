//! The service-side operations, shared by the library API
//! ([`crate::EmulatorHandle`]) and the HTTP service API: registry, twins,
//! methods, C2D, fault injection. Each is one step of the hub engine.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use iothub_hub::routes::Route;
use iothub_hub::{Authentication, HubError, MethodOutcome, Twin};
use iothub_proto::auth::{DeviceId, Identity, SharedAccessKey};
use iothub_proto::mqtt::ConnectReturnCode;
use iothub_proto::properties::MessageProperties;
use ring::rand::{SecureRandom as _, SystemRandom};
use serde_json::{Map, Value, json};

use crate::core::Core;
use crate::{DeviceInfo, EmulatorError};

/// The shortest and longest response timeout of a direct method call.
pub const METHOD_TIMEOUT_RANGE: (Duration, Duration) =
    (Duration::from_secs(5), Duration::from_secs(300));

/// What the device answered to a direct method.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct MethodReply {
    /// The status the device chose.
    pub status: i32,
    /// The body, parsed as JSON (`null` when empty; a JSON string holding
    /// the text when it is not JSON).
    pub payload: Value,
}

/// A fresh 32-byte symmetric key.
pub(crate) fn generate_key() -> Result<SharedAccessKey, EmulatorError> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| EmulatorError::Config("the system random generator failed".into()))?;
    SharedAccessKey::from_bytes(bytes).map_err(|e| EmulatorError::Config(e.to_string()))
}

impl From<HubError> for EmulatorError {
    fn from(e: HubError) -> EmulatorError {
        match e {
            HubError::UnknownIdentity => EmulatorError::NotFound("no such identity".into()),
            HubError::NotConnected => EmulatorError::NotConnected,
            HubError::TooLarge { size, max } => EmulatorError::TooLarge { size, max },
            HubError::QueueFull { max } => EmulatorError::QueueFull { max },
            other => EmulatorError::BadRequest(other.to_string()),
        }
    }
}

/// Checks a route name: 1 to 128 ASCII letters, digits and `- . _`.
pub(crate) fn check_route_name(name: &str) -> Result<(), EmulatorError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    if ok {
        Ok(())
    } else {
        Err(EmulatorError::BadRequest(format!(
            "route name {name:?}: 1 to 128 ASCII letters, digits and - . _"
        )))
    }
}

/// Reads a target: `"{device}"` or `"{device}/{module}"`.
pub(crate) fn parse_target(target: &str) -> Result<Identity, EmulatorError> {
    let (d, m) = match target.split_once('/') {
        Some((d, m)) => (d, Some(m)),
        None => (target, None),
    };
    Identity::parse(d, m).map_err(|e| EmulatorError::BadRequest(e.to_string()))
}

fn body_json(payload: &[u8]) -> Value {
    if payload.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(payload)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(payload).into_owned()))
}

fn with_version(section: &Map<String, Value>, version: u64) -> Value {
    let mut s = section.clone();
    s.insert("$version".into(), version.into());
    Value::Object(s)
}

/// The service's twin document; `modelId` is the IoT Plug and Play model
/// the identity announced in its last accepted CONNECT (`""` when none, as
/// the service shows it).
pub(crate) fn twin_json(
    identity: &Identity,
    twin: &Twin,
    connected: bool,
    model_id: Option<&str>,
) -> Value {
    let mut doc = json!({
        "deviceId": identity.device_id().as_str(),
        "modelId": model_id.unwrap_or(""),
        "etag": STANDARD.encode(twin.version.to_string()),
        "version": twin.version,
        "status": "enabled",
        "connectionState": if connected { "Connected" } else { "Disconnected" },
        "tags": twin.tags,
        "properties": {
            "desired": with_version(&twin.desired, twin.desired_version),
            "reported": with_version(&twin.reported, twin.reported_version),
        },
    });
    if let Some(m) = identity.module_id() {
        doc["moduleId"] = m.as_str().into();
    }
    doc
}

impl Core {
    fn info(&self, identity: &Identity) -> Result<DeviceInfo, EmulatorError> {
        let st = self.lock();
        let auth = st
            .hub
            .authentication(identity)
            .cloned()
            .ok_or_else(|| EmulatorError::NotFound(format!("{identity} is not registered")))?;
        Ok(DeviceInfo {
            identity: identity.clone(),
            host_name: st.hub.host_name().to_owned(),
            authentication: auth,
            connected: st.hub.is_connected(identity),
            pending_c2d: st.hub.pending_messages(identity),
        })
    }

    /// Registers an identity (or replaces its authentication); keys are
    /// generated when `authentication` is `None`. A module needs its
    /// device.
    pub(crate) fn create_identity(
        &self,
        identity: &Identity,
        authentication: Option<Authentication>,
    ) -> Result<DeviceInfo, EmulatorError> {
        let auth = match authentication {
            Some(a) => a,
            None => match self.lock().hub.authentication(identity) {
                Some(existing) => existing.clone(),
                None => Authentication::Sas {
                    primary: generate_key()?,
                    secondary: Some(generate_key()?),
                },
            },
        };
        self.step(|st, _, _| {
            if identity.module_id().is_some()
                && !st
                    .hub
                    .contains(&Identity::device(identity.device_id().clone()))
            {
                return Err(EmulatorError::NotFound(format!(
                    "device {} is not registered",
                    identity.device_id()
                )));
            }
            st.hub.set_authentication(identity, auth);
            Ok(())
        })?;
        self.flush_store();
        self.info(identity)
    }

    pub(crate) fn get_identity(&self, identity: &Identity) -> Result<DeviceInfo, EmulatorError> {
        self.info(identity)
    }

    pub(crate) fn delete_identity(&self, identity: &Identity) -> Result<(), EmulatorError> {
        if self.step(|st, _, _| st.hub.remove_identity(identity)) {
            self.flush_store();
            Ok(())
        } else {
            Err(EmulatorError::NotFound(format!(
                "{identity} is not registered"
            )))
        }
    }

    /// Devices (`device` `None`) or the modules of `device`.
    pub(crate) fn list(&self, device: Option<&DeviceId>) -> Vec<DeviceInfo> {
        let ids: Vec<Identity> = {
            let st = self.lock();
            st.hub
                .identities()
                .filter(|i| match device {
                    None => i.module_id().is_none(),
                    Some(d) => i.module_id().is_some() && i.device_id() == d,
                })
                .cloned()
                .collect()
        };
        ids.iter().filter_map(|i| self.info(i).ok()).collect()
    }

    /// The Plug and Play model id of the identity's last accepted CONNECT.
    pub(crate) fn model_id(&self, identity: &Identity) -> Option<String> {
        self.lock().hub.model_id(identity).map(str::to_owned)
    }

    pub(crate) fn twin(&self, identity: &Identity) -> Result<(Twin, bool), EmulatorError> {
        let st = self.lock();
        let twin = st
            .hub
            .twin(identity)
            .cloned()
            .ok_or_else(|| EmulatorError::NotFound(format!("{identity} is not registered")))?;
        Ok((twin, st.hub.is_connected(identity)))
    }

    /// Applies a desired patch and / or a tags patch (each a JSON object).
    pub(crate) fn patch_twin(
        &self,
        identity: &Identity,
        desired: Option<Value>,
        tags: Option<Value>,
    ) -> Result<(Twin, bool), EmulatorError> {
        self.step(|st, _, _| -> Result<(), EmulatorError> {
            if !st.hub.contains(identity) {
                return Err(EmulatorError::NotFound(format!(
                    "{identity} is not registered"
                )));
            }
            if let Some(d) = desired {
                st.hub.update_desired(identity, d)?;
            }
            if let Some(t) = tags {
                st.hub.update_tags(identity, t)?;
            }
            Ok(())
        })?;
        self.flush_store();
        self.twin(identity)
    }

    /// Calls a direct method and waits for the answer (or the timeout,
    /// which must be within [`METHOD_TIMEOUT_RANGE`]).
    pub(crate) async fn invoke_method(
        &self,
        identity: &Identity,
        name: &str,
        payload: &Value,
        timeout: Duration,
    ) -> Result<MethodReply, EmulatorError> {
        let (min, max) = METHOD_TIMEOUT_RANGE;
        if timeout < min || timeout > max {
            return Err(EmulatorError::BadRequest(format!(
                "responseTimeoutInSeconds must be within {}..={}",
                min.as_secs(),
                max.as_secs()
            )));
        }
        let body = Bytes::from(serde_json::to_vec(payload).unwrap_or_default());
        let rx = self.step(|st, now, _| -> Result<_, EmulatorError> {
            if !st.hub.contains(identity) {
                return Err(EmulatorError::NotFound(format!(
                    "{identity} is not registered"
                )));
            }
            let rid =
                st.hub
                    .invoke_method_until(identity, name, body, now.saturating_add(timeout))?;
            Ok(Core::await_method(st, rid.as_str()))
        })?;
        match rx.await {
            Ok(MethodOutcome::Answered { status, payload }) => Ok(MethodReply {
                status,
                payload: body_json(&payload),
            }),
            Ok(_) => Err(EmulatorError::Timeout),
            Err(_) => Err(EmulatorError::Shutdown),
        }
    }

    pub(crate) fn send_c2d(
        &self,
        device: &DeviceId,
        properties: MessageProperties,
        body: Bytes,
    ) -> Result<(), EmulatorError> {
        self.step(|st, _, _| st.hub.send_c2d(device, properties, body))?;
        self.flush_store();
        Ok(())
    }

    /// Queues a message for a module's input (what an IoT Edge route
    /// does); the module must be registered.
    pub(crate) fn send_module_input(
        &self,
        identity: &Identity,
        input: &str,
        properties: MessageProperties,
        body: Bytes,
    ) -> Result<(), EmulatorError> {
        let Some(module) = identity.module_id() else {
            return Err(EmulatorError::BadRequest(
                "input messages go to modules (\"device/module\"), not devices".into(),
            ));
        };
        self.step(|st, _, _| {
            if !st.hub.contains(identity) {
                return Err(EmulatorError::NotFound(format!(
                    "{identity} is not registered"
                )));
            }
            st.hub
                .send_module_input(identity.device_id(), module, input, properties, body)
                .map_err(|e| match e {
                    HubError::InvalidName => EmulatorError::BadRequest(format!(
                        "input name {input:?}: non-empty, without `/`, `+`, `#` or U+0000"
                    )),
                    other => other.into(),
                })
        })?;
        self.flush_store();
        Ok(())
    }

    /// Adds or replaces a route between modules (stored).
    pub(crate) fn set_route(&self, name: &str, text: &str) -> Result<Route, EmulatorError> {
        check_route_name(name)?;
        let route = Route::parse(text)
            .map_err(|e| EmulatorError::BadRequest(format!("route {name:?}: {e}")))?;
        {
            let mut st = self.lock();
            st.hub.set_route(name, route.clone());
            if let Some(store) = &st.store {
                store.put_route(name, &route.to_string());
            }
        }
        self.flush_store();
        Ok(route)
    }

    /// Removes a route.
    pub(crate) fn remove_route(&self, name: &str) -> Result<(), EmulatorError> {
        {
            let mut st = self.lock();
            if st.hub.remove_route(name).is_none() {
                return Err(EmulatorError::NotFound(format!("no route {name:?}")));
            }
            if let Some(store) = &st.store {
                store.delete_route(name);
            }
        }
        self.flush_store();
        Ok(())
    }

    /// The routes, by name.
    pub(crate) fn routes(&self) -> Vec<(String, Route)> {
        self.lock()
            .hub
            .routes()
            .map(|(n, r)| (n.to_owned(), r.clone()))
            .collect()
    }

    pub(crate) fn drop_connection(&self, identity: &Identity) -> Result<bool, EmulatorError> {
        self.step(|st, _, _| {
            if !st.hub.contains(identity) {
                return Err(EmulatorError::NotFound(format!(
                    "{identity} is not registered"
                )));
            }
            Ok(st
                .hub
                .connection_of(identity)
                .map(|c| st.hub.drop_connection(c))
                .is_some())
        })
    }

    pub(crate) fn fail_next_twin_ops(
        &self,
        identity: &Identity,
        n: u32,
        status: u16,
    ) -> Result<(), EmulatorError> {
        self.step(|st, _, _| st.hub.fail_next_twin_ops(identity, n, status))?;
        Ok(())
    }

    pub(crate) fn refuse_connects(
        &self,
        identity: &Identity,
        duration: Duration,
        code: ConnectReturnCode,
    ) -> Result<(), EmulatorError> {
        self.step(|st, now, _| {
            st.hub
                .refuse_connects_until(identity, now.saturating_add(duration), code)
        })?;
        Ok(())
    }

    pub(crate) fn delay_answers(
        &self,
        identity: &Identity,
        delay: Duration,
    ) -> Result<(), EmulatorError> {
        self.step(|st, _, _| st.hub.delay_answers(identity, delay))?;
        Ok(())
    }
}
