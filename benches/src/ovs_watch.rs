//! Watching the OVS-DPDK that `run_ovs_dpdk.py` starts, from the outside, while it runs:
//! the number of conntrack connections (`ovs-appctl dpctl/ct-get-nconns`) and the on-CPU
//! time of its PMD thread, sampled as fast as `ovs-appctl` answers. On a pcap where every
//! packet is a new connection, the growth of the connection count is the rate at which the
//! `ct(commit)` pipeline commits new connections.
//!
//! The script runs its ovs-vswitchd privately (a `/tmp/ovsbench_*` work dir, unix sockets
//! only, `--detach`); the watcher finds the one that did not exist before the script was
//! started (its command line names `--pidfile=<work>/run/ovs-vswitchd.pid`) and talks to
//! its control socket `<work>/run/ovs-vswitchd-dpdk.<pid>.ctl`. It only reads.

use serde::Serialize;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One sample: seconds since the watcher started (midpoint of the `ovs-appctl` call),
/// connections, PMD on-CPU ns.
#[derive(Debug, Clone, Serialize)]
pub struct CtSample {
    /// Seconds since the watcher started.
    pub t: f64,
    /// Conntrack connections of the OVS-DPDK datapath.
    pub nconns: u64,
    /// On-CPU nanoseconds of the PMD threads so far (summed).
    pub pmd_cpu_ns: u64,
}

/// PIDs of running `ovs-vswitchd*` processes and their `--pidfile=` argument.
pub fn vswitchds() -> Vec<(u32, Option<PathBuf>)> {
    let mut v = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return v;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmd.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).to_string()).collect();
        if !args.first().is_some_and(|a| a.rsplit('/').next().unwrap_or("").starts_with("ovs-vswitchd")) {
            continue;
        }
        let pidfile = args.iter().find_map(|a| a.strip_prefix("--pidfile=")).map(PathBuf::from);
        v.push((pid, pidfile));
    }
    v
}

fn pmd_cpu_ns(pid: u32) -> u64 {
    crate::procfs::threads(pid)
        .unwrap_or_default()
        .iter()
        .filter(|(_, c)| c.starts_with("pmd"))
        .filter_map(|(t, _)| crate::procfs::thread_cpu_ns(pid, *t).ok())
        .sum()
}

fn nconns(ctl: &Path) -> Option<u64> {
    let out = Command::new("ovs-appctl")
        .arg("-t")
        .arg(ctl)
        .arg("dpctl/ct-get-nconns")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).split_whitespace().next()?.parse().ok()
}

/// A running watcher; [`CtWatch::finish`] stops it and returns the samples.
pub struct CtWatch {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<(Vec<CtSample>, Option<u32>)>,
}

impl CtWatch {
    /// Starts watching for an ovs-vswitchd that is not in `before` (call [`vswitchds`] just
    /// before starting the script).
    pub fn start(before: &[(u32, Option<PathBuf>)]) -> CtWatch {
        let known: HashSet<u32> = before.iter().map(|(p, _)| *p).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let handle = std::thread::spawn(move || {
            let t0 = Instant::now();
            let mut out = Vec::new();
            // 1. The new vswitchd and its control socket.
            let (pid, ctl) = loop {
                if s2.load(Ordering::Relaxed) {
                    return (out, None);
                }
                let found = vswitchds().into_iter().find_map(|(p, pf)| {
                    let pf = pf?;
                    if known.contains(&p) || !pf.to_string_lossy().contains("/ovsbench_") {
                        return None;
                    }
                    // The daemon (after --detach) is the pid in the pidfile.
                    let dpid: u32 = std::fs::read_to_string(&pf).ok()?.trim().parse().ok()?;
                    let ctl = pf.parent()?.join(format!("ovs-vswitchd-dpdk.{dpid}.ctl"));
                    ctl.exists().then_some((dpid, ctl))
                });
                if let Some(f) = found {
                    break f;
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            // 2. Sample until stopped or the daemon is gone.
            while !s2.load(Ordering::Relaxed) && Path::new(&format!("/proc/{pid}")).exists() {
                let a = t0.elapsed().as_secs_f64();
                let n = nconns(&ctl);
                let b = t0.elapsed().as_secs_f64();
                let cpu = pmd_cpu_ns(pid);
                if let Some(n) = n {
                    out.push(CtSample { t: (a + b) / 2.0, nconns: n, pmd_cpu_ns: cpu });
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            (out, Some(pid))
        });
        CtWatch { stop, handle }
    }

    /// Stops the watcher; its samples and the pid of the `ovs-vswitchd` it watched, if found.
    pub fn finish(self) -> (Vec<CtSample>, Option<u32>) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or_default()
    }
}
