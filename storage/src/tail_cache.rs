//! The direct-mode tail cache: the newest appended bytes of a log, kept in memory so caught-up
//! readers are served without touching the disk (O_DIRECT writes leave nothing in the page
//! cache).
//!
//! The cache holds the frozen buffers of the newest appends (one chunk per append, whole batches
//! only). **Invariant:** chunks are contiguous in offsets and the last one ends at the log end
//! offset; the total is at most `bytes_max`.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::batch::BatchHeader;

/// The batches of one append as they were written.
#[derive(Debug, Clone)]
pub(crate) struct Chunk {
    /// Base offset of the segment the bytes were written to.
    pub segment_base: i64,
    /// First offset of the chunk.
    pub base_offset: i64,
    /// One past the last offset of the chunk.
    pub next_offset: i64,
    /// The stamped batches.
    pub data: Bytes,
}

/// Newest appends of one log, bounded by `bytes_max`.
#[derive(Debug)]
pub(crate) struct TailCache {
    chunks: VecDeque<Chunk>,
    bytes: usize,
    bytes_max: usize,
}

/// Limits of one read, shared with the file read path.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadLimits {
    /// Offset whose batch the read starts with.
    pub offset: i64,
    /// Soft byte limit: more is returned only to include one whole batch.
    pub max_bytes: usize,
    /// Only batches whose last offset is below this are returned.
    pub limit_offset: i64,
}

impl TailCache {
    pub(crate) fn new(bytes_max: usize) -> TailCache {
        TailCache {
            chunks: VecDeque::new(),
            bytes: 0,
            bytes_max,
        }
    }

    /// Adds the newest append. A chunk bigger than the whole cache empties it, so the invariant
    /// that the cache is a contiguous suffix of the log holds.
    pub(crate) fn push(&mut self, chunk: Chunk) {
        if self
            .chunks
            .back()
            .is_some_and(|last| chunk.base_offset > last.next_offset)
        {
            // A follower of a compacted log appends past the gaps its leader's cleaner left;
            // the cache restarts there so its chunks stay contiguous.
            self.clear();
        }
        if let Some(last) = self.chunks.back() {
            assert_eq!(
                last.next_offset, chunk.base_offset,
                "tail cache must stay contiguous"
            );
        }
        if chunk.data.len() > self.bytes_max {
            self.clear();
            return;
        }
        self.bytes += chunk.data.len();
        self.chunks.push_back(chunk);
        while self.bytes > self.bytes_max {
            if let Some(front) = self.chunks.pop_front() {
                self.bytes -= front.data.len();
            }
        }
    }

    pub(crate) fn clear(&mut self) {
        self.chunks.clear();
        self.bytes = 0;
    }

    /// Drops chunks holding offsets at or past `end_offset` (the log was truncated). When the
    /// cut fell inside a chunk the rest no longer ends at the log end, so all of it goes.
    pub(crate) fn truncate(&mut self, end_offset: i64) {
        while self
            .chunks
            .back()
            .is_some_and(|chunk| chunk.next_offset > end_offset)
        {
            if let Some(back) = self.chunks.pop_back() {
                self.bytes -= back.data.len();
            }
        }
        if self
            .chunks
            .back()
            .is_some_and(|chunk| chunk.next_offset != end_offset)
        {
            self.clear();
        }
    }

    /// Drops chunks wholly below `start_offset` (retention deleted their segments).
    pub(crate) fn drop_before(&mut self, start_offset: i64) {
        while self
            .chunks
            .front()
            .is_some_and(|chunk| chunk.base_offset < start_offset)
        {
            if let Some(front) = self.chunks.pop_front() {
                self.bytes -= front.data.len();
            }
        }
    }

    /// Serves a read when the batch holding `limits.offset` is cached: `None` when it is not,
    /// `Some(empty)` when that batch reaches `limits.limit_offset`, otherwise whole batches of
    /// one segment, as slices of the cached chunks in order (no copy: a fetch sends them
    /// straight from the cache's buffers).
    pub(crate) fn read(&self, limits: ReadLimits) -> Option<Vec<Bytes>> {
        let first = self.chunks.front()?;
        if limits.offset < first.base_offset {
            return None;
        }
        let at = self
            .chunks
            .partition_point(|chunk| chunk.next_offset <= limits.offset);
        let chunk = self.chunks.get(at)?;
        let start = find_batch(&chunk.data, limits.offset)?;
        let mut pieces: Vec<Bytes> = Vec::new();
        let mut total = 0usize;
        let mut position = start;
        for chunk in self.chunks.range(at..) {
            if chunk.segment_base != self.chunks[at].segment_base {
                break;
            }
            let (end, full) = extend(&chunk.data, position, total, limits);
            total += end - position;
            if end > position {
                pieces.push(chunk.data.slice(position..end));
            }
            if !full {
                break;
            }
            position = 0;
        }
        Some(pieces)
    }
}

fn find_batch(data: &[u8], offset: i64) -> Option<usize> {
    let mut position = 0;
    while position < data.len() {
        let header = BatchHeader::parse(&data[position..]).ok()?;
        if header.last_offset() >= offset {
            return Some(position);
        }
        position += header.total_bytes();
    }
    None
}

/// Extends a read through `data` from `position`; returns where it stopped and whether it
/// consumed the whole chunk (so the read may continue in the next one).
fn extend(data: &[u8], mut position: usize, mut total: usize, limits: ReadLimits) -> (usize, bool) {
    while position < data.len() {
        let Ok(header) = BatchHeader::parse(&data[position..]) else {
            debug_assert!(false, "tail cache holds a batch that no longer parses");
            return (position, false);
        };
        let bytes = header.total_bytes();
        let fits = total == 0 || total + bytes <= limits.max_bytes;
        if !fits || header.last_offset() >= limits.limit_offset {
            return (position, false);
        }
        total += bytes;
        position += bytes;
    }
    (position, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{stamp, BatchBuilder, Compression};
    use bytes::BytesMut;

    /// The bytes a read returned, joined.
    fn joined(pieces: Vec<Bytes>) -> Vec<u8> {
        pieces.concat()
    }

    /// An append of `count` one-record batches starting at `base_offset`.
    fn chunk(base_offset: i64, count: i64) -> Chunk {
        let mut data = BytesMut::new();
        for i in 0..count {
            let mut builder = BatchBuilder::new(Compression::None);
            builder.push(0, None, Some(b"value"), &[]);
            let mut batch = builder.build().unwrap();
            stamp(&mut batch, base_offset + i, 0).unwrap();
            data.extend_from_slice(&batch);
        }
        Chunk {
            segment_base: 0,
            base_offset,
            next_offset: base_offset + count,
            data: data.freeze(),
        }
    }

    fn limits(offset: i64, max_bytes: usize, limit_offset: i64) -> ReadLimits {
        ReadLimits {
            offset,
            max_bytes,
            limit_offset,
        }
    }

    // Proves reads span chunks with whole batches, honour both limits, and that a truncation
    // inside a chunk leaves the cache consistent with the new end (a later push is accepted).
    #[test]
    fn reads_and_truncation() {
        let mut cache = TailCache::new(1 << 20);
        cache.push(chunk(0, 3));
        cache.push(chunk(3, 3));
        let one = joined(cache.read(limits(4, 1, 6)).unwrap());
        assert_eq!(BatchHeader::parse(&one).unwrap().base_offset, 4);
        let batch_bytes = one.len();
        let spanning = cache.read(limits(1, 1 << 20, 6)).unwrap();
        assert_eq!(spanning.len(), 2, "one piece per chunk read");
        assert_eq!(
            spanning[1].as_ptr(),
            cache.chunks[1].data.as_ptr(),
            "pieces are the cached buffers, not copies"
        );
        assert_eq!(joined(spanning).len(), 5 * batch_bytes);
        assert_eq!(
            joined(cache.read(limits(1, 1 << 20, 4)).unwrap()).len(),
            3 * batch_bytes
        );
        assert!(cache.read(limits(5, 1 << 20, 5)).unwrap().is_empty());
        cache.truncate(4);
        assert!(cache.read(limits(0, 1, 4)).is_none());
        cache.push(chunk(4, 1));
        assert_eq!(
            joined(cache.read(limits(4, 1, 5)).unwrap()),
            chunk(4, 1).data
        );
        let mut small = TailCache::new(2 * batch_bytes);
        small.push(chunk(0, 1));
        small.push(chunk(1, 1));
        small.push(chunk(2, 1));
        assert!(small.read(limits(0, 1, 3)).is_none());
        assert!(small.read(limits(1, 1, 3)).is_some());
    }
}
