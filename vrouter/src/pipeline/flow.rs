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
//! other's reverse), other ICMP uses 0 and the type. Fragments use ports 0 so every fragment
//! of a datagram maps to one flow (there is no fragment table).

use super::Verdict;
use crate::drop_reason::DropReason;
use crate::packet::{ipv4, ipv6, IpProtocol};
use flow_table::{tcp_flags, Action, FlowKey, FlowTable, Lookup};

/// Per-packet flow context handed to the pipeline by the lcore loop.
pub struct FlowStage<'t> {
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
    pub key: &'a FlowKey,
    pub hash: u32,
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
    let (sport, dport) = key_ports(proto, ip.payload(), !ip.is_fragment());
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

/// The flow key of an IPv6 packet in `vrf` (extension headers are not walked).
#[inline]
pub fn key_v6(vrf: u32, ip: &ipv6::Packet<&[u8]>) -> FlowKey {
    let proto = ip.next_header();
    let (sport, dport) = key_ports(proto, ip.payload(), true);
    FlowKey::v6(vrf, proto, ip.src_addr(), ip.dst_addr(), sport, dport)
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
    fn apply(
        &mut self,
        key: &FlowKey,
        hash: u32,
        found: Option<u32>,
        ip_len: u32,
        proto: u8,
        l4: &[u8],
        frame: MirrorFrame<'_>,
    ) -> Result<(), Verdict> {
        // A burst hit is still valid: entries are only reused after this lcore's next
        // quiescent point. A burst miss is looked up again (an earlier packet of the burst,
        // or another lcore, may have created the flow since): by `lookup_or_hold` itself
        // when a flow may be created, which looks up before it inserts.
        let (idx, created) = match found {
            Some(i) => (i, false),
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
        if !self.reinject {
            self.table.account_as(self.lcore, idx, ip_len, self.now);
            let bits = tcp_bits(proto, l4);
            if bits != 0 {
                self.table.set_tcp_flags(idx, bits);
            }
        }
        let Some(entry) = self.table.entry(idx) else {
            return Err(Verdict::Drop(DropReason::FlowUnusable));
        };
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

    /// Runs [`FlowStage::apply`] with the pre-computed key when it belongs to this packet's
    /// VRF, else with a fresh one from `make`. Returns the key's hash (the data plane reuses
    /// it) with the verdict.
    #[inline(always)]
    pub(super) fn run(
        &mut self,
        vrf: u32,
        make: impl FnOnce() -> FlowKey,
        ip_len: u32,
        proto: u8,
        l4: &[u8],
        frame: MirrorFrame<'_>,
    ) -> (u32, Result<(), Verdict>) {
        match self.pre.take() {
            Some(p) if p.key.vrf() == vrf => (p.hash, self.apply(p.key, p.hash, p.found, ip_len, proto, l4, frame)),
            _ => {
                let key = make();
                let hash = key.hash();
                let found = self.held_flow.filter(|&i| self.table.is_entry_of(i, &key, hash));
                (hash, self.apply(&key, hash, found, ip_len, proto, l4, frame))
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
            let (src, dst) = (std::net::Ipv4Addr::new(10, 1, 2, 3), std::net::Ipv4Addr::new(192, 168, 7, 9));
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
    Held { first: bool },
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

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// Flows with packets held here.
    #[inline]
    pub fn flows(&self) -> usize {
        self.flows.len()
    }

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
