//! Fuzz target `session`: see `iothub_proto::fuzzing::session`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| iothub_proto::fuzzing::session(data));
