//! The analytics collector: receives Sandesh from vRouters, stores flow records, UVEs and
//! traces in an embedded SQLite database or in ClickHouse (shared by several collectors), and
//! answers the analytics REST API.
//!
//! * [`time`]: `start_time`/`end_time` expressions and query windows.
//! * [`model`]: what is ingested (generator identity, flow samples, UVE updates).
//! * [`store`]: the storage interface (read side [`store::Backend`], write side
//!   [`ingest::StoreWriter`]) and its backends: SQLite (WAL, one writer, pooled readers) and
//!   ClickHouse (HTTP interface, batched inserts, merged at query time).
//! * [`ingest`]: the bounded channel between Sandesh sessions and the writer thread.
//! * [`query`]: the `POST /analytics/query` engine (FlowRecordTable, FlowSeriesTable).
//! * [`uve`]: UVE JSON, raw and `?flat`, and the UVE filters.
//! * [`trace`]: packet traces merged across vRouters, and who may read them.
//! * [`reconcile`]: mirror reconciliation from the stored flow records and UVEs.
//! * [`config`]: the collector's TOML configuration.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod config;
pub mod http;
pub mod ingest;
pub mod model;
pub mod query;
pub mod reconcile;
pub mod server;
pub mod session;
pub mod stats;
pub mod store;
pub mod time;
pub mod trace;
pub mod uve;

pub use time::{clamp_query_window, parse_time, resolve_query_window, Sign, TimeError, TimeExpr, TimeUnit, TimeWindow};
