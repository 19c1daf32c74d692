//! [`FlowTableError`].

use std::path::{Path, PathBuf};

use crate::defs::Gen;

/// Errors of the flow table and its readers. Variants that correspond to a tf
/// `vr_flow_req` error name it.
#[derive(Debug, thiserror::Error)]
pub enum FlowTableError {
    /// The key's bucket and the overflow area are full (tf `-ENOSPC`,
    /// `VP_DROP_FLOW_TABLE_FULL`).
    #[error("flow table full: bucket {bucket} and the overflow area have no free entry")]
    TableFull { bucket: u32 },

    #[error("flow index {index} out of range (capacity {capacity})")]
    BadIndex { index: u32, capacity: u32 },

    /// The entry is not active (tf `-ENOENT`).
    #[error("flow {index} is not active")]
    NotActive { index: u32 },

    /// The entry is delete-marked or evicted (tf `-EINVAL` for DELETE_MARKED).
    #[error("flow {index} is delete-marked or evicted")]
    DeleteMarked { index: u32 },

    /// The caller's generation id is stale: the slot was reused (tf `-EBADF`).
    #[error("flow {index}: generation {expected} given, the entry is at generation {found}")]
    GenMismatch { index: u32, expected: Gen, found: Gen },

    /// A consistent copy could not be taken: the entry kept changing under the reader.
    #[error("flow {index}: entry changed during {attempts} read attempts (torn read)")]
    Torn { index: u32, attempts: u32 },

    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The file does not start with the flow-table magic (not a flow table, or a creator
    /// that has not finished writing it).
    #[error("{path}: bad magic {found:#018x} (expected {expected:#018x}): not a complete flow table")]
    BadMagic { path: PathBuf, found: u64, expected: u64 },

    #[error("{path}: layout version {found}, this build reads version {expected}")]
    VersionMismatch { path: PathBuf, found: u32, expected: u32 },

    /// A size or offset in the header disagrees with this build's layout.
    #[error("{path}: header field {field} is {found}, this build expects {expected}")]
    LayoutMismatch { path: PathBuf, field: &'static str, found: u64, expected: u64 },

    #[error("{path}: file is {found} bytes, its header needs {needed}")]
    TooShort { path: PathBuf, found: u64, needed: u64 },
}

impl FlowTableError {
    pub(crate) fn io(op: &'static str, path: &Path, source: std::io::Error) -> FlowTableError {
        FlowTableError::Io { op, path: path.to_path_buf(), source }
    }
}
