//! Publishing forwarding state to running lcores, RCU style.
//!
//! The forwarding state an lcore uses is one immutable [`Snapshot`]: the [`Fib`] and the
//! [`PortMap`] (which DPDK port and queues each vif has, which RX queues each lcore polls).
//! A change builds a new snapshot and [`FibCell::publish`]es it; nothing that lcores read is
//! ever written in place.
//!
//! Contract (what the tests below and `vrouter/tests/programming.rs` hold):
//! - **Readers never wait for writers.** An lcore reads [`FibCell::generation`] (one relaxed
//!   load of a line that changes only on a publish) once per loop iteration and takes the new
//!   snapshot ([`FibCell::load`], a short lock held only to clone an `Arc`) when it changed.
//!   Every packet of an iteration is forwarded by one snapshot: the old or the new, never a mix.
//! - **Quiescent state.** Having taken a snapshot, an lcore calls [`FibCell::ack`] with its
//!   generation; [`FibCell::wait_quiescent`] returns once every lcore has acknowledged a
//!   generation, so after it nothing uses what the old snapshots referred to (a deleted vif's
//!   port can be stopped).
//! - **Reclamation off the lcores.** The cell keeps each replaced snapshot until every lcore
//!   has acknowledged a later one, and only then drops it ([`FibCell::reclaim`], called by
//!   the publisher): an lcore's drop of its old `Arc` is never the last, so the freeing of
//!   large tables never happens on a forwarding core.

use super::Fib;
use crossbeam_utils::CachePadded;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A spinlock guarding a TX queue shared by several lcores.
pub type TxLock = CachePadded<AtomicBool>;

/// An RX queue polled by an lcore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxQueue {
    /// The vif of the port.
    pub vif: u16,
    /// DPDK port id.
    pub port: u16,
    /// Queue index on the port.
    pub queue: u16,
}

/// A vif's open DPDK port.
#[derive(Debug, Clone)]
pub struct PortSlot {
    /// DPDK port id.
    pub port: u16,
    /// PMD driver name (reported in the vif record).
    pub driver: String,
    /// RX queues opened.
    pub rx_queues: u16,
    /// TX queues opened: one per forwarding lcore, fewer (then shared under a lock) if the
    /// device has fewer.
    pub tx_queues: u16,
    /// One lock per TX queue, used where lcores outnumber TX queues and on vhost-user ports
    /// sent to by several lcores.
    pub tx_locks: Vec<Arc<TxLock>>,
}

/// Which port each vif has and which RX queues each forwarding lcore polls.
#[derive(Debug, Clone, Default)]
pub struct PortMap {
    /// Indexed by vif id; `None`: no port (not configured, or being removed).
    pub by_vif: Vec<Option<PortSlot>>,
    /// Indexed by lcore plan index: the RX queues it polls, in order.
    pub lcore_rx: Vec<Vec<RxQueue>>,
}

impl PortMap {
    /// The port of vif `id`.
    #[inline]
    pub fn port(&self, id: u16) -> Option<&PortSlot> {
        self.by_vif.get(usize::from(id)).and_then(Option::as_ref)
    }

    /// Adds the port of vif `vif` and gives each of its `slot.rx_queues` RX queues to the
    /// lcore polling the fewest queues (ties to the lower index).
    pub fn attach(&mut self, vif: u16, slot: PortSlot) {
        let i = usize::from(vif);
        if self.by_vif.len() <= i {
            self.by_vif.resize(i + 1, None);
        }
        for q in 0..slot.rx_queues {
            if let Some(l) = (0..self.lcore_rx.len()).min_by_key(|&l| (self.lcore_rx[l].len(), l)) {
                self.lcore_rx[l].push(RxQueue { vif, port: slot.port, queue: q });
            }
        }
        self.by_vif[i] = Some(slot);
    }

    /// Removes vif `vif`'s port and its RX queues; returns the port.
    pub fn detach(&mut self, vif: u16) -> Option<PortSlot> {
        for rx in &mut self.lcore_rx {
            rx.retain(|q| q.vif != vif);
        }
        self.by_vif.get_mut(usize::from(vif)).and_then(Option::take)
    }
}

/// One immutable forwarding state.
#[derive(Debug)]
pub struct Snapshot {
    /// Generation: 1 for the state at start, one more per publish.
    pub generation: u64,
    /// Routes, nexthops, vifs, VRFs, labels.
    pub fib: Arc<Fib>,
    /// Ports and RX queue assignment.
    pub ports: Arc<PortMap>,
}

/// The published forwarding state (see the module contract).
#[derive(Debug)]
pub struct FibCell {
    generation: CachePadded<AtomicU64>,
    current: Mutex<Arc<Snapshot>>,
    /// Per lcore: the generation it forwards with.
    seen: Box<[CachePadded<AtomicU64>]>,
    /// Replaced snapshots not yet reclaimed.
    retired: Mutex<Vec<Arc<Snapshot>>>,
}

impl FibCell {
    /// A cell holding generation 1 of `fib` and `ports`, read by `lcores` forwarding lcores.
    pub fn new(fib: Arc<Fib>, ports: PortMap, lcores: usize) -> FibCell {
        FibCell {
            generation: CachePadded::new(AtomicU64::new(1)),
            current: Mutex::new(Arc::new(Snapshot { generation: 1, fib, ports: Arc::new(ports) })),
            seen: (0..lcores).map(|_| CachePadded::new(AtomicU64::new(1))).collect(),
            retired: Mutex::new(Vec::new()),
        }
    }

    /// A cell holding `fib` that no lcore reads and nothing publishes to (a component used
    /// without a data plane: tests, tools).
    pub fn fixed(fib: Arc<Fib>) -> Arc<FibCell> {
        Arc::new(FibCell::new(fib, PortMap::default(), 0))
    }

    fn lock_current(&self) -> MutexGuard<'_, Arc<Snapshot>> {
        // A panic while holding it cannot leave the Arc half written.
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The generation of the current snapshot (one relaxed load: the per-iteration check).
    #[inline(always)]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The current snapshot.
    pub fn load(&self) -> Arc<Snapshot> {
        self.lock_current().clone()
    }

    /// The current FIB.
    pub fn fib(&self) -> Arc<Fib> {
        self.lock_current().fib.clone()
    }

    /// Number of lcores the cell waits for.
    pub fn lcores(&self) -> usize {
        self.seen.len()
    }

    /// Publishes `fib` and `ports` as the next generation; returns it.
    pub fn publish(&self, fib: Arc<Fib>, ports: Arc<PortMap>) -> u64 {
        let old = {
            let mut cur = self.lock_current();
            let generation = cur.generation + 1;
            let new = Arc::new(Snapshot { generation, fib, ports });
            let old = std::mem::replace(&mut *cur, new);
            self.generation.store(generation, Ordering::Release);
            old
        };
        self.retired.lock().unwrap_or_else(|e| e.into_inner()).push(old);
        self.reclaim();
        self.generation()
    }

    /// Lcore `index` forwards with generation `generation` from now on.
    #[inline]
    pub fn ack(&self, index: usize, generation: u64) {
        if let Some(s) = self.seen.get(index) {
            s.store(generation, Ordering::Release);
        }
    }

    /// The oldest generation some lcore still forwards with.
    pub fn oldest_in_use(&self) -> u64 {
        self.seen.iter().map(|s| s.load(Ordering::Acquire)).min().unwrap_or_else(|| self.generation())
    }

    /// Waits until every lcore forwards with generation `generation` or later; false after
    /// `timeout` (an lcore stalled).
    pub fn wait_quiescent(&self, generation: u64, timeout: Duration) -> bool {
        let start = Instant::now();
        loop {
            if self.oldest_in_use() >= generation {
                self.reclaim();
                return true;
            }
            if start.elapsed() >= timeout {
                return false;
            }
            std::thread::sleep(Duration::from_micros(20));
        }
    }

    /// Drops the replaced snapshots no lcore uses any more; returns how many are left.
    pub fn reclaim(&self) -> usize {
        let oldest = self.oldest_in_use();
        let mut retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        // A snapshot of generation g is in use by an lcore that acknowledged g; one that every
        // lcore has moved past is only held here (and perhaps by an agent-side reader, whose
        // drop is harmless).
        retired.retain(|s| s.generation >= oldest);
        retired.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fib::Fib;

    fn fib() -> Arc<Fib> {
        let cfg = crate::config::parse(
            r#"
[eal]
forwarding_cores = [1]
[vrouter]
run_dir = "/tmp/unused"
router_ip = "10.0.0.1"
router_mac = "02:00:00:00:00:01"
[[vif]]
id = 0
name = "fabric0"
type = "fabric"
device = "net_pcap0"
mac = "02:00:00:00:00:02"
vrf = 0
[[vrf]]
id = 0
name = "fabric"
"#,
            "t.toml",
        )
        .unwrap();
        Arc::new(Fib::from_config(&cfg).unwrap())
    }

    #[test]
    fn publish_bumps_generation_and_readers_see_one_snapshot() {
        let cell = FibCell::new(fib(), PortMap::default(), 2);
        assert_eq!(cell.generation(), 1);
        let s1 = cell.load();
        let g = cell.publish(fib(), Arc::new(PortMap::default()));
        assert_eq!(g, 2);
        assert_eq!(cell.load().generation, 2);
        // The reader's snapshot is untouched by the publish.
        assert_eq!(s1.generation, 1);
    }

    #[test]
    fn replaced_snapshots_are_kept_until_every_lcore_moved_on() {
        let cell = FibCell::new(fib(), PortMap::default(), 2);
        let lcore0 = cell.load();
        cell.publish(fib(), Arc::new(PortMap::default()));
        // Neither lcore acknowledged generation 2: generation 1 is retained by the cell.
        assert_eq!(cell.reclaim(), 1);
        assert!(!cell.wait_quiescent(2, Duration::from_millis(5)));
        cell.ack(0, 2);
        assert_eq!(cell.reclaim(), 1, "lcore 1 still forwards with generation 1");
        cell.ack(1, 2);
        assert!(cell.wait_quiescent(2, Duration::from_millis(5)));
        assert_eq!(cell.reclaim(), 0);
        // The cell no longer holds generation 1: the lcore's Arc is the last one.
        assert_eq!(Arc::strong_count(&lcore0), 1);
    }

    #[test]
    fn attach_spreads_queues_to_least_loaded_lcore_and_detach_removes_them() {
        let mut m = PortMap { by_vif: Vec::new(), lcore_rx: vec![Vec::new(), Vec::new()] };
        let slot = |port, rx| PortSlot { port, driver: "x".into(), rx_queues: rx, tx_queues: 2, tx_locks: Vec::new() };
        m.attach(1, slot(0, 3));
        m.attach(4, slot(1, 1));
        assert_eq!(m.lcore_rx[0].len(), 2);
        assert_eq!(m.lcore_rx[1].len(), 2);
        assert_eq!(m.lcore_rx[1][1], RxQueue { vif: 4, port: 1, queue: 0 });
        assert_eq!(m.port(4).map(|p| p.port), Some(1));
        assert_eq!(m.detach(1).map(|p| p.port), Some(0));
        assert!(m.port(1).is_none());
        assert_eq!(m.lcore_rx.iter().map(Vec::len).sum::<usize>(), 1);
    }
}
