//! Waking the agent thread when there is work, so that an idle agent sleeps instead of
//! polling.
//!
//! The agent used to poll its inputs with sleeps of at most 100 us: 10 000 wake-ups a second
//! on the control core with nothing to do, each one a context switch that took the CPU (and
//! its caches) from whatever else ran there. Now, after a short back-off, it blocks on an
//! eventfd until one of its inputs has something or the next housekeeping pass is due.
//!
//! Contract (held by the tests below):
//! - **No lost wake-up.** A producer that made work visible (a setup request pushed on an
//!   lcore's ring, a request sent on a channel) and then called [`AgentWake::notify`] or
//!   [`AgentWake::ring`] never leaves the agent asleep past it.
//!   - Lcores (`notify`): the agent stores `sleeping` and then checks its rings; the lcore
//!     pushes and then loads `sleeping`, each with a sequentially consistent fence between its
//!     store and its load, so at least one of them sees the other's store (Dekker). The lcore
//!     writes the eventfd only when it saw the agent asleep: no system call on the data plane
//!     while the agent is awake.
//!   - Channels (`ring`): the agent cannot look into a channel before sleeping, so senders
//!     always write the eventfd. The eventfd is level-triggered: a write before the agent
//!     polls makes the poll return at once.
//! - **Bounded sleep.** The agent never blocks longer than the timeout it passes (its next
//!   housekeeping), whatever happens to wake-ups.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::time::Duration;

/// The agent's doorbell: an eventfd and whether the agent is (about to be) asleep.
#[derive(Debug)]
pub struct AgentWake {
    sleeping: AtomicBool,
    fd: OwnedFd,
}

impl AgentWake {
    /// A doorbell with nobody asleep.
    pub fn new() -> std::io::Result<AgentWake> {
        // SAFETY: eventfd takes no pointers; a non-negative return is a new descriptor that
        // nothing else owns.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened above and is owned by nothing else.
        Ok(AgentWake { sleeping: AtomicBool::new(false), fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    /// For a forwarding lcore, after the iteration's setup requests were pushed: wakes the
    /// agent if it sleeps. A fence and a load while the agent is awake.
    #[inline]
    pub fn notify(&self) {
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed) && self.sleeping.swap(false, Ordering::AcqRel) {
            self.write();
        }
    }

    /// For a sender on one of the agent's channels, after the send (and for the thread that
    /// stops the agent): wakes the agent whether or not it sleeps yet.
    pub fn ring(&self) {
        self.sleeping.store(false, Ordering::Relaxed);
        self.write();
    }

    #[cold]
    fn write(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our eventfd. EAGAIN (the counter at its
        // maximum) means a wake-up is pending anyway.
        let _ = unsafe { libc::write(self.fd.as_raw_fd(), (&raw const one).cast(), 8) };
    }

    /// For the agent: blocks until a wake-up or `timeout`, unless `pending` (which looks at
    /// the lcores' rings) finds work once the agent is marked asleep. Returns whether it slept.
    pub fn sleep(&self, timeout: Duration, pending: impl FnOnce() -> bool) -> bool {
        self.sleeping.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let slept = !pending();
        if slept {
            let mut pfd = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // Round up: a zero timeout would spin.
            let ms = timeout.as_micros().div_ceil(1000).clamp(1, i32::MAX as u128) as i32;
            // SAFETY: one valid pollfd for the duration of the call. EINTR is an early return.
            let _ = unsafe { libc::poll(&mut pfd, 1, ms) };
        }
        self.sleeping.store(false, Ordering::Relaxed);
        // Reset the counter; a wake-up written after this stays pending for the next sleep,
        // which then returns at once (a spurious wake-up, never a lost one).
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64 from our non-blocking eventfd; EAGAIN when
        // nothing was written.
        let _ = unsafe { libc::read(self.fd.as_raw_fd(), (&raw mut v).cast(), 8) };
        slept
    }

    /// Whether the agent is marked asleep (tests and diagnostics).
    pub fn is_sleeping(&self) -> bool {
        self.sleeping.load(Ordering::Relaxed)
    }
}

/// A channel into the agent whose sends wake it.
#[derive(Debug)]
pub struct Mailbox<T> {
    tx: std::sync::mpsc::SyncSender<T>,
    wake: std::sync::Arc<AgentWake>,
}

impl<T> Clone for Mailbox<T> {
    fn clone(&self) -> Self {
        Mailbox { tx: self.tx.clone(), wake: self.wake.clone() }
    }
}

impl<T> Mailbox<T> {
    /// Sends through `tx` and rings `wake`.
    pub fn new(tx: std::sync::mpsc::SyncSender<T>, wake: std::sync::Arc<AgentWake>) -> Mailbox<T> {
        Mailbox { tx, wake }
    }

    /// Queues `v` without blocking and wakes the agent.
    pub fn try_send(&self, v: T) -> Result<(), std::sync::mpsc::TrySendError<T>> {
        self.tx.try_send(v)?;
        self.wake.ring();
        Ok(())
    }

    /// Queues `v`, waiting for room, and wakes the agent.
    pub fn send(&self, v: T) -> Result<(), std::sync::mpsc::SendError<T>> {
        // Ring first too: a full channel drains only while the agent is awake.
        self.wake.ring();
        self.tx.send(v)?;
        self.wake.ring();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn sleep_times_out_without_wake_ups() {
        let w = AgentWake::new().unwrap();
        let t = Instant::now();
        assert!(w.sleep(Duration::from_millis(30), || false));
        let e = t.elapsed();
        assert!(e >= Duration::from_millis(25), "slept only {e:?}");
        assert!(!w.is_sleeping());
    }

    #[test]
    fn pending_work_skips_the_sleep() {
        let w = AgentWake::new().unwrap();
        let t = Instant::now();
        assert!(!w.sleep(Duration::from_secs(5), || true));
        assert!(t.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn a_ring_before_the_sleep_is_not_lost() {
        let w = AgentWake::new().unwrap();
        w.ring();
        let t = Instant::now();
        assert!(w.sleep(Duration::from_secs(5), || false));
        assert!(t.elapsed() < Duration::from_secs(1));
        // Consumed: the next sleep blocks again.
        let t = Instant::now();
        w.sleep(Duration::from_millis(20), || false);
        assert!(t.elapsed() >= Duration::from_millis(15));
    }

    #[test]
    fn notify_while_awake_writes_nothing() {
        let w = AgentWake::new().unwrap();
        w.notify();
        let t = Instant::now();
        w.sleep(Duration::from_millis(20), || false);
        assert!(t.elapsed() >= Duration::from_millis(15), "a notify to an awake agent left a wake-up behind");
    }

    /// The Dekker handshake: a producer publishes items and notifies; the agent consumes and
    /// sleeps with a long timeout whenever it sees nothing. Every item is consumed long before
    /// the timeouts could add up: no wake-up is lost.
    #[test]
    fn no_lost_wake_up_under_races() {
        const N: u64 = 20_000;
        let w = Arc::new(AgentWake::new().unwrap());
        let posted = Arc::new(AtomicU64::new(0));
        let producer = {
            let (w, posted) = (w.clone(), posted.clone());
            std::thread::spawn(move || {
                for i in 0..N {
                    posted.store(i + 1, Ordering::Release);
                    w.notify();
                    if i % 64 == 0 {
                        std::thread::yield_now();
                    }
                }
            })
        };
        let t = Instant::now();
        let mut seen = 0;
        let mut sleeps = 0u32;
        while seen < N {
            let now = posted.load(Ordering::Acquire);
            if now > seen {
                seen = now;
                continue;
            }
            sleeps += u32::from(w.sleep(Duration::from_secs(10), || posted.load(Ordering::Acquire) > seen));
        }
        producer.join().unwrap();
        // A lost wake-up would cost a 10 s timeout.
        assert!(t.elapsed() < Duration::from_secs(8), "{sleeps} sleeps took {:?}", t.elapsed());
    }
}
