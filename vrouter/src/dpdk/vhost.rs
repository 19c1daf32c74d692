//! The data path of vhost-user ports, straight through librte_vhost.
//!
//! A vhost-user vif is a `net_vhost` port: the PMD creates the vhost-user socket, follows
//! the guest (connection, reconnection, queue enables) and raises the events
//! [`super::link`] records. Its burst functions, though, count statistics per packet
//! (packet-size histogram, multicast/broadcast) and free sent mbufs one by one, about 7% of
//! a forwarding lcore's cycles in VM-to-VM forwarding; nothing reads those ethdev
//! statistics (the vRouter counts per vif itself). So the lcores burst on the guest's
//! virtqueues directly (`rte_vhost_dequeue_burst` / `rte_vhost_enqueue_burst`, through the
//! shim, one call per burst) with the librte_vhost device id (`vid`) of the port, and keep
//! the PMD path where the direct one would differ:
//!
//! * no device known (no guest, or between a guest's going and the next one's coming): the
//!   PMD guards itself (`allow_queuing`) and receives or sends nothing;
//! * a queue the guest has not enabled ([`super::link`] records the queue-state events):
//!   the PMD does not touch it; librte_vhost would log an error per burst on a ring the
//!   guest never set up;
//! * a capture callback on the ethdev queue (`dpdk-dumpcap`): `rte_eth_rx_burst` /
//!   `rte_eth_tx_burst` run it.
//!
//! librte_vhost frees a device once the PMD's `destroy_device` returns; the PMD raises the
//! link-state event (link down) from inside it, and [`sync`] then retires the vid: it
//! stores "no device" and waits until every forwarding lcore has begun a new poll-loop
//! iteration ([`lcore_quiescent`]), so no burst started with the old vid is still running
//! when the device goes. A reconnecting guest gets a new vid, read at its link-up event.

use crossbeam_utils::CachePadded;
use dpdk_sys::{rte_mbuf, rte_mempool};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Mutex;

const PORTS: usize = dpdk_sys::RTE_MAX_ETHPORTS as usize;
const LCORES: usize = dpdk_sys::RTE_MAX_LCORE as usize;

/// Per port: the librte_vhost device the lcores burst on directly, its vid with [`SW_CSUM`]
/// when received partial checksums are to be completed; -1: none (PMD path). Written only
/// under [`WRITER`]; read once per burst.
static VID: [AtomicI32; PORTS] = [const { AtomicI32::new(-1) }; PORTS];

/// In a [`VID`] entry: the guest negotiated `VIRTIO_NET_F_CSUM` (it may leave L4 checksums
/// partial, which the PMD completes in software; so does the direct path). Vids are below
/// `RTE_MAX_VHOST_DEVICE` (1024).
const SW_CSUM: i32 = 1 << 30;

/// `VIRTIO_NET_F_CSUM`: the guest may send packets with a partial checksum.
const VIRTIO_NET_F_CSUM: u64 = 1 << 0;

/// Who calls [`sync`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Caller {
    /// The PMD's event callbacks, on the vhost-user event thread: librte_vhost frees a
    /// device on that thread only, so the device of an up link can be asked about.
    Event,
    /// Another thread (the main thread watching a port): it reads only what the PMD keeps.
    Other,
}

/// Per forwarding lcore (by index): its poll-loop iteration count, 0 while it does not
/// forward. An lcore reads a port's vid only after storing a new count.
static EPOCH: [CachePadded<AtomicU64>; LCORES] = [const { CachePadded::new(AtomicU64::new(0)) }; LCORES];

/// Serialises the vid writers: the vhost-user event thread (link and queue-state events)
/// and the main thread (a port's first reading, its removal).
static WRITER: Mutex<()> = Mutex::new(());

/// The device entry of `port` (-1: none, burst through the PMD; else a vid and
/// [`SW_CSUM`]). Sequentially consistent (a plain load on x86), so that it is ordered after
/// the lcore's [`lcore_quiescent`] store.
#[inline(always)]
fn entry(port: u16) -> i32 {
    VID.get(usize::from(port)).map_or(-1, |v| v.load(Ordering::SeqCst))
}

/// Lcore `index` begins a poll-loop iteration: the bursts it started before with a vid now
/// retired are over. One store (an `xchg` on x86) per iteration.
#[inline(always)]
pub fn lcore_quiescent(index: usize) {
    if let Some(e) = EPOCH.get(index) {
        let next = e.load(Ordering::Relaxed).wrapping_add(1).max(1);
        e.store(next, Ordering::SeqCst);
    }
}

/// Lcore `index` stops forwarding (after its last burst): [`sync`] no longer waits for it.
pub fn lcore_offline(index: usize) {
    if let Some(e) = EPOCH.get(index) {
        e.store(0, Ordering::SeqCst);
    }
}

/// Waits until every forwarding lcore has begun a new iteration (or stopped) since the call.
fn wait_lcores() {
    for e in EPOCH.iter() {
        let seen = e.load(Ordering::SeqCst);
        if seen == 0 {
            continue;
        }
        while e.load(Ordering::SeqCst) == seen {
            std::thread::yield_now();
        }
    }
}

/// Reads the device of vhost-user `port` from the PMD and publishes it to the lcores: its
/// vid while the link is up (the PMD sets the vid before it raises link up), none
/// otherwise. When a vid is retired (the guest went, or a different vid replaces it), waits
/// until no lcore can still be bursting with it. Called from the port's link-state and
/// queue-state events (the PMD raises link down from inside `destroy_device`, before
/// librte_vhost frees the device) and once when the port is first watched. Only an
/// [`Caller::Event`] reads the negotiated features; otherwise partial checksums are looked
/// for whatever the guest negotiated (a flag test per packet).
pub fn sync(port: u16, caller: Caller) {
    let Some(slot) = VID.get(usize::from(port)) else { return };
    let _w = WRITER.lock().unwrap_or_else(|e| e.into_inner());
    let mut link = dpdk_sys::rte_eth_link::default();
    // SAFETY: `link` is a valid out-pointer; the call only reads the port's data.
    let up = unsafe { dpdk_sys::rte_eth_link_get_nowait(port, &mut link) } == 0 && link.link_status() != 0;
    // Before the first guest the PMD's queues hold vid 0 (zeroed memory): only an up link
    // has a device.
    let vid = if up {
        // SAFETY: a plain call; the PMD reads its queue 0 under its own lock.
        unsafe { dpdk_sys::rte_eth_vhost_get_vid_from_port_id(port) }
    } else {
        -1
    };
    let new = if (0..SW_CSUM).contains(&vid) {
        let csum = match caller {
            Caller::Event => {
                let mut features = 0u64;
                // SAFETY: on the event thread the device of an up link exists (librte_vhost
                // frees it on this thread, after the link-down event); `features` is a
                // valid out-pointer.
                let ret = unsafe { dpdk_sys::rte_vhost_get_negotiated_features(vid, &mut features) };
                ret != 0 || features & VIRTIO_NET_F_CSUM != 0
            }
            Caller::Other => true,
        };
        vid | if csum { SW_CSUM } else { 0 }
    } else {
        -1
    };
    let old = slot.swap(new, Ordering::SeqCst);
    let vid_of = |e: i32| if e < 0 { -1 } else { e & !SW_CSUM };
    if old >= 0 && vid_of(old) != vid_of(new) {
        wait_lcores();
    }
    if vid_of(old) != vid_of(new) {
        if new >= 0 {
            tracing::info!("port {port}: vhost-user device {}, bursts on librte_vhost directly", vid_of(new));
        } else {
            tracing::info!("port {port}: vhost-user device {} gone, bursts through the PMD", vid_of(old));
        }
    }
}

/// Forgets `port`'s device (the port is being closed; no lcore bursts on it any more).
pub fn forget(port: u16) {
    if let Some(slot) = VID.get(usize::from(port)) {
        let _w = WRITER.lock().unwrap_or_else(|e| e.into_inner());
        slot.store(-1, Ordering::SeqCst);
    }
}

/// Receives up to `pkts.len()` packets from RX queue `queue` of `port` (any port: only a
/// vhost-user port with a known device and the queue enabled bursts on librte_vhost
/// directly; mbufs come from `pool`, the pool of the port's RX queues).
///
/// # Safety
/// The port is started, this lcore polls the queue alone, `pool` is the port's RX pool,
/// and the caller is a forwarding lcore that called [`lcore_quiescent`] at the start of
/// this iteration.
#[inline(always)]
pub unsafe fn rx_burst(port: u16, queue: u16, pool: *mut rte_mempool, pkts: &mut [*mut rte_mbuf]) -> usize {
    let e = entry(port);
    let (vid, csum) = if e >= 0 && !super::link::rx_queue_off(port, queue) {
        (e & !SW_CSUM, i32::from(e & SW_CSUM != 0))
    } else {
        (-1, 0)
    };
    let n = pkts.len().min(u16::MAX.into()) as u16;
    // SAFETY: the caller's contract; `vid` is live until this lcore's next iteration.
    usize::from(unsafe { dpdk_sys::shim_vhost_rx_burst(port, queue, vid, csum, pool, pkts.as_mut_ptr(), n) })
}

/// Sends `pkts` on TX queue `queue` of `port` (directly on librte_vhost as [`rx_burst`]
/// receives; `off` is [`super::link::tx_queues_off`] of the port). Takes ownership of the
/// first returned count of mbufs (sent, or freed once copied); the rest stay the caller's.
///
/// # Safety
/// The port is started, the mbufs are the caller's, the queue is exclusively the caller's
/// (or it holds the queue's lock), and the caller is a forwarding lcore that called
/// [`lcore_quiescent`] at the start of this iteration.
#[inline(always)]
pub unsafe fn tx_burst(port: u16, queue: u16, off: u32, pkts: &mut [*mut rte_mbuf]) -> usize {
    let e = entry(port);
    let vid = if e >= 0 && off & 1u32.checked_shl(u32::from(queue)).unwrap_or(0) == 0 { e & !SW_CSUM } else { -1 };
    // SAFETY: the caller's contract; `vid` is live until this lcore's next iteration.
    usize::from(unsafe {
        dpdk_sys::shim_vhost_tx_burst(port, queue, vid, pkts.as_mut_ptr(), pkts.len().min(u16::MAX.into()) as u16)
    })
}
