//! One measured run of the real `vrouter` binary.
//!
//! Start it on the benchmark [`Topology`], wait until the VM vif receives, let it warm up,
//! sample (VM vif RX packets, fabric vif TX packets, drops by reason, poll counters, on-CPU
//! time of the forwarding thread, wall time), wait the window, sample again, stop it with
//! SIGINT (bounded wait, then SIGKILL) and remove its DPDK runtime directory.

use crate::procfs;
use crate::topology::{Topology, FABRIC_VIF, VM_VIF};
use crate::{interrupted, sleep_checked};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vrouter::drop_reason::{DropReason, DROP_REASON_COUNT};
use vrouter::stats::StatsReader;

/// How to run and measure.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub vrouter: PathBuf,
    pub topology: Topology,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    pub warm: Duration,
    pub dur: Duration,
    /// Bound on EAL start + pcap preload + first packet.
    pub start_timeout: Duration,
    /// Bound on the clean exit after SIGINT.
    pub stop_timeout: Duration,
    /// Name (comm) of the forwarding thread: `rte-worker-<lcore>` in DPDK 22.11.
    pub fwd_thread: String,
}

/// A drop reason and its count.
#[derive(Debug, Clone, Serialize)]
pub struct DropCount {
    pub reason: String,
    pub key: String,
    pub packets: u64,
}

/// What one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct VrouterMeasurement {
    pub window_s: f64,
    /// VM vif RX packets in the window.
    pub rx_packets: u64,
    /// Fabric vif TX packets (MPLSoUDP frames) in the window.
    pub tx_packets: u64,
    pub drops: u64,
    /// Non-zero drop reasons in the window, largest first.
    pub drop_reasons: Vec<DropCount>,
    pub fwd_cpu_s: f64,
    pub wall_mpps: f64,
    pub cpu_mpps: f64,
    pub ns_per_pkt: f64,
    pub fwd_cpu_share: f64,
    pub tx_over_rx: f64,
    /// Packets per non-empty poll-loop iteration in the window (`None` when the vRouter
    /// does not maintain its poll counters).
    pub avg_burst: Option<f64>,
    /// Share of poll-loop iterations that received nothing (the source could not keep up).
    pub idle_poll_share: Option<f64>,
    /// Busy share of each CPU over the window (from /proc/stat), index = CPU.
    pub cpu_busy: Vec<f64>,
    pub load_before: [f64; 3],
    pub load_after: [f64; 3],
    /// Seconds from spawn to the first received packet (EAL init + pcap preload).
    pub startup_s: f64,
    pub fwd_tid: u32,
    /// Thread names of the vRouter process (to check the forwarding thread's name).
    pub threads: Vec<String>,
    /// Whole-run totals after the vRouter stopped: VM vif RX, fabric TX, drops.
    pub total_rx: u64,
    pub total_tx: u64,
    pub total_drops: u64,
    /// `total_rx == total_tx + total_drops` after the stop (every packet accounted for).
    pub accounted: bool,
    pub clean_exit: bool,
}

struct Sample {
    t: Instant,
    cpu_ns: u64,
    rx: u64,
    tx: u64,
    drops: [u64; DROP_REASON_COUNT],
    busy_polls: u64,
    idle_polls: u64,
    jiffies: Vec<(u64, u64)>,
}

fn sample(reader: &StatsReader, pid: u32, tid: u32) -> Result<Sample> {
    let jiffies = procfs::cpu_jiffies().unwrap_or_default();
    let rx = reader.vif_counters(VM_VIF, None).rx_packets;
    let tx = reader.vif_counters(FABRIC_VIF, None).tx_packets;
    let cpu_ns = procfs::thread_cpu_ns(pid, tid)?;
    let t = Instant::now();
    let drops = reader.drops(None);
    let lc = reader.lcore_counters(None);
    Ok(Sample {
        t,
        cpu_ns,
        rx,
        tx,
        drops,
        busy_polls: lc.busy_polls,
        idle_polls: lc.idle_polls,
        jiffies,
    })
}

/// Non-zero entries of a per-reason drop array, largest first.
pub fn drop_list(d: &[u64; DROP_REASON_COUNT]) -> Vec<DropCount> {
    let mut v: Vec<DropCount> = d
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(i, n)| {
            let r = DropReason::from_index(i);
            DropCount {
                reason: r
                    .map(|r| r.name().to_string())
                    .unwrap_or_else(|| format!("reason #{i}")),
                key: r.map(|r| r.key().to_string()).unwrap_or_default(),
                packets: *n,
            }
        })
        .collect();
    v.sort_by_key(|d| std::cmp::Reverse(d.packets));
    v
}

fn log_tail(path: &Path, lines: usize) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// A started vRouter that is stopped (SIGINT, bounded wait, SIGKILL) and whose DPDK runtime
/// directory is removed when dropped, whatever happened in between.
struct Running {
    child: Option<Child>,
    prefix: String,
    stop_timeout: Duration,
}

impl Running {
    /// Stops the process; `Ok(true)` for a clean (status 0) exit after SIGINT.
    fn stop(&mut self) -> Result<bool> {
        let Some(mut child) = self.child.take() else {
            return Ok(false);
        };
        if let Some(st) = child.try_wait()? {
            return Ok(st.success());
        }
        // SAFETY: signalling our own child, which has not been reaped yet.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
        let deadline = Instant::now() + self.stop_timeout;
        loop {
            if let Some(st) = child.try_wait()? {
                return Ok(st.success());
            }
            if Instant::now() > deadline {
                eprintln!(
                    "vrouter-bench: vrouter did not stop within {:?} of SIGINT; killing it",
                    self.stop_timeout
                );
                let _ = child.kill();
                let _ = child.wait();
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop();
        let _ = std::fs::remove_dir_all(Path::new("/var/run/dpdk").join(&self.prefix));
    }
}

/// Runs the vRouter once and measures it.
pub fn measure(spec: &RunSpec) -> Result<VrouterMeasurement> {
    let topo = &spec.topology;
    let _ = std::fs::remove_dir_all(&topo.run_dir);
    std::fs::create_dir_all(&topo.run_dir)
        .with_context(|| format!("creating {}", topo.run_dir.display()))?;
    std::fs::write(&spec.config_path, topo.config_toml())
        .with_context(|| format!("writing {}", spec.config_path.display()))?;
    let log = File::create(&spec.log_path)
        .with_context(|| format!("creating {}", spec.log_path.display()))?;

    let t0 = Instant::now();
    let child = Command::new(&spec.vrouter)
        .arg("--config")
        .arg(&spec.config_path)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", spec.vrouter.display()))?;
    let pid = child.id();
    let mut running = Running {
        child: Some(child),
        prefix: topo.file_prefix.clone(),
        stop_timeout: spec.stop_timeout,
    };

    let early_exit = |running: &mut Running| -> Result<()> {
        if let Some(c) = running.child.as_mut() {
            if let Some(st) = c.try_wait()? {
                running.child = None;
                bail!(
                    "vrouter exited early ({st}); log {}:\n{}",
                    spec.log_path.display(),
                    log_tail(&spec.log_path, 30)
                );
            }
        }
        Ok(())
    };

    // 1. Wait for the stats region, then for packets on the VM vif.
    let deadline = t0 + spec.start_timeout;
    let reader = loop {
        early_exit(&mut running)?;
        if let Ok(r) = StatsReader::open(&topo.run_dir) {
            if r.vif_counters(VM_VIF, None).rx_packets > 0 {
                break r;
            }
        }
        if Instant::now() > deadline {
            bail!(
                "vrouter received nothing within {:?}; log {}:\n{}",
                spec.start_timeout,
                spec.log_path.display(),
                log_tail(&spec.log_path, 30)
            );
        }
        sleep_checked(Duration::from_millis(50))?;
    };
    let startup_s = t0.elapsed().as_secs_f64();

    // 2. The forwarding thread.
    let threads = procfs::threads(pid)?;
    let names: Vec<String> = threads.iter().map(|(_, c)| c.clone()).collect();
    let fwd: Vec<u32> = threads
        .iter()
        .filter(|(_, c)| *c == spec.fwd_thread)
        .map(|(t, _)| *t)
        .collect();
    let fwd_tid = match fwd.as_slice() {
        [t] => *t,
        [] => bail!(
            "no thread named {:?} in vrouter (pid {pid}); threads: {names:?}",
            spec.fwd_thread
        ),
        _ => bail!(
            "several threads named {:?} in vrouter (pid {pid}): {fwd:?}",
            spec.fwd_thread
        ),
    };

    // 3. Warm-up, then the window.
    sleep_checked(spec.warm)?;
    early_exit(&mut running)?;
    let load_before = procfs::loadavg()?;
    let a = sample(&reader, pid, fwd_tid)?;
    sleep_checked(spec.dur)?;
    let b = sample(&reader, pid, fwd_tid)?;
    let load_after = procfs::loadavg()?;
    early_exit(&mut running)?;

    // 4. Stop and check the accounting on the final counters.
    let clean_exit = running.stop()?;
    let total_rx = reader.vif_counters(VM_VIF, None).rx_packets;
    let total_tx = reader.vif_counters(FABRIC_VIF, None).tx_packets;
    let total_drops: u64 = reader.drops(None).iter().sum();
    drop(running);
    let _ = std::fs::remove_dir_all(&topo.run_dir);
    if interrupted() {
        bail!("interrupted");
    }

    let dt = (b.t - a.t).as_secs_f64();
    let rx = b.rx - a.rx;
    let tx = b.tx - a.tx;
    let mut d = [0u64; DROP_REASON_COUNT];
    for (i, x) in d.iter_mut().enumerate() {
        *x = b.drops[i].saturating_sub(a.drops[i]);
    }
    let drops: u64 = d.iter().sum();
    let cpu_s = (b.cpu_ns - a.cpu_ns) as f64 / 1e9;
    let busy = b.busy_polls - a.busy_polls;
    let idle = b.idle_polls - a.idle_polls;
    let div = |x: f64, y: f64| if y > 0.0 { x / y } else { 0.0 };
    Ok(VrouterMeasurement {
        window_s: dt,
        rx_packets: rx,
        tx_packets: tx,
        drops,
        drop_reasons: drop_list(&d),
        fwd_cpu_s: cpu_s,
        wall_mpps: div(rx as f64, dt) / 1e6,
        cpu_mpps: div(rx as f64, cpu_s) / 1e6,
        ns_per_pkt: div(cpu_s * 1e9, rx as f64),
        fwd_cpu_share: div(cpu_s, dt),
        tx_over_rx: div(tx as f64, rx as f64),
        avg_burst: (busy > 0).then(|| rx as f64 / busy as f64),
        idle_poll_share: (busy + idle > 0).then(|| idle as f64 / (busy + idle) as f64),
        cpu_busy: procfs::cpu_busy_share(&a.jiffies, &b.jiffies),
        load_before,
        load_after,
        startup_s,
        fwd_tid,
        threads: names,
        total_rx,
        total_tx,
        total_drops,
        accounted: total_rx == total_tx + total_drops,
        clean_exit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_list_names_reasons() {
        let mut d = [0u64; DROP_REASON_COUNT];
        d[DropReason::Discard.index()] = 5;
        d[DropReason::InterfaceTxDiscard.index()] = 9;
        let l = drop_list(&d);
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].reason, "IF TX Discard");
        assert_eq!(l[0].packets, 9);
        assert_eq!(l[1].key, "discard");
    }
}
