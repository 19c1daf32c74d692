//! `<run_dir>/trace`: per-lcore ring buffers of trace step records, written by the
//! forwarding lcores (one ring each) and the agent (the last ring), read by the `trace` tool.
//!
//! # Layout (little-endian, `repr(C)`, no pointers)
//!
//! ```text
//! 0             Header (256 bytes, starting with the common shm::RegionHeader)
//! rings_offset  Ring[n_rings]: RingHeader (64 bytes) + Record[ring_slots] (64 bytes each)
//! ```
//!
//! # Concurrency
//!
//! - Creation and opening: through [`shm::create`] / [`shm::open`] (the header starts with
//!   the common [`RegionHeader`]; built under a temporary name, `magic` stored last
//!   (Release), then renamed).
//! - One writer per ring. A record is a sequence-locked slot: the writer stores `seq = 0`,
//!   fence(Release), the words (Relaxed atomics), then `seq = position + 1` (Release), then
//!   advances the ring's `head`. A reader loads `head` (Acquire), and for each position it
//!   reads `seq` (Acquire), the words, fence(Acquire), `seq` again: the record is valid only
//!   if both reads give `position + 1` (an overwritten or half-written slot is skipped).
//!
//! # Restart
//!
//! [`TraceRegion::create_continuing`] copies the previous run's rings into the new file
//! before its rename, so `trace list` and `trace get` still show the traces recorded before
//! a restart: each ring's valid records keep their positions (`seq`) and the ring its `head`,
//! so a writer goes on after them and a reader's cursor stays meaningful. Lcore ring `i`
//! continues lcore ring `i` and the agent's (last) ring the agent's; with fewer lcores, the
//! rings of the lcores that are gone are dropped; with fewer slots per ring, the newest
//! records that fit are kept. Record timestamps are moved to the new region's clock base
//! (the same wall-clock time, in the new TSC frequency), which also holds after a reboot
//! reset the TSC. A previous file of another layout is set aside as `trace.old`
//! ([`crate::continued`]).

use std::mem::{offset_of, size_of};
use std::path::Path;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use shm::{Bytes, CreateOptions, InitMap, Mapped, Mismatch, OpenOptions, Pod, RegionHeader, RegionSpec};

use crate::continued::{Continuation, Continued};

use super::step::Step;

/// `b"VRTRACE1"` as a little-endian u64.
pub const TRACE_MAGIC: u64 = u64::from_le_bytes(*b"VRTRACE1");
/// Layout version of the trace region (2: the common region header prefix; 3: route steps
/// carry the matched prefix, ECMP member steps).
pub const TRACE_LAYOUT_VERSION: u32 = 3;
/// File name inside the run directory.
pub const TRACE_FILE_NAME: &str = "trace";
/// The region is readable by the vRouter's user only: its records carry tenants' packet
/// headers. Tenants read their own traces through the agent (REST or control socket with a
/// token), which filters them (see `vrouter::trace::control`).
pub const TRACE_FILE_MODE: u32 = 0o600;
/// Records per ring (a power of two).
pub const DEFAULT_RING_SLOTS: usize = 8192;
/// Largest number of rings: one per forwarding lcore ([`crate::MAX_LCORES`]) plus the agent's.
pub const MAX_RINGS: usize = crate::limits::MAX_LCORES + 1;

/// The file header: the common [`RegionHeader`] prefix (magic, version, sizes, generation,
/// owner), then the trace region's static fields, written before `magic`.
#[repr(C, align(64))]
struct Header {
    region: RegionHeader,
    n_rings: u32,
    ring_slots: u32,
    record_size: u32,
    ring_header_size: u32,
    rings_offset: u64,
    /// TSC frequency and a (unix ms, TSC) pair taken at creation, to turn record
    /// timestamps into wall-clock time.
    tsc_hz: u64,
    base_unix_ms: u64,
    base_tsc: u64,
    _reserved: [u64; 18],
}

const HEADER_SIZE: usize = 256;
const _: () = assert!(size_of::<Header>() == HEADER_SIZE);
const _: () = assert!(offset_of!(Header, n_rings) == 64);
const _: () = assert!(offset_of!(Header, rings_offset) == 80);
const _: () = assert!(offset_of!(Header, tsc_hz) == 88);
const _: () = assert!(offset_of!(Header, base_tsc) == 104);
const _: () = assert!(offset_of!(Header, _reserved) == 112);
// SAFETY: repr(C), integers and atomics only (the prefix included), explicit padding
// (size and offsets asserted above), no pointers.
unsafe impl Pod for Header {}

/// What identifies a trace region of this build (see [`shm::open`]).
const SPEC: RegionSpec = RegionSpec {
    kind: "trace region",
    magic: TRACE_MAGIC,
    layout_version: TRACE_LAYOUT_VERSION,
    header_size: HEADER_SIZE,
    denied_hint: DENIED_HINT,
};

#[repr(C, align(64))]
struct RingHeader {
    /// Records ever written to this ring (next position).
    head: AtomicU64,
    _pad: [u64; 7],
}
const RING_HEADER_SIZE: usize = 64;
const _: () = assert!(size_of::<RingHeader>() == RING_HEADER_SIZE);
// SAFETY: repr(C), an atomic and integers, explicit padding (size asserted), no pointers.
unsafe impl Pod for RingHeader {}

/// One step record.
#[repr(C, align(64))]
struct Record {
    /// `position + 1` when valid, 0 while written.
    seq: AtomicU64,
    tsc: AtomicU64,
    trace_id: AtomicU64,
    /// kind (bits 0..16), packet number within the trace (bits 32..64).
    meta: AtomicU64,
    data: [AtomicU64; 4],
}
const RECORD_SIZE: usize = 64;
const _: () = assert!(size_of::<Record>() == RECORD_SIZE);
const _: () = assert!(offset_of!(Record, trace_id) == 16);
const _: () = assert!(offset_of!(Record, data) == 32);
// SAFETY: repr(C), atomics only, no padding (size asserted), no pointers.
unsafe impl Pod for Record {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Layout {
    n_rings: usize,
    ring_slots: usize,
    rings_offset: usize,
    ring_size: usize,
    file_size: usize,
}

impl Layout {
    fn new(n_rings: usize, ring_slots: usize) -> Layout {
        let ring_size = RING_HEADER_SIZE + ring_slots * RECORD_SIZE;
        Layout {
            n_rings,
            ring_slots,
            rings_offset: HEADER_SIZE,
            ring_size,
            file_size: HEADER_SIZE + n_rings * ring_size,
        }
    }

    /// Offset of ring `ring`'s header (`ring < n_rings`, unchecked here).
    fn ring_header_offset(&self, ring: usize) -> usize {
        self.rings_offset + ring * self.ring_size
    }

    /// Offset of record `slot` of ring `ring` (both in range, unchecked here).
    fn record_offset(&self, ring: usize, slot: usize) -> usize {
        self.ring_header_offset(ring) + RING_HEADER_SIZE + slot * RECORD_SIZE
    }
}

/// Errors creating or opening the trace region (the shared region error type).
pub type TraceRegionError = shm::RegionError;

/// What the trace tool says to a user who may not read the region.
const DENIED_HINT: &str = "the trace region is readable only by the vRouter's user (mode 0600, it holds tenants' \
     packet headers); run as that user, or read your own traces through the vRouter with --token";

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

    /// Ring `ring`'s header (written for every traced step: the index check is the only
    /// check).
    #[inline]
    fn ring_header(&self, ring: usize) -> Option<&'a RingHeader> {
        if ring >= self.layout.n_rings {
            return None;
        }
        // SAFETY: ring < n_rings keeps the header inside the bytes (layout checked in
        // `new`); offsets are multiples of 64.
        Some(unsafe { self.bytes.get_unchecked(self.layout.ring_header_offset(ring)) })
    }

    #[inline]
    fn record(&self, ring: usize, slot: usize) -> Option<&'a Record> {
        if ring >= self.layout.n_rings || slot >= self.layout.ring_slots {
            return None;
        }
        // SAFETY: bounds checked above keep the record inside the bytes; 64-aligned.
        Some(unsafe { self.bytes.get_unchecked(self.layout.record_offset(ring, slot)) })
    }
}

struct Shared {
    map: Mapped,
    layout: Layout,
    taken: Box<[AtomicBool]>,
}

impl Shared {
    #[inline]
    fn view(&self) -> View<'_> {
        View::new(self.map.bytes(), self.layout)
    }
}

/// The vRouter's handle on `<run_dir>/trace`.
#[derive(Clone)]
pub struct TraceRegion {
    shared: Arc<Shared>,
}

impl TraceRegion {
    /// Creates (or replaces) the region with `n_rings` rings of `ring_slots` records, all
    /// empty.
    pub fn create(
        run_dir: &Path,
        n_rings: usize,
        ring_slots: usize,
        tsc_hz: u64,
        base_tsc: u64,
    ) -> Result<TraceRegion, TraceRegionError> {
        check_args(n_rings, ring_slots)?;
        TraceRegion::build(run_dir, Layout::new(n_rings, ring_slots), tsc_hz, base_tsc, None)
    }

    /// [`TraceRegion::create`], continuing the rings of the previous run's file at the same
    /// path (see "Restart" in the module docs): the steps recorded before stay readable and
    /// each ring's writer goes on after them. The previous file's owner must be gone or have
    /// stopped its writers.
    ///
    /// A previous file this build does not accept is renamed to `trace.old` and the rings
    /// start empty; the returned [`Continuation`] says which happened, and what did not fit.
    pub fn create_continuing(
        run_dir: &Path,
        n_rings: usize,
        ring_slots: usize,
        tsc_hz: u64,
        base_tsc: u64,
    ) -> Result<(TraceRegion, Continuation), TraceRegionError> {
        check_args(n_rings, ring_slots)?;
        let layout = Layout::new(n_rings, ring_slots);
        let path = run_dir.join(TRACE_FILE_NAME);
        let previous = shm::previous(&path, &SPEC, validate)?;
        if let shm::Previous::Compatible(old_map, old_layout) = &previous {
            let old = Previous { view: View::new(old_map.bytes(), *old_layout), clock: Clock::of(old_map) };
            let notes = old.notes(layout);
            let region = TraceRegion::build(run_dir, layout, tsc_hz, base_tsc, Some(old))?;
            let outcome = Continued::Continued { notes };
            return Ok((region, Continuation { kind: SPEC.kind, path, what: "trace rings", outcome }));
        }
        let continuation =
            Continuation::from_previous(SPEC.kind, path, "trace rings", &previous).expect("not a compatible file");
        Ok((TraceRegion::build(run_dir, layout, tsc_hz, base_tsc, None)?, continuation))
    }

    /// Builds the file of `layout` (clock base: now and `base_tsc`), with the rings of `old`
    /// copied in when given.
    fn build(
        run_dir: &Path,
        layout: Layout,
        tsc_hz: u64,
        base_tsc: u64,
        old: Option<Previous<'_>>,
    ) -> Result<TraceRegion, TraceRegionError> {
        let clock = Clock { tsc_hz, base_unix_ms: crate::stats::unix_time_ms(), base_tsc };
        let opts = CreateOptions::new(layout.file_size as u64, TRACE_FILE_MODE);
        let map = shm::create(&run_dir.join(TRACE_FILE_NAME), &SPEC, &opts, |m| {
            let h: &mut Header = m.get_mut(0).expect("the layout holds the header");
            h.n_rings = layout.n_rings as u32;
            h.ring_slots = layout.ring_slots as u32;
            h.record_size = RECORD_SIZE as u32;
            h.ring_header_size = RING_HEADER_SIZE as u32;
            h.rings_offset = layout.rings_offset as u64;
            h.tsc_hz = clock.tsc_hz;
            h.base_unix_ms = clock.base_unix_ms;
            h.base_tsc = clock.base_tsc;
            if let Some(old) = old {
                old.copy_into(m, layout, clock);
            }
        })?;
        let taken = (0..layout.n_rings).map(|_| AtomicBool::new(false)).collect();
        Ok(TraceRegion { shared: Arc::new(Shared { map, layout, taken }) })
    }

    /// Path of the region file.
    pub fn path(&self) -> &Path {
        self.shared.map.path()
    }

    /// Number of rings: one per forwarding lcore, the last the agent's.
    pub fn n_rings(&self) -> usize {
        self.shared.layout.n_rings
    }

    /// Each ring's head (records written so far), without taking its writer.
    pub fn heads(&self) -> Vec<u64> {
        let view = self.shared.view();
        (0..self.shared.layout.n_rings)
            .map(|i| view.ring_header(i).map_or(0, |h| h.head.load(Ordering::Acquire)))
            .collect()
    }

    /// The writer of ring `index`, to move to its one writer (each ring is given out once).
    pub fn writer(&self, index: usize) -> Option<RingWriter> {
        if index >= self.shared.layout.n_rings || self.shared.taken[index].swap(true, Ordering::AcqRel) {
            return None;
        }
        let head = self.shared.view().ring_header(index).map_or(0, |h| h.head.load(Ordering::Relaxed));
        Some(RingWriter { shared: self.shared.clone(), ring: index, head, mask: self.shared.layout.ring_slots - 1 })
    }
}

fn check_args(n_rings: usize, ring_slots: usize) -> Result<(), TraceRegionError> {
    if n_rings == 0 || n_rings > MAX_RINGS {
        return Err(TraceRegionError::InvalidArgument {
            kind: SPEC.kind,
            msg: format!("n_rings is {n_rings} (expected 1..={MAX_RINGS})"),
        });
    }
    if !ring_slots.is_power_of_two() || ring_slots < 64 {
        return Err(TraceRegionError::InvalidArgument {
            kind: SPEC.kind,
            msg: format!("ring_slots {ring_slots} is not a power of two >= 64"),
        });
    }
    Ok(())
}

/// A region's clock base: TSC frequency and a (unix ms, TSC) pair.
#[derive(Clone, Copy, Debug)]
struct Clock {
    tsc_hz: u64,
    base_unix_ms: u64,
    base_tsc: u64,
}

impl Clock {
    fn of(map: &Mapped) -> Clock {
        let h: &Header = map.get(0).expect("shm::open checked the header size");
        Clock { tsc_hz: h.tsc_hz, base_unix_ms: h.base_unix_ms, base_tsc: h.base_tsc }
    }

    /// The TSC of clock `to` at the wall-clock time `tsc` stands for on this clock.
    fn translate(&self, tsc: u64, to: &Clock) -> u64 {
        let (from_hz, to_hz) = (i128::from(self.tsc_hz.max(1)), i128::from(to.tsc_hz.max(1)));
        let since_base = i128::from(tsc.wrapping_sub(self.base_tsc) as i64);
        let base_shift = i128::from(self.base_unix_ms) - i128::from(to.base_unix_ms);
        let t = i128::from(to.base_tsc) + since_base * to_hz / from_hz + base_shift * to_hz / 1000;
        // Modulo 2^64, as the TSC is read.
        t as u64
    }
}

/// The previous run's region a new one continues.
struct Previous<'a> {
    view: View<'a>,
    clock: Clock,
}

impl Previous<'_> {
    /// (previous ring, new ring) pairs: every ring when the counts are the same, else the
    /// lcore rings both have and the agent's (last) ring.
    fn ring_pairs(&self, new_rings: usize) -> Vec<(usize, usize)> {
        let old_rings = self.view.layout.n_rings;
        if old_rings == 0 {
            return Vec::new();
        }
        if old_rings == new_rings {
            return (0..new_rings).map(|r| (r, r)).collect();
        }
        let lcores = old_rings.min(new_rings) - 1;
        (0..lcores).map(|r| (r, r)).chain([(old_rings - 1, new_rings - 1)]).collect()
    }

    /// What [`Previous::copy_into`] leaves out, one clause each.
    fn notes(&self, layout: Layout) -> Vec<String> {
        let old = self.view.layout;
        let mut notes = Vec::new();
        if old.n_rings > layout.n_rings {
            // Lcore rings new_rings - 1 ..= old_rings - 2 have no ring to go to.
            let (first, last) = (layout.n_rings - 1, old.n_rings - 2);
            let which =
                if first == last { format!("lcore ring {first}") } else { format!("lcore rings {first} to {last}") };
            notes.push(format!(
                "{} rings before, {} now: the steps of {which} are dropped",
                old.n_rings, layout.n_rings
            ));
        }
        if old.ring_slots > layout.ring_slots {
            notes.push(format!(
                "{} records per ring before, {} now: the newest {} of each ring are kept",
                old.ring_slots, layout.ring_slots, layout.ring_slots
            ));
        }
        notes
    }

    /// Copies the valid records of every ring pair into the fresh mapping `m` of `layout`
    /// at their positions (the newest that fit), with timestamps moved to `clock`, and each
    /// ring's head.
    fn copy_into(&self, m: &mut InitMap<'_>, layout: Layout, clock: Clock) {
        let old_slots = self.view.layout.ring_slots as u64;
        let keep = old_slots.min(layout.ring_slots as u64);
        let mask = layout.ring_slots as u64 - 1;
        for (from, to) in self.ring_pairs(layout.n_rings) {
            let Some(h) = self.view.ring_header(from) else { continue };
            let head = h.head.load(Ordering::Acquire);
            for pos in head.saturating_sub(keep)..head {
                let Some(r) = self.view.record(from, (pos % old_slots) as usize) else { continue };
                let s1 = r.seq.load(Ordering::Acquire);
                let rl = Ordering::Relaxed;
                let tsc = r.tsc.load(rl);
                let trace_id = r.trace_id.load(rl);
                let meta = r.meta.load(rl);
                let data = [r.data[0].load(rl), r.data[1].load(rl), r.data[2].load(rl), r.data[3].load(rl)];
                fence(Ordering::Acquire);
                if s1 != pos + 1 || r.seq.load(rl) != s1 {
                    // Overwritten or half-written: left empty, as a reader would skip it.
                    continue;
                }
                let rec: &mut Record =
                    m.get_mut(layout.record_offset(to, (pos & mask) as usize)).expect("the layout holds every record");
                *rec.tsc.get_mut() = self.clock.translate(tsc, &clock);
                *rec.trace_id.get_mut() = trace_id;
                *rec.meta.get_mut() = meta;
                for (w, d) in rec.data.iter_mut().zip(data) {
                    *w.get_mut() = d;
                }
                *rec.seq.get_mut() = pos + 1;
            }
            let rh: &mut RingHeader = m.get_mut(layout.ring_header_offset(to)).expect("the layout holds every ring");
            *rh.head.get_mut() = head;
        }
    }
}

/// The one writer of a ring. `Send`, not `Sync`.
pub struct RingWriter {
    shared: Arc<Shared>,
    ring: usize,
    head: u64,
    mask: usize,
}

impl RingWriter {
    /// Appends one step of packet `pkt` of trace `trace_id`, stamped `tsc`.
    #[inline]
    pub fn push(&mut self, tsc: u64, trace_id: u64, pkt: u32, step: &Step) {
        let (kind, data) = step.encode();
        let view = self.shared.view();
        let pos = self.head;
        let Some(r) = view.record(self.ring, pos as usize & self.mask) else { return };
        let rl = Ordering::Relaxed;
        r.seq.store(0, rl);
        fence(Ordering::Release);
        r.tsc.store(tsc, rl);
        r.trace_id.store(trace_id, rl);
        r.meta.store(u64::from(kind) | u64::from(pkt) << 32, rl);
        for (w, d) in r.data.iter().zip(data) {
            w.store(d, rl);
        }
        r.seq.store(pos + 1, Ordering::Release);
        self.head = pos + 1;
        if let Some(h) = view.ring_header(self.ring) {
            h.head.store(self.head, Ordering::Release);
        }
    }

    /// Records written so far.
    pub fn written(&self) -> u64 {
        self.head
    }
}

/// A decoded record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceRecord {
    /// Ring the record was read from (the lcore's index; the last ring is the agent's).
    pub ring: usize,
    /// Position in the ring (records written before it).
    pub position: u64,
    /// TSC when the step was recorded (see [`RegionInfo::unix_ms`]).
    pub tsc: u64,
    /// Trace the record belongs to.
    pub trace_id: u64,
    /// Packet number within the trace, from 1.
    pub pkt: u32,
    /// The decoded step.
    pub step: Step,
}

/// What a reader knows of the region besides its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RegionInfo {
    /// This file's generation (bumped on every creation).
    pub generation: u64,
    /// Number of rings: one per forwarding lcore, the last the agent's.
    pub n_rings: u32,
    /// Records per ring.
    pub ring_slots: u32,
    /// Pid of the vRouter that created the region.
    pub creator_pid: u32,
    /// TSC frequency, Hz.
    pub tsc_hz: u64,
    /// Unix milliseconds at creation, paired with `base_tsc`.
    pub base_unix_ms: u64,
    /// TSC at creation, paired with `base_unix_ms`.
    pub base_tsc: u64,
}

impl RegionInfo {
    /// Wall-clock milliseconds of a record's TSC.
    pub fn unix_ms(&self, tsc: u64) -> u64 {
        let hz = self.tsc_hz.max(1);
        let d = tsc.wrapping_sub(self.base_tsc) as i64;
        (self.base_unix_ms as i64 + (i128::from(d) * 1000 / i128::from(hz)) as i64).max(0) as u64
    }

    /// Wall-clock microseconds of a record's TSC (the base is taken in ms at creation, so
    /// the absolute value is good to a millisecond; differences to the TSC's resolution).
    pub fn unix_us(&self, tsc: u64) -> u64 {
        let hz = self.tsc_hz.max(1);
        let d = tsc.wrapping_sub(self.base_tsc) as i64;
        (self.base_unix_ms as i64 * 1000 + (i128::from(d) * 1_000_000 / i128::from(hz)) as i64).max(0) as u64
    }

    /// TSC ticks as nanoseconds.
    pub fn ticks_to_ns(&self, ticks: u64) -> u64 {
        (u128::from(ticks) * 1_000_000_000 / u128::from(self.tsc_hz.max(1))) as u64
    }
}

/// A read-only view of a running (or stopped) vRouter's trace region.
pub struct TraceReader {
    map: Mapped,
    layout: Layout,
    info: RegionInfo,
}

impl TraceReader {
    /// Opens `<run_dir>/trace`, also when its vRouter is gone (post-mortem reading):
    /// [`TraceReader::open_with`] with [`OpenOptions::allow_stale`].
    pub fn open_run_dir(run_dir: &Path) -> Result<TraceReader, TraceRegionError> {
        TraceReader::open_with(run_dir, &OpenOptions::new().allow_stale())
    }

    /// Opens `<run_dir>/trace` through [`shm::open`] and checks its header against this
    /// build's layout (and, unless `opts` allow a stale region, that its owner runs).
    pub fn open_with(run_dir: &Path, opts: &OpenOptions) -> Result<TraceReader, TraceRegionError> {
        let (map, layout) = shm::open(&run_dir.join(TRACE_FILE_NAME), &SPEC, opts, validate)?;
        let h: &Header = map.get(0).expect("shm::open checked the header size");
        let info = RegionInfo {
            generation: h.region.generation(),
            n_rings: h.n_rings,
            ring_slots: h.ring_slots,
            creator_pid: h.region.owner_pid(),
            tsc_hz: h.tsc_hz,
            base_unix_ms: h.base_unix_ms,
            base_tsc: h.base_tsc,
        };
        Ok(TraceReader { map, layout, info })
    }

    fn view(&self) -> View<'_> {
        View::new(self.map.bytes(), self.layout)
    }

    /// Region header fields and the clock base.
    pub fn info(&self) -> RegionInfo {
        self.info
    }

    /// Every valid record of every ring, oldest first within a ring.
    pub fn records(&self) -> Vec<TraceRecord> {
        let view = self.view();
        let mut out = Vec::new();
        for ring in 0..self.layout.n_rings {
            let Some(h) = view.ring_header(ring) else { continue };
            let head = h.head.load(Ordering::Acquire);
            let slots = self.layout.ring_slots as u64;
            let start = head.saturating_sub(slots);
            for pos in start..head {
                let Some(r) = view.record(ring, (pos % slots) as usize) else { continue };
                let s1 = r.seq.load(Ordering::Acquire);
                let rl = Ordering::Relaxed;
                let tsc = r.tsc.load(rl);
                let trace_id = r.trace_id.load(rl);
                let meta = r.meta.load(rl);
                let data = [r.data[0].load(rl), r.data[1].load(rl), r.data[2].load(rl), r.data[3].load(rl)];
                fence(Ordering::Acquire);
                let s2 = r.seq.load(rl);
                if s1 != pos + 1 || s2 != s1 {
                    continue;
                }
                let Some(step) = Step::decode(meta as u16, data) else { continue };
                out.push(TraceRecord { ring, position: pos, tsc, trace_id, pkt: (meta >> 32) as u32, step });
            }
        }
        out
    }
}

/// What [`TraceReader::read_ring`] found from a cursor on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RingRead {
    /// Valid records, oldest first.
    pub records: Vec<TraceRecord>,
    /// Records written after the cursor but overwritten (or torn, or undecodable) before
    /// they could be read.
    pub lost: u64,
    /// The cursor for the next read: the position after the last one accounted for.
    pub next: u64,
}

impl TraceReader {
    /// The ring count of this region.
    pub fn n_rings(&self) -> usize {
        self.layout.n_rings
    }

    /// Records written to ring `ring` since the cursor `from` (a position), at most `max` of
    /// them. Every position from `from` up to the returned `next` is either returned or
    /// counted in `lost` (already overwritten, torn while being overwritten, or not a valid
    /// step), so a reader that keeps `next` as its cursor sees every record once and knows how
    /// many it missed. A cursor ahead of the ring's head (a ring of a newer region) reads
    /// nothing.
    pub fn read_ring(&self, ring: usize, from: u64, max: usize) -> RingRead {
        let view = self.view();
        let mut out = RingRead { records: Vec::new(), lost: 0, next: from };
        let Some(h) = view.ring_header(ring) else { return out };
        let head = h.head.load(Ordering::Acquire);
        if from >= head {
            return out;
        }
        let slots = self.layout.ring_slots as u64;
        let oldest = head.saturating_sub(slots);
        let mut pos = from;
        if pos < oldest {
            out.lost += oldest - pos;
            pos = oldest;
        }
        let end = head.min(pos.saturating_add(max as u64));
        while pos < end {
            let Some(r) = view.record(ring, (pos % slots) as usize) else { break };
            let s1 = r.seq.load(Ordering::Acquire);
            let rl = Ordering::Relaxed;
            let tsc = r.tsc.load(rl);
            let trace_id = r.trace_id.load(rl);
            let meta = r.meta.load(rl);
            let data = [r.data[0].load(rl), r.data[1].load(rl), r.data[2].load(rl), r.data[3].load(rl)];
            fence(Ordering::Acquire);
            let s2 = r.seq.load(rl);
            // A position below the head was complete when the head was read: any other
            // sequence now means the writer has lapped it.
            match Step::decode(meta as u16, data) {
                Some(step) if s1 == pos + 1 && s2 == s1 => {
                    out.records.push(TraceRecord { ring, position: pos, tsc, trace_id, pkt: (meta >> 32) as u32, step })
                }
                _ => out.lost += 1,
            }
            pos += 1;
        }
        out.next = pos;
        out
    }
}

/// Checks the trace region's own header fields (the common prefix was checked by
/// [`shm::open`]); returns its layout.
fn validate(map: &Mapped) -> Result<Layout, Mismatch> {
    let h: &Header = map.get(0).expect("shm::open checked the header size");
    Mismatch::check("record_size", h.record_size.into(), RECORD_SIZE as u64)?;
    Mismatch::check("ring_header_size", h.ring_header_size.into(), RING_HEADER_SIZE as u64)?;
    let slots = h.ring_slots as usize;
    if !slots.is_power_of_two() {
        return Err(Mismatch { field: "ring_slots", found: slots as u64, expected: DEFAULT_RING_SLOTS as u64 });
    }
    let n_rings = h.n_rings as usize;
    if n_rings > MAX_RINGS {
        return Err(Mismatch { field: "n_rings", found: n_rings as u64, expected: MAX_RINGS as u64 });
    }
    let layout = Layout::new(n_rings, slots);
    Mismatch::check("rings_offset", h.rings_offset, HEADER_SIZE as u64)?;
    // shm::open checked that the mapping holds the layout_size the header declares.
    Mismatch::check("file_size", h.region.layout_size(), layout.file_size as u64)?;
    Ok(layout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::continued::{Continuation, Continued};
    use crate::drop_reason::DropReason;

    #[test]
    fn records_round_trip_and_wrap() {
        let dir = tempfile::tempdir().unwrap();
        let region = TraceRegion::create(dir.path(), 2, 64, 1_000_000_000, 0).unwrap();
        let mut w0 = region.writer(0).unwrap();
        assert!(region.writer(0).is_none(), "one writer per ring");
        let mut w1 = region.writer(1).unwrap();
        for i in 0..100u32 {
            w0.push(u64::from(i), 7, i, &Step::Egress { vif: 2, len: i });
        }
        w1.push(5, 9, 1, &Step::Drop { reason: DropReason::FlowActionDrop });
        let r = TraceReader::open_run_dir(dir.path()).unwrap();
        let recs = r.records();
        // Ring 0 keeps its last 64 records, in order.
        let ring0: Vec<_> = recs.iter().filter(|r| r.ring == 0).collect();
        assert_eq!(ring0.len(), 64);
        assert_eq!(ring0[0].pkt, 36);
        assert_eq!(ring0[63].step, Step::Egress { vif: 2, len: 99 });
        let ring1: Vec<_> = recs.iter().filter(|r| r.ring == 1).collect();
        assert_eq!(ring1.len(), 1);
        assert_eq!((ring1[0].trace_id, ring1[0].step), (9, Step::Drop { reason: DropReason::FlowActionDrop }));
        assert_eq!(r.info().generation, 1);
        drop(region);
        // A new region gets the next generation and starts empty.
        let _again = TraceRegion::create(dir.path(), 1, 64, 1, 0).unwrap();
        let r = TraceReader::open_run_dir(dir.path()).unwrap();
        assert_eq!(r.info().generation, 2);
        assert!(r.records().is_empty());
    }

    #[test]
    fn cursor_reads_every_record_once_and_counts_overwritten_ones() {
        let dir = tempfile::tempdir().unwrap();
        let region = TraceRegion::create(dir.path(), 2, 64, 1_000_000_000, 0).unwrap();
        let mut w = region.writer(0).unwrap();
        let r = TraceReader::open_run_dir(dir.path()).unwrap();
        assert_eq!(r.read_ring(0, 0, 100), RingRead::default(), "empty ring");
        for i in 0..10u32 {
            w.push(u64::from(i), 1, i, &Step::Egress { vif: 1, len: i });
        }
        // Bounded reads resume where they stopped.
        let a = r.read_ring(0, 0, 4);
        assert_eq!((a.records.len(), a.lost, a.next), (4, 0, 4));
        let b = r.read_ring(0, a.next, 100);
        assert_eq!((b.records.len(), b.lost, b.next), (6, 0, 10));
        let seen: Vec<u64> = a.records.iter().chain(&b.records).map(|r| r.position).collect();
        assert_eq!(seen, (0..10).collect::<Vec<_>>(), "each record once, in order");
        assert_eq!(r.read_ring(0, b.next, 100), RingRead { records: vec![], lost: 0, next: 10 });
        // The writer laps the reader: 100 more records into 64 slots; the 36 overwritten
        // before the read are counted, the last 64 are returned.
        for i in 10..110u32 {
            w.push(u64::from(i), 2, i, &Step::Egress { vif: 1, len: i });
        }
        let c = r.read_ring(0, 10, 1000);
        assert_eq!((c.records.len(), c.lost, c.next), (64, 36, 110));
        assert_eq!(c.records[0].position, 46);
        assert_eq!(c.records.iter().map(|r| r.pkt).collect::<Vec<_>>(), (46..110).collect::<Vec<_>>());
        // Another ring and an out-of-range ring.
        assert_eq!(r.read_ring(1, 0, 10), RingRead::default());
        assert_eq!(r.read_ring(7, 0, 10), RingRead::default());
        // A cursor ahead of the head reads nothing and stays.
        assert_eq!(r.read_ring(0, 500, 10).next, 500);
    }

    #[test]
    fn the_region_is_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let region = TraceRegion::create(dir.path(), 1, 64, 1, 0).unwrap();
        let mode = std::fs::metadata(region.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "it holds tenants' packet headers");
    }

    #[test]
    fn reader_rejects_foreign_files() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(TraceReader::open_run_dir(dir.path()), Err(TraceRegionError::NotRunning { .. })));
        std::fs::write(dir.path().join(TRACE_FILE_NAME), vec![0u8; 4096]).unwrap();
        match TraceReader::open_run_dir(dir.path()) {
            Err(TraceRegionError::BadMagic { found: 0, expected: TRACE_MAGIC, .. }) => {}
            other => panic!("{:?}", other.err()),
        }
    }

    /// Opens strictly (a gone owner is an error) and returns the region error, after
    /// checking that its message names the region kind and the path.
    fn strict_open_err(dir: &Path) -> shm::RegionError {
        let e = TraceReader::open_with(dir, &OpenOptions::new()).err().expect("must fail");
        let s = e.to_string();
        let path = dir.join(TRACE_FILE_NAME);
        assert!(s.contains("trace region") && s.contains(&path.display().to_string()), "{s}");
        assert_eq!(e.kind(), "trace region");
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
        let region = TraceRegion::create(dir.path(), 1, 64, 1, 0).unwrap();
        patch(region.path(), 0, b"NOTMAGIC");
        let e = strict_open_err(dir.path());
        let bad = u64::from_le_bytes(*b"NOTMAGIC");
        assert!(matches!(e, shm::RegionError::BadMagic { found, expected: TRACE_MAGIC, .. } if found == bad), "{e:?}");
    }

    #[test]
    fn open_wrong_version() {
        let dir = tempfile::tempdir().unwrap();
        let region = TraceRegion::create(dir.path(), 1, 64, 1, 0).unwrap();
        patch(region.path(), offset_of!(RegionHeader, layout_version), &77u32.to_ne_bytes());
        let e = strict_open_err(dir.path());
        assert!(matches!(e, shm::RegionError::BadVersion { found: 77, expected: TRACE_LAYOUT_VERSION, .. }), "{e:?}");
    }

    #[test]
    fn open_short_file() {
        let dir = tempfile::tempdir().unwrap();
        let region = TraceRegion::create(dir.path(), 1, 64, 1, 0).unwrap();
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

    /// What must survive a restart of a record: where it is, what it is, and when it was
    /// (wall clock, to the µs).
    fn kept(r: &TraceReader) -> Vec<(usize, u64, u64, u32, Step, u64)> {
        let info = r.info();
        r.records().iter().map(|x| (x.ring, x.position, x.trace_id, x.pkt, x.step, info.unix_us(x.tsc))).collect()
    }

    fn assert_same_records(
        a: &[(usize, u64, u64, u32, Step, u64)],
        b: &[(usize, u64, u64, u32, Step, u64)],
        ring_map: impl Fn(usize) -> usize,
    ) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert_eq!((ring_map(x.0), x.1, x.2, x.3, x.4), (y.0, y.1, y.2, y.3, y.4));
            assert!(x.5.abs_diff(y.5) <= 1, "the same wall-clock time: {} vs {}", x.5, y.5);
        }
    }

    #[test]
    fn steps_recorded_before_a_restart_stay_readable() {
        let dir = tempfile::tempdir().unwrap();
        let (first, c) = TraceRegion::create_continuing(dir.path(), 2, 64, 1_000_000_000, 0).unwrap();
        assert_eq!((&c.outcome, c.line()), (&Continued::First, None));
        let (mut w0, mut w1) = (first.writer(0).unwrap(), first.writer(1).unwrap());
        for i in 0..100u32 {
            w0.push(1_000 * u64::from(i), 7, i, &Step::Egress { vif: 2, len: i });
        }
        w1.push(5, 9, 1, &Step::Drop { reason: DropReason::FlowActionDrop });
        let before = kept(&TraceReader::open_run_dir(dir.path()).unwrap());
        assert_eq!(before.len(), 65);
        // The first region's writers stopped (its owner, this process, is alive: a takeover).
        drop((w0, w1));
        let (second, c) = TraceRegion::create_continuing(dir.path(), 2, 64, 1_000_000_000, 0).unwrap();
        assert_eq!(continued_notes(&c), Vec::<String>::new());
        let shown = dir.path().join(TRACE_FILE_NAME).display().to_string();
        assert_eq!(c.line().unwrap(), format!("trace region {shown}: continuing trace rings from the previous run"));
        let r = TraceReader::open_run_dir(dir.path()).unwrap();
        assert_eq!(r.info().generation, 2);
        assert_same_records(&before, &kept(&r), |ring| ring);
        // Grouped into traces as before: `trace list` lists them.
        let traces = crate::trace::view::collect(&r.records());
        let mut listed: Vec<_> = traces.iter().map(|t| (t.id, t.records.len())).collect();
        listed.sort();
        assert_eq!(listed, [(7, 64), (9, 1)]);
        // A cursor of the previous run stays meaningful, and the writers go on after it.
        assert_eq!(r.read_ring(0, 90, 100).records.len(), 10);
        let mut w0 = second.writer(0).unwrap();
        assert_eq!(w0.written(), 100);
        w0.push(7, 8, 1, &Step::Egress { vif: 1, len: 1 });
        let next = r.read_ring(0, 100, 10);
        assert_eq!((next.records.len(), next.records[0].position, next.records[0].trace_id), (1, 100, 8));
        assert_eq!(r.records().iter().filter(|x| x.ring == 0).count(), 64, "the ring wraps as before");
    }

    #[test]
    fn rings_of_another_shape_keep_what_fits() {
        let dir = tempfile::tempdir().unwrap();
        // Two lcores and the agent, 128 records per ring.
        let (first, _) = TraceRegion::create_continuing(dir.path(), 3, 128, 1_000_000_000, 0).unwrap();
        let mut w = [first.writer(0).unwrap(), first.writer(1).unwrap(), first.writer(2).unwrap()];
        for (ring, n) in [(0usize, 10u32), (1, 100), (2, 5)] {
            for i in 0..n {
                w[ring].push(u64::from(i), ring as u64 + 1, i, &Step::Egress { vif: 1, len: i });
            }
        }
        drop(w);
        let before = kept(&TraceReader::open_run_dir(dir.path()).unwrap());
        // One lcore and the agent, 64 records per ring.
        let (_second, c) = TraceRegion::create_continuing(dir.path(), 2, 64, 1_000_000_000, 0).unwrap();
        assert_eq!(
            continued_notes(&c),
            [
                "3 rings before, 2 now: the steps of lcore ring 1 are dropped",
                "128 records per ring before, 64 now: the newest 64 of each ring are kept"
            ]
        );
        let after = kept(&TraceReader::open_run_dir(dir.path()).unwrap());
        let expect: Vec<_> = before.iter().filter(|x| x.0 != 1).cloned().collect();
        assert_same_records(&expect, &after, |ring| if ring == 2 { 1 } else { ring });
        // Back to more lcores and longer rings: the agent's ring moves to the last again,
        // the new lcore's ring starts empty.
        let (third, c) = TraceRegion::create_continuing(dir.path(), 4, 256, 1_000_000_000, 0).unwrap();
        assert_eq!(continued_notes(&c), Vec::<String>::new());
        let r = TraceReader::open_run_dir(dir.path()).unwrap();
        assert_same_records(&after, &kept(&r), |ring| if ring == 1 { 3 } else { ring });
        assert_eq!(third.writer(3).unwrap().written(), 5);
        assert_eq!(third.writer(1).unwrap().written(), 0);
    }

    #[test]
    fn timestamps_move_to_the_new_clock_base() {
        let dir = tempfile::tempdir().unwrap();
        let (first, _) = TraceRegion::create_continuing(dir.path(), 1, 64, 1_000_000_000, 0).unwrap();
        let mut w = first.writer(0).unwrap();
        for i in 0..3u64 {
            w.push(i * 1_500_000, 1, 1, &Step::Egress { vif: 1, len: 1 });
        }
        drop(w);
        let before = kept(&TraceReader::open_run_dir(dir.path()).unwrap());
        // Another TSC frequency and a TSC that restarted from a small value (a reboot).
        let (_second, _) = TraceRegion::create_continuing(dir.path(), 1, 64, 2_500_000_000, 42).unwrap();
        let r = TraceReader::open_run_dir(dir.path()).unwrap();
        assert_same_records(&before, &kept(&r), |ring| ring);
        let tsc: Vec<u64> = r.records().iter().map(|x| x.tsc).collect();
        // Records older than the new base have timestamps before it (wrapping below zero).
        assert_eq!(
            (tsc[1].wrapping_sub(tsc[0]), tsc[2].wrapping_sub(tsc[1])),
            (3_750_000, 3_750_000),
            "1.5 ms in the new frequency"
        );
    }

    #[test]
    fn a_torn_record_of_the_previous_run_is_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let (first, _) = TraceRegion::create_continuing(dir.path(), 1, 64, 1_000_000_000, 0).unwrap();
        let mut w = first.writer(0).unwrap();
        for i in 0..4u32 {
            w.push(0, 1, i, &Step::Egress { vif: 1, len: i });
        }
        drop(w);
        // The writer of record 2 died between its seq stores.
        patch(first.path(), HEADER_SIZE + RING_HEADER_SIZE + 2 * RECORD_SIZE, &0u64.to_ne_bytes());
        let (_second, _) = TraceRegion::create_continuing(dir.path(), 1, 64, 1_000_000_000, 0).unwrap();
        let r = TraceReader::open_run_dir(dir.path()).unwrap();
        let read = r.read_ring(0, 0, 10);
        assert_eq!(read.records.iter().map(|x| x.position).collect::<Vec<_>>(), [0, 1, 3]);
        assert_eq!((read.lost, read.next), (1, 4));
    }

    #[test]
    fn an_untrusted_previous_file_is_set_aside_and_the_rings_start_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TRACE_FILE_NAME);
        let kept_at = dir.path().join("trace.old");
        let setup = || {
            let (r, _) = TraceRegion::create_continuing(dir.path(), 1, 64, 1, 0).unwrap();
            r.writer(0).unwrap().push(0, 1, 1, &Step::Egress { vif: 1, len: 1 });
        };
        setup();
        patch(&path, offset_of!(RegionHeader, layout_version), &(TRACE_LAYOUT_VERSION - 1).to_ne_bytes());
        let old = std::fs::read(&path).unwrap();
        let (region, c) = TraceRegion::create_continuing(dir.path(), 1, 64, 1, 0).unwrap();
        assert!(c.is_warning());
        assert_eq!(
            c.line().unwrap(),
            format!(
                "{}: trace region layout version {} (expected {TRACE_LAYOUT_VERSION}): the reader and the vRouter \
                 come from different builds; kept it at {} and created the region fresh",
                path.display(),
                TRACE_LAYOUT_VERSION - 1,
                kept_at.display()
            )
        );
        assert_eq!(std::fs::read(&kept_at).unwrap(), old);
        assert!(TraceReader::open_run_dir(dir.path()).unwrap().records().is_empty());
        assert_eq!(region.writer(0).unwrap().written(), 0);
        drop(region);
        setup();
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(300).unwrap();
        let (_region, c) = TraceRegion::create_continuing(dir.path(), 1, 64, 1, 0).unwrap();
        let line = c.line().unwrap();
        assert!(
            line.starts_with(&format!("{}: trace region file is 300 bytes, shorter than", path.display())),
            "{line}"
        );
        assert!(TraceReader::open_run_dir(dir.path()).unwrap().records().is_empty());
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
        assert_eq!(mode & 0o777, TRACE_FILE_MODE);
    }

    #[test]
    fn open_stale_owner() {
        let dir = tempfile::tempdir().unwrap();
        let region = TraceRegion::create(dir.path(), 1, 64, 1, 0).unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        patch(region.path(), offset_of!(RegionHeader, owner_pid), &dead.to_ne_bytes());
        let e = strict_open_err(dir.path());
        assert!(matches!(e, shm::RegionError::StaleOwner { pid, .. } if pid == dead), "{e:?}");
        // Post-mortem readers still open it.
        assert!(TraceReader::open_with(dir.path(), &OpenOptions::new().allow_stale()).is_ok());
    }
}
