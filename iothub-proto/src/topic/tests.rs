//! The topic grammar's tests: builders, the parser, and the round trips
//! between them.

use alloc::string::{String, ToString};

use super::build::push_u64;
use super::*;
use crate::auth::{IdError, IdErrorReason, Identity};
use crate::properties::Ack;
use crate::properties::MessageProperties;
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
    let Ok(HubTopic::C2d { properties, .. }) = parse("devices/d/messages/devicebound/a=%zz") else {
        panic!()
    };
    assert_eq!(properties.get_application("a"), Some(Some("%zz")));
    let Ok(HubTopic::ModuleInput { properties, .. }) = parse("devices/d/modules/m/inputs/i/a&&b")
    else {
        panic!()
    };
    assert_eq!(properties.application().len(), 2);
    // A raw `/` in the bag is part of the bag.
    let HubTopic::C2d { properties, .. } = parse("devices/d/messages/devicebound/k=a/b").unwrap()
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
