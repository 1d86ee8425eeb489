//! Zero-copy sends of file ranges to sockets with io_uring `IORING_OP_SPLICE`.
//!
//! A [`Splicer`] lives on exactly one glommio executor (it is `!Send`, and its waits go through
//! that executor's reactor): keep one per executor, either through [`local_splicer`] (a lazily
//! created thread-local, recreated if a new executor starts on the same thread) or by creating
//! one with [`Splicer::new`] and passing an `Rc<Splicer>` around (see
//! `Connection::with_splicer`). A splicer binds to the executor of its first send and refuses
//! sends from any other.
//!
//! A pipe carries one transfer at a time, and a send to a slow peer can occupy it for as long as
//! the peer takes to read. So that one slow consumer cannot stall every other send of the core,
//! the splicer keeps a small pool of *lanes*, each an io_uring ring of its own, a pipe sized with
//! `F_SETPIPE_SZ` and an eventfd; at most `SPLICE_LANES_MAX` transfers run at once and further
//! ones wait for a free lane.
//!
//! Each step of a transfer submits linked `IORING_OP_SPLICE` operations, file -> pipe then
//! pipe -> socket, so record bytes never enter user space. The kernel runs them on its io-wq
//! workers. Waiting for their completions never blocks the executor: the lane's ring signals its
//! eventfd on every completion, and the eventfd is read through glommio's own ring, so the task
//! sleeps until the kernel reports progress (no timer polling). Only if that read fails does the
//! lane fall back to sleeping for a short, growing interval capped at `SPLICE_POLL_MAX_US`.
//!
//! When the kernel refuses to splice the file (`EINVAL` or `ENOSYS`, for example procfs files),
//! the rest of the range is sent by copying (pread + send), counted in `bytes_copied`.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::time::Duration;

use glommio::io::BufferedFile;
use glommio::sync::Semaphore;
use io_uring::{opcode, squeue, types, IoUring};

/// Default number of submission entries of each lane's ring. A lane has at most two operations
/// in flight, so this is generous; it is kept small because rings pin kernel memory.
pub const SPLICE_RING_ENTRIES: u32 = 64;

/// Default pipe size of each lane, in bytes (set with `F_SETPIPE_SZ`). One step moves at most
/// this much. 1 MiB is Linux's default `/proc/sys/fs/pipe-max-size` for unprivileged users.
pub const SPLICE_PIPE_BYTES: usize = 1024 * 1024;

/// Bound on concurrent transfers (lanes) per splicer.
pub const SPLICE_LANES_MAX: usize = 16;

/// Cap of the fallback polling interval, in microseconds, used only if waiting on the lane's
/// eventfd through glommio fails.
pub const SPLICE_POLL_MAX_US: u64 = 1_000;

/// First fallback polling interval, in microseconds.
const SPLICE_POLL_MIN_US: u64 = 10;

/// Buffer size of the copying fallback, in bytes.
const COPY_CHUNK_BYTES: usize = 256 * 1024;

/// Page size assumed if `sysconf` cannot tell.
const PAGE_BYTES_DEFAULT: usize = 4096;

/// User-data tags of a lane's operations; a lane runs one step at a time, so tags suffice.
const TAG_FILL: u64 = 0;
const TAG_DRAIN: u64 = 1;
const TAG_POLL: u64 = 2;
const TAG_COUNT: usize = 3;

/// Counters of one splicer, cumulative since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpliceStats {
    /// Bytes that reached the socket through splice (never copied to user space).
    pub bytes_spliced: u64,
    /// Bytes sent by the copying fallback.
    pub bytes_copied: u64,
    /// Splice operations submitted (file -> pipe and pipe -> socket each count one).
    pub splice_calls: u64,
}

/// Moves file ranges to sockets without copying them through user space. See the module
/// documentation for the design. Lives on one executor; not `Send`.
pub struct Splicer {
    /// The glommio executor this splicer serves, set by the first send.
    executor_id: Cell<Option<usize>>,
    ring_entries: u32,
    pipe_bytes: usize,
    page_bytes: usize,
    idle_lanes: RefCell<Vec<Lane>>,
    lane_permits: Semaphore,
    stats: Cell<SpliceStats>,
}

thread_local! {
    /// The current executor's splicer, with the id of that executor.
    static LOCAL_SPLICER: RefCell<Option<(usize, Rc<Splicer>)>> = const { RefCell::new(None) };
}

/// The running executor's splicer with the default settings, created on first use. Must be
/// called from a task of a glommio executor (it panics otherwise, as glommio's own
/// executor-local functions do).
pub fn local_splicer() -> io::Result<Rc<Splicer>> {
    let executor_id = glommio::executor().id();
    LOCAL_SPLICER.with(|slot| {
        if let Some((owner, splicer)) = slot.borrow().as_ref() {
            if *owner == executor_id {
                return Ok(splicer.clone());
            }
        }
        let splicer = Rc::new(Splicer::new(SPLICE_RING_ENTRIES, SPLICE_PIPE_BYTES)?);
        splicer.executor_id.set(Some(executor_id));
        *slot.borrow_mut() = Some((executor_id, splicer.clone()));
        Ok(splicer)
    })
}

impl Splicer {
    /// A splicer whose lanes have rings of `entries` submission entries and pipes of
    /// `pipe_bytes` bytes. Creates the first lane right away so a kernel without io_uring
    /// splice support fails here rather than on the first send.
    pub fn new(entries: u32, pipe_bytes: usize) -> io::Result<Self> {
        // SAFETY: sysconf has no memory-safety preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let page_bytes = usize::try_from(page)
            .ok()
            .filter(|&bytes| bytes > 0)
            .unwrap_or(PAGE_BYTES_DEFAULT);
        let first = Lane::new(entries.max(2), pipe_bytes, page_bytes)?;
        Ok(Splicer {
            executor_id: Cell::new(None),
            ring_entries: entries.max(2),
            pipe_bytes,
            page_bytes,
            idle_lanes: RefCell::new(vec![first]),
            lane_permits: Semaphore::new(SPLICE_LANES_MAX as u64),
            stats: Cell::new(SpliceStats::default()),
        })
    }

    /// Counters since creation.
    pub fn stats(&self) -> SpliceStats {
        self.stats.get()
    }

    /// Moves `[position, position + len)` of `file` to `socket` with linked `IORING_OP_SPLICE`
    /// (file -> pipe, pipe -> socket), looping until every byte is sent; record bytes never
    /// enter user space. Falls back to pread + send on `EINVAL`/`ENOSYS` (counted as copied).
    ///
    /// If the returned future is dropped before it completes, the bytes already sent are
    /// unknown, so the caller must close the socket; the lane it used is discarded.
    pub async fn send_file(
        &self,
        socket: RawFd,
        file: RawFd,
        position: u64,
        len: usize,
    ) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        let range_end = position.checked_add(len as u64);
        if range_end.is_none_or(|end| end > i64::MAX as u64) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("file range [{position}, +{len}) exceeds the largest file offset"),
            ));
        }
        self.bind_to_executor()?;
        let _permit = self
            .lane_permits
            .acquire_permit(1)
            .await
            .map_err(io::Error::from)?;
        let mut lane = self.take_lane()?;
        let transfer = Transfer {
            socket,
            file,
            position,
            len,
        };
        let result = lane.send(&transfer, &self.stats).await;
        // A lane is reused only when nothing is in flight and its pipe is empty; after an error
        // it may hold bytes of this transfer, so it is dropped instead.
        if result.is_ok() && lane.reusable() {
            self.idle_lanes.borrow_mut().push(lane);
        }
        result
    }

    /// Binds to the running executor on first use and refuses any other afterwards: lanes wait
    /// through the reactor of the executor that first used them.
    fn bind_to_executor(&self) -> io::Result<()> {
        let current = glommio::executor().id();
        match self.executor_id.get() {
            None => {
                self.executor_id.set(Some(current));
                Ok(())
            }
            Some(owner) if owner == current => Ok(()),
            Some(owner) => Err(io::Error::other(format!(
                "splicer of executor {owner} used on executor {current}"
            ))),
        }
    }

    fn take_lane(&self) -> io::Result<Lane> {
        if let Some(lane) = self.idle_lanes.borrow_mut().pop() {
            return Ok(lane);
        }
        Lane::new(self.ring_entries, self.pipe_bytes, self.page_bytes)
    }
}

impl std::fmt::Debug for Splicer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Splicer")
            .field("ring_entries", &self.ring_entries)
            .field("pipe_bytes", &self.pipe_bytes)
            .field("idle_lanes", &self.idle_lanes.borrow().len())
            .field("stats", &self.stats.get())
            .finish()
    }
}

/// One file range to send.
struct Transfer {
    socket: RawFd,
    file: RawFd,
    position: u64,
    len: usize,
}

/// What one splice step observed.
enum StepOutcome {
    /// Progress (possibly none, for a retry after `EAGAIN`).
    Continue,
    /// The kernel cannot splice this file or socket: copy the rest.
    Unsupported,
}

/// The eventfd a lane's ring signals on every completion.
enum Notifier {
    /// Not yet handed to glommio (that needs a running executor).
    Raw(OwnedFd),
    /// Read through glommio's ring, so waiting does not block the executor.
    Glommio(BufferedFile),
    /// Being converted; never observed outside `Lane::wait_notification`.
    Empty,
}

/// A ring, a pipe and an eventfd: one transfer at a time.
struct Lane {
    ring: IoUring,
    pipe_read: OwnedFd,
    pipe_write: OwnedFd,
    pipe_capacity: usize,
    page_bytes: usize,
    notifier: Notifier,
    /// Operations submitted whose completions have not been reaped.
    in_flight: usize,
    /// Bytes read from the file into the pipe and not yet sent.
    in_pipe: usize,
    poll_interval_us: u64,
}

impl Lane {
    fn new(entries: u32, pipe_bytes: usize, page_bytes: usize) -> io::Result<Lane> {
        let ring = IoUring::new(entries)?;
        let (pipe_read, pipe_write) = new_pipe()?;
        let pipe_capacity = size_pipe(&pipe_write, pipe_bytes)?;
        // The eventfd stays blocking: io_uring then waits for it with an internal poll instead
        // of failing the read with EAGAIN.
        // SAFETY: eventfd has no memory-safety preconditions; the result is checked below.
        let eventfd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if eventfd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: eventfd returned a new descriptor that nothing else owns.
        let eventfd = unsafe { OwnedFd::from_raw_fd(eventfd) };
        ring.submitter().register_eventfd(eventfd.as_raw_fd())?;
        Ok(Lane {
            ring,
            pipe_read,
            pipe_write,
            pipe_capacity: pipe_capacity.max(page_bytes),
            page_bytes,
            notifier: Notifier::Raw(eventfd),
            in_flight: 0,
            in_pipe: 0,
            poll_interval_us: SPLICE_POLL_MIN_US,
        })
    }

    fn reusable(&self) -> bool {
        self.in_flight == 0 && self.in_pipe == 0
    }

    /// Sends the whole range, by splice while the kernel allows it, then by copying.
    async fn send(&mut self, transfer: &Transfer, stats: &Cell<SpliceStats>) -> io::Result<()> {
        let mut sent = 0usize;
        let mut filled = 0usize;
        let mut socket_busy = false;
        while sent < transfer.len {
            let outcome = self
                .splice_step(transfer, &mut sent, &mut filled, &mut socket_busy, stats)
                .await?;
            if let StepOutcome::Unsupported = outcome {
                tracing::debug!(
                    position = transfer.position,
                    len = transfer.len,
                    sent,
                    "splice unsupported for this file or socket; copying the rest"
                );
                return self.copy_rest(transfer, filled, stats).await;
            }
        }
        Ok(())
    }

    /// One round trip to the kernel: either fill the empty pipe from the file and drain it to
    /// the socket (linked), or drain what an earlier step left in the pipe.
    async fn splice_step(
        &mut self,
        transfer: &Transfer,
        sent: &mut usize,
        filled: &mut usize,
        socket_busy: &mut bool,
        stats: &Cell<SpliceStats>,
    ) -> io::Result<StepOutcome> {
        let fill_bytes = if self.in_pipe == 0 {
            self.fill_bytes(transfer, *filled)
        } else {
            0
        };
        let more = *filled + fill_bytes < transfer.len;
        let entries = self.step_entries(transfer, *filled, fill_bytes, *socket_busy, more);
        let results = self.run(&entries).await?;
        bump_splice_calls(stats, &entries);
        *socket_busy = false;
        if let Some(result) = results[TAG_POLL as usize] {
            check_result(result, "poll socket for writing")?;
        }
        if let Some(result) = results[TAG_FILL as usize] {
            match result {
                0 => return Err(file_ended(transfer, *filled)),
                moved if moved > 0 => {
                    let moved = moved as usize;
                    *filled += moved;
                    self.in_pipe += moved;
                }
                error if is_unsupported(error) => return Ok(StepOutcome::Unsupported),
                error => return Err(os_error(error, "splice file to pipe")),
            }
        }
        let drained = results[TAG_DRAIN as usize].unwrap_or(-libc::ECANCELED);
        match drained {
            0 => Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "splice pipe to socket moved no bytes",
            )),
            moved if moved > 0 => {
                let moved = moved as usize;
                *sent += moved;
                self.in_pipe -= moved;
                add_stats(stats, moved as u64, 0);
                Ok(StepOutcome::Continue)
            }
            // The drain was cancelled because the fill came up short; the next step drains.
            error if error == -libc::ECANCELED => Ok(StepOutcome::Continue),
            error if error == -libc::EAGAIN => {
                *socket_busy = true;
                Ok(StepOutcome::Continue)
            }
            error if is_unsupported(error) => Ok(StepOutcome::Unsupported),
            error => Err(os_error(error, "splice pipe to socket")),
        }
    }

    /// How many bytes to move from the file into the empty pipe. A pipe holds `pipe_capacity /
    /// page` page slots and an unaligned start spans one extra page, so the chunk ends where
    /// the slots run out rather than provoking a short splice.
    fn fill_bytes(&self, transfer: &Transfer, filled: usize) -> usize {
        let offset = transfer.position + filled as u64;
        let misalignment = (offset % self.page_bytes as u64) as usize;
        (transfer.len - filled).min(self.pipe_capacity - misalignment)
    }

    fn step_entries(
        &self,
        transfer: &Transfer,
        filled: usize,
        fill_bytes: usize,
        socket_busy: bool,
        more: bool,
    ) -> Vec<squeue::Entry> {
        let socket = types::Fd(transfer.socket);
        let mut entries = Vec::with_capacity(2);
        let drain_bytes = if fill_bytes > 0 {
            fill_bytes
        } else {
            self.in_pipe
        };
        if fill_bytes > 0 {
            // Both values were bounded by send_file: offset <= i64::MAX, chunk <= pipe size.
            let offset = (transfer.position + filled as u64) as i64;
            let fill = opcode::Splice::new(
                types::Fd(transfer.file),
                offset,
                types::Fd(self.pipe_write.as_raw_fd()),
                -1,
                fill_bytes as u32,
            )
            .flags(libc::SPLICE_F_MOVE)
            .build()
            .user_data(TAG_FILL)
            .flags(squeue::Flags::IO_LINK | squeue::Flags::ASYNC);
            entries.push(fill);
        } else if socket_busy {
            let poll = opcode::PollAdd::new(socket, libc::POLLOUT as u32)
                .build()
                .user_data(TAG_POLL)
                .flags(squeue::Flags::IO_LINK);
            entries.push(poll);
        }
        let more_flag = if more { libc::SPLICE_F_MORE } else { 0 };
        let drain = opcode::Splice::new(
            types::Fd(self.pipe_read.as_raw_fd()),
            -1,
            socket,
            -1,
            drain_bytes as u32,
        )
        .flags(libc::SPLICE_F_MOVE | more_flag)
        .build()
        .user_data(TAG_DRAIN)
        .flags(squeue::Flags::ASYNC);
        entries.push(drain);
        entries
    }

    /// Submits `entries` and waits, without blocking the executor, for all their completions.
    async fn run(&mut self, entries: &[squeue::Entry]) -> io::Result<[Option<i32>; TAG_COUNT]> {
        // SAFETY: splice and poll operations reference only file descriptors, no memory, and
        // the descriptors stay open until the completions are reaped (the lane owns the pipe,
        // the caller keeps the file and socket open across the await).
        unsafe { self.ring.submission().push_multiple(entries) }
            .map_err(|_| io::Error::other("splice ring submission queue is full"))?;
        self.in_flight += entries.len();
        self.ring.submit()?;
        let mut results = [None; TAG_COUNT];
        loop {
            for completion in self.ring.completion() {
                self.in_flight = self.in_flight.saturating_sub(1);
                if let Some(slot) = results.get_mut(completion.user_data() as usize) {
                    *slot = Some(completion.result());
                }
            }
            if self.in_flight == 0 {
                self.poll_interval_us = SPLICE_POLL_MIN_US;
                return Ok(results);
            }
            self.wait_notification().await;
        }
    }

    /// Waits until the ring has signalled its eventfd (or, if that cannot be awaited, for a
    /// short growing interval).
    async fn wait_notification(&mut self) {
        if let Notifier::Raw(_) = self.notifier {
            if let Notifier::Raw(eventfd) = std::mem::replace(&mut self.notifier, Notifier::Empty) {
                // SAFETY: the descriptor is owned and handed over to glommio, which closes it.
                self.notifier =
                    Notifier::Glommio(unsafe { BufferedFile::from_raw_fd(eventfd.into_raw_fd()) });
            }
        }
        let waited: Result<(), String> = match &self.notifier {
            Notifier::Glommio(eventfd) => eventfd
                .read_at(0, 8)
                .await
                .map(drop)
                .map_err(|error| error.to_string()),
            Notifier::Raw(_) | Notifier::Empty => Err("eventfd unavailable".to_owned()),
        };
        if let Err(error) = waited {
            tracing::warn!(%error, "waiting on the splice eventfd failed; polling instead");
            glommio::timer::sleep(Duration::from_micros(self.poll_interval_us)).await;
            self.poll_interval_us = (self.poll_interval_us * 2).min(SPLICE_POLL_MAX_US);
        }
    }

    /// Sends the rest of the range by copying: first whatever is already in the pipe (range
    /// bytes `sent..filled`), then the file from `filled` on.
    async fn copy_rest(
        &mut self,
        transfer: &Transfer,
        filled: usize,
        stats: &Cell<SpliceStats>,
    ) -> io::Result<()> {
        let mut buffer = vec![0u8; COPY_CHUNK_BYTES.min(transfer.len)];
        while self.in_pipe > 0 {
            let want = self.in_pipe.min(buffer.len());
            let got = read_pipe(&self.pipe_read, &mut buffer[..want])?;
            self.in_pipe -= got;
            self.send_copied(transfer.socket, &buffer[..got]).await?;
            add_stats(stats, 0, got as u64);
        }
        let mut done = filled;
        while done < transfer.len {
            let want = (transfer.len - done).min(buffer.len());
            let offset = transfer.position + done as u64;
            let got = pread(transfer.file, &mut buffer[..want], offset)?;
            if got == 0 {
                return Err(file_ended(transfer, done));
            }
            self.send_copied(transfer.socket, &buffer[..got]).await?;
            add_stats(stats, 0, got as u64);
            done += got;
        }
        Ok(())
    }

    /// Sends `bytes` with non-blocking `send` calls, waiting for the socket to become writable
    /// through the lane's ring when it is full.
    async fn send_copied(&mut self, socket: RawFd, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            // SAFETY: the pointer and length describe a live, initialised slice.
            let sent = unsafe {
                libc::send(
                    socket,
                    bytes.as_ptr().cast(),
                    bytes.len(),
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            };
            if sent > 0 {
                bytes = &bytes[sent as usize..];
                continue;
            }
            let error = io::Error::last_os_error();
            match error.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => {
                    let poll = opcode::PollAdd::new(types::Fd(socket), libc::POLLOUT as u32)
                        .build()
                        .user_data(TAG_POLL);
                    let results = self.run(&[poll]).await?;
                    check_result(results[TAG_POLL as usize].unwrap_or(0), "poll socket")?;
                }
                _ => return Err(error),
            }
        }
        Ok(())
    }
}

fn new_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are new and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Asks for a pipe of `pipe_bytes` and returns the size actually granted. A refusal (the
/// request exceeds `/proc/sys/fs/pipe-max-size` for an unprivileged process) only costs speed,
/// so it is logged and the default size kept.
fn size_pipe(pipe: &OwnedFd, pipe_bytes: usize) -> io::Result<usize> {
    let requested = libc::c_int::try_from(pipe_bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: F_SETPIPE_SZ takes an int argument and touches no memory of ours.
    let granted = unsafe { libc::fcntl(pipe.as_raw_fd(), libc::F_SETPIPE_SZ, requested) };
    if granted > 0 {
        return Ok(granted as usize);
    }
    let error = io::Error::last_os_error();
    tracing::warn!(%error, pipe_bytes, "F_SETPIPE_SZ refused; using the default pipe size");
    // SAFETY: F_GETPIPE_SZ takes no argument.
    let current = unsafe { libc::fcntl(pipe.as_raw_fd(), libc::F_GETPIPE_SZ) };
    if current > 0 {
        Ok(current as usize)
    } else {
        Err(io::Error::last_os_error())
    }
}

fn read_pipe(pipe: &OwnedFd, buffer: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: the pointer and length describe a live, writable slice.
        let got = unsafe { libc::read(pipe.as_raw_fd(), buffer.as_mut_ptr().cast(), buffer.len()) };
        if got >= 0 {
            return Ok(got as usize);
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// Synchronous pread: the copying fallback is rare (files the kernel cannot splice), so a
/// page-cache read on the executor thread is acceptable there.
fn pread(file: RawFd, buffer: &mut [u8], offset: u64) -> io::Result<usize> {
    loop {
        // SAFETY: the pointer and length describe a live, writable slice.
        let got = unsafe {
            libc::pread(
                file,
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                offset as libc::off_t,
            )
        };
        if got >= 0 {
            return Ok(got as usize);
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

fn is_unsupported(result: i32) -> bool {
    result == -libc::EINVAL || result == -libc::ENOSYS
}

fn check_result(result: i32, operation: &str) -> io::Result<()> {
    if result < 0 {
        Err(os_error(result, operation))
    } else {
        Ok(())
    }
}

/// An io::Error for a negative completion result, with the operation named.
fn os_error(result: i32, operation: &str) -> io::Error {
    let error = io::Error::from_raw_os_error(-result);
    io::Error::new(error.kind(), format!("{operation}: {error}"))
}

fn file_ended(transfer: &Transfer, done: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!(
            "file ended at offset {} inside the range [{}, +{})",
            transfer.position + done as u64,
            transfer.position,
            transfer.len
        ),
    )
}

fn bump_splice_calls(stats: &Cell<SpliceStats>, entries: &[squeue::Entry]) {
    let splices = entries
        .iter()
        .filter(|entry| entry.get_user_data() != TAG_POLL)
        .count() as u64;
    let mut current = stats.get();
    current.splice_calls += splices;
    stats.set(current);
}

fn add_stats(stats: &Cell<SpliceStats>, spliced: u64, copied: u64) {
    let mut current = stats.get();
    current.bytes_spliced += spliced;
    current.bytes_copied += copied;
    stats.set(current);
}
