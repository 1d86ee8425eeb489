//! Runs the native protocol's fuzz entry points (`sluice_net::fuzz`) on stable in the normal test
//! suite: every committed seed in `fuzz/seeds/frame_decoder/` and `fuzz/seeds/control_body/`,
//! then deterministic random mutations of them. The entry points panic when an invariant breaks
//! (a frame that does not re-encode to its bytes, decoding that depends on how the stream was
//! cut, a body that changes through a frame), which fails these tests.

use std::path::PathBuf;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sluice_net::fuzz::{fuzz_control_body, fuzz_frame_decoder};

/// Mutated inputs run through each entry point per test run.
const MUTATIONS_COUNT: usize = 20_000;

/// Fixed RNG seed so every run replays the same inputs and a failure reproduces.
const RNG_SEED: u64 = 0x5eed_f4a3;

/// Most edits applied to one seed before it is run.
const EDITS_PER_INPUT_MAX: usize = 4;

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/seeds")
        .join(target);
    let mut seeds: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("seed corpus {} unreadable: {error}", dir.display()))
        .map(|entry| {
            let path = entry.expect("seed directory entry").path();
            let name = path
                .file_name()
                .expect("seed file name")
                .to_string_lossy()
                .into_owned();
            (name, std::fs::read(&path).expect("seed file readable"))
        })
        .collect();
    seeds.sort();
    seeds
}

/// `input` with a few random edits: flipped bits, overwritten, inserted or removed bytes, a cut
/// tail, or a slice of another seed spliced in.
fn mutate(rng: &mut StdRng, input: &[u8], donors: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..rng.gen_range(1..=EDITS_PER_INPUT_MAX) {
        let at = rng.gen_range(0..=out.len());
        match rng.gen_range(0..6) {
            0 if at < out.len() => out[at] ^= 1 << rng.gen_range(0..8),
            1 if at < out.len() => out[at] = rng.gen(),
            2 => out.insert(at, rng.gen()),
            3 if at < out.len() => {
                out.remove(at);
            }
            4 => out.truncate(at),
            _ => {
                let donor = &donors[rng.gen_range(0..donors.len())].1;
                let start = rng.gen_range(0..=donor.len());
                let end = rng.gen_range(start..=donor.len());
                out.splice(at..at, donor[start..end].iter().copied());
            }
        }
    }
    out
}

// Proves every committed frame-decoder seed keeps the decoder's invariants and ends as its name
// says: `frames-` decodes to at least one frame with nothing wrong, `partial-` decodes frames
// and waits for the rest of the last one, `error-` ends in a decoder error.
#[test]
fn frame_decoder_seeds_replay_and_match_their_names() {
    let seeds = seeds("frame_decoder");
    for prefix in ["frames-", "partial-", "error-"] {
        assert!(
            seeds.iter().any(|(name, _)| name.starts_with(prefix)),
            "no {prefix} seed in the corpus"
        );
    }
    for (name, bytes) in &seeds {
        let outcome = fuzz_frame_decoder(bytes);
        if name.starts_with("error-") {
            assert!(outcome.error, "{name}: {outcome:?}");
        } else {
            assert!(!outcome.error && outcome.frames > 0, "{name}: {outcome:?}");
        }
    }
}

// Proves every committed control-body seed keeps the codec's invariants and ends as its name
// says (`valid-` validates, `invalid-` is refused), and that there is a valid seed of each of
// the sixteen body types.
#[test]
fn control_body_seeds_replay_and_match_their_names() {
    let seeds = seeds("control_body");
    let mut kinds = std::collections::BTreeSet::new();
    for (name, bytes) in &seeds {
        let validated = fuzz_control_body(bytes);
        assert_eq!(validated, name.starts_with("valid-"), "{name}");
        if validated {
            kinds.insert(bytes[0] % 16);
        }
    }
    assert_eq!(
        kinds.len(),
        16,
        "valid seeds cover only body types {kinds:?}"
    );
}

// Proves the frame decoder and the control-body codec keep their invariants on
// `MUTATIONS_COUNT` random mutations of the seeds each, and that the mutations reach both
// outcomes (frames and errors, bodies validated and refused), so the check is not vacuous.
#[test]
fn mutated_seeds_keep_the_invariants() {
    let mut rng = StdRng::seed_from_u64(RNG_SEED);
    let frames = seeds("frame_decoder");
    let (mut decoded, mut errors) = (0, 0);
    for _ in 0..MUTATIONS_COUNT {
        let seed = &frames[rng.gen_range(0..frames.len())].1;
        let outcome = fuzz_frame_decoder(&mutate(&mut rng, seed, &frames));
        decoded += usize::from(outcome.frames > 0);
        errors += usize::from(outcome.error);
    }
    assert!(
        decoded > 0 && errors > 0,
        "frames {decoded}, errors {errors}"
    );
    let bodies = seeds("control_body");
    let (mut validated, mut refused) = (0, 0);
    for _ in 0..MUTATIONS_COUNT {
        let seed = &bodies[rng.gen_range(0..bodies.len())].1;
        if fuzz_control_body(&mutate(&mut rng, seed, &bodies)) {
            validated += 1;
        } else {
            refused += 1;
        }
    }
    assert!(
        validated > 0 && refused > 0,
        "validated {validated}, refused {refused}"
    );
}
