//! The `repr(C)` structs of the region, their size/offset assertions, and [`RegionRef`],
//! the one place that turns offsets into references.

use std::mem::{offset_of, size_of};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use shm::{Bytes, Pod, RegionHeader, RegionSpec};

pub(crate) use super::counters::{LcoreHead, LcorePerfBlock, VifCounterBlock, VrfCounterBlock};
use super::counters::{VIF_SCALARS, VRF_SCALARS};
use super::perf::{RxqSlot, BURST_SIZE_BUCKETS, PACKET_CYCLES_BUCKETS, RXQ_SLOTS};
use super::vif_info::VifInfo;
use super::{LcoreCounters, LcorePerf, VifCounters, VrfCounters, MAX_LCORES, MAX_VIFS, MAX_VRFS};
use crate::drop_reason::DROP_REASON_COUNT;

pub(crate) const CACHE_LINE: usize = 64;

const fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

/// Padding words that bring `n` u64 words to a multiple of 8 (one cache line).
pub(crate) const fn pad_words(n: usize) -> usize {
    round_up(n, 8) - n
}

/// The file header: the common [`RegionHeader`] prefix, then the region's static fields
/// (written once, before `magic`), then `state` and `heartbeat_ms`, updated by the
/// vRouter's main thread while it runs.
#[repr(C, align(64))]
pub(crate) struct Header {
    /// Magic ([`super::MAGIC`], stored last), version, sizes, generation, owner.
    pub region: RegionHeader,
    pub max_vifs: u32,
    pub n_lcores: u32,
    pub n_drop_reasons: u32,
    pub vif_info_size: u32,
    pub vif_info_offset: u64,
    pub lcore_block_offset: u64,
    pub lcore_block_size: u64,
    pub vif_counter_size: u32,
    pub lcore_head_size: u32,
    pub tsc_hz: u64,
    /// [`super::RegionState`] as u32.
    pub state: AtomicU32,
    pub _pad0: u32,
    /// Unix milliseconds of the creator's last heartbeat.
    pub heartbeat_ms: AtomicU64,
    /// VRF counter blocks per lcore block ([`MAX_VRFS`]), after the vif counter blocks.
    pub max_vrfs: u32,
    pub vrf_counter_size: u32,
    /// Size of the performance block after each lcore head ([`LcorePerfBlock`]).
    pub lcore_perf_size: u32,
    /// [`super::eal::EAL_RECORDED`] and the other `EAL_*` bits; 0 in files of builds before
    /// them (the bytes were reserved, zero): nothing recorded.
    pub eal_flags: u32,
    /// The EAL `--file-prefix` of the vRouter's DPDK process, NUL-padded.
    pub eal_file_prefix: [u8; super::eal::FILE_PREFIX_BYTES],
    pub _reserved: [u64; 5],
}

pub(crate) const HEADER_SIZE: usize = 256;
const _: () = assert!(size_of::<Header>() == HEADER_SIZE);
const _: () = assert!(offset_of!(Header, region) == 0);
const _: () = assert!(offset_of!(Header, max_vifs) == 64);
const _: () = assert!(offset_of!(Header, n_drop_reasons) == 72);
const _: () = assert!(offset_of!(Header, vif_info_offset) == 80);
const _: () = assert!(offset_of!(Header, lcore_block_offset) == 88);
const _: () = assert!(offset_of!(Header, lcore_block_size) == 96);
const _: () = assert!(offset_of!(Header, vif_counter_size) == 104);
const _: () = assert!(offset_of!(Header, lcore_head_size) == 108);
const _: () = assert!(offset_of!(Header, tsc_hz) == 112);
const _: () = assert!(offset_of!(Header, state) == 120);
const _: () = assert!(offset_of!(Header, heartbeat_ms) == 128);
const _: () = assert!(offset_of!(Header, max_vrfs) == 136);
const _: () = assert!(offset_of!(Header, vrf_counter_size) == 140);
const _: () = assert!(offset_of!(Header, lcore_perf_size) == 144);
const _: () = assert!(offset_of!(Header, eal_flags) == 148);
const _: () = assert!(offset_of!(Header, eal_file_prefix) == 152);
const _: () = assert!(offset_of!(Header, _reserved) == 216);
// SAFETY: repr(C), integers and atomics only (the prefix included), explicit padding
// (size and offsets asserted above), no pointers: offsets only.
unsafe impl Pod for Header {}

/// What identifies a stats region of this build (see [`shm::open`]).
pub(crate) const SPEC: RegionSpec = RegionSpec {
    kind: super::REGION_KIND,
    magic: super::MAGIC,
    layout_version: super::LAYOUT_VERSION,
    header_size: HEADER_SIZE,
    denied_hint: shm::WORLD_READABLE_HINT,
};

pub(crate) const LCORE_HEAD_SIZE: usize = CACHE_LINE + round_up(DROP_REASON_COUNT * 8, CACHE_LINE);
const _: () = assert!(size_of::<LcoreHead>() == LCORE_HEAD_SIZE);
const _: () = assert!(offset_of!(LcoreHead, drops) == CACHE_LINE);
const _: () = assert!(offset_of!(LcoreHead, busy_polls) == 0);
const _: () = assert!(offset_of!(LcoreHead, invalid_vif) == 16);
const _: () = assert!(offset_of!(LcoreHead, mirror_packets) == 24);
const _: () = assert!(offset_of!(LcoreHead, mirror_errors) == 40);
const _: () = assert!(offset_of!(LcoreHead, icmp_errors_suppressed) == 56);
const _: () = assert!(LCORE_HEAD_SIZE & (CACHE_LINE - 1) == 0);
// SAFETY: repr(C), atomics and integers only, explicit padding (size asserted), no pointers.
unsafe impl Pod for LcoreHead {}

pub(crate) const LCORE_PERF_SIZE: usize = 20 * CACHE_LINE;
const _: () = assert!(size_of::<LcorePerfBlock>() == LCORE_PERF_SIZE);
const _: () = assert!(offset_of!(LcorePerfBlock, busy_cycles) == 0);
const _: () = assert!(offset_of!(LcorePerfBlock, burst_cycles) == 32);
const _: () = assert!(offset_of!(LcorePerfBlock, burst_cycles_max) == 40);
const _: () = assert!(offset_of!(LcorePerfBlock, rx_queues) == 56);
const _: () = assert!(offset_of!(LcorePerfBlock, burst_sizes) == CACHE_LINE);
const _: () = assert!(offset_of!(LcorePerfBlock, packet_cycles) == 2 * CACHE_LINE);
const _: () = assert!(offset_of!(LcorePerfBlock, rxqs) == 4 * CACHE_LINE);
const _: () = assert!(2 * CACHE_LINE + PACKET_CYCLES_BUCKETS * 8 == 4 * CACHE_LINE);
const _: () = assert!(CACHE_LINE + BURST_SIZE_BUCKETS * 8 <= 2 * CACHE_LINE);
const _: () = assert!(size_of::<RxqSlot>() == 32 && 4 * CACHE_LINE + RXQ_SLOTS * 32 == LCORE_PERF_SIZE);
// SAFETY: repr(C), atomics and integers only (RxqSlot: four AtomicU64, repr(C), size
// asserted), explicit padding (size and offsets asserted), no pointers.
unsafe impl Pod for LcorePerfBlock {}

/// Offset of the first vif counter block in an lcore block: after the head and the
/// performance block.
pub(crate) const VIF_BLOCKS_OFFSET: usize = LCORE_HEAD_SIZE + LCORE_PERF_SIZE;

pub(crate) const VIF_COUNTER_SIZE: usize = round_up((VIF_SCALARS + DROP_REASON_COUNT) * 8, CACHE_LINE);
const _: () = assert!(size_of::<VifCounterBlock>() == VIF_COUNTER_SIZE);
const _: () = assert!(offset_of!(VifCounterBlock, rx_packets) == 0);
const _: () = assert!(offset_of!(VifCounterBlock, tx_errors) == 40);
const _: () = assert!(offset_of!(VifCounterBlock, mirror_packets) == 48);
const _: () = assert!(offset_of!(VifCounterBlock, mirror_errors) == 64);
const _: () = assert!(offset_of!(VifCounterBlock, drops) == 72);
const _: () = assert!(VIF_COUNTER_SIZE & (CACHE_LINE - 1) == 0);
// SAFETY: repr(C), atomics and integers only, explicit padding (size asserted), no pointers.
unsafe impl Pod for VifCounterBlock {}

pub(crate) const VRF_COUNTER_SIZE: usize = round_up(VRF_SCALARS * 8, CACHE_LINE);
const _: () = assert!(size_of::<VrfCounterBlock>() == VRF_COUNTER_SIZE);
const _: () = assert!(VRF_COUNTER_SIZE == 2 * CACHE_LINE);
const _: () = assert!(offset_of!(VrfCounterBlock, discards) == 0);
const _: () = assert!(offset_of!(VrfCounterBlock, udp_mpls_tunnels) == 56);
const _: () = assert!(offset_of!(VrfCounterBlock, no_route_drops) == 88);
const _: () = assert!(offset_of!(VrfCounterBlock, _pad) == VRF_SCALARS * 8);
// SAFETY: repr(C), atomics and integers only, explicit padding (size asserted), no pointers.
unsafe impl Pod for VrfCounterBlock {}

pub(crate) const VIF_INFO_SIZE: usize = 320;
const _: () = assert!(size_of::<VifInfo>() == VIF_INFO_SIZE);
const _: () = assert!(std::mem::align_of::<VifInfo>() <= CACHE_LINE);
const _: () = assert!(HEADER_SIZE & (std::mem::align_of::<VifInfo>() - 1) == 0);

/// Sizes and offsets of a region with `max_vifs` vifs and `n_lcores` lcores (and
/// [`MAX_VRFS`] VRF blocks per lcore).
///
/// ```text
/// lcore block = LcoreHead + LcorePerfBlock + VifCounterBlock[max_vifs] + VrfCounterBlock[max_vrfs]
///                                                                      ^ vrf_blocks_offset (in the block)
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    pub max_vifs: usize,
    pub n_lcores: usize,
    pub max_vrfs: usize,
    pub vif_info_offset: usize,
    pub lcore_block_offset: usize,
    pub lcore_block_size: usize,
    /// Offset of the first VRF block inside an lcore block.
    pub vrf_blocks_offset: usize,
    pub file_size: usize,
}

impl Layout {
    /// `None` if either count exceeds its maximum (the arithmetic cannot overflow then).
    pub fn new(max_vifs: usize, n_lcores: usize) -> Option<Layout> {
        if max_vifs > MAX_VIFS || n_lcores > MAX_LCORES {
            return None;
        }
        let vif_info_offset = HEADER_SIZE;
        let lcore_block_offset =
            round_up(vif_info_offset.checked_add(max_vifs.checked_mul(VIF_INFO_SIZE)?)?, CACHE_LINE);
        let vrf_blocks_offset = VIF_BLOCKS_OFFSET.checked_add(max_vifs.checked_mul(VIF_COUNTER_SIZE)?)?;
        let max_vrfs = MAX_VRFS;
        let lcore_block_size = vrf_blocks_offset.checked_add(max_vrfs.checked_mul(VRF_COUNTER_SIZE)?)?;
        let file_size = lcore_block_offset.checked_add(n_lcores.checked_mul(lcore_block_size)?)?;
        Some(Layout {
            max_vifs,
            n_lcores,
            max_vrfs,
            vif_info_offset,
            lcore_block_offset,
            lcore_block_size,
            vrf_blocks_offset,
            file_size,
        })
    }

    /// Offset of lcore `core`'s block head (`core < n_lcores`, unchecked here).
    pub fn head_offset(&self, core: usize) -> usize {
        self.lcore_block_offset + core * self.lcore_block_size
    }

    /// Offset of lcore `core`'s performance block (`core < n_lcores`, unchecked here).
    pub fn perf_offset(&self, core: usize) -> usize {
        self.head_offset(core) + LCORE_HEAD_SIZE
    }

    /// Offset of vif `vif`'s counter block in lcore `core`'s block (both in range,
    /// unchecked here).
    pub fn vif_block_offset(&self, core: usize, vif: usize) -> usize {
        self.head_offset(core) + VIF_BLOCKS_OFFSET + vif * VIF_COUNTER_SIZE
    }

    /// Offset of VRF `vrf`'s counter block in lcore `core`'s block (both in range,
    /// unchecked here).
    pub fn vrf_block_offset(&self, core: usize, vrf: usize) -> usize {
        self.head_offset(core) + self.vrf_blocks_offset + vrf * VRF_COUNTER_SIZE
    }
}

#[inline(always)]
pub(crate) fn load(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// Adds `n` to a counter that has exactly one writer thread: a plain load and store
/// (`Relaxed`), so no `lock`-prefixed instruction on the hot path. Concurrent readers see
/// the old or the new value, never a torn one.
#[inline(always)]
pub(crate) fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// A checked view of a mapped region: its bytes + layout, valid for `'a`.
///
/// All offset arithmetic of the module happens here, through [`Bytes`]' bounds- and
/// alignment-checked accessors (none of these is on the per-packet path: the lcores count
/// through [`super::LcoreStats`], which resolves its blocks once). Accessors hand out only
/// shared references to atomics (interior mutability) or copies of plain data.
#[derive(Clone, Copy)]
pub(crate) struct RegionRef<'a> {
    bytes: Bytes<'a>,
    layout: Layout,
}

impl<'a> RegionRef<'a> {
    /// A view of `bytes` (a mapping: page-aligned) with `layout`, which must fit in it.
    pub fn new(bytes: Bytes<'a>, layout: Layout) -> RegionRef<'a> {
        assert!(layout.file_size <= bytes.len(), "mapping shorter than the layout");
        assert!(bytes.as_ptr() as usize & (CACHE_LINE - 1) == 0, "mapping not cache-line aligned");
        RegionRef { bytes, layout }
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    pub fn header(&self) -> &'a Header {
        self.bytes.get(0).expect("the layout holds the header")
    }

    /// The `VifInfo` record in slot `slot` (a copy: the table is static after creation).
    pub fn vif_info(&self, slot: usize) -> Option<VifInfo> {
        if slot >= self.layout.max_vifs {
            return None;
        }
        self.bytes.get::<VifInfo>(self.layout.vif_info_offset + slot * VIF_INFO_SIZE).copied()
    }

    pub fn lcore_head(&self, core: usize) -> Option<&'a LcoreHead> {
        if core >= self.layout.n_lcores {
            return None;
        }
        self.bytes.get(self.layout.head_offset(core))
    }

    pub fn lcore_perf(&self, core: usize) -> Option<&'a LcorePerfBlock> {
        if core >= self.layout.n_lcores {
            return None;
        }
        self.bytes.get(self.layout.perf_offset(core))
    }

    pub fn vif_block(&self, core: usize, vif: usize) -> Option<&'a VifCounterBlock> {
        if core >= self.layout.n_lcores || vif >= self.layout.max_vifs {
            return None;
        }
        self.bytes.get(self.layout.vif_block_offset(core, vif))
    }

    pub fn vrf_block(&self, core: usize, vrf: usize) -> Option<&'a VrfCounterBlock> {
        if core >= self.layout.n_lcores || vrf >= self.layout.max_vrfs {
            return None;
        }
        self.bytes.get(self.layout.vrf_block_offset(core, vrf))
    }

    fn cores(&self, core: Option<usize>) -> std::ops::Range<usize> {
        match core {
            Some(c) if c < self.layout.n_lcores => c..c + 1,
            Some(_) => 0..0,
            None => 0..self.layout.n_lcores,
        }
    }

    /// Counters of `vif`, summed over lcores unless `core` selects one; zeros when either is
    /// out of range.
    pub fn vif_counters(&self, vif: usize, core: Option<usize>) -> VifCounters {
        let mut t = VifCounters::default();
        for c in self.cores(core) {
            let Some(b) = self.vif_block(c, vif) else { continue };
            t.add_block(b);
            t.drops = b.drops.iter().map(load).fold(t.drops, u64::wrapping_add);
        }
        t
    }

    pub fn vif_drops(&self, vif: usize, core: Option<usize>) -> [u64; DROP_REASON_COUNT] {
        let mut out = [0u64; DROP_REASON_COUNT];
        for c in self.cores(core) {
            let Some(b) = self.vif_block(c, vif) else { continue };
            for (o, d) in out.iter_mut().zip(b.drops.iter()) {
                *o = o.wrapping_add(load(d));
            }
        }
        out
    }

    pub fn drops(&self, core: Option<usize>) -> [u64; DROP_REASON_COUNT] {
        let mut out = [0u64; DROP_REASON_COUNT];
        for c in self.cores(core) {
            let Some(h) = self.lcore_head(c) else { continue };
            for (o, d) in out.iter_mut().zip(h.drops.iter()) {
                *o = o.wrapping_add(load(d));
            }
        }
        out
    }

    /// Counters of `vrf`, summed over lcores unless `core` selects one; zeros when either is
    /// out of range.
    pub fn vrf_counters(&self, vrf: usize, core: Option<usize>) -> VrfCounters {
        let mut t = VrfCounters::default();
        for c in self.cores(core) {
            if let Some(b) = self.vrf_block(c, vrf) {
                t.add_block(b);
            }
        }
        t
    }

    pub fn lcore_perf_counters(&self, core: Option<usize>) -> LcorePerf {
        let mut t = LcorePerf::default();
        for c in self.cores(core) {
            let Some(p) = self.lcore_perf(c) else { continue };
            t.add_block(p);
        }
        t
    }

    pub fn lcore_counters(&self, core: Option<usize>) -> LcoreCounters {
        let mut t = LcoreCounters::default();
        for c in self.cores(core) {
            let Some(h) = self.lcore_head(c) else { continue };
            t.add_block(h);
        }
        t
    }
}
