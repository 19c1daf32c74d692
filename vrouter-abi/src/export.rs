//! The exporter's counters as the vRouter keeps them in `<run_dir>/export.json` (rewritten
//! atomically by the exporter thread, read by `vrouter-agent-stats`).

use std::path::Path;

/// Name of the counters file the exporter keeps in the run directory.
pub const COUNTERS_FILE: &str = "export.json";

crate::described_figures! {
    /// The exporter's counters (also written to `<run_dir>/export.json`): flow records, the
    /// Sandesh session to the collector, and the trace steps it exports. Declared once: the
    /// tools and the Prometheus exporter take key, type and help from [`Self::FIELDS`].
    pub struct ExportCounters {
        flows_tracked: Gauge "Flows the exporter tracks now";
        setup_records: Counter "Flow setup records produced (before sampling)";
        periodic_records: Counter "Periodic flow records produced (before sampling)";
        teardown_records: Counter "Flow teardown records produced (before sampling)";
        records_exported: Counter "Flow records handed to the Sandesh session";
        records_sampled_out: Counter "Flow records removed by export sampling (or because flow_export_rate is 0)";
        records_dropped: Counter "Flow records the session refused because its buffer was full";
        /// The flow is visited again next sweep.
        torn_snapshots: Counter "Flow snapshots retried past the limit (entry busy)";
        sweeps: Counter "Completed sweeps of the whole flow table";
        last_sweep_ms: Gauge "Duration of the last complete sweep of the flow table";
        sampling_threshold: Gauge "Export sampling threshold in bytes (0 when sampling is off)";
        uves_queued: Counter "UVE messages queued";
        session_flows_sent: Counter "Sandesh session: flow records sent to a collector";
        session_flows_buffered: Gauge "Sandesh session: flow records waiting (buffer plus send queue)";
        session_flows_dropped: Counter "Sandesh session: flow records dropped by the full buffer";
        session_uves_sent: Counter "Sandesh session: UVEs sent";
        session_established: Counter "Sandesh session: sessions established";
        session_connect_failures: Counter "Sandesh session: connection attempts that failed";
        trace_steps_read: Counter "Trace steps read from the trace region's rings";
        trace_steps_lost: Counter "Trace steps overwritten in the rings before the exporter read them";
        trace_steps_sent: Counter "Trace steps handed to the session (in PacketTraceData messages)";
        trace_messages_sent: Counter "Trace messages handed to the session";
        trace_messages_pending: Gauge "Trace messages waiting for room in the session's trace buffer";
        trace_backpressure_ticks: Counter "Exporter ticks that read no trace step because messages were still pending";
        session_traces_sent: Counter "Sandesh session: trace messages written to a collector";
        session_trace_steps_sent: Counter "Sandesh session: trace steps in those messages";
        session_traces_buffered: Gauge "Sandesh session: trace messages waiting (buffer plus send queue)";
        ipfix_records: Counter "IPFIX: records handed to the IPFIX exporter ([ipfix])";
        ipfix_messages: Counter "IPFIX: data messages built (each sent to every collector)";
        ipfix_oversized_records: Counter "IPFIX: records too large for one message (not sent)";
        ipfix_collectors: Gauge "IPFIX: collectors configured";
        ipfix_collectors_connected: Gauge "IPFIX: collectors connected (UDP collectors always count)";
        ipfix_records_sent: Counter "IPFIX: records sent, summed over the collectors";
        ipfix_records_dropped: Counter "IPFIX: records not sent (send error, full buffer, no TCP connection), summed over the collectors";
        ipfix_template_messages: Counter "IPFIX: template messages, summed over the collectors";
        ipfix_bytes_sent: Counter "IPFIX: bytes sent, summed over the collectors";
        ipfix_errors: Counter "IPFIX: send and connect errors, summed over the collectors";
        updated_unix_ms: Gauge "Unix time of the exporter's last counters snapshot";
    }
    extra {
        /// Session state (`Established`, `Connecting`, ...).
        #[serde(default)]
        pub session_state: String,
    }
}

/// Writes the counters file atomically (temporary file, then rename).
pub fn write_counters(path: &Path, c: &ExportCounters) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string(c).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// Reads the counters file a running exporter keeps.
pub fn read_counters(run_dir: &Path) -> Result<ExportCounters, String> {
    let path = run_dir.join(COUNTERS_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!("cannot read {}: {e} (is the vRouter running with [export] enabled = true?)", path.display())
    })?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}
