//! What only the async client has: futures that can be dropped halfway.

use std::time::Duration;

use futures_lite::FutureExt as _;
use iothub_client::AsyncClient;
use iothub_client::rt::Runtime;
use iothub_proto::session::Message;

use super::connected;
use crate::Emu;

pub async fn a_cancelled_send_is_still_delivered<R: Runtime>() {
    let emu = Emu::start();
    let client: AsyncClient<R> = connected(emu.options("dev1")).await;
    // Polled once: queued to the driver, then dropped before its PUBACK.
    let once = futures_lite::future::poll_once(
        client
            .send_telemetry(Message::new(&b"fire and forget"[..]))
            .boxed(),
    )
    .await;
    assert!(once.is_none(), "cannot be acknowledged on the first poll");
    emu.received("dev1", "fire and forget").await;
    // The client is unaffected.
    client
        .send_telemetry(Message::new(&b"next"[..]))
        .await
        .unwrap();
    client.shutdown(Duration::from_secs(5)).await.unwrap();
}
