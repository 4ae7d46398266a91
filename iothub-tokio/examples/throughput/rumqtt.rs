//! The same run with rumqttc: a publisher task and the event loop on one
//! current-thread runtime; QoS 0 counts outgoing PUBLISHes, QoS 1 the
//! PUBACKs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use iothub_tokio::Qos;
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS, TlsConfiguration};

const TOPIC: &str = "devices/bench/messages/events/";

pub(crate) fn run(
    window: usize,
    size: usize,
    port: u16,
    tls: Option<&str>,
    qos: Qos,
    n: usize,
) -> Duration {
    super::runtime().block_on(async {
        let host = if tls.is_some() {
            "localhost"
        } else {
            "127.0.0.1"
        };
        let mut options = MqttOptions::new("rumqttc-bench", host, port);
        options.set_keep_alive(Duration::from_secs(60));
        options.set_inflight(u16::try_from(window).unwrap_or(u16::MAX));
        options.set_clean_session(true);
        if let Some(ca) = tls {
            let mut roots = tokio_rustls::rustls::RootCertStore::empty();
            use tokio_rustls::rustls::pki_types::pem::PemObject as _;
            for c in tokio_rustls::rustls::pki_types::CertificateDer::pem_slice_iter(ca.as_bytes())
            {
                roots.add(c.expect("ca")).expect("ca");
            }
            let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(Arc::new(
                tokio_rustls::rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
            options.set_transport(rumqttc::Transport::tls_with_config(
                TlsConfiguration::Rustls(Arc::new(config)),
            ));
        }
        let (client, mut eventloop) = AsyncClient::new(options, 2 * window);
        loop {
            if let Event::Incoming(Packet::ConnAck(_)) = eventloop.poll().await.expect("connack") {
                break;
            }
        }
        let qos = match qos {
            Qos::AtMostOnce => QoS::AtMostOnce,
            _ => QoS::AtLeastOnce,
        };
        let payload = vec![0x5a; size];
        let start = Instant::now();
        let publisher = tokio::spawn(async move {
            for _ in 0..n {
                client
                    .publish(TOPIC, qos, false, payload.clone())
                    .await
                    .expect("publish");
            }
            client
        });
        let mut done = 0;
        while done < n {
            match eventloop.poll().await.expect("eventloop") {
                Event::Incoming(Packet::PubAck(_)) if qos == QoS::AtLeastOnce => done += 1,
                Event::Outgoing(Outgoing::Publish(_)) if qos == QoS::AtMostOnce => done += 1,
                _ => {}
            }
        }
        let elapsed = start.elapsed();
        let client = publisher.await.expect("publisher");
        let _ = client.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_secs(1), eventloop.poll()).await;
        elapsed
    })
}
