use std::io::{Seek, SeekFrom, Write};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::*;
use crate::drop_reason::{DropReason, DROP_REASON_COUNT};

fn vifs() -> Vec<VifInfo> {
    vec![
        VifInfo::new(0, VIF_TYPE_PHYSICAL, "fabric0")
            .port(0, 2, 2)
            .mac([0x02, 0, 0, 0, 0, 0x10])
            .ipv4(Ipv4Addr::new(10, 0, 0, 1))
            .flags(VIF_FLAG_L3_ENABLED | VIF_FLAG_L2_ENABLED | VIF_FLAG_PMD)
            .device("net_pcap0")
            .driver("net_pcap"),
        VifInfo::new(3, VIF_TYPE_VIRTUAL, "vm1")
            .port(1, 1, 2)
            .vrf(1)
            .mtu(1500)
            .nh(12)
            .mac([0x02, 0, 0, 0, 1, 1])
            .ipv4(Ipv4Addr::new(192, 168, 1, 3))
            .ipv6("fd00::3".parse().unwrap())
            .flags(VIF_FLAG_L3_ENABLED | VIF_FLAG_L2_ENABLED | VIF_FLAG_PMD | VIF_FLAG_MAC_PROXY)
            .device("net_pcap1")
            .vn_name("default-domain:demo:vn1")
            .vm_uuid(parse_uuid("7c3a5f0e-1b2c-4d5e-8f90-a1b2c3d4e5f6").unwrap())
            .vmi_uuid(parse_uuid("00112233445566778899aabbccddeeff").unwrap()),
    ]
}

fn write_at(path: &std::path::Path, off: u64, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(off)).unwrap();
    f.write_all(bytes).unwrap();
}

#[test]
fn create_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run/vrouter");
    let region = StatsRegion::create(&run_dir, 8, 2, &vifs(), 2_500_000_000).unwrap();
    assert_eq!(region.path(), run_dir.join("stats"));
    let mode = std::fs::metadata(region.path()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o644);
    // No temp file left behind.
    assert_eq!(std::fs::read_dir(&run_dir).unwrap().count(), 1);

    let r = StatsReader::open(&run_dir).unwrap();
    let h = r.header();
    assert_eq!(h.layout_version, LAYOUT_VERSION);
    assert_eq!((h.max_vifs, h.n_lcores, h.n_drop_reasons), (8, 2, DROP_REASON_COUNT));
    assert_eq!(h.creator_pid, std::process::id());
    assert_eq!(h.tsc_hz, 2_500_000_000);
    assert_eq!(h.generation, region.generation());
    assert_eq!(h.file_size, std::fs::metadata(region.path()).unwrap().len());
    assert_eq!(r.liveness(), Liveness::Running);

    let v = r.vifs();
    assert_eq!(v.len(), 2);
    assert_eq!(v[0].id, 0);
    assert_eq!(v[0].name, "fabric0");
    assert_eq!(v[0].type_name(), "Physical");
    assert_eq!(v[0].driver, "net_pcap");
    assert_eq!(v[0].ip6, None);
    assert_eq!(v[0].nh_id, None);
    assert_eq!(v[0].vm_uuid, None);
    assert_eq!(v[0].flag_symbols(), "L3L2Dpdk");
    let vm = &v[1];
    assert_eq!((vm.id, vm.vif_type, vm.port_id, vm.rx_queues, vm.tx_queues), (3, VIF_TYPE_VIRTUAL, 1, 1, 2));
    assert_eq!((vm.vrf, vm.mtu, vm.nh_id), (1, 1500, Some(12)));
    assert_eq!(vm.mac_string(), "02:00:00:00:01:01");
    assert_eq!(vm.ip, Some(Ipv4Addr::new(192, 168, 1, 3)));
    assert_eq!(vm.ip6, Some("fd00::3".parse::<Ipv6Addr>().unwrap()));
    assert_eq!(vm.flag_symbols(), "L3L2DpdkProxy");
    assert_eq!(vm.device, "net_pcap1");
    assert_eq!(vm.vn_name, "default-domain:demo:vn1");
    assert_eq!(format_uuid(&vm.vm_uuid.unwrap()), "7c3a5f0e-1b2c-4d5e-8f90-a1b2c3d4e5f6");
    assert_eq!(format_uuid(&vm.vmi_uuid.unwrap()), "00112233-4455-6677-8899-aabbccddeeff");
    assert_eq!(r.vif(3).as_ref(), Some(vm));
    assert_eq!(r.vif(1), None);
    assert_eq!(r.vif(500), None);
}

#[test]
fn mirror_counters_per_vif_and_vrouter_wide() {
    let dir = tempfile::tempdir().unwrap();
    let region = StatsRegion::create(dir.path(), 4, 2, &vifs(), 0).unwrap();
    let l0 = region.lcore(0).unwrap();
    let l1 = region.lcore(1).unwrap();
    // Interface mirroring of vif 3: counted on the vif and vRouter-wide.
    l0.mirror(Some(3), 150);
    l1.mirror(Some(3), 100);
    // Flow mirroring: vRouter-wide only.
    l0.mirror(None, 70);
    // Failures: an interface-mirror error counts on the vif, a flow-mirror error only as
    // a drop of the input vif; both as vRouter-wide mirror errors and drops by reason.
    l0.mirror_error(Some(3), true, DropReason::MirrorTxFull, 2);
    l1.mirror_error(Some(0), false, DropReason::MirrorNoEntry, 1);
    let r = StatsReader::open(dir.path()).unwrap();
    let v3 = r.vif_counters(3, None);
    assert_eq!((v3.mirror_packets, v3.mirror_bytes, v3.mirror_errors, v3.drops), (2, 250, 2, 2));
    let v0 = r.vif_counters(0, None);
    assert_eq!((v0.mirror_packets, v0.mirror_errors, v0.drops), (0, 0, 1));
    let l = r.lcore_counters(None);
    assert_eq!((l.mirror_packets, l.mirror_bytes, l.mirror_errors), (3, 320, 3));
    assert_eq!(r.lcore_counters(Some(1)).mirror_packets, 1);
    let g = r.drops(None);
    assert_eq!((g[DropReason::MirrorTxFull.index()], g[DropReason::MirrorNoEntry.index()]), (2, 1));
    let t = region.totals();
    assert_eq!((t.mir_tpkts, t.mir_bytes, t.mir_errors), (3, 320, 3));
}

#[test]
fn vrf_counters_per_lcore_and_summed() {
    let dir = tempfile::tempdir().unwrap();
    let region = StatsRegion::create(dir.path(), 4, 2, &vifs(), 0).unwrap();
    let (l0, l1) = (region.lcore(0).unwrap(), region.lcore(1).unwrap());
    l0.vrf_add(1, &VrfCounters { udp_mpls_tunnels: 30, ecmp_composites: 2, ..Default::default() });
    l0.vrf_add(1, &VrfCounters { udp_mpls_tunnels: 2, discards: 1, ..Default::default() });
    l1.vrf_add(1, &VrfCounters { udp_mpls_tunnels: 5, ..Default::default() });
    l1.vrf_add(0, &VrfCounters { receives: 3, ..Default::default() });
    let last = (MAX_VRFS - 1) as u32;
    l1.vrf_add(last, &VrfCounters { vxlan_decaps: 9, ..Default::default() });
    // Out of range: not counted, nothing else touched.
    l1.vrf_add(MAX_VRFS as u32, &VrfCounters { encaps: 1, ..Default::default() });
    let r = StatsReader::open(dir.path()).unwrap();
    assert_eq!(r.max_vrfs(), MAX_VRFS);
    let v1 = r.vrf_counters(1, None);
    assert_eq!(v1, VrfCounters { udp_mpls_tunnels: 37, ecmp_composites: 2, discards: 1, ..Default::default() });
    assert_eq!(r.vrf_counters(1, Some(1)).udp_mpls_tunnels, 5);
    assert_eq!(r.vrf_counters(1, Some(2)), VrfCounters::default(), "no such core");
    assert_eq!(r.vrf_counters(MAX_VRFS as u32, None), VrfCounters::default());
    assert_eq!(region.vrf_counters(last, Some(1)).vxlan_decaps, 9);
    let active: Vec<u32> = r.active_vrfs(None).iter().map(|(v, _)| *v).collect();
    assert_eq!(active, [0, 1, last]);
    assert_eq!(r.active_vrfs(Some(0)).len(), 1);
    // Nothing leaked into the vif or lcore counters.
    assert_eq!(r.vif_counters(3, None), VifCounters::default());
    assert_eq!(r.lcore_counters(None), LcoreCounters::default());
    let h = r.header();
    assert_eq!(h.file_size, std::fs::metadata(region.path()).unwrap().len());
}

#[test]
fn icmp_error_answers_sent_and_suppressed_per_lcore() {
    let dir = tempfile::tempdir().unwrap();
    let region = StatsRegion::create(dir.path(), 4, 2, &vifs(), 0).unwrap();
    let (l0, l1) = (region.lcore(0).unwrap(), region.lcore(1).unwrap());
    l0.icmp_error(true);
    l0.icmp_error(true);
    l0.icmp_error(false);
    l1.icmp_error(false);
    let r = StatsReader::open(dir.path()).unwrap();
    let all = r.lcore_counters(None);
    assert_eq!((all.icmp_errors_sent, all.icmp_errors_suppressed), (2, 2));
    let c1 = r.lcore_counters(Some(1));
    assert_eq!((c1.icmp_errors_sent, c1.icmp_errors_suppressed), (0, 1));
    assert_eq!((all.mirror_packets, all.busy_polls), (0, 0), "no other counter moved");
}

#[test]
fn counters_and_drops_are_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let region = StatsRegion::create(dir.path(), 4, 2, &vifs(), 0).unwrap();
    let l0 = region.lcore(0).unwrap();
    let l1 = region.lcore(1).unwrap();
    l0.rx(3, 2, 200);
    l1.rx(3, 1, 64);
    l0.tx(0, 5, 500);
    l0.rx_error(3);
    l1.tx_error(0, 4);
    l0.drop(Some(3), DropReason::TtlExceeded, 2);
    l1.drop(None, DropReason::InvalidIf, 1);
    l1.drop(Some(0), DropReason::NoL3Route, 3);
    l0.poll(true);
    l0.poll(false);
    l1.poll(false);

    let r = StatsReader::open(dir.path()).unwrap();
    let vm = r.vif_counters(3, None);
    assert_eq!(
        vm,
        VifCounters {
            rx_packets: 3,
            rx_bytes: 264,
            rx_errors: 1,
            tx_packets: 0,
            tx_bytes: 0,
            tx_errors: 0,
            mirror_packets: 0,
            mirror_bytes: 0,
            mirror_errors: 0,
            drops: 2
        }
    );
    assert_eq!(r.vif_counters(3, Some(1)).rx_packets, 1);
    assert_eq!(r.vif_counters(3, Some(7)), VifCounters::default());
    assert_eq!(r.vif_counters(0, None).tx_errors, 4);
    let g = r.drops(None);
    assert_eq!(g[DropReason::TtlExceeded.index()], 2);
    assert_eq!(g[DropReason::InvalidIf.index()], 1);
    assert_eq!(g[DropReason::NoL3Route.index()], 3);
    assert_eq!(g.iter().sum::<u64>(), 6);
    assert_eq!(r.drops(Some(0)).iter().sum::<u64>(), 2);
    let vd = r.vif_drops(3, None);
    assert_eq!(vd[DropReason::TtlExceeded.index()], 2);
    assert_eq!(vd.iter().sum::<u64>(), 2);
    assert_eq!(r.vif_drops(0, Some(1))[DropReason::NoL3Route.index()], 3);
    assert_eq!(
        r.lcore_counters(None),
        LcoreCounters {
            busy_polls: 1,
            idle_polls: 2,
            invalid_vif: 0,
            mirror_packets: 0,
            mirror_bytes: 0,
            mirror_errors: 0,
            icmp_errors_sent: 0,
            icmp_errors_suppressed: 0
        }
    );

    let t = region.totals();
    assert_eq!((t.rx_packets, t.rx_bytes, t.rx_errors), (3, 264, 1));
    assert_eq!((t.tx_packets, t.tx_bytes, t.tx_errors), (5, 500, 4));
    assert_eq!((t.drops, t.busy_polls, t.idle_polls), (6, 1, 2));
}

#[test]
fn concurrent_lcores_and_reader() {
    const N: u64 = 200_000;
    let dir = tempfile::tempdir().unwrap();
    let region = StatsRegion::create(dir.path(), 4, 2, &vifs(), 0).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    // The writers start once the reader has polled, so it reads while they write even
    // when the machine is too busy to schedule it at once.
    let reading = Arc::new(AtomicBool::new(false));

    let reader = {
        let (path, done, reading) = (dir.path().to_path_buf(), Arc::clone(&done), Arc::clone(&reading));
        std::thread::spawn(move || {
            let r = StatsReader::open(&path).unwrap();
            let (mut last_rx, mut last_drops, mut polls) = (0u64, 0u64, 0u64);
            while !done.load(Ordering::Acquire) {
                reading.store(true, Ordering::Release);
                let c = r.vif_counters(3, None);
                let d: u64 = r.drops(None).iter().sum();
                assert!(c.rx_packets >= last_rx, "counters never go backwards");
                assert!(d >= last_drops);
                assert!(c.rx_bytes >= c.rx_packets * 100 || c.rx_packets > 0);
                last_rx = c.rx_packets;
                last_drops = d;
                polls += 1;
            }
            polls
        })
    };
    let writers: Vec<_> = (0..2)
        .map(|i| {
            let l = region.lcore(i).unwrap();
            let reading = Arc::clone(&reading);
            std::thread::spawn(move || {
                while !reading.load(Ordering::Acquire) {
                    std::thread::yield_now();
                }
                for k in 0..N {
                    l.rx(3, 1, 100);
                    l.tx(0, 1, 60);
                    if k % 2 == 0 {
                        l.drop(Some(3), DropReason::Discard, 1);
                    } else {
                        l.drop(None, DropReason::PullFails, 1);
                    }
                    l.poll(k % 3 == 0);
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    done.store(true, Ordering::Release);
    assert!(reader.join().unwrap() > 0);

    let r = StatsReader::open(dir.path()).unwrap();
    let c = r.vif_counters(3, None);
    assert_eq!((c.rx_packets, c.rx_bytes, c.drops), (2 * N, 200 * N, N));
    assert_eq!(r.vif_counters(3, Some(0)).rx_packets, N);
    assert_eq!(r.vif_counters(0, None).tx_bytes, 120 * N);
    let d = r.drops(None);
    assert_eq!(d[DropReason::Discard.index()], N);
    assert_eq!(d[DropReason::PullFails.index()], N);
    let t = region.totals();
    assert_eq!((t.rx_packets, t.tx_packets, t.drops), (2 * N, 2 * N, 2 * N));
    assert_eq!(t.busy_polls + t.idle_polls, 2 * N);
}

#[test]
fn out_of_range_vif_does_not_panic() {
    let dir = tempfile::tempdir().unwrap();
    let region = StatsRegion::create(dir.path(), 4, 1, &[], 0).unwrap();
    let l = region.lcore(0).unwrap();
    l.rx(4, 1, 100);
    l.tx(u16::MAX, 1, 100);
    l.rx_error(9);
    l.tx_error(1000, 2);
    l.drop(Some(4), DropReason::InvalidIf, 1);
    let t = region.totals();
    assert_eq!((t.rx_packets, t.tx_packets, t.rx_errors, t.tx_errors), (0, 0, 0, 0));
    assert_eq!(t.drops, 1, "the global drop counter still counts");
    assert_eq!(t.invalid_vif, 5);
    assert_eq!(region.vif_counters(u16::MAX, None), VifCounters::default());
}

#[test]
fn one_handle_per_lcore() {
    let dir = tempfile::tempdir().unwrap();
    let region = StatsRegion::create(dir.path(), 1, 2, &[], 0).unwrap();
    let a = region.lcore(0).unwrap();
    assert!(region.lcore(0).is_none());
    assert!(region.lcore(2).is_none());
    assert_eq!(a.index(), 0);
    drop(a);
    assert!(region.lcore(0).is_some());
    // The handle keeps the mapping alive after the region is gone.
    let b = region.lcore(1).unwrap();
    drop(region);
    b.rx(0, 1, 1);
}

#[test]
fn invalid_create_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let e = |r: Result<StatsRegion, StatsError>| r.err().expect("must fail").to_string();
    assert!(e(StatsRegion::create(dir.path(), 4, 0, &[], 0)).contains("n_lcores"));
    assert!(e(StatsRegion::create(dir.path(), 0, 1, &[], 0)).contains("max_vifs"));
    assert!(e(StatsRegion::create(dir.path(), 3, 1, &vifs(), 0)).contains("vif id 3"));
    let twice = [VifInfo::new(1, VIF_TYPE_HOST, "a"), VifInfo::new(1, VIF_TYPE_HOST, "b")];
    assert!(e(StatsRegion::create(dir.path(), 3, 1, &twice, 0)).contains("twice"));
    assert!(!dir.path().join(STATS_FILE_NAME).exists());
}

#[test]
fn generation_changes_on_recreate() {
    let dir = tempfile::tempdir().unwrap();
    let a = StatsRegion::create(dir.path(), 2, 1, &[], 0).unwrap();
    let r1 = StatsReader::open(dir.path()).unwrap();
    assert!(!r1.restarted());
    a.lcore(0).unwrap().rx(1, 7, 700);
    drop(a);
    let b = StatsRegion::create(dir.path(), 2, 1, &[], 0).unwrap();
    assert_ne!(b.generation(), r1.generation());
    assert_eq!(b.generation(), r1.generation() + 1);
    // The old reader still reads its (old) mapping safely, and notices the restart.
    assert!(r1.restarted());
    assert_eq!(r1.vif_counters(1, None).rx_packets, 7);
    let r2 = StatsReader::open(dir.path()).unwrap();
    assert_eq!(r2.generation(), b.generation());
    assert_eq!(r2.vif_counters(1, None).rx_packets, 0);
    assert!(!r2.restarted());
    std::fs::remove_file(b.path()).unwrap();
    assert!(r2.restarted());
}

#[test]
fn reader_rejects_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    match StatsReader::open(dir.path()) {
        Err(e @ StatsError::NotRunning { .. }) => {
            assert!(e.to_string().starts_with("vRouter is not running (no stats region at "))
        }
        other => panic!("expected NotRunning, got {:?}", other.err()),
    }

    let path = StatsRegion::create(dir.path(), 2, 1, &[], 0).unwrap().path().to_path_buf();
    write_at(&path, 0, b"XXXXXXXX");
    match StatsReader::open(dir.path()) {
        Err(e @ StatsError::BadMagic { .. }) => {
            assert!(e.to_string().contains("expected 0x"), "{e}")
        }
        other => panic!("expected BadMagic, got {:?}", other.err()),
    }

    StatsRegion::create(dir.path(), 2, 1, &[], 0).unwrap();
    write_at(&path, 8, &99u32.to_le_bytes());
    match StatsReader::open(dir.path()) {
        Err(e @ StatsError::BadVersion { found: 99, .. }) => {
            assert!(e.to_string().contains(&format!("(expected {LAYOUT_VERSION})")), "{e}")
        }
        other => panic!("expected BadVersion, got {:?}", other.err()),
    }

    StatsRegion::create(dir.path(), 2, 1, &[], 0).unwrap();
    write_at(&path, std::mem::offset_of!(layout::Header, n_drop_reasons) as u64, &7u32.to_le_bytes());
    match StatsReader::open(dir.path()) {
        Err(StatsError::LayoutMismatch { field: "n_drop_reasons", found: 7, expected, .. }) => {
            assert_eq!(expected, DROP_REASON_COUNT as u64)
        }
        other => panic!("expected LayoutMismatch, got {:?}", other.err()),
    }

    StatsRegion::create(dir.path(), 2, 1, &[], 0).unwrap();
    write_at(&path, std::mem::offset_of!(layout::Header, max_vrfs) as u64, &8u32.to_le_bytes());
    match StatsReader::open(dir.path()) {
        Err(StatsError::LayoutMismatch { field: "max_vrfs", found: 8, expected, .. }) => {
            assert_eq!(expected, MAX_VRFS as u64)
        }
        other => panic!("expected LayoutMismatch, got {:?}", other.err()),
    }

    let full = StatsRegion::create(dir.path(), 2, 1, &[], 0).unwrap();
    let size = std::fs::metadata(full.path()).unwrap().len();
    drop(full);
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(size - 64).unwrap();
    match StatsReader::open(dir.path()) {
        Err(StatsError::ShortFile { found, needed, .. }) => {
            assert_eq!((found, needed), (size - 64, size))
        }
        other => panic!("expected ShortFile, got {:?}", other.err()),
    }
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(100).unwrap();
    assert!(matches!(StatsReader::open(dir.path()), Err(StatsError::ShortFile { what: "header", .. })));
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(0).unwrap();
    assert!(matches!(StatsReader::open(dir.path()), Err(StatsError::ShortFile { found: 0, .. })));
}

#[test]
fn liveness_states() {
    let dir = tempfile::tempdir().unwrap();
    let region = StatsRegion::create(dir.path(), 1, 1, &[], 0).unwrap();
    let r = StatsReader::open(dir.path()).unwrap();
    let now = unix_time_ms();
    region.set_heartbeat(now);
    assert_eq!(r.liveness_at(now + 1_000), Liveness::Running);
    assert_eq!(r.liveness_at(now + STALE_HEARTBEAT_MS + 1), Liveness::Stale);
    region.heartbeat_now();
    assert_eq!(r.liveness(), Liveness::Running);
    region.set_state(RegionState::Stopped);
    assert_eq!(r.liveness(), Liveness::Stopped);
    assert_eq!(r.header().state, RegionState::Stopped as u32);
    region.set_state(RegionState::Running);
    // A creator pid that does not exist makes a running region stale.
    let path = region.path().to_path_buf();
    drop(region);
    write_at(&path, std::mem::offset_of!(shm::RegionHeader, owner_pid) as u64, &(i32::MAX as u32).to_le_bytes());
    let r = StatsReader::open(dir.path()).unwrap();
    assert_eq!(r.header().creator_pid, i32::MAX as u32);
    assert_eq!(r.liveness(), Liveness::Stale);
}

#[test]
fn uuid_parsing() {
    let u = parse_uuid("7C3A5F0E-1B2C-4D5E-8F90-A1B2C3D4E5F6").unwrap();
    assert_eq!(u[0], 0x7c);
    assert_eq!(u[15], 0xf6);
    assert_eq!(format_uuid(&u), "7c3a5f0e-1b2c-4d5e-8f90-a1b2c3d4e5f6");
    for bad in [
        "",
        "7c3a5f0e-1b2c-4d5e-8f90-a1b2c3d4e5f",
        "7c3a5f0e1b2c-4d5e-8f90-a1b2c3d4e5f6a",
        "zz3a5f0e-1b2c-4d5e-8f90-a1b2c3d4e5f6",
    ] {
        assert!(parse_uuid(bad).is_err(), "{bad}");
    }
}

#[test]
fn text_fields_truncate_at_char_boundary() {
    let long = "é".repeat(40); // 80 bytes
    let v = VifInfo::new(0, VIF_TYPE_HOST, &long).decode();
    assert_eq!(v.name, "é".repeat(16));
}

/// Opens strictly (a gone creator is an error) and returns the region error, after checking
/// that its message names the region kind and the path.
fn strict_open_err(path: &std::path::Path) -> StatsError {
    let e = StatsReader::open_with(path, &shm::OpenOptions::new()).err().expect("must fail");
    let s = e.to_string();
    assert!(s.contains("stats region") && s.contains(&path.display().to_string()), "{s}");
    e
}

#[test]
fn open_not_running() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(STATS_FILE_NAME);
    assert!(matches!(strict_open_err(&path), StatsError::NotRunning { kind: "stats region", .. }));
}

#[test]
fn open_wrong_magic() {
    let dir = tempfile::tempdir().unwrap();
    let region = StatsRegion::create(dir.path(), 2, 1, &[], 0).unwrap();
    write_at(region.path(), 0, b"NOTSTATS");
    let e = strict_open_err(region.path());
    assert!(
        matches!(e, StatsError::BadMagic { found, expected: MAGIC, .. } if found == u64::from_le_bytes(*b"NOTSTATS"))
    );
}

#[test]
fn open_wrong_version() {
    let dir = tempfile::tempdir().unwrap();
    let region = StatsRegion::create(dir.path(), 2, 1, &[], 0).unwrap();
    write_at(region.path(), std::mem::offset_of!(shm::RegionHeader, layout_version) as u64, &3u32.to_le_bytes());
    let e = strict_open_err(region.path());
    assert!(matches!(e, StatsError::BadVersion { found: 3, expected: LAYOUT_VERSION, .. }), "{e:?}");
}

#[test]
fn open_short_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = StatsRegion::create(dir.path(), 2, 1, &[], 0).unwrap().path().to_path_buf();
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(255).unwrap();
    let e = strict_open_err(&path);
    assert!(matches!(e, StatsError::ShortFile { what: "header", found: 255, needed: 256, .. }), "{e:?}");
}

#[test]
fn open_stale_owner() {
    let dir = tempfile::tempdir().unwrap();
    let region = StatsRegion::create(dir.path(), 2, 1, &[], 0).unwrap();
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    write_at(region.path(), std::mem::offset_of!(shm::RegionHeader, owner_pid) as u64, &dead.to_le_bytes());
    let e = strict_open_err(region.path());
    assert!(matches!(e, StatsError::StaleOwner { pid, .. } if pid == dead), "{e:?}");
    // The tools' open accepts it and reports the region stale.
    let r = StatsReader::open(dir.path()).unwrap();
    assert_eq!(r.liveness(), Liveness::Stale);
}

#[test]
fn lcore_performance_counters() {
    let dir = tempfile::tempdir().unwrap();
    // A 1 kHz "TSC": the max-burst window closes every 1000 ticks.
    let region = StatsRegion::create(dir.path(), 8, 2, &vifs(), 1_000).unwrap();
    let l = region.lcore(1).unwrap();
    l.set_rx_queues(&[(0, 0), (3, 1)]);
    // Iteration 1 (starts at 10_000): a burst of 32 from queue 0 taking 320 ticks (it ends
    // when the next one starts: the TSC is read then), one of 3 from queue 1 taking 300 (it
    // ends at the next iteration's start, 10_620).
    l.iteration(10_000);
    l.before_burst(|| panic!("no burst open: no TSC read"));
    l.after_burst(0, 32);
    l.before_burst(|| 10_320);
    l.after_burst(1, 3);
    l.poll(true);
    // Iteration 2 (10_620): nothing received; iteration 3 starts at 10_670.
    l.iteration(10_620);
    l.poll(false);
    l.iteration(10_670);
    let r = StatsReader::open(dir.path()).unwrap();
    let p = r.lcore_perf(1).unwrap();
    assert_eq!(
        p.counters,
        LcorePerf { busy_cycles: 620, idle_cycles: 50, bursts: 2, burst_packets: 35, burst_cycles: 620 }
    );
    assert_eq!(r.lcore_perf_counters(None), p.counters, "lcore 0 counted nothing");
    assert_eq!(r.lcore_perf(0).unwrap(), LcorePerfStats { rxqs: vec![], ..Default::default() });
    assert_eq!(r.lcore_perf(2), None);
    // 32 packets: bucket le=32 (index 5); 3 packets: le=4 (index 2).
    assert_eq!(p.burst_sizes, [0, 0, 1, 0, 0, 1, 0]);
    // 10 cycles per packet: le=32 (index 0), 32 packets; 100 per packet: le=128 (index 2), 3.
    let mut want = [0u64; perf::PACKET_CYCLES_BUCKETS];
    (want[0], want[2]) = (32, 3);
    assert_eq!(p.packet_cycles, want);
    assert_eq!((p.burst_cycles_max, p.burst_cycles_max_recent, p.rx_queues), (320, 0, 2));
    assert_eq!(
        p.rxqs,
        [
            RxqUsage { vif: 0, queue: 0, packets: 32, bursts: 1, cycles: 320 },
            RxqUsage { vif: 3, queue: 1, packets: 3, bursts: 1, cycles: 300 }
        ]
    );
    assert!((p.busy_ratio() - 620.0 / 670.0).abs() < 1e-9);
    // A second later the window closes: its largest burst is published, the next starts at 0.
    l.iteration(11_100);
    assert_eq!(r.lcore_perf(1).unwrap().burst_cycles_max_recent, 320);
    l.after_burst(0, 1);
    l.iteration(11_150);
    l.iteration(12_200);
    let p = r.lcore_perf(1).unwrap();
    assert_eq!((p.burst_cycles_max, p.burst_cycles_max_recent), (320, 50));
    // A new poll list: queue (3, 1) stays in slot 1 and keeps its counts; slot 0 gets another
    // queue and starts again; a shorter list clears the rest.
    l.set_rx_queues(&[(3, 0), (3, 1)]);
    let p = r.lcore_perf(1).unwrap();
    assert_eq!(p.rxqs[0], RxqUsage { vif: 3, queue: 0, ..Default::default() });
    assert_eq!(p.rxqs[1].packets, 3);
    l.set_rx_queues(&[(0, 0)]);
    let p = r.lcore_perf(1).unwrap();
    assert_eq!((p.rx_queues, p.rxqs.len()), (1, 1));
}

#[test]
fn the_eal_facts_are_recorded_for_the_tools() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path();
    let facts = EalFacts { file_prefix: "vr1.t4242".into(), hugepages: true, pdump: true };
    let (region, _) = StatsRegion::create_continuing_with(run_dir, 8, 1, &vifs(), 1, &facts).unwrap();
    assert_eq!(StatsReader::open(run_dir).unwrap().eal(), Some(facts));
    drop(region);
    // Without them (`create`, `create_continuing`): nothing recorded, as in an earlier file.
    let (region, _) = StatsRegion::create_continuing(run_dir, 8, 1, &vifs(), 1).unwrap();
    assert_eq!(StatsReader::open(run_dir).unwrap().eal(), None);
    drop(region);
    let region = StatsRegion::create(run_dir, 8, 1, &vifs(), 1).unwrap();
    assert_eq!(StatsReader::open(run_dir).unwrap().eal(), None);
    drop(region);
    // On 4 KiB pages, capture off; a prefix that does not fit records nothing.
    let small = EalFacts { file_prefix: "vr".into(), hugepages: false, pdump: false };
    let (region, _) = StatsRegion::create_continuing_with(run_dir, 8, 1, &vifs(), 1, &small).unwrap();
    assert_eq!(StatsReader::open(run_dir).unwrap().eal(), Some(small));
    drop(region);
    let long = EalFacts { file_prefix: "p".repeat(FILE_PREFIX_BYTES + 1), hugepages: true, pdump: true };
    let (_region, _) = StatsRegion::create_continuing_with(run_dir, 8, 1, &vifs(), 1, &long).unwrap();
    assert_eq!(StatsReader::open(run_dir).unwrap().eal(), None);
}
