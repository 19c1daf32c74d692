//! Flow records sent over Sandesh and queried over HTTP, and the API's error codes.

mod common;

use common::*;
use serde_json::json;

fn mirrored_flows_aggregate_exactly_and_series_sum_to_the_records(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(base) = config(backend, dir.path()) else { return };
    let c = TestCollector::start(base.clone());
    let mut g = Generator::connect(c.sandesh, "host1");
    // Three exports of one mirrored flow (cumulative counters and diffs), two of a plain one,
    // from two batches; and a flow from a second vRouter.
    let mut samples = Vec::new();
    let mut cum = (0i64, 0i64, 0i64, 0i64);
    for (db, dp) in [(1500i64, 10i64), (3000, 20), (450, 3)] {
        cum.0 += db;
        cum.1 += dp;
        cum.2 += db + 24 * dp; // mirrored bytes include the mirror encapsulation
        cum.3 += dp;
        let mut f = flow("11111111-0000-0000-0000-000000000001", 40000, cum.0, cum.1, db, dp);
        f.action = Some("pass|mirror".into());
        f.analyzer_name = Some("default-domain:demo:analyzer-a".into());
        f.mirror_bytes = Some(cum.2);
        f.mirror_packets = Some(cum.3);
        f.sec_analyzer_name = Some("default-domain:demo:analyzer-b".into());
        f.sec_mirror_bytes = Some(cum.0);
        f.sec_mirror_packets = Some(cum.1);
        samples.push(f);
    }
    samples.push(flow("22222222-0000-0000-0000-000000000002", 33793, 98, 1, 98, 1));
    samples.push(flow("22222222-0000-0000-0000-000000000002", 33793, 196, 2, 98, 1));
    g.send_flows(samples[..2].to_vec());
    g.send_flows(samples[2..].to_vec());
    let mut g2 = Generator::connect(c.sandesh, "host2");
    g2.send_flows(vec![flow("33333333-0000-0000-0000-000000000003", 1234, 500, 5, 500, 5)]);
    c.wait_stat("flow_records_received", 6);
    c.flush();

    let q = json!({
        "table": "FlowRecordTable", "start_time": "now-10m", "end_time": "now",
        "select_fields": ["UuidKey", "vrouter", "sport", "sourceip", "agg-bytes", "agg-packets", "agg-mir-bytes",
                          "agg-mir-packets", "agg-sec-mir-bytes", "agg-sec-mir-packets", "analyzer_name",
                          "sec_analyzer_name", "action"],
        "sort_fields": ["UuidKey"]
    });
    let r = rows(c.http, &q);
    assert_eq!(r.len(), 3);
    assert_eq!(
        r[0],
        json!({"UuidKey": "11111111-0000-0000-0000-000000000001", "vrouter": "host1", "sport": 40000,
               "sourceip": "10.1.1.3", "agg-bytes": 4950, "agg-packets": 33, "agg-mir-bytes": 4950 + 24 * 33,
               "agg-mir-packets": 33, "agg-sec-mir-bytes": 4950, "agg-sec-mir-packets": 33,
               "analyzer_name": "default-domain:demo:analyzer-a",
               "sec_analyzer_name": "default-domain:demo:analyzer-b", "action": "pass|mirror"})
    );
    assert_eq!(r[1]["sport"], 33793, "i16 -31743 on the wire is port 33793");
    assert_eq!((r[1]["agg-bytes"].clone(), r[1]["agg-packets"].clone()), (json!(196), json!(2)));
    assert_eq!(r[1]["agg-mir-bytes"], json!(null));
    assert_eq!(r[2]["vrouter"], "host2");

    // The series table: per-flow sums equal the record aggregates.
    let q = json!({
        "table": "FlowSeriesTable", "start_time": "now-10m", "end_time": "now",
        "select_fields": ["UuidKey", "SUM(bytes)", "SUM(packets)", "SUM(mir-bytes)", "SUM(mir-packets)",
                          "SUM(sec-mir-bytes)", "SUM(sec-mir-packets)"],
        "where": [[{"name": "vrouter", "value": "host1", "op": 1}]],
        "sort_fields": ["SUM(bytes)"], "sort": 2
    });
    let r = rows(c.http, &q);
    assert_eq!(
        r,
        vec![
            json!({"UuidKey": "11111111-0000-0000-0000-000000000001", "SUM(bytes)": 4950, "SUM(packets)": 33,
                   "SUM(mir-bytes)": 4950 + 24 * 33, "SUM(mir-packets)": 33, "SUM(sec-mir-bytes)": 4950,
                   "SUM(sec-mir-packets)": 33}),
            json!({"UuidKey": "22222222-0000-0000-0000-000000000002", "SUM(bytes)": 196, "SUM(packets)": 2,
                   "SUM(mir-bytes)": 0, "SUM(mir-packets)": 0, "SUM(sec-mir-bytes)": 0, "SUM(sec-mir-packets)": 0}),
        ]
    );
    // where (OR of ANDs), filter, limit over HTTP.
    let q = json!({
        "table": "FlowRecordTable", "start_time": "now-10m", "end_time": "now",
        "select_fields": ["UuidKey", "agg-bytes"],
        "where": [[{"name": "sport", "value": 33000, "value2": 35000, "op": 3}],
                  [{"name": "vrouter", "value": "host2", "op": 1}, {"name": "agg-packets", "value": 5, "op": 6}]],
        "filter": [{"name": "agg-bytes", "value": 200, "op": 6}],
        "sort_fields": ["agg-bytes"], "limit": 5
    });
    assert_eq!(rows(c.http, &q), vec![json!({"UuidKey": "33333333-0000-0000-0000-000000000003", "agg-bytes": 500})]);
    c.stop();
}

fn bad_queries_get_http_error_codes(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(base) = config(backend, dir.path()) else { return };
    let c = TestCollector::start(base.clone());
    let cases = [
        ("{not json", 400, "invalid JSON"),
        (
            r#"{"table":"NoSuchTable","start_time":"now-1h","end_time":"now","select_fields":["x"]}"#,
            410,
            "unknown table",
        ),
        (
            r#"{"table":"FlowRecordTable","start_time":"now","end_time":"now-1d","select_fields":["UuidKey"]}"#,
            400,
            "before start_time",
        ),
        (
            r#"{"table":"FlowRecordTable","start_time":"yesterday","end_time":"now","select_fields":["UuidKey"]}"#,
            400,
            "start_time",
        ),
        (
            r#"{"table":"FlowRecordTable","start_time":"99999999999999999999999","end_time":"now","select_fields":["UuidKey"]}"#,
            400,
            "out of range",
        ),
        (
            r#"{"table":"FlowRecordTable","start_time":"now-1h","end_time":"now","select_fields":["agg-bogus"]}"#,
            400,
            "unknown field",
        ),
        (
            r#"{"table":"FlowRecordTable","start_time":"now-1h","end_time":"now","select_fields":["UuidKey"],"where":[[{"name":"sport","value":"x","op":5}]]}"#,
            400,
            "not an integer",
        ),
    ];
    for (body, code, msg) in cases {
        let (got, text) = http_raw(c.http, "POST", "/analytics/query", Some(body));
        assert_eq!(got, code, "{body}: {text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(v["error"].as_str().unwrap().contains(msg), "{body}: {text}");
    }
    assert_eq!(c.stat("queries_failed"), cases.len() as u64);
    // An absurd but valid window is clamped, not an error: from the epoch to far in the future.
    let (code, v) = query(
        c.http,
        &json!({"table": "FlowSeriesTable", "start_time": 0, "end_time": "now+3650d", "select_fields": ["T"]}),
    );
    assert_eq!((code, v), (200, json!({"value": []})));
    // Tables and schemas.
    let (code, v) = http_get(c.http, "/analytics/tables");
    assert_eq!(code, 200);
    assert_eq!(
        v[0],
        json!({"name": "FlowRecordTable", "href": format!("http://{}/analytics/table/FlowRecordTable", c.http), "type": "FLOW"})
    );
    let (_, v) = http_get(c.http, "/analytics/table/FlowRecordTable/schema");
    let cols = v["columns"].as_array().unwrap();
    let col = |n: &str| cols.iter().find(|c| c["name"] == n).unwrap_or_else(|| panic!("no column {n}")).clone();
    assert_eq!(
        col("agg-mir-bytes"),
        json!({"name": "agg-mir-bytes", "datatype": "long", "index": false, "suffixes": null})
    );
    assert_eq!(col("sourcevn")["index"], true);
    assert_eq!(col("UuidKey")["datatype"], "uuid");
    let (_, v) = http_get(c.http, "/analytics/table/FlowSeriesTable/schema");
    assert!(v["columns"].as_array().unwrap().iter().any(|c| c["name"] == "SUM(mir-bytes)"));
    let (code, _) = http_get(c.http, "/analytics/table/StatTable.Foo/schema");
    assert_eq!(code, 410);
    // Wrong method / unknown path.
    let (code, _) = http_raw(c.http, "GET", "/analytics/query", None);
    assert_eq!(code, 405);
    let (code, _) = http_raw(c.http, "GET", "/analytics/nothing", None);
    assert_eq!(code, 404);
    c.stop();
}

fn retention_removes_old_flows(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(base) = config(backend, dir.path()) else { return };
    let mut cfg = base.clone();
    cfg.flow_retention_s = 60;
    cfg.clickhouse_retention_days = 1;
    cfg.purge_interval_s = 1;
    let c = TestCollector::start(cfg);
    let mut g = Generator::connect(c.sandesh, "host1");
    // A flow last seen beyond the retention (SQLite: 60 s, to the µs; ClickHouse: one day, by
    // daily partition) and a current one.
    let old_t = match backend {
        Backend::Sqlite => now_us() - 120_000_000,
        Backend::ClickHouse => now_us() - 3 * 86_400_000_000,
    };
    let mut old = flow("00000000-0000-0000-0000-00000000000a", 1000, 100, 1, 100, 1);
    old.setup_time = Some(old_t - 1_000_000);
    let f = g.frame_at(&sandesh::FlowLogDataObject { flowdata: vec![old] }, 0, old_t);
    g.send_bytes(&f);
    g.send_flows(vec![flow("00000000-0000-0000-0000-00000000000b", 1001, 100, 1, 100, 1)]);
    c.wait_stat("flow_records_received", 2);
    // The next purge pass (every second) removes the old record and its series row.
    c.wait_stat("flow_records_purged", 1);
    c.wait_stat("flow_series_purged", 1);
    let q = json!({"table": "FlowRecordTable", "start_time": 0, "end_time": "now", "select_fields": ["UuidKey"]});
    assert_eq!(rows(c.http, &q), vec![json!({"UuidKey": "00000000-0000-0000-0000-00000000000b"})]);
    c.stop();
}

on_both_backends!(
    mirrored_flows_aggregate_exactly_and_series_sum_to_the_records,
    bad_queries_get_http_error_codes,
    retention_removes_old_flows,
);
