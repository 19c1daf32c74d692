//! `<run_dir>/mirror`: the mirror table the data plane reads, and per-entry counters.
//!
//! The vRouter creates the file at start; the control path (configuration, control socket)
//! writes entries into it; forwarding lcores read an entry for every copy they make and
//! count into their own counter block; the `mirror` tool maps it read-only and shows entries
//! and counters live.
//!
//! # Layout (little-endian, `repr(C)`, no pointers)
//!
//! ```text
//! 0                 Header (256 bytes, starting with the common shm::RegionHeader)
//! slots_offset      Slot[255]              (384 bytes each): one mirror entry
//! counters_offset   EntryCounters[n_lcores][256]  (128 bytes each; index 255 unused)
//! ```
//!
//! # Concurrency
//!
//! - Creation and opening: through [`shm::create`] / [`shm::open`] (the header starts with
//!   the common [`RegionHeader`]; built under a temporary name, `magic` stored last
//!   (Release), then renamed).
//! - Slots: a sequence lock. The one writer (the control path, serialised by a mutex) makes
//!   `seq` odd, stores the fields (all atomics), makes `seq` even again (Release). Readers
//!   load `seq` (Acquire), the fields (Relaxed), fence(Acquire) and `seq` again; a changed or
//!   odd `seq` means retry. A reader never sees half an entry.
//! - Counters: one writer per lcore block, `load` + `store` (no locked add), as in the stats
//!   region; readers sum with `Relaxed` loads. A block holds the copies sent (all, and those
//!   of flow mirroring) and the copies lost by reason ([`LossCounts`]), flow and interface
//!   mirroring apart, so that a flow-mirroring reconciliation is not mixed with interface
//!   copies to the same analyzer.
//!
//! # Restart
//!
//! [`MirrorRegion::create_continuing`] reads the previous run's file at the same path before
//! replacing it and keeps each active entry's counters by analyzer name (per lcore; summed
//! into lcore 0 when the lcore count changed). The slots themselves are not copied: the
//! control path writes the configured analyzers again, and when it writes an analyzer of a
//! carried name, its counters are added to that slot's first (before the entry becomes
//! visible), wherever the slot is now. The first lcore handle ([`MirrorRegion::lcore`])
//! drops what no analyzer claimed: after that the counters have their one writer each, and
//! an analyzer of an old name created later starts at zero. A previous file of another
//! layout is set aside as `mirror.old` ([`crate::continued`]).

use std::collections::HashMap;
use std::mem::{offset_of, size_of};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use shm::{Bytes, CreateOptions, Mapped, Mismatch, OpenOptions, Pod, RegionHeader, RegionSpec};

use crate::continued::{Continuation, Continued};
use crate::mirror::loss::{LossCounts, N_LOSS_REASONS};

/// `b"VRMIRR01"` as a little-endian u64.
pub const MIRROR_MAGIC: u64 = u64::from_le_bytes(*b"VRMIRR01");
/// Layout version of the mirror region (2: the common region header prefix; 3: flow-mirroring
/// copies and lost copies by reason in the counter blocks).
pub const MIRROR_LAYOUT_VERSION: u32 = 3;
/// File name inside the run directory.
pub const MIRROR_FILE_NAME: &str = "mirror";
/// Mirror table slots (indices 0..=254).
pub const SLOTS: usize = crate::mirror::MAX_MIRROR_INDICES;
/// Counter blocks per lcore (one per index, 255 included so blocks stay 8 KiB).
const COUNTER_SLOTS: usize = 256;
/// Longest outer header template: Ethernet + IPv4 + UDP + VXLAN = 50, stored in 64 bytes.
pub const HDR_MAX: usize = 64;
const HDR_WORDS: usize = HDR_MAX / 8;
/// Longest analyzer name stored.
pub const NAME_MAX: usize = 256;
const NAME_WORDS: usize = NAME_MAX / 8;
/// `nh_vif` of an entry without a nexthop.
pub const NO_NH: u32 = u32::MAX;
/// Largest number of lcores the region accepts (the one shared bound, [`crate::MAX_LCORES`]).
pub use crate::limits::MAX_LCORES;

/// The file header: the common [`RegionHeader`] prefix (magic, version, sizes, generation,
/// owner), then the mirror region's static fields, written before `magic`.
#[repr(C, align(64))]
struct Header {
    region: RegionHeader,
    n_slots: u32,
    slot_size: u32,
    n_lcores: u32,
    counter_size: u32,
    slots_offset: u64,
    counters_offset: u64,
    /// The vRouter address (CAPTURE_HOST of the metadata), `u32::from(Ipv4Addr)`.
    router_ip: u32,
    _pad: u32,
    _reserved: [u64; 19],
}

const HEADER_SIZE: usize = 256;
const _: () = assert!(size_of::<Header>() == HEADER_SIZE);
const _: () = assert!(offset_of!(Header, n_slots) == 64);
const _: () = assert!(offset_of!(Header, n_lcores) == 72);
const _: () = assert!(offset_of!(Header, slots_offset) == 80);
const _: () = assert!(offset_of!(Header, counters_offset) == 88);
const _: () = assert!(offset_of!(Header, router_ip) == 96);
const _: () = assert!(offset_of!(Header, _reserved) == 104);
// SAFETY: repr(C), integers and atomics only (the prefix included), explicit padding
// (size and offsets asserted above), no pointers.
unsafe impl Pod for Header {}

/// What identifies a mirror region of this build (see [`shm::open`]).
const SPEC: RegionSpec = RegionSpec {
    kind: "mirror region",
    magic: MIRROR_MAGIC,
    layout_version: MIRROR_LAYOUT_VERSION,
    header_size: HEADER_SIZE,
    // The mirror region is world-readable (0644), so a refusal is the administrator's doing.
    denied_hint: shm::WORLD_READABLE_HINT,
};

/// One mirror entry. Every field is an atomic so readers in other threads and processes
/// may load it at any time; consistency comes from `seq`.
#[repr(C, align(64))]
struct Slot {
    /// Sequence lock: odd while the writer changes the slot.
    seq: AtomicU64,
    /// 0 empty, 1 active.
    state: AtomicU32,
    /// [`crate::mirror::MirrorFlags`] bits.
    flags: AtomicU32,
    analyzer_ip: AtomicU32,
    udp_port: AtomicU32,
    /// VXLAN VNI (header-less mode), 0 when none.
    vni: AtomicU32,
    /// 0 dynamic, 1 static.
    nh_mode: AtomicU32,
    /// 1 when the Juniper header (metadata TLVs) is used.
    juniper: AtomicU32,
    /// Fabric vif the copies leave through; [`NO_NH`] when the analyzer is unreachable.
    nh_vif: AtomicU32,
    hdr_len: AtomicU32,
    /// Ones'-complement sum of the constant words of the outer IPv4 header.
    ip_csum_base: AtomicU32,
    name_len: AtomicU32,
    _pad: u32,
    /// Unix milliseconds of the last create/update.
    created_ms: AtomicU64,
    /// Outer headers up to (and including) UDP, or VXLAN, with the constants filled in.
    hdr: [AtomicU64; HDR_WORDS],
    name: [AtomicU64; NAME_WORDS],
}

const SLOT_SIZE: usize = 384;
const _: () = assert!(size_of::<Slot>() == SLOT_SIZE);
const _: () = assert!(offset_of!(Slot, state) == 8);
const _: () = assert!(offset_of!(Slot, nh_vif) == 36);
const _: () = assert!(offset_of!(Slot, created_ms) == 56);
const _: () = assert!(offset_of!(Slot, hdr) == 64);
const _: () = assert!(offset_of!(Slot, name) == 128);
// SAFETY: repr(C), atomics and integers only, explicit padding (size and offsets asserted
// above), no pointers.
unsafe impl Pod for Slot {}

// The words of an entry's per-lcore counter block ([`EntryStats`] names them).
/// Copies sent, flow and interface mirroring.
const W_PACKETS: usize = 0;
/// Bytes of the copies sent.
const W_BYTES: usize = 1;
/// Copies lost, any reason, flow and interface mirroring.
const W_ERRORS: usize = 2;
/// Copies of flow mirroring sent.
const W_FLOW_PACKETS: usize = 3;
/// Bytes of those.
const W_FLOW_BYTES: usize = 4;
/// Copies of flow mirroring lost, one word per reason of [`crate::mirror::LOSS_REASONS`].
const W_FLOW_LOST: usize = 5;
/// Copies of interface mirroring lost, one word per reason.
const W_IFACE_LOST: usize = W_FLOW_LOST + N_LOSS_REASONS;
/// Words per block (the rest spare, zero).
const COUNTER_WORDS: usize = 16;
const _: () = assert!(W_IFACE_LOST + N_LOSS_REASONS <= COUNTER_WORDS);

/// Per-lcore counters of one entry: the words above.
#[repr(C, align(64))]
struct EntryCounters {
    w: [AtomicU64; COUNTER_WORDS],
}

const COUNTER_SIZE: usize = 128;
const _: () = assert!(size_of::<EntryCounters>() == COUNTER_SIZE);
// SAFETY: repr(C), atomics only, no padding (size asserted), no pointers.
unsafe impl Pod for EntryCounters {}

impl EntryCounters {
    fn load(&self) -> [u64; COUNTER_WORDS] {
        std::array::from_fn(|k| self.w[k].load(Ordering::Relaxed))
    }

    /// Adds to word `k` (the block's one writer, or a block no lcore writes yet).
    #[inline]
    fn add(&self, k: usize, n: u64) {
        let r = Ordering::Relaxed;
        self.w[k].store(self.w[k].load(r).wrapping_add(n), r);
    }
}

/// Which mirroring a copy belongs to (counted apart in an entry's block).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyKind {
    /// A copy of a mirrored flow's packet.
    Flow,
    /// A copy of a vif's received or transmitted frame.
    Interface,
}

const fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Layout {
    n_lcores: usize,
    slots_offset: usize,
    counters_offset: usize,
    file_size: usize,
}

impl Layout {
    fn new(n_lcores: usize) -> Layout {
        let slots_offset = HEADER_SIZE;
        let counters_offset = round_up(slots_offset + SLOTS * SLOT_SIZE, 64);
        let file_size = counters_offset + n_lcores * COUNTER_SLOTS * COUNTER_SIZE;
        Layout { n_lcores, slots_offset, counters_offset, file_size }
    }
}

/// A mirror entry as stored in the region (what the data plane and the tool read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotEntry {
    /// Analyzer name as configured (at most [`NAME_MAX`] bytes stored).
    pub analyzer_name: String,
    /// Analyzer (collector) address the copies are sent to.
    pub analyzer_ip: Ipv4Addr,
    /// Analyzer UDP destination port.
    pub udp_port: u16,
    /// VXLAN VNI of header-less mode; `None` (stored as 0) when the copies carry no VXLAN.
    pub vni: Option<u32>,
    /// Dynamic (routed to the analyzer) or static (fixed outer headers) nexthop.
    pub nh_mode: crate::mirror::NhMode,
    /// Whether copies carry the Juniper header with the metadata TLVs.
    pub juniper_header: bool,
    /// [`crate::mirror::MirrorFlags`] bits.
    pub flags: u16,
    /// Fabric vif of the nexthop; `None` when the analyzer is unreachable.
    pub nh_vif: Option<u16>,
    /// The outer header template (see `vrouter::mirror::encap`).
    pub hdr: [u8; HDR_MAX],
    /// Bytes of `hdr` in use.
    pub hdr_len: usize,
    /// Ones'-complement sum of the constant words of the outer IPv4 header (the data plane adds
    /// the total length and folds it into the checksum).
    pub ip_csum_base: u32,
    /// Unix milliseconds of the last create/update.
    pub created_ms: u64,
}

/// What a forwarding lcore needs of an entry per copy (no allocation).
#[derive(Clone, Copy, Debug)]
pub struct DpEntry {
    /// Whether copies carry the Juniper header (metadata TLVs).
    pub juniper: bool,
    /// Fabric vif the copies leave through; [`NO_NH`] when the analyzer is unreachable.
    pub nh_vif: u32,
    /// The outer header template, constants filled in.
    pub hdr: [u8; HDR_MAX],
    /// Bytes of `hdr` in use.
    pub hdr_len: usize,
    /// Partial checksum of the outer IPv4 header (see [`SlotEntry::ip_csum_base`]).
    pub ip_csum_base: u32,
}

/// Summed counters of one entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct EntryStats {
    /// Copies sent (`mir_tpkts` when summed over entries).
    pub packets: u64,
    /// Bytes of the copies sent (whole frames).
    pub bytes: u64,
    /// Copies that could not be made or sent.
    pub errors: u64,
    /// Copies of flow mirroring sent (the rest of `packets` is interface mirroring).
    pub flow_packets: u64,
    /// Bytes of those.
    pub flow_bytes: u64,
    /// Copies of flow mirroring lost, by reason.
    pub flow_lost: LossCounts,
    /// Copies of interface mirroring lost, by reason.
    pub interface_lost: LossCounts,
}

impl EntryStats {
    fn from_words(w: &[u64; COUNTER_WORDS]) -> EntryStats {
        let lost = |at: usize| LossCounts(std::array::from_fn(|k| w[at + k]));
        EntryStats {
            packets: w[W_PACKETS],
            bytes: w[W_BYTES],
            errors: w[W_ERRORS],
            flow_packets: w[W_FLOW_PACKETS],
            flow_bytes: w[W_FLOW_BYTES],
            flow_lost: lost(W_FLOW_LOST),
            interface_lost: lost(W_IFACE_LOST),
        }
    }

    /// Copies of interface mirroring sent.
    pub fn interface_packets(&self) -> u64 {
        self.packets.wrapping_sub(self.flow_packets)
    }

    /// Bytes of those.
    pub fn interface_bytes(&self) -> u64 {
        self.bytes.wrapping_sub(self.flow_bytes)
    }
}

fn add_words(sum: &mut [u64; COUNTER_WORDS], w: &[u64; COUNTER_WORDS]) {
    for (s, v) in sum.iter_mut().zip(w) {
        *s = s.wrapping_add(*v);
    }
}

impl EntryStats {
    /// The counters with their JSON keys and help (what the tools and the Prometheus
    /// exporter name and describe them by), in field order.
    pub const FIELDS: [crate::stats::CounterField; 3] = [
        crate::stats::CounterField { key: "packets", help: "Mirror copies sent to the analyzer" },
        crate::stats::CounterField { key: "bytes", help: "Bytes of the mirror copies sent, encapsulation included" },
        crate::stats::CounterField {
            key: "errors",
            help: "Mirror copies to the analyzer that could not be made or sent",
        },
    ];

    /// Each counter of [`Self::FIELDS`] with its value.
    pub fn values(&self) -> [(&'static str, u64); 3] {
        [("packets", self.packets), ("bytes", self.bytes), ("errors", self.errors)]
    }
}

/// Errors creating or opening the mirror region (the shared region error type).
pub type MirrorRegionError = shm::RegionError;

/// A checked view of a mapping: its bytes plus layout.
#[derive(Clone, Copy)]
struct View<'a> {
    bytes: Bytes<'a>,
    layout: Layout,
}

impl<'a> View<'a> {
    /// A view of `bytes` (a mapping: page-aligned) with `layout`, which must fit in it.
    fn new(bytes: Bytes<'a>, layout: Layout) -> View<'a> {
        assert!(layout.file_size <= bytes.len(), "mapping shorter than the layout");
        assert!(bytes.as_ptr() as usize & 63 == 0, "mapping not 64-aligned");
        View { bytes, layout }
    }

    /// Slot `i` (read for every mirror copy: the index check is the only check).
    #[inline]
    fn slot(&self, i: usize) -> Option<&'a Slot> {
        if i >= SLOTS {
            return None;
        }
        // SAFETY: i < SLOTS keeps the slot inside the slot array, which lies inside the
        // bytes (layout checked in `new`); slots_offset and SLOT_SIZE are multiples of 64.
        Some(unsafe { self.bytes.get_unchecked(self.layout.slots_offset + i * SLOT_SIZE) })
    }

    /// Counters of entry `i` of `lcore` (bumped for every mirror copy).
    #[inline]
    fn counters(&self, lcore: usize, i: usize) -> Option<&'a EntryCounters> {
        if lcore >= self.layout.n_lcores || i >= COUNTER_SLOTS {
            return None;
        }
        let off = self.layout.counters_offset + (lcore * COUNTER_SLOTS + i) * COUNTER_SIZE;
        // SAFETY: lcore < n_lcores and i < COUNTER_SLOTS keep the block inside the counter
        // array within the bytes; the offset is a multiple of 64 (EntryCounters' alignment:
        // counters_offset is 64-aligned, COUNTER_SIZE a multiple of 64).
        Some(unsafe { self.bytes.get_unchecked(off) })
    }

    /// Reads slot `i` consistently; `None` when empty. Retries while a writer is active.
    fn read_slot(&self, i: usize) -> Option<SlotEntry> {
        loop {
            match self.try_read_slot(i) {
                Some(e) => return e,
                None => std::hint::spin_loop(),
            }
        }
    }

    /// One attempt at [`View::read_slot`]: `None` when a writer was active (`seq` odd, or
    /// changed during the read), else the slot (`Some(None)`: empty or out of range).
    fn try_read_slot(&self, i: usize) -> Option<Option<SlotEntry>> {
        let Some(s) = self.slot(i) else { return Some(None) };
        let seq = s.seq.load(Ordering::Acquire);
        if seq & 1 == 1 {
            return None;
        }
        let r = Ordering::Relaxed;
        let active = s.state.load(r) == 1;
        let name_len = (s.name_len.load(r) as usize).min(NAME_MAX);
        let mut name = [0u8; NAME_MAX];
        for (k, w) in s.name.iter().enumerate() {
            name[k * 8..k * 8 + 8].copy_from_slice(&w.load(r).to_le_bytes());
        }
        let mut hdr = [0u8; HDR_MAX];
        for (k, w) in s.hdr.iter().enumerate() {
            hdr[k * 8..k * 8 + 8].copy_from_slice(&w.load(r).to_le_bytes());
        }
        let vni = s.vni.load(r);
        let nh_vif = s.nh_vif.load(r);
        let e = SlotEntry {
            analyzer_name: String::from_utf8_lossy(&name[..name_len]).into_owned(),
            analyzer_ip: Ipv4Addr::from(s.analyzer_ip.load(r)),
            udp_port: s.udp_port.load(r) as u16,
            vni: (vni != 0).then_some(vni),
            nh_mode: if s.nh_mode.load(r) == 1 {
                crate::mirror::NhMode::Static
            } else {
                crate::mirror::NhMode::Dynamic
            },
            juniper_header: s.juniper.load(r) == 1,
            flags: s.flags.load(r) as u16,
            nh_vif: (nh_vif != NO_NH).then_some(nh_vif as u16),
            hdr,
            hdr_len: (s.hdr_len.load(r) as usize).min(HDR_MAX),
            ip_csum_base: s.ip_csum_base.load(r),
            created_ms: s.created_ms.load(r),
        };
        fence(Ordering::Acquire);
        (s.seq.load(Ordering::Relaxed) == seq).then(|| active.then_some(e))
    }

    fn stats(&self, i: usize, lcore: Option<usize>) -> EntryStats {
        let mut t = [0u64; COUNTER_WORDS];
        let cores = match lcore {
            Some(c) if c < self.layout.n_lcores => c..c + 1,
            Some(_) => 0..0,
            None => 0..self.layout.n_lcores,
        };
        for c in cores {
            let Some(b) = self.counters(c, i) else { continue };
            add_words(&mut t, &b.load());
        }
        EntryStats::from_words(&t)
    }
}

struct Shared {
    map: Mapped,
    layout: Layout,
    taken: Box<[AtomicBool]>,
    /// Serialises slot writers (the seqlock allows exactly one), and holds the previous
    /// run's counters until their analyzers are written again.
    write: Mutex<Carried>,
}

/// The previous run's counters by analyzer name ([`MirrorRegion::create_continuing`]).
#[derive(Default)]
struct Carried {
    /// The previous run's lcore count.
    n_lcores: usize,
    /// Per analyzer name, its counter words on each of the previous run's lcores.
    by_name: HashMap<String, Vec<[u64; COUNTER_WORDS]>>,
}

impl Carried {
    /// The counters of every active entry of a previous region, and what could not be read
    /// (a slot its writer left half-written).
    fn read(old: View<'_>) -> (Carried, Vec<String>) {
        let mut carried = Carried { n_lcores: old.layout.n_lcores, by_name: HashMap::new() };
        let mut torn = Vec::new();
        for i in 0..SLOTS {
            // The previous owner is gone or stopped: a slot still changing after this many
            // tries was left half-written by a writer that died.
            match (0..1000).find_map(|_| old.try_read_slot(i)) {
                Some(Some(e)) => {
                    let per_lcore = carried
                        .by_name
                        .entry(e.analyzer_name)
                        .or_insert_with(|| vec![[0u64; COUNTER_WORDS]; old.layout.n_lcores]);
                    for (c, sum) in per_lcore.iter_mut().enumerate() {
                        if let Some(b) = old.counters(c, i) {
                            add_words(sum, &b.load());
                        }
                    }
                }
                Some(None) => {}
                None => torn.push(i.to_string()),
            }
        }
        let mut notes = Vec::new();
        if !torn.is_empty() {
            notes.push(format!("slot {} half-written by the previous run: counters dropped", torn.join(", ")));
        }
        (carried, notes)
    }

    /// Adds the carried counters of `name`, if any, to slot `i` of `view` (a region of
    /// `view.layout.n_lcores` lcores whose counter blocks no lcore writes yet).
    fn claim(&mut self, name: &str, view: View<'_>, i: usize) {
        let Some(per_lcore) = self.by_name.remove(name) else { return };
        let same = self.n_lcores == view.layout.n_lcores;
        for (c, words) in per_lcore.iter().enumerate() {
            let Some(b) = view.counters(if same { c } else { 0 }, i) else { continue };
            for (k, &n) in words.iter().enumerate() {
                b.add(k, n);
            }
        }
    }
}

impl Shared {
    #[inline]
    fn view(&self) -> View<'_> {
        View::new(self.map.bytes(), self.layout)
    }
}

/// The vRouter's handle on `<run_dir>/mirror`.
#[derive(Clone)]
pub struct MirrorRegion {
    shared: Arc<Shared>,
}

impl MirrorRegion {
    /// Creates (or replaces) the region for `n_lcores` forwarding lcores, all slots empty,
    /// every counter at zero.
    pub fn create(run_dir: &Path, n_lcores: usize, router_ip: Ipv4Addr) -> Result<MirrorRegion, MirrorRegionError> {
        check_lcores(n_lcores)?;
        MirrorRegion::build(run_dir, n_lcores, router_ip, Carried::default())
    }

    /// [`MirrorRegion::create`], continuing the counters of the previous run's file at the
    /// same path by analyzer name (see "Restart" in the module docs): an analyzer written
    /// into a slot before the first [`MirrorRegion::lcore`] call starts from the counters
    /// its name had. The previous file's owner must be gone or have stopped its lcores.
    ///
    /// A previous file this build does not accept is renamed to `mirror.old` and nothing is
    /// carried; the returned [`Continuation`] says which happened.
    pub fn create_continuing(
        run_dir: &Path,
        n_lcores: usize,
        router_ip: Ipv4Addr,
    ) -> Result<(MirrorRegion, Continuation), MirrorRegionError> {
        check_lcores(n_lcores)?;
        let path = run_dir.join(MIRROR_FILE_NAME);
        let previous = shm::previous(&path, &SPEC, validate)?;
        if let shm::Previous::Compatible(old_map, old_layout) = &previous {
            let (carried, mut notes) = Carried::read(View::new(old_map.bytes(), *old_layout));
            if carried.n_lcores != n_lcores {
                notes.push(format!(
                    "{} forwarding lcores before, {n_lcores} now: the previous per-lcore counters are summed into \
                     lcore 0",
                    carried.n_lcores
                ));
            }
            let region = MirrorRegion::build(run_dir, n_lcores, router_ip, carried)?;
            let outcome = Continued::Continued { notes };
            return Ok((region, Continuation { kind: SPEC.kind, path, what: "counters", outcome }));
        }
        let continuation =
            Continuation::from_previous(SPEC.kind, path, "counters", &previous).expect("not a compatible file");
        Ok((MirrorRegion::build(run_dir, n_lcores, router_ip, Carried::default())?, continuation))
    }

    fn build(
        run_dir: &Path,
        n_lcores: usize,
        router_ip: Ipv4Addr,
        carried: Carried,
    ) -> Result<MirrorRegion, MirrorRegionError> {
        let layout = Layout::new(n_lcores);
        let opts = CreateOptions::new(layout.file_size as u64, 0o644);
        let map = shm::create(&run_dir.join(MIRROR_FILE_NAME), &SPEC, &opts, |m| {
            let h: &mut Header = m.get_mut(0).expect("the layout holds the header");
            h.n_slots = SLOTS as u32;
            h.slot_size = SLOT_SIZE as u32;
            h.n_lcores = n_lcores as u32;
            h.counter_size = COUNTER_SIZE as u32;
            h.slots_offset = layout.slots_offset as u64;
            h.counters_offset = layout.counters_offset as u64;
            h.router_ip = u32::from(router_ip);
            // Slots and counters are zero (empty, seq 0) from set_len.
        })?;
        let taken = (0..n_lcores).map(|_| AtomicBool::new(false)).collect();
        Ok(MirrorRegion { shared: Arc::new(Shared { map, layout, taken, write: Mutex::new(carried) }) })
    }

    /// Path of the region file.
    pub fn path(&self) -> &Path {
        self.shared.map.path()
    }

    /// Stores `e` in slot `i` (create or update).
    pub fn write_slot(&self, i: usize, e: &SlotEntry) {
        self.write(i, Some(e));
    }

    /// Empties slot `i`. Copies already made keep their counters; later copies for this
    /// index count as "Mirror No Entry".
    pub fn clear_slot(&self, i: usize) {
        self.write(i, None);
    }

    fn write(&self, i: usize, e: Option<&SlotEntry>) {
        let mut carried = self.shared.write.lock().unwrap_or_else(|p| p.into_inner());
        let view = self.shared.view();
        let Some(s) = view.slot(i) else { return };
        if let Some(e) = e {
            // Before the entry is visible, and only while no lcore writes the counters.
            carried.claim(&e.analyzer_name, view, i);
        }
        let r = Ordering::Relaxed;
        let seq = s.seq.load(r);
        s.seq.store(seq.wrapping_add(1) | 1, r);
        fence(Ordering::Release);
        match e {
            None => s.state.store(0, r),
            Some(e) => {
                s.flags.store(u32::from(e.flags), r);
                s.analyzer_ip.store(u32::from(e.analyzer_ip), r);
                s.udp_port.store(u32::from(e.udp_port), r);
                s.vni.store(e.vni.unwrap_or(0), r);
                s.nh_mode.store(u32::from(e.nh_mode == crate::mirror::NhMode::Static), r);
                s.juniper.store(u32::from(e.juniper_header), r);
                s.nh_vif.store(e.nh_vif.map_or(NO_NH, u32::from), r);
                s.hdr_len.store(e.hdr_len.min(HDR_MAX) as u32, r);
                s.ip_csum_base.store(e.ip_csum_base, r);
                let name = e.analyzer_name.as_bytes();
                let n = name.len().min(NAME_MAX);
                let mut buf = [0u8; NAME_MAX];
                buf[..n].copy_from_slice(&name[..n]);
                for (k, w) in s.name.iter().enumerate() {
                    w.store(u64::from_le_bytes(buf[k * 8..k * 8 + 8].try_into().expect("8 bytes")), r);
                }
                s.name_len.store(n as u32, r);
                for (k, w) in s.hdr.iter().enumerate() {
                    w.store(u64::from_le_bytes(e.hdr[k * 8..k * 8 + 8].try_into().expect("8 bytes")), r);
                }
                s.created_ms.store(e.created_ms, r);
                s.state.store(1, r);
            }
        }
        s.seq.store(seq.wrapping_add(2) & !1, Ordering::Release);
    }

    /// Slot `i`, if active.
    pub fn read_slot(&self, i: usize) -> Option<SlotEntry> {
        self.shared.view().read_slot(i)
    }

    /// Counters of slot `i` summed over lcores (or of one lcore).
    pub fn stats(&self, i: usize, lcore: Option<usize>) -> EntryStats {
        self.shared.view().stats(i, lcore)
    }

    /// The counter handle of lcore `index`, to move to that lcore (one per index). The
    /// previous run's counters no analyzer has claimed yet are dropped first: from here on
    /// each counter block has its one writer.
    pub fn lcore(&self, index: usize) -> Option<MirrorCounters> {
        if index >= self.shared.layout.n_lcores {
            return None;
        }
        self.shared.write.lock().unwrap_or_else(|p| p.into_inner()).by_name.clear();
        if self.shared.taken[index].swap(true, Ordering::AcqRel) {
            return None;
        }
        Some(MirrorCounters { shared: self.shared.clone(), index })
    }
}

/// One lcore's access to the region: entry reads and its own counter block. `Send`, not
/// `Sync` (one writer per counter block).
pub struct MirrorCounters {
    shared: Arc<Shared>,
    index: usize,
}

impl MirrorCounters {
    /// The entry at mirror index `i` as the data plane needs it, `None` when empty.
    #[inline]
    pub fn entry(&self, i: u8) -> Option<DpEntry> {
        let view = self.shared.view();
        let s = view.slot(usize::from(i))?;
        loop {
            let seq = s.seq.load(Ordering::Acquire);
            if seq & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let r = Ordering::Relaxed;
            let active = s.state.load(r) == 1;
            let mut hdr = [0u8; HDR_MAX];
            for (k, w) in s.hdr.iter().enumerate() {
                hdr[k * 8..k * 8 + 8].copy_from_slice(&w.load(r).to_le_bytes());
            }
            let e = DpEntry {
                juniper: s.juniper.load(r) == 1,
                nh_vif: s.nh_vif.load(r),
                hdr,
                hdr_len: (s.hdr_len.load(r) as usize).min(HDR_MAX),
                ip_csum_base: s.ip_csum_base.load(r),
            };
            fence(Ordering::Acquire);
            if s.seq.load(Ordering::Relaxed) == seq {
                return active.then_some(e);
            }
        }
    }

    #[inline]
    fn block(&self, i: u8) -> Option<&EntryCounters> {
        // The View borrows the mapping owned by `shared`, which `self` keeps alive.
        self.shared.view().counters(self.index, usize::from(i))
    }

    /// One copy (of `kind`) of `bytes` bytes sent for entry `i`.
    #[inline]
    pub fn sent(&self, i: u8, kind: CopyKind, bytes: u64) {
        if let Some(b) = self.block(i) {
            b.add(W_PACKETS, 1);
            b.add(W_BYTES, bytes);
            if kind == CopyKind::Flow {
                b.add(W_FLOW_PACKETS, 1);
                b.add(W_FLOW_BYTES, bytes);
            }
        }
    }

    /// One copy (of `kind`) due for entry `i` and lost for `reason` (one of
    /// [`crate::mirror::LOSS_REASONS`]; another reason counts as an error only).
    #[inline]
    pub fn lost(&self, i: u8, kind: CopyKind, reason: crate::drop_reason::DropReason) {
        if let Some(b) = self.block(i) {
            b.add(W_ERRORS, 1);
            if let Some(k) = LossCounts::slot(reason) {
                b.add(if kind == CopyKind::Flow { W_FLOW_LOST } else { W_IFACE_LOST } + k, 1);
            }
        }
    }
}

impl Drop for MirrorCounters {
    fn drop(&mut self) {
        self.shared.taken[self.index].store(false, Ordering::Release);
    }
}

/// Read-only access from another process (the `mirror` tool).
pub struct MirrorReader {
    map: Mapped,
    layout: Layout,
    router_ip: Ipv4Addr,
    generation: u64,
}

impl MirrorReader {
    /// Opens `<run_dir>/mirror`, also when its vRouter is gone (the tool shows its last
    /// state): [`MirrorReader::open_with`] with [`OpenOptions::allow_stale`].
    pub fn open(run_dir: &Path) -> Result<MirrorReader, MirrorRegionError> {
        MirrorReader::open_with(run_dir, &OpenOptions::new().allow_stale())
    }

    /// Opens `<run_dir>/mirror` through [`shm::open`] and checks its header against this
    /// build's layout (and, unless `opts` allow a stale region, that its owner runs).
    pub fn open_with(run_dir: &Path, opts: &OpenOptions) -> Result<MirrorReader, MirrorRegionError> {
        let (map, layout) = shm::open(&run_dir.join(MIRROR_FILE_NAME), &SPEC, opts, validate)?;
        let h: &Header = map.get(0).expect("shm::open checked the header size");
        let router_ip = Ipv4Addr::from(h.router_ip);
        let generation = h.region.generation();
        Ok(MirrorReader { map, layout, router_ip, generation })
    }

    fn view(&self) -> View<'_> {
        View::new(self.map.bytes(), self.layout)
    }

    /// Path of the region file.
    pub fn path(&self) -> &Path {
        self.map.path()
    }

    /// This file's generation (bumped on every creation; a change means the vRouter restarted).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The vRouter address (capture host).
    pub fn router_ip(&self) -> Ipv4Addr {
        self.router_ip
    }

    /// Number of per-lcore counter blocks.
    pub fn n_lcores(&self) -> usize {
        self.layout.n_lcores
    }

    /// Slot `i` if active.
    pub fn entry(&self, i: usize) -> Option<SlotEntry> {
        self.view().read_slot(i)
    }

    /// Every active slot in index order.
    pub fn entries(&self) -> Vec<(u8, SlotEntry)> {
        (0..SLOTS).filter_map(|i| self.entry(i).map(|e| (i as u8, e))).collect()
    }

    /// Counters of slot `i` (summed over lcores unless `lcore` selects one). Counters of an
    /// empty slot are those of the entries it held before.
    pub fn stats(&self, i: usize, lcore: Option<usize>) -> EntryStats {
        self.view().stats(i, lcore)
    }
}

fn check_lcores(n_lcores: usize) -> Result<(), MirrorRegionError> {
    if n_lcores == 0 || n_lcores > MAX_LCORES {
        return Err(MirrorRegionError::InvalidArgument {
            kind: SPEC.kind,
            msg: format!("n_lcores is {n_lcores} (expected 1..={MAX_LCORES})"),
        });
    }
    Ok(())
}

/// Checks the mirror region's own header fields (the common prefix was checked by
/// [`shm::open`]); returns its layout.
fn validate(map: &Mapped) -> Result<Layout, Mismatch> {
    let h: &Header = map.get(0).expect("shm::open checked the header size");
    let n_lcores = h.n_lcores as usize;
    if n_lcores == 0 || n_lcores > MAX_LCORES {
        return Err(Mismatch { field: "n_lcores", found: n_lcores as u64, expected: MAX_LCORES as u64 });
    }
    let layout = Layout::new(n_lcores);
    for (field, found, expected) in [
        ("n_slots", u64::from(h.n_slots), SLOTS as u64),
        ("slot_size", u64::from(h.slot_size), SLOT_SIZE as u64),
        ("counter_size", u64::from(h.counter_size), COUNTER_SIZE as u64),
        ("slots_offset", h.slots_offset, layout.slots_offset as u64),
        ("counters_offset", h.counters_offset, layout.counters_offset as u64),
        // shm::open checked that the mapping holds the layout_size the header declares.
        ("file_size", h.region.layout_size(), layout.file_size as u64),
    ] {
        Mismatch::check(field, found, expected)?;
    }
    Ok(layout)
}

/// The JSON form of an entry (control socket and `mirror --json`).
pub fn entry_json(index: u8, e: &SlotEntry, st: EntryStats) -> Value {
    json!({
        "index": index,
        "analyzer_name": e.analyzer_name,
        "analyzer_ip": e.analyzer_ip.to_string(),
        "udp_port": e.udp_port,
        "nh_mode": e.nh_mode.as_str(),
        "juniper_header": e.juniper_header,
        "vni": e.vni,
        "flags": e.flags,
        "nh_vif": e.nh_vif,
        "packets": st.packets,
        "bytes": st.bytes,
        "errors": st.errors,
        "flow_packets": st.flow_packets,
        "flow_bytes": st.flow_bytes,
        "flow_lost": st.flow_lost,
        "interface_lost": st.interface_lost,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::continued::{Continuation, Continued};
    use crate::drop_reason::DropReason;

    fn entry(name: &str) -> SlotEntry {
        let mut hdr = [0u8; HDR_MAX];
        hdr[..4].copy_from_slice(&[1, 2, 3, 4]);
        SlotEntry {
            analyzer_name: name.into(),
            analyzer_ip: Ipv4Addr::new(10, 9, 0, 1),
            udp_port: 8099,
            vni: None,
            nh_mode: crate::mirror::NhMode::Dynamic,
            juniper_header: true,
            flags: 1,
            nh_vif: Some(0),
            hdr,
            hdr_len: 42,
            ip_csum_base: 0x1234,
            created_ms: 5,
        }
    }

    #[test]
    fn write_read_clear_and_counters_across_mappings() {
        let dir = tempfile::tempdir().unwrap();
        let region = MirrorRegion::create(dir.path(), 2, Ipv4Addr::new(10, 0, 0, 1)).unwrap();
        region.write_slot(3, &entry("an-a"));
        let long = "x".repeat(300);
        region.write_slot(254, &SlotEntry { vni: Some(77), juniper_header: false, nh_vif: None, ..entry(&long) });
        let reader = MirrorReader::open(dir.path()).unwrap();
        assert_eq!(reader.router_ip(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(reader.entry(3), Some(entry("an-a")));
        let e = reader.entry(254).unwrap();
        assert_eq!(e.analyzer_name.len(), NAME_MAX);
        assert_eq!((e.vni, e.juniper_header, e.nh_vif), (Some(77), false, None));
        assert_eq!(reader.entries().len(), 2);
        assert_eq!(reader.entry(0), None);

        let l0 = region.lcore(0).unwrap();
        assert!(region.lcore(0).is_none(), "one handle per lcore");
        let l1 = region.lcore(1).unwrap();
        let dp = l0.entry(3).unwrap();
        assert!(dp.juniper && dp.nh_vif == 0 && dp.hdr_len == 42 && dp.hdr[..4] == [1, 2, 3, 4]);
        assert!(l0.entry(7).is_none());
        l0.sent(3, CopyKind::Flow, 100);
        l0.sent(3, CopyKind::Interface, 50);
        l1.sent(3, CopyKind::Flow, 10);
        l1.lost(3, CopyKind::Flow, DropReason::MirrorNoNh);
        l1.lost(3, CopyKind::Interface, DropReason::MirrorTxFull);
        let mut flow_lost = LossCounts::default();
        flow_lost.add(DropReason::MirrorNoNh, 1);
        let mut interface_lost = LossCounts::default();
        interface_lost.add(DropReason::MirrorTxFull, 1);
        let all = EntryStats {
            packets: 3,
            bytes: 160,
            errors: 2,
            flow_packets: 2,
            flow_bytes: 110,
            flow_lost,
            interface_lost,
        };
        assert_eq!(reader.stats(3, None), all);
        assert_eq!((all.interface_packets(), all.interface_bytes()), (1, 50));
        let one = EntryStats { packets: 1, bytes: 10, flow_packets: 1, flow_bytes: 10, ..all };
        assert_eq!(reader.stats(3, Some(1)), one);
        region.clear_slot(3);
        assert_eq!(reader.entry(3), None);
        assert!(l0.entry(3).is_none());
        assert_eq!(reader.stats(3, None).packets, 3, "counters survive a delete");
    }

    #[test]
    fn reader_rejects_foreign_files() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(MirrorReader::open(dir.path()), Err(MirrorRegionError::NotRunning { .. })));
        std::fs::write(dir.path().join(MIRROR_FILE_NAME), vec![7u8; 4096]).unwrap();
        let e = MirrorReader::open(dir.path()).err().unwrap().to_string();
        assert!(e.contains("magic"), "{e}");
    }

    #[test]
    fn concurrent_writer_never_shows_half_an_entry() {
        let dir = tempfile::tempdir().unwrap();
        let region = MirrorRegion::create(dir.path(), 1, Ipv4Addr::new(10, 0, 0, 1)).unwrap();
        let a = SlotEntry { hdr: [0xaa; HDR_MAX], hdr_len: 42, ..entry("a") };
        let b = SlotEntry { hdr: [0xbb; HDR_MAX], hdr_len: 50, juniper_header: false, vni: Some(9), ..entry("b") };
        region.write_slot(1, &a);
        let stop = Arc::new(AtomicBool::new(false));
        let w = {
            let (region, stop, a, b) = (region.clone(), stop.clone(), a.clone(), b.clone());
            std::thread::spawn(move || {
                let mut n = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    region.write_slot(1, if n & 1 == 0 { &b } else { &a });
                    n += 1;
                }
            })
        };
        let c = region.lcore(0).unwrap();
        for _ in 0..20_000 {
            let e = c.entry(1).unwrap();
            let ok = (e.hdr == [0xaa; HDR_MAX] && e.hdr_len == 42 && e.juniper)
                || (e.hdr == [0xbb; HDR_MAX] && e.hdr_len == 50 && !e.juniper);
            assert!(ok, "torn entry");
        }
        stop.store(true, Ordering::Relaxed);
        w.join().unwrap();
    }

    /// Opens strictly (a gone owner is an error) and returns the region error, after
    /// checking that its message names the region kind and the path.
    fn strict_open_err(dir: &Path) -> shm::RegionError {
        let e = MirrorReader::open_with(dir, &OpenOptions::new()).err().expect("must fail");
        let s = e.to_string();
        let path = dir.join(MIRROR_FILE_NAME);
        assert!(s.contains("mirror region") && s.contains(&path.display().to_string()), "{s}");
        assert_eq!(e.kind(), "mirror region");
        e
    }

    fn patch(path: &Path, off: usize, bytes: &[u8]) {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        f.seek(SeekFrom::Start(off as u64)).unwrap();
        f.write_all(bytes).unwrap();
    }

    #[test]
    fn open_not_running() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(strict_open_err(dir.path()), shm::RegionError::NotRunning { .. }));
    }

    #[test]
    fn open_wrong_magic() {
        let dir = tempfile::tempdir().unwrap();
        let region = MirrorRegion::create(dir.path(), 2, Ipv4Addr::new(10, 0, 0, 1)).unwrap();
        patch(region.path(), 0, b"NOTMAGIC");
        let e = strict_open_err(dir.path());
        let bad = u64::from_le_bytes(*b"NOTMAGIC");
        assert!(matches!(e, shm::RegionError::BadMagic { found, expected: MIRROR_MAGIC, .. } if found == bad), "{e:?}");
    }

    #[test]
    fn open_wrong_version() {
        let dir = tempfile::tempdir().unwrap();
        let region = MirrorRegion::create(dir.path(), 2, Ipv4Addr::new(10, 0, 0, 1)).unwrap();
        patch(region.path(), offset_of!(RegionHeader, layout_version), &77u32.to_ne_bytes());
        let e = strict_open_err(dir.path());
        assert!(matches!(e, shm::RegionError::BadVersion { found: 77, expected: MIRROR_LAYOUT_VERSION, .. }), "{e:?}");
    }

    #[test]
    fn open_short_file() {
        let dir = tempfile::tempdir().unwrap();
        let region = MirrorRegion::create(dir.path(), 2, Ipv4Addr::new(10, 0, 0, 1)).unwrap();
        std::fs::OpenOptions::new().write(true).open(region.path()).unwrap().set_len(100).unwrap();
        let e = strict_open_err(dir.path());
        assert!(matches!(e, shm::RegionError::ShortFile { what: "header", found: 100, needed: 256, .. }), "{e:?}");
    }

    fn continued_notes(c: &Continuation) -> Vec<String> {
        match &c.outcome {
            Continued::Continued { notes } => notes.clone(),
            other => panic!("expected Continued, got {other:?}"),
        }
    }

    #[test]
    fn counters_continue_by_analyzer_name_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let ip = Ipv4Addr::new(10, 0, 0, 1);
        let (first, c) = MirrorRegion::create_continuing(dir.path(), 2, ip).unwrap();
        assert_eq!((&c.outcome, c.line()), (&Continued::First, None));
        first.write_slot(3, &entry("an-a"));
        first.write_slot(7, &entry("an-b"));
        first.write_slot(9, &entry("an-late"));
        {
            let (l0, l1) = (first.lcore(0).unwrap(), first.lcore(1).unwrap());
            l0.sent(3, CopyKind::Flow, 100);
            l1.sent(3, CopyKind::Flow, 60);
            l1.lost(3, CopyKind::Flow, DropReason::MirrorNoNh);
            l1.lost(3, CopyKind::Interface, DropReason::MirrorTxFull);
            l0.sent(7, CopyKind::Flow, 10);
            l0.sent(9, CopyKind::Flow, 5);
        }
        let before = |i| [first.stats(i, None), first.stats(i, Some(0)), first.stats(i, Some(1))];
        let (a, b, late) = (before(3), before(7), before(9));
        // The previous owner (this process) is alive: a takeover after its lcores stopped.
        let (second, c) = MirrorRegion::create_continuing(dir.path(), 2, ip).unwrap();
        assert_eq!(continued_notes(&c), Vec::<String>::new());
        let shown = dir.path().join(MIRROR_FILE_NAME).display().to_string();
        assert_eq!(c.line().unwrap(), format!("mirror region {shown}: continuing counters from the previous run"));
        let reader = MirrorReader::open(dir.path()).unwrap();
        assert_eq!((reader.generation(), reader.entries().len()), (2, 0), "the slots are the control path's");
        // The analyzers come back, "an-b" at another index, and a new one.
        second.write_slot(3, &entry("an-a"));
        second.write_slot(0, &entry("an-b"));
        second.write_slot(5, &entry("an-new"));
        let now = |i| [reader.stats(i, None), reader.stats(i, Some(0)), reader.stats(i, Some(1))];
        assert_eq!(now(3), a, "summed and per lcore");
        assert_eq!(now(0), b, "by name, wherever the analyzer is now");
        assert_eq!((now(5)[0], now(7)[0]), (EntryStats::default(), EntryStats::default()));
        // Counters keep growing from there; a carried name claimed after the lcores took
        // their handles starts at zero (the counters have their one writer each by then).
        let l1 = second.lcore(1).unwrap();
        l1.sent(3, CopyKind::Flow, 40);
        let grown = EntryStats {
            packets: a[0].packets + 1,
            bytes: a[0].bytes + 40,
            flow_packets: a[0].flow_packets + 1,
            flow_bytes: a[0].flow_bytes + 40,
            ..a[0]
        };
        assert_eq!(reader.stats(3, None), grown);
        assert_eq!(a[0].flow_lost.get(DropReason::MirrorNoNh), 1, "lost copies by reason are carried too");
        second.write_slot(9, &entry("an-late"));
        assert_eq!(reader.stats(9, None), EntryStats::default());
        assert_ne!(late[0], EntryStats::default());
        // Writing the same name again claims nothing twice.
        second.write_slot(0, &entry("an-b"));
        assert_eq!(reader.stats(0, None), b[0]);
    }

    #[test]
    fn another_lcore_count_sums_mirror_counters_into_lcore_0() {
        let dir = tempfile::tempdir().unwrap();
        let ip = Ipv4Addr::new(10, 0, 0, 1);
        let (first, _) = MirrorRegion::create_continuing(dir.path(), 3, ip).unwrap();
        first.write_slot(1, &entry("an-a"));
        for c in 0..3 {
            let l = first.lcore(c).unwrap();
            l.sent(1, CopyKind::Flow, 10 * (c as u64 + 1));
            l.lost(1, CopyKind::Interface, DropReason::MirrorCloneFail);
        }
        let sum = first.stats(1, None);
        let (second, c) = MirrorRegion::create_continuing(dir.path(), 2, ip).unwrap();
        assert_eq!(
            continued_notes(&c),
            ["3 forwarding lcores before, 2 now: the previous per-lcore counters are summed into lcore 0"]
        );
        second.write_slot(1, &entry("an-a"));
        assert_eq!((second.stats(1, None), second.stats(1, Some(0))), (sum, sum));
        assert_eq!(second.stats(1, Some(1)), EntryStats::default());
        let mut interface_lost = LossCounts::default();
        interface_lost.add(DropReason::MirrorCloneFail, 3);
        let want = EntryStats {
            packets: 3,
            bytes: 60,
            errors: 3,
            flow_packets: 3,
            flow_bytes: 60,
            interface_lost,
            ..EntryStats::default()
        };
        assert_eq!(sum, want);
    }

    #[test]
    fn a_half_written_slot_of_the_previous_run_is_not_carried() {
        let dir = tempfile::tempdir().unwrap();
        let ip = Ipv4Addr::new(10, 0, 0, 1);
        let (first, _) = MirrorRegion::create_continuing(dir.path(), 1, ip).unwrap();
        first.write_slot(2, &entry("an-a"));
        first.write_slot(4, &entry("an-b"));
        first.lcore(0).unwrap().sent(4, CopyKind::Flow, 9);
        first.lcore(0).unwrap().sent(2, CopyKind::Flow, 9);
        // Slot 4's writer died between its two seq stores.
        patch(first.path(), HEADER_SIZE + 4 * SLOT_SIZE, &7u64.to_ne_bytes());
        let (second, c) = MirrorRegion::create_continuing(dir.path(), 1, ip).unwrap();
        assert_eq!(continued_notes(&c), ["slot 4 half-written by the previous run: counters dropped"]);
        second.write_slot(2, &entry("an-a"));
        second.write_slot(4, &entry("an-b"));
        assert_eq!((second.stats(2, None).packets, second.stats(4, None).packets), (1, 0));
    }

    #[test]
    fn an_untrusted_previous_file_is_set_aside_and_counters_start_at_zero() {
        let dir = tempfile::tempdir().unwrap();
        let ip = Ipv4Addr::new(10, 0, 0, 1);
        let path = dir.path().join(MIRROR_FILE_NAME);
        let kept = dir.path().join("mirror.old");
        let setup = || {
            let (r, _) = MirrorRegion::create_continuing(dir.path(), 1, ip).unwrap();
            r.write_slot(0, &entry("an-a"));
            r.lcore(0).unwrap().sent(0, CopyKind::Flow, 5);
        };
        setup();
        patch(&path, offset_of!(RegionHeader, layout_version), &(MIRROR_LAYOUT_VERSION + 1).to_ne_bytes());
        let old = std::fs::read(&path).unwrap();
        let (region, c) = MirrorRegion::create_continuing(dir.path(), 1, ip).unwrap();
        assert!(c.is_warning());
        assert_eq!(
            c.line().unwrap(),
            format!(
                "{}: mirror region layout version {} (expected {MIRROR_LAYOUT_VERSION}): the reader and the vRouter \
                 come from different builds; kept it at {} and created the region fresh",
                path.display(),
                MIRROR_LAYOUT_VERSION + 1,
                kept.display()
            )
        );
        assert_eq!(std::fs::read(&kept).unwrap(), old);
        region.write_slot(0, &entry("an-a"));
        assert_eq!(region.stats(0, None), EntryStats::default());
        drop(region);
        // A truncated file.
        setup();
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(4096).unwrap();
        let (region, c) = MirrorRegion::create_continuing(dir.path(), 1, ip).unwrap();
        let line = c.line().unwrap();
        assert!(
            line.starts_with(&format!("{}: mirror region file is 4096 bytes, shorter than", path.display())),
            "{line}"
        );
        assert_eq!(std::fs::metadata(&kept).unwrap().len(), 4096);
        region.write_slot(0, &entry("an-a"));
        assert_eq!(region.stats(0, None), EntryStats::default());
    }

    #[test]
    fn open_stale_owner() {
        let dir = tempfile::tempdir().unwrap();
        let region = MirrorRegion::create(dir.path(), 2, Ipv4Addr::new(10, 0, 0, 1)).unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        patch(region.path(), offset_of!(RegionHeader, owner_pid), &dead.to_ne_bytes());
        let e = strict_open_err(dir.path());
        assert!(matches!(e, shm::RegionError::StaleOwner { pid, .. } if pid == dead), "{e:?}");
        // Post-mortem readers still open it.
        assert!(MirrorReader::open_with(dir.path(), &OpenOptions::new().allow_stale()).is_ok());
    }
}
