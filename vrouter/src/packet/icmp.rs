//! ICMPv4 (RFC 792) messages.
//!
//! ```text
//!  0       8      16              32
//! +-------+-------+---------------+
//! | type  | code  |   checksum    |
//! +-------+-------+---------------+
//! |  rest of header (ident/seq,   |
//! |  unused/next-hop MTU, ...)    |
//! +-------------------------------+
//! |  payload ...                  |
//! ```
//!
//! The view requires the 8-byte header every ICMPv4 message has. View exactly the IP
//! payload: the checksum covers the whole buffer.

use super::checksum;
use super::{Error, Field, Rest, Result};

/// Length of the header (type, code, checksum and the 4-byte rest of header).
pub const HEADER_LEN: usize = 8;

/// Echo reply (answer to a ping).
pub const TYPE_ECHO_REPLY: u8 = 0;
/// Destination unreachable (codes such as [`CODE_FRAG_NEEDED`]).
pub const TYPE_DEST_UNREACHABLE: u8 = 3;
/// Redirect.
pub const TYPE_REDIRECT: u8 = 5;
/// Echo request (ping).
pub const TYPE_ECHO_REQUEST: u8 = 8;
/// Time exceeded: the vRouter sends it when it drops a packet whose TTL runs out.
pub const TYPE_TIME_EXCEEDED: u8 = 11;
/// Parameter problem.
pub const TYPE_PARAMETER_PROBLEM: u8 = 12;

/// Destination unreachable code: fragmentation needed and DF set (carries the MTU).
pub const CODE_FRAG_NEEDED: u8 = 4;
/// Time exceeded code: TTL exceeded in transit.
pub const CODE_TTL_EXCEEDED: u8 = 0;

mod field {
    use super::{Field, Rest};
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Field = 2..4;
    pub const REST_OF_HEADER: Field = 4..8;
    pub const ECHO_IDENT: Field = 4..6;
    pub const ECHO_SEQNO: Field = 6..8;
    pub const NEXT_HOP_MTU: Field = 6..8;
    pub const PAYLOAD: Rest = 8..;
}

/// A view of an ICMPv4 message.
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

    /// Wraps `buffer` and checks it holds the 8-byte header.
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

    #[inline]
    fn read_u16(&self, f: Field) -> u16 {
        let b = &self.buffer.as_ref()[f];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// Message type (`TYPE_*`).
    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    /// Message code (meaning depends on the type).
    #[inline]
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// Checksum field (over the whole message).
    #[inline]
    pub fn checksum(&self) -> u16 {
        self.read_u16(field::CHECKSUM)
    }

    /// Whether the message is an echo request or reply (so that [`Packet::echo_ident`]
    /// and [`Packet::echo_seq_no`] mean something).
    #[inline]
    pub fn is_echo(&self) -> bool {
        matches!(self.msg_type(), TYPE_ECHO_REQUEST | TYPE_ECHO_REPLY)
    }

    /// Echo identifier (bytes 4..6; meaningful for echo request/reply only).
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        self.read_u16(field::ECHO_IDENT)
    }

    /// Echo sequence number (bytes 6..8; meaningful for echo request/reply only).
    #[inline]
    pub fn echo_seq_no(&self) -> u16 {
        self.read_u16(field::ECHO_SEQNO)
    }

    /// Next-hop MTU (bytes 6..8; meaningful for "fragmentation needed" only).
    #[inline]
    pub fn next_hop_mtu(&self) -> u16 {
        self.read_u16(field::NEXT_HOP_MTU)
    }

    /// The raw 4-byte rest of header.
    #[inline]
    pub fn rest_of_header(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::REST_OF_HEADER];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// Everything after the 8-byte header (echo data, or the offending IP header and the
    /// first bytes of its payload for error messages).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }

    /// Whether the checksum over the whole buffer is right.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::data(self.buffer.as_ref()) == !0
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
    #[inline]
    fn write_u16(&mut self, f: Field, value: u16) {
        self.buffer.as_mut()[f].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the message type (`TYPE_*`).
    #[inline]
    pub fn set_msg_type(&mut self, value: u8) {
        self.buffer.as_mut()[field::TYPE] = value;
    }

    /// Sets the message code.
    #[inline]
    pub fn set_msg_code(&mut self, value: u8) {
        self.buffer.as_mut()[field::CODE] = value;
    }

    /// Sets the checksum field; [`Packet::fill_checksum`] computes it.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        self.write_u16(field::CHECKSUM, value);
    }

    /// Sets the echo identifier (bytes 4..6 of an echo request or reply).
    #[inline]
    pub fn set_echo_ident(&mut self, value: u16) {
        self.write_u16(field::ECHO_IDENT, value);
    }

    /// Sets the echo sequence number (bytes 6..8 of an echo request or reply).
    #[inline]
    pub fn set_echo_seq_no(&mut self, value: u16) {
        self.write_u16(field::ECHO_SEQNO, value);
    }

    /// Sets the next-hop MTU (bytes 6..8 of a fragmentation-needed destination unreachable).
    #[inline]
    pub fn set_next_hop_mtu(&mut self, value: u16) {
        self.write_u16(field::NEXT_HOP_MTU, value);
    }

    /// Writes the 4-byte rest of header (bytes 4..8) at once, e.g. 0 for a time exceeded.
    #[inline]
    pub fn set_rest_of_header(&mut self, value: u32) {
        self.buffer.as_mut()[field::REST_OF_HEADER].copy_from_slice(&value.to_be_bytes());
    }

    /// Computes and writes the checksum over the whole buffer.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let cs = !checksum::data(self.buffer.as_ref());
        self.set_checksum(cs);
    }

    /// The payload, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
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

    // Echo request, ident 1, seq 2, data "abcdefgh".
    static ECHO_BYTES: [u8; 16] =
        [0x08, 0x00, 0x66, 0x67, 0x00, 0x01, 0x00, 0x02, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68];

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&ECHO_BYTES[..]).unwrap();
        assert_eq!(p.msg_type(), TYPE_ECHO_REQUEST);
        assert_eq!(p.msg_code(), 0);
        assert!(p.is_echo());
        assert_eq!(p.checksum(), 0x6667);
        assert_eq!(p.echo_ident(), 1);
        assert_eq!(p.echo_seq_no(), 2);
        assert_eq!(p.rest_of_header(), 0x0001_0002);
        assert_eq!(p.next_hop_mtu(), 2);
        assert_eq!(p.payload(), b"abcdefgh");
        assert!(p.verify_checksum());
        assert_eq!(p.into_payload(), b"abcdefgh");
    }

    #[test]
    fn construct() {
        let mut buf = [0u8; 16];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_msg_type(TYPE_ECHO_REQUEST);
        p.set_msg_code(0);
        p.set_echo_ident(1);
        p.set_echo_seq_no(2);
        p.payload_mut().copy_from_slice(b"abcdefgh");
        p.fill_checksum();
        assert_eq!(buf, ECHO_BYTES);
    }

    #[test]
    fn echo_reply_in_place() {
        let mut buf = ECHO_BYTES;
        let mut p = Packet::new_checked(&mut buf[..]).unwrap();
        p.set_msg_type(TYPE_ECHO_REPLY);
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert!(p.is_echo());
        assert_eq!(p.checksum(), 0x6e67);
    }

    #[test]
    fn error_message_fields() {
        let mut buf = [0u8; 36];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_msg_type(TYPE_DEST_UNREACHABLE);
        p.set_msg_code(CODE_FRAG_NEEDED);
        p.set_rest_of_header(0);
        p.set_next_hop_mtu(1400);
        p.fill_checksum();
        assert!(!p.is_echo());
        assert_eq!(p.next_hop_mtu(), 1400);
        assert!(p.verify_checksum());
        assert_eq!(p.payload().len(), 28);
    }

    #[test]
    fn truncated() {
        for len in 0..HEADER_LEN {
            assert_eq!(Packet::new_checked(&ECHO_BYTES[..len]), Err(Error::Truncated));
        }
        let mut bad = ECHO_BYTES;
        bad[15] ^= 0xff;
        assert!(!Packet::new_checked(&bad[..]).unwrap().verify_checksum());
    }
}
