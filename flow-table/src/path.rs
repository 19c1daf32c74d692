//! Where the table file lives: a hugetlbfs mount with room when one exists, else the run
//! directory. (The process identity of the header's owner is `shm`'s.)
//!
//! A hugetlbfs mount's room: the free pages of its page size in the kernel's pool
//! (`/sys/kernel/mm/hugepages/hugepages-<N>kB`: `free_hugepages` less `resv_hugepages`, the
//! pages already promised to mappings), and when the mount has a `size=` limit, no more than
//! what `statvfs` says is left under that limit. A mount without `size=` (how systemd mounts
//! `/dev/hugepages`) reports 0 free blocks to `statvfs`: only the pool tells its room.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Name of the table file (or of the symlink to it) in the run directory.
pub const FLOW_FILE_NAME: &str = "flow";

/// Where the kernel describes its huge page pools, one `hugepages-<N>kB` directory per size.
pub const HUGEPAGES_SYSFS: &str = "/sys/kernel/mm/hugepages";

/// `statfs` `f_type` of a hugetlbfs.
pub const HUGETLBFS_MAGIC: i64 = 0x9584_58f6;

/// A mounted hugetlbfs and its free space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HugetlbfsMount {
    /// The mount point.
    pub path: PathBuf,
    /// Huge page size (the `pagesize=` mount option, else the filesystem block size).
    pub page_size: u64,
    /// Free bytes on the mount: the free pages of its size in the kernel's pool, at most what
    /// is left under its `size=` limit when it has one.
    pub free_bytes: u64,
    /// Whether the mount has a `size=` limit.
    pub size_limited: bool,
}

/// The options of a hugetlbfs mount that decide its room.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HugetlbfsOptions {
    /// `pagesize=` in bytes (the kernel always shows it; absent: the default huge page size).
    pub page_size: Option<u64>,
    /// A `size=` option is present (bytes or a percentage of the pool).
    pub size_limited: bool,
}

/// One huge page size's pool (`/sys/kernel/mm/hugepages/hugepages-<N>kB`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HugepagePool {
    /// Page size in bytes.
    pub page_size: u64,
    /// `nr_hugepages`: pages in the pool.
    pub total: u64,
    /// `free_hugepages`: pages not in use.
    pub free: u64,
    /// `resv_hugepages`: free pages already promised to mappings that have not faulted them in.
    pub reserved: u64,
}

impl HugepagePool {
    /// Pages a new mapping can still get: free less reserved.
    pub fn available(&self) -> u64 {
        self.free.saturating_sub(self.reserved)
    }

    /// [`HugepagePool::available`] in bytes.
    pub fn available_bytes(&self) -> u64 {
        self.available().saturating_mul(self.page_size)
    }
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

/// A size as the kernel's `memparse` reads it: a decimal number with an optional `K`, `M`,
/// `G`, `T` (binary) suffix, either case (`2M`, `1024M`, `1G`, `4194304`).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (digits, shift) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 10),
        b'm' | b'M' => (&s[..s.len() - 1], 20),
        b'g' | b'G' => (&s[..s.len() - 1], 30),
        b't' | b'T' => (&s[..s.len() - 1], 40),
        _ => (s, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(1u64 << shift)
}

/// The options of a hugetlbfs mount (the fourth `/proc/mounts` field,
/// `rw,relatime,pagesize=2M,size=4194304`) that decide its room.
pub fn parse_hugetlbfs_options(options: &str) -> HugetlbfsOptions {
    let mut o = HugetlbfsOptions::default();
    for opt in options.split(',') {
        let (k, v) = opt.split_once('=').unwrap_or((opt, ""));
        match k {
            "pagesize" => o.page_size = parse_size(v),
            "size" => o.size_limited = true,
            _ => {}
        }
    }
    o
}

/// Mount points of type `hugetlbfs` in a `/proc/mounts` text, with their options.
pub(crate) fn parse_hugetlbfs_mounts(mounts: &str) -> Vec<(PathBuf, HugetlbfsOptions)> {
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_dev, mnt, fstype) = (f.next()?, f.next()?, f.next()?);
            let options = f.next().unwrap_or("");
            (fstype == "hugetlbfs")
                .then(|| (PathBuf::from(unescape_mount_field(mnt)), parse_hugetlbfs_options(options)))
        })
        .collect()
}

/// The page size (bytes) of a pool directory name under [`HUGEPAGES_SYSFS`]
/// (`hugepages-2048kB` -> 2 MiB).
pub fn parse_pool_dir_name(name: &str) -> Option<u64> {
    let kb = name.strip_prefix("hugepages-")?.strip_suffix("kB")?;
    if kb.is_empty() || !kb.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    kb.parse::<u64>().ok()?.checked_mul(1024).filter(|&b| b > 0)
}

/// The pool directory name of a page size (2 MiB -> `hugepages-2048kB`).
pub fn pool_dir_name(page_size: u64) -> String {
    format!("hugepages-{}kB", page_size / 1024)
}

/// The sysfs directory of the pool of `page_size` pages.
pub fn pool_dir(page_size: u64) -> PathBuf {
    Path::new(HUGEPAGES_SYSFS).join(pool_dir_name(page_size))
}

fn read_count(dir: &Path, file: &str) -> Option<u64> {
    std::fs::read_to_string(dir.join(file)).ok()?.trim().parse().ok()
}

/// The kernel's pool of `page_size` pages; `None` when the kernel has no such page size.
pub fn hugepage_pool(page_size: u64) -> Option<HugepagePool> {
    let dir = pool_dir(page_size);
    Some(HugepagePool {
        page_size,
        total: read_count(&dir, "nr_hugepages")?,
        free: read_count(&dir, "free_hugepages")?,
        reserved: read_count(&dir, "resv_hugepages").unwrap_or(0),
    })
}

/// Every huge page pool of this system, smallest page size first.
pub fn hugepage_pools() -> Vec<HugepagePool> {
    let Ok(rd) = std::fs::read_dir(HUGEPAGES_SYSFS) else {
        return Vec::new();
    };
    let mut v: Vec<HugepagePool> =
        rd.filter_map(|e| parse_pool_dir_name(e.ok()?.file_name().to_str()?)).filter_map(hugepage_pool).collect();
    v.sort_by_key(|p| p.page_size);
    v
}

/// The room of a hugetlbfs mount: with a `size=` limit, the smaller of what `statvfs` says
/// is left under the limit and the pool's free bytes (`statvfs` alone when the pool is
/// unknown); without one, the pool's free bytes (0 when unknown: `statvfs` reads 0 there).
pub fn mount_free_bytes(size_limited: bool, statvfs_free: u64, pool_free: Option<u64>) -> u64 {
    match (size_limited, pool_free) {
        (true, Some(p)) => statvfs_free.min(p),
        (true, None) => statvfs_free,
        (false, p) => p.unwrap_or(0),
    }
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

/// Whether `path` lies on a hugetlbfs (`statfs` type), `None` when it cannot be read.
pub fn is_on_hugetlbfs(path: &Path) -> Option<bool> {
    let c = CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statfs is plain old data, all-zero is a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path, `st` a valid out-pointer.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_type as i64 == HUGETLBFS_MAGIC)
}

/// The hugetlbfs mounts of this system (in `/proc/mounts` order) with their free space.
pub fn hugetlbfs_mounts() -> Vec<HugetlbfsMount> {
    let text = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    parse_hugetlbfs_mounts(&text)
        .into_iter()
        .filter_map(|(path, opts)| {
            let (block, statvfs_free) = fs_space(&path)?;
            let page_size = opts.page_size.unwrap_or(block);
            let pool_free = hugepage_pool(page_size).map(|p| p.available_bytes());
            let free_bytes = mount_free_bytes(opts.size_limited, statvfs_free, pool_free);
            Some(HugetlbfsMount { path, page_size, free_bytes, size_limited: opts.size_limited })
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

/// The first of `mounts` with room for a file of `bytes` bytes (rounded up to its page size).
pub fn pick_mount(mounts: &[HugetlbfsMount], bytes: u64) -> Option<&HugetlbfsMount> {
    mounts.iter().find(|m| {
        let need = bytes.div_ceil(m.page_size.max(1)).saturating_mul(m.page_size);
        need > 0 && m.free_bytes >= need
    })
}

/// Picks the table path for a table of `bytes` bytes: the first hugetlbfs mount (in
/// `/proc/mounts` order, as tf's DPDK vRouter does) with at least `bytes` free, as
/// `<mount>/flow.<run dir>`; else `<run_dir>/flow`.
pub(crate) fn default_path_sized(run_dir: &Path, bytes: u64) -> PathBuf {
    match pick_mount(&hugetlbfs_mounts(), bytes) {
        Some(m) => m.path.join(file_name_for_run_dir(run_dir)),
        None => run_dir.join(FLOW_FILE_NAME),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn parses_hugetlbfs_mounts_with_escapes_and_options() {
        let text = "proc /proc proc rw 0 0\n\
                    hugetlbfs /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0\n\
                    none /mnt/huge\\0401G hugetlbfs rw,pagesize=1024M,size=2147483648 0 0\n\
                    tmpfs /dev/shm tmpfs rw,size=4194304 0 0\n";
        assert_eq!(
            parse_hugetlbfs_mounts(text),
            vec![
                (PathBuf::from("/dev/hugepages"), HugetlbfsOptions { page_size: Some(2 * MIB), size_limited: false }),
                (PathBuf::from("/mnt/huge 1G"), HugetlbfsOptions { page_size: Some(1024 * MIB), size_limited: true }),
            ]
        );
    }

    #[test]
    fn parses_mount_options() {
        let o = parse_hugetlbfs_options("rw,relatime,pagesize=2M");
        assert_eq!(o, HugetlbfsOptions { page_size: Some(2 * MIB), size_limited: false });
        // As the kernel shows a size-limited mount: size and min_size in bytes.
        let o = parse_hugetlbfs_options("rw,relatime,pagesize=2M,size=4194304,min_size=2097152");
        assert_eq!(o, HugetlbfsOptions { page_size: Some(2 * MIB), size_limited: true });
        // min_size alone is a reservation, not a limit; mode and uid do not matter.
        let o = parse_hugetlbfs_options("rw,mode=1770,gid=0,pagesize=1G,min_size=1073741824");
        assert_eq!(o, HugetlbfsOptions { page_size: Some(1 << 30), size_limited: false });
        // As given to mount(8): a percentage of the pool is a limit too.
        assert!(parse_hugetlbfs_options("size=50%").size_limited);
        assert_eq!(parse_hugetlbfs_options("rw"), HugetlbfsOptions::default());
        assert_eq!(parse_hugetlbfs_options("pagesize=bogus").page_size, None);
    }

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_size("2M"), Some(2 * MIB));
        assert_eq!(parse_size("1024M"), Some(1 << 30));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        assert_eq!(parse_size("64k"), Some(64 << 10));
        assert_eq!(parse_size("4194304"), Some(4 * MIB));
        for bad in ["", "M", "2X", "-2M", "2.5M", "18446744073709551615K"] {
            assert_eq!(parse_size(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn parses_pool_dir_names() {
        assert_eq!(parse_pool_dir_name("hugepages-2048kB"), Some(2 * MIB));
        assert_eq!(parse_pool_dir_name("hugepages-1048576kB"), Some(1 << 30));
        assert_eq!(parse_pool_dir_name("hugepages-64kB"), Some(64 << 10));
        for bad in ["hugepages-kB", "hugepages-2048", "hugepages-0kB", "hugepages-2MkB", "nr_hugepages", ""] {
            assert_eq!(parse_pool_dir_name(bad), None, "{bad:?}");
        }
        assert_eq!(pool_dir_name(2 * MIB), "hugepages-2048kB");
        assert_eq!(pool_dir_name(1 << 30), "hugepages-1048576kB");
        for size in [2 * MIB, 1 << 30, 64 << 10] {
            assert_eq!(parse_pool_dir_name(&pool_dir_name(size)), Some(size));
        }
    }

    #[test]
    fn free_bytes_of_a_mount() {
        // No size=: statvfs reads 0, the pool decides.
        assert_eq!(mount_free_bytes(false, 0, Some(512 * 2 * MIB)), 512 * 2 * MIB);
        assert_eq!(mount_free_bytes(false, 0, None), 0);
        // size=: the smaller of the limit's room and the pool.
        assert_eq!(mount_free_bytes(true, 4 * MIB, Some(512 * 2 * MIB)), 4 * MIB);
        assert_eq!(mount_free_bytes(true, 1 << 30, Some(2 * MIB)), 2 * MIB);
        assert_eq!(mount_free_bytes(true, 4 * MIB, None), 4 * MIB);
        let pool = HugepagePool { page_size: 2 * MIB, total: 10, free: 6, reserved: 2 };
        assert_eq!((pool.available(), pool.available_bytes()), (4, 8 * MIB));
        let over = HugepagePool { reserved: 7, ..pool };
        assert_eq!(over.available(), 0);
    }

    #[test]
    fn picks_the_first_mount_with_room_in_whole_pages() {
        let m = |path: &str, page_size: u64, free_bytes: u64| HugetlbfsMount {
            path: PathBuf::from(path),
            page_size,
            free_bytes,
            size_limited: false,
        };
        let mounts = [m("/a", 1 << 30, 0), m("/b", 2 * MIB, 4 * MIB), m("/c", 2 * MIB, 64 * MIB)];
        // 3 MiB needs two 2 MiB pages: /b holds it; 5 MiB needs three: only /c.
        assert_eq!(pick_mount(&mounts, 3 * MIB).map(|m| m.path.clone()), Some("/b".into()));
        assert_eq!(pick_mount(&mounts, 5 * MIB).map(|m| m.path.clone()), Some("/c".into()));
        assert_eq!(pick_mount(&mounts, 65 * MIB), None);
        assert_eq!(pick_mount(&mounts, 0), None);
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

    #[test]
    fn reads_this_systems_pools() {
        // Every pool the kernel lists parses, and its counts are consistent.
        let names: Vec<String> = std::fs::read_dir(HUGEPAGES_SYSFS)
            .map(|rd| rd.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
            .unwrap_or_default();
        let pools = hugepage_pools();
        assert_eq!(pools.len(), names.iter().filter(|n| n.starts_with("hugepages-")).count(), "{names:?}");
        for p in &pools {
            assert_eq!(hugepage_pool(p.page_size).map(|q| q.page_size), Some(p.page_size));
        }
    }
}
