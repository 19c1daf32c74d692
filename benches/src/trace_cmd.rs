//! `vrouter-bench --trace`: the cost of packet tracing. Mpps per forwarding core of the
//! stateful benchmark (see [`crate::stateful`]) in three runs per repetition, in the same
//! session on the same pcap and core layout:
//!
//! - `compiled-out`: a vRouter built without the `trace` feature (`--vrouter-notrace`);
//! - `idle`: the normal build, no trace request enabled (one load per burst);
//! - `no-match`: the normal build with one enabled request that matches none of the
//!   benchmark's packets (UDP destination port 9, which the pcap never uses), added over the
//!   control socket as soon as the agent is up (before the first packet's warm-up ends);
//!   every packet is parsed and matched, none is recorded.
//!
//! The runs alternate per repetition so drifts in machine load hit all three.

use crate::memory::{self, Sizing};
use crate::stateful::{measure_throughput, StatefulMeasurement};
use crate::topology::{FlowSettings, Topology};
use crate::vrouter_run::RunSpec;
use crate::{interrupted, machine, median, now_unix, pcap, procfs, shell_line, Machine};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Options of the trace benchmark.
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
    /// The same vRouter built with `--no-default-features --features dataplane`.
    pub vrouter_notrace: PathBuf,
    /// Name of the forwarding thread (`rte-worker-1` in DPDK 22.11).
    pub fwd_thread: String,
    /// Revision recorded with the results.
    pub rev: String,
    /// Seconds allowed for EAL start, pcap preload and the first packet.
    pub start_timeout: u64,
    /// Seconds allowed from the first packet until every flow is set up.
    pub settle_timeout: u64,
}

const VARIANTS: [&str; 3] = ["compiled-out", "idle", "no-match"];

/// One run.
#[derive(Debug, Clone, Serialize)]
pub struct TraceRun {
    /// Distinct flows in the pcap.
    pub flows: u64,
    /// Repetition number (from 1).
    pub rep: u32,
    /// `compiled-out`, `idle` or `no-match` (see the module documentation).
    pub variant: &'static str,
    /// Packets received per on-CPU second of the forwarding thread, millions.
    pub cpu_mpps: f64,
    /// Packets received per wall-clock second of the window, millions.
    pub wall_mpps: f64,
    /// Forwarding-thread CPU nanoseconds per received packet.
    pub ns_per_pkt: f64,
    /// VM vif RX packets in the window.
    pub rx_packets: u64,
    /// Drops in the window, all reasons.
    pub window_drops: u64,
    /// The no-match run's request as the vRouter answered `trace_add` (enabled), before the
    /// first packet's warm-up ended.
    pub request_state: Option<serde_json::Value>,
    /// The whole stateful measurement of the run.
    pub measurement: StatefulMeasurement,
}

/// Medians per N.
#[derive(Debug, Clone, Serialize)]
pub struct TraceSummary {
    /// Distinct flows in the pcap.
    pub flows: u64,
    /// Median `cpu_mpps` of the build without the `trace` feature.
    pub compiled_out_cpu_mpps: f64,
    /// Median `cpu_mpps` with no trace request enabled.
    pub idle_cpu_mpps: f64,
    /// Median `cpu_mpps` with one enabled request that matches nothing.
    pub no_match_cpu_mpps: f64,
    /// 1 - idle / compiled-out (target <= 1 %).
    pub idle_slowdown: f64,
    /// 1 - no-match / compiled-out (target <= 3 %).
    pub no_match_slowdown: f64,
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
    vrouter_notrace_binary: String,
    dur_s: f64,
    warm_s: f64,
    reps: u32,
    metric: &'static str,
    machine: Machine,
    commands: &'a [String],
    table: &'a [TraceSummary],
    runs: &'a [TraceRun],
}

fn spec(
    o: &Opts,
    vrouter: &Path,
    empty_pcap: &Path,
    tag: &str,
    pcap_path: &Path,
    packets: u64,
    fs: &FlowSettings,
) -> RunSpec {
    // Copies in flight: at most one burst per fabric TX buffer, plus the pool cache.
    let Sizing { mbufs, memory_mb, memory } = memory::sizing(packets, fs.max_held_packets() + 1024, fs.table_bytes());
    let prefix = format!("vrbtr{}_{tag}", std::process::id());
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
        vrouter: vrouter.to_path_buf(),
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

/// Sends one request to the control socket in `run_dir`, waiting (bounded) for it to appear.
fn control(run_dir: &Path, req: &serde_json::Value, wait: Duration) -> Result<serde_json::Value> {
    let path = run_dir.join("control.sock");
    let deadline = Instant::now() + wait;
    let s = loop {
        match std::os::unix::net::UnixStream::connect(&path) {
            Ok(s) => break s,
            Err(e) if Instant::now() > deadline => {
                return Err(e).with_context(|| format!("connecting to {}", path.display()))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    };
    let mut w = &s;
    writeln!(w, "{req}")?;
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line)?;
    let v: serde_json::Value = serde_json::from_str(&line).with_context(|| format!("reply {line:?}"))?;
    if v["ok"] != true {
        bail!("control request {req} failed: {v}");
    }
    Ok(v)
}

/// Runs the comparison for every N and writes `trace_results.json` in `o.out`.
pub fn run(o: Opts) -> Result<()> {
    let started = now_unix();
    let load_at_start = procfs::loadavg().unwrap_or_default();
    std::fs::create_dir_all(&o.out).with_context(|| format!("creating {}", o.out.display()))?;
    std::fs::create_dir_all(&o.run_base).with_context(|| format!("creating {}", o.run_base.display()))?;
    if !o.vrouter_notrace.exists() {
        bail!(
            "--vrouter-notrace {}: no such binary (build it with `cargo build --release -p vrouter --no-default-features --features dataplane` into another target dir)",
            o.vrouter_notrace.display()
        );
    }
    let empty_pcap = o.out.join("empty.pcap");
    std::fs::write(&empty_pcap, pcap::empty_pcap())?;
    println!(
        "# vrouter-bench --trace: flows {:?}, dur {}s, warm {}s, reps {}, out {}, vrouter {}, compiled-out {}, git {}, load {:?}",
        o.flows,
        o.dur,
        o.warm,
        o.reps,
        o.out.display(),
        o.vrouter.display(),
        o.vrouter_notrace.display(),
        o.rev,
        load_at_start
    );
    let mut commands = Vec::new();
    let mut runs: Vec<TraceRun> = Vec::new();
    let mut table: Vec<TraceSummary> = Vec::new();
    for &n in &o.flows {
        let p = pcap::ensure_flows_pcap(&o.out, &o.shared, n, &mut commands)?;
        let packets = pcap::count_packets(&p)?;
        println!("\n## N = {n} flows ({}, {packets} packets)", p.display());
        for rep in 1..=o.reps {
            for variant in VARIANTS {
                let fs = FlowSettings::for_flows(n);
                let tag = format!("{variant}_{n}_{rep}");
                let bin = if variant == "compiled-out" { &o.vrouter_notrace } else { &o.vrouter };
                let s = spec(&o, bin, &empty_pcap, &tag, &p, packets, &fs);
                let line = format!(
                    "{}   # {variant} N={n} rep {rep}",
                    shell_line(&[bin.display().to_string(), "--config".into(), s.config_path.display().to_string()])
                );
                println!("$ {line}");
                commands.push(line);
                // The no-match request goes in as soon as the agent listens.
                let adder = (variant == "no-match").then(|| {
                    let run_dir = s.topology.run_dir.clone();
                    let _ = std::fs::remove_file(run_dir.join("control.sock"));
                    std::thread::spawn(move || -> Result<serde_json::Value> {
                        // Started::start recreates the run directory: wait for this run's socket.
                        let add = serde_json::json!({"cmd": "trace_add", "condition": {"protocol": 17, "dst_port": 9},
                            "limit": {"packets": 1000}, "enabled": true});
                        control(&run_dir, &add, Duration::from_secs(120))
                    })
                });
                let m = measure_throughput(&s, n, Duration::from_secs(o.settle_timeout))?;
                let request_state = match adder {
                    Some(h) => {
                        let added = h.join().map_err(|_| anyhow::anyhow!("request thread panicked"))??;
                        Some(added["request"].clone())
                    }
                    None => None,
                };
                let b = &m.base;
                println!(
                    "vrouter N={n} rep {rep} {variant:>12}: cpu_mpps {:.3} wall_mpps {:.3} ns/pkt {:.1} rx {} window drops {} load1 {:.2}->{:.2}",
                    b.cpu_mpps, b.wall_mpps, b.ns_per_pkt, b.rx_packets, b.drops, b.load_before[0], b.load_after[0],
                );
                runs.push(TraceRun {
                    flows: n,
                    rep,
                    variant,
                    cpu_mpps: b.cpu_mpps,
                    wall_mpps: b.wall_mpps,
                    ns_per_pkt: b.ns_per_pkt,
                    rx_packets: b.rx_packets,
                    window_drops: b.drops,
                    request_state,
                    measurement: m.clone(),
                });
                if interrupted() {
                    bail!("interrupted");
                }
            }
        }
        let med = |v: &str| {
            median(&runs.iter().filter(|r| r.flows == n && r.variant == v).map(|r| r.cpu_mpps).collect::<Vec<_>>())
        };
        let (off, idle, nm) = (med("compiled-out"), med("idle"), med("no-match"));
        let slow = |x: f64| if off > 0.0 { 1.0 - x / off } else { 0.0 };
        table.push(TraceSummary {
            flows: n,
            compiled_out_cpu_mpps: off,
            idle_cpu_mpps: idle,
            no_match_cpu_mpps: nm,
            idle_slowdown: slow(idle),
            no_match_slowdown: slow(nm),
        });
    }
    println!("\n| flows | Mpps/core, tracing compiled out | no request enabled | non-matching request enabled | slowdown idle | slowdown no-match |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
    for t in &table {
        println!(
            "| {} | {:.3} | {:.3} | {:.3} | {:+.2} % | {:+.2} % |",
            t.flows,
            t.compiled_out_cpu_mpps,
            t.idle_cpu_mpps,
            t.no_match_cpu_mpps,
            t.idle_slowdown * 100.0,
            t.no_match_slowdown * 100.0
        );
    }
    let doc = Doc {
        tool: "vrouter-bench",
        mode: "trace",
        started_unix: started,
        finished_unix: now_unix(),
        argv: std::env::args().collect(),
        git_rev: &o.rev,
        vrouter_binary: o.vrouter.display().to_string(),
        vrouter_notrace_binary: o.vrouter_notrace.display().to_string(),
        dur_s: o.dur,
        warm_s: o.warm,
        reps: o.reps,
        metric: "cpu_mpps: VM vif RX packets per second of forwarding-thread CPU time (medians)",
        machine: machine(load_at_start),
        commands: &commands,
        table: &table,
        runs: &runs,
    };
    let path = o.out.join("trace_results.json");
    std::fs::write(&path, serde_json::to_string_pretty(&doc)?)?;
    println!("# results: {}", path.display());
    Ok(())
}
