//! The cleaner's file I/O, all asynchronous through glommio (io_uring) so a cleaning never
//! blocks the shard's executor on the disk, and all charged to the shard's I/O budget.
//!
//! [`SegmentBatches`] reads a closed segment batch by batch, checking each batch's CRC as it
//! goes (the pair of the check made when it was written). [`CleanedWriter`] writes a cleaned
//! segment to `<base>.log.cleaned` in the log's write mode and builds its indexes.

use std::path::{Path, PathBuf};

use futures_lite::AsyncWriteExt;
use glommio::io::{
    BufferedFile, DmaFile, DmaStreamWriter, DmaStreamWriterBuilder, StreamWriter,
    StreamWriterBuilder,
};

use super::{swap, throttle::IoThrottle};
use crate::{
    batch::{validate_batch, BatchHeader, BATCH_HEADER_BYTES},
    config::{WriteMode, BATCH_BYTES_MAX_LIMIT},
    error::StorageError,
    recovery,
    segment::Segment,
};

/// Writes and fsyncs each (path, bytes) file; their directory entries are made durable by the
/// swap that renames them into place.
fn write_durably(files: &[(PathBuf, Vec<u8>)]) -> Result<(), StorageError> {
    for (path, bytes) in files {
        std::fs::write(path, bytes)
            .and_then(|()| std::fs::File::open(path)?.sync_all())
            .map_err(|source| StorageError::io("write cleaned index", path, source))?;
    }
    Ok(())
}

/// Bytes read at once from a segment being cleaned.
const READ_CHUNK_BYTES: usize = 1 << 20;
/// Buffer of the cleaned-segment writer.
const WRITE_BUFFER_BYTES: usize = 1 << 20;

/// The batches of one closed segment, read in order.
///
/// Reads are buffered in both write modes. O_DIRECT reads would keep the cleaner from
/// pushing hot data out of the page cache, but glommio 0.9 decides whether a device supports
/// polled I/O by reading from the first file opened with O_DIRECT, and the log's first such
/// file is an empty new segment whose read "succeeds" at once; every O_DIRECT read after that
/// goes to the poll ring and fails with EOPNOTSUPP on devices without poll queues.
pub(crate) struct SegmentBatches<'t> {
    file: BufferedFile,
    path: PathBuf,
    size: u64,
    position: u64,
    buffer: Vec<u8>,
    buffer_start: u64,
    /// The next batch's base offset must be at least this.
    expected: i64,
    throttle: &'t IoThrottle,
    bytes_read: u64,
}

impl<'t> SegmentBatches<'t> {
    /// Opens the segment at `path` holding `size` bytes of batches from `base_offset` on.
    pub(crate) async fn open(
        path: &Path,
        size: u64,
        base_offset: i64,
        throttle: &'t IoThrottle,
    ) -> Result<SegmentBatches<'t>, StorageError> {
        let file = BufferedFile::open(path)
            .await
            .map_err(|error| StorageError::io("open segment for cleaning", path, error))?;
        Ok(SegmentBatches {
            file,
            path: path.to_path_buf(),
            size,
            position: 0,
            buffer: Vec::new(),
            buffer_start: 0,
            expected: base_offset,
            throttle,
            bytes_read: 0,
        })
    }

    /// Bytes read from the file so far.
    pub(crate) fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// The next batch (validated, CRC included) and its bytes; `None` at the end.
    pub(crate) async fn next(&mut self) -> Result<Option<(BatchHeader, &[u8])>, StorageError> {
        if self.position >= self.size {
            return Ok(None);
        }
        let position = self.position;
        let head_len = (self.size - position).min(BATCH_HEADER_BYTES as u64) as usize;
        self.fill(position, head_len).await?;
        let header = BatchHeader::parse(self.slice(position, head_len))
            .map_err(|error| StorageError::corrupt(&self.path, position, error.to_string()))?;
        let total = header.total_bytes();
        if total > BATCH_BYTES_MAX_LIMIT || position + total as u64 > self.size {
            return Err(StorageError::corrupt(
                &self.path,
                position,
                format!("batch of {total} bytes does not fit the segment"),
            ));
        }
        self.fill(position, total).await?;
        let header = validate_batch(self.slice(position, total), BATCH_BYTES_MAX_LIMIT)
            .map_err(|error| StorageError::corrupt(&self.path, position, error.to_string()))?;
        if header.base_offset < self.expected {
            return Err(StorageError::corrupt(
                &self.path,
                position,
                format!(
                    "batch has base offset {}, expected at least {}",
                    header.base_offset, self.expected
                ),
            ));
        }
        self.expected = header.last_offset() + 1;
        self.position += total as u64;
        Ok(Some((header, self.slice(position, total))))
    }

    fn slice(&self, position: u64, len: usize) -> &[u8] {
        let from = (position - self.buffer_start) as usize;
        &self.buffer[from..from + len]
    }

    /// Makes `[position, position + len)` available in the buffer.
    async fn fill(&mut self, position: u64, len: usize) -> Result<(), StorageError> {
        let buffer_end = self.buffer_start + self.buffer.len() as u64;
        if position >= self.buffer_start && position + len as u64 <= buffer_end {
            return Ok(());
        }
        let want = (self.size - position).min(len.max(READ_CHUNK_BYTES) as u64) as usize;
        let failed = |error| StorageError::io("read segment for cleaning", &self.path, error);
        let read = self.file.read_at(position, want).await.map_err(failed)?;
        if read.len() < len {
            return Err(StorageError::corrupt(
                &self.path,
                position,
                format!("file ends after {} of {len} bytes", read.len()),
            ));
        }
        self.buffer.clear();
        self.buffer.extend_from_slice(&read);
        self.buffer_start = position;
        self.bytes_read += read.len() as u64;
        self.throttle.consume(read.len() as u64).await;
        Ok(())
    }

    /// Closes the file.
    pub(crate) async fn close(self) {
        // A failed close of a read-only descriptor loses nothing.
        let _ = self.file.close().await;
    }
}

enum Sink {
    Direct(DmaStreamWriter),
    Buffered(StreamWriter),
}

/// Writes one cleaned segment and builds its in-memory view (indexes included).
pub(crate) struct CleanedWriter {
    sink: Sink,
    /// The segment as it will be once swapped in (its final path).
    segment: Segment,
    cleaned_path: PathBuf,
    position: u64,
}

impl CleanedWriter {
    /// Creates (replacing any leftover) `<base>.log.cleaned` in `dir`.
    pub(crate) async fn create(
        dir: &Path,
        base_offset: i64,
        mode: WriteMode,
        index_interval_bytes: u32,
    ) -> Result<CleanedWriter, StorageError> {
        let segment = Segment::new(dir, base_offset, index_interval_bytes);
        let cleaned_path = swap::cleaned_path(dir, base_offset);
        let created = |error| StorageError::io("create cleaned segment", &cleaned_path, error);
        let sink = match mode {
            WriteMode::Direct => {
                let file = DmaFile::create(&cleaned_path).await.map_err(created)?;
                file.truncate(0).await.map_err(created)?;
                Sink::Direct(
                    DmaStreamWriterBuilder::new(file)
                        .with_buffer_size(WRITE_BUFFER_BYTES)
                        .build(),
                )
            }
            WriteMode::Buffered => {
                let file = BufferedFile::create(&cleaned_path).await.map_err(created)?;
                file.truncate(0).await.map_err(created)?;
                Sink::Buffered(
                    StreamWriterBuilder::new(file)
                        .with_buffer_size(WRITE_BUFFER_BYTES)
                        .build(),
                )
            }
        };
        Ok(CleanedWriter {
            sink,
            segment,
            cleaned_path,
            position: 0,
        })
    }

    /// Bytes written so far.
    pub(crate) fn size(&self) -> u64 {
        self.position
    }

    /// Appends one whole, valid batch.
    pub(crate) async fn append(
        &mut self,
        header: &BatchHeader,
        bytes: &[u8],
        throttle: &IoThrottle,
    ) -> Result<(), StorageError> {
        let result = match &mut self.sink {
            Sink::Direct(writer) => writer.write_all(bytes).await,
            Sink::Buffered(writer) => writer.write_all(bytes).await,
        };
        result.map_err(|error| {
            StorageError::io("write cleaned segment", &self.cleaned_path, error)
        })?;
        self.segment.observe(header, self.position);
        self.position += bytes.len() as u64;
        throttle.consume(bytes.len() as u64).await;
        Ok(())
    }

    /// Closes the file with its exact length and writes its indexes beside it, all durably;
    /// returns the segment's view and the path of the cleaned file.
    pub(crate) async fn finish(self) -> Result<(Segment, PathBuf), StorageError> {
        let CleanedWriter {
            sink,
            mut segment,
            cleaned_path,
            ..
        } = self;
        let failed = |error| StorageError::io("close cleaned segment", &cleaned_path, error);
        match sink {
            Sink::Direct(mut writer) => writer.close().await.map_err(failed)?,
            Sink::Buffered(mut writer) => writer.close().await.map_err(failed)?,
        }
        // The direct writer cuts the padded last block after its fdatasync; the file's final
        // length must be durable too before the swap can name this file.
        let path = cleaned_path.clone();
        crate::lanes::background(move || {
            std::fs::File::open(&path).and_then(|file| file.sync_all())
        })
        .await
        .map_err(|error| StorageError::io("fsync cleaned segment", &cleaned_path, error))?;
        let dir = cleaned_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let index_files: Vec<(PathBuf, Vec<u8>)> =
            swap::cleaned_index_paths(&dir, segment.base_offset)
                .into_iter()
                .zip(recovery::sealed_index_files(&mut segment))
                .map(|(path, (_, bytes))| (path, bytes))
                .collect();
        crate::lanes::background(move || write_durably(&index_files)).await?;
        Ok((segment, cleaned_path))
    }

    /// Closes and removes the file (the cleaning of this segment was given up).
    pub(crate) async fn abandon(self) {
        let path = self.cleaned_path.clone();
        let _ = match self.sink {
            Sink::Direct(mut writer) => writer.close().await,
            Sink::Buffered(mut writer) => writer.close().await,
        };
        let _ = crate::log::blocking(move || std::fs::remove_file(path)).await;
    }
}
