//! Packet tracing through the real vRouter (real EAL, pcap vdevs): trace requests are added
//! over the control socket, survive a restart (they are persisted in the run directory), and
//! the traces read back from the trace region hold exactly the matching packets, up to the
//! limit, with the steps and verdicts of what the vRouter did.

mod common;
use common::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use vrouter::drop_reason::DropReason;
use vrouter::trace::{Step, TraceReader, TraceRecord};

const VN1: &str = "default-domain:demo:vn1";
const RULE_WEB: &str = "cccccccc-0000-4000-8000-000000000080";
const RULE_DNS: &str = "cccccccc-0000-4000-8000-000000000053";
const RULE_ALL: &str = "cccccccc-0000-4000-8000-0000000000ff";

/// Analyzer an-a (index 1) behind the fabric gateway; vn1 policy: udp 80 passes mirrored to
/// an-a, udp 53 is denied, everything else passes.
fn traced_config(cfg: String, run_dir: &Path) -> String {
    let cfg: String = cfg
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
        r#"{cfg}
[flow]
held_packets_per_flow = 16

{ANALYZER_NET}

[[analyzer]]
name = "an-a"
ip = "10.20.0.5"
index = 1

[[network_policy]]
name = "traced"
vns = ["{VN1}"]
[[network_policy.rule]]
uuid = "{RULE_WEB}"
protocol = "udp"
dst_ports = "80"
action = "pass"
mirror_to = ["an-a"]
[[network_policy.rule]]
uuid = "{RULE_DNS}"
protocol = "udp"
dst_ports = "53"
action = "deny"
[[network_policy.rule]]
uuid = "{RULE_ALL}"
action = "pass"
"#
    )
}

fn vm_udp(src: &str, dst: &str, sport: u16, dport: u16, payload: &[u8], from_mac: &str) -> Vec<u8> {
    let ip = ipv4_udp(ip4(src), ip4(dst), 64, sport, dport, payload);
    eth(mac(ROUTER_MAC), mac(from_mac), 0x0800, &ip)
}

fn add(run_dir: &Path, condition: serde_json::Value, limit: serde_json::Value) -> String {
    let r = control(run_dir, &json!({"cmd": "trace_add", "condition": condition, "limit": limit}));
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["request"]["enabled"], false, "a new request is not enabled");
    r["request"]["id"].as_str().unwrap().to_string()
}

/// Records grouped by trace id, each in (packet, time) order.
fn traces(run_dir: &Path) -> BTreeMap<u64, Vec<TraceRecord>> {
    let r = TraceReader::open_run_dir(run_dir).expect("trace region");
    let mut m: BTreeMap<u64, Vec<TraceRecord>> = BTreeMap::new();
    for rec in r.records() {
        m.entry(rec.trace_id).or_default().push(rec);
    }
    for v in m.values_mut() {
        v.sort_by_key(|r| (r.pkt, r.tsc, r.ring, r.position));
    }
    m
}

fn request_of(recs: &[TraceRecord]) -> String {
    recs.iter()
        .find_map(|r| match r.step {
            Step::Matched { request, .. } => Some(vrouter::trace::request::format_uuid(&request)),
            _ => None,
        })
        .expect("a trace starts with its match")
}

fn kinds(recs: &[TraceRecord], pkt: u32) -> Vec<&'static str> {
    recs.iter().filter(|r| r.pkt == pkt).map(|r| r.step.name()).collect()
}

fn steps(recs: &[TraceRecord], pkt: u32) -> Vec<Step> {
    recs.iter().filter(|r| r.pkt == pkt).map(|r| r.step).collect()
}

fn rule(s: &str) -> [u8; 16] {
    vrouter::trace::request::parse_uuid(s).unwrap()
}

#[test]
fn traced_flows_among_many_forwarded_denied_mirrored_held_and_disabled() {
    let keep = tempfile::tempdir().unwrap();
    let run_dir = keep.path().join("run");
    // First run, no traffic: add the requests over the control socket.
    let mut ids = BTreeMap::new();
    run_live(
        Inputs::default(),
        |c| traced_config(c, &run_dir),
        |rd| {
            ids.insert(
                "fwd",
                add(rd, json!({"protocol": 17, "dst_port": 9000, "src_ip": "192.168.1.3"}), json!({"packets": 3})),
            );
            ids.insert("dns", add(rd, json!({"dst_port": 53}), json!({"packets": 2})));
            ids.insert("web", add(rd, json!({"dst_ip": "192.168.1.4/32", "dst_port": 80}), json!({"flows": 1})));
            ids.insert("off", add(rd, json!({"dst_port": 7777}), json!({"packets": 100})));
            for k in ["fwd", "dns", "web"] {
                let r = control(rd, &json!({"cmd": "trace_enable", "id": ids[k]}));
                assert_eq!(r["request"]["state"], "enabled", "{r}");
            }
        },
    );
    // Second run (a restart): the requests come back from the run directory. Only the
    // requests are kept: the stopped run's regions go, so the harness waits on the new ones.
    for f in std::fs::read_dir(&run_dir).unwrap() {
        let p = f.unwrap().path();
        if p.file_name().unwrap() != vrouter::trace::REQUESTS_FILE_NAME {
            let _ = std::fs::remove_file(&p);
        }
    }
    assert!(run_dir.join(vrouter::trace::REQUESTS_FILE_NAME).exists(), "requests persisted");
    let mut vm1 = Vec::new();
    for round in 0..5u16 {
        // Background: 20 flows nobody traces.
        for i in 0..20u16 {
            vm1.push(vm_udp("192.168.1.3", "192.168.1.4", 2000 + i, 1000 + i, b"bg", VM1_MAC));
        }
        vm1.push(vm_udp("192.168.1.3", "192.168.1.4", 4001, 9000, &[round as u8; 8], VM1_MAC));
        vm1.push(vm_udp("192.168.1.3", "192.168.1.4", 4001, 9001, b"near miss", VM1_MAC));
        if round < 4 {
            vm1.push(vm_udp("192.168.1.3", "192.168.1.4", 4002, 53, b"dns", VM1_MAC));
        }
        if round < 3 {
            vm1.push(vm_udp("192.168.1.3", "192.168.1.4", 4003, 80, b"web", VM1_MAC));
            vm1.push(vm_udp("192.168.1.3", "192.168.1.4", 4004, 7777, b"disabled", VM1_MAC));
        }
    }
    let n = vm1.len() as u64;
    let mut shown = serde_json::Value::Null;
    let out = run_live(
        Inputs { vm1, ..Default::default() },
        |c| traced_config(c, &run_dir),
        |rd| {
            shown = control(rd, &json!({"cmd": "trace_show"}));
        },
    );
    out.assert_accounted(n);
    let reqs = shown["requests"].as_array().unwrap();
    assert_eq!(reqs.len(), 4, "{shown}");
    let state = |id: &str| reqs.iter().find(|r| r["id"] == id).unwrap()["state"].as_str().unwrap().to_string();
    assert_eq!(state(&ids["fwd"]), "limit reached");
    assert_eq!(state(&ids["dns"]), "limit reached");
    assert_eq!(state(&ids["web"]), "limit reached", "one flow of the flow limit taken");
    assert_eq!(state(&ids["off"]), "disabled");

    let all = traces(&out.run_dir);
    let by_req = |k: &str| -> Vec<&Vec<TraceRecord>> { all.values().filter(|t| request_of(t) == ids[k]).collect() };
    assert!(by_req("off").is_empty(), "a disabled request records nothing");
    assert_eq!(all.len(), 3, "one trace per traced flow, nothing else: {:?}", all.keys());

    // Forwarded flow: exactly the first 3 of its 5 packets, all in one trace.
    let fwd = by_req("fwd");
    assert_eq!(fwd.len(), 1);
    let t = fwd[0];
    assert_eq!(t.iter().map(|r| r.pkt).max(), Some(3));
    for p in 1..=3u32 {
        let s = steps(t, p);
        assert!(
            s.contains(&Step::Parsed {
                ethertype: 0x0800,
                proto: 17,
                sport: 4001,
                dport: 9000,
                vrf: 1,
                ip_len: 36,
                ttl: 64
            }),
            "{s:?}"
        );
        assert_eq!(s.first(), Some(&Step::Ingress { vif: 1, queue: 0, len: 50 }));
        assert_eq!(s.last(), Some(&Step::Egress { vif: 2, len: 50 }), "packet {p}: {s:?}");
    }
    // The first packet missed, created the flow, was held, the agent's policy let it pass
    // (rule RULE_ALL), then it was released and forwarded.
    let k1 = kinds(t, 1);
    assert_eq!(
        k1,
        [
            "ingress",
            "matched",
            "parse",
            "addresses",
            "flow_lookup",
            "hold",
            "policy",
            "release",
            "flow_lookup",
            "flow_action",
            "route",
            "egress"
        ],
        "{:?}",
        steps(t, 1)
    );
    let s1 = steps(t, 1);
    let (flow, gen) = match s1[4] {
        Step::FlowLookup { hit: false, index, gen, action: 1 } => (index, gen),
        other => panic!("first lookup: {other:?}"),
    };
    assert_eq!(s1[5], Step::Held { flow, new: true });
    assert_eq!(s1[6], Step::Policy { forward: true, drop_reason: 0, rule: rule(RULE_ALL), flow });
    assert!(matches!(s1[7], Step::Released { flow: f, .. } if f == flow));
    assert_eq!(s1[8], Step::FlowLookup { hit: true, index: flow, gen, action: 2 });
    assert_eq!(s1[9], Step::FlowAction { action: 2, drop_reason: 0, mirror: 255, sec_mirror: 255 });
    assert!(matches!(s1[10], Step::Route { vrf: 1, nh_id: 2, out_vif: 2, .. }), "{:?}", s1[10]);
    // Time goes forward through the packet's steps.
    let tscs: Vec<u64> = t.iter().filter(|r| r.pkt == 1).map(|r| r.tsc).collect();
    assert!(tscs.windows(2).all(|w| w[0] <= w[1]), "{tscs:?}");

    // Denied flow: 2 packets traced of 4, both dropped by the flow action after the policy
    // decision of RULE_DNS.
    let dns = by_req("dns");
    assert_eq!(dns.len(), 1);
    let t = dns[0];
    assert_eq!(t.iter().map(|r| r.pkt).max(), Some(2));
    let s1 = steps(t, 1);
    assert!(
        s1.iter().any(|s| matches!(s, Step::Policy { forward: false, rule: r, .. } if *r == rule(RULE_DNS))),
        "{s1:?}"
    );
    for p in 1..=2u32 {
        let s = steps(t, p);
        assert_eq!(s.last(), Some(&Step::Drop { reason: DropReason::FlowActionDrop }), "{s:?}");
        assert!(s.iter().any(|x| matches!(x, Step::FlowAction { action: 0, .. })), "{s:?}");
        assert!(!s.iter().any(|x| matches!(x, Step::Egress { .. })));
    }

    // The operator's view of the same traces: `trace list` and `trace get`.
    let trace_tool = |args: &[&str]| {
        let p = Path::new(env!("CARGO_BIN_EXE_vrouter")).with_file_name("trace");
        assert!(p.exists(), "{} not built (run the tests with --workspace)", p.display());
        let o = Command::new(p).arg("--run-dir").arg(&out.run_dir).args(args).output().unwrap();
        assert!(o.status.success(), "trace {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let listed: serde_json::Value = serde_json::from_str(&trace_tool(&["list", "--json"])).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 3, "{listed}");
    let dns_id = format!("{:016x}", t[0].trace_id);
    let row = listed.as_array().unwrap().iter().find(|r| r["trace_id"] == dns_id.as_str()).unwrap();
    assert_eq!(row["disposition"], "dropped (Flow Action Drop)");
    assert_eq!(row["flow"], "vrf 1 proto 17 192.168.1.3:4002 -> 192.168.1.4:53");
    let story = trace_tool(&["get", &dns_id]);
    assert!(story.contains("[agent] policy: flow") && story.contains("drop, flow drop reason"), "{story}");
    assert!(story.contains(&format!("rule {RULE_DNS}")), "{story}");
    assert!(story.trim_end().ends_with("dropped: Flow Action Drop"), "{story}");

    // Mirrored flow (flow limit 1): all 3 packets, each copied to an-a and forwarded.
    let web = by_req("web");
    assert_eq!(web.len(), 1);
    let t = web[0];
    assert_eq!(t.iter().map(|r| r.pkt).max(), Some(3));
    let copies: Vec<_> = out.fabric.iter().filter(|f| f.len() > 60).collect();
    assert_eq!(copies.len(), 3, "three copies on the fabric");
    for p in 1..=3u32 {
        let s = steps(t, p);
        let m: Vec<_> = s.iter().filter(|x| matches!(x, Step::Mirror { .. })).collect();
        assert_eq!(m.len(), 1, "{s:?}");
        match m[0] {
            Step::Mirror { analyzer: 1, secondary: false, bytes, failed: None } => {
                assert_eq!(*bytes as usize, copies[p as usize - 1].len(), "copy length as sent")
            }
            other => panic!("{other:?}"),
        }
        assert!(s.contains(&Step::FlowAction { action: 2, drop_reason: 0, mirror: 1, sec_mirror: 255 }), "{s:?}");
        assert_eq!(s.last(), Some(&Step::Egress { vif: 2, len: 45 }), "{s:?}");
    }
}

#[test]
fn a_removed_request_stops_tracing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run_dir = d.join("run");
    let rx = d.join("vm1-in.pcap");
    write_pcap(
        &rx,
        &[
            vm_udp("192.168.1.3", "192.168.1.4", 4100, 9000, b"stream", VM1_MAC),
            vm_udp("192.168.1.3", "192.168.1.4", 4101, 9001, b"other", VM1_MAC),
        ],
    );
    let empty = d.join("empty.pcap");
    write_pcap(&empty, &[]);
    let vdevs = [
        format!("\"net_pcap0,rx_pcap={}\"", empty.display()),
        format!("\"net_pcap1,rx_pcap={},infinite_rx=1\"", rx.display()),
        format!("\"net_pcap2,rx_pcap={}\"", empty.display()),
    ];
    let prefix = unique_prefix();
    let cfg = traced_config(topology(&vdevs.join(", "), &prefix, &run_dir), &run_dir);
    let cfg_path = d.join("vrouter.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let mut child = Running(
        Command::new(env!("CARGO_BIN_EXE_vrouter"))
            .arg("--config")
            .arg(&cfg_path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        prefix,
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !run_dir.join("control.sock").exists() {
        assert!(Instant::now() < deadline, "no control socket");
        assert!(child.try_wait().unwrap().is_none(), "vrouter exited");
        std::thread::sleep(Duration::from_millis(20));
    }
    let id = add(&run_dir, json!({"dst_port": 9000}), json!({"packets": 1_000_000}));
    // Not enabled yet: nothing is recorded while the traffic runs.
    std::thread::sleep(Duration::from_millis(300));
    assert!(traces(&run_dir).is_empty(), "a request that is not enabled records nothing");
    let r = control(&run_dir, &json!({"cmd": "trace_enable", "id": id}));
    assert_eq!(r["ok"], true, "{r}");
    let packets = || traces(&run_dir).values().flat_map(|t| t.iter().map(|r| r.pkt)).max().unwrap_or(0);
    while packets() < 200 {
        assert!(Instant::now() < deadline, "nothing traced");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Only the matching flow is traced, as one trace.
    let t = traces(&run_dir);
    assert_eq!(t.len(), 1);
    assert!(t.values().next().unwrap().iter().all(|r| !matches!(r.step, Step::Parsed { dport, .. } if dport != 9000)));
    let r = control(&run_dir, &json!({"cmd": "trace_remove", "id": id}));
    assert_eq!(r["ok"], true, "{r}");
    // Packets classified before the lcore saw the removal finish their trace; then nothing.
    std::thread::sleep(Duration::from_millis(200));
    let after = packets();
    let written =
        |run_dir: &Path| TraceReader::open_run_dir(run_dir).unwrap().records().iter().map(|r| r.position).max();
    let pos = written(&run_dir);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(packets(), after, "no packet traced after the removal");
    assert_eq!(written(&run_dir), pos, "no record written after the removal");
    let shown = control(&run_dir, &json!({"cmd": "trace_show"}));
    assert_eq!(shown["requests"], json!([]));
    stop(&mut child);
    // Removed for good: not in the persisted requests either.
    let text = std::fs::read_to_string(run_dir.join(vrouter::trace::REQUESTS_FILE_NAME)).unwrap();
    assert!(!text.contains(&id), "{text}");
}

/// Adds and enables requests on a vRouter run without traffic in `run_dir`, then leaves only
/// the persisted requests there (the next run in `run_dir` starts with them).
fn persist_requests(run_dir: &Path, reqs: &[(serde_json::Value, serde_json::Value)]) -> Vec<String> {
    let mut ids = Vec::new();
    run_live(
        Inputs::default(),
        |c| traced_config(c, run_dir),
        |rd| {
            for (c, l) in reqs {
                let id = add(rd, c.clone(), l.clone());
                assert_eq!(control(rd, &json!({"cmd": "trace_enable", "id": id}))["ok"], true);
                ids.push(id);
            }
        },
    );
    for f in std::fs::read_dir(run_dir).unwrap() {
        let p = f.unwrap().path();
        if p.file_name().unwrap() != vrouter::trace::REQUESTS_FILE_NAME {
            let _ = std::fs::remove_file(&p);
        }
    }
    ids
}

/// A VM flow leaving through an MPLSoUDP tunnel records the route to the tunnel nexthop and
/// the encapsulation as sent; a packet arriving from the fabric in MPLSoUDP records the
/// decapsulation (label, outer source) and is matched on its inner headers.
#[test]
fn tunnel_encapsulation_and_fabric_decapsulation_are_traced() {
    let keep = tempfile::tempdir().unwrap();
    let run_dir = keep.path().join("run");
    let ids = persist_requests(
        &run_dir,
        &[
            (json!({"dst_ip": "192.168.2.0/24", "dst_port": 7100}), json!({"packets": 2})),
            (json!({"src_ip": "192.168.2.7", "dst_port": 7200, "ingress_vif": 0}), json!({"packets": 2})),
        ],
    );
    let vm1 = vec![vm_udp("192.168.1.3", "192.168.2.5", 4100, 7100, b"to-remote", VM1_MAC); 2];
    let inner = ipv4_udp(ip4("192.168.2.7"), ip4("192.168.1.4"), 63, 4200, 7200, b"from-remote");
    let mut mp = mpls(18, 64).to_vec();
    mp.extend_from_slice(&inner);
    let from_fabric = tunnel_outer(mac(FABRIC_MAC), mac(GW_MAC), ip4("10.10.0.2"), ip4("10.10.0.1"), 50000, 6635, &mp);
    let fabric_len = from_fabric.len() as u32;
    let out = run_live(
        Inputs { vm1, fabric: vec![from_fabric.clone(), from_fabric], ..Default::default() },
        |c| traced_config(c, &run_dir),
        |_| {},
    );
    out.assert_accounted(4);
    let all = traces(&out.run_dir);
    assert_eq!(all.len(), 2, "{:?}", all.keys());
    let of = |id: &str| all.values().find(|t| request_of(t) == id).expect("trace");

    // VM -> remote over MPLSoUDP (nexthop 3, label 40 to 10.10.0.2).
    let t = of(&ids[0]);
    assert_eq!(t.iter().map(|r| r.pkt).max(), Some(2));
    let sent: Vec<&Vec<u8>> = out.fabric.iter().collect();
    assert_eq!(sent.len(), 2);
    for p in 1..=2u32 {
        let s = steps(t, p);
        // The route as the pipeline matched it: the /24 of the remote VMs.
        let prefix = u128::from(ip4("192.168.2.0").to_ipv6_mapped());
        let route = Step::Route { vrf: 1, prefix, prefix_len: 24, nh_id: 3, nh_kind: 2, out_vif: 0 };
        assert!(s.contains(&route), "{s:?}");
        let frame = sent[p as usize - 1];
        let sport = u16::from_be_bytes([frame[34], frame[35]]);
        let enc = Step::Encap { vxlan: false, label: 40, remote: ip4("10.10.0.2"), sport };
        let n = s.len();
        assert_eq!(s[n - 2..], [enc, Step::Egress { vif: 0, len: frame.len() as u32 }], "{s:?}");
    }

    // Fabric -> VM: decapsulated, matched on the inner packet, delivered to vif 2.
    let t = of(&ids[1]);
    assert_eq!(t.iter().map(|r| r.pkt).max(), Some(2));
    for p in 1..=2u32 {
        let s = steps(t, p);
        assert_eq!(s[0], Step::Ingress { vif: 0, queue: 0, len: fabric_len });
        assert_eq!(s[2], Step::Decap { vxlan: false, label: 18, outer_src: ip4("10.10.0.2") });
        assert!(matches!(s[3], Step::Parsed { proto: 17, sport: 4200, dport: 7200, vrf: 1, .. }), "{s:?}");
        assert!(s.iter().any(|x| matches!(x, Step::Route { nh_id: 2, nh_kind: 1, out_vif: 2, .. })), "{s:?}");
        assert_eq!(s.last(), Some(&Step::Egress { vif: 2, len: out.vm2[p as usize - 1].len() as u32 }), "{s:?}");
    }
}

/// One HTTP/1.1 request to the trace API; returns the status and the JSON body.
fn http(addr: &str, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> (u16, serde_json::Value) {
    http_json(addr, method, path, token, body)
}

/// The REST API on the agent's HTTP port: tokens required, a tenant works only on its own
/// vifs and VNs and sees only its own requests, errors name the field.
#[test]
fn rest_api_with_tenant_tokens() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let red = "red-token-0123456789";
    let blue = "blue-token-0123456789";
    let edit = |c: String| {
        let c = c.replacen("summary_interval_s = 0", &format!("summary_interval_s = 0\ntrace_api = \"{addr}\""), 1);
        format!(
            "{c}\n[[tenant]]\nname = \"red\"\ntoken = \"{red}\"\nvns = [\"{VN1}\"]\n\n[[tenant]]\nname = \"blue\"\ntoken = \"{blue}\"\nvns = [\"{VN1}\"]\n"
        )
    };
    let mut checked = false;
    run_live(Inputs::default(), edit, |_| {
        let (st, b) = http(&addr, "GET", "/traces", None, None);
        assert_eq!((st, b["field"].as_str()), (401, Some("token")), "{b}");
        let (st, b) = http(&addr, "POST", "/traces", Some("wrong-token-0123456789"), Some("{}"));
        assert_eq!((st, b["field"].as_str()), (401, Some("token")), "{b}");
        let (st, b) = http(&addr, "POST", "/traces", Some(red), Some(r#"{"scope": "vrouter"}"#));
        assert_eq!((st, b["field"].as_str()), (400, Some("scope")), "{b}");
        let (st, b) = http(&addr, "POST", "/traces", Some(red), Some("{not json"));
        assert_eq!((st, b["field"].as_str()), (400, Some("body")), "{b}");
        let (st, b) = http(
            &addr,
            "POST",
            "/traces",
            Some(red),
            Some(r#"{"scope": {"vif": 1}, "condition": {"dst_port": 99999}}"#),
        );
        assert_eq!((st, b["field"].as_str()), (400, Some("dst_port")), "{b}");
        let (st, b) = http(
            &addr,
            "POST",
            "/traces",
            Some(red),
            Some(r#"{"scope": {"vif": 1}, "condition": {"dst_port": 9000}, "limit": {"packets": 4}}"#),
        );
        assert_eq!(st, 201, "{b}");
        assert_eq!((b["enabled"].as_bool(), b["project"].as_str()), (Some(false), Some("red")));
        assert!(b["creationTimestampMs"].as_u64().unwrap() > 0);
        let id = b["id"].as_str().unwrap().to_string();
        let path = format!("/traces/{id}");
        // Blue does not see red's request, cannot change or delete it.
        assert_eq!(http(&addr, "GET", "/traces", Some(blue), None), (200, json!([])));
        assert_eq!(http(&addr, "GET", &path, Some(blue), None).0, 404);
        assert_eq!(http(&addr, "PUT", &path, Some(blue), Some(r#"{"enabled": true}"#)).0, 404);
        assert_eq!(http(&addr, "DELETE", &path, Some(blue), None).0, 404);
        // Red enables it; the other fields must stay as they are.
        let (st, b) = http(&addr, "PUT", &path, Some(red), Some(r#"{"enabled": true, "limit": {"packets": 5}}"#));
        assert_eq!((st, b["field"].as_str()), (400, Some("limit")), "{b}");
        let (st, b) = http(&addr, "PUT", &path, Some(red), Some(r#"{"enabled": true, "limit": {"packets": 4}}"#));
        assert_eq!((st, b["state"].as_str()), (200, Some("enabled")), "{b}");
        let (st, list) = http(&addr, "GET", "/traces", Some(red), None);
        assert_eq!((st, list.as_array().unwrap().len()), (200, 1));
        assert_eq!(http(&addr, "DELETE", &path, Some(red), None).0, 200);
        assert_eq!(http(&addr, "GET", &path, Some(red), None).0, 404);
        assert_eq!(http(&addr, "PATCH", "/traces", Some(red), None).0, 405);
        checked = true;
    });
    assert!(checked);
}

/// Records over REST and the control socket: each tenant reads the traces of its own
/// request only (another tenant's request id is a 404, as for the request itself), the
/// operator reads every trace, bad ids and missing tokens name the field; the region file
/// itself is owner-only.
#[test]
fn tenants_read_only_their_own_trace_records() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let red = "red-token-0123456789";
    let blue = "blue-token-0123456789";
    let keep = tempfile::tempdir().unwrap();
    let run_dir = keep.path().join("run");
    std::fs::create_dir_all(&run_dir).unwrap();
    let (red_id, blue_id) = ("eeeeeeee-0000-4000-8000-00000000000a", "eeeeeeee-0000-4000-8000-00000000000b");
    let req = |id: &str, dport: u16, project: &str| {
        json!({"id": id, "condition": {"dst_port": dport}, "scope": {"type": "vif", "vif": 1}, "limit": {"packets": 10},
               "enabled": true, "creationTimestampMs": 1, "project": project})
    };
    let stored = json!({"version": 1, "requests": [req(red_id, 9100, "red"), req(blue_id, 9200, "blue")]});
    std::fs::write(run_dir.join(vrouter::trace::REQUESTS_FILE_NAME), stored.to_string()).unwrap();
    let edit = |c: String| {
        let c = traced_config(c, &run_dir).replacen(
            "summary_interval_s = 0",
            &format!("summary_interval_s = 0\ntrace_api = \"{addr}\""),
            1,
        );
        format!(
            "{c}\n[[tenant]]\nname = \"red\"\ntoken = \"{red}\"\nvns = [\"{VN1}\"]\n\n[[tenant]]\nname = \"blue\"\ntoken = \"{blue}\"\nvns = [\"{VN1}\"]\n"
        )
    };
    let vm1 = vec![
        vm_udp("192.168.1.3", "192.168.1.4", 4100, 9100, b"red", VM1_MAC),
        vm_udp("192.168.1.3", "192.168.1.4", 4200, 9200, b"blue", VM1_MAC),
        vm_udp("192.168.1.3", "192.168.1.4", 4300, 9300, b"nobody", VM1_MAC),
    ];
    let mut checked = false;
    let out = run_live(Inputs { vm1, ..Default::default() }, edit, |rd| {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(rd.join(vrouter::trace::TRACE_FILE_NAME)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the trace region is owner-only");
        let records = |id: &str, tok: Option<&str>| http(&addr, "GET", &format!("/traces/{id}/records"), tok, None);
        let (st, r) = records(red_id, Some(red));
        assert_eq!(st, 200, "{r}");
        let r = r.as_array().unwrap().clone();
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(r[0]["request"], red_id);
        assert_eq!(r[0]["flow"], "vrf 1 proto 17 192.168.1.3:4100 -> 192.168.1.4:9100");
        assert_eq!(r[0]["disposition"], "forwarded vif0/2");
        let steps: Vec<&str> =
            r[0]["trace"][0]["steps"].as_array().unwrap().iter().map(|s| s["step"].as_str().unwrap()).collect();
        assert_eq!(steps[..3], ["ingress", "matched", "parse"], "{steps:?}");
        assert!(steps.contains(&"policy") && steps.last() == Some(&"egress"), "{steps:?}");
        let (st, b) = records(blue_id, Some(blue));
        assert_eq!(st, 200, "{b}");
        assert_eq!(b.as_array().unwrap().len(), 1);
        assert_eq!(b[0]["flow"], "vrf 1 proto 17 192.168.1.3:4200 -> 192.168.1.4:9200");
        assert_ne!(b[0]["trace_id"], r[0]["trace_id"]);
        // Across tenants: not found, as the request itself.
        for (id, tok) in [(red_id, blue), (blue_id, red)] {
            let (st, e) = records(id, Some(tok));
            assert_eq!((st, e["field"].as_str()), (404, Some("id")), "{e}");
            assert_eq!(http(&addr, "GET", &format!("/traces/{id}"), Some(tok), None).0, 404);
        }
        let (st, e) = records(red_id, None);
        assert_eq!((st, e["field"].as_str()), (401, Some("token")), "{e}");
        let (st, e) = records("not-a-uuid", Some(red));
        assert_eq!((st, e["field"].as_str()), (400, Some("id")), "{e}");
        // The control socket with a token: the same filter; without: the operator, all.
        let c = control(rd, &json!({"cmd": "trace_records", "token": red, "id": blue_id}));
        assert_eq!((c["ok"].clone(), c["field"].clone()), (json!(false), json!("id")), "{c}");
        let ids = |c: serde_json::Value| {
            assert_eq!(c["ok"], true, "{c}");
            let mut t: Vec<u64> = c["records"].as_array().unwrap().iter().map(|r| r[3].as_u64().unwrap()).collect();
            t.dedup();
            t.sort();
            t.dedup();
            t
        };
        let mine = ids(control(rd, &json!({"cmd": "trace_records", "token": red})));
        assert_eq!(mine.len(), 1);
        assert_eq!(format!("{:016x}", mine[0]), r[0]["trace_id"].as_str().unwrap());
        assert_eq!(ids(control(rd, &json!({"cmd": "trace_records"}))).len(), 2, "the operator reads both traces");
        // The trace tool with a token asks the vRouter and shows the same.
        let tool = Path::new(env!("CARGO_BIN_EXE_vrouter")).with_file_name("trace");
        let o = Command::new(tool).arg("--run-dir").arg(rd).args(["--token", blue, "list", "--json"]).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let l: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(l.as_array().unwrap().len(), 1);
        assert_eq!(l[0]["trace_id"], b[0]["trace_id"]);
        checked = true;
    });
    out.assert_accounted(3);
    assert!(checked);
}

/// A traced packet leaving in VXLAN carries the trace mark (flag bit and trace id in the
/// reserved fields); an untraced one is unchanged on the wire.
#[test]
fn vxlan_trace_mark_only_on_traced_packets() {
    let keep = tempfile::tempdir().unwrap();
    let run_dir = keep.path().join("run");
    persist_requests(&run_dir, &[(json!({"dst_port": 7300}), json!({"packets": 10}))]);
    let vm1 = vec![
        vm_udp("192.168.1.3", "192.168.3.5", 4300, 7300, b"traced", VM1_MAC),
        vm_udp("192.168.1.3", "192.168.3.5", 4301, 7301, b"untraced", VM1_MAC),
    ];
    let out = run_live(Inputs { vm1, ..Default::default() }, |c| traced_config(c, &run_dir), |_| {});
    out.assert_accounted(2);
    let all = traces(&out.run_dir);
    assert_eq!(all.len(), 1);
    let id = *all.keys().next().unwrap();
    assert!(id != 0 && id <= u64::from(u32::MAX), "trace ids fit the mark: {id:#x}");
    assert_eq!(out.fabric.len(), 2);
    let vx = |f: &[u8]| f[14 + 20 + 8..14 + 20 + 16].to_vec();
    let dport = |f: &[u8]| u16::from_be_bytes([f[14 + 20 + 8 + 8 + 14 + 20 + 2], f[14 + 20 + 8 + 8 + 14 + 20 + 3]]);
    let traced = out.fabric.iter().find(|f| dport(f) == 7300).unwrap();
    let untraced = out.fabric.iter().find(|f| dport(f) == 7301).unwrap();
    let b = (id as u32).to_be_bytes();
    assert_eq!(vx(traced), [0x09, b[0], b[1], b[2], 0x00, 0x13, 0x89, b[3]], "flag + id around VNI 5001");
    assert_eq!(vx(untraced), [0x08, 0, 0, 0, 0x00, 0x13, 0x89, 0], "untraced VXLAN header as before");
}

/// A traced packet leaving in MPLSoUDP carries the trace mark (Extension Label 15, ESPL 240
/// and the trace id in two entries) above the service label, with the outer lengths and
/// checksum fixed; an untraced one has the service label alone, as before.
#[test]
fn mplsoudp_trace_mark_only_on_traced_packets() {
    use vrouter::trace::mark::{mpls_mark, MPLS_MARK_LEN};
    let keep = tempfile::tempdir().unwrap();
    let run_dir = keep.path().join("run");
    persist_requests(&run_dir, &[(json!({"dst_port": 7400}), json!({"packets": 10}))]);
    let vm1 = vec![
        vm_udp("192.168.1.3", "192.168.2.5", 4400, 7400, b"traced", VM1_MAC),
        vm_udp("192.168.1.3", "192.168.2.5", 4401, 7401, b"untraced", VM1_MAC),
    ];
    let inner_len = |payload: &[u8]| 20 + 8 + payload.len();
    let out = run_live(Inputs { vm1, ..Default::default() }, |c| traced_config(c, &run_dir), |_| {});
    out.assert_accounted(2);
    let all = traces(&out.run_dir);
    assert_eq!(all.len(), 1);
    let (&id, t) = all.iter().next().unwrap();
    assert_eq!(out.fabric.len(), 2);
    let dport_at = |f: &[u8], stack: usize| {
        let o = 14 + 20 + 8 + stack + 20 + 2;
        f.get(o..o + 2).map(|p| u16::from_be_bytes([p[0], p[1]]))
    };
    let traced = out.fabric.iter().find(|f| dport_at(f, MPLS_MARK_LEN + 4) == Some(7400)).expect("traced packet");
    let untraced = out.fabric.iter().find(|f| dport_at(f, 4) == Some(7401)).expect("untraced packet");
    let service = |f: &[u8], at: usize| u32::from_be_bytes([f[at], f[at + 1], f[at + 2], f[at + 3]]);
    // Untraced: one label stack entry, label 40, bottom of stack, then the IP packet.
    assert_eq!(untraced.len(), 14 + 20 + 8 + 4 + inner_len(b"untraced"));
    assert_eq!((service(untraced, 42) >> 12, service(untraced, 42) & 0x100 != 0), (40, true));
    assert_eq!(untraced[46] >> 4, 4);
    // Traced: the mark, then the same service label entry.
    assert_eq!(traced.len(), 14 + 20 + 8 + MPLS_MARK_LEN + 4 + inner_len(b"traced"));
    assert_eq!(traced[42..58], mpls_mark(id as u32), "mark of trace {id:#x}");
    assert_eq!(service(traced, 58), service(untraced, 42), "service label entry unchanged");
    let ip_len = u16::from_be_bytes([traced[16], traced[17]]) as usize;
    assert_eq!(ip_len, traced.len() - 14);
    assert_eq!(u16::from_be_bytes([traced[38], traced[39]]) as usize, traced.len() - 34, "UDP length");
    assert_eq!(csum(&traced[14..34], 0), 0, "outer IPv4 checksum");
    // The trace records the encapsulation and the frame as it left, mark included.
    let s = steps(t, 1);
    let n = s.len();
    assert!(matches!(s[n - 2], Step::Encap { vxlan: false, label: 40, .. }), "{s:?}");
    assert_eq!(s[n - 1], Step::Egress { vif: 0, len: traced.len() as u32 });
}

/// `Some(status and output)` once the process has exited.
fn exited(r: &mut Running) -> Option<String> {
    use std::io::Read;
    let st = r.try_wait().unwrap()?;
    let mut out = String::new();
    let mut err = String::new();
    r.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    r.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    Some(format!("{st}: {out}\n{err}"))
}

/// Two vRouter processes whose fabric ports (af_packet) sit on the two ends of a veth pair:
/// A traces a VM flow and sends it in VXLAN to B; B continues the same trace id from the
/// mark, so one trace has steps from both hosts, in order (A then B), and `trace get
/// --peer` shows them together.
#[test]
fn two_vrouters_over_a_veth_pair_continue_one_trace() {
    two_vrouters_continue_one_trace(false);
}

/// The same over MPLSoUDP: A's traced packets carry the MPLS trace mark to B, which
/// continues the trace id and strips the mark (B's VM gets the plain IP packet).
#[test]
fn two_vrouters_continue_one_trace_over_mplsoudp() {
    two_vrouters_continue_one_trace(true);
}

fn two_vrouters_continue_one_trace(mpls: bool) {
    let tag = std::process::id() % 100_000;
    let (ia, ib) =
        if mpls { (format!("vma{tag}"), format!("vmb{tag}")) } else { (format!("vta{tag}"), format!("vtb{tag}")) };
    // B is the remote end of A's tunnel nexthop: 10.10.0.3 (VXLAN, nexthop 4, the remote VM's
    // MAC bridged to B's vif 2) or 10.10.0.2 (MPLSoUDP, nexthop 3, label 40 to B's vif 2).
    let (b_ip, b_extra, dst, label) = if mpls {
        ("10.10.0.2", "\n[[label]]\nlabel = 40\nnexthop = 2\n".to_string(), "192.168.2.5", 40)
    } else {
        // B's VM owns the MAC and the address: bridged frames must go where their IP routes.
        (
            "10.10.0.3",
            format!("\n[[bridge]]\nvrf = 1\nmac = \"{REMOTE_VXLAN_VM_MAC}\"\nnexthop = 2\n\n[[route]]\nvrf = 1\nprefix = \"192.168.3.5/32\"\nnexthop = 2\n"),
            "192.168.3.5",
            5001,
        )
    };
    let st = Command::new("ip").args(["link", "add", &ia, "type", "veth", "peer", "name", &ib]).status().unwrap();
    assert!(st.success(), "creating a veth pair (needs CAP_NET_ADMIN)");
    let _veth = Veth(ia.clone());
    for i in [&ia, &ib] {
        let _ = Command::new("sysctl").args(["-qw", &format!("net.ipv6.conf.{i}.disable_ipv6=1")]).status();
        assert!(Command::new("ip").args(["link", "set", i, "up"]).status().unwrap().success());
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let empty = d.join("empty.pcap");
    write_pcap(&empty, &[]);
    // B: router 10.10.0.3, the remote VXLAN VM's MAC bridged to its vif 2; one enabled
    // request that matches nothing (tracing on, no request of its own for this flow).
    let run_b = d.join("run-b");
    let b_vdevs = [
        format!("\"net_af_packet0,iface={ib}\""),
        format!("\"net_pcap1,rx_pcap={}\"", empty.display()),
        format!("\"net_pcap2,rx_pcap={},tx_pcap={}\"", empty.display(), d.join("b-vm2.pcap").display()),
    ];
    let prefix_b = unique_prefix();
    let cfg_b = traced_config(topology(&b_vdevs.join(", "), &prefix_b, &run_b), &run_b)
        .replacen("router_ip = \"10.10.0.1\"", &format!("router_ip = \"{b_ip}\""), 1)
        .replacen(&format!("remote_ip = \"{b_ip}\""), "remote_ip = \"10.10.0.1\"", 1)
        .replacen(
            "device = \"net_pcap0\"\nmac = \"02:00:00:00:00:01\"\nip = \"10.10.0.1\"",
            &format!("device = \"net_af_packet0\"\nmac = \"{GW_MAC}\"\nip = \"{b_ip}\""),
            1,
        )
        // A's vm1 (192.168.1.3, the sender) is behind the tunnel back to A, not on B: B's
        // fabric source check wants the inner source routed to the tunnel it came from.
        .replacen(
            "prefix = \"192.168.1.3/32\"\nnexthop = 1\n",
            &format!("prefix = \"192.168.1.3/32\"\nnexthop = {}\n", if mpls { 3 } else { 4 }),
            1,
        )
        + &b_extra;
    assert!(cfg_b.contains("net_af_packet0\"\nmac"), "fabric vif of B rewritten");
    assert!(
        cfg_b.contains(&format!("prefix = \"192.168.1.3/32\"\nnexthop = {}\n", if mpls { 3 } else { 4 })),
        "A's VM routed to A on B"
    );
    std::fs::create_dir_all(&run_b).unwrap();
    let req_b = json!({"version": 1, "requests": [{"id": "dddddddd-0000-4000-8000-000000000001", "condition": {"dst_port": 1},
        "scope": {"type": "vrouter"}, "limit": {"packets": 10}, "enabled": true, "creationTimestampMs": 1}]});
    let start = |cfg: &str, name: &str, prefix: String| {
        let p = d.join(name);
        std::fs::write(&p, cfg).unwrap();
        Running(
            Command::new(env!("CARGO_BIN_EXE_vrouter"))
                .arg("--config")
                .arg(&p)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
            prefix,
        )
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    // Starts a vRouter and waits for its stats region. DPDK's af_packet PMD joins a fanout
    // group numbered (pid ^ ifindex) & 0xffff; when another process (the other end here, or
    // a concurrent test) already has that number on another interface, the port fails with
    // "could not set PACKET_FANOUT" and the vRouter exits: a new process has a new pid.
    let start_up = |cfg: &str, name: &str, prefix: &str, run: &Path, requests: &serde_json::Value| {
        for attempt in 1.. {
            std::fs::create_dir_all(run).unwrap();
            std::fs::write(run.join(vrouter::trace::REQUESTS_FILE_NAME), requests.to_string()).unwrap();
            let mut r = start(cfg, name, prefix.to_string());
            loop {
                if let Ok(stats) = vrouter::stats::StatsReader::open(run) {
                    return (r, stats);
                }
                if let Some(why) = exited(&mut r) {
                    assert!(why.contains("PACKET_FANOUT") && attempt < 5, "vrouter {name} exited: {why}");
                    break;
                }
                assert!(Instant::now() < deadline, "vrouter {name} did not start");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        unreachable!()
    };
    let (mut b, stats_b) = start_up(&cfg_b, "b.toml", &prefix_b, &run_b, &req_b);
    // A: the standard topology with its fabric on the other end; traces udp 7300.
    let run_a = d.join("run-a");
    let rx_a = d.join("a-vm1.pcap");
    write_pcap(&rx_a, &vec![vm_udp("192.168.1.3", dst, 4300, 7300, b"cross-host", VM1_MAC); 2]);
    let a_vdevs = [
        format!("\"net_af_packet0,iface={ia}\""),
        format!("\"net_pcap1,rx_pcap={}\"", rx_a.display()),
        format!("\"net_pcap2,rx_pcap={}\"", empty.display()),
    ];
    let prefix_a = unique_prefix();
    let cfg_a = traced_config(topology(&a_vdevs.join(", "), &prefix_a, &run_a), &run_a).replacen(
        "device = \"net_pcap0\"",
        "device = \"net_af_packet0\"",
        1,
    );
    let req_a = json!({"version": 1, "requests": [{"id": "dddddddd-0000-4000-8000-00000000000a", "condition": {"dst_port": 7300},
        "scope": {"type": "vrouter"}, "limit": {"packets": 10}, "enabled": true, "creationTimestampMs": 1}]});
    let (mut a, _stats_a) = start_up(&cfg_a, "a.toml", &prefix_a, &run_a, &req_a);
    // Both packets delivered to B's VM.
    while stats_b.vif_counters(2, None).tx_packets < 2 {
        if let Some(why) = exited(&mut a) {
            panic!("vrouter A exited: {why}");
        }
        if let Some(why) = exited(&mut b) {
            panic!("vrouter B exited: {why}");
        }
        assert!(Instant::now() < deadline, "B delivered {} of 2", stats_b.vif_counters(2, None).tx_packets);
        std::thread::sleep(Duration::from_millis(20));
    }
    stop(&mut a);
    stop(&mut b);

    let ta = traces(&run_a);
    assert_eq!(ta.len(), 1, "{:?}", ta.keys());
    let (&id, trace_a) = ta.iter().next().unwrap();
    let tb = traces(&run_b);
    let trace_b = tb.get(&id).unwrap_or_else(|| panic!("B continued trace {id:#x}: B has {:?}", tb.keys()));
    assert_eq!(tb.len(), 1, "B traced nothing else");
    // The inner IP packet: 20 + 8 + "cross-host"; MPLSoUDP adds 14 + 20 + 8 + 4 and the mark.
    let marked_len = (14 + 20 + 8 + 4 + vrouter::trace::mark::MPLS_MARK_LEN + 38) as u32;
    for p in 1..=2u32 {
        let sa = steps(trace_a, p);
        assert!(
            matches!(sa[sa.len() - 2], Step::Encap { vxlan, label: l, .. } if vxlan != mpls && l == label),
            "{sa:?}"
        );
        assert!(matches!(sa[sa.len() - 1], Step::Egress { vif: 0, .. }), "{sa:?}");
        let sb = steps(trace_b, p);
        assert_eq!(kinds(trace_b, p)[..5], ["ingress", "marked", "decap", "parse", "addresses"], "{sb:?}");
        if mpls {
            assert_eq!(sa[sa.len() - 1], Step::Egress { vif: 0, len: marked_len }, "A sent the mark");
            assert_eq!(sb[0], Step::Ingress { vif: 0, queue: 0, len: marked_len }, "B got the mark");
        }
        assert_eq!(sb[1], Step::Marked { from: ip4("10.10.0.1") });
        assert_eq!(sb[2], Step::Decap { vxlan: !mpls, label, outer_src: ip4("10.10.0.1") });
        assert!(matches!(sb[3], Step::Parsed { sport: 4300, dport: 7300, vrf: 1, .. }), "{sb:?}");
        assert!(matches!(sb.last(), Some(Step::Egress { vif: 2, .. })), "{sb:?}");
    }
    if mpls {
        // B's VM got the IP packet alone: the mark went with the outer headers.
        let got = read_pcap(&d.join("b-vm2.pcap"));
        assert_eq!(got.len(), 2);
        for f in &got {
            assert_eq!(f.len(), 14 + 38, "{f:02x?}");
            assert_eq!((f[14] >> 4, &f[14 + 28..]), (4, &b"cross-host"[..]));
        }
    }
    // The operator's merged view.
    let tool = Path::new(env!("CARGO_BIN_EXE_vrouter")).with_file_name("trace");
    let o = Command::new(tool)
        .arg("--run-dir")
        .arg(&run_a)
        .args(["get", &format!("{id:x}"), "--peer"])
        .arg(&run_b)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).unwrap();
    let at_a =
        text.find(if mpls { "encapsulated MPLSoUDP label 40" } else { "encapsulated VXLAN vni 5001" }).expect(&text);
    let at_b = text.find("trace mark from vRouter 10.10.0.1").expect(&text);
    assert!(at_a < at_b, "host A's steps come first: {text}");
}

/// `trace_simulate` of a packet of a live flow (from VM1 to VM2, which a trace request
/// recorded) tells the same story as the recorded trace from the flow lookup on, with the
/// same verdict, and changes no counter: the stats region's vif, drop and lcore packet
/// counters and the flow table (every flow's packets, bytes, action) are the same after it.
/// A packet of a flow that does not exist gets the policy's verdict and rule; a bad field is
/// an error naming it; the `trace simulate` tool prints the same steps.
#[test]
fn simulate_tells_the_recorded_story_and_changes_nothing() {
    use flow_table::FlowTableReader;
    use vrouter::stats::StatsReader;
    let keep = tempfile::tempdir().unwrap();
    let run_dir = keep.path().join("run");
    persist_requests(&run_dir, &[(json!({"dst_port": 7300}), json!({"packets": 8}))]);
    let vm1 = vec![vm_udp("192.168.1.3", "192.168.1.4", 4300, 7300, b"simulated", VM1_MAC); 3];
    let mut seen = None;
    let out = run_live(
        Inputs { vm1, ..Default::default() },
        |c| traced_config(c, &run_dir),
        |rd| {
            let counters = || {
                let s = StatsReader::open(rd).unwrap();
                let vifs: Vec<_> = (0..3u16).map(|v| (s.vif_counters(v, None), s.vif_drops(v, None))).collect();
                let lc = s.lcore_counters(None);
                let flows: Vec<_> = FlowTableReader::open_run_dir(rd)
                    .unwrap()
                    .iter_active()
                    .map(|f| (f.index, f.packets, f.bytes, f.action as u8))
                    .collect();
                (vifs, s.drops(None), lc.mirror_packets, lc.icmp_errors_sent, flows)
            };
            // The held packets were released: every flow has its verdict.
            let deadline = Instant::now() + Duration::from_secs(10);
            while FlowTableReader::open_run_dir(rd).unwrap().stats().hold_count != 0 {
                assert!(Instant::now() < deadline, "flows still held");
                std::thread::sleep(Duration::from_millis(20));
            }
            let before = counters();
            let sim = |extra: serde_json::Value| {
                let mut c = json!({"cmd": "trace_simulate", "vif": 1, "src_ip": "192.168.1.3", "dst_ip": "192.168.1.4",
                    "proto": "udp", "src_port": 4300, "dst_port": 7300, "len": 9});
                for (k, v) in extra.as_object().unwrap() {
                    c[k] = v.clone();
                }
                control(rd, &c)
            };
            let live = sim(json!({}));
            assert_eq!(live["ok"], true, "{live}");
            let other = sim(json!({"dst_port": 53}));
            assert_eq!(other["ok"], true, "{other}");
            let bad = sim(json!({"dst_ip": "192.168.1.x"}));
            assert_eq!((bad["ok"].as_bool(), bad["field"].as_str()), (Some(false), Some("dst_ip")), "{bad}");
            // The tool: same steps in text, a non-zero exit naming the field on bad input.
            let tool = |args: &[&str]| {
                Command::new(tool("trace")).arg("--run-dir").arg(rd).arg("simulate").args(args).output().unwrap()
            };
            let ok = tool(&[
                "--vif",
                "1",
                "--dst-ip",
                "192.168.1.4",
                "--proto",
                "udp",
                "--src-port",
                "4300",
                "--dst-port",
                "7300",
            ]);
            assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
            let text = String::from_utf8_lossy(&ok.stdout).to_string();
            assert!(text.contains("flow lookup hit") && text.contains("Verdict: forward on vif0/2"), "{text}");
            let err = tool(&["--vif", "1", "--dst-ip", "nope"]);
            assert!(!err.status.success());
            assert!(
                String::from_utf8_lossy(&err.stderr).contains("dst_ip"),
                "{}",
                String::from_utf8_lossy(&err.stderr)
            );
            assert_eq!(counters(), before, "a simulation changes no counter and no flow");
            seen = Some((live, other));
        },
    );
    out.assert_accounted(3);
    let (live, other) = seen.unwrap();
    let decode = |r: &serde_json::Value| -> Vec<Step> {
        r["encoded"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let w: Vec<u64> = e.as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect();
                Step::decode(w[0] as u16, [w[1], w[2], w[3], w[4]]).unwrap()
            })
            .collect()
    };
    let simulated = decode(&live);
    assert_eq!(live["verdict"], "forward on vif0/2", "{live}");
    let all = traces(&out.run_dir);
    assert_eq!(all.len(), 1, "{all:?}");
    let t = all.values().next().unwrap();
    // The last recorded packet: a hit on the flow set up for the first.
    let last = t.iter().map(|r| r.pkt).max().unwrap();
    let recorded = steps(t, last);
    let from_lookup = |s: &[Step]| {
        let i = s.iter().rposition(|x| matches!(x, Step::FlowLookup { .. })).expect("a flow lookup");
        s[i..].to_vec()
    };
    assert_eq!(from_lookup(&simulated), from_lookup(&recorded), "simulated {simulated:?}\nrecorded {recorded:?}");
    let headers = |s: &[Step]| {
        s.iter().filter(|x| matches!(x, Step::Parsed { .. } | Step::Addresses { .. })).copied().collect::<Vec<_>>()
    };
    assert_eq!(headers(&simulated), headers(&recorded));
    assert_eq!(recorded.last(), Some(&Step::Egress { vif: 2, len: out.vm2[last as usize - 1].len() as u32 }));
    // No flow for udp 53: the policy's deny, with its rule.
    assert_eq!(other["verdict"], "drop: Flow Action Drop", "{other}");
    assert_eq!(other["policy"]["rule_uuid"], RULE_DNS, "{other}");
    assert!(decode(&other).contains(&Step::Policy {
        forward: false,
        drop_reason: other["policy"]["flow_drop_reason"].as_u64().unwrap() as u8,
        rule: rule(RULE_DNS),
        flow: u32::MAX
    }));
}

/// The traced topology on two forwarding lcores, mapped onto CPUs 1 and 0.
fn two_lcores(cfg: String, run_dir: &Path) -> String {
    traced_config(cfg, run_dir).replacen(
        "forwarding_cores = [1]",
        "forwarding_cores = [1, 2]\nforwarding_cpus = [1, 0]\nmain_cpu = 0",
        1,
    )
}

/// Two forwarding lcores (mapped onto this machine's CPUs): vm1's queue is polled by one,
/// vm2's by the other, and one request matches traffic from both. Each lcore records in its
/// own ring, the request's packet limit holds across them (exactly `limit` packets traced),
/// and every traced packet's data-plane story (matched, parsed, egress) is in one lcore's ring.
#[test]
fn traces_across_two_lcores_share_the_limit_and_keep_each_story_in_one_ring() {
    let keep = tempfile::tempdir().unwrap();
    let run_dir = keep.path().join("run");
    let ids = {
        // Requests persisted by a first run, so the second starts with them enabled.
        let mut ids = Vec::new();
        run_live(
            Inputs::default(),
            |c| two_lcores(c, &run_dir),
            |rd| {
                let id = add(rd, json!({"protocol": 17, "dst_port": 7300}), json!({"packets": 5}));
                assert_eq!(control(rd, &json!({"cmd": "trace_enable", "id": id}))["ok"], true);
                ids.push(id);
            },
        );
        for f in std::fs::read_dir(&run_dir).unwrap() {
            let p = f.unwrap().path();
            if p.file_name().unwrap() != vrouter::trace::REQUESTS_FILE_NAME {
                let _ = std::fs::remove_file(&p);
            }
        }
        ids
    };
    // Four matching packets from each VM (two flows to port 7300), one that does not match.
    let vm1: Vec<Vec<u8>> = (0..4)
        .map(|i| vm_udp("192.168.1.3", "192.168.1.4", 4300 + i, 7300, b"lcore-a", VM1_MAC))
        .chain([vm_udp("192.168.1.3", "192.168.1.4", 4400, 7400, b"other", VM1_MAC)])
        .collect();
    let vm2: Vec<Vec<u8>> =
        (0..4).map(|i| vm_udp("192.168.1.4", "192.168.1.3", 4500 + i, 7300, b"lcore-b", VM2_MAC)).collect();
    let out = run_live(Inputs { vm1, vm2, ..Default::default() }, |c| two_lcores(c, &run_dir), |_| {});
    out.assert_accounted(9);
    assert_eq!((out.vm2.len(), out.vm1.len()), (5, 4), "{:?}", out.drop_list());
    let all = traces(&out.run_dir);
    let recs: Vec<&TraceRecord> = all.values().flatten().collect();
    assert!(recs.iter().all(|r| request_of(&all[&r.trace_id]) == ids[0]));
    // Exactly the limit, over both lcores: the budget is shared, not per lcore.
    let packets: std::collections::BTreeSet<(u64, u32)> = recs.iter().map(|r| (r.trace_id, r.pkt)).collect();
    assert_eq!(packets.len(), 5, "{packets:?}");
    // Rings 0 and 1 are the lcores'; ring 2 the agent's (the policy step of a held packet).
    let rings: std::collections::BTreeSet<usize> = recs.iter().map(|r| r.ring).collect();
    assert!(rings.contains(&0) && rings.contains(&1) && rings.iter().all(|&r| r <= 2), "rings {rings:?}");
    for &(id, pkt) in &packets {
        let story: Vec<&&TraceRecord> = recs.iter().filter(|r| r.trace_id == id && r.pkt == pkt).collect();
        let lcore_rings: std::collections::BTreeSet<usize> = story.iter().map(|r| r.ring).filter(|&r| r < 2).collect();
        assert_eq!(lcore_rings.len(), 1, "packet {pkt} of trace {id} spread over lcores' rings");
        let names: Vec<&str> = story.iter().map(|r| r.step.name()).collect();
        assert!(names.contains(&"matched") && names.contains(&"parse"), "{names:?}");
        assert!(story.iter().any(|r| matches!(r.step, Step::Egress { vif: 1 | 2, .. })), "{names:?}");
        assert!(!story.iter().any(|r| matches!(r.step, Step::Parsed { dport: 7400, .. })));
    }
}
