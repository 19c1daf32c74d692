//! The `collector` binary under systemd's notification protocol, against a notification
//! socket the test binds itself (`NOTIFY_SOCKET`): `READY=1` once the REST API and the
//! Sandesh port accept connections, `WATCHDOG=1` every half `WATCHDOG_USEC` while a generator
//! streams flow records (none when
//! `WATCHDOG_PID` names another process), `STOPPING=1` on SIGTERM; and the unit file
//! (`deploy/systemd/vrouter-collector.service`) passes `systemd-analyze verify` with its
//! example configuration loading as the collector's.

mod common;

use common::{flow, http_get, Generator};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The notification socket the test owns (the service manager's end).
struct Manager {
    sock: UnixDatagram,
    /// `NOTIFY_SOCKET` for the child.
    addr: String,
    _dir: tempfile::TempDir,
}

impl Manager {
    /// Bound at a path, or in the abstract namespace (`@name`).
    fn bind(abstract_name: bool) -> Manager {
        let dir = tempfile::tempdir().unwrap();
        let (sock, addr) = if abstract_name {
            let name = format!("collector-test-{}-{}", std::process::id(), dir.path().display());
            let sa = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
            (UnixDatagram::bind_addr(&sa).unwrap(), format!("@{name}"))
        } else {
            let p = dir.path().join("notify");
            (UnixDatagram::bind(&p).unwrap(), p.display().to_string())
        };
        Manager { sock, addr, _dir: dir }
    }

    /// The next message, or `None` after `within`.
    fn recv(&self, within: Duration) -> Option<(Instant, String)> {
        self.sock.set_read_timeout(Some(within)).unwrap();
        let mut buf = [0u8; 4096];
        match self.sock.recv(&mut buf) {
            Ok(n) => Some((Instant::now(), String::from_utf8(buf[..n].to_vec()).unwrap())),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => None,
            Err(e) => panic!("notification socket: {e}"),
        }
    }

    /// Waits (bounded) for a message that starts with `first`, skipping others.
    fn expect(&self, first: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(left.max(Duration::from_millis(1))) {
                Some((_, m)) if m.starts_with(first) => return m,
                Some(_) => continue,
                None => panic!("no {first:?} within {within:?}"),
            }
        }
    }
}

/// A collector child, killed if the test fails before stopping it.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn spawn(m: &Manager, data: &Path, env: &[(&str, &str)]) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_collector"));
    cmd.args(["--json", "--sandesh-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data)
        .env("NOTIFY_SOCKET", &m.addr)
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .stdout(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Proc(cmd.spawn().unwrap())
}

/// The listening addresses from the startup line (printed before `READY=1`).
fn addresses(p: &mut Proc) -> (SocketAddr, SocketAddr) {
    let mut line = String::new();
    BufReader::new(p.0.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("startup line {line:?}: {e}"));
    (v["sandesh_listen"].as_str().unwrap().parse().unwrap(), v["http_listen"].as_str().unwrap().parse().unwrap())
}

fn sigterm(p: &Proc) {
    let pid = p.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
}

fn wait_exit(p: &mut Proc) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(st) = p.0.try_wait().unwrap() {
            return st;
        }
        assert!(Instant::now() < deadline, "collector did not stop within 20 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn ready_watchdog_and_stopping() {
    let m = Manager::bind(false);
    let data = tempfile::tempdir().unwrap();
    // A 1 s watchdog: a keep-alive every 500 ms.
    let mut p = spawn(&m, data.path(), &[("WATCHDOG_USEC", "1000000")]);
    let ready = m.expect("READY=1\n", Duration::from_secs(30));
    // Usable the moment READY arrives: the addresses it names answer.
    let (sandesh, http) = addresses(&mut p);
    assert_eq!(ready, format!("READY=1\nSTATUS=Sandesh on {sandesh}, REST API on http://{http}\n"));
    let (code, stats) = http_get(http, "/analytics/collector/stats");
    assert_eq!(code, 200, "{stats}");
    TcpStream::connect_timeout(&sandesh, Duration::from_secs(2)).expect("Sandesh port accepts");

    // A generator streams flow records meanwhile: the writer commits them, so the keep-alives
    // go on.
    let feeder = std::thread::spawn(move || {
        let mut g = Generator::connect(sandesh, "host1");
        let t0 = Instant::now();
        let mut k = 0u32;
        while t0.elapsed() < Duration::from_secs(3) {
            let recs = (0..16)
                .map(|_| {
                    k += 1;
                    flow(&format!("00000000-0000-0000-0000-{k:012}"), 20000 + (k % 1000) as u16, 100, 1, 100, 1)
                })
                .collect();
            g.send_flows(recs);
            std::thread::sleep(Duration::from_millis(20));
        }
        g
    });

    // Keep-alives: periodic, never further apart than the timeout.
    let start = Instant::now();
    let mut pings = vec![start];
    while start.elapsed() < Duration::from_millis(3500) {
        if let Some((t, msg)) = m.recv(Duration::from_millis(1200)) {
            assert_eq!(msg, "WATCHDOG=1\n", "only keep-alives while the writer keeps up");
            pings.push(t);
        } else {
            panic!("no keep-alive for 1.2 s with a 1 s watchdog: {} so far", pings.len() - 1);
        }
    }
    let n = pings.len() - 1;
    assert!(n >= 5, "about 7 keep-alives in 3.5 s at 500 ms, got {n}");
    let gaps: Vec<Duration> = pings.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.iter().all(|g| *g < Duration::from_secs(1)), "every gap under WATCHDOG_USEC: {gaps:?}");
    assert!(gaps[1..].iter().all(|g| *g > Duration::from_millis(250)), "not faster than half the timeout: {gaps:?}");

    let _generator = feeder.join().unwrap();
    let (_, stats) = http_get(http, "/analytics/collector/stats");
    assert!(stats["flow_records_stored"].as_u64().unwrap() >= 16 * 50, "records were ingested meanwhile: {stats}");

    sigterm(&p);
    let stopping = m.expect("STOPPING=1\n", Duration::from_secs(10));
    assert!(stopping.contains("STATUS=stopping"), "{stopping}");
    assert!(wait_exit(&mut p).success(), "SIGTERM is a clean stop");
}

/// `WATCHDOG_PID` of another process: the variables were meant for someone else, so no
/// keep-alive; the notification socket is an abstract address.
#[test]
fn watchdog_of_another_process_is_not_fed() {
    let m = Manager::bind(true);
    let data = tempfile::tempdir().unwrap();
    let mut p = spawn(&m, data.path(), &[("WATCHDOG_USEC", "200000"), ("WATCHDOG_PID", "1")]);
    m.expect("READY=1\n", Duration::from_secs(30));
    let (_, http) = addresses(&mut p);
    assert_eq!(http_get(http, "/analytics/collector/stats").0, 200);
    if let Some((_, msg)) = m.recv(Duration::from_millis(1500)) {
        panic!("unexpected notification {msg:?}");
    }
    sigterm(&p);
    m.expect("STOPPING=1\n", Duration::from_secs(10));
    assert!(wait_exit(&mut p).success());
}

/// The repository's `deploy/` folder.
fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("deploy")
}

/// `systemd-analyze verify` on a copy of the unit whose ExecStart names the collector built
/// for this test (verify checks the binary exists and is executable); any diagnostic, not
/// only a failed exit status (unknown keys and bad values are only warnings), fails.
#[test]
fn unit_passes_systemd_analyze_verify() {
    let unit = std::fs::read_to_string(deploy().join("systemd/vrouter-collector.service")).unwrap();
    for line in [
        "Type=notify",
        "NotifyAccess=main",
        "ExecStart=/usr/local/bin/collector --config /etc/vrouter/collector.toml",
        "Restart=on-failure",
        "KillSignal=SIGTERM",
        "StateDirectory=vrouter-collector",
    ] {
        assert!(unit.lines().any(|l| l == line), "the unit has {line:?}");
    }
    assert!(unit.lines().any(|l| l.starts_with("WatchdogSec=")));
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("vrouter-collector.service");
    std::fs::write(&copy, unit.replace("/usr/local/bin/collector", env!("CARGO_BIN_EXE_collector"))).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze (Debian package systemd; ci/setup.sh installs it)");
    let diag = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && diag.trim().is_empty(), "systemd-analyze verify: {}\n{diag}", out.status);

    // The unit's own mistakes are caught: a misspelt key is reported.
    std::fs::write(&copy, std::fs::read_to_string(&copy).unwrap().replace("WatchdogSec=", "WatchdgSec=")).unwrap();
    let out = Command::new("systemd-analyze").arg("verify").arg(&copy).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("WatchdgSec"), "verify reports unknown keys");
}

/// The example configuration the install steps copy to /etc/vrouter/collector.toml loads,
/// and keeps its database in the unit's StateDirectory.
#[test]
fn example_configuration_matches_the_unit() {
    let cfg = collector::config::CollectorConfig::load(&deploy().join("collector.toml")).unwrap();
    assert_eq!(cfg.data_dir, Path::new("/var/lib/vrouter-collector"));
}
