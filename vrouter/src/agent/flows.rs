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

use crate::agent::policy::{Decision, FlowContext, PolicyAction, PolicyEngine};
use crate::config::{self, VifType};
use crate::datapath::SetupRequest;
use crate::fib::{Fib, Nexthop};
use crate::spsc::{Consumer, Producer};
use flow_table::{tcp_flags, Action, FlowTable, FlowUpdate, Gen, FLOW_DR_AUDIT_ENTRY, FLOW_DR_FLOW_LIMIT};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the housekeeping scan runs.
const SCAN_INTERVAL: Duration = Duration::from_millis(100);
/// Longest full sweep of the table: a flow stuck in HOLD is audited at most this long after
/// `hold_audit_s` (tf's audit sweeps the table in 180 s).
const MAX_SWEEP_MS: u64 = 30_000;
/// Fewest entries the housekeeping scan visits per tick (tf kMinFlowsPerTimer).
const MIN_SCAN_SLICE: u64 = 3000;
/// Grace period before a closed TCP pair is evicted (lets the last ACK through).
const TCP_CLOSE_GRACE_MS: u64 = 1000;

/// Agent-side knowledge of a flow that the shared table does not hold (for export and
/// introspection): what decided it and where it came from.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct FlowMeta {
    pub gen: Gen,
    pub action: &'static str,
    pub nw_ace_uuid: Option<Arc<str>>,
    pub sg_rule_uuid: Option<Arc<str>>,
    pub src_vn: Option<Arc<str>>,
    pub dst_vn: Option<Arc<str>>,
    pub analyzers: [Option<Arc<str>>; 2],
    pub vif: u16,
    pub reverse: bool,
}

/// Counters of the agent, exposed through the control socket.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct AgentCounters {
    pub setups: u64,
    pub setup_denied: u64,
    pub setup_stale: u64,
    pub aged: u64,
    pub tcp_evicted: u64,
    pub hold_audited: u64,
    pub policy_reloads: u64,
    pub reevaluated: u64,
}

pub struct AgentSettings {
    pub age_timeout_ms: u64,
    pub hold_audit_ms: u64,
    pub tcp_close_evict: bool,
    /// The configuration file, re-read on `reload`.
    pub config_path: PathBuf,
    /// The control socket path (created with mode 0600).
    pub control_path: PathBuf,
}

pub struct Agent {
    table: Arc<FlowTable>,
    fib: Arc<Fib>,
    policy: PolicyEngine,
    rings: Vec<Consumer<SetupRequest>>,
    /// Per lcore: flows set up, so the lcore releases their held packets at once.
    done: Vec<Producer<u32>>,
    settings: AgentSettings,
    /// Indexed by flow index (no rehashing as the table fills).
    meta: Vec<Option<Box<FlowMeta>>>,
    /// Next flow index the sliced housekeeping scan visits.
    scan_cursor: u32,
    counters: AgentCounters,
    /// Setup latency (TSC ticks from miss to programmed), for the benchmark and `status`.
    latency: hdrhistogram::Histogram<u64>,
    tsc_hz: u64,
    listener: UnixListener,
    /// The mirror table, for the `mirror_*` control commands.
    mirror: Option<Arc<crate::mirror::MirrorControl>>,
}

impl Agent {
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
        Ok(Agent {
            table,
            fib,
            policy,
            rings,
            done,
            settings,
            meta: Vec::new(),
            scan_cursor: 0,
            counters: AgentCounters::default(),
            latency: hdrhistogram::Histogram::new(3).expect("histogram"),
            tsc_hz: crate::dpdk::tsc_hz().max(1),
            listener,
            mirror: None,
        })
    }

    /// Serves the `mirror_create`/`mirror_delete`/`mirror_get`/`mirror_dump` commands.
    pub fn with_mirror(mut self, mirror: Arc<crate::mirror::MirrorControl>) -> Agent {
        self.mirror = Some(mirror);
        self
    }

    /// Runs until `stop` is set.
    pub fn run(mut self, stop: Arc<AtomicBool>) {
        let mut last_scan = Instant::now();
        let mut idle = 0u32;
        while !stop.load(Ordering::Relaxed) {
            let n = self.drain();
            if last_scan.elapsed() >= SCAN_INTERVAL {
                self.housekeeping();
                self.serve_control();
                last_scan = Instant::now();
            }
            if n == 0 {
                idle = (idle + 1).min(10);
                // Back off up to 100 us when idle; setup latency stays far below a ms.
                std::thread::sleep(Duration::from_micros(u64::from(idle) * 10));
            } else {
                idle = 0;
            }
        }
        let _ = std::fs::remove_file(&self.settings.control_path);
    }

    fn now_ms() -> u64 {
        crate::stats::unix_time_ms()
    }

    /// Handles every pending setup request; returns how many.
    fn drain(&mut self) -> usize {
        let mut n = 0;
        for i in 0..self.rings.len() {
            while let Some(req) = self.rings[i].pop() {
                self.setup(req);
                n += 1;
            }
        }
        n
    }

    fn setup(&mut self, req: SetupRequest) {
        let now = Self::now_ms();
        let Some(e) = self.table.entry(req.flow) else { return };
        let key = match e.key() {
            Some(k) if e.gen() == req.gen && e.action() == Action::Hold => k,
            // Reused, deleted, or already set up (its reverse was set up first): the lcore
            // that sent it may hold packets of it.
            _ => {
                self.counters.setup_stale += 1;
                self.notify(req.lcore, req.flow);
                return;
            }
        };
        let ingress = self.fib.vif(req.vif);
        let vrf = key.vrf();
        // Endpoints: the ingress VM (if the packet came from one) and the local VM the
        // destination routes to (if any). Remote endpoints are in the VN of the VRF.
        let src_vif = ingress.filter(|v| v.kind == VifType::Virtual);
        let dst_vif = self.local_vif_for(vrf, key.dst_ip());
        let vrf_vn = src_vif.or(dst_vif).and_then(|v| v.vn_name.clone());
        let src_vn = src_vif.and_then(|v| v.vn_name.clone()).or_else(|| vrf_vn.clone());
        let dst_vn = dst_vif.and_then(|v| v.vn_name.clone()).or_else(|| vrf_vn.clone());
        let decision = self.policy.evaluate(&FlowContext {
            src: key.src_ip(),
            dst: key.dst_ip(),
            proto: key.proto(),
            sport: key.sport(),
            dport: key.dport(),
            src_vn: src_vn.as_deref(),
            dst_vn: dst_vn.as_deref(),
            src_vif: src_vif.map(|v| v.id),
            dst_vif: dst_vif.map(|v| v.id),
        });
        let Ok(rev) = self.table.create_reverse(req.flow, now) else {
            // No room for the reverse flow: the forward flow drops (tf: FlowLim).
            let up = FlowUpdate::drop(FLOW_DR_FLOW_LIMIT);
            let _ = self.table.set_action(req.flow, req.gen, &up);
            return;
        };
        let forward = decision.action == PolicyAction::Pass;
        let update = flow_update(&decision);
        let _ = self.table.set_action(req.flow, req.gen, &update);
        if let Some(r) = self.table.entry(rev) {
            let _ = self.table.set_action(rev, r.gen(), &update);
        }
        self.notify(req.lcore, req.flow);
        self.counters.setups += 1;
        if !forward {
            self.counters.setup_denied += 1;
        }
        let meta = FlowMeta {
            gen: req.gen,
            action: decision.action_names,
            nw_ace_uuid: decision.nw_ace_uuid.clone(),
            sg_rule_uuid: decision.sg_rule_uuid.clone(),
            src_vn,
            dst_vn,
            analyzers: decision.mirror_names.clone(),
            vif: req.vif,
            reverse: false,
        };
        let mut rmeta = meta.clone();
        rmeta.reverse = true;
        std::mem::swap(&mut rmeta.src_vn, &mut rmeta.dst_vn);
        self.set_meta(req.flow, meta);
        self.set_meta(rev, rmeta);
        if req.tsc != 0 {
            let ticks = crate::dpdk::rdtsc().saturating_sub(req.tsc);
            let _ = self.latency.record(ticks * 1_000_000_000 / self.tsc_hz);
        }
    }

    /// Tells lcore `lcore` that `flow` has its action (a full ring only delays the release
    /// to the lcore's periodic check).
    fn notify(&self, lcore: u16, flow: u32) {
        if let Some(p) = self.done.get(usize::from(lcore)) {
            let _ = p.push(flow);
        }
    }

    fn set_meta(&mut self, idx: u32, m: FlowMeta) {
        let i = idx as usize;
        if i >= self.meta.len() {
            self.meta.resize_with((self.table.capacity() as usize).max(i + 1), || None);
        }
        self.meta[i] = Some(Box::new(m));
    }

    fn clear_meta(&mut self, idx: u32) {
        if let Some(m) = self.meta.get_mut(idx as usize) {
            *m = None;
        }
    }

    /// The local VM vif a destination routes to in `vrf`, if any.
    fn local_vif_for(&self, vrf: u32, dst: std::net::IpAddr) -> Option<&crate::fib::Vif> {
        let table = self.fib.vrf(vrf)?;
        let nh = match dst {
            std::net::IpAddr::V4(a) => table.route_v4(a)?,
            std::net::IpAddr::V6(a) => table.route_v6(&a.octets())?,
        };
        match self.fib.nexthop(nh)? {
            Nexthop::Encap { vif, .. } => self.fib.vif(*vif).filter(|v| v.kind == VifType::Virtual),
            _ => None,
        }
    }

    /// Aging, TCP eviction, HOLD audit, slot reclaim.
    fn housekeeping(&mut self) {
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
        let snaps = (start..end).filter_map(|i| self.table.snapshot(i).ok().flatten());
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
            if self.table.mark_delete(idx, gen).is_err() {
                continue;
            }
            self.clear_meta(idx);
            let tcp_closed = match pair {
                Some((r, rgen, tcp_closed)) => {
                    if self.table.mark_delete(r, rgen).is_ok() {
                        self.clear_meta(r);
                    }
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

    /// Serves pending control connections: one JSON request line, one JSON response line.
    fn serve_control(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    let _ = self.handle_control(stream);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(_) => return,
            }
        }
    }

    fn handle_control(&mut self, stream: UnixStream) -> std::io::Result<()> {
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut line = String::new();
        BufReader::new(&stream).read_line(&mut line)?;
        let reply = match serde_json::from_str::<serde_json::Value>(&line) {
            Ok(v) => self.command(&v),
            Err(e) => serde_json::json!({"ok": false, "error": format!("bad request: {e}")}),
        };
        let mut w = &stream;
        writeln!(w, "{reply}")
    }

    fn command(&mut self, v: &serde_json::Value) -> serde_json::Value {
        match v.get("cmd").and_then(|c| c.as_str()) {
            Some("status") => serde_json::json!({
                "ok": true,
                "counters": self.counters,
                "setup_latency_ns": {
                    "count": self.latency.len(),
                    "p50": self.latency.value_at_quantile(0.5),
                    "p99": self.latency.value_at_quantile(0.99),
                    "p999": self.latency.value_at_quantile(0.999),
                    "max": self.latency.max(),
                },
            }),
            Some("reload") => match self.reload() {
                Ok(n) => serde_json::json!({"ok": true, "reevaluated": n}),
                Err(e) => serde_json::json!({"ok": false, "error": e}),
            },
            Some("flow") => {
                let idx = v.get("index").and_then(|i| i.as_u64()).unwrap_or(u64::MAX) as u32;
                match self.meta.get(idx as usize).and_then(|m| m.as_deref()) {
                    Some(m) => serde_json::json!({"ok": true, "meta": m}),
                    None => serde_json::json!({"ok": false, "error": format!("no agent state for flow {idx}")}),
                }
            }
            Some(c) if c.starts_with("mirror_") => match &self.mirror {
                Some(m) => m.command(v),
                None => serde_json::json!({"ok": false, "error": "mirroring is not enabled"}),
            },
            Some(other) => serde_json::json!({"ok": false, "error": format!("unknown command {other:?}")}),
            None => serde_json::json!({"ok": false, "error": "missing \"cmd\""}),
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
        let mut n = 0;
        let snaps: Vec<_> = self.table.iter_active().map(|(_, s)| s).filter(|s| s.action != Action::Hold).collect();
        for snap in snaps {
            let Some(meta) = self.meta.get(snap.index as usize).and_then(|m| m.as_deref()).cloned() else { continue };
            if meta.reverse {
                continue;
            }
            let key = snap.key;
            let ingress = self.fib.vif(meta.vif);
            let src_vif = ingress.filter(|v| v.kind == VifType::Virtual);
            let dst_vif = self.local_vif_for(key.vrf(), key.dst_ip());
            let d = self.policy.evaluate(&FlowContext {
                src: key.src_ip(),
                dst: key.dst_ip(),
                proto: key.proto(),
                sport: key.sport(),
                dport: key.dport(),
                src_vn: meta.src_vn.as_deref(),
                dst_vn: meta.dst_vn.as_deref(),
                src_vif: src_vif.map(|v| v.id),
                dst_vif: dst_vif.map(|v| v.id),
            });
            let up = flow_update(&d);
            let _ = self.table.set_action(snap.index, snap.gen, &up);
            if let Some(r) = snap.rflow {
                if let Some(e) = self.table.entry(r) {
                    let _ = self.table.set_action(r, e.gen(), &up);
                }
            }
            if let Some(m) = self.meta.get_mut(snap.index as usize).and_then(|m| m.as_deref_mut()) {
                m.action = d.action_names;
                m.nw_ace_uuid = d.nw_ace_uuid.clone();
                m.sg_rule_uuid = d.sg_rule_uuid.clone();
                m.analyzers = d.mirror_names.clone();
            }
            n += 1;
        }
        self.counters.reevaluated += n as u64;
        Ok(n)
    }
}

/// The table update for a policy decision: forward or drop with its reason, and the
/// analyzers as mirror indices (with the MIRROR flag when there is one).
fn flow_update(d: &Decision) -> FlowUpdate {
    let mut up = if d.action == PolicyAction::Pass {
        FlowUpdate::new(Action::Forward)
    } else {
        FlowUpdate::drop(d.drop_reason)
    };
    up.mirror = Some(d.mirror[0].unwrap_or(flow_table::NO_MIRROR));
    up.sec_mirror = Some(d.mirror[1].unwrap_or(flow_table::NO_MIRROR));
    if d.mirror[0].is_some() {
        up.set_flags = flow_table::flags::MIRROR;
    } else {
        up.clear_flags = flow_table::flags::MIRROR;
    }
    up
}
