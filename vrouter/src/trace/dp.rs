//! The data-plane side of tracing, owned by one forwarding lcore.
//!
//! Cost model: while no request is enabled the lcore reads one word per burst
//! ([`TraceLcore::enabled`]) and runs its usual loop. With requests enabled, a burst whose
//! ingress vif a request may match runs the traced instance of the burst: its pre-pass tests
//! each IPv4 packet's flow key as it computes it ([`BurstFilter::key_form`]); packets without
//! a key there, and bursts without keys (fabric, no flow table), get a header test on the
//! frame ([`BurstFilter::may_match`], [`BurstFilter::scan`]). Only packets that pass are
//! matched in full, and only matching packets pay for step records.
//!
//! A matching packet gets a trace id. Its flow (the flow-table key) is remembered in a
//! per-lcore side table so later packets of the flow continue the same trace while the
//! request is enabled and within its limit. Steps are appended to the lcore's ring in the
//! trace region as they happen; after the pipeline ran, the flow lookup, flow action,
//! mirror copies, route, ECMP member, encapsulation and egress or drop are written from
//! what the pipeline recorded where it decided ([`crate::pipeline::Decision`]) and the
//! frame it left: nothing is looked up again (see [`super::steps`]).

use super::control::{Active, Published};
use super::region::RingWriter;
use super::request::{addr128, v4_header, IpFields, Limit, PacketFields, QuickKey, QuickV4, PACKETS_PER_TRACED_FLOW};
use super::step::Step;
use super::steps::{parse, parsed_steps, Parsed};
use crate::config::VifType;
use crate::drop_reason::DropReason;
use crate::fib::{Fib, Vif};
use crate::packet::{ethernet, ipv4, ipv6, EtherType, IpProtocol};
use crate::pipeline::flow::CopyResults;
use crate::pipeline::{Decision, FlowMirror, MirrorFrame, PacketBuf, Verdict};
use flow_table::FlowKey;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// Most flows an lcore follows at once (older ones are forgotten beyond that).
const MAX_TRACED_FLOWS: usize = 65536;

/// The trace of the packet being processed.
#[derive(Debug, Clone, Copy)]
pub struct TraceCtx {
    /// The trace the packet belongs to (a 32-bit id, also what the trace mark carries to the next
    /// vRouter).
    pub trace_id: u64,
    /// Packet number within the trace (1 for the first).
    pub pkt: u32,
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
    /// `burst_quick`'s only filter when it has one (the common case: one request).
    burst_single: Option<QuickV4>,
    /// `burst_single` over the flow key, when the request has a key form (no MAC).
    burst_single_key: Option<QuickKey>,
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
            burst_single: None,
            burst_single_key: None,
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
            let mut last_key = None;
            for m in self.active.iter().map(|a| &a.matcher).filter(|m| m.may_match_vif(vif)) {
                if let Some(q) = m.quick_v4() {
                    self.burst_quick.push(*q);
                    last_key = m.quick_key().copied();
                }
            }
            (self.burst_single, self.burst_single_key) = match self.burst_quick[..] {
                [q] => (Some(q), last_key),
                _ => (None, None),
            };
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

    /// The per-packet pre-filter of a burst entering `vif`, as a value the candidate loop
    /// keeps in registers (see [`BurstFilter::may_match`]). Only valid after
    /// [`Self::begin_burst`] for `vif` returned true.
    #[inline(always)]
    pub fn burst_filter<'a>(&'a self, vif: &'a Vif) -> BurstFilter<'a> {
        debug_assert_eq!(self.burst_vif, Some(vif.id));
        BurstFilter {
            lcore: self,
            vif,
            pass_all: vif.kind == VifType::Fabric,
            single: self.burst_single,
            single_key: self.burst_single_key,
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
        let ctx = TraceCtx { trace_id, pkt, mirror: [None, None] };
        self.push(tsc, &ctx, Step::Ingress { vif: vif.id, queue, len: len as u32 });
        self.push(tsc, &ctx, Step::Marked { from });
        self.record_parsed(&ctx, &parsed, tsc);
        ctx
    }

    fn record_parsed(&mut self, ctx: &TraceCtx, parsed: &Parsed, tsc: u64) {
        let ring = &mut self.ring;
        parsed_steps(parsed, |s| ring.push(tsc, ctx.trace_id, ctx.pkt, &s));
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
        let ctx = TraceCtx { trace_id, pkt, mirror: [None, None] };
        self.push(tsc, &ctx, Step::Ingress { vif: vif.id, queue, len: frame.len() as u32 });
        self.push(tsc, &ctx, Step::Matched { request: uuid, new_trace });
        self.record_parsed(&ctx, &parsed, tsc);
        Some(ctx)
    }

    /// Records what the pipeline did with a traced packet, from what it recorded where it
    /// decided (`decision`: flow, route, ECMP member) and `pkt`, the frame as it is now
    /// (rewritten, encapsulated). A frame leaving in a tunnel gets the trace mark here.
    pub fn finish<B: PacketBuf>(
        &mut self,
        fib: &Fib,
        ctx: &mut TraceCtx,
        decision: &Decision,
        verdict: Verdict,
        pkt: &mut B,
        tsc: u64,
    ) {
        let (id, n) = (ctx.trace_id, ctx.pkt);
        let ring = &mut self.ring;
        if !super::steps::flow_steps(decision, verdict, |s| ring.push(tsc, id, n, &s)) {
            return;
        }
        for m in ctx.mirror.iter_mut() {
            if let Some((t, s)) = m.take() {
                ring.push(t, id, n, &s);
            }
        }
        super::steps::route_steps(fib, decision, verdict, pkt, Some(id as u32), |s| ring.push(tsc, id, n, &s));
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

/// The per-packet pre-filter of one burst ([`TraceLcore::burst_filter`]).
#[derive(Clone, Copy)]
pub struct BurstFilter<'a> {
    lcore: &'a TraceLcore,
    vif: &'a Vif,
    /// Frames from the fabric always pass: one may carry another vRouter's trace mark.
    pass_all: bool,
    /// The only request's header filter, when one request may match the burst.
    single: Option<QuickV4>,
    /// `single` over the flow key (no MAC in the condition).
    single_key: Option<QuickKey>,
}

impl BurstFilter<'_> {
    /// The key form of the burst's filter, for bursts whose flow keys the pre-pass computes:
    /// IPv4 packets are then tested on their keys ([`QuickKey::accepts`]) and the others
    /// with [`Self::may_match`]. None: test every frame ([`Self::scan`]), as for several
    /// requests, a MAC condition or frames from the fabric.
    #[inline(always)]
    pub fn key_form(&self) -> Option<&QuickKey> {
        if self.pass_all {
            return None;
        }
        self.single_key.as_ref()
    }

    /// The candidates of a burst (bit `i`: [`Self::may_match`] holds for frame `i`; a burst
    /// has at most 32 frames). The request's compare is chosen once per burst, not per frame: with one
    /// request naming one to three header words, the loop is those loads and compares.
    #[inline(always)]
    pub fn scan<'f>(&self, frames: impl Iterator<Item = &'f [u8]>) -> u32 {
        if self.pass_all {
            return frames.fold(0, |c, _| c << 1 | 1);
        }
        match &self.single {
            Some(q) => match q.words() {
                1 => self.scan_with(frames, |h| q.word(h, 0) == 0),
                2 => self.scan_with(frames, |h| q.word(h, 0) | q.word(h, 1) == 0),
                3 => self.scan_with(frames, |h| q.word(h, 0) | q.word(h, 1) | q.word(h, 2) == 0),
                _ => self.scan_with(frames, |h| q.accepts_header(h)),
            },
            None => self.scan_with(frames, |h| self.lcore.burst_quick.iter().any(|q| q.accepts_header(h))),
        }
    }

    #[inline(always)]
    fn scan_with<'f>(&self, frames: impl Iterator<Item = &'f [u8]>, test: impl Fn(&[u8; 40]) -> bool) -> u32 {
        // A bit per frame, from bit 0 (a burst has at most 32 frames; later ones have none).
        let (mut c, mut bit) = (0u32, 1u32);
        for f in frames {
            let hit = match v4_header(f) {
                Some(h) => test(h),
                None => self.lcore.may_match_other(self.vif, f),
            };
            if hit {
                c |= bit;
            }
            bit <<= 1;
        }
        c
    }

    /// Whether an enabled request may match `frame`: only a header test on bytes the PMD
    /// has just written (the words the requests name, see [`QuickV4::accepts_header`]);
    /// [`TraceLcore::classify`] decides for the frames it accepts. Every packet of a traced
    /// flow matches its request (same headers, vif and VRF), so a frame it rejects is not
    /// traced.
    #[inline(always)]
    pub fn may_match(&self, frame: &[u8]) -> bool {
        if self.pass_all {
            return true;
        }
        match v4_header(frame) {
            Some(h) => match &self.single {
                Some(q) => q.accepts_header(h),
                None => self.lcore.burst_quick.iter().any(|q| q.accepts_header(h)),
            },
            None => self.lcore.may_match_other(self.vif, frame),
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
