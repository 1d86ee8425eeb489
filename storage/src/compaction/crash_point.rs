//! Named moments of a cleaning at which the crash tests kill the process (with SIGKILL, from
//! inside, so the moment is exact). Nothing is armed in a broker: each point is then one
//! unset-`OnceLock` check per swap.

use std::sync::OnceLock;

/// The `.cleaned` file is written and fsynced; no manifest yet.
pub const CLEANED_WRITTEN: &str = "cleaned-written";
/// The swap manifest is durable (the commit point); the old indexes are gone.
pub const MANIFEST_WRITTEN: &str = "manifest-written";
/// The cleaned file is renamed over the first segment it replaces.
pub const RENAMED: &str = "renamed";
/// The cleaned segment's indexes are written.
pub const INDEXES_WRITTEN: &str = "indexes-written";
/// The other replaced segments are deleted; the manifest is still there.
pub const REPLACED_DELETED: &str = "replaced-deleted";
/// Every group is swapped; the cleaner checkpoint is not yet written.
pub const BEFORE_CHECKPOINT: &str = "before-checkpoint";
/// Not a cleaning point: a segment roll sealed the old segment and has not yet written the
/// producer-state snapshot at the new segment's base.
pub const ROLL_BEFORE_PRODUCER_SNAPSHOT: &str = "roll-before-producer-snapshot";
/// Every point, in the order a cleaning reaches them.
pub const ALL: [&str; 6] = [
    CLEANED_WRITTEN,
    MANIFEST_WRITTEN,
    RENAMED,
    INDEXES_WRITTEN,
    REPLACED_DELETED,
    BEFORE_CHECKPOINT,
];

static ARMED: OnceLock<String> = OnceLock::new();

/// Makes the process kill itself with SIGKILL when a cleaning reaches `point`. For crash
/// tests only; once armed, the point stays armed for the life of the process.
#[doc(hidden)]
pub fn arm(point: &str) {
    let _ = ARMED.set(point.to_string());
}

/// Called by the cleaning at `point`.
pub(crate) fn reached(point: &str) {
    if ARMED.get().is_some_and(|armed| armed == point) {
        // SAFETY: getpid and kill have no preconditions; SIGKILL ends the process here.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}
