//! Port and flow mirroring: the mirror table and the Juniper-header metadata.
//!
//! What this crate holds now: [`MirrorIndex`] (the one-byte index flows and vifs carry, 255 =
//! no mirror), validated [`MirrorEntry`] analyzer definitions with the datapath flag word they
//! imply, the fixed 255-slot [`MirrorTable`], and the encoder/decoder for the metadata TLVs that
//! precede a mirrored frame when the Juniper header is used ([`metadata`]). The vRouter builds
//! on these (`vrouter::mirror`): the shared mirror region the data plane reads, the copy and
//! encapsulation path, and the per-analyzer / per-flow / per-interface mirror counters.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod entry;
pub mod index;
pub mod metadata;
pub mod table;

pub use entry::{
    EntryError, MirrorEncap, MirrorEntry, MirrorFlags, NhMode, DEFAULT_ANALYZER_PORT, MAX_ANALYZER_NAME_LEN, MAX_VNI,
};
pub use index::{IndexError, MirrorIndex, MAX_MIRROR_INDICES};
pub use metadata::{
    decode_metadata, encode_metadata, flow_metadata, interface_rx_metadata, interface_tx_metadata, split_metadata,
    MetaTlv, MetadataError, FLAG_INGRESS, MAX_METADATA_LEN,
};
pub use table::{MirrorTable, TableError};
