//! The crash-safe swap of a cleaned segment for the segments it was made from (Kafka's
//! `.cleaned` -> `.swap` -> rename protocol, with the replaced range written down instead of
//! inferred from file names).
//!
//! 1. The cleaner writes `<base>.log.cleaned` and fsyncs it. A crash now leaves a `.cleaned`
//!    file and no manifest: recovery deletes it, and the old segments are untouched.
//! 2. Under the log's append lock, `cleaner-swap` is written atomically (temp file, fsync,
//!    rename, directory fsync) naming `base` and `end`, the offset where the next segment
//!    starts. This is the commit point: from here on, recovery finishes the swap.
//! 3. The old indexes of `base` go, `<base>.log.cleaned` is renamed over `<base>.log` and the
//!    in-memory segments are replaced, in one step with no await; the new indexes are written;
//!    the old segments with base offsets in `(base, end)` are deleted; the directory is
//!    fsynced; the manifest is removed.
//!
//! Recovery ([`finish_interrupted_swap`]) with a manifest present: drops the indexes of
//! `base`, renames `<base>.log.cleaned` over `<base>.log` if it is still there, deletes every
//! segment with a base offset in `(base, end)`, then removes the manifest. Without a manifest
//! it deletes any `.cleaned` file. Either way the log holds the old segments or the cleaned
//! one, never a mix, and the indexes of the cleaned segment are rebuilt by the scan.
//!
//! **Invariant:** a cleaned segment ends at the same offset as the last segment it replaces,
//! so segments stay contiguous and a swap never changes the log's offsets, only which records
//! are kept inside them.

use std::{
    io,
    path::{Path, PathBuf},
};

use crate::{
    checkpoint,
    error::StorageError,
    recovery::{delete_segments, remove_file},
    segment::{parse_segment_name, segment_path, Segment, LOG_SUFFIX},
};

/// File name of the swap manifest.
pub(crate) const SWAP_MANIFEST_FILE: &str = "cleaner-swap";
/// Suffix (after `.log`) of a cleaned segment not yet swapped in.
const CLEANED_SUFFIX: &str = "log.cleaned";

/// The segments a swap replaces: those with base offsets in `[base_offset, end_offset)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SwapManifest {
    /// Base offset of the cleaned segment (and of the first segment it replaces).
    pub base_offset: i64,
    /// Base offset of the segment after the last one it replaces.
    pub end_offset: i64,
}

impl SwapManifest {
    fn encode(self) -> Vec<u8> {
        checkpoint::encode(&[format!("{} {}", self.base_offset, self.end_offset)])
    }

    fn read(dir: &Path) -> io::Result<Option<SwapManifest>> {
        let Some(entries) = checkpoint::read_entries(&dir.join(SWAP_MANIFEST_FILE))? else {
            return Ok(None);
        };
        match entries.as_slice() {
            [entry] => match entry.as_slice() {
                [base_offset, end_offset] if base_offset < end_offset => Ok(Some(SwapManifest {
                    base_offset: *base_offset,
                    end_offset: *end_offset,
                })),
                _ => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the swap range must be two increasing offsets",
                )),
            },
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the swap manifest must hold one entry",
            )),
        }
    }
}

/// `dir/<base>.log.cleaned`.
pub(crate) fn cleaned_path(dir: &Path, base_offset: i64) -> PathBuf {
    segment_path(dir, base_offset, CLEANED_SUFFIX)
}

/// Step 2: writes the manifest durably.
pub(crate) fn write_manifest(dir: &Path, manifest: SwapManifest) -> Result<(), StorageError> {
    checkpoint::atomic_write(dir, SWAP_MANIFEST_FILE, &manifest.encode()).map_err(|source| {
        StorageError::io("write swap manifest", dir.join(SWAP_MANIFEST_FILE), source)
    })
}

/// True when a manifest is present: a swap is under way or was interrupted.
pub(crate) fn manifest_present(dir: &Path) -> bool {
    dir.join(SWAP_MANIFEST_FILE).exists()
}

/// Removes the index files of the segment at `base_offset` (they describe the old file).
pub(crate) fn remove_indexes(dir: &Path, base_offset: i64) -> Result<(), StorageError> {
    let segment = Segment::new(dir, base_offset, 1);
    remove_file(&segment.index_path())?;
    remove_file(&segment.time_index_path())
}

/// The end of step 3: deletes the replaced segments after the first, then the manifest.
pub(crate) fn complete(dir: &Path, manifest: SwapManifest) -> Result<(), StorageError> {
    let replaced: Vec<i64> = list_logs(dir)?
        .into_iter()
        .filter(|base| *base > manifest.base_offset && *base < manifest.end_offset)
        .collect();
    delete_segments(dir, &replaced)?;
    let sync = |dir: &Path| {
        checkpoint::sync_dir(dir)
            .map_err(|source| StorageError::io("fsync log directory", dir, source))
    };
    // The deletions are durable before the manifest that would redo them goes.
    sync(dir)?;
    super::crash_point::reached(super::crash_point::REPLACED_DELETED);
    remove_file(&dir.join(SWAP_MANIFEST_FILE))?;
    sync(dir)
}

/// Takes back a swap that failed before the in-memory switch: removes the manifest, durably,
/// and only then the cleaned file (a manifest without its cleaned file tells recovery the
/// rename happened).
pub(crate) fn undo(dir: &Path, manifest: SwapManifest) -> Result<(), StorageError> {
    remove_file(&dir.join(SWAP_MANIFEST_FILE))?;
    checkpoint::sync_dir(dir)
        .map_err(|source| StorageError::io("fsync log directory", dir, source))?;
    remove_file(&cleaned_path(dir, manifest.base_offset))
}

/// Recovery: finishes a swap that passed its commit point, or removes a cleaning's leftovers.
pub(crate) fn finish_interrupted_swap(dir: &Path) -> Result<(), StorageError> {
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
    if let Some(manifest) = manifest {
        tracing::warn!(dir = %dir.display(), base = manifest.base_offset, end = manifest.end_offset, "finishing a segment swap interrupted by a crash");
        remove_indexes(dir, manifest.base_offset)?;
        let cleaned = cleaned_path(dir, manifest.base_offset);
        if cleaned.exists() {
            let target = segment_path(dir, manifest.base_offset, LOG_SUFFIX);
            std::fs::rename(&cleaned, &target)
                .map_err(|source| StorageError::io("rename cleaned segment", &cleaned, source))?;
        }
        complete(dir, manifest)?;
    }
    for leftover in list_cleaned(dir)? {
        tracing::info!(file = %leftover.display(), "removing an unfinished cleaned segment");
        remove_file(&leftover)?;
    }
    Ok(())
}

/// Base offsets of the `.log` files in `dir`.
fn list_logs(dir: &Path) -> Result<Vec<i64>, StorageError> {
    Ok(entries(dir)?
        .into_iter()
        .filter_map(|(name, _)| match parse_segment_name(&name) {
            Some((base, LOG_SUFFIX)) => Some(base),
            _ => None,
        })
        .collect())
}

/// Paths of the `.log.cleaned` files in `dir`.
fn list_cleaned(dir: &Path) -> Result<Vec<PathBuf>, StorageError> {
    Ok(entries(dir)?
        .into_iter()
        .filter(|(name, _)| matches!(parse_segment_name(name), Some((_, CLEANED_SUFFIX))))
        .map(|(_, path)| path)
        .collect())
}

fn entries(dir: &Path) -> Result<Vec<(String, PathBuf)>, StorageError> {
    let listing = |source| StorageError::io("list log directory", dir, source);
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(listing)? {
        let entry = entry.map_err(listing)?;
        out.push((
            entry.file_name().to_string_lossy().into_owned(),
            entry.path(),
        ));
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
        let mut names: Vec<String> = entries(dir).unwrap().into_iter().map(|(n, _)| n).collect();
        names.sort();
        names
    }

    // Proves recovery finishes a committed swap from either side of the rename: the cleaned
    // file replaces the first segment, the other replaced segments go, later ones stay.
    #[test]
    fn committed_swap_is_finished() {
        for renamed in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let dir = dir.path();
            touch(dir, "00000000000000000000.log", b"old");
            touch(dir, "00000000000000000000.index", b"stale");
            touch(dir, "00000000000000000010.log", b"old2");
            touch(dir, "00000000000000000010.index", b"");
            touch(dir, "00000000000000000020.log", b"next");
            if renamed {
                touch(dir, "00000000000000000000.log", b"new");
            } else {
                touch(dir, "00000000000000000000.log.cleaned", b"new");
            }
            write_manifest(
                dir,
                SwapManifest {
                    base_offset: 0,
                    end_offset: 20,
                },
            )
            .unwrap();
            finish_interrupted_swap(dir).unwrap();
            assert_eq!(
                names(dir),
                vec!["00000000000000000000.log", "00000000000000000020.log"]
            );
            assert_eq!(
                std::fs::read(dir.join("00000000000000000000.log")).unwrap(),
                b"new"
            );
        }
    }

    // Proves an uncommitted cleaning (no manifest) only loses its .cleaned file, and that an
    // unreadable manifest refuses the open instead of guessing.
    #[test]
    fn uncommitted_cleaning_is_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        touch(dir, "00000000000000000000.log", b"old");
        touch(dir, "00000000000000000010.log", b"old2");
        touch(dir, "00000000000000000000.log.cleaned", b"half");
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
