//! VXLAN (RFC 7348) headers.
//!
//! ```text
//!  0       8                              32
//! +-------+-------------------------------+
//! | flags |           reserved            |   flags: I (0x08) = VNI valid
//! +-------+-----------------------+-------+
//! |          VNI (24 bits)        | rsvd  |
//! +-------------------------------+-------+
//! |  inner Ethernet frame ...
//! ```
//!
//! `check_len` requires the 8-byte header and the I flag (`Malformed` without it). Other
//! flag bits and the reserved fields are ignored on receive, as RFC 7348 says.

use super::{Error, Field, Rest, Result};

/// Length of the header.
pub const HEADER_LEN: usize = 8;

/// The I flag: the VNI is valid.
pub const FLAG_I: u8 = 0x08;

/// Largest VNI (24 bits): the one bound, [`vrouter_abi::MAX_VNI`].
pub use vrouter_abi::MAX_VNI;

mod field {
    use super::{Field, Rest};
    pub const FLAGS: usize = 0;
    pub const RESERVED0: Field = 1..4;
    pub const VNI: Field = 4..7;
    pub const RESERVED1: usize = 7;
    pub const PAYLOAD: Rest = 8..;
}

/// A view of a VXLAN header and the inner frame.
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

    /// `Truncated` if the buffer is shorter than 8 bytes; `Malformed` if the I flag is
    /// clear.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.flags() & FLAG_I == 0 {
            return Err(Error::Malformed);
        }
        Ok(())
    }

    /// Gives the buffer back.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The flags byte.
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// VXLAN network identifier (24 bits).
    #[inline]
    pub fn vni(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::VNI];
        u32::from_be_bytes([0, b[0], b[1], b[2]])
    }

    /// The inner Ethernet frame.
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
    /// Sets the flags byte ([`FLAG_I`] for a valid VNI).
    #[inline]
    pub fn set_flags(&mut self, value: u8) {
        self.buffer.as_mut()[field::FLAGS] = value;
    }

    /// Sets the VNI (low 24 bits of `value`).
    #[inline]
    pub fn set_vni(&mut self, value: u32) {
        let b = value.to_be_bytes();
        self.buffer.as_mut()[field::VNI].copy_from_slice(&b[1..]);
    }

    /// Writes a whole header: I flag, VNI, reserved fields zeroed.
    #[inline]
    pub fn fill(&mut self, vni: u32) {
        let buf = self.buffer.as_mut();
        buf[field::FLAGS] = FLAG_I;
        buf[field::RESERVED0].fill(0);
        buf[field::RESERVED1] = 0;
        self.set_vni(vni);
    }

    /// The inner frame, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // VNI 0x123456, then the first 2 bytes of the inner frame.
    static VXLAN_BYTES: [u8; 10] = [0x08, 0x00, 0x00, 0x00, 0x12, 0x34, 0x56, 0x00, 0xaa, 0xbb];

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&VXLAN_BYTES[..]).unwrap();
        assert_eq!(p.flags(), FLAG_I);
        assert_eq!(p.vni(), 0x123456);
        assert_eq!(p.payload(), &[0xaa, 0xbb]);
        assert_eq!(p.into_payload(), &[0xaa, 0xbb]);
    }

    #[test]
    fn construct() {
        let mut buf = [0xffu8; 10];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.fill(0xff12_3456); // only 24 bits count
        p.payload_mut().copy_from_slice(&[0xaa, 0xbb]);
        assert_eq!(buf, VXLAN_BYTES);
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_vni(MAX_VNI);
        p.set_flags(FLAG_I | 0x80);
        assert_eq!(p.vni(), MAX_VNI);
        assert_eq!(p.flags(), 0x88);
    }

    #[test]
    fn errors() {
        for len in 0..HEADER_LEN {
            assert_eq!(Packet::new_checked(&VXLAN_BYTES[..len]), Err(Error::Truncated));
        }
        let mut bad = VXLAN_BYTES;
        bad[0] = 0x00;
        assert_eq!(Packet::new_checked(&bad[..]), Err(Error::Malformed));
        bad[0] = 0xf7;
        assert_eq!(Packet::new_checked(&bad[..]), Err(Error::Malformed));
        bad[0] = 0x0c; // I plus a GPE-style bit: accepted, the other bits are ignored
        assert!(Packet::new_checked(&bad[..]).is_ok());
    }
}
