//! The generator and sink of `vrouter-bench --vhost`: one `vm-guest` process (DPDK
//! `net_virtio_user`) that is two VMs at once, the sender on `--socket` and the sink on
//! `--sink-socket`, both listening (server mode, as QEMU) so that the system under test
//! (the vRouter's vhost vifs in client mode, or OVS's `dpdkvhostuserclient` ports) connects
//! to them. It busy-polls (`--idle-sleep-us 0`) on one CPU, waits for `go` on stdin before
//! it sends (`--wait-go`, so the idle forwarding core can be measured first) and sends with
//! `--blast` until it gets SIGINT, after which it prints its counters (`exit`).

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How to start the guest.
#[derive(Debug, Clone)]
pub struct GuestSpec {
    /// The `vm-guest` binary.
    pub binary: PathBuf,
    /// The sender's socket (the input port of the system under test).
    pub socket: PathBuf,
    /// The sink's socket (its output port).
    pub sink_socket: PathBuf,
    /// The pcap the sender replays.
    pub pcap: PathBuf,
    /// Queue pairs of each port.
    pub queues: u16,
    /// `--tx-queue`: `0` or `hash`.
    pub tx_queue: String,
    /// CPU the guest runs on.
    pub cpu: u32,
    /// Hugepages (`--huge`) or not.
    pub huge: bool,
    /// DPDK memory, MiB.
    pub memory_mb: u32,
    /// DPDK `--file-prefix`.
    pub file_prefix: String,
    /// Where its stderr goes.
    pub log: PathBuf,
}

impl GuestSpec {
    /// The command line.
    pub fn argv(&self) -> Vec<String> {
        let mut a = vec![
            self.binary.display().to_string(),
            "--socket".into(),
            self.socket.display().to_string(),
            "--sink-socket".into(),
            self.sink_socket.display().to_string(),
            "--queues".into(),
            self.queues.to_string(),
            "--cpu".into(),
            self.cpu.to_string(),
            "--memory-mb".into(),
            self.memory_mb.to_string(),
            "--file-prefix".into(),
            self.file_prefix.clone(),
            "--send".into(),
            self.pcap.display().to_string(),
            "--blast".into(),
            "--wait-go".into(),
            "--tx-queue".into(),
            self.tx_queue.clone(),
            "--idle-sleep-us".into(),
            "0".into(),
            "--wait-link".into(),
            "120".into(),
        ];
        if self.huge {
            a.push("--huge".into());
        }
        a
    }
}

/// The guest's counters (its `exit` or `stats` report).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct GuestCounters {
    /// Frames its sender's TX queues took.
    #[serde(default)]
    pub sent: u64,
    /// Frames its sender's port received (nothing is sent back in the benchmark).
    #[serde(default)]
    pub received: u64,
    /// Frames its sink port received.
    #[serde(default)]
    pub sink_received: Option<u64>,
}

/// Parses one report line of the guest: `(event, counters)`.
pub fn parse_report(line: &str) -> Option<(String, GuestCounters)> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let event = v.get("event")?.as_str()?.to_string();
    let c = serde_json::from_value(v).unwrap_or_default();
    Some((event, c))
}

/// A running guest; stopped (SIGINT, then SIGKILL) and its DPDK runtime directory removed
/// when dropped.
pub struct Guest {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    prefix: String,
    /// Every line it printed so far (for error messages).
    pub seen: Vec<String>,
}

impl Guest {
    /// Starts the guest (it then waits in EAL init until the other side connects).
    pub fn start(spec: &GuestSpec) -> Result<Guest> {
        for s in [&spec.socket, &spec.sink_socket] {
            let _ = std::fs::remove_file(s);
        }
        let argv = spec.argv();
        let log = std::fs::File::create(&spec.log).with_context(|| format!("creating {}", spec.log.display()))?;
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", spec.binary.display()))?;
        let stdin = child.stdin.take();
        let out = BufReader::new(child.stdout.take().context("piped stdout")?);
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Guest { child: Some(child), stdin, lines, prefix: spec.file_prefix.clone(), seen: vec![] })
    }

    /// Waits for the report `event` (e.g. `ready`: both links up).
    pub fn expect(&mut self, event: &str, timeout: Duration) -> Result<GuestCounters> {
        let by = Instant::now() + timeout;
        loop {
            let left = by.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left.max(Duration::from_millis(1))) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if let Some((ev, c)) = parse_report(&line) {
                        if ev == event {
                            return Ok(c);
                        }
                        if ev == "error" {
                            bail!("vm-guest reported an error: {line}");
                        }
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!("vm-guest: no {event:?} within {timeout:?} (it printed {:?})", self.seen)
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    bail!("vm-guest exited before {event:?} (it printed {:?})", self.seen)
                }
            }
            if crate::interrupted() {
                bail!("interrupted");
            }
        }
    }

    /// Starts the sending.
    pub fn go(&mut self) -> Result<()> {
        let s = self.stdin.as_mut().context("the guest's stdin is closed")?;
        writeln!(s, "go").context("writing `go` to the guest")?;
        s.flush()?;
        Ok(())
    }

    /// Stops it (SIGINT) and returns its final counters.
    pub fn stop(mut self) -> Result<GuestCounters> {
        let pid = self.child.as_ref().map(Child::id).context("guest already stopped")?;
        // SAFETY: signalling our own child, not yet reaped.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) };
        let c = self.expect("exit", Duration::from_secs(30));
        self.reap();
        c
    }

    fn reap(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let by = Instant::now() + Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < by => std::thread::sleep(Duration::from_millis(20)),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
            }
        }
        let _ = std::fs::remove_dir_all(Path::new("/var/run/dpdk").join(&self.prefix));
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            // SAFETY: signalling our own child, not yet reaped.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGINT) };
        }
        self.reap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_parse() {
        let (ev, c) = parse_report(
            r#"{"event":"exit","link":"up","sent":100,"sent_bytes":6000,"tx_failed":0,"received":0,"received_bytes":0,"received_per_queue":[0],"send_seconds":1.5,"sink_received":97,"sink_received_bytes":5820}"#,
        )
        .unwrap();
        assert_eq!(ev, "exit");
        assert_eq!(c, GuestCounters { sent: 100, received: 0, sink_received: Some(97) });
        let (ev, c) = parse_report(r#"{"event":"ready","link":"up","sent":0,"received":0}"#).unwrap();
        assert_eq!((ev.as_str(), c.sink_received), ("ready", None));
        assert!(parse_report("EAL: something").is_none());
    }

    #[test]
    fn argv_has_the_benchmark_flags() {
        let s = GuestSpec {
            binary: "/t/vm-guest".into(),
            socket: "/s/vm1.sock".into(),
            sink_socket: "/s/vm2.sock".into(),
            pcap: "/p/udp_1000.pcap".into(),
            queues: 2,
            tx_queue: "hash".into(),
            cpu: 0,
            huge: true,
            memory_mb: 256,
            file_prefix: "g1".into(),
            log: "/tmp/g.log".into(),
        };
        let a = s.argv().join(" ");
        for want in [
            "--sink-socket /s/vm2.sock",
            "--blast --wait-go",
            "--idle-sleep-us 0",
            "--tx-queue hash",
            "--queues 2",
            "--huge",
        ] {
            assert!(a.contains(want), "{want} in {a}");
        }
        assert!(!GuestSpec { huge: false, ..s }.argv().contains(&"--huge".to_string()));
    }
}
