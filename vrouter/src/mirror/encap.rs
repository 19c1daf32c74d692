//! Encapsulation of mirror copies: the analyzer's nexthop, the outer header template of an
//! entry, the per-copy patching and the metadata TLVs of the Juniper header.
//!
//! A copy sent to an analyzer is one of:
//!
//! * **Juniper header**: `Ethernet | IPv4 (router IP -> analyzer) | UDP (-> analyzer port) |
//!   metadata TLVs | original frame`;
//! * **VXLAN** (no Juniper header): `Ethernet | IPv4 | UDP (-> 4789) | VXLAN (entry VNI) |
//!   original frame`.
//!
//! The template holds every constant byte; per copy the IPv4 total length and checksum
//! (from the precomputed sum of the constant words), the UDP source port (entropy from the
//! flow or vif) and the UDP length are patched, as for tunnel nexthops.

use std::net::Ipv4Addr;

use crate::config::{TunnelEncap, VifType};
use crate::fib::{Fib, Nexthop, TunnelHeader, TUNNEL_TTL};
use crate::packet::{checksum, ethernet, ipv4, udp, EtherType, IpProtocol};
use vrouter_abi::mirror::metadata::{TLV_CAPTURE_HOST, TLV_DEST_VN, TLV_END, TLV_FLAGS, TLV_SOURCE_VN};
use vrouter_abi::mirror::MirrorEntry;

/// Moved to the read-side crate (the `vif` tool prints it); re-exported for the copy path.
pub use vrouter_abi::mirror::metadata::interface_metadata;

use super::region::HDR_MAX;

/// Outer header template of an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Template {
    /// The outer headers; only `hdr[..len]` is used.
    pub hdr: [u8; HDR_MAX],
    /// Length of the outer headers: [`JUNIPER_HDR_LEN`], or the VXLAN tunnel header's length.
    pub len: usize,
    /// Checksum sum of the constant IPv4 header words; [`finish`] adds the total length per copy.
    pub ip_csum_base: u32,
}

/// The underlay next hop towards `analyzer`: the route in the fabric VRF must resolve to an
/// L2 rewrite on a fabric vif (ECMP: the first member that does). Returns the vif and the
/// destination and source MACs, or `None` (unreachable analyzer).
pub fn resolve_nexthop(fib: &Fib, analyzer: Ipv4Addr) -> Option<(u16, [u8; 6], [u8; 6])> {
    let fabric = fib.vif_list().find(|v| v.kind == VifType::Fabric)?;
    let nh = fib.vrf(fabric.vrf)?.route_v4(analyzer)?;
    let on_fabric = |nh: &Nexthop| match nh {
        Nexthop::Encap { vif, dst_mac, src_mac, .. } if fib.vif(*vif).is_some_and(|v| v.kind == VifType::Fabric) => {
            Some((*vif, *dst_mac, *src_mac))
        }
        _ => None,
    };
    match fib.nexthop(nh)? {
        Nexthop::Ecmp { members, .. } => members.iter().find_map(|&m| fib.nexthop(m).and_then(on_fabric)),
        other => on_fabric(other),
    }
}

/// Length of the Juniper-header template: Ethernet + IPv4 + UDP.
pub const JUNIPER_HDR_LEN: usize = TunnelHeader::UDP + udp::HEADER_LEN;

/// The outer headers of `entry` sent from `router_ip` through a next hop with these MACs.
pub fn template(entry: &MirrorEntry, router_ip: Ipv4Addr, dst_mac: [u8; 6], src_mac: [u8; 6]) -> Template {
    let mut hdr = [0u8; HDR_MAX];
    if !entry.juniper_header {
        let t = TunnelHeader::new(
            TunnelEncap::Vxlan,
            dst_mac,
            src_mac,
            router_ip,
            entry.analyzer_ip,
            entry.vni.unwrap_or(0),
        );
        hdr[..t.len].copy_from_slice(&t.bytes[..t.len]);
        return Template { hdr, len: t.len, ip_csum_base: t.ip_csum_base };
    }
    {
        let mut eth = ethernet::Frame::new_unchecked(&mut hdr[..]);
        eth.set_dst_addr(dst_mac);
        eth.set_src_addr(src_mac);
        eth.set_ethertype(EtherType::IPV4);
    }
    {
        let mut ip = ipv4::Packet::new_unchecked(&mut hdr[TunnelHeader::IP..TunnelHeader::UDP]);
        ip.set_version(4);
        ip.set_header_len(20);
        ip.set_ttl(TUNNEL_TTL);
        ip.set_protocol(IpProtocol::UDP);
        ip.set_src_addr(router_ip);
        ip.set_dst_addr(entry.analyzer_ip);
    }
    let ip_csum_base = u32::from(checksum::data(&hdr[TunnelHeader::IP..TunnelHeader::UDP]));
    udp::Packet::new_unchecked(&mut hdr[TunnelHeader::UDP..JUNIPER_HDR_LEN]).set_dst_port(entry.udp_port);
    Template { hdr, len: JUNIPER_HDR_LEN, ip_csum_base }
}

/// Patches the outer headers at the start of `copy` (the whole encapsulated copy): IPv4
/// total length and checksum, UDP source port (from `entropy`) and length. False if the
/// copy is too long for one IPv4 datagram.
#[inline]
pub fn finish(copy: &mut [u8], ip_csum_base: u32, entropy: u32) -> bool {
    let Some(ip_len) = copy.len().checked_sub(TunnelHeader::IP) else { return false };
    let Ok(ip_len) = u16::try_from(ip_len) else { return false };
    if copy.len() < JUNIPER_HDR_LEN {
        return false;
    }
    let csum = !checksum::fold(u64::from(ip_csum_base) + u64::from(ip_len));
    let ip = TunnelHeader::IP;
    copy[ip + 2..ip + 4].copy_from_slice(&ip_len.to_be_bytes());
    copy[ip + 10..ip + 12].copy_from_slice(&csum.to_be_bytes());
    let u = TunnelHeader::UDP;
    copy[u..u + 2].copy_from_slice(&flow_table::tunnel_source_port(entropy).to_be_bytes());
    copy[u + 4..u + 6].copy_from_slice(&(ip_len - 20).to_be_bytes());
    true
}

/// Longest VN name put in the metadata (both fit with the fixed TLVs in 255 bytes).
pub const MAX_MD_VN: usize = 118;

/// Metadata of a flow (ACL) mirror copy: CAPTURE_HOST, FLAGS, SOURCE_VN, DEST_VN, END;
/// an empty VN is left out. Returns the bytes written to `out` (at most 255).
pub fn flow_metadata(out: &mut [u8; 255], router_ip: Ipv4Addr, flags: u32, src_vn: &[u8], dst_vn: &[u8]) -> usize {
    let mut n = 0;
    let mut put = |t: u8, v: &[u8]| {
        out[n] = t;
        out[n + 1] = v.len() as u8;
        out[n + 2..n + 2 + v.len()].copy_from_slice(v);
        n += 2 + v.len();
    };
    put(TLV_CAPTURE_HOST, &router_ip.octets());
    put(TLV_FLAGS, &flags.to_be_bytes());
    if !src_vn.is_empty() {
        put(TLV_SOURCE_VN, &src_vn[..src_vn.len().min(MAX_MD_VN)]);
    }
    if !dst_vn.is_empty() {
        put(TLV_DEST_VN, &dst_vn[..dst_vn.len().min(MAX_MD_VN)]);
    }
    put(TLV_END, &[]);
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use vrouter_abi::mirror::{split_metadata, MetaTlv, NhMode, FLAG_INGRESS};

    const DST: [u8; 6] = [2, 0, 0, 0, 0, 0xfe];
    const SRC: [u8; 6] = [2, 0, 0, 0, 0, 1];

    #[test]
    fn juniper_template_and_finish() {
        let e = MirrorEntry::analyzer("a", Ipv4Addr::new(10, 9, 0, 5)).with_udp_port(9000);
        let t = template(&e, Ipv4Addr::new(10, 0, 0, 1), DST, SRC);
        assert_eq!(t.len, 42);
        let mut copy = vec![0u8; 42 + 20];
        copy[..42].copy_from_slice(&t.hdr[..42]);
        assert!(finish(&mut copy, t.ip_csum_base, 7));
        let eth = ethernet::Frame::new_checked(&copy[..]).unwrap();
        assert_eq!((eth.dst_addr(), eth.src_addr(), eth.ethertype()), (DST, SRC, EtherType::IPV4));
        let ip = ipv4::Packet::new_checked(eth.payload()).unwrap();
        assert_eq!(ip.total_len(), 48);
        assert_eq!(checksum::data(&copy[14..34]), 0xffff, "valid IPv4 header checksum");
        assert_eq!(
            (ip.src_addr(), ip.dst_addr(), ip.protocol()),
            (Ipv4Addr::new(10, 0, 0, 1), e.analyzer_ip, IpProtocol::UDP)
        );
        let u = udp::Packet::new_checked(ip.payload()).unwrap();
        assert_eq!((u.dst_port(), u.len()), (9000, 28));
        assert!(u.src_port() >= 49152);
    }

    #[test]
    fn vxlan_template_carries_the_vni() {
        let e = MirrorEntry::vxlan("v", Ipv4Addr::new(10, 9, 0, 6), NhMode::Static, 50);
        let t = template(&e, Ipv4Addr::new(10, 0, 0, 1), DST, SRC);
        assert_eq!(t.len, 50);
        assert_eq!(u16::from_be_bytes([t.hdr[36], t.hdr[37]]), 4789);
        assert_eq!(&t.hdr[42..50], &[0x08, 0, 0, 0, 0, 0, 0x32, 0]);
    }

    #[test]
    fn finish_refuses_oversized_and_short_copies() {
        let mut short = vec![0u8; 20];
        assert!(!finish(&mut short, 0, 0));
        let mut huge = vec![0u8; 14 + 65536];
        assert!(!finish(&mut huge, 0, 0));
    }

    #[test]
    fn metadata_decodes_with_the_mirror_crate() {
        let mut out = [0u8; 255];
        let n = flow_metadata(&mut out, Ipv4Addr::new(10, 0, 0, 1), FLAG_INGRESS, b"vn-a", b"vn-b");
        let mut payload = out[..n].to_vec();
        payload.extend_from_slice(b"frame");
        let (tlvs, rest) = split_metadata(&payload).unwrap();
        assert_eq!(
            tlvs,
            [
                MetaTlv::CaptureHost(Ipv4Addr::new(10, 0, 0, 1)),
                MetaTlv::Flags(FLAG_INGRESS),
                MetaTlv::SourceVn("vn-a".into()),
                MetaTlv::DestVn("vn-b".into())
            ]
        );
        assert_eq!(rest, b"frame");
        let long = vec![b'x'; 300];
        let n = flow_metadata(&mut out, Ipv4Addr::new(10, 0, 0, 1), 0, &long, &long);
        assert!(n <= 255);
        assert!(split_metadata(&out[..n]).is_ok());
    }
}
