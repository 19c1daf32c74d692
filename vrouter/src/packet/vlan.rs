//! 802.1Q VLAN tags.
//!
//! The view covers what follows an outer EtherType of `0x8100` (or `0x88a8`): the tag
//! control information and the inner EtherType, then the payload.
//!
//! ```text
//!  0     3   4              16              32
//! +-----+---+---------------+---------------+---------
//! | PCP |DEI|     VID       | inner type    | payload
//! +-----+---+---------------+---------------+---------
//! ```

use super::{Error, Field, Rest, Result};

/// Length of the tag (TCI + inner EtherType).
pub const HEADER_LEN: usize = 4;

mod field {
    use super::{Field, Rest};
    pub const TCI: Field = 0..2;
    pub const ETHERTYPE: Field = 2..4;
    pub const PAYLOAD: Rest = 4..;
}

/// A view of an 802.1Q tag and what follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checking its length.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps `buffer` and checks it holds a whole tag.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
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

    /// The whole tag control information (PCP, DEI, VID).
    #[inline]
    pub fn tci(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::TCI];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// Priority code point (3 bits).
    #[inline]
    pub fn pcp(&self) -> u8 {
        (self.tci() >> 13) as u8
    }

    /// Drop eligible indicator.
    #[inline]
    pub fn dei(&self) -> bool {
        self.tci() & 0x1000 != 0
    }

    /// VLAN identifier (12 bits).
    #[inline]
    pub fn vid(&self) -> u16 {
        self.tci() & 0x0fff
    }

    /// The inner EtherType.
    #[inline]
    pub fn ethertype(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::ETHERTYPE];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// Everything after the tag.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The payload, borrowed for the buffer's whole lifetime (for chaining views).
    #[inline]
    pub fn into_payload(self) -> &'a [u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Writes the whole tag control information (PCP, DEI, VID).
    #[inline]
    pub fn set_tci(&mut self, value: u16) {
        self.buffer.as_mut()[field::TCI].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the priority code point (low 3 bits of `value`).
    #[inline]
    pub fn set_pcp(&mut self, value: u8) {
        let tci = (self.tci() & 0x1fff) | (u16::from(value & 0x07) << 13);
        self.set_tci(tci);
    }

    /// Sets or clears the drop eligible indicator (DEI).
    #[inline]
    pub fn set_dei(&mut self, value: bool) {
        let tci = (self.tci() & !0x1000) | if value { 0x1000 } else { 0 };
        self.set_tci(tci);
    }

    /// Sets the VLAN identifier (low 12 bits of `value`).
    #[inline]
    pub fn set_vid(&mut self, value: u16) {
        let tci = (self.tci() & 0xf000) | (value & 0x0fff);
        self.set_tci(tci);
    }

    /// Sets the EtherType of what follows the tag.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::ethernet::{self, EtherType};

    // Ethernet + 802.1Q tag (PCP 5, DEI 1, VID 100) + the first bytes of an IPv4 header.
    static TAGGED_BYTES: [u8; 22] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x81, 0x00, // eth
        0xb0, 0x64, 0x08, 0x00, // tag
        0x45, 0x00, 0x00, 0x14,
    ];

    #[test]
    fn deconstruct() {
        let eth = ethernet::Frame::new_checked(&TAGGED_BYTES[..]).unwrap();
        assert_eq!(eth.ethertype(), EtherType::VLAN);
        let tag = Packet::new_checked(eth.payload()).unwrap();
        assert_eq!(tag.pcp(), 5);
        assert!(tag.dei());
        assert_eq!(tag.vid(), 100);
        assert_eq!(tag.tci(), 0xb064);
        assert_eq!(tag.ethertype(), EtherType::IPV4);
        assert_eq!(tag.payload(), &[0x45, 0x00, 0x00, 0x14]);
    }

    #[test]
    fn construct() {
        let mut buf = [0u8; 8];
        let mut tag = Packet::new_unchecked(&mut buf[..]);
        tag.set_vid(0xfff + 100 + 1); // only the low 12 bits count
        tag.set_vid(100);
        tag.set_pcp(5);
        tag.set_dei(true);
        tag.set_ethertype(EtherType::IPV4);
        tag.payload_mut().copy_from_slice(&[0x45, 0x00, 0x00, 0x14]);
        assert_eq!(&buf[..], &TAGGED_BYTES[14..]);
        let mut tag = Packet::new_unchecked(&mut buf[..]);
        tag.set_dei(false);
        tag.set_pcp(0xff);
        assert_eq!((tag.pcp(), tag.dei(), tag.vid()), (7, false, 100));
    }

    #[test]
    fn truncated() {
        for len in 0..HEADER_LEN {
            assert_eq!(Packet::new_checked(&TAGGED_BYTES[14..14 + len]), Err(Error::Truncated));
        }
        assert!(Packet::new_checked(&TAGGED_BYTES[14..18]).unwrap().payload().is_empty());
    }
}
