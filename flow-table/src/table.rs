//! [`FlowTable`]: the vRouter's read-write handle (data plane and agent).

use std::cell::Cell;
use std::collections::VecDeque;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering::*};
use std::sync::{Mutex, MutexGuard};

use shm::{CreateOptions, InitMap, Mapped};

use crate::defs::{flags, Action, Gen, NO_INDEX, NO_MIRROR};
use crate::error::FlowTableError;
use crate::hash::tunnel_source_port;
use crate::key::{FlowKey, KEY_WORDS};
use crate::layout::*;
use crate::path::{default_path_sized, fs_space, FLOW_FILE_NAME};
use crate::snapshot::{self, ActiveIter, FlowSnapshot, HeaderInfo, TableIdentity, TableStats};

/// Sizing of a new table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowTableConfig {
    /// Main-table entries; rounded up to a multiple of [`BUCKET_WIDTH`].
    pub main_entries: u32,
    /// Overflow entries; 0 means 20 % of `main_entries` rounded up to a multiple of 1024
    /// (tf's `vr_compute_size_oflow_table`).
    pub overflow_entries: u32,
    /// Forwarding lcores that will call [`FlowTable::quiescent`] (ids `0..max_lcores`).
    pub max_lcores: u32,
}

impl Default for FlowTableConfig {
    /// tf's default size: 512 Ki main entries (+ 20 % overflow), 64 lcores.
    fn default() -> FlowTableConfig {
        FlowTableConfig { main_entries: 512 * 1024, overflow_entries: 0, max_lcores: 64 }
    }
}

impl FlowTableConfig {
    /// `(main, overflow)` after rounding and the overflow default.
    pub fn resolved_entries(&self) -> Result<(u32, u32), FlowTableError> {
        let bad = |m: String| Err(FlowTableError::InvalidArgument(m));
        if self.main_entries == 0 || self.main_entries > MAX_ENTRIES {
            return bad(format!("main_entries is {} (expected 1..={MAX_ENTRIES})", self.main_entries));
        }
        let main = self.main_entries.div_ceil(BUCKET_WIDTH as u32) * BUCKET_WIDTH as u32;
        let oflow = if self.overflow_entries == 0 { ((main / 5) + 1023) & !1023 } else { self.overflow_entries };
        if u64::from(main) + u64::from(oflow) > u64::from(MAX_ENTRIES) {
            return bad(format!("{main} main + {oflow} overflow entries exceed {MAX_ENTRIES}"));
        }
        if self.max_lcores == 0 || self.max_lcores > MAX_LCORES {
            return bad(format!("max_lcores is {} (expected 1..={MAX_LCORES})", self.max_lcores));
        }
        Ok((main, oflow))
    }

    pub(crate) fn layout(&self) -> Result<Layout, FlowTableError> {
        let (main, oflow) = self.resolved_entries()?;
        Layout::new(main, oflow, self.max_lcores)
            .ok_or_else(|| FlowTableError::InvalidArgument(format!("bad table size {self:?}")))
    }

    /// Bytes of the table file (before rounding to the filesystem's page size).
    pub fn file_size(&self) -> Result<u64, FlowTableError> {
        Ok(self.layout()?.layout_size as u64)
    }
}

/// Result of [`FlowTable::lookup_or_hold`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The flow exists (or a concurrent insert of the same key won the race).
    Hit(u32),
    /// This call created it: HOLD, `NEW_FLOW` set. The caller traps it to the agent.
    Created(u32),
}

impl Lookup {
    /// The flow index, hit or created.
    pub fn index(self) -> u32 {
        match self {
            Lookup::Hit(i) | Lookup::Created(i) => i,
        }
    }

    /// Whether this call created the flow (it must be trapped to the agent).
    pub fn is_created(self) -> bool {
        matches!(self, Lookup::Created(_))
    }
}

/// What the agent programs into a flow ([`FlowTable::set_action`]); tf's `vr_flow_req`
/// fields. `None` leaves a field unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowUpdate {
    /// The verdict to program.
    pub action: Action,
    /// `FLOW_DR_*` code (kept with any action; tf prints it for DROP).
    pub drop_reason: u8,
    /// Agent-owned flag bits to set / clear (e.g. `MIRROR`, NAT bits). Bits in
    /// [`flags::DP_OWNED`] are refused.
    pub set_flags: u32,
    /// Flag bits to clear (applied before `set_flags`).
    pub clear_flags: u32,
    /// Primary mirror index ([`crate::NO_MIRROR`] for none).
    pub mirror: Option<u8>,
    /// Secondary mirror index ([`crate::NO_MIRROR`] for none).
    pub sec_mirror: Option<u8>,
    /// RPF source nexthop (`S(nh)`).
    pub src_nh: Option<u32>,
    /// Outer UDP source port for MPLSoUDP/VXLAN (default: from the flow hash).
    pub underlay_sport: Option<u16>,
    /// Where the flow came from ([`crate::FlowEntry::origin`]): kept in the entry so an
    /// agent restarted on the reattached table knows it too.
    pub origin: Option<Origin>,
}

impl FlowUpdate {
    /// An update that sets `action` (drop reason 0) and leaves flags, mirrors, RPF nexthop and
    /// source port unchanged.
    pub fn new(action: Action) -> FlowUpdate {
        FlowUpdate {
            action,
            drop_reason: 0,
            set_flags: 0,
            clear_flags: 0,
            mirror: None,
            sec_mirror: None,
            src_nh: None,
            underlay_sport: None,
            origin: None,
        }
    }

    /// A DROP with a `FLOW_DR_*` reason.
    pub fn drop(reason: u8) -> FlowUpdate {
        FlowUpdate { drop_reason: reason, ..FlowUpdate::new(Action::Drop) }
    }
}

/// Result of [`FlowTable::reclaim`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReclaimStats {
    /// Slots freed by this call.
    pub freed: usize,
    /// Retired slots still waiting for lcores to pass a quiescent point.
    pub pending: usize,
}

/// Retired slots on their way back to the free pool (see "Deletion and reuse" in the
/// crate docs). In-process state: a table reattached after a restart gets the retired slots
/// found in the file queued again (`reattach.rs`).
#[derive(Default)]
pub(crate) struct Retired {
    /// Retired since the last `reclaim` (slot DEAD, overflow entries already unlinked).
    pub(crate) marked: Vec<u32>,
    /// Batches waiting for every online lcore to have seen their token.
    pub(crate) waiting: VecDeque<(u64, Vec<u32>)>,
}

thread_local! {
    /// The lcore id this thread last passed to `quiescent`: selects its statistics block.
    static LCORE_ID: Cell<u32> = const { Cell::new(u32::MAX) };
}

/// Who creates a flow: the data plane (HOLD + NEW_FLOW, counted as created) or the agent
/// (HOLD, counted as added).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Creator {
    DataPlane,
    Agent,
}

/// The vRouter's flow table: a fixed-capacity hash table in a shared, memory-mapped file.
///
/// `Send + Sync`; share it between lcores and the agent thread through an `Arc`. See the
/// crate docs for the layout and the concurrency protocol.
pub struct FlowTable {
    pub(crate) region: Region,
    /// Keeps the mapping `region` points into alive.
    pub(crate) map: Mapped,
    pub(crate) generation: u64,
    pub(crate) file_size: u64,
    pub(crate) retired: Mutex<Retired>,
}

// SAFETY: `region` points into `_map`, which lives as long as the table and whose address
// does not change when the table moves. Everything reachable through it is atomics, and
// every access is an atomic operation; the in-process state is behind a Mutex.
unsafe impl Send for FlowTable {}
// SAFETY: as above; all shared mutation goes through atomics or the Mutex.
unsafe impl Sync for FlowTable {}

impl FlowTable {
    /// Creates (or replaces) the table file at `path` and maps it read-write.
    ///
    /// The file is built under a temporary name in the same directory (mode 0644, sized to
    /// a multiple of the filesystem's block size, which on hugetlbfs is the huge page
    /// size), initialized with `magic` written last, then renamed into place: a reader
    /// never maps a half-built table. Its generation is the previous file's plus one (1 if
    /// there was none). Creates the parent directory if missing.
    pub fn create(path: &Path, cfg: &FlowTableConfig) -> Result<FlowTable, FlowTableError> {
        let layout = cfg.layout()?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&dir).map_err(|e| FlowTableError::io("creating directory", &dir, e))?;
        // hugetlbfs needs a multiple of the huge page size (its block size).
        let block = fs_space(&dir).map_or(4096, |(b, _)| b.clamp(4096, 1 << 30));
        let file_size = (layout.layout_size as u64).div_ceil(block) * block;
        // Mode 0644: tools of other users read the table. Populate: fault every page in
        // now, not on the data plane's first packets.
        let opts = CreateOptions { mode: 0o644, layout_size: layout.layout_size as u64, file_size, populate: true };
        let map = shm::create(path, &SPEC, &opts, |m| init_table(m, layout))?;
        let generation = map.header().generation();
        // SAFETY: `map` is a live page-aligned mapping of file_size >= layout_size bytes
        // (shm::create checked), owned by the returned table; the file is never truncated.
        let region = unsafe { Region::new(map.as_ptr(), map.len(), layout) };
        Ok(FlowTable { region, map, generation, file_size, retired: Mutex::new(Retired::default()) })
    }

    /// Where the table of a vRouter with run directory `run_dir` goes by default, for a
    /// table of [`FlowTableConfig::default`] size: the first hugetlbfs mount (in
    /// `/proc/mounts` order, as tf's DPDK vRouter does) with room for it, as
    /// `<mount>/flow.<run dir, '/' -> '_'>` so two vRouters sharing the mount do not
    /// collide; without one, `<run_dir>/flow`. Use [`FlowTable::default_path_for`] for
    /// another size, and [`FlowTable::create_in_run_dir`] to also leave a `run_dir/flow`
    /// symlink that tools can open.
    ///
    /// Outside hugetlbfs the run directory should be on a tmpfs (`/run`, `/dev/shm`): on a
    /// disk filesystem the kernel writes the constantly dirtied counters back to disk.
    pub fn default_path(run_dir: &Path) -> PathBuf {
        let bytes = FlowTableConfig::default().file_size().unwrap_or(0);
        default_path_sized(run_dir, bytes)
    }

    /// [`FlowTable::default_path`] for a table of `cfg`'s size.
    pub fn default_path_for(run_dir: &Path, cfg: &FlowTableConfig) -> Result<PathBuf, FlowTableError> {
        Ok(default_path_sized(run_dir, cfg.file_size()?))
    }

    /// Creates the table at [`FlowTable::default_path_for`]`(run_dir, cfg)`; when that is
    /// not `run_dir/flow` (hugetlbfs), also points a `run_dir/flow` symlink at it
    /// (replaced atomically), so readers always open `run_dir/flow`.
    pub fn create_in_run_dir(run_dir: &Path, cfg: &FlowTableConfig) -> Result<FlowTable, FlowTableError> {
        let path = FlowTable::default_path_for(run_dir, cfg)?;
        let table = FlowTable::create(&path, cfg)?;
        let link = run_dir.join(FLOW_FILE_NAME);
        if path != link {
            // The table went elsewhere (hugetlbfs): the run directory may not exist yet.
            fs::create_dir_all(run_dir).map_err(|e| FlowTableError::io("creating directory", run_dir, e))?;
            let tmp = run_dir.join(format!(".{FLOW_FILE_NAME}.{}.lnk", std::process::id()));
            let _ = fs::remove_file(&tmp);
            std::os::unix::fs::symlink(&path, &tmp).map_err(|e| FlowTableError::io("creating symlink", &tmp, e))?;
            fs::rename(&tmp, &link).map_err(|e| FlowTableError::io("renaming symlink to", &link, e))?;
        }
        Ok(table)
    }

    /// Path of the table file (the hugetlbfs file when the run directory holds a symlink).
    pub fn path(&self) -> &Path {
        self.map.path()
    }

    /// This file's generation (bumped on every re-creation at the same path).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The file's identity (creation time and generation): the same for as long as this
    /// file is the table, across restarts that map it again; another for a re-created table.
    pub fn identity(&self) -> TableIdentity {
        let h = self.map.header();
        TableIdentity { created_unix_ns: h.created_unix_ns(), generation: h.generation() }
    }

    /// Main + overflow entries; valid indices are `0..capacity()`.
    pub fn capacity(&self) -> u32 {
        self.region.layout().capacity()
    }

    /// Indices `0..main_entries()` are main slots, the rest overflow entries.
    pub fn main_entries(&self) -> u32 {
        self.region.layout().main_entries
    }

    /// Overflow entries (indices `main_entries()..capacity()`).
    pub fn overflow_entries(&self) -> u32 {
        self.region.layout().overflow_entries
    }

    /// The header, decoded.
    pub fn header(&self) -> HeaderInfo {
        snapshot::header_info(&self.region, self.file_size)
    }

    /// The bucket `hash` selects.
    pub fn bucket_of(&self, hash: u32) -> u32 {
        self.region.bucket_of(hash)
    }

    // ----------------------------------------------------------------------------------
    // Data plane, hot path.

    /// Prefetches the bucket line of `hash` (call for a whole burst before its lookups).
    #[inline(always)]
    pub fn prefetch(&self, hash: u32) {
        prefetch(self.region.bucket_ptr(self.region.bucket_of(hash)));
    }

    /// Prefetches both cache lines of entry `idx` (e.g. a known reverse flow).
    #[inline(always)]
    pub fn prefetch_entry(&self, idx: u32) {
        if idx < self.capacity() {
            let p = self.region.entry_ptr(idx);
            prefetch(p);
            prefetch(p.wrapping_add(CACHE_LINE));
        }
    }

    /// Whether slot `idx` may hold an entry (its slot word is not free): for a main entry
    /// one load from its bucket line, shared by 8 entries, so a scan over a sparse table
    /// skips empty entries without touching (or faulting in) their lines. A cheap filter
    /// before [`FlowTable::snapshot`], which is the consistent read.
    #[inline]
    pub fn slot_in_use(&self, idx: u32) -> bool {
        idx < self.capacity() && self.region.slot(idx).load(Relaxed) != ST_FREE
    }

    /// Prefetches the bucket of the reverse key of flow `idx` (the agent, before
    /// [`FlowTable::create_reverse`]; the forward entry should already be in cache) and
    /// returns the reverse key's hash, for [`FlowTable::prefetch_insert`] once the bucket
    /// has arrived. A hint: reads the key without the sequence check; `None` for a bad
    /// index or a torn key.
    #[inline]
    pub fn prefetch_reverse(&self, idx: u32) -> Option<u32> {
        if idx >= self.capacity() {
            return None;
        }
        let k = FlowKey::from_words(self.region.entry(idx).key_words())?;
        let h = k.reverse().hash();
        self.prefetch(h);
        Some(h)
    }

    /// Prefetches the entry an insert of a key with `hash` would claim (the first free
    /// slot of its bucket, which should already be in cache): a new entry's first write
    /// is otherwise a cold miss on two lines.
    #[inline]
    pub fn prefetch_insert(&self, hash: u32) {
        let r = &self.region;
        let b = r.bucket_of(hash);
        let free = match_mask(r.bucket(b), ST_FREE);
        if free != 0 {
            let p = r.entry_ptr(b * BUCKET_WIDTH as u32 + free.trailing_zeros());
            prefetch(p);
            prefetch(p.wrapping_add(CACHE_LINE));
        }
    }

    /// Whether `idx` is the published entry for `key` (what [`FlowTable::lookup`] would
    /// return, checked at one known index: its slot word is VALID with the key's tag and
    /// its key matches). For re-checking a remembered index, e.g. of a held packet.
    #[inline]
    pub fn is_entry_of(&self, idx: u32, key: &FlowKey, hash: u32) -> bool {
        idx < self.capacity()
            && self.region.slot(idx).load(Acquire) == slot_word(tag_of(hash), ST_VALID)
            && self.region.entry(idx).key_eq(key.as_words())
    }

    /// Index of the published (active, not delete-marked, not evicted) entry for `key`.
    /// `hash` must be `key.hash()`. Lock-free: loads only.
    #[inline]
    pub fn lookup(&self, key: &FlowKey, hash: u32) -> Option<u32> {
        debug_assert_eq!(hash, key.hash());
        let r = &self.region;
        let b = r.bucket_of(hash);
        let bucket = r.bucket(b);
        let w = key.words();
        let base = b * BUCKET_WIDTH as u32;
        // Branch-free tag match: a mispredicted "which slot" branch after a cache miss
        // would stop the CPU from running ahead into the next packets' lookups.
        let mut m = match_mask(bucket, slot_word(tag_of(hash), ST_VALID));
        while m != 0 {
            let idx = base + m.trailing_zeros();
            if r.entry(idx).key_eq(&w) {
                return Some(idx);
            }
            m &= m - 1;
        }
        let want = slot_word(tag_of(hash), ST_VALID);
        let head = bucket.chain.load(Acquire);
        if head == NO_INDEX {
            return None;
        }
        self.lookup_chain(head, want, &w)
    }

    #[inline(never)]
    fn lookup_chain(&self, mut o: u32, want: u32, w: &[u64; KEY_WORDS]) -> Option<u32> {
        let l = self.region.layout();
        let mut steps = 0;
        while o >= l.main_entries && o < l.capacity() && steps <= l.overflow_entries {
            let e = self.region.entry(o);
            if e.ostate.load(Acquire) == want && e.key_eq(w) {
                return Some(o);
            }
            o = e.onext.load(Acquire);
            steps += 1;
        }
        None
    }

    /// Looks up a burst: `out[i] = lookup(&keys[i], hashes[i])` for `i < min(len)`, as a
    /// two-stage pipeline: scan the tags of every bucket and prefetch the candidate
    /// entries, then compare keys. Buckets should already be prefetched
    /// ([`FlowTable::prefetch`]) when the hashes were computed.
    pub fn lookup_burst(&self, keys: &[FlowKey], hashes: &[u32], out: &mut [Option<u32>]) {
        const CHUNK: usize = 64;
        let n = keys.len().min(hashes.len()).min(out.len());
        let r = &self.region;
        let mut cand = [NO_INDEX; CHUNK];
        let mut start = 0;
        while start < n {
            let end = (start + CHUNK).min(n);
            for (c, &h) in cand.iter_mut().zip(&hashes[start..end]) {
                let b = r.bucket_of(h);
                let m = match_mask(r.bucket(b), slot_word(tag_of(h), ST_VALID));
                *c = NO_INDEX;
                if m != 0 {
                    *c = b * BUCKET_WIDTH as u32 + m.trailing_zeros();
                    let p = r.entry_ptr(*c);
                    prefetch(p);
                    prefetch(p.wrapping_add(CACHE_LINE));
                } else {
                    // No tag matches: most likely a new flow, which `lookup_or_hold` will
                    // put in the bucket's first free slot. Fetch that entry now, so the
                    // insert's writes overlap the burst's other misses instead of
                    // stalling on two cold lines each.
                    self.prefetch_insert(h);
                }
            }
            for (i, c) in (start..end).zip(cand) {
                let key = &keys[i];
                out[i] = if c != NO_INDEX {
                    if r.entry(c).key_eq(key.as_words()) {
                        Some(c)
                    } else {
                        // Another slot with the same tag, or the overflow chain.
                        self.lookup(key, hashes[i])
                    }
                } else {
                    // No tag in the bucket: only the overflow chain can have it.
                    let head = r.bucket(r.bucket_of(hashes[i])).chain.load(Acquire);
                    if head == NO_INDEX {
                        None
                    } else {
                        self.lookup_chain(head, slot_word(tag_of(hashes[i]), ST_VALID), &key.words())
                    }
                };
            }
            start = end;
        }
    }

    /// Looks `key` up and, on a miss, creates it: a HOLD entry with `NEW_FLOW` set,
    /// [`Lookup::Created`]. Lock-free: the slot is claimed by compare-and-swap; when two
    /// threads insert the same key at once exactly one entry survives and the other call
    /// returns [`Lookup::Hit`] with its index (see the crate docs, "Insert"). Fails with
    /// [`FlowTableError::TableFull`] when the key's bucket and the overflow area are full.
    #[inline]
    pub fn lookup_or_hold(&self, key: &FlowKey, hash: u32, now: u64) -> Result<Lookup, FlowTableError> {
        if let Some(i) = self.lookup(key, hash) {
            return Ok(Lookup::Hit(i));
        }
        self.insert(key, hash, now, Creator::DataPlane)
    }

    /// Counts one packet of `bytes` bytes from any thread: `packets += 1`, `bytes += bytes`
    /// as atomic adds on the entry's shared pair (never lost, whoever else counts the
    /// flow), `last_seen = now` (a plain store: the latest writer wins, coarse is fine).
    /// Out-of-range indices are ignored. Forwarding lcores use [`FlowTable::account_as`].
    #[inline(always)]
    pub fn account(&self, idx: u32, bytes: u32, now: u64) {
        if idx >= self.capacity() {
            debug_assert!(false, "account: index {idx} out of range");
            return;
        }
        let e = self.region.entry(idx);
        self.account_shared(idx, bytes);
        e.last_seen.store(now, Relaxed);
    }

    /// Counts one packet of `bytes` bytes as forwarding lcore `lcore`, the data plane's
    /// hit path. The first lcore to count a flow becomes its owner (one compare-and-swap
    /// per flow); the owner adds with a plain load and store, since it is the only writer
    /// of the entry's own pair. Any other lcore adds atomically to the shared pair in the
    /// side block. Readers sum both pairs, so no update is ever lost.
    ///
    /// The caller must be the only thread counting as `lcore` (one forwarding lcore each).
    #[inline]
    pub fn account_as(&self, lcore: usize, idx: u32, bytes: u32, now: u64) {
        if idx >= self.capacity() {
            debug_assert!(false, "account_as: index {idx} out of range");
            return;
        }
        let e = self.region.entry(idx);
        let me = (lcore as u16).wrapping_add(1);
        let owner = e.owner.load(Relaxed);
        if owner == me || (owner == 0 && e.owner.compare_exchange(0, me, Relaxed, Relaxed).is_ok()) {
            // Single writer of this pair (see above): load + store loses nothing.
            e.packets.store(e.packets.load(Relaxed).wrapping_add(1), Relaxed);
            e.bytes.store(e.bytes.load(Relaxed).wrapping_add(u64::from(bytes)), Relaxed);
        } else {
            self.account_shared(idx, bytes);
        }
        e.last_seen.store(now, Relaxed);
    }

    #[inline]
    fn account_shared(&self, idx: u32, bytes: u32) {
        let m = self.region.mirror(idx);
        m.shared_packets.fetch_add(1, Relaxed);
        m.shared_bytes.fetch_add(u64::from(bytes), Relaxed);
    }

    /// Counts one mirrored packet (primary mirror, or secondary when `secondary`).
    #[inline]
    pub fn account_mirror(&self, idx: u32, secondary: bool, bytes: u32) {
        if idx >= self.capacity() {
            return;
        }
        let m = self.region.mirror(idx);
        let (b, p) =
            if secondary { (&m.sec_mirror_bytes, &m.sec_mirror_packets) } else { (&m.mirror_bytes, &m.mirror_packets) };
        p.fetch_add(1, Relaxed);
        b.fetch_add(u64::from(bytes), Relaxed);
    }

    /// Counts one copy due to the primary (or, when `secondary`, the secondary) mirror of
    /// flow `idx` that was not sent: the other half of [`FlowTable::account_mirror`], so that
    /// every copy offered is either sent or lost.
    #[inline]
    pub fn account_mirror_lost(&self, idx: u32, secondary: bool) {
        if idx >= self.capacity() {
            return;
        }
        let m = self.region.mirror(idx);
        if secondary { &m.sec_mirror_lost } else { &m.mirror_lost }.fetch_add(1, Relaxed);
    }

    /// Counts one packet of flow `idx` dropped while the flow was in HOLD (counted on the
    /// flow when it arrived, never released).
    #[inline]
    pub fn account_held_drop(&self, idx: u32) {
        if idx >= self.capacity() {
            return;
        }
        self.region.mirror(idx).held_dropped.fetch_add(1, Relaxed);
    }

    /// The entry at `idx`, to read its action, flags, reverse flow, mirror ids, ... on the
    /// hot path (each accessor is one `Relaxed` load).
    #[inline(always)]
    pub fn entry(&self, idx: u32) -> Option<&FlowEntry> {
        (idx < self.capacity()).then(|| self.region.entry(idx))
    }

    /// ORs TCP state bits into the entry (no write when they are already set).
    #[inline]
    pub fn set_tcp_flags(&self, idx: u32, bits: u16) {
        if let Some(e) = self.entry(idx) {
            if e.tcp_flags.load(Relaxed) & bits != bits {
                e.tcp_flags.fetch_or(bits, Relaxed);
            }
        }
    }

    /// Sets and clears data-plane flag bits: only `NEW_FLOW` (cleared once the new flow is
    /// trapped to the agent), `MODIFIED` and `EVICT_CANDIDATE`.
    pub fn update_dp_flags(&self, idx: u32, set: u32, clear: u32) -> Result<(), FlowTableError> {
        const ALLOWED: u32 = flags::NEW_FLOW | flags::MODIFIED | flags::EVICT_CANDIDATE;
        if (set | clear) & !ALLOWED != 0 {
            return Err(FlowTableError::InvalidArgument(format!(
                "update_dp_flags: bits {:#x} are not data-plane settable",
                (set | clear) & !ALLOWED
            )));
        }
        let e = self.checked_entry(idx)?;
        if clear != 0 {
            e.ctl.fetch_and(!u64::from(clear), Relaxed);
        }
        if set != 0 {
            e.ctl.fetch_or(u64::from(set), Relaxed);
        }
        Ok(())
    }

    /// A quiescent point of lcore `lcore` (`0..max_lcores`): call it once per burst loop,
    /// when the lcore holds no flow index from an earlier lookup. Also puts an offline
    /// lcore back online, and makes this thread count its flow creations in lcore
    /// `lcore`'s statistics block. Costs a load of a read-mostly line and, rarely, a store.
    #[inline]
    pub fn quiescent(&self, lcore: usize) {
        // Not a debug assertion: an lcore that reclaim does not know about could have the
        // flows it is using freed under it.
        assert!(
            lcore < self.region.layout().max_lcores as usize,
            "quiescent: lcore {lcore} is not below the table's max_lcores {}",
            self.region.layout().max_lcores
        );
        let t = self.region.header().qs_token.load(Acquire);
        let q = &self.region.lcore(lcore).qs;
        let cur = q.load(Relaxed);
        if cur != t {
            q.store(t, Release);
            if cur == 0 {
                // Coming online: make the store visible before this lcore's next lookups,
                // so a reclaim either sees it online or its lookups see the retirement.
                fence(SeqCst);
            }
        }
        LCORE_ID.with(|c| {
            if c.get() != lcore as u32 {
                c.set(lcore as u32)
            }
        });
    }

    /// Takes lcore `lcore` offline (stopping, or idle for long): reclaim stops waiting for
    /// it. It must hold no flow index; its next [`FlowTable::quiescent`] brings it back.
    pub fn lcore_offline(&self, lcore: usize) {
        if lcore < self.region.layout().max_lcores as usize {
            self.region.lcore(lcore).qs.store(0, Release);
        }
    }

    // ----------------------------------------------------------------------------------
    // Agent side.

    /// Creates the reverse flow of `fwd_idx` (key `key.reverse()`, HOLD, counted as
    /// added) and links the two (`rflow` + `RFLOW_VALID` on both). If the reverse key
    /// already has a flow (the data plane saw a reverse packet first), links that one.
    /// Returns the reverse flow's index.
    pub fn create_reverse(&self, fwd_idx: u32, now: u64) -> Result<u32, FlowTableError> {
        self.check_index(fwd_idx)?;
        let (fkey, fst) =
            snapshot::read_key_state(&self.region, fwd_idx)?.ok_or(FlowTableError::NotActive { index: fwd_idx })?;
        if fst.flags & (flags::DELETE_MARKED | flags::EVICTED) != 0 {
            return Err(FlowTableError::DeleteMarked { index: fwd_idx });
        }
        let rkey = fkey.reverse();
        if rkey == fkey {
            return Err(FlowTableError::InvalidArgument(format!(
                "flow {fwd_idx}: the reverse key equals the key (tf SameFlowRflowKey)"
            )));
        }
        let rhash = rkey.hash();
        let ridx = match self.lookup(&rkey, rhash) {
            Some(i) => i,
            None => self.insert(&rkey, rhash, now, Creator::Agent)?.index(),
        };
        self.link(fwd_idx, fst.gen, ridx)?;
        Ok(ridx)
    }

    /// Points `a` (at generation `gen_a`) and `b` at each other.
    fn link(&self, a: u32, gen_a: Gen, b: u32) -> Result<(), FlowTableError> {
        let ea = self.region.entry(a);
        let eb = self.region.entry(b);
        {
            let _w = SeqWrite::begin(ea);
            let c = ea.ctl.load(Relaxed);
            check_live(a, c, Some(gen_a))?;
            ea.rflow.store(b, Relaxed);
            ea.ctl.fetch_or(u64::from(flags::RFLOW_VALID), Relaxed);
        }
        let _w = SeqWrite::begin(eb);
        eb.rflow.store(a, Relaxed);
        eb.ctl.fetch_or(u64::from(flags::RFLOW_VALID), Relaxed);
        Ok(())
    }

    /// Programs the action of flow `idx` at generation `gen` (tf `FLOW_OP_FLOW_SET`).
    /// Errors: `NotActive` (tf `-ENOENT`), `GenMismatch` (`-EBADF`), `DeleteMarked`
    /// (`-EINVAL`), `InvalidArgument` for data-plane-owned flag bits or `MIRROR` without
    /// a mirror id (`-EINVAL`). Data-plane flag bits are preserved.
    pub fn set_action(&self, idx: u32, gen: Gen, update: &FlowUpdate) -> Result<(), FlowTableError> {
        if (update.set_flags | update.clear_flags) & flags::DP_OWNED != 0 {
            return Err(FlowTableError::InvalidArgument(format!(
                "set_action: flag bits {:#x} belong to the data plane",
                (update.set_flags | update.clear_flags) & flags::DP_OWNED
            )));
        }
        let e = self.checked_entry(idx)?;
        let w = SeqWrite::begin(e);
        let c = e.ctl.load(Relaxed);
        check_live(idx, c, Some(gen))?;
        let old_m = e.mirror.load(Relaxed);
        let mirror = update.mirror.unwrap_or(old_m as u8);
        let sec = update.sec_mirror.unwrap_or((old_m >> 8) as u8);
        let sport = update.underlay_sport.unwrap_or((old_m >> 16) as u16);
        let new_flags_agent = (ctl_flags(c) & !update.clear_flags) | update.set_flags;
        if new_flags_agent & flags::MIRROR != 0 && mirror == NO_MIRROR && sec == NO_MIRROR {
            return Err(FlowTableError::InvalidArgument(format!("flow {idx}: MIRROR flag without a mirror index")));
        }
        if old_m as u8 == NO_MIRROR && mirror != NO_MIRROR && ctl_action(c) != Action::Hold as u8 {
            // Mirroring turns on for a flow that already forwards (a rule added or changed
            // after its setup): what it counted so far, not offered for mirroring, is set
            // aside, read before the index is stored: a packet counted meanwhile is not in
            // it (it is copied, or at worst left unexplained as in flight during the
            // change), so no packet is both copied and set aside. A flow leaving HOLD needs
            // none: its held packets are copied when released.
            let m = self.region.mirror(idx);
            let packets = e.packets.load(Relaxed).wrapping_add(m.shared_packets.load(Relaxed));
            let offered = m.mirror_packets.load(Relaxed).wrapping_add(m.mirror_lost.load(Relaxed));
            let not_offered = packets.saturating_sub(offered).saturating_sub(m.held_dropped.load(Relaxed));
            m.before_mirror.store(not_offered, Relaxed);
        }
        e.mirror.store(make_mirror_word(mirror, sec, sport), Relaxed);
        if let Some(o) = update.origin {
            e.origin.store(o.word(), Relaxed);
        }
        if let Some(nh) = update.src_nh {
            e.src_nh.store(nh, Relaxed);
        }
        // CAS loop: lcores may flip data-plane bits (NEW_FLOW, EVICT_CANDIDATE) meanwhile.
        let mut cur = c;
        loop {
            check_live(idx, cur, Some(gen))?;
            let f = ctl_flags(cur);
            let mut nf = (f & flags::DP_OWNED) | (((f & !update.clear_flags) | update.set_flags) & !flags::DP_OWNED);
            nf &= !flags::HOLD;
            if update.action == Action::Hold {
                nf |= flags::HOLD;
            }
            let new = make_ctl(nf, update.action as u8, update.drop_reason, ctl_gen(cur));
            match e.ctl.compare_exchange_weak(cur, new, Release, Relaxed) {
                Ok(_) => break,
                Err(x) => cur = x,
            }
        }
        drop(w);
        let was_hold = ctl_action(cur) == Action::Hold as u8;
        let is_hold = update.action == Action::Hold;
        let s = self.stats_block();
        match (was_hold, is_hold) {
            (true, false) => {
                s.add(|b| &b.processed, 1);
                s.add(|b| &b.hold_delta, DEC);
            }
            (false, true) => {
                s.add(|b| &b.changed, 1);
                s.add(|b| &b.hold_delta, 1);
            }
            (false, false) => s.add(|b| &b.changed, 1),
            (true, true) => {}
        }
        Ok(())
    }

    /// Deletes flow `idx` at generation `gen`: sets `DELETE_MARKED`, action DROP, clears
    /// mirroring; lookups stop matching it at once. The slot is reused after
    /// [`FlowTable::reclaim`] has seen every online lcore pass a quiescent point. Clears
    /// `RFLOW_VALID` of its reverse flow if that one still points back.
    pub fn mark_delete(&self, idx: u32, gen: Gen) -> Result<(), FlowTableError> {
        self.retire(idx, gen, false)
    }

    /// Evicts flow `idx` (tf eviction of a closed TCP flow): sets `EVICTED`, keeps the
    /// action; lookups stop matching it, readers still see it (and its final counters)
    /// until its slot is reclaimed, as for [`FlowTable::mark_delete`].
    pub fn evict(&self, idx: u32, gen: Gen) -> Result<(), FlowTableError> {
        self.retire(idx, gen, true)
    }

    fn retire(&self, idx: u32, gen: Gen, evict: bool) -> Result<(), FlowTableError> {
        let e = self.checked_entry(idx)?;
        let w = SeqWrite::begin(e);
        let mut cur = e.ctl.load(Relaxed);
        loop {
            check_live(idx, cur, Some(gen))?;
            let f = ctl_flags(cur);
            let new = if evict {
                make_ctl((f | flags::EVICTED) & !flags::EVICT_CANDIDATE, ctl_action(cur), ctl_drop_reason(cur), gen)
            } else {
                let nf = (f | flags::DELETE_MARKED) & !(flags::MIRROR | flags::HOLD);
                make_ctl(nf, Action::Drop as u8, ctl_drop_reason(cur), gen)
            };
            match e.ctl.compare_exchange_weak(cur, new, Release, Relaxed) {
                Ok(_) => break,
                Err(x) => cur = x,
            }
        }
        if !evict {
            let m = e.mirror.load(Relaxed);
            e.mirror.store(make_mirror_word(NO_MIRROR, NO_MIRROR, (m >> 16) as u16), Relaxed);
        }
        let tag = tag_of(e.hash.load(Relaxed));
        // Lookups stop matching it from here on (SeqCst: ordered before the token bump of
        // the reclaim that will wait for lcores).
        self.region.slot(idx).store(slot_word(tag, ST_DEAD), SeqCst);
        let rflow = e.rflow.load(Relaxed);
        let had_rflow = ctl_flags(cur) & flags::RFLOW_VALID != 0;
        drop(w);
        if had_rflow && rflow < self.capacity() && rflow != idx {
            let re = self.region.entry(rflow);
            if re.rflow.load(Relaxed) == idx {
                let _w = SeqWrite::begin(re);
                if re.rflow.load(Relaxed) == idx {
                    re.ctl.fetch_and(!u64::from(flags::RFLOW_VALID), Relaxed);
                }
            }
        }
        let s = self.stats_block();
        s.add(|b| &b.deleted, 1);
        // Retired flows no longer count as held (an evicted HOLD flow keeps its action).
        if ctl_action(cur) == Action::Hold as u8 {
            s.add(|b| &b.hold_delta, DEC);
        }
        let mut rt = self.lock_retired();
        if idx >= self.main_entries() {
            self.unlink_overflow(idx);
        }
        rt.marked.push(idx);
        Ok(())
    }

    /// Frees retired slots once every online lcore has passed a quiescent point since
    /// they were retired; call it periodically from the agent thread. Returns what it
    /// freed and what still waits. See [`FlowTable::reclaim_with`].
    pub fn reclaim(&self) -> ReclaimStats {
        self.reclaim_with(|_| {})
    }

    /// [`FlowTable::reclaim`], calling `f` with the final snapshot of every published flow
    /// it frees (counters are final then: no lcore can still hold its index).
    ///
    /// Protocol (QSBR): the slots retired since the last call form a batch tagged with a
    /// new token (`qs_token += 1`); a batch is freed once every online lcore's quiescent
    /// counter has reached its token, i.e. each lcore has finished the burst it was in
    /// when the slots were retired, and its later lookups cannot see them. Freeing bumps
    /// nothing yet: the entry generation is bumped when the slot is claimed again.
    pub fn reclaim_with(&self, mut f: impl FnMut(&FlowSnapshot)) -> ReclaimStats {
        let mut rt = self.lock_retired();
        if !rt.marked.is_empty() {
            let batch = std::mem::take(&mut rt.marked);
            let token = self.region.header().qs_token.fetch_add(1, SeqCst) + 1;
            rt.waiting.push_back((token, batch));
        }
        let seen = self.min_quiescent();
        let mut ready = Vec::new();
        while rt.waiting.front().is_some_and(|(t, _)| *t <= seen) {
            ready.extend(rt.waiting.pop_front().expect("checked non-empty").1);
        }
        let pending = rt.waiting.iter().map(|(_, b)| b.len()).sum();
        // Freeing needs no lock (the slots are unlinked and no longer reachable); an
        // lcore that loses an insert race may need the lock meanwhile.
        drop(rt);
        let mut last = Vec::new();
        for &idx in &ready {
            if let Ok(Some(s)) = snapshot::read_snapshot(&self.region, idx) {
                last.push(s);
            }
            self.free_slot(idx);
        }
        let freed = ready.len();
        // `f` may call back into the table.
        for s in &last {
            f(s);
        }
        ReclaimStats { freed, pending }
    }

    /// The lowest token seen by an online lcore (`u64::MAX` when none is online).
    fn min_quiescent(&self) -> u64 {
        let l = self.region.layout();
        (0..l.max_lcores as usize)
            .map(|i| self.region.lcore(i).qs.load(SeqCst))
            .filter(|&v| v != 0)
            .min()
            .unwrap_or(u64::MAX)
    }

    // ----------------------------------------------------------------------------------
    // Readers in this process.

    /// A consistent copy of entry `idx` (`None` if not active); see
    /// [`crate::FlowTableReader::snapshot`].
    pub fn snapshot(&self, idx: u32) -> Result<Option<FlowSnapshot>, FlowTableError> {
        self.check_index(idx)?;
        snapshot::read_snapshot(&self.region, idx)
    }

    /// Snapshots of the active entries (for the agent's aging scan).
    pub fn iter_active(&self) -> impl Iterator<Item = (u32, FlowSnapshot)> + '_ {
        ActiveIter { region: &self.region, next: 0, torn: 0 }.map(|s| (s.index, s))
    }

    /// The overflow chain hanging off `idx` (tf `flow -l` "Oflow entries").
    pub fn overflow_chain(&self, idx: u32) -> Vec<u32> {
        if idx >= self.capacity() {
            return Vec::new();
        }
        snapshot::overflow_chain(&self.region, idx)
    }

    /// The table counters, summed over lcores (`flow -s`).
    pub fn stats(&self) -> TableStats {
        snapshot::table_stats(&self.region)
    }

    // ----------------------------------------------------------------------------------
    // Internals.

    fn check_index(&self, idx: u32) -> Result<(), FlowTableError> {
        if idx < self.capacity() {
            Ok(())
        } else {
            Err(FlowTableError::BadIndex { index: idx, capacity: self.capacity() })
        }
    }

    fn checked_entry(&self, idx: u32) -> Result<&FlowEntry, FlowTableError> {
        self.check_index(idx)?;
        Ok(self.region.entry(idx))
    }

    fn lock_retired(&self) -> MutexGuard<'_, Retired> {
        // A panic while holding the lock leaves the lists consistent (pushes and pops
        // only), so a poisoned lock is still usable.
        self.retired.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The statistics block of the calling thread: its lcore's (one writer: plain
    /// load + store, no locked instruction), or the shared one (atomic adds).
    #[inline]
    fn stats_block(&self) -> Stats<'_> {
        let max = self.region.layout().max_lcores;
        let id = LCORE_ID.with(|c| c.get());
        if id < max {
            Stats { b: self.region.lcore(id as usize), exclusive: true }
        } else {
            Stats { b: self.region.lcore(max as usize), exclusive: false }
        }
    }

    /// Creates `key` (the caller found no published entry for it).
    ///
    /// 1. claim a free main slot of the bucket (CAS FREE -> CLAIMED+tag), else take an
    ///    overflow entry (CLAIMED+tag) and push it on the bucket's chain;
    /// 2. initialize the entry (generation + 1) under its sequence lock;
    /// 3. take a ticket from the bucket's counter, store it, mark the slot PENDING;
    /// 4. look for other PENDING or VALID entries of the same key in the bucket and its
    ///    chain (waiting out CLAIMED ones with the same tag): a VALID one, or a PENDING
    ///    one with an older ticket, wins; otherwise this entry is published (VALID).
    ///
    /// The loser retires its entry (reused after a grace period, like a deleted one) and
    /// returns the winner's index. Tickets order inserters: an inserter whose claim comes
    /// after another's scan also takes its ticket after it, so every contender sees the
    /// one with the oldest ticket and all agree on it. Entries seen during the scan cannot
    /// be reused before it ends: the scanning lcore has not passed a quiescent point
    /// (the agent thread is the reclaimer itself).
    fn insert(&self, key: &FlowKey, hash: u32, now: u64, who: Creator) -> Result<Lookup, FlowTableError> {
        let r = &self.region;
        let b = r.bucket_of(hash);
        let bucket = r.bucket(b);
        let tag = tag_of(hash);
        let w = key.words();
        let (idx, overflow) = match self.claim_main(bucket, b, tag) {
            Some(i) => (i, false),
            None => match self.alloc_overflow() {
                Some(i) => {
                    r.entry(i).ostate.store(slot_word(tag, ST_CLAIMED), Relaxed);
                    (i, true)
                }
                None => {
                    // Someone may have published it while we looked for room.
                    if let Some(i) = self.lookup(key, hash) {
                        return Ok(Lookup::Hit(i));
                    }
                    return Err(FlowTableError::TableFull { bucket: b });
                }
            },
        };
        let e = r.entry(idx);
        let initial = match who {
            Creator::DataPlane => flags::NEW_FLOW | flags::HOLD,
            Creator::Agent => flags::HOLD,
        };
        self.init_entry(idx, &w, hash, now, initial);
        if overflow {
            let mut head = bucket.chain.load(Relaxed);
            loop {
                e.onext.store(head, Relaxed);
                match bucket.chain.compare_exchange_weak(head, idx, SeqCst, Relaxed) {
                    Ok(_) => break,
                    Err(h) => head = h,
                }
            }
        }
        let ticket = bucket.ticket.fetch_add(1, SeqCst);
        e.ticket.store(ticket, Relaxed);
        let slot = r.slot(idx);
        slot.store(slot_word(tag, ST_PENDING), SeqCst);
        match self.resolve(bucket, b, idx, tag, ticket, &w) {
            None => {
                // An atomic OR: racing losers already hold this index and may flip data-plane
                // flag bits.
                e.ctl.fetch_or(u64::from(flags::ACTIVE), Relaxed);
                slot.store(slot_word(tag, ST_VALID), Release);
                let s = self.stats_block();
                match who {
                    Creator::DataPlane => s.add(|b| &b.created, 1),
                    Creator::Agent => s.add(|b| &b.added, 1),
                }
                s.add(|b| &b.hold_delta, 1);
                s.add(|b| &b.used_delta, 1);
                Ok(Lookup::Created(idx))
            }
            Some(winner) => {
                self.stats_block().add(|b| &b.races_lost, 1);
                // Retire the losing entry like a deleted one: others may be reading it
                // (its key and ticket, or walking the chain through it), so it is reused
                // only after a grace period. Never published, it was never ACTIVE.
                slot.store(slot_word(tag, ST_DEAD), Release);
                let mut rt = self.lock_retired();
                if overflow {
                    self.unlink_overflow(idx);
                }
                rt.marked.push(idx);
                Ok(Lookup::Hit(winner))
            }
        }
    }

    fn claim_main(&self, bucket: &Bucket, b: u32, tag: u32) -> Option<u32> {
        for (i, s) in bucket.slots.iter().enumerate() {
            if s.load(Relaxed) == ST_FREE
                && s.compare_exchange(ST_FREE, slot_word(tag, ST_CLAIMED), SeqCst, Relaxed).is_ok()
            {
                return Some(b * BUCKET_WIDTH as u32 + i as u32);
            }
        }
        None
    }

    /// Takes an overflow entry: a recycled one from the free list, else a never-used one.
    fn alloc_overflow(&self) -> Option<u32> {
        let h = self.region.header();
        let l = self.region.layout();
        let mut cur = h.oflow_free.load(Acquire);
        loop {
            let head = cur as u32;
            if head == NO_INDEX || head < l.main_entries || head >= l.capacity() {
                break;
            }
            // A stale `cur` may make this read another list's link: the CAS then fails
            // (the ABA count in the high half changed).
            let next = self.region.entry(head).onext.load(Relaxed);
            let new = (((cur >> 32) + 1) << 32) | u64::from(next);
            match h.oflow_free.compare_exchange_weak(cur, new, AcqRel, Acquire) {
                Ok(_) => {
                    self.stats_block().add(|b| &b.oflow_delta, 1);
                    return Some(head);
                }
                Err(x) => cur = x,
            }
        }
        let mut n = h.oflow_bump.load(Relaxed);
        while n < l.overflow_entries {
            match h.oflow_bump.compare_exchange_weak(n, n + 1, AcqRel, Relaxed) {
                Ok(_) => {
                    self.stats_block().add(|b| &b.oflow_delta, 1);
                    return Some(l.main_entries + n);
                }
                Err(x) => n = x,
            }
        }
        None
    }

    fn free_overflow(&self, idx: u32) {
        let h = self.region.header();
        let e = self.region.entry(idx);
        e.ostate.store(ST_FREE, Relaxed);
        let mut cur = h.oflow_free.load(Relaxed);
        loop {
            e.onext.store(cur as u32, Relaxed);
            let new = (((cur >> 32) + 1) << 32) | u64::from(idx);
            match h.oflow_free.compare_exchange_weak(cur, new, Release, Relaxed) {
                Ok(_) => break,
                Err(x) => cur = x,
            }
        }
        self.stats_block().add(|b| &b.oflow_delta, DEC);
    }

    /// Removes overflow entry `idx` from its bucket chain. Caller holds the `retired`
    /// lock, so it is the only thread changing links other than chain heads (inserters
    /// only push at the head and only set their own new entry's link). Readers walking
    /// through `idx` keep following its link, which still points into the chain; `idx`
    /// itself is reused only after a grace period.
    fn unlink_overflow(&self, idx: u32) {
        let r = &self.region;
        let e = r.entry(idx);
        let bucket = r.bucket(r.bucket_of(e.hash.load(Relaxed)));
        let next = e.onext.load(Relaxed);
        let l = r.layout();
        loop {
            let head = bucket.chain.load(Acquire);
            if head == idx {
                if bucket.chain.compare_exchange(idx, next, SeqCst, Relaxed).is_ok() {
                    return;
                }
                continue; // a new entry was pushed in front: it is now a predecessor
            }
            let mut p = head;
            let mut steps = 0;
            while p != NO_INDEX && p >= l.main_entries && p < l.capacity() && steps <= l.overflow_entries {
                let pe = r.entry(p);
                if pe.onext.load(Acquire) == idx {
                    pe.onext.store(next, Release);
                    return;
                }
                p = pe.onext.load(Acquire);
                steps += 1;
            }
            // Not in the chain (cannot happen: entries are linked before they are
            // PENDING and unlinked once). Leave it; it is still reclaimed.
            debug_assert!(false, "overflow entry {idx} not found in its chain");
            return;
        }
    }

    /// Resets a retired slot and returns it to the free pool (grace period over).
    fn free_slot(&self, idx: u32) {
        let e = self.region.entry(idx);
        let was_active;
        {
            let _w = SeqWrite::begin(e);
            let c = e.ctl.load(Relaxed);
            was_active = ctl_flags(c) & flags::ACTIVE != 0;
            // The generation stays: the next claim bumps it.
            e.ctl.store(make_ctl(0, 0, 0, ctl_gen(c)), Relaxed);
            e.packets.store(0, Relaxed);
            e.bytes.store(0, Relaxed);
            e.owner.store(0, Relaxed);
            e.rflow.store(NO_INDEX, Relaxed);
            self.region.mirror(idx).clear();
        }
        if was_active {
            self.stats_block().add(|b| &b.used_delta, DEC);
        }
        if idx < self.main_entries() {
            self.region.slot(idx).store(ST_FREE, Release);
        } else {
            self.free_overflow(idx);
        }
    }

    /// Resets a freshly claimed entry for `w`: generation + 1, HOLD, counters zero.
    fn init_entry(&self, idx: u32, w: &[u64; KEY_WORDS], hash: u32, now: u64, flag_bits: u32) {
        let e = self.region.entry(idx);
        let _w = SeqWrite::begin(e);
        let gen = ctl_gen(e.ctl.load(Relaxed)).wrapping_add(1);
        e.ctl.store(make_ctl(flag_bits, Action::Hold as u8, 0, gen), Relaxed);
        for (k, v) in e.key.iter().zip(w) {
            k.store(*v, Relaxed);
        }
        e.packets.store(0, Relaxed);
        e.bytes.store(0, Relaxed);
        e.owner.store(0, Relaxed);
        e.last_seen.store(now, Relaxed);
        e.setup_time.store(now, Relaxed);
        e.rflow.store(NO_INDEX, Relaxed);
        e.src_nh.store(0, Relaxed);
        e.mirror.store(make_mirror_word(NO_MIRROR, NO_MIRROR, tunnel_source_port(hash)), Relaxed);
        e.tcp_flags.store(0, Relaxed);
        e.hash.store(hash, Relaxed);
        e.origin.store(0, Relaxed);
        // The mirror counters (a separate array: another cache miss) are already zero: the
        // file starts zeroed and `free_slot` zeroes them before a slot is reused.
    }

    /// Step 4 of [`FlowTable::insert`]: `Some(winner)` if another entry of the same key
    /// wins, `None` if `me` does.
    fn resolve(&self, bucket: &Bucket, b: u32, me: u32, tag: u32, my_ticket: u32, w: &[u64; KEY_WORDS]) -> Option<u32> {
        let r = &self.region;
        let l = r.layout();
        let mut spins = 0u32;
        'scan: loop {
            let mut valid = None;
            let mut oldest: Option<(u32, u32)> = None; // (ticket, idx) of the oldest PENDING
            let mut consider = |idx: u32, sw: u32| -> bool {
                if idx == me || word_tag(sw) != tag {
                    return true;
                }
                match word_state(sw) {
                    ST_CLAIMED => return false,
                    ST_PENDING | ST_VALID => {
                        let e = r.entry(idx);
                        if !e.key_eq(w) {
                            return true;
                        }
                        if word_state(sw) == ST_VALID {
                            valid = Some(idx);
                        } else {
                            let t = e.ticket.load(Relaxed);
                            if oldest.is_none_or(|(ot, _)| ticket_before(t, ot)) {
                                oldest = Some((t, idx));
                            }
                        }
                    }
                    _ => {}
                }
                true
            };
            let mut settled = true;
            for (i, s) in bucket.slots.iter().enumerate() {
                settled &= consider(b * BUCKET_WIDTH as u32 + i as u32, s.load(SeqCst));
            }
            let mut o = bucket.chain.load(SeqCst);
            let mut steps = 0;
            while o != NO_INDEX && o >= l.main_entries && o < l.capacity() && steps <= l.overflow_entries {
                let e = r.entry(o);
                settled &= consider(o, e.ostate.load(SeqCst));
                o = e.onext.load(Acquire);
                steps += 1;
            }
            if !settled {
                // Another insert with the same tag is initializing its entry (a few dozen
                // stores); its key decides who wins.
                backoff(&mut spins);
                continue 'scan;
            }
            if let Some(v) = valid {
                return Some(v);
            }
            return match oldest {
                Some((t, idx)) if ticket_before(t, my_ticket) => Some(idx),
                _ => None,
            };
        }
    }
}

/// Bit `i` set when slot word `i` of `bucket` equals `want` (Acquire loads: the entry was
/// written before its slot was published).
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn match_mask(bucket: &Bucket, want: u32) -> u32 {
    let mut m = 0;
    for (i, s) in bucket.slots.iter().enumerate() {
        m |= u32::from(s.load(Acquire) == want) << i;
    }
    m
}

/// [`match_mask`] on x86-64: the eight slot words compared with two SSE2 loads (baseline on
/// x86-64) instead of eight loads, compares and shifts: 6 instructions instead of ~30 on
/// every lookup (callgrind, 1k-flow bench config: `lookup_burst` 130.5 -> 98.5 instructions
/// per packet).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn match_mask(bucket: &Bucket, want: u32) -> u32 {
    use std::arch::x86_64::{_mm_castsi128_ps, _mm_cmpeq_epi32, _mm_load_si128, _mm_movemask_ps, _mm_set1_epi32};
    const _: () = assert!(BUCKET_WIDTH == 8 && align_of::<Bucket>() >= 16);
    // The alignment the cast needs is asserted at compile time just above.
    #[allow(clippy::cast_ptr_alignment)]
    let p = bucket.slots.as_ptr() as *const std::arch::x86_64::__m128i;
    // SAFETY: `slots` is eight u32 words at the start of a 64-byte aligned bucket, so both
    // 16-byte loads are aligned and in bounds. Other threads (and processes) update slot
    // words concurrently with atomic stores/CAS: x86-64 performs an aligned 16-byte load as
    // at most two aligned 8-byte accesses, each atomic (Intel SDM vol. 3, 9.1.1), so every
    // 4-byte slot word is read whole, old or new, as the scalar atomic loads would read it.
    // Loads are not reordered with later loads on x86 (TSO) and the compiler fence below
    // keeps the compiler from hoisting the caller's entry reads above these loads, which
    // gives the Acquire of the scalar version.
    let m = unsafe {
        let w = _mm_set1_epi32(want as i32);
        let a = _mm_cmpeq_epi32(_mm_load_si128(p), w);
        let b = _mm_cmpeq_epi32(_mm_load_si128(p.add(1)), w);
        (_mm_movemask_ps(_mm_castsi128_ps(a)) | (_mm_movemask_ps(_mm_castsi128_ps(b)) << 4)) as u32
    };
    std::sync::atomic::compiler_fence(Acquire);
    m
}

/// A statistics block and how to add to it.
struct Stats<'a> {
    b: &'a LcoreBlock,
    /// Only this thread writes the block (an lcore's own block; ids are one thread each).
    exclusive: bool,
}

impl Stats<'_> {
    /// Adds `v` (wrapping; negative deltas as two's complement).
    #[inline]
    fn add(&self, field: impl Fn(&LcoreBlock) -> &AtomicU64, v: u64) {
        let c = field(self.b);
        if self.exclusive {
            c.store(c.load(Relaxed).wrapping_add(v), Relaxed);
        } else {
            c.fetch_add(v, Relaxed);
        }
    }
}

const DEC: u64 = u64::MAX; // -1 as a wrapping delta

/// `a` was issued before `b` (tickets wrap; contenders are a few tickets apart).
#[inline]
fn ticket_before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

fn backoff(spins: &mut u32) {
    *spins += 1;
    if *spins < 64 {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

/// Checks the control word of a live flow: active, not retired, at generation `gen`.
fn check_live(idx: u32, c: u64, gen: Option<Gen>) -> Result<(), FlowTableError> {
    let f = ctl_flags(c);
    if f & flags::ACTIVE == 0 {
        return Err(FlowTableError::NotActive { index: idx });
    }
    if let Some(g) = gen {
        if ctl_gen(c) != g {
            return Err(FlowTableError::GenMismatch { index: idx, expected: g, found: ctl_gen(c) });
        }
    }
    if f & (flags::DELETE_MARKED | flags::EVICTED) != 0 {
        return Err(FlowTableError::DeleteMarked { index: idx });
    }
    Ok(())
}

/// A write section of an entry's sequence lock: the sequence is odd from `begin` until
/// drop. Writers of the same entry exclude each other (CAS from even); readers retry.
struct SeqWrite<'a> {
    seq: &'a AtomicU32,
    odd: u32,
}

impl<'a> SeqWrite<'a> {
    fn begin(e: &'a FlowEntry) -> SeqWrite<'a> {
        let mut spins = 0;
        loop {
            let s = e.seq.load(Relaxed);
            if s & 1 == 0 && e.seq.compare_exchange_weak(s, s | 1, Acquire, Relaxed).is_ok() {
                // The odd sequence is visible before any store of the section.
                fence(Release);
                return SeqWrite { seq: &e.seq, odd: s | 1 };
            }
            backoff(&mut spins);
        }
    }
}

impl Drop for SeqWrite<'_> {
    fn drop(&mut self) {
        self.seq.store(self.odd.wrapping_add(1), Release);
    }
}

/// Writes the table's own header fields and non-zero initial values into the fresh,
/// zeroed mapping (the common prefix and `magic` are [`shm::create`]'s).
fn init_table(m: &mut InitMap<'_>, layout: Layout) {
    let h: &mut Header = m.get_mut(0).expect("the layout holds the header");
    h.entry_size = AtomicU32::new(ENTRY_SIZE as u32);
    h.mirror_stats_size = AtomicU32::new(MIRROR_STATS_SIZE as u32);
    h.bucket_size = AtomicU32::new(BUCKET_SIZE as u32);
    h.bucket_width = AtomicU32::new(BUCKET_WIDTH as u32);
    h.main_entries = AtomicU32::new(layout.main_entries);
    h.overflow_entries = AtomicU32::new(layout.overflow_entries);
    h.n_buckets = AtomicU32::new(layout.n_buckets);
    h.max_lcores = AtomicU32::new(layout.max_lcores);
    h.lcore_block_size = AtomicU32::new(LCORE_BLOCK_SIZE as u32);
    h.lcore_offset = AtomicU64::new(layout.lcore_offset as u64);
    h.bucket_offset = AtomicU64::new(layout.bucket_offset as u64);
    h.entry_offset = AtomicU64::new(layout.entry_offset as u64);
    h.mirror_offset = AtomicU64::new(layout.mirror_offset as u64);
    // A fresh file is all zeros: every slot FREE, every counter 0. Only non-zero initial
    // values are written.
    h.qs_token = AtomicU64::new(1);
    h.oflow_free = AtomicU64::new(u64::from(NO_INDEX));
    for b in 0..layout.n_buckets as usize {
        let bucket: &mut Bucket = m.get_mut(layout.bucket_offset + b * BUCKET_SIZE).expect("buckets lie in the layout");
        bucket.chain = AtomicU32::new(NO_INDEX);
    }
}

#[cfg(test)]
mod match_mask_tests {
    use super::*;

    fn bucket(words: [u32; BUCKET_WIDTH]) -> Bucket {
        Bucket {
            slots: words.map(AtomicU32::new),
            chain: AtomicU32::new(NO_INDEX),
            ticket: AtomicU32::new(0),
            _pad: std::array::from_fn(|_| AtomicU32::new(0)),
        }
    }

    /// The slot-word comparison (SSE2 on x86-64) agrees with a plain per-slot compare for
    /// every slot position, duplicates, and words that differ in one bit or only in the
    /// high or low half.
    #[test]
    fn match_mask_agrees_with_a_per_slot_compare() {
        let want = slot_word(0x1234, ST_VALID);
        let near = [want, want ^ 1, want ^ 0x8000_0000, want ^ 0x0001_0000, 0, u32::MAX, ST_FREE];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for round in 0..20_000 {
            let mut w = [0u32; BUCKET_WIDTH];
            for s in w.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *s = near[(x % near.len() as u64) as usize];
            }
            if round < 256 {
                // every subset of slots holding `want`
                for (i, s) in w.iter_mut().enumerate() {
                    *s = if round & (1 << i) != 0 { want } else { want ^ 2 };
                }
            }
            let expect = w.iter().enumerate().fold(0u32, |m, (i, &s)| m | (u32::from(s == want) << i));
            assert_eq!(match_mask(&bucket(w), want), expect, "{w:x?}");
        }
    }
}
