//! The device session against the hub engine (`iothub_hub`), end to
//! end in simulated time: every scenario runs in microseconds of real time.

mod pair;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use iothub_proto::properties::MessageProperties;
use iothub_proto::session::{Event, Feature, Message, MessageId};
use pair::{Pair, config};
use serde_json::json;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn tagged(n: u64) -> Message {
    let mut props = MessageProperties::new();
    props.message_id = Some(format!("m{n}"));
    Message::new(Bytes::from(format!("{{\"n\":{n}}}"))).with_properties(props)
}

fn acked(events: &[Event]) -> Vec<MessageId> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::MessageAcknowledged { id } => Some(*id),
            _ => None,
        })
        .collect()
}

fn failed(events: &[Event]) -> Vec<MessageId> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::MessageFailed { id, .. } => Some(*id),
            _ => None,
        })
        .collect()
}

#[test]
fn telemetry_reaches_the_hub_with_its_properties() {
    let mut p = Pair::connected(config());
    let now = p.now();
    let id = p.session.send_telemetry(now, tagged(1)).expect("accepted");
    assert!(p.run_until(secs(5), |p| acked(&p.events).contains(&id)));
    let t = p.hub.telemetry();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].properties.message_id.as_deref(), Some("m1"));
    assert_eq!(t[0].payload.as_ref(), b"{\"n\":1}");
    assert!(!t[0].dup);
}

#[test]
fn nothing_is_lost_across_dropped_connections() {
    let mut p = Pair::connected(config().with_max_in_flight(8).with_queue_capacity(1_000));
    let mut ids = BTreeMap::new();
    let mut tag = 0u64;
    for _round in 0..6 {
        // The hub keeps its PUBACKs back, so messages are in flight (and
        // queued behind the window) when the connection drops.
        p.hub.withhold_pubacks(true);
        for _ in 0..50 {
            let now = p.now();
            let id = p
                .session
                .send_telemetry(now, tagged(tag))
                .expect("accepted");
            ids.insert(id, tag);
            tag += 1;
        }
        p.pump();
        assert_eq!(p.session.in_flight_len(), 8);
        let conn = p.conn.expect("connected");
        p.hub.drop_connection(conn);
        p.hub.withhold_pubacks(false);
        let connects = p.hub.counters().connects_accepted;
        assert!(p.run_until(secs(120), |p| p.hub.counters().connects_accepted > connects));
    }
    assert!(p.run_until(secs(600), |p| acked(&p.events).len()
        + failed(&p.events).len()
        >= 300));
    let acks = acked(&p.events);
    assert_eq!(failed(&p.events), Vec::<MessageId>::new(), "{:?}", p.events);
    assert_eq!(acks.len(), 300, "each message acknowledged exactly once");
    let mut unique = acks.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 300);
    // Every message arrived at the hub; the re-sent ones carry DUP.
    let mut seen = BTreeMap::<String, usize>::new();
    let mut dups = 0;
    for t in p.hub.telemetry() {
        *seen
            .entry(t.properties.message_id.clone().expect("mid"))
            .or_default() += 1;
        dups += usize::from(t.dup);
    }
    for n in ids.values() {
        assert!(
            seen.contains_key(&format!("m{n}")),
            "m{n} never reached the hub"
        );
    }
    let duplicates: usize = seen.values().map(|c| c - 1).sum();
    assert_eq!(
        duplicates,
        6 * 8,
        "the 8 in flight at each drop arrive twice"
    );
    assert_eq!(dups, 6 * 8, "and their second copy has DUP set");
    assert_eq!(p.hub.counters().connects_accepted, 7);
}

#[test]
fn twin_get_and_reported_patch() {
    let mut p = Pair::connected(config());
    p.hub
        .update_desired(&p.identity.clone(), json!({"interval": 5}))
        .expect("desired");
    let now = p.now();
    let get = p.session.get_twin(now).expect("get");
    assert!(p.run_until(secs(5), |p| {
        p.events
            .iter()
            .any(|e| matches!(e, Event::TwinReceived { token, .. } if *token == get))
    }));
    let twin = p
        .events
        .iter()
        .find_map(|e| match e {
            Event::TwinReceived { twin, .. } => Some(twin.clone()),
            _ => None,
        })
        .expect("twin");
    assert_eq!(twin.desired["interval"], json!(5));
    assert_eq!(twin.desired_version, p.hub.desired_version(&p.identity));

    let now = p.now();
    let patch = p
        .session
        .update_reported(now, Bytes::from_static(b"{\"firmware\":\"1.2\"}"))
        .expect("patch");
    assert!(p.run_until(secs(5), |p| p.events.iter().any(
        |e| matches!(e, Event::ReportedUpdated { token, .. } if *token == patch)
    )));
    let version = p.events.iter().find_map(|e| match e {
        Event::ReportedUpdated { version, .. } => *version,
        _ => None,
    });
    assert_eq!(version, p.hub.reported_version(&p.identity));
    assert_eq!(
        p.hub.reported(&p.identity).expect("reported")["firmware"],
        json!("1.2")
    );
}

#[test]
fn throttled_twin_requests_are_retried() {
    let mut p = Pair::connected(config());
    let id = p.identity.clone();
    p.hub.fail_next_twin_ops(&id, 2, 429).expect("fault");
    let now = p.now();
    let get = p.session.get_twin(now).expect("get");
    assert!(p.run_until(secs(60), |p| p.events.iter().any(|e| matches!(
        e,
        Event::TwinReceived { token, .. } | Event::RequestFailed { token, .. } if *token == get
    ))));
    assert!(
        p.events
            .iter()
            .any(|e| matches!(e, Event::TwinReceived { token, .. } if *token == get)),
        "{:?}",
        p.events
    );
}

#[test]
fn desired_properties_resync_after_reconnect() {
    let mut p = Pair::connected(config());
    let id = p.identity.clone();
    let now = p.now();
    p.session
        .enable(now, Feature::DesiredProperties)
        .expect("enable");
    // First connection: a full state event (version moved from "none").
    assert!(p.run_until(secs(5), |p| {
        p.events
            .iter()
            .any(|e| matches!(e, Event::DesiredState { .. }))
    }));
    p.take_events();

    p.hub.update_desired(&id, json!({"a": 1})).expect("desired");
    assert!(p.run_until(secs(5), |p| {
        p.events
            .iter()
            .any(|e| matches!(e, Event::DesiredPatch { .. }))
    }));
    let v1 = p.hub.desired_version(&id).expect("version");
    assert_eq!(p.session.desired_version(), Some(v1));
    p.take_events();

    // Offline changes: two versions move while the device is away.
    let conn = p.conn.expect("connected");
    p.hub.drop_connection(conn);
    p.pump();
    p.hub.update_desired(&id, json!({"a": 2})).expect("desired");
    p.hub
        .update_desired(&id, json!({"b": true}))
        .expect("desired");
    let v3 = p.hub.desired_version(&id).expect("version");
    assert!(p.run_until(secs(120), |p| p.session.desired_version() == Some(v3)));
    let full: Vec<_> = p
        .events
        .iter()
        .filter_map(|e| match e {
            Event::DesiredState { desired, version } => Some((desired.clone(), *version)),
            _ => None,
        })
        .collect();
    assert_eq!(
        full.len(),
        1,
        "exactly one full-state event: {:?}",
        p.events
    );
    assert_eq!(full[0].1, v3);
    assert_eq!(full[0].0["a"], json!(2));
    assert_eq!(full[0].0["b"], json!(true));
    assert!(
        !p.events
            .iter()
            .any(|e| matches!(e, Event::DesiredPatch { .. })),
        "no fake patch"
    );
    p.take_events();

    // Reconnect without changes: no full-state event.
    let conn = p.conn.expect("connected");
    p.hub.drop_connection(conn);
    assert!(p.run_until(secs(120), |p| {
        p.events
            .iter()
            .any(|e| matches!(e, Event::Connected { .. }))
    }));
    p.advance(secs(5));
    assert!(
        !p.events
            .iter()
            .any(|e| matches!(e, Event::DesiredState { .. })),
        "{:?}",
        p.events
    );
}

#[test]
fn direct_method_round_trip_and_undeliverable_answer() {
    let mut p = Pair::connected(config());
    let id = p.identity.clone();
    let now = p.now();
    p.session.enable(now, Feature::Methods).expect("enable");
    p.advance(secs(1));
    let rid = p
        .hub
        .invoke_method(&id, "reboot", Bytes::from_static(b"{\"delay\":1}"))
        .expect("invoke");
    assert!(p.run_until(secs(5), |p| {
        p.events
            .iter()
            .any(|e| matches!(e, Event::MethodRequest { .. }))
    }));
    let (mid, name, payload) = p
        .events
        .iter()
        .find_map(|e| match e {
            Event::MethodRequest { id, name, payload } => {
                Some((id.clone(), name.clone(), payload.clone()))
            }
            _ => None,
        })
        .expect("request");
    assert_eq!(name, "reboot");
    assert_eq!(payload.as_ref(), b"{\"delay\":1}");
    let now = p.now();
    p.session
        .respond_to_method(now, mid, 200, Bytes::from_static(b"{\"ok\":true}"))
        .expect("respond");
    p.pump();
    assert_eq!(
        p.hub.take_method_response(&rid),
        Some((200, Bytes::from_static(b"{\"ok\":true}")))
    );

    // A request whose connection is gone cannot be answered.
    p.take_events();
    let rid2 = p
        .hub
        .invoke_method(&id, "ping", Bytes::new())
        .expect("invoke");
    assert!(p.run_until(secs(5), |p| {
        p.events
            .iter()
            .any(|e| matches!(e, Event::MethodRequest { .. }))
    }));
    let mid2 = p
        .events
        .iter()
        .find_map(|e| match e {
            Event::MethodRequest { id, .. } => Some(id.clone()),
            _ => None,
        })
        .expect("request");
    let conn = p.conn.expect("connected");
    p.hub.drop_connection(conn);
    assert!(p.run_until(secs(120), |p| {
        p.events
            .iter()
            .filter(|e| matches!(e, Event::Connected { .. }))
            .count()
            >= 1
    }));
    let now = p.now();
    assert!(
        p.session
            .respond_to_method(now, mid2, 200, Bytes::new())
            .is_err()
    );
    assert_eq!(p.hub.take_method_response(&rid2), None);
}

#[test]
fn cloud_to_device_messages_are_acknowledged_once_taken() {
    let mut p = Pair::connected(config());
    let now = p.now();
    p.session.enable(now, Feature::C2d).expect("enable");
    p.advance(secs(1));
    let mut props = MessageProperties::new();
    props.add_application("k", "v").expect("prop");
    let device = p.identity.device_id().clone();
    p.hub
        .send_c2d(&device, props, Bytes::from_static(b"hello"))
        .expect("c2d");
    assert!(p.run_until(secs(5), |p| {
        p.events.iter().any(|e| matches!(e, Event::C2dMessage(_)))
    }));
    p.pump();
    assert_eq!(
        p.hub.pending_messages(&p.identity),
        0,
        "PUBACK sent after the event was taken"
    );
    let msg = p
        .events
        .iter()
        .find_map(|e| match e {
            Event::C2dMessage(m) => Some(m.clone()),
            _ => None,
        })
        .expect("c2d");
    assert_eq!(msg.payload.as_ref(), b"hello");
    assert_eq!(msg.properties.get_application("k"), Some(Some("v")));
    assert!(msg.properties.message_id.is_some(), "the hub sets $.mid");
}

#[test]
fn dead_connection_is_detected_by_keep_alive() {
    let mut p = Pair::connected(
        config()
            .with_keep_alive(secs(30))
            .with_ping_timeout(secs(10)),
    );
    p.hub.silence_pingresp(true);
    assert!(p.run_until(secs(120), |p| {
        p.events
            .iter()
            .any(|e| matches!(e, Event::Disconnected { .. }))
    }));
    // 30 s idle, then 10 s without PINGRESP.
    assert!(
        p.now_ms >= 40_000 && p.now_ms <= 41_000,
        "detected at {} ms",
        p.now_ms
    );
    p.hub.silence_pingresp(false);
    let before = p.hub.counters().connects_accepted;
    assert!(p.run_until(secs(120), |p| p.hub.counters().connects_accepted > before));
}

#[test]
fn sas_tokens_are_renewed_before_they_expire() {
    let mut p = Pair::connected(config().with_sas_lifetime(secs(100)));
    let now = p.now();
    let first = p.session.send_telemetry(now, tagged(0)).expect("send");
    // 10 lifetimes: the session reconnects with a fresh token each time,
    // before the hub would close the connection for an expired token.
    for n in 1..=20u64 {
        p.advance(secs(50));
        let now = p.now();
        p.session.send_telemetry(now, tagged(n)).expect("send");
    }
    p.advance(secs(30));
    let c = p.hub.counters().clone();
    assert_eq!(c.token_expiries, 0, "{c:?}");
    assert_eq!(c.connects_refused, 0, "{c:?}");
    assert!(c.connects_accepted >= 10, "{c:?}");
    assert_eq!(acked(&p.events).len(), 21, "{:?}", failed(&p.events));
    assert!(acked(&p.events).contains(&first));
}

#[test]
fn renewal_happens_early_when_wall_clock_jumps() {
    let mut p = Pair::connected(config());
    let before = p.hub.counters().connects_accepted;
    // The host slept for 50 minutes (past 80 % of the token's hour, not past
    // its expiry): monotonic time barely moved.
    p.unix_skew = 3_000;
    p.advance(secs(1));
    assert!(
        p.hub.counters().connects_accepted > before,
        "reconnected with a fresh token"
    );
    assert_eq!(p.hub.counters().token_expiries, 0);
}

#[test]
fn received_bytes_split_anywhere_give_the_same_events() {
    // Record a session's life against the hub: connect, subscribe, twin,
    // desired patch, method, C2D.
    let run = |chunk: Option<usize>| {
        let mut p = Pair::new(config().with_seed(7));
        p.chunk = chunk;
        let id = p.identity.clone();
        let device = id.device_id().clone();
        p.advance(secs(1));
        let now = p.now();
        for f in [Feature::C2d, Feature::Methods, Feature::DesiredProperties] {
            p.session.enable(now, f).expect("enable");
        }
        p.advance(secs(1));
        let now = p.now();
        p.session.get_twin(now).expect("get");
        p.session.send_telemetry(now, tagged(1)).expect("send");
        p.hub
            .update_desired(&id, json!({"x": [1, 2, 3]}))
            .expect("desired");
        p.hub
            .invoke_method(&id, "m", Bytes::from_static(b"{}"))
            .expect("invoke");
        p.hub
            .send_c2d(
                &device,
                MessageProperties::new(),
                Bytes::from_static(b"c2d"),
            )
            .expect("c2d");
        p.advance(secs(2));
        p.take_events()
    };
    let whole = run(None);
    assert!(whole.len() >= 7, "{whole:?}");
    for n in [1, 2, 3, 5, 7, 13, 64] {
        assert_eq!(run(Some(n)), whole, "chunks of {n} bytes");
    }
}

/// The device process dies: its connection drops without DISCONNECT and a
/// new session (nothing remembered) connects with the same identity at
/// the same hub, `CleanSession 0`, a second later.
fn restart(mut p: Pair, config: iothub_proto::session::Config) -> Pair {
    if let Some(conn) = p.conn.take() {
        p.hub.client_closed(conn);
    }
    let session = iothub_proto::session::Session::new(config).expect("config");
    let mut q = Pair::with_hub(session, p.hub, p.identity, p.now_ms + 1_000);
    let ok = q.run_until(secs(5), |q| {
        q.events
            .iter()
            .any(|e| matches!(e, Event::Connected { .. }))
    });
    assert!(ok, "reconnected: {:?}", q.events);
    q
}

fn c2d_payloads(events: &[Event]) -> Vec<Vec<u8>> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::C2dMessage(m) => Some(m.payload.to_vec()),
            _ => None,
        })
        .collect()
}

fn send_c2d(p: &mut Pair, body: &'static [u8]) {
    let device = p.identity.device_id().clone();
    let mut props = MessageProperties::new();
    props.correlation_id = Some("c".into());
    p.hub
        .send_c2d(&device, props, Bytes::from_static(body))
        .expect("c2d");
}

#[test]
fn a_message_not_yet_taken_when_the_device_dies_is_still_at_the_hub() {
    let mut p = Pair::connected(config());
    p.take_inbound = false;
    let now = p.now();
    p.session.enable(now, Feature::C2d).expect("enable");
    p.advance(secs(1));
    send_c2d(&mut p, b"one");
    assert!(p.run_until(secs(5), |p| c2d_payloads(&p.events) == [b"one".to_vec()]));
    p.advance(secs(1));
    assert_eq!(
        p.hub.pending_messages(&p.identity),
        1,
        "delivered to the session, not taken by the application: not acknowledged"
    );
    // The process dies before the application took it.
    let mut q = restart(p, config());
    q.session.enable(q.now(), Feature::C2d).expect("enable");
    assert!(q.run_until(secs(5), |q| c2d_payloads(&q.events) == [b"one".to_vec()]));
    q.advance(secs(1));
    assert_eq!(
        q.hub.pending_messages(&q.identity),
        0,
        "taken, acknowledged"
    );
}

#[test]
fn a_message_for_a_feature_not_asked_for_is_held_then_delivered_and_acknowledged() {
    // The first process subscribed (CleanSession 0 keeps it); the second
    // has not asked for C2D yet when the hub delivers on the kept
    // subscription.
    let mut p = Pair::connected(config());
    let now = p.now();
    p.session.enable(now, Feature::C2d).expect("enable");
    p.advance(secs(1));
    let mut q = restart(p, config());
    send_c2d(&mut q, b"early");
    q.advance(secs(2));
    assert!(c2d_payloads(&q.events).is_empty(), "not delivered");
    assert_eq!(q.session.held_len(), 1, "held");
    assert_eq!(q.hub.pending_messages(&q.identity), 1, "not acknowledged");
    // Not asked for across a reconnection either: the hub sends it again.
    let conn = q.conn.expect("connected");
    q.hub.drop_connection(conn);
    let before = q.hub.counters().connects_accepted;
    assert!(q.run_until(secs(120), |q| q.hub.counters().connects_accepted > before));
    q.advance(secs(1));
    assert_eq!(q.session.held_len(), 1, "held again, once");
    assert_eq!(q.hub.pending_messages(&q.identity), 1);
    // The application asks: delivered, taken, acknowledged.
    q.session.enable(q.now(), Feature::C2d).expect("enable");
    q.advance(secs(1));
    assert_eq!(c2d_payloads(&q.events), [b"early".to_vec()]);
    assert_eq!(q.hub.pending_messages(&q.identity), 0);
}

#[test]
fn a_message_given_back_is_not_acknowledged_and_comes_again_after_a_reconnection() {
    let mut p = Pair::connected(config());
    p.take_inbound = false;
    let now = p.now();
    p.session.enable(now, Feature::C2d).expect("enable");
    p.advance(secs(1));
    send_c2d(&mut p, b"back");
    assert!(p.run_until(secs(5), |p| !c2d_payloads(&p.events).is_empty()));
    // The application's stream went away with the message inside.
    let event = p
        .take_events()
        .into_iter()
        .find(|e| matches!(e, Event::C2dMessage(_)))
        .expect("c2d");
    p.session.hold_inbound(Feature::C2d);
    p.session.return_inbound(event);
    p.advance(secs(1));
    assert_eq!(p.hub.pending_messages(&p.identity), 1);
    // The connection drops: the held copy is left to the hub, which
    // sends it again; a new stream gets it once.
    let conn = p.conn.expect("connected");
    p.hub.drop_connection(conn);
    let before = p.hub.counters().connects_accepted;
    assert!(p.run_until(secs(120), |p| p.hub.counters().connects_accepted > before));
    p.advance(secs(1));
    assert_eq!(p.session.held_len(), 1);
    p.take_inbound = true;
    p.session.enable(p.now(), Feature::C2d).expect("enable");
    p.advance(secs(1));
    assert_eq!(c2d_payloads(&p.events), [b"back".to_vec()]);
    assert_eq!(p.hub.pending_messages(&p.identity), 0);
}
