//! Appending to the active segment file, in either write mode. The writer lets appends
//! pipeline (the next append prepared and its write submitted while earlier writes are still in
//! flight), but `PartitionLog` starts an append's write only once the previous append's write is
//! done (its `settle_writes`), so a log has one write in flight, which may overlap the previous
//! append's fdatasync; benches/RESULTS.md (eleventh record) has why pipelining the writes was
//! measured and not kept.
//!
//! Each append gets a [`Completion`] and waits for its predecessor's before it is published, so
//! appends become visible strictly in order and an append is acknowledged only when it and
//! every byte before it are in the file. A failed write fails every append behind it (they
//! may depend on its bytes); the log then rewinds the file to the last published byte.
//!
//! Direct mode writes whole blocks of `alignment` bytes from aligned buffers. An append writes
//! the bytes carried over from the previous append's partial last block, then its own bytes,
//! its own partial last block padded with zeros, in chunks of `DIRECT_WRITE_CHUNK_BYTES` that
//! go to the device concurrently: one write for an append of up to a chunk, so an append costs
//! one device round trip. Its partial last block is also carried forward in memory, and the
//! next append writes that block again with its own bytes after it. Writes of the same block
//! are ordered (a later one waits for the earlier one); appends in flight otherwise wait for
//! each other only to be published in order. (Until 2026-12-07 an append wrote only complete
//! blocks and then, when no later append had covered its partial block, a second, padded write
//! of that block: two device round trips in a row for every append, since a log's appends are
//! published one after the other.)
//!
//! Direct files are prepared ahead of the writes, off the append path, by an [`Extension`]
//! running in the background, so the writes do not extend the file (ext4 serialises extending
//! O_DIRECT writes). Under durable acknowledgement the prepared space is written with zeros and
//! fsynced by the extension itself: data writes then land in blocks the filesystem already
//! considers written, and the fdatasync that makes an append durable is a device cache flush
//! only, not a journal commit (measured on this VM: 0.03 ms against 3.7 ms at the median, see
//! ARCHITECTURE.md). When appends outrun the zero filler (a disk-bound load), the rest of that
//! segment is preallocated with fallocate instead, which costs no device bandwidth. Recovery
//! treats the zero-filled tail as the end of the log, and closing cuts the file to its exact
//! length.

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

/// Direct mode prepares at least this far past the write position; with fallocate it then
/// doubles the file (capped at the segment size), so a segment needs few preallocations (each
/// one drains the O_DIRECT writes in flight) and an idle log wastes little space. Zero filling
/// goes in steps of this size, so it never holds the device for long.
pub(crate) const PREALLOCATE_BYTES_MIN: u64 = 64 << 20;
/// Smallest zero-filling step. Steps grow with the bytes the segment already holds, up to
/// `PREALLOCATE_BYTES_MIN`, so an idle or slow partition never writes megabytes of zeros it
/// will not use, while a busy one prepares far enough ahead. An extension starts once the write
/// position comes within half a step of the prepared end, so it is normally done before any
/// append needs its space.
pub(crate) const ZERO_STEP_BYTES_MIN: u64 = 1 << 20;
/// Size of each zero write of a zero-filling extension. One zero write is in flight per thread
/// (shard) at a time, whatever the number of partitions (`ZERO_FILL_PERMITS`), so an append's
/// write or fdatasync never queues behind more than this many bytes of zeros.
const ZERO_WRITE_BYTES: u64 = 512 << 10;

thread_local! {
    /// The zero-filling extensions of every log of this thread take turns, one write at a time.
    /// Without it, partitions that fill at the same rate (a workload spread evenly over them)
    /// reach their prepared end together and their extensions hit the device as one burst
    /// (16 partitions x 64 MiB of zeros), queueing every append's write and fdatasync behind it
    /// for hundreds of milliseconds. A thread-local suits the thread-per-core design: each
    /// shard paces its own device traffic, with no lock.
    static ZERO_FILL_PERMITS: Rc<glommio::sync::Semaphore> =
        Rc::new(glommio::sync::Semaphore::new(1));
}
/// Largest single write of a direct-mode append; bigger appends go out as several concurrent
/// writes of equal size so one large append keeps several device queues busy. Each write costs
/// reactor work, so chunks stay large.
pub(crate) const DIRECT_WRITE_CHUNK_BYTES: u64 = 2 << 20;
/// Smallest block a direct write covers: the filesystem block, so no write shares a block with
/// another (ext4 serialises sub-block O_DIRECT writes and zeroes around them).
const DIRECT_BLOCK_BYTES_MIN: u64 = 4096;

/// Outcome of one write or append, shared with those waiting for it.
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

    /// Resolves to true when the work succeeded.
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

/// Waits for an earlier piece of work (if any); true when it succeeded.
pub(crate) async fn succeeded(earlier: Option<Rc<Completion>>) -> bool {
    match earlier {
        Some(earlier) => earlier.wait().await,
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
        crate::fault::sync_gate(path).await;
        crate::fault::before_sync(path)
            .map_err(|error| StorageError::io("fsync segment", path, error))?;
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

/// The block writes of one direct-mode append.
pub(crate) struct DirectPlan {
    file: Rc<DmaFile>,
    /// Chunks of blocks with their positions, the last one zero padded.
    blocks: Vec<(DmaBuffer, u64)>,
    /// Earlier write of the first block (the carried one), which must finish first.
    wait_for: Option<Rc<Completion>>,
    /// Finished when `blocks` are written.
    blocks_done: Rc<Completion>,
}

impl WritePlan {
    /// Writes the append's bytes.
    pub(crate) async fn execute(self, path: &Path, base_offset: i64) -> Result<(), StorageError> {
        match self {
            WritePlan::Buffered {
                file,
                data,
                position,
            } => write_buffered(&file, path, data, position).await,
            WritePlan::Direct(plan) => {
                let DirectPlan {
                    file,
                    blocks,
                    wait_for,
                    blocks_done,
                    ..
                } = plan;
                let _guard = FinishOnDrop(blocks_done.clone());
                let result = if succeeded(wait_for).await {
                    write_chunks(&file, path, blocks).await
                } else {
                    Err(StorageError::Aborted { base_offset })
                };
                blocks_done.finish(result.is_ok());
                result
            }
        }
    }
}

/// Writes chunks concurrently, polling all of them from the calling task.
async fn write_chunks(
    file: &Rc<DmaFile>,
    path: &Path,
    chunks: Vec<(DmaBuffer, u64)>,
) -> Result<(), StorageError> {
    let writes: Vec<_> = chunks
        .into_iter()
        .map(|(buffer, position)| Box::pin(write_direct(file, path, buffer, position)))
        .collect();
    JoinAll {
        pending: writes.into_iter().map(Some).collect(),
        result: Ok(()),
    }
    .await
}

/// Future that polls every write of a list until all finished; resolves to the first error.
struct JoinAll<F> {
    pending: Vec<Option<Pin<Box<F>>>>,
    result: Result<(), StorageError>,
}

impl<F: Future<Output = Result<(), StorageError>>> Future for JoinAll<F> {
    type Output = Result<(), StorageError>;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        for slot in &mut this.pending {
            if let Some(write) = slot {
                if let Poll::Ready(result) = write.as_mut().poll(context) {
                    *slot = None;
                    if this.result.is_ok() {
                        this.result = result;
                    }
                }
            }
        }
        if this.pending.iter().all(Option::is_none) {
            Poll::Ready(std::mem::replace(&mut this.result, Ok(())))
        } else {
            Poll::Pending
        }
    }
}

fn short_write(written: usize, wanted: usize) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::WriteZero,
        format!("short write: {written} of {wanted} bytes (the disk is full or a file size limit was hit)"),
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
    crate::fault::before_write(path, position, &data);
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
    crate::fault::before_write(path, position, buffer.as_bytes());
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
    Buffered { file: Rc<BufferedFile> },
    Direct(DirectWriter),
}

/// Direct-mode state: the partial block carried forward and who writes it.
struct DirectWriter {
    file: Rc<DmaFile>,
    alignment: u64,
    /// Bytes of the partial block at `submitted`, written again by the next append.
    carry: Vec<u8>,
    /// Latest write issued for the carried block; a later write of it waits for this one.
    carry_last_write: Option<Rc<Completion>>,
    /// Bytes of the partial block at the last published position.
    published_tail: Vec<u8>,
    /// End of the prepared space (preallocated, and zero-filled when `zero_fill`): appends
    /// below it do not extend the file.
    allocated: u64,
    /// Prepare space by writing zeros (durable acknowledgement) rather than with fallocate.
    zero_fill: bool,
    /// The extension in flight: its completion and target end.
    extending: Option<(Rc<Completion>, u64)>,
    /// Bumped by every rewind, so an extension that raced one does not claim space.
    epoch: u64,
}

/// Background preparation of space past the prepared end of a direct-mode segment.
pub(crate) struct Extension {
    file: Rc<DmaFile>,
    path: PathBuf,
    from: u64,
    to: u64,
    zero_fill: bool,
    epoch: u64,
    done: Rc<Completion>,
}

impl Extension {
    /// Prepares `[from, to)`: fallocate, then (zero filling) writes zeros over it and fsyncs so
    /// the extent conversion is committed here rather than by an append's fsync.
    pub(crate) async fn run(self) -> (u64, u64, Result<(), StorageError>) {
        let _guard = FinishOnDrop(self.done.clone());
        let result = self.prepare().await;
        self.done.finish(result.is_ok());
        (self.epoch, self.to, result)
    }

    async fn prepare(&self) -> Result<(), StorageError> {
        let fail = |error| StorageError::io("prepare segment space", &self.path, error);
        self.file.pre_allocate(self.to, false).await.map_err(fail)?;
        if !self.zero_fill {
            return Ok(());
        }
        let mut zeros = self.file.alloc_dma_buffer(ZERO_WRITE_BYTES as usize);
        zeros.as_bytes_mut().fill(0);
        let zeros = Rc::new(zeros);
        let permits = ZERO_FILL_PERMITS.with(Rc::clone);
        let mut position = self.from;
        while position < self.to {
            let turn = crate::sync::acquire_permit(&permits, 1)
                .await
                .map_err(fail)?;
            let written = self.file.write_rc_at(zeros.clone(), position).await;
            drop(turn);
            let written = written.map_err(fail)?;
            if written == 0 {
                return Err(StorageError::io(
                    "prepare segment space",
                    &self.path,
                    short_write(0, ZERO_WRITE_BYTES as usize),
                ));
            }
            position += written as u64;
        }
        FileHandle::Direct(self.file.clone())
            .fdatasync(&self.path)
            .await
    }
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
        let opened = |error| StorageError::io("open segment for writing", path, error);
        let mode = match mode {
            WriteMode::Buffered => ModeWriter::Buffered {
                file: Rc::new(options.buffered_open(path).await.map_err(opened)?),
            },
            WriteMode::Direct => {
                let file = options.dma_open(path).await.map_err(opened)?;
                let alignment = file.alignment().max(DIRECT_BLOCK_BYTES_MIN);
                let carry = read_tail(path, size, alignment)?;
                ModeWriter::Direct(DirectWriter {
                    file: Rc::new(file),
                    alignment,
                    published_tail: carry.clone(),
                    carry,
                    carry_last_write: None,
                    allocated: size,
                    zero_fill: false,
                    extending: None,
                    epoch: 0,
                })
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
            ModeWriter::Direct(direct) => FileHandle::Direct(direct.file.clone()),
        }
    }

    /// Asks for zero-filled preparation of space (durable acknowledgement) instead of
    /// fallocate alone.
    pub(crate) fn set_zero_fill(&mut self, zero_fill: bool) {
        if let ModeWriter::Direct(direct) = &mut self.mode {
            direct.zero_fill = zero_fill;
        }
    }

    /// Direct mode, before appending `len` bytes: the extension to start in the background
    /// (when the write position nears the prepared end and none is in flight), and the one the
    /// append must wait for (when its bytes would land in space an extension is still
    /// preparing; the writer then stops zero filling this segment, as appends outrun it).
    /// `cap_bytes` is the segment size limit.
    pub(crate) fn plan_extension(
        &mut self,
        len: u64,
        cap_bytes: u64,
    ) -> (Option<Extension>, Option<Rc<Completion>>) {
        let ModeWriter::Direct(direct) = &mut self.mode else {
            return (None, None);
        };
        let end = align_up(self.submitted + len, direct.alignment);
        if let Some((done, target)) = &direct.extending {
            let wait = (end > direct.allocated && *target > direct.allocated).then(|| {
                direct.zero_fill = false;
                done.clone()
            });
            return (None, wait);
        }
        let step = if direct.zero_fill {
            self.submitted
                .clamp(ZERO_STEP_BYTES_MIN, PREALLOCATE_BYTES_MIN)
                .next_power_of_two()
        } else {
            PREALLOCATE_BYTES_MIN
        };
        if end + step / 2 <= direct.allocated {
            return (None, None);
        }
        let cap = align_up(cap_bytes, direct.alignment).max(end);
        // Never below the block holding the write position: that block may hold carried bytes.
        let from = direct
            .allocated
            .max(align_up(self.submitted, direct.alignment));
        let step_end = if direct.zero_fill {
            from.max(end) + step
        } else {
            (end + PREALLOCATE_BYTES_MIN).max(2 * end)
        };
        let to = step_end.min(cap);
        if to <= from {
            return (None, None);
        }
        let done = Completion::new();
        direct.extending = Some((done.clone(), to));
        let extension = Extension {
            file: direct.file.clone(),
            path: self.path.clone(),
            from,
            to,
            zero_fill: direct.zero_fill,
            epoch: direct.epoch,
            done: done.clone(),
        };
        let wait = (end > direct.allocated).then_some(done);
        (Some(extension), wait)
    }

    /// Records the end of an extension started in `epoch`: on success its space is prepared
    /// (unless a rewind happened meanwhile).
    pub(crate) fn extended(&mut self, epoch: u64, to: u64, succeeded: bool) {
        if let ModeWriter::Direct(direct) = &mut self.mode {
            direct.extending = None;
            if succeeded && epoch == direct.epoch {
                direct.allocated = direct.allocated.max(to);
            }
        }
    }

    /// The extension in flight, if any (a rewind waits for it before cutting the file).
    pub(crate) fn extension_in_flight(&self) -> Option<Rc<Completion>> {
        match &self.mode {
            ModeWriter::Direct(direct) => direct.extending.as_ref().map(|(done, _)| done.clone()),
            ModeWriter::Buffered { .. } => None,
        }
    }

    /// Follows a rename of the file (a prepared segment becoming the active one).
    pub(crate) fn renamed(&mut self, path: &Path) {
        self.path = path.to_path_buf();
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
            ModeWriter::Direct(direct) => {
                let plan = direct.plan(position, &data);
                Prepared {
                    plan: WritePlan::Direct(plan),
                    position,
                    tail_after: direct.carry.clone(),
                    cached: keep.then(|| data.freeze()),
                }
            }
        }
    }

    /// Records that everything up to the append that left `tail_after` is published.
    pub(crate) fn published(&mut self, tail_after: Vec<u8>) {
        if let ModeWriter::Direct(direct) = &mut self.mode {
            direct.published_tail = tail_after;
        }
    }

    /// Rewinds the submitted position to `size` after the file was cut there (a failed write
    /// or a truncation), with no append in flight. `reload_tail` rereads the partial last
    /// block from the file; otherwise the one kept at the last publish is used (valid when
    /// `size` is the published size).
    pub(crate) fn rewind(&mut self, size: u64, reload_tail: bool) -> Result<(), StorageError> {
        self.submitted = size;
        if let ModeWriter::Direct(direct) = &mut self.mode {
            if reload_tail {
                direct.published_tail = read_tail(&self.path, size, direct.alignment)?;
            }
            direct.carry = direct.published_tail.clone();
            direct.carry_last_write = None;
            direct.allocated = size;
            direct.epoch += 1;
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

impl DirectWriter {
    /// Plans an append of `data` at `position`: the blocks from the carried block's start to
    /// the append's end, the last one padded, and the new carried block.
    fn plan(&mut self, position: u64, data: &[u8]) -> DirectPlan {
        let block_start = position - self.carry.len() as u64;
        let full_end = align_down(position + data.len() as u64, self.alignment);
        let blocks_done = Completion::new();
        // A rewrite of the carried block goes after the write that put its older bytes there.
        let wait_for = if self.carry.is_empty() {
            None
        } else {
            self.carry_last_write.clone()
        };
        let blocks = self.chunks(block_start, data);
        if full_end > block_start {
            self.carry = data[(full_end - position) as usize..].to_vec();
        } else {
            self.carry.extend_from_slice(data);
        }
        self.carry_last_write = (!self.carry.is_empty()).then(|| blocks_done.clone());
        DirectPlan {
            file: self.file.clone(),
            blocks,
            wait_for,
            blocks_done,
        }
    }

    /// Aligned chunks holding the carried bytes followed by `data`, zero padded to a whole
    /// number of blocks, starting at `block_start`.
    fn chunks(&self, block_start: u64, data: &[u8]) -> Vec<(DmaBuffer, u64)> {
        let carry = self.carry.as_slice();
        let filled = carry.len() + data.len();
        let total = align_up(filled as u64, self.alignment);
        let count = total.div_ceil(DIRECT_WRITE_CHUNK_BYTES).max(1);
        let chunk_bytes = align_up(total.div_ceil(count), self.alignment) as usize;
        (0..total as usize)
            .step_by(chunk_bytes.max(1))
            .map(|from| {
                let to = (from + chunk_bytes).min(total as usize);
                let end = to.min(filled);
                let from_carry = &carry[from.min(carry.len())..end.min(carry.len())];
                let from_data =
                    &data[from.max(carry.len()) - carry.len()..end.max(carry.len()) - carry.len()];
                let buffer = filled_buffer(&self.file, to - from, &[from_carry, from_data]);
                (buffer, block_start + from as u64)
            })
            .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(len: usize, fill: u8) -> BytesMut {
        BytesMut::from(&vec![fill; len][..])
    }

    fn direct(plan: &WritePlan) -> &DirectPlan {
        match plan {
            WritePlan::Direct(plan) => plan,
            WritePlan::Buffered { .. } => panic!("expected a direct plan"),
        }
    }

    /// Where a direct plan's writes start and how many bytes they cover in all.
    fn write_range(plan: &WritePlan) -> (u64, usize) {
        let plan = direct(plan);
        (
            plan.blocks[0].1,
            plan.blocks.iter().map(|(b, _)| b.len()).sum(),
        )
    }

    // Proves the carry-forward rules: every append writes its bytes in one go from the start of
    // the carried block to its own end, its partial last block padded; a rewrite of a carried
    // block waits for the earlier write of it, so running the writes in an adversarial order
    // still leaves exactly the appended bytes in the file.
    #[test]
    fn carried_blocks_are_rewritten_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("segment.log");
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .make()
            .unwrap()
            .run(async move {
                let mut writer = SegmentWriter::open(&path, WriteMode::Direct, 0, true)
                    .await
                    .unwrap();
                let a = writer.prepare(bytes(1000, 1), false);
                let b = writer.prepare(bytes(1000, 2), false);
                assert_eq!(write_range(&a.plan), (0, 4096), "a pads its block");
                assert!(direct(&a.plan).wait_for.is_none());
                assert_eq!(write_range(&b.plan), (0, 4096), "b rewrites a's block");
                let after_a = direct(&b.plan).wait_for.clone().unwrap();
                assert!(Rc::ptr_eq(&after_a, &direct(&a.plan).blocks_done));
                let c = writer.prepare(bytes(5000, 3), false);
                assert_eq!(
                    write_range(&c.plan),
                    (0, 8192),
                    "c ends inside the second block"
                );
                assert!(Rc::ptr_eq(
                    direct(&c.plan).wait_for.as_ref().unwrap(),
                    &direct(&b.plan).blocks_done
                ));
                let d = writer.prepare(bytes(100, 4), false);
                assert_eq!(write_range(&d.plan), (4096, 4096));
                let e = writer.prepare(bytes(12288 - 7100, 5), false);
                assert_eq!(write_range(&e.plan), (4096, 8192));
                assert!(Rc::ptr_eq(
                    direct(&e.plan).wait_for.as_ref().unwrap(),
                    &direct(&d.plan).blocks_done
                ));
                let f = writer.prepare(bytes(10, 6), false);
                assert!(
                    direct(&f.plan).wait_for.is_none(),
                    "e ended on a block boundary: f starts a fresh block"
                );
                assert_eq!(write_range(&f.plan), (12288, 4096));
                // Run the later writes first: each must wait for the earlier write of its block.
                use futures_lite::future::zip;
                let run = |prepared: Prepared| prepared.plan.execute(&path, 0);
                let (rf, (re, (rd, (rc, (rb, ra))))) = zip(
                    run(f),
                    zip(run(e), zip(run(d), zip(run(c), zip(run(b), run(a))))),
                )
                .await;
                for result in [ra, rb, rc, rd, re, rf] {
                    result.unwrap();
                }
                let size = writer.submitted();
                assert_eq!(size, 12298);
                writer.close(size).await.unwrap();
                let mut expected = vec![1u8; 1000];
                expected.extend(vec![2u8; 1000]);
                expected.extend(vec![3u8; 5000]);
                expected.extend(vec![4u8; 100]);
                expected.extend(vec![5u8; 12288 - 7100]);
                expected.extend(vec![6u8; 10]);
                assert_eq!(std::fs::read(&path).unwrap(), expected);
            });
    }
}
