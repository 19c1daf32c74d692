//! The one drop-reason table.
//!
//! The data plane counts drops by [`DropReason`], the stats region stores one counter per
//! reason (indexed by the discriminant), `dropstats` prints [`DropReason::name`] and the
//! exporters use [`DropReason::key`]. Names and order follow the tf-vrouter `dropstats`
//! output; reasons after `VlanFwdEnq` are this vRouter's own additions and are appended only
//! (the discriminant is part of the shared-memory layout: never reorder, only append and
//! bump `stats::LAYOUT_VERSION`).

crate::code_enum! {
    /// Why a packet was dropped. The discriminant indexes the drop counter arrays.
    pub enum DropReason: u8 {
        /// Packet arrived on, or was sent to, an interface that does not exist.
        InvalidIf => "invalid_if", "Invalid IF";
        /// ARP packet that could not be handled (bad opcode, bad hardware/protocol type).
        InvalidArp => "invalid_arp", "Invalid ARP";
        TrapNoIf => "trap_no_if", "Trap No IF";
        /// The TX queue was full: the NIC did not take the packet.
        InterfaceTxDiscard => "interface_tx_discard", "IF TX Discard";
        /// The interface is down or not forwarding.
        InterfaceDrop => "interface_drop", "IF Drop";
        InterfaceRxDiscard => "interface_rx_discard", "IF RX Discard";
        FlowUnusable => "flow_unusable", "Flow Unusable";
        FlowNoMemory => "flow_no_memory", "Flow No Memory";
        FlowTableFull => "flow_table_full", "Flow Table Full";
        FlowNatNoRflow => "flow_nat_no_rflow", "Flow NAT no rflow";
        FlowActionDrop => "flow_action_drop", "Flow Action Drop";
        FlowActionInvalid => "flow_action_invalid", "Flow Action Invalid";
        FlowInvalidProtocol => "flow_invalid_protocol", "Flow Invalid Protocol";
        FlowQueueLimitExceeded => "flow_queue_limit_exceeded", "Flow Queue Limit Exceeded";
        NewFlowDrops => "new_flow_drops", "New Flow Drops";
        FlowEvict => "flow_evict", "Flow Unusable (Eviction)";
        TrapOriginal => "trap_original", "Original Packet Trapped";
        /// Sent to a discard nexthop.
        Discard => "discard", "Discards";
        /// IPv4 TTL or IPv6 hop limit would reach zero.
        TtlExceeded => "ttl_exceeded", "TTL Exceeded";
        McastCloneFail => "mcast_clone_fail", "Mcast Clone Fail";
        /// The nexthop is missing or cannot forward (e.g. empty ECMP group).
        InvalidNh => "invalid_nh", "Invalid NH";
        /// MPLS label or VXLAN VNI unknown on the fabric.
        InvalidLabel => "invalid_label", "Invalid Label";
        /// Ethertype or IP protocol the vRouter does not forward.
        InvalidProtocol => "invalid_protocol", "Invalid Protocol";
        L2LeafToLeaf => "leaf_to_leaf", "Etree Leaf to Leaf";
        BmacIsidMismatch => "bmac_isid_mismatch", "Bmac/ISID Mismatch";
        RewriteFail => "rewrite_fail", "Rewrite Fail";
        InvalidMcastSource => "invalid_mcast_source", "Invalid Mcast Source";
        PacketLoop => "packet_loop", "Packet Loop";
        /// Not enough headroom to push an encapsulation.
        PushFails => "push", "Push Fails";
        /// A header is truncated: the packet is shorter than the header it announces.
        PullFails => "pull", "Pull Fails";
        Duplicated => "duplicated", "Duplicate";
        HeadAllocFails => "head_alloc_fail", "Head Alloc Fails";
        PcowFail => "pcow_fail", "PCOW fails";
        /// Malformed header: bad version, bad IHL, bad total length, bad option.
        InvalidPacket => "invalid_packet", "Invalid Packets";
        Misc => "misc", "Misc";
        /// Nothing to deliver the packet to (e.g. broadcast that is not ARP, no host interface).
        NowhereToGo => "nowhere_to_go", "Nowhere to go";
        ChecksumError => "cksum_err", "Checksum errors";
        NoFmd => "no_fmd", "No Fmd";
        InvalidVnid => "invalid_vnid", "Invalid VNID";
        FragmentError => "frag_err", "Fragment errors";
        InvalidSource => "invalid_source", "Invalid Source";
        L2JumboMcast => "jumbo_mcast_pkt_with_df", "Jumbo Mcast Pkt with DF Bit";
        /// No bridge entry for the destination MAC in the VRF.
        NoL2Route => "l2_no_route", "No L2 Route";
        NoMemory => "no_memory", "Memory Failures";
        FragmentQueueFail => "fragment_queue_fail", "Fragment Queueing Failures";
        NoCryptPath => "no_crypt_path", "No Encrypt Path Failures";
        InvalidHbsPacket => "invalid_hbs_pkt", "Invalid HBS received packet";
        NoFragEntry => "no_frag_entry", "No Fragment Entries";
        IcmpError => "icmp_error", "ICMP errors";
        CloneFail => "clone_fail", "Clone Failures";
        InvalidUnderlayEcmp => "invalid_underlay_ecmp", "Invalid underlay ECMP";
        VlanFwdTx => "vlan_fwd_tx", "VLAN fwd intf failed TX";
        VlanFwdEnq => "vlan_fwd_enq", "VLAN fwd intf failed enq";
        // ---- additions of this vRouter (append only) ----
        /// No IPv4/IPv6 route for the destination in the VRF (tf-vrouter counts this as
        /// "Discards" through its default discard nexthop; operators asked for the reason).
        NoL3Route => "l3_no_route", "No L3 Route";
        /// A mirror copy was due but its mirror index names no entry (never created, or deleted
        /// while flows or vifs still point at it). Counts the copy, not the original packet.
        MirrorNoEntry => "mirror_no_entry", "Mirror No Entry";
        /// A mirror copy was due but the analyzer has no nexthop (no route to it in the fabric
        /// VRF, or the route does not leave through a fabric vif).
        MirrorNoNh => "mirror_no_nh", "Mirror No NH";
        /// No mbuf for a mirror copy (the pool is exhausted).
        MirrorCloneFail => "mirror_clone_fail", "Mirror Clone Fail";
        /// The fabric TX queue did not take a mirror copy.
        MirrorTxFull => "mirror_tx_full", "Mirror TX Queue Full";
        /// The encapsulated copy does not fit one mbuf (frame plus analyzer headers too long).
        MirrorEncapFail => "mirror_encap_fail", "Mirror Encap Fail";
        /// A VM sent a frame whose source MAC is neither its own (`vm_mac`) nor one of its
        /// allowed address pairs' (the source IP's counterpart is `Invalid Source`).
        InvalidSourceMac => "invalid_source_mac", "Invalid Source MAC";
        /// The fragment table had no free entry for the first fragment of a new datagram.
        FragTableFull => "frag_table_full", "Fragment Table Full";
        /// An IPv6 extension-header chain longer than the walk limit, one that runs past the
        /// packet, a hop-by-hop header that is not the first, or a second fragment header.
        Ipv6ExtChain => "ipv6_ext_chain", "IPv6 Ext Header Chain";
        /// A bridged IP frame whose destination IP does not route to where its destination MAC
        /// bridges: policy is decided for the IP's endpoint, so the frame may not go elsewhere.
        BridgeRouteMismatch => "bridge_route_mismatch", "Bridged IP Route Mismatch";
        /// Sent to a vif whose link is down: a vhost-user VM port whose guest is not
        /// connected (or has not started its driver).
        LinkDown => "link_down", "Link Down";
    }
}

/// Number of drop reasons; the length of every drop counter array in the stats region.
pub const DROP_REASON_COUNT: usize = DropReason::ALL.len();

impl DropReason {
    /// The reason with this table index, if any.
    pub fn from_index(i: usize) -> Option<DropReason> {
        DropReason::ALL.get(i).copied()
    }

    /// This reason's index in the counter arrays.
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn indices_match_table_order() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            assert_eq!(DropReason::from_index(i), Some(*r));
        }
        assert_eq!(DropReason::from_index(DROP_REASON_COUNT), None);
    }

    #[test]
    fn names_and_keys_are_unique() {
        let names: HashSet<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        let keys: HashSet<_> = DropReason::ALL.iter().map(|r| r.key()).collect();
        assert_eq!(names.len(), DROP_REASON_COUNT);
        assert_eq!(keys.len(), DROP_REASON_COUNT);
        assert!(DropReason::ALL.iter().all(|r| r.name().len() <= 28), "dropstats pads to 28");
    }

    #[test]
    fn vrouter_names_stay_in_place() {
        assert_eq!(DropReason::InvalidIf.index(), 0);
        assert_eq!(DropReason::TtlExceeded.name(), "TTL Exceeded");
        assert_eq!(DropReason::VlanFwdEnq.index(), 52);
        assert_eq!(DropReason::NoL3Route.index(), 53);
    }
}
