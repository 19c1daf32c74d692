//! The flow stage: every routed IP packet that enters or leaves a VM (from a VM vif, or
//! decapsulated from the fabric into a VM's VRF) is looked up in the shared flow table.
//!
//! - hit: the packet is counted on its flow (bytes = IP length, as the flow's ground truth;
//!   held and dropped packets included, as tf-vrouter does) and the flow's action applies:
//!   forward continues, drop drops with `Flow Action Drop`, hold queues the packet;
//! - miss: a HOLD entry is created (claimed by CAS in the table) and the packet is held; the
//!   caller sends the setup request to the agent. When the global hold limit is reached, no
//!   new flow is created and the packet drops with `Flow Unusable`; a full table drops with
//!   `Flow Table Full`.
//!
//! Keys follow tf-vrouter: the VRF, protocol, addresses and ports; ICMP echo uses the
//! identifier as source port and 0 as destination port (so request and reply are each
//! other's reverse), other ICMP uses 0 and the type. IPv6 extension headers are walked
//! ([`crate::packet::ipv6ext`]): the key has the transport protocol and ports, never an
//! extension header's number.
//!
//! Packets the burst pre-pass does not key (see [`needs_special_key`]) take
//! [`FlowStage::ipv4`] / [`FlowStage::ipv6`]'s out-of-line path:
//! - **fragments**: the first fragment is keyed by its own ports and records them in the
//!   lcore's [`FragTable`]; later fragments take them from there, so every fragment of a
//!   datagram hits the first fragment's flow (same verdict, counters, mirror copies). A
//!   later fragment whose first fragment has not come yet returns [`Verdict::FragWait`]
//!   and the data plane parks it;
//! - **ICMP / ICMPv6 errors** are keyed on the packet they quote, reversed (the flow the
//!   error travels in), as tf-vrouter does, and only ever looked up: an error quoting no
//!   flow drops with `ICMP errors`, one quoting a denied flow takes that flow's drop; an
//!   error about an ICMP error, or whose destination is not the quoted packet's source,
//!   drops with `ICMP errors`.

use super::frag::{FragKey, FragPiece, FragTable, Later};
use super::{Record, Verdict};
use crate::drop_reason::DropReason;
use crate::packet::{ipv4, ipv6, ipv6ext, IpProtocol};
use flow_table::{tcp_flags, Action, FlowKey, FlowTable, Lookup};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Per-packet flow context handed to the pipeline by the lcore loop.
pub struct FlowStage<'t> {
    /// The shared flow table (lookups, HOLD flows created on a miss, per-lcore counters).
    pub table: &'t FlowTable,
    /// This forwarding lcore's index in the flow table (owner of the counters it updates).
    pub lcore: usize,
    /// Coarse time for last-seen stamps (milliseconds since the Unix epoch).
    pub now: u64,
    /// The packet was held and is being re-run after setup: it was already counted.
    pub reinject: bool,
    /// The flow a re-run packet was held for: looked at first (checked against the
    /// packet's key), which saves the bucket lookup.
    pub held_flow: Option<u32>,
    /// False when the global hold limit is reached: misses must not create flows.
    pub may_create: bool,
    /// Key, hash and lookup result computed for the whole burst in the pre-pass (buckets
    /// prefetched, then one [`FlowTable::lookup_burst`] so the misses overlap).
    /// The key is borrowed from the burst's array, not copied: a 64-byte copy read back right
    /// after it was written stalled on store forwarding (a tenth of the flow path at 1k flows).
    pub pre: Option<Prepared<'t>>,
    /// This lcore's held packets: a flow with packets held here keeps holding new packets
    /// until they are released, so release never reorders a flow.
    pub held: &'t HoldStore,
    /// Where copies of mirrored flows go (`None`: no mirroring on this lcore).
    pub mirror: Option<&'t mut dyn FlowMirror>,
    /// This lcore's fragment table (see [`super::frag`]).
    pub frags: &'t mut FragTable,
}

/// The packet as the flow stage saw it, before any rewrite: what a flow mirror copies.
#[derive(Debug, Clone, Copy)]
pub struct MirrorFrame<'a> {
    /// An Ethernet header to put in front of `bytes` (decapsulated MPLSoUDP packets carry
    /// no inner Ethernet header; the copy gets the one the packet will be delivered with).
    pub l2: Option<[u8; 14]>,
    /// The frame (or, with `l2`, the IP packet) exactly as received.
    pub bytes: &'a [u8],
    /// The route's nexthop, when the route was looked up before the flow stage (gives the
    /// destination VN of the metadata).
    pub nh: Option<crate::fib::NhIdx>,
}

/// Receives a copy request for every packet of a mirrored flow, after the flow lookup and
/// before the flow's action is applied (dropped flows are mirrored too), never for a packet
/// that is held: a held packet is copied when it is released and re-run.
pub trait FlowMirror {
    /// `mirrors`: primary and secondary mirror index of the flow (255 = none). Returns, per
    /// mirror index, the copy's length once queued or why it failed (`None`: no index).
    fn flow_copy(&mut self, flow: u32, mirrors: [u8; 2], vrf: u32, frame: &MirrorFrame<'_>) -> CopyResults;
}

/// Per analyzer of a flow copy: `Ok(bytes)` queued, `Err(reason)` failed, `None` no analyzer.
pub type CopyResults = [Option<Result<u32, DropReason>>; 2];

/// A packet's flow key (in the burst's key array), hash and burst-lookup result (`None`:
/// not found at lookup time).
#[derive(Debug, Clone, Copy)]
pub struct Prepared<'a> {
    /// The packet's flow key, in the burst's key array.
    pub key: &'a FlowKey,
    /// The key's hash (picks the bucket).
    pub hash: u32,
    /// Index of the flow found by the burst lookup; `None` when it was not in the table then.
    pub found: Option<u32>,
}

/// ICMP and ICMPv6 echo request/reply types.
const ICMP_ECHO: [u8; 2] = [8, 0];
const ICMP6_ECHO: [u8; 2] = [128, 129];

/// Source and destination "ports" of a flow key from an L4 header.
#[inline]
fn key_ports(proto: u8, l4: &[u8], unfragmented: bool) -> (u16, u16) {
    if !unfragmented {
        return (0, 0);
    }
    match proto {
        IpProtocol::TCP | IpProtocol::UDP if l4.len() >= 4 => {
            (u16::from_be_bytes([l4[0], l4[1]]), u16::from_be_bytes([l4[2], l4[3]]))
        }
        IpProtocol::ICMP | IpProtocol::ICMPV6 if l4.len() >= 6 => {
            let echo = if proto == IpProtocol::ICMP { ICMP_ECHO } else { ICMP6_ECHO };
            if echo.contains(&l4[0]) {
                (u16::from_be_bytes([l4[4], l4[5]]), 0)
            } else {
                (0, u16::from(l4[0]))
            }
        }
        _ => (0, 0),
    }
}

/// The flow key of an IPv4 packet in `vrf`.
#[inline]
pub fn key_v4(vrf: u32, ip: &ipv4::Packet<&[u8]>) -> FlowKey {
    key_v4_tuple(vrf, ip).0
}

/// [`key_v4`] and the fields its hash takes (always inlined: it runs for every packet of the
/// burst pre-pass, which hashes only keys that differ from the previous packet's).
#[inline(always)]
pub fn key_v4_tuple(vrf: u32, ip: &ipv4::Packet<&[u8]>) -> (FlowKey, V4Tuple) {
    let proto = ip.protocol();
    // A first fragment has the transport header (later ones get theirs from the fragment
    // table on the out-of-line path).
    let (sport, dport) = key_ports(proto, ip.payload(), ip.frag_offset() == 0);
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let t = V4Tuple { vrf, src: u32::from(src), dst: u32::from(dst), proto, sport, dport };
    (FlowKey::v4(vrf, proto, src, dst, sport, dport), t)
}

/// An IPv4 key's fields, from which [`V4Tuple::hash`] computes [`FlowKey::hash`] without
/// reading back the key just written (that stalls on store forwarding).
#[derive(Debug, Clone, Copy)]
pub struct V4Tuple {
    vrf: u32,
    src: u32,
    dst: u32,
    proto: u8,
    sport: u16,
    dport: u16,
}

impl V4Tuple {
    /// The key's [`FlowKey::hash`].
    #[inline(always)]
    pub fn hash(&self) -> u32 {
        flow_table::flow_hash_v4(self.src, self.dst, self.proto, self.sport, self.dport) ^ FlowKey::nh_salt(self.vrf)
    }
}

/// The flow key of an IPv6 packet in `vrf`: the transport protocol and ports after the
/// extension headers (ports 0 for a non-first fragment, whose ports only the fragment
/// table knows, and for a chain that cannot be walked).
#[inline]
pub fn key_v6(vrf: u32, ip: &ipv6::Packet<&[u8]>) -> FlowKey {
    let first = ip.next_header();
    let payload = ip.payload();
    let (proto, sport, dport) = if ipv6ext::is_extension(first) {
        match ipv6ext::upper_layer(first, payload) {
            Ok(u) => {
                let (s, d) = key_ports(u.proto, payload.get(u.offset..).unwrap_or(&[]), u.has_header());
                (u.proto, s, d)
            }
            Err(_) => (first, 0, 0),
        }
    } else {
        let (s, d) = key_ports(first, payload, true);
        (first, s, d)
    };
    FlowKey::v6(vrf, proto, ip.src_addr(), ip.dst_addr(), sport, dport)
}

/// Whether an ICMP (`proto` 1) or ICMPv6 (58) message reports an error about a packet it
/// quotes (destination unreachable, source quench, redirect, time exceeded, parameter
/// problem; every ICMPv6 type below 128).
#[inline(always)]
pub fn is_icmp_error(proto: u8, l4: &[u8]) -> bool {
    match (proto, l4.first()) {
        (IpProtocol::ICMP, Some(&t)) => matches!(t, 3 | 4 | 5 | 11 | 12),
        (IpProtocol::ICMPV6, Some(&t)) => t < 128,
        _ => false,
    }
}

/// Whether an IP packet is keyed on the out-of-line path rather than by the burst pre-pass
/// and the flow-hit path: an IPv4 fragment or ICMP error (`v6` false, `first` the
/// protocol), an IPv6 packet with an extension header or an ICMPv6 error (`first` the
/// fixed header's next header). `l4`: the bytes after the fixed header.
#[inline(always)]
pub fn needs_special_key(v6: bool, first: u8, fragment: bool, l4: &[u8]) -> bool {
    if v6 {
        ipv6ext::is_extension(first) || is_icmp_error(first, l4)
    } else {
        fragment || is_icmp_error(first, l4)
    }
}

/// The flow key of the IPv4 packet an ICMP error quotes (`icmp`: the ICMP message). The
/// error's destination must be the quoted packet's source; from a VM (`from_vm`) its
/// source must also be the quoted packet's destination: a VM reports errors about packets
/// sent to it, never on behalf of a third host (which would let it push errors, or a
/// smaller path MTU, through a deny rule by quoting someone else's flow). The error
/// travels in the quoted flow's reverse. `None`: nothing usable is quoted.
fn icmp4_quoted_key(vrf: u32, outer_src: Ipv4Addr, outer_dst: Ipv4Addr, icmp: &[u8], from_vm: bool) -> Option<FlowKey> {
    let inner = icmp.get(8..)?;
    let b0 = *inner.first()?;
    let ihl = usize::from(b0 & 0x0f) * 4;
    if b0 >> 4 != 4 || ihl < 20 || inner.len() < ihl {
        return None;
    }
    if u16::from_be_bytes([inner[6], inner[7]]) & 0x1fff != 0 {
        // Quotes a non-first fragment: no transport header to match.
        return None;
    }
    let proto = inner[9];
    let src = Ipv4Addr::new(inner[12], inner[13], inner[14], inner[15]);
    let dst = Ipv4Addr::new(inner[16], inner[17], inner[18], inner[19]);
    let l4 = &inner[ihl..];
    if src != outer_dst || (from_vm && dst != outer_src) || is_icmp_error(proto, l4) {
        return None;
    }
    let (s, d) = key_ports(proto, l4, true);
    Some(FlowKey::v4(vrf, proto, src, dst, s, d))
}

/// [`icmp4_quoted_key`] for ICMPv6: the quoted IPv6 packet's extension headers are walked.
fn icmp6_quoted_key(vrf: u32, outer_src: Ipv6Addr, outer_dst: Ipv6Addr, icmp: &[u8], from_vm: bool) -> Option<FlowKey> {
    let inner = icmp.get(8..)?;
    let hdr = inner.first_chunk::<{ ipv6::HEADER_LEN }>()?;
    if hdr[0] >> 4 != 6 {
        return None;
    }
    let src = Ipv6Addr::from(*hdr[8..24].first_chunk::<16>()?);
    let dst = Ipv6Addr::from(*hdr[24..40].first_chunk::<16>()?);
    let rest = &inner[ipv6::HEADER_LEN..];
    let u = ipv6ext::upper_layer(hdr[6], rest).ok()?;
    let l4 = rest.get(u.offset..).unwrap_or(&[]);
    if src != outer_dst || (from_vm && dst != outer_src) || !u.has_header() || is_icmp_error(u.proto, l4) {
        return None;
    }
    let (s, d) = key_ports(u.proto, l4, true);
    Some(FlowKey::v6(vrf, u.proto, src, dst, s, d))
}

/// Ports of a first fragment; one too short to hold its transport header is a fragment
/// error (RFC 1858's tiny fragment: policy must see the ports, and the TCP state machine
/// the flags, in the first fragment).
#[inline]
fn first_fragment_ports(proto: u8, l4: &[u8]) -> Result<(u16, u16), Verdict> {
    let need = match proto {
        IpProtocol::TCP => 20,
        IpProtocol::UDP => 8,
        IpProtocol::ICMP | IpProtocol::ICMPV6 => 8,
        _ => 0,
    };
    if l4.len() < need {
        return Err(Verdict::Drop(DropReason::FragmentError));
    }
    Ok(key_ports(proto, l4, true))
}

/// TCP state bits a segment contributes to its flow.
#[inline]
pub(super) fn tcp_bits(proto: u8, l4: &[u8]) -> u16 {
    if proto != IpProtocol::TCP || l4.len() < 14 {
        return 0;
    }
    let f = l4[13];
    let mut bits = 0;
    if f & 0x02 != 0 {
        bits |= tcp_flags::SYN;
    }
    if f & 0x01 != 0 {
        bits |= tcp_flags::FIN;
    }
    if f & 0x04 != 0 {
        bits |= tcp_flags::RST;
    }
    if f & 0x10 != 0 && f & 0x02 == 0 {
        bits |= tcp_flags::ESTABLISHED;
    }
    bits
}

impl FlowStage<'_> {
    /// Looks the packet up (creating a HOLD flow on a miss), counts it and applies the flow
    /// action. `Ok(())` means forward.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn apply<R: Record>(
        &mut self,
        key: &FlowKey,
        hash: u32,
        found: Option<u32>,
        ip_len: u32,
        proto: u8,
        l4: &[u8],
        frame: MirrorFrame<'_>,
        rec: &mut R,
    ) -> Result<(), Verdict> {
        // A burst hit is still valid: entries are only reused after this lcore's next
        // quiescent point. A burst miss is looked up again (an earlier packet of the burst,
        // or another lcore, may have created the flow since): by `lookup_or_hold` itself
        // when a flow may be created, which looks up before it inserts.
        let (idx, created) = match found {
            Some(i) => (i, false),
            // A simulation only looks up; without a flow, the verdict is the policy's.
            None if R::DRY_RUN => match self.table.lookup(key, hash) {
                Some(i) => (i, false),
                None => {
                    return match rec.no_flow(key) {
                        Action::Forward => Ok(()),
                        _ => Err(Verdict::Drop(DropReason::FlowActionDrop)),
                    }
                }
            },
            None if !self.may_create => match self.table.lookup(key, hash) {
                Some(i) => (i, false),
                None => return Err(Verdict::Drop(DropReason::FlowUnusable)),
            },
            None => match self.table.lookup_or_hold(key, hash, self.now) {
                Ok(Lookup::Hit(i)) => (i, false),
                Ok(Lookup::Created(i)) => (i, true),
                Err(_) => return Err(Verdict::Drop(DropReason::FlowTableFull)),
            },
        };
        if !self.reinject && !R::DRY_RUN {
            self.table.account_as(self.lcore, idx, ip_len, self.now);
            let bits = tcp_bits(proto, l4);
            if bits != 0 {
                self.table.set_tcp_flags(idx, bits);
            }
        }
        let Some(entry) = self.table.entry(idx) else {
            return Err(Verdict::Drop(DropReason::FlowUnusable));
        };
        rec.flow(idx, created, entry);
        if self.held.contains(idx) {
            return Err(Verdict::Hold { flow: idx, new: false });
        }
        let action = entry.action();
        // One predictable branch when the flow is not mirrored; the copy is taken before
        // the action (drop included) and before any rewrite of the packet.
        let primary = entry.mirror();
        if primary != flow_table::NO_MIRROR && action != Action::Hold {
            if let Some(m) = self.mirror.as_deref_mut() {
                m.flow_copy(idx, [primary, entry.sec_mirror()], key.vrf(), &frame);
            }
        }
        match action {
            Action::Forward => Ok(()),
            Action::Hold => Err(Verdict::Hold { flow: idx, new: created }),
            Action::Drop => Err(Verdict::Drop(DropReason::FlowActionDrop)),
            Action::Nat => Err(Verdict::Drop(DropReason::FlowActionInvalid)),
        }
    }

    /// The flow stage for an IPv4 packet in `vrf` (`from_vm`: it entered on a VM vif).
    /// Returns the key's hash (0 on the out-of-line path, whose packets are never
    /// unfragmented TCP/UDP) with the verdict.
    #[inline(always)]
    pub(super) fn ipv4<R: Record>(
        &mut self,
        vrf: u32,
        ip: &ipv4::Packet<&[u8]>,
        frame: MirrorFrame<'_>,
        from_vm: bool,
        rec: &mut R,
    ) -> (u32, Result<(), Verdict>) {
        let proto = ip.protocol();
        if needs_special_key(false, proto, ip.is_fragment(), ip.payload()) {
            return (0, self.ipv4_special(vrf, ip, frame, from_vm, rec));
        }
        self.run(vrf, || key_v4(vrf, ip), u32::from(ip.total_len()), proto, ip.payload(), frame, rec)
    }

    /// The flow stage for an IPv6 packet in `vrf`.
    #[inline(always)]
    pub(super) fn ipv6<R: Record>(
        &mut self,
        vrf: u32,
        ip: &ipv6::Packet<&[u8]>,
        frame: MirrorFrame<'_>,
        from_vm: bool,
        rec: &mut R,
    ) -> Result<(), Verdict> {
        let first = ip.next_header();
        let len = (ipv6::HEADER_LEN + usize::from(ip.payload_len())) as u32;
        if needs_special_key(true, first, false, ip.payload()) {
            return self.ipv6_special(vrf, ip, len, frame, from_vm, rec);
        }
        self.run(vrf, || key_v6(vrf, ip), len, first, ip.payload(), frame, rec).1
    }

    /// IPv4 fragments and ICMP errors.
    #[inline(never)]
    fn ipv4_special<R: Record>(
        &mut self,
        vrf: u32,
        ip: &ipv4::Packet<&[u8]>,
        frame: MirrorFrame<'_>,
        from_vm: bool,
        rec: &mut R,
    ) -> Result<(), Verdict> {
        // The pre-pass keyed nothing for this packet.
        self.pre = None;
        let proto = ip.protocol();
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let ip_len = u32::from(ip.total_len());
        let l4 = ip.payload();
        if !ip.is_fragment() {
            let quoted = icmp4_quoted_key(vrf, src, dst, l4, from_vm).ok_or(Verdict::Drop(DropReason::IcmpError))?;
            return self.icmp_error(&quoted, ip_len, proto, frame, rec);
        }
        let fk = FragKey::v4(vrf, proto, src, dst, ip.ident());
        let piece = FragPiece { offset: u32::from(ip.frag_offset()), len: l4.len() as u32, more: ip.more_frags() };
        let (proto, sport, dport) =
            self.fragment_ports(fk, piece, proto, l4, |p, s, d| FlowKey::v4(vrf, p, src, dst, s, d))?;
        let key = FlowKey::v4(vrf, proto, src, dst, sport, dport);
        let l4 = if piece.offset == 0 { l4 } else { &[] };
        self.keyed(&key, ip_len, proto, l4, frame, rec)
    }

    /// IPv6 packets with extension headers, fragments and ICMPv6 errors.
    #[inline(never)]
    fn ipv6_special<R: Record>(
        &mut self,
        vrf: u32,
        ip: &ipv6::Packet<&[u8]>,
        ip_len: u32,
        frame: MirrorFrame<'_>,
        from_vm: bool,
        rec: &mut R,
    ) -> Result<(), Verdict> {
        self.pre = None;
        let payload = ip.payload();
        let u = ipv6ext::upper_layer(ip.next_header(), payload).map_err(|_| Verdict::Drop(DropReason::Ipv6ExtChain))?;
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let proto = u.proto;
        let l4 = payload.get(u.offset..).unwrap_or(&[]);
        // Not fragmented, or an atomic fragment (offset 0, no more: RFC 6946), which is
        // keyed as the whole packet it is and not recorded.
        let frag = u.frag.filter(|f| f.offset != 0 || f.more);
        let Some(f) = frag else {
            if is_icmp_error(proto, l4) {
                let quoted =
                    icmp6_quoted_key(vrf, src, dst, l4, from_vm).ok_or(Verdict::Drop(DropReason::IcmpError))?;
                return self.icmp_error(&quoted, ip_len, proto, frame, rec);
            }
            let (sport, dport) = key_ports(proto, l4, true);
            return self.keyed(&FlowKey::v6(vrf, proto, src, dst, sport, dport), ip_len, proto, l4, frame, rec);
        };
        // RFC 8200: a datagram is (source, destination, identification); the transport
        // protocol is only known from the first fragment (a later one's fragment header
        // may name another extension header), so the table gives it with the ports.
        let fk = FragKey::v6(vrf, src, dst, f.ident);
        let data_len = payload.len().saturating_sub(f.data_offset) as u32;
        let piece = FragPiece { offset: u32::from(f.offset), len: data_len, more: f.more };
        let (proto, sport, dport) =
            self.fragment_ports(fk, piece, proto, l4, |p, s, d| FlowKey::v6(vrf, p, src, dst, s, d))?;
        let key = FlowKey::v6(vrf, proto, src, dst, sport, dport);
        let l4 = if f.offset == 0 { l4 } else { &[] };
        self.keyed(&key, ip_len, proto, l4, frame, rec)
    }

    /// A fragment's transport protocol and key ports: a first fragment's own (recorded in
    /// the fragment table), a later fragment's from the table (`proto` is then only the
    /// IP header's). A held fragment re-run after its flow's setup is not recorded again: a
    /// later one takes its held flow's (`key_with` builds the packet's key from a protocol
    /// and ports, to check the held flow is this packet's).
    fn fragment_ports(
        &mut self,
        fk: FragKey,
        piece: FragPiece,
        proto: u8,
        l4: &[u8],
        key_with: impl Fn(u8, u16, u16) -> FlowKey,
    ) -> Result<(u8, u16, u16), Verdict> {
        if piece.offset == 0 && is_icmp_error(proto, l4) {
            // A fragmented ICMP error cannot be matched to the flow it quotes (its later
            // fragments could carry anything): dropped; its later fragments wait and expire.
            return Err(Verdict::Drop(DropReason::IcmpError));
        }
        if self.reinject {
            if piece.offset == 0 {
                let (s, d) = first_fragment_ports(proto, l4)?;
                return Ok((proto, s, d));
            }
            let held = self.held_flow.and_then(|i| self.table.entry(i)).and_then(|e| e.key());
            return match held {
                Some(k) if k == key_with(k.proto(), k.sport(), k.dport()) => Ok((k.proto(), k.sport(), k.dport())),
                _ => Err(Verdict::Drop(DropReason::NoFragEntry)),
            };
        }
        if piece.offset == 0 {
            let ports = first_fragment_ports(proto, l4)?;
            self.frags.first(fk, proto, ports, piece, self.now).map_err(Verdict::Drop)?;
            return Ok((proto, ports.0, ports.1));
        }
        match self.frags.later(fk, piece, self.now).map_err(Verdict::Drop)? {
            Later::Found { proto, sport, dport } => Ok((proto, sport, dport)),
            Later::Wait => Err(Verdict::FragWait),
        }
    }

    /// The flow stage with a key built on the out-of-line path (a held packet re-run finds
    /// its flow through `held_flow`, as in [`FlowStage::run`]).
    fn keyed<R: Record>(
        &mut self,
        key: &FlowKey,
        ip_len: u32,
        proto: u8,
        l4: &[u8],
        frame: MirrorFrame<'_>,
        rec: &mut R,
    ) -> Result<(), Verdict> {
        let hash = key.hash();
        let found = self.held_flow.filter(|&i| self.table.is_entry_of(i, key, hash));
        self.apply(key, hash, found, ip_len, proto, l4, frame, rec)
    }

    /// The flow stage for an ICMP error quoting a packet of flow `quoted`: it travels in
    /// that flow's reverse and may only use it, never create a flow. The reverse exists
    /// (the quoted flow was set up, its action applies): counted on it and given its action.
    /// It does not, but the quoted flow still waits for the agent's verdict: the error waits
    /// with it (held on it, not counted there) and runs again once it is set up. Otherwise
    /// it drops with `ICMP errors`.
    fn icmp_error<R: Record>(
        &mut self,
        quoted: &FlowKey,
        ip_len: u32,
        proto: u8,
        frame: MirrorFrame<'_>,
        rec: &mut R,
    ) -> Result<(), Verdict> {
        let key = quoted.reverse();
        let hash = key.hash();
        if let Some(i) = self.table.lookup(&key, hash) {
            // A re-run error that was held on the quoted flow was not counted anywhere yet.
            let reinject = self.reinject;
            self.reinject = reinject && self.held_flow == Some(i);
            let r = self.apply(&key, hash, Some(i), ip_len, proto, &[], frame, rec);
            self.reinject = reinject;
            return r;
        }
        if let Some(f) = self.table.lookup(quoted, quoted.hash()) {
            if self.table.entry(f).is_some_and(|e| e.action() == Action::Hold) {
                return Err(Verdict::Hold { flow: f, new: false });
            }
        }
        Err(Verdict::Drop(DropReason::IcmpError))
    }

    /// Runs [`FlowStage::apply`] with the pre-computed key when it belongs to this packet's
    /// VRF, else with a fresh one from `make`. Returns the key's hash (the data plane reuses
    /// it) with the verdict.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn run<R: Record>(
        &mut self,
        vrf: u32,
        make: impl FnOnce() -> FlowKey,
        ip_len: u32,
        proto: u8,
        l4: &[u8],
        frame: MirrorFrame<'_>,
        rec: &mut R,
    ) -> (u32, Result<(), Verdict>) {
        match self.pre.take() {
            Some(p) if p.key.vrf() == vrf => {
                (p.hash, self.apply(p.key, p.hash, p.found, ip_len, proto, l4, frame, rec))
            }
            _ => {
                let key = make();
                let hash = key.hash();
                let found = self.held_flow.filter(|&i| self.table.is_entry_of(i, &key, hash));
                (hash, self.apply(&key, hash, found, ip_len, proto, l4, frame, rec))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn icmp_echo_request_and_reply_are_reverse_keys() {
        let req = [8u8, 0, 0, 0, 0x12, 0x34, 0, 1];
        let rep = [0u8, 0, 0, 0, 0x12, 0x34, 0, 1];
        assert_eq!(key_ports(IpProtocol::ICMP, &req, true), (0x1234, 0));
        assert_eq!(key_ports(IpProtocol::ICMP, &rep, true), (0x1234, 0));
        let unreach = [3u8, 1, 0, 0, 0, 0, 0, 0];
        assert_eq!(key_ports(IpProtocol::ICMP, &unreach, true), (0, 3));
    }

    #[test]
    fn fragments_and_short_headers_have_no_ports() {
        assert_eq!(key_ports(IpProtocol::UDP, &[0, 80, 0, 53], false), (0, 0));
        assert_eq!(key_ports(IpProtocol::UDP, &[0, 80], true), (0, 0));
        assert_eq!(key_ports(IpProtocol::TCP, &[0, 80, 1, 187, 0, 0], true), (80, 443));
    }

    #[test]
    fn the_tuple_hash_is_the_key_hash() {
        let mut f = [0u8; 28];
        f[0] = 0x45;
        f[3] = 28;
        f[9] = IpProtocol::UDP;
        f[12..16].copy_from_slice(&[10, 1, 2, 3]);
        f[16..20].copy_from_slice(&[192, 168, 7, 9]);
        f[20..24].copy_from_slice(&[0x9c, 0x40, 0x00, 0x35]);
        for vrf in [0, 1, 77, u32::MAX] {
            let ip = ipv4::Packet::new_checked(&f[..]).unwrap();
            let (k, t) = key_v4_tuple(vrf, &ip);
            let (src, dst) = (Ipv4Addr::new(10, 1, 2, 3), Ipv4Addr::new(192, 168, 7, 9));
            assert_eq!(k, FlowKey::v4(vrf, IpProtocol::UDP, src, dst, 0x9c40, 0x35));
            assert_eq!(t.hash(), k.hash());
        }
    }

    #[test]
    fn tcp_state_bits() {
        let mut seg = [0u8; 20];
        seg[13] = 0x02;
        assert_eq!(tcp_bits(IpProtocol::TCP, &seg), tcp_flags::SYN);
        seg[13] = 0x11;
        assert_eq!(tcp_bits(IpProtocol::TCP, &seg), tcp_flags::FIN | tcp_flags::ESTABLISHED);
        seg[13] = 0x04;
        assert_eq!(tcp_bits(IpProtocol::TCP, &seg), tcp_flags::RST);
        assert_eq!(tcp_bits(IpProtocol::UDP, &seg), 0);
    }
}

/// Packets an lcore holds for flows awaiting setup, in arrival order per flow.
///
/// Packets are opaque handles (`usize`: the data plane stores mbuf addresses) with their
/// ingress vif. The store is owned by one lcore; a flow held on several lcores is held in each
/// one's store. While a flow has packets here, later packets of it are held behind them even
/// if the agent already set the action, so release preserves order.
#[derive(Debug, Default)]
pub struct HoldStore {
    flows: crate::fib::lpm::IntMap<u32, HeldFlow>,
    /// Held flows in the order they were first held (release order).
    order: Vec<u32>,
    per_flow: usize,
}

/// Most packets held per flow (`[flow] held_packets_per_flow` is validated against it).
pub const MAX_HELD_PER_FLOW: usize = 16;

/// A flow's held packets, inline (no allocation on the miss path).
#[derive(Debug, Clone, Copy)]
struct HeldFlow {
    len: u8,
    packets: [(usize, u16); MAX_HELD_PER_FLOW],
}

/// What [`HoldStore::hold`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldResult {
    /// Queued; `first` when it is the first packet of this flow held here.
    Held {
        /// The first packet of this flow held on this lcore.
        first: bool,
    },
    /// The flow already holds `per_flow` packets here: drop (`Flow Queue Limit Exceeded`).
    QueueFull,
}

impl HoldStore {
    /// A store holding up to `per_flow` packets per flow, with room for `flows` flows
    /// preallocated (it grows beyond that only when the hold limit is raised).
    pub fn new(per_flow: usize, flows: usize) -> HoldStore {
        let mut m = crate::fib::lpm::IntMap::default();
        m.reserve(flows);
        HoldStore { flows: m, order: Vec::with_capacity(flows), per_flow: per_flow.clamp(1, MAX_HELD_PER_FLOW) }
    }

    /// Whether no flow has packets held here.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// Flows with packets held here.
    #[inline]
    pub fn flows(&self) -> usize {
        self.flows.len()
    }

    /// Whether `flow` has packets held here (later packets of it must be held behind them).
    #[inline]
    pub fn contains(&self, flow: u32) -> bool {
        !self.flows.is_empty() && self.flows.contains_key(&flow)
    }

    /// Removes and returns the packets of one flow (the agent said it is set up). Its place
    /// in the release order is dropped lazily by the next [`HoldStore::release`].
    pub fn release_flow(&mut self, flow: u32, mut out: impl FnMut(u32, usize, u16)) -> bool {
        match self.flows.remove(&flow) {
            Some(f) => {
                for &(p, v) in &f.packets[..usize::from(f.len)] {
                    out(flow, p, v);
                }
                true
            }
            None => false,
        }
    }

    /// Holds packet `pkt` (an opaque handle) of `flow`, received on `vif`, behind those already
    /// held.
    pub fn hold(&mut self, flow: u32, pkt: usize, vif: u16) -> HoldResult {
        let per_flow = self.per_flow;
        let first = !self.flows.contains_key(&flow);
        if first && self.order.len() >= self.order.capacity() && self.order.len() > 2 * self.flows.len() {
            // Drop places of flows released individually before the order vector grows.
            let flows = &self.flows;
            self.order.retain(|f| flows.contains_key(f));
        }
        let f = self.flows.entry(flow).or_insert(HeldFlow { len: 0, packets: [(0, 0); MAX_HELD_PER_FLOW] });
        if usize::from(f.len) >= per_flow {
            return HoldResult::QueueFull;
        }
        f.packets[usize::from(f.len)] = (pkt, vif);
        f.len += 1;
        if first {
            self.order.push(flow);
        }
        HoldResult::Held { first }
    }

    /// Removes and returns the packets of every flow for which `ready(flow)` is true, flows
    /// in hold order and packets in arrival order.
    pub fn release(&mut self, mut ready: impl FnMut(u32) -> bool, mut out: impl FnMut(u32, usize, u16)) {
        // One pass, order kept: O(held flows), whatever how many are released.
        let flows = &mut self.flows;
        self.order.retain(|&flow| {
            if !flows.contains_key(&flow) {
                // Released individually already.
                return false;
            }
            if !ready(flow) {
                return true;
            }
            if let Some(f) = flows.remove(&flow) {
                for &(p, v) in &f.packets[..usize::from(f.len)] {
                    out(flow, p, v);
                }
            }
            false
        });
    }
}

#[cfg(test)]
mod hold_tests {
    use super::*;

    #[test]
    fn holds_up_to_the_limit_and_releases_in_order() {
        let mut h = HoldStore::new(3, 8);
        assert_eq!(h.hold(7, 100, 1), HoldResult::Held { first: true });
        assert_eq!(h.hold(9, 200, 2), HoldResult::Held { first: true });
        assert_eq!(h.hold(7, 101, 1), HoldResult::Held { first: false });
        assert_eq!(h.hold(7, 102, 1), HoldResult::Held { first: false });
        assert_eq!(h.hold(7, 103, 1), HoldResult::QueueFull);
        assert!(h.contains(7) && h.contains(9) && !h.contains(8));
        let mut out = Vec::new();
        h.release(|f| f == 7, |f, p, v| out.push((f, p, v)));
        assert_eq!(out, vec![(7, 100, 1), (7, 101, 1), (7, 102, 1)]);
        assert_eq!(h.flows(), 1);
        h.release(|_| true, |f, p, v| out.push((f, p, v)));
        assert_eq!(out.last(), Some(&(9, 200, 2)));
        assert!(h.is_empty());
    }
}
