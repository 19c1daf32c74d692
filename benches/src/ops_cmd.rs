//! `vrouter-bench --ops`: Mpps per forwarding core with the operator's side on (a Prometheus
//! scrape of `vrouter-exporter` every second and flow export over IPFIX), next to the same
//! traffic with both off, in the same session (issue 19: at most 1 % lower at 1k flows).
//!
//! Both runs are the stateful benchmark of [`crate::stateful`] (same topology, pcap source,
//! core layout, memory setup, settle-then-window method). The ops run adds:
//!
//! - `[ipfix] enabled = true` with one UDP collector on 127.0.0.1 that this harness owns (a
//!   thread that receives and counts datagrams and bytes: a sink, nothing is decoded), the
//!   scan and template settings as by default (`[export]` stays off: IPFIX alone starts the
//!   vRouter's exporter thread `vr-export`, pinned to the main core);
//! - the project's `vrouter-exporter` on the run directory (`--listen 127.0.0.1:0`), and a
//!   harness thread that GETs `/metrics` every second from before the vRouter starts until
//!   after the window, counting scrapes that answered 200 with `vrouter_up 1`, and bytes.
//!
//! The exporter process, the scraper and the collector are pinned to the main core (CPU 0,
//! where the vRouter's main, agent and export threads run); the forwarding lcore has CPU 1.
//! Their CPU time over the window is recorded (the exporter process from `/proc/PID/stat`,
//! `vr-export` and the harness threads from schedstat). Runs alternate (plain, ops) per
//! repetition so drifts in machine load hit both.

use crate::memory::{self, Sizing};
use crate::procfs;
use crate::route_storm::pin_current_thread;
use crate::stateful::{measure_throughput_with, StatefulMeasurement, WindowEdge};
use crate::topology::{FlowSettings, Topology};
use crate::vrouter_run::{RunSpec, Started};
use crate::{interrupted, machine, median, now_unix, pcap, shell_line, Machine};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// CPU of the vRouter's main thread (and of everything the ops run adds).
pub const MAIN_CORE: u32 = 0;
/// CPU of the forwarding lcore.
pub const FWD_CORE: u32 = 1;
/// Seconds between two scrapes.
pub const SCRAPE_EVERY: Duration = Duration::from_secs(1);

/// Options of the ops benchmark.
pub struct Opts {
    /// Flow counts to measure (`--flows`).
    pub flows: Vec<u64>,
    /// Measurement window, seconds.
    pub dur: f64,
    /// Warm-up after the flows are set up, seconds.
    pub warm: f64,
    /// Repetitions of every variant (the table shows medians).
    pub reps: u32,
    /// Output directory (pcaps, configs, logs, CSV, JSON).
    pub out: PathBuf,
    /// Where run directories (and so the flow table files) go: a tmpfs.
    pub run_base: PathBuf,
    /// The shared benchmark directory (`bench/gen_flows_pcap.py`).
    pub shared: PathBuf,
    /// The `vrouter` binary.
    pub vrouter: PathBuf,
    /// The `vrouter-exporter` binary.
    pub exporter: PathBuf,
    /// Name of the forwarding thread (`rte-worker-1` in DPDK 22.11).
    pub fwd_thread: String,
    /// Revision recorded with the results.
    pub rev: String,
    /// Seconds allowed for EAL start, pcap preload and the first packet.
    pub start_timeout: u64,
    /// Seconds allowed from the first packet until every flow is set up.
    pub settle_timeout: u64,
}

/// What the ops side did in one run (all `window_*` figures over the measurement window).
#[derive(Debug, Clone, Default, Serialize)]
pub struct OpsSide {
    /// Where `vrouter-exporter` served `/metrics`.
    pub metrics_addr: String,
    /// Where the IPFIX collector listened.
    pub ipfix_collector: String,
    /// Scrapes that answered 200 with `vrouter_up 1`, whole run.
    pub scrapes_ok: u64,
    /// Scrapes that failed (connection, status, or `vrouter_up` not 1) after the first
    /// good one, whole run.
    pub scrapes_failed: u64,
    /// Scrapes before the first good one (while the vRouter started: no regions yet).
    pub scrapes_before_up: u64,
    /// The last failure, if any.
    pub last_scrape_error: Option<String>,
    /// Good scrapes in the window.
    pub window_scrapes: u64,
    /// Response bytes of the good scrapes in the window.
    pub window_scrape_bytes: u64,
    /// Longest scrape (request to last byte) in the window, seconds.
    pub window_max_scrape_s: f64,
    /// IPFIX datagrams received, whole run.
    pub ipfix_datagrams: u64,
    /// IPFIX bytes received, whole run.
    pub ipfix_bytes: u64,
    /// IPFIX datagrams received in the window.
    pub window_ipfix_datagrams: u64,
    /// IPFIX bytes received in the window.
    pub window_ipfix_bytes: u64,
    /// On-CPU seconds of the `vrouter-exporter` process in the window.
    pub window_exporter_cpu_s: f64,
    /// On-CPU seconds of the vRouter's `vr-export` thread (IPFIX scan and send) in the window.
    pub window_vr_export_cpu_s: f64,
    /// On-CPU seconds of the harness's scraper and collector threads in the window.
    pub window_harness_cpu_s: f64,
}

/// One run.
#[derive(Debug, Clone, Serialize)]
pub struct OpsRun {
    /// Distinct flows in the pcap.
    pub flows: u64,
    /// Repetition number (from 1).
    pub rep: u32,
    /// `plain` (scraping and IPFIX off) or `ops` (both on).
    pub variant: &'static str,
    /// Packets received per on-CPU second of the forwarding thread, millions.
    pub cpu_mpps: f64,
    /// Packets received per wall-clock second of the window, millions.
    pub wall_mpps: f64,
    /// Forwarding-thread CPU nanoseconds per received packet.
    pub ns_per_pkt: f64,
    /// Share of the window the forwarding thread was on its CPU.
    pub fwd_cpu_share: f64,
    /// VM vif RX packets in the window.
    pub rx_packets: u64,
    /// Drops in the window, all reasons.
    pub window_drops: u64,
    /// Seconds from the first packet until every flow was set up (`None`: not in time).
    pub settle_s: Option<f64>,
    /// The ops side (`None` in the plain run).
    pub ops: Option<OpsSide>,
    /// The whole stateful measurement of the run.
    pub measurement: StatefulMeasurement,
}

/// Medians per N.
#[derive(Debug, Clone, Serialize)]
pub struct OpsSummary {
    /// Distinct flows in the pcap.
    pub flows: u64,
    /// Median `cpu_mpps`, scraping and IPFIX off.
    pub plain_cpu_mpps: f64,
    /// Median `cpu_mpps`, scraping every second and IPFIX on.
    pub ops_cpu_mpps: f64,
    /// ops / plain of the medians (target: >= 0.99).
    pub ratio: f64,
    /// Median `wall_mpps`, plain.
    pub plain_wall_mpps: f64,
    /// Median `wall_mpps`, ops.
    pub ops_wall_mpps: f64,
    /// Median `ns_per_pkt`, plain.
    pub plain_ns_per_pkt: f64,
    /// Median `ns_per_pkt`, ops.
    pub ops_ns_per_pkt: f64,
    /// Good scrapes over all ops runs (whole runs).
    pub scrapes_ok: u64,
    /// Failed scrapes over all ops runs.
    pub scrapes_failed: u64,
    /// IPFIX datagrams received over all ops runs (whole runs).
    pub ipfix_datagrams: u64,
    /// Median share of a CPU the exporter process used in the ops windows.
    pub exporter_cpu_share: f64,
    /// Median share of a CPU the `vr-export` thread used in the ops windows.
    pub vr_export_cpu_share: f64,
}

#[derive(Serialize)]
struct Doc<'a> {
    tool: &'static str,
    mode: &'static str,
    started_unix: u64,
    finished_unix: u64,
    argv: Vec<String>,
    git_rev: &'a str,
    vrouter_binary: String,
    exporter_binary: String,
    dur_s: f64,
    warm_s: f64,
    reps: u32,
    metric: &'static str,
    cpus: &'static str,
    machine: Machine,
    commands: &'a [String],
    table: &'a [OpsSummary],
    runs: &'a [OpsRun],
}

fn spec(o: &Opts, empty_pcap: &Path, tag: &str, pcap_path: &Path, packets: u64, fs: &FlowSettings) -> RunSpec {
    let Sizing { mbufs, memory_mb, memory } = memory::sizing(packets, fs.max_held_packets(), fs.table_bytes());
    let prefix = format!("vrbops{}_{tag}", std::process::id());
    let topo = Topology {
        pcap: pcap_path.to_path_buf(),
        empty_pcap: empty_pcap.to_path_buf(),
        run_dir: o.run_base.join(&prefix),
        file_prefix: prefix,
        memory_mb,
        memory,
        mbufs,
        main_core: MAIN_CORE,
        fwd_core: FWD_CORE,
        flow: Some(fs.clone()),
        probe: None,
    };
    RunSpec {
        vrouter: o.vrouter.clone(),
        topology: topo,
        config_path: o.out.join(format!("vrouter_{tag}.toml")),
        log_path: o.out.join(format!("vrouter_{tag}.log")),
        warm: Duration::from_secs_f64(o.warm),
        dur: Duration::from_secs_f64(o.dur),
        start_timeout: Duration::from_secs(o.start_timeout),
        stop_timeout: Duration::from_secs(60),
        fwd_thread: o.fwd_thread.clone(),
    }
}

fn gettid() -> u32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() as u32 }
}

// ---------------------------------------------------------------------------------------
// The IPFIX sink.

/// A UDP socket on 127.0.0.1 and a thread that counts what arrives on it.
struct Collector {
    addr: SocketAddr,
    datagrams: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
    tid: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Collector {
    fn start(cpu: u32) -> Result<Collector> {
        let sock = UdpSocket::bind("127.0.0.1:0").context("binding the IPFIX collector")?;
        sock.set_read_timeout(Some(Duration::from_millis(100)))?;
        let addr = sock.local_addr()?;
        let (datagrams, bytes, tid, stop) = (Arc::default(), Arc::default(), Arc::default(), Arc::default());
        let (d, b, t, s): (Arc<AtomicU64>, Arc<AtomicU64>, Arc<AtomicU64>, Arc<AtomicBool>) =
            (Arc::clone(&datagrams), Arc::clone(&bytes), Arc::clone(&tid), Arc::clone(&stop));
        let thread = std::thread::Builder::new().name("bench-ipfix".into()).spawn(move || {
            pin_current_thread(cpu);
            t.store(u64::from(gettid()), Ordering::Relaxed);
            let mut buf = vec![0u8; 65_536];
            while !s.load(Ordering::Relaxed) {
                if let Ok(n) = sock.recv(&mut buf) {
                    d.fetch_add(1, Ordering::Relaxed);
                    b.fetch_add(n as u64, Ordering::Relaxed);
                }
            }
        })?;
        Ok(Collector { addr, datagrams, bytes, tid, stop, thread: Some(thread) })
    }

    fn counts(&self) -> (u64, u64) {
        (self.datagrams.load(Ordering::Relaxed), self.bytes.load(Ordering::Relaxed))
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------
// The exporter and its scraper.

/// `vrouter-exporter` on a run directory, pinned to one CPU, stopped (SIGTERM, then SIGKILL)
/// when dropped.
struct Exporter {
    child: Child,
    addr: SocketAddr,
    /// Its stdout, kept open (a closed pipe would fail its later prints).
    _stdout: BufReader<ChildStdout>,
}

impl Exporter {
    fn start(bin: &Path, run_dir: &Path, cpu: u32, log: &Path) -> Result<Exporter> {
        let log = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut cmd = Command::new(bin);
        cmd.arg("--run-dir").arg(run_dir).arg("--listen").arg("127.0.0.1:0");
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(log);
        // SAFETY: a zeroed cpu_set_t is an empty set, CPU_SET writes inside it; the closure
        // runs in the child between fork and exec and only calls sched_setaffinity on itself
        // (async-signal-safe) with that set, built before the fork.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu as usize, &mut set);
            cmd.pre_exec(move || {
                if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().with_context(|| format!("starting {}", bin.display()))?;
        // Its first line names the address it listens on.
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let addr =
            line.split("http://").nth(1).and_then(|r| r.split('/').next()).and_then(|a| a.parse::<SocketAddr>().ok());
        match addr {
            Some(addr) => Ok(Exporter { child, addr, _stdout: stdout }),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{} did not say where it listens (first line {line:?})", bin.display())
            }
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        // SAFETY: signalling our own child, not reaped yet.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One `GET /metrics` (HTTP/1.1, `Connection: close`): the response's bytes, or why it failed
/// (a status other than 200, or a body without `vrouter_up 1`).
pub fn scrape_once(addr: SocketAddr, timeout: Duration) -> Result<u64> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    // One write: the request in one segment.
    let req = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nAccept: text/plain\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes())?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    check_response(&resp)?;
    Ok(resp.len() as u64)
}

/// Checks a whole HTTP response to `GET /metrics`: status 200 and `vrouter_up 1` in the body.
pub fn check_response(resp: &[u8]) -> Result<()> {
    let text = String::from_utf8_lossy(resp);
    let status = text.lines().next().unwrap_or("");
    if status.split_whitespace().nth(1) != Some("200") {
        bail!("status line {status:?}");
    }
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    if !body.lines().any(|l| l.trim_end() == "vrouter_up 1") {
        bail!("no `vrouter_up 1` in the {} bytes of the body", body.len());
    }
    Ok(())
}

#[derive(Default)]
struct ScrapeCounts {
    ok: AtomicU64,
    /// Failed scrapes before the first good one (the vRouter starting).
    not_up: AtomicU64,
    failed: AtomicU64,
    bytes: AtomicU64,
    /// Longest scrape since the last reset, ns.
    max_ns: AtomicU64,
    tid: AtomicU64,
    last_error: std::sync::Mutex<Option<String>>,
}

/// A thread that scrapes every [`SCRAPE_EVERY`] (on a fixed schedule) until stopped.
struct Scraper {
    counts: Arc<ScrapeCounts>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Scraper {
    fn start(addr: SocketAddr, cpu: u32) -> Result<Scraper> {
        let counts: Arc<ScrapeCounts> = Arc::default();
        let stop: Arc<AtomicBool> = Arc::default();
        let (c, s) = (Arc::clone(&counts), Arc::clone(&stop));
        let thread = std::thread::Builder::new().name("bench-scrape".into()).spawn(move || {
            pin_current_thread(cpu);
            c.tid.store(u64::from(gettid()), Ordering::Relaxed);
            let mut next = Instant::now();
            while !s.load(Ordering::Relaxed) {
                let t = Instant::now();
                if t >= next {
                    match scrape_once(addr, Duration::from_secs(5)) {
                        Ok(n) => {
                            c.ok.fetch_add(1, Ordering::Relaxed);
                            c.bytes.fetch_add(n, Ordering::Relaxed);
                            c.max_ns.fetch_max(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
                        }
                        // Before the vRouter's regions are there: not up yet.
                        Err(_) if c.ok.load(Ordering::Relaxed) == 0 => {
                            c.not_up.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            c.failed.fetch_add(1, Ordering::Relaxed);
                            *c.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!("{e:#}"));
                        }
                    }
                    next += SCRAPE_EVERY;
                    // A scrape longer than the period: skip the missed slots, no burst.
                    while next < Instant::now() {
                        next += SCRAPE_EVERY;
                    }
                }
                std::thread::sleep(next.saturating_duration_since(Instant::now()).min(Duration::from_millis(100)));
            }
        })?;
        Ok(Scraper { counts, stop, thread: Some(thread) })
    }
}

impl Drop for Scraper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Counters of the ops side at one window edge.
#[derive(Default, Clone, Copy)]
struct Edge {
    scrapes: u64,
    scrape_bytes: u64,
    datagrams: u64,
    ipfix_bytes: u64,
    exporter_ns: u64,
    vr_export_ns: u64,
    harness_ns: u64,
}

/// Everything the ops run adds, started before the vRouter.
struct OpsSideRun {
    collector: Collector,
    exporter: Exporter,
    scraper: Scraper,
}

impl OpsSideRun {
    fn edge(&self, st: &Started) -> Edge {
        let me = std::process::id();
        let tcpu = |pid: u32, tid: u64| if tid == 0 { 0 } else { procfs::thread_cpu_ns(pid, tid as u32).unwrap_or(0) };
        let (datagrams, ipfix_bytes) = self.collector.counts();
        let c = &self.scraper.counts;
        Edge {
            scrapes: c.ok.load(Ordering::Relaxed),
            scrape_bytes: c.bytes.load(Ordering::Relaxed),
            datagrams,
            ipfix_bytes,
            exporter_ns: procfs::process_cpu_ns(self.exporter.child.id()).unwrap_or(0),
            vr_export_ns: st.thread("vr-export").map(|t| tcpu(st.pid, u64::from(t))).unwrap_or(0),
            harness_ns: tcpu(me, c.tid.load(Ordering::Relaxed)) + tcpu(me, self.collector.tid.load(Ordering::Relaxed)),
        }
    }

    fn side(&self, a: Edge, b: Edge, max_scrape_s: f64) -> OpsSide {
        let c = &self.scraper.counts;
        let (datagrams, bytes) = self.collector.counts();
        let s = |x: u64, y: u64| y.saturating_sub(x) as f64 / 1e9;
        OpsSide {
            metrics_addr: format!("http://{}/metrics", self.exporter.addr),
            ipfix_collector: self.collector.addr.to_string(),
            scrapes_ok: c.ok.load(Ordering::Relaxed),
            scrapes_failed: c.failed.load(Ordering::Relaxed),
            scrapes_before_up: c.not_up.load(Ordering::Relaxed),
            last_scrape_error: c.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            window_scrapes: b.scrapes - a.scrapes,
            window_scrape_bytes: b.scrape_bytes - a.scrape_bytes,
            window_max_scrape_s: max_scrape_s,
            ipfix_datagrams: datagrams,
            ipfix_bytes: bytes,
            window_ipfix_datagrams: b.datagrams - a.datagrams,
            window_ipfix_bytes: b.ipfix_bytes - a.ipfix_bytes,
            window_exporter_cpu_s: s(a.exporter_ns, b.exporter_ns),
            window_vr_export_cpu_s: s(a.vr_export_ns, b.vr_export_ns),
            window_harness_cpu_s: s(a.harness_ns, b.harness_ns),
        }
    }
}

const CPUS: &str = "vRouter main, agent and vr-export threads on CPU 0 (main_core), the forwarding lcore alone on \
                    CPU 1; vrouter-exporter (taskset before exec), the harness's scraper and IPFIX collector threads \
                    on CPU 0";

/// Runs the comparison for every N and writes `ops_results.json`, `ops_runs.csv` and
/// `ops_table.md` in `o.out`.
pub fn run(o: Opts) -> Result<()> {
    let started = now_unix();
    let load_at_start = procfs::loadavg().unwrap_or_default();
    std::fs::create_dir_all(&o.out).with_context(|| format!("creating {}", o.out.display()))?;
    std::fs::create_dir_all(&o.run_base).with_context(|| format!("creating {}", o.run_base.display()))?;
    if !o.exporter.is_file() {
        bail!(
            "{} not found; build it first: cargo build --release -p tools --bin vrouter-exporter (or pass --exporter PATH)",
            o.exporter.display()
        );
    }
    let empty_pcap = o.out.join("empty.pcap");
    std::fs::write(&empty_pcap, pcap::empty_pcap())?;
    println!(
        "# vrouter-bench --ops: flows {:?}, dur {}s, warm {}s, reps {}, out {}, vrouter {}, exporter {}, git {}, load {:?}",
        o.flows,
        o.dur,
        o.warm,
        o.reps,
        o.out.display(),
        o.vrouter.display(),
        o.exporter.display(),
        o.rev,
        load_at_start
    );
    println!("# CPUs: {CPUS}");
    let mut commands = Vec::new();
    let mut runs: Vec<OpsRun> = Vec::new();
    let mut table: Vec<OpsSummary> = Vec::new();
    for &n in &o.flows {
        let p = pcap::ensure_flows_pcap(&o.out, &o.shared, n, &mut commands)?;
        let packets = pcap::count_packets(&p)?;
        println!("\n## N = {n} flows ({}, {packets} packets)", p.display());
        for rep in 1..=o.reps {
            for ops in [false, true] {
                let variant = if ops { "ops" } else { "plain" };
                let tag = format!("{variant}_{n}_{rep}");
                let mut fs = FlowSettings::for_flows(n);
                // The IPFIX sink first: the config names its port.
                let side_collector = if ops { Some(Collector::start(MAIN_CORE)?) } else { None };
                fs.ipfix_collector = side_collector.as_ref().map(|c| c.addr);
                let s = spec(&o, &empty_pcap, &tag, &p, packets, &fs);
                let mut line = shell_line(&[
                    o.vrouter.display().to_string(),
                    "--config".into(),
                    s.config_path.display().to_string(),
                ]);
                if ops {
                    line.push_str(&format!(
                        " & {} & # and GET /metrics every second",
                        shell_line(&[
                            o.exporter.display().to_string(),
                            "--run-dir".into(),
                            s.topology.run_dir.display().to_string(),
                            "--listen".into(),
                            "127.0.0.1:0".into(),
                        ])
                    ));
                }
                let line = format!("{line}   # {variant} N={n} rep {rep}");
                println!("$ {line}");
                commands.push(line);
                let (m, side) = one_run(&o, &s, n, side_collector, &tag)?;
                let b = &m.base;
                let extra = match &side {
                    Some(x) => format!(
                        " | scrapes {} ok / {} failed / {} before up ({} in window, {} KiB each, max {:.1} ms), ipfix datagrams {} ({} in window, {} B), \
                         CPU in window: exporter {:.3}s vr-export {:.3}s harness {:.3}s",
                        x.scrapes_ok,
                        x.scrapes_failed,
                        x.scrapes_before_up,
                        x.window_scrapes,
                        x.window_scrape_bytes / x.window_scrapes.max(1) / 1024,
                        x.window_max_scrape_s * 1e3,
                        x.ipfix_datagrams,
                        x.window_ipfix_datagrams,
                        x.ipfix_bytes,
                        x.window_exporter_cpu_s,
                        x.window_vr_export_cpu_s,
                        x.window_harness_cpu_s,
                    ),
                    None => String::new(),
                };
                println!(
                    "vrouter N={n} rep {rep} {variant:>5}: cpu_mpps {:.3} wall_mpps {:.3} ns/pkt {:.1} fwd CPU share {:.2} \
                     rx {} window drops {} load1 {:.2}->{:.2}{extra}",
                    b.cpu_mpps,
                    b.wall_mpps,
                    b.ns_per_pkt,
                    b.fwd_cpu_share,
                    b.rx_packets,
                    b.drops,
                    b.load_before[0],
                    b.load_after[0],
                );
                if let Some(e) = side.as_ref().and_then(|x| x.last_scrape_error.as_ref()) {
                    eprintln!("vrouter-bench: N={n} rep {rep}: last failed scrape: {e}");
                }
                runs.push(OpsRun {
                    flows: n,
                    rep,
                    variant,
                    cpu_mpps: b.cpu_mpps,
                    wall_mpps: b.wall_mpps,
                    ns_per_pkt: b.ns_per_pkt,
                    fwd_cpu_share: b.fwd_cpu_share,
                    rx_packets: b.rx_packets,
                    window_drops: b.drops,
                    settle_s: m.settle_s,
                    ops: side,
                    measurement: m.clone(),
                });
                if interrupted() {
                    bail!("interrupted");
                }
            }
        }
        table.push(summary(n, &runs, o.dur));
    }
    let md = table_md(&table);
    println!("\n{md}");
    std::fs::write(o.out.join("ops_table.md"), &md)?;
    let csv = o.out.join("ops_runs.csv");
    std::fs::write(&csv, runs_csv(&runs))?;
    let load_at_end = procfs::loadavg().unwrap_or_default();
    let doc = Doc {
        tool: "vrouter-bench",
        mode: "ops",
        started_unix: started,
        finished_unix: now_unix(),
        argv: std::env::args().collect(),
        git_rev: &o.rev,
        vrouter_binary: o.vrouter.display().to_string(),
        exporter_binary: o.exporter.display().to_string(),
        dur_s: o.dur,
        warm_s: o.warm,
        reps: o.reps,
        metric: "cpu_mpps: VM vif RX packets per second of forwarding-thread CPU time (medians)",
        cpus: CPUS,
        machine: machine(load_at_start),
        commands: &commands,
        table: &table,
        runs: &runs,
    };
    let path = o.out.join("ops_results.json");
    std::fs::write(&path, serde_json::to_string_pretty(&doc)?)?;
    println!("# load average: {load_at_start:?} at start, {load_at_end:?} at the end");
    println!("# results: {}, {} and ops_table.md", path.display(), csv.display());
    Ok(())
}

/// One variant of one repetition: the plain run without `collector`, the ops run with it
/// (bound before the config was written: its address is in `[ipfix]`).
fn one_run(
    o: &Opts,
    s: &RunSpec,
    n: u64,
    collector: Option<Collector>,
    tag: &str,
) -> Result<(StatefulMeasurement, Option<OpsSide>)> {
    let settle = Duration::from_secs(o.settle_timeout);
    let Some(collector) = collector else { return Ok((measure_throughput_with(s, n, settle, &mut |_, _| {})?, None)) };
    // The exporter and the scraper start before the vRouter (it answers `vrouter_up 0`
    // until the run directory has its regions: `scrapes_before_up`); scraping stops with
    // the window.
    let exporter =
        Exporter::start(&o.exporter, &s.topology.run_dir, MAIN_CORE, &o.out.join(format!("exporter_{tag}.log")))?;
    let scraper = Scraper::start(exporter.addr, MAIN_CORE)?;
    let side = OpsSideRun { collector, exporter, scraper };
    let (mut a, mut b, mut max_scrape) = (Edge::default(), Edge::default(), 0.0);
    let m = measure_throughput_with(s, n, settle, &mut |edge, st| match edge {
        WindowEdge::Start => {
            a = side.edge(st);
            side.scraper.counts.max_ns.store(0, Ordering::Relaxed);
        }
        WindowEdge::End => {
            b = side.edge(st);
            max_scrape = side.scraper.counts.max_ns.load(Ordering::Relaxed) as f64 / 1e9;
            // No scrapes of a stopping vRouter.
            side.scraper.stop.store(true, Ordering::Relaxed);
        }
    })?;
    let out = side.side(a, b, max_scrape);
    drop(side);
    Ok((m, Some(out)))
}

/// The medians of N's runs.
fn summary(n: u64, runs: &[OpsRun], dur: f64) -> OpsSummary {
    let of = |variant: &'static str| runs.iter().filter(move |r| r.flows == n && r.variant == variant);
    let med = |variant: &'static str, f: &dyn Fn(&OpsRun) -> f64| median(&of(variant).map(f).collect::<Vec<_>>());
    let sides: Vec<&OpsSide> = of("ops").filter_map(|r| r.ops.as_ref()).collect();
    let share = |f: &dyn Fn(&OpsSide) -> f64| median(&sides.iter().map(|s| f(s) / dur).collect::<Vec<_>>());
    let (plain, ops) = (med("plain", &|r| r.cpu_mpps), med("ops", &|r| r.cpu_mpps));
    OpsSummary {
        flows: n,
        plain_cpu_mpps: plain,
        ops_cpu_mpps: ops,
        ratio: if plain > 0.0 { ops / plain } else { 0.0 },
        plain_wall_mpps: med("plain", &|r| r.wall_mpps),
        ops_wall_mpps: med("ops", &|r| r.wall_mpps),
        plain_ns_per_pkt: med("plain", &|r| r.ns_per_pkt),
        ops_ns_per_pkt: med("ops", &|r| r.ns_per_pkt),
        scrapes_ok: sides.iter().map(|s| s.scrapes_ok).sum(),
        scrapes_failed: sides.iter().map(|s| s.scrapes_failed).sum(),
        ipfix_datagrams: sides.iter().map(|s| s.ipfix_datagrams).sum(),
        exporter_cpu_share: share(&|s| s.window_exporter_cpu_s),
        vr_export_cpu_share: share(&|s| s.window_vr_export_cpu_s),
    }
}

/// The medians as a markdown table.
fn table_md(table: &[OpsSummary]) -> String {
    let mut s = String::from(
        "| flows | Mpps/core, plain | Mpps/core, scrape 1/s + IPFIX | ratio (target >= 0.99) | wall Mpps plain / ops \
         | ns/pkt plain / ops | scrapes ok (failed) | IPFIX datagrams | exporter CPU | vr-export CPU |\n\
         | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for t in table {
        s.push_str(&format!(
            "| {} | {:.3} | {:.3} | {:.3} | {:.3} / {:.3} | {:.1} / {:.1} | {} ({}) | {} | {:.2} % | {:.2} % |\n",
            t.flows,
            t.plain_cpu_mpps,
            t.ops_cpu_mpps,
            t.ratio,
            t.plain_wall_mpps,
            t.ops_wall_mpps,
            t.plain_ns_per_pkt,
            t.ops_ns_per_pkt,
            t.scrapes_ok,
            t.scrapes_failed,
            t.ipfix_datagrams,
            t.exporter_cpu_share * 100.0,
            t.vr_export_cpu_share * 100.0,
        ));
    }
    s
}

/// One CSV line per run.
fn runs_csv(runs: &[OpsRun]) -> String {
    let mut s = String::from(
        "flows,rep,variant,cpu_mpps,wall_mpps,ns_per_pkt,fwd_cpu_share,rx_packets,window_drops,\
         scrapes_ok,scrapes_failed,window_scrapes,window_scrape_bytes,ipfix_datagrams,window_ipfix_datagrams,\
         window_exporter_cpu_s,window_vr_export_cpu_s,window_harness_cpu_s\n",
    );
    for r in runs {
        let d = r.ops.clone().unwrap_or_default();
        s.push_str(&format!(
            "{},{},{},{:.4},{:.4},{:.2},{:.4},{},{},{},{},{},{},{},{},{:.4},{:.4},{:.4}\n",
            r.flows,
            r.rep,
            r.variant,
            r.cpu_mpps,
            r.wall_mpps,
            r.ns_per_pkt,
            r.fwd_cpu_share,
            r.rx_packets,
            r.window_drops,
            d.scrapes_ok,
            d.scrapes_failed,
            d.window_scrapes,
            d.window_scrape_bytes,
            d.ipfix_datagrams,
            d.window_ipfix_datagrams,
            d.window_exporter_cpu_s,
            d.window_vr_export_cpu_s,
            d.window_harness_cpu_s,
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_checked() {
        let ok = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n# TYPE vrouter_up gauge\nvrouter_up 1\n";
        assert!(check_response(ok).is_ok());
        let down = b"HTTP/1.1 200 OK\r\n\r\nvrouter_up 0\n";
        assert!(check_response(down).unwrap_err().to_string().contains("vrouter_up 1"));
        let err = b"HTTP/1.1 500 Internal Server Error\r\n\r\nexposition error\n";
        assert!(check_response(err).unwrap_err().to_string().contains("500"));
        assert!(check_response(b"").is_err());
    }

    #[test]
    fn table_has_a_row_per_n() {
        let t = OpsSummary {
            flows: 1000,
            plain_cpu_mpps: 7.5,
            ops_cpu_mpps: 7.425,
            ratio: 0.99,
            plain_wall_mpps: 7.0,
            ops_wall_mpps: 6.9,
            plain_ns_per_pkt: 133.3,
            ops_ns_per_pkt: 134.7,
            scrapes_ok: 30,
            scrapes_failed: 1,
            ipfix_datagrams: 40_000,
            exporter_cpu_share: 0.001,
            vr_export_cpu_share: 0.025,
        };
        let md = table_md(&[t]);
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(lines.len(), 3, "{md}");
        assert_eq!(lines[0].matches('|').count(), lines[1].matches('|').count());
        assert_eq!(
            lines[2],
            "| 1000 | 7.500 | 7.425 | 0.990 | 7.000 / 6.900 | 133.3 / 134.7 | 30 (1) | 40000 | 0.10 % | 2.50 % |"
        );
    }

    /// The collector counts what is sent to it; a scrape of a server that answers once.
    #[test]
    fn collector_counts_and_scrape_reads() {
        let c = Collector::start(0).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.send_to(&[0u8; 100], c.addr).unwrap();
        tx.send_to(&[0u8; 28], c.addr).unwrap();
        let t = Instant::now();
        while c.counts() != (2, 128) && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(c.counts(), (2, 128));
        drop(c);

        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            // The whole request before the answer: unread bytes at the close would reset
            // the connection under the client's read.
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "the request ended early: {:?}", String::from_utf8_lossy(&req));
                req.extend_from_slice(&buf[..n]);
            }
            assert!(String::from_utf8_lossy(&req).starts_with("GET /metrics HTTP/1.1\r\n"));
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 13\r\n\r\nvrouter_up 1\n").unwrap();
            s.shutdown(std::net::Shutdown::Write).unwrap();
        });
        assert_eq!(scrape_once(addr, Duration::from_secs(5)).unwrap(), 52);
        server.join().unwrap();
    }
}
