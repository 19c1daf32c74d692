//! IPv6 (RFC 8200) fixed headers.
//!
//! ```text
//!  0       4               12                              32
//! +-------+---------------+--------------------------------+
//! |version| traffic class |           flow label           |
//! +-------+---------------+-------------+------------------+
//! |       payload length                | next hdr | hops  |
//! +-------------------------------------+------------------+
//! |               source address (16 bytes)                |
//! |            destination address (16 bytes)             |
//! +--------------------------------------------------------+
//! ```
//!
//! This view does not walk extension headers ([`super::ipv6ext::upper_layer`] does):
//! `next_header()` is reported as it is, and the payload starts right after the 40-byte
//! fixed header. `check_len` validates version 6
//! and `40 + payload_len <= buffer`; the payload stops at the payload length (so Ethernet
//! padding is excluded).

use super::{clamped, clamped_mut, Error, Field, Result};
use std::net::Ipv6Addr;

/// Length of the fixed header.
pub const HEADER_LEN: usize = 40;

mod field {
    use super::Field;
    pub const VER_TC_FLOW: Field = 0..4;
    pub const LENGTH: Field = 4..6;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Field = 8..24;
    pub const DST_ADDR: Field = 24..40;
}

/// A view of an IPv6 packet.
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

    /// `Truncated` if the buffer is shorter than 40 bytes or than `40 + payload_len`;
    /// `Malformed` if the version is not 6.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 6 {
            return Err(Error::Malformed);
        }
        if self.total_len() > len {
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
    fn ver_tc_flow(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::VER_TC_FLOW];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// IP version (6 after a successful check).
    #[inline]
    pub fn version(&self) -> u8 {
        (self.ver_tc_flow() >> 28) as u8
    }

    /// Traffic class (DSCP << 2 | ECN).
    #[inline]
    pub fn traffic_class(&self) -> u8 {
        (self.ver_tc_flow() >> 20) as u8
    }

    /// Flow label (20 bits).
    #[inline]
    pub fn flow_label(&self) -> u32 {
        self.ver_tc_flow() & 0x000f_ffff
    }

    /// Payload length (everything after the 40-byte header, extension headers included).
    #[inline]
    pub fn payload_len(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::LENGTH];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// `40 + payload_len`: where to trim any padding after the packet.
    #[inline]
    pub fn total_len(&self) -> usize {
        HEADER_LEN + usize::from(self.payload_len())
    }

    /// Next header (the first extension header or the upper-layer protocol, see
    /// [`crate::packet::IpProtocol`]).
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NXT_HDR]
    }

    /// Hop limit.
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::SRC_ADDR]);
        Ipv6Addr::from(a)
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::DST_ADDR]);
        Ipv6Addr::from(a)
    }

    /// The payload: `[40..40 + payload_len]`.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        clamped(self.buffer.as_ref(), HEADER_LEN, self.total_len())
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The payload, borrowed for the buffer's whole lifetime (for chaining views).
    #[inline]
    pub fn into_payload(self) -> &'a [u8] {
        let end = self.total_len();
        clamped(self.buffer.as_ref(), HEADER_LEN, end)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    #[inline]
    fn set_ver_tc_flow(&mut self, value: u32) {
        self.buffer.as_mut()[field::VER_TC_FLOW].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the version (low 4 bits of `value`).
    #[inline]
    pub fn set_version(&mut self, value: u8) {
        let v = (self.ver_tc_flow() & 0x0fff_ffff) | (u32::from(value & 0x0f) << 28);
        self.set_ver_tc_flow(v);
    }

    /// Sets the traffic class (DSCP and ECN), keeping version and flow label.
    #[inline]
    pub fn set_traffic_class(&mut self, value: u8) {
        let v = (self.ver_tc_flow() & 0xf00f_ffff) | (u32::from(value) << 20);
        self.set_ver_tc_flow(v);
    }

    /// Sets the flow label (low 20 bits of `value`).
    #[inline]
    pub fn set_flow_label(&mut self, value: u32) {
        let v = (self.ver_tc_flow() & 0xfff0_0000) | (value & 0x000f_ffff);
        self.set_ver_tc_flow(v);
    }

    /// Sets the payload length (everything after the 40-byte header, extension headers included).
    #[inline]
    pub fn set_payload_len(&mut self, value: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the next header (see [`IpProtocol`](super::IpProtocol)).
    #[inline]
    pub fn set_next_header(&mut self, value: u8) {
        self.buffer.as_mut()[field::NXT_HDR] = value;
    }

    /// Sets the hop limit.
    #[inline]
    pub fn set_hop_limit(&mut self, value: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = value;
    }

    /// Decrements the hop limit (there is no header checksum) and returns the new value.
    /// A hop limit of 0 is left as it is: callers drop packets whose hop limit is <= 1.
    #[inline]
    pub fn decrement_hop_limit(&mut self) -> u8 {
        let h = self.hop_limit().saturating_sub(1);
        self.set_hop_limit(h);
        h
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src_addr(&mut self, addr: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr.octets());
    }

    /// Sets the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, addr: Ipv6Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr.octets());
    }

    /// The payload (`[40..40 + payload_len]`), writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.total_len();
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
    use crate::packet::IpProtocol;

    // 2001:db8::1:5000 -> 2001:db8::2:4789 UDP carrying a VXLAN header (VNI 0x1234).
    static UDP_PACKET: [u8; 56] = [
        0x60, 0x00, 0x00, 0x00, 0x00, 0x10, 0x11, 0x40, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x02, 0x13, 0x88, 0x12, 0xb5, 0x00, 0x10, 0x42, 0x0a, 0x08, 0x00, 0x00, 0x00, 0x00, 0x12,
        0x34, 0x00,
    ];

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&UDP_PACKET[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0);
        assert_eq!(p.flow_label(), 0);
        assert_eq!(p.payload_len(), 16);
        assert_eq!(p.total_len(), 56);
        assert_eq!(p.next_header(), IpProtocol::UDP);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src_addr(), "2001:db8::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.dst_addr(), "2001:db8::2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.payload(), &UDP_PACKET[40..]);
        assert_eq!(p.into_payload(), &UDP_PACKET[40..]);
    }

    #[test]
    fn construct() {
        let mut buf = [0xa5u8; 56];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_version(6);
        p.set_traffic_class(0);
        p.set_flow_label(0);
        p.set_payload_len(16);
        p.set_next_header(IpProtocol::UDP);
        p.set_hop_limit(64);
        p.set_src_addr("2001:db8::1".parse().unwrap());
        p.set_dst_addr("2001:db8::2".parse().unwrap());
        p.payload_mut().copy_from_slice(&UDP_PACKET[40..]);
        assert_eq!(buf, UDP_PACKET);
    }

    #[test]
    fn field_bits() {
        let mut buf = UDP_PACKET;
        let mut p = Packet::new_checked(&mut buf[..]).unwrap();
        p.set_traffic_class(0xb9);
        p.set_flow_label(0xfffff);
        assert_eq!((p.version(), p.traffic_class(), p.flow_label()), (6, 0xb9, 0xfffff));
        p.set_flow_label(0x12345678);
        assert_eq!((p.version(), p.traffic_class(), p.flow_label()), (6, 0xb9, 0x45678));
        p.set_traffic_class(0);
        assert_eq!((p.version(), p.traffic_class(), p.flow_label()), (6, 0, 0x45678));
        assert_eq!(p.decrement_hop_limit(), 63);
        p.set_hop_limit(0);
        assert_eq!(p.decrement_hop_limit(), 0);
    }

    #[test]
    fn padding_and_errors() {
        let mut padded = [0u8; 64];
        padded[..56].copy_from_slice(&UDP_PACKET);
        let p = Packet::new_checked(&padded[..]).unwrap();
        assert_eq!(p.payload(), &UDP_PACKET[40..]);
        assert_eq!(p.total_len(), 56);

        for len in 0..UDP_PACKET.len() {
            assert_eq!(Packet::new_checked(&UDP_PACKET[..len]), Err(Error::Truncated));
        }
        let mut bad = UDP_PACKET;
        bad[0] = 0x45;
        assert_eq!(Packet::new_checked(&bad[..]), Err(Error::Malformed));
        let mut empty = UDP_PACKET;
        empty[5] = 0;
        assert!(Packet::new_checked(&empty[..]).unwrap().payload().is_empty());
    }
}
