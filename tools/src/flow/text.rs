//! Text renderers of `flow` (tf-vrouter `utils/flow.c` formats; see
//! docs/vrouter-reference.md 4.1-4.4). Only values the table holds are printed: no QOS,
//! TTL, Sinfo, ECMP index, destination VRF or burst tokens (this vRouter has none of
//! them), and counters are 64-bit.

use std::fmt::Write as _;

use flow_table::{flags, flow_drop_reason_name, tcp_flags, Action, FlowSnapshot, HeaderInfo, TableStats, NO_MIRROR};
use vrouter_abi::drop_reason::{DropReason, DROP_REASON_COUNT};

use super::endpoints::FlowEndpoints;
use super::matcher::FlowMatch;
use super::sample::{RateSample, SummarySample};
use super::ListItem;

/// Labels of `flow --get` are padded to this many columns (`FLOW_GET_FIELD_LENGTH`).
pub const FIELD_WIDTH: usize = 30;

/// A detail line of `flow -l` is broken once this many characters were printed on it.
const WRAP: usize = 70;

/// The legend printed after the table counters.
pub const LEGEND: &str = "\
Action:F=Forward, D=Drop N=NAT(S=SNAT, D=DNAT, Ps=SPAT, Pd=DPAT, L=Link Local Port)
 Other:K(nh)=Key_Nexthop, S(nh)=RPF_Nexthop
 Flags:E=Evicted, Ec=Evict Candidate, N=New Flow, M=Modified Dm=Delete Marked
TCP(r=reverse):S=SYN, F=FIN, R=RST, C=HalfClose, E=Established, D=Dead

";

/// The protocol as `flow` names it (`vr_proto_string`).
pub fn proto_name(proto: u8) -> &'static str {
    match proto {
        1 => "ICMP",
        6 => "TCP",
        17 => "UDP",
        58 => "ICMPv6",
        132 => "SCTP",
        _ => "UNKNOWN",
    }
}

/// The first lines of `flow -l`: size, counters, flows created per lcore (the last
/// number counts threads that are not forwarding lcores: the agent), then the legend.
pub fn render_list_header(h: &HeaderInfo, st: &TableStats) -> String {
    let mut s = String::new();
    let entries = u64::from(h.main_entries) + u64::from(h.overflow_entries);
    let _ = write!(s, "Flow table(size {}, entries {entries})\n\n", h.layout_size);
    // tf's format has no space before "Processed".
    let _ = writeln!(
        s,
        "Entries: Created {} Added {} Deleted {} Changed {}Processed {} Used Overflow entries {}",
        st.created, st.added, st.deleted, st.changed, st.processed, st.used_overflow_entries
    );
    let per_cpu: Vec<String> = st.hold_stat.iter().map(u64::to_string).collect();
    let _ = write!(s, "(Created Flows/CPU: {})\n\n", per_cpu.join(" "));
    s.push_str(LEGEND);
    s
}

/// The column titles and the 83-dash rule.
pub fn render_column_header() -> String {
    format!(
        "    Index            {:4}Source:Port/Destination:Port                  {:4}Proto(V)\n{}\n",
        "",
        "",
        "-".repeat(83)
    )
}

/// `Flags:` letters of `flow -l`.
fn flag_letters(f: u32) -> String {
    let mut s = String::new();
    for (bit, l) in [
        (flags::EVICTED, "E"),
        (flags::EVICT_CANDIDATE, "Ec"),
        (flags::NEW_FLOW, "N"),
        (flags::MODIFIED, "M"),
        (flags::DELETE_MARKED, "Dm"),
    ] {
        if f & bit != 0 {
            s.push_str(l);
        }
    }
    s
}

/// `TCP:` letters of `flow -l` (`r` = seen on the reverse flow).
fn tcp_letters(t: u16) -> String {
    tcp_flags::TCP_FLAGS.iter().filter(|f| t & f.bit != 0).map(|f| f.symbol).collect()
}

/// NAT flag letters (`S`, `Ps`, `D`, `Pd`, `L`, in bit order).
fn nat_letters(f: u32) -> String {
    let mut s = String::new();
    for (bit, l) in
        [(flags::SNAT, "S"), (flags::SPAT, "Ps"), (flags::DNAT, "D"), (flags::DPAT, "Pd"), (flags::LINK_LOCAL, "L")]
    {
        if f & bit != 0 {
            s.push_str(l);
        }
    }
    s
}

/// The mirror indices a flow has (primary first), `NO_MIRROR` left out.
fn mirror_ids(s: &FlowSnapshot) -> (Option<u8>, Option<u8>) {
    let id = |m: u8| (m != NO_MIRROR).then_some(m);
    (id(s.mirror), id(s.sec_mirror))
}

fn is_mirrored(s: &FlowSnapshot) -> bool {
    s.flags & flags::MIRROR != 0 || mirror_ids(s) != (None, None)
}

/// A line that breaks once [`WRAP`] characters were printed (tf's
/// `print_new_line_if_required`, called between fields).
struct Wrapped {
    s: String,
    printed: usize,
}

impl Wrapped {
    fn put(&mut self, t: &str) {
        self.s.push_str(t);
        self.printed += t.len();
    }

    fn wrap(&mut self) {
        if self.printed >= WRAP {
            self.s.push('\n');
            self.printed = 0;
        }
    }
}

/// `addr:port` with the port left-aligned in 5 columns (IPv6 adds 4 spaces).
fn endpoint(addr: std::net::IpAddr, port: u16) -> String {
    let mut s = format!("{addr}:{port:<5}");
    if addr.is_ipv6() {
        s.push_str("    ");
    }
    s
}

/// One flow of `flow -l`: index and reverse index, source, protocol (VRF), destination,
/// the detail line(s), the overflow chain hanging off the slot if any, a blank line.
pub fn render_flow(snap: &FlowSnapshot, chain: &[u32]) -> String {
    let k = &snap.key;
    let mut s = format!("{:9}", snap.index);
    match snap.rflow {
        Some(r) => {
            let _ = write!(s, "<=>{r:<9}");
        }
        None => s.push_str(&" ".repeat(12)),
    }
    s.push_str("    ");
    let _ = write!(s, "{:<46}", endpoint(k.src_ip(), k.sport()));
    let _ = writeln!(s, "    {:3} ({})", k.proto(), k.vrf());
    let _ = writeln!(s, "{:25}{}", "", endpoint(k.dst_ip(), k.dport()));

    let mut w = Wrapped { s: String::new(), printed: 0 };
    w.put("(");
    w.put(&format!("Gen: {}, ", snap.gen));
    w.put(&format!("K(nh):{}, ", k.nh_id()));
    w.put(&format!("Action:{}", snap.action.letter()));
    match snap.action {
        Action::Nat => w.put(&format!("({})", nat_letters(snap.flags))),
        Action::Drop => w.put(&format!("({})", flow_drop_reason_name(snap.drop_reason))),
        Action::Hold | Action::Forward => {}
    }
    w.put(", ");
    w.put(&format!("Flags:{}", flag_letters(snap.flags)));
    w.put(", ");
    if k.proto() == 6 {
        w.put(&format!("TCP:{}, ", tcp_letters(snap.tcp_flags)));
    }
    w.put(&format!("S(nh):{}, ", snap.src_nh));
    w.wrap();
    w.put(&format!(" Stats:{}/{}, ", snap.packets, snap.bytes));
    w.wrap();
    if is_mirrored(snap) {
        let (m, sm) = mirror_ids(snap);
        let ids: Vec<String> = [m, sm].iter().flatten().map(u8::to_string).collect();
        w.put(&format!(" Mirror Index : {},", ids.join(", ")));
        w.wrap();
        if let Some(m) = m {
            w.put(&format!(" MStats:{}/{} ({m}),", snap.mirror_packets, snap.mirror_bytes));
            w.wrap();
        }
        if let Some(m) = sm {
            w.put(&format!(" SMStats:{}/{} ({m}),", snap.sec_mirror_packets, snap.sec_mirror_bytes));
            w.wrap();
        }
    }
    w.put(&format!(" SPort {})", snap.underlay_sport));
    s.push_str(&w.s);
    s.push_str(&render_oflow(chain));
    s.push_str("\n\n");
    s
}

/// `\n     Oflow entries:\n\t 9 8 ...` (wrapped after 65 characters), or nothing.
fn render_oflow(chain: &[u32]) -> String {
    if chain.is_empty() {
        return String::new();
    }
    let mut s = String::from("\n     Oflow entries:\n\t");
    let mut j = 0;
    for i in chain {
        let t = format!(" {i}");
        j += t.len();
        s.push_str(&t);
        if j > 65 {
            s.push_str("\n     ");
            j = 0;
        }
    }
    s
}

/// A block of `flow -l`.
pub fn render_list_item(item: &ListItem) -> String {
    match item {
        ListItem::Flow { snap, chain } => render_flow(snap, chain),
        ListItem::Chain { index, chain } => format!("{index:6}{}\n\n", render_oflow(chain)),
    }
}

/// The whole of `flow -l` (the tool streams the same pieces).
pub fn render_list(h: &HeaderInfo, st: &TableStats, filter: Option<&FlowMatch>, items: &[ListItem]) -> String {
    let mut s = render_list_header(h, st);
    if let Some(m) = filter {
        s.push_str(&m.banner());
    }
    s.push_str(&render_column_header());
    for i in items {
        s.push_str(&render_list_item(i));
    }
    s
}

/// The global drop counters `flow --get` prints (from the vRouter's stats region).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SystemDrops {
    /// All drops.
    pub total: u64,
    /// Reverse path (RPF) failures: `Invalid Source`.
    pub reverse_path: u64,
    /// Drops of the flow module (tf's `flow_sum_drops_stats`).
    pub flow_block: u64,
}

impl SystemDrops {
    /// Sums the global drop counters into tf's system drop lines.
    pub fn from_drops(d: &[u64; DROP_REASON_COUNT]) -> SystemDrops {
        let flow_block = [
            DropReason::FlowQueueLimitExceeded,
            DropReason::FlowNoMemory,
            DropReason::FlowInvalidProtocol,
            DropReason::FlowNatNoRflow,
            DropReason::FlowActionDrop,
            DropReason::FlowActionInvalid,
            DropReason::FlowUnusable,
            DropReason::FlowTableFull,
            DropReason::NewFlowDrops,
        ]
        .iter()
        .fold(0u64, |a, r| a.wrapping_add(d[r.index()]));
        SystemDrops {
            total: d.iter().fold(0u64, |a, &n| a.wrapping_add(n)),
            reverse_path: d[DropReason::InvalidSource.index()],
            flow_block,
        }
    }
}

fn field(s: &mut String, name: &str) {
    let _ = write!(s, "{:<FIELD_WIDTH$}", format!("{name}:"));
}

fn pad(s: &mut String) {
    s.push_str(&" ".repeat(FIELD_WIDTH));
}

/// `flow --get N`: one field per line, labels padded to 30 columns. `endpoints` adds the
/// Source and Destination Information blocks; `drops` (from the stats region) the
/// system-wide drop lines.
pub fn render_get(snap: &FlowSnapshot, endpoints: Option<&FlowEndpoints>, drops: Option<&SystemDrops>) -> String {
    let k = &snap.key;
    let mut s = String::new();
    field(&mut s, "Flow Index");
    let _ = writeln!(s, "{}", snap.index);
    field(&mut s, "Flow Generation ID");
    let _ = writeln!(s, "{}", snap.gen);
    field(&mut s, "Reverse Flow Index");
    match snap.rflow {
        Some(r) => writeln!(s, "{r}"),
        None => writeln!(s, "-1"),
    }
    .expect("writing to a String");
    field(&mut s, "VRF");
    let _ = writeln!(s, "{}", k.vrf());
    field(&mut s, "Flow Source");
    let _ = writeln!(s, "[{}]:{:<5}", k.src_ip(), k.sport());
    field(&mut s, "Flow Destination");
    let _ = writeln!(s, "[{}]:{:<5}", k.dst_ip(), k.dport());
    field(&mut s, "Flow Protocol");
    let _ = writeln!(s, "{}", proto_name(k.proto()));
    field(&mut s, "Flow Action");
    match snap.action {
        Action::Drop => {
            s.push_str("DROP:");
            pad(&mut s);
            s.push_str(flow_drop_reason_name(snap.drop_reason));
        }
        Action::Nat => {
            s.push_str("NAT: ");
            for (bit, name) in [
                (flags::SNAT, "SourceNAT"),
                (flags::SPAT, "SourcePortNAT"),
                (flags::DNAT, "DestinationNAT"),
                (flags::DPAT, "DestinationPortNAT"),
                (flags::LINK_LOCAL, "LinkLocalNAT"),
            ] {
                if snap.flags & bit != 0 {
                    let _ = write!(s, "{name}, ");
                }
            }
        }
        a => s.push_str(a.name()),
    }
    s.push('\n');
    field(&mut s, "Expected Source");
    let _ = writeln!(s, "NextHop(Index): {}", snap.src_nh);
    if let Some(e) = endpoints {
        s.push_str(&super::endpoints::render_endpoints(e));
    }

    s.push('\n');
    field(&mut s, "Flow Flags");
    for (bit, name) in [
        (flags::EVICTED, "EVICTED"),
        (flags::EVICT_CANDIDATE, "EVICT CANDIDATE"),
        (flags::NEW_FLOW, "NEW"),
        (flags::MODIFIED, "MODIFIED"),
        (flags::MIRROR, "MIRROR"),
        (flags::DELETE_MARKED, "DELETE MARKED"),
    ] {
        if snap.flags & bit != 0 {
            let _ = write!(s, "{name} ");
        }
    }
    s.push('\n');
    if k.proto() == 6 {
        field(&mut s, "TCP FLAGS");
        for f in tcp_flags::TCP_FLAGS.iter().filter(|f| snap.tcp_flags & f.bit != 0) {
            let _ = write!(s, "{}, ", f.name);
        }
        s.push('\n');
    }
    field(&mut s, "UDP Source Port");
    let _ = writeln!(s, "{}", snap.underlay_sport);

    if is_mirrored(snap) {
        let (m, sm) = mirror_ids(snap);
        s.push('\n');
        field(&mut s, "Mirror Index");
        let ids: Vec<String> = [m, sm].iter().flatten().map(u8::to_string).collect();
        let _ = writeln!(s, "{}", ids.join(", "));
        for (id, bytes, packets) in
            [(m, snap.mirror_bytes, snap.mirror_packets), (sm, snap.sec_mirror_bytes, snap.sec_mirror_packets)]
        {
            if let Some(id) = id {
                pad(&mut s);
                let _ = writeln!(s, "Mirror Statistics(Index, Bytes, Packets): {id}, {bytes}, {packets}");
            }
        }
        let a = &snap.accounting;
        pad(&mut s);
        let _ = writeln!(
            s,
            "Mirror Reconciliation(Lost, Sec Lost, Before Rule, Held Dropped): {}, {}, {}, {}",
            a.mirror_lost, a.sec_mirror_lost, a.before_mirror, a.held_dropped
        );
    }

    s.push('\n');
    field(&mut s, "Flow Statistics");
    let _ = writeln!(s, "{}/{}", snap.packets, snap.bytes);
    if let Some(d) = drops {
        field(&mut s, "System Wide Packet Drops");
        let _ = writeln!(s, "{}", d.total);
        pad(&mut s);
        let _ = writeln!(s, "Reverse Path Failures: {}", d.reverse_path);
        pad(&mut s);
        let _ = writeln!(s, "Flow Block Drops: {}", d.flow_block);
    }
    s
}

/// One line of `flow -r`: used entries, flow operations per second, and the operations
/// of the interval (Fwd: HOLD -> action, Rev: created by the agent, Del: deleted or
/// evicted), HOLD entries.
pub fn render_rate_line(r: &RateSample) -> String {
    format!(
        "{}.{:03}:  Entries = {:8} Rate = {:6} (Fwd = {:8} Rev = {:8} Del = {:8}) Hold = {:8} Total Hold Entries {:8}\n",
        r.time.date_time(),
        r.time.millis,
        r.entries,
        r.rate,
        r.fwd,
        r.rev,
        r.del,
        r.hold,
        r.hold
    )
}

/// One screen of `flow -s`.
pub fn render_summary(x: &SummarySample) -> String {
    let c = &x.counts;
    let mut s = String::new();
    let _ = writeln!(s, "{}", x.time.with_zone());
    s.push_str("Flow Statistics\n---------------\n");
    let _ = writeln!(s, "    Total  Entries  --- Total = {:7}, new = {:7} ", c.total, x.total_new);
    let _ = writeln!(s, "    Active Entries  --- Total = {:7}, new = {:7} ", c.active, x.active_new);
    let _ = writeln!(s, "    Hold   Entries  --- Total = {:7}, new = {:7} ", c.hold, x.hold_new);
    let _ = writeln!(s, "    Fwd flow Entries  - Total = {:7}", c.fwd);
    let _ = writeln!(s, "    drop flow Entries - Total = {:7}", c.drop);
    let _ = write!(s, "    NAT flow Entries  - Total = {:7}\n\n", c.nat);
    s.push_str("    Rate of change of Active Entries\n    --------------------------------\n");
    let _ = writeln!(s, "        current rate      = {:8}", x.rate);
    let _ = writeln!(s, "        Avg setup rate    = {:8}", x.avg_setup_rate);
    let _ = writeln!(s, "        Avg teardown rate = {:8}", x.avg_teardown_rate);
    s.push_str("    Rate of change of Flow Entries\n    ------------------------------\n");
    let _ = writeln!(s, "        current rate      = {:8}", x.total_rate);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::sample::{FlowCounts, LocalTime};
    use flow_table::{FlowKey, FLOW_DR_POLICY};

    fn base(index: u32, key: FlowKey) -> FlowSnapshot {
        FlowSnapshot {
            index,
            gen: 1,
            key,
            flags: flags::ACTIVE,
            action: Action::Forward,
            drop_reason: 0,
            rflow: None,
            src_nh: 0,
            tcp_flags: 0,
            setup_time: 0,
            last_seen: 0,
            mirror: NO_MIRROR,
            sec_mirror: NO_MIRROR,
            underlay_sport: 0,
            bytes: 0,
            packets: 0,
            mirror_bytes: 0,
            mirror_packets: 0,
            sec_mirror_bytes: 0,
            sec_mirror_packets: 0,
            accounting: Default::default(),
            hash: 0,
            bucket: 0,
            overflow_next: None,
        }
    }

    fn tcp() -> FlowSnapshot {
        let k = FlowKey::v4(1, 6, [192, 168, 1, 3].into(), [192, 168, 1, 4].into(), 40000, 80);
        FlowSnapshot {
            rflow: Some(12),
            flags: flags::ACTIVE | flags::RFLOW_VALID,
            src_nh: 12,
            tcp_flags: tcp_flags::SYN | tcp_flags::ESTABLISHED,
            underlay_sport: 54321,
            packets: 10,
            bytes: 1500,
            ..base(3, k)
        }
    }

    #[test]
    fn header_and_legend() {
        let h = HeaderInfo {
            layout_version: 1,
            entry_size: 128,
            bucket_width: 8,
            main_entries: 1024,
            overflow_entries: 1024,
            n_buckets: 128,
            max_lcores: 2,
            generation: 1,
            creator_pid: 1,
            creator_start_ticks: 1,
            created_unix_ns: 0,
            layout_size: 300_000,
            file_size: 303_104,
        };
        let st = TableStats {
            created: 5,
            added: 2,
            deleted: 1,
            changed: 3,
            processed: 4,
            used_overflow_entries: 7,
            hold_stat: vec![3, 2, 0],
            ..Default::default()
        };
        let s = render_list_header(&h, &st);
        let expected = "\
Flow table(size 300000, entries 2048)

Entries: Created 5 Added 2 Deleted 1 Changed 3Processed 4 Used Overflow entries 7
(Created Flows/CPU: 3 2 0)

Action:F=Forward, D=Drop N=NAT(S=SNAT, D=DNAT, Ps=SPAT, Pd=DPAT, L=Link Local Port)
 Other:K(nh)=Key_Nexthop, S(nh)=RPF_Nexthop
 Flags:E=Evicted, Ec=Evict Candidate, N=New Flow, M=Modified Dm=Delete Marked
TCP(r=reverse):S=SYN, F=FIN, R=RST, C=HalfClose, E=Established, D=Dead

";
        assert_eq!(s, expected);
        let c = render_column_header();
        assert_eq!(
            c,
            format!(
                "    Index                Source:Port/Destination:Port                      Proto(V)\n{}\n",
                "-".repeat(83)
            )
        );
        assert_eq!(c.lines().nth(1).unwrap().len(), 83);
    }

    #[test]
    fn tcp_flow_wraps_at_70() {
        let s = render_flow(&tcp(), &[]);
        let lines: Vec<&str> = s.split('\n').collect();
        assert_eq!(lines[0], format!("        3<=>12{:11}{:<46}      6 (1)", "", "192.168.1.3:40000"));
        assert_eq!(lines[1], "                         192.168.1.4:80   ");
        // 54 characters, then " Stats:10/1500, " reaches 70: the line breaks there.
        assert_eq!(lines[2], "(Gen: 1, K(nh):1, Action:F, Flags:, TCP:SE, S(nh):12,  Stats:10/1500, ");
        assert_eq!(lines[3], " SPort 54321)");
        assert_eq!(&lines[4..], ["", ""]);
    }

    #[test]
    fn drop_flow_and_no_rflow() {
        let k = FlowKey::v4(2, 17, [10, 0, 0, 1].into(), [10, 0, 0, 2].into(), 5000, 53);
        let s = FlowSnapshot {
            action: Action::Drop,
            drop_reason: FLOW_DR_POLICY,
            flags: flags::ACTIVE | flags::NEW_FLOW | flags::DELETE_MARKED,
            packets: 2,
            bytes: 120,
            ..base(1_000_000, k)
        };
        let out = render_flow(&s, &[]);
        assert_eq!(
            out,
            format!(
                "  1000000{:12}    {:<46}     17 (2)\n{:25}10.0.0.2:53   \n\
                 (Gen: 1, K(nh):2, Action:D(Policy), Flags:NDm, S(nh):0,  Stats:2/120, \n SPort 0)\n\n",
                "", "10.0.0.1:5000", ""
            )
        );
    }

    #[test]
    fn v6_pads_and_mirror_stats() {
        let k = FlowKey::v6(3, 58, "fd00:1::3".parse().unwrap(), "fd00:1::4".parse().unwrap(), 7, 0);
        let s = FlowSnapshot {
            flags: flags::ACTIVE | flags::MIRROR,
            mirror: 1,
            sec_mirror: 2,
            mirror_packets: 1,
            mirror_bytes: 162,
            sec_mirror_packets: 1,
            accounting: Default::default(),
            sec_mirror_bytes: 98,
            packets: 1,
            bytes: 98,
            src_nh: 13,
            underlay_sport: 54475,
            ..base(792, k)
        };
        let out = render_flow(&s, &[]);
        let lines: Vec<&str> = out.split('\n').collect();
        assert_eq!(lines[0], format!("      792{:12}    {:<46}     58 (3)", "", "fd00:1::3:7        "));
        assert_eq!(lines[1], format!("{:25}fd00:1::4:0        ", ""));
        assert_eq!(lines[2], "(Gen: 1, K(nh):3, Action:F, Flags:, S(nh):13,  Stats:1/98,  Mirror Index : 1, 2,");
        assert_eq!(lines[3], " MStats:1/162 (1), SMStats:1/98 (2), SPort 54475)");
        // Primary only.
        let one = FlowSnapshot { sec_mirror: NO_MIRROR, ..s };
        let out = render_flow(&one, &[]);
        assert!(out.contains(" Mirror Index : 1,\n MStats:1/162 (1), SPort 54475)\n\n"), "{out}");
        assert!(!out.contains("SMStats"));
    }

    #[test]
    fn nat_and_hold_actions() {
        let k = FlowKey::v4(1, 17, [1, 1, 1, 1].into(), [2, 2, 2, 2].into(), 1, 2);
        let s = FlowSnapshot { action: Action::Nat, flags: flags::ACTIVE | flags::SNAT | flags::DPAT, ..base(0, k) };
        assert!(render_flow(&s, &[]).contains("Action:N(SPd), "));
        let s =
            FlowSnapshot { action: Action::Hold, flags: flags::ACTIVE | flags::HOLD | flags::NEW_FLOW, ..base(0, k) };
        assert!(render_flow(&s, &[]).contains("Action:H, Flags:N, S(nh)"));
        assert!(render_get(&s, None, None).contains("\nFlow Action:                  HOLD\n"));
    }

    #[test]
    fn oflow_chain() {
        let k = FlowKey::v4(1, 17, [1, 1, 1, 1].into(), [2, 2, 2, 2].into(), 1, 2);
        let out = render_flow(&FlowSnapshot { overflow_next: Some(9), ..base(7, k) }, &[9, 8]);
        assert!(out.ends_with(" SPort 0)\n     Oflow entries:\n\t 9 8\n\n"), "{out:?}");
        let out = render_list_item(&ListItem::Chain { index: 7, chain: vec![1000, 1001] });
        assert_eq!(out, "     7\n     Oflow entries:\n\t 1000 1001\n\n");
        // Wrapped once more than 65 characters were printed.
        let long: Vec<u32> = (1_000_000..1_000_012).collect();
        let out = render_oflow(&long);
        let lines: Vec<&str> = out.split('\n').collect();
        assert_eq!(lines[2].len(), 1 + 8 * 9); // tab, 9 indices of " 1000000"
        assert!(lines[3].starts_with("      1000009"));
    }

    #[test]
    fn get_view() {
        let d = SystemDrops { total: 24560, reverse_path: 0, flow_block: 9 };
        let out = render_get(&tcp(), None, Some(&d));
        let expected = "\
Flow Index:                   3
Flow Generation ID:           1
Reverse Flow Index:           12
VRF:                          1
Flow Source:                  [192.168.1.3]:40000
Flow Destination:             [192.168.1.4]:80   
Flow Protocol:                TCP
Flow Action:                  FORWARD
Expected Source:              NextHop(Index): 12

Flow Flags:                   
TCP FLAGS:                    SYN, ESTABLISHED, 
UDP Source Port:              54321

Flow Statistics:              10/1500
System Wide Packet Drops:     24560
                              Reverse Path Failures: 0
                              Flow Block Drops: 9
";
        assert_eq!(out, expected);
    }

    #[test]
    fn get_drop_and_mirror() {
        let k = FlowKey::v4(1, 1, [11, 0, 0, 4].into(), [192, 168, 122, 1].into(), 5779, 0);
        let s = FlowSnapshot {
            action: Action::Drop,
            drop_reason: FLOW_DR_POLICY,
            flags: flags::ACTIVE | flags::MIRROR,
            mirror: 1,
            mirror_bytes: 162,
            mirror_packets: 1,
            ..base(792, k)
        };
        let out = render_get(&s, None, None);
        assert!(out.contains(&format!("\nFlow Action:                  DROP:{:30}Policy\n", "")), "{out}");
        assert!(out.contains("\nFlow Flags:                   MIRROR \n"));
        assert!(!out.contains("TCP FLAGS"));
        assert!(
            out.ends_with(
                "\nMirror Index:                 1\n\
             \x20                             Mirror Statistics(Index, Bytes, Packets): 1, 162, 1\n\
             \x20                             Mirror Reconciliation(Lost, Sec Lost, Before Rule, Held Dropped): 0, 0, 0, 0\n\
             \nFlow Statistics:              0/0\n"
            ),
            "{out}"
        );
        assert!(!out.contains("System Wide"));
    }

    #[test]
    fn system_drops_sum() {
        let mut d = [0u64; DROP_REASON_COUNT];
        d[DropReason::InvalidSource.index()] = 2;
        d[DropReason::FlowActionDrop.index()] = 3;
        d[DropReason::NewFlowDrops.index()] = 4;
        d[DropReason::TtlExceeded.index()] = 5;
        assert_eq!(SystemDrops::from_drops(&d), SystemDrops { total: 14, reverse_path: 2, flow_block: 7 });
    }

    fn t() -> LocalTime {
        LocalTime { year: 2024, month: 3, day: 26, hour: 9, minute: 5, second: 7, millis: 42, utc_offset_s: 3600 }
    }

    #[test]
    fn rate_line() {
        let r =
            RateSample { time: t(), unix_ms: 0, entries: 12, rate: 40, fwd: 10, rev: 5, del: 5, hold: 2, created: 11 };
        assert_eq!(
            render_rate_line(&r),
            "2024-03-26 09:05:07.042:  Entries =       12 Rate =     40 (Fwd =       10 Rev =        5 Del =        5) Hold =        2 Total Hold Entries        2\n"
        );
    }

    #[test]
    fn summary_screen() {
        let x = SummarySample {
            time: t(),
            unix_ms: 0,
            counts: FlowCounts { total: 10, active: 8, hold: 2, fwd: 6, drop: 2, nat: 0 },
            total_new: 10,
            active_new: -1,
            hold_new: 2,
            rate: 0,
            avg_setup_rate: 0,
            avg_teardown_rate: 0,
            total_rate: 0,
        };
        let expected = "\
2024-03-26 09:05:07 +0100
Flow Statistics
---------------
    Total  Entries  --- Total =      10, new =      10 
    Active Entries  --- Total =       8, new =      -1 
    Hold   Entries  --- Total =       2, new =       2 
    Fwd flow Entries  - Total =       6
    drop flow Entries - Total =       2
    NAT flow Entries  - Total =       0

    Rate of change of Active Entries
    --------------------------------
        current rate      =        0
        Avg setup rate    =        0
        Avg teardown rate =        0
    Rate of change of Flow Entries
    ------------------------------
        current rate      =        0
";
        assert_eq!(render_summary(&x), expected);
    }
}
