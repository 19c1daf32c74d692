//! `mirror`: the mirror table (analyzers) and its per-entry counters, read live from the
//! vRouter's mirror region; entries are created and deleted through the control socket;
//! `--reconcile` puts the flows mirrored to each analyzer next to the copies sent
//! ([`reconcile`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use flow_table::{Action, FlowSnapshot, NO_MIRROR};
use serde_json::Value;
use vrouter_abi::mirror::{entry_json, Balance, EntryStats, MirrorReader, SlotEntry};

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

// ---------------------------------------------------------------- reconciliation

/// One analyzer's reconciliation: its entry (when the index has one), the balance of the
/// live flows mirrored to it, and the entry's own counters.
#[derive(Clone, Debug)]
pub struct AnalyzerBalance {
    /// Mirror index.
    pub index: u8,
    /// The entry; `None` when flows point at an index that has no entry (their copies are
    /// lost as `Mirror No Entry`).
    pub entry: Option<SlotEntry>,
    /// The live flows mirrored to it (as primary or secondary), summed.
    pub balance: Balance,
    /// The entry's counters (since the vRouter started; copies of flows gone since
    /// included).
    pub stats: EntryStats,
}

impl AnalyzerBalance {
    /// The analyzer's name, or `index N` for an index without an entry.
    pub fn name(&self) -> String {
        self.entry.as_ref().map_or_else(|| format!("index {}", self.index), |e| e.analyzer_name.clone())
    }

    /// Flow-mirroring copies the entry sent that no live flow mirrored to it accounts for
    /// (flows gone from the table, or no longer mirrored to it).
    pub fn gone_sent(&self) -> i64 {
        self.stats.flow_packets as i64 - self.balance.sent_packets as i64
    }

    /// Likewise for lost copies.
    pub fn gone_lost(&self) -> i64 {
        self.stats.flow_lost.total() as i64 - self.balance.lost_packets as i64
    }
}

/// One rule's flows mirrored to one analyzer, summed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleBalance {
    /// The rule that decided the flows: its network-policy UUID (`nw_ace_uuid`), else its
    /// security-group rule UUID, else `-` (no rule known).
    pub rule: String,
    /// The analyzer.
    pub analyzer: String,
    /// The flows' balance for that analyzer.
    pub balance: Balance,
}

/// What `mirror --reconcile` shows.
#[derive(Clone, Debug)]
pub struct Reconciliation {
    /// By mirror index: every entry, and every index a flow points at.
    pub analyzers: Vec<AnalyzerBalance>,
    /// By rule and analyzer (rule then analyzer order); `Err`: why the rules are unknown
    /// (the agent could not be asked).
    pub rules: Result<Vec<RuleBalance>, String>,
}

/// Names a flow's rule (`None`: unknown to the agent).
pub type RuleOf<'a> = &'a dyn Fn(&FlowSnapshot) -> Option<String>;

/// Reconciles the live `flows` with the `entries` of the mirror region (`stats_of`: the
/// counters of an index without an entry). `rule_of` names each flow's rule (`None`: unknown
/// to the agent); `Err` when the agent could not be asked.
pub fn reconcile(
    flows: &[FlowSnapshot],
    entries: &[MirrorRow],
    stats_of: impl Fn(u8) -> EntryStats,
    rule_of: Result<RuleOf<'_>, String>,
) -> Reconciliation {
    let mut by_index: BTreeMap<u8, AnalyzerBalance> = entries
        .iter()
        .map(|r| {
            let a = AnalyzerBalance {
                index: r.index,
                entry: Some(r.entry.clone()),
                balance: Balance::default(),
                stats: r.stats,
            };
            (r.index, a)
        })
        .collect();
    let mut by_rule: BTreeMap<(String, String), Balance> = BTreeMap::new();
    for f in flows.iter().filter(|f| f.action != Action::Hold) {
        let rule = rule_of.as_ref().ok().map(|rule_of| rule_of(f).unwrap_or_else(|| "-".into()));
        for (secondary, index) in [(false, f.mirror), (true, f.sec_mirror)] {
            if index == NO_MIRROR {
                continue;
            }
            let a = by_index.entry(index).or_insert_with(|| AnalyzerBalance {
                index,
                entry: None,
                balance: Balance::default(),
                stats: stats_of(index),
            });
            let share = f.mirror_share(secondary);
            a.balance.add(&share);
            if let Some(rule) = &rule {
                by_rule.entry((rule.clone(), a.name())).or_default().add(&share);
            }
        }
    }
    let rules = rule_of.map(|_| {
        by_rule.into_iter().map(|((rule, analyzer), balance)| RuleBalance { rule, analyzer, balance }).collect()
    });
    Reconciliation { analyzers: by_index.into_values().collect(), rules }
}

/// `mirror --reconcile`: per analyzer, the live flows mirrored to it next to the copies
/// sent, every packet without a copy explained, and the entry's own counters; then the same
/// balance per rule and analyzer.
pub fn render_reconcile(r: &Reconciliation) -> String {
    let mut s = String::from("Mirror Reconciliation (flows in the flow table now)\n");
    s.push_str("Packets = copies sent + copies lost + before the rule + held and dropped\n");
    for a in &r.analyzers {
        let b = &a.balance;
        let whom = match &a.entry {
            Some(e) => format!(
                "{} (index {}, {}:{}, nexthop {})",
                e.analyzer_name,
                a.index,
                e.analyzer_ip,
                e.udp_port,
                e.nh_vif.map_or_else(|| "none".to_string(), |v| format!("vif0/{v}"))
            ),
            None => format!("index {} (no entry)", a.index),
        };
        let _ = writeln!(s, "\nAnalyzer {whom}");
        let mut f = |k: &str, v: String| {
            let _ = writeln!(s, "    {:<22}{v}", format!("{k}:"));
        };
        f("Flows mirrored", b.flows.to_string());
        f("Matching", format!("packets:{}  bytes:{}", b.packets, b.bytes));
        f("Copies sent", format!("packets:{}  bytes:{}", b.sent_packets, b.sent_bytes));
        f("Copies lost", format!("{}  ({})", b.lost_packets, a.stats.flow_lost.describe()));
        f("Before the rule", b.before_mirror_packets.to_string());
        f("Held and dropped", b.held_dropped_packets.to_string());
        f("Unexplained", b.unexplained().to_string());
        f("Balance", b.identity());
        f(
            "Entry (flow copies)",
            format!(
                "sent:{} bytes:{} lost:{}; of flows gone or no longer mirrored here: sent:{} lost:{}",
                a.stats.flow_packets,
                a.stats.flow_bytes,
                a.stats.flow_lost.total(),
                a.gone_sent(),
                a.gone_lost()
            ),
        );
        f(
            "Entry (interface)",
            format!(
                "sent:{} bytes:{} lost:{}  ({})",
                a.stats.interface_packets(),
                a.stats.interface_bytes(),
                a.stats.interface_lost.total(),
                a.stats.interface_lost.describe()
            ),
        );
    }
    if r.analyzers.is_empty() {
        s.push_str("\nNo mirror entries and no mirrored flows.\n");
    }
    match &r.rules {
        Ok(rules) => {
            let _ = writeln!(
                s,
                "\n{:<36}  {:<24} {:>6} {:>10} {:>10} {:>8} {:>8} {:>8} {:>8}",
                "Rule", "Analyzer", "Flows", "Packets", "Sent", "Lost", "Before", "Held", "Unexpl"
            );
            for x in rules {
                let b = &x.balance;
                let _ = writeln!(
                    s,
                    "{:<36}  {:<24} {:>6} {:>10} {:>10} {:>8} {:>8} {:>8} {:>8}",
                    x.rule,
                    x.analyzer,
                    b.flows,
                    b.packets,
                    b.sent_packets,
                    b.lost_packets,
                    b.before_mirror_packets,
                    b.held_dropped_packets,
                    b.unexplained()
                );
            }
        }
        Err(e) => {
            let _ = writeln!(s, "\nRules: unknown ({e})");
        }
    }
    s
}

/// `mirror --reconcile --json`: `{"analyzers": [...], "rules": [...] | null, "rules_error"}`;
/// each analyzer has the [`Balance`] fields, `lost` (the entry's flow-mirroring copies lost
/// by reason), `entry` (its counters) and `gone_sent_packets`/`gone_lost_packets`; each rule
/// has `rule`, `analyzer_name` and the [`Balance`] fields.
pub fn render_reconcile_json(r: &Reconciliation, pretty: bool) -> String {
    let analyzers: Vec<Value> = r
        .analyzers
        .iter()
        .map(|a| {
            let mut v = serde_json::to_value(a.balance).expect("plain data");
            v["index"] = a.index.into();
            v["analyzer_name"] = a.name().into();
            v["analyzer_ip"] = a.entry.as_ref().map(|e| e.analyzer_ip.to_string()).into();
            v["nh_vif"] = a.entry.as_ref().and_then(|e| e.nh_vif).into();
            v["lost"] = serde_json::to_value(a.stats.flow_lost).expect("plain data");
            v["entry"] = serde_json::json!({
                "flow_packets": a.stats.flow_packets,
                "flow_bytes": a.stats.flow_bytes,
                "flow_lost_packets": a.stats.flow_lost.total(),
                "interface_packets": a.stats.interface_packets(),
                "interface_bytes": a.stats.interface_bytes(),
                "interface_lost": a.stats.interface_lost,
            });
            v["gone_sent_packets"] = a.gone_sent().into();
            v["gone_lost_packets"] = a.gone_lost().into();
            v
        })
        .collect();
    let (rules, error) = match &r.rules {
        Ok(rules) => {
            let rows: Vec<Value> = rules
                .iter()
                .map(|x| {
                    let mut v = serde_json::to_value(x.balance).expect("plain data");
                    v["rule"] = x.rule.clone().into();
                    v["analyzer_name"] = x.analyzer.clone().into();
                    v
                })
                .collect();
            (Value::Array(rows), Value::Null)
        }
        Err(e) => (Value::Null, Value::String(e.clone())),
    };
    to_text(&serde_json::json!({"analyzers": analyzers, "rules": rules, "rules_error": error}), pretty)
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
            stats: EntryStats { packets: 7, bytes: 700, errors: 1, ..EntryStats::default() },
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

    fn flow(
        index: u32,
        mirrors: [u8; 2],
        packets: u64,
        sent: [u64; 2],
        acct: flow_table::FlowAccounting,
    ) -> FlowSnapshot {
        FlowSnapshot {
            index,
            gen: 1,
            key: flow_table::FlowKey::v4(1, 17, Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2), 1000, 80),
            flags: flow_table::flags::ACTIVE,
            action: Action::Forward,
            drop_reason: 0,
            rflow: None,
            src_nh: 0,
            tcp_flags: 0,
            setup_time: 0,
            last_seen: 0,
            mirror: mirrors[0],
            sec_mirror: mirrors[1],
            underlay_sport: 0,
            bytes: packets * 100,
            packets,
            mirror_bytes: sent[0] * 150,
            mirror_packets: sent[0],
            sec_mirror_bytes: sent[1] * 150,
            sec_mirror_packets: sent[1],
            accounting: acct,
            hash: 0,
            bucket: 0,
            overflow_next: None,
        }
    }

    #[test]
    fn reconcile_per_analyzer_and_rule() {
        use flow_table::FlowAccounting;
        use vrouter_abi::drop_reason::DropReason;
        let acct = |lost: u64, sec_lost: u64, before: u64, held: u64| FlowAccounting {
            mirror_lost: lost,
            sec_mirror_lost: sec_lost,
            before_mirror: before,
            held_dropped: held,
        };
        // Flow 1 to an-a (1) and index 9 (no entry: every copy lost); flow 2 to an-a only,
        // set up before its rule; flow 3 not mirrored; flow 4 to an-a in HOLD (not counted).
        let flows = [
            flow(1, [1, 9], 10, [8, 0], acct(1, 9, 0, 1)),
            flow(2, [1, NO_MIRROR], 6, [2, 0], acct(0, 0, 4, 0)),
            flow(3, [NO_MIRROR, NO_MIRROR], 50, [0, 0], acct(0, 0, 0, 0)),
            FlowSnapshot { action: Action::Hold, ..flow(4, [1, NO_MIRROR], 1, [0, 0], acct(0, 0, 0, 0)) },
        ];
        let mut a = row();
        a.stats = EntryStats { packets: 11, bytes: 1650, errors: 1, flow_packets: 10, flow_bytes: 1500, ..a.stats };
        a.stats.flow_lost.add(DropReason::MirrorEncapFail, 1);
        let mut nine = EntryStats::default();
        nine.flow_lost.add(DropReason::MirrorNoEntry, 9);
        let rules = |f: &FlowSnapshot| (f.index == 1).then(|| "rule-1".to_string());
        let r = reconcile(&flows, &[a], |i| if i == 9 { nine } else { EntryStats::default() }, Ok(&rules));
        assert_eq!(r.analyzers.len(), 2);
        let (an_a, idx9) = (&r.analyzers[0], &r.analyzers[1]);
        assert_eq!((an_a.index, an_a.name(), idx9.index, idx9.name()), (1, "an-a".into(), 9, "index 9".into()));
        let b = an_a.balance;
        assert_eq!((b.flows, b.packets, b.bytes, b.sent_packets, b.sent_bytes), (2, 16, 1600, 10, 1500));
        assert_eq!((b.lost_packets, b.before_mirror_packets, b.held_dropped_packets), (1, 4, 1));
        assert!(b.balanced(), "{b:?}");
        assert_eq!((an_a.gone_sent(), an_a.gone_lost()), (0, 0));
        let b9 = idx9.balance;
        assert_eq!((b9.flows, b9.packets, b9.sent_packets, b9.lost_packets, b9.held_dropped_packets), (1, 10, 0, 9, 1));
        assert!(b9.balanced());
        let rules = r.rules.as_ref().unwrap();
        let keys: Vec<(&str, &str, u64)> =
            rules.iter().map(|x| (x.rule.as_str(), x.analyzer.as_str(), x.balance.packets)).collect();
        assert_eq!(keys, [("-", "an-a", 6), ("rule-1", "an-a", 10), ("rule-1", "index 9", 10)]);

        let text = render_reconcile(&r);
        assert!(text.contains("\nAnalyzer an-a (index 1, 10.9.0.5:8099, nexthop vif0/0)\n"), "{text}");
        assert!(text.contains("    Copies lost:          1  (Mirror Encap Fail 1)\n"), "{text}");
        assert!(
            text.contains("    Balance:              16 = 10 sent + 1 lost + 4 before the rule + 1 held and dropped\n")
        );
        assert!(text.contains("\nAnalyzer index 9 (no entry)\n"), "{text}");
        assert!(text.contains("    Copies lost:          9  (Mirror No Entry 9)\n"), "{text}");
        let j: Value = serde_json::from_str(&render_reconcile_json(&r, false)).unwrap();
        let ja = &j["analyzers"][0];
        assert_eq!(
            (ja["analyzer_name"].as_str(), ja["packets"].as_u64(), ja["sent_packets"].as_u64()),
            (Some("an-a"), Some(16), Some(10))
        );
        assert_eq!((ja["lost"]["mirror_encap_fail"].as_u64(), ja["unexplained_packets"].as_i64()), (Some(1), Some(0)));
        assert_eq!((ja["entry"]["interface_packets"].as_u64(), ja["gone_sent_packets"].as_i64()), (Some(1), Some(0)));
        assert_eq!(j["analyzers"][1]["analyzer_ip"], Value::Null);
        assert_eq!(j["rules"][1]["rule"], "rule-1");
        assert_eq!(j["rules_error"], Value::Null);

        // Without the agent: no rules, and why.
        let r = reconcile(&flows, &[row()], |_| EntryStats::default(), Err("vRouter is not running".into()));
        assert!(render_reconcile(&r).ends_with("\nRules: unknown (vRouter is not running)\n"));
        let j: Value = serde_json::from_str(&render_reconcile_json(&r, false)).unwrap();
        assert_eq!((&j["rules"], &j["rules_error"]), (&Value::Null, &Value::from("vRouter is not running")));
    }
}
