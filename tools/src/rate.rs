//! `vif --list --rate`: each vif's packets, bytes, errors and drops per second, from two reads
//! of the stats region an interval apart (the troubleshooting guide's `watch -d ip -s link
//! show tapXXX`, for ports that have no kernel interface). Pure functions from two snapshots
//! to rows and text; the tool takes the snapshots.

use std::fmt::Write as _;

use serde::Serialize;
use vrouter_abi::stats::{VifCounters, VifInfoOwned};

use crate::{render_flags_legend, render_vif_head, to_json, Snapshot, INDENT};

/// One vif's counters over the interval.
#[derive(Clone, Debug, PartialEq)]
pub struct RateRow {
    /// The vif (as in the second read).
    pub info: VifInfoOwned,
    /// What each counter moved by between the two reads (0 for a counter that went back,
    /// which only a vif deleted and added again in between does).
    pub delta: VifCounters,
    /// Seconds between the two reads.
    pub seconds: f64,
}

impl RateRow {
    /// `count` per second over the interval.
    pub fn per_second(&self, count: u64) -> f64 {
        if self.seconds > 0.0 {
            count as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// What every counter of `b` moved by since `a` (saturating).
pub fn counter_delta(a: &VifCounters, b: &VifCounters) -> VifCounters {
    VifCounters {
        rx_packets: b.rx_packets.saturating_sub(a.rx_packets),
        rx_bytes: b.rx_bytes.saturating_sub(a.rx_bytes),
        rx_errors: b.rx_errors.saturating_sub(a.rx_errors),
        tx_packets: b.tx_packets.saturating_sub(a.tx_packets),
        tx_bytes: b.tx_bytes.saturating_sub(a.tx_bytes),
        tx_errors: b.tx_errors.saturating_sub(a.tx_errors),
        mirror_packets: b.mirror_packets.saturating_sub(a.mirror_packets),
        mirror_bytes: b.mirror_bytes.saturating_sub(a.mirror_bytes),
        mirror_errors: b.mirror_errors.saturating_sub(a.mirror_errors),
        drops: b.drops.saturating_sub(a.drops),
    }
}

/// The rows of the vifs in both reads (`before`, then `after` taken `seconds` later), in
/// vif id order; a vif added in between has no rate yet and is left out.
pub fn vif_rates(before: &Snapshot, after: &Snapshot, seconds: f64) -> Vec<RateRow> {
    after
        .vifs
        .iter()
        .filter_map(|b| {
            let a = before.vifs.iter().find(|a| a.info.id == b.info.id)?;
            Some(RateRow { info: b.info.clone(), delta: counter_delta(&a.counters, &b.counters), seconds })
        })
        .collect()
}

/// A rate as the text shows it: whole numbers plain, small fractions with one decimal.
pub fn format_rate(r: f64) -> String {
    if r.fract() == 0.0 || r >= 100.0 {
        format!("{r:.0}")
    } else {
        format!("{r:.1}")
    }
}

/// `vif --list --rate` (or `--get N --rate`): the title with the interval, the flags legend,
/// then each vif as `vif --list` prints it with its counters per second (`RX packets:N/s
/// bytes:N/s errors:N/s`, ...). With `core`, the counter lines are prefixed `Core N `.
pub fn render_vif_rates(rows: &[RateRow], seconds: f64, core: Option<usize>) -> String {
    let mut s = format!("Vrouter Interface Table: rates per second over {seconds:.2} s\n\n");
    s.push_str(&render_flags_legend());
    s.push('\n');
    let p = core.map(|c| format!("Core {c} ")).unwrap_or_default();
    for r in rows {
        let d = &r.delta;
        let f = |n: u64| format!("{}/s", format_rate(r.per_second(n)));
        s.push_str(&render_vif_head(&r.info));
        let _ =
            writeln!(s, "{INDENT}{p}RX packets:{}  bytes:{} errors:{}", f(d.rx_packets), f(d.rx_bytes), f(d.rx_errors));
        let _ =
            writeln!(s, "{INDENT}{p}TX packets:{}  bytes:{} errors:{}", f(d.tx_packets), f(d.tx_bytes), f(d.tx_errors));
        let _ = writeln!(
            s,
            "{INDENT}{p}Mirror packets:{}  bytes:{} errors:{}",
            f(d.mirror_packets),
            f(d.mirror_bytes),
            f(d.mirror_errors)
        );
        let _ = writeln!(s, "{INDENT}{p}Drops:{}", f(d.drops));
        s.push('\n');
    }
    s
}

#[derive(Serialize)]
struct RateJson<'a> {
    id: u16,
    name: &'a str,
    device: &'a str,
    port: u16,
    interval_s: f64,
    rx_packets_per_s: f64,
    rx_bytes_per_s: f64,
    rx_errors_per_s: f64,
    tx_packets_per_s: f64,
    tx_bytes_per_s: f64,
    tx_errors_per_s: f64,
    mirror_packets_per_s: f64,
    mirror_bytes_per_s: f64,
    mirror_errors_per_s: f64,
    drops_per_s: f64,
    /// The counters' deltas over the interval, by counter key.
    delta: DeltaJson,
}

#[derive(Serialize)]
struct DeltaJson {
    rx_packets: u64,
    rx_bytes: u64,
    rx_errors: u64,
    tx_packets: u64,
    tx_bytes: u64,
    tx_errors: u64,
    mirror_packets: u64,
    mirror_bytes: u64,
    mirror_errors: u64,
    drops: u64,
}

/// `vif --list --rate --json`: an array of objects, one per vif: `id`, `name`, `device`,
/// `port`, `interval_s`, `<counter>_per_s` for every counter and `delta` (each counter's
/// increase over the interval).
pub fn render_vif_rates_json(rows: &[RateRow], pretty: bool) -> String {
    let objs: Vec<RateJson<'_>> = rows
        .iter()
        .map(|r| {
            let d = &r.delta;
            RateJson {
                id: r.info.id,
                name: &r.info.name,
                device: &r.info.device,
                port: r.info.port_id,
                interval_s: r.seconds,
                rx_packets_per_s: r.per_second(d.rx_packets),
                rx_bytes_per_s: r.per_second(d.rx_bytes),
                rx_errors_per_s: r.per_second(d.rx_errors),
                tx_packets_per_s: r.per_second(d.tx_packets),
                tx_bytes_per_s: r.per_second(d.tx_bytes),
                tx_errors_per_s: r.per_second(d.tx_errors),
                mirror_packets_per_s: r.per_second(d.mirror_packets),
                mirror_bytes_per_s: r.per_second(d.mirror_bytes),
                mirror_errors_per_s: r.per_second(d.mirror_errors),
                drops_per_s: r.per_second(d.drops),
                delta: DeltaJson {
                    rx_packets: d.rx_packets,
                    rx_bytes: d.rx_bytes,
                    rx_errors: d.rx_errors,
                    tx_packets: d.tx_packets,
                    tx_bytes: d.tx_bytes,
                    tx_errors: d.tx_errors,
                    mirror_packets: d.mirror_packets,
                    mirror_bytes: d.mirror_bytes,
                    mirror_errors: d.mirror_errors,
                    drops: d.drops,
                },
            }
        })
        .collect();
    to_json(&objs, pretty)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::VifRow;
    use vrouter_abi::drop_reason::DROP_REASON_COUNT;
    use vrouter_abi::stats::{HeaderInfo, Liveness, VifInfo, VIF_TYPE_VIRTUAL};

    fn snap(rows: &[(u16, VifCounters)]) -> Snapshot {
        Snapshot {
            path: "stats".into(),
            header: HeaderInfo {
                layout_version: 0,
                file_size: 0,
                max_vifs: 8,
                n_lcores: 1,
                n_drop_reasons: DROP_REASON_COUNT,
                generation: 1,
                creator_pid: 1,
                start_time_unix: 0,
                tsc_hz: 0,
                state: 1,
                heartbeat_ms: 0,
            },
            liveness: Liveness::Running,
            core: None,
            vifs: rows
                .iter()
                .map(|&(id, counters)| VifRow {
                    info: VifInfo::new(id, VIF_TYPE_VIRTUAL, &format!("tap-vm{id}")).device("net_pcap1").decode(),
                    counters,
                    drops: [0; DROP_REASON_COUNT],
                })
                .collect(),
            drops: [0; DROP_REASON_COUNT],
        }
    }

    #[test]
    fn rates_are_the_deltas_over_the_interval() {
        let a = VifCounters { rx_packets: 100, rx_bytes: 6400, tx_packets: 7, drops: 3, ..Default::default() };
        let b = VifCounters { rx_packets: 300, rx_bytes: 19200, tx_packets: 7, drops: 4, ..Default::default() };
        // vif 2 appears only in the second read: no rate yet.
        let rows = vif_rates(&snap(&[(1, a)]), &snap(&[(1, b), (2, b)]), 2.0);
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!((r.delta.rx_packets, r.delta.rx_bytes, r.delta.tx_packets, r.delta.drops), (200, 12800, 0, 1));
        assert_eq!((r.per_second(r.delta.rx_packets), r.per_second(r.delta.drops)), (100.0, 0.5));
        let text = render_vif_rates(&rows, 2.0, None);
        assert!(text.starts_with("Vrouter Interface Table: rates per second over 2.00 s\n"), "{text}");
        assert!(text.contains("            RX packets:100/s  bytes:6400/s errors:0/s\n"), "{text}");
        assert!(text.contains("            TX packets:0/s  bytes:0/s errors:0/s\n"), "{text}");
        assert!(text.contains("            Drops:0.5/s\n"), "{text}");
        assert!(render_vif_rates(&rows, 2.0, Some(1)).contains("Core 1 RX packets:100/s"));
        let v: serde_json::Value = serde_json::from_str(&render_vif_rates_json(&rows, false)).unwrap();
        assert_eq!(v[0]["id"], 1);
        assert_eq!(v[0]["name"], "tap-vm1");
        assert_eq!(v[0]["interval_s"], 2.0);
        assert_eq!(v[0]["rx_packets_per_s"], 100.0);
        assert_eq!(v[0]["rx_bytes_per_s"], 6400.0);
        assert_eq!(v[0]["delta"]["rx_packets"], 200);
        assert_eq!(v[0]["delta"]["drops"], 1);
        // A counter that went back (the vif was deleted and added again) reads 0, not a wrap.
        assert_eq!(counter_delta(&b, &a).rx_packets, 0);
    }

    #[test]
    fn rate_text() {
        assert_eq!(format_rate(0.0), "0");
        assert_eq!(format_rate(12.0), "12");
        assert_eq!(format_rate(0.5), "0.5");
        assert_eq!(format_rate(100.0 / 3.0), "33.3");
        assert_eq!(format_rate(1234.6), "1235");
    }
}
