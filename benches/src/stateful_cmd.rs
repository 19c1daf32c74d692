//! `vrouter-bench --stateful`: the stateful benchmark of the flow table issue, in one run.
//!
//! 1. **Throughput with flows** per N (1, 1k, 64k, 1M by default): the vRouter with
//!    `[flow] enabled = true` (table for 2 x N flows with headroom, no aging) measured once
//!    every flow is set up, next to testpmd 5tswap (and rxonly) and OVS-DPDK running the
//!    conntrack pipeline (`run_ovs_dpdk.py --variant ct`) on the same pcap.
//! 2. **Flow setup rate** per setup N: a pcap where every packet is a new flow
//!    (`gen_flows_pcap.py -n N --min-pkts N`), the vRouter sampled from its first packet
//!    (new flows per second over the first pass, losses by reason, setup latency from the
//!    agent), and OVS-DPDK conntrack on the same pcap with its connection count sampled
//!    while it runs (new connections committed per second).
//! 3. **Memory per flow**: flow table file bytes per entry it can hold and per flow in use.

use crate::anchors::{self, OvsRow, TestpmdRow};
use crate::memory::{self, Sizing};
use crate::ovs_watch::{self, CtSample};
use crate::report::flows_label;
use crate::stateful::{self, rate_between, Rate, SetupMeasurement, StatefulMeasurement};
use crate::topology::{FlowSettings, Topology};
use crate::vrouter_run::RunSpec;
use crate::{interrupted, machine, median, now_unix, pcap, procfs, shell_line, Machine};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Options of the stateful run (from the command line).
#[derive(Debug, Clone)]
pub struct Opts {
    /// Flow counts of the throughput part (`--flows`).
    pub flows: Vec<u64>,
    /// New-flow pcap sizes of the setup-rate part (`--setup-flows`).
    pub setup_flows: Vec<u64>,
    /// `[flow] hold_limit` values the setup rate runs with (`--setup-hold-limits`).
    pub setup_hold_limits: Vec<u32>,
    /// Measurement window, seconds.
    pub dur: f64,
    /// Warm-up after the flows are set up, seconds.
    pub warm: f64,
    /// Repetitions of every measurement (the tables show medians).
    pub reps: u32,
    /// Output directory (pcaps, configs, logs, CSV, JSON).
    pub out: PathBuf,
    /// Where run directories (and so the flow table files) go: a tmpfs.
    pub run_base: PathBuf,
    /// The shared benchmark directory (`bench/` scripts: pcap generator, anchors).
    pub shared: PathBuf,
    /// The `vrouter` binary.
    pub vrouter: PathBuf,
    /// Run the testpmd anchors.
    pub testpmd: bool,
    /// Run the OVS-DPDK conntrack anchor.
    pub ovs: bool,
    /// Run the vRouter (false: anchors only).
    pub vrouter_runs: bool,
    /// Run the throughput part.
    pub throughput: bool,
    /// Run the setup-rate part.
    pub setup: bool,
    /// Name of the forwarding thread (`rte-worker-1` in DPDK 22.11).
    pub fwd_thread: String,
    /// Revision recorded with the results.
    pub rev: String,
    /// Seconds allowed for EAL start, pcap preload and the first packet.
    pub start_timeout: u64,
    /// Seconds allowed from the first packet until every flow is set up.
    pub settle_timeout: u64,
    /// Seconds to sample a setup run from its first packet at least.
    pub setup_observe: f64,
    /// Most seconds to sample a setup run (until its first pass is over and every flow set up).
    pub setup_max_observe: f64,
    /// Sampling period of a setup run, milliseconds.
    pub setup_sample_ms: f64,
    /// Largest pcap OVS can preload (its mempool cap); above it OVS is memif-fed.
    pub ovs_pcap_max: u64,
    /// Throughput on fragmented traffic: every datagram of the pcap in two IPv4 fragments.
    pub fragmented: bool,
}

/// Medians and ratios of one N (throughput with flows).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ThroughputSummary {
    /// Distinct flows in the pcap.
    pub flows: u64,
    /// Median vRouter `cpu_mpps` (the figure of merit).
    pub vrouter_cpu_mpps: Option<f64>,
    /// Median vRouter `wall_mpps`.
    pub vrouter_wall_mpps: Option<f64>,
    /// Median vRouter forwarding-thread ns per packet.
    pub vrouter_ns_per_pkt: Option<f64>,
    /// Median share of the window the forwarding thread was on a CPU.
    pub vrouter_fwd_cpu_share: Option<f64>,
    /// Median `tx_packets / rx_packets`.
    pub vrouter_tx_over_rx: Option<f64>,
    /// Drops in the windows, summed over repetitions.
    pub vrouter_window_drops: Option<u64>,
    /// Median seconds from the first packet until every flow was set up.
    pub vrouter_settle_s: Option<f64>,
    /// Median CPU share of the agent thread in the window.
    pub agent_cpu_share: Option<f64>,
    /// Median testpmd `5tswap` `cpu_mpps`.
    pub testpmd_5tswap_mpps: Option<f64>,
    /// Median testpmd `rxonly` ns per packet (the pcap source's cost).
    pub testpmd_rxonly_ns_per_pkt: Option<f64>,
    /// Median OVS-DPDK `ct` Mpps per core (see [`OvsRow::mpps`]).
    pub ovs_ct_mpps: Option<f64>,
    /// OVS-DPDK was fed by its memif generator (the pcap was too large to preload).
    pub ovs_ct_memif: bool,
    /// vRouter / testpmd 5tswap (`cpu_mpps`).
    pub ratio_vrouter_5tswap: Option<f64>,
    /// vRouter / OVS-DPDK ct.
    pub ratio_vrouter_ovs_ct: Option<f64>,
    /// Issue targets: >= 2.5 x OVS ct at every N; >= 0.6 x 5tswap at 1k, >= 0.4 x at 1M.
    pub target_ovs_met: Option<bool>,
    /// The 5tswap ratio the issue asks for at this N (see [`target_5tswap`]).
    pub target_5tswap: Option<f64>,
    /// Whether `ratio_vrouter_5tswap` reaches `target_5tswap`.
    pub target_5tswap_met: Option<bool>,
    /// A run had `fwd_cpu_share` < 0.95: the forwarding core was shared.
    pub disturbed: bool,
}

/// Everything the throughput part measured for one flow count.
#[derive(Debug, Clone, Serialize)]
pub struct ThroughputResult {
    /// Distinct flows in the pcap.
    pub flows: u64,
    /// The pcap replayed.
    pub pcap: String,
    /// Packets in the pcap.
    pub pcap_packets: u64,
    /// The `[flow]` settings of the runs.
    pub flow_settings: FlowSettings,
    /// The vRouter configuration used (TOML text).
    pub vrouter_config: String,
    /// Every vRouter repetition that completed.
    pub vrouter_runs: Vec<StatefulMeasurement>,
    /// Why vRouter repetitions failed, one message each.
    pub vrouter_errors: Vec<String>,
    /// testpmd runs (`5tswap`, `rxonly`).
    pub testpmd: Vec<TestpmdRow>,
    /// Why the testpmd anchor failed, if it did.
    pub testpmd_error: Option<String>,
    /// OVS-DPDK `ct` runs.
    pub ovs: Vec<OvsRow>,
    /// Why the OVS-DPDK anchor failed, if it did.
    pub ovs_error: Option<String>,
    /// Medians and ratios.
    pub summary: ThroughputSummary,
}

/// OVS-DPDK conntrack on a setup pcap, watched from outside.
#[derive(Debug, Clone, Serialize)]
pub struct OvsSetup {
    /// Fed by the memif generator rather than the pcap port.
    pub memif: bool,
    /// The script's own row (measured after its warm-up: mostly established connections
    /// once the pcap has wrapped around).
    pub row: Option<OvsRow>,
    /// Why the run failed, if it did.
    pub error: Option<String>,
    /// Pid of the `ovs-vswitchd` watched.
    pub vswitchd_pid: Option<u32>,
    /// Connections committed between 1 % and 99 % of N (pcap-fed), or 1 % and 10 % when
    /// memif-fed (the generator drops what OVS cannot take, so later passes mix new and
    /// established connections).
    pub sustained: Option<Rate>,
    /// The `(lo, hi)` connection counts `sustained` is measured between.
    pub sustained_bounds: (u64, u64),
    /// Connections committed between 10 % and 90 % of N (pcap-fed only).
    pub sustained_mid: Option<Rate>,
    /// PMD CPU share over the climb and connections per PMD CPU second (the same samples:
    /// excludes the time the PMD is paused, e.g. while the script adds its output port
    /// after the input port already receives).
    pub pmd_cpu_share: Option<f64>,
    /// Connections committed per PMD CPU second over the climb.
    pub conns_per_pmd_cpu_s: Option<f64>,
    /// Most conntrack connections seen.
    pub max_nconns: u64,
    /// Number of samples taken.
    pub samples: usize,
    /// Every conntrack sample.
    pub series: Vec<CtSample>,
}

/// Everything the setup-rate part measured for one new-flow pcap.
#[derive(Debug, Clone, Serialize)]
pub struct SetupResult {
    /// New flows in the pcap (one packet each).
    pub flows: u64,
    /// The pcap replayed.
    pub pcap: String,
    /// Packets in the pcap.
    pub pcap_packets: u64,
    /// Per `[flow]` setting (hold limit): the vRouter repetitions that completed and the errors of
    /// those that failed.
    pub vrouter: Vec<(FlowSettings, Vec<SetupMeasurement>, Vec<String>)>,
    /// One entry per repetition.
    pub ovs: Vec<OvsSetup>,
}

#[derive(Serialize)]
struct Doc<'a> {
    tool: &'static str,
    mode: &'static str,
    started_unix: u64,
    finished_unix: u64,
    argv: Vec<String>,
    git_rev: &'a str,
    vrouter_binary: String,
    shared_dir: String,
    dur_s: f64,
    warm_s: f64,
    reps: u32,
    metric: &'static str,
    machine: Machine,
    commands: &'a [String],
    throughput_table: Vec<ThroughputSummary>,
    throughput: &'a [ThroughputResult],
    setup: &'a [SetupResult],
}

struct Run {
    o: Opts,
    commands: Vec<String>,
    empty_pcap: PathBuf,
}

fn med<T>(v: &[T], f: impl Fn(&T) -> f64) -> Option<f64> {
    let x: Vec<f64> = v.iter().map(f).filter(|x| x.is_finite()).collect();
    (!x.is_empty()).then(|| median(&x))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

/// The 5tswap target at `flows` (0.6 at 1k, 0.4 at 1M; none elsewhere).
pub fn target_5tswap(flows: u64) -> Option<f64> {
    match flows {
        1000 | 1024 => Some(0.6),
        1_000_000 | 1_048_576 => Some(0.4),
        _ => None,
    }
}

impl ThroughputSummary {
    /// Medians of the runs for `flows` flows, the ratios and whether the targets are met.
    pub fn compute(flows: u64, vr: &[StatefulMeasurement], tp: &[TestpmdRow], ovs: &[OvsRow]) -> ThroughputSummary {
        let tsw: Vec<&TestpmdRow> = tp.iter().filter(|r| r.mode == "5tswap").collect();
        let rxo: Vec<&TestpmdRow> = tp.iter().filter(|r| r.mode == "rxonly").collect();
        let ct: Vec<&OvsRow> = ovs.iter().filter(|r| r.variant.starts_with("ct")).collect();
        let vr_cpu = med(vr, |m| m.base.cpu_mpps);
        let tsw_m = med(&tsw, |r| r.cpu_mpps);
        let ovs_m = med(&ct, |r| r.mpps());
        let r5 = ratio(vr_cpu, tsw_m);
        let ro = ratio(vr_cpu, ovs_m);
        let t5 = target_5tswap(flows);
        ThroughputSummary {
            flows,
            vrouter_cpu_mpps: vr_cpu,
            vrouter_wall_mpps: med(vr, |m| m.base.wall_mpps),
            vrouter_ns_per_pkt: med(vr, |m| m.base.ns_per_pkt),
            vrouter_fwd_cpu_share: med(vr, |m| m.base.fwd_cpu_share),
            vrouter_tx_over_rx: med(vr, |m| m.base.tx_over_rx),
            vrouter_window_drops: (!vr.is_empty()).then(|| vr.iter().map(|m| m.base.drops).sum()),
            vrouter_settle_s: med(vr, |m| m.settle_s.unwrap_or(f64::NAN)),
            agent_cpu_share: med(vr, |m| m.agent_cpu_share),
            testpmd_5tswap_mpps: tsw_m,
            testpmd_rxonly_ns_per_pkt: med(&rxo, |r| r.ns_per_pkt),
            ovs_ct_mpps: ovs_m,
            ovs_ct_memif: ct.iter().any(|r| r.memif),
            ratio_vrouter_5tswap: r5,
            ratio_vrouter_ovs_ct: ro,
            target_ovs_met: ro.map(|r| r >= 2.5),
            target_5tswap: t5,
            target_5tswap_met: t5.and_then(|t| r5.map(|r| r >= t)),
            disturbed: vr.iter().any(|m| m.base.fwd_cpu_share < 0.95) || tsw.iter().any(|r| r.fwd_cpu_share < 0.95),
        }
    }
}

fn f(v: Option<f64>, prec: usize) -> String {
    v.map(|x| format!("{x:.prec$}")).unwrap_or_else(|| "-".into())
}

fn yes(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "yes",
        Some(false) => "NO",
        None => "-",
    }
}

/// The throughput-with-flows table (markdown).
pub fn throughput_table(rows: &[ThroughputSummary]) -> String {
    let mut s = String::new();
    let hdr = [
        "N flows",
        "vRouter flows Mpps/core",
        "wall Mpps",
        "testpmd 5tswap",
        "vRouter/5tswap",
        "target 5tswap",
        "OVS ct",
        "vRouter/OVS ct",
        ">= 2.5x OVS ct",
        "vRouter ns/pkt",
        "fwd CPU share",
        "tx/rx",
        "drops in window",
        "setup done after s",
        "agent CPU share",
    ];
    let _ = writeln!(s, "| {} |", hdr.join(" | "));
    let _ = writeln!(s, "|{}|", hdr.map(|_| "---").join("|"));
    for r in rows {
        let c = [
            format!("{}{}", flows_label(r.flows), if r.disturbed { " *" } else { "" }),
            f(r.vrouter_cpu_mpps, 2),
            f(r.vrouter_wall_mpps, 2),
            f(r.testpmd_5tswap_mpps, 2),
            f(r.ratio_vrouter_5tswap, 2),
            match r.target_5tswap {
                Some(t) => format!("{t:.1}: {}", yes(r.target_5tswap_met)),
                None => "-".into(),
            },
            format!("{}{}", f(r.ovs_ct_mpps, 2), if r.ovs_ct_memif { " (memif)" } else { "" }),
            f(r.ratio_vrouter_ovs_ct, 2),
            yes(r.target_ovs_met).to_string(),
            f(r.vrouter_ns_per_pkt, 1),
            f(r.vrouter_fwd_cpu_share, 2),
            f(r.vrouter_tx_over_rx, 3),
            r.vrouter_window_drops.map(|d| d.to_string()).unwrap_or_else(|| "-".into()),
            f(r.vrouter_settle_s, 1),
            f(r.agent_cpu_share, 2),
        ];
        let _ = writeln!(s, "| {} |", c.join(" | "));
    }
    if rows.iter().any(|r| r.disturbed) {
        let _ =
            writeln!(s, "\n`*` a forwarding thread got < 95% of a CPU in the window: the core was shared (see load).");
    }
    s
}

fn mps(v: Option<f64>) -> String {
    v.map(|x| format!("{:.3}", x / 1e6)).unwrap_or_else(|| "-".into())
}

fn us(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1e3)
}

fn drops_text(d: &[crate::vrouter_run::DropCount]) -> String {
    if d.is_empty() {
        return "0".into();
    }
    d.iter().map(|d| format!("{} {}", d.reason, d.packets)).collect::<Vec<_>>().join(", ")
}

/// The setup-rate table (markdown): one line per vRouter run, one per OVS run.
pub fn setup_table(rows: &[SetupResult]) -> String {
    let mut s = String::new();
    let hdr = [
        "N new flows",
        "system",
        "new flows/s, wall, 1-99% (M)",
        "wall, 10-90% (M)",
        "per CPU s: fwd core / PMD (M)",
        "per CPU s: fwd + agent (M)",
        "CPU share fwd / agent (PMD)",
        "first pass s",
        "dropped: first pass / whole run",
        "HOLD audited to drop",
        "no loss",
        "latency p50 / p99 / p99.9 / max (us)",
        "vRouter wall / OVS ct per PMD CPU s",
        "vRouter per fwd core CPU s / OVS",
        "vRouter per fwd + agent CPU s / OVS",
    ];
    let _ = writeln!(s, "| {} |", hdr.join(" | "));
    let _ = writeln!(s, "|{}|", hdr.map(|_| "---").join("|"));
    for r in rows {
        // Ratios against the median of the OVS repetitions.
        let ovs_cpu = med(&r.ovs, |o| o.conns_per_pmd_cpu_s.unwrap_or(f64::NAN));
        for (fs, runs, errs) in &r.vrouter {
            for m in runs {
                let lat = m
                    .agent
                    .as_ref()
                    .map(|a| {
                        let l = &a.setup_latency_ns;
                        format!("{} / {} / {} / {}", us(l.p50), us(l.p99), us(l.p999), us(l.max))
                    })
                    .unwrap_or_else(|| "-".into());
                let total = |d: &[crate::vrouter_run::DropCount]| d.iter().map(|d| d.packets).sum::<u64>();
                let c = [
                    flows_label(r.flows),
                    format!("vRouter hold_limit {}", fs.hold_limit),
                    mps(m.sustained.as_ref().map(|x| x.per_s)),
                    mps(m.sustained_mid.as_ref().map(|x| x.per_s)),
                    mps(m.setups_per_fwd_cpu_s),
                    mps(m.setups_per_total_cpu_s),
                    format!("{} / {}", f(m.fwd_cpu_share, 2), f(m.agent_cpu_share, 2)),
                    f(m.first_pass_s, 3),
                    format!("{} / {}", total(&m.first_pass_drops), total(&m.run_drops)),
                    m.audited_to_drop.to_string(),
                    if m.no_loss { "yes" } else { "NO" }.into(),
                    lat,
                    // OVS's wall rate includes the pause of its PMD while the script adds
                    // the output port (p0 already receives); its PMD busy-polls, so its
                    // rate per PMD CPU second is its rate on a fully owned core.
                    f(ratio(m.sustained.as_ref().map(|x| x.per_s), ovs_cpu), 2),
                    f(ratio(m.setups_per_fwd_cpu_s, ovs_cpu), 2),
                    f(ratio(m.setups_per_total_cpu_s, ovs_cpu), 2),
                ];
                let _ = writeln!(s, "| {} |", c.join(" | "));
            }
            for e in errs {
                let _ = writeln!(
                    s,
                    "| {} | vRouter hold_limit {} | failed: {} |||||||||||||",
                    flows_label(r.flows),
                    fs.hold_limit,
                    e.lines().next().unwrap_or("")
                );
            }
        }
        for o in &r.ovs {
            let c = [
                flows_label(r.flows),
                format!("OVS-DPDK ct{}", if o.memif { " (memif, 1-10%, see note)" } else { "" }),
                mps(o.sustained.as_ref().map(|x| x.per_s)),
                mps(o.sustained_mid.as_ref().map(|x| x.per_s)),
                mps(o.conns_per_pmd_cpu_s),
                "-".into(),
                format!("- / {}", f(o.pmd_cpu_share, 2)),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ];
            let _ = writeln!(s, "| {} |", c.join(" | "));
        }
    }
    s
}

/// Drops by reason of the setup runs (markdown lines).
pub fn setup_drops(rows: &[SetupResult]) -> String {
    let mut s = String::new();
    for r in rows {
        for (fs, runs, _) in &r.vrouter {
            for (i, m) in runs.iter().enumerate() {
                if !m.run_drops.is_empty() {
                    let _ = writeln!(
                        s,
                        "- N={} hold_limit {} run {}: first pass: {}; whole run ({:.1} s): {}",
                        flows_label(r.flows),
                        fs.hold_limit,
                        i + 1,
                        drops_text(&m.first_pass_drops),
                        m.observed_s,
                        drops_text(&m.run_drops)
                    );
                }
            }
        }
    }
    s
}

/// The memory table (markdown), from the throughput runs and the setup runs.
pub fn memory_table(tp: &[ThroughputResult], su: &[SetupResult]) -> String {
    let mut s = String::new();
    let hdr = [
        "run",
        "table entries (main + overflow)",
        "file MiB",
        "bytes / entry of capacity",
        "entries used",
        "flow pairs",
        "bytes / used entry",
        "bytes / flow pair",
        "agent heap growth / flow pair",
    ];
    let _ = writeln!(s, "| {} |", hdr.join(" | "));
    let _ = writeln!(s, "|{}|", hdr.map(|_| "---").join("|"));
    let mut line = |name: String, m: &stateful::FlowMemory| {
        let c = [
            name,
            format!("{} + {}", m.main_entries, m.overflow_entries),
            format!("{:.1}", m.table_file_bytes as f64 / (1 << 20) as f64),
            format!("{:.1}", m.bytes_per_capacity_entry),
            m.used_entries.to_string(),
            m.flow_pairs.to_string(),
            f(m.bytes_per_used_entry, 1),
            f(m.bytes_per_flow_pair, 1),
            f(m.anon_growth_per_flow_pair, 1),
        ];
        let _ = writeln!(s, "| {} |", c.join(" | "));
    };
    for r in tp {
        if let Some(m) = r.vrouter_runs.last().and_then(|m| m.memory.as_ref()) {
            line(format!("throughput N={}", flows_label(r.flows)), m);
        }
    }
    for r in su {
        for (fs, runs, _) in &r.vrouter {
            if let Some(m) = runs.last().and_then(|m| m.memory.as_ref()) {
                line(format!("setup N={} hold_limit {}", flows_label(r.flows), fs.hold_limit), m);
            }
        }
    }
    s
}

/// Columns of the throughput CSV file (one row per vRouter repetition).
pub const THROUGHPUT_CSV_HEADER: &str = "time_unix,flows,pcap,rep,window_s,rx_packets,tx_packets,drops,drop_reasons,\
wall_mpps,cpu_mpps,ns_per_pkt,fwd_cpu_share,tx_over_rx,settle_s,created_in_window,agent_cpu_share,table_used,\
table_file_bytes,load1_before,load1_after,accounted,clean_exit,git_rev";

/// Columns of the setup-rate CSV file (one row per run, vRouter or OVS-DPDK).
pub const SETUP_CSV_HEADER: &str = "time_unix,system,flows,hold_limit,rep,sustained_per_s,overall_per_s,\
peak_100ms_per_s,first_pass_s,first_pass_drops,no_loss,lat_p50_ns,lat_p99_ns,lat_p999_ns,lat_max_ns,\
fwd_cpu_share,agent_cpu_share,load1_before,load1_after,git_rev";

impl Run {
    fn note(&mut self, line: String) {
        println!("$ {line}");
        self.commands.push(line);
    }

    fn ensure_pcap(&mut self, name: &str, n: u64, min_pkts: Option<u64>) -> Result<PathBuf> {
        let p = self.o.out.join("pcaps").join(name);
        if std::fs::metadata(&p).map(|m| m.len() > 24).unwrap_or(false) {
            println!("# using existing {}", p.display());
            return Ok(p);
        }
        std::fs::create_dir_all(p.parent().unwrap())?;
        let mut argv = vec![
            "python3".to_string(),
            self.o.shared.join("bench/gen_flows_pcap.py").display().to_string(),
            "-n".into(),
            n.to_string(),
        ];
        if let Some(m) = min_pkts {
            argv.extend(["--min-pkts".into(), m.to_string()]);
        }
        argv.extend(["-o".into(), p.display().to_string()]);
        self.note(shell_line(&argv));
        let st = Command::new(&argv[0]).args(&argv[1..]).status().context("running gen_flows_pcap.py")?;
        if !st.success() {
            bail!("gen_flows_pcap.py failed ({st})");
        }
        Ok(p)
    }

    fn spec(&mut self, tag: &str, pcap_path: &Path, packets: u64, fs: &FlowSettings) -> (RunSpec, String) {
        let Sizing { mbufs, memory_mb, memory } = memory::sizing(packets, fs.max_held_packets(), fs.table_bytes());
        // The flow table file lives in the run directory: room for it in the EAL's memory
        // is not needed (it is a separate mapping), but the run directory must be a tmpfs.
        let prefix = format!("vrbst{}_{tag}", std::process::id());
        let topo = Topology {
            pcap: pcap_path.to_path_buf(),
            empty_pcap: self.empty_pcap.clone(),
            run_dir: self.o.run_base.join(&prefix),
            file_prefix: prefix,
            memory_mb,
            memory,
            mbufs,
            main_core: 0,
            fwd_core: 1,
            flow: Some(fs.clone()),
            probe: None,
        };
        let config_path = self.o.out.join(format!("vrouter_{tag}.toml"));
        let spec = RunSpec {
            vrouter: self.o.vrouter.clone(),
            topology: topo,
            config_path: config_path.clone(),
            log_path: self.o.out.join(format!("vrouter_{tag}.log")),
            warm: Duration::from_secs_f64(self.o.warm),
            dur: Duration::from_secs_f64(self.o.dur),
            start_timeout: Duration::from_secs(self.o.start_timeout),
            stop_timeout: Duration::from_secs(60),
            fwd_thread: self.o.fwd_thread.clone(),
        };
        let cmd =
            shell_line(&[self.o.vrouter.display().to_string(), "--config".into(), config_path.display().to_string()]);
        let note = format!(
            "{cmd}   # -m {memory_mb} {}, {mbufs} mbufs, [flow] entries {} hold_limit {} \
             held_packets_per_flow {} age_timeout_s {}, run_dir {}",
            memory.eal_note(),
            fs.entries,
            fs.hold_limit,
            fs.held_packets_per_flow,
            fs.age_timeout_s,
            spec.topology.run_dir.display()
        );
        (spec, note)
    }

    fn throughput(&mut self, n: u64) -> Result<ThroughputResult> {
        let mut p = self.ensure_pcap(&format!("udp_{n}.pcap"), n, None)?;
        if self.o.fragmented {
            let f = p.with_file_name(format!("udp_{n}_frag2.pcap"));
            if !std::fs::metadata(&f).map(|m| m.len() > 24).unwrap_or(false) {
                self.note(format!("# every datagram of {} in two IPv4 fragments -> {}", p.display(), f.display()));
                pcap::fragment_in_two(&p, &f)?;
            }
            p = f;
        }
        let packets = pcap::count_packets(&p)?;
        println!("\n## Throughput with flows: N = {n} ({}, {packets} packets)", p.display());
        let fs = FlowSettings::for_flows(n);
        let mut runs = Vec::new();
        let mut errors = Vec::new();
        let mut config = String::new();
        if self.o.vrouter_runs {
            for rep in 1..=self.o.reps {
                let (spec, note) = self.spec(&format!("flows_{n}_{rep}"), &p, packets, &fs);
                config = spec.config_path.display().to_string();
                self.note(format!(
                    "{note}; window after all {n} flows are set up + {}s warm-up, {}s",
                    self.o.warm, self.o.dur
                ));
                match stateful::measure_throughput(&spec, n, Duration::from_secs(self.o.settle_timeout)) {
                    Ok(m) => {
                        print_throughput(n, rep, &m);
                        self.append_csv(
                            "stateful_throughput.csv",
                            THROUGHPUT_CSV_HEADER,
                            &throughput_csv(n, &p, rep, &m, &self.o.rev),
                        )?;
                        runs.push(m);
                    }
                    Err(e) => {
                        eprintln!("vrouter-bench: vrouter flows N={n} rep {rep}: {e:#}");
                        errors.push(format!("{e:#}"));
                    }
                }
                if interrupted() {
                    bail!("interrupted");
                }
            }
        }
        let tp_csv = self.o.out.join("testpmd_results.csv");
        let mut tp = Vec::new();
        let mut tp_err = None;
        if self.o.testpmd {
            let argv = anchors::testpmd_command(
                &self.o.shared,
                std::slice::from_ref(&p),
                "5tswap,rxonly",
                self.o.dur,
                self.o.warm,
                self.o.reps,
                &tp_csv,
                memory::anchor_memory(
                    memory::sizing(packets, 0, 0).memory,
                    &self.o.shared.join("bench/run_testpmd.py"),
                ),
            );
            self.note(shell_line(&argv));
            let want = 2 * self.o.reps as usize;
            match anchors::run_testpmd(&argv, &tp_csv, want, self.o.dur, self.o.warm) {
                Ok(rows) => {
                    if rows.len() < want {
                        tp_err = Some(format!("only {} of {want} testpmd runs produced a row", rows.len()));
                    }
                    tp = rows;
                }
                Err(e) => tp_err = Some(format!("{e:#}")),
            }
        }
        let ovs_csv = self.o.out.join("ovs_results.csv");
        let mut ovs = Vec::new();
        let mut ovs_err = None;
        if self.o.ovs {
            let memif = packets > self.o.ovs_pcap_max;
            let warm = self.o.warm.max(5.0);
            let mem = memory::anchor_memory(
                memory::sizing(packets, 0, FlowSettings::for_flows(n).table_bytes()).memory,
                &self.o.shared.join("bench/run_ovs_dpdk.py"),
            );
            let argv = anchors::ovs_command(&self.o.shared, &p, memif, "ct", self.o.dur, warm, &ovs_csv, mem);
            for _ in 0..self.o.reps {
                self.note(shell_line(&argv));
                match anchors::run_ovs(&argv, &ovs_csv, self.o.dur, warm) {
                    Ok(rows) if rows.is_empty() => ovs_err = Some("run_ovs_dpdk.py produced no row".into()),
                    Ok(rows) => ovs.extend(rows),
                    Err(e) => ovs_err = Some(format!("{e:#}")),
                }
                if interrupted() {
                    bail!("interrupted");
                }
            }
        }
        for e in tp_err.iter().chain(&ovs_err) {
            eprintln!("vrouter-bench: anchors N={n}: {e}");
        }
        if interrupted() {
            bail!("interrupted");
        }
        let summary = ThroughputSummary::compute(n, &runs, &tp, &ovs);
        Ok(ThroughputResult {
            flows: n,
            pcap: p.display().to_string(),
            pcap_packets: packets,
            flow_settings: fs,
            vrouter_config: config,
            vrouter_runs: runs,
            vrouter_errors: errors,
            testpmd: tp,
            testpmd_error: tp_err,
            ovs,
            ovs_error: ovs_err,
            summary,
        })
    }

    fn setup(&mut self, n: u64) -> Result<SetupResult> {
        let p = self.ensure_pcap(&format!("udp_new_{n}.pcap"), n, Some(n))?;
        let packets = pcap::count_packets(&p)?;
        println!(
            "\n## Flow setup rate: N = {n} new flows ({}, {packets} packets, every packet a new flow)",
            p.display()
        );
        let mut vr = Vec::new();
        if self.o.vrouter_runs {
            for &hl in &self.o.setup_hold_limits.clone() {
                let mut fs = FlowSettings::for_flows(n);
                fs.hold_limit = hl;
                let mut runs = Vec::new();
                let mut errs = Vec::new();
                for rep in 1..=self.o.reps {
                    let tag = format!("setup_{n}_h{hl}_{rep}");
                    let (spec, note) = self.spec(&tag, &p, packets, &fs);
                    self.note(format!(
                        "{note}; sampled every {} ms from the first packet for {} s (up to {} s until all flows are set up)",
                        self.o.setup_sample_ms, self.o.setup_observe, self.o.setup_max_observe
                    ));
                    match stateful::measure_setup(
                        &spec,
                        n,
                        packets,
                        Duration::from_secs_f64(self.o.setup_observe),
                        Duration::from_secs_f64(self.o.setup_max_observe),
                        Duration::from_secs_f64(self.o.setup_sample_ms / 1e3),
                    ) {
                        Ok(m) => {
                            print_setup(n, hl, rep, &m);
                            self.write_series(&tag, &m)?;
                            self.append_csv(
                                "setup_rate.csv",
                                SETUP_CSV_HEADER,
                                &setup_csv("vrouter", n, hl, rep, &m, &self.o.rev),
                            )?;
                            runs.push(m);
                        }
                        Err(e) => {
                            eprintln!("vrouter-bench: vrouter setup N={n} hold_limit {hl} rep {rep}: {e:#}");
                            errs.push(format!("{e:#}"));
                        }
                    }
                    if interrupted() {
                        bail!("interrupted");
                    }
                }
                vr.push((fs, runs, errs));
            }
        }
        let mut ovs = Vec::new();
        if self.o.ovs {
            for rep in 1..=self.o.reps {
                ovs.push(self.ovs_setup(n, &p, packets, rep)?);
            }
        }
        Ok(SetupResult { flows: n, pcap: p.display().to_string(), pcap_packets: packets, vrouter: vr, ovs })
    }

    fn ovs_setup(&mut self, n: u64, p: &Path, packets: u64, rep: u32) -> Result<OvsSetup> {
        let memif = packets > self.o.ovs_pcap_max;
        let csv = self.o.out.join("ovs_setup_results.csv");
        let mem = memory::anchor_memory(
            memory::sizing(packets, 0, FlowSettings::for_flows(n).table_bytes()).memory,
            &self.o.shared.join("bench/run_ovs_dpdk.py"),
        );
        let argv = anchors::ovs_command(&self.o.shared, p, memif, "ct", 2.0, 0.0, &csv, mem);
        self.note(format!(
            "{}   # while it runs: ovs-appctl -t <its ctl socket> dpctl/ct-get-nconns, as fast as it answers",
            shell_line(&argv)
        ));
        let before = ovs_watch::vswitchds();
        let watch = ovs_watch::CtWatch::start(&before);
        let res = anchors::run_ovs(&argv, &csv, 2.0, 0.0);
        let (series, pid) = watch.finish();
        let (row, error) = match res {
            Ok(mut rows) if !rows.is_empty() => (rows.pop(), None),
            Ok(_) => (None, Some("run_ovs_dpdk.py produced no row".to_string())),
            Err(e) => (None, Some(format!("{e:#}"))),
        };
        if interrupted() {
            bail!("interrupted");
        }
        let lo = (n / 100).max(1);
        let hi = if memif { n / 10 } else { n - n / 100 };
        let pts: Vec<(f64, u64)> = series.iter().map(|s| (s.t, s.nconns)).collect();
        let sustained = rate_between(&pts, lo, hi);
        let sustained_mid = (!memif).then(|| rate_between(&pts, n / 10, n - n / 10)).flatten();
        let cpu: Vec<(f64, u64, u64)> = series.iter().map(|s| (s.t, s.nconns, s.pmd_cpu_ns)).collect();
        let per_cpu = stateful::per_cpu_second(&cpu, lo, hi);
        let pmd_cpu_share = per_cpu.map(|x| x.1);
        let o = OvsSetup {
            memif,
            row,
            error,
            vswitchd_pid: pid,
            conns_per_pmd_cpu_s: per_cpu.map(|x| x.0),
            sustained,
            sustained_mid,
            sustained_bounds: (lo, hi),
            pmd_cpu_share,
            max_nconns: series.iter().map(|s| s.nconns).max().unwrap_or(0),
            samples: series.len(),
            series,
        };
        println!(
            "ovs ct setup N={n} rep {rep}: {} M new conns/s wall ({} samples, interval {}), {} M/s 10-90%, {} M per PMD CPU s, \
             pmd cpu share {}, max nconns {}, script row (Mpps, ct_conns) {:?}{}",
            mps(o.sustained.as_ref().map(|r| r.per_s)),
            o.samples,
            o.sustained
                .as_ref()
                .map(|r| format!("{:.3}-{:.3}s, {} conns", r.from_t, r.to_t, r.count))
                .unwrap_or_else(|| "-".into()),
            mps(o.sustained_mid.as_ref().map(|r| r.per_s)),
            mps(o.conns_per_pmd_cpu_s),
            f(o.pmd_cpu_share, 2),
            o.max_nconns,
            o.row.as_ref().map(|r| (r.mpps(), r.ct_conns)),
            o.error.as_ref().map(|e| format!(" error: {e}")).unwrap_or_default()
        );
        let mut w = String::from("t_s,nconns,pmd_cpu_ns\n");
        for s in &o.series {
            let _ = writeln!(w, "{:.4},{},{}", s.t, s.nconns, s.pmd_cpu_ns);
        }
        std::fs::write(self.o.out.join(format!("ovs_setup_series_{n}_{rep}.csv")), w)?;
        let _ = self.append_csv(
            "setup_rate.csv",
            SETUP_CSV_HEADER,
            &format!(
                "{},ovs-ct{},{n},,1,{},,,,,,,,,,,{},,,{}",
                now_unix(),
                if memif { "-memif" } else { "" },
                o.sustained.as_ref().map(|r| format!("{:.0}", r.per_s)).unwrap_or_default(),
                o.pmd_cpu_share.map(|x| format!("{x:.3}")).unwrap_or_default(),
                self.o.rev
            ),
        );
        Ok(o)
    }

    fn append_csv(&self, name: &str, header: &str, line: &str) -> Result<()> {
        let path = self.o.out.join(name);
        let new = !path.exists();
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
        if new {
            writeln!(f, "{header}")?;
        }
        writeln!(f, "{line}")?;
        Ok(())
    }

    fn write_series(&self, tag: &str, m: &SetupMeasurement) -> Result<()> {
        let mut w = String::from("t_s,rx,tx,drops,set_up,created,processed,added,hold,used,fwd_cpu_ns,agent_cpu_ns\n");
        for s in &m.series {
            let _ = writeln!(
                w,
                "{:.4},{},{},{},{},{},{},{},{},{},{},{}",
                s.t,
                s.rx,
                s.tx,
                s.drops,
                s.set_up,
                s.table.created,
                s.table.processed,
                s.table.added,
                s.table.hold,
                s.table.used,
                s.fwd_cpu_ns,
                s.agent_cpu_ns
            );
        }
        std::fs::write(self.o.out.join(format!("{tag}_series.csv")), w)?;
        Ok(())
    }
}

fn throughput_csv(n: u64, p: &Path, rep: u32, m: &StatefulMeasurement, rev: &str) -> String {
    let b = &m.base;
    let reasons = b.drop_reasons.iter().map(|d| format!("{}={}", d.key, d.packets)).collect::<Vec<_>>().join(";");
    format!(
        "{},{n},{},{rep},{:.3},{},{},{},{reasons},{:.3},{:.3},{:.1},{:.3},{:.4},{},{},{:.3},{},{},{:.2},{:.2},{},{},{rev}",
        now_unix(),
        p.file_name().unwrap_or_default().to_string_lossy(),
        b.window_s,
        b.rx_packets,
        b.tx_packets,
        b.drops,
        b.wall_mpps,
        b.cpu_mpps,
        b.ns_per_pkt,
        b.fwd_cpu_share,
        b.tx_over_rx,
        m.settle_s.map(|x| format!("{x:.2}")).unwrap_or_default(),
        m.created_in_window,
        m.agent_cpu_share,
        m.table_window_end.used,
        m.memory.as_ref().map_or(0, |x| x.table_file_bytes),
        b.load_before[0],
        b.load_after[0],
        b.accounted,
        b.clean_exit,
    )
}

fn setup_csv(sys: &str, n: u64, hl: u32, rep: u32, m: &SetupMeasurement, rev: &str) -> String {
    let o = |v: Option<f64>| v.map(|x| format!("{x:.0}")).unwrap_or_default();
    let l = m.agent.as_ref().map(|a| a.setup_latency_ns.clone()).unwrap_or_default();
    let drops = m.first_pass_drops.iter().map(|d| format!("{}={}", d.key, d.packets)).collect::<Vec<_>>().join(";");
    format!(
        "{},{sys},{n},{hl},{rep},{},{},{},{},{drops},{},{},{},{},{},{},{},{:.2},{:.2},{rev}",
        now_unix(),
        o(m.sustained.as_ref().map(|r| r.per_s)),
        o(m.overall_per_s),
        o(m.peak_100ms_per_s),
        m.first_pass_s.map(|x| format!("{x:.4}")).unwrap_or_default(),
        m.no_loss,
        l.p50,
        l.p99,
        l.p999,
        l.max,
        m.fwd_cpu_share.map(|x| format!("{x:.3}")).unwrap_or_default(),
        m.agent_cpu_share.map(|x| format!("{x:.3}")).unwrap_or_default(),
        m.load_before[0],
        m.load_after[0],
    )
}

fn print_throughput(n: u64, rep: u32, m: &StatefulMeasurement) {
    let b = &m.base;
    println!(
        "vrouter flows N={n} rep {rep}: cpu_mpps {:.3} wall_mpps {:.3} ns/pkt {:.1} fwd_cpu_share {:.2} tx/rx {:.4} \
         drops {} | settled after {} s (table created {} processed {} hold {} used {}), created in window {}, \
         agent cpu share {:.2}, load1 {:.2}->{:.2}, startup {:.1}s",
        b.cpu_mpps,
        b.wall_mpps,
        b.ns_per_pkt,
        b.fwd_cpu_share,
        b.tx_over_rx,
        b.drops,
        m.settle_s.map(|x| format!("{x:.2}")).unwrap_or_else(|| "NOT".into()),
        m.table_at_settle.created,
        m.table_at_settle.processed,
        m.table_at_settle.hold,
        m.table_at_settle.used,
        m.created_in_window,
        m.agent_cpu_share,
        b.load_before[0],
        b.load_after[0],
        b.startup_s,
    );
    if b.drops > 0 {
        println!("  drops in the window: {}", drops_text(&b.drop_reasons));
    }
    if !m.setup_phase_drops.is_empty() {
        println!("  drops while the flows were set up (before the window): {}", drops_text(&m.setup_phase_drops));
    }
    if let Some(a) = &m.agent {
        println!("  agent: {:?}", a.counters);
    }
    if let Some(e) = &m.agent_error {
        println!("  agent status failed: {e}");
    }
    if !b.accounted {
        println!("  WARNING: after stop rx {} != tx {} + drops {}", b.total_rx, b.total_tx, b.total_drops);
    }
}

fn print_setup(n: u64, hl: u32, rep: u32, m: &SetupMeasurement) {
    let l = m.agent.as_ref().map(|a| a.setup_latency_ns.clone());
    println!(
        "vrouter setup N={n} hold_limit {hl} rep {rep}: {} M/s wall 1-99% ({}), {} M/s 10-90%; per CPU s: fwd {} M, \
         agent {} M, fwd+agent {} M (CPU share fwd {} agent {}); created {} M/s; all {n} set up after {} s ({} M/s); \
         first pass {} s, dropped in it: {}; whole run: {}; HOLD audited to drop {}; no loss: {}; \
         latency p50/p99/p99.9/max {} us; status reply max {} s; load1 {:.2}->{:.2}",
        mps(m.sustained.as_ref().map(|r| r.per_s)),
        m.sustained
            .as_ref()
            .map(|r| format!("{:.3}-{:.3}s, {} flows", r.from_t, r.to_t, r.count))
            .unwrap_or_else(|| "-".into()),
        mps(m.sustained_mid.as_ref().map(|r| r.per_s)),
        mps(m.setups_per_fwd_cpu_s),
        mps(m.setups_per_agent_cpu_s),
        mps(m.setups_per_total_cpu_s),
        f(m.fwd_cpu_share, 2),
        f(m.agent_cpu_share, 2),
        mps(m.created_rate.as_ref().map(|r| r.per_s)),
        f(m.all_set_up_s, 3),
        mps(m.overall_per_s),
        f(m.first_pass_s, 3),
        drops_text(&m.first_pass_drops),
        drops_text(&m.run_drops),
        m.audited_to_drop,
        m.no_loss,
        l.map(|l| format!("{} / {} / {} / {}", us(l.p50), us(l.p99), us(l.p999), us(l.max)))
            .unwrap_or_else(|| "-".into()),
        f(m.max_status_reply_s, 3),
        m.load_before[0],
        m.load_after[0],
    );
    if let Some(a) = &m.agent {
        println!("  agent: {:?}", a.counters);
    }
    println!("  table at the end: {:?}", m.table_end);
    if let Some(e) = &m.agent_error {
        println!("  agent status failed: {e}");
    }
}

/// Runs the stateful benchmark.
pub fn run(o: Opts) -> Result<()> {
    let started = now_unix();
    let load_at_start = procfs::loadavg().unwrap_or_default();
    std::fs::create_dir_all(&o.out).with_context(|| format!("creating {}", o.out.display()))?;
    std::fs::create_dir_all(&o.run_base).with_context(|| format!("creating {}", o.run_base.display()))?;
    let empty_pcap = o.out.join("empty.pcap");
    std::fs::write(&empty_pcap, pcap::empty_pcap())?;
    println!(
        "# vrouter-bench --stateful: flows {:?}, setup flows {:?} (hold_limit {:?}), dur {}s, warm {}s, reps {}, \
         out {}, run dirs under {}, vrouter {}, git {}, load {:?}",
        o.flows,
        o.setup_flows,
        o.setup_hold_limits,
        o.dur,
        o.warm,
        o.reps,
        o.out.display(),
        o.run_base.display(),
        o.vrouter.display(),
        o.rev,
        load_at_start
    );
    let mut r = Run { o, commands: Vec::new(), empty_pcap };
    let mut tp: Vec<ThroughputResult> = Vec::new();
    let mut su: Vec<SetupResult> = Vec::new();
    let write = |r: &Run, tp: &[ThroughputResult], su: &[SetupResult]| -> Result<()> {
        let doc = Doc {
            tool: "vrouter-bench",
            mode: "stateful",
            started_unix: started,
            finished_unix: now_unix(),
            argv: std::env::args().collect(),
            git_rev: &r.o.rev,
            vrouter_binary: r.o.vrouter.display().to_string(),
            shared_dir: r.o.shared.display().to_string(),
            dur_s: r.o.dur,
            warm_s: r.o.warm,
            reps: r.o.reps,
            metric: "cpu_mpps = packets received in the window / on-CPU seconds of the forwarding thread; \
                     setup rate = flows set up by the agent (flow table `added`: one reverse flow per setup) per wall second between 1% and 99% of N",
            machine: machine(load_at_start),
            commands: &r.commands,
            throughput_table: tp.iter().map(|t| t.summary.clone()).collect(),
            throughput: tp,
            setup: su,
        };
        let path = r.o.out.join("stateful_results.json");
        std::fs::write(&path, serde_json::to_string_pretty(&doc)?)
            .with_context(|| format!("writing {}", path.display()))
    };
    if r.o.throughput {
        for n in r.o.flows.clone() {
            tp.push(r.throughput(n)?);
            write(&r, &tp, &su)?;
        }
    }
    if r.o.setup {
        for n in r.o.setup_flows.clone() {
            su.push(r.setup(n)?);
            write(&r, &tp, &su)?;
        }
    }

    println!(
        "\n# Stateful results ({}), load average at start {:?}, at end {:?}",
        r.o.rev,
        load_at_start,
        procfs::loadavg().unwrap_or_default()
    );
    if !tp.is_empty() {
        println!("\n## Throughput with flows: Mpps per fully owned core, 64-byte frames, all flows set up before the window\n");
        let rows: Vec<ThroughputSummary> = tp.iter().map(|t| t.summary.clone()).collect();
        print!("{}", throughput_table(&rows));
        for t in &tp {
            for e in &t.vrouter_errors {
                println!("N={}: vRouter run failed: {e}", t.flows);
            }
        }
    }
    if !su.is_empty() {
        println!("\n## Flow setup rate: every packet a new flow (new flows/s while set-up flows climb from 1% to 99% of N)\n");
        print!("{}", setup_table(&su));
        let d = setup_drops(&su);
        if !d.is_empty() {
            println!("\nDrops by reason in the setup runs:\n{d}");
        }
        if su.iter().any(|s| s.ovs.iter().any(|o| !o.memif)) {
            println!(
                "\npcap-fed OVS: run_ovs_dpdk.py adds the input port first, so the pcap is already being \
                 received while it adds the output port; the PMD pauses for that reconfiguration (its CPU share \
                 over the climb shows it), so OVS's wall rate understates it. The ratios use OVS's connections \
                 per PMD CPU second (the PMD busy-polls: its rate on a fully owned core)."
            );
        }
        if su.iter().any(|s| s.ovs.iter().any(|o| o.memif)) {
            println!(
                "\nmemif-fed OVS: the generator drops what OVS does not take, so after the first 10% of N new and \
                      established connections mix; its rate is taken between 1% and 10% of N."
            );
        }
    }
    if !tp.is_empty() || !su.is_empty() {
        println!("\n## Memory per flow (flow table file; agent heap growth from RssAnon)\n");
        print!("{}", memory_table(&tp, &su));
    }
    println!("\nCommands run:");
    for c in &r.commands {
        println!("  {c}");
    }
    println!(
        "\nWritten: {} (all details and sample series), {}, {}, *_series.csv",
        r.o.out.join("stateful_results.json").display(),
        r.o.out.join("stateful_throughput.csv").display(),
        r.o.out.join("setup_rate.csv").display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(target_5tswap(1000), Some(0.6));
        assert_eq!(target_5tswap(1_048_576), Some(0.4));
        assert_eq!(target_5tswap(65536), None);
    }

    #[test]
    fn csv_headers() {
        assert_eq!(THROUGHPUT_CSV_HEADER.split(',').count(), 24);
        assert_eq!(SETUP_CSV_HEADER.split(',').count(), 20);
    }
}
