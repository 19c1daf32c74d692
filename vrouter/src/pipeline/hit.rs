//! The flow-hit path: an IPv4 packet from a VM whose flow the burst pre-pass found, routed
//! by the vif's VRF, with a flow that forwards (or drops) and is neither held nor mirrored.
//! That is nearly every packet of an established flow, and the one case the data plane is
//! measured on.
//!
//! [`forward_v4`] gives the same verdict, the same rewritten bytes and the same flow
//! counters as [`super::process`] with a [`super::FlowStage`] would for such a packet (a
//! property test holds it to that), without the general path's dispatch: no flow stage
//! context to build, no mirror frame, no key to look up again, one header view. Every other
//! packet (IPv6, bridged, held, mirrored, HOLD action, a fragment or ICMP error, flow not
//! found in the pre-pass, ...)
//! is left untouched and takes the general path. It decides before it changes anything:
//! `None` means nothing was counted or written. A packet that fails the vif's source check
//! ([`super::source`]) is dropped here as the general path would drop it, uncounted.

use super::{output_v4, Ingress, PacketBuf, Verdict, VrfCount};
use crate::drop_reason::DropReason;
use crate::fib::{Fib, Vif, Vrf};
use crate::packet::{ethernet, ipv4, EtherType, IpProtocol};
use flow_table::{Action, FlowKey, FlowTable};

/// What stays the same for a whole burst on the hit path.
#[derive(Clone, Copy)]
pub struct HitCtx<'a> {
    /// The forwarding state (nexthops, vifs) the burst is forwarded with.
    pub fib: &'a Fib,
    /// The receiving vif (a VM vif: flows are only kept for those).
    pub vif: &'a Vif,
    /// The vif's VRF.
    pub vrf: &'a Vrf,
    /// The shared flow table (the flow's action, counters and last-seen stamp).
    pub table: &'a FlowTable,
    /// This lcore's counter slot in the table.
    pub lcore: usize,
    /// Coarse time for the flow's last-seen stamp (ms).
    pub now: u64,
}

/// Forwards one packet of flow `idx` (found by the burst lookup for this packet's key;
/// `key_hash` is that key's hash) when it takes the hit path, else returns `None` having
/// changed nothing. `held`: whether this lcore holds packets of the flow. The decision is
/// counted in `vc` (in the vif's VRF), as the general path counts it.
#[inline(always)]
pub fn forward_v4<B: PacketBuf>(
    cx: &HitCtx<'_>,
    pkt: &mut B,
    idx: u32,
    key_hash: u32,
    held: impl FnOnce(u32) -> bool,
    vc: &mut impl VrfCount,
) -> Option<Verdict> {
    let (nh, ttl, ip_len, tcp, hash) = {
        let eth = ethernet::Frame::new_checked(pkt.data()).ok()?;
        let dst = eth.dst_addr();
        if eth.ethertype() != EtherType::IPV4 || (dst != cx.vif.mac && dst != cx.fib.router_mac) {
            return None;
        }
        let ip = ipv4::Packet::new_checked(eth.payload()).ok()?;
        // Anti-spoofing, as at the start of the general path (and before anything is
        // counted): the MAC compare only with a `vm_mac`, then the source IP against the
        // vif's address (one compare in the common case).
        if cx.vif.source_check {
            if !super::source::mac_allowed(cx.vif, &eth.src_addr()) {
                return Some(Verdict::Drop(DropReason::InvalidSourceMac));
            }
            if !super::source::v4_allowed(cx.fib, cx.vif, ip.src_addr()) {
                return Some(Verdict::Drop(DropReason::InvalidSource));
            }
        }
        let proto = ip.protocol();
        // Fragments and ICMP errors are keyed by the fragment table and the quoted packet,
        // not by the pre-pass key (which does not key them): never the hit path's.
        if super::flow::needs_special_key(false, proto, ip.is_fragment(), ip.payload()) {
            return None;
        }
        let nh = cx.vrf.route_v4(ip.dst_addr())?;
        let tcp = super::flow::tcp_bits(proto, ip.payload());
        // An unfragmented TCP/UDP packet's key hashes the 5-tuple the ECMP and tunnel hashes
        // take, so the key's hash gives it (as in the general path).
        let hash = if proto == IpProtocol::TCP || proto == IpProtocol::UDP {
            key_hash ^ FlowKey::nh_salt(cx.vif.vrf)
        } else {
            super::hash_v4(&ip)
        };
        (nh, ip.ttl(), ip.total_len(), tcp, hash)
    };
    let entry = cx.table.entry(idx)?;
    // Held flows keep holding (release order), mirrored flows are copied, HOLD and NAT are
    // the general path's.
    if entry.mirror() != flow_table::NO_MIRROR || held(idx) {
        return None;
    }
    let action = entry.action();
    if action != Action::Forward && action != Action::Drop {
        return None;
    }
    cx.table.account_as(cx.lcore, idx, u32::from(ip_len), cx.now);
    if tcp != 0 {
        cx.table.set_tcp_flags(idx, tcp);
    }
    if action == Action::Drop {
        return Some(Verdict::Drop(DropReason::FlowActionDrop));
    }
    let frame_len = ethernet::HEADER_LEN + usize::from(ip_len);
    Some(output_v4(
        cx.fib,
        cx.vif.vrf,
        nh,
        pkt,
        Ingress::Local(cx.vif),
        hash,
        ttl,
        frame_len,
        &mut super::Both(vc, &mut ()),
    ))
}
