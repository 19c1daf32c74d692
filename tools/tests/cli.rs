//! Runs the built `vif` and `dropstats` binaries against a stats region created in a temp
//! directory through the vRouter's writer API.

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};
use vrouter_abi::drop_reason::{DropReason, DROP_REASON_COUNT};
use vrouter_abi::stats::*;

const VIF: &str = env!("CARGO_BIN_EXE_vif");
const DROPSTATS: &str = env!("CARGO_BIN_EXE_dropstats");

fn vifs() -> Vec<VifInfo> {
    let base = VIF_FLAG_L3_ENABLED | VIF_FLAG_L2_ENABLED | VIF_FLAG_PMD;
    vec![
        VifInfo::new(0, VIF_TYPE_PHYSICAL, "fabric0")
            .port(0, 2, 2)
            .mac([0x02, 0, 0, 0, 0, 0x10])
            .ipv4("10.0.0.1".parse().unwrap())
            .mtu(9000)
            .flags(base)
            .device("0000:00:04.0")
            .driver("net_ixgbe"),
        VifInfo::new(1, VIF_TYPE_HOST, "vhost0")
            .port(1, 1, 1)
            .mac([0x02, 0, 0, 0, 0, 0x10])
            .ipv4("10.0.0.1".parse().unwrap())
            .flags(VIF_FLAG_L3_ENABLED | VIF_FLAG_PMD)
            .device("net_tap0"),
        VifInfo::new(2, VIF_TYPE_VIRTUAL, "vm1")
            .port(2, 1, 2)
            .vrf(1)
            .mtu(1500)
            .nh(12)
            .mac([0x02, 0, 0, 0, 1, 1])
            .ipv4("192.168.1.3".parse().unwrap())
            .ipv6("fd00::3".parse().unwrap())
            .flags(base | VIF_FLAG_MAC_PROXY)
            .device("net_pcap1")
            .driver("net_pcap")
            .vn_name("default-domain:demo:vn1")
            .vm_uuid(parse_uuid("7c3a5f0e-1b2c-4d5e-8f90-a1b2c3d4e5f6").unwrap())
            .vmi_uuid(parse_uuid("00112233-4455-6677-8899-aabbccddeeff").unwrap())
            .mirror(true, false, 4),
    ]
}

/// A region with two lcores and a few counters on each.
fn setup(dir: &Path) -> StatsRegion {
    let region = StatsRegion::create(dir, 8, 2, &vifs(), 0).unwrap();
    let l0 = region.lcore(0).unwrap();
    l0.rx(2, 10, 1000);
    l0.tx(0, 10, 1500);
    l0.rx_error(2);
    l0.drop(Some(2), DropReason::TtlExceeded, 2);
    let l1 = region.lcore(1).unwrap();
    l1.rx(2, 5, 500);
    l1.tx(0, 5, 750);
    l1.tx_error(0, 1);
    l1.drop(None, DropReason::InvalidIf, 1);
    l1.drop(Some(0), DropReason::NoL3Route, 3);
    // Interface mirroring of vif 2: two copies sent, one failed.
    l0.mirror(Some(2), 300);
    l1.mirror(Some(2), 200);
    l1.mirror_error(Some(2), true, DropReason::MirrorNoNh, 1);
    region
}

fn run(bin: &str, dir: &Path, args: &[&str]) -> Output {
    Command::new(bin).args(args).arg("--run-dir").arg(dir).env_remove("VROUTER_RUN_DIR").output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// Runs and expects success with an empty stderr; returns stdout.
fn ok(bin: &str, dir: &Path, args: &[&str]) -> String {
    let o = run(bin, dir, args);
    assert!(o.status.success(), "{bin} {args:?}: {:?}\n{}", o.status, stderr(&o));
    assert_eq!(stderr(&o), "", "{bin} {args:?}");
    stdout(&o)
}

const LEGEND: &str = "\
Flags: P=Policy, X=Cross Connect, S=Service Chain, Mr=Receive Mirror
       Mt=Transmit Mirror, Tc=Transmit Checksum Offload, L3=Layer 3, L2=Layer 2
       D=DHCP, Vp=Vhost Physical, Pr=Promiscuous, Vnt=Native Vlan Tagged
       Mnp=No MAC Proxy, Dpdk=DPDK PMD Interface, Rfl=Receive Filtering Offload, Mon=Interface is Monitored
       Uuf=Unknown Unicast Flood, Vof=VLAN insert/strip offload, Df=Drop New Flows, L=MAC Learning Enabled
       Proxy=MAC Requests Proxied Always, Er=Etree Root, Mn=Mirror without Vlan Tag, Ig=Igmp Trap Enabled
";

const VIF0: &str = "\
vif0/0      PMD: 0 OS: 0000:00:04.0 Name: fabric0 MTU: 9000
            Type:Physical HWaddr:02:00:00:00:00:10 IPaddr:10.0.0.1
            Vrf:0 Flags:L3L2Dpdk
            RX packets:0  bytes:0 errors:0
            TX packets:15  bytes:2250 errors:1
            Mirror packets:0  bytes:0 errors:0
            Drops:3

";

const VIF1: &str = "\
vif0/1      PMD: 1 OS: net_tap0 Name: vhost0
            Type:Host HWaddr:02:00:00:00:00:10 IPaddr:10.0.0.1
            Vrf:0 Flags:L3Dpdk
            RX packets:0  bytes:0 errors:0
            TX packets:0  bytes:0 errors:0
            Mirror packets:0  bytes:0 errors:0
            Drops:0

";

const VIF2: &str = "\
vif0/2      PMD: 2 OS: net_pcap1 Name: vm1 NH: 12 MTU: 1500
            Type:Virtual HWaddr:02:00:00:00:01:01 IPaddr:192.168.1.3
            IP6addr:fd00::3
            Vrf:1 Flags:MrL3L2DpdkProxy Mirror index 4
            RX packets:15  bytes:1500 errors:1
            TX packets:0  bytes:0 errors:0
            Mirror packets:2  bytes:500 errors:1
            Drops:3
            Ingress Mirror Metadata: 3 17 64 65 66 61 75 6c 74 2d 64 6f 6d 61 69 6e 3a 64 65 6d 6f 3a 76 6e 31 ff 0

";

#[test]
fn vif_list_text() {
    let dir = tempfile::tempdir().unwrap();
    let _region = setup(dir.path());
    let out = ok(VIF, dir.path(), &["--list"]);
    assert_eq!(out, format!("Vrouter Interface Table\n\n{LEGEND}\n{VIF0}{VIF1}{VIF2}"));
    assert_eq!(ok(VIF, dir.path(), &["-l"]), out);
}

#[test]
fn vif_get_text_and_core() {
    let dir = tempfile::tempdir().unwrap();
    let _region = setup(dir.path());
    assert_eq!(ok(VIF, dir.path(), &["--get", "2"]), format!("Vrouter Interface Table\n\n{LEGEND}\n{VIF2}"));
    let core1 = ok(VIF, dir.path(), &["--get", "2", "--core", "1"]);
    let counters: Vec<&str> = core1.lines().skip_while(|l| !l.contains("Core ")).collect();
    assert_eq!(
        counters,
        [
            "            Core 1 RX packets:5  bytes:500 errors:0",
            "            Core 1 TX packets:0  bytes:0 errors:0",
            "            Core 1 Mirror packets:1  bytes:200 errors:1",
            "            Core 1 Drops:1",
            "            Ingress Mirror Metadata: 3 17 64 65 66 61 75 6c 74 2d 64 6f 6d 61 69 6e 3a 64 65 6d 6f 3a 76 6e 31 ff 0",
            "",
        ]
    );
}

#[test]
fn vif_get_drop_stats() {
    let dir = tempfile::tempdir().unwrap();
    let _region = setup(dir.path());
    assert_eq!(
        ok(VIF, dir.path(), &["--get", "2", "--get-drop-stats"]),
        "TTL Exceeded                  2\nMirror No NH                  1\n"
    );
    assert_eq!(
        ok(VIF, dir.path(), &["--get", "0", "--get-drop-stats", "--core", "1"]),
        "Statistics for core 1\n\nNo L3 Route                   3\n"
    );
    let v: Value = serde_json::from_str(&ok(VIF, dir.path(), &["--get", "2", "--get-drop-stats", "--json"])).unwrap();
    assert_eq!(v["ttl_exceeded"], 2);
    assert_eq!(v["mirror_no_nh"], 1);
    assert_eq!(v["total"], 3);
    assert_eq!(v.as_object().unwrap().len(), DROP_REASON_COUNT + 1);
}

#[test]
fn vif_json() {
    let dir = tempfile::tempdir().unwrap();
    let _region = setup(dir.path());
    let v: Value = serde_json::from_str(&ok(VIF, dir.path(), &["--list", "--json"])).unwrap();
    let a = v.as_array().unwrap();
    assert_eq!(a.len(), 3);
    assert_eq!(a[0]["type"], "physical");
    assert_eq!(a[0]["tx_packets"], 15);
    assert_eq!(a[0]["tx_errors"], 1);
    assert_eq!(a[0]["drop_stats"], json!({"l3_no_route": 3}));
    assert_eq!(a[1]["type"], "host");
    assert_eq!(a[1]["flags"], json!(["l3", "dpdk"]));
    assert_eq!(a[1]["mtu"], Value::Null);
    assert_eq!(
        a[2],
        json!({
            "id": 2, "name": "vm1", "type": "virtual", "device": "net_pcap1", "driver": "net_pcap",
            "port": 2, "rx_queues": 1, "tx_queues": 2, "mac": "02:00:00:00:01:01",
            "ip": "192.168.1.3", "ip6": "fd00::3", "vrf": 1, "mtu": 1500, "nh": 12,
            "flags": ["receive_mirror", "l3", "l2", "dpdk", "mac_proxy"], "vn_name": "default-domain:demo:vn1",
            "vm_uuid": "7c3a5f0e-1b2c-4d5e-8f90-a1b2c3d4e5f6",
            "vmi_uuid": "00112233-4455-6677-8899-aabbccddeeff",
            "rx_packets": 15, "rx_bytes": 1500, "rx_errors": 1,
            "tx_packets": 0, "tx_bytes": 0, "tx_errors": 0, "link": null, "vhost": null,
            "mirror_index": 4, "mirror_packets": 2, "mirror_bytes": 500, "mirror_errors": 1,
            "drops": 3, "drop_stats": {"ttl_exceeded": 2, "mirror_no_nh": 1}
        })
    );
    let one: Value =
        serde_json::from_str(&ok(VIF, dir.path(), &["--get", "2", "--json", "--core", "0", "--pretty"])).unwrap();
    assert_eq!(one.as_array().unwrap().len(), 1);
    assert_eq!(one[0]["rx_packets"], 10);
}

#[test]
fn dropstats_text_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let _region = setup(dir.path());
    assert_eq!(
        ok(DROPSTATS, dir.path(), &[]),
        "Invalid IF                    1\nTTL Exceeded                  2\nNo L3 Route                   3\n\
         Mirror No NH                  1\n"
    );
    assert_eq!(
        ok(DROPSTATS, dir.path(), &["--core", "0"]),
        "Statistics for core 0\n\nTTL Exceeded                  2\n"
    );
    assert_eq!(ok(DROPSTATS, dir.path(), &["--vif", "0"]), "No L3 Route                   3\n");
    assert_eq!(ok(DROPSTATS, dir.path(), &["--vif", "1"]), "");
    let v: Value = serde_json::from_str(&ok(DROPSTATS, dir.path(), &["--json"])).unwrap();
    let m = v.as_object().unwrap();
    assert_eq!(m.len(), DROP_REASON_COUNT + 1);
    for r in DropReason::ALL {
        let expected = match r {
            DropReason::InvalidIf => 1,
            DropReason::TtlExceeded => 2,
            DropReason::NoL3Route => 3,
            DropReason::MirrorNoNh => 1,
            _ => 0,
        };
        assert_eq!(m[r.key()], expected, "{}", r.key());
    }
    assert_eq!(m["total"], 7);
    let v: Value = serde_json::from_str(&ok(DROPSTATS, dir.path(), &["-j", "--core", "1", "--vif", "0"])).unwrap();
    assert_eq!((v["l3_no_route"].as_u64(), v["total"].as_u64()), (Some(3), Some(3)));
}

#[test]
fn run_dir_from_environment() {
    let dir = tempfile::tempdir().unwrap();
    let _region = setup(dir.path());
    let o = Command::new(DROPSTATS).env("VROUTER_RUN_DIR", dir.path()).output().unwrap();
    assert!(o.status.success());
    assert!(stdout(&o).starts_with("Invalid IF "));
}

#[test]
fn not_running() {
    let dir = tempfile::tempdir().unwrap();
    for (bin, args) in [(VIF, &["--list"][..]), (DROPSTATS, &[][..])] {
        let o = run(bin, dir.path(), args);
        assert_eq!(o.status.code(), Some(1));
        assert_eq!(stdout(&o), "");
        assert_eq!(
            stderr(&o),
            format!("vRouter is not running (no stats region at {})\n", dir.path().join("stats").display())
        );
    }
}

#[test]
fn stale_region_warns_but_prints() {
    let dir = tempfile::tempdir().unwrap();
    let region = setup(dir.path());
    region.set_heartbeat(unix_time_ms() - 60_000);
    let warning =
        format!("warning: vRouter (pid {}) is not running; counters are from its last run\n", std::process::id());
    for (bin, args) in [(VIF, &["--get", "2"][..]), (DROPSTATS, &[][..])] {
        let o = run(bin, dir.path(), args);
        assert!(o.status.success());
        assert_eq!(stderr(&o), warning);
        assert!(!stdout(&o).is_empty());
    }
    region.set_state(RegionState::Stopped);
    let o = run(DROPSTATS, dir.path(), &[]);
    assert!(o.status.success());
    assert!(stderr(&o).contains("has stopped"), "{}", stderr(&o));
}

#[test]
fn errors() {
    let dir = tempfile::tempdir().unwrap();
    let _region = setup(dir.path());
    let o = run(VIF, dir.path(), &["--get", "7"]);
    assert_eq!((o.status.code(), stderr(&o)), (Some(1), "vif 7 does not exist\n".to_string()));
    assert_eq!(stdout(&o), "");
    let o = run(DROPSTATS, dir.path(), &["--vif", "7"]);
    assert_eq!((o.status.code(), stderr(&o)), (Some(1), "vif 7 does not exist\n".to_string()));
    let o = run(DROPSTATS, dir.path(), &["--core", "2"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o), "core 2 does not exist (the vRouter has 2 forwarding lcores: 0..=1)\n");
    // Usage errors (clap): exit 2.
    for args in
        [&["--list", "--get", "1"][..], &[][..], &["--list", "--get-drop-stats"][..], &["--list", "--pretty"][..]]
    {
        assert_eq!(run(VIF, dir.path(), args).status.code(), Some(2), "{args:?}");
    }
    // A file that is not a stats region.
    std::fs::write(dir.path().join("stats"), vec![0u8; 4096]).unwrap();
    let o = run(VIF, dir.path(), &["--list"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("bad magic 0x0000000000000000"), "{}", stderr(&o));
}

#[test]
fn broken_pipe_exits_quietly() {
    // Enough vifs that the output exceeds any pipe buffer: the writer must hit EPIPE.
    let dir = tempfile::tempdir().unwrap();
    let many: Vec<VifInfo> = (0..1000).map(|i| VifInfo::new(i, VIF_TYPE_VIRTUAL, &format!("vm{i}"))).collect();
    let _region = StatsRegion::create(dir.path(), 1000, 1, &many, 0).unwrap();
    let mut child = Command::new(VIF)
        .args(["--list", "--run-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert_eq!(first, "Vrouter Interface Table\n");
    // The read end is closed here (BufReader dropped), like `head -1` exiting.
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{:?}", o.status);
    assert_eq!(stderr(&o), "");
}
