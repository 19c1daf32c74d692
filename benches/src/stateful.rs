//! Stateful measurements of the vRouter (`[flow] enabled = true`).
//!
//! - [`measure_throughput`]: the stateless topology with the flow table on. After the first
//!   packet it waits until every flow of the pcap is set up (flow table: `created` >= N,
//!   nothing in HOLD, `created` stable), then warms up and measures the window like the
//!   stateless run, with the flow table and agent counters around it.
//! - [`measure_setup`]: a pcap where every packet is a new flow. Samples the counters every
//!   `sample_every` from the first packet (VM vif RX, fabric TX, drops by reason, flow table
//!   created / processed / hold, CPU time of the forwarding and agent threads; the agent's
//!   `status` in a side thread), then derives the setup rate over the first pass of the pcap
//!   (before `infinite_rx` wraps around), the losses in it, and the setup latency.

use crate::agent::{self, AgentStatus};
use crate::procfs::{self, Rss};
use crate::vrouter_run::{
    drop_list, sample, sample_window, window_measurement, DropCount, RunSpec, Started, VrouterMeasurement,
};
use crate::{interrupted, sleep_checked};
use anyhow::{bail, Result};
use flow_table::{FlowTableReader, TableStats};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vrouter::drop_reason::DROP_REASON_COUNT;

/// Name of the agent thread in the vrouter process.
pub const AGENT_THREAD: &str = "vr-agent";

/// Flow table counters at one instant (a subset of [`TableStats`]).
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct TableCounters {
    /// HOLD flows created by the data plane (misses).
    pub created: u64,
    /// Flows created by the agent (reverse flows).
    pub added: u64,
    /// HOLD -> action transitions (flows set up).
    pub processed: u64,
    /// Flows delete-marked or evicted (aging, audit).
    pub deleted: u64,
    /// Flows in HOLD now.
    pub hold: u64,
    /// Entries in use (forward + reverse).
    pub used: u64,
    /// Overflow entries in use.
    pub used_overflow: u64,
}

impl From<&TableStats> for TableCounters {
    fn from(s: &TableStats) -> TableCounters {
        TableCounters {
            created: s.created,
            added: s.added,
            processed: s.processed,
            deleted: s.deleted,
            hold: s.hold_count,
            used: s.used_entries,
            used_overflow: s.used_overflow_entries,
        }
    }
}

/// Memory of the flow state.
#[derive(Debug, Clone, Serialize)]
pub struct FlowMemory {
    /// Path of the flow table file.
    pub table_path: String,
    /// Bytes of the flow table file (mapped by the vRouter and its tools).
    pub table_file_bytes: u64,
    /// Main-table entries.
    pub main_entries: u32,
    /// Overflow entries.
    pub overflow_entries: u32,
    /// Entries the file can hold (main + overflow).
    pub capacity: u64,
    /// Bytes per entry.
    pub entry_size: u32,
    /// Entries in use at the end (forward + reverse flows).
    pub used_entries: u64,
    /// Connections (forward flows set up by the data plane: flow pairs).
    pub flow_pairs: u64,
    /// `table_file_bytes / capacity`: the table's cost per entry it can hold.
    pub bytes_per_capacity_entry: f64,
    /// `table_file_bytes / used_entries`: per flow entry actually used.
    pub bytes_per_used_entry: Option<f64>,
    /// `table_file_bytes / flow_pairs`: per connection (forward + reverse entry).
    pub bytes_per_flow_pair: Option<f64>,
    /// Resident memory of the vRouter when the first packet arrived and at the end.
    pub rss_first_rx: Rss,
    /// Resident memory of the vRouter at the end of the run.
    pub rss_end: Rss,
    /// Growth of private anonymous memory (the agent's per-flow metadata map, hold
    /// stores) per flow pair over the run: heap cost beyond the table (approximate: hash
    /// maps grow by doubling).
    pub anon_growth_per_flow_pair: Option<f64>,
}

fn flow_memory(reader: &FlowTableReader, rss_first: Rss, rss_end: Rss, pairs: u64) -> FlowMemory {
    let h = reader.header();
    let s = reader.stats();
    let capacity = u64::from(h.main_entries) + u64::from(h.overflow_entries);
    let per = |x: u64| (x > 0).then(|| h.file_size as f64 / x as f64);
    FlowMemory {
        table_path: reader.path().display().to_string(),
        table_file_bytes: h.file_size,
        main_entries: h.main_entries,
        overflow_entries: h.overflow_entries,
        capacity,
        entry_size: h.entry_size,
        used_entries: s.used_entries,
        flow_pairs: pairs,
        bytes_per_capacity_entry: h.file_size as f64 / capacity.max(1) as f64,
        bytes_per_used_entry: per(s.used_entries),
        bytes_per_flow_pair: per(pairs),
        rss_first_rx: rss_first,
        rss_end,
        anon_growth_per_flow_pair: (pairs > 0).then(|| (rss_end.anon as f64 - rss_first.anon as f64) / pairs as f64),
    }
}

fn open_table(st: &Started) -> Result<FlowTableReader> {
    match FlowTableReader::open_run_dir(st.run_dir()) {
        Ok(r) => Ok(r),
        Err(e) => bail!("cannot open the flow table in {}: {e} (is [flow] enabled?)", st.run_dir().display()),
    }
}

fn thread_cpu(pid: u32, tid: Option<u32>) -> u64 {
    tid.and_then(|t| procfs::thread_cpu_ns(pid, t).ok()).unwrap_or(0)
}

// ---------------------------------------------------------------------------------------
// Throughput with flows.

/// One throughput run with flows.
#[derive(Debug, Clone, Serialize)]
pub struct StatefulMeasurement {
    /// The window, as in the stateless run (cpu_mpps, drops by reason, tx/rx, ...).
    #[serde(flatten)]
    pub base: VrouterMeasurement,
    /// Distinct flows in the pcap (forward flows).
    pub flows: u64,
    /// Seconds from the first packet until every flow was set up (`None`: not within the
    /// settle timeout; the window was measured anyway).
    pub settle_s: Option<f64>,
    /// Drops before the window (while the flows were being set up), by reason.
    pub setup_phase_drops: Vec<DropCount>,
    /// Flow table counters when every flow was set up (or at the settle timeout).
    pub table_at_settle: TableCounters,
    /// Flow table counters at the start of the window.
    pub table_window_start: TableCounters,
    /// Flow table counters at the end of the window.
    pub table_window_end: TableCounters,
    /// Flows created during the window (0 when all flows were set up before it).
    pub created_in_window: u64,
    /// CPU share of the agent thread during the window (housekeeping scans).
    pub agent_cpu_share: f64,
    /// The agent's `status` after the window (setups, setup latency), if it answered.
    pub agent: Option<AgentStatus>,
    /// Why the agent's `status` could not be read, if it could not.
    pub agent_error: Option<String>,
    /// Memory of the flow state (table file, RSS) after the window.
    pub memory: Option<FlowMemory>,
}

/// Runs the vRouter with flows on `spec` (whose topology must have `flow` set) and
/// measures the window once all `flows` flows are set up.
pub fn measure_throughput(spec: &RunSpec, flows: u64, settle_timeout: Duration) -> Result<StatefulMeasurement> {
    measure_throughput_with(spec, flows, settle_timeout, &mut |_, _| {})
}

/// An edge of the measurement window, for the hook of [`measure_throughput_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowEdge {
    /// Just before the window's first sample.
    Start,
    /// Just after the window's last sample.
    End,
}

/// [`measure_throughput`] that calls `at_window(edge, vrouter)` right before and right after
/// the window (to read the counters of something that runs beside the vRouter over exactly
/// the window).
pub fn measure_throughput_with(
    spec: &RunSpec,
    flows: u64,
    settle_timeout: Duration,
    at_window: &mut dyn FnMut(WindowEdge, &Started),
) -> Result<StatefulMeasurement> {
    if spec.topology.flow.is_none() {
        bail!("measure_throughput needs a topology with [flow] enabled");
    }
    let mut st = Started::start(spec, Duration::from_millis(5))?;
    let rss_first = procfs::rss(st.pid).unwrap_or_default();
    let table = open_table(&st)?;
    // 1. Until every flow is set up: created >= N, no HOLD, created unchanged for 1 s.
    let t_settle = Instant::now() + settle_timeout;
    let mut stable_since: Option<(Instant, u64)> = None;
    let settle_s = loop {
        st.check_alive()?;
        let s = TableCounters::from(&table.stats());
        if s.created >= flows && s.hold == 0 {
            match stable_since {
                Some((t, c)) if c == s.created => {
                    if t.elapsed() >= Duration::from_secs(1) {
                        break Some((t - st.first_rx).as_secs_f64());
                    }
                }
                _ => stable_since = Some((Instant::now(), s.created)),
            }
        } else {
            stable_since = None;
        }
        if Instant::now() > t_settle {
            eprintln!(
                "vrouter-bench: N={flows}: flows not all set up within {settle_timeout:?} \
                 (created {}, hold {}, processed {}); measuring anyway",
                s.created, s.hold, s.processed
            );
            break None;
        }
        sleep_checked(Duration::from_millis(50))?;
    };
    let table_at_settle = TableCounters::from(&table.stats());
    let pre_drops = st.reader.drops(None);
    // 2. Warm-up, then the window (with table and agent counters around it).
    sleep_checked(spec.warm)?;
    st.check_alive()?;
    let agent_tid = st.thread(AGENT_THREAD);
    let ta = TableCounters::from(&table.stats());
    let agent_a = thread_cpu(st.pid, agent_tid);
    at_window(WindowEdge::Start, &st);
    let (a, b, lb, la) = sample_window(&mut st, spec.dur)?;
    at_window(WindowEdge::End, &st);
    let agent_b = thread_cpu(st.pid, agent_tid);
    let tb = TableCounters::from(&table.stats());
    let (agent, agent_error) = match agent::status(st.run_dir(), Duration::from_secs(30)) {
        Ok(s) => (Some(s), None),
        Err(e) => (None, Some(format!("{e:#}"))),
    };
    let rss_end = procfs::rss(st.pid).unwrap_or_default();
    let memory = flow_memory(&table, rss_first, rss_end, tb.created);
    let ident = st.ident();
    let window_s = (b.t - a.t).as_secs_f64();
    drop(table);
    let totals = st.stop()?;
    if interrupted() {
        bail!("interrupted");
    }
    let base = window_measurement(&a, &b, (lb, la), &ident, totals);
    Ok(StatefulMeasurement {
        base,
        flows,
        settle_s,
        setup_phase_drops: drop_list(&pre_drops),
        table_at_settle,
        table_window_start: ta,
        table_window_end: tb,
        created_in_window: tb.created.saturating_sub(ta.created),
        agent_cpu_share: (agent_b.saturating_sub(agent_a)) as f64 / 1e9 / window_s.max(1e-9),
        agent,
        agent_error,
        memory: Some(memory),
    })
}

// ---------------------------------------------------------------------------------------
// Flow setup rate.

/// One sample of a setup-rate run.
#[derive(Debug, Clone, Serialize)]
pub struct SetupSample {
    /// Seconds since the first packet was seen.
    pub t: f64,
    /// Flows the agent set up: the table's `added` (the agent adds the reverse flow of
    /// every new flow it sets up; `processed` counts the HOLD -> action transitions of both,
    /// plus HOLD flows the audit turned into drops).
    pub set_up: u64,
    /// VM vif RX packets so far.
    pub rx: u64,
    /// Fabric vif TX packets so far.
    pub tx: u64,
    /// Drops so far, all reasons.
    pub drops: u64,
    /// Flow table counters.
    pub table: TableCounters,
    /// On-CPU ns of the forwarding thread so far.
    pub fwd_cpu_ns: u64,
    /// On-CPU ns of the agent thread so far.
    pub agent_cpu_ns: u64,
}

/// The agent's `status` at one instant.
#[derive(Debug, Clone, Serialize)]
pub struct StatusSample {
    /// Seconds since the first packet (when the reply arrived).
    pub t: f64,
    /// How long the agent took to answer.
    pub reply_s: f64,
    /// The agent's `setups` counter.
    pub setups: u64,
}

/// Rate of a counter between two samples.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Rate {
    /// Seconds since the first packet when the count started.
    pub from_t: f64,
    /// Seconds since the first packet when the count ended.
    pub to_t: f64,
    /// Increase of the counter between the two.
    pub count: u64,
    /// Per wall second.
    pub per_s: f64,
}

/// The average rate of a monotonic series `(t, v)` while it climbs from `lo` to `hi`, or
/// to its final value when it stops below `hi` (a run where some flows were never set up):
/// the times it reaches both are interpolated between samples.
pub fn rate_between(series: &[(f64, u64)], lo: u64, hi: u64) -> Option<Rate> {
    let top = series.iter().map(|&(_, v)| v).max()?.min(hi);
    if top <= lo {
        return None;
    }
    let t0 = time_to_reach(series, lo)?;
    let t1 = time_to_reach(series, top)?;
    (t1 > t0).then(|| Rate { from_t: t0, to_t: t1, count: top - lo, per_s: (top - lo) as f64 / (t1 - t0) })
}

/// The highest rate over any `span` seconds of the series (consecutive samples at least
/// `span` apart).
pub fn peak_rate(series: &[(f64, u64)], span: f64) -> Option<f64> {
    let mut best: Option<f64> = None;
    let mut j = 0;
    for i in 0..series.len() {
        while j < series.len() && series[j].0 - series[i].0 < span {
            j += 1;
        }
        if j >= series.len() {
            break;
        }
        let r = (series[j].1 - series[i].1) as f64 / (series[j].0 - series[i].0);
        best = Some(best.map_or(r, |b: f64| b.max(r)));
    }
    best
}

/// The first time the series reaches `v` (linear interpolation between samples).
pub fn time_to_reach(series: &[(f64, u64)], v: u64) -> Option<f64> {
    let k = series.iter().position(|&(_, x)| x >= v)?;
    if k == 0 {
        return Some(series[0].0);
    }
    let (t0, x0) = series[k - 1];
    let (t1, x1) = series[k];
    Some(t0 + (t1 - t0) * (v - x0) as f64 / (x1 - x0).max(1) as f64)
}

/// Counts per CPU second over a climb: between the first sample at or above `lo` and the
/// first sample at or above `min(hi, final value)` (the same samples for the count and the
/// CPU time, so a thread that was descheduled or blocked does not count as working).
/// `series` is `(t, count, cpu_ns)`; returns `(count per CPU s, CPU share over the span)`.
pub fn per_cpu_second(series: &[(f64, u64, u64)], lo: u64, hi: u64) -> Option<(f64, f64)> {
    let top = series.iter().map(|s| s.1).max()?.min(hi);
    let a = series.iter().find(|s| s.1 >= lo)?;
    let b = series.iter().find(|s| s.1 >= top)?;
    let (dc, dcpu, dt) = (b.1.checked_sub(a.1)?, b.2.checked_sub(a.2)?, b.0 - a.0);
    (dc > 0 && dcpu > 0 && dt > 0.0).then(|| (dc as f64 / (dcpu as f64 / 1e9), dcpu as f64 / 1e9 / dt))
}

/// What one setup-rate run measured.
#[derive(Debug, Clone, Serialize)]
pub struct SetupMeasurement {
    /// New flows in the pcap (= packets: each flow appears once per pass).
    pub flows: u64,
    /// Packets in the pcap.
    pub pcap_packets: u64,
    /// `[flow] hold_limit` of the run.
    pub hold_limit: u32,
    /// `[flow] held_packets_per_flow` of the run.
    pub held_packets_per_flow: u32,
    /// Sampling period, milliseconds.
    pub sample_every_ms: f64,
    /// Seconds the run was sampled from its first packet.
    pub observed_s: f64,
    /// Seconds from the first packet until `infinite_rx` had delivered the whole pcap once
    /// (interpolated; `None`: not within the run).
    pub first_pass_s: Option<f64>,
    /// Counters at the last sample inside the first pass (RX <= packets).
    pub first_pass: Option<SetupSample>,
    /// Drops by reason up to the end of the first pass (the sample at or just after it).
    pub first_pass_drops: Vec<DropCount>,
    /// Drops by reason over the whole observed run (later passes included).
    pub run_drops: Vec<DropCount>,
    /// Flows set up ([`SetupSample::set_up`]) between 1 % and 99 % of N: the sustained
    /// setup rate.
    pub sustained: Option<Rate>,
    /// Flows set up between 10 % and 90 % of N (less sensitive to how the run starts and
    /// ends).
    pub sustained_mid: Option<Rate>,
    /// Flows created (misses) between 1 % and 99 % of N.
    pub created_rate: Option<Rate>,
    /// Highest setup rate over any 100 ms.
    pub peak_100ms_per_s: Option<f64>,
    /// Seconds from the first packet until N flows were set up (`None`: never).
    pub all_set_up_s: Option<f64>,
    /// N / all_set_up_s.
    pub overall_per_s: Option<f64>,
    /// Nothing was dropped during the whole observation (a held packet of the first pass
    /// that is dropped later, e.g. by the HOLD audit, counts) and all N flows were set up.
    pub no_loss: bool,
    /// Flows the HOLD audit turned into drops (`processed - 2 x added`: HOLD -> action
    /// transitions that were not a forward/reverse pair set up by the agent).
    pub audited_to_drop: u64,
    /// CPU share of the forwarding and agent threads over the climb from 1 % to 99 % of N.
    pub fwd_cpu_share: Option<f64>,
    /// CPU share of the agent thread over the same climb.
    pub agent_cpu_share: Option<f64>,
    /// Flows set up per on-CPU second of the forwarding thread (it never sleeps: the rate
    /// with a fully owned forwarding core, if the agent keeps up), over the same climb.
    pub setups_per_fwd_cpu_s: Option<f64>,
    /// Per on-CPU second of the agent thread (it sleeps when it has nothing to do).
    pub setups_per_agent_cpu_s: Option<f64>,
    /// Per on-CPU second of both threads together: flow setup costs the forwarding core
    /// (miss, HOLD, release) and the agent's core (policy, reverse flow, programming).
    pub setups_per_total_cpu_s: Option<f64>,
    /// The agent's status at the end (counters, setup latency p50/p99/p99.9/max).
    pub agent: Option<AgentStatus>,
    /// Why the agent's `status` could not be read, if it could not.
    pub agent_error: Option<String>,
    /// Longest wait for a status reply (the agent serves its socket between scans).
    pub max_status_reply_s: Option<f64>,
    /// Flow table counters at the last sample.
    pub table_end: TableCounters,
    /// Memory of the flow state (table file, RSS), if it could be read.
    pub memory: Option<FlowMemory>,
    /// 1-, 5- and 15-minute load averages before the run.
    pub load_before: [f64; 3],
    /// 1-, 5- and 15-minute load averages after the run.
    pub load_after: [f64; 3],
    /// VM vif RX packets over the whole run.
    pub total_rx: u64,
    /// Fabric vif TX packets over the whole run.
    pub total_tx: u64,
    /// Drops over the whole run, all reasons.
    pub total_drops: u64,
    /// `total_rx == total_tx + total_drops` after the stop (every packet accounted for).
    pub accounted: bool,
    /// Whether the vRouter exited successfully after SIGINT (not killed).
    pub clean_exit: bool,
    /// Seconds from spawn to the first received packet.
    pub startup_s: f64,
    /// Every sample of the run.
    pub series: Vec<SetupSample>,
    /// Every `status` reply of the side thread.
    pub status_series: Vec<StatusSample>,
}

/// Runs the vRouter on a pcap of `flows` new flows (`packets` packets) and samples it for
/// `observe` from the first packet.
///
/// Sampling goes on for at least `observe`, and beyond it (up to `max_observe`) until the
/// first pass is over and all `flows` flows are set up.
pub fn measure_setup(
    spec: &RunSpec,
    flows: u64,
    packets: u64,
    observe: Duration,
    max_observe: Duration,
    sample_every: Duration,
) -> Result<SetupMeasurement> {
    let Some(fs) = spec.topology.flow.clone() else {
        bail!("measure_setup needs a topology with [flow] enabled");
    };
    let load_before = procfs::loadavg()?;
    let mut st = Started::start(spec, Duration::from_millis(1))?;
    let t0 = st.first_rx;
    let rss_first = procfs::rss(st.pid).unwrap_or_default();
    let table = open_table(&st)?;
    let agent_tid = st.thread(AGENT_THREAD);

    // The agent's status in a side thread: it answers between housekeeping scans.
    let stop = Arc::new(AtomicBool::new(false));
    let statuses: Arc<Mutex<Vec<StatusSample>>> = Arc::default();
    let poller = {
        let (stop, statuses, run_dir) = (stop.clone(), statuses.clone(), st.run_dir().to_path_buf());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let q = Instant::now();
                if let Ok(s) = agent::status(&run_dir, Duration::from_secs(10)) {
                    let now = Instant::now();
                    statuses.lock().unwrap().push(StatusSample {
                        t: (now - t0).as_secs_f64(),
                        reply_s: (now - q).as_secs_f64(),
                        setups: s.setups,
                    });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    let mut series = Vec::new();
    let mut drops_at: Vec<[u64; DROP_REASON_COUNT]> = Vec::new();
    let end = t0 + observe;
    let hard_end = t0 + max_observe.max(observe);
    let mut result = Ok(());
    loop {
        let now = Instant::now();
        let done = series.last().is_some_and(|s: &SetupSample| s.rx >= packets && s.set_up >= flows);
        if now >= hard_end || (now >= end && done) {
            break;
        }
        if let Err(e) = st.check_alive() {
            result = Err(e);
            break;
        }
        if interrupted() {
            result = Err(anyhow::anyhow!("interrupted"));
            break;
        }
        let s = sample(&st.reader, st.pid, st.fwd_tid)?;
        let tc = TableCounters::from(&table.stats());
        let agent_ns = thread_cpu(st.pid, agent_tid);
        series.push(SetupSample {
            t: (s.t - t0).as_secs_f64(),
            set_up: tc.added,
            rx: s.rx,
            tx: s.tx,
            drops: s.drops.iter().sum(),
            table: tc,
            fwd_cpu_ns: s.cpu_ns,
            agent_cpu_ns: agent_ns,
        });
        drops_at.push(s.drops);
        std::thread::sleep(sample_every);
    }
    stop.store(true, Ordering::Relaxed);
    let _ = poller.join();
    result?;
    let (agent, agent_error) = match agent::status(st.run_dir(), Duration::from_secs(30)) {
        Ok(s) => (Some(s), None),
        Err(e) => (None, Some(format!("{e:#}"))),
    };
    let table_end = TableCounters::from(&table.stats());
    let rss_end = procfs::rss(st.pid).unwrap_or_default();
    let memory = flow_memory(&table, rss_first, rss_end, table_end.created);
    let startup_s = st.startup_s;
    drop(table);
    let totals = st.stop()?;
    let load_after = procfs::loadavg()?;
    let status_series = std::mem::take(&mut *statuses.lock().unwrap());

    // Analysis.
    let last_in_pass = series.iter().rposition(|s| s.rx <= packets);
    let rx_series: Vec<(f64, u64)> = series.iter().map(|s| (s.t, s.rx)).collect();
    let first_pass_s =
        if series.last().is_some_and(|s| s.rx >= packets) { time_to_reach(&rx_series, packets) } else { None };
    // Drops of the first pass: at the first sample at or after its end.
    let pass_end_idx = series.iter().position(|s| s.rx >= packets).or(last_in_pass);
    let first_pass_drops = pass_end_idx.map(|k| drop_list(&drops_at[k])).unwrap_or_default();
    let run_drops = drops_at.last().map(drop_list).unwrap_or_default();
    let processed: Vec<(f64, u64)> = series.iter().map(|s| (s.t, s.set_up)).collect();
    let created: Vec<(f64, u64)> = series.iter().map(|s| (s.t, s.table.created)).collect();
    let lo = (flows / 100).max(1);
    let hi = flows - flows / 100;
    let sustained = rate_between(&processed, lo, hi);
    let sustained_mid = rate_between(&processed, flows / 10, flows - flows / 10);
    let all_set_up_s = time_to_reach(&processed, flows);
    let with_cpu = |f: &dyn Fn(&SetupSample) -> u64| -> Vec<(f64, u64, u64)> {
        series.iter().map(|s| (s.t, s.set_up, f(s))).collect()
    };
    let fwd = per_cpu_second(&with_cpu(&|s| s.fwd_cpu_ns), lo, hi);
    let agent_c = per_cpu_second(&with_cpu(&|s| s.agent_cpu_ns), lo, hi);
    let total = per_cpu_second(&with_cpu(&|s| s.fwd_cpu_ns + s.agent_cpu_ns), lo, hi);
    let fwd_cpu_share = fwd.map(|x| x.1);
    let agent_cpu_share = agent_c.map(|x| x.1);
    let run_drop_total: u64 = run_drops.iter().map(|d| d.packets).sum();
    let no_loss = first_pass_s.is_some() && run_drop_total == 0 && all_set_up_s.is_some();
    Ok(SetupMeasurement {
        flows,
        pcap_packets: packets,
        hold_limit: fs.hold_limit,
        held_packets_per_flow: fs.held_packets_per_flow,
        sample_every_ms: sample_every.as_secs_f64() * 1e3,
        observed_s: series.last().map_or(0.0, |s| s.t),
        first_pass_s,
        first_pass: last_in_pass.map(|k| series[k].clone()),
        first_pass_drops,
        run_drops,
        setups_per_fwd_cpu_s: fwd.map(|x| x.0),
        setups_per_agent_cpu_s: agent_c.map(|x| x.0),
        setups_per_total_cpu_s: total.map(|x| x.0),
        sustained,
        sustained_mid,
        created_rate: rate_between(&created, lo, hi),
        peak_100ms_per_s: peak_rate(&processed, 0.1),
        overall_per_s: all_set_up_s.map(|t| flows as f64 / t.max(1e-9)),
        all_set_up_s,
        no_loss,
        audited_to_drop: table_end.processed.saturating_sub(2 * table_end.added),
        fwd_cpu_share,
        agent_cpu_share,
        agent,
        agent_error,
        max_status_reply_s: status_series.iter().map(|s| s.reply_s).reduce(f64::max),
        table_end,
        memory: Some(memory),
        load_before,
        load_after,
        total_rx: totals.rx,
        total_tx: totals.tx,
        total_drops: totals.drops,
        accounted: totals.rx == totals.tx + totals.drops,
        clean_exit: totals.clean_exit,
        startup_s,
        series,
        status_series,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        let s = vec![(0.0, 0), (0.1, 5), (0.2, 50), (0.3, 95), (0.4, 100), (0.5, 100)];
        let r = rate_between(&s, 5, 95).unwrap();
        assert_eq!((r.from_t, r.to_t, r.count), (0.1, 0.3, 90));
        assert!((r.per_s - 450.0).abs() < 1e-9);
        // Interpolated ends: 1 is reached at 0.02, 99 at 0.38.
        let r = rate_between(&s, 1, 99).unwrap();
        assert!((r.from_t - 0.02).abs() < 1e-12 && (r.to_t - 0.38).abs() < 1e-12);
        assert_eq!(r.count, 98);
        // A series that stops at 50 (half the flows never set up): up to where it stopped.
        let stuck = vec![(0.0, 0), (0.1, 10), (0.2, 50), (5.0, 50)];
        let r = rate_between(&stuck, 10, 99).unwrap();
        assert_eq!((r.from_t, r.to_t, r.count), (0.1, 0.2, 40));
        assert!(rate_between(&s, 200, 300).is_none());
        assert!((peak_rate(&s, 0.1).unwrap() - 450.0).abs() < 1e-9);
        assert!((time_to_reach(&s, 100).unwrap() - 0.4).abs() < 1e-12);
        assert!((time_to_reach(&s, 25).unwrap() - (0.1 + 0.1 * 20.0 / 45.0)).abs() < 1e-12);
        assert_eq!(time_to_reach(&s, 101), None);
        // 90 counted between the samples at 5 and 95, with 45 ms of CPU in 0.2 s.
        let c = vec![
            (0.0, 0, 0),
            (0.1, 5, 5_000_000),
            (0.2, 50, 30_000_000),
            (0.3, 95, 50_000_000),
            (0.4, 100, 90_000_000),
        ];
        let (per, share) = per_cpu_second(&c, 1, 95).unwrap();
        assert!((per - 2000.0).abs() < 1e-6, "{per}");
        assert!((share - 0.225).abs() < 1e-9, "{share}");
    }
}
