//! The registry as the emulator needs it: secondary keys, X.509
//! thumbprints, deletion, per-identity refusals, and the ready-connection
//! queue that tells an adapter whom to write to.

use super::*;

#[test]
fn either_key_of_a_sas_identity_signs_a_valid_token() {
    let mut w = World::new();
    let dev = Identity::device(DeviceId::new("dev1").unwrap());
    assert!(w.hub.set_authentication(
        &dev,
        Authentication::Sas {
            primary: key(1),
            secondary: Some(key(2)),
        },
    ));
    let c1 = w.connect(&dev, &key(1));
    let c2 = w.connect(&dev, &key(2));
    assert_eq!(w.hub.close_reason(c1), Some(CloseReason::Evicted));
    assert!(!w.hub.is_closed(c2));
    let (_, ack) = w.open(w.connect_packet(&dev, &key(3)));
    assert_eq!(ack.code(), ConnectReturnCode::BadUserNameOrPassword);
    // Replacing the authentication keeps the identity: only the new key works.
    assert!(!w.hub.set_authentication(&dev, Authentication::sas(key(3))));
    let (_, ack) = w.open(w.connect_packet(&dev, &key(2)));
    assert_eq!(ack.code(), ConnectReturnCode::BadUserNameOrPassword);
    w.connect(&dev, &key(3));
}

#[test]
fn x509_identities_are_checked_by_the_thumbprint_the_transport_saw() {
    let mut w = World::new();
    let dev = Identity::device(DeviceId::new("cam").unwrap());
    w.hub.set_authentication(
        &dev,
        Authentication::X509 {
            primary_thumbprint: s("AB01"),
            secondary_thumbprint: Some(s("cd02")),
        },
    );
    // The password is not looked at: a CONNECT without one is fine.
    let connect = Connect::new("cam")
        .unwrap()
        .with_keep_alive(60)
        .with_username(format!("{HOST}/cam/?api-version=2021-04-12"))
        .unwrap();
    let open = |w: &mut World, thumbprint: Option<&str>| {
        let conn = w.hub.accept(Instant::ZERO, thumbprint.map(s));
        w.send(conn, connect.clone());
        match w.recv(conn).first() {
            Some(Packet::Connack(ack)) => ack.code(),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(open(&mut w, Some("ab01")), ConnectReturnCode::Accepted);
    assert_eq!(open(&mut w, Some("CD02")), ConnectReturnCode::Accepted);
    assert_eq!(
        open(&mut w, Some("ee03")),
        ConnectReturnCode::BadUserNameOrPassword
    );
    assert_eq!(open(&mut w, None), ConnectReturnCode::NotAuthorized);
    // A SAS identity does not accept a certificate instead of a token.
    let (sas, _) = w.device("sas", 1);
    let conn = w.hub.accept(Instant::ZERO, Some(s("ab01")));
    let c = Connect::new("sas")
        .unwrap()
        .with_username(format!("{HOST}/sas/?api-version=2021-04-12"))
        .unwrap();
    w.send(conn, c);
    assert!(matches!(
        w.recv(conn).first(),
        Some(Packet::Connack(a)) if a.code() == ConnectReturnCode::BadUserNameOrPassword
    ));
    assert!(!w.hub.is_connected(&sas));
}

#[test]
fn deleting_a_device_closes_it_without_will_and_takes_its_modules() {
    let mut w = World::new();
    let (dev, k) = w.device("dev1", 1);
    let (module, mk) = w.module("dev1", "m1", 2);
    let (other, _) = w.device("dev2", 3);
    let will = LastWill::new(
        "devices/dev1/messages/events/",
        Bytes::from_static(b"bye"),
        QoS::AtMostOnce,
        false,
    )
    .unwrap();
    let connect = w.connect_packet(&dev, &k).with_last_will(will);
    let (c1, _) = w.open(connect);
    let c2 = w.connect(&module, &mk);
    while w.hub.poll_change().is_some() {}
    assert!(w.hub.remove_identity(&dev));
    assert_eq!(w.hub.close_reason(c1), Some(CloseReason::IdentityDeleted));
    assert_eq!(w.hub.close_reason(c2), Some(CloseReason::IdentityDeleted));
    assert!(w.hub.telemetry().is_empty(), "no will for a deleted device");
    assert!(!w.hub.contains(&dev) && !w.hub.contains(&module));
    assert_eq!(w.hub.identities().collect::<Vec<_>>(), vec![&other]);
    let mut changes = Vec::new();
    while let Some(c) = w.hub.poll_change() {
        changes.push(c);
    }
    assert_eq!(
        changes,
        vec![Change::Removed(dev.clone()), Change::Removed(module)]
    );
    assert!(!w.hub.remove_identity(&dev));
    let (_, ack) = w.open(w.connect_packet(&dev, &k));
    assert_eq!(ack.code(), ConnectReturnCode::NotAuthorized);
    // Closed connections can be forgotten.
    w.hub.remove_connection(c1);
    assert!(w.hub.close_reason(c1).is_none());
}

#[test]
fn an_identity_can_be_refused_for_a_while() {
    let mut w = World::new();
    let (dev, k) = w.device("dev1", 1);
    let (other, ko) = w.device("dev2", 2);
    w.hub
        .refuse_connects_until(
            &dev,
            Instant::from_millis(5_000),
            ConnectReturnCode::ServerUnavailable,
        )
        .unwrap();
    let (_, ack) = w.open(w.connect_packet(&dev, &k));
    assert_eq!(ack.code(), ConnectReturnCode::ServerUnavailable);
    w.connect(&other, &ko);
    w.advance(5_000);
    w.connect(&dev, &k);
    let nobody = Identity::device(DeviceId::new("ghost").unwrap());
    assert_eq!(
        w.hub.refuse_connects_until(
            &nobody,
            Instant::from_millis(1),
            ConnectReturnCode::ServerUnavailable
        ),
        Err(HubError::UnknownIdentity)
    );
}

#[test]
fn ready_connections_name_whoever_got_output() {
    let mut w = World::new();
    let (dev, k) = w.device("dev1", 1);
    let conn = w.connect(&dev, &k);
    w.subscribe_all(conn, &dev);
    while w.hub.poll_ready().is_some() {}
    // A service call makes output for the device's connection.
    w.hub
        .send_c2d(
            dev.device_id(),
            MessageProperties::new(),
            Bytes::from_static(b"x"),
        )
        .unwrap();
    assert_eq!(w.hub.poll_ready(), Some(conn));
    assert_eq!(w.hub.poll_ready(), None);
    // Eviction: the new connection's input closes the old one.
    let newer = w.connect(&dev, &k);
    let mut ready = Vec::new();
    while let Some(c) = w.hub.poll_ready() {
        ready.push(c);
    }
    ready.sort();
    assert_eq!(ready, vec![conn, newer]);
    assert!(w.hub.is_closed(conn));
}
