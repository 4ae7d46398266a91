//! Hub→device topics from outside this crate — the official SDKs' public
//! test suites and Microsoft's documentation — each with what
//! `topic::parse` must make of it. Facts, not code: every row names where
//! the topic comes from (repository, file, test) and the expectation is
//! ours, written from what the protocol says (`PROTOCOL.md`): liberal in
//! what the device only reads, strict where it must interpret (ids,
//! statuses, versions, names).
//!
//! Sources (stored copies of the public repositories):
//! - sdk-for-c: Azure/azure-sdk-for-c, `sdk/tests/iot/hub/test_az_iot_hub_client_{c2d,twin,methods,commands}.c`,
//!   `sdk/tests/iot/provisioning/test_az_iot_provisioning_client_parser.c`
//! - iot-sdk-c: Azure/azure-iot-sdk-c, `iothub_client/tests/iothubtransport_mqtt_common_ut/iothubtransport_mqtt_common_ut.c`,
//!   `provisioning_client/tests/prov_transport_mqtt_common_ut/prov_transport_mqtt_common_ut.c`
//! - py: Azure/azure-iot-sdk-python, `tests/unit/iothub/pipeline/test_mqtt_topic_iothub.py` (v2),
//!   `tests/unit/test_mqtt_topic_iothub.py` (v3), `tests/unit/provisioning/pipeline/test_mqtt_topic_provisioning.py`
//! - node: Azure/azure-iot-sdk-node, `device/transport/mqtt/test/_mqtt_receiver_test.js`,
//!   `device/transport/mqtt/test/_mqtt_twin_client_test.js`
//! - cs: Azure/azure-iot-sdk-csharp, `iothub/device/tests/Mqtt/MqttIotHubAdapterTest.cs`, `UtilTest.cs`,
//!   `provisioning/device/tests/mqtt/ProvisioningErrorDetailsMqttTests.cs`
//! - java: Azure/azure-iot-sdk-java, `device/iot-device-client/src/test/java/tests/unit/com/microsoft/azure/sdk/iot/device/transport/mqtt/{MqttTest,MqttDeviceMethodTest,TopicParserTest}.java`
//! - docs: MicrosoftDocs/azure-docs, `articles/iot/iot-mqtt-connect-to-iot-hub.md`,
//!   `articles/iot-dps/iot-dps-mqtt-support.md`
//!
//! Some rows cannot arrive over MQTT as written (a `+` is a wildcard and
//! may not be in a PUBLISH topic name); they are kept because the parser
//! reads strings and the SDKs test them.

use iothub_proto::properties::{Ack, MessageProperties, SystemProperty};
use iothub_proto::topic::{HubTopic, RequestId, TopicError, parse};

/// The system properties a bag must carry (all others absent).
type Sys = &'static [(SystemProperty, &'static str)];
/// The application pairs a bag must carry, exactly and in order.
type App = &'static [(&'static str, Option<&'static str>)];

#[derive(Debug)]
enum Want {
    C2d {
        device: &'static str,
        sys: Sys,
        ack: Option<Ack>,
        app: App,
    },
    Input {
        device: &'static str,
        module: &'static str,
        input: &'static str,
        sys: Sys,
        app: App,
    },
    Twin {
        status: u16,
        rid: &'static str,
        version: Option<u64>,
    },
    Desired(u64),
    Method {
        name: &'static str,
        rid: &'static str,
    },
    Dps {
        status: u16,
        rid: &'static str,
        retry: Option<u32>,
    },
    Refused(TopicError),
}

use SystemProperty::{
    AbsoluteExpiryTime as Exp, ConnectionDeviceId as Cdid, ConnectionModuleId as Cmid,
    ContentEncoding as Ce, ContentType as Ct, CorrelationId as Cid, MessageId as Mid, To,
    UserId as Uid,
};

const NONE: App = &[];

fn check_bag(topic: &str, p: &MessageProperties, sys: Sys, ack: Option<&Ack>, app: App) {
    for &prop in SystemProperty::ALL {
        if prop == SystemProperty::Ack {
            continue;
        }
        let want = sys.iter().find(|(s, _)| *s == prop).map(|(_, v)| *v);
        assert_eq!(p.system(prop), want, "{topic}: {prop}");
    }
    assert_eq!(p.ack.as_ref(), ack, "{topic}: iothub-ack");
    let got: Vec<(&str, Option<&str>)> = p.application_iter().collect();
    assert_eq!(got, app, "{topic}: application properties");
    // What was read re-encodes to a bag that reads the same.
    assert_eq!(&MessageProperties::decode(&p.to_bag()), p, "{topic}");
}

fn check(topic: &str, want: &Want) {
    let got = parse(topic);
    match (want, &got) {
        (
            Want::C2d {
                device,
                sys,
                ack,
                app,
            },
            Ok(HubTopic::C2d {
                device_id,
                properties,
            }),
        ) => {
            assert_eq!(device_id, device, "{topic}");
            check_bag(topic, properties, sys, ack.as_ref(), app);
        }
        (
            Want::Input {
                device,
                module,
                input,
                sys,
                app,
            },
            Ok(HubTopic::ModuleInput {
                device_id,
                module_id,
                input: got_input,
                properties,
            }),
        ) => {
            assert_eq!(
                (*device_id, *module_id, &**got_input),
                (*device, *module, *input),
                "{topic}"
            );
            check_bag(topic, properties, sys, None, app);
        }
        (
            Want::Twin {
                status,
                rid,
                version,
            },
            Ok(HubTopic::TwinResponse {
                status: s,
                request_id,
                version: v,
            }),
        ) => assert_eq!((s, request_id, v), (status, rid, version), "{topic}"),
        (Want::Desired(version), Ok(HubTopic::DesiredPatch { version: v })) => {
            assert_eq!(v, version, "{topic}");
        }
        (
            Want::Method { name, rid },
            Ok(HubTopic::MethodRequest {
                name: n,
                request_id,
            }),
        ) => assert_eq!((&**n, *request_id), (*name, *rid), "{topic}"),
        (
            Want::Dps { status, rid, retry },
            Ok(HubTopic::DpsResponse {
                status: s,
                request_id,
                retry_after,
            }),
        ) => assert_eq!(
            (s, request_id, retry_after),
            (status, rid, retry),
            "{topic}"
        ),
        (Want::Refused(e), Err(got)) => assert_eq!(got, e, "{topic}"),
        _ => panic!("{topic}: expected {want:?}, got {got:?}"),
    }
}

const MID_PY: &str = "6b822696-f75a-46f5-8b02-0680db65abf5";

fn table() -> Vec<(&'static str, Want)> {
    vec![
        // ---- cloud-to-device -------------------------------------------
        // sdk-for-c test_az_iot_hub_client_c2d.c, ..._no_props_succeed
        (
            "devices/useragent_c/messages/devicebound/",
            Want::C2d {
                device: "useragent_c",
                sys: &[],
                ack: None,
                app: NONE,
            },
        ),
        // sdk-for-c, ..._url_decoded_succeed: raw `$` and `/` in the bag.
        (
            "devices/useragent_c/messages/devicebound/$.mid=79eadb01-bd0d-472d-bd35-ccb76e70eab8&$.to=/devices/useragent_c/messages/deviceBound&abc=123",
            Want::C2d {
                device: "useragent_c",
                sys: &[
                    (Mid, "79eadb01-bd0d-472d-bd35-ccb76e70eab8"),
                    (To, "/devices/useragent_c/messages/deviceBound"),
                ],
                ack: None,
                app: &[("abc", Some("123"))],
            },
        ),
        // sdk-for-c, ..._url_encoded_succeed (that SDK hands the pairs out
        // undecoded; this crate decodes them).
        (
            "devices/useragent_c/messages/devicebound/%24.to=%2Fdevices%2Fuseragent_c%2Fmessages%2FdeviceBound&abc=123&ghi=%2Fsome%2Fthing&jkl=%2Fsome%2Fthing%2F%3Fbla%3Dbla",
            Want::C2d {
                device: "useragent_c",
                sys: &[(To, "/devices/useragent_c/messages/deviceBound")],
                ack: None,
                app: &[
                    ("abc", Some("123")),
                    ("ghi", Some("/some/thing")),
                    ("jkl", Some("/some/thing/?bla=bla")),
                ],
            },
        ),
        // sdk-for-c, ..._NULL_client_fail (the bag of that test).
        (
            "devices/useragent_c/messages/devicebound/$.mid=79eadb01-bd0d-472d-bd35-ccb76e70eab8&$.to=/devices/useragent_c/messages/deviceBound&iothub-ack=full",
            Want::C2d {
                device: "useragent_c",
                sys: &[
                    (Mid, "79eadb01-bd0d-472d-bd35-ccb76e70eab8"),
                    (To, "/devices/useragent_c/messages/deviceBound"),
                ],
                ack: Some(Ack::Full),
                app: NONE,
            },
        ),
        // sdk-for-c, ..._malformed_reject
        (
            "devices/useragent_c/message#$vicebound/a=1",
            Want::Refused(TopicError::NoMatch),
        ),
        // py v2 TestExtractMessagePropertiesFromTopic, "Mandatory system properties"
        (
            "devices/fake_device/messages/devicebound/%24.mid=6b822696-f75a-46f5-8b02-0680db65abf5&%24.to=%2Fdevices%2Ffake_device%2Fmessages%2Fdevicebound",
            Want::C2d {
                device: "fake_device",
                sys: &[
                    (Mid, MID_PY),
                    (To, "/devices/fake_device/messages/devicebound"),
                ],
                ack: None,
                app: NONE,
            },
        ),
        // py v2, "All system properties"
        (
            "devices/fake_device/messages/devicebound/%24.exp=3237-07-19T23%3A06%3A40.0000000Z&%24.cid=fake_corid&%24.mid=6b822696-f75a-46f5-8b02-0680db65abf5&%24.to=%2Fdevices%2Ffake_device%2Fmessages%2Fdevicebound&%24.ct=fake_content_type&%24.ce=utf-8&iothub-ack=positive",
            Want::C2d {
                device: "fake_device",
                sys: &[
                    (Exp, "3237-07-19T23:06:40.0000000Z"),
                    (Cid, "fake_corid"),
                    (Mid, MID_PY),
                    (To, "/devices/fake_device/messages/devicebound"),
                    (Ct, "fake_content_type"),
                    (Ce, "utf-8"),
                ],
                ack: Some(Ack::Positive),
                app: NONE,
            },
        ),
        // py v2, "Custom properties"
        (
            "devices/fake_device/messages/devicebound/%24.mid=6b822696-f75a-46f5-8b02-0680db65abf5&%24.to=%2Fdevices%2Ffake_device%2Fmessages%2Fdevicebound&custom1=value1&custom2=value2&custom3=value3",
            Want::C2d {
                device: "fake_device",
                sys: &[
                    (Mid, MID_PY),
                    (To, "/devices/fake_device/messages/devicebound"),
                ],
                ack: None,
                app: &[
                    ("custom1", Some("value1")),
                    ("custom2", Some("value2")),
                    ("custom3", Some("value3")),
                ],
            },
        ),
        // py v2, "Standard URL decoding"; `po$itive` is no known
        // iothub-ack value: kept as received.
        (
            "devices/fake%24device/messages/devicebound/%24.exp=3237-07-19T23%3A06%3A40.0000000Z&%24.cid=fake%23corid&%24.mid=message%24id&%24.to=%2Fdevices%2Ffake%24device%2Fmessages%2Fdevicebound&%24.ct=fake%23content%24type&%24.ce=utf-%24&iothub-ack=po%24itive&custom%2A=value%23&custom%26=value%24&custom%25=value%40",
            Want::C2d {
                device: "fake%24device",
                sys: &[
                    (Exp, "3237-07-19T23:06:40.0000000Z"),
                    (Cid, "fake#corid"),
                    (Mid, "message$id"),
                    (To, "/devices/fake$device/messages/devicebound"),
                    (Ct, "fake#content$type"),
                    (Ce, "utf-$"),
                ],
                ack: Some(Ack::Other(String::from("po$itive"))),
                app: &[
                    ("custom*", Some("value#")),
                    ("custom&", Some("value$")),
                    ("custom%", Some("value@")),
                ],
            },
        ),
        // py v2, "does NOT decode '+' character". Its device id holds a `+`,
        // outside the hub's id character set: refused.
        (
            "devices/fake+device/messages/devicebound/%24.cid=fake+corid&%24.mid=message+id&custom+1=value+1",
            Want::Refused(TopicError::InvalidId(
                iothub_proto::auth::DeviceId::new("fake+device").unwrap_err(),
            )),
        ),
        // The same bag under a valid id: `+` stays a plus everywhere.
        (
            "devices/fake_device/messages/devicebound/%24.exp=3237-07-19T23%3A06%3A40.0000000Z&%24.cid=fake+corid&%24.mid=message+id&%24.to=%2Fdevices%2Ffake+device%2Fmessages%2Fdevicebound&%24.ct=fake+content+type&%24.ce=utf-+&iothub-ack=posi+ive&custom+1=value+1&custom+2=value+2&custom+3=value+3",
            Want::C2d {
                device: "fake_device",
                sys: &[
                    (Exp, "3237-07-19T23:06:40.0000000Z"),
                    (Cid, "fake+corid"),
                    (Mid, "message+id"),
                    (To, "/devices/fake+device/messages/devicebound"),
                    (Ct, "fake+content+type"),
                    (Ce, "utf-+"),
                ],
                ack: Some(Ack::Other(String::from("posi+ive"))),
                app: &[
                    ("custom+1", Some("value+1")),
                    ("custom+2", Some("value+2")),
                    ("custom+3", Some("value+3")),
                ],
            },
        ),
        // py v2 test_receive_topic_without_values, "C2D topic with some
        // system properties not having values" (an Event Grid–shaped
        // message): value-less system properties are kept, without value.
        (
            "devices/fakedevice/messages/devicebound/topic=%2Fsubscriptions%2FresourceGroups&subject=%2FgraphInstances&dataVersion=1.0&%24.cdid=fakecdid&%24.mid=e32c2285-668e-4161-a236-9f5f6b90362c&%24.cid&%24.uid",
            Want::C2d {
                device: "fakedevice",
                sys: &[
                    (Cdid, "fakecdid"),
                    (Mid, "e32c2285-668e-4161-a236-9f5f6b90362c"),
                ],
                ack: None,
                app: &[
                    ("topic", Some("/subscriptions/resourceGroups")),
                    ("subject", Some("/graphInstances")),
                    ("dataVersion", Some("1.0")),
                    ("$.cid", None),
                    ("$.uid", None),
                ],
            },
        ),
        // py v2, "C2D topic with some custom properties not having values"
        (
            "devices/fakedevice/messages/devicebound/topic=%2Fsubscriptions%2FresourceGroups&subject=%2FgraphInstances&dataVersion&%24.cdid=fakecdid&%24.mid=e32c2285-668e-4161-a236-9f5f6b90362c&%24.cid=fakecorrid&%24.uid=harrypotter&classname",
            Want::C2d {
                device: "fakedevice",
                sys: &[
                    (Cdid, "fakecdid"),
                    (Mid, "e32c2285-668e-4161-a236-9f5f6b90362c"),
                    (Cid, "fakecorrid"),
                    (Uid, "harrypotter"),
                ],
                ack: None,
                app: &[
                    ("topic", Some("/subscriptions/resourceGroups")),
                    ("subject", Some("/graphInstances")),
                    ("dataVersion", None),
                    ("classname", None),
                ],
            },
        ),
        // py v2 test_receive_topic_with_empty_values: empty is not absent.
        (
            "devices/fakedevice/messages/devicebound/topic=%2Fsubscriptions%2FresourceGroups&subject=%2FgraphInstances&dataVersion=&%24.cdid=fakecdid&%24.mid=e32c2285-668e-4161-a236-9f5f6b90362c&%24.cid=&%24.uid=&classname=",
            Want::C2d {
                device: "fakedevice",
                sys: &[
                    (Cdid, "fakecdid"),
                    (Mid, "e32c2285-668e-4161-a236-9f5f6b90362c"),
                    (Cid, ""),
                    (Uid, ""),
                ],
                ack: None,
                app: &[
                    ("topic", Some("/subscriptions/resourceGroups")),
                    ("subject", Some("/graphInstances")),
                    ("dataVersion", Some("")),
                    ("classname", Some("")),
                ],
            },
        ),
        // py v3 TestExtractPropertiesFromMessageTopic.test_key_only (v3
        // maps a lone key to ""; the docs say null: kept as no value).
        (
            "devices/fake_device/messages/devicebound/key1&key2&key3=value",
            Want::C2d {
                device: "fake_device",
                sys: &[],
                ack: None,
                app: &[("key1", None), ("key2", None), ("key3", Some("value"))],
            },
        ),
        // py v3 test_empty_string
        (
            "devices/fake_device/messages/devicebound/=value1",
            Want::C2d {
                device: "fake_device",
                sys: &[],
                ack: None,
                app: &[("", Some("value1"))],
            },
        ),
        (
            "devices/fake_device/messages/devicebound/key1=",
            Want::C2d {
                device: "fake_device",
                sys: &[],
                ack: None,
                app: &[("key1", Some(""))],
            },
        ),
        // py v3 test_url_decoding, "URL Encoding of ' ' Character" and `$`
        (
            "devices/fake_device/messages/devicebound/key%201=value%201&key%202=value%202&%24.key1=value%231",
            Want::C2d {
                device: "fake_device",
                sys: &[],
                ack: None,
                app: &[
                    ("key 1", Some("value 1")),
                    ("key 2", Some("value 2")),
                    ("$.key1", Some("value#1")),
                ],
            },
        ),
        // iot-sdk-c iothubtransport_mqtt_common_ut.c, TEST_MQTT_MSG_TOPIC:
        // a capitalised `Full` and value-less `$.cid` / `$.uid`.
        (
            "devices/jebrandoDevice/messages/devicebound/iothub-ack=Full&%24.to=%2Fdevices%2FjebrandoDevice%2Fmessages%2FdeviceBound&%24.cid&%24.uid",
            Want::C2d {
                device: "jebrandoDevice",
                sys: &[(To, "/devices/jebrandoDevice/messages/deviceBound")],
                ack: Some(Ack::Full),
                app: &[("$.cid", None), ("$.uid", None)],
            },
        ),
        // iot-sdk-c, TEST_MQTT_MSG_TOPIC_W_1_PROP
        (
            "devices/thisIsDeviceID/messages/devicebound/iothub-ack=Full&propName=PropValue&DeviceInfo=smokeTest&%24.to=%2Fdevices%2FjebrandoDevice%2Fmessages%2FdeviceBound&%24.cid&%24.uid",
            Want::C2d {
                device: "thisIsDeviceID",
                sys: &[(To, "/devices/jebrandoDevice/messages/deviceBound")],
                ack: Some(Ack::Full),
                app: &[
                    ("propName", Some("PropValue")),
                    ("DeviceInfo", Some("smokeTest")),
                    ("$.cid", None),
                    ("$.uid", None),
                ],
            },
        ),
        // cs MqttIotHubAdapterTest.cs / UtilTest.cs,
        // TestPopulateMessagePropertiesFromPacket_NormalMessage: a trailing
        // `/` after the bag.
        (
            "devices/d10/messages/devicebound/%24.cid=Corrid1&%24.mid=MessageId1&Prop1=Value1&Prop2=Value2&Prop3=Value3/",
            Want::C2d {
                device: "d10",
                sys: &[(Cid, "Corrid1"), (Mid, "MessageId1")],
                ack: None,
                app: &[
                    ("Prop1", Some("Value1")),
                    ("Prop2", Some("Value2")),
                    ("Prop3", Some("Value3")),
                ],
            },
        ),
        // node _mqtt_receiver_test.js, "emits a message event with a
        // Message object"
        (
            "devices/foo/messages/devicebound/%24.mid=0209afa7-1e2f-4dc1-8a6f-8500efd81db3&%24.to=%2Fdevices%2Ffoo%2Fmessages%2Fdevicebound",
            Want::C2d {
                device: "foo",
                sys: &[
                    (Mid, "0209afa7-1e2f-4dc1-8a6f-8500efd81db3"),
                    (To, "/devices/foo/messages/devicebound"),
                ],
                ack: None,
                app: NONE,
            },
        ),
        // node, "populates user-defined message properties from the topic"
        (
            "devices/foo/messages/devicebound/key1=value1&key2=value2&key%24=value%24",
            Want::C2d {
                device: "foo",
                sys: &[],
                ack: None,
                app: &[
                    ("key1", Some("value1")),
                    ("key2", Some("value2")),
                    ("key$", Some("value$")),
                ],
            },
        ),
        // node, "populates Message.expiryTimeUtc from the topic"
        (
            "devices/foo/messages/devicebound/%24.exp=2017-01-06T23%3A37%3A00.669Z",
            Want::C2d {
                device: "foo",
                sys: &[(Exp, "2017-01-06T23:37:00.669Z")],
                ack: None,
                app: NONE,
            },
        ),
        (
            "devices/foo/messages/devicebound/%24.cid=fakeCorrelationId&%24.uid=fakeUserId",
            Want::C2d {
                device: "foo",
                sys: &[(Cid, "fakeCorrelationId"), (Uid, "fakeUserId")],
                ack: None,
                app: NONE,
            },
        ),
        // java MqttTest.java, MOCK_PARSE_TOPIC
        (
            "devices/deviceID/messages/devicebound/%24.mid=69ea4caf-d83e-454b-81f2-caafda4c81c8&%24.exp=0&%24.to=%2Fdevices%2FdeviceID%2Fmessages%2FdeviceBound&%24.cid=169c34b3-99b0-49f9-b0f6-8fa9d2c99345&iothub-ack=full&property1=value1",
            Want::C2d {
                device: "deviceID",
                sys: &[
                    (Mid, "69ea4caf-d83e-454b-81f2-caafda4c81c8"),
                    (Exp, "0"),
                    (To, "/devices/deviceID/messages/deviceBound"),
                    (Cid, "169c34b3-99b0-49f9-b0f6-8fa9d2c99345"),
                ],
                ack: Some(Ack::Full),
                app: &[("property1", Some("value1"))],
            },
        ),
        // java, receiveFailureFromInvalidPropertyStringThrowsIllegalArgumentException:
        // that SDK refuses a pair without `=`; this crate keeps it, no value.
        (
            "devices/deviceID/messages/devicebound/%24.mid=69ea4caf-d83e-454b-81f2-caafda4c81c8&%24.exp=0&%24.to=%2Fdevices%2FdeviceID%2Fmessages%2FdeviceBound&%24.cid=169c34b3-99b0-49f9-b0f6-8fa9d2c99345&iothub-ack=full&property1value1",
            Want::C2d {
                device: "deviceID",
                sys: &[
                    (Mid, "69ea4caf-d83e-454b-81f2-caafda4c81c8"),
                    (Exp, "0"),
                    (To, "/devices/deviceID/messages/deviceBound"),
                    (Cid, "169c34b3-99b0-49f9-b0f6-8fa9d2c99345"),
                ],
                ack: Some(Ack::Full),
                app: &[("property1value1", None)],
            },
        ),
        // java, receiveSuccessCustomPropertyHasUnusualCharacters (lower-case
        // hex too)
        (
            "devices/deviceID/messages/devicebound/%24.mid=69ea4caf-d83e-454b-81f2-caafda4c81c8&iothub-ack=full&property1=%24&property2=%26&%25=%22&finalProperty=%3d",
            Want::C2d {
                device: "deviceID",
                sys: &[(Mid, "69ea4caf-d83e-454b-81f2-caafda4c81c8")],
                ack: Some(Ack::Full),
                app: &[
                    ("property1", Some("$")),
                    ("property2", Some("&")),
                    ("%", Some("\"")),
                    ("finalProperty", Some("=")),
                ],
            },
        ),
        // docs iot-mqtt-connect-to-iot-hub.md, "Receiving cloud-to-device
        // messages": `prop1` null, `prop2` empty, `prop3` a string.
        (
            "devices/d/messages/devicebound/prop1&prop2=&prop3=a%20string",
            Want::C2d {
                device: "d",
                sys: &[],
                ack: None,
                app: &[
                    ("prop1", None),
                    ("prop2", Some("")),
                    ("prop3", Some("a string")),
                ],
            },
        ),
        // ---- module inputs ---------------------------------------------
        // iot-sdk-c TEST_MQTT_INPUT_1: a trailing `/` after the bag.
        (
            "devices/thisIsDeviceID/modules/thisIsModuleID/inputs/input1/%24.cdid=connected_device&%24.cmid=connected_module/",
            Want::Input {
                device: "thisIsDeviceID",
                module: "thisIsModuleID",
                input: "input1",
                sys: &[(Cdid, "connected_device"), (Cmid, "connected_module")],
                app: NONE,
            },
        ),
        // iot-sdk-c TEST_MQTT_INPUT_NO_PROPERTIES: no bag, no `/`.
        (
            "devices/thisIsDeviceID/modules/thisIsModuleID/inputs/input1",
            Want::Input {
                device: "thisIsDeviceID",
                module: "thisIsModuleID",
                input: "input1",
                sys: &[],
                app: NONE,
            },
        ),
        // iot-sdk-c TEST_MQTT_INPUT_MISSING_INPUT_QUEUE_NAME
        (
            "devices/thisIsDeviceID/modules/thisIsModuleID/inputs",
            Want::Refused(TopicError::NoMatch),
        ),
        // py v2 TestGetInputNameFromTopic.test_valid_input_topic
        (
            "devices/fake_device/modules/fake_module/inputs/fake_input/%24.mid=6b822696-f75a-46f5-8b02-0680db65abf5&%24.to=%2Fdevices%2Ffake_device%2Fmodules%2Ffake_module%2Finputs%2Ffake_input",
            Want::Input {
                device: "fake_device",
                module: "fake_module",
                input: "fake_input",
                sys: &[
                    (Mid, MID_PY),
                    (
                        To,
                        "/devices/fake_device/modules/fake_module/inputs/fake_input",
                    ),
                ],
                app: NONE,
            },
        ),
        // py v2 TestGetInputNameFromTopic.test_url_decodes_value: input
        // names are percent-decoded, `+` is a plus.
        (
            "devices/fake_device/modules/fake_module/inputs/fake%24input/%24.mid=6b822696-f75a-46f5-8b02-0680db65abf5",
            Want::Input {
                device: "fake_device",
                module: "fake_module",
                input: "fake$input",
                sys: &[(Mid, MID_PY)],
                app: NONE,
            },
        ),
        (
            "devices/fake_device/modules/fake_module/inputs/fake+input/%24.mid=6b822696-f75a-46f5-8b02-0680db65abf5",
            Want::Input {
                device: "fake_device",
                module: "fake_module",
                input: "fake+input",
                sys: &[(Mid, MID_PY)],
                app: NONE,
            },
        ),
        // py v2 TestExtractMessagePropertiesFromTopic.test_url_decode,
        // "Input message topic, Standard URL decoding" (ids are not
        // decoded: the hub writes them as they are).
        (
            "devices/fake%24device/modules/fake%23module/inputs/fake%25input/%24.cid=fake%23corid&%24.mid=message%24id&custom%2A=value%23&custom%26=value%24&custom%25=value%40",
            Want::Input {
                device: "fake%24device",
                module: "fake%23module",
                input: "fake%input",
                sys: &[(Cid, "fake#corid"), (Mid, "message$id")],
                app: &[
                    ("custom*", Some("value#")),
                    ("custom&", Some("value$")),
                    ("custom%", Some("value@")),
                ],
            },
        ),
        // py v2 test_receive_topic_without_values (input variant)
        (
            "devices/fakedevice/modules/fakemodule/inputs/fakeinput/topic=%2Fsubscriptions%2FresourceGroups&subject=%2FgraphInstances&dataVersion=1.0&%24.cdid=fakecdid&%24.mid=e32c2285-668e-4161-a236-9f5f6b90362c&%24.cid&%24.uid",
            Want::Input {
                device: "fakedevice",
                module: "fakemodule",
                input: "fakeinput",
                sys: &[
                    (Cdid, "fakecdid"),
                    (Mid, "e32c2285-668e-4161-a236-9f5f6b90362c"),
                ],
                app: &[
                    ("topic", Some("/subscriptions/resourceGroups")),
                    ("subject", Some("/graphInstances")),
                    ("dataVersion", Some("1.0")),
                    ("$.cid", None),
                    ("$.uid", None),
                ],
            },
        ),
        // node _mqtt_receiver_test.js, #inputMessage
        (
            "devices/foo/modules/moduleId/inputs/fakeInputName/",
            Want::Input {
                device: "foo",
                module: "moduleId",
                input: "fakeInputName",
                sys: &[],
                app: NONE,
            },
        ),
        // cs MqttIotHubAdapterTest.cs, ..._ModuleEndpointMessage: the old
        // `endpoints` segment, in no documented topic: refused.
        (
            "devices/d10/modules/m3/endpoints/in2/%24.cid=Corrid1&%24.mid=MessageId1&Prop1=Value1/",
            Want::Refused(TopicError::NoMatch),
        ),
        // ---- twin responses --------------------------------------------
        // sdk-for-c test_az_iot_hub_client_twin.c, ..._get_response_found_succeed
        (
            "$iothub/twin/res/200/?$rid=id_one",
            Want::Twin {
                status: 200,
                rid: "id_one",
                version: None,
            },
        ),
        // sdk-for-c, ..._reported_props_found_succeed
        (
            "$iothub/twin/res/204/?$rid=id_one&$version=16",
            Want::Twin {
                status: 204,
                rid: "id_one",
                version: Some(16),
            },
        ),
        // sdk-for-c, ..._400_succeed and ..._504_succeed
        (
            "$iothub/twin/res/400/?$rid=id_one",
            Want::Twin {
                status: 400,
                rid: "id_one",
                version: None,
            },
        ),
        (
            "$iothub/twin/res/504/?$rid=id_one",
            Want::Twin {
                status: 504,
                rid: "id_one",
                version: None,
            },
        ),
        // sdk-for-c, ..._not_found_incomplete_fails
        (
            "$iothub/twin/res/200",
            Want::Refused(TopicError::MissingQuery),
        ),
        // sdk-for-c, ..._not_found_fails / ..._not_found_prefix_fails
        ("$iothub/twin/rez/200", Want::Refused(TopicError::NoMatch)),
        (
            "$iothub/contoso/res/200",
            Want::Refused(TopicError::NoMatch),
        ),
        // docs iot-mqtt-connect-to-iot-hub.md (reported properties example)
        (
            "$iothub/twin/res/204/?$rid=1&$version=6",
            Want::Twin {
                status: 204,
                rid: "1",
                version: Some(6),
            },
        ),
        // iot-sdk-c TEST_MQTT_DEV_TWIN_MSG_TOPIC: a `$res` segment, in no
        // documented topic (a mock constant): refused.
        (
            "$iothub/twin/$res/200/?$rid=2",
            Want::Refused(TopicError::NoMatch),
        ),
        // node _mqtt_twin_client_test.js: no `/` before the query.
        (
            "$iothub/twin/res/200?$rid=a9f2c2b4-1b1e-4b55-8f5d-3d3c4a5b6c7d",
            Want::Twin {
                status: 200,
                rid: "a9f2c2b4-1b1e-4b55-8f5d-3d3c4a5b6c7d",
                version: None,
            },
        ),
        // py v2 TestGetTwinRequestIdFromTopic: `rid` without `$` (that
        // SDK strips `$` from keys first): no request id.
        (
            "$iothub/twin/res/200/?rid=1",
            Want::Refused(TopicError::MissingRequestId),
        ),
        // py v3 TestExtractRequestIdFromTwinResponseTopic.test_url_decodes_value:
        // the request id is kept as it travels (`RequestId::decoded` gives
        // `fake$request/id`).
        (
            "$iothub/twin/res/200/?$rid=fake%24request%2Fid",
            Want::Twin {
                status: 200,
                rid: "fake%24request%2Fid",
                version: None,
            },
        ),
        (
            "$iothub/twin/res/200/?$rid=fake+request+id",
            Want::Twin {
                status: 200,
                rid: "fake+request+id",
                version: None,
            },
        ),
        // py v3 test_no_request_id: `$mid` is no request id; an empty one
        // is one (it matches no request of this crate's).
        (
            "$iothub/twin/res/200/?$mid=1",
            Want::Refused(TopicError::MissingRequestId),
        ),
        (
            "$iothub/twin/res/200/?$rid=",
            Want::Twin {
                status: 200,
                rid: "",
                version: None,
            },
        ),
        // py v2 / v3 status tests: a status must be an integer.
        (
            "$iothub/twin/res/%24%24%24/?$rid=1",
            Want::Refused(TopicError::InvalidStatus),
        ),
        // java TopicParserTest.getRequestIdGets: no status segment.
        (
            "$iothub/twin/res/?$rid=5",
            Want::Refused(TopicError::InvalidStatus),
        ),
        // java getRequestIdOnTopicWithVersionGets / ...VersionBeforeRidGets
        // (with a status): parameters in any order.
        (
            "$iothub/twin/res/204/?$version=7&$rid=5",
            Want::Twin {
                status: 204,
                rid: "5",
                version: Some(7),
            },
        ),
        // ---- desired-property notifications ---------------------------
        // sdk-for-c ..._desired_found_succeed: that SDK keeps the version as
        // text; this crate compares versions, so it must be a number.
        (
            "$iothub/twin/PATCH/properties/desired/?$version=id_one",
            Want::Refused(TopicError::InvalidVersion),
        ),
        // py v2 TestIsTwinDesiredPropertyPatchTopic
        (
            "$iothub/twin/PATCH/properties/desired/?$version=1",
            Want::Desired(1),
        ),
        (
            "$iothub/twin/PATCH/properties/dsiered/?$version=1",
            Want::Refused(TopicError::NoMatch),
        ),
        // ---- direct methods ----------------------------------------------
        // sdk-for-c test_az_iot_hub_client_methods.c, ..._parse_received_topic_succeed
        (
            "$iothub/methods/POST/TestMethod/?$rid=1",
            Want::Method {
                name: "TestMethod",
                rid: "1",
            },
        ),
        // sdk-for-c test_az_iot_hub_client_commands.c: a Plug and Play
        // component command (split by iothub_proto::pnp).
        (
            "$iothub/methods/POST/component_one*TestMethod/?$rid=1",
            Want::Method {
                name: "component_one*TestMethod",
                rid: "1",
            },
        ),
        // sdk-for-c ..._response_topic_fail: a device→hub topic.
        (
            "$iothub/methods/res/200/?$rid=2",
            Want::Refused(TopicError::NoMatch),
        ),
        // py v2/v3 test_valid_method_topic
        (
            "$iothub/methods/POST/fake_method/?$rid=1",
            Want::Method {
                name: "fake_method",
                rid: "1",
            },
        ),
        // py v2 TestGetMethodNameFromTopic.test_url_decodes_value
        (
            "$iothub/methods/POST/fake%24method/?$rid=1",
            Want::Method {
                name: "fake$method",
                rid: "1",
            },
        ),
        (
            "$iothub/methods/POST/fake+method/?$rid=1",
            Want::Method {
                name: "fake+method",
                rid: "1",
            },
        ),
        // py v2 TestGetMethodRequestIdFromTopic: any request id, kept as
        // it travels and echoed so.
        (
            "$iothub/methods/POST/fake_method/?$rid=fake%24request%2Fid",
            Want::Method {
                name: "fake_method",
                rid: "fake%24request%2Fid",
            },
        ),
        (
            "$iothub/methods/POST/fake_method/?$rid=fake+request+id",
            Want::Method {
                name: "fake_method",
                rid: "fake+request+id",
            },
        ),
        // py v3 test_no_request_id
        (
            "$iothub/methods/POST/fake_method/?$mid=1",
            Want::Refused(TopicError::MissingRequestId),
        ),
        (
            "$iothub/methods/POST/fake_method/?$rid",
            Want::Method {
                name: "fake_method",
                rid: "",
            },
        ),
        // py v2 TestIsMethodTopic
        (
            "$iothub/mthds/POST/fake_method/?$rid=1",
            Want::Refused(TopicError::NoMatch),
        ),
        // node _mqtt_receiver_test.js: no `/` before the query, extra
        // parameters.
        (
            "$iothub/methods/POST/Reboot?$rid=1",
            Want::Method {
                name: "Reboot",
                rid: "1",
            },
        ),
        (
            "$iothub/methods/POST/Reboot?$rid=1&k1=v1&k2=v2&k3=v3",
            Want::Method {
                name: "Reboot",
                rid: "1",
            },
        ),
        // iot-sdk-c TEST_MQTT_DEV_METHOD_MSG
        (
            "$iothub/methods/POST/method_name/?$rid=b",
            Want::Method {
                name: "method_name",
                rid: "b",
            },
        ),
        // java MqttDeviceMethodTest.receiveSucceeds
        (
            "$iothub/methods/POST/testMethod/?$rid=10",
            Want::Method {
                name: "testMethod",
                rid: "10",
            },
        ),
        // java receiveThrowsIfRIDCouldNotBeParsed / ...MethodNameCouldNotBeParsed
        (
            "$iothub/methods/POST/testMethod/",
            Want::Refused(TopicError::MissingQuery),
        ),
        (
            "$iothub/methods/POST/",
            Want::Refused(TopicError::EmptyMethodName),
        ),
        // java receiveReturnsNullMessageIfTopicWasNotPost
        (
            "$iothub/methods/Not_POST/testMethod/?$rid=10",
            Want::Refused(TopicError::NoMatch),
        ),
        // ---- Device Provisioning Service ---------------------------------
        // sdk-for-c test_az_iot_provisioning_client_parser.c, ..._assigning_state_succeed
        (
            "$dps/registrations/res/202/?$rid=1&retry-after=3",
            Want::Dps {
                status: 202,
                rid: "1",
                retry: Some(3),
            },
        ),
        // sdk-for-c ..._parse_assigning2_state_succeed: key order free.
        (
            "$dps/registrations/res/202/?retry-after=120&$rid=1",
            Want::Dps {
                status: 202,
                rid: "1",
                retry: Some(120),
            },
        ),
        // sdk-for-c ..._assigned_state_succeed / ..._invalid_certificate_error_succeed
        (
            "$dps/registrations/res/200/?$rid=1",
            Want::Dps {
                status: 200,
                rid: "1",
                retry: None,
            },
        ),
        (
            "$dps/registrations/res/401/?$rid=1",
            Want::Dps {
                status: 401,
                rid: "1",
                retry: None,
            },
        ),
        // sdk-for-c ..._topic_not_matched_fails
        (
            "$dps/registrations/unknown",
            Want::Refused(TopicError::NoMatch),
        ),
        // py v2 TestExtractPropertiesFromDpsResponseTopic, and "Arbitrary
        // number of properties in response"
        (
            "$dps/registrations/res/202/?$rid=3226c2f7-3d30-425c-b83b-0c34335f8220&retry-after=3",
            Want::Dps {
                status: 202,
                rid: "3226c2f7-3d30-425c-b83b-0c34335f8220",
                retry: Some(3),
            },
        ),
        (
            "$dps/registrations/res/200/?$rid=3226c2f7-3d30-425c-b83b-0c34335f8220&foo=value1&bar=value2&buzz=value3",
            Want::Dps {
                status: 200,
                rid: "3226c2f7-3d30-425c-b83b-0c34335f8220",
                retry: None,
            },
        ),
        // py v2 test_url_decode_properties
        (
            "$dps/registrations/res/200/?$rid=request%3Fid",
            Want::Dps {
                status: 200,
                rid: "request%3Fid",
                retry: None,
            },
        ),
        // py v2 test_duplicate_keys: that SDK strips `$` and sees `rid`
        // twice; `rid` is no parameter here.
        (
            "$dps/registrations/res/200/?$rid=3226c2f7-3d30-425c-b83b-0c34335f8220&rid=something-else",
            Want::Dps {
                status: 200,
                rid: "3226c2f7-3d30-425c-b83b-0c34335f8220",
                retry: None,
            },
        ),
        // py v2/v3 status test_url_decode
        (
            "$dps/registrations/res/%24%24%24/?$rid=1",
            Want::Refused(TopicError::InvalidStatus),
        ),
        // py v3 test_key_only
        (
            "$dps/registrations/res/200/?key1&key2&key3=value",
            Want::Refused(TopicError::MissingRequestId),
        ),
        // cs ProvisioningErrorDetailsMqttTests.cs: `Retry-After` capitalised
        // (TestRetryAfterValidThrottled / ...ValidAccepted), without value
        // (...WithNoRetryAfterValue), absent (...WithNoRetryAfterQueryKeyOrValue),
        // zero and negative (...TooSmallOfDelayChoosesDefault,
        // ...NegativeDelayChoosesDefault: the caller's minimum applies).
        (
            "$dps/registrations/res/429/?$rid=9&Retry-After=32",
            Want::Dps {
                status: 429,
                rid: "9",
                retry: Some(32),
            },
        ),
        (
            "$dps/registrations/res/202/?$rid=9&Retry-After=23",
            Want::Dps {
                status: 202,
                rid: "9",
                retry: Some(23),
            },
        ),
        (
            "$dps/registrations/res/429/?$rid=9&Retry-After=",
            Want::Dps {
                status: 429,
                rid: "9",
                retry: None,
            },
        ),
        (
            "$dps/registrations/res/429/?$rid=9",
            Want::Dps {
                status: 429,
                rid: "9",
                retry: None,
            },
        ),
        (
            "$dps/registrations/res/429/?$rid=9&Retry-After=0",
            Want::Dps {
                status: 429,
                rid: "9",
                retry: Some(0),
            },
        ),
        (
            "$dps/registrations/res/429/?$rid=9&Retry-After=-1",
            Want::Dps {
                status: 429,
                rid: "9",
                retry: None,
            },
        ),
        // cs TestRetryAfterWithNoQueryString: no request id to correlate.
        (
            "$dps/registrations/res/429/",
            Want::Refused(TopicError::MissingQuery),
        ),
        // iot-sdk-c prov_transport_mqtt_common_ut.c, TEST_202_REGISTRATION_VALUE
        (
            "$dps/registrations/res/202/?$rid=1&retry-after=8",
            Want::Dps {
                status: 202,
                rid: "1",
                retry: Some(8),
            },
        ),
    ]
}

#[test]
fn every_topic_of_the_sdks_and_docs_decodes_as_documented() {
    let table = table();
    assert!(table.len() >= 80, "{} rows", table.len());
    for (topic, want) in &table {
        check(topic, want);
    }
}

#[test]
fn request_ids_of_the_table_decode_as_the_sdks_expect() {
    // py v2 TestGetMethodRequestIdFromTopic / v3 ...test_url_decodes_value
    for (wire, value) in [
        ("fake%24request%2Fid", "fake$request/id"),
        ("fake+request+id", "fake+request+id"),
        ("request%3Fid", "request?id"),
    ] {
        assert_eq!(RequestId::from_wire(wire).decoded(), value);
    }
}
