use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use crate::continued::Continued;
use crate::drop_reason::{DropReason, DROP_REASON_COUNT};
use crate::stats::*;

fn vif(id: u16) -> VifInfo {
    VifInfo::new(id, if id == 0 { VIF_TYPE_PHYSICAL } else { VIF_TYPE_VIRTUAL }, &format!("vif{id}"))
}

/// Everything the tools show of a region: per core and summed, every counter kind.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    vifs: Vec<(u16, VifCounters, [u64; DROP_REASON_COUNT])>,
    drops: [u64; DROP_REASON_COUNT],
    lcore: LcoreCounters,
    vrfs: Vec<(u32, VrfCounters)>,
    perf: LcorePerf,
    /// The histograms (summed) and the largest burst (of all lcores).
    perf_detail: ([u64; perf::BURST_SIZE_BUCKETS], [u64; perf::PACKET_CYCLES_BUCKETS], u64),
}

fn snapshot(r: &StatsReader, ids: &[u16], core: Option<usize>) -> Snapshot {
    Snapshot {
        vifs: ids.iter().map(|&v| (v, r.vif_counters(v, core), r.vif_drops(v, core))).collect(),
        drops: r.drops(core),
        lcore: r.lcore_counters(core),
        vrfs: r.active_vrfs(core),
        perf: r.lcore_perf_counters(core),
        perf_detail: core.map_or(0..r.n_lcores(), |c| c..c + 1).filter_map(|c| r.lcore_perf(c)).fold(
            Default::default(),
            |(mut sizes, mut cycles, max), p| {
                sizes.iter_mut().zip(p.burst_sizes).for_each(|(a, b)| *a += b);
                cycles.iter_mut().zip(p.packet_cycles).for_each(|(a, b)| *a += b);
                (sizes, cycles, max.max(p.burst_cycles_max))
            },
        ),
    }
}

/// Some traffic on every lcore of `region`: rx/tx/errors/drops on `ids`, a vif-less drop,
/// mirror copies, polls, ICMP answers and VRF counts; `k` scales it.
fn traffic(region: &StatsRegion, ids: &[u16], k: u64) {
    for core in 0..region.n_lcores() {
        let l = region.lcore(core).unwrap();
        let c = core as u64 + 1;
        for &v in ids {
            let n = k * c * (u64::from(v) + 1);
            l.rx(v, n, 100 * n);
            l.tx(v, 2 * n, 64 * n);
            l.rx_error(v);
            l.tx_error(v, c);
            l.drop(Some(v), DropReason::FlowActionDrop, n);
            l.mirror(Some(v), 90);
        }
        l.drop(None, DropReason::MirrorNoEntry, k * c);
        l.mirror_error(Some(ids[0]), true, DropReason::MirrorTxFull, 1);
        l.iteration(1_000 * c);
        l.after_burst(0, 5 * c as usize);
        l.before_burst(|| 1_600 * c);
        l.poll(true);
        l.iteration(2_000 * c);
        l.poll(false);
        l.iteration(2_500 * c);
        l.icmp_error(core % 2 == 0);
        l.vrf_add(1, &VrfCounters { encaps: k * c, udp_mpls_tunnels: 3, ..Default::default() });
        l.vrf_add((MAX_VRFS - 1) as u32, &VrfCounters { vxlan_decaps: k, ..Default::default() });
    }
}

fn write_at(path: &Path, off: u64, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(off)).unwrap();
    f.write_all(bytes).unwrap();
}

fn notes(c: &crate::continued::Continuation) -> &[String] {
    match &c.outcome {
        Continued::Continued { notes } => notes,
        other => panic!("expected Continued, got {other:?}"),
    }
}

#[test]
fn counters_continue_across_a_restart_and_keep_growing() {
    let dir = tempfile::tempdir().unwrap();
    let ids = [0u16, 3];
    let vifs: Vec<_> = ids.iter().map(|&v| vif(v)).collect();
    let (first, c) = StatsRegion::create_continuing(dir.path(), 8, 2, &vifs, 0).unwrap();
    assert_eq!(c.outcome, Continued::First);
    assert_eq!(c.line(), None);
    traffic(&first, &ids, 1);
    first.set_state(RegionState::Stopped);
    let r = StatsReader::open(dir.path()).unwrap();
    let before: Vec<_> = [None, Some(0), Some(1)].iter().map(|&core| snapshot(&r, &ids, core)).collect();
    assert_eq!(r.liveness(), Liveness::Stopped);
    // The first region's owner (this process) is still alive: a takeover after its lcores
    // stopped (none writes any more) is continued as well as a crash.
    let (second, c) = StatsRegion::create_continuing(dir.path(), 8, 2, &vifs, 0).unwrap();
    assert_eq!(notes(&c), &[] as &[String]);
    let shown = dir.path().join("stats").display().to_string();
    assert_eq!(c.line().unwrap(), format!("stats region {shown}: continuing counters from the previous run"));
    assert!(r.restarted(), "the old reader sees the file replaced");
    let r = StatsReader::open(dir.path()).unwrap();
    assert_eq!(r.generation(), 2);
    let after: Vec<_> = [None, Some(0), Some(1)].iter().map(|&core| snapshot(&r, &ids, core)).collect();
    assert_eq!(after, before, "equal, summed and per lcore");
    assert_ne!(before[0].vifs[1].1, VifCounters::default(), "something was counted");
    assert_eq!(
        before[0].perf,
        LcorePerf { busy_cycles: 3_000, idle_cycles: 1_500, bursts: 2, burst_packets: 15, burst_cycles: 1_800 }
    );
    assert_eq!(before[2].perf_detail.2, 1_200, "lcore 1's largest burst");
    assert_eq!(before[0].perf_detail.0, [0, 0, 0, 1, 1, 0, 0], "bursts of 5 (le 8) and 10 (le 16) packets");
    // State and heartbeat are the new run's.
    assert_eq!(r.liveness(), Liveness::Running);
    assert_eq!(r.header().creator_pid, std::process::id());
    assert_eq!(r.vifs().len(), 2);
    // And they keep growing from there.
    traffic(&second, &ids, 1);
    let grown = snapshot(&r, &ids, None);
    let v3 = (before[0].vifs[1].1, grown.vifs[1].1);
    assert_eq!((v3.1.rx_packets, v3.1.rx_bytes), (2 * v3.0.rx_packets, 2 * v3.0.rx_bytes));
    assert_eq!(
        grown.drops[DropReason::FlowActionDrop.index()],
        2 * before[0].drops[DropReason::FlowActionDrop.index()]
    );
    assert_eq!(grown.lcore.busy_polls, 4);
    assert_eq!(grown.vrfs[0].1.encaps, 2 * before[0].vrfs[0].1.encaps);
    assert_eq!(second.totals().rx_packets, 2 * first.totals().rx_packets);
}

#[test]
fn a_changed_vif_set_keeps_the_vifs_that_remain_by_id() {
    let dir = tempfile::tempdir().unwrap();
    let (first, _) = StatsRegion::create_continuing(dir.path(), 4, 2, &[vif(0), vif(1), vif(3)], 0).unwrap();
    traffic(&first, &[0, 1, 3], 1);
    first.retire_vif(1);
    let r = StatsReader::open(dir.path()).unwrap();
    let before = snapshot(&r, &[0, 1, 3], None);
    // vif 3 and the deleted vif 1 are gone, vif 2 is new, vif 0 stays; room for more vifs.
    let (_second, c) = StatsRegion::create_continuing(dir.path(), 16, 2, &[vif(2), vif(0), vif(12)], 0).unwrap();
    assert_eq!(notes(&c), ["vifs 1, 3 not configured now: counters dropped"]);
    let r = StatsReader::open(dir.path()).unwrap();
    assert_eq!(r.max_vifs(), 16);
    assert_eq!(r.vif_counters(0, None), before.vifs[0].1);
    assert_eq!(r.vif_drops(0, None), before.vifs[0].2);
    for gone_or_new in [1, 2, 3, 12] {
        assert_eq!(r.vif_counters(gone_or_new, None), VifCounters::default(), "vif {gone_or_new}");
        assert_eq!(r.vif_drops(gone_or_new, None), [0; DROP_REASON_COUNT]);
    }
    // What is not per vif continues whole (the global drops include the gone vifs' drops).
    assert_eq!(r.drops(None), before.drops);
    assert_eq!(r.lcore_counters(None), before.lcore);
    assert_eq!(r.active_vrfs(None), before.vrfs);
    // Fewer slots than before: a vif beyond the old slots starts at zero, one within keeps.
    let (_third, c) = StatsRegion::create_continuing(dir.path(), 1, 2, &[vif(0)], 0).unwrap();
    assert_eq!(notes(&c), ["vifs 2, 12 not configured now: counters dropped"]);
    assert_eq!(StatsReader::open(dir.path()).unwrap().vif_counters(0, None), before.vifs[0].1);
}

#[test]
fn another_lcore_count_sums_into_lcore_0() {
    let dir = tempfile::tempdir().unwrap();
    let ids = [0u16, 3];
    let vifs: Vec<_> = ids.iter().map(|&v| vif(v)).collect();
    let (first, _) = StatsRegion::create_continuing(dir.path(), 4, 2, &vifs, 0).unwrap();
    traffic(&first, &ids, 1);
    let r = StatsReader::open(dir.path()).unwrap();
    let before = snapshot(&r, &ids, None);
    assert_ne!(snapshot(&r, &ids, Some(1)), snapshot(&r, &ids, Some(0)));
    for n in [3, 1, 2] {
        let (region, c) = StatsRegion::create_continuing(dir.path(), 4, n, &vifs, 0).unwrap();
        assert_eq!(region.n_lcores(), n);
        let old = if n == 3 {
            2
        } else if n == 1 {
            3
        } else {
            1
        };
        assert_eq!(
            notes(&c),
            [format!(
                "{old} forwarding lcores before, {n} now: the previous per-lcore counters are summed into lcore 0"
            )]
        );
        let r = StatsReader::open(dir.path()).unwrap();
        assert_eq!(snapshot(&r, &ids, None), before, "the sums continue ({n} lcores)");
        assert_eq!(snapshot(&r, &ids, Some(0)), before, "all in lcore 0");
        for core in 1..n {
            assert_eq!(snapshot(&r, &ids, Some(core)), snapshot(&r, &ids, Some(99)), "lcore {core} starts at zero");
        }
    }
}

#[test]
fn a_file_of_another_layout_version_is_set_aside_and_the_region_starts_fresh() {
    let dir = tempfile::tempdir().unwrap();
    let (first, _) = StatsRegion::create_continuing(dir.path(), 4, 1, &[vif(0)], 0).unwrap();
    traffic(&first, &[0], 1);
    let path = first.path().to_path_buf();
    drop(first);
    write_at(&path, 8, &(LAYOUT_VERSION - 1).to_ne_bytes());
    let old_bytes = std::fs::read(&path).unwrap();
    let (region, c) = StatsRegion::create_continuing(dir.path(), 4, 1, &[vif(0)], 0).unwrap();
    assert!(c.is_warning());
    let kept = dir.path().join("stats.old");
    let line = c.line().unwrap();
    assert_eq!(
        line,
        format!(
            "{}: stats region layout version {} (expected {LAYOUT_VERSION}): the reader and the vRouter come from \
             different builds; kept it at {} and created the region fresh",
            path.display(),
            LAYOUT_VERSION - 1,
            kept.display()
        )
    );
    assert_eq!(std::fs::read(&kept).unwrap(), old_bytes, "the old file is kept as it was");
    let r = StatsReader::open(dir.path()).unwrap();
    assert_eq!(r.generation(), 1, "a new line of generations");
    assert_eq!(r.vif_counters(0, None), VifCounters::default());
    assert_eq!(r.drops(None), [0; DROP_REASON_COUNT]);
    assert_eq!(r.vifs().len(), 1);
    // The next restart continues the fresh region.
    traffic(&region, &[0], 1);
    let (_again, c) = StatsRegion::create_continuing(dir.path(), 4, 1, &[vif(0)], 0).unwrap();
    assert!(matches!(c.outcome, Continued::Continued { .. }));
    assert_eq!(StatsReader::open(dir.path()).unwrap().vif_counters(0, None).rx_packets, 1);
}

#[test]
fn a_truncated_file_is_set_aside_and_the_region_starts_fresh() {
    let dir = tempfile::tempdir().unwrap();
    let (first, _) = StatsRegion::create_continuing(dir.path(), 4, 1, &[vif(0)], 0).unwrap();
    traffic(&first, &[0], 1);
    let path = first.path().to_path_buf();
    drop(first);
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len / 2).unwrap();
    let (_region, c) = StatsRegion::create_continuing(dir.path(), 4, 1, &[vif(0)], 0).unwrap();
    match &c.outcome {
        Continued::Fresh { reason, kept_at } => {
            assert_eq!(kept_at, &dir.path().join("stats.old"));
            assert_eq!(std::fs::metadata(kept_at).unwrap().len(), len / 2);
            assert!(reason.starts_with(&format!("{}: stats region file is {}", path.display(), len / 2)), "{reason}");
            assert!(reason.contains("shorter than the"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(StatsReader::open(dir.path()).unwrap().vif_counters(0, None), VifCounters::default());
    // Other magic (not a stats region at all): the same.
    std::fs::write(&path, vec![0xabu8; 4096]).unwrap();
    let (_region, c) = StatsRegion::create_continuing(dir.path(), 4, 1, &[vif(0)], 0).unwrap();
    assert!(c.line().unwrap().contains("bad magic 0xabababababababab"), "{:?}", c.line());
}

#[test]
fn bad_arguments_leave_the_previous_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("stats"), b"not a region").unwrap();
    assert!(StatsRegion::create_continuing(dir.path(), 4, 0, &[], 0).is_err());
    assert_eq!(std::fs::read(dir.path().join("stats")).unwrap(), b"not a region");
    assert!(!dir.path().join("stats.old").exists());
}
