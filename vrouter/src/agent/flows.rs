//! The agent thread: flow setup, aging, TCP eviction, HOLD audit and the control socket.
//!
//! It runs inside the vrouter process next to the forwarding lcores (not pinned, not on a
//! forwarding core). Forwarding lcores create flows in HOLD and push a [`SetupRequest`] on
//! their own single-producer ring; the agent drains every ring, evaluates policy
//! ([`PolicyEngine`]), creates the reverse flow, programs both (action, drop reason, mirror
//! indices) and remembers the rule UUIDs and names for export. The lcores see the new action
//! on their next poll and release their held packets in order.
//!
//! Housekeeping runs every `SCAN_INTERVAL`: idle pairs (both directions idle for the age
//! timeout) are deleted, TCP pairs that saw FIN both ways or a RST are evicted after a short
//! grace period, flows stuck in HOLD longer than the audit time become short DROP flows with
//! drop reason `Audit` (their held packets are released as drops), and delete-marked slots
//! are reclaimed once every lcore has passed a quiescent point.

use crate::agent::policy::{PolicyAction, PolicyEngine};
use crate::agent::request::SetupRequest;
use crate::agent::setup::{self, flow_update, Setup};
use crate::agent::wake::{AgentWake, Mailbox};
use crate::config;
use crate::control::program::{ChangedPrefixes, FlowJob, FlowWork, Programmer};
use crate::control::protocol::{self, AgentCommand, Target};
use crate::fib::publish::FibCell;
use crate::fib::Fib;
use crate::spsc::{Consumer, Producer};
use flow_table::{tcp_flags, Action, FlowKey, FlowTable, FlowUpdate, Gen, FLOW_DR_AUDIT_ENTRY};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the housekeeping scan runs.
const SCAN_INTERVAL: Duration = Duration::from_millis(100);
/// Longest wait of the control socket's accept loop in poll(2) (a safety net: the agent
/// connects to end it at stop).
const ACCEPT_WAIT: Duration = Duration::from_secs(1);
/// Idle loops with short sleeps (10, 20, .. 100 us: 550 us in all) before the agent sleeps
/// until woken.
const IDLE_BACKOFF: u32 = 10;
/// Longest full sweep of the table: a flow stuck in HOLD is audited at most this long after
/// `hold_audit_s` (tf's audit sweeps the table in 180 s).
const MAX_SWEEP_MS: u64 = 30_000;
/// Fewest entries the housekeeping scan visits per tick (tf kMinFlowsPerTimer).
const MIN_SCAN_SLICE: u64 = 3000;
/// Setup requests taken from a ring at once (their cache misses overlap).
const SETUP_BATCH: usize = 32;
/// Grace period before a closed TCP pair is evicted (lets the last ACK through).
const TCP_CLOSE_GRACE_MS: u64 = 1000;

/// Agent-side knowledge of a flow that the shared table does not hold (for export and
/// introspection): what decided it and where it came from. Built on demand from the
/// agent's compact per-flow slot and its interned [`FlowVerdict`].
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct FlowMeta {
    /// Generation of the flow index the state belongs to (a reused index has another).
    pub gen: Gen,
    /// FlowLogData `action` string of the decision, e.g. `pass`, `deny`, `pass|log|mirror`.
    pub action: &'static str,
    /// UUID of the network policy rule that decided the flow (tf `nw_ace_uuid`), if any.
    pub nw_ace_uuid: Option<Arc<str>>,
    /// UUID of the security group rule that decided the flow (tf `sg_rule_uuid`), if any.
    pub sg_rule_uuid: Option<Arc<str>>,
    /// VN of this flow's source (for a reverse flow, the forward flow's destination VN).
    pub src_vn: Option<Arc<str>>,
    /// VN of this flow's destination (for a reverse flow, the forward flow's source VN).
    pub dst_vn: Option<Arc<str>>,
    /// Names of the analyzers the flow is mirrored to: primary, then secondary.
    pub analyzers: [Option<Arc<str>>; 2],
    /// The vif the forward flow's first packet entered on (the same for both flows of a pair).
    pub vif: u16,
    /// Whether this is the reverse flow of a pair (created by the agent, not by a packet miss).
    pub reverse: bool,
}

/// What decided a flow and between which VNs. Shared by every flow with the same decision
/// (interned by [`Verdicts`]): a setup allocates nothing, clones no `Arc`, and a flow
/// costs the agent one 12-byte [`MetaSlot`].
#[derive(Debug, Clone, Default)]
pub struct FlowVerdict {
    /// FlowLogData `action` string of the decision, e.g. `pass`, `deny`, `pass|log|mirror`.
    pub action: &'static str,
    /// UUID of the network policy rule that decided the flow (tf `nw_ace_uuid`), if any.
    pub nw_ace_uuid: Option<Arc<str>>,
    /// UUID of the security group rule that decided the flow (tf `sg_rule_uuid`), if any.
    pub sg_rule_uuid: Option<Arc<str>>,
    /// VN of the flow's source, as evaluated.
    pub src_vn: Option<Arc<str>>,
    /// VN of the flow's destination, as evaluated.
    pub dst_vn: Option<Arc<str>>,
    /// Names of the analyzers the flow is mirrored to: primary, then secondary.
    pub analyzers: [Option<Arc<str>>; 2],
}

/// Identity of a verdict: the addresses of its strings. Every string comes from the policy
/// engine or the FIB, which hand out clones of the same `Arc`s, and an interned verdict
/// keeps its `Arc`s alive, so equal addresses mean equal strings for as long as it lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct VerdictKey([usize; 7]);

impl std::hash::Hash for VerdictKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let mut h = 0u64;
        for &w in &self.0 {
            h = (h ^ w as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
        }
        state.write_u64(h);
    }
}

/// Interned verdicts, indexed from 1 (0 in a [`MetaSlot`] = no agent state).
#[derive(Default)]
struct Verdicts {
    list: Vec<FlowVerdict>,
    index: crate::fib::lpm::IntMap<VerdictKey, u32>,
}

fn arc_addr(a: &Option<Arc<str>>) -> usize {
    a.as_ref().map_or(0, |a| Arc::as_ptr(a) as *const u8 as usize)
}

impl Verdicts {
    /// The id of the verdict made of these parts, interning it (cloning the `Arc`s) the
    /// first time only.
    #[allow(clippy::too_many_arguments)]
    fn intern(
        &mut self,
        action: &'static str,
        nw_ace_uuid: &Option<Arc<str>>,
        sg_rule_uuid: &Option<Arc<str>>,
        src_vn: &Option<Arc<str>>,
        dst_vn: &Option<Arc<str>>,
        analyzers: &[Option<Arc<str>>; 2],
    ) -> u32 {
        let key = VerdictKey([
            action.as_ptr() as usize ^ (action.len() << 48),
            arc_addr(nw_ace_uuid),
            arc_addr(sg_rule_uuid),
            arc_addr(src_vn),
            arc_addr(dst_vn),
            arc_addr(&analyzers[0]),
            arc_addr(&analyzers[1]),
        ]);
        if let Some(&id) = self.index.get(&key) {
            return id;
        }
        self.list.push(FlowVerdict {
            action,
            nw_ace_uuid: nw_ace_uuid.clone(),
            sg_rule_uuid: sg_rule_uuid.clone(),
            src_vn: src_vn.clone(),
            dst_vn: dst_vn.clone(),
            analyzers: analyzers.clone(),
        });
        let id = self.list.len() as u32;
        self.index.insert(key, id);
        id
    }

    fn get(&self, id: u32) -> Option<&FlowVerdict> {
        self.list.get((id as usize).wrapping_sub(1))
    }
}

/// The agent's state of one flow index (16 bytes).
#[derive(Debug, Clone, Copy, Default)]
struct MetaSlot {
    /// Interned verdict id; 0 = no state.
    verdict: u32,
    gen: Gen,
    vif: u16,
    reverse: bool,
    /// Position + 1 of a forward flow in [`Agent::forward`] (0: not there).
    fwd: u32,
}

/// A forward flow the agent set up, with its key: what a re-evaluation selects on
/// ([`Agent::reevaluate`]) without reading the table. The entry's first cache line holds the
/// key next to the packet counter the owner lcore writes per packet; reading every entry per
/// route request (as a scan of the table would) takes those lines from the lcores, which
/// then miss on their next packet of every flow.
#[derive(Debug, Clone, Copy)]
struct ForwardFlow {
    idx: u32,
    key: FlowKey,
}

/// Counters of the agent, exposed through the control socket (`status`); declared in
/// `vrouter-abi` with their help texts, which the tools and the Prometheus exporter show.
pub use vrouter_abi::agent::AgentCounters;

/// What the agent is started with: aging, audit and eviction settings, paths, TSC frequency.
pub struct AgentSettings {
    /// Idle time (both directions) after which a flow pair is deleted, in ms
    /// (`flow.age_timeout_s`).
    pub age_timeout_ms: u64,
    /// Time a flow may stay in HOLD before the audit makes it DROP, in ms (`flow.hold_audit_s`).
    pub hold_audit_ms: u64,
    /// Evict TCP pairs once both sides sent FIN or one sent RST (`flow.tcp_close_evict`).
    pub tcp_close_evict: bool,
    /// The configuration file, re-read on `reload`.
    pub config_path: PathBuf,
    /// The control socket path (created with mode 0600).
    pub control_path: PathBuf,
    /// Frequency of the counter the forwarding lcores stamp setup requests with (the data
    /// plane's TSC frequency), for the setup latency.
    pub tsc_hz: u64,
}

/// The agent thread's state: flow setup from the lcores' rings, housekeeping, the control socket.
pub struct Agent {
    table: Arc<FlowTable>,
    fib: Arc<Fib>,
    /// Generation of `fib` in `cell`.
    fib_generation: u64,
    policy: PolicyEngine,
    rings: Vec<Consumer<SetupRequest>>,
    /// Per lcore: flows set up, so the lcore releases their held packets at once.
    done: Vec<Producer<u32>>,
    settings: AgentSettings,
    /// Indexed by flow index (sized to the table: no growth, no rehashing as it fills).
    meta: Vec<MetaSlot>,
    /// The forward flows with state in `meta` (at most one per index; an entry whose flow
    /// was deleted without the agent, e.g. evicted, stays until its index is set up again,
    /// and is skipped by its generation).
    forward: Vec<ForwardFlow>,
    verdicts: Verdicts,
    /// Next flow index the sliced housekeeping scan visits.
    scan_cursor: u32,
    counters: AgentCounters,
    /// Setup latency (TSC ticks from miss to programmed), for the benchmark and `status`.
    latency: hdrhistogram::Histogram<u64>,
    /// Sum of the setup latencies recorded, ns (the histogram's `_sum` for Prometheus).
    latency_sum_ns: u64,
    tsc_hz: u64,
    listener: Option<UnixListener>,
    /// Control requests read by the connection threads, answered by this thread.
    requests: Receiver<ControlRequest>,
    requests_tx: SyncSender<ControlRequest>,
    /// The published forwarding state (live programming): the FIB is re-read when its
    /// generation moves.
    cell: Option<Arc<FibCell>>,
    /// Serves the programming commands (in the connection threads).
    programmer: Option<Arc<Mutex<Programmer>>>,
    /// Flow work after a published change.
    jobs: Option<Receiver<FlowJob>>,
    /// The mirror table, for the `mirror_*` control commands.
    mirror: Option<Arc<crate::mirror::MirrorControl>>,
    /// Trace requests (`trace_*` commands).
    trace: Option<Arc<crate::trace::TraceControl>>,
    /// The agent's ring of the trace region: policy decisions of traced setups.
    #[cfg(feature = "trace")]
    tracer: Option<crate::trace::dp::AgentTracer>,
    /// HOLD flows of a reattached table, set up again when the thread starts.
    adopt: Option<Vec<(u32, Gen)>>,
    /// What wakes the agent when it sleeps (shared with the lcores and the control threads).
    wake: Arc<AgentWake>,
}

impl Agent {
    /// Binds the control socket (replacing a stale one, mode 0600) and sizes the per-flow state to
    /// the table.
    /// `rings` are the lcores' setup request rings, `done` (per lcore) their release notices.
    pub fn new(
        table: Arc<FlowTable>,
        fib: Arc<Fib>,
        policy: PolicyEngine,
        rings: Vec<Consumer<SetupRequest>>,
        done: Vec<Producer<u32>>,
        settings: AgentSettings,
    ) -> std::io::Result<Agent> {
        let _ = std::fs::remove_file(&settings.control_path);
        let listener = UnixListener::bind(&settings.control_path)?;
        std::fs::set_permissions(&settings.control_path, std::fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        let capacity = table.capacity() as usize;
        let tsc_hz = settings.tsc_hz.max(1);
        let (requests_tx, requests) = std::sync::mpsc::sync_channel(CONTROL_QUEUE);
        Ok(Agent {
            table,
            fib,
            fib_generation: 0,
            policy,
            rings,
            done,
            settings,
            meta: vec![MetaSlot::default(); capacity],
            forward: Vec::new(),
            verdicts: Verdicts::default(),
            scan_cursor: 0,
            counters: AgentCounters::default(),
            latency: hdrhistogram::Histogram::new(3).expect("histogram"),
            latency_sum_ns: 0,
            tsc_hz,
            listener: Some(listener),
            requests,
            requests_tx,
            cell: None,
            programmer: None,
            jobs: None,
            mirror: None,
            trace: None,
            #[cfg(feature = "trace")]
            tracer: None,
            adopt: None,
            wake: Arc::new(AgentWake::new()?),
        })
    }

    /// The table was reattached after a restart ([`flow_table::TableStart::Reattached`]):
    /// when its thread starts, the agent rebuilds its state of every established flow from the
    /// entries (ingress vif and direction from the entry's origin, rule UUIDs and names by
    /// re-evaluating each pair from its forward direction, which also applies a policy that
    /// changed across the restart) and sets up again the flows `held` in HOLD. The forwarding
    /// lcores do not wait for it: the actions they read are in the table.
    pub fn with_adopted(mut self, held: Vec<(u32, Gen)>) -> Agent {
        self.adopt = Some(held);
        self
    }

    /// [`Agent::with_adopted`]'s work; returns (flows adopted, re-evaluated actions changed,
    /// HOLD flows set up).
    fn adopt_flows(&mut self, held: &[(u32, Gen)]) -> (u64, u64, u64) {
        const RETIRED: u32 = flow_table::flags::DELETE_MARKED | flow_table::flags::EVICTED;
        let mut adopted = 0;
        // A placeholder verdict until re-evaluation below interns the real one (a reverse
        // flow gets its forward flow's).
        let placeholder = self.verdicts.intern("", &None, &None, &None, &None, &[None, None]);
        let snaps: Vec<_> = self.table.iter_active().collect();
        for (idx, snap) in snaps {
            if snap.action == Action::Hold || snap.flags & RETIRED != 0 {
                continue;
            }
            let Some(o) = self.table.entry(idx).and_then(|e| e.origin()) else { continue };
            let m = MetaSlot { verdict: placeholder, gen: snap.gen, vif: o.vif, reverse: o.reverse, fwd: 0 };
            self.set_meta(idx, m, &snap.key);
            adopted += 1;
        }
        let (_, changed) = self.reevaluate(|_| true);
        let fib = self.fib.clone();
        for &(flow, gen) in held {
            let vif = self
                .table
                .entry(flow)
                .and_then(|e| e.key())
                .map_or(u16::MAX, |k| setup::local_vif_for(&fib, k.vrf(), k.src_ip()).map_or(u16::MAX, |v| v.id));
            // No lcore holds packets of it any more: no notice goes out (lcore out of range).
            let req = SetupRequest { flow, gen, vif, lcore: u16::MAX, tsc: 0, trace: 0, trace_pkt: 0 };
            self.setup(&fib, req);
        }
        self.counters.adopted += adopted;
        self.counters.adopted_held += held.len() as u64;
        (adopted, changed, held.len() as u64)
    }

    /// Serves the `trace_*` commands; `ring` (the agent's ring of the trace region) gets the
    /// policy decision of every flow set up for a traced packet.
    pub fn with_trace(
        mut self,
        control: Arc<crate::trace::TraceControl>,
        ring: Option<crate::trace::RingWriter>,
    ) -> Agent {
        self.trace = Some(control);
        #[cfg(feature = "trace")]
        {
            self.tracer = ring.map(crate::trace::dp::AgentTracer::new);
        }
        #[cfg(not(feature = "trace"))]
        let _ = ring;
        self
    }

    /// Live programming: the agent follows the FIB published in `cell`, the connection threads
    /// serve the programming commands with `programmer`, and `jobs` brings the flow work of
    /// each change (re-evaluation, deletion).
    pub fn with_programming(
        mut self,
        cell: Arc<FibCell>,
        programmer: Arc<Mutex<Programmer>>,
        jobs: Receiver<FlowJob>,
    ) -> Agent {
        self.cell = Some(cell);
        self.programmer = Some(programmer);
        self.jobs = Some(jobs);
        self
    }

    /// Sleeps on `wake`, the doorbell the lcores' [`crate::datapath::FlowPlane`] rings.
    pub fn with_wake(mut self, wake: Arc<AgentWake>) -> Agent {
        self.wake = wake;
        self
    }

    /// Serves the `mirror_create`/`mirror_delete`/`mirror_get`/`mirror_dump` commands.
    pub fn with_mirror(mut self, mirror: Arc<crate::mirror::MirrorControl>) -> Agent {
        self.mirror = Some(mirror);
        self
    }

    /// Runs until `stop` is set.
    pub fn run(mut self, stop: Arc<AtomicBool>) {
        if let Some(held) = self.adopt.take() {
            let t = Instant::now();
            let (n, changed, held) = self.adopt_flows(&held);
            tracing::info!(
                "vrouter: agent: adopted {n} flows of the reattached table ({changed} actions changed by \
                 re-evaluation, {held} HOLD flows set up again) in {} ms",
                t.elapsed().as_millis()
            );
        }
        let mut last_scan = Instant::now();
        let mut idle = 0u32;
        let acceptor = self.listener.take().map(|l| {
            let tx = Mailbox::new(self.requests_tx.clone(), self.wake.clone());
            let (programmer, stop) = (self.programmer.clone(), stop.clone());
            std::thread::Builder::new()
                .name("vr-control".into())
                .spawn(move || accept_loop(l, tx, programmer, stop))
                .expect("spawning the control socket thread")
        });
        while !stop.load(Ordering::Relaxed) {
            self.refresh_fib();
            let mut n = self.drain();
            n += self.serve_requests();
            if last_scan.elapsed() >= SCAN_INTERVAL {
                self.housekeeping();
                last_scan = Instant::now();
            }
            if n > 0 {
                idle = 0;
            } else if idle < IDLE_BACKOFF {
                // Back off from 10 to 100 us first: a burst of new flows rarely pauses longer,
                // and the lcores need not wake a thread that is about to look anyway.
                idle += 1;
                std::thread::sleep(Duration::from_micros(u64::from(idle) * 10));
            } else {
                // Then sleep until an lcore pushes a request, a control request or flow job
                // comes, the vRouter stops, or housekeeping is due.
                let due = SCAN_INTERVAL.saturating_sub(last_scan.elapsed());
                let rings = &self.rings;
                self.wake.sleep(due, || rings.iter().any(Consumer::has_items));
            }
        }
        if let Some(a) = acceptor {
            // The accept loop waits in poll(2): a connection of our own ends the wait now.
            let _ = UnixStream::connect(&self.settings.control_path);
            let _ = a.join();
        }
        // The lcores have stopped: what is left of the trace limits is final.
        self.save_trace_budgets();
        let _ = std::fs::remove_file(&self.settings.control_path);
    }

    /// Takes the FIB of the latest published generation.
    fn refresh_fib(&mut self) {
        if let Some(cell) = &self.cell {
            if cell.generation() != self.fib_generation {
                let snap = cell.load();
                self.fib = snap.fib.clone();
                self.fib_generation = snap.generation;
            }
        }
    }

    /// Answers the control requests the connection threads queued, and does the flow work of
    /// published changes; returns how many.
    fn serve_requests(&mut self) -> usize {
        let mut n = 0;
        while let Ok(req) = self.requests.try_recv() {
            let reply = self.command(&req.request);
            let _ = req.reply.send(reply);
            n += 1;
        }
        while let Some(job) = self.jobs.as_ref().and_then(|j| j.try_recv().ok()) {
            self.refresh_fib();
            let counts = self.flow_work(job.work);
            let _ = job.reply.send(counts);
            n += 1;
        }
        n
    }

    /// Re-evaluates and deletes flows after a published change; returns (re-evaluated,
    /// changed, deleted).
    fn flow_work(&mut self, work: FlowWork) -> (u64, u64, u64) {
        match work {
            FlowWork::Prefixes(changed) => {
                let set = ChangedPrefixes::new(&changed);
                let (re, ch) =
                    self.reevaluate(|k| set.contains(k.vrf(), k.src_ip()) || set.contains(k.vrf(), k.dst_ip()));
                (re, ch, 0)
            }
            FlowWork::All { cfg, deleted_vifs, deleted_ends, deleted_vrfs } => {
                if let Some(cfg) = cfg {
                    match PolicyEngine::from_config(&cfg) {
                        Ok(p) => {
                            self.policy = p;
                            self.counters.policy_reloads += 1;
                        }
                        Err(e) => tracing::error!("vrouter: agent: policies of the new state: {e}"),
                    }
                }
                let deleted = self.delete_flows(&deleted_vifs, &deleted_ends, &deleted_vrfs);
                let (re, ch) = self.reevaluate(|_| true);
                (re, ch, deleted)
            }
        }
    }

    /// Marks flow `idx` (generation `gen`) deleted and forgets the agent's state of it; false
    /// when it was already gone or reused.
    fn delete_flow(&mut self, idx: u32, gen: Gen) -> bool {
        let ok = self.table.mark_delete(idx, gen).is_ok();
        if ok {
            self.clear_meta(idx);
        }
        ok
    }

    /// Deletes the flow pairs that came in on one of `vifs`, go to or come from one of the
    /// deleted VMs' addresses `ends` (VRF, address), or live in one of `vrfs`. They are
    /// exported with their final counters, as aged flows are.
    fn delete_flows(&mut self, vifs: &[u16], ends: &[(u32, std::net::IpAddr)], vrfs: &[u32]) -> u64 {
        if vifs.is_empty() && vrfs.is_empty() {
            return 0;
        }
        let touches =
            |k: &FlowKey| ends.iter().any(|(vrf, a)| k.vrf() == *vrf && (k.src_ip() == *a || k.dst_ip() == *a));
        let doomed: Vec<_> = (self.table.iter_active())
            .map(|(_, s)| s)
            .filter(|s| {
                vrfs.contains(&s.key.vrf())
                    || touches(&s.key)
                    || self.meta(s.index).is_some_and(|m| vifs.contains(&m.vif))
            })
            .collect();
        let mut n = 0;
        for s in doomed {
            n += u64::from(self.delete_flow(s.index, s.gen));
            if let Some(r) = s.rflow {
                if let Some(rgen) = self.table.entry(r).map(|e| e.gen()) {
                    n += u64::from(self.delete_flow(r, rgen));
                }
            }
        }
        self.counters.state_deleted += n;
        // Reclaimed by the next housekeeping pass, so that the exporter's scan can still read
        // the deleted entries' final counters.
        n
    }

    fn now_ms() -> u64 {
        crate::stats::unix_time_ms()
    }

    /// Handles every pending setup request; returns how many. Requests are taken in
    /// batches: the forward entries of a batch are prefetched, then the reverse keys'
    /// buckets, then the entries the reverse flows will take, so the cache misses of a
    /// batch overlap instead of stalling each setup in turn.
    fn drain(&mut self) -> usize {
        let fib = self.fib.clone();
        let mut n = 0;
        let mut batch = [None::<SetupRequest>; SETUP_BATCH];
        for i in 0..self.rings.len() {
            loop {
                let mut m = 0;
                while m < SETUP_BATCH {
                    match self.rings[i].pop() {
                        Some(r) => {
                            self.table.prefetch_entry(r.flow);
                            batch[m] = Some(r);
                            m += 1;
                        }
                        None => break,
                    }
                }
                if m == 0 {
                    break;
                }
                let mut rhash = [None::<u32>; SETUP_BATCH];
                for (h, r) in rhash.iter_mut().zip(batch[..m].iter().flatten()) {
                    *h = self.table.prefetch_reverse(r.flow);
                }
                for h in rhash[..m].iter().flatten() {
                    self.table.prefetch_insert(*h);
                }
                for r in batch[..m].iter_mut() {
                    if let Some(r) = r.take() {
                        self.setup(&fib, r);
                    }
                }
                n += m;
            }
        }
        n
    }

    fn setup(&mut self, fib: &Fib, req: SetupRequest) {
        let now = Self::now_ms();
        let p = match setup::program(&self.table, fib, &self.policy, req.flow, req.gen, req.vif, now) {
            Setup::Done(p) => p,
            // Reused, deleted, or already set up: the lcore that sent it may hold packets
            // of it.
            Setup::Stale => {
                self.counters.setup_stale += 1;
                self.notify(req.lcore, req.flow);
                return;
            }
            // No room for the reverse flow: the forward flow drops (tf: FlowLim).
            Setup::NoReverse => {
                self.notify(req.lcore, req.flow);
                return;
            }
        };
        let (decision, rev, rgen) = (p.decision, p.rev, p.rgen);
        let forward = decision.action == PolicyAction::Pass;
        self.notify(req.lcore, req.flow);
        #[cfg(feature = "trace")]
        if req.trace != 0 {
            if let Some(t) = self.tracer.as_mut() {
                let rule = decision.nw_ace_uuid.as_deref().or(decision.sg_rule_uuid.as_deref());
                let dr = if forward { 0 } else { decision.drop_reason };
                t.policy(crate::clock::rdtsc(), req.trace, req.trace_pkt, req.flow, forward, dr, rule);
            }
        }
        self.counters.setups += 1;
        if !forward {
            self.counters.setup_denied += 1;
        }
        let (src_vn, dst_vn) = (p.src_vn, p.dst_vn);
        let a = &decision.mirror_names;
        let (nw, sg) = (&decision.nw_ace_uuid, &decision.sg_rule_uuid);
        let fwd = self.verdicts.intern(decision.action_names, nw, sg, &src_vn, &dst_vn, a);
        let rev_v = self.verdicts.intern(decision.action_names, nw, sg, &dst_vn, &src_vn, a);
        self.set_meta(req.flow, MetaSlot { verdict: fwd, gen: req.gen, vif: req.vif, reverse: false, fwd: 0 }, &p.key);
        self.set_meta(rev, MetaSlot { verdict: rev_v, gen: rgen, vif: req.vif, reverse: true, fwd: 0 }, &p.key);
        if req.tsc != 0 {
            let ticks = crate::clock::rdtsc().saturating_sub(req.tsc);
            let ns = ticks * 1_000_000_000 / self.tsc_hz;
            if self.latency.record(ns).is_ok() {
                self.latency_sum_ns = self.latency_sum_ns.wrapping_add(ns);
            }
        }
    }

    /// Tells lcore `lcore` that `flow` has its action (a full ring only delays the release
    /// to the lcore's periodic check).
    fn notify(&self, lcore: u16, flow: u32) {
        if let Some(p) = self.done.get(usize::from(lcore)) {
            let _ = p.push(flow);
        }
    }

    /// The agent's state of flow `idx` (`key`: the flow's key; kept for a forward flow).
    fn set_meta(&mut self, idx: u32, mut m: MetaSlot, key: &FlowKey) {
        if idx as usize >= self.meta.len() {
            return;
        }
        self.forget_forward(idx);
        if !m.reverse {
            self.forward.push(ForwardFlow { idx, key: *key });
            m.fwd = self.forward.len() as u32;
        }
        self.meta[idx as usize] = m;
    }

    fn clear_meta(&mut self, idx: u32) {
        self.forget_forward(idx);
        if let Some(m) = self.meta.get_mut(idx as usize) {
            *m = MetaSlot::default();
        }
    }

    /// Takes flow `idx` out of [`Self::forward`] (the last entry moves into its place).
    fn forget_forward(&mut self, idx: u32) {
        let Some(pos) = self.meta.get(idx as usize).and_then(|m| m.fwd.checked_sub(1)) else { return };
        self.meta[idx as usize].fwd = 0;
        let pos = pos as usize;
        if pos >= self.forward.len() {
            return;
        }
        self.forward.swap_remove(pos);
        if let Some(moved) = self.forward.get(pos) {
            self.meta[moved.idx as usize].fwd = pos as u32 + 1;
        }
    }

    /// What the agent knows of flow `idx` (None: no state, e.g. not set up by it).
    pub fn meta(&self, idx: u32) -> Option<FlowMeta> {
        let m = self.meta.get(idx as usize)?;
        let v = self.verdicts.get(m.verdict)?;
        Some(FlowMeta {
            gen: m.gen,
            action: v.action,
            nw_ace_uuid: v.nw_ace_uuid.clone(),
            sg_rule_uuid: v.sg_rule_uuid.clone(),
            src_vn: v.src_vn.clone(),
            dst_vn: v.dst_vn.clone(),
            analyzers: v.analyzers.clone(),
            vif: m.vif,
            reverse: m.reverse,
        })
    }

    /// Persists what is left of the trace requests' limits when they moved.
    fn save_trace_budgets(&self) {
        if let Some(t) = &self.trace {
            if let Err(e) = t.save_budgets() {
                // Once per burst of traced packets: limited.
                logging::rate_limited!(WARN, "vrouter: agent: {e}");
            }
        }
    }

    /// Aging, TCP eviction, HOLD audit, slot reclaim.
    fn housekeeping(&mut self) {
        self.save_trace_budgets();
        let now = Self::now_ms();
        let age = self.settings.age_timeout_ms;
        let mut delete = Vec::new();
        let mut audit = Vec::new();
        // A slice of the table per tick, as tf's FlowStatsCollector: the whole table within
        // a quarter of the age time (at most MAX_SWEEP_MS), at least MIN_SCAN_SLICE
        // entries per tick. A full sweep per tick would cost the agent (and the lcores'
        // caches) a pass over the whole table every 100 ms.
        let cap = self.table.capacity();
        let sweep_ms = (age / 4).clamp(SCAN_INTERVAL.as_millis() as u64, MAX_SWEEP_MS);
        let ticks = (sweep_ms / SCAN_INTERVAL.as_millis() as u64).max(1);
        let slice = (u64::from(cap) / ticks + 1).max(MIN_SCAN_SLICE).min(u64::from(cap)) as u32;
        let start = self.scan_cursor.min(cap);
        let end = start.saturating_add(slice).min(cap);
        self.scan_cursor = if end >= cap { 0 } else { end };
        let table = &self.table;
        let snaps = (start..end).filter(|&i| table.slot_in_use(i)).filter_map(|i| table.snapshot(i).ok().flatten());
        for snap in snaps {
            if snap.flags & (flow_table::flags::DELETE_MARKED | flow_table::flags::EVICTED) != 0 {
                // Already on its way out: reclaimed once the lcores have moved on.
                continue;
            }
            if snap.action == Action::Hold {
                if now.saturating_sub(snap.setup_time) >= self.settings.hold_audit_ms {
                    audit.push((snap.index, snap.gen));
                }
                continue;
            }
            // Decide per pair, from the forward side (the lower index of the pair).
            let Some(r) = snap.rflow else {
                if now.saturating_sub(snap.last_seen) >= age {
                    delete.push((snap.index, snap.gen, None));
                }
                continue;
            };
            if r < snap.index {
                continue;
            }
            let Ok(Some(rs)) = self.table.snapshot(r) else { continue };
            let idle = now.saturating_sub(snap.last_seen.max(rs.last_seen));
            let tcp = snap.key.proto() == 6;
            let closed = tcp
                && self.settings.tcp_close_evict
                && ((snap.tcp_flags | rs.tcp_flags) & tcp_flags::RST != 0
                    || (snap.tcp_flags & tcp_flags::FIN != 0 && rs.tcp_flags & tcp_flags::FIN != 0));
            if idle >= age || (closed && idle >= TCP_CLOSE_GRACE_MS) {
                delete.push((snap.index, snap.gen, Some((r, rs.gen, closed && idle < age))));
            }
        }
        for (idx, gen) in audit {
            let up = FlowUpdate::drop(FLOW_DR_AUDIT_ENTRY);
            if self.table.set_action(idx, gen, &up).is_ok() {
                self.counters.hold_audited += 1;
            }
        }
        for (idx, gen, pair) in delete {
            if !self.delete_flow(idx, gen) {
                continue;
            }
            let tcp_closed = match pair {
                Some((r, rgen, tcp_closed)) => {
                    self.delete_flow(r, rgen);
                    tcp_closed
                }
                None => false,
            };
            if tcp_closed {
                self.counters.tcp_evicted += 1;
            } else {
                self.counters.aged += 1;
            }
        }
        self.table.reclaim();
    }

    fn command(&mut self, v: &serde_json::Value) -> serde_json::Value {
        let fail = |e: String| serde_json::json!({"ok": false, "error": e});
        match Target::of(v) {
            Err(e) => fail(e.to_string()),
            Ok(Target::Trace) if protocol::cmd_of(v) == Some("trace_simulate") => self.simulate(v),
            Ok(Target::Trace) => match &self.trace {
                Some(t) => t.command(v),
                None => fail("tracing is not enabled".into()),
            },
            Ok(Target::Mirror) => match &self.mirror {
                Some(m) => m.command(v),
                None => fail("mirroring is not enabled".into()),
            },
            Ok(Target::Agent) => match AgentCommand::decode(v) {
                Err(e) => fail(e.to_string()),
                Ok(AgentCommand::Status) => serde_json::json!({
                    "ok": true,
                    "counters": self.counters,
                    "setup_latency_ns": self.setup_latency(),
                }),
                Ok(AgentCommand::Reload) => match self.reload() {
                    Ok(n) => serde_json::json!({"ok": true, "reevaluated": n}),
                    Err(e) => fail(e),
                },
                Ok(AgentCommand::Flow { index }) => {
                    let idx = index.unwrap_or(u64::MAX) as u32;
                    match self.meta(idx) {
                        Some(m) => serde_json::json!({"ok": true, "meta": m}),
                        None => fail(format!("no agent state for flow {idx}")),
                    }
                }
                Ok(AgentCommand::Flows { indices }) => {
                    let metas: Vec<Option<FlowMeta>> = indices.iter().map(|&i| self.meta(i)).collect();
                    serde_json::json!({"ok": true, "metas": metas})
                }
                Ok(AgentCommand::Unknown) => fail(format!("unknown command {:?}", protocol::cmd_of(v).unwrap_or(""))),
            },
        }
    }

    /// The setup latency of `status`: percentiles from the histogram, and its recorded values
    /// counted into the buckets of [`vrouter_abi::agent::SETUP_LATENCY_BOUNDS_NS`] (each at
    /// the histogram's precision, 3 significant digits).
    fn setup_latency(&self) -> vrouter_abi::agent::SetupLatency {
        use vrouter_abi::agent::{setup_latency_bucket, SETUP_LATENCY_BOUNDS_NS};
        let h = &self.latency;
        let mut buckets = vec![0u64; SETUP_LATENCY_BOUNDS_NS.len() + 1];
        for v in h.iter_recorded() {
            buckets[setup_latency_bucket(h.lowest_equivalent(v.value_iterated_to()))] += v.count_at_value();
        }
        vrouter_abi::agent::SetupLatency {
            count: h.len(),
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            sum: self.latency_sum_ns,
            buckets,
        }
    }

    /// `trace_simulate`: the packet described by `v` through the live pipeline and flow
    /// table, changing nothing (see [`crate::trace::simulate`]); a packet without a flow
    /// gets the verdict this agent's policy would give its flow.
    fn simulate(&self, v: &serde_json::Value) -> serde_json::Value {
        use crate::trace::simulate::{self, FlowSpec, PolicyVerdict};
        let fail = |field: &str, e: String| serde_json::json!({"ok": false, "error": e, "field": field});
        let token = match protocol::TraceAuth::decode(v) {
            Ok(a) => a.token,
            Err(e) => return fail("token", e.to_string()),
        };
        let cmd = match protocol::TraceCommand::decode(v) {
            Ok(protocol::TraceCommand::TraceSimulate(c)) => c,
            Ok(_) => return fail("cmd", "not trace_simulate".into()),
            Err(e) => return fail("request", e.to_string()),
        };
        let spec = match FlowSpec::from_command(&self.fib, &cmd) {
            Ok(s) => s,
            Err(e) => return fail(e.field, e.to_string()),
        };
        match (&self.trace, token.as_deref()) {
            (Some(t), token) => {
                if let Err((field, e)) = t.may_simulate(token, spec.vif) {
                    return fail(field, e);
                }
            }
            (None, Some(_)) => return fail("token", "token: tracing is not enabled".into()),
            (None, None) => {}
        }
        let (fib, policy) = (&self.fib, &self.policy);
        let verdict_of = |key: &FlowKey| {
            let (d, _, _) = setup::evaluate(fib, policy, key, spec.vif);
            PolicyVerdict {
                forward: d.is_pass(),
                drop_reason: d.drop_reason,
                rule: d.nw_ace_uuid.as_deref().map(str::to_owned),
                sg_rule: d.sg_rule_uuid.as_deref().map(str::to_owned),
                action: d.action_names.to_owned(),
            }
        };
        match simulate::run(fib, Some(&self.table), &spec, verdict_of) {
            Ok(s) => s.to_json(),
            Err(e) => fail(e.field, e.to_string()),
        }
    }

    /// Re-reads the configuration file, swaps in its policies and re-evaluates every set-up
    /// flow pair. Returns the number of flows re-evaluated.
    fn reload(&mut self) -> Result<usize, String> {
        let cfg = config::load(&self.settings.config_path).map_err(|e| e.to_string())?;
        let policy = PolicyEngine::from_config(&cfg).map_err(|e| e.to_string())?;
        // The analyzers first: re-evaluated flows point at the indices they now have.
        if let Some(m) = &self.mirror {
            m.sync_config(&cfg).map_err(|e| format!("mirror table: {e}"))?;
        }
        self.policy = policy;
        self.counters.policy_reloads += 1;
        Ok(self.reevaluate(|_| true).0 as usize)
    }

    /// Re-evaluates every set-up flow pair whose forward key `select` picks, with the current
    /// FIB and policies: the decision, the VNs and S(nh) of both directions. Returns (pairs
    /// re-evaluated, flows whose action or flags changed). The pairs are picked from the
    /// agent's own list of forward flows ([`ForwardFlow`]): only the picked entries are read.
    fn reevaluate(&mut self, select: impl Fn(&FlowKey) -> bool) -> (u64, u64) {
        let fib = self.fib.clone();
        let (mut n, mut changed) = (0u64, 0u64);
        let picked: Vec<u32> = self.forward.iter().filter(|f| select(&f.key)).map(|f| f.idx).collect();
        for idx in picked {
            let Ok(Some(snap)) = self.table.snapshot(idx) else { continue };
            let Some(meta) = self.meta(snap.index) else { continue };
            // Another flow at the index (set up without this agent, or after an eviction).
            if meta.reverse || meta.gen != snap.gen || snap.action == Action::Hold {
                continue;
            }
            let key = snap.key;
            let (d, src_vn, dst_vn) = setup::evaluate(&fib, &self.policy, &key, meta.vif);
            let mut up = flow_update(&d);
            up.src_nh = Some(setup::source_nh(&fib, key.vrf(), key.src_ip()));
            let before = (snap.action, snap.flags);
            let _ = self.table.set_action(snap.index, snap.gen, &up);
            if self.table.entry(snap.index).is_some_and(|e| (e.action(), e.flags()) != before) {
                changed += 1;
            }
            if let Some(r) = snap.rflow {
                if let Some(e) = self.table.entry(r) {
                    let rbefore = (e.action(), e.flags());
                    up.src_nh = Some(setup::source_nh(&fib, key.vrf(), key.dst_ip()));
                    let _ = self.table.set_action(r, e.gen(), &up);
                    if (e.action(), e.flags()) != rbefore {
                        changed += 1;
                    }
                }
            }
            let a = &d.mirror_names;
            let fwd = self.verdicts.intern(d.action_names, &d.nw_ace_uuid, &d.sg_rule_uuid, &src_vn, &dst_vn, a);
            self.meta[snap.index as usize].verdict = fwd;
            if let Some(r) = snap.rflow {
                let rev = self.verdicts.intern(d.action_names, &d.nw_ace_uuid, &d.sg_rule_uuid, &dst_vn, &src_vn, a);
                if let Some(rm) = self.meta.get_mut(r as usize).filter(|m| m.verdict != 0) {
                    rm.verdict = rev;
                }
            }
            n += 1;
        }
        self.counters.reevaluated += n;
        self.counters.reevaluated_changed += changed;
        (n, changed)
    }
}

/// Control requests queued between the connection threads and the agent.
const CONTROL_QUEUE: usize = 64;
/// Connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 64;
/// A client that sends no complete line for this long is disconnected.
const CONTROL_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A control request for the agent thread and where its reply goes.
struct ControlRequest {
    request: serde_json::Value,
    reply: SyncSender<serde_json::Value>,
}

/// The control socket's accept loop (its own thread): each connection gets a thread that
/// reads request lines (one JSON object each), serves the programming commands itself and
/// queues the others for the agent, so a slow or silent client never delays flow setup.
fn accept_loop(
    listener: UnixListener,
    agent: Mailbox<ControlRequest>,
    programmer: Option<Arc<Mutex<Programmer>>>,
    stop: Arc<AtomicBool>,
) {
    let active = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                if active.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
                    let mut w = &stream;
                    let _ =
                        writeln!(w, "{}", serde_json::json!({"ok": false, "error": "too many control connections"}));
                    continue;
                }
                active.fetch_add(1, Ordering::Relaxed);
                let (agent, programmer, stop, active) =
                    (agent.clone(), programmer.clone(), stop.clone(), active.clone());
                let spawned = std::thread::Builder::new().name("vr-control-conn".into()).spawn(move || {
                    let _ = serve_connection(stream, &agent, programmer.as_deref(), &stop);
                    active.fetch_sub(1, Ordering::Relaxed);
                });
                if spawned.is_err() {
                    logging::rate_limited!(ERROR, "vrouter: cannot spawn a control connection thread");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => wait_readable(&listener, ACCEPT_WAIT),
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

/// Waits until `listener` has a connection to accept or `timeout` passes (the agent's
/// connection at stop ends the wait).
fn wait_readable(listener: &UnixListener, timeout: Duration) {
    use std::os::fd::AsRawFd;
    let mut pfd = libc::pollfd { fd: listener.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd for the duration of the call; an error or EINTR only returns
    // early, and the loop tries accept again.
    let _ = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis().min(i32::MAX as u128) as i32) };
}

/// Serves one connection: a reply line per request line until the client closes it, stays
/// silent for [`CONTROL_READ_TIMEOUT`], or the vRouter stops.
fn serve_connection(
    stream: UnixStream,
    agent: &Mailbox<ControlRequest>,
    programmer: Option<&Mutex<Programmer>>,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(CONTROL_READ_TIMEOUT))?;
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    while !stop.load(Ordering::Relaxed) {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let reply = match serde_json::from_str::<serde_json::Value>(&line) {
            Err(e) => serde_json::json!({"ok": false, "error": format!("bad request: {e}")}),
            Ok(v) => serve_one(&v, agent, programmer),
        };
        let mut w = &stream;
        writeln!(w, "{reply}")?;
    }
    Ok(())
}

/// The reply to one request: a programming command served here, any other by the agent.
fn serve_one(
    v: &serde_json::Value,
    agent: &Mailbox<ControlRequest>,
    programmer: Option<&Mutex<Programmer>>,
) -> serde_json::Value {
    let fail = |e: &str| serde_json::json!({"ok": false, "error": e});
    // With live programming, `reload` re-reads the file under the runtime state.
    if let (Some("reload"), Some(p)) = (protocol::cmd_of(v), programmer) {
        return match p.lock().unwrap_or_else(|e| e.into_inner()).reload() {
            Ok(r) => {
                let mut v = serde_json::to_value(r).unwrap_or_default();
                v["ok"] = serde_json::Value::Bool(true);
                v
            }
            Err(e) => fail(&e),
        };
    }
    if protocol::cmd_of(v).is_some_and(crate::control::program::ProgramCommand::is_program) {
        return match programmer {
            Some(p) => p.lock().unwrap_or_else(|e| e.into_inner()).serve(v),
            None => fail("live programming is not enabled in this process"),
        };
    }
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    match agent.try_send(ControlRequest { request: v.clone(), reply: tx }) {
        Ok(()) => rx.recv_timeout(Duration::from_secs(10)).unwrap_or_else(|_| fail("the agent did not answer")),
        Err(TrySendError::Full(_)) => fail("the agent is busy; try again"),
        Err(TrySendError::Disconnected(_)) => fail("the agent has stopped"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flow_table::{FlowKey, FlowTableConfig, Lookup, TableStart};
    use std::net::Ipv4Addr;

    const CONFIG: &str = r#"
[eal]
forwarding_cores = [1]
[vrouter]
run_dir = "/tmp/agent-adopt-test"
router_ip = "10.10.0.1"
[[vrf]]
id = 0
name = "fabric"
[[vrf]]
id = 1
name = "overlay"
[[vif]]
id = 0
name = "fab"
type = "fabric"
device = "d0"
mac = "02:00:00:00:00:01"
vrf = 0
[[vif]]
id = 1
name = "tap1"
type = "virtual"
device = "d1"
mac = "02:00:00:00:01:01"
ip = "10.1.0.3"
vrf = 1
vn_name = "vn-red"
[[vif]]
id = 2
name = "tap2"
type = "virtual"
device = "d2"
mac = "02:00:00:00:01:02"
ip = "10.1.0.4"
vrf = 1
vn_name = "vn-red"
[[nexthop]]
id = 1
type = "encap"
vif = 1
dst_mac = "02:00:00:00:02:01"
[[nexthop]]
id = 2
type = "encap"
vif = 2
dst_mac = "02:00:00:00:02:02"
[[route]]
vrf = 1
prefix = "10.1.0.3/32"
nexthop = 1
[[route]]
vrf = 1
prefix = "10.1.0.4/32"
nexthop = 2
[[network_policy]]
name = "red"
vns = ["vn-red"]
[[network_policy.rule]]
uuid = "20000000-0000-4000-8000-000000000053"
protocol = "udp"
dst_ports = "53"
action = "deny"
[[network_policy.rule]]
uuid = "20000000-0000-4000-8000-000000000001"
action = "pass"
"#;

    fn agent(cfg: &config::Config, table: Arc<FlowTable>, dir: &std::path::Path) -> Agent {
        let fib = Arc::new(Fib::from_config(cfg).unwrap());
        let policy = PolicyEngine::from_config(cfg).unwrap();
        let settings = AgentSettings {
            age_timeout_ms: 180_000,
            hold_audit_ms: 60_000,
            tcp_close_evict: true,
            config_path: dir.join("vrouter.toml"),
            control_path: dir.join("control.sock"),
            tsc_hz: 1_000_000_000,
        };
        Agent::new(table, fib, policy, Vec::new(), Vec::new(), settings).unwrap()
    }

    fn hold(t: &FlowTable, dport: u16) -> (u32, Gen) {
        let k = FlowKey::v4(1, 17, Ipv4Addr::new(10, 1, 0, 3), Ipv4Addr::new(10, 1, 0, 4), 4000, dport);
        let Lookup::Created(f) = t.lookup_or_hold(&k, k.hash(), 1).unwrap() else { panic!("flow existed") };
        (f, t.entry(f).unwrap().gen())
    }

    /// A restart on the reattached table: the agent's state of the established pairs is
    /// rebuilt from the entries (ingress vif, direction, rule UUIDs) without touching their
    /// actions, and a flow whose setup died with the previous run is set up.
    #[test]
    fn a_reattached_table_is_adopted_and_its_held_flows_set_up() {
        let cfg = config::parse(CONFIG, "test").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flow");
        let tcfg = FlowTableConfig { main_entries: 1024, overflow_entries: 0, max_lcores: 1 };
        let (web, dns, held) = {
            let table = Arc::new(FlowTable::create(&path, &tcfg).unwrap());
            let mut a = agent(&cfg, table.clone(), dir.path());
            let fib = a.fib.clone();
            let (web, dns) = (hold(&table, 80), hold(&table, 53));
            for (flow, gen) in [web, dns] {
                a.setup(&fib, SetupRequest { flow, gen, vif: 1, lcore: 0, tsc: 0, trace: 0, trace_pkt: 0 });
            }
            // Its setup request dies with the process.
            let held = hold(&table, 8080);
            (web, dns, held)
        };
        let (table, start) = FlowTable::open_or_create(Some(&path), dir.path(), &tcfg).unwrap();
        let TableStart::Reattached(report) = start else { panic!("{start:?}") };
        assert_eq!(report.held, vec![held]);
        let table = Arc::new(table);
        let before: Vec<_> = table.iter_active().map(|(_, s)| (s.index, s.action, s.flags, s.rflow)).collect();
        let mut a = agent(&cfg, table.clone(), dir.path()).with_adopted(report.held.clone());
        let held_list = a.adopt.take().unwrap();
        assert_eq!(a.adopt_flows(&held_list), (4, 0, 1), "two pairs adopted, nothing changed, one set up");
        // The adopted pairs: same actions, the agent's state back.
        let after: Vec<_> = table
            .iter_active()
            .filter(|(i, _)| *i != held.0)
            .filter(|(_, s)| s.rflow != Some(held.0))
            .map(|(_, s)| (s.index, s.action, s.flags, s.rflow))
            .collect();
        assert_eq!(after, before.into_iter().filter(|b| b.0 != held.0).collect::<Vec<_>>());
        let m = a.meta(web.0).expect("state of the web flow");
        assert_eq!((m.vif, m.reverse, m.action), (1, false, "pass"));
        assert_eq!(m.nw_ace_uuid.as_deref(), Some("20000000-0000-4000-8000-000000000001"));
        let rev = table.entry(web.0).unwrap().rflow().unwrap();
        assert!(a.meta(rev).unwrap().reverse);
        let m = a.meta(dns.0).unwrap();
        assert_eq!((m.action, m.nw_ace_uuid.as_deref()), ("deny", Some("20000000-0000-4000-8000-000000000053")));
        // The held flow is set up now: an action and a reverse flow.
        let h = table.snapshot(held.0).unwrap().unwrap();
        assert_eq!(h.action, Action::Forward);
        assert!(h.rflow.is_some());
        assert_eq!(a.meta(held.0).unwrap().vif, 1, "ingress vif from the route to its source");
        assert_eq!((a.counters.adopted, a.counters.adopted_held, a.counters.setups), (4, 1, 1));
    }

    /// Re-evaluation picks pairs from the agent's own list of forward flows: every pair it
    /// set up once, deleted ones not, a reused index once, and each entry's position
    /// recorded in its flow's state.
    #[test]
    fn reevaluation_picks_the_agents_own_forward_flows() {
        let cfg = config::parse(CONFIG, "test").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let tcfg = FlowTableConfig { main_entries: 1024, overflow_entries: 0, max_lcores: 1 };
        let table = Arc::new(FlowTable::create(&dir.path().join("flow"), &tcfg).unwrap());
        let mut a = agent(&cfg, table.clone(), dir.path());
        let fib = a.fib.clone();
        let flows: Vec<_> = (80..86).map(|port| hold(&table, port)).collect();
        for &(flow, gen) in &flows {
            a.setup(&fib, SetupRequest { flow, gen, vif: 1, lcore: 0, tsc: 0, trace: 0, trace_pkt: 0 });
        }
        let positions_agree =
            |a: &Agent| a.forward.iter().enumerate().all(|(p, f)| a.meta[f.idx as usize].fwd == p as u32 + 1);
        assert_eq!(a.forward.len(), 6, "forward flows only, not their reverse flows");
        assert_eq!(a.reevaluate(|_| true), (6, 0));
        assert_eq!(a.reevaluate(|k| k.dport() == 81).0, 1);
        // Deleted (the first: the last entry moves into its place), then set up again once
        // its slot is free: counted once.
        let (web, gen) = flows[0];
        let rev = table.entry(web).unwrap().rflow().unwrap();
        assert!(a.delete_flow(web, gen));
        assert!(a.delete_flow(rev, table.entry(rev).unwrap().gen()));
        assert!(positions_agree(&a));
        assert_eq!(a.reevaluate(|_| true).0, 5);
        assert_eq!(a.reevaluate(|k| k.dport() == 80).0, 0, "the deleted pair is not re-evaluated");
        table.reclaim();
        table.quiescent(0);
        table.reclaim();
        let (again, gen) = hold(&table, 80);
        a.setup(&fib, SetupRequest { flow: again, gen, vif: 1, lcore: 0, tsc: 0, trace: 0, trace_pkt: 0 });
        assert_eq!(a.reevaluate(|_| true).0, 6);
        assert_eq!(a.reevaluate(|k| k.dport() == 80).0, 1);
        assert!(positions_agree(&a));
        assert_eq!(a.forward.len(), 6);
    }

    #[test]
    fn verdicts_are_interned_by_string_identity() {
        let mut v = Verdicts::default();
        let rule: Option<Arc<str>> = Some(Arc::from("rule-1"));
        let vn1: Option<Arc<str>> = Some(Arc::from("vn1"));
        let vn2: Option<Arc<str>> = Some(Arc::from("vn2"));
        let an: [Option<Arc<str>>; 2] = [Some(Arc::from("A")), None];
        let a = v.intern("pass|mirror", &rule, &None, &vn1, &vn2, &an);
        // Same Arcs (clones) again: the same id, nothing new stored.
        let b = v.intern("pass|mirror", &rule.clone(), &None, &vn1.clone(), &vn2.clone(), &an.clone());
        assert_eq!(a, b);
        assert_eq!(v.list.len(), 1);
        // Swapped VNs (the reverse flow), another action, an equal string in another Arc:
        // each a verdict of its own.
        let r = v.intern("pass|mirror", &rule, &None, &vn2, &vn1, &an);
        let d = v.intern("deny", &rule, &None, &vn1, &vn2, &an);
        let other: Option<Arc<str>> = Some(Arc::from("vn1"));
        let o = v.intern("pass|mirror", &rule, &None, &other, &vn2, &an);
        assert_eq!([a, r, d, o], [1, 2, 3, 4]);
        let got = v.get(r).unwrap();
        assert_eq!(
            (got.action, got.src_vn.as_deref(), got.dst_vn.as_deref()),
            ("pass|mirror", Some("vn2"), Some("vn1"))
        );
        assert_eq!(got.analyzers[0].as_deref(), Some("A"));
        assert!(v.get(0).is_none() && v.get(5).is_none());
    }
}
