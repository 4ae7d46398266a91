//! Builders for every device→hub topic and subscription filter.

use alloc::string::String;

use super::RequestId;
use crate::auth::{DeviceId, Identity, ModuleId};
use crate::properties::{MessageProperties, percent_encode_into};

pub(super) fn push_device_prefix(
    device_id: &DeviceId,
    module_id: Option<&ModuleId>,
    out: &mut String,
) {
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
pub(super) fn push_u64(mut n: u64, out: &mut String) {
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
