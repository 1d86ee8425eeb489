//! A FUSE filesystem that keeps in memory both what was written and what was made durable, so
//! a test can cut the power: everything not fsynced is dropped, exactly as a machine losing
//! power drops its page cache and its disk's volatile cache.
//!
//! It models the rules a careful program relies on and nothing kinder:
//! - file data is durable only once an fsync/fdatasync of that file (or an O_DSYNC/O_SYNC write,
//!   for that write's range) covered it; truncation and fallocate are durable with the next
//!   fsync of the file too;
//! - a name (create, rename, unlink) is durable only once its directory is fsynced.
//!
//! The filesystem is flat (one directory, the mount point): a partition log needs no more.
//! Every open file gets FOPEN_DIRECT_IO, so the kernel keeps no page cache of its own for it and
//! every read and write (O_DIRECT ones included) reaches this code. After a power cut, file
//! handles opened before it fail with EIO, so a write still in flight from a killed process
//! cannot land in the state after the cut.
#![allow(dead_code, clippy::unwrap_used)]

use std::{
    collections::{BTreeMap, HashMap},
    ffi::{OsStr, OsString},
    path::Path,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, SystemTime},
};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, OpenFlags,
    RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyWrite, Request, WriteFlags,
};

const ROOT: u64 = 1;
/// Nothing is cached by the kernel: sizes change under it at a power cut.
const TTL: Duration = Duration::ZERO;
/// FALLOC_FL_KEEP_SIZE.
const KEEP_SIZE: i32 = 1;

#[derive(Debug, Default)]
struct FileData {
    current: Vec<u8>,
    durable: Vec<u8>,
}

#[derive(Debug)]
struct Handle {
    ino: u64,
    dsync: bool,
    epoch: u64,
}

#[derive(Debug)]
struct State {
    names: BTreeMap<OsString, u64>,
    durable_names: BTreeMap<OsString, u64>,
    files: HashMap<u64, FileData>,
    handles: HashMap<u64, Handle>,
    next_ino: u64,
    next_handle: u64,
    /// Bumped by every power cut.
    epoch: u64,
    /// fsync and fsyncdir calls served.
    syncs: u64,
    /// Bytes of file data the power cuts dropped (over all files).
    dropped_bytes: u64,
}

impl Default for State {
    fn default() -> Self {
        State {
            names: BTreeMap::new(),
            durable_names: BTreeMap::new(),
            files: HashMap::new(),
            handles: HashMap::new(),
            next_ino: ROOT + 1,
            next_handle: 1,
            epoch: 0,
            syncs: 0,
            dropped_bytes: 0,
        }
    }
}

/// The filesystem; mount it with [`mount`].
#[derive(Debug, Clone, Default)]
pub struct UnsyncedFs {
    state: Arc<Mutex<State>>,
}

/// A mounted [`UnsyncedFs`]: unmounted when dropped.
pub struct Mounted {
    fs: UnsyncedFs,
    mountpoint: std::path::PathBuf,
    /// The FUSE connection's directory under fusectl (`abort` in it ends the connection).
    connection: std::path::PathBuf,
    session: Option<fuser::BackgroundSession>,
}

/// Where the kernel lists FUSE connections (the fusectl filesystem).
const FUSECTL_DIR: &str = "/sys/fs/fuse/connections";

impl Drop for Mounted {
    /// Detaches the mount at once (a failed test may leave files open on it), then aborts the
    /// connection, and only then lets the session end. A descriptor still open on a detached
    /// mount keeps its connection alive: closed later (at the latest when the process exits,
    /// after the session's thread is gone) it would wait in FUSE's flush for an answer no one
    /// gives. Aborted, every later request fails at once. When a test is failing, the session
    /// thread is left to the process's exit rather than joined.
    fn drop(&mut self) {
        if let Ok(path) = std::ffi::CString::new(self.mountpoint.as_os_str().as_encoded_bytes()) {
            // SAFETY: umount2 reads a valid NUL-terminated path and touches no memory of ours.
            unsafe {
                libc::umount2(path.as_ptr(), libc::MNT_DETACH);
            }
        }
        // Gone already when nothing was left open: the connection ended with the unmount.
        match std::fs::write(self.connection.join("abort"), "1") {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => eprintln!(
                "cannot abort the FUSE connection {}: {error}",
                self.connection.display()
            ),
            _ => {}
        }
        if let Some(session) = self.session.take() {
            if std::thread::panicking() {
                std::mem::forget(session);
            } else {
                drop(session);
            }
        }
    }
}

/// Mounts a fresh filesystem at `mountpoint` (an empty directory). Needs root and /dev/fuse.
pub fn mount(mountpoint: &Path) -> std::io::Result<Mounted> {
    let fs = UnsyncedFs::default();
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::FSName("sluice-unsynced".to_string()),
        fuser::MountOption::RW,
    ];
    let session = fuser::spawn_mount(fs.clone(), mountpoint, &config)?;
    let connection = connection_dir(mountpoint)?;
    Ok(Mounted {
        fs,
        mountpoint: mountpoint.to_path_buf(),
        connection,
        session: Some(session),
    })
}

/// The fusectl directory of the FUSE connection mounted at `mountpoint`, named after the
/// mount's device number as the kernel encodes it; mounts fusectl when it is not yet.
fn connection_dir(mountpoint: &Path) -> std::io::Result<std::path::PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let device = std::fs::metadata(mountpoint)?.dev();
    let kernel_device = (libc::major(device) << 20) | libc::minor(device);
    let connections = Path::new(FUSECTL_DIR);
    mount_fusectl_once(connections)?;
    let dir = connections.join(kernel_device.to_string());
    match dir.join("abort").exists() {
        true => Ok(dir),
        false => Err(std::io::Error::other(format!(
            "no fusectl entry {} for the mount at {}",
            dir.display(),
            mountpoint.display()
        ))),
    }
}

/// Mounts fusectl at `connections` unless it is there (an empty directory means it is not, as
/// this process has a connection). Tests mount in parallel: one at a time looks, and a mount
/// that lost a race with another process's (EBUSY) finds fusectl there all the same.
fn mount_fusectl_once(connections: &Path) -> std::io::Result<()> {
    static LOOKING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = LOOKING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if std::fs::read_dir(connections)?.next().is_some() {
        return Ok(());
    }
    match mount_fusectl(connections) {
        Err(error) if error.raw_os_error() == Some(libc::EBUSY) => Ok(()),
        mounted => mounted,
    }
}

fn mount_fusectl(connections: &Path) -> std::io::Result<()> {
    let target = std::ffi::CString::new(connections.as_os_str().as_encoded_bytes())?;
    // SAFETY: every pointer is a valid NUL-terminated string that outlives the call, and
    // fusectl takes no mount data.
    let result = unsafe {
        libc::mount(
            c"none".as_ptr(),
            target.as_ptr(),
            c"fusectl".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    match result {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

impl Mounted {
    /// Drops everything not durable: file contents go back to what their last fsync saw, names
    /// to what the last directory fsync saw. Returns the bytes of file data dropped.
    pub fn cut_power(&self) -> u64 {
        self.fs.cut_power()
    }

    /// fsync and fsyncdir calls served so far.
    pub fn syncs(&self) -> u64 {
        self.fs.lock().syncs
    }
}

impl UnsyncedFs {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn cut_power(&self) -> u64 {
        let mut state = self.lock();
        let state = &mut *state;
        state.epoch += 1;
        state.handles.clear();
        state.names = state.durable_names.clone();
        let alive: Vec<u64> = state.names.values().copied().collect();
        state.files.retain(|ino, _| alive.contains(ino));
        let mut dropped = 0u64;
        for file in state.files.values_mut() {
            let common = file.current.len().min(file.durable.len());
            let changed = file.current[..common]
                .iter()
                .zip(&file.durable[..common])
                .filter(|(now, then)| now != then)
                .count();
            dropped += (changed + file.current.len().saturating_sub(common)) as u64;
            file.current = file.durable.clone();
        }
        state.dropped_bytes += dropped;
        dropped
    }
}

fn attr(ino: u64, size: u64, kind: FileType) -> FileAttr {
    let now = SystemTime::now();
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: now,
        mtime: now,
        ctime: now,
        crtime: now,
        kind,
        perm: if kind == FileType::Directory {
            0o755
        } else {
            0o644
        },
        nlink: if kind == FileType::Directory { 2 } else { 1 },
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

impl State {
    fn file_attr(&self, ino: u64) -> Option<FileAttr> {
        if ino == ROOT {
            return Some(attr(ROOT, 0, FileType::Directory));
        }
        let file = self.files.get(&ino)?;
        Some(attr(ino, file.current.len() as u64, FileType::RegularFile))
    }

    fn open_handle(&mut self, ino: u64, flags: i32) -> u64 {
        let handle = self.next_handle;
        self.next_handle += 1;
        let dsync = flags & (libc::O_DSYNC | libc::O_SYNC) != 0;
        let epoch = self.epoch;
        self.handles.insert(handle, Handle { ino, dsync, epoch });
        handle
    }

    /// The inode behind a handle opened since the last power cut.
    fn handle(&self, handle: FileHandle) -> Result<&Handle, Errno> {
        self.handles
            .get(&handle.0)
            .filter(|handle| handle.epoch == self.epoch)
            .ok_or(Errno::EIO)
    }
}

fn write_at(data: &mut Vec<u8>, offset: usize, bytes: &[u8]) {
    if data.len() < offset + bytes.len() {
        data.resize(offset + bytes.len(), 0);
    }
    data[offset..offset + bytes.len()].copy_from_slice(bytes);
}

impl Filesystem for UnsyncedFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let state = self.lock();
        match state.names.get(name).filter(|_| parent.0 == ROOT) {
            Some(&ino) => match state.file_attr(ino) {
                Some(attr) => reply.entry(&TTL, &attr, Generation(0)),
                None => reply.error(Errno::ENOENT),
            },
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.lock().file_attr(ino.0) {
            Some(attr) => reply.attr(&TTL, &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut state = self.lock();
        if let (Some(size), Some(file)) = (size, state.files.get_mut(&ino.0)) {
            file.current.resize(size as usize, 0);
        }
        match state.file_attr(ino.0) {
            Some(attr) => reply.attr(&TTL, &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn unlink(&self, _req: &Request, _parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.lock().names.remove(name) {
            Some(_) => reply.ok(),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        _parent: INodeNo,
        name: &OsStr,
        _newparent: INodeNo,
        newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let mut state = self.lock();
        match state.names.remove(name) {
            Some(ino) => {
                state.names.insert(newname.to_os_string(), ino);
                reply.ok();
            }
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let mut state = self.lock();
        let Some(file) = state.files.get_mut(&ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        if flags.0 & libc::O_TRUNC != 0 {
            file.current.clear();
        }
        let handle = state.open_handle(ino.0, flags.0);
        reply.opened(FileHandle(handle), FopenFlags::FOPEN_DIRECT_IO);
    }

    fn create(
        &self,
        _req: &Request,
        _parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mut state = self.lock();
        let ino = state.next_ino;
        state.next_ino += 1;
        state.files.insert(ino, FileData::default());
        state.names.insert(name.to_os_string(), ino);
        let handle = state.open_handle(ino, flags);
        let attr = attr(ino, 0, FileType::RegularFile);
        reply.created(
            &TTL,
            &attr,
            Generation(0),
            FileHandle(handle),
            FopenFlags::FOPEN_DIRECT_IO,
        );
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        let state = self.lock();
        let ino = match state.handle(fh) {
            Ok(handle) => handle.ino,
            Err(errno) => return reply.error(errno),
        };
        let data = &state.files[&ino].current;
        let start = (offset as usize).min(data.len());
        let end = (start + size as usize).min(data.len());
        reply.data(&data[start..end]);
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut state = self.lock();
        let (ino, dsync) = match state.handle(fh) {
            Ok(handle) => (handle.ino, handle.dsync),
            Err(errno) => return reply.error(errno),
        };
        let file = state.files.entry(ino).or_default();
        write_at(&mut file.current, offset as usize, data);
        if dsync {
            write_at(&mut file.durable, offset as usize, data);
        }
        reply.written(data.len() as u32);
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: fuser::LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.lock().handles.remove(&fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let mut state = self.lock();
        if let Err(errno) = state.handle(fh) {
            return reply.error(errno);
        }
        state.syncs += 1;
        if let Some(file) = state.files.get_mut(&ino.0) {
            file.durable = file.current.clone();
        }
        reply.ok();
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        if ino.0 != ROOT {
            return reply.error(Errno::ENOTDIR);
        }
        let state = self.lock();
        let mut entries: Vec<(u64, FileType, OsString)> = vec![
            (ROOT, FileType::Directory, ".".into()),
            (ROOT, FileType::Directory, "..".into()),
        ];
        entries.extend(
            state
                .names
                .iter()
                .map(|(name, ino)| (*ino, FileType::RegularFile, name.clone())),
        );
        for (at, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(ino), at as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let mut state = self.lock();
        state.syncs += 1;
        state.durable_names = state.names.clone();
        reply.ok();
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let mut state = self.lock();
        let ino = match state.handle(fh) {
            Ok(handle) => handle.ino,
            Err(errno) => return reply.error(errno),
        };
        match mode {
            0 => {
                let file = state.files.entry(ino).or_default();
                let end = (offset + length) as usize;
                if file.current.len() < end {
                    file.current.resize(end, 0);
                }
                reply.ok();
            }
            KEEP_SIZE => reply.ok(),
            _ => reply.error(Errno::EOPNOTSUPP),
        }
    }
}
