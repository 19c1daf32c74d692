//! DPDK memory on huge pages: the `[eal]` keys `no_huge` and `huge_dir`, the EAL arguments
//! they give, and the check before the EAL starts that the pages are there.
//!
//! - `no_huge = true` (the default): `--no-huge`, DPDK memory from the process heap on
//!   4 KiB pages; no reservation, no mount.
//! - `no_huge = false`: DPDK takes `memory_mb` MiB of huge pages at start (`-m`) from a
//!   hugetlbfs mount of each page size the kernel has pages of, or only from `huge_dir`
//!   (`--huge-dir`, which must be a hugetlbfs mount point) when it is set; with `--in-memory`
//!   in `extra_args`, from the kernel's pools without a mount. Without packet capture
//!   (`[eal] pdump = false`) `--huge-unlink` is passed: DPDK removes each hugepage file right
//!   after mapping it, so the pages go back to the pool when the process ends, however it
//!   ends (DPDK 22.11 keeps them by default, `--huge-unlink=existing`, until the next start
//!   with the same `file_prefix`). It is left out when `extra_args` name `--huge-unlink`
//!   themselves or `--single-file-segments` (which EAL 22.11 refuses with it), and with packet
//!   capture on (the default on huge pages): `dpdk-dumpcap`, a secondary process, maps the
//!   primary's memory through those files. The vRouter then removes its files itself when it
//!   stops ([`remove_hugepage_files`]); after a crash they hold their pages until the next
//!   start with the same `file_prefix` (DPDK removes unused files of its prefix at start).
//!
//! Before the EAL starts, the vRouter checks that the free huge pages DPDK can use cover
//! `memory_mb` (after the flow table, which is created first and may take its own from a
//! hugetlbfs mount) and stops with one line naming `nr_hugepages` and
//! `ci/setup.sh --hugepages` when they do not: the EAL's own failure is a page of logs.

use crate::config::EalConfig;
use flow_table::{HugepagePool, HugetlbfsMount};
use std::path::{Path, PathBuf};

const MIB: u64 = 1 << 20;

/// `--no-huge`, or the hugepage arguments (`--huge-dir DIR`, `--huge-unlink` unless packet
/// capture is on).
pub fn eal_memory_args(e: &EalConfig) -> Vec<String> {
    if e.no_huge {
        return vec!["--no-huge".into()];
    }
    let mut a = Vec::new();
    if let Some(dir) = &e.huge_dir {
        a.push("--huge-dir".into());
        a.push(mount_point_text(dir));
    }
    let user_chose = e.extra_args.iter().any(|x| x.starts_with("--huge-unlink") || x == "--single-file-segments");
    if !user_chose && !e.pdump_enabled() {
        a.push("--huge-unlink".into());
    }
    a
}

/// Whether `name` is one of DPDK 22.11's hugepage files of `file_prefix`:
/// `<prefix>map_<n>` (one per page, or per memseg list with `--single-file-segments`).
pub fn is_hugepage_file_of(name: &str, file_prefix: &str) -> bool {
    name.strip_prefix(file_prefix)
        .and_then(|rest| rest.strip_prefix("map_"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Removes the hugepage files DPDK left for `file_prefix` on every hugetlbfs mount (a run
/// without `--huge-unlink`, so that secondary processes could map them): call after the EAL
/// cleanup. Returns how many were removed. The prefix is held by one primary process at a
/// time, so the files are this process's.
pub fn remove_hugepage_files(file_prefix: &str) -> usize {
    let mut removed = 0;
    for m in flow_table::hugetlbfs_mounts() {
        let Ok(rd) = std::fs::read_dir(&m.path) else { continue };
        for e in rd.flatten() {
            let name = e.file_name();
            if name.to_str().is_some_and(|n| is_hugepage_file_of(n, file_prefix))
                && std::fs::remove_file(e.path()).is_ok()
            {
                removed += 1;
            }
        }
    }
    removed
}

/// `dir` as DPDK compares it with the `/proc/mounts` mount points: without a trailing `/`.
fn mount_point_text(dir: &Path) -> String {
    let s = dir.to_string_lossy();
    let t = s.trim_end_matches('/');
    if t.is_empty() {
        "/".into()
    } else {
        t.into()
    }
}

/// What is wrong with `[eal] huge_dir` given the hugetlbfs mount points of the system, if
/// anything: it needs `no_huge = false`, must exist and must be a hugetlbfs mount point
/// (DPDK 22.11 matches it against the mount points of `/proc/mounts`).
pub fn huge_dir_problem_with(e: &EalConfig, exists: impl Fn(&Path) -> bool, mounts: &[PathBuf]) -> Option<String> {
    let dir = e.huge_dir.as_ref()?;
    if dir.as_os_str().is_empty() {
        return Some("must not be empty".into());
    }
    if e.no_huge {
        return Some(format!(
            "{} is set but no_huge = true (DPDK memory on 4 KiB pages); set no_huge = false to use it",
            dir.display()
        ));
    }
    if !exists(dir) {
        return Some(format!("{} does not exist", dir.display()));
    }
    let text = mount_point_text(dir);
    if mounts.iter().any(|m| m.as_os_str() == text.as_str()) {
        return None;
    }
    let listed: Vec<String> = mounts.iter().map(|m| m.display().to_string()).collect();
    Some(format!(
        "{} is not a hugetlbfs mount point ({}); name a mount point, or mount one there \
         (`mount -t hugetlbfs none {}`; `ci/setup.sh --hugepages N` mounts /dev/hugepages)",
        dir.display(),
        if listed.is_empty() {
            "none is mounted".to_string()
        } else {
            format!("hugetlbfs is mounted at {}", listed.join(", "))
        },
        dir.display()
    ))
}

/// [`huge_dir_problem_with`] on this system (`/proc/mounts`).
pub fn huge_dir_problem(e: &EalConfig) -> Option<String> {
    e.huge_dir.as_ref()?;
    let mounts: Vec<PathBuf> = flow_table::hugetlbfs_mounts().into_iter().map(|m| m.path).collect();
    huge_dir_problem_with(e, |p| p.exists(), &mounts)
}

/// Where DPDK takes pages from: `huge_dir` alone when set, else the first mount of each page
/// size (in `/proc/mounts` order), and with `--in-memory` in `extra_args` (which needs no
/// mount: EAL 22.11 then maps pages without files) every page size of `pools` without one.
pub fn dpdk_mounts(e: &EalConfig, mounts: &[HugetlbfsMount], pools: &[HugepagePool]) -> Vec<HugetlbfsMount> {
    if let Some(dir) = &e.huge_dir {
        let text = mount_point_text(dir);
        return mounts.iter().filter(|m| m.path.as_os_str() == text.as_str()).take(1).cloned().collect();
    }
    let mut out: Vec<HugetlbfsMount> = Vec::new();
    for m in mounts {
        if !out.iter().any(|o| o.page_size == m.page_size) {
            out.push(m.clone());
        }
    }
    if e.extra_args.iter().any(|a| a == "--in-memory") {
        for p in pools {
            if !out.iter().any(|o| o.page_size == p.page_size) {
                out.push(HugetlbfsMount {
                    path: PathBuf::from("(no mount, --in-memory)"),
                    page_size: p.page_size,
                    free_bytes: p.available_bytes(),
                    size_limited: false,
                });
            }
        }
    }
    out
}

fn kb(page_size: u64) -> String {
    format!("{} kB", page_size / 1024)
}

/// Why DPDK would not get its `memory_mb` of huge pages, as one line, or `None` when it
/// would (or when `no_huge`). `mounts` and `pools` are the system's; `table_pages` is what
/// the flow table holds on hugetlbfs (bytes), named in the message.
pub fn shortfall(e: &EalConfig, mounts: &[HugetlbfsMount], pools: &[HugepagePool], table_bytes: u64) -> Option<String> {
    if e.no_huge {
        return None;
    }
    let need = u64::from(e.memory_mb) * MIB;
    let used = dpdk_mounts(e, mounts, pools);
    let fix = "set [eal] no_huge = true to run without";
    if used.is_empty() {
        return Some(format!(
            "[eal] no_huge = false but {}: `ci/setup.sh --hugepages N` reserves N 2 MiB pages (nr_hugepages) and mounts /dev/hugepages, or {fix}",
            match &e.huge_dir {
                Some(d) => format!("huge_dir {} is not a hugetlbfs mount", d.display()),
                None => "no hugetlbfs is mounted".to_string(),
            }
        ));
    }
    let free: u64 = used.iter().map(|m| m.free_bytes).sum();
    if free >= need {
        return None;
    }
    // The suggestion is in pages of the first mount's size (2 MiB on the usual systems).
    let m = &used[0];
    let total = pools.iter().find(|p| p.page_size == m.page_size).map_or(0, |p| p.total);
    let short_pages = (need - free).div_ceil(m.page_size);
    let where_: Vec<String> =
        used.iter().map(|m| format!("{} ({} pages)", m.path.display(), kb(m.page_size))).collect();
    let table = if table_bytes > 0 {
        format!(", after the flow table took {} MiB of them", table_bytes.div_ceil(MIB))
    } else {
        String::new()
    };
    let setup = if m.page_size == 2 * MIB {
        format!(" or `ci/setup.sh --hugepages {}`", total + short_pages)
    } else {
        " (`ci/setup.sh --hugepages N` reserves 2 MiB pages)".to_string()
    };
    Some(format!(
        "[eal] no_huge = false: DPDK needs memory_mb = {} MiB of huge pages but {} MiB are free on {}{table}; \
         reserve {short_pages} more {} pages: `echo {} > /sys/kernel/mm/hugepages/{}/nr_hugepages`{setup}; or {fix}",
        e.memory_mb,
        free / MIB,
        where_.join(", "),
        kb(m.page_size),
        total + short_pages,
        flow_table::pool_dir_name(m.page_size),
    ))
}

/// [`shortfall`] on this system, as the error line; the flow table's file (`table`) is
/// counted in the message when it lies on hugetlbfs.
pub fn check_available(e: &EalConfig, table: Option<&Path>) -> Result<(), String> {
    if e.no_huge {
        return Ok(());
    }
    let table_bytes = table
        .filter(|p| flow_table::is_on_hugetlbfs(p) == Some(true))
        .and_then(|p| std::fs::metadata(p).ok())
        .map_or(0, |m| m.len());
    match shortfall(e, &flow_table::hugetlbfs_mounts(), &flow_table::hugepage_pools(), table_bytes) {
        Some(msg) => Err(msg),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    const M2: u64 = 2 * MIB;

    fn eal(extra: &str) -> EalConfig {
        let text = format!("main_core = 0\nforwarding_cores = [1]\nmemory_mb = 256\n{extra}\n");
        toml::from_str(&text).unwrap()
    }

    fn mount(path: &str, page_size: u64, free_pages: u64) -> HugetlbfsMount {
        HugetlbfsMount { path: path.into(), page_size, free_bytes: free_pages * page_size, size_limited: false }
    }

    fn pool(page_size: u64, total: u64, free: u64) -> HugepagePool {
        HugepagePool { page_size, total, free, reserved: 0 }
    }

    /// A whole configuration with these `[eal]` lines.
    fn config(eal_lines: &str) -> String {
        format!(
            r#"
[eal]
main_core = 0
forwarding_cores = [1]
{eal_lines}

[vrouter]
run_dir = "/tmp/vr-huge-test"
router_ip = "10.1.1.1"

[[vrf]]
id = 0
name = "fabric"

[[vif]]
id = 0
name = "eth0"
type = "fabric"
device = "net_pcap0"
mac = "02:00:00:00:00:01"
ip = "10.1.1.1"
vrf = 0
"#
        )
    }

    #[test]
    fn eal_arguments_per_mode() {
        assert_eq!(eal_memory_args(&eal("")), ["--no-huge"]);
        // Packet capture (the default on huge pages) keeps the files for dpdk-dumpcap.
        assert_eq!(eal_memory_args(&eal("no_huge = false")), [""; 0]);
        assert_eq!(eal_memory_args(&eal("no_huge = false\npdump = false")), ["--huge-unlink"]);
        assert_eq!(
            eal_memory_args(&eal("no_huge = false\npdump = false\nhuge_dir = \"/mnt/huge/\"")),
            ["--huge-dir", "/mnt/huge", "--huge-unlink"]
        );
        assert_eq!(eal_memory_args(&eal("no_huge = false\nhuge_dir = \"/mnt/huge/\"")), ["--huge-dir", "/mnt/huge"]);
        // --in-memory lets no secondary attach: capture is off, the files go at once.
        let in_memory = eal("no_huge = false\nextra_args = [\"--in-memory\"]");
        assert!(!in_memory.pdump_enabled());
        assert_eq!(eal_memory_args(&in_memory), ["--huge-unlink"]);
        // The operator's own choice stays theirs.
        assert_eq!(eal_memory_args(&eal("no_huge = false\nextra_args = [\"--huge-unlink=never\"]")), [""; 0]);
        assert_eq!(eal_memory_args(&eal("no_huge = false\nextra_args = [\"--single-file-segments\"]")), [""; 0]);
    }

    #[test]
    fn hugepage_files_of_a_prefix() {
        assert!(is_hugepage_file_of("vrmap_0", "vr"));
        assert!(is_hugepage_file_of("vrmap_1234", "vr"));
        assert!(is_hugepage_file_of("vr.t42map_7", "vr.t42"));
        for other in ["vrmap_", "vrmap_1x", "vr1map_0", "vrmap_1map_0", "flow.tmp_vr", "vr", "xvrmap_0"] {
            assert!(!is_hugepage_file_of(other, "vr"), "{other}");
        }
        // The files of a prefix that starts like another are only its own.
        assert!(is_hugepage_file_of("vrmap_1map_0", "vrmap_1"));
        assert!(!is_hugepage_file_of("vrmap_1map_0", "vrmap_1map"));
    }

    #[test]
    fn huge_dir_checks() {
        let mounts = [PathBuf::from("/dev/hugepages"), PathBuf::from("/mnt/huge1G")];
        let yes = |_: &Path| true;
        let check = |extra: &str| huge_dir_problem_with(&eal(extra), yes, &mounts);
        assert_eq!(check("no_huge = false"), None);
        assert_eq!(check("no_huge = false\nhuge_dir = \"/dev/hugepages\""), None);
        assert_eq!(check("no_huge = false\nhuge_dir = \"/dev/hugepages/\""), None);
        assert_eq!(check("no_huge = false\nhuge_dir = \"\"").as_deref(), Some("must not be empty"));
        assert!(check("huge_dir = \"/dev/hugepages\"").unwrap().contains("no_huge = true"));
        let e = check("no_huge = false\nhuge_dir = \"/dev/hugepages/sub\"").unwrap();
        assert!(e.contains("is not a hugetlbfs mount point") && e.contains("/dev/hugepages, /mnt/huge1G"), "{e}");
        let e = huge_dir_problem_with(&eal("no_huge = false\nhuge_dir = \"/x\""), yes, &[]).unwrap();
        assert!(e.contains("none is mounted"), "{e}");
        let e = huge_dir_problem_with(&eal("no_huge = false\nhuge_dir = \"/x\""), |_| false, &mounts).unwrap();
        assert_eq!(e, "/x does not exist");
    }

    #[test]
    fn configuration_errors_name_the_field() {
        let d = tempfile::tempdir().unwrap();
        let missing = d.path().join("missing");
        let e = parse(&config(&format!("no_huge = false\nhuge_dir = \"{}\"", missing.display())), "vr.toml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("vr.toml:") && e.contains("eal.huge_dir") && e.contains("does not exist"), "{e}");
        // A directory on tmpfs or disk is not hugetlbfs.
        let e = parse(&config(&format!("no_huge = false\nhuge_dir = \"{}\"", d.path().display())), "vr.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("eal.huge_dir") && e.contains("is not a hugetlbfs mount point"), "{e}");
        let e = parse(&config("huge_dir = \"/dev/hugepages\""), "vr.toml").unwrap_err().to_string();
        assert!(e.contains("eal.huge_dir") && e.contains("no_huge = true"), "{e}");
        // Hugepages without huge_dir are not checked by the configuration (the start is).
        assert!(parse(&config("no_huge = false"), "vr.toml").is_ok());
    }

    #[test]
    fn the_mounts_dpdk_uses() {
        let mounts = [mount("/dev/hugepages", M2, 10), mount("/mnt/b", M2, 5), mount("/mnt/g", 1 << 30, 1)];
        let pools = [pool(M2, 10, 10), pool(1 << 30, 1, 1)];
        let paths = |e: &EalConfig, mounts: &[HugetlbfsMount]| {
            dpdk_mounts(e, mounts, &pools).iter().map(|m| m.path.clone()).collect::<Vec<_>>()
        };
        let huge = eal("no_huge = false");
        assert_eq!(paths(&huge, &mounts), [PathBuf::from("/dev/hugepages"), PathBuf::from("/mnt/g")]);
        assert_eq!(paths(&eal("no_huge = false\nhuge_dir = \"/mnt/b\""), &mounts), [PathBuf::from("/mnt/b")]);
        assert!(paths(&eal("no_huge = false\nhuge_dir = \"/mnt/none\""), &mounts).is_empty());
        assert!(paths(&huge, &[]).is_empty());
        // --in-memory needs no mount: the pools' pages count.
        let in_memory = eal("no_huge = false\nextra_args = [\"--in-memory\"]");
        let used = dpdk_mounts(&in_memory, &mounts[..1], &pools);
        assert_eq!(
            used.iter().map(|m| (m.page_size, m.free_bytes)).collect::<Vec<_>>(),
            [(M2, 10 * M2), (1 << 30, 1 << 30)]
        );
        assert_eq!(shortfall(&in_memory, &[], &[pool(M2, 128, 128)], 0), None);
    }

    #[test]
    fn shortfall_lines() {
        let pools = [pool(M2, 100, 100)];
        let e = eal("no_huge = false"); // memory_mb = 256: 128 pages of 2 MiB
        assert_eq!(shortfall(&eal(""), &[], &[], 0), None, "no_huge needs nothing");
        assert_eq!(shortfall(&e, &[mount("/dev/hugepages", M2, 128)], &pools, 0), None);
        let msg = shortfall(&e, &[mount("/dev/hugepages", M2, 100)], &pools, 0).unwrap();
        assert_eq!(
            msg,
            "[eal] no_huge = false: DPDK needs memory_mb = 256 MiB of huge pages but 200 MiB are free on \
             /dev/hugepages (2048 kB pages); reserve 28 more 2048 kB pages: \
             `echo 128 > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages` or `ci/setup.sh --hugepages 128`; \
             or set [eal] no_huge = true to run without"
        );
        assert!(!msg.contains('\n'));
        let msg = shortfall(&e, &[mount("/dev/hugepages", M2, 0)], &pools, 40 * MIB).unwrap();
        assert!(msg.contains("0 MiB are free") && msg.contains("after the flow table took 40 MiB"), "{msg}");
        assert!(msg.contains("ci/setup.sh --hugepages 228"), "{msg}");
        let msg = shortfall(&e, &[], &pools, 0).unwrap();
        assert!(msg.contains("no hugetlbfs is mounted") && msg.contains("ci/setup.sh --hugepages N"), "{msg}");
        assert!(msg.contains("nr_hugepages"), "{msg}");
        let msg =
            shortfall(&eal("no_huge = false\nhuge_dir = \"/mnt/x\""), &[mount("/dev/hugepages", M2, 500)], &pools, 0)
                .unwrap();
        assert!(msg.contains("huge_dir /mnt/x is not a hugetlbfs mount"), "{msg}");
        // Pages of two sizes add up.
        let two = [mount("/dev/hugepages", M2, 64), mount("/mnt/g", 1 << 30, 1)];
        assert_eq!(shortfall(&e, &two, &pools, 0), None);
    }
}
