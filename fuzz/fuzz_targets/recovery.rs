//! Fuzz target for log recovery: every input damages a copy of a known log directory and opens
//! it through `sluice_storage::fuzz_recovery`, which asserts recovery's promises.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sluice_storage::fuzz_recovery(data);
});
