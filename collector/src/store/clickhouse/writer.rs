//! The ClickHouse writer: the writer thread's [`StoreWriter`] and the inserter thread behind
//! it.
//!
//! The writer thread turns messages into rows (`RowBinary`, [`super::rowbinary`]), one buffer
//! per table, stamping each row with the next version (`ver`: its clock in ns, strictly
//! increasing). Flow samples are merged with the flow's previous aggregates
//! ([`crate::store::merge_sample`]), which come from a cache of recent flows ([`FlowCache`])
//! or, for flows not in it, from one lookup per written batch in `flow_record`. Trace steps
//! already stored are skipped (the keys of each trace id are read once, then remembered).
//! UVE removals are tombstones; the writer remembers which UVE rows each generator has so
//! that `uve_rows_removed` counts what a disconnection removes.
//!
//! Buffers go to the inserter as one batch when they hold `clickhouse_batch_size` flow
//! samples, when the ingest loop flushes (the oldest row waited `clickhouse_flush_ms`) and on
//! commit (an `IngestMsg::Flush`, the end). The channel holds two batches: while the server
//! is slow the writer waits on it, and so does ingest behind it (back-pressure to the
//! generators).
//!
//! The inserter inserts each batch's blocks in order. A failed insert keeps its block and
//! everything after it; they are retried with backoff (0.25 s doubling to 30 s) while the
//! inserter goes on taking batches, keeping at most `clickhouse_max_buffered_rows` rows:
//! beyond that the oldest batches are dropped whole and counted lost. A server error (not an
//! unreachable server) is retried three times, then the block is dropped and counted. A
//! commit waits until everything before it is inserted or dropped, or until an insert has
//! failed since (the server is down: waiting longer would only stall the collector).

use super::client::{quote, ChError, Client};
use super::rowbinary::Rows;
use super::{
    tombstone, ClickHouseConfig, TableDef, FLOW_RECORD, FLOW_SERIES, PARTITIONED, TRACE, TRACE_STEP, UVE, UVE_TOMBSTONE,
};
use crate::ingest::{IngestMsg, StoreWriter};
use crate::model::{FlowRecordInput, GeneratorKey, TraceInput, UveUpdate};
use crate::stats::Stats;
use crate::store::{merge_sample, FlowAggs, StoreError, TS_ATTR};
use serde_json::Value;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// UUIDs per lookup statement.
const LOOKUP_CHUNK: usize = 5_000;
/// Trace ids whose stored step keys the writer remembers.
const TRACE_KEYS_KEPT: usize = 4_096;
/// Attempts of an insert the server refuses (not an unreachable server) before its block is
/// dropped.
const SERVER_ERROR_ATTEMPTS: u32 = 3;

/// What a flow's next row continues from: its aggregates and the optional fields a sample
/// may leave out (kept from an earlier one, as SQLite's upsert keeps them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowState {
    /// The aggregates.
    pub aggs: FlowAggs,
    setup_time: Option<i64>,
    teardown_time: Option<i64>,
    analyzer_name: Option<String>,
    sec_analyzer_name: Option<String>,
    action: Option<String>,
    sg_rule_uuid: Option<String>,
    nw_ace_uuid: Option<String>,
    vrouter_ip: Option<String>,
    other_vrouter_ip: Option<String>,
    underlay_proto: Option<u16>,
    underlay_source_port: Option<u16>,
    vmi: Option<String>,
    drop_reason: Option<String>,
    reverse_uuid: Option<String>,
    tcp_flags: Option<u16>,
    vm: Option<String>,
    forward_flow: Option<bool>,
}

impl FlowState {
    /// The state after sample `r` with aggregates `aggs`: the sample's optional fields where
    /// it has them, the previous ones where not.
    fn after(prev: Option<&FlowState>, r: &FlowRecordInput, aggs: FlowAggs) -> FlowState {
        fn keep<T: Clone>(new: &Option<T>, old: Option<&Option<T>>) -> Option<T> {
            new.clone().or_else(|| old.cloned().flatten())
        }
        FlowState {
            aggs,
            setup_time: keep(&r.setup_time, prev.map(|p| &p.setup_time)),
            teardown_time: keep(&r.teardown_time, prev.map(|p| &p.teardown_time)),
            analyzer_name: keep(&r.analyzer_name, prev.map(|p| &p.analyzer_name)),
            sec_analyzer_name: keep(&r.sec_analyzer_name, prev.map(|p| &p.sec_analyzer_name)),
            action: keep(&r.action, prev.map(|p| &p.action)),
            sg_rule_uuid: keep(&r.sg_rule_uuid, prev.map(|p| &p.sg_rule_uuid)),
            nw_ace_uuid: keep(&r.nw_ace_uuid, prev.map(|p| &p.nw_ace_uuid)),
            vrouter_ip: keep(&r.vrouter_ip, prev.map(|p| &p.vrouter_ip)),
            other_vrouter_ip: keep(&r.other_vrouter_ip, prev.map(|p| &p.other_vrouter_ip)),
            underlay_proto: keep(&r.underlay_proto, prev.map(|p| &p.underlay_proto)),
            underlay_source_port: keep(&r.underlay_source_port, prev.map(|p| &p.underlay_source_port)),
            vmi: keep(&r.vmi_uuid, prev.map(|p| &p.vmi)),
            drop_reason: keep(&r.drop_reason, prev.map(|p| &p.drop_reason)),
            reverse_uuid: keep(&r.reverse_uuid, prev.map(|p| &p.reverse_uuid)),
            tcp_flags: keep(&r.tcp_flags, prev.map(|p| &p.tcp_flags)),
            vm: keep(&r.vm, prev.map(|p| &p.vm)),
            forward_flow: keep(&r.forward_flow, prev.map(|p| &p.forward_flow)),
        }
    }
}

/// Whether a flow sample covers its flow's whole life: cumulative counters equal to its
/// diffs (the vRouter's first record of a flow). A sample stored earlier for the flow can
/// then only be an earlier copy of this one (a generator that sent it twice), whose
/// aggregates the merge would give again; what the lookup would add is the copy's series
/// diffs set to zero, and generators do not resend records (the Sandesh session has no
/// retransmission), so the writer merges it as the flow's first sample without asking the
/// store.
fn whole_life(r: &FlowRecordInput) -> bool {
    r.bytes.is_some() && r.packets.is_some() && r.bytes == r.diff_bytes && r.packets == r.diff_packets
}

/// The columns a lookup reads, in [`state_of`]'s order.
const STATE_COLUMNS: &str = "uuid, first_seen, last_seen, agg_bytes, agg_packets, agg_mir_bytes, agg_mir_packets, \
     agg_sec_mir_bytes, agg_sec_mir_packets, setup_time, teardown_time, analyzer_name, sec_analyzer_name, action, \
     sg_rule_uuid, nw_ace_uuid, vrouter_ip, other_vrouter_ip, underlay_proto, underlay_source_port, vmi, \
     drop_reason, reverse_uuid, tcp_flags, vm, forward_flow, agg_mir_lost_packets, agg_sec_mir_lost_packets, \
     before_mirror_packets, held_dropped_packets";

/// A flow's state from a lookup row ([`STATE_COLUMNS`]).
fn state_of(r: &[Value]) -> FlowState {
    let i = |k: usize| r.get(k).and_then(Value::as_i64);
    let s = |k: usize| r.get(k).and_then(Value::as_str).map(str::to_owned);
    let u16_at = |k: usize| r.get(k).and_then(Value::as_u64).and_then(|v| u16::try_from(v).ok());
    FlowState {
        aggs: FlowAggs {
            first_seen: i(1).unwrap_or(0),
            last_seen: i(2).unwrap_or(0),
            bytes: i(3).unwrap_or(0),
            packets: i(4).unwrap_or(0),
            mir_bytes: i(5),
            mir_packets: i(6),
            sec_mir_bytes: i(7),
            sec_mir_packets: i(8),
            reconcile: [i(26), i(27), i(28), i(29)],
        },
        setup_time: i(9),
        teardown_time: i(10),
        analyzer_name: s(11),
        sec_analyzer_name: s(12),
        action: s(13),
        sg_rule_uuid: s(14),
        nw_ace_uuid: s(15),
        vrouter_ip: s(16),
        other_vrouter_ip: s(17),
        underlay_proto: u16_at(18),
        underlay_source_port: u16_at(19),
        vmi: s(20),
        drop_reason: s(21),
        reverse_uuid: s(22),
        tcp_flags: u16_at(23),
        vm: s(24),
        forward_flow: i(25).map(|v| v != 0),
    }
}

/// The states of recent flows, in two generations: new and used entries go to `young`; when
/// it holds half the capacity it becomes `old` and the previous `old` is forgotten, but only
/// once every row written while its entries were current has been inserted or dropped (a
/// forgotten flow is looked up in the store, which must then have its latest row).
#[derive(Debug, Default)]
pub struct FlowCache {
    young: HashMap<String, FlowState>,
    old: HashMap<String, FlowState>,
    /// Last batch sequence written while `young`'s entries were current.
    young_seq: u64,
    /// The same for `old`.
    old_seq: u64,
    capacity: usize,
}

impl FlowCache {
    /// A cache of about `capacity` flows.
    pub fn new(capacity: usize) -> FlowCache {
        FlowCache { capacity: capacity.max(2), ..FlowCache::default() }
    }

    /// Whether a flow is known.
    pub fn contains(&self, uuid: &str) -> bool {
        self.young.contains_key(uuid) || self.old.contains_key(uuid)
    }

    /// A flow's state, moved to the young generation.
    pub fn get(&mut self, uuid: &str) -> Option<&FlowState> {
        if !self.young.contains_key(uuid) {
            let (k, v) = self.old.remove_entry(uuid)?;
            self.young.insert(k, v);
        }
        self.young.get(uuid)
    }

    /// Stores a flow's state, written in batch `seq`.
    pub fn put(&mut self, uuid: &str, state: FlowState, seq: u64) {
        self.young_seq = self.young_seq.max(seq);
        match self.young.get_mut(uuid) {
            Some(s) => *s = state,
            None => {
                self.young.insert(uuid.to_owned(), state);
            }
        }
    }

    /// Ages the generations when the young one is full and the old one's rows are all done
    /// (`done`: the last batch sequence inserted or dropped).
    pub fn age(&mut self, done: u64) {
        if self.young.len() >= self.capacity / 2 && self.old_seq <= done {
            self.old = std::mem::take(&mut self.young);
            self.old_seq = self.young_seq;
        }
    }

    /// Flows held.
    pub fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }

    /// Whether no flow is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a block holds, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `flow_record` rows (one per flow sample).
    FlowRecords,
    /// `flow_series` rows.
    FlowSeries,
    /// `uve` rows of this many updates.
    Uves(u64),
    /// `uve_tombstone` rows.
    Tombstones,
    /// `trace` rows.
    Traces,
    /// `trace_step` rows (new steps).
    Steps,
}

/// Rows for one table.
#[derive(Debug)]
struct Block {
    table: &'static TableDef,
    rows: Rows,
    kind: Kind,
    /// Failed attempts that got an answer (server errors).
    refused: u32,
}

enum InsertMsg {
    Batch(u64, Vec<Block>),
    Barrier(mpsc::Sender<()>),
}

/// The writer thread's buffers.
#[derive(Debug, Default)]
struct Buffers {
    flow_record: Rows,
    flow_series: Rows,
    uve: Rows,
    uve_updates: u64,
    tombstones: Rows,
    trace: Rows,
    trace_step: Rows,
}

impl Buffers {
    fn is_empty(&self) -> bool {
        [&self.flow_record, &self.flow_series, &self.uve, &self.tombstones, &self.trace, &self.trace_step]
            .iter()
            .all(|r| r.count == 0)
    }

    fn take_blocks(&mut self) -> Vec<Block> {
        let block = |table, rows: &mut Rows, kind| Block { table, rows: rows.take(), kind, refused: 0 };
        let updates = std::mem::take(&mut self.uve_updates);
        // Tombstones after the rows they may cover, steps before their trace rows: a reader
        // never sees a trace without its steps.
        [
            block(&FLOW_RECORD, &mut self.flow_record, Kind::FlowRecords),
            block(&FLOW_SERIES, &mut self.flow_series, Kind::FlowSeries),
            block(&UVE, &mut self.uve, Kind::Uves(updates)),
            block(&UVE_TOMBSTONE, &mut self.tombstones, Kind::Tombstones),
            block(&TRACE_STEP, &mut self.trace_step, Kind::Steps),
            block(&TRACE, &mut self.trace, Kind::Traces),
        ]
        .into_iter()
        .filter(|b| b.rows.count > 0)
        .collect()
    }
}

/// A trace step's identity.
type StepKey = (String, u64, u16, u64);

/// The writer thread's side.
pub struct ClickHouseWriter {
    client: Client,
    batch_size: usize,
    flush_every: Duration,
    max_buffered_rows: usize,
    collector_id: String,
    ver: u64,
    buf: Buffers,
    flows: FlowCache,
    /// Stored step keys of recent trace ids.
    steps: HashMap<u64, HashSet<StepKey>>,
    /// UVE rows (table, name, struct type, attribute) each generator has, as far as this
    /// writer saw them written.
    uve_rows: HashMap<String, HashSet<(String, String, String, String)>>,
    seq: u64,
    done: Arc<AtomicU64>,
    /// Set by the inserter while inserts fail: lookups are not tried then (a server that
    /// does not answer would hold the writer for its timeout on every batch).
    failing: Arc<AtomicBool>,
    inserter: Option<(SyncSender<InsertMsg>, JoinHandle<()>)>,
}

impl std::fmt::Debug for ClickHouseWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseWriter").field("client", &self.client).field("seq", &self.seq).finish()
    }
}

fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

impl ClickHouseWriter {
    /// A writer for `client`'s database.
    pub fn new(client: Client, cfg: &ClickHouseConfig) -> Result<ClickHouseWriter, StoreError> {
        Ok(ClickHouseWriter {
            client,
            batch_size: cfg.batch_size.max(1),
            flush_every: Duration::from_millis(cfg.flush_ms),
            max_buffered_rows: cfg.max_buffered_rows.max(1),
            collector_id: cfg.collector_id.clone(),
            ver: 0,
            buf: Buffers::default(),
            flows: FlowCache::new(cfg.flow_cache),
            steps: HashMap::new(),
            uve_rows: HashMap::new(),
            seq: 0,
            done: Arc::new(AtomicU64::new(0)),
            failing: Arc::new(AtomicBool::new(false)),
            inserter: None,
        })
    }

    fn next_ver(&mut self) -> u64 {
        self.ver = now_ns().max(self.ver + 1);
        self.ver
    }

    /// Reads the state of the batch's flows that are not in the cache, except for samples
    /// that cover their flow's whole life ([`whole_life`]): nothing stored before can change
    /// how they merge (see there), and they are most samples of a busy vRouter (every new
    /// flow's first), so the lookups stay with the flows that outlived a cache or a
    /// collector.
    fn look_up_flows(&mut self, batch: &[IngestMsg], stats: &Stats) {
        let mut missing: Vec<&str> = Vec::new();
        let mut seen = HashSet::new();
        for m in batch {
            if let IngestMsg::Flows(recs) = m {
                for r in recs {
                    if whole_life(r) {
                        continue;
                    }
                    if !self.flows.contains(&r.flowuuid) && seen.insert(r.flowuuid.as_str()) {
                        missing.push(&r.flowuuid);
                    }
                }
            }
        }
        if self.failing.load(Relaxed) {
            stats.flow_lookups_failed.fetch_add(missing.len() as u64, Relaxed);
            return;
        }
        for chunk in missing.chunks(LOOKUP_CHUNK) {
            let list = chunk.iter().map(|u| quote(u)).collect::<Vec<_>>().join(", ");
            let sql = format!(
                "SELECT {STATE_COLUMNS} FROM flow_record WHERE uuid IN ({list}) ORDER BY uuid, ver DESC LIMIT 1 BY uuid"
            );
            match self.client.select(&sql) {
                Ok(rows) => {
                    stats.flow_lookups.fetch_add(chunk.len() as u64, Relaxed);
                    for r in rows {
                        if let Some(uuid) = r.first().and_then(Value::as_str) {
                            let uuid = uuid.to_owned();
                            self.flows.put(&uuid, state_of(&r), self.seq);
                        }
                    }
                }
                Err(e) => {
                    stats.flow_lookups_failed.fetch_add(chunk.len() as u64, Relaxed);
                    logging::rate_limited!(
                        WARN,
                        "collector: looking up {} flows in ClickHouse failed ({e}); their samples are merged as \
                         first samples",
                        chunk.len()
                    );
                }
            }
        }
    }

    fn flow_sample(&mut self, r: &FlowRecordInput) {
        let ver = self.next_ver();
        let prev = self.flows.get(&r.flowuuid).cloned();
        let (aggs, d) = merge_sample(prev.as_ref().map(|p| &p.aggs), r);
        let st = FlowState::after(prev.as_ref(), r, aggs);
        let b = &mut self.buf.flow_record;
        b.str(&r.flowuuid).u64(ver).str(&r.vrouter).str(&r.sourcevn).str(&r.sourceip).str(&r.destvn).str(&r.destip);
        b.u8(r.protocol_u8()).u16(r.sport_u16()).u16(r.dport_u16()).i8(r.direction_ing);
        b.opt(st.setup_time, Rows::i64).opt(st.teardown_time, Rows::i64);
        b.i64(aggs.first_seen).i64(aggs.last_seen).i64(aggs.bytes).i64(aggs.packets);
        b.opt(aggs.mir_bytes, Rows::i64).opt(aggs.mir_packets, Rows::i64);
        b.opt(aggs.sec_mir_bytes, Rows::i64).opt(aggs.sec_mir_packets, Rows::i64);
        b.opt_str(st.analyzer_name.as_deref()).opt_str(st.sec_analyzer_name.as_deref()).opt_str(st.action.as_deref());
        b.opt_str(st.sg_rule_uuid.as_deref()).opt_str(st.nw_ace_uuid.as_deref());
        b.opt_str(st.vrouter_ip.as_deref()).opt_str(st.other_vrouter_ip.as_deref());
        b.opt(st.underlay_proto, Rows::u16).opt(st.underlay_source_port, Rows::u16);
        b.opt_str(st.vmi.as_deref()).opt_str(st.drop_reason.as_deref()).opt_str(st.reverse_uuid.as_deref());
        b.opt(st.tcp_flags, Rows::u16).opt_str(st.vm.as_deref()).opt(st.forward_flow.map(u8::from), Rows::u8);
        for v in aggs.reconcile {
            b.opt(v, Rows::i64);
        }
        b.end_row();
        let s = &mut self.buf.flow_series;
        s.i64(r.timestamp_us).str(&r.flowuuid).str(&r.vrouter).str(&r.sourcevn).str(&r.sourceip);
        s.str(&r.destvn).str(&r.destip).u8(r.protocol_u8()).u16(r.sport_u16()).u16(r.dport_u16()).i8(r.direction_ing);
        s.i64(d.bytes).i64(d.packets).i64(d.mir_bytes).i64(d.mir_packets).i64(d.sec_mir_bytes).i64(d.sec_mir_packets);
        s.opt_str(r.analyzer_name.as_deref()).opt_str(r.sec_analyzer_name.as_deref()).opt_str(r.action.as_deref());
        s.end_row();
        self.flows.put(&r.flowuuid, st, self.seq + 1);
    }

    fn tombstone(&mut self, kind: u8, tbl: &str, name: &str, generator: &str, struct_type: &str, collector: &str) {
        let ver = self.next_ver();
        let t = &mut self.buf.tombstones;
        t.u8(kind).str(tbl).str(name).str(generator).str(struct_type).str(collector).u64(ver).end_row();
    }

    fn uve(&mut self, g: &GeneratorKey, u: &UveUpdate) {
        let gen = g.to_string();
        if u.deleted {
            self.tombstone(tombstone::STRUCT, &u.table, &u.name, &gen, &u.struct_type, "");
            if let Some(rows) = self.uve_rows.get_mut(&gen) {
                rows.retain(|(t, n, s, _)| !(t == &u.table && n == &u.name && s == &u.struct_type));
            }
            return;
        }
        let mut attrs: Vec<(&str, Option<String>)> = vec![(TS_ATTR, None)];
        for a in &u.attrs {
            attrs.push((&a.name, Some(serde_json::to_string(a).expect("UveField serialises"))));
        }
        let known = self.uve_rows.entry(gen.clone()).or_default();
        for (attr, _) in &attrs {
            known.insert((u.table.clone(), u.name.clone(), u.struct_type.clone(), (*attr).to_owned()));
        }
        for (attr, value) in attrs {
            let ver = self.next_ver();
            let b = &mut self.buf.uve;
            b.str(&u.table).str(&u.name).str(&gen).str(&u.struct_type).str(attr).opt_str(value.as_deref());
            b.i64(u.timestamp_us).u64(ver).str(&self.collector_id).end_row();
        }
        self.buf.uve_updates += 1;
    }

    /// The step keys of `trace_id` already stored (read once per trace id).
    fn stored_steps(&mut self, trace_id: u64) -> &mut HashSet<StepKey> {
        if !self.steps.contains_key(&trace_id) {
            if self.steps.len() >= TRACE_KEYS_KEPT {
                self.steps.clear();
            }
            let sql = format!("SELECT host, generation, ring, seq FROM trace_step WHERE trace_id = {trace_id}");
            let answer = if self.failing.load(Relaxed) {
                Err(ChError::Unreachable("inserts are failing".into()))
            } else {
                self.client.select(&sql)
            };
            let keys = match answer {
                Ok(rows) => rows
                    .iter()
                    .map(|r| {
                        let u = |k: usize| r.get(k).and_then(Value::as_u64).unwrap_or(0);
                        (r.first().and_then(Value::as_str).unwrap_or_default().to_owned(), u(1), u(2) as u16, u(3))
                    })
                    .collect(),
                Err(e) => {
                    // Reads dedupe steps anyway; only the counter may count a re-sent step.
                    logging::rate_limited!(
                        WARN,
                        "collector: reading the stored steps of trace {trace_id:x} failed: {e}"
                    );
                    HashSet::new()
                }
            };
            self.steps.insert(trace_id, keys);
        }
        self.steps.get_mut(&trace_id).expect("inserted above")
    }

    /// Buffers a trace message's row and its new steps; returns their number.
    fn trace(&mut self, t: &TraceInput) -> u64 {
        let d = &t.data;
        let Some(first) = d.steps.iter().map(|s| s.time_us).min() else { return 0 };
        let last = d.steps.iter().map(|s| s.time_us).max().unwrap_or(first);
        let ver = self.next_ver();
        let b = &mut self.buf.trace;
        b.u64(d.trace_id).opt_str(d.request.as_deref()).opt_str(d.project.as_deref()).i64(first).i64(last).u64(ver);
        b.end_row();
        let mut new = Vec::new();
        let stored = self.stored_steps(d.trace_id);
        for s in &d.steps {
            if stored.insert((t.host.clone(), d.generation, s.ring, s.seq)) {
                new.push(s);
            }
        }
        let b = &mut self.buf.trace_step;
        for s in &new {
            b.u64(d.trace_id)
                .str(&t.host)
                .u64(d.generation)
                .u16(s.ring)
                .u64(s.seq)
                .u8(u8::from(s.ring == d.agent_ring));
            b.u32(s.pkt).i64(s.time_us).u64(s.tsc).str(&s.step).str(&s.detail);
            b.opt(s.vif, Rows::u16).opt_str(s.drop_reason.as_deref()).opt(s.flow, Rows::u32);
            b.opt_str(s.action.as_deref()).opt_str(s.rule.as_deref());
            b.opt(s.protocol, Rows::u16).opt(s.sport, Rows::u16).opt(s.dport, Rows::u16).opt(s.vrf, Rows::u32);
            b.opt_str(s.src_ip.map(|a| a.to_string()).as_deref()).opt_str(s.dst_ip.map(|a| a.to_string()).as_deref());
            b.end_row();
        }
        new.len() as u64
    }

    /// Drops the daily partitions older than `horizon_us` (retention).
    fn purge(&mut self, horizon_us: i64, stats: &Stats) -> Result<(), ChError> {
        if horizon_us <= 0 {
            return Ok(());
        }
        let tables = PARTITIONED.iter().map(|t| quote(t.name)).collect::<Vec<_>>().join(", ");
        let rows = self.client.select(&format!(
            "SELECT table, partition, sum(rows) FROM system.parts WHERE database = {} AND active AND table IN \
             ({tables}) GROUP BY table, partition HAVING toUInt32(partition) < \
             toYYYYMMDD(toDateTime({})) ORDER BY table, partition",
            quote(self.client.database()),
            horizon_us / 1_000_000
        ))?;
        for r in rows {
            let (Some(table), Some(partition)) = (r.first().and_then(Value::as_str), r.get(1).and_then(Value::as_str))
            else {
                continue;
            };
            if partition.is_empty() || !partition.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            self.client.execute(&format!("ALTER TABLE {table} DROP PARTITION {partition}"), true)?;
            let n = r.get(2).and_then(Value::as_u64).unwrap_or(0);
            match table {
                "flow_record" => stats.flow_records_purged.fetch_add(n, Relaxed),
                "flow_series" => stats.flow_series_purged.fetch_add(n, Relaxed),
                "trace" => stats.traces_purged.fetch_add(n, Relaxed),
                _ => 0,
            };
        }
        Ok(())
    }

    /// The inserter's channel, starting the thread on first use.
    fn sender(&mut self, stats: &Arc<Stats>) -> &SyncSender<InsertMsg> {
        if self.inserter.is_none() {
            let (tx, rx) = mpsc::sync_channel(2);
            let inserter = Inserter {
                client: self.client.clone(),
                stats: stats.clone(),
                done: self.done.clone(),
                failing_flag: self.failing.clone(),
                max_rows: self.max_buffered_rows,
                pending: VecDeque::new(),
                pending_rows: 0,
                barriers: Vec::new(),
                last_seq: 0,
                failing: false,
                retry_at: Instant::now(),
                backoff: RETRY_MIN,
            };
            let join = std::thread::Builder::new()
                .name("collector-clickhouse-insert".into())
                .spawn(move || inserter.run(rx))
                .expect("spawning the ClickHouse inserter thread");
            self.inserter = Some((tx, join));
        }
        &self.inserter.as_ref().expect("started above").0
    }

    /// Hands the buffers to the inserter (waiting while it holds two batches).
    fn send(&mut self, stats: &Arc<Stats>) {
        if self.buf.is_empty() {
            return;
        }
        self.seq += 1;
        let blocks = self.buf.take_blocks();
        let seq = self.seq;
        if self.sender(stats).send(InsertMsg::Batch(seq, blocks)).is_err() {
            tracing::error!("collector: the ClickHouse inserter has stopped");
        }
        self.flows.age(self.done.load(Relaxed));
    }
}

impl StoreWriter for ClickHouseWriter {
    fn write(&mut self, batch: &[IngestMsg], stats: &Arc<Stats>) {
        self.look_up_flows(batch, stats);
        for m in batch {
            match m {
                IngestMsg::Flows(recs) => {
                    for r in recs {
                        self.flow_sample(r);
                    }
                    if self.buf.flow_record.count >= self.batch_size {
                        self.send(stats);
                    }
                }
                IngestMsg::Uve(g, u) => self.uve(g, u),
                IngestMsg::DeleteGenerator(g) | IngestMsg::GeneratorEnded(g) => {
                    let gen = g.to_string();
                    // A session that ended removes only what this collector stored: the
                    // generator may be sending through another one already.
                    let by = if matches!(m, IngestMsg::GeneratorEnded(_)) {
                        self.collector_id.clone()
                    } else {
                        String::new()
                    };
                    self.tombstone(tombstone::GENERATOR, "", "", &gen, "", &by);
                    let n = self.uve_rows.remove(&gen).map(|s| s.len()).unwrap_or(0);
                    stats.uve_rows_removed.fetch_add(n as u64, Relaxed);
                }
                IngestMsg::Traces(t) => {
                    self.trace(t);
                }
                // The next purge pass comes soon enough when the server is back.
                IngestMsg::Purge(_) if self.failing.load(Relaxed) => {}
                IngestMsg::Purge(horizon) => {
                    if let Err(e) = self.purge(*horizon, stats) {
                        stats.store_errors.fetch_add(1, Relaxed);
                        tracing::warn!("collector: dropping expired ClickHouse partitions failed: {e}");
                    }
                }
                IngestMsg::Flush(_) => {}
            }
        }
        let rows = [&self.buf.uve, &self.buf.tombstones, &self.buf.trace, &self.buf.trace_step];
        if rows.iter().map(|r| r.count).sum::<usize>() >= self.batch_size {
            self.send(stats);
        }
    }

    fn flush(&mut self, stats: &Arc<Stats>) {
        self.send(stats);
    }

    fn commit(&mut self, stats: &Arc<Stats>) {
        self.send(stats);
        let Some((tx, _)) = &self.inserter else { return };
        let (reply, wait) = mpsc::channel();
        if tx.send(InsertMsg::Barrier(reply)).is_ok() {
            let _ = wait.recv();
        }
    }

    fn linger(&self) -> Option<Duration> {
        Some(self.flush_every)
    }

    fn clear_uves(&mut self) -> Result<usize, StoreError> {
        // Rows this collector wrote before now: its previous run's sessions ended with it.
        let ver = self.next_ver();
        let mut t = Rows::default();
        t.u8(tombstone::COLLECTOR).str("").str("").str("").str("").str(&self.collector_id).u64(ver).end_row();
        self.client
            .insert(UVE_TOMBSTONE.name, &UVE_TOMBSTONE.column_list(), &t.data)
            .map_err(|e| StoreError::ClickHouse { url: self.client.url().to_owned(), message: e.to_string() })?;
        Ok(0)
    }
}

impl Drop for ClickHouseWriter {
    fn drop(&mut self) {
        if let Some((tx, join)) = self.inserter.take() {
            drop(tx);
            let _ = join.join();
        }
    }
}

const RETRY_MIN: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// The inserter thread's state.
struct Inserter {
    client: Client,
    stats: Arc<Stats>,
    done: Arc<AtomicU64>,
    failing_flag: Arc<AtomicBool>,
    max_rows: usize,
    pending: VecDeque<(u64, Block)>,
    pending_rows: usize,
    barriers: Vec<(u64, mpsc::Sender<()>)>,
    last_seq: u64,
    failing: bool,
    retry_at: Instant,
    backoff: Duration,
}

impl Inserter {
    fn run(mut self, rx: Receiver<InsertMsg>) {
        loop {
            let msg = if self.pending.is_empty() {
                match rx.recv() {
                    Ok(m) => Some(m),
                    Err(_) => break,
                }
            } else {
                match rx.recv_timeout(self.retry_at.saturating_duration_since(Instant::now())) {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            };
            match msg {
                Some(InsertMsg::Batch(seq, blocks)) => {
                    self.last_seq = seq;
                    for b in blocks {
                        self.pending_rows += b.rows.count;
                        self.pending.push_back((seq, b));
                    }
                    while self.pending_rows > self.max_rows {
                        // The whole oldest batch: its tables stay consistent with each other.
                        let oldest = self.pending.front().map(|(s, _)| *s);
                        while self.pending.front().is_some_and(|(s, _)| Some(*s) == oldest) {
                            self.drop_front("the buffer is full");
                        }
                    }
                }
                Some(InsertMsg::Barrier(reply)) => self.barriers.push((self.last_seq, reply)),
                None => {}
            }
            if !self.failing || Instant::now() >= self.retry_at {
                self.insert_pending();
            }
            self.progress();
        }
        // The writer is gone: one last attempt, then what is left is lost.
        self.insert_pending();
        while !self.pending.is_empty() {
            self.drop_front("the collector is stopping");
        }
        self.progress();
    }

    /// Inserts pending blocks in order until one fails.
    fn insert_pending(&mut self) {
        while let Some((_, b)) = self.pending.front_mut() {
            match self.client.insert(b.table.name, &b.table.column_list(), &b.rows.data) {
                Ok(()) => {
                    let (_, b) = self.pending.pop_front().expect("front exists");
                    self.pending_rows -= b.rows.count;
                    let n = b.rows.count as u64;
                    match b.kind {
                        Kind::FlowRecords => self.stats.flow_records_stored.fetch_add(n, Relaxed),
                        Kind::Uves(updates) => self.stats.uve_updates_stored.fetch_add(updates, Relaxed),
                        Kind::Steps => self.stats.trace_steps_stored.fetch_add(n, Relaxed),
                        Kind::FlowSeries | Kind::Tombstones | Kind::Traces => 0,
                    };
                    if self.failing {
                        tracing::warn!("collector: ClickHouse at {} takes inserts again", self.client.url());
                    }
                    self.failing = false;
                    self.backoff = RETRY_MIN;
                }
                Err(e) => {
                    self.stats.store_retries.fetch_add(1, Relaxed);
                    if !self.failing {
                        tracing::warn!(
                            "collector: inserting into ClickHouse at {} failed ({e}); retrying, holding at most {} rows",
                            self.client.url(),
                            self.max_rows
                        );
                    }
                    let refused = matches!(e, ChError::Server { .. } | ChError::Decode(_));
                    if refused {
                        b.refused += 1;
                    }
                    self.failing = true;
                    self.retry_at = Instant::now() + self.backoff;
                    self.backoff = (self.backoff * 2).min(RETRY_MAX);
                    if refused && b.refused >= SERVER_ERROR_ATTEMPTS {
                        self.stats.store_errors.fetch_add(1, Relaxed);
                        self.drop_front(&format!("ClickHouse refused it {SERVER_ERROR_ATTEMPTS} times: {e}"));
                        continue;
                    }
                    return;
                }
            }
        }
    }

    /// Drops the oldest pending block, counting its rows lost.
    fn drop_front(&mut self, why: &str) {
        let Some((_, b)) = self.pending.pop_front() else { return };
        self.pending_rows -= b.rows.count;
        let n = b.rows.count as u64;
        self.stats.store_rows_dropped.fetch_add(n, Relaxed);
        match b.kind {
            Kind::FlowRecords => self.stats.flow_records_lost.fetch_add(n, Relaxed),
            Kind::Uves(updates) => self.stats.uve_updates_lost.fetch_add(updates, Relaxed),
            Kind::Steps => self.stats.trace_steps_lost.fetch_add(n, Relaxed),
            Kind::FlowSeries | Kind::Tombstones | Kind::Traces => 0,
        };
        logging::rate_limited!(WARN, "collector: dropped {n} {} rows: {why}", b.table.name);
    }

    /// Publishes what is done and answers the barriers it covers (all of them while the
    /// server fails).
    fn progress(&mut self) {
        let done = self.pending.front().map(|(s, _)| s - 1).unwrap_or(self.last_seq);
        self.done.store(done, Relaxed);
        self.failing_flag.store(self.failing, Relaxed);
        self.stats.store_rows_buffered.store(self.pending_rows as u64, Relaxed);
        let failing = self.failing;
        self.barriers.retain(|(seq, reply)| {
            if *seq <= done || failing {
                let _ = reply.send(());
                false
            } else {
                true
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_forgets_a_generation_only_once_its_rows_are_done() {
        let mut c = FlowCache::new(4);
        let st = FlowState::default();
        c.put("a", st.clone(), 1);
        c.put("b", st.clone(), 1);
        c.age(0);
        assert_eq!(c.len(), 2, "young is full: it becomes old");
        c.put("c", st.clone(), 2);
        c.put("d", st.clone(), 2);
        // Old's rows (batch 1) are not done: nothing is forgotten, young keeps growing.
        c.age(0);
        assert!(c.contains("a") && c.contains("d"));
        c.put("e", st.clone(), 3);
        assert_eq!(c.len(), 5);
        // Batch 1 done: old (a, b) goes, young (c, d, e) ages.
        c.age(1);
        assert!(!c.contains("a") && !c.contains("b"));
        assert!(c.contains("c") && c.contains("e"));
        // A used entry moves back to young and survives the next ageing.
        assert!(c.get("c").is_some());
        c.put("f", st.clone(), 4);
        c.age(3);
        assert!(c.contains("c") && c.contains("f"));
        assert!(!c.contains("d") && !c.contains("e"));
    }

    #[test]
    fn a_sample_keeps_the_optional_fields_an_earlier_one_set() {
        let first = FlowRecordInput {
            flowuuid: "u".into(),
            action: Some("pass".into()),
            analyzer_name: Some("a1".into()),
            setup_time: Some(5),
            ..Default::default()
        };
        let s1 = FlowState::after(None, &first, FlowAggs::default());
        let second = FlowRecordInput { flowuuid: "u".into(), action: Some("drop".into()), ..Default::default() };
        let s2 = FlowState::after(Some(&s1), &second, FlowAggs::default());
        assert_eq!(s2.action.as_deref(), Some("drop"));
        assert_eq!(s2.analyzer_name.as_deref(), Some("a1"));
        assert_eq!(s2.setup_time, Some(5));
    }
}
