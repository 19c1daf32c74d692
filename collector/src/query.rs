//! The query engine of `POST /analytics/query` for `FlowRecordTable` and `FlowSeriesTable`.
//!
//! A request ([`QueryRequest`], parsed from JSON by [`QueryRequest::from_json`]) is validated
//! against the table's columns and compiled into one SQL statement in the [`Dialect`] of the
//! backend in use ([`crate::store::Backend::dialect`]; column names come only from the fixed
//! tables below, every value is bound by the dialect: a parameter for SQLite, an escaped
//! literal for ClickHouse), which the backend runs ([`crate::store::Backend::fetch`]). The
//! dialect supplies what differs: where a table's rows come from (SQLite keeps one row per
//! flow, other backends may aggregate a flow's rows first), `T=` buckets, `SUM`, the string
//! operators and the sort order of missing values (first ascending, last descending, as
//! SQLite sorts them):
//!
//! * `start_time`/`end_time`: µs since the epoch (JSON number or digit string) or `now`,
//!   `now-10m`, ... ([`crate::time`]); an end before the start is an error, the window is
//!   clamped to the retention horizon and to now. A FlowRecordTable row is in the window when
//!   the flow's life (setup or first sample … teardown or last sample) overlaps it; a
//!   FlowSeriesTable row when its sample time `T` lies in it (both ends inclusive).
//! * `where`: OR of ANDs of `{"name", "value", "op"[, "value2"]}` with ops 1 EQUAL,
//!   2 NOT_EQUAL, 3 IN_RANGE, 4 NOT_IN_RANGE, 5 LEQ, 6 GEQ, 7 PREFIX, 9 CONTAINS (8 REGEX_MATCH
//!   is for `filter` only, as in the reference engine). Values of integer columns must be
//!   integers (JSON numbers or decimal strings); ranges are inclusive.
//! * `filter`: conditions on the result rows (a list = AND, a list of lists = OR of ANDs),
//!   naming selected fields; ops as above plus 8 REGEX_MATCH.
//! * `SUM(bytes)`, `SUM(packets)`, `SUM(mir-bytes)`, ... on FlowSeriesTable group the rows by
//!   the other selected fields; `T=<seconds>` selects the sample time rounded down to that
//!   granularity (for time buckets), `T` the raw time.
//! * `sort_fields` (each selected), `sort` 1 ascending (default) or 2 descending, `limit`.
//! * The reply is `{"value": [row, ...]}`, each row an object keyed by the select field names;
//!   integers as numbers, strings as strings, missing values as `null`.
//!
//! Errors map to HTTP status codes the way the reference opserver maps its errnos: a bad
//! request 400, a table this collector does not have 410 (ENOENT), a result larger than the
//! configured row bound 403 (ENOBUFS).

use crate::store::{Backend, StoreError};
use crate::time::{resolve_query_window, TimeError};
use regex::Regex;
use serde_json::{Map, Value};
use thiserror::Error;

/// Type of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColKind {
    /// Text (names, addresses, UUIDs).
    Str,
    /// Integer.
    Int,
}

/// A queryable column: API name, SQL expression, kind.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// Name in `select_fields`/`where`/`filter`.
    pub name: &'static str,
    /// SQL column of the backing table.
    pub sql: &'static str,
    /// Kind.
    pub kind: ColKind,
}

const fn s(name: &'static str, sql: &'static str) -> Column {
    Column { name, sql, kind: ColKind::Str }
}
const fn i(name: &'static str, sql: &'static str) -> Column {
    Column { name, sql, kind: ColKind::Int }
}

/// FlowRecordTable columns: the reference schema plus the mirror extension.
pub const FLOW_RECORD_COLUMNS: &[Column] = &[
    s("UuidKey", "uuid"),
    s("vrouter", "vrouter"),
    s("sourcevn", "sourcevn"),
    s("sourceip", "sourceip"),
    s("destvn", "destvn"),
    s("destip", "destip"),
    i("protocol", "protocol"),
    i("sport", "sport"),
    i("dport", "dport"),
    i("direction_ing", "direction_ing"),
    i("setup_time", "setup_time"),
    i("teardown_time", "teardown_time"),
    i("agg-bytes", "agg_bytes"),
    i("agg-packets", "agg_packets"),
    i("agg-mir-bytes", "agg_mir_bytes"),
    i("agg-mir-packets", "agg_mir_packets"),
    i("agg-sec-mir-bytes", "agg_sec_mir_bytes"),
    i("agg-sec-mir-packets", "agg_sec_mir_packets"),
    s("analyzer_name", "analyzer_name"),
    s("sec_analyzer_name", "sec_analyzer_name"),
    i("agg-mir-lost-packets", "agg_mir_lost_packets"),
    i("agg-sec-mir-lost-packets", "agg_sec_mir_lost_packets"),
    i("before-mirror-packets", "before_mirror_packets"),
    i("held-dropped-packets", "held_dropped_packets"),
    s("action", "action"),
    s("sg_rule_uuid", "sg_rule_uuid"),
    s("nw_ace_uuid", "nw_ace_uuid"),
    s("vrouter_ip", "vrouter_ip"),
    s("other_vrouter_ip", "other_vrouter_ip"),
    i("underlay_proto", "underlay_proto"),
    i("underlay_source_port", "underlay_source_port"),
    s("vmi", "vmi"),
    s("drop_reason", "drop_reason"),
    s("reverse_uuid", "reverse_uuid"),
    i("tcp_flags", "tcp_flags"),
    s("vm", "vm"),
];

/// FlowSeriesTable columns (besides `T=<seconds>` and `SUM(<counter>)`).
pub const FLOW_SERIES_COLUMNS: &[Column] = &[
    i("T", "T"),
    s("UuidKey", "uuid"),
    s("vrouter", "vrouter"),
    s("sourcevn", "sourcevn"),
    s("sourceip", "sourceip"),
    s("destvn", "destvn"),
    s("destip", "destip"),
    i("protocol", "protocol"),
    i("sport", "sport"),
    i("dport", "dport"),
    i("direction_ing", "direction_ing"),
    i("bytes", "bytes"),
    i("packets", "packets"),
    i("mir-bytes", "mir_bytes"),
    i("mir-packets", "mir_packets"),
    i("sec-mir-bytes", "sec_mir_bytes"),
    i("sec-mir-packets", "sec_mir_packets"),
    s("analyzer_name", "analyzer_name"),
    s("sec_analyzer_name", "sec_analyzer_name"),
    s("action", "action"),
];

/// Counters of FlowSeriesTable that `SUM(...)` accepts.
pub const SERIES_COUNTERS: &[&str] =
    &["bytes", "packets", "mir-bytes", "mir-packets", "sec-mir-bytes", "sec-mir-packets"];

/// The tables this engine answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// One row per flow.
    FlowRecord,
    /// One row per flow sample.
    FlowSeries,
}

impl Table {
    /// Table by its API name.
    pub fn from_name(name: &str) -> Option<Table> {
        match name {
            "FlowRecordTable" => Some(Table::FlowRecord),
            "FlowSeriesTable" => Some(Table::FlowSeries),
            _ => None,
        }
    }
    /// API name.
    pub fn name(self) -> &'static str {
        match self {
            Table::FlowRecord => "FlowRecordTable",
            Table::FlowSeries => "FlowSeriesTable",
        }
    }
    fn columns(self) -> &'static [Column] {
        match self {
            Table::FlowRecord => FLOW_RECORD_COLUMNS,
            Table::FlowSeries => FLOW_SERIES_COLUMNS,
        }
    }
    /// Column by API name.
    pub fn column(self, name: &str) -> Option<&'static Column> {
        self.columns().iter().find(|c| c.name == name)
    }
}

/// The columns the reference schema indexes (where clauses on them are what it supports).
pub const INDEXED_COLUMNS: &[&str] =
    &["vrouter", "sourcevn", "sourceip", "destvn", "destip", "protocol", "sport", "dport", "direction_ing"];

/// The schema of a table as `GET /analytics/table/<t>/schema` shows it:
/// `{"type": "FLOW", "columns": [{"name", "datatype", "index", "suffixes": null}, ...]}`.
pub fn schema_json(table: Table) -> Value {
    let mut cols: Vec<Value> = table
        .columns()
        .iter()
        .map(|c| {
            let datatype = match (c.kind, c.name) {
                (ColKind::Str, "UuidKey") => "uuid",
                (ColKind::Str, "sourceip" | "destip") => "ipaddr",
                (ColKind::Str, _) => "string",
                (
                    ColKind::Int,
                    "protocol"
                    | "sport"
                    | "dport"
                    | "direction_ing"
                    | "underlay_proto"
                    | "underlay_source_port"
                    | "tcp_flags",
                ) => "int",
                (ColKind::Int, _) => "long",
            };
            serde_json::json!({"name": c.name, "datatype": datatype,
                               "index": INDEXED_COLUMNS.contains(&c.name), "suffixes": null})
        })
        .collect();
    if table == Table::FlowSeries {
        cols.push(serde_json::json!({"name": "T=", "datatype": "long", "index": false, "suffixes": null}));
        for c in SERIES_COUNTERS {
            cols.push(
                serde_json::json!({"name": format!("SUM({c})"), "datatype": "long", "index": false, "suffixes": null}),
            );
        }
    }
    serde_json::json!({"type": "FLOW", "columns": cols})
}

/// Every table, for `GET /analytics/tables`.
pub const TABLES: &[Table] = &[Table::FlowRecord, Table::FlowSeries];

/// Why a query failed.
#[derive(Debug, Error)]
pub enum QueryError {
    /// The request is malformed or inconsistent (HTTP 400).
    #[error("{0}")]
    Bad(String),
    /// The table does not exist here (HTTP 410, the reference's ENOENT).
    #[error("unknown table `{0}`: this collector answers FlowRecordTable and FlowSeriesTable")]
    UnknownTable(String),
    /// More rows than the configured bound (HTTP 403, the reference's ENOBUFS).
    #[error("query result exceeds {0} rows; narrow the time range or where clause, or set a limit")]
    TooLarge(usize),
    /// Storage failed (HTTP 500).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl QueryError {
    /// The HTTP status code for this error.
    pub fn http_status(&self) -> u16 {
        match self {
            QueryError::Bad(_) => 400,
            QueryError::UnknownTable(_) => 410,
            QueryError::TooLarge(_) => 403,
            QueryError::Store(_) => 500,
        }
    }
}

fn bad(msg: impl Into<String>) -> QueryError {
    QueryError::Bad(msg.into())
}

/// A match operator (`match_op` of the reference IDL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    /// 1
    Equal,
    /// 2
    NotEqual,
    /// 3: value ≤ x ≤ value2
    InRange,
    /// 4
    NotInRange,
    /// 5: x ≤ value
    Leq,
    /// 6: x ≥ value
    Geq,
    /// 7: string prefix
    Prefix,
    /// 8: regular expression (filters only)
    RegexMatch,
    /// 9: substring
    Contains,
}

impl MatchOp {
    /// From the numeric code.
    pub fn from_code(code: i64) -> Option<MatchOp> {
        Some(match code {
            1 => MatchOp::Equal,
            2 => MatchOp::NotEqual,
            3 => MatchOp::InRange,
            4 => MatchOp::NotInRange,
            5 => MatchOp::Leq,
            6 => MatchOp::Geq,
            7 => MatchOp::Prefix,
            8 => MatchOp::RegexMatch,
            9 => MatchOp::Contains,
            _ => return None,
        })
    }
}

/// One condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    /// Field name.
    pub name: String,
    /// Operator.
    pub op: MatchOp,
    /// Operand (JSON as given).
    pub value: Value,
    /// Upper bound for the range ops.
    pub value2: Option<Value>,
}

/// A parsed query request.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryRequest {
    /// `table`.
    pub table: String,
    /// `start_time`, as text.
    pub start_time: String,
    /// `end_time`, as text.
    pub end_time: String,
    /// `select_fields`.
    pub select_fields: Vec<String>,
    /// `where`: OR of ANDs (empty: everything).
    pub where_: Vec<Vec<Match>>,
    /// `filter`: OR of ANDs (empty: everything).
    pub filter: Vec<Vec<Match>>,
    /// `sort_fields`.
    pub sort_fields: Vec<String>,
    /// `sort`: true for descending (2).
    pub descending: bool,
    /// `limit`.
    pub limit: Option<u64>,
    /// `dir`: direction_ing to match, if given.
    pub dir: Option<i64>,
}

const KNOWN_KEYS: &[&str] =
    &["table", "start_time", "end_time", "select_fields", "where", "filter", "sort", "sort_fields", "limit", "dir"];

fn time_text(v: &Value, field: &str) -> Result<String, QueryError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => match n.as_u64() {
            Some(u) => Ok(u.to_string()),
            None => Err(bad(format!("{field}: {n} is not a non-negative integer of microseconds"))),
        },
        _ => Err(bad(format!("{field}: expected microseconds or a string such as \"now-10m\""))),
    }
}

fn parse_match(v: &Value, ctx: &str) -> Result<Match, QueryError> {
    let o = v.as_object().ok_or_else(|| bad(format!("{ctx}: expected an object {{\"name\", \"value\", \"op\"}}")))?;
    for k in o.keys() {
        if !matches!(k.as_str(), "name" | "value" | "op" | "value2" | "suffix") {
            return Err(bad(format!("{ctx}: unknown key `{k}` (expected name, value, op, value2)")));
        }
    }
    if o.contains_key("suffix") && !o["suffix"].is_null() {
        return Err(bad(format!("{ctx}.suffix: suffix matches are not supported")));
    }
    let name = o
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| bad(format!("{ctx}.name: missing or not a string")))?
        .to_owned();
    let value = o.get("value").cloned().ok_or_else(|| bad(format!("{ctx}.value: missing")))?;
    let op = match o.get("op") {
        None => MatchOp::Equal,
        Some(code) => code
            .as_i64()
            .and_then(MatchOp::from_code)
            .ok_or_else(|| bad(format!("{ctx}.op: {code} is not a match op (1-9)")))?,
    };
    let value2 = o.get("value2").filter(|v| !v.is_null()).cloned();
    if matches!(op, MatchOp::InRange | MatchOp::NotInRange) && value2.is_none() {
        return Err(bad(format!("{ctx}.value2: required by op {}", if op == MatchOp::InRange { 3 } else { 4 })));
    }
    Ok(Match { name, op, value, value2 })
}

/// `[{…}, …]` (AND) or `[[{…}, …], …]` (OR of ANDs).
fn parse_conditions(v: &Value, field: &str, flat_is_and: bool) -> Result<Vec<Vec<Match>>, QueryError> {
    let outer = v.as_array().ok_or_else(|| bad(format!("{field}: expected a list")))?;
    if outer.iter().all(Value::is_object) && flat_is_and {
        let and = outer
            .iter()
            .enumerate()
            .map(|(k, m)| parse_match(m, &format!("{field}[{k}]")))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(if and.is_empty() { vec![] } else { vec![and] });
    }
    let mut ors = Vec::new();
    for (k, inner) in outer.iter().enumerate() {
        let inner =
            inner.as_array().ok_or_else(|| bad(format!("{field}[{k}]: expected a list of conditions (AND)")))?;
        let and = inner
            .iter()
            .enumerate()
            .map(|(j, m)| parse_match(m, &format!("{field}[{k}][{j}]")))
            .collect::<Result<Vec<_>, _>>()?;
        if and.is_empty() {
            return Err(bad(format!("{field}[{k}]: empty AND term")));
        }
        ors.push(and);
    }
    Ok(ors)
}

impl QueryRequest {
    /// Parses the JSON body of a query request.
    pub fn from_json(body: &[u8]) -> Result<QueryRequest, QueryError> {
        let v: Value = serde_json::from_slice(body).map_err(|e| bad(format!("invalid JSON: {e}")))?;
        let o = v.as_object().ok_or_else(|| bad("the query must be a JSON object"))?;
        for k in o.keys() {
            if !KNOWN_KEYS.contains(&k.as_str()) {
                return Err(bad(format!("unknown key `{k}` (expected one of {})", KNOWN_KEYS.join(", "))));
            }
        }
        let table =
            o.get("table").and_then(Value::as_str).ok_or_else(|| bad("table: missing or not a string"))?.to_owned();
        let start_time = time_text(o.get("start_time").ok_or_else(|| bad("start_time: missing"))?, "start_time")?;
        let end_time = time_text(o.get("end_time").ok_or_else(|| bad("end_time: missing"))?, "end_time")?;
        let strings = |key: &str| -> Result<Vec<String>, QueryError> {
            match o.get(key) {
                None | Some(Value::Null) => Ok(vec![]),
                Some(Value::Array(a)) => a
                    .iter()
                    .enumerate()
                    .map(|(k, x)| x.as_str().map(str::to_owned).ok_or_else(|| bad(format!("{key}[{k}]: not a string"))))
                    .collect(),
                Some(_) => Err(bad(format!("{key}: expected a list of strings"))),
            }
        };
        let select_fields = strings("select_fields")?;
        if select_fields.is_empty() {
            return Err(bad("select_fields: missing or empty"));
        }
        let sort_fields = strings("sort_fields")?;
        let where_ = match o.get("where") {
            None | Some(Value::Null) => vec![],
            Some(w) => parse_conditions(w, "where", false)?,
        };
        let filter = match o.get("filter") {
            None | Some(Value::Null) => vec![],
            Some(f) => parse_conditions(f, "filter", true)?,
        };
        let descending = match o.get("sort") {
            None | Some(Value::Null) => false,
            Some(v) => match v.as_i64() {
                Some(1) => false,
                Some(2) => true,
                _ => return Err(bad(format!("sort: {v} is not 1 (ascending) or 2 (descending)"))),
            },
        };
        let limit = match o.get("limit") {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_u64() {
                Some(n) if n > 0 => Some(n),
                _ => return Err(bad(format!("limit: {v} is not a positive integer"))),
            },
        };
        let dir = match o.get("dir") {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_i64() {
                Some(d @ (0 | 1)) => Some(d),
                _ => return Err(bad(format!("dir: {v} is not 1 (ingress) or 0 (egress)"))),
            },
        };
        Ok(QueryRequest {
            table,
            start_time,
            end_time,
            select_fields,
            where_,
            filter,
            sort_fields,
            descending,
            limit,
            dir,
        })
    }
}

/// A select field resolved against a table.
#[derive(Debug, Clone)]
enum Sel {
    Col(&'static Column),
    /// `T=<seconds>` bucket.
    TBucket(u64),
    /// `SUM(counter)`.
    Sum(&'static Column),
}

impl Sel {
    fn sql(&self, d: &dyn Dialect) -> String {
        match self {
            Sel::Col(c) => c.sql.to_owned(),
            Sel::TBucket(g) => d.t_bucket(g * 1_000_000),
            Sel::Sum(c) => d.sum(c.sql),
        }
    }
    fn kind(&self) -> ColKind {
        match self {
            Sel::Col(c) => c.kind,
            _ => ColKind::Int,
        }
    }
}

fn resolve_select(table: Table, name: &str) -> Result<Sel, QueryError> {
    if let Some(c) = table.column(name) {
        return Ok(Sel::Col(c));
    }
    if table == Table::FlowSeries {
        if let Some(g) = name.strip_prefix("T=") {
            let g: u64 = g
                .parse()
                .ok()
                .filter(|g| *g > 0 && *g <= 366 * 86_400)
                .ok_or_else(|| bad(format!("select_fields: `{name}`: granularity must be 1..=31622400 seconds")))?;
            return Ok(Sel::TBucket(g));
        }
        if let Some(inner) = name.strip_prefix("SUM(").and_then(|r| r.strip_suffix(')')) {
            if SERIES_COUNTERS.contains(&inner) {
                return Ok(Sel::Sum(table.column(inner).expect("counters are columns")));
            }
            return Err(bad(format!("select_fields: `{name}`: SUM applies to {}", SERIES_COUNTERS.join(", "))));
        }
    }
    Err(bad(format!(
        "select_fields: unknown field `{name}` for {} (fields: {})",
        table.name(),
        table.columns().iter().map(|c| c.name).collect::<Vec<_>>().join(", ")
    )))
}

fn int_operand(v: &Value, ctx: &str) -> Result<i64, QueryError> {
    match v {
        Value::Number(n) => n.as_i64().ok_or_else(|| bad(format!("{ctx}: {n} is not an integer"))),
        Value::String(s) => s.parse().map_err(|_| bad(format!("{ctx}: `{s}` is not an integer"))),
        _ => Err(bad(format!("{ctx}: expected an integer"))),
    }
}

fn str_operand(v: &Value, ctx: &str) -> Result<String, QueryError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(bad(format!("{ctx}: expected a string"))),
    }
}

fn operand(kind: ColKind, v: &Value, ctx: &str) -> Result<Param, QueryError> {
    Ok(match kind {
        ColKind::Int => Param::Int(int_operand(v, ctx)?),
        ColKind::Str => Param::Text(str_operand(v, ctx)?),
    })
}

/// A value in a compiled statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    /// An integer.
    Int(i64),
    /// A string.
    Text(String),
}

/// What a statement reads from its table.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    /// The table.
    pub table: Table,
    /// Window start (µs): a flow whose life overlaps the window is in it, a series row whose
    /// `T` lies in it (both ends inclusive).
    pub start_us: i64,
    /// Window end (µs).
    pub end_us: i64,
    /// The columns the statement uses: each must be a column of the FROM operand under its
    /// [`Column::sql`] name.
    pub columns: &'a [&'static Column],
    /// Set when the statement only keeps the first `limit` flows by one of the aggregate
    /// counters, descending, with no other condition: a counter never decreases from one
    /// sample of a flow to the next, so those flows are the first `limit` distinct ones of
    /// the rows sorted by it, and a backend that merges a flow's rows when reading needs to
    /// merge only theirs.
    pub top: Option<(&'static Column, u64)>,
    /// A condition on the raw rows of FlowRecordTable that the where clause implies: its
    /// terms on the columns every row of a flow has the same value in
    /// ([`FLOW_IDENTITY_COLUMNS`]). A backend that merges a flow's rows when reading can
    /// apply it to the rows first and merge only the flows that can match. Written for the
    /// dialect with its own parameters, so only a dialect that writes literals uses it.
    pub prefilter: Option<&'a str>,
}

/// FlowRecordTable columns that are the same in every sample of a flow (what identifies
/// it). VNs and descriptive fields are not: a re-evaluated flow may get others.
pub const FLOW_IDENTITY_COLUMNS: &[&str] =
    &["uuid", "vrouter", "sourceip", "destip", "protocol", "sport", "dport", "direction_ing"];

/// The FlowRecordTable counters that never decrease over a flow's samples ([`Source::top`]).
pub const MONOTONIC_AGGREGATES: &[&str] =
    &["agg-bytes", "agg-packets", "agg-mir-bytes", "agg-mir-packets", "agg-sec-mir-bytes", "agg-sec-mir-packets"];

/// What the SQL of one backend needs from the engine: how values are bound and how the
/// expressions that differ between SQL dialects are written. Column names and operators
/// common to both (`=`, `<>`, `<=`, `IS NULL`, `AND`, `OR`, `NOT`, `GROUP BY`, `HAVING`,
/// `LIMIT`) are the engine's.
pub trait Dialect: Send + Sync + std::fmt::Debug {
    /// A value in the statement: a placeholder (the value appended to `params`) or a literal.
    fn bind(&self, v: Param, params: &mut Vec<Param>) -> String;
    /// Where the rows of a table come from and the condition that keeps those in the window
    /// ([`Source`]): `(FROM operand, WHERE condition)`.
    fn source(&self, s: &Source<'_>, params: &mut Vec<Param>) -> (String, String);
    /// `T` rounded down to a multiple of `granularity_us`.
    fn t_bucket(&self, granularity_us: u64) -> String;
    /// The sum of `expr` over a group; null over no rows.
    fn sum(&self, expr: &str) -> String;
    /// `expr` starts with `prefix` (false for null).
    fn prefix(&self, expr: &str, prefix: &str, params: &mut Vec<Param>) -> String;
    /// `expr` contains `needle` (false for null).
    fn contains(&self, expr: &str, needle: &str, params: &mut Vec<Param>) -> String;
    /// `expr` matches the regular expression `pattern` somewhere (false for null).
    fn regex(&self, expr: &str, pattern: &str, params: &mut Vec<Param>) -> String;
    /// An `ORDER BY` key: missing values first ascending, last descending.
    fn order_key(&self, expr: &str, descending: bool) -> String;
}

/// Compiles one condition on SQL expression `expr` of kind `kind`.
fn compile_match(
    m: &Match,
    expr: &str,
    kind: ColKind,
    ctx: &str,
    allow_regex: bool,
    d: &dyn Dialect,
    params: &mut Vec<Param>,
) -> Result<String, QueryError> {
    let v = || operand(kind, &m.value, &format!("{ctx}.value"));
    let v2 = || operand(kind, m.value2.as_ref().expect("checked at parse"), &format!("{ctx}.value2"));
    let text_only = |what: &str| -> Result<(), QueryError> {
        if kind == ColKind::Int {
            Err(bad(format!("{ctx}.op: {what} applies to string fields, `{}` is an integer", m.name)))
        } else {
            Ok(())
        }
    };
    Ok(match m.op {
        MatchOp::Equal => {
            let x = d.bind(v()?, params);
            format!("{expr} = {x}")
        }
        MatchOp::NotEqual => {
            let x = d.bind(v()?, params);
            format!("({expr} IS NULL OR {expr} <> {x})")
        }
        MatchOp::InRange => {
            let (a, b) = (v()?, v2()?);
            let (a, b) = (d.bind(a, params), d.bind(b, params));
            format!("({expr} >= {a} AND {expr} <= {b})")
        }
        MatchOp::NotInRange => {
            let (a, b) = (v()?, v2()?);
            let (a, b) = (d.bind(a, params), d.bind(b, params));
            format!("NOT ({expr} >= {a} AND {expr} <= {b})")
        }
        MatchOp::Leq => {
            let x = d.bind(v()?, params);
            format!("{expr} <= {x}")
        }
        MatchOp::Geq => {
            let x = d.bind(v()?, params);
            format!("{expr} >= {x}")
        }
        MatchOp::Prefix => {
            text_only("PREFIX (7)")?;
            d.prefix(expr, &str_operand(&m.value, &format!("{ctx}.value"))?, params)
        }
        MatchOp::RegexMatch => {
            if !allow_regex {
                return Err(bad(format!("{ctx}.op: REGEX_MATCH (8) is only allowed in filter")));
            }
            text_only("REGEX_MATCH (8)")?;
            let p = str_operand(&m.value, &format!("{ctx}.value"))?;
            Regex::new(&p).map_err(|e| bad(format!("{ctx}.value: invalid regular expression: {e}")))?;
            d.regex(expr, &p, params)
        }
        MatchOp::Contains => {
            text_only("CONTAINS (9)")?;
            d.contains(expr, &str_operand(&m.value, &format!("{ctx}.value"))?, params)
        }
    })
}

/// Limits and clock of one query execution.
#[derive(Debug, Clone, Copy)]
pub struct QueryContext {
    /// Now, µs since the epoch.
    pub now_us: u64,
    /// Oldest time the collector keeps data for (now − retention).
    pub data_start_us: u64,
    /// Most rows a result may have.
    pub max_rows: usize,
}

/// A compiled statement.
#[derive(Debug, Clone)]
pub struct CompiledQuery {
    /// The SQL text.
    pub sql: String,
    /// Bound parameters in order (none where the dialect writes literals).
    pub params: Vec<Param>,
    /// Output field names in order.
    pub fields: Vec<String>,
    /// Set when the statement keeps only the first flows by a counter ([`Source::top`]): a
    /// backend that merges rows when reading may find those flows with statements of its
    /// own before it runs this one.
    pub top: Option<TopFlows>,
}

/// The first `limit` flows of FlowRecordTable whose life meets `start_us..=end_us`, by the
/// largest value of counter `column` in their rows, descending, missing values last
/// ([`Source::top`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopFlows {
    /// The counter's column ([`Column::sql`]).
    pub column: &'static str,
    /// How many flows.
    pub limit: u64,
    /// Window start (µs).
    pub start_us: i64,
    /// Window end (µs).
    pub end_us: i64,
}

/// Validates `req` and compiles it into the SQL of dialect `d`.
pub fn compile(req: &QueryRequest, ctx: &QueryContext, d: &dyn Dialect) -> Result<CompiledQuery, QueryError> {
    let table = Table::from_name(&req.table).ok_or_else(|| QueryError::UnknownTable(req.table.clone()))?;
    let map_time = |e: TimeError| bad(format!("{e}"));
    let start = crate::time::parse_time(&req.start_time, ctx.now_us)
        .map_err(|e| bad(format!("start_time: {}", map_time(e))))?;
    let end =
        crate::time::parse_time(&req.end_time, ctx.now_us).map_err(|e| bad(format!("end_time: {}", map_time(e))))?;
    if end < start {
        return Err(bad(format!("end_time ({end}) is before start_time ({start})")));
    }
    let w = resolve_query_window(&req.start_time, &req.end_time, ctx.data_start_us, ctx.now_us)
        .map_err(|e| bad(e.to_string()))?;
    let (ws, we) = (i64::try_from(w.start_us).unwrap_or(i64::MAX), i64::try_from(w.end_us).unwrap_or(i64::MAX));

    let mut sels = Vec::new();
    for (k, f) in req.select_fields.iter().enumerate() {
        if req.select_fields[..k].contains(f) {
            return Err(bad(format!("select_fields: `{f}` listed twice")));
        }
        sels.push(resolve_select(table, f)?);
    }
    let aggregated = sels.iter().any(|s| matches!(s, Sel::Sum(_)));
    // The where clause is validated first: the source needs every column the statement uses.
    let mut where_cols: Vec<Vec<&'static Column>> = Vec::new();
    for (k, and) in req.where_.iter().enumerate() {
        let mut cols = Vec::new();
        for (j, m) in and.iter().enumerate() {
            let col = table
                .column(&m.name)
                .ok_or_else(|| bad(format!("where[{k}][{j}].name: unknown field `{}` for {}", m.name, table.name())))?;
            cols.push(col);
        }
        where_cols.push(cols);
    }
    let mut used: Vec<&'static Column> = Vec::new();
    let mut use_col = |c: &'static Column| {
        if !used.iter().any(|u| u.sql == c.sql) {
            used.push(c);
        }
    };
    for sel in &sels {
        match sel {
            Sel::Col(c) | Sel::Sum(c) => use_col(c),
            Sel::TBucket(_) => use_col(table.column("T").expect("series tables have T")),
        }
    }
    where_cols.iter().flatten().for_each(|c| use_col(c));
    if req.dir.is_some() {
        use_col(table.column("direction_ing").expect("flow tables have direction_ing"));
    }

    let mut params: Vec<Param> = Vec::new();
    let top = match (table, req.sort_fields.as_slice(), req.limit) {
        (Table::FlowRecord, [f], Some(limit))
            if req.descending
                && req.where_.is_empty()
                && req.filter.is_empty()
                && req.dir.is_none()
                && MONOTONIC_AGGREGATES.contains(&f.as_str()) =>
        {
            table.column(f).map(|c| (c, limit))
        }
        _ => None,
    };
    // The where clause's conditions on what identifies a flow, for a backend that merges
    // rows (see `Source::prefilter`): in every OR term, its identity terms (a term without
    // any: no prefilter).
    let mut prefilter_terms = Vec::new();
    if table == Table::FlowRecord && !req.where_.is_empty() {
        let mut scratch = Vec::new();
        for (k, and) in req.where_.iter().enumerate() {
            let mut terms = Vec::new();
            for (j, m) in and.iter().enumerate() {
                let col = where_cols[k][j];
                if FLOW_IDENTITY_COLUMNS.contains(&col.sql) {
                    let ctx = format!("where[{k}][{j}]");
                    terms.push(compile_match(m, col.sql, col.kind, &ctx, false, d, &mut scratch)?);
                }
            }
            if terms.is_empty() {
                prefilter_terms.clear();
                break;
            }
            prefilter_terms.push(format!("({})", terms.join(" AND ")));
        }
    }
    let prefilter = (!prefilter_terms.is_empty()).then(|| prefilter_terms.join(" OR "));
    let source = Source { table, start_us: ws, end_us: we, columns: &used, top, prefilter: prefilter.as_deref() };
    let (from, window) = d.source(&source, &mut params);
    let mut sql = String::from("SELECT ");
    for (k, sel) in sels.iter().enumerate() {
        if k > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!("{} AS c{k}", sel.sql(d)));
    }
    sql.push_str(&format!(" FROM {from} WHERE {window}"));
    if let Some(dir) = req.dir {
        sql.push_str(&format!(" AND direction_ing = {}", d.bind(Param::Int(dir), &mut params)));
    }
    if !req.where_.is_empty() {
        let mut ors = Vec::new();
        for (k, and) in req.where_.iter().enumerate() {
            let mut terms = Vec::new();
            for (j, m) in and.iter().enumerate() {
                let col = where_cols[k][j];
                terms.push(compile_match(m, col.sql, col.kind, &format!("where[{k}][{j}]"), false, d, &mut params)?);
            }
            ors.push(format!("({})", terms.join(" AND ")));
        }
        sql.push_str(&format!(" AND ({})", ors.join(" OR ")));
    }
    let mut filter_sql = String::new();
    if !req.filter.is_empty() {
        let mut ors = Vec::new();
        for (k, and) in req.filter.iter().enumerate() {
            let mut terms = Vec::new();
            for (j, m) in and.iter().enumerate() {
                let ctx = format!("filter[{k}][{j}]");
                let pos = req
                    .select_fields
                    .iter()
                    .position(|f| *f == m.name)
                    .ok_or_else(|| bad(format!("{ctx}.name: `{}` is not in select_fields", m.name)))?;
                let expr = format!("c{pos}");
                terms.push(compile_match(m, &expr, sels[pos].kind(), &ctx, true, d, &mut params)?);
            }
            ors.push(format!("({})", terms.join(" AND ")));
        }
        filter_sql = ors.join(" OR ");
    }
    if aggregated {
        let groups: Vec<String> =
            sels.iter().enumerate().filter(|(_, s)| !matches!(s, Sel::Sum(_))).map(|(k, _)| format!("c{k}")).collect();
        if !groups.is_empty() {
            sql.push_str(&format!(" GROUP BY {}", groups.join(", ")));
        }
        if !filter_sql.is_empty() {
            sql.push_str(&format!(" HAVING {filter_sql}"));
        }
    } else if !filter_sql.is_empty() {
        // Result columns are aliases, usable in an outer WHERE: wrap.
        sql = format!("SELECT * FROM ({sql}) WHERE {filter_sql}");
    }
    if !req.sort_fields.is_empty() {
        let mut keys = Vec::new();
        for f in &req.sort_fields {
            let pos = req
                .select_fields
                .iter()
                .position(|s| s == f)
                .ok_or_else(|| bad(format!("sort_fields: `{f}` is not in select_fields")))?;
            keys.push(d.order_key(&format!("c{pos}"), req.descending));
        }
        sql.push_str(&format!(" ORDER BY {}", keys.join(", ")));
    }
    // One row more than allowed tells a result that is too large; at most i64::MAX (SQL).
    let most = (ctx.max_rows as u64).saturating_add(1).min(i64::MAX as u64);
    let bound = req.limit.map_or(most, |l| l.min(most));
    sql.push_str(&format!(" LIMIT {bound}"));
    let top = top.map(|(c, limit)| TopFlows { column: c.sql, limit, start_us: ws, end_us: we });
    Ok(CompiledQuery { sql, params, fields: req.select_fields.clone(), top })
}

/// Compiles a query for `store`'s dialect, runs it there and returns the `{"value": [...]}`
/// body.
pub fn run(store: &dyn Backend, req: &QueryRequest, ctx: &QueryContext) -> Result<Value, QueryError> {
    let q = compile(req, ctx, store.dialect())?;
    let rows = store.fetch(&q)?;
    if rows.len() > ctx.max_rows && req.limit.is_none_or(|l| l > ctx.max_rows as u64) {
        return Err(QueryError::TooLarge(ctx.max_rows));
    }
    let out = rows
        .into_iter()
        .map(|values| Value::Object(q.fields.iter().cloned().zip(values).collect::<Map<String, Value>>()))
        .collect();
    let mut body = Map::new();
    body.insert("value".into(), Value::Array(out));
    Ok(Value::Object(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::IngestMsg;
    use crate::model::FlowRecordInput;
    use crate::store::testing::{on_both_backends, Kind, TestStore};
    use serde_json::json;

    const NOW: u64 = 1_700_000_000_000_000;
    const SEC: i64 = 1_000_000;

    fn ctx() -> QueryContext {
        QueryContext { now_us: NOW, data_start_us: NOW - 86_400_000_000, max_rows: 1000 }
    }

    fn rec(uuid: &str, t: i64, bytes: i64, pkts: i64) -> FlowRecordInput {
        FlowRecordInput {
            vrouter: "host1".into(),
            timestamp_us: t,
            flowuuid: uuid.into(),
            direction_ing: 1,
            sourcevn: "default-domain:demo:net1".into(),
            sourceip: "10.1.1.3".into(),
            destvn: "default-domain:demo:net2".into(),
            destip: "10.2.2.3".into(),
            protocol: 6,
            sport: 33000u16 as i16,
            dport: 80,
            setup_time: Some(t),
            bytes: Some(bytes),
            packets: Some(pkts),
            action: Some("pass".into()),
            ..Default::default()
        }
    }

    /// Runs a query on what was written.
    fn q(s: &mut TestStore, body: Value) -> Result<Vec<Value>, QueryError> {
        s.commit();
        let req = QueryRequest::from_json(body.to_string().as_bytes())?;
        let r = run(&*s.store, &req, &ctx())?;
        Ok(r["value"].as_array().unwrap().clone())
    }

    fn base(table: &str, fields: &[&str]) -> Value {
        json!({"table": table, "start_time": "now-1h", "end_time": "now", "select_fields": fields})
    }

    /// Two flows, each with three samples; the second is mirrored to two analyzers.
    fn load(s: &mut TestStore) {
        let t0 = NOW as i64 - 600 * SEC;
        for (k, (b, p)) in [(100, 1), (250, 3), (400, 5)].into_iter().enumerate() {
            let mut r = rec("f1", t0 + k as i64 * 10 * SEC, b, p);
            r.diff_bytes = Some([100, 150, 150][k]);
            r.diff_packets = Some([1, 2, 2][k]);
            s.flow(&r);
        }
        for (k, (b, p)) in [(1000, 10), (3000, 30), (6000, 60)].into_iter().enumerate() {
            let mut r = rec("f2", t0 + 5 * SEC + k as i64 * 10 * SEC, b, p);
            r.sport = 40000u16 as i16;
            r.dport = 443u16 as i16;
            r.protocol = 17;
            r.action = Some("pass|mirror".into());
            r.analyzer_name = Some("default-domain:demo:analyzer1".into());
            r.mirror_bytes = Some(b + 2 * p * (k as i64 + 1));
            r.mirror_packets = Some(p);
            r.sec_analyzer_name = Some("default-domain:demo:analyzer2".into());
            r.sec_mirror_bytes = Some(b);
            r.sec_mirror_packets = Some(p);
            s.flow(&r);
        }
    }

    fn flow_record_aggregates_are_exact(kind: Kind) {
        let Some(mut s) = TestStore::open(kind, "query") else { return };
        load(&mut s);
        let mut body = base(
            "FlowRecordTable",
            &[
                "UuidKey",
                "agg-bytes",
                "agg-packets",
                "agg-mir-bytes",
                "agg-mir-packets",
                "agg-sec-mir-bytes",
                "agg-sec-mir-packets",
                "analyzer_name",
                "sec_analyzer_name",
                "sport",
                "protocol",
                "vrouter",
            ],
        );
        body["sort_fields"] = json!(["UuidKey"]);
        let rows = q(&mut s, body).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[0],
            json!({"UuidKey": "f1", "agg-bytes": 400, "agg-packets": 5, "agg-mir-bytes": null,
                   "agg-mir-packets": null, "agg-sec-mir-bytes": null, "agg-sec-mir-packets": null,
                   "analyzer_name": null, "sec_analyzer_name": null, "sport": 33000, "protocol": 6,
                   "vrouter": "host1"})
        );
        assert_eq!(
            rows[1],
            json!({"UuidKey": "f2", "agg-bytes": 6000, "agg-packets": 60, "agg-mir-bytes": 6360,
                   "agg-mir-packets": 60, "agg-sec-mir-bytes": 6000, "agg-sec-mir-packets": 60,
                   "analyzer_name": "default-domain:demo:analyzer1",
                   "sec_analyzer_name": "default-domain:demo:analyzer2", "sport": 40000, "protocol": 17,
                   "vrouter": "host1"})
        );
    }

    fn late_older_sample_does_not_lower_aggregates(kind: Kind) {
        let Some(mut s) = TestStore::open(kind, "query") else { return };
        let t = NOW as i64 - 60 * SEC;
        let mut r = rec("f", t, 500, 5);
        r.mirror_bytes = Some(50);
        s.flow(&r);
        let mut old = rec("f", t - SEC, 200, 2);
        old.mirror_bytes = Some(20);
        s.flow(&old);
        let rows = q(&mut s, base("FlowRecordTable", &["agg-bytes", "agg-packets", "agg-mir-bytes"])).unwrap();
        assert_eq!(rows, vec![json!({"agg-bytes": 500, "agg-packets": 5, "agg-mir-bytes": 50})]);
        // Diff-only samples add up.
        let mut d = rec("g", t, 0, 0);
        d.bytes = None;
        d.packets = None;
        d.diff_bytes = Some(70);
        d.diff_packets = Some(7);
        s.flow(&d);
        s.flow(&d);
        let mut body = base("FlowRecordTable", &["agg-bytes", "agg-packets"]);
        body["where"] = json!([[{"name": "UuidKey", "value": "g", "op": 1}]]);
        assert_eq!(q(&mut s, body).unwrap(), vec![json!({"agg-bytes": 140, "agg-packets": 14})]);
    }

    fn series_sums_and_buckets(kind: Kind) {
        let Some(mut s) = TestStore::open(kind, "query") else { return };
        load(&mut s);
        // Sum over everything per flow equals the record aggregates.
        let mut body = base(
            "FlowSeriesTable",
            &["UuidKey", "SUM(bytes)", "SUM(packets)", "SUM(mir-bytes)", "SUM(mir-packets)", "SUM(sec-mir-bytes)"],
        );
        body["sort_fields"] = json!(["UuidKey"]);
        let rows = q(&mut s, body).unwrap();
        assert_eq!(
            rows,
            vec![
                json!({"UuidKey": "f1", "SUM(bytes)": 400, "SUM(packets)": 5, "SUM(mir-bytes)": 0,
                       "SUM(mir-packets)": 0, "SUM(sec-mir-bytes)": 0}),
                json!({"UuidKey": "f2", "SUM(bytes)": 6000, "SUM(packets)": 60, "SUM(mir-bytes)": 6360,
                       "SUM(mir-packets)": 60, "SUM(sec-mir-bytes)": 6000}),
            ]
        );
        // Raw rows: the diffs.
        let mut body = base("FlowSeriesTable", &["T", "bytes", "packets", "mir-bytes"]);
        body["where"] = json!([[{"name": "UuidKey", "value": "f2"}]]);
        body["sort_fields"] = json!(["T"]);
        let rows = q(&mut s, body).unwrap();
        let diffs: Vec<_> = rows.iter().map(|r| (r["bytes"].clone(), r["mir-bytes"].clone())).collect();
        assert_eq!(diffs, vec![(json!(1000), json!(1020)), (json!(2000), json!(2100)), (json!(3000), json!(3240))]);
        // 60 s buckets: samples at t0, t0+10, t0+20 (f1) and t0+5, +15, +25 (f2); t0 = NOW-600 s.
        let mut body = base("FlowSeriesTable", &["T=60", "SUM(packets)"]);
        body["sort_fields"] = json!(["T=60"]);
        let rows = q(&mut s, body).unwrap();
        let total: i64 = rows.iter().map(|r| r["SUM(packets)"].as_i64().unwrap()).sum();
        assert_eq!(total, 65);
        for r in &rows {
            assert_eq!(r["T=60"].as_i64().unwrap() % 60_000_000, 0);
        }
    }

    fn where_or_of_ands_and_numeric_ops(kind: Kind) {
        let Some(mut s) = TestStore::open(kind, "query") else { return };
        load(&mut s);
        let mut uuids = |body: Value| -> Vec<String> {
            let mut body = body;
            body["sort_fields"] = json!(["UuidKey"]);
            q(&mut s, body).unwrap().iter().map(|r| r["UuidKey"].as_str().unwrap().to_owned()).collect()
        };
        let with_where = |w: Value| {
            let mut b = base("FlowRecordTable", &["UuidKey"]);
            b["where"] = w;
            b
        };
        assert_eq!(uuids(with_where(json!([[{"name": "dport", "value": "443", "op": 1}]]))), ["f2"]);
        assert_eq!(uuids(with_where(json!([[{"name": "dport", "value": 443, "op": 2}]]))), ["f1"]);
        assert_eq!(uuids(with_where(json!([[{"name": "sport", "value": 33000, "value2": 35000, "op": 3}]]))), ["f1"]);
        assert_eq!(uuids(with_where(json!([[{"name": "sport", "value": 33000, "value2": 35000, "op": 4}]]))), ["f2"]);
        assert_eq!(uuids(with_where(json!([[{"name": "agg-bytes", "value": 400, "op": 5}]]))), ["f1"]);
        assert_eq!(uuids(with_where(json!([[{"name": "agg-bytes", "value": 401, "op": 6}]]))), ["f2"]);
        assert_eq!(uuids(with_where(json!([[{"name": "action", "value": "pass|", "op": 7}]]))), ["f2"]);
        assert_eq!(uuids(with_where(json!([[{"name": "action", "value": "mirror", "op": 9}]]))), ["f2"]);
        // AND inside, OR between.
        assert_eq!(
            uuids(with_where(json!([[{"name": "protocol", "value": 6}, {"name": "dport", "value": 443}]]))),
            Vec::<String>::new()
        );
        assert_eq!(
            uuids(with_where(json!([[{"name": "protocol", "value": 6}], [{"name": "dport", "value": 443}]]))),
            ["f1", "f2"]
        );
        // dir
        let mut b = with_where(json!([]));
        b["dir"] = json!(0);
        assert!(uuids(b).is_empty());
    }

    fn filter_sort_limit(kind: Kind) {
        let Some(mut s) = TestStore::open(kind, "query") else { return };
        load(&mut s);
        let mut b = base("FlowRecordTable", &["UuidKey", "agg-bytes", "action"]);
        b["filter"] = json!([{"name": "action", "value": "^pass\\|mir", "op": 8}]);
        assert_eq!(q(&mut s, b).unwrap(), vec![json!({"UuidKey": "f2", "agg-bytes": 6000, "action": "pass|mirror"})]);
        let mut b = base("FlowRecordTable", &["UuidKey", "agg-bytes"]);
        b["sort_fields"] = json!(["agg-bytes"]);
        b["sort"] = json!(2);
        b["limit"] = json!(1);
        assert_eq!(q(&mut s, b).unwrap(), vec![json!({"UuidKey": "f2", "agg-bytes": 6000})]);
        // Filter on an aggregate of the series table.
        let mut b = base("FlowSeriesTable", &["UuidKey", "SUM(bytes)"]);
        b["filter"] = json!([[{"name": "SUM(bytes)", "value": 1000, "op": 5}]]);
        assert_eq!(q(&mut s, b).unwrap(), vec![json!({"UuidKey": "f1", "SUM(bytes)": 400})]);
    }

    fn time_windows(kind: Kind) {
        let Some(mut s) = TestStore::open(kind, "query") else { return };
        load(&mut s); // samples between now-600 s and now-575 s
        let mut count = |table: &str, start: Value, end: Value| {
            let mut b = base(table, &["UuidKey"]);
            b["start_time"] = start;
            b["end_time"] = end;
            q(&mut s, b).unwrap().len()
        };
        assert_eq!(count("FlowRecordTable", json!("now-5m"), json!("now")), 0);
        assert_eq!(count("FlowRecordTable", json!("now-10m"), json!("now")), 2);
        assert_eq!(count("FlowSeriesTable", json!("now-10m"), json!("now")), 6);
        // Absolute µs, inclusive ends: exactly the first sample of f1.
        let t0 = NOW - 600_000_000;
        assert_eq!(count("FlowSeriesTable", json!(t0), json!(t0)), 1);
        assert_eq!(count("FlowSeriesTable", json!(t0.to_string()), json!((t0 + 5_000_000).to_string())), 2);
        // f1 lives t0..t0+20 s: a window inside its life finds it even without a sample in it.
        assert_eq!(count("FlowRecordTable", json!(t0 + 1), json!(t0 + 2)), 1);
        assert_eq!(count("FlowSeriesTable", json!(t0 + 1), json!(t0 + 2)), 0);
    }

    fn err(s: &mut TestStore, body: &str) -> (u16, String) {
        s.commit();
        let r = QueryRequest::from_json(body.as_bytes()).and_then(|req| run(&*s.store, &req, &ctx()));
        let e = r.unwrap_err();
        (e.http_status(), e.to_string())
    }

    /// The where clause's terms on what identifies a flow reach a merging backend's source:
    /// every OR term's, or none when one OR term has none.
    #[test]
    fn identity_terms_prefilter_the_merged_rows() {
        let d = &crate::store::clickhouse::ClickHouseDialect;
        let sql = |w: Value| {
            let mut body = base("FlowRecordTable", &["UuidKey", "agg-bytes"]);
            body["where"] = w;
            let req = QueryRequest::from_json(body.to_string().as_bytes()).unwrap();
            compile(&req, &ctx(), d).unwrap().sql
        };
        // What the rows are read with, before the merge.
        let rows_where = |q: &str| {
            let from = q.find("FROM flow_record WHERE ").expect("the raw rows");
            q[from..from + q[from..].find(") GROUP BY").expect("the merge")].to_owned()
        };
        let q = sql(json!([[{"name": "sourcevn", "value": "vn3", "op": 1},
                            {"name": "sport", "value": 2000, "value2": 3000, "op": 3}],
                           [{"name": "UuidKey", "value": "u1", "op": 1}]]));
        let w = rows_where(&q);
        assert!(w.ends_with(" AND (((sport >= 2000 AND sport <= 3000)) OR (uuid = 'u1'))"), "{q}");
        assert!(!w.contains("sourcevn"), "a VN is not an identity column: {q}");
        let q =
            sql(json!([[{"name": "sport", "value": 2000, "op": 1}], [{"name": "sourcevn", "value": "vn3", "op": 1}]]));
        assert!(!rows_where(&q).contains("sport"), "one OR term without identity terms: {q}");
    }

    fn errors_have_codes_and_messages(kind: Kind) {
        let Some(mut s) = TestStore::open(kind, "query") else { return };
        load(&mut s);
        let ok = r#""start_time":"now-1h","end_time":"now","select_fields":["UuidKey"]"#;
        let cases: &[(&str, u16, &str)] = &[
            ("{", 400, "invalid JSON"),
            ("[]", 400, "must be a JSON object"),
            (&format!(r#"{{"table":"MessageTable",{ok}}}"#), 410, "unknown table `MessageTable`"),
            (&format!(r#"{{"table":"FlowRecordTable",{ok},"bogus":1}}"#), 400, "unknown key `bogus`"),
            (
                r#"{"table":"FlowRecordTable","start_time":"now-1h","end_time":"now","select_fields":[]}"#,
                400,
                "select_fields: missing or empty",
            ),
            (
                r#"{"table":"FlowRecordTable","start_time":"now-1h","end_time":"now","select_fields":["nope"]}"#,
                400,
                "unknown field `nope`",
            ),
            (
                r#"{"table":"FlowRecordTable","start_time":"now-1x","end_time":"now","select_fields":["UuidKey"]}"#,
                400,
                "start_time: invalid time expression `now-1x`",
            ),
            (
                r#"{"table":"FlowRecordTable","start_time":"now","end_time":"now-1h","select_fields":["UuidKey"]}"#,
                400,
                "is before start_time",
            ),
            (
                r#"{"table":"FlowRecordTable","start_time":-5,"end_time":"now","select_fields":["UuidKey"]}"#,
                400,
                "start_time: -5 is not",
            ),
            (
                r#"{"table":"FlowRecordTable","start_time":"now-99999999999999d","end_time":"now","select_fields":["UuidKey"]}"#,
                400,
                "out of range",
            ),
            (
                &format!(r#"{{"table":"FlowRecordTable",{ok},"where":[[{{"name":"sport","value":"abc","op":1}}]]}}"#),
                400,
                "`abc` is not an integer",
            ),
            (
                &format!(r#"{{"table":"FlowRecordTable",{ok},"where":[[{{"name":"sport","value":1,"op":42}}]]}}"#),
                400,
                "not a match op",
            ),
            (
                &format!(r#"{{"table":"FlowRecordTable",{ok},"where":[[{{"name":"sport","value":1,"op":3}}]]}}"#),
                400,
                "value2: required",
            ),
            (
                &format!(r#"{{"table":"FlowRecordTable",{ok},"where":[[{{"name":"action","value":"x","op":8}}]]}}"#),
                400,
                "only allowed in filter",
            ),
            (
                &format!(r#"{{"table":"FlowRecordTable",{ok},"where":[[{{"name":"sport","value":"1","op":7}}]]}}"#),
                400,
                "applies to string fields",
            ),
            (
                &format!(r#"{{"table":"FlowRecordTable",{ok},"where":[[{{"name":"bad","value":1}}]]}}"#),
                400,
                "where[0][0].name: unknown field `bad`",
            ),
            (
                &format!(r#"{{"table":"FlowRecordTable",{ok},"filter":[{{"name":"action","value":"(","op":8}}]}}"#),
                400,
                "filter[0][0].name: `action` is not in select_fields",
            ),
            (
                r#"{"table":"FlowRecordTable","start_time":"now-1h","end_time":"now","select_fields":["action"],"filter":[{"name":"action","value":"(","op":8}]}"#,
                400,
                "invalid regular expression",
            ),
            (
                &format!(r#"{{"table":"FlowRecordTable",{ok},"sort_fields":["agg-bytes"]}}"#),
                400,
                "sort_fields: `agg-bytes` is not in select_fields",
            ),
            (&format!(r#"{{"table":"FlowRecordTable",{ok},"limit":0}}"#), 400, "limit: 0 is not a positive integer"),
            (&format!(r#"{{"table":"FlowRecordTable",{ok},"sort":3}}"#), 400, "sort: 3"),
            (
                r#"{"table":"FlowRecordTable","start_time":"now-1h","end_time":"now","select_fields":["SUM(bytes)"]}"#,
                400,
                "unknown field `SUM(bytes)`",
            ),
            (
                r#"{"table":"FlowSeriesTable","start_time":"now-1h","end_time":"now","select_fields":["SUM(action)"]}"#,
                400,
                "SUM applies to",
            ),
            (
                r#"{"table":"FlowSeriesTable","start_time":"now-1h","end_time":"now","select_fields":["T=0"]}"#,
                400,
                "granularity",
            ),
        ];
        for (body, code, msg) in cases {
            let (c, m) = err(&mut s, body);
            assert_eq!(c, *code, "{body}: {m}");
            assert!(m.contains(msg), "{body}: `{m}` lacks `{msg}`");
        }
    }

    fn result_bound_is_enforced(kind: Kind) {
        let Some(mut s) = TestStore::open(kind, "query") else { return };
        s.write(IngestMsg::Flows((0..30).map(|k| rec(&format!("u{k}"), NOW as i64 - 10 * SEC, 1, 1)).collect()));
        s.commit();
        let small = QueryContext { max_rows: 10, ..ctx() };
        let req = QueryRequest::from_json(base("FlowRecordTable", &["UuidKey"]).to_string().as_bytes()).unwrap();
        let e = run(&*s.store, &req, &small).unwrap_err();
        assert_eq!(e.http_status(), 403);
        let mut b = base("FlowRecordTable", &["UuidKey"]);
        b["limit"] = json!(10);
        let req = QueryRequest::from_json(b.to_string().as_bytes()).unwrap();
        assert_eq!(run(&*s.store, &req, &small).unwrap()["value"].as_array().unwrap().len(), 10);
    }

    /// A copy of a stored sample (a re-send after a reconnect, a restarted exporter) adds a
    /// series row without bytes; a missed sample shows in the series only; a sampled
    /// record's scaled diff is kept.
    fn resent_samples_add_nothing_to_the_series(kind: Kind) {
        let Some(mut s) = TestStore::open(kind, "query") else { return };
        let t = NOW as i64 - 60 * SEC;
        let sample = |dt: i64, bytes: i64, packets: i64, diff: (i64, i64)| FlowRecordInput {
            diff_bytes: Some(diff.0),
            diff_packets: Some(diff.1),
            ..rec("f", t + dt, bytes, packets)
        };
        let sums = |s: &mut TestStore| {
            let rec = q(s, base("FlowRecordTable", &["agg-bytes", "agg-packets"])).unwrap();
            let series = q(s, base("FlowSeriesTable", &["SUM(bytes)", "SUM(packets)"])).unwrap();
            let rows = q(s, base("FlowSeriesTable", &["T"])).unwrap().len();
            (rec[0]["agg-bytes"].clone(), rec[0]["agg-packets"].clone(), series[0].clone(), rows)
        };
        s.flow(&sample(0, 100, 1, (100, 1)));
        let second = sample(1, 250, 3, (150, 2));
        s.flow(&second);
        assert_eq!(sums(&mut s), (json!(250), json!(3), json!({"SUM(bytes)": 250, "SUM(packets)": 3}), 2));
        s.flow(&second);
        s.flow(&sample(2, 250, 3, (150, 2)));
        assert_eq!(sums(&mut s), (json!(250), json!(3), json!({"SUM(bytes)": 250, "SUM(packets)": 3}), 4));
        s.flow(&sample(4, 400, 6, (100, 2)));
        assert_eq!(sums(&mut s), (json!(400), json!(6), json!({"SUM(bytes)": 350, "SUM(packets)": 5}), 5));
        s.flow(&sample(5, 410, 7, (500, 50)));
        assert_eq!(sums(&mut s), (json!(410), json!(7), json!({"SUM(bytes)": 850, "SUM(packets)": 55}), 6));
    }

    /// SQLite's retention is to the microsecond (ClickHouse's by day: see the REST tests).
    #[test]
    fn retention_purges_old_flows() {
        let dir = tempfile::tempdir().unwrap();
        let (store, mut w) = crate::store::SqliteStore::open(dir.path()).unwrap();
        let t0 = NOW as i64 - 600 * SEC;
        for (k, b) in [100, 250, 400].into_iter().enumerate() {
            w.apply_flow_log(&rec("f1", t0 + k as i64 * 10 * SEC, b, 1)).unwrap();
        }
        for (k, b) in [1000, 3000, 6000].into_iter().enumerate() {
            w.apply_flow_log(&rec("f2", t0 + 5 * SEC + k as i64 * 10 * SEC, b, 1)).unwrap();
        }
        // f1 last sample at t0+20 s, f2 at t0+25 s: a horizon between them keeps only f2.
        let (r, s) = w.purge_flows_before(t0 + 22 * SEC).unwrap();
        assert_eq!((r, s), (1, 5));
        assert_eq!(Backend::flow_counts(&store).unwrap(), (1, 1));
    }

    /// A mixed load: three vRouters, flows with several samples (some mirrored to one or two
    /// analyzers, some diff-only, a late older sample, re-sent copies, optional fields left
    /// out), over twenty minutes.
    fn mixed_load(s: &mut TestStore) {
        let t0 = NOW as i64 - 1200 * SEC;
        for f in 0..40i64 {
            let vrouter = ["host1", "host2", "host3"][(f % 3) as usize];
            let uuid = format!("{f:08x}-0000-4000-8000-000000000000");
            let mut cum = (0i64, 0i64);
            for k in 0..(1 + f % 4) {
                let (db, dp) = (100 * (f + 1) + 7 * k, 1 + (f + k) % 5);
                cum = (cum.0 + db, cum.1 + dp);
                let mut r = rec(&uuid, t0 + f * 17 * SEC + k * 45 * SEC, cum.0, cum.1);
                r.vrouter = vrouter.into();
                r.sport = (10_000 + f * 13) as i16;
                r.dport = [80, 443, 53][(f % 3) as usize];
                r.protocol = if f % 3 == 2 { 17 } else { 6 };
                r.sourcevn = format!("default-domain:demo:vn{}", f % 4);
                r.diff_bytes = Some(db);
                r.diff_packets = Some(dp);
                if f % 5 == 0 {
                    r.action = Some("pass|mirror".into());
                    r.analyzer_name = Some(format!("default-domain:demo:an{}", f % 2));
                    r.mirror_bytes = Some(cum.0 + 24 * cum.1);
                    r.mirror_packets = Some(cum.1);
                    if f % 10 == 0 {
                        r.sec_analyzer_name = Some("default-domain:demo:an-sec".into());
                        r.sec_mirror_bytes = Some(cum.0);
                        r.sec_mirror_packets = Some(cum.1);
                    }
                }
                if k > 0 && f % 7 == 0 {
                    // A later sample that leaves the optional fields out.
                    r.action = None;
                    r.analyzer_name = None;
                }
                if f % 11 == 0 {
                    r.bytes = None;
                    r.packets = None;
                }
                s.flow(&r);
                if f % 6 == 0 {
                    s.flow(&r); // re-sent copy
                }
            }
            if f % 9 == 0 {
                // A late, older sample.
                let mut old = rec(&uuid, t0 + f * 17 * SEC - SEC, 1, 1);
                old.vrouter = vrouter.into();
                s.flow(&old);
            }
        }
    }

    fn mixed_queries() -> Vec<Value> {
        let w = |table: &str, fields: &[&str]| json!({"table": table, "start_time": "now-30m", "end_time": "now", "select_fields": fields});
        let all_record: Vec<&str> = FLOW_RECORD_COLUMNS.iter().map(|c| c.name).collect();
        let mut out = Vec::new();
        let mut b = w("FlowRecordTable", &all_record);
        b["sort_fields"] = json!(["UuidKey"]);
        out.push(b);
        let mut b = w("FlowRecordTable", &["UuidKey", "vrouter", "agg-bytes"]);
        b["sort_fields"] = json!(["agg-bytes", "UuidKey"]);
        b["sort"] = json!(2);
        b["limit"] = json!(10);
        out.push(b);
        // Top flows by one counter (ClickHouse merges only their rows); without ties, whose
        // order neither backend specifies.
        for (counter, limit) in [("agg-bytes", 5), ("agg-mir-bytes", 3)] {
            let mut b = w("FlowRecordTable", &["UuidKey", "action", counter]);
            b["sort_fields"] = json!([counter]);
            b["sort"] = json!(2);
            b["limit"] = json!(limit);
            out.push(b);
        }
        let mut b = w("FlowRecordTable", &["analyzer_name", "UuidKey", "agg-mir-bytes", "agg-sec-mir-packets"]);
        b["sort_fields"] = json!(["analyzer_name", "UuidKey"]);
        out.push(b.clone());
        b["sort"] = json!(2);
        out.push(b);
        let mut b = w("FlowRecordTable", &["UuidKey", "action", "sourcevn"]);
        b["where"] = json!([[{"name": "sourcevn", "value": "default-domain:demo:vn", "op": 7},
                             {"name": "sport", "value": 10100, "value2": 10400, "op": 3}],
                            [{"name": "action", "value": "mirror", "op": 9}]]);
        b["filter"] = json!([{"name": "action", "value": "^pass(\\|mirror)?$", "op": 8}]);
        b["sort_fields"] = json!(["UuidKey"]);
        out.push(b);
        let mut b = w("FlowRecordTable", &["UuidKey"]);
        b["start_time"] = json!((NOW - 1000 * 1_000_000).to_string());
        b["end_time"] = json!((NOW - 900 * 1_000_000).to_string());
        b["sort_fields"] = json!(["UuidKey"]);
        out.push(b);
        let mut b = w(
            "FlowSeriesTable",
            &[
                "T=60",
                "sourcevn",
                "SUM(bytes)",
                "SUM(packets)",
                "SUM(mir-bytes)",
                "SUM(mir-packets)",
                "SUM(sec-mir-bytes)",
                "SUM(sec-mir-packets)",
            ],
        );
        b["sort_fields"] = json!(["T=60", "sourcevn"]);
        out.push(b);
        let mut b = w("FlowSeriesTable", &["vrouter", "SUM(bytes)", "SUM(mir-bytes)"]);
        b["sort_fields"] = json!(["vrouter"]);
        out.push(b);
        let mut b = w("FlowSeriesTable", &["T", "UuidKey", "bytes", "packets", "mir-bytes", "analyzer_name"]);
        b["where"] = json!([[{"name": "protocol", "value": 17}]]);
        b["sort_fields"] = json!(["T", "UuidKey", "bytes"]);
        out.push(b);
        let mut b = w("FlowSeriesTable", &["UuidKey", "SUM(bytes)"]);
        b["filter"] = json!([[{"name": "SUM(bytes)", "value": 1500, "op": 6}]]);
        b["sort_fields"] = json!(["SUM(bytes)", "UuidKey"]);
        b["sort"] = json!(2);
        out.push(b);
        // SUM over no rows: one row of nulls on both.
        let mut b = w("FlowSeriesTable", &["SUM(bytes)"]);
        b["where"] = json!([[{"name": "vrouter", "value": "nowhere"}]]);
        out.push(b);
        let mut b = w("FlowSeriesTable", &["T=300", "SUM(packets)"]);
        b["dir"] = json!(1);
        b["sort_fields"] = json!(["T=300"]);
        out.push(b);
        out
    }

    /// Must-show: the same data gives the same answers on both backends, mirror aggregates
    /// and `T=` series included.
    #[test]
    fn both_backends_answer_identically() {
        let Some(mut ch) = TestStore::open(Kind::ClickHouse, "identical") else { return };
        let mut lite = TestStore::open(Kind::Sqlite, "identical").unwrap();
        mixed_load(&mut lite);
        mixed_load(&mut ch);
        for body in mixed_queries() {
            let a = q(&mut lite, body.clone()).unwrap();
            let b = q(&mut ch, body.clone()).unwrap();
            assert!(!a.is_empty(), "{body}");
            assert_eq!(a, b, "{body}");
        }
    }

    /// Top flows by a counter when one flow's samples fill the top rows (ClickHouse's partial
    /// sort then falls back to every row) and when fewer flows than the limit have a value.
    fn top_flows_with_many_samples_and_missing_values(kind: Kind) {
        let Some(mut s) = TestStore::open(kind, "query") else { return };
        let t = NOW as i64 - 60 * SEC;
        for k in 0..30 {
            s.flow(&rec("big", t + k, 10_000 + k * 100, 100 + k));
        }
        for (k, u) in ["s1", "s2", "s3", "s4"].iter().enumerate() {
            s.flow(&rec(u, t, 100 * (k as i64 + 1), 1));
        }
        let mut m = rec("m", t, 50, 1);
        m.mirror_bytes = Some(5);
        s.flow(&m);
        let top = |s: &mut TestStore, counter: &str, limit: u64| {
            let mut b = base("FlowRecordTable", &["UuidKey", counter]);
            b["sort_fields"] = json!([counter]);
            b["sort"] = json!(2);
            b["limit"] = json!(limit);
            q(s, b).unwrap().iter().map(|r| r["UuidKey"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
        };
        assert_eq!(top(&mut s, "agg-bytes", 3), ["big", "s4", "s3"]);
        // One flow has a mirror counter: the limit is filled with flows without one.
        let t2 = top(&mut s, "agg-mir-bytes", 2);
        assert_eq!((t2.len(), t2[0].as_str()), (2, "m"), "{t2:?}");
    }

    on_both_backends!(
        top_flows_with_many_samples_and_missing_values,
        flow_record_aggregates_are_exact,
        late_older_sample_does_not_lower_aggregates,
        series_sums_and_buckets,
        where_or_of_ands_and_numeric_ops,
        filter_sort_limit,
        time_windows,
        errors_have_codes_and_messages,
        result_bound_is_enforced,
        resent_samples_add_nothing_to_the_series,
    );
}
