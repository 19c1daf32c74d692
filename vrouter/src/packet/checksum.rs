//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! Vocabulary: a *sum* is the ones'-complement sum of 16-bit big-endian words; the
//! *checksum* written in a header is the complement of the folded sum of everything it
//! covers (with the checksum field itself taken as zero). A buffer whose checksum field is
//! correct therefore sums to `0xffff`.
//!
//! - [`data`] sums a byte slice and folds it to 16 bits;
//! - [`pseudo_header_v4`] / [`pseudo_header_v6`] return the (unfolded) partial sum of the
//!   TCP/UDP/ICMPv6 pseudo-header;
//! - [`combine`] adds partial sums and folds them;
//! - [`incremental_update`] / [`incremental_update_u32`] patch a checksum after a field
//!   change without touching the rest of the data.
//!
//! Computing a UDP-over-IPv4 checksum:
//! `!combine(&[pseudo_header_v4(src, dst, 17, len), data(udp_bytes).into()])`.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Folds a wide ones'-complement sum to 16 bits (end-around carry), in four fixed steps
/// with no loop (per-packet checksum patches: no branch to mispredict). Each step keeps the
/// value modulo 0xffff and a non-zero value non-zero; the bounds after each step are
/// < 2^33, < 2^16 + 2^17, <= 0xffff + 2 and <= 0xffff.
#[inline]
pub fn fold(sum: u64) -> u16 {
    let s = (sum & 0xffff_ffff) + (sum >> 32);
    let s = (s & 0xffff) + (s >> 16);
    let s = (s & 0xffff) + (s >> 16);
    let s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// The unfolded ones'-complement sum of `data` as big-endian 16-bit words (an odd trailing
/// byte is padded with zero). Summing 32-bit words is equivalent modulo `0xffff` and halves
/// the loop count.
#[inline]
fn sum(data: &[u8]) -> u64 {
    let mut acc: u64 = 0;
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    let rest = words.remainder();
    let mut i = 0;
    if rest.len() >= 2 {
        acc += u64::from(u16::from_be_bytes([rest[0], rest[1]]));
        i = 2;
    }
    if rest.len() > i {
        acc += u64::from(rest[i]) << 8;
    }
    acc
}

/// The ones'-complement sum of `data`, folded to 16 bits (not complemented).
///
/// A non-empty buffer with at least one non-zero byte never sums to `0`.
#[inline]
pub fn data(data: &[u8]) -> u16 {
    fold(sum(data))
}

/// Adds partial sums (folded `u16` results widened with `.into()`, or the unfolded `u32`
/// pseudo-header sums) and folds the total to 16 bits (not complemented).
#[inline]
pub fn combine(parts: &[u32]) -> u16 {
    fold(parts.iter().map(|&p| u64::from(p)).sum())
}

/// Partial sum of the IPv4 pseudo-header (RFC 768/793): source, destination, zero +
/// protocol, and the upper-layer length.
#[inline]
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: u16) -> u32 {
    let s = u32::from(src);
    let d = u32::from(dst);
    (s >> 16) + (s & 0xffff) + (d >> 16) + (d & 0xffff) + u32::from(protocol) + u32::from(length)
}

/// Partial sum of the IPv6 pseudo-header (RFC 8200 §8.1): source, destination, 32-bit
/// upper-layer length, zeros + next header.
#[inline]
pub fn pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, length: u32) -> u32 {
    let mut acc: u32 = 0;
    for seg in src.segments().iter().chain(dst.segments().iter()) {
        acc += u32::from(*seg);
    }
    // At most 16 * 0xffff + 2 * 0xffff + 0xff: no overflow.
    acc + (length >> 16) + (length & 0xffff) + u32::from(next_header)
}

/// RFC 1624 eqn. 3: the new header checksum after one 16-bit word of the covered data
/// changed from `old` to `new`: `HC' = ~(~HC + ~m + m')`.
///
/// When `checksum` was correct for data that is not all zeros (true of every IP header),
/// the result equals recomputing the checksum from scratch.
#[inline]
pub fn incremental_update(checksum: u16, old: u16, new: u16) -> u16 {
    !fold(u64::from(!checksum) + u64::from(!old) + u64::from(new))
}

/// [`incremental_update`] for a 32-bit field (an IPv4 address), as two 16-bit words.
#[inline]
pub fn incremental_update_u32(checksum: u16, old: u32, new: u32) -> u16 {
    let c = incremental_update(checksum, (old >> 16) as u16, (new >> 16) as u16);
    incremental_update(c, old as u16, new as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Byte-at-a-time reference implementation (RFC 1071 §4.1).
    fn reference(data: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        for pair in data.chunks(2) {
            let hi = u32::from(pair[0]) << 8;
            let lo = pair.get(1).copied().map(u32::from).unwrap_or(0);
            acc += hi | lo;
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    /// End-around carry one 16-bit step at a time (RFC 1071 §4.1's loop).
    fn fold_loop(mut sum: u64) -> u16 {
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }

    #[test]
    fn fold_matches_the_loop() {
        let edges = [0, 1, 0xffff, 0x1_0000, 0x1_fffe, 0x1_ffff, 0xffff_ffff, 0x1_0000_0000, u64::MAX, u64::MAX - 1];
        for &s in &edges {
            assert_eq!(fold(s), fold_loop(s), "{s:#x}");
        }
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            for s in [x, x >> 16, x >> 30, x >> 45] {
                assert_eq!(fold(s), fold_loop(s), "{s:#x}");
            }
        }
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: 0001 f203 f4f5 f6f7 sums to ddf2.
        let bytes = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(data(&bytes), 0xddf2);
        assert_eq!(data(&[]), 0);
    }

    #[test]
    fn odd_lengths_match_reference() {
        let bytes: Vec<u8> = (0..=255u8).map(|b| b.wrapping_mul(37).wrapping_add(11)).collect();
        for len in 0..bytes.len() {
            assert_eq!(data(&bytes[..len]), reference(&bytes[..len]), "len {len}");
        }
        let ones = [0xffu8; 1000];
        for len in 0..ones.len() {
            assert_eq!(data(&ones[..len]), reference(&ones[..len]), "len {len}");
        }
    }

    #[test]
    fn known_ipv4_header_checksum() {
        // Wikipedia's example header: checksum b861.
        let mut hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8,
            0x00, 0xc7,
        ];
        assert_eq!(!data(&hdr), 0xb861);
        hdr[10] = 0xb8;
        hdr[11] = 0x61;
        assert_eq!(data(&hdr), 0xffff);
    }

    #[test]
    fn pseudo_headers_match_byte_layout() {
        let src = Ipv4Addr::new(10, 1, 2, 3);
        let dst = Ipv4Addr::new(192, 168, 200, 254);
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&src.octets());
        bytes.extend_from_slice(&dst.octets());
        bytes.extend_from_slice(&[0, 17, 0x12, 0x34]);
        assert_eq!(fold(pseudo_header_v4(src, dst, 17, 0x1234).into()), data(&bytes));

        let src6: Ipv6Addr = "fe80::1:ffff:abcd".parse().unwrap();
        let dst6: Ipv6Addr = "ff02::1:ff00:ffff".parse().unwrap();
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&src6.octets());
        bytes.extend_from_slice(&dst6.octets());
        bytes.extend_from_slice(&0x0001_0020u32.to_be_bytes());
        bytes.extend_from_slice(&[0, 0, 0, 58]);
        assert_eq!(fold(pseudo_header_v6(src6, dst6, 58, 0x0001_0020).into()), data(&bytes));
    }

    #[test]
    fn combine_folds() {
        assert_eq!(combine(&[0xffff, 0x0001]), 0x0001);
        assert_eq!(combine(&[0x1_0000, 0]), 0x0001);
        assert_eq!(combine(&[u32::MAX, u32::MAX, u32::MAX]), fold(3 * u64::from(u32::MAX)));
        assert_eq!(combine(&[]), 0);
    }

    #[test]
    fn incremental_matches_recompute() {
        let mut hdr = [
            0x45u8, 0x00, 0x00, 0x54, 0xab, 0xcd, 0x40, 0x00, 0x40, 0x01, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x01, 0x0a,
            0x00, 0x00, 0x02,
        ];
        let cs = !data(&hdr);
        // Change the TTL/protocol word, then a whole address.
        let old = u16::from_be_bytes([hdr[8], hdr[9]]);
        hdr[8] = 0x3f;
        let new = u16::from_be_bytes([hdr[8], hdr[9]]);
        let cs2 = incremental_update(cs, old, new);
        assert_eq!(cs2, !data(&hdr));
        let old_addr = u32::from_be_bytes([hdr[12], hdr[13], hdr[14], hdr[15]]);
        hdr[12..16].copy_from_slice(&[172, 16, 255, 254]);
        let cs3 = incremental_update_u32(cs2, old_addr, 0xac10_fffe);
        assert_eq!(cs3, !data(&hdr));
    }
}
