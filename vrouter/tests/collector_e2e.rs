//! End to end: the real vRouter forwards traffic whose flows a policy mirrors to two
//! analyzers, its exporter sends FlowLogData and UVEs over Sandesh (TCP) to a real collector
//! (the `collector` crate's server, started in this test process on 127.0.0.1), and what the
//! collector's REST API answers equals the datapath: per-flow `agg-bytes`, `agg-packets` and the
//! four mirror aggregates equal the flow table's counters, the analyzer names are the
//! configured ones, and the VMI and vRouter UVEs carry the vif counters and mirror totals.

mod common;
use common::*;
use flow_table::{FlowSnapshot, FlowTableReader};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use vrouter::stats::StatsReader;

const VM1_VMI: &str = "5f2a1c3e-0000-4000-8000-0000000000a1";

fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, Value) {
    http_json(&addr.to_string(), method, path, None, Some(body))
}

fn records(http_addr: SocketAddr) -> Vec<Value> {
    let q = json!({
        "table": "FlowRecordTable", "start_time": "now-10m", "end_time": "now",
        "select_fields": ["UuidKey", "vrouter", "sourceip", "destip", "sport", "dport", "protocol", "action",
                          "agg-bytes", "agg-packets", "agg-mir-bytes", "agg-mir-packets", "agg-sec-mir-bytes",
                          "agg-sec-mir-packets", "analyzer_name", "sec_analyzer_name"],
        "sort_fields": ["UuidKey"]
    });
    let (code, v) = http(http_addr, "POST", "/analytics/query", &q.to_string());
    assert_eq!(code, 200, "{v}");
    v["value"].as_array().unwrap().clone()
}

/// The record of a datapath flow: the exporter's UUID starts with the flow's index and
/// generation.
fn record_of<'a>(recs: &'a [Value], f: &FlowSnapshot) -> Option<&'a Value> {
    let prefix = format!("{:08x}-{:04x}-", f.index, f.gen);
    recs.iter().find(|r| r["UuidKey"].as_str().unwrap().starts_with(&prefix))
}

fn matches_datapath(r: &Value, f: &FlowSnapshot) -> bool {
    r["agg-bytes"] == json!(f.bytes)
        && r["agg-packets"] == json!(f.packets)
        && r["agg-mir-bytes"] == json!(f.mirror_bytes)
        && r["agg-mir-packets"] == json!(f.mirror_packets)
        && r["agg-sec-mir-bytes"] == json!(f.sec_mirror_bytes)
        && r["agg-sec-mir-packets"] == json!(f.sec_mirror_packets)
}

#[test]
fn collector_records_and_uves_equal_the_datapath() {
    // The collector.
    let data = tempfile::tempdir().unwrap();
    let cfg = collector::config::CollectorConfig {
        sandesh_listen: "127.0.0.1:0".into(),
        http_listen: "127.0.0.1:0".into(),
        data_dir: data.path().to_owned(),
        hostname: "e2e-collector".into(),
        ..Default::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let c = rt.block_on(collector::server::Collector::start(&cfg)).unwrap();
    let (sandesh_addr, http_addr) = (c.sandesh_addr, c.http_addr);

    // Traffic both ways between vm1 and vm2 (UDP and TCP-less ICMP-free: two UDP flows pairs).
    let mut vm1 = Vec::new();
    let mut vm2 = Vec::new();
    for (k, n) in [10usize, 200, 700, 1200, 64].into_iter().enumerate() {
        let ip = ipv4_udp(ip4("192.168.1.3"), ip4("192.168.1.4"), 64, 1000, 2000, &vec![k as u8; n]);
        vm1.push(eth(mac(ROUTER_MAC), mac(VM1_MAC), 0x0800, &ip));
        let ip = ipv4_udp(ip4("192.168.1.3"), ip4("192.168.1.4"), 64, 1001, 53, &vec![k as u8; n / 2]);
        vm1.push(eth(mac(ROUTER_MAC), mac(VM1_MAC), 0x0800, &ip));
    }
    for n in [30usize, 40, 1400] {
        let ip = ipv4_udp(ip4("192.168.1.4"), ip4("192.168.1.3"), 64, 2000, 1000, &vec![0xcd; n]);
        vm2.push(eth(mac(ROUTER_MAC), mac(VM2_MAC), 0x0800, &ip));
    }
    let n_in = (vm1.len() + vm2.len()) as u64;

    let edit = |c: String| {
        // Interface mirroring of vm1's vif as well as flow mirroring by the policy.
        let c = c.replacen(
            "name = \"tap-vm1\"\n",
            &format!("name = \"tap-vm1\"\nmirror_to = \"{ANALYZER_A}\"\nmirror_rx = true\n"),
            1,
        );
        let (mirror, export) = (mirror_everything_to_both(), export_to(sandesh_addr, "e2e-vrouter"));
        format!(
            r#"{c}
[flow]
entries = 1024

# The analyzers sit behind the fabric gateway (as the mirror tests configure them), so
# mirrored copies have a path out once the mirror data plane is in.
{mirror}
{export}"#
        )
    };

    let mut checked = false;
    let out = run_live(Inputs { vm1, vm2, ..Default::default() }, edit, |run_dir| {
        let deadline = Instant::now() + Duration::from_secs(60);
        // Flow records: every datapath flow's record reaches its final counters.
        let dp: Vec<FlowSnapshot> = {
            let r = FlowTableReader::open_run_dir(run_dir).expect("flow table");
            r.iter_active().collect()
        };
        assert_eq!(dp.len(), 4, "two flow pairs: {dp:#?}");
        // Real mirroring happened (copies too long for one mbuf are encap failures, so not
        // every packet has a copy): the figures compared below are not all zero.
        assert!(dp.iter().all(|f| f.mirror_packets <= f.packets && f.sec_mirror_packets <= f.packets));
        assert!(dp.iter().filter(|f| f.mirror_packets > 0 && f.sec_mirror_packets > 0).count() >= 2, "{dp:#?}");
        loop {
            let recs = records(http_addr);
            let done = dp.iter().all(|f| record_of(&recs, f).is_some_and(|r| matches_datapath(r, f)));
            if done {
                for f in &dp {
                    let r = record_of(&recs, f).unwrap();
                    assert_eq!(r["vrouter"], "e2e-vrouter");
                    assert_eq!(r["sourceip"], f.key.src_ip().to_string());
                    assert_eq!(r["sport"], json!(f.key.sport()));
                    assert_eq!(r["dport"], json!(f.key.dport()));
                    assert_eq!(r["protocol"], 17);
                    assert_eq!(r["analyzer_name"], ANALYZER_A, "{r}");
                    assert_eq!(r["sec_analyzer_name"], ANALYZER_B, "{r}");
                    assert!(r["action"].as_str().unwrap().contains("mirror"), "{r}");
                }
                assert!(dp.iter().map(|f| f.packets).sum::<u64>() == n_in, "every packet is on a flow");
                // The series of each flow (its exported diffs) sums to the same figures.
                let q = json!({
                    "table": "FlowSeriesTable", "start_time": "now-10m", "end_time": "now",
                    "select_fields": ["UuidKey", "SUM(bytes)", "SUM(packets)", "SUM(mir-bytes)", "SUM(mir-packets)",
                                      "SUM(sec-mir-bytes)", "SUM(sec-mir-packets)"]
                });
                let (code, v) = http(http_addr, "POST", "/analytics/query", &q.to_string());
                assert_eq!(code, 200, "{v}");
                let series = v["value"].as_array().unwrap();
                for f in &dp {
                    let uuid = record_of(&recs, f).unwrap()["UuidKey"].clone();
                    let s =
                        series.iter().find(|s| s["UuidKey"] == uuid).unwrap_or_else(|| panic!("no series for {uuid}"));
                    assert_eq!(
                        (&s["SUM(bytes)"], &s["SUM(packets)"], &s["SUM(mir-bytes)"], &s["SUM(mir-packets)"]),
                        (&json!(f.bytes), &json!(f.packets), &json!(f.mirror_bytes), &json!(f.mirror_packets)),
                        "series of {uuid}"
                    );
                    assert_eq!(
                        (&s["SUM(sec-mir-bytes)"], &s["SUM(sec-mir-packets)"]),
                        (&json!(f.sec_mirror_bytes), &json!(f.sec_mirror_packets))
                    );
                }
                break;
            }
            if Instant::now() >= deadline {
                let (_, cstats) = http(http_addr, "GET", "/analytics/collector/stats", "");
                let export = vrouter::agent::export::read_counters(run_dir);
                panic!("records never matched the datapath:\n{recs:#?}\n{dp:#?}\ncollector: {cstats}\nexporter: {export:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }

        // UVEs: the VMI's interface counters and the vRouter totals.
        let stats = StatsReader::open(run_dir).unwrap();
        let vif1 = stats.vif_counters(1, None);
        let (mut tx_pkts, mut rx_pkts) = (0u64, 0u64);
        for v in 0..3u16 {
            let c = stats.vif_counters(v, None);
            tx_pkts += c.tx_packets;
            rx_pkts += c.rx_packets;
        }
        // `vif --get` (interface mirroring of vif 1) and `mirror --dump` (vRouter totals) read
        // these same counters.
        assert!(vif1.mirror_packets > 0, "interface mirroring of vm1 sent nothing: {vif1:?}");
        let totals = stats.lcore_counters(None);
        assert!(totals.mirror_packets >= vif1.mirror_packets + dp.iter().map(|f| f.mirror_packets).sum::<u64>());
        loop {
            let (code, vmi) =
                http(http_addr, "GET", &format!("/analytics/uves/virtual-machine-interface/{VM1_VMI}?flat"), "");
            assert_eq!(code, 200);
            let (_, vr) = http(http_addr, "GET", "/analytics/uves/vrouter/e2e-vrouter?flat", "");
            let raw = &vmi["VMIStats"]["raw_if_stats"];
            let agent = &vr["VrouterStatsAgent"];
            if raw["in_pkts"] == json!(vif1.rx_packets)
                && raw["out_pkts"] == json!(vif1.tx_packets)
                && raw["mir_pkts"] == json!(vif1.mirror_packets)
                && agent["in_tpkts"] == json!(rx_pkts)
                && agent["out_tpkts"] == json!(tx_pkts)
                && agent["mir_tpkts"] == json!(totals.mirror_packets)
            {
                assert_eq!(raw["in_bytes"], json!(vif1.rx_bytes));
                assert_eq!(raw["out_bytes"], json!(vif1.tx_bytes));
                assert_eq!(raw["mir_bytes"], json!(vif1.mirror_bytes), "VMI UVE = vif --get mirror counters");
                assert_eq!(agent["mir_bytes"], json!(totals.mirror_bytes), "vRouter UVE = mirror --dump totals");
                break;
            }
            assert!(Instant::now() < deadline, "UVEs never matched: {vmi}\n{vr}\nvif1 {vif1:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
        checked = true;
    });
    assert!(checked);
    out.assert_accounted(n_in);
    // The vRouter stopped: its session ended, so the collector removed its UVEs; the flow
    // records stay.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, list) = http(http_addr, "GET", "/analytics/uves/vrouters", "");
        if list == json!([]) {
            break;
        }
        assert!(Instant::now() < deadline, "UVEs of the stopped vRouter remain: {list}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(records(http_addr).len(), 4);
    let (_, stats) = http(http_addr, "GET", "/analytics/collector/stats", "");
    assert_eq!(stats["malformed_frames"], 0, "{stats}");
    assert_eq!(stats["sessions_established"], 1, "{stats}");
    rt.block_on(c.stop());
}
