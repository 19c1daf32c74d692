//! Source (anti-spoofing) checks through the real vRouter: spoofed source IPs and MACs
//! from a VM are dropped with their reason and exact counts, allowed address pairs let the
//! same frames through byte for byte, decapsulated packets must come from their source's
//! tunnel endpoint, and flows record the nexthop of their source route (`S(nh)`).

mod common;
use common::*;
use flow_table::{FlowSnapshot, FlowTableReader};
use vrouter::drop_reason::DropReason;

/// A MAC that is not vm1's.
const SPOOF_MAC: &str = "02:00:00:00:01:99";
/// The line of the standard topology that only vif 1 (vm1) has: settings go after it.
const VM1_ANCHOR: &str = "vmi_uuid = \"5f2a1c3e-0000-4000-8000-0000000000a1\"\n";

/// The standard topology with `extra` added to vm1's `[[vif]]`.
fn vm1_with(cfg: String, extra: &str) -> String {
    assert_eq!(cfg.matches(VM1_ANCHOR).count(), 1, "vm1's vif must be found once");
    cfg.replacen(VM1_ANCHOR, &format!("{VM1_ANCHOR}{extra}\n"), 1)
}

/// A UDP frame from vm1's port (to the router MAC) and its IP packet.
fn from_vm1(src: &str, dst: &str, sport: u16, src_mac: &str) -> (Vec<u8>, Vec<u8>) {
    let ip = ipv4_udp(ip4(src), ip4(dst), 64, sport, 5201, b"source-check-payload");
    (eth(mac(ROUTER_MAC), mac(src_mac), 0x0800, &ip), ip)
}

/// What vm2 receives for `ip` routed from vm1: its MAC, the router MAC, TTL - 1.
fn to_vm2(ip: &[u8]) -> Vec<u8> {
    eth(mac(VM2_MAC), mac(ROUTER_MAC), 0x0800, &decrement_ttl_v4(ip))
}

/// vm1's spoofed traffic: 3 packets from an address that is nobody's, 2 from a remote VM's
/// (routed to the MPLSoUDP tunnel), all to vm2.
fn spoofed_ips() -> Vec<(Vec<u8>, Vec<u8>)> {
    vec![
        from_vm1("192.168.1.99", "192.168.1.4", 7001, VM1_MAC),
        from_vm1("192.168.1.99", "192.168.1.4", 7001, VM1_MAC),
        from_vm1("192.168.1.99", "192.168.1.4", 7002, VM1_MAC),
        from_vm1("192.168.2.10", "192.168.1.4", 7003, VM1_MAC),
        from_vm1("192.168.2.10", "192.168.1.4", 7003, VM1_MAC),
    ]
}

/// vm1's own address with a MAC that is not vm1's: 2 UDP packets and an ARP request.
fn spoofed_macs() -> Vec<Vec<u8>> {
    vec![
        from_vm1("192.168.1.3", "192.168.1.4", 7101, SPOOF_MAC).0,
        from_vm1("192.168.1.3", "192.168.1.4", 7101, SPOOF_MAC).0,
        eth([0xff; 6], mac(SPOOF_MAC), 0x0806, &arp(1, mac(SPOOF_MAC), ip4("192.168.1.3"), [0; 6], ip4("192.168.1.4"))),
    ]
}

/// Frames sorted: packets of different flows may leave in another order than they came in
/// (the first packet of each flow waits for its setup); within a flow the order is kept.
fn sorted(mut v: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    v.sort();
    v
}

fn flows(run_dir: &std::path::Path) -> Vec<FlowSnapshot> {
    let r = FlowTableReader::open_run_dir(run_dir).expect("flow table");
    r.iter_active().collect()
}

fn find<'a>(fl: &'a [FlowSnapshot], src: &str, dst: &str) -> Option<&'a FlowSnapshot> {
    fl.iter()
        .find(|f| f.key.src_ip() == std::net::IpAddr::V4(ip4(src)) && f.key.dst_ip() == std::net::IpAddr::V4(ip4(dst)))
}

#[test]
fn spoofed_source_ip_from_a_vm_is_dropped_as_invalid_source() {
    let (good, good_ip) = from_vm1("192.168.1.3", "192.168.1.4", 7000, VM1_MAC);
    let mut vm1: Vec<Vec<u8>> = spoofed_ips().into_iter().map(|(f, _)| f).collect();
    vm1.insert(2, good);
    let out = run(Inputs { vm1, ..Default::default() });
    assert_eq!(out.vm2, vec![to_vm2(&good_ip)], "only vm1's own address gets through");
    assert!(out.fabric.is_empty() && out.vm1.is_empty());
    assert_eq!(out.drop_list(), vec![(DropReason::InvalidSource, 5)]);
    assert_eq!(out.vif_drops[&1][DropReason::InvalidSource.index()], 5, "counted on vm1's vif");
    out.assert_accounted(6);
    // Dropped before the flow stage: the spoofed sources have no flows.
    let fl = flows(&out.run_dir);
    assert!(find(&fl, "192.168.1.3", "192.168.1.4").is_some(), "{fl:#?}");
    assert!(
        find(&fl, "192.168.1.99", "192.168.1.4").is_none() && find(&fl, "192.168.2.10", "192.168.1.4").is_none(),
        "{fl:#?}"
    );
    assert_eq!(fl.len(), 2, "one flow pair: {fl:#?}");
}

#[test]
fn spoofed_source_mac_is_dropped_when_the_vm_mac_is_configured() {
    let (good, good_ip) = from_vm1("192.168.1.3", "192.168.1.4", 7100, VM1_MAC);
    let mut vm1 = spoofed_macs();
    vm1.push(good);
    let out = run_with(Inputs { vm1: vm1.clone(), ..Default::default() }, |c| {
        vm1_with(c, &format!("vm_mac = \"{VM1_MAC}\""))
    });
    assert_eq!(out.vm2, vec![to_vm2(&good_ip)]);
    assert!(out.vm1.is_empty(), "no ARP answer to a spoofed MAC");
    assert_eq!(out.drop_list(), vec![(DropReason::InvalidSourceMac, 3)]);
    out.assert_accounted(4);

    // Without vm_mac the MAC is not checked: the same frames pass (the ARP is answered).
    let out = run(Inputs { vm1, ..Default::default() });
    assert_eq!(out.vm2.len(), 3);
    assert_eq!(out.vm1.len(), 1, "the proxy ARP reply");
    assert_eq!(out.total_drops(), 0, "{:?}", out.drop_list());
    out.assert_accounted(4);
}

#[test]
fn allowed_address_pairs_let_the_same_packets_through() {
    let ips = spoofed_ips();
    let macs = spoofed_macs();
    let mut vm1: Vec<Vec<u8>> = ips.iter().map(|(f, _)| f.clone()).collect();
    vm1.extend(macs[..2].iter().cloned());
    let pairs = format!(
        "vm_mac = \"{VM1_MAC}\"\n\
         allowed_address_pairs = [{{ ip = \"192.168.1.96/28\" }}, {{ ip = \"192.168.2.10\", mac = \"{SPOOF_MAC}\" }}]"
    );
    let out = run_with(Inputs { vm1: vm1.clone(), ..Default::default() }, |c| vm1_with(c, &pairs));
    // Forwarded byte for byte, in order: L2 rewritten, TTL decremented, nothing else.
    let mut expect: Vec<Vec<u8>> = ips.iter().map(|(_, ip)| to_vm2(ip)).collect();
    let own = from_vm1("192.168.1.3", "192.168.1.4", 7101, SPOOF_MAC).1;
    expect.push(to_vm2(&own));
    expect.push(to_vm2(&own));
    assert_eq!(sorted(out.vm2.clone()), sorted(expect));
    assert_eq!(out.total_drops(), 0, "{:?}", out.drop_list());
    out.assert_accounted(7);

    // The same frames without the pairs: every one of them is dropped.
    let out = run_with(Inputs { vm1, ..Default::default() }, |c| vm1_with(c, &format!("vm_mac = \"{VM1_MAC}\"")));
    assert!(out.vm2.is_empty());
    assert_eq!(out.drop_list(), vec![(DropReason::InvalidSource, 5), (DropReason::InvalidSourceMac, 2)]);
    out.assert_accounted(7);
}

#[test]
fn source_check_false_turns_the_check_off() {
    let (frames, ips): (Vec<_>, Vec<_>) = spoofed_ips().into_iter().unzip();
    let out = run_with(Inputs { vm1: frames, ..Default::default() }, |c| vm1_with(c, "source_check = false"));
    assert_eq!(sorted(out.vm2.clone()), sorted(ips.iter().map(|ip| to_vm2(ip)).collect()));
    assert_eq!(out.total_drops(), 0);
    out.assert_accounted(5);
}

/// An MPLSoUDP frame with label 17 (vm1) from `outer_src`.
fn mpls_to_vm1(outer_src: &str, inner: &[u8]) -> Vec<u8> {
    let mut mp = mpls(17, 64).to_vec();
    mp.extend_from_slice(inner);
    tunnel_outer(mac(FABRIC_MAC), mac(GW_MAC), ip4(outer_src), ip4("10.10.0.1"), 50000, 6635, &mp)
}

/// A VXLAN frame (VNI 5001) from `outer_src` whose inner frame is routed (to the router MAC).
fn vxlan_routed(outer_src: &str, inner_ip: &[u8]) -> Vec<u8> {
    let mut vx = vxlan(5001).to_vec();
    vx.extend_from_slice(&eth(mac(ROUTER_MAC), mac(REMOTE_VXLAN_VM_MAC), 0x0800, inner_ip));
    tunnel_outer(mac(FABRIC_MAC), mac(GW_MAC), ip4(outer_src), ip4("10.10.0.1"), 50001, 4789, &vx)
}

#[test]
fn decapsulated_packets_must_come_from_their_sources_tunnel_endpoint() {
    // 192.168.2.0/24 is behind 10.10.0.2 (MPLSoUDP), 192.168.3.0/24 behind 10.10.0.3 (VXLAN),
    // 192.168.10.0/24 behind either 10.10.0.2 or 10.10.0.4 (ECMP).
    let remote = ipv4_udp(ip4("192.168.2.10"), ip4("192.168.1.3"), 63, 5201, 40000, b"from-remote");
    let vx_remote = ipv4_udp(ip4("192.168.3.20"), ip4("192.168.1.3"), 63, 5201, 40002, b"vxlan-routed");
    let ecmp_remote = ipv4_udp(ip4("192.168.10.7"), ip4("192.168.1.3"), 63, 80, 40003, b"ecmp");
    let unrouted = ipv4_udp(ip4("172.16.1.1"), ip4("192.168.1.3"), 63, 5201, 40004, b"nobody");
    let fabric = vec![
        mpls_to_vm1("10.10.0.2", &remote),      // good
        mpls_to_vm1("10.10.0.3", &remote),      // the VXLAN vRouter sends 192.168.2.10: spoofed
        mpls_to_vm1("10.10.0.77", &remote),     // an unknown sender
        mpls_to_vm1("10.10.0.4", &ecmp_remote), // good (ECMP member)
        mpls_to_vm1("10.10.0.3", &ecmp_remote), // not an ECMP member
        mpls_to_vm1("10.10.0.2", &unrouted),    // no route for the inner source
        vxlan_routed("10.10.0.3", &vx_remote),  // good
        vxlan_routed("10.10.0.2", &vx_remote),  // wrong endpoint
    ];
    let out = run(Inputs { fabric, ..Default::default() });
    let to_vm1 = |ip: &[u8]| eth(mac(VM1_MAC), mac(ROUTER_MAC), 0x0800, ip);
    assert_eq!(sorted(out.vm1.clone()), sorted(vec![to_vm1(&remote), to_vm1(&ecmp_remote), to_vm1(&vx_remote)]));
    assert_eq!(out.drop_list(), vec![(DropReason::InvalidSource, 5)]);
    assert_eq!(out.vif_drops[&0][DropReason::InvalidSource.index()], 5, "counted on the fabric vif");
    out.assert_accounted(8);
}

#[test]
fn flows_record_the_nexthop_of_their_source_route() {
    // Nexthops of the standard topology: 1 = encap to vm1, 3 = MPLSoUDP to 10.10.0.2,
    // 7 = ECMP of two tunnels.
    let (to_remote, _) = from_vm1("192.168.1.3", "192.168.2.10", 7200, VM1_MAC);
    let (to_ecmp, _) = from_vm1("192.168.1.3", "192.168.10.7", 7201, VM1_MAC);
    // A source allowed by a pair but not routed: S(nh) 0.
    let (from_pair, _) = from_vm1("192.168.1.99", "192.168.1.4", 7202, VM1_MAC);
    let out = run_with(Inputs { vm1: vec![to_remote, to_ecmp, from_pair], ..Default::default() }, |c| {
        vm1_with(c, "allowed_address_pairs = [{ ip = \"192.168.1.96/28\" }]")
    });
    assert_eq!(out.total_drops(), 0, "{:?}", out.drop_list());
    out.assert_accounted(3);
    let fl = flows(&out.run_dir);
    let src_nh = |s: &str, d: &str| find(&fl, s, d).unwrap_or_else(|| panic!("no flow {s} -> {d} in {fl:#?}")).src_nh;
    assert_eq!(src_nh("192.168.1.3", "192.168.2.10"), 1);
    assert_eq!(src_nh("192.168.2.10", "192.168.1.3"), 3, "the reverse flow's source is behind the tunnel");
    assert_eq!(src_nh("192.168.1.3", "192.168.10.7"), 1);
    assert_eq!(src_nh("192.168.10.7", "192.168.1.3"), 7);
    assert_eq!(src_nh("192.168.1.99", "192.168.1.4"), 0);
    assert_eq!(src_nh("192.168.1.4", "192.168.1.99"), 2);
}
