//! `vrouter-bench --restart`: what a restart of the vRouter costs the traffic that crosses
//! it, with the state kept (the flow table reattached, issue 18).
//!
//! The topology of `--vhost` VM -> VM ([`crate::vhost_topo`]): one `vm-guest` process is the
//! sender VM (`vm1.sock`) and the sink VM (`vm2.sock`), the vRouter forwards vif 1 -> route
//! -> vif 2 with the flow table on. The sender offers a **steady load**: a pcap with one
//! frame per flow, replayed round after round at `--pps` frames per second from a fixed
//! schedule (`vm-guest --blast --rate`): a frame due that its TX ring does not take (no
//! vRouter behind the socket and the ring full) is dropped and counted, never sent late, so
//! the load is the same before, during and after the restart.
//!
//! For each flow count, repetition and restart (`takeover`, `kill`):
//!
//! 1. the vRouter starts; once every flow is set up (the table holds both directions of
//!    every flow, none in HOLD, stable 1 s) and after `--steady` seconds (at least one pass
//!    over the flows), the sink must receive every flow once (one pass);
//! 2. the sender pauses, the harness reads the counters of the sender, the sink, the
//!    vRouter (vif 1 RX, vif 2 TX, drops by reason), the flow table and the agent with
//!    nothing in flight, and the sender resumes: the **window** starts;
//! 3. after 2 s of steady forwarding (the longest sink gap in the last second is the steady
//!    state's), the guest's gap and flow observation is reset and the restart is triggered:
//!    - `takeover`: `vrouter --config X --takeover` is started while the old one forwards;
//!      it initialises its EAL, stops the old one (SIGTERM, waits for its exit), reattaches
//!      the table and opens the ports (the VMs' vhost-user connections are re-made);
//!    - `kill`: the old vRouter gets SIGKILL; once it is gone, `vrouter --config X` starts
//!      (and reattaches the table the killed process left);
//! 4. the harness polls the guest until the new vRouter forwards and the sink has received
//!    **every flow again after the longest gap**; then 2 s more of forwarding, the agent's
//!    and the table's counters (no flow may have been set up again), and the sender pauses:
//!    the window ends, quiescent, and every counter is read again.
//!
//! What is reported (times in ms from the trigger):
//!
//! - **packets lost** = frames offered - frames the sink received, from the trigger until
//!   every flow was back (the restart's), split: around the gap (between the guest's samples
//!   just before and 20 ms after it) and the rest; the steady state's own loss before the
//!   trigger and after recovery next to it; over the whole window, split into frames the
//!   sender's full ring refused (`tx_dropped`), frames the ring took that no vRouter
//!   dequeued, vRouter drops (by reason), frames a killed vRouter had dequeued and not sent,
//!   frames sent to the sink VM it did not get; and as time at the offered load.
//! - **forwarding gap** = from the sink's last frame before the guest saw its link go down
//!   (the old vRouter gone) to its first frame after (`vm-guest` `link_rx_gap_us`), and when
//!   it started and ended; the longest sink gap of the restart window and of the steady state
//!   next to it; the sender's view (its longest time without a frame taken by its ring, how
//!   far it fell behind its schedule, when it saw its link go down and up); the old
//!   forwarding thread's CPU share while a takeover prepares, and the hypervisor's steal.
//! - **every flow forwarded again** = when the last flow of the pcap reached the sink after
//!   the gap (bounded below by one pass over the flows at the offered rate, also shown); the
//!   flows are usable again when forwarding resumes if none had to be set up again, which
//!   is checked: the new agent's `setups` is 0 and the table's `created`/`added` counters
//!   did not move, and the agent adopted every entry.
//! - **the restart's own figures**, from the vRouters' output lines time-stamped as they came:
//!   when the old vRouter got SIGTERM and was gone (`stopped in X ms`), the reattach scan
//!   (`reattached: ... in X ms`), when the new vRouter forwarded (`forwarding on`), the
//!   agent's adoption (`adopted N flows ... in X ms`); hence where the gap goes.

use crate::agent;
use crate::guest::{Guest, GuestCounters, GuestSpec};
use crate::hugepages::{Outcome, Reservation};
use crate::pcap;
use crate::procfs;
use crate::topology::FlowSettings;
use crate::vhost_run::{log_tail, mono_ns, wait_flows_set_up, wait_links_up, wait_stats, wait_until, RunDir, VrProc};
use crate::vhost_topo::{Path as VPath, VhostTopology, VM1_VIF, VM2_VIF};
use crate::vrouter_run::{drop_list, DropCount};
use crate::{interrupted, median, now_unix, shell_line, sleep_checked};
use anyhow::{bail, Context, Result};
use flow_table::FlowTableReader;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use vrouter::drop_reason::DROP_REASON_COUNT;
use vrouter::stats::StatsReader;

/// A way to restart the vRouter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Restart {
    /// A planned takeover: `vrouter --takeover` started next to the running one.
    Takeover,
    /// SIGKILL, then a plain start.
    Kill,
}

impl Restart {
    /// Its name on the command line and in the results.
    pub fn name(self) -> &'static str {
        match self {
            Restart::Takeover => "takeover",
            Restart::Kill => "kill",
        }
    }

    /// The table's label.
    pub fn label(self) -> &'static str {
        match self {
            Restart::Takeover => "planned takeover",
            Restart::Kill => "SIGKILL + start",
        }
    }
}

/// The command-line options of the restart mode (flattened into `vrouter-bench`'s).
#[derive(Debug, Clone, clap::Args)]
pub struct RestartArgs {
    /// The restart benchmark instead: packets lost, the forwarding gap and the time until
    /// every flow is forwarded again during a planned takeover (`vrouter --takeover`) and a
    /// SIGKILL followed by a start, under a steady offered load over the --vhost topology
    /// (VM -> VM), at --flows (default 1000,1000000 here), --reps (default 3 here).
    #[arg(long, conflicts_with = "vhost")]
    pub restart: bool,
    /// --restart: the offered load, frames per second (one frame per flow per pass).
    #[arg(long, default_value_t = 200_000)]
    pub pps: u64,
    /// --restart: the restarts to measure, in this order in every repetition.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "takeover,kill")]
    pub restarts: Vec<Restart>,
    /// --restart: seconds of forwarding once every flow is set up, before the window (at
    /// least one pass over the flows).
    #[arg(long, default_value_t = 3.0)]
    pub steady: f64,
    /// --restart: seconds allowed from the restart until every flow has reached the sink again.
    #[arg(long, default_value_t = 90)]
    pub recover_timeout: u64,
    /// --restart: the generator's sleep when nothing is due and nothing arrived, µs (0: it
    /// busy-polls its CPU, which it shares with the vRouter's main thread and agent).
    #[arg(long, default_value_t = 50)]
    pub guest_sleep_us: u64,
}

/// Options of `vrouter-bench --restart`.
#[derive(Debug, Clone)]
pub struct Opts {
    /// Flow counts.
    pub flows: Vec<u64>,
    /// The restarts measured in every repetition.
    pub restarts: Vec<Restart>,
    /// Offered frames per second.
    pub pps: u64,
    /// Seconds of forwarding before the window.
    pub steady: f64,
    /// Repetitions.
    pub reps: u32,
    /// Seconds allowed from the restart until every flow reached the sink again.
    pub recover_timeout: u64,
    /// The generator's idle sleep, µs.
    pub guest_sleep_us: u64,
    /// Output directory.
    pub out: PathBuf,
    /// Where the vRouter run directories go (a tmpfs).
    pub run_base: PathBuf,
    /// The shared benchmark directory (`bench/gen_flows_pcap.py`).
    pub shared: PathBuf,
    /// The vrouter binary.
    pub vrouter: PathBuf,
    /// The vm-guest binary.
    pub vm_guest: PathBuf,
    /// 2 MiB hugepages to have free (0: `--no-huge`).
    pub hugepages: u64,
    /// Fail instead of falling back to `--no-huge`.
    pub require_huge: bool,
    /// `ci/setup.sh`, which reserves hugepages when asked.
    pub setup_script: Option<PathBuf>,
    /// Revision recorded with the results.
    pub rev: String,
    /// Seconds allowed for start-up and link-up.
    pub start_timeout: u64,
    /// Seconds allowed from the first frame until every flow is set up.
    pub settle_timeout: u64,
}

/// One restart measured.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Run {
    /// `takeover` or `kill`.
    pub restart: String,
    /// Flows in the pcap.
    pub flows: u64,
    /// Repetition (1-based).
    pub rep: u32,
    /// Why the run failed, if it did.
    pub error: Option<String>,
    /// Notes (irregularities that did not fail the run).
    pub notes: Vec<String>,
    /// Frames per second offered.
    pub offered_pps: u64,
    /// One pass over the flows at the offered rate, ms.
    pub pass_ms: f64,
    /// Seconds from the first frame until every flow was set up.
    pub settle_s: f64,
    /// The sink's rate in the second before the restart, frames/s.
    pub steady_rx_pps: f64,
    /// The longest sink gap in that second (the steady state's), µs.
    pub steady_max_gap_us: u64,
    /// The sender's worst lag behind its schedule in that second, µs.
    pub steady_pace_lag_us: u64,
    /// The old vRouter's forwarding thread's CPU share in that second.
    pub steady_fwd_cpu_share: Option<f64>,
    /// Steal jiffies of the forwarding CPU in that second.
    pub steady_steal_jiffies: u64,
    /// Takeover: the old forwarding thread's CPU share from the trigger until the new
    /// vRouter stopped the old one (its preparation: EAL, ...).
    pub prep_fwd_cpu_share: Option<f64>,
    /// Steal jiffies of the forwarding CPU in that time.
    pub prep_steal_jiffies: u64,
    /// Takeover: frames lost in that time (between the guest's samples).
    pub lost_prep: Option<i64>,

    /// The window (quiescent at both ends), seconds.
    pub window_s: f64,
    /// Frames offered in the window.
    pub offered: u64,
    /// Frames the sender's TX ring took.
    pub sent: u64,
    /// Frames due that the ring refused (dropped by the sender).
    pub tx_dropped: u64,
    /// Frames the sink received.
    pub received: u64,
    /// `offered - received` over the window.
    pub lost: i64,
    /// `lost_restart` as time at the offered rate, ms.
    pub lost_ms: f64,
    /// Of `lost`, from the window's start to the trigger (the steady state's own loss).
    pub lost_before: i64,
    /// Of `lost`, from the trigger until every flow was back: **the restart's loss**.
    pub lost_restart: i64,
    /// Of `lost`, from then to the window's end.
    pub lost_after: i64,
    /// Of `lost_restart`, between the guest's last sample before the gap and its first 20 ms
    /// after it.
    pub lost_around_gap: Option<i64>,
    /// From the trigger until every flow was back, ms (the span of `lost_restart`).
    pub restart_window_ms: f64,
    /// The guest's counters every ~20 ms from the trigger on.
    pub samples: Vec<Sample>,
    /// `sent - received`: lost after the sender's ring took them.
    pub lost_after_tx: i64,
    /// vif 1 RX (frames the vRouters dequeued from the sender).
    pub vr_rx: u64,
    /// vif 2 TX (frames the vRouters enqueued to the sink).
    pub vr_tx: u64,
    /// vRouter drops, all reasons.
    pub vr_drops: u64,
    /// vRouter drops by reason.
    pub vr_drop_reasons: Vec<DropCount>,
    /// `sent - vr_rx`: frames the ring took that no vRouter dequeued.
    pub not_dequeued: i64,
    /// `vr_rx - vr_tx - vr_drops`: dequeued and neither sent nor counted as dropped (in
    /// flight in a killed vRouter).
    pub vr_unaccounted: i64,
    /// `vr_tx - received`: enqueued to the sink VM's ring and not received by it.
    pub not_delivered: i64,
    /// Whether the vRouter's counters continued over the restart (never went backwards).
    pub counters_continued: bool,

    /// **The forwarding gap**: from the sink's last frame before the guest saw its link go
    /// down (the old vRouter gone) to its first after, ms.
    pub gap_ms: f64,
    /// The longest time between two sink polls that received, from the trigger until every
    /// flow was back, ms (the restart's gap unless something else stalled longer).
    pub max_gap_ms: f64,
    /// When it started, ms after the trigger.
    pub gap_start_ms: f64,
    /// When it ended, ms after the trigger.
    pub gap_end_ms: f64,
    /// The sender's view: its longest time without a frame taken by its ring, from the
    /// trigger until every flow was back, ms (its ring takes frames for a while after the
    /// vRouter went away, until it is full).
    pub tx_stall_ms: f64,
    /// When that ended, ms after the trigger.
    pub tx_stall_end_ms: f64,
    /// The sender's worst lag behind its schedule over the restart, ms.
    pub pace_lag_ms: f64,
    /// When the guest saw its link go down, ms after the trigger (if it did).
    pub guest_link_down_ms: Option<f64>,
    /// When the guest saw its link up again, ms after the trigger.
    pub guest_link_up_ms: Option<f64>,
    /// **Every flow forwarded again**: when the last flow reached the sink after the gap,
    /// ms after the trigger.
    pub all_flows_ms: Option<f64>,
    /// Flows the sink received after the gap (of `flows`).
    pub flows_seen: u64,
    /// Flows back one pass after the gap's end (the first sample then).
    pub flows_after_one_pass: Option<u64>,
    /// The share of the offered frames the sink received in the steady second before the
    /// restart (below 1: the machine drops frames without a restart).
    pub steady_delivered: f64,
    /// When the sink started counting the flows anew (the guest saw its link go down: the old
    /// vRouter gone, the gap under way), ms after the trigger.
    pub flows_reset_ms: f64,
    /// The sink's rate over the 2 s after every flow was back, frames/s.
    pub rate_after_pps: f64,

    /// Takeover: when the new vRouter sent SIGTERM, ms after the trigger (kill: 0, the SIGKILL).
    pub stop_sent_ms: f64,
    /// Takeover: the old vRouter's `vrouter: stopping` line (it saw the signal), ms after the trigger.
    pub old_stopping_ms: Option<f64>,
    /// When the old vRouter was gone, ms after the trigger (takeover: the new one's
    /// `stopped in` line; kill: SIGKILL reaped).
    pub old_gone_ms: f64,
    /// What the new vRouter said the old one's stop took, ms (takeover).
    pub old_stop_ms: Option<f64>,
    /// When the new vRouter was started, ms after the trigger.
    pub new_spawned_ms: f64,
    /// Its `reattached` line, ms after the trigger.
    pub reattached_ms: f64,
    /// The reattach scan, as the line says, ms.
    pub reattach_scan_ms: f64,
    /// Flows the reattach kept (entries, both directions).
    pub flows_kept: u64,
    /// Its `forwarding on` line, ms after the trigger.
    pub forwarding_ms: f64,
    /// Its agent's `adopted` line, ms after the trigger.
    pub adopted_line_ms: Option<f64>,
    /// The adoption, as the line says, ms.
    pub adopt_ms: Option<f64>,
    /// Flows the agent adopted.
    pub adopted: u64,

    /// The new agent's `setups` (0: no flow was set up again).
    pub setups_after: u64,
    /// The flow table's `created` after - before (0: no new flow).
    pub table_created_delta: i64,
    /// The flow table's `added` after - before.
    pub table_added_delta: i64,
    /// The old and the new agent's `hold_audited` + `setup_denied` (0 expected).
    pub audited_or_denied: u64,
    /// No flow set up again, every entry adopted.
    pub no_new_setup: bool,
    /// Takeover: the old vRouter exited successfully.
    pub old_clean_exit: Option<bool>,
    /// The new vRouter stopped cleanly at the end.
    pub new_clean_exit: bool,
    /// The new vRouter's start lines, `+ms line` (ms after the trigger).
    pub new_lines: Vec<String>,
    /// The old vRouter's lines after the trigger.
    pub old_lines: Vec<String>,
    /// Load average at the window's start and end.
    pub load: ([f64; 3], [f64; 3]),
    /// The guest's counters at the end of the window.
    pub guest: Option<GuestCounters>,
    /// The commands that ran.
    pub commands: Vec<String>,
}

/// The guest's counters at one time.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Sample {
    /// ms after the trigger (the guest's clock).
    pub ms: f64,
    /// Frames offered so far.
    pub offered: u64,
    /// Frames the ring refused so far.
    pub tx_dropped: u64,
    /// Frames the sink received so far.
    pub received: u64,
    /// On-CPU ms of the old vRouter's forwarding thread so far (`None` once it is gone).
    pub old_fwd_cpu_ms: Option<f64>,
    /// Steal jiffies of the forwarding CPU (1) so far (the hypervisor ran something else).
    pub steal_fwd_cpu: u64,
    /// Flows the sink received since the guest last saw its link go down (or since the
    /// last reset).
    pub flows_seen: u64,
}

impl Sample {
    fn of(trigger: u64, g: &GuestCounters, fwd: Option<(u32, u32)>) -> Sample {
        Sample {
            ms: ms_after(trigger, g.at_ns),
            offered: g.offered,
            tx_dropped: g.tx_dropped,
            received: g.sink_received.unwrap_or(0),
            old_fwd_cpu_ms: fwd.and_then(|(pid, tid)| procfs::thread_cpu_ns(pid, tid).ok()).map(|ns| ns as f64 / 1e6),
            steal_fwd_cpu: procfs::cpu_steal().get(1).copied().unwrap_or(0),
            flows_seen: g.sink_flows_seen.unwrap_or(0),
        }
    }
}

/// The old vRouter's forwarding thread's share of a CPU between two samples (both while it ran).
fn fwd_share(a: &Sample, b: &Sample) -> Option<f64> {
    let (x, y) = (a.old_fwd_cpu_ms?, b.old_fwd_cpu_ms?);
    (b.ms > a.ms).then(|| (y - x) / (b.ms - a.ms))
}

/// Frames lost (offered - received) between the last sample at or before `start` and the
/// first one 20 ms or more after `end` (frames in flight at the end have arrived by then).
pub fn lost_around(samples: &[Sample], start: f64, end: f64) -> Option<i64> {
    // A gap that started at the trigger (a kill) starts at the first sample.
    let a = samples.iter().rev().find(|s| s.ms <= start).or(samples.first().filter(|s| s.ms <= start + 1.0))?;
    let b = samples.iter().find(|s| s.ms >= end + 20.0)?;
    Some((b.offered - a.offered) as i64 - (b.received - a.received) as i64)
}

/// The sink's frames per second between two reports of the guest.
fn rate(a: &GuestCounters, b: &GuestCounters) -> f64 {
    let dt = b.at_ns.saturating_sub(a.at_ns) as f64 / 1e9;
    if dt > 0.0 {
        (b.sink_received.unwrap_or(0) - a.sink_received.unwrap_or(0)) as f64 / dt
    } else {
        0.0
    }
}

/// The vRouter's counters the loss is split with.
#[derive(Debug, Clone, Copy)]
struct VrCounters {
    rx: u64,
    tx: u64,
    drops: [u64; DROP_REASON_COUNT],
}

impl VrCounters {
    fn read(r: &StatsReader) -> VrCounters {
        VrCounters {
            rx: r.vif_counters(VM1_VIF, None).rx_packets,
            tx: r.vif_counters(VM2_VIF, None).tx_packets,
            drops: r.drops(None),
        }
    }
}

/// A number in `text` right after `after`.
fn number_after(text: &str, after: &str) -> Option<f64> {
    let rest = &text[text.find(after)? + after.len()..];
    let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// The `X` of a line ending in `in X ms`.
fn ms_at_end(text: &str) -> Option<f64> {
    let i = text.rfind(" in ")?;
    number_after(&text[i..], " in ").filter(|_| text.trim_end().ends_with(" ms"))
}

/// The restart's figures from the new vRouter's output.
#[derive(Debug, Default, PartialEq)]
struct NewLines {
    /// (line time, X) of `the previous vRouter (pid N) stopped in X ms`.
    stopped: Option<(u64, f64)>,
    /// (line time, scan ms, flows kept) of `flow table P reattached: N flows kept ... in X ms`.
    reattached: Option<(u64, f64, u64)>,
    /// The line of a table that was not reattached.
    not_reattached: Option<String>,
    /// Time of `vrouter: forwarding on`.
    forwarding: Option<u64>,
    /// (line time, ms, flows) of `agent: adopted N flows ... in X ms`.
    adopted: Option<(u64, f64, u64)>,
}

fn parse_new_lines(lines: &[crate::vhost_run::Line]) -> NewLines {
    let mut n = NewLines::default();
    for l in lines {
        let t = &l.text;
        if t.contains("the previous vRouter (pid") && t.contains(") stopped in ") {
            n.stopped = number_after(t, ") stopped in ").map(|x| (l.at_ns, x));
        } else if t.contains(" reattached: ") && t.contains(" flows kept") {
            if let (Some(ms), Some(kept)) = (ms_at_end(t), number_after(t, " reattached: ")) {
                n.reattached = Some((l.at_ns, ms, kept as u64));
            }
        } else if t.contains("was not reattached") {
            n.not_reattached = Some(t.clone());
        } else if t.starts_with("vrouter: forwarding on ") {
            n.forwarding.get_or_insert(l.at_ns);
        } else if t.contains("agent: adopted ") {
            if let (Some(ms), Some(k)) = (ms_at_end(t), number_after(t, "agent: adopted ")) {
                n.adopted = Some((l.at_ns, ms, k as u64));
            }
        }
    }
    n
}

/// ms from `t0` to `t` (both `CLOCK_MONOTONIC` ns), negative when before.
fn ms_after(t0: u64, t: u64) -> f64 {
    (t as i128 - t0 as i128) as f64 / 1e6
}

struct Ctx {
    o: Opts,
    pcaps: BTreeMap<u64, PathBuf>,
    huge: bool,
    sock_dir: PathBuf,
    seq: u32,
}

/// The calling thread pinned to one CPU until dropped (then its previous CPUs again); best
/// effort: a failure leaves it where it was.
struct PinnedThread(Option<libc::cpu_set_t>);

impl PinnedThread {
    fn to(cpu: usize) -> PinnedThread {
        // SAFETY: cpu_set_t is plain data; the calls read and write only the sets passed, for
        // the calling thread (pid 0).
        unsafe {
            let mut old: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut old) != 0 {
                return PinnedThread(None);
            }
            let mut one: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut one);
            if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &one) != 0 {
                return PinnedThread(None);
            }
            PinnedThread(Some(old))
        }
    }
}

impl Drop for PinnedThread {
    fn drop(&mut self) {
        if let Some(old) = &self.0 {
            // SAFETY: as in `to`, with the set read there.
            unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), old) };
        }
    }
}

/// Pauses the sender, lets what is in flight arrive, and reads the guest's counters.
fn pause_quiescent(guest: &mut Guest) -> Result<GuestCounters> {
    guest.command("pause", "paused")?;
    sleep_checked(Duration::from_millis(300))?;
    guest.stats()
}

fn run_one(ctx: &mut Ctx, restart: Restart, flows: u64, rep: u32) -> Result<Run> {
    let o = ctx.o.clone();
    let key = format!("{}_{flows}", restart.name());
    let prefix = format!("vbr{}_{key}_{rep}", std::process::id());
    let run_dir = o.run_base.join(&prefix);
    let _ = std::fs::remove_dir_all(&run_dir);
    std::fs::create_dir_all(&run_dir)?;
    // Declared first, so dropped last: after both vRouters have stopped.
    let _run_dir_guard = RunDir(run_dir.clone());
    let pcap = ctx.pcaps[&flows].clone();
    let topo = VhostTopology {
        path: VPath::VmToVm,
        vm1_socket: ctx.sock_dir.join("vm1.sock"),
        vm2_socket: ctx.sock_dir.join("vm2.sock"),
        queues: 1,
        run_dir: run_dir.clone(),
        file_prefix: prefix.clone(),
        huge: ctx.huge,
        memory_mb: if ctx.huge { 512 } else { 1024 },
        mbufs: 16383,
        main_core: 0,
        forwarding_cores: vec![1],
        forwarding_cpus: None,
        flow: FlowSettings::for_flows(flows),
    };
    let cfg_path = o.out.join(format!("restart_{key}.toml"));
    std::fs::write(&cfg_path, topo.config_toml())?;
    ctx.seq += 1;
    let mut gspec = GuestSpec::blast(
        &o.vm_guest,
        &ctx.sock_dir,
        &pcap,
        1,
        ctx.huge,
        format!("vbrg{}_{}", std::process::id(), ctx.seq),
        o.out.join(format!("guest_{key}_{rep}.log")),
    );
    gspec.rate = o.pps;
    gspec.idle_sleep_us = o.guest_sleep_us;
    gspec.sink_flows = true;
    let pass_ms = flows as f64 / o.pps as f64 * 1e3;
    let mut run = Run { restart: restart.name().into(), flows, rep, offered_pps: o.pps, pass_ms, ..Run::default() };
    let cfg_arg = cfg_path.display().to_string();
    let vr_cmd = |extra: &[&str]| {
        let mut a = vec!["--config".to_string(), cfg_arg.clone()];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let first_args = vr_cmd(&[]);
    let second_args = vr_cmd(if restart == Restart::Takeover { &["--takeover"] } else { &[] });
    run.commands.push(shell_line(&gspec.argv()));
    for a in [&first_args, &second_args] {
        let mut line = vec![o.vrouter.display().to_string()];
        line.extend(a.iter().cloned());
        run.commands.push(shell_line(&line));
    }

    // 1. The guest listens, the vRouter connects; every flow set up; steady forwarding.
    let mut guest = Guest::start(&gspec)?;
    let first_log = o.out.join(format!("vrouter_{key}_{rep}_first.log"));
    let mut first = VrProc::spawn(&o.vrouter, &first_args, &first_log, Some(&prefix))?;
    let start = Duration::from_secs(o.start_timeout);
    let reader = wait_stats(&run_dir, start, || first.check_alive())?;
    guest.expect("ready", start).with_context(|| format!("vRouter log:\n{}", log_tail(&first_log)))?;
    wait_links_up(&reader, &[VM1_VIF, VM2_VIF], start, || first.check_alive())?;
    guest.go()?;
    let t_go = Instant::now();
    let settled =
        wait_flows_set_up(&run_dir, flows, 2 * flows, Duration::from_secs(o.settle_timeout), || first.check_alive())?;
    run.settle_s = (settled - t_go).as_secs_f64();
    sleep_checked(Duration::from_secs_f64(o.steady.max(pass_ms / 1e3 + 1.0)))?;
    first.check_alive()?;
    // Every flow forwards before the restart: one pass with each at the sink.
    guest.command("reset-gap", "reset")?;
    // A busy machine drops frames (the forwarding thread loses its CPU): a flow may need
    // several passes to get one through.
    let pass_timeout = Duration::from_secs_f64(10.0 * pass_ms / 1e3 + 10.0);
    wait_until(pass_timeout, "every flow at the sink before the restart", || {
        first.check_alive()?;
        let g = guest.stats()?;
        Ok((g.sink_flows_seen == Some(flows)).then_some(()))
    })
    .with_context(|| format!("guest: {:?}", guest.stats().ok()))?;

    // 2. The window starts with nothing in flight.
    let g0 = pause_quiescent(&mut guest)?;
    let v0 = VrCounters::read(&reader);
    let t0 = FlowTableReader::open_run_dir(&run_dir)?.stats();
    let a0 = agent::status(&run_dir, Duration::from_secs(30))?;
    let load_a = procfs::loadavg().unwrap_or_default();
    guest.command("resume", "resumed")?;
    let w0 = Instant::now();
    sleep_checked(Duration::from_secs(1))?;
    let first_pid = first.pid().context("running")?;
    let fwd = procfs::threads_named(first_pid, "rte-worker-1")?.first().map(|&tid| (first_pid, tid));
    let ga = guest.command("reset-gap", "reset")?;
    let sa = Sample::of(0, &ga, fwd);
    sleep_checked(Duration::from_secs(1))?;
    let gb = guest.stats()?;
    let sb = Sample::of(0, &gb, fwd);
    run.steady_fwd_cpu_share = fwd_share(&sa, &sb);
    run.steady_steal_jiffies = sb.steal_fwd_cpu - sa.steal_fwd_cpu;
    run.steady_rx_pps = rate(&ga, &gb);
    run.steady_max_gap_us = gb.max_rx_gap_us;
    run.steady_pace_lag_us = gb.pace_max_lag_us;
    first.check_alive()?;

    // 3. The restart.
    let g_trigger = guest.command("reset-gap", "reset")?;
    let trigger = mono_ns();
    let t_trigger = Instant::now();
    let mut kill_reaped: Option<u64> = None;
    let second_log = o.out.join(format!("vrouter_{key}_{rep}_second.log"));
    let mut second = match restart {
        Restart::Takeover => {
            let mut p = VrProc::spawn(&o.vrouter, &second_args, &second_log, None)?;
            // A takeover runs its EAL under a prefix of its own.
            let pid = p.pid().context("just started")?;
            p.add_prefix(format!("{prefix}.t{pid}"));
            p
        }
        Restart::Kill => {
            first.kill()?;
            kill_reaped = Some(mono_ns());
            // The new vRouter starts on what the killed one left, as after a crash.
            first.keep_prefixes();
            VrProc::spawn(&o.vrouter, &second_args, &second_log, Some(&prefix))?
        }
    };
    run.new_spawned_ms = ms_after(trigger, second.started_ns);

    // 4. Until the new vRouter forwards and every flow reached the sink again after the
    //    guest saw its link go down (the old vRouter gone: the sink counts the flows anew
    //    then), the guest's counters sampled every 20 ms. The harness's thread stays on the
    //    CPU of the guest and the vRouters' main threads meanwhile, off the forwarding CPU.
    let pin = PinnedThread::to(0);
    let deadline = t_trigger + Duration::from_secs(o.recover_timeout);
    let mut samples = vec![Sample::of(trigger, &g_trigger, fwd)];
    let gd = loop {
        second.check_alive()?;
        if run.old_clean_exit.is_none() && kill_reaped.is_none() {
            if let Some(st) = first.try_exited()? {
                run.old_clean_exit = Some(st.success());
            }
        }
        sleep_checked(Duration::from_millis(20))?;
        let g = guest.stats()?;
        samples.push(Sample::of(trigger, &g, fwd));
        let lines = parse_new_lines(&second.lines());
        if let Some(l) = &lines.not_reattached {
            bail!("the new vRouter did not reattach the flow table: {l}");
        }
        let went_down = g.link_downs > g_trigger.link_downs;
        // The gap is over, and 40 ms have passed since (the samples bracket it; what the
        // sender's ring held meanwhile has arrived).
        let gap_over = g.link_rx_gap_end_ns > g.last_link_down_ns && g.at_ns >= g.link_rx_gap_end_ns + 40_000_000;
        if went_down && gap_over && lines.forwarding.is_some() && g.sink_flows_seen == Some(flows) {
            break g;
        }
        if Instant::now() > deadline {
            bail!(
                "{} of {flows} flows reached the sink after the gap within {} s of the restart (guest saw its link \
                 go down: {went_down}, new vRouter forwarding: {}); guest {g:?}; new vRouter log:\n{}",
                g.sink_flows_seen.unwrap_or(0),
                o.recover_timeout,
                lines.forwarding.is_some(),
                log_tail(second.log_path())
            );
        }
    };
    drop(pin);
    sleep_checked(Duration::from_secs(2))?;
    second.check_alive()?;
    let gh = guest.stats()?;
    run.rate_after_pps = rate(&gd, &gh);
    if gh.max_rx_gap_us != gd.max_rx_gap_us {
        run.notes.push(format!(
            "a longer sink gap ({} µs) came after every flow was back ({} µs then)",
            gh.max_rx_gap_us, gd.max_rx_gap_us
        ));
    }
    let a1 = agent::status(&run_dir, Duration::from_secs(30))?;
    let t1 = FlowTableReader::open_run_dir(&run_dir)?.stats();
    let g1 = pause_quiescent(&mut guest)?;
    let w1 = Instant::now();
    let v1 = VrCounters::read(&StatsReader::open(&run_dir)?);
    let load_b = procfs::loadavg().unwrap_or_default();
    let new_lines = second.lines();
    let old_lines = first.lines();
    run.new_clean_exit = second.stop();
    run.guest = Some(guest.stop()?);
    drop(first);

    // The window's accounting.
    run.window_s = (w1 - w0).as_secs_f64();
    run.load = (load_a, load_b);
    let d = |a: u64, b: u64| b as i64 - a as i64;
    run.offered = g1.offered - g0.offered;
    run.sent = g1.sent - g0.sent;
    run.tx_dropped = g1.tx_dropped - g0.tx_dropped;
    run.received = g1.sink_received.unwrap_or(0) - g0.sink_received.unwrap_or(0);
    run.lost = run.offered as i64 - run.received as i64;
    run.lost_after_tx = run.sent as i64 - run.received as i64;
    let lost = |a: &GuestCounters, b: &GuestCounters| {
        (b.offered - a.offered) as i64 - (b.sink_received.unwrap_or(0) - a.sink_received.unwrap_or(0)) as i64
    };
    run.lost_before = lost(&g0, &g_trigger);
    run.lost_restart = lost(&g_trigger, &gd);
    run.lost_after = lost(&gd, &g1);
    run.restart_window_ms = ms_after(trigger, gd.at_ns);
    run.lost_ms = run.lost_restart as f64 / o.pps as f64 * 1e3;
    run.counters_continued = v1.rx >= v0.rx && v1.tx >= v0.tx && v1.drops.iter().zip(&v0.drops).all(|(b, a)| b >= a);
    if !run.counters_continued {
        run.notes.push("the vRouter's counters went backwards over the restart: its split of the loss is void".into());
    }
    run.vr_rx = v1.rx.saturating_sub(v0.rx);
    run.vr_tx = v1.tx.saturating_sub(v0.tx);
    let mut drops = [0u64; DROP_REASON_COUNT];
    for (i, x) in drops.iter_mut().enumerate() {
        *x = v1.drops[i].saturating_sub(v0.drops[i]);
    }
    run.vr_drops = drops.iter().sum();
    run.vr_drop_reasons = drop_list(&drops);
    run.not_dequeued = run.sent as i64 - run.vr_rx as i64;
    run.vr_unaccounted = run.vr_rx as i64 - run.vr_tx as i64 - run.vr_drops as i64;
    run.not_delivered = run.vr_tx as i64 - run.received as i64;

    // The gap, the sender's view, the flows.
    run.gap_ms = gd.link_rx_gap_us as f64 / 1e3;
    run.gap_end_ms = ms_after(trigger, gd.link_rx_gap_end_ns);
    run.gap_start_ms = run.gap_end_ms - run.gap_ms;
    run.max_gap_ms = gd.max_rx_gap_us as f64 / 1e3;
    if gd.max_rx_gap_us > gd.link_rx_gap_us {
        run.notes.push(format!(
            "a longer sink gap than the restart's: {:.1} ms, ended {:.1} ms after the trigger",
            run.max_gap_ms,
            ms_after(trigger, gd.max_rx_gap_end_ns)
        ));
    }
    run.tx_stall_ms = gd.max_tx_gap_us as f64 / 1e3;
    run.tx_stall_end_ms = ms_after(trigger, gd.max_tx_gap_end_ns);
    run.pace_lag_ms = gd.pace_max_lag_us as f64 / 1e3;
    if gd.link_downs > g0.link_downs {
        run.guest_link_down_ms = Some(ms_after(trigger, gd.last_link_down_ns));
        run.guest_link_up_ms =
            (gd.last_link_up_ns > gd.last_link_down_ns).then(|| ms_after(trigger, gd.last_link_up_ns));
    }
    run.all_flows_ms = gd.sink_flows_all_ns.filter(|&t| t > 0).map(|t| ms_after(trigger, t));
    run.lost_around_gap = lost_around(&samples, run.gap_start_ms, run.gap_end_ms);
    run.flows_seen = gd.sink_flows_seen.unwrap_or(0);
    // How many flows were back one pass after the gap (a busy machine drops frames in the
    // steady state too: the rest needs more passes).
    run.flows_after_one_pass = samples.iter().find(|s| s.ms >= run.gap_end_ms + pass_ms).map(|s| s.flows_seen);
    run.steady_delivered = if gb.offered > ga.offered {
        (gb.sink_received.unwrap_or(0) - ga.sink_received.unwrap_or(0)) as f64 / (gb.offered - ga.offered) as f64
    } else {
        f64::NAN
    };
    run.flows_reset_ms = ms_after(trigger, gd.last_link_down_ns);

    // The restart's own figures.
    let nl = parse_new_lines(&new_lines);
    match restart {
        Restart::Takeover => {
            let (at, took) = nl.stopped.context("the new vRouter did not say when the old one stopped")?;
            run.old_gone_ms = ms_after(trigger, at);
            run.old_stop_ms = Some(took);
            run.stop_sent_ms = run.old_gone_ms - took;
            run.old_stopping_ms =
                old_lines.iter().find(|l| l.text == "vrouter: stopping").map(|l| ms_after(trigger, l.at_ns));
        }
        Restart::Kill => {
            run.stop_sent_ms = 0.0;
            run.old_gone_ms = ms_after(trigger, kill_reaped.expect("set for a kill"));
        }
    }
    // The old forwarding thread's CPU from the trigger until the stop was sent (takeover:
    // the new vRouter's preparation).
    let prep_end = samples.iter().rev().find(|s| s.ms <= run.stop_sent_ms && s.old_fwd_cpu_ms.is_some());
    if let Some(last) = prep_end.filter(|_| restart == Restart::Takeover) {
        run.prep_fwd_cpu_share = fwd_share(&samples[0], last);
        run.prep_steal_jiffies = last.steal_fwd_cpu - samples[0].steal_fwd_cpu;
        run.lost_prep = Some((last.offered - samples[0].offered) as i64 - (last.received - samples[0].received) as i64);
    }
    run.samples = samples;
    let (at, scan, kept) = nl.reattached.context("the new vRouter did not say that it reattached the table")?;
    run.reattached_ms = ms_after(trigger, at);
    run.reattach_scan_ms = scan;
    run.flows_kept = kept;
    run.forwarding_ms = ms_after(trigger, nl.forwarding.context("no `forwarding on` line")?);
    if let Some((at, ms, n)) = nl.adopted {
        run.adopted_line_ms = Some(ms_after(trigger, at));
        run.adopt_ms = Some(ms);
        run.adopted = n;
    }
    run.new_lines = new_lines
        .iter()
        .filter(|l| l.text.starts_with("vrouter"))
        .map(|l| format!("{:+.1} ms {}", ms_after(trigger, l.at_ns), l.text))
        .collect();
    run.old_lines = old_lines
        .iter()
        .filter(|l| l.at_ns >= trigger)
        .map(|l| format!("{:+.1} ms {}", ms_after(trigger, l.at_ns), l.text))
        .collect();

    // No flow set up again.
    let counter = |s: &agent::AgentStatus, k: &str| s.counters.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
    run.setups_after = a1.setups;
    run.table_created_delta = d(t0.created, t1.created);
    run.table_added_delta = d(t0.added, t1.added);
    run.audited_or_denied = ["hold_audited", "setup_denied"].iter().map(|k| counter(&a0, k) + counter(&a1, k)).sum();
    let adopted = counter(&a1, "adopted");
    if adopted != run.adopted {
        run.notes.push(format!("the agent's adopted counter is {adopted}, its line said {}", run.adopted));
    }
    run.no_new_setup = run.setups_after == 0
        && run.table_created_delta == 0
        && run.table_added_delta == 0
        && run.adopted >= 2 * flows
        && run.flows_kept >= 2 * flows;
    if run.flows_seen < flows {
        run.notes.push(format!("only {} of {flows} flows reached the sink after the gap", run.flows_seen));
    }
    Ok(run)
}

/// Medians over the successful runs of one restart at one flow count.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// `takeover` or `kill`.
    pub restart: String,
    /// Flows.
    pub flows: u64,
    /// Successful runs.
    pub runs: usize,
    /// Offered frames per second.
    pub offered_pps: u64,
    /// Median packets lost from the trigger until every flow was back.
    pub lost: f64,
    /// Median `lost` as time at the offered rate, ms.
    pub lost_ms: f64,
    /// Median loss between the samples around the gap.
    pub lost_around_gap: f64,
    /// Median loss in the steady state before the trigger (about 2 s).
    pub lost_before: f64,
    /// Median loss over the whole window.
    pub lost_window: f64,
    /// Median frames the sender's ring refused.
    pub tx_dropped: f64,
    /// Median forwarding gap, ms.
    pub gap_ms: f64,
    /// Median gap start, ms after the trigger.
    pub gap_start_ms: f64,
    /// Median gap end, ms after the trigger.
    pub gap_end_ms: f64,
    /// Median time until every flow reached the sink again, ms after the trigger.
    pub all_flows_ms: f64,
    /// One pass over the flows, ms.
    pub pass_ms: f64,
    /// Median share of the flows back one pass after the gap.
    pub flows_one_pass_share: f64,
    /// Median share of the offered frames delivered in the steady state.
    pub steady_delivered: f64,
    /// Median steady-state gap, ms.
    pub steady_gap_ms: f64,
    /// Median SIGTERM (takeover) time, ms after the trigger.
    pub stop_sent_ms: f64,
    /// Median old-gone time, ms after the trigger.
    pub old_gone_ms: f64,
    /// Median `reattached` line, ms after the trigger.
    pub reattached_ms: f64,
    /// Median reattach scan, ms.
    pub reattach_scan_ms: f64,
    /// Median `forwarding on` line, ms after the trigger.
    pub forwarding_ms: f64,
    /// Median adoption, ms.
    pub adopt_ms: f64,
    /// Median sink rate after recovery, frames/s.
    pub rate_after_pps: f64,
    /// Largest number of flows set up again over the runs (agent setups, table created/added).
    pub max_new_setups: i64,
    /// Every run: no new setup, every entry adopted.
    pub no_new_setup: bool,
    /// Every run's (gap ms, packets lost in the restart).
    pub per_run: Vec<(f64, i64)>,
}

/// The rows, in the order the runs came.
pub fn rows(runs: &[Run]) -> Vec<Row> {
    let mut keys: Vec<(String, u64)> = Vec::new();
    for r in runs {
        if !keys.contains(&(r.restart.clone(), r.flows)) {
            keys.push((r.restart.clone(), r.flows));
        }
    }
    keys.into_iter()
        .map(|(restart, flows)| {
            let ok: Vec<&Run> =
                runs.iter().filter(|r| r.restart == restart && r.flows == flows && r.error.is_none()).collect();
            let m = |f: &dyn Fn(&Run) -> f64| median(&ok.iter().map(|r| f(r)).collect::<Vec<_>>());
            let mo = |f: &dyn Fn(&Run) -> Option<f64>| median(&ok.iter().filter_map(|r| f(r)).collect::<Vec<_>>());
            Row {
                restart,
                flows,
                runs: ok.len(),
                offered_pps: ok.first().map_or(0, |r| r.offered_pps),
                lost: m(&|r| r.lost_restart as f64),
                lost_ms: m(&|r| r.lost_ms),
                lost_around_gap: mo(&|r| r.lost_around_gap.map(|x| x as f64)),
                lost_before: m(&|r| r.lost_before as f64),
                lost_window: m(&|r| r.lost as f64),
                tx_dropped: m(&|r| r.tx_dropped as f64),
                gap_ms: m(&|r| r.gap_ms),
                gap_start_ms: m(&|r| r.gap_start_ms),
                gap_end_ms: m(&|r| r.gap_end_ms),
                all_flows_ms: mo(&|r| r.all_flows_ms),
                pass_ms: m(&|r| r.pass_ms),
                flows_one_pass_share: mo(&|r| r.flows_after_one_pass.map(|n| n as f64 / r.flows as f64)),
                steady_delivered: m(&|r| r.steady_delivered),
                steady_gap_ms: m(&|r| r.steady_max_gap_us as f64 / 1e3),
                stop_sent_ms: m(&|r| r.stop_sent_ms),
                old_gone_ms: m(&|r| r.old_gone_ms),
                reattached_ms: m(&|r| r.reattached_ms),
                reattach_scan_ms: m(&|r| r.reattach_scan_ms),
                forwarding_ms: m(&|r| r.forwarding_ms),
                adopt_ms: mo(&|r| r.adopt_ms),
                rate_after_pps: m(&|r| r.rate_after_pps),
                max_new_setups: ok
                    .iter()
                    .map(|r| (r.setups_after as i64).max(r.table_created_delta).max(r.table_added_delta))
                    .max()
                    .unwrap_or(0),
                no_new_setup: !ok.is_empty() && ok.iter().all(|r| r.no_new_setup),
                per_run: ok.iter().map(|r| (r.gap_ms, r.lost_restart)).collect(),
            }
        })
        .collect()
}

fn f1(x: f64) -> String {
    if x.is_nan() {
        "-".into()
    } else {
        format!("{x:.1}")
    }
}

fn label(restart: &str) -> &'static str {
    match restart {
        "takeover" => Restart::Takeover.label(),
        _ => Restart::Kill.label(),
    }
}

fn flows_label(n: u64) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1000 && n % 1000 == 0 => format!("{}k", n / 1000),
        n => n.to_string(),
    }
}

/// The results table and the table of where the gap goes (markdown).
pub fn tables(rows: &[Row]) -> String {
    let n0 = |x: f64| if x.is_nan() { "-".into() } else { format!("{x:.0}") };
    let mut s = String::from(
        "| restart | flows | runs | packets lost (trigger -> every flow back) | of which around the gap | = ms of \
         offered load | forwarding gap, ms | gap, ms after the trigger | every flow forwarded again, ms after the \
         trigger (one pass) | flows back one pass after the gap | flows set up again | lost in 2 s of steady \
         state before (steady delivery) | sink rate after, kpps | runs: gap ms (lost) |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | **{}** | {} .. {} | {} ({}) | {} | {} | {} ({}) | {} | {} |\n",
            label(&r.restart),
            flows_label(r.flows),
            r.runs,
            n0(r.lost),
            n0(r.lost_around_gap),
            f1(r.lost_ms),
            f1(r.gap_ms),
            f1(r.gap_start_ms),
            f1(r.gap_end_ms),
            f1(r.all_flows_ms),
            f1(r.pass_ms),
            if r.flows_one_pass_share.is_nan() {
                "-".into()
            } else {
                format!("{:.1} %", 100.0 * r.flows_one_pass_share)
            },
            if r.runs == 0 {
                "-".into()
            } else if r.no_new_setup {
                "0".into()
            } else {
                format!("{} (NOT all adopted / set up again)", r.max_new_setups)
            },
            n0(r.lost_before),
            if r.steady_delivered.is_nan() { "-".into() } else { format!("{:.1} %", 100.0 * r.steady_delivered) },
            f1(r.rate_after_pps / 1e3),
            r.per_run.iter().map(|(g, l)| format!("{g:.1} ({l})")).collect::<Vec<_>>().join(" / "),
        ));
    }
    s.push_str(
        "\nWhere the gap goes (medians, ms after the trigger; the gap is the sink's):\n\n\
         | restart | flows | old vRouter stopped: signal -> gone | gap starts | new vRouter: reattached line (scan) | \
         forwarding on line | gap ends (first frame at the sink) | agent adoption (after forwarding starts) |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {} -> {} | {} | {} ({}) | {} | {} | {} |\n",
            label(&r.restart),
            flows_label(r.flows),
            f1(r.stop_sent_ms),
            f1(r.old_gone_ms),
            f1(r.gap_start_ms),
            f1(r.reattached_ms),
            f1(r.reattach_scan_ms),
            f1(r.forwarding_ms),
            f1(r.gap_end_ms),
            f1(r.adopt_ms),
        ));
    }
    s
}

fn print_run(r: &Run) {
    match &r.error {
        Some(e) => println!("{} {} flows rep {}: FAILED: {e}", r.restart, r.flows, r.rep),
        None => {
            println!(
                "{} {} flows rep {}: lost {} in the restart ({:.1} ms of load; {} around the gap; {} before, {} after; \
                 window: ring refused {}, not dequeued {}, vRouter drops {}, unaccounted {}, not delivered {}), gap {:.1} ms ({:.1} .. {:.1} after the trigger; steady {:.2} ms), \
                 every flow again at {} ms (pass {:.0} ms), sender stall {:.1} ms lag {:.1} ms; old stop signalled \
                 {:.1} gone {:.1}, reattached {:.1} (scan {:.1}, {} kept), forwarding {:.1}, adopted {} in {} ms; \
                 setups after {}, table created/added {:+}/{:+}; rate before {:.0} after {:.0} pps; load {:.2}",
                r.restart,
                r.flows,
                r.rep,
                r.lost_restart,
                r.lost_ms,
                r.lost_around_gap.map_or("-".into(), |x| x.to_string()),
                r.lost_before,
                r.lost_after,
                r.tx_dropped,
                r.not_dequeued,
                r.vr_drops,
                r.vr_unaccounted,
                r.not_delivered,
                r.gap_ms,
                r.gap_start_ms,
                r.gap_end_ms,
                r.steady_max_gap_us as f64 / 1e3,
                r.all_flows_ms.map_or("-".into(), |x| format!("{x:.1}")),
                r.pass_ms,
                r.tx_stall_ms,
                r.pace_lag_ms,
                r.stop_sent_ms,
                r.old_gone_ms,
                r.reattached_ms,
                r.reattach_scan_ms,
                r.flows_kept,
                r.forwarding_ms,
                r.adopted,
                r.adopt_ms.map_or("-".into(), |x| format!("{x:.0}")),
                r.setups_after,
                r.table_created_delta,
                r.table_added_delta,
                r.steady_rx_pps,
                r.rate_after_pps,
                r.load.0[0],
            );
            println!(
                "    old forwarding thread's CPU share: steady {} (steal {} jiffies), while the takeover prepared {} \
                 (steal {} jiffies, lost {})",
                r.steady_fwd_cpu_share.map_or("-".into(), |x| format!("{x:.2}")),
                r.steady_steal_jiffies,
                r.prep_fwd_cpu_share.map_or("-".into(), |x| format!("{x:.2}")),
                r.prep_steal_jiffies,
                r.lost_prep.map_or("-".into(), |x| x.to_string()),
            );
            for d in r.vr_drop_reasons.iter().take(4) {
                println!("    drop {:<24} {}", d.reason, d.packets);
            }
            for n in &r.notes {
                println!("    note: {n}");
            }
        }
    }
}

#[derive(Serialize)]
struct Doc<'a> {
    tool: &'static str,
    mode: &'static str,
    started_unix: u64,
    finished_unix: u64,
    argv: &'a [String],
    git_rev: &'a str,
    flows: &'a [u64],
    restarts: &'a [Restart],
    offered_pps: u64,
    reps: u32,
    guest_sleep_us: u64,
    hugepages: &'a Outcome,
    lscpu: &'a str,
    machine: crate::Machine,
    method: &'static str,
    table: &'a [Row],
    runs: &'a [Run],
    notes: &'a [String],
}

const METHOD: &str = "Steady offered load: one frame per flow, round after round, at --pps from a fixed schedule \
(vm-guest --blast --rate; frames its full ring refuses are dropped and counted). Window: from a quiescent point \
before the restart (sender paused, counters read, resumed) to a quiescent point after every flow was back. Packets \
lost = offered - received by the sink, from the trigger until every flow was back (split: before, around the gap, \
after). Forwarding gap = from the sink's last frame before the guest saw its link go down (the old vRouter gone) to \
its first frame after. Every flow forwarded again = the time the last flow of the pcap reached the sink after the \
link went down. \
Times are CLOCK_MONOTONIC, from the trigger (takeover: the new vRouter started; kill: SIGKILL sent); the vRouters' \
lines are time-stamped when the harness read them.";

/// 2 MiB pages a run needs: the flow table of the largest flow count, two vRouters' DPDK
/// memory (a takeover's EAL starts before the old one stops) and the guest's, plus room.
pub fn pages_needed(max_flows: u64) -> u64 {
    let table = FlowSettings::for_flows(max_flows).table_bytes().div_ceil(2 << 20);
    table + 2 * 512 / 2 + 256 / 2 + 64
}

/// Runs the whole benchmark.
pub fn run(o: Opts, argv: Vec<String>) -> Result<()> {
    let started = now_unix();
    let load_start = procfs::loadavg().unwrap_or_default();
    std::fs::create_dir_all(&o.out)?;
    std::fs::create_dir_all(&o.run_base)?;
    if !o.vm_guest.is_file() {
        bail!("{} not found: cargo build --release -p vrouter (or --vm-guest PATH)", o.vm_guest.display());
    }
    if !o.vrouter.is_file() {
        bail!("{} not found: cargo build --release -p vrouter (or --vrouter PATH)", o.vrouter.display());
    }
    if o.pps == 0 || o.restarts.is_empty() {
        bail!("--pps must be > 0 and --restarts name at least one restart");
    }
    let mut notes: Vec<String> = Vec::new();
    let mut commands = Vec::new();
    let mut pcaps = BTreeMap::new();
    for &n in &o.flows {
        pcaps.insert(n, pcap::ensure_flows_pcap_once(&o.out, &o.shared, n, &mut commands)?);
    }
    let sock_dir = PathBuf::from(format!("/tmp/vbr{}", std::process::id()));
    std::fs::create_dir_all(&sock_dir)?;
    let mut huge = Reservation::take(o.hugepages, &o.out.join("hugetlbfs"), o.setup_script.as_deref());
    if let Some(why) = &huge.outcome.fallback_reason {
        if o.require_huge {
            bail!("--huge: no hugepages for the run: {why}");
        }
        notes.push(format!("running with --no-huge: {why}"));
        println!("# NOTE: running with --no-huge: {why}");
    }
    let (lscpu, model) = crate::lscpu();
    let mut ctx = Ctx { pcaps, huge: huge.outcome.huge, sock_dir: sock_dir.clone(), seq: 0, o };
    println!(
        "# vrouter-bench --restart: flows {:?}, restarts {:?}, {} frames/s offered, {} reps, hugepages {} ({:?}), \
         CPU {model:?}, load {load_start:?}, rev {}",
        ctx.o.flows,
        ctx.o.restarts.iter().map(|r| r.name()).collect::<Vec<_>>(),
        ctx.o.pps,
        ctx.o.reps,
        ctx.huge,
        huge.outcome.mount,
        ctx.o.rev
    );
    let mut runs: Vec<Run> = Vec::new();
    let write_json = |runs: &[Run], notes: &[String], huge: &Outcome, ctx: &Ctx| -> Result<Vec<Row>> {
        let rows = rows(runs);
        let doc = Doc {
            tool: "vrouter-bench",
            mode: "restart",
            started_unix: started,
            finished_unix: now_unix(),
            argv: &argv,
            git_rev: &ctx.o.rev,
            flows: &ctx.o.flows,
            restarts: &ctx.o.restarts,
            offered_pps: ctx.o.pps,
            reps: ctx.o.reps,
            guest_sleep_us: ctx.o.guest_sleep_us,
            hugepages: huge,
            lscpu: &lscpu,
            machine: crate::machine(load_start),
            method: METHOD,
            table: &rows,
            runs,
            notes,
        };
        std::fs::write(ctx.o.out.join("restart_results.json"), serde_json::to_string_pretty(&doc)?)?;
        Ok(rows)
    };
    'all: for flows in ctx.o.flows.clone() {
        for rep in 1..=ctx.o.reps {
            for restart in ctx.o.restarts.clone() {
                println!(
                    "\n## {} {flows} flows rep {rep} (load {:?})",
                    restart.name(),
                    procfs::loadavg().unwrap_or_default()
                );
                let r = run_one(&mut ctx, restart, flows, rep).unwrap_or_else(|e| Run {
                    restart: restart.name().into(),
                    flows,
                    rep,
                    error: Some(format!("{e:#}")),
                    ..Run::default()
                });
                print_run(&r);
                runs.push(r);
                write_json(&runs, &notes, &huge.outcome, &ctx)?;
                if interrupted() {
                    break 'all;
                }
            }
        }
    }
    huge.release();
    let _ = std::fs::remove_dir_all(&sock_dir);
    let rows = write_json(&runs, &notes, &huge.outcome, &ctx)?;
    let mut text = format!(
        "# vrouter-bench --restart: {} frames/s offered (64-byte UDP, one frame per flow per pass), VM -> VM over \
         vhost-user, medians of {} reps; CPU: {model}; hugepages: {}; rev {}\n# load average at start {:?}, at end \
         {:?}\n# {METHOD}\n\n{}",
        ctx.o.pps,
        ctx.o.reps,
        if ctx.huge { "yes (2 MiB)" } else { "no (--no-huge)" },
        ctx.o.rev,
        load_start,
        procfs::loadavg().unwrap_or_default(),
        tables(&rows)
    );
    for r in runs.iter().filter(|r| r.error.is_some()) {
        text.push_str(&format!(
            "\nFailed: {} {} flows rep {}: {}",
            r.restart,
            r.flows,
            r.rep,
            r.error.as_deref().unwrap_or_default().lines().next().unwrap_or_default()
        ));
    }
    for n in &notes {
        text.push_str(&format!("\nNote: {n}"));
    }
    text.push_str(&format!("\n\nCommand: {}\n", shell_line(&argv)));
    for c in &commands {
        text.push_str(&format!("Pcap: {c}\n"));
    }
    println!("\n{text}");
    std::fs::write(ctx.o.out.join("restart_table.md"), &text)?;
    println!(
        "Written: {} (tables), {} (every run, its lines and counters)",
        ctx.o.out.join("restart_table.md").display(),
        ctx.o.out.join("restart_results.json").display()
    );
    if interrupted() {
        bail!("interrupted");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vhost_run::Line;

    #[test]
    fn numbers_in_the_vrouters_lines() {
        assert_eq!(
            number_after("vrouter: the previous vRouter (pid 42) stopped in 187 ms", ") stopped in "),
            Some(187.0)
        );
        assert_eq!(ms_at_end("x reattached: 2000 flows kept (0 in HOLD set up again), ... in 12.5 ms"), Some(12.5));
        assert_eq!(ms_at_end("agent: adopted 2000 flows of the reattached table in 3 ms (x)"), None);
        assert_eq!(number_after("no number here", "here"), None);
        let line = |ms: u64, text: &str| Line { at_ns: ms * 1_000_000, text: text.into() };
        let lines = [
            line(1, "vrouter: taking over from the running vRouter pid 7"),
            line(300, "vrouter: the previous vRouter (pid 7) stopped in 120 ms"),
            line(
                320,
                "vrouter: flow table /dev/hugepages/f reattached: 2000 flows kept (0 in HOLD set up again), 0 retired \
                 awaiting reclaim, repaired: 0 torn, 0 unpublished, 0 inconsistent, 0 reverse links cleared, in 4.2 ms",
            ),
            line(
                330,
                "vrouter: agent: adopted 2000 flows of the reattached table (0 actions changed by re-evaluation, 0 HOLD \
                 flows set up again) in 6 ms",
            ),
            line(400, "vrouter: forwarding on 1 lcore(s) [1], 3 vif(s); stats in /x"),
            line(500, "vrouter: forwarding on nothing: a second line is not the first"),
        ];
        let n = parse_new_lines(&lines);
        assert_eq!(
            n,
            NewLines {
                stopped: Some((300_000_000, 120.0)),
                reattached: Some((320_000_000, 4.2, 2000)),
                not_reattached: None,
                forwarding: Some(400_000_000),
                adopted: Some((330_000_000, 6.0, 2000)),
            }
        );
        let fresh = parse_new_lines(&[line(
            5,
            "vrouter: the previous flow table was not reattached (layout 3, expected 4); old file kept at /x; starting \
             with an empty table",
        )]);
        assert!(fresh.not_reattached.is_some() && fresh.reattached.is_none());
        assert_eq!(ms_after(1_000_000, 3_500_000), 2.5);
        assert_eq!(ms_after(3_000_000, 1_000_000), -2.0);
    }

    fn run(restart: &str, flows: u64, rep: u32, gap: f64, lost: i64) -> Run {
        Run {
            restart: restart.into(),
            flows,
            rep,
            gap_ms: gap,
            lost,
            lost_restart: lost,
            lost_ms: lost as f64 / 200.0,
            all_flows_ms: Some(gap + 10.0),
            adopt_ms: None,
            no_new_setup: true,
            offered_pps: 200_000,
            ..Run::default()
        }
    }

    #[test]
    fn rows_and_tables() {
        let runs = vec![
            run("takeover", 1000, 1, 30.0, 6000),
            run("kill", 1000, 1, 900.0, 180_000),
            run("takeover", 1000, 2, 10.0, 2000),
            run("kill", 1000, 2, 700.0, 140_000),
            run("takeover", 1000, 3, 20.0, 4000),
            Run { error: Some("boom".into()), ..run("kill", 1000, 3, 1.0, 1) },
            Run { no_new_setup: false, setups_after: 5, ..run("kill", 1_000_000, 1, 1000.0, 200_000) },
        ];
        let r = rows(&runs);
        assert_eq!(r.len(), 3);
        assert_eq!((r[0].restart.as_str(), r[0].runs, r[0].gap_ms, r[0].lost), ("takeover", 3, 20.0, 4000.0));
        assert_eq!(r[0].per_run, vec![(30.0, 6000), (10.0, 2000), (20.0, 4000)]);
        assert_eq!((r[1].runs, r[1].gap_ms), (2, 800.0), "the failed run is left out");
        assert!(r[0].adopt_ms.is_nan(), "no adoption figure: no median");
        assert!(r[0].no_new_setup && !r[2].no_new_setup);
        assert_eq!(r[2].max_new_setups, 5);
        let t = tables(&r);
        assert!(t.contains("| planned takeover | 1k | 3 | 4000 | - | 20.0 | **20.0** |"), "{t}");
        assert!(t.contains("(0.0) | - | 0 | 0 (0.0 %) |"), "{t}");
        assert!(t.contains("| SIGKILL + start | 1M | 1 | 200000 |"), "{t}");
        assert!(t.contains("5 (NOT all adopted / set up again)"), "{t}");
        assert!(t.contains("30.0 (6000) / 10.0 (2000) / 20.0 (4000)"), "{t}");
        assert_eq!(flows_label(1_000_000), "1M");
        assert_eq!(flows_label(65536), "65536");
    }

    #[test]
    fn loss_around_the_gap_and_rates() {
        let s = |ms: f64, offered: u64, received: u64| Sample {
            ms,
            offered,
            tx_dropped: 0,
            received,
            old_fwd_cpu_ms: Some(ms / 2.0),
            steal_fwd_cpu: 0,
            flows_seen: 0,
        };
        let samples =
            [s(0.0, 0, 0), s(20.0, 4000, 4000), s(40.0, 8000, 7000), s(60.0, 12000, 7000), s(85.0, 17000, 11900)];
        // Gap from 30 to 62 ms: from the sample at 20 to the first 20 ms after 62 (85).
        assert_eq!(lost_around(&samples, 30.0, 62.0), Some((17000 - 4000) - (11900 - 4000)));
        assert_eq!(lost_around(&samples, 30.0, 70.0), None, "no sample 20 ms after the gap yet");
        assert_eq!(lost_around(&samples, -0.5, 30.0), Some((12000 - 7000) as i64), "a gap from the trigger");
        let g = |at_ns: u64, rx: u64| GuestCounters { at_ns, sink_received: Some(rx), ..GuestCounters::default() };
        assert_eq!(rate(&g(1_000_000_000, 100), &g(3_000_000_000, 400_100)), 200_000.0);
        assert_eq!(rate(&g(5, 0), &g(5, 9)), 0.0);
        assert_eq!(fwd_share(&samples[0], &samples[2]), Some(0.5));
        let gone = Sample { old_fwd_cpu_ms: None, ..samples[3] };
        assert_eq!(fwd_share(&samples[0], &gone), None);
    }

    #[test]
    fn pages_cover_the_table_and_two_vrouters() {
        let small = pages_needed(1000);
        assert!(small > 2 * 256 && small < 1000, "{small}");
        let big = pages_needed(1_000_000);
        // 4M entries of 128 B and the overflow area: more than 256 pages for the table alone.
        assert!(big > small + 256, "{big}");
    }
}
