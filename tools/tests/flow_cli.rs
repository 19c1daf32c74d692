//! Runs the built `flow` binary against flow tables created in a temp directory through
//! the `flow-table` writer API (the same calls the data plane and the agent make).

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use flow_table::*;
use serde_json::{json, Value};

const FLOW: &str = env!("CARGO_BIN_EXE_flow");

/// Indices of the flows of [`build`]: one bucket of 8 main slots, so they are taken in
/// creation order, then the overflow area (8.., chained at the bucket's last slot, 7).
const TCP: u32 = 0;
const TCP_REV: u32 = 1;
const DROPPED: u32 = 2;
const V6: u32 = 3;
const MIRRORED: u32 = 4;
const HELD: u32 = 5;
const EVICTED: u32 = 6;
const UDP: u32 = 7;
const OFLOW1: u32 = 8;
const OFLOW2: u32 = 9;

fn v4(vrf: u32, proto: u8, s: [u8; 4], sp: u16, d: [u8; 4], dp: u16) -> FlowKey {
    FlowKey::v4(vrf, proto, Ipv4Addr::from(s), Ipv4Addr::from(d), sp, dp)
}

fn gen(t: &FlowTable, idx: u32) -> Gen {
    t.snapshot(idx).unwrap().unwrap().gen
}

/// A data-plane miss (HOLD + NEW_FLOW); asserts the index it lands on.
fn hold(t: &FlowTable, k: &FlowKey, expect: u32) -> u32 {
    let l = t.lookup_or_hold(k, k.hash(), 1000).unwrap();
    assert_eq!(l, Lookup::Created(expect), "{k:?}");
    expect
}

/// The agent's verdict: action, RPF nexthop, underlay source port; the trap has cleared
/// NEW_FLOW.
fn program(t: &FlowTable, idx: u32, mut u: FlowUpdate, nh: u32, sport: u16) {
    t.update_dp_flags(idx, 0, flags::NEW_FLOW).unwrap();
    u.src_nh = Some(nh);
    u.underlay_sport = Some(sport);
    t.set_action(idx, gen(t, idx), &u).unwrap();
}

fn packets(t: &FlowTable, idx: u32, n: u32, bytes: u32) {
    for i in 0..n {
        t.account(idx, bytes, 2000 + u64::from(i));
    }
}

fn cfg(main: u32, oflow: u32) -> FlowTableConfig {
    FlowTableConfig { main_entries: main, overflow_entries: oflow, max_lcores: 2 }
}

/// The test table: a TCP flow and its reverse, a dropped flow, an IPv6 flow, a mirrored
/// ICMP flow, a flow in HOLD, an evicted flow, and three more UDP flows, two of them in
/// the overflow area.
fn build(dir: &Path) -> FlowTable {
    let t = FlowTable::create(&dir.join(FLOW_FILE_NAME), &cfg(8, 8)).unwrap();
    let fwd = Action::Forward;

    hold(&t, &v4(1, 6, [192, 168, 1, 3], 40000, [192, 168, 1, 4], 80), TCP);
    program(&t, TCP, FlowUpdate::new(fwd), 12, 50001);
    t.set_tcp_flags(TCP, tcp_flags::SYN | tcp_flags::ESTABLISHED);
    packets(&t, TCP, 3, 100);
    assert_eq!(t.create_reverse(TCP, 1000).unwrap(), TCP_REV);
    program(&t, TCP_REV, FlowUpdate::new(fwd), 13, 50002);
    t.set_tcp_flags(TCP_REV, tcp_flags::SYN_R | tcp_flags::ESTABLISHED_R);
    packets(&t, TCP_REV, 2, 60);

    hold(&t, &v4(1, 17, [192, 168, 1, 4], 5000, [192, 168, 9, 9], 53), DROPPED);
    program(&t, DROPPED, FlowUpdate::drop(FLOW_DR_POLICY), 13, 50003);
    packets(&t, DROPPED, 1, 80);

    let a: Ipv6Addr = "fd00:1::3".parse().unwrap();
    let b: Ipv6Addr = "fd00:1::4".parse().unwrap();
    hold(&t, &FlowKey::v6(1, 17, a, b, 6000, 53), V6);
    program(&t, V6, FlowUpdate::new(fwd), 12, 50004);
    packets(&t, V6, 1, 120);

    hold(&t, &v4(2, 1, [10, 0, 0, 3], 0x1234, [10, 0, 0, 4], 0), MIRRORED);
    let mut u = FlowUpdate::new(fwd);
    u.set_flags = flags::MIRROR;
    u.mirror = Some(1);
    u.sec_mirror = Some(2);
    program(&t, MIRRORED, u, 14, 50005);
    packets(&t, MIRRORED, 2, 98);
    t.account_mirror(MIRRORED, false, 162);
    t.account_mirror(MIRRORED, false, 162);
    t.account_mirror(MIRRORED, true, 98);
    t.account_mirror_lost(MIRRORED, true);

    hold(&t, &v4(1, 17, [192, 168, 1, 3], 6100, [192, 168, 1, 4], 6100), HELD);

    hold(&t, &v4(1, 6, [192, 168, 1, 3], 40001, [192, 168, 1, 4], 80), EVICTED);
    program(&t, EVICTED, FlowUpdate::new(fwd), 12, 50006);
    t.evict(EVICTED, gen(&t, EVICTED)).unwrap();

    for (i, idx) in [UDP, OFLOW1, OFLOW2].into_iter().enumerate() {
        let p = 7000 + i as u16;
        hold(&t, &v4(1, 17, [192, 168, 1, 3], p, [192, 168, 1, 4], p), idx);
        program(&t, idx, FlowUpdate::new(fwd), 12, 50007 + i as u16);
    }
    t
}

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(FLOW).args(args).arg("--run-dir").arg(dir).env_remove("VROUTER_RUN_DIR").output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// Runs and expects success with an empty stderr; returns stdout.
fn ok(dir: &Path, args: &[&str]) -> String {
    let o = run(dir, args);
    assert!(o.status.success(), "flow {args:?}: {:?}\n{}", o.status, stderr(&o));
    assert_eq!(stderr(&o), "", "flow {args:?}");
    stdout(&o)
}

/// Expects exit status 1, nothing on stdout, `msg` on stderr.
fn fails(dir: &Path, args: &[&str], msg: &str) {
    let o = run(dir, args);
    assert_eq!(o.status.code(), Some(1), "flow {args:?}: {}", stderr(&o));
    assert_eq!(stdout(&o), "", "flow {args:?}");
    assert_eq!(stderr(&o), format!("{msg}\n"), "flow {args:?}");
}

fn json(dir: &Path, args: &[&str]) -> Value {
    serde_json::from_str(&ok(dir, args)).unwrap()
}

fn indices(v: &Value) -> Vec<u64> {
    v.as_array().unwrap().iter().map(|f| f["index"].as_u64().unwrap()).collect()
}

const LEGEND: &str = "\
Action:F=Forward, D=Drop N=NAT(S=SNAT, D=DNAT, Ps=SPAT, Pd=DPAT, L=Link Local Port)
 Other:K(nh)=Key_Nexthop, S(nh)=RPF_Nexthop
 Flags:E=Evicted, Ec=Evict Candidate, N=New Flow, M=Modified Dm=Delete Marked
TCP(r=reverse):S=SYN, F=FIN, R=RST, C=HalfClose, E=Established, D=Dead

";

fn columns() -> String {
    format!("    Index                Source:Port/Destination:Port                      Proto(V)\n{}\n", "-".repeat(83))
}

/// Line 1 of a listed flow: index, `<=>rflow`, source padded to 46, proto (vrf).
fn line1(idx: u32, rflow: Option<u32>, src: &str, proto: u8, vrf: u32) -> String {
    let r = rflow.map_or_else(|| " ".repeat(12), |r| format!("<=>{r:<9}"));
    format!("{idx:9}{r}    {src:<46}    {proto:3} ({vrf})\n")
}

fn line2(dst: &str) -> String {
    format!("{:25}{dst}\n", "")
}

fn expected_list(dir: &Path, t: &FlowTable, show_evicted: bool) -> String {
    let h = FlowTableReader::open_run_dir(dir).unwrap().header();
    let held_sport = t.snapshot(HELD).unwrap().unwrap().underlay_sport;
    let mut s = format!(
        "Flow table(size {}, entries 16)\n\n\
         Entries: Created 9 Added 1 Deleted 1 Changed 0Processed 9 Used Overflow entries 2\n\
         (Created Flows/CPU: 0 0 9)\n\n{LEGEND}{}",
        h.layout_size,
        columns()
    );
    let udp = |idx: u32, p: u16, sport: u16| {
        format!(
            "{}{}(Gen: 1, K(nh):1, Action:F, Flags:, S(nh):12,  Stats:0/0,  SPort {sport})",
            line1(idx, None, &format!("192.168.1.3:{p}"), 17, 1),
            line2(&format!("192.168.1.4:{p} "))
        )
    };
    s += &line1(TCP, Some(TCP_REV), "192.168.1.3:40000", 6, 1);
    s += &line2("192.168.1.4:80   ");
    s += "(Gen: 1, K(nh):1, Action:F, Flags:, TCP:SE, S(nh):12,  Stats:3/300,  SPort 50001)\n\n";
    s += &line1(TCP_REV, Some(TCP), "192.168.1.4:80   ", 6, 1);
    s += &line2("192.168.1.3:40000");
    s += "(Gen: 1, K(nh):1, Action:F, Flags:, TCP:SrEr, S(nh):13,  Stats:2/120, \n SPort 50002)\n\n";
    s += &line1(DROPPED, None, "192.168.1.4:5000 ", 17, 1);
    s += &line2("192.168.9.9:53   ");
    s += "(Gen: 1, K(nh):1, Action:D(Policy), Flags:, S(nh):13,  Stats:1/80,  SPort 50003)\n\n";
    s += &line1(V6, None, "fd00:1::3:6000     ", 17, 1);
    s += &line2("fd00:1::4:53       ");
    s += "(Gen: 1, K(nh):1, Action:F, Flags:, S(nh):12,  Stats:1/120,  SPort 50004)\n\n";
    s += &line1(MIRRORED, None, "10.0.0.3:4660 ", 1, 2);
    s += &line2("10.0.0.4:0    ");
    s += "(Gen: 1, K(nh):2, Action:F, Flags:, S(nh):14,  Stats:2/196,  Mirror Index : 1, 2,\n \
          MStats:2/324 (1), SMStats:1/98 (2), SPort 50005)\n\n";
    s += &line1(HELD, None, "192.168.1.3:6100 ", 17, 1);
    s += &line2("192.168.1.4:6100 ");
    s += &format!("(Gen: 1, K(nh):1, Action:H, Flags:N, S(nh):0,  Stats:0/0,  SPort {held_sport})\n\n");
    if show_evicted {
        s += &line1(EVICTED, None, "192.168.1.3:40001", 6, 1);
        s += &line2("192.168.1.4:80   ");
        s += "(Gen: 1, K(nh):1, Action:F, Flags:E, TCP:, S(nh):12,  Stats:0/0,  SPort 50006)\n\n";
    }
    s += &udp(UDP, 7000, 50007);
    s += "\n     Oflow entries:\n\t 9 8\n\n";
    s += &udp(OFLOW1, 7001, 50008);
    s += "\n\n";
    s += &udp(OFLOW2, 7002, 50009);
    s += "\n     Oflow entries:\n\t 8\n\n";
    s
}

#[test]
fn list_text() {
    let dir = tempfile::tempdir().unwrap();
    let t = build(dir.path());
    let out = ok(dir.path(), &["-l"]);
    let expected = expected_list(dir.path(), &t, false);
    for (i, (a, b)) in out.lines().zip(expected.lines()).enumerate() {
        assert_eq!(a, b, "line {}", i + 1);
    }
    assert_eq!(out, expected);
    assert_eq!(ok(dir.path(), &["--list"]), out);
    assert_eq!(ok(dir.path(), &["-l", "--show-evicted"]), expected_list(dir.path(), &t, true));
}

#[test]
fn empty_slot_with_an_overflow_chain() {
    let dir = tempfile::tempdir().unwrap();
    let t = FlowTable::create(&dir.path().join(FLOW_FILE_NAME), &cfg(8, 8)).unwrap();
    for i in 0..9u16 {
        hold(&t, &v4(1, 17, [10, 0, 0, 1], 100 + i, [10, 0, 0, 2], 53), u32::from(i));
    }
    // Free slot 7 (no lcore is online, so the reclaim is immediate): the bucket's chain
    // now hangs off an empty slot, which tf prints as the index alone.
    t.mark_delete(7, gen(&t, 7)).unwrap();
    assert_eq!(t.reclaim().freed, 1);
    let out = ok(dir.path(), &["-l"]);
    assert!(out.contains("\n     7\n     Oflow entries:\n\t 8\n\n"), "{out}");
    // Not in a --match listing.
    let out = ok(dir.path(), &["--match", "10.0.0.1"]);
    assert!(!out.contains("Oflow"), "{out}");
    assert_eq!(indices(&json(dir.path(), &["-l", "--json"])), [0, 1, 2, 3, 4, 5, 6, 8]);
}

#[test]
fn get_text() {
    let dir = tempfile::tempdir().unwrap();
    let _t = build(dir.path());
    assert_eq!(
        ok(dir.path(), &["--get", "0"]),
        "\
Flow Index:                   0
Flow Generation ID:           1
Reverse Flow Index:           1
VRF:                          1
Flow Source:                  [192.168.1.3]:40000
Flow Destination:             [192.168.1.4]:80   
Flow Protocol:                TCP
Flow Action:                  FORWARD
Expected Source:              NextHop(Index): 12
Source Information:           VRF: 1
                              Layer 3 Route Information
                              Route information unavailable: control socket unreachable (vRouter not running)
Destination Information:      VRF: 1
                              Layer 3 Route Information
                              Route information unavailable: control socket unreachable (vRouter not running)

Flow Flags:                   
TCP FLAGS:                    SYN, ESTABLISHED, 
UDP Source Port:              50001

Flow Statistics:              3/300
"
    );
    let out = ok(dir.path(), &["-g", "2"]);
    assert!(out.contains(&format!("\nFlow Action:                  DROP:{:30}Policy\n", "")), "{out}");
    assert!(out.contains("\nReverse Flow Index:           -1\n"));
    assert!(out.contains("\nFlow Protocol:                UDP\n"));
    let out = ok(dir.path(), &["--get", "4"]);
    assert!(
        out.ends_with(
            "\nFlow Flags:                   MIRROR \n\
             UDP Source Port:              50005\n\
             \n\
             Mirror Index:                 1, 2\n\
             \x20                             Mirror Statistics(Index, Bytes, Packets): 1, 324, 2\n\
             \x20                             Mirror Statistics(Index, Bytes, Packets): 2, 98, 1\n\
             \x20                             Mirror Reconciliation(Lost, Sec Lost, Before Rule, Held Dropped): 0, 1, 0, 0\n\
             \n\
             Flow Statistics:              2/196\n"
        ),
        "{out}"
    );
    let out = ok(dir.path(), &["--get", "3"]);
    assert!(out.contains("\nFlow Source:                  [fd00:1::3]:6000 \n"), "{out}");
    let out = ok(dir.path(), &["--get", "5"]);
    assert!(out.contains("\nFlow Action:                  HOLD\n"));
    assert!(out.contains("\nFlow Flags:                   NEW \n"));
    let out = ok(dir.path(), &["--get", "6", "--show-evicted"]);
    assert!(out.contains("\nFlow Flags:                   EVICTED \n"), "{out}");
}

#[test]
fn get_errors() {
    let dir = tempfile::tempdir().unwrap();
    let _t = build(dir.path());
    fails(dir.path(), &["--get", "16"], "Invalid flow index value 16");
    fails(dir.path(), &["--get", "99999999999"], "Invalid flow index value 99999999999");
    fails(dir.path(), &["--get", "12"], "Flow index 12 is not active");
    fails(dir.path(), &["--get", "6"], "Flow at index 6 is EVICTED. Use --show-evicted");
    fails(dir.path(), &["--get", "6", "--json"], "Flow at index 6 is EVICTED. Use --show-evicted");
}

#[test]
fn get_with_system_drops_from_the_stats_region() {
    use vrouter_abi::drop_reason::DropReason;
    use vrouter_abi::stats::StatsRegion;
    let dir = tempfile::tempdir().unwrap();
    let _t = build(dir.path());
    let region = StatsRegion::create(dir.path(), 4, 1, &[], 0).unwrap();
    let l0 = region.lcore(0).unwrap();
    l0.drop(None, DropReason::InvalidSource, 2);
    l0.drop(None, DropReason::FlowActionDrop, 3);
    l0.drop(None, DropReason::FlowTableFull, 1);
    l0.drop(None, DropReason::TtlExceeded, 4);
    let out = ok(dir.path(), &["--get", "2"]);
    assert!(
        out.ends_with(
            "Flow Statistics:              1/80\n\
             System Wide Packet Drops:     10\n\
             \x20                             Reverse Path Failures: 2\n\
             \x20                             Flow Block Drops: 4\n"
        ),
        "{out}"
    );
}

#[test]
fn json_flows() {
    let dir = tempfile::tempdir().unwrap();
    let _t = build(dir.path());
    let v = json(dir.path(), &["-l", "--json"]);
    assert_eq!(indices(&v), [0, 1, 2, 3, 4, 5, 7, 8, 9]);
    assert_eq!(indices(&json(dir.path(), &["-l", "-j", "--show-evicted"])), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    let m = &v[4];
    assert_eq!(
        *m,
        json!({
            "index": 4, "gen": 1, "rflow": null, "vrf": 2, "family": "inet", "proto": 1,
            "src": "10.0.0.3", "sport": 0x1234, "dst": "10.0.0.4", "dport": 0,
            "action": "forward", "drop_reason": null,
            "flags": ["active", "mirror"], "tcp_flags": [],
            "src_nh": 14, "underlay_sport": 50005, "bytes": 196, "packets": 2,
            "mirror": 1, "sec_mirror": 2, "mirror_bytes": 324, "mirror_packets": 2,
            "sec_mirror_bytes": 98, "sec_mirror_packets": 1,
            "mirror_lost_packets": 0, "sec_mirror_lost_packets": 1,
            "before_mirror_packets": 0, "held_dropped_packets": 0,
            "setup_time": 1000, "last_seen": 2001, "overflow_next": null
        })
    );
    assert_eq!(v[0]["rflow"], 1);
    assert_eq!(v[0]["flags"], json!(["active", "rflow_valid"]));
    assert_eq!(v[0]["tcp_flags"], json!(["syn", "established"]));
    assert_eq!(v[1]["tcp_flags"], json!(["syn_r", "established_r"]));
    assert_eq!((&v[2]["action"], &v[2]["drop_reason"]), (&json!("drop"), &json!("Policy")));
    assert_eq!(
        (&v[3]["family"], &v[3]["src"], &v[3]["dst"]),
        (&json!("inet6"), &json!("fd00:1::3"), &json!("fd00:1::4"))
    );
    assert_eq!(v[5]["action"], "hold");
    assert_eq!(v[5]["flags"], json!(["active", "new_flow", "hold"]));
    assert_eq!((&v[6]["index"], &v[6]["overflow_next"]), (&json!(UDP), &json!(OFLOW2)));
    assert_eq!(v[8]["overflow_next"], OFLOW1);

    let one = json(dir.path(), &["--get", "2", "--json", "--pretty"]);
    assert_eq!(one.as_array().unwrap().len(), 1);
    // --get adds the Source/Destination Information blocks (no control socket here: the
    // route information is unavailable).
    let mut got = one[0].clone();
    let o = got.as_object_mut().unwrap();
    assert_eq!(o.remove("source_information").unwrap()["vrf"], 1);
    assert!(o.remove("destination_information").unwrap()["layer3"].is_null());
    assert_eq!(o.remove("route_information_unavailable").unwrap(), "control socket unreachable (vRouter not running)");
    assert_eq!(got, v[2]);
}

#[test]
fn match_filter() {
    let dir = tempfile::tempdir().unwrap();
    let t = build(dir.path());
    let out = ok(dir.path(), &["-l", "--match", "192.168.1.4:80"]);
    // The header, the banner, then the TCP flow (destination) and its reverse (source);
    // not the evicted one.
    let full = expected_list(dir.path(), &t, false);
    let cols = full.find(&columns()).unwrap();
    let start = full.find(&line1(TCP, Some(TCP_REV), "192.168.1.3:40000", 6, 1)).unwrap();
    let end = full.find(&line1(DROPPED, None, "192.168.1.4:5000 ", 17, 1)).unwrap();
    let expected =
        format!("{}Listing flows matching ([192.168.1.4]:80)\n\n{}{}", &full[..cols], columns(), &full[start..end]);
    assert_eq!(out, expected);
    assert_eq!(ok(dir.path(), &["--match", "192.168.1.4:80"]), out); // --match implies -l

    let m = |s: &str| indices(&json(dir.path(), &["--match", s, "--json"]));
    assert_eq!(m("192.168.1.4:80"), [TCP, TCP_REV].map(u64::from));
    assert_eq!(m("192.168.1.4:80 & vrf 1"), [0, 1]);
    assert_eq!(m("192.168.1.4:80 & proto udp"), Vec::<u64>::new());
    assert_eq!(m("192.168.1.3:40000,192.168.1.4:80"), [0, 1]);
    assert_eq!(m("192.168.1.4:80,192.168.1.3:40000 & proto tcp"), [0, 1]);
    assert_eq!(m("192.168.1.3,192.168.9.9"), Vec::<u64>::new());
    assert_eq!(m("192.168.1.4,192.168.9.9"), [2]);
    assert_eq!(m("[fd00:1::4]:53"), [3]);
    assert_eq!(m("fd00:1::3"), [3]);
    assert_eq!(m("proto icmp"), [4]);
    assert_eq!(m("vrf 2"), [4]);
    assert_eq!(m("*:53"), [2, 3]);
    assert_eq!(m("*:53 & proto udp & vrf 1"), [2, 3]);
    assert_eq!(m("192.168.1.3"), [0, 1, 5, 7, 8, 9]);
    assert_eq!(indices(&json(dir.path(), &["--match", "192.168.1.3:40001", "--json", "--show-evicted"])), [6]);
    let out = ok(dir.path(), &["--match", "[fd00:1::4]:53 & proto udp & vrf 1"]);
    assert!(out.contains("Listing flows matching ([fd00:1::4]:53, Protocol UDP, VRF 1)\n\n"), "{out}");
    assert!(out.ends_with("SPort 50004)\n\n"));

    // A bad match string is a usage error.
    let o = run(dir.path(), &["--match", "1.1.1.1,[fd00::1]:2"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("IPv4 and IPv6 endpoints cannot be matched together"), "{}", stderr(&o));
    let o = run(dir.path(), &["--match", "proto gre"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("Unsupported protocol \"gre\""), "{}", stderr(&o));
}

#[test]
fn stats_summary() {
    let dir = tempfile::tempdir().unwrap();
    let _t = build(dir.path());
    let out = ok(dir.path(), &["-s", "--count", "2", "--interval-ms", "10"]);
    assert!(!out.contains('\x1b'), "no screen clearing into a pipe");
    let screens: Vec<&str> = out.split("\n\n2").collect();
    assert_eq!(screens.len(), 2, "{out}");
    let first: Vec<&str> = screens[0].lines().collect();
    assert!(first[0].len() == "2024-01-01 00:00:00 +0000".len(), "{}", first[0]);
    assert_eq!(
        &first[1..],
        [
            "Flow Statistics",
            "---------------",
            "    Total  Entries  --- Total =       9, new =       9 ",
            "    Active Entries  --- Total =       8, new =       8 ",
            "    Hold   Entries  --- Total =       1, new =       1 ",
            "    Fwd flow Entries  - Total =       7",
            "    drop flow Entries - Total =       1",
            "    NAT flow Entries  - Total =       0",
            "",
            "    Rate of change of Active Entries",
            "    --------------------------------",
            "        current rate      =        0",
            "        Avg setup rate    =        0",
            "        Avg teardown rate =        0",
            "    Rate of change of Flow Entries",
            "    ------------------------------",
            "        current rate      =        0",
        ]
    );
    assert!(screens[1].contains("    Total  Entries  --- Total =       9, new =       0 \n"));

    let out = ok(dir.path(), &["-s", "--json", "--count", "2", "--interval-ms", "10"]);
    let samples: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(samples.len(), 2);
    for (k, v) in [("total", 9), ("active", 8), ("hold", 1), ("fwd", 7), ("drop", 1), ("nat", 0)] {
        assert_eq!(samples[0][k], v, "{k}");
    }
    assert_eq!((&samples[0]["total_new"], &samples[1]["total_new"]), (&json!(9), &json!(0)));
    assert_eq!(samples[1]["active_rate"], 0);
}

#[test]
fn rate_lines_only_when_something_happens() {
    let dir = tempfile::tempdir().unwrap();
    let t = build(dir.path());
    // A flow in HOLD: every sample prints (tf: Hold != 0).
    let out = ok(dir.path(), &["-r", "--count", "2", "--interval-ms", "10"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    for l in lines {
        let (stamp, rest) = l.split_once(":  ").unwrap();
        assert_eq!(stamp.len(), "2024-01-01 00:00:00.000".len(), "{l}");
        assert_eq!(
            rest,
            "Entries =       10 Rate =      0 (Fwd =        0 Rev =        0 Del =        0) \
             Hold =        1 Total Hold Entries        1"
        );
    }
    // Nothing in HOLD and nothing changing: silence.
    program(&t, HELD, FlowUpdate::new(Action::Forward), 12, 1);
    assert_eq!(ok(dir.path(), &["-r", "--count", "3", "--interval-ms", "10"]), "");
}

#[test]
fn rate_counts_operations_between_samples() {
    let dir = tempfile::tempdir().unwrap();
    let t = build(dir.path());
    let mut child = Command::new(FLOW)
        .args(["-r", "--json", "--count", "4", "--interval-ms", "100", "--run-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut rd = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    rd.read_line(&mut first).unwrap();
    let first: Value = serde_json::from_str(&first).unwrap();
    assert_eq!((&first["hold"], &first["fwd"], &first["entries"]), (&json!(1), &json!(0), &json!(10)));
    // After the first sample (the tool has its baseline): HOLD -> forward, an
    // agent-created flow, a deletion.
    program(&t, HELD, FlowUpdate::new(Action::Forward), 12, 1);
    t.create_reverse(DROPPED, 3000).unwrap();
    t.mark_delete(UDP, gen(&t, UDP)).unwrap();
    let rest: Vec<Value> = rd.lines().map(|l| serde_json::from_str(&l.unwrap()).unwrap()).collect();
    assert!(child.wait().unwrap().success());
    assert_eq!(rest.len(), 3);
    let sum = |k: &str| rest.iter().map(|s| s[k].as_u64().unwrap()).sum::<u64>();
    assert_eq!((sum("fwd"), sum("rev"), sum("del")), (1, 1, 1));
    assert_eq!(rest[2]["hold"], 1); // the reverse flow is created in HOLD
    assert!(rest.iter().any(|s| s["rate"].as_i64().unwrap() > 0));
}

/// Not a test on its own: run by [`stale_table_warns_but_prints`] in a child process,
/// which creates a table and exits (so its creator is gone).
#[test]
fn child_creates_table() {
    if let Some(dir) = std::env::var_os("FLOW_CLI_CHILD_DIR") {
        build(Path::new(&dir));
    }
}

#[test]
fn stale_table_warns_but_prints() {
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_creates_table", "--test-threads", "1"])
        .env("FLOW_CLI_CHILD_DIR", dir.path())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    assert!(child.wait_with_output().unwrap().status.success());
    let o = run(dir.path(), &["-l"]);
    assert!(o.status.success());
    assert_eq!(stderr(&o), format!("warning: vRouter (pid {pid}) is not running; flows are from its last run\n"));
    assert!(stdout(&o).contains("SPort 50001)"));
    let o = run(dir.path(), &["--get", "0", "--json"]);
    assert!(o.status.success());
    assert!(stderr(&o).starts_with("warning: vRouter (pid "));
}

#[test]
fn not_running_and_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let msg = format!("vRouter is not running (no flow table at {})", dir.path().join("flow").display());
    for args in [&["-l"][..], &["--get", "0"], &["-r", "--count", "1"], &["-s", "--json"], &["--match", "vrf 1"]] {
        fails(dir.path(), args, &msg);
    }
    std::fs::write(dir.path().join("flow"), vec![0u8; 4096]).unwrap();
    let o = run(dir.path(), &["-l"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("bad magic 0x0000000000000000"), "{}", stderr(&o));
}

#[test]
fn run_dir_from_environment() {
    let dir = tempfile::tempdir().unwrap();
    let _t = build(dir.path());
    let o = Command::new(FLOW).arg("-l").env("VROUTER_RUN_DIR", dir.path()).output().unwrap();
    assert!(o.status.success());
    assert!(stdout(&o).starts_with("Flow table(size "));
}

#[test]
fn usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let _t = build(dir.path());
    for args in [
        &[][..],
        &["-l", "--get", "1"],
        &["-r", "-s"],
        &["-l", "-r"],
        &["--get", "1", "--match", "vrf 1"],
        &["-s", "--match", "vrf 1"],
        &["-l", "--count", "2"],
        &["-r", "--interval-ms", "0"],
        &["-l", "--pretty"],
        &["--get", "-1"],
    ] {
        let o = run(dir.path(), args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert_eq!(stdout(&o), "", "{args:?}");
    }
    let o = run(dir.path(), &["--help"]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("--match \"10.204.217.10:56910 & vrf 0 & proto tcp\""));
}

#[test]
fn broken_pipe_exits_quietly() {
    // Enough flows that the listing exceeds any pipe buffer: the writer must hit EPIPE.
    let dir = tempfile::tempdir().unwrap();
    let t = FlowTable::create(&dir.path().join(FLOW_FILE_NAME), &cfg(4096, 0)).unwrap();
    for i in 0..2000u32 {
        let k = v4(1, 17, [10, 1, (i >> 8) as u8, i as u8], 1000, [10, 2, 0, 1], 53);
        t.lookup_or_hold(&k, k.hash(), 1).unwrap();
    }
    for args in [&["-l"][..], &["-l", "--json", "--pretty"]] {
        let mut child = Command::new(FLOW)
            .args(args)
            .arg("--run-dir")
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
        assert!(first.starts_with(if args.len() == 1 { "Flow table(size " } else { "[" }), "{first}");
        // The read end is closed here (BufReader dropped), like `head -1` exiting.
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{args:?}: {:?}", o.status);
        assert_eq!(stderr(&o), "", "{args:?}");
    }
    // And through a shell pipeline, as an operator would run it.
    let o = Command::new("bash")
        .arg("-c")
        .arg(format!("set -o pipefail; '{FLOW}' -l --run-dir '{}' | head -1", dir.path().display()))
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("Flow table(size "));
    assert_eq!(String::from_utf8_lossy(&o.stderr), "");
}
