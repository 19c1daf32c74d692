//! `lcore --stats`: where each forwarding lcore's cycles go (OVS `dpif-netdev/pmd-perf-show`,
//! VPP `show runtime`), read from the performance block of its stats-region block
//! ([`vrouter_abi::stats::perf`]): busy and idle iterations and cycles, packets per burst and
//! cycles per packet (averages and histograms), the largest burst, and the share of the
//! lcore's cycles each of its RX queues took.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;
use vrouter_abi::stats::perf::{BURST_SIZE_BOUNDS, PACKET_CYCLES_BOUNDS};
use vrouter_abi::stats::{HeaderInfo, LcoreCounters, LcorePerfStats, Liveness, StatsReader};

use crate::{check_core, Failure};

/// One lcore's loop and performance counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LcoreRow {
    /// Index of the forwarding lcore (its stats block).
    pub index: usize,
    /// Its poll-loop counters (busy and idle iterations).
    pub loop_counters: LcoreCounters,
    /// Its performance counters.
    pub perf: LcorePerfStats,
}

/// What `lcore --stats` shows, from one mapping of the region.
#[derive(Clone, Debug)]
pub struct PerfSnapshot {
    /// The region's header (TSC frequency, pid).
    pub header: HeaderInfo,
    /// Whether the vRouter still runs.
    pub liveness: Liveness,
    /// The lcores shown (all, or the one of `--core`).
    pub lcores: Vec<LcoreRow>,
}

/// Reads every lcore's counters (or lcore `core`'s) from `<run_dir>/stats`; reads again if
/// the vRouter restarted meanwhile.
pub fn load_perf(run_dir: &Path, core: Option<usize>) -> Result<PerfSnapshot, Failure> {
    let mut attempt = 0;
    loop {
        let reader = StatsReader::open(run_dir)?;
        check_core(&reader, core)?;
        let snap = read_perf(&reader, core);
        attempt += 1;
        if !reader.restarted() || attempt == 3 {
            return Ok(snap);
        }
    }
}

/// [`load_perf`] from an open reader.
pub fn read_perf(reader: &StatsReader, core: Option<usize>) -> PerfSnapshot {
    let cores = core.map_or(0..reader.n_lcores(), |c| c..c + 1);
    let lcores = cores
        .filter_map(|index| {
            Some(LcoreRow { index, loop_counters: reader.lcore_counters(Some(index)), perf: reader.lcore_perf(index)? })
        })
        .collect();
    PerfSnapshot { header: reader.header(), liveness: reader.liveness(), lcores }
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// `cycles` as time at `hz` (`-` when the frequency is unknown).
fn duration(cycles: u64, hz: u64) -> String {
    if hz == 0 {
        return "-".into();
    }
    let us = cycles as f64 * 1e6 / hz as f64;
    if us < 1000.0 {
        format!("{us:.1} us")
    } else if us < 1e6 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

/// One histogram as `<=1:3 <=2:0 ... >32:0` (only buckets up to the last non-empty one).
fn histogram_line(bounds: &[u64], counts: &[u64]) -> String {
    let last = counts.iter().rposition(|&c| c != 0).map_or(0, |i| i + 1);
    let mut s = String::new();
    for (i, &c) in counts.iter().enumerate().take(last) {
        if !s.is_empty() {
            s.push(' ');
        }
        match bounds.get(i) {
            Some(b) => {
                let _ = write!(s, "<={b}:{c}");
            }
            None => {
                let _ = write!(s, ">{}:{c}", bounds.last().copied().unwrap_or(0));
            }
        }
    }
    if s.is_empty() {
        s.push('-');
    }
    s
}

/// The text view, one section per lcore.
pub fn render_perf(x: &PerfSnapshot) -> String {
    let hz = x.header.tsc_hz;
    let mut s = String::new();
    let _ = writeln!(s, "TSC frequency: {:.3} GHz\n", hz as f64 / 1e9);
    for r in &x.lcores {
        let (l, p) = (&r.loop_counters, &r.perf);
        let c = &p.counters;
        let iterations = l.busy_polls + l.idle_polls;
        let cycles = c.busy_cycles + c.idle_cycles;
        let _ = writeln!(s, "lcore {}:", r.index);
        let _ = writeln!(s, "  Iterations:           {iterations:>14}");
        let _ = writeln!(
            s,
            "  - busy iterations:    {:>14}  ({:.1} % of iterations, {:.0} cycles/iteration)",
            l.busy_polls,
            pct(l.busy_polls, iterations),
            ratio(c.busy_cycles, l.busy_polls)
        );
        let _ = writeln!(
            s,
            "  - idle iterations:    {:>14}  ({:.1} % of iterations, {:.0} cycles/iteration)",
            l.idle_polls,
            pct(l.idle_polls, iterations),
            ratio(c.idle_cycles, l.idle_polls)
        );
        let _ = writeln!(s, "  Used TSC cycles:      {cycles:>14}  ({})", duration(cycles, hz));
        let _ = writeln!(s, "  - busy cycles:        {:>14}  ({:.1} %)", c.busy_cycles, pct(c.busy_cycles, cycles));
        let _ = writeln!(s, "  - idle cycles:        {:>14}  ({:.1} %)", c.idle_cycles, pct(c.idle_cycles, cycles));
        let _ = writeln!(
            s,
            "  Rx packets:           {:>14}  ({:.1} packets/burst, {:.0} cycles/packet)",
            c.burst_packets,
            ratio(c.burst_packets, c.bursts),
            ratio(c.burst_cycles, c.burst_packets)
        );
        let _ = writeln!(
            s,
            "  Rx bursts:            {:>14}  ({:.0} cycles/burst, {:.1} % of busy cycles)",
            c.bursts,
            ratio(c.burst_cycles, c.bursts),
            pct(c.burst_cycles, c.busy_cycles)
        );
        let _ = writeln!(
            s,
            "  Largest burst:        {:>14}  cycles ({}); last second: {} cycles ({})",
            p.burst_cycles_max,
            duration(p.burst_cycles_max, hz),
            p.burst_cycles_max_recent,
            duration(p.burst_cycles_max_recent, hz)
        );
        let _ = writeln!(s, "  Packets per burst:    {}", histogram_line(&BURST_SIZE_BOUNDS, &p.burst_sizes));
        let _ = writeln!(s, "  Cycles per packet:    {}", histogram_line(&PACKET_CYCLES_BOUNDS, &p.packet_cycles));
        let _ = writeln!(s, "  RX queues:            {:>14}", p.rx_queues);
        for q in &p.rxqs {
            let _ = writeln!(
                s,
                "    vif0/{:<5} queue {:<3} packets: {:>12}  bursts: {:>10}  usage: {:5.1} %",
                q.vif,
                q.queue,
                q.packets,
                q.bursts,
                pct(q.cycles, cycles)
            );
        }
        if p.rx_queues as usize > p.rxqs.len() {
            let _ = writeln!(s, "    ({} more not itemized)", p.rx_queues as usize - p.rxqs.len());
        }
        s.push('\n');
    }
    s
}

#[derive(Serialize)]
struct BucketJson {
    /// Upper bound; `None` for the overflow bucket.
    le: Option<u64>,
    count: u64,
}

fn buckets(bounds: &[u64], counts: &[u64]) -> Vec<BucketJson> {
    counts.iter().enumerate().map(|(i, &count)| BucketJson { le: bounds.get(i).copied(), count }).collect()
}

/// The JSON view: `{"tsc_hz", "lcores": [{"lcore", <loop and performance counters>,
/// "burst_cycles_max", "burst_cycles_max_recent", "rx_queues", "packets_per_burst":
/// [{"le", "count"}], "cycles_per_packet": [...], "rxqs": [{"vif", "queue", "packets",
/// "bursts", "cycles"}]}]}` (histogram buckets not cumulative; `le` null: the overflow).
pub fn render_perf_json(x: &PerfSnapshot, pretty: bool) -> String {
    let lcores: Vec<serde_json::Value> = x
        .lcores
        .iter()
        .map(|r| {
            let mut m = serde_json::Map::new();
            m.insert("lcore".into(), r.index.into());
            for (k, v) in r.loop_counters.values().into_iter().chain(r.perf.counters.values()) {
                m.insert(k.into(), v.into());
            }
            let p = &r.perf;
            m.insert("burst_cycles_max".into(), p.burst_cycles_max.into());
            m.insert("burst_cycles_max_recent".into(), p.burst_cycles_max_recent.into());
            m.insert("rx_queues".into(), p.rx_queues.into());
            let j = |v| serde_json::to_value(v).expect("plain data");
            m.insert("packets_per_burst".into(), j(buckets(&BURST_SIZE_BOUNDS, &p.burst_sizes)));
            m.insert("cycles_per_packet".into(), j(buckets(&PACKET_CYCLES_BOUNDS, &p.packet_cycles)));
            m.insert("rxqs".into(), serde_json::to_value(&p.rxqs).expect("plain data"));
            serde_json::Value::Object(m)
        })
        .collect();
    crate::to_json(&serde_json::json!({"tsc_hz": x.header.tsc_hz, "lcores": lcores}), pretty)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vrouter_abi::stats::{LcorePerf, RxqUsage};

    fn snap() -> PerfSnapshot {
        let mut burst_sizes = [0; vrouter_abi::stats::perf::BURST_SIZE_BUCKETS];
        (burst_sizes[0], burst_sizes[5]) = (2, 8);
        let mut packet_cycles = [0; vrouter_abi::stats::perf::PACKET_CYCLES_BUCKETS];
        packet_cycles[3] = 258;
        PerfSnapshot {
            header: HeaderInfo {
                layout_version: 8,
                file_size: 0,
                max_vifs: 4,
                n_lcores: 1,
                n_drop_reasons: 0,
                generation: 1,
                creator_pid: 1,
                start_time_unix: 0,
                tsc_hz: 2_000_000_000,
                state: 1,
                heartbeat_ms: 0,
            },
            liveness: Liveness::Running,
            lcores: vec![LcoreRow {
                index: 0,
                loop_counters: LcoreCounters { busy_polls: 10, idle_polls: 30, ..Default::default() },
                perf: LcorePerfStats {
                    counters: LcorePerf {
                        busy_cycles: 60_000,
                        idle_cycles: 40_000,
                        bursts: 10,
                        burst_packets: 258,
                        burst_cycles: 30_000,
                    },
                    burst_cycles_max: 4_000,
                    burst_cycles_max_recent: 2_000,
                    rx_queues: 1,
                    burst_sizes,
                    packet_cycles,
                    rxqs: vec![RxqUsage { vif: 1, queue: 0, packets: 258, bursts: 10, cycles: 30_000 }],
                },
            }],
        }
    }

    #[test]
    fn text_view() {
        let t = render_perf(&snap());
        assert!(t.starts_with("TSC frequency: 2.000 GHz\n\nlcore 0:\n"), "{t}");
        assert!(
            t.contains("  - busy iterations:                10  (25.0 % of iterations, 6000 cycles/iteration)\n"),
            "{t}"
        );
        assert!(t.contains("  - busy cycles:                 60000  (60.0 %)\n"), "{t}");
        assert!(t.contains("  Rx packets:                      258  (25.8 packets/burst, 116 cycles/packet)\n"), "{t}");
        assert!(
            t.contains("  Largest burst:                  4000  cycles (2.0 us); last second: 2000 cycles (1.0 us)\n"),
            "{t}"
        );
        assert!(t.contains("  Packets per burst:    <=1:2 <=2:0 <=4:0 <=8:0 <=16:0 <=32:8\n"), "{t}");
        assert!(t.contains("  Cycles per packet:    <=32:0 <=64:0 <=128:0 <=256:258\n"), "{t}");
        assert!(
            t.contains("    vif0/1     queue 0   packets:          258  bursts:         10  usage:  30.0 %\n"),
            "{t}"
        );
    }

    #[test]
    fn json_view() {
        let j: serde_json::Value = serde_json::from_str(&render_perf_json(&snap(), false)).unwrap();
        assert_eq!(j["tsc_hz"], 2_000_000_000u64);
        let l = &j["lcores"][0];
        assert_eq!(
            (l["lcore"].as_u64(), l["busy_polls"].as_u64(), l["busy_cycles"].as_u64()),
            (Some(0), Some(10), Some(60_000))
        );
        assert_eq!((l["burst_packets"].as_u64(), l["burst_cycles_max_recent"].as_u64()), (Some(258), Some(2_000)));
        assert_eq!(l["packets_per_burst"][5], serde_json::json!({"le": 32, "count": 8}));
        assert_eq!(l["packets_per_burst"][6], serde_json::json!({"le": null, "count": 0}));
        assert_eq!(l["cycles_per_packet"][3], serde_json::json!({"le": 256, "count": 258}));
        assert_eq!(
            l["rxqs"][0],
            serde_json::json!({"vif": 1, "queue": 0, "packets": 258, "bursts": 10, "cycles": 30_000})
        );
    }
}
