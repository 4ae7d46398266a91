//! Heap held per idle connected client, measured with dhat: 50 clients
//! connect to mosquitto (a separate process, so only the client's heap is
//! counted), go idle, and the live heap is divided by their number. Plain
//! TCP and TLS. Skipped when mosquitto is missing, unless
//! `IOTHUB_REQUIRE_PEERS` is set.

mod support;

use std::time::Duration;

use iothub_tokio::{Client, ClientOptions, ConnectionState, Message, Transport};
use support::{KEY_B64, Mosquitto, Pki};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const CLIENTS: usize = 50;

async fn per_client(port: u16, tls: Option<&str>) -> usize {
    let before = dhat::HeapStats::get().curr_bytes;
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let host = if tls.is_some() {
            "localhost"
        } else {
            "127.0.0.1"
        };
        let mut o = ClientOptions::from_connection_string(&format!(
            "HostName={host};DeviceId=heap{i};SharedAccessKey={KEY_B64}"
        ))
        .unwrap()
        .with_port(port)
        .with_transport(if tls.is_some() {
            Transport::Mqtt
        } else {
            Transport::PlainTcp
        });
        if let Some(ca) = tls {
            o = o.with_ca_pem(ca.as_bytes().to_vec());
        }
        let c = Client::builder(o).build().await.unwrap();
        c.wait_connected().await.unwrap();
        // Some traffic first, so buffers that grow with it are counted.
        c.send_telemetry(Message::new(vec![7u8; 512]))
            .await
            .unwrap();
        clients.push(c);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for c in &clients {
        assert_eq!(c.status().get().state, ConnectionState::Connected);
    }
    let after = dhat::HeapStats::get().curr_bytes;
    for c in &clients {
        c.shutdown(Duration::from_secs(1)).await.unwrap();
    }
    (after.saturating_sub(before)) / CLIENTS
}

#[test]
fn heap_per_idle_connected_client() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let pki = Pki::new();
    let Some(plain) = Mosquitto::start(None) else {
        return;
    };
    let Some(tls) = Mosquitto::start(Some(&pki)) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // Warm up once-per-process allocations (TLS roots, runtime).
        per_client(plain.port, None).await;
        let plain_bytes = per_client(plain.port, None).await;
        per_client(tls.port, Some(&pki.ca_pem)).await;
        let tls_bytes = per_client(tls.port, Some(&pki.ca_pem)).await;
        eprintln!("heap per idle connected client: plain TCP {plain_bytes} B, TLS {tls_bytes} B");
        assert!(plain_bytes < 24 * 1024, "plain {plain_bytes}");
        assert!(tls_bytes < 40 * 1024, "tls {tls_bytes}");
    });
}
