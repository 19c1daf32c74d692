//! UDP (RFC 768) datagrams.
//!
//! ```text
//!  0              16              32
//! +---------------+---------------+
//! |  source port  |   dest port   |
//! +---------------+---------------+
//! |    length     |   checksum    |
//! +---------------+---------------+
//! ```
//!
//! `check_len` validates `8 <= length <= buffer`; the payload is `[8..length]`. View the
//! IP payload (not the whole frame) so the checksum covers the right bytes.

use super::checksum;
use super::{clamped, clamped_mut, Error, Field, IpProtocol, Result};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Length of the header.
pub const HEADER_LEN: usize = 8;

/// IANA port of VXLAN (RFC 7348).
pub const PORT_VXLAN: u16 = 4789;
/// IANA port of MPLS-in-UDP (RFC 7510).
pub const PORT_MPLS_UDP: u16 = 6635;

mod field {
    use super::Field;
    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const LENGTH: Field = 4..6;
    pub const CHECKSUM: Field = 6..8;
}

/// A view of a UDP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checking it.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps `buffer` and validates the header (see [`Packet::check_len`]).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// `Truncated` if the buffer is shorter than 8 bytes or than the length field;
    /// `Malformed` if the length field is below 8.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let udp_len = usize::from(self.len());
        if udp_len < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if udp_len > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Gives the buffer back.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    fn read_u16(&self, f: Field) -> u16 {
        let b = &self.buffer.as_ref()[f];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// Source port (for overlay packets, the entropy the sender derived from the inner flow).
    #[inline]
    pub fn src_port(&self) -> u16 {
        self.read_u16(field::SRC_PORT)
    }

    /// Destination port (e.g. [`PORT_VXLAN`], [`PORT_MPLS_UDP`]).
    #[inline]
    pub fn dst_port(&self) -> u16 {
        self.read_u16(field::DST_PORT)
    }

    /// Length field: header + payload in bytes.
    #[inline]
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        self.read_u16(field::LENGTH)
    }

    /// Checksum field (0 means "none" over IPv4).
    #[inline]
    pub fn checksum(&self) -> u16 {
        self.read_u16(field::CHECKSUM)
    }

    /// The datagram as the length field bounds it: `[..length]`.
    #[inline]
    fn datagram(&self) -> &[u8] {
        clamped(self.buffer.as_ref(), 0, usize::from(self.len()))
    }

    /// The payload: `[8..length]`.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        clamped(self.buffer.as_ref(), HEADER_LEN, usize::from(self.len()))
    }

    /// Whether the checksum is right for this IPv4 pseudo-header. A zero checksum
    /// ("not computed") is accepted.
    #[inline]
    pub fn verify_checksum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let data = self.datagram();
        let ph = checksum::pseudo_header_v4(src, dst, IpProtocol::UDP, data.len() as u16);
        checksum::combine(&[ph, checksum::data(data).into()]) == !0
    }

    /// Whether the checksum is right for this IPv6 pseudo-header. A zero checksum is
    /// rejected (RFC 8200 §8.1).
    #[inline]
    pub fn verify_checksum_v6(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        if self.checksum() == 0 {
            return false;
        }
        let data = self.datagram();
        let ph = checksum::pseudo_header_v6(src, dst, IpProtocol::UDP, data.len() as u32);
        checksum::combine(&[ph, checksum::data(data).into()]) == !0
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The payload, borrowed for the buffer's whole lifetime (for chaining views).
    #[inline]
    pub fn into_payload(self) -> &'a [u8] {
        let end = usize::from(self.len());
        clamped(self.buffer.as_ref(), HEADER_LEN, end)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    #[inline]
    fn write_u16(&mut self, f: Field, value: u16) {
        self.buffer.as_mut()[f].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the source port; the checksum is left alone.
    #[inline]
    pub fn set_src_port(&mut self, value: u16) {
        self.write_u16(field::SRC_PORT, value);
    }

    /// Sets the destination port; the checksum is left alone.
    #[inline]
    pub fn set_dst_port(&mut self, value: u16) {
        self.write_u16(field::DST_PORT, value);
    }

    /// Sets the length field (header and payload, in bytes).
    #[inline]
    pub fn set_len(&mut self, value: u16) {
        self.write_u16(field::LENGTH, value);
    }

    /// Sets the checksum field (0: no checksum, allowed over IPv4).
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        self.write_u16(field::CHECKSUM, value);
    }

    /// Computes and writes the checksum for an IPv4 pseudo-header (a computed 0 is sent
    /// as 0xffff). Tunnels may instead `set_checksum(0)`.
    #[inline]
    pub fn fill_checksum_v4(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let data = self.datagram();
        let ph = checksum::pseudo_header_v4(src, dst, IpProtocol::UDP, data.len() as u16);
        let cs = !checksum::combine(&[ph, checksum::data(data).into()]);
        self.set_checksum(if cs == 0 { 0xffff } else { cs });
    }

    /// Computes and writes the checksum for an IPv6 pseudo-header (a computed 0 is sent
    /// as 0xffff).
    #[inline]
    pub fn fill_checksum_v6(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        self.set_checksum(0);
        let data = self.datagram();
        let ph = checksum::pseudo_header_v6(src, dst, IpProtocol::UDP, data.len() as u32);
        let cs = !checksum::combine(&[ph, checksum::data(data).into()]);
        self.set_checksum(if cs == 0 { 0xffff } else { cs });
    }

    /// The payload (`[8..length]`), writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        clamped_mut(self.buffer.as_mut(), HEADER_LEN, end)
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 10.0.0.1:49152 -> 10.0.0.2:53, payload de ad be ef.
    static V4_DATAGRAM: [u8; 12] = [0xc0, 0x00, 0x00, 0x35, 0x00, 0x0c, 0x8e, 0x00, 0xde, 0xad, 0xbe, 0xef];
    const V4_SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const V4_DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    // [2001:db8::1]:5000 -> [2001:db8::2]:4789, a VXLAN header as payload.
    static V6_DATAGRAM: [u8; 16] =
        [0x13, 0x88, 0x12, 0xb5, 0x00, 0x10, 0x42, 0x0a, 0x08, 0x00, 0x00, 0x00, 0x00, 0x12, 0x34, 0x00];

    fn v6(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&V4_DATAGRAM[..]).unwrap();
        assert_eq!(p.src_port(), 49152);
        assert_eq!(p.dst_port(), 53);
        assert_eq!(p.len(), 12);
        assert_eq!(p.checksum(), 0x8e00);
        assert_eq!(p.payload(), &[0xde, 0xad, 0xbe, 0xef]);
        assert!(p.verify_checksum_v4(V4_SRC, V4_DST));
        assert!(!p.verify_checksum_v4(V4_DST, Ipv4Addr::new(10, 0, 0, 3)));
        assert_eq!(p.into_payload().len(), 4);

        let p = Packet::new_checked(&V6_DATAGRAM[..]).unwrap();
        assert_eq!(p.dst_port(), PORT_VXLAN);
        assert!(p.verify_checksum_v6(v6("2001:db8::1"), v6("2001:db8::2")));
        assert!(!p.verify_checksum_v6(v6("2001:db8::1"), v6("2001:db8::3")));
    }

    #[test]
    fn construct() {
        let mut buf = [0u8; 12];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_src_port(49152);
        p.set_dst_port(53);
        p.set_len(12);
        p.payload_mut().copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        p.fill_checksum_v4(V4_SRC, V4_DST);
        assert_eq!(buf, V4_DATAGRAM);

        let mut buf = [0u8; 16];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_src_port(5000);
        p.set_dst_port(PORT_VXLAN);
        p.set_len(16);
        p.payload_mut().copy_from_slice(&V6_DATAGRAM[8..]);
        p.fill_checksum_v6(v6("2001:db8::1"), v6("2001:db8::2"));
        assert_eq!(buf, V6_DATAGRAM);
    }

    #[test]
    fn zero_checksum() {
        let mut buf = V4_DATAGRAM;
        let mut p = Packet::new_checked(&mut buf[..]).unwrap();
        p.set_checksum(0);
        assert!(p.verify_checksum_v4(V4_SRC, V4_DST));
        assert!(!p.verify_checksum_v6(v6("::1"), v6("::2")));
    }

    #[test]
    fn computed_zero_is_sent_as_ffff() {
        // Choose the payload word so that the checksum comes out as zero.
        let mut buf = [0u8; 10];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_src_port(1);
        p.set_dst_port(2);
        p.set_len(10);
        let (src, dst) = (Ipv4Addr::new(1, 2, 3, 4), Ipv4Addr::new(5, 6, 7, 8));
        p.fill_checksum_v4(src, dst);
        let cs = p.checksum();
        // Putting the would-be checksum into the payload makes the real one 0.
        p.payload_mut().copy_from_slice(&cs.to_be_bytes());
        p.fill_checksum_v4(src, dst);
        assert_eq!(p.checksum(), 0xffff);
        assert!(p.verify_checksum_v4(src, dst));
    }

    #[test]
    fn length_field() {
        // Trailing bytes beyond the length field are not payload.
        let mut buf = [0u8; 20];
        buf[..12].copy_from_slice(&V4_DATAGRAM);
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.payload().len(), 4);
        assert!(p.verify_checksum_v4(V4_SRC, V4_DST));

        for len in 0..V4_DATAGRAM.len() {
            assert_eq!(Packet::new_checked(&V4_DATAGRAM[..len]), Err(Error::Truncated));
        }
        let mut bad = V4_DATAGRAM;
        bad[5] = 7;
        assert_eq!(Packet::new_checked(&bad[..]), Err(Error::Malformed));
        bad[5] = 8;
        assert!(Packet::new_checked(&bad[..]).unwrap().payload().is_empty());
        bad[5] = 13;
        assert_eq!(Packet::new_checked(&bad[..]), Err(Error::Truncated));
    }
}
