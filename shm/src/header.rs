//! [`RegionHeader`]: the prefix every region file starts with.

use std::mem::{offset_of, size_of};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

use crate::pod::Pod;

/// The common prefix of every region file (64 bytes, one cache line). A region's own header
/// embeds it as its first field.
///
/// Every field is an atomic so a reader in another process may load it from a read-only
/// mapping at any time (`Relaxed` loads of at most 8 bytes). [`crate::create`] writes every
/// field but `magic`, the region's own initialisation follows, and `magic` is stored last
/// (`Release`); [`crate::open`] loads `magic` first (then an `Acquire` fence), so the rest is
/// complete once the magic matches.
#[repr(C, align(64))]
pub struct RegionHeader {
    /// The region's magic; 0 until the file is complete.
    pub magic: AtomicU64,
    /// Bumped by a region whenever any of its shared structs changes.
    pub layout_version: AtomicU32,
    /// Size of the region's whole header (this prefix included).
    pub header_size: AtomicU32,
    /// Bytes the layout needs; the file may be longer (rounded up to the filesystem's page).
    pub layout_size: AtomicU64,
    /// Bumped on every (re)creation of the file at the same path (1 for the first).
    pub generation: AtomicU64,
    /// The process that created the file.
    pub owner_pid: AtomicU32,
    /// Zero (explicit padding).
    pub _pad0: AtomicU32,
    /// Start time of the owner (`/proc/<pid>/stat` field 22, clock ticks since boot): with
    /// `owner_pid`, tells a live owner from a reused pid.
    pub owner_start_ticks: AtomicU64,
    /// Unix time of creation, nanoseconds.
    pub created_unix_ns: AtomicU64,
    /// Zero (room for a later field).
    pub _reserved: AtomicU64,
}

/// Size of [`RegionHeader`].
pub const REGION_HEADER_SIZE: usize = 64;
const _: () = assert!(size_of::<RegionHeader>() == REGION_HEADER_SIZE);
const _: () = assert!(offset_of!(RegionHeader, magic) == 0);
const _: () = assert!(offset_of!(RegionHeader, layout_version) == 8);
const _: () = assert!(offset_of!(RegionHeader, header_size) == 12);
const _: () = assert!(offset_of!(RegionHeader, layout_size) == 16);
const _: () = assert!(offset_of!(RegionHeader, generation) == 24);
const _: () = assert!(offset_of!(RegionHeader, owner_pid) == 32);
const _: () = assert!(offset_of!(RegionHeader, owner_start_ticks) == 40);
const _: () = assert!(offset_of!(RegionHeader, created_unix_ns) == 48);

// SAFETY: repr(C), atomics only, no implicit padding (the asserts above account for every
// byte); every bit pattern is a valid value; no pointers.
unsafe impl Pod for RegionHeader {}

impl RegionHeader {
    /// The layout version (`Relaxed`).
    pub fn layout_version(&self) -> u32 {
        self.layout_version.load(Relaxed)
    }

    /// The generation (`Relaxed`).
    pub fn generation(&self) -> u64 {
        self.generation.load(Relaxed)
    }

    /// The owner's pid (`Relaxed`).
    pub fn owner_pid(&self) -> u32 {
        self.owner_pid.load(Relaxed)
    }

    /// The owner's start time in clock ticks since boot (`Relaxed`).
    pub fn owner_start_ticks(&self) -> u64 {
        self.owner_start_ticks.load(Relaxed)
    }

    /// Unix nanoseconds of creation (`Relaxed`).
    pub fn created_unix_ns(&self) -> u64 {
        self.created_unix_ns.load(Relaxed)
    }

    /// Bytes the layout needs (`Relaxed`).
    pub fn layout_size(&self) -> u64 {
        self.layout_size.load(Relaxed)
    }

    /// Whether the process that created the region still runs (see [`crate::owner_alive`]).
    pub fn owner_alive(&self) -> bool {
        crate::owner_alive(self.owner_pid(), self.owner_start_ticks())
    }
}
