//! Ethernet II frames (no FCS: NICs strip it).
//!
//! ```text
//!  0                   6                  12      14
//! +-------------------+-------------------+-------+---------
//! | destination MAC   | source MAC        | type  | payload
//! +-------------------+-------------------+-------+---------
//! ```
//!
//! A frame tagged with 802.1Q has `ethertype() == EtherType::VLAN`; its payload is viewed
//! with [`crate::packet::vlan::Packet`].

use super::{Error, Field, Rest, Result};

/// A MAC address.
pub type MacAddr = [u8; 6];

/// Length of the Ethernet header (without any VLAN tag).
pub const HEADER_LEN: usize = 14;

/// The broadcast MAC address.
pub const BROADCAST: MacAddr = [0xff; 6];

/// Whether `addr` is a group (multicast or broadcast) address: I/G bit set.
#[inline]
pub fn is_multicast(addr: &MacAddr) -> bool {
    addr[0] & 0x01 != 0
}

/// Whether `addr` is the broadcast address.
#[inline]
pub fn is_broadcast(addr: &MacAddr) -> bool {
    *addr == BROADCAST
}

/// EtherType values, as associated constants: `EtherType::IPV4`. The getters return a
/// plain `u16` so that any value can be matched.
#[derive(Debug)]
pub enum EtherType {}

impl EtherType {
    /// IPv4.
    pub const IPV4: u16 = 0x0800;
    /// ARP (answered by the vRouter's proxy ARP on VM vifs).
    pub const ARP: u16 = 0x0806;
    /// 802.1Q customer VLAN tag.
    pub const VLAN: u16 = 0x8100;
    /// IPv6.
    pub const IPV6: u16 = 0x86dd;
    /// MPLS unicast.
    pub const MPLS: u16 = 0x8847;
    /// MPLS multicast (the vRouter does not use it).
    pub const MPLS_MULTICAST: u16 = 0x8848;
    /// 802.1ad service VLAN tag (QinQ outer tag).
    pub const QINQ: u16 = 0x88a8;
}

mod field {
    use super::{Field, Rest};
    pub const DESTINATION: Field = 0..6;
    pub const SOURCE: Field = 6..12;
    pub const ETHERTYPE: Field = 12..14;
    pub const PAYLOAD: Rest = 14..;
}

/// A view of an Ethernet II frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps `buffer` without checking its length.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Frame<T> {
        Frame { buffer }
    }

    /// Wraps `buffer` and checks it holds a whole header.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Frame<T>> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// `Truncated` if the buffer is shorter than [`HEADER_LEN`].
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// Gives the buffer back.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Header length (always [`HEADER_LEN`]).
    #[inline]
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Destination MAC address.
    #[inline]
    pub fn dst_addr(&self) -> MacAddr {
        let mut a = [0; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::DESTINATION]);
        a
    }

    /// Source MAC address.
    #[inline]
    pub fn src_addr(&self) -> MacAddr {
        let mut a = [0; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::SOURCE]);
        a
    }

    /// EtherType (see [`EtherType`]).
    #[inline]
    pub fn ethertype(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::ETHERTYPE];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// Everything after the header (including any Ethernet padding).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Frame<&'a T> {
    /// The payload, borrowed for the buffer's whole lifetime (for chaining views).
    #[inline]
    pub fn into_payload(self) -> &'a [u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Sets the destination MAC.
    #[inline]
    pub fn set_dst_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&addr);
    }

    /// Sets the source MAC.
    #[inline]
    pub fn set_src_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&addr);
    }

    /// Sets the EtherType (see [`EtherType`]).
    #[inline]
    pub fn set_ethertype(&mut self, value: u16) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&value.to_be_bytes());
    }

    /// The payload, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Frame<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // An ARP request broadcast by 52:54:00:12:34:56.
    static FRAME_BYTES: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x06, // eth
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x0a, 0x00, 0x00, 0x01,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x02,
    ];

    #[test]
    fn deconstruct() {
        let f = Frame::new_checked(&FRAME_BYTES[..]).unwrap();
        assert_eq!(f.dst_addr(), BROADCAST);
        assert!(is_broadcast(&f.dst_addr()) && is_multicast(&f.dst_addr()));
        assert_eq!(f.src_addr(), [0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
        assert!(!is_multicast(&f.src_addr()));
        assert_eq!(f.ethertype(), EtherType::ARP);
        assert_eq!(f.payload(), &FRAME_BYTES[14..]);
        assert_eq!(f.header_len(), HEADER_LEN);
        assert_eq!(f.into_payload().len(), 28);
    }

    #[test]
    fn construct() {
        let mut buf = [0u8; 42];
        let mut f = Frame::new_unchecked(&mut buf[..]);
        f.set_dst_addr(BROADCAST);
        f.set_src_addr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
        f.set_ethertype(EtherType::ARP);
        f.payload_mut().copy_from_slice(&FRAME_BYTES[14..]);
        assert_eq!(&buf[..], &FRAME_BYTES[..]);
    }

    #[test]
    fn truncated() {
        for len in 0..HEADER_LEN {
            assert_eq!(Frame::new_checked(&FRAME_BYTES[..len]), Err(Error::Truncated));
        }
        let f = Frame::new_checked(&FRAME_BYTES[..HEADER_LEN]).unwrap();
        assert!(f.payload().is_empty());
    }
}
