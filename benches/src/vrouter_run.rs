//! One measured run of the real `vrouter` binary.
//!
//! Start it on the benchmark [`Topology`], wait until the VM vif receives, let it warm up,
//! sample (VM vif RX packets, fabric vif TX packets, drops by reason, poll counters, on-CPU
//! time of the forwarding thread, wall time), wait the window, sample again, stop it with
//! SIGINT (bounded wait, then SIGKILL) and remove its DPDK runtime directory.

use crate::memory::{self, Memory};
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
    /// The `vrouter` binary to run.
    pub vrouter: PathBuf,
    /// Topology (pcap source, run directory, cores, memory, `[flow]`) the config is written from.
    pub topology: Topology,
    /// Where the generated TOML configuration is written.
    pub config_path: PathBuf,
    /// Where the vRouter's stdout and stderr go.
    pub log_path: PathBuf,
    /// Warm-up between the first packet and the window.
    pub warm: Duration,
    /// The measurement window.
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
    /// Human-readable name (as `dropstats` prints it).
    pub reason: String,
    /// Stable snake_case key (as in the JSON and the exported records).
    pub key: String,
    /// Packets dropped for this reason.
    pub packets: u64,
}

/// What one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct VrouterMeasurement {
    /// Length of the window, seconds (between the two samples).
    pub window_s: f64,
    /// VM vif RX packets in the window.
    pub rx_packets: u64,
    /// Fabric vif TX packets (MPLSoUDP frames) in the window, mirror copies excluded.
    pub tx_packets: u64,
    /// Mirror copies sent (`mir_tpkts`) and failed in the window (0 without mirroring).
    pub mirror_packets: u64,
    /// Mirror copies that failed in the window.
    pub mirror_errors: u64,
    /// Drops in the window, all reasons.
    pub drops: u64,
    /// Non-zero drop reasons in the window, largest first.
    pub drop_reasons: Vec<DropCount>,
    /// On-CPU seconds of the forwarding thread in the window.
    pub fwd_cpu_s: f64,
    /// `rx_packets` per wall-clock second, millions.
    pub wall_mpps: f64,
    /// `rx_packets` per on-CPU second of the forwarding thread, millions (the figure of merit).
    pub cpu_mpps: f64,
    /// Forwarding-thread CPU nanoseconds per received packet.
    pub ns_per_pkt: f64,
    /// Share of the window the forwarding thread was on a CPU.
    pub fwd_cpu_share: f64,
    /// `tx_packets / rx_packets`.
    pub tx_over_rx: f64,
    /// Packets per non-empty poll-loop iteration in the window (`None` when the vRouter
    /// does not maintain its poll counters).
    pub avg_burst: Option<f64>,
    /// Share of poll-loop iterations that received nothing (the source could not keep up).
    pub idle_poll_share: Option<f64>,
    /// Busy share of each CPU over the window (from /proc/stat), index = CPU.
    pub cpu_busy: Vec<f64>,
    /// 1-, 5- and 15-minute load averages before the window.
    pub load_before: [f64; 3],
    /// 1-, 5- and 15-minute load averages after the window.
    pub load_after: [f64; 3],
    /// Seconds from spawn to the first received packet (EAL init + pcap preload).
    pub startup_s: f64,
    /// Thread id of the forwarding thread.
    pub fwd_tid: u32,
    /// Thread names of the vRouter process (to check the forwarding thread's name).
    pub threads: Vec<String>,
    /// Whole-run totals after the vRouter stopped: VM vif RX, fabric TX, drops.
    pub total_rx: u64,
    /// Fabric vif TX packets over the whole run.
    pub total_tx: u64,
    /// Drops over the whole run, all reasons.
    pub total_drops: u64,
    /// `total_rx == total_tx + total_drops` after the stop (every packet accounted for).
    pub accounted: bool,
    /// Whether the vRouter exited successfully after SIGINT (not killed).
    pub clean_exit: bool,
    /// DPDK's memory: `huge` (2 MiB pages) or `no-huge`.
    pub dpdk_memory: Memory,
    /// The flow table file (with flows on): on hugetlbfs or in the run directory.
    pub flow_table: Option<String>,
}

/// Counters at one instant.
pub struct Sample {
    /// When the counters were read.
    pub t: Instant,
    /// On-CPU ns of the forwarding thread.
    pub cpu_ns: u64,
    /// VM vif RX packets.
    pub rx: u64,
    /// Fabric vif TX packets.
    pub tx: u64,
    /// Global drop counters by [`DropReason::index`].
    pub drops: [u64; DROP_REASON_COUNT],
    /// Poll-loop iterations that received at least one packet (all lcores).
    pub busy_polls: u64,
    /// Poll-loop iterations that received nothing (all lcores).
    pub idle_polls: u64,
    /// vRouter-wide mirror copies sent (`mir_tpkts`) and failed.
    pub mirror_packets: u64,
    /// Mirror copies that failed.
    pub mirror_errors: u64,
    /// Busy and total jiffies per CPU (see [`procfs::cpu_jiffies`]).
    pub jiffies: Vec<(u64, u64)>,
}

/// Reads the counters now: the stats region through `reader`, the CPU time of thread `tid`
/// of `pid`, `/proc/stat`.
pub fn sample(reader: &StatsReader, pid: u32, tid: u32) -> Result<Sample> {
    let jiffies = procfs::cpu_jiffies().unwrap_or_default();
    let rx = reader.vif_counters(VM_VIF, None).rx_packets;
    // The fabric vif's TX includes the mirror copies that left it; `tx` is the forwarded
    // originals (copies are counted in `mir_tpkts` before the vif's TX, read after it).
    let tx =
        reader.vif_counters(FABRIC_VIF, None).tx_packets.saturating_sub(reader.lcore_counters(None).mirror_packets);
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
        mirror_packets: lc.mirror_packets,
        mirror_errors: lc.mirror_errors,
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
                reason: r.map(|r| r.name().to_string()).unwrap_or_else(|| format!("reason #{i}")),
                key: r.map(|r| r.key().to_string()).unwrap_or_default(),
                packets: *n,
            }
        })
        .collect();
    v.sort_by_key(|d| std::cmp::Reverse(d.packets));
    v
}

pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// A started vRouter that is stopped (SIGINT, bounded wait, SIGKILL) and whose DPDK runtime
/// directory, and flow table on hugetlbfs, are removed when dropped, whatever happened in
/// between.
struct Running {
    child: Option<Child>,
    prefix: String,
    run_dir: PathBuf,
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
                eprintln!("vrouter-bench: vrouter did not stop within {:?} of SIGINT; killing it", self.stop_timeout);
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
        // Every run has its own run directory, so its table file on hugetlbfs would never
        // be replaced: it would hold its huge pages until removed.
        memory::remove_table_outside(&self.run_dir);
    }
}

/// Whole-run totals read after the vRouter stopped.
#[derive(Debug, Clone, Copy)]
pub struct Totals {
    /// VM vif RX packets.
    pub rx: u64,
    /// Fabric vif TX packets.
    pub tx: u64,
    /// Drops, all reasons.
    pub drops: u64,
    /// Whether the vRouter exited successfully after SIGINT (not killed).
    pub clean_exit: bool,
}

/// A vRouter that was started and has received its first packet.
pub struct Started {
    running: Running,
    log_path: PathBuf,
    run_dir: PathBuf,
    /// Process id of the vRouter.
    pub pid: u32,
    /// Its stats region, mapped read-only.
    pub reader: StatsReader,
    /// Thread id of the forwarding thread.
    pub fwd_tid: u32,
    /// Thread names of the process (to check the forwarding thread's name).
    pub threads: Vec<String>,
    /// Seconds from spawn to the first received packet (EAL init + pcap preload).
    pub startup_s: f64,
    /// When the first packet was seen on the VM vif (within `first_rx_poll`).
    pub first_rx: Instant,
    /// DPDK's memory in this run.
    pub dpdk_memory: Memory,
    /// The flow table file (with flows on), as found after the first packet.
    pub flow_table: Option<PathBuf>,
}

impl Started {
    /// Writes the configuration, starts the vRouter, waits for the stats region and then
    /// for the first packet on the VM vif (polled every `first_rx_poll`), and finds the
    /// forwarding thread.
    pub fn start(spec: &RunSpec, first_rx_poll: Duration) -> Result<Started> {
        let topo = &spec.topology;
        let _ = std::fs::remove_dir_all(&topo.run_dir);
        std::fs::create_dir_all(&topo.run_dir).with_context(|| format!("creating {}", topo.run_dir.display()))?;
        std::fs::write(&spec.config_path, topo.config_toml())
            .with_context(|| format!("writing {}", spec.config_path.display()))?;
        let log = File::create(&spec.log_path).with_context(|| format!("creating {}", spec.log_path.display()))?;

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
            run_dir: topo.run_dir.clone(),
            stop_timeout: spec.stop_timeout,
        };

        // 1. Wait for the stats region, then for packets on the VM vif.
        let deadline = t0 + spec.start_timeout;
        let mut reader: Option<StatsReader> = None;
        let first_rx = loop {
            early_exit(&mut running, &spec.log_path)?;
            if reader.is_none() {
                reader = StatsReader::open(&topo.run_dir).ok();
            }
            if let Some(r) = &reader {
                if r.vif_counters(VM_VIF, None).rx_packets > 0 {
                    break Instant::now();
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
            if interrupted() {
                bail!("interrupted");
            }
            std::thread::sleep(if reader.is_some() { first_rx_poll } else { Duration::from_millis(50) });
        };
        let reader = reader.expect("opened above");
        let startup_s = (first_rx - t0).as_secs_f64();

        // 2. The forwarding thread.
        let threads = procfs::threads(pid)?;
        let names: Vec<String> = threads.iter().map(|(_, c)| c.clone()).collect();
        let fwd: Vec<u32> = threads.iter().filter(|(_, c)| *c == spec.fwd_thread).map(|(t, _)| *t).collect();
        let fwd_tid = match fwd.as_slice() {
            [t] => *t,
            [] => bail!("no thread named {:?} in vrouter (pid {pid}); threads: {names:?}", spec.fwd_thread),
            _ => bail!("several threads named {:?} in vrouter (pid {pid}): {fwd:?}", spec.fwd_thread),
        };
        let table_link = topo.run_dir.join(flow_table::FLOW_FILE_NAME);
        let flow_table = std::fs::read_link(&table_link).ok().or_else(|| table_link.exists().then_some(table_link));
        Ok(Started {
            running,
            log_path: spec.log_path.clone(),
            run_dir: topo.run_dir.clone(),
            pid,
            reader,
            fwd_tid,
            threads: names,
            startup_s,
            first_rx,
            dpdk_memory: topo.memory,
            flow_table,
        })
    }

    /// An error (with the log's tail) if the vRouter has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        early_exit(&mut self.running, &self.log_path)
    }

    /// The thread id of the thread named `comm`, if there is exactly one.
    pub fn thread(&self, comm: &str) -> Option<u32> {
        match procfs::threads_named(self.pid, comm).ok()?.as_slice() {
            [t] => Some(*t),
            _ => None,
        }
    }

    /// The vRouter's run directory (regions, control socket).
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// Where the vRouter's stdout and stderr go.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Stops the vRouter (SIGINT) and reads the final counters.
    pub fn stop(mut self) -> Result<Totals> {
        let clean_exit = self.running.stop()?;
        let t = Totals {
            rx: self.reader.vif_counters(VM_VIF, None).rx_packets,
            // Originals only: the fabric's TX includes the mirror copies sent.
            tx: self
                .reader
                .vif_counters(FABRIC_VIF, None)
                .tx_packets
                .saturating_sub(self.reader.lcore_counters(None).mirror_packets),
            drops: self.reader.drops(None).iter().sum(),
            clean_exit,
        };
        let run_dir = self.run_dir.clone();
        drop(self);
        let _ = std::fs::remove_dir_all(&run_dir);
        Ok(t)
    }
}

fn early_exit(running: &mut Running, log_path: &Path) -> Result<()> {
    if let Some(c) = running.child.as_mut() {
        if let Some(st) = c.try_wait()? {
            running.child = None;
            bail!("vrouter exited early ({st}); log {}:\n{}", log_path.display(), log_tail(log_path, 30));
        }
    }
    Ok(())
}

/// The window measurement between two samples.
#[allow(clippy::too_many_arguments)]
fn window(
    a: &Sample,
    b: &Sample,
    load_before: [f64; 3],
    load_after: [f64; 3],
    st: &Ident,
    totals: Totals,
) -> VrouterMeasurement {
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
    VrouterMeasurement {
        window_s: dt,
        rx_packets: rx,
        tx_packets: tx,
        mirror_packets: b.mirror_packets.saturating_sub(a.mirror_packets),
        mirror_errors: b.mirror_errors.saturating_sub(a.mirror_errors),
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
        startup_s: st.startup_s,
        fwd_tid: st.fwd_tid,
        threads: st.threads.clone(),
        total_rx: totals.rx,
        total_tx: totals.tx,
        total_drops: totals.drops,
        accounted: totals.rx == totals.tx + totals.drops,
        clean_exit: totals.clean_exit,
        dpdk_memory: st.dpdk_memory,
        flow_table: st.flow_table.as_ref().map(|p| p.display().to_string()),
    }
}

/// Runs the vRouter once and measures it (the stateless path: no settling beyond `warm`).
pub fn measure(spec: &RunSpec) -> Result<VrouterMeasurement> {
    let mut st = Started::start(spec, Duration::from_millis(50))?;
    // Warm-up, then the window.
    sleep_checked(spec.warm)?;
    st.check_alive()?;
    let (a, b, load_before, load_after) = sample_window(&mut st, spec.dur)?;
    // Stop and check the accounting on the final counters.
    let ident = st.ident();
    let totals = st.stop()?;
    if interrupted() {
        bail!("interrupted");
    }
    Ok(window(&a, &b, load_before, load_after, &ident, totals))
}

/// Samples, waits `dur`, samples again; with the load average around it.
pub(crate) fn sample_window(st: &mut Started, dur: Duration) -> Result<(Sample, Sample, [f64; 3], [f64; 3])> {
    let load_before = procfs::loadavg()?;
    let a = sample(&st.reader, st.pid, st.fwd_tid)?;
    sleep_checked(dur)?;
    let b = sample(&st.reader, st.pid, st.fwd_tid)?;
    let load_after = procfs::loadavg()?;
    st.check_alive()?;
    Ok((a, b, load_before, load_after))
}

/// The measurement of the window between `a` and `b` (see [`sample_window`]).
pub(crate) fn window_measurement(
    a: &Sample,
    b: &Sample,
    load: ([f64; 3], [f64; 3]),
    ident: &Ident,
    totals: Totals,
) -> VrouterMeasurement {
    window(a, b, load.0, load.1, ident, totals)
}

/// Identification of a run that outlives the process.
#[derive(Debug, Clone)]
pub struct Ident {
    /// Seconds from spawn to the first received packet.
    pub startup_s: f64,
    /// Thread id of the forwarding thread.
    pub fwd_tid: u32,
    /// Thread names of the vRouter process.
    pub threads: Vec<String>,
    /// DPDK's memory in the run.
    pub dpdk_memory: Memory,
    /// The flow table file of the run.
    pub flow_table: Option<PathBuf>,
}

impl Started {
    /// What of this run outlives the process (startup time, thread ids and names, for the window measurement).
    pub fn ident(&self) -> Ident {
        Ident {
            startup_s: self.startup_s,
            fwd_tid: self.fwd_tid,
            threads: self.threads.clone(),
            dpdk_memory: self.dpdk_memory,
            flow_table: self.flow_table.clone(),
        }
    }
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
