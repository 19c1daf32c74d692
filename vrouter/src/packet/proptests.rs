//! Property tests for the packet views: whatever the bytes, `new_checked` never panics, and
//! once it succeeds no getter, setter or `payload()` does either.

use super::*;
use proptest::prelude::*;
use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr};

// ---------------------------------------------------------------------------------------
// Exercisers: for each protocol, check the bytes; when that succeeds call every getter,
// then every setter (on a copy) with values derived from `r`, then every getter again.
// ---------------------------------------------------------------------------------------

fn eth_getters<T: AsRef<[u8]>>(p: &ethernet::Frame<T>) {
    black_box((p.dst_addr(), p.src_addr(), p.ethertype(), p.header_len(), p.payload()));
    black_box((ethernet::is_multicast(&p.dst_addr()), ethernet::is_broadcast(&p.dst_addr())));
}

fn exercise_ethernet(bytes: &[u8], r: u64) -> Result<()> {
    let p = ethernet::Frame::new_checked(bytes)?;
    eth_getters(&p);
    black_box(p.into_payload());
    let mut buf = bytes.to_vec();
    let mut p = ethernet::Frame::new_checked(&mut buf[..]).unwrap();
    let mac = [r as u8, (r >> 8) as u8, 1, 2, 3, (r >> 16) as u8];
    p.set_dst_addr(mac);
    p.set_src_addr(mac);
    p.set_ethertype(r as u16);
    assert_eq!((p.dst_addr(), p.src_addr(), p.ethertype()), (mac, mac, r as u16));
    black_box(p.payload_mut().len());
    eth_getters(&p);
    Ok(())
}

fn vlan_getters<T: AsRef<[u8]>>(p: &vlan::Packet<T>) {
    black_box((p.tci(), p.pcp(), p.dei(), p.vid(), p.ethertype(), p.payload()));
}

fn exercise_vlan(bytes: &[u8], r: u64) -> Result<()> {
    let p = vlan::Packet::new_checked(bytes)?;
    vlan_getters(&p);
    black_box(p.into_payload());
    let mut buf = bytes.to_vec();
    let mut p = vlan::Packet::new_checked(&mut buf[..]).unwrap();
    p.set_pcp(r as u8);
    p.set_dei(r & 0x100 != 0);
    p.set_vid((r >> 16) as u16);
    p.set_ethertype((r >> 32) as u16);
    assert_eq!(p.pcp(), r as u8 & 7);
    assert_eq!(p.dei(), r & 0x100 != 0);
    assert_eq!(p.vid(), (r >> 16) as u16 & 0xfff);
    assert_eq!(p.ethertype(), (r >> 32) as u16);
    p.set_tci(r as u16);
    black_box(p.payload_mut().len());
    vlan_getters(&p);
    Ok(())
}

fn arp_getters<T: AsRef<[u8]>>(p: &arp::Packet<T>) {
    black_box((p.hardware_type(), p.protocol_type(), p.hardware_len(), p.protocol_len()));
    black_box((p.operation(), p.sender_hardware_addr(), p.sender_protocol_addr()));
    black_box((p.target_hardware_addr(), p.target_protocol_addr()));
}

fn exercise_arp(bytes: &[u8], r: u64) -> Result<()> {
    let p = arp::Packet::new_checked(bytes)?;
    arp_getters(&p);
    let mut buf = bytes.to_vec();
    let mut p = arp::Packet::new_checked(&mut buf[..]).unwrap();
    let mac = [(r >> 40) as u8, 0, 0, 0, 0, r as u8];
    let ip = Ipv4Addr::from(r as u32);
    p.set_operation((r >> 8) as u16);
    p.set_sender_hardware_addr(mac);
    p.set_sender_protocol_addr(ip);
    p.set_target_hardware_addr(mac);
    p.set_target_protocol_addr(ip);
    assert_eq!(p.operation(), (r >> 8) as u16);
    assert_eq!((p.sender_hardware_addr(), p.target_hardware_addr()), (mac, mac));
    assert_eq!((p.sender_protocol_addr(), p.target_protocol_addr()), (ip, ip));
    p.set_hardware_type(r as u16);
    p.set_protocol_type(r as u16);
    p.set_hardware_len(r as u8);
    p.set_protocol_len(r as u8);
    arp_getters(&p);
    p.set_ethernet_ipv4();
    assert!(arp::Packet::new_checked(&buf[..]).is_ok());
    Ok(())
}

fn ipv4_getters<T: AsRef<[u8]>>(p: &ipv4::Packet<T>) {
    black_box((p.version(), p.header_len(), p.dscp(), p.ecn(), p.total_len(), p.ident()));
    black_box((p.dont_frag(), p.more_frags(), p.frag_offset(), p.is_fragment()));
    black_box((p.ttl(), p.hop_limit(), p.protocol(), p.next_header(), p.checksum()));
    black_box((p.src_addr(), p.dst_addr(), p.verify_checksum()));
    black_box((p.header(), p.options(), p.payload()));
}

fn exercise_ipv4(bytes: &[u8], r: u64) -> Result<()> {
    let p = ipv4::Packet::new_checked(bytes)?;
    ipv4_getters(&p);
    assert!(p.header_len() >= ipv4::HEADER_LEN);
    assert_eq!(p.payload().len(), usize::from(p.total_len()) - p.header_len());
    assert_eq!(p.options().len(), p.header_len() - ipv4::HEADER_LEN);
    black_box(p.into_payload());

    let mut buf = bytes.to_vec();
    let mut p = ipv4::Packet::new_checked(&mut buf[..]).unwrap();
    // Checksum-preserving operations first, on a correct checksum.
    p.fill_checksum();
    assert!(p.verify_checksum());
    let ttl = p.ttl();
    assert_eq!(p.decrement_ttl_update_checksum(), ttl.saturating_sub(1));
    assert!(p.verify_checksum());
    p.set_src_addr_update_checksum(Ipv4Addr::from(r as u32));
    p.set_dst_addr_update_checksum(Ipv4Addr::from((r >> 32) as u32));
    assert!(p.verify_checksum());
    let cs = p.checksum();
    p.fill_checksum();
    assert_eq!(cs, p.checksum());
    // Plain setters.
    p.set_dscp(r as u8);
    p.set_ecn((r >> 6) as u8);
    p.set_ident((r >> 8) as u16);
    p.set_dont_frag(r & 1 != 0);
    p.set_more_frags(r & 2 != 0);
    p.set_frag_offset((r >> 24) as u16);
    p.set_ttl((r >> 40) as u8);
    p.set_protocol((r >> 48) as u8);
    assert_eq!(p.dscp(), r as u8 & 0x3f);
    assert_eq!(p.ecn(), (r >> 6) as u8 & 3);
    assert_eq!(p.ident(), (r >> 8) as u16);
    assert_eq!((p.dont_frag(), p.more_frags()), (r & 1 != 0, r & 2 != 0));
    assert_eq!(p.frag_offset(), (r >> 24) as u16 & !7);
    assert_eq!((p.ttl(), p.protocol()), ((r >> 40) as u8, (r >> 48) as u8));
    p.set_hop_limit(0);
    p.set_next_header(0);
    p.clear_flags();
    p.set_checksum(r as u16);
    black_box((p.options_mut().len(), p.payload_mut().len()));
    // Length-changing setters: later calls must still not panic.
    p.set_header_len((r >> 56) as usize);
    p.set_total_len((r >> 12) as u16);
    p.set_version((r >> 20) as u8);
    ipv4_getters(&p);
    black_box((p.options_mut().len(), p.payload_mut().len()));
    p.fill_checksum();
    p.decrement_ttl_update_checksum();
    ipv4_getters(&p);
    Ok(())
}

fn ipv6_getters<T: AsRef<[u8]>>(p: &ipv6::Packet<T>) {
    black_box((p.version(), p.traffic_class(), p.flow_label(), p.payload_len(), p.total_len()));
    black_box((p.next_header(), p.hop_limit(), p.src_addr(), p.dst_addr(), p.payload()));
}

fn exercise_ipv6(bytes: &[u8], r: u64) -> Result<()> {
    let p = ipv6::Packet::new_checked(bytes)?;
    ipv6_getters(&p);
    assert_eq!(p.payload().len(), usize::from(p.payload_len()));
    black_box(p.into_payload());
    let mut buf = bytes.to_vec();
    let mut p = ipv6::Packet::new_checked(&mut buf[..]).unwrap();
    let a = Ipv6Addr::from(u128::from(r) << 64 | u128::from(!r));
    p.set_traffic_class(r as u8);
    p.set_flow_label((r >> 8) as u32);
    p.set_next_header((r >> 40) as u8);
    p.set_hop_limit((r >> 48) as u8);
    p.set_src_addr(a);
    p.set_dst_addr(a);
    assert_eq!(p.version(), 6);
    assert_eq!(p.traffic_class(), r as u8);
    assert_eq!(p.flow_label(), (r >> 8) as u32 & 0xfffff);
    assert_eq!((p.next_header(), p.hop_limit()), ((r >> 40) as u8, (r >> 48) as u8));
    assert_eq!((p.src_addr(), p.dst_addr()), (a, a));
    assert_eq!(p.decrement_hop_limit(), ((r >> 48) as u8).saturating_sub(1));
    black_box(p.payload_mut().len());
    p.set_payload_len((r >> 16) as u16);
    p.set_version((r >> 60) as u8);
    ipv6_getters(&p);
    black_box(p.payload_mut().len());
    Ok(())
}

fn udp_getters<T: AsRef<[u8]>>(p: &udp::Packet<T>) {
    let (s4, d4) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
    let (s6, d6) = (Ipv6Addr::LOCALHOST, Ipv6Addr::UNSPECIFIED);
    black_box((p.src_port(), p.dst_port(), p.len(), p.checksum(), p.payload()));
    black_box((p.verify_checksum_v4(s4, d4), p.verify_checksum_v6(s6, d6)));
}

fn exercise_udp(bytes: &[u8], r: u64) -> Result<()> {
    let p = udp::Packet::new_checked(bytes)?;
    udp_getters(&p);
    assert_eq!(p.payload().len(), usize::from(p.len()) - udp::HEADER_LEN);
    black_box(p.into_payload());
    let mut buf = bytes.to_vec();
    let mut p = udp::Packet::new_checked(&mut buf[..]).unwrap();
    let (s4, d4) = (Ipv4Addr::from(r as u32), Ipv4Addr::from((r >> 32) as u32));
    let (s6, d6) = (Ipv6Addr::from(u128::from(r)), Ipv6Addr::from(u128::from(r) << 64));
    p.set_src_port(r as u16);
    p.set_dst_port((r >> 16) as u16);
    assert_eq!((p.src_port(), p.dst_port()), (r as u16, (r >> 16) as u16));
    p.fill_checksum_v4(s4, d4);
    assert!(p.verify_checksum_v4(s4, d4));
    p.fill_checksum_v6(s6, d6);
    assert!(p.verify_checksum_v6(s6, d6));
    black_box(p.payload_mut().len());
    p.set_checksum((r >> 48) as u16);
    p.set_len((r >> 32) as u16);
    udp_getters(&p);
    black_box(p.payload_mut().len());
    p.fill_checksum_v4(s4, d4);
    p.fill_checksum_v6(s6, d6);
    Ok(())
}

fn tcp_getters<T: AsRef<[u8]>>(p: &tcp::Packet<T>) {
    let (s4, d4) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
    let (s6, d6) = (Ipv6Addr::LOCALHOST, Ipv6Addr::UNSPECIFIED);
    black_box((p.src_port(), p.dst_port(), p.seq_number(), p.ack_number(), p.header_len()));
    black_box((p.flags(), p.fin(), p.syn(), p.rst(), p.psh(), p.ack(), p.urg(), p.ece()));
    black_box((p.cwr(), p.window_len(), p.checksum(), p.urgent_at()));
    black_box((p.options(), p.payload()));
    black_box((p.verify_checksum_v4(s4, d4), p.verify_checksum_v6(s6, d6)));
}

fn exercise_tcp(bytes: &[u8], r: u64) -> Result<()> {
    let p = tcp::Packet::new_checked(bytes)?;
    tcp_getters(&p);
    assert_eq!(p.payload().len() + p.header_len(), bytes.len());
    black_box(p.into_payload());
    let mut buf = bytes.to_vec();
    let mut p = tcp::Packet::new_checked(&mut buf[..]).unwrap();
    let (s4, d4) = (Ipv4Addr::from(r as u32), Ipv4Addr::from((r >> 32) as u32));
    let (s6, d6) = (Ipv6Addr::from(u128::from(r)), Ipv6Addr::from(u128::from(r) << 64));
    p.set_src_port(r as u16);
    p.set_dst_port((r >> 16) as u16);
    p.set_seq_number(r as u32);
    p.set_ack_number((r >> 32) as u32);
    p.set_flags((r >> 20) as u16);
    assert_eq!(p.flags(), (r >> 20) as u16 & tcp::flags::MASK);
    p.set_fin(true);
    p.set_syn(false);
    p.set_rst(true);
    p.set_psh(false);
    p.set_ack(true);
    p.set_urg(false);
    assert!(p.fin() && !p.syn() && p.rst() && !p.psh() && p.ack() && !p.urg());
    p.set_window_len((r >> 40) as u16);
    p.set_urgent_at((r >> 48) as u16);
    assert_eq!((p.src_port(), p.dst_port()), (r as u16, (r >> 16) as u16));
    assert_eq!((p.seq_number(), p.ack_number()), (r as u32, (r >> 32) as u32));
    assert_eq!((p.window_len(), p.urgent_at()), ((r >> 40) as u16, (r >> 48) as u16));
    p.fill_checksum_v4(s4, d4);
    assert!(p.verify_checksum_v4(s4, d4));
    p.fill_checksum_v6(s6, d6);
    assert!(p.verify_checksum_v6(s6, d6));
    black_box((p.options_mut().len(), p.payload_mut().len()));
    p.set_checksum(r as u16);
    p.set_header_len((r >> 56) as usize);
    tcp_getters(&p);
    black_box((p.options_mut().len(), p.payload_mut().len()));
    Ok(())
}

fn icmp_getters<T: AsRef<[u8]>>(p: &icmp::Packet<T>) {
    black_box((p.msg_type(), p.msg_code(), p.checksum(), p.is_echo(), p.echo_ident()));
    black_box((p.echo_seq_no(), p.next_hop_mtu(), p.rest_of_header(), p.payload()));
    black_box(p.verify_checksum());
}

fn exercise_icmp(bytes: &[u8], r: u64) -> Result<()> {
    let p = icmp::Packet::new_checked(bytes)?;
    icmp_getters(&p);
    black_box(p.into_payload());
    let mut buf = bytes.to_vec();
    let mut p = icmp::Packet::new_checked(&mut buf[..]).unwrap();
    p.set_msg_type(r as u8);
    p.set_msg_code((r >> 8) as u8);
    p.set_echo_ident((r >> 16) as u16);
    p.set_echo_seq_no((r >> 32) as u16);
    assert_eq!((p.msg_type(), p.msg_code()), (r as u8, (r >> 8) as u8));
    assert_eq!((p.echo_ident(), p.echo_seq_no()), ((r >> 16) as u16, (r >> 32) as u16));
    p.set_next_hop_mtu((r >> 48) as u16);
    p.set_rest_of_header(r as u32);
    p.fill_checksum();
    assert!(p.verify_checksum());
    p.set_checksum(r as u16);
    black_box(p.payload_mut().len());
    icmp_getters(&p);
    Ok(())
}

fn icmpv6_getters<T: AsRef<[u8]>>(p: &icmpv6::Packet<T>) {
    let (s6, d6) = (Ipv6Addr::LOCALHOST, Ipv6Addr::UNSPECIFIED);
    black_box((p.msg_type(), p.msg_code(), p.checksum(), p.rest_of_header()));
    black_box((p.echo_ident(), p.echo_seq_no(), p.na_router(), p.na_solicited()));
    black_box((p.na_override(), p.target_addr(), p.ndp_options(), p.payload()));
    let _ = black_box((p.source_ll_addr(), p.target_ll_addr(), p.verify_checksum(s6, d6)));
    for opt in p.ndp_option_iter().flatten() {
        black_box((opt.kind, opt.data, opt.ll_addr()));
    }
}

fn exercise_icmpv6(bytes: &[u8], r: u64) -> Result<()> {
    let p = icmpv6::Packet::new_checked(bytes)?;
    icmpv6_getters(&p);
    if matches!(p.msg_type(), icmpv6::TYPE_NEIGHBOR_SOLICIT | icmpv6::TYPE_NEIGHBOR_ADVERT) {
        assert!(p.target_addr().is_some());
    }
    black_box(p.into_payload());
    let mut buf = bytes.to_vec();
    let mut p = icmpv6::Packet::new_checked(&mut buf[..]).unwrap();
    let (s6, d6) = (Ipv6Addr::from(u128::from(r)), Ipv6Addr::from(u128::from(r) << 64));
    p.set_msg_code((r >> 8) as u8);
    p.set_echo_ident((r >> 16) as u16);
    p.set_echo_seq_no((r >> 32) as u16);
    p.set_na_flags(r & 1 != 0, r & 2 != 0, r & 4 != 0);
    assert_eq!((p.na_router(), p.na_solicited(), p.na_override()), (r & 1 != 0, r & 2 != 0, r & 4 != 0));
    p.set_rest_of_header(r as u32);
    let target = Ipv6Addr::from(u128::from(r));
    let written = p.set_target_addr(target);
    assert_eq!(written.is_ok(), bytes.len() >= 24);
    let opts = p.ndp_options_mut();
    let room = opts.len();
    let mac = [r as u8; 6];
    let w = icmpv6::write_ll_addr_option(opts, icmpv6::OPT_TARGET_LL_ADDR, mac);
    assert_eq!(w.is_ok(), room >= 8);
    black_box(p.payload_mut().len());
    p.fill_checksum(s6, d6);
    assert!(p.verify_checksum(s6, d6));
    // Any type, including NDP types the buffer is too short for.
    p.set_msg_type(r as u8);
    icmpv6_getters(&p);
    black_box(p.ndp_options_mut().len());
    for t in [133u8, 134, 135, 136, 137] {
        p.set_msg_type(t);
        icmpv6_getters(&p);
        let _ = black_box(p.set_target_addr(target));
    }
    p.set_checksum(r as u16);
    Ok(())
}

fn mpls_getters<T: AsRef<[u8]>>(p: &mpls::Packet<T>) {
    black_box((p.entry(), p.label(), p.tc(), p.bottom_of_stack(), p.ttl(), p.payload()));
}

fn exercise_mpls(bytes: &[u8], r: u64) -> Result<()> {
    let p = mpls::Packet::new_checked(bytes)?;
    mpls_getters(&p);
    black_box(p.into_payload());
    let mut buf = bytes.to_vec();
    let mut p = mpls::Packet::new_checked(&mut buf[..]).unwrap();
    p.set_label(r as u32);
    p.set_tc((r >> 32) as u8);
    p.set_bottom_of_stack(r & (1 << 40) != 0);
    p.set_ttl((r >> 48) as u8);
    assert_eq!(p.label(), r as u32 & mpls::MAX_LABEL);
    assert_eq!(p.tc(), (r >> 32) as u8 & 7);
    assert_eq!(p.bottom_of_stack(), r & (1 << 40) != 0);
    assert_eq!(p.ttl(), (r >> 48) as u8);
    let e = p.entry();
    p.fill(p.label(), p.tc(), p.bottom_of_stack(), p.ttl());
    assert_eq!(e, p.entry());
    p.set_entry(r as u32);
    black_box(p.payload_mut().len());
    mpls_getters(&p);
    Ok(())
}

fn vxlan_getters<T: AsRef<[u8]>>(p: &vxlan::Packet<T>) {
    black_box((p.flags(), p.vni(), p.payload()));
}

fn exercise_vxlan(bytes: &[u8], r: u64) -> Result<()> {
    let p = vxlan::Packet::new_checked(bytes)?;
    vxlan_getters(&p);
    assert!(p.flags() & vxlan::FLAG_I != 0);
    black_box(p.into_payload());
    let mut buf = bytes.to_vec();
    let mut p = vxlan::Packet::new_checked(&mut buf[..]).unwrap();
    p.fill(r as u32);
    assert_eq!((p.flags(), p.vni()), (vxlan::FLAG_I, r as u32 & vxlan::MAX_VNI));
    p.set_vni((r >> 32) as u32);
    p.set_flags((r >> 56) as u8);
    black_box(p.payload_mut().len());
    vxlan_getters(&p);
    Ok(())
}

/// Runs every exerciser on `bytes`; returns the check results in a fixed order.
fn exercise_all(bytes: &[u8], r: u64) -> [Result<()>; 12] {
    [
        exercise_ethernet(bytes, r),
        exercise_vlan(bytes, r),
        exercise_arp(bytes, r),
        exercise_ipv4(bytes, r),
        exercise_ipv6(bytes, r),
        exercise_udp(bytes, r),
        exercise_tcp(bytes, r),
        exercise_icmp(bytes, r),
        exercise_icmpv6(bytes, r),
        exercise_mpls(bytes, r),
        exercise_vxlan(bytes, r),
        // The views must also be usable on owned buffers.
        ipv4::Packet::new_checked(bytes.to_vec()).map(|p| {
            black_box(p.payload().len());
        }),
    ]
}

// ---------------------------------------------------------------------------------------
// Builders for valid packets (through the setters) and nested parsing chains.
// ---------------------------------------------------------------------------------------

const MAC_A: MacAddr = [0x02, 0, 0, 0, 0, 0x0a];
const MAC_B: MacAddr = [0x02, 0, 0, 0, 0, 0x0b];
const V4_A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const V4_B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const V6_A: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const V6_B: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

fn eth_wrap(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0; ethernet::HEADER_LEN + payload.len()];
    let mut f = ethernet::Frame::new_unchecked(&mut v[..]);
    f.set_dst_addr(MAC_B);
    f.set_src_addr(MAC_A);
    f.set_ethertype(ethertype);
    f.payload_mut().copy_from_slice(payload);
    v
}

fn vlan_wrap(vid: u16, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0; vlan::HEADER_LEN + payload.len()];
    let mut t = vlan::Packet::new_unchecked(&mut v[..]);
    t.set_vid(vid);
    t.set_pcp(3);
    t.set_ethertype(ethertype);
    t.payload_mut().copy_from_slice(payload);
    v
}

fn ipv4_wrap(protocol: u8, options: &[u8], payload: &[u8]) -> Vec<u8> {
    let hl = ipv4::HEADER_LEN + options.len();
    let mut v = vec![0; hl + payload.len()];
    let mut p = ipv4::Packet::new_unchecked(&mut v[..]);
    p.set_version(4);
    p.set_header_len(hl);
    p.set_total_len((hl + payload.len()) as u16);
    p.set_ident(0x4242);
    p.set_dont_frag(true);
    p.set_ttl(64);
    p.set_protocol(protocol);
    p.set_src_addr(V4_A);
    p.set_dst_addr(V4_B);
    p.options_mut().copy_from_slice(options);
    p.payload_mut().copy_from_slice(payload);
    p.fill_checksum();
    v
}

fn ipv6_wrap(next_header: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0; ipv6::HEADER_LEN + payload.len()];
    let mut p = ipv6::Packet::new_unchecked(&mut v[..]);
    p.set_version(6);
    p.set_payload_len(payload.len() as u16);
    p.set_next_header(next_header);
    p.set_hop_limit(255);
    p.set_src_addr(V6_A);
    p.set_dst_addr(V6_B);
    p.payload_mut().copy_from_slice(payload);
    v
}

fn udp_wrap(dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0; udp::HEADER_LEN + payload.len()];
    let mut p = udp::Packet::new_unchecked(&mut v[..]);
    p.set_src_port(49152);
    p.set_dst_port(dst_port);
    p.set_len((udp::HEADER_LEN + payload.len()) as u16);
    p.payload_mut().copy_from_slice(payload);
    p.fill_checksum_v4(V4_A, V4_B);
    v
}

fn vxlan_wrap(vni: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0; vxlan::HEADER_LEN + payload.len()];
    let mut p = vxlan::Packet::new_unchecked(&mut v[..]);
    p.fill(vni);
    p.payload_mut().copy_from_slice(payload);
    v
}

fn mpls_wrap(labels: &[u32], payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    for (i, &label) in labels.iter().enumerate() {
        v.extend_from_slice(&mpls::entry(label, 0, i + 1 == labels.len(), 64).to_be_bytes());
    }
    v.extend_from_slice(payload);
    v
}

fn tcp_segment(options: &[u8], payload: &[u8]) -> Vec<u8> {
    let hl = tcp::HEADER_LEN + options.len();
    let mut v = vec![0; hl + payload.len()];
    let mut p = tcp::Packet::new_unchecked(&mut v[..]);
    p.set_src_port(40000);
    p.set_dst_port(80);
    p.set_seq_number(1);
    p.set_header_len(hl);
    p.set_flags(tcp::flags::PSH | tcp::flags::ACK);
    p.set_window_len(1000);
    p.options_mut().copy_from_slice(options);
    p.payload_mut().copy_from_slice(payload);
    p.fill_checksum_v4(V4_A, V4_B);
    v
}

fn icmp_echo(data: &[u8]) -> Vec<u8> {
    let mut v = vec![0; icmp::HEADER_LEN + data.len()];
    let mut p = icmp::Packet::new_unchecked(&mut v[..]);
    p.set_msg_type(icmp::TYPE_ECHO_REQUEST);
    p.set_echo_ident(7);
    p.set_echo_seq_no(1);
    p.payload_mut().copy_from_slice(data);
    p.fill_checksum();
    v
}

/// A Neighbor Solicitation (or Advertisement) with `extra` unknown 8-byte options before
/// the link-layer address option.
fn icmpv6_neighbor(msg_type: u8, extra: usize) -> Vec<u8> {
    let mut v = vec![0; icmpv6::NEIGHBOR_HEADER_LEN + 8 * extra + icmpv6::LL_ADDR_OPTION_LEN];
    let mut p = icmpv6::Packet::new_unchecked(&mut v[..]);
    p.set_msg_type(msg_type);
    p.set_target_addr(V6_B).unwrap();
    let kind = if msg_type == icmpv6::TYPE_NEIGHBOR_SOLICIT {
        icmpv6::OPT_SOURCE_LL_ADDR
    } else {
        p.set_na_flags(false, true, true);
        icmpv6::OPT_TARGET_LL_ADDR
    };
    let opts = p.ndp_options_mut();
    for i in 0..extra {
        opts[8 * i] = 200; // unknown option type
        opts[8 * i + 1] = 1;
    }
    icmpv6::write_ll_addr_option(&mut opts[8 * extra..], kind, MAC_A).unwrap();
    p.fill_checksum(V6_A, V6_B);
    v
}

fn arp_request() -> Vec<u8> {
    let mut v = vec![0; arp::HEADER_LEN];
    let mut p = arp::Packet::new_unchecked(&mut v[..]);
    p.set_ethernet_ipv4();
    p.set_operation(arp::OP_REQUEST);
    p.set_sender_hardware_addr(MAC_A);
    p.set_sender_protocol_addr(V4_A);
    p.set_target_protocol_addr(V4_B);
    v
}

/// Template frames covering every view, with the number of layers each parses to.
fn templates() -> Vec<(Vec<u8>, usize)> {
    let inner_v4 = eth_wrap(EtherType::IPV4, &ipv4_wrap(IpProtocol::ICMP, &[], &icmp_echo(b"ping")));
    let ns = icmpv6_neighbor(icmpv6::TYPE_NEIGHBOR_SOLICIT, 1);
    let na = icmpv6_neighbor(icmpv6::TYPE_NEIGHBOR_ADVERT, 0);
    let tcp = tcp_segment(&[2, 4, 5, 0xb4], b"hello");
    vec![
        // Ethernet -> VLAN -> IPv4 -> UDP -> VXLAN -> Ethernet -> IPv4 -> ICMP
        (
            eth_wrap(
                EtherType::VLAN,
                &vlan_wrap(
                    100,
                    EtherType::IPV4,
                    &ipv4_wrap(IpProtocol::UDP, &[], &udp_wrap(udp::PORT_VXLAN, &vxlan_wrap(5000, &inner_v4))),
                ),
            ),
            8,
        ),
        // Ethernet -> IPv4 -> UDP -> MPLS x2 (one layer) -> IPv6 -> ICMPv6 NS
        (
            eth_wrap(
                EtherType::IPV4,
                &ipv4_wrap(
                    IpProtocol::UDP,
                    &[],
                    &udp_wrap(udp::PORT_MPLS_UDP, &mpls_wrap(&[100, 200], &ipv6_wrap(IpProtocol::ICMPV6, &ns))),
                ),
            ),
            6,
        ),
        // Ethernet -> IPv4 (options) -> UDP -> MPLS -> IPv4 -> TCP
        (
            eth_wrap(
                EtherType::IPV4,
                &ipv4_wrap(
                    IpProtocol::UDP,
                    &[0x94, 4, 0, 0],
                    &udp_wrap(udp::PORT_MPLS_UDP, &mpls_wrap(&[300], &ipv4_wrap(IpProtocol::TCP, &[], &tcp))),
                ),
            ),
            6,
        ),
        // Ethernet -> IPv6 -> UDP -> VXLAN -> Ethernet -> IPv6 -> ICMPv6 NA
        (
            eth_wrap(
                EtherType::IPV6,
                &ipv6_wrap(
                    IpProtocol::UDP,
                    &udp_wrap(
                        udp::PORT_VXLAN,
                        &vxlan_wrap(7, &eth_wrap(EtherType::IPV6, &ipv6_wrap(IpProtocol::ICMPV6, &na))),
                    ),
                ),
            ),
            7,
        ),
        // Ethernet -> ARP, with Ethernet padding
        (
            {
                let mut f = eth_wrap(EtherType::ARP, &arp_request());
                f.resize(60, 0);
                f
            },
            2,
        ),
        // Ethernet -> MPLS -> IPv4 -> UDP (bare payload), with Ethernet padding
        (
            {
                let mut f =
                    eth_wrap(EtherType::MPLS, &mpls_wrap(&[16], &ipv4_wrap(IpProtocol::UDP, &[], &udp_wrap(9, b"x"))));
                f.resize(64, 0);
                f
            },
            4,
        ),
    ]
}

/// Parses `bytes` as an Ethernet frame as deep as it goes, calling the getters of every
/// layer; returns the number of layers that parsed.
fn parse_frame(bytes: &[u8], depth: usize) -> usize {
    let Ok(eth) = ethernet::Frame::new_checked(bytes) else {
        return 0;
    };
    eth_getters(&eth);
    let mut layers = 1;
    let mut ethertype = eth.ethertype();
    let mut rest = eth.into_payload();
    while ethertype == EtherType::VLAN || ethertype == EtherType::QINQ {
        let Ok(tag) = vlan::Packet::new_checked(rest) else {
            return layers;
        };
        vlan_getters(&tag);
        layers += 1;
        ethertype = tag.ethertype();
        rest = tag.into_payload();
    }
    layers
        + match ethertype {
            EtherType::IPV4 => parse_ipv4(rest, depth),
            EtherType::IPV6 => parse_ipv6(rest, depth),
            EtherType::MPLS => parse_mpls(rest, depth),
            EtherType::ARP => match arp::Packet::new_checked(rest) {
                Ok(a) => {
                    arp_getters(&a);
                    1
                }
                Err(_) => 0,
            },
            _ => 0,
        }
}

fn parse_ipv4(bytes: &[u8], depth: usize) -> usize {
    let Ok(ip) = ipv4::Packet::new_checked(bytes) else {
        return 0;
    };
    ipv4_getters(&ip);
    if ip.is_fragment() && ip.frag_offset() != 0 {
        return 1;
    }
    let proto = ip.protocol();
    1 + parse_l4(proto, ip.into_payload(), depth)
}

fn parse_ipv6(bytes: &[u8], depth: usize) -> usize {
    let Ok(ip) = ipv6::Packet::new_checked(bytes) else {
        return 0;
    };
    ipv6_getters(&ip);
    let nh = ip.next_header();
    1 + parse_l4(nh, ip.into_payload(), depth)
}

fn parse_l4(protocol: u8, bytes: &[u8], depth: usize) -> usize {
    match protocol {
        IpProtocol::UDP => {
            let Ok(u) = udp::Packet::new_checked(bytes) else {
                return 0;
            };
            udp_getters(&u);
            let port = u.dst_port();
            let payload = u.into_payload();
            1 + match port {
                udp::PORT_VXLAN if depth < 4 => match vxlan::Packet::new_checked(payload) {
                    Ok(vx) => {
                        vxlan_getters(&vx);
                        1 + parse_frame(vx.into_payload(), depth + 1)
                    }
                    Err(_) => 0,
                },
                udp::PORT_MPLS_UDP if depth < 4 => parse_mpls(payload, depth + 1),
                _ => 0,
            }
        }
        IpProtocol::TCP => match tcp::Packet::new_checked(bytes) {
            Ok(t) => {
                tcp_getters(&t);
                1
            }
            Err(_) => 0,
        },
        IpProtocol::ICMP => match icmp::Packet::new_checked(bytes) {
            Ok(i) => {
                icmp_getters(&i);
                1
            }
            Err(_) => 0,
        },
        IpProtocol::ICMPV6 => match icmpv6::Packet::new_checked(bytes) {
            Ok(i) => {
                icmpv6_getters(&i);
                1
            }
            Err(_) => 0,
        },
        _ => 0,
    }
}

/// Walks an MPLS label stack, then the inner IPv4/IPv6 packet (chosen by its first
/// nibble, as MPLS-over-UDP L3 VPNs do).
fn parse_mpls(bytes: &[u8], depth: usize) -> usize {
    let mut rest = bytes;
    let mut entries = 0;
    loop {
        let Ok(e) = mpls::Packet::new_checked(rest) else {
            return usize::from(entries > 0);
        };
        mpls_getters(&e);
        entries += 1;
        let bottom = e.bottom_of_stack();
        rest = e.into_payload();
        if bottom {
            break;
        }
    }
    1 + match rest.first().map(|b| b >> 4) {
        Some(4) => parse_ipv4(rest, depth),
        Some(6) => parse_ipv6(rest, depth),
        _ => 0,
    }
}

#[test]
fn templates_parse_fully() {
    for (i, (frame, layers)) in templates().iter().enumerate() {
        assert_eq!(parse_frame(frame, 0), *layers, "template {i}");
    }
}

/// Every sub-slice `[start..end]` of every template, through every view.
#[test]
fn every_slice_of_every_template() {
    for (frame, _) in templates() {
        for start in 0..=frame.len() {
            for end in start..=frame.len() {
                let s = &frame[start..end];
                let _ = black_box(exercise_all(s, ((start * 977 + end) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)));
                black_box(parse_frame(s, 0));
            }
        }
    }
}

/// Strict prefixes of a whole packet (no padding) are `Truncated` for views whose length
/// is fixed or announced; the whole packet checks.
fn assert_prefixes_truncated<F: Fn(&[u8]) -> Result<()>>(bytes: &[u8], min_ok: usize, check: F) {
    for len in 0..bytes.len() {
        let res = check(&bytes[..len]);
        if len < min_ok {
            assert_eq!(res, Err(Error::Truncated), "prefix of {len} bytes");
        } else {
            assert_eq!(res, Ok(()), "prefix of {len} bytes");
        }
    }
    assert_eq!(check(bytes), Ok(()));
}

#[test]
fn truncations_of_valid_packets() {
    let r = 0x0123_4567_89ab_cdef;
    let arp = arp_request();
    assert_prefixes_truncated(&arp, arp.len(), |b| exercise_arp(b, r));
    let ns = icmpv6_neighbor(icmpv6::TYPE_NEIGHBOR_SOLICIT, 2);
    assert_prefixes_truncated(&ns, icmpv6::NEIGHBOR_HEADER_LEN, |b| exercise_icmpv6(b, r));
    let echo = icmp_echo(b"abc");
    assert_prefixes_truncated(&echo, icmp::HEADER_LEN, |b| exercise_icmp(b, r));
    let vx = vxlan_wrap(9, b"inner");
    assert_prefixes_truncated(&vx, vxlan::HEADER_LEN, |b| exercise_vxlan(b, r));
    let m = mpls_wrap(&[5], b"x");
    assert_prefixes_truncated(&m, mpls::HEADER_LEN, |b| exercise_mpls(b, r));
    let v = vlan_wrap(5, EtherType::IPV4, b"x");
    assert_prefixes_truncated(&v, vlan::HEADER_LEN, |b| exercise_vlan(b, r));
    let e = eth_wrap(EtherType::IPV6, b"x");
    assert_prefixes_truncated(&e, ethernet::HEADER_LEN, |b| exercise_ethernet(b, r));
}

// ---------------------------------------------------------------------------------------
// Strategies.
// ---------------------------------------------------------------------------------------

/// Random bytes, often nudged so that the version/length fields of one protocol look
/// plausible (pure noise would rarely get past the first check).
fn nudged_bytes() -> impl Strategy<Value = Vec<u8>> {
    (prop::collection::vec(any::<u8>(), 0..200), 0u8..8, any::<u16>()).prop_map(|(mut b, how, x)| {
        let len = b.len();
        let near_len = |x: u16| (usize::from(x) % (len + 8)) as u16;
        match how {
            // IPv4: version 4, any IHL, total length around the buffer length.
            1 if len >= 4 => {
                b[0] = 0x40 | (b[0] & 0x0f);
                b[2..4].copy_from_slice(&near_len(x).to_be_bytes());
            }
            // IPv6: version 6, payload length around what is there.
            2 if len >= 6 => {
                b[0] = 0x60 | (b[0] & 0x0f);
                b[4..6].copy_from_slice(&(near_len(x).saturating_sub(40)).to_be_bytes());
            }
            // UDP length around the buffer length.
            3 if len >= 6 => b[4..6].copy_from_slice(&near_len(x).to_be_bytes()),
            // TCP data offset.
            4 if len >= 13 => b[12] = (x as u8) & 0xf0,
            // ICMPv6 NDP types, with option-ish bytes.
            5 if len >= 1 => b[0] = 133 + (x % 5) as u8,
            // ARP for Ethernet/IPv4, random lengths.
            6 if len >= 6 => {
                b[..4].copy_from_slice(&[0, 1, 8, 0]);
                if x & 1 == 0 {
                    b[4..6].copy_from_slice(&[6, 4]);
                }
            }
            // VXLAN I flag.
            7 if len >= 1 => b[0] |= vxlan::FLAG_I,
            _ => {}
        }
        b
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    /// Random bytes through every view: never a panic.
    #[test]
    fn random_bytes_never_panic(bytes in nudged_bytes(), r in any::<u64>()) {
        let _ = black_box(exercise_all(&bytes, r));
        black_box(parse_frame(&bytes, 0));
    }

    /// Templates with a few random byte mutations and maybe a random truncation, parsed as
    /// a chain (Ethernet -> VLAN -> IPv4 -> UDP -> VXLAN -> Ethernet ..., Ethernet -> IPv4
    /// -> UDP -> MPLS -> IPv4/IPv6 ...), and every view at a few random offsets: never a
    /// panic.
    #[test]
    fn mutated_chains_never_panic(
        which in 0usize..6,
        mutations in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in prop::option::of(any::<prop::sample::Index>()),
        starts in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
        r in any::<u64>(),
    ) {
        let (mut frame, _) = templates().swap_remove(which);
        for (at, value) in mutations {
            let i = at.index(frame.len());
            frame[i] = value;
        }
        let end = cut.map_or(frame.len(), |c| c.index(frame.len() + 1));
        let frame = &frame[..end];
        black_box(parse_frame(frame, 0));
        for start in starts {
            let _ = black_box(exercise_all(&frame[start.index(frame.len() + 1)..], r));
        }
    }

    /// Valid IPv4 packets with random IHL, options, payload and padding: they check, the
    /// payload stops at the total length, and every strict prefix shorter than the total
    /// length is `Truncated`.
    #[test]
    fn ipv4_valid_and_truncations(
        ihl in 5usize..=15,
        payload in prop::collection::vec(any::<u8>(), 0..64),
        padding in 0usize..20,
        fill in any::<u8>(),
        r in any::<u64>(),
    ) {
        let options = vec![fill; (ihl - 5) * 4];
        let mut bytes = ipv4_wrap(IpProtocol::UDP, &options, &payload);
        let total = bytes.len();
        bytes.resize(total + padding, 0);
        let p = ipv4::Packet::new_checked(&bytes[..]).unwrap();
        prop_assert_eq!(p.header_len(), ihl * 4);
        prop_assert_eq!(p.options(), &options[..]);
        prop_assert_eq!(p.payload(), &payload[..]);
        prop_assert!(p.verify_checksum());
        for len in 0..=bytes.len() {
            let res = exercise_ipv4(&bytes[..len], r);
            prop_assert_eq!(res, if len < total { Err(Error::Truncated) } else { Ok(()) });
        }
    }

    #[test]
    fn ipv6_valid_and_truncations(
        payload in prop::collection::vec(any::<u8>(), 0..64),
        padding in 0usize..20,
        r in any::<u64>(),
    ) {
        let mut bytes = ipv6_wrap(IpProtocol::UDP, &payload);
        let total = bytes.len();
        bytes.resize(total + padding, 0xee);
        prop_assert_eq!(ipv6::Packet::new_checked(&bytes[..]).unwrap().into_payload(), &payload[..]);
        for len in 0..=bytes.len() {
            let res = exercise_ipv6(&bytes[..len], r);
            prop_assert_eq!(res, if len < total { Err(Error::Truncated) } else { Ok(()) });
        }
    }

    #[test]
    fn udp_valid_and_truncations(
        payload in prop::collection::vec(any::<u8>(), 0..64),
        padding in 0usize..8,
        r in any::<u64>(),
    ) {
        let mut bytes = udp_wrap(r as u16, &payload);
        let total = bytes.len();
        bytes.resize(total + padding, 0xee);
        let p = udp::Packet::new_checked(&bytes[..]).unwrap();
        prop_assert_eq!(p.payload(), &payload[..]);
        prop_assert!(p.verify_checksum_v4(V4_A, V4_B));
        for len in 0..=bytes.len() {
            let res = exercise_udp(&bytes[..len], r);
            prop_assert_eq!(res, if len < total { Err(Error::Truncated) } else { Ok(()) });
        }
    }

    #[test]
    fn tcp_valid_and_truncations(
        offset in 5usize..=15,
        payload in prop::collection::vec(any::<u8>(), 0..64),
        r in any::<u64>(),
    ) {
        let options = vec![1u8; (offset - 5) * 4]; // NOPs
        let bytes = tcp_segment(&options, &payload);
        let p = tcp::Packet::new_checked(&bytes[..]).unwrap();
        prop_assert_eq!(p.options(), &options[..]);
        prop_assert_eq!(p.payload(), &payload[..]);
        prop_assert!(p.verify_checksum_v4(V4_A, V4_B));
        for len in 0..=bytes.len() {
            let res = exercise_tcp(&bytes[..len], r);
            prop_assert_eq!(res, if len < offset * 4 { Err(Error::Truncated) } else { Ok(()) });
        }
    }

    /// NS/NA with random unknown options before the link-layer address option: the lookup
    /// finds it, and every truncation inside the options is reported as `Truncated`.
    #[test]
    fn ndp_valid_and_truncations(advert in any::<bool>(), extra in 0usize..4, r in any::<u64>()) {
        let t = if advert { icmpv6::TYPE_NEIGHBOR_ADVERT } else { icmpv6::TYPE_NEIGHBOR_SOLICIT };
        let bytes = icmpv6_neighbor(t, extra);
        let p = icmpv6::Packet::new_checked(&bytes[..]).unwrap();
        prop_assert!(p.verify_checksum(V6_A, V6_B));
        prop_assert_eq!(p.target_addr(), Some(V6_B));
        let (src, dst) = if advert { (None, Some(MAC_A)) } else { (Some(MAC_A), None) };
        prop_assert_eq!(p.source_ll_addr(), Ok(src));
        prop_assert_eq!(p.target_ll_addr(), Ok(dst));
        prop_assert_eq!(p.ndp_option_iter().count(), extra + 1);
        for len in icmpv6::NEIGHBOR_HEADER_LEN..bytes.len() {
            let p = icmpv6::Packet::new_checked(&bytes[..len]).unwrap();
            let cut_inside_option = (len - icmpv6::NEIGHBOR_HEADER_LEN) & 7 != 0;
            let expect = if cut_inside_option { Err(Error::Truncated) } else { Ok(None) };
            prop_assert_eq!(p.source_ll_addr().map(|_| None::<()>), expect);
            prop_assert!(exercise_icmpv6(&bytes[..len], r).is_ok());
        }
    }

    /// RFC 1624: the incrementally updated checksum equals the recomputed one.
    #[test]
    fn ipv4_incremental_ttl_equals_recompute(
        header in prop::collection::vec(any::<u8>(), 60),
        ihl in 5usize..=15,
        ttl in 1u8..=255,
    ) {
        let mut buf = header;
        buf.truncate(ihl * 4);
        let mut p = ipv4::Packet::new_unchecked(&mut buf[..]);
        p.set_version(4);
        p.set_header_len(ihl * 4);
        p.set_total_len((ihl * 4) as u16);
        p.set_ttl(ttl);
        p.fill_checksum();
        prop_assert_eq!(p.decrement_ttl_update_checksum(), ttl - 1);
        let incremental = p.checksum();
        p.fill_checksum();
        prop_assert_eq!(incremental, p.checksum());
        prop_assert!(ipv4::Packet::new_checked(&buf[..]).unwrap().verify_checksum());
    }

    /// The word-at-a-time sum equals the RFC 1071 byte-pair definition.
    #[test]
    fn checksum_matches_definition(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut acc: u64 = 0;
        for pair in bytes.chunks(2) {
            acc += u64::from(u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]));
        }
        prop_assert_eq!(checksum::data(&bytes), checksum::fold(acc));
        // A buffer with its own checksum appended (at an even offset) sums to 0xffff.
        let mut with = bytes.clone();
        if with.len() % 2 == 1 {
            with.push(0);
        }
        let cs = !checksum::data(&with);
        with.extend_from_slice(&cs.to_be_bytes());
        prop_assert_eq!(checksum::data(&with), 0xffff);
    }
}
