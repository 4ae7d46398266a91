//! What the emulator stores and restores: the change journal, identity
//! snapshots, restore with redelivery; deadline-tracked method calls;
//! injected delays; twin size limits and tags.

use super::*;

fn drain_changes(hub: &mut Hub) -> Vec<Change> {
    let mut v = Vec::new();
    while let Some(c) = hub.poll_change() {
        v.push(c);
    }
    v
}

#[test]
fn a_subscribe_or_unsubscribe_that_changes_nothing_journals_nothing() {
    let mut w = World::new();
    let (dev, k) = w.device("dev1", 1);
    let conn = w.connect(&dev, &k);
    w.subscribe_all(conn, &dev);
    w.recv(conn);
    drain_changes(&mut w.hub);
    // The same filters again at the same QoS: nothing durable changed.
    w.subscribe_all(conn, &dev);
    w.recv(conn);
    assert!(drain_changes(&mut w.hub).is_empty());
    // An UNSUBSCRIBE of a filter not held: nothing either.
    let pid = Pid::new(77).unwrap();
    let u = Unsubscribe::new(
        pid,
        vec![String::from("devices/dev1/messages/devicebound/x")],
    )
    .unwrap();
    w.send(conn, Packet::Unsubscribe(u));
    assert_eq!(w.recv(conn), [Packet::Unsuback(pid)]);
    assert!(drain_changes(&mut w.hub).is_empty());
    // One that was held: journaled.
    let held = w.hub.subscriptions(conn)[0].0.clone();
    let pid = Pid::new(78).unwrap();
    w.send(
        conn,
        Packet::Unsubscribe(Unsubscribe::new(pid, vec![held]).unwrap()),
    );
    assert_eq!(w.recv(conn), [Packet::Unsuback(pid)]);
    assert_eq!(
        drain_changes(&mut w.hub),
        vec![Change::Updated(dev.clone())]
    );
}

#[test]
fn the_journal_reports_each_durable_change_once() {
    let mut w = World::new();
    let (dev, k) = w.device("dev1", 1);
    assert_eq!(
        drain_changes(&mut w.hub),
        vec![Change::Updated(dev.clone())]
    );
    // Connecting with CleanSession 0 starts a kept session.
    let conn = w.connect(&dev, &k);
    assert_eq!(
        drain_changes(&mut w.hub),
        vec![Change::Updated(dev.clone())]
    );
    // Telemetry and twin GETs change nothing durable.
    w.subscribe_all(conn, &dev);
    drain_changes(&mut w.hub);
    w.publish(
        conn,
        "devices/dev1/messages/events/",
        QosPid::AtMostOnce,
        b"t",
    );
    w.publish(conn, "$iothub/twin/GET/?$rid=1", QosPid::AtMostOnce, b"");
    w.recv(conn);
    assert!(drain_changes(&mut w.hub).is_empty());
    // A reported PATCH, a desired update, a C2D message, its PUBACK do.
    w.publish(
        conn,
        "$iothub/twin/PATCH/properties/reported/?$rid=2",
        QosPid::AtMostOnce,
        b"{\"a\":1}",
    );
    assert_eq!(
        drain_changes(&mut w.hub),
        vec![Change::Updated(dev.clone())]
    );
    w.hub
        .update_desired(&dev, serde_json::json!({"b": 2}))
        .unwrap();
    w.hub
        .send_c2d(
            dev.device_id(),
            MessageProperties::new(),
            Bytes::from_static(b"m"),
        )
        .unwrap();
    assert_eq!(
        drain_changes(&mut w.hub),
        vec![Change::Updated(dev.clone())]
    );
    let c2d = publishes(&w.recv(conn))
        .into_iter()
        .find(|p| p.qos() == QoS::AtLeastOnce)
        .unwrap();
    w.send(conn, Packet::Puback(c2d.pid().unwrap()));
    assert_eq!(
        drain_changes(&mut w.hub),
        vec![Change::Updated(dev.clone())]
    );
    let state = w.hub.identity_state(&dev).unwrap();
    assert!(state.queue.is_empty());
    assert_eq!(state.twin.reported_version, 2);
    assert_eq!(state.twin.desired_version, 2);
    assert_eq!(state.twin.version, 3);
    assert_eq!(state.session.as_ref().map(Vec::len), Some(4));
}

#[test]
fn a_restored_hub_redelivers_with_dup_and_keeps_twin_and_session() {
    let mut w = World::new();
    let (dev, k) = w.device("dev1", 1);
    let conn = w.connect(&dev, &k);
    w.subscribe_all(conn, &dev);
    w.hub
        .update_desired(&dev, serde_json::json!({"fw": "2"}))
        .unwrap();
    w.hub
        .send_c2d(
            dev.device_id(),
            MessageProperties::new(),
            Bytes::from_static(b"sent"),
        )
        .unwrap();
    w.recv(conn);
    w.hub.client_closed(conn);
    w.hub
        .send_c2d(
            dev.device_id(),
            MessageProperties::new(),
            Bytes::from_static(b"unsent"),
        )
        .unwrap();
    let state = w.hub.identity_state(&dev).unwrap();
    assert_eq!(state.queue.len(), 2);
    assert!(state.queue[0].sent_before && !state.queue[1].sent_before);

    // A new hub (a restarted emulator) gets the stored state back.
    let mut w2 = World::new();
    w2.now_ms = w.now_ms;
    w2.hub.restore_identity(state.clone());
    assert!(
        drain_changes(&mut w2.hub).is_empty(),
        "restore is not journaled"
    );
    assert_eq!(w2.hub.identity_state(&dev).unwrap(), state);
    let conn = w2.hub.accept(Instant::ZERO, None);
    let connect = w2.connect_packet(&dev, &k);
    w2.send(conn, connect);
    let packets = w2.recv(conn);
    assert!(
        matches!(&packets[0], Packet::Connack(a) if a.session_present()),
        "the kept session survived"
    );
    // No SUBSCRIBE needed: the kept subscriptions deliver at once.
    let c2d = publishes(&packets);
    assert_eq!(c2d.len(), 2);
    assert!(c2d[0].dup() && &c2d[0].payload()[..] == b"sent");
    assert!(!c2d[1].dup() && &c2d[1].payload()[..] == b"unsent");
    w2.publish(conn, "$iothub/twin/GET/?$rid=9", QosPid::AtMostOnce, b" ");
    let body = json(&one_publish(&w2.recv(conn)));
    assert_eq!(
        body["desired"],
        serde_json::json!({"fw": "2", "$version": 2})
    );
}

#[test]
fn deadline_tracked_method_calls_end_answered_or_timed_out() {
    let mut w = World::new();
    let (dev, k) = w.device("dev1", 1);
    let conn = w.connect(&dev, &k);
    w.subscribe_all(conn, &dev);
    let rid = w
        .hub
        .invoke_method_until(
            &dev,
            "reboot",
            Bytes::from_static(b"{}"),
            Instant::from_millis(5_000),
        )
        .unwrap();
    assert!(w.hub.touched.contains(&conn));
    let req = one_publish(&w.recv(conn));
    assert!(
        req.topic()
            .as_str()
            .starts_with("$iothub/methods/POST/reboot/")
    );
    assert_eq!(w.hub.poll_timeout().map(Instant::as_millis), Some(5_000));
    w.publish(
        conn,
        &topic::method_response(201, &rid),
        QosPid::AtMostOnce,
        b"{\"ok\":true}",
    );
    let r = w.hub.poll_method_result().unwrap();
    assert_eq!(r.request_id, rid);
    assert_eq!(
        r.outcome,
        MethodOutcome::Answered {
            status: 201,
            payload: Bytes::from_static(b"{\"ok\":true}")
        }
    );
    assert!(w.hub.method_responses().is_empty());

    // Unanswered: nothing before the deadline, TimedOut at it.
    let rid = w
        .hub
        .invoke_method_until(
            &dev,
            "slow",
            Bytes::new(),
            Instant::from_millis(w.now_ms + 5_000),
        )
        .unwrap();
    w.advance(4_999);
    let (now, unix) = (Instant::from_millis(w.now_ms), w.unix());
    w.hub.handle_timeout(now, unix);
    assert!(w.hub.poll_method_result().is_none());
    w.advance(1);
    let (now, unix) = (Instant::from_millis(w.now_ms), w.unix());
    w.hub.handle_timeout(now, unix);
    let r = w.hub.poll_method_result().unwrap();
    assert_eq!(
        (r.request_id, r.outcome),
        (rid.clone(), MethodOutcome::TimedOut)
    );
    // A late answer is ignored.
    w.publish(
        conn,
        &topic::method_response(200, &rid),
        QosPid::AtMostOnce,
        b"",
    );
    assert!(w.hub.poll_method_result().is_none());
    assert!(!w.hub.is_closed(conn));
}

#[test]
fn delayed_answers_come_out_of_handle_timeout() {
    let mut w = World::new();
    let (dev, k) = w.device("dev1", 1);
    let conn = w.connect(&dev, &k);
    w.subscribe_all(conn, &dev);
    w.hub
        .delay_answers(&dev, Duration::from_millis(800))
        .unwrap();
    w.publish(conn, "$iothub/twin/GET/?$rid=1", QosPid::AtMostOnce, b"");
    assert!(w.recv(conn).is_empty());
    let due = w.hub.poll_timeout().map(Instant::as_millis).unwrap();
    assert_eq!(due, w.now_ms + 800);
    let rid = w
        .hub
        .invoke_method_until(
            &dev,
            "m",
            Bytes::new(),
            Instant::from_millis(w.now_ms + 10_000),
        )
        .unwrap();
    w.recv(conn);
    w.publish(
        conn,
        &topic::method_response(200, &rid),
        QosPid::AtMostOnce,
        b"",
    );
    assert!(w.hub.poll_method_result().is_none());
    w.advance(800);
    let (now, unix) = (Instant::from_millis(w.now_ms), w.unix());
    w.hub.handle_timeout(now, unix);
    let answer = one_publish(&w.recv(conn));
    assert!(answer.topic().as_str().starts_with("$iothub/twin/res/200/"));
    assert!(matches!(
        w.hub.poll_method_result().map(|r| r.outcome),
        Some(MethodOutcome::Answered { status: 200, .. })
    ));
}

#[test]
fn twin_sections_are_size_limited_and_tags_are_service_only() {
    let mut w = World::new();
    let (dev, k) = w.device("dev1", 1);
    let conn = w.connect(&dev, &k);
    w.subscribe_all(conn, &dev);
    let big = format!("{{\"x\":\"{}\"}}", "a".repeat(MAX_TWIN_SECTION_SIZE));
    let pid = w.pid();
    w.publish(
        conn,
        "$iothub/twin/PATCH/properties/reported/?$rid=1",
        QosPid::AtLeastOnce(pid),
        big.as_bytes(),
    );
    let answer = publishes(&w.recv(conn)).remove(0);
    assert!(answer.topic().as_str().starts_with("$iothub/twin/res/413/"));
    assert_eq!(w.hub.reported_version(&dev), Some(1));
    let too_big: Value = serde_json::from_str(&big).unwrap();
    assert!(matches!(
        w.hub.update_desired(&dev, too_big),
        Err(HubError::TooLarge {
            max: MAX_TWIN_SECTION_SIZE,
            ..
        })
    ));
    assert!(
        w.recv(conn).is_empty(),
        "a refused desired update sends nothing"
    );
    assert_eq!(
        w.hub.update_tags(&dev, serde_json::json!({"site": "lab"})),
        Ok(2)
    );
    assert_eq!(
        w.hub.update_tags(&dev, serde_json::json!([1])),
        Err(HubError::NotAnObject)
    );
    assert!(w.recv(conn).is_empty(), "devices never see tags");
    let twin = w.hub.twin(&dev).unwrap();
    assert_eq!(twin.tags["site"], "lab");
    w.publish(conn, "$iothub/twin/GET/?$rid=2", QosPid::AtMostOnce, b"");
    let body = json(&one_publish(&w.recv(conn)));
    assert!(body.get("tags").is_none());
}
