//! The `repr(C)` structs of the flow-table file, their size/offset assertions, the
//! [`Layout`] arithmetic and [`Region`], the one place that turns offsets into references.
//!
//! Everything in the file is an atomic integer (static header fields included), so a
//! reader in another process can read any of it with `Relaxed` loads, and nothing relies
//! on plain reads of memory another process may be writing. There are no pointers: links
//! are entry indices.

use std::mem::{align_of, offset_of, size_of};
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, Ordering::Relaxed};

use shm::{Bytes, Pod, RegionHeader, RegionSpec};

use crate::defs::{Action, Gen, NO_INDEX};
use crate::key::{FlowKey, KEY_WORDS};

pub(crate) const CACHE_LINE: usize = 64;
const PAGE: usize = 4096;

/// `magic` of a complete flow-table file ("vRFlowT1" in memory order); written last.
pub const MAGIC: u64 = u64::from_le_bytes(*b"vRFlowT1");
/// Bumped whenever any shared struct changes (3: the common [`RegionHeader`] prefix; 4: the
/// entry's `origin` word, so a restart knows each flow's ingress vif and direction; 5: the
/// mirror reconciliation counters of [`MirrorStats`]).
pub const LAYOUT_VERSION: u32 = 5;
/// Main-table slots per bucket; one bucket's slot words fill half a cache line.
pub const BUCKET_WIDTH: usize = 8;
/// Upper bound on `max_lcores`: the bound every region shares, [`vrouter_abi::MAX_LCORES`]
/// (tf's `VR_FLOW_MAX_CPUS` is 128; the layout only depends on the `max_lcores` in use).
pub const MAX_LCORES: u32 = vrouter_abi::MAX_LCORES as u32;
/// Upper bound on main + overflow entries (keeps every index below [`NO_INDEX`] and the
/// file below 256 GiB).
pub const MAX_ENTRIES: u32 = 1 << 30;

/// What identifies a flow-table file of this build (see [`shm::open`]).
pub(crate) const SPEC: RegionSpec = RegionSpec {
    kind: "flow table",
    magic: MAGIC,
    layout_version: LAYOUT_VERSION,
    header_size: HEADER_SIZE,
    denied_hint: shm::WORLD_READABLE_HINT,
};

const fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

// ---------------------------------------------------------------------------------------
// Slot words: the state of one slot (main slots: in the bucket line; overflow entries: in
// the entry's `ostate`). Bits 0..8 the state, bits 16..32 the hash tag.

pub(crate) const ST_FREE: u32 = 0;
/// Being initialized by the thread that claimed it (key not yet readable).
pub(crate) const ST_CLAIMED: u32 = 1;
/// Initialized, its inserter is checking for a concurrent insert of the same key.
pub(crate) const ST_PENDING: u32 = 2;
/// Published: lookups match it.
pub(crate) const ST_VALID: u32 = 3;
/// Delete-marked or evicted: lookups skip it; reclaimed after a grace period.
pub(crate) const ST_DEAD: u32 = 4;
pub(crate) const ST_MASK: u32 = 0xff;

#[inline(always)]
pub(crate) fn tag_of(hash: u32) -> u32 {
    hash & 0xffff
}

#[inline(always)]
pub(crate) fn slot_word(tag: u32, state: u32) -> u32 {
    (tag << 16) | state
}

#[inline(always)]
pub(crate) fn word_state(w: u32) -> u32 {
    w & ST_MASK
}

#[inline(always)]
pub(crate) fn word_tag(w: u32) -> u32 {
    w >> 16
}

// ---------------------------------------------------------------------------------------
// The entry control word: flags (32 bits) | action (8) | drop reason (8) | gen (16).

#[inline(always)]
pub(crate) fn make_ctl(flags: u32, action: u8, drop_reason: u8, gen: Gen) -> u64 {
    u64::from(flags) | (u64::from(action) << 32) | (u64::from(drop_reason) << 40) | (u64::from(gen) << 48)
}

#[inline(always)]
pub(crate) fn ctl_flags(c: u64) -> u32 {
    c as u32
}

#[inline(always)]
pub(crate) fn ctl_action(c: u64) -> u8 {
    (c >> 32) as u8
}

#[inline(always)]
pub(crate) fn ctl_drop_reason(c: u64) -> u8 {
    (c >> 40) as u8
}

#[inline(always)]
pub(crate) fn ctl_gen(c: u64) -> Gen {
    (c >> 48) as Gen
}

/// `mirror` word: primary mirror (8) | secondary mirror (8) | underlay UDP source port (16).
#[inline(always)]
pub(crate) fn make_mirror_word(mirror: u8, sec_mirror: u8, sport: u16) -> u32 {
    u32::from(mirror) | (u32::from(sec_mirror) << 8) | (u32::from(sport) << 16)
}

// ---------------------------------------------------------------------------------------

/// The file header (512 bytes). Line 0 is the common [`RegionHeader`] prefix (magic,
/// version, sizes, generation, owner pid and start time, creation time) and line 1 this
/// table's sizes and offsets, both written once by the creator, `magic` last; line 2 holds
/// the grace-period token (read by every lcore every burst, written by reclaim only); line 3
/// the overflow allocator (written by inserts that overflow); line 4 the rest of the static
/// fields.
#[repr(C, align(64))]
pub(crate) struct Header {
    pub region: RegionHeader,
    // line 1
    pub entry_size: AtomicU32,
    pub mirror_stats_size: AtomicU32,
    pub bucket_size: AtomicU32,
    pub bucket_width: AtomicU32,
    pub main_entries: AtomicU32,
    pub overflow_entries: AtomicU32,
    pub n_buckets: AtomicU32,
    pub max_lcores: AtomicU32,
    pub lcore_offset: AtomicU64,
    pub bucket_offset: AtomicU64,
    pub entry_offset: AtomicU64,
    pub mirror_offset: AtomicU64,
    // line 2
    /// Grace-period token (starts at 1); see the crate docs, "Deletion and reuse".
    pub qs_token: AtomicU64,
    pub _pad2: [AtomicU64; 7],
    // line 3
    /// Free list of recycled overflow entries: `aba_count << 32 | head index`.
    pub oflow_free: AtomicU64,
    /// Overflow entries `0..oflow_bump` have been handed out at least once.
    pub oflow_bump: AtomicU32,
    pub _pad3: [AtomicU32; 13],
    // lines 4-7
    pub lcore_block_size: AtomicU32,
    pub _pad4: AtomicU32,
    pub _reserved: [AtomicU64; 31],
}

pub(crate) const HEADER_SIZE: usize = 512;
const _: () = assert!(size_of::<Header>() == HEADER_SIZE);
const _: () = assert!(offset_of!(Header, region) == 0);
const _: () = assert!(offset_of!(Header, entry_size) == 64);
const _: () = assert!(offset_of!(Header, mirror_stats_size) == 68);
const _: () = assert!(offset_of!(Header, bucket_size) == 72);
const _: () = assert!(offset_of!(Header, bucket_width) == 76);
const _: () = assert!(offset_of!(Header, main_entries) == 80);
const _: () = assert!(offset_of!(Header, overflow_entries) == 84);
const _: () = assert!(offset_of!(Header, n_buckets) == 88);
const _: () = assert!(offset_of!(Header, max_lcores) == 92);
const _: () = assert!(offset_of!(Header, lcore_offset) == 96);
const _: () = assert!(offset_of!(Header, bucket_offset) == 104);
const _: () = assert!(offset_of!(Header, entry_offset) == 112);
const _: () = assert!(offset_of!(Header, mirror_offset) == 120);
const _: () = assert!(offset_of!(Header, qs_token) == 128);
const _: () = assert!(offset_of!(Header, oflow_free) == 192);
const _: () = assert!(offset_of!(Header, oflow_bump) == 200);
const _: () = assert!(offset_of!(Header, lcore_block_size) == 256);
const _: () = assert!(offset_of!(Header, _reserved) == 264);

// SAFETY: repr(C), atomics only (the prefix included), no implicit padding (size and
// offsets asserted above), no pointers.
unsafe impl Pod for Header {}

/// Per-lcore block (128 bytes): the lcore's quiescent-state counter on its own line, then
/// table statistics it counted. Blocks `0..max_lcores` belong to lcores (the thread that
/// last called `quiescent(i)`); block `max_lcores` counts for every other thread.
#[repr(C, align(64))]
pub(crate) struct LcoreBlock {
    /// 0: offline (not counted by reclaim); otherwise the `qs_token` seen at its last
    /// quiescent point.
    pub qs: AtomicU64,
    /// Inserts that lost a race to a concurrent insert of the same key.
    pub races_lost: AtomicU64,
    pub _pad0: [AtomicU64; 6],
    // line 1: statistics (tf's ftable_* counters). Gauges are kept as wrapping deltas
    // whose sum over all blocks is the gauge.
    /// New HOLD flows created by the data plane (tf `ftable_created`, per-CPU hold stat).
    pub created: AtomicU64,
    /// Flows created by the agent (`create_reverse`; tf `ftable_added`).
    pub added: AtomicU64,
    pub deleted: AtomicU64,
    pub changed: AtomicU64,
    /// HOLD -> action transitions (tf `ftable_processed`).
    pub processed: AtomicU64,
    pub hold_delta: AtomicU64,
    pub used_delta: AtomicU64,
    pub oflow_delta: AtomicU64,
}

pub(crate) const LCORE_BLOCK_SIZE: usize = 128;
const _: () = assert!(size_of::<LcoreBlock>() == LCORE_BLOCK_SIZE);
const _: () = assert!(offset_of!(LcoreBlock, qs) == 0);
const _: () = assert!(offset_of!(LcoreBlock, races_lost) == 8);
const _: () = assert!(offset_of!(LcoreBlock, created) == 64);
const _: () = assert!(offset_of!(LcoreBlock, oflow_delta) == 120);
// SAFETY: repr(C), atomics only, no implicit padding (size asserted), no pointers.
unsafe impl Pod for LcoreBlock {}

/// One hash bucket (64 bytes): the slot words of its [`BUCKET_WIDTH`] main entries (state
/// and 16-bit hash tag, so a lookup touches only the entries whose tag matches), the head
/// of its overflow chain, and the insert ticket counter used to settle racing inserts.
#[repr(C, align(64))]
pub(crate) struct Bucket {
    pub slots: [AtomicU32; BUCKET_WIDTH],
    /// First overflow entry of this bucket's chain, or [`NO_INDEX`].
    pub chain: AtomicU32,
    pub ticket: AtomicU32,
    pub _pad: [AtomicU32; 14 - BUCKET_WIDTH],
}

pub(crate) const BUCKET_SIZE: usize = 64;
const _: () = assert!(size_of::<Bucket>() == BUCKET_SIZE);
const _: () = assert!(offset_of!(Bucket, chain) == 4 * BUCKET_WIDTH);
const _: () = assert!(offset_of!(Bucket, ticket) == 4 * BUCKET_WIDTH + 4);
// SAFETY: repr(C), atomics only, no implicit padding (size asserted), no pointers (the
// chain is an entry index).
unsafe impl Pod for Bucket {}

/// One flow entry (128 bytes, two cache lines, 128-aligned in the file).
///
/// Line 0 is what a lookup and the packet counter touch: key, control word (flags,
/// action, drop reason, generation: one load gives a consistent set), packet count.
/// Line 1 has the rest of the per-packet state (bytes, last-seen, reverse flow, RPF
/// nexthop, mirror ids, underlay source port, TCP bits) and the bookkeeping words
/// (sequence, hash, insert ticket, overflow slot state and chain link).
///
/// Every field is an atomic; the accessors below are `Relaxed` loads (valid on a
/// read-only mapping). The owner lcore updates `packets`/`bytes` with plain load+store
/// (single writer: no locked instruction on the hit path); anyone else `fetch_add`s the
/// side block's shared pair.
#[repr(C, align(64))]
pub struct FlowEntry {
    pub(crate) key: [AtomicU64; KEY_WORDS],
    pub(crate) ctl: AtomicU64,
    pub(crate) packets: AtomicU64,
    // line 1
    pub(crate) bytes: AtomicU64,
    pub(crate) last_seen: AtomicU64,
    pub(crate) setup_time: AtomicU64,
    pub(crate) rflow: AtomicU32,
    pub(crate) src_nh: AtomicU32,
    pub(crate) mirror: AtomicU32,
    pub(crate) tcp_flags: AtomicU16,
    /// Forwarding lcore that owns `packets`/`bytes` (lcore + 1; 0 = none yet): only the
    /// owner writes them, with plain load+store; other writers add to the side block's
    /// `shared_packets`/`shared_bytes` atomically. Readers sum both.
    pub(crate) owner: AtomicU16,
    /// Sequence lock for multi-word changes: odd while a writer changes the entry.
    pub(crate) seq: AtomicU32,
    pub(crate) hash: AtomicU32,
    pub(crate) ticket: AtomicU32,
    /// Slot word of an overflow entry (unused for main entries, whose words live in the
    /// bucket line).
    pub(crate) ostate: AtomicU32,
    /// Next overflow entry in the bucket chain (or in the free list while free).
    pub(crate) onext: AtomicU32,
    /// What the agent knows of the flow's origin and keeps across a restart: bit 31 set,
    /// bit 16 the flow is the reverse of a pair the agent set up, bits 0..16 the vif its
    /// forward direction's first packet came in on (0: not set yet). Agent-written only.
    pub(crate) origin: AtomicU32,
}

pub(crate) const ENTRY_SIZE: usize = 128;
const _: () = assert!(size_of::<FlowEntry>() == ENTRY_SIZE);
const _: () = assert!(align_of::<FlowEntry>() == CACHE_LINE);
const _: () = assert!(offset_of!(FlowEntry, key) == 0);
const _: () = assert!(offset_of!(FlowEntry, ctl) == 48);
const _: () = assert!(offset_of!(FlowEntry, packets) == 56);
const _: () = assert!(offset_of!(FlowEntry, bytes) == 64);
const _: () = assert!(offset_of!(FlowEntry, last_seen) == 72);
const _: () = assert!(offset_of!(FlowEntry, setup_time) == 80);
const _: () = assert!(offset_of!(FlowEntry, rflow) == 88);
const _: () = assert!(offset_of!(FlowEntry, src_nh) == 92);
const _: () = assert!(offset_of!(FlowEntry, mirror) == 96);
const _: () = assert!(offset_of!(FlowEntry, tcp_flags) == 100);
const _: () = assert!(offset_of!(FlowEntry, owner) == 102);
const _: () = assert!(offset_of!(FlowEntry, seq) == 104);
const _: () = assert!(offset_of!(FlowEntry, hash) == 108);
const _: () = assert!(offset_of!(FlowEntry, ticket) == 112);
const _: () = assert!(offset_of!(FlowEntry, ostate) == 116);
const _: () = assert!(offset_of!(FlowEntry, onext) == 120);
const _: () = assert!(offset_of!(FlowEntry, origin) == 124);
// SAFETY: repr(C), atomics only, no implicit padding (every field's offset asserted, the
// last one ending at 128), no pointers (links are entry indices).
unsafe impl Pod for FlowEntry {}

/// Where a flow came from, as the agent recorded it in the entry (see
/// [`crate::FlowUpdate::origin`]): what a restarted agent needs to rebuild its own
/// per-flow state and re-evaluate the pair from its forward direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The vif the forward direction's first packet came in on.
    pub vif: u16,
    /// This entry is the reverse flow of the pair.
    pub reverse: bool,
}

const ORIGIN_SET: u32 = 1 << 31;
const ORIGIN_REVERSE: u32 = 1 << 16;

impl Origin {
    pub(crate) fn word(self) -> u32 {
        ORIGIN_SET | u32::from(self.vif) | if self.reverse { ORIGIN_REVERSE } else { 0 }
    }

    pub(crate) fn from_word(w: u32) -> Option<Origin> {
        (w & ORIGIN_SET != 0).then_some(Origin { vif: w as u16, reverse: w & ORIGIN_REVERSE != 0 })
    }
}

/// The decoded control word of an entry (one atomic load).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryState {
    /// [`crate::flags`] bits.
    pub flags: u32,
    /// Raw action byte; see [`EntryState::action`].
    pub action_raw: u8,
    /// `FLOW_DR_*` code (meaningful with `Action::Drop`).
    pub drop_reason: u8,
    /// Generation id: bumped each time the slot gets a new flow (a stale handle is refused).
    pub gen: Gen,
}

impl EntryState {
    #[inline(always)]
    pub(crate) fn from_ctl(c: u64) -> EntryState {
        EntryState { flags: ctl_flags(c), action_raw: ctl_action(c), drop_reason: ctl_drop_reason(c), gen: ctl_gen(c) }
    }

    /// The action (an unknown byte, which only a foreign writer could store, reads as Drop).
    #[inline(always)]
    pub fn action(&self) -> Action {
        Action::from_u8(self.action_raw).unwrap_or(Action::Drop)
    }

    /// Whether the entry holds a flow (`ACTIVE` flag).
    #[inline(always)]
    pub fn is_active(&self) -> bool {
        self.flags & crate::defs::flags::ACTIVE != 0
    }
}

impl FlowEntry {
    /// Flags, action, drop reason and generation, read together (one load).
    #[inline(always)]
    pub fn state(&self) -> EntryState {
        EntryState::from_ctl(self.ctl.load(Relaxed))
    }

    /// [`crate::flags`] bits (one load of the control word).
    #[inline(always)]
    pub fn flags(&self) -> u32 {
        ctl_flags(self.ctl.load(Relaxed))
    }

    /// The verdict the agent programmed (`Hold` until it has).
    #[inline(always)]
    pub fn action(&self) -> Action {
        self.state().action()
    }

    /// `FLOW_DR_*` code (meaningful with `Action::Drop`).
    #[inline(always)]
    pub fn drop_reason(&self) -> u8 {
        ctl_drop_reason(self.ctl.load(Relaxed))
    }

    /// Generation id of the slot's current occupant.
    #[inline(always)]
    pub fn gen(&self) -> Gen {
        ctl_gen(self.ctl.load(Relaxed))
    }

    /// Reverse flow index when `RFLOW_VALID` is set.
    #[inline(always)]
    pub fn rflow(&self) -> Option<u32> {
        let r = self.rflow.load(Relaxed);
        (self.flags() & crate::defs::flags::RFLOW_VALID != 0 && r != NO_INDEX).then_some(r)
    }

    /// RPF source nexthop (`S(nh)`) the agent set.
    #[inline(always)]
    pub fn src_nh(&self) -> u32 {
        self.src_nh.load(Relaxed)
    }

    /// Primary mirror index ([`crate::NO_MIRROR`] when none).
    #[inline(always)]
    pub fn mirror(&self) -> u8 {
        self.mirror.load(Relaxed) as u8
    }

    /// Secondary mirror index ([`crate::NO_MIRROR`] when none).
    #[inline(always)]
    pub fn sec_mirror(&self) -> u8 {
        (self.mirror.load(Relaxed) >> 8) as u8
    }

    /// Outer UDP source port for MPLSoUDP/VXLAN (defaults to `tunnel_source_port(hash)`).
    #[inline(always)]
    pub fn underlay_sport(&self) -> u16 {
        (self.mirror.load(Relaxed) >> 16) as u16
    }

    /// [`crate::tcp_flags`] bits the data plane has seen on this flow.
    #[inline(always)]
    pub fn tcp_flags(&self) -> u16 {
        self.tcp_flags.load(Relaxed)
    }

    /// The forwarding lcore that owns the entry's own packet/byte pair, if any has counted
    /// the flow yet through [`crate::FlowTable::account_as`].
    #[inline(always)]
    pub fn owner_lcore(&self) -> Option<usize> {
        match self.owner.load(Relaxed) {
            0 => None,
            o => Some(usize::from(o) - 1),
        }
    }

    /// The origin the agent recorded ([`crate::FlowUpdate::origin`]): the vif the
    /// forward direction's first packet came in on and whether this entry is the reverse
    /// flow of the pair. `None` until the agent set it up.
    #[inline(always)]
    pub fn origin(&self) -> Option<Origin> {
        Origin::from_word(self.origin.load(Relaxed))
    }

    /// Last packet time, Unix milliseconds (the data plane's coarse clock).
    #[inline(always)]
    pub fn last_seen(&self) -> u64 {
        self.last_seen.load(Relaxed)
    }

    /// Creation time, Unix milliseconds (the creator's `now`).
    #[inline(always)]
    pub fn setup_time(&self) -> u64 {
        self.setup_time.load(Relaxed)
    }

    /// The stored hash (bucket selection and tag).
    #[inline(always)]
    pub fn hash(&self) -> u32 {
        self.hash.load(Relaxed)
    }

    /// The stored key (not checked against concurrent reuse: use a snapshot for that).
    pub fn key(&self) -> Option<FlowKey> {
        FlowKey::from_words(self.key_words())
    }

    #[inline(always)]
    pub(crate) fn key_words(&self) -> [u64; KEY_WORDS] {
        std::array::from_fn(|i| self.key[i].load(Relaxed))
    }

    /// Compares the stored key with `w`, word by word (no early exit: six loads, one branch).
    #[inline(always)]
    pub(crate) fn key_eq(&self, w: &[u64; KEY_WORDS]) -> bool {
        let mut d = 0;
        for (i, wi) in w.iter().enumerate() {
            d |= self.key[i].load(Relaxed) ^ wi;
        }
        d == 0
    }
}

/// Side counters of one entry (80 bytes, a parallel array after the entries, 16-aligned
/// so no bytes/packets pair straddles a cache line): the mirror counters, which only
/// mirrored flows touch, the shared packet/byte counters, which only a lcore other
/// than the entry's owner touches (a flow whose packets arrive on two lcores), and what
/// mirror reconciliation needs besides the copies sent (copies lost, packets counted before
/// mirroring started, packets dropped while the flow was held), each written only when
/// that happens. All stay out of the hot entry lines.
#[repr(C, align(16))]
pub(crate) struct MirrorStats {
    pub mirror_bytes: AtomicU64,
    pub mirror_packets: AtomicU64,
    pub sec_mirror_bytes: AtomicU64,
    pub sec_mirror_packets: AtomicU64,
    /// Packets and bytes counted by lcores other than the owner (atomic adds).
    pub shared_packets: AtomicU64,
    pub shared_bytes: AtomicU64,
    /// Copies due to the primary / secondary mirror that were not sent (atomic adds).
    pub mirror_lost: AtomicU64,
    pub sec_mirror_lost: AtomicU64,
    /// Packets the flow had counted, not offered for mirroring, when its mirroring was
    /// (last) turned on: a flow set up before its mirroring rule (written by the agent).
    pub before_mirror: AtomicU64,
    /// Packets of the flow dropped while it waited in HOLD (hold queue full; atomic adds).
    pub held_dropped: AtomicU64,
}

pub(crate) const MIRROR_STATS_SIZE: usize = 80;
const _: () = assert!(size_of::<MirrorStats>() == MIRROR_STATS_SIZE);
const _: () = assert!(offset_of!(MirrorStats, sec_mirror_packets) == 24);
const _: () = assert!(offset_of!(MirrorStats, shared_packets) == 32);
const _: () = assert!(offset_of!(MirrorStats, shared_bytes) == 40);
const _: () = assert!(offset_of!(MirrorStats, mirror_lost) == 48);
const _: () = assert!(offset_of!(MirrorStats, held_dropped) == 72);
// SAFETY: repr(C), atomics only, no implicit padding (size asserted), no pointers.
unsafe impl Pod for MirrorStats {}

impl MirrorStats {
    /// Zeroes every counter (a slot being freed or repaired).
    pub fn clear(&self) {
        for c in [
            &self.mirror_bytes,
            &self.mirror_packets,
            &self.sec_mirror_bytes,
            &self.sec_mirror_packets,
            &self.shared_packets,
            &self.shared_bytes,
            &self.mirror_lost,
            &self.sec_mirror_lost,
            &self.before_mirror,
            &self.held_dropped,
        ] {
            c.store(0, Relaxed);
        }
    }
}

// ---------------------------------------------------------------------------------------

/// Sizes and offsets of a table. `main_entries` is a multiple of [`BUCKET_WIDTH`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    pub main_entries: u32,
    pub overflow_entries: u32,
    pub n_buckets: u32,
    pub max_lcores: u32,
    pub lcore_offset: usize,
    pub bucket_offset: usize,
    pub entry_offset: usize,
    pub mirror_offset: usize,
    pub layout_size: usize,
}

impl Layout {
    /// `None` if the sizes are out of range (`main_entries` not a positive multiple of
    /// [`BUCKET_WIDTH`], more than [`MAX_ENTRIES`] in all, `max_lcores` not in
    /// `1..=MAX_LCORES`).
    pub fn new(main_entries: u32, overflow_entries: u32, max_lcores: u32) -> Option<Layout> {
        let capacity = main_entries.checked_add(overflow_entries)?;
        if main_entries == 0
            || !(main_entries as usize).is_multiple_of(BUCKET_WIDTH)
            || capacity > MAX_ENTRIES
            || max_lcores == 0
            || max_lcores > MAX_LCORES
        {
            return None;
        }
        let n_buckets = main_entries / BUCKET_WIDTH as u32;
        let lcore_offset = HEADER_SIZE;
        let bucket_offset = round_up(lcore_offset + (max_lcores as usize + 1) * LCORE_BLOCK_SIZE, PAGE);
        let entry_offset = round_up(bucket_offset + n_buckets as usize * BUCKET_SIZE, PAGE);
        let mirror_offset = round_up(entry_offset + capacity as usize * ENTRY_SIZE, PAGE);
        let layout_size = round_up(mirror_offset + capacity as usize * MIRROR_STATS_SIZE, PAGE);
        Some(Layout {
            main_entries,
            overflow_entries,
            n_buckets,
            max_lcores,
            lcore_offset,
            bucket_offset,
            entry_offset,
            mirror_offset,
            layout_size,
        })
    }

    #[inline(always)]
    pub fn capacity(&self) -> u32 {
        self.main_entries + self.overflow_entries
    }
}

/// A checked view of a mapped table: base pointer + layout.
///
/// All offset arithmetic happens here. The layout was validated against the mapping once
/// (at creation, or by [`shm::open`] and the reader's header check), so the accessors index
/// it without per-access bounds checks: the hot-path contract is [`Region::at`]'s. Accessors hand out shared references to structs of
/// atomics only; nothing creates a `&[u8]` over the mapping. `Region` is `Copy` and does
/// not borrow the mapping: its owner ([`crate::FlowTable`], [`crate::FlowTableReader`])
/// keeps the mapping alive and only hands out references bounded by its own borrow.
#[derive(Clone, Copy)]
pub(crate) struct Region {
    base: *const u8,
    layout: Layout,
}

impl Region {
    /// # Safety
    /// `base` must point to a mapping of at least `len` bytes, page-aligned, that stays
    /// mapped (and is not truncated) for as long as references from this `Region` are
    /// used. `layout.layout_size <= len` is checked here.
    pub unsafe fn new(base: *const u8, len: usize, layout: Layout) -> Region {
        assert!(layout.layout_size <= len, "mapping shorter than the layout");
        assert!((base as usize).is_multiple_of(PAGE), "mapping not page aligned");
        Region { base, layout }
    }

    #[inline(always)]
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The `T` at `offset`, unchecked.
    ///
    /// # Safety
    /// `offset + size_of::<T>() <= layout.layout_size` and `offset` is a multiple of `T`'s
    /// alignment (the page-aligned base keeps the address aligned then).
    #[inline(always)]
    unsafe fn at<T: Pod>(&self, offset: usize) -> &T {
        // SAFETY: `new`'s contract keeps layout_size bytes at `base` mapped while the
        // Region is used; the caller keeps the T inside them and aligned; T is Pod.
        unsafe { Bytes::new(self.base, self.layout.layout_size).get_unchecked(offset) }
    }

    #[inline(always)]
    pub fn header(&self) -> &Header {
        // SAFETY: layout_size >= HEADER_SIZE (Layout::new), offset 0.
        unsafe { self.at(0) }
    }

    /// Lcore block `i` (`i <= max_lcores`; the last one is the shared "other threads" block).
    #[inline(always)]
    pub fn lcore(&self, i: usize) -> &LcoreBlock {
        assert!(i <= self.layout.max_lcores as usize);
        // SAFETY: i <= max_lcores, and Layout::new reserved (max_lcores + 1) blocks at
        // lcore_offset (64-aligned) inside layout_size.
        unsafe { self.at(self.layout.lcore_offset + i * LCORE_BLOCK_SIZE) }
    }

    /// The bucket a hash selects (multiply-shift range reduction: no division, uses the
    /// hash's high bits; the tag uses its low bits).
    #[inline(always)]
    pub fn bucket_of(&self, hash: u32) -> u32 {
        ((u64::from(hash) * u64::from(self.layout.n_buckets)) >> 32) as u32
    }

    #[inline(always)]
    pub fn bucket(&self, b: u32) -> &Bucket {
        debug_assert!(b < self.layout.n_buckets);
        let b = b.min(self.layout.n_buckets - 1) as usize;
        // SAFETY: b < n_buckets (clamped), buckets lie at bucket_offset (page-aligned) in
        // layout_size.
        unsafe { self.at(self.layout.bucket_offset + b * BUCKET_SIZE) }
    }

    #[inline(always)]
    pub fn bucket_ptr(&self, b: u32) -> *const u8 {
        // Only used for prefetching; wrapping arithmetic so a bad value cannot be UB.
        self.base.wrapping_add(self.layout.bucket_offset + b as usize * BUCKET_SIZE)
    }

    /// Entry `idx`; the caller has checked `idx < capacity`.
    #[inline(always)]
    pub fn entry(&self, idx: u32) -> &FlowEntry {
        debug_assert!(idx < self.layout.capacity());
        // SAFETY: callers pass idx < capacity (public entry points check it); entries
        // lie at entry_offset (page-aligned) in layout_size.
        unsafe { self.at(self.layout.entry_offset + idx as usize * ENTRY_SIZE) }
    }

    #[inline(always)]
    pub fn entry_ptr(&self, idx: u32) -> *const u8 {
        self.base.wrapping_add(self.layout.entry_offset + idx as usize * ENTRY_SIZE)
    }

    #[inline(always)]
    pub fn mirror(&self, idx: u32) -> &MirrorStats {
        debug_assert!(idx < self.layout.capacity());
        // SAFETY: as for `entry`, in the mirror array at mirror_offset (page-aligned,
        // 80-byte elements of 16-byte alignment).
        unsafe { self.at(self.layout.mirror_offset + idx as usize * MIRROR_STATS_SIZE) }
    }

    /// The slot word of entry `idx`: in its bucket line for a main entry, in the entry for
    /// an overflow entry.
    #[inline(always)]
    pub fn slot(&self, idx: u32) -> &AtomicU32 {
        if idx < self.layout.main_entries {
            &self.bucket(idx / BUCKET_WIDTH as u32).slots[idx as usize % BUCKET_WIDTH]
        } else {
            &self.entry(idx).ostate
        }
    }
}

#[inline(always)]
pub(crate) fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetch is a hint; it never faults, whatever the address.
    #[allow(unused_unsafe)]
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_offsets_are_aligned_and_ordered() {
        let l = Layout::new(1024, 208, 4).unwrap();
        assert_eq!(l.n_buckets, 128);
        assert_eq!(l.lcore_offset, HEADER_SIZE);
        assert!(l.bucket_offset >= HEADER_SIZE + 5 * LCORE_BLOCK_SIZE);
        assert_eq!(l.entry_offset % PAGE, 0);
        assert!(l.entry_offset >= l.bucket_offset + 128 * BUCKET_SIZE);
        assert!(l.mirror_offset >= l.entry_offset + 1232 * ENTRY_SIZE);
        assert!(l.layout_size >= l.mirror_offset + 1232 * MIRROR_STATS_SIZE);
    }

    #[test]
    fn layout_rejects_bad_sizes() {
        assert!(Layout::new(0, 0, 1).is_none());
        assert!(Layout::new(12, 0, 1).is_none());
        assert!(Layout::new(8, 0, 0).is_none());
        assert!(Layout::new(8, 0, MAX_LCORES + 1).is_none());
        assert!(Layout::new(MAX_ENTRIES, 1, 1).is_none());
        assert!(Layout::new(8, u32::MAX, 1).is_none());
    }

    #[test]
    fn control_word_round_trips() {
        let c = make_ctl(0x1_2345, 2, 0x17, 0xbeef);
        assert_eq!((ctl_flags(c), ctl_action(c), ctl_drop_reason(c), ctl_gen(c)), (0x1_2345, 2, 0x17, 0xbeef));
        let w = slot_word(0xabcd, ST_VALID);
        assert_eq!((word_tag(w), word_state(w)), (0xabcd, ST_VALID));
        assert_eq!(slot_word(0, ST_FREE), 0);
    }
}
