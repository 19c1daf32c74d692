//! Storage: the interface the collector writes to and queries through, and its backends.
//!
//! * [`sqlite`]: the embedded default, one SQLite file (WAL) behind one writer, for one
//!   vRouter or a lab.
//! * [`clickhouse`]: a ClickHouse server, for a data centre: batched inserts, any number of
//!   collectors sharing it.
//!
//! Both sides of a backend are traits, so the rest of the collector never names one:
//!
//! * [`Backend`] is the read side, shared by the REST handlers ([`Store`] is a cheap clone of
//!   an `Arc<dyn Backend>`): it names its SQL [`Dialect`], into which the query engine
//!   ([`crate::query`]) compiles `POST /analytics/query`, and runs the compiled statement; it
//!   answers the UVE and trace reads the API needs.
//! * [`crate::ingest::StoreWriter`] is the write side, owned by the one writer thread: it
//!   stores batches of ingested messages (flow samples, UVE updates, trace steps, removals)
//!   in order.
//!
//! What a flow sample does to FlowRecordTable and FlowSeriesTable is the same on every
//! backend and lives here, in [`merge_sample`]: a backend reads the flow's previous
//! aggregates ([`FlowAggs`]), merges, and stores the new aggregates and the series row's
//! diffs. The rules (cumulative counters, copies of stored samples) are documented on
//! [`sqlite`], whose tables show them most directly.

pub mod clickhouse;
pub mod sqlite;

use crate::model::{FlowRecordInput, UveField};
use crate::query::{CompiledQuery, Dialect};
use serde_json::Value;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use thiserror::Error;

pub use sqlite::{SqliteReader, SqliteStore, SqliteWriter, SCHEMA_VERSION};

/// Storage errors.
#[derive(Debug, Error)]
pub enum StoreError {
    /// Creating the data directory failed.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// SQLite failed.
    #[error("database {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The cause.
        source: rusqlite::Error,
    },
    /// The database was written by another schema version.
    #[error("database {path} has schema version {found}, this collector uses {SCHEMA_VERSION}")]
    SchemaVersion {
        /// The database file.
        path: PathBuf,
        /// The version found.
        found: i64,
    },
    /// The store could not be set up: the configuration field the cause most likely lies in,
    /// and what happened.
    #[error("{field}: {message}")]
    Setup {
        /// The configuration field, e.g. `collector.clickhouse_url`.
        field: &'static str,
        /// What happened.
        message: String,
    },
    /// ClickHouse failed a request.
    #[error("ClickHouse at {url}: {message}")]
    ClickHouse {
        /// The server.
        url: String,
        /// What happened.
        message: String,
    },
    /// A stored UVE attribute could not be decoded.
    #[error("corrupt UVE attribute {attr} in {path}: {message}")]
    CorruptUve {
        /// The database (file, or URL and database).
        path: String,
        /// The attribute.
        attr: String,
        /// What was wrong.
        message: String,
    },
}

/// Pseudo-attribute holding a UVE struct's timestamp.
pub const TS_ATTR: &str = "__T";

/// One trace: its request, project and time span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceRow {
    /// The trace id.
    pub trace_id: u64,
    /// The request that started it, when a vRouter knew it.
    pub request: Option<String>,
    /// That request's project (none for an operator's request).
    pub project: Option<String>,
    /// Time of its first step (µs).
    pub first_us: i64,
    /// Time of its last step (µs).
    pub last_us: i64,
}

/// One stored trace step.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredStep {
    /// The vRouter that recorded it.
    pub host: String,
    /// Its trace region generation.
    pub generation: u64,
    /// Ring (lcore, or the agent's).
    pub ring: u16,
    /// Position in the ring.
    pub seq: u64,
    /// Recorded by the agent (its ring is the region's last).
    pub agent: bool,
    /// Packet number within the trace.
    pub pkt: u32,
    /// Wall-clock time on that vRouter (µs).
    pub time_us: i64,
    /// That vRouter's TSC.
    pub tsc: u64,
    /// Step kind.
    pub step: String,
    /// Rendered text.
    pub detail: String,
    /// Ingress or egress vif.
    pub vif: Option<u16>,
    /// Drop reason key.
    pub drop_reason: Option<String>,
    /// Flow index.
    pub flow: Option<u32>,
    /// Action.
    pub action: Option<String>,
    /// Deciding rule.
    pub rule: Option<String>,
    /// IP protocol (parse step).
    pub protocol: Option<u16>,
    /// Source port (parse step).
    pub sport: Option<u16>,
    /// Destination port (parse step).
    pub dport: Option<u16>,
    /// VRF (parse, route step).
    pub vrf: Option<u32>,
    /// Source address (addresses step).
    pub src_ip: Option<String>,
    /// Destination address (addresses step).
    pub dst_ip: Option<String>,
}

/// One stored UVE attribute.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAttr {
    /// `source:node_type:module:instance_id` of the generator that sent it.
    pub generator: String,
    /// Struct type, e.g. `VMIStats`.
    pub struct_type: String,
    /// Attribute name (or [`TS_ATTR`]).
    pub attr: String,
    /// The field as received; `None` for [`TS_ATTR`].
    pub field: Option<UveField>,
    /// Timestamp (µs) of the update that last set it.
    pub ts: i64,
}

/// The read side of a storage backend.
pub trait Backend: Send + Sync + fmt::Debug {
    /// Where the data is, for logs and the startup line: the database file, or the
    /// ClickHouse URL and database.
    fn location(&self) -> String;
    /// The SQL dialect the query engine compiles `POST /analytics/query` into.
    fn dialect(&self) -> &'static dyn Dialect;
    /// Runs a compiled query; each row is the list of its values in field order (integers
    /// as numbers, text as strings, missing values as null).
    fn fetch(&self, q: &CompiledQuery) -> Result<Vec<Vec<Value>>, StoreError>;
    /// Distinct object names of a UVE table, sorted.
    fn uve_names(&self, table: &str) -> Result<Vec<String>, StoreError>;
    /// Every stored attribute of one UVE object, ordered by struct type, attribute,
    /// generator.
    fn uve_attrs(&self, table: &str, name: &str) -> Result<Vec<StoredAttr>, StoreError>;
    /// Traces whose time span meets [`start_us`, `end_us`], optionally of one request and
    /// (`project` = `Some`) of one project only, oldest first (then by id), at most `limit`.
    fn trace_rows(
        &self,
        start_us: i64,
        end_us: i64,
        request: Option<&str>,
        project: Option<&str>,
        limit: usize,
    ) -> Result<Vec<TraceRow>, StoreError>;
    /// One trace, if stored.
    fn trace_row(&self, trace_id: u64) -> Result<Option<TraceRow>, StoreError>;
    /// Every stored step of a trace, each once, ordered by (vRouter, generation, ring,
    /// position) (see [`crate::trace::order_steps`] for the API's order).
    fn trace_steps(&self, trace_id: u64) -> Result<Vec<StoredStep>, StoreError>;
    /// Number of flows in FlowRecordTable and of rows in FlowSeriesTable.
    fn flow_counts(&self) -> Result<(u64, u64), StoreError>;
    /// Removes a trace and its steps (`DELETE /analytics/traces/<id>`; the caller checked
    /// who may).
    fn delete_trace(&self, trace_id: u64) -> Result<(), StoreError>;
}

/// The store as the API handlers hold it: a shared handle on the backend in use.
#[derive(Clone, Debug)]
pub struct Store(Arc<dyn Backend>);

impl Store {
    /// Wraps a backend.
    pub fn new(backend: impl Backend + 'static) -> Store {
        Store(Arc::new(backend))
    }
}

impl std::ops::Deref for Store {
    type Target = dyn Backend;
    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

/// A flow's aggregates before or after a sample is merged.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FlowAggs {
    /// `agg-bytes`.
    pub bytes: i64,
    /// `agg-packets`.
    pub packets: i64,
    /// `agg-mir-bytes` (none until a sample carried it).
    pub mir_bytes: Option<i64>,
    /// `agg-mir-packets`.
    pub mir_packets: Option<i64>,
    /// `agg-sec-mir-bytes`.
    pub sec_mir_bytes: Option<i64>,
    /// `agg-sec-mir-packets`.
    pub sec_mir_packets: Option<i64>,
    /// Start of the flow's life (setup time or first sample), µs.
    pub first_seen: i64,
    /// End of the flow's life (teardown time or last sample), µs.
    pub last_seen: i64,
    /// The mirror reconciliation columns, in the order of [`RECONCILE_COLUMNS`].
    pub reconcile: [Option<i64>; 4],
}

/// The mirror reconciliation columns of the flow records (cumulative, merged like the mirror
/// counters, except `before_mirror_packets`: see [`merge_sample`]).
pub const RECONCILE_COLUMNS: [&str; 4] =
    ["agg_mir_lost_packets", "agg_sec_mir_lost_packets", "before_mirror_packets", "held_dropped_packets"];

/// The counters of one FlowSeriesTable row.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SeriesDiffs {
    /// `bytes`.
    pub bytes: i64,
    /// `packets`.
    pub packets: i64,
    /// `mir-bytes`.
    pub mir_bytes: i64,
    /// `mir-packets`.
    pub mir_packets: i64,
    /// `sec-mir-bytes`.
    pub sec_mir_bytes: i64,
    /// `sec-mir-packets`.
    pub sec_mir_packets: i64,
}

/// Merges a cumulative counter: the largest value seen wins.
fn merge_cumulative(prev: Option<i64>, new: Option<i64>) -> Option<i64> {
    match (prev, new) {
        (Some(p), Some(n)) => Some(p.max(n)),
        (p, n) => p.or(n),
    }
}

/// Merges one flow sample into the flow's aggregates (`prev`: `None` for a flow not stored
/// yet) and gives the new aggregates and the sample's series row counters, by the rules of
/// [`sqlite`]'s module docs: cumulative counters keep the largest value, diff-only samples
/// add up, a copy of a stored sample (cumulative bytes and packets no higher than the
/// aggregates) adds nothing to the series, mirror diffs are the growth of the cumulative
/// mirror counters.
pub fn merge_sample(prev: Option<&FlowAggs>, r: &FlowRecordInput) -> (FlowAggs, SeriesDiffs) {
    let exists = prev.is_some();
    let p = prev.copied().unwrap_or_default();
    let start = r.setup_time.unwrap_or(r.timestamp_us).min(r.timestamp_us);
    let end = r.teardown_time.unwrap_or(r.timestamp_us).max(r.timestamp_us);
    let agg = FlowAggs {
        first_seen: if exists { p.first_seen.min(start) } else { start },
        last_seen: if exists { p.last_seen.max(end) } else { end },
        bytes: match r.bytes {
            Some(b) => p.bytes.max(b),
            None => p.bytes + r.diff_bytes.unwrap_or(0),
        },
        packets: match r.packets {
            Some(n) => p.packets.max(n),
            None => p.packets + r.diff_packets.unwrap_or(0),
        },
        mir_bytes: merge_cumulative(p.mir_bytes, r.mirror_bytes),
        mir_packets: merge_cumulative(p.mir_packets, r.mirror_packets),
        sec_mir_bytes: merge_cumulative(p.sec_mir_bytes, r.sec_mirror_bytes),
        sec_mir_packets: merge_cumulative(p.sec_mir_packets, r.sec_mirror_packets),
        reconcile: [
            merge_cumulative(p.reconcile[0], r.mirror_lost_packets),
            merge_cumulative(p.reconcile[1], r.sec_mirror_lost_packets),
            // Set when mirroring is turned on (it may go down when it is turned on again
            // after copies were made): the latest sample's value, not the largest.
            r.before_mirror_packets.or(p.reconcile[2]),
            merge_cumulative(p.reconcile[3], r.held_dropped_packets),
        ],
    };
    let growth = |new: Option<i64>, old: Option<i64>| new.unwrap_or(0) - old.unwrap_or(0);
    // A copy of a stored sample (see the module docs of `sqlite`): its diffs are counted
    // already.
    let copy = exists && r.bytes.is_some_and(|b| b <= p.bytes) && r.packets.is_some_and(|n| n <= p.packets);
    let (bytes, packets) = if copy {
        (0, 0)
    } else {
        (r.diff_bytes.unwrap_or(agg.bytes - p.bytes), r.diff_packets.unwrap_or(agg.packets - p.packets))
    };
    let diffs = SeriesDiffs {
        bytes,
        packets,
        mir_bytes: growth(agg.mir_bytes, p.mir_bytes),
        mir_packets: growth(agg.mir_packets, p.mir_packets),
        sec_mir_bytes: growth(agg.sec_mir_bytes, p.sec_mir_bytes),
        sec_mir_packets: growth(agg.sec_mir_packets, p.sec_mir_packets),
    };
    (agg, diffs)
}

/// Opens the store the configuration names and returns it with its one writer;
/// `collector_id` names this collector in a shared store.
pub fn open(
    cfg: &crate::config::CollectorConfig,
    collector_id: &str,
) -> Result<(Store, Box<dyn crate::ingest::StoreWriter>), StoreError> {
    match cfg.store {
        crate::config::StoreKind::Sqlite => {
            let (store, writer) = SqliteStore::open(&cfg.data_dir)?;
            Ok((Store::new(store), Box::new(writer)))
        }
        crate::config::StoreKind::Clickhouse => {
            let (store, writer) = clickhouse::open(&cfg.clickhouse(collector_id))?;
            Ok((Store::new(store), Box::new(writer)))
        }
    }
}

/// `collector --init-schema`: makes the store's tables (SQLite: the database file; ClickHouse:
/// the database and its tables), checking the version of what is there. Returns where.
pub fn init_schema(cfg: &crate::config::CollectorConfig) -> Result<String, StoreError> {
    match cfg.store {
        crate::config::StoreKind::Sqlite => Ok(SqliteStore::open(&cfg.data_dir)?.0.location()),
        crate::config::StoreKind::Clickhouse => {
            let ch = cfg.clickhouse("");
            clickhouse::init_schema(&ch)?;
            Ok(format!("{} database {}", ch.url, ch.database))
        }
    }
}

/// Tests that run on every backend: a store of either kind, written through its
/// [`crate::ingest::StoreWriter`] as the ingest thread does.
#[cfg(test)]
pub(crate) mod testing {
    use super::Store;
    use crate::ingest::{IngestMsg, StoreWriter};
    use crate::model::FlowRecordInput;
    use crate::stats::Stats;
    use std::sync::Arc;

    /// Which backend.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Kind {
        /// A fresh SQLite file.
        Sqlite,
        /// A fresh database on the shared local ClickHouse server.
        ClickHouse,
    }

    /// A fresh store with its writer.
    pub struct TestStore {
        pub store: Store,
        writer: Box<dyn StoreWriter>,
        pub stats: Arc<Stats>,
        _dir: Option<tempfile::TempDir>,
    }

    impl TestStore {
        /// `None` (after saying why) where ClickHouse cannot run.
        pub fn open(kind: Kind, name: &str) -> Option<TestStore> {
            let stats = Arc::new(Stats::default());
            Some(match kind {
                Kind::Sqlite => {
                    let dir = tempfile::tempdir().unwrap();
                    let (store, writer) = super::SqliteStore::open(dir.path()).unwrap();
                    TestStore { store: Store::new(store), writer: Box::new(writer), stats, _dir: Some(dir) }
                }
                Kind::ClickHouse => {
                    let cfg = super::clickhouse::local::test_config(name)?;
                    let (store, writer) = super::clickhouse::open(&cfg).unwrap();
                    TestStore { store: Store::new(store), writer: Box::new(writer), stats, _dir: None }
                }
            })
        }

        /// Writes one message (as one batch).
        pub fn write(&mut self, m: IngestMsg) {
            self.writer.write(&[m], &self.stats);
        }

        /// Writes one flow sample.
        pub fn flow(&mut self, r: &FlowRecordInput) {
            self.write(IngestMsg::Flows(vec![r.clone()]));
        }

        /// Makes everything written visible.
        pub fn commit(&mut self) {
            self.writer.commit(&self.stats);
        }
    }

    /// `fn name(kind: Kind)` test bodies, each run as `sqlite::name` and `clickhouse::name`.
    macro_rules! on_both_backends {
        ($($name:ident),* $(,)?) => {
            mod sqlite {
                $( #[test] fn $name() { super::$name($crate::store::testing::Kind::Sqlite) } )*
            }
            mod clickhouse {
                $( #[test] fn $name() { super::$name($crate::store::testing::Kind::ClickHouse) } )*
            }
        };
    }
    pub(crate) use on_both_backends;
}

#[cfg(test)]
mod tests {
    use super::testing::{on_both_backends, Kind, TestStore};
    use crate::ingest::IngestMsg;
    use crate::model::TraceInput;
    use sandesh::{PacketTraceData, PacketTraceStep};
    use std::sync::atomic::Ordering::Relaxed;

    fn step(pkt: u32, time_us: i64, ring: u16, seq: u64, kind: &str) -> PacketTraceStep {
        PacketTraceStep {
            vif: (kind == "egress").then_some(2),
            flow: Some(7),
            protocol: Some(17),
            dport: Some(53),
            src_ip: Some("192.168.1.3".parse().unwrap()),
            ..PacketTraceStep::new(pkt, time_us, seq * 10, ring, seq, kind, format!("{kind} text"))
        }
    }

    fn msg(host: &str, id: u64, project: Option<&str>, steps: Vec<PacketTraceStep>) -> IngestMsg {
        IngestMsg::Traces(TraceInput {
            host: host.into(),
            data: PacketTraceData {
                trace_id: id,
                request: project.map(|_| "aaaaaaaa-0000-4000-8000-000000000001".to_owned()),
                project: project.map(str::to_owned),
                generation: 1,
                agent_ring: 1,
                steps,
                file: "f".into(),
                line: 1,
            },
        })
    }

    fn trace_steps_are_stored_once_with_the_request_of_any_host(kind: Kind) {
        let Some(mut s) = TestStore::open(kind, "traces") else { return };
        // The continuing host's steps arrive first: no request, no project.
        s.write(msg("b", 0xfeed, None, vec![step(1, 500, 0, 0, "marked"), step(1, 501, 0, 1, "egress")]));
        let a = || msg("a", 0xfeed, Some("red"), vec![step(1, 1000, 0, 0, "ingress"), step(1, 1001, 1, 0, "policy")]);
        s.write(a());
        s.commit();
        assert_eq!(s.stats.trace_steps_stored.load(Relaxed), 4);
        // Re-sent after a reconnect: nothing new.
        s.write(a());
        s.write(msg("a", 0x1, None, vec![step(1, 5000, 0, 2, "drop")]));
        s.commit();
        assert_eq!(s.stats.trace_steps_stored.load(Relaxed), 5);
        let r = &s.store;
        let row = r.trace_row(0xfeed).unwrap().unwrap();
        assert_eq!(row.request.as_deref(), Some("aaaaaaaa-0000-4000-8000-000000000001"));
        assert_eq!((row.project.as_deref(), row.first_us, row.last_us), (Some("red"), 500, 1001));
        let steps = r.trace_steps(0xfeed).unwrap();
        assert_eq!(steps.len(), 4);
        assert_eq!(
            steps.iter().map(|s| (s.host.as_str(), s.ring, s.seq)).collect::<Vec<_>>(),
            [("a", 0, 0), ("a", 1, 0), ("b", 0, 0), ("b", 0, 1)],
            "ordered by host, generation, ring, position"
        );
        let policy = steps.iter().find(|s| s.step == "policy").unwrap();
        assert!(policy.agent, "ring 1 is the agent's");
        assert_eq!(
            (policy.host.as_str(), policy.flow, policy.protocol, policy.dport, policy.detail.as_str()),
            ("a", Some(7), Some(17), Some(53), "policy text")
        );
        assert_eq!(policy.src_ip.as_deref(), Some("192.168.1.3"));
        assert_eq!((policy.tsc, policy.time_us, policy.pkt, policy.generation), (0, 1001, 1, 1));
        let egress = steps.iter().find(|s| s.step == "egress").unwrap();
        assert_eq!((egress.vif, egress.agent, egress.dst_ip.as_deref()), (Some(2), false, None));
        // Windows, request and project filters.
        assert_eq!(r.trace_rows(i64::MIN, i64::MAX, None, None, 100).unwrap().len(), 2);
        assert_eq!(r.trace_rows(1002, i64::MAX, None, None, 100).unwrap()[0].trace_id, 0x1);
        assert_eq!(r.trace_rows(0, 600, None, None, 100).unwrap()[0].trace_id, 0xfeed);
        assert_eq!(r.trace_rows(i64::MIN, i64::MAX, None, Some("red"), 100).unwrap().len(), 1);
        assert!(r.trace_rows(i64::MIN, i64::MAX, None, Some("blue"), 100).unwrap().is_empty());
        let by_req = r.trace_rows(i64::MIN, i64::MAX, Some("aaaaaaaa-0000-4000-8000-000000000001"), None, 100).unwrap();
        assert_eq!(by_req.iter().map(|t| t.trace_id).collect::<Vec<_>>(), [0xfeed]);
        let limited = r.trace_rows(i64::MIN, i64::MAX, None, None, 1).unwrap();
        assert_eq!(limited.iter().map(|t| t.trace_id).collect::<Vec<_>>(), [0xfeed], "oldest first, then limit");
        assert!(r.trace_row(0x2).unwrap().is_none());
        assert!(r.trace_steps(0x2).unwrap().is_empty());
    }

    on_both_backends!(trace_steps_are_stored_once_with_the_request_of_any_host);
}
