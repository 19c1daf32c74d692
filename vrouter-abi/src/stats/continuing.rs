//! Seeding a new stats region with the counters of the previous run's file
//! ([`super::StatsRegion::create_continuing`]), so that what the tools show (sums over
//! lcores) continues across a restart and never goes backwards.
//!
//! The copy runs inside [`shm::create`]'s `init`, on the new file while it is still private
//! (temporary name, before `magic` and the rename), from the previous file's read-only
//! mapping (its owner gone, or stopped forwarding: a takeover). What is carried:
//!
//! - **per lcore block**: the poll and mirror counters and the global drop counters by
//!   reason, the performance counters (busy and idle cycles, bursts, both histograms, the
//!   largest burst since start; not the RX queue slots, which the new lcores fill with their
//!   own queues), the counters of every vif of the new vif set, and every VRF's counters. With
//!   the same lcore count, block `i` continues block `i`; with another count, every previous
//!   block is added into block 0 (the per-lcore split of the old run means nothing to the
//!   new lcores; the sums are what continues).
//! - **vifs by id**: a vif of the new set continues the counters of the same id (if the
//!   previous region had room for it); a vif of the previous run that is not in the new set
//!   (configured or deleted-but-kept) is dropped and named in a note; a new vif starts at 0.
//! - **not carried**: the vif records (the new set is written fresh), the header's state and
//!   heartbeat (running, now), the owner, the creation time; the generation is the previous
//!   file's plus one as always.

use super::layout::{bump, load, Layout, LcoreHead, LcorePerfBlock, RegionRef, VifCounterBlock, VrfCounterBlock};
use crate::drop_reason::DROP_REASON_COUNT;
use shm::InitMap;

/// Block of the new region that continues block `core` of a previous region of `old_n`
/// lcores.
fn dest_core(old_n: usize, new_n: usize, core: usize) -> usize {
    if old_n == new_n {
        core
    } else {
        0
    }
}

fn add_drops(into: &[std::sync::atomic::AtomicU64; DROP_REASON_COUNT], from: &[u64; DROP_REASON_COUNT]) {
    for (c, &n) in into.iter().zip(from) {
        if n != 0 {
            bump(c, n);
        }
    }
}

/// Adds the previous region's counters into the fresh, zeroed mapping `m` of `layout` for
/// the vif ids `vif_ids` (each `< layout.max_vifs`). The VRF count is the same in every
/// region of this layout version (checked when the previous file was opened).
pub(super) fn seed(m: &mut InitMap<'_>, layout: Layout, old: RegionRef<'_>, vif_ids: &[usize]) {
    let old_layout = old.layout();
    let carried: Vec<usize> = vif_ids.iter().copied().filter(|&v| v < old_layout.max_vifs).collect();
    for core in 0..old_layout.n_lcores {
        let d = dest_core(old_layout.n_lcores, layout.n_lcores, core);
        let head: &mut LcoreHead = m.get_mut(layout.head_offset(d)).expect("the layout holds every lcore head");
        old.lcore_counters(Some(core)).bump_block(head);
        add_drops(&head.drops, &old.drops(Some(core)));
        let perf: &mut LcorePerfBlock = m.get_mut(layout.perf_offset(d)).expect("the layout holds every perf block");
        old.lcore_perf_counters(Some(core)).bump_block(perf);
        if let Some(o) = old.lcore_perf(core) {
            for (c, o) in
                perf.burst_sizes.iter().zip(&o.burst_sizes).chain(perf.packet_cycles.iter().zip(&o.packet_cycles))
            {
                bump(c, load(o));
            }
            let max = load(&perf.burst_cycles_max).max(load(&o.burst_cycles_max));
            perf.burst_cycles_max.store(max, std::sync::atomic::Ordering::Relaxed);
        }
        for &vif in &carried {
            let b: &mut VifCounterBlock =
                m.get_mut(layout.vif_block_offset(d, vif)).expect("vif ids fit the new max_vifs");
            old.vif_counters(vif, Some(core)).bump_block(b);
            add_drops(&b.drops, &old.vif_drops(vif, Some(core)));
        }
        for vrf in 0..old_layout.max_vrfs.min(layout.max_vrfs) {
            let b: &mut VrfCounterBlock =
                m.get_mut(layout.vrf_block_offset(d, vrf)).expect("the layout holds every VRF");
            old.vrf_counters(vrf, Some(core)).bump_block(b);
        }
    }
}

/// What [`seed`] leaves behind, one clause each: another lcore count, and the vifs of the
/// previous run that are not in the new set.
pub(super) fn notes(layout: Layout, old: RegionRef<'_>, vif_ids: &[usize]) -> Vec<String> {
    let old_layout = old.layout();
    let mut notes = Vec::new();
    if old_layout.n_lcores != layout.n_lcores {
        notes.push(format!(
            "{} forwarding lcores before, {} now: the previous per-lcore counters are summed into lcore 0",
            old_layout.n_lcores, layout.n_lcores
        ));
    }
    let mut kept = vec![false; old_layout.max_vifs];
    for &v in vif_ids {
        if let Some(k) = kept.get_mut(v) {
            *k = true;
        }
    }
    let gone: Vec<String> = (0..old_layout.max_vifs)
        .filter(|&v| !kept[v])
        .filter(|&v| old.vif_info(v).is_some_and(|i| i.is_valid() || i.is_retired()))
        .map(|v| v.to_string())
        .collect();
    if !gone.is_empty() {
        let s = if gone.len() == 1 { "" } else { "s" };
        notes.push(format!("vif{s} {} not configured now: counters dropped", gone.join(", ")));
    }
    notes
}

#[cfg(test)]
mod tests;
