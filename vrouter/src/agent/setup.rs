//! One flow setup as the agent does it, independent of DPDK and of the agent thread: the
//! policy decision for a HOLD flow and the programming of the flow pair.
//!
//! [`crate::agent::flows::Agent`] calls [`program`] for every setup request; the fuzz
//! harness (`fuzz/`) calls it synchronously for the flows the pipeline holds, so a held
//! packet is re-run against the real policy evaluation.

use crate::agent::policy::{Decision, FlowContext, PolicyAction, PolicyEngine};
use crate::config::VifType;
use crate::fib::{Fib, Nexthop, Vif};
use flow_table::{Action, FlowKey, FlowTable, FlowUpdate, Gen, Origin, FLOW_DR_FLOW_LIMIT};
use std::sync::Arc;

/// What [`program`] did with a setup request.
#[derive(Debug)]
pub enum Setup {
    /// The entry was reused, deleted or already set up (its reverse was set up first, or
    /// another lcore asked first): nothing programmed.
    Stale,
    /// No room for the reverse flow: the forward flow was set to drop (tf: FlowLim).
    NoReverse,
    /// Both directions programmed with `decision`.
    Done(Programmed),
}

/// A flow pair programmed by [`program`].
#[derive(Debug)]
pub struct Programmed {
    /// The policy decision, programmed into both flows.
    pub decision: Decision,
    /// The reverse flow and its generation.
    pub rev: u32,
    /// Generation of the reverse flow `rev`.
    pub rgen: Gen,
    /// VNs of the forward flow's source and destination, as evaluated.
    pub src_vn: Option<Arc<str>>,
    /// VN of the forward flow's destination, as evaluated.
    pub dst_vn: Option<Arc<str>>,
    /// The forward flow's key.
    pub key: FlowKey,
}

/// Evaluates policy for HOLD flow `flow` (generation `gen`, first packet received on vif
/// `vif`), creates its reverse flow and sets both actions.
pub fn program(table: &FlowTable, fib: &Fib, policy: &PolicyEngine, flow: u32, gen: Gen, vif: u16, now: u64) -> Setup {
    let Some(e) = table.entry(flow) else { return Setup::Stale };
    let key = match e.key() {
        Some(k) if e.gen() == gen && e.action() == Action::Hold => k,
        _ => return Setup::Stale,
    };
    let vrf = key.vrf();
    let (decision, src_vn, dst_vn) = evaluate(fib, policy, &key, vif);
    let Ok(rev) = table.create_reverse(flow, now) else {
        let up = FlowUpdate::drop(FLOW_DR_FLOW_LIMIT);
        let _ = table.set_action(flow, gen, &up);
        return Setup::NoReverse;
    };
    // S(nh): the nexthop of the route to each direction's source (0: no route).
    let mut update = flow_update(&decision);
    update.src_nh = Some(source_nh(fib, vrf, key.src_ip()));
    update.origin = Some(Origin { vif, reverse: false });
    let _ = table.set_action(flow, gen, &update);
    update.src_nh = Some(source_nh(fib, vrf, key.dst_ip()));
    update.origin = Some(Origin { vif, reverse: true });
    let rgen = table.entry(rev).map_or(0, |e| e.gen());
    let _ = table.set_action(rev, rgen, &update);
    Setup::Done(Programmed { decision, rev, rgen, src_vn, dst_vn, key })
}

/// The policy decision for a flow with `key` whose first packet came in on vif `vif`, and
/// the VNs of its two ends: the ingress VM (if it came from one) and the local VM the
/// destination routes to (if any); remote ends are in the VN of the VRF. Flow setup and
/// re-evaluation after a change of routes, nexthops, vifs or policies both use it.
pub fn evaluate(
    fib: &Fib,
    policy: &PolicyEngine,
    key: &FlowKey,
    vif: u16,
) -> (Decision, Option<Arc<str>>, Option<Arc<str>>) {
    let src_vif = fib.vif(vif).filter(|v| v.kind == VifType::Virtual);
    let dst_vif = local_vif_for(fib, key.vrf(), key.dst_ip());
    let vrf_vn = src_vif.or(dst_vif).and_then(|v| v.vn_name.as_ref());
    let src_vn = src_vif.and_then(|v| v.vn_name.as_ref()).or(vrf_vn);
    let dst_vn = dst_vif.and_then(|v| v.vn_name.as_ref()).or(vrf_vn);
    let decision = policy.evaluate(&FlowContext {
        src: key.src_ip(),
        dst: key.dst_ip(),
        proto: key.proto(),
        sport: key.sport(),
        dport: key.dport(),
        src_vn: src_vn.map(|v| &**v),
        dst_vn: dst_vn.map(|v| &**v),
        src_vif: src_vif.map(|v| v.id),
        dst_vif: dst_vif.map(|v| v.id),
    });
    (decision, src_vn.cloned(), dst_vn.cloned())
}

/// The local VM vif a destination routes to in `vrf`, if any.
pub fn local_vif_for(fib: &Fib, vrf: u32, dst: std::net::IpAddr) -> Option<&Vif> {
    let table = fib.vrf(vrf)?;
    let nh = match dst {
        std::net::IpAddr::V4(a) => table.route_v4(a)?,
        std::net::IpAddr::V6(a) => table.route_v6(&a.octets())?,
    };
    match fib.nexthop(nh)? {
        Nexthop::Encap { vif, .. } => fib.vif(*vif).filter(|v| v.kind == VifType::Virtual),
        _ => None,
    }
}

/// The configured id of the nexthop the route to `src` in `vrf` points at; 0 when there is
/// no route (a flow's `S(nh)`, the nexthop the reverse-path check matches).
pub fn source_nh(fib: &Fib, vrf: u32, src: std::net::IpAddr) -> u32 {
    let Some(table) = fib.vrf(vrf) else { return 0 };
    let nh = match src {
        std::net::IpAddr::V4(a) => table.route_v4(a),
        std::net::IpAddr::V6(a) => table.route_v6(&a.octets()),
    };
    nh.and_then(|nh| fib.nexthop(nh)).map_or(0, Nexthop::id)
}

/// The table update for a policy decision: forward or drop with its reason, and the
/// analyzers as mirror indices (with the MIRROR flag when there is one).
pub fn flow_update(d: &Decision) -> FlowUpdate {
    let mut up =
        if d.action == PolicyAction::Pass { FlowUpdate::new(Action::Forward) } else { FlowUpdate::drop(d.drop_reason) };
    up.mirror = Some(d.mirror[0].unwrap_or(flow_table::NO_MIRROR));
    up.sec_mirror = Some(d.mirror[1].unwrap_or(flow_table::NO_MIRROR));
    if d.mirror[0].is_some() {
        up.set_flags = flow_table::flags::MIRROR;
    } else {
        up.clear_flags = flow_table::flags::MIRROR;
    }
    up
}
