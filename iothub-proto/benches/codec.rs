//! Codec benchmarks: a QoS 1 telemetry PUBLISH (64-byte payload, topic with a
//! 3-pair property bag) encoded and decoded, and a twin-response topic parsed.
//!
//! Run with `cargo bench -p iothub-proto --bench codec`.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use iothub_proto::auth::Identity;
use iothub_proto::mqtt::{self, Packet, Pid, Publish, QosPid};
use iothub_proto::properties::MessageProperties;
use iothub_proto::topic;

fn telemetry_publish() -> Publish {
    let identity = Identity::parse("thermostat-0042", None).expect("valid id");
    let mut props = MessageProperties::new();
    props.content_type = Some("application/json".into());
    props.content_encoding = Some("utf-8".into());
    props
        .add_application("alert", "true")
        .expect("valid application property");
    let topic = topic::telemetry(&identity, &props);
    let pid = Pid::new(4242).expect("non-zero");
    Publish::new(topic, QosPid::AtLeastOnce(pid), Bytes::from(vec![b'x'; 64])).expect("small")
}

fn bench_publish(c: &mut Criterion) {
    let publish = telemetry_publish();
    let packet = Packet::Publish(publish.clone());
    let encoded = packet.to_bytes();
    let mut g = c.benchmark_group("publish_qos1_64B_3_props");
    g.throughput(Throughput::Elements(1));

    let mut out = BytesMut::with_capacity(64 * 1024);
    g.bench_function("encode", |b| {
        b.iter(|| {
            if out.capacity() - out.len() < 512 {
                out.clear();
            }
            black_box(&publish).encode(&mut out);
        });
    });

    // A buffer holding many copies, so the measured decode is the steady
    // state of a connection (the buffer is refilled outside the timing).
    const BATCH: usize = 1024;
    let mut stream = BytesMut::with_capacity(encoded.len() * BATCH);
    g.bench_function("decode", |b| {
        b.iter_custom(|iters| {
            let mut total = std::time::Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(BATCH as u64);
                stream.clear();
                for _ in 0..n {
                    stream.extend_from_slice(&encoded);
                }
                let mut buf = stream.split();
                let start = std::time::Instant::now();
                for _ in 0..n {
                    let p = mqtt::decode(&mut buf, mqtt::MAX_PACKET_SIZE);
                    black_box(p.ok());
                }
                total += start.elapsed();
                left -= n;
            }
            total
        });
    });
    g.finish();
}

fn bench_topics(c: &mut Criterion) {
    let mut g = c.benchmark_group("topic");
    g.throughput(Throughput::Elements(1));
    let twin = "$iothub/twin/res/204/?$rid=12345&$version=42";
    g.bench_function("parse_twin_response", |b| {
        b.iter(|| black_box(topic::parse(black_box(twin)).ok()));
    });
    let identity = Identity::parse("thermostat-0042", None).expect("valid id");
    let mut props = MessageProperties::new();
    props.content_type = Some("application/json".into());
    props.content_encoding = Some("utf-8".into());
    props.add_application("alert", "true").expect("valid");
    let mut s = String::with_capacity(256);
    g.bench_function("build_telemetry_topic", |b| {
        b.iter(|| {
            s.clear();
            topic::telemetry_into(black_box(&identity), black_box(&props), &mut s);
            black_box(s.len())
        });
    });
    g.finish();
}

criterion_group!(benches, bench_publish, bench_topics);
criterion_main!(benches);
