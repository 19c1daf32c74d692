//! The IPFIX sink of the exporter (`[ipfix]`): every record the flow scanner
//! ([`super::export::FlowScanner`]) makes goes to the Sandesh session and, built by
//! [`flow_record`] from the same [`FlowLogData`] and its [`RecordFacts`], to the IPFIX
//! collectors, so the two exports carry the same records with the same diffs (and the same
//! flow UUIDs, in the enterprise element `flowUuid`). The wire format, the elements and the
//! exporting process are the `ipfix` crate's; this module maps the vRouter's view of a flow
//! onto the elements.
//!
//! Mappings that are this module's choice:
//! * `tcpControlBits` from the entry's TCP state bits (this direction only): FIN → FIN, SYN →
//!   SYN, RST → RST, ESTABLISHED → ACK (the handshake's last ACK was seen).
//! * `forwardingStatus` (RFC 7270) from the verdict: forwarded 0x40; dropped by the network
//!   policy, a security group or a firewall policy 0x81 (ACL deny); no route 0x83; an
//!   unavailable interface 0x8e; any other drop reason 0x80.
//! * `flowEndReason`: setup and periodic records 0x02 (active timeout: the flow goes on);
//!   teardown records 0x01 idle, 0x03 end of flow (TCP closed or evicted), 0x04 forced end.
//! * `egressInterface` is 0 for a dropped flow.

use super::export::{EndReason, RecordFacts, RecordKind};
use crate::config::Config;
use flow_table::FlowDropReason;
use flow_table::{tcp_flags, Action};
use ipfix::flow::{end_reason, firewall_event, flow_direction, forwarding_status, SEGMENT_VXLAN};
use ipfix::{Exporter, FlowRecord};
use sandesh::FlowLogData;
use std::net::Ipv4Addr;
use std::time::Instant;
use vrouter_abi::export::ExportCounters;

/// `tcpControlBits` of the entry's TCP state bits.
pub fn tcp_control_bits(state: u16) -> u16 {
    let mut b = 0;
    for (bit, ctl) in
        [(tcp_flags::FIN, 0x01), (tcp_flags::SYN, 0x02), (tcp_flags::RST, 0x04), (tcp_flags::ESTABLISHED, 0x10)]
    {
        if state & bit != 0 {
            b |= ctl;
        }
    }
    b
}

/// `forwardingStatus` of a verdict.
pub fn forwarding_status_of(action: Action, drop_reason: u8) -> u8 {
    use FlowDropReason as R;
    match action {
        Action::Forward | Action::Nat => forwarding_status::FORWARDED,
        Action::Hold => 0,
        Action::Drop => match FlowDropReason::from_code(drop_reason) {
            Some(
                R::Policy
                | R::OutPolicy
                | R::Sg
                | R::OutSg
                | R::ReverseSg
                | R::ReverseOutSg
                | R::FwPolicy
                | R::OutFwPolicy
                | R::ReverseFwPolicy
                | R::ReverseOutFwPolicy
                | R::FwaasPolicy
                | R::FwaasOutPolicy
                | R::FwaasReversePolicy
                | R::FwaasReverseOutPolicy,
            ) => forwarding_status::DROPPED_ACL_DENY,
            Some(R::NoSrcRoute | R::NoDstRoute | R::NoSrcRouteL2rpf) => forwarding_status::DROPPED_UNROUTABLE,
            Some(R::UnavailableIntf) => forwarding_status::DROPPED_BAD_OUTPUT_INTERFACE,
            _ => forwarding_status::DROPPED,
        },
    }
}

/// The IPFIX record of one exported record.
pub fn flow_record(rec: &FlowLogData, facts: &RecordFacts, exporter: Ipv4Addr) -> FlowRecord {
    let mut r = FlowRecord::default();
    fill_record(&mut r, rec, facts, exporter);
    r
}

/// Overwrites every field of `r` with the IPFIX form of one exported record (reusing its
/// strings' buffers: the sink fills one record over and over without allocating). The
/// pattern below names every field, so an element added to the declaration does not compile
/// until it is filled here.
pub fn fill_record(r: &mut FlowRecord, rec: &FlowLogData, facts: &RecordFacts, exporter: Ipv4Addr) {
    let n = |v: Option<i64>| v.map_or(0, |v| v.max(0) as u64);
    let set = |dst: &mut String, src: Option<&str>| {
        dst.clear();
        dst.push_str(src.unwrap_or(""));
    };
    let FlowRecord {
        family: _,
        source_ipv4: _,
        destination_ipv4: _,
        source_ipv6: _,
        destination_ipv6: _,
        protocol,
        source_port,
        destination_port,
        octet_delta,
        packet_delta,
        flow_start_ms,
        flow_end_ms,
        flow_end_reason,
        tcp_control_bits: tcp_bits,
        ingress_interface,
        egress_interface,
        ingress_vrf,
        egress_vrf,
        flow_direction: direction,
        layer2_segment_id,
        forwarding_status,
        firewall_event: event,
        flow_id,
        exporter_ipv4,
        octet_total,
        packet_total,
        mirror_octets,
        mirror_packets,
        secondary_mirror_octets,
        secondary_mirror_packets,
        analyzer_name,
        secondary_analyzer_name,
        flow_uuid,
        reverse_flow_uuid,
        source_vn,
        destination_vn,
        policy_action,
        network_policy_rule,
        security_group_rule,
        drop_reason,
    } = r;
    *protocol = rec.protocol as u8;
    *source_port = rec.sport as u16;
    *destination_port = rec.dport as u16;
    *octet_delta = n(rec.diff_bytes);
    *packet_delta = n(rec.diff_packets);
    *octet_total = n(rec.bytes);
    *packet_total = n(rec.packets);
    *flow_start_ms = facts.setup_ms;
    *flow_end_ms = facts.last_seen_ms;
    *flow_end_reason = match (facts.kind, facts.end) {
        (RecordKind::Teardown, EndReason::Idle) => end_reason::IDLE_TIMEOUT,
        (RecordKind::Teardown, EndReason::EndOfFlow) => end_reason::END_OF_FLOW,
        (RecordKind::Teardown, _) => end_reason::FORCED_END,
        _ => end_reason::ACTIVE_TIMEOUT,
    };
    *tcp_bits = tcp_control_bits(facts.tcp_state);
    *ingress_interface = facts.ingress_vif.map_or(0, u32::from);
    *egress_interface = facts.egress_vif.map_or(0, u32::from);
    *ingress_vrf = facts.vrf;
    *egress_vrf = facts.vrf;
    *direction = if rec.direction_ing == 1 { flow_direction::INGRESS } else { flow_direction::EGRESS };
    *layer2_segment_id = facts.vni.map_or(0, |v| SEGMENT_VXLAN | u64::from(v));
    *forwarding_status = forwarding_status_of(facts.action, facts.drop_reason);
    *event = match facts.kind {
        RecordKind::Setup if facts.action == Action::Drop => firewall_event::DENIED,
        RecordKind::Setup => firewall_event::CREATED,
        RecordKind::Periodic => firewall_event::UPDATE,
        RecordKind::Teardown => firewall_event::DELETED,
    };
    *flow_id = u64::from(facts.index) << 32 | u64::from(facts.gen);
    *exporter_ipv4 = exporter;
    *mirror_octets = n(rec.mirror_bytes);
    *mirror_packets = n(rec.mirror_packets);
    *secondary_mirror_octets = n(rec.sec_mirror_bytes);
    *secondary_mirror_packets = n(rec.sec_mirror_packets);
    set(analyzer_name, rec.analyzer_name.as_deref());
    set(secondary_analyzer_name, rec.sec_analyzer_name.as_deref());
    set(flow_uuid, Some(&rec.flowuuid));
    set(reverse_flow_uuid, rec.reverse_uuid.as_deref());
    set(source_vn, Some(&rec.sourcevn));
    set(destination_vn, Some(&rec.destvn));
    set(policy_action, rec.action.as_deref());
    set(network_policy_rule, rec.nw_ace_uuid.as_deref());
    set(security_group_rule, rec.sg_rule_uuid.as_deref());
    set(drop_reason, rec.drop_reason.as_deref());
    r.set_addresses(rec.sourceip, rec.destip);
}

/// The exporter thread's IPFIX side: records in, messages out to every `[ipfix]` collector.
pub struct IpfixSink {
    exporter: Exporter<FlowRecord>,
    router_ip: Ipv4Addr,
    /// The record filled for each add (its strings' buffers reused).
    scratch: FlowRecord,
}

impl IpfixSink {
    /// The sink of `cfg.ipfix` (its UDP sockets open now, TCP connects on the first flush).
    pub fn new(cfg: &Config) -> Result<IpfixSink, ipfix::ExportError> {
        Ok(IpfixSink {
            exporter: Exporter::new(cfg.ipfix.exporter_config())?,
            router_ip: cfg.vrouter.router_ip,
            scratch: FlowRecord::default(),
        })
    }

    /// Adds one record (sent when its message is full, or at the next flush).
    pub fn add(&mut self, rec: &FlowLogData, facts: &RecordFacts) {
        fill_record(&mut self.scratch, rec, facts, self.router_ip);
        self.exporter.add(&self.scratch, Instant::now());
    }

    /// Sends what is pending and does what is due (template refresh, TCP reconnect).
    pub fn flush(&mut self) {
        self.exporter.flush(Instant::now());
    }

    /// The exporter's counters.
    pub fn stats(&self) -> ipfix::ExporterStats {
        self.exporter.stats()
    }

    /// Copies the counters into the exporter's counters file view.
    pub fn fill(&self, c: &mut ExportCounters) {
        let s = self.stats();
        c.ipfix_records = s.records;
        c.ipfix_messages = s.messages;
        c.ipfix_oversized_records = s.oversized_records;
        c.ipfix_collectors = s.collectors.len() as u64;
        c.ipfix_collectors_connected = s.collectors.iter().filter(|c| c.connected).count() as u64;
        c.ipfix_records_sent = s.collectors.iter().map(|c| c.records).sum();
        c.ipfix_records_dropped = s.collectors.iter().map(|c| c.records_dropped).sum();
        c.ipfix_template_messages = s.collectors.iter().map(|c| c.template_messages).sum();
        c.ipfix_bytes_sent = s.collectors.iter().map(|c| c.bytes).sum();
        c.ipfix_errors = s.collectors.iter().map(|c| c.errors).sum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(kind: RecordKind, action: Action) -> RecordFacts {
        RecordFacts {
            kind,
            end: EndReason::Active,
            index: 5,
            gen: 2,
            vrf: 1,
            ingress_vif: Some(1),
            egress_vif: Some(2),
            vni: Some(5001),
            setup_ms: 1_000,
            last_seen_ms: 2_000,
            tcp_state: tcp_flags::SYN | tcp_flags::ESTABLISHED | tcp_flags::SYN_R,
            action,
            drop_reason: 0,
        }
    }

    fn log() -> FlowLogData {
        let mut r = FlowLogData::new(
            "00000005-0002-4000-8000-000000000000".into(),
            1,
            "vn1".into(),
            "192.168.1.3".parse().unwrap(),
            "vn2".into(),
            "192.168.1.4".parse().unwrap(),
            6,
            33793, // -31743 on the Sandesh wire (signed)
            80,
        );
        r.diff_bytes = Some(300);
        r.diff_packets = Some(3);
        r.bytes = Some(900);
        r.packets = Some(9);
        r.mirror_bytes = Some(120);
        r.mirror_packets = Some(1);
        r.analyzer_name = Some("an-a".into());
        r.action = Some("pass|mirror".into());
        r
    }

    #[test]
    fn a_record_carries_the_sandesh_figures_and_the_flow_context() {
        let r = flow_record(&log(), &facts(RecordKind::Setup, Action::Forward), "10.10.0.1".parse().unwrap());
        assert_eq!((r.source(), r.destination()), ("192.168.1.3".parse().unwrap(), "192.168.1.4".parse().unwrap()));
        assert_eq!((r.protocol, r.source_port, r.destination_port), (6, 33793, 80));
        assert_eq!((r.octet_delta, r.packet_delta, r.octet_total, r.packet_total), (300, 3, 900, 9));
        assert_eq!((r.mirror_octets, r.mirror_packets, r.analyzer_name.as_str()), (120, 1, "an-a"));
        assert_eq!((r.flow_start_ms, r.flow_end_ms), (1_000, 2_000));
        assert_eq!(r.tcp_control_bits, 0x12, "SYN and ACK of this direction; SYN_R is the other's");
        assert_eq!((r.ingress_interface, r.egress_interface, r.ingress_vrf, r.egress_vrf), (1, 2, 1, 1));
        assert_eq!(r.layer2_segment_id, (1 << 56) | 5001);
        assert_eq!(r.flow_direction, flow_direction::INGRESS);
        assert_eq!(r.forwarding_status, 0x40);
        assert_eq!(r.firewall_event, firewall_event::CREATED);
        assert_eq!(r.flow_end_reason, end_reason::ACTIVE_TIMEOUT);
        assert_eq!(r.flow_id, 5 << 32 | 2);
        assert_eq!(r.flow_uuid, "00000005-0002-4000-8000-000000000000");
        assert_eq!(r.policy_action, "pass|mirror");
    }

    #[test]
    fn a_refilled_record_keeps_nothing_of_the_previous_one() {
        let mut first = log();
        first.sg_rule_uuid = Some("sg".into());
        first.reverse_uuid = Some("rev".into());
        let mut r = flow_record(&first, &facts(RecordKind::Teardown, Action::Drop), "10.0.0.1".parse().unwrap());
        let mut second = log();
        second.sourceip = "fd00::1".parse().unwrap();
        second.destip = "fd00::2".parse().unwrap();
        let f = facts(RecordKind::Periodic, Action::Forward);
        fill_record(&mut r, &second, &f, "10.0.0.2".parse().unwrap());
        assert_eq!(r, flow_record(&second, &f, "10.0.0.2".parse().unwrap()));
        assert_eq!(r.source_ipv4, Ipv4Addr::UNSPECIFIED);
    }

    #[test]
    fn verdicts_and_ends_map_to_the_registry_values() {
        let mut f = facts(RecordKind::Setup, Action::Drop);
        f.drop_reason = flow_table::FLOW_DR_SG;
        let r = flow_record(&log(), &f, Ipv4Addr::UNSPECIFIED);
        assert_eq!((r.forwarding_status, r.firewall_event), (0x81, firewall_event::DENIED));
        assert_eq!(forwarding_status_of(Action::Drop, flow_table::FLOW_DR_NO_DST_ROUTE), 0x83);
        assert_eq!(forwarding_status_of(Action::Drop, flow_table::FLOW_DR_FLOW_LIMIT), 0x80);
        assert_eq!(forwarding_status_of(Action::Drop, 0xee), 0x80);
        for (end, code) in [
            (EndReason::Idle, end_reason::IDLE_TIMEOUT),
            (EndReason::EndOfFlow, end_reason::END_OF_FLOW),
            (EndReason::Forced, end_reason::FORCED_END),
        ] {
            let f = RecordFacts { end, ..facts(RecordKind::Teardown, Action::Forward) };
            let r = flow_record(&log(), &f, Ipv4Addr::UNSPECIFIED);
            assert_eq!((r.flow_end_reason, r.firewall_event), (code, firewall_event::DELETED));
        }
        let r = flow_record(&log(), &facts(RecordKind::Periodic, Action::Forward), Ipv4Addr::UNSPECIFIED);
        assert_eq!((r.flow_end_reason, r.firewall_event), (end_reason::ACTIVE_TIMEOUT, firewall_event::UPDATE));
        assert_eq!(tcp_control_bits(tcp_flags::FIN | tcp_flags::RST | tcp_flags::FIN_R), 0x05);
    }
}
