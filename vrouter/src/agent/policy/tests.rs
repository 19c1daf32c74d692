//! Policy engine tests: a table of flows against one configuration, analyzer index
//! resolution, build errors, and property tests (arbitrary flows, generated configurations).

use super::*;
use crate::config::parse;
use flow_table::{
    flow_drop_reason_name, FLOW_DR_AUDIT_ENTRY, FLOW_DR_FLOW_LIMIT, FLOW_DR_FWAAS_REVERSE_OUT_POLICY,
    FLOW_DR_REVERSE_OUT_SG,
};
use proptest::prelude::*;

/// A VM vif: (id, ip, ip6, vn, security groups).
type VmVif = (u16, &'static str, Option<&'static str>, &'static str, &'static [&'static str]);

/// The VM vifs of the test configuration (vif 0 is the fabric).
const VIFS: &[VmVif] = &[
    (1, "10.1.0.3", None, "vn-red", &["web"]),
    (2, "10.1.0.4", None, "vn-red", &["locked"]),
    (3, "10.2.0.3", Some("fd00:2::3"), "vn-blue", &["web", "v6only"]),
    (4, "10.1.0.5", None, "vn-red", &[]),
    (5, "10.1.0.6", None, "vn-red", &["web"]),
];

fn uuid(kind: u32, n: u32) -> String {
    format!("{kind}0000000-0000-4000-8000-{n:012}")
}
fn u(n: u32) -> String {
    uuid(1, n)
}
fn s(n: u32) -> String {
    uuid(2, n)
}

/// The base of every test configuration: one fabric vif and the VM vifs of [`VIFS`].
fn base() -> String {
    let mut t = String::from(
        r#"
[eal]
forwarding_cores = [1]
[vrouter]
run_dir = "/tmp/policy-test"
router_ip = "10.10.0.1"
[[vrf]]
id = 0
name = "fabric"
[[vrf]]
id = 1
name = "overlay"
[[vif]]
id = 0
name = "fab"
type = "fabric"
device = "d0"
mac = "02:00:00:00:00:01"
vrf = 0
"#,
    );
    for (id, ip, ip6, vn, sgs) in VIFS {
        t += &format!(
            "[[vif]]\nid = {id}\nname = \"tap{id}\"\ntype = \"virtual\"\ndevice = \"d{id}\"\n\
             mac = \"02:00:00:00:01:{id:02x}\"\nip = \"{ip}\"\nvrf = 1\nvn_name = \"{vn}\"\n"
        );
        if let Some(ip6) = ip6 {
            t += &format!("ip6 = \"{ip6}\"\n");
        }
        if !sgs.is_empty() {
            let list: Vec<String> = sgs.iter().map(|g| format!("\"{g}\"")).collect();
            t += &format!("security_groups = [{}]\n", list.join(", "));
        }
    }
    t
}

/// Analyzers, network policies and security groups of the table test.
fn policy_text() -> String {
    format!(
        r#"
[[analyzer]]
name = "an-a"
ip = "10.10.0.20"

[[analyzer]]
name = "an-b"
ip = "10.10.0.21"
index = 0

[[analyzer]]
name = "an-c"
ip = "10.10.0.22"
juniper_header = false
vni = 50

[[network_policy]]
name = "red-blue"
vns = ["vn-red", "vn-blue"]

[[network_policy.rule]]
uuid = "{u1}"
src = "vn:vn-red"
dst = "vn:vn-blue"
protocol = "tcp"
dst_ports = "80"
action = "pass"
mirror_to = ["an-a"]

[[network_policy.rule]]
uuid = "{u2}"
src = "vn:vn-red"
dst = "vn:vn-blue"
protocol = "udp"
dst_ports = 53
direction = ">"
action = "pass"
log = true

[[network_policy.rule]]
uuid = "{u3}"
src = "vn:vn-red"
dst = "vn:vn-blue"
protocol = "icmp"
action = "deny"
log = true

[[network_policy.rule]]
uuid = "{u4}"
src = "10.1.0.128/25"
dst = "any"
action = "deny"

[[network_policy.rule]]
uuid = "{u5}"
src = "vn:vn-red"
dst = "vn:vn-blue"
protocol = 6
dst_ports = "1000-2000"
action = "pass"
log = true
mirror_to = ["an-b", "an-c"]

[[network_policy]]
name = "red-internal"
vns = ["vn-red"]

[[network_policy.rule]]
uuid = "{u6}"
dst = "10.1.0.4/32"
protocol = "tcp"
dst_ports = "22"
action = "deny"
mirror_to = ["an-c"]

[[network_policy.rule]]
uuid = "{u7}"
src = "vn:vn-red"
dst = "8.8.8.0/24"
action = "deny"

[[network_policy]]
name = "blue-green"
vns = ["vn-blue"]

[[network_policy.rule]]
uuid = "{u8}"
src = "vn:vn-blue"
dst = "vn:vn-green"
action = "pass"

[[network_policy]]
name = "yellow-guard"
vns = ["vn-yellow"]

[[network_policy.rule]]
uuid = "{u9}"
src = "vn:vn-red"
dst = "vn:vn-yellow"
protocol = "tcp"
action = "deny"
mirror_to = ["an-a"]

[[network_policy]]
name = "red-yellow"
vns = ["vn-red", "vn-yellow"]

[[network_policy.rule]]
uuid = "{u10}"
src = "vn:vn-red"
dst = "vn:vn-yellow"
action = "pass"
mirror_to = ["an-c"]

[[security_group]]
name = "web"

[[security_group.rule]]
uuid = "{s1}"
direction = "ingress"
protocol = "tcp"
ports = "80"

[[security_group.rule]]
uuid = "{s2}"
direction = "ingress"
remote = "sg:web"

[[security_group.rule]]
uuid = "{s3}"
direction = "egress"

[[security_group]]
name = "locked"

[[security_group.rule]]
uuid = "{s4}"
direction = "egress"
remote = "10.2.0.0/16"
protocol = "tcp"
ports = "80"

[[security_group]]
name = "v6only"

[[security_group.rule]]
uuid = "{s5}"
direction = "ingress"
protocol = "icmp6"
ethertype = "IPv6"
"#,
        u1 = u(1),
        u2 = u(2),
        u3 = u(3),
        u4 = u(4),
        u5 = u(5),
        u6 = u(6),
        u7 = u(7),
        u8 = u(8),
        u9 = u(9),
        u10 = u(10),
        s1 = s(1),
        s2 = s(2),
        s3 = s(3),
        s4 = s(4),
        s5 = s(5),
    )
}

/// The groups the vifs of [`base`] name, without rules.
const EMPTY_GROUPS: &str = "
[[security_group]]
name = \"web\"
[[security_group]]
name = \"locked\"
[[security_group]]
name = \"v6only\"
";

fn engine_from(text: &str) -> PolicyEngine {
    let cfg = parse(text, "policy-test.toml").unwrap_or_else(|e| panic!("{e}"));
    PolicyEngine::from_config(&cfg).unwrap_or_else(|e| panic!("{e}"))
}

fn engine() -> PolicyEngine {
    engine_from(&(base() + &policy_text()))
}

/// An endpoint of a test flow: address, VN, local vif.
#[derive(Clone, Copy)]
struct Ep(&'static str, Option<&'static str>, Option<u16>);

/// A local VM endpoint of [`VIFS`].
fn vm(id: u16) -> Ep {
    let (_, ip, _, vn, _) = VIFS.iter().find(|v| v.0 == id).unwrap();
    Ep(ip, Some(vn), Some(id))
}

fn flow(src: Ep, dst: Ep, proto: u8, sport: u16, dport: u16) -> FlowContext<'static> {
    FlowContext {
        src: src.0.parse().unwrap(),
        dst: dst.0.parse().unwrap(),
        proto,
        sport,
        dport,
        src_vn: src.1,
        dst_vn: dst.1,
        src_vif: src.2,
        dst_vif: dst.2,
    }
}

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;
const ICMP6: u8 = 58;

/// Expected outcome: action names, drop reason, nw_ace_uuid, sg_rule_uuid, mirror analyzers.
struct Want {
    names: &'static str,
    drop: u8,
    nw: Option<u32>,
    sg: Option<u32>,
    mirror: &'static [&'static str],
}

fn want(names: &'static str, drop: u8) -> Want {
    Want { names, drop, nw: None, sg: None, mirror: &[] }
}

impl Want {
    fn nw(mut self, n: u32) -> Self {
        self.nw = Some(n);
        self
    }
    fn sg(mut self, n: u32) -> Self {
        self.sg = Some(n);
        self
    }
    fn mirror(mut self, m: &'static [&'static str]) -> Self {
        self.mirror = m;
        self
    }
}

#[test]
fn decision_table() {
    use flow_table::{
        FLOW_DR_OUT_POLICY as OUT_POLICY, FLOW_DR_OUT_SG as OUT_SG, FLOW_DR_POLICY as POLICY, FLOW_DR_SG as SG,
    };
    let e = engine();
    let red_remote = |ip| Ep(ip, Some("vn-red"), None);
    let blue_remote = |ip| Ep(ip, Some("vn-blue"), None);
    let cases: Vec<(&str, FlowContext, Want)> = vec![
        // ---- defaults ----
        (
            "intra-VN, no rule matches, no SG: default pass",
            flow(vm(4), red_remote("10.1.0.9"), UDP, 4000, 9999),
            want("pass", 0),
        ),
        (
            "inter-VN to a VN without policy: implicit deny (Policy)",
            flow(vm(4), Ep("10.9.0.1", Some("vn-none"), None), UDP, 4000, 9999),
            want("deny", POLICY),
        ),
        (
            "inter-VN, neither VN has a policy: implicit deny (Policy)",
            flow(Ep("10.7.0.1", Some("vn-x"), None), Ep("10.8.0.1", Some("vn-y"), None), TCP, 1, 2),
            want("deny", POLICY),
        ),
        (
            "same VN without any policy: pass",
            flow(Ep("10.7.0.1", Some("vn-x"), None), Ep("10.7.0.2", Some("vn-x"), None), TCP, 1, 2),
            want("pass", 0),
        ),
        ("destination outside any VN: pass", flow(vm(4), Ep("1.1.1.1", None, None), TCP, 40000, 443), want("pass", 0)),
        ("empty VN name counts as no VN", flow(vm(4), Ep("1.1.1.1", Some(""), None), TCP, 40000, 443), want("pass", 0)),
        (
            "fabric source to a VM without SG: pass",
            flow(Ep("10.10.0.2", None, None), vm(4), UDP, 1, 2),
            want("pass", 0),
        ),
        (
            "explicit prefix deny to an address outside any VN",
            flow(vm(4), Ep("8.8.8.8", None, None), UDP, 4000, 53),
            want("deny", POLICY).nw(7),
        ),
        // ---- explicit rules: vn:, ports, protocol, direction ----
        (
            "vn: rule, tcp 80, mirror to an-a; SG egress and ingress allow",
            flow(vm(2), vm(3), TCP, 40000, 80),
            want("pass|mirror", 0).nw(1).sg(4).mirror(&["an-a"]),
        ),
        (
            "<> rule matches the reverse sense (ports swapped too)",
            flow(blue_remote("10.2.0.9"), red_remote("10.1.0.9"), TCP, 80, 40000),
            want("pass|mirror", 0).nw(1).mirror(&["an-a"]),
        ),
        (
            "<> rule: the port belongs to the rule's dst side",
            flow(blue_remote("10.2.0.9"), red_remote("10.1.0.9"), TCP, 40000, 80),
            want("deny", POLICY),
        ),
        (
            "> rule, forward: pass with log",
            flow(vm(4), blue_remote("10.2.0.9"), UDP, 5000, 53),
            want("pass|log", 0).nw(2),
        ),
        (
            "> rule does not match the reverse direction",
            flow(blue_remote("10.2.0.9"), vm(4), UDP, 53, 5000),
            want("deny", POLICY),
        ),
        (
            "protocol rule: icmp denied with log",
            flow(vm(4), blue_remote("10.2.0.9"), ICMP, 0, 0),
            want("deny|log", POLICY).nw(3),
        ),
        (
            "port range, numeric protocol, two analyzers (explicit and assigned index)",
            flow(vm(4), blue_remote("10.2.0.9"), TCP, 40000, 1500),
            want("pass|log|mirror", 0).nw(5).mirror(&["an-b", "an-c"]),
        ),
        ("port range upper bound", flow(vm(4), blue_remote("10.2.0.9"), TCP, 40000, 2001), want("deny", POLICY)),
        (
            "first match wins: tcp 80 from 10.1.0.200 passes by rule 1 before rule 4",
            flow(red_remote("10.1.0.200"), blue_remote("10.2.0.9"), TCP, 40000, 80),
            want("pass|mirror", 0).nw(1).mirror(&["an-a"]),
        ),
        (
            "first match wins: udp 9 from 10.1.0.200 reaches the prefix deny (rule 4)",
            flow(red_remote("10.1.0.200"), blue_remote("10.2.0.9"), UDP, 40000, 9),
            want("deny", POLICY).nw(4),
        ),
        (
            "intra-VN explicit deny (tcp 22) is mirrored",
            flow(vm(1), vm(2), TCP, 40000, 22),
            want("deny|mirror", POLICY).nw(6).mirror(&["an-c"]),
        ),
        // ---- destination VN stage ----
        (
            "source policy passes, destination VN has none: OutPolicy",
            flow(vm(3), Ep("10.3.0.1", Some("vn-green"), None), TCP, 40000, 80),
            want("deny", OUT_POLICY),
        ),
        (
            "destination VN's policy denies: OutPolicy with its rule, mirrors of both stages",
            flow(vm(4), Ep("10.4.0.1", Some("vn-yellow"), None), TCP, 40000, 443),
            want("deny|mirror", OUT_POLICY).nw(9).mirror(&["an-c", "an-a"]),
        ),
        (
            "both stages pass: nw_ace_uuid of the source stage",
            flow(vm(4), Ep("10.4.0.1", Some("vn-yellow"), None), UDP, 40000, 443),
            want("pass|mirror", 0).nw(10).mirror(&["an-c"]),
        ),
        (
            "source outside any VN, destination VN stage only: no match passes",
            flow(Ep("10.10.0.2", None, None), blue_remote("10.2.0.9"), UDP, 1, 2),
            want("pass", 0),
        ),
        // ---- security groups ----
        (
            "SG ingress via sg: membership, egress allow-all: sg uuid of the egress rule",
            flow(vm(1), vm(5), UDP, 4000, 9999),
            want("pass", 0).sg(3),
        ),
        ("SG ingress implicit deny (source not in the group)", flow(vm(4), vm(5), UDP, 4000, 9999), want("deny", SG)),
        ("SG ingress by port rule", flow(vm(4), vm(5), TCP, 40000, 80), want("pass", 0).sg(1)),
        ("SG egress implicit deny", flow(vm(2), red_remote("10.1.0.9"), UDP, 4000, 9999), want("deny", OUT_SG)),
        (
            "both SGs deny: the destination's ingress (SG) is reported",
            flow(vm(2), vm(5), UDP, 4000, 9999),
            want("deny", SG),
        ),
        (
            "policy deny takes precedence over SG deny",
            flow(vm(1), vm(2), TCP, 40000, 22),
            want("deny|mirror", POLICY).nw(6).mirror(&["an-c"]),
        ),
        (
            "SG ethertype IPv6 icmp6 rule allows IPv6 from outside",
            flow(Ep("fd00:9::1", None, None), Ep("fd00:2::3", Some("vn-blue"), Some(3)), ICMP6, 0, 0),
            want("pass", 0).sg(5),
        ),
        (
            "SG IPv6-only rule does not allow IPv4",
            flow(Ep("10.9.9.9", None, None), vm(3), ICMP, 0, 0),
            want("deny", SG),
        ),
        (
            "unknown vif ids are not filtered",
            flow(Ep("10.9.9.9", None, Some(999)), Ep("10.9.9.8", None, Some(4095)), UDP, 1, 2),
            want("pass", 0),
        ),
    ];
    let mut failures = Vec::new();
    for (name, f, w) in &cases {
        let d = e.evaluate(f);
        let action = if w.drop == 0 { PolicyAction::Pass } else { PolicyAction::Deny };
        let mirror: Vec<Option<u8>> = (0..2).map(|k| w.mirror.get(k).map(|n| e.analyzer_index(n).unwrap())).collect();
        let names: Vec<Option<&str>> = (0..2).map(|k| w.mirror.get(k).copied()).collect();
        let ok = d.action == action
            && d.drop_reason == w.drop
            && d.action_names == w.names
            && d.nw_ace_uuid.as_deref() == w.nw.map(u).as_deref()
            && d.sg_rule_uuid.as_deref() == w.sg.map(s).as_deref()
            && d.mirror[..] == mirror[..]
            && d.mirror_names.iter().map(|n| n.as_deref()).eq(names.iter().copied())
            && d.log == w.names.contains("log");
        if !ok {
            failures.push(format!(
                "{name}:\n   got {} {} ({}) nw={:?} sg={:?} mirror={:?} {:?}\n  want {} {} nw={:?} sg={:?} mirror={:?}",
                d.action_names,
                d.drop_reason,
                flow_drop_reason_name(d.drop_reason),
                d.nw_ace_uuid,
                d.sg_rule_uuid,
                d.mirror,
                d.mirror_names,
                w.names,
                w.drop,
                w.nw.map(u),
                w.sg.map(s),
                mirror
            ));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn analyzer_indices_explicit_and_assigned() {
    let e = engine();
    // an-b has index 0; an-a and an-c get the lowest free ones, in order.
    assert_eq!(e.analyzer_index("an-a"), Some(1));
    assert_eq!(e.analyzer_index("an-b"), Some(0));
    assert_eq!(e.analyzer_index("an-c"), Some(2));
    assert_eq!(e.analyzer_index("an-d"), None);
    let a = e.analyzers();
    assert_eq!(a.len(), 3);
    assert_eq!(&*a[2].name, "an-c");
    assert_eq!(a[2].ip, Ipv4Addr::new(10, 10, 0, 22));
    assert_eq!((a[2].udp_port, a[2].juniper_header, a[2].vni), (8099, false, Some(50)));
    assert_eq!(a[0].nh_mode, MirrorNhMode::Dynamic);

    let d = e.evaluate(&flow(vm(4), Ep("10.2.0.9", Some("vn-blue"), None), TCP, 1, 1000));
    assert!(d.is_pass() && d.is_mirrored());
    let m: Vec<(u8, &str)> = d.mirrors().collect();
    assert_eq!(m, [(0, "an-b"), (2, "an-c")]);
}

#[test]
fn assigned_indices_skip_explicit_ones_defined_later() {
    let text = base()
        + EMPTY_GROUPS
        + r#"
[[analyzer]]
name = "first"
ip = "10.10.0.20"
[[analyzer]]
name = "second"
ip = "10.10.0.21"
[[analyzer]]
name = "pinned"
ip = "10.10.0.22"
index = 1
"#;
    let e = engine_from(&text);
    assert_eq!(e.analyzer_index("first"), Some(0));
    assert_eq!(e.analyzer_index("second"), Some(2));
    assert_eq!(e.analyzer_index("pinned"), Some(1));
}

#[test]
fn no_policy_config() {
    let e = engine_from(&(base() + EMPTY_GROUPS));
    assert!(e.analyzers().is_empty());
    let red = Ep("10.1.0.9", Some("vn-red"), None);
    let blue = Ep("10.2.0.9", Some("vn-blue"), None);
    let d = e.evaluate(&flow(vm(4), red, TCP, 1, 80));
    assert_eq!((d.action, d.drop_reason, d.action_names), (PolicyAction::Pass, 0, "pass"));
    let d = e.evaluate(&flow(vm(4), blue, TCP, 1, 80));
    assert_eq!((d.action, d.drop_reason, d.action_names), (PolicyAction::Deny, 0x15, "deny"));
    assert_eq!((d.nw_ace_uuid, d.sg_rule_uuid), (None, None));
    // A group without rules allows nothing.
    let d = e.evaluate(&flow(vm(4), vm(1), TCP, 1, 80));
    assert_eq!(d.drop_reason, FLOW_DR_SG);
    let d = e.evaluate(&flow(vm(1), vm(4), TCP, 1, 80));
    assert_eq!(d.drop_reason, FLOW_DR_OUT_SG);
}

#[test]
fn reversed_flow_context() {
    let f = flow(vm(1), vm(3), TCP, 1000, 80);
    let r = f.reversed();
    assert_eq!((r.src, r.dst, r.sport, r.dport), (f.dst, f.src, 80, 1000));
    assert_eq!((r.src_vn, r.dst_vn, r.src_vif, r.dst_vif), (f.dst_vn, f.src_vn, Some(3), Some(1)));
    assert_eq!(r.reversed(), f);
}

#[test]
fn drop_reason_names() {
    assert_eq!(flow_drop_reason_name(FLOW_DR_POLICY), "Policy");
    assert_eq!(flow_drop_reason_name(FLOW_DR_OUT_POLICY), "OutPolicy");
    assert_eq!(flow_drop_reason_name(FLOW_DR_SG), "SG");
    assert_eq!(flow_drop_reason_name(FLOW_DR_OUT_SG), "OutSG");
    assert_eq!(flow_drop_reason_name(FLOW_DR_REVERSE_OUT_SG), "RevOutSG");
    assert_eq!(flow_drop_reason_name(FLOW_DR_AUDIT_ENTRY), "Audit");
    assert_eq!(flow_drop_reason_name(FLOW_DR_FLOW_LIMIT), "FlowLim");
    assert_eq!(flow_drop_reason_name(FLOW_DR_FWAAS_REVERSE_OUT_POLICY), "RevOutFWAASPolicy");
    assert_eq!(flow_drop_reason_name(0x23), "Unknown");
}

#[test]
fn build_errors_name_the_field() {
    // Configurations that skipped validation still fail cleanly.
    let unvalidated = |extra: &str| -> Config { toml::from_str(&(base() + extra)).unwrap() };
    let rule = |body: &str| {
        format!(
            "[[network_policy]]\nname = \"p\"\nvns = [\"a\"]\n[[network_policy.rule]]\n\
             uuid = \"{}\"\naction = \"pass\"\n{body}\n",
            u(1)
        )
    };
    let err = PolicyEngine::from_config(&unvalidated(&rule("mirror_to = [\"nope\"]"))).unwrap_err();
    assert_eq!(err.field, "network_policy[0].rule[0].mirror_to");
    assert!(err.to_string().contains("analyzer \"nope\" is not defined"), "{err}");

    let an = |n: &str| format!("[[analyzer]]\nname = \"{n}\"\nip = \"10.10.0.20\"\n");
    let three = format!("{}{}{}{}", an("x"), an("y"), an("z"), rule("mirror_to = [\"x\", \"y\", \"z\"]"));
    let err = PolicyEngine::from_config(&unvalidated(&three)).unwrap_err();
    assert_eq!(err.field, "network_policy[0].rule[0].mirror_to");

    let err = PolicyEngine::from_config(&unvalidated(&(an("x") + &an("x")))).unwrap_err();
    assert_eq!(err.to_string(), "analyzer[1].name: duplicate analyzer name \"x\"");

    let err = PolicyEngine::from_config(&unvalidated(&format!("{}index = 255\n", an("x")))).unwrap_err();
    assert_eq!(err.field, "analyzer[0].index");

    let sg = format!(
        "[[security_group]]\nname = \"g\"\n[[security_group.rule]]\nuuid = \"{}\"\n\
         direction = \"ingress\"\nremote = \"sg:other\"\n",
        s(1)
    );
    let err = PolicyEngine::from_config(&unvalidated(&sg)).unwrap_err();
    assert_eq!(err.field, "security_group[0].rule[0].remote");
    // The base vifs name groups that are not defined here.
    let err = PolicyEngine::from_config(&unvalidated("")).unwrap_err();
    assert_eq!(err.to_string(), "vif[1].security_groups: security group \"web\" is not defined");
}

#[test]
fn engine_is_send_and_sync() {
    fn check<T: Send + Sync + 'static>() {}
    check::<PolicyEngine>();
    check::<Decision>();
}

// ---- property tests ----

fn arb_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        // Addresses of the test configuration and around them.
        prop::sample::select(vec![
            "10.1.0.3",
            "10.1.0.4",
            "10.1.0.5",
            "10.1.0.6",
            "10.1.0.200",
            "10.2.0.3",
            "10.2.0.9",
            "8.8.8.8",
            "0.0.0.0",
            "255.255.255.255",
            "fd00:2::3",
            "::",
            "fd00:9::1",
        ])
        .prop_map(|s| s.parse().unwrap()),
        any::<u32>().prop_map(|a| IpAddr::V4(a.into())),
        any::<u128>().prop_map(|a| IpAddr::V6(a.into())),
    ]
}

fn arb_vn() -> impl Strategy<Value = Option<&'static str>> {
    prop::sample::select(vec![
        None,
        Some(""),
        Some("vn-red"),
        Some("vn-blue"),
        Some("vn-green"),
        Some("vn-yellow"),
        Some("vn-unknown"),
    ])
}

fn arb_vif() -> impl Strategy<Value = Option<u16>> {
    prop_oneof![Just(None), (0u16..8).prop_map(Some), any::<u16>().prop_map(Some)]
}

prop_compose! {
    fn arb_flow()(src in arb_ip(), dst in arb_ip(), proto in prop_oneof![
            Just(1u8), Just(6), Just(17), Just(58), any::<u8>()],
        sport in prop_oneof![Just(53u16), Just(80), any::<u16>()],
        dport in prop_oneof![Just(22u16), Just(80), Just(1500), any::<u16>()],
        src_vn in arb_vn(), dst_vn in arb_vn(), src_vif in arb_vif(), dst_vif in arb_vif())
        -> FlowContext<'static> {
        FlowContext { src, dst, proto, sport, dport, src_vn, dst_vn, src_vif, dst_vif }
    }
}

/// What holds for every decision.
fn check_invariants(e: &PolicyEngine, d: &Decision) {
    assert_eq!(d.is_pass(), d.drop_reason == 0, "{d:?}");
    if !d.is_pass() {
        assert!([FLOW_DR_POLICY, FLOW_DR_OUT_POLICY, FLOW_DR_SG, FLOW_DR_OUT_SG].contains(&d.drop_reason), "{d:?}");
        // A deny names at most the decisive rule.
        assert!(d.nw_ace_uuid.is_none() || d.sg_rule_uuid.is_none(), "{d:?}");
    }
    let first = if d.is_pass() { "pass" } else { "deny" };
    assert!(d.action_names.starts_with(first), "{d:?}");
    assert_eq!(d.action_names.contains("|log"), d.log, "{d:?}");
    assert_eq!(d.action_names.ends_with("|mirror"), d.mirror[0].is_some(), "{d:?}");
    assert!(d.mirror[1].is_none() || d.mirror[0].is_some(), "{d:?}");
    assert!(d.mirror[0] != d.mirror[1] || d.mirror[0].is_none(), "{d:?}");
    for k in 0..2 {
        assert_eq!(d.mirror[k].is_some(), d.mirror_names[k].is_some(), "{d:?}");
        if let (Some(i), Some(n)) = (d.mirror[k], &d.mirror_names[k]) {
            assert_eq!(e.analyzer_index(n), Some(i));
            assert!(i < 255);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn evaluate_never_panics(f in arb_flow()) {
        thread_local!(static ENGINE: PolicyEngine = engine());
        ENGINE.with(|e| {
            let d = e.evaluate(&f);
            check_invariants(e, &d);
            // Deterministic.
            assert_eq!(e.evaluate(&f), d);
        });
    }
}

// Generated configurations: random rules from small vocabularies. Whatever validates must
// build, and evaluating arbitrary flows against it must not panic.

const VN_REFS: &[&str] = &["vn:vn-red", "vn:vn-blue", "vn:vn-elsewhere"];
const SG_REFS: &[&str] = &["sg:web", "sg:locked", "sg:v6only", "sg:nowhere"];

fn arb_addr(names: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just("any".to_string()),
        3 => prop::sample::select(vec!["10.0.0.0/8", "10.1.0.0/16", "10.1.0.4/32", "0.0.0.0/0"])
            .prop_map(String::from),
        1 => prop::sample::select(vec!["fd00::/8", "::/0"]).prop_map(String::from),
        3 => prop::sample::select(names).prop_map(String::from),
    ]
}

fn arb_proto() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        4 => prop::sample::select(vec!["\"any\"", "\"tcp\"", "\"udp\"", "132"]),
        1 => prop::sample::select(vec!["\"icmp\"", "\"icmp6\"", "0", "255"]),
    ]
}

fn arb_ports() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        6 => Just("\"any\""),
        3 => prop::sample::select(vec!["\"80\"", "\"1000-2000\"", "0", "65535"]),
        // Invalid: validation rejects the configuration.
        1 => Just("\"9-3\""),
    ]
}

prop_compose! {
    fn arb_net_rule()(src in arb_addr(VN_REFS), dst in arb_addr(VN_REFS), proto in arb_proto(),
        sp in arb_ports(), dp in arb_ports(), dir in prop::sample::select(vec!["<>", ">"]),
        action in prop::sample::select(vec!["pass", "deny"]), log in any::<bool>(),
        mirror in prop::sample::subsequence(vec!["an-a", "an-b", "an-c"], 0..=2))
        -> String {
        let mirror: Vec<String> = mirror.iter().map(|m| format!("\"{m}\"")).collect();
        format!("src = \"{src}\"\ndst = \"{dst}\"\nprotocol = {proto}\nsrc_ports = {sp}\n\
                 dst_ports = {dp}\ndirection = \"{dir}\"\naction = \"{action}\"\nlog = {log}\n\
                 mirror_to = [{}]\n", mirror.join(", "))
    }
}

prop_compose! {
    fn arb_sg_rule()(dir in prop::sample::select(vec!["ingress", "egress"]),
        remote in arb_addr(SG_REFS), proto in arb_proto(), ports in arb_ports(),
        et in prop::sample::select(vec!["", "ethertype = \"IPv4\"\n", "ethertype = \"IPv6\"\n"]))
        -> String {
        format!("direction = \"{dir}\"\nremote = \"{remote}\"\nprotocol = {proto}\nports = {ports}\n{et}")
    }
}

fn generated_config(policies: &[(Vec<&str>, Vec<String>)], sgs: &[(&str, Vec<String>)]) -> String {
    let mut t = base();
    for (name, idx) in [("an-a", ""), ("an-b", "index = 7\n"), ("an-c", "")] {
        t += &format!("[[analyzer]]\nname = \"{name}\"\nip = \"10.10.0.20\"\n{idx}");
    }
    let mut n = 0;
    for (i, (vns, rules)) in policies.iter().enumerate() {
        let vns: Vec<String> = vns.iter().map(|v| format!("\"{v}\"")).collect();
        t += &format!("[[network_policy]]\nname = \"p{i}\"\nvns = [{}]\n", vns.join(", "));
        for r in rules {
            n += 1;
            t += &format!("[[network_policy.rule]]\nuuid = \"{}\"\n{r}", u(n));
        }
    }
    for (name, rules) in sgs {
        t += &format!("[[security_group]]\nname = \"{name}\"\n");
        for r in rules {
            n += 1;
            t += &format!("[[security_group.rule]]\nuuid = \"{}\"\n{r}", s(n));
        }
    }
    t
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    #[test]
    fn generated_configs_build_and_evaluate(
        policies in prop::collection::vec(
            (prop::sample::subsequence(vec!["vn-red", "vn-blue", "vn-green"], 0..=3),
             prop::collection::vec(arb_net_rule(), 0..4)), 0..3),
        web in prop::collection::vec(arb_sg_rule(), 0..3),
        locked in prop::collection::vec(arb_sg_rule(), 0..2),
        v6only in prop::collection::vec(arb_sg_rule(), 0..2),
        flows in prop::collection::vec(arb_flow(), 1..40),
    ) {
        let text = generated_config(
            &policies,
            &[("web", web), ("locked", locked), ("v6only", v6only)],
        );
        let Ok(cfg) = parse(&text, "gen.toml") else { return Ok(()) };
        let e = PolicyEngine::from_config(&cfg).unwrap_or_else(|err| panic!("{err}\n{text}"));
        for f in &flows {
            let d = e.evaluate(f);
            check_invariants(&e, &d);
            // Without any network policy rule mentioning it, inter-VN traffic is denied.
            let (a, b) = (f.src_vn.filter(|v| !v.is_empty()), f.dst_vn.filter(|v| !v.is_empty()));
            if a.is_some() && b.is_some() && a != b && policies.is_empty() {
                prop_assert_eq!(d.drop_reason, FLOW_DR_POLICY);
            }
        }
    }
}
