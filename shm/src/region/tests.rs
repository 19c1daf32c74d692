use std::io::{Seek, SeekFrom, Write};
use std::mem::size_of;
use std::sync::atomic::AtomicU32;

use super::*;
use crate::owner_alive;

const SPEC: RegionSpec = RegionSpec {
    kind: "test region",
    magic: u64::from_le_bytes(*b"SHMTEST1"),
    layout_version: 3,
    header_size: 128,
    denied_hint: "hint",
};

/// The region's own header of the test spec: the prefix, then one field.
#[repr(C, align(64))]
struct TestHeader {
    region: RegionHeader,
    slots: AtomicU32,
    _pad: [u32; 15],
}
const _: () = assert!(size_of::<TestHeader>() == 128);
// SAFETY: repr(C), integers and atomics only, no implicit padding (size asserted).
unsafe impl Pod for TestHeader {}

fn check_slots(m: &Mapped) -> Result<u32, Mismatch> {
    let h = m.get::<TestHeader>(0).expect("header checked by open");
    let slots = h.slots.load(Ordering::Relaxed);
    Mismatch::check("layout_size", h.region.layout_size(), 4096)?;
    Mismatch::check("slots", slots.into(), 8)?;
    Ok(slots)
}

fn make(dir: &Path) -> PathBuf {
    let path = dir.join("region");
    create(&path, &SPEC, &CreateOptions::new(4096, 0o644), |m| {
        m.get_mut::<TestHeader>(0).unwrap().slots = AtomicU32::new(8);
    })
    .unwrap();
    path
}

fn strict(path: &Path) -> Result<(Mapped, u32), RegionError> {
    open(path, &SPEC, &OpenOptions::new(), check_slots)
}

fn write_at(path: &Path, off: usize, bytes: &[u8]) {
    let mut f = fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(off as u64)).unwrap();
    f.write_all(bytes).unwrap();
}

/// A pid that no longer runs: a child that has exited and been reaped.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn create_writes_the_prefix_and_open_reads_it() {
    let d = tempfile::tempdir().unwrap();
    let path = make(d.path());
    let (m, slots) = strict(&path).unwrap();
    assert_eq!(slots, 8);
    let h = m.header();
    assert_eq!(h.magic.load(Ordering::Relaxed), SPEC.magic);
    assert_eq!((h.layout_version(), h.header_size.load(Ordering::Relaxed)), (3, 128));
    assert_eq!((h.layout_size(), h.generation()), (4096, 1));
    assert_eq!(h.owner_pid(), std::process::id());
    assert!(h.owner_start_ticks() > 0 && m.owner_alive());
    assert!(h.created_unix_ns() > 0);
    assert_eq!((m.kind(), m.path(), m.len()), ("test region", path.as_path(), 4096));
    assert!(!m.is_replaced());
}

#[test]
fn generation_is_the_previous_files_plus_one() {
    let d = tempfile::tempdir().unwrap();
    let path = make(d.path());
    let (old, _) = strict(&path).unwrap();
    make(d.path());
    let (new, _) = strict(&path).unwrap();
    assert_eq!((old.header().generation(), new.header().generation()), (1, 2));
    assert!(old.is_replaced(), "the old mapping sees the file was replaced");
    // A file of another layout version does not count: the next one starts at 1 again.
    write_at(&path, offset_of!(RegionHeader, layout_version), &99u32.to_ne_bytes());
    make(d.path());
    assert_eq!(strict(&path).unwrap().0.header().generation(), 1);
}

#[test]
fn open_checks_in_order_and_names_kind_and_path() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("region");
    let shown = path.display().to_string();
    let err = |r: Result<(Mapped, u32), RegionError>| {
        let e = r.expect_err("must fail");
        let s = e.to_string();
        assert!(s.contains("test region") && s.contains(&shown), "{s}");
        assert_eq!((e.kind(), e.path()), ("test region", Some(path.as_path())));
        e
    };
    let e = err(strict(&path));
    assert!(matches!(e, RegionError::NotRunning { .. }), "{e:?}");
    assert_eq!(e.to_string(), format!("vRouter is not running (no test region at {shown})"));

    fs::write(&path, [0u8; 100]).unwrap();
    let e = err(strict(&path));
    assert!(matches!(e, RegionError::ShortFile { what: "header", found: 100, needed: 128, .. }), "{e:?}");

    make(d.path());
    write_at(&path, 0, &0u64.to_ne_bytes());
    let e = err(strict(&path));
    assert!(matches!(e, RegionError::BadMagic { found: 0, expected, .. } if expected == SPEC.magic), "{e:?}");

    make(d.path());
    write_at(&path, 8, &99u32.to_ne_bytes());
    let e = err(strict(&path));
    assert!(matches!(e, RegionError::BadVersion { found: 99, expected: 3, .. }), "{e:?}");

    make(d.path());
    write_at(&path, 12, &64u32.to_ne_bytes());
    let e = err(strict(&path));
    assert!(matches!(e, RegionError::LayoutMismatch { field: "header_size", found: 64, expected: 128, .. }));

    make(d.path());
    write_at(&path, 16, &8192u64.to_ne_bytes());
    let e = err(strict(&path));
    assert!(matches!(e, RegionError::ShortFile { what: "header's layout", found: 4096, needed: 8192, .. }));

    make(d.path());
    write_at(&path, 64, &9u32.to_ne_bytes());
    let e = err(strict(&path));
    assert!(matches!(e, RegionError::LayoutMismatch { field: "slots", found: 9, expected: 8, .. }), "{e:?}");
    assert!(e.to_string().contains("header field slots is 9 (expected 8)"), "{e}");

    make(d.path());
    assert!(strict(&path).is_ok());
}

#[test]
fn a_dead_owner_is_stale_unless_allowed() {
    let d = tempfile::tempdir().unwrap();
    let path = make(d.path());
    let pid = dead_pid();
    write_at(&path, offset_of!(RegionHeader, owner_pid), &pid.to_ne_bytes());
    match strict(&path) {
        Err(e @ RegionError::StaleOwner { pid: p, .. }) => {
            assert_eq!(p, pid);
            let s = e.to_string();
            assert!(
                s.contains("test region") && s.contains(&path.display().to_string()) && s.contains(&pid.to_string())
            );
        }
        other => panic!("expected StaleOwner, got {:?}", other.err()),
    }
    let (m, _) = open(&path, &SPEC, &OpenOptions::new().allow_stale(), check_slots).unwrap();
    assert!(!m.owner_alive());
    assert_eq!(m.header().owner_pid(), pid);
}

#[test]
fn a_reused_pid_is_stale() {
    let d = tempfile::tempdir().unwrap();
    let path = make(d.path());
    // Our own (live) pid with another start time: a different process than the owner.
    let ticks = process_start_ticks(std::process::id()) + 1;
    write_at(&path, offset_of!(RegionHeader, owner_start_ticks), &ticks.to_ne_bytes());
    assert!(!owner_alive(std::process::id(), ticks));
    assert!(matches!(strict(&path), Err(RegionError::StaleOwner { .. })));
    assert!(open(&path, &SPEC, &OpenOptions::new().allow_stale(), check_slots).is_ok());
}

#[test]
fn builds_under_a_temporary_name_and_renames() {
    let d = tempfile::tempdir().unwrap();
    let run = d.path().join("run");
    let path = run.join("region");
    let m = create(&path, &SPEC, &CreateOptions::new(8192, 0o644), |m| {
        assert_eq!(m.len(), 8192);
        *m.get_mut::<u32>(128).unwrap() = u32::from_le_bytes(*b"HDR!");
    })
    .unwrap();
    assert_eq!((m.path(), m.len()), (path.as_path(), 8192));
    let bytes = fs::read(&path).unwrap();
    assert_eq!((&bytes[128..132], bytes.len()), (&b"HDR!"[..], 8192));
    assert!(bytes[132..].iter().all(|&b| b == 0));
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
    // Only the final file is left.
    let names: Vec<_> = fs::read_dir(&run).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("region")]);
}

#[test]
fn the_mode_is_the_callers_whatever_was_there() {
    let d = tempfile::tempdir().unwrap();
    // A stale temporary file of a process with our pid, world-readable.
    let stale = d.path().join(format!(".private.{}.tmp", std::process::id()));
    fs::write(&stale, b"old").unwrap();
    fs::set_permissions(&stale, Permissions::from_mode(0o666)).unwrap();
    let m = create(&d.path().join("private"), &SPEC, &CreateOptions::new(4096, 0o600), |_| {}).unwrap();
    let mode = fs::metadata(m.path()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn a_failure_names_the_step_and_path() {
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("not-a-dir");
    fs::write(&file, b"x").unwrap();
    let e = create(&file.join("region"), &SPEC, &CreateOptions::new(4096, 0o644), |_| {}).unwrap_err();
    match &e {
        RegionError::Io { kind: "test region", context: "creating directory", path, .. } => assert_eq!(path, &file),
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().starts_with(&format!("test region: creating directory {}: ", file.display())), "{e}");
}

#[test]
fn create_refuses_a_size_without_room_for_the_header() {
    let d = tempfile::tempdir().unwrap();
    let e = create(&d.path().join("r"), &SPEC, &CreateOptions::new(64, 0o644), |_| {}).unwrap_err();
    assert!(matches!(e, RegionError::InvalidArgument { kind: "test region", .. }), "{e:?}");
    assert!(!d.path().join("r").exists());
}

mod continuing {
    use super::super::previous::{previous, set_aside_path, Previous};
    use super::*;

    fn look(path: &Path) -> Previous<u32> {
        previous(path, &SPEC, check_slots).unwrap()
    }

    /// The set-aside outcome: the file moved to `<path>.old` with its bytes, nothing left at
    /// the path, and a one-line reason naming the kind, the path and `what`.
    fn assert_set_aside(path: &Path, before: &[u8], what: &str) -> RegionError {
        match look(path) {
            Previous::SetAside { reason, kept_at } => {
                assert_eq!(kept_at, set_aside_path(path));
                assert_eq!(kept_at.file_name().unwrap(), "region.old");
                assert_eq!(fs::read(&kept_at).unwrap(), before, "the old file is kept as it was");
                assert!(!path.exists(), "nothing is left to be trusted at the path");
                let line = Previous::<u32>::SetAside { reason, kept_at: kept_at.clone() }.set_aside_line().unwrap();
                assert!(!line.contains('\n'), "{line}");
                assert!(line.contains("test region") && line.contains(&path.display().to_string()), "{line}");
                assert!(line.contains(what), "{line}");
                assert!(line.ends_with(&format!("kept it at {} and created the region fresh", kept_at.display())));
                match look(&kept_at) {
                    Previous::SetAside { reason, .. } => reason,
                    other => panic!("the .old file is as untrusted: {other:?}"),
                }
            }
            other => panic!("expected SetAside, got {other:?}"),
        }
    }

    #[test]
    fn no_file_is_none() {
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(look(&d.path().join("region")), Previous::None));
    }

    #[test]
    fn a_compatible_file_is_mapped_and_left_in_place() {
        let d = tempfile::tempdir().unwrap();
        let path = make(d.path());
        match look(&path) {
            Previous::Compatible(m, slots) => {
                assert_eq!(slots, 8);
                assert!(m.owner_alive(), "a live owner is accepted (a planned takeover)");
                assert!(Previous::Compatible(m, slots).set_aside_line().is_none());
            }
            other => panic!("{other:?}"),
        }
        assert!(path.exists() && !set_aside_path(&path).exists());
        // A gone owner (crash or stop) too.
        write_at(&path, offset_of!(RegionHeader, owner_pid), &dead_pid().to_ne_bytes());
        match look(&path) {
            Previous::Compatible(m, _) => assert!(!m.owner_alive()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_mapping_outlives_the_replacement() {
        let d = tempfile::tempdir().unwrap();
        let path = make(d.path());
        write_at(&path, 200, &0xfeed_u32.to_ne_bytes());
        let Previous::Compatible(old, _) = look(&path) else { panic!("compatible") };
        let new = create(&path, &SPEC, &CreateOptions::new(4096, 0o644), |m| {
            // Inside init, the previous run's bytes are still readable.
            let v = old.get::<u32>(200).copied().unwrap();
            *m.get_mut::<u32>(200).unwrap() = v + 1;
            m.get_mut::<TestHeader>(0).unwrap().slots = AtomicU32::new(8);
        })
        .unwrap();
        assert!(old.is_replaced());
        assert_eq!((*old.get::<u32>(200).unwrap(), *new.get::<u32>(200).unwrap()), (0xfeed, 0xfeee));
        assert_eq!(new.header().generation(), 2);
    }

    #[test]
    fn another_layout_version_is_set_aside() {
        let d = tempfile::tempdir().unwrap();
        let path = make(d.path());
        write_at(&path, offset_of!(RegionHeader, layout_version), &99u32.to_ne_bytes());
        let before = fs::read(&path).unwrap();
        let e = assert_set_aside(&path, &before, "layout version 99 (expected 3)");
        assert!(matches!(e, RegionError::BadVersion { found: 99, expected: 3, .. }), "{e:?}");
        // The next region starts over.
        make(d.path());
        assert_eq!(strict(&path).unwrap().0.header().generation(), 1);
    }

    #[test]
    fn a_truncated_file_is_set_aside() {
        let d = tempfile::tempdir().unwrap();
        let path = make(d.path());
        fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(2048).unwrap();
        let before = fs::read(&path).unwrap();
        let e = assert_set_aside(&path, &before, "2048 bytes, shorter than the 4096 bytes");
        assert!(matches!(e, RegionError::ShortFile { what: "header's layout", found: 2048, needed: 4096, .. }));
        // Shorter than the header itself.
        fs::write(&path, [1u8; 10]).unwrap();
        assert_set_aside(&path, &[1u8; 10], "10 bytes, shorter than the 128 bytes its header needs");
    }

    #[test]
    fn other_magic_and_a_rejected_region_field_are_set_aside() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("region");
        fs::write(&path, vec![7u8; 4096]).unwrap();
        assert_set_aside(&path, &[7u8; 4096], "bad magic 0x0707070707070707");
        make(d.path());
        write_at(&path, 64, &9u32.to_ne_bytes());
        let before = fs::read(&path).unwrap();
        assert_set_aside(&path, &before, "header field slots is 9 (expected 8)");
    }

    #[test]
    fn one_old_copy_is_kept() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("region");
        fs::write(&path, b"first bad file").unwrap();
        assert!(matches!(look(&path), Previous::SetAside { .. }));
        fs::write(&path, b"second bad file").unwrap();
        assert!(matches!(look(&path), Previous::SetAside { .. }));
        assert_eq!(fs::read(set_aside_path(&path)).unwrap(), b"second bad file");
        let names: Vec<_> = fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("region.old")]);
    }

    #[test]
    fn a_failed_set_aside_is_an_error_naming_the_step() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("region");
        fs::write(&path, b"bad").unwrap();
        // A directory in the way of the rename.
        fs::create_dir(set_aside_path(&path)).unwrap();
        fs::write(set_aside_path(&path).join("x"), b"x").unwrap();
        let e = previous(&path, &SPEC, check_slots).unwrap_err();
        assert!(
            matches!(&e, RegionError::Io { context: "setting aside the untrusted previous file", path: p, .. } if p == &path),
            "{e:?}"
        );
        assert!(path.exists(), "left where it was");
    }
}
