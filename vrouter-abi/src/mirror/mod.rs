//! Port and flow mirroring as other processes see it: the mirror table, its shared-memory
//! region and the Juniper-header metadata.
//!
//! [`MirrorIndex`] (the one-byte index flows and vifs carry, 255 = no mirror), validated
//! [`MirrorEntry`] analyzer definitions with the datapath flag word they imply, the fixed
//! 255-slot [`MirrorTable`], the encoder/decoder for the metadata TLVs that precede a mirrored
//! frame when the Juniper header is used ([`metadata`]), and [`region`]: `<run_dir>/mirror`,
//! the table as the data plane reads it plus the per-entry counters (read live by the `mirror`
//! tool). The vRouter builds on these (`vrouter::mirror`): the copy and encapsulation path and
//! the control of the table.

// The data model is plain safe code with every public item documented; only the region maps
// shared memory.
#[forbid(unsafe_code)]
#[warn(missing_docs)]
pub mod entry;
#[forbid(unsafe_code)]
#[warn(missing_docs)]
pub mod index;
#[forbid(unsafe_code)]
#[warn(missing_docs)]
pub mod loss;
#[forbid(unsafe_code)]
#[warn(missing_docs)]
pub mod metadata;
#[forbid(unsafe_code)]
#[warn(missing_docs)]
pub mod reconcile;
pub mod region;
#[forbid(unsafe_code)]
#[warn(missing_docs)]
pub mod table;

pub use entry::{
    EntryError, MirrorEncap, MirrorEntry, MirrorFlags, NhMode, DEFAULT_ANALYZER_PORT, MAX_ANALYZER_NAME_LEN, MAX_VNI,
};
pub use index::{IndexError, MirrorIndex, MAX_MIRROR_INDICES};
pub use loss::{LossCounts, LOSS_REASONS, N_LOSS_REASONS};
pub use metadata::{
    decode_metadata, encode_metadata, flow_metadata, interface_metadata, interface_rx_metadata, interface_tx_metadata,
    split_metadata, MetaTlv, MetadataError, FLAG_INGRESS, MAX_METADATA_LEN,
};
pub use reconcile::{Balance, FlowShare};
pub use region::{
    entry_json, CopyKind, EntryStats, MirrorReader, MirrorRegion, MirrorRegionError, SlotEntry, MIRROR_FILE_NAME,
};
pub use table::{MirrorTable, TableError};
