//! systemd's service notification protocol (`sd_notify(3)`), as the `vrouter` and `collector`
//! binaries speak it when they run as `Type=notify` services (`deploy/systemd/`).
//!
//! The protocol: the service manager passes the address of a datagram socket in the
//! `NOTIFY_SOCKET` environment variable, either a file-system path (`/run/systemd/notify`) or,
//! when it starts with `@`, an address in Linux's abstract namespace (the `@` stands for the
//! leading NUL byte). The service sends it datagrams of newline-separated `KEY=VALUE`
//! assignments:
//!
//! | assignment | meaning |
//! | --- | --- |
//! | `READY=1` | start-up is finished: the service does what it is for (`systemctl start` returns) |
//! | `STATUS=...` | one line of free text that `systemctl status` shows |
//! | `WATCHDOG=1` | the service is alive; with `WatchdogSec=` set, systemd kills and (with `Restart=`) restarts a service that sends none for that long |
//! | `STOPPING=1` | the service is shutting down |
//!
//! With `WatchdogSec=` the manager also sets `WATCHDOG_USEC` (the timeout in microseconds)
//! and `WATCHDOG_PID` (the process meant to send the keep-alives; a child that inherited the
//! variables must not). [`Watchdog::from_env`] reads both; the service sends `WATCHDOG=1`
//! every half timeout, as `sd_watchdog_enabled(3)` advises, and only while it is healthy:
//! what healthy means is the caller's decision (the vRouter: every forwarding lcore moved
//! since the last keep-alive; the collector: its database writer keeps up).
//!
//! Without `NOTIFY_SOCKET` (not started by systemd, or `Type=simple`) [`Notifier::from_env`]
//! returns `None` and nothing is sent. A send is one non-blocking `sendto(2)` on an unbound
//! socket: it never waits for the manager. The environment is read, not cleared: neither
//! binary starts other programs that could inherit it.
//!
//! Written from the protocol's description in systemd's `sd_notify(3)` and
//! `sd_watchdog_enabled(3)` manual pages; no libsystemd is linked.

#![warn(missing_docs)]

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};
use thiserror::Error;

/// The variable that carries the notification socket's address.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";
/// The variable that carries the watchdog timeout in microseconds.
pub const WATCHDOG_USEC: &str = "WATCHDOG_USEC";
/// The variable that names the process the watchdog is meant for.
pub const WATCHDOG_PID: &str = "WATCHDOG_PID";

/// Why a notification could not be set up or sent.
#[derive(Debug, Error)]
pub enum NotifyError {
    /// `NOTIFY_SOCKET` is neither an absolute path nor an abstract address (`@name`).
    #[error("NOTIFY_SOCKET={0:?} is neither an absolute path nor an abstract socket address (@name)")]
    BadAddress(OsString),
    /// The datagram socket could not be created or the address not formed.
    #[error("NOTIFY_SOCKET={addr:?}: {source}")]
    Socket {
        /// The address as given.
        addr: OsString,
        /// The cause.
        source: io::Error,
    },
    /// `sendto(2)` failed (the manager's socket is gone, or its queue is full).
    #[error("cannot send {what:?} to NOTIFY_SOCKET={addr:?}: {source}")]
    Send {
        /// The address as given.
        addr: OsString,
        /// The first assignment of the message, for the log.
        what: String,
        /// The cause.
        source: io::Error,
    },
    /// `WATCHDOG_USEC` is not a positive number of microseconds.
    #[error("WATCHDOG_USEC={0:?} is not a positive number of microseconds")]
    BadWatchdogUsec(OsString),
    /// `WATCHDOG_PID` is not a process id.
    #[error("WATCHDOG_PID={0:?} is not a process id")]
    BadWatchdogPid(OsString),
}

/// One assignment of a notification message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State<'a> {
    /// `READY=1`.
    Ready,
    /// `STATUS=<text>`: newlines in the text are sent as spaces (one assignment per line).
    Status(&'a str),
    /// `WATCHDOG=1`.
    Watchdog,
    /// `STOPPING=1`.
    Stopping,
}

impl State<'_> {
    fn write(&self, out: &mut String) {
        match self {
            State::Ready => out.push_str("READY=1"),
            State::Watchdog => out.push_str("WATCHDOG=1"),
            State::Stopping => out.push_str("STOPPING=1"),
            State::Status(s) => {
                out.push_str("STATUS=");
                out.extend(s.chars().map(|c| if c == '\n' || c == '\r' || c == '\0' { ' ' } else { c }));
            }
        }
    }
}

/// The message of `states`: one `KEY=VALUE` line each.
pub fn message(states: &[State<'_>]) -> String {
    let mut out = String::new();
    for s in states {
        s.write(&mut out);
        out.push('\n');
    }
    out
}

/// A connection to the service manager's notification socket.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
    /// `NOTIFY_SOCKET` as given, for errors.
    given: OsString,
}

impl Notifier {
    /// The notifier of `NOTIFY_SOCKET`, or `None` when the variable is unset or empty (the
    /// process was not started as a `Type=notify` service).
    pub fn from_env() -> Result<Option<Notifier>, NotifyError> {
        match std::env::var_os(NOTIFY_SOCKET) {
            Some(v) if !v.is_empty() => Notifier::new(&v).map(Some),
            _ => Ok(None),
        }
    }

    /// A notifier sending to `addr`: an absolute path, or `@name` for the abstract name
    /// `name`.
    pub fn new(addr: &OsStr) -> Result<Notifier, NotifyError> {
        let bytes = addr.as_bytes();
        let err = |source| NotifyError::Socket { addr: addr.to_owned(), source };
        let sa = match bytes.first() {
            Some(b'@') => SocketAddr::from_abstract_name(&bytes[1..]).map_err(err)?,
            Some(b'/') => SocketAddr::from_pathname(addr).map_err(err)?,
            _ => return Err(NotifyError::BadAddress(addr.to_owned())),
        };
        let socket = UnixDatagram::unbound().map_err(err)?;
        // A full manager queue is an error to report, never a reason to stop the service.
        socket.set_nonblocking(true).map_err(err)?;
        Ok(Notifier { socket, addr: sa, given: addr.to_owned() })
    }

    /// Sends `states` as one datagram.
    pub fn notify(&self, states: &[State<'_>]) -> Result<(), NotifyError> {
        let msg = message(states);
        self.socket.send_to_addr(msg.as_bytes(), &self.addr).map(drop).map_err(|source| NotifyError::Send {
            addr: self.given.clone(),
            what: msg.lines().next().unwrap_or_default().to_owned(),
            source,
        })
    }

    /// `READY=1` with a status line.
    pub fn ready(&self, status: &str) -> Result<(), NotifyError> {
        self.notify(&[State::Ready, State::Status(status)])
    }

    /// `STATUS=<status>`.
    pub fn status(&self, status: &str) -> Result<(), NotifyError> {
        self.notify(&[State::Status(status)])
    }

    /// `WATCHDOG=1`.
    pub fn watchdog(&self) -> Result<(), NotifyError> {
        self.notify(&[State::Watchdog])
    }

    /// `STOPPING=1` with a status line.
    pub fn stopping(&self, status: &str) -> Result<(), NotifyError> {
        self.notify(&[State::Stopping, State::Status(status)])
    }
}

/// The watchdog the service manager expects keep-alives for: its timeout and when the next
/// keep-alive is due (every half timeout).
#[derive(Debug, Clone)]
pub struct Watchdog {
    timeout: Duration,
    last: Instant,
}

impl Watchdog {
    /// The watchdog of `WATCHDOG_USEC` / `WATCHDOG_PID`, or `None` when there is none for
    /// this process (no `WATCHDOG_USEC`, or `WATCHDOG_PID` names another process).
    pub fn from_env() -> Result<Option<Watchdog>, NotifyError> {
        let usec = std::env::var_os(WATCHDOG_USEC);
        let pid = std::env::var_os(WATCHDOG_PID);
        Ok(timeout_for(usec.as_deref(), pid.as_deref(), std::process::id())?.map(Watchdog::new))
    }

    /// A watchdog of `timeout`, the last keep-alive now.
    pub fn new(timeout: Duration) -> Watchdog {
        Watchdog { timeout, last: Instant::now() }
    }

    /// The manager's timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// How often a keep-alive is sent: half the timeout.
    pub fn interval(&self) -> Duration {
        self.timeout / 2
    }

    /// True once per [`Watchdog::interval`]: when it is, the interval starts again at `now`.
    /// The caller then checks its health and sends `WATCHDOG=1` if healthy.
    pub fn due(&mut self, now: Instant) -> bool {
        if now.saturating_duration_since(self.last) >= self.interval() {
            self.last = now;
            true
        } else {
            false
        }
    }
}

/// The watchdog timeout for the process `own_pid` from the values of `WATCHDOG_USEC` and
/// `WATCHDOG_PID`: `None` without `WATCHDOG_USEC` or when `WATCHDOG_PID` is another
/// process's (as `sd_watchdog_enabled(3)`).
pub fn timeout_for(usec: Option<&OsStr>, pid: Option<&OsStr>, own_pid: u32) -> Result<Option<Duration>, NotifyError> {
    let Some(usec) = usec.filter(|u| !u.is_empty()) else { return Ok(None) };
    let n = usec
        .to_str()
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|&n| n > 0)
        .ok_or_else(|| NotifyError::BadWatchdogUsec(usec.to_owned()))?;
    if let Some(pid) = pid.filter(|p| !p.is_empty()) {
        let p = pid
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
            .filter(|&p| p > 0)
            .ok_or_else(|| NotifyError::BadWatchdogPid(pid.to_owned()))?;
        if p != own_pid {
            return Ok(None);
        }
    }
    Ok(Some(Duration::from_micros(n)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recv(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 4096];
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn sends_to_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::new(path.as_os_str()).unwrap();
        n.ready("forwarding on 2 lcores").unwrap();
        assert_eq!(recv(&server), "READY=1\nSTATUS=forwarding on 2 lcores\n");
        n.watchdog().unwrap();
        assert_eq!(recv(&server), "WATCHDOG=1\n");
        n.stopping("stopping").unwrap();
        assert_eq!(recv(&server), "STOPPING=1\nSTATUS=stopping\n");
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        let name = format!("sdnotify-test-{}", std::process::id());
        let server = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
        let n = Notifier::new(OsStr::new(&format!("@{name}"))).unwrap();
        n.status("hello").unwrap();
        assert_eq!(recv(&server), "STATUS=hello\n");
    }

    #[test]
    fn status_is_one_line() {
        assert_eq!(message(&[State::Status("a\nb\r\0c")]), "STATUS=a b  c\n");
        assert_eq!(message(&[State::Watchdog, State::Stopping]), "WATCHDOG=1\nSTOPPING=1\n");
    }

    #[test]
    fn bad_addresses_and_missing_sockets_are_errors() {
        assert!(matches!(Notifier::new(OsStr::new("relative/path")), Err(NotifyError::BadAddress(_))));
        let dir = tempfile::tempdir().unwrap();
        let n = Notifier::new(dir.path().join("nobody").as_os_str()).unwrap();
        let e = n.watchdog().unwrap_err();
        assert!(matches!(e, NotifyError::Send { ref what, .. } if what == "WATCHDOG=1"), "{e}");
    }

    #[test]
    fn watchdog_timeout_from_the_environment_values() {
        fn s(v: &str) -> Option<&OsStr> {
            Some(OsStr::new(v))
        }
        assert_eq!(timeout_for(None, None, 7).unwrap(), None);
        assert_eq!(timeout_for(s("2000000"), None, 7).unwrap(), Some(Duration::from_secs(2)));
        assert_eq!(timeout_for(s("2000000"), s("7"), 7).unwrap(), Some(Duration::from_secs(2)));
        assert_eq!(timeout_for(s("2000000"), s("8"), 7).unwrap(), None, "another process's watchdog");
        assert!(matches!(timeout_for(s("0"), None, 7), Err(NotifyError::BadWatchdogUsec(_))));
        assert!(matches!(timeout_for(s("ten"), None, 7), Err(NotifyError::BadWatchdogUsec(_))));
        assert!(matches!(timeout_for(s("10"), s("x"), 7), Err(NotifyError::BadWatchdogPid(_))));
    }

    #[test]
    fn watchdog_is_due_every_half_timeout() {
        let mut w = Watchdog::new(Duration::from_millis(1000));
        let t0 = w.last;
        assert_eq!(w.interval(), Duration::from_millis(500));
        assert!(!w.due(t0 + Duration::from_millis(499)));
        assert!(w.due(t0 + Duration::from_millis(500)));
        assert!(!w.due(t0 + Duration::from_millis(900)));
        assert!(w.due(t0 + Duration::from_millis(1000)));
    }
}
