//! The record codecs of Kafka batches: compressing a batch's records section and decompressing
//! it with a bounded output, for every codec a Kafka client may use.
//!
//! - gzip: a gzip stream (several members are read as one, as Java's GZIPInputStream does).
//! - snappy: Kafka's Java client frames snappy the way xerial's SnappyOutputStream does: an
//!   16-byte header (`\x82SNAPPY\0`, version 1, compatible version 1), then blocks, each a
//!   big-endian i32 length and a raw snappy block. Some clients write one raw snappy block with
//!   no framing; Kafka reads both, so do we. We write the xerial framing.
//! - lz4: the LZ4 frame format with independent blocks (what Kafka's KafkaLZ4BlockOutputStream
//!   writes and what its reader requires).
//! - zstd: a zstd frame; the window is bounded before the decoder allocates it.
//!
//! Decompression never produces more than `DECOMPRESSED_BYTES_MAX` bytes: a batch claiming more
//! is refused as a decompression bomb.

use std::io::{Read, Write};

use super::record::DECOMPRESSED_BYTES_MAX;
use super::{BatchError, Compression};

/// zstd level used when building compressed batches: libzstd's default, the usual balance of
/// speed and ratio, and what Kafka's producer uses when no level is configured.
pub const ZSTD_LEVEL: i32 = 3;

/// gzip level used when building batches: zlib's default, as Kafka's producer uses.
pub const GZIP_LEVEL: u32 = 6;

/// Largest zstd window accepted, as a power of two. This is libzstd's own default limit
/// (128 MiB): every level a Kafka client can choose fits in it, and larger windows are refused
/// before the decoder allocates them.
const ZSTD_WINDOW_LOG_MAX: u32 = 27;

/// Largest ratio of decompressed to compressed size reserved up front from a declared size;
/// output beyond it still decodes, growing the buffer as it goes.
const RESERVE_RATIO_MAX: usize = 32;

/// The header xerial's SnappyOutputStream writes: magic, version 1, compatible version 1.
const XERIAL_HEADER: [u8; 16] = [
    0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0, 0, 0, 0, 1, 0, 0, 0, 1,
];
/// Bytes of the xerial magic that identify the framing.
const XERIAL_MAGIC_BYTES: usize = 8;
/// Uncompressed bytes per xerial block, as xerial's default block size.
const XERIAL_BLOCK_BYTES: usize = 32 * 1024;

fn failed(operation: &'static str) -> impl Fn(std::io::Error) -> BatchError {
    move |source| BatchError::Compression { operation, source }
}

/// Compresses `records` with `codec`. `Compression::None` returns them as they are.
pub fn compress(codec: Compression, records: &[u8]) -> Result<Vec<u8>, BatchError> {
    match codec {
        Compression::None => Ok(records.to_vec()),
        Compression::Zstd => {
            zstd::bulk::compress(records, ZSTD_LEVEL).map_err(failed("zstd compression"))
        }
        Compression::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(
                Vec::with_capacity(records.len() / 2),
                flate2::Compression::new(GZIP_LEVEL),
            );
            encoder
                .write_all(records)
                .map_err(failed("gzip compression"))?;
            encoder.finish().map_err(failed("gzip compression"))
        }
        Compression::Snappy => snappy_compress(records),
        Compression::Lz4 => {
            let mut encoder =
                lz4_flex::frame::FrameEncoder::new(Vec::with_capacity(records.len() / 2));
            encoder
                .write_all(records)
                .map_err(failed("lz4 compression"))?;
            encoder
                .finish()
                .map_err(|error| failed("lz4 compression")(std::io::Error::other(error)))
        }
    }
}

fn snappy_compress(records: &[u8]) -> Result<Vec<u8>, BatchError> {
    let mut out = Vec::with_capacity(XERIAL_HEADER.len() + records.len() / 2);
    out.extend_from_slice(&XERIAL_HEADER);
    let mut encoder = snap::raw::Encoder::new();
    for block in records.chunks(XERIAL_BLOCK_BYTES) {
        let compressed = encoder
            .compress_vec(block)
            .map_err(|error| failed("snappy compression")(std::io::Error::other(error)))?;
        // A block is at most XERIAL_BLOCK_BYTES before compression, so its length fits.
        out.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
        out.extend_from_slice(&compressed);
    }
    Ok(out)
}

/// Decompresses a records section compressed with `codec` (not `None`), refusing output past
/// `DECOMPRESSED_BYTES_MAX`.
pub fn decompress(codec: Compression, payload: &[u8]) -> Result<Vec<u8>, BatchError> {
    match codec {
        Compression::None => Ok(payload.to_vec()),
        Compression::Zstd => zstd_decompress(payload),
        Compression::Gzip => bounded_read(
            flate2::read::MultiGzDecoder::new(payload),
            payload.len(),
            "gzip decompression",
        ),
        Compression::Snappy => snappy_decompress(payload),
        Compression::Lz4 => bounded_read(
            lz4_flex::frame::FrameDecoder::new(payload),
            payload.len(),
            "lz4 decompression",
        ),
    }
}

/// Reads `decoder` to its end into a buffer, refusing more than `DECOMPRESSED_BYTES_MAX`.
fn bounded_read(
    decoder: impl Read,
    compressed_bytes: usize,
    operation: &'static str,
) -> Result<Vec<u8>, BatchError> {
    let reserve = compressed_bytes
        .saturating_mul(4)
        .min(DECOMPRESSED_BYTES_MAX);
    let mut out = Vec::with_capacity(reserve);
    // Reading one byte past the limit tells "exactly at the limit" from "over it".
    let limit = DECOMPRESSED_BYTES_MAX as u64 + 1;
    decoder
        .take(limit)
        .read_to_end(&mut out)
        .map_err(failed(operation))?;
    if out.len() > DECOMPRESSED_BYTES_MAX {
        return Err(BatchError::DecompressedTooLarge {
            max: DECOMPRESSED_BYTES_MAX,
        });
    }
    Ok(out)
}

fn zstd_decompress(payload: &[u8]) -> Result<Vec<u8>, BatchError> {
    let mut decoder =
        zstd::stream::read::Decoder::with_buffer(payload).map_err(failed("zstd decompression"))?;
    decoder
        .window_log_max(ZSTD_WINDOW_LOG_MAX)
        .map_err(failed("zstd decompression"))?;
    // Start with room for the size the frame declares (zstd writes it), so the output does not
    // regrow and move; the declaration is untrusted, hence bounded by the input's size too.
    let declared = zstd::zstd_safe::get_frame_content_size(payload)
        .ok()
        .flatten()
        .unwrap_or(0);
    let reserve = usize::try_from(declared)
        .unwrap_or(usize::MAX)
        .min(DECOMPRESSED_BYTES_MAX)
        .min(payload.len().saturating_mul(RESERVE_RATIO_MAX));
    let mut out = Vec::with_capacity(reserve);
    let limit = DECOMPRESSED_BYTES_MAX as u64 + 1;
    decoder
        .take(limit)
        .read_to_end(&mut out)
        .map_err(failed("zstd decompression"))?;
    if out.len() > DECOMPRESSED_BYTES_MAX {
        return Err(BatchError::DecompressedTooLarge {
            max: DECOMPRESSED_BYTES_MAX,
        });
    }
    Ok(out)
}

fn snappy_error(error: snap::Error) -> BatchError {
    failed("snappy decompression")(std::io::Error::other(error))
}

fn snappy_decompress(payload: &[u8]) -> Result<Vec<u8>, BatchError> {
    if payload.len() < XERIAL_HEADER.len()
        || payload[..XERIAL_MAGIC_BYTES] != XERIAL_HEADER[..XERIAL_MAGIC_BYTES]
    {
        let mut out = Vec::new();
        snappy_block_into(payload, &mut out)?;
        return Ok(out);
    }
    let mut out = Vec::new();
    let mut rest = &payload[XERIAL_HEADER.len()..];
    while !rest.is_empty() {
        let Some((length, tail)) = rest.split_first_chunk::<4>() else {
            return Err(snappy_error(snap::Error::Header));
        };
        let length = u32::from_be_bytes(*length) as usize;
        if length > tail.len() {
            return Err(snappy_error(snap::Error::Header));
        }
        let (block, tail) = tail.split_at(length);
        snappy_block_into(block, &mut out)?;
        rest = tail;
    }
    Ok(out)
}

/// Appends one raw snappy block's output to `out`, refusing it before decompression when its
/// declared length would take `out` past `DECOMPRESSED_BYTES_MAX`.
fn snappy_block_into(block: &[u8], out: &mut Vec<u8>) -> Result<(), BatchError> {
    let length = snap::raw::decompress_len(block).map_err(snappy_error)?;
    if out.len().saturating_add(length) > DECOMPRESSED_BYTES_MAX {
        return Err(BatchError::DecompressedTooLarge {
            max: DECOMPRESSED_BYTES_MAX,
        });
    }
    let start = out.len();
    out.resize(start + length, 0);
    let written = snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(snappy_error)?;
    out.truncate(start + written);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CODECS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    // Proves every codec round-trips empty, small, block-spanning and incompressible inputs.
    #[test]
    fn every_codec_round_trips() {
        let noise: Vec<u8> = (0..100_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let inputs: [&[u8]; 4] = [b"", b"hello", &[7u8; 100_000], &noise];
        for codec in CODECS {
            for input in inputs {
                let compressed = compress(codec, input).unwrap();
                assert_eq!(decompress(codec, &compressed).unwrap(), input, "{codec:?}");
            }
        }
    }

    // Proves an unframed raw snappy block (what some clients write) decodes like the xerial
    // framing, and a framed block whose length overruns the payload is refused.
    #[test]
    fn snappy_reads_raw_blocks_and_refuses_overruns() {
        let raw = snap::raw::Encoder::new()
            .compress_vec(b"raw snappy")
            .unwrap();
        assert_eq!(snappy_decompress(&raw).unwrap(), b"raw snappy");
        let mut framed = compress(Compression::Snappy, b"framed").unwrap();
        framed[XERIAL_HEADER.len() + 3] = 0xff;
        assert!(decompress(Compression::Snappy, &framed).is_err());
    }

    // Proves a decompression bomb is refused at DECOMPRESSED_BYTES_MAX for every codec.
    #[test]
    fn bombs_are_refused() {
        let big = vec![0u8; DECOMPRESSED_BYTES_MAX + 1];
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let compressed = compress(codec, &big).unwrap();
            assert!(
                matches!(
                    decompress(codec, &compressed),
                    Err(BatchError::DecompressedTooLarge { .. })
                ),
                "{codec:?}"
            );
        }
    }

    // Proves garbage payloads are refused with an error for every codec, never a panic.
    #[test]
    fn garbage_is_refused() {
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            for garbage in [&b""[..], b"\x00", b"not compressed at all", &[0xff; 64]] {
                if let Ok(out) = decompress(codec, garbage) {
                    // An empty snappy block or empty lz4 frame may legitimately be nothing.
                    assert!(out.is_empty(), "{codec:?} decoded garbage to {out:?}");
                }
            }
        }
    }
}
