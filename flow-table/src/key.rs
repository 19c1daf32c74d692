//! [`FlowKey`]: the 48-byte, zero-padded flow key, compared as six 64-bit words.

use std::fmt;
use std::mem::{offset_of, size_of};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use crate::hash::{flow_hash_v4, flow_hash_v6};

/// Number of 64-bit words in a [`FlowKey`].
pub const KEY_WORDS: usize = 6;

const FAMILY_V4: u8 = 4;
const FAMILY_V6: u8 = 6;
const PROTO_ICMP: u8 = 1;
const PROTO_ICMPV6: u8 = 58;

/// A flow key: key nexthop (or VRF), protocol, source and destination address and ports.
///
/// `#[repr(C)]`, 48 bytes, no implicit padding: the spare bytes are an explicit zero
/// field and unused address bytes (IPv4) are zero, so two keys are equal exactly when
/// their six 64-bit words are equal. That is how the table stores and compares them.
/// Ports are host order. For ICMP echo the data plane puts the echo id in `sport` and 0
/// in `dport` (tf convention), for other ICMP messages 0 and the type.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[repr(C, align(8))]
pub struct FlowKey {
    nh: u32,
    family: u8,
    proto: u8,
    sport: u16,
    dport: u16,
    _zero: [u8; 6],
    src: [u8; 16],
    dst: [u8; 16],
}

const _: () = assert!(size_of::<FlowKey>() == KEY_WORDS * 8);
const _: () = assert!(offset_of!(FlowKey, nh) == 0);
const _: () = assert!(offset_of!(FlowKey, family) == 4);
const _: () = assert!(offset_of!(FlowKey, proto) == 5);
const _: () = assert!(offset_of!(FlowKey, sport) == 6);
const _: () = assert!(offset_of!(FlowKey, dport) == 8);
const _: () = assert!(offset_of!(FlowKey, _zero) == 10);
const _: () = assert!(offset_of!(FlowKey, src) == 16);
const _: () = assert!(offset_of!(FlowKey, dst) == 32);

impl FlowKey {
    /// An IPv4 key. `vrf_or_nh` is the key nexthop (tf's `K(nh)`) or a VRF id, whichever
    /// the data plane keys flows on.
    #[inline]
    pub fn v4(vrf_or_nh: u32, proto: u8, src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> FlowKey {
        // Built as its six words (six register stores on the data plane's pre-pass rather
        // than field by field): the bytes of each word in field order, see the layout.
        let [n0, n1, n2, n3] = vrf_or_nh.to_ne_bytes();
        let [s0, s1] = sport.to_ne_bytes();
        let [d0, d1] = dport.to_ne_bytes();
        let [a0, a1, a2, a3] = src.octets();
        let [b0, b1, b2, b3] = dst.octets();
        let words = [
            u64::from_ne_bytes([n0, n1, n2, n3, FAMILY_V4, proto, s0, s1]),
            u64::from_ne_bytes([d0, d1, 0, 0, 0, 0, 0, 0]),
            u64::from_ne_bytes([a0, a1, a2, a3, 0, 0, 0, 0]),
            0,
            u64::from_ne_bytes([b0, b1, b2, b3, 0, 0, 0, 0]),
            0,
        ];
        // SAFETY: FlowKey is repr(C), 48 bytes, no padding, integer and byte-array fields
        // only: every [u64; 6] is a valid FlowKey, and these words put each field's bytes at
        // its offset (the const asserts above), unused address bytes and `_zero` zero.
        unsafe { std::mem::transmute::<[u64; KEY_WORDS], FlowKey>(words) }
    }

    /// An IPv6 key.
    pub fn v6(vrf_or_nh: u32, proto: u8, src: Ipv6Addr, dst: Ipv6Addr, sport: u16, dport: u16) -> FlowKey {
        FlowKey {
            nh: vrf_or_nh,
            family: FAMILY_V6,
            proto,
            sport,
            dport,
            _zero: [0; 6],
            src: src.octets(),
            dst: dst.octets(),
        }
    }

    /// The key of the reverse direction: addresses and ports swapped. ICMP and ICMPv6 keep
    /// their ports (tf keys an echo request and its reply on the same id), so the reverse
    /// of an echo flow is the reply flow.
    pub fn reverse(&self) -> FlowKey {
        let icmp = matches!((self.family, self.proto), (FAMILY_V4, PROTO_ICMP) | (FAMILY_V6, PROTO_ICMPV6));
        let (sport, dport) = if icmp { (self.sport, self.dport) } else { (self.dport, self.sport) };
        FlowKey { src: self.dst, dst: self.src, sport, dport, ..*self }
    }

    /// The table hash: the data plane's 5-tuple hash ([`flow_hash_v4`] / [`flow_hash_v6`])
    /// xor a multiplicative mix of the VRF/nexthop, so that tenants with overlapping
    /// address spaces land in different buckets.
    #[inline]
    pub fn hash(&self) -> u32 {
        let h = if self.family == FAMILY_V6 {
            flow_hash_v6(&self.src, &self.dst, self.proto, self.sport, self.dport)
        } else {
            flow_hash_v4(self.src_v4(), self.dst_v4(), self.proto, self.sport, self.dport)
        };
        h ^ FlowKey::nh_salt(self.nh)
    }

    /// What [`FlowKey::hash`] mixes the VRF (or key nexthop) in with: `key.hash() ^
    /// nh_salt(vrf)` is the plain 5-tuple hash ([`flow_hash_v4`] / [`flow_hash_v6`] of the
    /// key's fields), which the data plane reuses for ECMP and the tunnel source port.
    #[inline(always)]
    pub fn nh_salt(vrf_or_nh: u32) -> u32 {
        vrf_or_nh.wrapping_mul(0x9e37_79b1).rotate_left(16)
    }

    #[inline]
    fn src_v4(&self) -> u32 {
        u32::from_be_bytes([self.src[0], self.src[1], self.src[2], self.src[3]])
    }

    #[inline]
    fn dst_v4(&self) -> u32 {
        u32::from_be_bytes([self.dst[0], self.dst[1], self.dst[2], self.dst[3]])
    }

    /// The key nexthop or VRF given at construction.
    pub fn vrf(&self) -> u32 {
        self.nh
    }

    /// Same as [`FlowKey::vrf`], under tf's name.
    pub fn nh_id(&self) -> u32 {
        self.nh
    }

    /// IP protocol number (6 TCP, 17 UDP, 1 ICMP, ...).
    pub fn proto(&self) -> u8 {
        self.proto
    }

    /// Whether the key is an IPv6 key.
    pub fn is_v6(&self) -> bool {
        self.family == FAMILY_V6
    }

    /// Source address (IPv4 or IPv6 as the key's family says).
    pub fn src_ip(&self) -> IpAddr {
        if self.is_v6() {
            IpAddr::V6(Ipv6Addr::from(self.src))
        } else {
            IpAddr::V4(Ipv4Addr::from(self.src_v4()))
        }
    }

    /// Destination address (IPv4 or IPv6 as the key's family says).
    pub fn dst_ip(&self) -> IpAddr {
        if self.is_v6() {
            IpAddr::V6(Ipv6Addr::from(self.dst))
        } else {
            IpAddr::V4(Ipv4Addr::from(self.dst_v4()))
        }
    }

    /// Source port, host order (ICMP echo: the echo id; other ICMP: 0).
    pub fn sport(&self) -> u16 {
        self.sport
    }

    /// Destination port, host order (ICMP echo: 0; other ICMP: the message type).
    pub fn dport(&self) -> u16 {
        self.dport
    }

    /// The key as the six words the table stores.
    #[inline(always)]
    pub fn words(&self) -> [u64; KEY_WORDS] {
        *self.as_words()
    }

    /// Whether two keys are equal, as six word compares folded into one test (no call to
    /// `memcmp`, no branch per word).
    #[inline(always)]
    pub fn same_as(&self, other: &FlowKey) -> bool {
        let (a, b) = (self.as_words(), other.as_words());
        ((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]) | (a[4] ^ b[4]) | (a[5] ^ b[5])) == 0
    }

    /// The key's six words in place (no 48-byte copy to compare a key with an entry).
    #[inline(always)]
    pub fn as_words(&self) -> &[u64; KEY_WORDS] {
        // SAFETY: FlowKey is repr(C), 48 bytes, 8-aligned, with no implicit padding (every
        // byte belongs to a field; checked by the const asserts above), so all 48 bytes
        // are initialized and any bit pattern is a valid [u64; 6], whose alignment (8) the
        // key has; the borrow keeps the key alive and unchanged.
        unsafe { &*(self as *const FlowKey).cast::<[u64; KEY_WORDS]>() }
    }

    /// Rebuilds a key from stored words; `None` unless they form a valid key (known family,
    /// zero padding, zero unused IPv4 address bytes), so a torn or foreign read never
    /// yields a key that `v4`/`v6` could not have built.
    pub fn from_words(w: [u64; KEY_WORDS]) -> Option<FlowKey> {
        // SAFETY: see `words`: every bit pattern of 48 bytes is a valid FlowKey
        // (integers and byte arrays only); validity of the contents is checked below.
        let k = unsafe { std::mem::transmute::<[u64; KEY_WORDS], FlowKey>(w) };
        let ok = k._zero == [0; 6]
            && match k.family {
                FAMILY_V4 => k.src[4..] == [0; 12] && k.dst[4..] == [0; 12],
                FAMILY_V6 => true,
                _ => false,
            };
        ok.then_some(k)
    }
}

impl fmt::Debug for FlowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "FlowKey(nh {} proto {} {}:{} -> {}:{})",
            self.nh,
            self.proto,
            self.src_ip(),
            self.sport,
            self.dst_ip(),
            self.dport
        )
    }
}

impl Serialize for FlowKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("FlowKey", 7)?;
        st.serialize_field("nh_id", &self.nh)?;
        st.serialize_field("family", if self.is_v6() { "inet6" } else { "inet" })?;
        st.serialize_field("proto", &self.proto)?;
        st.serialize_field("src", &self.src_ip().to_string())?;
        st.serialize_field("sport", &self.sport)?;
        st.serialize_field("dst", &self.dst_ip().to_string())?;
        st.serialize_field("dport", &self.dport)?;
        st.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_getters_and_words_round_trip() {
        let k = FlowKey::v4(7, 17, Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2), 1000, 53);
        assert_eq!(k.vrf(), 7);
        assert_eq!(k.proto(), 17);
        assert!(!k.is_v6());
        assert_eq!(k.src_ip(), IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(k.dst_ip(), IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)));
        assert_eq!((k.sport(), k.dport()), (1000, 53));
        assert_eq!(FlowKey::from_words(k.words()), Some(k));
        // the v4 hash is the data plane's 5-tuple hash, mixed with the nexthop
        let h = flow_hash_v4(0x0a00_0001, 0x0a00_0002, 17, 1000, 53);
        assert_eq!(k.hash(), h ^ 7u32.wrapping_mul(0x9e37_79b1).rotate_left(16));
    }

    #[test]
    fn v4_built_from_words_equals_the_fields() {
        let (src, dst) = (Ipv4Addr::new(192, 168, 1, 3), Ipv4Addr::new(172, 16, 255, 7));
        let k = FlowKey::v4(0x0102_0304, 6, src, dst, 0xabcd, 0x1234);
        let mut s = [0u8; 16];
        let mut d = [0u8; 16];
        s[..4].copy_from_slice(&src.octets());
        d[..4].copy_from_slice(&dst.octets());
        let fields = FlowKey {
            nh: 0x0102_0304,
            family: FAMILY_V4,
            proto: 6,
            sport: 0xabcd,
            dport: 0x1234,
            _zero: [0; 6],
            src: s,
            dst: d,
        };
        assert_eq!(k, fields);
        assert_eq!(k.words(), fields.words());
        assert_eq!(k.as_words(), &fields.words());
        assert!(k.same_as(&fields));
        for w in 0..KEY_WORDS {
            for bit in [0, 17, 63] {
                let mut words = k.words();
                words[w] ^= 1 << bit;
                // SAFETY: any [u64; 6] is a FlowKey (see FlowKey::v4).
                let other = unsafe { std::mem::transmute::<[u64; KEY_WORDS], FlowKey>(words) };
                assert!(!k.same_as(&other) && !other.same_as(&k), "word {w} bit {bit}");
            }
        }
    }

    #[test]
    fn v6_getters_and_reverse() {
        let a: Ipv6Addr = "fd00:1::3".parse().unwrap();
        let b: Ipv6Addr = "fd00:1::4".parse().unwrap();
        let k = FlowKey::v6(1, 6, a, b, 40000, 80);
        assert!(k.is_v6());
        assert_eq!(k.src_ip(), IpAddr::V6(a));
        let r = k.reverse();
        assert_eq!((r.src_ip(), r.dst_ip(), r.sport(), r.dport()), (IpAddr::V6(b), IpAddr::V6(a), 80, 40000));
        assert_eq!(r.reverse(), k);
        assert_ne!(k.hash(), r.hash());
        assert_eq!(FlowKey::from_words(k.words()), Some(k));
    }

    #[test]
    fn icmp_echo_reverse_keeps_the_id() {
        let k = FlowKey::v4(1, 1, Ipv4Addr::new(1, 1, 1, 1), Ipv4Addr::new(2, 2, 2, 2), 0x1234, 0);
        let r = k.reverse();
        assert_eq!((r.sport(), r.dport()), (0x1234, 0));
        assert_eq!(r.src_ip(), IpAddr::V4(Ipv4Addr::new(2, 2, 2, 2)));
        let k6 = FlowKey::v6(1, 58, Ipv6Addr::LOCALHOST, Ipv6Addr::UNSPECIFIED, 9, 0);
        assert_eq!(k6.reverse().sport(), 9);
    }

    #[test]
    fn vrf_and_family_distinguish_keys() {
        let a = FlowKey::v4(1, 6, Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2), 1, 2);
        let b = FlowKey::v4(2, 6, Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2), 1, 2);
        assert_ne!(a, b);
        assert_ne!(a.words(), b.words());
        assert_ne!(a.hash(), b.hash());
        let v6 = FlowKey::v6(1, 6, "::a00:1".parse().unwrap(), "::a00:2".parse().unwrap(), 1, 2);
        assert_ne!(a.words(), v6.words());
    }

    #[test]
    fn unsalting_the_key_hash_gives_the_five_tuple_hash() {
        let (s, d) = (Ipv4Addr::new(10, 1, 2, 3), Ipv4Addr::new(10, 9, 8, 7));
        for vrf in [0u32, 1, 7, 4095, u32::MAX] {
            let k = FlowKey::v4(vrf, 6, s, d, 40000, 443);
            assert_eq!(k.hash() ^ FlowKey::nh_salt(vrf), flow_hash_v4(u32::from(s), u32::from(d), 6, 40000, 443));
            let (a, b) = (Ipv6Addr::LOCALHOST, "fd00::1".parse::<Ipv6Addr>().unwrap());
            let k6 = FlowKey::v6(vrf, 17, a, b, 5, 6);
            assert_eq!(k6.hash() ^ FlowKey::nh_salt(vrf), flow_hash_v6(&a.octets(), &b.octets(), 17, 5, 6));
        }
    }

    #[test]
    fn from_words_rejects_garbage() {
        let k = FlowKey::v4(1, 6, Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2), 1, 2);
        let mut w = k.words();
        w[1] |= 1 << 40; // padding byte
        assert_eq!(FlowKey::from_words(w), None);
        let mut w = k.words();
        w[3] = 1; // unused IPv4 source bytes
        assert_eq!(FlowKey::from_words(w), None);
        assert_eq!(FlowKey::from_words([0; KEY_WORDS]), None); // family 0
    }

    #[test]
    fn serializes_addresses_as_text() {
        let k = FlowKey::v4(3, 17, Ipv4Addr::new(192, 168, 1, 3), Ipv4Addr::new(192, 168, 1, 4), 5, 6);
        let j = serde_json::to_string(&k).unwrap();
        assert_eq!(
            j,
            r#"{"nh_id":3,"family":"inet","proto":17,"src":"192.168.1.3","sport":5,"dst":"192.168.1.4","dport":6}"#
        );
    }
}
