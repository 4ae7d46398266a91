//! Fuzz target `connection_string`: see `iothub_proto::fuzzing::connection_string`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| iothub_proto::fuzzing::connection_string(data));
