//! The `collector` binary as a real process: flow records survive a restart (after SIGKILL
//! and after SIGTERM), UVEs of generators that are gone do not, and a generator that
//! reconnects resynchronises its UVEs.

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Proc {
    child: Child,
    sandesh: SocketAddr,
    http: SocketAddr,
}

/// The flags that put the collector on the store of `cfg`.
fn store_args(cfg: &collector::config::CollectorConfig) -> Vec<String> {
    match cfg.store {
        collector::config::StoreKind::Sqlite => vec![],
        collector::config::StoreKind::Clickhouse => vec![
            "--store".into(),
            "clickhouse".into(),
            "--clickhouse-url".into(),
            cfg.clickhouse_url.clone(),
            "--clickhouse-database".into(),
            cfg.clickhouse_database.clone(),
        ],
    }
}

fn spawn(dir: &Path, store: &[String]) -> Proc {
    let mut child = Command::new(env!("CARGO_BIN_EXE_collector"))
        .args(["--json", "--sandesh-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--hostname", "c1"])
        .args(store)
        .arg("--data-dir")
        .arg(dir)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("startup line {line:?}: {e}"));
    Proc {
        child,
        sandesh: v["sandesh_listen"].as_str().unwrap().parse().unwrap(),
        http: v["http_listen"].as_str().unwrap().parse().unwrap(),
    }
}

fn flow_query() -> Value {
    json!({"table": "FlowRecordTable", "start_time": "now-10m", "end_time": "now",
           "select_fields": ["UuidKey", "agg-bytes", "agg-packets", "agg-mir-bytes", "analyzer_name"],
           "sort_fields": ["UuidKey"]})
}

fn wait_rows(http: SocketAddr, q: &Value, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = rows(http, q);
        if r.len() >= n {
            return r;
        }
        assert!(Instant::now() < deadline, "only {} rows", r.len());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn uve(http: SocketAddr, name: &str) -> Value {
    let (code, v) = http_get(http, &format!("/analytics/uves/virtual-machine-interface/{name}?flat"));
    assert_eq!(code, 200);
    v
}

fn records_survive_restart_uves_resync(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(cfg) = config(backend, dir.path()) else { return };
    let store = store_args(&cfg);
    let mut p = spawn(dir.path(), &store);
    let mut g = Generator::connect(p.sandesh, "host1");
    let mut recs = Vec::new();
    for k in 0..40u16 {
        let mut f = flow(&format!("00000000-0000-0000-0000-{k:012}"), 20000 + k, 1000 + i64::from(k), 10, 1000, 10);
        f.analyzer_name = Some("an1".into());
        f.mirror_bytes = Some(2000 + i64::from(k));
        recs.push(f);
    }
    for chunk in recs.chunks(16) {
        g.send_flows(chunk.to_vec());
    }
    g.send_vmi(vmi("vmi-1", 3, 3, 207), 0);
    let before = wait_rows(p.http, &flow_query(), 40);
    let deadline = Instant::now() + Duration::from_secs(10);
    while uve(p.http, "vmi-1") == json!({}) {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }

    // Crash: SIGKILL. Committed records must be there after the restart.
    p.child.kill().unwrap();
    p.child.wait().unwrap();
    assert!(g.closed_by_peer());
    let mut p = spawn(dir.path(), &store);
    assert_eq!(rows(p.http, &flow_query()), before);
    assert_eq!(
        before[7],
        json!({"UuidKey": "00000000-0000-0000-0000-000000000007", "agg-bytes": 1007,
                                 "agg-packets": 10, "agg-mir-bytes": 2007, "analyzer_name": "an1"})
    );
    // The generator is not connected to this collector: no UVEs.
    assert_eq!(uve(p.http, "vmi-1"), json!({}));
    let (_, list) = http_get(p.http, "/analytics/uves/virtual-machine-interfaces");
    assert_eq!(list, json!([]));

    // It reconnects and resynchronises.
    let mut g = Generator::connect(p.sandesh, "host1");
    g.send_vmi(vmi("vmi-1", 5, 4, 300), sandesh::hints::SYNC);
    let deadline = Instant::now() + Duration::from_secs(10);
    while uve(p.http, "vmi-1") == json!({}) {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(uve(p.http, "vmi-1")["VMIStats"]["raw_if_stats"]["mir_bytes"], 300);
    // More samples for an existing flow after the restart keep aggregating.
    let mut f = recs[7].clone();
    f.bytes = Some(5007);
    f.packets = Some(50);
    f.mirror_bytes = Some(6007);
    g.send_flows(vec![f]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = rows(p.http, &flow_query());
        if r[7]["agg-bytes"] == 5007 {
            assert_eq!(r[7]["agg-mir-bytes"], 6007);
            break;
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }

    // Orderly stop: SIGTERM, exit status 0, and the data is still there afterwards.
    let pid = p.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = p.child.wait().unwrap();
    assert!(status.success(), "{status}");
    let mut p = spawn(dir.path(), &store);
    let r = rows(p.http, &flow_query());
    assert_eq!(r.len(), 40);
    assert_eq!(r[7]["agg-bytes"], 5007);
    p.child.kill().unwrap();
    p.child.wait().unwrap();
}

#[test]
fn bad_config_and_flags_exit_nonzero_with_the_field_named() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[collector]\nflow_retention_s = 0\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_collector")).arg("--config").arg(&cfg).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("c.toml:2: collector.flow_retention_s: must be at least 1"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_collector")).args(["--sandesh-listen", "nowhere"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("collector.sandesh_listen"));
    let out = Command::new(env!("CARGO_BIN_EXE_collector")).arg("--help").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--data-dir"));
    std::fs::write(&cfg, "[log]\nformat = \"xml\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_collector")).arg("--config").arg(&cfg).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("c.toml:2: log.format: expected \"text\" or \"json\""), "{err}");
}

/// `[log] format = "json"`: what the collector logs (here the error that stops it, after the
/// logs are set up) is one JSON object per line on stderr; an invalid `RUST_LOG` is refused.
#[test]
fn json_logs() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[log]\nformat = \"json\"\n").unwrap();
    let run = |rust_log: &str| {
        Command::new(env!("CARGO_BIN_EXE_collector"))
            .arg("--config")
            .arg(&cfg)
            .args(["--sandesh-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--store", "clickhouse"])
            .args(["--clickhouse-url", "http://127.0.0.1:1"])
            .env("RUST_LOG", rust_log)
            .output()
            .unwrap()
    };
    let out = run("");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err.lines().last().unwrap_or_default();
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: not JSON: {err}"));
    assert_eq!(v["level"], "ERROR", "{v}");
    let msg = v["message"].as_str().unwrap();
    assert!(msg.starts_with("collector: ") && msg.contains("cannot reach ClickHouse at http://127.0.0.1:1"), "{v}");
    assert!(v["timestamp"].is_string() && v["target"].is_string(), "{v}");
    assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
    let out = run("collector=nonsense");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("collector: RUST_LOG: `collector=nonsense` is not a filter"), "{err}");
}

#[test]
fn clickhouse_setup_errors_name_the_field_and_init_schema_fixes_them() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_collector"))
            .args(["--sandesh-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--store", "clickhouse"])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, _, err) = run(&["--clickhouse-url", "http://127.0.0.1:1"]);
    assert!(!ok);
    assert!(err.contains("collector.clickhouse_url: cannot reach ClickHouse at http://127.0.0.1:1"), "{err}");
    let (ok, _, err) = run(&["--clickhouse-url", "ftp://x"]);
    assert!(!ok);
    assert!(err.contains("command line: collector.clickhouse_url: `ftp://x` is not an http:// URL"), "{err}");
    let Ok(url) = collector::store::clickhouse::local::shared() else {
        eprintln!("SKIPPED (ClickHouse backend): no server");
        return;
    };
    let db = collector::store::clickhouse::local::fresh_database("bin");
    let (ok, _, err) = run(&["--clickhouse-url", url, "--clickhouse-database", &db]);
    assert!(!ok);
    assert!(err.contains(&format!("collector.clickhouse_database: database `{db}` does not exist")), "{err}");
    assert!(err.contains("collector --init-schema"), "{err}");
    for _ in 0..2 {
        let (ok, out, err) = run(&["--clickhouse-url", url, "--clickhouse-database", &db, "--init-schema"]);
        assert!(ok, "{err}");
        assert!(out.contains(&format!("schema version 2 ready in {url} database {db}")), "{out}");
    }
    let dir = tempfile::tempdir().unwrap();
    let mut p = spawn(
        dir.path(),
        &[
            "--store".into(),
            "clickhouse".into(),
            "--clickhouse-url".into(),
            url.into(),
            "--clickhouse-database".into(),
            db,
        ],
    );
    let (code, _) = http_get(p.http, "/analytics/uves");
    assert_eq!(code, 200);
    p.child.kill().unwrap();
    p.child.wait().unwrap();
}

on_both_backends!(records_survive_restart_uves_resync);
