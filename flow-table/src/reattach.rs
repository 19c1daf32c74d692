//! Reattaching the table a previous run left: a restarted vRouter (after a stop, a crash or
//! for a planned takeover) keeps every established flow with its index, generation,
//! action, reverse link, mirror indices and 64-bit counters.
//!
//! [`FlowTable::open_or_create`] is the start path: it finds the previous file (the
//! configured path, or what `<run_dir>/flow` points at), adopts it through [`shm::adopt`]
//! when magic, layout version, every size and the configured capacity and lcore count
//! match, and repairs it ([`FlowTable::reattach`]). Otherwise the old file is renamed to
//! `<file>.old` (kept for inspection, replacing an older `.old`) and a fresh table is
//! created; [`TableStart::Replaced`] says why in one line.
//!
//! # Repair
//!
//! The previous process may have died anywhere (SIGKILL, abort), so nothing half written is
//! trusted. The caller guarantees that no other process writes the table any more (the
//! previous owner is dead, or stopped its lcores and agent before handing over). One pass
//! over the slots:
//!
//! - an odd entry sequence (a writer died inside its write section) is made even again, and
//!   the entry is retired like a deleted flow (its fields may be a mix of two updates);
//! - `CLAIMED` and `PENDING` slots (an insert that never published) are freed;
//! - a `VALID` slot whose stored hash does not select its bucket, whose tag differs from
//!   the slot word's, whose key does not decode or whose `ACTIVE` flag is missing is freed
//!   (it is not a flow this table could have published);
//! - a `VALID` flow whose flags say deleted or evicted (a crash between the control word and
//!   the slot word of a delete) and every `DEAD` slot are queued for reclaim again: readers
//!   (the exporter) still see their final counters until the agent frees them;
//! - a reverse link whose partner is not a kept flow linking back is cleared (`RFLOW_VALID`),
//!   as a delete clears its partner's;
//! - HOLD flows are reported ([`ReattachReport::held`]) for the agent to set up again;
//!
//! then the derived structures are rebuilt from the entries: the overflow chains (every
//! published overflow entry on its bucket's chain), the overflow free list (every overflow
//! entry handed out before and free now), the lcores' quiescent counters (all offline
//! until each lcore's first quiescent point), and the used / hold / overflow gauges (their
//! per-lcore deltas folded into the shared block with the recounted values). Monotonic
//! counters (created, added, deleted, ...) continue.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use shm::Mismatch;

use crate::defs::{flags, Action, Gen, NO_INDEX, NO_MIRROR};
use crate::error::FlowTableError;
use crate::key::FlowKey;
use crate::layout::*;
use crate::path::FLOW_FILE_NAME;
use crate::reader::validate;
use crate::table::{FlowTable, FlowTableConfig, Retired};

/// What [`FlowTable::reattach`] found and repaired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReattachReport {
    /// Published flows kept as they were (HOLD ones included).
    pub flows: u32,
    /// Kept flows still in HOLD `(index, generation)`: their setup died with the previous
    /// run; the agent sets them up again.
    pub held: Vec<(u32, Gen)>,
    /// Delete-marked or evicted flows queued for reclaim again.
    pub retired: u32,
    /// Entries caught inside a write section (odd sequence): retired, not trusted.
    pub torn: u32,
    /// Inserts that never published (`CLAIMED`/`PENDING` slots): freed.
    pub unpublished: u32,
    /// Slots whose contents contradict their slot word or bucket: freed.
    pub inconsistent: u32,
    /// Reverse links that did not point back: cleared.
    pub links_cleared: u32,
    /// Time the repair took.
    pub elapsed: Duration,
}

impl ReattachReport {
    /// Entries the repair did not keep as they were.
    pub fn repaired(&self) -> u32 {
        self.torn + self.unpublished + self.inconsistent + self.links_cleared
    }
}

impl std::fmt::Display for ReattachReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} flows kept ({} in HOLD set up again), {} retired awaiting reclaim, repaired: {} torn, {} unpublished, \
             {} inconsistent, {} reverse links cleared, in {:.1} ms",
            self.flows,
            self.held.len(),
            self.retired,
            self.torn,
            self.unpublished,
            self.inconsistent,
            self.links_cleared,
            self.elapsed.as_secs_f64() * 1e3
        )
    }
}

/// How [`FlowTable::open_or_create`] got its table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TableStart {
    /// No previous table: created fresh.
    Created,
    /// The previous run's table, adopted and repaired.
    Reattached(ReattachReport),
    /// A previous table that could not be adopted (other layout, other size, corrupt): kept
    /// aside at `kept_at` (when the rename worked) and a fresh table created.
    Replaced {
        /// Why, in one line (names the file and the field or check).
        reason: String,
        /// Where the old file is now.
        kept_at: Option<PathBuf>,
    },
}

impl FlowTable {
    /// The table of a starting vRouter: the previous run's, reattached, when there is one
    /// that fits `cfg`; else a fresh one (see the module docs). `path`: the configured
    /// table file, or `None` for the default place ([`FlowTable::create_in_run_dir`]).
    ///
    /// The caller must make sure no other process writes the previous table any more.
    pub fn open_or_create(
        path: Option<&Path>,
        run_dir: &Path,
        cfg: &FlowTableConfig,
    ) -> Result<(FlowTable, TableStart), FlowTableError> {
        let previous = match path {
            Some(p) => p.exists().then(|| p.to_path_buf()),
            // The symlink (hugetlbfs) or the file itself; a dangling link is no table.
            None => fs::canonicalize(run_dir.join(FLOW_FILE_NAME)).ok(),
        };
        let mut start = TableStart::Created;
        if let Some(prev) = previous {
            match FlowTable::reattach(&prev, cfg) {
                Ok((table, report)) => return Ok((table, TableStart::Reattached(report))),
                Err(e) => {
                    let kept = prev.with_file_name(format!(
                        "{}.old",
                        prev.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
                    ));
                    let kept_at = fs::rename(&prev, &kept).ok().map(|_| kept);
                    start = TableStart::Replaced { reason: e.to_string(), kept_at };
                }
            }
        }
        let table = match path {
            Some(p) => FlowTable::create(p, cfg)?,
            None => FlowTable::create_in_run_dir(run_dir, cfg)?,
        };
        Ok((table, start))
    }

    /// Adopts the table file at `path` that a previous run left ([`shm::adopt`]: magic,
    /// version and every size checked, and the capacity and lcore count of `cfg`) and
    /// repairs it (module docs). No other process may write it any more.
    pub fn reattach(path: &Path, cfg: &FlowTableConfig) -> Result<(FlowTable, ReattachReport), FlowTableError> {
        let want = cfg.layout()?;
        let (map, layout) = shm::adopt(path, &SPEC, |m| {
            let l = validate(m)?;
            Mismatch::check("main_entries ([flow] entries)", l.main_entries.into(), want.main_entries.into())?;
            Mismatch::check(
                "overflow_entries ([flow] overflow_entries)",
                l.overflow_entries.into(),
                want.overflow_entries.into(),
            )?;
            Mismatch::check("max_lcores (forwarding lcores)", l.max_lcores.into(), want.max_lcores.into())?;
            Ok(l)
        })?;
        let generation = map.header().generation();
        let file_size = map.len() as u64;
        // SAFETY: shm::adopt checked layout_size <= map.len() (validate); the mapping is
        // page-aligned and lives in the returned table; nothing truncates the file.
        let region = unsafe { Region::new(map.as_ptr(), map.len(), layout) };
        let started = Instant::now();
        let (mut report, retired) = repair(&region);
        report.elapsed = started.elapsed();
        let retired = Retired { marked: retired, ..Retired::default() };
        Ok((FlowTable { region, map, generation, file_size, retired: Mutex::new(retired) }, report))
    }
}

/// Whether the published slot `idx` (slot word `w`) holds an entry this table could have
/// published: its hash selects the slot's bucket (main slots), the tags agree, the key
/// decodes and the entry is active.
fn consistent(r: &Region, idx: u32, w: u32) -> bool {
    let e = r.entry(idx);
    let hash = e.hash.load(Relaxed);
    let in_bucket = idx >= r.layout().main_entries || r.bucket_of(hash) == idx / BUCKET_WIDTH as u32;
    in_bucket
        && word_tag(w) == tag_of(hash)
        && FlowKey::from_words(e.key_words()).is_some()
        && ctl_flags(e.ctl.load(Relaxed)) & flags::ACTIVE != 0
}

/// Resets entry `idx` to a free slot's contents (generation kept: the next claim bumps it)
/// and frees its slot word (overflow entries go on the free list afterwards).
fn reset(r: &Region, idx: u32) {
    let e = r.entry(idx);
    e.ctl.store(make_ctl(0, 0, 0, ctl_gen(e.ctl.load(Relaxed))), Relaxed);
    e.packets.store(0, Relaxed);
    e.bytes.store(0, Relaxed);
    e.owner.store(0, Relaxed);
    e.rflow.store(NO_INDEX, Relaxed);
    e.origin.store(0, Relaxed);
    let m = r.mirror(idx);
    m.clear();
    r.slot(idx).store(ST_FREE, Relaxed);
}

/// Retires published entry `idx` the way a delete does (not trusted: torn).
fn retire_torn(r: &Region, idx: u32, w: u32) {
    let e = r.entry(idx);
    let c = e.ctl.load(Relaxed);
    let f = (ctl_flags(c) | flags::DELETE_MARKED) & !(flags::MIRROR | flags::HOLD | flags::RFLOW_VALID);
    e.ctl.store(make_ctl(f, Action::Drop as u8, ctl_drop_reason(c), ctl_gen(c)), Relaxed);
    let m = e.mirror.load(Relaxed);
    e.mirror.store(make_mirror_word(NO_MIRROR, NO_MIRROR, (m >> 16) as u16), Relaxed);
    r.slot(idx).store(slot_word(word_tag(w), ST_DEAD), Relaxed);
}

/// The repair pass (module docs); returns the report and the slots to queue for reclaim.
fn repair(r: &Region) -> (ReattachReport, Vec<u32>) {
    let l = *r.layout();
    let h = r.header();
    let mut rep = ReattachReport::default();
    let mut retired = Vec::new();
    let bump = h.oflow_bump.load(Relaxed).min(l.overflow_entries);
    let used_end = l.main_entries + bump;
    let (mut used, mut hold) = (0u64, 0u64);
    let mut kept = Vec::new();
    for idx in 0..used_end {
        let e = r.entry(idx);
        let seq = e.seq.load(Relaxed);
        let torn = seq & 1 == 1;
        if torn {
            e.seq.store(seq.wrapping_add(1), Relaxed);
        }
        let w = r.slot(idx).load(Relaxed);
        match word_state(w) {
            ST_FREE => {}
            ST_CLAIMED | ST_PENDING => {
                reset(r, idx);
                rep.unpublished += 1;
            }
            ST_VALID if !consistent(r, idx, w) => {
                reset(r, idx);
                rep.inconsistent += 1;
            }
            ST_VALID if torn => {
                retire_torn(r, idx, w);
                retired.push(idx);
                rep.torn += 1;
                used += 1;
            }
            ST_VALID if ctl_flags(e.ctl.load(Relaxed)) & (flags::DELETE_MARKED | flags::EVICTED) != 0 => {
                r.slot(idx).store(slot_word(word_tag(w), ST_DEAD), Relaxed);
                retired.push(idx);
                rep.retired += 1;
                used += 1;
            }
            ST_VALID => {
                let st = e.state();
                rep.flows += 1;
                used += 1;
                if st.action() == Action::Hold {
                    hold += 1;
                    rep.held.push((idx, st.gen));
                }
                kept.push(idx);
            }
            ST_DEAD => {
                if ctl_flags(e.ctl.load(Relaxed)) & flags::ACTIVE != 0 {
                    used += 1;
                }
                retired.push(idx);
                rep.retired += 1;
            }
            _ => {
                reset(r, idx);
                rep.inconsistent += 1;
            }
        }
    }
    // Reverse links of kept flows: both ends must name each other.
    for &idx in &kept {
        let e = r.entry(idx);
        let c = e.ctl.load(Relaxed);
        if ctl_flags(c) & flags::RFLOW_VALID == 0 {
            continue;
        }
        let rf = e.rflow.load(Relaxed);
        let ok = rf < used_end
            && rf != idx
            && word_state(r.slot(rf).load(Relaxed)) == ST_VALID
            && r.entry(rf).rflow.load(Relaxed) == idx;
        if !ok {
            e.ctl.fetch_and(!u64::from(flags::RFLOW_VALID), Relaxed);
            rep.links_cleared += 1;
        }
    }
    // Overflow chains and the free list, rebuilt from the slot states.
    for b in 0..l.n_buckets {
        r.bucket(b).chain.store(NO_INDEX, Relaxed);
    }
    let aba = h.oflow_free.load(Relaxed) >> 32;
    let mut free_head = NO_INDEX;
    let mut oflow_used = 0u64;
    for idx in l.main_entries..used_end {
        let e = r.entry(idx);
        match word_state(e.ostate.load(Relaxed)) {
            ST_FREE => {
                e.onext.store(free_head, Relaxed);
                free_head = idx;
            }
            ST_VALID => {
                let chain = &r.bucket(r.bucket_of(e.hash.load(Relaxed))).chain;
                e.onext.store(chain.load(Relaxed), Relaxed);
                chain.store(idx, Relaxed);
                oflow_used += 1;
            }
            // DEAD: unlinked, freed (onto the free list) by reclaim.
            _ => oflow_used += 1,
        }
    }
    h.oflow_free.store(((aba + 1) << 32) | u64::from(free_head), Relaxed);
    // Lcores offline until their first quiescent point; gauges recounted.
    let shared = l.max_lcores as usize;
    for i in 0..=shared {
        let b = r.lcore(i);
        b.qs.store(0, Relaxed);
        b.hold_delta.store(0, Relaxed);
        b.used_delta.store(0, Relaxed);
        b.oflow_delta.store(0, Relaxed);
    }
    let s = r.lcore(shared);
    s.hold_delta.store(hold, Relaxed);
    s.used_delta.store(used, Relaxed);
    s.oflow_delta.store(oflow_used, Relaxed);
    // Everything above is visible before the lcores and the agent start (they are started
    // by this thread after this returns; thread spawn orders memory).
    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    (rep, retired)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{FlowUpdate, Lookup};
    use crate::{FlowSnapshot, Origin};
    use std::net::Ipv4Addr;
    use std::sync::atomic::Ordering::Relaxed;

    /// A small table: 64 main slots (8 buckets) and 64 overflow entries, so a few hundred
    /// flows spill into the chains.
    const CFG: FlowTableConfig = FlowTableConfig { main_entries: 64, overflow_entries: 64, max_lcores: 2 };

    fn key(i: u32) -> FlowKey {
        FlowKey::v4(3, 6, Ipv4Addr::from(0x0a00_0000 + i), Ipv4Addr::new(10, 9, 0, 1), 1000 + i as u16, 80)
    }

    /// Flow pairs 0..n forwarding with counters and origins, flow `n` left in HOLD, one pair
    /// deleted (not reclaimed).
    fn populate(t: &FlowTable, n: u32) -> Vec<(u32, u32)> {
        let mut pairs = Vec::new();
        for i in 0..n {
            let k = key(i);
            let Lookup::Created(f) = t.lookup_or_hold(&k, k.hash(), 100 + u64::from(i)).unwrap() else {
                panic!("flow {i} existed")
            };
            let gen = t.entry(f).unwrap().gen();
            let r = t.create_reverse(f, 200).unwrap();
            let mut up = FlowUpdate::new(Action::Forward);
            up.mirror = Some(1);
            up.origin = Some(Origin { vif: 3, reverse: false });
            t.set_action(f, gen, &up).unwrap();
            up.origin = Some(Origin { vif: 3, reverse: true });
            t.set_action(r, t.entry(r).unwrap().gen(), &up).unwrap();
            for _ in 0..=i {
                t.account_as(0, f, 100, 300);
                t.account_as(1, f, 10, 300);
                t.account_as(1, r, 60, 300);
            }
            t.account_mirror(f, false, 128);
            pairs.push((f, r));
        }
        let k = key(n);
        t.lookup_or_hold(&k, k.hash(), 400).unwrap();
        pairs
    }

    fn snapshots(t: &FlowTable) -> Vec<FlowSnapshot> {
        t.iter_active().map(|(_, s)| s).collect()
    }

    #[test]
    fn a_clean_table_comes_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flow");
        let (before, stats_before, held_idx) = {
            let t = FlowTable::create(&path, &CFG).unwrap();
            let pairs = populate(&t, 40);
            let (df, dr) = pairs[7];
            t.mark_delete(df, t.entry(df).unwrap().gen()).unwrap();
            t.mark_delete(dr, t.entry(dr).unwrap().gen()).unwrap();
            let held = t.lookup(&key(40), key(40).hash()).unwrap();
            (snapshots(&t), t.stats(), held)
        };
        assert!(stats_before.used_overflow_entries > 0, "the test wants overflow chains");
        let (t, start) = FlowTable::open_or_create(Some(&path), dir.path(), &CFG).unwrap();
        let TableStart::Reattached(rep) = start else { panic!("not reattached: {start:?}") };
        assert_eq!(rep.flows, 79, "39 pairs and the HOLD flow");
        assert_eq!(rep.retired, 2);
        assert_eq!(rep.held, vec![(held_idx, t.entry(held_idx).unwrap().gen())]);
        assert_eq!(rep.repaired(), 0);
        assert_eq!(snapshots(&t), before, "every flow, deleted ones included, with its counters");
        let s = t.stats();
        assert_eq!(
            (s.used_entries, s.hold_count, s.used_overflow_entries, s.created, s.added, s.deleted),
            (
                stats_before.used_entries,
                stats_before.hold_count,
                stats_before.used_overflow_entries,
                stats_before.created,
                stats_before.added,
                stats_before.deleted
            )
        );
        for (i, snap) in before.iter().filter(|s| s.flags & flags::DELETE_MARKED == 0).enumerate() {
            assert_eq!(t.lookup(&snap.key, snap.key.hash()), Some(snap.index), "lookup {i}");
        }
        assert_eq!(t.entry(before[0].index).unwrap().origin().map(|o| o.vif), Some(3));
        // Counting continues on the same entries; the deleted pair is freed by reclaim.
        let f = t.lookup(&key(3), key(3).hash()).unwrap();
        let b = t.snapshot(f).unwrap().unwrap().bytes;
        t.account_as(0, f, 50, 500);
        assert_eq!(t.snapshot(f).unwrap().unwrap().bytes, b + 50);
        assert_eq!(t.reclaim().freed, 2);
        assert_eq!(t.stats().used_entries, stats_before.used_entries - 2);
        // New flows go in, overflow included, and the table fills up to its capacity.
        for i in 1000..1400 {
            let k = key(i);
            let _ = t.lookup_or_hold(&k, k.hash(), 600);
        }
        assert_eq!(t.stats().used_entries, u64::from(t.capacity()), "every slot reusable after the reattach");
    }

    #[test]
    fn half_written_entries_are_repaired_or_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flow");
        let (torn, claimed, pending, broken_link, kept) = {
            let t = FlowTable::create(&path, &CFG).unwrap();
            let pairs = populate(&t, 30);
            let r = &t.region;
            // A writer died in the middle of an update of pair 1's forward flow.
            let torn = pairs[1].0;
            r.entry(torn).seq.fetch_add(1, Relaxed);
            // An insert that claimed a slot and one that never published.
            let claimed = pairs[2].0;
            let w = r.slot(claimed).load(Relaxed);
            r.slot(claimed).store(slot_word(word_tag(w), ST_CLAIMED), Relaxed);
            let pending = pairs[3].1;
            let w = r.slot(pending).load(Relaxed);
            r.slot(pending).store(slot_word(word_tag(w), ST_PENDING), Relaxed);
            // Pair 4's reverse points elsewhere (crash between the two halves of `link`).
            let (f4, r4) = pairs[4];
            r.entry(r4).rflow.store(pairs[5].0, Relaxed);
            // The overflow chains and free list lost (crash in the middle of a push).
            for b in 0..r.layout().n_buckets {
                r.bucket(b).chain.store(NO_INDEX, Relaxed);
            }
            r.header().oflow_free.store(u64::from(NO_INDEX), Relaxed);
            // An lcore was inside a burst.
            r.lcore(0).qs.store(7, Relaxed);
            (torn, claimed, pending, f4, pairs[10])
        };
        let (t, rep) = FlowTable::reattach(&path, &CFG).unwrap();
        // Links cleared: the torn flow's partner, the partners of the two unpublished slots,
        // and both flows of pair 4.
        assert_eq!((rep.torn, rep.unpublished, rep.links_cleared), (1, 2, 5), "{rep}");
        let s = t.snapshot(torn).unwrap().unwrap();
        assert!(s.flags & flags::DELETE_MARKED != 0 && s.action == Action::Drop, "a torn flow is retired: {s:?}");
        assert_eq!(t.snapshot(claimed).unwrap(), None);
        assert_eq!(t.snapshot(pending).unwrap(), None);
        assert_eq!(t.snapshot(broken_link).unwrap().unwrap().rflow, None, "a one-sided link is cleared");
        // Every kept flow is found again through the rebuilt chains.
        for (_, snap) in t.iter_active().filter(|(_, s)| s.flags & flags::DELETE_MARKED == 0) {
            assert_eq!(t.lookup(&snap.key, snap.key.hash()), Some(snap.index));
        }
        assert_eq!(t.snapshot(kept.0).unwrap().unwrap().rflow, Some(kept.1));
        // The lcore that died mid-burst does not block reclaim.
        assert_eq!(t.reclaim().freed, 1);
        let used = t.stats().used_entries;
        assert_eq!(used, t.iter_active().count() as u64);
        // The freed slots and every never-used overflow entry are usable.
        let mut added = 0u64;
        for i in 2000..2400 {
            let k = key(i);
            if matches!(t.lookup_or_hold(&k, k.hash(), 1), Ok(Lookup::Created(_))) {
                added += 1;
            }
        }
        assert_eq!(used + added, u64::from(t.capacity()));
    }

    #[test]
    fn a_table_that_does_not_fit_is_kept_aside_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flow");
        drop(FlowTable::create(&path, &CFG).unwrap());
        // Another size in the configuration.
        let bigger = FlowTableConfig { main_entries: 128, ..CFG };
        let (t, start) = FlowTable::open_or_create(Some(&path), dir.path(), &bigger).unwrap();
        let TableStart::Replaced { reason, kept_at } = start else { panic!("{start:?}") };
        assert!(reason.contains("main_entries ([flow] entries)"), "{reason}");
        assert_eq!(kept_at.as_deref(), Some(dir.path().join("flow.old").as_path()));
        assert_eq!(t.capacity(), 192);
        drop(t);
        // Another layout version.
        let mut bytes = fs::read(&path).unwrap();
        bytes[8..12].copy_from_slice(&(LAYOUT_VERSION - 1).to_ne_bytes());
        fs::write(&path, &bytes).unwrap();
        let (_, start) = FlowTable::open_or_create(Some(&path), dir.path(), &bigger).unwrap();
        let TableStart::Replaced { reason, .. } = start else { panic!("{start:?}") };
        assert!(reason.contains("version"), "{reason}");
        // Truncated.
        let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(4096).unwrap();
        let (t, start) = FlowTable::open_or_create(Some(&path), dir.path(), &bigger).unwrap();
        let TableStart::Replaced { reason, kept_at } = start else { panic!("{start:?}") };
        assert!(reason.contains("short") || reason.contains("bytes"), "{reason}");
        assert_eq!(fs::metadata(kept_at.unwrap()).unwrap().len(), 4096, "the old file is kept as it was");
        assert_eq!(t.stats().used_entries, 0);
    }
}
