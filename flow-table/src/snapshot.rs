//! Consistent copies of entries ([`FlowSnapshot`]), table counters ([`TableStats`]) and the
//! decoded header ([`HeaderInfo`]); the read-side code shared by [`crate::FlowTable`] and
//! [`crate::FlowTableReader`]. Only `Relaxed` loads and fences here, so it is valid on a
//! read-only mapping.

use std::sync::atomic::{fence, Ordering::Acquire, Ordering::Relaxed};

use serde::Serialize;

use crate::defs::{flags, Action, Gen, NO_INDEX};
use crate::error::FlowTableError;
use crate::key::FlowKey;
use crate::layout::{ctl_flags, ctl_gen, EntryState, Region, BUCKET_WIDTH};

/// How many times a snapshot retries a read that raced with a writer before giving up
/// with [`FlowTableError::Torn`].
pub const SNAPSHOT_ATTEMPTS: u32 = 64;

/// A consistent copy of one active entry: key, metadata and counters all belong to the
/// same occupant of the slot (same sequence number before and after the copy).
///
/// Counters are updated by the data plane without the sequence lock, so `bytes` and
/// `packets` may be one packet apart; they are never from another flow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FlowSnapshot {
    /// Flow index (the flow handle: main slot or overflow entry).
    pub index: u32,
    /// Generation id of this occupant of the slot.
    pub gen: Gen,
    /// The flow key (nexthop/VRF, addresses, protocol, ports).
    pub key: FlowKey,
    /// [`crate::flags`] bits.
    pub flags: u32,
    /// The verdict (`Hold` until the agent programs one).
    pub action: Action,
    /// `FLOW_DR_*` code (meaningful with `Action::Drop`).
    pub drop_reason: u8,
    /// Reverse flow index (when `RFLOW_VALID`).
    pub rflow: Option<u32>,
    /// RPF source nexthop (`S(nh)`).
    pub src_nh: u32,
    /// [`crate::tcp_flags`] bits.
    pub tcp_flags: u16,
    /// Timestamps in the data plane's clock (whatever `now` it passes).
    pub setup_time: u64,
    /// Last packet time, same clock as `setup_time`.
    pub last_seen: u64,
    /// Primary mirror index ([`crate::NO_MIRROR`] when none).
    pub mirror: u8,
    /// Secondary mirror index ([`crate::NO_MIRROR`] when none).
    pub sec_mirror: u8,
    /// Outer UDP source port for MPLSoUDP/VXLAN.
    pub underlay_sport: u16,
    /// Bytes of the flow, summed over the owner lcore's and the shared counters.
    pub bytes: u64,
    /// Packets of the flow, summed over the owner lcore's and the shared counters.
    pub packets: u64,
    /// Bytes of the copies made for the primary mirror.
    pub mirror_bytes: u64,
    /// Copies made for the primary mirror.
    pub mirror_packets: u64,
    /// Bytes of the copies made for the secondary mirror.
    pub sec_mirror_bytes: u64,
    /// Copies made for the secondary mirror.
    pub sec_mirror_packets: u64,
    /// What explains the packets of the flow that have no copy (mirror reconciliation).
    pub accounting: FlowAccounting,
    /// The key's flow hash (selects the bucket; its tag speeds up lookups).
    pub hash: u32,
    /// The bucket the key hashes to.
    pub bucket: u32,
    /// tf's `hentry_next_index`: for an overflow entry the next entry of its bucket chain,
    /// for the last main slot of a bucket the chain's first entry (`flow -l` prints the
    /// chain there as "Oflow entries"); `None` when there is none.
    pub overflow_next: Option<u32>,
}

/// The per-flow figures that explain, with the copies sent, every packet of a mirrored
/// flow: `packets = copies sent + lost + before_mirror + held_dropped` for each of its
/// mirrors (up to packets in flight while its mirroring changed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FlowAccounting {
    /// Copies due to the primary mirror that were not sent (the entry's and the drop
    /// table's `Mirror *` reasons say why).
    pub mirror_lost: u64,
    /// Copies due to the secondary mirror that were not sent.
    pub sec_mirror_lost: u64,
    /// Packets the flow had counted, and not offered for mirroring, when its mirroring was
    /// (last) turned on: a flow set up before the rule that mirrors it. 0 for a flow
    /// mirrored from its setup (its held packets are copied when released).
    pub before_mirror: u64,
    /// Packets of the flow dropped while it waited in HOLD (`Flow Queue Limit Exceeded`):
    /// counted on the flow, never released, so never copied.
    pub held_dropped: u64,
}

impl FlowSnapshot {
    /// This flow's share in the reconciliation of its primary mirror (or, when `secondary`,
    /// of its secondary one).
    pub fn mirror_share(&self, secondary: bool) -> vrouter_abi::mirror::FlowShare {
        let a = &self.accounting;
        let (sent_packets, sent_bytes, lost_packets) = if secondary {
            (self.sec_mirror_packets, self.sec_mirror_bytes, a.sec_mirror_lost)
        } else {
            (self.mirror_packets, self.mirror_bytes, a.mirror_lost)
        };
        vrouter_abi::mirror::FlowShare {
            packets: self.packets,
            bytes: self.bytes,
            sent_packets,
            sent_bytes,
            lost_packets,
            before_mirror_packets: a.before_mirror,
            held_dropped_packets: a.held_dropped,
        }
    }

    /// Whether this is an overflow entry (`index >= main_entries`).
    pub fn is_overflow(&self, main_entries: u32) -> bool {
        self.index >= main_entries
    }
}

/// Table counters (tf's `vr_flow_table_data` `ftable_*` fields).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TableStats {
    /// New flows created in HOLD by the data plane (`ftable_created`).
    pub created: u64,
    /// Flows created by the agent (`ftable_added`).
    pub added: u64,
    /// Flows delete-marked or evicted (`ftable_deleted`).
    pub deleted: u64,
    /// Updates of flows that already had an action (`ftable_changed`).
    pub changed: u64,
    /// HOLD -> action transitions (`ftable_processed`).
    pub processed: u64,
    /// Published, not delete-marked or evicted flows now in HOLD (`ftable_hold_entries`).
    pub hold_count: u64,
    /// Published flows whose slot is not yet reclaimed (`ftable_used_entries`).
    pub used_entries: u64,
    /// Overflow entries in use (`ftable_oflow_entries`).
    pub used_overflow_entries: u64,
    /// Inserts that found a concurrent insert of the same key and returned its entry
    /// instead (not a tf counter).
    pub insert_races_lost: u64,
    /// Main-table entries (buckets times bucket width).
    pub main_entries: u32,
    /// Overflow entries.
    pub overflow_entries: u32,
    /// Flows created per lcore (`ftable_hold_stat`); the last element counts threads that
    /// are not registered lcores.
    pub hold_stat: Vec<u64>,
}

/// What tells one table file from another: its creation time and its generation at the
/// path. Both are written once, when the file is created, and kept when a restarting
/// vRouter maps the same file again; a re-created table (even at the same path) has
/// another identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct TableIdentity {
    /// Creation time of the file, Unix nanoseconds (the region header's `created_unix_ns`).
    pub created_unix_ns: u64,
    /// The file's generation at its path (the region header's `generation`).
    pub generation: u64,
}

impl std::fmt::Display for TableIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "generation {} created at {} ns", self.generation, self.created_unix_ns)
    }
}

/// The header, decoded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HeaderInfo {
    /// Layout version the file was written with.
    pub layout_version: u32,
    /// Bytes per entry (128).
    pub entry_size: u32,
    /// Main entries per bucket.
    pub bucket_width: u32,
    /// Main-table entries.
    pub main_entries: u32,
    /// Overflow entries.
    pub overflow_entries: u32,
    /// Hash buckets (`main_entries / bucket_width`).
    pub n_buckets: u32,
    /// Lcore blocks in the file (lcores that may register).
    pub max_lcores: u32,
    /// This file's generation (bumped on every re-creation at the same path).
    pub generation: u64,
    /// Pid of the process that created the table.
    pub creator_pid: u32,
    /// The creator's start time, clock ticks since boot (with the pid, tells a reused pid).
    pub creator_start_ticks: u64,
    /// Creation time, Unix nanoseconds.
    pub created_unix_ns: u64,
    /// Bytes the layout uses.
    pub layout_size: u64,
    /// Bytes mapped (the file length).
    pub file_size: u64,
}

pub(crate) fn header_info(r: &Region, file_size: u64) -> HeaderInfo {
    let h = r.header();
    HeaderInfo {
        layout_version: h.region.layout_version(),
        entry_size: h.entry_size.load(Relaxed),
        bucket_width: h.bucket_width.load(Relaxed),
        main_entries: h.main_entries.load(Relaxed),
        overflow_entries: h.overflow_entries.load(Relaxed),
        n_buckets: h.n_buckets.load(Relaxed),
        max_lcores: h.max_lcores.load(Relaxed),
        generation: h.region.generation(),
        creator_pid: h.region.owner_pid(),
        creator_start_ticks: h.region.owner_start_ticks(),
        created_unix_ns: h.region.created_unix_ns(),
        layout_size: h.region.layout_size(),
        file_size,
    }
}

pub(crate) fn table_stats(r: &Region) -> TableStats {
    let l = r.layout();
    let mut s = TableStats { main_entries: l.main_entries, overflow_entries: l.overflow_entries, ..Default::default() };
    let (mut hold, mut used, mut oflow) = (0u64, 0u64, 0u64);
    for i in 0..=l.max_lcores as usize {
        let b = r.lcore(i);
        let created = b.created.load(Relaxed);
        s.created = s.created.wrapping_add(created);
        s.added = s.added.wrapping_add(b.added.load(Relaxed));
        s.deleted = s.deleted.wrapping_add(b.deleted.load(Relaxed));
        s.changed = s.changed.wrapping_add(b.changed.load(Relaxed));
        s.processed = s.processed.wrapping_add(b.processed.load(Relaxed));
        s.insert_races_lost = s.insert_races_lost.wrapping_add(b.races_lost.load(Relaxed));
        hold = hold.wrapping_add(b.hold_delta.load(Relaxed));
        used = used.wrapping_add(b.used_delta.load(Relaxed));
        oflow = oflow.wrapping_add(b.oflow_delta.load(Relaxed));
        s.hold_stat.push(created);
    }
    // The gauges are sums of wrapping deltas; a read racing with updates can be off by the
    // updates in flight (never negative in steady state, clamp just in case).
    s.hold_count = (hold as i64).max(0) as u64;
    s.used_entries = (used as i64).max(0) as u64;
    s.used_overflow_entries = (oflow as i64).max(0) as u64;
    s
}

/// The `hentry_next_index` of entry `idx` (see [`FlowSnapshot::overflow_next`]).
pub(crate) fn overflow_next(r: &Region, idx: u32) -> Option<u32> {
    let l = r.layout();
    let n = if idx >= l.main_entries {
        r.entry(idx).onext.load(Relaxed)
    } else if idx as usize % BUCKET_WIDTH == BUCKET_WIDTH - 1 {
        r.bucket(idx / BUCKET_WIDTH as u32).chain.load(Relaxed)
    } else {
        NO_INDEX
    };
    (n != NO_INDEX && n < l.capacity()).then_some(n)
}

/// The overflow chain hanging off entry `idx` (see [`FlowSnapshot::overflow_next`]),
/// bounded by the overflow capacity (a longer walk means a cycle: a torn read of a chain
/// being relinked; the walk stops there).
pub(crate) fn overflow_chain(r: &Region, idx: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut n = overflow_next(r, idx);
    while let Some(i) = n {
        if i < r.layout().main_entries || out.len() > r.layout().overflow_entries as usize {
            break;
        }
        out.push(i);
        n = overflow_next(r, i);
    }
    out
}

/// A consistent copy of entry `idx` (`idx < capacity`, checked by the caller): `None` if
/// the entry is not active. Seqlock read: sequence (even), fields, fence, sequence again;
/// retried while a writer is active or the sequence moved.
pub(crate) fn read_snapshot(r: &Region, idx: u32) -> Result<Option<FlowSnapshot>, FlowTableError> {
    let e = r.entry(idx);
    let m = r.mirror(idx);
    for attempt in 0..SNAPSHOT_ATTEMPTS {
        if attempt > 8 {
            std::thread::yield_now();
        }
        let s1 = e.seq.load(Relaxed);
        fence(Acquire);
        if s1 & 1 != 0 {
            std::hint::spin_loop();
            continue;
        }
        let c1 = e.ctl.load(Relaxed);
        if ctl_flags(c1) & flags::ACTIVE == 0 {
            fence(Acquire);
            if e.seq.load(Relaxed) == s1 {
                return Ok(None);
            }
            continue;
        }
        let words = e.key_words();
        let rflow = e.rflow.load(Relaxed);
        let src_nh = e.src_nh.load(Relaxed);
        let mirror = e.mirror.load(Relaxed);
        let tcp_flags = e.tcp_flags.load(Relaxed);
        let setup_time = e.setup_time.load(Relaxed);
        let last_seen = e.last_seen.load(Relaxed);
        let hash = e.hash.load(Relaxed);
        let packets = e.packets.load(Relaxed).wrapping_add(m.shared_packets.load(Relaxed));
        let bytes = e.bytes.load(Relaxed).wrapping_add(m.shared_bytes.load(Relaxed));
        let mirror_bytes = m.mirror_bytes.load(Relaxed);
        let mirror_packets = m.mirror_packets.load(Relaxed);
        let sec_mirror_bytes = m.sec_mirror_bytes.load(Relaxed);
        let sec_mirror_packets = m.sec_mirror_packets.load(Relaxed);
        let accounting = FlowAccounting {
            mirror_lost: m.mirror_lost.load(Relaxed),
            sec_mirror_lost: m.sec_mirror_lost.load(Relaxed),
            before_mirror: m.before_mirror.load(Relaxed),
            held_dropped: m.held_dropped.load(Relaxed),
        };
        let onext = overflow_next(r, idx);
        fence(Acquire);
        let s2 = e.seq.load(Relaxed);
        let c2 = e.ctl.load(Relaxed);
        if s1 != s2 || ctl_gen(c1) != ctl_gen(c2) || ctl_flags(c2) & flags::ACTIVE == 0 {
            continue;
        }
        let Some(key) = FlowKey::from_words(words) else { continue };
        let st = EntryState::from_ctl(c2);
        return Ok(Some(FlowSnapshot {
            index: idx,
            gen: st.gen,
            key,
            flags: st.flags,
            action: st.action(),
            drop_reason: st.drop_reason,
            rflow: (st.flags & flags::RFLOW_VALID != 0 && rflow != NO_INDEX).then_some(rflow),
            src_nh,
            tcp_flags,
            setup_time,
            last_seen,
            mirror: mirror as u8,
            sec_mirror: (mirror >> 8) as u8,
            underlay_sport: (mirror >> 16) as u16,
            bytes,
            packets,
            mirror_bytes,
            mirror_packets,
            sec_mirror_bytes,
            sec_mirror_packets,
            accounting,
            hash,
            bucket: r.bucket_of(hash),
            overflow_next: onext,
        }));
    }
    Err(FlowTableError::Torn { index: idx, attempts: SNAPSHOT_ATTEMPTS })
}

/// A consistent copy of the key and control word of entry `idx` (`idx < capacity`), the
/// seqlock read of [`read_snapshot`] without the counters: two entry lines, not the side
/// block (a cold line for a flow that was never mirrored), for the agent's setup path.
pub(crate) fn read_key_state(r: &Region, idx: u32) -> Result<Option<(FlowKey, EntryState)>, FlowTableError> {
    let e = r.entry(idx);
    for attempt in 0..SNAPSHOT_ATTEMPTS {
        if attempt > 8 {
            std::thread::yield_now();
        }
        let s1 = e.seq.load(Relaxed);
        fence(Acquire);
        if s1 & 1 != 0 {
            std::hint::spin_loop();
            continue;
        }
        let c1 = e.ctl.load(Relaxed);
        let words = e.key_words();
        fence(Acquire);
        let s2 = e.seq.load(Relaxed);
        let c2 = e.ctl.load(Relaxed);
        if s1 != s2 || c1 != c2 {
            continue;
        }
        if ctl_flags(c2) & flags::ACTIVE == 0 {
            return Ok(None);
        }
        let Some(key) = FlowKey::from_words(words) else { continue };
        return Ok(Some((key, EntryState::from_ctl(c2))));
    }
    Err(FlowTableError::Torn { index: idx, attempts: SNAPSHOT_ATTEMPTS })
}

/// Iterator over the active entries of a region, as snapshots. Entries that stay torn
/// for [`SNAPSHOT_ATTEMPTS`] reads are skipped (counted in `torn`).
pub(crate) struct ActiveIter<'a> {
    pub region: &'a Region,
    pub next: u32,
    pub torn: u64,
}

impl Iterator for ActiveIter<'_> {
    type Item = FlowSnapshot;

    fn next(&mut self) -> Option<FlowSnapshot> {
        let cap = self.region.layout().capacity();
        while self.next < cap {
            let i = self.next;
            self.next += 1;
            // Cheap pre-check: most slots of a large table are empty.
            if self.region.entry(i).ctl.load(Relaxed) & u64::from(flags::ACTIVE) == 0 {
                continue;
            }
            match read_snapshot(self.region, i) {
                Ok(Some(s)) => return Some(s),
                Ok(None) => {}
                Err(_) => self.torn += 1,
            }
        }
        None
    }
}
