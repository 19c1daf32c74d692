//! A fast, well-mixed 32-bit hash of an IP 5-tuple.
//!
//! Words of the key are folded with a multiply-xorshift round and finished with the
//! MurmurHash3 32-bit finaliser, which gives full avalanche on every input bit. Cost: a handful
//! of multiplies, no table lookups, no branches, which matters because it runs once per packet
//! (outer UDP source port, ECMP) on the forwarding path.

#[inline(always)]
fn mix(h: u32, w: u32) -> u32 {
    let k = w.wrapping_mul(0xcc9e_2d51).rotate_left(15).wrapping_mul(0x1b87_3593);
    (h ^ k).rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64)
}

#[inline(always)]
fn fmix(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

const SEED: u32 = 0x5bd1_e995;

/// Hash of an IPv4 5-tuple. Addresses are host-order `u32` (`u32::from(Ipv4Addr)`).
#[inline]
pub fn flow_hash_v4(src: u32, dst: u32, proto: u8, sport: u16, dport: u16) -> u32 {
    let mut h = SEED;
    h = mix(h, src);
    h = mix(h, dst);
    h = mix(h, (u32::from(sport) << 16) | u32::from(dport));
    h = mix(h, u32::from(proto));
    fmix(h ^ 13)
}

/// Hash of an IPv6 5-tuple (addresses as 16 network-order bytes).
#[inline]
pub fn flow_hash_v6(src: &[u8; 16], dst: &[u8; 16], proto: u8, sport: u16, dport: u16) -> u32 {
    let mut h = SEED;
    for a in [src, dst] {
        for c in a.chunks_exact(4) {
            h = mix(h, u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
        }
    }
    h = mix(h, (u32::from(sport) << 16) | u32::from(dport));
    h = mix(h, u32::from(proto));
    fmix(h ^ 37)
}

/// Outer UDP source port for MPLSoUDP/VXLAN from an inner-flow hash: the dynamic port range
/// 49152..=65535, as tf-vrouter does, so underlay ECMP spreads flows but keeps each in order.
#[inline]
pub fn tunnel_source_port(hash: u32) -> u16 {
    0xc000 | (hash & 0x3fff) as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn deterministic_and_sensitive_to_every_field() {
        let base = flow_hash_v4(0x0a00_0001, 0x0a00_0002, 17, 1000, 2000);
        assert_eq!(base, flow_hash_v4(0x0a00_0001, 0x0a00_0002, 17, 1000, 2000));
        assert_ne!(base, flow_hash_v4(0x0a00_0002, 0x0a00_0002, 17, 1000, 2000));
        assert_ne!(base, flow_hash_v4(0x0a00_0001, 0x0a00_0003, 17, 1000, 2000));
        assert_ne!(base, flow_hash_v4(0x0a00_0001, 0x0a00_0002, 6, 1000, 2000));
        assert_ne!(base, flow_hash_v4(0x0a00_0001, 0x0a00_0002, 17, 1001, 2000));
        assert_ne!(base, flow_hash_v4(0x0a00_0001, 0x0a00_0002, 17, 1000, 2001));
        // direction matters (forward and reverse flows are distinct keys)
        assert_ne!(base, flow_hash_v4(0x0a00_0002, 0x0a00_0001, 17, 2000, 1000));
    }

    #[test]
    fn source_ports_spread_over_the_dynamic_range() {
        let mut ports = HashSet::new();
        for i in 0..4096u32 {
            let p = tunnel_source_port(flow_hash_v4(0x0a00_0000 + i, 0x0a80_0001, 17, 10000, 80));
            assert!(p >= 49152);
            ports.insert(p);
        }
        // 4096 flows into 16384 ports: expect few collisions with a good hash
        assert!(ports.len() > 3500, "only {} distinct ports", ports.len());
    }

    #[test]
    fn v6_hash_uses_all_address_bytes() {
        let a = [0u8; 16];
        let base = flow_hash_v6(&a, &a, 17, 1, 2);
        for i in 0..16 {
            let mut b = a;
            b[i] = 1;
            assert_ne!(base, flow_hash_v6(&b, &a, 17, 1, 2), "byte {i} of src ignored");
            assert_ne!(base, flow_hash_v6(&a, &b, 17, 1, 2), "byte {i} of dst ignored");
        }
    }
}
