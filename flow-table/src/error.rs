//! [`FlowTableError`].

use std::path::Path;

use shm::RegionError;

use crate::defs::Gen;

/// Errors of the flow table and its readers. Variants that correspond to a tf
/// `vr_flow_req` error name it.
#[derive(Debug, thiserror::Error)]
pub enum FlowTableError {
    /// The key's bucket and the overflow area are full (tf `-ENOSPC`,
    /// `VP_DROP_FLOW_TABLE_FULL`).
    #[error("flow table full: bucket {bucket} and the overflow area have no free entry")]
    TableFull {
        /// Main-table bucket of the key.
        bucket: u32,
    },

    /// A flow index at or beyond the table's capacity (main plus overflow entries).
    #[error("flow index {index} out of range (capacity {capacity})")]
    BadIndex {
        /// The index given.
        index: u32,
        /// Entries in the table (main plus overflow).
        capacity: u32,
    },

    /// The entry is not active (tf `-ENOENT`).
    #[error("flow {index} is not active")]
    NotActive {
        /// The flow index.
        index: u32,
    },

    /// The entry is delete-marked or evicted (tf `-EINVAL` for DELETE_MARKED).
    #[error("flow {index} is delete-marked or evicted")]
    DeleteMarked {
        /// The flow index.
        index: u32,
    },

    /// The caller's generation id is stale: the slot was reused (tf `-EBADF`).
    #[error("flow {index}: generation {expected} given, the entry is at generation {found}")]
    GenMismatch {
        /// The flow index.
        index: u32,
        /// The generation the caller holds.
        expected: Gen,
        /// The entry's current generation.
        found: Gen,
    },

    /// A consistent copy could not be taken: the entry kept changing under the reader.
    #[error("flow {index}: entry changed during {attempts} read attempts (torn read)")]
    Torn {
        /// The flow index.
        index: u32,
        /// Read attempts made before giving up.
        attempts: u32,
    },

    /// A request the table refuses (table sizes, flag bits the caller may not set, a MIRROR
    /// flag without a mirror index, a reverse key equal to the key; tf `-EINVAL`).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// Creating, opening or checking the table file (missing, unreadable, short, bad
    /// magic, other layout version, a header field that disagrees with this build, a
    /// creator that is gone, a failed system call): the shared region error, which names
    /// the region ("flow table") and the path.
    #[error(transparent)]
    Region(#[from] RegionError),
}

impl FlowTableError {
    pub(crate) fn io(context: &'static str, path: &Path, source: std::io::Error) -> FlowTableError {
        FlowTableError::Region(RegionError::Io {
            kind: crate::layout::SPEC.kind,
            context,
            path: path.to_path_buf(),
            source,
        })
    }
}
