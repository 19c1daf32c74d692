//! `vrouter-exporter` and `lcore` on a stats region and counters file this test writes:
//! the exposition carries the region's counters (and says which sources were missing),
//! `promtool check metrics` accepts it, the HTTP server answers `GET /metrics` with the 0.0.4
//! content type and stops cleanly on SIGTERM, `lcore --stats` shows the performance block,
//! and the exporter's systemd unit passes `systemd-analyze verify`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use vrouter_abi::drop_reason::DropReason;
use vrouter_abi::export::{write_counters, ExportCounters, COUNTERS_FILE};
use vrouter_abi::stats::{StatsRegion, VifInfo, VIF_TYPE_PHYSICAL, VIF_TYPE_VIRTUAL};

/// A run directory with a stats region (lcore 0 forwarded two bursts) and export counters;
/// the region is live while the returned handle is.
fn run_dir(dir: &Path) -> StatsRegion {
    let vifs = [VifInfo::new(0, VIF_TYPE_PHYSICAL, "fabric0"), VifInfo::new(2, VIF_TYPE_VIRTUAL, "tap-vm2")];
    let region = StatsRegion::create(dir, 4, 2, &vifs, 2_000_000_000).unwrap();
    let l = region.lcore(0).unwrap();
    l.set_rx_queues(&[(2, 0), (0, 0)]);
    l.iteration(1_000);
    l.rx(2, 32, 2048);
    l.tx(0, 31, 3000);
    l.drop(Some(2), DropReason::FlowActionDrop, 1);
    l.after_burst(0, 32);
    l.rx(0, 3, 300);
    l.before_burst(|| 4_200);
    l.after_burst(1, 3);
    l.poll(true);
    l.iteration(4_500);
    let c = ExportCounters {
        records_exported: 9,
        last_sweep_ms: 250,
        session_state: "Established".into(),
        ..Default::default()
    };
    write_counters(&dir.join(COUNTERS_FILE), &c).unwrap();
    region
}

fn has(text: &str, line: &str) {
    assert!(text.lines().any(|l| l == line), "no line `{line}` in\n{text}");
}

#[test]
fn once_prints_the_exposition() {
    let dir = tempfile::tempdir().unwrap();
    let _region = run_dir(dir.path());
    let out = Command::new(env!("CARGO_BIN_EXE_vrouter-exporter"))
        .arg("--run-dir")
        .arg(dir.path())
        .arg("--once")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    has(&text, "vrouter_up 1");
    for (source, up) in [("stats", 1), ("flow", 0), ("mirror", 0), ("export", 1), ("agent", 0)] {
        has(&text, &format!("vrouter_exporter_source_up{{source=\"{source}\"}} {up}"));
    }
    has(&text, "vrouter_vif_rx_packets_total{vif=\"2\",name=\"tap-vm2\"} 32");
    has(&text, "vrouter_vif_tx_bytes_total{vif=\"0\",name=\"fabric0\"} 3000");
    has(&text, "vrouter_vif_reason_drops_total{vif=\"2\",name=\"tap-vm2\",reason=\"flow_action_drop\"} 1");
    has(&text, "vrouter_drops_total{reason=\"flow_action_drop\"} 1");
    has(&text, "vrouter_lcore_busy_polls_total{lcore=\"0\"} 1");
    has(&text, "vrouter_lcore_busy_cycles_total{lcore=\"0\"} 3500");
    has(&text, "vrouter_lcore_burst_packets_total{lcore=\"1\"} 0");
    has(&text, "vrouter_lcore_packets_per_burst_bucket{lcore=\"0\",le=\"4\"} 1");
    has(&text, "vrouter_lcore_packets_per_burst_bucket{lcore=\"0\",le=\"32\"} 2");
    has(&text, "vrouter_lcore_packets_per_burst_count{lcore=\"0\"} 2");
    // 3200 cycles for 32 packets (100 per packet, le 128), 300 for 3 (le 128 too).
    has(&text, "vrouter_lcore_cycles_per_packet_bucket{lcore=\"0\",le=\"128\"} 35");
    has(&text, "vrouter_lcore_cycles_per_packet_sum{lcore=\"0\"} 3500");
    has(&text, "vrouter_rxq_packets_total{lcore=\"0\",vif=\"2\",queue=\"0\"} 32");
    has(&text, "vrouter_rxq_cycles_total{lcore=\"0\",vif=\"0\",queue=\"0\"} 300");
    has(&text, "vrouter_lcore_burst_cycles_max{lcore=\"0\"} 3200");
    has(&text, "vrouter_tsc_hertz 2000000000");
    has(&text, "vrouter_export_records_exported_total 9");
    has(&text, "vrouter_export_last_sweep_seconds 0.25");
    has(&text, "vrouter_export_session_state{state=\"Established\"} 1");
    assert!(!text.contains("vrouter_flow_"), "no flow table, no flow families");

    let check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    match check {
        Err(_) => eprintln!("promtool not installed (Debian package prometheus): check skipped"),
        Ok(mut p) => {
            p.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
            let o = p.wait_with_output().unwrap();
            let said = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
            assert!(o.status.success() && said.trim().is_empty(), "promtool: {said}");
        }
    }
}

#[test]
fn a_missing_vrouter_scrapes_as_down() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vrouter-exporter"))
        .arg("--run-dir")
        .arg(dir.path())
        .arg("--once")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    has(&text, "vrouter_up 0");
    has(&text, "vrouter_exporter_source_up{source=\"stats\"} 0");
}

#[test]
fn serves_metrics_over_http_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let _region = run_dir(dir.path());
    let mut child = Command::new(env!("CARGO_BIN_EXE_vrouter-exporter"))
        .arg("--run-dir")
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().rsplit("http://").next().unwrap().trim_end_matches("/metrics").to_string();
    let get = |path: &str| {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        reply
    };
    let reply = get("/metrics");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(
        reply.to_ascii_lowercase().contains("content-type: text/plain; version=0.0.4; charset=utf-8\r\n"),
        "{reply}"
    );
    assert!(reply.contains("\nvrouter_vif_rx_packets_total{vif=\"2\",name=\"tap-vm2\"} 32\n"), "{reply}");
    assert!(get("/nothing").starts_with("HTTP/1.1 404"));
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn lcore_stats_shows_the_performance_block() {
    let dir = tempfile::tempdir().unwrap();
    let _region = run_dir(dir.path());
    let lcore = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_lcore"));
        c.arg("--run-dir").arg(dir.path()).arg("--stats");
        c
    };
    let out = lcore().output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("lcore 0:\n") && text.contains("lcore 1:\n"), "{text}");
    assert!(
        text.contains("  Rx packets:                       35  (17.5 packets/burst, 100 cycles/packet)\n"),
        "{text}"
    );
    assert!(
        text.contains("    vif0/2     queue 0   packets:           32  bursts:          1  usage:  91.4 %\n"),
        "{text}"
    );
    let out = lcore().args(["--core", "0", "--json"]).output().unwrap();
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["lcores"].as_array().unwrap().len(), 1);
    assert_eq!((j["lcores"][0]["bursts"].as_u64(), j["lcores"][0]["busy_cycles"].as_u64()), (Some(2), Some(3_500)));
    let out = lcore().args(["--core", "2"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("core 2 does not exist"));
}

/// `systemd-analyze verify` on a copy of the unit naming the exporter built for this test; any
/// diagnostic fails.
#[test]
fn unit_passes_systemd_analyze_verify() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("deploy/systemd/vrouter-exporter.service");
    let unit = std::fs::read_to_string(path).unwrap();
    assert!(unit.lines().any(|l| l.starts_with("ExecStart=/usr/local/bin/vrouter-exporter --run-dir /run/vrouter")));
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("vrouter-exporter.service");
    std::fs::write(&copy, unit.replace("/usr/local/bin/vrouter-exporter", env!("CARGO_BIN_EXE_vrouter-exporter")))
        .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze (Debian package systemd; ci/setup.sh installs it)");
    let diag = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && diag.trim().is_empty(), "systemd-analyze verify: {}\n{diag}", out.status);
}
