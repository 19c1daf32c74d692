//! The sandesh crate's generator session (the one the vRouter's exporter uses) against the
//! collector, through a collector outage: records sent before, during and after it all end
//! up stored exactly once, and the generator's UVEs are resynchronised after it reconnects.

mod common;

use common::*;
use sandesh::session::{SessionConfig, SessionHandle};
use sandesh::{UVEVMIStats, VrouterStats};
use serde_json::json;
use std::time::{Duration, Instant};

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn record_count(c: &TestCollector) -> usize {
    let q =
        json!({"table": "FlowRecordTable", "start_time": "now-10m", "end_time": "now", "select_fields": ["UuidKey"]});
    rows(c.http, &q).len()
}

fn vmi_mir_bytes(c: &TestCollector) -> Option<u64> {
    let (code, v) = http_get(c.http, "/analytics/uves/virtual-machine-interface/vmi-1?flat");
    assert_eq!(code, 200);
    v["VMIStats"]["raw_if_stats"]["mir_bytes"].as_u64()
}

fn generator_session_survives_a_collector_restart(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(base) = config(backend, dir.path()) else { return };
    let c = TestCollector::start(base.clone());
    let (sandesh_port, http_port) = (c.sandesh.port(), c.http.port());

    let mut scfg = SessionConfig::new(Generator::id("host1"));
    scfg.collectors = vec![c.sandesh];
    scfg.backoff_base = Duration::from_millis(100);
    scfg.backoff_max = Duration::from_millis(400);
    let session = SessionHandle::start(scfg).unwrap();
    session.update_uve(&UVEVMIStats { data: vmi("vmi-1", 3, 3, 207) }).unwrap();
    session.update_uve(&VrouterStats { data: vrouter("host1", 10, 1000) }).unwrap();
    let uuid = |k: usize| format!("00000000-0000-4000-8000-{k:012}");
    for k in 0..50 {
        assert!(session.send_flow(flow(&uuid(k), 1000 + k as u16, 100, 1, 100, 1)));
    }
    wait_for("50 records and the VMI UVE", || record_count(&c) == 50 && vmi_mir_bytes(&c) == Some(207));

    // Outage: the collector goes away (its sessions with it), and the generator notices.
    c.stop();
    wait_for("the generator to notice the outage", || session.state() != sandesh::session::SessionState::Established);
    // Meanwhile the generator keeps exporting: new flows, a later sample of an old one, and
    // a UVE update.
    for k in 50..80 {
        assert!(session.send_flow(flow(&uuid(k), 1000 + k as u16, 100, 1, 100, 1)));
    }
    assert!(session.send_flow(flow(&uuid(7), 1007, 700, 7, 600, 6)));
    session.update_uve(&UVEVMIStats { data: vmi("vmi-1", 9, 9, 900) }).unwrap();
    std::thread::sleep(Duration::from_millis(500));

    // The collector comes back on the same ports with the same database.
    let mut cfg = base.clone();
    cfg.sandesh_listen = format!("127.0.0.1:{sandesh_port}");
    cfg.http_listen = format!("127.0.0.1:{http_port}");
    let c = TestCollector::start(cfg);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(record_count(&c) == 80 && vmi_mir_bytes(&c) == Some(900)) {
        assert!(
            Instant::now() < deadline,
            "after the restart: {} records, VMI mir_bytes {:?}; generator {:?} {:?}; collector {}",
            record_count(&c),
            vmi_mir_bytes(&c),
            session.state(),
            session.stats(),
            http_get(c.http, "/analytics/collector/stats").1
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Everything received is stored (ClickHouse inserts each table on its own: the series
    // rows may follow their records).
    c.flush();
    let q = json!({"table": "FlowRecordTable", "start_time": "now-10m", "end_time": "now",
                   "select_fields": ["agg-bytes", "agg-packets"],
                   "where": [[{"name": "UuidKey", "value": uuid(7)}]]});
    assert_eq!(rows(c.http, &q), vec![json!({"agg-bytes": 700, "agg-packets": 7})]);
    let q = json!({"table": "FlowSeriesTable", "start_time": "now-10m", "end_time": "now",
                   "select_fields": ["SUM(bytes)", "SUM(packets)"]});
    assert_eq!(rows(c.http, &q), vec![json!({"SUM(bytes)": 80 * 100 + 600, "SUM(packets)": 80 + 6})]);
    let (_, vr) = http_get(c.http, "/analytics/uves/vrouter/host1?flat");
    assert_eq!(vr["VrouterStatsAgent"]["mir_tpkts"], 10);
    assert_eq!(c.stat("sessions_established"), 1);
    assert_eq!(c.stat("malformed_frames"), 0);
    let st = session.stats();
    assert_eq!(st.flows_dropped, 0, "{st:?}");

    // The generator goes away for good: its UVEs go, its records stay.
    session.shutdown(Duration::from_secs(1));
    wait_for("UVE removal", || vmi_mir_bytes(&c).is_none());
    assert_eq!(record_count(&c), 80);
    c.stop();
}

fn an_orderly_stop_loses_no_record_the_generator_is_sending(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(base) = config(backend, dir.path()) else { return };
    let c = TestCollector::start(base.clone());
    let (sandesh_port, http_port) = (c.sandesh.port(), c.http.port());
    let mut scfg = SessionConfig::new(Generator::id("host1"));
    scfg.collectors = vec![c.sandesh];
    scfg.backoff_base = Duration::from_millis(100);
    scfg.backoff_max = Duration::from_millis(400);
    scfg.flows_per_message = 4;
    let session = std::sync::Arc::new(SessionHandle::start(scfg).unwrap());
    wait_for("the session", || session.state() == sandesh::session::SessionState::Established);

    // The generator exports steadily while the collector stops (SIGTERM path: half-close,
    // drain, commit) and comes back.
    const N: usize = 600;
    let sender = {
        let session = session.clone();
        std::thread::spawn(move || {
            for k in 0..N {
                let uuid = format!("00000000-0000-4000-8000-{k:012}");
                assert!(session.send_flow(flow(&uuid, 1000 + k as u16, 100, 1, 100, 1)));
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(150));
    c.stop();
    let mut cfg = base.clone();
    cfg.sandesh_listen = format!("127.0.0.1:{sandesh_port}");
    cfg.http_listen = format!("127.0.0.1:{http_port}");
    let c = TestCollector::start(cfg);
    sender.join().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while record_count(&c) < N {
        assert!(
            Instant::now() < deadline,
            "{} of {N} records after the restart; generator {:?}",
            record_count(&c),
            session.stats()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(record_count(&c), N);
    assert_eq!(session.stats().flows_dropped, 0);
    c.stop();
}

on_both_backends!(
    generator_session_survives_a_collector_restart,
    an_orderly_stop_loses_no_record_the_generator_is_sending,
);
