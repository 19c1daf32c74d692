//! Sandesh sessions over real TCP on 127.0.0.1 against an in-process collector, checked
//! through the REST API over real HTTP.

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;

fn uve_flat(c: &TestCollector, ty: &str, name: &str) -> serde_json::Value {
    let (code, v) = http_get(c.http, &format!("/analytics/uves/{ty}/{name}?flat"));
    assert_eq!(code, 200);
    v
}

fn uves_listed_flat_raw_updated_and_deleted(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(base) = config(backend, dir.path()) else { return };
    let c = TestCollector::start(base.clone());
    let mut g = Generator::connect(c.sandesh, "host1");
    let vmi_name = "default-domain:demo:vmi1";
    g.send_vmi(vmi(vmi_name, 3, 3, 207), 0);
    g.send_vrouter(vrouter("host1", 24663, 1702195), 0);
    c.wait_stat("uve_updates_received", 2);
    c.flush();

    // Listing with hrefs.
    let (code, v) = http_get(c.http, "/analytics/uves/virtual-machine-interfaces");
    assert_eq!(code, 200);
    assert_eq!(
        v,
        json!([{"name": vmi_name, "href": format!("http://{}/analytics/uves/virtual-machine-interface/{vmi_name}?flat", c.http)}])
    );
    let (_, v) = http_get(c.http, "/analytics/uves/vrouters");
    assert_eq!(v[0]["name"], "host1");
    let (_, types) = http_get(c.http, "/analytics/uves");
    assert!(types.as_array().unwrap().iter().any(|t| t["name"] == "virtual-machine-interfaces"
        && t["href"] == format!("http://{}/analytics/uves/virtual-machine-interfaces", c.http)));

    // Flat: typed values, mirror counters, __T.
    let v = uve_flat(&c, "virtual-machine-interface", vmi_name);
    let s = &v["VMIStats"];
    assert_eq!(
        s["raw_if_stats"],
        json!({"in_pkts": 3, "in_bytes": 300, "out_pkts": 6, "out_bytes": 600, "mir_pkts": 3, "mir_bytes": 207})
    );
    assert_eq!(s["vm_name"], "vm1");
    assert!(s["__T"].as_i64().unwrap() > now_us() - 60_000_000);
    assert!(s.get("name").is_none() && s.get("deleted").is_none());
    let v = uve_flat(&c, "vrouter", "host1");
    assert_eq!(v["VrouterStatsAgent"]["mir_tpkts"], 24663);
    assert_eq!(v["VrouterStatsAgent"]["mir_bytes"], 1702195);

    // Raw: per-generator pairs with the XML attributes.
    let (_, raw) = http_get(c.http, &format!("/analytics/uves/virtual-machine-interface/{vmi_name}"));
    let entry = &raw["VMIStats"]["raw_if_stats"][0];
    assert_eq!(entry[1], "host1:Compute:contrail-vrouter-agent:0");
    assert_eq!(entry[0]["@type"], "struct");
    assert_eq!(entry[0]["@metric"], "agg");
    assert_eq!(entry[0]["VmInterfaceStats"]["mir_bytes"], json!({"@type": "u64", "@identifier": "6", "#text": "207"}));
    assert_eq!(raw["VMIStats"]["__T"][0][0]["@type"], "u64");

    // A partial update replaces only what it carries.
    let mut partial = vmi(vmi_name, 5, 4, 300);
    partial.vm_name = None;
    g.send_vmi(partial, 0);
    c.wait_stat("uve_updates_received", 3);
    c.flush();
    let v = uve_flat(&c, "virtual-machine-interface", vmi_name);
    assert_eq!(v["VMIStats"]["raw_if_stats"]["mir_pkts"], 4);
    assert_eq!(v["VMIStats"]["vm_name"], "vm1");

    // A filter of the reference API gives the flat form of what passes it (tests/rest_uve_api.rs).
    let (code, v) = http_get(c.http, &format!("/analytics/uves/virtual-machine-interface/{vmi_name}?sfilt=host1"));
    assert_eq!((code, &v["VMIStats"]["raw_if_stats"]["mir_pkts"]), (200, &json!(4)));
    let (code, v) = http_get(c.http, &format!("/analytics/uves/virtual-machine-interface/{vmi_name}?sfilt=host9"));
    assert_eq!((code, v), (200, json!({})));
    // Wildcard: every object of the type, flat.
    let (code, v) = http_get(c.http, "/analytics/uves/virtual-machine-interface/default-domain:*");
    assert_eq!(code, 200);
    assert_eq!(v["value"][0]["name"], vmi_name);
    assert_eq!(v["value"][0]["value"]["VMIStats"]["raw_if_stats"]["mir_pkts"], 4);
    assert_eq!(v["value"].as_array().unwrap().len(), 1);

    // Unknown name: {} ; unknown type: 404.
    assert_eq!(uve_flat(&c, "virtual-machine-interface", "nope"), json!({}));
    let (code, v) = http_get(c.http, "/analytics/uves/bogus-type/x");
    assert_eq!(code, 404);
    assert!(v["error"].as_str().unwrap().contains("unknown UVE type `bogus-type`"));

    // deleted=true removes that struct.
    let mut del = vmi(vmi_name, 0, 0, 0);
    del.deleted = Some(true);
    del.raw_if_stats = None;
    g.send_vmi(del, 0);
    c.wait_stat("uve_updates_received", 4);
    c.flush();
    assert_eq!(uve_flat(&c, "virtual-machine-interface", vmi_name), json!({}));
    let (_, v) = http_get(c.http, "/analytics/uves/virtual-machine-interfaces");
    assert_eq!(v, json!([]));
    // The vRouter UVE is untouched.
    assert_eq!(uve_flat(&c, "vrouter", "host1")["VrouterStatsAgent"]["mir_tpkts"], 24663);
    c.stop();
}

fn flat_merges_generators_and_disconnect_removes_only_that_generators_uves(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(base) = config(backend, dir.path()) else { return };
    let c = TestCollector::start(base.clone());
    let mut g1 = Generator::connect(c.sandesh, "host1");
    let mut g2 = Generator::connect(c.sandesh, "host2");
    g1.send_vmi(vmi("vmi-shared", 3, 1, 10), 0);
    g2.send_vmi(vmi("vmi-shared", 3, 2, 20), 0);
    g2.send_vrouter(vrouter("host2", 7, 700), 0);
    c.wait_stat("uve_updates_received", 3);
    c.flush();
    let v = uve_flat(&c, "virtual-machine-interface", "vmi-shared");
    // Same vm_name from both: one value; different stats: [value, generator] pairs.
    assert_eq!(v["VMIStats"]["vm_name"], "vm1");
    let pairs = v["VMIStats"]["raw_if_stats"].as_array().unwrap();
    assert_eq!(pairs.len(), 2);
    assert_eq!(pairs[0][1], "host1:Compute:contrail-vrouter-agent:0");
    assert_eq!(pairs[0][0]["mir_pkts"], 1);
    assert_eq!(pairs[1][1], "host2:Compute:contrail-vrouter-agent:0");
    assert_eq!(pairs[1][0]["mir_pkts"], 2);

    // host2 disconnects: its UVEs go, host1's stay.
    drop(g2);
    // VMIStats: __T + vm_name, virtual_network, raw_if_stats; VrouterStatsAgent: __T + 6 counters.
    c.wait_stat("uve_rows_removed", 4 + 7);
    c.flush();
    let v = uve_flat(&c, "virtual-machine-interface", "vmi-shared");
    assert_eq!(v["VMIStats"]["raw_if_stats"]["mir_pkts"], 1);
    assert_eq!(uve_flat(&c, "vrouter", "host2"), json!({}));
    assert_eq!(c.stat("sessions_active"), 1);
    drop(g1);
    c.wait_stat_eq("sessions_active", 0);
    c.flush();
    assert_eq!(uve_flat(&c, "virtual-machine-interface", "vmi-shared"), json!({}));
    c.stop();
}

fn reconnect_replaces_the_old_session_and_resyncs(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(base) = config(backend, dir.path()) else { return };
    let c = TestCollector::start(base.clone());
    let mut old = Generator::connect(c.sandesh, "host1");
    old.send_vmi(vmi("vmi-a", 1, 1, 1), 0);
    old.send_vmi(vmi("vmi-b", 1, 1, 1), 0);
    c.wait_stat("uve_updates_received", 2);

    // Same generator again (the agent after an outage it noticed before the collector did).
    let mut new = Generator::connect(c.sandesh, "host1");
    assert_eq!(c.stat("sessions_replaced"), 1);
    assert!(old.closed_by_peer(), "the old session must be closed");
    // Resync sends only vmi-a (vmi-b went away during the outage) with new figures.
    new.send_vmi(vmi("vmi-a", 9, 9, 900), sandesh::hints::SYNC);
    c.wait_stat("uve_updates_received", 3);
    c.flush();
    let v = uve_flat(&c, "virtual-machine-interface", "vmi-a");
    assert_eq!(v["VMIStats"]["raw_if_stats"]["mir_bytes"], 900);
    assert_eq!(uve_flat(&c, "virtual-machine-interface", "vmi-b"), json!({}), "stale UVE of the old session");
    // The old session ending must not remove the new session's UVEs.
    drop(old);
    std::thread::sleep(Duration::from_millis(200));
    c.flush();
    assert_eq!(uve_flat(&c, "virtual-machine-interface", "vmi-a")["VMIStats"]["raw_if_stats"]["mir_bytes"], 900);
    assert_eq!(c.stat("sessions_active"), 1);
    c.stop();
}

fn malformed_frame_closes_the_session_and_is_counted(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(base) = config(backend, dir.path()) else { return };
    let c = TestCollector::start(base.clone());
    let mut g = Generator::connect(c.sandesh, "host1");
    g.send_vmi(vmi("vmi-a", 1, 1, 1), 0);
    c.wait_stat("uve_updates_received", 1);
    // A well-framed message with whitespace between tags: the strict decoder rejects it.
    let good = g.frame(&sandesh::FlowLogDataObject { flowdata: vec![flow("f1", 1000, 100, 1, 100, 1)] }, 0);
    let text = String::from_utf8(good).unwrap();
    let body = &text[29..text.len() - 10];
    let spaced = body.replacen("<FlowLogData>", " <FlowLogData>", 1);
    let framed = sandesh::encode_frame(spaced.as_bytes()).unwrap();
    g.send_bytes(&framed);
    assert!(g.closed_by_peer());
    c.wait_stat("malformed_frames", 1);
    c.flush();
    // Nothing of that frame was stored, and the session's UVEs went with it.
    let q =
        json!({"table": "FlowRecordTable", "start_time": "now-1h", "end_time": "now", "select_fields": ["UuidKey"]});
    assert!(rows(c.http, &q).is_empty());
    assert_eq!(uve_flat(&c, "virtual-machine-interface", "vmi-a"), json!({}));

    // A bad envelope (length prefix garbage).
    let mut g = Generator::connect(c.sandesh, "host1");
    g.send_bytes(b"<sandesh length=\"00000000x0\"><SandeshHeader>");
    assert!(g.closed_by_peer());
    c.wait_stat("malformed_frames", 2);
    // A frame whose header type does not match the message (UVE body with Type=FLOW).
    let mut g = Generator::connect(c.sandesh, "host1");
    let f = g.frame(&sandesh::UVEVMIStats { data: vmi("x", 1, 1, 1) }, 0);
    let t = String::from_utf8(f)
        .unwrap()
        .replace("<Type type=\"i32\" identifier=\"8\">6</Type>", "<Type type=\"i32\" identifier=\"8\">8</Type>");
    g.send_bytes(t.as_bytes());
    assert!(g.closed_by_peer());
    c.wait_stat("malformed_frames", 3);
    // The collector still serves others.
    let mut ok = Generator::connect(c.sandesh, "host9");
    ok.send_flows(vec![flow("f9", 1000, 100, 1, 100, 1)]);
    c.wait_stat("flow_records_received", 1);
    c.flush();
    assert_eq!(rows(c.http, &q), vec![json!({"UuidKey": "f9"})]);
    c.stop();
}

fn handshake_is_required_and_validated(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(base) = config(backend, dir.path()) else { return };
    let mut cfg = base.clone();
    cfg.handshake_timeout_s = 1;
    let c = TestCollector::start(cfg);

    // A flow message before the handshake: closed, nothing stored.
    let mut g = Generator::connect_raw(c.sandesh, Generator::id("host1"));
    g.send_flows(vec![flow("f1", 1000, 100, 1, 100, 1)]);
    assert!(g.closed_by_peer());
    c.wait_stat("handshake_missing", 1);

    // Empty node type: refused with success=false.
    let mut id = Generator::id("host1");
    id.node_type = String::new();
    let mut g = Generator::connect_raw(c.sandesh, id);
    let hello = g.hello();
    g.send(&hello, 0);
    let reply = g.read_reply().expect("a refusal reply");
    assert!(!reply.success);
    assert!(g.closed_by_peer());
    // Empty instance id likewise.
    let mut id = Generator::id("host1");
    id.instance_id = String::new();
    let mut g = Generator::connect_raw(c.sandesh, id);
    let hello = g.hello();
    g.send(&hello, 0);
    assert!(!g.read_reply().unwrap().success);
    c.wait_stat("handshake_refused", 2);

    // Silence: closed after the handshake timeout.
    let mut g = Generator::connect_raw(c.sandesh, Generator::id("host1"));
    assert!(g.closed_by_peer());
    c.wait_stat("handshake_timeouts", 1);
    // Garbage instead of a frame.
    let mut g = Generator::connect_raw(c.sandesh, Generator::id("host1"));
    g.send_bytes(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(g.closed_by_peer());
    c.wait_stat("malformed_frames", 1);

    c.flush();
    let q = serde_json::json!({"table": "FlowRecordTable", "start_time": "now-1h", "end_time": "now", "select_fields": ["UuidKey"]});
    assert!(rows(c.http, &q).is_empty());
    assert_eq!(c.stat("sessions_established"), 0);
    c.stop();
}

on_both_backends!(
    uves_listed_flat_raw_updated_and_deleted,
    flat_merges_generators_and_disconnect_removes_only_that_generators_uves,
    reconnect_replaces_the_old_session_and_resyncs,
    malformed_frame_closes_the_session_and_is_counted,
    handshake_is_required_and_validated,
);
