//! Fuzz target `dps_response`: see `iothub_proto::fuzzing::dps_response`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| iothub_proto::fuzzing::dps_response(data));
