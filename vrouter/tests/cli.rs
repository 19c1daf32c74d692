//! The binary's behaviour at its edges: invalid configuration (nothing starts), and the
//! operator tools reading a live vRouter's shared memory while it forwards.

mod common;
use common::*;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use vrouter::stats::StatsReader;

#[test]
fn invalid_config_names_field_and_line_and_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let good = topology("\"net_pcap0,rx_pcap=/dev/null\"", &unique_prefix(), &run_dir);
    // Point route[2] at a nexthop that does not exist.
    let bad = good.replacen("prefix = \"192.168.2.0/24\"\nnexthop = 3", "prefix = \"192.168.2.0/24\"\nnexthop = 99", 1);
    assert_ne!(good, bad);
    let line = bad.lines().position(|l| l == "nexthop = 99").unwrap() + 1;
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, &bad).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vrouter")).arg("--config").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("bad.toml:{line}: route[2].nexthop")), "stderr: {err}");
    assert!(err.contains("99"), "stderr: {err}");
    assert!(!run_dir.exists(), "nothing may be started for an invalid config");

    // A type error is reported with its line too.
    let typo = good.replacen("memory_mb = 256", "memory_mb = \"lots\"", 1);
    std::fs::write(&path, &typo).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vrouter")).arg("--config").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let line = typo.lines().position(|l| l.starts_with("memory_mb")).unwrap() + 1;
    assert!(err.contains(&format!("bad.toml:{line}")) && err.contains("memory_mb"), "stderr: {err}");

    // A missing file is a clear error as well.
    let out = Command::new(env!("CARGO_BIN_EXE_vrouter")).arg("--config").arg("/nonexistent/x.toml").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/x.toml"));
}

#[test]
fn tools_read_a_forwarding_vrouter_live() {
    // vm1 replays one VM->VM frame forever; the vRouter forwards while the tools read.
    let (frame, _) = {
        let ip = ipv4_udp(ip4("192.168.1.3"), ip4("192.168.1.4"), 64, 4000, 80, b"live");
        (eth(mac(ROUTER_MAC), mac(VM1_MAC), 0x0800, &ip), ip)
    };
    let (mut child, run_dir, _guard) = start_live(|d: &Path, i: usize| {
        let rx = d.join(format!("in{i}.pcap"));
        write_pcap(&rx, if i == 1 { std::slice::from_ref(&frame) } else { &[] });
        if i == 1 {
            format!("net_pcap{i},rx_pcap={},infinite_rx=1", rx.display())
        } else {
            format!("net_pcap{i},rx_pcap={}", rx.display())
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let reader = loop {
        if let Ok(r) = StatsReader::open(&run_dir) {
            if r.vif_counters(1, None).rx_packets > 1000 {
                break r;
            }
        }
        assert!(Instant::now() < deadline, "vRouter did not start forwarding");
        std::thread::sleep(Duration::from_millis(20));
    };
    let before = reader.vif_counters(2, None).tx_packets;

    let vif = tool("vif");
    let out = Command::new(&vif).args(["--run-dir"]).arg(&run_dir).args(["--get", "2", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let v = if v.is_array() { v[0].clone() } else { v };
    let tx_seen = v["tx_packets"].as_u64().unwrap();
    assert!(tx_seen >= before, "tool saw {tx_seen}, earlier reading was {before}");
    assert_eq!(v["name"], "tap-vm2");

    let out = Command::new(&vif).arg("--run-dir").arg(&run_dir).arg("--list").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.starts_with("Vrouter Interface Table"), "{text}");
    for v in ["vif0/0", "vif0/1", "vif0/2"] {
        assert!(text.contains(v), "{v} missing in:\n{text}");
    }

    // Forwarding continued while the tools read.
    std::thread::sleep(Duration::from_millis(200));
    assert!(reader.vif_counters(2, None).tx_packets > tx_seen, "forwarding stalled");

    let out = Command::new(tool("dropstats")).arg("--run-dir").arg(&run_dir).arg("--json").output().unwrap();
    assert!(out.status.success());
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(d["ttl_exceeded"], 0);

    stop(&mut child);
    // After the stop the tools still read the final counters.
    let out = Command::new(&vif).arg("--run-dir").arg(&run_dir).args(["--get", "1", "--json"]).output().unwrap();
    assert!(out.status.success());
}

#[test]
fn tools_say_clearly_when_no_vrouter_ran() {
    let dir = tempfile::tempdir().unwrap();
    for t in ["vif", "dropstats"] {
        let mut cmd = Command::new(tool(t));
        cmd.arg("--run-dir").arg(dir.path());
        if t == "vif" {
            cmd.arg("--list");
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{t}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("not running"),
            "{t}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn flow_tool_shows_flows_while_traffic_runs() {
    let ip = ipv4_udp(ip4("192.168.1.3"), ip4("192.168.1.4"), 64, 4321, 8080, b"flow-live");
    let frame = eth(mac(ROUTER_MAC), mac(VM1_MAC), 0x0800, &ip);
    let (mut child, run_dir, _guard) = start_live(|d: &Path, i: usize| {
        let rx = d.join(format!("in{i}.pcap"));
        write_pcap(&rx, if i == 1 { std::slice::from_ref(&frame) } else { &[] });
        if i == 1 {
            format!("net_pcap{i},rx_pcap={},infinite_rx=1", rx.display())
        } else {
            format!("net_pcap{i},rx_pcap={}", rx.display())
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = StatsReader::open(&run_dir) {
            if r.vif_counters(2, None).tx_packets > 1000 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "vRouter did not start forwarding");
        std::thread::sleep(Duration::from_millis(20));
    }
    let flow = tool("flow");
    let out = Command::new(&flow).arg("--run-dir").arg(&run_dir).arg("-l").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("Flow table(size "), "{text}");
    assert!(text.contains("192.168.1.3:4321") && text.contains("192.168.1.4:8080"), "{text}");
    assert!(text.contains("Action:F"), "{text}");

    let out = Command::new(&flow).arg("--run-dir").arg(&run_dir).args(["-l", "--json"]).output().unwrap();
    let flows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let fwd = flows
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["sport"] == 4321 && f["dport"] == 8080)
        .unwrap_or_else(|| panic!("no forward flow in {flows}"))
        .clone();
    let idx = fwd["index"].as_u64().unwrap();
    let first = fwd["packets"].as_u64().unwrap();

    let out = Command::new(&flow).arg("--run-dir").arg(&run_dir).args(["--get", &idx.to_string()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Flow Index:") && text.contains(&idx.to_string()), "{text}");
    assert!(text.contains("FORWARD"), "{text}");

    // The counters move while we watch.
    std::thread::sleep(Duration::from_millis(200));
    let out = Command::new(&flow)
        .arg("--run-dir")
        .arg(&run_dir)
        .args(["--get", &idx.to_string(), "--json"])
        .output()
        .unwrap();
    let again: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(again[0]["packets"].as_u64().unwrap() > first, "{again}");

    // Bad indices are clear errors.
    let out = Command::new(&flow).arg("--run-dir").arg(&run_dir).args(["--get", "99999999"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    stop(&mut child);
}
