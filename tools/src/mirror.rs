//! `mirror`: the mirror table (analyzers) and its per-entry counters, read live from the
//! vRouter's mirror region; entries are created and deleted through the control socket.

use std::fmt::Write as _;

use serde_json::Value;
use vrouter_abi::mirror::{entry_json, EntryStats, MirrorReader, SlotEntry};

use crate::Failure;

/// One entry with its counters.
#[derive(Clone, Debug)]
pub struct MirrorRow {
    /// Mirror index (0..=254).
    pub index: u8,
    /// The entry as stored in the region.
    pub entry: SlotEntry,
    /// Its counters summed over lcores.
    pub stats: EntryStats,
}

/// Every entry of the region at `run_dir`, in index order.
pub fn load_mirrors(run_dir: &std::path::Path) -> Result<Vec<MirrorRow>, Failure> {
    let r = MirrorReader::open(run_dir).map_err(|e| Failure(e.to_string()))?;
    Ok(r.entries()
        .into_iter()
        .map(|(index, entry)| MirrorRow { stats: r.stats(usize::from(index), None), index, entry })
        .collect())
}

fn flag_letters(e: &SlotEntry) -> String {
    let mut f = String::new();
    if e.flags & vrouter_abi::mirror::MirrorFlags::DYNAMIC.bits() != 0 {
        f.push('D');
    }
    if e.flags & vrouter_abi::mirror::MirrorFlags::HW_ASSISTED.bits() != 0 {
        f.push_str("Hw");
    }
    f
}

/// vRouter-wide mirror counters (from the stats region): `mir_tpkts`, `mir_bytes`, failed
/// copies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MirrorTotals {
    /// Mirror copies sent.
    pub mir_tpkts: u64,
    /// Bytes of the copies sent.
    pub mir_bytes: u64,
    /// Copies that could not be made or sent.
    pub mir_errors: u64,
}

/// The vRouter-wide counters of the stats region at `run_dir`, if there is one.
pub fn load_totals(run_dir: &std::path::Path) -> Option<MirrorTotals> {
    let r = vrouter_abi::stats::StatsReader::open(run_dir).ok()?;
    let l = r.lcore_counters(None);
    Some(MirrorTotals { mir_tpkts: l.mirror_packets, mir_bytes: l.mirror_bytes, mir_errors: l.mirror_errors })
}

/// `mirror --dump`: the tf header and legend, then one line per entry with the analyzer
/// and its counters, then the vRouter-wide totals (when the stats region is there).
pub fn render_dump(rows: &[MirrorRow], totals: Option<MirrorTotals>) -> String {
    let mut s = String::from("Mirror Table\n\n");
    s.push_str("Flags:D=Dynamic Mirroring (Juniper header), Hw=NIC Assisted Mirroring \n\n");
    let _ = writeln!(
        s,
        "{:>5}  {:<24} {:<21} {:>5} {:>8} {:>6} {:>12} {:>14} {:>8}",
        "Index", "Analyzer", "Address", "Flags", "VNI", "NH vif", "Packets", "Bytes", "Errors"
    );
    s.push_str(&"-".repeat(113));
    s.push('\n');
    for r in rows {
        let e = &r.entry;
        let vni = e.vni.map_or_else(|| "-".to_string(), |v| v.to_string());
        let nh = e.nh_vif.map_or_else(|| "none".to_string(), |v| format!("vif0/{v}"));
        let _ = writeln!(
            s,
            "{:>5}  {:<24} {:<21} {:>5} {:>8} {:>6} {:>12} {:>14} {:>8}",
            r.index,
            e.analyzer_name,
            format!("{}:{}", e.analyzer_ip, e.udp_port),
            flag_letters(e),
            vni,
            nh,
            r.stats.packets,
            r.stats.bytes,
            r.stats.errors
        );
    }
    if let Some(t) = totals {
        let _ = write!(
            s,
            "\nvRouter mirror totals: mir_tpkts:{}  mir_bytes:{} errors:{}\n",
            t.mir_tpkts, t.mir_bytes, t.mir_errors
        );
    }
    s
}

/// `mirror --get N`: one entry, one field per line.
pub fn render_get(r: &MirrorRow) -> String {
    let e = &r.entry;
    let mut s = String::new();
    let mut f = |k: &str, v: String| {
        let _ = writeln!(s, "{:<22}{v}", format!("{k}:"));
    };
    f("Mirror Index", r.index.to_string());
    f("Analyzer", e.analyzer_name.clone());
    f("Analyzer Address", format!("{}:{}", e.analyzer_ip, e.udp_port));
    f("Nexthop Mode", e.nh_mode.as_str().to_string());
    f(
        "Encapsulation",
        if e.juniper_header {
            "Juniper header (IP/UDP + metadata)".to_string()
        } else {
            format!("VXLAN, VNI {}", e.vni.unwrap_or(0))
        },
    );
    f("Flags", flag_letters(e));
    f("Nexthop", e.nh_vif.map_or_else(|| "none (analyzer unreachable)".to_string(), |v| format!("vif0/{v}")));
    f("Mirrored", format!("packets:{}  bytes:{} errors:{}", r.stats.packets, r.stats.bytes, r.stats.errors));
    s
}

fn to_text(v: &Value, pretty: bool) -> String {
    let mut s = if pretty { serde_json::to_string_pretty(v) } else { serde_json::to_string(v) }.expect("plain data");
    s.push('\n');
    s
}

/// `mirror --dump --json`: `{"entries": [...], "mir_tpkts", "mir_bytes", "mir_errors"}`
/// (the totals are null without a stats region).
pub fn render_dump_json(rows: &[MirrorRow], totals: Option<MirrorTotals>, pretty: bool) -> String {
    let entries: Vec<Value> = rows.iter().map(|r| entry_json(r.index, &r.entry, r.stats)).collect();
    let v = serde_json::json!({
        "entries": entries,
        "mir_tpkts": totals.map(|t| t.mir_tpkts),
        "mir_bytes": totals.map(|t| t.mir_bytes),
        "mir_errors": totals.map(|t| t.mir_errors),
    });
    to_text(&v, pretty)
}

/// `mirror --get N --json`: the entry object.
pub fn render_get_json(r: &MirrorRow, pretty: bool) -> String {
    to_text(&entry_json(r.index, &r.entry, r.stats), pretty)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn row() -> MirrorRow {
        MirrorRow {
            index: 1,
            entry: SlotEntry {
                analyzer_name: "an-a".into(),
                analyzer_ip: Ipv4Addr::new(10, 9, 0, 5),
                udp_port: 8099,
                vni: None,
                nh_mode: vrouter_abi::mirror::NhMode::Dynamic,
                juniper_header: true,
                flags: 1,
                nh_vif: Some(0),
                hdr: [0; 64],
                hdr_len: 42,
                ip_csum_base: 0,
                created_ms: 0,
            },
            stats: EntryStats { packets: 7, bytes: 700, errors: 1 },
        }
    }

    #[test]
    fn dump_and_get_text() {
        let d = render_dump(&[row()], None);
        assert!(d.starts_with("Mirror Table\n\n"));
        let line = d.lines().last().unwrap();
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols, ["1", "an-a", "10.9.0.5:8099", "D", "-", "vif0/0", "7", "700", "1"]);
        let g = render_get(&row());
        assert!(g.contains("Analyzer:             an-a\n"), "{g}");
        assert!(g.contains("Mirrored:             packets:7  bytes:700 errors:1\n"), "{g}");
    }

    #[test]
    fn json_has_counters_and_name() {
        let t = MirrorTotals { mir_tpkts: 9, mir_bytes: 900, mir_errors: 2 };
        let j: Value = serde_json::from_str(&render_dump_json(&[row()], Some(t), false)).unwrap();
        let e = &j["entries"][0];
        assert_eq!(e["analyzer_name"], "an-a");
        assert_eq!((e["packets"].as_u64(), e["bytes"].as_u64(), e["errors"].as_u64()), (Some(7), Some(700), Some(1)));
        assert_eq!(
            (j["mir_tpkts"].as_u64(), j["mir_bytes"].as_u64(), j["mir_errors"].as_u64()),
            (Some(9), Some(900), Some(2))
        );
        let g: Value = serde_json::from_str(&render_get_json(&row(), true)).unwrap();
        assert_eq!(g["index"], 1);
        assert!(
            render_dump(&[row()], Some(t)).ends_with("\nvRouter mirror totals: mir_tpkts:9  mir_bytes:900 errors:2\n")
        );
    }
}
