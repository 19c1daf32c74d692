//! Port link state as the forwarding lcores read it: one flag per DPDK port, kept current by
//! the driver's link-state-change event (`RTE_ETH_EVENT_INTR_LSC`, which the vhost PMD raises
//! when a guest's driver starts or its socket closes) and by a periodic refresh from the main
//! thread ([`refresh`]) for drivers without the event.
//!
//! An lcore checks the flag of an output port once per TX flush (a relaxed load of a static)
//! and drops the buffer as `Link Down` instead of handing it to a queue nobody reads.

use std::sync::atomic::{AtomicBool, Ordering};

const PORTS: usize = dpdk_sys::RTE_MAX_ETHPORTS as usize;

/// `true` for a port whose link is down. Ports start up (a port id is only used once the
/// port is started, and a started pcap, ring or af_packet port is up); [`watch`] sets a
/// vhost-user port down until its guest connects.
static DOWN: [AtomicBool; PORTS] = [const { AtomicBool::new(false) }; PORTS];

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

/// The LSC event handler: runs on the thread that raises the event (the vhost-user socket
/// thread for `net_vhost`).
unsafe extern "C" fn on_lsc(
    port: u16,
    _event: dpdk_sys::rte_eth_event_type,
    _arg: *mut std::os::raw::c_void,
    _ret: *mut std::os::raw::c_void,
) -> std::os::raw::c_int {
    refresh(port);
    0
}

/// Follows `port`'s link-state events from now on and records its current state (read after
/// the registration, so no change is missed). Call it once the port is started (a stopped
/// port reads down); [`unwatch`] before it is closed.
pub fn watch(port: u16) -> super::Result<()> {
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
    if let Some(flag) = DOWN.get(usize::from(port)) {
        flag.store(false, Ordering::Relaxed);
    }
}
