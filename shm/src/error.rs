//! [`RegionError`]: the one error type of creating and opening region files.

use std::path::PathBuf;

/// Errors creating or opening a region file. `kind` names the region ("stats region",
/// "flow table", "mirror region", "trace region"); every message names it and the path.
#[derive(Debug, thiserror::Error)]
pub enum RegionError {
    /// No file: no vRouter has run with this run directory (or it was removed).
    #[error("vRouter is not running (no {kind} at {})", .path.display())]
    NotRunning {
        /// The region ("stats region", "flow table", ...).
        kind: &'static str,
        /// The region file (or the temporary file being built).
        path: PathBuf,
    },
    /// The file exists but this user may not read it; `hint` says who may and what to do.
    #[error("permission denied opening the {kind} at {}: {hint}", .path.display())]
    PermissionDenied {
        /// The region ("stats region", "flow table", ...).
        kind: &'static str,
        /// The region file (or the temporary file being built).
        path: PathBuf,
        /// Who may read the file, and what to do instead.
        hint: &'static str,
    },
    /// The file is shorter than its header (`what` = "header") or than the size its header
    /// declares (`what` = "header's layout").
    #[error("{}: {kind} file is {found} bytes, shorter than the {needed} bytes its {what} needs", .path.display())]
    ShortFile {
        /// The region ("stats region", "flow table", ...).
        kind: &'static str,
        /// The region file (or the temporary file being built).
        path: PathBuf,
        /// What needs the bytes: "header", "header's layout" or "size".
        what: &'static str,
        /// The file's (or mapping's) length.
        found: u64,
        /// The bytes needed.
        needed: u64,
    },
    /// The file does not start with the region's magic (not this kind of region, or one
    /// whose creator has not finished writing it).
    #[error("{}: bad magic {found:#018x} (expected {expected:#018x}): not a complete {kind}", .path.display())]
    BadMagic {
        /// The region ("stats region", "flow table", ...).
        kind: &'static str,
        /// The region file (or the temporary file being built).
        path: PathBuf,
        /// The value in the file.
        found: u64,
        /// The value this build expects.
        expected: u64,
    },
    /// The file was written with another layout version.
    #[error("{}: {kind} layout version {found} (expected {expected}): the reader and the vRouter come from different builds", .path.display())]
    BadVersion {
        /// The region ("stats region", "flow table", ...).
        kind: &'static str,
        /// The region file (or the temporary file being built).
        path: PathBuf,
        /// The value in the file.
        found: u32,
        /// The value this build expects.
        expected: u32,
    },
    /// A size, count or offset in the header disagrees with this build's layout.
    #[error("{}: {kind} header field {field} is {found} (expected {expected})", .path.display())]
    LayoutMismatch {
        /// The region ("stats region", "flow table", ...).
        kind: &'static str,
        /// The region file (or the temporary file being built).
        path: PathBuf,
        /// The header field.
        field: &'static str,
        /// The value in the file.
        found: u64,
        /// The value this build expects.
        expected: u64,
    },
    /// The process that created the region is gone (its pid no longer runs, or runs a
    /// process with another start time); returned unless the caller accepts stale regions.
    #[error("{}: the {kind}'s owner (pid {pid}) is not running: the region is from its last run", .path.display())]
    StaleOwner {
        /// The region ("stats region", "flow table", ...).
        kind: &'static str,
        /// The region file (or the temporary file being built).
        path: PathBuf,
        /// The owner pid recorded in the header.
        pid: u32,
    },
    /// Bad arguments to a region's create function.
    #[error("{kind}: {msg}")]
    InvalidArgument {
        /// The region ("stats region", "flow table", ...).
        kind: &'static str,
        /// What is wrong with the arguments.
        msg: String,
    },
    /// A system call failed; `context` says which step ("creating", "mapping", ...).
    #[error("{kind}: {context} {}: {source}", .path.display())]
    Io {
        /// The region ("stats region", "flow table", ...).
        kind: &'static str,
        /// The step that failed ("creating", "mapping", ...).
        context: &'static str,
        /// The file or directory the step worked on.
        path: PathBuf,
        /// The system error.
        #[source]
        source: std::io::Error,
    },
}

impl RegionError {
    /// The region kind the error is about.
    pub fn kind(&self) -> &'static str {
        match self {
            RegionError::NotRunning { kind, .. }
            | RegionError::PermissionDenied { kind, .. }
            | RegionError::ShortFile { kind, .. }
            | RegionError::BadMagic { kind, .. }
            | RegionError::BadVersion { kind, .. }
            | RegionError::LayoutMismatch { kind, .. }
            | RegionError::StaleOwner { kind, .. }
            | RegionError::InvalidArgument { kind, .. }
            | RegionError::Io { kind, .. } => kind,
        }
    }

    /// The path the error is about (`None` for [`RegionError::InvalidArgument`]).
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            RegionError::NotRunning { path, .. }
            | RegionError::PermissionDenied { path, .. }
            | RegionError::ShortFile { path, .. }
            | RegionError::BadMagic { path, .. }
            | RegionError::BadVersion { path, .. }
            | RegionError::LayoutMismatch { path, .. }
            | RegionError::StaleOwner { path, .. }
            | RegionError::Io { path, .. } => Some(path),
            RegionError::InvalidArgument { .. } => None,
        }
    }
}
