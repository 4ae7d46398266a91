//! Cloud-to-device messages are acknowledged only once the application
//! has them: manual acknowledgment, messages held before a stream is
//! opened, left unacknowledged across a restart, and handed from a
//! dropped stream to the next one.

use std::time::Duration;

use iothub_client::Error;
use iothub_proto::properties::MessageProperties;
use iothub_proto::session::CommandError;

use super::{Device, Stream as _, connected, eventually, within};
use crate::Emu;

fn pending(emu: &Emu, target: &str) -> usize {
    emu.device(target).unwrap().pending_c2d
}

pub async fn manual_ack_acknowledges_only_when_asked<D: Device>() {
    let emu = Emu::start();
    let client: D = connected(
        emu.options("dev1")
            .with_session(|c| c.with_manual_ack(true)),
    )
    .await;
    let mut c2d = client.c2d_messages().await.unwrap();
    emu.send_c2d("dev1", &b"ack me"[..], MessageProperties::new())
        .unwrap();
    let token = within(10, c2d.recv()).await.unwrap().ack.expect("a token");
    client.get_twin().await.unwrap(); // a round trip: no PUBACK went out
    assert_eq!(pending(&emu, "dev1"), 1);
    client.ack(token).await.unwrap();
    eventually(10, || pending(&emu, "dev1") == 0).await;
    // Twice: refused, the message is acknowledged already.
    assert!(matches!(
        client.ack(token).await,
        Err(Error::Command(CommandError::AckUndeliverable))
    ));
}

pub async fn c2d_that_arrives_before_the_stream_is_held_unacknowledged_until_it_is_opened<
    D: Device,
>() {
    let emu = Emu::start();
    // A first process subscribed; CleanSession 0 keeps the subscription.
    let first: D = connected(emu.options("dev1")).await;
    drop(first.c2d_messages().await.unwrap());
    first.shutdown(Duration::from_secs(5)).await.unwrap();
    // The next one has no stream yet when the hub delivers on the kept
    // subscription.
    let client: D = connected(emu.options("dev1")).await;
    emu.send_c2d("dev1", &b"early"[..], MessageProperties::new())
        .unwrap();
    // A round trip: the hub wrote the C2D before this answer.
    client.get_twin().await.unwrap();
    assert_eq!(pending(&emu, "dev1"), 1, "not acknowledged");
    let mut c2d = client.c2d_messages().await.unwrap();
    let m = within(10, c2d.recv()).await.unwrap();
    assert_eq!(m.payload.as_ref(), b"early");
    eventually(10, || pending(&emu, "dev1") == 0).await;
    client.shutdown(Duration::from_secs(5)).await.unwrap();
}

pub async fn c2d_not_taken_before_a_restart_is_received_by_the_next_process<D: Device>() {
    let emu = Emu::start();
    let client: D = connected(emu.options("dev1")).await;
    let mut c2d = client.c2d_messages().await.unwrap();
    for body in ["m1", "m2", "m3"] {
        emu.send_c2d("dev1", body.as_bytes(), MessageProperties::new())
            .unwrap();
    }
    let m = within(10, c2d.recv()).await.unwrap();
    assert_eq!(m.payload.as_ref(), b"m1");
    // Only the message taken is acknowledged.
    eventually(10, || pending(&emu, "dev1") == 2).await;
    client.get_twin().await.unwrap();
    assert_eq!(pending(&emu, "dev1"), 2);
    // The process ends with two messages it never took.
    drop(c2d);
    client.shutdown(Duration::from_secs(5)).await.unwrap();
    drop(client);
    assert_eq!(pending(&emu, "dev1"), 2, "nothing lost");
    let next: D = connected(emu.options("dev1")).await;
    let mut c2d = next.c2d_messages().await.unwrap();
    let a = within(10, c2d.recv()).await.unwrap();
    let b = within(10, c2d.recv()).await.unwrap();
    assert_eq!(
        (a.payload.as_ref(), b.payload.as_ref()),
        (&b"m2"[..], &b"m3"[..])
    );
    eventually(10, || pending(&emu, "dev1") == 0).await;
    next.shutdown(Duration::from_secs(5)).await.unwrap();
}

pub async fn a_dropped_stream_gives_its_messages_to_the_next_stream_unacknowledged<D: Device>() {
    let emu = Emu::start();
    let client: D = connected(emu.options("dev1")).await;
    let c2d = client.c2d_messages().await.unwrap();
    for body in ["a", "b"] {
        emu.send_c2d("dev1", body.as_bytes(), MessageProperties::new())
            .unwrap();
    }
    client.get_twin().await.unwrap();
    drop(c2d);
    emu.send_c2d("dev1", &b"c"[..], MessageProperties::new())
        .unwrap();
    client.get_twin().await.unwrap();
    assert_eq!(pending(&emu, "dev1"), 3, "none acknowledged");
    let mut c2d = client.c2d_messages().await.unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(within(10, c2d.recv()).await.unwrap().payload);
    }
    assert_eq!(got, [&b"a"[..], &b"b"[..], &b"c"[..]], "in their order");
    eventually(10, || pending(&emu, "dev1") == 0).await;
    client.shutdown(Duration::from_secs(5)).await.unwrap();
}

pub async fn an_old_stream_dropped_after_a_new_one_opened_hands_its_messages_over<D: Device>() {
    let emu = Emu::start();
    let client: D = connected(emu.options("dev1")).await;
    let old = client.c2d_messages().await.unwrap();
    emu.send_c2d("dev1", &b"x"[..], MessageProperties::new())
        .unwrap();
    client.get_twin().await.unwrap();
    // A second stream replaces the first, which still holds "x".
    let mut new = client.c2d_messages().await.unwrap();
    drop(old);
    emu.send_c2d("dev1", &b"y"[..], MessageProperties::new())
        .unwrap();
    let mut got = vec![
        within(10, new.recv()).await.unwrap().payload,
        within(10, new.recv()).await.unwrap().payload,
    ];
    got.sort();
    assert_eq!(got, [&b"x"[..], &b"y"[..]]);
    eventually(10, || pending(&emu, "dev1") == 0).await;
    client.shutdown(Duration::from_secs(5)).await.unwrap();
}
