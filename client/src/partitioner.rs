//! Partition choice: Kafka's murmur2 key hash, sticky and round-robin choice for the rest.
//! Pure functions and state, no I/O, so the producer's choices are tested directly.

use std::collections::HashMap;
use std::rc::Rc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::config::Partitioner;

/// Kafka's seed for murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`).
const MURMUR2_SEED: u32 = 0x9747_b28c;
/// Kafka's murmur2 multiplier.
const MURMUR2_MULTIPLIER: u32 = 0x5bd1_e995;
/// Kafka's murmur2 shift.
const MURMUR2_SHIFT: u32 = 24;

/// Kafka's murmur2 hash of `key`, bit for bit what the Java client computes, so a keyed record
/// lands on the same partition whichever client produced it.
pub fn murmur2(key: &[u8]) -> i32 {
    // Java's int arithmetic wraps and `>>>` is a logical shift: u32 with wrapping ops is the
    // same computation. The length is truncated to 32 bits exactly as Java's int is.
    let mut hash = MURMUR2_SEED ^ key.len() as u32;
    let mut chunks = key.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(MURMUR2_MULTIPLIER);
        k ^= k >> MURMUR2_SHIFT;
        k = k.wrapping_mul(MURMUR2_MULTIPLIER);
        hash = hash.wrapping_mul(MURMUR2_MULTIPLIER);
        hash ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        hash ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        hash ^= u32::from(tail[1]) << 8;
    }
    if let Some(&first) = tail.first() {
        hash ^= u32::from(first);
        hash = hash.wrapping_mul(MURMUR2_MULTIPLIER);
    }
    hash ^= hash >> 13;
    hash = hash.wrapping_mul(MURMUR2_MULTIPLIER);
    hash ^= hash >> 15;
    hash as i32
}

/// The partition Kafka's default partitioner picks for `key`:
/// `(murmur2(key) & 0x7fffffff) % partitions`. `partitions` must be positive.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    debug_assert!(partitions > 0, "partition count must be positive");
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

/// The producer's per-topic partition choice state.
#[derive(Debug)]
pub(crate) struct PartitionChooser {
    mode: Partitioner,
    /// Default mode: the partition unkeyed records of each topic currently stick to.
    sticky: HashMap<Rc<str>, i32>,
    /// RoundRobin mode: the next partition of each topic.
    next: HashMap<Rc<str>, u32>,
    random: StdRng,
}

impl PartitionChooser {
    /// A chooser with a random seed.
    pub(crate) fn new(mode: Partitioner) -> Self {
        Self::with_seed(mode, rand::random())
    }

    /// A chooser whose random choices are reproducible (tests).
    pub(crate) fn with_seed(mode: Partitioner, seed: u64) -> Self {
        PartitionChooser {
            mode,
            sticky: HashMap::new(),
            next: HashMap::new(),
            random: StdRng::seed_from_u64(seed),
        }
    }

    /// The partition for a record of `topic` (which has `partitions` partitions) that named no
    /// partition itself.
    pub(crate) fn choose(&mut self, topic: &Rc<str>, key: Option<&[u8]>, partitions: i32) -> i32 {
        let partitions = partitions.max(1);
        match (self.mode, key) {
            (Partitioner::Default, Some(key)) => partition_for_key(key, partitions),
            (Partitioner::Default, None) => self.sticky_partition(topic, partitions),
            (Partitioner::RoundRobin, _) => {
                let next = self.next.entry(Rc::clone(topic)).or_insert(0);
                let chosen = (*next % partitions as u32) as i32;
                *next = next.wrapping_add(1);
                chosen
            }
        }
    }

    /// Called when the open batch of `topic`/`partition` was closed: unkeyed records of that
    /// topic move to another partition, so every partition gets full batches in turn.
    pub(crate) fn batch_closed(&mut self, topic: &str, partition: i32, partitions: i32) {
        if self.mode != Partitioner::Default || partitions <= 1 {
            return;
        }
        let Some(current) = self.sticky.get_mut(topic) else {
            return;
        };
        if *current != partition {
            return;
        }
        // Pick among the other partitions uniformly: skip over the current one.
        let pick = self.random.gen_range(0..partitions - 1);
        *current = if pick >= partition { pick + 1 } else { pick };
    }

    fn sticky_partition(&mut self, topic: &Rc<str>, partitions: i32) -> i32 {
        if let Some(&current) = self.sticky.get(&**topic) {
            if current < partitions {
                return current;
            }
        }
        let chosen = self.random.gen_range(0..partitions);
        self.sticky.insert(Rc::clone(topic), chosen);
        chosen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves murmur2 matches Kafka's Java client by comparing against the vectors from its
    // UtilsTest (and a few lengths covering every tail size).
    #[test]
    fn murmur2_matches_kafka_vectors() {
        let vectors: [(&str, i32); 6] = [
            ("21", -973_932_308),
            ("foobar", -790_332_482),
            ("a-little-bit-long-string", -985_981_536),
            ("a-little-bit-longer-string", -1_486_304_829),
            (
                "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            ("abc", 479_470_107),
        ];
        for (key, expected) in vectors {
            assert_eq!(murmur2(key.as_bytes()), expected, "murmur2({key:?})");
        }
    }

    // Proves partition_for_key is the positive hash modulo the count, within range, for a
    // known key (Kafka maps "foobar" with 3 partitions to (−790332482 & 0x7fffffff) % 3).
    #[test]
    fn partition_for_key_is_positive_hash_mod_count() {
        let expected = (-790_332_482_i32 & 0x7fff_ffff) % 3;
        assert_eq!(partition_for_key(b"foobar", 3), expected);
        for count in 1..50 {
            let partition = partition_for_key(b"some key", count);
            assert!((0..count).contains(&partition));
        }
    }

    // Proves keyed records spread over all partitions roughly evenly: 10k distinct keys over 8
    // partitions leave no partition with less than half its fair share.
    #[test]
    fn keyed_records_spread_over_partitions() {
        let partitions = 8;
        let mut counts = vec![0_u32; partitions as usize];
        let mut chooser = PartitionChooser::with_seed(Partitioner::Default, 1);
        let topic: Rc<str> = Rc::from("t");
        for index in 0..10_000 {
            let key = format!("key-{index}");
            counts[chooser.choose(&topic, Some(key.as_bytes()), partitions) as usize] += 1;
        }
        for (partition, count) in counts.iter().enumerate() {
            assert!(
                *count > 10_000 / 8 / 2,
                "partition {partition} got only {count}"
            );
        }
    }

    // Proves the same key always maps to the same partition, whatever came before.
    #[test]
    fn same_key_same_partition() {
        let topic: Rc<str> = Rc::from("t");
        let mut chooser = PartitionChooser::with_seed(Partitioner::Default, 7);
        let first = chooser.choose(&topic, Some(b"user-42"), 12);
        chooser.choose(&topic, None, 12);
        chooser.batch_closed("t", first, 12);
        assert_eq!(chooser.choose(&topic, Some(b"user-42"), 12), first);
    }

    // Proves unkeyed records stick to one partition until its batch closes, then move to a
    // different one, and that over many closes every partition is used.
    #[test]
    fn sticky_partition_moves_on_batch_close() {
        let topic: Rc<str> = Rc::from("t");
        let mut chooser = PartitionChooser::with_seed(Partitioner::Default, 3);
        let first = chooser.choose(&topic, None, 4);
        for _ in 0..100 {
            assert_eq!(chooser.choose(&topic, None, 4), first);
        }
        // A batch of another partition closing does not move the sticky choice.
        chooser.batch_closed("t", (first + 1) % 4, 4);
        assert_eq!(chooser.choose(&topic, None, 4), first);
        chooser.batch_closed("t", first, 4);
        let second = chooser.choose(&topic, None, 4);
        assert_ne!(second, first);
        let mut seen = [false; 4];
        for _ in 0..200 {
            let current = chooser.choose(&topic, None, 4);
            seen[current as usize] = true;
            chooser.batch_closed("t", current, 4);
        }
        assert!(
            seen.iter().all(|used| *used),
            "sticky choice never used some partition"
        );
    }

    // Proves round-robin cycles through every partition in order, keyed or not.
    #[test]
    fn round_robin_cycles_in_order() {
        let topic: Rc<str> = Rc::from("t");
        let mut chooser = PartitionChooser::new(Partitioner::RoundRobin);
        let chosen: Vec<i32> = (0..7)
            .map(|index| chooser.choose(&topic, (index % 2 == 0).then_some(&b"k"[..]), 3))
            .collect();
        assert_eq!(chosen, vec![0, 1, 2, 0, 1, 2, 0]);
    }
}
