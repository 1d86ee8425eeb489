//! Runs the request-decoder fuzz entry (`sluice_kafka::fuzz::fuzz_one`) on stable in the normal
//! test suite: every committed seed in `fuzz/seeds/kafka_request/`, then deterministic random
//! mutations of them. `fuzz_one` panics when an invariant breaks, which fails these tests.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sluice_kafka::fuzz::fuzz_one;
use sluice_kafka::{
    check_supported, decode_request, split_request, ApiTable, Request, RequestDecoder,
};
use sluice_storage::batch::BatchIter;

/// Mutated inputs run through fuzz_one per test run.
const MUTATIONS_COUNT: usize = 30_000;
/// Fixed RNG seed so every run replays the same inputs and a failure reproduces.
const RNG_SEED: u64 = 0x6b61_666b;
/// Most edits applied to one seed before it is run.
const EDITS_PER_INPUT_MAX: usize = 4;
/// Values that sit on the edges of lengths and counts.
const INTERESTING_I32: [i32; 9] = [0, 1, -1, 2, 0x7f, 0xff, i32::MAX, i32::MIN, 0x7fff];

fn seeds() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/kafka_request");
    let mut seeds: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("seed corpus {} unreadable: {error}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    seeds.sort();
    seeds
}

// Proves every committed seed is a stream of requests the broker accepts: each frames, names a
// served API and version, decodes, and every produced batch in it is a valid record batch;
// and fuzz_one passes on each.
#[test]
fn committed_seeds_decode() {
    let seeds = seeds();
    assert!(seeds.len() >= 20, "the seed corpus is missing files");
    let table = ApiTable::with_groups();
    for (name, bytes) in &seeds {
        fuzz_one(bytes);
        let mut decoder = RequestDecoder::new(1 << 20);
        decoder.buffer_mut().extend_from_slice(bytes);
        let mut count = 0;
        while let Some(request) = decoder.next_request().unwrap() {
            let (header, body) = split_request(request).unwrap();
            check_supported(&header, &table).unwrap_or_else(|error| panic!("{name}: {error}"));
            let decoded =
                decode_request(&header, body).unwrap_or_else(|error| panic!("{name}: {error}"));
            if let Request::Produce(produce) = decoded {
                for partition in produce.topics.iter().flat_map(|topic| &topic.partitions) {
                    let records = partition.records.as_ref().unwrap();
                    for batch in BatchIter::new(records, 1 << 20) {
                        batch.unwrap_or_else(|error| panic!("{name}: {error}"));
                    }
                }
            }
            count += 1;
        }
        assert!(count > 0 && decoder.end_of_stream().is_none(), "{name}");
    }
}

/// One random edit: bit flips, byte and field overwrites, inserts, deletes, truncation, or
/// another seed appended.
fn edit(rng: &mut StdRng, data: &mut Vec<u8>, seeds: &[(String, Vec<u8>)]) {
    let len = data.len();
    match rng.gen_range(0..7) {
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
            let bytes: Vec<u8> = (0..rng.gen_range(1..16)).map(|_| rng.gen()).collect();
            data.splice(at..at, bytes);
        }
        4 if len > 0 => {
            let at = rng.gen_range(0..len);
            let end = (at + rng.gen_range(1..16)).min(len);
            data.drain(at..end);
        }
        5 if len > 0 => data.truncate(rng.gen_range(0..len)),
        _ => data.extend_from_slice(&seeds[rng.gen_range(0..seeds.len())].1),
    }
}

/// Keeps the first size prefix equal to the bytes that follow, so edits reach the header and
/// body decoders instead of stopping at the framing.
fn fix_size_prefix(data: &mut [u8]) {
    if data.len() >= 4 {
        let size = (data.len() - 4) as i32;
        data[..4].copy_from_slice(&size.to_be_bytes());
    }
}

// Proves fuzz_one holds on deterministic random mutations of the seeds: no panic, no swallowed
// decoder panic, our Produce decoder agreeing with the generated one, decoded requests
// re-encoding to the same value.
#[test]
fn mutated_seeds_keep_the_invariants() {
    let seeds = seeds();
    let mut rng = StdRng::seed_from_u64(RNG_SEED);
    for _ in 0..MUTATIONS_COUNT {
        let mut data = seeds[rng.gen_range(0..seeds.len())].1.clone();
        for _ in 0..rng.gen_range(1..=EDITS_PER_INPUT_MAX) {
            edit(&mut rng, &mut data, &seeds);
        }
        if rng.gen_bool(0.7) {
            fix_size_prefix(&mut data);
        }
        fuzz_one(&data);
    }
}
