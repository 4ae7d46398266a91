//! What only the async client has: futures that can be dropped halfway.

use std::time::Duration;

use iothub_client::AsyncClient;
use iothub_client::rt::Runtime;
use iothub_proto::session::Message;

use super::connected;
use crate::Emu;

pub async fn a_cancelled_send_is_still_delivered<R: Runtime>() {
    let emu = Emu::start();
    let client: AsyncClient<R> = connected(emu.options("dev1")).await;
    // Queued to the driver, then its receipt dropped before the PUBACK
    // (what dropping a `send_telemetry` future after its first poll
    // does): delivered anyway, the outcome logged.
    let receipt = client
        .queue_telemetry(Message::new(&b"fire and forget"[..]))
        .await
        .unwrap();
    drop(receipt);
    emu.received("dev1", "fire and forget").await;
    // The client is unaffected.
    client
        .send_telemetry(Message::new(&b"next"[..]))
        .await
        .unwrap();
    client.shutdown(Duration::from_secs(5)).await.unwrap();
}

pub async fn telemetry_queued_before_shutdown_is_delivered<R: Runtime>() {
    let emu = Emu::start();
    let client: AsyncClient<R> = connected(emu.options("dev1")).await;
    // Handed to the driver, then shutdown at once (before the driver has
    // run): the messages were queued first, so they are sent and
    // acknowledged in the drain, not refused.
    let mut receipts = Vec::new();
    for i in 0..20 {
        let m = Message::new(format!("before shutdown {i}").into_bytes());
        receipts.push(client.queue_telemetry(m).await.unwrap());
    }
    client.shutdown(Duration::from_secs(5)).await.unwrap();
    for (i, r) in receipts.into_iter().enumerate() {
        r.await
            .unwrap_or_else(|e| panic!("message {i} queued before shutdown: {e}"));
    }
    for i in 0..20 {
        emu.received("dev1", &format!("before shutdown {i}")).await;
    }
}
