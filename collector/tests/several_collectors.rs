//! Several collectors on one ClickHouse: three generators (the sandesh crate's sessions, as
//! the vRouter's exporter uses them) spread over two collectors; a query on either sees every
//! record, `/analytics/uves` on either every generator; when one collector stops, its
//! generators fail over to the other (their collector lists) and no record is lost, flows
//! that continue there keep aggregating from what the first stored.

mod common;

use common::*;
use sandesh::session::{SessionConfig, SessionHandle, SessionState};
use sandesh::{UVEVMIStats, VrouterStats};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn uuid(host: usize, k: usize) -> String {
    format!("0000000{host}-0000-4000-8000-{k:012}")
}

fn records(http: SocketAddr) -> Vec<Value> {
    let q = json!({"table": "FlowRecordTable", "start_time": "now-10m", "end_time": "now",
                   "select_fields": ["UuidKey", "vrouter", "agg-bytes"], "sort_fields": ["UuidKey"]});
    rows(http, &q)
}

fn vrouters(http: SocketAddr) -> Vec<String> {
    let (code, v) = http_get(http, "/analytics/uves/vrouters");
    assert_eq!(code, 200);
    v.as_array().unwrap().iter().map(|x| x["name"].as_str().unwrap().to_owned()).collect()
}

fn session(host: &str, collectors: Vec<SocketAddr>) -> SessionHandle {
    let mut scfg = SessionConfig::new(Generator::id(host));
    scfg.collectors = collectors;
    scfg.backoff_base = Duration::from_millis(100);
    scfg.backoff_max = Duration::from_millis(400);
    let s = SessionHandle::start(scfg).unwrap();
    s.update_uve(&VrouterStats { data: vrouter(host, 10, 1000) }).unwrap();
    s.update_uve(&UVEVMIStats { data: vmi(&format!("vmi-{host}"), 3, 3, 207) }).unwrap();
    s
}

#[test]
fn two_collectors_share_records_and_uves_and_take_over_each_others_generators() {
    let dir = tempfile::tempdir().unwrap();
    let Some(base) = config(Backend::ClickHouse, dir.path()) else { return };
    let a = TestCollector::start(CollectorConfigExt::named(&base, "collector-a"));
    let b = TestCollector::start(CollectorConfigExt::named(&base, "collector-b"));
    // host1 and host2 prefer a, host3 prefers b; each fails over to the other.
    let hosts = [
        session("host1", vec![a.sandesh, b.sandesh]),
        session("host2", vec![a.sandesh, b.sandesh]),
        session("host3", vec![b.sandesh, a.sandesh]),
    ];
    for (h, s) in hosts.iter().enumerate() {
        for k in 0..30 {
            assert!(s.send_flow(flow(&uuid(h + 1, k), 1000 + k as u16, 100, 1, 100, 1)));
        }
    }
    for c in [&a, &b] {
        wait_for("90 records on each collector", || records(c.http).len() == 90);
        wait_for("three vRouters on each collector", || vrouters(c.http) == ["host1", "host2", "host3"]);
        let (_, v) = http_get(c.http, "/analytics/uves/virtual-machine-interface/vmi-host3?flat");
        assert_eq!(v["VMIStats"]["raw_if_stats"]["mir_bytes"], 207);
    }
    assert_eq!(a.stat("sessions_active"), 2);
    assert_eq!(b.stat("sessions_active"), 1);
    let before = records(b.http);

    // a stops (SIGTERM's path: drain, commit): host1 and host2 move to b.
    a.stop();
    for s in &hosts[..2] {
        wait_for("the failover", || s.state() == SessionState::Established && s.stats().collector_index == 1);
    }
    // They go on: new flows, and a later sample of a flow a stored (b reads its aggregates).
    for (h, s) in hosts.iter().enumerate().take(2) {
        for k in 30..40 {
            assert!(s.send_flow(flow(&uuid(h + 1, k), 1000 + k as u16, 100, 1, 100, 1)));
        }
        assert!(s.send_flow(flow(&uuid(h + 1, 7), 1007, 700, 7, 600, 6)));
    }
    wait_for("110 records on b", || records(b.http).len() == 110);
    let after = records(b.http);
    for r in &before {
        let now = after.iter().find(|x| x["UuidKey"] == r["UuidKey"]).expect("a record kept");
        let moved = r["UuidKey"] == uuid(1, 7) || r["UuidKey"] == uuid(2, 7);
        assert_eq!(now["agg-bytes"], if moved { json!(700) } else { r["agg-bytes"].clone() });
    }
    let q = json!({"table": "FlowSeriesTable", "start_time": "now-10m", "end_time": "now",
                   "select_fields": ["vrouter", "SUM(bytes)"], "sort_fields": ["vrouter"]});
    let want = [
        json!({"vrouter": "host1", "SUM(bytes)": 40 * 100 + 600}),
        json!({"vrouter": "host2", "SUM(bytes)": 40 * 100 + 600}),
        json!({"vrouter": "host3", "SUM(bytes)": 30 * 100}),
    ];
    // Each table is its own insert: the series rows may land just after their records.
    wait_for("the series on b", || rows(b.http, &q) == want);
    wait_for("every vRouter's UVEs on b", || vrouters(b.http) == ["host1", "host2", "host3"]);
    assert_eq!(b.stat("sessions_active"), 3);
    for s in &hosts {
        assert_eq!(s.stats().flows_dropped, 0);
    }
    b.stop();
}
