//! Longest-prefix-match route tables for one VRF.
//!
//! One exact-match hash map per prefix length that is actually in use, searched from the
//! longest length down. A VRF in a vRouter typically holds /32 (/128) host routes for local and
//! remote VMs plus a handful of subnet and default routes, so a lookup costs one to three hash
//! probes. The maps use a multiply-shift hasher (keys are already uniformly distributed
//! addresses; SipHash's DoS resistance buys nothing for operator-configured routes).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Multiply-shift hasher for integer keys.
#[derive(Default, Clone, Copy)]
pub struct IntHasher(u64);

impl Hasher for IntHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    #[inline]
    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }
    #[inline]
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0 ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 ^= self.0 >> 29;
    }
    #[inline]
    fn write_u128(&mut self, v: u128) {
        self.write_u64(v as u64);
        self.write_u64((v >> 64) as u64);
    }
}

/// A `HashMap` with the multiply-shift [`IntHasher`]: for integer and address keys.
pub type IntMap<K, V> = HashMap<K, V, BuildHasherDefault<IntHasher>>;

/// A route table keyed by a `bits`-wide address (`u32` for IPv4, `u128` for IPv6).
#[derive(Debug, Clone)]
pub struct Lpm<A: Addr> {
    /// (prefix length, routes of that length), longest first.
    levels: Vec<(u8, IntMap<A, u32>)>,
}

impl<A: Addr> Default for Lpm<A> {
    fn default() -> Self {
        Lpm { levels: Vec::new() }
    }
}

/// An address type usable as an LPM key.
pub trait Addr: Copy + Eq + std::hash::Hash + std::fmt::Debug {
    /// Address width in bits (32 for IPv4, 128 for IPv6).
    const BITS: u8;
    /// The address with all bits beyond `len` cleared.
    fn mask(self, len: u8) -> Self;
}

impl Addr for u32 {
    const BITS: u8 = 32;
    #[inline]
    fn mask(self, len: u8) -> u32 {
        if len == 0 {
            0
        } else {
            self & (u32::MAX << (32 - u32::from(len)))
        }
    }
}

impl Addr for u128 {
    const BITS: u8 = 128;
    #[inline]
    fn mask(self, len: u8) -> u128 {
        if len == 0 {
            0
        } else {
            self & (u128::MAX << (128 - u32::from(len)))
        }
    }
}

impl<A: Addr> Lpm<A> {
    /// Adds (or replaces) a route; returns the previous nexthop of the same prefix.
    pub fn insert(&mut self, addr: A, len: u8, nh: u32) -> Option<u32> {
        assert!(len <= A::BITS, "prefix length {len} > {}", A::BITS);
        let key = addr.mask(len);
        let pos = match self.levels.iter().position(|(l, _)| *l <= len) {
            Some(p) if self.levels[p].0 == len => p,
            Some(p) => {
                self.levels.insert(p, (len, IntMap::default()));
                p
            }
            None => {
                self.levels.push((len, IntMap::default()));
                self.levels.len() - 1
            }
        };
        self.levels[pos].1.insert(key, nh)
    }

    /// Removes a route; returns its nexthop.
    pub fn remove(&mut self, addr: A, len: u8) -> Option<u32> {
        let pos = self.levels.iter().position(|(l, _)| *l == len)?;
        let r = self.levels[pos].1.remove(&addr.mask(len));
        if self.levels[pos].1.is_empty() {
            self.levels.remove(pos);
        }
        r
    }

    /// Longest-prefix match: the nexthop and the matched prefix length.
    #[inline]
    pub fn lookup(&self, addr: A) -> Option<(u32, u8)> {
        for (len, map) in &self.levels {
            if let Some(nh) = map.get(&addr.mask(*len)) {
                return Some((*nh, *len));
            }
        }
        None
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.levels.iter().map(|(_, m)| m.len()).sum()
    }

    /// Whether the table holds no route.
    pub fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }

    /// All routes as (prefix, length, nexthop), longest first.
    pub fn iter(&self) -> impl Iterator<Item = (A, u8, u32)> + '_ {
        self.levels.iter().flat_map(|(l, m)| m.iter().map(move |(a, nh)| (*a, *l, *nh)))
    }
}

/// IPv4 route table: the hash levels of [`Lpm`] plus a direct-indexed first stage over the
/// top 16 address bits.
///
/// `short[a >> 16]` holds the best route of length <= 16 covering that /16 block, so a
/// destination covered only by short prefixes (default routes, aggregates towards remote
/// vRouters) costs one array load. `long[a >> 16]` counts the routes longer than /16 inside
/// the block; only when it is non-zero are the longer hash levels probed (host /32 and subnet
/// routes). Measured on the VM -> MPLSoUDP benchmark path (a /9 route): the hash probe was the
/// largest single cost in the vRouter's own code (about 11 % of the forwarding core's samples
/// in `perf record`), the direct stage removes it.
///
/// Memory: 64 Ki entries of 4 + 2 bytes (384 KiB), allocated on the first route.
#[derive(Debug, Clone, Default)]
pub struct Lpm4 {
    routes: Lpm<u32>,
    /// Per /16 block: `(nh + 1) << 6 | len` of the best route of length <= 16, 0 if none.
    short: Vec<u32>,
    /// Per /16 block: routes longer than /16 inside it.
    long: Vec<u16>,
}

const BLOCKS: usize = 1 << 16;
/// Nexthop indices must fit the packed short-stage entry.
pub const LPM4_MAX_NH: u32 = (1 << 26) - 2;

impl Lpm4 {
    fn ensure(&mut self) {
        if self.short.is_empty() {
            self.short = vec![0; BLOCKS];
            self.long = vec![0; BLOCKS];
        }
    }

    /// Recomputes the short-stage entries of blocks `[first, first + n)` from the levels.
    fn refresh_short(&mut self, first: usize, n: usize) {
        for b in first..first + n {
            let addr = (b as u32) << 16;
            let best = self
                .routes
                .levels
                .iter()
                .filter(|(l, _)| *l <= 16)
                .find_map(|(l, m)| m.get(&addr.mask(*l)).map(|nh| (*nh, *l)));
            self.short[b] = best.map_or(0, |(nh, l)| ((nh + 1) << 6) | u32::from(l));
        }
    }

    fn block_range(addr: u32, len: u8) -> (usize, usize) {
        let first = (addr.mask(len) >> 16) as usize;
        (first, 1usize << (16 - len.min(16)))
    }

    /// Adds (or replaces) a route; returns the previous nexthop of the same prefix.
    pub fn insert(&mut self, addr: u32, len: u8, nh: u32) -> Option<u32> {
        assert!(nh <= LPM4_MAX_NH, "nexthop index {nh} too large");
        self.ensure();
        let prev = self.routes.insert(addr, len, nh);
        if len <= 16 {
            let (first, n) = Self::block_range(addr, len);
            self.refresh_short(first, n);
        } else if prev.is_none() {
            self.long[(addr >> 16) as usize] += 1;
        }
        prev
    }

    /// Removes a route; returns its nexthop.
    pub fn remove(&mut self, addr: u32, len: u8) -> Option<u32> {
        let prev = self.routes.remove(addr, len)?;
        if len <= 16 {
            let (first, n) = Self::block_range(addr, len);
            self.refresh_short(first, n);
        } else {
            self.long[(addr >> 16) as usize] -= 1;
        }
        Some(prev)
    }

    /// Longest-prefix match: the nexthop and the matched prefix length.
    #[inline(always)]
    pub fn lookup(&self, addr: u32) -> Option<(u32, u8)> {
        let b = (addr >> 16) as usize;
        let short = *self.short.get(b)?;
        if self.long[b] != 0 {
            for (len, map) in &self.routes.levels {
                if *len <= 16 {
                    break;
                }
                if let Some(nh) = map.get(&addr.mask(*len)) {
                    return Some((*nh, *len));
                }
            }
        }
        (short != 0).then(|| ((short >> 6) - 1, (short & 0x3f) as u8))
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether the table holds no route.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// All routes as (prefix, length, nexthop), longest first.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u8, u32)> + '_ {
        self.routes.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4(s: &str) -> u32 {
        u32::from(s.parse::<Ipv4Addr>().unwrap())
    }

    #[test]
    fn longest_prefix_wins() {
        let mut t = Lpm::<u32>::default();
        t.insert(v4("0.0.0.0"), 0, 1);
        t.insert(v4("10.0.0.0"), 8, 2);
        t.insert(v4("10.1.0.0"), 16, 3);
        t.insert(v4("10.1.2.3"), 32, 4);
        assert_eq!(t.lookup(v4("10.1.2.3")), Some((4, 32)));
        assert_eq!(t.lookup(v4("10.1.2.4")), Some((3, 16)));
        assert_eq!(t.lookup(v4("10.2.0.1")), Some((2, 8)));
        assert_eq!(t.lookup(v4("192.168.0.1")), Some((1, 0)));
        assert_eq!(t.remove(v4("0.0.0.0"), 0), Some(1));
        assert_eq!(t.lookup(v4("192.168.0.1")), None);
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn host_bits_are_masked_on_insert() {
        let mut t = Lpm::<u32>::default();
        t.insert(v4("10.1.2.99"), 24, 7);
        assert_eq!(t.lookup(v4("10.1.2.1")), Some((7, 24)));
    }

    #[test]
    fn ipv6() {
        let mut t = Lpm::<u128>::default();
        let a = |s: &str| u128::from(s.parse::<Ipv6Addr>().unwrap());
        t.insert(a("fd00:1::"), 64, 1);
        t.insert(a("fd00:1::4"), 128, 2);
        assert_eq!(t.lookup(a("fd00:1::4")), Some((2, 128)));
        assert_eq!(t.lookup(a("fd00:1::5")), Some((1, 64)));
        assert_eq!(t.lookup(a("fd00:2::5")), None);
    }

    #[test]
    fn lpm4_agrees_with_a_linear_scan_through_inserts_and_removes() {
        let mut x = 0x9e37_79b9u32;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        let mut t = Lpm4::default();
        assert_eq!(t.lookup(1), None);
        let mut routes: Vec<(u32, u8, u32)> = Vec::new();
        // Few distinct top bits so that short and long prefixes overlap often.
        for i in 0..600 {
            let len = [0, 1, 8, 9, 12, 15, 16, 17, 20, 24, 31, 32][(next() % 12) as usize];
            let a = (next() & 0x0f0f_ffff).mask(len);
            if i % 5 == 4 && !routes.is_empty() {
                let (ra, rl, nh) = routes.remove((next() as usize) % routes.len());
                assert_eq!(t.remove(ra, rl), Some(nh));
                continue;
            }
            t.insert(a, len, i);
            routes.retain(|&(ra, rl, _)| !(ra == a && rl == len));
            routes.push((a, len, i));
            if i % 50 == 0 {
                for _ in 0..500 {
                    let probe = next() & 0x0f0f_ffff;
                    let best = routes
                        .iter()
                        .filter(|(a, l, _)| probe.mask(*l) == *a)
                        .max_by_key(|(_, l, _)| *l)
                        .map(|(_, l, nh)| (*nh, *l));
                    assert_eq!(t.lookup(probe), best, "probe {probe:#x}");
                }
            }
        }
        assert_eq!(t.len(), routes.len());
    }

    #[test]
    fn agrees_with_a_linear_scan() {
        // deterministic pseudo-random routes and probes
        let mut x = 0x1234_5678u32;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        let mut t = Lpm::<u32>::default();
        let mut routes = Vec::new();
        for i in 0..300 {
            let len = (next() % 33) as u8;
            let a = next().mask(len);
            t.insert(a, len, i);
            routes.retain(|&(ra, rl, _)| !(ra == a && rl == len));
            routes.push((a, len, i));
        }
        for _ in 0..5000 {
            let probe = next();
            let best = routes
                .iter()
                .filter(|(a, l, _)| probe.mask(*l) == *a)
                .max_by_key(|(_, l, _)| *l)
                .map(|(_, l, nh)| (*nh, *l));
            assert_eq!(t.lookup(probe), best);
        }
    }
}
