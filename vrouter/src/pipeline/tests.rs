//! Unit and property tests of the pipeline on `Vec`-backed buffers.
use super::*;
use crate::config;
use crate::stats::VrfCounters;
use proptest::prelude::*;
use std::collections::BTreeMap;

const CFG: &str = r#"
[eal]
forwarding_cores = [1]
[vrouter]
run_dir = "/tmp/unused"
router_ip = "10.10.0.1"
[[vif]]
id = 0
name = "fabric0"
type = "fabric"
device = "net_pcap0"
mac = "02:00:00:00:00:01"
vrf = 0
[[vif]]
id = 1
name = "vm1"
type = "virtual"
device = "net_pcap1"
mac = "00:00:5e:00:01:00"
ip6 = "fd00:1::3"
vrf = 1
[[vrf]]
id = 0
name = "fabric"
[[vrf]]
id = 1
name = "vn1"
vxlan_vni = 5001
[[nexthop]]
id = 1
type = "encap"
vif = 1
dst_mac = "02:00:00:00:01:03"
[[nexthop]]
id = 3
type = "tunnel"
encap = "mplsoudp"
remote_ip = "10.10.0.2"
label = 40
vif = 0
dst_mac = "02:00:00:00:00:02"
[[nexthop]]
id = 4
type = "tunnel"
encap = "vxlan"
remote_ip = "10.10.0.3"
label = 5001
vif = 0
dst_mac = "02:00:00:00:00:02"
[[route]]
vrf = 1
prefix = "192.168.1.3/32"
nexthop = 1
[[route]]
vrf = 1
prefix = "192.168.2.0/24"
nexthop = 3
[[route]]
vrf = 1
prefix = "192.168.3.0/24"
nexthop = 4
[[route]]
vrf = 1
prefix = "fd00::/8"
nexthop = 3
[[bridge]]
vrf = 1
mac = "02:00:00:00:01:03"
nexthop = 1
[[label]]
label = 17
nexthop = 1
"#;

fn fib() -> &'static Fib {
    static FIB: std::sync::OnceLock<Fib> = std::sync::OnceLock::new();
    FIB.get_or_init(|| Fib::from_config(&config::parse(CFG, "test.toml").unwrap()).unwrap())
}

fn udp_frame(dst: [u8; 4], pad_to: usize) -> Vec<u8> {
    udp_frame_from([192, 168, 1, 3], dst, pad_to)
}

fn udp_frame_from(src: [u8; 4], dst: [u8; 4], pad_to: usize) -> Vec<u8> {
    let mut f = vec![0x00, 0x00, 0x5e, 0x00, 0x01, 0x00, 2, 0, 0, 0, 1, 3, 0x08, 0x00];
    let mut ip = vec![0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0];
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    let c = !checksum::data(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&[0x9c, 0x40, 0, 80, 0, 8, 0, 0]);
    f.resize(pad_to.max(f.len()), 0);
    f
}

#[test]
fn no_headroom_for_the_tunnel_is_a_push_failure() {
    let fib = fib();
    let vif = fib.vif(1).unwrap().clone();
    let mut small = VecBuf::new(8, &udp_frame([192, 168, 2, 9], 0));
    assert_eq!(process(fib, &vif, &mut small, None), Drop(DropReason::PushFails));
    let mut roomy = VecBuf::new(128, &udp_frame([192, 168, 2, 9], 0));
    assert_eq!(process(fib, &vif, &mut roomy, None), Tx(0));
    assert_eq!(roomy.data().len(), 42 - 14 + MPLSOUDP_OVERHEAD);
}

#[test]
fn ethernet_padding_is_not_carried_into_tunnels() {
    let fib = fib();
    let vif = fib.vif(1).unwrap().clone();
    let frame = udp_frame([192, 168, 3, 9], 60);
    assert_eq!(frame.len(), 60);
    let mut b = VecBuf::new(128, &frame);
    assert_eq!(process(fib, &vif, &mut b, None), Tx(0));
    // 42 bytes of real frame, 18 of padding dropped, VXLAN overhead added.
    assert_eq!(b.data().len(), 42 + VXLAN_OVERHEAD);
    let outer_ip_len = u16::from_be_bytes([b.data()[16], b.data()[17]]) as usize;
    assert_eq!(outer_ip_len, b.data().len() - 14);
}

#[test]
fn tagged_frames_have_no_sub_interface() {
    let fib = fib();
    let vif = fib.vif(1).unwrap().clone();
    let mut f = udp_frame([192, 168, 1, 3], 0);
    f.splice(12..12, [0x81, 0x00, 0x00, 0x05]);
    let mut b = VecBuf::new(128, &f);
    assert_eq!(process(fib, &vif, &mut b, None), Drop(DropReason::InvalidIf));
}

#[test]
fn unknown_ethertypes_to_the_router_are_dropped_as_invalid_protocol() {
    let fib = fib();
    let vif = fib.vif(1).unwrap().clone();
    let mut f = udp_frame([192, 168, 1, 3], 0);
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[12] = 0x88;
    f[13] = 0xcc; // LLDP, broadcast
    let mut b = VecBuf::new(128, &f);
    assert_eq!(process(fib, &vif, &mut b, None), Drop(DropReason::InvalidProtocol));
}

#[test]
fn fabric_packets_not_for_the_router_are_routed_in_the_fabric_vrf() {
    let fib = fib();
    let fabric = fib.vif(0).unwrap().clone();
    let mut f = udp_frame([10, 10, 0, 99], 0);
    f[0..6].copy_from_slice(&fabric.mac);
    let mut b = VecBuf::new(128, &f);
    // VRF 0 has no routes: an explicit drop, not a crash or a silent loss.
    assert_eq!(process(fib, &fabric, &mut b, None), Drop(DropReason::NoL3Route));
}

/// An MPLSoUDP frame from 10.10.0.2 to the vRouter carrying `stack` then `inner`.
fn mplsoudp_frame(stack: &[u8], inner: &[u8]) -> Vec<u8> {
    let fabric = fib().vif(0).unwrap();
    let udp_len = 8 + stack.len() + inner.len();
    let mut f = fabric.mac.to_vec();
    f.extend_from_slice(&[2, 0, 0, 0, 0, 2, 0x08, 0x00]);
    let total = 20 + udp_len;
    let mut ip =
        vec![0x45, 0, (total >> 8) as u8, total as u8, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 10, 0, 2, 10, 10, 0, 1];
    let c = !checksum::data(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&[0xc0, 0x00, 0x19, 0xeb]);
    f.extend_from_slice(&(udp_len as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(stack);
    f.extend_from_slice(inner);
    f
}

/// A trace mark above the service label is skipped (and goes with the outer headers): the
/// VM gets the same frame as from an unmarked packet. A stack that only looks like a mark,
/// or a mark with no bottom-of-stack label after it, is still an invalid label.
#[test]
fn the_mpls_trace_mark_is_stripped_on_decapsulation() {
    use crate::trace::mark::{mpls_mark, MPLS_MARK_LEN};
    let fib = fib();
    let fabric = fib.vif(0).unwrap().clone();
    // From a VM behind 10.10.0.2 (the outer source): the fabric source check passes.
    let inner = &udp_frame_from([192, 168, 2, 5], [192, 168, 1, 3], 0)[14..];
    let label = mpls::entry(17, 0, true, 64).to_be_bytes();
    let mut plain = VecBuf::new(128, &mplsoudp_frame(&label, inner));
    assert_eq!(process(fib, &fabric, &mut plain, None), Tx(1));
    let mut stack = mpls_mark(0x1234_5678).to_vec();
    stack.extend_from_slice(&label);
    let marked_frame = mplsoudp_frame(&stack, inner);
    assert_eq!(marked_frame.len(), mplsoudp_frame(&label, inner).len() + MPLS_MARK_LEN);
    let mut marked = VecBuf::new(128, &marked_frame);
    assert_eq!(process(fib, &fabric, &mut marked, None), Tx(1));
    assert_eq!(marked.data(), plain.data(), "the VM sees no trace of the mark");

    let mut not_mark = stack.clone();
    not_mark[4..8].copy_from_slice(&mpls::entry(241, 0, false, 0).to_be_bytes());
    let mut b = VecBuf::new(128, &mplsoudp_frame(&not_mark, inner));
    assert_eq!(process(fib, &fabric, &mut b, None), Drop(DropReason::InvalidLabel));
    let mut two = stack.clone();
    two[MPLS_MARK_LEN + 2] &= !1; // the service label loses its S bit
    let mut b = VecBuf::new(128, &mplsoudp_frame(&two, inner));
    assert_eq!(process(fib, &fabric, &mut b, None), Drop(DropReason::InvalidLabel));
    let mut b = VecBuf::new(128, &mplsoudp_frame(&mpls_mark(1), &[]));
    assert_eq!(process(fib, &fabric, &mut b, None), Drop(DropReason::PullFails), "a mark and nothing after it");
}

/// Runs `frame` received on vif `on` through the pipeline, counting per VRF.
fn counted(on: u16, frame: &[u8], headroom: usize) -> (Verdict, BTreeMap<u32, VrfCounters>) {
    let fib = fib();
    let vif = fib.vif(on).unwrap().clone();
    let mut vc = BTreeMap::new();
    let mut b = VecBuf::new(headroom, frame);
    (process_with(fib, &vif, &mut b, None, &mut Both(&mut vc, &mut ())), vc)
}

fn only(vrf: u32, c: VrfCounters) -> BTreeMap<u32, VrfCounters> {
    BTreeMap::from([(vrf, c)])
}

/// Each decision counts where it is made, in the VRF it is made in.
#[test]
fn vrf_counters_count_each_decision_in_its_vrf() {
    let c = VrfCounters::default;
    // VM -> MPLSoUDP and VXLAN tunnels, VM -> local VM (routed), no route: VRF 1.
    assert_eq!(
        counted(1, &udp_frame([192, 168, 2, 9], 0), 128),
        (Tx(0), only(1, VrfCounters { udp_mpls_tunnels: 1, ..c() }))
    );
    assert_eq!(
        counted(1, &udp_frame([192, 168, 3, 9], 0), 128),
        (Tx(0), only(1, VrfCounters { vxlan_tunnels: 1, ..c() }))
    );
    assert_eq!(counted(1, &udp_frame([192, 168, 1, 3], 0), 128), (Tx(1), only(1, VrfCounters { encaps: 1, ..c() })));
    assert_eq!(
        counted(1, &udp_frame([10, 9, 9, 9], 0), 128),
        (Drop(DropReason::NoL3Route), only(1, VrfCounters { no_route_drops: 1, ..c() }))
    );
    // Bridged to vm1's MAC: an L2 encap.
    let mut bridged = udp_frame([192, 168, 1, 3], 0);
    bridged[0..6].copy_from_slice(&[2, 0, 0, 0, 1, 3]);
    assert_eq!(counted(1, &bridged, 128), (Tx(1), only(1, VrfCounters { l2_encaps: 1, ..c() })));
    // A tunnel push that fails counts nothing.
    assert_eq!(counted(1, &udp_frame([192, 168, 2, 9], 0), 8), (Drop(DropReason::PushFails), BTreeMap::new()));
    // MPLSoUDP from the fabric (VRF 0) decapsulated to vm1: counted in vm1's VRF.
    let inner = &udp_frame_from([192, 168, 2, 5], [192, 168, 1, 3], 0)[14..];
    let label = mpls::entry(17, 0, true, 64).to_be_bytes();
    assert_eq!(
        counted(0, &mplsoudp_frame(&label, inner), 128),
        (Tx(1), only(1, VrfCounters { mplsoudp_decaps: 1, encaps: 1, ..c() }))
    );
    // An unknown label has no VRF: nothing counted.
    let bad = mpls::entry(999, 0, true, 64).to_be_bytes();
    assert_eq!(counted(0, &mplsoudp_frame(&bad, inner), 128), (Drop(DropReason::InvalidLabel), BTreeMap::new()));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    /// Any frame on any vif counts at most one nexthop outcome, and exactly one when it is
    /// transmitted (decapsulations are counted beside it); a discard or missing route counts
    /// once with its drop.
    #[test]
    fn one_outcome_per_transmitted_packet(data in proptest::collection::vec(any::<u8>(), 0..120),
                                          ethertype in prop_oneof![Just(0x0800u16), Just(0x86dd), Just(0x0806)],
                                          dst in prop_oneof![Just([192u8, 168, 2, 9]), Just([192, 168, 3, 9]), Just([192, 168, 1, 3]), Just([10, 9, 9, 9])],
                                          to_router in any::<bool>(), on_fabric in any::<bool>()) {
        let mut frame = if ethertype == 0x0800 { udp_frame(dst, 0) } else { data.clone() };
        if frame.len() >= 14 {
            if to_router {
                frame[0..6].copy_from_slice(&fib().vif(u16::from(on_fabric) ^ 1).unwrap().mac);
            }
            frame[12..14].copy_from_slice(&ethertype.to_be_bytes());
            if ethertype != 0x0800 {
                frame.extend_from_slice(&data);
            }
        }
        let (v, vc) = counted(if on_fabric { 0 } else { 1 }, &frame, 128);
        let sum = |f: fn(&VrfCounters) -> u64| vc.values().map(f).sum::<u64>();
        let outcomes = sum(|c| c.receives + c.l2_receives + c.encaps + c.l2_encaps + c.udp_mpls_tunnels + c.vxlan_tunnels + c.resolves);
        prop_assert_eq!(outcomes, u64::from(matches!(v, Tx(_))), "{:?} {:?}", v, vc);
        prop_assert_eq!(sum(|c| c.discards), u64::from(v == Drop(DropReason::Discard)));
        let no_route = matches!(v, Drop(DropReason::NoL3Route) | Drop(DropReason::NoL2Route));
        prop_assert!(sum(|c| c.no_route_drops) <= u64::from(no_route));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, .. ProptestConfig::default() })]

    /// Any bytes on any vif: a verdict, never a panic; transmits only to existing vifs.
    #[test]
    fn arbitrary_frames_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200),
                                    ethertype in prop_oneof![Just(0x0800u16), Just(0x86dd), Just(0x0806), Just(0x8100), any::<u16>()],
                                    to_router in any::<bool>(), on_fabric in any::<bool>(), headroom in 0usize..160) {
        let fib = fib();
        let vif = fib.vif(if on_fabric { 0 } else { 1 }).unwrap().clone();
        let mut frame = data.clone();
        if frame.len() >= 14 {
            if to_router {
                frame[0..6].copy_from_slice(&vif.mac);
            }
            frame[12..14].copy_from_slice(&ethertype.to_be_bytes());
        }
        let mut b = VecBuf::new(headroom, &frame);
        if let Tx(out) = process(fib, &vif, &mut b, None) {
            prop_assert!(fib.vif(out).is_some());
        }
    }

    /// Tunnel packets with random inner bytes on the fabric: never a panic.
    #[test]
    fn arbitrary_tunnel_payloads_never_panic(inner in proptest::collection::vec(any::<u8>(), 0..120),
                                             vxlan in any::<bool>()) {
        let fib = fib();
        let fabric = fib.vif(0).unwrap().clone();
        let udp_len = 8 + inner.len();
        let mut f = fabric.mac.to_vec();
        f.extend_from_slice(&[2, 0, 0, 0, 0, 2, 0x08, 0x00]);
        let total = 20 + udp_len;
        f.extend_from_slice(&[0x45, 0, (total >> 8) as u8, total as u8, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 10, 0, 2, 10, 10, 0, 1]);
        let dport: u16 = if vxlan { 4789 } else { 6635 };
        f.extend_from_slice(&[0xc0, 0x00]);
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&(udp_len as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(&inner);
        let mut b = VecBuf::new(128, &f);
        let _ = process(fib, &fabric, &mut b, None);
    }
}

/// The flow-hit path against the general path, on two flow tables holding the same flow.
mod hit_path {
    use super::*;
    use crate::pipeline::flow::{HoldStore, Prepared};
    use crate::pipeline::hit::{self, HitCtx};
    use flow_table::{Action, FlowTable, FlowTableConfig, FlowUpdate};

    /// A table in a temporary file with `key`'s flow in it, set to `action` (and mirrored
    /// to analyzer 0 when `mirrored`).
    pub(super) fn table_with(
        dir: &tempfile::TempDir,
        name: &str,
        key: &flow_table::FlowKey,
        action: Action,
        mirrored: bool,
    ) -> (FlowTable, u32) {
        let cfg = FlowTableConfig { main_entries: 1024, overflow_entries: 1024, max_lcores: 2 };
        let t = FlowTable::create(&dir.path().join(name), &cfg).unwrap();
        let idx = t.lookup_or_hold(key, key.hash(), 1).unwrap().index();
        let gen = t.entry(idx).unwrap().gen();
        let mut u = FlowUpdate::new(action);
        if mirrored {
            u.mirror = Some(0);
        }
        t.set_action(idx, gen, &u).unwrap();
        (t, idx)
    }

    /// A VM's IPv4 frame with arbitrary header fields; the checksum is made valid.
    #[allow(clippy::too_many_arguments)]
    fn frame(
        to_router: bool,
        ihl: u8,
        ttl: u8,
        proto: u8,
        flags_frag: u16,
        src: [u8; 4],
        dst: [u8; 4],
        l4: &[u8],
        pad: usize,
        total_delta: i32,
    ) -> Vec<u8> {
        let vif = fib().vif(1).unwrap();
        let mut f = if to_router { fib().router_mac.to_vec() } else { vif.mac.to_vec() };
        f.extend_from_slice(&[2, 0, 0, 0, 1, 3, 0x08, 0x00]);
        let hlen = usize::from(ihl) * 4;
        let total = (hlen as i32 + l4.len() as i32 + total_delta).clamp(0, 0xffff) as u16;
        let mut ip = vec![0x40 | ihl, 0];
        ip.extend_from_slice(&total.to_be_bytes());
        ip.extend_from_slice(&[0x12, 0x34]);
        ip.extend_from_slice(&flags_frag.to_be_bytes());
        ip.extend_from_slice(&[ttl, proto, 0, 0]);
        ip.extend_from_slice(&src);
        ip.extend_from_slice(&dst);
        ip.resize(hlen.max(20), 0);
        let c = !checksum::data(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(l4);
        f.resize(f.len() + pad, 0);
        f
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, .. ProptestConfig::default() })]

        /// Whenever the hit path takes a packet, the verdict, the bytes sent, the flow's
        /// counters and TCP bits and the VRF counts are the general path's; when it does
        /// not, nothing changed (nothing counted).
        #[test]
        fn hit_path_is_the_general_path(
            to_router in any::<bool>(),
            ihl in prop_oneof![8 => Just(5u8), 1 => 0u8..16],
            ttl in prop_oneof![Just(0u8), Just(1), Just(2), any::<u8>()],
            proto in prop_oneof![Just(17u8), Just(6), Just(1), any::<u8>()],
            flags_frag in prop_oneof![4 => Just(0x4000u16), 1 => Just(0x2000), 1 => any::<u16>()],
            // vm1's address (routed back to vif 1), a remote VM's (spoofed), unrouted.
            src in prop_oneof![6 => Just([192u8, 168, 1, 3]), 1 => Just([192, 168, 2, 7]), 1 => Just([10, 0, 0, 1])],
            dst in prop_oneof![Just([192u8, 168, 2, 7]), Just([192, 168, 3, 9]), Just([192, 168, 1, 3]), Just([10, 0, 0, 1])],
            l4 in proptest::collection::vec(any::<u8>(), 0..40),
            pad in 0usize..20,
            total_delta in prop_oneof![8 => Just(0i32), 1 => -30i32..30],
            action in prop_oneof![Just(Action::Forward), Just(Action::Drop), Just(Action::Hold), Just(Action::Nat)],
            mirrored in prop_oneof![6 => Just(false), 1 => Just(true)],
            held in prop_oneof![6 => Just(false), 1 => Just(true)],
            headroom in prop_oneof![6 => Just(128usize), 1 => 0usize..64],
        ) {
            let fib = fib();
            let vif = fib.vif(1).unwrap().clone();
            let f = frame(to_router, ihl, ttl, proto, flags_frag, src, dst, &l4, pad, total_delta);
            // The key the burst pre-pass computes (only valid IPv4 frames get one).
            let key = match ipv4::Packet::new_checked(&f[14..]) {
                Ok(ip) => flow::key_v4(vif.vrf, &ip),
                Err(_) => flow_table::FlowKey::v4(vif.vrf, 0, Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED, 0, 0),
            };
            let hash = key.hash();
            let dir = tempfile::tempdir().unwrap();
            let (t_hit, i_hit) = table_with(&dir, "hit", &key, action, mirrored);
            let (t_gen, i_gen) = table_with(&dir, "gen", &key, action, mirrored);
            let mut hold = HoldStore::new(3, 8);
            if held {
                hold.hold(i_gen, 0, 1);
            }
            let before = t_hit.snapshot(i_hit).unwrap().unwrap();

            let mut a = VecBuf::new(headroom, &f);
            let cx = HitCtx { fib, vif: &vif, vrf: fib.vrf(vif.vrf).unwrap(), table: &t_hit, lcore: 0, now: 5 };
            let mut vc_hit = BTreeMap::<u32, VrfCounters>::new();
            let hit_verdict = hit::forward_v4(&cx, &mut a, i_hit, hash, |i| held && i == i_hit, &mut vc_hit);

            let mut b = VecBuf::new(headroom, &f);
            let mut stage = FlowStage {
                table: &t_gen,
                lcore: 0,
                now: 5,
                reinject: false,
                held_flow: None,
                may_create: true,
                pre: Some(Prepared { key: &key, hash, found: Some(i_gen) }),
                held: &hold,
                mirror: None,
                frags: &mut frag::FragTable::default(),
            };
            let mut vc_gen = BTreeMap::<u32, VrfCounters>::new();
            let general = process_with(fib, &vif, &mut b, Some(&mut stage), &mut Both(&mut vc_gen, &mut ()));

            let after_hit = t_hit.snapshot(i_hit).unwrap().unwrap();
            let after_gen = t_gen.snapshot(i_gen).unwrap().unwrap();
            match hit_verdict {
                Some(v) => {
                    prop_assert_eq!(v, general);
                    prop_assert_eq!(a.data(), b.data());
                    prop_assert_eq!((after_hit.packets, after_hit.bytes, after_hit.tcp_flags, after_hit.last_seen),
                                    (after_gen.packets, after_gen.bytes, after_gen.tcp_flags, after_gen.last_seen));
                    prop_assert_eq!(vc_hit, vc_gen);
                }
                None => {
                    prop_assert_eq!(a.data(), &f[..]);
                    prop_assert!(vc_hit.is_empty());
                    prop_assert_eq!((after_hit.packets, after_hit.bytes, after_hit.tcp_flags),
                                    (before.packets, before.bytes, before.tcp_flags));
                }
            }
        }
    }

    /// The common case is taken: a UDP packet of a forwarded flow to the MPLSoUDP route.
    #[test]
    fn forwarded_udp_takes_the_hit_path() {
        let fib = fib();
        let vif = fib.vif(1).unwrap().clone();
        let f = udp_frame([192, 168, 2, 7], 60);
        let ip = ipv4::Packet::new_checked(&f[14..]).unwrap();
        let key = flow::key_v4(vif.vrf, &ip);
        let dir = tempfile::tempdir().unwrap();
        let (t, idx) = table_with(&dir, "t", &key, Action::Forward, false);
        let mut a = VecBuf::new(128, &f);
        let cx = HitCtx { fib, vif: &vif, vrf: fib.vrf(vif.vrf).unwrap(), table: &t, lcore: 0, now: 9 };
        assert_eq!(hit::forward_v4(&cx, &mut a, idx, key.hash(), |_| false, &mut ()), Some(Tx(0)));
        let s = t.snapshot(idx).unwrap().unwrap();
        assert_eq!((s.packets, s.bytes, s.last_seen), (1, 28, 9));
        // Outer Ethernet + IPv4 + UDP + MPLS in front of the inner IPv4 packet, TTL 63.
        assert_eq!(a.data().len(), MPLSOUDP_OVERHEAD + 28);
        assert_eq!(a.data()[MPLSOUDP_OVERHEAD + 8], 63);
    }

    /// A packet of a forwarding flow whose source is not the VM's is dropped on the hit path
    /// as the general path drops it, and the flow counts nothing.
    #[test]
    fn spoofed_source_drops_on_the_hit_path_uncounted() {
        let fib = fib();
        let vif = fib.vif(1).unwrap().clone();
        // 192.168.2.5 routes to the MPLSoUDP tunnel, not back to vif 1.
        let f = udp_frame_from([192, 168, 2, 5], [192, 168, 2, 7], 60);
        let ip = ipv4::Packet::new_checked(&f[14..]).unwrap();
        let key = flow::key_v4(vif.vrf, &ip);
        let dir = tempfile::tempdir().unwrap();
        let (t, idx) = table_with(&dir, "t", &key, Action::Forward, false);
        let mut a = VecBuf::new(128, &f);
        let cx = HitCtx { fib, vif: &vif, vrf: fib.vrf(vif.vrf).unwrap(), table: &t, lcore: 0, now: 9 };
        assert_eq!(
            hit::forward_v4(&cx, &mut a, idx, key.hash(), |_| false, &mut ()),
            Some(Drop(DropReason::InvalidSource))
        );
        assert_eq!(a.data(), &f[..], "nothing rewritten");
        let s = t.snapshot(idx).unwrap().unwrap();
        assert_eq!((s.packets, s.bytes), (0, 0));
        let mut b = VecBuf::new(128, &f);
        assert_eq!(process(fib, &vif, &mut b, None), Drop(DropReason::InvalidSource));
    }
}

/// Source (anti-spoofing) checks: VM vifs (MAC, IPv4, IPv6, pairs, reverse path) and the
/// fabric (inner source against the tunnel's outer source).
mod source_check {
    use super::*;

    const SRC_CFG: &str = r#"
[eal]
forwarding_cores = [1]
[vrouter]
run_dir = "/tmp/unused"
router_ip = "10.10.0.1"
[[vif]]
id = 0
name = "fabric0"
type = "fabric"
device = "net_pcap0"
mac = "02:00:00:00:00:01"
vrf = 0
[[vif]]
id = 1
name = "vm1"
type = "virtual"
device = "net_pcap1"
mac = "00:00:5e:00:01:00"
ip = "192.168.1.3"
ip6 = "fd00:1::3"
vrf = 1
vm_mac = "02:00:00:00:01:03"
allowed_address_pairs = [
    { ip = "10.20.0.0/16", mac = "02:00:00:00:01:33" },
    { ip = "fd00:77::/64" },
    { ip = "192.168.1.100" },
]
[[vif]]
id = 2
name = "vm2"
type = "virtual"
device = "net_pcap2"
mac = "00:00:5e:00:01:00"
ip = "192.168.1.4"
vrf = 1
[[vif]]
id = 3
name = "vm3"
type = "virtual"
device = "net_pcap3"
mac = "00:00:5e:00:01:00"
ip = "192.168.1.5"
vrf = 1
source_check = false
[[vrf]]
id = 0
name = "fabric"
[[vrf]]
id = 1
name = "vn1"
vxlan_vni = 5001
[[nexthop]]
id = 1
type = "encap"
vif = 1
dst_mac = "02:00:00:00:01:03"
[[nexthop]]
id = 2
type = "encap"
vif = 2
dst_mac = "02:00:00:00:01:04"
[[nexthop]]
id = 3
type = "tunnel"
encap = "mplsoudp"
remote_ip = "10.10.0.2"
label = 40
vif = 0
dst_mac = "02:00:00:00:00:02"
[[nexthop]]
id = 4
type = "tunnel"
encap = "vxlan"
remote_ip = "10.10.0.3"
label = 5001
vif = 0
dst_mac = "02:00:00:00:00:02"
[[nexthop]]
id = 5
type = "ecmp"
members = [1, 2]
[[nexthop]]
id = 6
type = "tunnel"
encap = "mplsoudp"
remote_ip = "10.10.0.4"
label = 41
vif = 0
dst_mac = "02:00:00:00:00:02"
[[nexthop]]
id = 7
type = "ecmp"
members = [3, 6]
[[nexthop]]
id = 8
type = "encap"
vif = 3
dst_mac = "02:00:00:00:01:05"
[[route]]
vrf = 1
prefix = "192.168.1.3/32"
nexthop = 1
[[route]]
vrf = 1
prefix = "192.168.1.4/32"
nexthop = 2
[[route]]
vrf = 1
prefix = "192.168.1.5/32"
nexthop = 8
[[route]]
vrf = 1
prefix = "192.168.8.0/24"
nexthop = 1
[[route]]
vrf = 1
prefix = "192.168.2.0/24"
nexthop = 3
[[route]]
vrf = 1
prefix = "192.168.3.0/24"
nexthop = 4
[[route]]
vrf = 1
prefix = "192.168.5.0/24"
nexthop = 5
[[route]]
vrf = 1
prefix = "192.168.10.0/24"
nexthop = 7
[[route]]
vrf = 1
prefix = "fd00:1::3/128"
nexthop = 1
[[route]]
vrf = 1
prefix = "fd00:8::/64"
nexthop = 1
[[route]]
vrf = 1
prefix = "fd00:2::/64"
nexthop = 3
[[bridge]]
vrf = 1
mac = "02:00:00:00:01:04"
nexthop = 2
[[label]]
label = 17
nexthop = 1
"#;

    const VM1_MAC: [u8; 6] = [2, 0, 0, 0, 1, 3];
    const PAIR_MAC: [u8; 6] = [2, 0, 0, 0, 1, 0x33];
    const OTHER_MAC: [u8; 6] = [2, 0, 0, 0, 9, 9];
    const GW: [u8; 6] = [0x00, 0x00, 0x5e, 0x00, 0x01, 0x00];

    fn sfib() -> &'static Fib {
        static FIB: std::sync::OnceLock<Fib> = std::sync::OnceLock::new();
        FIB.get_or_init(|| Fib::from_config(&config::parse(SRC_CFG, "test.toml").unwrap()).unwrap())
    }

    fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = dst.to_vec();
        f.extend_from_slice(&src);
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// IPv4/UDP packet (no Ethernet), valid header checksum.
    fn ip4(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
        let mut ip = vec![0x45, 0, 0, 36, 0, 0, 0x40, 0, 64, 17, 0, 0];
        ip.extend_from_slice(&src);
        ip.extend_from_slice(&dst);
        let c = !checksum::data(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        ip.extend_from_slice(&[0x9c, 0x40, 0, 80, 0, 16, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
        ip
    }

    /// IPv6 packet with `next` and `payload` (no Ethernet).
    fn ip6(src: &str, dst: &str, next: u8, hop: u8, payload: &[u8]) -> Vec<u8> {
        let mut ip = vec![0x60, 0, 0, 0];
        ip.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        ip.extend_from_slice(&[next, hop]);
        ip.extend_from_slice(&src.parse::<Ipv6Addr>().unwrap().octets());
        ip.extend_from_slice(&dst.parse::<Ipv6Addr>().unwrap().octets());
        ip.extend_from_slice(payload);
        ip
    }

    fn udp6(src: &str, dst: &str) -> Vec<u8> {
        ip6(src, dst, 17, 64, &[0x9c, 0x40, 0, 80, 0, 8, 0, 0])
    }

    /// A neighbour solicitation for `target` from `src` (to the solicited-node group).
    fn ns(src_mac: [u8; 6], src: &str, target: &str) -> Vec<u8> {
        let mut body = vec![135, 0, 0, 0, 0, 0, 0, 0];
        body.extend_from_slice(&target.parse::<Ipv6Addr>().unwrap().octets());
        body.extend_from_slice(&[1, 1]);
        body.extend_from_slice(&src_mac);
        let t: Ipv6Addr = target.parse().unwrap();
        let o = t.octets();
        let group = format!("ff02::1:ff{:02x}:{:02x}{:02x}", o[13], o[14], o[15]);
        let mut b = body.clone();
        let ipv = ip6(src, &group, 58, 255, &body);
        let (s, d) = (src.parse::<Ipv6Addr>().unwrap(), group.parse::<Ipv6Addr>().unwrap());
        let mut na = icmpv6::Packet::new_unchecked(&mut b[..]);
        na.fill_checksum(s, d);
        let mut ipv = ipv;
        let n = ipv.len();
        ipv[n - b.len()..].copy_from_slice(&b);
        eth([0x33, 0x33, 0xff, o[13], o[14], o[15]], src_mac, 0x86dd, &ipv)
    }

    fn arp_req(sha: [u8; 6], spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
        let mut a = vec![0, 1, 8, 0, 6, 4, 0, 1];
        a.extend_from_slice(&sha);
        a.extend_from_slice(&spa);
        a.extend_from_slice(&[0; 6]);
        a.extend_from_slice(&tpa);
        eth([0xff; 6], sha, 0x0806, &a)
    }

    /// Fabric frame from `outer_src` to the vRouter: UDP to `dport` carrying `payload`.
    fn tunnel(outer_src: [u8; 4], dport: u16, payload: &[u8]) -> Vec<u8> {
        let udp_len = 8 + payload.len();
        let total = 20 + udp_len;
        let mut ip = vec![0x45, 0, (total >> 8) as u8, total as u8, 0, 0, 0x40, 0, 64, 17, 0, 0];
        ip.extend_from_slice(&outer_src);
        ip.extend_from_slice(&[10, 10, 0, 1]);
        let c = !checksum::data(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        ip.extend_from_slice(&[0xc0, 0x00]);
        ip.extend_from_slice(&dport.to_be_bytes());
        ip.extend_from_slice(&(udp_len as u16).to_be_bytes());
        ip.extend_from_slice(&[0, 0]);
        ip.extend_from_slice(payload);
        eth([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2], 0x0800, &ip)
    }

    fn mpls_in(outer_src: [u8; 4], label: u32, inner: &[u8]) -> Vec<u8> {
        let mut p = mpls::entry(label, 0, true, 64).to_be_bytes().to_vec();
        p.extend_from_slice(inner);
        tunnel(outer_src, MPLSOUDP_PORT, &p)
    }

    fn vxlan_in(outer_src: [u8; 4], vni: u32, inner_frame: &[u8]) -> Vec<u8> {
        let mut p = vec![0x08, 0, 0, 0];
        p.extend_from_slice(&(vni << 8).to_be_bytes());
        p.extend_from_slice(inner_frame);
        tunnel(outer_src, VXLAN_PORT, &p)
    }

    #[track_caller]
    fn on(vif: u16, frame: Vec<u8>) -> Verdict {
        let fib = sfib();
        let vif = fib.vif(vif).unwrap();
        let mut b = VecBuf::new(128, &frame);
        process(fib, vif, &mut b, None)
    }

    fn v4_from(vif: u16, mac: [u8; 6], src: [u8; 4]) -> Verdict {
        on(vif, eth(GW, mac, 0x0800, &ip4(src, [192, 168, 2, 9])))
    }

    #[test]
    fn config_reaches_the_fib() {
        let fib = sfib();
        let (v1, v2, v3) = (fib.vif(1).unwrap(), fib.vif(2).unwrap(), fib.vif(3).unwrap());
        assert!(v1.source_check && v2.source_check && !v3.source_check);
        assert!(!fib.vif(0).unwrap().source_check, "the fabric vif is not a VM");
        assert_eq!(v1.vm_mac, Some(VM1_MAC));
        assert_eq!(v2.vm_mac, None);
        use crate::fib::PairPrefix;
        assert_eq!(
            &v1.pairs_v4[..],
            [PairPrefix { net: 0x0a14_0000, mask: 0xffff_0000 }, PairPrefix { net: 0xc0a8_0164, mask: u32::MAX }]
        );
        assert_eq!(&v1.pairs_v6[..], [PairPrefix { net: 0xfd00_0077u128 << 96, mask: u128::MAX << 64 }]);
        assert_eq!(&v1.pair_macs[..], [PAIR_MAC]);
    }

    #[test]
    fn ipv4_source_is_the_vms_own_a_pair_or_routed_back_to_the_vif() {
        let ok = Tx(0);
        let spoofed = Drop(DropReason::InvalidSource);
        assert_eq!(v4_from(1, VM1_MAC, [192, 168, 1, 3]), ok, "the vif's ip");
        assert_eq!(v4_from(1, VM1_MAC, [10, 20, 5, 5]), ok, "inside pair 10.20.0.0/16");
        assert_eq!(v4_from(1, VM1_MAC, [192, 168, 1, 100]), ok, "a plain-address pair is a /32");
        assert_eq!(v4_from(1, VM1_MAC, [192, 168, 1, 101]), spoofed, "next to the /32 pair");
        assert_eq!(v4_from(1, VM1_MAC, [10, 21, 0, 1]), spoofed, "outside the /16 pair");
        assert_eq!(v4_from(1, VM1_MAC, [192, 168, 8, 7]), ok, "routed to an encap nexthop on vif 1");
        assert_eq!(v4_from(1, VM1_MAC, [192, 168, 5, 9]), ok, "ECMP with a member on vif 1");
        assert_eq!(v4_from(1, VM1_MAC, [192, 168, 1, 4]), spoofed, "vm2's address");
        assert_eq!(v4_from(1, VM1_MAC, [192, 168, 2, 5]), spoofed, "a remote VM's address");
        assert_eq!(v4_from(1, VM1_MAC, [172, 16, 0, 1]), spoofed, "no route at all");
        // vm2: its own address, the shared ECMP route; not vm1's pair.
        assert_eq!(v4_from(2, OTHER_MAC, [192, 168, 1, 4]), ok);
        assert_eq!(v4_from(2, OTHER_MAC, [192, 168, 5, 9]), ok);
        assert_eq!(v4_from(2, OTHER_MAC, [10, 20, 5, 5]), spoofed, "vm1's pair is not vm2's");
        assert_eq!(v4_from(2, OTHER_MAC, [192, 168, 1, 3]), spoofed);
        // source_check = false: anything goes.
        assert_eq!(v4_from(3, OTHER_MAC, [172, 16, 0, 1]), ok);
        // Bridged frames are checked too.
        let bridged = |src| on(1, eth([2, 0, 0, 0, 1, 4], VM1_MAC, 0x0800, &ip4(src, [192, 168, 1, 4])));
        assert_eq!(bridged([192, 168, 1, 3]), Tx(2));
        assert_eq!(bridged([192, 168, 1, 77]), spoofed);
        // A frame too short to hold the source address is a pull failure, not a panic.
        assert_eq!(on(1, eth(GW, VM1_MAC, 0x0800, &[0x45, 0, 0, 20])), Drop(DropReason::PullFails));
    }

    #[test]
    fn source_mac_is_the_vm_mac_or_a_pairs_mac() {
        let bad_mac = Drop(DropReason::InvalidSourceMac);
        assert_eq!(v4_from(1, VM1_MAC, [192, 168, 1, 3]), Tx(0));
        assert_eq!(v4_from(1, PAIR_MAC, [192, 168, 1, 3]), Tx(0), "a pair's MAC");
        assert_eq!(v4_from(1, OTHER_MAC, [192, 168, 1, 3]), bad_mac);
        // The MAC is checked first: a bad MAC with a bad source IP is a MAC drop.
        assert_eq!(v4_from(1, OTHER_MAC, [172, 16, 0, 1]), bad_mac);
        // ARP is checked by MAC: the proxy answer for a good one, a drop for a bad one.
        assert_eq!(on(1, arp_req(VM1_MAC, [192, 168, 1, 3], [192, 168, 2, 9])), Tx(1));
        assert_eq!(on(1, arp_req(OTHER_MAC, [192, 168, 1, 3], [192, 168, 2, 9])), bad_mac);
        // IPv6 and non-IP frames too.
        assert_eq!(on(1, eth(GW, OTHER_MAC, 0x86dd, &udp6("fd00:1::3", "fd00:2::9"))), bad_mac);
        assert_eq!(on(1, eth([2, 0, 0, 0, 1, 4], OTHER_MAC, 0x88b5, &[0; 46])), bad_mac);
        assert_eq!(on(1, eth([2, 0, 0, 0, 1, 4], VM1_MAC, 0x88b5, &[0; 46])), Tx(2));
        // No vm_mac on vm2: any MAC.
        assert_eq!(on(2, arp_req(OTHER_MAC, [192, 168, 1, 4], [192, 168, 2, 9])), Tx(2));
    }

    #[test]
    fn ipv6_source_checks_and_neighbour_discovery() {
        let v6 = |src: &str| on(1, eth(GW, VM1_MAC, 0x86dd, &udp6(src, "fd00:2::9")));
        let spoofed = Drop(DropReason::InvalidSource);
        assert_eq!(v6("fd00:1::3"), Tx(0), "the vif's ip6");
        assert_eq!(v6("fd00:77::5"), Tx(0), "inside pair fd00:77::/64");
        assert_eq!(v6("fd00:8::1"), Tx(0), "routed back to vif 1");
        assert_eq!(v6("fd00:2::5"), spoofed, "a remote VM's address");
        assert_eq!(v6("fd00:1::4"), spoofed, "unrouted");
        assert_eq!(v6("fe80::1"), Tx(0), "link-local sources are exempt");
        // Neighbour discovery: from the link-local address or the global one, answered;
        // DAD (unspecified source) stays silent as before; a spoofed source is dropped.
        assert_eq!(on(1, ns(VM1_MAC, "fe80::3", "fd00:2::9")), Tx(1));
        assert_eq!(on(1, ns(VM1_MAC, "fd00:1::3", "fd00:2::9")), Tx(1));
        assert_eq!(on(1, ns(VM1_MAC, "::", "fd00:1::3")), Drop(DropReason::TrapNoIf));
        assert_eq!(on(1, ns(VM1_MAC, "fd00:2::5", "fd00:2::9")), spoofed);
        assert_eq!(on(1, ns(OTHER_MAC, "fe80::3", "fd00:2::9")), Drop(DropReason::InvalidSourceMac));
        // vm2 has no ip6 and no route back: its global sources are spoofed.
        assert_eq!(on(2, eth(GW, VM1_MAC, 0x86dd, &udp6("fd00:1::3", "fd00:2::9"))), spoofed);
    }

    /// The flow-hit path checks MAC and IP as the general path does: spoofed frames of a
    /// forwarding flow drop uncounted, a pair's source and MAC take the hit path.
    #[test]
    fn hit_path_checks_mac_and_pairs() {
        use crate::pipeline::hit::{self, HitCtx};
        let fib = sfib();
        let vif = fib.vif(1).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (VM1_MAC, [192, 168, 1, 3], Some(Tx(0))),
            (PAIR_MAC, [10, 20, 1, 2], Some(Tx(0))),
            (OTHER_MAC, [192, 168, 1, 3], Some(Drop(DropReason::InvalidSourceMac))),
            (VM1_MAC, [192, 168, 2, 5], Some(Drop(DropReason::InvalidSource))),
        ];
        for (i, (mac, src, want)) in cases.into_iter().enumerate() {
            let f = eth(GW, mac, 0x0800, &ip4(src, [192, 168, 2, 9]));
            let ip = ipv4::Packet::new_checked(&f[14..]).unwrap();
            let key = flow::key_v4(vif.vrf, &ip);
            let (t, idx) = hit_path::table_with(&dir, &format!("t{i}"), &key, flow_table::Action::Forward, false);
            let cx = HitCtx { fib, vif, vrf: fib.vrf(vif.vrf).unwrap(), table: &t, lcore: 0, now: 1 };
            let mut b = VecBuf::new(128, &f);
            assert_eq!(hit::forward_v4(&cx, &mut b, idx, key.hash(), |_| false, &mut ()), want, "case {i}");
            let counted = t.snapshot(idx).unwrap().unwrap().packets;
            assert_eq!(counted, u64::from(want == Some(Tx(0))), "case {i}: only forwarded packets count");
            assert_eq!(on(1, f), want.unwrap(), "case {i}: the general path agrees");
        }
    }

    #[test]
    fn decapsulated_sources_must_route_back_to_the_tunnel_endpoint() {
        let spoofed = Drop(DropReason::InvalidSource);
        let to_vm1 = |inner_src| ip4(inner_src, [192, 168, 1, 3]);
        // MPLSoUDP: 192.168.2.0/24 is behind 10.10.0.2.
        assert_eq!(on(0, mpls_in([10, 10, 0, 2], 17, &to_vm1([192, 168, 2, 5]))), Tx(1));
        assert_eq!(on(0, mpls_in([10, 10, 0, 9], 17, &to_vm1([192, 168, 2, 5]))), spoofed, "wrong endpoint");
        assert_eq!(on(0, mpls_in([10, 10, 0, 3], 17, &to_vm1([192, 168, 2, 5]))), spoofed, "another vRouter");
        assert_eq!(on(0, mpls_in([10, 10, 0, 2], 17, &to_vm1([192, 168, 1, 4]))), spoofed, "a local VM's address");
        assert_eq!(on(0, mpls_in([10, 10, 0, 2], 17, &to_vm1([172, 16, 0, 1]))), spoofed, "no route");
        // ECMP of two tunnels: either endpoint.
        assert_eq!(on(0, mpls_in([10, 10, 0, 2], 17, &to_vm1([192, 168, 10, 5]))), Tx(1));
        assert_eq!(on(0, mpls_in([10, 10, 0, 4], 17, &to_vm1([192, 168, 10, 5]))), Tx(1));
        assert_eq!(on(0, mpls_in([10, 10, 0, 3], 17, &to_vm1([192, 168, 10, 5]))), spoofed);
        // IPv6 inside MPLSoUDP.
        assert_eq!(on(0, mpls_in([10, 10, 0, 2], 17, &udp6("fd00:2::5", "fd00:1::3"))), Tx(1));
        assert_eq!(on(0, mpls_in([10, 10, 0, 4], 17, &udp6("fd00:2::5", "fd00:1::3"))), spoofed);
        // The label is still checked first.
        assert_eq!(on(0, mpls_in([10, 10, 0, 9], 99, &to_vm1([192, 168, 2, 5]))), Drop(DropReason::InvalidLabel));
        // Routed VXLAN: 192.168.3.0/24 is behind 10.10.0.3.
        let routed = |src| eth(sfib().router_mac, [2, 0, 0, 0, 3, 10], 0x0800, &to_vm1(src));
        assert_eq!(on(0, vxlan_in([10, 10, 0, 3], 5001, &routed([192, 168, 3, 5]))), Tx(1));
        assert_eq!(on(0, vxlan_in([10, 10, 0, 2], 5001, &routed([192, 168, 3, 5]))), spoofed);
        assert_eq!(on(0, vxlan_in([10, 10, 0, 3], 5001, &routed([192, 168, 2, 5]))), spoofed);
    }
}

/// Fragments, IPv6 extension headers and ICMP errors through the flow stage, on a real flow
/// table: keys, fragment table, lookup-only ICMP errors.
mod special_keys {
    use super::*;
    use crate::pipeline::flow::HoldStore;
    use crate::pipeline::frag::FragTable;
    use flow_table::{Action, FlowKey, FlowTable, FlowTableConfig, FlowUpdate};
    use std::net::{Ipv4Addr, Ipv6Addr};

    const VM: [u8; 4] = [192, 168, 1, 3];
    const REMOTE: [u8; 4] = [192, 168, 2, 7];

    fn table(dir: &tempfile::TempDir) -> FlowTable {
        let cfg = FlowTableConfig { main_entries: 1024, overflow_entries: 1024, max_lcores: 2 };
        FlowTable::create(&dir.path().join("t"), &cfg).unwrap()
    }

    fn eth(ethertype: u16, l3: &[u8]) -> Vec<u8> {
        let mut f = fib().router_mac.to_vec();
        f.extend_from_slice(&[2, 0, 0, 0, 1, 3]);
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(l3);
        f
    }

    fn v4(src: [u8; 4], dst: [u8; 4], proto: u8, ident: u16, offset: u16, more: bool, data: &[u8]) -> Vec<u8> {
        let total = (20 + data.len()) as u16;
        let mut ip = vec![0x45, 0];
        ip.extend_from_slice(&total.to_be_bytes());
        ip.extend_from_slice(&ident.to_be_bytes());
        ip.extend_from_slice(&((offset / 8) | if more { 0x2000 } else { 0 }).to_be_bytes());
        ip.extend_from_slice(&[64, proto, 0, 0]);
        ip.extend_from_slice(&src);
        ip.extend_from_slice(&dst);
        let c = !checksum::data(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        ip.extend_from_slice(data);
        ip
    }

    fn v6(first: u8, rest: &[u8]) -> Vec<u8> {
        let mut ip = vec![0x60, 0, 0, 0];
        ip.extend_from_slice(&(rest.len() as u16).to_be_bytes());
        ip.extend_from_slice(&[first, 64]);
        ip.extend_from_slice(&"fd00:1::3".parse::<Ipv6Addr>().unwrap().octets());
        ip.extend_from_slice(&"fd00::9".parse::<Ipv6Addr>().unwrap().octets());
        ip.extend_from_slice(rest);
        ip
    }

    /// Runs one frame through `process` with a flow stage on `t` and `frags`.
    fn run(t: &FlowTable, frags: &mut FragTable, frame: &[u8], reinject: Option<u32>) -> Verdict {
        let fib = fib();
        let vif = fib.vif(1).unwrap().clone();
        let hold = HoldStore::new(3, 8);
        let mut stage = FlowStage {
            table: t,
            lcore: 0,
            now: 10,
            reinject: reinject.is_some(),
            held_flow: reinject,
            may_create: true,
            pre: None,
            held: &hold,
            mirror: None,
            frags,
        };
        process(fib, &vif, &mut VecBuf::new(128, frame), Some(&mut stage))
    }

    fn set(t: &FlowTable, idx: u32, action: Action) {
        let gen = t.entry(idx).unwrap().gen();
        t.set_action(idx, gen, &FlowUpdate::new(action)).unwrap();
    }

    fn key_of(t: &FlowTable, idx: u32) -> FlowKey {
        t.entry(idx).unwrap().key().unwrap()
    }

    #[test]
    fn every_fragment_of_a_datagram_hits_the_first_fragments_flow() {
        let dir = tempfile::tempdir().unwrap();
        let t = table(&dir);
        let mut frags = FragTable::default();
        let udp = [0x13, 0x88, 0x00, 0x35, 0, 24, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
        let first = eth(0x0800, &v4(VM, REMOTE, 17, 9, 0, true, &udp));
        let second = eth(0x0800, &v4(VM, REMOTE, 17, 9, 16, false, &[9; 8]));
        // The second fragment comes first: it waits.
        assert_eq!(run(&t, &mut frags, &second, None), Verdict::FragWait);
        frags.park(0x5eb, 1).unwrap();
        let Verdict::Hold { flow, new: true } = run(&t, &mut frags, &first, None) else { panic!() };
        let k = key_of(&t, flow);
        assert_eq!((k.proto(), k.sport(), k.dport()), (17, 5000, 53), "keyed by the real ports");
        let mut ready = Vec::new();
        frags.take_ready(|p, v| ready.push((p, v)));
        assert_eq!(ready, vec![(0x5eb, 1)]);
        // Run again: it joins the first fragment's flow (still in HOLD).
        assert_eq!(run(&t, &mut frags, &second, None), Verdict::Hold { flow, new: false });
        set(&t, flow, Action::Drop);
        // Released after the verdict: both take it, neither is counted twice.
        assert_eq!(run(&t, &mut frags, &first, Some(flow)), Drop(DropReason::FlowActionDrop));
        assert_eq!(run(&t, &mut frags, &second, Some(flow)), Drop(DropReason::FlowActionDrop));
        let s = t.snapshot(flow).unwrap().unwrap();
        assert_eq!((s.packets, s.bytes), (2, 36 + 28));
        assert_eq!(frags.len(), 0, "complete datagram forgotten");
    }

    #[test]
    fn every_fragment_of_a_datagram_takes_one_ecmp_and_tunnel_hash() {
        let udp = [0x13, 0x88, 0x00, 0x35, 0, 24, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
        let first = v4(VM, REMOTE, 17, 9, 0, true, &udp);
        let later = v4(VM, REMOTE, 17, 9, 16, false, &[9; 8]);
        let h = |p: &[u8]| hash_v4(&ipv4::Packet::new_checked(p).unwrap());
        assert_eq!(h(&first), h(&later));
        let whole = v4(VM, REMOTE, 17, 9, 0, false, &udp);
        assert_ne!(h(&whole), h(&first), "an unfragmented datagram hashes its ports");
    }

    #[test]
    fn ipv6_extension_headers_are_walked_to_the_transport_header() {
        let dir = tempfile::tempdir().unwrap();
        let t = table(&dir);
        let mut frags = FragTable::default();
        let udp = [0x13, 0x88, 0x00, 0x35, 0, 8, 0, 0];
        for first in [0u8, 43, 60] {
            let mut rest = vec![17, 0, 1, 4, 0, 0, 0, 0];
            rest.extend_from_slice(&udp);
            let Verdict::Hold { flow, .. } = run(&t, &mut frags, &eth(0x86dd, &v6(first, &rest)), None) else {
                panic!("{first}")
            };
            let k = key_of(&t, flow);
            assert_eq!((k.proto(), k.sport(), k.dport()), (17, 5000, 53), "after header {first}");
        }
        // A chain that runs past the packet.
        let rest = [17u8, 9, 0, 0, 0, 0, 0, 0];
        assert_eq!(run(&t, &mut frags, &eth(0x86dd, &v6(60, &rest)), None), Drop(DropReason::Ipv6ExtChain));
    }

    #[test]
    fn icmp_errors_only_use_the_flow_they_quote() {
        let dir = tempfile::tempdir().unwrap();
        let t = table(&dir);
        let mut frags = FragTable::default();
        // The VM reports port unreachable about the remote's UDP 53 -> 5000.
        let q2 = v4(REMOTE, VM, 17, 1, 0, false, &[0x00, 0x35, 0x13, 0x88, 0, 8, 0, 0]);
        let mut icmp2 = vec![3u8, 3, 0, 0, 0, 0, 0, 0];
        icmp2.extend_from_slice(&q2);
        let err = eth(0x0800, &v4(VM, REMOTE, 1, 2, 0, false, &icmp2));
        // No flow: dropped, no flow created.
        assert_eq!(run(&t, &mut frags, &err, None), Drop(DropReason::IcmpError));
        assert_eq!(t.iter_active().count(), 0);
        // The quoted flow exists (remote -> vm) with its reverse (vm -> remote), forwarding.
        let fwd = FlowKey::v4(1, 17, Ipv4Addr::from(REMOTE), Ipv4Addr::from(VM), 53, 5000);
        let fi = t.lookup_or_hold(&fwd, fwd.hash(), 1).unwrap().index();
        assert!(
            matches!(run(&t, &mut frags, &err, None), Verdict::Hold { flow, new: false } if flow == fi),
            "waits with its flow in HOLD"
        );
        let ri = t.create_reverse(fi, 1).unwrap();
        set(&t, fi, Action::Forward);
        set(&t, ri, Action::Forward);
        assert_eq!(run(&t, &mut frags, &err, Some(fi)), Tx(0), "released: forwarded on the reverse flow");
        assert_eq!(t.snapshot(ri).unwrap().unwrap().packets, 1, "counted on the reverse flow once");
        set(&t, ri, Action::Drop);
        assert_eq!(run(&t, &mut frags, &err, None), Drop(DropReason::FlowActionDrop));
        // An error about an ICMP error, and one not sent to the quoted packet's source.
        let mut about_error = vec![3u8, 3, 0, 0, 0, 0, 0, 0];
        about_error.extend_from_slice(&v4(REMOTE, VM, 1, 1, 0, false, &[3, 1, 0, 0, 0, 0, 0, 0]));
        assert_eq!(
            run(&t, &mut frags, &eth(0x0800, &v4(VM, REMOTE, 1, 3, 0, false, &about_error)), None),
            Drop(DropReason::IcmpError)
        );
        let misdirected = eth(0x0800, &v4(VM, [192, 168, 2, 8], 1, 4, 0, false, &icmp2));
        assert_eq!(run(&t, &mut frags, &misdirected, None), Drop(DropReason::IcmpError));
    }
}

/// ICMP Time Exceeded answers, compared byte for byte with frames built here, their
/// checksums recomputed by [`ones`] (not the crate's checksum code).
mod time_exceeded {
    use super::*;
    use crate::pipeline::icmp_error::{TokenBucket, MAX_V6_QUOTE};

    const VM_MAC: [u8; 6] = [2, 0, 0, 0, 1, 3];
    const VIF_MAC: [u8; 6] = [0x00, 0x00, 0x5e, 0x00, 0x01, 0x00];

    /// Ones'-complement sum of 16-bit big-endian words, folded, complemented.
    fn ones(parts: &[&[u8]]) -> u16 {
        let mut bytes = Vec::new();
        for p in parts {
            bytes.extend_from_slice(p);
        }
        if bytes.len() % 2 == 1 {
            bytes.push(0);
        }
        let mut s: u32 = 0;
        for w in bytes.chunks(2) {
            s += u32::from(w[0]) << 8 | u32::from(w[1]);
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }

    fn ip4_frame(src: [u8; 4], dst: [u8; 4], ttl: u8, proto: u8, frag: u16, l4: &[u8], pad_to: usize) -> Vec<u8> {
        let mut f = VIF_MAC.to_vec();
        f.extend_from_slice(&VM_MAC);
        f.extend_from_slice(&[0x08, 0x00]);
        let total = (20 + l4.len()) as u16;
        let mut ip = vec![0x45, 0];
        ip.extend_from_slice(&total.to_be_bytes());
        ip.extend_from_slice(&[0xbe, 0xef]);
        ip.extend_from_slice(&frag.to_be_bytes());
        ip.extend_from_slice(&[ttl, proto, 0, 0]);
        ip.extend_from_slice(&src);
        ip.extend_from_slice(&dst);
        let c = ones(&[&ip]);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(l4);
        f.resize(pad_to.max(f.len()), 0);
        f
    }

    /// The answer expected for `frame` (an IPv4 frame from the VM) from `gw`.
    fn expected_v4(frame: &[u8], gw: [u8; 4]) -> Vec<u8> {
        let ip = &frame[14..];
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        let quote = &ip[..(20 + 8).min(total)];
        let mut out = VM_MAC.to_vec();
        out.extend_from_slice(&VIF_MAC);
        out.extend_from_slice(&[0x08, 0x00]);
        let len = (20 + 8 + quote.len()) as u16;
        let mut h = vec![0x45, 0xc0];
        h.extend_from_slice(&len.to_be_bytes());
        h.extend_from_slice(&[0, 0, 0, 0, 64, 1, 0, 0]);
        h.extend_from_slice(&gw);
        h.extend_from_slice(&ip[12..16]);
        let c = ones(&[&h]);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        let mut icmp = vec![11, 0, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(quote);
        let c = ones(&[&icmp]);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(&icmp);
        out
    }

    fn udp(len: usize) -> Vec<u8> {
        let mut u = vec![0x9c, 0x40, 0x82, 0x9a];
        u.extend_from_slice(&((8 + len) as u16).to_be_bytes());
        u.extend_from_slice(&[0x12, 0x34]);
        u.extend((0..len).map(|i| i as u8));
        u
    }

    fn gw_fib() -> Fib {
        let cfg = CFG.replacen(
            "vxlan_vni = 5001",
            "vxlan_vni = 5001\ngateway_ip = \"192.168.1.1\"\ngateway_ip6 = \"fd00:1::1\"",
            1,
        );
        Fib::from_config(&config::parse(&cfg, "test.toml").unwrap()).unwrap()
    }

    #[test]
    fn ipv4_ttl_1_is_answered_byte_for_byte() {
        let fib = fib();
        let vif = fib.vif(1).unwrap().clone();
        // Padded to 60: the padding is not quoted; 20-byte UDP payload: 8 bytes of it are.
        let f = ip4_frame([192, 168, 1, 3], [192, 168, 2, 9], 1, 17, 0x4000, &udp(12), 70);
        let want = expected_v4(&f, [169, 254, 0, 1]);
        assert_eq!(want.len(), 14 + 20 + 8 + 28);
        for headroom in [128, 0] {
            let mut b = VecBuf::new(headroom, &f);
            assert_eq!(process(fib, &vif, &mut b, None), Verdict::Reply { vif: 1, drop: DropReason::TtlExceeded });
            assert_eq!(b.data(), &want[..], "headroom {headroom}");
            // Checksums verified a second way: the crate's views agree.
            let ip = ipv4::Packet::new_checked(&b.data()[14..]).unwrap();
            assert!(ip.verify_checksum());
            assert!(packet::icmp::Packet::new_checked(ip.payload()).unwrap().verify_checksum());
        }
        // TTL 0 too, and a short payload (less than 8 bytes) is quoted whole.
        let f0 = ip4_frame([192, 168, 1, 3], [192, 168, 2, 9], 0, 17, 0, &[1, 2, 3], 0);
        let mut b = VecBuf::new(64, &f0);
        assert_eq!(process(fib, &vif, &mut b, None), Verdict::Reply { vif: 1, drop: DropReason::TtlExceeded });
        assert_eq!(b.data(), &expected_v4(&f0, [169, 254, 0, 1])[..]);
        assert_eq!(b.data().len(), 14 + 28 + 23);
        // TTL 2 is forwarded as before.
        let f2 = ip4_frame([192, 168, 1, 3], [192, 168, 2, 9], 2, 17, 0, &udp(4), 0);
        assert_eq!(process(fib, &vif, &mut VecBuf::new(128, &f2), None), Tx(0));
    }

    #[test]
    fn the_source_is_the_vrf_gateway_address() {
        let fib = gw_fib();
        let vif = fib.vif(1).unwrap().clone();
        let f = ip4_frame([192, 168, 1, 3], [192, 168, 2, 9], 1, 17, 0, &udp(30), 0);
        let mut b = VecBuf::new(128, &f);
        assert_eq!(process(&fib, &vif, &mut b, None), Verdict::Reply { vif: 1, drop: DropReason::TtlExceeded });
        assert_eq!(b.data(), &expected_v4(&f, [192, 168, 1, 1])[..]);
    }

    #[test]
    fn ipv4_cases_that_are_never_answered() {
        let fib = fib();
        let vif = fib.vif(1).unwrap().clone();
        let drop = Drop(DropReason::TtlExceeded);
        let answer = Verdict::Reply { vif: 1, drop: DropReason::TtlExceeded };
        let run = |f: Vec<u8>, v: &Vif| process(fib, v, &mut VecBuf::new(128, &f), None);
        let dst = [192, 168, 2, 9];
        // ICMP errors (dest unreachable, time exceeded, ...) are not answered; echo is.
        for t in [3u8, 4, 5, 11, 12] {
            assert_eq!(
                run(ip4_frame([192, 168, 1, 3], dst, 1, 1, 0, &[t, 0, 0, 0, 0, 0, 0, 0], 0), &vif),
                drop,
                "type {t}"
            );
        }
        assert_eq!(run(ip4_frame([192, 168, 1, 3], dst, 1, 1, 0, &[8, 0, 0, 0, 0, 1, 0, 1], 0), &vif), answer);
        assert_eq!(run(ip4_frame([192, 168, 1, 3], dst, 1, 1, 0, &[], 0), &vif), drop, "no ICMP type to check");
        // Non-first fragment; a first fragment (MF, offset 0) is answered.
        assert_eq!(run(ip4_frame([192, 168, 1, 3], dst, 1, 17, 0x0001, &udp(8), 0), &vif), drop);
        assert_eq!(run(ip4_frame([192, 168, 1, 3], dst, 1, 17, 0x2000, &udp(8), 0), &vif), answer);
        // Sources that are not one host (the source check would drop them first: off here).
        let mut unchecked = vif.clone();
        unchecked.source_check = false;
        for src in [[0, 0, 0, 0], [224, 0, 0, 5], [255, 255, 255, 255], [127, 0, 0, 1]] {
            assert_eq!(run(ip4_frame(src, dst, 1, 17, 0, &udp(8), 0), &unchecked), drop, "{src:?}");
        }
        // From a multicast MAC.
        let mut f = ip4_frame([192, 168, 1, 3], dst, 1, 17, 0, &udp(8), 0);
        f[6] = 0x03;
        assert_eq!(run(f, &vif), drop);
        // Not from a VM vif.
        let mut fabric_kind = vif.clone();
        fabric_kind.kind = VifType::Fabric;
        assert_eq!(run(ip4_frame([192, 168, 1, 3], dst, 1, 17, 0, &udp(8), 0), &fabric_kind), drop);
    }

    fn ip6_frame(src: Ipv6Addr, dst: Ipv6Addr, hop: u8, next: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = VIF_MAC.to_vec();
        f.extend_from_slice(&VM_MAC);
        f.extend_from_slice(&[0x86, 0xdd]);
        f.extend_from_slice(&[0x60, 0x01, 0x23, 0x45]);
        f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        f.extend_from_slice(&[next, hop]);
        f.extend_from_slice(&src.octets());
        f.extend_from_slice(&dst.octets());
        f.extend_from_slice(payload);
        f
    }

    fn expected_v6(frame: &[u8], gw: Ipv6Addr) -> Vec<u8> {
        let ip = &frame[14..];
        let quote = &ip[..ip.len().min(1232)];
        let src: [u8; 16] = ip[8..24].try_into().unwrap();
        let mut out = VM_MAC.to_vec();
        out.extend_from_slice(&VIF_MAC);
        out.extend_from_slice(&[0x86, 0xdd]);
        let plen = (8 + quote.len()) as u16;
        out.extend_from_slice(&[0x60, 0, 0, 0]);
        out.extend_from_slice(&plen.to_be_bytes());
        out.extend_from_slice(&[58, 64]);
        out.extend_from_slice(&gw.octets());
        out.extend_from_slice(&src);
        let mut icmp = vec![3, 0, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(quote);
        let pseudo_len = (icmp.len() as u32).to_be_bytes();
        let c = ones(&[&gw.octets(), &src, &pseudo_len, &[0, 0, 0, 58], &icmp]);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        out.extend_from_slice(&icmp);
        out
    }

    #[test]
    fn ipv6_hop_limit_1_is_answered_byte_for_byte() {
        let fib = fib();
        let vif = fib.vif(1).unwrap().clone();
        let (src, dst): (Ipv6Addr, Ipv6Addr) = ("fd00:1::3".parse().unwrap(), "fd00::9".parse().unwrap());
        // A small packet is quoted whole; a 1400-byte one is cut to fit 1280 bytes.
        for n in [20usize, 1400] {
            let f = ip6_frame(src, dst, 1, 17, &udp(n));
            let want = expected_v6(&f, "fe80::1".parse().unwrap());
            for headroom in [128, 0] {
                let mut b = VecBuf::new(headroom, &f);
                assert_eq!(process(fib, &vif, &mut b, None), Verdict::Reply { vif: 1, drop: DropReason::TtlExceeded });
                assert_eq!(b.data(), &want[..], "{n} bytes, headroom {headroom}");
            }
            assert!(want.len() - 14 <= 1280);
            if n == 1400 {
                assert_eq!(want.len() - 14, 1280, "as much as fits");
                assert_eq!(want.len(), 14 + 48 + MAX_V6_QUOTE);
            }
        }
        let fib = gw_fib();
        let f = ip6_frame(src, dst, 1, 17, &udp(3));
        let mut b = VecBuf::new(128, &f);
        assert_eq!(process(&fib, &vif, &mut b, None), Verdict::Reply { vif: 1, drop: DropReason::TtlExceeded });
        assert_eq!(b.data(), &expected_v6(&f, "fd00:1::1".parse().unwrap())[..]);
        let c = icmpv6::Packet::new_checked(&b.data()[54..]).unwrap();
        assert!(c.verify_checksum("fd00:1::1".parse().unwrap(), src));
    }

    #[test]
    fn ipv6_cases_that_are_never_answered() {
        let fib = fib();
        let vif = fib.vif(1).unwrap().clone();
        let drop = Drop(DropReason::TtlExceeded);
        let answer = Verdict::Reply { vif: 1, drop: DropReason::TtlExceeded };
        let src: Ipv6Addr = "fd00:1::3".parse().unwrap();
        let dst: Ipv6Addr = "fd00::9".parse().unwrap();
        let run = |f: Vec<u8>| process(fib, &vif, &mut VecBuf::new(128, &f), None);
        // ICMPv6 errors (types < 128) are not answered, echo requests are.
        for t in [1u8, 2, 3, 4] {
            assert_eq!(run(ip6_frame(src, dst, 1, 58, &[t, 0, 0, 0, 0, 0, 0, 0])), drop, "type {t}");
        }
        assert_eq!(run(ip6_frame(src, dst, 1, 58, &[128, 0, 0, 0, 0, 1, 0, 1])), answer);
        // Fragment header: offset 0 (first) answered, offset 1 not.
        let frag = |off: u16| {
            let mut p = vec![17, 0];
            p.extend_from_slice(&((off << 3) | 1).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, 7]);
            p.extend_from_slice(&udp(8));
            p
        };
        assert_eq!(run(ip6_frame(src, dst, 1, 44, &frag(0))), answer);
        assert_eq!(run(ip6_frame(src, dst, 1, 44, &frag(1))), drop);
        // Hop-by-hop options then an ICMPv6 error: walked, not answered.
        let mut hbh = vec![58, 0, 1, 4, 0, 0, 0, 0];
        hbh.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(run(ip6_frame(src, dst, 1, 0, &hbh)), drop);
        // Truncated extension header chain.
        assert_eq!(run(ip6_frame(src, dst, 1, 0, &[17])), drop);
        // Sources that are not one host (the source check would drop most first: off here).
        let mut unchecked = vif.clone();
        unchecked.source_check = false;
        for s in ["::", "ff02::1", "::1"] {
            let f = ip6_frame(s.parse().unwrap(), dst, 1, 17, &udp(8));
            assert_eq!(process(fib, &unchecked, &mut VecBuf::new(128, &f), None), drop, "{s}");
        }
    }

    #[test]
    fn token_bucket_rate_and_burst() {
        // 1000 ticks per second, 100 answers per second (10 ticks each), burst 3.
        let mut b = TokenBucket::new(100, 3, 1000);
        assert_eq!((0..4).map(|_| b.allow(0)).collect::<Vec<_>>(), [true, true, true, false]);
        assert!(!b.allow(9), "9 ticks: not yet a token");
        assert!(b.allow(10));
        assert!(!b.allow(10));
        // A long pause refills the burst only.
        assert_eq!((0..4).map(|_| b.allow(100_000)).collect::<Vec<_>>(), [true, true, true, false]);
        // Steady state: exactly `rate` per second over a whole second of calls every tick.
        let mut b = TokenBucket::new(100, 1, 1000);
        let allowed = (1..=1000u64).filter(|&t| b.allow(t)).count();
        assert_eq!(allowed, 100, "t = 1 (the full bucket), 11, 21, ..., 991");
        // Rate 0: never.
        let mut b = TokenBucket::new(0, 10, 1000);
        assert!((0..100).all(|t| !b.allow(t)));
    }
}
