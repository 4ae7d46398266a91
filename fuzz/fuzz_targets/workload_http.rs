//! Fuzz target `workload_http`: see `iothub_proto::fuzzing::workload_http`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| iothub_proto::fuzzing::workload_http(data));
