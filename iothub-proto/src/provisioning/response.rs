//! The JSON bodies of the DPS registration protocol, parsed into types at
//! the door and written back from them (the DPS engine in
//! [`hub::dps`](crate::hub) writes its answers with the same types).
//!
//! | body | type |
//! |---|---|
//! | register request `{"registrationId":"…","payload":{…}}` | [`RegisterRequest`] |
//! | 200 / 202 answer `{"operationId":"…","status":"…","registrationState":{…}}` | [`OperationStatus`] |
//! | any other answer `{"errorCode":…,"message":"…","trackingId":"…"}` | [`ServiceError`] |
//!
//! Parsing is strict about types and lenient about presence: a member that
//! is there must have the documented JSON type (else
//! [`ResponseError::InvalidField`]); unknown members are ignored; only
//! `operationId` and `status` of an operation are required.

use alloc::string::{String, ToString};
use core::fmt;

use serde_json::{Map, Value};

use crate::session::JsonError;

/// The `status` of a registration operation (and of a registration state).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RegistrationStatus {
    /// `unassigned`: the device has not been assigned yet.
    Unassigned,
    /// `assigning`: in progress; poll again after `retry-after`.
    Assigning,
    /// `assigned`: done; the registration state names the hub and device.
    Assigned,
    /// `failed`: the assignment failed (`errorCode`, `errorMessage`).
    Failed,
    /// `disabled`: the enrollment or registration is disabled.
    Disabled,
}

impl RegistrationStatus {
    /// The name on the wire.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unassigned => "unassigned",
            Self::Assigning => "assigning",
            Self::Assigned => "assigned",
            Self::Failed => "failed",
            Self::Disabled => "disabled",
        }
    }

    /// The status named `s` (exact, lowercase as DPS writes it), if any.
    #[must_use]
    pub fn from_wire(s: &str) -> Option<Self> {
        Some(match s {
            "unassigned" => Self::Unassigned,
            "assigning" => Self::Assigning,
            "assigned" => Self::Assigned,
            "failed" => Self::Failed,
            "disabled" => Self::Disabled,
            _ => return None,
        })
    }

    /// Whether the operation is still in progress (poll again).
    #[must_use]
    pub const fn is_in_progress(self) -> bool {
        matches!(self, Self::Unassigned | Self::Assigning)
    }
}

impl fmt::Display for RegistrationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `substatus` of an assignment: why the device is where it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Substatus {
    /// `initialAssignment`: first assignment of this registration.
    InitialAssignment,
    /// `deviceDataMigrated`: re-provisioned to another hub, twin migrated.
    DeviceDataMigrated,
    /// `deviceDataReset`: re-provisioned to another hub, twin reset to the
    /// enrollment's initial twin.
    DeviceDataReset,
    /// `reprovisionedToInitialAssignment`: re-provisioned back to the first
    /// hub.
    ReprovisionedToInitialAssignment,
    /// A value this crate does not know, kept as sent.
    Other(String),
}

impl Substatus {
    /// The name on the wire.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            Self::InitialAssignment => "initialAssignment",
            Self::DeviceDataMigrated => "deviceDataMigrated",
            Self::DeviceDataReset => "deviceDataReset",
            Self::ReprovisionedToInitialAssignment => "reprovisionedToInitialAssignment",
            Self::Other(s) => s,
        }
    }

    /// The substatus named `s`; unknown names become [`Substatus::Other`].
    #[must_use]
    pub fn from_wire(s: &str) -> Self {
        match s {
            "initialAssignment" => Self::InitialAssignment,
            "deviceDataMigrated" => Self::DeviceDataMigrated,
            "deviceDataReset" => Self::DeviceDataReset,
            "reprovisionedToInitialAssignment" => Self::ReprovisionedToInitialAssignment,
            other => Self::Other(other.to_string()),
        }
    }
}

impl fmt::Display for Substatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is wrong with a DPS body.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ResponseError {
    /// Not JSON.
    Json(JsonError),
    /// JSON, but not an object.
    NotAnObject,
    /// A required member is missing (`operationId`, `status`; in a register
    /// request `registrationId`).
    MissingField(&'static str),
    /// A member has the wrong JSON type (or an integer out of range).
    InvalidField(&'static str),
    /// `status` names no [`RegistrationStatus`].
    UnknownStatus(String),
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Json(e) => write!(f, "DPS body: {e}"),
            Self::NotAnObject => f.write_str("DPS body is not a JSON object"),
            Self::MissingField(name) => write!(f, "DPS body has no `{name}`"),
            Self::InvalidField(name) => write!(f, "DPS body member `{name}` has the wrong type"),
            Self::UnknownStatus(s) => write!(f, "DPS body has the unknown status {s:?}"),
        }
    }
}

impl core::error::Error for ResponseError {}

fn object(body: &[u8]) -> Result<Map<String, Value>, ResponseError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ResponseError::Json(JsonError::from_serde(&e)))?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(ResponseError::NotAnObject),
    }
}

fn opt_str(map: &Map<String, Value>, name: &'static str) -> Result<Option<String>, ResponseError> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ResponseError::InvalidField(name)),
    }
}

fn opt_u64(map: &Map<String, Value>, name: &'static str) -> Result<Option<u64>, ResponseError> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or(ResponseError::InvalidField(name)),
    }
}

fn opt_status(
    map: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<RegistrationStatus>, ResponseError> {
    match opt_str(map, name)? {
        None => Ok(None),
        Some(s) => RegistrationStatus::from_wire(&s)
            .map(Some)
            .ok_or(ResponseError::UnknownStatus(s)),
    }
}

/// A member that is present and not `null`.
fn opt_value(map: &Map<String, Value>, name: &str) -> Option<Value> {
    map.get(name).filter(|v| !v.is_null()).cloned()
}

fn put_str(map: &mut Map<String, Value>, name: &str, value: Option<&str>) {
    if let Some(v) = value {
        map.insert(name.into(), Value::from(v));
    }
}

/// The body of a registration request:
/// `{"registrationId":"…","payload":{…}}` (`payload` only when given).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RegisterRequest {
    /// The registration id (the same as in the username).
    pub registration_id: String,
    /// The custom payload for a custom allocation policy (any JSON; an
    /// object by convention, e.g. `{"modelId":"dtmi:…"}` for IoT Plug and
    /// Play).
    pub payload: Option<Value>,
}

impl RegisterRequest {
    /// A request for this registration id with this payload.
    #[must_use]
    pub fn new(registration_id: impl Into<String>, payload: Option<Value>) -> Self {
        Self {
            registration_id: registration_id.into(),
            payload,
        }
    }

    /// The JSON object.
    #[must_use]
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        map.insert(
            "registrationId".into(),
            Value::from(self.registration_id.as_str()),
        );
        if let Some(p) = &self.payload {
            map.insert("payload".into(), p.clone());
        }
        Value::Object(map)
    }

    /// The JSON text.
    #[must_use]
    pub fn to_vec(&self) -> alloc::vec::Vec<u8> {
        serde_json::to_vec(&self.to_json()).unwrap_or_default()
    }

    /// Reads a request body (server side). `registrationId` is required;
    /// a `null` payload is no payload.
    pub fn parse(body: &[u8]) -> Result<Self, ResponseError> {
        let map = object(body)?;
        Ok(Self {
            registration_id: opt_str(&map, "registrationId")?
                .ok_or(ResponseError::MissingField("registrationId"))?,
            payload: opt_value(&map, "payload"),
        })
    }
}

/// The `registrationState` of an operation: where the device goes, or why
/// it does not.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct RegistrationState {
    /// `registrationId`.
    pub registration_id: Option<String>,
    /// `status`.
    pub status: Option<RegistrationStatus>,
    /// `substatus`.
    pub substatus: Option<Substatus>,
    /// `assignedHub`: the IoT hub host name.
    pub assigned_hub: Option<String>,
    /// `deviceId`: the device id at that hub.
    pub device_id: Option<String>,
    /// `errorCode` (failed or disabled registrations).
    pub error_code: Option<u64>,
    /// `errorMessage`.
    pub error_message: Option<String>,
    /// `payload`: data returned by a custom allocation policy.
    pub payload: Option<Value>,
    /// `createdDateTimeUtc`, as sent.
    pub created_date_time_utc: Option<String>,
    /// `lastUpdatedDateTimeUtc`, as sent.
    pub last_updated_date_time_utc: Option<String>,
    /// `etag`.
    pub etag: Option<String>,
}

impl RegistrationState {
    fn from_map(map: &Map<String, Value>) -> Result<Self, ResponseError> {
        Ok(Self {
            registration_id: opt_str(map, "registrationId")?,
            status: opt_status(map, "status")?,
            substatus: opt_str(map, "substatus")?.map(|s| Substatus::from_wire(&s)),
            assigned_hub: opt_str(map, "assignedHub")?,
            device_id: opt_str(map, "deviceId")?,
            error_code: opt_u64(map, "errorCode")?,
            error_message: opt_str(map, "errorMessage")?,
            payload: opt_value(map, "payload"),
            created_date_time_utc: opt_str(map, "createdDateTimeUtc")?,
            last_updated_date_time_utc: opt_str(map, "lastUpdatedDateTimeUtc")?,
            etag: opt_str(map, "etag")?,
        })
    }

    /// The JSON object (members that are `None` are left out).
    #[must_use]
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        put_str(&mut map, "registrationId", self.registration_id.as_deref());
        put_str(
            &mut map,
            "createdDateTimeUtc",
            self.created_date_time_utc.as_deref(),
        );
        put_str(&mut map, "assignedHub", self.assigned_hub.as_deref());
        put_str(&mut map, "deviceId", self.device_id.as_deref());
        put_str(
            &mut map,
            "status",
            self.status.map(RegistrationStatus::as_str),
        );
        put_str(
            &mut map,
            "substatus",
            self.substatus.as_ref().map(Substatus::as_str),
        );
        if let Some(code) = self.error_code {
            map.insert("errorCode".into(), Value::from(code));
        }
        put_str(&mut map, "errorMessage", self.error_message.as_deref());
        put_str(
            &mut map,
            "lastUpdatedDateTimeUtc",
            self.last_updated_date_time_utc.as_deref(),
        );
        put_str(&mut map, "etag", self.etag.as_deref());
        if let Some(p) = &self.payload {
            map.insert("payload".into(), p.clone());
        }
        Value::Object(map)
    }
}

/// A 200 or 202 answer to a register or poll request:
/// `{"operationId":"…","status":"assigning"}`, or with the final
/// `registrationState`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct OperationStatus {
    /// `operationId`: what to poll with.
    pub operation_id: String,
    /// `status`.
    pub status: RegistrationStatus,
    /// `registrationState`, when present.
    pub registration_state: Option<RegistrationState>,
}

impl OperationStatus {
    /// An operation in this status, without registration state.
    #[must_use]
    pub fn new(operation_id: impl Into<String>, status: RegistrationStatus) -> Self {
        Self {
            operation_id: operation_id.into(),
            status,
            registration_state: None,
        }
    }

    /// Reads a 200 / 202 body.
    pub fn parse(body: &[u8]) -> Result<Self, ResponseError> {
        let map = object(body)?;
        let operation_id =
            opt_str(&map, "operationId")?.ok_or(ResponseError::MissingField("operationId"))?;
        let status = opt_status(&map, "status")?.ok_or(ResponseError::MissingField("status"))?;
        let registration_state = match map.get("registrationState") {
            None | Some(Value::Null) => None,
            Some(Value::Object(state)) => Some(RegistrationState::from_map(state)?),
            Some(_) => return Err(ResponseError::InvalidField("registrationState")),
        };
        Ok(Self {
            operation_id,
            status,
            registration_state,
        })
    }

    /// The JSON object.
    #[must_use]
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        map.insert(
            "operationId".into(),
            Value::from(self.operation_id.as_str()),
        );
        map.insert("status".into(), Value::from(self.status.as_str()));
        if let Some(state) = &self.registration_state {
            map.insert("registrationState".into(), state.to_json());
        }
        Value::Object(map)
    }

    /// The JSON text.
    #[must_use]
    pub fn to_vec(&self) -> alloc::vec::Vec<u8> {
        serde_json::to_vec(&self.to_json()).unwrap_or_default()
    }
}

/// The body of an error answer (400, 401, 404, 429, 5xx…):
/// `{"errorCode":401002,"trackingId":"…","message":"…","timestampUtc":"…"}`.
/// Every member is optional; a body that is empty or not a JSON object
/// gives an empty `ServiceError` (the status is what counts).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub struct ServiceError {
    /// `errorCode`: the status times 1000 plus a detail, e.g. 401002.
    pub error_code: Option<u64>,
    /// `message`.
    pub message: Option<String>,
    /// `trackingId`, for a support request.
    pub tracking_id: Option<String>,
    /// `timestampUtc`, as sent.
    pub timestamp_utc: Option<String>,
}

impl ServiceError {
    /// Reads an error body, leniently: members of the wrong type are
    /// ignored, and anything that is not a JSON object gives
    /// `ServiceError::default()`.
    #[must_use]
    pub fn parse(body: &[u8]) -> Self {
        let Ok(map) = object(body) else {
            return Self::default();
        };
        let text = |name: &str| map.get(name).and_then(Value::as_str).map(String::from);
        Self {
            error_code: map.get("errorCode").and_then(Value::as_u64),
            message: text("message"),
            tracking_id: text("trackingId"),
            timestamp_utc: text("timestampUtc"),
        }
    }

    /// The JSON object.
    #[must_use]
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        if let Some(code) = self.error_code {
            map.insert("errorCode".into(), Value::from(code));
        }
        put_str(&mut map, "trackingId", self.tracking_id.as_deref());
        put_str(&mut map, "message", self.message.as_deref());
        put_str(&mut map, "timestampUtc", self.timestamp_utc.as_deref());
        Value::Object(map)
    }

    /// The JSON text.
    #[must_use]
    pub fn to_vec(&self) -> alloc::vec::Vec<u8> {
        serde_json::to_vec(&self.to_json()).unwrap_or_default()
    }
}

/// A DPS answer, by status: 200 and 202 carry an [`OperationStatus`],
/// everything else a [`ServiceError`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Response {
    /// 200 or 202.
    Operation(OperationStatus),
    /// Any other status.
    Error {
        /// The status from the topic.
        status: u16,
        /// The body.
        error: ServiceError,
    },
}

/// Reads the body of the answer `$dps/registrations/res/{status}/…` by its
/// status. Never panics. 200 and 202 must carry a valid
/// [`OperationStatus`]; other statuses are read leniently
/// ([`ServiceError::parse`]) and never fail.
pub fn parse_response(status: u16, body: &[u8]) -> Result<Response, ResponseError> {
    match status {
        200 | 202 => OperationStatus::parse(body).map(Response::Operation),
        _ => Ok(Response::Error {
            status,
            error: ServiceError::parse(body),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_the_documented_bodies() {
        let assigning = br#"{"operationId":"4.d0a671905ea5b2c8.e7173b7b-0e54-4aa0-9d20-aeb1b89e6c7d","status":"assigning"}"#;
        let Ok(Response::Operation(op)) = parse_response(202, assigning) else {
            panic!()
        };
        assert_eq!(
            op.operation_id,
            "4.d0a671905ea5b2c8.e7173b7b-0e54-4aa0-9d20-aeb1b89e6c7d"
        );
        assert_eq!(op.status, RegistrationStatus::Assigning);
        assert!(op.status.is_in_progress());
        assert!(op.registration_state.is_none());

        let assigned = json!({
            "operationId": "op1",
            "status": "assigned",
            "registrationState": {
                "x509": {},
                "registrationId": "my-device",
                "createdDateTimeUtc": "2024-01-01T00:00:00.0000000Z",
                "assignedHub": "contoso.azure-devices.net",
                "deviceId": "my-device",
                "status": "assigned",
                "substatus": "initialAssignment",
                "lastUpdatedDateTimeUtc": "2024-01-01T00:00:01.0000000Z",
                "etag": "IjAwMDAi",
                "payload": {"a": 1}
            }
        });
        let body = serde_json::to_vec(&assigned).unwrap();
        let op = OperationStatus::parse(&body).unwrap();
        let state = op.registration_state.clone().unwrap();
        assert_eq!(op.status, RegistrationStatus::Assigned);
        assert_eq!(
            state.assigned_hub.as_deref(),
            Some("contoso.azure-devices.net")
        );
        assert_eq!(state.device_id.as_deref(), Some("my-device"));
        assert_eq!(state.substatus, Some(Substatus::InitialAssignment));
        assert_eq!(state.payload, Some(json!({"a": 1})));
        assert_eq!(state.etag.as_deref(), Some("IjAwMDAi"));
        // Written back, it reads the same (the unknown `x509` aside).
        assert_eq!(OperationStatus::parse(&op.to_vec()).unwrap(), op);

        let failed = br#"{"operationId":"op2","status":"failed","registrationState":{"registrationId":"r","status":"failed","errorCode":400209,"errorMessage":"Custom allocation failed with status code: 400"}}"#;
        let op = OperationStatus::parse(failed).unwrap();
        let state = op.registration_state.unwrap();
        assert_eq!(state.status, Some(RegistrationStatus::Failed));
        assert_eq!(state.error_code, Some(400_209));
        assert!(state.error_message.unwrap().contains("Custom allocation"));
    }

    #[test]
    fn error_bodies_are_lenient() {
        let body = br#"{"errorCode":401002,"trackingId":"t-1","message":"Unauthorized","timestampUtc":"2024-01-01T00:00:00Z"}"#;
        let Ok(Response::Error { status, error }) = parse_response(401, body) else {
            panic!()
        };
        assert_eq!(status, 401);
        assert_eq!(error.error_code, Some(401_002));
        assert_eq!(error.tracking_id.as_deref(), Some("t-1"));
        assert_eq!(ServiceError::parse(&error.to_vec()), error);
        for junk in [&b""[..], b"nope", b"[1]", b"{\"errorCode\":\"x\"}"] {
            assert_eq!(
                parse_response(429, junk),
                Ok(Response::Error {
                    status: 429,
                    error: ServiceError::default()
                })
            );
        }
    }

    #[test]
    fn operation_errors() {
        use ResponseError as E;
        let cases: [(&[u8], ResponseError); 8] = [
            (b"", E::Json(JsonError::Syntax { line: 1, column: 0 })),
            (b"[]", E::NotAnObject),
            (b"{}", E::MissingField("operationId")),
            (br#"{"operationId":1}"#, E::InvalidField("operationId")),
            (br#"{"operationId":"o"}"#, E::MissingField("status")),
            (
                br#"{"operationId":"o","status":"Assigned"}"#,
                E::UnknownStatus("Assigned".into()),
            ),
            (
                br#"{"operationId":"o","status":"assigned","registrationState":[]}"#,
                E::InvalidField("registrationState"),
            ),
            (
                br#"{"operationId":"o","status":"assigned","registrationState":{"errorCode":-1}}"#,
                E::InvalidField("errorCode"),
            ),
        ];
        for (body, want) in cases {
            assert_eq!(
                parse_response(200, body),
                Err(want.clone()),
                "{}",
                core::str::from_utf8(body).unwrap()
            );
            assert!(want.to_string().contains("DPS body"));
        }
        // `null` is absence.
        let op = OperationStatus::parse(
            br#"{"operationId":"o","status":"assigning","registrationState":null}"#,
        )
        .unwrap();
        assert!(op.registration_state.is_none());
    }

    #[test]
    fn register_request() {
        let r = RegisterRequest::new("my-device", Some(json!({"modelId": "dtmi:x;1"})));
        assert_eq!(
            r.to_json(),
            json!({"registrationId": "my-device", "payload": {"modelId": "dtmi:x;1"}})
        );
        assert_eq!(RegisterRequest::parse(&r.to_vec()), Ok(r));
        let bare = RegisterRequest::new("r", None);
        assert_eq!(bare.to_vec(), br#"{"registrationId":"r"}"#);
        assert_eq!(
            RegisterRequest::parse(br#"{"payload":{}}"#),
            Err(ResponseError::MissingField("registrationId"))
        );
        assert_eq!(
            RegisterRequest::parse(br#"{"registrationId":"r","payload":null}"#),
            Ok(bare)
        );
    }

    #[test]
    fn wire_names() {
        for s in [
            RegistrationStatus::Unassigned,
            RegistrationStatus::Assigning,
            RegistrationStatus::Assigned,
            RegistrationStatus::Failed,
            RegistrationStatus::Disabled,
        ] {
            assert_eq!(RegistrationStatus::from_wire(s.as_str()), Some(s));
            assert_eq!(s.to_string(), s.as_str());
        }
        for s in [
            Substatus::InitialAssignment,
            Substatus::DeviceDataMigrated,
            Substatus::DeviceDataReset,
            Substatus::ReprovisionedToInitialAssignment,
            Substatus::Other("later".into()),
        ] {
            assert_eq!(Substatus::from_wire(s.as_str()), s);
        }
    }
}
