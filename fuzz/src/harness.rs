//! The forwarding-path fuzz harness: arbitrary frames through `vrouter::pipeline::process`
//! with the flow stage, a network policy, a security group and flow mirroring on, and the
//! invariants checked on every frame.
//!
//! This file is shared by the libFuzzer target (`fuzz/fuzz_targets/pipeline.rs`), the
//! fuzz crate's replay test and the workspace replay test (`vrouter/tests/fuzz_replay.rs`,
//! which includes it by path): it only uses `vrouter` and `flow_table`.
//!
//! # Input format
//!
//! A sequence of up to [`MAX_FRAMES`] records `sel:u8 len:u16be bytes[len]` (a short last
//! record takes the bytes left). `sel & 3` picks the receiving vif (0 fabric, 1 vm1, 2 vm2,
//! 3 vm1); `sel & 0x80` gives the buffer little headroom (16 bytes instead of 128).
//! Each input starts with an empty flow table, so a finding replays from its input alone.
//!
//! # Invariants (any violation panics with a description)
//!
//! 1. `process` never panics (and its debug assertions hold: build with them on).
//! 2. Every frame ends in exactly one [`Outcome`]: `Tx` to an existing vif, a `Drop` (the
//!    type gives it a reason), or a `Hold` of a flow that exists in HOLD and that this frame
//!    created. A frame is counted on at most one flow, once; a held frame and a frame
//!    dropped by its flow's action exactly once; a held frame not again when it is re-run. A held frame is set up by the agent's own setup code
//!    ([`vrouter::agent::setup::program`], the real policy evaluation) and re-run: it must
//!    then end `Tx` or `Drop`, with one mirror copy when the decision mirrors the flow and
//!    none when it does not.
//! 3. Mirror copies are of the frame as received (a suffix of it: the inner packet for
//!    decapsulated traffic), never for a frame that ends held, at most one per run.
//! 4. Deny rules: an independent reference parser ([`oracle`]) decides when a frame is
//!    definitely a TCP/UDP datagram to port 53 that the policy must deny, or a TCP segment
//!    to vm2 that its security group must deny; such a frame is never `Tx`. Fragments and
//!    IPv6 extension headers are judged for the target behaviour (a first fragment or an
//!    extension-header packet to a denied port is denied; a later fragment of a datagram
//!    whose first fragment was denied is denied); that part is switchable, see [`Oracle`].

use flow_table::{Action, FlowTable, FlowTableConfig};
use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::OnceLock;
use vrouter::agent::policy::PolicyEngine;
use vrouter::agent::setup::{self, Setup};
use vrouter::drop_reason::DropReason;
use vrouter::fib::Fib;
use vrouter::pipeline::flow::{CopyResults, HoldStore};
use vrouter::pipeline::frag::FragTable;
use vrouter::pipeline::{self, FlowMirror, FlowStage, MirrorFrame, VecBuf, Verdict};

/// Most frames taken from one input.
pub const MAX_FRAMES: usize = 8;

/// The configuration the harness forwards with. The oracle below does not read it: it has
/// its own copy of the few facts it needs (addresses, MACs, label, VNI, rules).
pub const CONFIG: &str = r#"
[eal]
forwarding_cores = [1]
[vrouter]
run_dir = "/tmp/vrouter-fuzz-unused"
router_ip = "10.10.0.1"

[[vif]]
id = 0
name = "fabric0"
type = "fabric"
device = "net_pcap0"
mac = "02:00:00:00:00:01"
vrf = 0
[[vif]]
id = 1
name = "vm1"
type = "virtual"
device = "net_pcap1"
mac = "00:00:5e:00:01:00"
ip = "192.168.1.3"
ip6 = "fd01::3"
vrf = 1
vn_name = "vn1"
[[vif]]
id = 2
name = "vm2"
type = "virtual"
device = "net_pcap2"
mac = "02:00:00:00:ff:02"
ip = "192.168.1.4"
ip6 = "fd01::4"
vrf = 1
vn_name = "vn1"
security_groups = ["web"]

[[vrf]]
id = 0
name = "fabric"
[[vrf]]
id = 1
name = "vn1"
vxlan_vni = 5001

[[nexthop]]
id = 1
type = "encap"
vif = 1
dst_mac = "02:00:00:00:01:03"
[[nexthop]]
id = 2
type = "encap"
vif = 2
dst_mac = "02:00:00:00:01:04"
[[nexthop]]
id = 3
type = "tunnel"
encap = "mplsoudp"
remote_ip = "10.10.0.2"
label = 40
vif = 0
dst_mac = "02:00:00:00:00:02"
[[nexthop]]
id = 4
type = "tunnel"
encap = "vxlan"
remote_ip = "10.10.0.3"
label = 5001
vif = 0
dst_mac = "02:00:00:00:00:02"

[[route]]
vrf = 1
prefix = "192.168.1.3/32"
nexthop = 1
[[route]]
vrf = 1
prefix = "192.168.1.4/32"
nexthop = 2
[[route]]
vrf = 1
prefix = "192.168.2.0/24"
nexthop = 3
[[route]]
vrf = 1
prefix = "0.0.0.0/0"
nexthop = 4
[[route]]
vrf = 1
prefix = "fd01::3/128"
nexthop = 1
[[route]]
vrf = 1
prefix = "fd01::4/128"
nexthop = 2
[[route]]
vrf = 1
prefix = "fd02::/64"
nexthop = 3
[[route]]
vrf = 1
prefix = "::/0"
nexthop = 4

[[bridge]]
vrf = 1
mac = "02:00:00:00:01:03"
nexthop = 1
[[bridge]]
vrf = 1
mac = "02:00:00:00:01:04"
nexthop = 2
[[bridge]]
vrf = 1
mac = "02:00:00:00:02:09"
nexthop = 4

[[label]]
label = 17
nexthop = 1
[[label]]
label = 18
nexthop = 2

[[analyzer]]
name = "an1"
ip = "10.10.0.20"
[[analyzer]]
name = "an2"
ip = "10.10.0.21"
index = 7

[[network_policy]]
name = "vn1-policy"
vns = ["vn1"]
[[network_policy.rule]]
uuid = "aaaaaaaa-0000-4000-8000-000000000053"
protocol = "udp"
dst_ports = "53"
action = "deny"
mirror_to = ["an1"]
[[network_policy.rule]]
uuid = "aaaaaaaa-0000-4000-8000-000000000153"
protocol = "tcp"
dst_ports = "53"
action = "deny"
[[network_policy.rule]]
uuid = "aaaaaaaa-0000-4000-8000-000000000001"
protocol = "icmp"
action = "pass"
[[network_policy.rule]]
uuid = "aaaaaaaa-0000-4000-8000-0000000000ff"
action = "pass"
mirror_to = ["an1", "an2"]

[[security_group]]
name = "web"
[[security_group.rule]]
uuid = "bbbbbbbb-0000-4000-8000-000000000001"
direction = "ingress"
protocol = "tcp"
ports = "80-443"
[[security_group.rule]]
uuid = "bbbbbbbb-0000-4000-8000-000000000002"
direction = "ingress"
protocol = "udp"
[[security_group.rule]]
uuid = "bbbbbbbb-0000-4000-8000-000000000003"
direction = "ingress"
protocol = "icmp"
[[security_group.rule]]
uuid = "bbbbbbbb-0000-4000-8000-000000000004"
direction = "ingress"
protocol = "icmp6"
[[security_group.rule]]
uuid = "bbbbbbbb-0000-4000-8000-000000000005"
direction = "egress"
"#;

/// Which parts of the deny oracle are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Oracle {
    /// Judge IPv4 fragments and IPv6 packets with extension headers (the target behaviour
    /// of the fragment table / extension-header walk). Env `VROUTER_FUZZ_FRAG_ORACLE=1`.
    pub frag_ext: bool,
    /// Judge bridged (L2) frames between VMs too: frames not addressed to the gateway MAC,
    /// which today bypass the flow stage. Env `VROUTER_FUZZ_L2_ORACLE=1`.
    pub l2: bool,
}

impl Oracle {
    /// From the environment (read once per process).
    pub fn from_env() -> Oracle {
        static O: OnceLock<Oracle> = OnceLock::new();
        *O.get_or_init(|| {
            // On unless switched off: the pipeline now keys fragments, extension headers
            // and bridged frames (set 0 to judge only routed, unfragmented frames).
            let on = |v: &str| std::env::var(v).map(|s| s != "0" && s != "false").unwrap_or(true);
            Oracle { frag_ext: on("VROUTER_FUZZ_FRAG_ORACLE"), l2: on("VROUTER_FUZZ_L2_ORACLE") }
        })
    }
}

/// How a frame ended, as the invariants see it. [`outcome`] is the one place that knows
/// `Verdict`'s variants: a new variant is one more line there (e.g. a fragment queued until
/// its datagram's first fragment arrives maps to `Queued`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Tx(u16),
    Drop(DropReason),
    /// Held for flow setup (re-run by the harness once the agent has set the flow up).
    Hold {
        flow: u32,
        new: bool,
    },
    /// A fragment parked until its datagram's first fragment comes (the harness runs it
    /// again then, as the data plane does).
    Queued,
}

fn outcome(v: Verdict) -> Outcome {
    match v {
        Verdict::Tx(vif) => Outcome::Tx(vif),
        Verdict::Drop(r) => Outcome::Drop(r),
        Verdict::Hold { flow, new } => Outcome::Hold { flow, new },
        Verdict::FragWait => Outcome::Queued,
        // The frame is dropped; its buffer goes back to the sender as an ICMP error.
        Verdict::Reply { drop, .. } => Outcome::Drop(drop),
    }
}

/// What one input did (for the replay test's and the fuzz target's statistics).
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub frames: usize,
    pub tx: usize,
    pub drops: usize,
    pub held: usize,
    pub queued: usize,
    pub rerun_tx: usize,
    pub rerun_drop: usize,
    pub mirror_copies: usize,
    /// Frames the oracle judged (must not be Tx).
    pub judged: usize,
}

struct World {
    fib: Fib,
    policy: PolicyEngine,
    /// Where flow table files are created (and unlinked at once: the mapping is all the
    /// harness needs, and a process that ends, or aborts on a finding, leaves nothing).
    dir: std::path::PathBuf,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let cfg = vrouter::config::parse(CONFIG, "fuzz.toml").expect("harness config parses");
        let fib = Fib::from_config(&cfg).expect("harness FIB");
        let policy = PolicyEngine::from_config(&cfg).expect("harness policy");
        // The flow table lives in a file: a tmpfs when there is one.
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
        World { fib, policy, dir }
    })
}

/// Records the copy requests of one run and checks each against the frame.
struct Recorder<'a> {
    original: &'a [u8],
    copies: Vec<(u32, [u8; 2])>,
    problems: Vec<String>,
}

impl FlowMirror for Recorder<'_> {
    fn flow_copy(&mut self, flow: u32, mirrors: [u8; 2], vrf: u32, frame: &MirrorFrame<'_>) -> CopyResults {
        if mirrors[0] == flow_table::NO_MIRROR {
            self.problems.push(format!("copy request for flow {flow} without a primary mirror: {mirrors:?}"));
        }
        if vrf != 1 {
            self.problems.push(format!("copy request for flow {flow} in VRF {vrf}: flows are only kept in VRF 1"));
        }
        if frame.bytes.is_empty() || !self.original.ends_with(frame.bytes) {
            self.problems
                .push(format!("copy of flow {flow} is not (a suffix of) the frame as received: {:02x?}", frame.bytes));
        }
        if let Some(l2) = frame.l2 {
            let et = u16::from_be_bytes([l2[12], l2[13]]);
            let ver = frame.bytes.first().map(|b| b >> 4);
            if !matches!((et, ver), (0x0800, Some(4)) | (0x86dd, Some(6))) {
                self.problems.push(format!("copy of flow {flow}: L2 ethertype {et:#06x} for IP version {ver:?}"));
            }
        }
        self.copies.push((flow, mirrors));
        [Some(Ok(frame.bytes.len() as u32)), None]
    }
}

fn total_packets(t: &FlowTable) -> u64 {
    t.iter_active().map(|(_, s)| s.packets).sum()
}

/// Splits an input into `(sel, frame)` records.
pub fn records(data: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() && out.len() < MAX_FRAMES {
        let sel = rest[0];
        rest = &rest[1..];
        let len = match rest {
            [a, b, ..] => usize::from(u16::from_be_bytes([*a, *b])),
            _ => rest.len(),
        };
        rest = rest.get(2..).unwrap_or(&[]);
        let n = len.min(rest.len());
        out.push((sel, &rest[..n]));
        rest = &rest[n..];
    }
    out
}

/// Encodes frames as an input (for seeds and regression inputs).
pub fn encode(frames: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (sel, f) in frames {
        out.push(*sel);
        out.extend_from_slice(&(f.len() as u16).to_be_bytes());
        out.extend_from_slice(f);
    }
    out
}

/// Runs one input through the pipeline and checks every invariant; `Err` describes the
/// first violation.
pub fn run(data: &[u8], oracle: Oracle) -> Result<Report, String> {
    let w = world();
    // A fresh (empty) table per input. An input that held no frame never wrote to its table
    // (flows are only created by a miss, which holds the frame), so that table is handed to
    // the next input instead of creating a file again.
    let table = match UNUSED_TABLE.with(|t| t.borrow_mut().take()) {
        Some(t) => t,
        None => {
            let path = w.dir.join(format!("vrouter-fuzz-flows-{}", std::process::id()));
            let cfg = FlowTableConfig { main_entries: 256, overflow_entries: 64, max_lcores: 1 };
            let t = FlowTable::create(&path, &cfg).map_err(|e| format!("harness: flow table: {e}"))?;
            let _ = std::fs::remove_file(&path);
            t
        }
    };
    let hold = HoldStore::new(3, 16);
    let mut st = oracle::State::default();
    let mut rep = Report::default();
    let mut frags = FragTable::default();
    let recs = records(data);
    for (now, (i, &(sel, frame))) in (1_001u64..).zip(recs.iter().enumerate()) {
        let mut ctx = Ctx { w, table: &table, hold: &hold, frags: &mut frags, st: &mut st, rep: &mut rep, now, oracle };
        ctx.frame(i, sel, frame, false)?;
        // Fragments that waited for this (first) fragment run again now, in arrival order,
        // as the data plane runs them after the burst.
        let mut ready = Vec::new();
        frags.take_ready(|p, _| ready.push(p));
        for j in ready {
            let (sel, frame) = recs[j];
            let mut ctx =
                Ctx { w, table: &table, hold: &hold, frags: &mut frags, st: &mut st, rep: &mut rep, now, oracle };
            ctx.frame(j, sel, frame, true).map_err(|e| format!("(parked until its first fragment) {e}"))?;
        }
    }
    if rep.held == 0 && table.iter_active().next().is_none() {
        UNUSED_TABLE.with(|t| *t.borrow_mut() = Some(table));
    }
    Ok(rep)
}

/// What one frame runs against (see [`run`]).
struct Ctx<'a> {
    w: &'static World,
    table: &'a FlowTable,
    hold: &'a HoldStore,
    frags: &'a mut FragTable,
    st: &'a mut oracle::State,
    rep: &'a mut Report,
    now: u64,
    oracle: Oracle,
}

impl Ctx<'_> {
    /// Runs frame `i` of the input (`sel`: its selector byte) and checks every invariant.
    /// `rerun`: a parked fragment run again (already counted as a frame of the input).
    fn frame(&mut self, i: usize, sel: u8, frame: &[u8], rerun: bool) -> Result<(), String> {
        let (w, table, hold, now, oracle) = (self.w, self.table, self.hold, self.now, self.oracle);
        let fib = &w.fib;
        let st = &mut *self.st;
        let rep = &mut *self.rep;
        let vif_id = match sel & 3 {
            0 => 0,
            2 => 2,
            _ => 1,
        };
        let headroom = if sel & 0x80 != 0 { 16 } else { 128 };
        let vif = fib.vif(vif_id).expect("vif").clone();
        let ctx = |what: String| format!("frame {i} (vif {vif_id}, {} bytes {:02x?}): {what}", frame.len(), frame);
        let judged = oracle::judge(st, vif_id, frame, oracle);
        if !rerun {
            rep.frames += 1;
        }

        let before = total_packets(table);
        let mut rec = Recorder { original: frame, copies: Vec::new(), problems: Vec::new() };
        let mut buf = VecBuf::new(headroom, frame);
        let v = {
            let mut stage = FlowStage {
                table,
                lcore: 0,
                now,
                reinject: false,
                held_flow: None,
                may_create: true,
                pre: None,
                held: hold,
                mirror: Some(&mut rec),
                frags: &mut *self.frags,
            };
            outcome(pipeline::process(fib, &vif, &mut buf, Some(&mut stage)))
        };
        let counted = total_packets(table) - before;
        if let Some(p) = rec.problems.first() {
            return Err(ctx(p.clone()));
        }
        if rec.copies.len() > 1 {
            return Err(ctx(format!("{} copy requests for one run", rec.copies.len())));
        }
        check_outcome(fib, v).map_err(&ctx)?;
        let final_outcome = match v {
            Outcome::Hold { flow, new } => {
                rep.held += 1;
                if counted != 1 {
                    return Err(ctx(format!("held frame counted {counted} times on flows (want 1)")));
                }
                if !rec.copies.is_empty() {
                    return Err(ctx("a held frame was mirrored".into()));
                }
                let e = table.entry(flow).ok_or_else(|| ctx(format!("held for flow {flow}, not in the table")))?;
                if e.action() != Action::Hold {
                    return Err(ctx(format!("held for flow {flow} whose action is {:?}", e.action())));
                }
                // Every flow is set up as soon as it is held, so a frame is only held for a
                // flow it created.
                if !new {
                    return Err(ctx(format!("held for flow {flow} that it did not create")));
                }
                let gen = e.gen();
                let mirrored = match setup::program(table, fib, &w.policy, flow, gen, vif_id, now) {
                    Setup::Done(p) => p.decision.mirror[0],
                    Setup::NoReverse => None,
                    Setup::Stale => return Err(ctx(format!("setup of flow {flow} found it stale"))),
                };
                // Re-run the frame as it was received (a held packet is not modified).
                let mut rec2 = Recorder { original: frame, copies: Vec::new(), problems: Vec::new() };
                let mut buf2 = VecBuf::new(headroom, frame);
                let before2 = total_packets(table);
                let v2 = {
                    let mut stage = FlowStage {
                        table,
                        lcore: 0,
                        now,
                        reinject: true,
                        held_flow: Some(flow),
                        may_create: true,
                        pre: None,
                        held: hold,
                        mirror: Some(&mut rec2),
                        frags: &mut *self.frags,
                    };
                    outcome(pipeline::process(fib, &vif, &mut buf2, Some(&mut stage)))
                };
                let ctx2 = |what: String| ctx(format!("re-run after setup of flow {flow}: {what}"));
                if let Some(p) = rec2.problems.first() {
                    return Err(ctx2(p.clone()));
                }
                check_outcome(fib, v2).map_err(&ctx2)?;
                let recounted = total_packets(table) - before2;
                if recounted != 0 {
                    return Err(ctx2(format!("re-run frame counted again ({recounted})")));
                }
                match v2 {
                    Outcome::Tx(_) => rep.rerun_tx += 1,
                    Outcome::Drop(_) => rep.rerun_drop += 1,
                    Outcome::Hold { .. } | Outcome::Queued => return Err(ctx2(format!("not settled: {v2:?}"))),
                }
                // The re-run reaches the flow stage again (the first run did, on the same
                // bytes) and finds the set-up flow: the copy is taken there, before the
                // action and before any later drop (TTL, tunnel push, ...), exactly when the
                // decision mirrors. Only a flow stage that cannot use the flow skips it.
                let stage_failed = matches!(v2, Outcome::Drop(DropReason::FlowUnusable | DropReason::FlowTableFull));
                let want = usize::from(!stage_failed && mirrored.is_some());
                if rec2.copies.len() != want {
                    return Err(ctx2(format!(
                        "{} mirror copies, want {want} (decision mirror {mirrored:?}, {v2:?})",
                        rec2.copies.len()
                    )));
                }
                if let (Some(m), Some((_, got))) = (mirrored, rec2.copies.first()) {
                    if got[0] != m {
                        return Err(ctx2(format!("copied to mirror {got:?}, decision says {m}")));
                    }
                }
                rep.mirror_copies += rec2.copies.len();
                v2
            }
            Outcome::Tx(_) | Outcome::Drop(_) | Outcome::Queued => {
                if counted > 1 {
                    return Err(ctx(format!("frame counted {counted} times on flows")));
                }
                // A flow's drop action only applies to a frame the flow stage counted.
                if v == Outcome::Drop(DropReason::FlowActionDrop) && counted != 1 {
                    return Err(ctx(format!("dropped by a flow action but counted {counted} times")));
                }
                match v {
                    Outcome::Tx(_) => rep.tx += 1,
                    // Parked until its datagram's first fragment comes (then run again by
                    // `run`); a full queue drops it, as the data plane does.
                    Outcome::Queued => match self.frags.park(i, vif_id) {
                        Ok(()) => rep.queued += 1,
                        Err(_) => rep.drops += 1,
                    },
                    _ => rep.drops += 1,
                }
                rep.mirror_copies += rec.copies.len();
                v
            }
        };
        if let Some(why) = &judged {
            rep.judged += 1;
            if let Outcome::Tx(out) = final_outcome {
                return Err(ctx(format!("DENY BYPASS: forwarded to vif {out}, but {why}")));
            }
        }
        let decided = matches!(final_outcome, Outcome::Tx(_) | Outcome::Drop(DropReason::FlowActionDrop));
        oracle::settled(st, vif_id, frame, decided, judged.is_some());
        if !rerun {
            oracle::record(st, vif_id, frame);
        }
        Ok(())
    }
}

thread_local! {
    /// A table no input has written to yet (see [`run`]).
    static UNUSED_TABLE: std::cell::RefCell<Option<FlowTable>> = const { std::cell::RefCell::new(None) };
}

fn check_outcome(fib: &Fib, v: Outcome) -> Result<(), String> {
    match v {
        Outcome::Tx(vif) if fib.vif(vif).is_none() => Err(format!("Tx to vif {vif}, which does not exist")),
        _ => Ok(()),
    }
}

/// [`run`] that panics on a violation (the fuzz target's and the replay tests' entry).
pub fn check(data: &[u8]) -> Report {
    match run(data, Oracle::from_env()) {
        Ok(r) => r,
        Err(e) => panic!("invariant violated: {e}"),
    }
}

/// The deny oracle: a reference parser written from the RFCs (Ethernet, IPv4 RFC 791,
/// IPv6 RFC 8200, UDP RFC 768, TCP RFC 9293, MPLS RFC 3032 / MPLSoUDP RFC 7510, VXLAN
/// RFC 7348), independent of `vrouter::packet`, and the harness configuration's facts.
pub mod oracle {
    use super::*;

    // Facts of the harness configuration, restated (not read from the FIB).
    const ROUTER_MAC: [u8; 6] = [0x00, 0x00, 0x5e, 0x00, 0x01, 0x00];
    const VM_VIF_MAC: [[u8; 6]; 3] = [[0; 6], ROUTER_MAC, [0x02, 0, 0, 0, 0xff, 0x02]];
    const ROUTER_IP: [u8; 4] = [10, 10, 0, 1];
    const MPLSOUDP_PORT: u16 = 6635;
    const VXLAN_PORT: u16 = 4789;
    /// MPLS labels that deliver to a local VM.
    const VM_LABELS: [u32; 2] = [17, 18];
    const VNI: u32 = 5001;
    /// vm2's addresses (its security group allows TCP ingress to ports 80-443 only).
    fn is_vm2(a: IpAddr) -> bool {
        a == IpAddr::from([192, 168, 1, 4]) || a == "fd01::4".parse::<IpAddr>().unwrap()
    }
    fn is_local_vm(a: IpAddr) -> bool {
        is_vm2(a) || a == IpAddr::from([192, 168, 1, 3]) || a == "fd01::3".parse::<IpAddr>().unwrap()
    }
    const TCP: u8 = 6;
    const UDP: u8 = 17;
    const DENIED_PORT: u16 = 53;

    /// Per-input memory: fragments of denied datagrams, and address pairs seen (a flow the
    /// other way may have been set up, which allows its reverse statefully).
    #[derive(Default)]
    pub struct State {
        denied_frags: HashSet<(IpAddr, IpAddr, u8, u32)>,
        seen: HashSet<(IpAddr, IpAddr, u8)>,
    }

    /// What the reference parser found at the transport layer.
    #[derive(Debug, Clone, Copy)]
    enum L4 {
        /// TCP/UDP (or another protocol) with its ports when it has them.
        Ports { proto: u8, dport: Option<u16> },
        /// A non-first fragment of datagram `id`.
        LaterFragment { proto: u8, id: u32 },
        /// Not something the oracle can judge (AH, ESP, malformed chain, ...).
        Unknown,
    }

    #[derive(Debug, Clone, Copy)]
    struct Ip {
        src: IpAddr,
        dst: IpAddr,
        l4: L4,
        /// A fragment or an IPv6 packet with extension headers.
        frag_ext: bool,
        /// The first fragment's datagram id (the fragment key is src, dst, proto, id).
        first_frag: Option<(u8, u32)>,
    }

    fn be16(b: &[u8], at: usize) -> Option<u16> {
        Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
    }

    /// IPv4 (RFC 791): version 4, IHL >= 5, the header and total length within the bytes.
    fn ipv4(p: &[u8]) -> Option<Ip> {
        if p.len() < 20 || p[0] >> 4 != 4 {
            return None;
        }
        let ihl = usize::from(p[0] & 0x0f) * 4;
        let total = usize::from(be16(p, 2)?);
        if ihl < 20 || total < ihl || total > p.len() {
            return None;
        }
        let src = IpAddr::from([p[12], p[13], p[14], p[15]]);
        let dst = IpAddr::from([p[16], p[17], p[18], p[19]]);
        let proto = p[9];
        let id = u32::from(be16(p, 4)?);
        let ff = be16(p, 6)?;
        let (mf, off) = (ff & 0x2000 != 0, ff & 0x1fff);
        let payload = &p[ihl..total];
        let frag = mf || off != 0;
        let l4 = if off != 0 { L4::LaterFragment { proto, id } } else { ports(proto, payload) };
        let first_frag = (frag && off == 0).then_some((proto, id));
        Some(Ip { src, dst, l4, frag_ext: frag, first_frag })
    }

    fn ports(proto: u8, l4: &[u8]) -> L4 {
        let dport = if proto == TCP || proto == UDP { be16(l4, 2) } else { None };
        if (proto == TCP || proto == UDP) && dport.is_none() {
            return L4::Unknown;
        }
        L4::Ports { proto, dport }
    }

    /// IPv6 (RFC 8200) with the extension headers hop-by-hop (0, first only), routing (43),
    /// fragment (44) and destination options (60) walked.
    fn ipv6(p: &[u8]) -> Option<Ip> {
        if p.len() < 40 || p[0] >> 4 != 6 {
            return None;
        }
        let plen = usize::from(be16(p, 4)?);
        if 40 + plen > p.len() {
            return None;
        }
        let mut a = [0u8; 16];
        a.copy_from_slice(&p[8..24]);
        let src = IpAddr::from(a);
        a.copy_from_slice(&p[24..40]);
        let dst = IpAddr::from(a);
        let body = &p[40..40 + plen];
        let mut nh = p[6];
        let mut off = 0usize;
        let mut ext = false;
        let mut first_frag = None;
        let l4 = loop {
            match nh {
                0 | 43 | 60 => {
                    if nh == 0 && ext {
                        // Hop-by-hop anywhere but first is an error (RFC 8200 4.1).
                        break L4::Unknown;
                    }
                    let (Some(&next), Some(&len)) = (body.get(off), body.get(off + 1)) else { break L4::Unknown };
                    let hlen = (usize::from(len) + 1) * 8;
                    if off + hlen > body.len() {
                        break L4::Unknown;
                    }
                    nh = next;
                    off += hlen;
                    ext = true;
                }
                44 => {
                    let Some(h) = body.get(off..off + 8) else { break L4::Unknown };
                    let fo = u16::from_be_bytes([h[2], h[3]]) >> 3;
                    let id = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
                    nh = h[0];
                    off += 8;
                    ext = true;
                    if fo != 0 {
                        break L4::LaterFragment { proto: 0, id };
                    }
                    first_frag = Some((0, id));
                }
                _ => break ports(nh, &body[off..]),
            }
        };
        Some(Ip { src, dst, l4, frag_ext: ext, first_frag })
    }

    /// The IP packet at the start of `p` (version from the first nibble).
    fn ip(p: &[u8]) -> Option<Ip> {
        match p.first()? >> 4 {
            4 => ipv4(p),
            6 => ipv6(p),
            _ => None,
        }
    }

    /// The IP packet of an Ethernet frame with an IP ethertype (no VLAN tag: tagged frames
    /// have no sub-interface to enter).
    fn eth_ip(f: &[u8]) -> Option<([u8; 6], Ip)> {
        let dst: [u8; 6] = f.get(..6)?.try_into().ok()?;
        let et = be16(f, 12)?;
        let p = f.get(14..)?;
        match (et, p.first().map(|b| b >> 4)) {
            (0x0800, Some(4)) => Some((dst, ipv4(p)?)),
            (0x86dd, Some(6)) => Some((dst, ipv6(p)?)),
            _ => None,
        }
    }

    /// The inner IP packet a fabric frame carries to a local VM of VN vn1 (MPLSoUDP with a
    /// VM label, or VXLAN VNI 5001 with an inner frame: `routed` when addressed to the
    /// vRouter MAC).
    fn fabric_inner(f: &[u8]) -> Option<(Ip, bool)> {
        if be16(f, 12)? != 0x0800 {
            return None;
        }
        let p = f.get(14..)?;
        let outer = ipv4(p)?;
        if outer.dst != IpAddr::from(ROUTER_IP) || outer.frag_ext {
            return None;
        }
        let L4::Ports { proto: UDP, dport: Some(dport) } = outer.l4 else { return None };
        let ihl = usize::from(p[0] & 0x0f) * 4;
        // What follows the UDP header, to the end of the frame: what the VM receives.
        let after = f.get(14 + ihl + 8..)?;
        match dport {
            MPLSOUDP_PORT => {
                let e = u32::from_be_bytes(after.get(..4)?.try_into().ok()?);
                let (label, bos) = (e >> 12, e & 0x100 != 0);
                if !bos || !VM_LABELS.contains(&label) {
                    return None;
                }
                Some((ip(after.get(4..)?)?, true))
            }
            VXLAN_PORT => {
                let h = after.get(..8)?;
                let vni = u32::from_be_bytes([0, h[4], h[5], h[6]]);
                if vni != VNI {
                    return None;
                }
                let (dst, inner) = eth_ip(&after[8..])?;
                Some((inner, dst == ROUTER_MAC))
            }
            _ => None,
        }
    }

    /// Why the frame must not be forwarded, if the oracle can tell (judged before the frame
    /// is run, from the input's earlier frames).
    pub fn judge(st: &mut State, vif: u16, f: &[u8], o: Oracle) -> Option<String> {
        let (ip, routed) = if vif == 0 {
            let (ip, routed) = fabric_inner(f)?;
            // Decapsulated traffic is in the flow's VN (and so the policy's) only when it
            // goes to a local VM.
            if !is_local_vm(ip.dst) {
                return None;
            }
            (ip, routed)
        } else {
            let (dst, ip) = eth_ip(f)?;
            let routed = dst == VM_VIF_MAC[usize::from(vif)] || dst == ROUTER_MAC;
            if dst[0] & 1 != 0 {
                return None;
            }
            (ip, routed)
        };
        if !routed && !o.l2 {
            return None;
        }
        if ip.frag_ext && !o.frag_ext {
            return None;
        }
        let why = match ip.l4 {
            L4::Ports { proto, dport: Some(p) } if (proto == TCP || proto == UDP) && p == DENIED_PORT => {
                Some(format!("it is {} to port 53 (policy deny)", if proto == TCP { "TCP" } else { "UDP" }))
            }
            L4::Ports { proto: TCP, dport: Some(p) }
                if is_vm2(ip.dst) && !(80..=443).contains(&p) && !st.seen.contains(&(ip.dst, ip.src, TCP)) =>
            {
                Some(format!("it is TCP to vm2 port {p} (security group allows 80-443 only)"))
            }
            L4::LaterFragment { proto, id } if st.denied_frags.contains(&(ip.src, ip.dst, proto, id)) => {
                Some(format!("it is a later fragment of datagram {id:#x}, whose first fragment was denied"))
            }
            _ => None,
        };
        why
    }

    /// After a frame's final outcome: a first fragment that reached a verdict (`decided`:
    /// forwarded, or dropped by its flow's action) decides its datagram from then on,
    /// denied when the oracle judged it (`denied`), until another first fragment of the same
    /// identification reaches a verdict (the vRouter forgets a datagram once complete or
    /// expired, and IP identifications are reused). A first fragment dropped before the
    /// flow stage (no route, no bridge entry) or refused (an overlap: the vRouter keeps the
    /// datagram's first) decides nothing: the receiver never got it. So a later fragment
    /// is judged by the first fragment the receiver could reassemble it with.
    pub fn settled(st: &mut State, vif: u16, f: &[u8], decided: bool, denied: bool) {
        if !decided {
            return;
        }
        let ip = if vif == 0 { fabric_inner(f).map(|(ip, _)| ip) } else { eth_ip(f).map(|(_, ip)| ip) };
        if let Some(Ip { src, dst, first_frag: Some((proto, id)), .. }) = ip {
            if denied {
                st.denied_frags.insert((src, dst, proto, id));
            } else {
                st.denied_frags.remove(&(src, dst, proto, id));
            }
        }
    }

    /// Remembers the frame's address pair (after it ran).
    pub fn record(st: &mut State, vif: u16, f: &[u8]) {
        let ip = if vif == 0 { fabric_inner(f).map(|(ip, _)| ip) } else { eth_ip(f).map(|(_, ip)| ip) };
        if let Some(ip) = ip {
            let proto = match ip.l4 {
                L4::Ports { proto, .. } | L4::LaterFragment { proto, .. } => proto,
                L4::Unknown => 255,
            };
            // An unknown or fragmented transport counts as any protocol: the flow key the
            // vRouter made of it is not the oracle's business.
            for p in [proto, TCP, UDP] {
                if p == proto || matches!(ip.l4, L4::Unknown | L4::LaterFragment { .. }) || ip.frag_ext {
                    st.seen.insert((ip.src, ip.dst, p));
                }
            }
        }
    }
}
