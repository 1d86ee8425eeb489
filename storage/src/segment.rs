//! One segment of a partition log: `<base offset, 20 digits>.log` with its `.index` and
//! `.timeindex` beside it. This module holds the in-memory view of a segment, the synchronous
//! header walks that map offsets to file positions, and the bounded set of open read
//! descriptors. Writing lives in [`writer`].

pub(crate) mod writer;

use std::{
    collections::HashMap,
    fs::File,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    rc::{Rc, Weak},
};

use crate::{
    batch::{BatchHeader, BATCH_HEADER_BYTES},
    error::StorageError,
    index::SegmentIndex,
};

/// Extension of segment data files.
pub(crate) const LOG_SUFFIX: &str = "log";
/// Extension of offset index files.
pub(crate) const INDEX_SUFFIX: &str = "index";
/// Extension of time index files.
pub(crate) const TIME_INDEX_SUFFIX: &str = "timeindex";
/// Digits of the base offset in a segment file name (Kafka's width).
const FILE_NAME_DIGITS: usize = 20;
/// Bytes read at once while walking batch headers: covers a default index interval of small
/// batches with one read.
const HEADER_WINDOW_BYTES: usize = 16 * 1024;

/// `dir/<base offset>.<suffix>`.
pub(crate) fn segment_path(dir: &Path, base_offset: i64, suffix: &str) -> PathBuf {
    dir.join(format!("{base_offset:0FILE_NAME_DIGITS$}.{suffix}"))
}

/// Parses `<20 digits>.<suffix>` into the base offset and suffix.
pub(crate) fn parse_segment_name(name: &str) -> Option<(i64, &str)> {
    let (stem, suffix) = name.split_once('.')?;
    if stem.len() != FILE_NAME_DIGITS || !stem.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    Some((stem.parse().ok()?, suffix))
}

/// In-memory state of one segment. For the active segment `size` and `next_offset` cover only
/// published batches (completely written); appends in flight are not yet counted.
#[derive(Debug)]
pub(crate) struct Segment {
    pub base_offset: i64,
    /// Path of the `.log` file.
    pub path: PathBuf,
    /// Bytes of whole batches in the file.
    pub size: u64,
    /// One past the last offset in the segment (`base_offset` when empty).
    pub next_offset: i64,
    pub index: SegmentIndex,
    /// Wall clock from which `segment_ms_max` is counted: the first append's, or for a
    /// non-empty segment found on disk the open's.
    pub roll_base_ms: Option<i64>,
}

impl Segment {
    pub(crate) fn new(dir: &Path, base_offset: i64, index_interval_bytes: u32) -> Segment {
        Segment {
            base_offset,
            path: segment_path(dir, base_offset, LOG_SUFFIX),
            size: 0,
            next_offset: base_offset,
            index: SegmentIndex::new(index_interval_bytes),
            roll_base_ms: None,
        }
    }

    pub(crate) fn index_path(&self) -> PathBuf {
        self.path.with_extension(INDEX_SUFFIX)
    }

    pub(crate) fn time_index_path(&self) -> PathBuf {
        self.path.with_extension(TIME_INDEX_SUFFIX)
    }

    /// `offset - base_offset` clamped into u32 (offsets past the range map to the largest).
    pub(crate) fn relative(&self, offset: i64) -> u32 {
        u32::try_from(offset.saturating_sub(self.base_offset).max(0)).unwrap_or(u32::MAX)
    }

    /// Accounts for a batch published at `position` with the given header.
    pub(crate) fn observe(&mut self, header: &BatchHeader, position: u64) {
        let bytes = header.total_bytes() as u64;
        let relative = self.relative(header.base_offset);
        self.index
            .observe(relative, position, bytes, header.max_timestamp);
        self.size = position + bytes;
        self.next_offset = header.last_offset() + 1;
    }

    /// Where a walk for `offset` may start: the floor index entry or the segment start.
    fn walk_start(&self, offset: i64) -> (u64, i64) {
        match self.index.offsets.floor_offset(self.relative(offset)) {
            Some(entry) => (
                u64::from(entry.position),
                self.base_offset + i64::from(entry.relative_offset),
            ),
            None => (0, self.base_offset),
        }
    }

    /// Position and header of the batch holding `offset` (which must be below `next_offset`).
    pub(crate) fn locate(
        &self,
        reader: &mut HeaderReader<'_>,
        offset: i64,
    ) -> Result<(u64, BatchHeader), StorageError> {
        let (mut position, mut expected) = self.walk_start(offset);
        loop {
            let header = reader.header_at(position, expected)?;
            if header.last_offset() >= offset {
                return Ok((position, header));
            }
            position += header.total_bytes() as u64;
            expected = header.last_offset() + 1;
        }
    }

    /// End position of a read starting with the batch `first` at `start`: whole batches while
    /// they fit in `max_bytes` (the first always does) and end below `limit_offset`. Equal to
    /// `start` when the first batch already reaches `limit_offset`.
    pub(crate) fn read_end(
        &self,
        reader: &mut HeaderReader<'_>,
        start: u64,
        first: &BatchHeader,
        max_bytes: usize,
        limit_offset: i64,
    ) -> Result<u64, StorageError> {
        if first.last_offset() >= limit_offset {
            return Ok(start);
        }
        let byte_bound = start.saturating_add(max_bytes as u64).min(self.size);
        let mut position = start + first.total_bytes() as u64;
        let mut expected = first.last_offset() + 1;
        // Index entries point at batch starts: every batch before an entry at or below both
        // bounds is inside the read, so the walk can resume from the furthest such entry.
        let by_bytes = self.index.offsets.floor_position(byte_bound);
        let by_offset = self.index.offsets.floor_offset(self.relative(limit_offset));
        if let (Some(a), Some(b)) = (by_bytes, by_offset) {
            let entry = if a.position <= b.position { a } else { b };
            if u64::from(entry.position) > position {
                position = u64::from(entry.position);
                expected = self.base_offset + i64::from(entry.relative_offset);
            }
        }
        while position < self.size {
            let header = reader.header_at(position, expected)?;
            let end = position + header.total_bytes() as u64;
            if end > byte_bound || header.last_offset() >= limit_offset {
                break;
            }
            position = end;
            expected = header.last_offset() + 1;
        }
        Ok(position)
    }
}

/// Reads batch headers of one segment file with positioned reads through a small window.
pub(crate) struct HeaderReader<'a> {
    file: &'a File,
    path: &'a Path,
    size: u64,
    window: Vec<u8>,
    window_start: u64,
    /// A batch may start past the offset expected of it (compacted logs, see `compaction`).
    gaps_allowed: bool,
}

impl<'a> HeaderReader<'a> {
    /// `size` is the number of valid bytes (published) in the file.
    pub(crate) fn new(file: &'a File, path: &'a Path, size: u64) -> HeaderReader<'a> {
        HeaderReader {
            file,
            path,
            size,
            window: Vec::new(),
            window_start: 0,
            gaps_allowed: false,
        }
    }

    /// Lets batches start past the offset expected of them: a compacted log has gaps where the
    /// cleaner removed whole batches. Offsets must still increase.
    pub(crate) fn allowing_gaps(mut self, gaps_allowed: bool) -> HeaderReader<'a> {
        self.gaps_allowed = gaps_allowed;
        self
    }

    /// The header of the batch at `position`, checked to carry `expected_base` (or, where gaps
    /// are allowed, a larger base offset) and to end inside the valid bytes.
    pub(crate) fn header_at(
        &mut self,
        position: u64,
        expected_base: i64,
    ) -> Result<BatchHeader, StorageError> {
        let header = BatchHeader::parse(self.bytes_at(position)?)
            .map_err(|error| StorageError::corrupt(self.path, position, error.to_string()))?;
        let gap = self.gaps_allowed && header.base_offset > expected_base;
        if header.base_offset != expected_base && !gap {
            return Err(StorageError::corrupt(
                self.path,
                position,
                format!(
                    "batch has base offset {}, expected {expected_base}",
                    header.base_offset
                ),
            ));
        }
        if position + header.total_bytes() as u64 > self.size {
            return Err(StorageError::corrupt(
                self.path,
                position,
                format!(
                    "batch of {} bytes runs past the end at {}",
                    header.total_bytes(),
                    self.size
                ),
            ));
        }
        Ok(header)
    }

    /// At least a header's worth of bytes at `position` (fewer only at the end of the data).
    fn bytes_at(&mut self, position: u64) -> Result<&[u8], StorageError> {
        let header_end = (position + BATCH_HEADER_BYTES as u64).min(self.size);
        let window_end = self.window_start + self.window.len() as u64;
        if position < self.window_start || header_end > window_end {
            let len = (self.size.saturating_sub(position)).min(HEADER_WINDOW_BYTES as u64);
            self.window.resize(len as usize, 0);
            self.file
                .read_exact_at(&mut self.window, position)
                .map_err(|source| StorageError::io("read batch header", self.path, source))?;
            self.window_start = position;
        }
        let from = (position - self.window_start) as usize;
        Ok(&self.window[from..])
    }
}

/// Open read descriptors of closed segments, at most `capacity`, least recently used closed
/// first. Descriptors handed out in `FileSlice`s stay valid after eviction (they are `Rc`s);
/// every descriptor handed out is also tracked weakly, so a deleted segment's space is freed
/// only once no reader holds it (`reclaim`).
#[derive(Debug)]
pub(crate) struct ReadHandles {
    capacity: usize,
    clock: u64,
    open: HashMap<i64, (Rc<File>, u64)>,
    issued: HashMap<i64, Vec<Weak<File>>>,
}

impl ReadHandles {
    pub(crate) fn new(capacity: usize) -> ReadHandles {
        ReadHandles {
            capacity,
            clock: 0,
            open: HashMap::new(),
            issued: HashMap::new(),
        }
    }

    /// The descriptor of the segment at `base_offset`, opening `path` when needed.
    pub(crate) fn get(&mut self, base_offset: i64, path: &Path) -> Result<Rc<File>, StorageError> {
        self.clock += 1;
        if let Some((file, used)) = self.open.get_mut(&base_offset) {
            *used = self.clock;
            return Ok(file.clone());
        }
        let file = Rc::new(
            File::open(path)
                .map_err(|source| StorageError::io("open segment for reading", path, source))?,
        );
        self.insert(base_offset, file.clone());
        Ok(file)
    }

    /// Adopts an already open descriptor (the active segment's, when it rolls).
    pub(crate) fn insert(&mut self, base_offset: i64, file: Rc<File>) {
        let issued = self.issued.entry(base_offset).or_default();
        issued.retain(|reader| reader.strong_count() > 0 && !reader.ptr_eq(&Rc::downgrade(&file)));
        issued.push(Rc::downgrade(&file));
        self.clock += 1;
        self.open.insert(base_offset, (file, self.clock));
        while self.open.len() > self.capacity {
            let oldest = self
                .open
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(base, _)| *base);
            if let Some(base) = oldest {
                self.open.remove(&base);
            }
        }
    }

    /// Forgets the segment at `base_offset`; returns its descriptors still held by readers.
    pub(crate) fn remove(&mut self, base_offset: i64) -> Vec<Weak<File>> {
        self.open.remove(&base_offset);
        let mut readers = self.issued.remove(&base_offset).unwrap_or_default();
        readers.retain(|reader| reader.strong_count() > 0);
        readers
    }

    /// Closes the cached descriptors; those readers hold stay tracked.
    pub(crate) fn clear(&mut self) {
        self.open.clear();
    }

    /// Every descriptor handed out and still held by a reader, forgetting them all.
    pub(crate) fn take_readers(&mut self) -> Vec<Weak<File>> {
        self.issued
            .drain()
            .flat_map(|(_, readers)| readers)
            .filter(|reader| reader.strong_count() > 0)
            .collect()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.open.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves segment names are 20-digit base offsets and anything else is not a segment.
    #[test]
    fn segment_names_round_trip() {
        let path = segment_path(Path::new("/d"), 42, LOG_SUFFIX);
        assert_eq!(path, Path::new("/d/00000000000000000042.log"));
        assert_eq!(
            parse_segment_name("00000000000000000042.log"),
            Some((42, "log"))
        );
        assert_eq!(
            parse_segment_name("00000000000000000042.timeindex"),
            Some((42, "timeindex"))
        );
        assert_eq!(parse_segment_name("42.log"), None);
        assert_eq!(parse_segment_name("leader-epoch-checkpoint"), None);
    }

    // Proves the read-handle set never holds more than its capacity and evicts the least used.
    #[test]
    fn read_handles_are_bounded_lru() {
        let dir = tempfile::tempdir().unwrap();
        let mut handles = ReadHandles::new(2);
        for base in 0..3 {
            std::fs::write(segment_path(dir.path(), base, LOG_SUFFIX), b"x").unwrap();
        }
        let path = |base| segment_path(dir.path(), base, LOG_SUFFIX);
        handles.get(0, &path(0)).unwrap();
        handles.get(1, &path(1)).unwrap();
        handles.get(0, &path(0)).unwrap();
        handles.get(2, &path(2)).unwrap();
        assert_eq!(handles.len(), 2);
        assert!(handles.open.contains_key(&0) && handles.open.contains_key(&2));
    }
}
