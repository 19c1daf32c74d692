//! The comparison per N: table (markdown), JSON and CSV.

use crate::anchors::{OvsRow, TestpmdRow};
use crate::median;
use crate::memory::Memory;
use crate::vrouter_run::VrouterMeasurement;
use serde::Serialize;
use std::fmt::Write as _;

/// Everything measured for one flow count.
#[derive(Debug, Clone, Serialize)]
pub struct FlowsResult {
    /// Distinct flows (UDP 5-tuples) in the pcap.
    pub flows: u64,
    /// The pcap replayed.
    pub pcap: String,
    /// Packets in the pcap.
    pub pcap_packets: u64,
    /// The vRouter configuration used (TOML text).
    pub vrouter_config: String,
    /// The vRouter command line, shell-quoted.
    pub vrouter_command: String,
    /// Every vRouter repetition that completed.
    pub vrouter_runs: Vec<VrouterMeasurement>,
    /// Why vRouter repetitions failed, one message each.
    pub vrouter_errors: Vec<String>,
    /// testpmd runs (every mode and repetition).
    pub testpmd: Vec<TestpmdRow>,
    /// Why the testpmd anchor failed, if it did.
    pub testpmd_error: Option<String>,
    /// OVS-DPDK runs.
    pub ovs: Vec<OvsRow>,
    /// Why the OVS-DPDK anchor failed, if it did.
    pub ovs_error: Option<String>,
    /// Medians and ratios.
    pub summary: Summary,
}

/// Medians over repetitions and the derived ratios. `None` = not measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// Distinct flows in the pcap.
    pub flows: u64,
    /// Median vRouter `cpu_mpps` (the figure of merit).
    pub vrouter_cpu_mpps: Option<f64>,
    /// Median vRouter `wall_mpps`.
    pub vrouter_wall_mpps: Option<f64>,
    /// Median vRouter forwarding-thread ns per packet.
    pub vrouter_ns_per_pkt: Option<f64>,
    /// Median share of the window the forwarding thread was on a CPU.
    pub vrouter_fwd_cpu_share: Option<f64>,
    /// Median `tx_packets / rx_packets`.
    pub vrouter_tx_over_rx: Option<f64>,
    /// Drops in the windows, summed over repetitions.
    pub vrouter_drops: Option<u64>,
    /// Median testpmd `io` `cpu_mpps`.
    pub testpmd_io_mpps: Option<f64>,
    /// Median testpmd `5tswap` `cpu_mpps`.
    pub testpmd_5tswap_mpps: Option<f64>,
    /// Median testpmd `rxonly` `cpu_mpps` (the pcap source alone).
    pub testpmd_rxonly_mpps: Option<f64>,
    /// Median testpmd `rxonly` ns per packet (the source's cost).
    pub testpmd_rxonly_ns_per_pkt: Option<f64>,
    /// Median testpmd `5tswap` ns per packet.
    pub testpmd_5tswap_ns_per_pkt: Option<f64>,
    /// Median OVS-DPDK `l3` Mpps per core (see [`OvsRow::mpps`]).
    pub ovs_l3_mpps: Option<f64>,
    /// vRouter / testpmd 5tswap (`cpu_mpps`).
    pub ratio_vrouter_5tswap: Option<f64>,
    /// vRouter / testpmd io (`cpu_mpps`).
    pub ratio_vrouter_io: Option<f64>,
    /// vRouter / OVS-DPDK l3.
    pub ratio_vrouter_ovs_l3: Option<f64>,
    /// vRouter ns/pkt minus testpmd rxonly ns/pkt: the vRouter's own cost per packet,
    /// without the pcap source.
    pub vrouter_own_ns_per_pkt: Option<f64>,
    /// The same for testpmd 5tswap (its forwarding work without the source).
    pub testpmd_5tswap_own_ns_per_pkt: Option<f64>,
    /// A run had `fwd_cpu_share` < 0.95: the forwarding core was shared.
    pub disturbed: bool,
    /// DPDK's memory in these runs: `huge` or `no-huge` when every system ran on the same,
    /// else per system (`vRouter huge, testpmd no-huge`).
    pub memory: String,
}

/// What [`Summary::memory`] says for these runs.
pub fn memory_label(vr: &[VrouterMeasurement], tp: &[TestpmdRow], ovs: &[OvsRow]) -> String {
    let mut per: Vec<(&str, Vec<Memory>)> = vec![
        ("vRouter", vr.iter().map(|m| m.dpdk_memory).collect()),
        ("testpmd", tp.iter().map(|r| r.memory).collect()),
        ("OVS", ovs.iter().map(|r| r.memory).collect()),
    ];
    per.retain(|(_, v)| !v.is_empty());
    let name = |v: &[Memory]| {
        if v.iter().all(|m| *m == v[0]) {
            v[0].name()
        } else {
            "mixed"
        }
    };
    let names: Vec<(&str, &str)> = per.iter().map(|(sys, v)| (*sys, name(v))).collect();
    match names.first() {
        None => "-".into(),
        Some((_, first)) if names.iter().all(|(_, n)| n == first) => first.to_string(),
        _ => names.iter().map(|(sys, n)| format!("{sys} {n}")).collect::<Vec<_>>().join(", "),
    }
}

fn med<T>(v: &[T], f: impl Fn(&T) -> f64) -> Option<f64> {
    let x: Vec<f64> = v.iter().map(f).filter(|x| x.is_finite()).collect();
    (!x.is_empty()).then(|| median(&x))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn diff(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? - b?)
}

impl Summary {
    /// Medians of the runs for `flows` flows and the ratios between them.
    pub fn compute(flows: u64, vr: &[VrouterMeasurement], tp: &[TestpmdRow], ovs: &[OvsRow]) -> Summary {
        let mode = |m: &str| tp.iter().filter(|r| r.mode == m).cloned().collect::<Vec<_>>();
        let (io, tsw, rxo) = (mode("io"), mode("5tswap"), mode("rxonly"));
        let l3: Vec<OvsRow> = ovs.iter().filter(|r| r.variant.starts_with("l3")).cloned().collect();
        let vr_cpu = med(vr, |m| m.cpu_mpps);
        let vr_ns = med(vr, |m| m.ns_per_pkt);
        let io_m = med(&io, |r| r.cpu_mpps);
        let tsw_m = med(&tsw, |r| r.cpu_mpps);
        let rxo_ns = med(&rxo, |r| r.ns_per_pkt);
        let tsw_ns = med(&tsw, |r| r.ns_per_pkt);
        let ovs_m = med(&l3, |r| r.mpps());
        Summary {
            flows,
            vrouter_cpu_mpps: vr_cpu,
            vrouter_wall_mpps: med(vr, |m| m.wall_mpps),
            vrouter_ns_per_pkt: vr_ns,
            vrouter_fwd_cpu_share: med(vr, |m| m.fwd_cpu_share),
            vrouter_tx_over_rx: med(vr, |m| m.tx_over_rx),
            vrouter_drops: (!vr.is_empty()).then(|| vr.iter().map(|m| m.drops).sum()),
            testpmd_io_mpps: io_m,
            testpmd_5tswap_mpps: tsw_m,
            testpmd_rxonly_mpps: med(&rxo, |r| r.cpu_mpps),
            testpmd_rxonly_ns_per_pkt: rxo_ns,
            testpmd_5tswap_ns_per_pkt: tsw_ns,
            ovs_l3_mpps: ovs_m,
            ratio_vrouter_5tswap: ratio(vr_cpu, tsw_m),
            ratio_vrouter_io: ratio(vr_cpu, io_m),
            ratio_vrouter_ovs_l3: ratio(vr_cpu, ovs_m),
            vrouter_own_ns_per_pkt: diff(vr_ns, rxo_ns),
            testpmd_5tswap_own_ns_per_pkt: diff(tsw_ns, rxo_ns),
            disturbed: vr.iter().any(|m| m.fwd_cpu_share < 0.95)
                || tp.iter().any(|r| r.fwd_cpu_share < 0.95 && r.mode != "rxonly"),
            memory: memory_label(vr, tp, ovs),
        }
    }
}

fn f(v: Option<f64>, prec: usize) -> String {
    v.map(|x| format!("{x:.prec$}")).unwrap_or_else(|| "-".into())
}

/// Human form of a flow count (1, 1k, 64k, 1M).
pub fn flows_label(n: u64) -> String {
    if n >= 1 << 20 && n.trailing_zeros() >= 20 {
        format!("{}M", n >> 20)
    } else if n >= 1024 && n.trailing_zeros() >= 10 {
        format!("{}k", n >> 10)
    } else if n >= 1000 && n / 1000 * 1000 == n {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

/// The comparison as a markdown table (Mpps per fully owned core).
pub fn table(rows: &[Summary], with_ovs: bool) -> String {
    let mut s = String::new();
    let mut hdr = vec![
        "N flows",
        "vRouter Mpps/core",
        "vRouter wall Mpps",
        "testpmd io",
        "testpmd 5tswap",
        "vRouter/5tswap",
        "vRouter/io",
    ];
    if with_ovs {
        hdr.extend(["OVS l3", "vRouter/OVS l3"]);
    }
    hdr.extend([
        "vRouter ns/pkt",
        "rxonly ns/pkt",
        "vRouter own ns/pkt",
        "5tswap own ns/pkt",
        "fwd CPU share",
        "tx/rx",
        "memory",
    ]);
    let _ = writeln!(s, "| {} |", hdr.join(" | "));
    let _ = writeln!(s, "|{}|", hdr.iter().map(|_| "---").collect::<Vec<_>>().join("|"));
    for r in rows {
        let mut c = vec![
            format!("{}{}", flows_label(r.flows), if r.disturbed { " *" } else { "" }),
            f(r.vrouter_cpu_mpps, 2),
            f(r.vrouter_wall_mpps, 2),
            f(r.testpmd_io_mpps, 2),
            f(r.testpmd_5tswap_mpps, 2),
            f(r.ratio_vrouter_5tswap, 2),
            f(r.ratio_vrouter_io, 2),
        ];
        if with_ovs {
            c.extend([f(r.ovs_l3_mpps, 2), f(r.ratio_vrouter_ovs_l3, 2)]);
        }
        c.extend([
            f(r.vrouter_ns_per_pkt, 1),
            f(r.testpmd_rxonly_ns_per_pkt, 1),
            f(r.vrouter_own_ns_per_pkt, 1),
            f(r.testpmd_5tswap_own_ns_per_pkt, 1),
            f(r.vrouter_fwd_cpu_share, 2),
            f(r.vrouter_tx_over_rx, 3),
            r.memory.clone(),
        ]);
        let _ = writeln!(s, "| {} |", c.join(" | "));
    }
    if rows.iter().any(|r| r.disturbed) {
        let _ =
            writeln!(s, "\n`*` a forwarding thread got < 95% of a CPU in the window: the core was shared (see load).");
    }
    s
}

/// Columns of the stateless runs' CSV file (one row per vRouter repetition).
pub const CSV_HEADER: &str = "time_unix,flows,pcap,rep,window_s,rx_packets,tx_packets,drops,wall_mpps,cpu_mpps,\
ns_per_pkt,fwd_cpu_share,tx_over_rx,avg_burst,idle_poll_share,cpu0_busy,cpu1_busy,load1_before,load1_after,\
accounted,clean_exit,git_rev";

fn opt(v: Option<f64>, prec: usize) -> String {
    v.map(|x| format!("{x:.prec$}")).unwrap_or_default()
}

/// One CSV line per vRouter run.
pub fn csv_line(time_unix: u64, flows: u64, pcap: &str, rep: usize, m: &VrouterMeasurement, git_rev: &str) -> String {
    let busy = |i: usize| m.cpu_busy.get(i).map(|x| format!("{x:.2}")).unwrap_or_default();
    format!(
        "{time_unix},{flows},{pcap},{rep},{:.3},{},{},{},{:.3},{:.3},{:.1},{:.3},{:.4},{},{},{},{},{:.2},{:.2},{},{},{git_rev}",
        m.window_s,
        m.rx_packets,
        m.tx_packets,
        m.drops,
        m.wall_mpps,
        m.cpu_mpps,
        m.ns_per_pkt,
        m.fwd_cpu_share,
        m.tx_over_rx,
        opt(m.avg_burst, 1),
        opt(m.idle_poll_share, 3),
        busy(0),
        busy(1),
        m.load_before[0],
        m.load_after[0],
        m.accounted,
        m.clean_exit,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(mode: &str, mpps: f64, ns: f64) -> TestpmdRow {
        TestpmdRow {
            pcap: "udp_1000.pcap".into(),
            mode: mode.into(),
            rep: 1,
            wall_mpps: mpps,
            cpu_mpps: mpps,
            ns_per_pkt: ns,
            fwd_cpu_share: 0.99,
            tx_over_rx: 1.0,
            load1: 1.0,
            memory: Memory::NoHuge,
        }
    }

    #[test]
    fn summary_and_table() {
        let rows = vec![tp("io", 20.0, 50.0), tp("5tswap", 15.0, 66.7), tp("rxonly", 18.5, 54.0)];
        let s = Summary::compute(1000, &[], &rows, &[]);
        assert_eq!(s.vrouter_cpu_mpps, None);
        assert_eq!(s.testpmd_io_mpps, Some(20.0));
        assert_eq!(s.ratio_vrouter_io, None);
        assert!((s.testpmd_5tswap_own_ns_per_pkt.unwrap() - 12.7).abs() < 1e-9);
        let t = table(&[s], false);
        assert!(t.contains("| 1k | - | - | 20.00 | 15.00 |"), "{t}");
        assert!(t.trim_end().ends_with("| 1.000 | no-huge |") || t.contains("| - | no-huge |"), "{t}");
        assert!(!t.contains("OVS"));
    }

    #[test]
    fn memory_labels() {
        let huge = |mode: &str| TestpmdRow { memory: Memory::Huge, ..tp(mode, 1.0, 1.0) };
        assert_eq!(memory_label(&[], &[], &[]), "-");
        assert_eq!(memory_label(&[], &[huge("io"), huge("rxonly")], &[]), "huge");
        assert_eq!(memory_label(&[], &[huge("io"), tp("rxonly", 1.0, 1.0)], &[]), "mixed");
        let ovs = OvsRow::from_row(&parse_csv_row("system,pcap,variant", "ovs-dpdk,udp_1.pcap,l3")).unwrap();
        assert_eq!(memory_label(&[], &[huge("io")], &[ovs]), "testpmd huge, OVS no-huge");
    }

    fn parse_csv_row(h: &str, b: &str) -> crate::anchors::Row {
        crate::anchors::parse_csv(h, b).remove(0)
    }

    #[test]
    fn labels() {
        assert_eq!(flows_label(1), "1");
        assert_eq!(flows_label(1000), "1k");
        assert_eq!(flows_label(65536), "64k");
        assert_eq!(flows_label(1_048_576), "1M");
        assert_eq!(flows_label(1234), "1234");
    }

    #[test]
    fn csv_has_header_columns() {
        assert_eq!(CSV_HEADER.split(',').count(), 22);
    }
}
