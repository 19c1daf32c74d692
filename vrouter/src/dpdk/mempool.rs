//! Packet mbuf pools.

use super::{DpdkError, Result};
use std::ffi::CString;

/// A packet mempool (`rte_pktmbuf_pool_create`). Lives until EAL cleanup.
#[derive(Debug, Clone, Copy)]
pub struct Mempool {
    raw: *mut dpdk_sys::rte_mempool,
}

// SAFETY: a DPDK mempool is designed for concurrent use from every lcore (per-lcore caches
// plus a lock-free ring); the pointer itself is just an address.
unsafe impl Send for Mempool {}
// SAFETY: as above; no `&self` method mutates Rust-visible state.
unsafe impl Sync for Mempool {}

/// Data room of each mbuf: headroom plus a 2048-byte buffer (DPDK's default).
pub const MBUF_DATA_ROOM: u16 = dpdk_sys::RTE_MBUF_DEFAULT_BUF_SIZE as u16;

impl Mempool {
    /// Creates a pool of `n` mbufs with a per-lcore cache of `cache` on `socket`.
    pub fn create(name: &str, n: u32, cache: u32, socket: i32) -> Result<Mempool> {
        let cname = CString::new(name).map_err(|_| DpdkError::Other("pool name has NUL".into()))?;
        // SAFETY: cname is a valid C string for the call; other arguments are plain values.
        let raw = unsafe { dpdk_sys::rte_pktmbuf_pool_create(cname.as_ptr(), n, cache, 0, MBUF_DATA_ROOM, socket) };
        if raw.is_null() {
            return Err(DpdkError::from_ret("rte_pktmbuf_pool_create", -1));
        }
        Ok(Mempool { raw })
    }

    /// The raw mempool pointer (for queue setup and mbuf allocation); the pool stays owned by
    /// `self`.
    pub fn as_ptr(&self) -> *mut dpdk_sys::rte_mempool {
        self.raw
    }
}
