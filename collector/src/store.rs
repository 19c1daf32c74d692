//! Embedded storage: one SQLite database (WAL mode) in the configured data directory.
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
//!   counters.
//! * `uve`: one row per (table, object name, generator, struct type, attribute), the attribute
//!   kept as the typed tree it arrived as (JSON of [`UveField`]); the pseudo-attribute `__T`
//!   holds the struct's latest timestamp.
//!
//! Exactly one [`Writer`] (the ingest thread) writes; readers ([`Store::reader`]) run queries
//! concurrently, which WAL allows without blocking the writer.

use crate::model::{FlowRecordInput, GeneratorKey, UveField, UveUpdate};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use thiserror::Error;

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "collector.sqlite3";
/// Schema version written to `meta`; a database with another version is refused.
pub const SCHEMA_VERSION: i64 = 1;

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
    /// A stored UVE attribute could not be decoded.
    #[error("corrupt UVE attribute {attr} in {path}: {message}")]
    CorruptUve {
        /// The database file.
        path: PathBuf,
        /// The attribute.
        attr: String,
        /// What was wrong.
        message: String,
    },
}

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
";

/// Pseudo-attribute holding a UVE struct's timestamp.
pub const TS_ATTR: &str = "__T";

/// The database: its location and a small pool of read connections.
#[derive(Clone)]
pub struct Store {
    path: Arc<PathBuf>,
    readers: Arc<Mutex<Vec<Connection>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

fn sql_err(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError::Sqlite {
        path: path.to_owned(),
        source,
    }
}

impl Store {
    /// Opens (creating if needed) the database in `data_dir` and returns it with its one
    /// writer.
    pub fn open(data_dir: &Path) -> Result<(Store, Writer), StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.to_owned(),
            source,
        })?;
        let path = data_dir.join(DB_FILE);
        let path2 = path.clone();
        let e = sql_err(&path2);
        let conn = Connection::open(&path).map_err(&e)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(&e)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(&e)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Sqlite {
                path,
                source: rusqlite::Error::InvalidParameterName(format!(
                    "journal_mode is {mode}, not wal"
                )),
            });
        }
        // NORMAL in WAL mode: a commit survives a crash of the process (the WAL is written
        // before the commit returns); only an OS crash or power loss can lose the last commits.
        // 64 MiB page cache for the writer: index updates on random flow UUIDs stay in memory.
        conn.execute_batch("PRAGMA synchronous=NORMAL; PRAGMA cache_size=-65536;")
            .map_err(&e)?;
        conn.execute_batch(SCHEMA).map_err(&e)?;
        let version: Option<i64> = conn
            .query_row("SELECT v FROM meta WHERE k = 'schema_version'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(&e)?;
        match version {
            None => {
                conn.execute(
                    "INSERT INTO meta (k, v) VALUES ('schema_version', ?1)",
                    [SCHEMA_VERSION],
                )
                .map_err(&e)?;
            }
            Some(SCHEMA_VERSION) => {}
            Some(found) => return Err(StoreError::SchemaVersion { path, found }),
        }
        let store = Store {
            path: Arc::new(path),
            readers: Arc::default(),
        };
        Ok((store.clone(), Writer { conn, store }))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A read connection from the pool (returned to it when dropped).
    pub fn reader(&self) -> Result<Reader, StoreError> {
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
                crate::query::register_functions(&conn).map_err(&e)?;
                conn
            }
        };
        Ok(Reader {
            conn: Some(conn),
            store: self.clone(),
        })
    }
}

/// A pooled read connection.
pub struct Reader {
    conn: Option<Connection>,
    store: Store,
}

impl Reader {
    /// The connection.
    pub fn conn(&self) -> &Connection {
        self.conn.as_ref().expect("connection present until drop")
    }

    /// Wraps a SQLite error with the database path.
    pub fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.store.path.as_ref().clone(),
            source,
        }
    }

    /// Distinct object names of a UVE table, sorted.
    pub fn uve_names(&self, table: &str) -> Result<Vec<String>, StoreError> {
        let mut st = self
            .conn()
            .prepare_cached("SELECT DISTINCT name FROM uve WHERE tbl = ?1 ORDER BY name")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([table], |r| r.get(0))
            .map_err(|e| self.err(e))?;
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
                Some(v) => Some(serde_json::from_str::<UveField>(&v).map_err(|e| {
                    StoreError::CorruptUve {
                        path: self.store.path.as_ref().clone(),
                        attr: attr.clone(),
                        message: e.to_string(),
                    }
                })?),
            };
            out.push(StoredAttr {
                generator,
                struct_type,
                attr,
                field,
                ts,
            });
        }
        Ok(out)
    }

    /// Number of rows in FlowRecordTable and FlowSeriesTable.
    pub fn flow_counts(&self) -> Result<(u64, u64), StoreError> {
        let c = self.conn();
        let r: i64 = c
            .query_row("SELECT count(*) FROM flow_record", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        let s: i64 = c
            .query_row("SELECT count(*) FROM flow_series", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        Ok((r as u64, s as u64))
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            let mut pool = self.store.readers.lock().unwrap_or_else(|p| p.into_inner());
            if pool.len() < 8 {
                pool.push(c);
            }
        }
    }
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

/// The single writer of the database.
pub struct Writer {
    conn: Connection,
    store: Store,
}

/// Previous aggregates of a flow, read before merging a sample.
#[derive(Default, Clone, Copy)]
struct FlowAggs {
    bytes: i64,
    packets: i64,
    mir_bytes: Option<i64>,
    mir_packets: Option<i64>,
    sec_mir_bytes: Option<i64>,
    sec_mir_packets: Option<i64>,
    first_seen: i64,
    last_seen: i64,
}

/// Merges a cumulative counter: the largest value seen wins.
fn merge_cumulative(prev: Option<i64>, new: Option<i64>) -> Option<i64> {
    match (prev, new) {
        (Some(p), Some(n)) => Some(p.max(n)),
        (p, n) => p.or(n),
    }
}

impl Writer {
    /// The store this writer belongs to.
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.store.path.as_ref().clone(),
            source,
        }
    }

    /// Runs `f` in one transaction (committed if `f` succeeds).
    pub fn transaction<T>(
        &mut self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let path = self.store.path.clone();
        let tx = self
            .conn
            // IMMEDIATE: take the write lock at BEGIN, where SQLite honours the busy timeout
            // (a deferred transaction that read first gets SQLITE_BUSY at once on upgrade).
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|source| StoreError::Sqlite {
                path: path.as_ref().clone(),
                source,
            })?;
        let mut t = Tx { tx, path };
        let out = f(&mut t)?;
        let path = t.path.clone();
        t.tx.commit().map_err(|source| StoreError::Sqlite {
            path: path.as_ref().clone(),
            source,
        })?;
        Ok(out)
    }

    /// Applies one flow sample in its own transaction.
    pub fn apply_flow_log(&mut self, rec: &FlowRecordInput) -> Result<(), StoreError> {
        self.transaction(|t| t.apply_flow_log(rec))
    }

    /// Applies one UVE update in its own transaction.
    pub fn set_uve(
        &mut self,
        generator: &GeneratorKey,
        update: &UveUpdate,
    ) -> Result<(), StoreError> {
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
        self.conn
            .execute("DELETE FROM uve", [])
            .map_err(|e| self.err(e))
    }
}

/// A write transaction.
pub struct Tx<'c> {
    tx: rusqlite::Transaction<'c>,
    path: Arc<PathBuf>,
}

impl Tx<'_> {
    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.as_ref().clone(),
            source,
        }
    }

    /// Merges one flow sample into FlowRecordTable and appends its diffs to FlowSeriesTable.
    pub fn apply_flow_log(&mut self, r: &FlowRecordInput) -> Result<(), StoreError> {
        let prev: Option<FlowAggs> = self
            .tx
            .prepare_cached(
                "SELECT agg_bytes, agg_packets, agg_mir_bytes, agg_mir_packets, agg_sec_mir_bytes, \
                 agg_sec_mir_packets, first_seen, last_seen FROM flow_record WHERE uuid = ?1",
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
                    })
                })
                .optional()
            })
            .map_err(|e| self.err(e))?;
        let exists = prev.is_some();
        let p = prev.unwrap_or_default();
        let start = r.setup_time.unwrap_or(r.timestamp_us).min(r.timestamp_us);
        let end = r
            .teardown_time
            .unwrap_or(r.timestamp_us)
            .max(r.timestamp_us);
        let first_seen = if exists {
            p.first_seen.min(start)
        } else {
            start
        };
        let last_seen = if exists { p.last_seen.max(end) } else { end };
        let agg_bytes = match r.bytes {
            Some(b) => p.bytes.max(b),
            None => p.bytes + r.diff_bytes.unwrap_or(0),
        };
        let agg_packets = match r.packets {
            Some(n) => p.packets.max(n),
            None => p.packets + r.diff_packets.unwrap_or(0),
        };
        let mir_bytes = merge_cumulative(p.mir_bytes, r.mirror_bytes);
        let mir_packets = merge_cumulative(p.mir_packets, r.mirror_packets);
        let sec_mir_bytes = merge_cumulative(p.sec_mir_bytes, r.sec_mirror_bytes);
        let sec_mir_packets = merge_cumulative(p.sec_mir_packets, r.sec_mirror_packets);
        let growth = |new: Option<i64>, old: Option<i64>| new.unwrap_or(0) - old.unwrap_or(0);
        let d_bytes = r.diff_bytes.unwrap_or(agg_bytes - p.bytes);
        let d_packets = r.diff_packets.unwrap_or(agg_packets - p.packets);

        // Identity columns and descriptive fields: the latest sample's values, keeping what an
        // earlier sample set when this one leaves an optional field out.
        self.tx
            .prepare_cached(
                "INSERT INTO flow_record (uuid, vrouter, sourcevn, sourceip, destvn, destip, protocol, \
                 sport, dport, direction_ing, setup_time, teardown_time, first_seen, last_seen, \
                 agg_bytes, agg_packets, agg_mir_bytes, agg_mir_packets, agg_sec_mir_bytes, \
                 agg_sec_mir_packets, analyzer_name, sec_analyzer_name, action, sg_rule_uuid, \
                 nw_ace_uuid, vrouter_ip, other_vrouter_ip, underlay_proto, underlay_source_port, vmi, \
                 drop_reason, reverse_uuid, tcp_flags, vm, forward_flow) VALUES (?1, ?2, ?3, ?4, ?5, \
                 ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, \
                 ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32, ?33, ?34, ?35) \
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
                 forward_flow = coalesce(excluded.forward_flow, forward_flow)",
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
                    first_seen,
                    last_seen,
                    agg_bytes,
                    agg_packets,
                    mir_bytes,
                    mir_packets,
                    sec_mir_bytes,
                    sec_mir_packets,
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
                    d_bytes,
                    d_packets,
                    growth(mir_bytes, p.mir_bytes),
                    growth(mir_packets, p.mir_packets),
                    growth(sec_mir_bytes, p.sec_mir_bytes),
                    growth(sec_mir_packets, p.sec_mir_packets),
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
                .prepare_cached(
                    "DELETE FROM uve WHERE tbl = ?1 AND name = ?2 AND generator = ?3 AND struct_type = ?4",
                )
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
        let e = |source| StoreError::Sqlite {
            path: path.as_ref().clone(),
            source,
        };
        st.execute(params![
            u.table,
            u.name,
            gen,
            u.struct_type,
            TS_ATTR,
            None::<String>,
            u.timestamp_us
        ])
        .map_err(e)?;
        for a in &u.attrs {
            let json = serde_json::to_string(a).expect("UveField serialises");
            st.execute(params![
                u.table,
                u.name,
                gen,
                u.struct_type,
                a.name,
                json,
                u.timestamp_us
            ])
            .map_err(e)?;
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

    /// See [`Writer::purge_flows_before`].
    pub fn purge_flows_before(&mut self, horizon_us: i64) -> Result<(usize, usize), StoreError> {
        let r = self
            .tx
            .execute("DELETE FROM flow_record WHERE last_seen < ?1", [horizon_us])
            .map_err(|e| self.err(e))?;
        let s = self
            .tx
            .execute("DELETE FROM flow_series WHERE T < ?1", [horizon_us])
            .map_err(|e| self.err(e))?;
        Ok((r, s))
    }
}
