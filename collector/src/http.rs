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
        .with_state(state)
}

fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}")
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("handler failed: {e}"),
        )
    })?
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
            UVE_TYPES
                .iter()
                .map(|(t, _)| *t)
                .collect::<Vec<_>>()
                .join(", ")
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

/// Whether the query string asks for the flat form (`?flat`). The reference API's filters
/// (`sfilt`, `mfilt`, `cfilt`, `kfilt`, `ackfilt`) are not implemented: asking for one is an
/// error rather than an unfiltered answer that looks filtered.
fn wants_flat(q: Option<&str>) -> Result<bool, ApiError> {
    let mut flat = false;
    for kv in q.unwrap_or("").split('&').filter(|kv| !kv.is_empty()) {
        match kv.split('=').next().unwrap_or("") {
            "flat" => flat = true,
            k @ ("sfilt" | "mfilt" | "cfilt" | "kfilt" | "ackfilt") => {
                return Err(ApiError(
                    StatusCode::BAD_REQUEST,
                    format!("UVE filter `{k}` is not supported by this collector"),
                ))
            }
            _ => {}
        }
    }
    Ok(flat)
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
            for n in reader
                .uve_names(table)?
                .into_iter()
                .filter(|n| n.starts_with(prefix))
            {
                let attrs = reader.uve_attrs(table, &n)?;
                out.push(json!({"name": n, "value": crate::uve::flat_json(&attrs)}));
            }
            return Ok(Json(json!({ "value": out })));
        }
        let attrs = reader.uve_attrs(table, &name)?;
        Ok(Json(if flat {
            crate::uve::flat_json(&attrs)
        } else {
            crate::uve::raw_json(&attrs)
        }))
    })
    .await
}

/// Microseconds since the epoch.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
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
            let code =
                StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
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
        ApiError(
            StatusCode::from_u16(e.http_status()).expect("valid status"),
            e.to_string(),
        )
    })
}

async fn table_links(Path(t): Path<String>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let table = known_table(&t)?;
    let base = base_url(&headers);
    Ok(Json(
        json!([{"name": "schema", "href": format!("{base}/analytics/table/{}/schema", table.name())}]),
    ))
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
