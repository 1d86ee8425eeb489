//! Message payloads and keys.
//!
//! Every payload starts with a fixed header: the intended send time (nanoseconds since the run's
//! shared epoch), the producer's sequence number for the partition, and the producer's id, all
//! big-endian. Consumers read it back to compute end-to-end latency and to check that every
//! acknowledged message arrived exactly once. The rest of the payload comes from a pool of bytes
//! built once per run: random bytes of which a chosen fraction is made compressible, or the bytes
//! of a payload file.

use bytes::{BufMut, Bytes, BytesMut};
use rand::{Rng, RngCore, SeedableRng};

use crate::workload::KeyDistribution;

/// Bytes of the header every payload starts with: intended send time (8), sequence (8) and
/// producer id (4).
pub const PAYLOAD_HEADER_BYTES: usize = 20;
/// Bytes of random payload pool shared by a run's producers when the run compresses. Each message
/// copies a window at a different offset, so the messages of one batch (up to about a MiB)
/// differ and a batch compresses like its individual messages do, not like one message repeated.
pub const PAYLOAD_POOL_BYTES: usize = 4 * 1024 * 1024;
/// Bytes of the pool when the run does not compress. Nothing then looks inside a value (the
/// broker never does; OMB sends one payload over and over), and a pool this small stays in the
/// load generator core's cache, 2 MiB of L2 here, beside the batches being filled: copying each
/// payload into its batch, the producer's largest cost, then reads from cache, not memory.
pub const UNCOMPRESSED_POOL_BYTES: usize = 256 * 1024;
/// Bytes of each block in a compressible pool: the block starts with random bytes and ends with
/// zeros, the zero share being the compressible ratio. Blocks this long keep zstd's cost per
/// zero run small next to the run itself, so the compressed size tracks the ratio closely.
pub const COMPRESSIBLE_BLOCK_BYTES: usize = 512;
/// Distinct keys the round-robin key distribution cycles through.
pub const ROUND_ROBIN_KEYS: u64 = 10_000;
/// Bytes of each buffer payloads are cut from (see `PayloadCursor`).
const PAYLOAD_ARENA_BYTES: usize = 256 * 1024;
/// Offset step between consecutive messages' windows into the pool: an odd number of bytes, so
/// windows do not line up with the compressible blocks.
const POOL_STRIDE_BYTES: usize = 4_099;

/// The header every payload starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadHeader {
    /// When the message was meant to be sent, in ns since the run's epoch.
    pub intended_ns: u64,
    /// The producer's sequence number for this partition, from 0 without gaps.
    pub sequence: u64,
    /// Run-unique id of the producer that wrote it.
    pub producer_id: u32,
}

impl PayloadHeader {
    /// Writes the header into the first [`PAYLOAD_HEADER_BYTES`] bytes of `out`.
    ///
    /// # Panics
    /// If `out` is shorter than the header; workload validation rules that out.
    pub fn write(&self, out: &mut [u8]) {
        out[0..8].copy_from_slice(&self.intended_ns.to_be_bytes());
        out[8..16].copy_from_slice(&self.sequence.to_be_bytes());
        out[16..20].copy_from_slice(&self.producer_id.to_be_bytes());
    }

    /// The header's bytes, as [`write`](Self::write) lays them out.
    pub fn to_bytes(&self) -> [u8; PAYLOAD_HEADER_BYTES] {
        let mut bytes = [0; PAYLOAD_HEADER_BYTES];
        self.write(&mut bytes);
        bytes
    }

    /// Reads the header back; `None` if the value is too short to hold one (a message this run did
    /// not write).
    pub fn read(value: &[u8]) -> Option<PayloadHeader> {
        let intended_ns = u64::from_be_bytes(value.get(0..8)?.try_into().ok()?);
        let sequence = u64::from_be_bytes(value.get(8..16)?.try_into().ok()?);
        let producer_id = u32::from_be_bytes(value.get(16..20)?.try_into().ok()?);
        Some(PayloadHeader {
            intended_ns,
            sequence,
            producer_id,
        })
    }
}

/// The bytes payloads are cut from, shared (cheaply cloned) by every producer of a run.
#[derive(Debug, Clone)]
pub struct PayloadPool {
    pool: Bytes,
    message_size: usize,
    rotate: bool,
}

impl PayloadPool {
    /// A pool of random bytes in which `compressible_ratio` of every block is zeros, for a run
    /// whose batches are `compressed` or not.
    pub fn random(
        message_size: usize,
        compressible_ratio: f64,
        seed: u64,
        compressed: bool,
    ) -> PayloadPool {
        let pool_bytes = if compressed {
            PAYLOAD_POOL_BYTES
        } else {
            UNCOMPRESSED_POOL_BYTES
        };
        let pool_bytes = pool_bytes.max(message_size.saturating_mul(2));
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut pool = vec![0u8; pool_bytes];
        let ratio = compressible_ratio.clamp(0.0, 1.0);
        let random_per_block = ((1.0 - ratio) * COMPRESSIBLE_BLOCK_BYTES as f64).round() as usize;
        for block in pool.chunks_mut(COMPRESSIBLE_BLOCK_BYTES) {
            let random = random_per_block.min(block.len());
            rng.fill_bytes(&mut block[..random]);
        }
        PayloadPool {
            pool: Bytes::from(pool),
            message_size,
            rotate: true,
        }
    }

    /// A pool holding `file_bytes` repeated (or cut) to `message_size`: every message carries the
    /// same body, as with OMB's payload files.
    pub fn from_file_bytes(file_bytes: &[u8], message_size: usize) -> PayloadPool {
        let mut pool = Vec::with_capacity(message_size);
        while pool.len() < message_size && !file_bytes.is_empty() {
            let take = (message_size - pool.len()).min(file_bytes.len());
            pool.extend_from_slice(&file_bytes[..take]);
        }
        pool.resize(message_size, 0);
        PayloadPool {
            pool: Bytes::from(pool),
            message_size,
            rotate: false,
        }
    }

    /// Bytes of every message value.
    pub fn message_size(&self) -> usize {
        self.message_size
    }

    /// A cursor over the pool for one producer, starting at a producer-specific offset.
    pub fn cursor(&self, producer_id: u32) -> PayloadCursor {
        let span = self.pool.len() - self.message_size + 1;
        let offset = if self.rotate {
            (producer_id as usize).wrapping_mul(65_537) % span
        } else {
            0
        };
        PayloadCursor {
            pool: self.clone(),
            offset,
            arena: BytesMut::new(),
        }
    }
}

/// Builds one producer's payloads: a window of the pool with the header written over its start.
#[derive(Debug, Clone)]
pub struct PayloadCursor {
    pool: PayloadPool,
    offset: usize,
    /// Payloads are cut from this buffer in turn (one allocation per many messages rather than
    /// one each); once too little of it is left it is reused, or replaced if still shared.
    arena: BytesMut,
}

impl PayloadCursor {
    /// The next payload, carrying `header`, in a buffer of its own.
    pub fn next_payload(&mut self, header: &PayloadHeader) -> Bytes {
        let size = self.pool.message_size;
        if self.arena.capacity() - self.arena.len() < size {
            // Reclaims the whole buffer in place once every payload cut from it was dropped
            // (the producer copies each into its batch), so payloads are written into warm
            // memory; allocates a new one only while some are still held.
            self.arena.reserve(PAYLOAD_ARENA_BYTES.max(size));
        }
        self.arena.put_slice(&header.to_bytes());
        let body = self.advance();
        self.arena.put_slice(&self.pool.pool[body]);
        self.arena.split().freeze()
    }

    /// The body of the next payload: the `message_size - PAYLOAD_HEADER_BYTES` bytes that follow
    /// the header, a window of the pool, borrowed (no copy). A sender that can send a value as
    /// pieces sends the header's bytes and this, and the payload is copied once, into its batch.
    pub fn next_body(&mut self) -> &[u8] {
        let body = self.advance();
        &self.pool.pool[body]
    }

    /// Where the next payload's body lies in the pool; moves on to the one after.
    fn advance(&mut self) -> std::ops::Range<usize> {
        let size = self.pool.message_size;
        let body = self.offset + PAYLOAD_HEADER_BYTES.min(size)..self.offset + size;
        if self.pool.rotate {
            let span = self.pool.pool.len() - size + 1;
            self.offset = (self.offset + POOL_STRIDE_BYTES) % span;
        }
        body
    }
}

/// Produces the keys of one producer's messages.
#[derive(Debug)]
pub struct KeyGenerator {
    distribution: KeyDistribution,
    counter: u64,
    rng: rand::rngs::StdRng,
}

impl KeyGenerator {
    /// A generator for `distribution`, seeded so runs are repeatable.
    pub fn new(distribution: KeyDistribution, seed: u64) -> KeyGenerator {
        KeyGenerator {
            distribution,
            counter: seed % ROUND_ROBIN_KEYS,
            rng: rand::rngs::StdRng::seed_from_u64(seed),
        }
    }

    /// The next message's key, or `None` for unkeyed messages.
    pub fn next_key(&mut self) -> Option<Bytes> {
        match self.distribution {
            KeyDistribution::None => None,
            KeyDistribution::RoundRobin => {
                let key = format!("key-{}", self.counter);
                self.counter = (self.counter + 1) % ROUND_ROBIN_KEYS;
                Some(Bytes::from(key))
            }
            KeyDistribution::Random => Some(Bytes::from(format!("key-{}", self.rng.gen::<u64>()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves the header survives a write/read round trip and that a short value is refused, by
    // writing a header into a payload and reading it back.
    #[test]
    fn header_round_trip() {
        let header = PayloadHeader {
            intended_ns: 123_456_789_012,
            sequence: 42,
            producer_id: 7,
        };
        let mut cursor = PayloadPool::random(100, 0.0, 1, false).cursor(7);
        let payload = cursor.next_payload(&header);
        assert_eq!(payload.len(), 100);
        assert_eq!(PayloadHeader::read(&payload), Some(header));
        assert_eq!(
            PayloadHeader::read(&payload[..PAYLOAD_HEADER_BYTES - 1]),
            None
        );
    }

    // Proves a payload sent as pieces is the payload: the header's bytes followed by the body
    // equal what `next_payload` builds at the same cursor position, message after message.
    #[test]
    fn header_and_body_pieces_make_the_payload() {
        let pool = PayloadPool::random(1024, 0.5, 11, true);
        let mut whole = pool.cursor(3);
        let mut pieces = pool.cursor(3);
        for sequence in 0..10 {
            let header = PayloadHeader {
                intended_ns: sequence * 7,
                sequence,
                producer_id: 3,
            };
            let mut joined = header.to_bytes().to_vec();
            joined.extend_from_slice(pieces.next_body());
            assert_eq!(joined, whole.next_payload(&header));
        }
    }

    // Proves the compressible ratio is honoured: zstd shrinks a batch of payloads to about
    // (1 - ratio) of its size, for several ratios, by compressing 64 consecutive payloads.
    #[test]
    fn compressible_ratio_controls_zstd_size() {
        for ratio in [0.0, 0.3, 0.5, 0.8] {
            let pool = PayloadPool::random(1024, ratio, 9, true);
            let mut cursor = pool.cursor(0);
            let mut batch = Vec::new();
            for sequence in 0..64 {
                let header = PayloadHeader {
                    intended_ns: sequence * 1000,
                    sequence,
                    producer_id: 0,
                };
                batch.extend_from_slice(&cursor.next_payload(&header));
            }
            let compressed = zstd::encode_all(&batch[..], 3).unwrap();
            let kept = compressed.len() as f64 / batch.len() as f64;
            let expected = 1.0 - ratio;
            assert!(
                (kept - expected).abs() < 0.08,
                "ratio {ratio}: compressed to {kept:.3} of the size, expected about {expected:.3}"
            );
        }
    }

    // Proves consecutive payloads differ (so batches do not compress as one repeated message), by
    // comparing the bodies of two consecutive random payloads.
    #[test]
    fn consecutive_random_payloads_differ() {
        let mut cursor = PayloadPool::random(1024, 0.0, 3, false).cursor(1);
        let header = PayloadHeader {
            intended_ns: 0,
            sequence: 0,
            producer_id: 1,
        };
        let first = cursor.next_payload(&header);
        let second = cursor.next_payload(&header);
        assert_ne!(
            first[PAYLOAD_HEADER_BYTES..],
            second[PAYLOAD_HEADER_BYTES..]
        );
    }

    // Proves the arena is reused only when nothing cut from it is held: a payload kept across
    // two arenas' worth of later payloads keeps its bytes, and once every payload of a full
    // arena was dropped the next one is written at the start of the same buffer.
    #[test]
    fn arena_is_reused_only_once_its_payloads_are_dropped() {
        let size = 1024;
        let per_arena = PAYLOAD_ARENA_BYTES / size;
        let header = PayloadHeader {
            intended_ns: 5,
            sequence: 6,
            producer_id: 7,
        };
        let mut cursor = PayloadPool::random(size, 0.0, 4, false).cursor(2);
        let held = cursor.next_payload(&header);
        let copy = held.to_vec();
        for _ in 0..2 * per_arena {
            drop(cursor.next_payload(&header));
        }
        assert_eq!(held[..], copy[..], "a held payload is never overwritten");

        let mut cursor = PayloadPool::random(size, 0.0, 4, false).cursor(3);
        let first = cursor.next_payload(&header).as_ptr();
        for _ in 1..per_arena {
            drop(cursor.next_payload(&header));
        }
        assert_eq!(cursor.next_payload(&header).as_ptr(), first);
    }

    // Proves a payload file's bytes fill the payload, repeated to the message size, by building a
    // payload from a 7-byte file.
    #[test]
    fn file_bytes_are_tiled() {
        let pool = PayloadPool::from_file_bytes(b"abcdefg", 40);
        let header = PayloadHeader {
            intended_ns: 1,
            sequence: 2,
            producer_id: 3,
        };
        let payload = pool.cursor(5).next_payload(&header);
        assert_eq!(payload.len(), 40);
        assert_eq!(&payload[PAYLOAD_HEADER_BYTES..], b"gabcdefgabcdefgabcde");
    }

    // Proves the key distributions: none gives no key, round-robin cycles through its key set,
    // random keys differ, by drawing keys from each.
    #[test]
    fn key_distributions() {
        assert_eq!(KeyGenerator::new(KeyDistribution::None, 0).next_key(), None);
        let mut round_robin = KeyGenerator::new(KeyDistribution::RoundRobin, 0);
        let keys: Vec<_> = (0..ROUND_ROBIN_KEYS + 1)
            .map(|_| round_robin.next_key().unwrap())
            .collect();
        assert_eq!(keys[0], keys[ROUND_ROBIN_KEYS as usize]);
        assert_ne!(keys[0], keys[1]);
        let mut random = KeyGenerator::new(KeyDistribution::Random, 0);
        assert_ne!(random.next_key(), random.next_key());
    }
}
