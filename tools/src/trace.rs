//! `trace`: traces read from the vRouter's trace region (`<run_dir>/trace`), or a tenant's
//! share of them from the vRouter, grouped by trace id (see [`vrouter_abi::trace::view`]) and
//! rendered as a list or as the step-by-step story of one trace. Pure functions from records
//! to text/JSON, tested without a running vRouter.

use std::fmt::Write as _;

use serde_json::Value;
use vrouter_abi::trace::region::RegionInfo;

pub use vrouter_abi::trace::view::{collect, source, trace_json, Trace};

fn time(info: &RegionInfo, tsc: u64) -> String {
    let ms = info.unix_ms(tsc);
    let s = ms / 1000;
    format!("{:02}:{:02}:{:02}.{:03}", (s / 3600) % 24, (s / 60) % 60, s % 60, ms % 1000)
}

/// `trace list`: one line per trace (id, time, packets, steps, flow, disposition).
pub fn render_list(traces: &[Trace], info: &RegionInfo) -> String {
    let mut s =
        format!("{:<18} {:<12} {:>5} {:>5}  {:<50} {}\n", "Trace", "Time", "Pkts", "Steps", "Flow", "Disposition");
    for t in traces {
        let first = t.records.first().map_or(0, |r| r.tsc);
        let _ = writeln!(
            s,
            "{:<18} {:<12} {:>5} {:>5}  {:<50} {}",
            format!("{:016x}", t.id),
            time(info, first),
            t.packets(),
            t.records.len(),
            t.flow(),
            t.disposition()
        );
    }
    if traces.is_empty() {
        s.push_str("(no traces)\n");
    }
    s
}

/// `trace list --json`: an array of trace summaries.
pub fn render_list_json(traces: &[Trace], info: &RegionInfo, pretty: bool) -> String {
    let v = Value::from(traces.iter().map(|t| trace_json(t, info, false)).collect::<Vec<_>>());
    to_string(&v, pretty)
}

/// `trace get ID --json`: one trace with its steps.
pub fn render_get_json(t: &Trace, info: &RegionInfo, pretty: bool) -> String {
    to_string(&trace_json(t, info, true), pretty)
}

fn to_string(v: &Value, pretty: bool) -> String {
    let mut s = if pretty { serde_json::to_string_pretty(v) } else { serde_json::to_string(v) }.expect("json");
    s.push('\n');
    s
}

/// The story of one trace, packet by packet, each step with its time from the trace start.
pub fn render_get(t: &Trace, info: &RegionInfo) -> String {
    let first = t.records.first().map_or(0, |r| r.tsc);
    let mut s = format!(
        "Trace {:016x} (request {})\nFlow: {}\nPackets: {}, disposition of the last: {}\n",
        t.id,
        t.request()
            .or_else(|| t.continued_from().map(|f| format!("of vRouter {f}, continued here")))
            .unwrap_or_else(|| "-".into()),
        t.flow(),
        t.packets(),
        t.disposition()
    );
    for p in 1..=t.packets() {
        let _ = writeln!(s, "\nPacket {p}:");
        for (i, r) in t.packet_steps(p).enumerate() {
            let us = info.ticks_to_ns(r.tsc.wrapping_sub(first)) as f64 / 1000.0;
            let _ = writeln!(s, "  {:>2}. +{:>10.3} us  [{}] {}", i + 1, us, source(r, info), r.step.render());
        }
    }
    s
}

/// A trace id as typed by the operator (hex, with or without `0x`).
pub fn parse_trace_id(s: &str) -> Option<u64> {
    u64::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use vrouter_abi::drop_reason::DropReason;
    use vrouter_abi::trace::region::TraceRecord;
    use vrouter_abi::trace::step::Step;

    fn rec(ring: usize, position: u64, tsc: u64, trace_id: u64, pkt: u32, step: Step) -> TraceRecord {
        TraceRecord { ring, position, tsc, trace_id, pkt, step }
    }

    fn info() -> RegionInfo {
        RegionInfo {
            generation: 1,
            n_rings: 2,
            ring_slots: 64,
            creator_pid: 1,
            tsc_hz: 1_000_000_000,
            base_unix_ms: 0,
            base_tsc: 0,
        }
    }

    #[test]
    fn groups_orders_and_renders() {
        let records = vec![
            rec(0, 0, 100, 7, 1, Step::Ingress { vif: 1, queue: 0, len: 60 }),
            rec(0, 1, 101, 7, 1, Step::Matched { request: [0xab; 16], new_trace: true }),
            rec(
                0,
                2,
                102,
                7,
                1,
                Step::Parsed { ethertype: 0x0800, proto: 17, sport: 5, dport: 53, vrf: 1, ip_len: 30, ttl: 64 },
            ),
            rec(0, 3, 103, 7, 1, Step::Addresses { src: 0xffff_c0a8_0103, dst: 0xffff_c0a8_0104 }),
            rec(0, 4, 104, 7, 1, Step::Held { flow: 9, new: true }),
            rec(1, 0, 150, 7, 1, Step::Policy { forward: false, drop_reason: 3, rule: [0xbb; 16], flow: 9 }),
            rec(0, 5, 200, 7, 1, Step::Released { flow: 9, held_ns: 96 }),
            rec(0, 6, 201, 7, 1, Step::Drop { reason: DropReason::FlowActionDrop }),
            rec(0, 7, 50, 3, 1, Step::Egress { vif: 2, len: 60 }),
        ];
        let ts = collect(&records);
        assert_eq!(ts.len(), 2);
        assert_eq!(ts[0].id, 3, "ordered by first record");
        let t = &ts[1];
        let kinds: Vec<&str> = t.records.iter().map(|r| r.step.name()).collect();
        assert_eq!(kinds, ["ingress", "matched", "parse", "addresses", "hold", "policy", "release", "drop"]);
        assert_eq!(t.flow(), "vrf 1 proto 17 192.168.1.3:5 -> 192.168.1.4:53");
        assert_eq!(t.disposition(), "dropped (Flow Action Drop)");
        assert_eq!(ts[0].disposition(), "forwarded vif0/2");
        let text = render_get(t, &info());
        assert!(text.contains("[agent] policy: flow 9 drop"), "{text}");
        assert!(text.contains("rule bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb"), "{text}");
        let list = render_list(&ts, &info());
        assert!(list.contains("0000000000000007"), "{list}");
        let j: Value = serde_json::from_str(&render_get_json(t, &info(), false)).unwrap();
        assert_eq!(j["trace"][0]["steps"][5]["step"], "policy");
        assert_eq!(j["trace"][0]["steps"][5]["source"], "agent");
        assert_eq!(j["disposition"], "dropped (Flow Action Drop)");
        assert_eq!(parse_trace_id("0x0000000000000007"), Some(7));
    }
}
