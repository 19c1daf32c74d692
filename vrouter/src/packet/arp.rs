//! ARP (RFC 826) for Ethernet and IPv4 only: a fixed 28-byte packet.
//!
//! ```text
//!  0       2       4   5   6       8          14      18         24      28
//! +-------+-------+---+---+-------+----------+-------+----------+-------+
//! | htype | ptype |hln|pln| oper  | sha      | spa   | tha      | tpa   |
//! +-------+-------+---+---+-------+----------+-------+----------+-------+
//! ```
//!
//! `check_len` accepts only hardware type 1 (Ethernet) with protocol 0x0800 (IPv4):
//! other types are `Unsupported`; for Ethernet/IPv4, address lengths other than 6/4 are
//! `Malformed`. The operation is not checked (compare with [`OP_REQUEST`]/[`OP_REPLY`]).

use super::ethernet::{EtherType, MacAddr};
use super::{Error, Field, Result};
use std::net::Ipv4Addr;

/// Length of an Ethernet/IPv4 ARP packet.
pub const HEADER_LEN: usize = 28;

/// Hardware type Ethernet.
pub const HTYPE_ETHERNET: u16 = 1;
/// Operation: request.
pub const OP_REQUEST: u16 = 1;
/// Operation: reply.
pub const OP_REPLY: u16 = 2;

mod field {
    use super::Field;
    pub const HTYPE: Field = 0..2;
    pub const PTYPE: Field = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Field = 6..8;
    pub const SHA: Field = 8..14;
    pub const SPA: Field = 14..18;
    pub const THA: Field = 18..24;
    pub const TPA: Field = 24..28;
}

/// A view of an Ethernet/IPv4 ARP packet.
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

    /// Wraps `buffer` and checks it is a whole Ethernet/IPv4 ARP packet.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// `Truncated` if shorter than 28 bytes; `Unsupported` unless hardware type is Ethernet
    /// and protocol type IPv4; `Malformed` if then the address lengths are not 6 and 4.
    /// Bytes after the 28th (Ethernet padding) are ignored.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.hardware_type() != HTYPE_ETHERNET || self.protocol_type() != EtherType::IPV4 {
            return Err(Error::Unsupported);
        }
        if self.hardware_len() != 6 || self.protocol_len() != 4 {
            return Err(Error::Malformed);
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

    #[inline]
    fn read_mac(&self, f: Field) -> MacAddr {
        let mut a = [0; 6];
        a.copy_from_slice(&self.buffer.as_ref()[f]);
        a
    }

    #[inline]
    fn read_ipv4(&self, f: Field) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[f];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    /// Hardware type (1 for Ethernet).
    #[inline]
    pub fn hardware_type(&self) -> u16 {
        self.read_u16(field::HTYPE)
    }

    /// Protocol type (an EtherType, 0x0800 for IPv4).
    #[inline]
    pub fn protocol_type(&self) -> u16 {
        self.read_u16(field::PTYPE)
    }

    /// Hardware address length (6).
    #[inline]
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    /// Protocol address length (4).
    #[inline]
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    /// Operation ([`OP_REQUEST`], [`OP_REPLY`], or anything else the sender wrote).
    #[inline]
    pub fn operation(&self) -> u16 {
        self.read_u16(field::OPER)
    }

    /// Sender hardware address (SHA): the asker's MAC in a request, the answer in a reply.
    #[inline]
    pub fn sender_hardware_addr(&self) -> MacAddr {
        self.read_mac(field::SHA)
    }

    /// Sender protocol address (SPA): the sender's IPv4 address.
    #[inline]
    pub fn sender_protocol_addr(&self) -> Ipv4Addr {
        self.read_ipv4(field::SPA)
    }

    /// Target hardware address (THA): zero in a request, the asker's MAC in a reply.
    #[inline]
    pub fn target_hardware_addr(&self) -> MacAddr {
        self.read_mac(field::THA)
    }

    /// Target protocol address (TPA): the IPv4 address a request asks about.
    #[inline]
    pub fn target_protocol_addr(&self) -> Ipv4Addr {
        self.read_ipv4(field::TPA)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    #[inline]
    fn write_u16(&mut self, f: Field, value: u16) {
        self.buffer.as_mut()[f].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the hardware type (1 for Ethernet).
    #[inline]
    pub fn set_hardware_type(&mut self, value: u16) {
        self.write_u16(field::HTYPE, value);
    }

    /// Sets the protocol type (an EtherType, 0x0800 for IPv4).
    #[inline]
    pub fn set_protocol_type(&mut self, value: u16) {
        self.write_u16(field::PTYPE, value);
    }

    /// Sets the hardware address length (6 for Ethernet).
    #[inline]
    pub fn set_hardware_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::HLEN] = value;
    }

    /// Sets the protocol address length (4 for IPv4).
    #[inline]
    pub fn set_protocol_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::PLEN] = value;
    }

    /// Writes the four fixed fields of an Ethernet/IPv4 ARP packet (1, 0x0800, 6, 4).
    #[inline]
    pub fn set_ethernet_ipv4(&mut self) {
        self.set_hardware_type(HTYPE_ETHERNET);
        self.set_protocol_type(EtherType::IPV4);
        self.set_hardware_len(6);
        self.set_protocol_len(4);
    }

    /// Sets the operation ([`OP_REQUEST`] or [`OP_REPLY`]).
    #[inline]
    pub fn set_operation(&mut self, value: u16) {
        self.write_u16(field::OPER, value);
    }

    /// Sets the sender hardware address (SHA).
    #[inline]
    pub fn set_sender_hardware_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::SHA].copy_from_slice(&addr);
    }

    /// Sets the sender protocol address (SPA).
    #[inline]
    pub fn set_sender_protocol_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SPA].copy_from_slice(&addr.octets());
    }

    /// Sets the target hardware address (THA).
    #[inline]
    pub fn set_target_hardware_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::THA].copy_from_slice(&addr);
    }

    /// Sets the target protocol address (TPA).
    #[inline]
    pub fn set_target_protocol_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::TPA].copy_from_slice(&addr.octets());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // who-has 10.0.0.2 tell 10.0.0.1 (52:54:00:12:34:56), then 2 bytes of padding.
    static REQUEST_BYTES: [u8; 30] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x0a, 0x00, 0x00, 0x01,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x02, 0x00, 0x00,
    ];

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&REQUEST_BYTES[..]).unwrap();
        assert_eq!(p.hardware_type(), 1);
        assert_eq!(p.protocol_type(), 0x0800);
        assert_eq!((p.hardware_len(), p.protocol_len()), (6, 4));
        assert_eq!(p.operation(), OP_REQUEST);
        assert_eq!(p.sender_hardware_addr(), [0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
        assert_eq!(p.sender_protocol_addr(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(p.target_hardware_addr(), [0; 6]);
        assert_eq!(p.target_protocol_addr(), Ipv4Addr::new(10, 0, 0, 2));
    }

    #[test]
    fn construct() {
        let mut buf = [0u8; 30];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_ethernet_ipv4();
        p.set_operation(OP_REQUEST);
        p.set_sender_hardware_addr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
        p.set_sender_protocol_addr(Ipv4Addr::new(10, 0, 0, 1));
        p.set_target_hardware_addr([0; 6]);
        p.set_target_protocol_addr(Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(buf, REQUEST_BYTES);
    }

    #[test]
    fn reply_in_place() {
        let mut buf = REQUEST_BYTES;
        let mut p = Packet::new_checked(&mut buf[..]).unwrap();
        let (sha, spa, tpa) = (p.sender_hardware_addr(), p.sender_protocol_addr(), p.target_protocol_addr());
        let mine = [0x02, 0, 0, 0, 0, 0x99];
        p.set_operation(OP_REPLY);
        p.set_target_hardware_addr(sha);
        p.set_target_protocol_addr(spa);
        p.set_sender_hardware_addr(mine);
        p.set_sender_protocol_addr(tpa);
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.operation(), OP_REPLY);
        assert_eq!(p.sender_hardware_addr(), mine);
        assert_eq!(p.sender_protocol_addr(), Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(p.target_hardware_addr(), sha);
        assert_eq!(p.target_protocol_addr(), Ipv4Addr::new(10, 0, 0, 1));
    }

    #[test]
    fn errors() {
        for len in 0..HEADER_LEN {
            assert_eq!(Packet::new_checked(&REQUEST_BYTES[..len]), Err(Error::Truncated));
        }
        let check = |patch: &dyn Fn(&mut [u8; 30])| {
            let mut b = REQUEST_BYTES;
            patch(&mut b);
            Packet::new_checked(&b[..]).map(|_| ())
        };
        assert_eq!(check(&|_| ()), Ok(()));
        assert_eq!(check(&|b| b[1] = 6), Err(Error::Unsupported)); // IEEE 802 hardware
        assert_eq!(check(&|b| b[2] = 0x86), Err(Error::Unsupported)); // protocol 0x86dd-ish
        assert_eq!(check(&|b| b[4] = 8), Err(Error::Malformed));
        assert_eq!(check(&|b| b[5] = 16), Err(Error::Malformed));
        // The operation is the caller's business.
        assert_eq!(check(&|b| b[7] = 9), Ok(()));
    }
}
