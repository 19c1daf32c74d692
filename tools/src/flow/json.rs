//! JSON renderers of `flow`: stable snake_case keys, flags as arrays of names, absent
//! values (no reverse flow, no mirror, no drop reason) as `null`.

use std::net::IpAddr;

use flow_table::{flag_names, flow_drop_reason_name, tcp_flags, Action, FlowSnapshot, NO_MIRROR};
use serde::Serialize;

use super::sample::{FlowCounts, RateSample, SummarySample};

/// One flow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FlowJson {
    /// Flow index (the flow handle).
    pub index: u32,
    /// Generation id of the slot's occupant.
    pub gen: u16,
    /// Reverse flow index, `null` when the flow has none.
    pub rflow: Option<u32>,
    /// The key's VRF / key nexthop (`K(nh)`).
    pub vrf: u32,
    /// `inet` or `inet6`.
    pub family: &'static str,
    /// IP protocol number.
    pub proto: u8,
    /// Source address.
    pub src: IpAddr,
    /// Source port (ICMP echo: the echo id).
    pub sport: u16,
    /// Destination address.
    pub dst: IpAddr,
    /// Destination port (other ICMP: the message type).
    pub dport: u16,
    /// `forward`, `drop`, `hold` or `nat`.
    pub action: &'static str,
    /// The `FLOW_DR_*` name (`Policy`, `SG`, ...) of a DROP flow, else `null`.
    pub drop_reason: Option<&'static str>,
    /// Flag names in bit order, lower case (`active`, `rflow_valid`, `mirror`, ...).
    pub flags: Vec<String>,
    /// TCP state names (`syn`, `syn_r`, `established`, ...; `_r` = reverse direction).
    pub tcp_flags: Vec<&'static str>,
    /// RPF nexthop (`S(nh)`).
    pub src_nh: u32,
    /// Outer UDP source port of tunnelled packets.
    pub underlay_sport: u16,
    /// Bytes of the flow.
    pub bytes: u64,
    /// Packets of the flow.
    pub packets: u64,
    /// Primary mirror index, `null` when none.
    pub mirror: Option<u8>,
    /// Secondary mirror index, `null` when none.
    pub sec_mirror: Option<u8>,
    /// Bytes copied to the primary mirror.
    pub mirror_bytes: u64,
    /// Packets copied to the primary mirror.
    pub mirror_packets: u64,
    /// Bytes copied to the secondary mirror.
    pub sec_mirror_bytes: u64,
    /// Packets copied to the secondary mirror.
    pub sec_mirror_packets: u64,
    /// Copies due to the primary mirror and not sent.
    pub mirror_lost_packets: u64,
    /// Copies due to the secondary mirror and not sent.
    pub sec_mirror_lost_packets: u64,
    /// Packets counted before the flow's mirroring was turned on (set up before the rule).
    pub before_mirror_packets: u64,
    /// Packets dropped while the flow waited in HOLD.
    pub held_dropped_packets: u64,
    /// In the data plane's clock.
    pub setup_time: u64,
    /// Last packet time, same clock as `setup_time`.
    pub last_seen: u64,
    /// The next entry of the overflow chain hanging off this slot.
    pub overflow_next: Option<u32>,
}

impl FlowJson {
    /// The JSON form of a snapshot.
    pub fn new(s: &FlowSnapshot) -> FlowJson {
        let k = &s.key;
        let mirror = |m: u8| (m != NO_MIRROR).then_some(m);
        FlowJson {
            index: s.index,
            gen: s.gen,
            rflow: s.rflow,
            vrf: k.vrf(),
            family: if k.is_v6() { "inet6" } else { "inet" },
            proto: k.proto(),
            src: k.src_ip(),
            sport: k.sport(),
            dst: k.dst_ip(),
            dport: k.dport(),
            action: s.action.key(),
            drop_reason: (s.action == Action::Drop).then(|| flow_drop_reason_name(s.drop_reason)),
            flags: flag_names(s.flags).into_iter().map(|n| n.to_ascii_lowercase()).collect(),
            tcp_flags: tcp_flags::in_bit_order(s.tcp_flags).map(|f| f.key).collect(),
            src_nh: s.src_nh,
            underlay_sport: s.underlay_sport,
            bytes: s.bytes,
            packets: s.packets,
            mirror: mirror(s.mirror),
            sec_mirror: mirror(s.sec_mirror),
            mirror_bytes: s.mirror_bytes,
            mirror_packets: s.mirror_packets,
            sec_mirror_bytes: s.sec_mirror_bytes,
            sec_mirror_packets: s.sec_mirror_packets,
            mirror_lost_packets: s.accounting.mirror_lost,
            sec_mirror_lost_packets: s.accounting.sec_mirror_lost,
            before_mirror_packets: s.accounting.before_mirror,
            held_dropped_packets: s.accounting.held_dropped,
            setup_time: s.setup_time,
            last_seen: s.last_seen,
            overflow_next: s.overflow_next,
        }
    }
}

/// `value` as JSON (pretty-printed or on one line), with a trailing newline.
pub fn to_json<T: Serialize + ?Sized>(value: &T, pretty: bool) -> String {
    let mut s = if pretty { serde_json::to_string_pretty(value) } else { serde_json::to_string(value) }
        .expect("serializing plain data cannot fail");
    s.push('\n');
    s
}

/// `flow -l --json` / `flow --get N --json`: an array of flow objects.
pub fn render_flows_json<'a>(flows: impl IntoIterator<Item = &'a FlowSnapshot>, pretty: bool) -> String {
    let v: Vec<FlowJson> = flows.into_iter().map(FlowJson::new).collect();
    to_json(&v, pretty)
}

/// One `flow -r --json` sample (one object per line).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RateJson {
    /// Local time, `YYYY-MM-DD HH:MM:SS.mmm`.
    pub time: String,
    /// Unix milliseconds of the sample.
    pub unix_ms: u64,
    /// Flows in use (`ftable_used_entries`).
    pub entries: u64,
    /// Flow operations per second (fwd + rev + del).
    pub rate: i64,
    /// HOLD -> action transitions in the interval.
    pub fwd: u64,
    /// Flows created by the agent in the interval.
    pub rev: u64,
    /// Flows deleted or evicted in the interval.
    pub del: u64,
    /// Flows in HOLD now.
    pub hold: u64,
    /// Flows created by the data plane in the interval.
    pub created: u64,
}

/// `flow -r --json`: one sample as a JSON object.
pub fn render_rate_json(r: &RateSample, pretty: bool) -> String {
    to_json(
        &RateJson {
            time: r.time.with_millis(),
            unix_ms: r.unix_ms,
            entries: r.entries,
            rate: r.rate,
            fwd: r.fwd,
            rev: r.rev,
            del: r.del,
            hold: r.hold,
            created: r.created,
        },
        pretty,
    )
}

/// One `flow -s --json` sample (one object per line).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SummaryJson {
    /// Local time, `YYYY-MM-DD HH:MM:SS.mmm`.
    pub time: String,
    /// Unix milliseconds of the sample.
    pub unix_ms: u64,
    /// Flows by state (flattened into the object).
    #[serde(flatten)]
    pub counts: FlowCounts,
    /// Change of all flows since the previous sample.
    pub total_new: i64,
    /// Change of active (not HOLD) flows since the previous sample.
    pub active_new: i64,
    /// Change of HOLD flows since the previous sample.
    pub hold_new: i64,
    /// Change of active flows per second.
    pub active_rate: i64,
    /// Running average setup rate, flows/s (intervals above 1000/s only).
    pub avg_setup_rate: u64,
    /// Running average teardown rate, flows/s (intervals above 1000/s only).
    pub avg_teardown_rate: u64,
    /// Change of all flows per second.
    pub total_rate: i64,
}

/// `flow -s --json`: one sample as a JSON object.
pub fn render_summary_json(x: &SummarySample, pretty: bool) -> String {
    to_json(
        &SummaryJson {
            time: x.time.with_millis(),
            unix_ms: x.unix_ms,
            counts: x.counts,
            total_new: x.total_new,
            active_new: x.active_new,
            hold_new: x.hold_new,
            active_rate: x.rate,
            avg_setup_rate: x.avg_setup_rate,
            avg_teardown_rate: x.avg_teardown_rate,
            total_rate: x.total_rate,
        },
        pretty,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::sample::LocalTime;
    use flow_table::{flags, FlowKey, FLOW_DR_SG};
    use serde_json::{json, Value};

    fn snap() -> FlowSnapshot {
        FlowSnapshot {
            index: 5,
            gen: 3,
            key: FlowKey::v6(2, 6, "fd00::1".parse().unwrap(), "fd00::2".parse().unwrap(), 40000, 22),
            flags: flags::ACTIVE | flags::RFLOW_VALID | flags::MIRROR,
            action: Action::Forward,
            drop_reason: FLOW_DR_SG,
            rflow: Some(9),
            src_nh: 4,
            tcp_flags: tcp_flags::SYN | tcp_flags::SYN_R | tcp_flags::ESTABLISHED,
            setup_time: 100,
            last_seen: 200,
            mirror: 1,
            sec_mirror: NO_MIRROR,
            underlay_sport: 50000,
            bytes: 1 << 40,
            packets: 10,
            mirror_bytes: 300,
            mirror_packets: 3,
            sec_mirror_bytes: 0,
            sec_mirror_packets: 0,
            accounting: Default::default(),
            hash: 0,
            bucket: 0,
            overflow_next: None,
        }
    }

    #[test]
    fn flow_object() {
        let v: Value = serde_json::from_str(&render_flows_json([&snap()], false)).unwrap();
        assert_eq!(
            v,
            json!([{
                "index": 5, "gen": 3, "rflow": 9, "vrf": 2, "family": "inet6", "proto": 6,
                "src": "fd00::1", "sport": 40000, "dst": "fd00::2", "dport": 22,
                "action": "forward", "drop_reason": null,
                "flags": ["active", "rflow_valid", "mirror"],
                "tcp_flags": ["syn", "syn_r", "established"],
                "src_nh": 4, "underlay_sport": 50000,
                "bytes": 1u64 << 40, "packets": 10,
                "mirror": 1, "sec_mirror": null,
                "mirror_bytes": 300, "mirror_packets": 3,
                "sec_mirror_bytes": 0, "sec_mirror_packets": 0,
                "mirror_lost_packets": 0, "sec_mirror_lost_packets": 0,
                "before_mirror_packets": 0, "held_dropped_packets": 0,
                "setup_time": 100, "last_seen": 200, "overflow_next": null
            }])
        );
        let d = FlowSnapshot { action: Action::Drop, rflow: None, ..snap() };
        let v: Value = serde_json::from_str(&render_flows_json([&d], true)).unwrap();
        assert_eq!(
            (&v[0]["action"], &v[0]["drop_reason"], &v[0]["rflow"]),
            (&json!("drop"), &json!("SG"), &Value::Null)
        );
        assert_eq!(render_flows_json(&[], false), "[]\n");
    }

    #[test]
    fn sample_objects() {
        let t = LocalTime { year: 2024, month: 1, day: 2, hour: 3, minute: 4, second: 5, millis: 6, utc_offset_s: 0 };
        let r = RateSample { time: t, unix_ms: 9, entries: 1, rate: 2, fwd: 3, rev: 4, del: 5, hold: 6, created: 7 };
        let v: Value = serde_json::from_str(&render_rate_json(&r, false)).unwrap();
        assert_eq!(
            v,
            json!({"time": "2024-01-02 03:04:05.006", "unix_ms": 9, "entries": 1, "rate": 2,
                   "fwd": 3, "rev": 4, "del": 5, "hold": 6, "created": 7})
        );
        let x = SummarySample {
            time: t,
            unix_ms: 9,
            counts: FlowCounts { total: 3, active: 2, hold: 1, fwd: 1, drop: 1, nat: 0 },
            total_new: 3,
            active_new: 2,
            hold_new: 1,
            rate: 0,
            avg_setup_rate: 0,
            avg_teardown_rate: 0,
            total_rate: 0,
        };
        let s = render_summary_json(&x, false);
        assert_eq!(s.lines().count(), 1);
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(
            v,
            json!({"time": "2024-01-02 03:04:05.006", "unix_ms": 9, "total": 3, "active": 2,
                   "hold": 1, "fwd": 1, "drop": 1, "nat": 0, "total_new": 3, "active_new": 2,
                   "hold_new": 1, "active_rate": 0, "avg_setup_rate": 0,
                   "avg_teardown_rate": 0, "total_rate": 0})
        );
    }
}
