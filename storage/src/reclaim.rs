//! Freeing the space of deleted segment files in paced steps, so a deletion never holds the
//! device for long.
//!
//! On a filesystem mounted with online discard, freeing a file's blocks trims them before the
//! call returns: removing a 5 GB file took 1.3 s on the development VM and put 54-64 ms stalls
//! into a concurrent durable write stream (benches/RESULTS.md, thirteenth and fourteenth
//! records). Retention, a deleted topic and a partition moved away all remove whole segments.
//!
//! So a deleted segment's log file is opened before its name is removed: removing the name then
//! frees nothing (and a crash after it leaves exactly what an immediate removal left, since the
//! names go at the same point). A background task of the shard then cuts the held file down
//! `RECLAIM_STEP_BYTES` at a time and pauses `RECLAIM_PAUSE_PER_STEP` times as long as each
//! cut took, one file of the shard at a time, and closes it at zero length. The pause follows
//! the device: where freeing is only a metadata update (no discard) the steps take microseconds
//! and the whole file goes in milliseconds.
//!
//! A reader may still hold the file (a fetch response being sent from it): cutting it would
//! shorten what that reader sends. The task first waits until every descriptor handed out for
//! the segment is dropped (`ReadHandles` tracks them), at most `RECLAIM_READER_WAIT_MS`; past
//! that it lets go of the file whole, and the kernel frees it when the last reader closes it,
//! unpaced, as before.

use std::{
    cell::RefCell,
    collections::HashMap,
    fs::File,
    path::{Path, PathBuf},
    rc::{Rc, Weak},
    time::{Duration, Instant},
};

use crate::{
    error::StorageError,
    log::blocking,
    segment::{parse_segment_name, Segment, LOG_SUFFIX},
};

/// Bytes freed per step.
pub(crate) const RECLAIM_STEP_BYTES: u64 = 4 << 20;
/// Pause after a step, as a multiple of the time the step took: the share of time a deletion
/// may hold the device is at most 1 / (1 + this).
pub(crate) const RECLAIM_PAUSE_PER_STEP: u32 = 3;
/// How often a deletion checks whether the readers of its files are done, in ms.
const RECLAIM_READER_POLL_MS: u64 = 100;
/// Longest a deletion waits for readers before letting the kernel free the files whole, in ms.
const RECLAIM_READER_WAIT_MS: u64 = 60_000;

thread_local! {
    /// The deletions of an executor (a shard) free their files one at a time, whatever the
    /// number of partitions deleting (see `lanes` for why per executor).
    static RECLAIM_TURNS: crate::lanes::Turns = RefCell::new(HashMap::new());
}

/// A deleted file whose space is still to be freed: its name is gone, the descriptor holds it.
#[derive(Debug)]
pub(crate) struct HeldFile {
    path: PathBuf,
    file: File,
}

/// Opens `path` for writing, when it exists, so removing its name frees nothing yet. A file
/// that cannot be opened (gone already, or out of descriptors when a topic of many partitions
/// goes) is not held: removing its name frees it at once, as without pacing.
pub(crate) fn hold(path: &Path) -> Option<HeldFile> {
    match std::fs::OpenOptions::new().write(true).open(path) {
        Ok(file) => Some(HeldFile {
            path: path.to_path_buf(),
            file,
        }),
        Err(error) => {
            if error.kind() != std::io::ErrorKind::NotFound {
                tracing::debug!(path = %path.display(), %error, "deleting a segment unpaced");
            }
            None
        }
    }
}

/// Removes the files of the segments at `bases` (as `recovery::delete_segments`, in the same
/// order), holding each log file open first. Blocking: run on a blocking thread.
pub(crate) fn remove_segments(dir: &Path, bases: &[i64]) -> Result<Vec<HeldFile>, StorageError> {
    let mut held = Vec::with_capacity(bases.len());
    for &base in bases {
        let segment = Segment::new(dir, base, 1);
        held.extend(hold(&segment.path));
        crate::recovery::delete_segments(dir, &[base])?;
    }
    Ok(held)
}

/// Removes the directory `dir` and everything in it, holding its segments' log files open
/// first. Blocking: run on a blocking thread.
pub(crate) fn remove_dir(dir: &Path) -> Result<Vec<HeldFile>, StorageError> {
    let listing = |source| StorageError::io("list log directory", dir, source);
    let mut held = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(listing)? {
        let path = entry.map_err(listing)?.path();
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or("");
        if matches!(parse_segment_name(name), Some((_, LOG_SUFFIX))) {
            held.extend(hold(&path));
        }
    }
    std::fs::remove_dir_all(dir)
        .map_err(|source| StorageError::io("remove log directory", dir, source))?;
    Ok(held)
}

/// Frees `files` in the background once `readers` are gone (see the module doc). Must run on
/// a glommio executor.
pub(crate) fn free_later(files: Vec<HeldFile>, readers: Vec<Weak<File>>) {
    if files.is_empty() {
        return;
    }
    glommio::spawn_local(free(files, readers)).detach();
}

async fn free(files: Vec<HeldFile>, readers: Vec<Weak<File>>) {
    if !readers_done(&readers).await {
        tracing::debug!(
            files = files.len(),
            "deleted segments still read after {RECLAIM_READER_WAIT_MS} ms; freed whole when \
             the last reader closes them"
        );
        return;
    }
    let turns = crate::lanes::of_executor(&RECLAIM_TURNS);
    for held in files {
        free_file(held, &turns).await;
    }
}

/// True once every reader is dropped; false when `RECLAIM_READER_WAIT_MS` passes first.
async fn readers_done(readers: &[Weak<File>]) -> bool {
    let deadline = Instant::now() + Duration::from_millis(RECLAIM_READER_WAIT_MS);
    while readers.iter().any(|reader| reader.strong_count() > 0) {
        if Instant::now() >= deadline {
            return false;
        }
        glommio::timer::sleep(Duration::from_millis(RECLAIM_READER_POLL_MS)).await;
    }
    true
}

/// Closes a held file on a blocking thread: as the last descriptor of a deleted file, its close
/// frees (and may trim) all its space.
async fn close_off_the_reactor(file: File) {
    blocking(move || drop(file)).await;
}

/// The lengths a file of `len` bytes is cut to, step by step, down to zero.
pub(crate) fn cut_lengths(len: u64) -> impl Iterator<Item = u64> {
    let steps = len.div_ceil(RECLAIM_STEP_BYTES);
    (0..steps).rev().map(|step| step * RECLAIM_STEP_BYTES)
}

async fn free_file(held: HeldFile, turns: &Rc<glommio::sync::Semaphore>) {
    let HeldFile { path, mut file } = held;
    let len = match file.metadata() {
        Ok(metadata) => metadata.len(),
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "cannot size a deleted segment; freeing it whole");
            close_off_the_reactor(file).await;
            return;
        }
    };
    for cut_to in cut_lengths(len) {
        let Ok(turn) = crate::sync::acquire_permit(turns, 1).await else {
            close_off_the_reactor(file).await;
            return;
        };
        let background = crate::lanes::background_turn().await;
        let started = Instant::now();
        let (returned, result) = blocking(move || {
            let result = file.set_len(cut_to);
            (file, result)
        })
        .await;
        drop(background);
        file = returned;
        if let Err(error) = result {
            tracing::warn!(path = %path.display(), %error, "cannot cut a deleted segment; freeing the rest whole");
            close_off_the_reactor(file).await;
            return;
        }
        glommio::timer::sleep(started.elapsed() * RECLAIM_PAUSE_PER_STEP).await;
        drop(turn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, SeekFrom};

    // Proves a file is cut in steps of RECLAIM_STEP_BYTES from its end down to zero.
    #[test]
    fn files_are_cut_from_the_end_down_to_zero() {
        let step = RECLAIM_STEP_BYTES;
        assert_eq!(cut_lengths(0).count(), 0);
        assert_eq!(cut_lengths(1).collect::<Vec<_>>(), vec![0]);
        assert_eq!(
            cut_lengths(2 * step + 1).collect::<Vec<_>>(),
            vec![2 * step, step, 0]
        );
    }

    fn run<F: std::future::Future<Output = ()> + 'static>(
        test: impl FnOnce() -> F + Send + 'static,
    ) {
        glommio::LocalExecutorBuilder::default()
            .spawn(test)
            .unwrap()
            .join()
            .unwrap();
    }

    fn blocks_of(file: &File) -> u64 {
        use std::os::unix::fs::MetadataExt;
        file.metadata().unwrap().blocks()
    }

    // Proves a removed segment's name goes at once, a reader still holding it reads every
    // byte while the space waits, and once the reader is gone the space is freed.
    #[test]
    fn space_is_freed_after_the_last_reader_and_never_under_it() {
        run(|| async {
            let dir = tempfile::tempdir().unwrap();
            let segment = Segment::new(dir.path(), 0, 1);
            let bytes = vec![7u8; (2 * RECLAIM_STEP_BYTES + 12_345) as usize];
            std::fs::write(&segment.path, &bytes).unwrap();
            let reader = Rc::new(File::open(&segment.path).unwrap());
            let watcher = File::open(&segment.path).unwrap();

            let held = remove_segments(dir.path(), &[0]).unwrap();
            assert!(!segment.path.exists());
            free_later(held, vec![Rc::downgrade(&reader)]);

            glommio::timer::sleep(Duration::from_millis(3 * RECLAIM_READER_POLL_MS)).await;
            let mut read = Vec::new();
            let mut file = &*reader;
            file.seek(SeekFrom::Start(0)).unwrap();
            file.read_to_end(&mut read).unwrap();
            assert_eq!(read, bytes, "a reader must read the whole deleted segment");
            drop(reader);

            let deadline = Instant::now() + Duration::from_secs(10);
            while watcher.metadata().unwrap().len() > 0 && Instant::now() < deadline {
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(watcher.metadata().unwrap().len(), 0);
            assert_eq!(blocks_of(&watcher), 0);
        });
    }
}
