//! The IoT Hub topic grammar: builders for every device→hub topic and
//! subscription filter, and one parser, [`parse`], for every hub→device topic.
//!
//! Topics are parsed once, at the door, into [`HubTopic`]: status codes are
//! integers, versions are `u64`, request ids and names are `&str` borrowed
//! from the topic, and property bags are decoded into
//! [`MessageProperties`]. A topic outside this grammar is
//! [`TopicError::NoMatch`], which the session can treat as "not for me";
//! a topic of a known family that breaks its rules is another
//! [`TopicError`] variant saying what is wrong.
//!
//! # Grammar accepted by [`parse`]
//!
//! | topic | result |
//! |---|---|
//! | `devices/{d}/messages/devicebound/{bag}` | [`HubTopic::C2d`] |
//! | `devices/{d}/modules/{m}/inputs/{input}/{bag}` | [`HubTopic::ModuleInput`] |
//! | `$iothub/twin/res/{status}/?{query}` with `$rid`, optional `$version` | [`HubTopic::TwinResponse`] |
//! | `$iothub/twin/PATCH/properties/desired/?{query}` with `$version` | [`HubTopic::DesiredPatch`] |
//! | `$iothub/methods/POST/{name}/?{query}` with `$rid` | [`HubTopic::MethodRequest`] |
//! | `$dps/registrations/res/{status}/?{query}` with `$rid`, optional `retry-after` | [`HubTopic::DpsResponse`] |
//!
//! A family is recognised by its literal prefix up to and including the `/`
//! before its first variable part (`devices/{d}/messages/devicebound/`,
//! `$iothub/twin/res/`, …); anything that does not start with one of these
//! is [`TopicError::NoMatch`]. That includes every device→hub topic
//! (`devices/{d}/messages/events/`, `$iothub/twin/GET/…`) and
//! `devices/{d}/messages/devicebound` without its trailing slash.
//!
//! Rules within a family:
//!
//! - Device and module ids must be valid [`DeviceId`]s / [`ModuleId`]s.
//! - A `{bag}` is everything after the fixed segments (a raw `/` in it is
//!   part of it); it may be empty and must decode by the rules of
//!   [`properties`](crate::properties). A module input topic needs the `/`
//!   after `{input}` even when the bag is empty
//!   ([`TopicError::MissingBagSeparator`]); `{input}` and a method `{name}`
//!   must not be empty and run to the next `/`.
//! - `{status}` is one or more ASCII digits whose value fits a `u16`
//!   (no sign, no spaces).
//! - The query must follow `/?` exactly, as the hub sends it
//!   (`$iothub/twin/res/200/?$rid=1`). The form without the slash is
//!   refused: the hub never sends it, and a `?` may be part of a method
//!   name. `$iothub/twin/res/200?$rid=1` is [`TopicError::InvalidStatus`]
//!   (the status segment runs to the next `/`), and
//!   `$iothub/methods/POST/reboot?$rid=1` is [`TopicError::MissingQuery`].
//!   A segment between the status or name and `/?` (`…/200/x/?$rid=1`) is
//!   [`TopicError::MissingQuery`] too.
//! - Query parameters are `name=value` pairs joined by `&`, in any order.
//!   Parameters the family does not use are ignored; a used parameter given
//!   twice is [`TopicError::DuplicateParameter`]. Values are taken as is
//!   (not percent-decoded): request ids must satisfy the [`RequestId`] rules
//!   (which exclude `%`), numbers are ASCII digits.
//!
//! Parsing a twin response, desired patch, method request or DPS response
//! does not allocate. C2D and module input topics allocate for the decoded
//! properties (and to validate the ids).
//!
//! # Builders
//!
//! Every builder comes in two forms: `*_into(…, out: &mut String)` appends
//! to a buffer the caller owns (so a session can reuse one), and a
//! convenience form returning a new `String`. The hub→device direction has
//! builders too, in [`hub`], for fake hubs in tests.
//!
//! # Server side
//!
//! The other direction is covered too, for fake hubs, emulators and
//! gateways: [`hub`] builds hub→device topics, and [`parse_device_topic`]
//! reads every device→hub topic back into a [`DeviceTopic`].

use alloc::borrow::Cow;
use alloc::string::{String, ToString};
use core::fmt;

use crate::text::{impl_str_newtype, url_decode};

use crate::auth::{DeviceId, IdError, Identity, ModuleId};
use crate::properties::{MessageProperties, PropertyError, percent_encode_into};

/// The longest [`RequestId`] accepted, in bytes.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// Subscription filter for twin responses.
pub const TWIN_RESPONSE_FILTER: &str = "$iothub/twin/res/#";
/// Subscription filter for desired-property notifications.
pub const DESIRED_PATCH_FILTER: &str = "$iothub/twin/PATCH/properties/desired/#";
/// Subscription filter for direct method requests.
pub const METHOD_REQUEST_FILTER: &str = "$iothub/methods/POST/#";
/// Subscription filter for Device Provisioning Service responses.
pub const DPS_RESPONSE_FILTER: &str = "$dps/registrations/res/#";

/// Why a request id was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RequestIdError {
    /// The request id is empty.
    Empty,
    /// The request id is longer than [`MAX_REQUEST_ID_LEN`] bytes.
    TooLong {
        /// The length given, in bytes.
        len: usize,
    },
    /// The request id holds a character that may not appear unescaped in a
    /// topic query: `& = / ? # + %`, whitespace, a control character or a
    /// non-ASCII character.
    InvalidChar {
        /// The offending character.
        ch: char,
        /// Its byte offset.
        index: usize,
    },
}

impl fmt::Display for RequestIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestIdError::Empty => f.write_str("request id is empty"),
            RequestIdError::TooLong { len } => write!(
                f,
                "request id is {len} bytes long; at most {MAX_REQUEST_ID_LEN} are allowed"
            ),
            RequestIdError::InvalidChar { ch, index } => write!(
                f,
                "request id has the character {ch:?} at byte {index}; allowed are printable ASCII except & = / ? # + %"
            ),
        }
    }
}

impl core::error::Error for RequestIdError {}

/// Whether `b` may appear in a request id.
const fn is_request_id_byte(b: u8) -> bool {
    b.is_ascii_graphic() && !matches!(b, b'&' | b'=' | b'/' | b'?' | b'#' | b'+' | b'%')
}

fn validate_request_id(s: &str) -> Result<(), RequestIdError> {
    if s.is_empty() {
        return Err(RequestIdError::Empty);
    }
    if let Some((index, ch)) = s
        .char_indices()
        .find(|&(_, c)| !c.is_ascii() || !is_request_id_byte(c as u8))
    {
        return Err(RequestIdError::InvalidChar { ch, index });
    }
    if s.len() > MAX_REQUEST_ID_LEN {
        return Err(RequestIdError::TooLong { len: s.len() });
    }
    Ok(())
}

/// A request id (`$rid`): an opaque string that correlates a request with
/// its response.
///
/// Validated on construction so that it can go into a topic query
/// unescaped: 1 to [`MAX_REQUEST_ID_LEN`] printable ASCII characters other
/// than `& = / ? # + %` (numbers, UUIDs and hex strings all qualify).
/// `RequestId::from(n)` for a `u64` counter gives a decimal id that is
/// always valid.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(String);

impl RequestId {
    /// Validates `id`; see the type docs for the rules.
    pub fn new(id: impl Into<String>) -> Result<Self, RequestIdError> {
        let id = id.into();
        validate_request_id(&id)?;
        Ok(Self(id))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<u64> for RequestId {
    fn from(n: u64) -> Self {
        Self(n.to_string())
    }
}

impl_str_newtype!(RequestId, RequestIdError);

impl PartialEq<str> for RequestId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for RequestId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<RequestId> for str {
    fn eq(&self, other: &RequestId) -> bool {
        self == other.0
    }
}

impl PartialEq<RequestId> for &str {
    fn eq(&self, other: &RequestId) -> bool {
        *self == other.0
    }
}

// ---------------------------------------------------------------------------
// Device → hub builders
// ---------------------------------------------------------------------------

fn push_device_prefix(device_id: &DeviceId, module_id: Option<&ModuleId>, out: &mut String) {
    out.push_str("devices/");
    out.push_str(device_id.as_str());
    if let Some(m) = module_id {
        out.push_str("/modules/");
        out.push_str(m.as_str());
    }
}

/// Appends the telemetry (device-to-cloud) topic:
/// `devices/{d}/messages/events/{bag}`, or for a module identity
/// `devices/{d}/modules/{m}/messages/events/{bag}`. With no properties the
/// topic ends in `events/`. Also the topic of a will message.
pub fn telemetry_into(identity: &Identity, properties: &MessageProperties, out: &mut String) {
    push_device_prefix(identity.device_id(), identity.module_id(), out);
    out.push_str("/messages/events/");
    properties.encode(out);
}

/// The telemetry topic; see [`telemetry_into`].
pub fn telemetry(identity: &Identity, properties: &MessageProperties) -> String {
    let mut out = String::new();
    telemetry_into(identity, properties, &mut out);
    out
}

/// Appends the twin GET topic: `$iothub/twin/GET/?$rid={rid}`.
pub fn twin_get_into(request_id: &RequestId, out: &mut String) {
    out.push_str("$iothub/twin/GET/?$rid=");
    out.push_str(request_id.as_str());
}

/// The twin GET topic; see [`twin_get_into`].
pub fn twin_get(request_id: &RequestId) -> String {
    let mut out = String::new();
    twin_get_into(request_id, &mut out);
    out
}

/// Appends the reported-properties PATCH topic:
/// `$iothub/twin/PATCH/properties/reported/?$rid={rid}`.
pub fn twin_patch_reported_into(request_id: &RequestId, out: &mut String) {
    out.push_str("$iothub/twin/PATCH/properties/reported/?$rid=");
    out.push_str(request_id.as_str());
}

/// The reported-properties PATCH topic; see [`twin_patch_reported_into`].
pub fn twin_patch_reported(request_id: &RequestId) -> String {
    let mut out = String::new();
    twin_patch_reported_into(request_id, &mut out);
    out
}

/// Appends the direct-method response topic:
/// `$iothub/methods/res/{status}/?$rid={rid}`.
pub fn method_response_into(status: u16, request_id: &RequestId, out: &mut String) {
    out.push_str("$iothub/methods/res/");
    push_u64(u64::from(status), out);
    out.push_str("/?$rid=");
    out.push_str(request_id.as_str());
}

/// The direct-method response topic; see [`method_response_into`].
pub fn method_response(status: u16, request_id: &RequestId) -> String {
    let mut out = String::new();
    method_response_into(status, request_id, &mut out);
    out
}

/// Appends the DPS register topic:
/// `$dps/registrations/PUT/iotdps-register/?$rid={rid}`.
pub fn dps_register_into(request_id: &RequestId, out: &mut String) {
    out.push_str("$dps/registrations/PUT/iotdps-register/?$rid=");
    out.push_str(request_id.as_str());
}

/// The DPS register topic; see [`dps_register_into`].
pub fn dps_register(request_id: &RequestId) -> String {
    let mut out = String::new();
    dps_register_into(request_id, &mut out);
    out
}

/// Appends the DPS operation-status poll topic:
/// `$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={id}`.
/// The operation id is percent-encoded like a property bag value.
pub fn dps_poll_into(request_id: &RequestId, operation_id: &str, out: &mut String) {
    out.push_str("$dps/registrations/GET/iotdps-get-operationstatus/?$rid=");
    out.push_str(request_id.as_str());
    out.push_str("&operationId=");
    percent_encode_into(operation_id, out);
}

/// The DPS operation-status poll topic; see [`dps_poll_into`].
pub fn dps_poll(request_id: &RequestId, operation_id: &str) -> String {
    let mut out = String::new();
    dps_poll_into(request_id, operation_id, &mut out);
    out
}

/// Appends the cloud-to-device subscription filter:
/// `devices/{d}/messages/devicebound/#`.
pub fn c2d_filter_into(device_id: &DeviceId, out: &mut String) {
    push_device_prefix(device_id, None, out);
    out.push_str("/messages/devicebound/#");
}

/// The cloud-to-device subscription filter; see [`c2d_filter_into`].
pub fn c2d_filter(device_id: &DeviceId) -> String {
    let mut out = String::new();
    c2d_filter_into(device_id, &mut out);
    out
}

/// Appends the module input subscription filter:
/// `devices/{d}/modules/{m}/inputs/#`.
pub fn module_inputs_filter_into(device_id: &DeviceId, module_id: &ModuleId, out: &mut String) {
    push_device_prefix(device_id, Some(module_id), out);
    out.push_str("/inputs/#");
}

/// The module input subscription filter; see [`module_inputs_filter_into`].
pub fn module_inputs_filter(device_id: &DeviceId, module_id: &ModuleId) -> String {
    let mut out = String::new();
    module_inputs_filter_into(device_id, module_id, &mut out);
    out
}

/// Appends the decimal form of `n` without going through `fmt`.
fn push_u64(mut n: u64, out: &mut String) {
    let mut digits = [0u8; 20];
    let mut len = 0;
    for slot in digits.iter_mut().rev() {
        // `n % 10` is below 10, so the cast cannot truncate.
        *slot = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in digits.iter().skip(digits.len() - len) {
        out.push(char::from(d));
    }
}

// ---------------------------------------------------------------------------
// Hub → device parser
// ---------------------------------------------------------------------------

/// A hub→device topic, parsed. Borrows from the topic string.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HubTopic<'a> {
    /// A cloud-to-device message:
    /// `devices/{d}/messages/devicebound/{bag}`.
    C2d {
        /// The device id in the topic (a valid [`DeviceId`]).
        device_id: &'a str,
        /// The decoded property bag (possibly empty).
        properties: MessageProperties,
    },
    /// An IoT Edge routed input message:
    /// `devices/{d}/modules/{m}/inputs/{input}/{bag}`.
    ModuleInput {
        /// The device id in the topic (a valid [`DeviceId`]).
        device_id: &'a str,
        /// The module id in the topic (a valid [`ModuleId`]).
        module_id: &'a str,
        /// The input name; never empty.
        input: &'a str,
        /// The decoded property bag (possibly empty).
        properties: MessageProperties,
    },
    /// A twin response: `$iothub/twin/res/{status}/?$rid={rid}` with an
    /// optional `$version={v}`.
    TwinResponse {
        /// The status code, e.g. 200 for a GET, 204 for a reported PATCH.
        status: u16,
        /// The request id of the request being answered.
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
        /// The method name; never empty.
        name: &'a str,
        /// The request id, to be echoed in the response topic. It satisfies
        /// the [`RequestId`] rules, so `RequestId::new` on it succeeds.
        request_id: &'a str,
    },
    /// A Device Provisioning Service response:
    /// `$dps/registrations/res/{status}/?$rid={rid}` with an optional
    /// `retry-after={s}`.
    DpsResponse {
        /// The status code (202 while the assignment is in progress).
        status: u16,
        /// The request id of the request being answered.
        request_id: &'a str,
        /// Seconds to wait before polling again.
        retry_after: Option<u32>,
    },
}

impl<'a> HubTopic<'a> {
    /// The request id, for the variants that carry one.
    pub fn request_id(&self) -> Option<&'a str> {
        match *self {
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
    /// A module input topic has no `/` after the input name.
    MissingBagSeparator,
    /// The status segment is not all ASCII digits or does not fit a `u16`.
    InvalidStatus,
    /// The method name of a method request topic is empty.
    EmptyMethodName,
    /// The topic does not continue with `/?` and a query where it must.
    MissingQuery,
    /// The query has no `$rid` parameter.
    MissingRequestId,
    /// The `$rid` value is not a valid request id (empty, too long, or a
    /// character outside the [`RequestId`] set).
    InvalidRequestId(RequestIdError),
    /// The query of a desired-properties notification has no `$version`.
    MissingVersion,
    /// The `$version` value is not all ASCII digits or does not fit a `u64`.
    InvalidVersion,
    /// The `retry-after` value is not all ASCII digits or does not fit a
    /// `u32`.
    InvalidRetryAfter,
    /// A query parameter the family uses appears more than once.
    DuplicateParameter(&'static str),
    /// The property bag does not decode.
    InvalidProperties(PropertyError),
    /// Only from the [`hub`] builders: a method name that is empty or holds
    /// a `/` (it would not parse back).
    InvalidMethodName,
    /// Only from the [`hub`] builders: an input name that is empty or holds
    /// a `/` (it would not parse back).
    InvalidInputName,
    /// Only from [`parse_device_topic`]: a DPS operation-status poll without
    /// an `operationId` parameter, or with an empty one.
    MissingOperationId,
    /// Only from [`parse_device_topic`]: the `operationId` value does not
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
            TopicError::MissingBagSeparator => {
                f.write_str("invalid topic: no `/` after the input name")
            }
            TopicError::InvalidStatus => f.write_str(
                "invalid topic: the status must be an integer (ASCII digits, at most 65535)",
            ),
            TopicError::EmptyMethodName => f.write_str("invalid topic: the method name is empty"),
            TopicError::MissingQuery => f.write_str("invalid topic: expected `/?` and a query"),
            TopicError::MissingRequestId => f.write_str("invalid topic: the query has no `$rid`"),
            TopicError::InvalidRequestId(e) => write!(f, "invalid topic: `$rid`: {e}"),
            TopicError::MissingVersion => f.write_str("invalid topic: the query has no `$version`"),
            TopicError::InvalidVersion => f.write_str(
                "invalid topic: `$version` must be an integer (ASCII digits, fits 64 bits)",
            ),
            TopicError::InvalidRetryAfter => f.write_str(
                "invalid topic: `retry-after` must be an integer (ASCII digits, fits 32 bits)",
            ),
            TopicError::DuplicateParameter(name) => {
                write!(f, "invalid topic: the query has `{name}` more than once")
            }
            TopicError::InvalidProperties(e) => write!(f, "invalid topic: property bag: {e}"),
            TopicError::InvalidMethodName => {
                f.write_str("method name must be non-empty and hold no `/`")
            }
            TopicError::InvalidInputName => {
                f.write_str("input name must be non-empty and hold no `/`")
            }
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
            TopicError::InvalidRequestId(e) => Some(e),
            TopicError::InvalidProperties(e) => Some(e),
            _ => None,
        }
    }
}

/// Parses a hub→device topic. Never panics, whatever the input.
///
/// See the [module docs](self) for the grammar. Returns
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
        let properties = MessageProperties::decode(bag).map_err(TopicError::InvalidProperties)?;
        return Ok(HubTopic::C2d {
            device_id,
            properties,
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
    let (input, bag) = match rest.split_once('/') {
        Some((input, bag)) => (input, Some(bag)),
        None => (rest, None),
    };
    if input.is_empty() {
        return Err(TopicError::EmptyInputName);
    }
    let bag = bag.ok_or(TopicError::MissingBagSeparator)?;
    let properties = MessageProperties::decode(bag).map_err(TopicError::InvalidProperties)?;
    Ok(HubTopic::ModuleInput {
        device_id,
        module_id,
        input,
        properties,
    })
}

/// Splits `{segment}/?{query}`; the segment is everything before the first
/// `/` (or the whole input if there is none).
fn segment_and_query(rest: &str) -> (&str, Option<&str>) {
    match rest.split_once('/') {
        Some((segment, tail)) => (segment, tail.strip_prefix('?')),
        None => (rest, None),
    }
}

/// `true` for one or more ASCII digits.
fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn parse_status(s: &str) -> Result<u16, TopicError> {
    if !all_digits(s) {
        return Err(TopicError::InvalidStatus);
    }
    s.parse().map_err(|_| TopicError::InvalidStatus)
}

/// Looks `keys` up in a `&`-separated query in one pass. A pair without `=`
/// has an empty value; other keys are ignored. Errors when a key appears
/// twice.
fn query_params<'a, const N: usize>(
    query: &'a str,
    keys: [&'static str; N],
) -> Result<[Option<&'a str>; N], TopicError> {
    let mut found = [None; N];
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if let Some((slot, key)) = found.iter_mut().zip(keys).find(|(_, k)| *k == name) {
            if slot.is_some() {
                return Err(TopicError::DuplicateParameter(key));
            }
            *slot = Some(value);
        }
    }
    Ok(found)
}

fn request_id(rid: Option<&str>) -> Result<&str, TopicError> {
    let rid = rid.ok_or(TopicError::MissingRequestId)?;
    validate_request_id(rid).map_err(TopicError::InvalidRequestId)?;
    Ok(rid)
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
        name,
        request_id: request_id(rid)?,
    })
}

/// `$dps/registrations/res/` has been stripped.
fn parse_dps_response(rest: &str) -> Result<HubTopic<'_>, TopicError> {
    let (status, query) = segment_and_query(rest);
    let status = parse_status(status)?;
    let query = query.ok_or(TopicError::MissingQuery)?;
    let [rid, retry_after] = query_params(query, ["$rid", "retry-after"])?;
    Ok(HubTopic::DpsResponse {
        status,
        request_id: request_id(rid)?,
        retry_after: number(retry_after, TopicError::InvalidRetryAfter)?,
    })
}

/// Builders for hub→device topics, for fake hubs and tests. Everything they
/// build parses back with [`parse`] into the same values.
pub mod hub {
    use alloc::string::String;

    use super::{RequestId, TopicError, push_device_prefix, push_u64};
    use crate::auth::{DeviceId, ModuleId};
    use crate::properties::MessageProperties;

    /// Appends `devices/{d}/messages/devicebound/{bag}`.
    pub fn c2d_into(device_id: &DeviceId, properties: &MessageProperties, out: &mut String) {
        push_device_prefix(device_id, None, out);
        out.push_str("/messages/devicebound/");
        properties.encode(out);
    }

    /// A cloud-to-device topic; see [`c2d_into`].
    pub fn c2d(device_id: &DeviceId, properties: &MessageProperties) -> String {
        let mut out = String::new();
        c2d_into(device_id, properties, &mut out);
        out
    }

    /// Appends `devices/{d}/modules/{m}/inputs/{input}/{bag}`.
    ///
    /// Refuses an input name that is empty or holds a `/`
    /// ([`TopicError::InvalidInputName`]); `out` is then left unchanged.
    pub fn module_input_into(
        device_id: &DeviceId,
        module_id: &ModuleId,
        input: &str,
        properties: &MessageProperties,
        out: &mut String,
    ) -> Result<(), TopicError> {
        if input.is_empty() || input.contains('/') {
            return Err(TopicError::InvalidInputName);
        }
        push_device_prefix(device_id, Some(module_id), out);
        out.push_str("/inputs/");
        out.push_str(input);
        out.push('/');
        properties.encode(out);
        Ok(())
    }

    /// A module input topic; see [`module_input_into`].
    pub fn module_input(
        device_id: &DeviceId,
        module_id: &ModuleId,
        input: &str,
        properties: &MessageProperties,
    ) -> Result<String, TopicError> {
        let mut out = String::new();
        module_input_into(device_id, module_id, input, properties, &mut out)?;
        Ok(out)
    }

    /// Appends `$iothub/twin/res/{status}/?$rid={rid}`, followed by
    /// `&$version={v}` when a version is given.
    pub fn twin_response_into(
        status: u16,
        request_id: &RequestId,
        version: Option<u64>,
        out: &mut String,
    ) {
        out.push_str("$iothub/twin/res/");
        push_u64(u64::from(status), out);
        out.push_str("/?$rid=");
        out.push_str(request_id.as_str());
        if let Some(v) = version {
            out.push_str("&$version=");
            push_u64(v, out);
        }
    }

    /// A twin response topic; see [`twin_response_into`].
    pub fn twin_response(status: u16, request_id: &RequestId, version: Option<u64>) -> String {
        let mut out = String::new();
        twin_response_into(status, request_id, version, &mut out);
        out
    }

    /// Appends `$iothub/twin/PATCH/properties/desired/?$version={v}`.
    pub fn desired_patch_into(version: u64, out: &mut String) {
        out.push_str("$iothub/twin/PATCH/properties/desired/?$version=");
        push_u64(version, out);
    }

    /// A desired-properties notification topic; see [`desired_patch_into`].
    pub fn desired_patch(version: u64) -> String {
        let mut out = String::new();
        desired_patch_into(version, &mut out);
        out
    }

    /// Appends `$iothub/methods/POST/{name}/?$rid={rid}`.
    ///
    /// Refuses a method name that is empty or holds a `/`
    /// ([`TopicError::InvalidMethodName`]); `out` is then left unchanged.
    pub fn method_request_into(
        name: &str,
        request_id: &RequestId,
        out: &mut String,
    ) -> Result<(), TopicError> {
        if name.is_empty() || name.contains('/') {
            return Err(TopicError::InvalidMethodName);
        }
        out.push_str("$iothub/methods/POST/");
        out.push_str(name);
        out.push_str("/?$rid=");
        out.push_str(request_id.as_str());
        Ok(())
    }

    /// A method request topic; see [`method_request_into`].
    pub fn method_request(name: &str, request_id: &RequestId) -> Result<String, TopicError> {
        let mut out = String::new();
        method_request_into(name, request_id, &mut out)?;
        Ok(out)
    }

    /// Appends `$dps/registrations/res/{status}/?$rid={rid}`, followed by
    /// `&retry-after={s}` when given.
    pub fn dps_response_into(
        status: u16,
        request_id: &RequestId,
        retry_after: Option<u32>,
        out: &mut String,
    ) {
        out.push_str("$dps/registrations/res/");
        push_u64(u64::from(status), out);
        out.push_str("/?$rid=");
        out.push_str(request_id.as_str());
        if let Some(s) = retry_after {
            out.push_str("&retry-after=");
            push_u64(u64::from(s), out);
        }
    }

    /// A DPS response topic; see [`dps_response_into`].
    pub fn dps_response(status: u16, request_id: &RequestId, retry_after: Option<u32>) -> String {
        let mut out = String::new();
        dps_response_into(status, request_id, retry_after, &mut out);
        out
    }
}

// ===========================================================================
// Device → hub parser (server side: fake hubs, emulators, gateways)
//
// Kept apart from the hub → device grammar above: nothing above depends on
// it. It reads back every topic the device builders of this module write.
// ===========================================================================

/// A device→hub topic, parsed by [`parse_device_topic`]. Borrows from the
/// topic string, except the decoded property bag and DPS operation id.
// A parse result lives briefly on the stack; boxing the properties would
// cost an allocation per telemetry message for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeviceTopic<'a> {
    /// Telemetry (device-to-cloud), also the topic of a will message:
    /// `devices/{d}/messages/events/{bag}` or
    /// `devices/{d}/modules/{m}/messages/events/{bag}`.
    Telemetry {
        /// The device id in the topic (a valid [`DeviceId`]).
        device_id: &'a str,
        /// The module id, for a module's telemetry (a valid [`ModuleId`]).
        module_id: Option<&'a str>,
        /// The decoded property bag (possibly empty).
        properties: MessageProperties,
    },
    /// A full twin request: `$iothub/twin/GET/?$rid={rid}`.
    TwinGet {
        /// The request id, to be echoed in the twin response.
        request_id: &'a str,
    },
    /// A reported-properties patch:
    /// `$iothub/twin/PATCH/properties/reported/?$rid={rid}`.
    TwinPatchReported {
        /// The request id, to be echoed in the twin response.
        request_id: &'a str,
    },
    /// The answer to a direct method: `$iothub/methods/res/{status}/?$rid={rid}`.
    MethodResponse {
        /// The status the device chose.
        status: u16,
        /// The request id of the method request being answered.
        request_id: &'a str,
    },
    /// A DPS registration request:
    /// `$dps/registrations/PUT/iotdps-register/?$rid={rid}`.
    DpsRegister {
        /// The request id.
        request_id: &'a str,
    },
    /// A DPS operation-status poll:
    /// `$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={id}`.
    DpsPoll {
        /// The request id.
        request_id: &'a str,
        /// The operation id, percent-decoded; never empty.
        operation_id: Cow<'a, str>,
    },
}

impl<'a> DeviceTopic<'a> {
    /// The request id, for the variants that carry one (all but telemetry).
    pub fn request_id(&self) -> Option<&'a str> {
        match *self {
            DeviceTopic::TwinGet { request_id }
            | DeviceTopic::TwinPatchReported { request_id }
            | DeviceTopic::MethodResponse { request_id, .. }
            | DeviceTopic::DpsRegister { request_id }
            | DeviceTopic::DpsPoll { request_id, .. } => Some(request_id),
            DeviceTopic::Telemetry { .. } => None,
        }
    }
}

/// Parses a device→hub topic, as a hub, an emulator or a gateway receives
/// it. Never panics, whatever the input. The inverse of the device builders
/// of this module ([`telemetry`], [`twin_get`], [`twin_patch_reported`],
/// [`method_response`], [`dps_register`], [`dps_poll`]).
///
/// | topic | result |
/// |---|---|
/// | `devices/{d}/messages/events/{bag}` | [`DeviceTopic::Telemetry`] |
/// | `devices/{d}/modules/{m}/messages/events/{bag}` | [`DeviceTopic::Telemetry`] |
/// | `$iothub/twin/GET/?{query}` with `$rid` | [`DeviceTopic::TwinGet`] |
/// | `$iothub/twin/PATCH/properties/reported/?{query}` with `$rid` | [`DeviceTopic::TwinPatchReported`] |
/// | `$iothub/methods/res/{status}/?{query}` with `$rid` | [`DeviceTopic::MethodResponse`] |
/// | `$dps/registrations/PUT/iotdps-register/?{query}` with `$rid` | [`DeviceTopic::DpsRegister`] |
/// | `$dps/registrations/GET/iotdps-get-operationstatus/?{query}` with `$rid`, `operationId` | [`DeviceTopic::DpsPoll`] |
///
/// The rules are those of [`parse`] (see the [module docs](self)): ids are
/// validated, the telemetry bag is everything after `events/` (it may be
/// empty, and the trailing `/` of `events/` is required), the status is
/// ASCII digits fitting a `u16`, the query follows `/?` exactly, `$rid`
/// follows the [`RequestId`] rules, unknown query parameters are ignored
/// and a used one given twice is [`TopicError::DuplicateParameter`]. The
/// `operationId` value is percent-decoded (leniently: a `%` not followed by
/// two hex digits stays as is) and must not be empty
/// ([`TopicError::MissingOperationId`]).
///
/// A topic outside these families, including every hub→device topic, is
/// [`TopicError::NoMatch`].
///
/// ```
/// use iothub_proto::topic::{parse_device_topic, DeviceTopic};
///
/// assert_eq!(
///     parse_device_topic("$iothub/methods/res/200/?$rid=7"),
///     Ok(DeviceTopic::MethodResponse { status: 200, request_id: "7" })
/// );
/// let Ok(DeviceTopic::Telemetry { device_id, module_id, properties }) =
///     parse_device_topic("devices/dev1/messages/events/%24.ct=application%2Fjson&k=v")
/// else {
///     panic!()
/// };
/// assert_eq!((device_id, module_id), ("dev1", None));
/// assert_eq!(properties.content_type.as_deref(), Some("application/json"));
/// assert!(parse_device_topic("$iothub/twin/res/200/?$rid=1").unwrap_err().is_no_match());
/// ```
pub fn parse_device_topic(topic: &str) -> Result<DeviceTopic<'_>, TopicError> {
    if let Some(rest) = topic.strip_prefix("$iothub/") {
        if let Some(rest) = rest.strip_prefix("twin/GET/") {
            let request_id = device_request_query(rest)?;
            return Ok(DeviceTopic::TwinGet { request_id });
        }
        if let Some(rest) = rest.strip_prefix("twin/PATCH/properties/reported/") {
            let request_id = device_request_query(rest)?;
            return Ok(DeviceTopic::TwinPatchReported { request_id });
        }
        if let Some(rest) = rest.strip_prefix("methods/res/") {
            let (status, query) = segment_and_query(rest);
            let status = parse_status(status)?;
            let query = query.ok_or(TopicError::MissingQuery)?;
            let [rid] = query_params(query, ["$rid"])?;
            return Ok(DeviceTopic::MethodResponse {
                status,
                request_id: request_id(rid)?,
            });
        }
        return Err(TopicError::NoMatch);
    }
    if let Some(rest) = topic.strip_prefix("$dps/registrations/") {
        if let Some(rest) = rest.strip_prefix("PUT/iotdps-register/") {
            let request_id = device_request_query(rest)?;
            return Ok(DeviceTopic::DpsRegister { request_id });
        }
        if let Some(rest) = rest.strip_prefix("GET/iotdps-get-operationstatus/") {
            let query = rest.strip_prefix('?').ok_or(TopicError::MissingQuery)?;
            let [rid, operation_id] = query_params(query, ["$rid", "operationId"])?;
            let request_id = request_id(rid)?;
            let operation_id = match operation_id {
                None | Some("") => return Err(TopicError::MissingOperationId),
                Some(id) => url_decode(id).ok_or(TopicError::InvalidOperationId)?,
            };
            return Ok(DeviceTopic::DpsPoll {
                request_id,
                operation_id,
            });
        }
        return Err(TopicError::NoMatch);
    }
    if let Some(rest) = topic.strip_prefix("devices/") {
        return parse_device_telemetry(rest);
    }
    Err(TopicError::NoMatch)
}

/// `?{query}` with a `$rid`: the request id.
fn device_request_query(rest: &str) -> Result<&str, TopicError> {
    let query = rest.strip_prefix('?').ok_or(TopicError::MissingQuery)?;
    let [rid] = query_params(query, ["$rid"])?;
    request_id(rid)
}

/// `devices/` has been stripped.
fn parse_device_telemetry(rest: &str) -> Result<DeviceTopic<'_>, TopicError> {
    let Some((device_id, rest)) = rest.split_once('/') else {
        return Err(TopicError::NoMatch);
    };
    let (module_id, bag) = if let Some(bag) = rest.strip_prefix("messages/events/") {
        (None, bag)
    } else {
        let Some(rest) = rest.strip_prefix("modules/") else {
            return Err(TopicError::NoMatch);
        };
        let Some((module_id, rest)) = rest.split_once('/') else {
            return Err(TopicError::NoMatch);
        };
        let Some(bag) = rest.strip_prefix("messages/events/") else {
            return Err(TopicError::NoMatch);
        };
        (Some(module_id), bag)
    };
    DeviceId::new(device_id).map_err(TopicError::InvalidId)?;
    if let Some(m) = module_id {
        ModuleId::new(m).map_err(TopicError::InvalidId)?;
    }
    let properties = MessageProperties::decode(bag).map_err(TopicError::InvalidProperties)?;
    Ok(DeviceTopic::Telemetry {
        device_id,
        module_id,
        properties,
    })
}

#[cfg(test)]
mod device_topic_tests {
    use super::*;
    use crate::properties::Ack;
    use alloc::format;
    use proptest::prelude::*;

    fn rid(s: &str) -> RequestId {
        RequestId::new(s).unwrap()
    }

    #[test]
    fn every_device_builder_parses_back() {
        let dev = Identity::parse("dev1", None).unwrap();
        let module = Identity::parse("dev1", Some("mod1")).unwrap();
        let mut p = MessageProperties::new();
        p.message_id = Some("m 1".into());
        p.content_type = Some("application/json".into());
        p.ack = Some(Ack::Full);
        p.add_application("k", "a/b=c").unwrap();
        p.add_application_opt("flag", None).unwrap();

        for props in [MessageProperties::new(), p] {
            assert_eq!(
                parse_device_topic(&telemetry(&dev, &props)),
                Ok(DeviceTopic::Telemetry {
                    device_id: "dev1",
                    module_id: None,
                    properties: props.clone(),
                })
            );
            assert_eq!(
                parse_device_topic(&telemetry(&module, &props)),
                Ok(DeviceTopic::Telemetry {
                    device_id: "dev1",
                    module_id: Some("mod1"),
                    properties: props.clone(),
                })
            );
        }
        let r = rid("17");
        assert_eq!(
            parse_device_topic(&twin_get(&r)),
            Ok(DeviceTopic::TwinGet { request_id: "17" })
        );
        assert_eq!(
            parse_device_topic(&twin_patch_reported(&r)),
            Ok(DeviceTopic::TwinPatchReported { request_id: "17" })
        );
        for status in [0, 200, 404, u16::MAX] {
            assert_eq!(
                parse_device_topic(&method_response(status, &r)),
                Ok(DeviceTopic::MethodResponse {
                    status,
                    request_id: "17"
                })
            );
        }
        assert_eq!(
            parse_device_topic(&dps_register(&r)),
            Ok(DeviceTopic::DpsRegister { request_id: "17" })
        );
        let t = dps_poll(&r, "4.e5b6a1d2c3.f0e1-ab/c d");
        assert_eq!(
            parse_device_topic(&t),
            Ok(DeviceTopic::DpsPoll {
                request_id: "17",
                operation_id: Cow::Borrowed("4.e5b6a1d2c3.f0e1-ab/c d"),
            })
        );
        assert_eq!(parse_device_topic(&t).unwrap().request_id(), Some("17"));
        assert_eq!(
            parse_device_topic(&telemetry(&dev, &MessageProperties::new()))
                .unwrap()
                .request_id(),
            None
        );
    }

    #[test]
    fn hub_topics_and_strangers_do_not_match() {
        let r = rid("1");
        let dev = Identity::parse("d", None).unwrap();
        for t in [
            hub::c2d(dev.device_id(), &MessageProperties::new()),
            hub::twin_response(200, &r, Some(1)),
            hub::desired_patch(3),
            hub::method_request("m", &r).unwrap(),
            hub::dps_response(202, &r, Some(1)),
            String::from(""),
            String::from("devices/d"),
            String::from("devices/d/messages/events"),
            String::from("devices/d/modules/m/messages/event/"),
            String::from("devices/d/modules/m"),
            String::from("devices/d/other/events/"),
            String::from("$iothub/twin/get/?$rid=1"),
            String::from("$iothub/other"),
            String::from("$dps/registrations/PUT/other/?$rid=1"),
            String::from("$dps/other"),
        ] {
            assert_eq!(parse_device_topic(&t), Err(TopicError::NoMatch), "{t}");
        }
    }

    #[test]
    fn malformed_device_topics() {
        for (t, e) in [
            ("$iothub/twin/GET/", TopicError::MissingQuery),
            ("$iothub/twin/GET/$rid=1", TopicError::MissingQuery),
            (
                "$iothub/twin/PATCH/properties/reported/x?$rid=1",
                TopicError::MissingQuery,
            ),
            ("$iothub/methods/res/200", TopicError::MissingQuery),
            (
                "$iothub/methods/res/200/x/?$rid=1",
                TopicError::MissingQuery,
            ),
            ("$iothub/methods/res/abc/?$rid=1", TopicError::InvalidStatus),
            (
                "$iothub/methods/res/65536/?$rid=1",
                TopicError::InvalidStatus,
            ),
            ("$iothub/methods/res//?$rid=1", TopicError::InvalidStatus),
            ("$iothub/twin/GET/?", TopicError::MissingRequestId),
            (
                "$iothub/twin/GET/?$rid=",
                TopicError::InvalidRequestId(RequestIdError::Empty),
            ),
            (
                "$iothub/twin/GET/?$rid=1&$rid=2",
                TopicError::DuplicateParameter("$rid"),
            ),
            (
                "$dps/registrations/PUT/iotdps-register/?x=1",
                TopicError::MissingRequestId,
            ),
            (
                "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=1",
                TopicError::MissingOperationId,
            ),
            (
                "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=1&operationId=",
                TopicError::MissingOperationId,
            ),
            (
                "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=1&operationId=%FF",
                TopicError::InvalidOperationId,
            ),
            (
                "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=1&operationId=a&operationId=b",
                TopicError::DuplicateParameter("operationId"),
            ),
            (
                "$dps/registrations/GET/iotdps-get-operationstatus/$rid=1",
                TopicError::MissingQuery,
            ),
        ] {
            assert_eq!(parse_device_topic(t), Err(e), "{t}");
        }
        assert!(matches!(
            parse_device_topic("devices/a b/messages/events/"),
            Err(TopicError::InvalidId(_))
        ));
        assert!(matches!(
            parse_device_topic("devices/d/modules/m#/messages/events/"),
            Err(TopicError::InvalidId(_))
        ));
        assert!(matches!(
            parse_device_topic("devices/d/messages/events/a&&b"),
            Err(TopicError::InvalidProperties(_))
        ));
        assert!(
            TopicError::MissingOperationId
                .to_string()
                .contains("operationId")
        );
        assert!(
            TopicError::InvalidOperationId
                .to_string()
                .contains("operationId")
        );
        // Unknown parameters are ignored; a raw `/` in the bag is part of it.
        assert_eq!(
            parse_device_topic("$iothub/twin/GET/?x=1&$rid=r"),
            Ok(DeviceTopic::TwinGet { request_id: "r" })
        );
        let Ok(DeviceTopic::Telemetry { properties, .. }) =
            parse_device_topic("devices/d/messages/events/k=a/b")
        else {
            panic!()
        };
        assert_eq!(properties.get_application("k"), Some(Some("a/b")));
    }

    fn any_identity() -> impl Strategy<Value = Identity> {
        (
            "[a-zA-Z0-9_.:-]{1,10}",
            prop::option::of("[a-zA-Z0-9_.:-]{1,10}"),
        )
            .prop_map(|(d, m)| Identity::parse(&d, m.as_deref()).unwrap())
    }

    proptest! {
        #[test]
        fn parse_device_topic_never_panics(s in "[0-9a-zA-Z$/?&=%+ ._-]{0,40}") {
            let _ = parse_device_topic(&s);
            let _ = parse_device_topic(&format!("$iothub/methods/res/{s}"));
            let _ = parse_device_topic(&format!("devices/{s}"));
            let _ = parse_device_topic(&format!("$dps/registrations/GET/iotdps-get-operationstatus/{s}"));
        }

        #[test]
        fn device_topics_round_trip(
            r in "[!-~]{1,20}".prop_filter_map("valid request id", |s| RequestId::new(s).ok()),
            status in any::<u16>(),
            op in any::<String>().prop_filter("non-empty", |s| !s.is_empty()),
            id in any_identity(),
            name in "[a-z ]{1,6}",
            value in any::<String>(),
        ) {
            let mut p = MessageProperties::new();
            p.add_application(name, value).unwrap();
            let t = telemetry(&id, &p);
            prop_assert_eq!(
                parse_device_topic(&t),
                Ok(DeviceTopic::Telemetry {
                    device_id: id.device_id().as_str(),
                    module_id: id.module_id().map(ModuleId::as_str),
                    properties: p.clone(),
                })
            );
            let t = twin_get(&r);
            prop_assert_eq!(
                parse_device_topic(&t),
                Ok(DeviceTopic::TwinGet { request_id: r.as_str() })
            );
            let t = twin_patch_reported(&r);
            prop_assert_eq!(
                parse_device_topic(&t),
                Ok(DeviceTopic::TwinPatchReported { request_id: r.as_str() })
            );
            let t = method_response(status, &r);
            prop_assert_eq!(
                parse_device_topic(&t),
                Ok(DeviceTopic::MethodResponse { status, request_id: r.as_str() })
            );
            let t = dps_register(&r);
            prop_assert_eq!(
                parse_device_topic(&t),
                Ok(DeviceTopic::DpsRegister { request_id: r.as_str() })
            );
            let t = dps_poll(&r, &op);
            prop_assert_eq!(
                parse_device_topic(&t),
                Ok(DeviceTopic::DpsPoll { request_id: r.as_str(), operation_id: Cow::Borrowed(op.as_str()) })
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::IdErrorReason;
    use crate::properties::{Ack, PairPart};
    use alloc::format;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    fn dev() -> Identity {
        Identity::parse("dev1", None).unwrap()
    }

    fn module() -> Identity {
        Identity::parse("dev1", Some("mod1")).unwrap()
    }

    fn rid(s: &str) -> RequestId {
        RequestId::new(s).unwrap()
    }

    // --- RequestId ---------------------------------------------------------

    #[test]
    fn request_id_rules() {
        for ok in [
            "1",
            "abc-DEF_123.~",
            "6b1c3f8e-3c8a-4d38",
            "$!*()'@:;,[]{}|<>^`\"\\",
        ] {
            assert_eq!(RequestId::new(ok).unwrap().as_str(), ok);
        }
        assert!(RequestId::new("a".repeat(MAX_REQUEST_ID_LEN)).is_ok());
        assert_eq!(RequestId::new(""), Err(RequestIdError::Empty));
        assert_eq!(
            RequestId::new("a".repeat(129)),
            Err(RequestIdError::TooLong { len: 129 })
        );
        for (bad, ch, index) in [
            ("a&b", '&', 1),
            ("a=b", '=', 1),
            ("/", '/', 0),
            ("a?", '?', 1),
            ("#", '#', 0),
            ("+", '+', 0),
            ("%41", '%', 0),
            ("a b", ' ', 1),
            ("a\tb", '\t', 1),
            ("a\u{7f}", '\u{7f}', 1),
            ("\0", '\0', 0),
            ("xé", 'é', 1),
        ] {
            assert_eq!(
                RequestId::new(bad),
                Err(RequestIdError::InvalidChar { ch, index }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn request_id_conversions() {
        let r = RequestId::from(42u64);
        assert_eq!(r.as_str(), "42");
        assert_eq!(RequestId::from(u64::MAX).as_str(), "18446744073709551615");
        assert!(r == "42");
        assert!("42" == r);
        assert_eq!(format!("{r} {r:?}"), "42 \"42\"");
        assert_eq!("x1".parse::<RequestId>().unwrap(), rid("x1"));
        assert!(RequestId::try_from("a b").is_err());
    }

    // --- device → hub builders ---------------------------------------------

    #[test]
    fn telemetry_topics() {
        let empty = MessageProperties::new();
        assert_eq!(telemetry(&dev(), &empty), "devices/dev1/messages/events/");
        assert_eq!(
            telemetry(&module(), &empty),
            "devices/dev1/modules/mod1/messages/events/"
        );
        let mut p = MessageProperties::new();
        p.content_type = Some("application/json".into());
        p.content_encoding = Some("utf-8".into());
        p.add_application("alert", "high temp").unwrap();
        assert_eq!(
            telemetry(&dev(), &p),
            "devices/dev1/messages/events/%24.ct=application%2Fjson&%24.ce=utf-8&alert=high%20temp"
        );
        assert_eq!(
            telemetry(&module(), &p),
            "devices/dev1/modules/mod1/messages/events/%24.ct=application%2Fjson&%24.ce=utf-8&alert=high%20temp"
        );
        // The `_into` form appends.
        let mut buf = String::from("x|");
        telemetry_into(&dev(), &empty, &mut buf);
        assert_eq!(buf, "x|devices/dev1/messages/events/");
    }

    #[test]
    fn request_topics() {
        let r = rid("17");
        assert_eq!(twin_get(&r), "$iothub/twin/GET/?$rid=17");
        assert_eq!(
            twin_patch_reported(&r),
            "$iothub/twin/PATCH/properties/reported/?$rid=17"
        );
        assert_eq!(method_response(200, &r), "$iothub/methods/res/200/?$rid=17");
        assert_eq!(method_response(0, &r), "$iothub/methods/res/0/?$rid=17");
        assert_eq!(
            method_response(u16::MAX, &r),
            "$iothub/methods/res/65535/?$rid=17"
        );
        assert_eq!(
            dps_register(&r),
            "$dps/registrations/PUT/iotdps-register/?$rid=17"
        );
        assert_eq!(
            dps_poll(&r, "4.e5b6a1d2c3.f0e1-ab/c d"),
            "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=17&operationId=4.e5b6a1d2c3.f0e1-ab%2Fc%20d"
        );

        let mut buf = String::new();
        twin_get_into(&r, &mut buf);
        buf.push('|');
        twin_patch_reported_into(&r, &mut buf);
        buf.push('|');
        method_response_into(404, &r, &mut buf);
        buf.push('|');
        dps_register_into(&r, &mut buf);
        buf.push('|');
        dps_poll_into(&r, "op", &mut buf);
        assert_eq!(
            buf,
            "$iothub/twin/GET/?$rid=17|$iothub/twin/PATCH/properties/reported/?$rid=17|\
             $iothub/methods/res/404/?$rid=17|$dps/registrations/PUT/iotdps-register/?$rid=17|\
             $dps/registrations/GET/iotdps-get-operationstatus/?$rid=17&operationId=op"
        );
    }

    #[test]
    fn filters() {
        let m = module();
        let d = m.device_id();
        let md = m.module_id().unwrap();
        assert_eq!(c2d_filter(d), "devices/dev1/messages/devicebound/#");
        assert_eq!(
            module_inputs_filter(d, md),
            "devices/dev1/modules/mod1/inputs/#"
        );
        let mut buf = String::new();
        c2d_filter_into(d, &mut buf);
        module_inputs_filter_into(d, md, &mut buf);
        assert_eq!(
            buf,
            "devices/dev1/messages/devicebound/#devices/dev1/modules/mod1/inputs/#"
        );
        assert_eq!(TWIN_RESPONSE_FILTER, "$iothub/twin/res/#");
        assert_eq!(
            DESIRED_PATCH_FILTER,
            "$iothub/twin/PATCH/properties/desired/#"
        );
        assert_eq!(METHOD_REQUEST_FILTER, "$iothub/methods/POST/#");
        assert_eq!(DPS_RESPONSE_FILTER, "$dps/registrations/res/#");
    }

    #[test]
    fn push_u64_matches_display() {
        for n in [0, 1, 9, 10, 99, 100, 65535, 1 << 40, u64::MAX] {
            let mut s = String::new();
            push_u64(n, &mut s);
            assert_eq!(s, n.to_string());
        }
    }

    // --- parse: valid topics -----------------------------------------------

    #[test]
    fn parses_c2d() {
        let t = "devices/dev1/messages/devicebound/%24.mid=6b1c&%24.to=%2Fdevices%2Fdev1%2Fmessages%2FdeviceBound&iothub-ack=full&k=v";
        let HubTopic::C2d {
            device_id,
            properties,
        } = parse(t).unwrap()
        else {
            panic!("not c2d")
        };
        assert_eq!(device_id, "dev1");
        assert_eq!(properties.message_id.as_deref(), Some("6b1c"));
        assert_eq!(
            properties.to.as_deref(),
            Some("/devices/dev1/messages/deviceBound")
        );
        assert_eq!(properties.ack, Some(Ack::Full));
        assert_eq!(properties.get_application("k"), Some(Some("v")));

        assert_eq!(
            parse("devices/dev1/messages/devicebound/"),
            Ok(HubTopic::C2d {
                device_id: "dev1",
                properties: MessageProperties::new()
            })
        );
    }

    #[test]
    fn parses_module_input() {
        let t = "devices/dev1/modules/mod1/inputs/input1/%24.cdid=dev1&%24.cmid=other&k=v";
        let HubTopic::ModuleInput {
            device_id,
            module_id,
            input,
            properties,
        } = parse(t).unwrap()
        else {
            panic!("not a module input")
        };
        assert_eq!((device_id, module_id, input), ("dev1", "mod1", "input1"));
        assert_eq!(properties.connection_device_id.as_deref(), Some("dev1"));
        assert_eq!(properties.connection_module_id.as_deref(), Some("other"));
        assert_eq!(properties.get_application("k"), Some(Some("v")));

        assert_eq!(
            parse("devices/dev1/modules/mod1/inputs/in/"),
            Ok(HubTopic::ModuleInput {
                device_id: "dev1",
                module_id: "mod1",
                input: "in",
                properties: MessageProperties::new()
            })
        );
    }

    #[test]
    fn parses_twin_response() {
        assert_eq!(
            parse("$iothub/twin/res/200/?$rid=1"),
            Ok(HubTopic::TwinResponse {
                status: 200,
                request_id: "1",
                version: None
            })
        );
        let expected = Ok(HubTopic::TwinResponse {
            status: 204,
            request_id: "abc",
            version: Some(7),
        });
        assert_eq!(parse("$iothub/twin/res/204/?$rid=abc&$version=7"), expected);
        assert_eq!(parse("$iothub/twin/res/204/?$version=7&$rid=abc"), expected);
        assert_eq!(
            parse("$iothub/twin/res/204/?x=1&$version=7&&y&$rid=abc&retry-after=z"),
            expected
        );
        assert_eq!(
            parse("$iothub/twin/res/429/?$rid=9&$version=18446744073709551615"),
            Ok(HubTopic::TwinResponse {
                status: 429,
                request_id: "9",
                version: Some(u64::MAX)
            })
        );
        assert_eq!(
            parse("$iothub/twin/res/0065535/?$rid=1"),
            Ok(HubTopic::TwinResponse {
                status: 65535,
                request_id: "1",
                version: None
            })
        );
    }

    #[test]
    fn parses_desired_patch() {
        assert_eq!(
            parse("$iothub/twin/PATCH/properties/desired/?$version=3"),
            Ok(HubTopic::DesiredPatch { version: 3 })
        );
        assert_eq!(
            parse("$iothub/twin/PATCH/properties/desired/?$rid=5&$version=3"),
            Ok(HubTopic::DesiredPatch { version: 3 })
        );
    }

    #[test]
    fn parses_method_request() {
        let t = parse("$iothub/methods/POST/reboot/?$rid=1f").unwrap();
        assert_eq!(
            t,
            HubTopic::MethodRequest {
                name: "reboot",
                request_id: "1f"
            }
        );
        assert_eq!(t.request_id(), Some("1f"));
        assert_eq!(
            parse("$iothub/methods/POST/a?b/?$rid=1"),
            Ok(HubTopic::MethodRequest {
                name: "a?b",
                request_id: "1"
            })
        );
        assert!(RequestId::new(t.request_id().unwrap()).is_ok());
    }

    #[test]
    fn parses_dps_response() {
        assert_eq!(
            parse("$dps/registrations/res/202/?$rid=1&retry-after=3"),
            Ok(HubTopic::DpsResponse {
                status: 202,
                request_id: "1",
                retry_after: Some(3)
            })
        );
        assert_eq!(
            parse("$dps/registrations/res/200/?$rid=1"),
            Ok(HubTopic::DpsResponse {
                status: 200,
                request_id: "1",
                retry_after: None
            })
        );
    }

    // --- parse: no match ---------------------------------------------------

    #[test]
    fn no_match() {
        for t in [
            "",
            "foo",
            "devices",
            "devices/",
            "devices/d",
            "devices/d/messages/events/",
            "devices/d/messages/events/a=b",
            "devices/d/modules/m/messages/events/",
            "devices/d/messages/devicebound",
            "devices/d/modules/m/inputs",
            "devices/d/modules/m",
            "devices/d/twin",
            "$iothub/unknown/res/200/?$rid=1",
            "$iothub/twin/GET/?$rid=1",
            "$iothub/twin/PATCH/properties/reported/?$rid=1",
            "$iothub/twin/res",
            "$iothub/methods/res/200/?$rid=1",
            "$iothub/methods/POST",
            "$iothub/twin/PATCH/properties/desired",
            "$dps/registrations/PUT/iotdps-register/?$rid=1",
            "$dps/registrations/res",
            "$IOTHUB/twin/res/200/?$rid=1",
            "/devices/d/messages/devicebound/",
        ] {
            let e = parse(t).unwrap_err();
            assert!(e.is_no_match(), "{t:?} gave {e:?}");
        }
        assert_eq!(
            TopicError::NoMatch.to_string(),
            "not an IoT Hub device-bound topic"
        );
    }

    // --- parse: malformed topics of known families ------------------------

    #[test]
    fn malformed_status() {
        for t in [
            "$iothub/twin/res/abc/?$rid=1",
            "$iothub/twin/res//?$rid=1",
            "$iothub/twin/res/",
            "$iothub/twin/res/+200/?$rid=1",
            "$iothub/twin/res/-1/?$rid=1",
            "$iothub/twin/res/ 200/?$rid=1",
            "$iothub/twin/res/65536/?$rid=1",
            "$iothub/twin/res/2OO/?$rid=1",
            "$iothub/twin/res/200?$rid=1",
            "$dps/registrations/res/x/?$rid=1",
            "$dps/registrations/res/99999999999999999999999/?$rid=1",
        ] {
            assert_eq!(parse(t), Err(TopicError::InvalidStatus), "{t}");
        }
    }

    #[test]
    fn malformed_query() {
        for t in [
            "$iothub/twin/res/200",
            "$iothub/twin/res/200/",
            "$iothub/twin/res/200/$rid=1",
            "$iothub/twin/res/200/x/?$rid=1",
            "$iothub/twin/PATCH/properties/desired/",
            "$iothub/twin/PATCH/properties/desired/$version=1",
            "$iothub/twin/PATCH/properties/desired/x/?$version=1",
            "$iothub/methods/POST/reboot",
            "$iothub/methods/POST/reboot?$rid=1",
            "$iothub/methods/POST/reboot/",
            "$iothub/methods/POST/a/b/?$rid=1",
            "$dps/registrations/res/202",
        ] {
            assert_eq!(parse(t), Err(TopicError::MissingQuery), "{t}");
        }
    }

    #[test]
    fn malformed_request_ids() {
        for t in [
            "$iothub/twin/res/200/?",
            "$iothub/twin/res/200/?$version=1",
            "$iothub/twin/res/200/?$RID=1",
            "$iothub/methods/POST/m/?rid=1",
            "$dps/registrations/res/202/?retry-after=1",
        ] {
            assert_eq!(parse(t), Err(TopicError::MissingRequestId), "{t}");
        }
        for (t, e) in [
            ("$iothub/twin/res/200/?$rid=", RequestIdError::Empty),
            ("$iothub/twin/res/200/?$rid", RequestIdError::Empty),
            ("$iothub/methods/POST/m/?$rid=&x=1", RequestIdError::Empty),
            (
                "$iothub/twin/res/200/?$rid=a=b",
                RequestIdError::InvalidChar { ch: '=', index: 1 },
            ),
            (
                "$iothub/methods/POST/m/?$rid=a b",
                RequestIdError::InvalidChar { ch: ' ', index: 1 },
            ),
            (
                "$dps/registrations/res/202/?$rid=%31",
                RequestIdError::InvalidChar { ch: '%', index: 0 },
            ),
        ] {
            assert_eq!(parse(t), Err(TopicError::InvalidRequestId(e)), "{t}");
        }
        let long = format!("$iothub/twin/res/200/?$rid={}", "1".repeat(129));
        assert_eq!(
            parse(&long),
            Err(TopicError::InvalidRequestId(RequestIdError::TooLong {
                len: 129
            }))
        );
        assert_eq!(
            parse("$iothub/twin/res/200/?$rid=1&$rid=1"),
            Err(TopicError::DuplicateParameter("$rid"))
        );
    }

    #[test]
    fn malformed_versions() {
        assert_eq!(
            parse("$iothub/twin/PATCH/properties/desired/?"),
            Err(TopicError::MissingVersion)
        );
        assert_eq!(
            parse("$iothub/twin/PATCH/properties/desired/?$rid=1"),
            Err(TopicError::MissingVersion)
        );
        for t in [
            "$iothub/twin/PATCH/properties/desired/?$version=",
            "$iothub/twin/PATCH/properties/desired/?$version",
            "$iothub/twin/PATCH/properties/desired/?$version=abc",
            "$iothub/twin/PATCH/properties/desired/?$version=-1",
            "$iothub/twin/PATCH/properties/desired/?$version=+1",
            "$iothub/twin/PATCH/properties/desired/?$version=18446744073709551616",
            "$iothub/twin/res/204/?$rid=1&$version=x",
            "$iothub/twin/res/204/?$rid=1&$version=",
        ] {
            assert_eq!(parse(t), Err(TopicError::InvalidVersion), "{t}");
        }
        assert_eq!(
            parse("$iothub/twin/PATCH/properties/desired/?$version=1&$version=2"),
            Err(TopicError::DuplicateParameter("$version"))
        );
    }

    #[test]
    fn malformed_retry_after() {
        for t in [
            "$dps/registrations/res/202/?$rid=1&retry-after=",
            "$dps/registrations/res/202/?$rid=1&retry-after=1.5",
            "$dps/registrations/res/202/?$rid=1&retry-after=4294967296",
        ] {
            assert_eq!(parse(t), Err(TopicError::InvalidRetryAfter), "{t}");
        }
        assert_eq!(
            parse("$dps/registrations/res/202/?$rid=1&retry-after=1&retry-after=2"),
            Err(TopicError::DuplicateParameter("retry-after"))
        );
    }

    #[test]
    fn malformed_names() {
        assert_eq!(
            parse("$iothub/methods/POST//?$rid=1"),
            Err(TopicError::EmptyMethodName)
        );
        assert_eq!(
            parse("$iothub/methods/POST/"),
            Err(TopicError::EmptyMethodName)
        );
        assert_eq!(
            parse("devices/d/modules/m/inputs//k=v"),
            Err(TopicError::EmptyInputName)
        );
        assert_eq!(
            parse("devices/d/modules/m/inputs/"),
            Err(TopicError::EmptyInputName)
        );
        assert_eq!(
            parse("devices/d/modules/m/inputs/in1"),
            Err(TopicError::MissingBagSeparator)
        );
    }

    #[test]
    fn malformed_ids_and_bags() {
        let e = parse("devices//messages/devicebound/").unwrap_err();
        assert!(matches!(
            e,
            TopicError::InvalidId(IdError {
                reason: IdErrorReason::Empty,
                ..
            })
        ));
        let e = parse("devices/a b/messages/devicebound/").unwrap_err();
        assert!(
            matches!(
                e,
                TopicError::InvalidId(IdError {
                    reason: IdErrorReason::InvalidChar { ch: ' ', index: 1 },
                    ..
                })
            ),
            "{e:?}"
        );
        let e = parse("devices/d/modules/m#/inputs/x/").unwrap_err();
        let TopicError::InvalidId(id) = e else {
            panic!("{e:?}")
        };
        assert_eq!(id.kind, crate::auth::IdKind::Module);
        let long = format!("devices/{}/messages/devicebound/", "d".repeat(129));
        assert!(matches!(parse(&long), Err(TopicError::InvalidId(_))));

        assert_eq!(
            parse("devices/d/messages/devicebound/a=%zz"),
            Err(TopicError::InvalidProperties(
                PropertyError::InvalidPercentEncoding {
                    index: 0,
                    part: PairPart::Value
                }
            ))
        );
        assert_eq!(
            parse("devices/d/modules/m/inputs/i/a&&b"),
            Err(TopicError::InvalidProperties(PropertyError::EmptyPair {
                index: 1
            }))
        );
        // A raw `/` in the bag is part of the bag.
        let HubTopic::C2d { properties, .. } =
            parse("devices/d/messages/devicebound/k=a/b").unwrap()
        else {
            panic!()
        };
        assert_eq!(properties.get_application("k"), Some(Some("a/b")));
    }

    #[test]
    fn errors_display_and_source() {
        use core::error::Error;
        let e = parse("$iothub/twin/res/abc/?$rid=1").unwrap_err();
        assert!(e.to_string().contains("status"));
        assert!(e.source().is_none());
        let e = parse("devices/d/messages/devicebound/%").unwrap_err();
        assert!(e.to_string().contains("property bag"), "{e}");
        assert!(e.source().is_some());
        assert!(!e.is_no_match());
    }

    // --- hub builders and round trips -------------------------------------

    #[test]
    fn hub_builders_round_trip() {
        let r = rid("42");
        let t = hub::twin_response(200, &r, None);
        assert_eq!(t, "$iothub/twin/res/200/?$rid=42");
        assert_eq!(
            parse(&t),
            Ok(HubTopic::TwinResponse {
                status: 200,
                request_id: "42",
                version: None
            })
        );
        let t = hub::twin_response(204, &r, Some(5));
        assert_eq!(t, "$iothub/twin/res/204/?$rid=42&$version=5");
        assert_eq!(
            parse(&t),
            Ok(HubTopic::TwinResponse {
                status: 204,
                request_id: "42",
                version: Some(5)
            })
        );
        let t = hub::desired_patch(9);
        assert_eq!(t, "$iothub/twin/PATCH/properties/desired/?$version=9");
        assert_eq!(parse(&t), Ok(HubTopic::DesiredPatch { version: 9 }));
        let t = hub::method_request("reboot", &r).unwrap();
        assert_eq!(t, "$iothub/methods/POST/reboot/?$rid=42");
        assert_eq!(
            parse(&t),
            Ok(HubTopic::MethodRequest {
                name: "reboot",
                request_id: "42"
            })
        );
        assert_eq!(
            hub::method_request("", &r),
            Err(TopicError::InvalidMethodName)
        );
        assert_eq!(
            hub::method_request("a/b", &r),
            Err(TopicError::InvalidMethodName)
        );
        let t = hub::dps_response(202, &r, Some(3));
        assert_eq!(t, "$dps/registrations/res/202/?$rid=42&retry-after=3");
        assert_eq!(
            parse(&t),
            Ok(HubTopic::DpsResponse {
                status: 202,
                request_id: "42",
                retry_after: Some(3)
            })
        );

        let m = module();
        let mut p = MessageProperties::new();
        p.message_id = Some("m 1".into());
        p.ack = Some(Ack::Positive);
        p.add_application_opt("flag", None).unwrap();
        let t = hub::c2d(m.device_id(), &p);
        assert_eq!(
            t,
            "devices/dev1/messages/devicebound/%24.mid=m%201&iothub-ack=positive&flag"
        );
        assert_eq!(
            parse(&t),
            Ok(HubTopic::C2d {
                device_id: "dev1",
                properties: p.clone()
            })
        );
        let t = hub::module_input(m.device_id(), m.module_id().unwrap(), "in1", &p).unwrap();
        assert_eq!(
            t,
            "devices/dev1/modules/mod1/inputs/in1/%24.mid=m%201&iothub-ack=positive&flag"
        );
        assert_eq!(
            parse(&t),
            Ok(HubTopic::ModuleInput {
                device_id: "dev1",
                module_id: "mod1",
                input: "in1",
                properties: p.clone()
            })
        );
        let mut out = String::from("keep");
        assert_eq!(
            hub::module_input_into(m.device_id(), m.module_id().unwrap(), "", &p, &mut out),
            Err(TopicError::InvalidInputName)
        );
        assert_eq!(out, "keep");
    }

    #[test]
    fn method_response_answers_a_parsed_request() {
        let HubTopic::MethodRequest { request_id, .. } =
            parse("$iothub/methods/POST/getLog/?$rid=a1").unwrap()
        else {
            panic!()
        };
        let r = RequestId::new(request_id).unwrap();
        assert_eq!(method_response(200, &r), "$iothub/methods/res/200/?$rid=a1");
    }

    // --- property tests ----------------------------------------------------

    fn any_string() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::collection::vec(any::<char>(), 0..16).prop_map(String::from_iter),
            "[a-z0-9$./?&=%#+ -]{0,12}",
        ]
    }

    fn any_request_id() -> impl Strategy<Value = RequestId> {
        "[!-~]{1,20}".prop_filter_map("valid request id", |s| RequestId::new(s).ok())
    }

    fn any_identity() -> impl Strategy<Value = Identity> {
        (
            "[a-zA-Z0-9_.:-]{1,10}",
            prop::option::of("[a-zA-Z0-9_.:-]{1,10}"),
        )
            .prop_map(|(d, m)| Identity::parse(&d, m.as_deref()).unwrap())
    }

    prop_compose! {
        fn any_properties()(
            mid in prop::option::of(any_string()),
            ct in prop::option::of(any_string()),
            ack in prop::option::of(prop_oneof![Just(Ack::None), Just(Ack::Full)]),
            app in prop::collection::vec((any_string(), prop::option::of(any_string())), 0..5),
        ) -> MessageProperties {
            let mut p = MessageProperties::new();
            p.message_id = mid;
            p.content_type = ct;
            p.ack = ack;
            for (n, v) in app {
                // Names that are refused are simply skipped.
                let _ = p.add_application_opt(n, v);
            }
            p
        }
    }

    const PREFIXES: &[&str] = &[
        "devices/d/messages/devicebound/",
        "devices/d/modules/m/inputs/",
        "$iothub/twin/res/",
        "$iothub/twin/PATCH/properties/desired/",
        "$iothub/methods/POST/",
        "$dps/registrations/res/",
        "",
    ];

    proptest! {
        #[test]
        fn parse_never_panics(s in any_string()) {
            let _ = parse(&s);
        }

        #[test]
        fn parse_never_panics_on_known_prefixes(
            prefix in prop::sample::select(PREFIXES),
            rest in "[0-9a-z$/?&=%+ ._-]{0,24}",
        ) {
            let _ = parse(&format!("{prefix}{rest}"));
        }

        #[test]
        fn telemetry_bag_decodes_back(id in any_identity(), p in any_properties()) {
            let t = telemetry(&id, &p);
            let mut prefix = String::new();
            telemetry_into(&id, &MessageProperties::new(), &mut prefix);
            let bag = t.strip_prefix(prefix.as_str()).unwrap();
            prop_assert!(!bag.contains('/'));
            prop_assert_eq!(crate::properties::decode(bag), Ok(p));
            // Telemetry is device→hub: never a hub→device topic.
            prop_assert_eq!(parse(&t), Err(TopicError::NoMatch));
        }

        #[test]
        fn hub_topics_round_trip(
            r in any_request_id(),
            status in any::<u16>(),
            version in any::<Option<u64>>(),
            retry in any::<Option<u32>>(),
            name in "[^/]{1,12}",
            id in any_identity(),
            p in any_properties(),
        ) {
            let t = hub::twin_response(status, &r, version);
            prop_assert_eq!(
                parse(&t),
                Ok(HubTopic::TwinResponse { status, request_id: r.as_str(), version })
            );
            let v = version.unwrap_or(0);
            let t = hub::desired_patch(v);
            prop_assert_eq!(parse(&t), Ok(HubTopic::DesiredPatch { version: v }));
            let t = hub::method_request(&name, &r).unwrap();
            prop_assert_eq!(
                parse(&t),
                Ok(HubTopic::MethodRequest { name: name.as_str(), request_id: r.as_str() })
            );
            let t = hub::dps_response(status, &r, retry);
            prop_assert_eq!(
                parse(&t),
                Ok(HubTopic::DpsResponse { status, request_id: r.as_str(), retry_after: retry })
            );
            let t = hub::c2d(id.device_id(), &p);
            prop_assert_eq!(
                parse(&t),
                Ok(HubTopic::C2d { device_id: id.device_id().as_str(), properties: p.clone() })
            );
            if let Some(m) = id.module_id() {
                let t = hub::module_input(id.device_id(), m, &name, &p).unwrap();
                prop_assert_eq!(
                    parse(&t),
                    Ok(HubTopic::ModuleInput {
                        device_id: id.device_id().as_str(),
                        module_id: m.as_str(),
                        input: name.as_str(),
                        properties: p.clone(),
                    })
                );
            }
        }

        #[test]
        fn request_topics_embed_the_id_verbatim(r in any_request_id(), status in any::<u16>()) {
            let t = method_response(status, &r);
            let tail = format!("/?$rid={r}");
            prop_assert!(t.ends_with(tail.as_str()));
            let parts: Vec<&str> = t.split('/').collect();
            let status = status.to_string();
            prop_assert_eq!(parts.get(3).copied(), Some(status.as_str()));
        }
    }
}
