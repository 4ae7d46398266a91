//! IoT Plug and Play and IoT Edge module helpers, end to end against the hub
//! engine in simulated time.

mod pair;

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use iothub_hub::Hub;
use iothub_proto::auth::{DeviceId, ModuleId, SharedAccessKey, UsernameOptions};
use iothub_proto::edge::{self, EdgeEnvironment};
use iothub_proto::pnp::{self, ReportedPatch, WritableAck};
use iothub_proto::properties::MessageProperties;
use iothub_proto::session::{Event, Feature, Message, Session};
use pair::{Pair, config};
use serde_json::{Value, json};

const DTMI: &str = "dtmi:com:example:TemperatureController;2";

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn plug_and_play_device() {
    let config = config().with_username(UsernameOptions::default().with_model_id(DTMI));
    let mut p = Pair::connected(config);
    // The model id reached the hub in the username.
    assert_eq!(p.hub.model_id(&p.identity.clone()), Some(DTMI));

    // Component telemetry.
    let now = p.now();
    let id = p
        .session
        .send_telemetry(
            now,
            pnp::telemetry(Some("thermostat1"), &br#"{"temperature":21.5}"#[..]),
        )
        .unwrap();
    assert!(p.run_until(secs(5), |p| {
        p.events.contains(&Event::MessageAcknowledged { id })
    }));
    let t = &p.hub.telemetry()[0];
    assert_eq!(t.properties.component_name.as_deref(), Some("thermostat1"));
    assert_eq!(
        t.properties.content_type.as_deref(),
        Some("application/json")
    );

    // A writable property of a component: desired patch in, ack out.
    let now = p.now();
    p.session.enable(now, Feature::DesiredProperties).unwrap();
    assert!(p.run_until(secs(5), |p| {
        p.events
            .iter()
            .any(|e| matches!(e, Event::DesiredState { .. }))
    }));
    let identity = p.identity.clone();
    p.hub
        .update_desired(
            &identity,
            json!({"thermostat1": {"__t": "c", "targetTemperature": 25.0}}),
        )
        .unwrap();
    assert!(p.run_until(secs(5), |p| {
        p.events
            .iter()
            .any(|e| matches!(e, Event::DesiredPatch { .. }))
    }));
    let (patch, version) = p
        .events
        .iter()
        .find_map(|e| match e {
            Event::DesiredPatch { patch, version } => Some((patch.clone(), *version)),
            _ => None,
        })
        .unwrap();
    let components: Vec<&str> = pnp::desired_components(&patch).collect();
    assert_eq!(components, vec!["thermostat1"]);
    let mut reply = ReportedPatch::new().property(None, "serialNumber", json!("SN-1"));
    for (name, value) in pnp::desired_properties(&patch, Some("thermostat1")) {
        reply = reply.ack(
            Some("thermostat1"),
            name,
            WritableAck::new(value.clone(), 200, version).with_description("updated"),
        );
    }
    let now = p.now();
    let token = p.session.update_reported(now, reply.to_bytes()).unwrap();
    assert!(p.run_until(secs(5), |p| p.events.iter().any(
        |e| matches!(e, Event::ReportedUpdated { token: t, .. } if *t == token)
    )));
    let reported = Value::Object(p.hub.reported(&identity).unwrap().clone());
    assert_eq!(
        reported,
        json!({
            "serialNumber": "SN-1",
            "thermostat1": {"__t": "c", "targetTemperature":
                {"value": 25.0, "ac": 200, "av": version, "ad": "updated"}}
        })
    );

    // A component command.
    let now = p.now();
    p.session.enable(now, Feature::Methods).unwrap();
    p.run_until(secs(5), |p| p.hub.subscriptions(p.conn.unwrap()).len() >= 3);
    let rid = p
        .hub
        .invoke_method(
            &identity,
            "thermostat1*getMaxMinReport",
            Bytes::from_static(b"\"2024-01-01T00:00:00Z\""),
        )
        .unwrap();
    assert!(p.run_until(secs(5), |p| {
        p.events
            .iter()
            .any(|e| matches!(e, Event::MethodRequest { .. }))
    }));
    let (method_id, name) = p
        .events
        .iter()
        .find_map(|e| match e {
            Event::MethodRequest { id, name, .. } => Some((id.clone(), name.clone())),
            _ => None,
        })
        .unwrap();
    let (component, command) = pnp::split_command(&name);
    assert_eq!(
        (component, command),
        (Some("thermostat1"), "getMaxMinReport")
    );
    let now = p.now();
    p.session
        .respond_to_method(now, method_id, 200, Bytes::from_static(b"{\"maxTemp\":30}"))
        .unwrap();
    p.pump();
    assert_eq!(
        p.hub.take_method_response(&rid),
        Some((200, Bytes::from_static(b"{\"maxTemp\":30}")))
    );
}

/// The workload API, simulated: HMAC-SHA256 of the request's `data` under
/// the module key, as `{"digest":"…"}`.
fn workload_sign(key: &SharedAccessKey, request_body: &str) -> Vec<u8> {
    use hmac::{Hmac, KeyInit, Mac};
    let b64 = base64::engine::general_purpose::STANDARD;
    let body: Value = serde_json::from_str(request_body).unwrap();
    let data = b64.decode(body["data"].as_str().unwrap()).unwrap();
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key.expose_secret()).unwrap();
    mac.update(&data);
    serde_json::to_vec(&json!({"digest": b64.encode(mac.finalize().into_bytes())})).unwrap()
}

#[test]
fn edge_module_inputs_and_outputs() {
    let vars = BTreeMap::from([
        (edge::IOTEDGE_IOTHUBHOSTNAME, pair::HOST),
        (edge::IOTEDGE_GATEWAYHOSTNAME, "edgehub"),
        (edge::IOTEDGE_DEVICEID, "edge-1"),
        (edge::IOTEDGE_MODULEID, "filter"),
        (edge::IOTEDGE_AUTHSCHEME, "sasToken"),
        (
            edge::IOTEDGE_WORKLOADURI,
            "unix:///var/run/iotedge/workload.sock",
        ),
        (edge::IOTEDGE_MODULEGENERATIONID, "637000000000000001"),
        (edge::IOTEDGE_APIVERSION, "2019-01-30"),
    ]);
    let env = EdgeEnvironment::from_lookup(|k| vars.get(k).map(|v| v.to_string())).unwrap();
    let module_key = SharedAccessKey::from_bytes([4u8; 32]).unwrap();
    let mut hub = Hub::new(pair::HOST);
    let identity = hub.add_module(
        DeviceId::new("edge-1").unwrap(),
        ModuleId::new("filter").unwrap(),
        module_key.clone(),
    );
    assert_eq!(identity, env.identity());

    // The adapter's part: sign through the workload API.
    let expiry = pair::UNIX0 + 3600;
    let request = env.sign_request(expiry);
    let token = env
        .token_from_sign_response(expiry, &workload_sign(&module_key, &request.body))
        .unwrap();
    let config = env.config(token);
    assert_eq!(config.transport_host().as_str(), "edgehub");

    let session = Session::new(config).unwrap();
    let mut p = Pair::with_hub(session, hub, identity.clone(), 0);
    let now = p.now();
    p.session.enable(now, Feature::ModuleInputs).unwrap();
    assert!(p.run_until(secs(5), |p| {
        p.conn.is_some_and(|c| p.hub.subscriptions(c).len() == 1)
    }));

    // A routed input message.
    let mut props = MessageProperties::new();
    props.add_application("alert", "high").unwrap();
    p.hub
        .send_module_input(
            identity.device_id(),
            identity.module_id().unwrap(),
            "input1",
            props,
            Bytes::from_static(b"{\"t\":99}"),
        )
        .unwrap();
    assert!(p.run_until(secs(5), |p| {
        p.events
            .iter()
            .any(|e| matches!(e, Event::InputMessage { .. }))
    }));
    let Some(Event::InputMessage { input, message }) = p
        .events
        .iter()
        .find(|e| matches!(e, Event::InputMessage { .. }))
        .cloned()
    else {
        unreachable!()
    };
    assert_eq!(input, "input1");
    assert_eq!(
        message.properties.get_application("alert"),
        Some(Some("high"))
    );
    assert_eq!(message.payload.as_ref(), b"{\"t\":99}");
    p.pump();
    assert_eq!(p.hub.pending_messages(&identity), 0, "acknowledged");

    // An output message.
    let now = p.now();
    let id = p
        .session
        .send_telemetry(
            now,
            edge::output_message("alerts", Message::new(&b"{\"t\":99}"[..])),
        )
        .unwrap();
    assert!(p.run_until(secs(5), |p| {
        p.events.contains(&Event::MessageAcknowledged { id })
    }));
    let t = &p.hub.telemetry()[0];
    assert_eq!(t.identity, identity);
    assert_eq!(t.properties.output_name.as_deref(), Some("alerts"));
}
