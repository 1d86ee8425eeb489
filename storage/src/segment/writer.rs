//! Appending to the active segment file, in either write mode, with appends pipelined: the next
//! append is prepared and its write submitted while earlier writes are still in flight.
//!
//! Each append gets a [`Completion`] and waits for its predecessor's before it is published, so
//! appends become visible strictly in order and an append is acknowledged only when it and
//! every byte before it are in the file. A failed write fails every append behind it (they
//! may depend on its bytes); the log then rewinds the file to the last published byte.
//!
//! Direct mode writes whole blocks of `alignment` bytes from aligned buffers. The partial last
//! block is kept in memory and rewritten, padded with zeros, in front of the next append's
//! bytes. Because that block may still be in flight in the previous append's write, each
//! append is split in two: the `head` (the shared block) is written only once the previous
//! write of that block finished, while the `body` (blocks no earlier write touches) is written
//! at once, in chunks of `DIRECT_WRITE_CHUNK_BYTES` that go to the device concurrently. Only
//! the head waits, and only for one block's write, so appends in flight do not queue behind
//! each other's I/O; they wait for each other only to be published in order.
//! Direct files are preallocated ahead of the writes so the writes do not extend the file
//! (ext4 serialises extending O_DIRECT writes); recovery treats the zero-filled preallocated
//! tail as the end of the log, and closing cuts the file to its exact length.

use std::{
    cell::{Cell, RefCell},
    future::Future,
    path::{Path, PathBuf},
    pin::Pin,
    rc::Rc,
    task::{Context, Poll, Waker},
};

use bytes::{Bytes, BytesMut};
use glommio::io::{BufferedFile, DmaBuffer, DmaFile, OpenOptions};

use crate::{config::WriteMode, error::StorageError};

/// Direct mode preallocates this far ahead of the write position (capped at the segment size).
pub(crate) const PREALLOCATE_BYTES: u64 = 64 << 20;
/// Largest single write of a direct-mode append body; bigger bodies go out as several
/// concurrent writes so one large append keeps several device queues busy.
pub(crate) const DIRECT_WRITE_CHUNK_BYTES: u64 = 256 << 10;
/// Smallest block a direct write covers: the filesystem block, so no write shares a block with
/// another (ext4 serialises sub-block O_DIRECT writes and zeroes around them).
const DIRECT_BLOCK_BYTES_MIN: u64 = 4096;

/// Outcome of one append's write, shared with the append behind it.
#[derive(Debug, Default)]
pub(crate) struct Completion {
    outcome: Cell<Option<bool>>,
    wakers: RefCell<Vec<Waker>>,
}

impl Completion {
    pub(crate) fn new() -> Rc<Completion> {
        Rc::new(Completion::default())
    }

    /// Records the outcome (first call wins) and wakes every waiter.
    pub(crate) fn finish(&self, succeeded: bool) {
        if self.outcome.get().is_none() {
            self.outcome.set(Some(succeeded));
            for waker in self.wakers.borrow_mut().drain(..) {
                waker.wake();
            }
        }
    }

    /// Resolves to true when the append succeeded and was published.
    pub(crate) fn wait(self: &Rc<Self>) -> CompletionWait {
        CompletionWait {
            completion: self.clone(),
        }
    }
}

/// Future of [`Completion::wait`].
pub(crate) struct CompletionWait {
    completion: Rc<Completion>,
}

impl Future for CompletionWait {
    type Output = bool;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<bool> {
        if let Some(succeeded) = self.completion.outcome.get() {
            return Poll::Ready(succeeded);
        }
        let mut wakers = self.completion.wakers.borrow_mut();
        if !wakers.iter().any(|waker| waker.will_wake(context.waker())) {
            wakers.push(context.waker().clone());
        }
        Poll::Pending
    }
}

/// Fails a completion that is dropped unfinished (its task was cancelled), so whoever waits
/// on it aborts instead of waiting forever.
pub(crate) struct FinishOnDrop(pub Rc<Completion>);

impl Drop for FinishOnDrop {
    fn drop(&mut self) {
        self.0.finish(false);
    }
}

/// Waits for the previous append (if any); true when it succeeded.
async fn predecessor_succeeded(previous: Option<Rc<Completion>>) -> bool {
    match previous {
        Some(previous) => previous.wait().await,
        None => true,
    }
}

/// A shared handle on the active file, usable across awaits without borrowing the log state.
#[derive(Debug, Clone)]
pub(crate) enum FileHandle {
    Buffered(Rc<BufferedFile>),
    Direct(Rc<DmaFile>),
}

impl FileHandle {
    pub(crate) async fn fdatasync(&self, path: &Path) -> Result<(), StorageError> {
        let result = match self {
            FileHandle::Buffered(file) => file.fdatasync().await,
            FileHandle::Direct(file) => file.fdatasync().await,
        };
        result.map_err(|error| StorageError::io("fsync segment", path, error))
    }

    pub(crate) async fn truncate(&self, path: &Path, size: u64) -> Result<(), StorageError> {
        let result = match self {
            FileHandle::Buffered(file) => file.truncate(size).await,
            FileHandle::Direct(file) => file.truncate(size).await,
        };
        result.map_err(|error| StorageError::io("truncate segment", path, error))
    }

    /// Closes the descriptor when this is the last handle; otherwise the last holder's drop
    /// closes it.
    pub(crate) async fn close(self, path: &Path) -> Result<(), StorageError> {
        match self {
            FileHandle::Buffered(file) => match Rc::try_unwrap(file) {
                Ok(file) => file.close().await,
                Err(_) => Ok(()),
            },
            FileHandle::Direct(file) => file.close_rc().await.map(|_| ()),
        }
        .map_err(|error| StorageError::io("close segment", path, error))
    }
}

/// The I/O of one append, detached from the log state so it can run while other appends are
/// prepared.
pub(crate) enum WritePlan {
    Buffered {
        file: Rc<BufferedFile>,
        data: Vec<u8>,
        position: u64,
    },
    Direct(DirectPlan),
}

/// The writes of one direct-mode append.
pub(crate) struct DirectPlan {
    file: Rc<DmaFile>,
    /// The block shared with the previous append, and its position.
    head: Option<(DmaBuffer, u64)>,
    /// Blocks only this append touches, in chunks, with their positions.
    body: Vec<(DmaBuffer, u64)>,
    /// The previous write of the head's block.
    previous_tail_block: Option<Rc<Completion>>,
    /// Finished when this append's last block is written.
    tail_block: Rc<Completion>,
}

impl WritePlan {
    /// Performs the writes, waiting before anything that depends on an earlier write. Returns
    /// only after `previous` (the previous append) finished, whatever happened, so appends
    /// finish in order.
    pub(crate) async fn execute(
        self,
        path: &Path,
        previous: Option<Rc<Completion>>,
        base_offset: i64,
    ) -> Result<(), StorageError> {
        let written = match self {
            WritePlan::Buffered {
                file,
                data,
                position,
            } => write_buffered(&file, path, data, position).await,
            WritePlan::Direct(plan) => plan.execute(path, base_offset).await,
        };
        let predecessor_ok = predecessor_succeeded(previous).await;
        written?;
        if predecessor_ok {
            Ok(())
        } else {
            Err(StorageError::Aborted { base_offset })
        }
    }
}

impl DirectPlan {
    async fn execute(self, path: &Path, base_offset: i64) -> Result<(), StorageError> {
        let DirectPlan {
            file,
            head,
            body,
            previous_tail_block,
            tail_block,
        } = self;
        let _guard = FinishOnDrop(tail_block.clone());
        let tail_in_body = !body.is_empty();
        let body_write = async {
            let result = write_chunks(&file, path, body).await;
            if tail_in_body {
                tail_block.finish(result.is_ok());
            }
            result
        };
        let head_write = async {
            let Some((buffer, position)) = head else {
                return Ok(());
            };
            if !predecessor_succeeded(previous_tail_block).await {
                tail_block.finish(false);
                return Err(StorageError::Aborted { base_offset });
            }
            let result = write_direct(&file, path, buffer, position).await;
            if !tail_in_body {
                tail_block.finish(result.is_ok());
            }
            result
        };
        let (body_result, head_result) = futures_lite::future::zip(body_write, head_write).await;
        body_result.and(head_result)
    }
}

/// Writes body chunks concurrently (each in a task of its own after the first).
async fn write_chunks(
    file: &Rc<DmaFile>,
    path: &Path,
    chunks: Vec<(DmaBuffer, u64)>,
) -> Result<(), StorageError> {
    let mut chunks = chunks.into_iter();
    let Some((first, first_position)) = chunks.next() else {
        return Ok(());
    };
    let others: Vec<_> = chunks
        .map(|(buffer, position)| {
            let (file, path) = (file.clone(), path.to_path_buf());
            glommio::spawn_local(async move { write_direct(&file, &path, buffer, position).await })
        })
        .collect();
    let mut result = write_direct(file, path, first, first_position).await;
    for task in others {
        let written = task.await;
        result = result.and(written);
    }
    result
}

fn short_write(written: usize, wanted: usize) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::WriteZero,
        format!("short write: {written} of {wanted} bytes"),
    )
}

/// Writes all of `data` at `position`. A short write only happens when the disk is full or a
/// file size limit is hit, where a retry would fail too, so it is an error like any other and
/// the log rewinds the file.
async fn write_buffered(
    file: &BufferedFile,
    path: &Path,
    data: Vec<u8>,
    position: u64,
) -> Result<(), StorageError> {
    let wanted = data.len();
    let written = file
        .write_at(data, position)
        .await
        .map_err(|error| StorageError::io("write segment", path, error))?;
    if written != wanted {
        return Err(StorageError::io(
            "write segment",
            path,
            short_write(written, wanted),
        ));
    }
    Ok(())
}

/// Writes an aligned buffer; O_DIRECT cannot resume an unaligned remainder, so a short write
/// is an error.
async fn write_direct(
    file: &DmaFile,
    path: &Path,
    buffer: DmaBuffer,
    position: u64,
) -> Result<(), StorageError> {
    let wanted = buffer.len();
    let written = file
        .write_at(buffer, position)
        .await
        .map_err(|error| StorageError::io("write segment", path, error))?;
    if written != wanted {
        return Err(StorageError::io(
            "write segment",
            path,
            short_write(written, wanted),
        ));
    }
    Ok(())
}

/// A prepared append: the I/O to run and what the log records when it is published.
pub(crate) struct Prepared {
    pub plan: WritePlan,
    /// File position where the append's first byte goes.
    pub position: u64,
    /// Direct mode: the partial last block after this append (for rewinding after a failure).
    pub tail_after: Vec<u8>,
    /// Direct mode with a tail cache: the appended bytes, shared with the cache.
    pub cached: Option<Bytes>,
}

/// Writer of the active segment.
pub(crate) struct SegmentWriter {
    path: PathBuf,
    mode: ModeWriter,
    /// File position where the next append goes (published plus in-flight bytes).
    submitted: u64,
}

enum ModeWriter {
    Buffered {
        file: Rc<BufferedFile>,
    },
    Direct {
        file: Rc<DmaFile>,
        alignment: u64,
        /// Bytes of the partial block at `submitted`.
        tail: Vec<u8>,
        /// Bytes of the partial block at the last published position.
        published_tail: Vec<u8>,
        /// File length after preallocation.
        allocated: u64,
        /// Write of the newest append's last block.
        last_tail_block: Option<Rc<Completion>>,
    },
}

impl SegmentWriter {
    /// Opens the segment file for appending after its first `size` bytes (its whole valid
    /// content); `create` starts a new, empty file.
    pub(crate) async fn open(
        path: &Path,
        mode: WriteMode,
        size: u64,
        create: bool,
    ) -> Result<SegmentWriter, StorageError> {
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(create);
        let mode =
            match mode {
                WriteMode::Buffered => ModeWriter::Buffered {
                    file: Rc::new(options.buffered_open(path).await.map_err(|error| {
                        StorageError::io("open segment for writing", path, error)
                    })?),
                },
                WriteMode::Direct => {
                    let file = options.dma_open(path).await.map_err(|error| {
                        StorageError::io("open segment for writing", path, error)
                    })?;
                    let alignment = file.alignment().max(DIRECT_BLOCK_BYTES_MIN);
                    let tail = read_tail(path, size, alignment)?;
                    ModeWriter::Direct {
                        file: Rc::new(file),
                        alignment,
                        published_tail: tail.clone(),
                        tail,
                        allocated: size,
                        last_tail_block: None,
                    }
                }
            };
        Ok(SegmentWriter {
            path: path.to_path_buf(),
            mode,
            submitted: size,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn submitted(&self) -> u64 {
        self.submitted
    }

    pub(crate) fn handle(&self) -> FileHandle {
        match &self.mode {
            ModeWriter::Buffered { file } => FileHandle::Buffered(file.clone()),
            ModeWriter::Direct { file, .. } => FileHandle::Direct(file.clone()),
        }
    }

    /// Direct mode: the file and target length to preallocate before appending `len` bytes,
    /// when the preallocated region would not hold them. `cap_bytes` is the segment size limit.
    pub(crate) fn preallocation(&self, len: u64, cap_bytes: u64) -> Option<(Rc<DmaFile>, u64)> {
        let ModeWriter::Direct {
            file,
            alignment,
            allocated,
            ..
        } = &self.mode
        else {
            return None;
        };
        let end = align_up(self.submitted + len, *alignment);
        if end <= *allocated {
            return None;
        }
        let cap = align_up(cap_bytes, *alignment).max(end);
        Some((file.clone(), (end + PREALLOCATE_BYTES).min(cap)))
    }

    /// Records a successful preallocation up to `target`.
    pub(crate) fn preallocated(&mut self, target: u64) {
        if let ModeWriter::Direct { allocated, .. } = &mut self.mode {
            *allocated = (*allocated).max(target);
        }
    }

    /// Builds the I/O for appending `data` at the submitted position and advances it.
    /// `keep` asks for the bytes back as `Bytes` for the tail cache.
    pub(crate) fn prepare(&mut self, data: BytesMut, keep: bool) -> Prepared {
        let position = self.submitted;
        self.submitted += data.len() as u64;
        match &mut self.mode {
            ModeWriter::Buffered { file } => Prepared {
                plan: WritePlan::Buffered {
                    file: file.clone(),
                    // Zero-copy when the BytesMut owns its whole allocation.
                    data: Vec::from(data),
                    position,
                },
                position,
                tail_after: Vec::new(),
                cached: None,
            },
            ModeWriter::Direct {
                file,
                alignment,
                tail,
                last_tail_block,
                ..
            } => {
                let (head, body, tail_after) = plan_direct(file, *alignment, tail, position, &data);
                *tail = tail_after.clone();
                let tail_block = Completion::new();
                let previous_tail_block = last_tail_block.replace(tail_block.clone());
                Prepared {
                    plan: WritePlan::Direct(DirectPlan {
                        file: file.clone(),
                        head,
                        body,
                        previous_tail_block,
                        tail_block,
                    }),
                    position,
                    tail_after,
                    cached: keep.then(|| data.freeze()),
                }
            }
        }
    }

    /// Records that everything up to the append that left `tail_after` is published.
    pub(crate) fn published(&mut self, tail_after: Vec<u8>) {
        if let ModeWriter::Direct { published_tail, .. } = &mut self.mode {
            *published_tail = tail_after;
        }
    }

    /// Rewinds the submitted position to `size` after the file was cut there (a failed write
    /// or a truncation). `reload_tail` rereads the partial last block from the file; otherwise
    /// the one kept at the last publish is used (valid when `size` is the published size).
    pub(crate) fn rewind(&mut self, size: u64, reload_tail: bool) -> Result<(), StorageError> {
        self.submitted = size;
        if let ModeWriter::Direct {
            tail,
            published_tail,
            allocated,
            alignment,
            last_tail_block,
            ..
        } = &mut self.mode
        {
            // Every write finished before a rewind (the log waits for all appends first).
            *last_tail_block = None;
            if reload_tail {
                *published_tail = read_tail(&self.path, size, *alignment)?;
            }
            *tail = published_tail.clone();
            *allocated = size;
        }
        Ok(())
    }

    /// Cuts the file to its valid `size` (direct mode pads and preallocates past it), fsyncs
    /// and closes it.
    pub(crate) async fn close(self, size: u64) -> Result<(), StorageError> {
        let handle = self.handle();
        drop(self.mode);
        if let FileHandle::Direct(_) = handle {
            handle.truncate(&self.path, size).await?;
        }
        handle.fdatasync(&self.path).await?;
        handle.close(&self.path).await
    }
}

fn align_up(value: u64, alignment: u64) -> u64 {
    value.div_ceil(alignment) * alignment
}

fn align_down(value: u64, alignment: u64) -> u64 {
    value - value % alignment
}

/// Reads the partial last block of the first `size` bytes of `path`.
fn read_tail(path: &Path, size: u64, alignment: u64) -> Result<Vec<u8>, StorageError> {
    use std::os::unix::fs::FileExt;
    let start = align_down(size, alignment);
    let mut tail = vec![0u8; (size - start) as usize];
    if !tail.is_empty() {
        let file = std::fs::File::open(path)
            .map_err(|source| StorageError::io("open segment tail", path, source))?;
        file.read_exact_at(&mut tail, start)
            .map_err(|source| StorageError::io("read segment tail", path, source))?;
    }
    Ok(tail)
}

/// Aligned buffer holding `parts` back to back, zero padded to `size`.
fn filled_buffer(file: &DmaFile, size: usize, parts: &[&[u8]]) -> DmaBuffer {
    let mut buffer = file.alloc_dma_buffer(size);
    let bytes = buffer.as_bytes_mut();
    let mut at = 0;
    for part in parts {
        bytes[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    bytes[at..].fill(0);
    buffer
}

type DirectWrites = (Option<(DmaBuffer, u64)>, Vec<(DmaBuffer, u64)>, Vec<u8>);

/// Splits an append of `data` at `position` into the shared head block (previous tail plus the
/// first bytes) and the body (all later blocks, in chunks), and computes the new partial tail
/// block.
fn plan_direct(
    file: &DmaFile,
    alignment: u64,
    tail: &[u8],
    position: u64,
    data: &[u8],
) -> DirectWrites {
    let block = alignment as usize;
    debug_assert_eq!(position % alignment, tail.len() as u64);
    let end = position + data.len() as u64;
    let (head, rest, rest_position) = if tail.is_empty() {
        (None, data, position)
    } else {
        let in_head = data.len().min(block - tail.len());
        let buffer = filled_buffer(file, block, &[tail, &data[..in_head]]);
        let head_position = position - tail.len() as u64;
        (
            Some((buffer, head_position)),
            &data[in_head..],
            head_position + alignment,
        )
    };
    let chunk_bytes = align_down(DIRECT_WRITE_CHUNK_BYTES, alignment).max(alignment) as usize;
    let body = rest
        .chunks(chunk_bytes)
        .enumerate()
        .map(|(at, chunk)| {
            let size = align_up(chunk.len() as u64, alignment) as usize;
            let chunk_position = rest_position + (at * chunk_bytes) as u64;
            (filled_buffer(file, size, &[chunk]), chunk_position)
        })
        .collect();
    let tail_start = align_down(end, alignment);
    let tail_after = if tail_start >= position {
        data[(tail_start - position) as usize..].to_vec()
    } else {
        // The append ends inside the block it started in.
        [tail, data].concat()
    };
    (head, body, tail_after)
}
