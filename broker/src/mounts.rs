//! The data directory's filesystem, as `/proc/self/mountinfo` describes it: a broker warns at
//! startup when that filesystem discards online (the `discard` mount option).
//!
//! With online discard a filesystem trims every freed extent as it frees it, synchronously on
//! ext4 without a journal. Deleting a segment (retention, a deleted topic, a partition moved
//! away) then holds the device for as long as the trim takes, and every append's write and
//! fdatasync queues behind it. The storage engine frees deleted segments in paced steps
//! (`sluice_storage`'s `reclaim`), which bounds each stall but still spends device time. Measured on this VM (benches/RESULTS.md, thirteenth record):
//! removing a 5 GB file took 1.3-1.4 s with `discard` against 3.5 ms without, and a concurrent
//! 64 KiB write + fdatasync stream saw its fdatasync p99.99 go from 3.1 to 54 ms. The usual
//! remedy, and README's: mount the log directory without `discard` and trim periodically
//! (`fstrim`, e.g. systemd's `fstrim.timer`).

use std::path::{Path, PathBuf};

/// Where the kernel describes this process's mounts.
const MOUNTINFO_PATH: &str = "/proc/self/mountinfo";

/// One line of mountinfo, the fields this module reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// The filesystem type (`ext4`, `xfs`, ...).
    pub fs_type: String,
    /// The device or source.
    pub source: String,
    /// Per-mount and per-superblock options together.
    pub options: Vec<String>,
}

impl Mount {
    /// True when freed extents are trimmed as they are freed: `discard` (or `discard=sync`).
    /// Btrfs's `discard=async` queues trims in the background and is not flagged.
    pub fn discards_online(&self) -> bool {
        self.options
            .iter()
            .any(|option| option == "discard" || option == "discard=sync")
    }
}

/// Parses one mountinfo line: `id parent major:minor root mount-point options [optional...] -
/// fstype source super-options`. `None` for a line of another shape.
fn parse_line(line: &str) -> Option<Mount> {
    let (before, after) = line.split_once(" - ")?;
    let mut fields = before.split(' ');
    let mount_point = fields.nth(4)?;
    let mount_options = fields.next()?;
    let mut after = after.split(' ');
    let fs_type = after.next()?.to_string();
    let source = unescape(after.next()?);
    let super_options = after.next().unwrap_or("");
    let options = mount_options
        .split(',')
        .chain(super_options.split(','))
        .filter(|option| !option.is_empty())
        .map(str::to_string)
        .collect();
    Some(Mount {
        mount_point: PathBuf::from(unescape(mount_point)),
        fs_type,
        source,
        options,
    })
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let escape = bytes.get(at + 1..at + 4).filter(|digits| {
            bytes[at] == b'\\' && digits.iter().all(|digit| (b'0'..=b'7').contains(digit))
        });
        match escape {
            Some(digits) => {
                let value = digits
                    .iter()
                    .fold(0u32, |value, digit| value * 8 + u32::from(digit - b'0'));
                out.push(value as u8);
                at += 4;
            }
            None => {
                out.push(bytes[at]);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount holding `path` (absolute, symlinks resolved) in `mountinfo`: the longest mount
/// point that contains it, the later of two equal ones (a mount stacked over another hides it).
pub fn mount_of(mountinfo: &str, path: &Path) -> Option<Mount> {
    let mut best: Option<Mount> = None;
    for mount in mountinfo.lines().filter_map(parse_line) {
        let longer = best.as_ref().is_none_or(|best| {
            mount.mount_point.components().count() >= best.mount_point.components().count()
        });
        if path.starts_with(&mount.mount_point) && longer {
            best = Some(mount);
        }
    }
    best
}

/// The mount holding `data_dir` (or, before it is created, its nearest existing ancestor) when
/// its filesystem discards online; `None` otherwise, and when the mount cannot be found (not
/// Linux, no /proc).
pub fn online_discard_mount(data_dir: &Path) -> Option<Mount> {
    let path = data_dir
        .ancestors()
        .find_map(|dir| std::fs::canonicalize(dir).ok())?;
    let mountinfo = std::fs::read_to_string(MOUNTINFO_PATH).ok()?;
    mount_of(&mountinfo, &path).filter(Mount::discards_online)
}

/// Logs a warning when the filesystem of `data_dir` discards online.
pub(crate) fn warn_if_online_discard(data_dir: &Path) {
    if let Some(mount) = online_discard_mount(data_dir) {
        tracing::warn!(
            data_dir = %data_dir.display(),
            mount_point = %mount.mount_point.display(),
            device = %mount.source,
            fs_type = %mount.fs_type,
            "the data directory's filesystem is mounted with online discard: it trims every \
             extent it frees, so deleting segments (retention, a deleted topic, a partition \
             moved away) keeps the device busy; the broker frees deleted segments in paced \
             steps, but appends still slow down meanwhile; mount it without `discard` and run \
             `fstrim` periodically instead"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines as this VM's kernel writes them, plus a stacked mount and an escaped name.
    const MOUNTINFO: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard,resv_strict
25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24683772k
30 25 0:27 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=1024k
31 27 259:1 / /var/lib/sluice rw,noatime shared:7 - xfs /dev/nvme0n1p1 rw,attr2,inode64
32 27 259:2 / /mnt/log\\040dir rw,noatime - ext4 /dev/nvme1n1 rw,discard=async
";

    // Proves the deepest mount holding a path is found, options of both kinds are read, and
    // only synchronous online discard is flagged.
    #[test]
    fn the_data_directory_mount_and_its_discard_option_are_found() {
        let root = mount_of(MOUNTINFO, Path::new("/tmp/sluice-data")).unwrap();
        assert_eq!(root.mount_point, PathBuf::from("/"));
        assert_eq!(
            (root.fs_type.as_str(), root.source.as_str()),
            ("ext4", "/dev/vda")
        );
        assert!(root.options.contains(&"relatime".to_string()));
        assert!(root.discards_online());

        let xfs = mount_of(MOUNTINFO, Path::new("/var/lib/sluice/data")).unwrap();
        assert_eq!(xfs.mount_point, PathBuf::from("/var/lib/sluice"));
        assert_eq!(xfs.fs_type, "xfs");
        assert!(!xfs.discards_online());

        // `/var/lib/sluice2` is not under `/var/lib/sluice`: paths match by component.
        let sibling = mount_of(MOUNTINFO, Path::new("/var/lib/sluice2")).unwrap();
        assert_eq!(sibling.mount_point, PathBuf::from("/"));
    }

    // Proves a mount stacked over another wins, and escaped mount points are unescaped.
    #[test]
    fn stacked_and_escaped_mounts_resolve() {
        let shm = mount_of(MOUNTINFO, Path::new("/dev/shm/x")).unwrap();
        assert!(shm.options.contains(&"size=1024k".to_string()));
        let spaced = mount_of(MOUNTINFO, Path::new("/mnt/log dir/data")).unwrap();
        assert_eq!(spaced.mount_point, PathBuf::from("/mnt/log dir"));
        assert!(!spaced.discards_online());
        assert_eq!(parse_line("garbage"), None);
    }

    // Proves this machine's own mountinfo parses: its root mount is found.
    #[test]
    fn this_machines_mountinfo_parses() {
        let mountinfo = std::fs::read_to_string(MOUNTINFO_PATH).unwrap();
        let root = mount_of(&mountinfo, Path::new("/")).unwrap();
        assert_eq!(root.mount_point, PathBuf::from("/"));
        assert!(!root.fs_type.is_empty());
    }
}
