//! `<run_dir>/export-state`: the exporter's per-flow export state in a file, so that a
//! restarted vRouter that maps the same flow table again (SIGTERM, SIGKILL, a planned
//! takeover) goes on exporting where the previous process stopped: the first record of a
//! flow after the restart carries exactly the diff since the last record before it, with the
//! same flow UUID, no setup record is sent twice, and a flow deleted meanwhile still gets its
//! teardown record.
//!
//! # Why here and not in `vrouter-abi`
//!
//! No other process reads this file: its only reader is the next vRouter process on the same
//! run directory (`vrouter-abi` holds what tools and other processes share with a running
//! vRouter). It goes through the common region framework ([`shm::create`], [`shm::open`]) all
//! the same, for the checked header, the atomic creation and the layout version.
//!
//! # Layout (native endian, `repr(C)`, no pointers)
//!
//! ```text
//! 0     Header (256 bytes): shm::RegionHeader, capacity, slot size, slots offset, the
//!       identity of the flow table the state belongs to (creation time and generation,
//!       flow_table::TableIdentity), the exporter's cumulative counters
//! 256   Slot[capacity] (128 bytes each, by flow index)
//!         line 0, export progress: state (flags | entry generation << 16), reverse index,
//!                 setup time (ms), the last exported cumulative bytes, packets and the four
//!                 mirror counters
//!         line 1, the flow (written once per flow): key (6 words), verdict (action, drop
//!                 reason, mirror indices), underlay source port | reverse generation << 16,
//!                 reverse setup time
//! ```
//!
//! Line 1 is what the exporter read from the entry when it first saw the flow: a restarted
//! exporter builds the flow's records from it and the configuration exactly as before the
//! restart, also when the entry is gone by the time it starts (reclaimed by the agent, the
//! slot reused: the flow then gets its teardown record) or no longer shows the verdict (a
//! deleted entry's action is DROP and its mirrors are cleared).
//!
//! # Writing
//!
//! The exporter thread is the only writer: plain `Relaxed` stores of atomics, no
//! read-modify-write. A flow's slot is written whenever its in-memory state changes, *before*
//! the record that state describes is handed to the Sandesh session (see below):
//! - a flow's first write: `state` = 0, a `Release` fence, line 1, setup time, reverse and
//!   counters, then `state` (`Release`);
//! - later writes: the counters, then `state` (`Release`);
//! - a flow forgotten (its teardown record sent and its slot reclaimed, or it vanished):
//!   `state` = 0.
//!
//! A process killed in the middle of a write leaves the stores it made (the mapping is
//! shared): `state` = 0 in a first write means "no flow", and an interrupted later write
//! leaves each counter at its old or its new value, which (the record not being sent yet)
//! at worst loses part of that one record's diff, as below.
//!
//! # Start
//!
//! `load` opens the previous file read-only (also when its owner is gone) and checks its
//! layout, its capacity and its table identity against the flow table the vRouter runs with
//! now; `ExportState::create` then writes a new file (temporary name, renamed into place)
//! holding the slots the exporter restored, so a crash during the start leaves the previous
//! file or the complete new one. A file of another layout, or one that cannot be read, is
//! kept aside as `<path>.old`; a file of another flow table is simply replaced (its flows
//! are gone with their table).
//!
//! # Crashes and the collector
//!
//! The slot is written before the record is handed to the session. A process killed between
//! the two (or while the record waits in the session's buffer, which lives in memory) loses
//! that record: the collector's `flow_series` misses its diff, but its `flow_record`
//! aggregates stay exact, because every record carries the cumulative counters and the
//! collector keeps their maximum per flow UUID (UUIDs are stable across the restart), so the
//! flow's next record restores the totals. The other order (send, then write) would resend
//! the record's diff after such a crash, which `flow_series` would count twice whenever the
//! first copy had reached the collector; a lost diff is the lesser harm, and the collector
//! drops the diffs of a copy that adds nothing to a flow's cumulative counters (a record
//! resent whole), see `collector/src/store.rs`.
//!
//! The exporter's counters (records exported, sampled out, ...) are kept in the header too
//! (stored after each record and each tick) and continue across restarts; they may miss the
//! record in flight at a crash.

use std::mem::{offset_of, size_of};
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

use flow_table::{Action, FlowKey, Gen, TableIdentity, KEY_WORDS, NO_INDEX};
use shm::{CreateOptions, Mapped, Mismatch, OpenOptions, Pod, RegionError, RegionHeader, RegionSpec};

use super::export::{Counters, ExportCounters};

/// File name inside the run directory.
pub const STATE_FILE: &str = "export-state";
/// `b"VREXPS01"` as a little-endian u64.
pub const STATE_MAGIC: u64 = u64::from_le_bytes(*b"VREXPS01");
/// Layout version of the export-state file. A new version makes a restarted vRouter export
/// every flow afresh (new setup records, diffs from zero) unless it also reads the old one.
pub const STATE_LAYOUT_VERSION: u32 = 1;

const HEADER_SIZE: usize = 256;
const SLOT_SIZE: usize = 128;

/// The exporter's cumulative counters in the header.
#[repr(C)]
struct CounterBlock {
    setup_records: AtomicU64,
    periodic_records: AtomicU64,
    teardown_records: AtomicU64,
    records_exported: AtomicU64,
    records_sampled_out: AtomicU64,
    records_dropped: AtomicU64,
    torn_snapshots: AtomicU64,
    sweeps: AtomicU64,
    uves_queued: AtomicU64,
}

const _: () = assert!(size_of::<CounterBlock>() == 72);
const _: () = assert!(offset_of!(CounterBlock, records_exported) == 24);
const _: () = assert!(offset_of!(CounterBlock, uves_queued) == 64);

/// The file header: the common prefix, then fields written once before `magic`
/// (`capacity` .. `table_generation`), then the counters (written by the exporter).
#[repr(C, align(64))]
struct Header {
    region: RegionHeader,
    /// Slots (the flow table's capacity).
    capacity: u32,
    slot_size: u32,
    slots_offset: u64,
    /// Identity of the flow table this state belongs to.
    table_created_unix_ns: u64,
    table_generation: u64,
    counters: CounterBlock,
    _reserved: [u64; 11],
}

const _: () = assert!(size_of::<Header>() == HEADER_SIZE);
const _: () = assert!(offset_of!(Header, capacity) == 64);
const _: () = assert!(offset_of!(Header, slot_size) == 68);
const _: () = assert!(offset_of!(Header, slots_offset) == 72);
const _: () = assert!(offset_of!(Header, table_created_unix_ns) == 80);
const _: () = assert!(offset_of!(Header, table_generation) == 88);
const _: () = assert!(offset_of!(Header, counters) == 96);
const _: () = assert!(offset_of!(Header, _reserved) == 168);
// SAFETY: repr(C), integers and atomics only (the prefix included), no implicit padding
// (size and offsets asserted above), every bit pattern valid, no pointers.
unsafe impl Pod for Header {}

/// `state` flag: the slot holds a flow.
const TRACKED: u32 = 1;
/// `state` flag: a record of the flow survived sampling.
const EXPORTED: u32 = 2;
/// `state` flag: the flow's teardown record was produced (its entry still shows it deleted).
const TORN_DOWN: u32 = 4;
/// `state` flag: the flow is the forward flow of its pair.
const FORWARD: u32 = 8;

/// One flow's export state (two cache lines, see the module docs).
#[repr(C, align(64))]
struct Slot {
    /// Flags (low 16 bits) and the entry's generation (high 16 bits); 0: no flow.
    state: AtomicU32,
    /// Reverse flow index, [`NO_INDEX`] when none.
    rflow: AtomicU32,
    /// Setup time (the flow table's clock, ms).
    setup_ms: AtomicU64,
    /// Last exported cumulative bytes, packets, mirror bytes, mirror packets, secondary
    /// mirror bytes, secondary mirror packets.
    last: [AtomicU64; 6],
    /// The flow key's words ([`FlowKey::words`]).
    key: [AtomicU64; KEY_WORDS],
    /// Action code | drop reason << 8 | mirror index << 16 | secondary mirror index << 24.
    verdict: AtomicU32,
    /// Underlay source port | reverse generation << 16.
    underlay: AtomicU32,
    /// Reverse flow's setup time.
    rsetup_ms: AtomicU64,
}

const _: () = assert!(size_of::<Slot>() == SLOT_SIZE);
const _: () = assert!(offset_of!(Slot, rflow) == 4);
const _: () = assert!(offset_of!(Slot, setup_ms) == 8);
const _: () = assert!(offset_of!(Slot, last) == 16);
const _: () = assert!(offset_of!(Slot, key) == 64);
const _: () = assert!(offset_of!(Slot, verdict) == 112);
const _: () = assert!(offset_of!(Slot, underlay) == 116);
const _: () = assert!(offset_of!(Slot, rsetup_ms) == 120);
// SAFETY: repr(C), atomics only, no implicit padding (size and offsets asserted above),
// every bit pattern valid, no pointers.
unsafe impl Pod for Slot {}

const SPEC: RegionSpec = RegionSpec {
    kind: "export state",
    magic: STATE_MAGIC,
    layout_version: STATE_LAYOUT_VERSION,
    header_size: HEADER_SIZE,
    denied_hint: "the export state is readable only by the vRouter's user (mode 0600, it holds tenants' flow keys)",
};

/// A flow's export state as stored in its slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SavedFlow {
    pub gen: Gen,
    pub exported: bool,
    pub torn_down: bool,
    pub setup_ms: u64,
    pub last: Counters,
    pub key: FlowKey,
    pub action: Action,
    pub drop_reason: u8,
    pub mirror: u8,
    pub sec_mirror: u8,
    pub underlay_sport: u16,
    pub forward: bool,
    /// Reverse flow: index, generation, setup time.
    pub reverse: Option<(u32, Gen, u64)>,
}

fn slot_offset(idx: u32) -> usize {
    HEADER_SIZE + idx as usize * SLOT_SIZE
}

fn layout_size(capacity: u32) -> usize {
    HEADER_SIZE + capacity as usize * SLOT_SIZE
}

fn read_slot(s: &Slot) -> Option<SavedFlow> {
    let state = s.state.load(Ordering::Acquire);
    let flags = state & 0xffff;
    if flags & TRACKED == 0 {
        return None;
    }
    let r = Ordering::Relaxed;
    let mut words = [0u64; KEY_WORDS];
    for (w, a) in words.iter_mut().zip(&s.key) {
        *w = a.load(r);
    }
    // A key that is not one (a slot written by something else) is no flow.
    let key = FlowKey::from_words(words)?;
    let verdict = s.verdict.load(r);
    let action = Action::from_code(verdict as u8)?;
    let l = |i: usize| s.last[i].load(r);
    let underlay = s.underlay.load(r);
    let rflow = s.rflow.load(r);
    Some(SavedFlow {
        gen: (state >> 16) as Gen,
        exported: flags & EXPORTED != 0,
        torn_down: flags & TORN_DOWN != 0,
        setup_ms: s.setup_ms.load(r),
        last: Counters {
            bytes: l(0),
            packets: l(1),
            mirror_bytes: l(2),
            mirror_packets: l(3),
            sec_mirror_bytes: l(4),
            sec_mirror_packets: l(5),
            // Not kept (see `Counters::accounting`).
            accounting: Default::default(),
        },
        key,
        action,
        drop_reason: (verdict >> 8) as u8,
        mirror: (verdict >> 16) as u8,
        sec_mirror: (verdict >> 24) as u8,
        underlay_sport: underlay as u16,
        forward: flags & FORWARD != 0,
        reverse: (rflow != NO_INDEX).then(|| (rflow, (underlay >> 16) as Gen, s.rsetup_ms.load(r))),
    })
}

/// Writes `f` into `s`: the whole slot when `first`, else the progress (see the module docs).
fn write_slot(s: &Slot, f: &SavedFlow, first: bool) {
    let r = Ordering::Relaxed;
    if first {
        s.state.store(0, r);
        // "No flow" is stored before anything of the new flow.
        fence(Ordering::Release);
        for (a, w) in s.key.iter().zip(f.key.words()) {
            a.store(w, r);
        }
        s.verdict.store(
            u32::from(f.action.code())
                | u32::from(f.drop_reason) << 8
                | u32::from(f.mirror) << 16
                | u32::from(f.sec_mirror) << 24,
            r,
        );
        let (rflow, rgen, rsetup) = f.reverse.unwrap_or((NO_INDEX, 0, 0));
        s.underlay.store(u32::from(f.underlay_sport) | u32::from(rgen) << 16, r);
        s.rflow.store(rflow, r);
        s.rsetup_ms.store(rsetup, r);
        s.setup_ms.store(f.setup_ms, r);
    }
    let c = &f.last;
    for (a, v) in s.last.iter().zip([
        c.bytes,
        c.packets,
        c.mirror_bytes,
        c.mirror_packets,
        c.sec_mirror_bytes,
        c.sec_mirror_packets,
    ]) {
        a.store(v, r);
    }
    let flags = TRACKED
        | if f.exported { EXPORTED } else { 0 }
        | if f.torn_down { TORN_DOWN } else { 0 }
        | if f.forward { FORWARD } else { 0 };
    s.state.store(flags | u32::from(f.gen) << 16, Ordering::Release);
}

/// Checks the header fields of the export state itself; returns its capacity.
fn validate(map: &Mapped) -> Result<u32, Mismatch> {
    let h: &Header = map.get(0).expect("shm::open checked the header size");
    Mismatch::check("slot_size", h.slot_size.into(), SLOT_SIZE as u64)?;
    Mismatch::check("slots_offset", h.slots_offset, HEADER_SIZE as u64)?;
    let capacity = h.capacity;
    if capacity == 0 || capacity > flow_table::MAX_ENTRIES {
        return Err(Mismatch { field: "capacity", found: capacity.into(), expected: flow_table::MAX_ENTRIES.into() });
    }
    Mismatch::check("layout_size", h.region.layout_size(), layout_size(capacity) as u64)?;
    Ok(capacity)
}

/// The previous process's export state, mapped read-only.
pub(crate) struct Previous {
    map: Mapped,
    capacity: u32,
}

impl Previous {
    fn header(&self) -> &Header {
        self.map.get(0).expect("shm::open checked the header size")
    }

    /// The identity of the flow table the state belongs to.
    pub fn identity(&self) -> TableIdentity {
        let h = self.header();
        TableIdentity { created_unix_ns: h.table_created_unix_ns, generation: h.table_generation }
    }

    /// The exporter's counters as last stored.
    pub fn counters(&self) -> ExportCounters {
        let c = &self.header().counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ExportCounters {
            setup_records: g(&c.setup_records),
            periodic_records: g(&c.periodic_records),
            teardown_records: g(&c.teardown_records),
            records_exported: g(&c.records_exported),
            records_sampled_out: g(&c.records_sampled_out),
            records_dropped: g(&c.records_dropped),
            torn_snapshots: g(&c.torn_snapshots),
            sweeps: g(&c.sweeps),
            uves_queued: g(&c.uves_queued),
            ..ExportCounters::default()
        }
    }

    /// Every slot that holds a flow, by flow index.
    pub fn flows(&self) -> impl Iterator<Item = (u32, SavedFlow)> + '_ {
        (0..self.capacity).filter_map(move |i| {
            let s: &Slot = self.map.get(slot_offset(i)).expect("validate checked the layout size");
            read_slot(s).map(|f| (i, f))
        })
    }
}

/// Why the exporter starts without the previous export state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FreshReason {
    /// There is no previous file.
    Missing,
    /// The previous file belongs to another flow table (the table was created anew).
    OtherTable {
        /// The identity of the table the file was written for.
        found: TableIdentity,
    },
    /// The previous file could not be used (another layout, corrupt, unreadable); it was
    /// renamed to `kept` (or could not be, `kept` says why).
    Unusable {
        /// What was wrong with it.
        error: String,
        /// Where the file went, or why it could not be moved.
        kept: Result<PathBuf, String>,
    },
}

impl std::fmt::Display for FreshReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FreshReason::Missing => write!(f, "none found (first start on this run directory)"),
            FreshReason::OtherTable { found } => {
                write!(f, "written for another flow table ({found}), which is gone")
            }
            FreshReason::Unusable { error, kept: Ok(old) } => {
                write!(f, "cannot be used ({error}), kept as {}", old.display())
            }
            FreshReason::Unusable { error, kept: Err(e) } => {
                write!(f, "cannot be used ({error}) and could not be kept aside ({e})")
            }
        }
    }
}

/// What [`load`] found.
pub(crate) enum Loaded {
    /// A previous state of this table.
    Usable(Previous),
    /// None usable.
    Fresh(FreshReason),
}

/// Opens the previous export state at `path` for the flow table `identity` of `capacity`
/// entries (see the module docs); an unusable file is renamed to `<path>.old`.
pub(crate) fn load(path: &Path, identity: TableIdentity, capacity: u32) -> Loaded {
    let unusable = |error: String| {
        let mut old = path.as_os_str().to_owned();
        old.push(".old");
        let old = PathBuf::from(old);
        let kept = std::fs::rename(path, &old).map(|()| old).map_err(|e| e.to_string());
        Loaded::Fresh(FreshReason::Unusable { error, kept })
    };
    let (map, cap) = match shm::open(path, &SPEC, &OpenOptions::new().allow_stale(), validate) {
        Ok(m) => m,
        Err(RegionError::NotRunning { .. }) => return Loaded::Fresh(FreshReason::Missing),
        // The path is in the line already: say what is wrong in the words of this file.
        Err(RegionError::BadMagic { found, .. }) => {
            return unusable(format!("not an export state file (magic {found:#018x})"))
        }
        Err(RegionError::BadVersion { found, expected, .. }) => {
            return unusable(format!("layout version {found}, this build reads {expected}"))
        }
        Err(RegionError::ShortFile { what, found, needed, .. }) => {
            return unusable(format!("{found} bytes, shorter than its {what} ({needed} bytes)"))
        }
        Err(RegionError::LayoutMismatch { field, found, expected, .. }) => {
            return unusable(format!("header field {field} is {found}, expected {expected}"))
        }
        Err(e) => return unusable(e.to_string()),
    };
    let prev = Previous { map, capacity: cap };
    let found = prev.identity();
    if found != identity {
        return Loaded::Fresh(FreshReason::OtherTable { found });
    }
    if cap != capacity {
        return unusable(format!("{cap} slots for a flow table of {capacity} entries"));
    }
    Loaded::Usable(prev)
}

/// The exporter's handle on `<run_dir>/export-state` (read-write; the exporter thread is the
/// only writer).
pub struct ExportState {
    map: Mapped,
    capacity: u32,
}

impl std::fmt::Debug for ExportState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportState").field("path", &self.map.path()).field("capacity", &self.capacity).finish()
    }
}

impl ExportState {
    /// Creates (or replaces) the file at `path` for the flow table `identity` of `capacity`
    /// entries, holding `flows` and the counters of `counters`.
    pub(crate) fn create<'a>(
        path: &Path,
        identity: TableIdentity,
        capacity: u32,
        counters: &ExportCounters,
        flows: impl IntoIterator<Item = (u32, &'a SavedFlow)>,
    ) -> Result<ExportState, RegionError> {
        if capacity == 0 || capacity > flow_table::MAX_ENTRIES {
            return Err(RegionError::InvalidArgument {
                kind: SPEC.kind,
                msg: format!("capacity {capacity} (expected 1..={})", flow_table::MAX_ENTRIES),
            });
        }
        let size = layout_size(capacity) as u64;
        // 0600: the slots hold tenants' flow keys.
        let opts = CreateOptions::new(size, 0o600);
        let map = shm::create(path, &SPEC, &opts, |m| {
            let h: &mut Header = m.get_mut(0).expect("the layout holds the header");
            h.capacity = capacity;
            h.slot_size = SLOT_SIZE as u32;
            h.slots_offset = HEADER_SIZE as u64;
            h.table_created_unix_ns = identity.created_unix_ns;
            h.table_generation = identity.generation;
            store_counters(&h.counters, counters);
            for (i, f) in flows {
                if i < capacity {
                    let s: &mut Slot = m.get_mut(slot_offset(i)).expect("the layout holds every slot");
                    write_slot(s, f, true);
                }
            }
        })?;
        Ok(ExportState { map, capacity })
    }

    fn slot(&self, idx: u32) -> Option<&Slot> {
        if idx >= self.capacity {
            return None;
        }
        self.map.get(slot_offset(idx))
    }

    /// Path of the file.
    pub fn path(&self) -> &Path {
        self.map.path()
    }

    /// Stores flow `idx`'s state; `first`: the slot held another flow or none until now.
    pub(crate) fn save(&self, idx: u32, f: &SavedFlow, first: bool) {
        if let Some(s) = self.slot(idx) {
            write_slot(s, f, first);
        }
    }

    /// Forgets flow `idx` (its slot holds no flow).
    pub(crate) fn clear(&self, idx: u32) {
        if let Some(s) = self.slot(idx) {
            s.state.store(0, Ordering::Release);
        }
    }

    /// Stores the exporter's cumulative counters.
    pub(crate) fn store_counters(&self, c: &ExportCounters) {
        let h: &Header = self.map.get(0).expect("a created region holds its header");
        store_counters(&h.counters, c);
    }
}

fn store_counters(b: &CounterBlock, c: &ExportCounters) {
    let r = Ordering::Relaxed;
    b.setup_records.store(c.setup_records, r);
    b.periodic_records.store(c.periodic_records, r);
    b.teardown_records.store(c.teardown_records, r);
    b.records_exported.store(c.records_exported, r);
    b.records_sampled_out.store(c.records_sampled_out, r);
    b.records_dropped.store(c.records_dropped, r);
    b.torn_snapshots.store(c.torn_snapshots, r);
    b.sweeps.store(c.sweeps, r);
    b.uves_queued.store(c.uves_queued, r);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn flow(i: u16) -> SavedFlow {
        SavedFlow {
            gen: 7 + i,
            exported: true,
            torn_down: i % 2 == 1,
            setup_ms: 1_000 + u64::from(i),
            last: Counters {
                bytes: 100,
                packets: 2,
                mirror_bytes: 3,
                mirror_packets: 4,
                sec_mirror_bytes: 5,
                sec_mirror_packets: 6,
                accounting: Default::default(),
            },
            key: FlowKey::v4(1, 6, Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2), 1000 + i, 80),
            action: Action::Forward,
            drop_reason: 9,
            mirror: 0,
            sec_mirror: 255,
            underlay_sport: 49152,
            forward: i == 0,
            reverse: (i == 0).then_some((5, 65535, 1_001)),
        }
    }

    const ID: TableIdentity = TableIdentity { created_unix_ns: 123, generation: 4 };

    #[test]
    fn slots_and_counters_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join(STATE_FILE);
        let c = ExportCounters { records_exported: 11, sweeps: 3, uves_queued: 2, ..Default::default() };
        let (a, b) = (flow(0), flow(1));
        let st = ExportState::create(&path, ID, 16, &c, [(3, &a)]).unwrap();
        st.save(9, &b, true);
        let mut b2 = b.clone();
        b2.last.bytes = 500;
        b2.exported = false;
        st.save(9, &b2, false);
        st.save(16, &b, true); // out of range: ignored
        st.store_counters(&ExportCounters { records_exported: 12, ..c.clone() });
        let Loaded::Usable(prev) = load(&path, ID, 16) else { panic!("not usable") };
        assert_eq!(prev.flows().collect::<Vec<_>>(), vec![(3, a.clone()), (9, b2)]);
        assert_eq!(prev.counters().records_exported, 12);
        assert_eq!((prev.counters().sweeps, prev.counters().uves_queued), (3, 2));
        st.clear(9);
        assert_eq!(prev.flows().count(), 1);
        // The mode: private to the vRouter's user.
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        // Other table, other capacity.
        assert!(matches!(
            load(&path, TableIdentity { generation: 5, ..ID }, 16),
            Loaded::Fresh(FreshReason::OtherTable { found: ID })
        ));
        assert!(path.exists(), "a file of another table is not moved");
        let Loaded::Fresh(FreshReason::Unusable { kept: Ok(old), .. }) = load(&path, ID, 32) else {
            panic!("capacity")
        };
        assert_eq!(old, d.path().join("export-state.old"));
        assert!(!path.exists());
        assert!(matches!(load(&path, ID, 16), Loaded::Fresh(FreshReason::Missing)));
    }

    #[test]
    fn a_new_file_continues_the_generation() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join(STATE_FILE);
        let c = ExportCounters::default();
        let s1 = ExportState::create(&path, ID, 4, &c, []).unwrap();
        let s2 = ExportState::create(&path, ID, 4, &c, []).unwrap();
        assert_eq!((s1.map.header().generation(), s2.map.header().generation()), (1, 2));
    }
}
