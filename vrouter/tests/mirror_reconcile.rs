//! Mirror reconciliation end to end (the mirror blueprint's purpose: "compare number of
//! packets matching a network policy to the number of packets mirrored"): a real vRouter
//! (real EAL, pcap vdevs) mirrors flows by policy to two analyzers, one of them without a
//! route (every copy to it fails: `Mirror No NH`), one copy is too long for an mbuf
//! (`Mirror Encap Fail`), packets of new flows are dropped while held, and a rule added at run
//! time starts mirroring a flow that already forwarded. `mirror --reconcile --json` and the
//! collector's `GET /analytics/mirror/reconcile` (a real collector receiving the vRouter's
//! export) agree with each other, with the flow table, with the drop table and with the
//! copies in the fabric's TX capture, and for every analyzer and rule
//! `packets = sent + lost + before the rule + held and dropped` holds to the packet.

mod common;
use common::*;
use flow_table::{FlowSnapshot, FlowTableReader, NO_MIRROR};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};
use vrouter::drop_reason::DropReason;

const AN_A: &str = "10.20.0.5";
/// No route leads there.
const AN_B: &str = "10.30.0.6";
const VN1: &str = "default-domain:demo:vn1";
const RULE_WEB: &str = "bbbbbbbb-0000-4000-8000-000000000080";
const RULE_DNS: &str = "bbbbbbbb-0000-4000-8000-000000000053";
const VROUTER: &str = "reconcile-vrouter";

/// The balance fields both sides report.
const BALANCE: [&str; 9] = [
    "flows",
    "packets",
    "bytes",
    "sent_packets",
    "sent_bytes",
    "lost_packets",
    "before_mirror_packets",
    "held_dropped_packets",
    "unexplained_packets",
];

fn balance(v: &Value) -> BTreeMap<&'static str, i64> {
    BALANCE.iter().map(|k| (*k, v[*k].as_i64().unwrap_or_else(|| panic!("{k} missing in {v}")))).collect()
}

/// The network policy of VN1: UDP to port 80 mirrored to both analyzers, UDP to port 53
/// mirrored to `dns_mirror` (none at first), the rest passed.
fn policy(dns_mirror: &[&str]) -> Value {
    let mut dns = json!({"uuid": RULE_DNS, "protocol": "udp", "dst_ports": "53", "action": "pass"});
    if !dns_mirror.is_empty() {
        dns["mirror_to"] = json!(dns_mirror);
    }
    json!({
        "name": "mirror-web",
        "vns": [VN1],
        "rule": [
            {"uuid": RULE_WEB, "protocol": "udp", "dst_ports": "80", "action": "pass", "mirror_to": ["an-a", "an-b"]},
            dns,
            {"uuid": "bbbbbbbb-0000-4000-8000-0000000000ff", "action": "pass"},
        ],
    })
}

fn toml_rule(r: &Value) -> String {
    let mut s = String::from("[[network_policy.rule]]\n");
    for (k, v) in r.as_object().unwrap() {
        s.push_str(&format!("{k} = {v}\n"));
    }
    s
}

fn config(c: String, collector: SocketAddr) -> String {
    let p = policy(&[]);
    let rules: String = p["rule"].as_array().unwrap().iter().map(toml_rule).collect();
    format!(
        r#"{c}
[flow]
entries = 1024
held_packets_per_flow = 2

{ANALYZER_NET}

[[analyzer]]
name = "an-a"
ip = "{AN_A}"
index = 1

[[analyzer]]
name = "an-b"
ip = "{AN_B}"
udp_port = 9099
index = 2

[[network_policy]]
name = "mirror-web"
vns = ["{VN1}"]
{rules}
[export]
enabled = true
collectors = ["{collector}"]
source = "{VROUTER}"
scan_interval_ms = 20
uve_interval_s = 1
"#
    )
}

fn udp(sport: u16, dport: u16, payload: usize) -> Vec<u8> {
    let ip = ipv4_udp(ip4("192.168.1.3"), ip4("192.168.1.4"), 64, sport, dport, &vec![0x5a; payload]);
    eth(mac(ROUTER_MAC), mac(VM1_MAC), 0x0800, &ip)
}

fn reconcile_tool(run_dir: &std::path::Path) -> Value {
    let out = Command::new(tool("mirror"))
        .args(["--reconcile", "--json", "--run-dir"])
        .arg(run_dir)
        .env_remove("VROUTER_RUN_DIR")
        .output()
        .unwrap();
    assert!(out.status.success(), "mirror --reconcile: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn reconcile_collector(http: SocketAddr) -> Value {
    let (code, v) =
        http_json(&http.to_string(), "GET", "/analytics/mirror/reconcile?start_time=now-10m&end_time=now", None, None);
    assert_eq!(code, 200, "{v}");
    v
}

fn by_name<'a>(rows: &'a Value, name: &str) -> &'a Value {
    rows["analyzers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["analyzer_name"] == name)
        .unwrap_or_else(|| panic!("no analyzer {name} in {rows:#}"))
}

/// Rows of `rules` as (rule, analyzer) -> balance.
fn rule_rows(rows: &Value) -> BTreeMap<(String, String), BTreeMap<&'static str, i64>> {
    rows["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| ((r["rule"].as_str().unwrap().into(), r["analyzer_name"].as_str().unwrap().into()), balance(r)))
        .collect()
}

/// What the two sides have in common: the balance per analyzer, its copies lost by reason
/// and the balance per rule.
fn common_part(rows: &Value) -> Value {
    let analyzers: BTreeMap<String, Value> = rows["analyzers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["analyzer_name"].as_str().unwrap().to_owned(), json!({"balance": balance(a), "lost": a["lost"]})))
        .collect();
    let rules: Vec<Value> = rule_rows(rows).into_iter().map(|(k, b)| json!([k.0, k.1, b])).collect();
    json!({"analyzers": analyzers, "rules": rules})
}

/// Every balance row explains every packet.
fn assert_identity(rows: &Value) {
    for a in rows["analyzers"].as_array().unwrap().iter().chain(rows["rules"].as_array().unwrap()) {
        let b = balance(a);
        assert_eq!(b["unexplained_packets"], 0, "{a:#}");
        assert_eq!(
            b["packets"],
            b["sent_packets"] + b["lost_packets"] + b["before_mirror_packets"] + b["held_dropped_packets"],
            "{a:#}"
        );
    }
}

/// The flow table's own sums for mirror index `index`: flows, packets, copies sent, lost.
fn table_sums(flows: &[FlowSnapshot], index: u8) -> [u64; 4] {
    let mut s = [0u64; 4];
    for f in flows {
        for (k, m) in [f.mirror, f.sec_mirror].into_iter().enumerate() {
            if m == index && m != NO_MIRROR {
                let share = f.mirror_share(k == 1);
                s[0] += 1;
                s[1] += share.packets;
                s[2] += share.sent_packets;
                s[3] += share.lost_packets;
            }
        }
    }
    s
}

#[test]
fn mirror_reconcile_tool_and_collector_agree_with_the_table_and_the_captures() {
    let data = tempfile::tempdir().unwrap();
    let cfg = collector::config::CollectorConfig {
        sandesh_listen: "127.0.0.1:0".into(),
        http_listen: "127.0.0.1:0".into(),
        data_dir: data.path().to_owned(),
        hostname: "reconcile-collector".into(),
        ..Default::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let c = rt.block_on(collector::server::Collector::start(&cfg)).unwrap();
    let (sandesh_addr, http_addr) = (c.sandesh_addr, c.http_addr);

    // One burst from vm1: the web flow's first two packets are held (the first too long
    // for a copy to fit one mbuf), its next three dropped while held; a second web flow of
    // two packets; a DNS flow of three (one dropped while held), not mirrored yet.
    let mut vm1 = vec![udp(4000, 80, 1940)];
    vm1.extend([100, 200, 300, 50].map(|n| udp(4000, 80, n)));
    vm1.extend([64, 64].map(|n| udp(4001, 80, n)));
    vm1.extend([40, 41, 42].map(|n| udp(5000, 53, n)));
    let n_in = vm1.len() as u64;

    let mut before_rule: Option<Value> = None;
    let mut after_rule: Option<Value> = None;
    let mut table_after: Vec<FlowSnapshot> = Vec::new();
    let out = run_live(
        Inputs { vm1, ..Default::default() },
        |c| config(c, sandesh_addr),
        |run_dir| {
            // Before the rule change: the web flows only.
            let t = reconcile_tool(run_dir);
            assert_identity(&t);
            assert_eq!(by_name(&t, "an-a")["before_mirror_packets"], 0);
            before_rule = Some(t);

            // The DNS rule now mirrors to an-a: its flow (and reverse) are re-evaluated.
            let reply = control(run_dir, &json!({"cmd": "policy_set", "policy": policy(&["an-a"])}));
            assert_eq!(reply["ok"], true, "{reply}");
            assert!(reply["flows_changed"].as_u64().unwrap() >= 2, "{reply}");
            let t = reconcile_tool(run_dir);
            assert_identity(&t);
            // The text form says the same, analyzer by analyzer.
            let text = Command::new(tool("mirror")).args(["--reconcile", "--run-dir"]).arg(run_dir).output().unwrap();
            let text = String::from_utf8(text.stdout).unwrap();
            println!("{text}");
            assert!(text.contains(&format!("\nAnalyzer an-b (index 2, {AN_B}:9099, nexthop none)\n")), "{text}");
            let a = by_name(&t, "an-a");
            let line = format!(
                "    Balance:              {} = {} sent + {} lost + {} before the rule + {} held and dropped\n",
                a["packets"],
                a["sent_packets"],
                a["lost_packets"],
                a["before_mirror_packets"],
                a["held_dropped_packets"]
            );
            assert!(text.contains(&line), "{line}{text}");
            assert!(text.contains(&format!("\n{RULE_DNS}  an-a")), "{text}");
            table_after = FlowTableReader::open_run_dir(run_dir).expect("flow table").iter_active().collect::<Vec<_>>();

            // The collector: its rows reach the vRouter's (records and UVEs follow the scan).
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let col = reconcile_collector(http_addr);
                if col["analyzers"].as_array().is_some_and(|a| a.iter().all(|x| !x["lost"].is_null()))
                    && common_part(&col) == common_part(&t)
                {
                    assert_identity(&col);
                    for name in ["an-a", "an-b"] {
                        let (a, ta) = (by_name(&col, name), by_name(&t, name));
                        assert_eq!(a["vrouter"], VROUTER);
                        // Nothing sampled out: the records hold what the vRouter counted.
                        assert_eq!(a["sampled_out_packets"], 0, "{a:#}");
                        assert_eq!(a["vrouter_packets"], ta["packets"]);
                        assert_eq!(a["entry"], ta["entry"], "UVE entry counters = mirror region's");
                    }
                    break;
                }
                if Instant::now() >= deadline {
                    let export = vrouter::agent::export::read_counters(run_dir);
                    panic!("collector never agreed:\n{col:#}\nvRouter:\n{t:#}\nexporter: {export:?}");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            after_rule = Some(t);
        },
    );
    out.assert_accounted(n_in);
    let (before, after) = (before_rule.unwrap(), after_rule.unwrap());

    // The copies in the fabric's TX capture: an-a's are the copies sent, an-b got none.
    let copies_to = |ip: &str| -> (u64, u64) {
        let want = ip4(ip).octets();
        let mut n = (0, 0);
        for f in out.fabric.iter().filter(|f| f.len() > 42 && f[12..14] == [8, 0] && f[23] == 17 && f[30..34] == want) {
            n.0 += 1;
            n.1 += f.len() as u64;
        }
        n
    };
    assert_eq!(out.fabric.len() as u64, copies_to(AN_A).0, "only copies leave on the fabric");
    for rows in [&before, &after] {
        let a = by_name(rows, "an-a");
        assert_eq!(copies_to(AN_A), (a["sent_packets"].as_u64().unwrap(), a["sent_bytes"].as_u64().unwrap()));
        assert_eq!(copies_to(AN_B), (0, 0));
        assert_eq!(by_name(rows, "an-b")["sent_packets"], 0);
    }

    // The figures themselves. Web flow 1: 5 packets; its first (too long for a copy to fit
    // one mbuf) is held and released, as its second may be, the rest are dropped while held.
    // Web flow 2: 2 packets. DNS flow: 3 packets, forwarded (or dropped while held) before
    // the rule mirrored it. an-b's copies all fail (no route).
    let dropped_held = out.drop_count(DropReason::FlowQueueLimitExceeded);
    let held_total: u64 = table_after.iter().map(|f| f.accounting.held_dropped).sum();
    assert_eq!(held_total, dropped_held, "held and dropped per flow = the drop table's");
    assert!(dropped_held > 0, "the burst overflowed the hold queue");
    let a = by_name(&after, "an-a");
    let b = by_name(&after, "an-b");
    let n = |x: &Value, k: &str| x[k].as_u64().unwrap_or_else(|| panic!("{k} in {x:#}"));
    assert_eq!((n(a, "packets"), n(b, "packets")), (10, 7), "every packet of the mirrored flows");
    assert_eq!(n(a, "lost_packets"), 1, "the long copy: {a:#}");
    assert_eq!(a["lost"]["mirror_encap_fail"], 1);
    assert_eq!(n(b, "sent_packets"), 0);
    // an-b lost a copy of every web packet that was not dropped while held.
    assert_eq!(n(b, "lost_packets"), 7 - n(b, "held_dropped_packets"));
    assert_eq!(b["lost"]["mirror_no_nh"], b["lost_packets"]);
    // an-a's copies of the web flows are an-b's lost ones, but for the long one.
    assert_eq!(n(a, "sent_packets") + 1, n(b, "lost_packets"));
    // Lost copies by reason (entry counters) = the flows' lost copies = the drop table's.
    assert_eq!(out.drop_count(DropReason::MirrorNoNh), n(b, "lost_packets"));
    assert_eq!(out.drop_count(DropReason::MirrorEncapFail), 1);
    for x in [a, b] {
        assert_eq!((&x["gone_sent_packets"], &x["gone_lost_packets"]), (&json!(0), &json!(0)), "{x:#}");
        assert_eq!(x["entry"]["flow_packets"], x["sent_packets"]);
        assert_eq!(x["entry"]["flow_lost_packets"], x["lost_packets"]);
    }
    // The DNS flow: what it forwarded before the rule is set aside, the rest was dropped
    // while held.
    let dns = table_after.iter().find(|f| f.key.dport() == 53).expect("the DNS flow");
    assert_eq!(dns.packets, 3);
    assert_eq!((dns.mirror, dns.mirror_packets, dns.accounting.mirror_lost), (1, 0, 0));
    assert!(dns.accounting.before_mirror >= 1, "its first packet was held and released: {dns:?}");
    assert_eq!(dns.accounting.before_mirror + dns.accounting.held_dropped, 3, "{dns:?}");
    // The tool's rows are the flow table's own sums.
    for (name, index) in [("an-a", 1u8), ("an-b", 2)] {
        let x = by_name(&after, name);
        let want = table_sums(&table_after, index);
        let got = ["flows", "packets", "sent_packets", "lost_packets"].map(|k| x[k].as_u64().unwrap());
        assert_eq!(got, want, "{name}");
    }
    // Per rule: the web rule's flows to both analyzers, the DNS rule's to an-a, set up
    // before it (all of its forwarded packets before the rule).
    let rules = rule_rows(&after);
    let keys: Vec<_> = rules.keys().cloned().collect();
    assert_eq!(
        keys,
        [(RULE_DNS.into(), "an-a".into()), (RULE_WEB.into(), "an-a".into()), (RULE_WEB.into(), "an-b".into())],
        "{after:#}"
    );
    let dns_rule = &rules[&(RULE_DNS.to_string(), "an-a".to_string())];
    assert_eq!(dns_rule["packets"], 3);
    assert_eq!(dns_rule["before_mirror_packets"], dns.accounting.before_mirror as i64);
    let web_a = &rules[&(RULE_WEB.to_string(), "an-a".to_string())];
    assert_eq!((web_a["packets"], web_a["lost_packets"]), (7, 1));
    // Before the rule change the DNS flow was no analyzer's.
    assert_eq!(by_name(&before, "an-a")["packets"], 7);
    assert_eq!(rule_rows(&before).len(), 2);

    rt.block_on(c.stop());
}
