//! The device→hub topic grammar read from the hub's side: every topic the
//! device builders of [`iothub_proto::topic`] write, parsed back into a
//! [`DeviceTopic`] — for this crate's engines, emulators and gateways. The
//! rules (ids, query, statuses, bags) are those of the device's parser of
//! hub→device topics ([`iothub_proto::topic::parse`]), shared through
//! [`iothub_proto::topic::query`]; bags are read as liberally.

use std::borrow::Cow;

use iothub_proto::auth::{DeviceId, ModuleId};
use iothub_proto::properties::MessageProperties;
use iothub_proto::topic::TopicError;
use iothub_proto::topic::query::{is_digits, params as query_params, split as segment_and_query};
#[cfg(doc)]
use iothub_proto::topic::{
    RequestId, dps_poll, dps_register, method_response, telemetry, twin_get, twin_patch_reported,
};

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
        /// The decoded property bag (possibly empty; decoding never fails,
        /// and one trailing `/` is dropped, as Microsoft's Node device SDK
        /// ends a module output topic with it).
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
        /// The status the device chose: any integer.
        status: i32,
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
/// The rules are those of [`iothub_proto::topic::parse`] (see its module docs): ids are
/// validated, the telemetry bag is everything after `events/` (it may be
/// empty, the trailing `/` of `events/` is required, and it decodes as
/// leniently as [`MessageProperties::decode`] says), a method response's
/// status is an integer (an optional `-`, then ASCII digits, fitting an
/// `i32`), the query follows `/?`, `$rid` is taken as it travels (any
/// text, see [`RequestId`]), unknown query parameters are ignored and a
/// used one given twice is [`TopicError::DuplicateParameter`]. The
/// `operationId` value is percent-decoded (leniently: a `%` not followed by
/// two hex digits stays as is) and must not be empty
/// ([`TopicError::MissingOperationId`]).
///
/// A topic outside these families, including every hub→device topic, is
/// [`TopicError::NoMatch`].
///
/// ```
/// use iothub_hub::topic::{parse_device_topic, DeviceTopic};
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
            let status = parse_method_status(status)?;
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
                Some(id) => percent_encoding::percent_decode_str(id)
                    .decode_utf8()
                    .map_err(|_| TopicError::InvalidOperationId)?,
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

/// A method response status: an optional `-`, then ASCII digits, fitting
/// an `i32`.
fn parse_method_status(s: &str) -> Result<i32, TopicError> {
    if !is_digits(s.strip_prefix('-').unwrap_or(s)) {
        return Err(TopicError::InvalidStatus);
    }
    s.parse().map_err(|_| TopicError::InvalidStatus)
}

/// The `$rid` of a query, any text.
fn request_id(rid: Option<&str>) -> Result<&str, TopicError> {
    rid.ok_or(TopicError::MissingRequestId)
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
    let properties = MessageProperties::decode(bag);
    Ok(DeviceTopic::Telemetry {
        device_id,
        module_id,
        properties,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use iothub_proto::auth::Identity;
    use iothub_proto::properties::Ack;
    use iothub_proto::topic::{
        RequestId, dps_poll, dps_register, hub, method_response, telemetry, twin_get,
        twin_patch_reported,
    };
    use proptest::prelude::*;

    fn rid(s: &str) -> RequestId {
        RequestId::new(s)
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
        for status in [0, 200, 404, 65535, 65536, -1, i32::MIN, i32::MAX] {
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
                "$iothub/methods/res/2147483648/?$rid=1",
                TopicError::InvalidStatus,
            ),
            ("$iothub/methods/res/-/?$rid=1", TopicError::InvalidStatus),
            ("$iothub/methods/res/+1/?$rid=1", TopicError::InvalidStatus),
            ("$iothub/methods/res/--1/?$rid=1", TopicError::InvalidStatus),
            ("$iothub/methods/res//?$rid=1", TopicError::InvalidStatus),
            ("$iothub/twin/GET/?", TopicError::MissingRequestId),
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
        // The hub reads bags as liberally as the device: Microsoft's Node
        // device SDK ends a module output topic with `/` after the bag.
        let Ok(DeviceTopic::Telemetry { properties, .. }) = parse_device_topic(
            "devices/deviceId/modules/moduleId/messages/events/%24.on=out1&kind=reading/",
        ) else {
            panic!()
        };
        assert_eq!(properties.output_name.as_deref(), Some("out1"));
        assert_eq!(properties.get_application("kind"), Some(Some("reading")));
        let Ok(DeviceTopic::Telemetry { properties, .. }) =
            parse_device_topic("devices/d/messages/events/a&&b")
        else {
            panic!()
        };
        assert_eq!(properties.application().len(), 2);
        // Any request id, as it travels.
        assert_eq!(
            parse_device_topic("$iothub/twin/GET/?$rid=a%20b"),
            Ok(DeviceTopic::TwinGet {
                request_id: "a%20b"
            })
        );
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
            r in any::<String>().prop_map(|s| RequestId::new(&s)),
            status in any::<i32>(),
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
