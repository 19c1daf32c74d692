//! Traces over the wire: two vRouters (Sandesh generators on real TCP sessions) export the
//! steps of a trace one of them started and the other continued, the REST API merges them
//! in crossing order, and tenant tokens only see their own project's traces.

mod common;
use collector::config::TenantConfig;
use common::*;
use sandesh::{PacketTraceData, PacketTraceStep};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const RED: &str = "red-token-0001";
const BLUE: &str = "blue-token-0002";
const ADMIN: &str = "admin-token-0003";
const REQ_RED: &str = "aaaaaaaa-0000-4000-8000-0000000000aa";
const REQ_BLUE: &str = "bbbbbbbb-0000-4000-8000-0000000000bb";

/// GET with an optional bearer token: (status, WWW-Authenticate, JSON body).
fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, Option<String>, Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    let www = head.lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("www-authenticate: ").map(str::to_owned));
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        let (len, rest) = body.split_once("\r\n").unwrap();
        rest[..usize::from_str_radix(len.trim(), 16).unwrap()].to_owned()
    } else {
        body.to_owned()
    };
    (code, www, serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}")))
}

fn step(pkt: u32, time_us: i64, ring: u16, seq: u64, kind: &str, detail: &str) -> PacketTraceStep {
    PacketTraceStep::new(pkt, time_us, 1_000 + seq, ring, seq, kind, detail)
}

fn trace(id: u64, request: Option<&str>, project: Option<&str>, steps: Vec<PacketTraceStep>) -> PacketTraceData {
    PacketTraceData {
        trace_id: id,
        request: request.map(str::to_owned),
        project: project.map(str::to_owned),
        generation: 1,
        agent_ring: 1,
        steps,
        file: file!().into(),
        line: line!() as i32,
    }
}

fn traces_merge_across_vrouters_and_tenants_see_only_their_own(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(base) = config(backend, dir.path()) else { return };
    let mut cfg = base.clone();
    cfg.tenants = vec![
        TenantConfig { name: "red".into(), token: RED.into() },
        TenantConfig { name: "blue".into(), token: BLUE.into() },
    ];
    cfg.admin_token = Some(ADMIN.into());
    let c = TestCollector::start(cfg);
    let now = now_us();

    // Host a: the red tenant's trace 0x10 starts here (its clock is 5 s ahead of host b).
    let mut a = Generator::connect(c.sandesh, "host-a");
    let mut parse = step(1, now + 5_000_001, 0, 2, "parse", "parsed IPv4 proto 17 ports 4001 -> 9000");
    (parse.protocol, parse.sport, parse.dport, parse.vrf) = (Some(17), Some(4001), Some(9000), Some(1));
    let mut addrs = step(1, now + 5_000_001, 0, 3, "addresses", "addresses 192.168.1.3 -> 192.168.2.4");
    (addrs.src_ip, addrs.dst_ip) = (Some("192.168.1.3".parse().unwrap()), Some("192.168.2.4".parse().unwrap()));
    let mut out_a = step(1, now + 5_000_003, 0, 5, "egress", "sent on vif0/0, 100 bytes");
    out_a.vif = Some(0);
    a.send(
        &trace(
            0x10,
            Some(REQ_RED),
            Some("red"),
            vec![
                step(1, now + 5_000_000, 0, 0, "ingress", "received on vif0/1"),
                step(1, now + 5_000_000, 0, 1, "matched", "matched"),
                parse,
                addrs,
                step(1, now + 5_000_002, 0, 4, "encap", "encapsulated VXLAN vni 5001"),
                out_a,
            ],
        ),
        0,
    );
    // The blue tenant's trace 0x20, dropped on host a.
    let mut dropped = step(1, now + 5_000_010, 0, 7, "drop", "dropped: Flow Action Drop");
    dropped.drop_reason = Some("flow_action_drop".into());
    a.send(
        &trace(0x20, Some(REQ_BLUE), Some("blue"), vec![step(1, now + 5_000_009, 0, 6, "ingress", "in"), dropped]),
        0,
    );
    // Host b continued 0x10 from its mark: no request, no project; its clock is behind.
    let mut b = Generator::connect(c.sandesh, "host-b");
    let mut out_b = step(1, now + 2, 0, 3, "egress", "sent on vif0/2, 50 bytes");
    out_b.vif = Some(2);
    b.send(
        &trace(
            0x10,
            None,
            None,
            vec![
                step(1, now, 0, 0, "ingress", "received on vif0/0"),
                step(1, now, 0, 1, "marked", "trace mark"),
                step(1, now + 1, 0, 2, "decap", "decapsulated"),
                out_b,
            ],
        ),
        0,
    );
    // Sent twice (a re-send after a reconnect): stored once.
    b.send(&trace(0x10, None, None, vec![step(1, now, 0, 0, "ingress", "received on vif0/0")]), 0);
    c.wait_stat("trace_messages_received", 4);
    c.flush();
    assert_eq!(c.stat("trace_steps_stored"), 12);

    // Without a token, or with a wrong one: 401 naming the header.
    let (code, www, v) = get(c.http, "/analytics/traces", None);
    assert_eq!((code, www.as_deref()), (401, Some("bearer")), "{v}");
    assert!(v["error"].as_str().unwrap().starts_with("Authorization: "), "{v}");
    let (code, _, v) = get(c.http, "/analytics/traces/0000000000000010", Some("guess"));
    assert_eq!(code, 401, "{v}");
    assert_eq!(v["error"], "Authorization: unknown token");

    // Red sees its trace, merged: host a's steps first (the packet entered there), then host
    // b's (it decapsulated it), though host b's clock says earlier.
    let (code, _, list) = get(c.http, "/analytics/traces", Some(RED));
    assert_eq!(code, 200, "{list}");
    let rows = list["value"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{list}");
    let r = &rows[0];
    assert_eq!(r["trace_id"], "0000000000000010");
    assert_eq!((r["request"].as_str(), r["project"].as_str()), (Some(REQ_RED), Some("red")));
    assert_eq!(r["hosts"], serde_json::json!(["host-a", "host-b"]));
    assert_eq!((r["packets"].as_u64(), r["steps"].as_u64()), (Some(1), Some(10)));
    assert_eq!(r["flow"], "vrf 1 proto 17 192.168.1.3:4001 -> 192.168.2.4:9000");
    assert_eq!((r["disposition"].as_str(), r["disposition_host"].as_str()), (Some("forwarded vif0/2"), Some("host-b")));
    assert_eq!((r["first_time_us"].as_i64(), r["last_time_us"].as_i64()), (Some(now), Some(now + 5_000_003)));
    let (code, _, t) = get(c.http, "/analytics/traces/10", Some(RED));
    assert_eq!(code, 200, "{t}");
    let story: Vec<(String, String)> = t["trace"][0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["host"].as_str().unwrap().to_owned(), s["step"].as_str().unwrap().to_owned()))
        .collect();
    let want = [
        ("host-a", "ingress"),
        ("host-a", "matched"),
        ("host-a", "parse"),
        ("host-a", "addresses"),
        ("host-a", "encap"),
        ("host-a", "egress"),
        ("host-b", "ingress"),
        ("host-b", "marked"),
        ("host-b", "decap"),
        ("host-b", "egress"),
    ];
    assert_eq!(story, want.map(|(h, s)| (h.to_owned(), s.to_owned())));
    assert_eq!(t["trace"][0]["steps"][5]["vif"], 0);

    // Another tenant's trace is answered like an unknown one.
    let (code, _, v) = get(c.http, "/analytics/traces/0000000000000020", Some(RED));
    assert_eq!((code, v["error"].as_str()), (404, Some("id: no trace 0000000000000020")));
    let (code, _, _) = get(c.http, "/analytics/traces/0000000000000010", Some(BLUE));
    assert_eq!(code, 404);
    let (_, _, blue) = get(c.http, "/analytics/traces", Some(BLUE));
    assert_eq!(blue["value"].as_array().unwrap().len(), 1);
    assert_eq!(blue["value"][0]["disposition"], "dropped (Flow Action Drop)");

    // The operator sees both, filters by request, and gets clear errors.
    let (_, _, all) = get(c.http, "/analytics/traces", Some(ADMIN));
    let ids: Vec<&str> = all["value"].as_array().unwrap().iter().map(|r| r["trace_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["0000000000000010", "0000000000000020"]);
    let (_, _, one) = get(c.http, &format!("/analytics/traces?request={REQ_BLUE}&start_time=now-10m"), Some(ADMIN));
    assert_eq!(one["value"][0]["trace_id"], "0000000000000020", "{one}");
    let (_, _, none) = get(c.http, "/analytics/traces?end_time=now-1h", Some(ADMIN));
    assert_eq!(none["value"], serde_json::json!([]));
    let (code, _, v) = get(c.http, "/analytics/traces/0000000000000099", Some(ADMIN));
    assert_eq!((code, v["error"].as_str()), (404, Some("id: no trace 0000000000000099")));
    let (code, _, v) = get(c.http, "/analytics/traces/not-hex", Some(ADMIN));
    assert_eq!(code, 400);
    assert!(v["error"].as_str().unwrap().starts_with("id: "), "{v}");
    let (code, _, v) = get(c.http, "/analytics/traces?start_time=yesterday", Some(ADMIN));
    assert_eq!(code, 400);
    assert!(v["error"].as_str().unwrap().starts_with("start_time: "), "{v}");
    assert_eq!(c.stat("trace_auth_refused"), 2);

    // Deleting is scoped like reading: red cannot delete blue's trace (not found), blue can.
    let del = |id: &str, token: &str| {
        http_with(
            c.http,
            "DELETE",
            &format!("/analytics/traces/{id}"),
            &[("Authorization", &format!("Bearer {token}"))],
            "",
        )
    };
    let (code, v) = del("0000000000000020", RED);
    assert_eq!((code, v["error"].as_str()), (404, Some("id: no trace 0000000000000020")));
    let (code, v) = del("20", BLUE);
    assert_eq!((code, v), (200, serde_json::json!({"deleted": "0000000000000020"})));
    let (code, _, _) = get(c.http, "/analytics/traces/0000000000000020", Some(ADMIN));
    assert_eq!(code, 404, "gone");
    let (_, _, all) = get(c.http, "/analytics/traces", Some(ADMIN));
    let ids: Vec<&str> = all["value"].as_array().unwrap().iter().map(|r| r["trace_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["0000000000000010"]);
    assert_eq!(del("20", ADMIN).0, 404, "deleted once");
    assert_eq!(del("zz", ADMIN).0, 400);
    let (code, v) = http_with(c.http, "DELETE", "/analytics/traces/10", &[], "");
    assert_eq!(code, 401, "{v}");
    drop((a, b));
    c.stop();
}

fn without_tenants_the_trace_api_is_open(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(base) = config(backend, dir.path()) else { return };
    let c = TestCollector::start(base.clone());
    let mut a = Generator::connect(c.sandesh, "host-a");
    a.send(&trace(7, Some(REQ_RED), Some("red"), vec![step(1, now_us(), 0, 0, "ingress", "in")]), 0);
    c.wait_stat("trace_messages_received", 1);
    c.flush();
    let (code, _, v) = get(c.http, "/analytics/traces", None);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["value"][0]["trace_id"], "0000000000000007");
    assert_eq!(v["value"][0]["disposition"], "in progress");
    drop(a);
    c.stop();
}

on_both_backends!(traces_merge_across_vrouters_and_tenants_see_only_their_own, without_tenants_the_trace_api_is_open,);
