//! ICMP Time Exceeded answers to VMs (traceroute through the vRouter), and the per-lcore
//! token bucket that limits them.
//!
//! A packet routed from a VM vif whose IPv4 TTL or IPv6 hop limit would reach zero is
//! dropped (`TTL Exceeded`, as before) and, when it may be answered, rewritten in its own
//! buffer into the answer: ICMPv4 type 11 code 0 quoting the IP header and the first 8
//! bytes of payload (RFC 792), or ICMPv6 type 3 code 0 quoting as much of the packet as
//! fits in 1280 bytes (RFC 4443 §3.3), from the VRF's `gateway_ip`/`gateway_ip6` to the
//! packet's source, out of the ingress vif from the vif MAC to the VM's MAC. The verdict is
//! then [`Verdict::Reply`]: the data plane counts the drop, asks its [`TokenBucket`], and
//! transmits the answer or frees it (a suppressed answer).
//!
//! Never answered (RFC 1122 §3.2.2, RFC 4443 §2.4 e): packets from fabric/host vifs, ICMP
//! errors, non-first fragments, multicast/broadcast destinations, sources that do not name
//! one host (unspecified, multicast, broadcast, loopback), frames from a multicast MAC, and
//! IPv6 packets whose extension-header chain cannot be walked.
//!
//! All of this is the cold path: it runs only once the TTL check has already failed.

use super::{PacketBuf, Verdict};
use crate::config::{VifType, DEFAULT_GATEWAY_IP, DEFAULT_GATEWAY_IP6};
use crate::drop_reason::DropReason;
use crate::fib::{Fib, Vif};
use crate::packet::{ethernet, icmp, icmpv6, ipv4, ipv6, EtherType, IpProtocol};

const ETH: usize = ethernet::HEADER_LEN;
/// TTL / hop limit of the answers.
pub const ANSWER_TTL: u8 = 64;
/// IPv4 TOS of the answers: precedence "internetwork control" (0xc0), as Linux routers send.
pub const ANSWER_TOS: u8 = 0xc0;
/// Largest IPv6 answer (RFC 4443: the minimum MTU).
pub const MAX_V6_ANSWER: usize = 1280;
/// Bytes of the offending packet an ICMPv6 answer quotes at most.
pub const MAX_V6_QUOTE: usize = MAX_V6_ANSWER - ipv6::HEADER_LEN - icmpv6::HEADER_LEN;

/// The verdict for an IPv4 packet from `vif` whose TTL expired (Ethernet frame at offset 0,
/// trimmed to the IP total length): `Reply` with the buffer rewritten into the Time
/// Exceeded answer, else `Drop(TtlExceeded)` with the buffer unspecified.
#[cold]
#[inline(never)]
pub(super) fn time_exceeded_v4<B: PacketBuf>(fib: &Fib, vif: &Vif, pkt: &mut B) -> Verdict {
    const DROP: Verdict = Verdict::Drop(DropReason::TtlExceeded);
    if vif.kind != VifType::Virtual {
        return DROP;
    }
    let (to_mac, to, quote) = {
        let Ok(eth) = ethernet::Frame::new_checked(pkt.data()) else { return DROP };
        let Ok(ip) = ipv4::Packet::new_checked(eth.payload()) else { return DROP };
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        if ethernet::is_multicast(&eth.src_addr())
            || dst.is_multicast()
            || dst.is_broadcast()
            || src.is_unspecified()
            || src.is_multicast()
            || src.is_broadcast()
            || src.is_loopback()
            || ip.frag_offset() != 0
        {
            return DROP;
        }
        let payload = ip.payload();
        if ip.protocol() == IpProtocol::ICMP {
            match payload.first() {
                Some(&t) if !is_icmp_error(t) => {}
                _ => return DROP,
            }
        }
        (eth.src_addr(), src, ip.header_len() + payload.len().min(8))
    };
    let from = fib.vrf(vif.vrf).and_then(|v| v.gateway_ip).unwrap_or(DEFAULT_GATEWAY_IP);
    const GROW: usize = ipv4::HEADER_LEN + icmp::HEADER_LEN;
    if !make_room(pkt, GROW, quote) {
        return DROP;
    }
    let d = pkt.data_mut();
    write_eth(d, to_mac, vif.mac, EtherType::IPV4);
    let ip_end = ETH + ipv4::HEADER_LEN;
    {
        let mut ip = ipv4::Packet::new_unchecked(&mut d[ETH..ip_end]);
        ip.set_version(4);
        ip.set_header_len(ipv4::HEADER_LEN);
        ip.set_dscp(ANSWER_TOS >> 2);
        ip.set_ecn(0);
        ip.set_total_len((GROW + quote) as u16);
        ip.set_ident(0);
        ip.clear_flags();
        ip.set_frag_offset(0);
        ip.set_ttl(ANSWER_TTL);
        ip.set_protocol(IpProtocol::ICMP);
        ip.set_src_addr(from);
        ip.set_dst_addr(to);
        ip.fill_checksum();
    }
    let mut m = icmp::Packet::new_unchecked(&mut d[ip_end..]);
    m.set_msg_type(icmp::TYPE_TIME_EXCEEDED);
    m.set_msg_code(icmp::CODE_TTL_EXCEEDED);
    m.set_rest_of_header(0);
    m.fill_checksum();
    Verdict::Reply { vif: vif.id, drop: DropReason::TtlExceeded }
}

/// The IPv6 counterpart of [`time_exceeded_v4`] (frame trimmed to the payload length).
#[cold]
#[inline(never)]
pub(super) fn time_exceeded_v6<B: PacketBuf>(fib: &Fib, vif: &Vif, pkt: &mut B) -> Verdict {
    const DROP: Verdict = Verdict::Drop(DropReason::TtlExceeded);
    if vif.kind != VifType::Virtual {
        return DROP;
    }
    let (to_mac, to, quote) = {
        let Ok(eth) = ethernet::Frame::new_checked(pkt.data()) else { return DROP };
        let Ok(ip) = ipv6::Packet::new_checked(eth.payload()) else { return DROP };
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        if ethernet::is_multicast(&eth.src_addr())
            || dst.is_multicast()
            || src.is_unspecified()
            || src.is_multicast()
            || src.is_loopback()
            || !may_answer_v6(ip.next_header(), ip.payload())
        {
            return DROP;
        }
        (eth.src_addr(), src, (ipv6::HEADER_LEN + ip.payload().len()).min(MAX_V6_QUOTE))
    };
    let from = fib.vrf(vif.vrf).and_then(|v| v.gateway_ip6).unwrap_or(DEFAULT_GATEWAY_IP6);
    const GROW: usize = ipv6::HEADER_LEN + icmpv6::HEADER_LEN;
    if !make_room(pkt, GROW, quote) {
        return DROP;
    }
    let d = pkt.data_mut();
    write_eth(d, to_mac, vif.mac, EtherType::IPV6);
    let ip_end = ETH + ipv6::HEADER_LEN;
    {
        let mut ip = ipv6::Packet::new_unchecked(&mut d[ETH..ip_end]);
        ip.set_version(6);
        ip.set_traffic_class(0);
        ip.set_flow_label(0);
        ip.set_payload_len((icmpv6::HEADER_LEN + quote) as u16);
        ip.set_next_header(IpProtocol::ICMPV6);
        ip.set_hop_limit(ANSWER_TTL);
        ip.set_src_addr(from);
        ip.set_dst_addr(to);
    }
    let mut m = icmpv6::Packet::new_unchecked(&mut d[ip_end..]);
    m.set_msg_type(icmpv6::TYPE_TIME_EXCEEDED);
    m.set_msg_code(0);
    m.set_rest_of_header(0);
    m.fill_checksum(from, to);
    Verdict::Reply { vif: vif.id, drop: DropReason::TtlExceeded }
}

/// ICMPv4 error types (RFC 1122 §3.2.2): no error is sent about one of these.
fn is_icmp_error(t: u8) -> bool {
    matches!(
        t,
        icmp::TYPE_DEST_UNREACHABLE | 4 | icmp::TYPE_REDIRECT | icmp::TYPE_TIME_EXCEEDED | icmp::TYPE_PARAMETER_PROBLEM
    )
}

/// Walks the IPv6 extension headers after the fixed header: false for a non-first fragment,
/// an ICMPv6 error (types below 128) or a chain that cannot be read (truncated, longer
/// than 8 headers).
fn may_answer_v6(mut next: u8, mut rest: &[u8]) -> bool {
    for _ in 0..8 {
        let len = match next {
            // Hop-by-hop, routing, destination options: (length + 1) * 8 bytes.
            0 | 43 | 60 => match rest.get(1) {
                Some(&l) => (usize::from(l) + 1) * 8,
                None => return false,
            },
            IpProtocol::IPV6_FRAG => {
                let Some(b) = rest.get(2..4) else { return false };
                if u16::from_be_bytes([b[0], b[1]]) >> 3 != 0 {
                    return false;
                }
                8
            }
            // Authentication header: (length + 2) * 4 bytes.
            51 => match rest.get(1) {
                Some(&l) => (usize::from(l) + 2) * 4,
                None => return false,
            },
            IpProtocol::ICMPV6 => return matches!(rest.first(), Some(&t) if t >= 128),
            _ => return true,
        };
        let (Some(&n), Some(tail)) = (rest.first(), rest.get(len..)) else { return false };
        next = n;
        rest = tail;
    }
    false
}

/// Makes the frame `ETH + grow + quote` bytes long with the `quote` bytes that started at
/// `ETH` now at `ETH + grow`: by prepending `grow` bytes of headroom (the quote then is
/// where it was, nothing moves), else by growing the tail and moving the quote.
fn make_room<B: PacketBuf>(pkt: &mut B, grow: usize, quote: usize) -> bool {
    let len = ETH + grow + quote;
    if !pkt.prepend(grow) {
        let have = pkt.data().len();
        if have < ETH + quote || (have < len && !pkt.append(len - have)) {
            return false;
        }
        pkt.data_mut().copy_within(ETH..ETH + quote, ETH + grow);
    }
    pkt.data().len() >= len && pkt.trim_to(len)
}

fn write_eth(d: &mut [u8], dst: [u8; 6], src: [u8; 6], ethertype: u16) {
    let mut eth = ethernet::Frame::new_unchecked(d);
    eth.set_dst_addr(dst);
    eth.set_src_addr(src);
    eth.set_ethertype(ethertype);
}

/// A token bucket on the TSC: `rate` answers per second, at most `burst` back to back.
/// One per forwarding lcore (no sharing, no atomics). Exact in integer ticks: a token costs
/// `hz / rate` ticks and the bucket holds at most `burst` tokens' worth.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    /// Ticks per token; 0 = never allow (rate 0).
    cost: u64,
    cap: u64,
    credit: u64,
    last: Option<u64>,
}

impl TokenBucket {
    /// A full bucket. `hz`: ticks per second of the clock `allow` is given.
    pub fn new(rate: u32, burst: u32, hz: u64) -> TokenBucket {
        let cost = if rate == 0 { 0 } else { (hz / u64::from(rate)).max(1) };
        let cap = cost.saturating_mul(u64::from(burst.max(1)));
        TokenBucket { cost, cap, credit: cap, last: None }
    }

    /// Takes one token at time `now` (ticks, non-decreasing); false when none is left.
    pub fn allow(&mut self, now: u64) -> bool {
        if self.cost == 0 {
            return false;
        }
        // Time never goes back for the bucket: an older stamp than the last one (a caller
        // without a fresh TSC) adds no credit and does not move `last` back.
        match self.last {
            Some(last) if now <= last => {}
            Some(last) => {
                self.credit = self.credit.saturating_add(now - last).min(self.cap);
                self.last = Some(now);
            }
            None => self.last = Some(now),
        }
        if self.credit >= self.cost {
            self.credit -= self.cost;
            true
        } else {
            false
        }
    }
}
