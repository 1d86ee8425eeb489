//! Fault injection for tests: make the next fsync of a log fail, hold its fsyncs until released,
//! hold the process's background file work (seals, checkpoints: `lanes`) until released, or
//! tear the next write of a log and kill the process in the middle of it.
//!
//! Compiled only with the `fault-injection` feature (the crate's own tests and the crates that
//! test partition failures enable it); without it every hook is an empty inline function, so
//! the data path carries nothing. Rules match files by a path prefix (a log's directory) and
//! fire once.

#[cfg(feature = "fault-injection")]
mod enabled {
    use std::{
        io,
        path::{Path, PathBuf},
        sync::Mutex,
    };

    /// What an armed rule does when it fires.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Fault {
        /// The next fsync of a matching file fails with this errno (the fsync is not issued).
        SyncError(i32),
        /// The next write of a matching file writes only its first half (synchronously and
        /// durably), then the process kills itself with SIGKILL: a torn write at a crash.
        TearWriteAndDie,
    }

    static RULES: Mutex<Vec<(PathBuf, Fault)>> = Mutex::new(Vec::new());
    /// Path prefixes whose fsyncs wait until `release_syncs`.
    static HELD: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    /// How often a held fsync looks whether it was released.
    const HELD_SYNC_POLL_MS: u64 = 1;
    /// Set while background file work waits (`hold_background`).
    static BACKGROUND_HELD: std::sync::atomic::AtomicBool =
        std::sync::atomic::AtomicBool::new(false);

    fn held(path: &Path) -> bool {
        HELD.lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .any(|prefix| path.starts_with(prefix))
    }

    /// Arms: every fsync of a segment file under `prefix` waits, without blocking its thread,
    /// until `release_syncs`.
    pub fn hold_syncs(prefix: impl Into<PathBuf>) {
        HELD.lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(prefix.into());
    }

    /// Lets the fsyncs held by `hold_syncs(prefix)` go on.
    pub fn release_syncs(prefix: impl AsRef<Path>) {
        HELD.lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .retain(|held| held != prefix.as_ref());
    }

    /// Arms: background file work (a seal's index files and truncation, checkpoints, producer
    /// snapshots) waits, without blocking its thread, until `release_background`; whatever
    /// waits for a seal (the next roll of the same log) waits with it.
    pub fn hold_background() {
        BACKGROUND_HELD.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Lets the background work held by `hold_background` go on.
    pub fn release_background() {
        BACKGROUND_HELD.store(false, std::sync::atomic::Ordering::SeqCst);
    }

    pub(crate) async fn background_gate() {
        while BACKGROUND_HELD.load(std::sync::atomic::Ordering::SeqCst) {
            glommio::timer::sleep(std::time::Duration::from_millis(HELD_SYNC_POLL_MS)).await;
        }
    }

    pub(crate) async fn sync_gate(path: &Path) {
        while held(path) {
            glommio::timer::sleep(std::time::Duration::from_millis(HELD_SYNC_POLL_MS)).await;
        }
    }

    fn take(path: &Path, wanted: impl Fn(&Fault) -> bool) -> Option<Fault> {
        let mut rules = RULES
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let at = rules
            .iter()
            .position(|(prefix, fault)| path.starts_with(prefix) && wanted(fault))?;
        Some(rules.remove(at).1)
    }

    /// Arms: the next fsync of a file under `prefix` fails with `errno`.
    pub fn fail_next_sync(prefix: impl Into<PathBuf>, errno: i32) {
        let mut rules = RULES
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        rules.push((prefix.into(), Fault::SyncError(errno)));
    }

    /// Arms: the next write of a file under `prefix` is torn and the process dies in it.
    pub fn tear_next_write_and_die(prefix: impl Into<PathBuf>) {
        let mut rules = RULES
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        rules.push((prefix.into(), Fault::TearWriteAndDie));
    }

    /// Removes every armed rule and releases held fsyncs.
    pub fn clear() {
        RULES
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
        HELD.lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
        release_background();
    }

    pub(crate) fn before_sync(path: &Path) -> io::Result<()> {
        match take(path, |fault| matches!(fault, Fault::SyncError(_))) {
            Some(Fault::SyncError(errno)) => Err(io::Error::from_raw_os_error(errno)),
            _ => Ok(()),
        }
    }

    pub(crate) fn before_write(path: &Path, position: u64, data: &[u8]) {
        if take(path, |fault| *fault == Fault::TearWriteAndDie).is_none() {
            return;
        }
        use std::os::unix::fs::FileExt;
        let half = &data[..data.len() / 2];
        let torn = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|file| {
                file.write_all_at(half, position)
                    .and_then(|()| file.sync_all())
            });
        if let Err(error) = torn {
            eprintln!(
                "fault injection: torn write to {} failed: {error}",
                path.display()
            );
        }
        // SAFETY: kill(2) with our own pid and a valid signal number has no memory effects.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

#[cfg(feature = "fault-injection")]
pub use enabled::{
    clear, fail_next_sync, hold_background, hold_syncs, release_background, release_syncs,
    tear_next_write_and_die,
};

#[cfg(feature = "fault-injection")]
pub(crate) use enabled::{background_gate, before_sync, before_write, sync_gate};

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub(crate) fn before_sync(_path: &std::path::Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub(crate) async fn sync_gate(_path: &std::path::Path) {}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub(crate) async fn background_gate() {}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub(crate) fn before_write(_path: &std::path::Path, _position: u64, _data: &[u8]) {}
