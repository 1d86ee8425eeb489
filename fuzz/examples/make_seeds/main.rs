//! Writes the seed corpus of every fuzz target into `fuzz/seeds/<target>/` (or under the
//! directory given as the first argument). The output is deterministic, so rerunning it only
//! changes files when a codec's output changes.
//!
//! File name prefixes tell the replay tests what to expect:
//! - `batch_parse` (`storage/tests/batch_fuzz_replay.rs`): `valid-` every batch in the file
//!   validates and decodes; `undecodable-` the batch validates but its records do not decode;
//!   `invalid-` the file fails validation or BatchIter reports an error somewhere in it.
//! - `frame_decoder` (`net/tests/fuzz_replay.rs`): `frames-` decodes to frames with nothing
//!   left over; `partial-` decodes without error but leaves an incomplete frame; `error-` ends
//!   in a decoder error.
//! - `control_body` (`net/tests/fuzz_replay.rs`): `valid-` validates; `invalid-` is refused.
//! - `recovery` (`storage/tests/recovery_fuzz_replay.rs`): `recovered-` opens; `scanned-`
//!   opens, fully scanned, to a shorter log; `refused-` is refused.

mod net_seeds;
mod recovery_seeds;

use std::io;
use std::path::{Path, PathBuf};

use sluice_storage::batch::{refresh_crc, stamp, BatchBuilder, BatchError, Compression};

/// Position of the attributes field in the batch header.
const ATTRIBUTES_AT: usize = 21;
/// Position of the recordsCount field in the batch header.
const RECORDS_COUNT_AT: usize = 57;
/// Position of the batchLength field in the batch header.
const BATCH_LENGTH_AT: usize = 8;
/// Position of the magic byte in the batch header.
const MAGIC_AT: usize = 16;

fn main() -> io::Result<()> {
    let root = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("seeds"));
    write_seeds(&root, "batch_parse", seeds().map_err(io::Error::other)?)?;
    write_seeds(&root, "frame_decoder", net_seeds::frame_decoder())?;
    write_seeds(&root, "control_body", net_seeds::control_body())?;
    write_seeds(&root, "recovery", recovery_seeds::recovery())?;
    Ok(())
}

fn write_seeds(root: &Path, target: &str, seeds: Vec<(&'static str, Vec<u8>)>) -> io::Result<()> {
    let dir = root.join(target);
    std::fs::create_dir_all(&dir)?;
    for (name, bytes) in &seeds {
        std::fs::write(dir.join(name), bytes)?;
    }
    println!("wrote {} seeds to {}", seeds.len(), dir.display());
    Ok(())
}

fn seeds() -> Result<Vec<(&'static str, Vec<u8>)>, BatchError> {
    let single = single_record()?;
    let mixed = mixed_records(Compression::None)?;
    let zstd = mixed_records(Compression::Zstd)?;
    let mut log = Vec::new();
    for (index, batch) in [&single, &zstd, &mixed].into_iter().enumerate() {
        let mut batch = batch.clone();
        stamp(&mut batch, 100 + 10 * index as i64, 3)?;
        log.extend_from_slice(&batch);
    }
    let producer = producer_batch()?;

    let mut bad_crc = mixed.clone();
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 0x40;
    let truncated = zstd[..zstd.len() - 3].to_vec();
    let mut old_magic = single.clone();
    old_magic[MAGIC_AT] = 1;
    let mut short_length = single.clone();
    short_length[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&10i32.to_be_bytes());
    let mut torn_log = log.clone();
    torn_log.extend_from_slice(&mixed[..mixed.len() / 2]);

    let mut count_mismatch = mixed.clone();
    count_mismatch[RECORDS_COUNT_AT..RECORDS_COUNT_AT + 4].copy_from_slice(&9i32.to_be_bytes());
    refresh_crc(&mut count_mismatch)?;
    let mut lz4 = mixed.clone();
    lz4[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&Compression::Lz4.code().to_be_bytes());
    refresh_crc(&mut lz4)?;

    Ok(vec![
        ("valid-single.bin", single),
        ("valid-mixed-none.bin", mixed),
        ("valid-mixed-zstd.bin", zstd),
        ("valid-log-of-three.bin", log),
        ("valid-producer.bin", producer),
        ("undecodable-count-mismatch.bin", count_mismatch),
        ("undecodable-lz4.bin", lz4),
        ("invalid-empty.bin", Vec::new()),
        ("invalid-bad-crc.bin", bad_crc),
        ("invalid-truncated.bin", truncated),
        ("invalid-old-magic.bin", old_magic),
        ("invalid-short-length.bin", short_length),
        ("invalid-torn-log.bin", torn_log),
    ])
}

fn single_record() -> Result<Vec<u8>, BatchError> {
    let mut builder = BatchBuilder::new(Compression::None);
    builder.push(1_700_000_000_000, Some(b"key"), Some(b"value"), &[]);
    Ok(builder.build()?.to_vec())
}

/// Records covering null and empty keys, values and header values.
fn mixed_records(compression: Compression) -> Result<Vec<u8>, BatchError> {
    let mut builder = BatchBuilder::new(compression);
    builder.push(
        1_700_000_000_000,
        None,
        Some(b"tombstone follows"),
        &[("trace", Some(b"abc"))],
    );
    builder.push(1_700_000_000_007, Some(b"k"), None, &[]);
    builder.push(
        1_699_999_999_990,
        Some(b""),
        Some(b""),
        &[("", None), ("h", Some(b""))],
    );
    builder.push(1_700_000_000_003, Some(b"repeat"), Some(&[b'x'; 200]), &[]);
    Ok(builder.build()?.to_vec())
}

fn producer_batch() -> Result<Vec<u8>, BatchError> {
    let mut builder = BatchBuilder::new(Compression::Zstd).with_producer(4242, 3, 17);
    for index in 0..5u8 {
        builder.push(
            1_700_000_000_000 + i64::from(index),
            Some(&[index]),
            Some(&[index; 40]),
            &[],
        );
    }
    Ok(builder.build()?.to_vec())
}
