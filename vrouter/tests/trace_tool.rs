//! The `trace` tool (built from the `tools` crate, next to this test in the target directory)
//! managing requests and reading a tenant's traces over a control socket served by the
//! vRouter's own trace control (the code the agent runs), with the errors an operator sees.
//! Moved here from the tools' tests so that the tools do not depend on the vRouter.

mod common;

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use vrouter::trace::control::Tenant;
use vrouter::trace::{Step, TraceControl, TraceRegion};

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(common::tool("trace"))
        .arg("--run-dir")
        .arg(dir)
        .args(args)
        .env_remove("VROUTER_RUN_DIR")
        .output()
        .unwrap()
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

/// Serves the control socket with the vRouter's trace control until `n` requests were
/// answered.
fn serve(dir: &Path, n: usize) -> std::thread::JoinHandle<()> {
    serve_ctl(dir, control(dir), n)
}

fn control(dir: &Path) -> TraceControl {
    let cfg_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../demo/demo.toml");
    let cfg = vrouter::config::parse(&std::fs::read_to_string(cfg_path).unwrap(), cfg_path).unwrap();
    let fib = Arc::new(vrouter::fib::Fib::from_config(&cfg).unwrap());
    TraceControl::load(dir, vrouter::fib::publish::FibCell::fixed(fib)).unwrap()
}

fn serve_ctl(dir: &Path, ctl: TraceControl, n: usize) -> std::thread::JoinHandle<()> {
    let listener = UnixListener::bind(dir.join("control.sock")).unwrap();
    std::thread::spawn(move || {
        for s in listener.incoming().take(n) {
            let s = s.unwrap();
            let mut line = String::new();
            BufReader::new(&s).read_line(&mut line).unwrap();
            let reply = ctl.command(&serde_json::from_str(&line).unwrap());
            let mut w = &s;
            writeln!(w, "{reply}").unwrap();
        }
    })
}

#[test]
fn requests_are_managed_over_the_control_socket() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server = serve(d, 10);
    let added: Value = serde_json::from_str(&ok(
        d,
        &["add", "--ip-src", "192.168.1.0/24", "--ip-protocol", "udp", "--dst-port", "53", "--limit", "5", "--json"],
    ))
    .unwrap();
    assert_eq!(added["enabled"], false);
    assert_eq!(added["condition"]["src_ip"], "192.168.1.0/24");
    assert_eq!(added["condition"]["protocol"], 17);
    assert_eq!(added["limit"]["packets"], 5);
    let id = added["id"].as_str().unwrap().to_string();
    let show = ok(d, &["show"]);
    assert!(show.contains(&id) && show.contains("disabled") && show.contains("dst_port=53"), "{show}");
    assert!(ok(d, &["enable", &id]).contains("enabled"));
    let s: Value = serde_json::from_str(&ok(d, &["show", "--json"])).unwrap();
    assert_eq!(s[0]["state"], "enabled");
    // Bad input: the field is named, exit status 1, nothing added.
    assert!(err(d, &["add", "--ip-dst", "10.0.0.0/40"]).contains("dst_ip: prefix length"), "prefix");
    assert!(err(d, &["add", "--mac-src", "zz"]).contains("src_mac"), "mac");
    assert!(err(d, &["add", "--ethertype", "ipv4"]).contains("--ethertype"), "ethertype is checked by the tool");
    assert!(err(d, &["remove", "not-a-uuid"]).contains("id: \"not-a-uuid\" is not a UUID"));
    assert!(ok(d, &["remove", &id]).contains("removed"));
    assert_eq!(ok(d, &["flush"]), "Removed 0 trace request(s)\n");
    // A wrong token is refused with the field named.
    assert!(err(d, &["show", "--token", "not-a-token-at-all"]).contains("trace: token: not a valid tenant token"));
    server.join().unwrap();
}

const RED: &str = "red-token-0123456789";
const BLUE: &str = "blue-token-0123456789";

/// With a tenant's token, `list` and `get` ask the vRouter, which gives only the traces of
/// the tenant's own requests, rendered exactly as the operator sees them in the region.
#[test]
fn a_tenant_lists_and_gets_only_its_own_traces() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let vn = "default-domain:demo:vn1".to_string();
    let ctl = control(d).with_tenants(vec![
        Tenant { name: "red".into(), token: RED.into(), vns: vec![vn.clone()] },
        Tenant { name: "blue".into(), token: BLUE.into(), vns: vec![vn] },
    ]);
    let add = |tok: &str, vif: u16| {
        let r = ctl.command(&serde_json::json!({"cmd": "trace_add", "token": tok, "scope": {"vif": vif}}));
        r["request"]["id"].as_str().unwrap().to_string()
    };
    let (red, blue) = (add(RED, 1), add(BLUE, 2));
    let region = TraceRegion::create(d, 2, 64, 1_000_000_000, 0).unwrap();
    let mut w = region.writer(0).unwrap();
    for (t, id, req, vif) in [(100u64, 0x11u64, &red, 1u16), (200, 0x22, &blue, 2)] {
        let uuid = vrouter::trace::request::parse_uuid(req).unwrap();
        w.push(t, id, 1, &Step::Ingress { vif, queue: 0, len: 60 });
        w.push(t + 1, id, 1, &Step::Matched { request: uuid, new_trace: true });
        w.push(t + 2, id, 1, &Step::Egress { vif: 3 - vif, len: 60 });
    }
    let server = serve_ctl(d, ctl, 7);
    fn tenant<'a>(args: &[&'a str]) -> Vec<&'a str> {
        [&["--token", RED][..], args].concat()
    }
    let l: Value = serde_json::from_str(&ok(d, &tenant(&["list", "--json"]))).unwrap();
    let ids: Vec<&str> = l.as_array().unwrap().iter().map(|t| t["trace_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["0000000000000011"]);
    assert_eq!(l[0]["request"], red.as_str());
    let text = ok(d, &tenant(&["list"]));
    assert!(text.contains("0000000000000011") && !text.contains("0000000000000022"), "{text}");
    let lr: Value = serde_json::from_str(&ok(d, &tenant(&["list", "--request", &red, "--json"]))).unwrap();
    assert_eq!(lr, l);
    // Blue's trace does not exist for red; red's request does not exist for blue.
    assert!(err(d, &tenant(&["get", "22"])).contains("id: no trace 0000000000000022"));
    let e = err(d, &["--token", BLUE, "list", "--request", &red]);
    assert!(e.contains("id: no trace request"), "{e}");
    assert!(err(d, &["--token", "not-a-token-at-all", "list"]).contains("token: not a valid tenant token"));
    // The same story as the operator reads from the region.
    let mine = ok(d, &tenant(&["get", "11", "--json"]));
    server.join().unwrap();
    assert_eq!(mine, ok(d, &["get", "11", "--json"]));
    assert_eq!(ok(d, &["list", "--request", &blue, "--json"]).matches("trace_id").count(), 1, "operator filter");
    assert_eq!(ok(d, &["list", "--json"]).matches("trace_id").count(), 2, "the operator sees both");
    assert!(err(d, &["list", "--request", "nope"]).contains("--request: \"nope\" is not a UUID"));
}
