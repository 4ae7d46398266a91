//! Twin documents: desired and reported sections with their versions, and
//! the JSON merge-patch rule the hub applies.

use alloc::vec::Vec;

use serde_json::{Map, Value};

/// One identity's twin. Both versions start at 1, like a new twin on the
/// service.
#[derive(Debug, Clone)]
pub(super) struct Twin {
    pub(super) desired: Map<alloc::string::String, Value>,
    pub(super) desired_version: u64,
    pub(super) reported: Map<alloc::string::String, Value>,
    pub(super) reported_version: u64,
}

impl Twin {
    pub(super) fn new() -> Twin {
        Twin {
            desired: Map::new(),
            desired_version: 1,
            reported: Map::new(),
            reported_version: 1,
        }
    }

    /// The body of a 200 answer to a twin GET:
    /// `{"desired":{…,"$version":n},"reported":{…,"$version":m}}`.
    pub(super) fn get_body(&self) -> Vec<u8> {
        let mut doc = Map::new();
        doc.insert(
            "desired".into(),
            with_version(&self.desired, self.desired_version),
        );
        doc.insert(
            "reported".into(),
            with_version(&self.reported, self.reported_version),
        );
        serde_json::to_vec(&Value::Object(doc)).unwrap_or_default()
    }

    /// Applies a reported-properties PATCH body; the new reported version,
    /// or `None` (answer 400) if the body is not a JSON object.
    pub(super) fn patch_reported(&mut self, body: &[u8]) -> Option<u64> {
        let Ok(Value::Object(patch)) = serde_json::from_slice::<Value>(body) else {
            return None;
        };
        merge(&mut self.reported, patch);
        self.reported_version = self.reported_version.saturating_add(1);
        Some(self.reported_version)
    }

    /// Applies a desired-properties patch; the new desired version.
    pub(super) fn patch_desired(&mut self, patch: Map<alloc::string::String, Value>) -> u64 {
        merge(&mut self.desired, patch);
        self.desired_version = self.desired_version.saturating_add(1);
        self.desired_version
    }
}

/// A copy of `section` with `"$version": version` added.
pub(super) fn with_version(section: &Map<alloc::string::String, Value>, version: u64) -> Value {
    let mut out = section.clone();
    out.insert("$version".into(), Value::from(version));
    Value::Object(out)
}

/// Merges `patch` into `target`: a `null` member deletes, an object member
/// merges recursively into an object (nulls inside a new object are
/// dropped), anything else replaces.
pub(super) fn merge(
    target: &mut Map<alloc::string::String, Value>,
    patch: Map<alloc::string::String, Value>,
) {
    for (name, value) in patch {
        match value {
            Value::Null => {
                target.remove(&name);
            }
            Value::Object(inner) => {
                if let Some(Value::Object(existing)) = target.get_mut(&name) {
                    merge(existing, inner);
                } else {
                    let mut fresh = Map::new();
                    merge(&mut fresh, inner);
                    target.insert(name, Value::Object(fresh));
                }
            }
            other => {
                target.insert(name, other);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<alloc::string::String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn merge_rules() {
        let mut t = obj(json!({"a": 1, "b": {"c": 2, "d": 3}, "e": "x"}));
        merge(
            &mut t,
            obj(
                json!({"a": null, "b": {"c": null, "f": [1]}, "e": {"g": null, "h": 4}, "new": {"z": null}}),
            ),
        );
        assert_eq!(
            Value::Object(t),
            json!({"b": {"d": 3, "f": [1]}, "e": {"h": 4}, "new": {}})
        );
    }

    #[test]
    fn versions_and_bodies() {
        let mut twin = Twin::new();
        let body: Value = serde_json::from_slice(&twin.get_body()).unwrap();
        assert_eq!(
            body,
            json!({"desired": {"$version": 1}, "reported": {"$version": 1}})
        );
        assert_eq!(twin.patch_reported(br#"{"t": 1}"#), Some(2));
        assert_eq!(twin.patch_reported(b"[1]"), None);
        assert_eq!(twin.patch_reported(b"{"), None);
        assert_eq!(twin.reported_version, 2);
        assert_eq!(twin.patch_desired(obj(json!({"fw": "2"}))), 2);
        let body: Value = serde_json::from_slice(&twin.get_body()).unwrap();
        assert_eq!(
            body,
            json!({"desired": {"fw": "2", "$version": 2}, "reported": {"t": 1, "$version": 2}})
        );
    }
}
