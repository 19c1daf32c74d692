//! `vrouter --config <file>`: loads and validates the configuration (nothing starts if it is
//! invalid), initialises the EAL, opens the ports, launches one pinned forwarding lcore per
//! configured core and prints a one-line summary per interval until SIGINT/SIGTERM, then
//! stops the lcores, stops and closes the ports, marks the stats region stopped and cleans up
//! the EAL.

use anyhow::{Context, Result};
use clap::Parser;
use flow_table::{FlowTable, FlowTableConfig};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use vrouter::agent::flows::{Agent, AgentSettings};
use vrouter::agent::policy::PolicyEngine;
use vrouter::config;
use vrouter::datapath::{self, Datapath, PortSetup};
use vrouter::datapath::{FlowPlane, TraceSetup};
use vrouter::dpdk::Eal;
use vrouter::drop_reason::DropReason;
use vrouter::fib::Fib;
use vrouter::mirror::dp::{MirrorMeta, MirrorSetup};
use vrouter::mirror::{MirrorControl, MirrorRegion};
use vrouter::spsc;
use vrouter::trace::{TraceControl, TraceRegion};

/// Flow setup requests each lcore may have outstanding (per-lcore ring size).
const SETUP_RING: usize = 4096;
use vrouter::stats::{StatsRegion, Totals, VifInfo};

#[derive(Parser, Debug)]
#[command(name = "vrouter", version, about = "DPDK poll-mode vRouter")]
struct Args {
    /// Configuration file (TOML).
    #[arg(short, long)]
    config: PathBuf,
    /// Validate the configuration, print the EAL command line and exit.
    #[arg(long)]
    check: bool,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("vrouter: error: {e:#}");
        std::process::exit(1);
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn run(args: &Args) -> Result<()> {
    let cfg = config::load(&args.config)?;
    let fib = Fib::from_config(&cfg).context("building forwarding tables")?;
    let eal_args = datapath::eal_args(&cfg);
    if args.check {
        println!("configuration OK");
        println!("EAL: {}", eal_args.join(" "));
        return Ok(());
    }

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst))
            .context("installing the SIGINT/SIGTERM handler")?;
    }

    // Before the EAL: pcap devices open their capture files in the run directory during EAL
    // device probing.
    std::fs::create_dir_all(&cfg.vrouter.run_dir)
        .with_context(|| format!("creating vrouter.run_dir {}", cfg.vrouter.run_dir.display()))?;
    let n_lcores = cfg.eal.forwarding_cores.len();
    let fib = Arc::new(fib);
    // Flow table and policy before the EAL, so their errors stop us before anything runs.
    let flows = if cfg.flow.enabled {
        let f = &cfg.flow;
        let tcfg = FlowTableConfig {
            main_entries: f.entries,
            overflow_entries: f.overflow_entries_effective(),
            max_lcores: n_lcores as u32,
        };
        let table = match &f.flow_table_path {
            Some(p) => FlowTable::create(p, &tcfg),
            None => FlowTable::create_in_run_dir(&cfg.vrouter.run_dir, &tcfg),
        }
        .context("creating the flow table ([flow] entries / flow_table_path)")?;
        let policy = PolicyEngine::from_config(&cfg).context("building the policy engine")?;
        let (producers, consumers): (Vec<_>, Vec<_>) = (0..n_lcores).map(|_| spsc::ring(SETUP_RING)).unzip();
        let (done_tx, done_rx): (Vec<_>, Vec<_>) = (0..n_lcores).map(|_| spsc::ring(SETUP_RING)).unzip();
        Some((Arc::new(table), policy, producers, consumers, done_tx, done_rx))
    } else {
        None
    };
    // The mirror table: analyzers from the configuration, published to <run_dir>/mirror.
    let mirror_region = MirrorRegion::create(&cfg.vrouter.run_dir, n_lcores, cfg.vrouter.router_ip)
        .context("creating the mirror region in vrouter.run_dir")?;
    let mirror_ctl = Arc::new(MirrorControl::new(mirror_region.clone(), fib.clone()));
    mirror_ctl.load_config(&cfg).context("creating the [[analyzer]] mirror entries")?;
    let mirror_meta = Arc::new(MirrorMeta::new(&cfg, &fib, |name| mirror_ctl.find(name).map(|i| i.raw())));
    // Trace requests persisted in the run directory (enabled ones trace from the first
    // packet); the step rings: one per forwarding lcore and the agent's last.
    let trace_ctl = Arc::new(
        TraceControl::load(&cfg.vrouter.run_dir, fib.clone())
            .context("loading the trace requests in vrouter.run_dir")?
            .with_tenants(TraceControl::tenants_of(&cfg)),
    );
    // Bound before anything starts: an address in use stops us here.
    let rest_server = match cfg.vrouter.trace_api {
        Some(addr) => {
            let server = vrouter::trace::rest::RestServer::bind(addr, trace_ctl.clone())
                .with_context(|| format!("binding vrouter.trace_api {addr}"))?;
            println!("vrouter: trace API on http://{}/traces", server.local_addr().unwrap_or(addr));
            Some(server)
        }
        None => None,
    };
    let eal = Eal::init(&eal_args).context("initialising the DPDK EAL")?;
    let trace_region = TraceRegion::create(
        &cfg.vrouter.run_dir,
        n_lcores + 1,
        vrouter::trace::region::DEFAULT_RING_SLOTS,
        vrouter::dpdk::tsc_hz(),
        vrouter::dpdk::rdtsc(),
    )
    .context("creating the trace region in vrouter.run_dir")?;
    let run_dir = cfg.vrouter.run_dir.clone();
    let max_vifs = fib.vifs.len();
    let vif_cfgs: Vec<config::VifConfig> = cfg.vifs.iter().map(|v| v.get_ref().clone()).collect();
    let build_stats = |ports: &[PortSetup]| -> Result<StatsRegion> {
        let mut infos = Vec::with_capacity(vif_cfgs.len());
        for v in &vif_cfgs {
            let p = ports.iter().find(|p| p.vif == v.id).context("vif without a port")?;
            let mirror_index = v.mirror_to.as_deref().and_then(|n| mirror_ctl.find(n)).map_or(255, |i| i.raw());
            let info = VifInfo::from_config(v, p.port.id, p.tx_queues, &p.driver)?
                .port(p.port.id, p.rx_queues, p.tx_queues)
                .mtu(u32::from(v.mtu.unwrap_or(1500)))
                .mirror(v.mirror_rx, v.mirror_tx, mirror_index);
            infos.push(info);
        }
        StatsRegion::create(&run_dir, max_vifs, n_lcores, &infos, vrouter::dpdk::tsc_hz())
            .with_context(|| format!("creating the stats region in {}", run_dir.display()))
    };
    let (plane, agent_parts) = match flows {
        Some((table, policy, producers, consumers, done_tx, done_rx)) => (
            Some(FlowPlane {
                table: table.clone(),
                setup: producers,
                done: done_rx,
                hold_limit: cfg.flow.hold_limit as usize,
                per_flow: cfg.flow.held_packets_per_flow as usize,
            }),
            Some((table, policy, consumers, done_tx)),
        ),
        None => (None, None),
    };
    // The agent runs before the first packet: a miss must find it ready (its per-flow
    // state is allocated in `Agent::new`), or the first new flows pile up in HOLD.
    let agent_stop = Arc::new(AtomicBool::new(false));
    let export_table = agent_parts.as_ref().map(|p| p.0.clone());
    let mut flow_msg = None;
    let agent = match agent_parts {
        Some((table, policy, consumers, done_tx)) => {
            let flow_line = format!("vrouter: flow table {} ({} entries)", table.path().display(), table.capacity());
            let settings = AgentSettings {
                age_timeout_ms: u64::from(cfg.flow.age_timeout_s) * 1000,
                hold_audit_ms: u64::from(cfg.flow.hold_audit_s) * 1000,
                tcp_close_evict: cfg.flow.tcp_close_evict,
                config_path: args.config.clone(),
                control_path: cfg.vrouter.run_dir.join("control.sock"),
            };
            let agent = Agent::new(table, fib.clone(), policy, consumers, done_tx, settings)
                .context("starting the agent (control socket in vrouter.run_dir)")?
                .with_mirror(mirror_ctl.clone())
                .with_trace(trace_ctl.clone(), trace_region.writer(n_lcores));
            let st = agent_stop.clone();
            flow_msg = Some(flow_line);
            let core = cfg.eal.main_core;
            Some(
                std::thread::Builder::new()
                    .name("vr-agent".into())
                    .spawn(move || {
                        // The agent shares the main (control) core and never preempts a
                        // poll-mode forwarding core.
                        pin_current_thread(core);
                        agent.run(st)
                    })
                    .context("spawning the agent thread")?,
            )
        }
        None => None,
    };

    // Flow and UVE export ([export]): its own thread on the main (control) core, reading the
    // flow table like a tool.
    let exporter = match export_table {
        Some(table) if cfg.export.enabled => {
            match vrouter::agent::export::spawn_traced(
                &cfg,
                table,
                agent_stop.clone(),
                Some(cfg.eal.main_core),
                Some(trace_ctl.clone()),
            ) {
                Ok(h) => Some(h),
                Err(e) => {
                    agent_stop.store(true, Ordering::SeqCst);
                    if let Some(a) = agent {
                        let _ = a.join();
                    }
                    let _ = eal.cleanup();
                    return Err(anyhow::Error::new(e).context("starting the exporter ([export])"));
                }
            }
        }
        None if cfg.export.enabled => {
            eprintln!("vrouter: [export] is enabled but [flow] is not: nothing to export");
            None
        }
        _ => None,
    };

    // The trace REST API (tenant tokens) on its own thread.
    let rest = match rest_server {
        Some(server) => {
            let st = agent_stop.clone();
            Some(
                std::thread::Builder::new()
                    .name("vr-trace-api".into())
                    .spawn(move || server.run(st))
                    .context("spawning the trace API thread")?,
            )
        }
        None => None,
    };
    let mirror_setup = MirrorSetup { region: mirror_region, meta: mirror_meta };
    let trace_setup = TraceSetup { region: trace_region.clone(), published: trace_ctl.published() };
    let dp = match Datapath::builder(&cfg, fib.clone())
        .flows(plane)
        .mirror(mirror_setup)
        .trace(trace_setup)
        .start(build_stats)
    {
        Ok(dp) => dp,
        Err(e) => {
            agent_stop.store(true, Ordering::SeqCst);
            if let Some(a) = agent {
                let _ = a.join();
            }
            if let Some(x) = exporter {
                let _ = x.join();
            }
            if let Some(r) = rest {
                let _ = r.join();
            }
            let _ = eal.cleanup();
            return Err(e);
        }
    };
    println!(
        "vrouter: forwarding on {} lcore(s) {:?}, {} vif(s); stats in {}",
        n_lcores,
        cfg.eal.forwarding_cores,
        dp.ports.len(),
        cfg.vrouter.run_dir.display()
    );
    for plan in &dp.plans {
        let qs: Vec<String> = plan.rx.iter().map(|q| format!("vif0/{} q{}", q.vif, q.queue)).collect();
        println!("vrouter: lcore {} polls {}", plan.lcore_id, qs.join(", "));
    }
    if let Some(m) = flow_msg {
        println!("{m}");
    }
    if exporter.is_some() {
        println!("vrouter: exporting flows and UVEs to {}", cfg.export.collectors.join(", "));
    }
    let interval = Duration::from_secs(u64::from(cfg.vrouter.summary_interval_s));
    let mut last = dp.stats.totals();
    let mut last_t = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
        dp.stats.set_heartbeat(now_ms());
        if !interval.is_zero() && last_t.elapsed() >= interval {
            let now = dp.stats.totals();
            let dt = last_t.elapsed().as_secs_f64();
            println!("{}", summary_line(&last, &now, dt, &dp.stats.drops(None)));
            last = now;
            last_t = Instant::now();
        }
    }
    println!("vrouter: stopping");
    let totals = dp.stats.totals();
    let result = dp.shutdown();
    agent_stop.store(true, Ordering::SeqCst);
    if let Some(a) = agent {
        let _ = a.join();
    }
    if let Some(x) = exporter {
        let _ = x.join();
    }
    if let Some(r) = rest {
        let _ = r.join();
    }
    println!("vrouter: stopped; rx {} tx {} dropped {}", totals.rx_packets, totals.tx_packets, totals.drops);
    eal.cleanup().context("EAL cleanup")?;
    result
}

/// Pins the calling thread to one CPU (best effort: a failure leaves it unpinned and says so).
fn pin_current_thread(cpu: u32) {
    // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET only write inside it, and
    // sched_setaffinity(0, ...) applies to the calling thread.
    let ret = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu as usize, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if ret != 0 {
        eprintln!("vrouter: could not pin the agent thread to CPU {cpu}: {}", std::io::Error::last_os_error());
    }
}

/// `rx 1.23 Mpps tx 1.23 Mpps drop 0 pps | total rx N tx N drop N [top drop: reason N]`
fn summary_line(a: &Totals, b: &Totals, dt: f64, drops: &[u64]) -> String {
    let rate = |x: u64, y: u64| (y.saturating_sub(x)) as f64 / dt.max(1e-9);
    let fmt_rate = |r: f64| {
        if r >= 1e6 {
            format!("{:.2} Mpps", r / 1e6)
        } else if r >= 1e3 {
            format!("{:.1} kpps", r / 1e3)
        } else {
            format!("{r:.0} pps")
        }
    };
    let mut s = format!(
        "rx {} tx {} drop {} | total rx {} tx {} drop {}",
        fmt_rate(rate(a.rx_packets, b.rx_packets)),
        fmt_rate(rate(a.tx_packets, b.tx_packets)),
        fmt_rate(rate(a.drops, b.drops)),
        b.rx_packets,
        b.tx_packets,
        b.drops
    );
    if let Some((i, n)) = drops.iter().enumerate().filter(|(_, n)| **n > 0).max_by_key(|(_, n)| **n) {
        if let Some(r) = DropReason::from_index(i) {
            s.push_str(&format!(" (top drop: {} {})", r.name(), n));
        }
    }
    s
}
