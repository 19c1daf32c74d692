//! 2 MiB hugepages for a benchmark run, reserved at run time (as root) and given back after.
//!
//! The project's machines reserve none at boot, but root can: `echo N >
//! /proc/sys/vm/nr_hugepages`, then DPDK needs a hugetlbfs mount (it finds mounts in
//! `/proc/mounts` by itself). [`Reservation::take`] raises the pool so that at least the
//! requested number of pages is free, with the project's `ci/setup.sh --deps-only --hugepages
//! N` when there is one (it grows the pool to N and mounts hugetlbfs at `/dev/hugepages`),
//! else by itself (writing `nr_hugepages`, mounting hugetlbfs on a private directory when
//! nothing is mounted). [`Reservation::release`] (also on drop) puts the pool size back, if
//! nobody else changed it meanwhile, and unmounts what it mounted itself.

use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::Command;

const NR_HUGEPAGES: &str = "/proc/sys/vm/nr_hugepages";

/// The default-size hugepage pool as `/proc/meminfo` shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Pool {
    /// `HugePages_Total`.
    pub total: u64,
    /// `HugePages_Free`.
    pub free: u64,
    /// `HugePages_Rsvd` (promised to mappings, not yet faulted in: not free for others).
    pub reserved: u64,
    /// `Hugepagesize`, KiB.
    pub page_kib: u64,
}

impl Pool {
    /// Pages a new user can take: free less reserved.
    pub fn available(&self) -> u64 {
        self.free.saturating_sub(self.reserved)
    }
}

/// Parses the hugepage lines of `/proc/meminfo`.
pub fn parse_meminfo(s: &str) -> Pool {
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l[name.len()..].split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Pool {
        total: field("HugePages_Total:"),
        free: field("HugePages_Free:"),
        reserved: field("HugePages_Rsvd:"),
        page_kib: field("Hugepagesize:"),
    }
}

/// The pool now.
pub fn pool() -> Result<Pool> {
    Ok(parse_meminfo(&std::fs::read_to_string("/proc/meminfo").context("reading /proc/meminfo")?))
}

/// The first hugetlbfs mount of the default page size in a `/proc/mounts` text (a mount
/// with a `pagesize=` other than `page_kib` does not serve the default pool).
pub fn find_mount(mounts: &str, page_kib: u64) -> Option<PathBuf> {
    mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 4 || f[2] != "hugetlbfs" {
            return None;
        }
        let size_ok = f[3].split(',').filter_map(|o| o.strip_prefix("pagesize=")).all(|p| {
            let p = p.to_ascii_uppercase();
            let kib = if let Some(m) = p.strip_suffix('M') {
                m.parse::<u64>().ok().map(|v| v * 1024)
            } else if let Some(g) = p.strip_suffix('G') {
                g.parse::<u64>().ok().map(|v| v * 1024 * 1024)
            } else {
                p.strip_suffix('K').and_then(|k| k.parse::<u64>().ok())
            };
            kib == Some(page_kib)
        });
        // /proc/mounts escapes a space in a path as \040.
        size_ok.then(|| PathBuf::from(f[1].replace("\\040", " ")))
    })
}

/// What a run got: hugepages (and where they are mounted) or a reason to run without.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// Pages were available and a hugetlbfs mount exists: run on hugepages.
    pub huge: bool,
    /// The pool before anything was changed.
    pub before: Pool,
    /// The pool after the reservation.
    pub after: Pool,
    /// The hugetlbfs mount DPDK will find.
    pub mount: Option<String>,
    /// Why the run falls back to `--no-huge`, if it does.
    pub fallback_reason: Option<String>,
    /// The set-up command that reserved the pages, if one did.
    pub command: Option<String>,
}

/// A reservation made by [`Reservation::take`], undone by [`Reservation::release`].
pub struct Reservation {
    /// What was found and done.
    pub outcome: Outcome,
    /// `nr_hugepages` before we raised it, and the value we set.
    raised: Option<(u64, u64)>,
    /// The directory we mounted hugetlbfs on.
    mounted: Option<PathBuf>,
}

impl Reservation {
    /// Makes `pages` default-size hugepages available (raising `nr_hugepages` by what is
    /// missing) and makes sure a hugetlbfs mount exists (mounting one on `mount_dir` if
    /// none is). `pages == 0` asks for no hugepages. Never fails for lack of pages: the
    /// outcome then says `huge: false` and why.
    pub fn take(pages: u64, mount_dir: &Path, setup_script: Option<&Path>) -> Reservation {
        let before = pool().unwrap_or_default();
        let mut r = Reservation {
            outcome: Outcome { huge: false, before, after: before, mount: None, fallback_reason: None, command: None },
            raised: None,
            mounted: None,
        };
        if pages == 0 {
            r.outcome.fallback_reason = Some("--hugepages 0".into());
            return r;
        }
        if before.available() < pages {
            let want = before.total + (pages - before.available());
            let script = setup_script.filter(|s| std::fs::read_to_string(s).is_ok_and(|t| t.contains("--hugepages")));
            let by_script = script.is_some_and(|s| {
                let argv = [
                    "bash".to_string(),
                    s.display().to_string(),
                    "--deps-only".into(),
                    "--hugepages".into(),
                    want.to_string(),
                ];
                println!("$ {}", crate::shell_line(&argv));
                r.outcome.command = Some(crate::shell_line(&argv));
                Command::new(&argv[0]).args(&argv[1..]).status().is_ok_and(|st| st.success())
            });
            if by_script {
                r.raised = Some((before.total, pool().map(|p| p.total).unwrap_or(want)));
            } else {
                match std::fs::write(NR_HUGEPAGES, want.to_string()) {
                    Ok(()) => r.raised = Some((before.total, want)),
                    Err(e) => {
                        r.outcome.fallback_reason = Some(format!("cannot write {NR_HUGEPAGES} ({e}): not root?"));
                        return r;
                    }
                }
            }
        }
        let after = pool().unwrap_or_default();
        r.outcome.after = after;
        if after.available() < pages {
            r.outcome.fallback_reason = Some(format!(
                "only {} of {pages} hugepages available after raising nr_hugepages (memory fragmented or short)",
                after.available()
            ));
            return r;
        }
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        let mount = match find_mount(&mounts, after.page_kib) {
            Some(m) => m,
            None => match mount_hugetlbfs(mount_dir) {
                Ok(()) => {
                    r.mounted = Some(mount_dir.to_path_buf());
                    mount_dir.to_path_buf()
                }
                Err(e) => {
                    r.outcome.fallback_reason = Some(format!("no hugetlbfs mount and mounting one failed: {e:#}"));
                    return r;
                }
            },
        };
        r.outcome.mount = Some(mount.display().to_string());
        r.outcome.huge = true;
        r
    }

    /// Gives back what [`Reservation::take`] changed: the pool size (unless someone else
    /// changed it meanwhile) and the mount.
    pub fn release(&mut self) {
        if let Some(dir) = self.mounted.take() {
            let _ = Command::new("umount").arg(&dir).status();
            let _ = std::fs::remove_dir(&dir);
        }
        if let Some((old, set)) = self.raised.take() {
            match pool() {
                Ok(p) if p.total == set => {
                    let _ = std::fs::write(NR_HUGEPAGES, old.to_string());
                }
                _ => eprintln!("vrouter-bench: nr_hugepages changed by someone else meanwhile; leaving it as it is"),
            }
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.release();
    }
}

fn mount_hugetlbfs(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let st = Command::new("mount")
        .args(["-t", "hugetlbfs", "-o", "pagesize=2M", "nodev"])
        .arg(dir)
        .status()
        .context("running mount")?;
    if !st.success() {
        bail!("mount -t hugetlbfs nodev {} failed ({st})", dir.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_fields() {
        let s = "MemTotal: 1 kB\nHugePages_Total:    1024\nHugePages_Free:      900\nHugePages_Rsvd:       \
                 100\nHugePages_Surp:        0\nHugepagesize:       2048 kB\n";
        let p = parse_meminfo(s);
        assert_eq!(p, Pool { total: 1024, free: 900, reserved: 100, page_kib: 2048 });
        assert_eq!(p.available(), 800);
        assert_eq!(parse_meminfo("").available(), 0);
    }

    #[test]
    fn mounts_of_the_default_size_only() {
        let m = "sysfs /sys sysfs rw 0 0\n\
                 nodev /mnt/huge1g hugetlbfs rw,relatime,pagesize=1024M 0 0\n\
                 hugetlbfs /dev/huge\\040pages hugetlbfs rw,relatime,pagesize=2M 0 0\n";
        assert_eq!(find_mount(m, 2048), Some(PathBuf::from("/dev/huge pages")));
        assert_eq!(find_mount(m, 1024 * 1024), Some(PathBuf::from("/mnt/huge1g")));
        // systemd's mount has no pagesize= option: it serves the default size.
        assert_eq!(
            find_mount("hugetlbfs /dev/hugepages hugetlbfs rw,relatime 0 0\n", 2048),
            Some(PathBuf::from("/dev/hugepages"))
        );
        assert_eq!(find_mount("tmpfs /dev/shm tmpfs rw 0 0\n", 2048), None);
    }
}
