//! Parsing the topics that carry no property bag must not allocate: the
//! twin-response path runs for every twin operation.
//!
//! One test per binary: dhat's testing profiler is process-global.

use iothub_proto::topic::{HubTopic, parse};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

#[test]
fn parsing_bagless_topics_does_not_allocate() {
    let topics = [
        "$iothub/twin/res/200/?$rid=1",
        "$iothub/twin/res/204/?$rid=6b1c3f8e&$version=12",
        "$iothub/twin/PATCH/properties/desired/?$version=3",
        "$iothub/methods/POST/reboot/?$rid=1f",
        "$dps/registrations/res/202/?$rid=1&retry-after=3",
        // The liberal shapes: an empty request id, no `/` before `?`, a
        // capitalised `Retry-After`.
        "$iothub/twin/res/200/?$rid=",
        "$iothub/twin/res/204?$rid=x&$version=1",
        "$dps/registrations/res/429/?$rid=9&Retry-After=32",
        // Errors and no-match allocate nothing either.
        "$iothub/twin/res/abc/?$rid=1",
        "devices/d/messages/events/",
        "foo",
    ];
    let _profiler = dhat::Profiler::builder().testing().build();
    let before = dhat::HeapStats::get();
    let mut seen = 0u64;
    for _ in 0..100 {
        for t in topics {
            if let Ok(HubTopic::TwinResponse { status, .. }) = parse(t) {
                seen += u64::from(status);
            }
        }
    }
    let after = dhat::HeapStats::get();
    assert_eq!(seen, 100 * (200 + 204 + 200 + 204));
    // The profiler counts every thread: the test harness's own thread may
    // allocate a block or two meanwhile on a loaded machine. A parse that
    // allocates does so on every one of the 100 rounds.
    let blocks = after.total_blocks - before.total_blocks;
    assert!(
        blocks < 100,
        "parse allocated {blocks} blocks in 100 rounds"
    );
}
