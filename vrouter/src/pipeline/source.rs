//! Source (anti-spoofing) checks.
//!
//! **VM vifs** (virtual, `source_check` on): a VM may only send as itself.
//! - Source MAC: when the vif has a `vm_mac`, the frame's source MAC must be it or one of
//!   the allowed address pairs' MACs, else [`DropReason::InvalidSourceMac`]. Every frame
//!   (ARP included) is checked; without `vm_mac` the MAC is not checked.
//! - Source IP of IPv4/IPv6 frames (routed or bridged): the vif's `ip`/`ip6`, inside an
//!   allowed address pair's prefix, or routed in the vif's VRF to a nexthop that delivers
//!   to this very vif (reverse path: an encap nexthop on this vif, or an ECMP with such a
//!   member), else [`DropReason::InvalidSource`] (tf-vrouter's "Reverse Path Failures").
//!   The checks run in that order, so the common case is one compare, the pairs a short
//!   scan, and the route lookup only when both fail.
//!
//! Exempt: IPv6 sources that are unspecified (duplicate address detection) or link-local
//! (neighbour discovery); IPv4 frames to a multicast/broadcast MAC (DHCP discovery from
//! 0.0.0.0: this vRouter drops such frames as "Nowhere to go" anyway); ARP and other
//! non-IP frames are checked by source MAC only.
//!
//! **Fabric**: a packet decapsulated and routed into a VRF (MPLSoUDP, or VXLAN addressed to
//! the vRouter MAC) must come from the tunnel endpoint its inner source routes to: the inner
//! source's route in that VRF is a tunnel nexthop (or an ECMP with a tunnel member) whose
//! remote IP is the outer IPv4 source. No route is a failure. VXLAN frames bridged by MAC
//! are not checked (an L2 VN need not have routes to its remote hosts).
//!
//! Nothing here allocates; the byte offsets are read with checked slicing, so a short frame
//! is a drop (`Pull Fails`), never a panic.

use crate::drop_reason::DropReason;
use crate::fib::{Fib, Nexthop, NhIdx, Vif};
use crate::packet::{ethernet, EtherType};
use std::net::Ipv4Addr;

/// Offset of the IPv4 source address in an Ethernet frame.
const V4_SRC: usize = ethernet::HEADER_LEN + 12;
/// Offset of the IPv6 source address in an Ethernet frame.
const V6_SRC: usize = ethernet::HEADER_LEN + 8;

/// Checks a frame received on VM vif `vif` (the caller tests `vif.source_check` first).
/// `frame` starts with a complete Ethernet header.
#[inline(always)]
pub fn check_vm(fib: &Fib, vif: &Vif, frame: &[u8]) -> Result<(), DropReason> {
    let Some(hdr) = frame.first_chunk::<{ ethernet::HEADER_LEN }>() else {
        return Err(DropReason::PullFails);
    };
    let src_mac: &[u8; 6] = hdr[6..12].try_into().unwrap_or(&[0; 6]);
    if !mac_allowed(vif, src_mac) {
        return Err(DropReason::InvalidSourceMac);
    }
    match u16::from_be_bytes([hdr[12], hdr[13]]) {
        EtherType::IPV4 => {
            if ethernet::is_multicast(hdr[..6].try_into().unwrap_or(&[0; 6])) {
                return Ok(());
            }
            let Some(src) = frame.get(V4_SRC..V4_SRC + 4) else {
                return Err(DropReason::PullFails);
            };
            let src = Ipv4Addr::new(src[0], src[1], src[2], src[3]);
            if v4_allowed(fib, vif, src) {
                Ok(())
            } else {
                Err(DropReason::InvalidSource)
            }
        }
        EtherType::IPV6 => {
            let Some(src) = frame.get(V6_SRC..V6_SRC + 16).and_then(|s| <[u8; 16]>::try_from(s).ok()) else {
                return Err(DropReason::PullFails);
            };
            if v6_allowed(fib, vif, &src) {
                Ok(())
            } else {
                Err(DropReason::InvalidSource)
            }
        }
        _ => Ok(()),
    }
}

/// Whether `src` may be the source MAC of a frame from `vif`'s VM.
#[inline(always)]
pub fn mac_allowed(vif: &Vif, src: &[u8; 6]) -> bool {
    match vif.vm_mac {
        None => true,
        Some(m) if m == *src => true,
        Some(_) => vif.pair_macs.contains(src),
    }
}

/// Whether `src` may be the IPv4 source of a packet from `vif`'s VM: its address, an
/// allowed pair, or a route back to this vif (the route lookup out of line: it is the
/// rare case).
#[inline(always)]
pub fn v4_allowed(fib: &Fib, vif: &Vif, src: Ipv4Addr) -> bool {
    vif.ip == Some(src) || vif.pairs_v4.iter().any(|p| p.contains(u32::from(src))) || v4_routed_back(fib, vif, src)
}

#[inline(never)]
fn v4_routed_back(fib: &Fib, vif: &Vif, src: Ipv4Addr) -> bool {
    let nh = fib.vrf(vif.vrf).and_then(|t| t.route_v4(src));
    nh.is_some_and(|nh| delivers_to(fib, nh, vif.id))
}

/// Whether `src` may be the IPv6 source of a packet from `vif`'s VM (unspecified and
/// link-local sources always may).
#[inline]
pub fn v6_allowed(fib: &Fib, vif: &Vif, src: &[u8; 16]) -> bool {
    let a = u128::from_be_bytes(*src);
    if a == 0 || a >> 118 == 0xfe80 >> 6 {
        return true;
    }
    if vif.ip6.is_some_and(|ip| u128::from(ip) == a) || vif.pairs_v6.iter().any(|p| p.contains(a)) {
        return true;
    }
    let nh = fib.vrf(vif.vrf).and_then(|t| t.route_v6(src));
    nh.is_some_and(|nh| delivers_to(fib, nh, vif.id))
}

/// Whether nexthop `nh` delivers to vif `vif`: an encap nexthop on it, or an ECMP with
/// such a member.
fn delivers_to(fib: &Fib, nh: NhIdx, vif: u16) -> bool {
    let on_vif = |n: &Nexthop| matches!(n, Nexthop::Encap { vif: v, .. } if *v == vif);
    match fib.nexthop(nh) {
        Some(Nexthop::Ecmp { members, .. }) => members.iter().any(|&m| fib.nexthop(m).is_some_and(on_vif)),
        Some(n) => on_vif(n),
        None => false,
    }
}

/// Fabric: checks the inner IP packet `l3` (IPv4 or IPv6, at least its fixed header, as
/// the caller has parsed it) decapsulated into `vrf` from outer source `outer_src`.
#[inline]
pub fn check_tunnel(fib: &Fib, vrf: u32, l3: &[u8], outer_src: Ipv4Addr) -> Result<(), DropReason> {
    let Some(table) = fib.vrf(vrf) else {
        return Err(DropReason::InvalidSource);
    };
    let nh = match l3.first().map(|b| b >> 4) {
        Some(4) => {
            let Some(s) = l3.get(12..16) else {
                return Err(DropReason::PullFails);
            };
            table.route_v4(Ipv4Addr::new(s[0], s[1], s[2], s[3]))
        }
        Some(6) => {
            let Some(s) = l3.get(8..24).and_then(|s| <[u8; 16]>::try_from(s).ok()) else {
                return Err(DropReason::PullFails);
            };
            table.route_v6(&s)
        }
        _ => return Err(DropReason::InvalidProtocol),
    };
    let from_endpoint = |n: &Nexthop| matches!(n, Nexthop::Tunnel { dst_ip, .. } if *dst_ip == outer_src);
    let ok = match nh.and_then(|nh| fib.nexthop(nh)) {
        Some(Nexthop::Ecmp { members, .. }) => members.iter().any(|&m| fib.nexthop(m).is_some_and(from_endpoint)),
        Some(n) => from_endpoint(n),
        None => false,
    };
    if ok {
        Ok(())
    } else {
        Err(DropReason::InvalidSource)
    }
}
