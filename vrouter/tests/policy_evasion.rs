//! Policy and security groups hold for every packet a VM can shape: IPv4 and IPv6
//! fragments (in order and out of order), IPv6 extension headers in front of UDP and TCP,
//! and ICMP errors. Real vRouter, real EAL, pcap vdevs; frames compared byte for byte and
//! flow counters compared with what was sent.

mod common;
use common::*;
use flow_table::{Action, FlowSnapshot, FlowTableReader, FLOW_DR_POLICY, FLOW_DR_SG};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use vrouter::drop_reason::DropReason;

const DENY_UDP_53: &str = "bbbbbbbb-0000-4000-8000-000000000053";
const DENY_TCP_53: &str = "bbbbbbbb-0000-4000-8000-000000000153";
const PASS_UDP_53: &str = "bbbbbbbb-0000-4000-8000-0000000000a5";
const PASS_TCP_53: &str = "bbbbbbbb-0000-4000-8000-0000000001a5";
const PASS_ALL: &str = "bbbbbbbb-0000-4000-8000-0000000000ff";
const SG_DNS: &str = "cccccccc-0000-4000-8000-000000000053";
const SG_WEB: &str = "cccccccc-0000-4000-8000-000000000080";
const SG_EGRESS: &str = "cccccccc-0000-4000-8000-0000000000e0";

const UDP: u8 = 17;
const TCP: u8 = 6;

fn vm1_v4() -> Ipv4Addr {
    ip4("192.168.1.3")
}
fn vm2_v4() -> Ipv4Addr {
    ip4("192.168.1.4")
}
fn vm1_v6() -> Ipv6Addr {
    ip6("fd00:1::3")
}
fn vm2_v6() -> Ipv6Addr {
    ip6("fd00:1::4")
}

/// A transport segment (UDP or TCP header + payload) with its checksum over `pseudo`.
fn l4(proto: u8, sport: u16, dport: u16, payload: &[u8], pseudo: u32) -> Vec<u8> {
    if proto == UDP {
        return udp_bytes(sport, dport, payload, pseudo);
    }
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = 0x18; // PSH ACK
    t[14] = 0xff;
    t.extend_from_slice(payload);
    let c = csum(&t, pseudo);
    t[16..18].copy_from_slice(&c.to_be_bytes());
    t
}

fn pseudo(src: &[u8], dst: &[u8], proto: u8, len: usize) -> u32 {
    let mut s = 0u32;
    for w in src.chunks(2).chain(dst.chunks(2)) {
        s += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    s + u32::from(proto) + len as u32
}

/// An IPv4 packet with fragment fields (`offset` in bytes).
fn v4_packet(proto: u8, ident: u16, offset: usize, more: bool, data: &[u8]) -> Vec<u8> {
    let total = 20 + data.len();
    let fo = (offset / 8) as u16 | if more { 0x2000 } else { 0 };
    let mut h = vec![0x45, 0, (total >> 8) as u8, total as u8];
    h.extend_from_slice(&ident.to_be_bytes());
    h.extend_from_slice(&fo.to_be_bytes());
    h.extend_from_slice(&[64, proto, 0, 0]);
    h.extend_from_slice(&vm1_v4().octets());
    h.extend_from_slice(&vm2_v4().octets());
    let c = csum(&h, 0);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(data);
    h
}

/// The fragments of one IPv4 datagram, each `chunk` bytes of data (a multiple of 8).
fn v4_fragments(proto: u8, ident: u16, sport: u16, dport: u16, payload: &[u8], chunk: usize) -> Vec<Vec<u8>> {
    let seg = l4(
        proto,
        sport,
        dport,
        payload,
        pseudo(&vm1_v4().octets(), &vm2_v4().octets(), proto, (if proto == UDP { 8 } else { 20 }) + payload.len()),
    );
    let mut out = Vec::new();
    let mut off = 0;
    while off < seg.len() {
        let end = (off + chunk).min(seg.len());
        out.push(v4_packet(proto, ident, off, end < seg.len(), &seg[off..end]));
        off = end;
    }
    out
}

/// An IPv6 extension header of 8 bytes: hop-by-hop or destination options (a PadN option),
/// or a routing header (type 253, experimental, segments left 0: ignored by a node).
fn ext8(kind: u8, next: u8) -> Vec<u8> {
    match kind {
        43 => vec![next, 0, 253, 0, 0, 0, 0, 0],
        _ => vec![next, 0, 1, 4, 0, 0, 0, 0],
    }
}

/// An IPv6 packet from vm1 to vm2 with `headers` (already chained) then `rest`.
fn v6_packet(first: u8, headers: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut p = ipv6_hdr(vm1_v6(), vm2_v6(), first, 64, headers.len() + rest.len());
    p.extend_from_slice(headers);
    p.extend_from_slice(rest);
    p
}

/// IPv6 fragments of one datagram: a fragment header (id `ident`) in front of each
/// `chunk`-byte piece of the transport segment.
fn v6_fragments(proto: u8, ident: u32, sport: u16, dport: u16, payload: &[u8], chunk: usize) -> Vec<Vec<u8>> {
    let hl = if proto == UDP { 8 } else { 20 };
    let seg =
        l4(proto, sport, dport, payload, pseudo(&vm1_v6().octets(), &vm2_v6().octets(), proto, hl + payload.len()));
    let mut out = Vec::new();
    let mut off = 0;
    while off < seg.len() {
        let end = (off + chunk).min(seg.len());
        let mut fh = vec![proto, 0];
        fh.extend_from_slice(&((off as u16) | u16::from(end < seg.len())).to_be_bytes());
        fh.extend_from_slice(&ident.to_be_bytes());
        out.push(v6_packet(44, &fh, &seg[off..end]));
        off = end;
    }
    out
}

/// One datagram (or packet) sent by vm1, as the frames it is sent in, and the flow it must
/// be counted on.
struct Case {
    name: &'static str,
    v6: bool,
    proto: u8,
    sport: u16,
    dport: u16,
    /// IP packets in the order they are sent.
    packets: Vec<Vec<u8>>,
}

impl Case {
    fn frames(&self) -> Vec<Vec<u8>> {
        let et = if self.v6 { 0x86dd } else { 0x0800 };
        self.packets.iter().map(|p| eth(mac(ROUTER_MAC), mac(VM1_MAC), et, p)).collect()
    }
    /// What vm2 receives when it is forwarded: the vm2 nexthop's MACs, TTL / hop limit - 1.
    fn forwarded(&self) -> Vec<Vec<u8>> {
        self.packets
            .iter()
            .map(|p| {
                if self.v6 {
                    let mut q = p.clone();
                    q[7] -= 1;
                    eth(mac(VM2_MAC), mac(ROUTER_MAC), 0x86dd, &q)
                } else {
                    eth(mac(VM2_MAC), mac(ROUTER_MAC), 0x0800, &decrement_ttl_v4(p))
                }
            })
            .collect()
    }
    fn bytes(&self) -> u64 {
        self.packets.iter().map(|p| p.len() as u64).sum()
    }
    fn flow<'a>(&self, fl: &'a [FlowSnapshot]) -> &'a FlowSnapshot {
        let (src, dst) = if self.v6 {
            (IpAddr::V6(vm1_v6()), IpAddr::V6(vm2_v6()))
        } else {
            (IpAddr::V4(vm1_v4()), IpAddr::V4(vm2_v4()))
        };
        fl.iter()
            .find(|f| {
                f.key.src_ip() == src
                    && f.key.dst_ip() == dst
                    && f.key.proto() == self.proto
                    && f.key.sport() == self.sport
                    && f.key.dport() == self.dport
            })
            .unwrap_or_else(|| {
                panic!(
                    "{}: no flow {src}:{} -> {dst}:{} proto {} in {fl:#?}",
                    self.name, self.sport, self.dport, self.proto
                )
            })
    }
}

/// Every shape of the must-show: each to destination port 53, each its own flow (its own
/// source port), none more than three packets (the per-flow hold queue).
fn cases() -> Vec<Case> {
    let payload: Vec<u8> = (0..100u8).collect();
    let mut v = Vec::new();
    v.push(Case {
        name: "ipv4 udp fragments in order",
        v6: false,
        proto: UDP,
        sport: 4001,
        dport: 53,
        packets: v4_fragments(UDP, 0x101, 4001, 53, &payload, 48),
    });
    let mut ooo = v4_fragments(UDP, 0x102, 4002, 53, &payload, 48);
    ooo.rotate_left(1); // second, third, then the first
    v.push(Case {
        name: "ipv4 udp fragments out of order",
        v6: false,
        proto: UDP,
        sport: 4002,
        dport: 53,
        packets: ooo,
    });
    v.push(Case {
        name: "ipv4 tcp fragments in order",
        v6: false,
        proto: TCP,
        sport: 4003,
        dport: 53,
        packets: v4_fragments(TCP, 0x103, 4003, 53, &payload, 64),
    });
    let mut ooo = v4_fragments(TCP, 0x104, 4004, 53, &payload, 64);
    ooo.reverse();
    v.push(Case {
        name: "ipv4 tcp fragments out of order",
        v6: false,
        proto: TCP,
        sport: 4004,
        dport: 53,
        packets: ooo,
    });
    v.push(Case {
        name: "ipv6 udp fragment header in order",
        v6: true,
        proto: UDP,
        sport: 4005,
        dport: 53,
        packets: v6_fragments(UDP, 0x105, 4005, 53, &payload, 64),
    });
    let mut ooo = v6_fragments(UDP, 0x106, 4006, 53, &payload, 64);
    ooo.reverse();
    v.push(Case {
        name: "ipv6 udp fragment header out of order",
        v6: true,
        proto: UDP,
        sport: 4006,
        dport: 53,
        packets: ooo,
    });
    v.push(Case {
        name: "ipv6 tcp fragment header",
        v6: true,
        proto: TCP,
        sport: 4007,
        dport: 53,
        packets: v6_fragments(TCP, 0x107, 4007, 53, &payload, 48),
    });
    let mut port = 4010;
    for (kind, name_udp, name_tcp) in [
        (0u8, "ipv6 hop-by-hop before udp", "ipv6 hop-by-hop before tcp"),
        (43, "ipv6 routing header before udp", "ipv6 routing header before tcp"),
        (60, "ipv6 destination options before udp", "ipv6 destination options before tcp"),
    ] {
        for (proto, name) in [(UDP, name_udp), (TCP, name_tcp)] {
            let hl = if proto == UDP { 8 } else { 20 };
            let seg =
                l4(proto, port, 53, &payload[..20], pseudo(&vm1_v6().octets(), &vm2_v6().octets(), proto, hl + 20));
            let pkt = v6_packet(kind, &ext8(kind, proto), &seg);
            v.push(Case { name, v6: true, proto, sport: port, dport: 53, packets: vec![pkt.clone(), pkt] });
            port += 1;
        }
    }
    // Two headers: destination options, then a fragment header, before UDP.
    let frags = v6_fragments(UDP, 0x120, port, 53, &payload, 64);
    let chained: Vec<Vec<u8>> = frags.iter().map(|p| v6_packet(60, &ext8(60, 44), &p[40..])).collect();
    v.push(Case {
        name: "ipv6 destination options then fragment header",
        v6: true,
        proto: UDP,
        sport: port,
        dport: 53,
        packets: chained,
    });
    v
}

fn all_frames(cases: &[Case]) -> Vec<Vec<u8>> {
    cases.iter().flat_map(|c| c.frames()).collect()
}

fn flows(run_dir: &std::path::Path) -> Vec<FlowSnapshot> {
    let r = FlowTableReader::open_run_dir(run_dir).expect("flow table");
    r.iter_active().collect()
}

fn network_policy(cfg: String, rules: &[(&str, &str, &str)]) -> String {
    let mut s = format!("{cfg}\n[[network_policy]]\nname = \"dns\"\nvns = [\"default-domain:demo:vn1\"]\n");
    for (uuid, proto, action) in rules {
        s += &format!("[[network_policy.rule]]\nuuid = \"{uuid}\"\n");
        if !proto.is_empty() {
            s += &format!("protocol = \"{proto}\"\ndst_ports = \"53\"\n");
        }
        s += &format!("action = \"{action}\"\n");
    }
    s
}

/// Runs every case through the vRouter with `edit` applied to the configuration; returns
/// the outcome and, per case, the agent's metadata of its flow (read while it runs).
fn run_cases(cases: &[Case], edit: impl FnOnce(String) -> String) -> (Outcome, Vec<serde_json::Value>) {
    let mut metas = Vec::new();
    let out = run_live(Inputs { vm1: all_frames(cases), ..Default::default() }, edit, |run_dir| {
        let fl = flows(run_dir);
        for c in cases {
            let f = c.flow(&fl);
            metas.push(control(run_dir, &serde_json::json!({"cmd": "flow", "index": f.index})));
        }
    });
    (out, metas)
}

fn assert_counted(cases: &[Case], out: &Outcome) {
    let fl = flows(&out.run_dir);
    for c in cases {
        let f = c.flow(&fl);
        assert_eq!((f.packets, f.bytes), (c.packets.len() as u64, c.bytes()), "{}: flow counters", c.name);
    }
}

#[test]
fn a_network_policy_deny_stops_fragments_and_extension_header_packets() {
    let cases = cases();
    let n: u64 = cases.iter().map(|c| c.packets.len() as u64).sum();
    let (out, metas) = run_cases(&cases, |c| {
        network_policy(c, &[(DENY_UDP_53, "udp", "deny"), (DENY_TCP_53, "tcp", "deny"), (PASS_ALL, "", "pass")])
    });
    assert!(out.vm2.is_empty(), "denied packets reached vm2: {} frames", out.vm2.len());
    assert_eq!(out.drop_list(), vec![(DropReason::FlowActionDrop, n)]);
    out.assert_accounted(n);
    assert_counted(&cases, &out);
    let fl = flows(&out.run_dir);
    for (c, meta) in cases.iter().zip(&metas) {
        let f = c.flow(&fl);
        assert_eq!((f.action, f.drop_reason), (Action::Drop, FLOW_DR_POLICY), "{}", c.name);
        let want = if c.proto == UDP { DENY_UDP_53 } else { DENY_TCP_53 };
        assert_eq!(meta["meta"]["nw_ace_uuid"], want, "{}: {meta}", c.name);
    }
}

#[test]
fn a_network_policy_pass_forwards_them_byte_for_byte() {
    let cases = cases();
    let n: u64 = cases.iter().map(|c| c.packets.len() as u64).sum();
    let (out, metas) =
        run_cases(&cases, |c| network_policy(c, &[(PASS_UDP_53, "udp", "pass"), (PASS_TCP_53, "tcp", "pass")]));
    assert_eq!(out.total_drops(), 0, "{:?}", out.drop_list());
    out.assert_accounted(n);
    let mut want: Vec<Vec<u8>> = cases.iter().flat_map(|c| c.forwarded()).collect();
    let mut got = out.vm2.clone();
    want.sort();
    got.sort();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "forwarded frames differ from what was sent (TTL - 1, vm2's MACs)");
    // Per flow, the frames left in the order they were sent (out-of-order datagrams: the
    // first fragment first, then the ones that waited for it, in arrival order).
    for c in &cases {
        let fwd = c.forwarded();
        let seen: Vec<&Vec<u8>> = out.vm2.iter().filter(|f| fwd.contains(f)).collect();
        assert_eq!(seen.len(), fwd.len(), "{}", c.name);
    }
    assert_counted(&cases, &out);
    let fl = flows(&out.run_dir);
    for (c, meta) in cases.iter().zip(&metas) {
        assert_eq!(c.flow(&fl).action, Action::Forward, "{}", c.name);
        let want = if c.proto == UDP { PASS_UDP_53 } else { PASS_TCP_53 };
        assert_eq!(meta["meta"]["nw_ace_uuid"], want, "{}: {meta}", c.name);
    }
}

/// vm2 in a security group that allows only web traffic in (and anything out).
fn security_group(cfg: String, allow_dns: bool) -> String {
    let cfg = cfg.replacen("ip6 = \"fd00:1::4\"\n", "ip6 = \"fd00:1::4\"\nsecurity_groups = [\"vm2\"]\n", 1);
    assert!(cfg.contains("security_groups = [\"vm2\"]"));
    let mut s = format!(
        "{cfg}\n[[security_group]]\nname = \"vm2\"\n\
         [[security_group.rule]]\nuuid = \"{SG_WEB}\"\ndirection = \"ingress\"\nprotocol = \"tcp\"\nports = \"80\"\n\
         [[security_group.rule]]\nuuid = \"{SG_EGRESS}\"\ndirection = \"egress\"\n"
    );
    if allow_dns {
        s += &format!("[[security_group.rule]]\nuuid = \"{SG_DNS}\"\ndirection = \"ingress\"\nports = \"53\"\n");
    }
    s
}

#[test]
fn a_security_group_holds_for_fragments_and_extension_headers() {
    let cases = cases();
    let n: u64 = cases.iter().map(|c| c.packets.len() as u64).sum();
    // Denied: no ingress rule of vm2's group allows port 53.
    let (out, _) = run_cases(&cases, |c| security_group(c, false));
    assert!(out.vm2.is_empty(), "denied packets reached vm2: {} frames", out.vm2.len());
    assert_eq!(out.drop_list(), vec![(DropReason::FlowActionDrop, n)]);
    out.assert_accounted(n);
    assert_counted(&cases, &out);
    let fl = flows(&out.run_dir);
    for c in &cases {
        let f = c.flow(&fl);
        assert_eq!((f.action, f.drop_reason), (Action::Drop, FLOW_DR_SG), "{}", c.name);
    }
    // Allowed by the DNS rule: forwarded, with that rule's UUID.
    let (out, metas) = run_cases(&cases, |c| security_group(c, true));
    assert_eq!(out.total_drops(), 0, "{:?}", out.drop_list());
    out.assert_accounted(n);
    let mut want: Vec<Vec<u8>> = cases.iter().flat_map(|c| c.forwarded()).collect();
    let mut got = out.vm2.clone();
    want.sort();
    got.sort();
    assert!(got == want, "forwarded frames differ from what was sent");
    assert_counted(&cases, &out);
    for (c, meta) in cases.iter().zip(&metas) {
        assert_eq!(meta["meta"]["sg_rule_uuid"], SG_DNS, "{}: {meta}", c.name);
    }
}

#[test]
fn malformed_fragments_and_extension_chains_drop_with_their_reasons() {
    let payload: Vec<u8> = (0..100u8).collect();
    // An overlapping fragment that rewrites the first fragment's UDP ports (RFC 1858).
    let mut frags = v4_fragments(UDP, 0x201, 5001, 80, &payload, 48);
    let overlap = v4_packet(UDP, 0x201, 0, true, &udp_bytes(5001, 53, &payload[..40], 0));
    frags.insert(1, overlap);
    // A tiny first fragment: too short to hold the ports.
    let tiny = [v4_packet(UDP, 0x202, 0, true, &[0x13, 0x89]), v4_packet(UDP, 0x202, 8, false, &[0; 16])];
    // A fragment that ends past 65535 bytes.
    let oversized = v4_packet(UDP, 0x203, 65528, false, &[0; 16]);
    // A later fragment whose first fragment never comes: waits, then times out.
    let orphan = v4_packet(UDP, 0x204, 64, false, &[0; 16]);
    // Nine destination-options headers: past the walk limit.
    let mut chain = Vec::new();
    for i in 0..9 {
        chain.extend(ext8(60, if i == 8 { UDP } else { 60 }));
    }
    let long = v6_packet(60, &chain, &udp_bytes(5002, 53, b"x", 0));
    // A routing header that runs past the packet.
    let short = v6_packet(43, &[UDP, 4, 253, 0, 0, 0, 0, 0], &udp_bytes(5003, 53, b"x", 0));
    let mut packets: Vec<(bool, Vec<u8>)> = frags.iter().map(|p| (false, p.clone())).collect();
    packets.extend(tiny.iter().map(|p| (false, p.clone())));
    packets.push((false, oversized));
    packets.push((false, orphan));
    packets.push((true, long));
    packets.push((true, short));
    let frames: Vec<Vec<u8>> = packets
        .iter()
        .map(|(v6, p)| eth(mac(ROUTER_MAC), mac(VM1_MAC), if *v6 { 0x86dd } else { 0x0800 }, p))
        .collect();
    let n = frames.len() as u64;
    let out = run(Inputs { vm1: frames, ..Default::default() });
    out.assert_accounted(n);
    // The good fragments of the first datagram (first and last) are forwarded; the
    // overlapping one, the tiny first fragment, the oversized one are fragment errors; the
    // tiny datagram's second fragment and the orphan wait and time out (no first fragment
    // recorded); the two IPv6 chains are chain errors.
    assert_eq!(
        out.drop_list(),
        vec![(DropReason::FragmentError, 3), (DropReason::NoFragEntry, 2), (DropReason::Ipv6ExtChain, 2)],
        "{:?}",
        out.drop_list()
    );
    assert_eq!(out.vm2.len(), 3, "the three genuine fragments of the first datagram");
}

/// ICMP destination unreachable (port unreachable) from `from` about `quoted` (an IPv4
/// packet `to` sent), as an IPv4 packet from `from` to `to`.
fn icmp_unreachable(from: Ipv4Addr, to: Ipv4Addr, quoted: &[u8]) -> Vec<u8> {
    let mut m = vec![3u8, 3, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(&quoted[..28]);
    let c = csum(&m, 0);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    let mut ip = ipv4_hdr(from, to, 1, 64, m.len(), false);
    ip.extend_from_slice(&m);
    ip
}

/// ICMPv6 destination unreachable (port unreachable) from `from` about `quoted`.
fn icmp6_unreachable(from: Ipv6Addr, to: Ipv6Addr, quoted: &[u8]) -> Vec<u8> {
    let mut m = vec![1u8, 4, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(quoted);
    let body = icmpv6(from, to, &m);
    let mut ip = ipv6_hdr(from, to, 58, 64, body.len());
    ip.extend_from_slice(&body);
    ip
}

#[test]
fn icmp_errors_pass_only_for_allowed_flows() {
    let allowed = ipv4_udp(vm1_v4(), vm2_v4(), 64, 6000, 9999, b"allowed");
    let denied = ipv4_udp(vm1_v4(), vm2_v4(), 64, 6001, 53, b"denied");
    let never = ipv4_udp(vm1_v4(), vm2_v4(), 64, 6002, 7777, b"never sent");
    let allowed6 = ipv6_udp(vm1_v6(), vm2_v6(), 64, 6003, 9999, b"allowed6");
    let never6 = ipv6_udp(vm1_v6(), vm2_v6(), 64, 6004, 7777, b"never sent 6");
    // vm1's flow to a remote host, which vm2 has nothing to do with.
    let remote = ipv4_udp(vm1_v4(), ip4("192.168.2.10"), 64, 6005, 9999, b"to a remote host");
    let vm1 = vec![
        eth(mac(ROUTER_MAC), mac(VM1_MAC), 0x0800, &allowed),
        eth(mac(ROUTER_MAC), mac(VM1_MAC), 0x0800, &denied),
        eth(mac(ROUTER_MAC), mac(VM1_MAC), 0x86dd, &allowed6),
        eth(mac(ROUTER_MAC), mac(VM1_MAC), 0x0800, &remote),
    ];
    // vm2 answers with ICMP errors. vm2's port is polled after vm1's, so the quoted flows
    // exist (in HOLD or set up) when the errors arrive: an error about a flow that waits for
    // its verdict waits with it.
    let e_allowed = icmp_unreachable(vm2_v4(), vm1_v4(), &allowed);
    let e_denied = icmp_unreachable(vm2_v4(), vm1_v4(), &denied);
    let e_never = icmp_unreachable(vm2_v4(), vm1_v4(), &never);
    // An error whose destination (routed, to the remote vRouter) is not the quoted packet's
    // source.
    let e_misdirected = icmp_unreachable(vm2_v4(), ip4("192.168.2.10"), &allowed);
    let e_allowed6 = icmp6_unreachable(vm2_v6(), vm1_v6(), &allowed6);
    let e_never6 = icmp6_unreachable(vm2_v6(), vm1_v6(), &never6);
    // vm2 reporting an error about vm1's flow to the remote host: a VM only reports errors
    // about packets sent to it (else it could push errors through a deny rule).
    let e_third_party = icmp_unreachable(vm2_v4(), vm1_v4(), &remote);
    let vm2 = vec![
        eth(mac(ROUTER_MAC), mac(VM2_MAC), 0x0800, &e_allowed),
        eth(mac(ROUTER_MAC), mac(VM2_MAC), 0x0800, &e_denied),
        eth(mac(ROUTER_MAC), mac(VM2_MAC), 0x0800, &e_never),
        eth(mac(ROUTER_MAC), mac(VM2_MAC), 0x0800, &e_misdirected),
        eth(mac(ROUTER_MAC), mac(VM2_MAC), 0x86dd, &e_allowed6),
        eth(mac(ROUTER_MAC), mac(VM2_MAC), 0x86dd, &e_never6),
        eth(mac(ROUTER_MAC), mac(VM2_MAC), 0x0800, &e_third_party),
    ];
    let out = run_with(Inputs { vm1, vm2, ..Default::default() }, |c| {
        network_policy(c, &[(DENY_UDP_53, "udp", "deny"), (PASS_ALL, "", "pass")])
    });
    out.assert_accounted(11);
    assert_eq!(out.fabric.len(), 1, "vm1's datagram to the remote host");
    let mut want6 = e_allowed6.clone();
    want6[7] -= 1;
    assert_eq!(
        out.vm1,
        vec![
            eth(mac(VM1_MAC), mac(ROUTER_MAC), 0x0800, &decrement_ttl_v4(&e_allowed)),
            eth(mac(VM1_MAC), mac(ROUTER_MAC), 0x86dd, &want6)
        ],
        "only the errors about allowed flows reach vm1"
    );
    assert_eq!(out.vm2.len(), 2, "the two allowed datagrams");
    // The denied datagram and the error about it (its reverse flow drops too); the error
    // about no flow, v4 and v6, the misdirected one and the third party's.
    assert_eq!(
        out.drop_list(),
        vec![(DropReason::FlowActionDrop, 2), (DropReason::IcmpError, 4)],
        "{:?}",
        out.drop_list()
    );
    // The passing error is counted on the reverse of the flow it quotes.
    let fl = flows(&out.run_dir);
    let rev = fl
        .iter()
        .find(|f| f.key.src_ip() == IpAddr::V4(vm2_v4()) && f.key.sport() == 9999 && f.key.dport() == 6000)
        .expect("reverse flow of the allowed datagram");
    assert_eq!((rev.packets, rev.bytes), (1, e_allowed.len() as u64));
}

#[test]
fn bridged_frames_hold_to_policy_too() {
    // vm1 sends straight to vm2's MAC (bridged, not routed): the deny rule applies all the
    // same, and the frame may only go where its IP routes.
    let bridged = |ip: &[u8]| eth(mac(VM2_MAC), mac(VM1_MAC), 0x0800, ip);
    let dns = ipv4_udp(vm1_v4(), vm2_v4(), 64, 7000, 53, b"bridged dns");
    let web = ipv4_udp(vm1_v4(), vm2_v4(), 64, 7001, 80, b"bridged web");
    let dns6 = ipv6_udp(vm1_v6(), vm2_v6(), 64, 7002, 53, b"bridged dns6");
    // To vm2's MAC but the subnet broadcast address (which routes nowhere, so no security
    // group of vm2 would be asked about it).
    let broadcast = ipv4_udp(vm1_v4(), ip4("192.168.1.255"), 64, 7003, 53, b"broadcast");
    let vm1 = vec![bridged(&dns), bridged(&web), eth(mac(VM2_MAC), mac(VM1_MAC), 0x86dd, &dns6), bridged(&broadcast)];
    let out = run_with(Inputs { vm1, ..Default::default() }, |c| {
        network_policy(c, &[(DENY_UDP_53, "udp", "deny"), (PASS_ALL, "", "pass")])
    });
    out.assert_accounted(4);
    assert_eq!(out.vm2, vec![bridged(&web)], "only the allowed frame, bridged unchanged");
    assert_eq!(
        out.drop_list(),
        vec![(DropReason::FlowActionDrop, 2), (DropReason::BridgeRouteMismatch, 1)],
        "{:?}",
        out.drop_list()
    );
    let fl = flows(&out.run_dir);
    let f = fl.iter().find(|f| f.key.sport() == 7000).expect("the bridged DNS flow");
    assert_eq!((f.action, f.drop_reason, f.packets), (Action::Drop, FLOW_DR_POLICY, 1));
}
