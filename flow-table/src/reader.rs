//! [`FlowTableReader`]: a read-only mapping of a table, for the agent's tools and any other
//! process. It never writes to the table and never waits for a writer.

use std::path::Path;
use std::sync::atomic::{fence, Ordering::Acquire, Ordering::Relaxed};

use shm::{Mapped, Mismatch, OpenOptions};

use crate::defs::NO_INDEX;
use crate::error::FlowTableError;
use crate::key::FlowKey;
use crate::layout::*;
use crate::path::FLOW_FILE_NAME;
use crate::snapshot::{self, ActiveIter, FlowSnapshot, HeaderInfo, TableStats};

/// A read-only view of a flow table file, validated against this build's layout.
///
/// Reads use `Relaxed` atomic loads and `Acquire` fences only (valid on a `PROT_READ`
/// mapping); entries are copied with the seqlock protocol of [`FlowTableReader::snapshot`].
pub struct FlowTableReader {
    region: Region,
    /// Keeps the mapping `region` points into alive.
    map: Mapped,
    generation: u64,
    file_size: u64,
}

// SAFETY: `region` points into `map`, owned by the reader, whose address does not change
// when the reader moves; every access through it is an atomic load.
unsafe impl Send for FlowTableReader {}
// SAFETY: as above, loads only.
unsafe impl Sync for FlowTableReader {}

impl FlowTableReader {
    /// Maps the table at `path` read-only, also when the vRouter that created it is gone
    /// (the tools show its last flows with a warning, see
    /// [`FlowTableReader::creator_alive`]): [`FlowTableReader::open_with`] with
    /// [`OpenOptions::allow_stale`].
    pub fn open(path: &Path) -> Result<FlowTableReader, FlowTableError> {
        FlowTableReader::open_with(path, &OpenOptions::new().allow_stale())
    }

    /// Maps the table at `path` read-only through [`shm::open`]: checks the magic (so a
    /// file still being built is refused), layout version, every struct size, the
    /// capacities and offsets against this build's layout, that the file is long enough,
    /// and (unless `opts` allow a stale table) that its creator still runs, before touching
    /// anything else; each failure is a [`shm::RegionError`] naming the field.
    pub fn open_with(path: &Path, opts: &OpenOptions) -> Result<FlowTableReader, FlowTableError> {
        let (map, layout) = shm::open(path, &SPEC, opts, validate)?;
        // SAFETY: validate checked layout_size <= map.len(); mmap is page-aligned; the
        // mapping lives in the returned reader.
        let region = unsafe { Region::new(map.as_ptr(), map.len(), layout) };
        let generation = map.header().generation();
        let file_size = map.len() as u64;
        Ok(FlowTableReader { region, map, generation, file_size })
    }

    /// Opens `run_dir/flow` (the table, or the symlink to it that
    /// [`crate::FlowTable::create_in_run_dir`] leaves there), as [`FlowTableReader::open`].
    pub fn open_run_dir(run_dir: &Path) -> Result<FlowTableReader, FlowTableError> {
        FlowTableReader::open(&run_dir.join(FLOW_FILE_NAME))
    }

    /// Path of the table file (the hugetlbfs file when the run directory holds a symlink).
    pub fn path(&self) -> &Path {
        self.map.path()
    }

    /// This file's generation (bumped on every re-creation at the same path).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Main + overflow entries; valid indices are `0..capacity()`.
    pub fn capacity(&self) -> u32 {
        self.region.layout().capacity()
    }

    /// Indices `0..main_entries()` are main slots, the rest overflow entries.
    pub fn main_entries(&self) -> u32 {
        self.region.layout().main_entries
    }

    /// The header, decoded.
    pub fn header(&self) -> HeaderInfo {
        snapshot::header_info(&self.region, self.file_size)
    }

    /// The table counters, summed over lcores (`flow -s`).
    pub fn stats(&self) -> TableStats {
        snapshot::table_stats(&self.region)
    }

    /// Whether the creating process is still running (pid and start time match).
    pub fn creator_alive(&self) -> bool {
        self.map.owner_alive()
    }

    /// Whether the path now names another file (the vRouter re-created the table) or
    /// nothing: reopen to see the current table.
    pub fn is_replaced(&self) -> bool {
        self.map.is_replaced()
    }

    /// A consistent copy of entry `idx`, `None` if it is not active.
    ///
    /// Reads the entry's sequence number (retrying while it is odd: a writer is
    /// changing the entry), then key, metadata and counters, then the sequence number and
    /// generation again: if either moved, the slot was changed or reused during the copy
    /// and the read is retried, up to [`crate::SNAPSHOT_ATTEMPTS`] times
    /// ([`FlowTableError::Torn`] after that). So the key always belongs to the counters.
    pub fn snapshot(&self, idx: u32) -> Result<Option<FlowSnapshot>, FlowTableError> {
        if idx >= self.capacity() {
            return Err(FlowTableError::BadIndex { index: idx, capacity: self.capacity() });
        }
        snapshot::read_snapshot(&self.region, idx)
    }

    /// Snapshots of all active entries, in index order (entries torn on every attempt are
    /// skipped).
    pub fn iter_active(&self) -> impl Iterator<Item = FlowSnapshot> + '_ {
        ActiveIter { region: &self.region, next: 0, torn: 0 }
    }

    /// The overflow chain hanging off `idx` (tf `flow -l` "Oflow entries").
    pub fn overflow_chain(&self, idx: u32) -> Vec<u32> {
        if idx >= self.capacity() {
            return Vec::new();
        }
        snapshot::overflow_chain(&self.region, idx)
    }

    /// The index of the published entry for `key`, as the data plane's lookup would find
    /// it now (a hint: it may be deleted by the time it is snapshotted).
    pub fn lookup(&self, key: &FlowKey) -> Option<u32> {
        let r = &self.region;
        let l = r.layout();
        let hash = key.hash();
        let b = r.bucket_of(hash);
        let want = slot_word(tag_of(hash), ST_VALID);
        let w = key.words();
        for (i, s) in r.bucket(b).slots.iter().enumerate() {
            if s.load(Relaxed) == want {
                fence(Acquire);
                let idx = b * BUCKET_WIDTH as u32 + i as u32;
                if r.entry(idx).key_eq(&w) {
                    return Some(idx);
                }
            }
        }
        let mut o = r.bucket(b).chain.load(Relaxed);
        let mut steps = 0;
        while o != NO_INDEX && o >= l.main_entries && o < l.capacity() && steps <= l.overflow_entries {
            fence(Acquire);
            let e = r.entry(o);
            if e.ostate.load(Relaxed) == want {
                fence(Acquire);
                if e.key_eq(&w) {
                    return Some(o);
                }
            }
            o = e.onext.load(Relaxed);
            steps += 1;
        }
        None
    }
}

/// Checks the table's own header fields against this build (the common prefix was checked
/// by [`shm::open`]); returns its layout.
pub(crate) fn validate(map: &Mapped) -> Result<Layout, Mismatch> {
    let h: &Header = map.get(0).expect("shm::open checked the header size");
    let check = Mismatch::check;
    check("entry_size", h.entry_size.load(Relaxed).into(), ENTRY_SIZE as u64)?;
    check("mirror_stats_size", h.mirror_stats_size.load(Relaxed).into(), MIRROR_STATS_SIZE as u64)?;
    check("bucket_size", h.bucket_size.load(Relaxed).into(), BUCKET_SIZE as u64)?;
    check("bucket_width", h.bucket_width.load(Relaxed).into(), BUCKET_WIDTH as u64)?;
    check("lcore_block_size", h.lcore_block_size.load(Relaxed).into(), LCORE_BLOCK_SIZE as u64)?;
    let main = h.main_entries.load(Relaxed);
    let oflow = h.overflow_entries.load(Relaxed);
    let max_lcores = h.max_lcores.load(Relaxed);
    let layout = Layout::new(main, oflow, max_lcores).ok_or(Mismatch {
        field: "main_entries/overflow_entries/max_lcores",
        found: u64::from(main),
        expected: u64::from(main.div_ceil(BUCKET_WIDTH as u32) * BUCKET_WIDTH as u32),
    })?;
    check("n_buckets", h.n_buckets.load(Relaxed).into(), layout.n_buckets.into())?;
    check("lcore_offset", h.lcore_offset.load(Relaxed), layout.lcore_offset as u64)?;
    check("bucket_offset", h.bucket_offset.load(Relaxed), layout.bucket_offset as u64)?;
    check("entry_offset", h.entry_offset.load(Relaxed), layout.entry_offset as u64)?;
    check("mirror_offset", h.mirror_offset.load(Relaxed), layout.mirror_offset as u64)?;
    // shm::open checked that the mapping holds the layout_size the header declares.
    check("layout_size", h.region.layout_size(), layout.layout_size as u64)?;
    Ok(layout)
}
