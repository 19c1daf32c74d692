//! The data plane: ports and queues set up from the FIB, RX queues spread over pinned
//! forwarding lcores, and the run-to-completion poll loop each lcore runs.
//!
//! Per iteration an lcore polls each of its RX queues for a burst of up to 32 packets, runs
//! every packet through [`pipeline::process`], buffers the transmits per output vif and
//! flushes each buffer with one `rte_eth_tx_burst` at the end of the burst (or when it fills).
//! Counters go to the lcore's own block of the stats region (single writer, no atomics RMW).
//!
//! TX queues: every port gets one TX queue per forwarding lcore when the driver offers that
//! many; otherwise lcores share queues (`lcore % queues`) and serialise on a per-queue
//! spinlock taken once per flush, never per packet.

use crate::config::Config;
use crate::dpdk::{lcore, Mbuf, Mempool, Port, PortConfig};
use crate::drop_reason::DropReason;
use crate::fib::{Fib, Vif};
use crate::pipeline::{self, PacketBuf, Verdict};
use crate::stats::{LcoreStats, RegionState, StatsRegion};
use anyhow::{bail, Context, Result};
use crossbeam_utils::CachePadded;
use dpdk_sys::rte_mbuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Packets per RX/TX burst.
pub const BURST: usize = 32;

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
    pub vif: u16,
    pub port: Port,
    pub driver: String,
    pub rx_queues: u16,
    pub tx_queues: u16,
}

/// A spinlock guarding a TX queue shared by several lcores.
type TxLock = CachePadded<AtomicBool>;

/// Where one lcore sends packets for one vif.
struct TxTarget {
    vif: u16,
    port: u16,
    queue: u16,
    lock: Option<Arc<TxLock>>,
    n: usize,
    pkts: [*mut rte_mbuf; BURST],
    bytes: [u32; BURST],
}

/// An RX queue polled by an lcore.
#[derive(Debug, Clone, Copy)]
pub struct RxQueue {
    pub vif: u16,
    pub port: u16,
    pub queue: u16,
}

/// The work given to one forwarding lcore.
#[derive(Debug, Clone)]
pub struct LcorePlan {
    /// Index among forwarding lcores (stats block index).
    pub index: usize,
    /// EAL lcore id (= CPU it is pinned to).
    pub lcore_id: u32,
    pub rx: Vec<RxQueue>,
}

/// Assigns every RX queue to the forwarding lcore with the fewest queues so far (ties go to
/// the lowest index), in vif order then queue order, as tf-vrouter schedules interfaces.
pub fn assign_rx_queues(ports: &[PortSetup], lcore_ids: &[u32]) -> Vec<LcorePlan> {
    let mut plans: Vec<LcorePlan> = lcore_ids
        .iter()
        .enumerate()
        .map(|(index, &lcore_id)| LcorePlan { index, lcore_id, rx: Vec::new() })
        .collect();
    for p in ports {
        for q in 0..p.rx_queues {
            let least = plans
                .iter_mut()
                .min_by_key(|pl| (pl.rx.len(), pl.index))
                .expect("at least one forwarding lcore");
            least.rx.push(RxQueue { vif: p.vif, port: p.port.id, queue: q });
        }
    }
    plans
}

/// A running data plane.
pub struct Datapath {
    pub fib: Arc<Fib>,
    pub ports: Vec<PortSetup>,
    pub plans: Vec<LcorePlan>,
    pub stats: Arc<StatsRegion>,
    stop: Arc<AtomicBool>,
    _pool: Mempool,
}

impl Datapath {
    /// Opens and starts every vif's port, creates the stats region and launches one
    /// forwarding loop per configured core. The EAL must be initialised with those cores.
    pub fn start(cfg: &Config, fib: Fib, stats_builder: impl FnOnce(&[PortSetup]) -> Result<StatsRegion>) -> Result<Datapath> {
        let cores = &cfg.eal.forwarding_cores;
        lcore::check_enabled(cores).context("forwarding cores")?;
        let socket = lcore::socket_of(cores[0]);
        let pool = Mempool::create("vr_mbuf_pool", cfg.eal.mbufs, 256, socket)
            .with_context(|| format!("creating the mbuf pool (eal.mbufs = {})", cfg.eal.mbufs))?;

        let n_lcores = cores.len() as u16;
        let mut ports = Vec::new();
        for vif in fib.vif_list() {
            let port = Port::by_name(&vif.device)
                .with_context(|| format!("vif {} ({}): device {:?}", vif.id, vif.name, vif.device))?;
            let info = port.info().with_context(|| format!("vif {}: port info", vif.id))?;
            if info.max_rx_queues == 0 {
                bail!("vif {} ({}): device {} has no RX queue (a pcap vdev needs rx_pcap=...)", vif.id, vif.name, vif.device);
            }
            let rx_queues = vif.rx_queues.min(info.max_rx_queues).max(1);
            if rx_queues < vif.rx_queues {
                eprintln!(
                    "vif {} ({}): driver {} offers {} RX queue(s); using {} instead of {}",
                    vif.id, vif.name, info.driver, info.max_rx_queues, rx_queues, vif.rx_queues
                );
            }
            let tx_queues = n_lcores.min(info.max_tx_queues).max(1);
            let pcfg = PortConfig {
                rx_queues,
                tx_queues,
                rx_desc: cfg.eal.rx_desc,
                tx_desc: cfg.eal.tx_desc,
                mtu: None,
            };
            port.configure(&pcfg, &info, &pool)
                .with_context(|| format!("vif {} ({}): configuring port {}", vif.id, vif.name, port.id))?;
            ports.push(PortSetup { vif: vif.id, port, driver: info.driver, rx_queues, tx_queues });
        }

        let stats = Arc::new(stats_builder(&ports)?);
        let plans = assign_rx_queues(&ports, cores);
        for p in &ports {
            p.port.start().with_context(|| format!("vif {}: starting port {}", p.vif, p.port.id))?;
        }

        let fib = Arc::new(fib);
        let stop = Arc::new(AtomicBool::new(false));
        // One lock per (port, TX queue), used only where lcores outnumber TX queues.
        let locks: Vec<Vec<Arc<TxLock>>> = ports
            .iter()
            .map(|p| (0..p.tx_queues).map(|_| Arc::new(CachePadded::new(AtomicBool::new(false)))).collect())
            .collect();
        for plan in &plans {
            let tx: Vec<Option<TxTarget>> = {
                let max_vif = fib.vifs.len();
                let mut v: Vec<Option<TxTarget>> = (0..max_vif).map(|_| None).collect();
                for (pi, p) in ports.iter().enumerate() {
                    let queue = (plan.index as u16) % p.tx_queues;
                    let shared = p.tx_queues < n_lcores;
                    v[usize::from(p.vif)] = Some(TxTarget {
                        vif: p.vif,
                        port: p.port.id,
                        queue,
                        lock: shared.then(|| locks[pi][usize::from(queue)].clone()),
                        n: 0,
                        pkts: [std::ptr::null_mut(); BURST],
                        bytes: [0; BURST],
                    });
                }
                v
            };
            let ctx = LcoreLoop {
                fib: fib.clone(),
                rx: plan.rx.clone(),
                tx,
                stats: stats.lcore(plan.index).context("stats region has fewer lcore blocks than lcores")?,
                stop: stop.clone(),
            };
            lcore::launch(plan.lcore_id, move || ctx.run())
                .with_context(|| format!("launching forwarding lcore {}", plan.lcore_id))?;
        }
        Ok(Datapath { fib, ports, plans, stats, stop, _pool: pool })
    }

    /// Stops the forwarding lcores, then stops and closes every port (capture files of pcap
    /// devices are flushed and closed here) and marks the stats region stopped.
    pub fn shutdown(self) -> Result<()> {
        self.stop.store(true, Ordering::Release);
        for plan in &self.plans {
            let ret = lcore::wait(plan.lcore_id);
            if ret != 0 {
                eprintln!("forwarding lcore {} exited with {}", plan.lcore_id, ret);
            }
        }
        let mut first_err = None;
        for p in &self.ports {
            if let Err(e) = p.port.stop().and_then(|_| p.port.close()) {
                eprintln!("vif {}: {e}", p.vif);
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

/// State owned by one forwarding lcore.
struct LcoreLoop {
    fib: Arc<Fib>,
    rx: Vec<RxQueue>,
    /// Indexed by vif id.
    tx: Vec<Option<TxTarget>>,
    stats: LcoreStats,
    stop: Arc<AtomicBool>,
}

// SAFETY: the raw mbuf pointers in the TX buffers are only ever touched by the lcore that
// runs the loop; the struct is moved to that lcore once, before it starts, with empty buffers.
unsafe impl Send for LcoreLoop {}

impl LcoreLoop {
    fn run(mut self) -> i32 {
        let fib = self.fib.clone();
        let mut pkts: [*mut rte_mbuf; BURST] = [std::ptr::null_mut(); BURST];
        let mut dropped: [*mut rte_mbuf; BURST] = [std::ptr::null_mut(); BURST];
        while !self.stop.load(Ordering::Relaxed) {
            let mut received = false;
            for qi in 0..self.rx.len() {
                let q = self.rx[qi];
                // SAFETY: port/queue were configured and started; pkts has room for BURST.
                let n = unsafe {
                    dpdk_sys::rte_eth_rx_burst(q.port, q.queue, pkts.as_mut_ptr(), BURST as u16)
                } as usize;
                if n == 0 {
                    continue;
                }
                received = true;
                let Some(vif) = fib.vif(q.vif) else { continue };
                self.burst(&fib, vif, &pkts[..n], &mut dropped);
            }
            self.stats.poll(received);
        }
        self.flush_all();
        0
    }

    #[inline]
    fn burst(&mut self, fib: &Fib, vif: &Vif, pkts: &[*mut rte_mbuf], dropped: &mut [*mut rte_mbuf; BURST]) {
        let mut rx_bytes = 0u64;
        let mut n_dropped = 0usize;
        for &raw in pkts {
            // SAFETY: rx_burst handed us ownership of these mbufs.
            let mut m = unsafe { Mbuf::from_raw(raw) };
            rx_bytes += u64::from(m.pkt_len());
            let verdict = if m.is_contiguous() {
                pipeline::process(fib, vif, &mut m)
            } else {
                // Headers must be in the first segment; chained mbufs only come from jumbo
                // frames, which this vRouter does not accept.
                Verdict::Drop(DropReason::InvalidPacket)
            };
            match verdict {
                Verdict::Tx(out) => {
                    let len = m.pkt_len();
                    match self.tx.get_mut(usize::from(out)).and_then(Option::as_mut) {
                        Some(t) => {
                            t.pkts[t.n] = raw;
                            t.bytes[t.n] = len;
                            t.n += 1;
                            if t.n == BURST {
                                flush(t, &self.stats);
                            }
                        }
                        None => {
                            self.stats.drop(Some(vif.id), DropReason::InvalidIf, 1);
                            dropped[n_dropped] = raw;
                            n_dropped += 1;
                        }
                    }
                }
                Verdict::Drop(reason) => {
                    self.stats.drop(Some(vif.id), reason, 1);
                    dropped[n_dropped] = raw;
                    n_dropped += 1;
                }
            }
        }
        self.stats.rx(vif.id, pkts.len() as u64, rx_bytes);
        if n_dropped > 0 {
            // SAFETY: these mbufs are owned by this lcore and referenced nowhere else.
            unsafe { dpdk_sys::rte_pktmbuf_free_bulk(dropped.as_mut_ptr(), n_dropped as u32) };
        }
        self.flush_all();
    }

    #[inline]
    fn flush_all(&mut self) {
        for t in self.tx.iter_mut().flatten() {
            if t.n > 0 {
                flush(t, &self.stats);
            }
        }
    }
}

/// Transmits a TX buffer; what the queue does not take is freed and counted as
/// `IF TX Discard` on the output vif.
#[inline]
fn flush(t: &mut TxTarget, stats: &LcoreStats) {
    let n = t.n;
    t.n = 0;
    if let Some(lock) = &t.lock {
        while lock
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::hint::spin_loop();
        }
    }
    // SAFETY: the first n entries are mbufs owned by this lcore; the queue is exclusively
    // ours (or we hold its lock). tx_burst takes ownership of the first `sent`.
    let sent = usize::from(unsafe {
        dpdk_sys::rte_eth_tx_burst(t.port, t.queue, t.pkts.as_mut_ptr(), n as u16)
    });
    if let Some(lock) = &t.lock {
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

/// EAL arguments for a configuration.
pub fn eal_args(cfg: &Config) -> Vec<String> {
    let e = &cfg.eal;
    let mut cores = vec![e.main_core];
    cores.extend(&e.forwarding_cores);
    let mut a = vec![
        "vrouter".to_string(),
        "-l".into(),
        cores.iter().map(u32::to_string).collect::<Vec<_>>().join(","),
        "--main-lcore".into(),
        e.main_core.to_string(),
        "-m".into(),
        e.memory_mb.to_string(),
        format!("--file-prefix={}", e.file_prefix.as_deref().unwrap_or("vrouter")),
    ];
    if e.no_huge {
        a.push("--no-huge".into());
    }
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

    #[test]
    fn single_lcore_gets_everything() {
        let ports = [setup(0, 2), setup(5, 1)];
        let plans = assign_rx_queues(&ports, &[1]);
        assert_eq!(plans.len(), 1);
        assert_eq!(plans[0].rx.len(), 3);
    }
}
