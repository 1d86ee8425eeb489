//! Fuzz target for the rkyv control bodies of every request and response: every input goes
//! through `sluice_net::fuzz::fuzz_control_body`, which asserts validation and round trips.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sluice_net::fuzz::fuzz_control_body(data);
});
