//! The `mirror` tool against a mirror region written here (no vRouter needed for reading),
//! and its errors.

use serde_json::Value;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Output};
use vrouter_abi::drop_reason::DropReason;
use vrouter_abi::mirror::{CopyKind, MirrorRegion, SlotEntry};

const MIRROR: &str = env!("CARGO_BIN_EXE_mirror");

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(MIRROR).args(args).arg("--run-dir").arg(dir).env_remove("VROUTER_RUN_DIR").output().unwrap()
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let o = run(dir, args);
    assert!(o.status.success(), "mirror {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

fn entry(name: &str, ip: [u8; 4], vni: Option<u32>) -> SlotEntry {
    SlotEntry {
        analyzer_name: name.into(),
        analyzer_ip: Ipv4Addr::from(ip),
        udp_port: 8099,
        vni,
        nh_mode: vrouter_abi::mirror::NhMode::Dynamic,
        juniper_header: vni.is_none(),
        flags: if vni.is_none() { 1 } else { 0 },
        nh_vif: Some(0),
        hdr: [0; 64],
        hdr_len: if vni.is_none() { 42 } else { 50 },
        ip_csum_base: 0,
        created_ms: 0,
    }
}

/// Two entries; lcore 0 sent 3 copies to index 1 and failed one for index 7 (then empty).
fn setup(dir: &Path) -> MirrorRegion {
    let r = MirrorRegion::create(dir, 2, Ipv4Addr::new(10, 10, 0, 1)).unwrap();
    r.write_slot(1, &entry("an-a", [10, 20, 0, 5], None));
    r.write_slot(7, &entry("an-b", [10, 20, 0, 6], Some(50)));
    let c0 = r.lcore(0).unwrap();
    let c1 = r.lcore(1).unwrap();
    c0.sent(1, CopyKind::Flow, 100);
    c0.sent(1, CopyKind::Flow, 120);
    c1.sent(1, CopyKind::Interface, 80);
    c1.lost(7, CopyKind::Flow, DropReason::MirrorNoNh);
    r
}

#[test]
fn dump_get_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let _r = setup(dir.path());
    let dump = ok(dir.path(), &["--dump"]);
    let lines: Vec<Vec<&str>> = dump.lines().skip(6).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines.len(), 2, "no totals line without a stats region: {dump}");
    assert_eq!(lines[0], ["1", "an-a", "10.20.0.5:8099", "D", "-", "vif0/0", "3", "300", "0"], "{dump}");
    assert_eq!(lines[1], ["7", "an-b", "10.20.0.6:8099", "50", "vif0/0", "0", "0", "1"], "{dump}");
    let get = ok(dir.path(), &["--get", "7"]);
    assert!(get.contains("Encapsulation:        VXLAN, VNI 50\n"), "{get}");
    assert!(get.contains("Mirrored:             packets:0  bytes:0 errors:1\n"), "{get}");
    let j: Value = serde_json::from_str(&ok(dir.path(), &["--dump", "--json"])).unwrap();
    let e = j["entries"].as_array().unwrap();
    assert_eq!(e.len(), 2);
    assert_eq!(
        (e[0]["analyzer_name"].as_str(), e[0]["packets"].as_u64(), e[0]["bytes"].as_u64()),
        (Some("an-a"), Some(3), Some(300))
    );
    assert_eq!(e[1]["vni"], 50);
    assert_eq!(j["mir_tpkts"], Value::Null);
    let g: Value = serde_json::from_str(&ok(dir.path(), &["--get", "1", "--json"])).unwrap();
    assert_eq!((g["index"].as_u64(), g["errors"].as_u64()), (Some(1), Some(0)));
    // With the stats region: the vRouter-wide totals.
    let stats = vrouter_abi::stats::StatsRegion::create(dir.path(), 4, 1, &[], 0).unwrap();
    let l = stats.lcore(0).unwrap();
    l.mirror(None, 300);
    l.mirror_error(None, false, DropReason::MirrorTxFull, 1);
    let dump = ok(dir.path(), &["--dump"]);
    assert!(dump.ends_with("\nvRouter mirror totals: mir_tpkts:1  mir_bytes:300 errors:1\n"), "{dump}");
    let j: Value = serde_json::from_str(&ok(dir.path(), &["--dump", "--json"])).unwrap();
    assert_eq!(
        (j["mir_tpkts"].as_u64(), j["mir_bytes"].as_u64(), j["mir_errors"].as_u64()),
        (Some(1), Some(300), Some(1))
    );
}

#[test]
fn errors_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(dir.path(), &["--dump"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("not running"));
    let _r = setup(dir.path());
    let o = run(dir.path(), &["--get", "9"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("mirror index 9 is empty"));
    // Changes go through the control socket of a running vRouter.
    let o = run(dir.path(), &["--create", "--name", "x", "--ip", "10.0.0.9"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("control.sock"));
    let o = run(dir.path(), &["--delete", "1"]);
    assert!(!o.status.success());
    let o = run(dir.path(), &["--dump", "--name", "x"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--name is only valid with --create"));
}

/// `--reconcile` on a flow table and a mirror region written here (no vRouter, so no
/// agent to name the rules): a flow mirrored to an-a (index 1) and an-b (index 7), another
/// mirrored to an-a after its setup; every packet is explained.
#[test]
fn reconcile_from_the_flow_table_and_the_region() {
    use flow_table::{Action, FlowKey, FlowTable, FlowTableConfig, FlowUpdate, Lookup};
    let dir = tempfile::tempdir().unwrap();
    let r = setup(dir.path());
    let t = FlowTable::create(
        &dir.path().join(flow_table::FLOW_FILE_NAME),
        &FlowTableConfig { main_entries: 64, overflow_entries: 64, max_lcores: 2 },
    )
    .unwrap();
    let key = |p: u16| FlowKey::v4(1, 17, Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2), p, 80);
    let new = |p: u16| match t.lookup_or_hold(&key(p), key(p).hash(), 1).unwrap() {
        Lookup::Created(i) => i,
        other => panic!("{other:?}"),
    };
    let mirrored = FlowUpdate { mirror: Some(1), sec_mirror: Some(7), ..FlowUpdate::new(Action::Forward) };
    // 4 packets: an-a got 3 copies (one lost), an-b none (every copy lost).
    let a = new(1000);
    for _ in 0..4 {
        t.account(a, 100, 2);
    }
    t.set_action(a, 1, &mirrored).unwrap();
    for _ in 0..3 {
        t.account_mirror(a, false, 150);
    }
    t.account_mirror_lost(a, false);
    for _ in 0..4 {
        t.account_mirror_lost(a, true);
    }
    // 2 packets before the rule, then one copied to an-a.
    let b = new(1001);
    t.account(b, 100, 2);
    t.account(b, 100, 2);
    t.set_action(b, 1, &FlowUpdate::new(Action::Forward)).unwrap();
    t.set_action(b, 1, &FlowUpdate { sec_mirror: Some(flow_table::NO_MIRROR), ..mirrored.clone() }).unwrap();
    t.account(b, 100, 3);
    t.account_mirror(b, false, 150);

    let j: Value = serde_json::from_str(&ok(dir.path(), &["--reconcile", "--json"])).unwrap();
    let an = j["analyzers"].as_array().unwrap();
    assert_eq!(an.len(), 2, "{j}");
    let fields = |v: &Value| -> Vec<i64> {
        [
            "flows",
            "packets",
            "sent_packets",
            "lost_packets",
            "before_mirror_packets",
            "held_dropped_packets",
            "unexplained_packets",
        ]
        .iter()
        .map(|k| v[*k].as_i64().unwrap())
        .collect()
    };
    assert_eq!(an[0]["analyzer_name"], "an-a");
    assert_eq!(fields(&an[0]), [2, 7, 4, 1, 2, 0, 0], "{j}");
    assert_eq!(an[0]["sent_bytes"], 600);
    assert_eq!(an[1]["analyzer_name"], "an-b");
    assert_eq!(fields(&an[1]), [1, 4, 0, 4, 0, 0, 0], "{j}");
    // The region's counters (written by `setup`) are the entries' own, next to the flows'.
    assert_eq!(an[0]["entry"]["flow_packets"], 2);
    assert_eq!(an[1]["lost"]["mirror_no_nh"], 1);
    assert_eq!(j["rules"], Value::Null);
    assert!(j["rules_error"].as_str().unwrap().contains("not running"), "{j}");
    let text = ok(dir.path(), &["--reconcile"]);
    assert!(
        text.contains("    Balance:              7 = 4 sent + 1 lost + 2 before the rule + 0 held and dropped\n"),
        "{text}"
    );
    drop(r);
}
