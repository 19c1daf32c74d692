//! IPv4 (RFC 791) headers, options allowed.
//!
//! ```text
//!  0       4       8              16    19                 32
//! +-------+-------+--------------+----------------------------+
//! |version|  IHL  |  DSCP | ECN  |        total length        |
//! +-------+-------+--------------+-----+----------------------+
//! |        identification        |flags|   fragment offset    |
//! +---------------+--------------+-----+----------------------+
//! |      TTL      |   protocol   |      header checksum       |
//! +---------------+--------------+----------------------------+
//! |                    source address                         |
//! |                  destination address                      |
//! |                 options (IHL > 5) ...                     |
//! +-----------------------------------------------------------+
//! ```
//!
//! `check_len` validates version 4, IHL >= 5, header length <= buffer, total length >=
//! header length and total length <= buffer. The buffer may be longer than the total
//! length (Ethernet padding): [`Packet::payload`] stops at the total length, and
//! [`Packet::total_len`] tells the caller where to trim.

use super::checksum;
use super::{clamped, clamped_mut, Error, Field, Result};
use std::net::Ipv4Addr;

/// Length of a header without options.
pub const HEADER_LEN: usize = 20;
/// Length of the longest header (IHL 15).
pub const MAX_HEADER_LEN: usize = 60;

mod field {
    use super::Field;
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Field = 2..4;
    pub const IDENT: Field = 4..6;
    pub const FLG_OFF: Field = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Field = 10..12;
    pub const SRC_ADDR: Field = 12..16;
    pub const DST_ADDR: Field = 16..20;
}

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// A view of an IPv4 packet.
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
    #[inline(always)]
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// `Truncated` if the buffer is shorter than 20 bytes, than the IHL or than the total
    /// length; `Malformed` if the version is not 4, IHL < 5 or total length < IHL * 4.
    #[inline(always)]
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 4 {
            return Err(Error::Malformed);
        }
        let header_len = self.header_len();
        if header_len < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if header_len > len {
            return Err(Error::Truncated);
        }
        let total_len = usize::from(self.total_len());
        if total_len < header_len {
            return Err(Error::Malformed);
        }
        if total_len > len {
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

    /// IP version (4 after a successful check).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL * 4), options included.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// Differentiated services code point (6 bits).
    #[inline]
    pub fn dscp(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] >> 2
    }

    /// Explicit congestion notification (2 bits).
    #[inline]
    pub fn ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] & 0x03
    }

    /// Total length (header + payload) in bytes; the buffer may be longer (padding).
    #[inline]
    pub fn total_len(&self) -> u16 {
        self.read_u16(field::LENGTH)
    }

    /// Identification.
    #[inline]
    pub fn ident(&self) -> u16 {
        self.read_u16(field::IDENT)
    }

    /// Don't Fragment flag.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        self.read_u16(field::FLG_OFF) & FLAG_DF != 0
    }

    /// More Fragments flag.
    #[inline]
    pub fn more_frags(&self) -> bool {
        self.read_u16(field::FLG_OFF) & FLAG_MF != 0
    }

    /// Fragment offset **in bytes** (the field times 8).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (self.read_u16(field::FLG_OFF) & OFFSET_MASK) << 3
    }

    /// Whether this is a fragment (MF set or non-zero offset): only the first fragment
    /// (offset 0) carries the transport header.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.read_u16(field::FLG_OFF) & (FLAG_MF | OFFSET_MASK) != 0
    }

    /// Time to live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// Alias of [`Packet::ttl`], named as in IPv6.
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.ttl()
    }

    /// Protocol of the payload (see [`crate::packet::IpProtocol`]).
    #[inline]
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    /// Alias of [`Packet::protocol`], named as in IPv6.
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.protocol()
    }

    /// Header checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        self.read_u16(field::CHECKSUM)
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::SRC_ADDR];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::DST_ADDR];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    /// Whether the header checksum is correct.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::data(clamped(self.buffer.as_ref(), 0, self.header_len())) == !0
    }

    /// The header, options included: `[..header_len]`.
    #[inline]
    pub fn header(&self) -> &[u8] {
        clamped(self.buffer.as_ref(), 0, self.header_len())
    }

    /// The options: `[20..header_len]` (empty when IHL is 5).
    #[inline]
    pub fn options(&self) -> &[u8] {
        clamped(self.buffer.as_ref(), HEADER_LEN, self.header_len())
    }

    /// The payload: `[header_len..total_len]` (Ethernet padding excluded).
    #[inline(always)]
    pub fn payload(&self) -> &[u8] {
        clamped(self.buffer.as_ref(), self.header_len(), usize::from(self.total_len()))
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The payload, borrowed for the buffer's whole lifetime (for chaining views).
    #[inline]
    pub fn into_payload(self) -> &'a [u8] {
        let (start, end) = (self.header_len(), usize::from(self.total_len()));
        clamped(self.buffer.as_ref(), start, end)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    #[inline]
    fn write_u16(&mut self, f: Field, value: u16) {
        self.buffer.as_mut()[f].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the version (low 4 bits of `value`).
    #[inline]
    pub fn set_version(&mut self, value: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0x0f) | (value << 4);
    }

    /// Sets the header length in bytes (stored as `len / 4`, low 4 bits; 20..=60 and a
    /// multiple of 4 make sense).
    #[inline]
    pub fn set_header_len(&mut self, len: usize) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0xf0) | ((len / 4) as u8 & 0x0f);
    }

    /// Sets the DSCP (low 6 bits of `value`).
    #[inline]
    pub fn set_dscp(&mut self, value: u8) {
        let b = &mut self.buffer.as_mut()[field::DSCP_ECN];
        *b = (*b & 0x03) | (value << 2);
    }

    /// Sets the ECN (low 2 bits of `value`).
    #[inline]
    pub fn set_ecn(&mut self, value: u8) {
        let b = &mut self.buffer.as_mut()[field::DSCP_ECN];
        *b = (*b & 0xfc) | (value & 0x03);
    }

    /// Sets the total length (header and payload, in bytes); the checksum is left alone.
    #[inline]
    pub fn set_total_len(&mut self, value: u16) {
        self.write_u16(field::LENGTH, value);
    }

    /// Sets the identification field (shared by the fragments of one packet).
    #[inline]
    pub fn set_ident(&mut self, value: u16) {
        self.write_u16(field::IDENT, value);
    }

    /// Clears the flags and the fragment offset.
    #[inline]
    pub fn clear_flags(&mut self) {
        self.write_u16(field::FLG_OFF, 0);
    }

    /// Sets or clears the don't-fragment (DF) flag.
    #[inline]
    pub fn set_dont_frag(&mut self, value: bool) {
        let raw = self.read_u16(field::FLG_OFF);
        self.write_u16(field::FLG_OFF, if value { raw | FLAG_DF } else { raw & !FLAG_DF });
    }

    /// Sets or clears the more-fragments (MF) flag.
    #[inline]
    pub fn set_more_frags(&mut self, value: bool) {
        let raw = self.read_u16(field::FLG_OFF);
        self.write_u16(field::FLG_OFF, if value { raw | FLAG_MF } else { raw & !FLAG_MF });
    }

    /// Sets the fragment offset **in bytes** (stored as `value / 8`).
    #[inline]
    pub fn set_frag_offset(&mut self, value: u16) {
        let raw = self.read_u16(field::FLG_OFF);
        self.write_u16(field::FLG_OFF, (raw & !OFFSET_MASK) | (value >> 3));
    }

    /// Sets the TTL; the checksum is left alone.
    #[inline]
    pub fn set_ttl(&mut self, value: u8) {
        self.buffer.as_mut()[field::TTL] = value;
    }

    /// Alias of [`Packet::set_ttl`].
    #[inline]
    pub fn set_hop_limit(&mut self, value: u8) {
        self.set_ttl(value);
    }

    /// Sets the protocol (see [`IpProtocol`](super::IpProtocol)).
    #[inline]
    pub fn set_protocol(&mut self, value: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = value;
    }

    /// Alias of [`Packet::set_protocol`].
    #[inline]
    pub fn set_next_header(&mut self, value: u8) {
        self.set_protocol(value);
    }

    /// Sets the header checksum field; [`Packet::fill_checksum`] computes it.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        self.write_u16(field::CHECKSUM, value);
    }

    /// Sets the source address; the checksum is left alone (see
    /// [`Packet::set_src_addr_update_checksum`]).
    #[inline]
    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr.octets());
    }

    /// Sets the destination address; the checksum is left alone.
    #[inline]
    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr.octets());
    }

    /// Computes the header checksum from scratch and writes it.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let sum = checksum::data(clamped(self.buffer.as_ref(), 0, self.header_len()));
        self.set_checksum(!sum);
    }

    /// Decrements the TTL and patches the checksum incrementally (RFC 1624), giving the
    /// same checksum as [`Packet::fill_checksum`] would when the old one was correct.
    /// Returns the new TTL. A TTL of 0 is left as it is (and 0 returned): callers drop
    /// packets whose TTL is <= 1 before forwarding them.
    #[inline(always)]
    pub fn decrement_ttl_update_checksum(&mut self) -> u8 {
        let ttl = self.ttl();
        if ttl == 0 {
            return 0;
        }
        self.set_ttl(ttl - 1);
        // RFC 1624 eqn. 3 with m = [ttl, protocol] and m' = [ttl - 1, protocol]: m - m' is
        // 0x0100 whatever the protocol, so ~m + m' = 0xffff - 0x0100 = 0xfeff.
        let cs = !checksum::fold(u64::from(!self.checksum()) + 0xfeff);
        self.set_checksum(cs);
        ttl - 1
    }

    /// Sets the source address and patches the checksum incrementally (NAT).
    #[inline]
    pub fn set_src_addr_update_checksum(&mut self, addr: Ipv4Addr) {
        let old = u32::from(self.src_addr());
        self.set_src_addr(addr);
        let cs = checksum::incremental_update_u32(self.checksum(), old, u32::from(addr));
        self.set_checksum(cs);
    }

    /// Sets the destination address and patches the checksum incrementally (NAT).
    #[inline]
    pub fn set_dst_addr_update_checksum(&mut self, addr: Ipv4Addr) {
        let old = u32::from(self.dst_addr());
        self.set_dst_addr(addr);
        let cs = checksum::incremental_update_u32(self.checksum(), old, u32::from(addr));
        self.set_checksum(cs);
    }

    /// The options, writable.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        clamped_mut(self.buffer.as_mut(), HEADER_LEN, end)
    }

    /// The payload (`[header_len..total_len]`), writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (start, end) = (self.header_len(), usize::from(self.total_len()));
        clamped_mut(self.buffer.as_mut(), start, end)
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

    // 10.0.0.1:49152 -> 10.0.0.2:53 UDP, 4 bytes of data, DF, TTL 64.
    static UDP_PACKET: [u8; 32] = [
        0x45, 0x00, 0x00, 0x20, 0x12, 0x34, 0x40, 0x00, 0x40, 0x11, 0x14, 0x97, 0x0a, 0x00, 0x00, 0x01, 0x0a, 0x00,
        0x00, 0x02, 0xc0, 0x00, 0x00, 0x35, 0x00, 0x0c, 0x8e, 0x00, 0xde, 0xad, 0xbe, 0xef,
    ];

    // IGMPv3 report to 224.0.0.22 with a Router Alert option (IHL 6), TTL 1.
    static OPTIONS_PACKET: [u8; 28] = [
        0x46, 0x00, 0x00, 0x1c, 0x00, 0x00, 0x40, 0x00, 0x01, 0x02, 0xfa, 0xc4, 0x0a, 0x00, 0x00, 0x01, 0xe0, 0x00,
        0x00, 0x16, 0x94, 0x04, 0x00, 0x00, 0x22, 0x00, 0xfa, 0x02,
    ];

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&UDP_PACKET[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!((p.dscp(), p.ecn()), (0, 0));
        assert_eq!(p.total_len(), 32);
        assert_eq!(p.ident(), 0x1234);
        assert!(p.dont_frag() && !p.more_frags() && !p.is_fragment());
        assert_eq!(p.frag_offset(), 0);
        assert_eq!((p.ttl(), p.hop_limit()), (64, 64));
        assert_eq!((p.protocol(), p.next_header()), (IpProtocol::UDP, IpProtocol::UDP));
        assert_eq!(p.checksum(), 0x1497);
        assert!(p.verify_checksum());
        assert_eq!(p.src_addr(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(10, 0, 0, 2));
        assert!(p.options().is_empty());
        assert_eq!(p.header(), &UDP_PACKET[..20]);
        assert_eq!(p.payload(), &UDP_PACKET[20..]);
        assert_eq!(p.into_payload(), &UDP_PACKET[20..]);
    }

    #[test]
    fn deconstruct_options() {
        let p = Packet::new_checked(&OPTIONS_PACKET[..]).unwrap();
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.options(), &[0x94, 0x04, 0x00, 0x00]);
        assert_eq!(p.payload(), &[0x22, 0x00, 0xfa, 0x02]);
        assert_eq!(p.ttl(), 1);
        assert_eq!(p.protocol(), 2);
        assert_eq!(p.ident(), 0);
        assert_eq!(p.dst_addr(), Ipv4Addr::new(224, 0, 0, 22));
        assert!(p.verify_checksum());
    }

    #[test]
    fn construct() {
        let mut buf = [0u8; 32];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_version(4);
        p.set_header_len(20);
        p.set_dscp(0);
        p.set_ecn(0);
        p.set_total_len(32);
        p.set_ident(0x1234);
        p.clear_flags();
        p.set_dont_frag(true);
        p.set_more_frags(false);
        p.set_frag_offset(0);
        p.set_ttl(64);
        p.set_protocol(IpProtocol::UDP);
        p.set_src_addr(Ipv4Addr::new(10, 0, 0, 1));
        p.set_dst_addr(Ipv4Addr::new(10, 0, 0, 2));
        p.fill_checksum();
        p.payload_mut().copy_from_slice(&UDP_PACKET[20..]);
        assert_eq!(buf, UDP_PACKET);

        let mut buf = OPTIONS_PACKET;
        let mut p = Packet::new_checked(&mut buf[..]).unwrap();
        p.options_mut().copy_from_slice(&[0x94, 0x04, 0x00, 0x00]);
        assert_eq!(buf, OPTIONS_PACKET);
    }

    #[test]
    fn field_bits() {
        let mut buf = UDP_PACKET;
        let mut p = Packet::new_checked(&mut buf[..]).unwrap();
        p.set_dscp(46);
        p.set_ecn(3);
        assert_eq!((p.dscp(), p.ecn()), (46, 3));
        p.set_ecn(1);
        assert_eq!((p.dscp(), p.ecn()), (46, 1));
        p.set_more_frags(true);
        p.set_frag_offset(1480);
        assert!(p.dont_frag() && p.more_frags() && p.is_fragment());
        assert_eq!(p.frag_offset(), 1480);
        p.set_dont_frag(false);
        p.set_more_frags(false);
        assert!(!p.dont_frag() && !p.more_frags() && p.is_fragment());
        assert_eq!(p.frag_offset(), 1480);
        p.set_frag_offset(65528);
        assert_eq!(p.frag_offset(), 65528);
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
    }

    #[test]
    fn padding_is_not_payload() {
        // Ethernet pads a 32-byte IP packet to 46 bytes.
        let mut buf = [0u8; 46];
        buf[..32].copy_from_slice(&UDP_PACKET);
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(usize::from(p.total_len()), 32);
        assert_eq!(p.payload(), &UDP_PACKET[20..]);
    }

    #[test]
    fn truncated_and_malformed() {
        for len in 0..UDP_PACKET.len() {
            assert_eq!(Packet::new_checked(&UDP_PACKET[..len]), Err(Error::Truncated), "{len}");
        }
        for len in 0..OPTIONS_PACKET.len() {
            assert_eq!(Packet::new_checked(&OPTIONS_PACKET[..len]), Err(Error::Truncated));
        }
        let check = |patch: &dyn Fn(&mut [u8; 32])| {
            let mut b = UDP_PACKET;
            patch(&mut b);
            Packet::new_checked(&b[..]).map(|_| ())
        };
        assert_eq!(check(&|b| b[0] = 0x65), Err(Error::Malformed)); // version 6
        assert_eq!(check(&|b| b[0] = 0x44), Err(Error::Malformed)); // IHL 4
        assert_eq!(check(&|b| b[0] = 0x40), Err(Error::Malformed)); // IHL 0
        assert_eq!(check(&|b| b[0] = 0x49), Err(Error::Truncated)); // IHL 9 > 32 bytes
        assert_eq!(check(&|b| b[0] = 0x48), Ok(())); // IHL 8 == total length
        assert_eq!(check(&|b| b[3] = 19), Err(Error::Malformed)); // total < header
        assert_eq!(check(&|b| b[3] = 20), Ok(())); // no payload
        assert_eq!(check(&|b| b[3] = 33), Err(Error::Truncated));
        assert_eq!(check(&|b| b[2] = 0xff), Err(Error::Truncated));
        let p = Packet::new_checked(&UDP_PACKET[..]).unwrap();
        assert!(Packet::new_checked(p.header()).is_err());
    }

    #[test]
    fn bad_checksum_detected() {
        let mut buf = UDP_PACKET;
        buf[11] ^= 1;
        assert!(!Packet::new_checked(&buf[..]).unwrap().verify_checksum());
        Packet::new_checked(&mut buf[..]).unwrap().fill_checksum();
        assert_eq!(buf, UDP_PACKET);
    }

    #[test]
    fn decrement_ttl() {
        let mut buf = UDP_PACKET;
        let mut p = Packet::new_checked(&mut buf[..]).unwrap();
        assert_eq!(p.decrement_ttl_update_checksum(), 63);
        assert!(p.verify_checksum());
        let cs = p.checksum();
        p.fill_checksum();
        assert_eq!(p.checksum(), cs);
        p.set_ttl(1);
        p.fill_checksum();
        assert_eq!(p.decrement_ttl_update_checksum(), 0);
        assert!(p.verify_checksum());
        assert_eq!(p.decrement_ttl_update_checksum(), 0);
        assert_eq!(p.ttl(), 0);
        assert!(p.verify_checksum());
    }

    #[test]
    fn nat_updates_checksum() {
        let mut buf = OPTIONS_PACKET;
        let mut p = Packet::new_checked(&mut buf[..]).unwrap();
        p.set_src_addr_update_checksum(Ipv4Addr::new(192, 168, 255, 254));
        assert!(p.verify_checksum());
        p.set_dst_addr_update_checksum(Ipv4Addr::new(0, 0, 0, 0));
        assert!(p.verify_checksum());
        let cs = p.checksum();
        p.fill_checksum();
        assert_eq!(cs, p.checksum());
    }

    /// Tiny deterministic generator (xorshift) so the property runs without extra crates.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn incremental_ttl_equals_recompute_on_random_headers() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            let mut buf = [0u8; MAX_HEADER_LEN];
            for b in buf.iter_mut() {
                *b = xorshift(&mut rng) as u8;
            }
            let ihl = 5 + (xorshift(&mut rng) % 11) as usize;
            let mut p = Packet::new_unchecked(&mut buf[..]);
            p.set_version(4);
            p.set_header_len(ihl * 4);
            p.set_total_len((ihl * 4) as u16);
            // Exercise the edges: TTL 1 and 255, protocols 0 and 255.
            match xorshift(&mut rng) % 4 {
                0 => p.set_ttl(1),
                1 => p.set_ttl(255),
                2 => p.set_protocol(if xorshift(&mut rng) & 1 == 0 { 0 } else { 255 }),
                _ => {}
            }
            if p.ttl() == 0 {
                p.set_ttl(1);
            }
            p.fill_checksum();
            assert!(p.verify_checksum());
            let before = p.ttl();
            assert_eq!(p.decrement_ttl_update_checksum(), before - 1);
            let incremental = p.checksum();
            p.fill_checksum();
            assert_eq!(incremental, p.checksum(), "header {:02x?}", &buf[..ihl * 4]);
        }
    }
}
