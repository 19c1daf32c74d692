//! The vRouter's flow record, declared once: every information element it carries, one line
//! each, from which [`FlowRecord`], its two templates (256 for IPv4 flows, 257 for IPv6
//! flows), its encoder, its decoder ([`FlowRecord::from_fields`]) and the README's table
//! ([`elements_table`]) come.
//!
//! A record is one direction of one flow (one flow-table entry), exported at setup,
//! periodically while it has traffic, and at teardown, exactly when the Sandesh exporter
//! sends its `FlowLogData` and with the same figures: `octetDeltaCount`/`packetDeltaCount`
//! are the record's diffs (`diff_bytes`/`diff_packets`, scaled like them under export
//! sampling), `flowOctetTotalCount`/`flowPacketTotalCount` (enterprise-specific) the exact
//! cumulative counters. The two
//! directions of a flow are two records linked by `flowId`/`reverseFlowUuid` rather than
//! one RFC 5103 biflow record: the vRouter counts, ages and exports each direction on its
//! own (the flow table has one entry per direction, scanned at different moments), and
//! collectors that do not know the reverse elements (PEN 29305) keep both directions' counts.
//!
//! Enterprise-specific elements (analyzer names, the mirror counters, Contrail's names for a
//! flow) are sent under one private enterprise number, by default [`DOCUMENTATION_PEN`]
//! (32473, reserved for documentation by RFC 5612): a placeholder until the project has a
//! number of its own from IANA; `[ipfix] enterprise_number` sets another.

use crate::ie::{information_elements, Record};

/// The private enterprise number reserved for documentation and examples (RFC 5612), the
/// default of the enterprise-specific elements: a placeholder, not a registration.
pub const DOCUMENTATION_PEN: u32 = 32473;

/// Template ID of IPv4 flow records.
pub const TEMPLATE_V4: u16 = 256;
/// Template ID of IPv6 flow records.
pub const TEMPLATE_V6: u16 = 257;

/// `flowEndReason` values (IANA registry, RFC 5102 §5.11.3).
pub mod end_reason {
    /// The flow was idle past the age timeout.
    pub const IDLE_TIMEOUT: u8 = 0x01;
    /// The record of a flow that is still active (setup and periodic records).
    pub const ACTIVE_TIMEOUT: u8 = 0x02;
    /// The flow ended (TCP FIN or RST seen, or a closed TCP flow evicted).
    pub const END_OF_FLOW: u8 = 0x03;
    /// The flow was removed for another reason (its vif, VRF or VM deleted, a flush).
    pub const FORCED_END: u8 = 0x04;
    /// The flow was removed for lack of resources.
    pub const LACK_OF_RESOURCES: u8 = 0x05;
}

/// `firewallEvent` values (IANA registry).
pub mod firewall_event {
    /// A flow the policy lets through was set up.
    pub const CREATED: u8 = 1;
    /// A flow ended.
    pub const DELETED: u8 = 2;
    /// A flow the policy drops was set up.
    pub const DENIED: u8 = 3;
    /// A periodic record of a flow.
    pub const UPDATE: u8 = 5;
}

/// `forwardingStatus` values (RFC 7270 §4.12: the status in the two high bits, a reason code
/// in the six low ones).
pub mod forwarding_status {
    /// Forwarded, reason unknown.
    pub const FORWARDED: u8 = 0x40;
    /// Dropped, reason unknown.
    pub const DROPPED: u8 = 0x80;
    /// Dropped by an ACL (the network policy or a security group).
    pub const DROPPED_ACL_DENY: u8 = 0x81;
    /// Dropped: no route.
    pub const DROPPED_UNROUTABLE: u8 = 0x83;
    /// Dropped: a bad output interface.
    pub const DROPPED_BAD_OUTPUT_INTERFACE: u8 = 0x8e;
}

/// `flowDirection` values.
pub mod flow_direction {
    /// The flow enters the vRouter from a local VM (the source is a local VMI).
    pub const INGRESS: u8 = 0;
    /// The flow leaves the vRouter towards a local VM.
    pub const EGRESS: u8 = 1;
}

/// The VXLAN encapsulation type in the high octet of `layer2SegmentId` (IANA).
pub const SEGMENT_VXLAN: u64 = 0x01 << 56;

information_elements! {
    /// One flow record: one direction of one flow, as the IPFIX exporter sends it.
    pub struct FlowRecord;
    templates { v4 = 256, v6 = 257 }

    /// Source address of an IPv4 flow.
    iana 8 sourceIPv4Address: ipv4Address [v4] => source_ipv4,
    /// Destination address of an IPv4 flow.
    iana 12 destinationIPv4Address: ipv4Address [v4] => destination_ipv4,
    /// Source address of an IPv6 flow.
    iana 27 sourceIPv6Address: ipv6Address [v6] => source_ipv6,
    /// Destination address of an IPv6 flow.
    iana 28 destinationIPv6Address: ipv6Address [v6] => destination_ipv6,
    /// IP protocol (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6).
    iana 4 protocolIdentifier: unsigned8 [all] => protocol,
    /// Source port (ICMP: the identifier, as the flow key holds it).
    iana 7 sourceTransportPort: unsigned16 [all] => source_port,
    /// Destination port (ICMP: type and code, as the flow key holds them).
    iana 11 destinationTransportPort: unsigned16 [all] => destination_port,
    /// Bytes since the previous record of this flow (Sandesh `diff_bytes`; scaled up under
    /// export sampling).
    iana 1 octetDeltaCount: unsigned64 [all] => octet_delta,
    /// Packets since the previous record of this flow (Sandesh `diff_packets`).
    iana 2 packetDeltaCount: unsigned64 [all] => packet_delta,
    /// When the flow was set up (its first packet).
    iana 152 flowStartMilliseconds: dateTimeMilliseconds [all] => flow_start_ms,
    /// The flow's last packet.
    iana 153 flowEndMilliseconds: dateTimeMilliseconds [all] => flow_end_ms,
    /// Why the record was sent: 2 active (setup and periodic records), 1 idle timeout, 3 end
    /// of flow (TCP closed), 4 forced end (deleted with its vif, VRF or VM).
    iana 136 flowEndReason: unsigned8 [all] => flow_end_reason,
    /// TCP flags seen in this direction: FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10 (the
    /// handshake completed); 0 for other protocols.
    iana 6 tcpControlBits: unsigned16 [all] => tcp_control_bits,
    /// The vif the flow enters on (its source VM's vif, or the vif towards its source).
    iana 10 ingressInterface: unsigned32 [all] => ingress_interface,
    /// The vif the flow leaves on (0 when it is dropped).
    iana 14 egressInterface: unsigned32 [all] => egress_interface,
    /// VRF of the flow (the flow key's VRF).
    iana 234 ingressVRFID: unsigned32 [all] => ingress_vrf,
    /// VRF the flow is forwarded in (the same: the vRouter does not translate VRFs).
    iana 235 egressVRFID: unsigned32 [all] => egress_vrf,
    /// 0 ingress (the source is a local VM), 1 egress (towards a local VM).
    iana 61 flowDirection: unsigned8 [all] => flow_direction,
    /// The VRF's VXLAN VNI with the VXLAN type 0x01 in the high octet; 0 when the VRF has no
    /// VNI.
    iana 351 layer2SegmentId: unsigned64 [all] => layer2_segment_id,
    /// The policy verdict: 0x40 forwarded, 0x81 dropped by the network policy or a security
    /// group, 0x83 no route, 0x80 dropped for another reason (RFC 7270).
    iana 89 forwardingStatus: unsigned8 [all] => forwarding_status,
    /// 1 created (setup of a passed flow), 3 denied (setup of a dropped flow), 5 update
    /// (periodic), 2 deleted (teardown).
    iana 233 firewallEvent: unsigned8 [all] => firewall_event,
    /// The flow-table entry: index in the high 32 bits, generation in the low 16.
    iana 148 flowId: unsigned64 [all] => flow_id,
    /// This vRouter's address (`[vrouter] router_ip`).
    iana 130 exporterIPv4Address: ipv4Address [all] => exporter_ipv4,
    /// Bytes of the flow so far, exact even under sampling (Sandesh `bytes`). Not IANA's
    /// `octetTotalCount` (85): collectors such as nfdump store 85 where they store the delta
    /// count and would count the total again with every record.
    pen 15 flowOctetTotalCount: unsigned64 [all] => octet_total,
    /// Packets of the flow so far, exact (Sandesh `packets`); not IANA's 86, for the same
    /// reason.
    pen 16 flowPacketTotalCount: unsigned64 [all] => packet_total,
    /// Bytes of the copies made for the primary analyzer so far (Sandesh `mirror_bytes`).
    pen 2 mirrorOctetTotalCount: unsigned64 [all] => mirror_octets,
    /// Copies made for the primary analyzer so far (Sandesh `mirror_packets`).
    pen 3 mirrorPacketTotalCount: unsigned64 [all] => mirror_packets,
    /// Bytes of the copies made for the secondary analyzer so far (`sec_mirror_bytes`).
    pen 5 secondaryMirrorOctetTotalCount: unsigned64 [all] => secondary_mirror_octets,
    /// Copies made for the secondary analyzer so far (`sec_mirror_packets`).
    pen 6 secondaryMirrorPacketTotalCount: unsigned64 [all] => secondary_mirror_packets,
    /// The primary analyzer's name (Sandesh `analyzer_name`); empty when not mirrored.
    pen 1 analyzerName: string [all] => analyzer_name,
    /// The secondary analyzer's name (`sec_analyzer_name`); empty when none.
    pen 4 secondaryAnalyzerName: string [all] => secondary_analyzer_name,
    /// The flow's UUID, the same as in its Sandesh records (`flowuuid`).
    pen 7 flowUuid: string [all] => flow_uuid,
    /// The UUID of the other direction's flow (`reverse_uuid`); empty when none.
    pen 8 reverseFlowUuid: string [all] => reverse_flow_uuid,
    /// Source virtual network (`sourcevn`).
    pen 9 sourceVirtualNetwork: string [all] => source_vn,
    /// Destination virtual network (`destvn`).
    pen 10 destinationVirtualNetwork: string [all] => destination_vn,
    /// The action, e.g. `pass`, `deny`, `pass|mirror` (`action`).
    pen 11 policyAction: string [all] => policy_action,
    /// The network-policy rule that decided (`nw_ace_uuid`).
    pen 12 networkPolicyRuleUuid: string [all] => network_policy_rule,
    /// The security-group rule that decided (`sg_rule_uuid`).
    pen 13 securityGroupRuleUuid: string [all] => security_group_rule,
    /// Why a dropped flow is dropped, as `flow` names it (`drop_reason`), e.g. `Policy`, `SG`.
    pen 14 dropReason: string [all] => drop_reason,
}

impl FlowRecord {
    /// Sets the addresses (and so the family and template).
    pub fn set_addresses(&mut self, src: std::net::IpAddr, dst: std::net::IpAddr) {
        use std::net::IpAddr;
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                self.family = crate::Family::V4;
                self.source_ipv4 = s;
                self.destination_ipv4 = d;
                self.source_ipv6 = std::net::Ipv6Addr::UNSPECIFIED;
                self.destination_ipv6 = std::net::Ipv6Addr::UNSPECIFIED;
            }
            (s, d) => {
                self.family = crate::Family::V6;
                self.source_ipv6 = to_v6(s);
                self.destination_ipv6 = to_v6(d);
                self.source_ipv4 = std::net::Ipv4Addr::UNSPECIFIED;
                self.destination_ipv4 = std::net::Ipv4Addr::UNSPECIFIED;
            }
        }
    }

    /// The source address of its family.
    pub fn source(&self) -> std::net::IpAddr {
        match self.family {
            crate::Family::V4 => self.source_ipv4.into(),
            crate::Family::V6 => self.source_ipv6.into(),
        }
    }

    /// The destination address of its family.
    pub fn destination(&self) -> std::net::IpAddr {
        match self.family {
            crate::Family::V4 => self.destination_ipv4.into(),
            crate::Family::V6 => self.destination_ipv6.into(),
        }
    }
}

fn to_v6(a: std::net::IpAddr) -> std::net::Ipv6Addr {
    match a {
        std::net::IpAddr::V4(a) => a.to_ipv6_mapped(),
        std::net::IpAddr::V6(a) => a,
    }
}

/// The README's table of the flow record's elements, enterprise-specific ones under `pen`.
pub fn elements_table(pen: u32) -> String {
    crate::ie::markdown_table(FlowRecord::ELEMENTS, pen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ie::{DataType, Family};
    use crate::wire::{DataRecords, VARLEN};
    use std::collections::HashSet;

    fn sample(family: Family) -> FlowRecord {
        let mut r = FlowRecord { protocol: 17, source_port: 1000, destination_port: 53, ..Default::default() };
        match family {
            Family::V4 => r.set_addresses("192.168.1.3".parse().unwrap(), "192.168.1.4".parse().unwrap()),
            Family::V6 => r.set_addresses("fd00::3".parse().unwrap(), "fd00::4".parse().unwrap()),
        }
        r.octet_delta = 1500;
        r.packet_delta = 3;
        r.octet_total = 9000;
        r.packet_total = 12;
        r.flow_start_ms = 1_700_000_000_123;
        r.flow_end_ms = 1_700_000_001_456;
        r.flow_end_reason = end_reason::ACTIVE_TIMEOUT;
        r.ingress_interface = 1;
        r.egress_interface = 2;
        r.ingress_vrf = 1;
        r.egress_vrf = 1;
        r.layer2_segment_id = SEGMENT_VXLAN | 5001;
        r.forwarding_status = forwarding_status::FORWARDED;
        r.firewall_event = firewall_event::CREATED;
        r.flow_id = 7 << 32 | 3;
        r.mirror_octets = 400;
        r.analyzer_name = "default-domain:demo:analyzer-a".into();
        r.flow_uuid = "00000007-0003-4abc-8def-0123456789ab".into();
        r.policy_action = "pass|mirror".into();
        r.drop_reason = "x".repeat(300);
        r
    }

    #[test]
    fn names_and_ids_are_unique_and_lengths_match_the_encoder() {
        let mut ids = HashSet::new();
        let mut names = HashSet::new();
        let mut fields = HashSet::new();
        for e in FlowRecord::ELEMENTS {
            assert!(ids.insert((e.enterprise, e.id)), "{} reuses its id", e.name);
            assert!(names.insert(e.name), "{} twice", e.name);
            assert!(fields.insert(e.field), "{} twice", e.field);
            assert!(!e.doc.trim().is_empty(), "{} has no documentation", e.name);
            assert!(e.id < 0x8000);
        }
        // Fixed-length elements first, then the strings: a collector reads the counters
        // without walking variable-length fields.
        let first_var = FlowRecord::ELEMENTS.iter().position(|e| e.data_type == DataType::String).unwrap();
        assert!(FlowRecord::ELEMENTS[first_var..].iter().all(|e| e.data_type == DataType::String));
        // Every record encodes to exactly what its template announces.
        for f in [Family::V4, Family::V6] {
            let r = FlowRecord { family: f, ..Default::default() };
            let mut out = Vec::new();
            r.encode(&mut out);
            let t = FlowRecord::templates(DOCUMENTATION_PEN).into_iter().find(|t| t.id == r.template_id()).unwrap();
            let fixed: usize = t.fields.iter().filter(|s| s.length != VARLEN).map(|s| usize::from(s.length)).sum();
            let var = t.fields.iter().filter(|s| s.length == VARLEN).count();
            assert_eq!(out.len(), fixed + var, "{f:?}: empty strings take their length octet only");
        }
    }

    #[test]
    fn templates_carry_the_family_addresses_and_the_pen() {
        let ts = FlowRecord::templates(4242);
        assert_eq!(ts.iter().map(|t| t.id).collect::<Vec<_>>(), [TEMPLATE_V4, TEMPLATE_V6]);
        let ids = |t: &crate::wire::TemplateRecord| t.fields.iter().map(|f| (f.id, f.enterprise)).collect::<Vec<_>>();
        let v4 = ids(&ts[0]);
        let v6 = ids(&ts[1]);
        assert!(v4.contains(&(8, None)) && v4.contains(&(12, None)) && !v4.contains(&(27, None)));
        assert!(v6.contains(&(27, None)) && v6.contains(&(28, None)) && !v6.contains(&(8, None)));
        assert!(v4.contains(&(1, Some(4242))), "analyzerName under the configured PEN");
        assert_eq!(v4.len(), v6.len());
    }

    #[test]
    fn records_round_trip_through_their_templates() {
        for f in [Family::V4, Family::V6] {
            let r = sample(f);
            let mut out = Vec::new();
            r.encode(&mut out);
            let t = FlowRecord::templates(DOCUMENTATION_PEN).into_iter().find(|t| t.id == r.template_id()).unwrap();
            let recs: Vec<_> = DataRecords::new(&t, &out).collect::<Result<_, _>>().unwrap();
            assert_eq!(recs.len(), 1);
            let back = FlowRecord::from_fields(t.id, recs[0].iter().copied(), DOCUMENTATION_PEN).unwrap();
            assert_eq!(back, r);
            // Under another PEN the enterprise elements are someone else's: skipped.
            let other = FlowRecord::from_fields(t.id, recs[0].iter().copied(), 1).unwrap();
            assert_eq!(other.analyzer_name, "");
            assert_eq!(other.octet_delta, 1500);
        }
    }

    #[test]
    fn the_wire_bytes_of_the_leading_fields_are_as_rfc_7011_says() {
        let r = sample(Family::V4);
        let mut out = Vec::new();
        r.encode(&mut out);
        // sourceIPv4Address, destinationIPv4Address, protocolIdentifier, ports, octetDeltaCount.
        assert_eq!(&out[..8], &[192, 168, 1, 3, 192, 168, 1, 4]);
        assert_eq!(out[8], 17);
        assert_eq!(&out[9..13], &[0x03, 0xe8, 0x00, 0x35]);
        assert_eq!(&out[13..21], &1500u64.to_be_bytes());
    }

    #[test]
    fn the_table_lists_every_element() {
        let t = elements_table(DOCUMENTATION_PEN);
        assert_eq!(t.lines().count(), 2 + FlowRecord::ELEMENTS.len());
        assert!(t.contains("| 32473/1 | `analyzerName` | string | variable | all |"));
        assert!(t.contains("| 8 | `sourceIPv4Address` | ipv4Address | 4 | IPv4 |"));
        assert!(t.contains("`pass\\|mirror`"), "a | in a cell is escaped");
    }

    #[test]
    fn the_readme_holds_the_generated_table() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
        let begin = "<!-- ipfix-elements:begin (generated: cargo run -p ipfix --example elements_table) -->\n";
        let end = "<!-- ipfix-elements:end -->";
        let start = readme.find(begin).expect("README: the IPFIX elements table's begin marker") + begin.len();
        let stop = readme[start..].find(end).expect("README: the end marker") + start;
        assert_eq!(
            &readme[start..stop],
            elements_table(DOCUMENTATION_PEN),
            "README's IPFIX table is stale: paste `cargo run -p ipfix --example elements_table` between the markers"
        );
    }
}
