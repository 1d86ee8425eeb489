//! The randomized fault suite (issue 13): etcd and three brokers as real processes (the
//! `support_cluster` harness), an acks=all producer of unique numbered values and a
//! consumer-group member committing offsets, a nemesis injecting faults drawn from a seeded
//! schedule, and a checker that heals everything and reads it all back.
//!
//! - [`schedule`]: the seeded fault sequence.
//! - [`nemesis`]: injecting, holding and healing one fault; the recovery wait.
//! - [`consumer`]: the group member and what it saw and committed.
//! - [`checker`]: the final read-back, the replica comparison and the report.
//! - [`run`]: one whole run of one seed.
// Tests may unwrap.
#![allow(dead_code, clippy::unwrap_used)]

pub mod checker;
pub mod consumer;
pub mod nemesis;
pub mod run;
pub mod schedule;

use std::time::Duration;

/// Seeds run when `CHAOS_SEED` is not set (CI).
pub const SEEDS_DEFAULT: [u64; 2] = [1, 2];

/// Seconds of faults per seed when `CHAOS_SECONDS` is not set. A run goes on past it until
/// every fault kind was injected once (about a minute per seed here), so two seeds stay within
/// CI's budget of about three minutes including start-up and checking.
pub const SECONDS_DEFAULT: u64 = 30;

/// The run's settings: `CHAOS_SEED` (one seed, or several separated by commas) and
/// `CHAOS_SECONDS` (how long the nemesis injects faults, per seed).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Seeds to run, one cluster each.
    pub seeds: Vec<u64>,
    /// How long the nemesis injects faults per seed.
    pub duration: Duration,
}

impl Settings {
    /// From the environment, with the CI defaults.
    pub fn from_env() -> Settings {
        let seeds = std::env::var("CHAOS_SEED").map_or_else(
            |_| SEEDS_DEFAULT.to_vec(),
            |value| {
                value
                    .split(',')
                    .map(|seed| {
                        seed.trim()
                            .parse()
                            .unwrap_or_else(|_| panic!("CHAOS_SEED: {seed:?} is not a u64"))
                    })
                    .collect()
            },
        );
        let seconds = std::env::var("CHAOS_SECONDS").map_or(SECONDS_DEFAULT, |value| {
            value
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("CHAOS_SECONDS: {value:?} is not a number"))
        });
        Settings {
            seeds,
            duration: Duration::from_secs(seconds),
        }
    }
}
