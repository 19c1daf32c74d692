//! The `trace` tool: traces read from a trace region written here, with the errors an
//! operator sees. Request management over the vRouter's control socket is tested with the
//! vRouter's trace control in `vrouter/tests/trace_tool.rs`.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};
use vrouter_abi::drop_reason::DropReason;
use vrouter_abi::trace::{Step, TraceRegion};

const TRACE: &str = env!("CARGO_BIN_EXE_trace");

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(TRACE).arg("--run-dir").arg(dir).args(args).env_remove("VROUTER_RUN_DIR").output().unwrap()
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let o = run(dir, args);
    assert!(o.status.success(), "trace {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

fn err(dir: &Path, args: &[&str]) -> String {
    let o = run(dir, args);
    assert_eq!(o.status.code(), Some(1), "trace {args:?} should fail: {}", String::from_utf8_lossy(&o.stdout));
    String::from_utf8(o.stderr).unwrap()
}

const RULE: [u8; 16] = [0xcc, 0xcc, 0xcc, 0xcc, 0, 0, 0x40, 0, 0x80, 0, 0, 0, 0, 0, 0, 0x53];

/// Two traces: 0x11 (two packets, forwarded) on lcore 0, and 0x22 (held, denied by the
/// agent's policy on ring 1, then dropped).
fn setup(dir: &Path) -> TraceRegion {
    let region = TraceRegion::create(dir, 2, 64, 1_000_000_000, 0).unwrap();
    let mut lc = region.writer(0).unwrap();
    let mut agent = region.writer(1).unwrap();
    let req = [7u8; 16];
    for pkt in 1..=2 {
        let t = u64::from(pkt) * 1000;
        lc.push(t, 0x11, pkt, &Step::Ingress { vif: 1, queue: 0, len: 60 });
        lc.push(t + 1, 0x11, pkt, &Step::Matched { request: req, new_trace: pkt == 1 });
        lc.push(
            t + 2,
            0x11,
            pkt,
            &Step::Parsed { ethertype: 0x0800, proto: 17, sport: 4001, dport: 9000, vrf: 1, ip_len: 46, ttl: 64 },
        );
        lc.push(t + 3, 0x11, pkt, &Step::Addresses { src: 0xffff_c0a8_0103, dst: 0xffff_c0a8_0104 });
        lc.push(t + 4, 0x11, pkt, &Step::Egress { vif: 2, len: 60 });
    }
    lc.push(5000, 0x22, 1, &Step::Ingress { vif: 1, queue: 0, len: 60 });
    lc.push(5001, 0x22, 1, &Step::Matched { request: req, new_trace: true });
    lc.push(5002, 0x22, 1, &Step::Held { flow: 9, new: true });
    agent.push(5500, 0x22, 1, &Step::Policy { forward: false, drop_reason: 3, rule: RULE, flow: 9 });
    lc.push(6000, 0x22, 1, &Step::Released { flow: 9, held_ns: 1000 });
    lc.push(6001, 0x22, 1, &Step::Drop { reason: DropReason::FlowActionDrop });
    region
}

#[test]
fn list_and_get_render_the_region() {
    let dir = tempfile::tempdir().unwrap();
    let _r = setup(dir.path());
    let list = ok(dir.path(), &["list"]);
    let rows: Vec<&str> = list.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{list}");
    assert!(rows[0].starts_with("0000000000000011") && rows[0].contains("forwarded vif0/2"), "{list}");
    assert!(rows[0].contains("192.168.1.3:4001 -> 192.168.1.4:9000"), "{list}");
    assert!(rows[1].starts_with("0000000000000022") && rows[1].contains("dropped (Flow Action Drop)"), "{list}");
    let j: Value = serde_json::from_str(&ok(dir.path(), &["list", "--json"])).unwrap();
    assert_eq!(j.as_array().unwrap().len(), 2);
    assert_eq!(j[0]["packets"], 2);
    assert_eq!(j[0]["steps"], 10);
    assert_eq!(j[0]["request"], "07070707-0707-0707-0707-070707070707");

    let get = ok(dir.path(), &["get", "22"]);
    let steps: Vec<&str> =
        get.lines().filter(|l| l.trim_start().chars().next().is_some_and(|c| c.is_ascii_digit())).collect();
    assert_eq!(steps.len(), 6, "{get}");
    assert!(steps[2].contains("held for flow setup of flow 9"), "{get}");
    assert!(
        steps[3].contains("[agent] policy: flow 9 drop")
            && steps[3].contains("rule cccccccc-0000-4000-8000-000000000053"),
        "{get}"
    );
    assert!(steps[4].contains("released after flow 9"), "{get}");
    assert!(steps[5].contains("dropped: Flow Action Drop"), "{get}");
    let g: Value = serde_json::from_str(&ok(dir.path(), &["get", "0x22", "--json"])).unwrap();
    assert_eq!(g["trace"][0]["steps"][3]["step"], "policy");
    assert_eq!(g["trace"][0]["steps"][3]["rule_uuid"], "cccccccc-0000-4000-8000-000000000053");
    assert_eq!(g["trace"][0]["steps"][5]["reason"], "flow_action_drop");

    assert!(err(dir.path(), &["get", "33"]).contains("id: no trace 0000000000000033"));
    assert!(err(dir.path(), &["get", "zz"]).contains("id: \"zz\" is not a trace id"));
}

#[test]
fn no_vrouter_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    assert!(err(dir.path(), &["list"]).contains("vRouter is not running"));
    assert!(err(dir.path(), &["show"]).contains("vRouter is not running"));
}

/// The region is owner-only: the tool run by another user says why it cannot read it.
#[test]
fn another_user_cannot_read_the_region() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let region = setup(d);
    // The directory is open to all: only the file's own mode keeps others out.
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(std::fs::metadata(region.path()).unwrap().permissions().mode() & 0o777, 0o600);
    // SAFETY: getuid has no preconditions.
    let root = unsafe { libc::getuid() } == 0;
    let o = if root {
        // Root reads anything: run the tool as nobody.
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", TRACE, "--run-dir"])
            .arg(d)
            .arg("list")
            .env_remove("VROUTER_RUN_DIR")
            .output()
            .expect("setpriv (util-linux) to run the tool as another user")
    } else {
        // The tool's user is the owner: take its read permission away instead.
        std::fs::set_permissions(region.path(), std::fs::Permissions::from_mode(0o000)).unwrap();
        run(d, &["list"])
    };
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("permission denied") && e.contains("mode 0600") && e.contains("--token"), "{e}");
}
