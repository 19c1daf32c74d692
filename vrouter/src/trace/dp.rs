//! The data-plane side of tracing, owned by one forwarding lcore.
//!
//! Cost model: while no request is enabled the lcore reads one word per burst
//! ([`TraceLcore::enabled`]) and runs its usual loop. With requests enabled, each packet of
//! a burst whose ingress vif a request may match is parsed once more (headers only, already
//! in cache) and matched; only matching packets pay for step records.
//!
//! A matching packet gets a trace id. Its flow (the flow-table key) is remembered in a
//! per-lcore side table so later packets of the flow continue the same trace while the
//! request is enabled and within its limit. Steps are appended to the lcore's ring in the
//! trace region as they happen; after the pipeline ran, the flow lookup, flow action,
//! mirror copies, route, encapsulation and egress or drop are recorded from what the
//! pipeline left (the verdict, the flow entry, the rewritten frame).

use super::control::{Active, Published};
use super::region::RingWriter;
use super::request::{addr128, v4_words, IpFields, Limit, PacketFields, QuickV4, PACKETS_PER_TRACED_FLOW};
use super::step::Step;
use crate::config::VifType;
use crate::drop_reason::DropReason;
use crate::fib::{Fib, Nexthop, Vif, MPLSOUDP_PORT, VXLAN_PORT};
use crate::packet::{ethernet, ipv4, ipv6, mpls, udp, vxlan, EtherType, IpProtocol};
use crate::pipeline::flow::{key_v4, key_v6, CopyResults};
use crate::pipeline::{FlowMirror, MirrorFrame, PacketBuf, Verdict};
use flow_table::{FlowKey, FlowTable};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// Most flows an lcore follows at once (older ones are forgotten beyond that).
const MAX_TRACED_FLOWS: usize = 65536;

/// How the route of a traced packet is found again after the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RouteHint {
    None,
    /// LPM in `vrf` for `dst` (IPv4-mapped for IPv4).
    Lpm {
        vrf: u32,
        dst: u128,
        v6: bool,
    },
    /// MPLS label of a decapsulated packet.
    Label(u32),
}

/// The trace of the packet being processed.
#[derive(Debug, Clone, Copy)]
pub struct TraceCtx {
    /// The trace the packet belongs to (a 32-bit id, also what the trace mark carries to the next
    /// vRouter).
    pub trace_id: u64,
    /// Packet number within the trace (1 for the first).
    pub pkt: u32,
    key: Option<FlowKey>,
    /// The flow stage applies to this packet (routed from a VM, or decapsulated to one).
    flow_path: bool,
    route: RouteHint,
    /// Mirror copies made while the pipeline ran (recorded after the flow steps).
    mirror: [Option<(u64, Step)>; 2],
}

#[derive(Debug, Clone, Copy)]
struct Traced {
    trace_id: u64,
    uuid: [u8; 16],
    pkts: u32,
}

/// One lcore's tracing state.
pub struct TraceLcore {
    published: Arc<Published>,
    ring: RingWriter,
    epoch: u64,
    active: Arc<Vec<Active>>,
    /// The header filters of the active requests that may match packets entering
    /// `burst_vif`, and whether any request may (set by [`Self::begin_burst`]).
    burst_quick: Vec<QuickV4>,
    burst_vif: Option<u16>,
    burst_in_scope: bool,
    flows: HashMap<FlowKey, Traced>,
    /// Traced packets held for flow setup: mbuf address -> trace and hold time.
    held: HashMap<usize, (TraceCtx, u64)>,
    tsc_hz: u64,
}

/// Takes one from a shared budget; false when it is exhausted.
#[inline]
fn take(budget: &AtomicU32) -> bool {
    budget.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1)).is_ok()
}

impl TraceLcore {
    /// The lcore's tracing state, writing its steps to `ring`; `tsc_hz` converts TSC ticks (hold
    /// times) to ns.
    pub fn new(published: Arc<Published>, ring: RingWriter, tsc_hz: u64) -> TraceLcore {
        TraceLcore {
            published,
            ring,
            epoch: u64::MAX,
            active: Arc::new(Vec::new()),
            burst_quick: Vec::new(),
            burst_vif: None,
            burst_in_scope: false,
            flows: HashMap::new(),
            held: HashMap::new(),
            tsc_hz: tsc_hz.max(1),
        }
    }

    /// The per-burst check: is any request enabled?
    #[inline(always)]
    pub fn enabled(&self) -> bool {
        self.published.enabled.load(Ordering::Relaxed) != 0
    }

    /// Takes the current active set if it changed, and whether a request may match packets
    /// entering `vif` (called once per burst while requests are enabled).
    #[inline]
    pub fn begin_burst(&mut self, vif: u16) -> bool {
        let e = self.published.epoch.load(Ordering::Acquire);
        if e != self.epoch {
            self.epoch = e;
            self.active = self.published.active();
            let active = self.active.clone();
            // Flows of requests removed or disabled stop being traced.
            self.flows.retain(|_, t| active.iter().any(|a| a.uuid == t.uuid));
            self.burst_vif = None;
        }
        if self.burst_vif != Some(vif) {
            self.burst_vif = Some(vif);
            self.burst_quick.clear();
            let quick =
                self.active.iter().filter(|a| a.matcher.may_match_vif(vif)).filter_map(|a| a.matcher.quick_v4());
            self.burst_quick.extend(quick);
            self.burst_in_scope = self.active.iter().any(|a| a.matcher.may_match_vif(vif));
        }
        self.burst_in_scope
    }

    /// Traced packets are waiting in the hold queue.
    #[inline]
    pub fn has_held(&self) -> bool {
        !self.held.is_empty()
    }

    #[inline]
    fn push(&mut self, tsc: u64, ctx: &TraceCtx, s: Step) {
        self.ring.push(tsc, ctx.trace_id, ctx.pkt, &s);
    }

    /// Whether an enabled request may match `frame` entering `vif`: only a header test on
    /// bytes the PMD has just written; [`Self::classify`] decides for the frames it
    /// accepts. Every packet of a traced flow matches its request (same headers, vif and
    /// VRF), so a frame it rejects is not traced. Frames from the fabric always pass: one
    /// may carry another vRouter's trace mark.
    /// Only valid after [`Self::begin_burst`] for `vif` returned true.
    #[inline(always)]
    pub fn may_match(&self, vif: &Vif, frame: &[u8]) -> bool {
        if vif.kind == VifType::Fabric {
            return true;
        }
        debug_assert_eq!(self.burst_vif, Some(vif.id));
        match v4_words(frame) {
            Some(w) => self.burst_quick.iter().any(|q| q.accepts(&w)),
            None => self.may_match_other(vif, frame),
        }
    }

    /// [`Self::may_match`] for frames that are not plain IPv4.
    #[inline(never)]
    fn may_match_other(&self, vif: &Vif, frame: &[u8]) -> bool {
        !self.active.iter().all(|a| a.matcher.quick_reject(vif.id, frame))
    }

    /// Matches a received frame against the enabled requests; a traced packet gets its
    /// first steps recorded and a context for the rest.
    /// `now` reads the TSC (only for packets that are traced).
    #[inline]
    pub fn classify(
        &mut self,
        fib: &Fib,
        vif: &Vif,
        queue: u16,
        frame: &[u8],
        now: impl Fn() -> u64,
    ) -> Option<TraceCtx> {
        // Cheap first pass: the match fields only. Every packet of a traced flow matches
        // its request (same headers, vif and VRF), so a packet no request matches is done.
        let fabric = vif.kind == VifType::Fabric;
        if !fabric && self.active.iter().all(|a| a.matcher.quick_reject(vif.id, frame)) {
            return None;
        }
        let quick = if fabric {
            let p = parse(fib, vif, frame)?;
            if let Some((mark, from)) = p.mark {
                return Some(self.continue_marked(p, vif, queue, frame.len(), mark, from, now()));
            }
            p.fields
        } else {
            quick_fields(vif, frame)?
        };
        if !self.active.iter().any(|a| a.matcher.matches(&quick)) {
            return None;
        }
        self.classify_matching(fib, vif, queue, frame, now())
    }

    /// A packet that carries another vRouter's trace mark continues that trace here, with
    /// its packets numbered in arrival order.
    #[cold]
    #[allow(clippy::too_many_arguments)]
    fn continue_marked(
        &mut self,
        parsed: Parsed,
        vif: &Vif,
        queue: u16,
        len: usize,
        mark: u32,
        from: std::net::Ipv4Addr,
        tsc: u64,
    ) -> TraceCtx {
        let trace_id = u64::from(mark);
        let pkt = match parsed.key {
            Some(key) => {
                if self.flows.len() >= MAX_TRACED_FLOWS {
                    self.flows.clear();
                }
                let t = self.flows.entry(key).or_insert(Traced { trace_id, uuid: [0; 16], pkts: 0 });
                if t.trace_id != trace_id {
                    *t = Traced { trace_id, uuid: [0; 16], pkts: 0 };
                }
                t.pkts += 1;
                t.pkts
            }
            None => 1,
        };
        let ctx = TraceCtx {
            trace_id,
            pkt,
            key: parsed.key,
            flow_path: parsed.flow_path,
            route: parsed.route,
            mirror: [None, None],
        };
        self.push(tsc, &ctx, Step::Ingress { vif: vif.id, queue, len: len as u32 });
        self.push(tsc, &ctx, Step::Marked { from });
        self.record_parsed(&ctx, &parsed, tsc);
        ctx
    }

    fn record_parsed(&mut self, ctx: &TraceCtx, parsed: &Parsed, tsc: u64) {
        if let Some(d) = parsed.decap {
            self.push(tsc, ctx, d);
        }
        let p = &parsed.fields;
        let ip = p.ip.unwrap_or_default();
        self.push(
            tsc,
            ctx,
            Step::Parsed {
                ethertype: p.ethertype,
                proto: ip.proto,
                sport: ip.sport,
                dport: ip.dport,
                vrf: p.vrf,
                ip_len: parsed.ip_len,
                ttl: parsed.ttl,
            },
        );
        if p.ip.is_some() {
            self.push(tsc, ctx, Step::Addresses { src: ip.src, dst: ip.dst });
        }
    }

    #[cold]
    fn classify_matching(&mut self, fib: &Fib, vif: &Vif, queue: u16, frame: &[u8], tsc: u64) -> Option<TraceCtx> {
        let parsed = parse(fib, vif, frame)?;
        let p = &parsed.fields;
        let mut found = None;
        if let Some(key) = parsed.key {
            if let Some(t) = self.flows.get_mut(&key) {
                let a = self.active.iter().find(|a| a.uuid == t.uuid)?;
                let ok = match a.limit {
                    Limit::Packets(_) => take(&a.budget),
                    Limit::Flows(_) => t.pkts < PACKETS_PER_TRACED_FLOW,
                };
                if !ok {
                    return None;
                }
                t.pkts += 1;
                found = Some((t.trace_id, t.pkts, a.uuid, false));
            }
        }
        if found.is_none() {
            let a = self.active.iter().find(|a| a.matcher.matches(p) && take(&a.budget))?;
            let id = self.published.new_trace_id();
            if let Some(key) = parsed.key {
                if self.flows.len() >= MAX_TRACED_FLOWS {
                    self.flows.clear();
                }
                self.flows.insert(key, Traced { trace_id: id, uuid: a.uuid, pkts: 1 });
            }
            found = Some((id, 1, a.uuid, true));
        }
        let (trace_id, pkt, uuid, new_trace) = found?;
        let ctx = TraceCtx {
            trace_id,
            pkt,
            key: parsed.key,
            flow_path: parsed.flow_path,
            route: parsed.route,
            mirror: [None, None],
        };
        self.push(tsc, &ctx, Step::Ingress { vif: vif.id, queue, len: frame.len() as u32 });
        self.push(tsc, &ctx, Step::Matched { request: uuid, new_trace });
        self.record_parsed(&ctx, &parsed, tsc);
        Some(ctx)
    }

    /// Records what the pipeline did with a traced packet: `pkt` holds the frame as it is now
    /// (rewritten, encapsulated). A frame leaving in a tunnel gets the trace mark here.
    // The mark's side effects (grow the frame, insert) stay out of a match guard.
    #[allow(clippy::collapsible_match)]
    pub fn finish<B: PacketBuf>(
        &mut self,
        fib: &Fib,
        table: Option<&FlowTable>,
        ctx: &mut TraceCtx,
        verdict: Verdict,
        pkt: &mut B,
        tsc: u64,
    ) {
        let mut entry = None;
        if let (true, Some(t), Some(key)) = (ctx.flow_path, table, ctx.key) {
            if let Some(idx) = t.lookup(&key, key.hash()) {
                if let Some(e) = t.entry(idx) {
                    let hit = !matches!(verdict, Verdict::Hold { new: true, .. });
                    let action = e.action() as u8;
                    self.push(tsc, ctx, Step::FlowLookup { hit, index: idx, gen: e.gen(), action });
                    entry = Some((action, e.drop_reason(), e.mirror(), e.sec_mirror()));
                }
            }
        }
        if let Verdict::Hold { flow, new } = verdict {
            self.push(tsc, ctx, Step::Held { flow, new });
            return;
        }
        if let Some((action, drop_reason, mirror, sec_mirror)) = entry {
            self.push(tsc, ctx, Step::FlowAction { action, drop_reason, mirror, sec_mirror });
        }
        for m in ctx.mirror.iter_mut() {
            if let Some((t, s)) = m.take() {
                self.ring.push(t, ctx.trace_id, ctx.pkt, &s);
            }
        }
        let out_vif = match verdict {
            Verdict::Tx(v) => v,
            _ => u16::MAX,
        };
        let nh = match ctx.route {
            RouteHint::None => None,
            RouteHint::Lpm { vrf, dst, v6 } => fib
                .vrf(vrf)
                .and_then(|t| {
                    if v6 {
                        t.route_v6(&dst.to_be_bytes())
                    } else {
                        t.route_v4(std::net::Ipv6Addr::from(dst).to_ipv4_mapped()?)
                    }
                })
                .map(|nh| (vrf, nh)),
            RouteHint::Label(l) => fib.labels.get(&l).map(|&nh| (0, nh)),
        };
        if let Some((vrf, idx)) = nh {
            if let Some(n) = fib.nexthop(idx) {
                self.push(tsc, ctx, Step::Route { vrf, nh_id: n.id(), nh_kind: n.kind().code(), out_vif });
            }
        }
        match verdict {
            Verdict::Tx(v) => {
                let to_fabric = fib.vif(v).is_some_and(|x| x.kind == VifType::Fabric);
                if to_fabric {
                    if let Some(s) = encap_of(fib, pkt.data()) {
                        let id = ctx.trace_id as u32;
                        match s {
                            Step::Encap { vxlan: true, .. } => set_trace_mark(pkt.data_mut(), id),
                            // No headroom for the mark: the packet goes unmarked (the next
                            // vRouter does not continue the trace) rather than not at all.
                            Step::Encap { vxlan: false, .. } => {
                                if pkt.prepend(super::mark::MPLS_MARK_LEN)
                                    && !super::mark::insert_mpls_mark(pkt.data_mut(), id)
                                {
                                    pkt.adj(super::mark::MPLS_MARK_LEN);
                                }
                            }
                            _ => {}
                        }
                        self.push(tsc, ctx, s);
                    }
                }
                self.push(tsc, ctx, Step::Egress { vif: v, len: pkt.data().len() as u32 });
            }
            Verdict::Drop(reason) => self.push(tsc, ctx, Step::Drop { reason }),
            // The traced packet is dropped; the buffer leaves as an answer to its sender.
            Verdict::Reply { drop, .. } => self.push(tsc, ctx, Step::Drop { reason: drop }),
            // Held packets are recorded when held and released; a fragment parked until its
            // first fragment comes runs again untraced.
            Verdict::Hold { .. } | Verdict::FragWait => {}
        }
    }

    /// Records a drop decided outside the pipeline (queue full, no TX target...).
    pub fn dropped(&mut self, ctx: &TraceCtx, reason: DropReason, tsc: u64) {
        self.push(tsc, ctx, Step::Drop { reason });
    }

    /// A traced packet entered the hold queue as mbuf `pkt`.
    pub fn held(&mut self, pkt: usize, ctx: TraceCtx, tsc: u64) {
        self.held.insert(pkt, (ctx, tsc));
    }

    /// A held packet is re-run: its trace (if it has one) continues with a release step.
    pub fn released(&mut self, pkt: usize, flow: u32, tsc: u64) -> Option<TraceCtx> {
        let (ctx, since) = self.held.remove(&pkt)?;
        let held_ns = (u128::from(tsc.wrapping_sub(since)) * 1_000_000_000 / u128::from(self.tsc_hz)) as u64;
        self.push(tsc, &ctx, Step::Released { flow, held_ns });
        Some(ctx)
    }

    /// A held traced packet was dropped without being re-run (shutdown).
    pub fn forget_held(&mut self, pkt: usize, reason: DropReason, tsc: u64) {
        if let Some((ctx, _)) = self.held.remove(&pkt) {
            self.push(tsc, &ctx, Step::Drop { reason });
        }
    }
}

/// A flow mirror that records each copy of a traced packet in its context.
pub struct TracingMirror<'a, 'm> {
    /// The lcore's flow mirror that makes the copies.
    pub inner: &'a mut (dyn FlowMirror + 'm),
    /// The traced packet's context (its steps).
    pub ctx: &'a mut TraceCtx,
    /// TSC time stamp of the copies' steps.
    pub tsc: u64,
}

impl FlowMirror for TracingMirror<'_, '_> {
    fn flow_copy(&mut self, flow: u32, mirrors: [u8; 2], vrf: u32, frame: &MirrorFrame<'_>) -> CopyResults {
        let r = self.inner.flow_copy(flow, mirrors, vrf, frame);
        for (k, res) in r.iter().enumerate() {
            if let Some(res) = res {
                let (bytes, failed) = match *res {
                    Ok(b) => (b, None),
                    Err(e) => (0, Some(e)),
                };
                self.ctx.mirror[k] =
                    Some((self.tsc, Step::Mirror { analyzer: mirrors[k], secondary: k == 1, bytes, failed }));
            }
        }
        r
    }
}

/// What [`parse`] found in a frame.
struct Parsed {
    /// The trace mark of a VXLAN or MPLSoUDP packet (trace id, sending vRouter).
    mark: Option<(u32, std::net::Ipv4Addr)>,
    fields: PacketFields,
    key: Option<FlowKey>,
    flow_path: bool,
    route: RouteHint,
    decap: Option<Step>,
    ip_len: u16,
    ttl: u8,
}

/// The match fields of a frame entering `vif` (the inner packet of a tunnel terminated
/// here), its flow key, and how the pipeline will route it. `None` for frames too short
/// for an Ethernet header.
fn parse(fib: &Fib, vif: &Vif, frame: &[u8]) -> Option<Parsed> {
    let eth = ethernet::Frame::new_checked(frame).ok()?;
    let mut p = Parsed {
        mark: None,
        fields: PacketFields {
            src_mac: eth.src_addr(),
            dst_mac: eth.dst_addr(),
            ethertype: eth.ethertype(),
            ip: None,
            ingress_vif: vif.id,
            vrf: vif.vrf,
        },
        key: None,
        flow_path: false,
        route: RouteHint::None,
        decap: None,
        ip_len: 0,
        ttl: 0,
    };
    let dst = eth.dst_addr();
    let routed = dst == vif.mac || dst == fib.router_mac;
    if vif.kind == VifType::Fabric && eth.ethertype() == EtherType::IPV4 {
        if let Ok(ip) = ipv4::Packet::new_checked(eth.payload()) {
            if ip.dst_addr() == fib.router_ip && ip.protocol() == IpProtocol::UDP && !ip.is_fragment() {
                if let Ok(u) = udp::Packet::new_checked(ip.payload()) {
                    let outer_src = ip.src_addr();
                    let body = u.payload();
                    if u.dst_port() == MPLSOUDP_PORT {
                        let mut body = body;
                        if let Some(id) = super::mark::read_mpls_mark(body) {
                            p.mark = Some((id, outer_src));
                            body = &body[super::mark::MPLS_MARK_LEN..];
                        }
                        let m = mpls::Packet::new_checked(body).ok()?;
                        let label = m.label();
                        p.decap = Some(Step::Decap { vxlan: false, label, outer_src });
                        let vrf = fib.labels.get(&label).and_then(|&nh| match fib.nexthop(nh) {
                            Some(Nexthop::Encap { vif, .. }) => fib.vif(*vif).map(|v| v.vrf),
                            _ => None,
                        });
                        p.route = RouteHint::Label(label);
                        p.fields.ethertype = match body.get(mpls::HEADER_LEN).map(|b| b >> 4) {
                            Some(4) => EtherType::IPV4,
                            Some(6) => EtherType::IPV6,
                            _ => 0,
                        };
                        if let Some(vrf) = vrf {
                            p.fields.vrf = vrf;
                            p.flow_path = true;
                        }
                        let et = p.fields.ethertype;
                        ip_fields(&mut p, et, body.get(mpls::HEADER_LEN..).unwrap_or(&[]));
                        return Some(p);
                    }
                    if u.dst_port() == VXLAN_PORT {
                        let x = vxlan::Packet::new_checked(body).ok()?;
                        let vni = x.vni();
                        p.decap = Some(Step::Decap { vxlan: true, label: vni, outer_src });
                        p.mark = trace_mark(body).map(|m| (m, outer_src));
                        let inner = ethernet::Frame::new_checked(body.get(vxlan::HEADER_LEN..).unwrap_or(&[])).ok()?;
                        p.fields.src_mac = inner.src_addr();
                        p.fields.dst_mac = inner.dst_addr();
                        p.fields.ethertype = inner.ethertype();
                        if let Some(&vrf) = fib.vnis.get(&vni) {
                            p.fields.vrf = vrf;
                            p.flow_path = inner.dst_addr() == fib.router_mac;
                        }
                        let r = p.flow_path;
                        ip_fields(&mut p, inner.ethertype(), inner.payload());
                        if !r {
                            p.route = RouteHint::None;
                        }
                        return Some(p);
                    }
                }
            }
        }
    }
    ip_fields(&mut p, eth.ethertype(), eth.payload());
    if !routed {
        p.route = RouteHint::None;
    }
    p.flow_path = routed && vif.kind == VifType::Virtual && p.key.is_some();
    Some(p)
}

/// [`quick_fields`] for the unit tests of the matcher.
#[cfg(test)]
pub(crate) fn fields_for_test(vif: &Vif, frame: &[u8]) -> Option<PacketFields> {
    quick_fields(vif, frame)
}

/// The match fields of a frame entering a non-fabric vif (no flow key, no route).
#[inline]
fn quick_fields(vif: &Vif, frame: &[u8]) -> Option<PacketFields> {
    let eth = ethernet::Frame::new_checked(frame).ok()?;
    let mut f = PacketFields {
        src_mac: eth.src_addr(),
        dst_mac: eth.dst_addr(),
        ethertype: eth.ethertype(),
        ip: None,
        ingress_vif: vif.id,
        vrf: vif.vrf,
    };
    let ports = |proto: u8, l4: &[u8], first: bool| {
        if first && (proto == IpProtocol::TCP || proto == IpProtocol::UDP) && l4.len() >= 4 {
            (u16::from_be_bytes([l4[0], l4[1]]), u16::from_be_bytes([l4[2], l4[3]]))
        } else {
            (0, 0)
        }
    };
    match eth.ethertype() {
        EtherType::IPV4 => {
            if let Ok(ip) = ipv4::Packet::new_checked(eth.payload()) {
                // Trace conditions on ports do not match fragments, the first included (the
                // burst's quick pre-filter relies on it); the flow key has the first's ports.
                let (sport, dport) = ports(ip.protocol(), ip.payload(), !ip.is_fragment());
                f.ip = Some(IpFields {
                    src: addr128(IpAddr::V4(ip.src_addr())),
                    dst: addr128(IpAddr::V4(ip.dst_addr())),
                    proto: ip.protocol(),
                    sport,
                    dport,
                });
            }
        }
        EtherType::IPV6 => {
            if let Ok(ip) = ipv6::Packet::new_checked(eth.payload()) {
                let (sport, dport) = ports(ip.next_header(), ip.payload(), true);
                f.ip = Some(IpFields {
                    src: addr128(IpAddr::V6(ip.src_addr())),
                    dst: addr128(IpAddr::V6(ip.dst_addr())),
                    proto: ip.next_header(),
                    sport,
                    dport,
                });
            }
        }
        _ => {}
    }
    Some(f)
}

/// Fills the IP fields, the flow key and the LPM route hint from an IP packet.
fn ip_fields(p: &mut Parsed, ethertype: u16, l3: &[u8]) {
    let vrf = p.fields.vrf;
    let ports = |proto: u8, l4: &[u8], first: bool| {
        if first && (proto == IpProtocol::TCP || proto == IpProtocol::UDP) && l4.len() >= 4 {
            (u16::from_be_bytes([l4[0], l4[1]]), u16::from_be_bytes([l4[2], l4[3]]))
        } else {
            (0, 0)
        }
    };
    match ethertype {
        EtherType::IPV4 => {
            let Ok(ip) = ipv4::Packet::new_checked(l3) else { return };
            // Trace conditions on ports do not match fragments, the first included (the
            // burst's quick pre-filter relies on it); the flow key has the first's ports.
            let (sport, dport) = ports(ip.protocol(), ip.payload(), !ip.is_fragment());
            let dst = addr128(IpAddr::V4(ip.dst_addr()));
            p.fields.ip =
                Some(IpFields { src: addr128(IpAddr::V4(ip.src_addr())), dst, proto: ip.protocol(), sport, dport });
            p.key = Some(key_v4(vrf, &ip));
            p.ip_len = ip.total_len();
            p.ttl = ip.ttl();
            if p.route == RouteHint::None {
                p.route = RouteHint::Lpm { vrf, dst, v6: false };
            }
        }
        EtherType::IPV6 => {
            let Ok(ip) = ipv6::Packet::new_checked(l3) else { return };
            // The key walks the extension headers: match on the transport protocol and ports.
            let key = key_v6(vrf, &ip);
            let (proto, sport, dport) = match key.proto() {
                IpProtocol::TCP | IpProtocol::UDP => (key.proto(), key.sport(), key.dport()),
                other => (other, 0, 0),
            };
            let dst = addr128(IpAddr::V6(ip.dst_addr()));
            p.fields.ip = Some(IpFields { src: addr128(IpAddr::V6(ip.src_addr())), dst, proto, sport, dport });
            p.key = Some(key);
            p.ip_len = (ipv6::HEADER_LEN + usize::from(ip.payload_len())) as u16;
            p.ttl = ip.hop_limit();
            if p.route == RouteHint::None {
                p.route = RouteHint::Lpm { vrf, dst, v6: true };
            }
        }
        _ => {}
    }
}

/// Flag bit of the VXLAN flags byte that says the reserved fields carry a trace mark (the
/// bit is reserved in RFC 7348: receivers ignore it, so marked packets stay valid VXLAN).
pub const TRACE_MARK_FLAG: u8 = 0x01;

/// Puts trace id `id` into the VXLAN header of an outgoing tunnel frame (Ethernet, IPv4,
/// UDP, VXLAN): the flag bit, then the id in the 24 reserved bits after the flags (high
/// bits) and the reserved byte after the VNI (low byte).
fn set_trace_mark(frame: &mut [u8], id: u32) {
    let Some(&vihl) = frame.get(ethernet::HEADER_LEN) else { return };
    let off = ethernet::HEADER_LEN + usize::from(vihl & 0xf) * 4 + udp::HEADER_LEN;
    let Some(h) = frame.get_mut(off..off + vxlan::HEADER_LEN) else { return };
    let b = id.to_be_bytes();
    h[0] |= TRACE_MARK_FLAG;
    h[1..4].copy_from_slice(&b[..3]);
    h[7] = b[3];
}

/// The trace mark of a VXLAN header, if it carries one.
pub fn trace_mark(vxlan_header: &[u8]) -> Option<u32> {
    let h = vxlan_header.get(..vxlan::HEADER_LEN)?;
    (h[0] & TRACE_MARK_FLAG != 0).then(|| u32::from_be_bytes([h[1], h[2], h[3], h[7]]))
}

/// The tunnel a frame leaving on the fabric was put in by this vRouter (outer source is
/// the vRouter IP), as an encapsulation step.
fn encap_of(fib: &Fib, out: &[u8]) -> Option<Step> {
    let eth = ethernet::Frame::new_checked(out).ok()?;
    if eth.ethertype() != EtherType::IPV4 {
        return None;
    }
    let ip = ipv4::Packet::new_checked(eth.payload()).ok()?;
    if ip.src_addr() != fib.router_ip || ip.protocol() != IpProtocol::UDP {
        return None;
    }
    let u = udp::Packet::new_checked(ip.payload()).ok()?;
    let (vxlan, label) = match u.dst_port() {
        MPLSOUDP_PORT => (false, mpls::Packet::new_checked(u.payload()).ok()?.label()),
        VXLAN_PORT => (true, vxlan::Packet::new_checked(u.payload()).ok()?.vni()),
        _ => return None,
    };
    Some(Step::Encap { vxlan, label, remote: ip.dst_addr(), sport: u.src_port() })
}

/// The agent's writer: policy decisions for flows whose setup was asked by a traced packet.
pub struct AgentTracer {
    ring: RingWriter,
}

impl AgentTracer {
    /// The agent's writer on its ring of the trace region.
    pub fn new(ring: RingWriter) -> AgentTracer {
        AgentTracer { ring }
    }

    /// Records the policy decision for `flow`, set up for packet `pkt` of trace `trace_id`:
    /// forward or drop (with its `VR_FLOW_DR_*` reason) and the deciding rule's UUID.
    #[allow(clippy::too_many_arguments)]
    pub fn policy(
        &mut self,
        tsc: u64,
        trace_id: u64,
        pkt: u32,
        flow: u32,
        forward: bool,
        drop_reason: u8,
        rule: Option<&str>,
    ) {
        let rule = rule.and_then(super::request::parse_uuid).unwrap_or([0; 16]);
        self.ring.push(tsc, trace_id, pkt, &Step::Policy { forward, drop_reason, rule, flow });
    }
}
