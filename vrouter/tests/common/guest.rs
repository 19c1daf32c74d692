//! A VM on a vhost-user vif: the `vm-guest` binary (a DPDK `net_virtio_user` process) driven
//! through its stdin commands, its JSON reports read on a thread so every wait is bounded.

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running guest; killed (and its EAL runtime directory removed) when dropped.
pub struct Guest {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    prefix: String,
    /// The pcap file every received frame is recorded to.
    pub record: PathBuf,
    /// The name used in messages.
    pub name: String,
    /// Where the guest's stderr (DPDK's log) goes.
    log: PathBuf,
}

impl Guest {
    /// Starts a guest serving `socket` (the vRouter's vif connects to it, as to QEMU) with
    /// `queues` queue pairs, recording to `<dir>/<name>-rx-<n>.pcap` (a fresh file per start).
    /// In server mode it waits for the vRouter before it reports `ready` ([`Guest::ready`]).
    pub fn start(dir: &Path, name: &str, socket: &Path, queues: u16, extra: &[&str]) -> Guest {
        let mut n = 0;
        let record = loop {
            let p = dir.join(format!("{name}-rx-{n}.pcap"));
            if !p.exists() {
                break p;
            }
            n += 1;
        };
        let prefix = format!("{}_{name}{n}", super::unique_prefix());
        // DPDK's log of the guest, shown when a wait on it fails.
        let log = dir.join(format!("{name}-{n}.log"));
        let log_file = std::fs::File::create(&log).expect("guest log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_vm-guest"))
            .arg("--socket")
            .arg(socket)
            .args(["--queues", &queues.to_string(), "--file-prefix", &prefix, "--record"])
            .arg(&record)
            .args(["--wait-link", "60"])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .expect("start vm-guest");
        let stdin = child.stdin.take();
        let out = BufReader::new(child.stdout.take().expect("piped stdout"));
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Guest { child, stdin, lines, prefix, record, log, name: name.to_string() }
    }

    /// The next report whose `event` is `event`, within `timeout` (panics otherwise, or on an
    /// `error` report).
    pub fn expect(&mut self, event: &str, timeout: Duration) -> Value {
        let by = Instant::now() + timeout;
        loop {
            let left = by.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{}: {e}: {line}", self.name));
                    assert_ne!(v["event"], "error", "{}: {v}", self.name);
                    if v["event"] == event {
                        return v;
                    }
                }
                Err(_) => {
                    let st = self.child.try_wait().ok().flatten();
                    let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                    panic!("{}: no {event:?} report within {timeout:?} (exited: {st:?}); its log:\n{log}", self.name);
                }
            }
        }
    }

    /// Waits for the `ready` report: the vRouter connected and the link is up.
    pub fn ready(&mut self) -> Value {
        self.expect("ready", Duration::from_secs(60))
    }

    fn command(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("guest stdin");
        writeln!(stdin, "{line}").and_then(|()| stdin.flush()).unwrap_or_else(|e| panic!("{}: {line}: {e}", self.name));
    }

    /// Sends the frames of `pcap` on TX queue `queue` (a number or `hash`); returns the
    /// counters after it, with `sent` and `tx_failed` of this command alone.
    pub fn send(&mut self, pcap: &Path, queue: &str) -> Value {
        let before = self.stats();
        self.command(&format!("send {} {queue}", pcap.display()));
        let mut v = self.expect("sent", Duration::from_secs(60));
        for k in ["sent", "tx_failed"] {
            v[k] = (v[k].as_u64().unwrap() - before[k].as_u64().unwrap()).into();
        }
        v
    }

    /// Waits until `frames` frames in all were received (or `timeout`); returns the counters.
    pub fn wait_rx(&mut self, frames: u64, timeout: Duration) -> Value {
        self.command(&format!("wait-rx {frames} {}", timeout.as_millis()));
        self.expect("rx", timeout + Duration::from_secs(10))
    }

    /// The counters so far.
    pub fn stats(&mut self) -> Value {
        self.command("stats");
        self.expect("stats", Duration::from_secs(10))
    }

    /// The frames received so far, from the record file.
    pub fn received(&mut self) -> Vec<Vec<u8>> {
        self.command("flush");
        self.expect("flushed", Duration::from_secs(10));
        super::read_pcap(&self.record)
    }

    /// Stops the guest with `quit`; returns its final report.
    pub fn quit(mut self) -> Value {
        self.command("quit");
        let v = self.expect("exit", Duration::from_secs(20));
        let _ = self.child.wait();
        v
    }

    /// Kills the guest as a crashing VM would go (SIGKILL, no clean-up).
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{}", self.prefix));
    }
}
