//! IoT Plug and Play conventions, as pure functions over the session's
//! values: nothing here sends anything.
//!
//! | convention | helper |
//! |---|---|
//! | the model id in the CONNECT username (`&model-id={dtmi}`) | [`UsernameOptions::with_model_id`](crate::auth::UsernameOptions::with_model_id); for DPS [`provisioning::Config::with_model_id`](crate::provisioning::Config::with_model_id) |
//! | telemetry of a component: system property `$.sub` | [`telemetry`] |
//! | reported properties of a component: `{"<c>":{"__t":"c", …}}` | [`ReportedPatch::property`] |
//! | writable-property acknowledgement `{"<p>":{"value":…,"ac":…,"av":…,"ad":…}}` | [`ReportedPatch::ack`], [`WritableAck`] |
//! | commands named `<component>*<command>` | [`split_command`] |
//! | desired properties per component (skipping `$version`, `__t`) | [`desired_properties`], [`desired_components`] |
//!
//! ```
//! use iothub_proto::pnp::{self, ReportedPatch, WritableAck};
//! use serde_json::json;
//!
//! // A desired patch for component "thermostat1" arrives …
//! let patch = json!({"thermostat1": {"__t": "c", "targetTemperature": 21.5}, "$version": 7});
//! let mut reply = ReportedPatch::new();
//! for component in pnp::desired_components(&patch) {
//!     for (name, value) in pnp::desired_properties(&patch, Some(component)) {
//!         reply = reply.ack(Some(component), name, WritableAck::new(value.clone(), 200, 7).with_description("ok"));
//!     }
//! }
//! assert_eq!(reply.to_json(), json!({"thermostat1": {"__t": "c",
//!     "targetTemperature": {"value": 21.5, "ac": 200, "av": 7, "ad": "ok"}}}));
//! // … and reply.to_bytes() goes to Session::update_reported.
//! assert_eq!(pnp::split_command("thermostat1*getMaxMinReport"), (Some("thermostat1"), "getMaxMinReport"));
//! ```

use alloc::string::String;

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::properties::MessageProperties;
use crate::session::Message;

/// The member that marks an object of a twin section as a component.
pub const COMPONENT_MARKER: &str = "__t";
/// The marker's value.
pub const COMPONENT_MARKER_VALUE: &str = "c";
/// The separator of a component command name: `<component>*<command>`.
pub const COMMAND_SEPARATOR: char = '*';

/// A telemetry message in the Plug and Play form: JSON body
/// (`$.ct=application/json`, `$.ce=utf-8`) and, for a component, its name
/// in `$.sub`. Further properties can be added to
/// [`Message::properties`].
#[must_use]
pub fn telemetry(component: Option<&str>, payload: impl Into<Bytes>) -> Message {
    let mut properties = MessageProperties::new();
    properties.content_type = Some(String::from("application/json"));
    properties.content_encoding = Some(String::from("utf-8"));
    properties.component_name = component.map(String::from);
    Message::new(payload).with_properties(properties)
}

/// Splits a command (direct method) name: `thermostat1*reboot` is
/// `(Some("thermostat1"), "reboot")`, a root command `reboot` is
/// `(None, "reboot")`. The split is at the first `*`; an empty component
/// (`*reboot`) counts as none.
#[must_use]
pub fn split_command(name: &str) -> (Option<&str>, &str) {
    match name.split_once(COMMAND_SEPARATOR) {
        Some(("", command)) => (None, command),
        Some((component, command)) => (Some(component), command),
        None => (None, name),
    }
}

/// Whether a twin member is a component: an object whose `__t` is `"c"`.
#[must_use]
pub fn is_component(value: &Value) -> bool {
    value.get(COMPONENT_MARKER).and_then(Value::as_str) == Some(COMPONENT_MARKER_VALUE)
}

/// The properties of a desired section or patch for one component (or,
/// with `None`, the root), in the order of the JSON map (by name): for a component, the members of its
/// object except `__t`; for the root, the members that are not
/// components. Names starting with `$` (`$version`, `$metadata`) are
/// skipped in both. An absent component, or a component that is not an
/// object, yields nothing.
pub fn desired_properties<'a>(
    desired: &'a Value,
    component: Option<&str>,
) -> impl Iterator<Item = (&'a str, &'a Value)> + 'a {
    let (members, root) = match component {
        Some(c) => (desired.get(c).and_then(Value::as_object), false),
        None => (desired.as_object(), true),
    };
    members
        .into_iter()
        .flat_map(Map::iter)
        .filter(move |(name, value)| {
            !name.starts_with('$')
                && name.as_str() != COMPONENT_MARKER
                && !(root && is_component(value))
        })
        .map(|(name, value)| (name.as_str(), value))
}

/// The names of the components a desired section or patch mentions
/// (members marked `"__t":"c"`), by name.
pub fn desired_components(desired: &Value) -> impl Iterator<Item = &str> + '_ {
    desired
        .as_object()
        .into_iter()
        .flat_map(Map::iter)
        .filter(|(name, value)| !name.starts_with('$') && is_component(value))
        .map(|(name, _)| name.as_str())
}

/// The acknowledgement of a writable property:
/// `{"value":…,"ac":…,"av":…,"ad":…}`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct WritableAck {
    /// The value the device now has (usually the desired one).
    pub value: Value,
    /// `ac`: an HTTP-like status (200 accepted, 202 in progress, 400 …).
    pub ac: u16,
    /// `av`: the desired `$version` acknowledged.
    pub av: u64,
    /// `ad`: an optional description.
    pub ad: Option<String>,
}

impl WritableAck {
    /// An acknowledgement without a description.
    #[must_use]
    pub fn new(value: Value, ac: u16, av: u64) -> Self {
        Self {
            value,
            ac,
            av,
            ad: None,
        }
    }

    /// Sets [`ad`](Self::ad).
    #[must_use]
    pub fn with_description(mut self, ad: impl Into<String>) -> Self {
        self.ad = Some(ad.into());
        self
    }

    /// The JSON object.
    #[must_use]
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        map.insert("value".into(), self.value.clone());
        map.insert("ac".into(), Value::from(self.ac));
        map.insert("av".into(), Value::from(self.av));
        if let Some(ad) = &self.ad {
            map.insert("ad".into(), Value::from(ad.as_str()));
        }
        Value::Object(map)
    }
}

/// A reported-properties patch built by component, for
/// [`Session::update_reported`](crate::session::Session::update_reported):
/// root properties at the top, each component's under
/// `{"<component>":{"__t":"c", …}}`. A later property of the same name
/// replaces the earlier one.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReportedPatch {
    root: Map<String, Value>,
}

impl ReportedPatch {
    /// An empty patch.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether nothing was added.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.root.is_empty()
    }

    /// Adds a (read-only) property of the root or of a component.
    #[must_use]
    pub fn property(mut self, component: Option<&str>, name: &str, value: Value) -> Self {
        self.insert(component, name, value);
        self
    }

    /// Adds the acknowledgement of a writable property of the root or of a
    /// component.
    #[must_use]
    pub fn ack(self, component: Option<&str>, name: &str, ack: WritableAck) -> Self {
        let json = ack.to_json();
        self.property(component, name, json)
    }

    /// Acknowledges every property of `desired` (a patch or section) for
    /// one component or the root ([`desired_properties`]) with its own
    /// value, status `ac` and version `av` (the patch's `$version`).
    #[must_use]
    pub fn ack_all(
        mut self,
        desired: &Value,
        component: Option<&str>,
        ac: u16,
        av: u64,
        ad: Option<&str>,
    ) -> Self {
        for (name, value) in desired_properties(desired, component) {
            let mut ack = WritableAck::new(value.clone(), ac, av);
            ack.ad = ad.map(String::from);
            self = self.ack(component, name, ack);
        }
        self
    }

    /// The patch as JSON.
    #[must_use]
    pub fn to_json(&self) -> Value {
        Value::Object(self.root.clone())
    }

    /// The patch as JSON text.
    #[must_use]
    pub fn to_bytes(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(&self.root).unwrap_or_default())
    }

    /// Puts `name: value` into the root, or into the component's object
    /// (created with its marker; a non-object member of that name is
    /// replaced).
    fn insert(&mut self, component: Option<&str>, name: &str, value: Value) {
        let Some(c) = component else {
            self.root.insert(String::from(name), value);
            return;
        };
        let slot = self
            .root
            .entry(String::from(c))
            .or_insert_with(|| Value::Object(Map::new()));
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        if let Value::Object(map) = slot {
            map.entry(COMPONENT_MARKER)
                .or_insert_with(|| Value::from(COMPONENT_MARKER_VALUE));
            map.insert(String::from(name), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;
    use serde_json::json;

    #[test]
    fn component_telemetry_sets_sub() {
        let m = telemetry(Some("thermostat1"), &br#"{"temperature":21.5}"#[..]);
        assert_eq!(m.properties.component_name.as_deref(), Some("thermostat1"));
        assert_eq!(
            m.properties.content_type.as_deref(),
            Some("application/json")
        );
        assert_eq!(m.properties.content_encoding.as_deref(), Some("utf-8"));
        let identity = crate::auth::Identity::parse("dev1", None).unwrap();
        assert_eq!(
            crate::topic::telemetry(&identity, &m.properties),
            "devices/dev1/messages/events/%24.ct=application%2Fjson&%24.ce=utf-8&%24.sub=thermostat1"
        );
        let root = telemetry(None, &b"{}"[..]);
        assert_eq!(root.properties.component_name, None);
    }

    #[test]
    fn command_names() {
        assert_eq!(split_command("reboot"), (None, "reboot"));
        assert_eq!(
            split_command("thermostat1*getMaxMinReport"),
            (Some("thermostat1"), "getMaxMinReport")
        );
        assert_eq!(split_command("*x"), (None, "x"));
        assert_eq!(split_command("a*b*c"), (Some("a"), "b*c"));
        assert_eq!(split_command("a*"), (Some("a"), ""));
        assert_eq!(split_command(""), (None, ""));
    }

    #[test]
    fn desired_per_component() {
        let patch = json!({
            "targetHumidity": 40,
            "config": {"a": 1},
            "thermostat1": {"__t": "c", "targetTemperature": 21.5, "$ignored": 1},
            "thermostat2": {"__t": "c"},
            "$version": 12,
            "$metadata": {}
        });
        let root: Vec<_> = desired_properties(&patch, None).collect();
        assert_eq!(
            root,
            vec![("config", &json!({"a": 1})), ("targetHumidity", &json!(40))]
        );
        let t1: Vec<_> = desired_properties(&patch, Some("thermostat1")).collect();
        assert_eq!(t1, vec![("targetTemperature", &json!(21.5))]);
        assert_eq!(desired_properties(&patch, Some("thermostat2")).count(), 0);
        assert_eq!(desired_properties(&patch, Some("absent")).count(), 0);
        assert_eq!(
            desired_properties(&patch, Some("targetHumidity")).count(),
            0
        );
        assert_eq!(desired_properties(&json!(3), None).count(), 0);
        let components: Vec<_> = desired_components(&patch).collect();
        assert_eq!(components, vec!["thermostat1", "thermostat2"]);
        assert!(is_component(&json!({"__t": "c"})));
        assert!(!is_component(&json!({"__t": "x"})));
    }

    #[test]
    fn reported_patches() {
        let patch = ReportedPatch::new()
            .property(None, "serialNumber", json!("SN-1"))
            .property(Some("thermostat1"), "maxTempSinceLastReboot", json!(38.7))
            .ack(
                Some("thermostat1"),
                "targetTemperature",
                WritableAck::new(json!(21.5), 200, 3).with_description("Successfully updated"),
            )
            .ack(None, "targetHumidity", WritableAck::new(json!(40), 202, 4));
        assert_eq!(
            patch.to_json(),
            json!({
                "serialNumber": "SN-1",
                "targetHumidity": {"value": 40, "ac": 202, "av": 4},
                "thermostat1": {
                    "__t": "c",
                    "maxTempSinceLastReboot": 38.7,
                    "targetTemperature": {"value": 21.5, "ac": 200, "av": 3, "ad": "Successfully updated"}
                }
            })
        );
        let bytes = patch.to_bytes();
        assert_eq!(
            serde_json::from_slice::<Value>(&bytes).unwrap(),
            patch.to_json()
        );
        assert!(ReportedPatch::new().is_empty());
        assert_eq!(ReportedPatch::new().to_bytes(), Bytes::from_static(b"{}"));
        // A component name used for a plain property first becomes a component.
        let p = ReportedPatch::new()
            .property(None, "c1", json!(1))
            .property(Some("c1"), "x", json!(2));
        assert_eq!(p.to_json(), json!({"c1": {"__t": "c", "x": 2}}));
    }

    #[test]
    fn ack_all_echoes_a_desired_patch() {
        let desired = json!({"thermostat1": {"__t": "c", "targetTemperature": 25}, "$version": 9});
        let reply = ReportedPatch::new().ack_all(&desired, Some("thermostat1"), 200, 9, Some("ok"));
        assert_eq!(
            reply.to_json(),
            json!({"thermostat1": {"__t": "c", "targetTemperature": {"value": 25, "ac": 200, "av": 9, "ad": "ok"}}})
        );
    }
}
