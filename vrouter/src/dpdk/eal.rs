//! EAL initialisation and cleanup. `rte_eal_init` may run once per process; [`Eal`] is the
//! proof that it did, and [`Eal::cleanup`] releases what it set up (the per-prefix runtime
//! directory lock included) after all lcores have returned. [`Eal::init_pdump`] initialises
//! DPDK's packet-capture framework (`rte_pdump_init`), which `dpdk-dumpcap`, a secondary
//! process, asks over the EAL's multi-process channel to install its capture callbacks on a
//! port's queues; [`Eal::cleanup`] uninitialises it first.

use super::{DpdkError, Result};
use std::ffi::CString;
use std::sync::atomic::{AtomicBool, Ordering};

static INITIALISED: AtomicBool = AtomicBool::new(false);

/// An initialised EAL. Not `Clone`: exactly one per process.
#[derive(Debug)]
pub struct Eal {
    /// `rte_pdump_init` succeeded: `rte_pdump_uninit` before the EAL cleanup.
    pdump: bool,
}

impl Eal {
    /// Initialises the EAL with `args` (program name first). Fails if called twice.
    pub fn init(args: &[String]) -> Result<Eal> {
        if INITIALISED.swap(true, Ordering::SeqCst) {
            return Err(DpdkError::Other("the EAL is already initialised in this process".into()));
        }
        let cargs: Vec<CString> = args
            .iter()
            .map(|a| CString::new(a.as_str()))
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| DpdkError::Other("EAL argument contains a NUL byte".into()))?;
        // rte_eal_init may permute argv; give it its own array of pointers.
        let mut argv: Vec<*mut libc::c_char> = cargs.iter().map(|c| c.as_ptr().cast_mut()).collect();
        argv.push(std::ptr::null_mut());
        // SAFETY: argv holds argc valid NUL-terminated strings (kept alive by `cargs` for the
        // duration of the call; EAL copies what it keeps) and a terminating NULL.
        let ret = unsafe { dpdk_sys::rte_eal_init(cargs.len() as i32, argv.as_mut_ptr()) };
        if ret < 0 {
            return Err(DpdkError::from_ret("rte_eal_init", ret));
        }
        Ok(Eal { pdump: false })
    }

    /// Initialises the packet-capture framework (`rte_pdump_init`): registers the
    /// multi-process action through which `dpdk-dumpcap` (a secondary process on the same
    /// `--file-prefix`) enables and disables captures. Nothing runs on the forwarding path
    /// until a capture starts: the RX/TX callbacks are installed on the port's queues then,
    /// and removed when it stops. Needs a primary process that secondaries can attach to
    /// (huge pages whose files stay, no `--in-memory`); a second call does nothing.
    pub fn init_pdump(&mut self) -> Result<()> {
        if self.pdump {
            return Ok(());
        }
        // SAFETY: called after rte_eal_init succeeded (an `Eal` exists), from the main thread;
        // rte_pdump_init only registers a multi-process action and reserves its stats memzone.
        let ret = unsafe { dpdk_sys::rte_pdump_init() };
        if ret < 0 {
            return Err(DpdkError::from_ret("rte_pdump_init", ret));
        }
        self.pdump = true;
        Ok(())
    }

    /// Whether [`Eal::init_pdump`] succeeded.
    pub fn pdump(&self) -> bool {
        self.pdump
    }

    /// The main lcore's id.
    pub fn main_lcore(&self) -> u32 {
        // SAFETY: getter valid after init.
        unsafe { dpdk_sys::rte_get_main_lcore() }
    }

    /// Releases EAL resources. Call after every worker lcore has returned and every port is
    /// closed.
    pub fn cleanup(self) -> Result<()> {
        if self.pdump {
            // SAFETY: rte_pdump_init succeeded in this process; every port is closed, so no
            // capture callback can run any more.
            unsafe { dpdk_sys::rte_pdump_uninit() };
        }
        // SAFETY: called once (consumes self), after all lcores finished (caller contract).
        let ret = unsafe { dpdk_sys::rte_eal_cleanup() };
        if ret < 0 {
            return Err(DpdkError::from_ret("rte_eal_cleanup", ret));
        }
        Ok(())
    }
}
