//! The flow table opens through the common region path (`shm::open`): one test per
//! failure, each asserting the exact `RegionError` variant and that the message names the
//! region kind and the path.

use std::io::{Seek, SeekFrom, Write};
use std::mem::offset_of;
use std::path::{Path, PathBuf};

use flow_table::{FlowTable, FlowTableConfig, FlowTableError, FlowTableReader, OpenOptions, RegionError, MAGIC};
use shm::RegionHeader;

fn create(dir: &Path) -> (FlowTable, PathBuf) {
    let path = dir.join("flow");
    let cfg = FlowTableConfig { main_entries: 64, overflow_entries: 64, max_lcores: 2 };
    (FlowTable::create(&path, &cfg).unwrap(), path)
}

fn write_at(path: &Path, off: usize, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(off as u64)).unwrap();
    f.write_all(bytes).unwrap();
}

/// Opens strictly (a gone creator is an error) and returns the region error, after checking
/// that its message names the region kind and the path.
fn open_err(path: &Path) -> RegionError {
    match FlowTableReader::open_with(path, &OpenOptions::new()) {
        Err(FlowTableError::Region(e)) => {
            let s = e.to_string();
            assert!(s.contains("flow table") && s.contains(&path.display().to_string()), "{s}");
            e
        }
        Err(e) => panic!("not a region error: {e:?}"),
        Ok(_) => panic!("opened"),
    }
}

#[test]
fn not_running() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("flow");
    assert!(matches!(open_err(&path), RegionError::NotRunning { kind: "flow table", .. }));
    // The run-dir entry point says the same.
    assert!(matches!(
        FlowTableReader::open_run_dir(d.path()),
        Err(FlowTableError::Region(RegionError::NotRunning { .. }))
    ));
}

#[test]
fn wrong_magic() {
    let d = tempfile::tempdir().unwrap();
    let (_t, path) = create(d.path());
    write_at(&path, 0, b"NOTAFLOW");
    let e = open_err(&path);
    let found = u64::from_ne_bytes(*b"NOTAFLOW");
    assert!(matches!(e, RegionError::BadMagic { found: f, expected: MAGIC, .. } if f == found), "{e:?}");
}

#[test]
fn wrong_version() {
    let d = tempfile::tempdir().unwrap();
    let (_t, path) = create(d.path());
    write_at(&path, offset_of!(RegionHeader, layout_version), &7u32.to_ne_bytes());
    let e = open_err(&path);
    assert!(matches!(e, RegionError::BadVersion { found: 7, expected: flow_table::LAYOUT_VERSION, .. }), "{e:?}");
}

#[test]
fn short_file() {
    let d = tempfile::tempdir().unwrap();
    let (t, path) = create(d.path());
    drop(t);
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(200).unwrap();
    let e = open_err(&path);
    assert!(matches!(e, RegionError::ShortFile { what: "header", found: 200, needed: 512, .. }), "{e:?}");
}

#[test]
fn stale_owner() {
    let d = tempfile::tempdir().unwrap();
    let (_t, path) = create(d.path());
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    write_at(&path, offset_of!(RegionHeader, owner_pid), &dead.to_ne_bytes());
    let e = open_err(&path);
    assert!(matches!(e, RegionError::StaleOwner { pid, .. } if pid == dead), "{e:?}");
    // Post-mortem readers (the tools) still open it, and see the creator is gone.
    let r = FlowTableReader::open(&path).unwrap();
    assert!(!r.creator_alive());
    assert_eq!(r.header().creator_pid, dead);
}
