//! The data plane: ports and queues set up from the FIB, RX queues spread over pinned
//! forwarding lcores, and the run-to-completion poll loop each lcore runs.
//!
//! Per iteration an lcore polls each of its RX queues for a burst of up to 32 packets, looks
//! the burst's flows up in one pass (VM vifs), runs every packet through
//! [`pipeline::process`] (or, for an IPv4 packet of a found, forwarding flow, the flow-hit
//! path [`pipeline::hit`], which gives the same result), buffers the transmits per output vif
//! and flushes each buffer with one `rte_eth_tx_burst` at the end of the burst (or when it
//! fills).
//! Counters go to the lcore's own block of the stats region (single writer, no atomics RMW).
//!
//! TX queues: every port gets one TX queue per forwarding lcore when the driver offers that
//! many; otherwise lcores share queues (`lcore % queues`) and serialise on a per-queue
//! spinlock taken once per flush, never per packet.

use crate::config::Config;
use crate::dpdk::{lcore, link, vhost, Mbuf, Mempool, Port, PortConfig};
use crate::drop_reason::DropReason;
use crate::fib::publish::{FibCell, PortMap, PortSlot, Snapshot};
pub use crate::fib::publish::{RxQueue, TxLock};
use crate::fib::{Fib, Vif};
use crate::mirror::dp::{MirrorLcore, MirrorPort, MirrorSetup};
use crate::packet::{ethernet, ipv4, ipv6, EtherType};
use crate::pipeline::flow::{key_v4_tuple, key_v6, needs_special_key, HoldResult, HoldStore, Prepared, V4Tuple};
use crate::pipeline::frag::FragTable;
use crate::pipeline::hit::{self, HitCtx};
use crate::pipeline::{self, FlowStage, PacketBuf, TallySink, Verdict, VrfTally};
use crate::spsc::Producer;
use crate::stats::{LcoreStats, RegionState, StatsRegion};
use anyhow::{bail, Context, Result};
use crossbeam_utils::CachePadded;
use dpdk_sys::{rte_mbuf, rte_mempool};
use flow_table::{Action, FlowKey, FlowTable};
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Packets per RX/TX burst.
pub const BURST: usize = 32;
// The trace candidates of a burst are a 32-bit mask.
const _: () = assert!(BURST <= 32);

impl PacketBuf for Mbuf {
    #[inline(always)]
    fn data(&self) -> &[u8] {
        Mbuf::data(self)
    }
    #[inline(always)]
    fn data_mut(&mut self) -> &mut [u8] {
        Mbuf::data_mut(self)
    }
    #[inline(always)]
    fn prepend(&mut self, n: usize) -> bool {
        Mbuf::prepend(self, n)
    }
    #[inline(always)]
    fn adj(&mut self, n: usize) -> bool {
        Mbuf::adj(self, n)
    }
    #[inline(always)]
    fn trim_to(&mut self, len: usize) -> bool {
        Mbuf::trim_to(self, len)
    }
    #[inline(always)]
    fn append(&mut self, n: usize) -> bool {
        Mbuf::append(self, n)
    }
}

/// One opened port and the vif bound to it.
#[derive(Debug, Clone)]
pub struct PortSetup {
    /// The vif bound to the port.
    pub vif: u16,
    /// The DPDK port.
    pub port: Port,
    /// PMD driver name of the port (reported in the vif record).
    pub driver: String,
    /// RX queues opened (the vif's `rx_queues`, at most what the device supports).
    pub rx_queues: u16,
    /// TX queues opened: one per forwarding lcore, fewer (then shared under a lock) if the device
    /// has fewer.
    pub tx_queues: u16,
}

/// Where one lcore sends packets for one vif.
struct TxTarget {
    vif: u16,
    port: u16,
    queue: u16,
    lock: Option<Arc<TxLock>>,
    /// The lcore's index (picks its stand-in queue when its own is off).
    index: u16,
    /// Every TX queue's lock, for a vhost-user port: when the guest does not read this
    /// lcore's queue ([`link::tx_queues_off`]), the buffer goes to one it reads, under that
    /// queue's lock. Empty for other ports.
    alt: Vec<Arc<TxLock>>,
    n: usize,
    pkts: [*mut rte_mbuf; BURST],
    bytes: [u32; BURST],
}

/// The work given to one forwarding lcore.
#[derive(Debug, Clone)]
pub struct LcorePlan {
    /// Index among forwarding lcores (stats block index).
    pub index: usize,
    /// EAL lcore id (= CPU it is pinned to).
    pub lcore_id: u32,
    /// RX queues the lcore polls, in order.
    pub rx: Vec<RxQueue>,
}

/// Assigns every RX queue to the forwarding lcore with the fewest queues so far (ties go to
/// the lowest index), in vif order then queue order, as tf-vrouter schedules interfaces.
pub fn assign_rx_queues(ports: &[PortSetup], lcore_ids: &[u32]) -> Vec<LcorePlan> {
    let mut plans: Vec<LcorePlan> =
        lcore_ids.iter().enumerate().map(|(index, &lcore_id)| LcorePlan { index, lcore_id, rx: Vec::new() }).collect();
    for p in ports {
        for q in 0..p.rx_queues {
            let least =
                plans.iter_mut().min_by_key(|pl| (pl.rx.len(), pl.index)).expect("at least one forwarding lcore");
            least.rx.push(RxQueue { vif: p.vif, port: p.port.id, queue: q });
        }
    }
    plans
}

pub use crate::agent::request::SetupRequest;

/// The trace of the packet being forwarded (uninhabited when tracing is compiled out, so
/// every `Some` branch disappears).
#[cfg(feature = "trace")]
type TraceCtx = crate::trace::dp::TraceCtx;
#[cfg(not(feature = "trace"))]
#[derive(Clone, Copy)]
enum TraceCtx {}

/// Trace id and packet number for a setup request (0: untraced).
#[inline(always)]
fn trace_ref(tr: &Option<TraceCtx>) -> (u64, u32) {
    #[cfg(feature = "trace")]
    return tr.as_ref().map_or((0, 0), |c| (c.trace_id, c.pkt));
    #[cfg(not(feature = "trace"))]
    return tr.as_ref().map_or((0, 0), |c| match *c {});
}

/// What the data plane needs to trace packets: the region of step rings (one per
/// forwarding lcore, in plan order) and the enabled requests.
pub struct TraceSetup {
    /// The trace region: the step rings the lcores write (one per forwarding lcore, in plan order).
    pub region: crate::trace::TraceRegion,
    /// The trace requests and the enabled flag the lcores check per burst.
    pub published: Arc<crate::trace::Published>,
}

/// Flow processing for the data plane: the shared table, one setup ring per lcore and the
/// hold limits.
pub struct FlowPlane {
    /// The shared flow table.
    pub table: Arc<FlowTable>,
    /// One producer per forwarding lcore, in lcore-plan order; the agent owns the consumers.
    pub setup: Vec<Producer<SetupRequest>>,
    /// One consumer per forwarding lcore: flows the agent has set up (release their held
    /// packets now rather than at the next periodic check).
    pub done: Vec<crate::spsc::Consumer<u32>>,
    /// Flows that may hold packets at once, over all lcores (tf `flow_hold_limit`).
    pub hold_limit: usize,
    /// Packets held per flow (tf holds 3).
    pub per_flow: usize,
    /// Wakes the agent when an lcore pushed setup requests while it sleeps.
    pub wake: Arc<crate::agent::wake::AgentWake>,
}

/// Flow state owned by one lcore.
struct LcoreFlows {
    table: Arc<FlowTable>,
    setup: Producer<SetupRequest>,
    /// Requests the ring had no room for, sent in order before any new one (bounded by the
    /// hold limit: each belongs to a held flow), so no setup request is ever lost.
    pending: std::collections::VecDeque<SetupRequest>,
    done: crate::spsc::Consumer<u32>,
    hold: HoldStore,
    /// TSC of the last full check of every held flow, the shortest check interval
    /// (10 ms) and the interval added per held flow (2 us).
    last_poll: u64,
    poll_ticks: u64,
    poll_ticks_per_flow: u64,
    held_global: Arc<AtomicUsize>,
    hold_limit: usize,
    lcore: u16,
    /// Reused buffer of released packets (no allocation when flows are set up).
    released: Vec<(u32, usize, u16)>,
    /// Fragment classification (see [`crate::pipeline::frag`]).
    frags: FragTable,
    /// Reused buffer of parked fragments to run again or drop.
    frag_out: Vec<(usize, u16)>,
    /// The agent's doorbell, rung after an iteration that pushed setup requests.
    wake: Arc<crate::agent::wake::AgentWake>,
    /// Whether this iteration pushed a setup request.
    pushed: bool,
}

/// Milliseconds since the Unix epoch from the TSC (one `rdtsc` per burst, no syscall).
#[derive(Clone, Copy)]
struct Clock {
    base_ms: u64,
    base_tsc: u64,
    /// Milliseconds per tick in 0.64 fixed point (`2^64 * 1000 / hz`): a multiplication per
    /// iteration instead of a 128-bit division.
    ms_per_tick: u64,
}

impl Clock {
    fn new() -> Clock {
        Clock::at(crate::stats::unix_time_ms(), crate::dpdk::rdtsc(), crate::dpdk::tsc_hz())
    }
    fn at(base_ms: u64, base_tsc: u64, hz: u64) -> Clock {
        // A TSC below 1 kHz does not exist; saturate rather than overflow for one.
        let ms_per_tick = ((1000u128 << 64) / u128::from(hz.max(1001))) as u64;
        Clock { base_ms, base_tsc, ms_per_tick }
    }
    #[inline]
    fn now_ms(&self, tsc: u64) -> u64 {
        let ticks = u128::from(tsc.wrapping_sub(self.base_tsc));
        self.base_ms + ((ticks * u128::from(self.ms_per_tick)) >> 64) as u64
    }
}

/// A running data plane.
pub struct Datapath {
    /// The forwarding state the lcores started with.
    pub fib: Arc<Fib>,
    /// The published forwarding state the lcores follow (live programming).
    pub cell: Arc<FibCell>,
    /// The opened ports, one per vif, in vif order (`Fib::vif_list`).
    pub ports: Vec<PortSetup>,
    /// The work of each forwarding lcore.
    pub plans: Vec<LcorePlan>,
    /// The stats region (vif and lcore counters) other processes read live.
    pub stats: Arc<StatsRegion>,
    stop: Arc<AtomicBool>,
    /// The mbuf pool of every RX queue and of the mirror copies.
    pool: Mempool,
}

/// A data plane to start: its configuration and FIB, with flow processing, mirroring and
/// packet tracing each optional (off unless set). Made by [`Datapath::builder`].
pub struct DatapathBuilder<'a> {
    cfg: &'a Config,
    cell: Arc<FibCell>,
    flows: Option<FlowPlane>,
    mirror: Option<MirrorSetup>,
    trace: Option<TraceSetup>,
}

impl DatapathBuilder<'_> {
    /// Flow processing (`None`: stateless forwarding).
    pub fn flows(mut self, flows: impl Into<Option<FlowPlane>>) -> Self {
        self.flows = flows.into();
        self
    }

    /// Mirroring: copies of mirrored flows and vifs go out of the fabric vifs on each
    /// lcore's own TX queue (see [`crate::mirror::dp`]). `None`: no mirroring.
    pub fn mirror(mut self, mirror: impl Into<Option<MirrorSetup>>) -> Self {
        self.mirror = mirror.into();
        self
    }

    /// Packet tracing: each lcore writes the steps of traced packets to its ring of
    /// `trace.region` (see [`crate::trace`]). `None`: no tracing.
    pub fn trace(mut self, trace: impl Into<Option<TraceSetup>>) -> Self {
        self.trace = trace.into();
        self
    }

    /// Opens and starts every vif's port, creates the stats region with `stats_builder`
    /// (given the opened ports) and launches one forwarding loop per configured core. The
    /// EAL must be initialised with those cores.
    pub fn start(self, stats_builder: impl FnOnce(&[PortSetup]) -> Result<StatsRegion>) -> Result<Datapath> {
        let DatapathBuilder { cfg, cell, flows, mirror, trace } = self;
        let fib = cell.fib();
        let cores = &cfg.eal.forwarding_cores;
        lcore::check_enabled(cores).context("forwarding cores")?;
        let socket = lcore::socket_of(cores[0]);
        let pool = Mempool::create("vr_mbuf_pool", cfg.eal.mbufs, 256, socket)
            .with_context(|| format!("creating the mbuf pool (eal.mbufs = {})", cfg.eal.mbufs))?;

        let n_lcores = cores.len() as u16;
        let ports = open_ports(cfg, &fib, &pool, n_lcores)?;
        let stats = Arc::new(stats_builder(&ports)?);
        let plans = assign_rx_queues(&ports, cores);
        // The ports join the published state before any lcore runs: each starts with it.
        let locks = tx_locks(&ports);
        let mut map = PortMap { by_vif: Vec::new(), lcore_rx: plans.iter().map(|p| p.rx.clone()).collect() };
        for (p, locks) in ports.iter().zip(locks) {
            let i = usize::from(p.vif);
            if map.by_vif.len() <= i {
                map.by_vif.resize(i + 1, None);
            }
            map.by_vif[i] = Some(PortSlot {
                port: p.port.id,
                driver: p.driver.clone(),
                rx_queues: p.rx_queues,
                tx_queues: p.tx_queues,
                tx_locks: locks,
            });
        }
        cell.publish(fib.clone(), Arc::new(map));
        let dp = Datapath { fib, cell, ports, plans, stats, stop: Arc::new(AtomicBool::new(false)), pool };
        // A failure from here on stops what has started (ports, lcores) before it is returned.
        if let Err(e) = dp.launch(cfg, flows, mirror, trace) {
            let _ = dp.shutdown();
            return Err(e);
        }
        Ok(dp)
    }
}

impl Datapath {
    /// Starts the ports, then launches one forwarding loop per lcore plan.
    fn launch(
        &self,
        cfg: &Config,
        flows: Option<FlowPlane>,
        mirror: Option<MirrorSetup>,
        trace: Option<TraceSetup>,
    ) -> Result<()> {
        for p in &self.ports {
            p.port.start().with_context(|| format!("vif {}: starting port {}", p.vif, p.port.id))?;
            link::watch(p.port.id, &p.driver)
                .with_context(|| format!("vif {}: link events of port {}", p.vif, p.port.id))?;
        }
        let flows = match flows {
            Some(f) => Some(FlowHandout::new(f, self.plans.len())?),
            None => None,
        };
        let mut parts = LcoreParts {
            cfg,
            cell: &self.cell,
            n_lcores: self.plans.len() as u16,
            pool: &self.pool,
            stats: &self.stats,
            stop: &self.stop,
            flows,
            mirror,
            trace,
        };
        for plan in &self.plans {
            let ctx = parts.lcore(plan)?;
            lcore::launch(plan.lcore_id, move || ctx.run())
                .with_context(|| format!("launching forwarding lcore {}", plan.lcore_id))?;
        }
        Ok(())
    }
}

impl Datapath {
    /// A data plane for `cfg` and `fib` (stateless, without mirroring or tracing until
    /// the builder adds them); [`DatapathBuilder::start`] starts it.
    pub fn builder(cfg: &Config, cell: Arc<FibCell>) -> DatapathBuilder<'_> {
        DatapathBuilder { cfg, cell, flows: None, mirror: None, trace: None }
    }

    /// Opens and closes the ports of vifs added and deleted while the data plane runs (for
    /// the programmer, [`crate::control::program::PortOps`]).
    pub fn port_ops(&self, cfg: &Config) -> HotPlug {
        HotPlug {
            pool: self.pool,
            n_lcores: self.plans.len() as u16,
            rx_desc: cfg.eal.rx_desc,
            tx_desc: cfg.eal.tx_desc,
            stop: self.stop.clone(),
        }
    }

    /// Reads every port's link from its driver and records it in the vif records of the
    /// stats region (`vif --list` shows it); the main thread calls it periodically. The
    /// lcores' view ([`link::is_down`]) follows the driver's events at once; this refresh
    /// covers drivers without them.
    pub fn sync_links(&self) {
        let snap = self.cell.load();
        for (vif, p) in snap.ports.by_vif.iter().enumerate().filter_map(|(i, p)| Some((i, p.as_ref()?))) {
            let up = link::refresh(p.port);
            self.stats
                .set_vif_link(vif as u16, if up { crate::stats::VIF_LINK_UP } else { crate::stats::VIF_LINK_DOWN });
        }
    }

    /// Stops the forwarding lcores, then stops and closes every port (capture files of pcap
    /// devices are flushed and closed here) and marks the stats region stopped.
    pub fn shutdown(self) -> Result<()> {
        self.stop.store(true, Ordering::Release);
        for plan in &self.plans {
            let ret = lcore::wait(plan.lcore_id);
            if ret != 0 {
                tracing::error!("forwarding lcore {} exited with {}", plan.lcore_id, ret);
            }
        }
        let mut first_err = None;
        // Every port of the current state: those opened at start and those hot-plugged since
        // (a deleted vif's port was closed when it was deleted).
        let snap = self.cell.load();
        for (vif, p) in snap.ports.by_vif.iter().enumerate().filter_map(|(i, p)| Some((i, p.as_ref()?))) {
            let port = Port { id: p.port };
            link::unwatch(port.id);
            if let Err(e) = port.stop().and_then(|_| port.close()) {
                tracing::error!("vif {vif}: {e}");
                first_err.get_or_insert(e);
            }
        }
        self.stats.set_state(RegionState::Stopped);
        match first_err {
            Some(e) => Err(e).context("stopping ports"),
            None => Ok(()),
        }
    }
}

/// Opens and configures the port of every vif of `fib` (RX queues as configured, within
/// what the driver offers; one TX queue per forwarding lcore where the driver has that
/// many). The ports are not started.
fn open_ports(cfg: &Config, fib: &Fib, pool: &Mempool, n_lcores: u16) -> Result<Vec<PortSetup>> {
    let mut ports = Vec::new();
    for vif in fib.vif_list() {
        // A vif whose device the vRouter creates (a vhost-user port, a vif with `devargs`,
        // also one programmed at runtime and restored after a restart) is probed here; the
        // others' devices come from the EAL arguments.
        if let Some(vc) = cfg.vifs.iter().map(|v| v.get_ref()).find(|v| v.id == vif.id) {
            if let Some(args) = vc.probe_args() {
                prepare_vhost_socket(vc).with_context(|| format!("vif {} ({})", vif.id, vif.name))?;
                Port::probe(&args)
                    .with_context(|| format!("vif {} ({}): probing device {args:?}", vif.id, vif.name))?;
            }
        }
        let port = Port::by_name(&vif.device)
            .with_context(|| format!("vif {} ({}): device {:?}", vif.id, vif.name, vif.device))?;
        let info = port.info().with_context(|| format!("vif {}: port info", vif.id))?;
        if info.max_rx_queues == 0 {
            bail!(
                "vif {} ({}): device {} has no RX queue (a pcap vdev needs rx_pcap=...)",
                vif.id,
                vif.name,
                vif.device
            );
        }
        let rx_queues = vif.rx_queues.min(info.max_rx_queues).max(1);
        if rx_queues < vif.rx_queues {
            tracing::warn!(
                "vif {} ({}): driver {} offers {} RX queue(s); using {} instead of {}",
                vif.id,
                vif.name,
                info.driver,
                info.max_rx_queues,
                rx_queues,
                vif.rx_queues
            );
        }
        let tx_queues = n_lcores.min(info.max_tx_queues).max(1);
        let pcfg = PortConfig { rx_queues, tx_queues, rx_desc: cfg.eal.rx_desc, tx_desc: cfg.eal.tx_desc, mtu: None };
        port.configure(&pcfg, &info, pool)
            .with_context(|| format!("vif {} ({}): configuring port {}", vif.id, vif.name, port.id))?;
        ports.push(PortSetup { vif: vif.id, port, driver: info.driver, rx_queues, tx_queues });
    }
    Ok(ports)
}

/// Lcore `index`'s TX queue of a port (shared with other lcores, behind its lock, when the
/// port has fewer TX queues than there are lcores).
fn tx_queue(p: &PortSlot, index: usize, n_lcores: u16) -> (u16, Option<Arc<TxLock>>) {
    let queue = (index as u16) % p.tx_queues.max(1);
    // A vhost-user port's queues are locked whenever several lcores send to it: one whose
    // queue the guest leaves off sends on another lcore's (see `flush`).
    let shared = p.tx_queues < n_lcores || (n_lcores > 1 && p.driver == link::VHOST_DRIVER);
    (queue, shared.then(|| p.tx_locks.get(usize::from(queue)).cloned()).flatten())
}

/// Lcore `index`'s TX buffers, indexed by vif id.
fn tx_targets(ports: &PortMap, index: usize, n_lcores: u16) -> Vec<Option<TxTarget>> {
    (ports.by_vif.iter().enumerate())
        .map(|(vif, p)| {
            let p = p.as_ref()?;
            let (queue, lock) = tx_queue(p, index, n_lcores);
            let vhost = p.driver == link::VHOST_DRIVER;
            Some(TxTarget {
                vif: vif as u16,
                port: p.port,
                queue,
                lock,
                index: index as u16,
                alt: if vhost { p.tx_locks.clone() } else { Vec::new() },
                n: 0,
                pkts: [std::ptr::null_mut(); BURST],
                bytes: [0; BURST],
            })
        })
        .collect()
}

/// Ports of vifs added and deleted while the data plane runs ([`Datapath::port_ops`]).
pub struct HotPlug {
    pool: Mempool,
    n_lcores: u16,
    rx_desc: u16,
    tx_desc: u16,
    stop: Arc<AtomicBool>,
}

impl crate::control::program::PortOps for HotPlug {
    fn open(&mut self, vif: &crate::config::VifConfig) -> std::result::Result<PortSlot, String> {
        if self.stop.load(Ordering::Acquire) {
            return Err("the data plane is stopping".into());
        }
        if let Some(args) = vif.probe_args() {
            prepare_vhost_socket(vif).map_err(|e| format!("{e:#}"))?;
            Port::probe(&args).map_err(|e| format!("probing {args:?}: {e}"))?;
        }
        let undo = |vif: &crate::config::VifConfig| {
            if vif.probe_args().is_some() {
                let _ = Port::remove_vdev(&vif.device);
            }
        };
        let open = || -> Result<PortSlot> {
            let port = Port::by_name(&vif.device)?;
            let info = port.info()?;
            if info.max_rx_queues == 0 {
                bail!("device {} has no RX queue", vif.device);
            }
            let rx_queues = vif.rx_queues.min(info.max_rx_queues).max(1);
            let tx_queues = self.n_lcores.min(info.max_tx_queues).max(1);
            let pcfg = PortConfig { rx_queues, tx_queues, rx_desc: self.rx_desc, tx_desc: self.tx_desc, mtu: None };
            port.configure(&pcfg, &info, &self.pool)?;
            port.start()?;
            link::watch(port.id, &info.driver)?;
            let tx_locks = (0..tx_queues).map(|_| Arc::new(CachePadded::new(AtomicBool::new(false)))).collect();
            Ok(PortSlot { port: port.id, driver: info.driver, rx_queues, tx_queues, tx_locks })
        };
        open().map_err(|e| {
            undo(vif);
            format!("{e:#}")
        })
    }

    fn close(&mut self, vif: &crate::config::VifConfig, slot: &PortSlot) -> std::result::Result<u64, String> {
        // No lcore polls the port any more (the publisher waited for every lcore to take a
        // state without it): what is left in its RX queues is freed here.
        let mut drained = 0u64;
        let mut pkts: [*mut rte_mbuf; BURST] = [std::ptr::null_mut(); BURST];
        for q in 0..slot.rx_queues {
            for _ in 0..1024 {
                // SAFETY: the port is started and no other thread polls the queue.
                let n = unsafe { dpdk_sys::rte_eth_rx_burst(slot.port, q, pkts.as_mut_ptr(), BURST as u16) };
                if n == 0 {
                    break;
                }
                drained += u64::from(n);
                // SAFETY: the n mbufs are ours.
                unsafe { dpdk_sys::rte_pktmbuf_free_bulk(pkts.as_mut_ptr(), u32::from(n)) };
            }
        }
        let port = Port { id: slot.port };
        link::unwatch(port.id);
        port.stop().and_then(|_| port.close()).map_err(|e| e.to_string())?;
        if vif.probe_args().is_some() {
            Port::remove_vdev(&vif.device).map_err(|e| e.to_string())?;
        }
        Ok(drained)
    }
}

/// A vhost-user vif in server mode creates its socket: a stale one left by a previous run
/// (nobody accepts on it) is removed first, a live one (another process serves it) is an
/// error. Nothing to do for other vifs.
fn prepare_vhost_socket(vif: &crate::config::VifConfig) -> Result<()> {
    let Some(v) = vif.vhost.as_ref().filter(|v| v.mode == crate::config::VhostMode::Server) else {
        return Ok(());
    };
    let path = std::path::Path::new(&v.socket);
    if let Some(dir) = path.parent() {
        if !dir.is_dir() {
            bail!("vhost.socket: directory {} does not exist", dir.display());
        }
    }
    crate::dpdk::socket::clear_stale(path).context("vhost.socket")?;
    Ok(())
}

/// One lock per (port, TX queue), used where lcores outnumber TX queues and on vhost-user
/// ports sent to by several lcores.
fn tx_locks(ports: &[PortSetup]) -> Vec<Vec<Arc<TxLock>>> {
    ports
        .iter()
        .map(|p| (0..p.tx_queues).map(|_| Arc::new(CachePadded::new(AtomicBool::new(false)))).collect())
        .collect()
}

/// The flow plane being handed out to the lcores: each takes its own setup and done rings.
struct FlowHandout {
    table: Arc<FlowTable>,
    setup: Vec<Option<Producer<SetupRequest>>>,
    done: Vec<Option<crate::spsc::Consumer<u32>>>,
    hold_limit: usize,
    per_flow: usize,
    /// Flows holding packets, over all lcores.
    held_global: Arc<AtomicUsize>,
    wake: Arc<crate::agent::wake::AgentWake>,
}

impl FlowHandout {
    /// Checks that `plane` has one ring pair per forwarding lcore (`n_lcores`).
    fn new(plane: FlowPlane, n_lcores: usize) -> Result<FlowHandout> {
        if plane.setup.len() != n_lcores || plane.done.len() != n_lcores {
            bail!("{} setup rings for {} forwarding lcores", plane.setup.len(), n_lcores);
        }
        Ok(FlowHandout {
            table: plane.table,
            setup: plane.setup.into_iter().map(Some).collect(),
            done: plane.done.into_iter().map(Some).collect(),
            hold_limit: plane.hold_limit,
            per_flow: plane.per_flow,
            held_global: Arc::new(AtomicUsize::new(0)),
            wake: plane.wake,
        })
    }

    /// The flow state of the lcore with plan index `index` (once per index).
    fn lcore(&mut self, index: usize) -> LcoreFlows {
        let (hold_limit, per_flow) = (self.hold_limit, self.per_flow);
        LcoreFlows {
            table: self.table.clone(),
            setup: self.setup[index].take().expect("one ring per lcore"),
            done: self.done[index].take().expect("one ring per lcore"),
            pending: std::collections::VecDeque::with_capacity(hold_limit),
            hold: HoldStore::new(per_flow, hold_limit),
            last_poll: 0,
            poll_ticks: crate::dpdk::tsc_hz() / 100,
            poll_ticks_per_flow: crate::dpdk::tsc_hz() / 500_000,
            held_global: self.held_global.clone(),
            hold_limit,
            lcore: index as u16,
            released: Vec::with_capacity(hold_limit.max(1) * per_flow.max(1)),
            frags: FragTable::default(),
            frag_out: Vec::with_capacity(pipeline::frag::FRAG_QUEUE),
            wake: self.wake.clone(),
            pushed: false,
        }
    }
}

/// What the forwarding lcores are made from, once the ports run and the stats region
/// exists; [`LcoreParts::lcore`] makes the state of each in turn.
struct LcoreParts<'a> {
    cfg: &'a Config,
    cell: &'a Arc<FibCell>,
    n_lcores: u16,
    pool: &'a Mempool,
    stats: &'a StatsRegion,
    stop: &'a Arc<AtomicBool>,
    flows: Option<FlowHandout>,
    mirror: Option<MirrorSetup>,
    trace: Option<TraceSetup>,
}

impl LcoreParts<'_> {
    /// The state of the lcore that runs `plan`.
    fn lcore(&mut self, plan: &LcorePlan) -> Result<LcoreLoop> {
        let flow = self.flows.as_mut().map(|f| f.lcore(plan.index));
        let snap = self.cell.load();
        let tx = tx_targets(&snap.ports, plan.index, self.n_lcores);
        let mirror = match &self.mirror {
            Some(setup) => Some(self.mirror_lcore(setup, plan)?),
            None => None,
        };
        #[cfg(feature = "trace")]
        let trace = match &self.trace {
            Some(t) => Some(crate::trace::dp::TraceLcore::new(
                t.published.clone(),
                t.region.writer(plan.index).context("trace region has fewer rings than lcores")?,
                crate::dpdk::tsc_hz(),
            )),
            None => None,
        };
        #[cfg(not(feature = "trace"))]
        let _ = &self.trace;
        let rx = snap.ports.lcore_rx.get(plan.index).cloned().unwrap_or_default();
        let stats = self.stats.lcore(plan.index).context("stats region has fewer lcore blocks than lcores")?;
        // Before the lcore starts (its handle moves to it with the loop): its RX queue slots.
        stats.set_rx_queues(&rx_queue_ids(&rx));
        Ok(LcoreLoop {
            #[cfg(feature = "trace")]
            trace,
            mirror,
            pool: self.pool.as_ptr(),
            cell: self.cell.clone(),
            rx,
            snap,
            n_lcores: self.n_lcores,
            tx,
            stats,
            stop: self.stop.clone(),
            flow,
            index: plan.index,
            icmp_errors: pipeline::icmp_error::TokenBucket::new(
                self.cfg.vrouter.icmp_error_rate,
                self.cfg.vrouter.icmp_error_burst,
                crate::dpdk::tsc_hz(),
            ),
            vrf_tally: VrfTally::default(),
        })
    }

    /// The lcore's mirroring state: copies leave on its TX queues of the fabric vifs.
    fn mirror_lcore(&self, setup: &MirrorSetup, plan: &LcorePlan) -> Result<MirrorLcore> {
        let snap = self.cell.load();
        let mports = (snap.ports.by_vif.iter().enumerate())
            .filter_map(|(vif, p)| Some((vif as u16, p.as_ref()?)))
            .filter(|(vif, _)| snap.fib.vif(*vif).is_some_and(|v| v.kind == crate::config::VifType::Fabric))
            .map(|(vif, p)| {
                let (queue, lock) = tx_queue(p, plan.index, self.n_lcores);
                MirrorPort { vif, port: p.port, queue, lock }
            })
            .collect();
        let table = self.flows.as_ref().map(|f| f.table.clone());
        MirrorLcore::new(setup, plan.index, snap.fib.clone(), self.pool.as_ptr(), table, mports)
            .context("mirror region has fewer lcore blocks than lcores")
    }
}

/// One iteration of an lcore's poll loop: the FIB and the time read once at its start.
#[derive(Clone, Copy)]
struct Tick<'a> {
    fib: &'a Fib,
    /// Milliseconds since the Unix epoch (flow timestamps, fragment expiry).
    now: u64,
    /// TSC (setup latency, ICMP error rate limit).
    tsc: u64,
}

impl<'a> Tick<'a> {
    /// The context of packets entering on `vif` during this iteration.
    #[inline(always)]
    fn on(self, vif: &'a Vif) -> Ingress<'a> {
        Ingress { fib: self.fib, vif, now: self.now, tsc: self.tsc }
    }
}

/// Where and when the packets being forwarded came in: the per-packet context of a
/// received burst (or of a held packet or parked fragment run again). Passed by value into
/// the always-inlined per-packet functions, it costs what their separate arguments did.
#[derive(Clone, Copy)]
struct Ingress<'a> {
    fib: &'a Fib,
    vif: &'a Vif,
    /// See [`Tick::now`].
    now: u64,
    /// See [`Tick::tsc`] (0 for held packets run again).
    tsc: u64,
}

/// One received burst: the iteration it belongs to, the RX queue it came from and its
/// packets (the traced instance of [`LcoreLoop::burst`] works out its trace candidates).
#[derive(Clone, Copy)]
struct Burst<'a> {
    tick: Tick<'a>,
    vif: &'a Vif,
    queue: u16,
    pkts: &'a [*mut rte_mbuf],
}

/// The (vif, queue) of each RX queue of a poll list, for the per-queue counters.
fn rx_queue_ids(rx: &[RxQueue]) -> Vec<(u16, u16)> {
    rx.iter().map(|q| (q.vif, q.queue)).collect()
}

/// State owned by one forwarding lcore.
struct LcoreLoop {
    /// The published state, checked once per iteration.
    cell: Arc<FibCell>,
    /// The state this lcore forwards with (generation acknowledged in `cell`).
    snap: Arc<Snapshot>,
    n_lcores: u16,
    rx: Vec<RxQueue>,
    /// Indexed by vif id.
    tx: Vec<Option<TxTarget>>,
    stats: LcoreStats,
    stop: Arc<AtomicBool>,
    flow: Option<LcoreFlows>,
    index: usize,
    /// Mirroring (None when the vRouter runs without a mirror region).
    mirror: Option<MirrorLcore>,
    /// The pool of every port's RX queues (vhost-user RX bursts allocate from it).
    pool: *mut rte_mempool,
    /// Packet tracing (None when the vRouter runs without a trace region).
    #[cfg(feature = "trace")]
    trace: Option<crate::trace::dp::TraceLcore>,
    /// Rate limit of this lcore's ICMP error answers (`[vrouter] icmp_error_rate`).
    icmp_errors: pipeline::icmp_error::TokenBucket,
    /// VRF counts of the current burst, written to `stats` by `flush_all`.
    vrf_tally: VrfTally,
}

// SAFETY: the raw mbuf pointers in the TX buffers, the mirror buffers and the hold store are
// only ever touched by the lcore that runs the loop; the struct is moved to that lcore once,
// before it starts, with empty buffers. The mempool pointers (RX pool, mirror path) refer to
// pools made for concurrent use from every lcore.
unsafe impl Send for LcoreLoop {}

impl LcoreLoop {
    fn run(mut self) -> i32 {
        self.cell.ack(self.index, self.snap.generation);
        let mut fib = self.snap.fib.clone();
        let clock = Clock::new();
        let mut pkts: [*mut rte_mbuf; BURST] = [std::ptr::null_mut(); BURST];
        while !self.stop.load(Ordering::Relaxed) {
            // Bursts of the previous iteration are over: a vhost-user device retired since
            // may go (one store per iteration).
            vhost::lcore_quiescent(self.index);
            // Live programming: one load per iteration; a new state is taken between bursts.
            if self.cell.generation() != self.snap.generation {
                self.adopt();
                fib = self.snap.fib.clone();
            }
            let tsc = crate::dpdk::rdtsc();
            // Busy/idle cycles of the previous iteration and its last burst's, from this one
            // TSC read.
            self.stats.iteration(tsc);
            let tick = Tick { fib: &fib, now: clock.now_ms(tsc), tsc };
            if let Some(f) = &mut self.flow {
                while let Some(req) = f.pending.pop_front() {
                    if let Err(req) = f.setup.push(req) {
                        f.pending.push_front(req);
                        break;
                    }
                    f.pushed = true;
                }
                f.table.quiescent(self.index);
                let (frags, held) = (!f.frags.is_empty(), !f.hold.is_empty());
                if frags {
                    self.expire_fragments(tick.now);
                }
                if held {
                    self.release_held(tick);
                }
            }
            let mut received = false;
            for qi in 0..self.rx.len() {
                let q = self.rx[qi];
                // SAFETY: port/queue were configured and started with `pool`, this lcore
                // polls the queue alone and began this iteration with `lcore_quiescent`.
                let n = unsafe { vhost::rx_burst(q.port, q.queue, self.pool, &mut pkts) };
                if n == 0 {
                    continue;
                }
                received = true;
                let Some(vif) = fib.vif(q.vif) else { continue };
                // Performance counters: a burst is timed from one TSC read to the next; a
                // second burst in the iteration reads it here, the last one's ends at the next
                // iteration's read. Never per packet.
                self.stats.before_burst(crate::dpdk::rdtsc);
                let burst = Burst { tick, vif, queue: q.queue, pkts: &pkts[..n] };
                // Tracing: one load and one predictable branch per burst while no request
                // is enabled, and then the same code as a build with tracing compiled out.
                // While a request may match packets entering this vif, the traced instance
                // computes which may (with the flow keys, see `trace_prepass`).
                #[cfg(feature = "trace")]
                let traced = self.trace.as_mut().is_some_and(|t| t.enabled() && t.begin_burst(vif.id));
                #[cfg(not(feature = "trace"))]
                let traced = false;
                if traced {
                    self.burst::<true>(burst);
                } else {
                    self.burst::<false>(burst);
                }
                self.stats.after_burst(qi, n);
            }
            if let Some(f) = &mut self.flow {
                // The agent may sleep: wake it for the requests of this iteration (a fence
                // and a load, only in iterations that pushed one).
                if f.pushed {
                    f.pushed = false;
                    f.wake.notify();
                }
            }
            self.stats.poll(received);
        }
        self.flush_all();
        self.drop_all_held();
        vhost::lcore_offline(self.index);
        0
    }

    /// Takes the published state: flushes what is buffered for the old ports, then takes the
    /// new RX queues, TX targets and FIB, and acknowledges the generation (after which the
    /// publisher may close ports this lcore no longer uses).
    #[cold]
    #[inline(never)]
    fn adopt(&mut self) {
        self.flush_all();
        let snap = self.cell.load();
        self.rx = snap.ports.lcore_rx.get(self.index).cloned().unwrap_or_default();
        self.stats.set_rx_queues(&rx_queue_ids(&self.rx));
        self.tx = tx_targets(&snap.ports, self.index, self.n_lcores);
        if let Some(m) = &mut self.mirror {
            m.set_fib(snap.fib.clone());
        }
        let generation = snap.generation;
        self.snap = snap;
        self.cell.ack(self.index, generation);
    }

    /// Drops the parked fragments whose first fragment did not come in time
    /// (`No Fragment Entries`) and forgets expired datagrams.
    #[cold]
    fn expire_fragments(&mut self, now: u64) {
        let Some(f) = &mut self.flow else { return };
        let mut out = std::mem::take(&mut f.frag_out);
        f.frags.expire(now, |p, v| out.push((p, v)));
        for &(p, v) in &out {
            self.drop_pkt(v, DropReason::NoFragEntry, p as *mut rte_mbuf);
        }
        out.clear();
        if let Some(f) = &mut self.flow {
            f.frag_out = out;
        }
    }

    /// Runs again the parked fragments whose first fragment has just been seen (arrival
    /// order, after it). They were not counted on a flow when parked.
    #[cold]
    #[inline(never)]
    fn run_ready_fragments(&mut self, tick: Tick<'_>) {
        let Some(f) = &mut self.flow else { return };
        let mut out = std::mem::take(&mut f.frag_out);
        f.frags.take_ready(|p, v| out.push((p, v)));
        for &(p, v) in &out {
            let raw = p as *mut rte_mbuf;
            match tick.fib.vif(v) {
                Some(vif) => self.forward::<false>(tick.on(vif), raw, None, None, None),
                None => self.drop_pkt(v, DropReason::InvalidIf, raw),
            }
        }
        out.clear();
        if let Some(f) = &mut self.flow {
            f.frag_out = out;
        }
    }

    /// Which packets of a burst entering `vif` an enabled trace request may match (bit `i`:
    /// packet `i`), and the burst's pre-pass (`pre`, as the untraced burst prepares it).
    /// Where the pre-pass computes flow keys (a VM vif with flows), IPv4 packets are tested
    /// on the keys it stored when the one request in scope has a key form
    /// ([`BurstKeys::prepare_traced`], [`crate::trace::request::QuickKey`]): once per distinct
    /// key, no second read of each frame; other packets by their frame
    /// ([`crate::trace::dp::BurstFilter::may_match`]). Under several requests or a MAC
    /// condition, and where there are no keys, a header test per frame
    /// ([`Self::trace_scan`]). Only called while a request may match packets entering `vif`
    /// ([`crate::trace::dp::TraceLcore::begin_burst`] returned true), from the traced
    /// instance of [`Self::burst`], into which it is inlined as the untraced pre-pass is into
    /// the untraced one.
    #[cfg(feature = "trace")]
    #[inline(always)]
    fn trace_prepass(&self, vif: &Vif, pkts: &[*mut rte_mbuf], pre: &mut BurstKeys) -> u32 {
        let Some(t) = self.trace.as_ref() else { return 0 };
        let filter = t.burst_filter(vif);
        let Some(f) = self.flow.as_ref().filter(|_| vif.kind == crate::config::VifType::Virtual) else {
            return self.trace_scan(vif, pkts);
        };
        let other = |frame: &[u8]| filter.may_match(frame);
        match filter.key_form() {
            // The usual condition (a protocol and ports) compares two key words, not four.
            Some(q) if q.ports_only() => {
                pre.prepare_traced(&f.table, vif.vrf, pkts, |k| q.accepts_ports(k.as_words()), other)
            }
            Some(q) => pre.prepare_traced(&f.table, vif.vrf, pkts, |k| q.accepts(k.as_words()), other),
            // Several requests, or a MAC condition: every frame is tested.
            None => {
                pre.prepare(&f.table, vif.vrf, pkts);
                self.trace_scan(vif, pkts)
            }
        }
    }

    /// [`Self::trace_prepass`] for a burst without flow keys (fabric, or no flow table): a
    /// header test per frame ([`crate::trace::dp::BurstFilter::scan`]). Out of line.
    #[cfg(feature = "trace")]
    #[inline(never)]
    fn trace_scan(&self, vif: &Vif, pkts: &[*mut rte_mbuf]) -> u32 {
        let Some(t) = self.trace.as_ref() else { return 0 };
        let frames = pkts.iter().map(|&raw| {
            // SAFETY: rx_burst handed us these mbufs; only read here.
            let m = unsafe { Mbuf::from_raw(raw) };
            let d = m.data();
            // SAFETY: the frame stays valid and unchanged while the candidates are computed:
            // the mbuf is owned by this lcore and neither freed nor written before the burst
            // is forwarded (after this returns).
            unsafe { std::slice::from_raw_parts(d.as_ptr(), d.len()) }
        });
        t.burst_filter(vif).scan(frames)
    }

    /// One received burst. `TRACED`: a trace request may match packets entering this vif
    /// (which ones is worked out with the pre-pass, and those are matched first); `false` is
    /// the only instance when tracing is compiled out, and the one that runs while no
    /// enabled request may match the burst.
    /// Out of line in every build, so the forwarding code is laid out the same way with
    /// and without tracing compiled in.
    #[inline(never)]
    fn burst<const TRACED: bool>(&mut self, b: Burst<'_>) {
        let (vif, pkts) = (b.vif, b.pkts);
        let at = b.tick.on(vif);
        let mut rx_bytes = 0u64;
        // Pre-pass: key and hash of every packet with its bucket prefetched, then one burst
        // lookup, so the table's cache misses of the whole burst overlap (see BurstKeys).
        let mut pre = BurstKeys::new();
        #[allow(unused_mut)]
        let mut candidates = 0u32;
        if TRACED {
            #[cfg(feature = "trace")]
            {
                candidates = self.trace_prepass(vif, pkts, &mut pre);
            }
        } else if let Some(f) = &self.flow {
            if vif.kind == crate::config::VifType::Virtual {
                pre.prepare(&f.table, vif.vrf, pkts);
            }
        }
        // Interface RX mirroring: the frames as received, before any processing (one
        // branch per burst when the vif is not mirrored).
        if let Some(mi) = &mut self.mirror {
            let slot = mi.rx_index(vif.id);
            if slot != flow_table::NO_MIRROR {
                for &raw in pkts {
                    // SAFETY: rx_burst handed us these mbufs; only read here.
                    let m = unsafe { Mbuf::from_raw(raw) };
                    if m.is_contiguous() {
                        mi.copy_interface(&self.stats, vif.id, true, slot, m.data());
                    } else {
                        mi.interface_copy_failed(&self.stats, vif.id, slot, DropReason::MirrorEncapFail);
                    }
                }
            }
        }
        #[cfg(not(feature = "trace"))]
        let _ = b.queue;
        if TRACED && candidates != 0 {
            #[cfg(feature = "trace")]
            {
                rx_bytes = self.forward_traced(b, &pre, candidates);
            }
        } else {
            // The flow-hit path's burst context: a VM vif with flows, its VRF known.
            let vrf = if pre.n > 0 { at.fib.vrf(vif.vrf) } else { None };
            for (i, &raw) in pkts.iter().enumerate() {
                // SAFETY: rx_burst handed us ownership of these mbufs.
                let mut m = unsafe { Mbuf::from_raw(raw) };
                rx_bytes += u64::from(m.pkt_len());
                if let (Some(vrf), Some(f), Some((idx, hash))) = (vrf, &self.flow, pre.hit(i)) {
                    if m.is_contiguous() {
                        let cx = HitCtx { fib: at.fib, vif, vrf, table: &f.table, lcore: self.index, now: at.now };
                        let mut vc = TallySink { tally: &mut self.vrf_tally, stats: &self.stats };
                        if let Some(v) = hit::forward_v4(&cx, &mut m, idx, hash, |i| f.hold.contains(i), &mut vc) {
                            self.carry_out::<false>(at, raw, m, v, None);
                            continue;
                        }
                    }
                }
                self.forward::<false>(at, raw, pre.get(i), None, None);
            }
        }
        self.stats.rx(vif.id, pkts.len() as u64, rx_bytes);
        if self.flow.as_ref().is_some_and(|f| f.frags.has_ready()) {
            self.run_ready_fragments(b.tick);
        }
        self.flush_all();
    }

    /// The packet loop of a burst where trace requests may match some packets (bit `i` of
    /// `candidates`: packet `i`): those are matched first (kept out of line so the untraced
    /// loop stays compact). Returns the received bytes.
    #[cfg(feature = "trace")]
    #[inline(never)]
    fn forward_traced(&mut self, b: Burst<'_>, pre: &BurstKeys, candidates: u32) -> u64 {
        let at = b.tick.on(b.vif);
        let mut rx_bytes = 0;
        for (i, &raw) in b.pkts.iter().enumerate() {
            // SAFETY: rx_burst handed us ownership of these mbufs.
            let m = unsafe { Mbuf::from_raw(raw) };
            rx_bytes += u64::from(m.pkt_len());
            let ctx = match self.trace.as_mut() {
                Some(t) if candidates & (1 << i) != 0 => {
                    t.classify(at.fib, at.vif, b.queue, m.data(), crate::dpdk::rdtsc)
                }
                _ => None,
            };
            self.forward::<true>(at, raw, pre.get(i), None, ctx);
        }
        rx_bytes
    }

    /// Runs one packet through the pipeline and carries out the verdict.
    /// `held`: the packet was held for this flow and is being re-run after its setup
    /// (already counted; the index is a hint, checked against the packet's key).
    /// Inlined into the burst loop: the call, its argument block and the flow stage's
    /// set-up cost ~50 instructions per packet out of line (callgrind).
    /// `TRACED`: `tr` may hold the packet's trace. The untraced instance has no trace code
    /// at all (a runtime `None` would not do: the trace's address reaches the mirror hook,
    /// so the compiler keeps testing it after every call).
    #[inline(always)]
    fn forward<const TRACED: bool>(
        &mut self,
        at: Ingress<'_>,
        raw: *mut rte_mbuf,
        pre: Option<Prepared<'_>>,
        held: Option<u32>,
        #[allow(unused_mut)] mut tr: Option<TraceCtx>,
    ) {
        let (fib, vif) = (at.fib, at.vif);
        // SAFETY: the caller owns `raw` (from rx_burst or from the hold store).
        let mut m = unsafe { Mbuf::from_raw(raw) };
        // What the pipeline decides for a traced packet (route, ECMP member, flow), recorded
        // where it decides; the untraced instance records nothing (`process`).
        #[allow(unused_mut)]
        let mut decision = pipeline::Decision::default();
        let verdict = if !m.is_contiguous() {
            // Headers must be in the first segment; chained mbufs only come from jumbo
            // frames, which this vRouter does not accept.
            Verdict::Drop(DropReason::InvalidPacket)
        } else if let Some(f) = &mut self.flow {
            let mut sink = self
                .mirror
                .as_mut()
                .map(|mi| mi.flow_sink(&self.stats, vif.id, vif.kind == crate::config::VifType::Virtual));
            // A traced packet's copies are recorded in its trace.
            #[cfg(feature = "trace")]
            let mut tm;
            #[cfg(feature = "trace")]
            let mirror: Option<&mut dyn pipeline::FlowMirror> =
                match (if TRACED { tr.as_mut() } else { None }, sink.as_mut()) {
                    (Some(ctx), Some(s)) => {
                        tm = crate::trace::dp::TracingMirror { inner: s, ctx, tsc: crate::dpdk::rdtsc() };
                        Some(&mut tm)
                    }
                    (_, s) => s.map(|s| s as &mut dyn pipeline::FlowMirror),
                };
            #[cfg(not(feature = "trace"))]
            let mirror = sink.as_mut().map(|s| s as &mut dyn pipeline::FlowMirror);
            let mut stage = FlowStage {
                table: &f.table,
                lcore: self.index,
                now: at.now,
                reinject: held.is_some(),
                held_flow: held,
                may_create: f.held_global.load(Ordering::Relaxed) < f.hold_limit,
                pre,
                held: &f.hold,
                mirror,
                frags: &mut f.frags,
            };
            let mut vc = TallySink { tally: &mut self.vrf_tally, stats: &self.stats };
            if TRACED {
                pipeline::process_with(fib, vif, &mut m, Some(&mut stage), &mut pipeline::Both(&mut vc, &mut decision))
            } else {
                pipeline::process_with(fib, vif, &mut m, Some(&mut stage), &mut vc)
            }
        } else if TRACED {
            let mut vc = TallySink { tally: &mut self.vrf_tally, stats: &self.stats };
            pipeline::process_with(fib, vif, &mut m, None, &mut pipeline::Both(&mut vc, &mut decision))
        } else {
            let mut vc = TallySink { tally: &mut self.vrf_tally, stats: &self.stats };
            pipeline::process_with(fib, vif, &mut m, None, &mut vc)
        };
        #[cfg(feature = "trace")]
        if TRACED {
            if let (Some(ctx), Some(t)) = (tr.as_mut(), self.trace.as_mut()) {
                t.finish(fib, ctx, &decision, verdict, &mut m, crate::dpdk::rdtsc());
            }
        }
        self.carry_out::<TRACED>(at, raw, m, verdict, tr);
    }

    /// Carries out a packet's verdict: queues it for transmission (interface TX mirroring
    /// first), drops and counts it, or holds it for its flow's setup.
    #[inline(always)]
    fn carry_out<const TRACED: bool>(
        &mut self,
        at: Ingress<'_>,
        raw: *mut rte_mbuf,
        m: Mbuf,
        verdict: Verdict,
        tr: Option<TraceCtx>,
    ) {
        let vif = at.vif;
        match verdict {
            Verdict::Tx(out) => {
                // Interface TX mirroring: the frame as it leaves (after rewrite).
                if let Some(mi) = &mut self.mirror {
                    let slot = mi.tx_index(out);
                    if slot != flow_table::NO_MIRROR {
                        mi.copy_interface(&self.stats, out, false, slot, m.data());
                    }
                }
                let len = m.pkt_len();
                match self.tx.get_mut(usize::from(out)).and_then(Option::as_mut) {
                    Some(t) => {
                        // `n` in a local: read once, not again after each store.
                        let n = t.n;
                        t.pkts[n] = raw;
                        t.bytes[n] = len;
                        t.n = n + 1;
                        if n + 1 == BURST {
                            flush(t, &self.stats);
                        }
                    }
                    None => {
                        #[cfg(feature = "trace")]
                        if TRACED {
                            if let (Some(ctx), Some(t)) = (tr.as_ref(), self.trace.as_mut()) {
                                t.dropped(ctx, DropReason::InvalidIf, crate::dpdk::rdtsc());
                            }
                        }
                        self.drop_pkt(vif.id, DropReason::InvalidIf, raw)
                    }
                }
            }
            Verdict::Drop(reason) => self.drop_pkt(vif.id, reason, raw),
            Verdict::Hold { flow, new } => self.hold(vif.id, flow, new, raw, at.tsc, if TRACED { tr } else { None }),
            Verdict::FragWait => self.park_fragment(vif.id, raw),
            Verdict::Reply { vif: out, drop } => self.reply(vif.id, out, drop, raw, m, at.tsc),
        }
    }

    /// Parks a fragment until its first fragment comes ([`Verdict::FragWait`]).
    #[cold]
    fn park_fragment(&mut self, vif: u16, raw: *mut rte_mbuf) {
        let parked = match &mut self.flow {
            Some(f) => f.frags.park(raw as usize, vif),
            None => Err(DropReason::NoFragEntry),
        };
        if let Err(reason) = parked {
            self.drop_pkt(vif, reason, raw);
        }
    }

    /// A dropped packet whose buffer holds an answer to its sender (ICMP Time Exceeded):
    /// the drop is counted on the ingress vif; the answer goes out on `out` when the rate
    /// limit allows (counted as sent, then as TX, or TX error + `IF TX Discard`, like any
    /// packet), else it is freed and counted as suppressed.
    #[cold]
    #[inline(never)]
    fn reply(&mut self, in_vif: u16, out: u16, drop: DropReason, raw: *mut rte_mbuf, m: Mbuf, tsc: u64) {
        self.stats.drop(Some(in_vif), drop, 1);
        if !self.icmp_errors.allow(tsc) {
            self.stats.icmp_error(false);
            // SAFETY: the mbuf is owned by this lcore and referenced nowhere else.
            unsafe { dpdk_sys::rte_pktmbuf_free(raw) };
            return;
        }
        // Counted before the TX counters move, so a reader never sees the answer in TX
        // without it here (the test harness subtracts answers from TX to match RX).
        self.stats.icmp_error(true);
        if let Some(mi) = &mut self.mirror {
            let slot = mi.tx_index(out);
            if slot != flow_table::NO_MIRROR {
                mi.copy_interface(&self.stats, out, false, slot, m.data());
            }
        }
        let len = m.pkt_len();
        match self.tx.get_mut(usize::from(out)).and_then(Option::as_mut) {
            Some(t) => {
                let n = t.n;
                t.pkts[n] = raw;
                t.bytes[n] = len;
                t.n = n + 1;
                if n + 1 == BURST {
                    flush(t, &self.stats);
                }
            }
            None => self.drop_pkt(out, DropReason::InvalidIf, raw),
        }
    }

    #[inline]
    fn drop_pkt(&self, vif: u16, reason: DropReason, raw: *mut rte_mbuf) {
        self.stats.drop(Some(vif), reason, 1);
        // SAFETY: the mbuf is owned by this lcore and referenced nowhere else.
        unsafe { dpdk_sys::rte_pktmbuf_free(raw) };
    }

    fn hold(&mut self, vif: u16, flow: u32, new: bool, raw: *mut rte_mbuf, tsc: u64, tr: Option<TraceCtx>) {
        let Some(f) = &mut self.flow else {
            return self.drop_pkt(vif, DropReason::FlowUnusable, raw);
        };
        let (trace, trace_pkt) = trace_ref(&tr);
        let res = f.hold.hold(flow, raw as usize, vif);
        #[cfg(feature = "trace")]
        if let (Some(ctx), Some(t)) = (tr, self.trace.as_mut()) {
            match res {
                HoldResult::Held { .. } => t.held(raw as usize, ctx, crate::dpdk::rdtsc()),
                HoldResult::QueueFull => t.dropped(&ctx, DropReason::FlowQueueLimitExceeded, crate::dpdk::rdtsc()),
            }
        }
        let Some(f) = &mut self.flow else { return };
        match res {
            HoldResult::Held { first } => {
                if first {
                    f.held_global.fetch_add(1, Ordering::Relaxed);
                }
                // Every lcore that starts holding a flow asks for its setup, not only the
                // one that created the HOLD entry: the agent answers a request for a flow
                // it has already set up with a notification on this lcore's `done` ring, so
                // held packets never wait for the periodic check below.
                if new || first {
                    let gen = f.table.entry(flow).map_or(0, |e| e.gen());
                    let req = SetupRequest { flow, gen, vif, lcore: f.lcore, tsc, trace, trace_pkt };
                    if !f.pending.is_empty() {
                        f.pending.push_back(req);
                    } else if let Err(req) = f.setup.push(req) {
                        f.pending.push_back(req);
                    } else {
                        f.pushed = true;
                    }
                }
            }
            HoldResult::QueueFull => {
                // Counted on the flow when it arrived and never released: the flow keeps
                // the count, which explains a mirrored flow's packets that have no copy.
                f.table.account_held_drop(flow);
                self.drop_pkt(vif, DropReason::FlowQueueLimitExceeded, raw)
            }
        }
    }

    /// Re-runs the held packets of every flow the agent has set up (or that went away), in
    /// hold order. They were counted on their flow when held, so they are not counted again.
    fn release_held(&mut self, tick: Tick<'_>) {
        let tsc = tick.tsc;
        let Some(f) = &mut self.flow else { return };
        let table = f.table.clone();
        let mut released = std::mem::take(&mut f.released);
        released.clear();
        // Flows the agent reports as set up: released at once, O(1) each.
        while let Some(flow) = f.done.pop() {
            f.hold.release_flow(flow, |flow, p, v| released.push((flow, p, v)));
        }
        // Every other held flow (turned into a drop by the HOLD audit, or an answer lost to
        // a full `done` ring) is checked periodically. The check reads every held flow's
        // entry, so its period grows with their number (at most ~5 % of the core at 2 us
        // per 100 ns check): with 65k flows in HOLD a 1 ms period cost a third of the core.
        let period = f.poll_ticks.max(f.hold.flows() as u64 * f.poll_ticks_per_flow);
        if tsc.wrapping_sub(f.last_poll) > period {
            f.last_poll = tsc;
            f.hold.release(
                |flow| table.entry(flow).is_none_or(|e| e.action() != Action::Hold),
                |flow, p, v| released.push((flow, p, v)),
            );
        }
        if released.is_empty() {
            f.released = released;
            return;
        }
        // Packets come grouped by flow: one group per released flow.
        let n_flows = 1 + released.windows(2).filter(|w| w[0].0 != w[1].0).count();
        f.held_global.fetch_sub(n_flows, Ordering::Relaxed);
        for &(flow, p, v) in &released {
            let raw = p as *mut rte_mbuf;
            #[cfg(feature = "trace")]
            let tr = match self.trace.as_mut() {
                Some(t) if t.has_held() => t.released(p, flow, crate::dpdk::rdtsc()),
                _ => None,
            };
            #[cfg(not(feature = "trace"))]
            let tr = None;
            match tick.fib.vif(v) {
                Some(vif) => self.forward::<true>(Tick { tsc: 0, ..tick }.on(vif), raw, None, Some(flow), tr),
                None => self.drop_pkt(v, DropReason::InvalidIf, raw),
            }
        }
        if let Some(f) = &mut self.flow {
            f.released = released;
        }
        self.flush_all();
    }

    /// At shutdown: held packets can no longer be set up; free and count them.
    fn drop_all_held(&mut self) {
        let Some(f) = &mut self.flow else { return };
        let mut all = Vec::new();
        let mut frags = Vec::new();
        f.frags.drain_all(|p, v| frags.push((p, v)));
        for (p, v) in frags {
            self.drop_pkt(v, DropReason::NoFragEntry, p as *mut rte_mbuf);
        }
        let Some(f) = &mut self.flow else { return };
        f.hold.release(|_| true, |_, p, v| all.push((p, v)));
        for (p, v) in all {
            #[cfg(feature = "trace")]
            if let Some(t) = self.trace.as_mut() {
                t.forget_held(p, DropReason::FlowUnusable, crate::dpdk::rdtsc());
            }
            self.drop_pkt(v, DropReason::FlowUnusable, p as *mut rte_mbuf);
        }
    }

    #[inline]
    fn flush_all(&mut self) {
        self.vrf_tally.flush(&self.stats);
        for t in self.tx.iter_mut().flatten() {
            if t.n > 0 {
                flush(t, &self.stats);
            }
        }
        if let Some(mi) = &mut self.mirror {
            mi.flush_all(&self.stats);
        }
    }
}

/// The burst pre-pass: key and hash of every IP packet with its bucket prefetched, then one
/// burst lookup, so the table's cache misses of the whole burst overlap; consecutive packets
/// with one key share one entry. The flow stage borrows each packet's key from here, the
/// flow-hit path ([`hit::forward_v4`]) takes the found flow index.
struct BurstKeys {
    /// The first `n` are written by [`BurstKeys::prepare`]; the rest are never read.
    keys: [std::mem::MaybeUninit<FlowKey>; BURST],
    n: usize,
    hashes: [u32; BURST],
    found: [Option<u32>; BURST],
    /// Packet `i`'s entry in the arrays above (`u8::MAX`: none, not IP or not prepared).
    slot: [u8; BURST],
}

impl BurstKeys {
    #[inline(always)]
    fn new() -> BurstKeys {
        // The key array is not filled: 32 keys written every burst only to be overwritten.
        BurstKeys {
            keys: [std::mem::MaybeUninit::uninit(); BURST],
            n: 0,
            hashes: [0; BURST],
            found: [None; BURST],
            slot: [u8::MAX; BURST],
        }
    }

    /// The keys written by `prepare`.
    #[inline(always)]
    fn keys(&self) -> &[FlowKey] {
        written(&self.keys, self.n)
    }

    /// Keys, hashes and lookups of the burst. A packet with the same key as the previous
    /// IP packet of the burst shares its entry (`slot`): no hash, prefetch or lookup of its
    /// own (a burst of one flow, the common case of bulk traffic, costs one lookup; packets
    /// of different flows pay one branch-free six-word compare).
    #[inline(always)]
    fn prepare(&mut self, table: &FlowTable, vrf: u32, pkts: &[*mut rte_mbuf]) {
        let mut m = 0;
        for (i, &raw) in pkts.iter().enumerate().take(BURST) {
            // SAFETY: rx_burst handed us these mbufs.
            let mb = unsafe { Mbuf::from_raw(raw) };
            if let Some((k, h)) = prepass_key(vrf, mb.data()) {
                m = self.add(table, i, m, k, h);
            }
        }
        self.lookup(table, m);
    }

    /// [`Self::prepare`] (the same code), then the burst's trace candidates (bit `i`:
    /// packet `i` may match an enabled trace request): `v4` tests the key the pre-pass
    /// stored for an IPv4 packet, `other` the frames of the other packets (IPv6, and those
    /// keyed out of line: fragments, ICMP errors, non-IP).
    #[cfg(feature = "trace")]
    #[inline(always)]
    fn prepare_traced(
        &mut self,
        table: &FlowTable,
        vrf: u32,
        pkts: &[*mut rte_mbuf],
        v4: impl Fn(&FlowKey) -> bool,
        other: impl Fn(&[u8]) -> bool,
    ) -> u32 {
        self.prepare(table, vrf, pkts);
        // The test runs over the distinct keys the pre-pass stored, after it: inside the
        // pre-pass it kept the request's masks, the candidate bits and a copy of each key on
        // the stack (register pressure), at twice the cost, and a burst none of whose keys
        // matches (a request for other traffic) needs no per-packet step at all.
        let keys = self.keys();
        let (mut key_hits, mut v6) = (0u32, false);
        for (j, k) in keys.iter().enumerate() {
            if k.is_v6() {
                v6 = true;
            } else {
                key_hits |= u32::from(v4(k)) << j;
            }
        }
        let n = pkts.len().min(BURST);
        let unkeyed = self.slot[..n].iter().fold(false, |a, &s| a | (s == u8::MAX));
        if key_hits == 0 && !v6 && !unkeyed {
            return 0;
        }
        let mut candidates = 0u32;
        for (i, &raw) in pkts.iter().enumerate().take(BURST) {
            let j = self.slot[i];
            let hit = match keys.get(usize::from(j)) {
                Some(k) if !k.is_v6() => key_hits & (1 << j) != 0,
                _ => {
                    // SAFETY: rx_burst handed us these mbufs; only read here.
                    let mb = unsafe { Mbuf::from_raw(raw) };
                    other(mb.data())
                }
            };
            candidates |= u32::from(hit) << i;
        }
        candidates
    }

    /// Packet `i`'s key, the `m`-th distinct one of the burst so far, unless it is the
    /// previous one's; returns the count of distinct keys. A function of its own though
    /// `prepare` is its only caller: written out in the loop, the same code compiled to 2 %
    /// more instructions per packet in the traced burst (callgrind), and the untraced
    /// pre-pass went 1.6 % cheaper when it was split out.
    #[inline(always)]
    fn add(&mut self, table: &FlowTable, i: usize, m: usize, k: FlowKey, h: PrepassHash) -> usize {
        if let Some(prev) = written(&self.keys, m).last() {
            if prev.same_as(&k) {
                self.slot[i] = (m - 1) as u8;
                return m;
            }
        }
        let h = h.get(&k);
        table.prefetch(h);
        self.keys[m].write(k);
        self.hashes[m] = h;
        self.slot[i] = m as u8;
        m + 1
    }

    /// The burst's one lookup of its `m` distinct keys.
    #[inline(always)]
    fn lookup(&mut self, table: &FlowTable, m: usize) {
        self.n = m;
        table.lookup_burst(written(&self.keys, m), &self.hashes[..m], &mut self.found[..m]);
    }

    /// Packet `i`'s flow index and key hash when the burst lookup found its flow.
    #[inline(always)]
    fn hit(&self, i: usize) -> Option<(u32, u32)> {
        let j = usize::from(*self.slot.get(i)?);
        Some((*self.found.get(j)?.as_ref()?, self.hashes[j]))
    }

    #[inline(always)]
    fn get(&self, i: usize) -> Option<Prepared<'_>> {
        let j = usize::from(*self.slot.get(i)?);
        Some(Prepared { key: self.keys().get(j)?, hash: self.hashes[j], found: self.found[j] })
    }
}

/// The first `n` keys of the pre-pass's array, which it has written.
#[inline(always)]
fn written(keys: &[std::mem::MaybeUninit<FlowKey>; BURST], n: usize) -> &[FlowKey] {
    let n = n.min(BURST);
    // SAFETY: `BurstKeys::prepare` writes keys[..n] before setting `n` (n <= BURST), and
    // MaybeUninit<FlowKey> has FlowKey's layout, so that prefix is a valid [FlowKey].
    unsafe { std::slice::from_raw_parts(keys.as_ptr().cast::<FlowKey>(), n) }
}

/// The flow key of an IP frame from a VM in `vrf`, for the burst pre-pass (always inlined:
/// a call per packet otherwise, depending on the inliner's mood), with the means to hash it
/// (not computed for a packet that shares the previous packet's key).
#[inline(always)]
fn prepass_key(vrf: u32, frame: &[u8]) -> Option<(FlowKey, PrepassHash)> {
    let eth = ethernet::Frame::new_checked(frame).ok()?;
    match eth.ethertype() {
        // Fragments, ICMP errors and IPv6 extension headers are keyed by the flow stage's
        // out-of-line path (fragment table, quoted packet, header walk).
        EtherType::IPV4 => {
            let ip = ipv4::Packet::new_checked(eth.payload()).ok()?;
            if needs_special_key(false, ip.protocol(), ip.is_fragment(), ip.payload()) {
                return None;
            }
            let (k, t) = key_v4_tuple(vrf, &ip);
            Some((k, PrepassHash::V4(t)))
        }
        EtherType::IPV6 => {
            let ip = ipv6::Packet::new_checked(eth.payload()).ok()?;
            if needs_special_key(true, ip.next_header(), false, ip.payload()) {
                return None;
            }
            Some((key_v6(vrf, &ip), PrepassHash::OfKey))
        }
        _ => None,
    }
}

/// How to hash a pre-pass key: from the header fields for IPv4 (reading back a key just
/// written stalls on store forwarding), from the key for IPv6.
#[derive(Clone, Copy)]
enum PrepassHash {
    V4(V4Tuple),
    OfKey,
}

impl PrepassHash {
    #[inline(always)]
    fn get(self, key: &FlowKey) -> u32 {
        match self {
            PrepassHash::V4(t) => t.hash(),
            PrepassHash::OfKey => key.hash(),
        }
    }
}

/// Transmits a TX buffer on the lcore's queue of the port (on a vhost-user port whose guest
/// does not read that queue, on one it reads: [`stand_in_queue`]); what the queue does not
/// take is freed and counted as `IF TX Discard` on the output vif, all of it as `Link Down`
/// when the port's link is down.
#[inline]
fn flush(t: &mut TxTarget, stats: &LcoreStats) {
    let n = t.n;
    t.n = 0;
    if link::is_down(t.port) {
        // A VM port whose guest is gone: nobody reads the queue.
        stats.tx_error(t.vif, n as u64);
        stats.drop(Some(t.vif), DropReason::LinkDown, n as u64);
        // SAFETY: the first n entries are mbufs owned by this lcore.
        unsafe { dpdk_sys::rte_pktmbuf_free_bulk(t.pkts.as_mut_ptr(), n as u32) };
        return;
    }
    let off = link::tx_queues_off(t.port);
    let (queue, lock) = if off & 1u32.checked_shl(u32::from(t.queue)).unwrap_or(0) == 0 {
        (t.queue, t.lock.as_deref())
    } else {
        stand_in_queue(&t.alt, (t.queue, t.lock.as_deref()), t.index, off)
    };
    if let Some(lock) = lock {
        while lock.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            std::hint::spin_loop();
        }
    }
    // SAFETY: the first n entries are mbufs owned by this lcore; the queue is exclusively
    // ours (or we hold its lock); flush runs within a forwarding lcore's iteration.
    // tx_burst takes ownership of the first `sent`.
    let sent = unsafe { vhost::tx_burst(t.port, queue, off, &mut t.pkts[..n]) };
    if let Some(lock) = lock {
        lock.store(false, Ordering::Release);
    }
    let sent_bytes: u64 = t.bytes[..sent].iter().map(|&b| u64::from(b)).sum();
    stats.tx(t.vif, sent as u64, sent_bytes);
    if sent < n {
        let left = (n - sent) as u64;
        stats.tx_error(t.vif, left);
        stats.drop(Some(t.vif), DropReason::InterfaceTxDiscard, left);
        // SAFETY: the unsent mbufs are still ours.
        unsafe { dpdk_sys::rte_pktmbuf_free_bulk(t.pkts.as_mut_ptr().add(sent), (n - sent) as u32) };
    }
}

/// The queue (and its lock) an lcore sends on when the guest of a vhost-user port does not
/// read the lcore's own queue: the lcores share the queues the guest reads, by index. With
/// none read, its own (the guest takes nothing: counted as `IF TX Discard`).
#[cold]
fn stand_in_queue<'a>(
    alt: &'a [Arc<TxLock>],
    own: (u16, Option<&'a TxLock>),
    index: u16,
    off: u32,
) -> (u16, Option<&'a TxLock>) {
    let n = alt.len().min(32) as u32;
    let mut on = !off & if n == 32 { u32::MAX } else { (1u32 << n) - 1 };
    if on == 0 {
        return own;
    }
    // The (index mod count)-th queue that is on.
    for _ in 0..u32::from(index) % on.count_ones() {
        on &= on - 1;
    }
    let q = on.trailing_zeros() as usize;
    (q as u16, alt.get(q).map(|l| &**l))
}

/// The `--file-prefix=` of EAL arguments (the last one, as the EAL takes it).
pub fn eal_file_prefix(args: &[String]) -> Option<&str> {
    args.iter().rev().find_map(|a| a.strip_prefix("--file-prefix="))
}

/// EAL arguments for a configuration.
pub fn eal_args(cfg: &Config) -> Vec<String> {
    let e = &cfg.eal;
    let mut cores = vec![e.main_core];
    cores.extend(&e.forwarding_cores);
    let lcores = if e.maps_cpus() {
        // `--lcores=<lcore>@<cpu>,...`: each lcore pinned to its configured CPU, which
        // several lcores may share.
        let mut cpus = vec![e.main_cpu()];
        cpus.extend(e.forwarding_cpus());
        let map: Vec<String> = cores.iter().zip(&cpus).map(|(l, c)| format!("{l}@{c}")).collect();
        vec![format!("--lcores={}", map.join(","))]
    } else {
        vec!["-l".into(), cores.iter().map(u32::to_string).collect::<Vec<_>>().join(",")]
    };
    let mut a = vec!["vrouter".to_string()];
    a.extend(lcores);
    a.extend([
        "--main-lcore".into(),
        e.main_core.to_string(),
        "-m".into(),
        e.memory_mb.to_string(),
        format!("--file-prefix={}", e.file_prefix.as_deref().unwrap_or("vrouter")),
    ]);
    a.extend(crate::hugepages::eal_memory_args(e));
    if e.pci.is_empty() {
        a.push("--no-pci".into());
    }
    for p in &e.pci {
        a.push("-a".into());
        a.push(p.clone());
    }
    for v in &e.vdevs {
        a.push("--vdev".into());
        a.push(v.clone());
    }
    a.extend(e.extra_args.iter().cloned());
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(vif: u16, rxq: u16) -> PortSetup {
        PortSetup { vif, port: Port { id: vif }, driver: "x".into(), rx_queues: rxq, tx_queues: 1 }
    }

    proptest::proptest! {
        /// The fixed-point clock is the exact division, or one millisecond short of it at a
        /// boundary, for any TSC rate and up to ten years of ticks (wrapping counter included).
        #[test]
        fn clock_agrees_with_the_division(hz in 1_000_000u64..10_000_000_000, base in proptest::num::u64::ANY,
                                          ms in 0u64..315_360_000_000, frac in 0u64..1000) {
            let c = Clock::at(1_700_000_000_000, base, hz);
            let ticks = (u128::from(ms) * u128::from(hz) / 1000) as u64 + frac * hz / 1_000_000;
            let exact = 1_700_000_000_000 + (u128::from(ticks) * 1000 / u128::from(hz)) as u64;
            let got = c.now_ms(base.wrapping_add(ticks));
            proptest::prop_assert!(got == exact || got + 1 == exact, "hz {hz} ticks {ticks}: {got} vs {exact}");
        }
    }

    #[test]
    fn rx_queues_go_to_the_least_loaded_lcore() {
        let ports = [setup(0, 4), setup(1, 1), setup(2, 1)];
        let plans = assign_rx_queues(&ports, &[2, 3, 4]);
        let counts: Vec<usize> = plans.iter().map(|p| p.rx.len()).collect();
        assert_eq!(counts, vec![2, 2, 2]);
        assert_eq!(plans[0].rx[0].queue, 0);
        assert_eq!(plans[1].rx[0].queue, 1);
        assert_eq!(plans[2].rx[0].queue, 2);
        assert_eq!((plans[0].rx[1].vif, plans[0].rx[1].queue), (0, 3));
        assert_eq!(plans[1].rx[1].vif, 1);
        assert_eq!(plans[2].rx[1].vif, 2);
    }

    /// A frame of `kind`: 0 IPv4/UDP (destination port 9 or 53 by `port`), 1 IPv6/UDP, 2 ARP,
    /// 3 an IPv4/UDP fragment (keyed out of line).
    #[cfg(feature = "trace")]
    fn prepass_frame(kind: u8, port: bool, sport: u16) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
        let dport: u16 = if port { 9 } else { 53 };
        let udp = |f: &mut Vec<u8>| {
            f.extend_from_slice(&sport.to_be_bytes());
            f.extend_from_slice(&dport.to_be_bytes());
            f.extend_from_slice(&[0, 8, 0, 0]);
        };
        match kind {
            0 | 3 => {
                f.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 28, 0, 1]);
                // Flags and fragment offset: MF for the fragment.
                f.extend_from_slice(if kind == 3 { &[0x20, 0] } else { &[0, 0] });
                f.extend_from_slice(&[64, 17, 0, 0, 192, 168, 1, 3, 192, 168, 1, 4]);
                udp(&mut f);
            }
            1 => {
                f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0, 0, 8, 17, 64]);
                f.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3]);
                f.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4]);
                udp(&mut f);
            }
            _ => {
                f.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
                f.extend_from_slice(&[0; 20]);
            }
        }
        f
    }

    #[cfg(feature = "trace")]
    proptest::proptest! {
        /// The traced pre-pass leaves the burst's keys, slots and hashes exactly as the
        /// untraced one does, and packet `i`'s candidate bit is the key test for a packet the
        /// pre-pass keyed as IPv4 and the frame test for every other, whatever the mix, the
        /// duplicates (packets sharing the previous key share its slot) and the burst size.
        #[test]
        fn traced_prepass_is_the_prepass_plus_a_test_per_packet(
            burst in proptest::collection::vec((0u8..4, proptest::bool::ANY, 1u16..3), 1..=BURST)
        ) {
            let dir = tempfile::tempdir().unwrap();
            let cfg = flow_table::FlowTableConfig { main_entries: 1024, overflow_entries: 1024, max_lcores: 2 };
            let table = FlowTable::create(&dir.path().join("t"), &cfg).unwrap();
            let mut frames: Vec<Vec<u8>> = burst.iter().map(|&(k, p, s)| prepass_frame(k, p, s)).collect();
            let mut mbufs: Vec<rte_mbuf> = frames
                .iter_mut()
                .map(|f| {
                    // SAFETY: rte_mbuf is plain data; all-zero is a valid value of it.
                    let mut m: rte_mbuf = unsafe { std::mem::zeroed() };
                    m.buf_addr = f.as_mut_ptr().cast();
                    m.data_len = f.len() as u16;
                    m.pkt_len = f.len() as u32;
                    m.nb_segs = 1;
                    m
                })
                .collect();
            let pkts: Vec<*mut rte_mbuf> = mbufs.iter_mut().map(|m| m as *mut rte_mbuf).collect();
            let v4 = |k: &FlowKey| k.dport() == 9;
            // True for ARP and the fragments (42 bytes), for IPv6 from source port 1 only.
            let other = |f: &[u8]| f.len().is_multiple_of(3) || (f.get(12) == Some(&0x86) && f.get(55) == Some(&1));

            let mut plain = BurstKeys::new();
            plain.prepare(&table, 7, &pkts);
            let mut traced = BurstKeys::new();
            let candidates = traced.prepare_traced(&table, 7, &pkts, v4, other);

            proptest::prop_assert_eq!(traced.n, plain.n);
            proptest::prop_assert_eq!(traced.slot, plain.slot);
            proptest::prop_assert_eq!(&traced.hashes[..], &plain.hashes[..]);
            proptest::prop_assert_eq!(traced.keys(), plain.keys());
            for (i, f) in frames.iter().enumerate() {
                let want = match prepass_key(7, f) {
                    Some((k, PrepassHash::V4(_))) => v4(&k),
                    _ => other(f),
                };
                proptest::prop_assert_eq!(candidates & (1 << i) != 0, want, "packet {} of {:?}", i, burst);
            }
            proptest::prop_assert_eq!(candidates.checked_shr(frames.len() as u32).unwrap_or(0), 0);
        }
    }

    fn eal_config(eal_extra: &str) -> Config {
        let text = format!(
            "[eal]\nmain_core = 0\nforwarding_cores = [1, 2, 3]\n{eal_extra}\n[vrouter]\nrun_dir = \"/tmp/x\"\n\
             router_ip = \"10.0.0.1\"\n[[vrf]]\nid = 0\nname = \"fabric\"\n[[vif]]\nid = 0\nname = \"fabric0\"\n\
             type = \"fabric\"\ndevice = \"net_pcap0\"\nmac = \"02:00:00:00:00:01\"\nvrf = 0\n"
        );
        crate::config::parse(&text, "test.toml").unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn eal_args_give_each_lcore_its_cpu() {
        // Without a mapping: `-l`, each lcore on the CPU of its number.
        let a = eal_args(&eal_config(""));
        assert_eq!(a[1..5], ["-l", "0,1,2,3", "--main-lcore", "0"]);
        assert!(!a.iter().any(|x| x.starts_with("--lcores")), "{a:?}");
        // Three forwarding lcores on two CPUs.
        let a = eal_args(&eal_config("forwarding_cpus = [1, 1, 0]"));
        assert_eq!(a[1..4], ["--lcores=0@0,1@1,2@1,3@0", "--main-lcore", "0"]);
        assert!(!a.iter().any(|x| x == "-l"), "{a:?}");
        // main_cpu alone: the forwarding lcores keep the CPUs of their numbers.
        let a = eal_args(&eal_config("main_cpu = 5"));
        assert_eq!(a[1], "--lcores=0@5,1@1,2@2,3@3");
    }

    #[test]
    fn lcores_whose_vhost_queue_is_off_share_the_queues_the_guest_reads() {
        let alt: Vec<Arc<TxLock>> = (0..4).map(|_| Arc::new(CachePadded::new(AtomicBool::new(false)))).collect();
        let own = Arc::new(CachePadded::new(AtomicBool::new(false)));
        let pick = |index: u16, off: u32| {
            let (q, lock) = stand_in_queue(&alt, (index % 4, Some(&*own)), index, off);
            let lock = lock.expect("a stand-in queue is always locked");
            let same = std::ptr::eq(lock, &*alt[usize::from(q)]) || std::ptr::eq(lock, &*own);
            assert!(same, "the lock is the chosen queue's");
            q
        };
        // Queues 0 and 2 off: lcores take 1 and 3 by index.
        assert_eq!((pick(0, 0b0101), pick(1, 0b0101), pick(2, 0b0101), pick(3, 0b0101)), (1, 3, 1, 3));
        // Only queue 3 on (a guest with fewer vCPUs enables fewer queues).
        assert_eq!((pick(0, 0b0111), pick(5, 0b0111)), (3, 3));
        // None on (bits past the port's queues do not count): the lcore's own queue.
        assert_eq!(pick(2, u32::MAX), 2);
        assert_eq!(pick(1, !0b1111), 1);
    }

    #[test]
    fn single_lcore_gets_everything() {
        let ports = [setup(0, 2), setup(5, 1)];
        let plans = assign_rx_queues(&ports, &[1]);
        assert_eq!(plans.len(), 1);
        assert_eq!(plans[0].rx.len(), 3);
    }
}
