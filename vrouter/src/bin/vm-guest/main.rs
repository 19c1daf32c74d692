//! `vm-guest`: a virtual machine's network driver without the virtual machine, for tests and
//! benchmarks of vhost-user vifs. It is a DPDK process of its own whose one port is a
//! `net_virtio_user` device on the vif's vhost-user socket (DPDK's way of being a virtio
//! guest without QEMU): it sends the frames of pcap files, records every frame it receives
//! and counts both.
//!
//! By default it is the socket's server, as QEMU is for a vRouter whose vif is in client
//! mode (the vRouter's default): start the guest first, the vRouter connects to it and
//! reconnects when either restarts. `--client` makes it connect to a vRouter vif in server
//! mode instead.
//!
//! It reports on stdout, one JSON object per line: `ready` once the link is up, the answer
//! to each command read from stdin, and `exit` with the final counters. Commands:
//!
//! | command | what it does |
//! |---|---|
//! | `send PCAP [QUEUE\|hash] [REPEAT]` | sends the file's frames (REPEAT times) on TX queue QUEUE (default `--tx-queue`), or spread over the queues by a hash of the addresses and ports; answers `sent` |
//! | `wait-rx N TIMEOUT_MS` | answers `rx` once N frames in all have been received, or at the timeout |
//! | `stats` | answers `stats` with the counters so far |
//! | `reset-gap` | starts a new observation: the longest RX gap, the longest TX gap, the pacing lag and (with `--sink-flows`) the flows seen are counted from now; answers `reset` |
//! | `reset-flows` | (with `--sink-flows`) the flows seen are counted from now; answers `reset` |
//! | `pause` / `resume` | with `--blast --rate`: stop offering frames (RX is still polled) / offer again at `--rate` from now (no catch-up for the pause); answer `paused` / `resumed` |
//! | `flush` | writes out the `--record` file so far; answers `flushed` |
//! | `quit` | stops (as SIGTERM or SIGINT do) |
//!
//! With `--send` it sends a file once the link is up, for `--repeat` rounds or for
//! `--duration` seconds at up to `--rate` frames per second, then, with `--exit-after-send`,
//! waits `--linger-ms` for late frames and exits: the generator and sink of the benchmark.
//!
//! For benchmarks (`vrouter-bench --vhost`) a guest can also be two VMs at once:
//! `--sink-socket` adds a second `net_virtio_user` port on another socket whose received
//! frames are only counted (`sink_received`), polled after every burst the first port sends,
//! so that generator and sink share one CPU without time-slicing against each other;
//! `--blast` sends `--send` with a cheaper path (frames packed in one buffer, per-queue
//! send lists, no pacing, a burst that does not fit is kept and retried, never dropped); and
//! `--wait-go` holds the sending back until a `go` line arrives on stdin (the harness
//! measures the idle forwarding core first).
//!
//! `--blast --rate PPS` is the steady offered load of `vrouter-bench --restart`: frames are
//! due at `--rate` per second from a fixed schedule whatever happens to the other side; a
//! frame due that the TX queue does not take (no vRouter behind the socket, or its ring full)
//! is dropped and counted (`tx_dropped`, as a VM's full queue drops), never offered later, so
//! the load stays the same during a restart of the vRouter. Between bursts the guest sleeps
//! `--idle-sleep-us` when nothing is due and nothing arrived (it then shares its CPU), and it
//! reads its link state every millisecond (a restarted vRouter's connection is taken at once).
//!
//! What the restart benchmark measures in the guest (reported with every answer, reset by
//! `reset-gap`): `max_rx_gap_us`, the longest time between two polls of the sink port (the
//! first port without `--sink-socket`) that received something, and when it ended
//! (`max_rx_gap_end_ns`, `CLOCK_MONOTONIC`, comparable with other processes' clocks); the
//! same for the sender's TX (`max_tx_gap_us`: the longest time no frame was taken);
//! `pace_max_lag_us`, how far the sender fell behind its schedule at worst; link changes the
//! guest saw and, across the last link-down, the time from the sink's last frame before it
//! to its first after (`link_rx_gap_us`: the forwarding gap of a restart of the vRouter);
//! and with `--sink-flows`, how many of the `--send` file's flows (IPv4 addresses,
//! protocol, ports) the sink has received since, or since `reset-flows`, or since the guest
//! last saw its link go down (`sink_flows_seen` of `sink_flows_total`, and when the last one
//! came, `sink_flows_all_ns`): after a restart of the vRouter, when every flow was forwarded
//! again. Every answer has the guest's `CLOCK_MONOTONIC` time (`at_ns`).

mod pcap;

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde::Serialize;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use vrouter::dpdk::{Eal, Mempool, Port, PortConfig};

const BURST: usize = 32;

/// How frames are put on TX queues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TxQueue {
    /// All on one queue.
    Fixed(u16),
    /// By a hash of the IP addresses and L4 ports, so one flow stays on one queue.
    Hash,
}

fn parse_tx_queue(s: &str) -> Result<TxQueue, String> {
    if s == "hash" {
        return Ok(TxQueue::Hash);
    }
    s.parse::<u16>().map(TxQueue::Fixed).map_err(|_| format!("{s:?} is neither a queue number nor \"hash\""))
}

#[derive(Parser, Debug)]
#[command(
    name = "vm-guest",
    version,
    about = "A VM stand-in on a vhost-user socket (DPDK net_virtio_user): sends pcaps, records what it receives"
)]
struct Cli {
    /// The vhost-user socket (the vif's `vhost.socket`).
    #[arg(long)]
    socket: PathBuf,
    /// Connect to the socket (the vRouter's vif is the server); default: listen on it, as QEMU
    /// does for a vRouter vif in client mode.
    #[arg(long)]
    client: bool,
    /// Queue pairs (the vif's `vhost.queues`).
    #[arg(long, default_value_t = 1)]
    queues: u16,
    /// Descriptors per virtqueue.
    #[arg(long, default_value_t = 1024)]
    queue_size: u16,
    /// The guest's MAC address.
    #[arg(long)]
    mac: Option<String>,
    /// DPDK `--file-prefix` (default `vm-guest-<pid>`).
    #[arg(long)]
    file_prefix: Option<String>,
    /// CPU the guest runs on.
    #[arg(long, default_value_t = 0)]
    cpu: u32,
    /// DPDK memory in MiB.
    #[arg(long, default_value_t = 256)]
    memory_mb: u32,
    /// Use hugepages (default: `--no-huge`; vhost-user then shares memfd-backed memory).
    #[arg(long)]
    huge: bool,
    /// Send this pcap once the link is up.
    #[arg(long)]
    send: Option<PathBuf>,
    /// Rounds of `--send`.
    #[arg(long, default_value_t = 1)]
    repeat: u64,
    /// Send `--send` round after round for this many seconds (instead of `--repeat`).
    #[arg(long)]
    duration: Option<f64>,
    /// Frames per second at most (0: as fast as the queue takes them). With `--blast`: the
    /// steady offered load (frames the queue does not take are dropped, see above).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// TX queue of `--send` and of `send` commands without one: a number or `hash`.
    #[arg(long, default_value = "0", value_parser = parse_tx_queue)]
    tx_queue: TxQueue,
    /// How long a frame may wait for room in a full TX queue before it counts as failed.
    #[arg(long, default_value_t = 1000)]
    tx_timeout_ms: u64,
    /// Record every received frame to this pcap file.
    #[arg(long)]
    record: Option<PathBuf>,
    /// Seconds to wait for the link to come up (the other side to connect).
    #[arg(long, default_value_t = 30.0)]
    wait_link: f64,
    /// Exit once `--send` is done and `--linger-ms` has passed.
    #[arg(long)]
    exit_after_send: bool,
    /// Time to keep receiving after `--send` before exiting (with `--exit-after-send`).
    #[arg(long, default_value_t = 500)]
    linger_ms: u64,
    /// Sleep this long after 256 empty polls in a row (0: poll without pause, as a benchmark
    /// sink must; tests share their CPUs and leave it on).
    #[arg(long, default_value_t = 100)]
    idle_sleep_us: u64,
    /// A second VM in the same process: a `net_virtio_user` port on this vhost-user socket
    /// (same mode and queues as `--socket`) whose received frames are counted
    /// (`sink_received`) and freed. Both links must be up for `ready`.
    #[arg(long)]
    sink_socket: Option<PathBuf>,
    /// With `--send`: wait for a `go` line on stdin before sending (after `ready`).
    #[arg(long, requires = "send")]
    wait_go: bool,
    /// With `--send`: the benchmark generator. Frames are packed in one buffer and split
    /// into one list per TX queue (by `--tx-queue`); each queue gets bursts of 32 in turn,
    /// and both ports' RX are polled after every burst. Without `--rate`, a burst the queue
    /// does not take is kept and offered again (nothing counts as failed); with `--rate`,
    /// frames are due at that rate and one not taken is dropped (`tx_dropped`). For
    /// `--duration` seconds, or without it until SIGINT or SIGTERM (`--repeat` does not
    /// apply).
    #[arg(long, requires = "send")]
    blast: bool,
    /// With `--sink-socket` and `--send`: count the flows of the `--send` file (IPv4
    /// source, destination, protocol, ports) the sink receives (`sink_flows_seen`; reset by
    /// `reset-gap`).
    #[arg(long, requires_all = ["send", "sink_socket"])]
    sink_flows: bool,
}

static STOP: AtomicBool = AtomicBool::new(false);

/// Counters of the guest's port, as the guest's driver sees them.
#[derive(Debug, Default, Clone, Serialize)]
struct Counters {
    /// When this report was made, `CLOCK_MONOTONIC` ns.
    at_ns: u64,
    /// Frames taken by a TX queue.
    sent: u64,
    sent_bytes: u64,
    /// Frames taken per TX queue.
    sent_per_queue: Vec<u64>,
    /// Frames no TX queue took within `--tx-timeout-ms`.
    tx_failed: u64,
    received: u64,
    received_bytes: u64,
    /// Frames received per RX queue.
    received_per_queue: Vec<u64>,
    /// Seconds from the first frame sent to the last (of everything sent so far).
    send_seconds: f64,
    /// Frames received by the `--sink-socket` port.
    #[serde(skip_serializing_if = "Option::is_none")]
    sink_received: Option<u64>,
    /// Bytes received by the `--sink-socket` port.
    #[serde(skip_serializing_if = "Option::is_none")]
    sink_received_bytes: Option<u64>,
    /// `--blast --rate`: frames due by the schedule (`sent` + `tx_dropped`).
    offered: u64,
    /// `--blast --rate`: frames due that no TX queue took (dropped by the guest).
    tx_dropped: u64,
    /// Since `reset-gap`: the longest time between two RX polls of the watched port (the
    /// sink's, else the first port's) that received frames, µs.
    max_rx_gap_us: u64,
    /// When that gap ended, `CLOCK_MONOTONIC` ns (0: none yet).
    max_rx_gap_end_ns: u64,
    /// When the watched port last received, `CLOCK_MONOTONIC` ns (0: not since the start).
    last_rx_ns: u64,
    /// Since `reset-gap`: the longest time between two TX bursts that were taken, µs.
    max_tx_gap_us: u64,
    /// When that gap ended, `CLOCK_MONOTONIC` ns (0: none yet).
    max_tx_gap_end_ns: u64,
    /// Since `reset-gap` (`--blast --rate`): the most the sender was behind its schedule, µs.
    pace_max_lag_us: u64,
    /// Times the guest saw its link (either port) go down.
    link_downs: u64,
    /// When it last saw the link go down and come up again, `CLOCK_MONOTONIC` ns (0: never).
    last_link_down_ns: u64,
    /// See `last_link_down_ns`.
    last_link_up_ns: u64,
    /// Across the last link-down (the vRouter went away and came back): the time from the
    /// watched port's last frame before it to its first after, µs (0: not over yet).
    link_rx_gap_us: u64,
    /// When that gap ended, `CLOCK_MONOTONIC` ns (0: not over yet).
    link_rx_gap_end_ns: u64,
    /// `--sink-flows`: flows of the `--send` file the sink received since `reset-gap` or
    /// `reset-flows`.
    #[serde(skip_serializing_if = "Option::is_none")]
    sink_flows_seen: Option<u64>,
    /// `--sink-flows`: distinct flows in the `--send` file.
    #[serde(skip_serializing_if = "Option::is_none")]
    sink_flows_total: Option<u64>,
    /// `--sink-flows`: when the last of them arrived, `CLOCK_MONOTONIC` ns (0: not yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    sink_flows_all_ns: Option<u64>,
}

#[derive(Serialize)]
struct Report<'a> {
    event: &'a str,
    link: &'a str,
    #[serde(flatten)]
    counters: &'a Counters,
}

fn say(event: &str, link_up: bool, counters: &Counters) {
    let r = Report { event, link: if link_up { "up" } else { "down" }, counters };
    let mut out = std::io::stdout().lock();
    // A reader that went away is not an error of the guest.
    let _ = writeln!(out, "{}", serde_json::to_string(&r).expect("plain struct"));
    let _ = out.flush();
}

struct Guest {
    port: Port,
    /// The `--sink-socket` port.
    sink: Option<Port>,
    pool: Mempool,
    queues: u16,
    tx_timeout: Duration,
    record: Option<pcap::Writer>,
    c: Counters,
    first_tx: Option<Instant>,
    /// Polls since the link state was last read (see [`Guest::poll_rx`]).
    polls: u32,
    /// RX polls of the watched port (the sink's, else the first's) that received frames.
    rx_gap: GapWatch,
    /// TX bursts that were taken (`--blast --rate`).
    tx_gap: GapWatch,
    /// The most the paced sender was behind its schedule since `reset-gap`.
    pace_lag: Duration,
    link: LinkWatch,
    /// `--sink-flows`.
    flows: Option<FlowCoverage>,
}

/// The guest reads its link state every this many polls (a few ms when idle).
const LINK_POLLS: u32 = 1024;

/// The longest time between two events (RX polls that received, TX bursts taken) since a
/// reset, and when it ended.
#[derive(Debug, Default)]
struct GapWatch {
    last: Option<Instant>,
    max: Duration,
    max_end: Option<Instant>,
}

impl GapWatch {
    /// An event at `now`.
    fn mark(&mut self, now: Instant) {
        if let Some(last) = self.last {
            let gap = now.saturating_duration_since(last);
            if gap > self.max {
                self.max = gap;
                self.max_end = Some(now);
            }
        }
        self.last = Some(now);
    }

    /// A new observation from `now` (a gap that spans it counts from `now`).
    fn reset(&mut self, now: Instant) {
        self.max = Duration::ZERO;
        self.max_end = None;
        if self.last.is_some() {
            self.last = Some(now);
        }
    }
}

/// How often the guest reads the link of a port it saw down (see [`Guest::watch_link`]).
const DOWN_LINK_READS: Duration = Duration::from_millis(100);

/// The last link state read of one port.
#[derive(Debug, Default, Clone, Copy)]
struct PortLink {
    up: bool,
    read_at: Option<Instant>,
}

/// Link changes the guest saw (when it read the link state).
#[derive(Debug, Default)]
struct LinkWatch {
    /// Each port's (the first, the sink).
    ports: [PortLink; 2],
    up: bool,
    downs: u64,
    last_down: Option<Instant>,
    last_up: Option<Instant>,
    /// The link went down: the next poll arms the gaps across it (after it has taken what
    /// the vRouter that went away had put in the sink's ring).
    pending_down: bool,
    /// The gap of the watched port's RX across the last link-down: from its last frame
    /// before to its first after; `end` is `None` while it lasts.
    rx_across: Option<Across>,
}

/// A gap across a link-down.
#[derive(Debug, Clone, Copy)]
struct Across {
    start: Instant,
    end: Option<Instant>,
}

impl Across {
    /// Armed at a link-down: from the last event before it (or the down itself).
    fn from(last: Option<Instant>, down: Instant) -> Across {
        Across { start: last.unwrap_or(down), end: None }
    }

    /// An event at `now` ends it if it is still open.
    fn event(slot: &mut Option<Across>, now: Instant) {
        if let Some(a) = slot.as_mut().filter(|a| a.end.is_none()) {
            a.end = Some(now);
        }
    }

    /// (length µs, end) of a gap that has ended.
    fn done(slot: &Option<Across>) -> Option<(u64, Instant)> {
        let a = slot.as_ref()?;
        let end = a.end?;
        Some((end.saturating_duration_since(a.start).as_micros() as u64, end))
    }
}

/// A flow of `--sink-flows`: IPv4 source and destination, protocol, L4 ports.
type FlowKey = [u8; 13];

/// The flow of an Ethernet frame (IPv4, optionally behind one VLAN tag); ports are 0 for
/// protocols other than TCP and UDP and for non-first fragments.
fn flow_key(frame: &[u8]) -> Option<FlowKey> {
    let mut l3 = 14;
    let mut ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    if ethertype == 0x8100 {
        ethertype = u16::from_be_bytes([*frame.get(16)?, *frame.get(17)?]);
        l3 = 18;
    }
    if ethertype != 0x0800 {
        return None;
    }
    let ip = frame.get(l3..l3 + 20)?;
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let proto = ip[9];
    let first_fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff == 0;
    let mut key = [0u8; 13];
    key[..8].copy_from_slice(&ip[12..20]);
    key[8] = proto;
    if first_fragment && (proto == 6 || proto == 17) {
        key[9..13].copy_from_slice(frame.get(l3 + ihl..l3 + ihl + 4)?);
    }
    Some(key)
}

/// `--sink-flows`: which flows of the `--send` file the sink received since the last
/// `reset-gap` or `reset-flows`, or since the guest last saw its link go down (the vRouter
/// went away: what counts after a restart is what the next one forwards).
struct FlowCoverage {
    index: std::collections::HashMap<FlowKey, u32>,
    /// One bit per flow.
    seen: Vec<u64>,
    count: u64,
    /// When the last flow arrived.
    all_at: Option<Instant>,
}

impl FlowCoverage {
    fn new(frames: &[Vec<u8>]) -> FlowCoverage {
        let mut index = std::collections::HashMap::with_capacity(frames.len());
        for f in frames {
            if let Some(k) = flow_key(f) {
                let next = index.len() as u32;
                index.entry(k).or_insert(next);
            }
        }
        let words = index.len().div_ceil(64);
        FlowCoverage { index, seen: vec![0; words], count: 0, all_at: None }
    }

    fn total(&self) -> u64 {
        self.index.len() as u64
    }

    fn reset(&mut self) {
        self.seen.iter_mut().for_each(|w| *w = 0);
        self.count = 0;
        self.all_at = None;
    }

    /// A frame the sink received.
    fn saw(&mut self, frame: &[u8]) {
        let Some(&i) = flow_key(frame).and_then(|k| self.index.get(&k)) else { return };
        let (w, bit) = (i as usize / 64, 1u64 << (i % 64));
        if self.seen[w] & bit == 0 {
            self.seen[w] |= bit;
            self.count += 1;
            if self.count == self.total() {
                self.all_at = Some(Instant::now());
            }
        }
    }
}

/// `CLOCK_MONOTONIC` of `t` in ns: the clock other processes (the benchmark harness) read.
fn mono_ns(t: Instant) -> u64 {
    let now = Instant::now();
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out-pointer for the call's duration.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let now_ns = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
    now_ns.saturating_sub(now.saturating_duration_since(t).as_nanos() as u64)
}

impl Guest {
    /// Whether the link of the guest's port (and of its sink port, if any) is up.
    fn link_up(&self) -> bool {
        port_link_up(&self.port) && self.sink.as_ref().is_none_or(port_link_up)
    }

    /// Reads the link state (which is also what makes virtio-user take a new connection)
    /// and notes a change.
    ///
    /// Each port is read on its own (a port that went down must be read to be handled as
    /// disconnected, whatever the other's state). A port seen down is read again only every
    /// [`DOWN_LINK_READS`], or at once when traffic shows it is back ([`Guest::poll_rx`]):
    /// reading a virtio-user port's link makes its socket non-blocking for a moment, and a
    /// reconnection that the EAL's interrupt thread runs on that socket at that moment fails
    /// (DPDK 22.11: `get_features failed: Resource temporarily unavailable`), leaving the
    /// port down for good.
    fn watch_link(&mut self) -> bool {
        let now = Instant::now();
        for (i, port) in [Some(&self.port), self.sink.as_ref()].into_iter().enumerate() {
            let Some(port) = port else { continue };
            let st = &mut self.link.ports[i];
            if !st.up && st.read_at.is_some_and(|t| now.saturating_duration_since(t) < DOWN_LINK_READS) {
                continue;
            }
            st.up = port_link_up(port);
            st.read_at = Some(now);
        }
        let up = self.link.ports[0].up && (self.sink.is_none() || self.link.ports[1].up);
        if up != self.link.up {
            let now = Some(now);
            if up {
                self.link.last_up = now;
            } else {
                self.link.downs += 1;
                self.link.last_down = now;
                self.link.pending_down = true;
            }
            self.link.up = up;
        }
        up
    }

    /// The counters with the gaps, link changes and flows brought up to date.
    fn counters(&mut self) -> &Counters {
        let us = |d: Duration| d.as_micros() as u64;
        self.c.at_ns = mono_ns(Instant::now());
        self.c.max_rx_gap_us = us(self.rx_gap.max);
        self.c.max_rx_gap_end_ns = self.rx_gap.max_end.map_or(0, mono_ns);
        self.c.last_rx_ns = self.rx_gap.last.map_or(0, mono_ns);
        self.c.max_tx_gap_us = us(self.tx_gap.max);
        self.c.max_tx_gap_end_ns = self.tx_gap.max_end.map_or(0, mono_ns);
        self.c.pace_max_lag_us = us(self.pace_lag);
        self.c.link_downs = self.link.downs;
        self.c.last_link_down_ns = self.link.last_down.map_or(0, mono_ns);
        self.c.last_link_up_ns = self.link.last_up.map_or(0, mono_ns);
        let (rx_us, rx_end) = Across::done(&self.link.rx_across).map_or((0, 0), |(us, end)| (us, mono_ns(end)));
        (self.c.link_rx_gap_us, self.c.link_rx_gap_end_ns) = (rx_us, rx_end);
        if let Some(f) = &self.flows {
            self.c.sink_flows_seen = Some(f.count);
            self.c.sink_flows_total = Some(f.total());
            self.c.sink_flows_all_ns = Some(f.all_at.map_or(0, mono_ns));
        }
        &self.c
    }

    /// `reset-gap`: a new observation of the gaps, the pacing lag and the flows.
    fn reset_gap(&mut self) {
        let now = Instant::now();
        self.rx_gap.reset(now);
        self.tx_gap.reset(now);
        self.pace_lag = Duration::ZERO;
        if let Some(f) = self.flows.as_mut() {
            f.reset();
        }
    }

    /// Receives what is waiting on every RX queue (of both ports with a sink). Every
    /// [`LINK_POLLS`] calls it also reads the link state: virtio-user in server mode notices
    /// that the vRouter went away only when its link is read, and takes the next connection
    /// (a restarted or a taking-over vRouter) only after that, where QEMU's event loop notices
    /// at once.
    fn poll_rx(&mut self) -> Result<usize> {
        self.polls += 1;
        if self.polls >= LINK_POLLS {
            self.polls = 0;
            self.watch_link();
        }
        let mut pkts = [std::ptr::null_mut::<dpdk_sys::rte_mbuf>(); BURST];
        let mut total = 0;
        for q in 0..self.queues {
            // SAFETY: the port is started, this thread is its only user, `pkts` has room for BURST.
            let n =
                usize::from(unsafe { dpdk_sys::rte_eth_rx_burst(self.port.id, q, pkts.as_mut_ptr(), BURST as u16) });
            for &m in &pkts[..n] {
                self.c.received += 1;
                self.c.received_per_queue[usize::from(q)] += 1;
                // Only a recorded frame is copied out of its mbuf.
                if let Some(w) = self.record.as_mut() {
                    let frame = frame_bytes(m);
                    self.c.received_bytes += frame.len() as u64;
                    w.write(&frame)?;
                } else {
                    self.c.received_bytes += u64::from(pkt_len(m));
                }
            }
            if n > 0 {
                // SAFETY: the n mbufs were received by us and are freed once.
                unsafe { dpdk_sys::rte_pktmbuf_free_bulk(pkts.as_mut_ptr(), n as u32) };
            }
            total += n;
        }
        let mut watched = total;
        if let Some(sink) = &self.sink {
            watched = 0;
            for q in 0..self.queues {
                // SAFETY: as above, for the sink port.
                let n = usize::from(unsafe { dpdk_sys::rte_eth_rx_burst(sink.id, q, pkts.as_mut_ptr(), BURST as u16) });
                if n == 0 {
                    continue;
                }
                let bytes: u64 = pkts[..n].iter().map(|&m| u64::from(pkt_len(m))).sum();
                *self.c.sink_received.get_or_insert(0) += n as u64;
                *self.c.sink_received_bytes.get_or_insert(0) += bytes;
                if let Some(f) = self.flows.as_mut() {
                    for &m in &pkts[..n] {
                        f.saw(first_segment(m));
                    }
                }
                // SAFETY: the n mbufs were received by us and are freed once.
                unsafe { dpdk_sys::rte_pktmbuf_free_bulk(pkts.as_mut_ptr(), n as u32) };
                total += n;
                watched += n;
            }
        }
        if watched > 0 {
            let now = Instant::now();
            self.rx_gap.mark(now);
            Across::event(&mut self.link.rx_across, now);
            // Traffic through the vRouter: both ports are connected again; read them next.
            for p in self.link.ports.iter_mut().filter(|p| !p.up) {
                p.read_at = None;
            }
        }
        if self.link.pending_down {
            // What the vRouter that went away had put in the sink's ring is taken (above):
            // from here on, what arrives comes through the next one.
            self.link.pending_down = false;
            let down = self.link.last_down.unwrap_or_else(Instant::now);
            self.link.rx_across = Some(Across::from(self.rx_gap.last, down));
            if let Some(f) = self.flows.as_mut() {
                f.reset();
            }
        }
        Ok(total)
    }

    /// The benchmark generator (`--blast`): sends `plan`'s frames round after round until
    /// `end` (or a stop; `None`: until a stop), a burst of at most [`BURST`] per TX queue in turn, polling RX after
    /// every burst. A burst a queue does not take in full keeps its rest for the next turn.
    /// Commands that arrive meanwhile are served every 64 rounds (`stats`, `reset-gap`, `quit`).
    fn blast(&mut self, plan: &BlastPlan, end: Option<Instant>, cmds: &mpsc::Receiver<String>) -> Result<()> {
        let nq = plan.queues.len();
        let mut ready: Vec<([*mut dpdk_sys::rte_mbuf; BURST], [u16; BURST], usize, usize)> =
            vec![([std::ptr::null_mut(); BURST], [0; BURST], 0, 0); nq];
        let mut cursor = vec![0usize; nq];
        let mut iter = 0u32;
        'outer: loop {
            for (q, lst) in plan.queues.iter().enumerate() {
                if lst.spans.is_empty() {
                    continue;
                }
                let (pkts, lens, off, n) = &mut ready[q];
                if *off == *n {
                    // A fresh burst from the queue's list, copied into new mbufs.
                    let want = BURST.min(lst.spans.len());
                    // SAFETY: the pool is live; `pkts` has room for BURST pointers.
                    if unsafe { dpdk_sys::rte_pktmbuf_alloc_bulk(self.pool.as_ptr(), pkts.as_mut_ptr(), want as u32) }
                        != 0
                    {
                        // Every mbuf is in flight: let the other side catch up.
                        self.poll_rx()?;
                        continue;
                    }
                    for i in 0..want {
                        let (start, len) = lst.spans[cursor[q]];
                        cursor[q] = (cursor[q] + 1) % lst.spans.len();
                        let frame = &lst.arena[start as usize..start as usize + usize::from(len)];
                        // SAFETY: a fresh mbuf of the pool (2048-byte data room; frames are at
                        // most pcap::MAX_FRAME); the copy stays within its buffer.
                        unsafe {
                            let mb = &mut *pkts[i];
                            let dst = (mb.buf_addr as *mut u8).add(usize::from(mb.data_off));
                            std::ptr::copy_nonoverlapping(frame.as_ptr(), dst, frame.len());
                            mb.data_len = len;
                            mb.pkt_len = u32::from(len);
                        }
                        lens[i] = len;
                    }
                    (*off, *n) = (0, want);
                }
                self.first_tx.get_or_insert_with(Instant::now);
                // SAFETY: pkts[off..n] are ours; the driver takes ownership of those it returns.
                let sent = usize::from(unsafe {
                    dpdk_sys::rte_eth_tx_burst(self.port.id, q as u16, pkts.as_mut_ptr().add(*off), (*n - *off) as u16)
                });
                self.c.sent += sent as u64;
                self.c.sent_per_queue[q] += sent as u64;
                self.c.sent_bytes += lens[*off..*off + sent].iter().map(|&l| u64::from(l)).sum::<u64>();
                *off += sent;
                self.poll_rx()?;
            }
            iter = iter.wrapping_add(1);
            if iter.is_multiple_of(64) {
                if end.is_some_and(|e| Instant::now() >= e) || STOP.load(Ordering::Relaxed) {
                    break 'outer;
                }
                let _ = self.commands_while_sending(cmds, false);
            }
        }
        // Mbufs prepared but never taken go back to the pool.
        for (pkts, _, off, n) in &mut ready {
            if *off < *n {
                // SAFETY: the untaken mbufs are still ours.
                unsafe { dpdk_sys::rte_pktmbuf_free_bulk(pkts.as_mut_ptr().add(*off), (*n - *off) as u32) };
            }
        }
        if let Some(t) = self.first_tx {
            self.c.send_seconds = t.elapsed().as_secs_f64();
        }
        Ok(())
    }

    /// The steady offered load of `--blast --rate`: from a fixed schedule of `rate` frames per
    /// second, the frames due are offered in bursts of at most [`BURST`] (the queues in turn);
    /// those a queue does not take are dropped (`tx_dropped`), so the load does not change
    /// when the other side goes away and comes back. RX is polled after every burst; with
    /// nothing due and nothing received the guest sleeps `sleep_us`. The link and the
    /// commands are read every millisecond. Until `end` or a stop; `pause` and `resume` hold
    /// and restart the schedule.
    fn paced(
        &mut self,
        plan: &BlastPlan,
        rate: u64,
        end: Option<Instant>,
        cmds: &mpsc::Receiver<String>,
        sleep_us: u64,
    ) -> Result<()> {
        let queues: Vec<usize> = (0..plan.queues.len()).filter(|&q| !plan.queues[q].spans.is_empty()).collect();
        if queues.is_empty() {
            return Ok(());
        }
        let mut cursor = vec![0usize; plan.queues.len()];
        let mut turn = 0;
        let mut pkts = [std::ptr::null_mut::<dpdk_sys::rte_mbuf>(); BURST];
        let mut lens = [0u16; BURST];
        let mut base = Instant::now();
        let mut done: u64 = 0;
        let mut paused = false;
        let mut last_ms = base;
        let ns_per_frame = 1e9 / rate as f64;
        self.first_tx.get_or_insert(base);
        loop {
            let now = Instant::now();
            let mut worked = 0;
            if !paused {
                let due = (now.saturating_duration_since(base).as_nanos() * u128::from(rate) / 1_000_000_000) as u64;
                let behind = due.saturating_sub(done);
                let lag = Duration::from_nanos((behind as f64 * ns_per_frame) as u64);
                if lag > self.pace_lag {
                    self.pace_lag = lag;
                }
                let want = behind.min(BURST as u64) as usize;
                if want > 0 {
                    let q = queues[turn];
                    turn = (turn + 1) % queues.len();
                    let lst = &plan.queues[q];
                    // SAFETY: the pool is live; `pkts` has room for BURST pointers.
                    let sent = if unsafe {
                        dpdk_sys::rte_pktmbuf_alloc_bulk(self.pool.as_ptr(), pkts.as_mut_ptr(), want as u32)
                    } != 0
                    {
                        // Every mbuf is in flight: these frames are dropped like the refused.
                        0
                    } else {
                        for i in 0..want {
                            let (start, len) = lst.spans[cursor[q]];
                            cursor[q] = (cursor[q] + 1) % lst.spans.len();
                            let frame = &lst.arena[start as usize..start as usize + usize::from(len)];
                            // SAFETY: a fresh mbuf of the pool (2048-byte data room; frames are at
                            // most pcap::MAX_FRAME); the copy stays within its buffer.
                            unsafe {
                                let mb = &mut *pkts[i];
                                let dst = (mb.buf_addr as *mut u8).add(usize::from(mb.data_off));
                                std::ptr::copy_nonoverlapping(frame.as_ptr(), dst, frame.len());
                                mb.data_len = len;
                                mb.pkt_len = u32::from(len);
                            }
                            lens[i] = len;
                        }
                        // SAFETY: pkts[..want] are ours; the driver takes ownership of those it returns.
                        let sent = usize::from(unsafe {
                            dpdk_sys::rte_eth_tx_burst(self.port.id, q as u16, pkts.as_mut_ptr(), want as u16)
                        });
                        if sent < want {
                            // SAFETY: the frames the queue did not take are still ours.
                            unsafe {
                                dpdk_sys::rte_pktmbuf_free_bulk(pkts.as_mut_ptr().add(sent), (want - sent) as u32)
                            };
                        }
                        self.c.sent_bytes += lens[..sent].iter().map(|&l| u64::from(l)).sum::<u64>();
                        sent
                    };
                    self.c.offered += want as u64;
                    self.c.sent += sent as u64;
                    self.c.sent_per_queue[q] += sent as u64;
                    self.c.tx_dropped += (want - sent) as u64;
                    if sent > 0 {
                        self.tx_gap.mark(now);
                    }
                    done += want as u64;
                    worked += want;
                }
            }
            worked += self.poll_rx()?;
            // Every millisecond: the link, the end, the commands.
            if now.saturating_duration_since(last_ms) >= Duration::from_millis(1) {
                last_ms = now;
                self.watch_link();
                if end.is_some_and(|e| now >= e) || STOP.load(Ordering::Relaxed) {
                    break;
                }
                match self.commands_while_sending(cmds, true) {
                    Some(true) => paused = true,
                    Some(false) if paused => {
                        // A new schedule from now: the pause is not made up for.
                        paused = false;
                        (base, done) = (Instant::now(), 0);
                    }
                    _ => {}
                }
            }
            if worked == 0 && sleep_us > 0 {
                std::thread::sleep(Duration::from_micros(sleep_us));
            }
        }
        if let Some(t) = self.first_tx {
            self.c.send_seconds = t.elapsed().as_secs_f64();
        }
        Ok(())
    }

    /// Serves the commands that arrived while `--blast` sends: `stats`, `reset-gap`, `quit`,
    /// and when `paced`, `pause` (returns `Some(true)`) and `resume` (`Some(false)`).
    fn commands_while_sending(&mut self, cmds: &mpsc::Receiver<String>, paced: bool) -> Option<bool> {
        let mut pause = None;
        while let Ok(line) = cmds.try_recv() {
            match parse_command(&line) {
                Ok(Command::Stats) => say("stats", self.link.up, self.counters()),
                Ok(Command::ResetGap) => {
                    self.reset_gap();
                    say("reset", self.link.up, self.counters());
                }
                Ok(Command::ResetFlows) => {
                    if let Some(f) = self.flows.as_mut() {
                        f.reset();
                    }
                    say("reset", self.link.up, self.counters());
                }
                Ok(Command::Pause) if paced => {
                    pause = Some(true);
                    say("paused", self.link.up, self.counters());
                }
                Ok(Command::Resume) if paced => {
                    pause = Some(false);
                    say("resumed", self.link.up, self.counters());
                }
                Ok(Command::Quit) => STOP.store(true, Ordering::Relaxed),
                Ok(_) => say_error(&format!(
                    "{:?}: not while sending (stats, reset-gap, reset-flows, quit; pause, resume with --rate)",
                    line.trim()
                )),
                Err(e) => say_error(&format!("{e:#}")),
            }
        }
        pause
    }

    /// Sends `frames` on their queues (keeping RX drained meanwhile), at most `rate` per second.
    fn send(&mut self, frames: &[Vec<u8>], queue: TxQueue, rate: u64) -> Result<()> {
        let start = Instant::now();
        let mut i = 0;
        while i < frames.len() && !STOP.load(Ordering::Relaxed) {
            if rate > 0 {
                let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
                while Instant::now() < due {
                    self.poll_rx()?;
                }
            }
            // One burst of frames for the same queue, at most BURST, at most one when paced.
            let q = queue_of(&frames[i], queue, self.queues);
            let mut end = i + 1;
            let max = if rate > 0 { 1 } else { BURST };
            while end < frames.len() && end - i < max && queue_of(&frames[end], queue, self.queues) == q {
                end += 1;
            }
            self.send_burst(&frames[i..end], q)?;
            i = end;
        }
        Ok(())
    }

    fn send_burst(&mut self, frames: &[Vec<u8>], q: u16) -> Result<()> {
        let mut pkts = [std::ptr::null_mut::<dpdk_sys::rte_mbuf>(); BURST];
        let n = frames.len();
        // SAFETY: the pool is live; `pkts` has room for n <= BURST pointers.
        if unsafe { dpdk_sys::rte_pktmbuf_alloc_bulk(self.pool.as_ptr(), pkts.as_mut_ptr(), n as u32) } != 0 {
            bail!("the guest's mbuf pool is exhausted");
        }
        for (&m, f) in pkts.iter().zip(frames) {
            // SAFETY: `m` is a fresh mbuf of the pool (2048-byte data room, frames are at most
            // pcap::MAX_FRAME); the copy stays within its buffer.
            unsafe {
                let mb = &mut *m;
                let dst = (mb.buf_addr as *mut u8).add(usize::from(mb.data_off));
                std::ptr::copy_nonoverlapping(f.as_ptr(), dst, f.len());
                mb.data_len = f.len() as u16;
                mb.pkt_len = f.len() as u32;
            }
        }
        self.first_tx.get_or_insert_with(Instant::now);
        let deadline = Instant::now() + self.tx_timeout;
        let mut done = 0;
        while done < n {
            // SAFETY: pkts[done..n] are ours; the driver takes ownership of those it returns.
            let sent = usize::from(unsafe {
                dpdk_sys::rte_eth_tx_burst(self.port.id, q, pkts.as_mut_ptr().add(done), (n - done) as u16)
            });
            for f in &frames[done..done + sent] {
                self.c.sent += 1;
                self.c.sent_bytes += f.len() as u64;
            }
            self.c.sent_per_queue[usize::from(q)] += sent as u64;
            done += sent;
            if done < n {
                if Instant::now() >= deadline || STOP.load(Ordering::Relaxed) {
                    self.c.tx_failed += (n - done) as u64;
                    // SAFETY: the unsent mbufs are still ours.
                    unsafe { dpdk_sys::rte_pktmbuf_free_bulk(pkts.as_mut_ptr().add(done), (n - done) as u32) };
                    break;
                }
                self.poll_rx()?;
            }
        }
        if let Some(t) = self.first_tx {
            self.c.send_seconds = t.elapsed().as_secs_f64();
        }
        Ok(())
    }
}

/// The bytes of a received packet, over all its segments.
fn frame_bytes(m: *mut dpdk_sys::rte_mbuf) -> Vec<u8> {
    let mut out = Vec::new();
    let mut seg = m;
    while !seg.is_null() {
        // SAFETY: `seg` is a segment of a packet we received and still own; its data lies at
        // buf_addr + data_off for data_len bytes.
        unsafe {
            let s = &*seg;
            let p = (s.buf_addr as *const u8).add(usize::from(s.data_off));
            out.extend_from_slice(std::slice::from_raw_parts(p, usize::from(s.data_len)));
            seg = s.next;
        }
    }
    out
}

fn port_link_up(port: &Port) -> bool {
    let mut link = dpdk_sys::rte_eth_link::default();
    // SAFETY: `link` is a valid out-pointer; the call only reads the port's state.
    let ret = unsafe { dpdk_sys::rte_eth_link_get_nowait(port.id, &mut link) };
    ret == 0 && link.link_status() != 0
}

/// The first segment's bytes of a received packet (the headers).
fn first_segment<'a>(m: *mut dpdk_sys::rte_mbuf) -> &'a [u8] {
    // SAFETY: `m` is a packet we received and still own (the caller uses the slice before
    // freeing it); its first segment's data lies at buf_addr + data_off for data_len bytes.
    unsafe {
        let s = &*m;
        std::slice::from_raw_parts((s.buf_addr as *const u8).add(usize::from(s.data_off)), usize::from(s.data_len))
    }
}

/// The length of a received packet.
fn pkt_len(m: *mut dpdk_sys::rte_mbuf) -> u32 {
    // SAFETY: `m` is a packet we received and still own.
    unsafe { (*m).pkt_len }
}

/// The frames of one TX queue for `--blast`, packed one after the other in `arena`.
#[derive(Debug, Default)]
struct QueueFrames {
    arena: Vec<u8>,
    /// (offset in `arena`, length) of each frame, in send order.
    spans: Vec<(u32, u16)>,
}

/// What `--blast` sends: the frames of the pcap split by TX queue (their order kept within
/// each queue, so one flow's frames stay in order).
#[derive(Debug)]
struct BlastPlan {
    queues: Vec<QueueFrames>,
}

impl BlastPlan {
    fn new(frames: &[Vec<u8>], how: TxQueue, queues: u16) -> BlastPlan {
        let mut qs: Vec<QueueFrames> = (0..queues).map(|_| QueueFrames::default()).collect();
        for f in frames {
            let q = &mut qs[usize::from(queue_of(f, how, queues))];
            q.spans.push((q.arena.len() as u32, f.len() as u16));
            q.arena.extend_from_slice(f);
        }
        BlastPlan { queues: qs }
    }
}

/// The TX queue of a frame: fixed, or a hash of its IPv4/IPv6 addresses and L4 ports (the
/// same for every frame of a flow direction).
fn queue_of(frame: &[u8], how: TxQueue, queues: u16) -> u16 {
    match how {
        TxQueue::Fixed(q) => q,
        TxQueue::Hash => {
            let mut off = 12;
            let mut ethertype =
                u16::from_be_bytes([frame.get(12).copied().unwrap_or(0), frame.get(13).copied().unwrap_or(0)]);
            if ethertype == 0x8100 {
                off += 4;
                ethertype = frame.get(off..off + 2).map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
            }
            let l3 = off + 2;
            let key: &[u8] = match ethertype {
                0x0800 => {
                    let ihl = frame.get(l3).map_or(20, |b| usize::from(b & 0x0f) * 4);
                    let addrs = frame.get(l3 + 12..l3 + 20).unwrap_or(&[]);
                    let ports = frame.get(l3 + ihl..l3 + ihl + 4).unwrap_or(&[]);
                    return fnv(&[addrs, ports]) % queues.max(1);
                }
                0x86dd => {
                    let addrs = frame.get(l3 + 8..l3 + 40).unwrap_or(&[]);
                    let ports = frame.get(l3 + 40..l3 + 44).unwrap_or(&[]);
                    return fnv(&[addrs, ports]) % queues.max(1);
                }
                _ => frame.get(0..12).unwrap_or(&[]),
            };
            fnv(&[key]) % queues.max(1)
        }
    }
}

fn fnv(parts: &[&[u8]]) -> u16 {
    let mut h: u32 = 0x811c_9dc5;
    for b in parts.iter().flat_map(|p| p.iter()) {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (h ^ (h >> 16)) as u16
}

/// A command read from stdin.
#[derive(Debug, PartialEq)]
enum Command {
    Send { pcap: PathBuf, queue: Option<TxQueue>, repeat: u64 },
    WaitRx { frames: u64, timeout: Duration },
    Stats,
    ResetGap,
    ResetFlows,
    Pause,
    Resume,
    Flush,
    Quit,
}

fn parse_command(line: &str) -> Result<Command> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let num = |i: usize, what: &str| -> Result<u64> {
        let w = words.get(i).with_context(|| format!("{}: {what} is missing", words[0]))?;
        w.parse::<u64>().with_context(|| format!("{}: {what} {w:?} is not a number", words[0]))
    };
    match words.first().copied() {
        Some("send") => {
            let pcap = PathBuf::from(words.get(1).context("send: the pcap path is missing")?);
            let queue = match words.get(2) {
                Some(q) => Some(parse_tx_queue(q).map_err(|e| anyhow::anyhow!("send: queue {e}"))?),
                None => None,
            };
            let repeat = if words.len() > 3 { num(3, "repeat")? } else { 1 };
            Ok(Command::Send { pcap, queue, repeat })
        }
        Some("wait-rx") => {
            Ok(Command::WaitRx { frames: num(1, "frame count")?, timeout: Duration::from_millis(num(2, "timeout")?) })
        }
        Some("stats") => Ok(Command::Stats),
        Some("reset-gap") => Ok(Command::ResetGap),
        Some("reset-flows") => Ok(Command::ResetFlows),
        Some("pause") => Ok(Command::Pause),
        Some("resume") => Ok(Command::Resume),
        Some("flush") => Ok(Command::Flush),
        Some("quit") => Ok(Command::Quit),
        Some(w) => {
            bail!("unknown command {w:?} (send, wait-rx, stats, reset-gap, reset-flows, pause, resume, flush, quit)")
        }
        None => bail!("empty command"),
    }
}

fn eal_args(cli: &Cli) -> Vec<String> {
    let prefix = cli.file_prefix.clone().unwrap_or_else(|| format!("vm-guest-{}", std::process::id()));
    let mut vdev = format!(
        "net_virtio_user0,path={},server={},queues={},queue_size={}",
        cli.socket.display(),
        u8::from(!cli.client),
        cli.queues,
        cli.queue_size
    );
    if let Some(mac) = &cli.mac {
        vdev.push_str(&format!(",mac={mac}"));
    }
    let sink = cli.sink_socket.as_ref().map(|p| {
        format!(
            "net_virtio_user1,path={},server={},queues={},queue_size={}",
            p.display(),
            u8::from(!cli.client),
            cli.queues,
            cli.queue_size
        )
    });
    let mut a = vec![
        "vm-guest".to_string(),
        "-l".into(),
        cli.cpu.to_string(),
        "-m".into(),
        cli.memory_mb.to_string(),
        format!("--file-prefix={prefix}"),
        "--no-pci".into(),
        "--vdev".into(),
        vdev,
    ];
    if let Some(v) = sink {
        a.push("--vdev".into());
        a.push(v);
    }
    if cli.huge {
        // vhost-user passes the guest's memory as one region per file: with a file per
        // 2 MiB page the backend's limit of 8 regions is reached at 16 MiB. In memory: the
        // pages are hugetlb memfds, not files in a hugetlbfs mount (the backend gets their
        // descriptors over the socket), so a guest that is killed leaves no pages taken.
        a.push("--single-file-segments".into());
        a.push("--in-memory".into());
    } else {
        a.push("--no-huge".into());
    }
    a.push("--log-level=lib.eal:error".into());
    a
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("vm-guest: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    if cli.queues == 0 || cli.queues > 16 {
        bail!("--queues: {} is not in 1..=16", cli.queues);
    }
    if let TxQueue::Fixed(q) = cli.tx_queue {
        if q >= cli.queues {
            bail!("--tx-queue: queue {q} does not exist with --queues {}", cli.queues);
        }
    }
    for (flag, sock) in [("--socket", Some(&cli.socket)), ("--sink-socket", cli.sink_socket.as_ref())] {
        let Some(sock) = sock else { continue };
        if sock.as_os_str().as_encoded_bytes().iter().any(|b| *b == b',' || b.is_ascii_whitespace()) {
            bail!("{flag}: {} contains a comma or a space, which DPDK device arguments cannot carry", sock.display());
        }
    }
    let to_send = match &cli.send {
        Some(p) => Some(pcap::read(p).context("--send")?),
        None => None,
    };
    if !cli.client {
        vrouter::dpdk::socket::clear_stale(&cli.socket).context("--socket")?;
        if let Some(s) = &cli.sink_socket {
            vrouter::dpdk::socket::clear_stale(s).context("--sink-socket")?;
        }
    }
    ctrlc::set_handler(|| STOP.store(true, Ordering::Relaxed)).context("installing the signal handler")?;
    // In server mode the EAL waits here until the vRouter connects.
    let _eal = Eal::init(&eal_args(&cli)).context("starting DPDK (EAL)")?;
    let port = Port::by_name("net_virtio_user0")?;
    let info = port.info()?;
    let pool =
        Mempool::create("vm_guest", pool_size(cli.queues, cli.queue_size, cli.sink_socket.is_some()), 256, info.socket)
            .context("creating the mbuf pool")?;
    let pcfg = PortConfig {
        rx_queues: cli.queues,
        tx_queues: cli.queues,
        rx_desc: cli.queue_size,
        tx_desc: cli.queue_size,
        mtu: None,
    };
    port.configure(&pcfg, &info, &pool).context("configuring the virtio_user port")?;
    port.start().context("starting the virtio_user port")?;
    let sink = match &cli.sink_socket {
        Some(_) => {
            let sink = Port::by_name("net_virtio_user1")?;
            let sinfo = sink.info()?;
            sink.configure(&pcfg, &sinfo, &pool).context("configuring the sink's virtio_user port")?;
            sink.start().context("starting the sink's virtio_user port")?;
            Some(sink)
        }
        None => None,
    };
    let record = match &cli.record {
        Some(p) => Some(pcap::Writer::create(p).context("--record")?),
        None => None,
    };
    let mut g = Guest {
        port,
        sink,
        pool,
        queues: cli.queues,
        tx_timeout: Duration::from_millis(cli.tx_timeout_ms),
        record,
        c: Counters {
            received_per_queue: vec![0; usize::from(cli.queues)],
            sent_per_queue: vec![0; usize::from(cli.queues)],
            sink_received: cli.sink_socket.as_ref().map(|_| 0),
            sink_received_bytes: cli.sink_socket.as_ref().map(|_| 0),
            ..Counters::default()
        },
        first_tx: None,
        polls: 0,
        rx_gap: GapWatch::default(),
        tx_gap: GapWatch::default(),
        pace_lag: Duration::ZERO,
        link: LinkWatch::default(),
        flows: match (&to_send, cli.sink_flows) {
            (Some(frames), true) => Some(FlowCoverage::new(frames)),
            _ => None,
        },
    };

    let up_by = Instant::now() + Duration::from_secs_f64(cli.wait_link);
    while !g.watch_link() {
        if Instant::now() >= up_by || STOP.load(Ordering::Relaxed) {
            bail!("--wait-link: the link of {} did not come up within {} s", cli.socket.display(), cli.wait_link);
        }
        g.poll_rx()?;
        std::thread::sleep(Duration::from_millis(1));
    }
    say("ready", true, g.counters());

    // Commands come from a reader thread so polling never waits on stdin.
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    if cli.wait_go {
        // The harness measures the idle forwarding core now; `go` starts the sending.
        let mut idle = IdleBackoff::new(cli.idle_sleep_us);
        loop {
            if STOP.load(Ordering::Relaxed) {
                break;
            }
            let got = g.poll_rx()?;
            match rx.try_recv().map(|l| l.trim().to_string()) {
                Ok(l) if l == "go" => break,
                Ok(l) if l == "quit" => STOP.store(true, Ordering::Relaxed),
                Ok(l) => say_error(&format!("{l:?}: only `go` or `quit` before sending (--wait-go)")),
                Err(mpsc::TryRecvError::Empty) => {}
                Err(mpsc::TryRecvError::Disconnected) => STOP.store(true, Ordering::Relaxed),
            }
            idle.after_poll(got);
        }
        say("going", g.watch_link(), g.counters());
    }

    if let (true, Some(frames)) = (cli.blast, &to_send) {
        let plan = BlastPlan::new(frames, cli.tx_queue, cli.queues);
        // Without --duration: until SIGINT or SIGTERM (--repeat does not apply).
        let end = cli.duration.map(|secs| Instant::now() + Duration::from_secs_f64(secs));
        if !STOP.load(Ordering::Relaxed) {
            if cli.rate > 0 {
                g.paced(&plan, cli.rate, end, &rx, cli.idle_sleep_us)?;
            } else {
                g.blast(&plan, end, &rx)?;
            }
        }
        say("sent", g.watch_link(), g.counters());
        if cli.exit_after_send {
            let end = Instant::now() + Duration::from_millis(cli.linger_ms);
            while Instant::now() < end && !STOP.load(Ordering::Relaxed) {
                g.poll_rx()?;
            }
            STOP.store(true, Ordering::Relaxed);
        }
    } else if let Some(frames) = &to_send {
        match cli.duration {
            Some(secs) => {
                let end = Instant::now() + Duration::from_secs_f64(secs);
                while Instant::now() < end && !STOP.load(Ordering::Relaxed) {
                    g.send(frames, cli.tx_queue, cli.rate)?;
                }
            }
            None => {
                for _ in 0..cli.repeat {
                    g.send(frames, cli.tx_queue, cli.rate)?;
                }
            }
        }
        say("sent", g.watch_link(), g.counters());
        if cli.exit_after_send {
            let end = Instant::now() + Duration::from_millis(cli.linger_ms);
            while Instant::now() < end && !STOP.load(Ordering::Relaxed) {
                g.poll_rx()?;
            }
            STOP.store(true, Ordering::Relaxed);
        }
    }

    let mut waiting: Option<(u64, Instant)> = None;
    let mut idle = IdleBackoff::new(cli.idle_sleep_us);
    while !STOP.load(Ordering::Relaxed) {
        let got = g.poll_rx()?;
        if let Some((n, by)) = waiting {
            if g.c.received >= n || Instant::now() >= by {
                say("rx", g.watch_link(), g.counters());
                waiting = None;
            }
        }
        match rx.try_recv() {
            Ok(line) => match parse_command(&line) {
                Ok(Command::Send { pcap, queue, repeat }) => match pcap::read(&pcap) {
                    Ok(frames) => {
                        for _ in 0..repeat {
                            g.send(&frames, queue.unwrap_or(cli.tx_queue), cli.rate)?;
                        }
                        say("sent", g.watch_link(), g.counters());
                    }
                    Err(e) => say_error(&format!("{e:#}")),
                },
                Ok(Command::WaitRx { frames, timeout }) => waiting = Some((frames, Instant::now() + timeout)),
                Ok(Command::Stats) => say("stats", g.watch_link(), g.counters()),
                Ok(Command::ResetGap) => {
                    g.reset_gap();
                    say("reset", g.watch_link(), g.counters());
                }
                Ok(Command::ResetFlows) => {
                    if let Some(f) = g.flows.as_mut() {
                        f.reset();
                    }
                    say("reset", g.watch_link(), g.counters());
                }
                Ok(Command::Pause | Command::Resume) => {
                    say_error("pause, resume: only while sending with --blast --rate")
                }
                Ok(Command::Flush) => {
                    if let Some(w) = g.record.as_mut() {
                        w.flush()?;
                    }
                    say("flushed", g.watch_link(), g.counters());
                }
                Ok(Command::Quit) => STOP.store(true, Ordering::Relaxed),
                Err(e) => say_error(&format!("{e:#}")),
            },
            Err(mpsc::TryRecvError::Empty | mpsc::TryRecvError::Disconnected) => {}
        }
        idle.after_poll(got);
    }
    if let Some(w) = g.record.as_mut() {
        w.flush()?;
    }
    let up = g.link_up();
    say("exit", up, g.counters());
    let _ = g.port.stop();
    let _ = g.port.close();
    if let Some(s) = &g.sink {
        let _ = s.stop();
        let _ = s.close();
    }
    Ok(())
}

/// Mbufs of the guest's pool: RX and TX rings of every queue of every port full at once,
/// plus the per-lcore cache and a burst in hand, at least 8191.
fn pool_size(queues: u16, queue_size: u16, sink: bool) -> u32 {
    let ports = if sink { 2 } else { 1 };
    let rings = ports * u32::from(queues) * 2 * u32::from(queue_size);
    ((rings + 4096).next_power_of_two() - 1).max(8191)
}

/// A guest with nothing to do yields the CPU now and then (it shares CPUs in tests): a sleep
/// of `sleep_us` after 256 empty polls in a row; 0 never sleeps (a benchmark sink).
struct IdleBackoff {
    empty: u32,
    sleep_us: u64,
}

impl IdleBackoff {
    fn new(sleep_us: u64) -> IdleBackoff {
        IdleBackoff { empty: 0, sleep_us }
    }

    /// After a poll that received `got` frames.
    fn after_poll(&mut self, got: usize) {
        if got > 0 || self.sleep_us == 0 {
            self.empty = 0;
            return;
        }
        self.empty += 1;
        if self.empty >= 256 {
            self.empty = 0;
            std::thread::sleep(Duration::from_micros(self.sleep_us));
        }
    }
}

fn say_error(msg: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", serde_json::json!({ "event": "error", "error": msg }));
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_and_errors_name_the_argument() {
        assert_eq!(
            parse_command("send /tmp/a.pcap hash 3").unwrap(),
            Command::Send { pcap: "/tmp/a.pcap".into(), queue: Some(TxQueue::Hash), repeat: 3 }
        );
        assert_eq!(
            parse_command("send /tmp/a.pcap").unwrap(),
            Command::Send { pcap: "/tmp/a.pcap".into(), queue: None, repeat: 1 }
        );
        assert_eq!(
            parse_command("wait-rx 10 500").unwrap(),
            Command::WaitRx { frames: 10, timeout: Duration::from_millis(500) }
        );
        assert!(parse_command("send /a x").unwrap_err().to_string().contains("queue \"x\" is neither"));
        assert!(parse_command("wait-rx 10").unwrap_err().to_string().contains("timeout is missing"));
        assert!(parse_command("jump").unwrap_err().to_string().contains("unknown command \"jump\""));
        assert_eq!(parse_command("reset-gap").unwrap(), Command::ResetGap);
        assert_eq!(parse_command("reset-flows").unwrap(), Command::ResetFlows);
        assert_eq!(parse_command(" pause ").unwrap(), Command::Pause);
        assert_eq!(parse_command("resume").unwrap(), Command::Resume);
    }

    fn udp(src: [u8; 4], sport: u16, vlan: bool) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        if vlan {
            f.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
        }
        f.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0]);
        f.extend_from_slice(&src);
        f.extend_from_slice(&[10, 128, 0, 1]);
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&[0, 53, 0, 8, 0, 0]);
        f.resize(f.len().max(60), 0);
        f
    }

    #[test]
    fn flow_keys_and_coverage() {
        let a = udp([10, 0, 0, 1], 10000, false);
        let k = flow_key(&a).unwrap();
        assert_eq!(k, [10, 0, 0, 1, 10, 128, 0, 1, 17, 0x27, 0x10, 0, 53]);
        assert_eq!(flow_key(&udp([10, 0, 0, 1], 10000, true)), Some(k), "behind a VLAN tag");
        let mut frag = a.clone();
        frag[20] = 0x00;
        frag[21] = 0x10;
        assert_eq!(flow_key(&frag).unwrap()[9..], [0, 0, 0, 0], "a non-first fragment has no ports");
        let mut arp = a.clone();
        arp[12] = 0x08;
        arp[13] = 0x06;
        assert!(flow_key(&arp).is_none());
        assert!(flow_key(&a[..30]).is_none(), "truncated");

        // Three flows, one of them twice in the file.
        let frames = vec![a.clone(), udp([10, 0, 0, 2], 10000, false), a.clone(), udp([10, 0, 0, 1], 10001, false)];
        let mut c = FlowCoverage::new(&frames);
        assert_eq!(c.total(), 3);
        c.saw(&a);
        c.saw(&a);
        c.saw(&udp([10, 9, 9, 9], 1, false));
        assert_eq!((c.count, c.all_at.is_some()), (1, false), "one flow of the file, counted once");
        c.saw(&frames[1]);
        c.saw(&frames[3]);
        assert_eq!((c.count, c.all_at.is_some()), (3, true));
        c.reset();
        assert_eq!((c.count, c.all_at), (0, None));
        c.saw(&frames[3]);
        assert_eq!(c.count, 1);
    }

    #[test]
    fn gaps_across_a_link_down() {
        let t = Instant::now();
        let ms = |n: u64| t + Duration::from_millis(n);
        let mut a = Some(Across::from(Some(ms(10)), ms(12)));
        assert!(Across::done(&a).is_none(), "open until the next event");
        Across::event(&mut a, ms(50));
        Across::event(&mut a, ms(51));
        assert_eq!(Across::done(&a), Some((40_000, ms(50))));
        // Nothing before the down: from the down.
        let mut b = Some(Across::from(None, ms(12)));
        Across::event(&mut b, ms(20));
        assert_eq!(Across::done(&b).map(|(us, _)| us), Some(8_000));
        let mut none = None;
        Across::event(&mut none, ms(1));
        assert!(Across::done(&none).is_none());
    }

    #[test]
    fn gaps_are_the_longest_between_events_since_the_reset() {
        let t = Instant::now();
        let ms = |n: u64| t + Duration::from_millis(n);
        let mut g = GapWatch::default();
        g.reset(t);
        assert_eq!(g.last, None, "no event yet: nothing to measure from");
        g.mark(ms(1));
        g.mark(ms(3));
        g.mark(ms(10));
        g.mark(ms(11));
        assert_eq!((g.max, g.max_end), (Duration::from_millis(7), Some(ms(10))));
        // A reset in a gap counts it from the reset.
        g.reset(ms(20));
        g.mark(ms(25));
        assert_eq!((g.max, g.max_end), (Duration::from_millis(5), Some(ms(25))));
        let now = Instant::now();
        let mono = mono_ns(now);
        assert!(mono > 0 && mono_ns(now - Duration::from_millis(5)) + 4_000_000 < mono);
    }

    #[test]
    fn hashed_queues_keep_a_flow_on_one_queue_and_spread_flows() {
        let frame = |sport: u16| {
            let mut f = vec![0u8; 60];
            f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
            f[14] = 0x45;
            f[26..30].copy_from_slice(&[10, 1, 1, 1]);
            f[30..34].copy_from_slice(&[10, 1, 1, 2]);
            f[34..36].copy_from_slice(&sport.to_be_bytes());
            f
        };
        assert_eq!(queue_of(&frame(1), TxQueue::Hash, 4), queue_of(&frame(1), TxQueue::Hash, 4));
        let used: std::collections::BTreeSet<u16> = (0..64).map(|p| queue_of(&frame(p), TxQueue::Hash, 4)).collect();
        assert_eq!(used.len(), 4);
        assert_eq!(queue_of(&frame(1), TxQueue::Fixed(2), 4), 2);
        assert!(queue_of(&[], TxQueue::Hash, 2) < 2);
    }

    #[test]
    fn blast_plan_splits_by_queue_keeping_order_and_bytes() {
        let frame = |sport: u16, len: usize| {
            let mut f = vec![0u8; len];
            f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
            f[14] = 0x45;
            f[26..30].copy_from_slice(&[10, 1, 1, 1]);
            f[30..34].copy_from_slice(&[10, 1, 1, 2]);
            f[34..36].copy_from_slice(&sport.to_be_bytes());
            f[len - 1] = sport as u8;
            f
        };
        let frames: Vec<Vec<u8>> = (0..40).map(|p| frame(p, 60 + usize::from(p % 3))).collect();
        let plan = BlastPlan::new(&frames, TxQueue::Hash, 2);
        assert_eq!(plan.queues.len(), 2);
        assert!(plan.queues.iter().all(|q| !q.spans.is_empty()), "40 flows land on both queues");
        let mut seen = Vec::new();
        for (qi, q) in plan.queues.iter().enumerate() {
            let got: Vec<&[u8]> =
                q.spans.iter().map(|&(o, l)| &q.arena[o as usize..o as usize + usize::from(l)]).collect();
            let want: Vec<&[u8]> =
                frames.iter().filter(|f| queue_of(f, TxQueue::Hash, 2) == qi as u16).map(|f| f.as_slice()).collect();
            assert_eq!(got, want, "queue {qi}: the frames of that queue, in pcap order");
            seen.extend(got);
        }
        assert_eq!(seen.len(), frames.len());
        let fixed = BlastPlan::new(&frames, TxQueue::Fixed(1), 2);
        assert!(fixed.queues[0].spans.is_empty());
        assert_eq!(fixed.queues[1].spans.len(), 40);
        assert_eq!(fixed.queues[1].arena.len(), frames.iter().map(Vec::len).sum::<usize>());
    }

    #[test]
    fn pool_covers_every_ring() {
        assert_eq!(pool_size(1, 1024, false), 8191);
        // 2 ports x 2 queues x (RX + TX) x 1024 = 8192 descriptors, + 4096.
        assert_eq!(pool_size(2, 1024, true), 16383);
        assert!(pool_size(16, 4096, true) as usize > 2 * 16 * 2 * 4096);
    }

    #[test]
    fn eal_arguments_for_the_sink_and_hugepages() {
        let cli = Cli::parse_from([
            "vm-guest",
            "--socket",
            "/s/vm1.sock",
            "--sink-socket",
            "/s/vm2.sock",
            "--queues",
            "2",
            "--huge",
            "--file-prefix",
            "g",
        ]);
        let a = eal_args(&cli);
        assert!(
            a.contains(&"net_virtio_user0,path=/s/vm1.sock,server=1,queues=2,queue_size=1024".to_string()),
            "{a:?}"
        );
        assert!(
            a.contains(&"net_virtio_user1,path=/s/vm2.sock,server=1,queues=2,queue_size=1024".to_string()),
            "{a:?}"
        );
        assert!(a.contains(&"--single-file-segments".to_string()) && a.contains(&"--in-memory".to_string()));
        assert!(!a.contains(&"--no-huge".to_string()));
        let plain = eal_args(&Cli::parse_from(["vm-guest", "--socket", "/s/vm1.sock", "--client"]));
        assert!(plain.contains(&"--no-huge".to_string()));
        assert!(plain.iter().all(|x| !x.starts_with("net_virtio_user1") && x != "--in-memory"), "{plain:?}");
        assert!(plain.contains(&"net_virtio_user0,path=/s/vm1.sock,server=0,queues=1,queue_size=1024".to_string()));
    }
}
