//! TCP (RFC 9293) segments.
//!
//! ```text
//!  0              16              32
//! +---------------+---------------+
//! |  source port  |   dest port   |
//! +---------------+---------------+
//! |        sequence number        |
//! |     acknowledgment number     |
//! +----+-----+----+---------------+
//! |off |rsvd |flgs|    window     |
//! +----+-----+----+---------------+
//! |   checksum    | urgent ptr    |
//! +---------------+---------------+
//! |        options ...            |
//! ```
//!
//! `check_len` validates data offset >= 5 and header length <= buffer. TCP has no length
//! field: view exactly the IP payload (`ipv4::Packet::payload()` already excludes padding),
//! the segment is the whole buffer and the payload `[header_len..]`.

use super::checksum;
use super::{clamped, clamped_mut, Error, Field, IpProtocol, Result};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Length of a header without options.
pub const HEADER_LEN: usize = 20;

mod field {
    use super::Field;
    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const SEQ_NUM: Field = 4..8;
    pub const ACK_NUM: Field = 8..12;
    pub const FLAGS: Field = 12..14;
    pub const WIN_SIZE: Field = 14..16;
    pub const CHECKSUM: Field = 16..18;
    pub const URGENT: Field = 18..20;
}

/// Flag bits, as returned by [`Packet::flags`].
pub mod flags {
    /// FIN: the sender has finished sending (the agent evicts a pair once both sides sent it).
    pub const FIN: u16 = 0x001;
    /// SYN: synchronize sequence numbers (connection open).
    pub const SYN: u16 = 0x002;
    /// RST: reset the connection (the agent evicts the pair).
    pub const RST: u16 = 0x004;
    /// PSH: push.
    pub const PSH: u16 = 0x008;
    /// ACK: the acknowledgment number is valid.
    pub const ACK: u16 = 0x010;
    /// URG: the urgent pointer is valid.
    pub const URG: u16 = 0x020;
    /// ECE: ECN echo.
    pub const ECE: u16 = 0x040;
    /// CWR: congestion window reduced.
    pub const CWR: u16 = 0x080;
    /// Every flag bit (the 12 low bits minus the data offset).
    pub const MASK: u16 = 0x0fff;
}

/// A view of a TCP segment.
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

    /// `Truncated` if the buffer is shorter than 20 bytes or than the data offset;
    /// `Malformed` if the data offset is below 5.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let header_len = self.header_len();
        if header_len < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if header_len > len {
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

    #[inline]
    fn read_u32(&self, f: Field) -> u32 {
        let b = &self.buffer.as_ref()[f];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        self.read_u16(field::SRC_PORT)
    }

    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        self.read_u16(field::DST_PORT)
    }

    /// Sequence number.
    #[inline]
    pub fn seq_number(&self) -> u32 {
        self.read_u32(field::SEQ_NUM)
    }

    /// Acknowledgment number.
    #[inline]
    pub fn ack_number(&self) -> u32 {
        self.read_u32(field::ACK_NUM)
    }

    /// Header length in bytes (data offset * 4), options included.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::FLAGS.start] >> 4) * 4
    }

    /// The flag bits (see [`flags`]).
    #[inline]
    pub fn flags(&self) -> u16 {
        self.read_u16(field::FLAGS) & flags::MASK
    }

    /// Whether FIN is set.
    #[inline]
    pub fn fin(&self) -> bool {
        self.flags() & flags::FIN != 0
    }

    /// Whether SYN is set.
    #[inline]
    pub fn syn(&self) -> bool {
        self.flags() & flags::SYN != 0
    }

    /// Whether RST is set.
    #[inline]
    pub fn rst(&self) -> bool {
        self.flags() & flags::RST != 0
    }

    /// Whether PSH is set.
    #[inline]
    pub fn psh(&self) -> bool {
        self.flags() & flags::PSH != 0
    }

    /// Whether ACK is set.
    #[inline]
    pub fn ack(&self) -> bool {
        self.flags() & flags::ACK != 0
    }

    /// Whether URG is set.
    #[inline]
    pub fn urg(&self) -> bool {
        self.flags() & flags::URG != 0
    }

    /// Whether ECE is set.
    #[inline]
    pub fn ece(&self) -> bool {
        self.flags() & flags::ECE != 0
    }

    /// Whether CWR is set.
    #[inline]
    pub fn cwr(&self) -> bool {
        self.flags() & flags::CWR != 0
    }

    /// Window size (unscaled).
    #[inline]
    pub fn window_len(&self) -> u16 {
        self.read_u16(field::WIN_SIZE)
    }

    /// Checksum field (over the pseudo-header, header and payload).
    #[inline]
    pub fn checksum(&self) -> u16 {
        self.read_u16(field::CHECKSUM)
    }

    /// Urgent pointer.
    #[inline]
    pub fn urgent_at(&self) -> u16 {
        self.read_u16(field::URGENT)
    }

    /// The options: `[20..header_len]`.
    #[inline]
    pub fn options(&self) -> &[u8] {
        clamped(self.buffer.as_ref(), HEADER_LEN, self.header_len())
    }

    /// The payload: `[header_len..]`.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let buf = self.buffer.as_ref();
        clamped(buf, self.header_len(), buf.len())
    }

    /// Whether the checksum over the whole buffer is right for this IPv4 pseudo-header.
    #[inline]
    pub fn verify_checksum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        let data = self.buffer.as_ref();
        let ph = checksum::pseudo_header_v4(src, dst, IpProtocol::TCP, data.len() as u16);
        checksum::combine(&[ph, checksum::data(data).into()]) == !0
    }

    /// Whether the checksum over the whole buffer is right for this IPv6 pseudo-header.
    #[inline]
    pub fn verify_checksum_v6(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        let data = self.buffer.as_ref();
        let ph = checksum::pseudo_header_v6(src, dst, IpProtocol::TCP, data.len() as u32);
        checksum::combine(&[ph, checksum::data(data).into()]) == !0
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The payload, borrowed for the buffer's whole lifetime (for chaining views).
    #[inline]
    pub fn into_payload(self) -> &'a [u8] {
        let start = self.header_len();
        let buf: &'a [u8] = self.buffer.as_ref();
        clamped(buf, start, buf.len())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    #[inline]
    fn write_u16(&mut self, f: Field, value: u16) {
        self.buffer.as_mut()[f].copy_from_slice(&value.to_be_bytes());
    }

    #[inline]
    fn write_u32(&mut self, f: Field, value: u32) {
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

    /// Sets the sequence number.
    #[inline]
    pub fn set_seq_number(&mut self, value: u32) {
        self.write_u32(field::SEQ_NUM, value);
    }

    /// Sets the acknowledgment number.
    #[inline]
    pub fn set_ack_number(&mut self, value: u32) {
        self.write_u32(field::ACK_NUM, value);
    }

    /// Sets the header length in bytes (stored as `len / 4`, low 4 bits).
    #[inline]
    pub fn set_header_len(&mut self, len: usize) {
        let b = &mut self.buffer.as_mut()[field::FLAGS.start];
        *b = (*b & 0x0f) | (((len / 4) as u8) << 4);
    }

    /// Replaces all flag bits (see [`flags`]); the data offset is kept.
    #[inline]
    pub fn set_flags(&mut self, value: u16) {
        let raw = self.read_u16(field::FLAGS);
        self.write_u16(field::FLAGS, (raw & !flags::MASK) | (value & flags::MASK));
    }

    #[inline]
    fn set_flag(&mut self, flag: u16, value: bool) {
        let f = self.flags();
        self.set_flags(if value { f | flag } else { f & !flag });
    }

    /// Sets or clears FIN.
    #[inline]
    pub fn set_fin(&mut self, value: bool) {
        self.set_flag(flags::FIN, value);
    }

    /// Sets or clears SYN.
    #[inline]
    pub fn set_syn(&mut self, value: bool) {
        self.set_flag(flags::SYN, value);
    }

    /// Sets or clears RST.
    #[inline]
    pub fn set_rst(&mut self, value: bool) {
        self.set_flag(flags::RST, value);
    }

    /// Sets or clears PSH.
    #[inline]
    pub fn set_psh(&mut self, value: bool) {
        self.set_flag(flags::PSH, value);
    }

    /// Sets or clears ACK.
    #[inline]
    pub fn set_ack(&mut self, value: bool) {
        self.set_flag(flags::ACK, value);
    }

    /// Sets or clears URG.
    #[inline]
    pub fn set_urg(&mut self, value: bool) {
        self.set_flag(flags::URG, value);
    }

    /// Sets the window size.
    #[inline]
    pub fn set_window_len(&mut self, value: u16) {
        self.write_u16(field::WIN_SIZE, value);
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        self.write_u16(field::CHECKSUM, value);
    }

    /// Sets the urgent pointer.
    #[inline]
    pub fn set_urgent_at(&mut self, value: u16) {
        self.write_u16(field::URGENT, value);
    }

    /// Computes and writes the checksum over the whole buffer (IPv4 pseudo-header).
    #[inline]
    pub fn fill_checksum_v4(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let data = self.buffer.as_ref();
        let ph = checksum::pseudo_header_v4(src, dst, IpProtocol::TCP, data.len() as u16);
        let cs = !checksum::combine(&[ph, checksum::data(data).into()]);
        self.set_checksum(cs);
    }

    /// Computes and writes the checksum over the whole buffer (IPv6 pseudo-header).
    #[inline]
    pub fn fill_checksum_v6(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        self.set_checksum(0);
        let data = self.buffer.as_ref();
        let ph = checksum::pseudo_header_v6(src, dst, IpProtocol::TCP, data.len() as u32);
        let cs = !checksum::combine(&[ph, checksum::data(data).into()]);
        self.set_checksum(cs);
    }

    /// The options, writable.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        clamped_mut(self.buffer.as_mut(), HEADER_LEN, end)
    }

    /// The payload, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        let buf = self.buffer.as_mut();
        let end = buf.len();
        clamped_mut(buf, start, end)
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

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    // 10.0.0.1:40000 -> 10.0.0.2:80 SYN, MSS 1460 option.
    static SYN_SEGMENT: [u8; 24] = [
        0x9c, 0x40, 0x00, 0x50, 0x01, 0x02, 0x03, 0x04, 0x00, 0x00, 0x00, 0x00, 0x60, 0x02, 0xfa, 0xf0, 0xe8, 0x9c,
        0x00, 0x00, 0x02, 0x04, 0x05, 0xb4,
    ];

    // 10.0.0.1:40000 -> 10.0.0.2:80 PSH|ACK "hello".
    static DATA_SEGMENT: [u8; 25] = [
        0x9c, 0x40, 0x00, 0x50, 0x01, 0x02, 0x03, 0x05, 0xa0, 0xb0, 0xc0, 0xd0, 0x50, 0x18, 0x01, 0xf6, 0x53, 0xe4,
        0x00, 0x00, 0x68, 0x65, 0x6c, 0x6c, 0x6f,
    ];

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&SYN_SEGMENT[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port()), (40000, 80));
        assert_eq!(p.seq_number(), 0x01020304);
        assert_eq!(p.ack_number(), 0);
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.flags(), flags::SYN);
        assert!(p.syn() && !p.ack() && !p.fin() && !p.rst() && !p.psh() && !p.urg());
        assert!(!p.ece() && !p.cwr());
        assert_eq!(p.window_len(), 64240);
        assert_eq!(p.checksum(), 0xe89c);
        assert_eq!(p.urgent_at(), 0);
        assert_eq!(p.options(), &[0x02, 0x04, 0x05, 0xb4]);
        assert!(p.payload().is_empty());
        assert!(p.verify_checksum_v4(SRC, DST));
        assert!(!p.verify_checksum_v4(DST, SRC.to_bits().wrapping_add(1).into()));

        let p = Packet::new_checked(&DATA_SEGMENT[..]).unwrap();
        assert_eq!(p.header_len(), 20);
        assert!(p.psh() && p.ack() && !p.syn());
        assert_eq!(p.ack_number(), 0xa0b0c0d0);
        assert!(p.options().is_empty());
        assert_eq!(p.payload(), b"hello");
        assert_eq!(p.into_payload(), b"hello");
        assert!(p.verify_checksum_v4(SRC, DST));
    }

    #[test]
    fn construct() {
        let mut buf = [0xffu8; 24];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_src_port(40000);
        p.set_dst_port(80);
        p.set_seq_number(0x01020304);
        p.set_ack_number(0);
        p.set_header_len(24);
        p.set_flags(0);
        p.set_syn(true);
        p.set_window_len(64240);
        p.set_urgent_at(0);
        p.options_mut().copy_from_slice(&[0x02, 0x04, 0x05, 0xb4]);
        p.fill_checksum_v4(SRC, DST);
        assert_eq!(buf, SYN_SEGMENT);

        let mut buf = [0u8; 25];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_src_port(40000);
        p.set_dst_port(80);
        p.set_seq_number(0x01020305);
        p.set_ack_number(0xa0b0c0d0);
        p.set_header_len(20);
        p.set_psh(true);
        p.set_ack(true);
        p.set_fin(true);
        p.set_fin(false);
        p.set_rst(false);
        p.set_urg(false);
        p.set_window_len(502);
        p.payload_mut().copy_from_slice(b"hello");
        p.fill_checksum_v4(SRC, DST);
        assert_eq!(buf, DATA_SEGMENT);
    }

    #[test]
    fn checksum_v6_roundtrip() {
        let (s, d): (Ipv6Addr, Ipv6Addr) = ("2001:db8::1".parse().unwrap(), "::2".parse().unwrap());
        let mut buf = DATA_SEGMENT;
        let mut p = Packet::new_checked(&mut buf[..]).unwrap();
        p.fill_checksum_v6(s, d);
        assert!(p.verify_checksum_v6(s, d));
        assert!(!p.verify_checksum_v6(d, s.to_bits().wrapping_add(1).into()));
    }

    #[test]
    fn errors() {
        for len in 0..SYN_SEGMENT.len() {
            assert_eq!(Packet::new_checked(&SYN_SEGMENT[..len]), Err(Error::Truncated));
        }
        let mut bad = SYN_SEGMENT;
        bad[12] = 0x40;
        assert_eq!(Packet::new_checked(&bad[..]), Err(Error::Malformed));
        bad[12] = 0x00;
        assert_eq!(Packet::new_checked(&bad[..]), Err(Error::Malformed));
        bad[12] = 0x70;
        assert_eq!(Packet::new_checked(&bad[..]), Err(Error::Truncated));
        bad[12] = 0x50;
        assert_eq!(Packet::new_checked(&bad[..]).unwrap().payload().len(), 4);
    }
}
