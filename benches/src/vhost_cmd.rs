//! `vrouter-bench --vhost`: VMs on vhost-user ports, the vRouter next to OVS-DPDK, in one run.
//!
//! Systems, each measured `--reps` times (interleaved: one repetition of every system, then
//! the next), the table shows medians:
//!
//! - **vRouter VM -> VM**: vif 1 (vhost) -> route -> vif 2 (vhost), flow table on;
//! - **vRouter VM -> fabric**: vif 1 (vhost) -> route -> MPLSoUDP on the fabric vif
//!   (`net_null`, TX frees), flow table on;
//! - **OVS-DPDK ct** and **OVS-DPDK l3**: `dpdkvhostuserclient` port 1 -> port 2 with the
//!   conntrack and the stateless l3 pipelines of `shared/bench/run_ovs_dpdk.py`;
//! - **scaling** (`--scaling`): vRouter VM -> VM with 2 queue pairs per vhost vif and the
//!   generator hashing flows over them, on 1 and on 2 forwarding lcores (needs `[eal]
//!   forwarding_cpus`; see `--lcores2`).
//!
//! The same generator and sink for all: one `vm-guest` process (see [`crate::guest`]) on
//! CPU 0, busy-polling, the sender on `vm1.sock` and the sink on `vm2.sock`, both listening;
//! the system under test connects to them. The forwarding lcore / the OVS PMD runs alone on
//! CPU 1; the vRouter's main thread and OVS's main thread share CPU 0 with the guest.
//!
//! ## The metric: Mpps per busy forwarding core
//!
//! On 2 CPUs the generator (on CPU 0, sharing it with the sink) may be slower than the
//! forwarding core, which then idles part of the time. Packets per on-CPU second of the
//! forwarding thread (the method of `shared/bench/README.md`) would count those idle polls
//! as work, so each system reports, over the same window:
//!
//! - **wall Mpps**: packets received by the forwarding core / wall seconds;
//! - **fwd CPU share**: on-CPU seconds of the forwarding thread / wall seconds
//!   (`/proc/PID/task/TID/schedstat`; < 0.95 means something else ran on CPU 1);
//! - **Mpps per busy core**: packets / busy seconds of the forwarding thread, where
//!   - *vRouter*: busy = on-CPU time − idle polls × the cost of one idle poll. An idle poll
//!     is a poll-loop iteration that received nothing on any RX queue (the lcore's
//!     `idle_polls` counter); its cost is calibrated in the same run, before the generator
//!     starts: on-CPU ns of the forwarding thread / idle polls over a window with no traffic
//!     (`--calib` seconds, the guest connected and polling, nothing sent);
//!   - *OVS*: busy = on-CPU time × processing cycles / (processing + idle cycles) of
//!     `dpif-netdev/pmd-stats-show` (OVS counts the TSC cycles of iterations that received
//!     packets as processing cycles, of those that did not as idle: the same split). The
//!     figure straight from the cycles, packets / (processing cycles / TSC Hz), is recorded
//!     too (`ovs_proc_mpps_tsc`).
//!
//! The flows are set up before the window: the vRouter's window starts once every flow of
//! the pcap is in the flow table (none in HOLD) and `--warm` seconds have passed; OVS's after
//! `--warm` seconds of traffic (its conntrack entries and megaflows are then in place).

use crate::guest::{Guest, GuestCounters, GuestSpec};
use crate::hugepages::{Outcome, Reservation};
use crate::ovs_vhost::{self, Ovs, OvsSpec, Pipeline, PmdStats};
use crate::pcap;
use crate::procfs;
use crate::topology::FlowSettings;
use crate::vhost_run::{log_tail, wait_flows_set_up, wait_links_up, wait_stats, wait_until, RunDir, VrProc};
use crate::vhost_topo::{Path as VPath, VhostTopology, VM1_VIF, VM2_VIF};
use crate::vrouter_run::{drop_list, DropCount};
use crate::{interrupted, median, now_unix, shell_line, sleep_checked};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use vrouter::drop_reason::DROP_REASON_COUNT;
use vrouter::stats::StatsReader;

/// The command-line options of the vhost mode (flattened into `vrouter-bench`'s).
#[derive(Debug, Clone, clap::Args)]
pub struct VhostArgs {
    /// The vhost-user benchmark instead: the vRouter VM -> VM and VM -> fabric (MPLSoUDP)
    /// over vhost-user with flows on, next to OVS-DPDK (dpdkvhostuserclient ports, ct and l3
    /// pipelines), one vm-guest generator and sink, at --flows (default 1000 here), --reps
    /// at least 3.
    #[arg(long)]
    pub vhost: bool,
    /// --vhost: seconds of the no-traffic window that calibrates the vRouter's idle poll cost.
    #[arg(long, default_value_t = 2.0)]
    pub calib: f64,
    /// --vhost: 2 MiB hugepages to have free (reserved at run time as root, given back after;
    /// 0: run everything with --no-huge).
    #[arg(long, default_value_t = 1024)]
    pub reserve_hugepages: u64,
    /// --vhost: also the vRouter VM -> VM with 2 queue pairs per vhost vif on 1 and on 2
    /// forwarding lcores.
    #[arg(long)]
    pub scaling: bool,
    /// --vhost --scaling: the CPUs of the 2 forwarding lcores (`[eal] forwarding_cpus`), one
    /// 2-lcore run per occurrence (default: 1,1 and 1,0). Skipped, and reported as not
    /// measured, when the vRouter has no `forwarding_cpus`.
    #[arg(long, value_name = "CPU,CPU", value_delimiter = ',', num_args = 1, action = clap::ArgAction::Append)]
    pub lcores2_cpus: Vec<u32>,
    /// --vhost: the vm-guest binary (default: next to the vrouter binary).
    #[arg(long, value_name = "PATH")]
    pub vm_guest: Option<PathBuf>,
}

/// Options of `vrouter-bench --vhost`.
#[derive(Debug, Clone)]
pub struct Opts {
    /// Distinct flows in the pcap.
    pub flows: u64,
    /// Measurement window, seconds.
    pub dur: f64,
    /// Warm-up after the flows are set up (OVS: after the first packet), seconds.
    pub warm: f64,
    /// The vRouter's no-traffic calibration window, seconds.
    pub calib: f64,
    /// Repetitions of every system.
    pub reps: u32,
    /// Output directory.
    pub out: PathBuf,
    /// Where the vRouter run directories go (a tmpfs).
    pub run_base: PathBuf,
    /// The shared benchmark directory (`bench/gen_flows_pcap.py`).
    pub shared: PathBuf,
    /// The vrouter binary.
    pub vrouter: PathBuf,
    /// The vm-guest binary.
    pub vm_guest: PathBuf,
    /// 2 MiB hugepages to reserve (0: run with `--no-huge`).
    pub hugepages: u64,
    /// Fail instead of falling back to `--no-huge` when no hugepages can be had.
    pub require_huge: bool,
    /// The project's set-up script (`ci/setup.sh`), which reserves hugepages when asked.
    pub setup_script: Option<PathBuf>,
    /// Run the vRouter systems.
    pub vrouter_runs: bool,
    /// Run the OVS-DPDK systems.
    pub ovs: bool,
    /// Run the 1 -> 2 lcore scaling.
    pub scaling: bool,
    /// The CPUs of the 2 forwarding lcores, one placement per 2-lcore run (e.g. `[1, 1]`:
    /// both on the forwarding CPU; `[1, 0]`: the second on the generator's CPU).
    pub lcores2: Vec<Vec<u32>>,
    /// Revision recorded with the results.
    pub rev: String,
    /// Seconds allowed for start-up and link-up.
    pub start_timeout: u64,
    /// Seconds allowed from `go` until every flow is set up.
    pub settle_timeout: u64,
}

/// Which system a run measures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum System {
    /// The vRouter on `path`, `queues` queue pairs per vhost vif, one forwarding lcore per
    /// entry of `cpus` (on that CPU).
    Vrouter {
        /// Where the traffic goes.
        path: VPath,
        /// Queue pairs per vhost vif.
        queues: u16,
        /// The CPU of each forwarding lcore.
        cpus: Vec<u32>,
    },
    /// OVS-DPDK with `pipeline`.
    Ovs {
        /// The OpenFlow pipeline.
        pipeline: Pipeline,
    },
}

impl System {
    /// The row label.
    pub fn label(&self) -> String {
        match self {
            System::Vrouter { path, queues, cpus } => {
                let p = match path {
                    VPath::VmToVm => "vRouter VM->VM",
                    VPath::VmToFabric => "vRouter VM->fabric MPLSoUDP",
                };
                let list = cpus.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
                match (queues, cpus.len()) {
                    (1, 1) => p.to_string(),
                    (q, 1) => format!("{p}, {q} queues, 1 lcore"),
                    (q, n) => format!("{p}, {q} queues, {n} lcores on CPUs {list}"),
                }
            }
            System::Ovs { pipeline: Pipeline::Ct } => "OVS-DPDK ct".into(),
            System::Ovs { pipeline: Pipeline::L3 } => "OVS-DPDK l3".into(),
        }
    }

    /// A short key for file names and CSV.
    pub fn key(&self) -> String {
        match self {
            System::Vrouter { path, queues, cpus } => {
                let p = if *path == VPath::VmToVm { "vr_vm2vm" } else { "vr_vm2fabric" };
                let c: String = cpus.iter().map(u32::to_string).collect();
                if cpus.len() == 1 {
                    format!("{p}_q{queues}_l1")
                } else {
                    format!("{p}_q{queues}_l{}_c{c}", cpus.len())
                }
            }
            System::Ovs { pipeline } => format!("ovs_{}", pipeline.name()),
        }
    }
}

/// One measured run.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Run {
    /// Row label.
    pub system: String,
    /// Key.
    pub key: String,
    /// Repetition (1-based).
    pub rep: u32,
    /// Why the run failed, if it did (the numbers are then zero).
    pub error: Option<String>,
    /// Window length, seconds.
    pub window_s: f64,
    /// Packets the forwarding core received from the sender in the window.
    pub rx_packets: u64,
    /// Packets sent out of the output port in the window.
    pub tx_packets: u64,
    /// `tx_packets / rx_packets`.
    pub tx_over_rx: f64,
    /// Drops in the window (vRouter: by reason below; OVS: vm2 TX drops).
    pub drops: u64,
    /// vRouter drops in the window, by reason.
    pub drop_reasons: Vec<DropCount>,
    /// rx / wall seconds, millions.
    pub wall_mpps: f64,
    /// On-CPU seconds of the forwarding thread(s) in the window.
    pub fwd_cpu_s: f64,
    /// `fwd_cpu_s / window_s` (per forwarding thread: divided by their number).
    pub fwd_cpu_share: f64,
    /// rx / on-CPU seconds (idle polls counted as work), millions.
    pub cpu_mpps: f64,
    /// Busy seconds of the forwarding thread(s) (see the module documentation).
    pub busy_s: f64,
    /// `busy_s / fwd_cpu_s`.
    pub busy_share: f64,
    /// rx / busy seconds, millions: **Mpps per busy forwarding core**.
    pub busy_mpps: f64,
    /// vRouter: Mpps per busy core with busy = on-CPU time x busy cycles / (busy + idle
    /// cycles) of the lcores' own TSC split (iterations that received packets are busy), the
    /// method OVS's row uses with pmd-stats-show.
    pub busy_mpps_tsc: Option<f64>,
    /// vRouter: busy cycles / (busy + idle cycles) of that split.
    pub busy_share_tsc: Option<f64>,
    /// vRouter: ns of one idle poll-loop iteration (calibration window).
    pub idle_poll_ns: Option<f64>,
    /// vRouter: the calibration window.
    pub calib: Option<Calibration>,
    /// vRouter: idle and busy poll-loop iterations in the window.
    pub polls: Option<(u64, u64)>,
    /// vRouter: packets per busy poll-loop iteration.
    pub avg_burst: Option<f64>,
    /// vRouter: seconds from `go` until every flow was set up.
    pub settle_s: Option<f64>,
    /// vRouter: whole run, after the stop: sender vif RX == output vif TX + drops.
    pub accounted: Option<bool>,
    /// vRouter: (sender vif RX, output vif TX, drops) over the whole run.
    pub totals: Option<(u64, u64, u64)>,
    /// OVS: pmd-stats-show over the window.
    pub pmd: Option<PmdStats>,
    /// OVS: rx / (processing cycles / TSC Hz), millions.
    pub ovs_proc_mpps_tsc: Option<f64>,
    /// The generator's counters at the end (sent, sink received).
    pub guest: Option<GuestCounters>,
    /// Busy share of each CPU over the window.
    pub cpu_busy: Vec<f64>,
    /// Load average before and after the window.
    pub load: ([f64; 3], [f64; 3]),
    /// The commands that ran (system under test and guest).
    pub commands: Vec<String>,
}

/// The no-traffic calibration of the vRouter's idle poll cost.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Calibration {
    /// Seconds.
    pub window_s: f64,
    /// On-CPU ns of the forwarding thread(s).
    pub cpu_ns: u64,
    /// Idle poll-loop iterations.
    pub idle_polls: u64,
    /// Busy poll-loop iterations (0: nothing arrived, as it must).
    pub busy_polls: u64,
}

/// ns of one idle poll from a calibration window; an error if traffic arrived in it or
/// nothing was polled.
pub fn idle_poll_ns(c: &Calibration) -> Result<f64> {
    if c.busy_polls > 0 {
        bail!("calibration window received packets ({} busy polls): the idle cost is not measurable", c.busy_polls);
    }
    if c.idle_polls == 0 {
        bail!("calibration window: the forwarding lcore did not poll");
    }
    Ok(c.cpu_ns as f64 / c.idle_polls as f64)
}

/// Busy ns of a forwarding thread: its on-CPU ns less `idle_polls` idle iterations at
/// `idle_ns` each (never below 0).
pub fn vrouter_busy_ns(cpu_ns: u64, idle_polls: u64, idle_ns: f64) -> f64 {
    (cpu_ns as f64 - idle_polls as f64 * idle_ns).max(0.0)
}

/// Busy ns of an OVS PMD: its on-CPU ns times the share of its cycles in processing
/// iterations.
pub fn ovs_busy_ns(cpu_ns: u64, pmd: &PmdStats) -> f64 {
    cpu_ns as f64 * pmd.processing_share()
}

/// Millions of packets per second of `ns`.
pub fn mpps(packets: u64, ns: f64) -> f64 {
    if ns > 0.0 {
        packets as f64 / ns * 1e3
    } else {
        0.0
    }
}

/// The TSC frequency, measured against the monotonic clock over 200 ms.
pub fn tsc_hz() -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: rdtsc has no preconditions on x86_64.
        let (t0, c0) = (Instant::now(), unsafe { core::arch::x86_64::_rdtsc() });
        std::thread::sleep(Duration::from_millis(200));
        // SAFETY: as above.
        let (t1, c1) = (Instant::now(), unsafe { core::arch::x86_64::_rdtsc() });
        Some((c1 - c0) as f64 / (t1 - t0).as_secs_f64())
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// Medians over the successful runs of one system.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Label.
    pub system: String,
    /// Key.
    pub key: String,
    /// Successful runs.
    pub runs: usize,
    /// Median Mpps per busy forwarding core.
    pub busy_mpps: f64,
    /// Median Mpps per busy core with the TSC split for both systems ([`Run::tsc_mpps`]).
    pub tsc_mpps: f64,
    /// Median busy share of the TSC split (OVS: its processing share).
    pub tsc_busy_share: f64,
    /// Median wall Mpps.
    pub wall_mpps: f64,
    /// Median rx per on-CPU second.
    pub cpu_mpps: f64,
    /// Median forwarding-thread CPU share.
    pub fwd_cpu_share: f64,
    /// Median busy share of the forwarding thread's CPU time.
    pub busy_share: f64,
    /// Median tx/rx.
    pub tx_over_rx: f64,
    /// Every run's Mpps per busy core (spread).
    pub busy_mpps_runs: Vec<f64>,
    /// busy_mpps / OVS ct's.
    pub vs_ovs_ct: Option<f64>,
    /// busy_mpps / OVS l3's.
    pub vs_ovs_l3: Option<f64>,
    /// Median over the repetitions of this row's busy_mpps / OVS ct's in the same
    /// repetition (run minutes apart, so the machine's drift between repetitions cancels).
    pub paired_vs_ovs_ct: Option<f64>,
    /// The same against OVS l3.
    pub paired_vs_ovs_l3: Option<f64>,
    /// tsc_mpps / OVS ct's.
    pub tsc_vs_ovs_ct: Option<f64>,
    /// tsc_mpps / OVS l3's.
    pub tsc_vs_ovs_l3: Option<f64>,
    /// Paired median of tsc_mpps / OVS ct's.
    pub tsc_paired_vs_ovs_ct: Option<f64>,
    /// Paired median of tsc_mpps / OVS l3's.
    pub tsc_paired_vs_ovs_l3: Option<f64>,
}

impl Run {
    /// Mpps per busy core with busy cycles told from idle ones by the system's own TSC split
    /// of its poll-loop iterations: the vRouter's lcore counters, OVS's pmd-stats-show.
    pub fn tsc_mpps(&self) -> f64 {
        self.busy_mpps_tsc.unwrap_or(self.busy_mpps)
    }

    fn tsc_busy_share(&self) -> f64 {
        self.busy_share_tsc.unwrap_or(self.busy_share)
    }
}

/// Per repetition, `key`'s busy_mpps / `base`'s (both successful), in repetition order.
pub fn paired_ratios(runs: &[Run], key: &str, base: &str) -> Vec<f64> {
    paired_ratios_of(runs, key, base, |r| r.busy_mpps)
}

/// Per repetition, `key`'s `f` / `base`'s (both successful), in repetition order.
pub fn paired_ratios_of(runs: &[Run], key: &str, base: &str, f: fn(&Run) -> f64) -> Vec<f64> {
    let ok = |k: &str, rep: u32| runs.iter().find(|r| r.key == k && r.rep == rep && r.error.is_none());
    let mut reps: Vec<u32> = runs.iter().filter(|r| r.key == key).map(|r| r.rep).collect();
    reps.sort_unstable();
    reps.dedup();
    reps.into_iter()
        .filter_map(|rep| match (ok(key, rep), ok(base, rep)) {
            (Some(a), Some(b)) if f(b) > 0.0 => Some(f(a) / f(b)),
            _ => None,
        })
        .collect()
}

/// Medians per system (in first-seen order) and the ratios to the OVS rows.
pub fn rows(runs: &[Run]) -> Vec<Row> {
    let mut keys: Vec<(String, String)> = Vec::new();
    for r in runs {
        if !keys.iter().any(|(k, _)| *k == r.key) {
            keys.push((r.key.clone(), r.system.clone()));
        }
    }
    let mut out: Vec<Row> = keys
        .into_iter()
        .map(|(key, system)| {
            let ok: Vec<&Run> = runs.iter().filter(|r| r.key == key && r.error.is_none()).collect();
            let m = |f: fn(&Run) -> f64| median(&ok.iter().map(|r| f(r)).collect::<Vec<_>>());
            Row {
                system,
                key,
                runs: ok.len(),
                busy_mpps: m(|r| r.busy_mpps),
                tsc_mpps: m(Run::tsc_mpps),
                tsc_busy_share: m(Run::tsc_busy_share),
                wall_mpps: m(|r| r.wall_mpps),
                cpu_mpps: m(|r| r.cpu_mpps),
                fwd_cpu_share: m(|r| r.fwd_cpu_share),
                busy_share: m(|r| r.busy_share),
                tx_over_rx: m(|r| r.tx_over_rx),
                busy_mpps_runs: ok.iter().map(|r| r.busy_mpps).collect(),
                vs_ovs_ct: None,
                vs_ovs_l3: None,
                paired_vs_ovs_ct: None,
                paired_vs_ovs_l3: None,
                tsc_vs_ovs_ct: None,
                tsc_vs_ovs_l3: None,
                tsc_paired_vs_ovs_ct: None,
                tsc_paired_vs_ovs_l3: None,
            }
        })
        .collect();
    let base = |k: &str, out: &[Row]| out.iter().find(|r| r.key == k && r.runs > 0).map(|r| r.busy_mpps);
    let (ct, l3) = (base("ovs_ct", &out), base("ovs_l3", &out));
    let tsc_base = |k: &str, out: &[Row]| out.iter().find(|r| r.key == k && r.runs > 0).map(|r| r.tsc_mpps);
    let (tct, tl3) = (tsc_base("ovs_ct", &out), tsc_base("ovs_l3", &out));
    for r in &mut out {
        if r.runs == 0 {
            continue;
        }
        r.vs_ovs_ct = ct.filter(|c| *c > 0.0).map(|c| r.busy_mpps / c);
        r.vs_ovs_l3 = l3.filter(|c| *c > 0.0).map(|c| r.busy_mpps / c);
        let paired = |base: &str| {
            let v = paired_ratios(runs, &r.key, base);
            (!v.is_empty()).then(|| median(&v))
        };
        r.paired_vs_ovs_ct = paired("ovs_ct");
        r.paired_vs_ovs_l3 = paired("ovs_l3");
        r.tsc_vs_ovs_ct = tct.filter(|c| *c > 0.0).map(|c| r.tsc_mpps / c);
        r.tsc_vs_ovs_l3 = tl3.filter(|c| *c > 0.0).map(|c| r.tsc_mpps / c);
        let tsc_paired = |base: &str| {
            let v = paired_ratios_of(runs, &r.key, base, Run::tsc_mpps);
            (!v.is_empty()).then(|| median(&v))
        };
        r.tsc_paired_vs_ovs_ct = tsc_paired("ovs_ct");
        r.tsc_paired_vs_ovs_l3 = tsc_paired("ovs_l3");
    }
    out
}

fn f2(x: f64) -> String {
    if x.is_nan() {
        "-".into()
    } else {
        format!("{x:.2}")
    }
}

/// The markdown table.
pub fn table(rows: &[Row]) -> String {
    let mut s = String::from(
        "| system | runs | Mpps per busy core | wall Mpps | Mpps per on-CPU s | fwd CPU share | busy share | tx/rx | x OVS ct | x OVS l3 | x OVS ct, paired | x OVS l3, paired | runs (Mpps per busy core) |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let ratio = |x: Option<f64>| x.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into());
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.system,
            r.runs,
            f2(r.busy_mpps),
            f2(r.wall_mpps),
            f2(r.cpu_mpps),
            f2(r.fwd_cpu_share),
            f2(r.busy_share),
            if r.tx_over_rx.is_nan() { "-".into() } else { format!("{:.3}", r.tx_over_rx) },
            ratio(r.vs_ovs_ct),
            ratio(r.vs_ovs_l3),
            ratio(r.paired_vs_ovs_ct),
            ratio(r.paired_vs_ovs_l3),
            r.busy_mpps_runs.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(" / "),
        ));
    }
    s
}

/// The same rows with busy time told apart the same way for both systems: each one's own
/// TSC split of its poll-loop iterations (the vRouter's lcore counters, OVS's
/// pmd-stats-show), instead of the vRouter's calibrated idle-poll cost.
pub fn tsc_table(rows: &[Row]) -> String {
    let mut s = String::from(
        "| system | Mpps per busy core, TSC split | busy share, TSC split | x OVS ct | x OVS l3 | x OVS ct, paired | x OVS l3, paired |\n\
         |---|---|---|---|---|---|---|\n",
    );
    let ratio = |x: Option<f64>| x.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into());
    for r in rows.iter().filter(|r| r.runs > 0) {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            r.system,
            f2(r.tsc_mpps),
            f2(r.tsc_busy_share),
            ratio(r.tsc_vs_ovs_ct),
            ratio(r.tsc_vs_ovs_l3),
            ratio(r.tsc_paired_vs_ovs_ct),
            ratio(r.tsc_paired_vs_ovs_l3),
        ));
    }
    s
}

/// The scaling lines: each 2-lcore VM -> VM row against the 1-lcore row with the same
/// queues. On 2 CPUs the 2 lcores cannot both own a CPU (CPU 0 is the generator's), so the
/// wall rate cannot double; what carries over to a machine with a CPU per lcore is the
/// work per packet: Mpps per busy core of the 2-lcore run (packets / the busy seconds of
/// both threads) against the 1-lcore run's, and twice that as the capacity of 2 such cores.
pub fn scaling_lines(rows: &[Row]) -> Vec<String> {
    let Some(one) = rows.iter().find(|r| r.key == "vr_vm2vm_q2_l1" && r.runs > 0) else { return vec![] };
    rows.iter()
        .filter(|r| r.key.starts_with("vr_vm2vm_q2_l2") && r.runs > 0)
        .map(|r| {
            format!(
                "{}: {:.2} Mpps per busy core = {:.2}x the 1-lcore run's {:.2} (2 cores of that: {:.2}x one lcore); \
                 wall {:.2} vs {:.2} Mpps ({:.2}x; bounded here by the shared CPUs)",
                r.system,
                r.busy_mpps,
                r.busy_mpps / one.busy_mpps,
                one.busy_mpps,
                2.0 * r.busy_mpps / one.busy_mpps,
                r.wall_mpps,
                one.wall_mpps,
                r.wall_mpps / one.wall_mpps,
            )
        })
        .collect()
}

/// The CSV header of `vhost_runs.csv`.
pub const CSV_HEADER: &str = "system,rep,error,window_s,rx_packets,tx_packets,tx_over_rx,drops,wall_mpps,fwd_cpu_s,\
fwd_cpu_share,cpu_mpps,busy_s,busy_share,busy_mpps,idle_poll_ns,ovs_proc_mpps_tsc,settle_s,accounted,load1";

/// One CSV line of a run.
pub fn csv_line(r: &Run) -> String {
    let o = |x: Option<f64>| x.map(|v| format!("{v:.3}")).unwrap_or_default();
    format!(
        "{},{},{},{:.3},{},{},{:.4},{},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{},{},{},{},{:.2}",
        r.key,
        r.rep,
        r.error.as_deref().map(|e| e.replace([',', '\n'], ";")).unwrap_or_default(),
        r.window_s,
        r.rx_packets,
        r.tx_packets,
        r.tx_over_rx,
        r.drops,
        r.wall_mpps,
        r.fwd_cpu_s,
        r.fwd_cpu_share,
        r.cpu_mpps,
        r.busy_s,
        r.busy_share,
        r.busy_mpps,
        o(r.idle_poll_ns),
        o(r.ovs_proc_mpps_tsc),
        o(r.settle_s),
        r.accounted.map(|a| a.to_string()).unwrap_or_default(),
        r.load.0[0],
    )
}

// ---------------------------------------------------------------------------------------
// Running.

struct Ctx {
    o: Opts,
    pcap: PathBuf,
    huge: bool,
    tsc_hz: Option<f64>,
    sock_dir: PathBuf,
    seq: u32,
}

impl Ctx {
    fn guest_spec(&mut self, queues: u16, tag: &str) -> GuestSpec {
        self.seq += 1;
        GuestSpec::blast(
            &self.o.vm_guest,
            &self.sock_dir,
            &self.pcap,
            queues,
            self.huge,
            format!("vbg{}_{}", std::process::id(), self.seq),
            self.o.out.join(format!("guest_{tag}.log")),
        )
    }
}

/// Counters of the vRouter at one instant.
struct VrSample {
    t: Instant,
    cpu_ns: u64,
    rx: u64,
    tx: u64,
    drops: [u64; DROP_REASON_COUNT],
    busy_polls: u64,
    idle_polls: u64,
    /// The lcores' TSC split of their iterations.
    busy_cycles: u64,
    idle_cycles: u64,
    jiffies: Vec<(u64, u64)>,
}

fn vr_sample(reader: &StatsReader, pid: u32, tids: &[u32], out_vif: u16) -> Result<VrSample> {
    let jiffies = procfs::cpu_jiffies().unwrap_or_default();
    let mut cpu_ns = 0;
    for &t in tids {
        cpu_ns += procfs::thread_cpu_ns(pid, t)?;
    }
    let lc = reader.lcore_counters(None);
    let perf = reader.lcore_perf_counters(None);
    Ok(VrSample {
        busy_cycles: perf.busy_cycles,
        idle_cycles: perf.idle_cycles,
        t: Instant::now(),
        cpu_ns,
        rx: reader.vif_counters(VM1_VIF, None).rx_packets,
        tx: reader.vif_counters(out_vif, None).tx_packets,
        drops: reader.drops(None),
        busy_polls: lc.busy_polls,
        idle_polls: lc.idle_polls,
        jiffies,
    })
}

fn run_vrouter(ctx: &mut Ctx, path: VPath, queues: u16, cpus: &[u32], rep: u32) -> Result<Run> {
    let sys = System::Vrouter { path, queues, cpus: cpus.to_vec() };
    let lcores = cpus.len() as u16;
    let key = sys.key();
    let prefix = format!("vbv{}_{}_{rep}", std::process::id(), key);
    let run_dir = ctx.o.run_base.join(&prefix);
    let _ = std::fs::remove_dir_all(&run_dir);
    std::fs::create_dir_all(&run_dir)?;
    // Declared before the vRouter's guard, so dropped after it: the run directory and a flow
    // table on hugetlbfs go once the vRouter has stopped, whatever happened.
    let _run_dir_guard = RunDir(run_dir.clone());
    // Lcores 1..=n; with one lcore on CPU 1 the plain `forwarding_cores = [1]`.
    let forwarding_cores: Vec<u32> = (1..=u32::from(lcores)).collect();
    let forwarding_cpus = (cpus != forwarding_cores.as_slice()).then(|| cpus.to_vec());
    let topo = VhostTopology {
        path,
        vm1_socket: ctx.sock_dir.join("vm1.sock"),
        vm2_socket: ctx.sock_dir.join("vm2.sock"),
        queues,
        run_dir: run_dir.clone(),
        file_prefix: prefix.clone(),
        huge: ctx.huge,
        memory_mb: if ctx.huge { 512 } else { 1024 },
        mbufs: 16383,
        main_core: 0,
        forwarding_cores,
        forwarding_cpus,
        flow: FlowSettings::for_flows(ctx.o.flows),
    };
    let cfg_path = ctx.o.out.join(format!("vrouter_{key}.toml"));
    std::fs::write(&cfg_path, topo.config_toml())?;
    let log_path = ctx.o.out.join(format!("vrouter_{key}_{rep}.log"));
    let gspec = ctx.guest_spec(queues, &format!("{key}_{rep}"));
    let mut run = Run { system: sys.label(), key: key.clone(), rep, ..Run::default() };
    run.commands.push(shell_line(&gspec.argv()));
    run.commands.push(shell_line(&[
        ctx.o.vrouter.display().to_string(),
        "--config".into(),
        cfg_path.display().to_string(),
    ]));

    // 1. The guest listens, the vRouter connects.
    let mut guest = Guest::start(&gspec)?;
    let args = ["--config".to_string(), cfg_path.display().to_string()];
    let mut vr = VrProc::spawn(&ctx.o.vrouter, &args, &log_path, Some(&prefix))?;
    let pid = vr.pid().context("just started")?;
    let start = Duration::from_secs(ctx.o.start_timeout);
    let reader = wait_stats(&run_dir, start, || vr.check_alive())?;
    guest.expect("ready", start).with_context(|| format!("vRouter log:\n{}", log_tail(&log_path)))?;
    wait_links_up(&reader, &[VM1_VIF, VM2_VIF], start, || vr.check_alive())?;
    let names: Vec<String> = (1..=lcores).map(|i| format!("rte-worker-{i}")).collect();
    let tids: Vec<u32> = names
        .iter()
        .map(|n| match procfs::threads_named(pid, n)?.as_slice() {
            [t] => Ok(*t),
            other => bail!("threads named {n:?} in the vRouter: {other:?} (all: {:?})", procfs::threads(pid)),
        })
        .collect::<Result<_>>()?;

    // 2. Calibration: the idle cost of one poll, no traffic.
    sleep_checked(Duration::from_millis(500))?;
    let a0 = vr_sample(&reader, pid, &tids, path.out_vif())?;
    sleep_checked(Duration::from_secs_f64(ctx.o.calib))?;
    let b0 = vr_sample(&reader, pid, &tids, path.out_vif())?;
    let calib = Calibration {
        window_s: (b0.t - a0.t).as_secs_f64(),
        cpu_ns: b0.cpu_ns - a0.cpu_ns,
        idle_polls: b0.idle_polls - a0.idle_polls,
        busy_polls: b0.busy_polls - a0.busy_polls,
    };
    let idle_ns = idle_poll_ns(&calib)?;
    run.calib = Some(calib);
    run.idle_poll_ns = Some(idle_ns);

    // 3. Traffic; every flow set up (created >= N, nothing in HOLD, stable for 1 s).
    guest.go()?;
    let t_go = Instant::now();
    let settled =
        wait_flows_set_up(&run_dir, ctx.o.flows, 0, Duration::from_secs(ctx.o.settle_timeout), || vr.check_alive())?;
    run.settle_s = Some((settled - t_go).as_secs_f64());

    // 4. The window.
    sleep_checked(Duration::from_secs_f64(ctx.o.warm))?;
    let load_a = procfs::loadavg().unwrap_or_default();
    let a = vr_sample(&reader, pid, &tids, path.out_vif())?;
    sleep_checked(Duration::from_secs_f64(ctx.o.dur))?;
    let b = vr_sample(&reader, pid, &tids, path.out_vif())?;
    let load_b = procfs::loadavg().unwrap_or_default();
    vr.check_alive()?;

    // 5. Stop: the guest first (its counters), then the vRouter; the whole run's accounting.
    run.guest = Some(guest.stop()?);
    std::thread::sleep(Duration::from_millis(200));
    let clean = vr.stop();
    let total_rx = reader.vif_counters(VM1_VIF, None).rx_packets;
    let total_tx = reader.vif_counters(path.out_vif(), None).tx_packets;
    let total_drops: u64 = reader.drops(None).iter().sum();
    run.totals = Some((total_rx, total_tx, total_drops));
    run.accounted = Some(total_rx == total_tx + total_drops);
    if !clean {
        eprintln!("vrouter-bench: {key} rep {rep}: the vRouter did not exit cleanly after SIGINT");
    }

    let dt = (b.t - a.t).as_secs_f64();
    let rx = b.rx - a.rx;
    let cpu_ns = b.cpu_ns - a.cpu_ns;
    let idle = b.idle_polls - a.idle_polls;
    let busy_polls = b.busy_polls - a.busy_polls;
    let mut d = [0u64; DROP_REASON_COUNT];
    for (i, x) in d.iter_mut().enumerate() {
        *x = b.drops[i].saturating_sub(a.drops[i]);
    }
    let busy_ns = vrouter_busy_ns(cpu_ns, idle, idle_ns);
    run.window_s = dt;
    run.rx_packets = rx;
    run.tx_packets = b.tx - a.tx;
    run.tx_over_rx = if rx > 0 { run.tx_packets as f64 / rx as f64 } else { 0.0 };
    run.drops = d.iter().sum();
    run.drop_reasons = drop_list(&d);
    run.wall_mpps = mpps(rx, dt * 1e9);
    run.fwd_cpu_s = cpu_ns as f64 / 1e9;
    run.fwd_cpu_share = cpu_ns as f64 / 1e9 / dt / f64::from(lcores);
    run.cpu_mpps = mpps(rx, cpu_ns as f64);
    run.busy_s = busy_ns / 1e9;
    run.busy_share = if cpu_ns > 0 { busy_ns / cpu_ns as f64 } else { 0.0 };
    run.busy_mpps = mpps(rx, busy_ns);
    let (bc, ic) = (b.busy_cycles - a.busy_cycles, b.idle_cycles - a.idle_cycles);
    if bc + ic > 0 {
        let share = bc as f64 / (bc + ic) as f64;
        run.busy_share_tsc = Some(share);
        run.busy_mpps_tsc = Some(mpps(rx, cpu_ns as f64 * share));
    }
    run.polls = Some((idle, busy_polls));
    run.avg_burst = (busy_polls > 0).then(|| rx as f64 / busy_polls as f64);
    run.cpu_busy = procfs::cpu_busy_share(&a.jiffies, &b.jiffies);
    run.load = (load_a, load_b);
    Ok(run)
}

fn run_ovs(ctx: &mut Ctx, pipeline: Pipeline, rep: u32) -> Result<Run> {
    let sys = System::Ovs { pipeline };
    let key = sys.key();
    let gspec = ctx.guest_spec(1, &format!("{key}_{rep}"));
    let mut run = Run { system: sys.label(), key: key.clone(), rep, ..Run::default() };
    run.commands.push(shell_line(&gspec.argv()));
    let spec = OvsSpec {
        work: ctx.o.out.join(format!("ovs_{key}_{rep}")),
        pipeline,
        vm1_socket: gspec.socket.clone(),
        vm2_socket: gspec.sink_socket.clone(),
        huge: ctx.huge,
        memory_mb: if ctx.huge { 512 } else { 2048 },
        file_prefix: format!("vbo{}_{key}_{rep}", std::process::id()),
    };
    let mut guest = Guest::start(&gspec)?;
    let mut ovs = Ovs::start(&spec).map_err(|e| {
        let log = ctx.o.out.join(format!("ovs_{key}_{rep}/log/ovs-vswitchd.log"));
        e.context(format!("ovs-vswitchd log:\n{}", log_tail(&log)))
    })?;
    let start = Duration::from_secs(ctx.o.start_timeout);
    guest.expect("ready", start).with_context(|| format!("OVS log:\n{}", log_tail(&ovs.log_path())))?;
    run.commands.extend(ovs.commands.iter().cloned());
    // The PMD polls both ports once the guest's drivers are up; then traffic.
    sleep_checked(Duration::from_millis(500))?;
    guest.go()?;
    // vm1's RX (from the sender) and vm2's TX (to the sink), from one dpctl/show.
    let ports = |ovs: &Ovs| -> Result<(u64, u64)> {
        let p = ovs_vhost::parse_dpctl_show(&ovs.appctl(&["dpctl/show", "-s"])?);
        let get = |name: &str| p.iter().find(|(n, _, _)| n == name).map(|&(_, r, t)| (r, t)).unwrap_or((0, 0));
        Ok((get("vm1").0, get("vm2").1))
    };
    wait_until(start, "packets on OVS port vm1", || Ok((ports(&ovs)?.0 > 0).then_some(())))?;
    sleep_checked(Duration::from_secs_f64(ctx.o.warm.max(3.0)))?;
    if !ovs.alive() {
        bail!("ovs-vswitchd exited; log:\n{}", log_tail(&ovs.log_path()));
    }
    let load_a = procfs::loadavg().unwrap_or_default();
    let j0 = procfs::cpu_jiffies().unwrap_or_default();
    let (rx0, tx0) = ports(&ovs)?;
    let cpu0 = ovs.pmd_cpu_ns()?;
    let t0 = Instant::now();
    ovs.appctl(&["dpif-netdev/pmd-stats-clear"])?;
    sleep_checked(Duration::from_secs_f64(ctx.o.dur))?;
    let pst = ovs.appctl(&["dpif-netdev/pmd-stats-show"])?;
    let t1 = Instant::now();
    let cpu1 = ovs.pmd_cpu_ns()?;
    let (rx1, tx1) = ports(&ovs)?;
    let j1 = procfs::cpu_jiffies().unwrap_or_default();
    let load_b = procfs::loadavg().unwrap_or_default();
    std::fs::write(ctx.o.out.join(format!("ovs_{key}_{rep}_pmd_stats.txt")), &pst)?;
    let pmd = ovs_vhost::parse_pmd_stats(&pst).context("no PMD section in pmd-stats-show")?;
    run.guest = Some(guest.stop()?);
    ovs.stop();
    let _ = std::fs::remove_dir_all(&spec.work);

    // Packets and cycles over the pmd-stats window (clear .. show); CPU time and port
    // counters sampled just outside it.
    let dt = (t1 - t0).as_secs_f64();
    let rx = pmd.rx;
    let cpu_ns = cpu1 - cpu0;
    let busy_ns = ovs_busy_ns(cpu_ns, &pmd);
    run.window_s = dt;
    run.rx_packets = rx;
    run.tx_packets = tx1 - tx0;
    let port_rx = rx1 - rx0;
    run.tx_over_rx = if port_rx > 0 { run.tx_packets as f64 / port_rx as f64 } else { 0.0 };
    run.drops = port_rx.saturating_sub(run.tx_packets);
    run.wall_mpps = mpps(rx, dt * 1e9);
    run.fwd_cpu_s = cpu_ns as f64 / 1e9;
    run.fwd_cpu_share = cpu_ns as f64 / 1e9 / dt;
    run.cpu_mpps = mpps(rx, cpu_ns as f64);
    run.busy_s = busy_ns / 1e9;
    run.busy_share = pmd.processing_share();
    run.busy_mpps = mpps(rx, busy_ns);
    run.ovs_proc_mpps_tsc = ctx.tsc_hz.map(|hz| mpps(rx, pmd.processing_cycles as f64 / hz * 1e9));
    run.pmd = Some(pmd);
    run.cpu_busy = procfs::cpu_busy_share(&j0, &j1);
    run.load = (load_a, load_b);
    Ok(run)
}

fn print_run(r: &Run) {
    match &r.error {
        Some(e) => println!("{} rep {}: FAILED: {e}", r.system, r.rep),
        None => {
            println!(
                "{} rep {}: {:.2} Mpps per busy core, wall {:.2} Mpps, {:.2} per on-CPU s, fwd CPU share {:.2}, busy {:.2}, \
                 tx/rx {:.4}, drops {}{}{}{} load {:.2}",
                r.system,
                r.rep,
                r.busy_mpps,
                r.wall_mpps,
                r.cpu_mpps,
                r.fwd_cpu_share,
                r.busy_share,
                r.tx_over_rx,
                r.drops,
                r.idle_poll_ns.map(|x| format!(", idle poll {x:.1} ns")).unwrap_or_default(),
                r.avg_burst.map(|x| format!(", burst {x:.1}")).unwrap_or_default(),
                r.ovs_proc_mpps_tsc.map(|x| format!(", OVS proc-cycles Mpps {x:.2}")).unwrap_or_default(),
                r.load.0[0],
            );
            for d in r.drop_reasons.iter().take(4) {
                println!("    drop {:<24} {}", d.reason, d.packets);
            }
            if r.accounted == Some(false) {
                println!("    WARNING: whole run rx != tx + drops: {:?}", r.totals);
            }
        }
    }
}

#[derive(Serialize)]
struct Doc<'a> {
    tool: &'static str,
    mode: &'static str,
    started_unix: u64,
    finished_unix: u64,
    argv: &'a [String],
    git_rev: &'a str,
    flows: u64,
    pcap: String,
    dur_s: f64,
    warm_s: f64,
    calib_s: f64,
    reps: u32,
    hugepages: &'a Outcome,
    tsc_hz: Option<f64>,
    lscpu: String,
    machine: crate::Machine,
    method: &'static str,
    table: &'a [Row],
    runs: &'a [Run],
    notes: &'a [String],
}

const METHOD: &str = "Mpps per busy forwarding core = packets received by the forwarding core in the window / \
busy seconds of the forwarding thread. vRouter: busy = on-CPU time (schedstat) - idle poll-loop iterations x the \
on-CPU ns of one idle iteration, calibrated in the same run over a window with no traffic. OVS: busy = PMD on-CPU \
time x processing cycles / (processing + idle cycles) of pmd-stats-show.";

/// Whether the vRouter's configuration has `[eal] forwarding_cpus` (several forwarding
/// lcores on fewer CPUs): asked of its own parser.
pub fn forwarding_cpus_supported() -> bool {
    let t = VhostTopology {
        path: VPath::VmToVm,
        vm1_socket: "/tmp/a.sock".into(),
        vm2_socket: "/tmp/b.sock".into(),
        queues: 2,
        run_dir: "/tmp/r".into(),
        file_prefix: "p".into(),
        huge: false,
        memory_mb: 512,
        mbufs: 16383,
        main_core: 0,
        forwarding_cores: vec![1, 2],
        forwarding_cpus: Some(vec![1, 1]),
        flow: FlowSettings::for_flows(1000),
    };
    vrouter::config::parse(&t.config_toml(), "probe.toml").is_ok()
}

/// Runs the whole benchmark.
pub fn run(o: Opts, argv: Vec<String>) -> Result<()> {
    let started = now_unix();
    let load_start = procfs::loadavg().unwrap_or_default();
    std::fs::create_dir_all(&o.out)?;
    std::fs::create_dir_all(&o.run_base)?;
    let mut notes: Vec<String> = Vec::new();
    if !o.vm_guest.is_file() {
        bail!("{} not found: cargo build --release -p vrouter (or --vm-guest PATH)", o.vm_guest.display());
    }
    if o.vrouter_runs && !o.vrouter.is_file() {
        bail!("{} not found: cargo build --release -p vrouter (or --vrouter PATH)", o.vrouter.display());
    }
    if o.ovs {
        ovs_vhost::ensure_installed()?;
    }
    // The traffic.
    let pcap = pcap::ensure_flows_pcap(&o.out, &o.shared, o.flows, &mut Vec::new())?;
    let packets = pcap::count_packets(&pcap)?;
    // Sockets in a short directory (sun_path is 108 bytes).
    let sock_dir = PathBuf::from(format!("/tmp/vbs{}", std::process::id()));
    std::fs::create_dir_all(&sock_dir)?;

    let mut huge = Reservation::take(o.hugepages, &o.out.join("hugetlbfs"), o.setup_script.as_deref());
    if let Some(why) = &huge.outcome.fallback_reason {
        if o.require_huge {
            bail!("--huge: no hugepages for the run: {why}");
        }
        notes.push(format!("running with --no-huge: {why}"));
        println!("# NOTE: running with --no-huge: {why}");
    }
    let (lscpu, model) = crate::lscpu();
    let mut ctx =
        Ctx { pcap: pcap.clone(), huge: huge.outcome.huge, tsc_hz: tsc_hz(), sock_dir: sock_dir.clone(), seq: 0, o };
    println!(
        "# vrouter-bench --vhost: {} flows ({} packets), window {} s after {} s warm-up, calibration {} s, {} reps, \
         hugepages {} ({:?}), CPU {model:?}, load {load_start:?}, rev {}",
        ctx.o.flows, packets, ctx.o.dur, ctx.o.warm, ctx.o.calib, ctx.o.reps, ctx.huge, huge.outcome.mount, ctx.o.rev
    );

    let mut systems: Vec<System> = Vec::new();
    if ctx.o.vrouter_runs {
        systems.push(System::Vrouter { path: VPath::VmToVm, queues: 1, cpus: vec![1] });
        systems.push(System::Vrouter { path: VPath::VmToFabric, queues: 1, cpus: vec![1] });
    }
    if ctx.o.ovs {
        systems.push(System::Ovs { pipeline: Pipeline::Ct });
        systems.push(System::Ovs { pipeline: Pipeline::L3 });
    }
    if ctx.o.scaling {
        systems.push(System::Vrouter { path: VPath::VmToVm, queues: 2, cpus: vec![1] });
        if forwarding_cpus_supported() {
            for cpus in &ctx.o.lcores2 {
                systems.push(System::Vrouter { path: VPath::VmToVm, queues: 2, cpus: cpus.clone() });
            }
        } else {
            notes.push(
                "scaling: the 2-lcore runs were not measured: 2 forwarding lcores on this 2-CPU machine need [eal] \
                 forwarding_cpus (DPDK --lcores mapping), which this vRouter does not have yet"
                    .into(),
            );
        }
    }
    let csv = ctx.o.out.join("vhost_runs.csv");
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&csv)?;
    if f.metadata()?.len() == 0 {
        writeln!(f, "{CSV_HEADER}")?;
    }
    let mut runs: Vec<Run> = Vec::new();
    let write_json = |runs: &[Run], notes: &[String], huge: &Outcome, ctx: &Ctx| -> Result<Vec<Row>> {
        let rows = rows(runs);
        let doc = Doc {
            tool: "vrouter-bench",
            mode: "vhost",
            started_unix: started,
            finished_unix: now_unix(),
            argv: &argv,
            git_rev: &ctx.o.rev,
            flows: ctx.o.flows,
            pcap: ctx.pcap.display().to_string(),
            dur_s: ctx.o.dur,
            warm_s: ctx.o.warm,
            calib_s: ctx.o.calib,
            reps: ctx.o.reps,
            hugepages: huge,
            tsc_hz: ctx.tsc_hz,
            lscpu: lscpu.clone(),
            machine: crate::machine(load_start),
            method: METHOD,
            table: &rows,
            runs,
            notes,
        };
        std::fs::write(ctx.o.out.join("vhost_results.json"), serde_json::to_string_pretty(&doc)?)?;
        Ok(rows)
    };
    'reps: for rep in 1..=ctx.o.reps {
        for sys in &systems {
            println!("\n## {} rep {rep}", sys.label());
            let r = match sys {
                System::Vrouter { path, queues, cpus } => run_vrouter(&mut ctx, *path, *queues, cpus, rep),
                System::Ovs { pipeline } => run_ovs(&mut ctx, *pipeline, rep),
            };
            let r = r.unwrap_or_else(|e| Run {
                system: sys.label(),
                key: sys.key(),
                rep,
                error: Some(format!("{e:#}")),
                ..Run::default()
            });
            print_run(&r);
            writeln!(f, "{}", csv_line(&r))?;
            runs.push(r);
            write_json(&runs, &notes, &huge.outcome, &ctx)?;
            if interrupted() {
                break 'reps;
            }
        }
    }
    huge.release();
    let _ = std::fs::remove_dir_all(&sock_dir);
    let rows = write_json(&runs, &notes, &huge.outcome, &ctx)?;
    let tbl = table(&rows);
    let mut text = format!(
        "# vrouter-bench --vhost, {} flows, 64-byte frames, medians of {} reps; CPU: {model}; hugepages: {}; rev {}\n\
         # load average at start {:?}, at end {:?}\n# {METHOD}\n\n{tbl}",
        ctx.o.flows,
        ctx.o.reps,
        if ctx.huge { "yes (2 MiB)" } else { "no (--no-huge)" },
        ctx.o.rev,
        load_start,
        procfs::loadavg().unwrap_or_default()
    );
    text.push_str(&format!(
        "\nThe same runs with busy time split the same way for both systems (each one's TSC count of \
         the poll-loop iterations that received packets: the vRouter's lcore counters, OVS's \
         pmd-stats-show), instead of the vRouter's calibrated idle-poll cost:\n\n{}",
        tsc_table(&rows)
    ));
    let scaling = scaling_lines(&rows);
    if !scaling.is_empty() {
        text.push_str("\nScaling, 1 -> 2 forwarding lcores (2 queue pairs per vhost vif; caveat: a 2-CPU machine):\n");
        for l in &scaling {
            text.push_str(&format!("- {l}\n"));
        }
    }
    for n in &notes {
        text.push_str(&format!("\nNote: {n}"));
    }
    text.push_str(&format!("\n\nCommand: {}\n", shell_line(&argv)));
    println!("\n{text}");
    std::fs::write(ctx.o.out.join("vhost_table.md"), &text)?;
    println!(
        "Written: {} (table), {} (everything), {} (one line per run)",
        ctx.o.out.join("vhost_table.md").display(),
        ctx.o.out.join("vhost_results.json").display(),
        csv.display()
    );
    if interrupted() {
        bail!("interrupted");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibration_and_busy_time() {
        let c = Calibration { window_s: 2.0, cpu_ns: 2_000_000_000, idle_polls: 40_000_000, busy_polls: 0 };
        assert_eq!(idle_poll_ns(&c).unwrap(), 50.0);
        assert!(idle_poll_ns(&Calibration { busy_polls: 3, ..c }).unwrap_err().to_string().contains("3 busy polls"));
        assert!(idle_poll_ns(&Calibration { idle_polls: 0, ..c }).is_err());
        // 1 s on CPU, 4M idle polls of 50 ns = 0.2 s idle: 0.8 s busy.
        assert_eq!(vrouter_busy_ns(1_000_000_000, 4_000_000, 50.0), 800_000_000.0);
        // Never negative (an idle poll measured a little dearer than in the window).
        assert_eq!(vrouter_busy_ns(100, 10, 50.0), 0.0);
        assert_eq!(mpps(8_000_000, 800_000_000.0), 10.0);
        assert_eq!(mpps(5, 0.0), 0.0);
        let pmd = PmdStats { processing_cycles: 3, idle_cycles: 1, ..PmdStats::default() };
        assert_eq!(ovs_busy_ns(1_000_000_000, &pmd), 750_000_000.0);
    }

    fn run(key: &str, rep: u32, busy: f64) -> Run {
        Run {
            system: key.to_uppercase(),
            key: key.into(),
            rep,
            busy_mpps: busy,
            wall_mpps: busy / 2.0,
            tx_over_rx: 1.0,
            ..Run::default()
        }
    }

    #[test]
    fn medians_and_ratios() {
        let mut runs = vec![
            run("vr_vm2vm_q1_l1", 1, 9.0),
            run("ovs_ct", 1, 3.0),
            run("ovs_l3", 1, 6.0),
            run("vr_vm2vm_q1_l1", 2, 10.0),
            run("ovs_ct", 2, 4.0),
            run("ovs_l3", 2, 8.0),
            run("vr_vm2vm_q1_l1", 3, 12.0),
            run("ovs_ct", 3, 5.0),
            run("ovs_l3", 3, 7.0),
        ];
        runs.push(Run { error: Some("boom".into()), ..run("vr_vm2fabric_q1_l1", 1, 99.0) });
        let r = rows(&runs);
        assert_eq!(r.len(), 4);
        assert_eq!((r[0].key.as_str(), r[0].runs, r[0].busy_mpps), ("vr_vm2vm_q1_l1", 3, 10.0));
        assert_eq!(r[0].wall_mpps, 5.0);
        assert_eq!(r[0].busy_mpps_runs, vec![9.0, 10.0, 12.0]);
        assert_eq!(r[0].vs_ovs_ct, Some(2.5));
        assert_eq!(r[0].vs_ovs_l3, Some(10.0 / 7.0));
        assert_eq!(r[1].vs_ovs_ct, Some(1.0));
        // A repetition whose anchor failed has no paired ratio.
        let mut gap = runs.clone();
        gap[1].error = Some("ovs down".into());
        assert_eq!(paired_ratios(&gap, "vr_vm2vm_q1_l1", "ovs_ct"), vec![2.5, 2.4]);
        // A system whose runs all failed: no median, no ratio.
        assert_eq!(r[3].runs, 0);
        assert!(r[3].busy_mpps.is_nan());
        assert_eq!(r[3].vs_ovs_ct, None);
        let t = table(&r);
        assert!(t.contains("| VR_VM2VM_Q1_L1 | 3 | 10.00 | 5.00 |"), "{t}");
        // Paired: 9/3, 10/4, 12/5 -> median 2.5; 9/6, 10/8, 12/7 -> median 1.5.
        assert_eq!(paired_ratios(&runs, "vr_vm2vm_q1_l1", "ovs_ct"), vec![3.0, 2.5, 2.4]);
        assert_eq!(r[0].paired_vs_ovs_ct, Some(2.5));
        assert_eq!(r[0].paired_vs_ovs_l3, Some(1.5));
        assert!(t.contains("| 2.50 | 1.43 | 2.50 | 1.50 | 9.00 / 10.00 / 12.00 |"), "{t}");
        assert!(t.contains("| VR_VM2FABRIC_Q1_L1 | 0 | - |"), "{t}");
    }

    #[test]
    fn the_tsc_split_view_uses_the_vrouters_own_split_and_ovs_busy_time() {
        let tsc = |r: Run, m: f64, share: f64| Run { busy_mpps_tsc: Some(m), busy_share_tsc: Some(share), ..r };
        let runs = vec![
            tsc(run("vr_vm2vm_q1_l1", 1, 9.0), 10.0, 0.8),
            run("ovs_l3", 1, 8.0),
            tsc(run("vr_vm2vm_q1_l1", 2, 8.0), 9.0, 0.9),
            run("ovs_l3", 2, 10.0),
            tsc(run("vr_vm2vm_q1_l1", 3, 7.0), 11.0, 0.7),
            run("ovs_l3", 3, 9.0),
        ];
        let r = rows(&runs);
        assert_eq!((r[0].busy_mpps, r[0].tsc_mpps, r[0].tsc_busy_share), (8.0, 10.0, 0.8));
        // OVS has no second method: its row is the same in both views.
        assert_eq!((r[1].busy_mpps, r[1].tsc_mpps), (9.0, 9.0));
        assert_eq!(r[0].vs_ovs_l3, Some(8.0 / 9.0));
        assert_eq!(r[0].tsc_vs_ovs_l3, Some(10.0 / 9.0));
        // Paired: 10/8, 9/10, 11/9 -> median 11/9.
        assert_eq!(r[0].tsc_paired_vs_ovs_l3, Some(11.0 / 9.0));
        let t = tsc_table(&r);
        assert!(t.contains("| VR_VM2VM_Q1_L1 | 10.00 | 0.80 | - | 1.11 | - | 1.22 |"), "{t}");
    }

    #[test]
    fn scaling_against_the_one_lcore_row() {
        let runs = vec![
            Run { wall_mpps: 4.0, ..run("vr_vm2vm_q2_l1", 1, 6.0) },
            Run { wall_mpps: 3.0, ..run("vr_vm2vm_q2_l2_c11", 1, 5.4) },
        ];
        let l = scaling_lines(&rows(&runs));
        assert_eq!(l.len(), 1);
        assert!(
            l[0].contains("5.40 Mpps per busy core = 0.90x the 1-lcore run's 6.00 (2 cores of that: 1.80x"),
            "{}",
            l[0]
        );
        assert!(l[0].contains("wall 3.00 vs 4.00 Mpps (0.75x"), "{}", l[0]);
        assert!(scaling_lines(&rows(&runs[1..])).is_empty(), "no 1-lcore row, no ratio");
    }

    #[test]
    fn csv_lines_match_the_header() {
        let mut r = run("ovs_ct", 1, 3.0);
        r.error = Some("a, b\nc".into());
        let line = csv_line(&r);
        assert_eq!(line.split(',').count(), CSV_HEADER.split(',').count(), "{line}");
        assert!(line.starts_with("ovs_ct,1,a; b;c,"));
    }

    #[test]
    fn labels_and_keys() {
        let s = System::Vrouter { path: VPath::VmToVm, queues: 2, cpus: vec![1, 0] };
        assert_eq!(s.key(), "vr_vm2vm_q2_l2_c10");
        assert_eq!(s.label(), "vRouter VM->VM, 2 queues, 2 lcores on CPUs 1,0");
        let one = System::Vrouter { path: VPath::VmToFabric, queues: 1, cpus: vec![1] };
        assert_eq!((one.label().as_str(), one.key().as_str()), ("vRouter VM->fabric MPLSoUDP", "vr_vm2fabric_q1_l1"));
        let q2 = System::Vrouter { path: VPath::VmToVm, queues: 2, cpus: vec![1] };
        assert_eq!((q2.label().as_str(), q2.key().as_str()), ("vRouter VM->VM, 2 queues, 1 lcore", "vr_vm2vm_q2_l1"));
        assert_eq!(System::Ovs { pipeline: Pipeline::Ct }.key(), "ovs_ct");
    }

    #[test]
    fn tsc_is_plausible() {
        if let Some(hz) = tsc_hz() {
            assert!(hz > 1e8 && hz < 1e10, "{hz}");
        }
    }
}
