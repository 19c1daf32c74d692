//! ClickHouse unreachable: the writer goes on, holding at most `max_buffered_rows` rows for
//! the retries and counting what it drops beyond them; when the server comes back, what it
//! held is inserted. Nothing grows without bound and nothing is lost uncounted.

use collector::ingest::{IngestMsg, StoreWriter};
use collector::model::FlowRecordInput;
use collector::stats::Stats;
use collector::store::clickhouse::{self, client::Client, local, writer::ClickHouseWriter, ClickHouseConfig};
use collector::store::Backend;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn rec(k: usize) -> FlowRecordInput {
    FlowRecordInput {
        vrouter: "host1".into(),
        timestamp_us: 1_700_000_000_000_000 + k as i64,
        flowuuid: format!("uuid-{k}"),
        sourcevn: "vn1".into(),
        sourceip: "10.0.0.1".into(),
        destvn: "vn2".into(),
        destip: "10.0.0.2".into(),
        protocol: 17,
        bytes: Some(100),
        packets: Some(1),
        ..Default::default()
    }
}

#[test]
fn an_unreachable_server_bounds_the_buffer_counts_the_loss_and_gets_the_rest() {
    if local::binary().is_none() {
        eprintln!("SKIPPED (ClickHouse backend): clickhouse-server is not installed");
        return;
    }
    // A port where nothing listens yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cfg = ClickHouseConfig {
        url: format!("http://127.0.0.1:{port}"),
        database: "outage".into(),
        batch_size: 10,
        max_buffered_rows: 100,
        timeout: Duration::from_secs(5),
        ..ClickHouseConfig::default()
    };
    let client = Client::new(&cfg.url, &cfg.database, &cfg.user, &cfg.password, cfg.timeout);
    let mut w = ClickHouseWriter::new(client, &cfg).unwrap();
    let stats = Arc::new(Stats::default());
    // 25 batches of 10 samples: 20 rows each (record and series), 500 rows in all.
    for b in 0..25 {
        w.write(&[IngestMsg::Flows((b * 10..b * 10 + 10).map(rec).collect())], &stats);
    }
    let t = Instant::now();
    w.commit(&stats);
    assert!(t.elapsed() < Duration::from_secs(10), "a commit does not wait for a server that is down");
    let buffered = stats.store_rows_buffered.load(Relaxed);
    assert!((1..=100).contains(&buffered), "buffered {buffered}");
    let lost = stats.flow_records_lost.load(Relaxed);
    assert!(lost >= 150, "lost {lost}");
    assert_eq!(stats.store_rows_dropped.load(Relaxed) + buffered, 500);
    assert!(stats.store_retries.load(Relaxed) >= 1);
    assert_eq!(stats.flow_records_stored.load(Relaxed), 0);
    assert_eq!(stats.flow_lookups_failed.load(Relaxed), 250);

    // The server comes back on that port, with the database.
    let server = local::LocalServer::start_on(port).unwrap();
    clickhouse::init_schema(&cfg).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while stats.store_rows_buffered.load(Relaxed) > 0 {
        assert!(Instant::now() < deadline, "still {} rows buffered", stats.store_rows_buffered.load(Relaxed));
        std::thread::sleep(Duration::from_millis(50));
    }
    let stored = stats.flow_records_stored.load(Relaxed);
    assert_eq!(stored + stats.flow_records_lost.load(Relaxed), 250, "every sample stored or counted lost");
    let (store, _w2) = clickhouse::open(&cfg).unwrap();
    let (records, series) = store.flow_counts().unwrap();
    assert_eq!(records, stored);
    assert_eq!(series, stored, "the held series rows went in with their records");
    drop(w);
    drop(server);
}
