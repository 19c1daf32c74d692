//! The vRouter's shared-memory flow table (DOCS TODO).

pub mod hash;

mod defs;
mod error;
mod key;
mod layout;
mod path;
mod reader;
mod snapshot;
mod table;

pub use defs::*;
pub use error::FlowTableError;
pub use hash::{flow_hash_v4, flow_hash_v6, tunnel_source_port};
pub use key::{FlowKey, KEY_WORDS};
pub use layout::{EntryState, FlowEntry, BUCKET_WIDTH, LAYOUT_VERSION, MAGIC, MAX_ENTRIES, MAX_LCORES};
pub use path::{file_name_for_run_dir, hugetlbfs_mounts, process_alive, process_start_ticks, HugetlbfsMount, FLOW_FILE_NAME};
pub use reader::FlowTableReader;
pub use snapshot::{FlowSnapshot, HeaderInfo, TableStats, SNAPSHOT_ATTEMPTS};
pub use table::{FlowTable, FlowTableConfig, FlowUpdate, Lookup, ReclaimStats};
