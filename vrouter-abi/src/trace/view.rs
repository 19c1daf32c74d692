//! Traces as readers see them: the records of a trace region grouped by trace id, each
//! trace in time order, with its summary (request, flow, final disposition) and its JSON
//! form. Shared by the `trace` tool (records read straight from the region) and the agent
//! (records read in-process and filtered per tenant, served over REST and the control
//! socket), so both give the same content.
//!
//! Records also travel over the control socket as plain numbers (the same words as in the
//! region, see [`record_to_json`]) so that the tool renders a tenant's filtered records
//! exactly as it renders the region's.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde_json::{json, Value};

use super::region::{RegionInfo, TraceRecord};
use super::step::{show_addr, Step};

/// One trace: every record with its id, in (packet, time) order.
#[derive(Debug, Clone)]
pub struct Trace {
    /// The trace id.
    pub id: u64,
    /// Its records, in (packet, time) order.
    pub records: Vec<TraceRecord>,
}

impl Trace {
    /// The request that started it on this vRouter (its `Matched` step), as a UUID string.
    pub fn request(&self) -> Option<String> {
        self.request_uuid().map(|u| super::uuid::format_uuid(&u))
    }

    /// The request that started it on this vRouter, as bytes.
    pub fn request_uuid(&self) -> Option<[u8; 16]> {
        self.records.iter().find_map(|r| match r.step {
            Step::Matched { request, .. } => Some(request),
            _ => None,
        })
    }

    /// The vRouter the trace was continued from (its packets came in with a trace mark).
    pub fn continued_from(&self) -> Option<Ipv4Addr> {
        self.records.iter().find_map(|r| match r.step {
            Step::Marked { from } => Some(from),
            _ => None,
        })
    }

    /// Packets the trace covers (the highest packet number).
    pub fn packets(&self) -> u32 {
        self.records.iter().map(|r| r.pkt).max().unwrap_or(0)
    }

    /// The first `Parsed` and `Addresses` steps (what the packet was).
    pub fn headers(&self) -> (Option<Step>, Option<Step>) {
        let mut parsed = None;
        let mut addrs = None;
        for r in &self.records {
            match r.step {
                Step::Parsed { .. } if parsed.is_none() => parsed = Some(r.step),
                Step::Addresses { .. } if addrs.is_none() => addrs = Some(r.step),
                _ => {}
            }
        }
        (parsed, addrs)
    }

    /// `vrf V proto P src:sport -> dst:dport` of the first packet (or the ethertype of a
    /// non-IP one).
    pub fn flow(&self) -> String {
        match self.headers() {
            (Some(Step::Parsed { proto, sport, dport, vrf, .. }), Some(Step::Addresses { src, dst })) => {
                format!("vrf {vrf} proto {proto} {}:{sport} -> {}:{dport}", show_addr(src), show_addr(dst))
            }
            (Some(Step::Parsed { ethertype, vrf, .. }), _) => format!("vrf {vrf} ethertype {ethertype:#06x}"),
            _ => "-".into(),
        }
    }

    /// The final step of the last packet: where it went (or why not).
    pub fn disposition(&self) -> String {
        let last = self.packets();
        let fin = self.records.iter().rev().filter(|r| r.pkt == last).find(|r| r.step.is_final());
        match fin.map(|r| r.step) {
            Some(Step::Egress { vif, .. }) => format!("forwarded vif0/{vif}"),
            Some(Step::Drop { reason }) => format!("dropped ({})", reason.name()),
            Some(Step::Held { .. }) => "held".into(),
            _ => "in progress".into(),
        }
    }

    /// Steps of packet `pkt`, in order.
    pub fn packet_steps(&self, pkt: u32) -> impl Iterator<Item = &TraceRecord> {
        self.records.iter().filter(move |r| r.pkt == pkt)
    }
}

/// Groups records by trace id, each trace in (packet, time) order (ties: ring, then
/// position), traces by their first record's time.
pub fn collect(records: &[TraceRecord]) -> Vec<Trace> {
    let mut by_id: BTreeMap<u64, Vec<TraceRecord>> = BTreeMap::new();
    for r in records {
        by_id.entry(r.trace_id).or_default().push(*r);
    }
    let mut traces: Vec<Trace> = by_id
        .into_iter()
        .map(|(id, mut records)| {
            records.sort_by_key(|r| (r.pkt, r.tsc, r.ring, r.position));
            Trace { id, records }
        })
        .collect();
    traces.sort_by_key(|t| (t.records.first().map_or(0, |r| r.tsc), t.id));
    traces
}

/// Who wrote a record: a forwarding lcore, or the agent (the last ring).
pub fn source(r: &TraceRecord, info: &RegionInfo) -> String {
    if r.ring + 1 == info.n_rings as usize {
        "agent".into()
    } else {
        format!("lcore {}", r.ring)
    }
}

/// A trace as JSON: its summary, and with `with_steps` every packet's steps (each with its
/// time in ns from the trace start and its source). The shape of `trace list --json`
/// (without steps) and `trace get --json` (with).
pub fn trace_json(t: &Trace, info: &RegionInfo, with_steps: bool) -> Value {
    let first = t.records.first().map_or(0, |r| r.tsc);
    let mut v = json!({
        "trace_id": format!("{:016x}", t.id),
        "request": t.request(),
        "time_ms": info.unix_ms(first),
        "packets": t.packets(),
        "steps": t.records.len(),
        "flow": t.flow(),
        "disposition": t.disposition(),
    });
    if let Some(from) = t.continued_from() {
        v["continued_from"] = Value::from(from.to_string());
    }
    if with_steps {
        let pkts: Vec<Value> = (1..=t.packets())
            .map(|p| {
                let steps: Vec<Value> = t
                    .packet_steps(p)
                    .map(|r| {
                        let mut s = r.step.to_json();
                        s["ns"] = Value::from(info.ticks_to_ns(r.tsc.wrapping_sub(first)));
                        s["source"] = Value::from(source(r, info));
                        s
                    })
                    .collect();
                json!({"packet": p, "steps": steps})
            })
            .collect();
        v["trace"] = Value::from(pkts);
    }
    v
}

/// A record as the control socket carries it: `[ring, position, tsc, trace_id, pkt, kind,
/// w0, w1, w2, w3]` (the step's encoded words, as in the region).
pub fn record_to_json(r: &TraceRecord) -> Value {
    let (kind, w) = r.step.encode();
    json!([r.ring, r.position, r.tsc, r.trace_id, r.pkt, kind, w[0], w[1], w[2], w[3]])
}

/// The inverse of [`record_to_json`]; `None` for anything else (a step this build does not
/// know included).
pub fn record_from_json(v: &Value) -> Option<TraceRecord> {
    let a = v.as_array().filter(|a| a.len() == 10)?;
    let n = |i: usize| a[i].as_u64();
    let step = Step::decode(u16::try_from(n(5)?).ok()?, [n(6)?, n(7)?, n(8)?, n(9)?])?;
    Some(TraceRecord {
        ring: usize::try_from(n(0)?).ok()?,
        position: n(1)?,
        tsc: n(2)?,
        trace_id: n(3)?,
        pkt: u32::try_from(n(4)?).ok()?,
        step,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drop_reason::DropReason;

    fn rec(ring: usize, position: u64, tsc: u64, trace_id: u64, pkt: u32, step: Step) -> TraceRecord {
        TraceRecord { ring, position, tsc, trace_id, pkt, step }
    }

    #[test]
    fn records_cross_the_socket_unchanged() {
        let recs = [
            rec(0, 5, 1 << 60, u64::from(u32::MAX), 3, Step::Addresses { src: u128::MAX, dst: 1 }),
            rec(3, 0, 7, 9, 1, Step::Drop { reason: DropReason::FlowActionDrop }),
            rec(1, 2, 3, 4, 5, Step::Marked { from: Ipv4Addr::new(10, 10, 0, 1) }),
        ];
        for r in recs {
            let j = record_to_json(&r);
            // Through text, as on the socket.
            let back: Value = serde_json::from_str(&j.to_string()).unwrap();
            assert_eq!(record_from_json(&back), Some(r));
        }
        assert_eq!(record_from_json(&json!([0, 0, 0, 0, 0, 9999, 0, 0, 0, 0])), None, "unknown step kind");
        assert_eq!(record_from_json(&json!([0, 0, 0])), None);
        assert_eq!(record_from_json(&json!([-1, 0, 0, 0, 0, 0, 0, 0, 0, 0])), None);
    }

    #[test]
    fn continued_traces_say_where_from() {
        let t = collect(&[
            rec(0, 0, 10, 5, 1, Step::Ingress { vif: 0, queue: 0, len: 100 }),
            rec(0, 1, 10, 5, 1, Step::Marked { from: Ipv4Addr::new(10, 10, 0, 1) }),
            rec(0, 2, 11, 5, 1, Step::Egress { vif: 2, len: 60 }),
        ]);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].request(), None);
        assert_eq!(t[0].continued_from(), Some(Ipv4Addr::new(10, 10, 0, 1)));
        let info = RegionInfo {
            generation: 1,
            n_rings: 2,
            ring_slots: 64,
            creator_pid: 1,
            tsc_hz: 1000,
            base_unix_ms: 0,
            base_tsc: 0,
        };
        let j = trace_json(&t[0], &info, true);
        assert_eq!(j["continued_from"], "10.10.0.1");
        assert_eq!(j["request"], Value::Null);
        assert_eq!(j["trace"][0]["steps"][1]["step"], "marked");
        assert_eq!(j["disposition"], "forwarded vif0/2");
    }
}
