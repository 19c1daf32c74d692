//! The memory-mapped counters region: `<run_dir>/stats`.
//!
//! The vRouter creates the file at start ([`StatsRegion::create`]); its forwarding lcores
//! count packets, bytes, errors and drops, per vif and per VRF, into it ([`LcoreStats`]);
//! operator tools in other
//! processes map it read-only and read it live ([`StatsReader`]), without any call into the
//! vRouter.
//!
//! # File layout (all little-endian, native `repr(C)`, no pointers: only offsets)
//!
//! ```text
//! offset 0                  Header (256 bytes, 64-byte aligned; starts with the common
//!                           shm::RegionHeader: magic, version, sizes, generation, owner)
//! vif_info_offset (= 256)   VifInfo[max_vifs]            (320 bytes each, static after start)
//! lcore_block_offset        lcore block 0                (lcore_block_size bytes)
//!                           lcore block 1 ...            (n_lcores blocks)
//!
//! lcore block = LcoreHead  (64 bytes of poll counters + drops[DROP_REASON_COUNT], padded to 64)
//!             + LcorePerfBlock (1280 bytes: busy/idle cycles, bursts, histograms, RX queue
//!                               slots; see `perf`)
//!             + VifCounterBlock[max_vifs]   (rx/tx packets, bytes, errors + drops[], padded to 64)
//!             + VrfCounterBlock[max_vrfs]   (VrfCounters, 128 bytes; max_vrfs = MAX_VRFS)
//! ```
//!
//! Every size and offset is recorded in the header and checked by the reader, and the
//! layout structs carry `const` size/offset assertions. Changing anything (including
//! appending a [`DropReason`](crate::drop_reason::DropReason)) must bump [`LAYOUT_VERSION`].
//!
//! # Concurrency protocol
//!
//! - **Creation.** The file is built under a temporary name, its header written with
//!   `magic == 0`, then `magic` is stored last with `Release` ordering, and only then is the
//!   file renamed to `stats`. A reader therefore can only ever open a complete file; an
//!   older reader keeps its mapping of the previous file (the old inode), which is never
//!   truncated, so it cannot fault. `generation` is the previous file's generation plus one.
//! - **Restart.** [`StatsRegion::create_continuing`] seeds the new file, before its rename,
//!   with the counters of the previous run's file at the same path (per lcore block, or
//!   summed into block 0 when the lcore count changed; per vif id of the new vif set; per
//!   drop reason; per VRF), so the counters the tools show continue and never go backwards;
//!   a previous file of another layout is set aside as `stats.old` instead
//!   ([`crate::continued`]).
//! - **Counters.** Each lcore block is written by exactly one thread (the [`LcoreStats`]
//!   handle is `Send` but not `Sync`, and [`StatsRegion::lcore`] hands each index out once).
//!   A single writer does not need a read-modify-write instruction: counters are bumped with
//!   `load(Relaxed)` + `store(Relaxed)` (no `lock` prefix). Readers sum with `Relaxed` loads
//!   and may see a counter a few increments behind, never a torn value.
//! - **Readers** map the file `PROT_READ`. Rust's atomics documentation allows only
//!   `Relaxed` loads of at most 8 bytes on read-only memory, which is all the reader does
//!   (followed by `fence(Acquire)`). Static fields (header sizes, `VifInfo`) are written
//!   before `magic` and never again, so they are read with plain loads after `magic` checks.
//! - **Liveness.** The vRouter's main thread stores a unix-ms heartbeat about once a second
//!   and sets `state` to stopped on a clean exit; [`StatsReader::liveness`] reports a region
//!   whose creator died (its pid and start time, [`shm::owner_alive`]) or stopped beating
//!   as [`Liveness::Stale`].

/// The stats region's name in [`shm::RegionError`] messages.
pub const REGION_KIND: &str = "stats region";

mod continuing;
mod counters;
mod eal;
mod layout;
pub mod perf;
mod reader;
mod vif_info;
mod writer;

#[cfg(test)]
mod tests;

pub use counters::{CounterField, LcoreCounters, LcorePerf, VifCounters, VrfCounters};
pub use eal::{EalFacts, FILE_PREFIX_BYTES};
pub use perf::{LcorePerfStats, RxqUsage};
pub use reader::{HeaderInfo, Liveness, StatsReader};
pub use vif_info::{
    format_uuid, parse_uuid, vif_link_name, vif_type_key, vif_type_name, vif_vhost_mode_name, VifFlag, VifInfo,
    VifInfoOwned, VIF_FLAGS, VIF_FLAG_DHCP_ENABLED, VIF_FLAG_DROP_NEW_FLOWS, VIF_FLAG_ETREE_ROOT,
    VIF_FLAG_FILTERING_OFFLOAD, VIF_FLAG_IGMP_ENABLED, VIF_FLAG_L2_ENABLED, VIF_FLAG_L3_ENABLED, VIF_FLAG_MAC_LEARN,
    VIF_FLAG_MAC_PROXY, VIF_FLAG_MIRROR_NOTAG, VIF_FLAG_MIRROR_RX, VIF_FLAG_MIRROR_TX, VIF_FLAG_MONITORED,
    VIF_FLAG_NATIVE_VLAN_TAG, VIF_FLAG_NO_ARP_PROXY, VIF_FLAG_PMD, VIF_FLAG_POLICY_ENABLED, VIF_FLAG_PROMISCUOUS,
    VIF_FLAG_SERVICE_IF, VIF_FLAG_TX_CSUM_OFFLOAD, VIF_FLAG_UNKNOWN_UC_FLOOD, VIF_FLAG_VHOST_PHYS,
    VIF_FLAG_VLAN_OFFLOAD, VIF_FLAG_XCONNECT, VIF_LINK_DOWN, VIF_LINK_UP, VIF_NO_MIRROR, VIF_TYPE_AGENT, VIF_TYPE_HOST,
    VIF_TYPE_PHYSICAL, VIF_TYPE_VIRTUAL, VIF_UNSET_NH, VIF_VHOST_CLIENT, VIF_VHOST_SERVER,
};
pub use writer::{LcoreStats, StatsRegion};

/// `b"VRSTATS1"` read as a little-endian u64; the first 8 bytes of a valid region.
pub const MAGIC: u64 = u64::from_le_bytes(*b"VRSTATS1");
/// Version of the file layout; bumped on any layout change (including new drop reasons;
/// 5: the common region header prefix; 6: per-VRF counter blocks; 7: the `Link Down` drop
/// reason and the vif record's link and vhost-user bytes; 8: the per-lcore performance block).
pub const LAYOUT_VERSION: u32 = 8;
/// File name of the region inside the run directory.
pub const STATS_FILE_NAME: &str = "stats";
/// Largest `max_vifs` a region may have (vif ids are `u16`).
pub const MAX_VIFS: usize = 1 << 16;
/// Largest number of forwarding lcores a region may have (the one shared bound,
/// [`crate::MAX_LCORES`]).
pub use crate::limits::MAX_LCORES;
/// VRF ids with a counter block in every lcore block (ids `0..MAX_VRFS`, the one shared
/// bound [`crate::MAX_VRFS`]).
pub use crate::limits::MAX_VRFS;
/// A running region whose heartbeat is older than this is reported [`Liveness::Stale`].
pub const STALE_HEARTBEAT_MS: u64 = 5_000;

/// The `state` word of the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum RegionState {
    /// The creator is forwarding (or starting to).
    Running = 1,
    /// The creator stopped cleanly; the counters are final.
    Stopped = 2,
}

/// Region-wide totals (sum over lcores and vifs) for the periodic summary line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Packets received on all vifs.
    pub rx_packets: u64,
    /// Bytes received on all vifs.
    pub rx_bytes: u64,
    /// Receive errors on all vifs.
    pub rx_errors: u64,
    /// Packets sent on all vifs.
    pub tx_packets: u64,
    /// Bytes sent on all vifs.
    pub tx_bytes: u64,
    /// Packets the vifs' TX queues did not take.
    pub tx_errors: u64,
    /// Sum of the global (per-lcore) drop counters over all reasons.
    pub drops: u64,
    /// Poll-loop iterations that received at least one packet.
    pub busy_polls: u64,
    /// Poll-loop iterations that received nothing.
    pub idle_polls: u64,
    /// Counter updates ignored because the vif id was >= `max_vifs`.
    pub invalid_vif: u64,
    /// `mir_tpkts`, `mir_bytes` and failed mirror copies.
    pub mir_tpkts: u64,
    /// Bytes of mirror copies sent, encapsulation included (tf `mir_bytes`).
    pub mir_bytes: u64,
    /// Mirror copies that were due but not sent.
    pub mir_errors: u64,
}

/// Errors creating or opening a stats region: the common region error (kind "stats
/// region"); bad arguments to [`StatsRegion::create`] or [`VifInfo::from_config`] are
/// [`shm::RegionError::InvalidArgument`].
pub type StatsError = shm::RegionError;

/// Milliseconds since the unix epoch (0 if the clock is before 1970).
pub fn unix_time_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
