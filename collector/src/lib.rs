//! The analytics collector: receives Sandesh from vRouters, stores flow records and UVEs in an
//! embedded SQLite database, and answers the analytics REST API.
//!
//! * [`time`]: `start_time`/`end_time` expressions and query windows.
//! * [`model`]: what is ingested (generator identity, flow samples, UVE updates).
//! * [`store`]: the SQLite storage (WAL), its single writer and pooled readers.
//! * [`ingest`]: the bounded channel between Sandesh sessions and the writer thread.
//! * [`query`]: the `POST /analytics/query` engine (FlowRecordTable, FlowSeriesTable).
//! * [`uve`]: UVE JSON, raw and `?flat`.
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
