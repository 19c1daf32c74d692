//! Multi-process stress test: two writer lcores account packets on a small table while an
//! agent thread churns flows (create, delete, reclaim: slots are reused by other keys), and
//! a reader in another process (`flow-table-stress-reader`) snapshots the table
//! continuously, checking that the counters it copies always belong to the key it copies.
//! At the end every counter equals exactly the number of updates applied.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flow_table::*;

/// Stable flows (never deleted): ids `0..STABLE`.
const STABLE: u32 = 64;
/// Churned flows: ids `CHURN_BASE..CHURN_BASE + CHURN`.
const CHURN_BASE: u32 = 1000;
const CHURN: u32 = 1500;

fn key(id: u32) -> FlowKey {
    FlowKey::v4(7, 17, Ipv4Addr::from(0x0a00_0000 + id), Ipv4Addr::new(192, 168, 0, 1), 10_000, 4789)
}

/// Same table as the reader's: the first `n` primes above 10 000.
fn primes(n: usize) -> Vec<u64> {
    let mut out = Vec::with_capacity(n);
    let mut c = 10_001u64;
    while out.len() < n {
        if (2..).take_while(|d| d * d <= c).all(|d| !c.is_multiple_of(d)) {
            out.push(c);
        }
        c += 2;
    }
    out
}

/// xorshift64*: deterministic per-thread randomness without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u32) -> u32 {
        (self.next() >> 33) as u32 % n
    }
}

/// The reader process, killed if the test panics before it is collected.
struct KillOnDrop(Option<Child>);
impl KillOnDrop {
    fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("reader not yet collected")
    }
    fn take(&mut self) -> Child {
        self.0.take().expect("reader not yet collected")
    }
}
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[derive(Default)]
struct WriterCounts {
    /// Packets accounted per flow id (all incarnations).
    packets: HashMap<u32, u64>,
    mirror_packets: HashMap<u32, u64>,
    duplicates: u64,
}

fn writer(t: Arc<FlowTable>, lcore: usize, stop: Arc<AtomicBool>, weights: Arc<Vec<u64>>) -> WriterCounts {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (lcore as u64 + 1));
    let mut c = WriterCounts::default();
    let mut now = 0u64;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..32 {
            now += 1;
            if rng.below(4) != 0 {
                let id = rng.below(STABLE);
                let k = key(id);
                match t.lookup_or_hold(&k, k.hash(), now).expect("room for stable flows") {
                    Lookup::Hit(idx) => {
                        // Both writers count the same stable flows: whichever counts a flow
                        // first owns its plain pair, the other adds to the shared pair, and
                        // now and then a writer uses the any-thread path.
                        if rng.below(8) == 0 {
                            t.account(idx, weights[id as usize] as u32, now);
                        } else {
                            t.account_as(lcore, idx, weights[id as usize] as u32, now);
                        }
                        *c.packets.entry(id).or_default() += 1;
                        if id.is_multiple_of(4) {
                            t.account_mirror(idx, false, weights[id as usize] as u32);
                            *c.mirror_packets.entry(id).or_default() += 1;
                        }
                    }
                    Lookup::Created(_) => c.duplicates += 1,
                }
            } else {
                let id = CHURN_BASE + rng.below(CHURN);
                let k = key(id);
                // Mostly count existing churned flows; sometimes create them too, so both
                // writers race to insert the same keys while the agent deletes them.
                let found = if rng.below(8) == 0 {
                    t.lookup_or_hold(&k, k.hash(), now).ok().map(|l| l.index())
                } else {
                    t.lookup(&k, k.hash())
                };
                if let Some(idx) = found {
                    t.account_as(lcore, idx, weights[id as usize] as u32, now);
                    *c.packets.entry(id).or_default() += 1;
                }
            }
        }
        t.quiescent(lcore);
    }
    t.lcore_offline(lcore);
    c
}

#[derive(Default)]
struct AgentCounts {
    /// Final packets of reclaimed incarnations, per flow id.
    reclaimed: HashMap<u32, u64>,
    creates: u64,
    deletes: u64,
    freed: u64,
    max_oflow: u64,
    bad_final: Vec<String>,
}

fn reclaim_into(t: &FlowTable, a: &mut AgentCounts, weights: &[u64]) -> ReclaimStats {
    let mut bad = Vec::new();
    let mut add = Vec::new();
    let r = t.reclaim_with(|s| {
        let id = match s.key.src_ip() {
            std::net::IpAddr::V4(v) => u32::from(v) - 0x0a00_0000,
            _ => u32::MAX,
        };
        // After the grace period nobody adds any more: final counters are exact.
        if s.bytes != s.packets * weights[id as usize] {
            bad.push(format!("final counters of {:?}: {} packets, {} bytes", s.key, s.packets, s.bytes));
        }
        add.push((id, s.packets));
    });
    for (id, p) in add {
        *a.reclaimed.entry(id).or_default() += p;
    }
    a.bad_final.extend(bad);
    a.freed += r.freed as u64;
    r
}

fn agent(t: Arc<FlowTable>, stop: Arc<AtomicBool>, weights: Arc<Vec<u64>>) -> AgentCounts {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut a = AgentCounts::default();
    let mut ops = 0u64;
    let mut full_streak = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let id = CHURN_BASE + rng.below(CHURN);
        let k = key(id);
        match t.lookup(&k, k.hash()) {
            Some(idx) => {
                let gen = t.entry(idx).unwrap().gen();
                if t.mark_delete(idx, gen).is_ok() {
                    a.deletes += 1;
                }
            }
            None => match t.lookup_or_hold(&k, k.hash(), ops) {
                Ok(Lookup::Created(idx)) => {
                    full_streak = 0;
                    let gen = t.entry(idx).unwrap().gen();
                    t.set_action(idx, gen, &FlowUpdate::new(Action::Forward)).unwrap();
                    a.creates += 1;
                }
                Ok(Lookup::Hit(_)) => {}
                // Full of deleted flows waiting for the writers' next quiescent point: let
                // them run (on a small machine they share CPUs with this thread).
                Err(FlowTableError::TableFull { .. }) => {
                    full_streak += 1;
                    if full_streak.is_multiple_of(32) {
                        std::thread::yield_now();
                    }
                }
                Err(e) => panic!("agent: {e}"),
            },
        }
        ops += 1;
        if ops.is_multiple_of(16) {
            reclaim_into(&t, &mut a, &weights);
            a.max_oflow = a.max_oflow.max(t.stats().used_overflow_entries);
        }
    }
    a
}

#[test]
fn two_writers_agent_churn_and_a_reader_process() {
    let secs: u64 = std::env::var("FLOW_STRESS_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flow");
    let stop_file = dir.path().join("stop");
    // Small on purpose: slots and overflow entries are reused by other keys all the time.
    let cfg = FlowTableConfig { main_entries: 512, overflow_entries: 256, max_lcores: 2 };
    let t = Arc::new(FlowTable::create(&path, &cfg).unwrap());
    let weights = Arc::new(primes(4096));
    for id in 0..STABLE {
        let k = key(id);
        let idx = t.lookup_or_hold(&k, k.hash(), 0).unwrap().index();
        t.set_action(idx, t.entry(idx).unwrap().gen(), &FlowUpdate::new(Action::Forward)).unwrap();
    }

    let mut reader = KillOnDrop(Some(
        Command::new(env!("CARGO_BIN_EXE_flow-table-stress-reader"))
            .arg(&path)
            .arg(&stop_file)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning the reader process"),
    ));

    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|l| {
            let (t, s, w) = (Arc::clone(&t), Arc::clone(&stop), Arc::clone(&weights));
            std::thread::spawn(move || writer(t, l, s, w))
        })
        .collect();
    let agent_h = {
        let (t, s, w) = (Arc::clone(&t), Arc::clone(&stop), Arc::clone(&weights));
        std::thread::spawn(move || agent(t, s, w))
    };
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_millis(50));
        if let Ok(Some(st)) = reader.child().try_wait() {
            stop.store(true, Ordering::Relaxed);
            let out = reader.take().wait_with_output().unwrap();
            panic!(
                "reader exited early ({st}): {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    let counts: Vec<WriterCounts> = writers.into_iter().map(|h| h.join().unwrap()).collect();
    let mut a = agent_h.join().unwrap();

    // Let the reader check the final state too, then stop it.
    std::thread::sleep(Duration::from_millis(100));
    std::fs::write(&stop_file, b"").unwrap();
    let out = reader.take().wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}{stderr}");
    assert!(out.status.success(), "reader process failed: {stdout}{stderr}");
    let snapshots: u64 =
        stdout.split_whitespace().skip_while(|w| *w != "passes,").nth(1).and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(snapshots > 1000, "the reader checked only {snapshots} snapshots");

    assert_eq!(counts.iter().map(|c| c.duplicates).sum::<u64>(), 0, "a stable flow was not found");
    let total = |id: u32| counts.iter().map(|c| c.packets.get(&id).copied().unwrap_or(0)).sum::<u64>();
    let total_m = |id: u32| counts.iter().map(|c| c.mirror_packets.get(&id).copied().unwrap_or(0)).sum::<u64>();

    // Stable flows: exact totals.
    let mut updates = 0;
    for id in 0..STABLE {
        let k = key(id);
        let idx = t.lookup(&k, k.hash()).expect("stable flow present");
        let s = t.snapshot(idx).unwrap().unwrap();
        let w = weights[id as usize];
        assert_eq!(s.packets, total(id), "flow {id}: packets");
        assert_eq!(s.bytes, total(id) * w, "flow {id}: bytes");
        assert_eq!((s.mirror_packets, s.mirror_bytes), (total_m(id), total_m(id) * w), "flow {id}: mirror");
        updates += s.packets;
    }
    assert!(updates > 10_000, "only {updates} updates on stable flows");

    // Churned flows: delete what is left, reclaim (the writers are offline), and compare
    // the final counters of every incarnation with what the writers applied.
    for (idx, s) in t.iter_active() {
        if s.flags & flags::DELETE_MARKED == 0
            && s.key != key(0)
            && u32::from(match s.key.src_ip() {
                std::net::IpAddr::V4(v) => v,
                _ => unreachable!(),
            }) >= 0x0a00_0000 + CHURN_BASE
        {
            t.mark_delete(idx, s.gen).unwrap();
        }
    }
    let r = reclaim_into(&t, &mut a, &weights);
    assert_eq!(r.pending, 0);
    assert!(a.bad_final.is_empty(), "{:?}", &a.bad_final[..a.bad_final.len().min(5)]);
    let mut churn_updates = 0;
    for id in CHURN_BASE..CHURN_BASE + CHURN {
        let got = a.reclaimed.get(&id).copied().unwrap_or(0);
        assert_eq!(got, total(id), "churned flow {id}: final counters of its incarnations");
        churn_updates += got;
    }
    let st = t.stats();
    eprintln!(
        "stress: {updates} updates on stable flows, {churn_updates} on churned flows; agent created {} deleted {} freed {}; \
         at most {} overflow entries in use; table: created {} deleted {} used {} oflow {} races {}",
        a.creates, a.deletes, a.freed, a.max_oflow, st.created, st.deleted, st.used_entries, st.used_overflow_entries,
        st.insert_races_lost
    );
    assert!(a.max_oflow > 0, "the churn never reached the overflow area");
    assert!(a.creates > 1000 && a.freed > 1000, "not enough churn: {} creates, {} freed", a.creates, a.freed);
    assert_eq!(st.used_entries, u64::from(STABLE));
}
