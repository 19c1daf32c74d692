//! Property test: random insert / lookup / account / set_action / delete / reclaim
//! sequences on a small table (two buckets, eight overflow entries) against a model, so
//! overflow, full-table, slot reuse and generation checks are all exercised.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

use flow_table::*;
use proptest::prelude::*;

const MAIN: u32 = 16;
const OFLOW: u32 = 8;
const KEYS: u32 = 48;

fn key(i: u32) -> FlowKey {
    FlowKey::v4(1, 6, Ipv4Addr::from(0xc0a8_0000 + i), Ipv4Addr::new(10, 9, 8, 7), 4000 + i as u16, 443)
}

#[derive(Clone, Debug)]
enum Op {
    Hold(u32),
    Account(u32, u32),
    SetAction(u32, u8),
    StaleSetAction(u32),
    Delete(u32),
    Reclaim,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..KEYS).prop_map(Op::Hold),
        3 => (0..KEYS, 1..2000u32).prop_map(|(k, b)| Op::Account(k, b)),
        2 => (0..KEYS, 0..4u8).prop_map(|(k, a)| Op::SetAction(k, a)),
        1 => (0..KEYS).prop_map(Op::StaleSetAction),
        3 => (0..KEYS).prop_map(Op::Delete),
        1 => Just(Op::Reclaim),
    ]
}

#[derive(Default)]
struct Model {
    /// Published flows: key -> (index, generation).
    live: HashMap<u32, (u32, Gen)>,
    /// Delete-marked slots awaiting reclaim.
    retired: Vec<u32>,
    /// Slots in use (live or retired).
    used: HashSet<u32>,
    /// Last generation of each slot (0 = never used).
    gen: HashMap<u32, Gen>,
    counters: HashMap<u32, (u64, u64)>,
}

impl Model {
    fn oflow_used(&self) -> u32 {
        self.used.iter().filter(|&&i| i >= MAIN).count() as u32
    }
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let d = tempfile::tempdir().unwrap();
    let cfg = FlowTableConfig { main_entries: MAIN, overflow_entries: OFLOW, max_lcores: 1 };
    let t = FlowTable::create(&d.path().join("flow"), &cfg).unwrap();
    let mut m = Model::default();
    for op in ops {
        match op {
            Op::Hold(k) => {
                let key = key(k);
                let res = t.lookup_or_hold(&key, key.hash(), 1);
                if let Some(&(idx, _)) = m.live.get(&k) {
                    prop_assert_eq!(res.unwrap(), Lookup::Hit(idx));
                    continue;
                }
                let b = t.bucket_of(key.hash());
                let first_free = (b * 8..b * 8 + 8).find(|i| !m.used.contains(i));
                match res {
                    Ok(Lookup::Created(idx)) => {
                        match first_free {
                            Some(f) => prop_assert_eq!(idx, f, "lowest free main slot of bucket {}", b),
                            None => {
                                prop_assert!((MAIN..MAIN + OFLOW).contains(&idx));
                                prop_assert!(!m.used.contains(&idx));
                            }
                        }
                        let g = m.gen.entry(idx).or_insert(0);
                        *g = g.wrapping_add(1);
                        prop_assert_eq!(t.entry(idx).unwrap().gen(), *g, "reuse bumps the generation");
                        m.live.insert(k, (idx, *g));
                        m.used.insert(idx);
                        m.counters.insert(k, (0, 0));
                    }
                    Err(FlowTableError::TableFull { bucket }) => {
                        prop_assert_eq!(bucket, b);
                        prop_assert!(first_free.is_none() && m.oflow_used() == OFLOW, "TableFull with room");
                    }
                    other => prop_assert!(false, "unexpected {:?}", other),
                }
            }
            Op::Account(k, bytes) => {
                if let Some(&(idx, _)) = m.live.get(&k) {
                    t.account(idx, bytes, 2);
                    let c = m.counters.get_mut(&k).unwrap();
                    c.0 += 1;
                    c.1 += u64::from(bytes);
                    let s = t.snapshot(idx).unwrap().unwrap();
                    prop_assert_eq!((s.packets, s.bytes), *c);
                    prop_assert_eq!(s.key, key(k));
                }
            }
            Op::SetAction(k, a) => {
                if let Some(&(idx, g)) = m.live.get(&k) {
                    let a = Action::from_u8(a).unwrap();
                    t.set_action(idx, g, &FlowUpdate::new(a)).unwrap();
                    prop_assert_eq!(t.entry(idx).unwrap().action(), a);
                }
            }
            Op::StaleSetAction(k) => {
                if let Some(&(idx, g)) = m.live.get(&k) {
                    let r = t.set_action(idx, g.wrapping_sub(1), &FlowUpdate::new(Action::Drop));
                    let gen_mismatch = matches!(r, Err(FlowTableError::GenMismatch { .. }));
                    prop_assert!(gen_mismatch);
                }
            }
            Op::Delete(k) => match m.live.remove(&k) {
                Some((idx, g)) => {
                    let stale = t.mark_delete(idx, g.wrapping_add(1));
                    let gen_mismatch = matches!(stale, Err(FlowTableError::GenMismatch { .. }));
                    prop_assert!(gen_mismatch);
                    t.mark_delete(idx, g).unwrap();
                    m.retired.push(idx);
                }
                None => {
                    let key = key(k);
                    prop_assert_eq!(t.lookup(&key, key.hash()), None);
                }
            },
            Op::Reclaim => {
                let mut freed = Vec::new();
                let r = t.reclaim_with(|s| freed.push(s.index));
                prop_assert_eq!(r.freed, m.retired.len());
                prop_assert_eq!(r.pending, 0);
                freed.sort_unstable();
                let mut want = std::mem::take(&mut m.retired);
                want.sort_unstable();
                prop_assert_eq!(&freed, &want);
                for i in want {
                    m.used.remove(&i);
                }
            }
        }
        // Invariants after every step.
        for k in 0..KEYS {
            let key = key(k);
            prop_assert_eq!(t.lookup(&key, key.hash()), m.live.get(&k).map(|&(i, _)| i), "lookup of key {}", k);
        }
        let st = t.stats();
        prop_assert_eq!(st.used_entries, m.used.len() as u64);
        prop_assert_eq!(st.used_overflow_entries, u64::from(m.oflow_used()));
        let active: HashSet<u32> = t.iter_active().map(|(i, _)| i).collect();
        prop_assert_eq!(&active, &m.used);
        for b in 0..MAIN / 8 {
            let chain = t.overflow_chain(b * 8 + 7);
            for &o in &chain {
                prop_assert!(m.used.contains(&o) && !m.retired.contains(&o), "chain holds only live entries");
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn table_matches_model(ops in proptest::collection::vec(op(), 1..160)) {
        run(ops)?;
    }
}
