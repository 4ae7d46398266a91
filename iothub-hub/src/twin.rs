//! Twin documents: desired and reported sections and tags with their
//! versions, the JSON merge-patch rule the hub applies, and the section
//! size limits.

use super::*;
use std::vec::Vec;

use serde_json::{Map, Value};

/// The largest desired or reported section, serialized without `$version`:
/// 32 KB.
pub const MAX_TWIN_SECTION_SIZE: usize = 32 * 1024;
/// The largest tags section, serialized: 8 KB.
pub const MAX_TWIN_TAGS_SIZE: usize = 8 * 1024;

/// One identity's twin: what [`Hub::twin`](super::Hub::twin) shows and what
/// an [`IdentityState`](super::IdentityState) carries. Every version starts
/// at 1, like a new twin on the service.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Twin {
    /// The desired properties, without `$version`.
    pub desired: Map<std::string::String, Value>,
    /// The desired `$version`: +1 per service update.
    pub desired_version: u64,
    /// The reported properties, without `$version`.
    pub reported: Map<std::string::String, Value>,
    /// The reported `$version`: +1 per accepted device PATCH.
    pub reported_version: u64,
    /// The tags (service side only; devices never see them).
    pub tags: Map<std::string::String, Value>,
    /// The twin's own version: +1 on any change of any section.
    pub version: u64,
}

impl Default for Twin {
    fn default() -> Twin {
        Twin::new()
    }
}

/// Why a twin update was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PatchError {
    /// Not a JSON object.
    NotAnObject,
    /// The section would grow over its limit (serialized size, limit).
    TooLarge(usize, usize),
}

impl Twin {
    /// An empty twin, every version 1.
    #[must_use]
    pub fn new() -> Twin {
        Twin {
            desired: Map::new(),
            desired_version: 1,
            reported: Map::new(),
            reported_version: 1,
            tags: Map::new(),
            version: 1,
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
    #[cfg(test)]
    pub(super) fn patch_reported(&mut self, body: &[u8]) -> Option<u64> {
        self.try_patch_reported(body).ok()
    }

    /// Applies a reported-properties PATCH body; the new reported version,
    /// or why not (nothing is applied then).
    pub(super) fn try_patch_reported(&mut self, body: &[u8]) -> Result<u64, PatchError> {
        let Ok(Value::Object(patch)) = serde_json::from_slice::<Value>(body) else {
            return Err(PatchError::NotAnObject);
        };
        self.reported = merged(&self.reported, patch, MAX_TWIN_SECTION_SIZE)?;
        self.reported_version = self.reported_version.saturating_add(1);
        self.version = self.version.saturating_add(1);
        Ok(self.reported_version)
    }

    /// Applies a desired-properties patch; the new desired version.
    #[cfg(test)]
    pub(super) fn patch_desired(&mut self, patch: Map<std::string::String, Value>) -> u64 {
        self.try_patch_desired(patch)
            .unwrap_or(self.desired_version)
    }

    /// Applies a desired-properties patch; the new desired version, or why
    /// not (nothing is applied then).
    pub(super) fn try_patch_desired(
        &mut self,
        patch: Map<std::string::String, Value>,
    ) -> Result<u64, PatchError> {
        self.desired = merged(&self.desired, patch, MAX_TWIN_SECTION_SIZE)?;
        self.desired_version = self.desired_version.saturating_add(1);
        self.version = self.version.saturating_add(1);
        Ok(self.desired_version)
    }

    /// Applies a tags patch; the new twin version, or why not.
    pub(super) fn try_patch_tags(
        &mut self,
        patch: Map<std::string::String, Value>,
    ) -> Result<u64, PatchError> {
        self.tags = merged(&self.tags, patch, MAX_TWIN_TAGS_SIZE)?;
        self.version = self.version.saturating_add(1);
        Ok(self.version)
    }
}

/// `section` with `patch` merged in, unless the result serializes to more
/// than `max` bytes.
fn merged(
    section: &Map<std::string::String, Value>,
    patch: Map<std::string::String, Value>,
    max: usize,
) -> Result<Map<std::string::String, Value>, PatchError> {
    let mut out = section.clone();
    merge(&mut out, patch);
    let size = serialized_len(&out);
    if size > max {
        return Err(PatchError::TooLarge(size, max));
    }
    Ok(out)
}

/// The length of a section serialized as compact JSON.
fn serialized_len(section: &Map<std::string::String, Value>) -> usize {
    // Counting through a writer would need `std::io` (absent in no_std);
    // serializing into a Vec is fine for sections of at most tens of KB.
    serde_json::to_vec(section).map_or(usize::MAX, |v| v.len())
}

/// A copy of `section` with `"$version": version` added.
pub(super) fn with_version(section: &Map<std::string::String, Value>, version: u64) -> Value {
    let mut out = section.clone();
    out.insert("$version".into(), Value::from(version));
    Value::Object(out)
}

/// Merges `patch` into `target`: a `null` member deletes, an object member
/// merges recursively into an object (nulls inside a new object are
/// dropped), anything else replaces.
pub(super) fn merge(
    target: &mut Map<std::string::String, Value>,
    patch: Map<std::string::String, Value>,
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

    fn obj(v: Value) -> Map<std::string::String, Value> {
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
        assert_eq!(twin.version, 3);
        let body: Value = serde_json::from_slice(&twin.get_body()).unwrap();
        assert_eq!(
            body,
            json!({"desired": {"fw": "2", "$version": 2}, "reported": {"t": 1, "$version": 2}})
        );
    }
}

#[cfg(test)]
mod limits {
    use super::*;
    use serde_json::json;
    use std::string::String;

    fn big(n: usize) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("x".into(), Value::String("a".repeat(n)));
        m
    }

    #[test]
    fn sections_are_capped_and_refused_patches_change_nothing() {
        let mut twin = Twin::new();
        // {"x":"…"} is 8 bytes plus the string.
        assert_eq!(
            twin.try_patch_desired(big(MAX_TWIN_SECTION_SIZE - 8)),
            Ok(2)
        );
        assert_eq!(
            twin.try_patch_desired(big(MAX_TWIN_SECTION_SIZE - 7)),
            Err(PatchError::TooLarge(
                MAX_TWIN_SECTION_SIZE + 1,
                MAX_TWIN_SECTION_SIZE
            ))
        );
        assert_eq!(twin.desired_version, 2);
        let body = serde_json::to_vec(&json!({"y": "b".repeat(MAX_TWIN_SECTION_SIZE)})).unwrap();
        assert!(matches!(
            twin.try_patch_reported(&body),
            Err(PatchError::TooLarge(..))
        ));
        assert_eq!(twin.reported_version, 1);
        assert!(twin.try_patch_tags(big(MAX_TWIN_TAGS_SIZE)).is_err());
        assert_eq!(twin.try_patch_tags(big(10)), Ok(3));
        assert_eq!(twin.version, 3);
    }
}

pub(crate) fn patch_error(e: PatchError) -> HubError {
    match e {
        PatchError::NotAnObject => HubError::NotAnObject,
        PatchError::TooLarge(size, max) => HubError::TooLarge { size, max },
    }
}

impl Hub {
    /// The desired properties (without `$version`).
    #[must_use]
    pub fn desired(&self, identity: &Identity) -> Option<&Map<String, Value>> {
        self.identities.get(&key(identity)).map(|r| &r.twin.desired)
    }

    /// The desired `$version` (1 for a new twin).
    #[must_use]
    pub fn desired_version(&self, identity: &Identity) -> Option<u64> {
        self.identities
            .get(&key(identity))
            .map(|r| r.twin.desired_version)
    }

    /// The reported properties (without `$version`).
    #[must_use]
    pub fn reported(&self, identity: &Identity) -> Option<&Map<String, Value>> {
        self.identities
            .get(&key(identity))
            .map(|r| &r.twin.reported)
    }

    /// The reported `$version` (1 for a new twin, +1 per accepted PATCH).
    #[must_use]
    pub fn reported_version(&self, identity: &Identity) -> Option<u64> {
        self.identities
            .get(&key(identity))
            .map(|r| r.twin.reported_version)
    }

    /// The service updates desired properties: merges `patch` (a JSON
    /// object; `null` deletes), bumps the desired version and returns it.
    /// If the identity is connected and subscribed to
    /// `$iothub/twin/PATCH/properties/desired/#`, sends it the patch with
    /// `"$version"` added on `…/desired/?$version={v}`.
    ///
    /// Errors: [`HubError::NotAnObject`], [`HubError::TooLarge`] when the
    /// desired section would exceed [`MAX_TWIN_SECTION_SIZE`] (nothing is
    /// applied), [`HubError::UnknownIdentity`].
    pub fn update_desired(&mut self, identity: &Identity, patch: Value) -> Result<u64, HubError> {
        let Value::Object(patch) = patch else {
            return Err(HubError::NotAnObject);
        };
        let mut body = patch.clone();
        let r = self.record_mut(identity)?;
        let version = r.twin.try_patch_desired(patch).map_err(patch_error)?;
        let target = r.granted(DESIRED_PATCH_FILTER).and(r.conn);
        self.changed(&key(identity));
        if let Some(id) = target {
            self.touched.insert(id);
        }
        if let Some(c) = target.and_then(|id| self.conns.get_mut(&id)) {
            body.insert("$version".into(), Value::from(version));
            let body = serde_json::to_vec(&Value::Object(body)).unwrap_or_default();
            c.send_publish(
                hub::desired_patch(version),
                QosPid::AtMostOnce,
                body.into(),
                false,
            );
        }
        Ok(version)
    }

    /// The service updates the tags: merges `patch` (a JSON object; `null`
    /// deletes) and returns the twin's new version. Devices see nothing.
    ///
    /// Errors: [`HubError::NotAnObject`], [`HubError::TooLarge`] over
    /// [`MAX_TWIN_TAGS_SIZE`] (nothing is applied), [`HubError::UnknownIdentity`].
    pub fn update_tags(&mut self, identity: &Identity, patch: Value) -> Result<u64, HubError> {
        let Value::Object(patch) = patch else {
            return Err(HubError::NotAnObject);
        };
        let version = self
            .record_mut(identity)?
            .twin
            .try_patch_tags(patch)
            .map_err(patch_error)?;
        self.changed(&key(identity));
        Ok(version)
    }

    /// The identity's whole twin (desired, reported, tags, versions).
    #[must_use]
    pub fn twin(&self, identity: &Identity) -> Option<&Twin> {
        self.identities.get(&key(identity)).map(|r| &r.twin)
    }

    /// A twin GET (`patch` is `None`) or reported PATCH.
    pub(crate) fn on_twin_request(
        &mut self,
        conn: ConnId,
        now_ms: u64,
        k: &str,
        request_id: &str,
        patch: Option<&Bytes>,
    ) {
        let (Some(r), Some(c)) = (self.identities.get_mut(k), self.conns.get_mut(&conn)) else {
            return;
        };
        let rid = RequestId::from_wire(request_id);
        if r.granted(TWIN_RESPONSE_FILTER).is_none() {
            self.counters.twin_requests_unanswered =
                self.counters.twin_requests_unanswered.saturating_add(1);
            return;
        }
        let (status, version, body): (u16, Option<u64>, Bytes) = if r.twin_failures.0 > 0 {
            r.twin_failures.0 -= 1;
            let status = r.twin_failures.1;
            let mut body = String::from("{\"errorCode\":");
            topic_push_u64(
                u64::from(status).saturating_mul(1000).saturating_add(1),
                &mut body,
            );
            body.push_str(",\"message\":\"injected by Hub\"}");
            (status, None, body.into())
        } else if let Some(patch) = patch {
            match r.twin.try_patch_reported(patch) {
                Ok(v) => {
                    self.changes.insert(String::from(k), r.identity.clone());
                    (204, Some(v), Bytes::new())
                }
                Err(PatchError::NotAnObject) => (
                    400,
                    None,
                    Bytes::from_static(
                        b"{\"errorCode\":400004,\"message\":\"malformed twin patch\"}",
                    ),
                ),
                Err(PatchError::TooLarge(..)) => (
                    413,
                    None,
                    Bytes::from_static(
                        b"{\"errorCode\":413001,\"message\":\"reported properties over 32 KB\"}",
                    ),
                ),
            }
        } else if core::mem::take(&mut r.malformed_get_next) {
            (
                200,
                None,
                Bytes::from_static(b"{\"desired\":{\"$version\":"),
            )
        } else {
            (200, None, r.twin.get_body().into())
        };
        let topic = hub::twin_response(status, &rid, version);
        if r.answer_delay_ms > 0 {
            self.delayed.push(Delayed {
                at_ms: now_ms.saturating_add(r.answer_delay_ms),
                what: DelayedWhat::TwinAnswer { conn, topic, body },
            });
        } else {
            c.send_publish(topic, QosPid::AtMostOnce, body, false);
        }
    }
}
