//! Fuzz target `packet_decode`: see `iothub_proto::fuzzing::packet_decode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| iothub_proto::fuzzing::packet_decode(data));
