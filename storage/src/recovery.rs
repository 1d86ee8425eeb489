//! Opening a log directory: find the segments, trust what a clean shutdown or the recovery
//! point vouches for, scan (CRC included) everything else, and cut the log at the first torn or
//! corrupt batch as the `RecoveryPolicy` says.
//!
//! All of it is synchronous file work; the log runs it on glommio's blocking thread pool.
//!
//! **Invariant:** after recovery every segment holds only whole, valid, contiguous batches,
//! each file ends exactly at its last batch, and the leader-epoch cache ends at or below the
//! log end offset.

use std::{
    fs::{File, OpenOptions},
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
};

use crate::{
    batch::{validate_batch, BatchHeader, BATCH_HEADER_BYTES},
    checkpoint::{self, EpochCache, LEADER_EPOCH_FILE, RECOVERY_POINT_FILE, TEMP_SUFFIX},
    compaction::{self, CleaningState},
    config::{LogConfig, RecoveryPolicy, BATCH_BYTES_MAX_LIMIT, SEGMENT_BYTES_MAX_LIMIT},
    error::StorageError,
    index::{OffsetIndex, SegmentIndex, TimeIndex},
    reclaim::{self, HeldFile},
    segment::{
        parse_segment_name, HeaderReader, Segment, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX,
    },
};

/// Marker file written by a clean `close()` and removed at open.
pub(crate) const CLEAN_SHUTDOWN_FILE: &str = ".clean_shutdown";
/// Bytes read at once while scanning a segment.
const SCAN_CHUNK_BYTES: usize = 1 << 20;

/// The state of a directory after recovery.
#[derive(Debug)]
pub(crate) struct Recovered {
    /// Segments in offset order; never empty, the last is the active one.
    pub segments: Vec<Segment>,
    pub epochs: EpochCache,
    /// The cleaner's checkpoint, and whether batches may leave offset gaps.
    pub cleaning: CleaningState,
    pub summary: RecoverySummary,
    /// Segment files recovery removed (a torn tail's later segments, a swap's leftovers), held
    /// open so their space is freed in paced steps (`reclaim::free_later`).
    pub deleted: Vec<HeldFile>,
}

/// What recovery did to a log when it opened, for operators and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoverySummary {
    /// The log had a clean-shutdown marker: nothing was scanned.
    pub clean: bool,
    /// Segments whose batches were read and CRC-checked.
    pub segments_scanned: usize,
    /// Where the log was cut at a torn or corrupt batch: the segment file and byte position.
    pub cut_at: Option<(PathBuf, u64)>,
    /// Bytes removed by that cut (the torn batch and whatever followed it in its file).
    pub bytes_cut: u64,
    /// Where the idempotent-producer state was rebuilt from (snapshot, batches replayed).
    pub producer_rebuild: crate::producer_state::ProducerRebuild,
}

/// Where and why a scan stopped before the end of a file.
#[derive(Debug)]
struct Stop {
    position: u64,
    reason: String,
}

/// Result of scanning one segment file.
struct Scan {
    segment: Segment,
    /// (epoch, base offset) of every batch, in order.
    epochs: Vec<(i32, i64)>,
    stop: Option<Stop>,
}

/// Recovers the log in `dir` (creating it when missing).
pub(crate) fn recover(dir: &Path, config: &LogConfig) -> Result<Recovered, StorageError> {
    std::fs::create_dir_all(dir)
        .map_err(|source| StorageError::io("create log directory", dir, source))?;
    // A cleaning interrupted by a crash is finished (or its leftovers removed) before the
    // segments are listed, so the listing sees either the old or the cleaned segments.
    let mut deleted = compaction::finish_interrupted_swap(dir)?;
    let cleaning = CleaningState::load(dir, config);
    let gaps_allowed = cleaning.gaps_allowed;
    let bases = list_segments(dir)?;
    let marker = dir.join(CLEAN_SHUTDOWN_FILE);
    let clean = marker.exists();
    let recovery_point = if clean {
        i64::MAX
    } else {
        checkpoint::read_recovery_point(dir).unwrap_or(i64::MIN)
    };
    let mut state = Walk::default();
    state.summary.clean = clean;
    for (at, &base) in bases.iter().enumerate() {
        let next_base = bases.get(at + 1).copied();
        let trusted = clean || next_base.is_some_and(|next| next <= recovery_point);
        let place = Place {
            base,
            next_base,
            trusted,
            gaps_allowed,
        };
        match recover_segment(dir, config, place, &mut state)? {
            Next::Continue => {}
            Next::CutHere => {
                deleted.extend(reclaim::remove_segments(dir, &bases[at + 1..])?);
                break;
            }
            Next::DropFromHere => {
                deleted.extend(reclaim::remove_segments(dir, &bases[at..])?);
                break;
            }
        }
    }
    if state.segments.is_empty() {
        let segment = Segment::new(dir, 0, config.index_interval_bytes);
        File::create(&segment.path)
            .map_err(|source| StorageError::io("create segment", &segment.path, source))?;
        state.segments.push(segment);
    }
    let epochs = recover_epochs(dir, &state, gaps_allowed)?;
    finish(dir, &state, clean, &marker)?;
    set_roll_base(&mut state.segments);
    Ok(Recovered {
        segments: state.segments,
        epochs,
        cleaning,
        summary: state.summary,
        deleted,
    })
}

/// Where a segment sits in the log and how far it may be trusted.
#[derive(Debug, Clone, Copy)]
struct Place {
    base: i64,
    /// Base offset of the next segment, `None` for the last one.
    next_base: Option<i64>,
    /// The recovery point (or a clean shutdown) vouches for it: its indexes may be used.
    trusted: bool,
    /// Batches may start past the offset expected of them (compacted logs).
    gaps_allowed: bool,
}

/// What recovery has gathered so far.
#[derive(Default)]
struct Walk {
    segments: Vec<Segment>,
    /// Epoch transitions seen in scanned batches.
    epochs_seen: Vec<(i32, i64)>,
    /// Segment files that were scanned or cut, to fsync before the recovery point moves.
    touched: Vec<PathBuf>,
    summary: RecoverySummary,
}

/// What happens to the segments after the one just recovered.
enum Next {
    Continue,
    /// The log was cut inside this segment: every later segment goes.
    CutHere,
    /// This segment does not continue the log: it and every later segment go.
    DropFromHere,
}

/// Recovers one segment into `state`.
fn recover_segment(
    dir: &Path,
    config: &LogConfig,
    place: Place,
    state: &mut Walk,
) -> Result<Next, StorageError> {
    let Place {
        base,
        next_base,
        trusted,
        gaps_allowed,
    } = place;
    if let Some(previous) = state.segments.last() {
        if previous.next_offset != base {
            let reason = format!(
                "segment starts at offset {base} but the previous one ends at {}",
                previous.next_offset
            );
            let path = Segment::new(dir, base, config.index_interval_bytes).path;
            corruption(config, &path, 0, &reason)?;
            return Ok(Next::DropFromHere);
        }
    }
    if trusted {
        match load_trusted(dir, place, config.index_interval_bytes) {
            Ok(segment) => {
                state.segments.push(segment);
                return Ok(Next::Continue);
            }
            Err(reason) => {
                tracing::warn!(dir = %dir.display(), base, %reason, "segment indexes fail their checks; scanning the segment");
            }
        }
    }
    let scan = scan_segment(dir, base, config.index_interval_bytes, gaps_allowed)?;
    state.summary.segments_scanned += 1;
    state.touched.push(scan.segment.path.clone());
    state.epochs_seen.extend(scan.epochs);
    let next = match scan.stop {
        Some(stop) => {
            corruption(config, &scan.segment.path, stop.position, &stop.reason)?;
            let file_len = std::fs::metadata(&scan.segment.path)
                .map_err(|source| StorageError::io("stat segment", &scan.segment.path, source))?
                .len();
            cut_file(&scan.segment.path, stop.position)?;
            state.summary.cut_at = Some((scan.segment.path.clone(), stop.position));
            state.summary.bytes_cut = file_len.saturating_sub(stop.position);
            Next::CutHere
        }
        None => Next::Continue,
    };
    let mut segment = scan.segment;
    if matches!(next, Next::Continue) && next_base.is_some() {
        write_indexes(&mut segment)?;
    }
    state.segments.push(segment);
    Ok(next)
}

/// Applies the recovery policy to a torn or corrupt batch: an error under `Refuse`, a warning
/// (the caller then truncates) under `TruncateTail`.
fn corruption(
    config: &LogConfig,
    path: &Path,
    position: u64,
    reason: &str,
) -> Result<(), StorageError> {
    match config.recovery {
        RecoveryPolicy::Refuse => Err(StorageError::corrupt(path, position, reason)),
        RecoveryPolicy::TruncateTail => {
            tracing::warn!(file = %path.display(), position, reason, "torn or corrupt batch: truncating the log here and dropping later segments");
            Ok(())
        }
    }
}

/// Base offsets of the `.log` files in `dir`, sorted; removes leftover temporary files and
/// index files whose segment is gone.
fn list_segments(dir: &Path) -> Result<Vec<i64>, StorageError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|source| StorageError::io("list log directory", dir, source))?;
    let mut logs = Vec::new();
    let mut indexes = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| StorageError::io("list log directory", dir, source))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(TEMP_SUFFIX) {
            remove_file(&entry.path())?;
            continue;
        }
        match parse_segment_name(&name) {
            Some((base, LOG_SUFFIX)) => logs.push(base),
            Some((base, INDEX_SUFFIX | TIME_INDEX_SUFFIX)) => indexes.push((base, entry.path())),
            _ => {}
        }
    }
    logs.sort_unstable();
    for (base, path) in indexes {
        if logs.binary_search(&base).is_err() {
            remove_file(&path)?;
        }
    }
    Ok(logs)
}

pub(crate) fn remove_file(path: &Path) -> Result<(), StorageError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(StorageError::io("remove file", path, source)),
    }
}

/// Removes the files of the segments at `bases`.
pub(crate) fn delete_segments(dir: &Path, bases: &[i64]) -> Result<(), StorageError> {
    for &base in bases {
        let segment = Segment::new(dir, base, 1);
        // The log file goes first: an index without its log is an orphan that the next open
        // removes, while a log without its index is rebuilt.
        remove_file(&segment.path)?;
        remove_file(&segment.index_path())?;
        remove_file(&segment.time_index_path())?;
    }
    Ok(())
}

/// Cuts `path` to `size` bytes.
fn cut_file(path: &Path, size: u64) -> Result<(), StorageError> {
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|file| file.set_len(size))
        .map_err(|source| StorageError::io("truncate segment", path, source))
}

/// Writes the (sealed) indexes of a closed segment beside it.
fn write_indexes(segment: &mut Segment) -> Result<(), StorageError> {
    write_index_files(&sealed_index_files(segment))
}

/// Seals a segment's indexes and encodes both files: (path, bytes) pairs.
pub(crate) fn sealed_index_files(segment: &mut Segment) -> Vec<(PathBuf, Vec<u8>)> {
    segment.index.seal();
    vec![
        (segment.index_path(), segment.index.offsets.encode()),
        (segment.time_index_path(), segment.index.times.encode()),
    ]
}

/// Replaces index files atomically (they are trusted after a clean shutdown, so they must be
/// whole and durable).
pub(crate) fn write_index_files(files: &[(PathBuf, Vec<u8>)]) -> Result<(), StorageError> {
    for (path, bytes) in files {
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            continue;
        };
        checkpoint::atomic_write(dir, &name.to_string_lossy(), bytes)
            .map_err(|source| StorageError::io("write index", path, source))?;
    }
    Ok(())
}

/// Loads a segment from its index files, checking them: the file is no larger than a segment
/// may be, index entries increase and stay inside the file, the last entry points at a batch
/// with the matching base offset, and the batches after it end exactly at the end of the file
/// (and at `next_base` when a later segment exists).
fn load_trusted(dir: &Path, place: Place, index_interval_bytes: u32) -> Result<Segment, String> {
    let Place {
        base, next_base, ..
    } = place;
    let mut segment = Segment::new(dir, base, index_interval_bytes);
    let size = std::fs::metadata(&segment.path)
        .map_err(|error| error.to_string())?
        .len();
    if size > SEGMENT_BYTES_MAX_LIMIT {
        return Err(format!("file of {size} bytes is larger than any segment"));
    }
    let read = |path: PathBuf| {
        std::fs::read(&path).map_err(|error| format!("{}: {error}", path.display()))
    };
    let offsets = OffsetIndex::decode(&read(segment.index_path())?, size.max(1))?;
    let times = TimeIndex::decode(&read(segment.time_index_path())?, u64::MAX)?;
    let (mut position, mut expected) = offsets.last().map_or((0, base), |entry| {
        (
            u64::from(entry.position),
            base + i64::from(entry.relative_offset),
        )
    });
    segment.index = SegmentIndex::from_parts(offsets, times, index_interval_bytes);
    let path = segment.path.clone();
    let file = File::open(&path).map_err(|error| error.to_string())?;
    let mut reader = HeaderReader::new(&file, &path, size).allowing_gaps(place.gaps_allowed);
    while position < size {
        let header = reader
            .header_at(position, expected)
            .map_err(|error| error.to_string())?;
        segment.observe(&header, position);
        position += header.total_bytes() as u64;
        expected = header.last_offset() + 1;
    }
    segment.size = size;
    if let Some(last) = segment.index.times.last() {
        if i64::from(last.relative_offset) >= segment.next_offset - base {
            return Err(format!(
                "time index entry {last:?} points past the segment end"
            ));
        }
    }
    if next_base.is_some_and(|next| next != segment.next_offset) {
        return Err(format!(
            "segment ends at offset {} but the next starts at {next_base:?}",
            segment.next_offset
        ));
    }
    Ok(segment)
}

/// Reads a segment file through a buffer of at least `SCAN_CHUNK_BYTES`.
struct ScanReader<'a> {
    file: &'a File,
    path: &'a Path,
    buffer: Vec<u8>,
    buffer_start: u64,
}

impl ScanReader<'_> {
    /// `len` bytes at `position` (the caller checked they are inside the file).
    fn bytes(&mut self, position: u64, len: usize, file_len: u64) -> Result<&[u8], StorageError> {
        let buffer_end = self.buffer_start + self.buffer.len() as u64;
        if position < self.buffer_start || position + len as u64 > buffer_end {
            let want = (file_len - position).min(len.max(SCAN_CHUNK_BYTES) as u64) as usize;
            self.buffer.resize(want, 0);
            self.file
                .read_exact_at(&mut self.buffer, position)
                .map_err(|source| StorageError::io("read segment", self.path, source))?;
            self.buffer_start = position;
        }
        let from = (position - self.buffer_start) as usize;
        Ok(&self.buffer[from..from + len])
    }
}

/// Validates every batch of a segment file (CRC included), rebuilding its indexes. A
/// zero-filled tail (direct mode pads and preallocates) is the end of the log and is cut off.
fn scan_segment(
    dir: &Path,
    base: i64,
    index_interval_bytes: u32,
    gaps_allowed: bool,
) -> Result<Scan, StorageError> {
    let mut segment = Segment::new(dir, base, index_interval_bytes);
    let path = segment.path.clone();
    let file =
        File::open(&path).map_err(|source| StorageError::io("open segment", &path, source))?;
    let file_len = file
        .metadata()
        .map_err(|source| StorageError::io("stat segment", &path, source))?
        .len();
    let mut reader = ScanReader {
        file: &file,
        path: &path,
        buffer: Vec::new(),
        buffer_start: 0,
    };
    let mut epochs = Vec::new();
    let mut position = 0u64;
    let reason = loop {
        if position >= file_len {
            break None;
        }
        let expected = Expected {
            offset: segment.next_offset,
            gaps_allowed,
        };
        match next_batch(&mut reader, position, file_len, expected)? {
            Ok(header) => {
                segment.observe(&header, position);
                epochs.push((header.partition_leader_epoch, header.base_offset));
                position += header.total_bytes() as u64;
            }
            Err(reason) => break Some(reason),
        }
    };
    let stop = match reason {
        Some(reason) if !is_zero_from(&mut reader, position, file_len)? => {
            Some(Stop { position, reason })
        }
        _ => None,
    };
    if stop.is_none() && file_len > position {
        tracing::debug!(file = %path.display(), position, "cutting the zero-filled tail");
        cut_file(&path, position)?;
    }
    Ok(Scan {
        segment,
        epochs,
        stop,
    })
}

/// The base offset the next batch of a scan must carry: exactly `offset`, or where gaps are
/// allowed (compacted logs) at least `offset`.
#[derive(Debug, Clone, Copy)]
struct Expected {
    offset: i64,
    gaps_allowed: bool,
}

/// The valid batch at `position`, or why there is none.
fn next_batch(
    reader: &mut ScanReader<'_>,
    position: u64,
    file_len: u64,
    expected: Expected,
) -> Result<Result<BatchHeader, String>, StorageError> {
    let available = file_len - position;
    let head = reader.bytes(
        position,
        available.min(BATCH_HEADER_BYTES as u64) as usize,
        file_len,
    )?;
    let header = match BatchHeader::parse(head) {
        Ok(header) => header,
        Err(error) => return Ok(Err(error.to_string())),
    };
    let total = header.total_bytes();
    if total > BATCH_BYTES_MAX_LIMIT {
        return Ok(Err(format!(
            "batch length {total} exceeds {BATCH_BYTES_MAX_LIMIT}"
        )));
    }
    if total as u64 > available {
        return Ok(Err(format!(
            "batch of {total} bytes is torn: only {available} bytes remain"
        )));
    }
    if position + total as u64 > SEGMENT_BYTES_MAX_LIMIT {
        return Ok(Err(
            "segment grows past the largest segment size".to_string()
        ));
    }
    let bytes = reader.bytes(position, total, file_len)?;
    let header = match validate_batch(bytes, BATCH_BYTES_MAX_LIMIT) {
        Ok(header) => header,
        Err(error) => return Ok(Err(error.to_string())),
    };
    let gap = expected.gaps_allowed && header.base_offset > expected.offset;
    if header.base_offset != expected.offset && !gap {
        return Ok(Err(format!(
            "batch has base offset {}, expected {}",
            header.base_offset, expected.offset
        )));
    }
    Ok(Ok(header))
}

/// True when every byte of the file from `position` on is zero.
fn is_zero_from(
    reader: &mut ScanReader<'_>,
    mut position: u64,
    file_len: u64,
) -> Result<bool, StorageError> {
    while position < file_len {
        let len = (file_len - position).min(SCAN_CHUNK_BYTES as u64) as usize;
        if reader
            .bytes(position, len, file_len)?
            .iter()
            .any(|byte| *byte != 0)
        {
            return Ok(false);
        }
        position += len as u64;
    }
    Ok(true)
}

/// The leader-epoch cache made consistent with the recovered log: loaded from its checkpoint
/// (or rebuilt from batch headers when that is unreadable), cut at the log end, extended with
/// epochs seen in scanned batches, and trimmed to the log start. Rewritten when it changed.
fn recover_epochs(
    dir: &Path,
    state: &Walk,
    gaps_allowed: bool,
) -> Result<EpochCache, StorageError> {
    let (mut epochs, mut changed) = match EpochCache::read(dir) {
        Ok(epochs) => (epochs, false),
        Err(error) => {
            tracing::warn!(dir = %dir.display(), %error, "leader epoch checkpoint unreadable; rebuilding it from the log");
            (epochs_from_headers(&state.segments, gaps_allowed)?, true)
        }
    };
    let (start, end) = match (state.segments.first(), state.segments.last()) {
        (Some(first), Some(last)) => (first.base_offset, last.next_offset),
        _ => (0, 0),
    };
    changed |= epochs.truncate_from_end(end);
    for &(epoch, offset) in &state.epochs_seen {
        changed |= epochs.assign(epoch, offset);
    }
    changed |= epochs.truncate_from_start(start);
    if changed {
        checkpoint::atomic_write(dir, LEADER_EPOCH_FILE, &epochs.encode())
            .map_err(|source| StorageError::io("write leader epoch checkpoint", dir, source))?;
    }
    Ok(epochs)
}

/// Epoch transitions read from every batch header of the log (no CRC check: the segments were
/// already recovered).
fn epochs_from_headers(
    segments: &[Segment],
    gaps_allowed: bool,
) -> Result<EpochCache, StorageError> {
    let mut epochs = EpochCache::default();
    for segment in segments {
        let file = File::open(&segment.path)
            .map_err(|source| StorageError::io("open segment", &segment.path, source))?;
        let mut reader =
            HeaderReader::new(&file, &segment.path, segment.size).allowing_gaps(gaps_allowed);
        let (mut position, mut expected) = (0, segment.base_offset);
        while position < segment.size {
            let header = reader.header_at(position, expected)?;
            epochs.assign(header.partition_leader_epoch, header.base_offset);
            position += header.total_bytes() as u64;
            expected = header.last_offset() + 1;
        }
    }
    Ok(epochs)
}

/// Makes the recovered state durable: fsyncs every scanned or cut segment and the directory,
/// moves the recovery point to the log end, and removes the clean-shutdown marker (so a crash
/// from now on is detected).
fn finish(dir: &Path, state: &Walk, clean: bool, marker: &Path) -> Result<(), StorageError> {
    for path in &state.touched {
        File::open(path)
            .and_then(|file| file.sync_data())
            .map_err(|source| StorageError::io("fsync segment", path, source))?;
    }
    let end = state
        .segments
        .last()
        .map_or(0, |segment| segment.next_offset);
    checkpoint::atomic_write(
        dir,
        RECOVERY_POINT_FILE,
        &checkpoint::encode_recovery_point(end),
    )
    .map_err(|source| StorageError::io("write recovery point", dir, source))?;
    if clean {
        remove_file(marker)?;
    }
    checkpoint::sync_dir(dir).map_err(|source| StorageError::io("fsync log directory", dir, source))
}

/// Starts the time-based roll clock of a non-empty active segment at the open: the wall clock
/// of its first append is not on disk, and a client timestamp is no clock to roll by.
fn set_roll_base(segments: &mut [Segment]) {
    if let Some(active) = segments.last_mut().filter(|active| active.size > 0) {
        active.roll_base_ms = Some(crate::log::now_ms());
    }
}
