//! End-to-end forwarding through the real vRouter binary: real EAL, pcap virtual devices in
//! and out, frames compared byte for byte, counters exact (in = out + drops by reason).

mod common;
use common::*;
use vrouter::drop_reason::DropReason;

fn vm1_udp_to(dst: &str, ttl: u8) -> (Vec<u8>, Vec<u8>) {
    let ip = ipv4_udp(ip4("192.168.1.3"), ip4(dst), ttl, 40000, 5201, b"vrouter-test-payload");
    (eth(mac(ROUTER_MAC), mac(VM1_MAC), 0x0800, &ip), ip)
}

#[test]
fn vm_to_vm_same_host() {
    let (frame, ip) = vm1_udp_to("192.168.1.4", 64);
    let out = run(Inputs { vm1: vec![frame.clone(), frame], ..Default::default() });
    let expect = eth(mac(VM2_MAC), mac(ROUTER_MAC), 0x0800, &decrement_ttl_v4(&ip));
    assert_eq!(out.vm2, vec![expect.clone(), expect]);
    assert!(out.vm1.is_empty() && out.fabric.is_empty());
    out.assert_accounted(2);
    assert_eq!(out.vifs[&1].rx_packets, 2);
    assert_eq!(out.vifs[&1].rx_bytes, 2 * 62);
    assert_eq!(out.vifs[&2].tx_packets, 2);
    assert_eq!(out.vifs[&2].tx_bytes, 2 * 62);
    assert_eq!(out.total_drops(), 0);
}

#[test]
fn vm_to_remote_mplsoudp() {
    let (frame, ip) = vm1_udp_to("192.168.2.10", 64);
    let out = run(Inputs { vm1: vec![frame], ..Default::default() });
    let inner = decrement_ttl_v4(&ip);
    let sport = flow_table::tunnel_source_port(flow_table::flow_hash_v4(
        u32::from(ip4("192.168.1.3")),
        u32::from(ip4("192.168.2.10")),
        17,
        40000,
        5201,
    ));
    let mut payload = mpls(40, 64).to_vec();
    payload.extend_from_slice(&inner);
    let expect = tunnel_outer(mac(GW_MAC), mac(FABRIC_MAC), ip4("10.10.0.1"), ip4("10.10.0.2"), sport, 6635, &payload);
    assert_eq!(out.fabric, vec![expect.clone()]);
    out.assert_accounted(1);
    assert_eq!(out.vifs[&0].tx_bytes, expect.len() as u64);
}

#[test]
fn vm_to_remote_vxlan() {
    let (frame, ip) = vm1_udp_to("192.168.3.20", 64);
    let out = run(Inputs { vm1: vec![frame], ..Default::default() });
    let inner_frame = eth(mac(REMOTE_VXLAN_VM_MAC), mac(ROUTER_MAC), 0x0800, &decrement_ttl_v4(&ip));
    let sport = flow_table::tunnel_source_port(flow_table::flow_hash_v4(
        u32::from(ip4("192.168.1.3")),
        u32::from(ip4("192.168.3.20")),
        17,
        40000,
        5201,
    ));
    let mut payload = vxlan(5001).to_vec();
    payload.extend_from_slice(&inner_frame);
    let expect = tunnel_outer(mac(GW_MAC), mac(FABRIC_MAC), ip4("10.10.0.1"), ip4("10.10.0.3"), sport, 4789, &payload);
    assert_eq!(out.fabric, vec![expect]);
    out.assert_accounted(1);
}

#[test]
fn fabric_to_vm_decap_mplsoudp_and_vxlan() {
    // MPLSoUDP label 17 -> vm1 (L3: inner IP gets the VM's L2 header, TTL untouched).
    let inner = ipv4_udp(ip4("192.168.2.10"), ip4("192.168.1.3"), 63, 5201, 40000, b"from-remote");
    let mut mp = mpls(17, 64).to_vec();
    mp.extend_from_slice(&inner);
    let mpls_in = tunnel_outer(mac(FABRIC_MAC), mac(GW_MAC), ip4("10.10.0.2"), ip4("10.10.0.1"), 50000, 6635, &mp);
    // VXLAN VNI 5001 -> VRF 1, inner frame bridged to vm2 by its MAC, unchanged.
    let inner_frame = eth(
        mac(VM2_MAC),
        mac(REMOTE_VXLAN_VM_MAC),
        0x0800,
        &ipv4_udp(ip4("192.168.3.20"), ip4("192.168.1.4"), 63, 5201, 40001, b"vxlan-in"),
    );
    let mut vx = vxlan(5001).to_vec();
    vx.extend_from_slice(&inner_frame);
    let vxlan_in = tunnel_outer(mac(FABRIC_MAC), mac(GW_MAC), ip4("10.10.0.3"), ip4("10.10.0.1"), 50001, 4789, &vx);
    // VXLAN to the vRouter MAC is routed in the VNI's VRF (here to vm1).
    let routed_frame = eth(
        mac(ROUTER_MAC),
        mac(REMOTE_VXLAN_VM_MAC),
        0x0800,
        &ipv4_udp(ip4("192.168.3.20"), ip4("192.168.1.3"), 63, 5201, 40002, b"vxlan-routed"),
    );
    let mut vx2 = vxlan(5001).to_vec();
    vx2.extend_from_slice(&routed_frame);
    let vxlan_routed =
        tunnel_outer(mac(FABRIC_MAC), mac(GW_MAC), ip4("10.10.0.3"), ip4("10.10.0.1"), 50002, 4789, &vx2);

    let out = run(Inputs { fabric: vec![mpls_in, vxlan_in, vxlan_routed], ..Default::default() });
    let expect_vm1_mpls = eth(mac(VM1_MAC), mac(ROUTER_MAC), 0x0800, &inner);
    let expect_vm1_vxlan = eth(mac(VM1_MAC), mac(ROUTER_MAC), 0x0800, &routed_frame[14..]);
    assert_eq!(out.vm1, vec![expect_vm1_mpls, expect_vm1_vxlan]);
    assert_eq!(out.vm2, vec![inner_frame]);
    out.assert_accounted(3);
    assert_eq!(out.total_drops(), 0);
}

#[test]
fn fabric_unknown_label_and_vni_are_dropped() {
    let inner = ipv4_udp(ip4("192.168.2.10"), ip4("192.168.1.3"), 63, 1, 2, b"x");
    let mut mp = mpls(999, 64).to_vec();
    mp.extend_from_slice(&inner);
    let bad_label = tunnel_outer(mac(FABRIC_MAC), mac(GW_MAC), ip4("10.10.0.2"), ip4("10.10.0.1"), 50000, 6635, &mp);
    let mut vx = vxlan(77).to_vec();
    vx.extend_from_slice(&eth(mac(VM2_MAC), mac(GW_MAC), 0x0800, &inner));
    let bad_vni = tunnel_outer(mac(FABRIC_MAC), mac(GW_MAC), ip4("10.10.0.3"), ip4("10.10.0.1"), 50001, 4789, &vx);
    let out = run(Inputs { fabric: vec![bad_label, bad_vni], ..Default::default() });
    assert!(out.vm1.is_empty() && out.vm2.is_empty());
    assert_eq!(out.drop_list(), vec![(DropReason::InvalidLabel, 1), (DropReason::InvalidVnid, 1)]);
    out.assert_accounted(2);
}

#[test]
fn ipv6_forwarding() {
    let ip = ipv6_udp(ip6("fd00:1::3"), ip6("fd00:1::4"), 64, 1000, 2000, b"v6-payload");
    let frame = eth(mac(ROUTER_MAC), mac(VM1_MAC), 0x86dd, &ip);
    let out = run(Inputs { vm1: vec![frame], ..Default::default() });
    let mut fwd = ip.clone();
    fwd[7] = 63;
    assert_eq!(out.vm2, vec![eth(mac(VM2_MAC), mac(ROUTER_MAC), 0x86dd, &fwd)]);
    out.assert_accounted(1);
}

#[test]
fn ipv6_to_remote_over_mplsoudp() {
    let ip = ipv6_udp(ip6("fd00:1::3"), ip6("fd00:2::9"), 64, 1000, 2000, b"v6-remote");
    let frame = eth(mac(ROUTER_MAC), mac(VM1_MAC), 0x86dd, &ip);
    let out = run(Inputs { vm1: vec![frame], ..Default::default() });
    let mut inner = ip.clone();
    inner[7] = 63;
    let sport = flow_table::tunnel_source_port(flow_table::flow_hash_v6(
        &ip6("fd00:1::3").octets(),
        &ip6("fd00:2::9").octets(),
        17,
        1000,
        2000,
    ));
    let mut payload = mpls(40, 64).to_vec();
    payload.extend_from_slice(&inner);
    let expect = tunnel_outer(mac(GW_MAC), mac(FABRIC_MAC), ip4("10.10.0.1"), ip4("10.10.0.2"), sport, 6635, &payload);
    assert_eq!(out.fabric, vec![expect]);
    out.assert_accounted(1);
}

#[test]
fn no_route_discard_and_ttl_expiry_are_counted_drops() {
    let (no_route, _) = vm1_udp_to("172.16.0.1", 64);
    let (discard, _) = vm1_udp_to("192.168.9.1", 64);
    let (ttl1, _) = vm1_udp_to("192.168.1.4", 1);
    let (ttl0, _) = vm1_udp_to("192.168.1.4", 0);
    let (ok, _) = vm1_udp_to("192.168.1.4", 2);
    let out = run(Inputs { vm1: vec![no_route, discard, ttl1, ttl0, ok], ..Default::default() });
    assert_eq!(out.vm2.len(), 1);
    assert_eq!(out.vm2[0][14 + 8], 1, "TTL 2 leaves as 1");
    // The two expired packets are answered (ICMP Time Exceeded, see below).
    assert_eq!(out.vm1.len(), 2);
    assert!(out.vm1.iter().all(|f| f[14 + 9] == 1 && f[14 + 20] == 11), "ICMP type 11");
    assert_eq!(out.mirror.icmp_errors_sent, 2);
    assert_eq!(
        out.drop_list(),
        vec![(DropReason::Discard, 1), (DropReason::TtlExceeded, 2), (DropReason::NoL3Route, 1)]
    );
    assert_eq!(out.vif_drops[&1][DropReason::TtlExceeded.index()], 2);
    out.assert_accounted(5);
}

#[test]
fn arp_requests_are_answered_for_routed_addresses() {
    let req = pad60(eth(
        [0xff; 6],
        mac(VM1_MAC),
        0x0806,
        &arp(1, mac(VM1_MAC), ip4("192.168.1.3"), [0; 6], ip4("192.168.1.4")),
    ));
    let unknown = pad60(eth(
        [0xff; 6],
        mac(VM1_MAC),
        0x0806,
        &arp(1, mac(VM1_MAC), ip4("192.168.1.3"), [0; 6], ip4("172.16.5.5")),
    ));
    let garp = pad60(eth(
        [0xff; 6],
        mac(VM1_MAC),
        0x0806,
        &arp(1, mac(VM1_MAC), ip4("192.168.1.3"), [0; 6], ip4("192.168.1.3")),
    ));
    // The fabric answers for the vRouter's own address.
    let fabric_req =
        pad60(eth([0xff; 6], mac(GW_MAC), 0x0806, &arp(1, mac(GW_MAC), ip4("10.10.0.254"), [0; 6], ip4("10.10.0.1"))));
    let out = run(Inputs { vm1: vec![req, unknown, garp], fabric: vec![fabric_req], ..Default::default() });
    let reply = pad60(eth(
        mac(VM1_MAC),
        mac(ROUTER_MAC),
        0x0806,
        &arp(2, mac(ROUTER_MAC), ip4("192.168.1.4"), mac(VM1_MAC), ip4("192.168.1.3")),
    ));
    assert_eq!(out.vm1, vec![reply]);
    let fabric_reply = pad60(eth(
        mac(GW_MAC),
        mac(FABRIC_MAC),
        0x0806,
        &arp(2, mac(FABRIC_MAC), ip4("10.10.0.1"), mac(GW_MAC), ip4("10.10.0.254")),
    ));
    assert_eq!(out.fabric, vec![fabric_reply]);
    assert_eq!(out.drop_list(), vec![(DropReason::TrapNoIf, 1), (DropReason::NoL3Route, 1)]);
    out.assert_accounted(4);
}

#[test]
fn ipv6_neighbour_solicitation_is_answered() {
    let target = ip6("fd00:1::4");
    let src = ip6("fd00:1::3");
    let solicited = ip6("ff02::1:ff00:4");
    let mut ns = vec![135, 0, 0, 0, 0, 0, 0, 0];
    ns.extend_from_slice(&target.octets());
    ns.extend_from_slice(&[1, 1]);
    ns.extend_from_slice(&mac(VM1_MAC));
    let body = icmpv6(src, solicited, &ns);
    let mut pkt = ipv6_hdr(src, solicited, 58, 255, body.len());
    pkt.extend_from_slice(&body);
    let frame = eth([0x33, 0x33, 0xff, 0, 0, 4], mac(VM1_MAC), 0x86dd, &pkt);
    let out = run(Inputs { vm1: vec![frame], ..Default::default() });

    let mut na = vec![136, 0, 0, 0, 0xe0, 0, 0, 0];
    na.extend_from_slice(&target.octets());
    na.extend_from_slice(&[2, 1]);
    na.extend_from_slice(&mac(ROUTER_MAC));
    let body = icmpv6(target, src, &na);
    let mut reply = ipv6_hdr(target, src, 58, 255, body.len());
    reply.extend_from_slice(&body);
    assert_eq!(out.vm1, vec![eth(mac(VM1_MAC), mac(ROUTER_MAC), 0x86dd, &reply)]);
    out.assert_accounted(1);
}

#[test]
fn malformed_packets_are_dropped_with_reasons() {
    let (good, ip) = vm1_udp_to("192.168.1.4", 64);
    // Truncated IPv4: the frame ends inside the IP header.
    let truncated = eth(mac(ROUTER_MAC), mac(VM1_MAC), 0x0800, &ip[..12]);
    // IHL of 4 (< 5).
    let mut bad_ihl = good.clone();
    bad_ihl[14] = 0x44;
    // Total length larger than the frame.
    let mut bad_len = good.clone();
    bad_len[16] = 0x05;
    bad_len[17] = 0xdc;
    // Total length shorter than the header.
    let mut short_len = good.clone();
    short_len[16] = 0;
    short_len[17] = 10;
    // Runt Ethernet frame.
    let runt = vec![0u8; 10];
    // Wrong IP version.
    let mut bad_version = good.clone();
    bad_version[14] = 0x55;
    let out = run(Inputs {
        vm1: vec![truncated, bad_ihl, bad_len, short_len, runt, bad_version, good],
        ..Default::default()
    });
    assert_eq!(out.vm2.len(), 1, "only the good packet is forwarded");
    assert_eq!(out.drop_list(), vec![(DropReason::PullFails, 3), (DropReason::InvalidPacket, 3)]);
    out.assert_accounted(7);
}

#[test]
fn ecmp_spreads_flows_over_members_and_keeps_each_flow_on_one() {
    let mut frames = Vec::new();
    for sport in 0..64u16 {
        let ip = ipv4_udp(ip4("192.168.1.3"), ip4("192.168.10.7"), 64, 1000 + sport, 80, b"ecmp");
        let f = eth(mac(ROUTER_MAC), mac(VM1_MAC), 0x0800, &ip);
        frames.push(f.clone());
        frames.push(f);
    }
    let out = run(Inputs { vm1: frames, ..Default::default() });
    assert_eq!(out.fabric.len(), 128);
    let mut per_flow = std::collections::HashMap::new();
    let mut to_a = 0;
    for f in &out.fabric {
        let dst = &f[30..34];
        let inner_sport = u16::from_be_bytes([f[14 + 20 + 8 + 4 + 20], f[14 + 20 + 8 + 4 + 21]]);
        let prev = per_flow.insert(inner_sport, dst.to_vec());
        if let Some(p) = prev {
            assert_eq!(p, dst.to_vec(), "flow {inner_sport} changed member");
        }
        if dst == [10, 10, 0, 2] {
            to_a += 1;
        }
    }
    assert!(to_a > 20 && to_a < 108, "{to_a}/128 to member A: not spread");
    out.assert_accounted(128);
}

#[test]
fn l2_bridging_and_unknown_mac() {
    let ip = ipv4_udp(ip4("192.168.1.3"), ip4("192.168.1.4"), 64, 1, 2, b"bridged");
    let bridged = eth(mac(VM2_MAC), mac(VM1_MAC), 0x0800, &ip);
    let unknown = eth(mac("02:00:00:00:99:99"), mac(VM1_MAC), 0x0800, &ip);
    let bcast = eth([0xff; 6], mac(VM1_MAC), 0x0800, &ip);
    let out = run(Inputs { vm1: vec![bridged.clone(), unknown, bcast], ..Default::default() });
    assert_eq!(out.vm2, vec![bridged], "bridged frames are not rewritten");
    assert_eq!(out.drop_list(), vec![(DropReason::NowhereToGo, 1), (DropReason::NoL2Route, 1)]);
    out.assert_accounted(3);
}

#[test]
fn every_rx_queue_of_a_multi_queue_port_is_polled() {
    let (a, ip_a) = vm1_udp_to("192.168.1.4", 64);
    let ip_b = ipv4_udp(ip4("192.168.1.3"), ip4("192.168.1.4"), 64, 40001, 5201, b"queue-one");
    let b = eth(mac(ROUTER_MAC), mac(VM1_MAC), 0x0800, &ip_b);
    let out = run(Inputs {
        vm1: vec![a.clone(), a],
        more_rx: [vec![], vec![vec![b.clone(), b, vec![1, 2, 3]]], vec![]],
        ..Default::default()
    });
    let fa = eth(mac(VM2_MAC), mac(ROUTER_MAC), 0x0800, &decrement_ttl_v4(&ip_a));
    let fb = eth(mac(VM2_MAC), mac(ROUTER_MAC), 0x0800, &decrement_ttl_v4(&ip_b));
    let mut got = out.vm2.clone();
    got.sort();
    let mut want = vec![fa.clone(), fa, fb.clone(), fb];
    want.sort();
    assert_eq!(got, want);
    assert_eq!(out.drop_list(), vec![(DropReason::PullFails, 1)]);
    assert!(out.stdout.contains("vif0/1 q0") && out.stdout.contains("vif0/1 q1"), "{}", out.stdout);
    out.assert_accounted(5);
}

/// The ICMP Time Exceeded answer expected for `ip` (an IPv4 packet from vm1) from `gw`.
fn time_exceeded_v4(ip: &[u8], gw: &str) -> Vec<u8> {
    let mut icmp = vec![11, 0, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&ip[..28]);
    let c = csum(&icmp, 0);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let total = 20 + icmp.len();
    let mut h = vec![0x45, 0xc0, (total >> 8) as u8, total as u8, 0, 0, 0, 0, 64, 1, 0, 0];
    h.extend_from_slice(&ip4(gw).octets());
    h.extend_from_slice(&ip[12..16]);
    let c = csum(&h, 0);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(&icmp);
    eth(mac(VM1_MAC), mac(ROUTER_MAC), 0x0800, &h)
}

/// traceroute's first probes through the vRouter: a VM's UDP packet with TTL 1 (to a
/// remote VM over MPLSoUDP) and an IPv6 one with hop limit 1 are `TTL Exceeded` drops, each
/// answered with exactly one ICMP(v6) Time Exceeded out of the VM's own vif, from the VRF's
/// gateway address (IPv4, configured) or the default fe80::1 (IPv6, not configured); the
/// answers are TX of the vif, bytes included.
#[test]
fn ttl_expiry_is_answered_with_icmp_time_exceeded() {
    let (probe, ip) = vm1_udp_to("192.168.2.10", 1);
    let ip6_probe = ipv6_udp(ip6("fd00:1::3"), ip6("fd00:2::9"), 1, 33434, 33435, b"traceroute-v6");
    let probe6 = eth(mac(ROUTER_MAC), mac(VM1_MAC), 0x86dd, &ip6_probe);
    let out = run_with(Inputs { vm1: vec![probe, probe6], ..Default::default() }, |c| {
        c.replacen("vxlan_vni = 5001", "vxlan_vni = 5001\ngateway_ip = \"192.168.1.1\"", 1)
    });
    assert!(out.fabric.is_empty() && out.vm2.is_empty(), "nothing forwarded");

    let want4 = time_exceeded_v4(&ip, "192.168.1.1");
    let mut body = vec![3, 0, 0, 0, 0, 0, 0, 0];
    body.extend_from_slice(&ip6_probe);
    let icmp6 = icmpv6(ip6("fe80::1"), ip6("fd00:1::3"), &body);
    let mut l3 = ipv6_hdr(ip6("fe80::1"), ip6("fd00:1::3"), 58, 64, icmp6.len());
    l3.extend_from_slice(&icmp6);
    let want6 = eth(mac(VM1_MAC), mac(ROUTER_MAC), 0x86dd, &l3);
    assert_eq!(out.vm1, vec![want4.clone(), want6.clone()], "exactly one answer per probe");

    assert_eq!(out.drop_list(), vec![(DropReason::TtlExceeded, 2)]);
    assert_eq!(out.vif_drops[&1][DropReason::TtlExceeded.index()], 2);
    let v1 = &out.vifs[&1];
    assert_eq!((v1.tx_packets, v1.tx_bytes), (2, (want4.len() + want6.len()) as u64), "the answers are vm1's TX");
    assert_eq!((out.mirror.icmp_errors_sent, out.mirror.icmp_errors_suppressed), (2, 0));
    out.assert_accounted(2);
}

/// Over the rate limit nothing is answered: with `icmp_error_rate = 1` and a burst of 2,
/// five expired packets in one run get exactly two answers; the other three are counted as
/// suppressed, all five as `TTL Exceeded` drops. Stateless forwarding (no flow hold), so the
/// five arrive in one RX burst, well within the second that would refill a token.
#[test]
fn time_exceeded_answers_are_rate_limited() {
    let probes: Vec<Vec<u8>> = (0..5u16)
        .map(|i| {
            let ip = ipv4_udp(ip4("192.168.1.3"), ip4("192.168.1.4"), 1, 40000, 33434 + i, b"probe");
            eth(mac(ROUTER_MAC), mac(VM1_MAC), 0x0800, &ip)
        })
        .collect();
    let out = run_with(Inputs { vm1: probes, ..Default::default() }, |c| {
        c.replacen("summary_interval_s = 0", "summary_interval_s = 0\nicmp_error_rate = 1\nicmp_error_burst = 2", 1)
            + "\n[flow]\nenabled = false\n"
    });
    assert_eq!(out.vm1.len(), 2);
    assert_eq!(out.drop_list(), vec![(DropReason::TtlExceeded, 5)]);
    assert_eq!((out.mirror.icmp_errors_sent, out.mirror.icmp_errors_suppressed), (2, 3));
    assert_eq!(out.vifs[&1].tx_packets, 2);
    out.assert_accounted(5);
}
