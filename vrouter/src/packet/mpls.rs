//! MPLS (RFC 3032) label stack entries: one view per 4-byte entry.
//!
//! ```text
//!  0                    20   23 24       32
//! +----------------------+----+-+---------+
//! |        label         | TC |S|   TTL   |
//! +----------------------+----+-+---------+
//! ```
//!
//! To walk a stack, view the payload of each entry until [`Packet::bottom_of_stack`];
//! the payload of the bottom entry is the inner packet (its first nibble tells IPv4 from
//! IPv6 for MPLS-over-UDP L3 VPNs).

use super::{Error, Field, Rest, Result};

/// Length of one label stack entry.
pub const HEADER_LEN: usize = 4;

/// Largest label value (20 bits).
pub const MAX_LABEL: u32 = 0x000f_ffff;
/// Reserved label: IPv4 explicit null.
pub const LABEL_IPV4_EXPLICIT_NULL: u32 = 0;
/// Reserved label: IPv6 explicit null.
pub const LABEL_IPV6_EXPLICIT_NULL: u32 = 2;
/// Labels below this are reserved (RFC 3032 §2.1).
pub const FIRST_UNRESERVED_LABEL: u32 = 16;

mod field {
    use super::{Field, Rest};
    pub const ENTRY: Field = 0..4;
    pub const PAYLOAD: Rest = 4..;
}

const LABEL_SHIFT: u32 = 12;
const TC_SHIFT: u32 = 9;
const TC_MASK: u32 = 0x7;
const S_BIT: u32 = 0x100;
const TTL_MASK: u32 = 0xff;

/// A view of one MPLS label stack entry and what follows it.
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

    /// Wraps `buffer` and checks it holds a whole entry.
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

    /// The whole 32-bit entry.
    #[inline]
    pub fn entry(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::ENTRY];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// Label (20 bits).
    #[inline]
    pub fn label(&self) -> u32 {
        self.entry() >> LABEL_SHIFT
    }

    /// Traffic class (3 bits).
    #[inline]
    pub fn tc(&self) -> u8 {
        ((self.entry() >> TC_SHIFT) & TC_MASK) as u8
    }

    /// Bottom-of-stack (S) bit.
    #[inline]
    pub fn bottom_of_stack(&self) -> bool {
        self.entry() & S_BIT != 0
    }

    /// Time to live of the entry.
    #[inline]
    pub fn ttl(&self) -> u8 {
        (self.entry() & TTL_MASK) as u8
    }

    /// Everything after this entry (the next entry, or the inner packet at the bottom).
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

/// Packs label (low 20 bits), TC (low 3 bits), S and TTL into an entry.
#[inline]
pub const fn entry(label: u32, tc: u8, bottom_of_stack: bool, ttl: u8) -> u32 {
    ((label & MAX_LABEL) << LABEL_SHIFT)
        | ((tc as u32 & TC_MASK) << TC_SHIFT)
        | if bottom_of_stack { S_BIT } else { 0 }
        | ttl as u32
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Writes the whole 32-bit entry.
    #[inline]
    pub fn set_entry(&mut self, value: u32) {
        self.buffer.as_mut()[field::ENTRY].copy_from_slice(&value.to_be_bytes());
    }

    /// Writes a whole entry from its fields (see [`entry`]).
    #[inline]
    pub fn fill(&mut self, label: u32, tc: u8, bottom_of_stack: bool, ttl: u8) {
        self.set_entry(entry(label, tc, bottom_of_stack, ttl));
    }

    /// Sets the label (low 20 bits of `value`).
    #[inline]
    pub fn set_label(&mut self, value: u32) {
        let e = (self.entry() & !(MAX_LABEL << LABEL_SHIFT)) | ((value & MAX_LABEL) << LABEL_SHIFT);
        self.set_entry(e);
    }

    /// Sets the traffic class (low 3 bits of `value`).
    #[inline]
    pub fn set_tc(&mut self, value: u8) {
        let e = (self.entry() & !(TC_MASK << TC_SHIFT)) | ((u32::from(value) & TC_MASK) << TC_SHIFT);
        self.set_entry(e);
    }

    /// Sets or clears the bottom-of-stack (S) bit.
    #[inline]
    pub fn set_bottom_of_stack(&mut self, value: bool) {
        let e = self.entry();
        self.set_entry(if value { e | S_BIT } else { e & !S_BIT });
    }

    /// Sets the TTL.
    #[inline]
    pub fn set_ttl(&mut self, value: u8) {
        let e = (self.entry() & !TTL_MASK) | u32::from(value);
        self.set_entry(e);
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

    // Two entries: label 100 (TC 0, TTL 64) over label 0xfffff (TC 5, S, TTL 1), then
    // the first byte of an IPv4 header.
    static STACK_BYTES: [u8; 9] = [0x00, 0x06, 0x40, 0x40, 0xff, 0xff, 0xfb, 0x01, 0x45];

    #[test]
    fn deconstruct() {
        let top = Packet::new_checked(&STACK_BYTES[..]).unwrap();
        assert_eq!(top.label(), 100);
        assert_eq!(top.tc(), 0);
        assert!(!top.bottom_of_stack());
        assert_eq!(top.ttl(), 64);
        let bottom = Packet::new_checked(top.into_payload()).unwrap();
        assert_eq!(bottom.label(), MAX_LABEL);
        assert_eq!(bottom.tc(), 5);
        assert!(bottom.bottom_of_stack());
        assert_eq!(bottom.ttl(), 1);
        assert_eq!(bottom.entry(), 0xffff_fb01);
        assert_eq!(bottom.payload(), &[0x45]);
    }

    #[test]
    fn construct() {
        let mut buf = [0u8; 9];
        let mut top = Packet::new_unchecked(&mut buf[..]);
        top.set_label(100);
        top.set_tc(0);
        top.set_bottom_of_stack(false);
        top.set_ttl(64);
        let mut bottom = Packet::new_unchecked(top.payload_mut());
        bottom.set_bottom_of_stack(true);
        bottom.set_label(0x1f_ffff); // only 20 bits count
        bottom.set_tc(0xfd); // only 3 bits count
        bottom.set_ttl(1);
        bottom.payload_mut()[0] = 0x45;
        assert_eq!(buf, STACK_BYTES);

        let mut buf = [0u8; 4];
        Packet::new_unchecked(&mut buf[..]).fill(100, 0, false, 64);
        assert_eq!(buf, STACK_BYTES[..4]);
        assert_eq!(entry(MAX_LABEL, 5, true, 1), 0xffff_fb01);
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_bottom_of_stack(true);
        p.set_bottom_of_stack(false);
        p.set_tc(7);
        p.set_tc(0);
        assert_eq!(buf, STACK_BYTES[..4]);
    }

    #[test]
    fn truncated() {
        for len in 0..HEADER_LEN {
            assert_eq!(Packet::new_checked(&STACK_BYTES[..len]), Err(Error::Truncated));
        }
        assert!(Packet::new_checked(&STACK_BYTES[..4]).unwrap().payload().is_empty());
    }
}
