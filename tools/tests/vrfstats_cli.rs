//! Runs the built `vrfstats` binary against a stats region created in a temp directory
//! through the vRouter's writer API (the live data plane is tested in
//! `vrouter/tests/vrfstats.rs`).

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use vrouter_abi::stats::*;

const VRFSTATS: &str = env!("CARGO_BIN_EXE_vrfstats");

/// Two lcores: VRF 1 counted on both, VRF 0 and VRF 4095 on one each.
fn setup(dir: &Path) -> StatsRegion {
    let region = StatsRegion::create(dir, 4, 2, &[], 0).unwrap();
    let (l0, l1) = (region.lcore(0).unwrap(), region.lcore(1).unwrap());
    l0.vrf_add(1, &VrfCounters { udp_mpls_tunnels: 30, ecmp_composites: 2, discards: 1, ..Default::default() });
    l1.vrf_add(1, &VrfCounters { udp_mpls_tunnels: 2, mplsoudp_decaps: 4, encaps: 4, ..Default::default() });
    l0.vrf_add(0, &VrfCounters { receives: 3, resolves: 1, ..Default::default() });
    l1.vrf_add(4095, &VrfCounters { vxlan_tunnels: 5, ..Default::default() });
    region
}

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(VRFSTATS).args(args).arg("--run-dir").arg(dir).env_remove("VROUTER_RUN_DIR").output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).unwrap()
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let o = run(dir, args);
    assert!(o.status.success(), "{args:?}: {:?}\n{}", o.status, text(&o.stderr));
    assert_eq!(text(&o.stderr), "", "{args:?}");
    text(&o.stdout)
}

const VRF0: &str = "\
Vrf: 0
Discards 0, Resolves 1, Receives 3, L2 Receives 0
Ecmp Composites 0
Udp Mpls Tunnels 0, Vxlan Tunnels 0
L2 Encaps 0, Encaps 0
Mplsoudp Decaps 0, Vxlan Decaps 0, No Route Drops 0

";

const VRF1: &str = "\
Vrf: 1
Discards 1, Resolves 0, Receives 0, L2 Receives 0
Ecmp Composites 2
Udp Mpls Tunnels 32, Vxlan Tunnels 0
L2 Encaps 0, Encaps 4
Mplsoudp Decaps 4, Vxlan Decaps 0, No Route Drops 0

";

const VRF4095: &str = "\
Vrf: 4095
Discards 0, Resolves 0, Receives 0, L2 Receives 0
Ecmp Composites 0
Udp Mpls Tunnels 0, Vxlan Tunnels 5
L2 Encaps 0, Encaps 0
Mplsoudp Decaps 0, Vxlan Decaps 0, No Route Drops 0

";

#[test]
fn dump_lists_the_vrfs_that_counted() {
    let dir = tempfile::tempdir().unwrap();
    let _region = setup(dir.path());
    assert_eq!(ok(dir.path(), &["--dump"]), format!("{VRF0}{VRF1}{VRF4095}"));
    let one_core = ok(dir.path(), &["--dump", "--core", "1"]);
    assert!(one_core.starts_with("Statistics for core 1\n\nVrf: 1\n"), "{one_core}");
    assert!(one_core.contains("Udp Mpls Tunnels 2, "), "{one_core}");
    assert!(!one_core.contains("Vrf: 0\n"), "{one_core}");
}

#[test]
fn get_one_vrf_zeros_included() {
    let dir = tempfile::tempdir().unwrap();
    let _region = setup(dir.path());
    assert_eq!(ok(dir.path(), &["--get", "1"]), VRF1);
    let idle = ok(dir.path(), &["--get", "7"]);
    assert!(idle.starts_with("Vrf: 7\nDiscards 0, Resolves 0, Receives 0, L2 Receives 0\n"), "{idle}");
}

#[test]
fn json() {
    let dir = tempfile::tempdir().unwrap();
    let _region = setup(dir.path());
    let v: Value = serde_json::from_str(&ok(dir.path(), &["--get", "1", "--json"])).unwrap();
    assert_eq!(v[0]["vrf"], 1);
    assert_eq!((v[0]["udp_mpls_tunnels"].as_u64(), v[0]["mplsoudp_decaps"].as_u64()), (Some(32), Some(4)));
    let all: Value = serde_json::from_str(&ok(dir.path(), &["--dump", "--json", "--pretty"])).unwrap();
    let ids: Vec<u64> = all.as_array().unwrap().iter().map(|o| o["vrf"].as_u64().unwrap()).collect();
    assert_eq!(ids, [0, 1, 4095]);
    let core0: Value = serde_json::from_str(&ok(dir.path(), &["--get", "1", "--json", "--core", "0"])).unwrap();
    assert_eq!(core0[0]["udp_mpls_tunnels"], 30);
}

#[test]
fn errors_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(dir.path(), &["--dump"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("not running"), "{}", text(&o.stderr));
    let _region = setup(dir.path());
    let o = run(dir.path(), &["--dump", "--core", "2"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(text(&o.stderr), "core 2 does not exist (the vRouter has 2 forwarding lcores: 0..=1)\n");
    let o = run(dir.path(), &["--get", "4096"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("--get"), "{}", text(&o.stderr));
    for args in [&[][..], &["--dump", "--get", "1"][..], &["--get", "x"][..], &["--dump", "--pretty"][..]] {
        assert_eq!(run(dir.path(), args).status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn stopped_vrouter_warns_but_prints() {
    let dir = tempfile::tempdir().unwrap();
    let region = setup(dir.path());
    region.set_state(RegionState::Stopped);
    let o = run(dir.path(), &["--get", "1"]);
    assert!(o.status.success());
    assert!(text(&o.stderr).contains("has stopped"), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), VRF1);
}

#[test]
fn broken_pipe_exits_quietly() {
    // Every VRF counted: the dump is far larger than a pipe buffer, so the writer hits EPIPE.
    let dir = tempfile::tempdir().unwrap();
    let region = StatsRegion::create(dir.path(), 1, 1, &[], 0).unwrap();
    let l0 = region.lcore(0).unwrap();
    for vrf in 0..MAX_VRFS as u32 {
        l0.vrf_add(vrf, &VrfCounters { encaps: 1, ..Default::default() });
    }
    let mut child = Command::new(VRFSTATS)
        .args(["--dump", "--run-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert_eq!(first, "Vrf: 0\n");
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{:?}", o.status);
    assert_eq!(text(&o.stderr), "");
}
