//! IoT Edge routes: the parser, and module outputs delivered to inputs.

use super::*;
use crate::routes::{Route, RouteError, RouteSink};
use std::string::ToString;

fn route(text: &str) -> Route {
    Route::parse(text).unwrap()
}

#[test]
fn the_parser_reads_the_supported_forms_and_names_what_it_refuses() {
    let r = route(
        r#"FROM /messages/modules/filter/outputs/out1 INTO BrokeredEndpoint("/modules/sink/inputs/in1")"#,
    );
    assert_eq!(r.module.as_str(), "filter");
    assert_eq!(r.output.as_deref(), Some("out1"));
    assert_eq!(
        r.sink,
        RouteSink::ModuleInput {
            module: ModuleId::new("sink").unwrap(),
            input: s("in1"),
        }
    );
    // Keywords in any case, free white space, a wildcard output.
    let w = route(
        "  from   /messages/modules/filter/outputs/*\tinto brokeredendpoint ( \"/modules/sink/inputs/in2\" )  ",
    );
    assert_eq!(w.output, None);
    assert!(w.matches(&ModuleId::new("filter").unwrap(), "anything"));
    assert!(!w.matches(&ModuleId::new("other").unwrap(), "anything"));
    assert!(r.matches(&ModuleId::new("filter").unwrap(), "out1"));
    assert!(!r.matches(&ModuleId::new("filter").unwrap(), "out2"));
    let up = route("FROM /messages/modules/filter/outputs/alerts INTO $upstream");
    assert_eq!(up.sink, RouteSink::Upstream);
    // The canonical text reads back to the same route.
    for r in [&r, &w, &up] {
        assert_eq!(Route::parse(&r.to_string()).as_ref(), Ok(r));
    }

    let err = |text: &str| Route::parse(text).unwrap_err();
    assert_eq!(err(""), RouteError::MissingFrom);
    assert_eq!(
        err("SELECT /messages/modules/a/outputs/o INTO $upstream"),
        RouteError::MissingFrom
    );
    assert_eq!(
        err("FROM /messages/modules/a/outputs/o"),
        RouteError::MissingInto
    );
    assert_eq!(
        err("FROM /messages/modules/a/outputs/o WHERE x = 1 INTO $upstream"),
        RouteError::ConditionUnsupported
    );
    assert_eq!(
        err("FROM /messages/* INTO $upstream"),
        RouteError::UnsupportedSource(s("/messages/*"))
    );
    assert_eq!(
        err("FROM /messages/modules/a/inputs/o INTO $upstream"),
        RouteError::UnsupportedSource(s("/messages/modules/a/inputs/o"))
    );
    assert_eq!(
        err(r#"FROM /messages/modules/a/outputs/o INTO BrokeredEndpoint("/modules/b/outputs/i")"#),
        RouteError::UnsupportedSink(s("/modules/b/outputs/i"))
    );
    assert_eq!(
        err("FROM /messages/modules/a/outputs/o INTO somewhere"),
        RouteError::UnsupportedSink(s("somewhere"))
    );
    assert_eq!(
        err(r#"FROM /messages/modules/a/outputs/o INTO BrokeredEndpoint("/modules/b/inputs/i""#),
        RouteError::UnsupportedSink(s(r#"BrokeredEndpoint("/modules/b/inputs/i""#))
    );
    assert_eq!(
        err(r#"FROM /messages/modules/a/outputs/o INTO BrokeredEndpoint("/modules/b/inputs/i") x"#),
        RouteError::TrailingText(s("x"))
    );
    assert_eq!(
        err("FROM /messages/modules/a b/outputs/o INTO $upstream"),
        RouteError::UnsupportedSource(s("/messages/modules/a"))
    );
    assert_eq!(
        err("FROM /messages/modules/mödule/outputs/o INTO $upstream"),
        RouteError::InvalidModuleId(s("mödule"))
    );
    assert_eq!(
        err(r#"FROM /messages/modules/a/outputs/o INTO BrokeredEndpoint("/modules/b/inputs/")"#),
        RouteError::InvalidName(s(""))
    );
    assert_eq!(
        err(r#"FROM /messages/modules/a/outputs/o+ INTO $upstream"#),
        RouteError::InvalidName(s("o+"))
    );
    // Every error says what is wrong.
    assert!(
        err("FROM /messages/* INTO $upstream")
            .to_string()
            .contains("/messages/*")
    );
}

/// Module `filter` of `dev1` and module `sink` of `dev1`, both connected and
/// subscribed, and a route from `filter`'s `out1` to `sink`'s `in1`.
struct Edge {
    w: World,
    filter: ConnId,
    sink_id: Identity,
    sink: ConnId,
}

fn edge(route_text: &str) -> Edge {
    let mut w = World::new();
    w.device("dev1", 1);
    let (f, fk) = w.module("dev1", "filter", 2);
    let (sink_id, sk) = w.module("dev1", "sink", 3);
    assert!(w.hub.set_route("r1", route(route_text)).is_none());
    let filter = w.connect(&f, &fk);
    w.subscribe_all(filter, &f);
    let sink = w.connect(&sink_id, &sk);
    w.subscribe_all(sink, &sink_id);
    Edge {
        w,
        filter,
        sink_id,
        sink,
    }
}

fn output_topic(module: &str, output: &str, app: &[(&str, &str)]) -> String {
    let mut p = MessageProperties::new();
    p.output_name = Some(s(output));
    p.message_id = Some(s("m-1"));
    for (k, v) in app {
        p.add_application(*k, *v).unwrap();
    }
    let id = Identity::module(
        DeviceId::new("dev1").unwrap(),
        ModuleId::new(module).unwrap(),
    );
    topic::telemetry(&id, &p)
}

#[test]
fn an_output_message_reaches_the_routed_input_with_its_properties() {
    let mut e = edge(
        r#"FROM /messages/modules/filter/outputs/out1 INTO BrokeredEndpoint("/modules/sink/inputs/in1")"#,
    );
    let topic = output_topic("filter", "out1", &[("temp", "hot")]);
    let pid = e.w.pid();
    e.w.publish(e.filter, &topic, QosPid::AtLeastOnce(pid), b"21.5");
    // The sender's PUBLISH is acknowledged.
    assert_eq!(e.w.recv(e.filter), vec![Packet::Puback(pid)]);
    let got = one_publish(&e.w.recv(e.sink));
    assert_eq!(got.qos(), QoS::AtLeastOnce);
    assert_eq!(got.payload().as_ref(), b"21.5");
    let mut want = MessageProperties::new();
    want.message_id = Some(s("m-1"));
    want.connection_device_id = Some(s("dev1"));
    want.connection_module_id = Some(s("filter"));
    want.add_application("temp", "hot").unwrap();
    assert_eq!(
        topic::parse(got.topic().as_str()),
        Ok(topic::HubTopic::ModuleInput {
            device_id: "dev1",
            module_id: "sink",
            input: "in1".into(),
            properties: want,
        })
    );
    // Routed, so not stored as telemetry.
    assert!(e.w.hub.telemetry().is_empty());
    assert_eq!(e.w.hub.counters().messages_routed, 1);
    // Kept until the sink's PUBACK.
    assert_eq!(e.w.hub.pending_messages(&e.sink_id), 1);
    e.w.send(e.sink, Packet::Puback(got.pid().unwrap()));
    assert_eq!(e.w.hub.pending_messages(&e.sink_id), 0);
}

#[test]
fn unmatched_outputs_and_plain_telemetry_are_stored_as_telemetry() {
    let mut e = edge(
        r#"FROM /messages/modules/filter/outputs/out1 INTO BrokeredEndpoint("/modules/sink/inputs/in1")"#,
    );
    let other = output_topic("filter", "out2", &[]);
    e.w.publish(e.filter, &other, QosPid::AtMostOnce, b"a");
    let plain = topic::telemetry(
        &Identity::module(
            DeviceId::new("dev1").unwrap(),
            ModuleId::new("filter").unwrap(),
        ),
        &MessageProperties::new(),
    );
    e.w.publish(e.filter, &plain, QosPid::AtMostOnce, b"b");
    // The sink's own output, not taken by a route from `filter`.
    let from_sink = output_topic("sink", "out1", &[]);
    e.w.publish(e.sink, &from_sink, QosPid::AtMostOnce, b"c");
    assert!(e.w.recv(e.sink).is_empty());
    let bodies: Vec<&[u8]> =
        e.w.hub
            .telemetry()
            .iter()
            .map(|t| t.payload.as_ref())
            .collect();
    assert_eq!(bodies, vec![&b"a"[..], b"b", b"c"]);
    assert_eq!(e.w.hub.counters().messages_routed, 0);
}

#[test]
fn a_wildcard_route_an_upstream_route_and_removal() {
    let mut e = edge(
        r#"FROM /messages/modules/filter/outputs/* INTO BrokeredEndpoint("/modules/sink/inputs/all")"#,
    );
    e.w.hub.set_route(
        "up",
        route("FROM /messages/modules/filter/outputs/alerts INTO $upstream"),
    );
    assert_eq!(e.w.hub.routes().count(), 2);
    let alerts = output_topic("filter", "alerts", &[]);
    e.w.publish(e.filter, &alerts, QosPid::AtMostOnce, b"fire");
    // Both routes take it: the sink gets it and it goes upstream.
    let got = one_publish(&e.w.recv(e.sink));
    assert!(
        got.topic()
            .as_str()
            .starts_with("devices/dev1/modules/sink/inputs/all/")
    );
    assert_eq!(e.w.hub.telemetry().len(), 1);
    assert_eq!(e.w.hub.telemetry()[0].payload.as_ref(), b"fire");
    e.w.send(e.sink, Packet::Puback(got.pid().unwrap()));
    // Without routes, an output is plain telemetry.
    assert!(e.w.hub.remove_route("r1").is_some());
    assert!(e.w.hub.remove_route("up").is_some());
    assert!(e.w.hub.remove_route("up").is_none());
    e.w.publish(e.filter, &alerts, QosPid::AtMostOnce, b"again");
    assert!(e.w.recv(e.sink).is_empty());
    assert_eq!(e.w.hub.telemetry().len(), 2);
}

#[test]
fn a_route_to_an_unknown_module_is_journaled_not_lost_silently() {
    let mut e = edge(
        r#"FROM /messages/modules/filter/outputs/out1 INTO BrokeredEndpoint("/modules/ghost/inputs/in1")"#,
    );
    let topic = output_topic("filter", "out1", &[]);
    let pid = e.w.pid();
    e.w.publish(e.filter, &topic, QosPid::AtLeastOnce(pid), b"x");
    assert_eq!(e.w.recv(e.filter), vec![Packet::Puback(pid)]);
    let failures = e.w.hub.take_route_failures();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].route, "r1");
    assert_eq!(failures[0].to.to_string(), "dev1/ghost");
    assert_eq!(failures[0].from.to_string(), "dev1/filter");
    assert_eq!(failures[0].error, HubError::UnknownIdentity);
    assert_eq!(e.w.hub.counters().route_failures, 1);
    assert!(e.w.hub.take_route_failures().is_empty());
    // A device's telemetry with `$.on` is not routed (devices have no outputs).
    let mut w = World::new();
    let (d, dk) = w.device("dev2", 4);
    w.module("dev2", "sink", 5);
    w.hub.set_route(
        "r",
        route(r#"FROM /messages/modules/filter/outputs/* INTO BrokeredEndpoint("/modules/sink/inputs/i")"#),
    );
    let conn = w.connect(&d, &dk);
    let mut p = MessageProperties::new();
    p.output_name = Some(s("o"));
    w.publish(conn, &topic::telemetry(&d, &p), QosPid::AtMostOnce, b"d");
    assert_eq!(w.hub.telemetry().len(), 1);
}
