//! A real Prometheus (Debian's `prometheus` package, started here on 127.0.0.1 with a 1 s
//! scrape interval) scrapes `vrouter-exporter` beside the real vRouter and the collector's own
//! `/metrics`; `promtool check metrics` accepts both expositions; once the traffic has stopped
//! (the pcaps are read once) the counters Prometheus' HTTP API answers equal what
//! `vif --list --json`, `dropstats --json`, `mirror --dump --json` and `lcore --stats --json`
//! print and what the agent's `status` says, and the per-lcore burst counters account for every
//! received packet.
//!
//! Without the `prometheus` package the test says so and passes, unless
//! `VROUTER_PROMETHEUS_TESTS=require` (`ci/test.sh`, after `ci/setup.sh` installed it).

mod common;
use common::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed (and waited for) when the test ends, however it ends.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn installed(bin: &str) -> bool {
    Command::new(bin).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

/// A port free on 127.0.0.1 now (for Prometheus, which cannot report the one it bound).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn get(addr: &str, path: &str) -> (u16, String) {
    collector::client::request(addr, "GET", path, None, None).unwrap_or_else(|e| panic!("GET {addr}{path}: {e}"))
}

/// `promtool check metrics` on `text`: no complaint.
fn promtool_check(what: &str, text: &str) {
    let mut p = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    p.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics on {what}: {said}");
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An instant query: each series' labels and value; why not, if Prometheus did not answer.
fn try_query(prom: &str, q: &str) -> Result<Vec<(Value, f64)>, String> {
    let path = format!("/api/v1/query?query={}", url_encode(q));
    let (code, text) = collector::client::request(prom, "GET", &path, None, None).map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("{code} {text}: {e}"))?;
    if code != 200 || v["status"] != "success" {
        return Err(format!("{q}: {code} {v}"));
    }
    Ok(v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["metric"].clone(), r["value"][1].as_str().unwrap().parse::<f64>().unwrap()))
        .collect())
}

fn query(prom: &str, q: &str) -> Vec<(Value, f64)> {
    try_query(prom, q).unwrap_or_else(|e| panic!("{e}"))
}

/// The one value of a query that must have exactly one series.
fn scalar(prom: &str, q: &str) -> u64 {
    let r = query(prom, q);
    assert_eq!(r.len(), 1, "{q}: {r:?}");
    r[0].1 as u64
}

/// A query's series keyed by one label.
fn by_label(prom: &str, q: &str, label: &str) -> BTreeMap<String, u64> {
    query(prom, q).into_iter().map(|(m, v)| (m[label].as_str().unwrap().to_string(), v as u64)).collect()
}

fn tool_json(name: &str, run_dir: &Path, args: &[&str]) -> Value {
    let out = Command::new(tool(name)).arg("--run-dir").arg(run_dir).args(args).arg("--json").output().unwrap();
    assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{name} --json: {e}"))
}

/// Starts `vrouter-exporter` on an address it picks and returns it with its address.
fn start_exporter(run_dir: &Path) -> (Guard, String) {
    let mut child = Command::new(tool("vrouter-exporter"))
        .arg("--run-dir")
        .arg(run_dir)
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("vrouter-exporter");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().rsplit("http://").next().unwrap().trim_end_matches("/metrics").to_string();
    assert!(addr.parse::<SocketAddr>().is_ok(), "exporter said: {line}");
    (Guard(child), addr)
}

fn start_prometheus(dir: &Path, targets: &[(&str, &str)]) -> (Guard, String) {
    let mut cfg = String::from("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n");
    for (job, addr) in targets {
        cfg.push_str(&format!("  - job_name: {job}\n    static_configs:\n      - targets: ['{addr}']\n"));
    }
    let cfg_path = dir.join("prometheus.yml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", cfg_path.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
        .arg(format!("--web.listen-address={listen}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("prometheus");
    (Guard(child), listen)
}

#[test]
fn prometheus_scrapes_the_counters_the_tools_show() {
    if !installed("prometheus") || !installed("promtool") {
        let why = "prometheus/promtool not installed (Debian package `prometheus`; ci/setup.sh installs it)";
        assert!(std::env::var("VROUTER_PROMETHEUS_TESTS").as_deref() != Ok("require"), "{why}");
        eprintln!("SKIPPED: {why}");
        return;
    }
    // The collector, in this process.
    let data = tempfile::tempdir().unwrap();
    let cfg = collector::config::CollectorConfig {
        sandesh_listen: "127.0.0.1:0".into(),
        http_listen: "127.0.0.1:0".into(),
        data_dir: data.path().to_owned(),
        hostname: "prom-collector".into(),
        ..Default::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let c = rt.block_on(collector::server::Collector::start(&cfg)).unwrap();
    let (sandesh_addr, collector_http) = (c.sandesh_addr, c.http_addr.to_string());

    // Traffic: UDP both ways between vm1 and vm2 (flows mirrored to two analyzers, vm1's vif
    // mirrored too), and packets to a discard route (drops).
    let mut vm1 = Vec::new();
    let mut vm2 = Vec::new();
    for (k, n) in [10usize, 200, 700, 64, 90, 333].into_iter().enumerate() {
        let ip = ipv4_udp(ip4("192.168.1.3"), ip4("192.168.1.4"), 64, 1000 + k as u16 % 3, 2000, &vec![k as u8; n]);
        vm1.push(eth(mac(ROUTER_MAC), mac(VM1_MAC), 0x0800, &ip));
        let ip = ipv4_udp(ip4("192.168.1.3"), ip4("192.168.9.5"), 64, 1000, 7, &vec![k as u8; n / 2]);
        vm1.push(eth(mac(ROUTER_MAC), mac(VM1_MAC), 0x0800, &ip));
    }
    for n in [30usize, 40, 100] {
        let ip = ipv4_udp(ip4("192.168.1.4"), ip4("192.168.1.3"), 64, 2000, 1000, &vec![0xcd; n]);
        vm2.push(eth(mac(ROUTER_MAC), mac(VM2_MAC), 0x0800, &ip));
    }
    let n_in = (vm1.len() + vm2.len()) as u64;
    let edit = |c: String| {
        let c = c.replacen(
            "name = \"tap-vm1\"\n",
            &format!("name = \"tap-vm1\"\nmirror_to = \"{ANALYZER_A}\"\nmirror_rx = true\n"),
            1,
        );
        let (mirror, export) = (mirror_everything_to_both(), export_to(sandesh_addr, "prom-vrouter"));
        format!(
            r#"{c}
[flow]
entries = 1024

{mirror}
{export}"#
        )
    };

    let mut checked = false;
    let out = run_live(Inputs { vm1, vm2, ..Default::default() }, edit, |run_dir| {
        // Every input packet is accounted for and the pcaps are spent: the data-plane
        // counters stand still from here on.
        let once = Command::new(tool("vrouter-exporter")).arg("--run-dir").arg(run_dir).arg("--once").output().unwrap();
        assert!(once.status.success(), "{}", String::from_utf8_lossy(&once.stderr));
        let exposition = String::from_utf8(once.stdout).unwrap();
        promtool_check("vrouter-exporter", &exposition);
        let (code, collector_text) = get(&collector_http, "/metrics");
        assert_eq!(code, 200);
        promtool_check("the collector's /metrics", &collector_text);

        let (_exporter, exporter_addr) = start_exporter(run_dir);
        let prom_dir = tempfile::tempdir().unwrap();
        let (_prom, prom) =
            start_prometheus(prom_dir.path(), &[("vrouter", &exporter_addr), ("collector", &collector_http)]);
        // Both targets scraped (up == 1), and the exporter read every source.
        let deadline = Instant::now() + Duration::from_secs(60);
        let labelled = |q: &str, label: &str| -> BTreeMap<String, f64> {
            try_query(&prom, q)
                .unwrap_or_default()
                .into_iter()
                .map(|(m, v)| (m[label].as_str().unwrap_or("").to_string(), v))
                .collect()
        };
        loop {
            let up = labelled("up", "job");
            let sources = labelled("vrouter_exporter_source_up", "source");
            if up.get("vrouter") == Some(&1.0)
                && up.get("collector") == Some(&1.0)
                && sources.len() == 5
                && sources.values().all(|&v| v == 1.0)
            {
                break;
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(prom_dir.path().join("prometheus.log")).unwrap_or_default();
                panic!("Prometheus never scraped both targets with every source up; its log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        assert_eq!(scalar(&prom, "vrouter_up"), 1);

        // vif --list --json: every vif counter, per vif (labels vif and name).
        let vifs = tool_json("vif", run_dir, &["--list"]);
        let vifs = vifs.as_array().unwrap();
        assert_eq!(vifs.len(), 3);
        for key in [
            "rx_packets",
            "rx_bytes",
            "rx_errors",
            "tx_packets",
            "tx_bytes",
            "tx_errors",
            "mirror_packets",
            "mirror_bytes",
            "mirror_errors",
            "drops",
        ] {
            let scraped = by_label(&prom, &format!("vrouter_vif_{key}_total"), "vif");
            let names = by_label(&prom, &format!("vrouter_vif_{key}_total"), "name");
            for v in vifs {
                let id = v["id"].to_string();
                assert_eq!(scraped.get(&id).copied(), v[key].as_u64(), "vif {id} {key}");
                assert_eq!(names.get(v["name"].as_str().unwrap()).copied(), v[key].as_u64(), "vif {id} name label");
            }
        }
        let rx_total: u64 = vifs.iter().map(|v| v["rx_packets"].as_u64().unwrap()).sum();
        assert_eq!(rx_total, n_in, "every input packet was received");
        assert!(vifs[1]["mirror_packets"].as_u64().unwrap() > 0, "vm1's vif was mirrored");
        // Per-vif drops by reason: what vif --list --json's drop_stats holds.
        for v in vifs {
            let q = format!("vrouter_vif_reason_drops_total{{vif=\"{}\"}}", v["id"]);
            let scraped = by_label(&prom, &q, "reason");
            let want: BTreeMap<String, u64> =
                v["drop_stats"].as_object().unwrap().iter().map(|(k, n)| (k.clone(), n.as_u64().unwrap())).collect();
            assert_eq!(scraped, want, "vif {} drops by reason", v["id"]);
        }

        // dropstats --json: every reason, vRouter-wide.
        let drops = tool_json("dropstats", run_dir, &[]);
        let scraped = by_label(&prom, "vrouter_drops_total", "reason");
        let mut want: BTreeMap<String, u64> =
            drops.as_object().unwrap().iter().map(|(k, n)| (k.clone(), n.as_u64().unwrap())).collect();
        let total = want.remove("total").expect("dropstats --json has a total");
        assert_eq!(scraped, want, "dropstats --json");
        assert_eq!(scalar(&prom, "sum(vrouter_drops_total)"), total);
        assert!(want.values().sum::<u64>() >= 6, "the discard route dropped: {want:?}");

        // mirror --dump --json: per analyzer, and the vRouter-wide totals.
        let mirror = tool_json("mirror", run_dir, &["--dump"]);
        let entries = mirror["entries"].as_array().unwrap();
        assert_eq!(entries.len(), 2);
        for key in ["packets", "bytes", "errors"] {
            let scraped = by_label(&prom, &format!("vrouter_mirror_{key}_total"), "analyzer");
            for e in entries {
                let name = e["analyzer_name"].as_str().unwrap();
                assert_eq!(scraped.get(name).copied(), e[key].as_u64(), "analyzer {name} {key}");
            }
        }
        assert!(entries.iter().all(|e| e["packets"].as_u64().unwrap() > 0), "both analyzers got copies: {mirror}");
        for (tool_key, metric) in [
            ("mir_tpkts", "vrouter_lcore_mirror_packets_total"),
            ("mir_bytes", "vrouter_lcore_mirror_bytes_total"),
            ("mir_errors", "vrouter_lcore_mirror_errors_total"),
        ] {
            assert_eq!(Some(scalar(&prom, &format!("sum({metric})"))), mirror[tool_key].as_u64(), "{tool_key}");
        }

        // lcore --stats --json: the burst counters and histograms (the busy and idle cycles
        // still move: the loop goes on polling).
        let lcores = tool_json("lcore", run_dir, &["--stats"]);
        let l = &lcores["lcores"][0];
        for key in ["bursts", "burst_packets", "burst_cycles", "busy_polls"] {
            assert_eq!(
                Some(scalar(&prom, &format!("vrouter_lcore_{key}_total{{lcore=\"0\"}}"))),
                l[key].as_u64(),
                "lcore {key}"
            );
        }
        assert_eq!(scalar(&prom, "vrouter_lcore_burst_packets_total"), n_in, "every packet came in a counted burst");
        assert_eq!(scalar(&prom, "sum(vrouter_rxq_packets_total)"), n_in, "and from an itemized RX queue");
        assert_eq!(
            Some(scalar(&prom, "vrouter_lcore_packets_per_burst_count")),
            l["bursts"].as_u64(),
            "one observation per burst"
        );
        assert_eq!(scalar(&prom, "vrouter_lcore_packets_per_burst_sum"), n_in);
        assert_eq!(scalar(&prom, "vrouter_lcore_cycles_per_packet_count"), n_in, "one observation per packet");
        for (i, b) in l["packets_per_burst"].as_array().unwrap().iter().enumerate().filter(|(_, b)| !b["le"].is_null())
        {
            let le = b["le"].as_u64().unwrap();
            let cumulative: u64 =
                l["packets_per_burst"].as_array().unwrap()[..=i].iter().map(|b| b["count"].as_u64().unwrap()).sum();
            assert_eq!(scalar(&prom, &format!("vrouter_lcore_packets_per_burst_bucket{{le=\"{le}\"}}")), cumulative);
        }
        assert!(scalar(&prom, "vrouter_lcore_busy_cycles_total") > 0);

        // The flow table and the agent: occupancy, creations, setup latency.
        let status = control(run_dir, &json!({"cmd": "status"}));
        let setups = status["counters"]["setups"].as_u64().unwrap();
        assert!(setups >= 2, "{status}");
        assert_eq!(scalar(&prom, "vrouter_agent_setups_total"), setups);
        assert_eq!(
            Some(scalar(&prom, "vrouter_agent_flow_setup_latency_seconds_count")),
            status["setup_latency_ns"]["count"].as_u64()
        );
        let table = flow_table::FlowTableReader::open_run_dir(run_dir).unwrap().stats();
        assert_eq!(scalar(&prom, "vrouter_flow_used_entries"), table.used_entries);
        assert_eq!(scalar(&prom, "vrouter_flow_created_total"), table.created);
        assert_eq!(scalar(&prom, "vrouter_flow_added_total"), table.added);

        // The exporter's Sandesh session to the collector, and the collector's own counters
        // (those that stand still once the session is up).
        assert_eq!(scalar(&prom, "vrouter_export_session_established_total"), 1);
        let (_, cstats) = get(&collector_http, "/analytics/collector/stats");
        let cstats: Value = serde_json::from_str(&cstats).unwrap();
        for key in ["sessions_established", "sessions_accepted", "malformed_frames"] {
            assert_eq!(Some(scalar(&prom, &format!("collector_{key}_total"))), cstats[key].as_u64(), "collector {key}");
        }
        assert_eq!(scalar(&prom, "collector_sessions_active"), 1);
        assert!(scalar(&prom, "collector_flow_records_received_total") > 0);
        eprintln!(
            "compared through Prometheus: {n_in} packets in {} bursts, {} mirror copies, {} drops, {setups} setups",
            l["bursts"], mirror["mir_tpkts"], total
        );
        checked = true;
    });
    assert!(checked);
    out.assert_accounted(n_in);
    rt.block_on(c.stop());
}
