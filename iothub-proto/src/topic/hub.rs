//! Builders for hub→device topics, for fake hubs and tests. Everything they
//! build parses back with [`parse`](super::parse) into the same values.

use alloc::string::String;
use core::fmt::Write as _;

use super::build::{push_device_prefix, push_u64};
use super::{RequestId, TopicError};
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
