//! Fuzz target `topic_parse`: see `iothub_proto::fuzzing::topic_parse`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| iothub_proto::fuzzing::topic_parse(data));
