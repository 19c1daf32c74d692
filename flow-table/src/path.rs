//! Where the table file lives: a hugetlbfs mount with room when one exists, else the run
//! directory. (The process identity of the header's owner is `shm`'s.)

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Name of the table file (or of the symlink to it) in the run directory.
pub const FLOW_FILE_NAME: &str = "flow";

/// A mounted hugetlbfs and its free space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HugetlbfsMount {
    /// The mount point.
    pub path: PathBuf,
    /// Huge page size (the filesystem block size).
    pub page_size: u64,
    /// Free bytes on the mount (free huge pages times the page size).
    pub free_bytes: u64,
}

/// Decodes the octal escapes (`\040` for a space, ...) of a `/proc/mounts` field.
fn unescape_mount_field(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mount points of type `hugetlbfs` in a `/proc/mounts` text.
pub(crate) fn parse_hugetlbfs_mounts(mounts: &str) -> Vec<PathBuf> {
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_dev, mnt, fstype) = (f.next()?, f.next()?, f.next()?);
            (fstype == "hugetlbfs").then(|| PathBuf::from(unescape_mount_field(mnt)))
        })
        .collect()
}

/// `(block size, bytes available)` of the filesystem holding `path`.
pub(crate) fn fs_space(path: &Path) -> Option<(u64, u64)> {
    let c = CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs is plain old data, all-zero is a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path, `st` a valid out-pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let bsize = st.f_bsize as u64;
    let frsize = if st.f_frsize != 0 { st.f_frsize as u64 } else { bsize };
    Some((bsize.max(1), (st.f_bavail as u64).saturating_mul(frsize)))
}

/// The hugetlbfs mounts of this system with their free space.
pub fn hugetlbfs_mounts() -> Vec<HugetlbfsMount> {
    let text = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    parse_hugetlbfs_mounts(&text)
        .into_iter()
        .filter_map(|p| {
            let (page_size, free_bytes) = fs_space(&p)?;
            Some(HugetlbfsMount { path: p, page_size, free_bytes })
        })
        .collect()
}

/// A file name derived from the run directory, so two vRouters with different run
/// directories sharing a hugetlbfs mount do not collide: `flow.` + the absolute run dir
/// with `/` and other unusual characters replaced by `_` (`/tmp/vr1` -> `flow.tmp_vr1`).
pub fn file_name_for_run_dir(run_dir: &Path) -> String {
    let abs = if run_dir.is_absolute() {
        run_dir.to_path_buf()
    } else {
        std::env::current_dir().map(|d| d.join(run_dir)).unwrap_or_else(|_| run_dir.to_path_buf())
    };
    let s: String = abs
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' })
        .collect();
    let s = s.trim_matches('_');
    format!("{FLOW_FILE_NAME}.{}", if s.is_empty() { "root" } else { s })
}

/// Picks the table path for a table of `bytes` bytes: the first hugetlbfs mount (in
/// `/proc/mounts` order, as tf's DPDK vRouter does) with at least `bytes` free, as
/// `<mount>/flow.<run dir>`; else `<run_dir>/flow`.
pub(crate) fn default_path_sized(run_dir: &Path, bytes: u64) -> PathBuf {
    for m in hugetlbfs_mounts() {
        let need = bytes.div_ceil(m.page_size).saturating_mul(m.page_size);
        if m.free_bytes >= need && need > 0 {
            return m.path.join(file_name_for_run_dir(run_dir));
        }
    }
    run_dir.join(FLOW_FILE_NAME)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hugetlbfs_mounts_with_escapes() {
        let text = "proc /proc proc rw 0 0\n\
                    hugetlbfs /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0\n\
                    none /mnt/huge\\0401G hugetlbfs rw,pagesize=1024M 0 0\n\
                    tmpfs /dev/shm tmpfs rw 0 0\n";
        assert_eq!(parse_hugetlbfs_mounts(text), vec![PathBuf::from("/dev/hugepages"), PathBuf::from("/mnt/huge 1G")]);
    }

    #[test]
    fn file_names_follow_the_run_dir() {
        assert_eq!(file_name_for_run_dir(Path::new("/tmp/vrouter-demo")), "flow.tmp_vrouter-demo");
        assert_eq!(file_name_for_run_dir(Path::new("/var/run/vr 1/")), "flow.var_run_vr_1");
        assert_ne!(file_name_for_run_dir(Path::new("/tmp/a")), file_name_for_run_dir(Path::new("/tmp/b")));
    }

    #[test]
    fn falls_back_to_the_run_dir_without_room() {
        // No hugetlbfs mount can hold u64::MAX / 2 bytes.
        let p = default_path_sized(Path::new("/tmp/x"), u64::MAX / 2);
        assert_eq!(p, PathBuf::from("/tmp/x/flow"));
    }
}
