//! `vrouter-bench --route-storm`: live route programming while the vRouter forwards at full
//! rate on one lcore.
//!
//! The forwarding setup is the stateful benchmark's at `--flows` (default 1000): the VM vif
//! replays `udp_N.pcap` forever (`infinite_rx`) into an MPLSoUDP tunnel, flows on, one
//! forwarding lcore (CPU 1); the vRouter's main, agent and control threads are on CPU 0
//! (`eal.main_core`). The harness's storm client and latency thread are pinned to CPU 0 as
//! well, so nothing of the storm runs on the forwarding core.
//!
//! 1. **Storm** (one vRouter process): a client thread holds one control connection
//!    (`<run_dir>/control.sock`) and sends, in lock step (the next request after the reply
//!    of the previous one), `route_set` and `route_delete` requests alternately, each of
//!    `batch` /24 routes of VRF 1 in 10.64.0.0/10 (no packet of the traffic is sourced from
//!    or sent to that range) to the tunnel nexthop. Before the windows it installs
//!    `table` routes (uncounted); then each add batch installs the next `batch` prefixes of a
//!    16384-prefix pool and each delete batch removes the `batch` oldest, so VRF 1 holds
//!    `table` to `table + batch` storm routes throughout. **Routes/s** = routes of the
//!    requests acknowledged with `"ok": true` in the window / the window's wall seconds.
//! 2. **Forwarding next to it**: the windows alternate storm off / storm on at `batch` /
//!    storm off / storm on at batch 1, `reps` times; each window starts 0.3 s after the storm
//!    mode changed and lasts `dur`; `cpu_mpps` (VM vif RX packets per on-CPU second of the
//!    forwarding thread) and `wall_mpps` per window; the medians of each kind are compared.
//! 3. **Latency** (a second vRouter process, same traffic plus a probe stream): a second VM
//!    vif replays a 16-flow pcap to 172.16.0.0/24, which has no route (dropped). A thread on
//!    CPU 0 takes the probe output vif's TX counter (stats region), writes
//!    `route_set 172.16.0.0/24 -> encap nexthop to the probe output vif`, and polls that
//!    counter (every ~2 us, timer slack 1 us) and the socket: the sample is the time from
//!    just before the request's `write` to the first poll that sees the counter move; the
//!    reply's arrival is recorded too. Then `route_delete` of it, its reply, and a wait
//!    until the counter has not moved for 5 ms; repeat.

use crate::memory::{self, Sizing};
use crate::stateful::{TableCounters, AGENT_THREAD};
use crate::topology::{FlowSettings, Probe, Topology, PROBE_IN_MAC, PROBE_NEXTHOP, PROBE_OUT_VIF, PROBE_PREFIX};
use crate::vrouter_run::{sample, RunSpec, Sample, Started};
use crate::{interrupted, machine, median, now_unix, pcap, procfs, shell_line, sleep_checked, Machine};
use anyhow::{bail, Context, Result};
use flow_table::FlowTableReader;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Prefixes the storm cycles through: 10.64.0.0/24 .. 10.127.255.0/24.
const POOL: usize = 16384;
/// The VRF of the traffic (and of the storm's routes).
const VRF: u32 = 1;
/// The tunnel nexthop of the benchmark topology (the storm routes point at it).
const STORM_NEXTHOP: u32 = 1;
/// Storm mode of a control window: the client thread spins on its CPU without sending
/// anything (the storm's CPU pressure on CPU 0 without any programming).
pub const SPIN: usize = usize::MAX;
/// The CPU of the forwarding lcore in the benchmark topology.
const FWD_CORE: u32 = 1;

/// Options of the route-storm benchmark.
pub struct Opts {
    /// Flows of the main traffic (`udp_N.pcap`).
    pub flows: u64,
    /// Routes per request of the main storm.
    pub batch: usize,
    /// Also run storm windows with one route per request.
    pub single: bool,
    /// Storm routes installed before the windows (the VRF holds this many to this + batch).
    pub table: usize,
    /// Window length, seconds.
    pub dur: f64,
    /// Warm-up after the flows are set up, seconds.
    pub warm: f64,
    /// Repetitions of the window cycle (off, on at `batch`, off, on at 1).
    pub reps: u32,
    /// Latency samples (route set -> first packet forwarded by it).
    pub latency_samples: usize,
    /// CPU of the vRouter's main core, where the storm client and latency thread run.
    pub client_cpu: u32,
    /// Output directory.
    pub out: PathBuf,
    /// Run directories (tmpfs).
    pub run_base: PathBuf,
    /// The shared benchmark directory (`bench/gen_flows_pcap.py`).
    pub shared: PathBuf,
    /// The `vrouter` binary.
    pub vrouter: PathBuf,
    /// Name of the forwarding thread.
    pub fwd_thread: String,
    /// Revision recorded with the results.
    pub rev: String,
    /// Seconds allowed for EAL start, pcap preload and the first packet.
    pub start_timeout: u64,
    /// Seconds allowed until every flow is set up.
    pub settle_timeout: u64,
    /// Skip the storm part.
    pub no_storm: bool,
    /// Skip the latency part.
    pub no_latency: bool,
}

/// Pins the calling thread to `cpu` (best effort; says so when it fails).
pub fn pin_current_thread(cpu: u32) {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET and sched_setaffinity(0, ..) act
    // on the calling thread with a set of the right size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu as usize, &mut set);
        if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) != 0 {
            eprintln!("vrouter-bench: cannot pin to CPU {cpu}: {}", std::io::Error::last_os_error());
        }
    }
}

fn prefix(i: usize) -> String {
    let i = i % POOL;
    format!("10.{}.{}.0/24", 64 + i / 256, i % 256)
}

/// The body of a `route_set` (`set`) or `route_delete` request for pool indices `idx`.
fn storm_request(set: bool, idx: impl Iterator<Item = usize>) -> String {
    let mut s = String::with_capacity(64 * 16);
    s.push_str(if set { r#"{"cmd":"route_set","routes":["# } else { r#"{"cmd":"route_delete","routes":["# });
    for (k, i) in idx.enumerate() {
        if k > 0 {
            s.push(',');
        }
        if set {
            s.push_str(&format!(r#"{{"vrf":{VRF},"prefix":"{}","nexthop":{STORM_NEXTHOP}}}"#, prefix(i)));
        } else {
            s.push_str(&format!(r#"{{"vrf":{VRF},"prefix":"{}"}}"#, prefix(i)));
        }
    }
    s.push_str("]}\n");
    s
}

/// A control connection: one request line, one reply line.
struct Conn {
    w: UnixStream,
    r: BufReader<UnixStream>,
    line: String,
}

impl Conn {
    fn open(run_dir: &Path) -> Result<Conn> {
        let path = run_dir.join("control.sock");
        let s = UnixStream::connect(&path).with_context(|| format!("connecting {}", path.display()))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Conn { w: s.try_clone()?, r: BufReader::new(s), line: String::new() })
    }

    /// Sends `req` and reads its reply: `Ok(None)` for `"ok": true`, else the error text.
    fn call(&mut self, req: &str) -> Result<Option<String>> {
        self.w.write_all(req.as_bytes())?;
        self.line.clear();
        if self.r.read_line(&mut self.line)? == 0 {
            bail!("the vRouter closed the control connection");
        }
        Ok(reply_error(&self.line))
    }
}

/// `None` when the reply line says `"ok": true`, else its error.
fn reply_error(line: &str) -> Option<String> {
    match serde_json::from_str::<serde_json::Value>(line.trim()) {
        Ok(v) if v.get("ok").and_then(|o| o.as_bool()) == Some(true) => None,
        Ok(v) => Some(v.get("error").map_or_else(|| line.trim().to_string(), |e| e.to_string())),
        Err(e) => Some(format!("bad reply {line:?}: {e}")),
    }
}

/// What the storm thread shares with the harness.
#[derive(Default)]
struct StormShared {
    /// Routes per request now; 0: idle.
    batch: AtomicUsize,
    stop: AtomicBool,
    ready: AtomicBool,
    /// Routes of acknowledged (`ok`) requests.
    acked: AtomicU64,
    requests: AtomicU64,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
    /// Request -> reply times (ns) since the harness last took them.
    lat: Mutex<Vec<u64>>,
    /// Thread id of the storm client.
    tid: std::sync::atomic::AtomicU32,
}

fn storm_thread(run_dir: PathBuf, cpu: u32, table: usize, sh: Arc<StormShared>) -> Result<()> {
    pin_current_thread(cpu);
    // SAFETY: gettid has no preconditions.
    sh.tid.store(unsafe { libc::gettid() } as u32, Ordering::SeqCst);
    let mut c = Conn::open(&run_dir)?;
    let mut installed: VecDeque<usize> = VecDeque::new();
    let mut next = 0usize;
    // Prefill (uncounted).
    while installed.len() < table {
        let n = (table - installed.len()).min(512);
        let idx: Vec<usize> = (next..next + n).collect();
        if let Some(e) = c.call(&storm_request(true, idx.iter().copied()))? {
            bail!("prefill route_set refused: {e}");
        }
        installed.extend(idx);
        next += n;
    }
    sh.ready.store(true, Ordering::SeqCst);
    let mut add = true;
    // The vRouter closes a control connection that stays silent for 5 s: the client closes
    // it while idle and opens a new one when the storm resumes (before the window starts).
    let mut conn = Some(c);
    while !sh.stop.load(Ordering::Relaxed) {
        let b = sh.batch.load(Ordering::Relaxed);
        if b == 0 {
            conn = None;
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        if b == SPIN {
            conn = None;
            while sh.batch.load(Ordering::Relaxed) == SPIN && !sh.stop.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
            continue;
        }
        let c = match &mut conn {
            Some(c) => c,
            None => conn.insert(Conn::open(&run_dir)?),
        };
        // Keep `table` .. `table + b` routes: add when at or below `table`, else delete.
        let set = add || installed.len() <= table;
        let idx: Vec<usize> = if set {
            (next..next + b).map(|i| i % POOL).collect()
        } else {
            installed.iter().take(b.min(installed.len() - table).max(1)).copied().collect()
        };
        let req = storm_request(set, idx.iter().copied());
        let t = Instant::now();
        let res = c.call(&req)?;
        let ns = t.elapsed().as_nanos() as u64;
        sh.requests.fetch_add(1, Ordering::Relaxed);
        match res {
            None => {
                sh.acked.fetch_add(idx.len() as u64, Ordering::Relaxed);
                sh.lat.lock().unwrap().push(ns);
                if set {
                    next = (next + idx.len()) % POOL;
                    installed.extend(idx);
                } else {
                    installed.drain(..idx.len());
                }
            }
            Some(e) => {
                sh.errors.fetch_add(1, Ordering::Relaxed);
                sh.first_error.lock().unwrap().get_or_insert(e);
            }
        }
        add = !set;
    }
    Ok(())
}

/// Percentiles of a set of durations.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Median, microseconds.
    pub p50_us: f64,
    /// 90th percentile, microseconds.
    pub p90_us: f64,
    /// 99th percentile, microseconds.
    pub p99_us: f64,
    /// Largest, microseconds.
    pub max_us: f64,
    /// Smallest, microseconds.
    pub min_us: f64,
}

fn percentiles(ns: &[u64]) -> Percentiles {
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds");
    for &x in ns {
        h.saturating_record(x.max(1));
    }
    let us = |q: f64| h.value_at_quantile(q) as f64 / 1e3;
    Percentiles {
        count: h.len(),
        p50_us: us(0.5),
        p90_us: us(0.9),
        p99_us: us(0.99),
        max_us: h.max() as f64 / 1e3,
        min_us: if h.is_empty() { 0.0 } else { h.min() as f64 / 1e3 },
    }
}

/// One measurement window of the storm part.
#[derive(Debug, Clone, Serialize)]
pub struct StormWindow {
    /// Repetition (from 1).
    pub rep: u32,
    /// Routes per request during the window (0: storm off).
    pub batch: usize,
    /// Wall seconds between the two samples.
    pub window_s: f64,
    /// VM vif RX packets in the window.
    pub rx_packets: u64,
    /// Fabric vif TX packets in the window.
    pub tx_packets: u64,
    /// Drops in the window.
    pub drops: u64,
    /// RX packets per on-CPU second of the forwarding thread, millions.
    pub cpu_mpps: f64,
    /// RX packets per wall second, millions.
    pub wall_mpps: f64,
    /// Share of the window the forwarding thread was on a CPU.
    pub fwd_cpu_share: f64,
    /// Routes acknowledged in the window (adds + deletes).
    pub routes_acked: u64,
    /// Requests answered in the window.
    pub requests: u64,
    /// Requests refused in the window.
    pub errors: u64,
    /// Routes acknowledged per wall second.
    pub routes_per_s: f64,
    /// Request -> reply time of the requests of the window.
    pub request_latency: Percentiles,
    /// CPU share of the vRouter's control connection thread (`vr-control-conn`).
    pub control_cpu_share: f64,
    /// CPU share of the agent thread (flow re-evaluation of each change).
    pub agent_cpu_share: f64,
    /// CPU share of the harness's storm client thread (builds requests, parses replies).
    pub client_cpu_share: f64,
    /// Routes acknowledged per on-CPU second of the control connection thread (what the
    /// vRouter's programming path costs, whatever else shares its CPU).
    pub routes_per_control_cpu_s: Option<f64>,
    /// Busy share of each CPU over the window.
    pub cpu_busy: Vec<f64>,
    /// 1-minute load average after the window.
    pub load1: f64,
}

/// Medians of the storm part.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StormSummary {
    /// Routes per request of the main storm.
    pub batch: usize,
    /// Median routes/s at `batch`.
    pub routes_per_s: Option<f64>,
    /// Median routes/s at batch 1.
    pub routes_per_s_batch1: Option<f64>,
    /// Median `cpu_mpps`, storm off.
    pub off_cpu_mpps: Option<f64>,
    /// Median `cpu_mpps`, storm at `batch`.
    pub on_cpu_mpps: Option<f64>,
    /// Median `cpu_mpps`, storm at batch 1.
    pub on1_cpu_mpps: Option<f64>,
    /// Median `wall_mpps`, storm off.
    pub off_wall_mpps: Option<f64>,
    /// Median `wall_mpps`, storm at `batch`.
    pub on_wall_mpps: Option<f64>,
    /// Median `wall_mpps`, storm at batch 1.
    pub on1_wall_mpps: Option<f64>,
    /// Median `cpu_mpps` of the control windows: CPU 0 kept busy by a spinning harness
    /// thread, no programming.
    pub spin_cpu_mpps: Option<f64>,
    /// spin / off - 1: what CPU pressure on CPU 0 alone does to the forwarding figure here.
    pub spin_vs_off: Option<f64>,
    /// on / off - 1 of the `cpu_mpps` medians (target: >= -0.02).
    pub on_vs_off: Option<f64>,
    /// on at batch 1 / off - 1.
    pub on1_vs_off: Option<f64>,
    /// Request -> reply p50 / p99 at `batch` (medians over windows), microseconds.
    pub request_p50_us: Option<f64>,
    /// See `request_p50_us`.
    pub request_p99_us: Option<f64>,
    /// Median routes per control-thread CPU second at `batch`.
    pub routes_per_control_cpu_s: Option<f64>,
    /// The same at batch 1.
    pub routes_per_control_cpu_s_batch1: Option<f64>,
    /// Median CPU share of the forwarding thread, storm off / at `batch` / at 1 / spin.
    pub fwd_cpu_share: [Option<f64>; 4],
    /// Refused requests, all windows.
    pub errors: u64,
    /// The first refusal's text.
    pub first_error: Option<String>,
}

/// One sample of the latency part.
#[derive(Debug, Clone, Serialize)]
pub struct LatencySample {
    /// ns from the request's write to the first poll seeing the probe output's TX move.
    pub first_packet_ns: Option<u64>,
    /// ns from the request's write to its reply.
    pub reply_ns: u64,
    /// ns from the `route_delete`'s write to its reply.
    pub delete_reply_ns: u64,
    /// ns from the request's write to the TX timestamp of the first probe the probe output's
    /// pcap device wrote after it (the PMD's clock: TSC since its start plus its start's
    /// wall-clock time).
    pub first_packet_pcap_ns: Option<i64>,
    /// The request's write, ns since the Unix epoch (to match the pcap's timestamps).
    pub sent_unix_ns: u64,
}

/// The latency part.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyResult {
    /// Warm-up cycles discarded.
    pub warmup: usize,
    /// Every measured sample.
    pub samples: Vec<LatencySample>,
    /// Request -> first packet forwarded by the new route.
    pub first_packet: Percentiles,
    /// Request -> reply of the `route_set`.
    pub reply: Percentiles,
    /// Request -> reply of the `route_delete`.
    pub delete_reply: Percentiles,
    /// Request -> TX timestamp of the first probe forwarded by the new route (from the
    /// probe output's `tx_pcap`), the primary figure.
    pub first_packet_pcap: Percentiles,
    /// Samples whose pcap figure was negative (clock offset between the PMD and the harness).
    pub pcap_negative: usize,
    /// Probes the output pcap holds.
    pub pcap_packets: usize,
    /// Runs of forwarded probes in the pcap (separated by > 10 ms of silence): one per cycle
    /// (warm-up included) when the pcap figure is valid.
    pub pcap_segments: usize,
    /// Cycles where no probe was forwarded within 1 s.
    pub missed: usize,
    /// Samples where the first packet was seen before the reply arrived.
    pub packet_before_reply: usize,
    /// Mean interval between two polls of the counter, ns (the resolution).
    pub poll_interval_ns: f64,
    /// cpu_mpps of the forwarding thread over the whole latency part (main + probe streams).
    pub cpu_mpps: f64,
    /// Drops by reason over the latency part (the probes without a route are dropped).
    pub drops: Vec<crate::vrouter_run::DropCount>,
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
    flows: u64,
    batch: usize,
    table: usize,
    dur_s: f64,
    reps: u32,
    machine: Machine,
    cpu_model: String,
    commands: &'a [String],
    storm_summary: Option<&'a StormSummary>,
    storm_windows: &'a [StormWindow],
    storm_error: Option<String>,
    latency: Option<&'a LatencyResult>,
    latency_error: Option<String>,
}

/// `model name` of /proc/cpuinfo.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default()
}

fn spec(o: &Opts, empty_pcap: &Path, tag: &str, pcap_path: &Path, packets: u64, probe: Option<Probe>) -> RunSpec {
    let fs = FlowSettings::for_flows(o.flows);
    let Sizing { mbufs, memory_mb, memory } =
        memory::sizing(packets + if probe.is_some() { 16 } else { 0 }, fs.max_held_packets(), fs.table_bytes());
    let prefix = format!("vrbstorm{}_{tag}", std::process::id());
    let topo = Topology {
        pcap: pcap_path.to_path_buf(),
        empty_pcap: empty_pcap.to_path_buf(),
        run_dir: o.run_base.join(&prefix),
        file_prefix: prefix,
        memory_mb,
        memory,
        mbufs,
        main_core: o.client_cpu,
        fwd_core: FWD_CORE,
        flow: Some(fs),
        probe,
    };
    RunSpec {
        vrouter: o.vrouter.clone(),
        topology: topo,
        config_path: o.out.join(format!("vrouter_storm_{tag}.toml")),
        log_path: o.out.join(format!("vrouter_storm_{tag}.log")),
        warm: Duration::from_secs_f64(o.warm),
        dur: Duration::from_secs_f64(o.dur),
        start_timeout: Duration::from_secs(o.start_timeout),
        stop_timeout: Duration::from_secs(60),
        fwd_thread: o.fwd_thread.clone(),
    }
}

/// Starts the vRouter and waits until every flow of the main traffic is set up (created >=
/// flows, nothing in HOLD, created unchanged for 1 s), then the warm-up.
fn start_settled(spec: &RunSpec, flows: u64, settle_timeout: Duration) -> Result<Started> {
    let mut st = Started::start(spec, Duration::from_millis(5))?;
    let table = FlowTableReader::open_run_dir(st.run_dir())
        .map_err(|e| anyhow::anyhow!("cannot open the flow table in {}: {e}", st.run_dir().display()))?;
    let deadline = Instant::now() + settle_timeout;
    let mut stable: Option<(Instant, u64)> = None;
    loop {
        st.check_alive()?;
        let s = TableCounters::from(&table.stats());
        if s.created >= flows && s.hold == 0 {
            match stable {
                Some((t, c)) if c == s.created && t.elapsed() >= Duration::from_secs(1) => break,
                Some((_, c)) if c == s.created => {}
                _ => stable = Some((Instant::now(), s.created)),
            }
        } else {
            stable = None;
        }
        if Instant::now() > deadline {
            eprintln!("vrouter-bench: flows not all set up in {settle_timeout:?} (created {}); going on", s.created);
            break;
        }
        sleep_checked(Duration::from_millis(50))?;
    }
    sleep_checked(spec.warm)?;
    st.check_alive()?;
    Ok(st)
}

fn thread_ns(pid: u32, tid: Option<u32>) -> u64 {
    tid.and_then(|t| procfs::thread_cpu_ns(pid, t).ok()).unwrap_or(0)
}

/// The storm part (one vRouter process).
fn run_storm(o: &Opts, spec: &RunSpec) -> Result<(Vec<StormWindow>, StormSummary)> {
    let mut st = start_settled(spec, o.flows, Duration::from_secs(o.settle_timeout))?;
    pin_current_thread(o.client_cpu);
    let sh = Arc::new(StormShared::default());
    let worker = {
        let (run_dir, sh, cpu, table) = (st.run_dir().to_path_buf(), sh.clone(), o.client_cpu, o.table);
        std::thread::Builder::new().name("storm-client".into()).spawn(move || {
            let r = storm_thread(run_dir, cpu, table, sh.clone());
            sh.ready.store(true, Ordering::SeqCst);
            r
        })?
    };
    let t_ready = Instant::now();
    while !sh.ready.load(Ordering::SeqCst) {
        if t_ready.elapsed() > Duration::from_secs(120) {
            bail!("the storm client did not install its {} routes in 120 s", o.table);
        }
        sleep_checked(Duration::from_millis(10))?;
    }
    if worker.is_finished() {
        worker.join().map_err(|_| anyhow::anyhow!("storm thread panicked"))??;
        bail!("the storm client stopped");
    }

    let agent_tid = st.thread(AGENT_THREAD);
    let client_tid = Some(sh.tid.load(Ordering::SeqCst));
    let me = std::process::id();
    let mut schedule = Vec::new();
    for rep in 1..=o.reps {
        schedule.push((rep, 0));
        schedule.push((rep, o.batch));
        if o.single {
            schedule.push((rep, 0));
            schedule.push((rep, 1));
        }
        schedule.push((rep, SPIN));
    }
    let mut windows = Vec::new();
    let result = (|| -> Result<()> {
        for &(rep, batch) in &schedule {
            if interrupted() {
                bail!("interrupted");
            }
            sh.batch.store(batch, Ordering::SeqCst);
            sleep_checked(Duration::from_millis(300))?;
            let (acked0, req0, err0) =
                (sh.acked.load(Ordering::SeqCst), sh.requests.load(Ordering::SeqCst), sh.errors.load(Ordering::SeqCst));
            sh.lat.lock().unwrap().clear();
            // The connection thread of this window's connection (the client reconnects
            // after an idle window; the old thread has gone by now).
            let control_tid = st.thread("vr-control-conn");
            let (ag0, ct0, cl0) =
                (thread_ns(st.pid, agent_tid), thread_ns(st.pid, control_tid), thread_ns(me, client_tid));
            let a: Sample = sample(&st.reader, st.pid, st.fwd_tid)?;
            sleep_checked(Duration::from_secs_f64(o.dur))?;
            let b: Sample = sample(&st.reader, st.pid, st.fwd_tid)?;
            let (ag1, ct1, cl1) =
                (thread_ns(st.pid, agent_tid), thread_ns(st.pid, control_tid), thread_ns(me, client_tid));
            let (acked1, req1, err1) =
                (sh.acked.load(Ordering::SeqCst), sh.requests.load(Ordering::SeqCst), sh.errors.load(Ordering::SeqCst));
            let lat = std::mem::take(&mut *sh.lat.lock().unwrap());
            st.check_alive()?;
            if worker.is_finished() {
                bail!("the storm client stopped");
            }
            let dt = (b.t - a.t).as_secs_f64();
            let rx = b.rx - a.rx;
            let cpu_s = (b.cpu_ns - a.cpu_ns) as f64 / 1e9;
            let w = StormWindow {
                rep,
                batch,
                window_s: dt,
                rx_packets: rx,
                tx_packets: b.tx - a.tx,
                drops: b.drops.iter().sum::<u64>() - a.drops.iter().sum::<u64>(),
                cpu_mpps: rx as f64 / cpu_s.max(1e-9) / 1e6,
                wall_mpps: rx as f64 / dt / 1e6,
                fwd_cpu_share: cpu_s / dt,
                routes_acked: acked1 - acked0,
                requests: req1 - req0,
                errors: err1 - err0,
                routes_per_s: (acked1 - acked0) as f64 / dt,
                request_latency: percentiles(&lat),
                control_cpu_share: ct1.saturating_sub(ct0) as f64 / 1e9 / dt,
                agent_cpu_share: ag1.saturating_sub(ag0) as f64 / 1e9 / dt,
                client_cpu_share: cl1.saturating_sub(cl0) as f64 / 1e9 / dt,
                routes_per_control_cpu_s: (batch > 0 && batch != SPIN && ct1 > ct0)
                    .then(|| (acked1 - acked0) as f64 / (ct1.saturating_sub(ct0) as f64 / 1e9)),
                cpu_busy: procfs::cpu_busy_share(&a.jiffies, &b.jiffies),
                load1: procfs::loadavg().map(|l| l[0]).unwrap_or(0.0),
            };
            println!(
                "storm rep {rep} batch {:>5}: cpu_mpps {:.3} wall_mpps {:.3} fwd share {:.2} drops {} | routes/s {:.0} \
                 ({} requests, {} errors, reply p50 {:.0} us p99 {:.0} us) cpu share: control {:.2} agent {:.2} client {:.2}; \
                 routes per control CPU s {:.0}; cpu_busy {:?} load {:.1}",
                if w.batch == SPIN { "spin".to_string() } else { w.batch.to_string() },
                w.cpu_mpps,
                w.wall_mpps,
                w.fwd_cpu_share,
                w.drops,
                w.routes_per_s,
                w.requests,
                w.errors,
                w.request_latency.p50_us,
                w.request_latency.p99_us,
                w.control_cpu_share,
                w.agent_cpu_share,
                w.client_cpu_share,
                w.routes_per_control_cpu_s.unwrap_or(0.0),
                w.cpu_busy.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>(),
                w.load1
            );
            windows.push(w);
        }
        Ok(())
    })();
    sh.batch.store(0, Ordering::SeqCst);
    sh.stop.store(true, Ordering::SeqCst);
    let worker_res = worker.join();
    let totals = st.stop()?;
    if !totals.clean_exit {
        eprintln!("vrouter-bench: the vRouter did not exit cleanly after the storm");
    }
    if let Ok(Err(e)) = worker_res {
        result.context(format!("storm client: {e:#}"))?;
    } else {
        result?;
    }
    let med = |batch: usize, f: &dyn Fn(&StormWindow) -> f64| {
        let v: Vec<f64> = windows.iter().filter(|w| w.batch == batch).map(f).collect();
        (!v.is_empty()).then(|| median(&v))
    };
    let off = med(0, &|w| w.cpu_mpps);
    let on = med(o.batch, &|w| w.cpu_mpps);
    let on1 = if o.single && o.batch != 1 { med(1, &|w| w.cpu_mpps) } else { None };
    let summary = StormSummary {
        batch: o.batch,
        routes_per_s: med(o.batch, &|w| w.routes_per_s),
        routes_per_s_batch1: if o.single { med(1, &|w| w.routes_per_s) } else { None },
        off_cpu_mpps: off,
        on_cpu_mpps: on,
        on1_cpu_mpps: on1,
        off_wall_mpps: med(0, &|w| w.wall_mpps),
        on_wall_mpps: med(o.batch, &|w| w.wall_mpps),
        on1_wall_mpps: if o.single { med(1, &|w| w.wall_mpps) } else { None },
        spin_cpu_mpps: med(SPIN, &|w| w.cpu_mpps),
        spin_vs_off: off.zip(med(SPIN, &|w| w.cpu_mpps)).map(|(a, b)| b / a - 1.0),
        on_vs_off: off.zip(on).map(|(a, b)| b / a - 1.0),
        on1_vs_off: off.zip(on1).map(|(a, b)| b / a - 1.0),
        request_p50_us: med(o.batch, &|w| w.request_latency.p50_us),
        request_p99_us: med(o.batch, &|w| w.request_latency.p99_us),
        routes_per_control_cpu_s: med(o.batch, &|w| w.routes_per_control_cpu_s.unwrap_or(0.0)),
        routes_per_control_cpu_s_batch1: if o.single {
            med(1, &|w| w.routes_per_control_cpu_s.unwrap_or(0.0))
        } else {
            None
        },
        fwd_cpu_share: [
            med(0, &|w| w.fwd_cpu_share),
            med(o.batch, &|w| w.fwd_cpu_share),
            med(1, &|w| w.fwd_cpu_share),
            med(SPIN, &|w| w.fwd_cpu_share),
        ],
        errors: sh.errors.load(Ordering::SeqCst),
        first_error: sh.first_error.lock().unwrap().clone(),
    };
    Ok((windows, summary))
}

/// Reads whatever is available on the non-blocking `s` into `buf`; true once a full line
/// (the reply) is in it.
fn poll_reply(s: &mut UnixStream, buf: &mut Vec<u8>) -> Result<bool> {
    let mut tmp = [0u8; 4096];
    loop {
        match s.read(&mut tmp) {
            Ok(0) => bail!("the vRouter closed the control connection"),
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(buf.contains(&b'\n'))
}

fn check_reply(buf: &[u8], what: &str) -> Result<()> {
    match reply_error(&String::from_utf8_lossy(buf)) {
        None => Ok(()),
        Some(e) => bail!("{what} refused: {e}"),
    }
}

/// Matches the probe output's capture to the samples and sets `first_packet_pcap_ns`.
///
/// The capture's timestamps come from the pcap PMD's clock (its start time plus TSC cycles
/// over its TSC rate estimate), which drifts from the harness's wall clock by some ms over a
/// run. The capture is cut into runs of forwarded probes (gaps > 10 ms; cycles are separated
/// by the 20 ms quiet wait, but a forwarding core time-sliced away for > 10 ms also splits a
/// cycle's run). `D = poll detection time - run start` is >= the clock offset and equal to
/// it when the poll saw the first packet at once. Cycle by cycle, the run of a cycle is the
/// first run starting after its request's write (mapped to the PMD clock with the smallest
/// `D` of the last 8 cycles, less 5 ms; the first cycle takes the capture's first run). Then
/// the offset is a line through the minima of `D` over 8 consecutive chunks of samples
/// (least squares over time), and the sample is `run start + offset(t) - request write`. It
/// reads high by the poll's lag in the chunk's best sample (tens of us), and off by the
/// line's fit error. Returns (samples below 0, runs in the capture).
fn match_pcap(samples: &mut [LatencySample], ts: &[u64], warmup: usize) -> (usize, usize) {
    let mut starts = Vec::new();
    for (i, &t) in ts.iter().enumerate() {
        if i == 0 || t > ts[i - 1] + 10_000_000 {
            starts.push(t as f64);
        }
    }
    let runs = starts.len();
    let mut recent: VecDeque<f64> = VecDeque::new();
    let mut next = 0usize;
    let mut pts: Vec<(f64, f64)> = Vec::new();
    let mut matched: Vec<Option<f64>> = vec![None; samples.len()];
    let t0 = samples.first().map_or(0, |s| s.sent_unix_ns);
    for (k, s) in samples.iter().enumerate() {
        let Some(first_ns) = s.first_packet_ns else { continue };
        let poll = s.sent_unix_ns as f64 + first_ns as f64;
        match recent.iter().copied().reduce(f64::min) {
            // The first measured cycle: the run after the warm-up cycles' runs.
            None => next = warmup,
            Some(d_est) => {
                let lo = s.sent_unix_ns as f64 - d_est - 5e6;
                while next < starts.len() && starts[next] < lo {
                    next += 1;
                }
            }
        }
        let Some(&st) = starts.get(next) else { break };
        let d = poll - st;
        recent.push_back(d);
        if recent.len() > 8 {
            recent.pop_front();
        }
        pts.push(((s.sent_unix_ns - t0) as f64 / 1e9, d));
        matched[k] = Some(st);
        next += 1;
    }
    if pts.len() < 8 {
        return (0, runs);
    }
    let chunk = pts.len().div_ceil(8);
    let mins: Vec<(f64, f64)> =
        pts.chunks(chunk).map(|c| *c.iter().min_by(|a, b| a.1.total_cmp(&b.1)).expect("non-empty chunk")).collect();
    let n = mins.len() as f64;
    let (mx, my) = (mins.iter().map(|p| p.0).sum::<f64>() / n, mins.iter().map(|p| p.1).sum::<f64>() / n);
    let sxx: f64 = mins.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
    let slope = if sxx > 0.0 { mins.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum::<f64>() / sxx } else { 0.0 };
    let mut negative = 0;
    for (s, st) in samples.iter_mut().zip(matched) {
        let Some(st) = st else { continue };
        let t = (s.sent_unix_ns - t0) as f64 / 1e9;
        let offset = my + slope * (t - mx);
        let d = (st + offset - s.sent_unix_ns as f64) as i64;
        negative += usize::from(d < 0);
        s.first_packet_pcap_ns = Some(d);
    }
    (negative, runs)
}

/// The latency part (a vRouter process with the probe stream).
fn run_latency(o: &Opts, spec: &RunSpec) -> Result<LatencyResult> {
    let mut st = start_settled(spec, o.flows, Duration::from_secs(o.settle_timeout))?;
    pin_current_thread(o.client_cpu);
    // SAFETY: PR_SET_TIMERSLACK takes a value and affects only the calling thread.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong) };
    let path = st.run_dir().join("control.sock");
    let mut s = UnixStream::connect(&path).with_context(|| format!("connecting {}", path.display()))?;
    s.set_nonblocking(true)?;
    let set = format!(
        "{{\"cmd\":\"route_set\",\"routes\":[{{\"vrf\":{VRF},\"prefix\":\"{PROBE_PREFIX}\",\"nexthop\":{PROBE_NEXTHOP}}}]}}\n"
    );
    let del = format!("{{\"cmd\":\"route_delete\",\"routes\":[{{\"vrf\":{VRF},\"prefix\":\"{PROBE_PREFIX}\"}}]}}\n");
    let tx = |st: &Started| st.reader.vif_counters(PROBE_OUT_VIF, None).tx_packets;
    let a = sample(&st.reader, st.pid, st.fwd_tid)?;
    let a_drops = a.drops;
    let warmup = 3;
    let mut samples = Vec::new();
    let (mut missed, mut before_reply, mut polls, mut poll_ns) = (0usize, 0usize, 0u64, 0u64);
    let result = (|| -> Result<()> {
        for i in 0..warmup + o.latency_samples {
            if interrupted() {
                bail!("interrupted");
            }
            st.check_alive()?;
            let c0 = tx(&st);
            let mut buf = Vec::new();
            let sent_unix_ns =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
            let t0 = Instant::now();
            s.write_all(set.as_bytes())?;
            let (mut first, mut reply) = (None, None);
            while first.is_none() || reply.is_none() {
                let now = Instant::now();
                if first.is_none() && tx(&st) > c0 {
                    first = Some(now - t0);
                    if reply.is_none() {
                        before_reply += usize::from(i >= warmup);
                    }
                }
                if reply.is_none() && poll_reply(&mut s, &mut buf)? {
                    reply = Some(Instant::now() - t0);
                    check_reply(&buf, "route_set")?;
                }
                if now - t0 > Duration::from_secs(1) && reply.is_some() {
                    break;
                }
                if now - t0 > Duration::from_secs(30) {
                    bail!("no reply to route_set in 30 s");
                }
                polls += 1;
                std::thread::sleep(Duration::from_micros(2));
            }
            poll_ns += (Instant::now() - t0).as_nanos() as u64;
            if first.is_none() {
                missed += usize::from(i >= warmup);
            }
            // Delete, then wait until the probe output has not moved for 20 ms.
            let mut buf = Vec::new();
            let t1 = Instant::now();
            s.write_all(del.as_bytes())?;
            while !poll_reply(&mut s, &mut buf)? {
                if t1.elapsed() > Duration::from_secs(30) {
                    bail!("no reply to route_delete in 30 s");
                }
                std::thread::sleep(Duration::from_micros(2));
            }
            let delete_reply = t1.elapsed();
            check_reply(&buf, "route_delete")?;
            let mut last = tx(&st);
            let mut since = Instant::now();
            while since.elapsed() < Duration::from_millis(20) {
                std::thread::sleep(Duration::from_micros(500));
                let c = tx(&st);
                if c != last {
                    last = c;
                    since = Instant::now();
                }
                if t1.elapsed() > Duration::from_secs(10) {
                    bail!("probe packets still forwarded 10 s after route_delete");
                }
            }
            if i >= warmup {
                samples.push(LatencySample {
                    first_packet_ns: first.map(|d| d.as_nanos() as u64),
                    reply_ns: reply.map_or(0, |d| d.as_nanos() as u64),
                    delete_reply_ns: delete_reply.as_nanos() as u64,
                    first_packet_pcap_ns: None,
                    sent_unix_ns,
                });
            }
        }
        Ok(())
    })();
    let b = sample(&st.reader, st.pid, st.fwd_tid)?;
    drop(s);
    let totals = st.stop()?;
    if !totals.clean_exit {
        eprintln!("vrouter-bench: the vRouter did not exit cleanly after the latency part");
    }
    result?;
    let mut d = [0u64; vrouter::drop_reason::DROP_REASON_COUNT];
    for (i, x) in d.iter_mut().enumerate() {
        *x = b.drops[i].saturating_sub(a_drops[i]);
    }
    // The pcap the probe output wrote (complete now that the vRouter has stopped).
    let out_pcap = spec.topology.probe.as_ref().and_then(|p| p.out_pcap.clone());
    let ts = match &out_pcap {
        Some(p) => {
            let t = pcap::timestamps_ns(p)?;
            let _ = std::fs::remove_file(p);
            t
        }
        None => Vec::new(),
    };
    let (pcap_negative, pcap_segments) = match_pcap(&mut samples, &ts, warmup);
    let first: Vec<u64> = samples.iter().filter_map(|s| s.first_packet_ns).collect();
    let first_pcap: Vec<u64> = samples.iter().filter_map(|s| s.first_packet_pcap_ns).map(|d| d.max(0) as u64).collect();
    let reply: Vec<u64> = samples.iter().map(|s| s.reply_ns).collect();
    let dreply: Vec<u64> = samples.iter().map(|s| s.delete_reply_ns).collect();
    Ok(LatencyResult {
        warmup,
        first_packet: percentiles(&first),
        first_packet_pcap: percentiles(&first_pcap),
        pcap_negative,
        pcap_packets: ts.len(),
        pcap_segments,
        reply: percentiles(&reply),
        delete_reply: percentiles(&dreply),
        missed,
        packet_before_reply: before_reply,
        poll_interval_ns: poll_ns as f64 / polls.max(1) as f64,
        cpu_mpps: (b.rx - a.rx) as f64 / ((b.cpu_ns - a.cpu_ns) as f64 / 1e3).max(1e-9),
        drops: crate::vrouter_run::drop_list(&d),
        samples,
    })
}

/// Runs the route-storm benchmark.
pub fn run(o: Opts) -> Result<()> {
    let started = now_unix();
    let load_at_start = procfs::loadavg().unwrap_or_default();
    if o.batch == 0 || o.reps == 0 || o.table + o.batch > POOL || o.latency_samples == 0 {
        bail!("--storm-batch >= 1, --reps >= 1, --storm-table + --storm-batch <= {POOL}, --latency-samples >= 1");
    }
    let mut commands = Vec::new();
    std::fs::create_dir_all(&o.out)?;
    std::fs::create_dir_all(&o.run_base)?;
    let empty = o.out.join("empty.pcap");
    std::fs::write(&empty, pcap::empty_pcap())?;
    let pcap_path = pcap::ensure_flows_pcap(&o.out, &o.shared, o.flows, &mut commands)?;
    let packets = pcap::count_packets(&pcap_path)?;
    let mac: Vec<u8> = PROBE_IN_MAC.split(':').map(|x| u8::from_str_radix(x, 16).unwrap_or(0)).collect();
    let probe_pcap = o.out.join("pcaps").join("probe_172.16.0.pcap");
    std::fs::write(&probe_pcap, pcap::udp_v4_pcap(16, mac.try_into().expect("6 bytes"), [172, 16, 0]))?;

    let (mut windows, mut summary, mut storm_error) = (Vec::new(), None, None);
    if !o.no_storm {
        let sp = spec(&o, &empty, "storm", &pcap_path, packets, None);
        let line =
            shell_line(&[o.vrouter.display().to_string(), "--config".into(), sp.config_path.display().to_string()]);
        println!("$ {line}   # storm: batch {} and 1, {} s windows, {} reps", o.batch, o.dur, o.reps);
        commands.push(line);
        match run_storm(&o, &sp) {
            Ok((w, s)) => {
                windows = w;
                summary = Some(s);
            }
            Err(e) => {
                eprintln!("vrouter-bench: storm part failed: {e:#}");
                storm_error = Some(format!("{e:#}"));
            }
        }
    }
    let (mut latency, mut latency_error) = (None, None);
    if !o.no_latency && !interrupted() {
        let sp = spec(
            &o,
            &empty,
            "latency",
            &pcap_path,
            packets,
            Some(Probe {
                pcap: probe_pcap.clone(),
                out_pcap: Some(o.run_base.join(format!("probe_out_{}.pcap", std::process::id()))),
            }),
        );
        let line =
            shell_line(&[o.vrouter.display().to_string(), "--config".into(), sp.config_path.display().to_string()]);
        println!("$ {line}   # latency: {} samples", o.latency_samples);
        commands.push(line);
        match run_latency(&o, &sp) {
            Ok(l) => latency = Some(l),
            Err(e) => {
                eprintln!("vrouter-bench: latency part failed: {e:#}");
                latency_error = Some(format!("{e:#}"));
            }
        }
    }
    let model = cpu_model();
    let doc = Doc {
        tool: "vrouter-bench",
        mode: "route-storm",
        started_unix: started,
        finished_unix: now_unix(),
        argv: std::env::args().collect(),
        git_rev: &o.rev,
        vrouter_binary: o.vrouter.display().to_string(),
        flows: o.flows,
        batch: o.batch,
        table: o.table,
        dur_s: o.dur,
        reps: o.reps,
        machine: machine(load_at_start),
        cpu_model: model.clone(),
        commands: &commands,
        storm_summary: summary.as_ref(),
        storm_windows: &windows,
        storm_error: storm_error.clone(),
        latency: latency.as_ref(),
        latency_error: latency_error.clone(),
    };
    let json_path = o.out.join("route_storm_results.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&doc)?)?;
    windows.sort_by_key(|w| (w.batch, w.rep));

    println!("\n## Route storm ({} flows, rev {}, CPU {model})\n", o.flows, o.rev);
    let f = |x: Option<f64>, p: usize| x.map_or("-".into(), |v| format!("{v:.p$}"));
    if let Some(s) = &summary {
        println!("| storm | routes/s (median) | fwd Mpps/core (median) | vs off | wall Mpps | request p50 / p99 us |");
        println!("|---|---:|---:|---:|---:|---:|");
        println!("| off | - | {} | - | {} | - |", f(s.off_cpu_mpps, 3), f(s.off_wall_mpps, 3));
        println!(
            "| batch {} | {} | {} | {} % | {} | {} / {} |",
            s.batch,
            f(s.routes_per_s, 0),
            f(s.on_cpu_mpps, 3),
            f(s.on_vs_off.map(|x| x * 100.0), 2),
            f(s.on_wall_mpps, 3),
            f(s.request_p50_us, 0),
            f(s.request_p99_us, 0)
        );
        if o.single {
            let b1: Vec<&StormWindow> = windows.iter().filter(|w| w.batch == 1).collect();
            let p: Vec<f64> = b1.iter().map(|w| w.request_latency.p50_us).collect();
            let p99: Vec<f64> = b1.iter().map(|w| w.request_latency.p99_us).collect();
            println!(
                "| batch 1 | {} | {} | {} % | {} | {:.0} / {:.0} |",
                f(s.routes_per_s_batch1, 0),
                f(s.on1_cpu_mpps, 3),
                f(s.on1_vs_off.map(|x| x * 100.0), 2),
                f(s.on1_wall_mpps, 3),
                median(&p),
                median(&p99)
            );
        }
        let spin_wall: Vec<f64> = windows.iter().filter(|w| w.batch == SPIN).map(|w| w.wall_mpps).collect();
        println!(
            "| control: CPU {} spinning, no requests | - | {} | {} % | {} | - |",
            o.client_cpu,
            f(s.spin_cpu_mpps, 3),
            f(s.spin_vs_off.map(|x| x * 100.0), 2),
            f((!spin_wall.is_empty()).then(|| median(&spin_wall)), 3)
        );
        println!(
            "\nTargets: >= 100000 routes/s at batch {}: {}; forwarding during the storm at most 2 % lower: {}",
            s.batch,
            s.routes_per_s.map_or("-", |r| if r >= 100_000.0 { "yes" } else { "NO" }),
            s.on_vs_off.map_or("-", |r| if r >= -0.02 { "yes" } else { "NO" })
        );
        if s.errors > 0 {
            println!("Refused requests: {} (first: {})", s.errors, s.first_error.as_deref().unwrap_or(""));
        }
        println!(
            "Routes per control-thread CPU second (median): batch {} {}, batch 1 {}; forwarding thread CPU share \
             off / batch {} / batch 1 / spin: {} / {} / {} / {}",
            s.batch,
            f(s.routes_per_control_cpu_s, 0),
            f(s.routes_per_control_cpu_s_batch1, 0),
            s.batch,
            f(s.fwd_cpu_share[0], 2),
            f(s.fwd_cpu_share[1], 2),
            f(s.fwd_cpu_share[2], 2),
            f(s.fwd_cpu_share[3], 2)
        );
        println!("Per window (cpu_mpps, routes/s):");
        for w in &windows {
            println!(
                "  rep {} batch {:>5}: {:.3} Mpps/core, {:.0} routes/s, {:.0} per control CPU s",
                w.rep,
                if w.batch == SPIN { "spin".to_string() } else { w.batch.to_string() },
                w.cpu_mpps,
                w.routes_per_s,
                w.routes_per_control_cpu_s.unwrap_or(0.0)
            );
        }
    }
    if let Some(l) = &latency {
        println!(
            "\nRequest -> first probe forwarded by the new route ({} samples, poll interval {:.1} us, missed {}): \
             p50 {:.1} us, p90 {:.1} us, p99 {:.1} us, max {:.1} us (min {:.1}); route_set reply p50 {:.1} / p99 {:.1} us; \
             first packet before the reply in {} samples; route_delete reply p50 {:.1} / p99 {:.1} us; \
             forwarding meanwhile {:.3} Mpps/core (main + probe streams)",
            l.first_packet.count,
            l.poll_interval_ns / 1e3,
            l.missed,
            l.first_packet.p50_us,
            l.first_packet.p90_us,
            l.first_packet.p99_us,
            l.first_packet.max_us,
            l.first_packet.min_us,
            l.reply.p50_us,
            l.reply.p99_us,
            l.packet_before_reply,
            l.delete_reply.p50_us,
            l.delete_reply.p99_us,
            l.cpu_mpps
        );
        let u = &l.first_packet_pcap;
        println!(
            "Request -> TX timestamp of the first probe forwarded by the new route (probe output tx_pcap, {} samples, \
             {} probes captured in {} runs, {} negative): p50 {:.1} us, p90 {:.1} us, p99 {:.1} us, max {:.1} us (min {:.1})",
            u.count, l.pcap_packets, l.pcap_segments, l.pcap_negative, u.p50_us, u.p90_us, u.p99_us, u.max_us, u.min_us
        );
    }
    if let Some(e) = &storm_error {
        println!("storm part failed: {e}");
    }
    if let Some(e) = &latency_error {
        println!("latency part failed: {e}");
    }
    println!("\nCommands run:");
    for c in &commands {
        println!("  {c}");
    }
    println!("Written: {}", json_path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storm_requests_are_valid_programming_requests() {
        let set = storm_request(true, [0usize, 257, POOL + 1].into_iter());
        let v: serde_json::Value = serde_json::from_str(set.trim()).unwrap();
        let routes = v["routes"].as_array().unwrap();
        assert_eq!(routes.len(), 3);
        assert_eq!(routes[0]["prefix"], "10.64.0.0/24");
        assert_eq!(routes[1]["prefix"], "10.65.1.0/24");
        assert_eq!(routes[2]["prefix"], "10.64.1.0/24");
        assert_eq!(routes[2]["nexthop"], 1);
        assert!(matches!(
            vrouter::control::program::ProgramCommand::decode(&v),
            Ok(vrouter::control::program::ProgramCommand::RouteSet(r)) if r.len() == 3
        ));
        let del = storm_request(false, [POOL - 1].into_iter());
        let v: serde_json::Value = serde_json::from_str(del.trim()).unwrap();
        assert_eq!(v["routes"][0]["prefix"], "10.127.255.0/24");
        assert!(matches!(
            vrouter::control::program::ProgramCommand::decode(&v),
            Ok(vrouter::control::program::ProgramCommand::RouteDelete(r)) if r.len() == 1
        ));
        assert_eq!(reply_error(r#"{"ok":true,"changed":true}"#), None);
        assert!(reply_error(r#"{"ok":false,"error":"x"}"#).is_some());
    }

    #[test]
    fn percentiles_of_durations() {
        let p = percentiles(&(1..=100).map(|x| x * 1000).collect::<Vec<u64>>());
        assert_eq!(p.count, 100);
        assert!((p.p50_us - 50.0).abs() < 0.1, "{p:?}");
        assert!((p.p99_us - 99.0).abs() < 0.1, "{p:?}");
    }
}
