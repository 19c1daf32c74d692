//! Flow and UVE export to analytics collectors over Sandesh (`[export]`), and the same flow
//! records to IPFIX collectors (`[ipfix]`, [`super::ipfix`]); with feature `trace`, the same
//! thread and session also export packet-trace steps ([`super::trace_export`]).
//!
//! The exporter runs on its own thread. On a timer it scans the shared flow table in slices
//! through the flow-table crate's snapshot API (the whole table within `scan_percent` of the
//! age time, at least [`MIN_SLICE`] entries per tick, like tf's FlowStatsCollector), keeps the
//! last exported cumulative counters of every flow by flow index, and exports a
//! `FlowLogData` record
//! * at **setup** (the first scan that sees the flow out of HOLD), with the counters so far
//!   as its diffs,
//! * **periodically** while any of bytes, packets or the four mirror counters changed since
//!   the previous record (`diff_bytes`, `diff_packets`; `mirror_*` cumulative),
//! * at **teardown**, with `teardown_time` and the final figures: a deleted or evicted flow
//!   stays readable (flags `DELETE_MARKED` / `EVICTED`, counters final) until the agent
//!   reclaims its slot, and the scan that sees it so exports its last diffs; a flow whose slot
//!   was already reclaimed (or reused) when the scan came by gets a teardown record with the
//!   figures of the previous scan.
//!
//! **Restarts.** Flow UUIDs are `index-gen-salt`, the salt derived from the flow table
//! file's identity ([`FlowTable::identity`]: its creation time and generation), so they stay
//! the same when a restarted vRouter maps the same table again, and differ for a table
//! created anew. With a state file ([`FlowScanner::with_state_file`], which the exporter
//! thread uses with `<run_dir>/export-state` unless told otherwise) the per-flow state (last
//! exported counters, exported / torn-down, the flow's key and verdict) is written to the
//! file before each record leaves and restored at start when the file belongs to the same
//! table. The scans then go on as without a restart: a restored flow whose entry still has
//! the same generation gets its next record with exactly the diffs since its last one before
//! the restart (no second setup record), one whose entry is deleted, gone or reused gets its
//! teardown record. See [`super::export_state`] for the file, the start-up checks and what a
//! crash can lose.
//!
//! Records go to a [`RecordSink`] with their [`RecordFacts`] (which record it is, the flow's
//! vifs, VRF, VNI, last packet, TCP state and verdict: what IPFIX carries beyond
//! `FlowLogData`). The thread's sink ([`Sinks`]) hands each record to the IPFIX exporter and
//! to [`sandesh::SessionHandle`], which buffers them (bounded, counted) across collector
//! outages: one scan, one set of diffs and one sampling decision for both exports.
//!
//! Export sampling follows sandesh-reference / vrouter-reference §7.4 ([`Sampler`]). With a
//! Sandesh session, every `uve_interval_s` it sends a `UVEVMIStats` per virtual vif (cumulative
//! and per-interval interface counters from the stats region, plus the mirrored packets and
//! bytes of the flows whose local endpoint is that VMI) and a `VrouterStats` for the vRouter.
//!
//! Endpoint metadata (VNs, VM, VMI) comes from the configuration, analyzer names from the
//! flow entry's mirror indices (the analyzers' configured names), the action from the entry
//! (`pass`/`deny`, `|mirror` when mirrored), and the rule UUIDs from evaluating the policy
//! engine on the flow's forward direction.
//!
//! Sampling scales `diff_bytes`/`diff_packets` of sampled records (so sums over records are
//! then estimates); `bytes`/`packets` and the mirror counters are always the exact cumulative
//! values.
//!
//! Known limits: counts a flow takes between the last scan and the reclaim of its slot are
//! lost when the agent reclaims before the scan visits the deleted entry (aged flows are idle
//! by definition; an evicted TCP flow can lose its last packets when the table is larger than
//! one slice per tick); `forward_flow` is decided by setup time (the earlier entry of a pair
//! is the forward flow); rule UUIDs come from re-evaluating the current policy, so after a
//! policy reload (or a restart with another configuration) they describe the new policy;
//! after an upgrade from a build without the export state, or with another layout of it,
//! every flow is exported afresh once (setup records with the counters so far; under new
//! UUIDs when coming from a build that salted them with its start time).

use super::export_state::{self, ExportState, Loaded, SavedFlow};
use crate::agent::policy::{FlowContext, PolicyEngine};
use crate::config::{self, Config, VifType};
use crate::fib::{Fib, Nexthop};
use crate::stats::StatsReader;
use flow_table::{flow_drop_reason_name, Action, FlowAccounting, FlowSnapshot, FlowTable, Gen, TableIdentity};
use sandesh::{
    FlowLogData, GeneratorId, MirrorAnalyzerStats, MirrorLossStats, SessionConfig, SessionHandle, SessionStats,
    UVEVMIStats, VMIStats, VmInterfaceStats, VrouterStats, VrouterStatsAgent,
};
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use vrouter_abi::mirror::{MirrorReader, LOSS_REASONS};

/// Fewest entries scanned per tick (tf `kMinFlowsPerTimer`).
pub const MIN_SLICE: u32 = 3000;

pub use super::export_state::{FreshReason, STATE_FILE};
pub use vrouter_abi::export::{read_counters, write_counters, ExportCounters, COUNTERS_FILE};
/// Exporter errors.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The Sandesh session could not start.
    #[error("export session: {0}")]
    Session(#[from] sandesh::SessionError),
    /// The policy engine could not be built (for rule UUIDs).
    #[error("export policy: {0}")]
    Policy(#[from] crate::agent::policy::PolicyError),
    /// The exporter thread could not be spawned.
    #[error("spawning the exporter thread: {0}")]
    Spawn(#[source] std::io::Error),
    /// The export state file could not be written.
    #[error("export state: {0}")]
    State(#[from] shm::RegionError),
    /// The IPFIX exporter could not start.
    #[error("IPFIX export: {0}")]
    Ipfix(#[from] ipfix::ExportError),
}

// ---------------------------------------------------------------- sampling (§7.4)

/// Default threshold (tf `kDefaultFlowSamplingThreshold`).
pub const SAMPLING_DEFAULT_THRESHOLD: u64 = 500;
/// Floor (tf `kMinFlowSamplingThreshold`).
pub const SAMPLING_MIN_THRESHOLD: u64 = 20;
/// Threshold recomputation period (tf `FlowThresoldUpdateTime`).
pub const SAMPLING_UPDATE: Duration = Duration::from_secs(2);

/// What sampling decided for one record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sample {
    /// Export unchanged.
    Export,
    /// Export with diffs divided by this probability (0 < p < 1).
    Scaled(f64),
    /// Do not export.
    Drop,
}

/// Flow export sampling: with a configured rate C records/s the threshold adapts to the
/// measured export rate R; records whose `diff_bytes` is below the threshold are exported with
/// probability `diff_bytes / threshold` (and their diffs scaled up accordingly), larger ones
/// always. Rate 0 exports nothing; no rate exports everything.
#[derive(Debug)]
pub struct Sampler {
    rate: Option<u32>,
    threshold: u64,
    started: bool,
    window_start: Instant,
    exported_in_window: u64,
    rng: u64,
}

impl Sampler {
    /// A sampler for `rate` (see [`config::ExportConfig::flow_export_rate`]).
    pub fn new(rate: Option<u32>, seed: u64) -> Self {
        Self {
            rate,
            threshold: SAMPLING_DEFAULT_THRESHOLD,
            started: false,
            window_start: Instant::now(),
            exported_in_window: 0,
            rng: seed | 1,
        }
    }

    /// Current threshold (0 when sampling is off).
    pub fn threshold(&self) -> u64 {
        match self.rate {
            Some(r) if r > 0 => self.threshold,
            _ => 0,
        }
    }

    fn next_rand(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Recomputes the threshold when a window of [`SAMPLING_UPDATE`] has passed.
    pub fn update(&mut self, now: Instant) {
        let Some(c) = self.rate.filter(|r| *r > 0) else {
            return;
        };
        let el = now.duration_since(self.window_start);
        if el < SAMPLING_UPDATE {
            return;
        }
        let r = self.exported_in_window as f64 / el.as_secs_f64();
        self.adjust(r, f64::from(c));
        self.window_start = now;
        self.exported_in_window = 0;
    }

    /// The threshold rule of §7.4 for measured rate `r` and configured rate `c`.
    pub fn adjust(&mut self, r: f64, c: f64) {
        if r >= 0.8 * c {
            self.started = true;
        }
        if r < 0.8 * c {
            if !self.started {
                self.threshold = SAMPLING_DEFAULT_THRESHOLD;
            } else if r < 0.5 * c {
                self.threshold = (self.threshold / 4).max(SAMPLING_MIN_THRESHOLD);
            } else {
                self.threshold = (self.threshold / 2).max(SAMPLING_MIN_THRESHOLD);
            }
        } else {
            let factor = if r > 3.0 * c {
                4
            } else if r > 2.0 * c {
                3
            } else if r > 1.25 * c {
                2
            } else {
                1
            };
            if let Some(t) = self.threshold.checked_mul(factor) {
                self.threshold = t;
            }
        }
    }

    /// Decides for one record; `teardown_of_exported` exempts the final record of a flow that
    /// was exported before.
    pub fn decide(&mut self, diff_bytes: u64, teardown_of_exported: bool) -> Sample {
        let d = match self.rate {
            None => Sample::Export,
            Some(0) => Sample::Drop,
            Some(_) => {
                if diff_bytes >= self.threshold || teardown_of_exported || !self.started {
                    Sample::Export
                } else {
                    let num = self.next_rand() % self.threshold;
                    if num > diff_bytes {
                        Sample::Drop
                    } else {
                        Sample::Scaled(diff_bytes as f64 / self.threshold as f64)
                    }
                }
            }
        };
        if d != Sample::Drop {
            self.exported_in_window += 1;
        }
        d
    }
}

// ---------------------------------------------------------------- endpoints from config

#[derive(Debug, Clone)]
struct Endpoint {
    vif: u16,
    vn: Option<Arc<str>>,
    vm: Option<Arc<str>>,
    vmi_uuid: Option<Arc<str>>,
}

/// What the exporter knows from the configuration.
struct Context {
    /// Local VMIs by (VRF, address).
    endpoints: HashMap<(u32, IpAddr), Endpoint>,
    /// Local VMIs by vif id.
    by_vif: HashMap<u16, Endpoint>,
    /// VN of each VRF (the VN of its VMIs), for remote endpoints.
    vrf_vn: HashMap<u32, Arc<str>>,
    /// Analyzer name by mirror index.
    analyzers: Vec<Option<Arc<str>>>,
    /// VXLAN VNI of each VRF that has one.
    vrf_vni: HashMap<u32, u32>,
    vrouter_ip: Arc<str>,
    policy: Option<PolicyEngine>,
    /// Routes, for the tunnel towards a remote endpoint.
    fib: Option<Fib>,
    /// UVE identity of each virtual vif.
    vmis: Vec<VmiUve>,
}

#[derive(Debug, Clone)]
struct VmiUve {
    vif: u16,
    name: String,
    vm: Option<String>,
    vn: Option<String>,
}

impl Context {
    fn from_config(cfg: &Config, with_policy: bool) -> Result<Context, ExportError> {
        let mut endpoints = HashMap::new();
        let mut vrf_vn = HashMap::new();
        let mut by_vif = HashMap::new();
        let mut vmis = Vec::new();
        for v in &cfg.vifs {
            let v = v.get_ref();
            if v.kind != VifType::Virtual {
                continue;
            }
            let vn: Option<Arc<str>> = v.vn_name.as_deref().map(Arc::from);
            let ep = Endpoint {
                vif: v.id,
                vn: vn.clone(),
                vm: v.vm_uuid.as_deref().map(Arc::from),
                vmi_uuid: v.vmi_uuid.as_deref().map(Arc::from),
            };
            if let Some(ip) = v.ip {
                endpoints.insert((v.vrf, IpAddr::V4(ip)), ep.clone());
            }
            if let Some(ip) = v.ip6 {
                endpoints.insert((v.vrf, IpAddr::V6(ip)), ep.clone());
            }
            by_vif.insert(v.id, ep.clone());
            if let Some(vn) = &vn {
                vrf_vn.entry(v.vrf).or_insert_with(|| vn.clone());
            }
            vmis.push(VmiUve {
                vif: v.id,
                name: v.vmi_uuid.clone().unwrap_or_else(|| v.name.clone()),
                vm: v.vm_uuid.clone(),
                vn: v.vn_name.clone(),
            });
        }
        let mut analyzers = vec![None; 256];
        if let Ok(idx) = config::assign_mirror_indices(&cfg.analyzers) {
            for (a, i) in cfg.analyzers.iter().zip(idx) {
                analyzers[usize::from(i)] = Some(Arc::from(a.get_ref().name.as_str()));
            }
        }
        let policy = if with_policy { Some(PolicyEngine::from_config(cfg)?) } else { None };
        let vrf_vni = cfg.vrfs.iter().filter_map(|v| Some((v.get_ref().id, v.get_ref().vxlan_vni?))).collect();
        Ok(Context {
            vrf_vni,
            fib: Fib::from_config(cfg).ok(),
            endpoints,
            by_vif,
            vrf_vn,
            analyzers,
            vrouter_ip: Arc::from(cfg.vrouter.router_ip.to_string()),
            policy,
            vmis,
        })
    }

    fn endpoint(&self, vrf: u32, ip: IpAddr) -> Option<&Endpoint> {
        self.endpoints.get(&(vrf, ip))
    }

    /// The tunnel a packet to `ip` in `vrf` takes: (peer vRouter, underlay IP protocol).
    /// MPLSoUDP and VXLAN are both UDP (17); ECMP uses its first tunnel member.
    fn tunnel_to(&self, vrf: u32, ip: IpAddr) -> Option<(std::net::Ipv4Addr, u16)> {
        let fib = self.fib.as_ref()?;
        let table = fib.vrf(vrf)?;
        let nh = match ip {
            IpAddr::V4(a) => table.route_v4(a)?,
            IpAddr::V6(a) => table.route_v6(&a.octets())?,
        };
        let tunnel = |n: &Nexthop| match n {
            Nexthop::Tunnel { dst_ip, .. } => Some((*dst_ip, 17)),
            _ => None,
        };
        match fib.nexthop(nh)? {
            Nexthop::Ecmp { members, .. } => members.iter().find_map(|m| fib.nexthop(*m).and_then(tunnel)),
            n => tunnel(n),
        }
    }

    /// The vif a packet to `ip` in `vrf` leaves on (ECMP: its first member's).
    fn route_vif(&self, vrf: u32, ip: IpAddr) -> Option<u16> {
        let fib = self.fib.as_ref()?;
        let table = fib.vrf(vrf)?;
        let nh = match ip {
            IpAddr::V4(a) => table.route_v4(a)?,
            IpAddr::V6(a) => table.route_v6(&a.octets())?,
        };
        let vif = |n: &Nexthop| match n {
            Nexthop::Encap { vif, .. } | Nexthop::Tunnel { vif, .. } | Nexthop::Receive { vif, .. } => Some(*vif),
            _ => None,
        };
        match fib.nexthop(nh)? {
            Nexthop::Ecmp { members, .. } => members.iter().find_map(|m| fib.nexthop(*m).and_then(vif)),
            n => vif(n),
        }
    }

    fn vmi(&self, vif: u16) -> Option<&Endpoint> {
        self.by_vif.get(&vif)
    }

    fn analyzer(&self, index: u8) -> Option<Arc<str>> {
        self.analyzers.get(usize::from(index)).cloned().flatten()
    }
}

// ---------------------------------------------------------------- per-flow state

/// Cumulative counters of a flow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    pub bytes: u64,
    pub packets: u64,
    pub mirror_bytes: u64,
    pub mirror_packets: u64,
    pub sec_mirror_bytes: u64,
    pub sec_mirror_packets: u64,
    /// What reconciles the flow's packets with its copies ([`flow_table::FlowAccounting`]).
    /// Not kept in the export state file: after a restart they count as not exported yet,
    /// so the next record carries them (cumulative, so nothing is counted twice).
    pub accounting: FlowAccounting,
}

impl Counters {
    fn of(s: &FlowSnapshot) -> Self {
        Self {
            bytes: s.bytes,
            packets: s.packets,
            mirror_bytes: s.mirror_bytes,
            mirror_packets: s.mirror_packets,
            sec_mirror_bytes: s.sec_mirror_bytes,
            sec_mirror_packets: s.sec_mirror_packets,
            accounting: s.accounting,
        }
    }

    /// `self - old`, saturating (counters only grow while the generation is the same).
    fn since(&self, old: &Counters) -> Counters {
        Counters {
            bytes: self.bytes.saturating_sub(old.bytes),
            packets: self.packets.saturating_sub(old.packets),
            mirror_bytes: self.mirror_bytes.saturating_sub(old.mirror_bytes),
            mirror_packets: self.mirror_packets.saturating_sub(old.mirror_packets),
            sec_mirror_bytes: self.sec_mirror_bytes.saturating_sub(old.sec_mirror_bytes),
            sec_mirror_packets: self.sec_mirror_packets.saturating_sub(old.sec_mirror_packets),
            accounting: FlowAccounting {
                mirror_lost: self.accounting.mirror_lost.saturating_sub(old.accounting.mirror_lost),
                sec_mirror_lost: self.accounting.sec_mirror_lost.saturating_sub(old.accounting.sec_mirror_lost),
                // Set, not counted: a change is what matters.
                before_mirror: u64::from(self.accounting.before_mirror != old.accounting.before_mirror),
                held_dropped: self.accounting.held_dropped.saturating_sub(old.accounting.held_dropped),
            },
        }
    }
}

/// The fixed part of a flow's records, compact (shared strings are `Arc`s from the
/// configuration and the policy engine; the record is built at emit time).
#[derive(Debug)]
struct FlowInfo {
    index: u32,
    setup_ms: u64,
    key: flow_table::FlowKey,
    src_vn: Option<Arc<str>>,
    dst_vn: Option<Arc<str>>,
    /// The local VMI endpoint (source if local, else destination).
    local: Option<u16>,
    direction_ing: bool,
    forward: bool,
    /// Reverse flow: index, generation, setup time.
    reverse: Option<(u32, Gen, u64)>,
    action: &'static str,
    /// The entry's action and mirror indices (what the export state keeps of the verdict).
    action_code: Action,
    mirrors: [u8; 2],
    drop_reason: u8,
    underlay_sport: u16,
    /// Peer vRouter and underlay protocol when the remote endpoint is behind a tunnel.
    tunnel: Option<(std::net::Ipv4Addr, u16)>,
    nw_ace_uuid: Option<Arc<str>>,
    sg_rule_uuid: Option<Arc<str>>,
    analyzers: [Option<Arc<str>>; 2],
    /// The vif the flow comes in on: its source VMI's, else the one towards its source.
    ingress_vif: Option<u16>,
    /// The vif the flow leaves on: its destination VMI's, else its route's.
    egress_vif: Option<u16>,
    /// The VRF's VXLAN VNI.
    vni: Option<u32>,
}

/// What the collector does not have of a flow because export sampling left its records
/// out: the growth of its counters since its last exported record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SampledOut {
    /// Packets of the flow.
    pub packets: u64,
    /// Bytes of the flow.
    pub bytes: u64,
    /// Copies sent to the primary and the secondary mirror.
    pub mirror_packets: [u64; 2],
}

impl SampledOut {
    fn of(d: &Counters) -> SampledOut {
        SampledOut { packets: d.packets, bytes: d.bytes, mirror_packets: [d.mirror_packets, d.sec_mirror_packets] }
    }

    fn add(&mut self, o: &SampledOut) {
        self.packets += o.packets;
        self.bytes += o.bytes;
        self.mirror_packets[0] += o.mirror_packets[0];
        self.mirror_packets[1] += o.mirror_packets[1];
    }
}

/// What sampling left out of one analyzer's flows (see [`FlowScanner::sampled_out`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AnalyzerSampledOut {
    /// Packets of its flows.
    pub packets: u64,
    /// Bytes of its flows.
    pub bytes: u64,
    /// Copies sent to it.
    pub mirror_packets: u64,
}

impl FlowInfo {
    /// Whether records built from `self` and `other` say the same (the verdict, what decided
    /// it, the VNs, the analyzers).
    fn same_record(&self, other: &FlowInfo) -> bool {
        fn strings(i: &FlowInfo) -> [&Option<Arc<str>>; 6] {
            [&i.nw_ace_uuid, &i.sg_rule_uuid, &i.src_vn, &i.dst_vn, &i.analyzers[0], &i.analyzers[1]]
        }
        let (a, b) = (strings(self), strings(other));
        (self.action, self.action_code, self.mirrors, self.drop_reason)
            == (other.action, other.action_code, other.mirrors, other.drop_reason)
            && a.iter().zip(&b).all(|(x, y)| x.as_deref() == y.as_deref())
    }
}

#[derive(Debug)]
struct FlowState {
    gen: Gen,
    info: FlowInfo,
    last: Counters,
    /// Counter growth whose records sampling dropped (zero once a record is exported).
    pending: SampledOut,
    exported: bool,
    /// The teardown record was sent (the slot still shows the deleted flow).
    torn_down: bool,
    /// The export state file holds this flow (its fixed part was written).
    saved: bool,
    /// The flow's last packet (data-plane clock, ms) and TCP state bits as last seen (not in
    /// the state file: after a restart the next scan sees them again).
    last_seen: u64,
    tcp_state: u16,
    /// The configuration generation its fixed part was built with ([`FlowScanner::set_config`]).
    ctx_gen: u64,
}

impl FlowState {
    /// What the export state file keeps of this flow.
    fn saved_form(&self) -> SavedFlow {
        let i = &self.info;
        SavedFlow {
            gen: self.gen,
            exported: self.exported,
            torn_down: self.torn_down,
            setup_ms: i.setup_ms,
            last: self.last,
            key: i.key,
            action: i.action_code,
            drop_reason: i.drop_reason,
            mirror: i.mirrors[0],
            sec_mirror: i.mirrors[1],
            underlay_sport: i.underlay_sport,
            forward: i.forward,
            reverse: i.reverse,
        }
    }
}

/// What a flow's records are built from besides the configuration: its entry when first
/// seen, or after a restart its saved slot.
struct Facts {
    index: u32,
    key: flow_table::FlowKey,
    setup_ms: u64,
    action: Action,
    drop_reason: u8,
    mirror: u8,
    sec_mirror: u8,
    underlay_sport: u16,
}

impl Facts {
    fn of(s: &FlowSnapshot) -> Facts {
        Facts {
            index: s.index,
            key: s.key,
            setup_ms: s.setup_time,
            action: s.action,
            drop_reason: s.drop_reason,
            mirror: s.mirror,
            sec_mirror: s.sec_mirror,
            underlay_sport: s.underlay_sport,
        }
    }

    fn saved(index: u32, f: &SavedFlow) -> Facts {
        Facts {
            index,
            key: f.key,
            setup_ms: f.setup_ms,
            action: f.action,
            drop_reason: f.drop_reason,
            mirror: f.mirror,
            sec_mirror: f.sec_mirror,
            underlay_sport: f.underlay_sport,
        }
    }
}

/// What the exporter started from ([`FlowScanner::with_state_file`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateOrigin {
    /// The previous process's export state of this flow table.
    Restored {
        /// The state file.
        path: PathBuf,
        /// Flows restored (torn-down flows waiting for their slot's reclaim included).
        flows: usize,
    },
    /// No usable previous state: every flow is exported afresh.
    Fresh {
        /// The state file.
        path: PathBuf,
        /// Why.
        reason: FreshReason,
    },
}

impl std::fmt::Display for StateOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateOrigin::Restored { path, flows } => write!(
                f,
                "export state {}: restored {flows} flow(s); exporting on from the previous process's last records",
                path.display()
            ),
            StateOrigin::Fresh { path, reason } => {
                write!(f, "export state {}: {reason}; exporting every flow afresh", path.display())
            }
        }
    }
}

/// The salt of the flow UUIDs of the table `id` (splitmix64 of its identity).
fn uuid_salt(id: TableIdentity) -> u64 {
    let mut z = id.created_unix_ns ^ id.generation.rotate_left(32) ^ 0x9e37_79b9_7f4a_7c15;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The FlowLogData action string for an entry action, the policy's log bit and mirroring.
fn action_name(action: Action, log: bool, mirror: bool) -> &'static str {
    match (action, log, mirror) {
        (Action::Forward | Action::Nat, false, false) => "pass",
        (Action::Forward | Action::Nat, false, true) => "pass|mirror",
        (Action::Forward | Action::Nat, true, false) => "pass|log",
        (Action::Forward | Action::Nat, true, true) => "pass|log|mirror",
        (Action::Drop, false, false) => "deny",
        (Action::Drop, false, true) => "deny|mirror",
        (Action::Drop, true, false) => "deny|log",
        (Action::Drop, true, true) => "deny|log|mirror",
        (Action::Hold, _, _) => "hold",
    }
}

/// Flags of a deleted or evicted flow.
const RETIRED: u32 = flow_table::flags::DELETE_MARKED | flow_table::flags::EVICTED;

/// Which of a flow's records this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// The first record of a flow.
    Setup,
    /// A record while the flow is active.
    Periodic,
    /// The last record of a flow.
    Teardown,
}

/// Why a flow ended (teardown records).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// Not ended (setup and periodic records).
    Active,
    /// Idle past `flow.age_timeout_s`.
    Idle,
    /// TCP closed (FIN or RST seen), or a closed TCP flow evicted.
    EndOfFlow,
    /// Deleted while not idle: its vif, VM or VRF went away, or a flush.
    Forced,
}

/// What a record's other forms (IPFIX) need besides its [`FlowLogData`]: which record it is
/// and the flow's forwarding context, from the same scan that made the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordFacts {
    /// Setup, periodic or teardown.
    pub kind: RecordKind,
    /// Why the flow ended ([`EndReason::Active`] unless `kind` is teardown).
    pub end: EndReason,
    /// The flow-table entry.
    pub index: u32,
    /// Its generation.
    pub gen: Gen,
    /// The flow key's VRF.
    pub vrf: u32,
    /// The vif the flow comes in on.
    pub ingress_vif: Option<u16>,
    /// The vif the flow leaves on.
    pub egress_vif: Option<u16>,
    /// The VRF's VXLAN VNI.
    pub vni: Option<u32>,
    /// Setup time, ms since the epoch.
    pub setup_ms: u64,
    /// The flow's last packet, ms since the epoch (at least `setup_ms`).
    pub last_seen_ms: u64,
    /// The entry's TCP state bits ([`flow_table::tcp_flags`]).
    pub tcp_state: u16,
    /// The verdict.
    pub action: Action,
    /// `FLOW_DR_*` code of a dropped flow.
    pub drop_reason: u8,
}

/// Where records go.
pub trait RecordSink {
    /// Hands over one record; false when it was refused (and counted) by the sink.
    fn send(&mut self, rec: FlowLogData, facts: &RecordFacts) -> bool;
}

impl RecordSink for SessionHandle {
    fn send(&mut self, rec: FlowLogData, _: &RecordFacts) -> bool {
        self.send_flow(rec)
    }
}

impl RecordSink for Vec<FlowLogData> {
    fn send(&mut self, rec: FlowLogData, _: &RecordFacts) -> bool {
        self.push(rec);
        true
    }
}

impl RecordSink for Vec<(FlowLogData, RecordFacts)> {
    fn send(&mut self, rec: FlowLogData, facts: &RecordFacts) -> bool {
        self.push((rec, *facts));
        true
    }
}

impl RecordSink for super::ipfix::IpfixSink {
    fn send(&mut self, rec: FlowLogData, facts: &RecordFacts) -> bool {
        self.add(&rec, facts);
        true
    }
}

/// The exporter thread's sinks: the Sandesh session (`[export]`) and the IPFIX exporter
/// (`[ipfix]`), each optional, fed the same records. A record counts as exported when the
/// session took it (or, without a session, when IPFIX did).
pub struct Sinks<'a> {
    /// The Sandesh session.
    pub sandesh: Option<&'a mut SessionHandle>,
    /// The IPFIX exporter.
    pub ipfix: Option<&'a mut super::ipfix::IpfixSink>,
}

impl RecordSink for Sinks<'_> {
    fn send(&mut self, rec: FlowLogData, facts: &RecordFacts) -> bool {
        if let Some(i) = self.ipfix.as_deref_mut() {
            i.add(&rec, facts);
        }
        match self.sandesh.as_deref_mut() {
            Some(s) => s.send_flow(rec),
            None => true,
        }
    }
}

/// Why a retired flow (or one whose slot went away) ended: a closed TCP flow ends, an idle
/// one timed out, anything else was deleted.
fn end_reason(flags: u32, tcp_state: u16, last_seen_ms: u64, now_ms: u64, age_ms: u64) -> EndReason {
    use flow_table::tcp_flags::{DEAD, FIN, RST};
    if flags & flow_table::flags::EVICTED != 0 || tcp_state & (FIN | RST | DEAD) != 0 {
        EndReason::EndOfFlow
    } else if now_ms.saturating_sub(last_seen_ms) >= age_ms {
        EndReason::Idle
    } else {
        EndReason::Forced
    }
}

/// The moment of one record: its kind, why the flow ended, its TCP state and last packet.
struct Moment {
    kind: RecordKind,
    end: EndReason,
    tcp_flags: u16,
    last_seen: u64,
    teardown_us: Option<i64>,
}

/// Mirror totals attributed to one VMI.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MirrorTotals {
    /// Packets mirrored (both analyzers).
    pub packets: u64,
    /// Bytes mirrored (both analyzers).
    pub bytes: u64,
}

/// The flow-table scanner: state per flow index, diffs, sampling. Independent of threads and
/// sockets (records go to a [`RecordSink`]).
pub struct FlowScanner {
    table: Arc<FlowTable>,
    ctx: Context,
    /// By flow index; boxed so an empty slot costs one word.
    states: Vec<Option<Box<FlowState>>>,
    cursor: u32,
    slice: u32,
    sweep_started: Instant,
    /// Salt of the flow UUIDs (from the table's identity: stable across restarts).
    salt: u64,
    /// The export state file, when the scanner keeps one.
    state: Option<ExportState>,
    sampler: Sampler,
    counters: ExportCounters,
    vmi_mirror: HashMap<u16, MirrorTotals>,
    total_mirror: MirrorTotals,
    /// `flow.age_timeout_s` in ms (tells idle flows from deleted ones).
    age_ms: u64,
    /// By analyzer name (see [`FlowScanner::sampled_out`]).
    sampled_out: HashMap<Arc<str>, AnalyzerSampledOut>,
    /// The mirror table, when the scanner reads one: analyzer names by index as the data
    /// plane has them (entries created at run time included).
    mirror: Option<MirrorReader>,
    /// Bumped by each [`FlowScanner::set_config`].
    ctx_gen: u64,
}

fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

impl FlowScanner {
    /// A scanner over `table` for the configuration `cfg`: slices sized so the whole table is
    /// visited within `scan_percent` of `flow.age_timeout_s` at one slice per
    /// `scan_interval_ms`.
    pub fn new(cfg: &Config, table: Arc<FlowTable>) -> Result<FlowScanner, ExportError> {
        let e = &cfg.export;
        let ctx = Context::from_config(cfg, true)?;
        let cap = table.capacity();
        let sweep_ms = u64::from(cfg.flow.age_timeout_s) * 1000 * u64::from(e.scan_percent) / 100;
        let ticks = (sweep_ms / u64::from(e.scan_interval_ms)).max(1);
        let slice = (u64::from(cap) / ticks + 1).max(u64::from(MIN_SLICE)).min(u64::from(cap)) as u32;
        let salt = uuid_salt(table.identity());
        Ok(FlowScanner {
            states: (0..cap).map(|_| None).collect(),
            table,
            ctx,
            cursor: 0,
            slice,
            sweep_started: Instant::now(),
            salt,
            state: None,
            sampler: Sampler::new(e.flow_export_rate, salt ^ now_us() as u64),
            counters: ExportCounters::default(),
            vmi_mirror: HashMap::new(),
            total_mirror: MirrorTotals::default(),
            age_ms: u64::from(cfg.flow.age_timeout_s) * 1000,
            sampled_out: HashMap::new(),
            mirror: None,
            ctx_gen: 0,
        })
    }

    /// [`FlowScanner::new`] that also keeps its per-flow state in the file at `path`
    /// (`<run_dir>/`[`STATE_FILE`] in the vRouter): when the file holds the state of this
    /// very table (same identity and capacity, a layout this build reads), every flow of it
    /// is restored, with the exporter's counters; otherwise the scanner starts empty, and
    /// a file it cannot use is kept as `<path>.old`. Either way a new file is written at
    /// `path` before this returns. The returned [`StateOrigin`] says which, in one line.
    ///
    /// A restored flow's records are built as before the restart: the fixed part from the
    /// key, verdict and reverse flow saved when the flow was first seen, with the
    /// configuration (VNs, VMIs, rule UUIDs, analyzer names, tunnels) applied anew. The scans
    /// then carry on as if there had been no restart: a restored flow whose entry is gone or
    /// holds another flow (other generation) gets its teardown record with the last exported
    /// figures, a deleted one that is still readable with its final figures.
    pub fn with_state_file(
        cfg: &Config,
        table: Arc<FlowTable>,
        path: &Path,
    ) -> Result<(FlowScanner, StateOrigin), ExportError> {
        let mut s = FlowScanner::new(cfg, table)?;
        let identity = s.table.identity();
        let cap = s.table.capacity();
        let (saved, reason) = match export_state::load(path, identity, cap) {
            Loaded::Usable(prev) => {
                s.counters = prev.counters();
                (prev.flows().collect::<Vec<_>>(), None)
            }
            Loaded::Fresh(reason) => (Vec::new(), Some(reason)),
        };
        for (idx, f) in &saved {
            let st = s.restore(*idx, f);
            if !st.torn_down {
                s.counters.flows_tracked += 1;
            }
            s.states[*idx as usize] = Some(Box::new(st));
        }
        s.state = Some(ExportState::create(path, identity, cap, &s.counters, saved.iter().map(|(i, f)| (*i, f)))?);
        let path = path.to_path_buf();
        let origin = match reason {
            None => StateOrigin::Restored { path, flows: saved.len() },
            Some(reason) => StateOrigin::Fresh { path, reason },
        };
        Ok((s, origin))
    }

    /// The in-memory state of flow `idx` from its saved slot. The fixed part comes from the
    /// slot, not from the entry, even when the entry still holds the flow: a deleted entry
    /// no longer shows the verdict (action DROP, mirrors cleared) the records had.
    fn restore(&self, idx: u32, f: &SavedFlow) -> FlowState {
        let info = self.info_of(&Facts::saved(idx, f), f.forward, f.reverse);
        FlowState {
            gen: f.gen,
            info,
            last: f.last,
            exported: f.exported,
            torn_down: f.torn_down,
            saved: true,
            last_seen: 0,
            tcp_state: 0,
            pending: SampledOut::default(),
            ctx_gen: self.ctx_gen,
        }
    }

    /// The export state file, when the scanner keeps one.
    pub fn state_file(&self) -> Option<&ExportState> {
        self.state.as_ref()
    }

    /// Writes `st` to the state file (before its record leaves).
    fn persist(&self, st: &mut FlowState) {
        if let Some(file) = &self.state {
            file.save(st.info.index, &st.saved_form(), !st.saved);
            st.saved = true;
        }
    }

    /// Forgets flow `idx` in the state file.
    fn forget(&self, idx: u32) {
        if let Some(file) = &self.state {
            file.clear(idx);
        }
    }

    /// Stores the counters in the state file.
    fn save_counters(&self) {
        if let Some(file) = &self.state {
            file.store_counters(&self.counters);
        }
    }

    /// Entries visited per tick.
    pub fn slice(&self) -> u32 {
        self.slice
    }

    /// Overrides the slice size (tests, benchmarks).
    pub fn set_slice(&mut self, slice: u32) {
        self.slice = slice.clamp(1, self.table.capacity().max(1));
    }

    /// The counters so far (session fields are filled by the exporter thread).
    pub fn counters(&self) -> &ExportCounters {
        &self.counters
    }

    /// Mirror totals by vif (flows attributed to their local VMI endpoint).
    pub fn vmi_mirror(&self, vif: u16) -> MirrorTotals {
        self.vmi_mirror.get(&vif).copied().unwrap_or_default()
    }

    /// Mirror totals over all flows.
    pub fn total_mirror(&self) -> MirrorTotals {
        self.total_mirror
    }

    /// By analyzer name: the packets, bytes and copies of its flows that no exported record
    /// carries, because export sampling left their records out (and no later record of
    /// the flow caught up). The collector's records of the analyzer's flows plus this are
    /// what the vRouter counted when it last scanned them.
    pub fn sampled_out(&self, analyzer: &str) -> AnalyzerSampledOut {
        self.sampled_out.get(analyzer).copied().unwrap_or_default()
    }

    /// The name of the analyzer at mirror index `index`: the mirror table's entry when the
    /// scanner reads the table, else the configuration's.
    fn analyzer_name(&self, index: u8) -> Option<Arc<str>> {
        let configured = self.ctx.analyzer(index);
        let Some(m) = &self.mirror else { return configured };
        let e = m.entry(usize::from(index))?;
        match configured {
            Some(c) if *c == *e.analyzer_name => Some(c),
            _ => Some(Arc::from(e.analyzer_name.as_str())),
        }
    }

    /// Reads analyzer names from `reader`, the data plane's mirror table (entries created at
    /// run time included), and reports its entries in the vRouter UVE.
    pub fn set_mirror_reader(&mut self, reader: MirrorReader) {
        self.mirror = Some(reader);
    }

    /// Takes a new desired state (live programming): VNs, VMIs, analyzer names and the
    /// policy the rule UUIDs come from. Flows already seen keep their records' fixed part
    /// until their verdict changes.
    pub fn set_config(&mut self, cfg: &Config) -> Result<(), ExportError> {
        self.ctx = Context::from_config(cfg, true)?;
        // Every flow's fixed part is checked again when the scan next visits it.
        self.ctx_gen += 1;
        Ok(())
    }

    /// Moves a flow's sampled-out growth `d` from the analyzers `from` to `to` (primary,
    /// secondary; `None`: none).
    fn move_sampled_out(&mut self, from: &[Option<Arc<str>>; 2], to: &[Option<Arc<str>>; 2], d: &SampledOut) {
        if *d == SampledOut::default() {
            return;
        }
        for (k, name) in from.iter().enumerate() {
            if let Some(e) = name.as_ref().and_then(|n| self.sampled_out.get_mut(n)) {
                e.packets = e.packets.saturating_sub(d.packets);
                e.bytes = e.bytes.saturating_sub(d.bytes);
                e.mirror_packets = e.mirror_packets.saturating_sub(d.mirror_packets[k]);
            }
        }
        for (k, name) in to.iter().enumerate() {
            if let Some(n) = name {
                let e = self.sampled_out.entry(n.clone()).or_default();
                e.packets += d.packets;
                e.bytes += d.bytes;
                e.mirror_packets += d.mirror_packets[k];
            }
        }
    }

    fn uuid(&self, idx: u32, gen: Gen, setup: u64) -> String {
        let s = self.salt ^ setup.rotate_left(17);
        format!(
            "{idx:08x}-{gen:04x}-4{:03x}-8{:03x}-{:012x}",
            (s >> 52) & 0xfff,
            (s >> 40) & 0xfff,
            s & 0xffff_ffff_ffff
        )
    }

    /// The fixed part of the records of a newly seen flow.
    fn flow_info(&self, s: &FlowSnapshot) -> FlowInfo {
        // Forward flow: the one whose first packet the agent decided on, as it recorded with
        // the verdict (`origin`; an exported flow has its verdict, so it has one when the agent
        // set it up). Setup times cannot tell: the agent creates the reverse flow in the same
        // millisecond, often at a lower index. Without an origin (a flow programmed by other
        // means): the earlier entry of the pair (ties: the lower index).
        let rsnap = s.rflow.and_then(|r| self.table.snapshot(r).ok().flatten());
        let origin = self.table.entry(s.index).filter(|e| e.gen() == s.gen).and_then(|e| e.origin());
        let forward = match (origin, &rsnap) {
            (Some(o), _) => !o.reverse,
            (None, Some(r)) => (s.setup_time, s.index) <= (r.setup_time, r.index),
            (None, None) => true,
        };
        self.info_of(&Facts::of(s), forward, rsnap.map(|r| (r.index, r.gen, r.setup_time)))
    }

    /// The fixed part of the records of flow `s`, the forward flow of its pair or not, with
    /// its reverse flow (index, generation, setup time).
    fn info_of(&self, s: &Facts, forward: bool, reverse: Option<(u32, Gen, u64)>) -> FlowInfo {
        let k = &s.key;
        let vrf = k.vrf();
        let (src, dst) = (k.src_ip(), k.dst_ip());
        let src_ep = self.ctx.endpoint(vrf, src);
        let dst_ep = self.ctx.endpoint(vrf, dst);
        let vrf_vn = self.ctx.vrf_vn.get(&vrf).cloned();
        let src_vn = src_ep.and_then(|e| e.vn.clone()).or_else(|| vrf_vn.clone());
        let dst_vn = dst_ep.and_then(|e| e.vn.clone()).or_else(|| vrf_vn.clone());
        // Rule UUIDs: the policy decision for the forward direction (what the agent programs
        // into both flows of the pair).
        let fctx = FlowContext {
            src,
            dst,
            proto: k.proto(),
            sport: k.sport(),
            dport: k.dport(),
            src_vn: src_vn.as_deref(),
            dst_vn: dst_vn.as_deref(),
            src_vif: src_ep.map(|e| e.vif),
            dst_vif: dst_ep.map(|e| e.vif),
        };
        let decision = self.ctx.policy.as_ref().map(|p| p.evaluate(&if forward { fctx } else { fctx.reversed() }));
        let mirrored = s.mirror != flow_table::NO_MIRROR;
        let analyzer = |m: u8| (m != flow_table::NO_MIRROR).then(|| self.analyzer_name(m)).flatten();
        FlowInfo {
            index: s.index,
            setup_ms: s.setup_ms,
            key: s.key,
            local: src_ep.or(dst_ep).map(|e| e.vif),
            direction_ing: src_ep.is_some(),
            src_vn,
            dst_vn,
            forward,
            reverse,
            action: action_name(s.action, decision.as_ref().is_some_and(|d| d.log), mirrored),
            action_code: s.action,
            mirrors: [s.mirror, s.sec_mirror],
            drop_reason: s.drop_reason,
            underlay_sport: s.underlay_sport,
            // The remote endpoint: whichever side is not a local VMI.
            tunnel: match (src_ep, dst_ep) {
                (Some(_), None) => self.ctx.tunnel_to(vrf, dst),
                (None, Some(_)) => self.ctx.tunnel_to(vrf, src),
                _ => None,
            },
            nw_ace_uuid: decision.as_ref().and_then(|d| d.nw_ace_uuid.clone()),
            sg_rule_uuid: decision.as_ref().and_then(|d| d.sg_rule_uuid.clone()),
            analyzers: [analyzer(s.mirror), analyzer(s.sec_mirror)],
            ingress_vif: src_ep.map(|e| e.vif).or_else(|| self.ctx.route_vif(vrf, src)),
            egress_vif: dst_ep.map(|e| e.vif).or_else(|| self.ctx.route_vif(vrf, dst)),
            vni: self.ctx.vrf_vni.get(&vrf).copied(),
        }
    }

    /// The record for `st` without counters.
    fn base_record(&self, st: &FlowState) -> FlowLogData {
        let i = &st.info;
        let k = &i.key;
        let own = |a: &Option<Arc<str>>| a.as_deref().map(str::to_owned);
        let ep = i.local.and_then(|v| self.ctx.vmi(v));
        let mut r = FlowLogData::new(
            self.uuid(i.index, st.gen, i.setup_ms),
            i8::from(i.direction_ing),
            i.src_vn.as_deref().unwrap_or("").to_owned(),
            k.src_ip(),
            i.dst_vn.as_deref().unwrap_or("").to_owned(),
            k.dst_ip(),
            k.proto(),
            k.sport(),
            k.dport(),
        );
        r.vm = ep.and_then(|e| own(&e.vm));
        r.vmi_uuid = ep.and_then(|e| own(&e.vmi_uuid));
        r.reverse_uuid = i.reverse.map(|(ri, rg, rs)| self.uuid(ri, rg, rs));
        r.setup_time = Some(i.setup_ms as i64 * 1000);
        r.action = Some(i.action.to_owned());
        r.sg_rule_uuid = own(&i.sg_rule_uuid);
        r.nw_ace_uuid = own(&i.nw_ace_uuid);
        r.vrouter_ip = Some(self.ctx.vrouter_ip.to_string());
        // Local flows: no underlay (source port 0, as the reference agent).
        r.underlay_source_port = Some(if i.tunnel.is_some() { i.underlay_sport } else { 0 });
        r.other_vrouter_ip = i.tunnel.map(|(peer, _)| peer.to_string());
        r.underlay_proto = i.tunnel.map(|(_, proto)| proto);
        r.drop_reason = Some(if i.action.starts_with("deny") {
            flow_drop_reason_name(i.drop_reason).to_owned()
        } else {
            String::new()
        });
        r.forward_flow = Some(i.forward);
        r.analyzer_name = own(&i.analyzers[0]);
        r.sec_analyzer_name = own(&i.analyzers[1]);
        r
    }

    /// Emits one record (after sampling) for a flow whose counters are `now`, `diff` since
    /// the previous record: the flow's state moves on to `now` and is written to the state
    /// file (or, when the flow is `gone`, forgotten there) before the record leaves.
    fn emit(
        &mut self,
        sink: &mut impl RecordSink,
        st: &mut FlowState,
        now: &Counters,
        diff: &Counters,
        at: Moment,
        gone: bool,
    ) {
        let Moment { kind, end, tcp_flags, last_seen, teardown_us } = at;
        // Mirror counts are attributed whether or not the record survives sampling.
        let m = MirrorTotals {
            packets: diff.mirror_packets + diff.sec_mirror_packets,
            bytes: diff.mirror_bytes + diff.sec_mirror_bytes,
        };
        if m != MirrorTotals::default() {
            if let Some(v) = st.info.local {
                let e = self.vmi_mirror.entry(v).or_default();
                e.packets += m.packets;
                e.bytes += m.bytes;
            }
            self.total_mirror.packets += m.packets;
            self.total_mirror.bytes += m.bytes;
        }
        let decision = self.sampler.decide(diff.bytes, teardown_us.is_some() && st.exported);
        st.last = *now;
        st.exported |= decision != Sample::Drop;
        // What the collector lacks of this flow's analyzers: grows with each record left
        // out, back to zero when one leaves (records carry the cumulative counters).
        let missed = SampledOut::of(diff);
        if decision == Sample::Drop {
            st.pending.add(&missed);
            self.move_sampled_out(&[None, None], &st.info.analyzers, &missed);
        } else {
            self.move_sampled_out(&st.info.analyzers, &[None, None], &st.pending);
            st.pending = SampledOut::default();
        }
        if gone {
            self.forget(st.info.index);
        } else {
            self.persist(st);
        }
        let (db, dp) = match decision {
            Sample::Drop => {
                self.counters.records_sampled_out += 1;
                self.save_counters();
                return;
            }
            Sample::Export => (diff.bytes, diff.packets),
            Sample::Scaled(p) => ((diff.bytes as f64 / p) as u64, (diff.packets as f64 / p) as u64),
        };
        let mut r = self.base_record(st);
        r.tcp_flags = (tcp_flags != 0).then_some(tcp_flags);
        r.teardown_time = teardown_us;
        r.bytes = Some(now.bytes as i64);
        r.packets = Some(now.packets as i64);
        r.diff_bytes = Some(db as i64);
        r.diff_packets = Some(dp as i64);
        let a = &now.accounting;
        if r.analyzer_name.is_some() {
            r.mirror_bytes = Some(now.mirror_bytes as i64);
            r.mirror_packets = Some(now.mirror_packets as i64);
            r.mirror_lost_packets = Some(a.mirror_lost as i64);
        }
        if r.sec_analyzer_name.is_some() {
            r.sec_mirror_bytes = Some(now.sec_mirror_bytes as i64);
            r.sec_mirror_packets = Some(now.sec_mirror_packets as i64);
            r.sec_mirror_lost_packets = Some(a.sec_mirror_lost as i64);
        }
        if r.analyzer_name.is_some() || r.sec_analyzer_name.is_some() {
            r.before_mirror_packets = Some(a.before_mirror as i64);
            r.held_dropped_packets = Some(a.held_dropped as i64);
        }
        let i = &st.info;
        let facts = RecordFacts {
            kind,
            end,
            index: i.index,
            gen: st.gen,
            vrf: i.key.vrf(),
            ingress_vif: i.ingress_vif,
            egress_vif: if i.action_code == Action::Drop { None } else { i.egress_vif },
            vni: i.vni,
            setup_ms: i.setup_ms,
            last_seen_ms: last_seen.max(i.setup_ms),
            tcp_state: tcp_flags,
            action: i.action_code,
            drop_reason: i.drop_reason,
        };
        if sink.send(r, &facts) {
            self.counters.records_exported += 1;
        } else {
            self.counters.records_dropped += 1;
        }
        self.save_counters();
    }

    /// A tracked flow vanished between two scans (its slot is free or holds another flow):
    /// the final record has the last figures seen.
    fn teardown(&mut self, sink: &mut impl RecordSink, mut st: Box<FlowState>) {
        if st.torn_down {
            self.forget(st.info.index);
            return;
        }
        self.counters.teardown_records += 1;
        self.counters.flows_tracked -= 1;
        let last = st.last;
        let end = end_reason(0, st.tcp_state, st.last_seen, crate::stats::unix_time_ms(), self.age_ms);
        let at = Moment {
            kind: RecordKind::Teardown,
            end,
            tcp_flags: st.tcp_state,
            last_seen: st.last_seen,
            teardown_us: Some(now_us()),
        };
        self.emit(sink, &mut st, &last, &Counters::default(), at, true);
    }

    /// Visits one flow index.
    pub fn visit(&mut self, idx: u32, sink: &mut impl RecordSink) {
        let snap = match self.table.snapshot(idx) {
            Ok(s) => s,
            Err(_) => {
                self.counters.torn_snapshots += 1;
                return;
            }
        };
        let Some(slot) = self.states.get_mut(idx as usize) else {
            return;
        };
        let prev = slot.take();
        let s = match snap {
            // Deleted or evicted flows stay readable, with their final counters, until the
            // agent reclaims the slot: that is where the teardown record comes from.
            Some(s) if s.action != Action::Hold || s.flags & RETIRED != 0 => s,
            // HOLD (not decided yet) or free: a tracked flow that was here is gone.
            _ => {
                if let Some(old) = prev {
                    self.teardown(sink, old);
                }
                return;
            }
        };
        let (mut st, is_new) = match prev {
            Some(st) if st.gen == s.gen => (st, false),
            other => {
                if let Some(old) = other {
                    self.teardown(sink, old);
                }
                let info = self.flow_info(&s);
                self.counters.flows_tracked += 1;
                (
                    Box::new(FlowState {
                        gen: s.gen,
                        info,
                        last: Counters::default(),
                        pending: SampledOut::default(),
                        exported: false,
                        torn_down: false,
                        saved: false,
                        last_seen: 0,
                        tcp_state: 0,
                        ctx_gen: self.ctx_gen,
                    }),
                    true,
                )
            }
        };
        st.last_seen = s.last_seen;
        st.tcp_state = s.tcp_flags;
        // The verdict changed since the flow was first seen (a policy change re-evaluated
        // it; a rule that now mirrors it), or the configuration did (another rule may decide
        // it now): the fixed part is built again, and when it differs, the records follow at
        // once.
        let mut changed = false;
        if !is_new
            && !st.torn_down
            && s.flags & RETIRED == 0
            && ((s.action, [s.mirror, s.sec_mirror]) != (st.info.action_code, st.info.mirrors)
                || st.ctx_gen != self.ctx_gen)
        {
            let info = self.flow_info(&s);
            st.ctx_gen = self.ctx_gen;
            if !info.same_record(&st.info) {
                self.move_sampled_out(&st.info.analyzers, &info.analyzers, &st.pending);
                st.info = info;
                st.saved = false;
                changed = true;
            }
        }
        if !st.torn_down {
            let now = Counters::of(&s);
            let diff = now.since(&st.last);
            let active = |kind| Moment {
                kind,
                end: EndReason::Active,
                tcp_flags: s.tcp_flags,
                last_seen: s.last_seen,
                teardown_us: None,
            };
            if s.flags & RETIRED != 0 {
                self.counters.teardown_records += 1;
                if is_new {
                    self.counters.setup_records += 1;
                }
                st.torn_down = true;
                self.counters.flows_tracked -= 1;
                let end = end_reason(s.flags, s.tcp_flags, s.last_seen, crate::stats::unix_time_ms(), self.age_ms);
                let at = Moment { end, teardown_us: Some(now_us()), ..active(RecordKind::Teardown) };
                self.emit(sink, &mut st, &now, &diff, at, false);
            } else if is_new {
                self.counters.setup_records += 1;
                self.emit(sink, &mut st, &now, &diff, active(RecordKind::Setup), false);
            } else if changed || diff != Counters::default() {
                self.counters.periodic_records += 1;
                self.emit(sink, &mut st, &now, &diff, active(RecordKind::Periodic), false);
            }
        }
        self.states[idx as usize] = Some(st);
    }

    /// One timer tick: visits the next slice of the table.
    pub fn tick(&mut self, sink: &mut impl RecordSink) {
        self.sampler.update(Instant::now());
        self.counters.sampling_threshold = self.sampler.threshold();
        let cap = self.table.capacity();
        for _ in 0..self.slice.min(cap) {
            let idx = self.cursor;
            self.visit(idx, sink);
            self.cursor += 1;
            if self.cursor >= cap {
                self.cursor = 0;
                self.counters.sweeps += 1;
                self.counters.last_sweep_ms = self.sweep_started.elapsed().as_millis() as u64;
                self.sweep_started = Instant::now();
            }
        }
        self.save_counters();
    }

    /// Visits the whole table once, from the cursor on.
    pub fn sweep(&mut self, sink: &mut impl RecordSink) {
        for _ in 0..self.table.capacity() {
            let idx = self.cursor;
            self.visit(idx, sink);
            self.cursor = (self.cursor + 1) % self.table.capacity();
        }
        self.counters.sweeps += 1;
        self.save_counters();
    }

    /// Stores the counters the exporter thread adds to (UVEs queued) in the state file.
    fn count_uves(&mut self, n: u64) {
        self.counters.uves_queued += n;
        self.save_counters();
    }
}

// ---------------------------------------------------------------- UVEs

struct UveState {
    last: HashMap<u16, VmInterfaceStats>,
}

fn vmi_uves(scanner: &FlowScanner, stats: Option<&StatsReader>, state: &mut UveState) -> Vec<UVEVMIStats> {
    let mut out = Vec::new();
    for v in &scanner.ctx.vmis {
        let c = stats.map(|s| s.vif_counters(v.vif, None)).unwrap_or_default();
        // Mirror figures are the vif's interface-mirroring counters, as the blueprint's
        // if_stats and `vif --get` (`Mirror packets: bytes:`) report them.
        let m = MirrorTotals { packets: c.mirror_packets, bytes: c.mirror_bytes };
        // in = from the VM (the vif receives), out = to the VM (the vif transmits).
        let raw = VmInterfaceStats {
            in_pkts: c.rx_packets,
            in_bytes: c.rx_bytes,
            out_pkts: c.tx_packets,
            out_bytes: c.tx_bytes,
            mir_pkts: Some(m.packets),
            mir_bytes: Some(m.bytes),
        };
        let prev = state.last.get(&v.vif).cloned();
        let d = |a: u64, b: Option<u64>| a.saturating_sub(b.unwrap_or(0));
        let interval = VmInterfaceStats {
            in_pkts: d(raw.in_pkts, prev.as_ref().map(|p| p.in_pkts)),
            in_bytes: d(raw.in_bytes, prev.as_ref().map(|p| p.in_bytes)),
            out_pkts: d(raw.out_pkts, prev.as_ref().map(|p| p.out_pkts)),
            out_bytes: d(raw.out_bytes, prev.as_ref().map(|p| p.out_bytes)),
            mir_pkts: Some(d(m.packets, prev.as_ref().and_then(|p| p.mir_pkts))),
            mir_bytes: Some(d(m.bytes, prev.as_ref().and_then(|p| p.mir_bytes))),
        };
        state.last.insert(v.vif, raw.clone());
        out.push(UVEVMIStats {
            data: VMIStats {
                name: v.name.clone(),
                deleted: None,
                vm_name: v.vm.clone(),
                vm_uuid: v.vm.clone(),
                virtual_network: v.vn.clone(),
                raw_if_stats: Some(raw),
                if_stats: Some(interval),
            },
        });
    }
    out
}

/// Per analyzer of the mirror table: its entry's copies sent and lost by reason, and what
/// export sampling left out of its flows.
fn analyzer_uves(scanner: &FlowScanner) -> Option<Vec<MirrorAnalyzerStats>> {
    let m = scanner.mirror.as_ref()?;
    Some(
        m.entries()
            .into_iter()
            .map(|(index, e)| {
                let st = m.stats(usize::from(index), None);
                let so = scanner.sampled_out(&e.analyzer_name);
                MirrorAnalyzerStats {
                    analyzer_ip: Some(e.analyzer_ip.to_string()),
                    index: Some(u16::from(index)),
                    flow_pkts: Some(st.flow_packets),
                    flow_bytes: Some(st.flow_bytes),
                    iface_pkts: Some(st.interface_packets()),
                    iface_bytes: Some(st.interface_bytes()),
                    lost: Some(
                        LOSS_REASONS
                            .iter()
                            .map(|&r| MirrorLossStats {
                                reason: r.key().to_owned(),
                                flow_pkts: st.flow_lost.get(r),
                                iface_pkts: st.interface_lost.get(r),
                            })
                            .collect(),
                    ),
                    sampled_out_pkts: Some(so.packets),
                    sampled_out_bytes: Some(so.bytes),
                    sampled_out_mir_pkts: Some(so.mirror_packets),
                    name: e.analyzer_name,
                }
            })
            .collect(),
    )
}

fn vrouter_uve(name: &str, stats: Option<&StatsReader>, scanner: &FlowScanner) -> VrouterStats {
    let mut t = (0u64, 0u64, 0u64, 0u64);
    // mir_tpkts / mir_bytes: every mirror copy the data plane sent (flow and interface
    // mirroring), the vRouter-wide counters `mirror --dump` totals.
    let l = stats.map(|s| s.lcore_counters(None)).unwrap_or_default();
    let m = MirrorTotals { packets: l.mirror_packets, bytes: l.mirror_bytes };
    if let Some(s) = stats {
        for v in s.vifs() {
            let c = s.vif_counters(v.id, None);
            t.0 += c.rx_packets;
            t.1 += c.rx_bytes;
            t.2 += c.tx_packets;
            t.3 += c.tx_bytes;
        }
    }
    VrouterStats {
        data: VrouterStatsAgent {
            name: name.to_owned(),
            deleted: None,
            in_tpkts: Some(t.0),
            in_bytes: Some(t.1),
            out_tpkts: Some(t.2),
            out_bytes: Some(t.3),
            mir_tpkts: Some(m.packets),
            mir_bytes: Some(m.bytes),
            mirror_analyzers: analyzer_uves(scanner),
        },
    }
}

// ---------------------------------------------------------------- the thread

/// The host name (`/proc/sys/kernel/hostname`), or `localhost`.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The session configuration for `[export]`.
pub fn session_config(cfg: &Config) -> SessionConfig {
    let e = &cfg.export;
    let mut s = SessionConfig::new(GeneratorId {
        source: e.source.clone().unwrap_or_else(host_name),
        module: e.module.clone(),
        node_type: e.node_type.clone(),
        instance_id: e.instance_id.clone(),
    });
    s.collectors = e.collector_addrs();
    s.flow_buffer = e.flow_buffer as usize;
    s.backoff_base = Duration::from_millis(u64::from(e.backoff_base_ms));
    s.backoff_max = Duration::from_millis(u64::from(e.backoff_max_ms));
    s
}

fn fill_session(c: &mut ExportCounters, s: &SessionStats) {
    c.session_flows_sent = s.flows_sent;
    c.session_flows_buffered = s.flows_buffered;
    c.session_flows_dropped = s.flows_dropped;
    c.session_uves_sent = s.uves_sent;
    c.session_traces_sent = s.traces_sent;
    c.session_trace_steps_sent = s.trace_steps_sent;
    c.session_traces_buffered = s.traces_buffered;
    c.session_state = s.state.map_or("", |s| s.as_str()).to_owned();
    c.session_established = s.established;
    c.session_connect_failures = s.connect_failures;
}

/// The exporter thread of `cfg` (which must have `export.enabled` or `ipfix.enabled`: the
/// Sandesh session and the IPFIX exporter run for the ones enabled, fed the same records), to
/// start with [`ExporterBuilder::spawn`]. It stops when `stop` is set, giving the session a
/// second to flush.
pub fn builder(cfg: &Config, table: Arc<FlowTable>, stop: Arc<AtomicBool>) -> ExporterBuilder<'_> {
    let state_file = Some(cfg.vrouter.run_dir.join(STATE_FILE));
    ExporterBuilder {
        cfg,
        table,
        stop,
        cpu: None,
        requests: None,
        state_file,
        trace_from: Vec::new(),
        config_updates: None,
    }
}

/// Where live programming hands the exporter each new desired state (the exporter takes it
/// on its next tick; only the latest counts).
pub type ConfigUpdates = Arc<std::sync::Mutex<Option<Config>>>;

/// An exporter thread to start: made by [`builder`], started by [`ExporterBuilder::spawn`].
pub struct ExporterBuilder<'a> {
    cfg: &'a Config,
    table: Arc<FlowTable>,
    stop: Arc<AtomicBool>,
    cpu: Option<u32>,
    requests: Option<Arc<crate::trace::TraceControl>>,
    state_file: Option<PathBuf>,
    trace_from: Vec<u64>,
    config_updates: Option<ConfigUpdates>,
}

impl ExporterBuilder<'_> {
    /// The exporter thread pins itself to `cpu` (the main/control core) before it starts the
    /// session thread, which inherits the affinity: neither ever preempts a poll-mode
    /// forwarding core. `None` (the default): unpinned.
    pub fn pin_to(mut self, cpu: impl Into<Option<u32>>) -> Self {
        self.cpu = cpu.into();
        self
    }

    /// The trace requests whose projects the exported traces carry. With feature `trace`,
    /// the thread also exports the trace region's step records ([`super::trace_export`]);
    /// `None` (the default): traces then carry no project.
    pub fn trace_requests(mut self, requests: impl Into<Option<Arc<crate::trace::TraceControl>>>) -> Self {
        self.requests = requests.into();
        self
    }

    /// Where the exporter keeps its per-flow state across restarts
    /// ([`FlowScanner::with_state_file`]); the default is `<run_dir>/`[`STATE_FILE`].
    /// `None`: in memory only (a restart exports every flow afresh). The state is restored
    /// (or the file started anew, with one line on stdout or stderr saying which and why)
    /// in [`ExporterBuilder::spawn`], before it returns.
    pub fn state_file(mut self, path: impl Into<Option<PathBuf>>) -> Self {
        self.state_file = path.into();
        self
    }

    /// Where trace export starts in each ring of the trace region: the ring heads when the
    /// region continued a previous run's (its steps were exported by that run), so a restart
    /// sends no step twice. Empty (the default): from the start of every ring.
    pub fn trace_from(mut self, heads: Vec<u64>) -> Self {
        self.trace_from = heads;
        self
    }

    /// Follows live programming: each configuration put in `cell` replaces the one the
    /// records are built from ([`FlowScanner::set_config`]). `None` (the default): the start
    /// configuration throughout.
    pub fn config_updates(mut self, cell: impl Into<Option<ConfigUpdates>>) -> Self {
        self.config_updates = cell.into();
        self
    }

    /// Starts the exporter thread and its session.
    pub fn spawn(self) -> Result<JoinHandle<()>, ExportError> {
        spawn_exporter(self)
    }
}

/// [`ExporterBuilder::spawn`].
fn spawn_exporter(b: ExporterBuilder<'_>) -> Result<JoinHandle<()>, ExportError> {
    let ExporterBuilder { cfg, table, stop, cpu, requests, state_file, trace_from, config_updates } = b;
    #[cfg(feature = "trace")]
    let mut tracer = {
        let lookup: Option<super::trace_export::ProjectLookup> = requests.map(|ctl| {
            let f: super::trace_export::ProjectLookup = Arc::new(move |uuid: &[u8; 16]| ctl.project_of(uuid));
            f
        });
        super::trace_export::TraceExporter::new(cfg.vrouter.run_dir.clone(), lookup).starting_at(trace_from)
    };
    #[cfg(not(feature = "trace"))]
    let _ = (requests, trace_from);
    let mut scanner = match &state_file {
        Some(path) => {
            let (scanner, origin) = FlowScanner::with_state_file(cfg, table, path)?;
            match &origin {
                StateOrigin::Fresh { reason: FreshReason::Unusable { .. }, .. } => tracing::warn!("vrouter: {origin}"),
                _ => tracing::info!("vrouter: {origin}"),
            }
            scanner
        }
        None => FlowScanner::new(cfg, table)?,
    };
    // IPFIX ([ipfix]): its sockets are opened here, so a bad collector fails the start.
    let mut ipfix = if cfg.ipfix.enabled { Some(super::ipfix::IpfixSink::new(cfg)?) } else { None };
    let session_cfg = cfg.export.enabled.then(|| session_config(cfg));
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<Result<(), ExportError>>(1);
    let run_dir: PathBuf = cfg.vrouter.run_dir.clone();
    let counters_path = run_dir.join(COUNTERS_FILE);
    let tick = Duration::from_millis(u64::from(cfg.export.scan_interval_ms));
    let uve_every = Duration::from_secs(u64::from(cfg.export.uve_interval_s));
    let name = cfg.export.source.clone().unwrap_or_else(host_name);
    let handle = std::thread::Builder::new()
        .name("vr-export".into())
        .spawn(move || {
            if let Some(cpu) = cpu {
                if let Err(e) = pin_current_thread(cpu) {
                    tracing::warn!("vrouter: could not pin the exporter thread to CPU {cpu}: {e}");
                }
            }
            let mut session = match session_cfg.map(SessionHandle::start).transpose() {
                Ok(s) => {
                    let _ = ready_tx.send(Ok(()));
                    s
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e.into()));
                    return;
                }
            };
            let mut uve_state = UveState { last: HashMap::new() };
            let mut stats: Option<StatsReader> = None;
            let mut last_uve: Option<Instant> = None;
            let mut last_write = Instant::now() - Duration::from_secs(1);
            // The mirror table of this process (created before the exporter starts).
            if let Ok(m) = MirrorReader::open(&run_dir) {
                scanner.set_mirror_reader(m);
            }
            let counters =
                |scanner: &FlowScanner,
                 session: Option<&SessionHandle>,
                 ipfix: Option<&super::ipfix::IpfixSink>,
                 #[cfg(feature = "trace")] tracer: &super::trace_export::TraceExporter| {
                    let mut c = scanner.counters.clone();
                    #[cfg(feature = "trace")]
                    tracer.counters().fill(&mut c);
                    if let Some(s) = session {
                        fill_session(&mut c, &s.stats());
                    }
                    if let Some(i) = ipfix {
                        i.fill(&mut c);
                    }
                    c.updated_unix_ms = crate::stats::unix_time_ms();
                    let _ = write_counters(&counters_path, &c);
                };
            while !stop.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                let update = config_updates.as_ref().and_then(|c| c.lock().unwrap_or_else(|e| e.into_inner()).take());
                if let Some(cfg) = update {
                    if let Err(e) = scanner.set_config(&cfg) {
                        tracing::warn!("vrouter: exporter: keeping the previous configuration: {e}");
                    }
                }
                scanner.tick(&mut Sinks { sandesh: session.as_mut(), ipfix: ipfix.as_mut() });
                if let Some(i) = ipfix.as_mut() {
                    i.flush();
                }
                if let Some(session) = session.as_mut() {
                    #[cfg(feature = "trace")]
                    tracer.tick(session);
                    if last_uve.is_none_or(|t| t.elapsed() >= uve_every) {
                        if stats.as_ref().is_none_or(|s| s.restarted()) {
                            stats = StatsReader::open(&run_dir).ok();
                        }
                        let mut n = 0;
                        for u in vmi_uves(&scanner, stats.as_ref(), &mut uve_state) {
                            n += u64::from(session.update_uve(&u).is_ok());
                        }
                        if scanner.mirror.is_none() {
                            if let Ok(m) = MirrorReader::open(&run_dir) {
                                scanner.set_mirror_reader(m);
                            }
                        }
                        n += u64::from(session.update_uve(&vrouter_uve(&name, stats.as_ref(), &scanner)).is_ok());
                        scanner.count_uves(n);
                        last_uve = Some(Instant::now());
                    }
                }
                if last_write.elapsed() >= Duration::from_secs(1) {
                    counters(
                        &scanner,
                        session.as_ref(),
                        ipfix.as_ref(),
                        #[cfg(feature = "trace")]
                        &tracer,
                    );
                    last_write = Instant::now();
                }
                if let Some(rest) = tick.checked_sub(t0.elapsed()) {
                    std::thread::sleep(rest);
                }
            }
            // A last full sweep (final counters of every flow), the final figures, then let
            // the session flush for up to a second.
            scanner.sweep(&mut Sinks { sandesh: session.as_mut(), ipfix: ipfix.as_mut() });
            if let Some(i) = ipfix.as_mut() {
                i.flush();
            }
            // The last trace steps: offered until the rings are drained or the session
            // stops taking them (bounded: each pass reads at most one budget).
            #[cfg(feature = "trace")]
            if let Some(session) = session.as_mut() {
                for _ in 0..64 {
                    let before = tracer.counters();
                    tracer.tick(session);
                    let after = tracer.counters();
                    if after.steps_read == before.steps_read && after.messages_sent == before.messages_sent {
                        break;
                    }
                }
            }
            counters(
                &scanner,
                session.as_ref(),
                ipfix.as_ref(),
                #[cfg(feature = "trace")]
                &tracer,
            );
            if let Some(session) = session {
                session.shutdown(Duration::from_secs(1));
            }
        })
        .map_err(ExportError::Spawn)?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(handle),
        Ok(Err(e)) => {
            let _ = handle.join();
            Err(e)
        }
        Err(_) => {
            let _ = handle.join();
            Err(ExportError::Spawn(std::io::Error::other("the exporter thread exited during start")))
        }
    }
}

/// Pins the calling thread to one CPU.
fn pin_current_thread(cpu: u32) -> std::io::Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET only write inside it, and
    // sched_setaffinity(0, ...) applies to the calling thread.
    let ret = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu as usize, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set)
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_threshold_follows_the_reference_rules() {
        let mut s = Sampler::new(Some(100), 1);
        assert_eq!(s.threshold(), 500);
        // Below 0.8 C before sampling ever started: reset to the default.
        s.adjust(10.0, 100.0);
        assert_eq!(s.threshold(), 500);
        // Above 3 C: x4 (and sampling starts).
        s.adjust(400.0, 100.0);
        assert_eq!(s.threshold(), 2000);
        s.adjust(250.0, 100.0);
        assert_eq!(s.threshold(), 6000);
        s.adjust(130.0, 100.0);
        assert_eq!(s.threshold(), 12000);
        s.adjust(100.0, 100.0);
        assert_eq!(s.threshold(), 12000);
        s.adjust(60.0, 100.0);
        assert_eq!(s.threshold(), 6000);
        s.adjust(10.0, 100.0);
        assert_eq!(s.threshold(), 1500);
        for _ in 0..10 {
            s.adjust(0.0, 100.0);
        }
        assert_eq!(s.threshold(), SAMPLING_MIN_THRESHOLD);
    }

    #[test]
    fn sampling_decisions() {
        // No rate: everything; rate 0: nothing.
        let mut all = Sampler::new(None, 1);
        assert_eq!(all.decide(1, false), Sample::Export);
        let mut none = Sampler::new(Some(0), 1);
        assert_eq!(none.decide(1_000_000, false), Sample::Drop);
        // Before sampling has started, everything is exported.
        let mut s = Sampler::new(Some(100), 7);
        assert_eq!(s.decide(1, false), Sample::Export);
        s.adjust(100.0, 100.0);
        // At or above the threshold: unchanged; teardown of an exported flow: unchanged.
        assert_eq!(s.decide(500, false), Sample::Export);
        assert_eq!(s.decide(1, true), Sample::Export);
        // Below: kept with probability diff/threshold, scaled by it.
        let mut kept = 0;
        for _ in 0..100_000 {
            match s.decide(100, false) {
                Sample::Scaled(p) => {
                    assert!((p - 0.2).abs() < 1e-12);
                    kept += 1;
                }
                Sample::Drop => {}
                Sample::Export => panic!("below-threshold sample exported unscaled"),
            }
        }
        // P(num <= 100) for num uniform in 0..500 = 101/500.
        assert!((19_000..21_500).contains(&kept), "{kept}");
    }

    // ---------------------------------------------------------------- scanner

    use crate::config::parse;
    use flow_table::{FlowKey, FlowTableConfig, FlowUpdate};
    use std::net::Ipv4Addr;

    const CONFIG: &str = r#"
[eal]
forwarding_cores = [1]
[vrouter]
run_dir = "/tmp/export-test"
router_ip = "10.10.0.1"
[[vrf]]
id = 0
name = "fabric"
[[vrf]]
id = 1
name = "overlay"
vxlan_vni = 5001
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
vm_uuid = "00000000-0000-0000-0000-0000000000b1"
vmi_uuid = "00000000-0000-0000-0000-0000000000a1"
[[vif]]
id = 2
name = "tap2"
type = "virtual"
device = "d2"
mac = "02:00:00:00:01:02"
ip = "10.2.0.3"
vrf = 1
vn_name = "vn-blue"
[[nexthop]]
id = 3
type = "tunnel"
encap = "mplsoudp"
remote_ip = "10.10.0.2"
label = 40
vif = 0
dst_mac = "02:00:00:00:00:02"
[[route]]
vrf = 1
prefix = "10.9.0.0/24"
nexthop = 3
[[analyzer]]
name = "an-a"
ip = "10.10.0.20"
[[analyzer]]
name = "an-b"
ip = "10.10.0.21"
[[network_policy]]
name = "red-blue"
vns = ["vn-red", "vn-blue"]
[[network_policy.rule]]
uuid = "10000000-0000-4000-8000-000000000001"
src = "vn:vn-red"
dst = "vn:vn-blue"
protocol = "tcp"
action = "pass"
mirror_to = ["an-a", "an-b"]
[export]
enabled = true
"#;

    struct Fixture {
        _dir: tempfile::TempDir,
        table: Arc<FlowTable>,
        scanner: FlowScanner,
    }

    fn fixture(extra: &str) -> Fixture {
        let cfg = parse(&format!("{CONFIG}{extra}"), "test").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let table = Arc::new(
            FlowTable::create(
                &dir.path().join("flow"),
                &FlowTableConfig { main_entries: 1024, overflow_entries: 1024, max_lcores: 1 },
            )
            .unwrap(),
        );
        let scanner = FlowScanner::new(&cfg, table.clone()).unwrap();
        Fixture { _dir: dir, table, scanner }
    }

    /// A programmed flow pair red -> blue, mirrored to both analyzers (indices 0 and 1).
    fn pair(t: &FlowTable, sport: u16, mirrored: bool) -> (u32, u32) {
        let k = FlowKey::v4(1, 6, Ipv4Addr::new(10, 1, 0, 3), Ipv4Addr::new(10, 2, 0, 3), sport, 80);
        let f = t.lookup_or_hold(&k, k.hash(), 1_000).unwrap().index();
        let r = t.create_reverse(f, 1_001).unwrap();
        let mut up = FlowUpdate::new(Action::Forward);
        if mirrored {
            up.mirror = Some(0);
            up.sec_mirror = Some(1);
        }
        for i in [f, r] {
            let g = t.entry(i).unwrap().gen();
            t.set_action(i, g, &up).unwrap();
        }
        (f, r)
    }

    fn traffic(t: &FlowTable, idx: u32, n: u32, len: u32, mirrored: bool) {
        for _ in 0..n {
            t.account(idx, len, 2_000);
            if mirrored {
                t.account_mirror(idx, false, len + 20);
                t.account_mirror(idx, true, len + 20);
            }
        }
    }

    /// The forward flow of a pair is the one the agent recorded as such, also when the
    /// reverse flow has the same setup time and a lower index (what made a denied flow's
    /// record name the rule of its reverse direction).
    #[test]
    fn the_recorded_origin_tells_the_forward_flow() {
        use flow_table::Origin;
        let mut fx = fixture("");
        let t = &fx.table;
        let (f, r) = (1000..2000)
            .find_map(|sport| {
                let k = FlowKey::v4(1, 6, Ipv4Addr::new(10, 1, 0, 3), Ipv4Addr::new(10, 2, 0, 3), sport, 80);
                let f = t.lookup_or_hold(&k, k.hash(), 1_000).unwrap().index();
                let r = t.create_reverse(f, 1_000).unwrap();
                (r < f).then_some((f, r))
            })
            .expect("some pair has its reverse flow at the lower index");
        for (i, reverse) in [(f, false), (r, true)] {
            let up = FlowUpdate { origin: Some(Origin { vif: 1, reverse }), ..FlowUpdate::new(Action::Forward) };
            t.set_action(i, t.entry(i).unwrap().gen(), &up).unwrap();
        }
        traffic(t, f, 1, 100, false);
        traffic(t, r, 1, 100, false);
        let mut out: Vec<FlowLogData> = Vec::new();
        fx.scanner.sweep(&mut out);
        let sport = fx.table.snapshot(f).unwrap().unwrap().key.sport();
        let fwd = out.iter().find(|x| x.sport as u16 == sport).unwrap();
        let rev = out.iter().find(|x| x.dport as u16 == sport).unwrap();
        assert_eq!((fwd.forward_flow, rev.forward_flow), (Some(true), Some(false)), "{out:#?}");
    }

    #[test]
    fn setup_periodic_and_teardown_records() {
        let mut fx = fixture("");
        let (f, r) = pair(&fx.table, 40000, true);
        // A flow still in HOLD is not exported.
        let hk = FlowKey::v4(1, 17, Ipv4Addr::new(10, 1, 0, 3), Ipv4Addr::new(10, 2, 0, 3), 5, 53);
        fx.table.lookup_or_hold(&hk, hk.hash(), 1_000).unwrap();
        traffic(&fx.table, f, 3, 100, true);
        let mut out: Vec<FlowLogData> = Vec::new();
        fx.scanner.sweep(&mut out);
        assert_eq!(out.len(), 2, "{out:#?}");
        let fwd = out.iter().find(|x| x.forward_flow == Some(true)).unwrap().clone();
        let rev = out.iter().find(|x| x.forward_flow == Some(false)).unwrap().clone();
        assert_eq!(fwd.reverse_uuid.as_deref(), Some(rev.flowuuid.as_str()));
        assert_eq!(rev.reverse_uuid.as_deref(), Some(fwd.flowuuid.as_str()));
        assert_eq!((fwd.sourcevn.as_str(), fwd.destvn.as_str()), ("vn-red", "vn-blue"));
        assert_eq!((rev.sourcevn.as_str(), rev.destvn.as_str()), ("vn-blue", "vn-red"));
        assert_eq!(fwd.sourceip, "10.1.0.3".parse::<IpAddr>().unwrap());
        assert_eq!((fwd.protocol, fwd.sport, fwd.dport), (6, 40000u16 as i16, 80));
        assert_eq!(fwd.direction_ing, 1);
        // Both endpoints are local VMIs: both flows enter from a VM.
        assert_eq!(rev.direction_ing, 1);
        assert_eq!(fwd.action.as_deref(), Some("pass|mirror"));
        assert_eq!(fwd.analyzer_name.as_deref(), Some("an-a"));
        assert_eq!(fwd.sec_analyzer_name.as_deref(), Some("an-b"));
        assert_eq!(fwd.nw_ace_uuid.as_deref(), Some("10000000-0000-4000-8000-000000000001"));
        assert_eq!(rev.nw_ace_uuid, fwd.nw_ace_uuid);
        assert_eq!(fwd.vm.as_deref(), Some("00000000-0000-0000-0000-0000000000b1"));
        assert_eq!(fwd.vmi_uuid.as_deref(), Some("00000000-0000-0000-0000-0000000000a1"));
        assert_eq!(fwd.vrouter_ip.as_deref(), Some("10.10.0.1"));
        assert_eq!(fwd.setup_time, Some(1_000_000));
        assert_eq!((fwd.bytes, fwd.packets), (Some(300), Some(3)));
        assert_eq!((fwd.diff_bytes, fwd.diff_packets), (Some(300), Some(3)));
        assert_eq!((fwd.mirror_bytes, fwd.mirror_packets), (Some(360), Some(3)));
        assert_eq!((fwd.sec_mirror_bytes, fwd.sec_mirror_packets), (Some(360), Some(3)));
        assert_eq!(fwd.teardown_time, None);
        assert_eq!((rev.bytes, rev.diff_bytes), (Some(0), Some(0)));
        assert_eq!(fx.scanner.counters().setup_records, 2);

        // Nothing changed: nothing exported.
        out.clear();
        fx.scanner.sweep(&mut out);
        assert!(out.is_empty());

        // More traffic on the forward flow: one periodic record with the diffs.
        traffic(&fx.table, f, 2, 50, true);
        fx.scanner.sweep(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].flowuuid, fwd.flowuuid);
        assert_eq!((out[0].bytes, out[0].diff_bytes, out[0].diff_packets), (Some(400), Some(100), Some(2)));
        assert_eq!((out[0].mirror_bytes, out[0].mirror_packets), (Some(500), Some(5)));

        // Last packets, then delete: the teardown record carries teardown_time and the final
        // figures read from the deleted (not yet reclaimed) entry.
        out.clear();
        traffic(&fx.table, f, 1, 10, true);
        let g = fx.table.entry(f).unwrap().gen();
        fx.table.mark_delete(f, g).unwrap();
        fx.scanner.sweep(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].flowuuid, fwd.flowuuid);
        assert!(out[0].teardown_time.is_some());
        assert_eq!((out[0].bytes, out[0].diff_bytes, out[0].diff_packets), (Some(410), Some(10), Some(1)));
        assert_eq!((out[0].mirror_bytes, out[0].mirror_packets), (Some(530), Some(6)));
        assert_eq!(out[0].action.as_deref(), Some("pass|mirror"));
        // Still visible until reclaimed: no second teardown; after reclaim, nothing either.
        out.clear();
        fx.scanner.sweep(&mut out);
        fx.table.reclaim();
        fx.scanner.sweep(&mut out);
        assert!(out.is_empty(), "{out:#?}");
        let c = fx.scanner.counters();
        assert_eq!((c.periodic_records, c.teardown_records, c.flows_tracked), (1, 1, 1));
        // Mirrored traffic is attributed to the source VMI (vif 1) and the vRouter.
        let m = MirrorTotals { packets: 12, bytes: 1060 };
        assert_eq!(fx.scanner.vmi_mirror(1), m);
        assert_eq!(fx.scanner.total_mirror(), m);
        assert_eq!(fx.scanner.vmi_mirror(2), MirrorTotals::default());
        let _ = r;
    }

    /// Both sinks of the exporter thread at once: the records as the Sandesh session gets
    /// them (with their facts), and the IPFIX exporter.
    struct Both {
        log: Vec<(FlowLogData, RecordFacts)>,
        ipfix: crate::agent::ipfix::IpfixSink,
    }

    impl RecordSink for Both {
        fn send(&mut self, rec: FlowLogData, facts: &RecordFacts) -> bool {
            self.ipfix.add(&rec, facts);
            self.log.push((rec, *facts));
            true
        }
    }

    #[test]
    fn ipfix_records_are_the_sandesh_records_with_the_flow_context() {
        let collector = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let extra = format!("[ipfix]\nenabled = true\ncollectors = [\"{}\"]\n", collector.local_addr().unwrap());
        let cfg = parse(&format!("{CONFIG}{extra}"), "test").unwrap();
        let mut fx = fixture(&extra);
        let mut sink = Both { log: Vec::new(), ipfix: crate::agent::ipfix::IpfixSink::new(&cfg).unwrap() };
        let now_ms = crate::stats::unix_time_ms();
        // A local pair (vif 1 <-> vif 2), mirrored; a flow to a remote VM behind the tunnel
        // on the fabric vif 0; a TCP flow that sees a RST.
        let (f, r) = pair(&fx.table, 40000, true);
        let rk = FlowKey::v4(1, 17, Ipv4Addr::new(10, 1, 0, 3), Ipv4Addr::new(10, 9, 0, 5), 7000, 53);
        let remote = fx.table.lookup_or_hold(&rk, rk.hash(), now_ms).unwrap().index();
        let (tcp, _) = pair(&fx.table, 40001, false);
        let g = fx.table.entry(remote).unwrap().gen();
        fx.table.set_action(remote, g, &FlowUpdate::new(Action::Forward)).unwrap();
        traffic(&fx.table, f, 3, 100, true);
        traffic(&fx.table, r, 1, 60, true);
        fx.table.account(remote, 80, now_ms);
        fx.table.account(tcp, 40, now_ms);
        fx.scanner.sweep(&mut sink);
        traffic(&fx.table, f, 2, 50, true);
        fx.table.account(remote, 90, now_ms);
        fx.scanner.sweep(&mut sink);
        // Teardowns: the pair idle since t = 2 s, the remote flow deleted while active, the
        // TCP flow reset.
        fx.table.set_tcp_flags(tcp, flow_table::tcp_flags::RST);
        for i in [f, remote, tcp] {
            let g = fx.table.entry(i).unwrap().gen();
            fx.table.mark_delete(i, g).unwrap();
        }
        fx.scanner.sweep(&mut sink);
        sink.ipfix.flush();

        collector.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        let mut dec = ipfix::Decoder::new();
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = collector.recv(&mut buf) {
            got.extend(dec.flow_records(&buf[..n], ipfix::DOCUMENTATION_PEN).unwrap());
        }
        // One IPFIX record per Sandesh record, in the same order, with the same figures.
        assert_eq!(got.len(), sink.log.len(), "{got:#?}");
        for (x, (s, facts)) in got.iter().zip(&sink.log) {
            assert_eq!(x.flow_uuid, s.flowuuid);
            assert_eq!((x.source(), x.destination()), (s.sourceip, s.destip));
            assert_eq!((x.octet_delta, x.packet_delta), (s.diff_bytes.unwrap() as u64, s.diff_packets.unwrap() as u64));
            assert_eq!((x.octet_total, x.packet_total), (s.bytes.unwrap() as u64, s.packets.unwrap() as u64));
            assert_eq!(x.mirror_octets, s.mirror_bytes.unwrap_or(0) as u64);
            assert_eq!(x.secondary_mirror_packets, s.sec_mirror_packets.unwrap_or(0) as u64);
            assert_eq!(x.analyzer_name, s.analyzer_name.clone().unwrap_or_default());
            assert_eq!(x.flow_id, u64::from(facts.index) << 32 | u64::from(facts.gen));
            assert_eq!((x.ingress_vrf, x.layer2_segment_id), (1, (1 << 56) | 5001));
            assert_eq!(x.exporter_ipv4, Ipv4Addr::new(10, 10, 0, 1));
            assert_eq!(facts.kind == RecordKind::Teardown, s.teardown_time.is_some());
        }
        // Per flow, the deltas add up to the table's counters.
        for i in [f, r, remote, tcp] {
            let snap = fx.table.snapshot(i).unwrap().unwrap();
            let id = u64::from(i) << 32 | u64::from(snap.gen);
            let of: Vec<_> = got.iter().filter(|x| x.flow_id == id).collect();
            assert_eq!(of.iter().map(|x| x.octet_delta).sum::<u64>(), snap.bytes, "flow {i}");
            assert_eq!(of.iter().map(|x| x.packet_delta).sum::<u64>(), snap.packets, "flow {i}");
        }
        let last = |i: u32| got.iter().rfind(|x| x.flow_id >> 32 == u64::from(i)).unwrap();
        let first = |i: u32| got.iter().find(|x| x.flow_id >> 32 == u64::from(i)).unwrap();
        use ipfix::flow::{end_reason, firewall_event};
        // Interfaces: VM to VM, and out of the fabric vif towards the tunnel.
        assert_eq!((first(f).ingress_interface, first(f).egress_interface), (1, 2));
        assert_eq!((first(r).ingress_interface, first(r).egress_interface), (2, 1));
        assert_eq!((first(remote).ingress_interface, first(remote).egress_interface), (1, 0));
        assert_eq!(first(f).firewall_event, firewall_event::CREATED);
        assert_eq!(first(f).forwarding_status, ipfix::flow::forwarding_status::FORWARDED);
        assert_eq!(got.iter().filter(|x| x.firewall_event == firewall_event::UPDATE).count(), 2);
        assert_eq!(
            (last(f).flow_end_reason, last(f).firewall_event),
            (end_reason::IDLE_TIMEOUT, firewall_event::DELETED)
        );
        assert_eq!(last(remote).flow_end_reason, end_reason::FORCED_END);
        assert_eq!(last(tcp).flow_end_reason, end_reason::END_OF_FLOW);
        assert_eq!(last(tcp).tcp_control_bits & 0x04, 0x04, "RST");
        assert_eq!((first(f).flow_start_ms, last(f).flow_end_ms), (1_000, 2_000));
        assert_eq!(last(f).analyzer_name, "an-a");
        assert_eq!(last(f).secondary_analyzer_name, "an-b");
        let st = sink.ipfix.stats();
        assert_eq!(
            (st.records, st.collectors[0].records, st.collectors[0].records_dropped),
            (got.len() as u64, got.len() as u64, 0)
        );
    }

    /// The reconciliation figures travel with the mirror counters; a flow that a rule starts
    /// mirroring after its setup gets a record at once, with the analyzers and the packets
    /// it had counted before (the flow table's `before_mirror`).
    #[test]
    fn reconciliation_fields_and_a_rule_that_mirrors_a_flow_later() {
        let mut fx = fixture("");
        let (f, r) = pair(&fx.table, 40100, false);
        traffic(&fx.table, f, 3, 100, false);
        let mut out: Vec<FlowLogData> = Vec::new();
        fx.scanner.sweep(&mut out);
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|x| x.analyzer_name.is_none() && x.before_mirror_packets.is_none()), "{out:#?}");
        // The rule now mirrors the pair: both flows' records follow, the reverse flow's
        // although its counters did not move.
        out.clear();
        let up = FlowUpdate { mirror: Some(0), sec_mirror: Some(1), ..FlowUpdate::new(Action::Forward) };
        for i in [f, r] {
            fx.table.set_action(i, fx.table.entry(i).unwrap().gen(), &up).unwrap();
        }
        fx.scanner.sweep(&mut out);
        assert_eq!(out.len(), 2, "{out:#?}");
        let fwd = out.iter().find(|x| x.packets == Some(3)).unwrap();
        assert_eq!((fwd.analyzer_name.as_deref(), fwd.sec_analyzer_name.as_deref()), (Some("an-a"), Some("an-b")));
        assert_eq!(fwd.action.as_deref(), Some("pass|mirror"));
        assert_eq!((fwd.before_mirror_packets, fwd.held_dropped_packets), (Some(3), Some(0)));
        assert_eq!((fwd.mirror_lost_packets, fwd.sec_mirror_lost_packets), (Some(0), Some(0)));
        assert_eq!((fwd.diff_packets, fwd.diff_bytes), (Some(0), Some(0)));
        // Two more packets: both copied to an-a, both lost for an-b.
        out.clear();
        for _ in 0..2 {
            fx.table.account(f, 100, 3_000);
            fx.table.account_mirror(f, false, 120);
            fx.table.account_mirror_lost(f, true);
        }
        fx.scanner.sweep(&mut out);
        assert_eq!(out.len(), 1);
        let x = &out[0];
        assert_eq!((x.packets, x.mirror_packets, x.sec_mirror_packets), (Some(5), Some(2), Some(0)));
        assert_eq!(
            (x.mirror_lost_packets, x.sec_mirror_lost_packets, x.before_mirror_packets),
            (Some(0), Some(2), Some(3))
        );
        // packets = sent + lost + before the rule + held and dropped, for each analyzer.
        for (sent, lost) in
            [(x.mirror_packets, x.mirror_lost_packets), (x.sec_mirror_packets, x.sec_mirror_lost_packets)]
        {
            assert_eq!(x.packets, Some(sent.unwrap() + lost.unwrap() + x.before_mirror_packets.unwrap()));
        }
    }

    /// A configuration programmed at run time: the flows' records are built from it, a flow
    /// whose record changes (another rule UUID) gets one at once, the others none.
    #[test]
    fn records_follow_a_new_configuration() {
        let mut fx = fixture("");
        let (f, _r) = pair(&fx.table, 40300, true);
        traffic(&fx.table, f, 1, 100, true);
        let mut out: Vec<FlowLogData> = Vec::new();
        fx.scanner.sweep(&mut out);
        assert!(out.iter().all(|x| x.nw_ace_uuid.as_deref() == Some("10000000-0000-4000-8000-000000000001")));
        out.clear();
        let renamed = CONFIG.replace("10000000-0000-4000-8000-000000000001", "20000000-0000-4000-8000-000000000002");
        fx.scanner.set_config(&parse(&renamed, "test").unwrap()).unwrap();
        fx.scanner.sweep(&mut out);
        assert_eq!(out.len(), 2, "both flows of the pair: {out:#?}");
        assert!(out.iter().all(|x| x.nw_ace_uuid.as_deref() == Some("20000000-0000-4000-8000-000000000002")));
        out.clear();
        fx.scanner.set_config(&parse(&renamed, "test").unwrap()).unwrap();
        fx.scanner.sweep(&mut out);
        assert!(out.is_empty(), "nothing changed: {out:#?}");
    }

    /// What export sampling leaves out is counted per analyzer until a record of the flow
    /// catches up.
    #[test]
    fn sampled_out_growth_per_analyzer() {
        let mut fx = fixture("");
        let (f, _r) = pair(&fx.table, 40200, true);
        fx.scanner.sampler = Sampler::new(Some(0), 1);
        traffic(&fx.table, f, 4, 100, true);
        let mut out: Vec<FlowLogData> = Vec::new();
        fx.scanner.sweep(&mut out);
        assert!(out.is_empty());
        let want = AnalyzerSampledOut { packets: 4, bytes: 400, mirror_packets: 4 };
        assert_eq!((fx.scanner.sampled_out("an-a"), fx.scanner.sampled_out("an-b")), (want, want));
        traffic(&fx.table, f, 1, 50, true);
        fx.scanner.sweep(&mut out);
        assert_eq!(fx.scanner.sampled_out("an-a"), AnalyzerSampledOut { packets: 5, bytes: 450, mirror_packets: 5 });
        // A record leaves: it carries the cumulative counters, nothing is missing any more.
        fx.scanner.sampler = Sampler::new(None, 1);
        traffic(&fx.table, f, 1, 10, true);
        fx.scanner.sweep(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].packets, Some(6));
        assert_eq!(fx.scanner.sampled_out("an-a"), AnalyzerSampledOut::default());
        assert_eq!(fx.scanner.sampled_out("an-b"), AnalyzerSampledOut::default());
    }

    // ------------------------------------------------------------ restarts

    /// A scanner of `fx`'s configuration over `fx`'s table that keeps its state in the
    /// fixture's directory: a start of the exporter (the previous scanner, dropped without
    /// a final sweep, stands for a killed process).
    fn start(fx: &Fixture, extra: &str) -> (FlowScanner, StateOrigin) {
        let cfg = parse(&format!("{CONFIG}{extra}"), "test").unwrap();
        FlowScanner::with_state_file(&cfg, fx.table.clone(), &fx._dir.path().join(STATE_FILE)).unwrap()
    }

    fn by_uuid(out: &[FlowLogData], uuid: &str) -> Vec<FlowLogData> {
        out.iter().filter(|r| r.flowuuid == uuid).cloned().collect()
    }

    #[test]
    fn flow_uuids_depend_on_the_table_not_on_the_process() {
        let fx = fixture("");
        let cfg = parse(CONFIG, "test").unwrap();
        let again = FlowScanner::new(&cfg, fx.table.clone()).unwrap();
        assert_eq!(fx.scanner.uuid(5, 2, 1_000), again.uuid(5, 2, 1_000));
        // The same path, a table created anew: other UUIDs.
        let path = fx.table.path().to_path_buf();
        let other = Arc::new(
            FlowTable::create(&path, &FlowTableConfig { main_entries: 1024, overflow_entries: 1024, max_lcores: 1 })
                .unwrap(),
        );
        let third = FlowScanner::new(&cfg, other).unwrap();
        assert_ne!(fx.scanner.uuid(5, 2, 1_000), third.uuid(5, 2, 1_000));
    }

    /// (a) After a restart, flows already exported get no setup record again, and the first
    /// record of each carries exactly the diff since its last record, under the same UUID;
    /// the counters continue.
    #[test]
    fn a_restart_resumes_the_export_where_it_stopped() {
        let fx = fixture("");
        let (mut s1, origin) = start(&fx, "");
        assert!(matches!(&origin, StateOrigin::Fresh { reason: FreshReason::Missing, .. }), "{origin}");
        let (f, r) = pair(&fx.table, 40000, true);
        let (g, _) = pair(&fx.table, 40001, false);
        traffic(&fx.table, f, 3, 100, true);
        let mut before: Vec<FlowLogData> = Vec::new();
        s1.sweep(&mut before);
        assert_eq!(before.len(), 4);
        traffic(&fx.table, f, 2, 50, true);
        traffic(&fx.table, g, 1, 70, false);
        s1.sweep(&mut before);
        assert_eq!(before.len(), 6);
        let fwd = before.iter().find(|x| x.flowuuid.starts_with(&format!("{f:08x}-"))).unwrap().clone();
        let rev = before.iter().find(|x| x.flowuuid.starts_with(&format!("{r:08x}-"))).unwrap().clone();
        let c1 = s1.counters().clone();
        // Traffic the first process never exported, then it dies (no final sweep).
        traffic(&fx.table, f, 4, 25, true);
        drop(s1);

        let (mut s2, origin) = start(&fx, "");
        assert_eq!(origin, StateOrigin::Restored { path: fx._dir.path().join(STATE_FILE), flows: 4 });
        assert!(origin.to_string().contains("restored 4 flow(s)"), "{origin}");
        assert_eq!(s2.counters().flows_tracked, 4);
        let mut after: Vec<FlowLogData> = Vec::new();
        s2.sweep(&mut after);
        // One periodic record of f, nothing for the idle flows.
        assert_eq!(after.len(), 1, "{after:#?}");
        let p = &after[0];
        assert_eq!(p.flowuuid, fwd.flowuuid);
        assert_eq!(p.reverse_uuid.as_deref(), Some(rev.flowuuid.as_str()));
        assert_eq!((p.bytes, p.packets, p.diff_bytes, p.diff_packets), (Some(500), Some(9), Some(100), Some(4)));
        assert_eq!((p.mirror_bytes, p.mirror_packets), (Some(680), Some(9)));
        assert_eq!((p.sourcevn.as_str(), p.action.as_deref()), ("vn-red", Some("pass|mirror")));
        assert_eq!((p.analyzer_name.as_deref(), p.forward_flow), (Some("an-a"), Some(true)));
        assert_eq!(p.setup_time, fwd.setup_time);
        // The counters go on from the previous process's.
        let c2 = s2.counters();
        assert_eq!((c2.setup_records, c2.periodic_records), (c1.setup_records, c1.periodic_records + 1));
        assert_eq!(c2.records_exported, c1.records_exported + 1);
        assert_eq!(c2.sweeps, c1.sweeps + 1);
        // Summed over both processes, the diffs are the table's counters.
        for (idx, uuid) in [(f, &fwd.flowuuid), (r, &rev.flowuuid)] {
            let all: Vec<FlowLogData> = by_uuid(&before, uuid).into_iter().chain(by_uuid(&after, uuid)).collect();
            let snap = fx.table.snapshot(idx).unwrap().unwrap();
            let sum: i64 = all.iter().map(|x| x.diff_bytes.unwrap()).sum();
            assert_eq!(sum as u64, snap.bytes, "{uuid}");
        }
        // A third start right away restores the same (nothing moved).
        drop(s2);
        let (mut s3, origin) = start(&fx, "");
        assert!(matches!(origin, StateOrigin::Restored { flows: 4, .. }));
        let mut out: Vec<FlowLogData> = Vec::new();
        s3.sweep(&mut out);
        assert!(out.is_empty(), "{out:#?}");
        // A new flow after the restart: its setup record.
        let (h, _) = pair(&fx.table, 40002, false);
        s3.sweep(&mut out);
        assert_eq!(out.len(), 2);
        assert!(out.iter().any(|x| x.flowuuid.starts_with(&format!("{h:08x}-"))));
    }

    /// (b) A flow deleted while the exporter was down gets its teardown record after the
    /// restart: with its final figures while its entry is still readable, with the last
    /// exported ones (and the records' fields as before) when its entry is gone.
    #[test]
    fn flows_deleted_while_down_get_their_teardown_records() {
        let fx = fixture("");
        let (mut s1, _) = start(&fx, "");
        let (a, _) = pair(&fx.table, 1000, true);
        let (b, _) = pair(&fx.table, 1001, true);
        traffic(&fx.table, a, 2, 100, true);
        traffic(&fx.table, b, 3, 100, true);
        let mut before: Vec<FlowLogData> = Vec::new();
        s1.sweep(&mut before);
        let rec = |i: u32| before.iter().find(|x| x.flowuuid.starts_with(&format!("{i:08x}-"))).unwrap().clone();
        let (ra, rb) = (rec(a), rec(b));
        drop(s1);
        // Down: b is deleted and its slot reclaimed; a gets packets, then is deleted.
        let gb = fx.table.entry(b).unwrap().gen();
        fx.table.mark_delete(b, gb).unwrap();
        fx.table.reclaim();
        fx.table.reclaim();
        assert!(fx.table.snapshot(b).unwrap().is_none(), "b's slot is free");
        traffic(&fx.table, a, 1, 40, true);
        let ga = fx.table.entry(a).unwrap().gen();
        fx.table.mark_delete(a, ga).unwrap();

        let (mut s2, origin) = start(&fx, "");
        assert!(matches!(origin, StateOrigin::Restored { flows: 4, .. }), "{origin}");
        let mut out: Vec<FlowLogData> = Vec::new();
        s2.sweep(&mut out);
        assert_eq!(out.len(), 2, "{out:#?}");
        let ta = by_uuid(&out, &ra.flowuuid);
        let tb = by_uuid(&out, &rb.flowuuid);
        assert_eq!((ta.len(), tb.len()), (1, 1));
        assert!(ta[0].teardown_time.is_some() && tb[0].teardown_time.is_some());
        assert_eq!((ta[0].bytes, ta[0].diff_bytes, ta[0].diff_packets), (Some(240), Some(40), Some(1)));
        assert_eq!((tb[0].bytes, tb[0].diff_bytes, tb[0].diff_packets), (Some(300), Some(0), Some(0)));
        for (t, r) in [(&ta[0], &ra), (&tb[0], &rb)] {
            // What the records said before the restart (the entry of a no longer shows it).
            assert_eq!(t.action.as_deref(), Some("pass|mirror"));
            assert_eq!((&t.sourcevn, &t.destvn, t.sourceip, t.sport), (&r.sourcevn, &r.destvn, r.sourceip, r.sport));
            assert_eq!((&t.analyzer_name, &t.sec_analyzer_name), (&r.analyzer_name, &r.sec_analyzer_name));
            assert_eq!(
                (&t.reverse_uuid, t.forward_flow, t.setup_time),
                (&r.reverse_uuid, r.forward_flow, r.setup_time)
            );
            assert_eq!((&t.nw_ace_uuid, &t.vmi_uuid), (&r.nw_ace_uuid, &r.vmi_uuid));
        }
        assert_eq!(tb[0].mirror_bytes, rb.mirror_bytes);
        assert_eq!(s2.counters().flows_tracked, 2);
        // Once: not again after a restart, nor after a's slot is reclaimed.
        drop(s2);
        let (mut s3, origin) = start(&fx, "");
        assert!(matches!(origin, StateOrigin::Restored { flows: 3, .. }), "{origin}");
        out.clear();
        s3.sweep(&mut out);
        fx.table.reclaim();
        fx.table.reclaim();
        s3.sweep(&mut out);
        assert!(out.is_empty(), "{out:#?}");
        drop(s3);
        let (_, origin) = start(&fx, "");
        assert!(matches!(origin, StateOrigin::Restored { flows: 2, .. }), "{origin}");
    }

    /// (c) A file the exporter cannot use (another layout, garbage) is kept as `.old`; the
    /// exporter starts afresh, says why in one line, and writes a usable file.
    #[test]
    fn an_unusable_state_file_is_kept_aside_and_the_export_starts_afresh() {
        let fx = fixture("");
        let path = fx._dir.path().join(STATE_FILE);
        let old = fx._dir.path().join("export-state.old");
        let (_, _) = pair(&fx.table, 7, false);
        let (mut s1, _) = start(&fx, "");
        let mut out: Vec<FlowLogData> = Vec::new();
        s1.sweep(&mut out);
        drop(s1);
        // Another layout version (offset 8 of the common header).
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[8..12].copy_from_slice(&99u32.to_ne_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let (mut s2, origin) = start(&fx, "");
        let line = origin.to_string();
        assert!(
            matches!(&origin, StateOrigin::Fresh { reason: FreshReason::Unusable { kept: Ok(p), .. }, .. } if *p == old),
            "{origin:?}"
        );
        assert!(!line.contains('\n'), "{line}");
        let expected = format!(
            "export state {}: cannot be used (layout version 99, this build reads {}), kept as {}; \
             exporting every flow afresh",
            path.display(),
            export_state::STATE_LAYOUT_VERSION,
            old.display()
        );
        assert_eq!(line, expected);
        assert!(line.contains("export-state.old") && line.ends_with("exporting every flow afresh"), "{line}");
        assert_eq!(std::fs::read(&old).unwrap(), bytes, "the old file is kept as it was");
        // Afresh: both flows of the pair get a setup record again.
        out.clear();
        s2.sweep(&mut out);
        assert_eq!((out.len(), s2.counters().setup_records), (2, 2));
        drop(s2);
        // The new file is usable.
        assert!(matches!(start(&fx, "").1, StateOrigin::Restored { flows: 2, .. }));
        // Garbage.
        std::fs::write(&path, vec![0xab; 10_000]).unwrap();
        let (_, origin) = start(&fx, "");
        assert!(matches!(&origin, StateOrigin::Fresh { reason: FreshReason::Unusable { kept: Ok(_), .. }, .. }));
        assert_eq!(std::fs::read(&old).unwrap(), vec![0xab; 10_000]);
        // Too short for a header.
        std::fs::write(&path, b"x").unwrap();
        let (_, origin) = start(&fx, "");
        assert!(matches!(&origin, StateOrigin::Fresh { reason: FreshReason::Unusable { .. }, .. }), "{origin}");
        assert!(matches!(start(&fx, "").1, StateOrigin::Restored { flows: 0, .. }));
    }

    /// (d) The state of another flow table (the table was created anew) is not restored:
    /// every flow is exported afresh, under new UUIDs.
    #[test]
    fn the_state_of_another_table_is_not_restored() {
        let fx = fixture("");
        let (f, _) = pair(&fx.table, 9, false);
        traffic(&fx.table, f, 2, 100, false);
        let (mut s1, _) = start(&fx, "");
        let mut before: Vec<FlowLogData> = Vec::new();
        s1.sweep(&mut before);
        drop(s1);
        let path = fx.table.path().to_path_buf();
        let cfg = FlowTableConfig { main_entries: 1024, overflow_entries: 1024, max_lcores: 1 };
        let fx2 = Fixture { table: Arc::new(FlowTable::create(&path, &cfg).unwrap()), ..fx };
        let (f2, _) = pair(&fx2.table, 9, false);
        assert_eq!(f2, f, "the same slot in the new table");
        traffic(&fx2.table, f2, 1, 100, false);
        let (mut s2, origin) = start(&fx2, "");
        assert!(matches!(&origin, StateOrigin::Fresh { reason: FreshReason::OtherTable { .. }, .. }), "{origin:?}");
        assert!(origin.to_string().contains("another flow table"), "{origin}");
        assert!(!fx2._dir.path().join("export-state.old").exists());
        let mut out: Vec<FlowLogData> = Vec::new();
        s2.sweep(&mut out);
        assert_eq!(out.len(), 2);
        let rec = out.iter().find(|x| x.flowuuid.starts_with(&format!("{f:08x}-"))).unwrap();
        assert_eq!((rec.bytes, rec.diff_bytes), (Some(100), Some(100)));
        assert!(before.iter().all(|b| b.flowuuid != rec.flowuuid), "a new UUID");
        assert_eq!(s2.counters().setup_records, 2);
    }

    #[test]
    fn remote_endpoints_carry_the_tunnel_peer() {
        let mut fx = fixture("");
        let k = FlowKey::v4(1, 17, Ipv4Addr::new(10, 1, 0, 3), Ipv4Addr::new(10, 9, 0, 7), 5000, 53);
        let f = fx.table.lookup_or_hold(&k, k.hash(), 1_000).unwrap().index();
        let r = fx.table.create_reverse(f, 1_001).unwrap();
        let mut up = FlowUpdate::new(Action::Forward);
        up.underlay_sport = Some(49999);
        for i in [f, r] {
            let g = fx.table.entry(i).unwrap().gen();
            fx.table.set_action(i, g, &up).unwrap();
        }
        let mut out: Vec<FlowLogData> = Vec::new();
        fx.scanner.sweep(&mut out);
        assert_eq!(out.len(), 2);
        for rec in &out {
            assert_eq!(rec.other_vrouter_ip.as_deref(), Some("10.10.0.2"), "{rec:?}");
            assert_eq!(rec.underlay_proto, Some(17));
            assert_eq!(rec.underlay_source_port, Some(49999));
        }
        // From the remote side: not an ingress flow; the VN is the VRF's.
        let rev = out.iter().find(|x| x.sourceip == IpAddr::from([10, 9, 0, 7])).unwrap();
        assert_eq!(rev.direction_ing, 0);
        // A local flow has no underlay.
        let (lf, _) = pair(&fx.table, 7, false);
        out.clear();
        fx.scanner.sweep(&mut out);
        let local = out.iter().find(|x| x.flowuuid.starts_with(&format!("{lf:08x}-"))).unwrap();
        assert_eq!((local.other_vrouter_ip.as_deref(), local.underlay_proto), (None, None));
        assert_eq!(local.underlay_source_port, Some(0));
    }

    #[test]
    fn diffs_add_up_to_the_table_counters() {
        // Random traffic on many flows between sweeps of random slices: per flow, the sum of
        // exported diffs equals the table's counters and the last mirror figures equal the
        // table's mirror counters.
        let mut fx = fixture("");
        fx.scanner.set_slice(97);
        let flows: Vec<u32> = (0..50).map(|i| pair(&fx.table, 1000 + i, true).0).collect();
        let mut out: Vec<FlowLogData> = Vec::new();
        let mut rng = 0x1234_5678_u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for _ in 0..300 {
            let f = flows[(next() % 50) as usize];
            traffic(&fx.table, f, (next() % 5) as u32, 60 + (next() % 1400) as u32, true);
            if next() % 3 == 0 {
                fx.scanner.tick(&mut out);
            }
        }
        // Delete every third flow right after a last packet (its final counters are only in
        // the deleted entry), then sweep twice and reclaim.
        let mut finals = Vec::new();
        for &f in flows.iter().step_by(3) {
            traffic(&fx.table, f, 1, 1000, true);
            let g = fx.table.entry(f).unwrap().gen();
            fx.table.mark_delete(f, g).unwrap();
            finals.push(fx.table.snapshot(f).unwrap().unwrap());
        }
        fx.scanner.sweep(&mut out);
        fx.table.reclaim();
        fx.scanner.sweep(&mut out);
        let mut by_uuid: HashMap<String, (i64, i64, i64, i64)> = HashMap::new();
        for r in &out {
            let e = by_uuid.entry(r.flowuuid.clone()).or_default();
            e.0 += r.diff_bytes.unwrap();
            e.1 += r.diff_packets.unwrap();
            e.2 = e.2.max(r.mirror_bytes.unwrap_or(0));
            e.3 = e.3.max(r.mirror_packets.unwrap_or(0));
        }
        let mut checked = 0;
        let live: Vec<FlowSnapshot> = fx.table.iter_active().map(|(_, s)| s).collect();
        for s in finals.iter().chain(&live) {
            let rec = out.iter().find(|r| r.flowuuid.starts_with(&format!("{:08x}-", s.index))).unwrap();
            let sums = by_uuid[&rec.flowuuid];
            assert_eq!((sums.0 as u64, sums.1 as u64), (s.bytes, s.packets));
            assert_eq!((sums.2 as u64, sums.3 as u64), (s.mirror_bytes, s.mirror_packets));
            checked += 1;
        }
        // 17 deleted forward flows, 83 live entries (33 forward, 50 reverse).
        assert_eq!((finals.len(), checked), (17, 100));
        let deleted_records = out.iter().filter(|r| r.teardown_time.is_some()).count();
        assert_eq!(deleted_records, 17);
    }

    #[test]
    fn bad_export_config_names_file_line_and_field() {
        let text = format!("{CONFIG}collectors = [\"collector.example:8086\"]\n");
        let line = text.lines().count();
        let e = parse(&text, "vrouter.toml").unwrap_err().to_string();
        assert!(e.starts_with(&format!("vrouter.toml:{line}: export.collectors: ")), "{e}");
        assert!(e.contains("collector.example:8086"), "{e}");
        let e = parse(&format!("{CONFIG}scan_percent = 0\n"), "v.toml").unwrap_err().to_string();
        assert!(e.contains("export.scan_percent"), "{e}");
        let e = parse(&format!("{CONFIG}typo = 1\n"), "v.toml").unwrap_err().to_string();
        assert!(e.contains("typo"), "{e}");
    }

    #[test]
    fn bad_ipfix_config_names_file_line_and_field() {
        let text = format!("{CONFIG}[ipfix]\nenabled = true\ncollectors = [\"collector.example:4739\"]\n");
        let line = text.lines().count();
        let e = parse(&text, "vrouter.toml").unwrap_err().to_string();
        assert!(e.starts_with(&format!("vrouter.toml:{line}: ipfix.collectors: ")), "{e}");
        assert!(e.contains("collector.example:4739"), "{e}");
        let e = parse(&format!("{CONFIG}[ipfix]\ntemplate_refresh_s = 0\n"), "v.toml").unwrap_err().to_string();
        assert!(e.contains("ipfix.template_refresh_s"), "{e}");
        let e = parse(&format!("{CONFIG}[ipfix]\nmax_message_size = 100\n"), "v.toml").unwrap_err().to_string();
        assert!(e.contains("ipfix.max_message_size") && e.contains("512..=65535"), "{e}");
        let e = parse(&format!("{CONFIG}[ipfix]\ntemplate_refresh = 5\n"), "v.toml").unwrap_err().to_string();
        assert!(e.contains("template_refresh"), "{e}");
    }

    /// The exporter thread and the session thread it starts run on the given CPU only; the
    /// counters file appears in the run directory.
    #[test]
    fn spawned_threads_are_pinned_and_write_their_counters() {
        let dir = tempfile::tempdir().unwrap();
        let run_dir = dir.path().join("run");
        std::fs::create_dir_all(&run_dir).unwrap();
        let text = CONFIG.replace("/tmp/export-test", run_dir.to_str().unwrap());
        // Nothing listens there: the session stays disconnected, which is fine here.
        let text = format!("{text}collectors = [\"127.0.0.1:9\"]\n");
        let cfg = parse(&text, "t").unwrap();
        let fx = fixture("");
        let stop = Arc::new(AtomicBool::new(false));
        let h = builder(&cfg, fx.table.clone(), stop.clone()).pin_to(0).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut pinned = Vec::new();
        while pinned.len() < 2 || !run_dir.join(COUNTERS_FILE).exists() {
            assert!(Instant::now() < deadline, "threads {pinned:?}");
            pinned.clear();
            for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
                let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
                let name = comm.trim();
                if name == "vr-export" || name == "sandesh-session" {
                    let status = std::fs::read_to_string(t.path().join("status")).unwrap();
                    let cpus =
                        status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).unwrap().trim().to_owned();
                    pinned.push((name.to_owned(), cpus));
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(pinned.iter().all(|(_, c)| c == "0"), "{pinned:?}");
        // The export state is in the run directory.
        assert!(run_dir.join(STATE_FILE).exists());
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap();
        let c = read_counters(&run_dir).unwrap();
        assert_ne!(c.session_state, "Established");
        // The final full sweep on stop.
        assert!(c.sweeps >= 1, "{c:?}");
    }

    #[test]
    fn export_rate_zero_exports_nothing() {
        let mut fx = fixture("flow_export_rate = 0\n");
        let (f, _) = pair(&fx.table, 1, false);
        traffic(&fx.table, f, 1, 100, false);
        let mut out: Vec<FlowLogData> = Vec::new();
        fx.scanner.sweep(&mut out);
        assert!(out.is_empty());
        assert_eq!(fx.scanner.counters().records_sampled_out, 2);
        assert_eq!(fx.scanner.counters().records_exported, 0);
    }

    #[test]
    fn slices_cover_the_table_within_the_configured_fraction() {
        // 1024 + 1024 entries, age 180 s, 25 %, 100 ms: 450 ticks, but at least MIN_SLICE.
        let fx = fixture("");
        assert_eq!(fx.scanner.slice(), 2048);
        let cfg = parse(&format!("{CONFIG}scan_percent = 10\n"), "t").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let big = Arc::new(
            FlowTable::create(
                &dir.path().join("flow"),
                &FlowTableConfig { main_entries: 1 << 20, overflow_entries: 1024, max_lcores: 1 },
            )
            .unwrap(),
        );
        let s = FlowScanner::new(&cfg, big.clone()).unwrap();
        // 18 s sweep at 100 ms: 180 ticks.
        assert_eq!(s.slice(), big.capacity() / 180 + 1);
    }
}
