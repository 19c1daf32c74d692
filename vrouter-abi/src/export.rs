//! The exporter's counters as the vRouter keeps them in `<run_dir>/export.json` (rewritten
//! atomically by the exporter thread, read by `vrouter-agent-stats`).

use std::path::Path;

/// Name of the counters file the exporter keeps in the run directory.
pub const COUNTERS_FILE: &str = "export.json";

/// The exporter's counters (also written to `<run_dir>/export.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExportCounters {
    /// Flows currently tracked.
    pub flows_tracked: u64,
    /// Setup records produced (before sampling).
    pub setup_records: u64,
    /// Periodic records produced (before sampling).
    pub periodic_records: u64,
    /// Teardown records produced (before sampling).
    pub teardown_records: u64,
    /// Records handed to the session.
    pub records_exported: u64,
    /// Records removed by export sampling (or because `flow_export_rate` is 0).
    pub records_sampled_out: u64,
    /// Records the session refused because its buffer was full.
    pub records_dropped: u64,
    /// Snapshots retried past the limit (entry busy); the flow is visited again next sweep.
    pub torn_snapshots: u64,
    /// Completed sweeps of the whole table.
    pub sweeps: u64,
    /// Duration of the last complete sweep, ms.
    pub last_sweep_ms: u64,
    /// Sampling threshold in bytes (0 when sampling is off).
    pub sampling_threshold: u64,
    /// UVE messages queued.
    pub uves_queued: u64,
    /// Session: records sent to a collector.
    pub session_flows_sent: u64,
    /// Session: records waiting (buffer plus send queue).
    pub session_flows_buffered: u64,
    /// Session: records dropped by the full buffer (= `records_dropped`).
    pub session_flows_dropped: u64,
    /// Session: UVEs sent.
    pub session_uves_sent: u64,
    /// Session state.
    pub session_state: String,
    /// Session: sessions established.
    pub session_established: u64,
    /// Session: connection attempts that failed.
    pub session_connect_failures: u64,
    /// Trace steps read from the trace region's rings (feature `trace`).
    #[serde(default)]
    pub trace_steps_read: u64,
    /// Trace steps overwritten in the rings before the exporter read them.
    #[serde(default)]
    pub trace_steps_lost: u64,
    /// Trace steps handed to the session (in `PacketTraceData` messages).
    #[serde(default)]
    pub trace_steps_sent: u64,
    /// Trace messages handed to the session.
    #[serde(default)]
    pub trace_messages_sent: u64,
    /// Trace messages waiting for room in the session's trace buffer.
    #[serde(default)]
    pub trace_messages_pending: u64,
    /// Ticks that read no trace step because messages were still pending.
    #[serde(default)]
    pub trace_backpressure_ticks: u64,
    /// Session: trace messages written to a collector.
    #[serde(default)]
    pub session_traces_sent: u64,
    /// Session: trace steps in those messages.
    #[serde(default)]
    pub session_trace_steps_sent: u64,
    /// Session: trace messages waiting (buffer plus send queue).
    #[serde(default)]
    pub session_traces_buffered: u64,
    /// IPFIX: records handed to the IPFIX exporter (`[ipfix]`).
    #[serde(default)]
    pub ipfix_records: u64,
    /// IPFIX: data messages built (each sent to every collector).
    #[serde(default)]
    pub ipfix_messages: u64,
    /// IPFIX: records too large for one message (not sent).
    #[serde(default)]
    pub ipfix_oversized_records: u64,
    /// IPFIX: collectors configured.
    #[serde(default)]
    pub ipfix_collectors: u64,
    /// IPFIX: collectors connected (UDP collectors always count).
    #[serde(default)]
    pub ipfix_collectors_connected: u64,
    /// IPFIX: records sent, summed over the collectors.
    #[serde(default)]
    pub ipfix_records_sent: u64,
    /// IPFIX: records not sent (send error, full buffer, no TCP connection), summed over the
    /// collectors.
    #[serde(default)]
    pub ipfix_records_dropped: u64,
    /// IPFIX: template messages, summed over the collectors.
    #[serde(default)]
    pub ipfix_template_messages: u64,
    /// IPFIX: bytes sent, summed over the collectors.
    #[serde(default)]
    pub ipfix_bytes_sent: u64,
    /// IPFIX: send and connect errors, summed over the collectors.
    #[serde(default)]
    pub ipfix_errors: u64,
    /// Unix time of this snapshot, ms.
    pub updated_unix_ms: u64,
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
