//! The IoT Hub topic grammar: builders for every device→hub topic and
//! subscription filter, and one parser, [`parse`], for every hub→device topic.
//!
//! Topics are parsed once, at the door, into [`HubTopic`]: status codes are
//! integers, versions are `u64`, request ids are borrowed from the topic as
//! they travel, names are percent-decoded, and property bags are decoded
//! into [`MessageProperties`](crate::properties::MessageProperties). A topic outside this grammar is
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
//! - Device and module ids must be valid [`DeviceId`](crate::auth::DeviceId)s / [`ModuleId`](crate::auth::ModuleId)s
//!   (they are not percent-decoded: the hub writes them as they are).
//! - A `{bag}` is everything after the fixed segments (a raw `/` in it is
//!   part of it, one trailing `/` is dropped); it may be empty, and it
//!   always decodes ([`MessageProperties::decode`](crate::properties::MessageProperties::decode): value-less properties,
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
//!
//! # Files
//!
//! `build.rs` (device→hub builders), `parse.rs` (the hub→device parser),
//! `query.rs` (the query rules), `hub.rs` (hub→device builders),
//! `request_id.rs` ([`RequestId`]).

mod build;
pub mod hub;
mod parse;
pub mod query;
mod request_id;

#[cfg(test)]
mod tests;

pub use build::{
    c2d_filter, c2d_filter_into, dps_poll, dps_poll_into, dps_register, dps_register_into,
    method_response, method_response_into, module_inputs_filter, module_inputs_filter_into,
    telemetry, telemetry_into, twin_get, twin_get_into, twin_patch_reported,
    twin_patch_reported_into,
};
pub use parse::{HubTopic, TopicError, parse};
pub use request_id::RequestId;

/// Subscription filter for twin responses.
pub const TWIN_RESPONSE_FILTER: &str = "$iothub/twin/res/#";
/// Subscription filter for desired-property notifications.
pub const DESIRED_PATCH_FILTER: &str = "$iothub/twin/PATCH/properties/desired/#";
/// Subscription filter for direct method requests.
pub const METHOD_REQUEST_FILTER: &str = "$iothub/methods/POST/#";
/// Subscription filter for Device Provisioning Service responses.
pub const DPS_RESPONSE_FILTER: &str = "$dps/registrations/res/#";
