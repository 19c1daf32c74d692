//! The safe layer over `dpdk-sys`: it owns EAL initialisation, mempools, ports, queues, mbufs
//! and lcore launch. Everything above it (the datapath) works with these types and never calls
//! `dpdk_sys` directly except for the burst calls in the lcore loop.

pub mod eal;
pub mod lcore;
pub mod link;
pub mod mbuf;
pub mod mempool;
pub mod port;
pub mod socket;
pub mod vhost;

pub use eal::Eal;
pub use mbuf::Mbuf;
pub use mempool::Mempool;
pub use port::{Port, PortConfig, PortInfo};

/// A DPDK call failed.
#[derive(Debug, thiserror::Error)]
pub enum DpdkError {
    /// A DPDK function returned an error.
    #[error("{call} failed: {msg} (errno {errno})")]
    Call {
        /// The function, e.g. `rte_eth_dev_start`.
        call: &'static str,
        /// The error number (from the return value or `rte_errno`).
        errno: i32,
        /// `rte_strerror` of it.
        msg: String,
    },
    /// Another failure, described in words (a bad argument, a device not found, ...).
    #[error("{0}")]
    Other(String),
}

impl DpdkError {
    /// Error from a negative return value (`-errno`) or from `rte_errno` when `ret` is -1 or
    /// the call returned NULL.
    pub fn from_ret(call: &'static str, ret: i32) -> Self {
        let errno = if ret < -1 { -ret } else { rte_errno() };
        DpdkError::Call { call, errno, msg: strerror(errno) }
    }
}

/// Result of the DPDK layer.
pub type Result<T> = std::result::Result<T, DpdkError>;

/// The calling lcore's `rte_errno`.
pub fn rte_errno() -> i32 {
    // SAFETY: reads a thread-local integer through the shim; no preconditions.
    unsafe { dpdk_sys::shim_rte_errno() }
}

/// DPDK's text for an errno value (covers DPDK-specific codes such as E_RTE_SECONDARY).
pub fn strerror(errno: i32) -> String {
    // SAFETY: rte_strerror returns a pointer to a static or thread-local NUL-terminated
    // string that stays valid until the next call on this thread; we copy it at once.
    unsafe {
        let p = dpdk_sys::rte_strerror(errno);
        if p.is_null() {
            return format!("errno {errno}");
        }
        std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

/// TSC frequency in Hz.
pub fn tsc_hz() -> u64 {
    // SAFETY: plain getter, valid after EAL init (returns 0 before).
    unsafe { dpdk_sys::rte_get_tsc_hz() }
}

/// Current TSC value: the counter `rte_rdtsc` reads, inlined (DPDK's is a `static inline`
/// C function, which bindgen reaches only through an out-of-line wrapper).
#[inline(always)]
pub fn rdtsc() -> u64 {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    {
        crate::clock::rdtsc()
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        // SAFETY: reads the time-stamp counter; no memory access.
        unsafe { dpdk_sys::rte_rdtsc() }
    }
}
