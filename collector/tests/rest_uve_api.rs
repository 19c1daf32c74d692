//! The rest of the UVE API operators script against, and asynchronous queries, on both
//! backends: `sfilt`/`mfilt`/`cfilt`/`kfilt`, `POST /analytics/uves/<type>`,
//! `/analytics/uve-types`, `Expect: 202-accepted` with `/analytics/query/<qid>` and its chunk,
//! in the shapes of the reference API.

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const VMI: &str = "/analytics/uves/virtual-machine-interface";

fn uves_of_two_generators(c: &TestCollector) -> (Generator, Generator) {
    let mut g1 = Generator::connect(c.sandesh, "host1");
    let mut g2 = Generator::connect(c.sandesh, "host2");
    g1.send_vmi(vmi("vmi-a", 3, 1, 10), 0);
    g2.send_vmi(vmi("vmi-a", 3, 2, 20), 0);
    g2.send_vmi(vmi("vmi-b", 5, 5, 50), 0);
    g1.send_vrouter(vrouter("host1", 7, 700), 0);
    c.wait_stat("uve_updates_received", 4);
    c.flush();
    (g1, g2)
}

fn get(c: &TestCollector, path: &str) -> Value {
    let (code, v) = http_get(c.http, path);
    assert_eq!(code, 200, "{path}: {v}");
    v
}

fn names(v: &Value) -> Vec<&str> {
    v.as_array().unwrap().iter().map(|x| x["name"].as_str().unwrap()).collect()
}

fn uve_filters_and_the_post_form(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(cfg) = config(backend, dir.path()) else { return };
    let c = TestCollector::start(cfg);
    let _g = uves_of_two_generators(&c);

    let types = get(&c, "/analytics/uve-types");
    assert_eq!(types["virtual-machine-interface"], json!({"global_system_object": false}));
    assert_eq!(types["vrouter"], json!({"global_system_object": true}));

    // sfilt: one generator's view, flat.
    let v = get(&c, &format!("{VMI}/vmi-a?sfilt=host2"));
    assert_eq!(v["VMIStats"]["raw_if_stats"]["mir_pkts"], 2, "{v}");
    assert_eq!(v["VMIStats"]["vm_name"], "vm1");
    // mfilt: module, or module:instance.
    assert_eq!(get(&c, &format!("{VMI}/vmi-a?mfilt=another-module")), json!({}));
    let v = get(&c, &format!("{VMI}/vmi-a?mfilt=contrail-vrouter-agent:0"));
    assert_eq!(v["VMIStats"]["raw_if_stats"].as_array().unwrap().len(), 2, "both generators: {v}");
    // cfilt: some attributes of a struct (its __T kept).
    let v = get(&c, &format!("{VMI}/vmi-a?cfilt=VMIStats:vm_name,VMIStats:virtual_network"));
    let mut keys: Vec<&str> = v["VMIStats"].as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["__T", "virtual_network", "vm_name"], "{v}");
    assert_eq!(get(&c, &format!("{VMI}/vmi-a?cfilt=UveVMInterfaceAgent")), json!({}));
    // kfilt on the list; attribute filters keep only objects with something left.
    let list = get(&c, "/analytics/uves/virtual-machine-interfaces?kfilt=vmi-b");
    assert_eq!(names(&list), ["vmi-b"]);
    assert!(list[0]["href"].as_str().unwrap().ends_with("/analytics/uves/virtual-machine-interface/vmi-b?flat"));
    assert_eq!(names(&get(&c, "/analytics/uves/virtual-machine-interfaces?sfilt=host1")), ["vmi-a"]);
    assert_eq!(names(&get(&c, "/analytics/uves/virtual-machine-interfaces")), ["vmi-a", "vmi-b"]);
    // Wildcard with filters.
    let v = get(&c, &format!("{VMI}/vmi-*?kfilt=vmi-b&cfilt=VMIStats:raw_if_stats"));
    assert_eq!(v["value"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["value"][0]["name"], "vmi-b");
    assert_eq!(v["value"][0]["value"]["VMIStats"]["raw_if_stats"]["mir_bytes"], 50);
    assert!(v["value"][0]["value"]["VMIStats"].get("vm_name").is_none());
    // ackfilt: no alarms here.
    let (code, v) = http_get(c.http, &format!("{VMI}/vmi-a?ackfilt=false"));
    assert_eq!((code, v["error"].as_str()), (400, Some("ackfilt: alarms are not supported by this collector")));

    // POST /analytics/uves/<type> (singular): lists or comma-separated strings.
    let body = json!({"kfilt": ["vmi-*"], "cfilt": ["VMIStats:raw_if_stats"], "sfilt": "host2"}).to_string();
    let (code, v) = http_with(c.http, "POST", VMI, &[], &body);
    assert_eq!(code, 200, "{v}");
    let values = v["value"].as_array().unwrap();
    assert_eq!(values.iter().map(|x| x["name"].as_str().unwrap()).collect::<Vec<_>>(), ["vmi-a", "vmi-b"]);
    assert_eq!(values[0]["value"]["VMIStats"]["raw_if_stats"]["mir_pkts"], 2);
    assert!(values[0]["value"]["VMIStats"]["__T"].is_i64());
    let (code, v) = http_with(c.http, "POST", "/analytics/uves/vrouter", &[], r#"{"kfilt": "host1,host9"}"#);
    assert_eq!(code, 200);
    assert_eq!(v["value"][0]["value"]["VrouterStatsAgent"]["mir_tpkts"], 7, "{v}");
    let (code, v) = http_with(c.http, "POST", "/analytics/uves/vrouter", &[], "");
    assert_eq!((code, v["value"].as_array().unwrap().len()), (200, 1), "no filter: everything");
    let (code, v) = http_with(c.http, "POST", VMI, &[], r#"{"bogus": []}"#);
    assert_eq!((code, v["error"].as_str()), (400, Some("bogus: unknown filter (expected kfilt, cfilt, sfilt, mfilt)")));
    let (code, v) = http_with(c.http, "POST", VMI, &[], r#"{"kfilt": [1]}"#);
    assert_eq!((code, v["error"].as_str()), (400, Some("kfilt[0]: not a string")));
    let (code, _) = http_with(c.http, "POST", "/analytics/uves/nothing", &[], "{}");
    assert_eq!(code, 404);
    c.stop();
}

fn asynchronous_queries(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(cfg) = config(backend, dir.path()) else { return };
    let c = TestCollector::start(cfg);
    let mut g = Generator::connect(c.sandesh, "host1");
    g.send_flows(
        (0..20u16).map(|k| flow(&format!("00000000-0000-4000-8000-{k:012}"), 1000 + k, 100, 1, 100, 1)).collect(),
    );
    c.wait_stat("flow_records_received", 20);
    c.flush();
    let q = json!({"table": "FlowSeriesTable", "start_time": "now-10m", "end_time": "now",
                   "select_fields": ["T=60", "SUM(bytes)"], "sort_fields": ["T=60"]})
    .to_string();
    let expect = [("Expect", "202-accepted")];
    let (code, v) = http_with(c.http, "POST", "/analytics/query", &expect, &q);
    assert_eq!(code, 202, "{v}");
    let href = v["href"].as_str().unwrap().to_owned();
    assert!(href.starts_with("/analytics/query/"), "{v}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let (code, s) = http_with(c.http, "GET", &href, &[], "");
        assert_eq!(code, 200, "{s}");
        if s["progress"] == 100 {
            break s;
        }
        assert_eq!(s, json!({"progress": 0, "chunks": []}));
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    };
    let chunk = &status["chunks"][0];
    assert_eq!(chunk["href"], format!("{href}/chunk-final/0"));
    let (s, e) = (chunk["start_time"].as_i64().unwrap(), chunk["end_time"].as_i64().unwrap());
    assert!(e - s >= 600_000_000 && e <= now_us(), "{chunk}");
    let (code, result) = http_with(c.http, "GET", chunk["href"].as_str().unwrap(), &[], "");
    assert_eq!(code, 200);
    let (_, sync) = query(c.http, &serde_json::from_str(&q).unwrap());
    assert_eq!(result, sync, "the chunk is the synchronous answer");
    let total: i64 = result["value"].as_array().unwrap().iter().map(|r| r["SUM(bytes)"].as_i64().unwrap()).sum();
    assert_eq!(total, 2000);
    // A bad query is refused at once, also when asynchronous; unknown ids and chunks are 404.
    let (code, v) = http_with(c.http, "POST", "/analytics/query", &expect, r#"{"table": "Nope"}"#);
    assert_eq!(code, 400, "{v}");
    let (code, _) = http_with(c.http, "GET", "/analytics/query/00000000-0000-4000-8000-000000000000", &[], "");
    assert_eq!(code, 404);
    let (code, _) = http_with(c.http, "GET", &format!("{href}/chunk-final/1"), &[], "");
    assert_eq!(code, 404);
    c.stop();
}

on_both_backends!(uve_filters_and_the_post_form, asynchronous_queries);
