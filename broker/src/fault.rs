//! Fault injection for tests: `SLUICE_FAULT_SHARD_PANIC=<shard>:<trigger file>` makes that shard
//! panic, as a bug would, once the trigger file exists, so a test can check what the broker does
//! without one of its shards at a point of its choosing.
//!
//! Compiled only with the `fault-injection` feature (the crate's own tests enable it); without
//! it the hook is an empty inline function and the variable means nothing.

use sluice_shard::ShardId;

/// The variable naming the shard to panic and its trigger file.
#[cfg(feature = "fault-injection")]
const SHARD_PANIC_ENV: &str = "SLUICE_FAULT_SHARD_PANIC";
/// How often an armed shard looks for its trigger file, in milliseconds.
#[cfg(feature = "fault-injection")]
const TRIGGER_POLL_MS: u64 = 10;

/// Arms the panic of `shard` when the variable names it.
#[cfg(feature = "fault-injection")]
pub(crate) fn arm_shard_panic(shard: ShardId) {
    let Ok(value) = std::env::var(SHARD_PANIC_ENV) else {
        return;
    };
    let Some((target, trigger)) = value.split_once(':') else {
        return;
    };
    if target.parse::<u32>().ok() != Some(shard.0) {
        return;
    }
    let trigger = std::path::PathBuf::from(trigger);
    glommio::spawn_local(async move {
        while !trigger.exists() {
            glommio::timer::sleep(std::time::Duration::from_millis(TRIGGER_POLL_MS)).await;
        }
        panic!("injected fault: {shard} panics ({SHARD_PANIC_ENV})");
    })
    .detach();
}

/// Without the `fault-injection` feature: nothing.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub(crate) fn arm_shard_panic(_shard: ShardId) {}
