//! Reader side: tools map a running (or stopped) vRouter's region read-only.

use std::path::Path;
use std::sync::atomic::{fence, Ordering};

use shm::{Mapped, Mismatch, OpenOptions};

use super::layout::{
    Header, Layout, RegionRef, LCORE_HEAD_SIZE, LCORE_PERF_SIZE, SPEC, VIF_COUNTER_SIZE, VIF_INFO_SIZE,
    VRF_COUNTER_SIZE,
};
use super::perf::LcorePerfStats;
use super::vif_info::VifInfoOwned;
use super::{
    unix_time_ms, EalFacts, LcoreCounters, LcorePerf, RegionState, StatsError, VifCounters, VrfCounters, MAGIC,
    MAX_LCORES, MAX_VIFS, MAX_VRFS, STALE_HEARTBEAT_MS, STATS_FILE_NAME,
};
use crate::drop_reason::DROP_REASON_COUNT;

/// Is the region's creator still running?
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// State is running, the creator still runs (pid and start time) and the heartbeat is
    /// recent.
    Running,
    /// The creator stopped cleanly; the counters are final.
    Stopped,
    /// State says running but the creator is gone (its pid does not run, or runs a process
    /// with another start time) or its heartbeat is older than
    /// [`STALE_HEARTBEAT_MS`]: the counters are from a crashed or hung run.
    Stale,
}

/// The header, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderInfo {
    /// Layout version the file was written with (this build's is [`super::LAYOUT_VERSION`]).
    pub layout_version: u32,
    /// Bytes the layout occupies (the file's declared size).
    pub file_size: u64,
    /// Vif slots in the region (vif ids `0..max_vifs`).
    pub max_vifs: usize,
    /// Forwarding lcores, one counter block each.
    pub n_lcores: usize,
    /// Drop reasons per counter array (the writer's [`DROP_REASON_COUNT`]).
    pub n_drop_reasons: usize,
    /// This file's generation (bumped on every creation).
    pub generation: u64,
    /// Pid of the vRouter that created the region.
    pub creator_pid: u32,
    /// Creation time of the region, Unix seconds.
    pub start_time_unix: u64,
    /// TSC frequency of the forwarding lcores, Hz.
    pub tsc_hz: u64,
    /// A [`RegionState`] value (1 running, 2 stopped).
    pub state: u32,
    /// Unix milliseconds of the creator's last heartbeat (see [`STALE_HEARTBEAT_MS`]).
    pub heartbeat_ms: u64,
}

/// A read-only mapping of `<run_dir>/stats`, validated against this build's layout.
pub struct StatsReader {
    map: Mapped,
    layout: Layout,
    generation: u64,
}

impl StatsReader {
    /// Opens `<run_dir>/stats`, as [`StatsReader::open_file`].
    pub fn open(run_dir: &Path) -> Result<StatsReader, StatsError> {
        StatsReader::open_file(&run_dir.join(STATS_FILE_NAME))
    }

    /// Opens a region file by path, also when its vRouter stopped or died (the tools show
    /// the last counters with a warning, see [`StatsReader::liveness`]):
    /// [`StatsReader::open_with`] with [`OpenOptions::allow_stale`].
    pub fn open_file(path: &Path) -> Result<StatsReader, StatsError> {
        StatsReader::open_with(path, &OpenOptions::new().allow_stale())
    }

    /// Opens a region file through [`shm::open`]: checks magic, layout version, every size
    /// and offset in the header, that the file is as large as they say, and (unless `opts`
    /// allow a stale region) that its creator still runs, before touching anything else.
    pub fn open_with(path: &Path, opts: &OpenOptions) -> Result<StatsReader, StatsError> {
        let (map, layout) = shm::open(path, &SPEC, opts, validate)?;
        let generation = map.header().generation();
        Ok(StatsReader { map, layout, generation })
    }

    fn region(&self) -> RegionRef<'_> {
        RegionRef::new(self.map.bytes(), self.layout)
    }

    /// Path of the mapped file.
    pub fn path(&self) -> &Path {
        self.map.path()
    }

    /// This file's generation (bumped on every creation; a change means the vRouter restarted).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Vif slots in the region (vif ids `0..max_vifs`).
    pub fn max_vifs(&self) -> usize {
        self.layout.max_vifs
    }

    /// Forwarding lcores, one counter block each.
    pub fn n_lcores(&self) -> usize {
        self.layout.n_lcores
    }

    /// VRF ids with counters (`0..max_vrfs`).
    pub fn max_vrfs(&self) -> usize {
        self.layout.max_vrfs
    }

    /// The header, decoded (state and heartbeat as of now).
    pub fn header(&self) -> HeaderInfo {
        let h = self.region().header();
        let info = HeaderInfo {
            layout_version: h.region.layout_version(),
            file_size: h.region.layout_size(),
            max_vifs: h.max_vifs as usize,
            n_lcores: h.n_lcores as usize,
            n_drop_reasons: h.n_drop_reasons as usize,
            generation: h.region.generation(),
            creator_pid: h.region.owner_pid(),
            start_time_unix: h.region.created_unix_ns() / 1_000_000_000,
            tsc_hz: h.tsc_hz,
            state: h.state.load(Ordering::Relaxed),
            heartbeat_ms: h.heartbeat_ms.load(Ordering::Relaxed),
        };
        fence(Ordering::Acquire);
        info
    }

    /// What the vRouter recorded of its DPDK process (EAL file prefix, huge pages, packet
    /// capture), or `None` for a file of a build that did not record it.
    pub fn eal(&self) -> Option<EalFacts> {
        let h = self.region().header();
        EalFacts::decode(h.eal_flags, &h.eal_file_prefix)
    }

    /// The configured vifs, by id.
    pub fn vifs(&self) -> Vec<VifInfoOwned> {
        (0..self.layout.max_vifs).filter_map(|slot| self.vif_slot(slot)).collect()
    }

    /// The vif with this id, if configured.
    pub fn vif(&self, vif_id: u16) -> Option<VifInfoOwned> {
        self.vif_slot(vif_id as usize)
    }

    fn vif_slot(&self, slot: usize) -> Option<VifInfoOwned> {
        let v = self.region().vif_info(slot)?;
        fence(Ordering::Acquire);
        // A record being rewritten (a vif added at runtime) has `valid` 0 while it changes:
        // the copy is kept only when `valid` still reads 1 after it.
        let again = self.region().vif_info(slot)?;
        (v.is_valid() && again.is_valid() && v.id() as usize == slot).then(|| v.decode())
    }

    /// Deleted vifs whose last counters are still in the region (record state 2), by id.
    pub fn retired_vifs(&self) -> Vec<VifInfoOwned> {
        (0..self.layout.max_vifs)
            .filter_map(|slot| {
                let v = self.region().vif_info(slot)?;
                (v.is_retired() && v.id() as usize == slot).then(|| v.decode())
            })
            .collect()
    }

    /// Counters of `vif_id`, summed over lcores unless `core` selects one. Zeros if the vif
    /// or the core is out of range.
    pub fn vif_counters(&self, vif_id: u16, core: Option<usize>) -> VifCounters {
        let c = self.region().vif_counters(vif_id as usize, core);
        fence(Ordering::Acquire);
        c
    }

    /// Global drop counters (every drop, whether or not a vif was known), indexed by
    /// [`crate::drop_reason::DropReason::index`].
    pub fn drops(&self, core: Option<usize>) -> [u64; DROP_REASON_COUNT] {
        let d = self.region().drops(core);
        fence(Ordering::Acquire);
        d
    }

    /// Drop counters of one vif.
    pub fn vif_drops(&self, vif_id: u16, core: Option<usize>) -> [u64; DROP_REASON_COUNT] {
        let d = self.region().vif_drops(vif_id as usize, core);
        fence(Ordering::Acquire);
        d
    }

    /// Counters of VRF `vrf`, summed over lcores unless `core` selects one. Zeros if the VRF
    /// or the core is out of range.
    pub fn vrf_counters(&self, vrf: u32, core: Option<usize>) -> VrfCounters {
        let c = self.region().vrf_counters(vrf as usize, core);
        fence(Ordering::Acquire);
        c
    }

    /// Every VRF with a non-zero counter (summed over lcores unless `core` selects one), by
    /// id: what `vrfstats --dump` lists.
    pub fn active_vrfs(&self, core: Option<usize>) -> Vec<(u32, VrfCounters)> {
        let r = self.region();
        let out = (0..self.layout.max_vrfs)
            .map(|v| (v as u32, r.vrf_counters(v, core)))
            .filter(|(_, c)| *c != VrfCounters::default())
            .collect();
        fence(Ordering::Acquire);
        out
    }

    /// Poll-loop counters, summed over lcores unless `core` selects one.
    pub fn lcore_counters(&self, core: Option<usize>) -> LcoreCounters {
        let c = self.region().lcore_counters(core);
        fence(Ordering::Acquire);
        c
    }

    /// Performance counters of lcore `core` (histograms, maxima and RX queues included);
    /// `None` if the core is out of range.
    pub fn lcore_perf(&self, core: usize) -> Option<LcorePerfStats> {
        let p = self.region().lcore_perf(core).map(LcorePerfStats::read);
        fence(Ordering::Acquire);
        p
    }

    /// Busy and idle cycles, bursts, their packets and cycles, summed over lcores unless
    /// `core` selects one.
    pub fn lcore_perf_counters(&self, core: Option<usize>) -> LcorePerf {
        let c = self.region().lcore_perf_counters(core);
        fence(Ordering::Acquire);
        c
    }

    /// Whether the creator still runs (see [`Liveness`]).
    pub fn liveness(&self) -> Liveness {
        self.liveness_at(unix_time_ms())
    }

    /// [`StatsReader::liveness`] as of `now_ms` (unix milliseconds).
    pub fn liveness_at(&self, now_ms: u64) -> Liveness {
        let h = self.header();
        if h.state == RegionState::Stopped as u32 {
            Liveness::Stopped
        } else if h.state == RegionState::Running as u32
            && self.map.owner_alive()
            && now_ms.saturating_sub(h.heartbeat_ms) <= STALE_HEARTBEAT_MS
        {
            Liveness::Running
        } else {
            Liveness::Stale
        }
    }

    /// True if the file at the path is no longer the one mapped (a vRouter restarted, or
    /// the file was removed): data read from this reader is from a previous run. Tools check
    /// it after reading and retry with a fresh [`StatsReader::open`].
    pub fn restarted(&self) -> bool {
        let magic = self.map.header().magic.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        magic != MAGIC || self.map.is_replaced()
    }
}

/// Checks the region's own header fields (the common prefix was checked by [`shm::open`]);
/// returns its layout.
pub(super) fn validate(map: &Mapped) -> Result<Layout, Mismatch> {
    let h: &Header = map.get(0).expect("shm::open checked the header size");
    let check = Mismatch::check;
    check("n_drop_reasons", h.n_drop_reasons.into(), DROP_REASON_COUNT as u64)?;
    check("vif_info_size", h.vif_info_size.into(), VIF_INFO_SIZE as u64)?;
    check("vif_counter_size", h.vif_counter_size.into(), VIF_COUNTER_SIZE as u64)?;
    check("lcore_head_size", h.lcore_head_size.into(), LCORE_HEAD_SIZE as u64)?;
    check("lcore_perf_size", h.lcore_perf_size.into(), LCORE_PERF_SIZE as u64)?;
    check("vrf_counter_size", h.vrf_counter_size.into(), VRF_COUNTER_SIZE as u64)?;
    check("max_vrfs", h.max_vrfs.into(), MAX_VRFS as u64)?;
    let max_vifs = h.max_vifs as usize;
    let n_lcores = h.n_lcores as usize;
    for (what, n, max) in [("max_vifs", max_vifs, MAX_VIFS), ("n_lcores", n_lcores, MAX_LCORES)] {
        if n == 0 {
            check(what, 0, 1)?;
        } else if n > max {
            check(what, n as u64, max as u64)?;
        }
    }
    let layout = Layout::new(max_vifs, n_lcores).expect("counts within maxima");
    check("vif_info_offset", h.vif_info_offset, layout.vif_info_offset as u64)?;
    check("lcore_block_offset", h.lcore_block_offset, layout.lcore_block_offset as u64)?;
    check("lcore_block_size", h.lcore_block_size, layout.lcore_block_size as u64)?;
    // shm::open checked that the mapping holds the layout_size the header declares.
    check("file_size", h.region.layout_size(), layout.file_size as u64)?;
    Ok(layout)
}
