//! Collector benchmark: sustained ingest from concurrent Sandesh generators over loopback TCP,
//! then query latency over HTTP on what was stored.
//!
//! ```sh
//! cargo run --release -p collector --example bench -- --generators 4 --records 1000000
//! cargo run --release -p collector --example bench -- --store clickhouse --collectors 2 --records 10000000
//! ```
//!
//! `--store clickhouse` starts a private `clickhouse-server` on loopback (or uses
//! `--clickhouse-url`), makes a fresh database and runs `--collectors` collectors on it, the
//! generators spread over them; queries go to the first. The database size is the files in
//! the data directory (SQLite) or the active parts' `bytes_on_disk` (ClickHouse).
//!
//! Each generator is a thread with its own TCP connection that completes the handshake and
//! sends `FlowLogDataObject` frames of 16 records (encoded by the sandesh crate as it goes,
//! each record a new flow). Ingest rate = records / time from the first frame to the moment the
//! collector has committed the last record. Then each query runs `--query-runs` times over
//! HTTP and the median and maximum latency are printed. Output is one JSON object.

use clap::Parser;
use collector::config::CollectorConfig;
use collector::server::Collector;
use sandesh::{encode_message, FlowLogData, FlowLogDataObject, GeneratorId, SandeshCtrlClientToServer};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
struct Args {
    /// Concurrent generators (TCP connections).
    #[arg(long, default_value_t = 4)]
    generators: usize,
    /// Flow records in total.
    #[arg(long, default_value_t = 1_000_000)]
    records: usize,
    /// Runs of each query.
    #[arg(long, default_value_t = 20)]
    query_runs: usize,
    /// Data directory (default: a new temporary directory, removed afterwards).
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
    /// Print human-readable lines instead of JSON.
    #[arg(long)]
    text: bool,
    /// The store: sqlite or clickhouse.
    #[arg(long, default_value = "sqlite")]
    store: collector::config::StoreKind,
    /// Collectors sharing the store (ClickHouse only).
    #[arg(long, default_value_t = 1)]
    collectors: usize,
    /// An existing ClickHouse server (default: a private one on loopback).
    #[arg(long)]
    clickhouse_url: Option<String>,
    /// Flow samples per ClickHouse insert.
    #[arg(long, default_value_t = 20_000)]
    clickhouse_batch_size: usize,
}

fn now_us() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as i64
}

fn generator(addr: SocketAddr, g: usize, records: usize) -> std::io::Result<()> {
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    let id = GeneratorId {
        source: format!("bench-host{g}"),
        module: "contrail-vrouter-agent".into(),
        node_type: "Compute".into(),
        instance_id: "0".into(),
    };
    let hello = SandeshCtrlClientToServer {
        source: id.source.clone(),
        module_name: id.module.clone(),
        sucessful_connections: 1,
        uve_types: vec![],
        pid: 1,
        http_port: 0,
        node_type_name: id.node_type.clone(),
        instance_id_name: id.instance_id.clone(),
    };
    let mut out = Vec::new();
    let mut scratch = String::new();
    let h = id.header::<SandeshCtrlClientToServer>(now_us(), 0, sandesh::CTRL_LEVEL, 0);
    encode_message(&mut out, &mut scratch, &h, &hello).unwrap();
    s.write_all(&out)?;
    let mut dec = sandesh::FrameDecoder::new();
    let mut buf = [0u8; 4096];
    loop {
        if dec.next_frame().unwrap().is_some() {
            break;
        }
        let n = s.read(&mut buf)?;
        assert!(n > 0, "collector closed the handshake");
        dec.push(&buf[..n]);
    }
    let mut seq = 0;
    let mut k = 0;
    while k < records {
        out.clear();
        // Coalesce about 64 KiB of frames per write, as a real sender's queue would.
        while out.len() < 64 * 1024 && k < records {
            let n = 16.min(records - k);
            let t = now_us();
            let flowdata = (k..k + n)
                .map(|i| {
                    let mut f = FlowLogData::new(
                        format!("{g:08x}-0000-4000-8000-{i:012x}"),
                        1,
                        format!("default-domain:bench:vn{}", i % 16),
                        std::net::IpAddr::from([10, (i >> 16) as u8, (i >> 8) as u8, i as u8]),
                        "default-domain:bench:vn-dst".into(),
                        std::net::IpAddr::from([10, 200, (g % 256) as u8, 1]),
                        if i % 3 == 0 { 17 } else { 6 },
                        (1024 + i % 60000) as u16,
                        80,
                    );
                    f.setup_time = Some(t - 1_000_000);
                    f.bytes = Some((i % 10_000) as i64 * 64);
                    f.packets = Some((i % 10_000) as i64);
                    f.diff_bytes = f.bytes;
                    f.diff_packets = f.packets;
                    f.action = Some("pass|mirror".into());
                    f.analyzer_name = Some("default-domain:bench:analyzer".into());
                    f.mirror_bytes = f.bytes;
                    f.mirror_packets = f.packets;
                    f.vrouter_ip = Some("10.10.0.1".into());
                    f
                })
                .collect();
            seq += 1;
            let h = id.header::<FlowLogDataObject>(t, seq, 6, 0);
            encode_message(&mut out, &mut scratch, &h, &FlowLogDataObject { flowdata }).unwrap();
            k += n;
        }
        s.write_all(&out)?;
    }
    Ok(())
}

fn http_post(addr: SocketAddr, path: &str, body: &str) -> (u16, Value) {
    let (code, text) = collector::client::request(&addr.to_string(), "POST", path, None, Some(body)).unwrap();
    (code, serde_json::from_str(&text).unwrap())
}

fn main() {
    let args = Args::parse();
    use collector::config::StoreKind;
    assert!(args.collectors >= 1, "--collectors must be at least 1");
    assert!(args.collectors == 1 || args.store == StoreKind::Clickhouse, "several collectors need --store clickhouse");
    let tmp;
    let dir = match &args.data_dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::tempdir().unwrap();
            tmp.path().to_owned()
        }
    };
    let mut cfg = CollectorConfig {
        sandesh_listen: "127.0.0.1:0".into(),
        http_listen: "127.0.0.1:0".into(),
        data_dir: dir.clone(),
        hostname: "bench".into(),
        query_max_rows: 2_000_000,
        store: args.store,
        clickhouse_batch_size: args.clickhouse_batch_size,
        clickhouse_max_buffered_rows: 4 * args.clickhouse_batch_size.max(500_000),
        clickhouse_flush_ms: 200,
        ..CollectorConfig::default()
    };
    let _server;
    if args.store == StoreKind::Clickhouse {
        cfg.clickhouse_url = match &args.clickhouse_url {
            Some(u) => u.clone(),
            None => {
                let s = collector::store::clickhouse::local::LocalServer::start().unwrap();
                let url = s.url().to_owned();
                _server = s;
                url
            }
        };
        cfg.clickhouse_database = collector::store::clickhouse::local::fresh_database("bench");
        collector::store::init_schema(&cfg).unwrap();
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let cs: Vec<Collector> = (0..args.collectors)
        .map(|k| {
            let c = CollectorConfig { hostname: format!("bench-{k}"), ..cfg.clone() };
            rt.block_on(Collector::start(&c)).unwrap()
        })
        .collect();
    let http_addr = cs[0].http_addr;
    let stored = || cs.iter().map(|c| c.stats.flow_records_stored.load(Relaxed)).sum::<u64>();
    let sum = |f: fn(&collector::stats::Stats) -> u64| cs.iter().map(|c| f(&c.stats)).sum::<u64>();

    let per = args.records / args.generators;
    let total = per * args.generators;
    let t0 = Instant::now();
    let threads: Vec<_> = (0..args.generators)
        .map(|g| {
            let addr = cs[g % cs.len()].sandesh_addr;
            std::thread::spawn(move || generator(addr, g, per))
        })
        .collect();
    for t in threads {
        t.join().unwrap().unwrap();
    }
    let sent = t0.elapsed();
    while stored() < total as u64 {
        assert_eq!(sum(|s| s.flow_records_lost.load(Relaxed)), 0, "records lost");
        std::thread::sleep(Duration::from_millis(5));
    }
    let ingest = t0.elapsed();
    let rate = total as f64 / ingest.as_secs_f64();
    let backpressure = sum(|s| s.ingest_backpressure.load(Relaxed));
    let batches = sum(|s| s.writer_batches.load(Relaxed));
    let db_bytes: u64 = match args.store {
        StoreKind::Sqlite => std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum(),
        StoreKind::Clickhouse => {
            let client = collector::store::clickhouse::client::Client::new(
                &cfg.clickhouse_url,
                &cfg.clickhouse_database,
                &cfg.clickhouse_user,
                &cfg.clickhouse_password,
                Duration::from_secs(60),
            );
            let sql = format!(
                "SELECT sum(bytes_on_disk) FROM system.parts WHERE database = '{}' AND active",
                cfg.clickhouse_database
            );
            client.select(&sql).unwrap()[0][0].as_u64().unwrap_or(0)
        }
    };

    let queries: Vec<(&str, Value)> = vec![
        (
            "record: point lookup by UuidKey",
            json!({"table": "FlowRecordTable", "start_time": "now-1h", "end_time": "now",
                   "select_fields": ["UuidKey", "agg-bytes", "agg-mir-bytes", "analyzer_name"],
                   "where": [[{"name": "UuidKey", "value": "00000001-0000-4000-8000-000000001234", "op": 1}]]}),
        ),
        (
            "record: where sourcevn AND sport range, limit 100",
            json!({"table": "FlowRecordTable", "start_time": "now-1h", "end_time": "now",
                   "select_fields": ["UuidKey", "sourceip", "sport", "agg-bytes", "agg-packets", "agg-mir-bytes"],
                   "where": [[{"name": "sourcevn", "value": "default-domain:bench:vn3", "op": 1},
                              {"name": "sport", "value": 2000, "value2": 3000, "op": 3}]],
                   "limit": 100}),
        ),
        (
            "record: top 10 by agg-bytes (full scan + sort)",
            json!({"table": "FlowRecordTable", "start_time": "now-1h", "end_time": "now",
                   "select_fields": ["UuidKey", "agg-bytes"], "sort_fields": ["agg-bytes"], "sort": 2, "limit": 10}),
        ),
        (
            "series: SUM(bytes), SUM(mir-bytes) by vrouter (full scan + group)",
            json!({"table": "FlowSeriesTable", "start_time": "now-1h", "end_time": "now",
                   "select_fields": ["vrouter", "SUM(bytes)", "SUM(mir-bytes)"]}),
        ),
        (
            "series: last 10 s window, SUM(packets) by sourcevn",
            json!({"table": "FlowSeriesTable", "start_time": "now-10s", "end_time": "now",
                   "select_fields": ["sourcevn", "SUM(packets)"]}),
        ),
    ];
    let mut qres = Vec::new();
    for (name, q) in &queries {
        let body = q.to_string();
        let mut lat = Vec::new();
        let mut rows = 0;
        for _ in 0..args.query_runs {
            let t = Instant::now();
            let (code, v) = http_post(http_addr, "/analytics/query", &body);
            lat.push(t.elapsed().as_secs_f64() * 1e3);
            assert_eq!(code, 200, "{name}: {v}");
            rows = v["value"].as_array().unwrap().len();
        }
        lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
        qres.push(json!({"query": name, "rows": rows, "median_ms": (lat[lat.len() / 2] * 100.0).round() / 100.0,
                         "max_ms": (lat[lat.len() - 1] * 100.0).round() / 100.0, "runs": lat.len()}));
    }
    let out = json!({
        "store": format!("{:?}", args.store).to_lowercase(),
        "collectors": args.collectors,
        "generators": args.generators,
        "records": total,
        "send_s": (sent.as_secs_f64() * 1000.0).round() / 1000.0,
        "ingest_s": (ingest.as_secs_f64() * 1000.0).round() / 1000.0,
        "ingest_records_per_s": rate.round(),
        "writer_batches": batches,
        "ingest_backpressure_waits": backpressure,
        "database_bytes": db_bytes,
        "bytes_per_record": (db_bytes as f64 / total as f64).round(),
        "queries": qres,
    });
    if args.text {
        println!(
            "{} with {} collector(s): {total} records from {} generators in {:.2} s = {:.0} records/s (writer batches {batches}, back-pressure waits {backpressure}, database {} MiB)",
            out["store"].as_str().unwrap_or_default(),
            args.collectors,
            args.generators,
            ingest.as_secs_f64(),
            rate,
            db_bytes >> 20
        );
        for q in out["queries"].as_array().unwrap() {
            println!("query {}: {} rows, median {} ms, max {} ms", q["query"], q["rows"], q["median_ms"], q["max_ms"]);
        }
    } else {
        println!("{out}");
    }
    for c in cs {
        rt.block_on(c.stop());
    }
}
