//! The vRouter on huge pages: DPDK memory from a hugetlbfs mount (`no_huge = false`,
//! `huge_dir`) and the flow table on hugetlbfs (the automatic pick), 2 MiB pages reserved at
//! run time as root; traffic through the pcap harness with frames compared byte for byte and
//! exact counters; the pages all go back. And the one-line start error when the pages are
//! missing.

mod common;
#[path = "../../flow-table/tests/support/hugepages.rs"]
mod huge;

use common::*;
use flow_table::{hugepage_pool, hugetlbfs_mounts, is_on_hugetlbfs, FlowTableReader, FLOW_FILE_NAME};
use huge::{Reservation, TempMount, PAGE_2M};
use std::path::{Path, PathBuf};
use std::process::Command;
use vrouter::drop_reason::DropReason;
use vrouter::stats::StatsReader;

const MIB: u64 = 1 << 20;
/// DPDK's memory in this test (`-m`).
const MEMORY_MB: u64 = 128;
const FLOW_ENTRIES: u32 = 65536;

fn pool_free() -> u64 {
    hugepage_pool(PAGE_2M).expect("2 MiB pool").free
}

/// What the running vRouter holds on huge pages, read while it runs.
struct Seen {
    /// Bytes of its mappings of files under the DPDK mount (DPDK's memory, files unlinked).
    dpdk_mapped: u64,
    /// Names of those files (as `/proc/PID/maps` shows them).
    dpdk_files: Vec<String>,
    /// 2 MiB pages the pool lost since before the start.
    pages_taken: u64,
    /// Where `run_dir/flow` points.
    table: PathBuf,
}

/// Mappings of files under `dir` but `except` in `/proc/pid/maps`: total bytes and the file
/// names.
fn mapped_under(pid: u32, dir: &Path, except: &Path) -> (u64, Vec<String>) {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mut bytes = 0;
    let mut files = Vec::new();
    for l in maps.lines() {
        let mut f = l.split_whitespace();
        let range = f.next().unwrap_or("");
        let Some(path) = f.nth(4) else { continue };
        if !Path::new(path).starts_with(dir) || Path::new(path) == except {
            continue;
        }
        let (a, b) = range.split_once('-').unwrap();
        bytes += u64::from_str_radix(b, 16).unwrap() - u64::from_str_radix(a, 16).unwrap();
        files.push(l.split_whitespace().skip(5).collect::<Vec<_>>().join(" "));
    }
    (bytes, files)
}

#[test]
fn forwards_with_dpdk_memory_and_the_flow_table_on_hugepages() {
    const TEST: &str = "vrouter::hugepages::forwards_with_dpdk_memory_and_the_flow_table_on_hugepages";
    // DPDK's -m, the table (about 6 pages) and room for DPDK to grow.
    let res = match Reservation::ensure(MEMORY_MB * MIB / PAGE_2M + 48) {
        Ok(r) => r,
        Err(why) => return huge::skip(TEST, &why),
    };
    let mnt = match TempMount::new("pagesize=2M") {
        Ok(m) => m,
        Err(why) => return huge::skip(TEST, &why),
    };
    // Tables other tests left on a hugetlbfs mount go back to the pool now, not while this
    // test counts the pages its vRouter takes.
    remove_orphaned_flow_tables();
    let before = pool_free();

    // vm1 -> vm2 (two packets of one flow), vm2 -> vm1 (the reply), vm1 -> remote over
    // MPLSoUDP, and one to a discard route.
    let ip_a = ipv4_udp(ip4("192.168.1.3"), ip4("192.168.1.4"), 64, 40000, 5201, b"on-hugepages-a");
    let ip_b = ipv4_udp(ip4("192.168.1.4"), ip4("192.168.1.3"), 64, 5201, 40000, b"on-hugepages-b");
    let ip_r = ipv4_udp(ip4("192.168.1.3"), ip4("192.168.2.10"), 64, 40001, 6000, b"to-remote");
    let ip_d = ipv4_udp(ip4("192.168.1.3"), ip4("192.168.9.9"), 64, 40002, 7000, b"discarded");
    let f = |ip: &[u8], src: &str| eth(mac(ROUTER_MAC), mac(src), 0x0800, ip);
    let inputs = Inputs {
        vm1: vec![f(&ip_a, VM1_MAC), f(&ip_a, VM1_MAC), f(&ip_r, VM1_MAC), f(&ip_d, VM1_MAC)],
        vm2: vec![f(&ip_b, VM2_MAC)],
        ..Default::default()
    };

    let mount = mnt.path().to_path_buf();
    let mut seen = None;
    let out = run_live(
        inputs,
        |c| {
            let c = c.replacen(
                "memory_mb = 256",
                // Without packet capture: --huge-unlink, the files go at once (with it, the
                // default, they stay for dpdk-dumpcap until the stop: `tests/dumpcap.rs`).
                &format!("memory_mb = {MEMORY_MB}\nno_huge = false\npdump = false\nhuge_dir = \"{}\"", mount.display()),
                1,
            );
            format!("{c}\n[flow]\nentries = {FLOW_ENTRIES}\n")
        },
        |run_dir| {
            let pid = StatsReader::open(run_dir).unwrap().header().creator_pid;
            let table = std::fs::read_link(run_dir.join(FLOW_FILE_NAME)).expect("run_dir/flow is a symlink");
            let (dpdk_mapped, dpdk_files) = mapped_under(pid, &mount, &table);
            seen = Some(Seen { dpdk_mapped, dpdk_files, pages_taken: before - pool_free(), table });
        },
    );
    let seen = seen.unwrap();
    println!(
        "DPDK mapped {} MiB from {} in {} files; the pool gave {} pages; table {}",
        seen.dpdk_mapped / MIB,
        mount.display(),
        seen.dpdk_files.len(),
        seen.pages_taken,
        seen.table.display()
    );

    // Frames, byte for byte.
    let to_vm2 = eth(mac(VM2_MAC), mac(ROUTER_MAC), 0x0800, &decrement_ttl_v4(&ip_a));
    assert_eq!(out.vm2, vec![to_vm2.clone(), to_vm2]);
    assert_eq!(out.vm1, vec![eth(mac(VM1_MAC), mac(ROUTER_MAC), 0x0800, &decrement_ttl_v4(&ip_b))]);
    let sport = flow_table::tunnel_source_port(flow_table::flow_hash_v4(
        u32::from(ip4("192.168.1.3")),
        u32::from(ip4("192.168.2.10")),
        17,
        40001,
        6000,
    ));
    let mut payload = mpls(40, 64).to_vec();
    payload.extend_from_slice(&decrement_ttl_v4(&ip_r));
    let expect = tunnel_outer(mac(GW_MAC), mac(FABRIC_MAC), ip4("10.10.0.1"), ip4("10.10.0.2"), sport, 6635, &payload);
    assert_eq!(out.fabric, vec![expect]);

    // Counters: in = out + drops, exactly.
    out.assert_accounted(5);
    assert_eq!(out.drop_list(), vec![(DropReason::Discard, 1)]);
    assert_eq!((out.vifs[&1].rx_packets, out.vifs[&2].rx_packets, out.vifs[&0].rx_packets), (4, 1, 0));
    assert_eq!((out.vifs[&2].tx_packets, out.vifs[&1].tx_packets, out.vifs[&0].tx_packets), (2, 1, 1));

    // The flow table sat on a hugetlbfs mount (the first with room in /proc/mounts: this
    // test's, or a /dev/hugepages before it) and counted the flows.
    assert_eq!(is_on_hugetlbfs(&seen.table), Some(true), "{}", seen.table.display());
    let mounts: Vec<PathBuf> = hugetlbfs_mounts().into_iter().map(|m| m.path).collect();
    assert!(mounts.iter().any(|m| seen.table.parent() == Some(m)), "{} not on {mounts:?}", seen.table.display());
    let table_pages = std::fs::metadata(&seen.table).unwrap().len().div_ceil(PAGE_2M);
    let r = FlowTableReader::open_run_dir(&out.run_dir).unwrap();
    let flows: Vec<(String, u64)> =
        r.iter_active().map(|s| (format!("{}:{}", s.key.dst_ip(), s.key.dport()), s.packets)).collect();
    let packets = |k: &str| flows.iter().find(|(f, _)| f == k).map(|f| f.1);
    assert_eq!(packets("192.168.1.4:5201"), Some(2), "{flows:?}");
    assert_eq!(packets("192.168.1.3:40000"), Some(1), "{flows:?}");
    assert_eq!(packets("192.168.2.10:6000"), Some(1), "{flows:?}");
    drop(r);

    // DPDK's memory came from huge_dir: memory_mb of it, in files already unlinked
    // (--huge-unlink); the pool gave that and the table's pages.
    assert!(seen.dpdk_mapped >= MEMORY_MB * MIB, "DPDK mapped {} bytes from {}", seen.dpdk_mapped, mount.display());
    assert!(seen.dpdk_files.iter().all(|f| f.ends_with("(deleted)")), "{:?}", seen.dpdk_files);
    assert!(seen.pages_taken >= MEMORY_MB * MIB / PAGE_2M + table_pages, "{} pages taken", seen.pages_taken);

    // Stopped: DPDK's pages are back, nothing of DPDK's is left on the mount; the table stays
    // (for the tools) until removed.
    assert_eq!(before - pool_free(), table_pages, "only the table's pages are still taken after the stop");
    let left: Vec<PathBuf> = std::fs::read_dir(&mount).unwrap().flatten().map(|e| e.path()).collect();
    assert!(left.iter().all(|p| *p == seen.table), "{left:?}");
    std::fs::remove_file(&seen.table).unwrap();
    assert_eq!(pool_free(), before, "every page back");
    drop(out);
    drop(mnt);
    drop(res);
}

#[test]
fn start_fails_in_one_line_without_enough_free_hugepages() {
    // 1 TiB of DPDK memory is more than any test machine has free: whatever is mounted and
    // reserved, the start stops before the EAL with the one line (no root needed).
    let d = tempfile::tempdir().unwrap();
    let empty = d.path().join("empty.pcap");
    write_pcap(&empty, &[]);
    let vdevs: Vec<String> = (0..3).map(|i| format!("\"net_pcap{i},rx_pcap={}\"", empty.display())).collect();
    let prefix = unique_prefix();
    let cfg = topology(&vdevs.join(", "), &prefix, &d.path().join("run")).replacen(
        "memory_mb = 256",
        "memory_mb = 1048576\nno_huge = false",
        1,
    ) + "\n[flow]\nenabled = false\n";
    let cfg_path = d.path().join("vrouter.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vrouter")).arg("--config").arg(&cfg_path).output().unwrap();
    let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{prefix}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stdout {}\nstderr {stderr}", String::from_utf8_lossy(&out.stdout));
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    let l = lines[0];
    assert!(l.starts_with("vrouter: error: [eal] no_huge = false"), "{l}");
    assert!(l.contains("nr_hugepages") && l.contains("ci/setup.sh --hugepages"), "{l}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("EAL"), "the EAL did not start");
}
