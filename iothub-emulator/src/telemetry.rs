//! Telemetry as the emulator stores and shows it.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use iothub_hub::Telemetry;
use iothub_proto::auth::Identity;
use iothub_proto::properties::{MessageProperties, SystemProperty};
use serde_json::{Map, Value, json};

/// A device-to-cloud message the emulator received (or a will it
/// published for a connection that ended without DISCONNECT).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReceivedMessage {
    /// Who sent it.
    pub identity: Identity,
    /// The body.
    pub body: Bytes,
    /// The property bag: system properties as typed fields, application
    /// properties in order (a will has `iothub-MessageType=Will`, a
    /// retained PUBLISH `mqtt-retain=true`).
    pub properties: MessageProperties,
    /// When the emulator enqueued it.
    pub enqueued_time: SystemTime,
}

impl ReceivedMessage {
    pub(crate) fn new(t: Telemetry, enqueued_time: SystemTime) -> ReceivedMessage {
        ReceivedMessage {
            identity: t.identity,
            body: t.payload,
            properties: t.properties,
            enqueued_time,
        }
    }

    /// The body as text, when it is UTF-8.
    #[must_use]
    pub fn body_text(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }

    /// The value of application property `name` (`Some("")` for a
    /// property without value).
    #[must_use]
    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties
            .get_application(name)
            .map(|v| v.unwrap_or(""))
    }

    /// Whether this is a will message.
    #[must_use]
    pub fn is_will(&self) -> bool {
        self.property("iothub-MessageType") == Some("Will")
    }

    /// The JSON the service API shows: `{"body", "bodyEncoding",
    /// "properties", "systemProperties", "enqueuedTime"}`. The body is
    /// UTF-8 text (`"bodyEncoding":"utf-8"`) when it is valid UTF-8 and
    /// `force_base64` is false, else base64 (`"bodyEncoding":"base64"`).
    #[must_use]
    pub fn to_json(&self, force_base64: bool) -> Value {
        let (body, encoding) = match self.body_text() {
            Some(text) if !force_base64 => (Value::from(text), "utf-8"),
            _ => (Value::from(STANDARD.encode(&self.body)), "base64"),
        };
        let mut app = Map::new();
        for (name, value) in self.properties.application_iter() {
            app.insert(name.to_owned(), value.map_or(Value::Null, Value::from));
        }
        let enqueued = rfc3339(self.enqueued_time);
        let mut sys = Map::new();
        sys.insert(
            "iothub-connection-device-id".into(),
            self.identity.device_id().as_str().into(),
        );
        if let Some(m) = self.identity.module_id() {
            sys.insert("iothub-connection-module-id".into(), m.as_str().into());
        }
        sys.insert("iothub-enqueuedtime".into(), enqueued.clone().into());
        for p in SystemProperty::ALL {
            if let Some(v) = self.properties.system(*p) {
                sys.insert(system_name(*p).into(), v.into());
            }
        }
        json!({
            "body": body,
            "bodyEncoding": encoding,
            "properties": app,
            "systemProperties": sys,
            "enqueuedTime": enqueued,
        })
    }
}

/// The names the service uses for system properties in its JSON.
fn system_name(p: SystemProperty) -> &'static str {
    match p {
        SystemProperty::MessageId => "message-id",
        SystemProperty::CorrelationId => "correlation-id",
        SystemProperty::UserId => "user-id",
        SystemProperty::ContentType => "content-type",
        SystemProperty::ContentEncoding => "content-encoding",
        SystemProperty::AbsoluteExpiryTime => "absolute-expiry-time",
        SystemProperty::To => "to",
        SystemProperty::CreationTime => "iothub-creation-time-utc",
        SystemProperty::ComponentName => "dt-subject",
        SystemProperty::OutputName => "iothub-outputname",
        SystemProperty::ConnectionDeviceId => "iothub-connection-device-id",
        SystemProperty::ConnectionModuleId => "iothub-connection-module-id",
        SystemProperty::InterfaceId => "iothub-interface-id",
        SystemProperty::Ack => "iothub-ack",
        _ => p.name(),
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC).
#[must_use]
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000Z"
        );
    }
}
