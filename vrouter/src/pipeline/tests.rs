//! Unit and property tests of the pipeline on `Vec`-backed buffers.
use super::*;
use crate::config;
use proptest::prelude::*;

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

/// A packet buffer with configurable headroom, like an mbuf.
struct VecBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl VecBuf {
    fn new(headroom: usize, data: &[u8]) -> VecBuf {
        let mut buf = vec![0xAA; headroom];
        buf.extend_from_slice(data);
        buf.resize(buf.len() + 64, 0xBB);
        VecBuf { start: headroom, end: headroom + data.len(), buf }
    }
}

impl PacketBuf for VecBuf {
    fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.end]
    }
    fn prepend(&mut self, n: usize) -> bool {
        if n > self.start {
            return false;
        }
        self.start -= n;
        true
    }
    fn adj(&mut self, n: usize) -> bool {
        if n > self.end - self.start {
            return false;
        }
        self.start += n;
        true
    }
    fn trim_to(&mut self, len: usize) -> bool {
        if len > self.end - self.start {
            return false;
        }
        self.end = self.start + len;
        true
    }
    fn append(&mut self, n: usize) -> bool {
        if self.end + n > self.buf.len() {
            return false;
        }
        self.buf[self.end..self.end + n].fill(0);
        self.end += n;
        true
    }
}

fn udp_frame(dst: [u8; 4], pad_to: usize) -> Vec<u8> {
    let mut f = vec![0x00, 0x00, 0x5e, 0x00, 0x01, 0x00, 2, 0, 0, 0, 1, 3, 0x08, 0x00];
    let mut ip = vec![0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0, 192, 168, 1, 3];
    ip.extend_from_slice(&dst);
    let c = !crate::packet::checksum::data(&ip);
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
    let mut ip = vec![0x45, 0, (total >> 8) as u8, total as u8, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 10, 0, 2, 10, 10, 0, 1];
    let c = !crate::packet::checksum::data(&ip);
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
    let inner = &udp_frame([192, 168, 1, 3], 0)[14..];
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
    fn table_with(dir: &tempfile::TempDir, name: &str, key: &flow_table::FlowKey, action: Action, mirrored: bool) -> (FlowTable, u32) {
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
    fn frame(to_router: bool, ihl: u8, ttl: u8, proto: u8, flags_frag: u16, dst: [u8; 4], l4: &[u8], pad: usize, total_delta: i32) -> Vec<u8> {
        let vif = fib().vif(1).unwrap();
        let mut f = if to_router { fib().router_mac.to_vec() } else { vif.mac.to_vec() };
        f.extend_from_slice(&[2, 0, 0, 0, 1, 3, 0x08, 0x00]);
        let hlen = usize::from(ihl) * 4;
        let total = (hlen as i32 + l4.len() as i32 + total_delta).clamp(0, 0xffff) as u16;
        let mut ip = vec![0x40 | ihl, 0];
        ip.extend_from_slice(&total.to_be_bytes());
        ip.extend_from_slice(&[0x12, 0x34]);
        ip.extend_from_slice(&flags_frag.to_be_bytes());
        ip.extend_from_slice(&[ttl, proto, 0, 0, 192, 168, 1, 3]);
        ip.extend_from_slice(&dst);
        ip.resize(hlen.max(20), 0);
        let c = !crate::packet::checksum::data(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(l4);
        f.resize(f.len() + pad, 0);
        f
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, .. ProptestConfig::default() })]

        /// Whenever the hit path takes a packet, the verdict, the bytes sent and the flow's
        /// counters and TCP bits are the general path's; when it does not, nothing changed.
        #[test]
        fn hit_path_is_the_general_path(
            to_router in any::<bool>(),
            ihl in prop_oneof![8 => Just(5u8), 1 => 0u8..16],
            ttl in prop_oneof![Just(0u8), Just(1), Just(2), any::<u8>()],
            proto in prop_oneof![Just(17u8), Just(6), Just(1), any::<u8>()],
            flags_frag in prop_oneof![4 => Just(0x4000u16), 1 => Just(0x2000), 1 => any::<u16>()],
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
            let f = frame(to_router, ihl, ttl, proto, flags_frag, dst, &l4, pad, total_delta);
            // The key the burst pre-pass computes (only valid IPv4 frames get one).
            let key = match ipv4::Packet::new_checked(&f[14..]) {
                Ok(ip) => flow::key_v4(vif.vrf, &ip),
                Err(_) => flow_table::FlowKey::v4(vif.vrf, 0, std::net::Ipv4Addr::UNSPECIFIED, std::net::Ipv4Addr::UNSPECIFIED, 0, 0),
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
            let hit_verdict = hit::forward_v4(&cx, &mut a, i_hit, hash, |i| held && i == i_hit);

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
            };
            let general = process(fib, &vif, &mut b, Some(&mut stage));

            let after_hit = t_hit.snapshot(i_hit).unwrap().unwrap();
            let after_gen = t_gen.snapshot(i_gen).unwrap().unwrap();
            match hit_verdict {
                Some(v) => {
                    prop_assert_eq!(v, general);
                    prop_assert_eq!(a.data(), b.data());
                    prop_assert_eq!((after_hit.packets, after_hit.bytes, after_hit.tcp_flags, after_hit.last_seen),
                                    (after_gen.packets, after_gen.bytes, after_gen.tcp_flags, after_gen.last_seen));
                }
                None => {
                    prop_assert_eq!(a.data(), &f[..]);
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
        assert_eq!(hit::forward_v4(&cx, &mut a, idx, key.hash(), |_| false), Some(Tx(0)));
        let s = t.snapshot(idx).unwrap().unwrap();
        assert_eq!((s.packets, s.bytes, s.last_seen), (1, 28, 9));
        // Outer Ethernet + IPv4 + UDP + MPLS in front of the inner IPv4 packet, TTL 63.
        assert_eq!(a.data().len(), MPLSOUDP_OVERHEAD + 28);
        assert_eq!(a.data()[MPLSOUDP_OVERHEAD + 8], 63);
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
        let cfg = CFG.replacen("vxlan_vni = 5001", "vxlan_vni = 5001\ngateway_ip = \"192.168.1.1\"\ngateway_ip6 = \"fd00:1::1\"", 1);
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
            assert!(crate::packet::icmp::Packet::new_checked(ip.payload()).unwrap().verify_checksum());
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
            assert_eq!(run(ip4_frame([192, 168, 1, 3], dst, 1, 1, 0, &[t, 0, 0, 0, 0, 0, 0, 0], 0), &vif), drop, "type {t}");
        }
        assert_eq!(run(ip4_frame([192, 168, 1, 3], dst, 1, 1, 0, &[8, 0, 0, 0, 0, 1, 0, 1], 0), &vif), answer);
        assert_eq!(run(ip4_frame([192, 168, 1, 3], dst, 1, 1, 0, &[], 0), &vif), drop, "no ICMP type to check");
        // Non-first fragment; a first fragment (MF, offset 0) is answered.
        assert_eq!(run(ip4_frame([192, 168, 1, 3], dst, 1, 17, 0x0001, &udp(8), 0), &vif), drop);
        assert_eq!(run(ip4_frame([192, 168, 1, 3], dst, 1, 17, 0x2000, &udp(8), 0), &vif), answer);
        // Sources that are not one host.
        for src in [[0, 0, 0, 0], [224, 0, 0, 5], [255, 255, 255, 255], [127, 0, 0, 1]] {
            assert_eq!(run(ip4_frame(src, dst, 1, 17, 0, &udp(8), 0), &vif), drop, "{src:?}");
        }
        // From a multicast MAC.
        let mut f = ip4_frame([192, 168, 1, 3], dst, 1, 17, 0, &udp(8), 0);
        f[6] = 0x03;
        assert_eq!(run(f, &vif), drop);
        // Not from a VM vif.
        let mut fabric_kind = vif.clone();
        fabric_kind.kind = config::VifType::Fabric;
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
        let c = crate::packet::icmpv6::Packet::new_checked(&b.data()[54..]).unwrap();
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
        // Sources that are not one host.
        for s in ["::", "ff02::1", "::1"] {
            assert_eq!(run(ip6_frame(s.parse().unwrap(), dst, 1, 17, &udp(8))), drop, "{s}");
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
