//! Flow actions, flag bits, TCP state bits and drop reasons, numbered as in tf-vrouter
//! (`include/vr_flow.h`, `utils/flow.c`) wherever tf has a value.

use serde::Serialize;

/// "No flow index": the reverse flow is unknown, the overflow chain ends, ...
pub const NO_INDEX: u32 = u32::MAX;

/// "No mirror": the value of `mirror`/`sec_mirror` when the flow is not mirrored there.
pub const NO_MIRROR: u8 = 255;

/// Per-entry generation id; bumped (wrapping) every time a slot is (re)allocated.
///
/// tf uses a `u8` (`fe_gen_id`); 16 bits make a stale handle 256 times less likely to
/// alias a later occupant of the same slot, and still fit the control word (see
/// [`crate::FlowEntry`]).
pub type Gen = u16;

/// Flow action (`fe_action`), tf numbering.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[repr(u8)]
pub enum Action {
    Drop = 0,
    Hold = 1,
    Forward = 2,
    /// NAT placeholder: the data plane treats it like `Forward` until NAT exists.
    Nat = 3,
}

impl Action {
    /// Decodes a stored action byte (`None` for values this build does not know).
    pub fn from_u8(v: u8) -> Option<Action> {
        match v {
            0 => Some(Action::Drop),
            1 => Some(Action::Hold),
            2 => Some(Action::Forward),
            3 => Some(Action::Nat),
            _ => None,
        }
    }

    /// The letter `flow -l` prints (`D`, `H`, `F`, `N`).
    pub fn letter(self) -> char {
        match self {
            Action::Drop => 'D',
            Action::Hold => 'H',
            Action::Forward => 'F',
            Action::Nat => 'N',
        }
    }

    /// Upper-case name as `flow --get` prints it.
    pub fn name(self) -> &'static str {
        match self {
            Action::Drop => "DROP",
            Action::Hold => "HOLD",
            Action::Forward => "FORWARD",
            Action::Nat => "NAT",
        }
    }
}

/// Flow flag bits (`fe_flags`). The low 16 bits are tf's values; bits 16 and up are this
/// table's extensions (tf has no free bit left in its 16).
pub mod flags {
    /// The slot holds a flow (set when the flow is published, cleared when its slot is
    /// reclaimed; delete-marked and evicted flows stay active until then).
    pub const ACTIVE: u32 = 0x0001;
    pub const SNAT: u32 = 0x0002;
    pub const SPAT: u32 = 0x0004;
    pub const DNAT: u32 = 0x0008;
    pub const DPAT: u32 = 0x0010;
    pub const TRAP_ECMP: u32 = 0x0020;
    /// Deleted: lookups no longer match it; the slot is reused after a grace period.
    pub const DELETE_MARKED: u32 = 0x0040;
    pub const BGP_SERVICE: u32 = 0x0080;
    pub const MODIFIED: u32 = 0x0100;
    /// Created by the data plane and not yet reported to the agent (the trap clears it).
    pub const NEW_FLOW: u32 = 0x0200;
    pub const EVICT_CANDIDATE: u32 = 0x0400;
    /// Evicted: lookups no longer match it, final counters stay readable until reclaim.
    pub const EVICTED: u32 = 0x0800;
    /// `rflow` holds the reverse flow's index.
    pub const RFLOW_VALID: u32 = 0x1000;
    /// Mirror the flow to `mirror` (and `sec_mirror` when set).
    pub const MIRROR: u32 = 0x2000;
    pub const VRFT: u32 = 0x4000;
    pub const LINK_LOCAL: u32 = 0x8000;
    /// Extension: the action is HOLD (kept equal to `action == Hold` by the table, so a
    /// reader can filter on flags alone).
    pub const HOLD: u32 = 0x1_0000;

    /// Bits the data plane owns: an agent update neither sets nor clears them
    /// (tf's "DP flags" plus this table's own bookkeeping bits).
    pub const DP_OWNED: u32 =
        ACTIVE | DELETE_MARKED | MODIFIED | NEW_FLOW | EVICT_CANDIDATE | EVICTED | RFLOW_VALID | HOLD;

    /// `(bit, name)` for display, in bit order.
    pub const NAMES: &[(u32, &str)] = &[
        (ACTIVE, "ACTIVE"),
        (SNAT, "SNAT"),
        (SPAT, "SPAT"),
        (DNAT, "DNAT"),
        (DPAT, "DPAT"),
        (TRAP_ECMP, "TRAP_ECMP"),
        (DELETE_MARKED, "DELETE_MARKED"),
        (BGP_SERVICE, "BGP_SERVICE"),
        (MODIFIED, "MODIFIED"),
        (NEW_FLOW, "NEW_FLOW"),
        (EVICT_CANDIDATE, "EVICT_CANDIDATE"),
        (EVICTED, "EVICTED"),
        (RFLOW_VALID, "RFLOW_VALID"),
        (MIRROR, "MIRROR"),
        (VRFT, "VRFT"),
        (LINK_LOCAL, "LINK_LOCAL"),
        (HOLD, "HOLD"),
    ];
}

/// Data-path TCP state bits (`fe_tcp_flags`), tf values; `_R` = seen on the reverse flow.
pub mod tcp_flags {
    pub const FIN: u16 = 0x0001;
    pub const HALF_CLOSE: u16 = 0x0002;
    pub const FIN_R: u16 = 0x0004;
    pub const SYN: u16 = 0x0008;
    pub const SYN_R: u16 = 0x0010;
    pub const ESTABLISHED: u16 = 0x0020;
    pub const ESTABLISHED_R: u16 = 0x0040;
    pub const RST: u16 = 0x0080;
    pub const DEAD: u16 = 0x8000;
}

// Flow drop reasons set by the agent (`VR_FLOW_DR_*`), tf codes.
pub const FLOW_DR_UNKNOWN: u8 = 0x00;
pub const FLOW_DR_UNAVAILABLE_INTF: u8 = 0x01;
pub const FLOW_DR_IPV4_FWD_DIS: u8 = 0x02;
pub const FLOW_DR_UNAVAILABLE_VRF: u8 = 0x03;
pub const FLOW_DR_NO_SRC_ROUTE: u8 = 0x04;
pub const FLOW_DR_NO_DST_ROUTE: u8 = 0x05;
pub const FLOW_DR_AUDIT_ENTRY: u8 = 0x06;
pub const FLOW_DR_VRF_CHANGE: u8 = 0x07;
pub const FLOW_DR_NO_REVERSE_FLOW: u8 = 0x08;
pub const FLOW_DR_REVERSE_FLOW_CHANGE: u8 = 0x09;
pub const FLOW_DR_NAT_CHANGE: u8 = 0x0a;
pub const FLOW_DR_FLOW_LIMIT: u8 = 0x0b;
pub const FLOW_DR_LINKLOCAL_SRC_NAT: u8 = 0x0c;
pub const FLOW_DR_FAILED_VROUTER_INSTALL: u8 = 0x0d;
pub const FLOW_DR_INVALID_L2_FLOW: u8 = 0x0e;
pub const FLOW_DR_FLOW_ON_TSN: u8 = 0x0f;
pub const FLOW_DR_NO_MIRROR_ENTRY: u8 = 0x10;
pub const FLOW_DR_SAME_FLOW_RFLOW_KEY: u8 = 0x11;
pub const FLOW_DR_PORT_MAP_DROP: u8 = 0x12;
pub const FLOW_DR_NO_SRC_ROUTE_L2RPF: u8 = 0x13;
pub const FLOW_DR_FAT_FLOW_NAT_CONFLICT: u8 = 0x14;
pub const FLOW_DR_POLICY: u8 = 0x15;
pub const FLOW_DR_OUT_POLICY: u8 = 0x16;
pub const FLOW_DR_SG: u8 = 0x17;
pub const FLOW_DR_OUT_SG: u8 = 0x18;
pub const FLOW_DR_REVERSE_SG: u8 = 0x19;
pub const FLOW_DR_REVERSE_OUT_SG: u8 = 0x1a;
pub const FLOW_DR_FW_POLICY: u8 = 0x1b;
pub const FLOW_DR_OUT_FW_POLICY: u8 = 0x1c;
pub const FLOW_DR_REVERSE_FW_POLICY: u8 = 0x1d;
pub const FLOW_DR_REVERSE_OUT_FW_POLICY: u8 = 0x1e;
pub const FLOW_DR_FWAAS_POLICY: u8 = 0x1f;
pub const FLOW_DR_FWAAS_OUT_POLICY: u8 = 0x20;
pub const FLOW_DR_FWAAS_REVERSE_POLICY: u8 = 0x21;
pub const FLOW_DR_FWAAS_REVERSE_OUT_POLICY: u8 = 0x22;

/// Names `flow` prints for each drop reason code (index = code).
const DROP_REASON_NAMES: [&str; 0x23] = [
    "Unknown",
    "IntfErr",
    "Ipv4Dis",
    "VrfErr",
    "NoSrcRt",
    "NoDstRt",
    "Audit",
    "VrfChange",
    "NoRevFlow",
    "RevFlowChng",
    "NatChng",
    "FlowLim",
    "LinkSrcNatErr",
    "VrouterInstallFail",
    "InvalidL2Flow",
    "TSNFlow",
    "NoMirrorentry",
    "SameFlowRflowKey",
    "NoFipPortMap",
    "NoSrcRtRpfNh",
    "FatFlowNatConflict",
    "Policy",
    "OutPolicy",
    "SG",
    "OutSG",
    "RevSG",
    "RevOutSG",
    "FwPolicy",
    "OutFwPolicy",
    "RevFwPolicy",
    "RevOutFwPolicy",
    "FWAASPolicy",
    "OutFWAASPolicy",
    "RevFWAASPolicy",
    "RevOutFWAASPolicy",
];

/// The name `flow` prints for a drop reason code (`"Unknown"` for codes it does not know).
pub fn flow_drop_reason_name(code: u8) -> &'static str {
    DROP_REASON_NAMES.get(code as usize).copied().unwrap_or("Unknown")
}

/// Names of the bits set in `f` ([`flags::NAMES`]), unknown bits as hex.
pub fn flag_names(f: u32) -> Vec<String> {
    let mut out = Vec::new();
    let mut known = 0;
    for &(bit, name) in flags::NAMES {
        known |= bit;
        if f & bit != 0 {
            out.push(name.to_string());
        }
    }
    if f & !known != 0 {
        out.push(format!("{:#x}", f & !known));
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
    fn action_round_trips_and_letters() {
        for a in [Action::Drop, Action::Hold, Action::Forward, Action::Nat] {
            assert_eq!(Action::from_u8(a as u8), Some(a));
        }
        assert_eq!(Action::from_u8(4), None);
        assert_eq!(Action::Hold.letter(), 'H');
        assert_eq!(Action::Forward as u8, 2);
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
}
