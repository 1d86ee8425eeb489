//! The crash-safe swap of a cleaned segment for the segments it was made from (Kafka's
//! `.cleaned` -> `.swap` -> rename protocol, with the replaced segments written down in a
//! manifest instead of inferred from file names).
//!
//! 1. The cleaner writes `<base>.log.cleaned` and its indexes (`<base>.index.cleaned`,
//!    `<base>.timeindex.cleaned`) and fsyncs them.
//! 2. It writes `cleaner-swap` atomically (temp file, fsync, rename, directory fsync), naming
//!    the base offset and size of every segment the cleaned one replaces.
//! 3. Under the log's append lock it checks those segments are still there as they were read,
//!    then renames `<base>.log.cleaned` over `<base>.log` and replaces the in-memory segments,
//!    in one step with no await. This rename is the commit point. No fsync happens under the
//!    lock, so appends wait only for the check and the rename.
//! 4. After the lock: the directory is fsynced (the rename is durable before anything is
//!    deleted), the cleaned indexes are renamed into place, the other replaced segments are
//!    deleted, the directory is fsynced again, and the manifest is removed.
//!
//! Recovery ([`finish_interrupted_swap`]) with a manifest: if `<base>.log.cleaned` is still
//! there the rename did not happen (or did not reach the disk), and since nothing is deleted
//! before the rename is durable the old segments are whole: the cleaned files go (a roll
//! back). Otherwise the rename happened: the indexes of `<base>` go (the scan rebuilds them)
//! and the other replaced segments are deleted, each only if it still has the size the
//! manifest recorded. Without a manifest, `.cleaned` files are leftovers of a cleaning that
//! never reached step 2 and go. Either way the log holds the old segments or the cleaned one,
//! never a mix.
//!
//! **Invariant:** a cleaned segment ends at the same offset as the last segment it replaces,
//! so segments stay contiguous and a swap never changes the log's offsets, only which records
//! are kept inside them.
//!
//! Every segment file a swap or its recovery removes (the first replaced segment, renamed
//! over; the other replaced ones; a cleaned segment rolled back) is held open first and handed
//! back as a [`HeldFile`], so its space is freed in paced steps (`reclaim`), not inside the
//! rename or unlink.

use std::{
    io,
    path::{Path, PathBuf},
};

use super::crash_point;
use crate::{
    checkpoint,
    error::StorageError,
    reclaim::{self, HeldFile},
    recovery::remove_file,
    segment::{parse_segment_name, segment_path, Segment, LOG_SUFFIX},
};

/// File name of the swap manifest.
pub(crate) const SWAP_MANIFEST_FILE: &str = "cleaner-swap";
/// Suffix of a cleaned segment not yet swapped in.
const CLEANED_SUFFIX: &str = "log.cleaned";
/// Suffixes of its offset and time indexes, written with it.
const CLEANED_INDEX_SUFFIXES: [&str; 2] = ["index.cleaned", "timeindex.cleaned"];

/// The segments one swap replaces, in order: (base offset, size in bytes). The first one's
/// base offset is the cleaned segment's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SwapManifest {
    pub replaces: Vec<(i64, u64)>,
}

impl SwapManifest {
    /// Base offset of the cleaned segment.
    pub(crate) fn base_offset(&self) -> i64 {
        self.replaces.first().map_or(0, |(base, _)| *base)
    }

    fn encode(&self) -> Vec<u8> {
        let lines: Vec<String> = self
            .replaces
            .iter()
            .map(|(base, size)| format!("{base} {size}"))
            .collect();
        checkpoint::encode(&lines)
    }

    fn read(dir: &Path) -> io::Result<Option<SwapManifest>> {
        let Some(entries) = checkpoint::read_entries(&dir.join(SWAP_MANIFEST_FILE))? else {
            return Ok(None);
        };
        let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what);
        let mut replaces = Vec::with_capacity(entries.len());
        for entry in entries {
            let [base, size] = entry.as_slice() else {
                return Err(invalid("each replaced segment is a base offset and a size"));
            };
            let size = u64::try_from(*size).map_err(|_| invalid("a negative segment size"))?;
            if replaces.last().is_some_and(|(last, _)| last >= base) {
                return Err(invalid(
                    "replaced segments must have increasing base offsets",
                ));
            }
            replaces.push((*base, size));
        }
        if replaces.is_empty() {
            return Err(invalid("the manifest names no segment"));
        }
        Ok(Some(SwapManifest { replaces }))
    }
}

/// `dir/<base>.log.cleaned`.
pub(crate) fn cleaned_path(dir: &Path, base_offset: i64) -> PathBuf {
    segment_path(dir, base_offset, CLEANED_SUFFIX)
}

/// `dir/<base>.index.cleaned` and `dir/<base>.timeindex.cleaned`.
pub(crate) fn cleaned_index_paths(dir: &Path, base_offset: i64) -> [PathBuf; 2] {
    CLEANED_INDEX_SUFFIXES.map(|suffix| segment_path(dir, base_offset, suffix))
}

fn sync(dir: &Path) -> Result<(), StorageError> {
    checkpoint::sync_dir(dir).map_err(|source| StorageError::io("fsync log directory", dir, source))
}

/// Step 2: writes the manifest durably.
pub(crate) fn write_manifest(dir: &Path, manifest: &SwapManifest) -> Result<(), StorageError> {
    checkpoint::atomic_write(dir, SWAP_MANIFEST_FILE, &manifest.encode()).map_err(|source| {
        StorageError::io("write swap manifest", dir.join(SWAP_MANIFEST_FILE), source)
    })
}

/// True when a manifest is present: a swap is under way or was interrupted.
pub(crate) fn manifest_present(dir: &Path) -> bool {
    dir.join(SWAP_MANIFEST_FILE).exists()
}

/// Step 4, after the rename: makes it durable, installs the indexes, deletes the other
/// replaced segments, removes the manifest. Returns the deleted segments' files, still held.
pub(crate) fn complete(dir: &Path, manifest: &SwapManifest) -> Result<Vec<HeldFile>, StorageError> {
    sync(dir)?;
    let base = manifest.base_offset();
    let segment = Segment::new(dir, base, 1);
    let targets = [segment.index_path(), segment.time_index_path()];
    for (from, to) in cleaned_index_paths(dir, base).iter().zip(&targets) {
        std::fs::rename(from, to)
            .map_err(|source| StorageError::io("rename cleaned index", from, source))?;
    }
    crash_point::reached(crash_point::INDEXES_WRITTEN);
    let held = delete_replaced(dir, manifest)?;
    sync(dir)?;
    crash_point::reached(crash_point::REPLACED_DELETED);
    remove_file(&dir.join(SWAP_MANIFEST_FILE))?;
    sync(dir)?;
    Ok(held)
}

/// Deletes the replaced segments after the first, each only while it has the recorded size
/// (a file of another size with that name is not the segment that was replaced); returns their
/// log files, held.
fn delete_replaced(dir: &Path, manifest: &SwapManifest) -> Result<Vec<HeldFile>, StorageError> {
    let doomed: Vec<i64> = manifest.replaces[1..]
        .iter()
        .filter(|(base, size)| {
            let path = segment_path(dir, *base, LOG_SUFFIX);
            std::fs::metadata(path).map_or(true, |meta| meta.len() == *size)
        })
        .map(|(base, _)| *base)
        .collect();
    reclaim::remove_segments(dir, &doomed)
}

/// Takes back a swap that did not reach its rename: removes the manifest, durably, and only
/// then the cleaned files (a manifest without its cleaned file tells recovery the rename
/// happened). Returns the cleaned segment's file, held.
pub(crate) fn undo(dir: &Path, base_offset: i64) -> Result<Vec<HeldFile>, StorageError> {
    remove_file(&dir.join(SWAP_MANIFEST_FILE))?;
    sync(dir)?;
    discard(dir, base_offset)
}

/// Removes a cleaned segment that will not be swapped in, and its indexes. Never while a
/// manifest names it. Returns the cleaned segment's file, held.
pub(crate) fn discard(dir: &Path, base_offset: i64) -> Result<Vec<HeldFile>, StorageError> {
    let path = cleaned_path(dir, base_offset);
    let held = reclaim::hold(&path).into_iter().collect();
    remove_file(&path)?;
    for path in cleaned_index_paths(dir, base_offset) {
        remove_file(&path)?;
    }
    Ok(held)
}

/// Recovery: rolls back a swap that did not reach its rename, finishes one that did, and
/// removes a cleaning's leftovers. Returns the removed files (segments, leftovers), held.
pub(crate) fn finish_interrupted_swap(dir: &Path) -> Result<Vec<HeldFile>, StorageError> {
    let manifest_path = dir.join(SWAP_MANIFEST_FILE);
    let manifest = SwapManifest::read(dir).map_err(|error| {
        // Written atomically, so an unreadable manifest is damage, not a torn write: guessing
        // could drop live segments, so the log is not opened.
        StorageError::corrupt(
            &manifest_path,
            0,
            format!("unreadable swap manifest: {error}"),
        )
    })?;
    let mut held = Vec::new();
    if let Some(manifest) = manifest {
        let base = manifest.base_offset();
        if cleaned_path(dir, base).exists() {
            tracing::warn!(dir = %dir.display(), base, "rolling back a segment swap interrupted by a crash before its rename");
            held = undo(dir, base)?;
        } else {
            tracing::warn!(dir = %dir.display(), base, "finishing a segment swap interrupted by a crash after its rename");
            // The indexes beside the segment may be the replaced one's: the scan rebuilds them.
            let segment = Segment::new(dir, base, 1);
            remove_file(&segment.index_path())?;
            remove_file(&segment.time_index_path())?;
            held = delete_replaced(dir, &manifest)?;
            sync(dir)?;
            remove_file(&manifest_path)?;
            sync(dir)?;
        }
    }
    for leftover in list_cleaned(dir)? {
        tracing::info!(file = %leftover.display(), "removing an unfinished cleaned segment");
        held.extend(reclaim::hold(&leftover));
        remove_file(&leftover)?;
    }
    Ok(held)
}

/// Paths of the `.cleaned` files (segments and their indexes) in `dir`.
fn list_cleaned(dir: &Path) -> Result<Vec<PathBuf>, StorageError> {
    let listing = |source| StorageError::io("list log directory", dir, source);
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(listing)? {
        let entry = entry.map_err(listing)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let cleaned = parse_segment_name(&name).is_some_and(|(_, suffix)| {
            suffix == CLEANED_SUFFIX || CLEANED_INDEX_SUFFIXES.contains(&suffix)
        });
        if cleaned {
            out.push(entry.path());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, name: &str, contents: &[u8]) {
        std::fs::write(dir.join(name), contents).unwrap();
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Segments 0 (3 bytes), 10 (4 bytes) and 20, a cleaned segment for 0..20 with indexes,
    /// and the manifest naming 0 and 10.
    fn swap_in_progress(dir: &Path) {
        touch(dir, "00000000000000000000.log", b"old");
        touch(dir, "00000000000000000000.index", b"old index");
        touch(dir, "00000000000000000010.log", b"old2");
        touch(dir, "00000000000000000020.log", b"next");
        touch(dir, "00000000000000000000.log.cleaned", b"new");
        touch(dir, "00000000000000000000.index.cleaned", b"");
        touch(dir, "00000000000000000000.timeindex.cleaned", b"");
        let manifest = SwapManifest {
            replaces: vec![(0, 3), (10, 4)],
        };
        write_manifest(dir, &manifest).unwrap();
    }

    // Proves recovery rolls back a swap whose rename did not happen: the old segments and
    // indexes stay, every cleaned file and the manifest go.
    #[test]
    fn swap_before_its_rename_is_rolled_back() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        swap_in_progress(dir);
        finish_interrupted_swap(dir).unwrap();
        assert_eq!(
            names(dir),
            vec![
                "00000000000000000000.index",
                "00000000000000000000.log",
                "00000000000000000010.log",
                "00000000000000000020.log"
            ]
        );
        assert_eq!(
            std::fs::read(dir.join("00000000000000000000.log")).unwrap(),
            b"old"
        );
    }

    // Proves recovery finishes a swap whose rename happened: the other replaced segments go
    // (unless a file of another size took the name), stale indexes go, later segments stay.
    #[test]
    fn swap_after_its_rename_is_finished() {
        for reused in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let dir = dir.path();
            swap_in_progress(dir);
            std::fs::rename(
                dir.join("00000000000000000000.log.cleaned"),
                dir.join("00000000000000000000.log"),
            )
            .unwrap();
            if reused {
                touch(dir, "00000000000000000010.log", b"another file");
            }
            finish_interrupted_swap(dir).unwrap();
            let mut expected = vec!["00000000000000000000.log", "00000000000000000020.log"];
            if reused {
                expected.insert(1, "00000000000000000010.log");
            }
            assert_eq!(names(dir), expected);
            assert_eq!(
                std::fs::read(dir.join("00000000000000000000.log")).unwrap(),
                b"new"
            );
        }
    }

    // Proves an uncommitted cleaning (no manifest) only loses its .cleaned files, and that an
    // unreadable manifest refuses the open instead of guessing.
    #[test]
    fn uncommitted_cleaning_is_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        touch(dir, "00000000000000000000.log", b"old");
        touch(dir, "00000000000000000010.log", b"old2");
        touch(dir, "00000000000000000000.log.cleaned", b"half");
        touch(dir, "00000000000000000000.index.cleaned", b"half");
        finish_interrupted_swap(dir).unwrap();
        assert_eq!(
            names(dir),
            vec!["00000000000000000000.log", "00000000000000000010.log"]
        );
        touch(dir, SWAP_MANIFEST_FILE, b"garbage");
        assert!(matches!(
            finish_interrupted_swap(dir),
            Err(StorageError::Corrupt { .. })
        ));
    }
}
