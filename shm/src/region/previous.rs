//! [`previous`]: what a restarting owner finds of its region file from the last run, and the
//! one set-aside rule for a file it may not trust.
//!
//! A region that continues its previous run's state (counters, rings, flows) reads the
//! previous file *before* [`crate::create`] replaces it, copies what it keeps inside the new
//! region's `init`, and only then renames the new file into place. [`previous`] is the first
//! half of that:
//!
//! - **No file** at the path: [`Previous::None`] (a first start).
//! - **A complete file of this build's spec** that [`crate::open`] accepts (magic, layout
//!   version, header size, declared size, the region's own `check`): [`Previous::Compatible`]
//!   with its read-only mapping and layout. The owner may be gone (a crash or a stop: opened
//!   as with [`crate::OpenOptions::allow_stale`]) or still alive: a planned takeover, where
//!   the old owner has stopped its writers before the new one continues. Which one it was is
//!   [`Mapped::owner_alive`]; making sure nothing writes any more is the caller's part. The
//!   mapping stays valid after the new file replaces the path (the old inode lives on while
//!   mapped; the vRouter never truncates a region file).
//! - **Anything else** (another kind's magic, another layout version, a header or a region
//!   field this build does not accept, a file shorter than its header or its declared
//!   layout, a file this user may not read, an I/O error reading it): never trusted. The file
//!   is renamed to `<path>.old` ([`set_aside_path`]) — one kept copy for a post-mortem, an
//!   earlier `<path>.old` is replaced, so a run directory never grows with restarts — and
//!   [`Previous::SetAside`] says why and where it went. The caller then creates the region
//!   fresh and reports [`Previous::set_aside_line`] as a warning; it is not an error.
//!
//! The rename moves the directory entry: when the path is a symbolic link (a region file
//! kept on another filesystem and linked from the run directory), the link moves to
//! `<path>.old` and still points at the old file.

use std::fs;
use std::path::{Path, PathBuf};

use super::{open, Mapped, Mismatch, OpenOptions, RegionSpec};
use crate::error::RegionError;

/// What [`previous`] found at a region's path.
#[derive(Debug)]
pub enum Previous<L> {
    /// No file: nothing to continue.
    None,
    /// A file of this build's layout: its read-only mapping and the layout `check` returned.
    Compatible(Mapped, L),
    /// A file that could not be trusted, now renamed to `kept_at`.
    SetAside {
        /// Why it was not trusted (names the region kind and the original path).
        reason: RegionError,
        /// Where the file is now (`<path>.old`).
        kept_at: PathBuf,
    },
}

impl<L> Previous<L> {
    /// For [`Previous::SetAside`], the one warning line to show:
    /// `<reason>; kept it at <path>.old and created the region fresh`.
    pub fn set_aside_line(&self) -> Option<String> {
        match self {
            Previous::SetAside { reason, kept_at } => {
                Some(format!("{reason}; kept it at {} and created the region fresh", kept_at.display()))
            }
            Previous::None | Previous::Compatible(..) => None,
        }
    }
}

/// Where [`previous`] keeps an untrusted file found at `path`: `<path>.old`.
pub fn set_aside_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(".old");
    PathBuf::from(s)
}

/// Looks at the region file at `path` before a new one replaces it (see the module docs):
/// opens it as [`crate::open`] does, accepting a gone or a live owner, and sets aside a file
/// it does not accept.
///
/// The one error is failing to set a file aside (renaming it to `<path>.old`); the same
/// directory would then most likely refuse the new region's rename too.
pub fn previous<L>(
    path: &Path,
    spec: &RegionSpec,
    check: impl FnOnce(&Mapped) -> Result<L, Mismatch>,
) -> Result<Previous<L>, RegionError> {
    match open(path, spec, &OpenOptions::new().allow_stale(), check) {
        Ok((m, layout)) => Ok(Previous::Compatible(m, layout)),
        Err(RegionError::NotRunning { .. }) => Ok(Previous::None),
        Err(reason) => {
            let kept_at = set_aside_path(path);
            fs::rename(path, &kept_at).map_err(|source| RegionError::Io {
                kind: spec.kind,
                context: "setting aside the untrusted previous file",
                path: path.to_path_buf(),
                source,
            })?;
            Ok(Previous::SetAside { reason, kept_at })
        }
    }
}
