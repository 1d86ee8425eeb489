//! Small metadata files beside the segments, always replaced atomically (temp file, fsync,
//! rename, fsync of the directory), and the leader-epoch cache they persist.
//!
//! `leader-epoch-checkpoint` uses Kafka's text format: a version line (0), a count line, then one
//! "epoch start_offset" line per entry. `recovery-point-offset-checkpoint` uses the same layout
//! with a single entry holding the offset below which every byte was fsynced (Kafka keeps one
//! such file per data directory with topic and partition columns; ours lives in the partition's
//! own directory, so the entry is just the offset). `replication-offset-checkpoint` holds the
//! replica's high watermark the same way (Kafka's file of that name, per partition here).
//!
//! `partition.metadata` is Kafka's file of that name: `version: 0` and `topic_id: <id>` lines
//! naming the topic incarnation (KIP-516) the directory belongs to, so a replica never mistakes
//! the log of a deleted topic for the log of a new topic with the same name.

use std::{
    fs::File,
    io::{self, Write},
    path::Path,
};

/// File name of the leader-epoch checkpoint.
pub(crate) const LEADER_EPOCH_FILE: &str = "leader-epoch-checkpoint";
/// File name of the recovery-point checkpoint.
pub(crate) const RECOVERY_POINT_FILE: &str = "recovery-point-offset-checkpoint";
/// File name of the high-watermark checkpoint.
pub(crate) const HIGH_WATERMARK_FILE: &str = "replication-offset-checkpoint";
/// File name of the partition metadata (the topic id).
pub const PARTITION_METADATA_FILE: &str = "partition.metadata";
/// Version of the partition metadata format written by this build.
const PARTITION_METADATA_VERSION: u32 = 0;
/// Largest partition metadata file read back.
const PARTITION_METADATA_BYTES_MAX: u64 = 4096;
/// Suffix of the temporary file a checkpoint is written to before the rename.
pub(crate) const TEMP_SUFFIX: &str = ".tmp";
/// Version written in the first line of every checkpoint file.
const CHECKPOINT_VERSION: u32 = 0;
/// Largest checkpoint file read back; a bigger one is corrupt (epochs number in the thousands).
const CHECKPOINT_BYTES_MAX: u64 = 16 << 20;

/// Replaces `dir/name` with `bytes` so that a crash leaves either the old or the new file.
pub(crate) fn atomic_write(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    replace_file(dir, name, bytes, true)
}

/// Replaces `dir/name` with `bytes` through a temporary file and a rename. With `durable` the
/// new file and the rename are fsynced first, so a crash leaves the old or the new file; without
/// it a crash may also leave an empty or missing file, which readers of hint-only files (the
/// high watermark) treat as absent.
pub(crate) fn replace_file(dir: &Path, name: &str, bytes: &[u8], durable: bool) -> io::Result<()> {
    let final_path = dir.join(name);
    let temp_path = dir.join(format!("{name}{TEMP_SUFFIX}"));
    {
        let mut file = File::create(&temp_path)?;
        file.write_all(bytes)?;
        if durable {
            file.sync_all()?;
        }
    }
    std::fs::rename(&temp_path, &final_path)?;
    if durable {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Fsyncs a directory so that file creations, renames and removals in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Reads a checkpoint file's entry lines; `Ok(None)` when the file does not exist.
pub(crate) fn read_entries(path: &Path) -> io::Result<Option<Vec<Vec<i64>>>> {
    let text = match std::fs::metadata(path) {
        Ok(meta) if meta.len() > CHECKPOINT_BYTES_MAX => {
            return Err(invalid(format!("{} bytes is too large", meta.len())));
        }
        Ok(_) => std::fs::read_to_string(path)?,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    let mut lines = text.lines();
    let version: u32 = parse_field(lines.next(), "version")?;
    if version != CHECKPOINT_VERSION {
        return Err(invalid(format!("unknown version {version}")));
    }
    let count: usize = parse_field(lines.next(), "count")?;
    let mut entries = Vec::new();
    for line in lines.by_ref().take(count) {
        let fields = line
            .split_whitespace()
            .map(|field| field.parse::<i64>())
            .collect::<Result<Vec<i64>, _>>()
            .map_err(|error| invalid(format!("bad entry {line:?}: {error}")))?;
        entries.push(fields);
    }
    if entries.len() != count || lines.any(|line| !line.trim().is_empty()) {
        return Err(invalid(format!("expected exactly {count} entries")));
    }
    Ok(Some(entries))
}

fn parse_field<T: std::str::FromStr>(line: Option<&str>, what: &str) -> io::Result<T> {
    line.and_then(|line| line.trim().parse().ok())
        .ok_or_else(|| invalid(format!("missing or bad {what} line")))
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

pub(crate) fn encode(entries: &[String]) -> Vec<u8> {
    let mut text = format!("{CHECKPOINT_VERSION}\n{}\n", entries.len());
    for entry in entries {
        text.push_str(entry);
        text.push('\n');
    }
    text.into_bytes()
}

/// Encodes the recovery-point checkpoint.
pub(crate) fn encode_recovery_point(offset: i64) -> Vec<u8> {
    encode(&[offset.to_string()])
}

/// Reads the recovery point; `None` when the file is missing or unreadable (recovery then
/// scans the whole log, which is slow but always correct).
pub(crate) fn read_recovery_point(dir: &Path) -> Option<i64> {
    read_single_offset(dir, RECOVERY_POINT_FILE)
}

/// Reads the high-watermark checkpoint; `None` when the file is missing or unreadable (the
/// replica then starts from its log start and learns the high watermark again).
pub(crate) fn read_high_watermark(dir: &Path) -> Option<i64> {
    read_single_offset(dir, HIGH_WATERMARK_FILE)
}

/// Reads a checkpoint file holding one offset.
fn read_single_offset(dir: &Path, name: &str) -> Option<i64> {
    match read_entries(&dir.join(name)) {
        Ok(Some(entries)) => match entries.as_slice() {
            [entry] if entry.len() == 1 => Some(entry[0]),
            _ => None,
        },
        Ok(None) => None,
        Err(error) => {
            tracing::warn!(dir = %dir.display(), file = name, %error, "ignoring unreadable checkpoint");
            None
        }
    }
}

/// Reads the topic id `dir`'s partition metadata names: `Ok(None)` when the directory or the
/// file does not exist, an error when the file exists but is not what this build writes.
pub fn read_partition_metadata(dir: &Path) -> io::Result<Option<String>> {
    let path = dir.join(PARTITION_METADATA_FILE);
    let text = match std::fs::metadata(&path) {
        Ok(meta) if meta.len() > PARTITION_METADATA_BYTES_MAX => {
            return Err(invalid(format!("{} bytes is too large", meta.len())));
        }
        Ok(_) => std::fs::read_to_string(&path)?,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    let mut version = None;
    let mut topic_id = None;
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let (key, value) = line
            .split_once(':')
            .ok_or_else(|| invalid(format!("bad line {line:?}")))?;
        match key.trim() {
            "version" => version = value.trim().parse::<u32>().ok(),
            "topic_id" => topic_id = Some(value.trim().to_string()),
            other => return Err(invalid(format!("unknown key {other:?}"))),
        }
    }
    if version != Some(PARTITION_METADATA_VERSION) {
        return Err(invalid(format!("unsupported version {version:?}")));
    }
    match topic_id {
        Some(id) if !id.is_empty() => Ok(Some(id)),
        _ => Err(invalid("no topic_id line".to_string())),
    }
}

/// Writes `dir`'s partition metadata naming `topic_id` (atomically and durably).
pub fn write_partition_metadata(dir: &Path, topic_id: &str) -> io::Result<()> {
    let text = format!("version: {PARTITION_METADATA_VERSION}\ntopic_id: {topic_id}\n");
    atomic_write(dir, PARTITION_METADATA_FILE, text.as_bytes())
}

/// One leader epoch: the epoch and the first offset appended under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

/// Epoch -> start offset map of a replica (Kafka's `LeaderEpochFileCache`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct EpochCache {
    entries: Vec<EpochEntry>,
}

impl EpochCache {
    #[cfg(test)]
    pub(crate) fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub(crate) fn latest(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    /// Records that `epoch` starts at `start_offset` when it is newer than every known epoch.
    /// Negative epochs (batches never stamped by a leader) are not recorded, as in Kafka.
    /// Returns whether the cache changed.
    pub(crate) fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 {
            return false;
        }
        match self.latest() {
            Some(latest) if epoch <= latest.epoch => false,
            Some(latest) if start_offset < latest.start_offset => {
                // An epoch can only start after the previous one did; a lower offset means
                // the caller broke an invariant, which the append path checks beforehand.
                tracing::warn!(
                    epoch,
                    start_offset,
                    ?latest,
                    "ignoring epoch that starts before its predecessor"
                );
                false
            }
            _ => {
                self.entries.push(EpochEntry {
                    epoch,
                    start_offset,
                });
                true
            }
        }
    }

    /// KIP-101/279: the end offset of `epoch` as the leader sees it. For the latest epoch that
    /// is the log end offset; for an older known or unknown epoch below the latest it is the
    /// start offset of the first later epoch, paired with the largest known epoch not above the
    /// request (or the requested epoch itself when it is older than every known epoch). An
    /// epoch above the latest, a negative one, or an empty cache give `None` (Kafka's
    /// UNDEFINED_EPOCH / UNDEFINED_EPOCH_OFFSET).
    pub(crate) fn end_offset_for(&self, epoch: i32, log_end_offset: i64) -> Option<(i32, i64)> {
        if epoch < 0 {
            return None;
        }
        let latest = self.latest()?;
        if latest.epoch == epoch {
            return Some((epoch, log_end_offset));
        }
        let higher_at = self.entries.partition_point(|entry| entry.epoch <= epoch);
        let higher = self.entries.get(higher_at)?;
        match higher_at.checked_sub(1) {
            None => Some((epoch, higher.start_offset)),
            Some(floor_at) => Some((self.entries[floor_at].epoch, higher.start_offset)),
        }
    }

    /// Drops epochs starting at or after `end_offset` (the log was truncated there).
    pub(crate) fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let keep = self
            .entries
            .partition_point(|entry| entry.start_offset < end_offset);
        let changed = keep != self.entries.len();
        self.entries.truncate(keep);
        changed
    }

    /// Drops epochs that ended before `start_offset` (retention moved the log start), keeping
    /// the one covering `start_offset` with its start moved up to it, as Kafka does.
    pub(crate) fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        let below = self
            .entries
            .partition_point(|entry| entry.start_offset < start_offset);
        if below == 0 {
            return false;
        }
        let covering = self.entries[below - 1];
        self.entries.drain(..below);
        self.entries.insert(
            0,
            EpochEntry {
                epoch: covering.epoch,
                start_offset,
            },
        );
        true
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let lines: Vec<String> = self
            .entries
            .iter()
            .map(|entry| format!("{} {}", entry.epoch, entry.start_offset))
            .collect();
        encode(&lines)
    }

    /// Reads the leader-epoch checkpoint; a missing file is an empty cache. Entries must have
    /// strictly increasing epochs and non-decreasing start offsets.
    pub(crate) fn read(dir: &Path) -> io::Result<EpochCache> {
        let Some(lines) = read_entries(&dir.join(LEADER_EPOCH_FILE))? else {
            return Ok(EpochCache::default());
        };
        let mut cache = EpochCache::default();
        for fields in lines {
            let [epoch, start_offset] = fields.as_slice() else {
                return Err(invalid(format!("bad entry {fields:?}")));
            };
            let epoch = i32::try_from(*epoch).map_err(|_| invalid(format!("bad epoch {epoch}")))?;
            let follows = cache
                .latest()
                .is_none_or(|latest| epoch > latest.epoch && *start_offset >= latest.start_offset);
            if epoch < 0 || !follows {
                return Err(invalid(format!(
                    "entry {epoch} {start_offset} out of order"
                )));
            }
            cache.entries.push(EpochEntry {
                epoch,
                start_offset: *start_offset,
            });
        }
        Ok(cache)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> EpochCache {
        let mut cache = EpochCache::default();
        for (epoch, start) in entries {
            assert!(cache.assign(*epoch, *start));
        }
        cache
    }

    // Proves end_offset_for follows Kafka's LeaderEpochFileCache.endOffsetFor case by case.
    #[test]
    fn end_offset_for_matches_kafka() {
        let epochs = cache(&[(2, 10), (4, 30), (7, 55)]);
        assert_eq!(epochs.end_offset_for(7, 80), Some((7, 80)));
        assert_eq!(epochs.end_offset_for(4, 80), Some((4, 55)));
        assert_eq!(epochs.end_offset_for(5, 80), Some((4, 55)));
        assert_eq!(epochs.end_offset_for(3, 80), Some((2, 30)));
        assert_eq!(epochs.end_offset_for(1, 80), Some((1, 10)));
        assert_eq!(epochs.end_offset_for(8, 80), None);
        assert_eq!(epochs.end_offset_for(-1, 80), None);
        assert_eq!(EpochCache::default().end_offset_for(0, 5), None);
    }

    // Proves truncation from either end keeps exactly the epochs that still cover the log.
    #[test]
    fn truncation_from_both_ends() {
        let mut epochs = cache(&[(2, 10), (4, 30), (7, 55)]);
        assert!(epochs.truncate_from_end(55));
        assert_eq!(
            epochs.latest(),
            Some(EpochEntry {
                epoch: 4,
                start_offset: 30
            })
        );
        assert!(epochs.truncate_from_start(35));
        assert_eq!(
            epochs.entries(),
            &[EpochEntry {
                epoch: 4,
                start_offset: 35
            }]
        );
        assert!(!epochs.assign(3, 40));
        assert!(!epochs.assign(-1, 40));
    }

    // Proves the text format round-trips through an atomic write and a malformed file is refused.
    #[test]
    fn checkpoint_files_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let epochs = cache(&[(0, 0), (3, 100)]);
        atomic_write(dir.path(), LEADER_EPOCH_FILE, &epochs.encode()).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join(LEADER_EPOCH_FILE)).unwrap(),
            "0\n2\n0 0\n3 100\n"
        );
        assert_eq!(EpochCache::read(dir.path()).unwrap(), epochs);
        atomic_write(dir.path(), RECOVERY_POINT_FILE, &encode_recovery_point(42)).unwrap();
        assert_eq!(read_recovery_point(dir.path()), Some(42));
        replace_file(
            dir.path(),
            HIGH_WATERMARK_FILE,
            &encode_recovery_point(41),
            false,
        )
        .unwrap();
        assert_eq!(read_high_watermark(dir.path()), Some(41));
        std::fs::write(dir.path().join(HIGH_WATERMARK_FILE), "").unwrap();
        assert_eq!(
            read_high_watermark(dir.path()),
            None,
            "a torn file is no checkpoint"
        );
        std::fs::write(dir.path().join(LEADER_EPOCH_FILE), "0\n2\n3 0\n1 5\n").unwrap();
        assert!(EpochCache::read(dir.path()).is_err());
    }

    // Proves the partition metadata file is Kafka's layout, round-trips, is absent for a
    // missing directory, and is refused when it is not what this build writes.
    #[test]
    fn partition_metadata_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            read_partition_metadata(&dir.path().join("none")).unwrap(),
            None
        );
        assert_eq!(read_partition_metadata(dir.path()).unwrap(), None);
        write_partition_metadata(dir.path(), "AAAAAAAAAAAAAAAAAAAAAQ").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join(PARTITION_METADATA_FILE)).unwrap(),
            "version: 0\ntopic_id: AAAAAAAAAAAAAAAAAAAAAQ\n"
        );
        assert_eq!(
            read_partition_metadata(dir.path()).unwrap().as_deref(),
            Some("AAAAAAAAAAAAAAAAAAAAAQ")
        );
        for bad in ["version: 1\ntopic_id: x\n", "version: 0\n", "garbage\n"] {
            std::fs::write(dir.path().join(PARTITION_METADATA_FILE), bad).unwrap();
            assert!(read_partition_metadata(dir.path()).is_err(), "{bad:?}");
        }
    }
}
