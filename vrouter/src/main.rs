//! `vrouter --config <file>`: loads and validates the configuration (nothing starts if it is
//! invalid), initialises the EAL, opens the ports, launches one pinned forwarding lcore per
//! configured core and logs a one-line summary per interval (at debug level: `[log] level =
//! "debug"` or `RUST_LOG=vrouter=debug` shows it) until SIGINT/SIGTERM, then
//! stops the lcores, stops and closes the ports, marks the stats region stopped and cleans up
//! the EAL. Under systemd it notifies readiness, keep-alives and the stop (`systemd.rs`).

mod handover;
mod services;
mod systemd;

use anyhow::{Context, Result};
use clap::Parser;
use services::RunningRouter;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use vrouter::config;
use vrouter::datapath;
use vrouter::drop_reason::DropReason;
use vrouter::fib::Fib;
use vrouter::stats::Totals;

#[derive(Parser, Debug)]
#[command(name = "vrouter", version, about = "DPDK poll-mode vRouter")]
struct Args {
    /// Configuration file (TOML).
    #[arg(short, long)]
    config: PathBuf,
    /// Validate the configuration, print the EAL command line and exit.
    #[arg(long)]
    check: bool,
    /// Take over from the vRouter running on the same run directory (a planned restart or
    /// upgrade): prepare, stop it, then continue its flows, counters and ports.
    #[arg(long)]
    takeover: bool,
}

fn main() {
    // A panic on any thread (an lcore, the agent, a runtime worker) stops the process, as the
    // release profile's `panic = "abort"` does; the hook makes it so in every profile (the
    // tests' `test-release` profile unwinds).
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        std::process::abort();
    }));
    let args = Args::parse();
    if let Err(e) = run(&args) {
        // Through the logs once they are set up (JSON stays JSON), else (the configuration
        // did not load) straight to stderr.
        if logging::initialised() {
            tracing::error!("vrouter: error: {e:#}");
        } else {
            eprintln!("vrouter: error: {e:#}");
        }
        std::process::exit(1);
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn run(args: &Args) -> Result<()> {
    let cfg = config::load(&args.config)?;
    cfg.log.init()?;
    let fib = Fib::from_config(&cfg).context("building forwarding tables")?;
    let eal_args = datapath::eal_args(&cfg);
    if args.check {
        println!("configuration OK");
        println!("EAL: {}", eal_args.join(" "));
        return Ok(());
    }

    let run_dir = &cfg.vrouter.run_dir;
    let predecessor = handover::Predecessor::find(run_dir);
    let eal_args = match (predecessor, args.takeover) {
        (Some(p), false) => anyhow::bail!(
            "vrouter.run_dir {} belongs to the running vRouter pid {}: stop it first, or start this one with \
             --takeover to take over from it",
            run_dir.display(),
            p.pid
        ),
        (Some(p), true) => {
            tracing::info!("vrouter: taking over from the running vRouter pid {}", p.pid);
            handover::takeover_eal_args(&eal_args)
        }
        (None, true) => {
            tracing::info!("vrouter: --takeover: no vRouter runs on {}; starting", run_dir.display());
            eal_args
        }
        (None, false) => eal_args,
    };

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst))
            .context("installing the SIGINT/SIGTERM handler")?;
    }
    let mut sd = systemd::Systemd::from_env();
    let router = RunningRouter::start(&cfg, &args.config, fib, &eal_args, predecessor.filter(|_| args.takeover))?;
    let dp = router.datapath();
    tracing::info!(
        "vrouter: forwarding on {} lcore(s) {:?}, {} vif(s); stats in {}",
        cfg.eal.forwarding_cores.len(),
        cfg.eal.forwarding_cores,
        dp.ports.len(),
        cfg.vrouter.run_dir.display()
    );
    let cpus = cfg.eal.forwarding_cpus();
    for plan in &dp.plans {
        let qs: Vec<String> = plan.rx.iter().map(|q| format!("vif0/{} q{}", q.vif, q.queue)).collect();
        tracing::info!("vrouter: lcore {} (CPU {}) polls {}", plan.lcore_id, cpus[plan.index], qs.join(", "));
    }
    if let Some(line) = router.flow_line() {
        tracing::info!("{line}");
    }
    if router.exporting() {
        tracing::info!("vrouter: exporting flows and UVEs to {}", cfg.export.collectors.join(", "));
    }

    sd.ready(&dp.stats, &format!("forwarding on {} lcore(s), {} vif(s)", dp.plans.len(), dp.ports.len()));

    // The summary is a debug line: not computed while the level is off.
    let interval = match tracing::enabled!(tracing::Level::DEBUG) {
        true => Duration::from_secs(u64::from(cfg.vrouter.summary_interval_s)),
        false => Duration::ZERO,
    };
    let mut last = dp.stats.totals();
    let mut last_t = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
        dp.stats.set_heartbeat(now_ms());
        dp.sync_links();
        sd.tick(&dp.stats);
        if !interval.is_zero() && last_t.elapsed() >= interval {
            let now = dp.stats.totals();
            let dt = last_t.elapsed().as_secs_f64();
            tracing::debug!("{}", summary_line(&last, &now, dt, &dp.stats.drops(None)));
            last = now;
            last_t = Instant::now();
        }
    }
    tracing::info!("vrouter: stopping");
    sd.stopping();
    router.shutdown()
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
