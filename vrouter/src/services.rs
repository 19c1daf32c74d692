//! The services of a running vRouter and their order: what [`RunningRouter::start`] starts
//! (EAL, agent, exporter, trace API, data plane) it owns, and it stops them when shut down
//! or dropped, so that a start that fails half way stops what it had started.
//!
//! (A module of the `vrouter` binary, not of the library.)
//!
//! Teardown order: the forwarding lcores (which drop their held packets) and the ports first, then
//! the agent, exporter and trace API threads (in that order), then the EAL (packet capture
//! first) and the hugepage files it kept for `dpdk-dumpcap`.

use crate::handover::{Predecessor, STOP_TIMEOUT};
use anyhow::{Context, Result};
use flow_table::{FlowTable, FlowTableConfig, TableStart};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use vrouter::agent::flows::{Agent, AgentSettings};
use vrouter::agent::policy::PolicyEngine;
use vrouter::config::Config;
use vrouter::control::program::{self, Hooks, Programmer};
use vrouter::datapath::{Datapath, FlowPlane, PortSetup, SetupRequest, TraceSetup};
use vrouter::dpdk::Eal;
use vrouter::fib::publish::{FibCell, PortMap};
use vrouter::fib::Fib;
use vrouter::mirror::dp::{MirrorMeta, MirrorSetup};
use vrouter::mirror::{MirrorControl, MirrorRegion};
use vrouter::spsc::{self, Consumer, Producer};
use vrouter::stats::StatsRegion;
use vrouter::trace::rest::{RestServer, RunningRest};
use vrouter::trace::{TraceControl, TraceRegion};

/// Flow setup requests each lcore may have outstanding (per-lcore ring size).
const SETUP_RING: usize = 4096;

/// A running vRouter: every service started, each stopped in teardown order by
/// [`RunningRouter::shutdown`] or, on an early return, by `Drop`.
pub struct RunningRouter {
    /// Stops the agent, exporter and trace API threads.
    threads_stop: Arc<AtomicBool>,
    agent: Option<JoinHandle<()>>,
    /// The agent's doorbell: rung to stop it.
    agent_wake: Option<Arc<vrouter::agent::wake::AgentWake>>,
    exporter: Option<JoinHandle<()>>,
    trace_api: Option<RunningRest>,
    datapath: Option<Datapath>,
    eal: Option<Eal>,
    /// The EAL's `--file-prefix` when its hugepage files must be removed after the EAL
    /// cleanup (huge pages without `--huge-unlink`, for packet capture).
    hugepage_files: Option<String>,
    /// `vrouter: flow table <path> (<n> entries)` when flows are on, printed once running.
    flow_line: Option<String>,
}

/// The flow plane before anything runs: the table, the policy and the rings between the
/// forwarding lcores (the [`FlowPlane`]) and the agent.
struct Flows {
    table: Arc<FlowTable>,
    /// HOLD flows of a reattached table, for the agent to set up again.
    held: Option<Vec<(u32, flow_table::Gen)>>,
    policy: PolicyEngine,
    /// The lcores' ends: setup requests out, set-up flows in.
    plane: FlowPlane,
    /// The agent's ends.
    requests: Vec<Consumer<SetupRequest>>,
    done: Vec<Producer<u32>>,
}

impl Flows {
    /// The flow table and policy of `cfg` (`None` when `[flow]` is off) and one pair of
    /// rings per forwarding lcore.
    fn from_config(cfg: &Config) -> Result<Option<Flows>> {
        if !cfg.flow.enabled {
            return Ok(None);
        }
        let f = &cfg.flow;
        let n_lcores = cfg.eal.forwarding_cores.len();
        let tcfg = FlowTableConfig {
            main_entries: f.entries,
            overflow_entries: f.overflow_entries_effective(),
            max_lcores: n_lcores as u32,
        };
        let (table, start) = FlowTable::open_or_create(f.flow_table_path.as_deref(), &cfg.vrouter.run_dir, &tcfg)
            .context("creating the flow table ([flow] entries / flow_table_path)")?;
        let held = match start {
            TableStart::Created => None,
            TableStart::Reattached(report) => {
                tracing::info!("vrouter: flow table {} reattached: {report}", table.path().display());
                Some(report.held)
            }
            TableStart::Replaced { reason, kept_at } => {
                let kept = kept_at.map_or("could not be kept".to_string(), |p| format!("kept at {}", p.display()));
                tracing::info!("vrouter: the previous flow table was not reattached ({reason}); old file {kept}; starting with an empty table");
                None
            }
        };
        let policy = PolicyEngine::from_config(cfg).context("building the policy engine")?;
        let (setup, requests): (Vec<_>, Vec<_>) = (0..n_lcores).map(|_| spsc::ring(SETUP_RING)).unzip();
        let (done, done_rx): (Vec<_>, Vec<_>) = (0..n_lcores).map(|_| spsc::ring(SETUP_RING)).unzip();
        let table = Arc::new(table);
        let plane = FlowPlane {
            table: table.clone(),
            setup,
            done: done_rx,
            hold_limit: f.hold_limit as usize,
            per_flow: f.held_packets_per_flow as usize,
            wake: Arc::new(vrouter::agent::wake::AgentWake::new().context("creating the agent's eventfd")?),
        };
        Ok(Some(Flows { table, held, policy, plane, requests, done }))
    }
}

impl RunningRouter {
    /// Starts the vRouter of `cfg` (read from `config_path`, which the agent re-reads on
    /// `reload`): everything that can fail without running anything first (flow table,
    /// policy, mirror entries, trace requests, the trace API's address), then the EAL, the
    /// agent, the exporter, the trace API and the forwarding lcores.
    ///
    /// With a `predecessor` (`--takeover`), the EAL is initialised first, then the running
    /// vRouter is stopped (see `handover`), then everything that shares its state starts.
    pub fn start(
        file_cfg: &Config,
        config_path: &Path,
        fib: Fib,
        eal_args: &[String],
        predecessor: Option<Predecessor>,
    ) -> Result<RunningRouter> {
        // Before the EAL: pcap devices open their capture files in the run directory during
        // EAL device probing.
        let run_dir = &file_cfg.vrouter.run_dir;
        std::fs::create_dir_all(run_dir).with_context(|| format!("creating vrouter.run_dir {}", run_dir.display()))?;
        // What was programmed at runtime before a restart comes back after the file.
        let (restored_cfg, restored) = program::restore(file_cfg, run_dir);
        let cfg = &restored_cfg;
        let fib = if restored > 0 {
            tracing::info!(
                "vrouter: restored {restored} runtime-programmed object(s) from {}",
                run_dir.join(program::JOURNAL_FILE).display()
            );
            Fib::from_config(cfg).context("building forwarding tables with the restored runtime state")?
        } else {
            fib
        };
        let n_lcores = cfg.eal.forwarding_cores.len();
        let fib = Arc::new(fib);
        // The published forwarding state: the lcores, the agent and the programmer share it.
        let cell = Arc::new(FibCell::new(
            fib.clone(),
            PortMap { by_vif: Vec::new(), lcore_rx: vec![Vec::new(); n_lcores] },
            n_lcores,
        ));
        // The main thread works on the main (control) CPU from here on, as the EAL would put it
        // only at the end of its initialisation: the EAL's memory set-up and a reattach scan
        // take no CPU time from forwarding lcores (a takeover's, from the running vRouter's).
        pin_current_thread(cfg.eal.main_cpu(), "the main thread");
        // A takeover prepares what does not touch the running vRouter's state, then stops it.
        let mut early_eal = None;
        if let Some(p) = predecessor {
            early_eal = Some(Eal::init(eal_args).context("initialising the DPDK EAL")?);
            let took = p.stop(STOP_TIMEOUT)?;
            tracing::info!("vrouter: the previous vRouter (pid {}) stopped in {} ms", p.pid, took.as_millis());
        }
        // Flow table and policy before the EAL, so their errors stop us before anything runs.
        let flows = Flows::from_config(cfg)?;
        // The mirror table: analyzers from the configuration, published to <run_dir>/mirror.
        let (mirror_region, continued) = MirrorRegion::create_continuing(run_dir, n_lcores, cfg.vrouter.router_ip)
            .context("creating the mirror region in vrouter.run_dir")?;
        say_continued(&continued);
        let mirror_ctl = Arc::new(MirrorControl::new(mirror_region.clone(), cell.clone()));
        mirror_ctl.load_config(cfg).context("creating the [[analyzer]] mirror entries")?;
        let mirror_meta = Arc::new(std::sync::Mutex::new(Arc::new(MirrorMeta::new(cfg, &fib, |name| {
            mirror_ctl.find(name).map(|i| i.raw())
        }))));
        // Trace requests persisted in the run directory (enabled ones trace from the first
        // packet); the step rings: one per forwarding lcore and the agent's last.
        let trace_ctl = Arc::new(
            TraceControl::load(run_dir, cell.clone())
                .context("loading the trace requests in vrouter.run_dir")?
                .with_tenants(TraceControl::tenants_of(cfg)),
        );
        let (jobs_tx, jobs_rx) = std::sync::mpsc::sync_channel(16);
        let programmer = Arc::new(std::sync::Mutex::new(Programmer::new(
            cfg.clone(),
            cell.clone(),
            Some(run_dir),
            Hooks::default(),
        )));
        let control_token = match &cfg.vrouter.control_token_file {
            Some(p) => {
                let t = std::fs::read_to_string(p)
                    .with_context(|| format!("reading vrouter.control_token_file {}", p.display()))?;
                let t = t.trim().to_string();
                if t.len() < 16 {
                    anyhow::bail!(
                        "vrouter.control_token_file {}: the token must have at least 16 characters",
                        p.display()
                    );
                }
                Some(t)
            }
            None => None,
        };
        // Bound before anything starts: an address in use stops us here.
        let rest_server = match cfg.vrouter.trace_api {
            Some(addr) => {
                let mut server = RestServer::bind(addr, trace_ctl.clone())
                    .with_context(|| format!("binding vrouter.trace_api {addr}"))?
                    .with_simulator(vrouter::trace::rest::control_socket(run_dir.join("control.sock")));
                if let Some(t) = &control_token {
                    server = server.with_control(programmer.clone(), t);
                    tracing::info!(
                        "vrouter: programming API on http://{}/api/v1/control",
                        server.local_addr().unwrap_or(addr)
                    );
                }
                tracing::info!("vrouter: trace API on http://{}/traces", server.local_addr().unwrap_or(addr));
                Some(server)
            }
            None => None,
        };

        // DPDK's huge pages, counted after the flow table took its own: one line, not the
        // EAL's page of logs (a takeover's EAL already has its memory).
        if early_eal.is_none() {
            vrouter::hugepages::check_available(&cfg.eal, flows.as_ref().map(|f| f.table.path()))
                .map_err(anyhow::Error::msg)?;
        }
        let mut eal = match early_eal {
            Some(e) => e,
            None => Eal::init(eal_args).context("initialising the DPDK EAL")?,
        };
        let file_prefix = vrouter::datapath::eal_file_prefix(eal_args).unwrap_or("rte").to_string();
        // Without --huge-unlink (packet capture), DPDK's hugepage files stay until removed.
        let keeps_files = !cfg.eal.no_huge && !eal_args.iter().any(|a| a.starts_with("--huge-unlink"));
        if cfg.eal.pdump_enabled() {
            match eal.init_pdump() {
                Ok(()) => tracing::info!(
                    "vrouter: packet capture ready (vifdump -i vif0/N, or dpdk-dumpcap --file-prefix={file_prefix} -p)"
                ),
                Err(e) if cfg.eal.pdump == Some(true) => {
                    return Err(anyhow::Error::new(e).context("[eal] pdump = true: initialising packet capture"))
                }
                Err(e) => tracing::warn!("vrouter: packet capture unavailable ([eal] pdump): {e}"),
            }
        }
        let eal_facts = vrouter::stats::EalFacts {
            file_prefix: file_prefix.clone(),
            hugepages: !cfg.eal.no_huge,
            pdump: eal.pdump(),
        };
        let mut router = RunningRouter {
            threads_stop: Arc::new(AtomicBool::new(false)),
            agent: None,
            agent_wake: None,
            exporter: None,
            trace_api: None,
            datapath: None,
            eal: Some(eal),
            hugepage_files: keeps_files.then_some(file_prefix),
            flow_line: None,
        };
        let (trace_region, continued) = TraceRegion::create_continuing(
            run_dir,
            n_lcores + 1,
            vrouter::trace::region::DEFAULT_RING_SLOTS,
            vrouter::dpdk::tsc_hz(),
            vrouter::dpdk::rdtsc(),
        )
        .context("creating the trace region in vrouter.run_dir")?;
        say_continued(&continued);
        // The steps carried over were exported by the previous run: export starts after them.
        let trace_from: Vec<u64> = match continued.outcome {
            vrouter_abi::continued::Continued::Continued { .. } => trace_region.heads(),
            _ => Vec::new(),
        };

        // The agent runs before the first packet: a miss must find it ready (its per-flow
        // state is allocated in `Agent::new`), or the first new flows pile up in HOLD.
        let export_table_for_info = flows.as_ref().map(|f| f.table.clone());
        let (plane, export_table) = match flows {
            Some(Flows { table, held, policy, plane, requests, done }) => {
                router.flow_line =
                    Some(format!("vrouter: flow table {} ({} entries)", table.path().display(), table.capacity()));
                let settings = AgentSettings {
                    age_timeout_ms: u64::from(cfg.flow.age_timeout_s) * 1000,
                    hold_audit_ms: u64::from(cfg.flow.hold_audit_s) * 1000,
                    tcp_close_evict: cfg.flow.tcp_close_evict,
                    config_path: config_path.to_path_buf(),
                    control_path: run_dir.join("control.sock"),
                    tsc_hz: vrouter::dpdk::tsc_hz(),
                };
                router.agent_wake = Some(plane.wake.clone());
                let agent = Agent::new(table.clone(), fib.clone(), policy, requests, done, settings)
                    .context("starting the agent (control socket in vrouter.run_dir)")?
                    .with_wake(plane.wake.clone())
                    .with_mirror(mirror_ctl.clone())
                    .with_trace(trace_ctl.clone(), trace_region.writer(n_lcores))
                    .with_programming(cell.clone(), programmer.clone(), jobs_rx);
                let agent = match held {
                    Some(h) => agent.with_adopted(h),
                    None => agent,
                };
                router.agent = Some(router.spawn_agent(agent, cfg.eal.main_cpu())?);
                (Some(plane), Some(table))
            }
            None => (None, None),
        };

        // Flow and UVE export ([export], Sandesh) and flow export over IPFIX ([ipfix]): one
        // thread on the main (control) core, reading the flow table like a tool; it follows
        // live programming through `export_config`.
        let exporting = cfg.export.enabled || cfg.ipfix.enabled;
        let export_config: vrouter::agent::export::ConfigUpdates = Default::default();
        router.exporter = match export_table {
            Some(table) if exporting => Some(
                vrouter::agent::export::builder(cfg, table, router.threads_stop.clone())
                    .pin_to(cfg.eal.main_cpu())
                    .config_updates(export_config.clone())
                    .trace_requests(trace_ctl.clone())
                    .trace_from(trace_from)
                    .spawn()
                    .context("starting the exporter ([export], [ipfix])")?,
            ),
            None if exporting => {
                tracing::warn!("vrouter: [export] or [ipfix] is enabled but [flow] is not: nothing to export");
                None
            }
            _ => None,
        };

        // The trace REST API (tenant tokens) on its own thread.
        if let Some(server) = rest_server {
            router.trace_api = Some(server.start().context("spawning the trace API thread")?);
        }

        let mirror = MirrorSetup { region: mirror_region, meta: mirror_meta.clone() };
        let trace = TraceSetup { region: trace_region, published: trace_ctl.published() };
        // Room for vifs added at runtime: ids up to 255 at least.
        let max_vifs = fib.vifs.len().max(RUNTIME_VIF_SLOTS);
        let dp = Datapath::builder(cfg, cell)
            .flows(plane)
            .mirror(mirror)
            .trace(trace)
            .start(|ports| stats_region(cfg, max_vifs, ports, &mirror_ctl, &eal_facts))?;
        programmer.lock().unwrap_or_else(|e| e.into_inner()).set_hooks(Hooks {
            ports: Some(Box::new(dp.port_ops(cfg))),
            agent: router.agent_wake.clone().map(|w| vrouter::agent::wake::Mailbox::new(jobs_tx, w)),
            stats: Some(dp.stats.clone()),
            mirror: Some(mirror_ctl.clone()),
            lcores: cfg.eal.forwarding_cores.clone(),
            flows: export_table_for_info,
            config_path: Some(config_path.to_path_buf()),
            before_publish: Some({
                let mirror_ctl = mirror_ctl.clone();
                let export_config = export_config.clone();
                let exporting = router.exporter.is_some();
                Box::new(move |cfg: &Config, fib: &Arc<Fib>| {
                    let meta = MirrorMeta::new(cfg, fib, |name| mirror_ctl.find(name).map(|i| i.raw()));
                    *mirror_meta.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(meta);
                    if exporting {
                        *export_config.lock().unwrap_or_else(|e| e.into_inner()) = Some(cfg.clone());
                    }
                })
            }),
        });
        router.datapath = Some(dp);
        Ok(router)
    }

    /// The agent's thread, on the main (control) CPU.
    fn spawn_agent(&self, agent: Agent, cpu: u32) -> Result<JoinHandle<()>> {
        let stop = self.threads_stop.clone();
        std::thread::Builder::new()
            .name("vr-agent".into())
            .spawn(move || {
                // The agent shares the main (control) core and never preempts a poll-mode
                // forwarding core.
                pin_current_thread(cpu, "the agent thread");
                agent.run(stop)
            })
            .context("spawning the agent thread")
    }

    /// The running data plane.
    pub fn datapath(&self) -> &Datapath {
        self.datapath.as_ref().expect("the data plane runs until shutdown")
    }

    /// Whether the exporter runs.
    pub fn exporting(&self) -> bool {
        self.exporter.is_some()
    }

    /// The flow table line of the start-up summary (when flows are on).
    pub fn flow_line(&self) -> Option<&str> {
        self.flow_line.as_deref()
    }

    /// Stops everything in teardown order and says so (`vrouter: stopped; rx .. tx ..
    /// dropped ..`, the totals when the lcores stopped); the error is the ports' (which
    /// does not stop the rest of the teardown) or else the EAL cleanup's.
    pub fn shutdown(mut self) -> Result<()> {
        let totals = self.datapath().stats.totals();
        let result = self.stop_datapath();
        self.stop_threads();
        tracing::info!("vrouter: stopped; rx {} tx {} dropped {}", totals.rx_packets, totals.tx_packets, totals.drops);
        if let Some(eal) = self.eal.take() {
            let cleaned = eal.cleanup().context("EAL cleanup");
            self.remove_hugepage_files();
            cleaned?;
        }
        result
    }

    /// Removes DPDK's hugepage files of this run when it kept them (packet capture), after
    /// the EAL cleanup: their pages go back to the pool now, as with `--huge-unlink`.
    fn remove_hugepage_files(&mut self) {
        if let Some(prefix) = self.hugepage_files.take() {
            vrouter::hugepages::remove_hugepage_files(&prefix);
        }
    }

    /// Stops the forwarding lcores and the ports (once).
    fn stop_datapath(&mut self) -> Result<()> {
        match self.datapath.take() {
            Some(dp) => dp.shutdown(),
            None => Ok(()),
        }
    }

    /// Stops the agent, exporter and trace API threads and waits for each in turn.
    fn stop_threads(&mut self) {
        self.threads_stop.store(true, Ordering::SeqCst);
        if let Some(w) = &self.agent_wake {
            w.ring();
        }
        for thread in [self.agent.take(), self.exporter.take()].into_iter().flatten() {
            let _ = thread.join();
        }
        if let Some(api) = self.trace_api.take() {
            if let Err(e) = api.stop() {
                tracing::warn!("vrouter: the trace API stopped: {e}");
            }
        }
    }
}

impl Drop for RunningRouter {
    /// Teardown after an early return (a start that failed half way): what
    /// [`RunningRouter::shutdown`] does, errors ignored. After `shutdown`, nothing is left.
    fn drop(&mut self) {
        let _ = self.stop_datapath();
        self.stop_threads();
        if let Some(eal) = self.eal.take() {
            let _ = eal.cleanup();
            self.remove_hugepage_files();
        }
    }
}

/// vif ids the stats region has room for, at least: vifs added at runtime take free ids.
const RUNTIME_VIF_SLOTS: usize = 256;

/// The stats region of `cfg`'s vifs on the opened `ports` (their queues, MTU and mirror
/// settings), in the run directory; `max_vifs`: the FIB's vif table size.
/// `eal` is recorded in its header for `vifdump`.
fn stats_region(
    cfg: &Config,
    max_vifs: usize,
    ports: &[PortSetup],
    mirror_ctl: &MirrorControl,
    eal: &vrouter::stats::EalFacts,
) -> Result<StatsRegion> {
    let run_dir = &cfg.vrouter.run_dir;
    let mut infos = Vec::with_capacity(cfg.vifs.len());
    for v in cfg.vifs.iter().map(|v| v.get_ref()) {
        let p = ports.iter().find(|p| p.vif == v.id).context("vif without a port")?;
        let mirror_index = v.mirror_to.as_deref().and_then(|n| mirror_ctl.find(n)).map_or(255, |i| i.raw());
        let info = vrouter::vif_info::from_config(v, p.port.id, p.tx_queues, &p.driver)?
            .port(p.port.id, p.rx_queues, p.tx_queues)
            .mtu(u32::from(v.mtu.unwrap_or(1500)))
            .mirror(v.mirror_rx, v.mirror_tx, mirror_index);
        infos.push(info);
    }
    let n_lcores = cfg.eal.forwarding_cores.len();
    let (region, continued) =
        StatsRegion::create_continuing_with(run_dir, max_vifs, n_lcores, &infos, vrouter::dpdk::tsc_hz(), eal)
            .with_context(|| format!("creating the stats region in {}", run_dir.display()))?;
    say_continued(&continued);
    Ok(region)
}

/// Prints what a region took over from the previous run's file, or why it started fresh
/// (one line; nothing on a first start).
fn say_continued(c: &vrouter_abi::Continuation) {
    if let Some(line) = c.line() {
        tracing::info!("vrouter: {line}");
    }
}

/// Pins the calling thread (`what`) to one CPU (best effort: a failure leaves it unpinned
/// and says so).
fn pin_current_thread(cpu: u32, what: &str) {
    // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET only write inside it, and
    // sched_setaffinity(0, ...) applies to the calling thread.
    let ret = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu as usize, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set)
    };
    if ret != 0 {
        tracing::warn!("vrouter: could not pin {what} to CPU {cpu}: {}", std::io::Error::last_os_error());
    }
}
