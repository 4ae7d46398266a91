//! The one parser of hub→device topics: [`parse`] into [`HubTopic`].

use alloc::borrow::Cow;
use core::fmt;

use super::query::{RETRY_AFTER, all_digits, parse_status, query_params, segment_and_query};
use crate::auth::{DeviceId, IdError, ModuleId};
use crate::properties::MessageProperties;
use crate::text::url_decode;

/// A hub→device topic, parsed. Borrows from the topic string where nothing
/// needed decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HubTopic<'a> {
    /// A cloud-to-device message:
    /// `devices/{d}/messages/devicebound/{bag}`.
    C2d {
        /// The device id in the topic (a valid [`DeviceId`]).
        device_id: &'a str,
        /// The decoded property bag (possibly empty; decoding never fails).
        properties: MessageProperties,
    },
    /// An IoT Edge routed input message:
    /// `devices/{d}/modules/{m}/inputs/{input}/{bag}`.
    ModuleInput {
        /// The device id in the topic (a valid [`DeviceId`]).
        device_id: &'a str,
        /// The module id in the topic (a valid [`ModuleId`]).
        module_id: &'a str,
        /// The input name, percent-decoded; never empty.
        input: Cow<'a, str>,
        /// The decoded property bag (possibly empty; decoding never fails).
        properties: MessageProperties,
    },
    /// A twin response: `$iothub/twin/res/{status}/?$rid={rid}` with an
    /// optional `$version={v}`.
    TwinResponse {
        /// The status code, e.g. 200 for a GET, 204 for a reported PATCH.
        status: u16,
        /// The request id of the request being answered, as it travels
        /// (see [`RequestId`](super::RequestId)).
        request_id: &'a str,
        /// The new reported-properties version (after a PATCH).
        version: Option<u64>,
    },
    /// A desired-properties notification:
    /// `$iothub/twin/PATCH/properties/desired/?$version={v}`.
    DesiredPatch {
        /// The desired-properties version after this patch.
        version: u64,
    },
    /// A direct method request: `$iothub/methods/POST/{name}/?$rid={rid}`.
    MethodRequest {
        /// The method name, percent-decoded; never empty.
        name: Cow<'a, str>,
        /// The request id as it travels, to be echoed in the response
        /// topic ([`RequestId::from_wire`](super::RequestId::from_wire)); any text, even empty.
        request_id: &'a str,
    },
    /// A Device Provisioning Service response:
    /// `$dps/registrations/res/{status}/?$rid={rid}` with an optional
    /// `retry-after={s}`.
    DpsResponse {
        /// The status code (202 while the assignment is in progress).
        status: u16,
        /// The request id of the request being answered, as it travels.
        request_id: &'a str,
        /// Seconds to wait before polling again: the `retry-after`
        /// parameter, its name matched in any letter case; `None` when
        /// absent or not a whole number of seconds.
        retry_after: Option<u32>,
    },
}

impl HubTopic<'_> {
    /// The request id, for the variants that carry one.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            HubTopic::TwinResponse { request_id, .. }
            | HubTopic::MethodRequest { request_id, .. }
            | HubTopic::DpsResponse { request_id, .. } => Some(request_id),
            HubTopic::C2d { .. } | HubTopic::ModuleInput { .. } | HubTopic::DesiredPatch { .. } => {
                None
            }
        }
    }
}

/// A topic that [`parse`] does not accept.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TopicError {
    /// The topic is not a hub→device topic of this grammar. Not necessarily
    /// an error: the session may simply not handle it.
    NoMatch,
    /// The device or module id in the topic is not valid.
    InvalidId(IdError),
    /// The input name of a module input topic is empty.
    EmptyInputName,
    /// The status segment is not all ASCII digits or does not fit its
    /// type (`u16` for the hub's statuses, `i32` for a method response).
    InvalidStatus,
    /// The method name of a method request topic is empty.
    EmptyMethodName,
    /// A method or input name whose percent-encoding is broken (a `%` not
    /// followed by two hex digits) or that does not decode to UTF-8.
    InvalidEncoding,
    /// The topic does not continue with `/?` (or `?`) and a query where it
    /// must.
    MissingQuery,
    /// The query has no `$rid` parameter.
    MissingRequestId,
    /// The query of a desired-properties notification has no `$version`.
    MissingVersion,
    /// The `$version` value is not all ASCII digits or does not fit a `u64`.
    InvalidVersion,
    /// A query parameter the family uses appears more than once.
    DuplicateParameter(&'static str),
    /// Only from the [`hub`](super::hub) builders: an empty method name.
    InvalidMethodName,
    /// Only from the [`hub`](super::hub) builders: an empty input name.
    InvalidInputName,
    /// Only from the device→hub parser of `iothub-hub`: a DPS operation-status poll without
    /// an `operationId` parameter, or with an empty one.
    MissingOperationId,
    /// Only from the device→hub parser of `iothub-hub`: the `operationId` value does not
    /// percent-decode to UTF-8 text.
    InvalidOperationId,
}

impl TopicError {
    /// Whether this is [`TopicError::NoMatch`]: the topic belongs to no
    /// known family, as opposed to a malformed topic of a known family.
    pub fn is_no_match(&self) -> bool {
        matches!(self, TopicError::NoMatch)
    }
}

impl fmt::Display for TopicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TopicError::NoMatch => f.write_str("not an IoT Hub device-bound topic"),
            TopicError::InvalidId(e) => write!(f, "invalid topic: {e}"),
            TopicError::EmptyInputName => f.write_str("invalid topic: the input name is empty"),
            TopicError::InvalidStatus => {
                f.write_str("invalid topic: the status must be an integer (ASCII digits)")
            }
            TopicError::EmptyMethodName => f.write_str("invalid topic: the method name is empty"),
            TopicError::InvalidEncoding => {
                f.write_str("invalid topic: the name's percent-encoding is broken or not UTF-8")
            }
            TopicError::MissingQuery => f.write_str("invalid topic: expected `/?` and a query"),
            TopicError::MissingRequestId => f.write_str("invalid topic: the query has no `$rid`"),
            TopicError::MissingVersion => f.write_str("invalid topic: the query has no `$version`"),
            TopicError::InvalidVersion => f.write_str(
                "invalid topic: `$version` must be an integer (ASCII digits, fits 64 bits)",
            ),
            TopicError::DuplicateParameter(name) => {
                write!(f, "invalid topic: the query has `{name}` more than once")
            }
            TopicError::InvalidMethodName => f.write_str("method name must not be empty"),
            TopicError::InvalidInputName => f.write_str("input name must not be empty"),
            TopicError::MissingOperationId => {
                f.write_str("invalid topic: the query has no non-empty `operationId`")
            }
            TopicError::InvalidOperationId => {
                f.write_str("invalid topic: `operationId` does not percent-decode to UTF-8")
            }
        }
    }
}

impl core::error::Error for TopicError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            TopicError::InvalidId(e) => Some(e),
            _ => None,
        }
    }
}

/// Parses a hub→device topic. Never panics, whatever the input.
///
/// See the [module docs](crate::topic) for the grammar. Returns
/// [`TopicError::NoMatch`] for a topic outside the grammar.
///
/// ```
/// use iothub_proto::topic::{parse, HubTopic};
///
/// assert_eq!(
///     parse("$iothub/twin/res/204/?$rid=7&$version=12"),
///     Ok(HubTopic::TwinResponse { status: 204, request_id: "7", version: Some(12) })
/// );
/// assert!(parse("devices/d/messages/events/").unwrap_err().is_no_match());
/// ```
pub fn parse(topic: &str) -> Result<HubTopic<'_>, TopicError> {
    if let Some(rest) = topic.strip_prefix("$iothub/") {
        if let Some(rest) = rest.strip_prefix("twin/res/") {
            return parse_twin_response(rest);
        }
        if let Some(rest) = rest.strip_prefix("twin/PATCH/properties/desired/") {
            return parse_desired_patch(rest);
        }
        if let Some(rest) = rest.strip_prefix("methods/POST/") {
            return parse_method_request(rest);
        }
        return Err(TopicError::NoMatch);
    }
    if let Some(rest) = topic.strip_prefix("$dps/registrations/res/") {
        return parse_dps_response(rest);
    }
    if let Some(rest) = topic.strip_prefix("devices/") {
        return parse_devices(rest);
    }
    Err(TopicError::NoMatch)
}

/// `devices/` has been stripped.
fn parse_devices(rest: &str) -> Result<HubTopic<'_>, TopicError> {
    let Some((device_id, rest)) = rest.split_once('/') else {
        return Err(TopicError::NoMatch);
    };
    if let Some(bag) = rest.strip_prefix("messages/devicebound/") {
        DeviceId::new(device_id).map_err(TopicError::InvalidId)?;
        return Ok(HubTopic::C2d {
            device_id,
            properties: MessageProperties::decode(bag),
        });
    }
    let Some(rest) = rest.strip_prefix("modules/") else {
        return Err(TopicError::NoMatch);
    };
    let Some((module_id, rest)) = rest.split_once('/') else {
        return Err(TopicError::NoMatch);
    };
    let Some(rest) = rest.strip_prefix("inputs/") else {
        return Err(TopicError::NoMatch);
    };
    DeviceId::new(device_id).map_err(TopicError::InvalidId)?;
    ModuleId::new(module_id).map_err(TopicError::InvalidId)?;
    // The bag follows a `/`; without it (`…/inputs/input1`) it is empty.
    let (input, bag) = rest.split_once('/').unwrap_or((rest, ""));
    if input.is_empty() {
        return Err(TopicError::EmptyInputName);
    }
    Ok(HubTopic::ModuleInput {
        device_id,
        module_id,
        input: decode_name(input)?,
        properties: MessageProperties::decode(bag),
    })
}

/// Strict percent-decoding of a name the device interprets (a method or
/// input name): every `%` starts a `%XY` escape and the result is UTF-8.
/// `+` stays a plus.
fn decode_name(s: &str) -> Result<Cow<'_, str>, TopicError> {
    let bytes = s.as_bytes();
    let well_formed = bytes.iter().enumerate().all(|(i, &b)| {
        b != b'%'
            || bytes
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    });
    if !well_formed {
        return Err(TopicError::InvalidEncoding);
    }
    url_decode(s).ok_or(TopicError::InvalidEncoding)
}

fn request_id(rid: Option<&str>) -> Result<&str, TopicError> {
    rid.ok_or(TopicError::MissingRequestId)
}

fn number<T: core::str::FromStr>(
    v: Option<&str>,
    err: TopicError,
) -> Result<Option<T>, TopicError> {
    match v {
        None => Ok(None),
        Some(v) if all_digits(v) => v.parse().map(Some).map_err(|_| err),
        Some(_) => Err(err),
    }
}

/// `$iothub/twin/res/` has been stripped.
fn parse_twin_response(rest: &str) -> Result<HubTopic<'_>, TopicError> {
    let (status, query) = segment_and_query(rest);
    let status = parse_status(status)?;
    let query = query.ok_or(TopicError::MissingQuery)?;
    let [rid, version] = query_params(query, ["$rid", "$version"])?;
    Ok(HubTopic::TwinResponse {
        status,
        request_id: request_id(rid)?,
        version: number(version, TopicError::InvalidVersion)?,
    })
}

/// `$iothub/twin/PATCH/properties/desired/` has been stripped.
fn parse_desired_patch(rest: &str) -> Result<HubTopic<'_>, TopicError> {
    let query = rest.strip_prefix('?').ok_or(TopicError::MissingQuery)?;
    let [version] = query_params(query, ["$version"])?;
    let version = number(version, TopicError::InvalidVersion)?.ok_or(TopicError::MissingVersion)?;
    Ok(HubTopic::DesiredPatch { version })
}

/// `$iothub/methods/POST/` has been stripped.
fn parse_method_request(rest: &str) -> Result<HubTopic<'_>, TopicError> {
    let (name, query) = segment_and_query(rest);
    if name.is_empty() {
        return Err(TopicError::EmptyMethodName);
    }
    let query = query.ok_or(TopicError::MissingQuery)?;
    let [rid] = query_params(query, ["$rid"])?;
    Ok(HubTopic::MethodRequest {
        name: decode_name(name)?,
        request_id: request_id(rid)?,
    })
}

/// `$dps/registrations/res/` has been stripped.
fn parse_dps_response(rest: &str) -> Result<HubTopic<'_>, TopicError> {
    let (status, query) = segment_and_query(rest);
    let status = parse_status(status)?;
    let query = query.ok_or(TopicError::MissingQuery)?;
    let [rid, retry_after] = query_params(query, ["$rid", RETRY_AFTER])?;
    Ok(HubTopic::DpsResponse {
        status,
        request_id: request_id(rid)?,
        retry_after: retry_after
            .filter(|v| all_digits(v))
            .and_then(|v| v.parse().ok()),
    })
}
