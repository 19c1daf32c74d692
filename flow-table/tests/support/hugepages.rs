//! Test support: 2 MiB huge pages reserved and hugetlbfs mounted at run time, as root, and
//! given back when dropped. Included by `flow-table/tests/hugetlbfs.rs` and by the vRouter's
//! `tests/common` (`#[path]`), so the two hugepage tests reserve the same way.
//!
//! A test that cannot get its pages (not root, or the kernel grants fewer) calls [`skip`]:
//! it writes a banner to the real stderr (libtest does not capture it), and fails instead
//! when `VROUTER_HUGEPAGE_TESTS=require` (set by `ci/test.sh`, which runs as root).

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};

/// The page size these tests use.
pub const PAGE_2M: u64 = 2 << 20;

/// The environment variable that turns a skipped hugepage test into a failure.
pub const REQUIRE_ENV: &str = "VROUTER_HUGEPAGE_TESTS";

/// The 2 MiB pool's page count (the 2 MiB counterpart of `/proc/sys/vm/nr_hugepages`,
/// right even where the default huge page size is 1 GiB).
fn nr_path() -> PathBuf {
    flow_table::pool_dir(PAGE_2M).join("nr_hugepages")
}

fn read_nr() -> Result<u64, String> {
    let p = nr_path();
    let t = std::fs::read_to_string(&p).map_err(|e| format!("reading {}: {e}", p.display()))?;
    t.trim().parse().map_err(|e| format!("{}: {t:?}: {e}", p.display()))
}

fn write_nr(n: u64) -> Result<(), String> {
    let p = nr_path();
    std::fs::write(&p, n.to_string()).map_err(|e| format!("writing {n} to {}: {e}", p.display()))
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Reports that hugepage test `test` did not run, and why: a banner on the real stderr, or a
/// panic when [`REQUIRE_ENV`] is `require`.
pub fn skip(test: &str, why: &str) {
    if std::env::var(REQUIRE_ENV).as_deref() == Ok("require") {
        panic!("{test}: cannot run ({why}) and {REQUIRE_ENV}=require");
    }
    let bar = "!".repeat(78);
    // The real stderr: libtest captures eprintln!, not writes to the handle.
    let _ = writeln!(
        std::io::stderr(),
        "\n{bar}\n!! HUGEPAGE TEST NOT RUN: {test}\n!! {why}\n!! (run as root; {REQUIRE_ENV}=require makes this a failure)\n{bar}\n"
    );
}

/// 2 MiB pages made available for a test: the pool grown by what was missing, shrunk back
/// by as much when dropped (pages still in use then become surplus pages, freed on release).
pub struct Reservation {
    /// Pages this reservation added to the pool.
    pub added: u64,
}

impl Reservation {
    /// At least `pages` 2 MiB pages available (free, not reserved): grows the pool by the
    /// shortfall. An error when not root or when the kernel grants fewer (the pool is then
    /// restored).
    pub fn ensure(pages: u64) -> Result<Reservation, String> {
        let pool = flow_table::hugepage_pool(PAGE_2M).ok_or("the kernel has no 2 MiB huge page pool")?;
        if pool.available() >= pages {
            return Ok(Reservation { added: 0 });
        }
        if !is_root() {
            return Err(format!(
                "{} of the {pages} 2 MiB huge pages needed are available and only root can reserve more",
                pool.available()
            ));
        }
        let before = read_nr()?;
        write_nr(before + (pages - pool.available()))?;
        let r = Reservation { added: read_nr()?.saturating_sub(before) };
        let now = flow_table::hugepage_pool(PAGE_2M).map_or(0, |p| p.available());
        if now < pages {
            return Err(format!(
                "the kernel granted {} more 2 MiB pages of the {} asked for ({now} available, {pages} needed)",
                r.added,
                pages - pool.available()
            ));
        }
        Ok(r)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.added > 0 {
            if let Ok(now) = read_nr() {
                let _ = write_nr(now.saturating_sub(self.added));
            }
        }
    }
}

/// A hugetlbfs mounted on a fresh temporary directory; unmounted (after removing what the
/// test left in it) and removed when dropped.
pub struct TempMount {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl TempMount {
    /// `mount -t hugetlbfs -o <options> none <tmpdir>`.
    pub fn new(options: &str) -> Result<TempMount, String> {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::Builder::new().prefix("hugetlbfs-test").tempdir().map_err(|e| e.to_string())?;
        let path = dir.path().to_path_buf();
        let target = CString::new(path.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
        let data = CString::new(options).map_err(|e| e.to_string())?;
        // SAFETY: valid NUL-terminated strings that outlive the call.
        let rc =
            unsafe { libc::mount(c"none".as_ptr(), target.as_ptr(), c"hugetlbfs".as_ptr(), 0, data.as_ptr().cast()) };
        if rc != 0 {
            return Err(format!(
                "mount -t hugetlbfs -o {options} none {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            ));
        }
        Ok(TempMount { path, _dir: dir })
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempMount {
    fn drop(&mut self) {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        if let Ok(rd) = std::fs::read_dir(&self.path) {
            for e in rd.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let Ok(target) = CString::new(self.path.as_os_str().as_bytes()) else { return };
        // SAFETY: a valid NUL-terminated path.
        if unsafe { libc::umount2(target.as_ptr(), 0) } != 0 {
            // Still busy (a mapping outlives the test): detach it; the kernel frees the
            // pages when the last user goes.
            // SAFETY: as above.
            unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        }
    }
}
