//! `GET /analytics/mirror/reconcile` over flow records and a vRouter UVE sent over Sandesh:
//! per vRouter and analyzer, and per rule, the stored flows' packets next to the copies
//! sent, lost (by reason, from the UVE), before the rule and held and dropped; what sampling
//! left out comes from the UVE too.

mod common;

use common::*;
use sandesh::{MirrorAnalyzerStats, MirrorLossStats};
use serde_json::{json, Value};

const RULE: &str = "bbbbbbbb-0000-4000-8000-000000000001";

/// A mirrored record: `packets` of which `sent` copied to `an-a` (and `sec_sent` to `an-b`,
/// with `sec_lost` lost), `before` before the rule, `held` held and dropped.
#[allow(clippy::too_many_arguments)]
fn mirrored(
    uuid: &str,
    packets: i64,
    sent: i64,
    lost: i64,
    sec: Option<(i64, i64)>,
    before: i64,
    held: i64,
) -> sandesh::FlowLogData {
    let mut f = flow(uuid, 4000, packets * 100, packets, packets * 100, packets);
    f.action = Some("pass|mirror".into());
    f.nw_ace_uuid = Some(RULE.into());
    f.analyzer_name = Some("an-a".into());
    f.mirror_packets = Some(sent);
    f.mirror_bytes = Some(sent * 150);
    f.mirror_lost_packets = Some(lost);
    if let Some((s, l)) = sec {
        f.sec_analyzer_name = Some("an-b".into());
        f.sec_mirror_packets = Some(s);
        f.sec_mirror_bytes = Some(s * 150);
        f.sec_mirror_lost_packets = Some(l);
    }
    f.before_mirror_packets = Some(before);
    f.held_dropped_packets = Some(held);
    f
}

fn analyzer(name: &str, flow_pkts: u64, no_nh: u64, encap: u64, sampled: u64) -> MirrorAnalyzerStats {
    MirrorAnalyzerStats {
        name: name.into(),
        analyzer_ip: Some("10.20.0.5".into()),
        index: Some(1),
        flow_pkts: Some(flow_pkts),
        flow_bytes: Some(flow_pkts * 150),
        iface_pkts: Some(2),
        iface_bytes: Some(300),
        lost: Some(vec![
            MirrorLossStats { reason: "mirror_no_nh".into(), flow_pkts: no_nh, iface_pkts: 0 },
            MirrorLossStats { reason: "mirror_encap_fail".into(), flow_pkts: encap, iface_pkts: 1 },
        ]),
        sampled_out_pkts: Some(sampled),
        sampled_out_bytes: Some(sampled * 100),
        sampled_out_mir_pkts: Some(0),
    }
}

fn balance(v: &Value) -> Vec<i64> {
    [
        "flows",
        "packets",
        "sent_packets",
        "lost_packets",
        "before_mirror_packets",
        "held_dropped_packets",
        "unexplained_packets",
    ]
    .iter()
    .map(|k| v[*k].as_i64().unwrap_or_else(|| panic!("{k} in {v}")))
    .collect()
}

fn reconcile_per_analyzer_and_rule_with_loss_reasons_and_sampling_from_the_uve(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(cfg) = config(backend, dir.path()) else { return };
    let c = TestCollector::start(cfg);
    let mut g = Generator::connect(c.sandesh, "host1");
    g.send_flows(vec![
        // 10 packets: 8 copies to an-a (1 lost, 1 held and dropped), 0 to an-b (9 lost).
        mirrored("11111111-0000-4000-8000-000000000001", 10, 8, 1, Some((0, 9)), 0, 1),
        // An earlier sample of the same flow: merged, the larger cumulative figures win.
        mirrored("11111111-0000-4000-8000-000000000001", 4, 3, 0, Some((0, 3)), 0, 1),
        // Set up before its rule: 5 packets before, then 2 copied.
        mirrored("22222222-0000-4000-8000-000000000002", 7, 2, 0, None, 5, 0),
    ]);
    // A flow without mirroring is not in the reconciliation.
    g.send_flows(vec![flow("33333333-0000-4000-8000-000000000003", 1, 100, 1, 100, 1)]);
    let mut vr = vrouter("host1", 10, 1500);
    vr.mirror_analyzers = Some(vec![analyzer("an-a", 10, 0, 1, 6), analyzer("an-b", 0, 9, 0, 0)]);
    g.send_vrouter(vr, 0);
    c.wait_stat("flow_records_received", 4);
    c.flush();

    let (code, v) = http_get(c.http, "/analytics/mirror/reconcile?start_time=now-10m&end_time=now");
    assert_eq!(code, 200, "{v}");
    let an = v["analyzers"].as_array().unwrap();
    assert_eq!(an.len(), 2, "{v:#}");
    let (a, b) = (&an[0], &an[1]);
    assert_eq!(
        (&a["vrouter"], &a["analyzer_name"], &b["analyzer_name"]),
        (&json!("host1"), &json!("an-a"), &json!("an-b"))
    );
    // an-a: 17 = 10 sent + 1 lost + 5 before the rule + 1 held and dropped.
    assert_eq!(balance(a), [2, 17, 10, 1, 5, 1, 0], "{a:#}");
    assert_eq!((&a["bytes"], &a["sent_bytes"]), (&json!(1700), &json!(1500)));
    // an-b: 10 = 0 sent + 9 lost + 0 + 1 held and dropped.
    assert_eq!(balance(b), [1, 10, 0, 9, 0, 1, 0], "{b:#}");
    // From the UVE: lost copies by reason, the entry's counters, what sampling left out.
    assert_eq!(a["lost"], json!({"mirror_no_nh": 0, "mirror_encap_fail": 1}));
    assert_eq!(b["lost"], json!({"mirror_no_nh": 9, "mirror_encap_fail": 0}));
    assert_eq!(a["entry"]["flow_packets"], 10);
    assert_eq!(a["entry"]["interface_lost"]["mirror_encap_fail"], 1);
    assert_eq!((&a["sampled_out_packets"], &a["vrouter_packets"]), (&json!(6), &json!(23)));
    assert_eq!(a["analyzer_ip"], "10.20.0.5");
    // Per rule and analyzer.
    let rules = v["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 2);
    assert_eq!((&rules[0]["rule"], &rules[0]["analyzer_name"]), (&json!(RULE), &json!("an-a")));
    assert_eq!(balance(&rules[0]), balance(a));
    assert_eq!(balance(&rules[1]), balance(b));
    // One vRouter only, and a window before the flows.
    let (_, other) = http_get(c.http, "/analytics/mirror/reconcile?vrouter=host2");
    assert_eq!(other, json!({"analyzers": [], "rules": []}));
    let (_, old) = http_get(c.http, "/analytics/mirror/reconcile?start_time=now-2h&end_time=now-1h");
    assert_eq!(old["analyzers"], json!([]));
    // The columns are in FlowRecordTable too.
    let q = json!({
        "table": "FlowRecordTable", "start_time": "now-10m", "end_time": "now",
        "select_fields": ["UuidKey", "agg-mir-lost-packets", "agg-sec-mir-lost-packets", "before-mirror-packets",
                          "held-dropped-packets"],
        "sort_fields": ["UuidKey"]
    });
    let r = rows(c.http, &q);
    assert_eq!(
        r[0],
        json!({"UuidKey": "11111111-0000-4000-8000-000000000001", "agg-mir-lost-packets": 1,
               "agg-sec-mir-lost-packets": 9, "before-mirror-packets": 0, "held-dropped-packets": 1})
    );
    // Errors name the parameter.
    let (code, e) = http_get(c.http, "/analytics/mirror/reconcile?analyzer=an-a");
    assert_eq!(code, 400);
    assert!(e["error"].as_str().unwrap().starts_with("analyzer: unknown parameter"), "{e}");
    // Without the vRouter's UVE (it disconnected), the records still balance.
    drop(g);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, v) = http_get(c.http, "/analytics/mirror/reconcile");
        if v["analyzers"][0]["lost"].is_null() {
            assert_eq!(balance(&v["analyzers"][0]), [2, 17, 10, 1, 5, 1, 0]);
            assert!(v["analyzers"][0]["sampled_out_packets"].is_null());
            break;
        }
        assert!(std::time::Instant::now() < deadline, "UVE never removed: {v}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    c.stop();
}

on_both_backends!(reconcile_per_analyzer_and_rule_with_loss_reasons_and_sampling_from_the_uve);
