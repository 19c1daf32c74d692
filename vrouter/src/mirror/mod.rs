//! Mirroring to analyzers: flow (ACL) mirroring, interface (vif RX/TX) mirroring, and the
//! per-flow, per-vif, per-entry and vRouter-wide mirror statistics.
//!
//! - [`region`] (in `vrouter_abi::mirror`, with the mirror data model): `<run_dir>/mirror`,
//!   the mirror table as the data plane reads it plus the per-entry packet/byte/error counters
//!   (read live by the `mirror` tool);
//! - [`encap`]: the analyzer's nexthop, the outer header template of an entry (Juniper
//!   header or VXLAN), per-copy patching and the metadata TLVs;
//! - [`control`]: the mirror table kept in step with the region: entries from
//!   `[[analyzer]]` and from the control socket;
//! - `dp` (feature `dataplane`): the per-lcore copy path and its accounting.

pub mod control;
pub mod encap;

#[cfg(feature = "dataplane")]
pub mod dp;

pub use control::{ControlError, MirrorControl};
pub use vrouter_abi::mirror::region;
pub use vrouter_abi::mirror::region::{
    entry_json, EntryStats, MirrorReader, MirrorRegion, MirrorRegionError, SlotEntry, MIRROR_FILE_NAME,
};
