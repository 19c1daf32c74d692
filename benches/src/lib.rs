//! Forwarding benchmark harness for the vRouter (a benchmark: it measures and reports, it
//! asserts nothing about speed).
//!
//! The method is the one of `shared/bench` (see `shared/docs/performance-anchors.md`): one
//! forwarding core (CPU 1), the main thread on CPU 0, huge pages when there are enough (else
//! `--no-huge`; see [`memory`]), and a DPDK pcap virtual
//! device replaying a pre-generated file forever (`infinite_rx=1`) as the packet source. The
//! figure of merit is **`cpu_mpps`** = packets received in the measurement window divided by
//! the on-CPU seconds of the forwarding thread (`/proc/PID/task/TID/schedstat`), i.e. Mpps
//! per fully owned core, which stays meaningful when other tenants time-slice the CPUs.
//!
//! Modules:
//! - [`pcap`]: counting packets in a capture, the empty capture the fabric port reads;
//! - [`topology`]: the vRouter configuration of the benchmark (VM vif -> MPLSoUDP tunnel);
//! - [`procfs`]: thread CPU time from schedstat, load average;
//! - [`vrouter_run`]: starts the vRouter, samples counters and CPU time over a window, stops it;
//! - [`anchors`]: runs `run_testpmd.py` / `run_ovs_dpdk.py` and parses their CSV rows;
//! - [`memory`]: huge pages when available (`--huge`, `--no-huge`, automatic), the sizing;
//! - [`report`]: the per-N comparison table, JSON and CSV;
//! - [`agent`]: the vRouter agent's control socket (`status`: setups, setup latency);
//! - [`stateful`]: throughput with the flow table on, and the flow setup rate;
//! - [`stateful_cmd`]: `vrouter-bench --stateful` (both, with their anchors, and memory);
//! - [`ovs_watch`]: conntrack connections of the OVS-DPDK anchor, sampled while it runs;
//! - [`route_storm`]: `vrouter-bench --route-storm` (live route programming while forwarding);
//! - [`vhost_cmd`]: `vrouter-bench --vhost` (VMs on vhost-user ports, the vRouter next to
//!   OVS-DPDK), with [`vhost_topo`] (its vRouter configuration), [`guest`] (the vm-guest
//!   generator and sink), [`ovs_vhost`] (OVS-DPDK with dpdkvhostuserclient ports) and
//!   [`hugepages`] (2 MiB pages reserved for the run), [`vhost_run`] (the vRouter process,
//!   its run directory and the waits before traffic);
//! - [`ops_cmd`]: `vrouter-bench --ops` (forwarding with a Prometheus scrape every second and
//!   IPFIX flow export on, next to both off);
//! - [`restart_cmd`]: `vrouter-bench --restart` (packets lost, forwarding gap and recovery
//!   during a planned takeover and a kill-and-restart, on the `--vhost` topology).

#![warn(missing_docs)]

pub mod agent;
pub mod anchors;
pub mod guest;
pub mod hugepages;
pub mod memory;
pub mod mirror_cmd;
pub mod ops_cmd;
pub mod ovs_vhost;
pub mod ovs_watch;
pub mod pcap;
pub mod procfs;
pub mod report;
pub mod restart_cmd;
pub mod route_storm;
pub mod stateful;
pub mod stateful_cmd;
pub mod topology;
pub mod trace_cmd;
pub mod vhost_cmd;
pub mod vhost_run;
pub mod vhost_topo;
pub mod vrouter_run;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Ctrl-C sets a flag instead of killing the harness, so that it can still stop what it
/// started and remove DPDK runtime directories. (Children in the same process group get the
/// terminal's SIGINT as well and stop by themselves.)
pub fn install_sigint_handler() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    // `sighandler_t` is the handler's address as an integer: the cast is the C API.
    #[allow(clippy::fn_to_numeric_cast_any)]
    unsafe {
        libc::signal(libc::SIGINT, on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t);
    }
}

/// Whether Ctrl-C (or SIGTERM) was received.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Sleeps `d`, returning early with an error when interrupted.
pub fn sleep_checked(d: Duration) -> anyhow::Result<()> {
    let end = Instant::now() + d;
    loop {
        if interrupted() {
            anyhow::bail!("interrupted");
        }
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

/// Memory sizing used by `shared/bench/run_testpmd.py` for `--no-huge` runs: every mbuf of
/// 2176 B data room (+256 B of header and private area) occupies a whole 4 KiB page.
/// Returns `(mbufs, memory_mb)` for a pcap of `packets` packets.
pub fn mem_sizing(packets: u64) -> (u64, u64) {
    mem_sizing_extra(packets, 0)
}

/// [`mem_sizing`] with `extra` more mbufs (packets the vRouter may hold for flow setup).
pub fn mem_sizing_extra(packets: u64, extra: u64) -> (u64, u64) {
    const MBUF_SIZE: u64 = 2176;
    let nmbuf = packets + 32768 + extra;
    let per_obj = 4096 * (MBUF_SIZE + 256).div_ceil(4096);
    let mem_mb = (nmbuf as f64 * per_obj as f64 * 1.15) as u64 / (1 << 20) + 1024;
    (nmbuf, mem_mb)
}

/// The workspace root: the nearest ancestor of `start` whose `Cargo.toml` has a
/// `[workspace]` table.
pub fn find_repo_root(start: &Path) -> Option<PathBuf> {
    let mut d = Some(start);
    while let Some(dir) = d {
        let manifest = dir.join("Cargo.toml");
        if let Ok(text) = std::fs::read_to_string(&manifest) {
            if text.lines().any(|l| l.trim() == "[workspace]") {
                return Some(dir.to_path_buf());
            }
        }
        d = dir.parent();
    }
    None
}

/// Median of a non-empty slice (mean of the middle two for even lengths).
pub fn median(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// Shell-quotes one argument for printing a command a reader can paste.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=,:+@%".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A command line, shell-quoted.
pub fn shell_line<S: AsRef<str>>(args: &[S]) -> String {
    args.iter().map(|a| shell_quote(a.as_ref())).collect::<Vec<_>>().join(" ")
}

/// The machine the benchmark ran on.
#[derive(serde::Serialize)]
pub struct Machine {
    /// Host name.
    pub hostname: String,
    /// Kernel release.
    pub kernel: String,
    /// CPUs available to the harness.
    pub cpus: usize,
    /// CPU model name from `/proc/cpuinfo`.
    pub cpu_model: String,
    /// `MemTotal` of `/proc/meminfo`, KiB.
    pub mem_total_kib: u64,
    /// 1-, 5- and 15-minute load averages before the run.
    pub load_at_start: [f64; 3],
    /// 1-, 5- and 15-minute load averages after the run.
    pub load_at_end: [f64; 3],
}

/// `lscpu`'s output and its model name.
pub fn lscpu() -> (String, String) {
    let text =
        Command::new("lscpu").output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    let model = text
        .lines()
        .find(|l| l.starts_with("Model name:"))
        .map(|l| l["Model name:".len()..].trim().to_string())
        .unwrap_or_default();
    (text, model)
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The checked-out commit of `repo` (12 hex digits, `-dirty` with uncommitted changes).
pub fn git_rev(repo: &Path) -> String {
    let run = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let rev = run(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty = run(&["status", "--porcelain", "--untracked-files=no"]).map(|s| !s.is_empty()).unwrap_or(false);
    if dirty {
        format!("{rev}-dirty")
    } else {
        rev
    }
}

/// Describes this machine; the load at the end is read now.
pub fn machine(load_at_start: [f64; 3]) -> Machine {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let cpu_model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    let mem_total_kib = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Machine {
        hostname: read("/proc/sys/kernel/hostname").trim().to_string(),
        kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
        cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        cpu_model,
        mem_total_kib,
        load_at_start,
        load_at_end: procfs::loadavg().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizing_matches_run_testpmd() {
        // run_testpmd.py prints `-m 1465 ... --total-num-mbufs=98304` for the 65536-packet file.
        assert_eq!(mem_sizing(65536), (98304, 1465));
        let (n, m) = mem_sizing(1_048_576);
        assert_eq!(n, 1_081_344);
        assert!(m > 4500 && m < 6000, "{m}");
    }

    #[test]
    fn median_works() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn quoting() {
        assert_eq!(
            shell_line(&["a", "b c", "x'y", "--vdev=net_pcap0,rx_pcap=/tmp/a.pcap"]),
            "a 'b c' 'x'\\''y' --vdev=net_pcap0,rx_pcap=/tmp/a.pcap"
        );
    }

    #[test]
    fn repo_root_found() {
        let here = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = find_repo_root(here).unwrap();
        assert!(root.join("benches").is_dir());
    }
}
