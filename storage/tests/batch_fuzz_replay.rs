//! Runs the fuzz entry point (`sluice_storage::batch::fuzz_one`) on stable in the normal test
//! suite: every committed seed in `fuzz/seeds/batch_parse/`, then deterministic random mutations
//! of them. `fuzz_one` panics when a codec invariant breaks, which fails these tests.

use std::path::PathBuf;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sluice_storage::batch::{
    decode_records, fuzz_one, refresh_crc, validate_batch, BatchIter, LOG_OVERHEAD_BYTES,
};

/// Mutated inputs run through fuzz_one per test run.
const MUTATIONS_COUNT: usize = 20_000;
/// Fixed RNG seed so every run replays the same inputs and a failure reproduces.
const RNG_SEED: u64 = 0x5eed_ba7c;
/// Most edits applied to one seed before it is run.
const EDITS_PER_INPUT_MAX: usize = 4;
/// Batch size limit for the checks in this file (the seeds are all far below it).
const BATCH_BYTES_MAX: usize = 1024 * 1024;
/// Field values that sit on the edges of what the codec accepts.
const INTERESTING_I32: [i32; 10] = [0, 1, -1, 2, 48, 49, 61, i32::MAX, i32::MIN, 0x7f];
/// Position of the batchLength field in the batch header.
const BATCH_LENGTH_AT: usize = 8;

fn seeds() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/batch_parse");
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

// Proves every committed seed passes fuzz_one and behaves as its name says: `valid-` files
// iterate to the end and decode, `undecodable-` validate but do not decode, `invalid-` files
// fail validation or make BatchIter report an error.
#[test]
fn committed_seeds_replay_and_match_their_names() {
    let seeds = seeds();
    for prefix in ["valid-", "undecodable-", "invalid-"] {
        assert!(
            seeds.iter().any(|(name, _)| name.starts_with(prefix)),
            "no {prefix} seed in the corpus"
        );
    }
    for (name, bytes) in &seeds {
        fuzz_one(bytes);
        let items: Vec<_> = BatchIter::new(bytes, BATCH_BYTES_MAX).collect();
        if name.starts_with("valid-") {
            assert!(!items.is_empty(), "{name} holds no batch");
            for item in items {
                let (_, batch) = item.unwrap_or_else(|error| panic!("{name}: {error}"));
                decode_records(batch).unwrap_or_else(|error| panic!("{name}: {error}"));
            }
        } else if name.starts_with("undecodable-") {
            validate_batch(bytes, BATCH_BYTES_MAX)
                .unwrap_or_else(|error| panic!("{name}: {error}"));
            assert!(decode_records(bytes).is_err(), "{name} decoded");
        } else {
            let rejected = validate_batch(bytes, BATCH_BYTES_MAX).is_err();
            assert!(
                rejected || items.iter().any(Result::is_err),
                "{name} is a clean sequence of valid batches"
            );
        }
    }
}

/// Applies one random edit: bit flips, byte and field overwrites, inserts, deletes, truncation,
/// or appending another seed, the kinds of damage torn writes and bad clients produce.
fn edit(rng: &mut StdRng, data: &mut Vec<u8>, seeds: &[(String, Vec<u8>)]) {
    let len = data.len();
    match rng.gen_range(0..8) {
        0 if len > 0 => {
            let at = rng.gen_range(0..len);
            data[at] ^= 1 << rng.gen_range(0..8);
        }
        1 if len > 0 => {
            let at = rng.gen_range(0..len);
            data[at] = [0x00, 0x01, 0x7f, 0x80, 0xff, rng.gen()][rng.gen_range(0..6)];
        }
        2 if len >= 4 => {
            let at = rng.gen_range(0..=len - 4);
            let value = INTERESTING_I32[rng.gen_range(0..INTERESTING_I32.len())];
            data[at..at + 4].copy_from_slice(&value.to_be_bytes());
        }
        3 => {
            let at = rng.gen_range(0..=len);
            let count = rng.gen_range(1..16);
            let bytes: Vec<u8> = (0..count).map(|_| rng.gen()).collect();
            data.splice(at..at, bytes);
        }
        4 if len > 0 => {
            let at = rng.gen_range(0..len);
            let end = (at + rng.gen_range(1..16)).min(len);
            data.drain(at..end);
        }
        5 if len > 0 => data.truncate(rng.gen_range(0..len)),
        6 => data.extend_from_slice(&seeds[rng.gen_range(0..seeds.len())].1),
        _ if len > 0 => {
            // A run of continuation bytes makes varints over-long or lengths huge.
            let at = rng.gen_range(0..len);
            let end = (at + rng.gen_range(1..6)).min(len);
            data[at..end].fill(0xff);
        }
        _ => data.push(rng.gen()),
    }
}

/// Sometimes makes batchLength agree with the buffer so edits that change the size still reach
/// the checks past the length field.
fn maybe_fix_length(rng: &mut StdRng, data: &mut [u8]) {
    if data.len() >= LOG_OVERHEAD_BYTES && rng.gen_bool(0.5) {
        if let Ok(length) = i32::try_from(data.len() - LOG_OVERHEAD_BYTES) {
            data[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&length.to_be_bytes());
        }
    }
}

// Proves fuzz_one holds its invariants over ~20k deterministic mutations of the seeds, and that
// the mutations are not vacuous: many reach validation and record decoding once their CRC is
// repaired, and many are rejected there.
#[test]
fn seeded_mutations_hold_fuzz_invariants() {
    let seeds = seeds();
    let mut rng = StdRng::seed_from_u64(RNG_SEED);
    let (mut validated, mut decoded, mut rejected_in_decode) = (0usize, 0usize, 0usize);
    for _ in 0..MUTATIONS_COUNT {
        let mut data = seeds[rng.gen_range(0..seeds.len())].1.clone();
        for _ in 0..rng.gen_range(1..=EDITS_PER_INPUT_MAX) {
            edit(&mut rng, &mut data, &seeds);
        }
        maybe_fix_length(&mut rng, &mut data);
        fuzz_one(&data);

        let mut repaired = data.clone();
        if refresh_crc(&mut repaired).is_ok() && validate_batch(&repaired, BATCH_BYTES_MAX).is_ok()
        {
            validated += 1;
            match decode_records(&repaired) {
                Ok(_) => decoded += 1,
                Err(_) => rejected_in_decode += 1,
            }
        }
    }
    let counts = format!("validated {validated}, decoded {decoded}, rejected {rejected_in_decode}");
    assert!(validated > MUTATIONS_COUNT / 10, "{counts}");
    assert!(decoded > MUTATIONS_COUNT / 50, "{counts}");
    assert!(rejected_in_decode > MUTATIONS_COUNT / 50, "{counts}");
}
