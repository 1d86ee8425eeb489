//! Runs the recovery fuzz entry point (`sluice_storage::fuzz_recovery`) on stable in the normal
//! test suite: every committed seed in `fuzz/seeds/recovery/`, then deterministic random damage
//! plans. `fuzz_recovery` panics when recovery breaks a promise (a panic in open, a log that
//! does not read back, a scanned log holding a batch that was never written there), which fails
//! these tests.

use std::path::PathBuf;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sluice_storage::{fuzz_recovery, RecoveryOutcome};

/// Random damage plans run per test run.
const PLANS_COUNT: usize = 300;

/// Fixed RNG seed so every run replays the same plans and a failure reproduces.
const RNG_SEED: u64 = 0x5eed_d15c;

/// Damage operations in one random plan, at most.
const OPERATIONS_PER_PLAN_MAX: usize = 4;

/// Bytes of one damage operation (file, kind, position high, position low, value).
const OPERATION_BYTES: usize = 5;

fn seeds() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/recovery");
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

// Proves every committed seed keeps recovery's promises and ends as its name says: `recovered-`
// seeds open (a clean log opens whole, a damaged tail is cut), `refused-` seeds are refused with
// an error, and `scanned-` seeds recover, scanned in full, to a shorter log.
#[test]
fn committed_seeds_replay_and_match_their_names() {
    let seeds = seeds();
    for prefix in ["recovered-", "refused-", "scanned-"] {
        assert!(
            seeds.iter().any(|(name, _)| name.starts_with(prefix)),
            "no {prefix} seed in the corpus"
        );
    }
    let whole = match fuzz_recovery(&[0b11]) {
        RecoveryOutcome::Recovered { log_start, log_end } => (log_start, log_end),
        other => panic!("the undamaged log did not open: {other:?}"),
    };
    for (name, bytes) in &seeds {
        let outcome = fuzz_recovery(bytes);
        if name.starts_with("refused-") {
            assert_eq!(outcome, RecoveryOutcome::Refused, "{name}");
        } else if name.starts_with("scanned-") {
            match outcome {
                RecoveryOutcome::Recovered { log_start, log_end } => assert!(
                    log_start == whole.0 && log_end < whole.1,
                    "{name}: recovered [{log_start}, {log_end}) of [{}, {})",
                    whole.0,
                    whole.1
                ),
                other => panic!("{name}: expected a shorter log, got {other:?}"),
            }
        } else {
            assert!(
                matches!(outcome, RecoveryOutcome::Recovered { .. }),
                "{name}: {outcome:?}"
            );
        }
    }
}

// Proves recovery keeps its promises under random damage: `PLANS_COUNT` plans of up to
// `OPERATIONS_PER_PLAN_MAX` flips, truncations, zero fills, appended garbage and deletions of
// any file, with every combination of clean marker, recovery point, policy and write mode;
// and that the plans reach both outcomes, so the check is not vacuous.
#[test]
fn random_damage_never_breaks_recovery() {
    let mut rng = StdRng::seed_from_u64(RNG_SEED);
    let (mut refused, mut recovered) = (0, 0);
    for _ in 0..PLANS_COUNT {
        let operations = rng.gen_range(1..=OPERATIONS_PER_PLAN_MAX);
        let mut plan = vec![rng.gen::<u8>() & 0x0f];
        for _ in 0..operations * OPERATION_BYTES {
            plan.push(rng.gen());
        }
        match fuzz_recovery(&plan) {
            RecoveryOutcome::Refused => refused += 1,
            RecoveryOutcome::Recovered { .. } => recovered += 1,
            RecoveryOutcome::Skipped => panic!("a plan of {} bytes was skipped", plan.len()),
        }
    }
    assert!(refused > 0, "no plan was refused");
    assert!(recovered > 0, "no plan recovered");
}
