//! Flow actions, flag bits, TCP state bits and drop reasons, numbered as in tf-vrouter
//! (`include/vr_flow.h`, `utils/flow.c`) wherever tf has a value. Each table is declared once
//! (see [`crate::codes`]); the flow table (`flow-table`) stores these values and re-exports
//! this module, the agent sets them and the `flow` tool prints them.

use serde::Serialize;

crate::code_enum! {
    /// Flow action (`fe_action`), tf numbering. The display name is what `flow --get` prints,
    /// its first letter what `flow -l` prints ([`Action::letter`]).
    #[derive(Serialize)]
    pub enum Action: u8 {
        /// Drop the flow's packets (with a [`FlowDropReason`]).
        Drop = 0 => "drop", "DROP";
        /// Queue the flow's packets until the agent sets the flow up.
        Hold = 1 => "hold", "HOLD";
        /// Forward the flow's packets.
        Forward = 2 => "forward", "FORWARD";
        /// NAT placeholder: the data plane treats it like `Forward` until NAT exists.
        Nat = 3 => "nat", "NAT";
    }
}

impl Action {
    /// Decodes a stored action byte (`None` for values this build does not know).
    #[inline]
    pub const fn from_u8(v: u8) -> Option<Action> {
        Action::from_code(v)
    }

    /// The letter `flow -l` prints (`D`, `H`, `F`, `N`): the first letter of [`Action::name`].
    pub const fn letter(self) -> char {
        self.name().as_bytes()[0] as char
    }
}

/// Flow flag bits (`fe_flags`). The low 16 bits are tf's values; bits 16 and up are this
/// table's extensions (tf has no free bit left in its 16).
pub mod flags {
    crate::flag_set! {
        /// Every flow flag, in bit order (name as tf's `VR_FLOW_FLAG_*` suffix, key its
        /// lower case, as `flow --json` prints them).
        pub FLAGS: u32 {
            /// The slot holds a flow (set when the flow is published, cleared when its slot is
            /// reclaimed; delete-marked and evicted flows stay active until then).
            ACTIVE = 0x0001 => "active", "ACTIVE";
            /// Source NAT.
            SNAT = 0x0002 => "snat", "SNAT";
            /// Source port NAT.
            SPAT = 0x0004 => "spat", "SPAT";
            /// Destination NAT.
            DNAT = 0x0008 => "dnat", "DNAT";
            /// Destination port NAT.
            DPAT = 0x0010 => "dpat", "DPAT";
            /// Trap the flow's packets to the agent for an ECMP choice.
            TRAP_ECMP = 0x0020 => "trap_ecmp", "TRAP_ECMP";
            /// Deleted: lookups no longer match it; the slot is reused after a grace period.
            DELETE_MARKED = 0x0040 => "delete_marked", "DELETE_MARKED";
            /// BGP-as-a-service flow.
            BGP_SERVICE = 0x0080 => "bgp_service", "BGP_SERVICE";
            /// Updated by the agent since creation.
            MODIFIED = 0x0100 => "modified", "MODIFIED";
            /// Created by the data plane and not yet reported to the agent (the trap clears it).
            NEW_FLOW = 0x0200 => "new_flow", "NEW_FLOW";
            /// Chosen for eviction.
            EVICT_CANDIDATE = 0x0400 => "evict_candidate", "EVICT_CANDIDATE";
            /// Evicted: lookups no longer match it, final counters stay readable until reclaim.
            EVICTED = 0x0800 => "evicted", "EVICTED";
            /// `rflow` holds the reverse flow's index.
            RFLOW_VALID = 0x1000 => "rflow_valid", "RFLOW_VALID";
            /// Mirror the flow to `mirror` (and `sec_mirror` when set).
            MIRROR = 0x2000 => "mirror", "MIRROR";
            /// VRF translation.
            VRFT = 0x4000 => "vrft", "VRFT";
            /// Link-local service flow.
            LINK_LOCAL = 0x8000 => "link_local", "LINK_LOCAL";
            /// Extension: the action is HOLD (kept equal to `action == Hold` by the table, so a
            /// reader can filter on flags alone).
            HOLD = 0x1_0000 => "hold", "HOLD";
        }
    }

    /// Bits the data plane owns: an agent update neither sets nor clears them
    /// (tf's "DP flags" plus this table's own bookkeeping bits).
    pub const DP_OWNED: u32 =
        ACTIVE | DELETE_MARKED | MODIFIED | NEW_FLOW | EVICT_CANDIDATE | EVICTED | RFLOW_VALID | HOLD;
}

/// Data-path TCP state bits (`fe_tcp_flags`), tf values; `_R` = seen on the reverse flow.
pub mod tcp_flags {
    crate::flag_set! {
        /// Every TCP state bit in `flow` print order: symbol as `flow -l` prints it (`TCP:`),
        /// name as `flow --get` does, key as `flow --json` does (which lists them in bit order).
        pub TCP_FLAGS: u16 {
            /// SYN seen.
            SYN = 0x0008 => "syn", "SYN", "S";
            /// SYN seen on the reverse flow.
            SYN_R = 0x0010 => "syn_r", "SYN(REVERSE)", "Sr";
            /// Established.
            ESTABLISHED = 0x0020 => "established", "ESTABLISHED", "E";
            /// Established on the reverse flow.
            ESTABLISHED_R = 0x0040 => "established_r", "ESTABLISHED(REVERSE)", "Er";
            /// FIN seen.
            FIN = 0x0001 => "fin", "FIN", "F";
            /// FIN seen on the reverse flow.
            FIN_R = 0x0004 => "fin_r", "FIN(REVERSE)", "Fr";
            /// RST seen.
            RST = 0x0080 => "rst", "RESET", "R";
            /// One side closed.
            HALF_CLOSE = 0x0002 => "half_close", "HALFCLOSED", "C";
            /// Both sides closed or reset: the flow can go.
            DEAD = 0x8000 => "dead", "DEAD", "D";
        }
    }

    /// The flags of [`TCP_FLAGS`] set in `t`, in bit order.
    pub fn in_bit_order(t: u16) -> impl Iterator<Item = &'static crate::codes::Flag<u16>> {
        (0..16).filter_map(move |i| TCP_FLAGS.iter().find(|f| f.bit == 1 << i && t & f.bit != 0))
    }
}

crate::code_enum! {
    /// Why the agent drops a flow (`VR_FLOW_DR_*`), tf codes; the display name is what `flow`
    /// prints. The flow table stores the code (`u8`): the `FLOW_DR_*` constants.
    pub enum FlowDropReason: u8 {
        Unknown = 0x00 => "unknown", "Unknown", const FLOW_DR_UNKNOWN;
        UnavailableIntf = 0x01 => "unavailable_intf", "IntfErr", const FLOW_DR_UNAVAILABLE_INTF;
        Ipv4FwdDis = 0x02 => "ipv4_fwd_dis", "Ipv4Dis", const FLOW_DR_IPV4_FWD_DIS;
        UnavailableVrf = 0x03 => "unavailable_vrf", "VrfErr", const FLOW_DR_UNAVAILABLE_VRF;
        NoSrcRoute = 0x04 => "no_src_route", "NoSrcRt", const FLOW_DR_NO_SRC_ROUTE;
        NoDstRoute = 0x05 => "no_dst_route", "NoDstRt", const FLOW_DR_NO_DST_ROUTE;
        AuditEntry = 0x06 => "audit_entry", "Audit", const FLOW_DR_AUDIT_ENTRY;
        VrfChange = 0x07 => "vrf_change", "VrfChange", const FLOW_DR_VRF_CHANGE;
        NoReverseFlow = 0x08 => "no_reverse_flow", "NoRevFlow", const FLOW_DR_NO_REVERSE_FLOW;
        ReverseFlowChange = 0x09 => "reverse_flow_change", "RevFlowChng", const FLOW_DR_REVERSE_FLOW_CHANGE;
        NatChange = 0x0a => "nat_change", "NatChng", const FLOW_DR_NAT_CHANGE;
        FlowLimit = 0x0b => "flow_limit", "FlowLim", const FLOW_DR_FLOW_LIMIT;
        LinklocalSrcNat = 0x0c => "linklocal_src_nat", "LinkSrcNatErr", const FLOW_DR_LINKLOCAL_SRC_NAT;
        FailedVrouterInstall = 0x0d => "failed_vrouter_install", "VrouterInstallFail", const FLOW_DR_FAILED_VROUTER_INSTALL;
        InvalidL2Flow = 0x0e => "invalid_l2_flow", "InvalidL2Flow", const FLOW_DR_INVALID_L2_FLOW;
        FlowOnTsn = 0x0f => "flow_on_tsn", "TSNFlow", const FLOW_DR_FLOW_ON_TSN;
        NoMirrorEntry = 0x10 => "no_mirror_entry", "NoMirrorentry", const FLOW_DR_NO_MIRROR_ENTRY;
        SameFlowRflowKey = 0x11 => "same_flow_rflow_key", "SameFlowRflowKey", const FLOW_DR_SAME_FLOW_RFLOW_KEY;
        PortMapDrop = 0x12 => "port_map_drop", "NoFipPortMap", const FLOW_DR_PORT_MAP_DROP;
        NoSrcRouteL2rpf = 0x13 => "no_src_route_l2rpf", "NoSrcRtRpfNh", const FLOW_DR_NO_SRC_ROUTE_L2RPF;
        FatFlowNatConflict = 0x14 => "fat_flow_nat_conflict", "FatFlowNatConflict", const FLOW_DR_FAT_FLOW_NAT_CONFLICT;
        Policy = 0x15 => "policy", "Policy", const FLOW_DR_POLICY;
        OutPolicy = 0x16 => "out_policy", "OutPolicy", const FLOW_DR_OUT_POLICY;
        Sg = 0x17 => "sg", "SG", const FLOW_DR_SG;
        OutSg = 0x18 => "out_sg", "OutSG", const FLOW_DR_OUT_SG;
        ReverseSg = 0x19 => "reverse_sg", "RevSG", const FLOW_DR_REVERSE_SG;
        ReverseOutSg = 0x1a => "reverse_out_sg", "RevOutSG", const FLOW_DR_REVERSE_OUT_SG;
        FwPolicy = 0x1b => "fw_policy", "FwPolicy", const FLOW_DR_FW_POLICY;
        OutFwPolicy = 0x1c => "out_fw_policy", "OutFwPolicy", const FLOW_DR_OUT_FW_POLICY;
        ReverseFwPolicy = 0x1d => "reverse_fw_policy", "RevFwPolicy", const FLOW_DR_REVERSE_FW_POLICY;
        ReverseOutFwPolicy = 0x1e => "reverse_out_fw_policy", "RevOutFwPolicy", const FLOW_DR_REVERSE_OUT_FW_POLICY;
        FwaasPolicy = 0x1f => "fwaas_policy", "FWAASPolicy", const FLOW_DR_FWAAS_POLICY;
        FwaasOutPolicy = 0x20 => "fwaas_out_policy", "OutFWAASPolicy", const FLOW_DR_FWAAS_OUT_POLICY;
        FwaasReversePolicy = 0x21 => "fwaas_reverse_policy", "RevFWAASPolicy", const FLOW_DR_FWAAS_REVERSE_POLICY;
        FwaasReverseOutPolicy = 0x22 => "fwaas_reverse_out_policy", "RevOutFWAASPolicy", const FLOW_DR_FWAAS_REVERSE_OUT_POLICY;
    }
}

/// The name `flow` prints for a drop reason code (`"Unknown"` for codes it does not know).
pub fn flow_drop_reason_name(code: u8) -> &'static str {
    FlowDropReason::from_code(code).map_or(FlowDropReason::Unknown.name(), FlowDropReason::name)
}

/// Names of the bits set in `f` ([`flags::FLAGS`]), unknown bits as hex.
pub fn flag_names(f: u32) -> Vec<String> {
    let mut out: Vec<String> = crate::codes::flags_set(flags::FLAGS, f).map(|fl| fl.name.to_string()).collect();
    let unknown = crate::codes::unknown_bits(flags::FLAGS, f);
    if unknown != 0 {
        out.push(format!("{unknown:#x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_reason_names_match_tf_codes() {
        assert_eq!(flow_drop_reason_name(FLOW_DR_UNKNOWN), "Unknown");
        assert_eq!(flow_drop_reason_name(FLOW_DR_AUDIT_ENTRY), "Audit");
        assert_eq!(flow_drop_reason_name(FLOW_DR_FLOW_LIMIT), "FlowLim");
        assert_eq!(flow_drop_reason_name(FLOW_DR_POLICY), "Policy");
        assert_eq!(flow_drop_reason_name(FLOW_DR_SG), "SG");
        assert_eq!(flow_drop_reason_name(FLOW_DR_REVERSE_OUT_SG), "RevOutSG");
        assert_eq!(flow_drop_reason_name(FLOW_DR_FWAAS_REVERSE_OUT_POLICY), "RevOutFWAASPolicy");
        assert_eq!(flow_drop_reason_name(0x23), "Unknown");
        assert_eq!(flow_drop_reason_name(0xff), "Unknown");
    }

    #[test]
    fn drop_reason_codes_are_dense_and_keys_unique() {
        for (i, r) in FlowDropReason::ALL.iter().enumerate() {
            assert_eq!(r.code() as usize, i);
        }
        assert_eq!(FlowDropReason::ALL.len(), 0x23);
        let keys: std::collections::HashSet<_> = FlowDropReason::ALL.iter().map(|r| r.key()).collect();
        assert_eq!(keys.len(), FlowDropReason::ALL.len());
    }

    #[test]
    fn action_round_trips_and_letters() {
        for a in [Action::Drop, Action::Hold, Action::Forward, Action::Nat] {
            assert_eq!(Action::from_u8(a as u8), Some(a));
        }
        assert_eq!(Action::from_u8(4), None);
        assert_eq!(Action::Hold.letter(), 'H');
        assert_eq!(Action::Forward as u8, 2);
        let letters: String = Action::ALL.iter().map(|a| a.letter()).collect();
        assert_eq!(letters, "DHFN");
        assert_eq!(Action::Forward.name(), "FORWARD");
    }

    #[test]
    fn flag_values_are_tf_values() {
        assert_eq!(flags::ACTIVE, 0x1);
        assert_eq!(flags::DELETE_MARKED, 0x40);
        assert_eq!(flags::NEW_FLOW, 0x200);
        assert_eq!(flags::EVICTED, 0x800);
        assert_eq!(flags::RFLOW_VALID, 0x1000);
        assert_eq!(flags::MIRROR, 0x2000);
        assert_eq!(tcp_flags::DEAD, 0x8000);
        assert_eq!(flag_names(flags::ACTIVE | flags::HOLD | 0x100_0000), ["ACTIVE", "HOLD", "0x1000000"]);
    }

    #[test]
    fn flag_lists_are_in_their_print_order() {
        assert!(flags::FLAGS.windows(2).all(|w| w[0].bit < w[1].bit));
        assert!(flags::FLAGS.iter().all(|f| f.key == f.name.to_ascii_lowercase()));
        let all = tcp_flags::TCP_FLAGS.iter().fold(0, |a, f| a | f.bit);
        let keys: Vec<_> = tcp_flags::in_bit_order(all).map(|f| f.key).collect();
        assert_eq!(keys, ["fin", "half_close", "fin_r", "syn", "syn_r", "established", "established_r", "rst", "dead"]);
    }
}
