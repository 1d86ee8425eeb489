//! Fuzz target for the Kafka RecordBatch v2 codec: every input goes through
//! `sluice_storage::batch::fuzz_one`, which asserts the codec's invariants.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sluice_storage::batch::fuzz_one(data);
});
