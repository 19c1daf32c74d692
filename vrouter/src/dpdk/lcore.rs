//! Launching closures on EAL worker lcores (each pinned to its CPU by the EAL).

use super::{DpdkError, Result};

// Every lcore DPDK can run fits every shared region: the stats, mirror, flow-table and trace
// regions accept up to `vrouter_abi::MAX_LCORES` forwarding lcores.
const _: () = assert!(
    dpdk_sys::RTE_MAX_LCORE as usize <= vrouter_abi::MAX_LCORES,
    "DPDK's RTE_MAX_LCORE exceeds vrouter_abi::MAX_LCORES: raise the shared bound"
);

type Job = Box<dyn FnOnce() -> i32 + Send + 'static>;

extern "C" fn trampoline(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the Box<Job> leaked by `launch` for exactly this call; we take it back
    // once.
    let job: Box<Job> = unsafe { Box::from_raw(arg as *mut Job) };
    job()
}

/// Runs `f` on worker lcore `lcore_id`. The lcore must be idle (WAIT state).
pub fn launch<F>(lcore_id: u32, f: F) -> Result<()>
where
    F: FnOnce() -> i32 + Send + 'static,
{
    let job: Box<Job> = Box::new(Box::new(f));
    let arg = Box::into_raw(job) as *mut libc::c_void;
    // SAFETY: trampoline has the lcore_function_t signature and consumes `arg` exactly once
    // if the launch succeeds.
    let ret = unsafe { dpdk_sys::rte_eal_remote_launch(Some(trampoline), arg, lcore_id) };
    if ret < 0 {
        // SAFETY: the launch failed, so the trampoline will never run; reclaim the job.
        drop(unsafe { Box::from_raw(arg as *mut Job) });
        return Err(DpdkError::from_ret("rte_eal_remote_launch", ret));
    }
    Ok(())
}

/// Waits for `lcore_id` to finish its job; returns the job's return value.
pub fn wait(lcore_id: u32) -> i32 {
    // SAFETY: plain call; returns 0 immediately if the lcore is not running anything.
    unsafe { dpdk_sys::rte_eal_wait_lcore(lcore_id) }
}

/// Is `lcore_id` enabled in the EAL's lcore set?
pub fn is_enabled(lcore_id: u32) -> bool {
    // SAFETY: plain getter.
    unsafe { dpdk_sys::rte_lcore_is_enabled(lcore_id) != 0 }
}

/// The NUMA socket of an lcore (0 if unknown).
pub fn socket_of(lcore_id: u32) -> i32 {
    // SAFETY: plain getter.
    let s = unsafe { dpdk_sys::rte_lcore_to_socket_id(lcore_id) };
    if s == u32::MAX {
        0
    } else {
        s as i32
    }
}

/// Fails unless every lcore id in `lcores` is enabled in the EAL (the forwarding cores were passed
/// to it).
pub fn check_enabled(lcores: &[u32]) -> Result<()> {
    for &l in lcores {
        if !is_enabled(l) {
            return Err(DpdkError::Other(format!("lcore {l} is not enabled in the EAL")));
        }
    }
    Ok(())
}
