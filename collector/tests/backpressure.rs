//! When storage falls behind, senders wait on the bounded ingest queue instead of growing
//! memory, and nothing is lost once storage catches up.

use collector::ingest::{start_writer, IngestMsg, MAX_BATCH};
use collector::model::FlowRecordInput;
use collector::stats::Stats;
use collector::store::{Backend, SqliteStore};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn rec(k: usize) -> FlowRecordInput {
    FlowRecordInput {
        vrouter: "host1".into(),
        timestamp_us: 1_700_000_000_000_000,
        flowuuid: format!("uuid-{k}"),
        direction_ing: 1,
        sourcevn: "vn1".into(),
        sourceip: "10.0.0.1".into(),
        destvn: "vn2".into(),
        destip: "10.0.0.2".into(),
        protocol: 17,
        sport: 1000,
        dport: 2000,
        bytes: Some(100),
        packets: Some(1),
        ..Default::default()
    }
}

#[test]
fn a_stalled_writer_blocks_senders_at_the_queue_bound() {
    let dir = tempfile::tempdir().unwrap();
    let (store, writer) = SqliteStore::open(dir.path()).unwrap();
    let stats = Arc::new(Stats::default());
    const CAP: usize = 4;
    let (ingest, join) = start_writer(Box::new(writer), CAP, stats.clone()).unwrap();

    // Stall the writer: another connection holds the database's write lock.
    let blocker = rusqlite::Connection::open(store.path()).unwrap();
    blocker.execute_batch("BEGIN EXCLUSIVE").unwrap();

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let sent = Arc::new(AtomicUsize::new(0));
    // More than the writer's batch plus the queue can hold.
    const N: usize = 2 * (MAX_BATCH + CAP);
    let task = {
        let ingest = ingest.clone();
        let sent = sent.clone();
        rt.spawn(async move {
            for k in 0..N {
                assert!(ingest.send(IngestMsg::Flows(vec![rec(k)])).await);
                sent.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    // The writer holds at most one batch (taken before it stalled), the queue CAP more, and
    // the sender's next message waits.
    let stalled_at = sent.load(Ordering::SeqCst);
    assert!(stalled_at <= MAX_BATCH + CAP, "sent {stalled_at} with a stalled writer");
    assert!(stalled_at >= CAP, "the queue should have taken {CAP}, took {stalled_at}");
    assert!(ingest.queued() <= CAP);
    assert!(stats.ingest_backpressure.load(Ordering::Relaxed) >= 1);
    assert_eq!(stats.flow_records_stored.load(Ordering::Relaxed), 0);

    // Storage catches up: every record arrives.
    blocker.execute_batch("ROLLBACK").unwrap();
    rt.block_on(task).unwrap();
    assert!(rt.block_on(ingest.flush()));
    assert_eq!(sent.load(Ordering::SeqCst), N);
    assert_eq!(stats.flow_records_stored.load(Ordering::Relaxed), N as u64);
    assert_eq!(stats.store_errors.load(Ordering::Relaxed), 0);
    assert_eq!(store.flow_counts().unwrap(), (N as u64, N as u64));
    drop(ingest);
    join.join().unwrap();
}
