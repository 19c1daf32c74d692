//! Starting on a run directory another vRouter may still use: refused, unless this one was
//! started with `--takeover` (a planned restart or upgrade), which stops the running one
//! once everything that does not touch the shared state is ready.
//!
//! (A module of the `vrouter` binary, not of the library.)
//!
//! The running vRouter is the owner of `<run_dir>/stats` (pid and process start time in the
//! region header, [`shm::region_owner`]). A takeover initialises its EAL under its own file
//! prefix first (two primaries cannot share one), then sends the running vRouter SIGTERM
//! (its normal, clean stop: lcores and ports first, then agent and exporter, which saves its
//! export state) and waits for it to exit; then it reattaches the flow table, continues the
//! counters, opens the ports (vhost-user VMs reconnect) and forwards. The forwarding gap is
//! the old process's stop plus this one's start from the flow table on.

use anyhow::{bail, Result};
use std::path::Path;
use std::time::{Duration, Instant};

/// How long a takeover waits for the running vRouter to exit.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A vRouter that runs on the run directory.
#[derive(Clone, Copy, Debug)]
pub struct Predecessor {
    /// Its pid.
    pub pid: u32,
    start_ticks: u64,
}

impl Predecessor {
    /// The vRouter that owns `<run_dir>/stats` and still runs, if any (not this process).
    pub fn find(run_dir: &Path) -> Option<Predecessor> {
        let stats = run_dir.join(vrouter::stats::STATS_FILE_NAME);
        match shm::region_owner(&stats) {
            Some((pid, start_ticks, true)) if pid != std::process::id() => Some(Predecessor { pid, start_ticks }),
            _ => None,
        }
    }

    /// Whether it still runs.
    pub fn alive(&self) -> bool {
        shm::owner_alive(self.pid, self.start_ticks)
    }

    /// Sends it SIGTERM and waits until it has exited; returns how long it took.
    pub fn stop(&self, timeout: Duration) -> Result<Duration> {
        let t = Instant::now();
        // SAFETY: kill(2) with a pid and a signal number; no memory is passed.
        let rc = unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGTERM) };
        if rc != 0 && self.alive() {
            bail!("--takeover: signalling the running vRouter (pid {}): {}", self.pid, std::io::Error::last_os_error());
        }
        while self.alive() {
            if t.elapsed() > timeout {
                bail!("--takeover: the running vRouter (pid {}) did not stop within {} s", self.pid, timeout.as_secs());
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        Ok(t.elapsed())
    }
}

/// The EAL arguments of a takeover: its own `--file-prefix` (`<prefix>.t<pid>`), since the
/// running vRouter still holds its own while this one initialises.
pub fn takeover_eal_args(args: &[String]) -> Vec<String> {
    let pid = std::process::id();
    args.iter()
        .map(|a| match a.strip_prefix("--file-prefix=") {
            Some(p) => format!("--file-prefix={p}.t{pid}"),
            None => a.clone(),
        })
        .collect()
}
