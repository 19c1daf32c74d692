//! The flow table on real huge pages: 2 MiB pages reserved at run time and hugetlbfs mounted
//! in a temporary directory without `size=` (as systemd mounts `/dev/hugepages`), as root.
//! Its own test binary, one test: it changes the machine's huge page pool and mounts, which
//! the other flow-table tests (the automatic path pick) would otherwise see mid-way.

#[path = "support/hugepages.rs"]
mod hugepages;

use flow_table::*;
use hugepages::{Reservation, TempMount, PAGE_2M};
use std::net::Ipv4Addr;
use std::path::Path;

const TEST: &str = "flow-table::hugetlbfs::table_on_hugetlbfs_without_size_option";

fn key(i: u32) -> FlowKey {
    FlowKey::v4(1, 17, Ipv4Addr::from(0x0a00_0000 + i), Ipv4Addr::new(10, 1, 0, 1), 1000 + i as u16, 80)
}

fn pool_free() -> u64 {
    hugepage_pool(PAGE_2M).expect("2 MiB pool").free
}

fn pages_of(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len().div_ceil(PAGE_2M)
}

/// Inserts flows, finds them again through a reader of the run directory.
fn exercise(t: &FlowTable, run_dir: Option<&Path>) {
    for i in 0..100 {
        let k = key(i);
        assert!(matches!(t.lookup_or_hold(&k, k.hash(), 1).unwrap(), Lookup::Created(_)));
    }
    for i in 0..100 {
        let k = key(i);
        assert!(t.lookup(&k, k.hash()).is_some(), "flow {i} lost");
    }
    assert_eq!(t.stats().used_entries, 100);
    if let Some(run) = run_dir {
        let r = FlowTableReader::open_run_dir(run).unwrap();
        assert_eq!(
            std::fs::canonicalize(r.path()).unwrap(),
            t.path(),
            "the reader opens the table through the symlink"
        );
        assert_eq!(r.stats().used_entries, 100);
        assert!(r.lookup(&key(42)).is_some());
    }
}

#[test]
fn table_on_hugetlbfs_without_size_option() {
    // A table of a few 2 MiB pages.
    let cfg = FlowTableConfig { main_entries: 16384, overflow_entries: 4096, max_lcores: 2 };
    let bytes = cfg.file_size().unwrap();
    let table_pages = bytes.div_ceil(PAGE_2M);
    assert!(table_pages >= 2, "the test wants a table of several pages ({bytes} bytes)");
    // Pages for the table on the unlimited mount, one more, and the limited mount's two.
    let res = match Reservation::ensure(table_pages + 3) {
        Ok(r) => r,
        Err(why) => return hugepages::skip(TEST, &why),
    };
    let open = match TempMount::new("pagesize=2M") {
        Ok(m) => m,
        Err(why) => return hugepages::skip(TEST, &why),
    };
    println!("reserved {} more 2 MiB pages; hugetlbfs at {}", res.added, open.path().display());

    // The mount as the pick sees it: its room is the pool's, though statvfs reads 0 there.
    let mounts = hugetlbfs_mounts();
    let mine = mounts.iter().find(|m| m.path == open.path()).expect("the test mount is listed");
    assert_eq!(mine.page_size, PAGE_2M);
    assert!(!mine.size_limited);
    let avail = hugepage_pool(PAGE_2M).unwrap().available_bytes();
    assert_eq!(mine.free_bytes, avail);
    assert!(mine.free_bytes >= bytes, "{mine:?} cannot hold {bytes} bytes");
    // SAFETY: statvfs is plain old data, all-zero is a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let c = std::ffi::CString::new(open.path().to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path and out-pointer.
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
    assert_eq!(st.f_bavail, 0, "statvfs of a hugetlbfs without size= reads 0 free blocks");

    // The automatic pick: the first hugetlbfs mount with room (this one, unless another
    // mount with room, such as a /dev/hugepages, comes before it in /proc/mounts).
    let d = tempfile::tempdir().unwrap();
    let run = d.path().join("run");
    let picked = FlowTable::default_path_for(&run, &cfg).unwrap();
    let first = pick_mount(&mounts, bytes).expect("a mount with room");
    assert_eq!(picked, first.path.join(file_name_for_run_dir(&run)));
    if first.path != open.path() {
        println!("the pick is {} (before the test mount in /proc/mounts)", first.path.display());
    }
    let before = pool_free();
    let t = FlowTable::create_in_run_dir(&run, &cfg).unwrap();
    assert_eq!(t.path(), picked);
    assert_eq!(std::fs::read_link(run.join(FLOW_FILE_NAME)).unwrap(), picked);
    assert_eq!(is_on_hugetlbfs(t.path()), Some(true));
    assert_eq!(pages_of(t.path()), table_pages);
    assert_eq!(before - pool_free(), table_pages, "the table's pages come from the 2 MiB pool");
    exercise(&t, Some(&run));
    drop(t);
    std::fs::remove_file(&picked).unwrap();
    assert_eq!(pool_free(), before, "the pages go back when the file is removed");

    // On the test mount by name, whichever mount the pick chose.
    let path = open.path().join("flow.explicit");
    let t = FlowTable::create(&path, &cfg).unwrap();
    assert_eq!(is_on_hugetlbfs(t.path()), Some(true));
    assert_eq!(before - pool_free(), table_pages);
    exercise(&t, None);
    drop(t);
    std::fs::remove_file(&path).unwrap();

    // A size-limited mount: the room is the limit's (two pages), not the pool's.
    let limited = match TempMount::new("pagesize=2M,size=4M") {
        Ok(m) => m,
        Err(why) => return hugepages::skip(TEST, &why),
    };
    let lm = hugetlbfs_mounts().into_iter().find(|m| m.path == limited.path()).expect("the limited mount is listed");
    assert!(lm.size_limited);
    assert_eq!(lm.free_bytes, 2 * PAGE_2M);
    assert_eq!(pick_mount(std::slice::from_ref(&lm), 2 * PAGE_2M).map(|m| m.path.clone()), Some(lm.path.clone()));
    assert_eq!(pick_mount(std::slice::from_ref(&lm), 2 * PAGE_2M + 1), None);
    let small = limited.path().join("one-page");
    let f = std::fs::File::create(&small).unwrap();
    // SAFETY: a valid fd; fallocate on hugetlbfs takes whole pages from the mount's quota.
    assert_eq!(unsafe { libc::fallocate(std::os::fd::AsRawFd::as_raw_fd(&f), 0, 0, PAGE_2M as i64) }, 0);
    let lm = hugetlbfs_mounts().into_iter().find(|m| m.path == limited.path()).unwrap();
    assert_eq!(lm.free_bytes, PAGE_2M, "one page of the limit used");
    drop(f);
    drop(limited);
    drop(open);
    drop(res);
}
