//! Fuzz target `property_bag`: see `iothub_proto::fuzzing::property_bag`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| iothub_proto::fuzzing::property_bag(data));
