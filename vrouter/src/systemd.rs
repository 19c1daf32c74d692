//! The `vrouter` binary under systemd (`deploy/systemd/vrouter.service`, `Type=notify`):
//! `READY=1` once the forwarding lcores run, `WATCHDOG=1` while they make progress,
//! `STOPPING=1` when SIGTERM or SIGINT arrives. Without `NOTIFY_SOCKET` nothing is sent.
//!
//! (A module of the `vrouter` binary, not of the library; the protocol is the `sdnotify`
//! crate's.)
//!
//! **What "alive" means.** Every forwarding lcore counts each iteration of its poll loop in
//! its block of the stats region (`busy_polls` when a burst arrived, `idle_polls` when none
//! did: one of the two moves on every iteration, with or without traffic). At each watchdog
//! check (every half `WatchdogSec=`, from the main loop) the vRouter is alive when the sum of
//! the two moved since the previous check *for every lcore*, and the main loop itself runs
//! (it makes the check). An lcore stuck in a driver call or spinning outside its loop, or a
//! wedged main thread, withholds the keep-alive; systemd then kills the vRouter after
//! `WatchdogSec=` and `Restart=on-failure` starts it again. A withheld keep-alive says which
//! lcores stalled in `STATUS=` (`systemctl status vrouter`).

use std::time::Instant;
use vrouter::stats::StatsRegion;

/// How long READY waits for every forwarding lcore's first poll-loop iteration.
const READY_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The notifications of one vRouter run.
pub struct Systemd {
    notifier: Option<sdnotify::Notifier>,
    watchdog: Option<sdnotify::Watchdog>,
    progress: LcoreProgress,
    /// The last check withheld the keep-alive (its STATUS says so until one is sent again).
    withheld: bool,
}

/// Poll-loop iterations of each forwarding lcore, as of the last check.
#[derive(Debug, Default)]
struct LcoreProgress {
    last: Vec<u64>,
}

impl LcoreProgress {
    /// Records `polls` (per lcore) and returns the lcores whose count did not move since the
    /// previous call (none on the first call, or when the number of lcores changed).
    fn stalled(&mut self, polls: Vec<u64>) -> Vec<usize> {
        let stalled = if self.last.len() == polls.len() {
            polls.iter().zip(&self.last).enumerate().filter(|(_, (now, then))| now == then).map(|(i, _)| i).collect()
        } else {
            Vec::new()
        };
        self.last = polls;
        stalled
    }
}

/// Poll-loop iterations of each lcore of `stats`.
fn polls(stats: &StatsRegion) -> Vec<u64> {
    (0..stats.n_lcores())
        .map(|i| {
            let c = stats.lcore_counters(Some(i));
            c.busy_polls.wrapping_add(c.idle_polls)
        })
        .collect()
}

/// A failed notification is logged; the vRouter goes on.
fn log(r: Result<(), sdnotify::NotifyError>) {
    if let Err(e) = r {
        tracing::warn!("vrouter: {e}");
    }
}

impl Systemd {
    /// From `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`; a variable that cannot be
    /// used is reported and turns that part off.
    pub fn from_env() -> Systemd {
        let notifier = sdnotify::Notifier::from_env().unwrap_or_else(|e| {
            tracing::warn!("vrouter: systemd notifications off: {e}");
            None
        });
        let watchdog = match &notifier {
            Some(_) => sdnotify::Watchdog::from_env().unwrap_or_else(|e| {
                tracing::warn!("vrouter: systemd watchdog off: {e}");
                None
            }),
            None => None,
        };
        Systemd { notifier, watchdog, progress: LcoreProgress::default(), withheld: false }
    }

    /// `READY=1` with `status`, once every forwarding lcore has been seen going round its
    /// poll loop (its count moved since this call: counters continued from a previous
    /// process are not proof); the lcores' progress is counted from here. An lcore that
    /// does not poll within [`READY_WAIT`] is reported and READY goes anyway: the watchdog
    /// then withholds its keep-alives.
    pub fn ready(&mut self, stats: &StatsRegion, status: &str) {
        let Some(n) = &self.notifier else { return };
        let start = polls(stats);
        let t0 = Instant::now();
        loop {
            let idle = LcoreProgress { last: start.clone() }.stalled(polls(stats));
            if idle.is_empty() {
                break;
            }
            if t0.elapsed() >= READY_WAIT {
                tracing::warn!(
                    "vrouter: forwarding lcore(s) {idle:?} (stats index) did not poll within {} ms; READY anyway",
                    READY_WAIT.as_millis()
                );
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        self.progress.stalled(polls(stats));
        if let Some(w) = &mut self.watchdog {
            *w = sdnotify::Watchdog::new(w.timeout());
            tracing::info!(
                "vrouter: systemd watchdog: keep-alive every {} ms while every lcore polls",
                w.interval().as_millis()
            );
        }
        log(n.ready(status));
    }

    /// Called from the main loop: when a keep-alive is due, sends it if every lcore moved.
    pub fn tick(&mut self, stats: &StatsRegion) {
        let (Some(n), Some(w)) = (&self.notifier, &mut self.watchdog) else { return };
        if !w.due(Instant::now()) {
            return;
        }
        let stalled = self.progress.stalled(polls(stats));
        if stalled.is_empty() {
            log(n.watchdog());
            if self.withheld {
                log(n.status("forwarding: every lcore polls again"));
                self.withheld = false;
            }
        } else {
            log(n.status(&format!(
                "forwarding lcore(s) {stalled:?} (stats index) made no progress in {} ms: watchdog withheld",
                w.interval().as_millis()
            )));
            self.withheld = true;
        }
    }

    /// `STOPPING=1`.
    pub fn stopping(&self) {
        if let Some(n) = &self.notifier {
            log(n.stopping("stopping: lcores, ports, agent, EAL"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LcoreProgress;

    #[test]
    fn an_lcore_whose_poll_count_stands_still_is_stalled() {
        let mut p = LcoreProgress::default();
        assert!(p.stalled(vec![10, 20]).is_empty(), "first snapshot");
        assert!(p.stalled(vec![11, 25]).is_empty(), "both moved");
        assert_eq!(p.stalled(vec![11, 30]), vec![0], "lcore 0 stood still");
        assert_eq!(p.stalled(vec![11, 30]), vec![0, 1]);
        assert!(p.stalled(vec![12, 31]).is_empty(), "both moved again");
    }
}
