//! The analytics REST API (axum).
//!
//! * `GET /analytics/uves`: the UVE types, `[{"name": "vrouters", "href": …}, …]`.
//! * `GET /analytics/uves/<type>s`: the objects of a type, `[{"name": k, "href": …?flat}, …]`.
//! * `GET /analytics/uves/<type>/<name>[?flat]`: one object, raw or flat ([`crate::uve`]);
//!   an unknown name gives `{}` as in the reference API. `<name>` `*` or `prefix*` gives
//!   `{"value": [{"name", "value"(flat)}, …]}`.
//! * `POST /analytics/query`: [`crate::query`].
//! * `GET /analytics/tables`, `GET /analytics/table/<t>`, `GET /analytics/table/<t>/schema`:
//!   the queryable tables and their columns ([`crate::query::schema_json`]).
//! * `GET /analytics/collector/stats`: the collector's counters ([`crate::stats`]).
//! * `GET /analytics/traces[?start_time=…&end_time=…&request=<uuid>]`: one row per trace id
//!   (id, request, project, vRouters, first/last time, packets, steps, flow, disposition),
//!   oldest first; `GET /analytics/traces/<id>`: one trace's steps from every vRouter that
//!   exported it, merged in the order of [`crate::trace`]; 404 for an unknown id. Both need
//!   a bearer token when tenants or an admin token are configured ([`crate::trace`]).
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
    /// The database.
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
        .route("/analytics/uves/:ty", get(uve_list))
        .route("/analytics/uves/:ty/*name", get(uve_get))
        .route("/analytics/query", post(query_post))
        .route("/analytics/tables", get(tables))
        .route("/analytics/table/:t", get(table_links))
        .route("/analytics/table/:t/schema", get(table_schema))
        .route("/analytics/collector/stats", get(collector_stats))
        .route("/analytics/traces", get(trace_list))
        .route("/analytics/traces/:id", get(trace_get))
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
) -> Result<Json<Value>, ApiError> {
    let singular = ty.strip_suffix('s').unwrap_or(&ty).to_owned();
    let table = uve_table_of(&singular).ok_or_else(|| unknown_type(&ty))?;
    let base = base_url(&headers);
    let names = blocking(move || Ok(st.store.reader()?.uve_names(table)?)).await?;
    Ok(Json(Value::Array(
        names
            .into_iter()
            .map(|n| json!({"name": n, "href": format!("{base}/analytics/uves/{singular}/{n}?flat")}))
            .collect(),
    )))
}

/// Query parameters of `GET /analytics/uves/<type>/<name>`: `flat` (with or without a
/// value) asks for the flat form. The reference API's filters (`sfilt`, `mfilt`, `cfilt`,
/// `kfilt`, `ackfilt`) are not implemented: asking for one is an error rather than an
/// unfiltered answer that looks filtered. Other parameters are ignored.
#[derive(Debug, Default, Deserialize)]
struct UveQuery {
    flat: Option<String>,
    sfilt: Option<String>,
    mfilt: Option<String>,
    cfilt: Option<String>,
    kfilt: Option<String>,
    ackfilt: Option<String>,
}

/// Whether the query string asks for the flat form (`?flat`); an error for a UVE filter.
fn wants_flat(q: Option<&str>) -> Result<bool, ApiError> {
    let q: UveQuery = parse_query(q)?;
    let filters =
        [("sfilt", &q.sfilt), ("mfilt", &q.mfilt), ("cfilt", &q.cfilt), ("kfilt", &q.kfilt), ("ackfilt", &q.ackfilt)];
    if let Some((k, _)) = filters.iter().find(|(_, v)| v.is_some()) {
        return Err(ApiError(StatusCode::BAD_REQUEST, format!("UVE filter `{k}` is not supported by this collector")));
    }
    Ok(q.flat.is_some())
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
    let flat = wants_flat(q.as_deref())?;
    blocking(move || {
        let reader = st.store.reader()?;
        if let Some(prefix) = name.strip_suffix('*') {
            let mut out = Vec::new();
            for n in reader.uve_names(table)?.into_iter().filter(|n| n.starts_with(prefix)) {
                let attrs = reader.uve_attrs(table, &n)?;
                out.push(json!({"name": n, "value": crate::uve::flat_json(&attrs)}));
            }
            return Ok(Json(json!({ "value": out })));
        }
        let attrs = reader.uve_attrs(table, &name)?;
        Ok(Json(if flat { crate::uve::flat_json(&attrs) } else { crate::uve::raw_json(&attrs) }))
    })
    .await
}

/// Microseconds since the epoch.
pub fn now_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

async fn query_post(State(st): State<ApiState>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let stats = st.stats.clone();
    let r = blocking(move || {
        let run = || -> Result<Value, QueryError> {
            let req = QueryRequest::from_json(&body)?;
            let now = now_us();
            let ctx = QueryContext {
                now_us: now,
                data_start_us: now.saturating_sub(st.retention_us),
                max_rows: st.query_max_rows,
            };
            let reader = st.store.reader()?;
            query::run(&reader, &req, &ctx)
        };
        run().map_err(|e| {
            let code = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            ApiError(code, e.to_string())
        })
    })
    .await;
    match &r {
        Ok(_) => stats.queries.fetch_add(1, Relaxed),
        Err(_) => stats.queries_failed.fetch_add(1, Relaxed),
    };
    r.map(Json)
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
    let time = |k: &str, v: Option<String>, default: i64| -> Result<i64, ApiError> {
        let Some(v) = v else { return Ok(default) };
        let t = crate::time::parse_time(&v, now).map_err(|e| bad_request(k, e))?;
        i64::try_from(t).map_err(|_| bad_request(k, "out of range"))
    };
    let start = time("start_time", q.start_time, i64::MIN)?;
    let end = time("end_time", q.end_time, i64::MAX)?;
    let request = match q.request {
        Some(v) if v.is_empty() => return Err(bad_request("request", "must be a trace request UUID")),
        v => v.map(|v| v.to_ascii_lowercase()),
    };
    if start > end {
        return Err(bad_request("start_time", "is after end_time"));
    }
    Ok((start, end, request))
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
    let time = |k: &str, v: Option<String>, default: i64| -> Result<i64, ApiError> {
        let Some(v) = v else { return Ok(default) };
        let t = crate::time::parse_time(&v, now).map_err(|e| bad_request(k, e))?;
        i64::try_from(t).map_err(|_| bad_request(k, "out of range"))
    };
    let start = time("start_time", q.start_time, i64::MIN)?;
    let end = time("end_time", q.end_time, i64::MAX)?;
    if start > end {
        return Err(bad_request("start_time", "is after end_time"));
    }
    if q.vrouter.as_deref() == Some("") {
        return Err(bad_request("vrouter", "must be a vRouter name"));
    }
    Ok((start, end, q.vrouter))
}

async fn mirror_reconcile(State(st): State<ApiState>, RawQuery(q): RawQuery) -> Result<Json<Value>, ApiError> {
    let (start, end, vrouter) = reconcile_params(q.as_deref(), now_us())?;
    let v = blocking(move || {
        let reader = st.store.reader()?;
        Ok(crate::reconcile::reconcile(&reader, start, end, vrouter.as_deref())?)
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
        let reader = st.store.reader()?;
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
        let reader = st.store.reader()?;
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
    fn flat_and_refused_uve_filters() {
        assert!(!wants_flat(None).unwrap());
        assert!(!wants_flat(Some("x=1")).unwrap(), "other parameters are ignored");
        assert!(wants_flat(Some("flat")).unwrap());
        assert!(wants_flat(Some("x=1&flat=")).unwrap());
        for f in ["sfilt", "mfilt", "cfilt", "kfilt", "ackfilt"] {
            let e = wants_flat(Some(&format!("flat&{f}=a*"))).unwrap_err();
            assert_eq!(
                (e.0, e.1),
                (StatusCode::BAD_REQUEST, format!("UVE filter `{f}` is not supported by this collector"))
            );
        }
        assert_eq!(wants_flat(Some("flat=%zz")).unwrap_err().1, "flat: bad percent-encoding");
    }
}
