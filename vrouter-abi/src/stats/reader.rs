//! Reader side: tools map a running (or stopped) vRouter's region read-only.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, Ordering};

use memmap2::Mmap;

use super::layout::{Header, Layout, RegionRef, HEADER_SIZE, LCORE_HEAD_SIZE, VIF_COUNTER_SIZE, VIF_INFO_SIZE};
use super::vif_info::VifInfoOwned;
use super::{
    unix_time_ms, LcoreCounters, RegionState, StatsError, VifCounters, LAYOUT_VERSION, MAGIC, MAX_LCORES, MAX_VIFS,
    STALE_HEARTBEAT_MS, STATS_FILE_NAME,
};
use crate::drop_reason::DROP_REASON_COUNT;

/// Is the region's creator still running?
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// State is running, the creator pid exists and the heartbeat is recent.
    Running,
    /// The creator stopped cleanly; the counters are final.
    Stopped,
    /// State says running but the creator is gone or its heartbeat is older than
    /// [`STALE_HEARTBEAT_MS`]: the counters are from a crashed or hung run.
    Stale,
}

/// The header, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderInfo {
    pub layout_version: u32,
    pub file_size: u64,
    pub max_vifs: usize,
    pub n_lcores: usize,
    pub n_drop_reasons: usize,
    pub generation: u64,
    pub creator_pid: u32,
    pub start_time_unix: u64,
    pub tsc_hz: u64,
    /// A [`RegionState`] value (1 running, 2 stopped).
    pub state: u32,
    pub heartbeat_ms: u64,
}

/// A read-only mapping of `<run_dir>/stats`, validated against this build's layout.
pub struct StatsReader {
    map: Mmap,
    layout: Layout,
    path: PathBuf,
    generation: u64,
    dev_ino: (u64, u64),
}

impl StatsReader {
    /// Opens `<run_dir>/stats`.
    pub fn open(run_dir: &Path) -> Result<StatsReader, StatsError> {
        StatsReader::open_file(&run_dir.join(STATS_FILE_NAME))
    }

    /// Opens a region file by path. Checks magic, layout version, every size and offset in
    /// the header, and that the file is as large as they say, before touching anything else.
    pub fn open_file(path: &Path) -> Result<StatsReader, StatsError> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StatsError::NotRunning { path: path.to_path_buf() })
            }
            Err(e) => return Err(StatsError::io("opening", path, e)),
        };
        let meta = file.metadata().map_err(|e| StatsError::io("reading metadata of", path, e))?;
        let len = meta.len();
        if len < HEADER_SIZE as u64 {
            return Err(StatsError::TooShort {
                path: path.to_path_buf(),
                what: "header",
                found: len,
                needed: HEADER_SIZE as u64,
            });
        }
        // SAFETY: a read-only shared mapping. The vRouter keeps modifying the counters while
        // we read; we only read them with Relaxed atomic loads of 8 bytes (allowed on
        // read-only memory). The vRouter never truncates the file (it replaces it by rename),
        // so the mapped range stays backed.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| StatsError::io("mapping", path, e))?;
        let layout = validate(path, &map)?;
        // SAFETY: validate() checked file_size <= map.len(); the mapping lives in `self`
        // and is page-aligned.
        let generation = unsafe { RegionRef::new(map.as_ptr(), map.len(), layout) }.header().generation;
        Ok(StatsReader { map, layout, path: path.to_path_buf(), generation, dev_ino: (meta.dev(), meta.ino()) })
    }

    fn region(&self) -> RegionRef<'_> {
        // SAFETY: checked in `open_file` (file_size <= len, page-aligned), and `map` lives as
        // long as the borrow of `self`.
        unsafe { RegionRef::new(self.map.as_ptr(), self.map.len(), self.layout) }
    }

    /// Path of the mapped file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn max_vifs(&self) -> usize {
        self.layout.max_vifs
    }

    pub fn n_lcores(&self) -> usize {
        self.layout.n_lcores
    }

    /// The header, decoded (state and heartbeat as of now).
    pub fn header(&self) -> HeaderInfo {
        let h = self.region().header();
        let info = HeaderInfo {
            layout_version: h.layout_version,
            file_size: h.file_size,
            max_vifs: h.max_vifs as usize,
            n_lcores: h.n_lcores as usize,
            n_drop_reasons: h.n_drop_reasons as usize,
            generation: h.generation,
            creator_pid: h.creator_pid,
            start_time_unix: h.start_time_unix,
            tsc_hz: h.tsc_hz,
            state: h.state.load(Ordering::Relaxed),
            heartbeat_ms: h.heartbeat_ms.load(Ordering::Relaxed),
        };
        fence(Ordering::Acquire);
        info
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
        (v.is_valid() && v.id() as usize == slot).then(|| v.decode())
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

    /// Poll-loop counters, summed over lcores unless `core` selects one.
    pub fn lcore_counters(&self, core: Option<usize>) -> LcoreCounters {
        let c = self.region().lcore_counters(core);
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
            && pid_alive(h.creator_pid)
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
        let magic = self.region().header().magic.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        if magic != MAGIC {
            return true;
        }
        match std::fs::metadata(&self.path) {
            Ok(m) => (m.dev(), m.ino()) != self.dev_ino,
            Err(_) => true,
        }
    }
}

/// Does process `pid` exist? (`kill(pid, 0)` fails with ESRCH only if it does not.)
fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 sends nothing; kill only checks that the process exists.
    if unsafe { libc::kill(pid, 0) } == 0 {
        return true;
    }
    std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Checks the header of a mapping of at least HEADER_SIZE bytes; returns its layout.
fn validate(path: &Path, map: &Mmap) -> Result<Layout, StatsError> {
    let path_buf = || path.to_path_buf();
    // SAFETY: the caller checked map.len() >= HEADER_SIZE; mmap returns page-aligned memory;
    // every bit pattern is a valid Header. Only `magic` is read before it is checked; the
    // static fields are read after (the creator writes them before magic, never after).
    let h = unsafe { &*(map.as_ptr() as *const Header) };
    let magic = h.magic.load(Ordering::Relaxed);
    fence(Ordering::Acquire);
    if magic != MAGIC {
        return Err(StatsError::BadMagic { path: path_buf(), found: magic, expected: MAGIC });
    }
    if h.layout_version != LAYOUT_VERSION {
        return Err(StatsError::BadVersion { path: path_buf(), found: h.layout_version, expected: LAYOUT_VERSION });
    }
    let check = |what: &'static str, found: u64, expected: u64| {
        if found == expected {
            Ok(())
        } else {
            Err(StatsError::BadLayout { path: path_buf(), what, found, expected })
        }
    };
    check("header_size", h.header_size.into(), HEADER_SIZE as u64)?;
    check("n_drop_reasons", h.n_drop_reasons.into(), DROP_REASON_COUNT as u64)?;
    check("vif_info_size", h.vif_info_size.into(), VIF_INFO_SIZE as u64)?;
    check("vif_counter_size", h.vif_counter_size.into(), VIF_COUNTER_SIZE as u64)?;
    check("lcore_head_size", h.lcore_head_size.into(), LCORE_HEAD_SIZE as u64)?;
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
    check("file_size", h.file_size, layout.file_size as u64)?;
    if (map.len() as u64) < h.file_size {
        return Err(StatsError::TooShort {
            path: path_buf(),
            what: "header's layout",
            found: map.len() as u64,
            needed: h.file_size,
        });
    }
    Ok(layout)
}
