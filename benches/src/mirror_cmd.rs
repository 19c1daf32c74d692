//! `vrouter-bench --mirror`: Mpps per forwarding core with every flow mirrored to one
//! analyzer, next to the same traffic without mirroring, in the same session.
//!
//! Both runs are the stateful benchmark of [`crate::stateful`] (same topology, pcap source,
//! core layout, memory setup, settle-then-window method); the mirrored run adds an analyzer
//! reached through the fabric vif and a network policy that passes every flow with
//! `mirror_to` (see [`crate::topology::FlowSettings::mirror`]). Each packet then makes one
//! Juniper-header copy (new mbuf, 42 bytes of outer headers, ~60 bytes of metadata, the
//! original frame) sent out of the fabric vif next to the MPLSoUDP original. The runs
//! alternate (plain, mirrored) per repetition so drifts in machine load hit both.

use crate::memory::{self, Sizing};
use crate::stateful::{measure_throughput, StatefulMeasurement};
use crate::topology::{FlowSettings, Topology};
use crate::vrouter_run::RunSpec;
use crate::{interrupted, machine, median, now_unix, pcap, procfs, shell_line, Machine};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Options of the mirror benchmark.
pub struct Opts {
    /// Flow counts to measure (`--flows`).
    pub flows: Vec<u64>,
    /// Measurement window, seconds.
    pub dur: f64,
    /// Warm-up after the flows are set up, seconds.
    pub warm: f64,
    /// Repetitions of every variant (the table shows medians).
    pub reps: u32,
    /// Output directory (pcaps, configs, logs, CSV, JSON).
    pub out: PathBuf,
    /// Where run directories (and so the flow table files) go: a tmpfs.
    pub run_base: PathBuf,
    /// The shared benchmark directory (`bench/gen_flows_pcap.py`).
    pub shared: PathBuf,
    /// The `vrouter` binary.
    pub vrouter: PathBuf,
    /// Name of the forwarding thread (`rte-worker-1` in DPDK 22.11).
    pub fwd_thread: String,
    /// Revision recorded with the results.
    pub rev: String,
    /// Seconds allowed for EAL start, pcap preload and the first packet.
    pub start_timeout: u64,
    /// Seconds allowed from the first packet until every flow is set up.
    pub settle_timeout: u64,
}

/// One run.
#[derive(Debug, Clone, Serialize)]
pub struct MirrorRun {
    /// Distinct flows in the pcap.
    pub flows: u64,
    /// Repetition number (from 1).
    pub rep: u32,
    /// Whether every flow was mirrored (false: the plain run).
    pub mirrored: bool,
    /// Packets received per on-CPU second of the forwarding thread, millions.
    pub cpu_mpps: f64,
    /// Packets received per wall-clock second of the window, millions.
    pub wall_mpps: f64,
    /// Forwarding-thread CPU nanoseconds per received packet.
    pub ns_per_pkt: f64,
    /// VM vif RX packets in the window.
    pub rx_packets: u64,
    /// Mirror copies sent in the window.
    pub mirror_packets: u64,
    /// Mirror copies that failed in the window.
    pub mirror_errors: u64,
    /// Drops in the window, all reasons.
    pub window_drops: u64,
    /// Seconds from the first packet until every flow was set up (`None`: not in time).
    pub settle_s: Option<f64>,
    /// The whole stateful measurement of the run.
    pub measurement: StatefulMeasurement,
}

/// Medians per N.
#[derive(Debug, Clone, Serialize)]
pub struct MirrorSummary {
    /// Distinct flows in the pcap.
    pub flows: u64,
    /// Median `cpu_mpps` without mirroring.
    pub plain_cpu_mpps: f64,
    /// Median `cpu_mpps` with every flow mirrored.
    pub mirrored_cpu_mpps: f64,
    /// mirrored / plain (target: >= 0.5).
    pub ratio: f64,
    /// Mirror copies per received packet in the mirrored windows (1.0 = every packet).
    pub copies_per_packet: f64,
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
    dur_s: f64,
    warm_s: f64,
    reps: u32,
    metric: &'static str,
    machine: Machine,
    commands: &'a [String],
    table: &'a [MirrorSummary],
    runs: &'a [MirrorRun],
}

fn spec(o: &Opts, empty_pcap: &Path, tag: &str, pcap_path: &Path, packets: u64, fs: &FlowSettings) -> RunSpec {
    // Copies in flight: at most one burst per fabric TX buffer, plus the pool cache.
    let Sizing { mbufs, memory_mb, memory } = memory::sizing(packets, fs.max_held_packets() + 1024, fs.table_bytes());
    let prefix = format!("vrbmir{}_{tag}", std::process::id());
    let topo = Topology {
        pcap: pcap_path.to_path_buf(),
        empty_pcap: empty_pcap.to_path_buf(),
        run_dir: o.run_base.join(&prefix),
        file_prefix: prefix,
        memory_mb,
        memory,
        mbufs,
        main_core: 0,
        fwd_core: 1,
        flow: Some(fs.clone()),
        probe: None,
    };
    RunSpec {
        vrouter: o.vrouter.clone(),
        topology: topo,
        config_path: o.out.join(format!("vrouter_{tag}.toml")),
        log_path: o.out.join(format!("vrouter_{tag}.log")),
        warm: Duration::from_secs_f64(o.warm),
        dur: Duration::from_secs_f64(o.dur),
        start_timeout: Duration::from_secs(o.start_timeout),
        stop_timeout: Duration::from_secs(60),
        fwd_thread: o.fwd_thread.clone(),
    }
}

/// Runs the comparison for every N and writes `mirror_results.json` in `o.out`.
pub fn run(o: Opts) -> Result<()> {
    let started = now_unix();
    let load_at_start = procfs::loadavg().unwrap_or_default();
    std::fs::create_dir_all(&o.out).with_context(|| format!("creating {}", o.out.display()))?;
    std::fs::create_dir_all(&o.run_base).with_context(|| format!("creating {}", o.run_base.display()))?;
    let empty_pcap = o.out.join("empty.pcap");
    std::fs::write(&empty_pcap, pcap::empty_pcap())?;
    println!(
        "# vrouter-bench --mirror: flows {:?}, dur {}s, warm {}s, reps {}, out {}, vrouter {}, git {}, load {:?}",
        o.flows,
        o.dur,
        o.warm,
        o.reps,
        o.out.display(),
        o.vrouter.display(),
        o.rev,
        load_at_start
    );
    let mut commands = Vec::new();
    let mut runs: Vec<MirrorRun> = Vec::new();
    let mut table: Vec<MirrorSummary> = Vec::new();
    for &n in &o.flows {
        let p = pcap::ensure_flows_pcap(&o.out, &o.shared, n, &mut commands)?;
        let packets = pcap::count_packets(&p)?;
        println!("\n## N = {n} flows ({}, {packets} packets)", p.display());
        for rep in 1..=o.reps {
            for mirrored in [false, true] {
                let mut fs = FlowSettings::for_flows(n);
                fs.mirror = mirrored;
                let tag = format!("{}_{n}_{rep}", if mirrored { "mirror" } else { "plain" });
                let s = spec(&o, &empty_pcap, &tag, &p, packets, &fs);
                let line = format!(
                    "{}   # {} N={n} rep {rep}",
                    shell_line(&[
                        o.vrouter.display().to_string(),
                        "--config".into(),
                        s.config_path.display().to_string()
                    ]),
                    if mirrored { "every flow mirrored" } else { "no mirroring" }
                );
                println!("$ {line}");
                commands.push(line);
                let m = measure_throughput(&s, n, Duration::from_secs(o.settle_timeout))?;
                let b = &m.base;
                println!(
                    "vrouter N={n} rep {rep} {}: cpu_mpps {:.3} wall_mpps {:.3} ns/pkt {:.1} rx {} mirror copies {} \
                     (errors {}) window drops {} load1 {:.2}->{:.2}",
                    if mirrored { "mirrored" } else { "plain   " },
                    b.cpu_mpps,
                    b.wall_mpps,
                    b.ns_per_pkt,
                    b.rx_packets,
                    b.mirror_packets,
                    b.mirror_errors,
                    b.drops,
                    b.load_before[0],
                    b.load_after[0],
                );
                runs.push(MirrorRun {
                    flows: n,
                    rep,
                    mirrored,
                    cpu_mpps: b.cpu_mpps,
                    wall_mpps: b.wall_mpps,
                    ns_per_pkt: b.ns_per_pkt,
                    rx_packets: b.rx_packets,
                    mirror_packets: b.mirror_packets,
                    mirror_errors: b.mirror_errors,
                    window_drops: b.drops,
                    settle_s: m.settle_s,
                    measurement: m.clone(),
                });
                if interrupted() {
                    bail!("interrupted");
                }
            }
        }
        let med = |mirrored: bool| {
            median(
                &runs.iter().filter(|r| r.flows == n && r.mirrored == mirrored).map(|r| r.cpu_mpps).collect::<Vec<_>>(),
            )
        };
        let mr: Vec<&MirrorRun> = runs.iter().filter(|r| r.flows == n && r.mirrored).collect();
        let copies = mr.iter().map(|r| r.mirror_packets).sum::<u64>() as f64
            / mr.iter().map(|r| r.rx_packets).sum::<u64>().max(1) as f64;
        let (plain, mirrored) = (med(false), med(true));
        table.push(MirrorSummary {
            flows: n,
            plain_cpu_mpps: plain,
            mirrored_cpu_mpps: mirrored,
            ratio: if plain > 0.0 { mirrored / plain } else { 0.0 },
            copies_per_packet: copies,
        });
    }
    println!("\n| flows | Mpps/core, no mirroring | Mpps/core, 100% mirrored | ratio | copies per packet |");
    println!("| ---: | ---: | ---: | ---: | ---: |");
    for t in &table {
        println!(
            "| {} | {:.3} | {:.3} | {:.2} | {:.3} |",
            t.flows, t.plain_cpu_mpps, t.mirrored_cpu_mpps, t.ratio, t.copies_per_packet
        );
    }
    let doc = Doc {
        tool: "vrouter-bench",
        mode: "mirror",
        started_unix: started,
        finished_unix: now_unix(),
        argv: std::env::args().collect(),
        git_rev: &o.rev,
        vrouter_binary: o.vrouter.display().to_string(),
        dur_s: o.dur,
        warm_s: o.warm,
        reps: o.reps,
        metric: "cpu_mpps: VM vif RX packets per second of forwarding-thread CPU time (medians)",
        machine: machine(load_at_start),
        commands: &commands,
        table: &table,
        runs: &runs,
    };
    let path = o.out.join("mirror_results.json");
    std::fs::write(&path, serde_json::to_string_pretty(&doc)?)?;
    println!("# results: {}", path.display());
    Ok(())
}
