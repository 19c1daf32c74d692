//! The SQLite backend (the embedded default): one database (WAL mode) in the configured data
//! directory.
//!
//! Tables:
//!
//! * `flow_record`: FlowRecordTable, one row per flow UUID. Counters are aggregated over the
//!   samples of the flow: `bytes`, `packets` and the four mirror counters arrive cumulative, so
//!   the stored aggregate is the largest value seen (a late, older sample cannot lower it); a
//!   sample that carries only `diff_bytes`/`diff_packets` adds them. `first_seen`/`last_seen`
//!   span the flow's life (setup time or first sample, teardown time or last sample) and decide
//!   which queries' time windows the flow falls into.
//! * `flow_series`: FlowSeriesTable, one row per sample with the sample's diffs: `bytes` and
//!   `packets` from `diff_bytes`/`diff_packets` (or the growth of the cumulative counters when
//!   the sample carries no diffs), the mirror diffs from the growth of the cumulative mirror
//!   counters. A sample of a known flow whose cumulative `bytes` and `packets` are both no
//!   higher than the flow's aggregates adds nothing to them, so its series row has zero
//!   `bytes`/`packets` whatever its diffs say: it is a copy of a sample stored already (a
//!   generator resending after a reconnect, a restarted vRouter exporter; flow UUIDs are
//!   stable across its restarts) whose diffs were counted with it. A sample that does move
//!   the counters keeps its diffs as sent, even above the growth: sampled records carry
//!   scaled-up diffs (an estimate), which the collector cannot tell from exact ones. What a
//!   series sum can still miss is a sample that never arrived (a generator killed with
//!   records in its buffer); `flow_record` stays exact then, as the next sample carries the
//!   cumulative counters.
//! * `trace`: one row per trace id: its request and project (from whichever vRouter knew
//!   them: the one that continued a marked trace does not) and the time span of its steps.
//! * `trace_step`: one row per trace step, keyed by (trace id, vRouter, region generation,
//!   ring, position): a step re-sent after a reconnect is stored once.
//! * `uve`: one row per (table, object name, generator, struct type, attribute), the attribute
//!   kept as the typed tree it arrived as (JSON of [`UveField`]); the pseudo-attribute `__T`
//!   holds the struct's latest timestamp.
//!
//! Exactly one [`SqliteWriter`] (the ingest thread) writes; readers ([`SqliteStore::reader`]) run queries
//! concurrently, which WAL allows without blocking the writer.

use super::{
    merge_sample, Backend, FlowAggs, StoreError, StoredAttr, StoredStep, TraceRow, RECONCILE_COLUMNS, TS_ATTR,
};
use crate::ingest::{IngestMsg, StoreWriter};
use crate::model::{FlowRecordInput, GeneratorKey, TraceInput, UveField, UveUpdate};
use crate::query::{CompiledQuery, Dialect, Param};
use crate::stats::Stats;
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "collector.sqlite3";
/// Schema version written to `meta`. Versions 1 (flows and UVEs only) and 2 (no mirror
/// reconciliation columns) are upgraded in place: the trace tables are created, the columns
/// of [`super::RECONCILE_COLUMNS`] added (empty for the records stored before), and the version is
/// bumped; any other version is refused.
pub const SCHEMA_VERSION: i64 = 3;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS flow_record (
    uuid TEXT PRIMARY KEY,
    vrouter TEXT NOT NULL,
    sourcevn TEXT NOT NULL,
    sourceip TEXT NOT NULL,
    destvn TEXT NOT NULL,
    destip TEXT NOT NULL,
    protocol INTEGER NOT NULL,
    sport INTEGER NOT NULL,
    dport INTEGER NOT NULL,
    direction_ing INTEGER NOT NULL,
    setup_time INTEGER,
    teardown_time INTEGER,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    agg_bytes INTEGER NOT NULL,
    agg_packets INTEGER NOT NULL,
    agg_mir_bytes INTEGER,
    agg_mir_packets INTEGER,
    agg_sec_mir_bytes INTEGER,
    agg_sec_mir_packets INTEGER,
    analyzer_name TEXT,
    sec_analyzer_name TEXT,
    agg_mir_lost_packets INTEGER,
    agg_sec_mir_lost_packets INTEGER,
    before_mirror_packets INTEGER,
    held_dropped_packets INTEGER,
    action TEXT,
    sg_rule_uuid TEXT,
    nw_ace_uuid TEXT,
    vrouter_ip TEXT,
    other_vrouter_ip TEXT,
    underlay_proto INTEGER,
    underlay_source_port INTEGER,
    vmi TEXT,
    drop_reason TEXT,
    reverse_uuid TEXT,
    tcp_flags INTEGER,
    vm TEXT,
    forward_flow INTEGER
);
CREATE INDEX IF NOT EXISTS flow_record_last ON flow_record (last_seen);
CREATE INDEX IF NOT EXISTS flow_record_first ON flow_record (first_seen);
CREATE TABLE IF NOT EXISTS flow_series (
    T INTEGER NOT NULL,
    uuid TEXT NOT NULL,
    vrouter TEXT NOT NULL,
    sourcevn TEXT NOT NULL,
    sourceip TEXT NOT NULL,
    destvn TEXT NOT NULL,
    destip TEXT NOT NULL,
    protocol INTEGER NOT NULL,
    sport INTEGER NOT NULL,
    dport INTEGER NOT NULL,
    direction_ing INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    packets INTEGER NOT NULL,
    mir_bytes INTEGER NOT NULL,
    mir_packets INTEGER NOT NULL,
    sec_mir_bytes INTEGER NOT NULL,
    sec_mir_packets INTEGER NOT NULL,
    analyzer_name TEXT,
    sec_analyzer_name TEXT,
    action TEXT
);
CREATE INDEX IF NOT EXISTS flow_series_t ON flow_series (T);
CREATE TABLE IF NOT EXISTS uve (
    tbl TEXT NOT NULL,
    name TEXT NOT NULL,
    generator TEXT NOT NULL,
    struct_type TEXT NOT NULL,
    attr TEXT NOT NULL,
    value TEXT,
    ts INTEGER NOT NULL,
    PRIMARY KEY (tbl, name, generator, struct_type, attr)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS uve_generator ON uve (generator);
CREATE TABLE IF NOT EXISTS trace (
    trace_id INTEGER PRIMARY KEY,
    request TEXT,
    project TEXT,
    first_us INTEGER NOT NULL,
    last_us INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS trace_last ON trace (last_us);
CREATE INDEX IF NOT EXISTS trace_first ON trace (first_us);
CREATE TABLE IF NOT EXISTS trace_step (
    trace_id INTEGER NOT NULL,
    host TEXT NOT NULL,
    generation INTEGER NOT NULL,
    ring INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    agent INTEGER NOT NULL,
    pkt INTEGER NOT NULL,
    time_us INTEGER NOT NULL,
    tsc INTEGER NOT NULL,
    step TEXT NOT NULL,
    detail TEXT NOT NULL,
    vif INTEGER,
    drop_reason TEXT,
    flow INTEGER,
    action TEXT,
    rule TEXT,
    protocol INTEGER,
    sport INTEGER,
    dport INTEGER,
    vrf INTEGER,
    src_ip TEXT,
    dst_ip TEXT,
    PRIMARY KEY (trace_id, host, generation, ring, seq)
) WITHOUT ROWID;
";

/// The database: its location and a small pool of read connections.
#[derive(Clone)]
pub struct SqliteStore {
    path: Arc<PathBuf>,
    readers: Arc<Mutex<Vec<Connection>>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish()
    }
}

fn sql_err(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError::Sqlite { path: path.to_owned(), source }
}

impl SqliteStore {
    /// Opens (creating if needed) the database in `data_dir` and returns it with its one
    /// writer.
    pub fn open(data_dir: &Path) -> Result<(SqliteStore, SqliteWriter), StoreError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|source| StoreError::DataDir { path: data_dir.to_owned(), source })?;
        let path = data_dir.join(DB_FILE);
        let path2 = path.clone();
        let e = sql_err(&path2);
        let conn = Connection::open(&path).map_err(&e)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(&e)?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).map_err(&e)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Sqlite {
                path,
                source: rusqlite::Error::InvalidParameterName(format!("journal_mode is {mode}, not wal")),
            });
        }
        // NORMAL in WAL mode: a commit survives a crash of the process (the WAL is written
        // before the commit returns); only an OS crash or power loss can lose the last commits.
        // 64 MiB page cache for the writer: index updates on random flow UUIDs stay in memory.
        conn.execute_batch("PRAGMA synchronous=NORMAL; PRAGMA cache_size=-65536;").map_err(&e)?;
        conn.execute_batch(SCHEMA).map_err(&e)?;
        let version: Option<i64> =
            conn.query_row("SELECT v FROM meta WHERE k = 'schema_version'", [], |r| r.get(0)).optional().map_err(&e)?;
        match version {
            None => {
                conn.execute("INSERT INTO meta (k, v) VALUES ('schema_version', ?1)", [SCHEMA_VERSION]).map_err(&e)?;
            }
            Some(SCHEMA_VERSION) => {}
            // Version 1 had no trace tables (SCHEMA just created them), versions 1 and 2 no
            // reconciliation columns.
            Some(1 | 2) => {
                let mut st = conn.prepare("SELECT name FROM pragma_table_info('flow_record')").map_err(&e)?;
                let have: Vec<String> =
                    st.query_map([], |r| r.get(0)).map_err(&e)?.collect::<Result<_, _>>().map_err(&e)?;
                drop(st);
                for c in RECONCILE_COLUMNS.iter().filter(|c| !have.iter().any(|h| h == *c)) {
                    conn.execute(&format!("ALTER TABLE flow_record ADD COLUMN {c} INTEGER"), []).map_err(&e)?;
                }
                conn.execute("UPDATE meta SET v = ?1 WHERE k = 'schema_version'", [SCHEMA_VERSION]).map_err(&e)?;
            }
            Some(found) => return Err(StoreError::SchemaVersion { path, found }),
        }
        let store = SqliteStore { path: Arc::new(path), readers: Arc::default() };
        Ok((store.clone(), SqliteWriter { conn, store }))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A read connection from the pool (returned to it when dropped).
    pub fn reader(&self) -> Result<SqliteReader, StoreError> {
        let pooled = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match pooled {
            Some(c) => c,
            None => {
                let e = sql_err(&self.path);
                let conn = Connection::open_with_flags(
                    &*self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(&e)?;
                conn.busy_timeout(Duration::from_secs(10)).map_err(&e)?;
                register_functions(&conn).map_err(&e)?;
                conn
            }
        };
        Ok(SqliteReader { conn: Some(conn), store: self.clone() })
    }
}

/// A pooled read connection.
pub struct SqliteReader {
    conn: Option<Connection>,
    store: SqliteStore,
}

impl SqliteReader {
    /// The connection.
    pub fn conn(&self) -> &Connection {
        self.conn.as_ref().expect("connection present until drop")
    }

    /// Wraps a SQLite error with the database path.
    pub fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite { path: self.store.path.as_ref().clone(), source }
    }

    /// Distinct object names of a UVE table, sorted.
    pub fn uve_names(&self, table: &str) -> Result<Vec<String>, StoreError> {
        let mut st = self
            .conn()
            .prepare_cached("SELECT DISTINCT name FROM uve WHERE tbl = ?1 ORDER BY name")
            .map_err(|e| self.err(e))?;
        let rows = st.query_map([table], |r| r.get(0)).map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Every stored attribute of one UVE object, ordered by struct type, attribute, generator.
    pub fn uve_attrs(&self, table: &str, name: &str) -> Result<Vec<StoredAttr>, StoreError> {
        let mut st = self
            .conn()
            .prepare_cached(
                "SELECT generator, struct_type, attr, value, ts FROM uve \
                 WHERE tbl = ?1 AND name = ?2 ORDER BY struct_type, attr, generator",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([table, name], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (generator, struct_type, attr, value, ts) = row.map_err(|e| self.err(e))?;
            let field = match value {
                None => None,
                Some(v) => Some(serde_json::from_str::<UveField>(&v).map_err(|e| StoreError::CorruptUve {
                    path: self.store.path.display().to_string(),
                    attr: attr.clone(),
                    message: e.to_string(),
                })?),
            };
            out.push(StoredAttr { generator, struct_type, attr, field, ts });
        }
        Ok(out)
    }

    /// Traces whose time span meets [`start_us`, `end_us`], optionally of one request and
    /// (`project` = `Some`) of one project only, oldest first, at most `limit`.
    pub fn trace_rows(
        &self,
        start_us: i64,
        end_us: i64,
        request: Option<&str>,
        project: Option<&str>,
        limit: usize,
    ) -> Result<Vec<TraceRow>, StoreError> {
        let mut st = self
            .conn()
            .prepare_cached(
                "SELECT trace_id, request, project, first_us, last_us FROM trace \
                 WHERE last_us >= ?1 AND first_us <= ?2 AND (?3 IS NULL OR request = ?3) \
                 AND (?4 IS NULL OR project = ?4) ORDER BY first_us, trace_id LIMIT ?5",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map(params![start_us, end_us, request, project, limit as i64], trace_row_from)
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// One trace, if stored.
    pub fn trace_row(&self, trace_id: u64) -> Result<Option<TraceRow>, StoreError> {
        self.conn()
            .prepare_cached("SELECT trace_id, request, project, first_us, last_us FROM trace WHERE trace_id = ?1")
            .and_then(|mut st| st.query_row([trace_id as i64], trace_row_from).optional())
            .map_err(|e| self.err(e))
    }

    /// Every stored step of a trace, in storage order (see [`crate::trace::order_steps`]).
    pub fn trace_steps(&self, trace_id: u64) -> Result<Vec<StoredStep>, StoreError> {
        let mut st = self
            .conn()
            .prepare_cached(
                "SELECT host, generation, ring, seq, agent, pkt, time_us, tsc, step, detail, vif, drop_reason, \
                 flow, action, rule, protocol, sport, dport, vrf, src_ip, dst_ip FROM trace_step \
                 WHERE trace_id = ?1",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([trace_id as i64], |r| {
                Ok(StoredStep {
                    host: r.get(0)?,
                    generation: r.get::<_, i64>(1)? as u64,
                    ring: r.get(2)?,
                    seq: r.get::<_, i64>(3)? as u64,
                    agent: r.get(4)?,
                    pkt: r.get(5)?,
                    time_us: r.get(6)?,
                    tsc: r.get::<_, i64>(7)? as u64,
                    step: r.get(8)?,
                    detail: r.get(9)?,
                    vif: r.get(10)?,
                    drop_reason: r.get(11)?,
                    flow: r.get(12)?,
                    action: r.get(13)?,
                    rule: r.get(14)?,
                    protocol: r.get(15)?,
                    sport: r.get(16)?,
                    dport: r.get(17)?,
                    vrf: r.get(18)?,
                    src_ip: r.get(19)?,
                    dst_ip: r.get(20)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Number of rows in FlowRecordTable and FlowSeriesTable.
    pub fn flow_counts(&self) -> Result<(u64, u64), StoreError> {
        let c = self.conn();
        let r: i64 = c.query_row("SELECT count(*) FROM flow_record", [], |r| r.get(0)).map_err(|e| self.err(e))?;
        let s: i64 = c.query_row("SELECT count(*) FROM flow_series", [], |r| r.get(0)).map_err(|e| self.err(e))?;
        Ok((r as u64, s as u64))
    }
}

impl Drop for SqliteReader {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            let mut pool = self.store.readers.lock().unwrap_or_else(|p| p.into_inner());
            if pool.len() < 8 {
                pool.push(c);
            }
        }
    }
}

fn trace_row_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<TraceRow> {
    Ok(TraceRow {
        trace_id: r.get::<_, i64>(0)? as u64,
        request: r.get(1)?,
        project: r.get(2)?,
        first_us: r.get(3)?,
        last_us: r.get(4)?,
    })
}

/// Registers the SQL functions queries use (`regexp(pattern, text)`, Rust's `regex`
/// syntax) on a connection.
pub fn register_functions(conn: &Connection) -> rusqlite::Result<()> {
    use regex::Regex;
    use rusqlite::functions::FunctionFlags;
    conn.create_scalar_function("regexp", 2, FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC, |ctx| {
        let re = ctx.get_or_create_aux(0, |vr| -> Result<Regex, Box<dyn std::error::Error + Send + Sync>> {
            Ok(Regex::new(vr.as_str()?)?)
        })?;
        Ok(match ctx.get_raw(1) {
            ValueRef::Text(t) => {
                re.is_match(std::str::from_utf8(t).map_err(|e| rusqlite::Error::UserFunctionError(e.into()))?)
            }
            ValueRef::Null => false,
            ValueRef::Integer(n) => re.is_match(&n.to_string()),
            _ => false,
        })
    })
}

/// SQLite's SQL: `?` placeholders with bound values, the tables as they are (one row per flow
/// in `flow_record`).
#[derive(Debug)]
pub struct SqliteDialect;

impl Dialect for SqliteDialect {
    fn bind(&self, v: Param, params: &mut Vec<Param>) -> String {
        params.push(v);
        "?".into()
    }
    fn source(&self, src: &crate::query::Source<'_>, params: &mut Vec<Param>) -> (String, String) {
        use crate::query::Table;
        match src.table {
            Table::FlowRecord => {
                let e = self.bind(Param::Int(src.end_us), params);
                let s = self.bind(Param::Int(src.start_us), params);
                ("flow_record".into(), format!("first_seen <= {e} AND last_seen >= {s}"))
            }
            Table::FlowSeries => {
                let s = self.bind(Param::Int(src.start_us), params);
                let e = self.bind(Param::Int(src.end_us), params);
                ("flow_series".into(), format!("T >= {s} AND T <= {e}"))
            }
        }
    }
    fn t_bucket(&self, granularity_us: u64) -> String {
        format!("((T / {granularity_us}) * {granularity_us})")
    }
    fn sum(&self, expr: &str) -> String {
        format!("SUM({expr})")
    }
    fn prefix(&self, expr: &str, prefix: &str, params: &mut Vec<Param>) -> String {
        // Character length: substr counts characters of TEXT values.
        let n = self.bind(Param::Int(prefix.chars().count() as i64), params);
        let p = self.bind(Param::Text(prefix.to_owned()), params);
        format!("substr({expr}, 1, {n}) = {p}")
    }
    fn contains(&self, expr: &str, needle: &str, params: &mut Vec<Param>) -> String {
        format!("instr({expr}, {}) > 0", self.bind(Param::Text(needle.to_owned()), params))
    }
    fn regex(&self, expr: &str, pattern: &str, params: &mut Vec<Param>) -> String {
        format!("regexp({}, {expr})", self.bind(Param::Text(pattern.to_owned()), params))
    }
    fn order_key(&self, expr: &str, descending: bool) -> String {
        format!("{expr} {}", if descending { "DESC" } else { "ASC" })
    }
}

impl Backend for SqliteStore {
    fn location(&self) -> String {
        self.path.display().to_string()
    }
    fn dialect(&self) -> &'static dyn Dialect {
        &SqliteDialect
    }
    fn fetch(&self, q: &CompiledQuery) -> Result<Vec<Vec<Value>>, StoreError> {
        let reader = self.reader()?;
        let conn = reader.conn();
        let mut st = conn.prepare_cached(&q.sql).map_err(|e| reader.err(e))?;
        let params = q.params.iter().map(|p| match p {
            Param::Int(n) => SqlValue::Integer(*n),
            Param::Text(t) => SqlValue::Text(t.clone()),
        });
        let mut rows = st.query(rusqlite::params_from_iter(params)).map_err(|e| reader.err(e))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(|e| reader.err(e))? {
            let mut values = Vec::with_capacity(q.fields.len());
            for k in 0..q.fields.len() {
                values.push(match row.get_ref(k).map_err(|e| reader.err(e))? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(n) => Value::from(n),
                    ValueRef::Real(x) => Value::from(x),
                    ValueRef::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(_) => Value::Null,
                });
            }
            out.push(values);
        }
        Ok(out)
    }
    fn uve_names(&self, table: &str) -> Result<Vec<String>, StoreError> {
        self.reader()?.uve_names(table)
    }
    fn uve_attrs(&self, table: &str, name: &str) -> Result<Vec<StoredAttr>, StoreError> {
        self.reader()?.uve_attrs(table, name)
    }
    fn trace_rows(
        &self,
        start_us: i64,
        end_us: i64,
        request: Option<&str>,
        project: Option<&str>,
        limit: usize,
    ) -> Result<Vec<TraceRow>, StoreError> {
        self.reader()?.trace_rows(start_us, end_us, request, project, limit)
    }
    fn trace_row(&self, trace_id: u64) -> Result<Option<TraceRow>, StoreError> {
        self.reader()?.trace_row(trace_id)
    }
    fn trace_steps(&self, trace_id: u64) -> Result<Vec<StoredStep>, StoreError> {
        self.reader()?.trace_steps(trace_id)
    }
    fn flow_counts(&self) -> Result<(u64, u64), StoreError> {
        self.reader()?.flow_counts()
    }
    fn delete_trace(&self, trace_id: u64) -> Result<(), StoreError> {
        // A write connection of its own: SQLite serialises it with the writer thread's
        // transactions (busy timeout).
        let e = sql_err(&self.path);
        let mut conn = Connection::open(&*self.path).map_err(&e)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(&e)?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(&e)?;
        tx.execute("DELETE FROM trace_step WHERE trace_id = ?1", [trace_id as i64]).map_err(&e)?;
        tx.execute("DELETE FROM trace WHERE trace_id = ?1", [trace_id as i64]).map_err(&e)?;
        tx.commit().map_err(&e)
    }
}

/// The single writer of the database.
pub struct SqliteWriter {
    conn: Connection,
    store: SqliteStore,
}

impl SqliteWriter {
    /// The store this writer belongs to.
    pub fn store(&self) -> &SqliteStore {
        &self.store
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite { path: self.store.path.as_ref().clone(), source }
    }

    /// Runs `f` in one transaction (committed if `f` succeeds).
    pub fn transaction<T>(&mut self, f: impl FnOnce(&mut Tx<'_>) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let path = self.store.path.clone();
        let tx = self
            .conn
            // IMMEDIATE: take the write lock at BEGIN, where SQLite honours the busy timeout
            // (a deferred transaction that read first gets SQLITE_BUSY at once on upgrade).
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|source| StoreError::Sqlite { path: path.as_ref().clone(), source })?;
        let mut t = Tx { tx, path };
        let out = f(&mut t)?;
        let path = t.path.clone();
        t.tx.commit().map_err(|source| StoreError::Sqlite { path: path.as_ref().clone(), source })?;
        Ok(out)
    }

    /// Applies one flow sample in its own transaction.
    pub fn apply_flow_log(&mut self, rec: &FlowRecordInput) -> Result<(), StoreError> {
        self.transaction(|t| t.apply_flow_log(rec))
    }

    /// Applies one UVE update in its own transaction.
    pub fn set_uve(&mut self, generator: &GeneratorKey, update: &UveUpdate) -> Result<(), StoreError> {
        self.transaction(|t| t.set_uve(generator, update))
    }

    /// Removes every UVE of a generator; returns the number of rows removed.
    pub fn delete_generator_uves(&mut self, generator: &GeneratorKey) -> Result<usize, StoreError> {
        self.transaction(|t| t.delete_generator_uves(generator))
    }

    /// Removes flow records whose last sample is older than `horizon_us` and series rows with
    /// `T` older than it. Returns (records, series rows) removed.
    pub fn purge_flows_before(&mut self, horizon_us: i64) -> Result<(usize, usize), StoreError> {
        self.transaction(|t| t.purge_flows_before(horizon_us))
    }

    /// Removes every UVE (at startup: no generator is connected yet, and each resynchronises
    /// its UVEs when it connects).
    pub fn clear_uves(&mut self) -> Result<usize, StoreError> {
        self.conn.execute("DELETE FROM uve", []).map_err(|e| self.err(e))
    }
}

/// Stores one message in the open transaction, counting what it stored.
fn apply(t: &mut Tx<'_>, msg: &IngestMsg, stats: &Stats) -> Result<(), StoreError> {
    match msg {
        IngestMsg::Flows(recs) => {
            for r in recs {
                t.apply_flow_log(r)?;
            }
            stats.flow_records_stored.fetch_add(recs.len() as u64, Relaxed);
        }
        IngestMsg::Uve(g, u) => {
            t.set_uve(g, u)?;
            stats.uve_updates_stored.fetch_add(1, Relaxed);
        }
        IngestMsg::DeleteGenerator(g) | IngestMsg::GeneratorEnded(g) => {
            let n = t.delete_generator_uves(g)?;
            stats.uve_rows_removed.fetch_add(n as u64, Relaxed);
        }
        IngestMsg::Traces(tr) => {
            let n = t.add_trace_steps(tr)?;
            stats.trace_steps_stored.fetch_add(n as u64, Relaxed);
        }
        IngestMsg::Purge(horizon) => {
            let (r, s) = t.purge_flows_before(*horizon)?;
            stats.flow_records_purged.fetch_add(r as u64, Relaxed);
            stats.flow_series_purged.fetch_add(s as u64, Relaxed);
            let n = t.purge_traces_before(*horizon)?;
            stats.traces_purged.fetch_add(n as u64, Relaxed);
        }
        IngestMsg::Flush(_) => {}
    }
    Ok(())
}

/// The whole batch in one transaction; when that fails it is rolled back and the messages
/// are applied one by one, each in its own transaction, so one bad message does not lose the
/// others (what still fails is counted lost).
impl StoreWriter for SqliteWriter {
    fn write(&mut self, batch: &[IngestMsg], stats: &Arc<Stats>) {
        let result = self.transaction(|t| {
            for m in batch {
                apply(t, m, stats)?;
            }
            Ok(())
        });
        let Err(e) = result else { return };
        stats.store_errors.fetch_add(1, Relaxed);
        logging::rate_limited!(
            WARN,
            "collector: storing a batch of {} messages failed: {e}; retrying one by one",
            batch.len()
        );
        for m in batch {
            if let Err(e) = self.transaction(|t| apply(t, m, stats)) {
                stats.store_errors.fetch_add(1, Relaxed);
                if let IngestMsg::Flows(r) = m {
                    stats.flow_records_lost.fetch_add(r.len() as u64, Relaxed);
                }
                if let IngestMsg::Traces(t) = m {
                    stats.trace_steps_lost.fetch_add(t.data.steps.len() as u64, Relaxed);
                }
                logging::rate_limited!(WARN, "collector: storing a message failed: {e}");
            }
        }
    }

    fn clear_uves(&mut self) -> Result<usize, StoreError> {
        SqliteWriter::clear_uves(self)
    }
}

/// A write transaction.
pub struct Tx<'c> {
    tx: rusqlite::Transaction<'c>,
    path: Arc<PathBuf>,
}

impl Tx<'_> {
    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite { path: self.path.as_ref().clone(), source }
    }

    /// Merges one flow sample into FlowRecordTable and appends its diffs to FlowSeriesTable.
    pub fn apply_flow_log(&mut self, r: &FlowRecordInput) -> Result<(), StoreError> {
        let prev: Option<FlowAggs> = self
            .tx
            .prepare_cached(
                "SELECT agg_bytes, agg_packets, agg_mir_bytes, agg_mir_packets, agg_sec_mir_bytes, \
                 agg_sec_mir_packets, first_seen, last_seen, agg_mir_lost_packets, agg_sec_mir_lost_packets, \
                 before_mirror_packets, held_dropped_packets FROM flow_record WHERE uuid = ?1",
            )
            .and_then(|mut st| {
                st.query_row([&r.flowuuid], |row| {
                    Ok(FlowAggs {
                        bytes: row.get(0)?,
                        packets: row.get(1)?,
                        mir_bytes: row.get(2)?,
                        mir_packets: row.get(3)?,
                        sec_mir_bytes: row.get(4)?,
                        sec_mir_packets: row.get(5)?,
                        first_seen: row.get(6)?,
                        last_seen: row.get(7)?,
                        reconcile: [row.get(8)?, row.get(9)?, row.get(10)?, row.get(11)?],
                    })
                })
                .optional()
            })
            .map_err(|e| self.err(e))?;
        let (agg, d) = merge_sample(prev.as_ref(), r);

        // Identity columns and descriptive fields: the latest sample's values, keeping what an
        // earlier sample set when this one leaves an optional field out.
        self.tx
            .prepare_cached(
                "INSERT INTO flow_record (uuid, vrouter, sourcevn, sourceip, destvn, destip, protocol, \
                 sport, dport, direction_ing, setup_time, teardown_time, first_seen, last_seen, \
                 agg_bytes, agg_packets, agg_mir_bytes, agg_mir_packets, agg_sec_mir_bytes, \
                 agg_sec_mir_packets, analyzer_name, sec_analyzer_name, action, sg_rule_uuid, \
                 nw_ace_uuid, vrouter_ip, other_vrouter_ip, underlay_proto, underlay_source_port, vmi, \
                 drop_reason, reverse_uuid, tcp_flags, vm, forward_flow, agg_mir_lost_packets, \
                 agg_sec_mir_lost_packets, before_mirror_packets, held_dropped_packets) VALUES (?1, ?2, \
                 ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, \
                 ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32, ?33, ?34, ?35, ?36, ?37, ?38, ?39) \
                 ON CONFLICT (uuid) DO UPDATE SET vrouter = excluded.vrouter, \
                 sourcevn = excluded.sourcevn, sourceip = excluded.sourceip, destvn = excluded.destvn, \
                 destip = excluded.destip, protocol = excluded.protocol, sport = excluded.sport, \
                 dport = excluded.dport, direction_ing = excluded.direction_ing, \
                 setup_time = coalesce(excluded.setup_time, setup_time), \
                 teardown_time = coalesce(excluded.teardown_time, teardown_time), \
                 first_seen = excluded.first_seen, last_seen = excluded.last_seen, \
                 agg_bytes = excluded.agg_bytes, agg_packets = excluded.agg_packets, \
                 agg_mir_bytes = excluded.agg_mir_bytes, agg_mir_packets = excluded.agg_mir_packets, \
                 agg_sec_mir_bytes = excluded.agg_sec_mir_bytes, \
                 agg_sec_mir_packets = excluded.agg_sec_mir_packets, \
                 analyzer_name = coalesce(excluded.analyzer_name, analyzer_name), \
                 sec_analyzer_name = coalesce(excluded.sec_analyzer_name, sec_analyzer_name), \
                 action = coalesce(excluded.action, action), \
                 sg_rule_uuid = coalesce(excluded.sg_rule_uuid, sg_rule_uuid), \
                 nw_ace_uuid = coalesce(excluded.nw_ace_uuid, nw_ace_uuid), \
                 vrouter_ip = coalesce(excluded.vrouter_ip, vrouter_ip), \
                 other_vrouter_ip = coalesce(excluded.other_vrouter_ip, other_vrouter_ip), \
                 underlay_proto = coalesce(excluded.underlay_proto, underlay_proto), \
                 underlay_source_port = coalesce(excluded.underlay_source_port, underlay_source_port), \
                 vmi = coalesce(excluded.vmi, vmi), drop_reason = coalesce(excluded.drop_reason, drop_reason), \
                 reverse_uuid = coalesce(excluded.reverse_uuid, reverse_uuid), \
                 tcp_flags = coalesce(excluded.tcp_flags, tcp_flags), vm = coalesce(excluded.vm, vm), \
                 forward_flow = coalesce(excluded.forward_flow, forward_flow), \
                 agg_mir_lost_packets = excluded.agg_mir_lost_packets, \
                 agg_sec_mir_lost_packets = excluded.agg_sec_mir_lost_packets, \
                 before_mirror_packets = excluded.before_mirror_packets, \
                 held_dropped_packets = excluded.held_dropped_packets",
            )
            .and_then(|mut st| {
                st.execute(params![
                    r.flowuuid,
                    r.vrouter,
                    r.sourcevn,
                    r.sourceip,
                    r.destvn,
                    r.destip,
                    r.protocol_u8(),
                    r.sport_u16(),
                    r.dport_u16(),
                    r.direction_ing,
                    r.setup_time,
                    r.teardown_time,
                    agg.first_seen,
                    agg.last_seen,
                    agg.bytes,
                    agg.packets,
                    agg.mir_bytes,
                    agg.mir_packets,
                    agg.sec_mir_bytes,
                    agg.sec_mir_packets,
                    r.analyzer_name,
                    r.sec_analyzer_name,
                    r.action,
                    r.sg_rule_uuid,
                    r.nw_ace_uuid,
                    r.vrouter_ip,
                    r.other_vrouter_ip,
                    r.underlay_proto,
                    r.underlay_source_port,
                    r.vmi_uuid,
                    r.drop_reason,
                    r.reverse_uuid,
                    r.tcp_flags,
                    r.vm,
                    r.forward_flow,
                    agg.reconcile[0],
                    agg.reconcile[1],
                    agg.reconcile[2],
                    agg.reconcile[3],
                ])
            })
            .map_err(|e| self.err(e))?;
        self.tx
            .prepare_cached(
                "INSERT INTO flow_series (T, uuid, vrouter, sourcevn, sourceip, destvn, destip, protocol, \
                 sport, dport, direction_ing, bytes, packets, mir_bytes, mir_packets, sec_mir_bytes, \
                 sec_mir_packets, analyzer_name, sec_analyzer_name, action) VALUES (?1, ?2, ?3, ?4, ?5, \
                 ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    r.timestamp_us,
                    r.flowuuid,
                    r.vrouter,
                    r.sourcevn,
                    r.sourceip,
                    r.destvn,
                    r.destip,
                    r.protocol_u8(),
                    r.sport_u16(),
                    r.dport_u16(),
                    r.direction_ing,
                    d.bytes,
                    d.packets,
                    d.mir_bytes,
                    d.mir_packets,
                    d.sec_mir_bytes,
                    d.sec_mir_packets,
                    r.analyzer_name,
                    r.sec_analyzer_name,
                    r.action,
                ])
            })
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Stores a UVE update of `generator`: each attribute replaces the generator's previous
    /// value of it (partial updates keep the others); `deleted` removes the generator's whole
    /// struct for that object.
    pub fn set_uve(&mut self, generator: &GeneratorKey, u: &UveUpdate) -> Result<(), StoreError> {
        let gen = generator.to_string();
        if u.deleted {
            self.tx
                .prepare_cached("DELETE FROM uve WHERE tbl = ?1 AND name = ?2 AND generator = ?3 AND struct_type = ?4")
                .and_then(|mut st| st.execute(params![u.table, u.name, gen, u.struct_type]))
                .map_err(|e| self.err(e))?;
            return Ok(());
        }
        let mut st = self
            .tx
            .prepare_cached(
                "INSERT INTO uve (tbl, name, generator, struct_type, attr, value, ts) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (tbl, name, generator, struct_type, attr) \
                 DO UPDATE SET value = excluded.value, ts = excluded.ts",
            )
            .map_err(|e| StoreError::Sqlite { path: self.path.as_ref().clone(), source: e })?;
        let path = &self.path;
        let e = |source| StoreError::Sqlite { path: path.as_ref().clone(), source };
        st.execute(params![u.table, u.name, gen, u.struct_type, TS_ATTR, None::<String>, u.timestamp_us]).map_err(e)?;
        for a in &u.attrs {
            let json = serde_json::to_string(a).expect("UveField serialises");
            st.execute(params![u.table, u.name, gen, u.struct_type, a.name, json, u.timestamp_us]).map_err(e)?;
        }
        Ok(())
    }

    /// Removes every UVE attribute `generator` set.
    pub fn delete_generator_uves(&mut self, generator: &GeneratorKey) -> Result<usize, StoreError> {
        self.tx
            .prepare_cached("DELETE FROM uve WHERE generator = ?1")
            .and_then(|mut st| st.execute([generator.to_string()]))
            .map_err(|e| self.err(e))
    }

    /// Stores the steps of one trace message (a step already stored is ignored) and updates
    /// the trace's request, project and time span. Returns the number of new steps.
    pub fn add_trace_steps(&mut self, t: &TraceInput) -> Result<usize, StoreError> {
        let d = &t.data;
        let Some(first) = d.steps.iter().map(|s| s.time_us).min() else {
            return Ok(0);
        };
        let last = d.steps.iter().map(|s| s.time_us).max().unwrap_or(first);
        let id = d.trace_id as i64;
        self.tx
            .prepare_cached(
                "INSERT INTO trace (trace_id, request, project, first_us, last_us) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (trace_id) DO UPDATE SET request = coalesce(request, excluded.request), \
                 project = coalesce(project, excluded.project), first_us = min(first_us, excluded.first_us), \
                 last_us = max(last_us, excluded.last_us)",
            )
            .and_then(|mut st| st.execute(params![id, d.request, d.project, first, last]))
            .map_err(|e| self.err(e))?;
        let mut st = self
            .tx
            .prepare_cached(
                "INSERT OR IGNORE INTO trace_step (trace_id, host, generation, ring, seq, agent, pkt, time_us, tsc, \
                 step, detail, vif, drop_reason, flow, action, rule, protocol, sport, dport, vrf, src_ip, dst_ip) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22)",
            )
            .map_err(|e| StoreError::Sqlite { path: self.path.as_ref().clone(), source: e })?;
        let mut n = 0;
        for s in &d.steps {
            n += st
                .execute(params![
                    id,
                    t.host,
                    d.generation as i64,
                    s.ring,
                    s.seq as i64,
                    s.ring == d.agent_ring,
                    s.pkt,
                    s.time_us,
                    s.tsc as i64,
                    s.step,
                    s.detail,
                    s.vif,
                    s.drop_reason,
                    s.flow,
                    s.action,
                    s.rule,
                    s.protocol,
                    s.sport,
                    s.dport,
                    s.vrf,
                    s.src_ip.map(|a| a.to_string()),
                    s.dst_ip.map(|a| a.to_string()),
                ])
                .map_err(|e| StoreError::Sqlite { path: self.path.as_ref().clone(), source: e })?;
        }
        Ok(n)
    }

    /// Removes traces whose last step is older than `horizon_us`, with their steps. Returns
    /// the number of traces removed.
    pub fn purge_traces_before(&mut self, horizon_us: i64) -> Result<usize, StoreError> {
        self.tx
            .execute(
                "DELETE FROM trace_step WHERE trace_id IN (SELECT trace_id FROM trace WHERE last_us < ?1)",
                [horizon_us],
            )
            .map_err(|e| self.err(e))?;
        self.tx.execute("DELETE FROM trace WHERE last_us < ?1", [horizon_us]).map_err(|e| self.err(e))
    }

    /// See [`SqliteWriter::purge_flows_before`].
    pub fn purge_flows_before(&mut self, horizon_us: i64) -> Result<(usize, usize), StoreError> {
        let r =
            self.tx.execute("DELETE FROM flow_record WHERE last_seen < ?1", [horizon_us]).map_err(|e| self.err(e))?;
        let s = self.tx.execute("DELETE FROM flow_series WHERE T < ?1", [horizon_us]).map_err(|e| self.err(e))?;
        Ok((r, s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sandesh::{PacketTraceData, PacketTraceStep};

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

    fn msg(host: &str, id: u64, project: Option<&str>, steps: Vec<PacketTraceStep>) -> TraceInput {
        TraceInput {
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
        }
    }

    fn sample(t: i64, bytes: i64, packets: i64, diff: Option<(i64, i64)>) -> FlowRecordInput {
        FlowRecordInput {
            vrouter: "vr1".into(),
            timestamp_us: t,
            flowuuid: "00000007-0001-4abc-8def-0123456789ab".into(),
            sourcevn: "red".into(),
            sourceip: "10.1.0.3".into(),
            destvn: "blue".into(),
            destip: "10.2.0.3".into(),
            protocol: 6,
            setup_time: Some(1),
            bytes: Some(bytes),
            packets: Some(packets),
            diff_bytes: diff.map(|d| d.0),
            diff_packets: diff.map(|d| d.1),
            ..Default::default()
        }
    }

    /// (aggregate bytes, aggregate packets) of the flow record, (sum of bytes, sum of packets,
    /// rows) of its series.
    fn flow_sums(store: &SqliteStore) -> ((i64, i64), (i64, i64, i64)) {
        let r = store.reader().unwrap();
        let agg = r
            .conn()
            .query_row("SELECT agg_bytes, agg_packets FROM flow_record", [], |x| Ok((x.get(0)?, x.get(1)?)))
            .unwrap();
        let series = r
            .conn()
            .query_row("SELECT SUM(bytes), SUM(packets), COUNT(*) FROM flow_series", [], |x| {
                Ok((x.get(0)?, x.get(1)?, x.get(2)?))
            })
            .unwrap();
        (agg, series)
    }

    #[test]
    fn a_resent_sample_adds_nothing_to_the_series() {
        let dir = tempfile::tempdir().unwrap();
        let (store, mut w) = SqliteStore::open(dir.path()).unwrap();
        w.apply_flow_log(&sample(10, 100, 1, Some((100, 1)))).unwrap();
        let second = sample(20, 250, 3, Some((150, 2)));
        w.apply_flow_log(&second).unwrap();
        assert_eq!(flow_sums(&store), ((250, 3), (250, 3, 2)));
        // The same sample again (a resent frame, a restarted exporter): a row, no bytes.
        w.apply_flow_log(&second).unwrap();
        w.apply_flow_log(&sample(21, 250, 3, Some((150, 2)))).unwrap();
        assert_eq!(flow_sums(&store), ((250, 3), (250, 3, 4)));
        // A sample that never arrived (250 -> 300): the series misses its diff, the record
        // does not.
        w.apply_flow_log(&sample(40, 400, 6, Some((100, 2)))).unwrap();
        assert_eq!(flow_sums(&store), ((400, 6), (350, 5, 5)));
        // A sampled record's scaled diff (above the growth) is kept as sent.
        w.apply_flow_log(&sample(50, 410, 7, Some((500, 50)))).unwrap();
        assert_eq!(flow_sums(&store), ((410, 7), (850, 55, 6)));
        // Only packets grew (zero-length packets): not a copy.
        w.apply_flow_log(&sample(60, 410, 8, Some((0, 1)))).unwrap();
        assert_eq!(flow_sums(&store), ((410, 8), (850, 56, 7)));
    }

    #[test]
    fn trace_steps_are_stored_once_with_the_request_of_any_host() {
        let dir = tempfile::tempdir().unwrap();
        let (store, mut w) = SqliteStore::open(dir.path()).unwrap();
        // The continuing host's steps arrive first: no request, no project.
        let b = msg("b", 0xfeed, None, vec![step(1, 500, 0, 0, "marked"), step(1, 501, 0, 1, "egress")]);
        let a = msg("a", 0xfeed, Some("red"), vec![step(1, 1000, 0, 0, "ingress"), step(1, 1001, 1, 0, "policy")]);
        let n = w.transaction(|t| Ok(t.add_trace_steps(&b)? + t.add_trace_steps(&a)?)).unwrap();
        assert_eq!(n, 4);
        // Re-sent after a reconnect: nothing new.
        assert_eq!(w.transaction(|t| t.add_trace_steps(&a)).unwrap(), 0);
        w.transaction(|t| t.add_trace_steps(&msg("a", 0x1, None, vec![step(1, 5000, 0, 2, "drop")]))).unwrap();
        let r = store.reader().unwrap();
        let row = r.trace_row(0xfeed).unwrap().unwrap();
        assert_eq!(row.request.as_deref(), Some("aaaaaaaa-0000-4000-8000-000000000001"));
        assert_eq!((row.project.as_deref(), row.first_us, row.last_us), (Some("red"), 500, 1001));
        let steps = r.trace_steps(0xfeed).unwrap();
        assert_eq!(steps.len(), 4);
        let policy = steps.iter().find(|s| s.step == "policy").unwrap();
        assert!(policy.agent, "ring 1 is the agent's");
        assert_eq!(
            (policy.host.as_str(), policy.flow, policy.protocol, policy.dport),
            ("a", Some(7), Some(17), Some(53))
        );
        assert_eq!(policy.src_ip.as_deref(), Some("192.168.1.3"));
        let egress = steps.iter().find(|s| s.step == "egress").unwrap();
        assert_eq!((egress.vif, egress.agent), (Some(2), false));
        // Windows, request and project filters.
        assert_eq!(r.trace_rows(i64::MIN, i64::MAX, None, None, 100).unwrap().len(), 2);
        assert_eq!(r.trace_rows(1002, i64::MAX, None, None, 100).unwrap()[0].trace_id, 0x1);
        assert_eq!(r.trace_rows(0, 600, None, None, 100).unwrap()[0].trace_id, 0xfeed);
        assert_eq!(r.trace_rows(i64::MIN, i64::MAX, None, Some("red"), 100).unwrap().len(), 1);
        assert!(r.trace_rows(i64::MIN, i64::MAX, None, Some("blue"), 100).unwrap().is_empty());
        let by_req = r.trace_rows(i64::MIN, i64::MAX, Some("aaaaaaaa-0000-4000-8000-000000000001"), None, 100).unwrap();
        assert_eq!(by_req.iter().map(|t| t.trace_id).collect::<Vec<_>>(), [0xfeed]);
        assert_eq!(r.trace_rows(i64::MIN, i64::MAX, None, None, 1).unwrap().len(), 1, "limit");
        drop(r);
        // Retention removes whole traces by their last step.
        assert_eq!(w.transaction(|t| t.purge_traces_before(2000)).unwrap(), 1);
        let r = store.reader().unwrap();
        assert!(r.trace_row(0xfeed).unwrap().is_none());
        assert!(r.trace_steps(0xfeed).unwrap().is_empty());
        assert_eq!(r.trace_steps(0x1).unwrap().len(), 1);
    }

    #[test]
    fn a_version_2_database_gets_the_reconciliation_columns() {
        let dir = tempfile::tempdir().unwrap();
        {
            // Version 2's flow_record: SCHEMA without the reconciliation columns.
            let mut v2 = SCHEMA.to_owned();
            for c in RECONCILE_COLUMNS {
                v2 = v2.replace(&format!("    {c} INTEGER,\n"), "");
            }
            assert!(!v2.contains("held_dropped_packets"));
            let c = Connection::open(dir.path().join(DB_FILE)).unwrap();
            c.execute_batch(&v2).unwrap();
            c.execute(
                "INSERT INTO flow_record (uuid, vrouter, sourcevn, sourceip, destvn, destip, protocol, sport, \
                 dport, direction_ing, first_seen, last_seen, agg_bytes, agg_packets) \
                 VALUES ('old', 'h', 'a', '1.1.1.1', 'b', '2.2.2.2', 6, 1, 2, 1, 10, 20, 100, 1)",
                [],
            )
            .unwrap();
            c.execute("INSERT INTO meta VALUES ('schema_version', 2)", []).unwrap();
        }
        let (store, mut w) = SqliteStore::open(dir.path()).unwrap();
        let mut f = FlowRecordInput {
            flowuuid: "new".into(),
            vrouter: "h".into(),
            timestamp_us: 30,
            packets: Some(3),
            held_dropped_packets: Some(1),
            ..Default::default()
        };
        w.apply_flow_log(&f).unwrap();
        f.packets = Some(4);
        f.held_dropped_packets = None;
        w.apply_flow_log(&f).unwrap();
        let r = store.reader().unwrap();
        let held = |u: &str| -> Option<i64> {
            r.conn()
                .query_row("SELECT held_dropped_packets FROM flow_record WHERE uuid = ?1", [u], |x| x.get(0))
                .unwrap()
        };
        assert_eq!((held("old"), held("new")), (None, Some(1)), "the old record has none; merged like a counter");
        let v: i64 = r.conn().query_row("SELECT v FROM meta", [], |x| x.get(0)).unwrap();
        assert_eq!(v, SCHEMA_VERSION);
    }

    #[test]
    fn a_version_1_database_is_upgraded_and_newer_ones_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let c = Connection::open(dir.path().join(DB_FILE)).unwrap();
            c.execute_batch(
                "CREATE TABLE meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL); \
                 INSERT INTO meta VALUES ('schema_version', 1);",
            )
            .unwrap();
        }
        let (store, mut w) = SqliteStore::open(dir.path()).unwrap();
        w.transaction(|t| t.add_trace_steps(&msg("a", 3, None, vec![step(1, 1, 0, 0, "ingress")]))).unwrap();
        assert_eq!(store.reader().unwrap().trace_steps(3).unwrap().len(), 1);
        let v: i64 = store.reader().unwrap().conn().query_row("SELECT v FROM meta", [], |r| r.get(0)).unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        drop((store, w));
        let c = Connection::open(dir.path().join(DB_FILE)).unwrap();
        c.execute("UPDATE meta SET v = 4", []).unwrap();
        drop(c);
        match SqliteStore::open(dir.path()) {
            Err(StoreError::SchemaVersion { found, .. }) => assert_eq!(found, 4),
            other => panic!("{:?}", other.err()),
        }
    }
}
