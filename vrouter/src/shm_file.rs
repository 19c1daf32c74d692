//! Creation of the vRouter's shared-memory region files (`<run_dir>/mirror`,
//! `<run_dir>/trace`): a fresh file under a temporary name, sized (zero-filled), mapped,
//! its header written by the caller with `magic` last, then renamed into place, so a reader
//! never sees a partial file and a reader of the previous file keeps a valid mapping.
//!
//! The caller chooses the file mode: the mirror region is world-readable (0644: counters and
//! analyzer state for monitoring tools), the trace region is owner-only (0600: its records
//! carry tenants' packet headers).

use memmap2::MmapMut;
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
