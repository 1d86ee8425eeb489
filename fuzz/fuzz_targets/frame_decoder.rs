//! Fuzz target for the native protocol's frame decoder: every input goes through
//! `sluice_net::fuzz::fuzz_frame_decoder`, which asserts the decoder's invariants.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sluice_net::fuzz::fuzz_frame_decoder(data);
});
