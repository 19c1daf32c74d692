//! Functional tests of the flow table through its public API.

use std::net::Ipv4Addr;
use std::path::Path;

use flow_table::*;

fn key(i: u32) -> FlowKey {
    FlowKey::v4(1, 17, Ipv4Addr::from(0x0a00_0000 + i), Ipv4Addr::new(10, 1, 0, 1), (1000 + i % 50000) as u16, 80)
}

fn cfg(main: u32, oflow: u32) -> FlowTableConfig {
    FlowTableConfig { main_entries: main, overflow_entries: oflow, max_lcores: 4 }
}

fn table(dir: &Path, main: u32, oflow: u32) -> FlowTable {
    FlowTable::create(&dir.join("flow"), &cfg(main, oflow)).unwrap()
}

fn hold(t: &FlowTable, k: &FlowKey) -> Lookup {
    t.lookup_or_hold(k, k.hash(), 100).unwrap()
}

#[test]
fn config_rounds_like_tf() {
    let c = FlowTableConfig { main_entries: 524288, overflow_entries: 0, max_lcores: 8 };
    assert_eq!(c.resolved_entries().unwrap(), (524288, 105472)); // tf default: 105 472 overflow
    let c = FlowTableConfig { main_entries: 1001, overflow_entries: 0, max_lcores: 8 };
    assert_eq!(c.resolved_entries().unwrap(), (1008, 1024));
    assert!(FlowTableConfig { main_entries: 0, ..c.clone() }.resolved_entries().is_err());
    assert!(FlowTableConfig { max_lcores: 0, ..c.clone() }.resolved_entries().is_err());
    assert!(FlowTableConfig { max_lcores: MAX_LCORES + 1, ..c }.resolved_entries().is_err());
}

#[test]
fn insert_lookup_account_delete_reuse() {
    let d = tempfile::tempdir().unwrap();
    // One bucket: every key competes for the same 8 main slots.
    let t = table(d.path(), 8, 64);
    let a = key(1);
    assert_eq!(t.lookup(&a, a.hash()), None);
    let Lookup::Created(ia) = hold(&t, &a) else { panic!("expected Created") };
    assert_eq!(hold(&t, &a), Lookup::Hit(ia));
    assert_eq!(t.lookup(&a, a.hash()), Some(ia));
    let e = t.entry(ia).unwrap();
    let st = e.state();
    assert_eq!(st.action(), Action::Hold);
    assert_eq!(st.flags, flags::ACTIVE | flags::NEW_FLOW | flags::HOLD);
    assert_eq!(st.gen, 1);
    assert_eq!(e.key(), Some(a));
    assert_eq!(e.rflow(), None);
    assert_eq!((e.mirror(), e.sec_mirror()), (NO_MIRROR, NO_MIRROR));
    assert_eq!(e.underlay_sport(), tunnel_source_port(a.hash()));

    t.account(ia, 100, 5);
    t.account(ia, 50, 7);
    t.account_mirror(ia, false, 10);
    t.account_mirror(ia, true, 20);
    t.set_tcp_flags(ia, tcp_flags::SYN);
    t.set_tcp_flags(ia, tcp_flags::ESTABLISHED);
    t.update_dp_flags(ia, 0, flags::NEW_FLOW).unwrap();
    let s = t.snapshot(ia).unwrap().unwrap();
    assert_eq!((s.packets, s.bytes, s.last_seen, s.setup_time), (2, 150, 7, 100));
    assert_eq!((s.mirror_packets, s.mirror_bytes, s.sec_mirror_packets, s.sec_mirror_bytes), (1, 10, 1, 20));
    assert_eq!(s.tcp_flags, tcp_flags::SYN | tcp_flags::ESTABLISHED);
    assert_eq!(s.flags, flags::ACTIVE | flags::HOLD);
    assert_eq!((s.key, s.index, s.gen, s.bucket), (a, ia, 1, 0));

    t.set_action(ia, 1, &FlowUpdate::new(Action::Forward)).unwrap();
    assert_eq!(t.entry(ia).unwrap().action(), Action::Forward);
    assert_eq!(t.entry(ia).unwrap().flags() & flags::HOLD, 0);

    t.mark_delete(ia, 1).unwrap();
    assert_eq!(t.lookup(&a, a.hash()), None);
    let s = t.snapshot(ia).unwrap().unwrap();
    assert_ne!(s.flags & flags::DELETE_MARKED, 0);
    assert_eq!(s.action, Action::Drop);
    assert!(matches!(t.mark_delete(ia, 1), Err(FlowTableError::DeleteMarked { .. })));

    // No lcore is online: one reclaim frees it; the final counters are handed over.
    let mut finals = Vec::new();
    let r = t.reclaim_with(|s| finals.push((s.index, s.packets, s.bytes)));
    assert_eq!(r, ReclaimStats { freed: 1, pending: 0 });
    assert_eq!(finals, vec![(ia, 2, 150)]);
    assert_eq!(t.snapshot(ia).unwrap(), None);

    // The slot is reused by another key at the next generation, with zeroed counters.
    let b = key(2);
    let Lookup::Created(ib) = hold(&t, &b) else { panic!() };
    assert_eq!(ib, ia, "the first free slot of the bucket is reused");
    let s = t.snapshot(ib).unwrap().unwrap();
    assert_eq!((s.key, s.gen, s.packets, s.bytes, s.mirror_packets), (b, 2, 0, 0, 0));
    // A stale handle (generation 1) no longer works on it.
    assert!(matches!(
        t.set_action(ib, 1, &FlowUpdate::new(Action::Drop)),
        Err(FlowTableError::GenMismatch { expected: 1, found: 2, .. })
    ));
    assert!(matches!(t.mark_delete(ib, 1), Err(FlowTableError::GenMismatch { .. })));
}

#[test]
fn set_action_checks_and_stats() {
    let d = tempfile::tempdir().unwrap();
    let t = table(d.path(), 64, 64);
    let k = key(7);
    let i = hold(&t, &k).index();
    let g = t.entry(i).unwrap().gen();
    assert!(matches!(
        t.set_action(t.capacity(), g, &FlowUpdate::new(Action::Drop)),
        Err(FlowTableError::BadIndex { .. })
    ));
    let free = (0..t.capacity()).find(|&j| j != i).unwrap();
    assert!(matches!(t.set_action(free, 0, &FlowUpdate::new(Action::Drop)), Err(FlowTableError::NotActive { .. })));
    let bad = FlowUpdate { set_flags: flags::ACTIVE, ..FlowUpdate::new(Action::Forward) };
    assert!(matches!(t.set_action(i, g, &bad), Err(FlowTableError::InvalidArgument(_))));
    let no_mirror = FlowUpdate { set_flags: flags::MIRROR, ..FlowUpdate::new(Action::Forward) };
    assert!(matches!(t.set_action(i, g, &no_mirror), Err(FlowTableError::InvalidArgument(_))));
    assert!(t.update_dp_flags(i, flags::ACTIVE, 0).is_err());

    let up = FlowUpdate {
        set_flags: flags::MIRROR,
        mirror: Some(3),
        sec_mirror: Some(4),
        src_nh: Some(42),
        underlay_sport: Some(50000),
        ..FlowUpdate::drop(FLOW_DR_POLICY)
    };
    t.set_action(i, g, &up).unwrap();
    let s = t.snapshot(i).unwrap().unwrap();
    assert_eq!(
        (s.action, s.drop_reason, s.mirror, s.sec_mirror, s.src_nh, s.underlay_sport),
        (Action::Drop, 0x15, 3, 4, 42, 50000)
    );
    assert_eq!(s.flags, flags::ACTIVE | flags::NEW_FLOW | flags::MIRROR);
    assert_eq!(flow_drop_reason_name(s.drop_reason), "Policy");
    // A second update changes an already processed flow; None leaves fields unchanged.
    t.set_action(i, g, &FlowUpdate { clear_flags: flags::MIRROR, ..FlowUpdate::new(Action::Forward) }).unwrap();
    let s = t.snapshot(i).unwrap().unwrap();
    assert_eq!((s.action, s.mirror, s.src_nh, s.flags & flags::MIRROR), (Action::Forward, 3, 42, 0));
    // Back to HOLD (agent re-evaluates), then out again.
    t.set_action(i, g, &FlowUpdate::new(Action::Hold)).unwrap();
    assert_ne!(t.entry(i).unwrap().flags() & flags::HOLD, 0);
    let st = t.stats();
    assert_eq!((st.created, st.processed, st.changed, st.hold_count, st.used_entries), (1, 1, 2, 1, 1));
    t.set_action(i, g, &FlowUpdate::new(Action::Nat)).unwrap();
    t.mark_delete(i, g).unwrap();
    let st = t.stats();
    assert_eq!((st.processed, st.changed, st.deleted, st.hold_count, st.used_entries), (2, 2, 1, 0, 1));
    assert_eq!(t.reclaim().freed, 1);
    assert_eq!(t.stats().used_entries, 0);
    assert!(matches!(t.set_action(i, g, &FlowUpdate::new(Action::Drop)), Err(FlowTableError::NotActive { .. })));
}

#[test]
fn overflow_chain_full_table_and_reuse() {
    let d = tempfile::tempdir().unwrap();
    let t = table(d.path(), 8, 16); // one bucket, 16 overflow entries
    assert_eq!((t.main_entries(), t.overflow_entries(), t.capacity()), (8, 16, 24));
    let mut idx = Vec::new();
    for i in 0..24 {
        let Lookup::Created(x) = hold(&t, &key(i)) else { panic!("key {i} not created") };
        idx.push(x);
    }
    assert!(idx[..8].iter().all(|&x| x < 8), "main slots first: {idx:?}");
    assert!(idx[8..].iter().all(|&x| (8..24).contains(&x)), "then overflow: {idx:?}");
    for i in 0..24 {
        assert_eq!(t.lookup(&key(i), key(i).hash()), Some(idx[i as usize]), "key {i}");
    }
    assert!(matches!(t.lookup_or_hold(&key(99), key(99).hash(), 0), Err(FlowTableError::TableFull { bucket: 0 })));
    // An existing key is still a hit when the table is full.
    assert_eq!(hold(&t, &key(20)), Lookup::Hit(idx[20]));
    let st = t.stats();
    assert_eq!((st.used_entries, st.used_overflow_entries, st.created), (24, 16, 24));

    // The chain hangs off the bucket's last main slot, newest first.
    let chain = t.overflow_chain(7);
    let mut expect: Vec<u32> = idx[8..].to_vec();
    expect.reverse();
    assert_eq!(chain, expect);
    assert_eq!(t.snapshot(7).unwrap().unwrap().overflow_next, Some(expect[0]));
    assert_eq!(t.snapshot(expect[15]).unwrap().unwrap().overflow_next, None);

    // Delete an overflow entry in the middle of the chain and one main entry.
    let mid = idx[12];
    t.mark_delete(mid, 1).unwrap();
    t.mark_delete(idx[3], 1).unwrap();
    assert!(!t.overflow_chain(7).contains(&mid), "unlinked at once");
    assert_eq!(t.lookup(&key(12), key(12).hash()), None);
    for i in (0..24).filter(|&i| i != 12 && i != 3) {
        assert_eq!(t.lookup(&key(i), key(i).hash()), Some(idx[i as usize]), "key {i} after unlink");
    }
    // Not reusable before reclaim...
    assert!(matches!(t.lookup_or_hold(&key(100), key(100).hash(), 0), Err(FlowTableError::TableFull { .. })));
    assert_eq!(t.reclaim().freed, 2);
    assert_eq!(t.stats().used_overflow_entries, 15);
    // ...then the main slot goes first, then the recycled overflow entry.
    assert_eq!(hold(&t, &key(100)), Lookup::Created(idx[3]));
    assert_eq!(hold(&t, &key(101)), Lookup::Created(mid));
    assert_eq!(t.entry(mid).unwrap().gen(), 2);
    assert_eq!(t.overflow_chain(7)[0], mid);
    assert!(matches!(t.lookup_or_hold(&key(102), key(102).hash(), 0), Err(FlowTableError::TableFull { .. })));
}

#[test]
fn delete_head_and_tail_of_chain() {
    let d = tempfile::tempdir().unwrap();
    let t = table(d.path(), 8, 8);
    let idx: Vec<u32> = (0..16).map(|i| hold(&t, &key(i)).index()).collect();
    let chain = t.overflow_chain(7);
    let (head, tail) = (chain[0], chain[7]);
    for x in [head, tail] {
        t.mark_delete(x, 1).unwrap();
    }
    let chain2 = t.overflow_chain(7);
    assert_eq!(chain2, chain[1..7].to_vec());
    t.reclaim();
    for i in 0..16u32 {
        let want = (idx[i as usize] != head && idx[i as usize] != tail).then_some(idx[i as usize]);
        assert_eq!(t.lookup(&key(i), key(i).hash()), want);
    }
}

#[test]
fn reclaim_waits_for_online_lcores() {
    let d = tempfile::tempdir().unwrap();
    let t = table(d.path(), 64, 64);
    t.quiescent(0);
    t.quiescent(1);
    let i = hold(&t, &key(1)).index();
    t.mark_delete(i, 1).unwrap();
    assert_eq!(t.reclaim(), ReclaimStats { freed: 0, pending: 1 });
    t.quiescent(0);
    assert_eq!(t.reclaim(), ReclaimStats { freed: 0, pending: 1 }, "lcore 1 has not passed a quiescent point");
    t.quiescent(1);
    assert_eq!(t.reclaim(), ReclaimStats { freed: 1, pending: 0 });

    let j = hold(&t, &key(2)).index();
    t.mark_delete(j, t.entry(j).unwrap().gen()).unwrap();
    assert_eq!(t.reclaim().freed, 0);
    t.quiescent(0);
    t.lcore_offline(1); // an offline lcore is not waited for
    assert_eq!(t.reclaim().freed, 1);
    // Flows are counted in the block of the lcore this thread last announced (1).
    assert_eq!(t.stats().hold_stat, vec![0, 2, 0, 0, 0]);
}

#[test]
fn create_reverse_links_both_flows() {
    let d = tempfile::tempdir().unwrap();
    let t = table(d.path(), 1024, 0);
    let k = FlowKey::v4(5, 6, Ipv4Addr::new(1, 1, 1, 1), Ipv4Addr::new(2, 2, 2, 2), 1234, 80);
    let f = hold(&t, &k).index();
    let r = t.create_reverse(f, 200).unwrap();
    assert_ne!(r, f);
    let (sf, sr) = (t.snapshot(f).unwrap().unwrap(), t.snapshot(r).unwrap().unwrap());
    assert_eq!(sr.key, k.reverse());
    assert_eq!((sf.rflow, sr.rflow), (Some(r), Some(f)));
    assert_ne!(sr.flags & flags::RFLOW_VALID, 0);
    assert_eq!(sr.flags & flags::NEW_FLOW, 0, "agent-created flows are not new to the data plane");
    assert_eq!((sr.action, sr.setup_time), (Action::Hold, 200));
    assert_eq!(t.stats().added, 1);
    // Again: links the existing reverse flow.
    assert_eq!(t.create_reverse(f, 300).unwrap(), r);
    assert_eq!(t.stats().added, 1);
    // Deleting one side clears the other's link.
    t.mark_delete(r, sr.gen).unwrap();
    assert_eq!(t.snapshot(f).unwrap().unwrap().rflow, None);
    assert!(matches!(t.create_reverse(r, 0), Err(FlowTableError::DeleteMarked { .. })));
    // A key that is its own reverse is refused.
    let same = FlowKey::v4(5, 17, Ipv4Addr::new(3, 3, 3, 3), Ipv4Addr::new(3, 3, 3, 3), 9, 9);
    let s = hold(&t, &same).index();
    assert!(matches!(t.create_reverse(s, 0), Err(FlowTableError::InvalidArgument(_))));
}

#[test]
fn evicted_flows_stay_readable_until_reclaim() {
    let d = tempfile::tempdir().unwrap();
    let t = table(d.path(), 64, 64);
    let k = key(3);
    let i = hold(&t, &k).index();
    t.set_action(i, 1, &FlowUpdate::new(Action::Forward)).unwrap();
    t.account(i, 60, 1);
    t.update_dp_flags(i, flags::EVICT_CANDIDATE, 0).unwrap();
    t.evict(i, 1).unwrap();
    assert_eq!(t.lookup(&k, k.hash()), None);
    let s = t.snapshot(i).unwrap().unwrap();
    assert_eq!(s.flags & (flags::EVICTED | flags::EVICT_CANDIDATE), flags::EVICTED);
    assert_eq!((s.action, s.packets), (Action::Forward, 1));
    assert_eq!(t.iter_active().count(), 1);
    // A new flow for the same key can be created while the evicted one waits.
    let j = hold(&t, &k);
    assert!(j.is_created() && j.index() != i);
    assert_eq!(t.reclaim().freed, 1);
    assert_eq!(t.iter_active().map(|(i, _)| i).collect::<Vec<_>>(), vec![j.index()]);
}

#[test]
fn ipv6_and_vrf_keys() {
    let d = tempfile::tempdir().unwrap();
    let t = table(d.path(), 1024, 0);
    let a = FlowKey::v6(1, 17, "fd00::1".parse().unwrap(), "fd00::2".parse().unwrap(), 5, 6);
    let b = FlowKey::v6(2, 17, "fd00::1".parse().unwrap(), "fd00::2".parse().unwrap(), 5, 6);
    let ia = hold(&t, &a).index();
    let ib = hold(&t, &b).index();
    assert_ne!(ia, ib);
    assert_eq!(t.lookup(&a, a.hash()), Some(ia));
    assert_eq!(t.lookup(&b, b.hash()), Some(ib));
    assert_eq!(t.snapshot(ib).unwrap().unwrap().key, b);
}

#[test]
fn lookup_burst_matches_lookup() {
    let d = tempfile::tempdir().unwrap();
    let t = table(d.path(), 256, 256);
    for i in 0..300 {
        hold(&t, &key(i));
    }
    let keys: Vec<FlowKey> = (0..400).map(key).collect();
    let hashes: Vec<u32> = keys.iter().map(|k| k.hash()).collect();
    for &h in &hashes {
        t.prefetch(h);
    }
    let mut out = vec![None; keys.len()];
    t.lookup_burst(&keys, &hashes, &mut out);
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(out[i], t.lookup(k, hashes[i]), "key {i}");
        assert_eq!(out[i].is_some(), i < 300);
    }
}

#[test]
fn reader_sees_what_the_writer_wrote() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("flow");
    let t = FlowTable::create(&path, &cfg(256, 64)).unwrap();
    for i in 0..100 {
        let x = hold(&t, &key(i)).index();
        t.account(x, i, 9);
    }
    let r = FlowTableReader::open(&path).unwrap();
    assert_eq!(r.capacity(), t.capacity());
    assert_eq!(r.generation(), 1);
    assert!(r.creator_alive());
    assert!(!r.is_replaced());
    let h = r.header();
    assert_eq!((h.main_entries, h.overflow_entries, h.bucket_width, h.entry_size), (256, 64, 8, 128));
    assert_eq!((h.creator_pid, h.generation, h.layout_version), (std::process::id(), 1, LAYOUT_VERSION));
    assert_eq!(h.max_lcores, 4);
    assert!(h.file_size >= h.layout_size);
    let from_reader: Vec<FlowSnapshot> = r.iter_active().collect();
    let from_writer: Vec<FlowSnapshot> = t.iter_active().map(|(_, s)| s).collect();
    assert_eq!(from_reader.len(), 100);
    assert_eq!(from_reader, from_writer);
    for s in &from_reader {
        assert_eq!(r.lookup(&s.key), Some(s.index));
        let i = u32::from(match s.key.src_ip() {
            std::net::IpAddr::V4(a) => a,
            _ => unreachable!(),
        }) - 0x0a00_0000;
        assert_eq!((s.packets, s.bytes), (1, u64::from(i)));
    }
    assert_eq!(r.stats(), t.stats());
    assert!(matches!(r.snapshot(r.capacity()), Err(FlowTableError::BadIndex { .. })));
    // The identity is the header's creation time and generation.
    let id = t.identity();
    assert_eq!((id.created_unix_ns, id.generation), (h.created_unix_ns, 1));
    // Re-creating the table bumps the generation and replaces the file: another identity.
    drop(t);
    let t2 = FlowTable::create(&path, &cfg(256, 64)).unwrap();
    assert_eq!(t2.generation(), 2);
    assert_ne!(t2.identity(), id);
    assert_eq!(t2.identity().generation, 2);
    assert!(r.is_replaced());
    assert_eq!(FlowTableReader::open(&path).unwrap().generation(), 2);
    assert_eq!(r.iter_active().count(), 100, "the old mapping stays readable");
}

#[test]
fn reader_rejects_bad_files() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("flow");
    let t = FlowTable::create(&path, &cfg(64, 64)).unwrap();
    let good = std::fs::read(&path).unwrap();
    drop(t);
    let bad = d.path().join("bad");
    let write = |bytes: &[u8]| std::fs::write(&bad, bytes).unwrap();
    let patch = |off: usize, val: &[u8]| {
        let mut b = good.clone();
        b[off..off + val.len()].copy_from_slice(val);
        b
    };

    use flow_table::RegionError as R;
    use FlowTableError::Region;
    write(&patch(0, &0u64.to_ne_bytes())); // magic not (yet) written
    assert!(matches!(FlowTableReader::open(&bad), Err(Region(R::BadMagic { found: 0, .. }))));
    write(&patch(8, &99u32.to_ne_bytes()));
    assert!(matches!(FlowTableReader::open(&bad), Err(Region(R::BadVersion { found: 99, .. }))));
    write(&patch(64, &256u32.to_ne_bytes()));
    let e = FlowTableReader::open(&bad).err().unwrap();
    assert!(matches!(e, Region(R::LayoutMismatch { field: "entry_size", found: 256, expected: 128, .. })), "{e}");
    assert!(e.to_string().contains("entry_size"), "{e}");
    write(&patch(76, &4u32.to_ne_bytes()));
    assert!(matches!(FlowTableReader::open(&bad), Err(Region(R::LayoutMismatch { field: "bucket_width", .. }))));
    write(&patch(84, &1_000_000u32.to_ne_bytes())); // overflow capacity the file cannot hold
    assert!(matches!(
        FlowTableReader::open(&bad),
        Err(Region(R::LayoutMismatch { field: "n_buckets" | "mirror_offset" | "layout_size", .. }))
            | Err(Region(R::ShortFile { .. }))
    ));
    write(&good[..good.len() / 2]);
    assert!(matches!(FlowTableReader::open(&bad), Err(Region(R::ShortFile { .. }))));
    write(&good[..100]);
    assert!(matches!(FlowTableReader::open(&bad), Err(Region(R::ShortFile { needed: 512, .. }))));
    assert!(matches!(FlowTableReader::open(&d.path().join("none")), Err(Region(R::NotRunning { .. }))));
    write(&good);
    assert!(FlowTableReader::open(&bad).is_ok());
}

#[test]
fn run_dir_paths() {
    let d = tempfile::tempdir().unwrap();
    let run = d.path().join("run");
    let c = cfg(64, 64);
    let p = FlowTable::default_path_for(&run, &c).unwrap();
    let huge = pick_mount(&hugetlbfs_mounts(), c.file_size().unwrap()).is_some();
    if !huge {
        assert_eq!(p, run.join("flow"));
    }
    let t = FlowTable::create_in_run_dir(&run, &c).unwrap();
    assert_eq!(t.path(), p);
    let r = FlowTableReader::open_run_dir(&run).unwrap();
    assert_eq!(r.capacity(), t.capacity());
    if huge {
        let _ = std::fs::remove_file(t.path());
    }
}

#[test]
fn reclaim_callback_may_use_the_table_and_hold_gauge_follows_retirement() {
    let d = tempfile::tempdir().unwrap();
    let t = table(d.path(), 64, 64);
    let a = hold(&t, &key(1)).index();
    let b = hold(&t, &key(2)).index();
    assert_eq!(t.stats().hold_count, 2);
    t.evict(a, 1).unwrap(); // a HOLD flow evicted: no longer counted as held
    t.mark_delete(b, 1).unwrap();
    assert_eq!(t.stats().hold_count, 0);
    let mut seen = Vec::new();
    let r = t.reclaim_with(|s| {
        // Calling back into the table from the callback must not deadlock.
        seen.push((s.index, t.stats().used_entries));
        let k = key(100 + s.index);
        t.lookup_or_hold(&k, k.hash(), 0).unwrap();
    });
    assert_eq!(r.freed, 2);
    seen.sort_unstable();
    assert_eq!(seen.iter().map(|x| x.0).collect::<Vec<_>>(), {
        let mut v = vec![a, b];
        v.sort_unstable();
        v
    });
    assert_eq!(t.stats().used_entries, 2);
}

#[test]
#[should_panic(expected = "max_lcores")]
fn quiescent_rejects_unknown_lcores() {
    let d = tempfile::tempdir().unwrap();
    let t = table(d.path(), 64, 64); // max_lcores 4
    t.quiescent(4);
}

#[test]
fn owner_and_shared_counters_sum_exactly_and_reset_on_reuse() {
    let d = tempfile::tempdir().unwrap();
    let t = table(d.path(), 64, 64);
    let k = key(7);
    let i = hold(&t, &k).index();
    t.set_action(i, 1, &FlowUpdate::new(Action::Forward)).unwrap();
    assert_eq!(t.entry(i).unwrap().owner_lcore(), None);
    t.account_as(2, i, 100, 1); // lcore 2 counts first: owner
    t.account_as(2, i, 10, 2);
    t.account_as(0, i, 7, 3); // another lcore: shared pair
    t.account(i, 1, 4); // any thread: shared pair
    assert_eq!(t.entry(i).unwrap().owner_lcore(), Some(2));
    let s = t.snapshot(i).unwrap().unwrap();
    assert_eq!((s.packets, s.bytes, s.last_seen), (4, 118, 4));

    // Freed and reused: counters and owner start again from nothing.
    t.evict(i, 1).unwrap();
    assert_eq!(t.reclaim().freed, 1);
    let mut reused = None;
    for n in 0..t.capacity() {
        match t.lookup_or_hold(&key(1000 + n), key(1000 + n).hash(), 9) {
            Ok(l) if l.index() == i => {
                reused = Some(l);
                break;
            }
            Ok(_) => {}
            Err(e) => panic!("table filled before slot {i} was reused: {e}"),
        }
    }
    let l = reused.expect("freed slot reused");
    assert!(l.is_created());
    assert_eq!(t.entry(i).unwrap().owner_lcore(), None);
    let s = t.snapshot(i).unwrap().unwrap();
    assert_eq!((s.packets, s.bytes), (0, 0));
    t.account_as(1, i, 5, 10);
    assert_eq!(t.entry(i).unwrap().owner_lcore(), Some(1));
    assert_eq!(t.snapshot(i).unwrap().unwrap().packets, 1);
}

/// The figures that explain a mirrored flow's packets without a copy: lost copies per
/// mirror, packets dropped while held, and what a flow counted before a rule turned its
/// mirroring on; a freed slot starts its next flow at zero.
#[test]
fn mirror_reconciliation_counters() {
    let d = tempfile::tempdir().unwrap();
    let t = table(d.path(), 64, 64);
    let mirrored =
        |m: u8, s: u8| FlowUpdate { mirror: Some(m), sec_mirror: Some(s), ..FlowUpdate::new(Action::Forward) };

    // Mirrored from its setup: 3 packets held, 1 of them dropped from the hold queue; the
    // 2 released are offered: primary sends both, secondary loses one.
    let a = key(1);
    let ia = hold(&t, &a).index();
    for _ in 0..3 {
        t.account(ia, 100, 1);
    }
    t.account_held_drop(ia);
    t.set_action(ia, 1, &mirrored(1, 2)).unwrap();
    t.account_mirror(ia, false, 150);
    t.account_mirror(ia, false, 150);
    t.account_mirror(ia, true, 150);
    t.account_mirror_lost(ia, true);
    let s = t.snapshot(ia).unwrap().unwrap();
    let want = FlowAccounting { mirror_lost: 0, sec_mirror_lost: 1, before_mirror: 0, held_dropped: 1 };
    assert_eq!(s.accounting, want);
    assert_eq!(s.packets, s.mirror_packets + s.accounting.mirror_lost + s.accounting.held_dropped);
    assert_eq!(s.packets, s.sec_mirror_packets + s.accounting.sec_mirror_lost + s.accounting.held_dropped);

    // Set up without mirroring, 5 packets (one dropped while held), then a rule mirrors it:
    // the 4 forwarded before are set aside; 2 more packets are copied (one lost).
    let b = key(2);
    let ib = hold(&t, &b).index();
    t.account(ib, 100, 1);
    t.account_held_drop(ib);
    t.set_action(ib, 1, &FlowUpdate::new(Action::Forward)).unwrap();
    for _ in 0..4 {
        t.account(ib, 100, 2);
    }
    assert_eq!(t.snapshot(ib).unwrap().unwrap().accounting.before_mirror, 0, "not mirrored yet");
    t.set_action(ib, 1, &mirrored(1, NO_MIRROR)).unwrap();
    let s = t.snapshot(ib).unwrap().unwrap();
    assert_eq!((s.packets, s.accounting.before_mirror, s.accounting.held_dropped), (5, 4, 1));
    // Programming the same mirror again sets nothing aside.
    t.account(ib, 100, 3);
    t.account_mirror(ib, false, 150);
    t.account(ib, 100, 3);
    t.account_mirror_lost(ib, false);
    t.set_action(ib, 1, &mirrored(1, NO_MIRROR)).unwrap();
    let s = t.snapshot(ib).unwrap().unwrap();
    assert_eq!(s.accounting, FlowAccounting { mirror_lost: 1, sec_mirror_lost: 0, before_mirror: 4, held_dropped: 1 });
    assert_eq!(s.packets, s.mirror_packets + s.accounting.mirror_lost + s.accounting.before_mirror + 1);
    // Turned off, 2 packets, turned on again: everything not offered so far is set aside.
    t.set_action(ib, 1, &mirrored(NO_MIRROR, NO_MIRROR)).unwrap();
    t.account(ib, 100, 4);
    t.account(ib, 100, 4);
    t.set_action(ib, 1, &mirrored(1, NO_MIRROR)).unwrap();
    let s = t.snapshot(ib).unwrap().unwrap();
    assert_eq!((s.packets, s.accounting.before_mirror), (9, 6));
    assert_eq!(s.packets, s.mirror_packets + s.accounting.mirror_lost + s.accounting.before_mirror + 1);

    // A freed slot's next flow starts at zero (the same key: the same bucket, whose first
    // free slot is this one).
    t.mark_delete(ib, 1).unwrap();
    assert_eq!(t.reclaim_with(|_| {}).freed, 1);
    let Lookup::Created(again) = hold(&t, &b) else { panic!("expected Created") };
    assert_eq!(again, ib);
    assert_eq!(t.snapshot(again).unwrap().unwrap().accounting, FlowAccounting::default());
}
