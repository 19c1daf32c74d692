//! What the pipeline decided for a packet, recorded where it decided (as VPP's graph nodes
//! record their trace at the decision): the route (VRF, matched prefix and length, or the
//! MPLS label or MAC that selected the nexthop), the nexthop, the ECMP member, and the flow
//! (index, generation, action). A trace is then written from what was recorded, never by
//! looking the route or the flow up again (which, once routes change at runtime, could
//! disagree with what the packet did).
//!
//! The pipeline is generic over a [`Record`]er. The data plane's untraced instance uses
//! `()`, whose hooks are empty and inlined away: nothing is computed or stored for packets
//! that are not traced (no field of a flow entry is read for it). Traced packets and
//! `trace simulate` record into a [`Decision`].

use crate::fib::NhIdx;
use flow_table::{Action, FlowEntry, FlowKey};

/// How the route of a packet was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteBy {
    /// Longest-prefix match: the matched prefix (IPv4 as `::ffff:a.b.c.d`, host bits zero)
    /// and its length (0-32 for IPv4, 0-128 for IPv6).
    Prefix {
        /// The matched prefix.
        prefix: u128,
        /// Its length.
        len: u8,
    },
    /// The MPLS label of a decapsulated packet.
    Label(u32),
    /// The destination MAC of a bridged frame.
    Mac([u8; 6]),
}

/// The route a packet took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteDecision {
    /// The VRF looked up (0 for a label lookup).
    pub vrf: u32,
    /// What selected the nexthop.
    pub by: RouteBy,
    /// The nexthop found (an ECMP composite when [`Decision::member`] is set).
    pub nh: NhIdx,
}

/// The flow a packet was given, as the flow stage read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowDecision {
    /// Flow index.
    pub index: u32,
    /// The packet created the flow (in HOLD).
    pub created: bool,
    /// The entry's generation.
    pub gen: u16,
    /// Its action code ([`Action`]).
    pub action: u8,
    /// Its `FLOW_DR_*` drop reason.
    pub drop_reason: u8,
    /// Primary mirror index ([`flow_table::NO_MIRROR`] when none).
    pub mirror: u8,
    /// Secondary mirror index.
    pub sec_mirror: u8,
}

/// Receives the pipeline's decisions for one packet. Every hook is empty by default, so
/// `()` records nothing at no cost.
pub trait Record {
    /// A simulation (`trace simulate`): the flow stage only looks flows up (no flow is
    /// created, no counter or TCP flag moves) and asks [`Record::no_flow`] for the verdict
    /// of a packet without a flow.
    const DRY_RUN: bool = false;

    /// The route was found in `vrf` by `by`: nexthop `nh`.
    #[inline(always)]
    fn route(&mut self, _vrf: u32, _by: RouteBy, _nh: NhIdx) {}

    /// ECMP: member number `index` (its nexthop `nh`) of the composite was chosen.
    #[inline(always)]
    fn member(&mut self, _index: usize, _nh: NhIdx) {}

    /// The packet was given flow `index` (`created`: by this packet), now `entry`.
    #[inline(always)]
    fn flow(&mut self, _index: u32, _created: bool, _entry: &FlowEntry) {}

    /// Only with [`Record::DRY_RUN`]: the action the packet of `key`, which has no flow,
    /// would be given (the agent's policy verdict).
    #[inline(always)]
    fn no_flow(&mut self, _key: &FlowKey) -> Action {
        Action::Drop
    }
}

impl Record for () {}

/// The decisions recorded for one packet (filled by the pipeline through [`Record`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Decision {
    /// The last route looked up for the packet (a VXLAN packet routed after decap: the
    /// inner route).
    pub route: Option<RouteDecision>,
    /// The ECMP member chosen: its number in the composite and its nexthop.
    pub member: Option<(usize, NhIdx)>,
    /// The flow the packet was given.
    pub flow: Option<FlowDecision>,
}

impl Record for Decision {
    #[inline]
    fn route(&mut self, vrf: u32, by: RouteBy, nh: NhIdx) {
        self.route = Some(RouteDecision { vrf, by, nh });
        self.member = None;
    }

    #[inline]
    fn member(&mut self, index: usize, nh: NhIdx) {
        self.member = Some((index, nh));
    }

    #[inline]
    fn flow(&mut self, index: u32, created: bool, e: &FlowEntry) {
        self.flow = Some(FlowDecision {
            index,
            created,
            gen: e.gen(),
            action: e.action() as u8,
            drop_reason: e.drop_reason(),
            mirror: e.mirror(),
            sec_mirror: e.sec_mirror(),
        });
    }
}

/// An IPv4 address and prefix length as a [`RouteBy::Prefix`] (host bits cleared).
#[inline]
pub fn prefix_v4(dst: u32, len: u8) -> RouteBy {
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len.min(32))) };
    RouteBy::Prefix { prefix: u128::from(dst & mask) | 0xffff_u128 << 32, len }
}

/// An IPv6 address and prefix length as a [`RouteBy::Prefix`] (host bits cleared).
#[inline]
pub fn prefix_v6(dst: u128, len: u8) -> RouteBy {
    let mask = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len.min(128))) };
    RouteBy::Prefix { prefix: dst & mask, len }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_clear_host_bits() {
        let RouteBy::Prefix { prefix, len } = prefix_v4(u32::from(std::net::Ipv4Addr::new(10, 129, 3, 4)), 9) else {
            panic!()
        };
        assert_eq!((std::net::Ipv6Addr::from(prefix).to_ipv4_mapped(), len), (Some([10, 128, 0, 0].into()), 9));
        assert_eq!(prefix_v4(0x0a00_0001, 0), RouteBy::Prefix { prefix: 0xffff_0000_0000, len: 0 });
        let a: u128 = "2001:db8::1".parse::<std::net::Ipv6Addr>().unwrap().into();
        let RouteBy::Prefix { prefix, .. } = prefix_v6(a, 64) else { panic!() };
        assert_eq!(std::net::Ipv6Addr::from(prefix), "2001:db8::".parse::<std::net::Ipv6Addr>().unwrap());
    }

    #[test]
    fn a_new_route_forgets_the_previous_member() {
        let mut d = Decision::default();
        d.route(1, RouteBy::Label(5), 2);
        d.member(1, 3);
        assert_eq!(d.member, Some((1, 3)));
        d.route(1, RouteBy::Mac([2, 0, 0, 0, 0, 1]), 4);
        assert_eq!((d.route.map(|r| r.nh), d.member), (Some(4), None));
    }
}
