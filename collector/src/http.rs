//! The analytics REST API (axum).
//!
//! * `GET /analytics/uves`: the UVE types, `[{"name": "vrouters", "href": …}, …]`;
//!   `GET /analytics/uve-types`: `{"<type>": {"global_system_object": bool}, …}`.
//! * `GET /analytics/uves/<type>s`: the objects of a type, `[{"name": k, "href": …?flat}, …]`.
//! * `GET /analytics/uves/<type>/<name>[?flat]`: one object, raw or flat ([`crate::uve`]);
//!   an unknown name gives `{}` as in the reference API. `<name>` `*` or `prefix*` gives
//!   `{"value": [{"name", "value"(flat)}, …]}`. The reference's filters `sfilt` (source),
//!   `mfilt` (module), `cfilt` (`StructType[:attr]`, comma-separated) and `kfilt` (names,
//!   comma-separated, `prefix*`) apply to all three and make the answer flat; an object left
//!   with nothing is not listed. `ackfilt` (alarms) is refused.
//! * `POST /analytics/uves/<type>` with `{"kfilt": [...], "cfilt": [...], "sfilt": "...",
//!   "mfilt": "..."}` (each optional, lists or comma-separated strings): the matching objects,
//!   `{"value": [{"name", "value"(flat)}, …]}`.
//! * `POST /analytics/query`: [`crate::query`]. With `Expect: 202-accepted` the query is
//!   checked, answered `202 {"href": "/analytics/query/<qid>"}` and run in the background;
//!   `GET /analytics/query/<qid>` gives `{"progress": 0|100, "chunks": [{"start_time",
//!   "end_time", "href": "/analytics/query/<qid>/chunk-final/0"}]}` (or the query's error),
//!   and that chunk the `{"value": [...]}` result. Query ids live in the memory of the
//!   collector that accepted them ([`AsyncQueries`]).
//! * `GET /analytics/tables`, `GET /analytics/table/<t>`, `GET /analytics/table/<t>/schema`:
//!   the queryable tables and their columns ([`crate::query::schema_json`]).
//! * `GET /analytics/collector/stats`: the collector's counters ([`crate::stats`]).
//! * `GET /metrics`: the same counters, and the writer queue's depth and capacity, in the
//!   Prometheus text format 0.0.4 (`collector_<name>_total` for a counter, `collector_<name>`
//!   for a gauge; help from their declaration).
//! * `GET /analytics/traces[?start_time=…&end_time=…&request=<uuid>]`: one row per trace id
//!   (id, request, project, vRouters, first/last time, packets, steps, flow, disposition),
//!   oldest first; `GET /analytics/traces/<id>`: one trace's steps from every vRouter that
//!   exported it, merged in the order of [`crate::trace`]; 404 for an unknown id;
//!   `DELETE /analytics/traces/<id>` removes it (`{"deleted": "<id>"}`; 404 as for reading).
//!   All need a bearer token when tenants or an admin token are configured
//!   ([`crate::trace`]): a tenant reads and deletes only its project's traces.
//! * `GET /analytics/mirror/reconcile[?start_time=…&end_time=…&vrouter=<name>]`: per vRouter
//!   and analyzer, and per rule, the packets of the mirrored flows next to the copies sent,
//!   lost by reason and otherwise explained ([`crate::reconcile`]).
//!
//! Errors are `{"error": "<message>"}` with the status code of the error.

use crate::ingest::IngestHandle;
use crate::model::{uve_table_of, UVE_TYPES};
use crate::query::{self, QueryContext, QueryError, QueryRequest};
use crate::stats::Stats;
use crate::store::{Store, StoreError};
use crate::uve::UveFilter;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// The store (its read side).
    pub store: Store,
    /// Counters.
    pub stats: Arc<Stats>,
    /// The writer queue (for its depth in the stats).
    pub ingest: IngestHandle,
    /// Flow retention (µs): queries are clamped to now − retention.
    pub retention_us: u64,
    /// Most rows a query may return.
    pub query_max_rows: usize,
    /// Who may read which trace.
    pub trace_access: Arc<crate::trace::TraceAccess>,
    /// Asynchronous queries.
    pub async_queries: Arc<AsyncQueries>,
}

/// Most asynchronous queries kept; when full, the oldest finished one is forgotten.
pub const MAX_ASYNC_QUERIES: usize = 64;

/// One asynchronous query: its window and, once done, its result or error.
#[derive(Debug, Clone)]
struct AsyncJob {
    start_us: u64,
    end_us: u64,
    result: Option<Result<Value, (StatusCode, String)>>,
}

/// The asynchronous queries of this collector (in memory: a query id is known only to the
/// collector that accepted it).
#[derive(Debug, Default)]
pub struct AsyncQueries {
    jobs: std::sync::Mutex<std::collections::VecDeque<(String, AsyncJob)>>,
    next: std::sync::atomic::AtomicU64,
}

impl AsyncQueries {
    /// Registers a running query; `None` when every slot holds a running one.
    fn add(&self, start_us: u64, end_us: u64) -> Option<String> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        if jobs.len() >= MAX_ASYNC_QUERIES {
            let done = jobs.iter().position(|(_, j)| j.result.is_some())?;
            jobs.remove(done);
        }
        let n = self.next.fetch_add(1, Relaxed);
        let t = now_us();
        let qid = format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            (t >> 32) as u32,
            (t >> 16) as u16,
            (t & 0xfff) as u16,
            std::process::id() & 0xfff,
            n & 0xffff_ffff_ffff
        );
        jobs.push_back((qid.clone(), AsyncJob { start_us, end_us, result: None }));
        Some(qid)
    }

    fn finish(&self, qid: &str, result: Result<Value, (StatusCode, String)>) {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, j)) = jobs.iter_mut().find(|(q, _)| q == qid) {
            j.result = Some(result);
        }
    }

    fn get(&self, qid: &str) -> Option<AsyncJob> {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.iter().find(|(q, _)| q == qid).map(|(_, j)| j.clone())
    }
}

/// An error reply.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

/// The router.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/analytics/uves", get(uve_types))
        .route("/analytics/uve-types", get(uve_type_info))
        .route("/analytics/uves/:ty", get(uve_list).post(uve_post))
        .route("/analytics/uves/:ty/*name", get(uve_get))
        .route("/analytics/query", post(query_post))
        .route("/analytics/query/:qid", get(query_status))
        .route("/analytics/query/:qid/chunk-final/:n", get(query_chunk))
        .route("/analytics/tables", get(tables))
        .route("/analytics/table/:t", get(table_links))
        .route("/analytics/table/:t/schema", get(table_schema))
        .route("/analytics/collector/stats", get(collector_stats))
        .route("/metrics", get(metrics))
        .route("/analytics/traces", get(trace_list))
        .route("/analytics/traces/:id", get(trace_get).delete(trace_delete))
        .route("/analytics/mirror/reconcile", get(mirror_reconcile))
        .with_state(state)
}

fn base_url(headers: &HeaderMap) -> String {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    format!("http://{host}")
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("handler failed: {e}")))?
}

async fn uve_types(headers: HeaderMap) -> Json<Value> {
    let base = base_url(&headers);
    Json(Value::Array(
        UVE_TYPES
            .iter()
            .map(|(t, _)| json!({"name": format!("{t}s"), "href": format!("{base}/analytics/uves/{t}s")}))
            .collect(),
    ))
}

/// `{"<type>": {"global_system_object": bool}}`: a vRouter is a system object of the whole
/// installation, the others belong to projects.
async fn uve_type_info() -> Json<Value> {
    Json(Value::Object(
        UVE_TYPES.iter().map(|(t, _)| ((*t).to_owned(), json!({"global_system_object": *t == "vrouter"}))).collect(),
    ))
}

fn unknown_type(ty: &str) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        format!(
            "unknown UVE type `{ty}` (types: {})",
            UVE_TYPES.iter().map(|(t, _)| *t).collect::<Vec<_>>().join(", ")
        ),
    )
}

async fn uve_list(
    State(st): State<ApiState>,
    Path(ty): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let singular = ty.strip_suffix('s').unwrap_or(&ty).to_owned();
    let table = uve_table_of(&singular).ok_or_else(|| unknown_type(&ty))?;
    let (_, filter) = uve_params(q.as_deref())?;
    let base = base_url(&headers);
    let names = blocking(move || {
        let mut names = Vec::new();
        for n in st.store.uve_names(table)?.into_iter().filter(|n| filter.keeps_key(n)) {
            if !filter.filters_attrs() || !filter.apply(st.store.uve_attrs(table, &n)?).is_empty() {
                names.push(n);
            }
        }
        Ok(names)
    })
    .await?;
    Ok(Json(Value::Array(
        names
            .into_iter()
            .map(|n| json!({"name": n, "href": format!("{base}/analytics/uves/{singular}/{n}?flat")}))
            .collect(),
    )))
}

/// Query parameters of the UVE GETs: `flat` (with or without a value) asks for the flat
/// form; the filters ([`UveFilter`]) imply it. Other parameters are ignored.
#[derive(Debug, Default, Deserialize)]
struct UveQuery {
    flat: Option<String>,
    sfilt: Option<String>,
    mfilt: Option<String>,
    cfilt: Option<String>,
    kfilt: Option<String>,
    ackfilt: Option<String>,
}

/// Whether the query string asks for the flat form, and its filters.
fn uve_params(q: Option<&str>) -> Result<(bool, UveFilter), ApiError> {
    let q: UveQuery = parse_query(q)?;
    if q.ackfilt.is_some() {
        return Err(bad_request("ackfilt", "alarms are not supported by this collector"));
    }
    let mut f = UveFilter {
        source: q.sfilt.filter(|v| !v.is_empty()),
        module: q.mfilt.filter(|v| !v.is_empty()),
        ..UveFilter::default()
    };
    f.add_structs(q.cfilt.as_deref().unwrap_or("").split(','));
    f.add_keys(q.kfilt.as_deref().unwrap_or("").split(','));
    Ok((q.flat.is_some() || !f.is_empty(), f))
}

/// Decodes a query string (`serde_urlencoded`) into `T`. `serde_urlencoded` decodes
/// leniently (a `%` without two hex digits stays as it is, bytes that are not UTF-8 become
/// U+FFFD); the API refuses both, naming the parameter, as it refuses a parameter given
/// twice.
fn parse_query<T: serde::de::DeserializeOwned + Default>(q: Option<&str>) -> Result<T, ApiError> {
    let Some(q) = q.filter(|q| !q.is_empty()) else { return Ok(T::default()) };
    for kv in q.split('&') {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        let b = v.as_bytes();
        let escapes_ok = b
            .iter()
            .enumerate()
            .all(|(i, &c)| c != b'%' || b.get(i + 1..i + 3).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)));
        if !escapes_ok {
            return Err(bad_request(k, "bad percent-encoding"));
        }
        let plus_as_space = v.replace('+', " ");
        if percent_encoding::percent_decode_str(&plus_as_space).decode_utf8().is_err() {
            return Err(bad_request(k, "not UTF-8"));
        }
    }
    serde_urlencoded::from_str(q).map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("query: {e}")))
}

async fn uve_get(
    State(st): State<ApiState>,
    Path((ty, name)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let table = uve_table_of(&ty).ok_or_else(|| unknown_type(&ty))?;
    let name = name.strip_prefix('/').unwrap_or(&name).to_owned();
    if name.is_empty() {
        return Err(ApiError(StatusCode::BAD_REQUEST, "missing UVE name".into()));
    }
    let (flat, filter) = uve_params(q.as_deref())?;
    blocking(move || {
        if let Some(prefix) = name.strip_suffix('*') {
            let names = st.store.uve_names(table)?.into_iter().filter(|n| n.starts_with(prefix)).collect();
            return Ok(Json(json!({ "value": uve_values(&st, table, names, &filter)? })));
        }
        if !filter.keeps_key(&name) {
            return Ok(Json(json!({})));
        }
        let attrs = filter.apply(st.store.uve_attrs(table, &name)?);
        Ok(Json(if flat { crate::uve::flat_json(&attrs) } else { crate::uve::raw_json(&attrs) }))
    })
    .await
}

/// `[{"name", "value"(flat)}, …]` of the objects `names` that pass `filter` and keep
/// something.
fn uve_values(st: &ApiState, table: &str, names: Vec<String>, filter: &UveFilter) -> Result<Vec<Value>, ApiError> {
    let mut out = Vec::new();
    for n in names.into_iter().filter(|n| filter.keeps_key(n)) {
        let attrs = filter.apply(st.store.uve_attrs(table, &n)?);
        if !attrs.is_empty() {
            out.push(json!({"name": n, "value": crate::uve::flat_json(&attrs)}));
        }
    }
    Ok(out)
}

/// The strings of a POST filter: a list of strings or one comma-separated string.
fn filter_strings(v: &Value, key: &str) -> Result<Vec<String>, ApiError> {
    match v {
        Value::Null => Ok(vec![]),
        Value::String(s) => Ok(s.split(',').map(|x| x.trim().to_owned()).filter(|x| !x.is_empty()).collect()),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(k, x)| {
                x.as_str().map(str::to_owned).ok_or_else(|| bad_request(&format!("{key}[{k}]"), "not a string"))
            })
            .collect(),
        _ => Err(bad_request(key, "expected a list of strings or a string")),
    }
}

/// `POST /analytics/uves/<type>` (singular, as the reference routes it).
async fn uve_post(State(st): State<ApiState>, Path(ty): Path<String>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let table = uve_table_of(&ty).ok_or_else(|| unknown_type(&ty))?;
    let v: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")))?
    };
    let o = v.as_object().ok_or_else(|| ApiError(StatusCode::BAD_REQUEST, "the body must be a JSON object".into()))?;
    let mut filter = UveFilter::default();
    for (k, v) in o {
        let items = filter_strings(v, k)?;
        match k.as_str() {
            "kfilt" => filter.add_keys(items.iter().map(String::as_str)),
            "cfilt" => filter.add_structs(items.iter().map(String::as_str)),
            "sfilt" => filter.source = items.into_iter().next(),
            "mfilt" => filter.module = items.into_iter().next(),
            "ackfilt" => return Err(bad_request("ackfilt", "alarms are not supported by this collector")),
            _ => return Err(bad_request(k, "unknown filter (expected kfilt, cfilt, sfilt, mfilt)")),
        }
    }
    blocking(move || {
        let names = st.store.uve_names(table)?;
        Ok(Json(json!({ "value": uve_values(&st, table, names, &filter)? })))
    })
    .await
}

/// Microseconds since the epoch.
pub fn now_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

fn query_error(e: QueryError) -> (StatusCode, String) {
    (StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), e.to_string())
}

async fn query_post(State(st): State<ApiState>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let asynchronous = headers
        .get(header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("202-accepted"));
    let stats = st.stats.clone();
    let now = now_us();
    let ctx =
        QueryContext { now_us: now, data_start_us: now.saturating_sub(st.retention_us), max_rows: st.query_max_rows };
    let req = match QueryRequest::from_json(&body).and_then(|req| {
        // Checked before it is accepted: a bad query is answered at once, also when asynchronous.
        query::compile(&req, &ctx, st.store.dialect())?;
        Ok(req)
    }) {
        Ok(r) => r,
        Err(e) => {
            stats.queries_failed.fetch_add(1, Relaxed);
            let (code, msg) = query_error(e);
            return Err(ApiError(code, msg));
        }
    };
    let window = crate::time::resolve_query_window(&req.start_time, &req.end_time, ctx.data_start_us, ctx.now_us)
        .map(|w| (w.start_us, w.end_us))
        .unwrap_or((ctx.data_start_us, ctx.now_us));
    let store = st.store.clone();
    let run = move || {
        query::run(&*store, &req, &ctx).map_err(query_error).inspect(|_| {
            stats.queries.fetch_add(1, Relaxed);
        })
    };
    if asynchronous {
        let Some(qid) = st.async_queries.add(window.0, window.1) else {
            return Err(ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{MAX_ASYNC_QUERIES} asynchronous queries are running; try again later"),
            ));
        };
        let (jobs, id, stats) = (st.async_queries.clone(), qid.clone(), st.stats.clone());
        tokio::task::spawn_blocking(move || {
            let r = run();
            if r.is_err() {
                stats.queries_failed.fetch_add(1, Relaxed);
            }
            jobs.finish(&id, r);
        });
        return Ok((StatusCode::ACCEPTED, Json(json!({"href": format!("/analytics/query/{qid}")}))).into_response());
    }
    let r = tokio::task::spawn_blocking(run)
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("handler failed: {e}")))?;
    match r {
        Ok(v) => Ok(Json(v).into_response()),
        Err((code, msg)) => {
            st.stats.queries_failed.fetch_add(1, Relaxed);
            Err(ApiError(code, msg))
        }
    }
}

/// `GET /analytics/query/<qid>`: the progress of an asynchronous query.
async fn query_status(State(st): State<ApiState>, Path(qid): Path<String>) -> Result<Json<Value>, ApiError> {
    let job = st.async_queries.get(&qid).ok_or_else(|| unknown_query(&qid))?;
    Ok(Json(match job.result {
        None => json!({"progress": 0, "chunks": []}),
        Some(Err((code, msg))) => return Err(ApiError(code, msg)),
        Some(Ok(_)) => json!({"progress": 100, "chunks": [{
            "start_time": job.start_us, "end_time": job.end_us,
            "href": format!("/analytics/query/{qid}/chunk-final/0"),
        }]}),
    }))
}

fn unknown_query(qid: &str) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, format!("qid: no query {qid} on this collector"))
}

/// `GET /analytics/query/<qid>/chunk-final/0`: its result.
async fn query_chunk(
    State(st): State<ApiState>,
    Path((qid, n)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let job = st.async_queries.get(&qid).ok_or_else(|| unknown_query(&qid))?;
    if n != "0" {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("chunk: query {qid} has one chunk, 0")));
    }
    match job.result {
        None => Err(ApiError(StatusCode::NOT_FOUND, format!("chunk: query {qid} is still running (progress 0)"))),
        Some(Err((code, msg))) => Err(ApiError(code, msg)),
        Some(Ok(v)) => Ok(Json(v)),
    }
}

async fn tables(headers: HeaderMap) -> Json<Value> {
    let base = base_url(&headers);
    Json(Value::Array(
        query::TABLES
            .iter()
            .map(|t| json!({"name": t.name(), "href": format!("{base}/analytics/table/{}", t.name()), "type": "FLOW"}))
            .collect(),
    ))
}

fn known_table(t: &str) -> Result<query::Table, ApiError> {
    query::Table::from_name(t).ok_or_else(|| {
        let e = QueryError::UnknownTable(t.to_owned());
        ApiError(StatusCode::from_u16(e.http_status()).expect("valid status"), e.to_string())
    })
}

async fn table_links(Path(t): Path<String>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let table = known_table(&t)?;
    let base = base_url(&headers);
    Ok(Json(json!([{"name": "schema", "href": format!("{base}/analytics/table/{}/schema", table.name())}])))
}

async fn table_schema(Path(t): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(query::schema_json(known_table(&t)?)))
}

async fn collector_stats(State(st): State<ApiState>) -> Json<Value> {
    let mut v = st.stats.to_json();
    v["ingest_queue_depth"] = json!(st.ingest.queued());
    v["ingest_queue_capacity"] = json!(st.ingest.capacity());
    Json(v)
}

/// The Prometheus exposition of the collector's counters.
pub fn exposition(
    stats: &Stats,
    queue_depth: usize,
    queue_capacity: usize,
) -> Result<String, promtext::ExpositionError> {
    let mut e = promtext::Exposition::new();
    for (f, v) in stats.values() {
        let help = f.help.split_whitespace().collect::<Vec<_>>().join(" ");
        if f.counter {
            e.counter(&format!("collector_{}_total", f.name), &help)?.sample(&[], v)?;
        } else {
            e.gauge(&format!("collector_{}", f.name), &help)?.sample(&[], v)?;
        }
    }
    e.gauge("collector_ingest_queue_depth", "Messages waiting for the database writer.")?.sample(&[], queue_depth)?;
    e.gauge("collector_ingest_queue_capacity", "Messages the writer queue holds at most.")?
        .sample(&[], queue_capacity)?;
    Ok(e.into_string())
}

async fn metrics(State(st): State<ApiState>) -> Response {
    match exposition(&st.stats, st.ingest.queued(), st.ingest.capacity()) {
        Ok(text) => ([(header::CONTENT_TYPE, promtext::CONTENT_TYPE)], text).into_response(),
        Err(e) => ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn bad_request(field: &str, message: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, format!("{field}: {message}"))
}

/// The caller of a trace request, or the 401 reply.
#[allow(clippy::result_large_err)] // the error is the finished 401 reply, built once per refused request
fn trace_caller(st: &ApiState, headers: &HeaderMap) -> Result<crate::trace::Caller, Response> {
    let auth = headers.get(header::AUTHORIZATION).map(|h| h.to_str().unwrap_or(""));
    st.trace_access.caller(auth).map_err(|e| {
        st.stats.trace_auth_refused.fetch_add(1, Relaxed);
        (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], Json(json!({ "error": e.to_string() })))
            .into_response()
    })
}

/// Query parameters of `GET /analytics/traces`: `start_time`, `end_time` (the forms of
/// `/analytics/query`: µs since the epoch, `now`, `now-10m`, …; default: no bound) and
/// `request` (a request UUID). Anything else is an error naming it.
#[derive(Debug, Default, Deserialize)]
struct TraceQuery {
    start_time: Option<String>,
    end_time: Option<String>,
    request: Option<String>,
    /// Parameters that are none of the above (refused).
    #[serde(flatten)]
    unknown: std::collections::BTreeMap<String, String>,
}

/// The time range and request of `GET /analytics/traces`.
fn trace_params(q: Option<&str>, now: u64) -> Result<(i64, i64, Option<String>), ApiError> {
    let q: TraceQuery = parse_query(q)?;
    if let Some(other) = q.unknown.keys().next() {
        return Err(bad_request(other, "unknown parameter (expected start_time, end_time, request)"));
    }
    let (start, end) = time_range(q.start_time, q.end_time, now)?;
    let request = match q.request {
        Some(v) if v.is_empty() => return Err(bad_request("request", "must be a trace request UUID")),
        v => v.map(|v| v.to_ascii_lowercase()),
    };
    Ok((start, end, request))
}

/// `start_time` and `end_time` of a GET request, in the forms of `/analytics/query` (µs
/// since the epoch, `now`, `now-10m`, …), µs; a missing one is no bound.
fn time_range(start: Option<String>, end: Option<String>, now: u64) -> Result<(i64, i64), ApiError> {
    let time = |k: &str, v: Option<String>, default: i64| -> Result<i64, ApiError> {
        let Some(v) = v else { return Ok(default) };
        let t = crate::time::parse_time(&v, now).map_err(|e| bad_request(k, e))?;
        i64::try_from(t).map_err(|_| bad_request(k, "out of range"))
    };
    let start = time("start_time", start, i64::MIN)?;
    let end = time("end_time", end, i64::MAX)?;
    if start > end {
        return Err(bad_request("start_time", "is after end_time"));
    }
    Ok((start, end))
}

/// Parameters of `GET /analytics/mirror/reconcile`.
#[derive(Debug, Default, Deserialize)]
struct ReconcileQuery {
    start_time: Option<String>,
    end_time: Option<String>,
    vrouter: Option<String>,
    /// Parameters that are none of the above (refused).
    #[serde(flatten)]
    unknown: std::collections::BTreeMap<String, String>,
}

/// The time range (default: unbounded) and vRouter of `GET /analytics/mirror/reconcile`.
fn reconcile_params(q: Option<&str>, now: u64) -> Result<(i64, i64, Option<String>), ApiError> {
    let q: ReconcileQuery = parse_query(q)?;
    if let Some(other) = q.unknown.keys().next() {
        return Err(bad_request(other, "unknown parameter (expected start_time, end_time, vrouter)"));
    }
    let (start, end) = time_range(q.start_time, q.end_time, now)?;
    if q.vrouter.as_deref() == Some("") {
        return Err(bad_request("vrouter", "must be a vRouter name"));
    }
    Ok((start, end, q.vrouter))
}

async fn mirror_reconcile(State(st): State<ApiState>, RawQuery(q): RawQuery) -> Result<Json<Value>, ApiError> {
    let now = now_us();
    let (start, end, vrouter) = reconcile_params(q.as_deref(), now)?;
    let ctx =
        QueryContext { now_us: now, data_start_us: now.saturating_sub(st.retention_us), max_rows: st.query_max_rows };
    let v = blocking(move || {
        crate::reconcile::reconcile(&*st.store, &ctx, start, end, vrouter.as_deref()).map_err(|e| {
            let (code, msg) = query_error(e);
            ApiError(code, msg)
        })
    })
    .await?;
    Ok(Json(v))
}

async fn trace_list(
    State(st): State<ApiState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let caller = match trace_caller(&st, &headers) {
        Ok(c) => c,
        Err(r) => return Ok(r),
    };
    let (start, end, request) = trace_params(q.as_deref(), now_us())?;
    let v = blocking(move || {
        let reader = &st.store;
        let rows = reader.trace_rows(start, end, request.as_deref(), caller.project(), st.query_max_rows)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut steps = reader.trace_steps(row.trace_id)?;
            crate::trace::order_steps(&mut steps);
            out.push(crate::trace::row_json(row, &steps));
        }
        Ok(json!({ "value": out }))
    })
    .await?;
    Ok(Json(v).into_response())
}

async fn trace_get(
    State(st): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let caller = match trace_caller(&st, &headers) {
        Ok(c) => c,
        Err(r) => return Ok(r),
    };
    let n = crate::trace::parse_id(&id).ok_or_else(|| bad_request("id", format!("`{id}` is not a trace id (hex)")))?;
    let v = blocking(move || {
        let reader = &st.store;
        let not_found = || ApiError(StatusCode::NOT_FOUND, format!("id: no trace {}", crate::trace::format_id(n)));
        // Another project's trace is answered exactly like an unknown one.
        let row = match reader.trace_row(n)? {
            Some(r) if caller.may_read(r.project.as_deref()) => r,
            _ => return Err(not_found()),
        };
        let mut steps = reader.trace_steps(n)?;
        crate::trace::order_steps(&mut steps);
        Ok(crate::trace::detail_json(&row, &steps))
    })
    .await?;
    Ok(Json(v).into_response())
}

async fn trace_delete(
    State(st): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let caller = match trace_caller(&st, &headers) {
        Ok(c) => c,
        Err(r) => return Ok(r),
    };
    let n = crate::trace::parse_id(&id).ok_or_else(|| bad_request("id", format!("`{id}` is not a trace id (hex)")))?;
    let v = blocking(move || {
        let not_found = || ApiError(StatusCode::NOT_FOUND, format!("id: no trace {}", crate::trace::format_id(n)));
        // Deleting is scoped like reading: another project's trace is not found.
        match st.store.trace_row(n)? {
            Some(r) if caller.may_read(r.project.as_deref()) => {}
            _ => return Err(not_found()),
        }
        st.store.delete_trace(n)?;
        Ok(json!({"deleted": crate::trace::format_id(n)}))
    })
    .await?;
    Ok(Json(v).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_params_name_the_field() {
        let now = 1_700_000_000_000_000;
        assert_eq!(trace_params(None, now).unwrap(), (i64::MIN, i64::MAX, None));
        let (s, e, r) = trace_params(Some("start_time=now-10m&end_time=now&request=AB%2Dcd"), now).unwrap();
        assert_eq!((s, e, r.as_deref()), ((now - 600_000_000) as i64, now as i64, Some("ab-cd")));
        let err = |q: &str| trace_params(Some(q), now).unwrap_err().1;
        assert!(err("start_time=yesterday").starts_with("start_time: "), "{}", err("start_time=yesterday"));
        assert!(err("end_time=now-1q").starts_with("end_time: "));
        assert!(err("limit=5").starts_with("limit: unknown parameter"));
        assert_eq!(err("start_time=now&end_time=now-1h"), "start_time: is after end_time");
        assert_eq!(err("request="), "request: must be a trace request UUID");
        assert_eq!(err("request=%zz"), "request: bad percent-encoding");
        assert_eq!(err("request=ab%2"), "request: bad percent-encoding");
        assert_eq!(err("request=%ff%fe"), "request: not UTF-8");
        assert_eq!(err("start_time=now&start_time=now"), "query: duplicate field `start_time`");
        let (_, _, r) = trace_params(Some("request=a+b%C3%A9"), now).unwrap();
        assert_eq!(r.as_deref(), Some("a bé"));
        assert_eq!(trace_params(Some(""), now).unwrap(), (i64::MIN, i64::MAX, None));
    }

    #[test]
    fn reconcile_params_name_the_field() {
        let now = 1_700_000_000_000_000;
        assert_eq!(reconcile_params(None, now).unwrap(), (i64::MIN, i64::MAX, None));
        let (s, e, v) = reconcile_params(Some("start_time=now-1h&end_time=now&vrouter=host1"), now).unwrap();
        assert_eq!((s, e, v.as_deref()), ((now - 3_600_000_000) as i64, now as i64, Some("host1")));
        let err = |q: &str| reconcile_params(Some(q), now).unwrap_err().1;
        assert!(err("start_time=soon").starts_with("start_time: "), "{}", err("start_time=soon"));
        assert_eq!(err("start_time=now&end_time=now-1m"), "start_time: is after end_time");
        assert_eq!(err("vrouter="), "vrouter: must be a vRouter name");
        assert!(err("analyzer=x").starts_with("analyzer: unknown parameter"));
    }

    #[test]
    fn flat_filters_and_refused_ackfilt() {
        let flat = |q: Option<&str>| uve_params(q).unwrap().0;
        assert!(!flat(None));
        assert!(!flat(Some("x=1")), "other parameters are ignored");
        assert!(flat(Some("flat")));
        assert!(flat(Some("x=1&flat=")));
        for f in ["sfilt=host1", "mfilt=agent", "cfilt=VMIStats", "kfilt=a*"] {
            assert!(flat(Some(f)), "{f} implies flat");
        }
        let (_, f) =
            uve_params(Some("cfilt=VMIStats:vm_name,VMIStats:raw_if_stats,UveX&kfilt=a*,b&sfilt=h1&mfilt=m")).unwrap();
        assert_eq!(
            f.structs,
            [("VMIStats".into(), vec!["vm_name".into(), "raw_if_stats".into()]), ("UveX".into(), vec![])]
        );
        assert_eq!((f.keys.len(), f.source.as_deref(), f.module.as_deref()), (2, Some("h1"), Some("m")));
        let e = uve_params(Some("flat&ackfilt=true")).unwrap_err();
        assert_eq!((e.0, e.1), (StatusCode::BAD_REQUEST, "ackfilt: alarms are not supported by this collector".into()));
        assert_eq!(uve_params(Some("flat=%zz")).unwrap_err().1, "flat: bad percent-encoding");
    }
}
