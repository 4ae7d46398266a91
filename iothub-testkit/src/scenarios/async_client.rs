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
