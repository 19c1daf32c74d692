//! `vrouter-agent-stats` reads the exporter's counters file: text and `--json` views, a clear
//! error and exit status 1 when there is none.

use std::process::Command;
use vrouter_abi::export::{write_counters, ExportCounters, COUNTERS_FILE};

fn tool() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vrouter-agent-stats"))
}

#[test]
fn shows_the_counters_file() {
    let dir = tempfile::tempdir().unwrap();
    let c = ExportCounters {
        flows_tracked: 7,
        records_exported: 40,
        records_sampled_out: 2,
        records_dropped: 1,
        session_flows_sent: 39,
        session_flows_buffered: 1,
        session_state: "Idle".into(),
        ..ExportCounters::default()
    };
    write_counters(&dir.path().join(COUNTERS_FILE), &c).unwrap();

    let out = tool().arg("--run-dir").arg(dir.path()).arg("--json").output().unwrap();
    assert!(out.status.success());
    let back: ExportCounters = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(back, c);

    let out = tool().arg("--run-dir").arg(dir.path()).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("Records exported          40"), "{text}");
    assert!(text.contains("Session flows buffered    1"), "{text}");
}

#[test]
fn missing_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = tool().arg("--run-dir").arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("export.json") && err.contains("[export]"), "{err}");
}
