//! Sparse per-segment indexes, kept in memory and written beside the segment when it closes.
//!
//! `.index`: entries of (relative offset u32, position u32), big-endian, one every
//! `index_interval_bytes` of log; each entry points at the start of a batch whose base offset is
//! `segment base + relative offset`.
//! `.timeindex`: entries of (timestamp i64, relative offset u32), big-endian, recorded with the
//! offset entries whenever the segment's largest timestamp grew, Kafka style: every batch before
//! the batch at the entry's offset has a max timestamp no larger than the entry's timestamp.
//! Indexes are a cache of the log: when a file is missing or fails its checks it is rebuilt.

/// Bytes of one `.index` entry.
pub(crate) const OFFSET_INDEX_ENTRY_BYTES: usize = 8;
/// Bytes of one `.timeindex` entry.
pub(crate) const TIME_INDEX_ENTRY_BYTES: usize = 12;

/// One offset index entry: the batch at `position` has base offset `segment base + relative_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub relative_offset: u32,
    pub position: u32,
}

/// One time index entry: batches up to and including the one at `relative_offset` have max
/// timestamps of at most `timestamp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub timestamp: i64,
    pub relative_offset: u32,
}

/// The sparse offset index of one segment.
#[derive(Debug, Clone, Default)]
pub(crate) struct OffsetIndex {
    entries: Vec<IndexEntry>,
}

impl OffsetIndex {
    #[cfg(test)]
    pub(crate) fn entries(&self) -> &[IndexEntry] {
        &self.entries
    }

    pub(crate) fn last(&self) -> Option<IndexEntry> {
        self.entries.last().copied()
    }

    fn push(&mut self, entry: IndexEntry) {
        if let Some(last) = self.entries.last() {
            assert!(
                entry.relative_offset > last.relative_offset && entry.position > last.position,
                "offset index entries must increase: {last:?} then {entry:?}"
            );
        }
        self.entries.push(entry);
    }

    /// The last entry whose offset is at most `relative_offset`.
    pub(crate) fn floor_offset(&self, relative_offset: u32) -> Option<IndexEntry> {
        let count = self
            .entries
            .partition_point(|entry| entry.relative_offset <= relative_offset);
        count.checked_sub(1).map(|at| self.entries[at])
    }

    /// The last entry whose position is at most `position`.
    pub(crate) fn floor_position(&self, position: u64) -> Option<IndexEntry> {
        let count = self
            .entries
            .partition_point(|entry| u64::from(entry.position) <= position);
        count.checked_sub(1).map(|at| self.entries[at])
    }

    /// Drops entries at or past `position`.
    pub(crate) fn truncate_to_position(&mut self, position: u64) {
        let keep = self
            .entries
            .partition_point(|entry| u64::from(entry.position) < position);
        self.entries.truncate(keep);
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * OFFSET_INDEX_ENTRY_BYTES);
        for entry in &self.entries {
            out.extend_from_slice(&entry.relative_offset.to_be_bytes());
            out.extend_from_slice(&entry.position.to_be_bytes());
        }
        out
    }

    /// Parses an `.index` file, checking that entries strictly increase and stay inside a
    /// segment of `segment_bytes` bytes.
    pub(crate) fn decode(bytes: &[u8], segment_bytes: u64) -> Result<OffsetIndex, String> {
        if !bytes
            .chunks_exact(OFFSET_INDEX_ENTRY_BYTES)
            .remainder()
            .is_empty()
        {
            return Err(format!("length {} is not a multiple of 8", bytes.len()));
        }
        let mut index = OffsetIndex::default();
        for chunk in bytes.chunks_exact(OFFSET_INDEX_ENTRY_BYTES) {
            let entry = IndexEntry {
                relative_offset: u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]),
                position: u32::from_be_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]),
            };
            if u64::from(entry.position) >= segment_bytes {
                return Err(format!("entry {entry:?} points past the segment end"));
            }
            if let Some(last) = index.last() {
                if entry.relative_offset <= last.relative_offset || entry.position <= last.position
                {
                    return Err(format!("entry {entry:?} does not follow {last:?}"));
                }
            }
            index.entries.push(entry);
        }
        Ok(index)
    }
}

/// The sparse time index of one segment.
#[derive(Debug, Clone, Default)]
pub(crate) struct TimeIndex {
    entries: Vec<TimeEntry>,
}

impl TimeIndex {
    pub(crate) fn last(&self) -> Option<TimeEntry> {
        self.entries.last().copied()
    }

    /// Records `(timestamp, relative_offset)` when it raises the largest timestamp indexed.
    fn push_if_greater(&mut self, timestamp: i64, relative_offset: u32) {
        if self.last().is_none_or(|last| timestamp > last.timestamp) {
            if let Some(last) = self.last() {
                assert!(relative_offset >= last.relative_offset);
            }
            self.entries.push(TimeEntry {
                timestamp,
                relative_offset,
            });
        }
    }

    /// The last entry whose timestamp is below `timestamp`: every batch up to the one at its
    /// offset is older than `timestamp`, so a search for `timestamp` may start there.
    pub(crate) fn last_below(&self, timestamp: i64) -> Option<TimeEntry> {
        let count = self
            .entries
            .partition_point(|entry| entry.timestamp < timestamp);
        count.checked_sub(1).map(|at| self.entries[at])
    }

    /// Drops entries pointing at or past `relative_offset`.
    fn truncate_to_offset(&mut self, relative_offset: u32) {
        let keep = self
            .entries
            .partition_point(|entry| entry.relative_offset < relative_offset);
        self.entries.truncate(keep);
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * TIME_INDEX_ENTRY_BYTES);
        for entry in &self.entries {
            out.extend_from_slice(&entry.timestamp.to_be_bytes());
            out.extend_from_slice(&entry.relative_offset.to_be_bytes());
        }
        out
    }

    /// Parses a `.timeindex` file, checking timestamps strictly increase, offsets never go
    /// back, and every offset lies below `relative_end` (the segment's end offset).
    pub(crate) fn decode(bytes: &[u8], relative_end: u64) -> Result<TimeIndex, String> {
        if !bytes
            .chunks_exact(TIME_INDEX_ENTRY_BYTES)
            .remainder()
            .is_empty()
        {
            return Err(format!("length {} is not a multiple of 12", bytes.len()));
        }
        let mut index = TimeIndex::default();
        for chunk in bytes.chunks_exact(TIME_INDEX_ENTRY_BYTES) {
            let mut timestamp = [0u8; 8];
            timestamp.copy_from_slice(&chunk[..8]);
            let entry = TimeEntry {
                timestamp: i64::from_be_bytes(timestamp),
                relative_offset: u32::from_be_bytes([chunk[8], chunk[9], chunk[10], chunk[11]]),
            };
            if u64::from(entry.relative_offset) >= relative_end {
                return Err(format!("entry {entry:?} points past the segment end"));
            }
            if let Some(last) = index.last() {
                if entry.timestamp <= last.timestamp || entry.relative_offset < last.relative_offset
                {
                    return Err(format!("entry {entry:?} does not follow {last:?}"));
                }
            }
            index.entries.push(entry);
        }
        Ok(index)
    }
}

/// Both indexes of a segment plus the running state that decides when the next entry is due.
#[derive(Debug, Clone)]
pub(crate) struct SegmentIndex {
    pub offsets: OffsetIndex,
    pub times: TimeIndex,
    /// Largest batch max timestamp in the segment, `None` while it is empty.
    pub max_timestamp: Option<i64>,
    /// Relative base offset of the batch holding `max_timestamp`.
    pub offset_of_max_timestamp: u32,
    /// Bytes appended since the last offset index entry.
    pub bytes_since_entry: u64,
    index_interval_bytes: u32,
}

impl SegmentIndex {
    pub(crate) fn new(index_interval_bytes: u32) -> SegmentIndex {
        SegmentIndex {
            offsets: OffsetIndex::default(),
            times: TimeIndex::default(),
            max_timestamp: None,
            offset_of_max_timestamp: 0,
            bytes_since_entry: 0,
            index_interval_bytes,
        }
    }

    /// Builds the state from loaded index files; `bytes_since_entry` and later timestamps are
    /// then brought up to date by observing the batches after the last entry.
    pub(crate) fn from_parts(
        offsets: OffsetIndex,
        times: TimeIndex,
        index_interval_bytes: u32,
    ) -> SegmentIndex {
        let last_time = times.last();
        SegmentIndex {
            offsets,
            times,
            max_timestamp: last_time.map(|entry| entry.timestamp),
            offset_of_max_timestamp: last_time.map_or(0, |entry| entry.relative_offset),
            bytes_since_entry: 0,
            index_interval_bytes,
        }
    }

    /// Accounts for one batch appended at `position`, adding index entries when due (Kafka's
    /// rule: an entry is added before a batch once more than the interval has been written).
    pub(crate) fn observe(
        &mut self,
        relative_offset: u32,
        position: u64,
        bytes: u64,
        max_timestamp: i64,
    ) {
        if self.max_timestamp.is_none_or(|max| max_timestamp > max) {
            self.max_timestamp = Some(max_timestamp);
            self.offset_of_max_timestamp = relative_offset;
        }
        if self.bytes_since_entry >= u64::from(self.index_interval_bytes) {
            // Positions fit in u32 because segments are capped below 4 GiB by config checks.
            let position = u32::try_from(position).unwrap_or(u32::MAX);
            self.offsets.push(IndexEntry {
                relative_offset,
                position,
            });
            if let Some(max) = self.max_timestamp {
                self.times
                    .push_if_greater(max, self.offset_of_max_timestamp);
            }
            self.bytes_since_entry = 0;
        }
        self.bytes_since_entry += bytes;
    }

    /// Makes the time index's last entry carry the segment's largest timestamp, so a segment
    /// loaded from its index files knows its newest timestamp without a scan.
    pub(crate) fn seal(&mut self) {
        if let Some(max) = self.max_timestamp {
            self.times
                .push_if_greater(max, self.offset_of_max_timestamp);
        }
    }

    /// Drops entries for bytes at or past `position` / offsets at or past `relative_offset`.
    /// The caller rebuilds the running state by observing the batches that remain after the
    /// last entry; this returns the position from which to observe again.
    pub(crate) fn truncate(&mut self, position: u64, relative_offset: u32) -> u64 {
        self.offsets.truncate_to_position(position);
        self.times.truncate_to_offset(relative_offset);
        let last_time = self.times.last();
        self.max_timestamp = last_time.map(|entry| entry.timestamp);
        self.offset_of_max_timestamp = last_time.map_or(0, |entry| entry.relative_offset);
        self.bytes_since_entry = 0;
        self.offsets
            .last()
            .map_or(0, |entry| u64::from(entry.position))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves index entries are added once per interval, lookups return floor entries, and
    // encode/decode round-trips while decode rejects entries that go backwards.
    #[test]
    fn index_entries_lookups_and_round_trip() {
        let mut index = SegmentIndex::new(100);
        for batch in 0u32..10 {
            index.observe(batch * 2, u64::from(batch) * 60, 60, i64::from(batch % 4));
        }
        let positions: Vec<u32> = index.offsets.entries().iter().map(|e| e.position).collect();
        assert_eq!(positions, vec![120, 240, 360, 480]);
        assert_eq!(index.offsets.floor_offset(9).unwrap().position, 240);
        assert_eq!(index.offsets.floor_offset(3), None);
        assert_eq!(index.offsets.floor_position(479).unwrap().position, 360);
        let decoded = OffsetIndex::decode(&index.offsets.encode(), 600).unwrap();
        assert_eq!(decoded.entries(), index.offsets.entries());
        assert!(OffsetIndex::decode(&index.offsets.encode(), 400).is_err());
        let mut backwards = index.offsets.encode();
        backwards.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]);
        assert!(OffsetIndex::decode(&backwards, 600).is_err());
        index.seal();
        assert_eq!(index.times.last().unwrap().timestamp, 3);
        let times = TimeIndex::decode(&index.times.encode(), 20).unwrap();
        assert_eq!(times.last(), index.times.last());
        assert_eq!(times.last_below(3).unwrap().timestamp, 2);
    }
}
