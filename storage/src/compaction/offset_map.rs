//! The key -> newest offset map one cleaning builds over the dirty part of a log.
//!
//! Kafka keeps 16-byte MD5 digests of keys (a collision can drop a live record); we keep the
//! keys themselves, so a record is only ever removed for a provably newer record of the same
//! key, and bound the map by bytes instead.

use std::collections::HashMap;

/// Bytes counted per entry on top of its key: the hash table slot, the boxed key's pointer and
/// length, the offset, and the allocator's rounding.
pub(crate) const ENTRY_OVERHEAD_BYTES: usize = 64;

/// Newest offset of every key seen, and newest batch of every producer seen, within a byte
/// budget.
#[derive(Debug)]
pub(crate) struct OffsetMap {
    entries: HashMap<Box<[u8]>, i64>,
    /// Producer id -> base offset of its newest batch.
    producers: HashMap<i64, i64>,
    bytes: usize,
    bytes_max: usize,
}

impl OffsetMap {
    /// An empty map that admits batches while it holds at most `bytes_max` bytes.
    pub(crate) fn new(bytes_max: usize) -> OffsetMap {
        OffsetMap {
            entries: HashMap::new(),
            producers: HashMap::new(),
            bytes: 0,
            bytes_max,
        }
    }

    /// Bytes an entry for `key` costs.
    pub(crate) fn entry_bytes(key: &[u8]) -> usize {
        key.len() + ENTRY_OVERHEAD_BYTES
    }

    /// True when `bytes` more would fit. An empty map takes anything, so every cleaning makes
    /// progress by at least one batch.
    pub(crate) fn has_room(&self, bytes: usize) -> bool {
        self.entries.is_empty() || self.bytes.saturating_add(bytes) <= self.bytes_max
    }

    /// Records that `key` was written at `offset` (offsets arrive in increasing order).
    pub(crate) fn insert(&mut self, key: &[u8], offset: i64) {
        if let Some(newest) = self.entries.get_mut(key) {
            *newest = (*newest).max(offset);
            return;
        }
        self.bytes += Self::entry_bytes(key);
        self.entries.insert(key.into(), offset);
    }

    /// Records that producer `producer_id` wrote the batch at `base_offset` (batches arrive in
    /// offset order). A new producer costs one entry's overhead of the budget.
    pub(crate) fn note_producer(&mut self, producer_id: i64, base_offset: i64) {
        if self.producers.insert(producer_id, base_offset).is_none() {
            self.bytes += ENTRY_OVERHEAD_BYTES;
        }
    }

    /// Base offset of the newest batch of `producer_id`, if the map saw one.
    pub(crate) fn newest_batch_of(&self, producer_id: i64) -> Option<i64> {
        self.producers.get(&producer_id).copied()
    }

    /// The newest offset of `key`, if the map saw it.
    pub(crate) fn newest(&self, key: &[u8]) -> Option<i64> {
        self.entries.get(key).copied()
    }

    /// Number of distinct keys.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Bytes counted so far.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves the map keeps the newest offset per key and admits entries only within its
    // budget (an empty map admits anything).
    #[test]
    fn newest_offset_within_budget() {
        let mut map = OffsetMap::new(2 * OffsetMap::entry_bytes(b"k1"));
        assert!(map.has_room(usize::MAX));
        map.insert(b"k1", 3);
        map.insert(b"k1", 9);
        map.insert(b"k2", 4);
        assert_eq!(map.newest(b"k1"), Some(9));
        assert_eq!(map.newest(b"k3"), None);
        assert_eq!(map.len(), 2);
        assert_eq!(map.bytes(), 2 * OffsetMap::entry_bytes(b"k1"));
        assert!(!map.has_room(1));
        map.note_producer(5, 10);
        map.note_producer(5, 20);
        assert_eq!(map.newest_batch_of(5), Some(20));
        assert_eq!(map.newest_batch_of(6), None);
        assert_eq!(
            map.bytes(),
            2 * OffsetMap::entry_bytes(b"k1") + ENTRY_OVERHEAD_BYTES
        );
    }
}
