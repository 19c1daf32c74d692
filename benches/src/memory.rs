//! DPDK memory of the measured processes: huge pages when they are available, `--no-huge`
//! as the fallback.
//!
//! `vrouter-bench --huge` requires huge pages (with too few, the vRouter stops at its start
//! with the line naming `ci/setup.sh --hugepages`), `--no-huge` forbids them, and without
//! either (the default) each run takes huge pages when the free 2 MiB pages of a mounted
//! hugetlbfs cover its DPDK memory and, with flows on, its flow table; else `--no-huge`.
//!
//! - The vRouter on huge pages: `[eal] no_huge = false` with `memory_mb` sized for packed
//!   mbufs, the flow table on hugetlbfs (the vRouter's automatic pick). On `--no-huge`: 4 KiB
//!   pages, one mbuf per page ([`crate::mem_sizing`]), and the flow table pinned to the
//!   run directory (a tmpfs), so that the fallback is 4 KiB pages throughout.
//! - The anchors (`run_testpmd.py`, `run_ovs_dpdk.py`) get `--huge` when the run is on huge
//!   pages and the script offers the option (its `--help` lists it); otherwise they run
//!   `--no-huge`, and the results say so.
//!
//! Each measurement records the memory it ran on (`memory`: `huge` or `no-huge`) and where
//! the flow table was.

use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::{Mutex, OnceLock};

const MIB: u64 = 1 << 20;
/// The huge page size the harness counts on.
pub const PAGE_2M: u64 = 2 * MIB;

/// What the command line asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Choice {
    /// Huge pages when there are enough for the run, else `--no-huge` (the default).
    Auto,
    /// Huge pages; too few is an error.
    Huge,
    /// `--no-huge` always.
    NoHuge,
}

/// What a run used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Memory {
    /// 2 MiB huge pages (DPDK memory and, with flows, the flow table on hugetlbfs).
    Huge,
    /// `--no-huge`: 4 KiB pages (the flow table in the run directory).
    NoHuge,
}

impl Memory {
    /// `huge` / `no-huge`, as in the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Memory::Huge => "huge",
            Memory::NoHuge => "no-huge",
        }
    }

    /// How the vRouter's EAL runs, for the command notes.
    pub fn eal_note(self) -> &'static str {
        match self {
            Memory::Huge => "on 2 MiB huge pages (--huge-unlink)",
            Memory::NoHuge => "--no-huge",
        }
    }
}

static CHOICE: OnceLock<Choice> = OnceLock::new();

/// Sets the choice of the command line (once, before the first run; later calls are ignored).
pub fn set_choice(c: Choice) {
    let _ = CHOICE.set(c);
}

/// The choice of the command line ([`Choice::Auto`] when none was set).
pub fn choice() -> Choice {
    CHOICE.get().copied().unwrap_or(Choice::Auto)
}

/// The `--no-huge` sizing of `run_testpmd.py` ([`crate::mem_sizing_extra`]): every 2176-byte
/// mbuf on a 4 KiB page of its own, 15 % and 1 GiB on top.
fn no_huge_sizing(packets: u64, extra: u64) -> (u64, u64) {
    crate::mem_sizing_extra(packets, extra)
}

/// Huge page sizing: the same mbufs packed (2176 bytes of data room, 256 of header and
/// private area, 15 % on top) and 256 MiB for the rest of DPDK.
pub fn huge_sizing(packets: u64, extra: u64) -> (u64, u64) {
    let (mbufs, _) = no_huge_sizing(packets, extra);
    let memory_mb = (mbufs as f64 * (2176.0 + 256.0) * 1.15) as u64 / MIB + 256;
    (mbufs, memory_mb)
}

/// Bytes of 2 MiB huge pages a mounted hugetlbfs offers now (the first mount of that page
/// size in `/proc/mounts`; 0 without one).
pub fn available_bytes() -> u64 {
    flow_table::hugetlbfs_mounts().into_iter().find(|m| m.page_size == PAGE_2M).map_or(0, |m| m.free_bytes)
}

/// A run's memory: the mode, the mbufs and `memory_mb`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sizing {
    /// Huge pages or `--no-huge`.
    pub memory: Memory,
    /// Mbufs in the packet pool.
    pub mbufs: u64,
    /// DPDK memory, MiB (`-m`).
    pub memory_mb: u64,
}

/// The decision for a run of `packets` packets, `extra` more mbufs and a flow table of
/// `table_bytes` (0 without flows), given `available` bytes of free 2 MiB pages. Under
/// [`Choice::Huge`] the run is on huge pages whatever is free: when too few are, the vRouter
/// stops at its start with the line that says how many to reserve.
pub fn decide(choice: Choice, packets: u64, extra: u64, table_bytes: u64, available: u64) -> Sizing {
    let (mbufs, memory_mb) = huge_sizing(packets, extra);
    let need = memory_mb * MIB + table_bytes.div_ceil(PAGE_2M) * PAGE_2M;
    let huge = match choice {
        Choice::NoHuge => false,
        Choice::Auto => available >= need,
        Choice::Huge => true,
    };
    if huge {
        Sizing { memory: Memory::Huge, mbufs, memory_mb }
    } else {
        let (mbufs, memory_mb) = no_huge_sizing(packets, extra);
        Sizing { memory: Memory::NoHuge, mbufs, memory_mb }
    }
}

/// [`decide`] for the command line's choice and this system's free huge pages.
pub fn sizing(packets: u64, extra: u64, table_bytes: u64) -> Sizing {
    decide(choice(), packets, extra, table_bytes, available_bytes())
}

/// Whether the script at `path` takes `--huge` (its `--help` lists the option), asked once
/// per script.
pub fn script_takes_huge(path: &Path) -> bool {
    static SEEN: OnceLock<Mutex<HashMap<String, bool>>> = OnceLock::new();
    let key = path.display().to_string();
    let seen = SEEN.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(v) = seen.lock().map(|m| m.get(&key).copied()).ok().flatten() {
        return v;
    }
    let v = Command::new("python3")
        .arg(path)
        .arg("--help")
        .output()
        .map(|o| help_lists_huge(&String::from_utf8_lossy(&o.stdout)))
        .unwrap_or(false);
    if !v {
        eprintln!("vrouter-bench: {} has no --huge option: its runs stay on --no-huge", path.display());
    }
    if let Ok(mut m) = seen.lock() {
        m.insert(key, v);
    }
    v
}

/// Whether an argparse `--help` text lists a `--huge` option (not just `--huge-...`).
pub fn help_lists_huge(help: &str) -> bool {
    help.split(|c: char| c.is_whitespace() || c == '[' || c == ']' || c == ',').any(|w| w == "--huge")
}

/// The memory an anchor script runs on: huge pages when the run is on them and the script
/// takes `--huge`.
pub fn anchor_memory(run: Memory, script: &Path) -> Memory {
    if run == Memory::Huge && script_takes_huge(script) {
        Memory::Huge
    } else {
        Memory::NoHuge
    }
}

/// The flow table file of a vRouter run directory when it lies outside it (on hugetlbfs:
/// `run_dir/flow` is then a symlink to it).
pub fn table_outside(run_dir: &Path) -> Option<std::path::PathBuf> {
    let target = std::fs::read_link(run_dir.join(flow_table::FLOW_FILE_NAME)).ok()?;
    (!target.starts_with(run_dir)).then_some(target)
}

/// Removes the flow table a stopped vRouter left outside its run directory (on hugetlbfs,
/// where it would hold its pages until the next boot: every run has its own run directory).
pub fn remove_table_outside(run_dir: &Path) {
    if let Some(t) = table_outside(run_dir) {
        let _ = std::fs::remove_file(t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        // 65536 packets: 98304 mbufs either way; 4 KiB each under --no-huge, packed on huge pages.
        assert_eq!(no_huge_sizing(65536, 0), (98304, 1465));
        assert_eq!(huge_sizing(65536, 0), (98304, 518));
        let (n, m) = huge_sizing(1_048_576, 3000);
        assert_eq!(n, 1_084_344);
        assert!(m > 2800 && m < 3200, "{m}");
    }

    #[test]
    fn decisions() {
        let gib = 1 << 30;
        // 518 MiB of DPDK memory and a 100 MiB table (50 pages) need 618 MiB.
        let table = 100 * MIB;
        let d = decide(Choice::Auto, 65536, 0, table, 618 * MIB);
        assert_eq!(d, Sizing { memory: Memory::Huge, mbufs: 98304, memory_mb: 518 });
        let d = decide(Choice::Auto, 65536, 0, table, 617 * MIB);
        assert_eq!(d, Sizing { memory: Memory::NoHuge, mbufs: 98304, memory_mb: 1465 });
        assert_eq!(decide(Choice::Auto, 65536, 0, table + 1, 618 * MIB).memory, Memory::NoHuge, "whole pages");
        assert_eq!(decide(Choice::NoHuge, 65536, 0, 0, 100 * gib).memory, Memory::NoHuge);
        assert_eq!(decide(Choice::Huge, 65536, 0, 0, gib).memory, Memory::Huge);
        // Too few: the vRouter's start says how many to reserve.
        assert_eq!(
            decide(Choice::Huge, 65536, 0, table, 0),
            Sizing { memory: Memory::Huge, mbufs: 98304, memory_mb: 518 }
        );
    }

    #[test]
    fn help_texts() {
        assert!(help_lists_huge("usage: x.py [-h] [--huge] [--dur DUR]\n  --huge   DPDK on huge pages\n"));
        assert!(help_lists_huge("  --reps R\n  --huge\n"));
        assert!(!help_lists_huge("usage: x.py [-h] [--huge-dir D] [--dur DUR]\n"));
        assert!(!help_lists_huge("usage: run_testpmd.py PCAP [PCAP...] [--modes M]\n"));
    }

    #[test]
    fn tables_outside_the_run_directory() {
        let d = tempfile_dir();
        let run = d.join("run");
        std::fs::create_dir_all(&run).unwrap();
        assert_eq!(table_outside(&run), None, "no table");
        std::fs::write(run.join("flow"), b"x").unwrap();
        assert_eq!(table_outside(&run), None, "a table in the run directory stays");
        std::fs::remove_file(run.join("flow")).unwrap();
        let elsewhere = d.join("huge-flow.x");
        std::fs::write(&elsewhere, b"x").unwrap();
        std::os::unix::fs::symlink(&elsewhere, run.join("flow")).unwrap();
        assert_eq!(table_outside(&run), Some(elsewhere.clone()));
        remove_table_outside(&run);
        assert!(!elsewhere.exists());
        std::fs::remove_dir_all(&d).unwrap();
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("vrbench-memory-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
