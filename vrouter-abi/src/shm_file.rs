//! Creation and opening of the vRouter's shared-memory region files (`<run_dir>/mirror`,
//! `<run_dir>/trace`), and the error type both regions use. Creation: a fresh file under a temporary name, sized (zero-filled), mapped,
//! its header written by the caller with `magic` last, then renamed into place, so a reader
//! never sees a partial file and a reader of the previous file keeps a valid mapping.
//!
//! The caller chooses the file mode: the mirror region is world-readable (0644: counters and
//! analyzer state for monitoring tools), the trace region is owner-only (0600: its records
//! carry tenants' packet headers).

use memmap2::{Mmap, MmapMut};
use std::fs::{self, OpenOptions, Permissions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What failed while building a region file, and on which path.
#[derive(Debug)]
pub struct BuildError {
    pub context: &'static str,
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Errors creating or opening a region file; `kind` names the region ("mirror", "trace").
#[derive(Debug, thiserror::Error)]
pub enum RegionError {
    #[error("vRouter is not running (no {kind} region at {})", .path.display())]
    NotRunning { kind: &'static str, path: PathBuf },
    #[error("{}: {what} is {found} (expected {expected}): not a {kind} region of this build", .path.display())]
    BadHeader { kind: &'static str, path: PathBuf, what: &'static str, found: u64, expected: u64 },
    /// The file exists but this user may not read it; `hint` says who may and what to do.
    #[error("permission denied opening {}: {hint}", .path.display())]
    PermissionDenied { path: PathBuf, hint: &'static str },
    #[error("{context} {}: {source}", .path.display())]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{kind} region: {msg}")]
    InvalidArgument { kind: &'static str, msg: String },
}

impl From<BuildError> for RegionError {
    fn from(e: BuildError) -> RegionError {
        RegionError::Io { context: e.context, path: e.path, source: e.source }
    }
}

/// Opens `<run_dir>/<name>` read-only and maps it: a missing file is
/// [`RegionError::NotRunning`], an unreadable one [`RegionError::PermissionDenied`] with
/// `denied_hint`, a file shorter than `header_size` a [`RegionError::BadHeader`]. The caller
/// checks the header itself.
pub fn open_region_file(
    run_dir: &Path,
    name: &str,
    kind: &'static str,
    header_size: usize,
    denied_hint: &'static str,
) -> Result<(Mmap, PathBuf), RegionError> {
    let path = run_dir.join(name);
    let file = match fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(RegionError::NotRunning { kind, path }),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(RegionError::PermissionDenied { path, hint: denied_hint })
        }
        Err(source) => return Err(RegionError::Io { context: "opening", path, source }),
    };
    // SAFETY: mapped read-only; the vRouter never truncates a region file (a new one replaces
    // it by rename), so the mapping stays valid; the regions read it through atomics or
    // header fields written before `magic`.
    let map = match unsafe { Mmap::map(&file) } {
        Ok(m) => m,
        Err(source) => return Err(RegionError::Io { context: "mapping", path, source }),
    };
    if map.len() < header_size {
        let found = map.len() as u64;
        return Err(RegionError::BadHeader { kind, path, what: "file size", found, expected: header_size as u64 });
    }
    Ok((map, path))
}

/// Builds `<run_dir>/<name>`: creates `run_dir` if needed, writes `size` zero bytes under
/// `.<name>.<pid>.tmp` with permissions `mode` (set explicitly, whatever the umask), maps it, lets `init`
/// write the header into the zeroed mapping (storing `magic` last), and renames the file
/// into place. Returns the mapping and the final path; on failure the temporary file is
/// removed.
pub fn create_region_file(
    run_dir: &Path,
    name: &str,
    size: usize,
    mode: u32,
    init: impl FnOnce(&mut MmapMut),
) -> Result<(MmapMut, PathBuf), BuildError> {
    let err = |context: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| BuildError { context, path, source }
    };
    fs::create_dir_all(run_dir).map_err(err("creating run directory", run_dir))?;
    let path = run_dir.join(name);
    let tmp = run_dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let build = || -> Result<MmapMut, BuildError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(err("creating", &tmp))?;
        // An old temporary file of a previous process with the same pid keeps its mode
        // through `open`: set it in any case.
        file.set_permissions(Permissions::from_mode(mode)).map_err(err("setting the mode of", &tmp))?;
        file.set_len(size as u64).map_err(err("sizing", &tmp))?;
        // SAFETY: a file private to this process (temporary name), sized; nothing
        // truncates it while mapped; the regions access it through atomics only.
        let mut map = unsafe { MmapMut::map_mut(&file) }.map_err(err("mapping", &tmp))?;
        init(&mut map);
        Ok(map)
    };
    let map = build().inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })?;
    fs::rename(&tmp, &path).map_err(|source| {
        let _ = fs::remove_file(&tmp);
        BuildError { context: "renaming the region into place at", path: path.clone(), source }
    })?;
    Ok((map, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_names_what_is_wrong() {
        let d = tempfile::tempdir().unwrap();
        match open_region_file(d.path(), "region", "test", 64, "hint") {
            Err(e @ RegionError::NotRunning { .. }) => {
                assert_eq!(
                    e.to_string(),
                    format!("vRouter is not running (no test region at {})", d.path().join("region").display())
                )
            }
            other => panic!("{other:?}"),
        }
        fs::write(d.path().join("region"), [0u8; 10]).unwrap();
        match open_region_file(d.path(), "region", "test", 64, "hint") {
            Err(RegionError::BadHeader { kind: "test", what: "file size", found: 10, expected: 64, .. }) => {}
            other => panic!("{other:?}"),
        }
        create_region_file(d.path(), "region", 4096, 0o644, |m| m[..4].copy_from_slice(b"HDR!")).unwrap();
        let (map, path) = open_region_file(d.path(), "region", "test", 64, "hint").unwrap();
        assert_eq!((&map[..4], map.len(), path), (&b"HDR!"[..], 4096, d.path().join("region")));
    }

    #[test]
    fn builds_under_a_temporary_name_and_renames() {
        let d = tempfile::tempdir().unwrap();
        let run = d.path().join("run");
        let (map, path) = create_region_file(&run, "region", 8192, 0o644, |m| m[..4].copy_from_slice(b"HDR!")).unwrap();
        assert_eq!(path, run.join("region"));
        assert_eq!(map.len(), 8192);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!((&bytes[..4], bytes.len()), (&b"HDR!"[..], 8192));
        assert!(bytes[4..].iter().all(|&b| b == 0));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        // Only the final file is left.
        let names: Vec<_> = std::fs::read_dir(&run).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("region")]);
    }

    #[test]
    fn the_mode_is_the_callers_whatever_was_there() {
        let d = tempfile::tempdir().unwrap();
        // A stale temporary file of a process with our pid, world-readable.
        let stale = d.path().join(format!(".private.{}.tmp", std::process::id()));
        std::fs::write(&stale, b"old").unwrap();
        std::fs::set_permissions(&stale, Permissions::from_mode(0o666)).unwrap();
        let (_map, path) = create_region_file(d.path(), "private", 4096, 0o600, |_| {}).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn a_failure_names_the_step_and_path() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        let e = create_region_file(&file, "region", 4096, 0o644, |_| {}).unwrap_err();
        assert_eq!((e.context, e.path.as_path()), ("creating run directory", file.as_path()));
    }
}
