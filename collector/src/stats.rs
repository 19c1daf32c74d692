//! Counters of the collector, shown by `GET /analytics/collector/stats` and, in the
//! Prometheus text format, by `GET /metrics` ([`crate::http`]): each declared once, with its
//! doc comment as the help text.

use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

macro_rules! stats {
    ($($(#[doc = $doc:literal])* $name:ident: $kind:ident,)*) => {
        /// Collector counters (monotonic, except the gauges: `sessions_active` and
        /// `store_rows_buffered`).
        #[derive(Debug, Default)]
        pub struct Stats {
            $($(#[doc = $doc])* pub $name: AtomicU64,)*
        }
        impl Stats {
            /// Every figure: its name, whether it is a counter, its help (the doc comment).
            pub const FIELDS: &'static [StatField] = &[$(StatField {
                name: stringify!($name),
                counter: matches!(Kind::$kind, Kind::Counter),
                help: concat!($($doc, " ",)*),
            },)*];

            /// All counters as a JSON object.
            pub fn to_json(&self) -> Value {
                let mut m = serde_json::Map::new();
                $(m.insert(stringify!($name).into(), json!(self.$name.load(Relaxed)));)*
                Value::Object(m)
            }

            /// Each figure of [`Self::FIELDS`] with its value, in the same order.
            pub fn values(&self) -> Vec<(&'static StatField, u64)> {
                Self::FIELDS.iter().zip([$(self.$name.load(Relaxed),)*]).collect()
            }
        }
    };
}

/// Whether a figure only grows.
enum Kind {
    Counter,
    Gauge,
}

/// One figure of [`Stats`], declared once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatField {
    /// Name and JSON key.
    pub name: &'static str,
    /// A counter (monotonic) rather than a gauge.
    pub counter: bool,
    /// What it counts (its doc comment).
    pub help: &'static str,
}

stats! {
    /// TCP connections accepted on the Sandesh port.
    sessions_accepted: Counter,
    /// Sessions that completed the handshake.
    sessions_established: Counter,
    /// Sessions open now.
    sessions_active: Gauge,
    /// Established sessions closed because the same generator connected again.
    sessions_replaced: Counter,
    /// Handshakes refused (empty node type or instance id, malformed control message).
    handshake_refused: Counter,
    /// Sessions closed because their first message was not the control handshake.
    handshake_missing: Counter,
    /// Sessions closed because no handshake arrived in time.
    handshake_timeouts: Counter,
    /// Sessions closed because a frame was malformed (framing or strict decoding).
    malformed_frames: Counter,
    /// Frames received (well-formed).
    frames_received: Counter,
    /// Messages of a type the collector does not store (counted, ignored).
    messages_ignored: Counter,
    /// Flow samples received.
    flow_records_received: Counter,
    /// Flow samples committed to the database.
    flow_records_stored: Counter,
    /// Flow samples lost to storage errors.
    flow_records_lost: Counter,
    /// UVE updates received.
    uve_updates_received: Counter,
    /// UVE updates committed.
    uve_updates_stored: Counter,
    /// UVE rows removed because their generator went away.
    uve_rows_removed: Counter,
    /// Trace messages received.
    trace_messages_received: Counter,
    /// Trace steps committed (a step already stored, e.g. re-sent after a reconnect, is
    /// not counted again).
    trace_steps_stored: Counter,
    /// Trace steps lost to storage errors.
    trace_steps_lost: Counter,
    /// Traces removed by retention.
    traces_purged: Counter,
    /// Trace requests refused (missing or unknown token).
    trace_auth_refused: Counter,
    /// Flow records removed by retention.
    flow_records_purged: Counter,
    /// Flow series rows removed by retention.
    flow_series_purged: Counter,
    /// Times a session waited because the writer queue was full.
    ingest_backpressure: Counter,
    /// Transactions committed by the writer.
    writer_batches: Counter,
    /// Storage errors.
    store_errors: Counter,
    /// Inserts retried because the store (ClickHouse) failed them.
    store_retries: Counter,
    /// Rows dropped because the store stayed unreachable with its buffer full (ClickHouse);
    /// counted by kind in `flow_records_lost`, `trace_steps_lost` and `uve_updates_lost` too.
    store_rows_dropped: Counter,
    /// Rows waiting to be inserted (ClickHouse; goes down too).
    store_rows_buffered: Gauge,
    /// UVE updates lost to storage errors.
    uve_updates_lost: Counter,
    /// Flows whose aggregates the writer read back from the store (ClickHouse: not in its
    /// cache, e.g. after a restart or when the generator moved from another collector).
    flow_lookups: Counter,
    /// Flow lookups that failed (the sample was merged as a flow's first).
    flow_lookups_failed: Counter,
    /// Queries answered.
    queries: Counter,
    /// Queries refused (bad request, unknown table, too large).
    queries_failed: Counter,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_carries_every_figure() {
        let s = Stats::default();
        s.flow_records_stored.store(42, Relaxed);
        s.sessions_active.store(2, Relaxed);
        let text = crate::http::exposition(&s, 3, 1024).unwrap();
        let json = s.to_json();
        for f in Stats::FIELDS {
            let (name, kind) = if f.counter {
                (format!("collector_{}_total", f.name), "counter")
            } else {
                (format!("collector_{}", f.name), "gauge")
            };
            assert!(text.contains(&format!("# TYPE {name} {kind}\n")), "{name}");
            assert!(text.contains(&format!("\n{name} {}\n", json[f.name])), "{name} = {}", json[f.name]);
        }
        assert!(text.contains("\ncollector_flow_records_stored_total 42\n"));
        assert!(text.contains("# HELP collector_sessions_active Sessions open now.\n"), "{text}");
        assert!(text.contains("\ncollector_ingest_queue_depth 3\n"));
        assert!(Stats::FIELDS.iter().all(|f| !f.help.trim().is_empty()), "every figure has a doc comment");
    }
}
