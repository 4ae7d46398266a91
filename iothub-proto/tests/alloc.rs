//! Allocation test: decoding a PUBLISH allocates nothing, and neither does
//! encoding one into a buffer with room.
//!
//! This file is its own test binary with a single test, because dhat must
//! own the global allocator and only one profiler may run at a time.

use bytes::{Bytes, BytesMut};
use iothub_proto::mqtt::{self, MAX_PACKET_SIZE, Packet, Pid, Publish, QosPid, TopicName};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const TOPIC: &str = "devices/dev1/messages/events/%24.mid=1&a=b&c=d";
const PACKETS: usize = 100;

#[test]
fn publish_decode_and_encode_do_not_allocate() {
    let _profiler = dhat::Profiler::builder().testing().build();

    // Set-up (allocates freely): 100 QoS 1 PUBLISH packets in one buffer.
    let topic = TopicName::from_static(TOPIC).unwrap();
    let payload = Bytes::from_static(&[0x5A; 64]);
    let mut publishes = Vec::with_capacity(PACKETS);
    let mut pid = Pid::MIN;
    for _ in 0..PACKETS {
        publishes
            .push(Publish::new(topic.clone(), QosPid::AtLeastOnce(pid), payload.clone()).unwrap());
        pid = pid.next();
    }
    let mut buf = BytesMut::new();
    for p in &publishes {
        p.encode(&mut buf);
    }
    let mut decoded = Vec::with_capacity(PACKETS);

    // The first decode may allocate once: it turns the BytesMut's storage
    // into shared storage.
    decoded.push(mqtt::decode(&mut buf, MAX_PACKET_SIZE).unwrap().unwrap());
    let before = dhat::HeapStats::get();

    // The other 99 must not allocate at all, even while all are kept alive.
    for _ in 1..PACKETS {
        decoded.push(mqtt::decode(&mut buf, MAX_PACKET_SIZE).unwrap().unwrap());
    }
    let after = dhat::HeapStats::get();
    // The profiler counts every thread (the harness's may allocate a block
    // meanwhile); an allocating decode would allocate 99 times.
    dhat::assert!(after.total_blocks - before.total_blocks < 10);
    dhat::assert!(buf.is_empty());

    // Encoding into a buffer that has room does not allocate either.
    let size: usize = publishes.iter().map(Publish::encoded_len).sum();
    let mut out = BytesMut::with_capacity(size);
    let before = dhat::HeapStats::get();
    for p in &publishes {
        p.encode(&mut out);
    }
    let after = dhat::HeapStats::get();
    dhat::assert!(after.total_blocks - before.total_blocks < 10);
    dhat::assert_eq!(out.len(), size);

    // And what was decoded is what was sent.
    for (got, sent) in decoded.iter().zip(&publishes) {
        let Packet::Publish(got) = got else {
            panic!("not a PUBLISH: {got:?}");
        };
        dhat::assert_eq!(got, sent);
    }
}
