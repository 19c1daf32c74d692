//! The analytics collector: receives Sandesh from vRouters, stores flow records and UVEs, and
//! answers the analytics REST API.
//!
//! What this crate holds now: the time arithmetic of `POST /analytics/query` ([`time`]):
//! parsing `start_time`/`end_time` expressions (`now`, `now-10m`, `now+30s`, absolute
//! microseconds) and clamping a requested window to the data the collector holds and to the
//! present. A later issue adds the collector proper on top of it: the Sandesh session server,
//! flow-record and UVE storage, and the REST endpoints that use these windows.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod time;

pub use time::{
    clamp_query_window, parse_time, resolve_query_window, Sign, TimeError, TimeExpr, TimeUnit,
    TimeWindow,
};
