//! The IoT Hub topic grammar: builders for every device→hub topic and
//! subscription filter, and one parser, [`parse`], for every hub→device topic.
//!
//! Topics are parsed once, at the door, into [`HubTopic`]: status codes are
//! integers, versions are `u64`, request ids are borrowed from the topic as
//! they travel, names are percent-decoded, and property bags are decoded
//! into [`MessageProperties`]. A topic outside this grammar is
//! [`TopicError::NoMatch`], which the session can treat as "not for me";
//! a topic of a known family that breaks a rule the device must rely on is
//! another [`TopicError`] variant saying what is wrong.
//!
//! **Liberal in what it accepts.** Real hubs and the official SDKs' test
//! data carry shapes this crate's own builders never write; the parser
//! reads them rather than refuse a message over a part the device only
//! reads. **Strict where the device interprets**: ids, statuses, versions
//! and names must be exactly readable.
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
//! - Device and module ids must be valid [`DeviceId`]s / [`ModuleId`]s
//!   (they are not percent-decoded: the hub writes them as they are).
//! - A `{bag}` is everything after the fixed segments (a raw `/` in it is
//!   part of it, one trailing `/` is dropped); it may be empty, and it
//!   always decodes ([`MessageProperties::decode`]: value-less properties,
//!   `iothub-ack=Full`, unknown names and repeated names are all kept). A
//!   module input topic without a `/` after `{input}` has an empty bag.
//! - `{input}` and a method `{name}` must not be empty, run to the next `/`
//!   and are percent-decoded strictly ([`TopicError::InvalidEncoding`] for
//!   a broken `%` sequence or text that is not UTF-8); `+` is a plus.
//! - `{status}` is one or more ASCII digits whose value fits a `u16`
//!   (no sign, no spaces).
//! - The query follows `/?`, as the hub sends it
//!   (`$iothub/twin/res/200/?$rid=1`). When the rest of the topic has no
//!   `/` at all, a `?` ends the status or name instead
//!   (`$iothub/twin/res/200?$rid=1`, `$iothub/methods/POST/Reboot?$rid=1`,
//!   shapes of Microsoft's Node SDK's test data). A segment between the
//!   status or name and `/?` (`…/200/x/?$rid=1`) is
//!   [`TopicError::MissingQuery`].
//! - Query parameters are `name=value` pairs joined by `&`, in any order.
//!   Parameters the family does not use are ignored; `$rid` or `$version`
//!   given twice is [`TopicError::DuplicateParameter`]. `$rid` is taken as
//!   it travels, any text (see [`RequestId`]); `$version` is ASCII digits.
//!   `retry-after` is matched in any letter case (`Retry-After`), the first
//!   one counts, and a value that is not a whole number of seconds reads as
//!   absent (the caller's default delay applies).
//!
//! Parsing a twin response, desired patch, method request or DPS response
//! does not allocate unless a name needs percent-decoding. C2D and module
//! input topics allocate for the decoded properties (and to validate the
//! ids).
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
//! gateways: [`hub`] builds hub→device topics (this crate's own tests use
//! them as a fake peer), and [`query`] holds the query rules that
//! `iothub-hub`'s parser of device→hub topics shares.

use alloc::borrow::Cow;
use alloc::string::{String, ToString};
use core::fmt;

use crate::text::url_decode;

use crate::auth::{DeviceId, IdError, Identity, ModuleId};
use crate::properties::{MessageProperties, percent_encode_into};

/// Subscription filter for twin responses.
pub const TWIN_RESPONSE_FILTER: &str = "$iothub/twin/res/#";
/// Subscription filter for desired-property notifications.
pub const DESIRED_PATCH_FILTER: &str = "$iothub/twin/PATCH/properties/desired/#";
/// Subscription filter for direct method requests.
pub const METHOD_REQUEST_FILTER: &str = "$iothub/methods/POST/#";
/// Subscription filter for Device Provisioning Service responses.
pub const DPS_RESPONSE_FILTER: &str = "$dps/registrations/res/#";

/// A request id (`$rid`): an opaque value that correlates a request with
/// its response.
///
/// The seed document says a request id may be any valid property value,
/// so every `$rid` a peer sends is accepted, whatever its length or
/// characters, and kept **as it travels** in the topic (its wire form,
/// [`as_str`](Self::as_str)): an answer echoes it byte for byte, as the
/// Azure C, C#, Java and Node device SDKs do, so the peer finds exactly what
/// it sent. [`decoded`](Self::decoded) gives the value it percent-decodes
/// to (`+` stays a plus).
///
/// Ids this crate makes are decimal counters ([`RequestId::from`] a `u64`);
/// [`RequestId::new`] turns any other value into a wire form that every
/// peer reads back as that value.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(String);

impl RequestId {
    /// The request id for `value`, percent-encoded like a property bag
    /// value (RFC 3986 unreserved characters stay as they are, so numbers,
    /// UUIDs and hex strings are unchanged).
    pub fn new(value: &str) -> Self {
        let mut wire = String::with_capacity(value.len());
        percent_encode_into(value, &mut wire);
        Self(wire)
    }

    /// A request id as received in a topic's query: kept as is.
    pub fn from_wire(wire: impl Into<String>) -> Self {
        Self(wire.into())
    }

    /// The id as it travels in a topic (`$rid={this}`).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The value the id percent-decodes to; the wire form itself if that
    /// is not UTF-8.
    pub fn decoded(&self) -> Cow<'_, str> {
        url_decode(&self.0).unwrap_or(Cow::Borrowed(&self.0))
    }
}

impl From<u64> for RequestId {
    fn from(n: u64) -> Self {
        Self(n.to_string())
    }
}

/// [`RequestId::new`]: the value, percent-encoded as needed.
impl core::str::FromStr for RequestId {
    type Err = core::convert::Infallible;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Ok(Self::new(value))
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for RequestId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

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
/// `$iothub/methods/res/{status}/?$rid={rid}`. The status is any integer
/// (the protocol says "an integer"; negative ones are written with `-`).
pub fn method_response_into(status: i32, request_id: &RequestId, out: &mut String) {
    out.push_str("$iothub/methods/res/");
    if status < 0 {
        out.push('-');
    }
    push_u64(u64::from(status.unsigned_abs()), out);
    out.push_str("/?$rid=");
    out.push_str(request_id.as_str());
}

/// The direct-method response topic; see [`method_response_into`].
pub fn method_response(status: i32, request_id: &RequestId) -> String {
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
        /// (see [`RequestId`]).
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
        /// topic ([`RequestId::from_wire`]); any text, even empty.
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
    /// Only from the [`hub`] builders: an empty method name.
    InvalidMethodName,
    /// Only from the [`hub`] builders: an empty input name.
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

/// The query rules of the topic grammar, shared by both directions: for a
/// server that reads device→hub topics (`iothub-hub`'s parser) with the
/// rules this crate reads hub→device topics with.
pub mod query {
    use super::TopicError;

    /// Splits `{segment}/?{query}` (or `{segment}?{query}` when the rest
    /// holds no `/`): the segment, and the query if there is one.
    #[must_use]
    pub fn split(rest: &str) -> (&str, Option<&str>) {
        super::segment_and_query(rest)
    }

    /// Looks `keys` up in a `&`-separated query in one pass: a pair without
    /// `=` has an empty value, other keys are ignored, a key given twice is
    /// [`TopicError::DuplicateParameter`] (`retry-after` aside: matched in
    /// any case, the first one counts).
    pub fn params<'a, const N: usize>(
        query: &'a str,
        keys: [&'static str; N],
    ) -> Result<[Option<&'a str>; N], TopicError> {
        super::query_params(query, keys)
    }

    /// Whether `s` is one or more ASCII digits.
    #[must_use]
    pub fn is_digits(s: &str) -> bool {
        super::all_digits(s)
    }

    /// A hub status: ASCII digits fitting a `u16`
    /// ([`TopicError::InvalidStatus`] otherwise).
    pub fn status(s: &str) -> Result<u16, TopicError> {
        super::parse_status(s)
    }
}

/// Splits `{segment}/?{query}`: the segment runs to the first `/`, and the
/// query follows it after `?`. Without any `/`, a `?` ends the segment
/// instead (`200?$rid=1`, `Reboot?$rid=1`: shapes some SDKs' test data use).
fn segment_and_query(rest: &str) -> (&str, Option<&str>) {
    match rest.split_once('/') {
        Some((segment, tail)) => (segment, tail.strip_prefix('?')),
        None => match rest.split_once('?') {
            Some((segment, query)) => (segment, Some(query)),
            None => (rest, None),
        },
    }
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

/// The name of the DPS retry delay parameter; matched in any letter case
/// (some service paths send `Retry-After`), and the first one wins.
const RETRY_AFTER: &str = "retry-after";

/// Looks `keys` up in a `&`-separated query in one pass. A pair without `=`
/// has an empty value; other keys are ignored. Errors when a key appears
/// twice ([`RETRY_AFTER`] aside: advice, the first one counts).
fn query_params<'a, const N: usize>(
    query: &'a str,
    keys: [&'static str; N],
) -> Result<[Option<&'a str>; N], TopicError> {
    let mut found = [None; N];
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let hit = found.iter_mut().zip(keys).find(|(_, k)| {
            *k == name || (*k == RETRY_AFTER && name.eq_ignore_ascii_case(RETRY_AFTER))
        });
        if let Some((slot, key)) = hit {
            if slot.is_some() {
                if key == RETRY_AFTER {
                    continue;
                }
                return Err(TopicError::DuplicateParameter(key));
            }
            *slot = Some(value);
        }
    }
    Ok(found)
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

/// Builders for hub→device topics, for fake hubs and tests. Everything they
/// build parses back with [`parse`] into the same values.
pub mod hub {
    use alloc::string::String;
    use core::fmt::Write as _;

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

    /// Appends `devices/{d}/modules/{m}/inputs/{input}/{bag}`. The input
    /// name goes as it is, except what a topic segment cannot carry (`%`,
    /// `/`, `?`, `#`, `+` and control characters), which is
    /// percent-encoded: a device that decodes names reads it back, one
    /// that does not sees the usual names unchanged.
    ///
    /// Refuses an empty input name ([`TopicError::InvalidInputName`]);
    /// `out` is then left unchanged.
    pub fn module_input_into(
        device_id: &DeviceId,
        module_id: &ModuleId,
        input: &str,
        properties: &MessageProperties,
        out: &mut String,
    ) -> Result<(), TopicError> {
        if input.is_empty() {
            return Err(TopicError::InvalidInputName);
        }
        push_device_prefix(device_id, Some(module_id), out);
        out.push_str("/inputs/");
        push_name(input, out);
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

    /// Appends `$iothub/methods/POST/{name}/?$rid={rid}`; the name is
    /// written as [`module_input_into`] writes an input name.
    ///
    /// Refuses an empty method name ([`TopicError::InvalidMethodName`]);
    /// `out` is then left unchanged.
    pub fn method_request_into(
        name: &str,
        request_id: &RequestId,
        out: &mut String,
    ) -> Result<(), TopicError> {
        if name.is_empty() {
            return Err(TopicError::InvalidMethodName);
        }
        out.push_str("$iothub/methods/POST/");
        push_name(name, out);
        out.push_str("/?$rid=");
        out.push_str(request_id.as_str());
        Ok(())
    }

    /// Appends a method or input name, percent-encoding only what a topic
    /// segment cannot carry (`%`, `/`, `?`, `#`, `+`, control characters);
    /// everything else, non-ASCII included, goes as it is.
    fn push_name(name: &str, out: &mut String) {
        for c in name.chars() {
            if c.is_ascii_control() || matches!(c, '%' | '/' | '?' | '#' | '+') {
                // Writing into a `String` never fails.
                let _ = write!(out, "%{:02X}", u32::from(c));
            } else {
                out.push(c);
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::IdErrorReason;
    use crate::properties::Ack;
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
        RequestId::new(s)
    }

    // --- RequestId ---------------------------------------------------------

    #[test]
    fn request_ids_are_kept_as_they_travel() {
        // Any text a peer sends is a request id, kept byte for byte.
        for wire in [
            "1",
            "abc-DEF_123.~",
            "6b1c3f8e-3c8a-4d38",
            "$!*()'@:;,[]{}|<>^`\"\\",
            "",
            "a b",
            "%41",
            "a=b",
            "xé",
        ] {
            assert_eq!(RequestId::from_wire(wire).as_str(), wire);
        }
        assert_eq!(
            RequestId::from_wire("fake%24request%2Fid").decoded(),
            "fake$request/id"
        );
        assert_eq!(
            RequestId::from_wire("fake+request+id").decoded(),
            "fake+request+id"
        );
        assert_eq!(RequestId::from_wire("100%").decoded(), "100%");
        assert_eq!(RequestId::from_wire("%FF").decoded(), "%FF");
        // A value becomes a wire form every peer decodes back to it.
        for value in ["1", "6b1c-3f8e", "a b", "a&b=c", "a/b?c#d+e%f", "é", ""] {
            let r = RequestId::new(value);
            assert!(
                !r.as_str().contains(['&', '#', '+', ' ', '/', '?']),
                "{r:?}"
            );
            assert_eq!(r.decoded(), value);
        }
        assert_eq!(RequestId::new("6b1c-3f8e").as_str(), "6b1c-3f8e");
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
        assert_eq!("a b".parse::<RequestId>().unwrap().as_str(), "a%20b");
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
            method_response(65535, &r),
            "$iothub/methods/res/65535/?$rid=17"
        );
        assert_eq!(method_response(-1, &r), "$iothub/methods/res/-1/?$rid=17");
        assert_eq!(
            method_response(i32::MIN, &r),
            "$iothub/methods/res/-2147483648/?$rid=17"
        );
        assert_eq!(
            method_response(i32::MAX, &r),
            "$iothub/methods/res/2147483647/?$rid=17"
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
        assert_eq!((device_id, module_id, &*input), ("dev1", "mod1", "input1"));
        assert_eq!(properties.connection_device_id.as_deref(), Some("dev1"));
        assert_eq!(properties.connection_module_id.as_deref(), Some("other"));
        assert_eq!(properties.get_application("k"), Some(Some("v")));

        assert_eq!(
            parse("devices/dev1/modules/mod1/inputs/in/"),
            Ok(HubTopic::ModuleInput {
                device_id: "dev1",
                module_id: "mod1",
                input: "in".into(),
                properties: MessageProperties::new()
            })
        );
        // Without the `/` after the input name, the bag is empty.
        assert_eq!(
            parse("devices/dev1/modules/mod1/inputs/in"),
            parse("devices/dev1/modules/mod1/inputs/in/")
        );
        // The input name is percent-decoded; `+` is a plus.
        let Ok(HubTopic::ModuleInput { input, .. }) =
            parse("devices/dev1/modules/mod1/inputs/fake%24in+put/")
        else {
            panic!()
        };
        assert_eq!(input, "fake$in+put");
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
        // Without the `/` before the query (Microsoft's Node SDK test data).
        assert_eq!(
            parse("$iothub/twin/res/200?$rid=1"),
            parse("$iothub/twin/res/200/?$rid=1")
        );
        // The request id as it travels, whatever it holds.
        assert_eq!(
            parse("$iothub/twin/res/200/?$rid=fake%24request%2Fid")
                .unwrap()
                .request_id(),
            Some("fake%24request%2Fid")
        );
        assert_eq!(
            parse("$iothub/twin/res/200/?$rid=").unwrap().request_id(),
            Some("")
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
                name: "reboot".into(),
                request_id: "1f"
            }
        );
        assert_eq!(t.request_id(), Some("1f"));
        for (topic, name, rid) in [
            ("$iothub/methods/POST/a?b/?$rid=1", "a?b", "1"),
            // Names are percent-decoded, `+` stays a plus.
            (
                "$iothub/methods/POST/fake%24method/?$rid=1",
                "fake$method",
                "1",
            ),
            (
                "$iothub/methods/POST/fake+method/?$rid=1",
                "fake+method",
                "1",
            ),
            ("$iothub/methods/POST/a%2Fb/?$rid=1", "a/b", "1"),
            // Request ids are any text, kept as they travel.
            (
                "$iothub/methods/POST/m/?$rid=fake%24request%2Fid",
                "m",
                "fake%24request%2Fid",
            ),
            ("$iothub/methods/POST/m/?$rid=a b/c?d", "m", "a b/c?d"),
            ("$iothub/methods/POST/m/?$rid=", "m", ""),
            ("$iothub/methods/POST/m/?$rid", "m", ""),
            // Without the `/` before the query; other parameters ignored.
            (
                "$iothub/methods/POST/Reboot?$rid=1&k1=v1&k2=v2",
                "Reboot",
                "1",
            ),
        ] {
            assert_eq!(
                parse(topic),
                Ok(HubTopic::MethodRequest {
                    name: name.into(),
                    request_id: rid
                }),
                "{topic}"
            );
        }
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
        // `retry-after` in any letter case, in any position; the first
        // counts; a value that is not whole seconds reads as absent.
        for (t, retry) in [
            (
                "$dps/registrations/res/429/?$rid=1&Retry-After=32",
                Some(32),
            ),
            (
                "$dps/registrations/res/202/?retry-after=120&$rid=1",
                Some(120),
            ),
            (
                "$dps/registrations/res/202/?$rid=1&RETRY-AFTER=5&retry-after=9",
                Some(5),
            ),
            ("$dps/registrations/res/429/?$rid=1&Retry-After=", None),
            ("$dps/registrations/res/429/?$rid=1&Retry-After=-1", None),
            ("$dps/registrations/res/429/?$rid=1&retry-after=1.5", None),
            (
                "$dps/registrations/res/429/?$rid=1&retry-after=4294967296",
                None,
            ),
            (
                "$dps/registrations/res/429/?$rid=1&retry-after=4294967295",
                Some(u32::MAX),
            ),
        ] {
            assert_eq!(
                parse(t),
                Ok(HubTopic::DpsResponse {
                    status: t[23..26].parse().unwrap(),
                    request_id: "1",
                    retry_after: retry
                }),
                "{t}"
            );
        }
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
            "$iothub/twin/res/%24%24%24/?$rid=1",
            "$iothub/twin/res/2+0/?$rid=1",
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
            "$iothub/methods/POST/reboot/",
            "$iothub/methods/POST/a/b/?$rid=1",
            "$dps/registrations/res/202",
        ] {
            assert_eq!(parse(t), Err(TopicError::MissingQuery), "{t}");
        }
    }

    #[test]
    fn missing_request_ids() {
        for t in [
            "$iothub/twin/res/200/?",
            "$iothub/twin/res/200/?$version=1",
            "$iothub/twin/res/200/?$RID=1",
            "$iothub/twin/res/200/?rid=1",
            "$iothub/methods/POST/m/?rid=1",
            "$iothub/methods/POST/m/?$mid=1",
            "$dps/registrations/res/202/?retry-after=1",
        ] {
            assert_eq!(parse(t), Err(TopicError::MissingRequestId), "{t}");
        }
        assert_eq!(
            parse("$iothub/twin/res/200/?$rid=1&$rid=1"),
            Err(TopicError::DuplicateParameter("$rid"))
        );
        assert_eq!(
            parse("$iothub/methods/POST/m/?$rid=1&$rid=2"),
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
        for t in [
            "$iothub/methods/POST/a%zz/?$rid=1",
            "$iothub/methods/POST/a%2/?$rid=1",
            "$iothub/methods/POST/a%/?$rid=1",
            "$iothub/methods/POST/%FF/?$rid=1",
            "devices/d/modules/m/inputs/in%G0/",
            "devices/d/modules/m/inputs/%C3/k=v",
        ] {
            assert_eq!(parse(t), Err(TopicError::InvalidEncoding), "{t}");
        }
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

        // Bags always decode: what the device only reads never refuses a
        // message.
        let Ok(HubTopic::C2d { properties, .. }) = parse("devices/d/messages/devicebound/a=%zz")
        else {
            panic!()
        };
        assert_eq!(properties.get_application("a"), Some(Some("%zz")));
        let Ok(HubTopic::ModuleInput { properties, .. }) =
            parse("devices/d/modules/m/inputs/i/a&&b")
        else {
            panic!()
        };
        assert_eq!(properties.application().len(), 2);
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
        let e = parse("devices/a b/messages/devicebound/").unwrap_err();
        assert!(e.to_string().contains("invalid topic"), "{e}");
        assert!(e.source().is_some());
        assert!(!e.is_no_match());
        let e = parse("$iothub/methods/POST/%/?$rid=1").unwrap_err();
        assert!(e.to_string().contains("percent-encoding"), "{e}");
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
                name: "reboot".into(),
                request_id: "42"
            })
        );
        assert_eq!(
            hub::method_request("", &r),
            Err(TopicError::InvalidMethodName)
        );
        // What a segment cannot carry is encoded; the rest goes as it is.
        let t = hub::method_request("a/b?c#d+e%f g$é", &r).unwrap();
        assert_eq!(t, "$iothub/methods/POST/a%2Fb%3Fc%23d%2Be%25f g$é/?$rid=42");
        assert_eq!(
            parse(&t),
            Ok(HubTopic::MethodRequest {
                name: "a/b?c#d+e%f g$é".into(),
                request_id: "42"
            })
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
                input: "in1".into(),
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
    fn method_response_echoes_the_request_id_as_it_came() {
        for wire in ["a1", "fake%24request%2Fid", "a b", ""] {
            let topic = format!("$iothub/methods/POST/getLog/?$rid={wire}");
            let HubTopic::MethodRequest { request_id, .. } = parse(&topic).unwrap() else {
                panic!()
            };
            let r = RequestId::from_wire(request_id);
            assert_eq!(
                method_response(200, &r),
                format!("$iothub/methods/res/200/?$rid={wire}")
            );
        }
    }

    // --- property tests ----------------------------------------------------

    fn any_string() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::collection::vec(any::<char>(), 0..16).prop_map(String::from_iter),
            "[a-z0-9$./?&=%#+ -]{0,12}",
        ]
    }

    fn any_request_id() -> impl Strategy<Value = RequestId> {
        prop_oneof![
            any::<u64>().prop_map(RequestId::from),
            any_string().prop_map(|s| RequestId::new(&s)),
        ]
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
            prop_assert_eq!(crate::properties::decode(bag), p);
            // Telemetry is device→hub: never a hub→device topic.
            prop_assert_eq!(parse(&t), Err(TopicError::NoMatch));
        }

        #[test]
        fn hub_topics_round_trip(
            r in any_request_id(),
            status in any::<u16>(),
            version in any::<Option<u64>>(),
            retry in any::<Option<u32>>(),
            name in "[^\\x00]{1,12}",
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
                Ok(HubTopic::MethodRequest { name: name.as_str().into(), request_id: r.as_str() })
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
                        input: name.as_str().into(),
                        properties: p.clone(),
                    })
                );
            }
        }

        #[test]
        fn request_topics_embed_the_id_verbatim(r in any_request_id(), status in any::<i32>()) {
            let t = method_response(status, &r);
            let tail = format!("/?$rid={r}");
            prop_assert!(t.ends_with(tail.as_str()));
            let parts: Vec<&str> = t.split('/').collect();
            let status = status.to_string();
            prop_assert_eq!(parts.get(3).copied(), Some(status.as_str()));
        }
    }
}
