//! The generator and sink of `vrouter-bench --vhost`: one `vm-guest` process (DPDK
//! `net_virtio_user`) that is two VMs at once, the sender on `--socket` and the sink on
//! `--sink-socket`, both listening (server mode, as QEMU) so that the system under test
//! (the vRouter's vhost vifs in client mode, or OVS's `dpdkvhostuserclient` ports) connects
//! to them. It busy-polls (`--idle-sleep-us 0`) on one CPU, waits for `go` on stdin before
//! it sends (`--wait-go`, so the idle forwarding core can be measured first) and sends with
//! `--blast` until it gets SIGINT, after which it prints its counters (`exit`). With a
//! `rate` it offers a steady paced load instead (`--blast --rate`, for `--restart`), and
//! answers `stats`, `reset-gap`, `pause` and `resume` while it sends.

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
    /// Frames per second offered (`--rate`); 0: as fast as the queues take them.
    pub rate: u64,
    /// Its sleep when nothing is due and nothing arrived (`--idle-sleep-us`; 0: busy polling).
    pub idle_sleep_us: u64,
    /// Count the pcap's flows the sink receives (`--sink-flows`).
    pub sink_flows: bool,
}

impl GuestSpec {
    /// The benchmarks' generator and sink: the sender on `<sock_dir>/vm1.sock`, the sink on
    /// `<sock_dir>/vm2.sock`, on CPU 0 with 256 MiB, flows hashed over the TX queues when
    /// there are several, blasting (no `rate`), busy-polling.
    pub fn blast(
        binary: &Path,
        sock_dir: &Path,
        pcap: &Path,
        queues: u16,
        huge: bool,
        file_prefix: String,
        log: PathBuf,
    ) -> GuestSpec {
        GuestSpec {
            binary: binary.to_path_buf(),
            socket: sock_dir.join("vm1.sock"),
            sink_socket: sock_dir.join("vm2.sock"),
            pcap: pcap.to_path_buf(),
            queues,
            tx_queue: if queues > 1 { "hash".into() } else { "0".into() },
            cpu: 0,
            huge,
            memory_mb: 256,
            file_prefix,
            log,
            rate: 0,
            idle_sleep_us: 0,
            sink_flows: false,
        }
    }

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
            self.idle_sleep_us.to_string(),
            "--wait-link".into(),
            "120".into(),
        ];
        if self.rate > 0 {
            a.extend(["--rate".into(), self.rate.to_string()]);
        }
        if self.sink_flows {
            a.push("--sink-flows".into());
        }
        if self.huge {
            a.push("--huge".into());
        }
        a
    }
}

/// The guest's counters (its `exit` or `stats` report).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct GuestCounters {
    /// When the guest made the report, `CLOCK_MONOTONIC` ns.
    #[serde(default)]
    pub at_ns: u64,
    /// Frames its sender's TX queues took.
    #[serde(default)]
    pub sent: u64,
    /// Frames its sender's port received (nothing is sent back in the benchmark).
    #[serde(default)]
    pub received: u64,
    /// Frames its sink port received.
    #[serde(default)]
    pub sink_received: Option<u64>,
    /// `--rate`: frames due by the schedule (`sent` + `tx_dropped`).
    #[serde(default)]
    pub offered: u64,
    /// `--rate`: frames due that no TX queue took (dropped by the guest).
    #[serde(default)]
    pub tx_dropped: u64,
    /// Since `reset-gap`: the longest time between two sink polls that received, µs.
    #[serde(default)]
    pub max_rx_gap_us: u64,
    /// When it ended, `CLOCK_MONOTONIC` ns (0: none).
    #[serde(default)]
    pub max_rx_gap_end_ns: u64,
    /// When the sink last received, `CLOCK_MONOTONIC` ns (0: never).
    #[serde(default)]
    pub last_rx_ns: u64,
    /// Since `reset-gap`: the longest time no frame was taken by the TX queue, µs.
    #[serde(default)]
    pub max_tx_gap_us: u64,
    /// When it ended, `CLOCK_MONOTONIC` ns (0: none).
    #[serde(default)]
    pub max_tx_gap_end_ns: u64,
    /// Since `reset-gap`: the most the sender was behind its schedule, µs.
    #[serde(default)]
    pub pace_max_lag_us: u64,
    /// Times the guest saw its link go down.
    #[serde(default)]
    pub link_downs: u64,
    /// When it last saw its link go down, `CLOCK_MONOTONIC` ns (0: never).
    #[serde(default)]
    pub last_link_down_ns: u64,
    /// When it last saw its link come up, `CLOCK_MONOTONIC` ns.
    #[serde(default)]
    pub last_link_up_ns: u64,
    /// Across the last link-down: from the sink's last frame before it to its first after,
    /// µs (0: not over yet).
    #[serde(default)]
    pub link_rx_gap_us: u64,
    /// When that ended, `CLOCK_MONOTONIC` ns.
    #[serde(default)]
    pub link_rx_gap_end_ns: u64,
    /// `--sink-flows`: flows of the pcap the sink received since `reset-gap` or `reset-flows`.
    #[serde(default)]
    pub sink_flows_seen: Option<u64>,
    /// `--sink-flows`: distinct flows in the pcap.
    #[serde(default)]
    pub sink_flows_total: Option<u64>,
    /// `--sink-flows`: when the last of them arrived, `CLOCK_MONOTONIC` ns (0: not yet).
    #[serde(default)]
    pub sink_flows_all_ns: Option<u64>,
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

    /// Sends the command `cmd` and waits for its answer `event` (e.g. `stats`).
    pub fn command(&mut self, cmd: &str, event: &str) -> Result<GuestCounters> {
        let s = self.stdin.as_mut().context("the guest's stdin is closed")?;
        writeln!(s, "{cmd}").with_context(|| format!("writing {cmd:?} to the guest"))?;
        s.flush()?;
        self.expect(event, Duration::from_secs(10))
    }

    /// Its counters now.
    pub fn stats(&mut self) -> Result<GuestCounters> {
        self.command("stats", "stats")
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
        assert_eq!(c, GuestCounters { sent: 100, received: 0, sink_received: Some(97), ..GuestCounters::default() });
        let (_, c) = parse_report(
            r#"{"event":"stats","link":"up","sent":10,"received":0,"offered":12,"tx_dropped":2,"max_rx_gap_us":1500,"max_rx_gap_end_ns":99,"sink_flows_seen":3,"sink_flows_total":4,"sink_flows_all_ns":0}"#,
        )
        .unwrap();
        assert_eq!((c.offered, c.tx_dropped, c.max_rx_gap_us, c.max_rx_gap_end_ns), (12, 2, 1500, 99));
        assert_eq!((c.sink_flows_seen, c.sink_flows_total, c.sink_flows_all_ns), (Some(3), Some(4), Some(0)));
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
            rate: 0,
            idle_sleep_us: 0,
            sink_flows: false,
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
        assert!(!a.contains("--rate") && !a.contains("--sink-flows"));
        let paced = GuestSpec { rate: 200_000, idle_sleep_us: 50, sink_flows: true, ..s.clone() }.argv().join(" ");
        for want in ["--rate 200000", "--sink-flows", "--idle-sleep-us 50", "--blast --wait-go"] {
            assert!(paced.contains(want), "{want} in {paced}");
        }
        assert!(!GuestSpec { huge: false, ..s }.argv().contains(&"--huge".to_string()));
    }
}
