//! Trace export: the exporter thread reads new step records from the trace region's rings
//! (`<run_dir>/trace`) and sends them to the collector as `PacketTraceData` object logs
//! (feature `trace`).
//!
//! * **Cursors.** One per ring: the position of the next record to read. Every position
//!   between two reads is either exported or counted as lost (overwritten by the ring's
//!   writer before the exporter came by), so nothing is silently skipped and nothing is read
//!   twice ([`TraceReader::read_ring`]).
//! * **Grouping.** The records of one read are grouped by trace id (ring order kept) into
//!   messages of at most [`STEPS_PER_MESSAGE`] steps; a message carries the trace's request
//!   UUID (from its `matched` step, remembered per trace id for later batches) and that
//!   request's project (looked up in the trace requests, remembered per request so a removed
//!   request's traces keep their project).
//! * **Back-pressure.** At most [`STEPS_PER_TICK`] records are read per tick. Messages the
//!   session refuses (its trace buffer is full: the collector is slow or away) stay pending
//!   here, and no new record is read until they are accepted: the rings are the buffer, and
//!   what they overwrite meanwhile is counted in `trace_steps_lost`.
//! * **Time.** Each step carries its wall-clock time in µs from the region's TSC
//!   calibration, and its raw TSC, ring and position, which order a host's steps exactly as
//!   `trace get` does.

use super::export::ExportCounters;
use crate::trace::region::{RegionInfo, TraceReader, TraceRecord};
use crate::trace::request::format_uuid;
use crate::trace::step::{action_name, Step};
use sandesh::{PacketTraceData, PacketTraceStep, SessionHandle};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::Arc;

/// Most steps in one `PacketTraceData`.
pub const STEPS_PER_MESSAGE: usize = 64;
/// Most records read from the rings per tick.
pub const STEPS_PER_TICK: usize = 4096;
/// Trace ids whose request is remembered (oldest forgotten first).
pub const REMEMBERED_TRACES: usize = 65_536;

/// Where trace messages go.
pub trait TraceSink {
    /// Offers one message; hands it back when it cannot be taken now.
    fn offer(&mut self, msg: PacketTraceData) -> Result<(), PacketTraceData>;
}

impl TraceSink for SessionHandle {
    fn offer(&mut self, msg: PacketTraceData) -> Result<(), PacketTraceData> {
        self.send_trace(msg)
    }
}

impl TraceSink for Vec<PacketTraceData> {
    fn offer(&mut self, msg: PacketTraceData) -> Result<(), PacketTraceData> {
        self.push(msg);
        Ok(())
    }
}

/// The project of a request UUID: `Some(None)` for an operator's request, `None` for an
/// unknown one.
pub type ProjectLookup = Arc<dyn Fn(&[u8; 16]) -> Option<Option<String>> + Send + Sync>;

/// The trace exporter's counters (part of [`ExportCounters`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TraceCounters {
    /// Step records read from the rings.
    pub steps_read: u64,
    /// Step records overwritten (or torn) before they were read.
    pub steps_lost: u64,
    /// Steps in messages the session accepted.
    pub steps_sent: u64,
    /// Messages the session accepted.
    pub messages_sent: u64,
    /// Gauge: messages waiting for the session to accept them.
    pub messages_pending: u64,
    /// Ticks that read nothing because messages were still pending.
    pub backpressure_ticks: u64,
}

impl TraceCounters {
    /// Copies the figures into the exporter's counters.
    pub fn fill(&self, c: &mut ExportCounters) {
        c.trace_steps_read = self.steps_read;
        c.trace_steps_lost = self.steps_lost;
        c.trace_steps_sent = self.steps_sent;
        c.trace_messages_sent = self.messages_sent;
        c.trace_messages_pending = self.messages_pending;
        c.trace_backpressure_ticks = self.backpressure_ticks;
    }
}

/// Reads the trace region with a cursor per ring and turns new records into messages.
pub struct TraceExporter {
    run_dir: PathBuf,
    reader: Option<(TraceReader, RegionInfo)>,
    cursors: Vec<u64>,
    requests: HashMap<u64, [u8; 16]>,
    request_order: VecDeque<u64>,
    projects: HashMap<[u8; 16], Option<String>>,
    lookup: Option<ProjectLookup>,
    pending: VecDeque<PacketTraceData>,
    counters: TraceCounters,
    steps_per_tick: usize,
    /// Where each ring's export starts (empty: at 0).
    start: Vec<u64>,
}

impl TraceExporter {
    /// An exporter of the region in `run_dir` (opened on the first tick that finds it);
    /// `lookup` gives request projects.
    pub fn new(run_dir: PathBuf, lookup: Option<ProjectLookup>) -> TraceExporter {
        TraceExporter {
            run_dir,
            reader: None,
            cursors: Vec::new(),
            requests: HashMap::new(),
            request_order: VecDeque::new(),
            projects: HashMap::new(),
            lookup,
            pending: VecDeque::new(),
            counters: TraceCounters::default(),
            steps_per_tick: STEPS_PER_TICK,
            start: Vec::new(),
        }
    }

    /// Starts each ring's export at `heads` (a region that continued a previous run's rings,
    /// whose records that run exported): a restart re-sends nothing. Ignored when the
    /// region's ring count differs.
    pub fn starting_at(mut self, heads: Vec<u64>) -> TraceExporter {
        self.start = heads;
        self
    }

    /// Overrides the records read per tick (tests).
    pub fn set_steps_per_tick(&mut self, n: usize) {
        self.steps_per_tick = n.max(1);
    }

    /// The counters so far.
    pub fn counters(&self) -> TraceCounters {
        TraceCounters { messages_pending: self.pending.len() as u64, ..self.counters }
    }

    /// Opens the region when not open yet. The exporter runs in the vRouter that created
    /// the region, which never replaces it while running: the mapping stays valid, and a
    /// restarted vRouter (a new region generation) has a new exporter.
    fn open(&mut self) -> bool {
        if self.reader.is_some() {
            return true;
        }
        match TraceReader::open_run_dir(&self.run_dir) {
            Ok(r) => {
                let info = r.info();
                self.cursors = if self.start.len() == r.n_rings() { self.start.clone() } else { vec![0; r.n_rings()] };
                self.reader = Some((r, info));
                true
            }
            Err(_) => false,
        }
    }

    /// Hands pending messages to `sink` until it refuses one; true when none is left.
    fn flush(&mut self, sink: &mut impl TraceSink) -> bool {
        while let Some(m) = self.pending.pop_front() {
            let n = m.steps.len() as u64;
            match sink.offer(m) {
                Ok(()) => {
                    self.counters.messages_sent += 1;
                    self.counters.steps_sent += n;
                }
                Err(m) => {
                    self.pending.push_front(m);
                    return false;
                }
            }
        }
        true
    }

    /// One tick: offers what is pending; when all of it was taken, reads up to the per-tick
    /// budget of new records, groups them into messages and offers those.
    pub fn tick(&mut self, sink: &mut impl TraceSink) {
        if !self.flush(sink) {
            self.counters.backpressure_ticks += 1;
            return;
        }
        if !self.open() {
            return;
        }
        let records = self.read();
        if records.is_empty() {
            return;
        }
        self.build(records);
        self.flush(sink);
    }

    /// New records of every ring, within the budget, oldest first per ring.
    fn read(&mut self) -> Vec<TraceRecord> {
        let Some((reader, _)) = &self.reader else { return Vec::new() };
        let mut out = Vec::new();
        for (ring, cursor) in self.cursors.iter_mut().enumerate() {
            let left = self.steps_per_tick.saturating_sub(out.len());
            if left == 0 {
                break;
            }
            let r = reader.read_ring(ring, *cursor, left);
            self.counters.steps_lost += r.lost;
            *cursor = r.next;
            out.extend(r.records);
        }
        self.counters.steps_read += out.len() as u64;
        out
    }

    fn remember_request(&mut self, trace_id: u64, request: [u8; 16]) {
        if self.requests.insert(trace_id, request).is_none() {
            self.request_order.push_back(trace_id);
            while self.request_order.len() > REMEMBERED_TRACES {
                if let Some(old) = self.request_order.pop_front() {
                    self.requests.remove(&old);
                }
            }
        }
    }

    fn project(&mut self, request: &[u8; 16]) -> Option<String> {
        if let Some(p) = self.projects.get(request) {
            return p.clone();
        }
        let found = self.lookup.as_ref().and_then(|l| l(request));
        // Only a request that exists is remembered: one added later is looked up again.
        if let Some(p) = found {
            self.projects.insert(*request, p.clone());
            return p;
        }
        None
    }

    /// Groups `records` by trace id into pending messages.
    fn build(&mut self, records: Vec<TraceRecord>) {
        let Some((_, info)) = self.reader.as_ref().map(|(_, i)| ((), *i)) else { return };
        let mut by_trace: BTreeMap<u64, Vec<TraceRecord>> = BTreeMap::new();
        for r in records {
            if let Step::Matched { request, .. } = r.step {
                self.remember_request(r.trace_id, request);
            }
            by_trace.entry(r.trace_id).or_default().push(r);
        }
        let agent_ring = (info.n_rings as usize).saturating_sub(1) as u16;
        for (trace_id, recs) in by_trace {
            let request = self.requests.get(&trace_id).copied();
            let project = request.as_ref().and_then(|r| self.project(r));
            for chunk in recs.chunks(STEPS_PER_MESSAGE) {
                self.pending.push_back(PacketTraceData {
                    trace_id,
                    request: request.as_ref().map(format_uuid),
                    project: project.clone(),
                    generation: info.generation,
                    agent_ring,
                    steps: chunk.iter().map(|r| step_message(r, &info)).collect(),
                    file: file!().to_owned(),
                    line: line!() as i32,
                });
            }
        }
    }
}

fn ip_of(a: u128) -> IpAddr {
    let v6 = Ipv6Addr::from(a);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// One record as a message step: kind, rendered text, ordering keys, and the typed fields
/// queries use.
pub fn step_message(r: &TraceRecord, info: &RegionInfo) -> PacketTraceStep {
    let mut s = PacketTraceStep::new(
        r.pkt,
        info.unix_us(r.tsc) as i64,
        r.tsc,
        r.ring as u16,
        r.position,
        r.step.name(),
        r.step.render(),
    );
    match r.step {
        Step::Ingress { vif, .. } | Step::Egress { vif, .. } => s.vif = Some(vif),
        Step::Parsed { proto, sport, dport, vrf, .. } => {
            s.protocol = Some(u16::from(proto));
            s.sport = Some(sport);
            s.dport = Some(dport);
            s.vrf = Some(vrf);
        }
        Step::Addresses { src, dst } => {
            s.src_ip = Some(ip_of(src));
            s.dst_ip = Some(ip_of(dst));
        }
        Step::FlowLookup { index, action, .. } => {
            s.flow = Some(index);
            s.action = Some(action_name(action).to_owned());
        }
        Step::Held { flow, .. } | Step::Released { flow, .. } => s.flow = Some(flow),
        Step::Policy { forward, rule, flow, .. } => {
            s.flow = Some(flow);
            s.action = Some(if forward { "forward" } else { "drop" }.to_owned());
            s.rule = (rule != [0; 16]).then(|| format_uuid(&rule));
        }
        Step::FlowAction { action, .. } => s.action = Some(action_name(action).to_owned()),
        Step::Mirror { failed: Some(reason), .. } => s.drop_reason = Some(reason.key().to_owned()),
        Step::Route { vrf, out_vif, .. } => {
            s.vrf = Some(vrf);
            s.vif = (out_vif != u16::MAX).then_some(out_vif);
        }
        Step::Drop { reason } => s.drop_reason = Some(reason.key().to_owned()),
        Step::Matched { .. }
        | Step::Decap { .. }
        | Step::Mirror { failed: None, .. }
        | Step::Encap { .. }
        | Step::Ecmp { .. }
        | Step::Marked { .. } => {}
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drop_reason::DropReason;
    use crate::trace::region::TraceRegion;

    /// A sink that takes at most `room` messages.
    struct Bounded {
        room: usize,
        got: Vec<PacketTraceData>,
    }

    impl TraceSink for Bounded {
        fn offer(&mut self, msg: PacketTraceData) -> Result<(), PacketTraceData> {
            if self.got.len() >= self.room {
                return Err(msg);
            }
            self.got.push(msg);
            Ok(())
        }
    }

    const REQ: [u8; 16] = [0xab; 16];

    fn lookup() -> ProjectLookup {
        Arc::new(|r: &[u8; 16]| (*r == REQ).then(|| Some("red".to_owned())))
    }

    #[test]
    fn groups_by_trace_with_request_and_project_and_never_resends() {
        let dir = tempfile::tempdir().unwrap();
        let region = TraceRegion::create(dir.path(), 2, 64, 1_000_000_000, 0).unwrap();
        let mut lcore = region.writer(0).unwrap();
        let mut agent = region.writer(1).unwrap();
        lcore.push(10, 7, 1, &Step::Ingress { vif: 1, queue: 0, len: 60 });
        lcore.push(11, 7, 1, &Step::Matched { request: REQ, new_trace: true });
        lcore.push(12, 9, 1, &Step::Ingress { vif: 2, queue: 0, len: 70 });
        lcore.push(13, 7, 1, &Step::Held { flow: 5, new: true });
        agent.push(14, 7, 1, &Step::Policy { forward: false, drop_reason: 3, rule: [0xbb; 16], flow: 5 });
        lcore.push(15, 7, 1, &Step::Drop { reason: DropReason::FlowActionDrop });
        let mut ex = TraceExporter::new(dir.path().to_owned(), Some(lookup()));
        let mut out = Vec::new();
        ex.tick(&mut out);
        assert_eq!(out.len(), 2, "one message per trace id");
        let t7 = out.iter().find(|m| m.trace_id == 7).unwrap();
        assert_eq!(t7.request.as_deref(), Some(format_uuid(&REQ).as_str()));
        assert_eq!(t7.project.as_deref(), Some("red"));
        assert_eq!((t7.generation, t7.agent_ring), (1, 1));
        let kinds: Vec<_> = t7.steps.iter().map(|s| (s.step.as_str(), s.ring, s.seq)).collect();
        assert_eq!(kinds, [("ingress", 0, 0), ("matched", 0, 1), ("hold", 0, 3), ("drop", 0, 4), ("policy", 1, 0)]);
        let policy = &t7.steps[4];
        assert_eq!((policy.flow, policy.action.as_deref()), (Some(5), Some("drop")));
        assert_eq!(policy.rule.as_deref(), Some("bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb"));
        assert_eq!(policy.detail, Step::Policy { forward: false, drop_reason: 3, rule: [0xbb; 16], flow: 5 }.render());
        assert_eq!(t7.steps[3].drop_reason.as_deref(), Some(DropReason::FlowActionDrop.key()));
        // 1 GHz TSC from base 0 at base_unix_ms: tsc 10 is 10 ns after the base.
        let info = TraceReader::open_run_dir(dir.path()).unwrap().info();
        assert_eq!(t7.steps[0].time_us, (info.base_unix_ms * 1000) as i64);
        let t9 = out.iter().find(|m| m.trace_id == 9).unwrap();
        assert_eq!((t9.request.as_ref(), t9.project.as_ref()), (None, None), "no match step seen: unknown");
        assert_eq!(t9.steps[0].vif, Some(2));
        let t7_request = t7.request.clone();

        // Nothing new: nothing sent again.
        ex.tick(&mut out);
        assert_eq!(out.len(), 2);
        // The next packet of trace 7 (no match step of its own) keeps its request.
        lcore.push(20, 7, 2, &Step::Ingress { vif: 1, queue: 0, len: 60 });
        ex.tick(&mut out);
        assert_eq!(out.len(), 3);
        assert_eq!(out[2].request, t7_request);
        assert_eq!(out[2].project.as_deref(), Some("red"));
        assert_eq!((out[2].steps.len(), out[2].steps[0].pkt, out[2].steps[0].seq), (1, 2, 5));
        let c = ex.counters();
        assert_eq!((c.steps_read, c.steps_sent, c.steps_lost, c.messages_sent), (7, 7, 0, 3));
    }

    #[test]
    fn overwritten_records_are_counted_lost_and_backpressure_stops_reading() {
        let dir = tempfile::tempdir().unwrap();
        let region = TraceRegion::create(dir.path(), 1, 64, 1_000_000_000, 0).unwrap();
        let mut w = region.writer(0).unwrap();
        // 200 steps of 200 traces into 64 slots before the first read: 136 lost.
        for i in 0..200u64 {
            w.push(i, 1000 + i, 1, &Step::Egress { vif: 1, len: 60 });
        }
        let mut ex = TraceExporter::new(dir.path().to_owned(), None);
        ex.set_steps_per_tick(16);
        let mut sink = Bounded { room: 10, got: Vec::new() };
        ex.tick(&mut sink);
        let c = ex.counters();
        assert_eq!((c.steps_lost, c.steps_read), (136, 16));
        assert_eq!((c.messages_sent, c.messages_pending), (10, 6), "the sink took 10 of 16");
        assert_eq!(sink.got[0].trace_id, 1136, "the oldest surviving record first");
        // While messages are pending nothing new is read, and the writer keeps going: the
        // next read counts what it overwrote meanwhile.
        ex.tick(&mut sink);
        assert_eq!(ex.counters().backpressure_ticks, 1);
        assert_eq!(ex.counters().steps_read, 16);
        for i in 200..300u64 {
            w.push(i, 1000 + i, 1, &Step::Egress { vif: 1, len: 60 });
        }
        sink.room = usize::MAX;
        ex.set_steps_per_tick(1000);
        ex.tick(&mut sink);
        ex.tick(&mut sink);
        let c = ex.counters();
        // Written 300; read 16 + the 64 still in the ring; lost the rest, each exactly once.
        assert_eq!((c.steps_read, c.steps_lost), (80, 220));
        assert_eq!(c.steps_read + c.steps_lost, 300);
        assert_eq!((c.steps_sent, c.messages_pending), (80, 0));
        let ids: Vec<u64> = sink.got.iter().map(|m| m.trace_id).collect();
        let mut dedup = ids.clone();
        dedup.dedup();
        assert_eq!(ids, dedup, "no trace step sent twice");
        assert_eq!(ids.last(), Some(&1299));
    }

    #[test]
    fn long_traces_are_split_into_bounded_messages() {
        let dir = tempfile::tempdir().unwrap();
        let region = TraceRegion::create(dir.path(), 1, 256, 1_000_000_000, 0).unwrap();
        let mut w = region.writer(0).unwrap();
        for i in 0..150u64 {
            w.push(i, 5, (i / 10) as u32 + 1, &Step::Egress { vif: 1, len: 60 });
        }
        let mut ex = TraceExporter::new(dir.path().to_owned(), None);
        let mut out = Vec::new();
        ex.tick(&mut out);
        assert_eq!(out.iter().map(|m| m.steps.len()).collect::<Vec<_>>(), [64, 64, 22]);
        let seqs: Vec<u64> = out.iter().flat_map(|m| m.steps.iter().map(|s| s.seq)).collect();
        assert_eq!(seqs, (0..150).collect::<Vec<_>>());
    }
}
