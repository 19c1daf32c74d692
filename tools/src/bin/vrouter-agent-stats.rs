//! `vrouter-agent-stats`: the flow/UVE/trace exporter's counters (records exported,
//! buffered, sampled out, dropped; trace steps read, sent, lost; the collector session; the
//! IPFIX exporter), read from `<run_dir>/export.json`, which a
//! vRouter running with `[export]` or `[ipfix]` enabled rewrites every second.

use std::process::ExitCode;

use clap::Parser;
use tools::{emit, fail, CommonArgs, Failure};
use vrouter_abi::export::{read_counters, ExportCounters};

#[derive(Parser, Debug)]
#[command(name = "vrouter-agent-stats", version, about = "Show the vRouter agent's flow and UVE export counters")]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
}

/// The text view: one `name: value` line per counter, grouped.
fn render(c: &ExportCounters) -> String {
    let rows: [(&str, String); 39] = [
        ("Flows tracked", c.flows_tracked.to_string()),
        ("Setup records", c.setup_records.to_string()),
        ("Periodic records", c.periodic_records.to_string()),
        ("Teardown records", c.teardown_records.to_string()),
        ("Records exported", c.records_exported.to_string()),
        ("Records sampled out", c.records_sampled_out.to_string()),
        ("Records dropped", c.records_dropped.to_string()),
        ("Sampling threshold", c.sampling_threshold.to_string()),
        ("Torn snapshots", c.torn_snapshots.to_string()),
        ("Sweeps", c.sweeps.to_string()),
        ("Last sweep ms", c.last_sweep_ms.to_string()),
        ("UVEs queued", c.uves_queued.to_string()),
        ("Session state", c.session_state.clone()),
        ("Session established", c.session_established.to_string()),
        ("Session connect failures", c.session_connect_failures.to_string()),
        ("Session flows sent", c.session_flows_sent.to_string()),
        ("Session flows buffered", c.session_flows_buffered.to_string()),
        ("Session flows dropped", c.session_flows_dropped.to_string()),
        ("Session UVEs sent", c.session_uves_sent.to_string()),
        ("Trace steps read", c.trace_steps_read.to_string()),
        ("Trace steps sent", c.trace_steps_sent.to_string()),
        ("Trace steps lost", c.trace_steps_lost.to_string()),
        ("Trace messages sent", c.trace_messages_sent.to_string()),
        ("Trace messages pending", c.trace_messages_pending.to_string()),
        ("Trace backpressure ticks", c.trace_backpressure_ticks.to_string()),
        ("Session traces sent", c.session_traces_sent.to_string()),
        ("Session trace steps sent", c.session_trace_steps_sent.to_string()),
        ("Session traces buffered", c.session_traces_buffered.to_string()),
        ("IPFIX records", c.ipfix_records.to_string()),
        ("IPFIX messages", c.ipfix_messages.to_string()),
        ("IPFIX oversized records", c.ipfix_oversized_records.to_string()),
        ("IPFIX collectors", c.ipfix_collectors.to_string()),
        ("IPFIX connected", c.ipfix_collectors_connected.to_string()),
        ("IPFIX records sent", c.ipfix_records_sent.to_string()),
        ("IPFIX records dropped", c.ipfix_records_dropped.to_string()),
        ("IPFIX template messages", c.ipfix_template_messages.to_string()),
        ("IPFIX bytes sent", c.ipfix_bytes_sent.to_string()),
        ("IPFIX errors", c.ipfix_errors.to_string()),
        ("Updated (unix ms)", c.updated_unix_ms.to_string()),
    ];
    let mut out = String::new();
    for (k, v) in &rows {
        out.push_str(&format!("{k:<26}{v}\n"));
    }
    out
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let c = match read_counters(&cli.common.run_dir) {
        Ok(c) => c,
        Err(e) => return fail(&Failure(e)),
    };
    let text = if cli.common.json {
        let j = if cli.common.pretty { serde_json::to_string_pretty(&c) } else { serde_json::to_string(&c) };
        match j {
            Ok(s) => s + "\n",
            Err(e) => return fail(&Failure(e.to_string())),
        }
    } else {
        render(&c)
    };
    emit(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_view_lists_the_counters() {
        let c = ExportCounters {
            records_exported: 12,
            records_sampled_out: 3,
            records_dropped: 4,
            session_flows_buffered: 5,
            session_state: "Established".into(),
            trace_steps_sent: 40,
            trace_steps_lost: 2,
            session_trace_steps_sent: 38,
            ..ExportCounters::default()
        };
        let t = render(&c);
        assert!(t.contains("Records exported          12\n"), "{t}");
        assert!(t.contains("Records sampled out       3\n"));
        assert!(t.contains("Records dropped           4\n"));
        assert!(t.contains("Session flows buffered    5\n"));
        assert!(t.contains("Session state             Established\n"));
        assert!(t.contains("Trace steps sent          40\n"), "{t}");
        assert!(t.contains("Trace steps lost          2\n"), "{t}");
        assert!(t.contains("Session trace steps sent  38\n"), "{t}");
        // One line per declared counter, and the session state.
        assert_eq!(t.lines().count(), ExportCounters::FIELDS.len() + 1);
    }
}
