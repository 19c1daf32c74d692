//! Port link state as the forwarding lcores read it: one flag per DPDK port, kept current by
//! the driver's link-state-change event (`RTE_ETH_EVENT_INTR_LSC`, which the vhost PMD raises
//! when a guest's driver starts or its socket closes) and by a periodic refresh from the main
//! thread ([`refresh`]) for drivers without the event.
//!
//! An lcore checks the flag of an output port once per TX flush (a relaxed load of a static)
//! and drops the buffer as `Link Down` instead of handing it to a queue nobody reads.
//!
//! A vhost-user port also has TX queues the guest may leave disabled: a guest with fewer
//! vCPUs than the vif's queue pairs enables only some (Linux virtio-net enables one pair per
//! vCPU). The vhost PMD reports each virtqueue it enables or disables
//! (`RTE_ETH_EVENT_QUEUE_STATE`); [`tx_queues_off`] is the set of the port's TX queues the
//! guest does not read, so an lcore whose own queue is off sends on one that is on.
//! [`rx_queue_off`] is the same for the port's RX queues (the guest's TX virtqueues).
//!
//! The events also keep the vhost-user port's librte_vhost device current
//! ([`super::vhost::sync`]), which the lcores burst on directly.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

const PORTS: usize = dpdk_sys::RTE_MAX_ETHPORTS as usize;

/// `true` for a port whose link is down. Ports start up (a port id is only used once the
/// port is started, and a started pcap, ring or af_packet port is up); [`watch`] sets a
/// vhost-user port down until its guest connects.
static DOWN: [AtomicBool; PORTS] = [const { AtomicBool::new(false) }; PORTS];

/// Per vhost-user port, bit `q` set: the guest does not read TX queue `q` (its RX virtqueue
/// `q` is not enabled). Zero for every other port. All bits are set while no guest is
/// connected; enable events clear them.
static TXQ_OFF: [AtomicU32; PORTS] = [const { AtomicU32::new(0) }; PORTS];

/// Per vhost-user port, bit `q` set: the guest does not send on RX queue `q` (its TX
/// virtqueue `q` is not enabled). As [`TXQ_OFF`] otherwise.
static RXQ_OFF: [AtomicU32; PORTS] = [const { AtomicU32::new(0) }; PORTS];

/// The ports whose queue state follows a vhost-user guest.
static VHOST: [AtomicBool; PORTS] = [const { AtomicBool::new(false) }; PORTS];

/// The driver name of DPDK's vhost-user PMD (`rte_eth_dev_info.driver_name`).
pub const VHOST_DRIVER: &str = "net_vhost";

/// TX queue state events track at most this many queues (a vhost vif has at most 16 pairs).
const TRACKED_QUEUES: u32 = 32;

/// Whether `port`'s link is down (out-of-range ids read as up).
#[inline]
pub fn is_down(port: u16) -> bool {
    DOWN.get(usize::from(port)).is_some_and(|d| d.load(Ordering::Relaxed))
}

/// Reads `port`'s link from the driver (`rte_eth_link_get_nowait`), records it and returns
/// whether it is up. A driver that cannot tell leaves the recorded state as it is.
pub fn refresh(port: u16) -> bool {
    let mut link = dpdk_sys::rte_eth_link::default();
    // SAFETY: `link` is a valid out-pointer; the call only reads the port's data.
    let ret = unsafe { dpdk_sys::rte_eth_link_get_nowait(port, &mut link) };
    let Some(flag) = DOWN.get(usize::from(port)) else { return true };
    if ret < 0 {
        return !flag.load(Ordering::Relaxed);
    }
    let up = link.link_status() != 0;
    flag.store(!up, Ordering::Relaxed);
    up
}

/// The TX queues of `port` its guest does not read (bit `q` for queue `q`); 0 for a port
/// that is not vhost-user or whose guest reads every queue.
#[inline]
pub fn tx_queues_off(port: u16) -> u32 {
    TXQ_OFF.get(usize::from(port)).map_or(0, |m| m.load(Ordering::Relaxed))
}

/// Whether the guest of vhost-user `port` leaves RX queue `queue` off (never for other
/// ports).
#[inline]
pub fn rx_queue_off(port: u16, queue: u16) -> bool {
    let m = RXQ_OFF.get(usize::from(port)).map_or(0, |m| m.load(Ordering::Relaxed));
    m & 1u32.checked_shl(u32::from(queue)).unwrap_or(0) != 0
}

/// The queue-state event handler (vhost-user ports): takes the pending virtqueue changes
/// ([`take_queue_events`]), then re-reads the port's device.
unsafe extern "C" fn on_queue_state(
    port: u16,
    _event: dpdk_sys::rte_eth_event_type,
    _arg: *mut std::os::raw::c_void,
    _ret: *mut std::os::raw::c_void,
) -> std::os::raw::c_int {
    take_queue_events(port);
    super::vhost::sync(port, super::vhost::Caller::Event);
    0
}

/// Takes every pending virtqueue change of vhost-user `port` from the PMD and records it
/// (`ev.rx`: the guest's TX virtqueue, a host RX queue).
fn take_queue_events(port: u16) {
    let (Some(tx), Some(rx)) = (TXQ_OFF.get(usize::from(port)), RXQ_OFF.get(usize::from(port))) else { return };
    let mut ev = dpdk_sys::rte_eth_vhost_queue_event::default();
    // SAFETY: `ev` is a valid out-pointer; the call reads the PMD's per-port queue state
    // under its own lock.
    while unsafe { dpdk_sys::rte_eth_vhost_get_queue_event(port, &mut ev) } == 0 {
        if u32::from(ev.queue_id) < TRACKED_QUEUES {
            let mask = if ev.rx { rx } else { tx };
            let bit = 1u32 << ev.queue_id;
            if ev.enable {
                mask.fetch_and(!bit, Ordering::Relaxed);
            } else {
                mask.fetch_or(bit, Ordering::Relaxed);
            }
        }
    }
}

/// The LSC event handler: runs on the thread that raises the event (the vhost-user socket
/// thread for `net_vhost`).
unsafe extern "C" fn on_lsc(
    port: u16,
    _event: dpdk_sys::rte_eth_event_type,
    _arg: *mut std::os::raw::c_void,
    _ret: *mut std::os::raw::c_void,
) -> std::os::raw::c_int {
    let up = refresh(port);
    if VHOST.get(usize::from(port)).is_some_and(|v| v.load(Ordering::Relaxed)) {
        if !up {
            // The guest is gone and its virtqueues with it (the PMD forgets them without
            // queue events; the next guest's enables come after this event, on the same
            // thread). Only this event resets them: the periodic refresh may see the link
            // still down after a new guest's queues were enabled.
            TXQ_OFF[usize::from(port)].store(u32::MAX, Ordering::Relaxed);
            RXQ_OFF[usize::from(port)].store(u32::MAX, Ordering::Relaxed);
        }
        // Link down: the device is being destroyed (this runs inside the PMD's
        // `destroy_device`): retire its vid before librte_vhost frees it. Link up: a guest's
        // (new) device.
        super::vhost::sync(port, super::vhost::Caller::Event);
    }
    0
}

/// Follows `port`'s link-state events from now on and records its current state (read after
/// the registration, so no change is missed). Call it once the port is started (a stopped
/// port reads down); [`unwatch`] before it is closed.
/// For a vhost-user port (`driver` is the vhost PMD's), its TX queues' state is followed as
/// well ([`tx_queues_off`]).
pub fn watch(port: u16, driver: &str) -> super::Result<()> {
    let vhost = driver == VHOST_DRIVER;
    if let (Some(v), Some(tx), Some(rx)) =
        (VHOST.get(usize::from(port)), TXQ_OFF.get(usize::from(port)), RXQ_OFF.get(usize::from(port)))
    {
        v.store(vhost, Ordering::Relaxed);
        tx.store(if vhost { u32::MAX } else { 0 }, Ordering::Relaxed);
        rx.store(if vhost { u32::MAX } else { 0 }, Ordering::Relaxed);
    }
    if vhost {
        // SAFETY: `on_queue_state` matches `rte_eth_dev_cb_fn`, takes no argument and lives
        // forever.
        let ret = unsafe {
            dpdk_sys::rte_eth_dev_callback_register(
                port,
                dpdk_sys::rte_eth_event_type_RTE_ETH_EVENT_QUEUE_STATE,
                Some(on_queue_state),
                std::ptr::null_mut(),
            )
        };
        if ret < 0 {
            return Err(super::DpdkError::from_ret("rte_eth_dev_callback_register", ret));
        }
        // Queues enabled before the registration are pending in the PMD: take them now.
        take_queue_events(port);
    }
    // SAFETY: `on_lsc` matches `rte_eth_dev_cb_fn`, takes no argument and lives forever.
    let ret = unsafe {
        dpdk_sys::rte_eth_dev_callback_register(
            port,
            dpdk_sys::rte_eth_event_type_RTE_ETH_EVENT_INTR_LSC,
            Some(on_lsc),
            std::ptr::null_mut(),
        )
    };
    if ret < 0 {
        return Err(super::DpdkError::from_ret("rte_eth_dev_callback_register", ret));
    }
    refresh(port);
    if vhost {
        // A guest that connected before the registration: its device (later changes come
        // with the events).
        super::vhost::sync(port, super::vhost::Caller::Other);
    }
    Ok(())
}

/// Stops following `port`'s link events ([`watch`]) and forgets its state.
pub fn unwatch(port: u16) {
    // SAFETY: unregisters exactly what `watch` registered; harmless when it did not.
    unsafe {
        dpdk_sys::rte_eth_dev_callback_unregister(
            port,
            dpdk_sys::rte_eth_event_type_RTE_ETH_EVENT_INTR_LSC,
            Some(on_lsc),
            std::ptr::null_mut(),
        )
    };
    if VHOST.get(usize::from(port)).is_some_and(|v| v.swap(false, Ordering::Relaxed)) {
        super::vhost::forget(port);
        // SAFETY: as above, for the queue-state handler.
        unsafe {
            dpdk_sys::rte_eth_dev_callback_unregister(
                port,
                dpdk_sys::rte_eth_event_type_RTE_ETH_EVENT_QUEUE_STATE,
                Some(on_queue_state),
                std::ptr::null_mut(),
            )
        };
    }
    if let Some(flag) = DOWN.get(usize::from(port)) {
        flag.store(false, Ordering::Relaxed);
    }
    if let Some(m) = TXQ_OFF.get(usize::from(port)) {
        m.store(0, Ordering::Relaxed);
    }
    if let Some(m) = RXQ_OFF.get(usize::from(port)) {
        m.store(0, Ordering::Relaxed);
    }
}
