//! `vrouter-bench`: Mpps per core of the vRouter's VM -> MPLSoUDP encap path, against
//! dpdk-testpmd (io, 5tswap, rxonly) and optionally OVS-DPDK (l3) measured in the same run on
//! the same pcap source, core layout and memory setup. A benchmark: it reports, it does not
//! assert speed. See benches/README.md.

use anyhow::{bail, Context, Result};
use benches::anchors::{self, OvsRow, TestpmdRow};
use benches::memory::{self, Sizing};
use benches::report::{self, FlowsResult, Summary};
use benches::topology::Topology;
use benches::vrouter_run::{self, RunSpec, VrouterMeasurement};
use benches::{find_repo_root, git_rev, interrupted, machine, now_unix, pcap, procfs, shell_line, Machine};
use clap::Parser;
use serde::Serialize;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(name = "vrouter-bench", about = "vRouter forwarding benchmark against testpmd / OVS-DPDK anchors")]
struct Args {
    /// Flow counts to measure (distinct UDP 5-tuples in the pcap).
    #[arg(long, value_delimiter = ',', default_value = "1,1000,65536,1048576")]
    flows: Vec<u64>,
    /// Only N = 1 and 1000 (overrides --flows).
    #[arg(long)]
    quick: bool,
    /// Measurement window, seconds.
    #[arg(long, default_value_t = 10.0)]
    dur: f64,
    /// Warm-up after the first packet, seconds.
    #[arg(long, default_value_t = 3.0)]
    warm: f64,
    /// Repetitions of every measurement (the table shows medians; default 1, --vhost and
    /// --route-storm at least 3, --restart 3).
    #[arg(long)]
    reps: Option<u32>,
    /// Output directory (pcaps, configs, logs, CSV, JSON).
    #[arg(long, default_value = "/tmp/vrouter-bench")]
    out: PathBuf,
    /// The shared benchmark directory (default: <repo>/../shared).
    #[arg(long)]
    shared: Option<PathBuf>,
    /// The vrouter binary (default: <repo>/target/release/vrouter; build it with
    /// `cargo build --release -p vrouter`).
    #[arg(long)]
    vrouter: Option<PathBuf>,
    /// Do not run the testpmd anchors.
    #[arg(long)]
    no_testpmd: bool,
    /// Also run OVS-DPDK `l3` (run_ovs_dpdk.py; pcap-fed up to 65536 flows, memif-fed above).
    #[arg(long)]
    ovs: bool,
    /// Do not run the vRouter (anchors only).
    #[arg(long)]
    no_vrouter: bool,
    /// Name of the forwarding thread (DPDK 22.11 names lcore 1's thread `rte-worker-1`).
    #[arg(long, default_value = "rte-worker-1")]
    fwd_thread: String,
    /// Revision recorded with the results (default: `git rev-parse HEAD` of the repository,
    /// `-dirty` when it has uncommitted changes). Set it when the vrouter binary was built
    /// from another tree.
    #[arg(long)]
    rev: Option<String>,
    /// Seconds allowed for EAL start, pcap preload and the first packet.
    #[arg(long, default_value_t = 300)]
    start_timeout: u64,
    /// DPDK on 2 MiB huge pages for every run (the vRouter with its flow table on
    /// hugetlbfs; testpmd and OVS-DPDK when their script takes `--huge`). Without it or
    /// --no-huge, each run is on huge pages when enough are free (see benches/README.md).
    #[arg(long, conflicts_with = "no_huge")]
    huge: bool,
    /// Every run on `--no-huge` (4 KiB pages, the flow table in the run directory).
    #[arg(long)]
    no_huge: bool,

    /// The stateful benchmark instead: throughput with `[flow] enabled = true` at --flows
    /// (next to testpmd 5tswap and OVS-DPDK conntrack), the flow setup rate at
    /// --setup-flows (next to OVS-DPDK conntrack on the same pcap) and memory per flow.
    #[arg(long)]
    stateful: bool,
    /// The mirror benchmark instead: Mpps per core with every flow mirrored to one analyzer
    /// next to the same stateful run without mirroring, at --flows (default 1000 here).
    #[arg(long, conflicts_with = "stateful")]
    mirror: bool,
    /// The ops benchmark instead: Mpps per core with `vrouter-exporter` scraped every second
    /// and IPFIX flow export on (to a collector of the harness), next to the same stateful run
    /// with both off, at --flows (default 1000 here).
    #[arg(long, conflicts_with_all = ["stateful", "mirror"])]
    ops: bool,
    /// --ops: the `vrouter-exporter` binary (default: next to the vrouter binary, else
    /// <repo>/target/release/vrouter-exporter; `cargo build --release -p tools`).
    #[arg(long, value_name = "PATH")]
    exporter: Option<PathBuf>,
    /// The tracing benchmark instead: Mpps per core with tracing compiled out
    /// (--vrouter-notrace), with no trace request enabled and with a non-matching request
    /// enabled, at --flows (default 1000 here).
    #[arg(long, conflicts_with_all = ["stateful", "mirror", "ops"], requires = "vrouter_notrace")]
    trace: bool,
    /// --trace: the vRouter built with `--no-default-features --features dataplane`.
    #[arg(long, value_name = "PATH")]
    vrouter_notrace: Option<PathBuf>,
    /// The route-storm benchmark instead: route adds/deletes per second over the control
    /// socket while forwarding at --flows (default 1000 here), forwarding with and without
    /// the storm (interleaved windows, --reps >= 3), and request -> first packet forwarded
    /// by a new route.
    #[arg(long, conflicts_with_all = ["stateful", "mirror", "trace", "ops"])]
    route_storm: bool,
    /// --route-storm: routes per request of the storm.
    #[arg(long, default_value_t = 256)]
    storm_batch: usize,
    /// --route-storm: storm routes installed before the windows (VRF 1 then holds this many
    /// to this + --storm-batch storm routes).
    #[arg(long, default_value_t = 4096)]
    storm_table: usize,
    /// --route-storm: no windows with one route per request.
    #[arg(long)]
    no_storm_single: bool,
    /// --route-storm: skip the storm part.
    #[arg(long)]
    no_storm: bool,
    /// --route-storm: skip the latency part.
    #[arg(long)]
    no_latency: bool,
    /// --route-storm: samples of request -> first packet forwarded by the new route.
    #[arg(long, default_value_t = 200)]
    latency_samples: usize,
    /// --route-storm: CPU of the storm client and latency thread (the vRouter's main core).
    #[arg(long, default_value_t = 0)]
    client_cpu: u32,
    /// --stateful: new-flow pcaps (every packet a new flow) for the setup rate.
    #[arg(long, value_delimiter = ',', default_value = "200000,1048576")]
    setup_flows: Vec<u64>,
    /// --stateful: `[flow] hold_limit` values to run the setup rate with.
    #[arg(long, value_delimiter = ',', default_value = "1000,4096,65536")]
    setup_hold_limits: Vec<u32>,
    /// --stateful: seconds to sample a setup run from its first packet (longer than the
    /// HOLD audit time, 5 s, to see what becomes of flows stuck in HOLD).
    #[arg(long, default_value_t = 10.0)]
    setup_observe: f64,
    /// --stateful: keep sampling a setup run beyond --setup-observe, up to this many
    /// seconds, until its first pass is over and every flow is set up.
    #[arg(long, default_value_t = 60.0)]
    setup_max_observe: f64,
    /// --stateful: sampling period of a setup run, milliseconds.
    #[arg(long, default_value_t = 10.0)]
    setup_sample_ms: f64,
    /// --stateful: skip the setup-rate part.
    #[arg(long)]
    no_setup: bool,
    /// --stateful: skip the throughput part.
    #[arg(long)]
    no_throughput: bool,
    /// --stateful: skip OVS-DPDK (it runs by default in --stateful).
    #[arg(long)]
    no_ovs: bool,
    /// --stateful: where the vRouter run directories (with the flow table file) go; must
    /// be a tmpfs so that the kernel does not write the table back to disk.
    #[arg(long, default_value = "/dev/shm/vrouter-bench")]
    run_base: PathBuf,
    /// --stateful: seconds allowed from the first packet until every flow is set up.
    #[arg(long, default_value_t = 300)]
    settle_timeout: u64,
    /// --stateful: largest pcap OVS is fed from directly (its mempool caps the preload at
    /// ~250k packets); larger ones go through its memif generator.
    #[arg(long, default_value_t = 250_000)]
    ovs_pcap_max: u64,
    /// --stateful: measure throughput on fragmented traffic (every datagram of the pcap in
    /// two IPv4 fragments; the anchors run on the same fragmented pcap).
    #[arg(long)]
    fragmented: bool,
    #[command(flatten)]
    vhost: benches::vhost_cmd::VhostArgs,
    #[command(flatten)]
    restart: benches::restart_cmd::RestartArgs,
}

impl Args {
    /// `--reps`, 1 when not given.
    fn reps(&self) -> u32 {
        self.reps.unwrap_or(1)
    }
}

#[derive(Serialize)]
struct Results<'a> {
    tool: &'static str,
    started_unix: u64,
    finished_unix: u64,
    argv: Vec<String>,
    git_rev: String,
    vrouter_binary: String,
    shared_dir: String,
    dur_s: f64,
    warm_s: f64,
    reps: u32,
    metric: &'static str,
    machine: Machine,
    commands: &'a [String],
    table: Vec<Summary>,
    per_flows: &'a [FlowsResult],
}

struct Ctx {
    args: Args,
    out: PathBuf,
    shared: PathBuf,
    vrouter: PathBuf,
    empty_pcap: PathBuf,
    commands: Vec<String>,
}

impl Ctx {
    fn note_command(&mut self, line: String) {
        println!("$ {line}");
        self.commands.push(line);
    }

    fn ensure_pcap(&mut self, n: u64) -> Result<PathBuf> {
        let p = self.out.join("pcaps").join(format!("udp_{n}.pcap"));
        if std::fs::metadata(&p).map(|m| m.len() > 24).unwrap_or(false) {
            println!("# using existing {}", p.display());
            return Ok(p);
        }
        std::fs::create_dir_all(p.parent().unwrap())?;
        let argv = vec![
            "python3".to_string(),
            self.shared.join("bench/gen_flows_pcap.py").display().to_string(),
            "-n".into(),
            n.to_string(),
            "-o".into(),
            p.display().to_string(),
        ];
        self.note_command(shell_line(&argv));
        let st = Command::new(&argv[0]).args(&argv[1..]).status().context("running gen_flows_pcap.py")?;
        if !st.success() {
            bail!("gen_flows_pcap.py failed ({st})");
        }
        Ok(p)
    }

    fn run_vrouter(
        &mut self,
        n: u64,
        pcap_path: &Path,
        packets: u64,
        rep: u32,
    ) -> Result<(VrouterMeasurement, String)> {
        let Sizing { mbufs, memory_mb, memory } = memory::sizing(packets, 0, 0);
        let prefix = format!("vrbench{}_{n}_{rep}", std::process::id());
        let topo = Topology {
            pcap: pcap_path.to_path_buf(),
            empty_pcap: self.empty_pcap.clone(),
            run_dir: self.out.join("run").join(&prefix),
            file_prefix: prefix,
            memory_mb,
            memory,
            mbufs,
            main_core: 0,
            fwd_core: 1,
            flow: None,
            probe: None,
        };
        let config_path = self.out.join(format!("vrouter_{n}.toml"));
        let spec = RunSpec {
            vrouter: self.vrouter.clone(),
            topology: topo,
            config_path: config_path.clone(),
            log_path: self.out.join(format!("vrouter_{n}.log")),
            warm: Duration::from_secs_f64(self.args.warm),
            dur: Duration::from_secs_f64(self.args.dur),
            start_timeout: Duration::from_secs(self.args.start_timeout),
            stop_timeout: Duration::from_secs(60),
            fwd_thread: self.args.fwd_thread.clone(),
        };
        let cmd =
            shell_line(&[self.vrouter.display().to_string(), "--config".into(), config_path.display().to_string()]);
        self.note_command(format!(
            "{cmd}   # N={n}, rep {rep}: -m {memory_mb} {}, {mbufs} mbufs, vdevs {:?}; sampled after {}s warm-up over {}s",
            memory.eal_note(),
            spec.topology.vdevs(),
            self.args.warm,
            self.args.dur
        ));
        let m = vrouter_run::measure(&spec)?;
        Ok((m, cmd))
    }
}

fn print_measurement(n: u64, rep: u32, m: &VrouterMeasurement) {
    println!(
        "vrouter N={n} rep {rep}: cpu_mpps {:.3} wall_mpps {:.3} ns/pkt {:.1} fwd_cpu_share {:.2} tx/rx {:.4} \
         drops {} avg_burst {} idle_polls {} cpu_busy {:?} load1 {:.2}->{:.2} startup {:.1}s (forwarding tid {}) memory {}{}",
        m.cpu_mpps,
        m.wall_mpps,
        m.ns_per_pkt,
        m.fwd_cpu_share,
        m.tx_over_rx,
        m.drops,
        m.avg_burst.map(|b| format!("{b:.1}")).unwrap_or_else(|| "n/a".into()),
        m.idle_poll_share.map(|x| format!("{:.1}%", x * 100.0)).unwrap_or_else(|| "n/a".into()),
        m.cpu_busy.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>(),
        m.load_before[0],
        m.load_after[0],
        m.startup_s,
        m.fwd_tid,
        m.dpdk_memory.name(),
        m.flow_table.as_ref().map(|t| format!(", flow table {t}")).unwrap_or_default(),
    );
    if m.drops > 0 {
        println!("  drops in the window by reason:");
        for d in m.drop_reasons.iter().take(5) {
            println!("    {:<28} {:>12}  ({})", d.reason, d.packets, d.key);
        }
    }
    if !m.accounted {
        println!("  WARNING: after stop rx {} != tx {} + drops {}", m.total_rx, m.total_tx, m.total_drops);
    }
    if !m.clean_exit {
        println!("  WARNING: vrouter did not exit cleanly after SIGINT");
    }
}

fn main() {
    let args = Args::parse();
    benches::install_sigint_handler();
    match run(args) {
        Ok(()) => {}
        Err(e) => {
            eprintln!("vrouter-bench: error: {e:#}");
            std::process::exit(1);
        }
    }
}

fn run(mut args: Args) -> Result<()> {
    let started = now_unix();
    let choice = match (args.huge, args.no_huge) {
        (true, _) => memory::Choice::Huge,
        (_, true) => memory::Choice::NoHuge,
        _ => memory::Choice::Auto,
    };
    memory::set_choice(choice);
    println!(
        "# memory: {} ({} MiB of free 2 MiB huge pages on a hugetlbfs mount now)",
        match choice {
            memory::Choice::Huge => "--huge: every run on huge pages",
            memory::Choice::NoHuge => "--no-huge: every run on 4 KiB pages",
            memory::Choice::Auto => "automatic: a run is on huge pages when they cover it, else --no-huge",
        },
        memory::available_bytes() >> 20
    );
    let load_at_start = procfs::loadavg().unwrap_or_default();
    if args.quick {
        args.flows = vec![1, 1000];
    }
    if args.flows.is_empty() || args.flows.contains(&0) {
        bail!("--flows needs positive flow counts");
    }
    if !(args.dur > 0.0 && args.warm >= 0.0 && args.reps() >= 1) {
        bail!("--dur must be > 0, --warm >= 0, --reps >= 1");
    }
    let cwd = std::env::current_dir()?;
    let repo = find_repo_root(&cwd)
        .or_else(|| find_repo_root(Path::new(env!("CARGO_MANIFEST_DIR"))))
        .context("cannot find the workspace root (run from inside the repository)")?;
    let shared = args.shared.clone().unwrap_or_else(|| repo.join("../shared"));
    let shared = std::fs::canonicalize(&shared).unwrap_or(shared);
    let vrouter = args.vrouter.clone().unwrap_or_else(|| repo.join("target/release/vrouter"));
    let vrouter = if vrouter.is_relative() { cwd.join(vrouter) } else { vrouter };
    if !args.no_vrouter && !vrouter.is_file() {
        bail!(
            "{} not found; build it first: cargo build --release -p vrouter (or pass --vrouter PATH)",
            vrouter.display()
        );
    }
    for s in ["bench/gen_flows_pcap.py", "bench/run_testpmd.py"] {
        if !shared.join(s).is_file() {
            bail!("{} not found (pass --shared DIR)", shared.join(s).display());
        }
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("vrouter-bench: warning: not root; DPDK (and the anchor scripts) usually need root");
    }
    let out = if args.out.is_relative() { cwd.join(&args.out) } else { args.out.clone() };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let empty_pcap = out.join("empty.pcap");
    std::fs::write(&empty_pcap, pcap::empty_pcap())?;
    let git = args.rev.clone().unwrap_or_else(|| git_rev(&repo));
    if args.trace {
        let flows =
            if args.flows == [1, 1000, 65536, 1048576] && !args.quick { vec![1000] } else { args.flows.clone() };
        return benches::trace_cmd::run(benches::trace_cmd::Opts {
            flows,
            dur: args.dur,
            warm: args.warm,
            reps: args.reps(),
            out,
            run_base: args.run_base.clone(),
            shared,
            vrouter,
            vrouter_notrace: args.vrouter_notrace.clone().expect("required by clap"),
            fwd_thread: args.fwd_thread.clone(),
            rev: git,
            start_timeout: args.start_timeout,
            settle_timeout: args.settle_timeout,
        });
    }
    if args.restart.restart {
        let flows = if args.flows == [1, 1000, 65536, 1048576] && !args.quick {
            vec![1000, 1_000_000]
        } else {
            args.flows.clone()
        };
        let r = &args.restart;
        let v = &args.vhost;
        let max_flows = flows.iter().copied().max().unwrap_or(1000);
        return benches::restart_cmd::run(
            benches::restart_cmd::Opts {
                flows,
                restarts: r.restarts.clone(),
                pps: r.pps,
                steady: r.steady,
                reps: args.reps.unwrap_or(3),
                recover_timeout: r.recover_timeout,
                guest_sleep_us: r.guest_sleep_us,
                out,
                run_base: args.run_base.clone(),
                shared,
                vm_guest: v.vm_guest.clone().unwrap_or_else(|| vrouter.with_file_name("vm-guest")),
                vrouter,
                hugepages: if args.no_huge {
                    0
                } else {
                    v.reserve_hugepages.max(benches::restart_cmd::pages_needed(max_flows))
                },
                require_huge: args.huge,
                setup_script: Some(repo.join("ci/setup.sh")).filter(|p| p.is_file()),
                rev: git,
                start_timeout: args.start_timeout,
                settle_timeout: args.settle_timeout,
            },
            std::env::args().collect(),
        );
    }
    if args.vhost.vhost {
        let flows = if args.flows == [1, 1000, 65536, 1048576] && !args.quick { 1000 } else { args.flows[0] };
        let v = &args.vhost;
        if !v.lcores2_cpus.len().is_multiple_of(2) {
            bail!("--lcores2-cpus takes two CPUs (one per forwarding lcore): CPU,CPU");
        }
        let vm_guest = v.vm_guest.clone().unwrap_or_else(|| vrouter.with_file_name("vm-guest"));
        return benches::vhost_cmd::run(
            benches::vhost_cmd::Opts {
                flows,
                dur: args.dur,
                warm: args.warm,
                calib: v.calib,
                reps: args.reps().max(3),
                out,
                run_base: args.run_base.clone(),
                shared,
                vrouter,
                vm_guest,
                hugepages: if args.no_huge { 0 } else { v.reserve_hugepages },
                require_huge: args.huge,
                setup_script: Some(repo.join("ci/setup.sh")).filter(|p| p.is_file()),
                vrouter_runs: !args.no_vrouter,
                ovs: !args.no_ovs,
                scaling: v.scaling,
                lcores2: match v.lcores2_cpus.as_slice() {
                    [] => vec![vec![1, 1], vec![1, 0]],
                    l => l.chunks(2).map(<[u32]>::to_vec).collect(),
                },
                rev: git,
                start_timeout: args.start_timeout,
                settle_timeout: args.settle_timeout,
            },
            std::env::args().collect(),
        );
    }
    if args.route_storm {
        let flows = if args.flows == [1, 1000, 65536, 1048576] && !args.quick { 1000 } else { args.flows[0] };
        return benches::route_storm::run(benches::route_storm::Opts {
            flows,
            batch: args.storm_batch,
            single: !args.no_storm_single,
            table: args.storm_table,
            dur: args.dur,
            warm: args.warm,
            reps: args.reps().max(3),
            latency_samples: args.latency_samples,
            client_cpu: args.client_cpu,
            out,
            run_base: args.run_base.clone(),
            shared,
            vrouter,
            fwd_thread: args.fwd_thread.clone(),
            rev: git,
            start_timeout: args.start_timeout,
            settle_timeout: args.settle_timeout,
            no_storm: args.no_storm,
            no_latency: args.no_latency,
        });
    }
    if args.ops {
        let flows =
            if args.flows == [1, 1000, 65536, 1048576] && !args.quick { vec![1000] } else { args.flows.clone() };
        let exporter = match &args.exporter {
            Some(p) if p.is_relative() => cwd.join(p),
            Some(p) => p.clone(),
            None => vrouter
                .parent()
                .map(|d| d.join("vrouter-exporter"))
                .filter(|p| p.is_file())
                .unwrap_or_else(|| repo.join("target/release/vrouter-exporter")),
        };
        return benches::ops_cmd::run(benches::ops_cmd::Opts {
            flows,
            dur: args.dur,
            warm: args.warm,
            reps: args.reps(),
            out,
            run_base: args.run_base.clone(),
            shared,
            vrouter,
            exporter,
            fwd_thread: args.fwd_thread.clone(),
            rev: git,
            start_timeout: args.start_timeout,
            settle_timeout: args.settle_timeout,
        });
    }
    if args.mirror {
        let flows =
            if args.flows == [1, 1000, 65536, 1048576] && !args.quick { vec![1000] } else { args.flows.clone() };
        return benches::mirror_cmd::run(benches::mirror_cmd::Opts {
            flows,
            dur: args.dur,
            warm: args.warm,
            reps: args.reps(),
            out,
            run_base: args.run_base.clone(),
            shared,
            vrouter,
            fwd_thread: args.fwd_thread.clone(),
            rev: git,
            start_timeout: args.start_timeout,
            settle_timeout: args.settle_timeout,
        });
    }
    if args.stateful {
        if args.setup_flows.contains(&0) || args.setup_hold_limits.contains(&0) {
            bail!("--setup-flows and --setup-hold-limits need positive values");
        }
        return benches::stateful_cmd::run(benches::stateful_cmd::Opts {
            flows: args.flows.clone(),
            setup_flows: args.setup_flows.clone(),
            setup_hold_limits: args.setup_hold_limits.clone(),
            dur: args.dur,
            warm: args.warm,
            reps: args.reps(),
            out,
            run_base: args.run_base.clone(),
            shared,
            vrouter,
            testpmd: !args.no_testpmd,
            ovs: !args.no_ovs,
            vrouter_runs: !args.no_vrouter,
            throughput: !args.no_throughput,
            setup: !args.no_setup,
            fwd_thread: args.fwd_thread.clone(),
            rev: git,
            start_timeout: args.start_timeout,
            settle_timeout: args.settle_timeout,
            setup_observe: args.setup_observe,
            setup_max_observe: args.setup_max_observe,
            setup_sample_ms: args.setup_sample_ms,
            ovs_pcap_max: args.ovs_pcap_max,
            fragmented: args.fragmented,
        });
    }
    println!(
        "# vrouter-bench: flows {:?}, dur {}s, warm {}s, reps {}, out {}, vrouter {}, git {git}, load {:?}",
        args.flows,
        args.dur,
        args.warm,
        args.reps(),
        out.display(),
        vrouter.display(),
        load_at_start
    );
    let mut ctx =
        Ctx { out: out.clone(), shared: shared.clone(), vrouter: vrouter.clone(), empty_pcap, commands: vec![], args };

    // 1. Traffic.
    let mut pcaps = Vec::new();
    for &n in &ctx.args.flows.clone() {
        let p = ctx.ensure_pcap(n)?;
        let packets = pcap::count_packets(&p)?;
        pcaps.push((n, p, packets));
    }

    let csv_path = out.join("vrouter_results.csv");
    let tp_csv = out.join("testpmd_results.csv");
    let ovs_csv = out.join("ovs_results.csv");
    let mut results: Vec<FlowsResult> = Vec::new();
    for (n, p, packets) in &pcaps {
        let (n, packets) = (*n, *packets);
        println!("\n## N = {n} flows ({}, {packets} packets)", p.display());
        // 2. The vRouter.
        let mut runs = Vec::new();
        let mut errors = Vec::new();
        let mut vr_cmd = String::new();
        if !ctx.args.no_vrouter {
            for rep in 1..=ctx.args.reps() {
                match ctx.run_vrouter(n, p, packets, rep) {
                    Ok((m, cmd)) => {
                        print_measurement(n, rep, &m);
                        let new = !csv_path.exists();
                        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&csv_path)?;
                        if new {
                            writeln!(f, "{}", report::CSV_HEADER)?;
                        }
                        let name = p.file_name().unwrap().to_string_lossy();
                        writeln!(f, "{}", report::csv_line(now_unix(), n, &name, rep as usize, &m, &git))?;
                        runs.push(m);
                        vr_cmd = cmd;
                    }
                    Err(e) => {
                        eprintln!("vrouter-bench: vrouter N={n} rep {rep}: {e:#}");
                        errors.push(format!("{e:#}"));
                    }
                }
                if interrupted() {
                    bail!("interrupted");
                }
            }
        }
        // 3. Anchors.
        let mut tp: Vec<TestpmdRow> = Vec::new();
        let mut tp_err = None;
        if !ctx.args.no_testpmd {
            let argv = anchors::testpmd_command(
                &shared,
                std::slice::from_ref(p),
                "io,5tswap,rxonly",
                ctx.args.dur,
                ctx.args.warm,
                ctx.args.reps(),
                &tp_csv,
                memory::anchor_memory(memory::sizing(packets, 0, 0).memory, &shared.join("bench/run_testpmd.py")),
            );
            ctx.note_command(shell_line(&argv));
            match anchors::run_testpmd(&argv, &tp_csv, 3 * ctx.args.reps() as usize, ctx.args.dur, ctx.args.warm) {
                Ok(rows) => {
                    if rows.len() < 3 * ctx.args.reps() as usize {
                        tp_err =
                            Some(format!("only {} of {} testpmd runs produced a row", rows.len(), 3 * ctx.args.reps()));
                    }
                    tp = rows;
                }
                Err(e) => tp_err = Some(format!("{e:#}")),
            }
            if let Some(e) = &tp_err {
                eprintln!("vrouter-bench: testpmd N={n}: {e}");
            }
        }
        let mut ovs: Vec<OvsRow> = Vec::new();
        let mut ovs_err = None;
        if ctx.args.ovs {
            let memif = n > 65536;
            let mem =
                memory::anchor_memory(memory::sizing(packets, 0, 0).memory, &shared.join("bench/run_ovs_dpdk.py"));
            let argv =
                anchors::ovs_command(&shared, p, memif, "l3", ctx.args.dur, ctx.args.warm.max(5.0), &ovs_csv, mem);
            ctx.note_command(shell_line(&argv));
            match anchors::run_ovs(&argv, &ovs_csv, ctx.args.dur, ctx.args.warm.max(5.0)) {
                Ok(rows) if rows.is_empty() => ovs_err = Some("run_ovs_dpdk.py produced no row".into()),
                Ok(rows) => ovs = rows,
                Err(e) => ovs_err = Some(format!("{e:#}")),
            }
            if let Some(e) = &ovs_err {
                eprintln!("vrouter-bench: OVS N={n}: {e}");
            }
        }
        if interrupted() {
            bail!("interrupted");
        }
        let summary = Summary::compute(n, &runs, &tp, &ovs);
        results.push(FlowsResult {
            flows: n,
            pcap: p.display().to_string(),
            pcap_packets: packets,
            vrouter_config: out.join(format!("vrouter_{n}.toml")).display().to_string(),
            vrouter_command: vr_cmd,
            vrouter_runs: runs,
            vrouter_errors: errors,
            testpmd: tp,
            testpmd_error: tp_err,
            ovs,
            ovs_error: ovs_err,
            summary,
        });
        // Partial results survive an interrupted or failing later N.
        write_json(&ctx, &results, started, &git, load_at_start)?;
    }

    // 4. Output.
    let summaries: Vec<Summary> = results.iter().map(|r| r.summary.clone()).collect();
    println!(
        "\n# Results: Mpps per fully owned core (packets / on-CPU seconds of the forwarding thread), 64-byte frames"
    );
    println!(
        "# vRouter path: VM vif -> IPv4 route {} -> MPLSoUDP tunnel (label 40) on the fabric vif",
        benches::topology::ROUTE
    );
    println!("# load average at start {:?}, at end {:?}\n", load_at_start, procfs::loadavg().unwrap_or_default());
    print!("{}", report::table(&summaries, ctx.args.ovs));
    for r in &results {
        for m in &r.vrouter_runs {
            if m.drops > 0 {
                let top: Vec<String> =
                    m.drop_reasons.iter().take(3).map(|d| format!("{} {}", d.reason, d.packets)).collect();
                println!("N={}: vRouter drops in window: {}", r.flows, top.join(", "));
            }
        }
        for e in &r.vrouter_errors {
            println!("N={}: vRouter run failed: {e}", r.flows);
        }
    }
    println!("\nCommands run:");
    for c in &ctx.commands {
        println!("  {c}");
    }
    println!(
        "\nWritten: {} (all details), {} (one line per vRouter run), {}{}",
        out.join("results.json").display(),
        csv_path.display(),
        tp_csv.display(),
        if ctx.args.ovs { format!(", {}", ovs_csv.display()) } else { String::new() }
    );
    Ok(())
}

fn write_json(ctx: &Ctx, results: &[FlowsResult], started: u64, git: &str, load_at_start: [f64; 3]) -> Result<()> {
    let doc = Results {
        tool: "vrouter-bench",
        started_unix: started,
        finished_unix: now_unix(),
        argv: std::env::args().collect(),
        git_rev: git.to_string(),
        vrouter_binary: ctx.vrouter.display().to_string(),
        shared_dir: ctx.shared.display().to_string(),
        dur_s: ctx.args.dur,
        warm_s: ctx.args.warm,
        reps: ctx.args.reps(),
        metric: "cpu_mpps = packets received in the window / on-CPU seconds of the forwarding thread",
        machine: machine(load_at_start),
        commands: &ctx.commands,
        table: results.iter().map(|r| r.summary.clone()).collect(),
        per_flows: results,
    };
    let path = ctx.out.join("results.json");
    std::fs::write(&path, serde_json::to_string_pretty(&doc)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
