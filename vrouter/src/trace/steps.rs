//! The steps of a packet's trace, built from what the packet is and what the pipeline
//! decided for it: shared by the data plane's recorded traces ([`super::dp`], feature
//! `trace`) and `trace simulate` ([`super::simulate`]), so the two tell the same story.
//!
//! [`parse`] reads a frame's match fields, flow key and tunnel for the first steps;
//! [`decided_steps`] turns the pipeline's [`Decision`] (recorded where the pipeline decided:
//! the flow, the route, the ECMP member) and the verdict into the rest, looking nothing up
//! again.

use super::request::{addr128, IpFields, PacketFields};
use super::step::{Step, ROUTE_BY_LABEL, ROUTE_BY_MAC};
use crate::config::VifType;
use crate::fib::{Fib, Nexthop, Vif, MPLSOUDP_PORT, VXLAN_PORT};
use crate::packet::{ethernet, ipv4, ipv6, mpls, udp, vxlan, EtherType, IpProtocol};
use crate::pipeline::flow::{key_v4, key_v6};
use crate::pipeline::{Decision, PacketBuf, RouteBy, Verdict};
use flow_table::FlowKey;
use std::net::IpAddr;

/// The steps of a parsed packet after its ingress: decapsulation, the parse result and the
/// addresses.
pub(crate) fn parsed_steps(parsed: &Parsed, mut out: impl FnMut(Step)) {
    if let Some(d) = parsed.decap {
        out(d);
    }
    let p = &parsed.fields;
    let ip = p.ip.unwrap_or_default();
    out(Step::Parsed {
        ethertype: p.ethertype,
        proto: ip.proto,
        sport: ip.sport,
        dport: ip.dport,
        vrf: p.vrf,
        ip_len: parsed.ip_len,
        ttl: parsed.ttl,
    });
    if p.ip.is_some() {
        out(Step::Addresses { src: ip.src, dst: ip.dst });
    }
}

/// The flow steps of decision `d`: the lookup and then the hold (the packet's way ends
/// there for now: returns false) or the flow's action.
pub(crate) fn flow_steps(d: &Decision, verdict: Verdict, mut out: impl FnMut(Step)) -> bool {
    if let Some(f) = d.flow {
        out(Step::FlowLookup { hit: !f.created, index: f.index, gen: f.gen, action: f.action });
    }
    if let Verdict::Hold { flow, new } = verdict {
        out(Step::Held { flow, new });
        return false;
    }
    if let Some(f) = d.flow {
        out(Step::FlowAction {
            action: f.action,
            drop_reason: f.drop_reason,
            mirror: f.mirror,
            sec_mirror: f.sec_mirror,
        });
    }
    true
}

/// The route steps of decision `d` (the route with its matched prefix, label or MAC, and
/// the ECMP member), then the encapsulation of a frame leaving on the fabric (`pkt` is the
/// frame as the pipeline left it; with `mark`, the frame gets that trace mark), then the
/// egress or the drop.
// The mark's side effects (grow the frame, insert) stay out of a match guard.
#[allow(clippy::collapsible_match)]
pub(crate) fn route_steps<B: PacketBuf>(
    fib: &Fib,
    d: &Decision,
    verdict: Verdict,
    pkt: &mut B,
    mark: Option<u32>,
    mut out: impl FnMut(Step),
) {
    let out_vif = match verdict {
        Verdict::Tx(v) => v,
        _ => u16::MAX,
    };
    if let Some(r) = d.route {
        if let Some(n) = fib.nexthop(r.nh) {
            let (prefix, prefix_len) = match r.by {
                RouteBy::Prefix { prefix, len } => (prefix, len),
                RouteBy::Label(l) => (u128::from(l), ROUTE_BY_LABEL),
                RouteBy::Mac(m) => (u128::from(crate::fib::mac_key(&m)), ROUTE_BY_MAC),
            };
            out(Step::Route { vrf: r.vrf, prefix, prefix_len, nh_id: n.id(), nh_kind: n.kind().code(), out_vif });
            if let (Nexthop::Ecmp { members, .. }, Some((i, m))) = (n, d.member) {
                if let Some(mn) = fib.nexthop(m) {
                    out(Step::Ecmp {
                        nh_id: n.id(),
                        member: i as u16,
                        members: members.len() as u16,
                        member_id: mn.id(),
                        member_kind: mn.kind().code(),
                    });
                }
            }
        }
    }
    match verdict {
        Verdict::Tx(v) => {
            let to_fabric = fib.vif(v).is_some_and(|x| x.kind == VifType::Fabric);
            if to_fabric {
                if let Some(s) = encap_of(fib, pkt.data()) {
                    if let Some(id) = mark {
                        match s {
                            Step::Encap { vxlan: true, .. } => set_trace_mark(pkt.data_mut(), id),
                            // No headroom for the mark: the packet goes unmarked (the next
                            // vRouter does not continue the trace) rather than not at all.
                            Step::Encap { vxlan: false, .. } => {
                                if pkt.prepend(super::mark::MPLS_MARK_LEN)
                                    && !super::mark::insert_mpls_mark(pkt.data_mut(), id)
                                {
                                    pkt.adj(super::mark::MPLS_MARK_LEN);
                                }
                            }
                            _ => {}
                        }
                    }
                    out(s);
                }
            }
            out(Step::Egress { vif: v, len: pkt.data().len() as u32 });
        }
        Verdict::Drop(reason) => out(Step::Drop { reason }),
        // The packet is dropped; the buffer leaves as an answer to its sender.
        Verdict::Reply { drop, .. } => out(Step::Drop { reason: drop }),
        // Held packets are recorded when held and released; a fragment parked until its
        // first fragment comes runs again untraced.
        Verdict::Hold { .. } | Verdict::FragWait => {}
    }
}

/// What [`parse`] found in a frame.
pub(crate) struct Parsed {
    /// The trace mark of a VXLAN or MPLSoUDP packet (trace id, sending vRouter).
    pub(crate) mark: Option<(u32, std::net::Ipv4Addr)>,
    pub(crate) fields: PacketFields,
    pub(crate) key: Option<FlowKey>,
    pub(crate) decap: Option<Step>,
    pub(crate) ip_len: u16,
    pub(crate) ttl: u8,
}

/// The match fields of a frame entering `vif` (the inner packet of a tunnel terminated
/// here), its flow key, and how the pipeline will route it. `None` for frames too short
/// for an Ethernet header.
pub(crate) fn parse(fib: &Fib, vif: &Vif, frame: &[u8]) -> Option<Parsed> {
    let eth = ethernet::Frame::new_checked(frame).ok()?;
    let mut p = Parsed {
        mark: None,
        fields: PacketFields {
            src_mac: eth.src_addr(),
            dst_mac: eth.dst_addr(),
            ethertype: eth.ethertype(),
            ip: None,
            ingress_vif: vif.id,
            vrf: vif.vrf,
        },
        key: None,
        decap: None,
        ip_len: 0,
        ttl: 0,
    };
    if vif.kind == VifType::Fabric && eth.ethertype() == EtherType::IPV4 {
        if let Ok(ip) = ipv4::Packet::new_checked(eth.payload()) {
            if ip.dst_addr() == fib.router_ip && ip.protocol() == IpProtocol::UDP && !ip.is_fragment() {
                if let Ok(u) = udp::Packet::new_checked(ip.payload()) {
                    let outer_src = ip.src_addr();
                    let body = u.payload();
                    if u.dst_port() == MPLSOUDP_PORT {
                        let mut body = body;
                        if let Some(id) = super::mark::read_mpls_mark(body) {
                            p.mark = Some((id, outer_src));
                            body = &body[super::mark::MPLS_MARK_LEN..];
                        }
                        let m = mpls::Packet::new_checked(body).ok()?;
                        let label = m.label();
                        p.decap = Some(Step::Decap { vxlan: false, label, outer_src });
                        let vrf = fib.labels.get(&label).and_then(|&nh| match fib.nexthop(nh) {
                            Some(Nexthop::Encap { vif, .. }) => fib.vif(*vif).map(|v| v.vrf),
                            _ => None,
                        });
                        p.fields.ethertype = match body.get(mpls::HEADER_LEN).map(|b| b >> 4) {
                            Some(4) => EtherType::IPV4,
                            Some(6) => EtherType::IPV6,
                            _ => 0,
                        };
                        if let Some(vrf) = vrf {
                            p.fields.vrf = vrf;
                        }
                        let et = p.fields.ethertype;
                        ip_fields(&mut p, et, body.get(mpls::HEADER_LEN..).unwrap_or(&[]));
                        return Some(p);
                    }
                    if u.dst_port() == VXLAN_PORT {
                        let x = vxlan::Packet::new_checked(body).ok()?;
                        let vni = x.vni();
                        p.decap = Some(Step::Decap { vxlan: true, label: vni, outer_src });
                        p.mark = trace_mark(body).map(|m| (m, outer_src));
                        let inner = ethernet::Frame::new_checked(body.get(vxlan::HEADER_LEN..).unwrap_or(&[])).ok()?;
                        p.fields.src_mac = inner.src_addr();
                        p.fields.dst_mac = inner.dst_addr();
                        p.fields.ethertype = inner.ethertype();
                        if let Some(&vrf) = fib.vnis.get(&vni) {
                            p.fields.vrf = vrf;
                        }
                        ip_fields(&mut p, inner.ethertype(), inner.payload());
                        return Some(p);
                    }
                }
            }
        }
    }
    ip_fields(&mut p, eth.ethertype(), eth.payload());
    Some(p)
}

/// Fills the IP fields, the flow key and the LPM route hint from an IP packet.
fn ip_fields(p: &mut Parsed, ethertype: u16, l3: &[u8]) {
    let vrf = p.fields.vrf;
    let ports = |proto: u8, l4: &[u8], first: bool| {
        if first && (proto == IpProtocol::TCP || proto == IpProtocol::UDP) && l4.len() >= 4 {
            (u16::from_be_bytes([l4[0], l4[1]]), u16::from_be_bytes([l4[2], l4[3]]))
        } else {
            (0, 0)
        }
    };
    match ethertype {
        EtherType::IPV4 => {
            let Ok(ip) = ipv4::Packet::new_checked(l3) else { return };
            // Trace conditions on ports do not match fragments, the first included (the
            // burst's quick pre-filter relies on it); the flow key has the first's ports.
            let (sport, dport) = ports(ip.protocol(), ip.payload(), !ip.is_fragment());
            let dst = addr128(IpAddr::V4(ip.dst_addr()));
            p.fields.ip =
                Some(IpFields { src: addr128(IpAddr::V4(ip.src_addr())), dst, proto: ip.protocol(), sport, dport });
            p.key = Some(key_v4(vrf, &ip));
            p.ip_len = ip.total_len();
            p.ttl = ip.ttl();
        }
        EtherType::IPV6 => {
            let Ok(ip) = ipv6::Packet::new_checked(l3) else { return };
            // The key walks the extension headers: match on the transport protocol and ports.
            let key = key_v6(vrf, &ip);
            let (proto, sport, dport) = match key.proto() {
                IpProtocol::TCP | IpProtocol::UDP => (key.proto(), key.sport(), key.dport()),
                other => (other, 0, 0),
            };
            let dst = addr128(IpAddr::V6(ip.dst_addr()));
            p.fields.ip = Some(IpFields { src: addr128(IpAddr::V6(ip.src_addr())), dst, proto, sport, dport });
            p.key = Some(key);
            p.ip_len = (ipv6::HEADER_LEN + usize::from(ip.payload_len())) as u16;
            p.ttl = ip.hop_limit();
        }
        _ => {}
    }
}

/// Flag bit of the VXLAN flags byte that says the reserved fields carry a trace mark (the
/// bit is reserved in RFC 7348: receivers ignore it, so marked packets stay valid VXLAN).
pub const TRACE_MARK_FLAG: u8 = 0x01;

/// Puts trace id `id` into the VXLAN header of an outgoing tunnel frame (Ethernet, IPv4,
/// UDP, VXLAN): the flag bit, then the id in the 24 reserved bits after the flags (high
/// bits) and the reserved byte after the VNI (low byte).
pub(crate) fn set_trace_mark(frame: &mut [u8], id: u32) {
    let Some(&vihl) = frame.get(ethernet::HEADER_LEN) else { return };
    let off = ethernet::HEADER_LEN + usize::from(vihl & 0xf) * 4 + udp::HEADER_LEN;
    let Some(h) = frame.get_mut(off..off + vxlan::HEADER_LEN) else { return };
    let b = id.to_be_bytes();
    h[0] |= TRACE_MARK_FLAG;
    h[1..4].copy_from_slice(&b[..3]);
    h[7] = b[3];
}

/// The trace mark of a VXLAN header, if it carries one.
pub fn trace_mark(vxlan_header: &[u8]) -> Option<u32> {
    let h = vxlan_header.get(..vxlan::HEADER_LEN)?;
    (h[0] & TRACE_MARK_FLAG != 0).then(|| u32::from_be_bytes([h[1], h[2], h[3], h[7]]))
}

/// The tunnel a frame leaving on the fabric was put in by this vRouter (outer source is
/// the vRouter IP), as an encapsulation step.
pub(crate) fn encap_of(fib: &Fib, out: &[u8]) -> Option<Step> {
    let eth = ethernet::Frame::new_checked(out).ok()?;
    if eth.ethertype() != EtherType::IPV4 {
        return None;
    }
    let ip = ipv4::Packet::new_checked(eth.payload()).ok()?;
    if ip.src_addr() != fib.router_ip || ip.protocol() != IpProtocol::UDP {
        return None;
    }
    let u = udp::Packet::new_checked(ip.payload()).ok()?;
    let (vxlan, label) = match u.dst_port() {
        MPLSOUDP_PORT => (false, mpls::Packet::new_checked(u.payload()).ok()?.label()),
        VXLAN_PORT => (true, vxlan::Packet::new_checked(u.payload()).ok()?.vni()),
        _ => return None,
    };
    Some(Step::Encap { vxlan, label, remote: ip.dst_addr(), sport: u.src_port() })
}
