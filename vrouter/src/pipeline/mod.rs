//! The per-packet forwarding decision, independent of DPDK.
//!
//! [`process`] takes a packet received on a vif, rewrites it in place (TTL, L2 header,
//! tunnel push/pop, ARP/ND answers) and returns a [`Verdict`]: transmit on a vif, or drop with
//! a [`DropReason`]. It works on any [`PacketBuf`] (an mbuf in the data plane, a `Vec` with
//! headroom in tests), never allocates and never panics on malformed input: every parse goes
//! through the checked views of [`crate::packet`] and every failure is a named drop.
//!
//! Paths:
//! - **VM -> VM / VM -> fabric (L3)**: frames addressed to the vif's (gateway) MAC or the
//!   vRouter MAC are routed: LPM in the vif's VRF, TTL/hop-limit check and decrement, then
//!   the nexthop: encap (L2 rewrite), tunnel (MPLSoUDP or VXLAN push), receive, discard,
//!   ECMP (member by 5-tuple hash). A packet from a VM whose TTL / hop limit expires is a
//!   `TTL Exceeded` drop answered with ICMP(v6) Time Exceeded, built in its own buffer
//!   ([`Verdict::Reply`], [`icmp_error`]; rate-limited by the data plane).
//! - **L2**: other unicast frames are bridged by destination MAC in the VRF (no TTL change);
//!   IP frames from VMs (and decapsulated into a VM's VRF) go through the flow stage first.
//! - **Fabric -> VM**: IPv4/UDP to the vRouter IP on port 6635 (MPLSoUDP) is decapsulated and
//!   sent to the label's nexthop; port 4789 (VXLAN) maps the VNI to a VRF and bridges the inner
//!   frame (or routes it when it is addressed to the vRouter MAC). The sending vRouter already
//!   decremented the inner TTL, so decap does not decrement it again.
//! - **ARP / IPv6 ND**: requests from VMs for addresses routed in their VRF are answered with
//!   the vif MAC (proxy ARP/ND, as tf-vrouter does); the fabric answers for the vRouter IP.
//! - **Source checks**: frames from VM vifs are checked first (source MAC and IP: anti-
//!   spoofing), decapsulated packets against the tunnel they came through; see [`source`].

use crate::config::{TunnelEncap, VifType};
use crate::drop_reason::DropReason;
use crate::fib::{Fib, Nexthop, NhIdx, TunnelHeader, Vif, MPLSOUDP_PORT, VXLAN_PORT};
use crate::packet::{self, arp, checksum, ethernet, icmpv6, ipv4, ipv6, mpls, udp, vxlan};
use crate::packet::{EtherType, IpProtocol};
use std::net::{Ipv4Addr, Ipv6Addr};

/// A packet buffer the pipeline can rewrite: contiguous bytes plus head/tail adjustment.
pub trait PacketBuf {
    /// The packet's bytes, from the current start (the outermost header).
    fn data(&self) -> &[u8];
    /// The packet's bytes, writable.
    fn data_mut(&mut self) -> &mut [u8];
    /// Grow at the front by `n` bytes (contents unspecified). False if there is no headroom.
    fn prepend(&mut self, n: usize) -> bool;
    /// Remove `n` bytes from the front.
    fn adj(&mut self, n: usize) -> bool;
    /// Shrink to `len` bytes.
    fn trim_to(&mut self, len: usize) -> bool;
    /// Grow at the end by `n` zeroed bytes.
    fn append(&mut self, n: usize) -> bool;
}

/// What to do with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Transmit on this vif.
    Tx(u16),
    /// Drop, counted with this reason on the ingress vif.
    Drop(DropReason),
    /// Queue the (unmodified) packet until the agent sets up `flow`; `new` when this packet
    /// created the flow (the caller sends the setup request).
    Hold {
        /// Index of the HOLD flow in the flow table.
        flow: u32,
        /// This packet created the flow (the caller sends the setup request).
        new: bool,
    },
    /// A fragment whose datagram's first fragment has not been seen: park the (unmodified)
    /// packet in the lcore's fragment table ([`frag::FragTable::park`]) until it comes.
    FragWait,
    /// The packet is dropped with `drop` (counted on the ingress vif) and its buffer now
    /// holds an answer to its sender (ICMP Time Exceeded, see [`icmp_error`]), to transmit
    /// on `vif` (the ingress vif) if the lcore's ICMP error rate allows.
    Reply {
        /// The vif to send the answer on (the ingress vif).
        vif: u16,
        /// Why the original packet is dropped (e.g. TTL exceeded).
        drop: DropReason,
    },
}

pub mod decision;
pub mod flow;
pub mod frag;
pub mod hit;
mod vec_buf;
pub use vec_buf::VecBuf;
pub mod icmp_error;
pub mod source;
pub mod vrf_count;
pub use decision::{Decision, FlowDecision, Record, RouteBy, RouteDecision};
pub use flow::{FlowMirror, FlowStage, MirrorFrame};
pub use vrf_count::{TallySink, VrfCount, VrfTally};

/// What the pipeline reports about a packet where it decides: its VRF counts ([`VrfCount`])
/// and its decisions ([`Record`], for traces and `trace simulate`). `()` does neither, at
/// no cost; [`Both`] does both.
pub trait Observe: VrfCount + Record {}
impl<T: VrfCount + Record> Observe for T {}

/// A VRF counter and a decision recorder observing one packet together.
pub struct Both<'a, C, R>(pub &'a mut C, pub &'a mut R);

impl<C: VrfCount, R> VrfCount for Both<'_, C, R> {
    #[inline(always)]
    fn count(&mut self, vrf: u32, field: impl FnOnce(&mut vrouter_abi::stats::VrfCounters) -> &mut u64) {
        self.0.count(vrf, field)
    }
}

impl<C, R: Record> Record for Both<'_, C, R> {
    const DRY_RUN: bool = R::DRY_RUN;
    #[inline(always)]
    fn route(&mut self, vrf: u32, by: RouteBy, nh: NhIdx) {
        self.1.route(vrf, by, nh)
    }
    #[inline(always)]
    fn member(&mut self, index: usize, nh: NhIdx) {
        self.1.member(index, nh)
    }
    #[inline(always)]
    fn flow(&mut self, index: u32, created: bool, entry: &flow_table::FlowEntry) {
        self.1.flow(index, created, entry)
    }
    #[inline(always)]
    fn no_flow(&mut self, key: &flow_table::FlowKey) -> flow_table::Action {
        self.1.no_flow(key)
    }
}

use Verdict::{Drop, Tx};

/// Outer headers of a tunnel: Ethernet (14) + IPv4 (20) + UDP (8) + MPLS (4) or VXLAN (8).
pub const MPLSOUDP_OVERHEAD: usize = TunnelHeader::UDP + udp::HEADER_LEN + mpls::HEADER_LEN;
/// Outer headers of a VXLAN tunnel: Ethernet (14) + IPv4 (20) + UDP (8) + VXLAN (8).
pub const VXLAN_OVERHEAD: usize = TunnelHeader::UDP + udp::HEADER_LEN + vxlan::HEADER_LEN;

/// How a routed packet reached the routing step.
#[derive(Clone, Copy)]
enum Ingress<'a> {
    /// From a local vif (the one given): TTL is checked and decremented; an expired packet
    /// from a VM vif is answered with ICMP Time Exceeded.
    Local(&'a Vif),
    /// Decapsulated from the fabric: the remote vRouter already decremented the TTL.
    Decap,
}

/// Forwards one packet received on `vif`. `flows` is the flow stage (None: stateless
/// forwarding, as when no flow table is configured).
#[inline(always)]
pub fn process<B: PacketBuf>(fib: &Fib, vif: &Vif, pkt: &mut B, flows: Option<&mut FlowStage>) -> Verdict {
    process_with(fib, vif, pkt, flows, &mut ())
}

/// [`process`], counting its decisions in VRF counters ([`vrf_count`]) and recording them
/// (route, nexthop, ECMP member, flow; [`decision`]) in `obs` where they are made. With
/// `obs = &mut ()` it is [`process`].
#[inline(always)]
pub fn process_with<B: PacketBuf, R: Observe>(
    fib: &Fib,
    vif: &Vif,
    pkt: &mut B,
    flows: Option<&mut FlowStage>,
    obs: &mut R,
) -> Verdict {
    // Flows track traffic entering or leaving VMs: routed or bridged from a VM vif, or decapsulated
    // from the fabric into a VM's VRF. The underlay's own traffic is stateless.
    let (dst, ethertype) = match ethernet::Frame::new_checked(pkt.data()) {
        Ok(f) => (f.dst_addr(), f.ethertype()),
        Err(e) => return Drop(e.drop_reason()),
    };
    // Anti-spoofing: a VM sends only as itself (before anything is answered, routed,
    // bridged or given a flow).
    if vif.source_check {
        if let Err(r) = source::check_vm(fib, vif, pkt.data()) {
            return Drop(r);
        }
    }
    match ethertype {
        EtherType::IPV4 => {
            if vif.kind == VifType::Fabric {
                if let Some(v) = terminate_tunnel(fib, vif.vrf, pkt, flows, obs) {
                    return v;
                }
                return if dst == vif.mac || dst == fib.router_mac {
                    route_v4(fib, vif.vrf, pkt, Ingress::Local(vif), None, obs)
                } else if ethernet::is_multicast(&dst) {
                    Drop(DropReason::NowhereToGo)
                } else {
                    bridge(fib, vif.vrf, dst, pkt, obs)
                };
            }
            let flows = if vif.kind == VifType::Virtual { flows } else { None };
            if dst == vif.mac || dst == fib.router_mac {
                route_v4(fib, vif.vrf, pkt, Ingress::Local(vif), flows, obs)
            } else if ethernet::is_multicast(&dst) {
                Drop(DropReason::NowhereToGo)
            } else {
                bridge_ip(fib, vif.vrf, dst, pkt, flows, obs)
            }
        }
        EtherType::IPV6 => {
            if let Some(v) = neighbour_discovery(fib, vif, pkt, obs) {
                return v;
            }
            let flows = if vif.kind == VifType::Virtual { flows } else { None };
            if dst == vif.mac || dst == fib.router_mac {
                route_v6(fib, vif.vrf, pkt, Ingress::Local(vif), flows, obs)
            } else if ethernet::is_multicast(&dst) {
                Drop(DropReason::NowhereToGo)
            } else {
                bridge_ip(fib, vif.vrf, dst, pkt, flows, obs)
            }
        }
        EtherType::ARP => arp_request(fib, vif, pkt, obs),
        // No VLAN sub-interfaces are configured: a tagged frame has no vif to enter.
        EtherType::VLAN | EtherType::QINQ => Drop(DropReason::InvalidIf),
        _ => {
            if ethernet::is_multicast(&dst) {
                Drop(DropReason::InvalidProtocol)
            } else {
                bridge(fib, vif.vrf, dst, pkt, obs)
            }
        }
    }
}

/// Resolves an ECMP composite to one member by flow hash (counted in `vrf`); other
/// nexthops are returned as is.
#[inline(always)]
fn resolve<'f>(
    fib: &'f Fib,
    nh: NhIdx,
    hash: impl FnOnce() -> u32,
    vrf: u32,
    obs: &mut impl Observe,
) -> Option<&'f Nexthop> {
    match fib.nexthop(nh)? {
        Nexthop::Ecmp { members, .. } => {
            obs.count(vrf, |c| &mut c.ecmp_composites);
            let i = hash() as usize % members.len();
            let m = members[i];
            obs.member(i, m);
            fib.nexthop(m)
        }
        other => Some(other),
    }
}

/// 5-tuple hash of the IPv4 packet at `l3` (ports only for unfragmented TCP/UDP).
#[inline(always)]
fn hash_v4(ip: &ipv4::Packet<&[u8]>) -> u32 {
    let proto = ip.protocol();
    // No ports for any fragment, the first included: every fragment of a datagram takes
    // one ECMP member and one tunnel source port (so the receiving NIC's RSS keeps them on
    // one queue, where one fragment table sees them all).
    let (sport, dport) = l4_ports(proto, ip.payload(), !ip.is_fragment());
    flow_table::flow_hash_v4(u32::from(ip.src_addr()), u32::from(ip.dst_addr()), proto, sport, dport)
}

#[inline(always)]
fn hash_v6(ip: &ipv6::Packet<&[u8]>) -> u32 {
    let proto = ip.next_header();
    let (sport, dport) = l4_ports(proto, ip.payload(), true);
    flow_table::flow_hash_v6(&ip.src_addr().octets(), &ip.dst_addr().octets(), proto, sport, dport)
}

#[inline(always)]
fn l4_ports(proto: u8, l4: &[u8], first_fragment: bool) -> (u16, u16) {
    if first_fragment && (proto == IpProtocol::TCP || proto == IpProtocol::UDP) && l4.len() >= 4 {
        (u16::from_be_bytes([l4[0], l4[1]]), u16::from_be_bytes([l4[2], l4[3]]))
    } else {
        (0, 0)
    }
}

/// Routes the IPv4 packet (Ethernet frame at offset 0) in `vrf`.
#[inline(always)]
fn route_v4<B: PacketBuf, R: Observe>(
    fib: &Fib,
    vrf: u32,
    pkt: &mut B,
    ingress: Ingress<'_>,
    flows: Option<&mut FlowStage>,
    obs: &mut R,
) -> Verdict {
    let Some(table) = fib.vrf(vrf) else { return Drop(DropReason::InvalidIf) };
    let (nh_idx, hash, ttl, frame_len) = {
        let ip = match ipv4::Packet::new_checked(&pkt.data()[ethernet::HEADER_LEN..]) {
            Ok(ip) => ip,
            Err(e) => return Drop(e.drop_reason()),
        };
        let dst = u32::from(ip.dst_addr());
        let Some((nh, len)) = table.v4.lookup(dst) else {
            obs.count(vrf, |c| &mut c.no_route_drops);
            return Drop(DropReason::NoL3Route);
        };
        obs.route(vrf, decision::prefix_v4(dst, len), nh);
        let mut hash = None;
        if let Some(fs) = flows {
            let proto = ip.protocol();
            let frame = MirrorFrame { l2: None, bytes: pkt.data(), nh: Some(nh) };
            let (key_hash, res) = fs.ipv4(vrf, &ip, frame, true, obs);
            if let Err(v) = res {
                return v;
            }
            // An unfragmented TCP/UDP packet's flow key has the 5-tuple hash_v4 hashes, so its
            // (already computed) key hash gives the ECMP / tunnel source port hash.
            if (proto == IpProtocol::TCP || proto == IpProtocol::UDP) && !ip.is_fragment() {
                hash = Some(key_hash ^ flow_table::FlowKey::nh_salt(vrf));
                debug_assert_eq!(hash, Some(hash_v4(&ip)));
            }
        }
        let hash = hash.unwrap_or_else(|| hash_v4(&ip));
        (nh, hash, ip.ttl(), ethernet::HEADER_LEN + usize::from(ip.total_len()))
    };
    output_v4(fib, vrf, nh_idx, pkt, ingress, hash, ttl, frame_len, obs)
}

/// The end of IPv4 routing, once the route is known and the flow stage let the packet
/// through: padding trimmed, ECMP resolved, TTL checked and decremented (local ingress),
/// then the nexthop's rewrite. `hash` is the packet's 5-tuple hash, `ttl` its TTL and
/// `frame_len` the Ethernet header plus the IPv4 total length. Shared by [`route_v4`] and
/// the flow-hit path ([`hit`]). The decision is counted in `vrf` (the route's).
#[allow(clippy::too_many_arguments)] // always inlined: the arguments are registers
#[inline(always)]
fn output_v4<B: PacketBuf, R: Observe>(
    fib: &Fib,
    vrf: u32,
    nh_idx: NhIdx,
    pkt: &mut B,
    ingress: Ingress<'_>,
    hash: u32,
    ttl: u8,
    frame_len: usize,
    obs: &mut R,
) -> Verdict {
    // Drop Ethernet padding so it is not carried inside a tunnel.
    if pkt.data().len() > frame_len && !pkt.trim_to(frame_len) {
        return Drop(DropReason::PullFails);
    }
    let Some(nh) = resolve(fib, nh_idx, || hash, vrf, obs) else { return Drop(DropReason::InvalidNh) };
    if let Nexthop::Receive { vif, .. } = nh {
        obs.count(vrf, |c| &mut c.receives);
        return Tx(*vif);
    }
    if let Nexthop::Discard { .. } = nh {
        obs.count(vrf, |c| &mut c.discards);
        return Drop(DropReason::Discard);
    }
    if let Ingress::Local(from) = ingress {
        if ttl <= 1 {
            return icmp_error::time_exceeded_v4(fib, from, pkt);
        }
        let mut ip = ipv4::Packet::new_unchecked(&mut pkt.data_mut()[ethernet::HEADER_LEN..]);
        ip.decrement_ttl_update_checksum();
    }
    l3_output(fib, vrf, nh, pkt, EtherType::IPV4, hash, obs)
}

/// Routes the IPv6 packet (Ethernet frame at offset 0) in `vrf`.
fn route_v6<B: PacketBuf, R: Observe>(
    fib: &Fib,
    vrf: u32,
    pkt: &mut B,
    ingress: Ingress<'_>,
    flows: Option<&mut FlowStage>,
    obs: &mut R,
) -> Verdict {
    let Some(table) = fib.vrf(vrf) else { return Drop(DropReason::InvalidIf) };
    let (nh_idx, hash, hop_limit, frame_len) = {
        let ip = match ipv6::Packet::new_checked(&pkt.data()[ethernet::HEADER_LEN..]) {
            Ok(ip) => ip,
            Err(e) => return Drop(e.drop_reason()),
        };
        let dst = u128::from(ip.dst_addr());
        let Some((nh, len)) = table.v6.lookup(dst) else {
            obs.count(vrf, |c| &mut c.no_route_drops);
            return Drop(DropReason::NoL3Route);
        };
        obs.route(vrf, decision::prefix_v6(dst, len), nh);
        if let Some(fs) = flows {
            let frame = MirrorFrame { l2: None, bytes: pkt.data(), nh: Some(nh) };
            if let Err(v) = fs.ipv6(vrf, &ip, frame, true, obs) {
                return v;
            }
        }
        let len = ethernet::HEADER_LEN + ipv6::HEADER_LEN + usize::from(ip.payload_len());
        (nh, hash_v6(&ip), ip.hop_limit(), len)
    };
    if pkt.data().len() > frame_len && !pkt.trim_to(frame_len) {
        return Drop(DropReason::PullFails);
    }
    let Some(nh) = resolve(fib, nh_idx, || hash, vrf, obs) else { return Drop(DropReason::InvalidNh) };
    if let Nexthop::Receive { vif, .. } = nh {
        obs.count(vrf, |c| &mut c.receives);
        return Tx(*vif);
    }
    if let Nexthop::Discard { .. } = nh {
        obs.count(vrf, |c| &mut c.discards);
        return Drop(DropReason::Discard);
    }
    if let Ingress::Local(from) = ingress {
        if hop_limit <= 1 {
            return icmp_error::time_exceeded_v6(fib, from, pkt);
        }
        let mut ip = ipv6::Packet::new_unchecked(&mut pkt.data_mut()[ethernet::HEADER_LEN..]);
        ip.set_hop_limit(hop_limit - 1);
    }
    l3_output(fib, vrf, nh, pkt, EtherType::IPV6, hash, obs)
}

/// Sends a routed packet (Ethernet frame at offset 0, TTL already handled) to `nh`,
/// counted in `vrf`.
#[inline(always)]
fn l3_output<B: PacketBuf>(
    fib: &Fib,
    vrf: u32,
    nh: &Nexthop,
    pkt: &mut B,
    ethertype: u16,
    hash: u32,
    obs: &mut impl Observe,
) -> Verdict {
    match nh {
        Nexthop::Encap { vif, dst_mac, src_mac, .. } => {
            let mut eth = ethernet::Frame::new_unchecked(pkt.data_mut());
            eth.set_dst_addr(*dst_mac);
            eth.set_src_addr(*src_mac);
            obs.count(vrf, |c| &mut c.encaps);
            Tx(*vif)
        }
        Nexthop::Tunnel { encap: TunnelEncap::Mplsoudp, .. } => {
            // L3 MPLS: the label carries the IP packet without its Ethernet header.
            if !pkt.adj(ethernet::HEADER_LEN) {
                return Drop(DropReason::PullFails);
            }
            push_tunnel(nh, pkt, hash, vrf, obs)
        }
        Nexthop::Tunnel { encap: TunnelEncap::Vxlan, inner_dst_mac, .. } => {
            let mut eth = ethernet::Frame::new_unchecked(pkt.data_mut());
            eth.set_dst_addr(*inner_dst_mac);
            eth.set_src_addr(fib.router_mac);
            eth.set_ethertype(ethertype);
            push_tunnel(nh, pkt, hash, vrf, obs)
        }
        Nexthop::Receive { vif, .. } => {
            obs.count(vrf, |c| &mut c.receives);
            Tx(*vif)
        }
        Nexthop::Discard { .. } => {
            obs.count(vrf, |c| &mut c.discards);
            Drop(DropReason::Discard)
        }
        Nexthop::Ecmp { .. } => Drop(DropReason::InvalidNh),
    }
}

/// Bridges an IP frame from a VM (or decapsulated into a VM's VRF): policy holds for
/// bridged traffic too (as tf-vrouter's L2 flows), so the IP packet goes through the flow
/// stage in `vrf` first, then the frame is bridged unchanged.
fn bridge_ip<B: PacketBuf>(
    fib: &Fib,
    vrf: u32,
    dst: [u8; 6],
    pkt: &mut B,
    flows: Option<&mut FlowStage>,
    obs: &mut impl Observe,
) -> Verdict {
    if let Some(fs) = flows {
        // Nothing undeliverable reaches the flow stage (it would create a flow, or record a
        // first fragment's ports, for a frame that goes nowhere), as routing looks the route
        // up first.
        if fib.vrf(vrf).and_then(|t| t.bridge_lookup(&dst)).is_none() {
            obs.count(vrf, |c| &mut c.no_route_drops);
            return Drop(DropReason::NoL2Route);
        }
        if !bridges_where_it_routes(fib, vrf, &dst, pkt.data().get(ethernet::HEADER_LEN..).unwrap_or(&[])) {
            return Drop(DropReason::BridgeRouteMismatch);
        }
        let frame = MirrorFrame { l2: None, bytes: pkt.data(), nh: None };
        if let Err(v) = inner_flow(fs, vrf, frame, true, obs) {
            return v;
        }
    }
    bridge(fib, vrf, dst, pkt, obs)
}

/// Whether a bridged IP packet (`l3`) goes where its destination IP routes in `vrf`: the
/// agent decides its flow for the IP's endpoint (the local VM the address routes to, with
/// its security groups), so the MAC must lead to that same endpoint (the same nexthop, the
/// same local vif, or a tunnel to the same remote vRouter). True when the MAC has no bridge
/// entry (bridging drops it as `No L2 Route`).
#[inline(never)]
fn bridges_where_it_routes(fib: &Fib, vrf: u32, dst_mac: &[u8; 6], l3: &[u8]) -> bool {
    let Some(table) = fib.vrf(vrf) else { return true };
    let Some(by_mac) = table.bridge_lookup(dst_mac) else { return true };
    let by_ip = match l3.first().map(|b| b >> 4) {
        Some(4) if l3.len() >= 20 => table.route_v4(Ipv4Addr::new(l3[16], l3[17], l3[18], l3[19])),
        Some(6) if l3.len() >= 40 => l3[24..40].first_chunk::<16>().and_then(|d| table.route_v6(d)),
        _ => return true,
    };
    let Some(by_ip) = by_ip else { return false };
    if by_ip == by_mac {
        return true;
    }
    match (fib.nexthop(by_mac), fib.nexthop(by_ip)) {
        (Some(Nexthop::Encap { vif: a, .. }), Some(Nexthop::Encap { vif: b, .. })) => a == b,
        (Some(Nexthop::Tunnel { dst_ip: a, .. }), Some(Nexthop::Tunnel { dst_ip: b, .. })) => a == b,
        _ => false,
    }
}

/// Bridges a frame by destination MAC in `vrf` (no L2/L3 rewrite).
fn bridge<B: PacketBuf>(fib: &Fib, vrf: u32, dst: [u8; 6], pkt: &mut B, obs: &mut impl Observe) -> Verdict {
    let Some(table) = fib.vrf(vrf) else { return Drop(DropReason::InvalidIf) };
    let Some(nh_idx) = table.bridge_lookup(&dst) else {
        obs.count(vrf, |c| &mut c.no_route_drops);
        return Drop(DropReason::NoL2Route);
    };
    obs.route(vrf, RouteBy::Mac(dst), nh_idx);
    let hash = || l2_hash(pkt.data());
    let Some(nh) = resolve(fib, nh_idx, hash, vrf, obs) else { return Drop(DropReason::InvalidNh) };
    match nh {
        Nexthop::Encap { vif, .. } => {
            obs.count(vrf, |c| &mut c.l2_encaps);
            Tx(*vif)
        }
        Nexthop::Receive { vif, .. } => {
            obs.count(vrf, |c| &mut c.l2_receives);
            Tx(*vif)
        }
        Nexthop::Discard { .. } => {
            obs.count(vrf, |c| &mut c.discards);
            Drop(DropReason::Discard)
        }
        Nexthop::Tunnel { encap: TunnelEncap::Vxlan, .. } => {
            let h = l2_hash(pkt.data());
            push_tunnel(nh, pkt, h, vrf, obs)
        }
        Nexthop::Tunnel { encap: TunnelEncap::Mplsoudp, .. } => {
            // This vRouter's MPLSoUDP labels are L3: only IP payloads can cross them.
            let h = l2_hash(pkt.data());
            match ethernet::Frame::new_checked(pkt.data()).map(|f| f.ethertype()) {
                Ok(EtherType::IPV4) | Ok(EtherType::IPV6) => {}
                _ => return Drop(DropReason::InvalidProtocol),
            }
            if !pkt.adj(ethernet::HEADER_LEN) {
                return Drop(DropReason::PullFails);
            }
            push_tunnel(nh, pkt, h, vrf, obs)
        }
        Nexthop::Ecmp { .. } => Drop(DropReason::InvalidNh),
    }
}

/// Flow hash of a frame for L2 paths: the IP 5-tuple when there is one, else the MACs.
fn l2_hash(frame: &[u8]) -> u32 {
    let Ok(eth) = ethernet::Frame::new_checked(frame) else { return 0 };
    match eth.ethertype() {
        EtherType::IPV4 => ipv4::Packet::new_checked(eth.payload()).map(|ip| hash_v4(&ip)).unwrap_or(0),
        EtherType::IPV6 => ipv6::Packet::new_checked(eth.payload()).map(|ip| hash_v6(&ip)).unwrap_or(0),
        _ => {
            let (d, s) = (eth.dst_addr(), eth.src_addr());
            flow_table::flow_hash_v4(
                u32::from_be_bytes([d[0], d[1], d[2], d[3]]),
                u32::from_be_bytes([s[0], s[1], s[2], s[3]]),
                0,
                u16::from_be_bytes([d[4], d[5]]),
                u16::from_be_bytes([s[4], s[5]]),
            )
        }
    }
}

/// Pushes the outer Ethernet/IPv4/UDP and MPLS or VXLAN headers of tunnel `nh` in front of
/// the payload currently in `pkt` (an IP packet for MPLSoUDP, an Ethernet frame for VXLAN):
/// a copy of the nexthop's precomputed [`TunnelHeader`] with the lengths, the IPv4 checksum
/// and the UDP source port (flow entropy from `hash`) patched in. Counted in `vrf` once
/// the headers are written.
#[inline(always)]
fn push_tunnel<B: PacketBuf>(nh: &Nexthop, pkt: &mut B, hash: u32, vrf: u32, obs: &mut impl Observe) -> Verdict {
    let Nexthop::Tunnel { vif, header, encap, .. } = nh else {
        return Drop(DropReason::InvalidNh);
    };
    let ip_len = pkt.data().len() + header.len - TunnelHeader::IP;
    if ip_len > usize::from(u16::MAX) || !pkt.prepend(header.len) {
        return Drop(DropReason::PushFails);
    }
    let ip_len = ip_len as u16;
    let sport = flow_table::tunnel_source_port(hash);
    // The two header sizes as constants: a fixed-size copy is a few vector moves and the
    // patches below need no bounds checks (a variable length is a call to memcpy).
    let data = pkt.data_mut();
    let written = match header.len {
        MPLSOUDP_OVERHEAD => write_tunnel_header::<MPLSOUDP_OVERHEAD>(data, header, ip_len, sport),
        VXLAN_OVERHEAD => write_tunnel_header::<VXLAN_OVERHEAD>(data, header, ip_len, sport),
        _ => false,
    };
    if !written {
        return Drop(DropReason::PushFails);
    }
    match encap {
        TunnelEncap::Mplsoudp => obs.count(vrf, |c| &mut c.udp_mpls_tunnels),
        TunnelEncap::Vxlan => obs.count(vrf, |c| &mut c.vxlan_tunnels),
    }
    Tx(*vif)
}

/// Writes `N` bytes of tunnel header at the front of `data` (which has room for them after
/// the prepend): the nexthop's template with the IPv4 total length and checksum and the UDP
/// source port and length patched in. False (nothing written) if `data` is shorter.
#[inline(always)]
fn write_tunnel_header<const N: usize>(data: &mut [u8], header: &TunnelHeader, ip_len: u16, sport: u16) -> bool {
    const { assert!(N >= TunnelHeader::UDP + udp::HEADER_LEN && N <= TunnelHeader::MAX_LEN) };
    let (Some(hdr), Some(template)) = (data.first_chunk_mut::<N>(), header.bytes.first_chunk::<N>()) else {
        return false;
    };
    *hdr = *template;
    let csum = !checksum::fold(u64::from(header.ip_csum_base) + u64::from(ip_len));
    hdr[TunnelHeader::IP + 2..TunnelHeader::IP + 4].copy_from_slice(&ip_len.to_be_bytes());
    hdr[TunnelHeader::IP + 10..TunnelHeader::IP + 12].copy_from_slice(&csum.to_be_bytes());
    let u = TunnelHeader::UDP;
    hdr[u..u + 2].copy_from_slice(&sport.to_be_bytes());
    hdr[u + 4..u + 6].copy_from_slice(&(ip_len - 20).to_be_bytes());
    true
}

/// Fabric side: terminates MPLSoUDP and VXLAN addressed to the vRouter IP. Returns `None`
/// when the packet is not for the vRouter (it is then routed in the fabric VRF, `vrf`: the
/// receiving vif's, where what goes to the host is counted).
fn terminate_tunnel<B: PacketBuf>(
    fib: &Fib,
    vrf: u32,
    pkt: &mut B,
    flows: Option<&mut FlowStage>,
    obs: &mut impl Observe,
) -> Option<Verdict> {
    let (proto, l4_off, dport, outer_src) = {
        let ip = match ipv4::Packet::new_checked(&pkt.data()[ethernet::HEADER_LEN..]) {
            Ok(ip) => ip,
            Err(e) => return Some(Drop(e.drop_reason())),
        };
        if ip.dst_addr() != fib.router_ip {
            return None;
        }
        if ip.more_frags() || ip.frag_offset() != 0 {
            // Tunnel packets are never fragmented by vRouters (DF is set); no reassembly.
            return Some(Drop(DropReason::FragmentError));
        }
        let l4_off = ethernet::HEADER_LEN + ip.header_len();
        let dport = if ip.protocol() == IpProtocol::UDP {
            match udp::Packet::new_checked(ip.payload()) {
                Ok(u) => u.dst_port(),
                Err(e) => return Some(Drop(e.drop_reason())),
            }
        } else {
            0
        };
        (ip.protocol(), l4_off, dport, ip.src_addr())
    };
    if proto == IpProtocol::UDP && dport == MPLSOUDP_PORT {
        return Some(decap_mpls(fib, vrf, pkt, l4_off + udp::HEADER_LEN, outer_src, flows, obs));
    }
    if proto == IpProtocol::UDP && dport == VXLAN_PORT {
        return Some(decap_vxlan(fib, pkt, l4_off + udp::HEADER_LEN, outer_src, flows, obs));
    }
    // Anything else addressed to the vRouter goes to the host interface.
    Some(match fib.host_vif {
        Some(h) => {
            obs.count(vrf, |c| &mut c.receives);
            Tx(h)
        }
        None => Drop(DropReason::NowhereToGo),
    })
}

/// Decapsulates MPLSoUDP (the MPLS header at `off`) from `outer_src`, received in
/// `fabric_vrf`. A packet delivered to its VM counts in that VM's VRF; one the label
/// discards, in `fabric_vrf`.
fn decap_mpls<B: PacketBuf>(
    fib: &Fib,
    fabric_vrf: u32,
    pkt: &mut B,
    mut off: usize,
    outer_src: Ipv4Addr,
    flows: Option<&mut FlowStage>,
    obs: &mut impl Observe,
) -> Verdict {
    let label = {
        let Some(mut bytes) = pkt.data().get(off..) else { return Drop(DropReason::PullFails) };
        let mut m = match mpls::Packet::new_checked(bytes) {
            Ok(m) => m,
            Err(e) => return Drop(e.drop_reason()),
        };
        if !m.bottom_of_stack() {
            // Label stacks are not used between vRouters, except for the trace mark of a
            // traced packet above the service label: skipped here (and so stripped with the
            // outer headers), read by the tracing hooks.
            if crate::trace::mark::read_mpls_mark(bytes).is_none() {
                return Drop(DropReason::InvalidLabel);
            }
            off += crate::trace::mark::MPLS_MARK_LEN;
            bytes = &bytes[crate::trace::mark::MPLS_MARK_LEN..];
            m = match mpls::Packet::new_checked(bytes) {
                Ok(m) if m.bottom_of_stack() => m,
                Ok(_) => return Drop(DropReason::InvalidLabel),
                Err(e) => return Drop(e.drop_reason()),
            };
        }
        m.label()
    };
    let Some(&nh_idx) = fib.labels.get(&label) else { return Drop(DropReason::InvalidLabel) };
    obs.route(0, RouteBy::Label(label), nh_idx);
    let inner = off + mpls::HEADER_LEN;
    let (ethertype, hash) = {
        let bytes = &pkt.data()[inner.min(pkt.data().len())..];
        match bytes.first().map(|b| b >> 4) {
            Some(4) => match ipv4::Packet::new_checked(bytes) {
                Ok(ip) => (EtherType::IPV4, hash_v4(&ip)),
                Err(e) => return Drop(e.drop_reason()),
            },
            Some(6) => match ipv6::Packet::new_checked(bytes) {
                Ok(ip) => (EtherType::IPV6, hash_v6(&ip)),
                Err(e) => return Drop(e.drop_reason()),
            },
            Some(_) => return Drop(DropReason::InvalidProtocol),
            None => return Drop(DropReason::PullFails),
        }
    };
    let Some(nh) = resolve(fib, nh_idx, || hash, fabric_vrf, obs) else { return Drop(DropReason::InvalidNh) };
    match nh {
        Nexthop::Encap { vif, dst_mac, src_mac, .. } => {
            // The inner source must route back to the sending vRouter in the VRF of the VM
            // the label delivers to (which is also the flow's VRF).
            let Some(out) = fib.vif(*vif) else { return Drop(DropReason::InvalidIf) };
            if let Err(r) = source::check_tunnel(fib, out.vrf, &pkt.data()[inner..], outer_src) {
                return Drop(r);
            }
            if let Some(fs) = flows {
                let mut l2 = [0u8; ethernet::HEADER_LEN];
                l2[..6].copy_from_slice(dst_mac);
                l2[6..12].copy_from_slice(src_mac);
                l2[12..].copy_from_slice(&ethertype.to_be_bytes());
                let frame = MirrorFrame { l2: Some(l2), bytes: &pkt.data()[inner..], nh: Some(nh_idx) };
                if let Err(v) = inner_flow(fs, out.vrf, frame, false, obs) {
                    return v;
                }
            }
            if !pkt.adj(inner - ethernet::HEADER_LEN) {
                return Drop(DropReason::PullFails);
            }
            let mut eth = ethernet::Frame::new_unchecked(pkt.data_mut());
            eth.set_dst_addr(*dst_mac);
            eth.set_src_addr(*src_mac);
            eth.set_ethertype(ethertype);
            obs.count(out.vrf, |c| &mut c.mplsoudp_decaps);
            obs.count(out.vrf, |c| &mut c.encaps);
            Tx(*vif)
        }
        Nexthop::Discard { .. } => {
            obs.count(fabric_vrf, |c| &mut c.discards);
            Drop(DropReason::Discard)
        }
        _ => Drop(DropReason::InvalidNh),
    }
}

/// Decapsulates VXLAN (the VXLAN header at `off`) from `outer_src`.
fn decap_vxlan<B: PacketBuf, R: Observe>(
    fib: &Fib,
    pkt: &mut B,
    off: usize,
    outer_src: Ipv4Addr,
    flows: Option<&mut FlowStage>,
    obs: &mut R,
) -> Verdict {
    let vni = {
        let Some(bytes) = pkt.data().get(off..) else { return Drop(DropReason::PullFails) };
        match vxlan::Packet::new_checked(bytes) {
            Ok(v) => v.vni(),
            Err(e) => return Drop(e.drop_reason()),
        }
    };
    let Some(&vrf) = fib.vnis.get(&vni) else { return Drop(DropReason::InvalidVnid) };
    let inner = off + vxlan::HEADER_LEN;
    let (dst, ethertype) = match ethernet::Frame::new_checked(&pkt.data()[inner.min(pkt.data().len())..]) {
        Ok(f) => (f.dst_addr(), f.ethertype()),
        Err(e) => return Drop(e.drop_reason()),
    };
    let routed = dst == fib.router_mac;
    // A routed inner IP packet must come from the tunnel endpoint its source routes to.
    if routed && (ethertype == EtherType::IPV4 || ethertype == EtherType::IPV6) {
        let l3 = pkt.data().get(inner + ethernet::HEADER_LEN..).unwrap_or(&[]);
        if let Err(r) = source::check_tunnel(fib, vrf, l3, outer_src) {
            return Drop(r);
        }
    }
    // The flow stage runs before the outer headers are removed: a held packet must be
    // re-run from the start when it is released. Bridged IP frames have flows too.
    let ip = ethertype == EtherType::IPV4 || ethertype == EtherType::IPV6;
    if let (true, Some(fs)) = (routed || ip, flows) {
        if !routed
            && !bridges_where_it_routes(fib, vrf, &dst, pkt.data().get(inner + ethernet::HEADER_LEN..).unwrap_or(&[]))
        {
            return Drop(DropReason::BridgeRouteMismatch);
        }
        let frame = MirrorFrame { l2: None, bytes: &pkt.data()[inner..], nh: None };
        if let Err(v) = inner_flow(fs, vrf, frame, false, obs) {
            return v;
        }
    }
    if !pkt.adj(inner) {
        return Drop(DropReason::PullFails);
    }
    let v = if routed {
        match ethertype {
            EtherType::IPV4 => route_v4(fib, vrf, pkt, Ingress::Decap, None, obs),
            EtherType::IPV6 => route_v6(fib, vrf, pkt, Ingress::Decap, None, obs),
            _ => Drop(DropReason::InvalidProtocol),
        }
    } else {
        bridge(fib, vrf, dst, pkt, obs)
    };
    if let Tx(_) = v {
        obs.count(vrf, |c| &mut c.vxlan_decaps);
    }
    v
}

/// Flow stage for an IP packet decapsulated from the fabric, or bridged from a VM
/// (`from_vm`): `frame` is the packet as a mirror would copy it (an Ethernet frame, or an
/// IP packet with the L2 header to give it).
fn inner_flow<R: Observe>(
    fs: &mut FlowStage,
    vrf: u32,
    frame: MirrorFrame<'_>,
    from_vm: bool,
    obs: &mut R,
) -> Result<(), Verdict> {
    let l3 = if frame.l2.is_some() { frame.bytes } else { frame.bytes.get(ethernet::HEADER_LEN..).unwrap_or(&[]) };
    match l3.first().map(|b| b >> 4) {
        Some(4) => {
            let ip = ipv4::Packet::new_checked(l3).map_err(|e| Drop(e.drop_reason()))?;
            fs.ipv4(vrf, &ip, frame, from_vm, obs).1
        }
        Some(6) => {
            let ip = ipv6::Packet::new_checked(l3).map_err(|e| Drop(e.drop_reason()))?;
            fs.ipv6(vrf, &ip, frame, from_vm, obs)
        }
        _ => Err(Drop(DropReason::InvalidProtocol)),
    }
}

/// ARP: proxy answers for VMs, the vRouter IP on the fabric; everything else is counted.
fn arp_request<B: PacketBuf>(fib: &Fib, vif: &Vif, pkt: &mut B, obs: &mut impl Observe) -> Verdict {
    let (op, sha, spa, tpa) = {
        let Some(bytes) = pkt.data().get(ethernet::HEADER_LEN..) else {
            return Drop(DropReason::PullFails);
        };
        match arp::Packet::new_checked(bytes) {
            Ok(a) => (a.operation(), a.sender_hardware_addr(), a.sender_protocol_addr(), a.target_protocol_addr()),
            Err(packet::Error::Truncated) => return Drop(DropReason::PullFails),
            Err(_) => return Drop(DropReason::InvalidArp),
        }
    };
    if op != arp::OP_REQUEST {
        // Replies and gratuitous ARPs go to the agent in tf-vrouter (MAC/IP learning); this
        // vRouter has no agent interface to trap them to.
        return Drop(DropReason::TrapNoIf);
    }
    let answer = match vif.kind {
        VifType::Virtual => {
            if !vif.proxy_arp {
                return Drop(DropReason::NowhereToGo);
            }
            if tpa == spa || spa.is_unspecified() {
                // Gratuitous ARP / address probe: nothing to answer.
                return Drop(DropReason::TrapNoIf);
            }
            match fib.vrf(vif.vrf).and_then(|v| v.route_v4(tpa)) {
                Some(_) => true,
                None => {
                    obs.count(vif.vrf, |c| &mut c.no_route_drops);
                    return Drop(DropReason::NoL3Route);
                }
            }
        }
        VifType::Fabric | VifType::Host => tpa == fib.router_ip || Some(tpa) == vif.ip,
    };
    if !answer {
        return Drop(DropReason::NowhereToGo);
    }
    let data = pkt.data_mut();
    {
        let mut eth = ethernet::Frame::new_unchecked(&mut data[..]);
        eth.set_dst_addr(sha);
        eth.set_src_addr(vif.mac);
    }
    let mut a = arp::Packet::new_unchecked(&mut data[ethernet::HEADER_LEN..]);
    a.set_operation(arp::OP_REPLY);
    a.set_sender_hardware_addr(vif.mac);
    a.set_sender_protocol_addr(tpa);
    a.set_target_hardware_addr(sha);
    a.set_target_protocol_addr(spa);
    obs.count(vif.vrf, |c| &mut c.resolves);
    Tx(vif.id)
}

/// Length of a Neighbor Advertisement with a target link-layer address option.
const NA_LEN: usize = 24 + 8;

/// IPv6 neighbour discovery from VMs: answers solicitations for routed addresses (proxy ND).
/// Returns `None` for packets that are not neighbour discovery.
fn neighbour_discovery<B: PacketBuf>(fib: &Fib, vif: &Vif, pkt: &mut B, obs: &mut impl Observe) -> Option<Verdict> {
    let (src, target, requester) = {
        let data = pkt.data();
        let ip = match ipv6::Packet::new_checked(&data[ethernet::HEADER_LEN..]) {
            Ok(ip) => ip,
            Err(e) => return Some(Drop(e.drop_reason())),
        };
        if ip.next_header() != IpProtocol::ICMPV6 {
            return None;
        }
        let icmp = match icmpv6::Packet::new_checked(ip.payload()) {
            Ok(i) => i,
            Err(e) => return Some(Drop(e.drop_reason())),
        };
        match icmp.msg_type() {
            icmpv6::TYPE_NEIGHBOR_SOLICIT => {}
            icmpv6::TYPE_ROUTER_SOLICIT
            | icmpv6::TYPE_ROUTER_ADVERT
            | icmpv6::TYPE_NEIGHBOR_ADVERT
            | icmpv6::TYPE_REDIRECT => return Some(Drop(DropReason::TrapNoIf)),
            _ => return None,
        }
        let Some(target) = icmp.target_addr() else {
            return Some(Drop(DropReason::PullFails));
        };
        let eth = ethernet::Frame::new_unchecked(data);
        (ip.src_addr(), target, eth.src_addr())
    };
    if vif.kind != VifType::Virtual || !vif.proxy_arp {
        return Some(Drop(DropReason::NowhereToGo));
    }
    if src.is_unspecified() || src == target {
        // Duplicate address detection: stay silent so the VM keeps its address.
        return Some(Drop(DropReason::TrapNoIf));
    }
    if fib.vrf(vif.vrf).and_then(|v| v.route_v6(&target.octets())).is_none() {
        obs.count(vif.vrf, |c| &mut c.no_route_drops);
        return Some(Drop(DropReason::NoL3Route));
    }
    let want = ethernet::HEADER_LEN + ipv6::HEADER_LEN + NA_LEN;
    let have = pkt.data().len();
    let sized = if have < want { pkt.append(want - have) } else { pkt.trim_to(want) };
    if !sized {
        return Some(Drop(DropReason::PushFails));
    }
    write_neighbor_advert(pkt.data_mut(), vif.mac, requester, target, src);
    obs.count(vif.vrf, |c| &mut c.resolves);
    Some(Tx(vif.id))
}

/// Writes a solicited Neighbor Advertisement (router, solicited, override) for `target`
/// with our MAC as target link-layer address. `buf` is exactly the frame length.
fn write_neighbor_advert(buf: &mut [u8], our_mac: [u8; 6], to_mac: [u8; 6], target: Ipv6Addr, to: Ipv6Addr) {
    {
        let mut eth = ethernet::Frame::new_unchecked(&mut buf[..]);
        eth.set_dst_addr(to_mac);
        eth.set_src_addr(our_mac);
        eth.set_ethertype(EtherType::IPV6);
    }
    let l3 = &mut buf[ethernet::HEADER_LEN..];
    {
        let mut ip = ipv6::Packet::new_unchecked(&mut l3[..]);
        ip.set_version(6);
        ip.set_traffic_class(0);
        ip.set_flow_label(0);
        ip.set_payload_len(NA_LEN as u16);
        ip.set_next_header(IpProtocol::ICMPV6);
        ip.set_hop_limit(255);
        ip.set_src_addr(target);
        ip.set_dst_addr(to);
    }
    let body = &mut l3[ipv6::HEADER_LEN..];
    body.fill(0);
    {
        let mut na = icmpv6::Packet::new_unchecked(&mut body[..]);
        na.set_msg_type(icmpv6::TYPE_NEIGHBOR_ADVERT);
        na.set_msg_code(0);
        na.set_na_flags(true, true, true);
        // The body is NA_LEN bytes, so the 16-byte target field fits.
        let _ = na.set_target_addr(target);
    }
    // Target link-layer address option: type 2, length 1 (8 bytes).
    body[24] = 2;
    body[25] = 1;
    body[26..32].copy_from_slice(&our_mac);
    let mut na = icmpv6::Packet::new_unchecked(&mut body[..]);
    na.fill_checksum(target, to);
}

#[cfg(test)]
mod tests;
