//! The one create path and the one open path of region files, and [`Mapped`], a mapping of
//! one.

use std::fs::{self, File, Permissions};
use std::io::Read;
use std::mem::offset_of;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, Ordering};

use memmap2::{Mmap, MmapMut, MmapOptions};

use crate::error::RegionError;
use crate::header::{RegionHeader, REGION_HEADER_SIZE};
use crate::pod::{self, Bytes, Pod};
use crate::process::{process_start_ticks, unix_time_ns};

/// What identifies a region file of this build: checked by [`open`], written by [`create`].
#[derive(Clone, Copy, Debug)]
pub struct RegionSpec {
    /// Names the region in errors ("stats region", "flow table", ...).
    pub kind: &'static str,
    /// The first 8 bytes of a complete file of this region.
    pub magic: u64,
    /// The region's layout version (bumped on any change of its shared structs).
    pub layout_version: u32,
    /// Size of the region's whole header, the [`RegionHeader`] prefix included.
    pub header_size: usize,
    /// What [`RegionError::PermissionDenied`] tells a user who may not read the file.
    pub denied_hint: &'static str,
}

/// The usual [`RegionSpec::denied_hint`] of a world-readable region.
pub const WORLD_READABLE_HINT: &str = "the file's permissions or a security policy refuse this user";

/// How [`open`] treats the region's owner.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenOptions {
    allow_stale: bool,
}

impl OpenOptions {
    /// Refuses a region whose owner is gone ([`RegionError::StaleOwner`]).
    pub fn new() -> OpenOptions {
        OpenOptions::default()
    }

    /// Also opens a region whose owner is gone: post-mortem readers (the tools show a
    /// stopped vRouter's counters with a warning) and a restarting vRouter reattaching to
    /// its previous state.
    pub fn allow_stale(mut self) -> OpenOptions {
        self.allow_stale = true;
        self
    }

    /// Whether a region whose owner is gone opens.
    pub fn allows_stale(&self) -> bool {
        self.allow_stale
    }
}

/// How [`create`] builds the file.
#[derive(Clone, Copy, Debug)]
pub struct CreateOptions {
    /// Permission bits, set explicitly whatever the umask.
    pub mode: u32,
    /// Bytes the layout needs (stored in the header's `layout_size`).
    pub layout_size: u64,
    /// Length of the file, `>= layout_size` (e.g. rounded up to a huge page).
    pub file_size: u64,
    /// Fault every page in at creation (not on the data plane's first packets), and ask
    /// for transparent huge pages where the filesystem allows them.
    pub populate: bool,
}

impl CreateOptions {
    /// A file of exactly `size` bytes with permissions `mode`.
    pub fn new(size: u64, mode: u32) -> CreateOptions {
        CreateOptions { mode, layout_size: size, file_size: size, populate: false }
    }
}

/// A region's own header check found a field that disagrees with this build's layout;
/// [`open`] turns it into [`RegionError::LayoutMismatch`] with the kind and path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// The header field.
    pub field: &'static str,
    /// The value in the file.
    pub found: u64,
    /// The value this build expects.
    pub expected: u64,
}

impl Mismatch {
    /// `Ok` if `found == expected`, else the mismatch of `field`.
    pub fn check(field: &'static str, found: u64, expected: u64) -> Result<(), Mismatch> {
        if found == expected {
            Ok(())
        } else {
            Err(Mismatch { field, found, expected })
        }
    }
}

enum Map {
    Ro(Mmap),
    Rw(MmapMut),
}

/// A mapped region file: read-only from [`open`], read-write from [`create`] and [`adopt`].
///
/// The mapping is never truncated by the vRouter (a new region replaces the file by
/// rename), so its bytes stay valid as long as the `Mapped` lives, wherever it moves.
pub struct Mapped {
    map: Map,
    kind: &'static str,
    path: PathBuf,
    dev_ino: (u64, u64),
}

impl std::fmt::Debug for Mapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mapped").field("kind", &self.kind).field("path", &self.path).field("len", &self.len()).finish()
    }
}

impl Mapped {
    /// The mapped bytes, for [`Pod`] accessors.
    #[inline]
    pub fn bytes(&self) -> Bytes<'_> {
        let (ptr, len) = match &self.map {
            Map::Ro(m) => (m.as_ptr(), m.len()),
            Map::Rw(m) => (m.as_ptr(), m.len()),
        };
        // SAFETY: the mapping lives as long as the borrow of `self`; the file is never
        // truncated (see the type's docs); a `&mut` into it exists only through
        // `init_bytes`, which borrows `self` mutably.
        unsafe { Bytes::new(ptr, len) }
    }

    /// The `T` at `offset` (bounds and alignment checked).
    pub fn get<T: Pod>(&self, offset: usize) -> Option<&T> {
        self.bytes().get(offset)
    }

    /// The common header. Every `Mapped` is at least [`REGION_HEADER_SIZE`] bytes long
    /// and page-aligned.
    pub fn header(&self) -> &RegionHeader {
        self.get(0).expect("a Mapped holds at least the region header")
    }

    /// Start of the mapping (page-aligned).
    pub fn as_ptr(&self) -> *const u8 {
        self.bytes().as_ptr()
    }

    /// Length of the mapping (the file's length when it was mapped).
    pub fn len(&self) -> usize {
        self.bytes().len()
    }

    /// Whether the mapping is empty (never, for a region).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The region file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The region kind ([`RegionSpec::kind`]).
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// Device and inode of the mapped file.
    pub fn dev_ino(&self) -> (u64, u64) {
        self.dev_ino
    }

    /// Whether the path now names another file (the region was re-created) or nothing.
    pub fn is_replaced(&self) -> bool {
        match fs::metadata(&self.path) {
            Ok(m) => (m.dev(), m.ino()) != self.dev_ino,
            Err(_) => true,
        }
    }

    /// Whether the process that created the region still runs (see [`crate::owner_alive`]).
    pub fn owner_alive(&self) -> bool {
        self.header().owner_alive()
    }

    /// The whole mapping as mutable bytes, while [`create`] lets the caller initialise it
    /// (the file is private to this process then).
    fn init_bytes(&mut self) -> &mut [u8] {
        match &mut self.map {
            Map::Rw(m) => &mut m[..],
            Map::Ro(_) => unreachable!("create maps read-write"),
        }
    }
}

/// The fresh, zero-filled mapping [`create`] hands to the region's `init`.
pub struct InitMap<'a>(&'a mut [u8]);

impl InitMap<'_> {
    /// The `T` at `offset` (bounds and alignment checked).
    pub fn get_mut<T: Pod>(&mut self, offset: usize) -> Option<&mut T> {
        pod::get_mut(self.0, offset)
    }

    /// Length of the mapping.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the mapping is empty (never: it holds at least the header).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn io(kind: &'static str, context: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RegionError {
    let path = path.to_path_buf();
    move |source| RegionError::Io { kind, context, path, source }
}

/// The generation of a complete region of this spec (magic and layout version) at `path`.
fn previous_generation(path: &Path, spec: &RegionSpec) -> Option<u64> {
    let mut buf = [0u8; REGION_HEADER_SIZE];
    File::open(path).ok()?.read_exact(&mut buf).ok()?;
    let u64_at = |off: usize| u64::from_ne_bytes(buf[off..off + 8].try_into().expect("8 bytes"));
    let u32_at = |off: usize| u32::from_ne_bytes(buf[off..off + 4].try_into().expect("4 bytes"));
    (u64_at(offset_of!(RegionHeader, magic)) == spec.magic
        && u32_at(offset_of!(RegionHeader, layout_version)) == spec.layout_version)
        .then(|| u64_at(offset_of!(RegionHeader, generation)))
}

/// Builds the region file at `path`: creates the parent directory if needed, writes
/// `opts.file_size` zero bytes under `.<name>.<pid>.tmp` with permissions `opts.mode`, maps
/// it, writes the [`RegionHeader`] prefix (all but `magic`; generation = the previous
/// complete file's of this spec plus one, 1 if none; owner = this process), lets `init`
/// write the region's own header and initial values into the zeroed mapping (it must not
/// touch the prefix), stores `magic` last (`Release`), and renames the file into place: a
/// reader never sees a partial file, and a reader of the previous file keeps a valid
/// mapping. On failure the temporary file is removed.
pub fn create(
    path: &Path,
    spec: &RegionSpec,
    opts: &CreateOptions,
    init: impl FnOnce(&mut InitMap<'_>),
) -> Result<Mapped, RegionError> {
    let kind = spec.kind;
    if opts.file_size < opts.layout_size || opts.layout_size < spec.header_size as u64 {
        return Err(RegionError::InvalidArgument {
            kind,
            msg: format!(
                "file size {} and layout size {} do not hold the {}-byte header",
                opts.file_size, opts.layout_size, spec.header_size
            ),
        });
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let Some(name) = path.file_name() else {
        return Err(RegionError::InvalidArgument { kind, msg: format!("{} has no file name", path.display()) });
    };
    fs::create_dir_all(&dir).map_err(io(kind, "creating directory", &dir))?;
    let generation = previous_generation(path, spec).map_or(1, |g| g.wrapping_add(1).max(1));
    let tmp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    let build = || -> Result<Mapped, RegionError> {
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(opts.mode)
            .open(&tmp)
            .map_err(io(kind, "creating", &tmp))?;
        // The umask may have cleared bits of the creation mode, and an old temporary file
        // of a previous process with the same pid keeps its mode through `open`.
        file.set_permissions(Permissions::from_mode(opts.mode)).map_err(io(kind, "setting the mode of", &tmp))?;
        file.set_len(opts.file_size).map_err(io(kind, "sizing", &tmp))?;
        let meta = file.metadata().map_err(io(kind, "reading metadata of", &tmp))?;
        let mut mo = MmapOptions::new();
        if opts.populate {
            mo.populate();
        }
        // SAFETY: a file private to this process (temporary name) with its final length;
        // nothing truncates it while mapped; the regions access it through Pod types.
        let map = unsafe { mo.map_mut(&file) }.map_err(io(kind, "mapping", &tmp))?;
        if opts.populate {
            // Transparent huge pages where the filesystem allows them (tmpfs with
            // shmem_enabled=advise); hugetlbfs is huge already; errors are harmless.
            let _ = map.advise(memmap2::Advice::HugePage);
        }
        if (map.len() as u64) < opts.file_size {
            let found = map.len() as u64;
            return Err(RegionError::ShortFile {
                kind,
                path: tmp.clone(),
                what: "size",
                found,
                needed: opts.file_size,
            });
        }
        let mut m = Mapped { map: Map::Rw(map), kind, path: path.to_path_buf(), dev_ino: (meta.dev(), meta.ino()) };
        let h = m.header();
        let r = Ordering::Relaxed;
        h.layout_version.store(spec.layout_version, r);
        h.header_size.store(spec.header_size as u32, r);
        h.layout_size.store(opts.layout_size, r);
        h.generation.store(generation, r);
        let pid = std::process::id();
        h.owner_pid.store(pid, r);
        h.owner_start_ticks.store(process_start_ticks(pid), r);
        h.created_unix_ns.store(unix_time_ns(), r);
        init(&mut InitMap(m.init_bytes()));
        // Everything above is visible before the magic (readers: Relaxed load + Acquire fence).
        fence(Ordering::Release);
        m.header().magic.store(spec.magic, Ordering::Release);
        Ok(m)
    };
    let m = build().inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })?;
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io(kind, "renaming the region into place at", path)(e)
    })?;
    Ok(m)
}

/// Opens the region file at `path` read-only and checks, in this order:
///
/// 1. the file exists ([`RegionError::NotRunning`]) and may be read
///    ([`RegionError::PermissionDenied`] with the spec's hint);
/// 2. it holds the region's header ([`RegionError::ShortFile`], `what` "header");
/// 3. `magic` ([`RegionError::BadMagic`]; loaded first, then an `Acquire` fence);
/// 4. `layout_version` ([`RegionError::BadVersion`]);
/// 5. `header_size` ([`RegionError::LayoutMismatch`]);
/// 6. the file holds the `layout_size` the header declares ([`RegionError::ShortFile`],
///    `what` "header's layout");
/// 7. the region's own fields: `check` returns its layout, or the first [`Mismatch`]
///    ([`RegionError::LayoutMismatch`]); it must check its layout against `layout_size`;
/// 8. the owner still runs ([`RegionError::StaleOwner`]), unless `opts` allow stale regions.
pub fn open<L>(
    path: &Path,
    spec: &RegionSpec,
    opts: &OpenOptions,
    check: impl FnOnce(&Mapped) -> Result<L, Mismatch>,
) -> Result<(Mapped, L), RegionError> {
    open_mapped(path, spec, opts, false, check)
}

/// Maps the region file at `path` **read-write** and makes this process its owner: a
/// restarting vRouter continuing the region its previous run left (a crash, a stop, or a
/// planned takeover whose old process has stopped writing).
///
/// The checks are [`open`]'s, steps 1 to 7, with a live owner allowed (the caller has made
/// sure it no longer writes); then the header's owner pid and start time become this
/// process's, so tools see a live owner again. Nothing else in the file changes: the
/// generation and creation time stay (the region's identity), and repairing what a crash
/// may have left half written is the region's own business.
pub fn adopt<L>(
    path: &Path,
    spec: &RegionSpec,
    check: impl FnOnce(&Mapped) -> Result<L, Mismatch>,
) -> Result<(Mapped, L), RegionError> {
    let (m, layout) = open_mapped(path, spec, &OpenOptions::new().allow_stale(), true, check)?;
    let h = m.header();
    let pid = std::process::id();
    h.owner_pid.store(pid, Ordering::Relaxed);
    h.owner_start_ticks.store(process_start_ticks(pid), Ordering::Release);
    Ok((m, layout))
}

fn open_mapped<L>(
    path: &Path,
    spec: &RegionSpec,
    opts: &OpenOptions,
    writable: bool,
    check: impl FnOnce(&Mapped) -> Result<L, Mismatch>,
) -> Result<(Mapped, L), RegionError> {
    let kind = spec.kind;
    let p = || path.to_path_buf();
    let file = match fs::OpenOptions::new().read(true).write(writable).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(RegionError::NotRunning { kind, path: p() }),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(RegionError::PermissionDenied { kind, path: p(), hint: spec.denied_hint })
        }
        Err(e) => return Err(io(kind, "opening", path)(e)),
    };
    let meta = file.metadata().map_err(io(kind, "reading metadata of", path))?;
    let needed = spec.header_size.max(REGION_HEADER_SIZE) as u64;
    if meta.len() < needed {
        return Err(RegionError::ShortFile { kind, path: p(), what: "header", found: meta.len(), needed });
    }
    let map = if writable {
        // SAFETY: a shared read-write mapping of a region file whose previous owner no
        // longer writes (adopt's contract); every access goes through Pod types of atomics.
        // Nothing truncates the file (a new region replaces it by rename).
        Map::Rw(unsafe { MmapMut::map_mut(&file) }.map_err(io(kind, "mapping", path))?)
    } else {
        // SAFETY: a read-only shared mapping. The owner keeps writing while we read; readers
        // only use Relaxed atomic loads of at most 8 bytes, fences, and plain loads of fields
        // written before `magic` and never after. The owner never truncates the file (a new
        // region replaces it by rename), so the mapped range stays backed.
        Map::Ro(unsafe { Mmap::map(&file) }.map_err(io(kind, "mapping", path))?)
    };
    let m = Mapped { map, kind, path: p(), dev_ino: (meta.dev(), meta.ino()) };
    if (m.len() as u64) < needed {
        return Err(RegionError::ShortFile { kind, path: p(), what: "header", found: m.len() as u64, needed });
    }
    let h = m.header();
    let magic = h.magic.load(Ordering::Relaxed);
    // Pairs with the creator's Release fence before it stored the magic.
    fence(Ordering::Acquire);
    if magic != spec.magic {
        return Err(RegionError::BadMagic { kind, path: p(), found: magic, expected: spec.magic });
    }
    let version = h.layout_version();
    if version != spec.layout_version {
        return Err(RegionError::BadVersion { kind, path: p(), found: version, expected: spec.layout_version });
    }
    let mismatch = |e: Mismatch| RegionError::LayoutMismatch {
        kind,
        path: p(),
        field: e.field,
        found: e.found,
        expected: e.expected,
    };
    Mismatch::check("header_size", h.header_size.load(Ordering::Relaxed).into(), spec.header_size as u64)
        .map_err(mismatch)?;
    let layout_size = h.layout_size();
    if (m.len() as u64) < layout_size {
        let found = m.len() as u64;
        return Err(RegionError::ShortFile { kind, path: p(), what: "header's layout", found, needed: layout_size });
    }
    let layout = check(&m).map_err(mismatch)?;
    if !opts.allow_stale && !h.owner_alive() {
        return Err(RegionError::StaleOwner { kind, path: p(), pid: h.owner_pid() });
    }
    Ok((m, layout))
}

pub(crate) mod previous;

#[cfg(test)]
mod tests;
