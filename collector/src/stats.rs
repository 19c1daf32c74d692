//! Counters of the collector, shown by `GET /analytics/collector/stats`.

use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

macro_rules! stats {
    ($($(#[doc = $doc:literal])* $name:ident,)*) => {
        /// Collector counters (monotonic, except `sessions_active` and `store_rows_buffered`).
        #[derive(Debug, Default)]
        pub struct Stats {
            $($(#[doc = $doc])* pub $name: AtomicU64,)*
        }
        impl Stats {
            /// All counters as a JSON object.
            pub fn to_json(&self) -> Value {
                let mut m = serde_json::Map::new();
                $(m.insert(stringify!($name).into(), json!(self.$name.load(Relaxed)));)*
                Value::Object(m)
            }
        }
    };
}

stats! {
    /// TCP connections accepted on the Sandesh port.
    sessions_accepted,
    /// Sessions that completed the handshake.
    sessions_established,
    /// Sessions open now.
    sessions_active,
    /// Established sessions closed because the same generator connected again.
    sessions_replaced,
    /// Handshakes refused (empty node type or instance id, malformed control message).
    handshake_refused,
    /// Sessions closed because their first message was not the control handshake.
    handshake_missing,
    /// Sessions closed because no handshake arrived in time.
    handshake_timeouts,
    /// Sessions closed because a frame was malformed (framing or strict decoding).
    malformed_frames,
    /// Frames received (well-formed).
    frames_received,
    /// Messages of a type the collector does not store (counted, ignored).
    messages_ignored,
    /// Flow samples received.
    flow_records_received,
    /// Flow samples committed to the database.
    flow_records_stored,
    /// Flow samples lost to storage errors.
    flow_records_lost,
    /// UVE updates received.
    uve_updates_received,
    /// UVE updates committed.
    uve_updates_stored,
    /// UVE rows removed because their generator went away.
    uve_rows_removed,
    /// Trace messages received.
    trace_messages_received,
    /// Trace steps committed (a step already stored, e.g. re-sent after a reconnect, is
    /// not counted again).
    trace_steps_stored,
    /// Trace steps lost to storage errors.
    trace_steps_lost,
    /// Traces removed by retention.
    traces_purged,
    /// Trace requests refused (missing or unknown token).
    trace_auth_refused,
    /// Flow records removed by retention.
    flow_records_purged,
    /// Flow series rows removed by retention.
    flow_series_purged,
    /// Times a session waited because the writer queue was full.
    ingest_backpressure,
    /// Transactions committed by the writer.
    writer_batches,
    /// Storage errors.
    store_errors,
    /// Inserts retried because the store (ClickHouse) failed them.
    store_retries,
    /// Rows dropped because the store stayed unreachable with its buffer full (ClickHouse);
    /// counted by kind in `flow_records_lost`, `trace_steps_lost` and `uve_updates_lost` too.
    store_rows_dropped,
    /// Rows waiting to be inserted (ClickHouse; goes down too).
    store_rows_buffered,
    /// UVE updates lost to storage errors.
    uve_updates_lost,
    /// Flows whose aggregates the writer read back from the store (ClickHouse: not in its
    /// cache, e.g. after a restart or when the generator moved from another collector).
    flow_lookups,
    /// Flow lookups that failed (the sample was merged as a flow's first).
    flow_lookups_failed,
    /// Queries answered.
    queries,
    /// Queries refused (bad request, unknown table, too large).
    queries_failed,
}
