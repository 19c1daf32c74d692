//! The `vrouter` binary under systemd's notification protocol (real EAL, pcap vdevs), against
//! a notification socket the test binds itself (`NOTIFY_SOCKET`): `READY=1` once the
//! forwarding lcores poll and the control socket answers, `WATCHDOG=1` every half
//! `WATCHDOG_USEC` while the lcores make progress (none when `WATCHDOG_PID` names another
//! process), `STOPPING=1` on SIGTERM followed by a clean stop; and the unit file
//! (`deploy/systemd/vrouter.service`) passes `systemd-analyze verify`.

mod common;
use common::*;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use vrouter::stats::{Liveness, StatsReader};

/// The notification socket the test owns (the service manager's end).
struct Manager {
    sock: UnixDatagram,
    /// `NOTIFY_SOCKET` for the child.
    addr: String,
}

impl Manager {
    /// Bound at `path`, or in the abstract namespace (`@name`) when `path` is `None`.
    fn bind(path: Option<&Path>) -> Manager {
        match path {
            Some(p) => Manager { sock: UnixDatagram::bind(p).unwrap(), addr: p.display().to_string() },
            None => {
                let name = format!("vrouter-test-{}-{}", std::process::id(), unique_prefix());
                let sa = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
                Manager { sock: UnixDatagram::bind_addr(&sa).unwrap(), addr: format!("@{name}") }
            }
        }
    }

    /// The next message, or `None` after `within`.
    fn recv(&self, within: Duration) -> Option<(Instant, String)> {
        self.sock.set_read_timeout(Some(within.max(Duration::from_millis(1)))).unwrap();
        let mut buf = [0u8; 4096];
        match self.sock.recv(&mut buf) {
            Ok(n) => Some((Instant::now(), String::from_utf8(buf[..n].to_vec()).unwrap())),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => None,
            Err(e) => panic!("notification socket: {e}"),
        }
    }

    /// Waits (bounded) for a message that starts with `first`, skipping keep-alives and
    /// status lines before it.
    fn expect(&self, first: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            match self.recv(deadline.saturating_duration_since(Instant::now())) {
                Some((_, m)) if m.starts_with(first) => return m,
                Some(_) => continue,
                None => panic!("no {first:?} within {within:?}"),
            }
        }
    }
}

/// Starts the vRouter on the standard topology; vm1 sends `frames` to vm2 once.
fn start(dir: &Path, m: &Manager, frames: &[Vec<u8>], env: &[(&str, &str)]) -> (Running, PathBuf) {
    let run_dir = dir.join("run");
    let vm1 = dir.join("vm1-in.pcap");
    write_pcap(&vm1, frames);
    let empty = dir.join("empty.pcap");
    write_pcap(&empty, &[]);
    let vdevs = [
        format!("\"net_pcap0,rx_pcap={}\"", empty.display()),
        format!("\"net_pcap1,rx_pcap={}\"", vm1.display()),
        format!("\"net_pcap2,rx_pcap={},tx_pcap={}\"", empty.display(), dir.join("vm2-out.pcap").display()),
    ];
    let prefix = unique_prefix();
    let cfg_path = dir.join("vrouter.toml");
    std::fs::write(&cfg_path, topology(&vdevs.join(", "), &prefix, &run_dir)).unwrap();
    remove_orphaned_flow_tables();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vrouter"));
    cmd.arg("--config")
        .arg(&cfg_path)
        .env("NOTIFY_SOCKET", &m.addr)
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    (Running(cmd.spawn().expect("start vrouter"), prefix), run_dir)
}

/// SIGTERM (what systemd sends), then wait (bounded) for the exit; returns stdout.
fn sigterm_and_wait(child: &mut Running) -> String {
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            use std::io::Read;
            let (mut out, mut err) = (String::new(), String::new());
            child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
            child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            assert!(st.success(), "vrouter exited with {st}\nstdout:\n{out}\nstderr:\n{err}");
            return out;
        }
        assert!(Instant::now() < deadline, "vrouter did not stop within 20 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn ready_watchdog_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let m = Manager::bind(Some(&dir.path().join("notify")));
    let frames: Vec<Vec<u8>> = (0..4u16)
        .map(|i| {
            let ip = ipv4_udp(ip4("192.168.1.3"), ip4("192.168.1.4"), 64, 4000 + i, 80, b"ready");
            eth(mac(ROUTER_MAC), mac(VM1_MAC), 0x0800, &ip)
        })
        .collect();
    // A 1 s watchdog: a keep-alive every 500 ms.
    let (mut child, run_dir) = start(dir.path(), &m, &frames, &[("WATCHDOG_USEC", "1000000")]);
    let ready = m.expect("READY=1\n", Duration::from_secs(60));
    assert_eq!(ready, "READY=1\nSTATUS=forwarding on 1 lcore(s), 3 vif(s)\n");
    // Usable the moment READY arrives: the regions are there and live, the lcores poll, the
    // control socket answers.
    let stats = StatsReader::open(&run_dir).expect("stats region before READY");
    assert_eq!(stats.liveness(), Liveness::Running);
    let lc = stats.lcore_counters(None);
    assert!(lc.busy_polls + lc.idle_polls > 0, "the forwarding lcore polls at READY");
    let status = control(&run_dir, &serde_json::json!({"cmd": "status"}));
    assert!(status.get("counters").is_some(), "control socket answers: {status}");

    // Keep-alives while the lcore polls: periodic, never further apart than the timeout.
    let start = Instant::now();
    let mut pings = vec![start];
    while start.elapsed() < Duration::from_millis(3500) {
        match m.recv(Duration::from_millis(1200)) {
            Some((t, msg)) => {
                assert_eq!(msg, "WATCHDOG=1\n", "only keep-alives while every lcore polls");
                pings.push(t);
            }
            None => panic!("no keep-alive for 1.2 s with a 1 s watchdog: {} so far", pings.len() - 1),
        }
    }
    let n = pings.len() - 1;
    assert!(n >= 5, "about 7 keep-alives in 3.5 s at 500 ms, got {n}");
    let gaps: Vec<Duration> = pings.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.iter().all(|g| *g < Duration::from_secs(1)), "every gap under WATCHDOG_USEC: {gaps:?}");
    assert!(gaps[1..].iter().all(|g| *g > Duration::from_millis(250)), "not faster than half the timeout: {gaps:?}");

    // The packets were forwarded (READY meant forwarding).
    let vm2 = dir.path().join("vm2-out.pcap");
    let deadline = Instant::now() + Duration::from_secs(20);
    while stats.vif_counters(2, None).tx_packets < frames.len() as u64 {
        assert!(Instant::now() < deadline, "vm1's packets not forwarded to vm2");
        std::thread::sleep(Duration::from_millis(20));
    }

    let out = sigterm_and_wait(&mut child);
    let stopping = m.expect("STOPPING=1\n", Duration::from_secs(5));
    assert!(stopping.contains("STATUS=stopping"), "{stopping}");
    assert!(out.contains("systemd watchdog: keep-alive every 500 ms"), "{out}");
    let after = StatsReader::open(&run_dir).unwrap();
    assert_eq!(after.liveness(), Liveness::Stopped, "SIGTERM is a clean stop");
    assert_eq!(read_pcap(&vm2).len(), frames.len());
}

/// `WATCHDOG_PID` of another process: the variables were meant for someone else, so no
/// keep-alive; the notification socket is an abstract address.
#[test]
fn watchdog_of_another_process_is_not_fed() {
    let dir = tempfile::tempdir().unwrap();
    let m = Manager::bind(None);
    let (mut child, _run_dir) = start(dir.path(), &m, &[], &[("WATCHDOG_USEC", "200000"), ("WATCHDOG_PID", "1")]);
    m.expect("READY=1\n", Duration::from_secs(60));
    if let Some((_, msg)) = m.recv(Duration::from_millis(1500)) {
        panic!("unexpected notification {msg:?}");
    }
    sigterm_and_wait(&mut child);
    m.expect("STOPPING=1\n", Duration::from_secs(5));
}

/// `systemd-analyze verify` on a copy of the unit whose ExecStart names the vrouter built for
/// this test (verify checks the binary exists and is executable); any diagnostic, not only a
/// failed exit status (unknown keys and bad values are only warnings), fails.
#[test]
fn unit_passes_systemd_analyze_verify() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("deploy/systemd/vrouter.service");
    let unit = std::fs::read_to_string(path).unwrap();
    for line in [
        "Type=notify",
        "NotifyAccess=main",
        "ExecStart=/usr/local/bin/vrouter --config /etc/vrouter/vrouter.toml",
        "Restart=on-failure",
        "KillSignal=SIGTERM",
        "LimitMEMLOCK=infinity",
        "RuntimeDirectory=vrouter",
    ] {
        assert!(unit.lines().any(|l| l == line), "the unit has {line:?}");
    }
    assert!(unit.lines().any(|l| l.starts_with("WatchdogSec=")));
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("vrouter.service");
    std::fs::write(&copy, unit.replace("/usr/local/bin/vrouter", env!("CARGO_BIN_EXE_vrouter"))).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze (Debian package systemd; ci/setup.sh installs it)");
    let diag = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && diag.trim().is_empty(), "systemd-analyze verify: {}\n{diag}", out.status);
}
