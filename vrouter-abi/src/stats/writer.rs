//! Writer side: the vRouter creates the region and its lcores count into it.

use std::cell::Cell;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use shm::{CreateOptions, InitMap, Mapped};

use super::continuing;
use super::layout::{
    bump, load, Header, Layout, LcoreHead, LcorePerfBlock, RegionRef, VifCounterBlock, VrfCounterBlock,
    LCORE_HEAD_SIZE, LCORE_PERF_SIZE, SPEC, VIF_BLOCKS_OFFSET, VIF_COUNTER_SIZE, VIF_INFO_SIZE, VRF_COUNTER_SIZE,
};
use super::perf::{burst_size_bucket, packet_cycles_bucket, rxq_id, RXQ_SLOTS};
use super::reader::validate;
use super::vif_info::VifInfo;
use super::{
    unix_time_ms, EalFacts, LcoreCounters, RegionState, StatsError, Totals, VifCounters, VrfCounters, MAX_LCORES,
    MAX_VIFS, STATS_FILE_NAME,
};
use crate::continued::{Continuation, Continued};
use crate::drop_reason::{DropReason, DROP_REASON_COUNT};

/// The mapping plus what the handles need; shared by the region and its lcore handles.
struct Shared {
    map: Mapped,
    layout: Layout,
    /// `taken[i]`: an [`LcoreStats`] for lcore `i` exists (enforces one writer per block).
    taken: Box<[AtomicBool]>,
}

impl Shared {
    fn region(&self) -> RegionRef<'_> {
        RegionRef::new(self.map.bytes(), self.layout)
    }
}

/// The vRouter's handle on its stats region (`<run_dir>/stats`).
///
/// Created once at start; hand one [`LcoreStats`] to each forwarding lcore with
/// [`StatsRegion::lcore`]; call [`StatsRegion::set_heartbeat`] about once a second from the
/// main thread and [`StatsRegion::set_state`]`(Stopped)` on a clean exit. Dropping the region
/// does not change the state (a crash and a drop look alike until the pid is gone).
pub struct StatsRegion {
    shared: Arc<Shared>,
    generation: u64,
}

impl StatsRegion {
    /// Creates (or replaces) `<run_dir>/stats` for `max_vifs` vif slots (ids `0..max_vifs`)
    /// and `n_lcores` forwarding lcores, with the static records `vifs` (each stored in the
    /// slot of its id), every counter at zero. Creates `run_dir` if missing.
    ///
    /// The file is built by [`shm::create`] under a temporary name (mode 0644, zeroed
    /// counters, `magic` written last) and renamed into place, so readers never see a
    /// partial file. Its generation is the previous file's plus one (1 if there was none).
    pub fn create(
        run_dir: &Path,
        max_vifs: usize,
        n_lcores: usize,
        vifs: &[VifInfo],
        tsc_hz: u64,
    ) -> Result<StatsRegion, StatsError> {
        let layout = checked_layout(max_vifs, n_lcores, vifs)?;
        StatsRegion::build(run_dir, layout, vifs, tsc_hz, |_| {})
    }

    /// [`StatsRegion::create`], continuing the counters of the previous run's file at the
    /// same path (a restart or an upgrade of the vRouter; see [`crate::continued`] and the
    /// rules of what is carried in `stats/continuing.rs`): per lcore block (all summed into
    /// block 0 when the lcore count changed), per vif id of `vifs`, per drop reason, per
    /// VRF. The previous file's owner must be gone or have stopped its forwarding lcores.
    ///
    /// A previous file this build does not accept is renamed to `stats.old` and the region
    /// starts at zero; the returned [`Continuation`] says which happened (its
    /// [`Continuation::line`] is what to print).
    pub fn create_continuing(
        run_dir: &Path,
        max_vifs: usize,
        n_lcores: usize,
        vifs: &[VifInfo],
        tsc_hz: u64,
    ) -> Result<(StatsRegion, Continuation), StatsError> {
        StatsRegion::create_continuing_with(run_dir, max_vifs, n_lcores, vifs, tsc_hz, &EalFacts::default())
    }

    /// [`StatsRegion::create_continuing`], recording `eal` (the vRouter's DPDK process: EAL
    /// file prefix, huge pages, packet capture) in the header for the tools that attach to it
    /// (`vifdump`); see [`super::StatsReader::eal`]. A prefix longer than
    /// [`super::FILE_PREFIX_BYTES`] or empty records nothing.
    pub fn create_continuing_with(
        run_dir: &Path,
        max_vifs: usize,
        n_lcores: usize,
        vifs: &[VifInfo],
        tsc_hz: u64,
        eal: &EalFacts,
    ) -> Result<(StatsRegion, Continuation), StatsError> {
        let layout = checked_layout(max_vifs, n_lcores, vifs)?;
        let path = run_dir.join(STATS_FILE_NAME);
        let previous = shm::previous(&path, &SPEC, validate)?;
        let ids: Vec<usize> = vifs.iter().map(|v| v.id() as usize).collect();
        if let shm::Previous::Compatible(old_map, old_layout) = &previous {
            let old = RegionRef::new(old_map.bytes(), *old_layout);
            let notes = continuing::notes(layout, old, &ids);
            let region = StatsRegion::build(run_dir, layout, vifs, tsc_hz, |m| {
                record_eal(m, eal);
                continuing::seed(m, layout, old, &ids)
            })?;
            let outcome = Continued::Continued { notes };
            return Ok((region, Continuation { kind: SPEC.kind, path, what: "counters", outcome }));
        }
        let continuation =
            Continuation::from_previous(SPEC.kind, path, "counters", &previous).expect("not a compatible file");
        Ok((StatsRegion::build(run_dir, layout, vifs, tsc_hz, |m| record_eal(m, eal))?, continuation))
    }

    /// Builds the file of `layout` with the records `vifs`; `seed` adds initial counters to
    /// the zeroed mapping after the header and records are written.
    fn build(
        run_dir: &Path,
        layout: Layout,
        vifs: &[VifInfo],
        tsc_hz: u64,
        seed: impl FnOnce(&mut InitMap<'_>),
    ) -> Result<StatsRegion, StatsError> {
        let opts = CreateOptions::new(layout.file_size as u64, 0o644);
        let map = shm::create(&run_dir.join(STATS_FILE_NAME), &SPEC, &opts, |m| {
            init_region(m, layout, vifs, tsc_hz);
            seed(m);
        })?;
        let generation = map.header().generation();
        let taken = (0..layout.n_lcores).map(|_| AtomicBool::new(false)).collect();
        Ok(StatsRegion { shared: Arc::new(Shared { map, layout, taken }), generation })
    }

    /// Path of the region file.
    pub fn path(&self) -> &Path {
        self.shared.map.path()
    }

    /// This file's generation (bumped on every creation).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Publishes the record of a vif added while the vRouter runs (its counters, zero or
    /// left by an earlier vif of the same id, continue). Readers never see a half-written
    /// record: `valid` is cleared first and set last, and the reader checks it again after
    /// its copy ([`super::StatsReader::vif`]).
    pub fn set_vif(&self, info: &VifInfo) -> Result<(), StatsError> {
        let id = info.id() as usize;
        if id >= self.max_vifs() {
            return Err(StatsError::InvalidArgument {
                kind: SPEC.kind,
                msg: format!("vif id {id} does not fit max_vifs {}", self.max_vifs()),
            });
        }
        let off = self.shared.layout.vif_info_offset + id * VIF_INFO_SIZE;
        let base = self.shared.map.as_ptr().cast_mut();
        // SAFETY: `off + VIF_INFO_SIZE` lies inside the mapping (id < max_vifs, the layout
        // holds max_vifs records); the mapping is writable (we created it) and lives as long
        // as `self.shared`. The record's first byte is `valid` (offset 0, asserted in
        // vif_info.rs); it is written as an atomic byte so that concurrent readers see 0
        // while the other bytes change. No reference to the record is held in this process
        // while it is written (readers copy it out).
        unsafe {
            let rec = base.add(off);
            let valid = &*rec.cast::<std::sync::atomic::AtomicU8>();
            valid.store(0, Ordering::Release);
            std::sync::atomic::fence(Ordering::Release);
            let src = (info as *const VifInfo).cast::<u8>();
            std::ptr::copy_nonoverlapping(src.add(1), rec.add(1), VIF_INFO_SIZE - 1);
            std::sync::atomic::fence(Ordering::Release);
            valid.store(1, Ordering::Release);
        }
        Ok(())
    }

    /// Marks the record of a deleted vif: tools no longer list it as configured; its
    /// counters stay in the region (the last figures of the deleted vif) until a vif of the
    /// same id is added.
    pub fn retire_vif(&self, id: u16) {
        let id = usize::from(id);
        if id >= self.max_vifs() {
            return;
        }
        let off = self.shared.layout.vif_info_offset + id * VIF_INFO_SIZE;
        // SAFETY: as in `set_vif`: the `valid` byte of an in-bounds record of our writable
        // mapping, written as an atomic byte.
        unsafe {
            let valid = &*self.shared.map.as_ptr().cast_mut().add(off).cast::<std::sync::atomic::AtomicU8>();
            valid.store(2, Ordering::Release);
        }
    }

    /// Records vif `id`'s link state ([`super::VIF_LINK_UP`] or [`super::VIF_LINK_DOWN`]) in
    /// its record, as one atomic byte (readers copying the record see the old or the new state).
    pub fn set_vif_link(&self, id: u16, link: u8) {
        let id = usize::from(id);
        if id >= self.max_vifs() {
            return;
        }
        let off = self.shared.layout.vif_info_offset + id * VIF_INFO_SIZE + super::vif_info::VIF_LINK_OFFSET;
        // SAFETY: the link byte of an in-bounds record (id < max_vifs; the offset is asserted
        // in vif_info.rs) of our writable mapping, written as an atomic byte; no reference to
        // the record is held in this process.
        unsafe {
            let byte = &*self.shared.map.as_ptr().cast_mut().add(off).cast::<std::sync::atomic::AtomicU8>();
            byte.store(link, Ordering::Release);
        }
    }

    /// Vif slots in the region (vif ids `0..max_vifs`).
    pub fn max_vifs(&self) -> usize {
        self.shared.layout.max_vifs
    }

    /// Forwarding lcores, one counter block each.
    pub fn n_lcores(&self) -> usize {
        self.shared.layout.n_lcores
    }

    /// The counter handle of lcore `index` (`0..n_lcores`), to be moved to that lcore's
    /// thread. `None` if `index` is out of range or a handle for it already exists (one
    /// writer per block); dropping the handle makes the index available again.
    pub fn lcore(&self, index: usize) -> Option<LcoreStats> {
        let region = self.shared.region();
        let head = region.lcore_head(index)?;
        if self.shared.taken[index].swap(true, Ordering::AcqRel) {
            return None;
        }
        let head_ptr = head as *const LcoreHead;
        let perf = region.lcore_perf(index)?;
        debug_assert_eq!(perf as *const LcorePerfBlock as usize - head_ptr as usize, LCORE_HEAD_SIZE);
        // The vif blocks follow the performance block; max_vifs >= 1 (checked in `create`).
        let vif0 = region.vif_block(index, 0)? as *const VifCounterBlock;
        debug_assert_eq!(vif0 as usize - head_ptr as usize, VIF_BLOCKS_OFFSET);
        let tsc_hz = region.header().tsc_hz;
        // The VRF blocks follow the vif blocks (max_vrfs = MAX_VRFS >= 1).
        let vrf0 = region.vrf_block(index, 0)? as *const VrfCounterBlock;
        debug_assert_eq!(vrf0 as usize - head_ptr as usize, self.shared.layout.vrf_blocks_offset);
        Some(LcoreStats {
            head: NonNull::from(head),
            perf: NonNull::from(perf),
            times: LoopTimes { window: if tsc_hz == 0 { u64::MAX } else { tsc_hz }, ..LoopTimes::default() },
            vifs: NonNull::new(vif0.cast_mut())?,
            max_vifs: self.shared.layout.max_vifs,
            vrfs: NonNull::new(vrf0.cast_mut())?,
            max_vrfs: self.shared.layout.max_vrfs,
            index,
            shared: Arc::clone(&self.shared),
        })
    }

    /// Stores the heartbeat (unix milliseconds); call about once a second.
    pub fn set_heartbeat(&self, now_ms: u64) {
        self.shared.region().header().heartbeat_ms.store(now_ms, Ordering::Release);
    }

    /// [`StatsRegion::set_heartbeat`] with the current time.
    pub fn heartbeat_now(&self) {
        self.set_heartbeat(unix_time_ms());
    }

    /// Records whether the vRouter runs or stopped cleanly.
    pub fn set_state(&self, state: RegionState) {
        self.shared.region().header().state.store(state as u32, Ordering::Release);
    }

    /// Sums over all lcores and vifs (what the periodic summary prints).
    pub fn totals(&self) -> Totals {
        let r = self.shared.region();
        let mut t = Totals::default();
        for vif in 0..r.layout().max_vifs {
            let c = r.vif_counters(vif, None);
            t.rx_packets = t.rx_packets.wrapping_add(c.rx_packets);
            t.rx_bytes = t.rx_bytes.wrapping_add(c.rx_bytes);
            t.rx_errors = t.rx_errors.wrapping_add(c.rx_errors);
            t.tx_packets = t.tx_packets.wrapping_add(c.tx_packets);
            t.tx_bytes = t.tx_bytes.wrapping_add(c.tx_bytes);
            t.tx_errors = t.tx_errors.wrapping_add(c.tx_errors);
        }
        t.drops = r.drops(None).iter().fold(0u64, |a, &d| a.wrapping_add(d));
        let l = r.lcore_counters(None);
        t.busy_polls = l.busy_polls;
        t.idle_polls = l.idle_polls;
        t.invalid_vif = l.invalid_vif;
        t.mir_tpkts = l.mirror_packets;
        t.mir_bytes = l.mirror_bytes;
        t.mir_errors = l.mirror_errors;
        t
    }

    /// Counters of one vif (summed over lcores unless `core` selects one; zeros if out of range).
    pub fn vif_counters(&self, vif: u16, core: Option<usize>) -> VifCounters {
        self.shared.region().vif_counters(vif as usize, core)
    }

    /// Global drop counters by [`DropReason::index`].
    pub fn drops(&self, core: Option<usize>) -> [u64; DROP_REASON_COUNT] {
        self.shared.region().drops(core)
    }

    /// One vif's drop counters by [`DropReason::index`].
    pub fn vif_drops(&self, vif: u16, core: Option<usize>) -> [u64; DROP_REASON_COUNT] {
        self.shared.region().vif_drops(vif as usize, core)
    }

    /// Poll-loop and mirror counters, summed over lcores or of one lcore (`core`).
    pub fn lcore_counters(&self, core: Option<usize>) -> LcoreCounters {
        self.shared.region().lcore_counters(core)
    }

    /// Counters of VRF `vrf`, summed over lcores or of one lcore (`core`); zeros if out of
    /// range.
    pub fn vrf_counters(&self, vrf: u32, core: Option<usize>) -> VrfCounters {
        self.shared.region().vrf_counters(vrf as usize, core)
    }
}

/// The layout of a region of `max_vifs` vifs and `n_lcores` lcores, after checking the
/// counts and that every vif of `vifs` has its own id below `max_vifs`.
fn checked_layout(max_vifs: usize, n_lcores: usize, vifs: &[VifInfo]) -> Result<Layout, StatsError> {
    let invalid = |msg: String| Err(StatsError::InvalidArgument { kind: SPEC.kind, msg });
    if n_lcores == 0 || n_lcores > MAX_LCORES {
        return invalid(format!("n_lcores is {n_lcores} (expected 1..={MAX_LCORES})"));
    }
    if max_vifs == 0 || max_vifs > MAX_VIFS {
        return invalid(format!("max_vifs is {max_vifs} (expected 1..={MAX_VIFS})"));
    }
    let Some(layout) = Layout::new(max_vifs, n_lcores) else {
        return invalid(format!("{max_vifs} vifs x {n_lcores} lcores is too large"));
    };
    let mut seen = vec![false; max_vifs];
    for v in vifs {
        let id = v.id() as usize;
        if id >= max_vifs {
            return invalid(format!("vif id {id} does not fit max_vifs {max_vifs}"));
        }
        if std::mem::replace(&mut seen[id], true) {
            return invalid(format!("vif id {id} given twice"));
        }
    }
    Ok(layout)
}

/// Writes the region's own header fields and the static `VifInfo` records into the fresh,
/// zeroed mapping (the common prefix and `magic` are [`shm::create`]'s; counters are zero).
fn init_region(m: &mut InitMap<'_>, layout: Layout, vifs: &[VifInfo], tsc_hz: u64) {
    let h: &mut Header = m.get_mut(0).expect("the layout holds the header");
    h.max_vifs = layout.max_vifs as u32;
    h.n_lcores = layout.n_lcores as u32;
    h.n_drop_reasons = DROP_REASON_COUNT as u32;
    h.vif_info_size = VIF_INFO_SIZE as u32;
    h.vif_info_offset = layout.vif_info_offset as u64;
    h.lcore_block_offset = layout.lcore_block_offset as u64;
    h.lcore_block_size = layout.lcore_block_size as u64;
    h.vif_counter_size = VIF_COUNTER_SIZE as u32;
    h.lcore_head_size = LCORE_HEAD_SIZE as u32;
    h.lcore_perf_size = LCORE_PERF_SIZE as u32;
    h.max_vrfs = layout.max_vrfs as u32;
    h.vrf_counter_size = VRF_COUNTER_SIZE as u32;
    h.tsc_hz = tsc_hz;
    h.state = AtomicU32::new(RegionState::Running as u32);
    h.heartbeat_ms = AtomicU64::new(unix_time_ms());
    for v in vifs {
        // id < max_vifs (checked by the caller) keeps the record inside the VifInfo table.
        let off = layout.vif_info_offset + v.id() as usize * VIF_INFO_SIZE;
        *m.get_mut::<VifInfo>(off).expect("vif ids fit max_vifs") = *v;
    }
}

/// Writes `eal` into the fresh header (before `magic`, with the other static fields), if it
/// fits.
fn record_eal(m: &mut InitMap<'_>, eal: &EalFacts) {
    if let Some((flags, prefix)) = eal.encode() {
        let h: &mut Header = m.get_mut(0).expect("the layout holds the header");
        h.eal_flags = flags;
        h.eal_file_prefix = prefix;
    }
}

/// The counters of one forwarding lcore: owned, `Send` (move it to the lcore thread), not
/// `Sync` (exactly one thread writes a block, which is what makes the `load`+`store`
/// increments below correct).
///
/// vif ids `>= max_vifs` never index out of the block: `rx`/`tx`/`*_error` ignore them,
/// `drop` counts only the lcore's global counter; each such call bumps the lcore's
/// `invalid_vif` counter instead. VRF ids `>= MAX_VRFS` (which the configuration rejects)
/// are not counted.
pub struct LcoreStats {
    head: NonNull<LcoreHead>,
    /// The performance block, right after `head`.
    perf: NonNull<LcorePerfBlock>,
    /// The loop's own timing state (not shared: the thread's).
    times: LoopTimes,
    /// First of `max_vifs` consecutive `VifCounterBlock`s, right after `head`.
    vifs: NonNull<VifCounterBlock>,
    max_vifs: usize,
    /// First of `max_vrfs` consecutive `VrfCounterBlock`s, right after the vif blocks.
    vrfs: NonNull<VrfCounterBlock>,
    max_vrfs: usize,
    index: usize,
    /// Keeps the mapping `head` and `vifs` point into alive.
    shared: Arc<Shared>,
}

/// What an lcore remembers between [`LcoreStats::iteration`], [`LcoreStats::before_burst`] and
/// [`LcoreStats::after_burst`] calls (`Cell`s: the handle is used through `&self` by its one
/// thread).
#[derive(Default)]
struct LoopTimes {
    /// TSC at the start of the current iteration (0 before the first).
    iteration: Cell<u64>,
    /// TSC of the last read: the iteration's start, or the end of its last closed burst.
    mark: Cell<u64>,
    /// The burst forwarded last, not yet timed: its RX queue slot and packets.
    open: Cell<Option<(usize, u64)>>,
    /// Whether the previous iteration received packets.
    busy: Cell<bool>,
    /// Most cycles of one burst in the current window.
    window_max: Cell<u64>,
    /// TSC at which the current window ends.
    window_end: Cell<u64>,
    /// Length of a window: the TSC frequency (about a second).
    window: u64,
}

// SAFETY: `head`, `perf`, `vifs` and `vrfs` point into the mapping owned by `shared` (an `Arc`, kept alive
// by this handle; the mapping's address does not change when the `MmapMut` moves). Every
// access through them is an atomic operation on `AtomicU64`s, valid from any thread. The
// handle is deliberately not `Sync`: one thread at a time uses it, so the non-atomic
// read-modify-write (`load` then `store`) of a counter cannot lose increments.
unsafe impl Send for LcoreStats {}

impl LcoreStats {
    /// Which lcore block this handle writes.
    pub fn index(&self) -> usize {
        self.index
    }

    #[inline(always)]
    fn head(&self) -> &LcoreHead {
        // SAFETY: see the `Send` impl: valid, aligned, alive as long as `self`.
        unsafe { self.head.as_ref() }
    }

    #[inline(always)]
    fn perf(&self) -> &LcorePerfBlock {
        // SAFETY: see the `Send` impl: valid, aligned, alive as long as `self`.
        unsafe { self.perf.as_ref() }
    }

    #[inline(always)]
    fn vif(&self, vif: u16) -> Option<&VifCounterBlock> {
        let i = vif as usize;
        if i < self.max_vifs {
            // SAFETY: i < max_vifs: the block lies inside this lcore's block of the mapping
            // (layout checked at creation); alive and aligned as for `head`.
            Some(unsafe { &*self.vifs.as_ptr().add(i) })
        } else {
            bump(&self.head().invalid_vif, 1);
            None
        }
    }

    /// Adds `counts` (a tally of this lcore's forwarding decisions in VRF `vrf`, e.g. one
    /// burst's) to the VRF's block; only the non-zero counters are written.
    #[inline]
    pub fn vrf_add(&self, vrf: u32, counts: &VrfCounters) {
        let i = vrf as usize;
        if i < self.max_vrfs {
            // SAFETY: i < max_vrfs: the block lies inside this lcore's block of the mapping
            // (layout checked at creation); alive and aligned as for `head`.
            counts.bump_block(unsafe { &*self.vrfs.as_ptr().add(i) });
        }
    }

    /// `pkts` packets of `bytes` bytes received on `vif`.
    #[inline]
    pub fn rx(&self, vif: u16, pkts: u64, bytes: u64) {
        if let Some(b) = self.vif(vif) {
            bump(&b.rx_packets, pkts);
            bump(&b.rx_bytes, bytes);
        }
    }

    /// `pkts` packets of `bytes` bytes sent on `vif`.
    #[inline]
    pub fn tx(&self, vif: u16, pkts: u64, bytes: u64) {
        if let Some(b) = self.vif(vif) {
            bump(&b.tx_packets, pkts);
            bump(&b.tx_bytes, bytes);
        }
    }

    /// One receive error on `vif` (counts the error only; also call [`LcoreStats::drop`]
    /// with a reason if the packet is dropped).
    #[inline]
    pub fn rx_error(&self, vif: u16) {
        if let Some(b) = self.vif(vif) {
            bump(&b.rx_errors, 1);
        }
    }

    /// `n` transmit errors on `vif` (e.g. packets the TX queue did not take).
    #[inline]
    pub fn tx_error(&self, vif: u16, n: u64) {
        if let Some(b) = self.vif(vif) {
            bump(&b.tx_errors, n);
        }
    }

    /// `n` packets dropped for `reason`: counted once in this lcore's global drop counters
    /// and, when `vif` is `Some` (and in range), once in that vif's drop counters.
    #[inline]
    pub fn drop(&self, vif: Option<u16>, reason: DropReason, n: u64) {
        let r = reason.index();
        bump(&self.head().drops[r], n);
        if let Some(b) = vif.and_then(|v| self.vif(v)) {
            bump(&b.drops[r], n);
        }
    }

    /// One mirror copy of `bytes` bytes (as sent, encapsulation included) handed to the
    /// fabric TX queue: counted vRouter-wide and, for interface mirroring (`vif` is the
    /// mirrored vif), on that vif.
    #[inline]
    pub fn mirror(&self, vif: Option<u16>, bytes: u64) {
        let h = self.head();
        bump(&h.mirror_packets, 1);
        bump(&h.mirror_bytes, bytes);
        if let Some(b) = vif.and_then(|v| self.vif(v)) {
            bump(&b.mirror_packets, 1);
            bump(&b.mirror_bytes, bytes);
        }
    }

    /// `n` mirror copies that were due but failed for `reason` (a mirror drop reason):
    /// counted as vRouter-wide mirror errors and drops, and on `vif` (the mirrored vif for
    /// interface mirroring, the packet's input vif for flow mirroring) as drops, plus as
    /// mirror errors when `vif_mirror_error` (interface mirroring).
    #[inline]
    pub fn mirror_error(&self, vif: Option<u16>, vif_mirror_error: bool, reason: DropReason, n: u64) {
        bump(&self.head().mirror_errors, n);
        self.drop(vif, reason, n);
        if vif_mirror_error {
            if let Some(b) = vif.and_then(|v| self.vif(v)) {
                bump(&b.mirror_errors, n);
            }
        }
    }

    /// One ICMP error answer handed to a TX queue (`sent`), or one suppressed by the rate
    /// limit.
    #[inline]
    pub fn icmp_error(&self, sent: bool) {
        let h = self.head();
        bump(if sent { &h.icmp_errors_sent } else { &h.icmp_errors_suppressed }, 1);
    }

    /// Counts one poll-loop iteration: busy if it received packets, idle otherwise (its
    /// cycles are counted at the start of the next, [`LcoreStats::iteration`]).
    #[inline]
    pub fn poll(&self, received: bool) {
        let h = self.head();
        bump(if received { &h.busy_polls } else { &h.idle_polls }, 1);
        self.times.busy.set(received);
    }

    /// A poll-loop iteration starts at TSC `tsc` (the loop's one read of the TSC at the
    /// start of an iteration): the cycles since the previous start go to the busy or the idle
    /// cycles, after what the previous iteration's [`LcoreStats::poll`] said; the burst still
    /// open ([`LcoreStats::after_burst`]) ends here; about once a second the window of
    /// [`super::LcorePerfStats::burst_cycles_max_recent`] closes.
    #[inline]
    pub fn iteration(&self, tsc: u64) {
        let t = &self.times;
        if let Some((slot, n)) = t.open.take() {
            self.close_burst(slot, n, tsc);
        }
        let last = t.iteration.replace(tsc);
        t.mark.set(tsc);
        if last != 0 {
            let p = self.perf();
            bump(if t.busy.get() { &p.busy_cycles } else { &p.idle_cycles }, tsc.wrapping_sub(last));
        }
        if tsc >= t.window_end.get() {
            self.close_window(tsc);
        }
    }

    #[cold]
    #[inline(never)]
    fn close_window(&self, tsc: u64) {
        let t = &self.times;
        // The first call only opens the first window.
        if t.window_end.get() != 0 {
            self.perf().burst_cycles_max_recent.store(t.window_max.replace(0), Ordering::Relaxed);
        }
        t.window_end.set(tsc.saturating_add(t.window));
    }

    /// Call before forwarding a received burst: a burst of the same iteration still open ends
    /// now, at a TSC read through `rdtsc`. Only an iteration with more than one non-empty
    /// burst reads the TSC here: the last burst of an iteration ends at the next iteration's
    /// start ([`LcoreStats::iteration`]), which reads it anyway.
    #[inline]
    pub fn before_burst(&self, rdtsc: impl FnOnce() -> u64) {
        if let Some((slot, n)) = self.times.open.take() {
            self.close_burst(slot, n, rdtsc());
        }
    }

    /// A burst of `n` packets (`n >= 1`) from the RX queue at position `slot` of the lcore's
    /// poll list was forwarded (transmit flush included). It stays open until the next TSC
    /// read ([`LcoreStats::before_burst`] or [`LcoreStats::iteration`]): its cycles run from
    /// the previous read (the iteration's start or the end of the burst before it) to that
    /// read, empty polls after it included.
    #[inline]
    pub fn after_burst(&self, slot: usize, n: usize) {
        self.times.open.set(Some((slot, n as u64)));
    }

    /// Counts the burst at `slot` of `n` packets that ended at TSC `tsc`.
    #[inline]
    fn close_burst(&self, slot: usize, n: u64, tsc: u64) {
        let t = &self.times;
        let cycles = tsc.wrapping_sub(t.mark.replace(tsc));
        let p = self.perf();
        bump(&p.bursts, 1);
        bump(&p.burst_packets, n);
        bump(&p.burst_cycles, cycles);
        bump(&p.burst_sizes[burst_size_bucket(n)], 1);
        bump(&p.packet_cycles[packet_cycles_bucket(cycles, n)], n);
        if cycles > t.window_max.get() {
            t.window_max.set(cycles);
            if cycles > load(&p.burst_cycles_max) {
                p.burst_cycles_max.store(cycles, Ordering::Relaxed);
            }
        }
        if let Some(q) = p.rxqs.get(slot) {
            bump(&q.packets, n);
            bump(&q.bursts, 1);
            bump(&q.cycles, cycles);
        }
    }

    /// The lcore polls these RX queues (vif, queue), in this order, from now on: slot `i`
    /// counts the `i`-th (the first [`RXQ_SLOTS`]). A slot whose queue changes starts again
    /// from zero; readers never see the new queue with the old queue's counts (the identity
    /// is cleared while the counters are reset).
    pub fn set_rx_queues(&self, queues: &[(u16, u16)]) {
        let p = self.perf();
        p.rx_queues.store(queues.len() as u64, Ordering::Relaxed);
        for (i, slot) in p.rxqs.iter().enumerate() {
            let id = queues.get(i).map_or(0, |&(vif, q)| rxq_id(vif, q));
            if load(&slot.id) == id {
                continue;
            }
            slot.id.store(0, Ordering::Release);
            for c in [&slot.packets, &slot.bursts, &slot.cycles] {
                c.store(0, Ordering::Relaxed);
            }
            slot.id.store(id, Ordering::Release);
        }
        debug_assert!(p.rxqs.len() == RXQ_SLOTS);
    }
}

impl Drop for LcoreStats {
    fn drop(&mut self) {
        self.shared.taken[self.index].store(false, Ordering::Release);
    }
}
