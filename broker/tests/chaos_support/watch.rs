//! Waits for a file to appear in a directory with inotify, so the nemesis can act within
//! microseconds of the event (a cleaner's segment swap on a tmpfs lasts well under a
//! millisecond: polling the directory almost always misses it).

use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Instant;

/// Room for a batch of inotify events (each a header plus a name of up to NAME_MAX bytes).
const EVENT_BUFFER_BYTES: usize = 64 * 1024;

/// An inotify instance watching one directory for created or renamed-in entries; closed on
/// drop.
pub struct DirWatch {
    fd: libc::c_int,
}

impl DirWatch {
    /// Watches `dir`; `None` when inotify is unavailable or the directory is missing.
    pub fn new(dir: &Path) -> Option<DirWatch> {
        let path = CString::new(dir.as_os_str().as_bytes()).ok()?;
        // SAFETY: plain syscalls on a fresh descriptor and a NUL-terminated path.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
        if fd < 0 {
            return None;
        }
        let watch = DirWatch { fd };
        let mask = libc::IN_CREATE | libc::IN_MOVED_TO;
        // SAFETY: `fd` is our inotify descriptor, `path` outlives the call.
        let added = unsafe { libc::inotify_add_watch(fd, path.as_ptr(), mask) };
        (added >= 0).then_some(watch)
    }

    /// Waits until an entry whose name satisfies `wanted` is created, at most until
    /// `deadline`. Returns whether one was.
    pub fn wait_for(&self, wanted: impl Fn(&str) -> bool, deadline: Instant) -> bool {
        let mut buffer = vec![0u8; EVENT_BUFFER_BYTES];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let mut poll = libc::pollfd {
                fd: self.fd,
                events: libc::POLLIN,
                revents: 0,
            };
            let timeout_ms = libc::c_int::try_from(left.as_millis().max(1)).unwrap_or(i32::MAX);
            // SAFETY: one valid pollfd.
            if unsafe { libc::poll(&mut poll, 1, timeout_ms) } <= 0 {
                continue;
            }
            // SAFETY: reads into a buffer we own, of the length given.
            let read = unsafe { libc::read(self.fd, buffer.as_mut_ptr().cast(), buffer.len()) };
            let Ok(read) = usize::try_from(read) else {
                continue;
            };
            if event_names(&buffer[..read]).iter().any(|name| wanted(name)) {
                return true;
            }
        }
    }
}

impl Drop for DirWatch {
    fn drop(&mut self) {
        // SAFETY: closes the descriptor this value owns.
        unsafe {
            libc::close(self.fd);
        }
    }
}

/// The entry names of a buffer of inotify events.
fn event_names(mut bytes: &[u8]) -> Vec<String> {
    let header = std::mem::size_of::<libc::inotify_event>();
    let mut names = Vec::new();
    while bytes.len() >= header {
        // SAFETY: the kernel wrote whole events; read_unaligned copes with any alignment.
        let event: libc::inotify_event = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
        let len = usize::try_from(event.len).unwrap_or(0);
        let Some(name) = bytes.get(header..header + len) else {
            break;
        };
        if let Ok(name) = CStr::from_bytes_until_nul(name) {
            names.push(name.to_string_lossy().into_owned());
        }
        bytes = &bytes[header + len..];
    }
    names
}
