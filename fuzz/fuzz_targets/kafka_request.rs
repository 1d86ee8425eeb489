//! Fuzz target for the Kafka request decoder: framing, headers, every served API's body
//! (kafka-protocol's generated decoders and our own Produce decoder). Every input goes through
//! `sluice_kafka::fuzz::fuzz_one`, which asserts the decoder's invariants.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sluice_kafka::fuzz::fuzz_one(data);
});
