//! Trace export end to end: the real vRouter (EAL, pcap vdevs) traces flows for three
//! requests (two tenants' and the operator's), its exporter sends the steps over Sandesh to a
//! real collector (the `collector` crate's server, in this test process), and
//! `GET /analytics/traces/<id>` answers exactly the steps `trace get <id>` shows from the
//! trace region, one by one (packet, kind, text, source); every step read was sent, none
//! lost; a tenant's token sees its own trace and nobody else's.

mod common;
use common::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use vrouter::trace::request::{Condition, Limit, Scope, TraceRequest};
use vrouter::trace::{TraceReader, TraceRecord};

const VN1: &str = "default-domain:demo:vn1";
const RED_TOKEN: &str = "red-token-0123456789";
const BLUE_TOKEN: &str = "blue-token-0123456789";
const ADMIN_TOKEN: &str = "admin-token-0123456789";
const REQ_RED: &str = "aaaaaaaa-0000-4000-8000-000000009000";
const REQ_BLUE: &str = "bbbbbbbb-0000-4000-8000-000000009100";
const REQ_OPERATOR: &str = "cccccccc-0000-4000-8000-000000009200";
const RULE: &str = "dddddddd-0000-4000-8000-0000000000ff";

fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, Value) {
    http_json(&addr.to_string(), "GET", path, token, None)
}

/// Enabled requests persisted in the run directory before the vRouter starts, so they trace
/// from the first packet: red's and blue's on vm1's vif (their projects, as the control
/// socket or REST API tag a tenant's request), and one of the operator's.
fn persist_requests(run_dir: &Path) {
    std::fs::create_dir_all(run_dir).unwrap();
    let req = |id: &str, dport: u16, packets: u32, project: Option<&str>| TraceRequest {
        id: id.into(),
        condition: Condition { protocol: Some(17), dst_port: Some(dport), ..Default::default() },
        scope: Scope::Vif { vif: 1 },
        limit: Limit::Packets(packets),
        enabled: true,
        created_ms: 1,
        project: project.map(str::to_owned),
    };
    let reqs =
        [req(REQ_RED, 9000, 3, Some("red")), req(REQ_BLUE, 9100, 2, Some("blue")), req(REQ_OPERATOR, 9200, 1, None)];
    let text = serde_json::to_string(&json!({"version": 1, "requests": reqs})).unwrap();
    std::fs::write(run_dir.join(vrouter::trace::REQUESTS_FILE_NAME), text).unwrap();
}

/// The traces of the region, each in `trace get` order (packet, TSC, ring, position).
fn region_traces(run_dir: &Path) -> (BTreeMap<u64, Vec<TraceRecord>>, u32) {
    let r = TraceReader::open_run_dir(run_dir).expect("trace region");
    let mut m: BTreeMap<u64, Vec<TraceRecord>> = BTreeMap::new();
    for rec in r.records() {
        m.entry(rec.trace_id).or_default().push(rec);
    }
    for v in m.values_mut() {
        v.sort_by_key(|r| (r.pkt, r.tsc, r.ring, r.position));
    }
    (m, r.info().n_rings)
}

fn request_of(recs: &[TraceRecord]) -> String {
    recs.iter()
        .find_map(|r| match r.step {
            vrouter::trace::Step::Matched { request, .. } => Some(vrouter::trace::request::format_uuid(&request)),
            _ => None,
        })
        .expect("a trace starts with its match")
}

/// (packet, kind, text, source) of every step, as `trace get` shows them.
fn region_story(recs: &[TraceRecord], n_rings: u32) -> Vec<(u64, String, String, String)> {
    recs.iter()
        .map(|r| {
            let source = if r.ring + 1 == n_rings as usize { "agent".to_owned() } else { format!("lcore {}", r.ring) };
            (u64::from(r.pkt), r.step.name().to_owned(), r.step.render(), source)
        })
        .collect()
}

fn api_story(t: &Value) -> Vec<(u64, String, String, String)> {
    let mut out = Vec::new();
    for p in t["trace"].as_array().unwrap() {
        for s in p["steps"].as_array().unwrap() {
            assert_eq!(s["host"], "vr-export", "{s}");
            out.push((
                p["packet"].as_u64().unwrap(),
                s["step"].as_str().unwrap().to_owned(),
                s["detail"].as_str().unwrap().to_owned(),
                s["source"].as_str().unwrap().to_owned(),
            ));
        }
    }
    out
}

#[test]
fn exported_traces_equal_the_region_and_tenants_see_only_their_own() {
    let data = tempfile::tempdir().unwrap();
    let cfg = collector::config::CollectorConfig {
        sandesh_listen: "127.0.0.1:0".into(),
        http_listen: "127.0.0.1:0".into(),
        data_dir: data.path().to_owned(),
        hostname: "trace-collector".into(),
        admin_token: Some(ADMIN_TOKEN.into()),
        tenants: vec![
            collector::config::TenantConfig { name: "red".into(), token: RED_TOKEN.into() },
            collector::config::TenantConfig { name: "blue".into(), token: BLUE_TOKEN.into() },
        ],
        ..Default::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let c = rt.block_on(collector::server::Collector::start(&cfg)).unwrap();
    let (sandesh_addr, http_addr) = (c.sandesh_addr, c.http_addr);

    let keep = tempfile::tempdir().unwrap();
    let run_dir = keep.path().join("run");
    persist_requests(&run_dir);
    let udp = |sport: u16, dport: u16, payload: &[u8]| {
        let ip = ipv4_udp(ip4("192.168.1.3"), ip4("192.168.1.4"), 64, sport, dport, payload);
        eth(mac(ROUTER_MAC), mac(VM1_MAC), 0x0800, &ip)
    };
    let mut vm1 = Vec::new();
    for round in 0..4u8 {
        for i in 0..5u16 {
            vm1.push(udp(3000 + i, 1000 + i, b"background"));
        }
        vm1.push(udp(4001, 9000, &[round; 12]));
        if round < 2 {
            vm1.push(udp(4002, 9100, &[round; 20]));
        }
        if round == 0 {
            vm1.push(udp(4003, 9200, b"operator"));
        }
    }
    let n = vm1.len() as u64;
    let edit = |c: String| {
        let c: String = c
            .lines()
            .map(|l| {
                if l.starts_with("run_dir = ") {
                    format!("run_dir = \"{}\"\n", run_dir.display())
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        format!(
            r#"{c}
[flow]
entries = 1024

[[network_policy]]
name = "pass-all"
vns = ["{VN1}"]
[[network_policy.rule]]
uuid = "{RULE}"
action = "pass"

[[tenant]]
name = "red"
token = "{RED_TOKEN}"
vns = ["{VN1}"]

[[tenant]]
name = "blue"
token = "{BLUE_TOKEN}"
vns = ["{VN1}"]

[export]
enabled = true
collectors = ["{sandesh_addr}"]
source = "vr-export"
scan_interval_ms = 20
uve_interval_s = 1
"#
        )
    };

    let mut checked = false;
    let out = run_live(Inputs { vm1, ..Default::default() }, edit, |rd| {
        let (region, n_rings) = region_traces(rd);
        assert_eq!(region.len(), 3, "one trace per traced flow: {:?}", region.keys());
        let total: usize = region.values().map(Vec::len).sum();
        // Every step reaches the collector.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (code, list) = get(http_addr, "/analytics/traces", Some(ADMIN_TOKEN));
            assert_eq!(code, 200, "{list}");
            let rows = list["value"].as_array().unwrap();
            let stored: u64 = rows.iter().map(|r| r["steps"].as_u64().unwrap()).sum();
            if rows.len() == 3 && stored == total as u64 {
                break;
            }
            if Instant::now() >= deadline {
                let (_, cstats) = get(http_addr, "/analytics/collector/stats", None);
                panic!(
                    "collector has {stored} of {total} steps: {list}\ncollector: {cstats}\nexporter: {:?}",
                    vrouter::agent::export::read_counters(rd)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Each trace: exactly the steps of `trace get`, one by one.
        let mut by_request = BTreeMap::new();
        for (id, recs) in &region {
            let (code, t) = get(http_addr, &format!("/analytics/traces/{id:016x}"), Some(ADMIN_TOKEN));
            assert_eq!(code, 200, "{t}");
            assert_eq!(api_story(&t), region_story(recs, n_rings), "trace {id:016x}");
            let request = request_of(recs);
            assert_eq!(t["request"], request.as_str());
            assert_eq!(t["hosts"], json!(["vr-export"]));
            assert_eq!(t["packets"], json!(recs.iter().map(|r| r.pkt).max().unwrap()));
            assert_eq!(t["disposition"], "forwarded vif0/2", "{t}");
            by_request.insert(request, (*id, t));
        }
        let (red_id, red) = &by_request[REQ_RED];
        let (blue_id, blue) = &by_request[REQ_BLUE];
        let (op_id, op) = &by_request[REQ_OPERATOR];
        assert_eq!((red["project"].as_str(), red["packets"].as_u64()), (Some("red"), Some(3)), "limit 3 of 4 packets");
        assert_eq!((blue["project"].as_str(), blue["packets"].as_u64()), (Some("blue"), Some(2)));
        assert_eq!((op["project"].as_str(), op["packets"].as_u64()), (None, Some(1)));
        assert_eq!(red["flow"], "vrf 1 proto 17 192.168.1.3:4001 -> 192.168.1.4:9000");
        let policy =
            red["trace"][0]["steps"].as_array().unwrap().iter().find(|s| s["step"] == "policy").expect("policy step");
        assert_eq!((policy["rule"].as_str(), policy["source"].as_str()), (Some(RULE), Some("agent")), "{policy}");

        // Tenants: their own trace only; another's is 404 like an unknown id.
        let (code, v) = get(http_addr, "/analytics/traces", None);
        assert_eq!(code, 401, "{v}");
        let (_, list) = get(http_addr, "/analytics/traces", Some(RED_TOKEN));
        let ids: Vec<&str> =
            list["value"].as_array().unwrap().iter().map(|r| r["trace_id"].as_str().unwrap()).collect();
        assert_eq!(ids, [format!("{red_id:016x}")]);
        let (_, list) = get(http_addr, &format!("/analytics/traces?request={REQ_BLUE}"), Some(BLUE_TOKEN));
        assert_eq!(list["value"].as_array().unwrap().len(), 1, "{list}");
        for (token, id) in [(RED_TOKEN, blue_id), (RED_TOKEN, op_id), (BLUE_TOKEN, red_id)] {
            let (code, v) = get(http_addr, &format!("/analytics/traces/{id:016x}"), Some(token));
            assert_eq!(code, 404, "{v}");
        }
        let (code, v) = get(http_addr, &format!("/analytics/traces/{red_id:016x}"), Some(RED_TOKEN));
        assert_eq!((code, v["trace_id"].as_str()), (200, Some(format!("{red_id:016x}").as_str())));
        checked = true;
    });
    assert!(checked);
    out.assert_accounted(n);
    // The exporter's own account after the stop: every step it read was sent, none lost.
    let (region, _) = region_traces(&out.run_dir);
    let total: u64 = region.values().map(|v| v.len() as u64).sum();
    let e = vrouter::agent::export::read_counters(&out.run_dir).unwrap();
    assert_eq!((e.trace_steps_read, e.trace_steps_sent, e.trace_steps_lost), (total, total, 0), "{e:?}");
    assert_eq!((e.session_trace_steps_sent, e.trace_messages_pending), (total, 0), "{e:?}");
    rt.block_on(c.stop());
}
