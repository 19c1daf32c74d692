//! ICMPv6 (RFC 4443) messages, with the Neighbor Discovery (RFC 4861) fields the vRouter
//! answers: Neighbor Solicitation/Advertisement target and flags, and the link-layer
//! address options.
//!
//! ```text
//!  0       8      16              32
//! +-------+-------+---------------+
//! | type  | code  |   checksum    |
//! +-------+-------+---------------+
//! |  message-specific word        |   (echo ident/seq, MTU, pointer, NA flags, ...)
//! +-------------------------------+
//! |  NS/NA/Redirect: target address (16 bytes)
//! |  NDP: options (type, length in units of 8 bytes, data) ...
//! ```
//!
//! `check_len` requires the 8 bytes every ICMPv6 message has, and the fixed part of the
//! NDP messages: 8 (RS), 16 (RA), 24 (NS, NA) and 40 (Redirect) bytes. The NDP options are
//! checked when they are read ([`Packet::ndp_option_iter`], [`Packet::source_ll_addr`],
//! [`Packet::target_ll_addr`]): an option of length 0 is `Malformed`, one that runs past
//! the buffer `Truncated`. View exactly the IPv6 payload: the checksum covers the whole
//! buffer.

use super::checksum;
use super::ethernet::MacAddr;
use super::{clamped, clamped_mut, Error, Field, IpProtocol, Rest, Result};
use core::iter::FusedIterator;
use std::net::Ipv6Addr;

/// Length of the part every ICMPv6 message has (type, code, checksum, 4-byte word).
pub const HEADER_LEN: usize = 8;
/// Length of a Neighbor Solicitation/Advertisement without options.
pub const NEIGHBOR_HEADER_LEN: usize = 24;
/// Length of a link-layer address option for Ethernet.
pub const LL_ADDR_OPTION_LEN: usize = 8;

/// Destination unreachable.
pub const TYPE_DEST_UNREACHABLE: u8 = 1;
/// Packet too big (carries the MTU of the next link).
pub const TYPE_PACKET_TOO_BIG: u8 = 2;
/// Time exceeded: the vRouter sends it when it drops a packet whose hop limit runs out.
pub const TYPE_TIME_EXCEEDED: u8 = 3;
/// Parameter problem.
pub const TYPE_PARAM_PROBLEM: u8 = 4;
/// Echo request (ping6).
pub const TYPE_ECHO_REQUEST: u8 = 128;
/// Echo reply.
pub const TYPE_ECHO_REPLY: u8 = 129;
/// NDP router solicitation.
pub const TYPE_ROUTER_SOLICIT: u8 = 133;
/// NDP router advertisement.
pub const TYPE_ROUTER_ADVERT: u8 = 134;
/// NDP neighbor solicitation (answered by the vRouter's proxy ND on VM vifs).
pub const TYPE_NEIGHBOR_SOLICIT: u8 = 135;
/// NDP neighbor advertisement.
pub const TYPE_NEIGHBOR_ADVERT: u8 = 136;
/// NDP redirect.
pub const TYPE_REDIRECT: u8 = 137;

/// NDP option: source link-layer address.
pub const OPT_SOURCE_LL_ADDR: u8 = 1;
/// NDP option: target link-layer address.
pub const OPT_TARGET_LL_ADDR: u8 = 2;
/// NDP option: prefix information (router advertisements).
pub const OPT_PREFIX_INFO: u8 = 3;
/// NDP option: redirected header.
pub const OPT_REDIRECTED_HEADER: u8 = 4;
/// NDP option: MTU.
pub const OPT_MTU: u8 = 5;

const NA_ROUTER: u8 = 0x80;
const NA_SOLICITED: u8 = 0x40;
const NA_OVERRIDE: u8 = 0x20;

mod field {
    use super::{Field, Rest};
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Field = 2..4;
    pub const MSG_WORD: Field = 4..8;
    pub const ECHO_IDENT: Field = 4..6;
    pub const ECHO_SEQNO: Field = 6..8;
    pub const NA_FLAGS: usize = 4;
    pub const TARGET: Field = 8..24;
    pub const PAYLOAD: Rest = 8..;
}

/// Where the NDP options of a message of this type start, if it has any.
#[inline]
fn ndp_options_offset(msg_type: u8) -> Option<usize> {
    match msg_type {
        TYPE_ROUTER_SOLICIT => Some(8),
        TYPE_ROUTER_ADVERT => Some(16),
        TYPE_NEIGHBOR_SOLICIT | TYPE_NEIGHBOR_ADVERT => Some(NEIGHBOR_HEADER_LEN),
        TYPE_REDIRECT => Some(40),
        _ => None,
    }
}

/// A view of an ICMPv6 message.
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

    /// Wraps `buffer` and checks its length (see [`Packet::check_len`]).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// `Truncated` if the buffer is shorter than 8 bytes, or than the fixed part of an
    /// NDP message (RS 8, RA 16, NS/NA 24, Redirect 40).
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        match ndp_options_offset(self.msg_type()) {
            Some(min) if len < min => Err(Error::Truncated),
            _ => Ok(()),
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

    /// Checksum field (over the IPv6 pseudo-header and the whole message).
    #[inline]
    pub fn checksum(&self) -> u16 {
        self.read_u16(field::CHECKSUM)
    }

    /// The message-specific word at bytes 4..8 (MTU of Packet Too Big, pointer of
    /// Parameter Problem, ...).
    #[inline]
    pub fn rest_of_header(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::MSG_WORD];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// Echo identifier (meaningful for echo request/reply only).
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        self.read_u16(field::ECHO_IDENT)
    }

    /// Echo sequence number (meaningful for echo request/reply only).
    #[inline]
    pub fn echo_seq_no(&self) -> u16 {
        self.read_u16(field::ECHO_SEQNO)
    }

    /// Neighbor Advertisement Router flag (meaningful for NA only).
    #[inline]
    pub fn na_router(&self) -> bool {
        self.buffer.as_ref()[field::NA_FLAGS] & NA_ROUTER != 0
    }

    /// Neighbor Advertisement Solicited flag (meaningful for NA only).
    #[inline]
    pub fn na_solicited(&self) -> bool {
        self.buffer.as_ref()[field::NA_FLAGS] & NA_SOLICITED != 0
    }

    /// Neighbor Advertisement Override flag (meaningful for NA only).
    #[inline]
    pub fn na_override(&self) -> bool {
        self.buffer.as_ref()[field::NA_FLAGS] & NA_OVERRIDE != 0
    }

    /// The target address of a Neighbor Solicitation, Neighbor Advertisement or Redirect;
    /// `None` for other types.
    #[inline]
    pub fn target_addr(&self) -> Option<Ipv6Addr> {
        match self.msg_type() {
            TYPE_NEIGHBOR_SOLICIT | TYPE_NEIGHBOR_ADVERT | TYPE_REDIRECT => {
                let b = self.buffer.as_ref().get(field::TARGET)?;
                let mut a = [0u8; 16];
                a.copy_from_slice(b);
                Some(Ipv6Addr::from(a))
            }
            _ => None,
        }
    }

    /// The raw NDP options area (RS, RA, NS, NA, Redirect); empty for other types.
    #[inline]
    pub fn ndp_options(&self) -> &[u8] {
        let buf = self.buffer.as_ref();
        match ndp_options_offset(self.msg_type()) {
            Some(start) => clamped(buf, start, buf.len()),
            None => &[],
        }
    }

    /// Iterates over the NDP options. Yields `Err(Malformed)` for an option of length 0
    /// and `Err(Truncated)` for one running past the buffer, then stops.
    #[inline]
    pub fn ndp_option_iter(&self) -> NdpOptions<'_> {
        NdpOptions::new(self.ndp_options())
    }

    /// The source link-layer address option's address, if present. Walks (and so
    /// validates) every option: `Err` if any is malformed or truncated.
    #[inline]
    pub fn source_ll_addr(&self) -> Result<Option<MacAddr>> {
        find_ll_addr(self.ndp_options(), OPT_SOURCE_LL_ADDR)
    }

    /// The target link-layer address option's address, if present (see
    /// [`Packet::source_ll_addr`]).
    #[inline]
    pub fn target_ll_addr(&self) -> Result<Option<MacAddr>> {
        find_ll_addr(self.ndp_options(), OPT_TARGET_LL_ADDR)
    }

    /// Everything after the first 8 bytes (echo data, the invoking packet of an error,
    /// the NDP target and options, ...).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }

    /// Whether the checksum over the whole buffer is right for this IPv6 pseudo-header.
    #[inline]
    pub fn verify_checksum(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        let data = self.buffer.as_ref();
        let ph = checksum::pseudo_header_v6(src, dst, IpProtocol::ICMPV6, data.len() as u32);
        checksum::combine(&[ph, checksum::data(data).into()]) == !0
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The payload, borrowed for the buffer's whole lifetime.
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

    /// Sets the type. Changing it to an NDP type may need a longer buffer than
    /// `check_len` verified: NDP accessors then see an empty/absent field, never panic.
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

    /// Writes the 4-byte message word (bytes 4..8) at once, e.g. the MTU of a packet too big.
    #[inline]
    pub fn set_rest_of_header(&mut self, value: u32) {
        self.buffer.as_mut()[field::MSG_WORD].copy_from_slice(&value.to_be_bytes());
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

    /// Writes the Neighbor Advertisement flags and clears the reserved bits (bytes 4..8).
    #[inline]
    pub fn set_na_flags(&mut self, router: bool, solicited: bool, override_: bool) {
        let mut flags = 0u8;
        if router {
            flags |= NA_ROUTER;
        }
        if solicited {
            flags |= NA_SOLICITED;
        }
        if override_ {
            flags |= NA_OVERRIDE;
        }
        self.set_rest_of_header(u32::from(flags) << 24);
    }

    /// Writes the target address (bytes 8..24). `Truncated` (and nothing written) if the
    /// buffer is shorter than 24 bytes.
    #[inline]
    pub fn set_target_addr(&mut self, addr: Ipv6Addr) -> Result<()> {
        match self.buffer.as_mut().get_mut(field::TARGET) {
            Some(b) => {
                b.copy_from_slice(&addr.octets());
                Ok(())
            }
            None => Err(Error::Truncated),
        }
    }

    /// The NDP options area, writable (empty for non-NDP types). Write options with
    /// [`write_ll_addr_option`].
    #[inline]
    pub fn ndp_options_mut(&mut self) -> &mut [u8] {
        let start = ndp_options_offset(self.msg_type());
        let buf = self.buffer.as_mut();
        let end = buf.len();
        match start {
            Some(start) => clamped_mut(buf, start, end),
            None => &mut [],
        }
    }

    /// The payload (after the first 8 bytes), writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }

    /// Computes and writes the checksum over the whole buffer (IPv6 pseudo-header).
    #[inline]
    pub fn fill_checksum(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        self.set_checksum(0);
        let data = self.buffer.as_ref();
        let ph = checksum::pseudo_header_v6(src, dst, IpProtocol::ICMPV6, data.len() as u32);
        let cs = !checksum::combine(&[ph, checksum::data(data).into()]);
        self.set_checksum(cs);
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// One NDP option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NdpOption<'a> {
    /// Option type (`OPT_*`).
    pub kind: u8,
    /// The option after its type and length bytes (`length * 8 - 2` bytes).
    pub data: &'a [u8],
}

impl NdpOption<'_> {
    /// The link-layer address of a source/target link-layer address option (its first 6
    /// data bytes: Ethernet); `None` for other kinds.
    #[inline]
    pub fn ll_addr(&self) -> Option<MacAddr> {
        match self.kind {
            OPT_SOURCE_LL_ADDR | OPT_TARGET_LL_ADDR => {
                let b = self.data.get(..6)?;
                let mut a = [0u8; 6];
                a.copy_from_slice(b);
                Some(a)
            }
            _ => None,
        }
    }
}

/// Iterator over NDP options (see [`Packet::ndp_option_iter`]).
#[derive(Debug, Clone)]
pub struct NdpOptions<'a> {
    rest: &'a [u8],
}

impl<'a> NdpOptions<'a> {
    /// Iterates over the options in `options` (an NDP options area).
    #[inline]
    pub fn new(options: &'a [u8]) -> NdpOptions<'a> {
        NdpOptions { rest: options }
    }
}

impl<'a> Iterator for NdpOptions<'a> {
    type Item = Result<NdpOption<'a>>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.rest;
        if rest.is_empty() {
            return None;
        }
        self.rest = &[];
        if rest.len() < 2 {
            return Some(Err(Error::Truncated));
        }
        let len = usize::from(rest[1]) * 8;
        if len == 0 {
            return Some(Err(Error::Malformed));
        }
        if len > rest.len() {
            return Some(Err(Error::Truncated));
        }
        self.rest = &rest[len..];
        Some(Ok(NdpOption { kind: rest[0], data: &rest[2..len] }))
    }
}

impl FusedIterator for NdpOptions<'_> {}

/// The address of the first link-layer address option of `kind` in `options`, after
/// validating every option.
#[inline]
fn find_ll_addr(options: &[u8], kind: u8) -> Result<Option<MacAddr>> {
    let mut found = None;
    for opt in NdpOptions::new(options) {
        let opt = opt?;
        if found.is_none() && opt.kind == kind {
            found = opt.ll_addr();
        }
    }
    Ok(found)
}

/// Writes an Ethernet link-layer address option (`kind` is [`OPT_SOURCE_LL_ADDR`] or
/// [`OPT_TARGET_LL_ADDR`]) at the start of `buf` and returns its length (8). `Truncated`
/// (and nothing written) if `buf` is shorter than 8 bytes.
#[inline]
pub fn write_ll_addr_option(buf: &mut [u8], kind: u8, addr: MacAddr) -> Result<usize> {
    let opt = buf.get_mut(..LL_ADDR_OPTION_LEN).ok_or(Error::Truncated)?;
    opt[0] = kind;
    opt[1] = 1;
    opt[2..].copy_from_slice(&addr);
    Ok(LL_ADDR_OPTION_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::ipv6;

    // Neighbor Solicitation from fe80::5054:ff:fe12:3456 (52:54:00:12:34:56) to the
    // solicited-node group ff02::1:ff00:2 for target 2001:db8::2, hop limit 255.
    static NS_PACKET: [u8; 72] = [
        0x60, 0x00, 0x00, 0x00, 0x00, 0x20, 0x3a, 0xff, 0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x50, 0x54,
        0x00, 0xff, 0xfe, 0x12, 0x34, 0x56, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
        0xff, 0x00, 0x00, 0x02, 0x87, 0x00, 0x42, 0xe8, 0x00, 0x00, 0x00, 0x00, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x01, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56,
    ];

    // The solicited Neighbor Advertisement answering it from 02:00:00:00:00:99 (S and O
    // set, target link-layer address option).
    static NA_PACKET: [u8; 72] = [
        0x60, 0x00, 0x00, 0x00, 0x00, 0x20, 0x3a, 0xff, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x50, 0x54, 0x00, 0xff,
        0xfe, 0x12, 0x34, 0x56, 0x88, 0x00, 0x35, 0x57, 0x60, 0x00, 0x00, 0x00, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x99,
    ];

    const MY_MAC: MacAddr = [0x02, 0, 0, 0, 0, 0x99];

    fn v6(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn deconstruct_ns() {
        let ip = ipv6::Packet::new_checked(&NS_PACKET[..]).unwrap();
        assert_eq!(ip.next_header(), IpProtocol::ICMPV6);
        assert_eq!(ip.hop_limit(), 255);
        let p = Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(p.msg_type(), TYPE_NEIGHBOR_SOLICIT);
        assert_eq!(p.msg_code(), 0);
        assert_eq!(p.checksum(), 0x42e8);
        assert!(p.verify_checksum(ip.src_addr(), ip.dst_addr()));
        assert!(!p.verify_checksum(ip.dst_addr(), v6("::1")));
        assert_eq!(p.target_addr(), Some(v6("2001:db8::2")));
        assert_eq!(p.source_ll_addr(), Ok(Some([0x52, 0x54, 0x00, 0x12, 0x34, 0x56])));
        assert_eq!(p.target_ll_addr(), Ok(None));
        assert_eq!(p.ndp_options(), &NS_PACKET[64..]);
        let opts: Vec<_> = p.ndp_option_iter().collect();
        assert_eq!(opts.len(), 1);
        assert_eq!(opts[0], Ok(NdpOption { kind: OPT_SOURCE_LL_ADDR, data: &NS_PACKET[66..] }));
        assert_eq!(p.payload().len(), 24);
    }

    #[test]
    fn deconstruct_na() {
        let ip = ipv6::Packet::new_checked(&NA_PACKET[..]).unwrap();
        let p = Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(p.msg_type(), TYPE_NEIGHBOR_ADVERT);
        assert!(!p.na_router() && p.na_solicited() && p.na_override());
        assert_eq!(p.target_addr(), Some(v6("2001:db8::2")));
        assert_eq!(p.target_ll_addr(), Ok(Some(MY_MAC)));
        assert_eq!(p.source_ll_addr(), Ok(None));
        assert!(p.verify_checksum(ip.src_addr(), ip.dst_addr()));
    }

    /// What a proxy-NDP responder does: turn the NS into the NA in place.
    #[test]
    fn construct_na_from_ns() {
        let mut buf = NS_PACKET;
        let mut ip = ipv6::Packet::new_checked(&mut buf[..]).unwrap();
        let (asker, target) = {
            let icmp = Packet::new_checked(ip.payload()).unwrap();
            (ip.src_addr(), icmp.target_addr().unwrap())
        };
        ip.set_src_addr(target);
        ip.set_dst_addr(asker);
        ip.set_hop_limit(255);
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let mut icmp = Packet::new_checked(ip.payload_mut()).unwrap();
        icmp.set_msg_type(TYPE_NEIGHBOR_ADVERT);
        icmp.set_msg_code(0);
        icmp.set_na_flags(false, true, true);
        icmp.set_target_addr(target).unwrap();
        let n = write_ll_addr_option(icmp.ndp_options_mut(), OPT_TARGET_LL_ADDR, MY_MAC);
        assert_eq!(n, Ok(8));
        icmp.fill_checksum(src, dst);
        assert_eq!(buf, NA_PACKET);
    }

    #[test]
    fn construct_echo() {
        let mut buf = [0u8; 12];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_msg_type(TYPE_ECHO_REQUEST);
        p.set_msg_code(0);
        p.set_echo_ident(0x1234);
        p.set_echo_seq_no(7);
        p.payload_mut().copy_from_slice(b"ping");
        let (s, d) = (v6("2001:db8::1"), v6("2001:db8::2"));
        p.fill_checksum(s, d);
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert!(p.verify_checksum(s, d));
        assert_eq!((p.echo_ident(), p.echo_seq_no()), (0x1234, 7));
        assert_eq!(p.rest_of_header(), 0x1234_0007);
        assert_eq!(p.target_addr(), None);
        assert!(p.ndp_options().is_empty());
        assert_eq!(p.source_ll_addr(), Ok(None));
        assert_eq!(p.payload(), b"ping");
    }

    #[test]
    fn lengths() {
        let icmp = &NS_PACKET[40..];
        for len in 0..NEIGHBOR_HEADER_LEN {
            assert_eq!(Packet::new_checked(&icmp[..len]), Err(Error::Truncated), "{len}");
        }
        // The NS without its option is fine.
        let p = Packet::new_checked(&icmp[..24]).unwrap();
        assert_eq!(p.source_ll_addr(), Ok(None));
        // Option cut short.
        for len in 25..32 {
            let p = Packet::new_checked(&icmp[..len]).unwrap();
            assert_eq!(p.source_ll_addr(), Err(Error::Truncated), "{len}");
            assert_eq!(p.ndp_option_iter().last(), Some(Err(Error::Truncated)));
        }
        // Option length 0.
        let mut bad = [0u8; 32];
        bad.copy_from_slice(icmp);
        bad[25] = 0;
        let p = Packet::new_checked(&bad[..]).unwrap();
        assert_eq!(p.source_ll_addr(), Err(Error::Malformed));
        let mut it = p.ndp_option_iter();
        assert_eq!(it.next(), Some(Err(Error::Malformed)));
        assert_eq!(it.next(), None);
        // Option length 2 with only 8 bytes there.
        bad[25] = 2;
        assert_eq!(Packet::new_checked(&bad[..]).unwrap().source_ll_addr(), Err(Error::Truncated));
        // Other minimum lengths.
        let mut rs = [0u8; 16];
        rs[0] = TYPE_ROUTER_ADVERT;
        assert_eq!(Packet::new_checked(&rs[..15]), Err(Error::Truncated));
        assert!(Packet::new_checked(&rs[..]).is_ok());
        rs[0] = TYPE_REDIRECT;
        assert_eq!(Packet::new_checked(&rs[..]), Err(Error::Truncated));
        rs[0] = TYPE_ROUTER_SOLICIT;
        assert!(Packet::new_checked(&rs[..8]).is_ok());
        rs[0] = TYPE_ECHO_REPLY;
        assert!(Packet::new_checked(&rs[..8]).is_ok());
        assert_eq!(Packet::new_checked(&rs[..7]), Err(Error::Truncated));
    }

    #[test]
    fn option_walk_validates_all() {
        // A valid target option followed by a zero-length one.
        let mut opts = [0u8; 16];
        write_ll_addr_option(&mut opts, OPT_TARGET_LL_ADDR, MY_MAC).unwrap();
        assert_eq!(find_ll_addr(&opts[..8], OPT_TARGET_LL_ADDR), Ok(Some(MY_MAC)));
        assert_eq!(find_ll_addr(&opts, OPT_TARGET_LL_ADDR), Err(Error::Malformed));
        // Two options: a 16-byte unknown one, then a source link-layer address.
        let mut opts = [0u8; 24];
        opts[0] = OPT_MTU;
        opts[1] = 2;
        write_ll_addr_option(&mut opts[16..], OPT_SOURCE_LL_ADDR, MY_MAC).unwrap();
        let all: Vec<_> = NdpOptions::new(&opts).map(|o| o.unwrap().kind).collect();
        assert_eq!(all, [OPT_MTU, OPT_SOURCE_LL_ADDR]);
        assert_eq!(find_ll_addr(&opts, OPT_SOURCE_LL_ADDR), Ok(Some(MY_MAC)));
        assert_eq!(NdpOption { kind: OPT_MTU, data: &opts[2..16] }.ll_addr(), None);
        assert_eq!(write_ll_addr_option(&mut [0u8; 7], 1, MY_MAC), Err(Error::Truncated));
        assert_eq!(NdpOptions::new(&[1]).next(), Some(Err(Error::Truncated)));
    }

    #[test]
    fn setters_on_short_buffers_do_not_panic() {
        let mut buf = [TYPE_ECHO_REQUEST, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let mut p = Packet::new_checked(&mut buf[..]).unwrap();
        assert_eq!(p.set_target_addr(v6("::1")), Err(Error::Truncated));
        p.set_msg_type(TYPE_REDIRECT);
        assert_eq!(p.target_addr(), None);
        assert_eq!(p.ndp_options(), &[] as &[u8]);
        assert!(p.ndp_options_mut().is_empty());
        assert_eq!(p.source_ll_addr(), Ok(None));
        p.set_msg_type(TYPE_ROUTER_SOLICIT);
        assert_eq!(p.ndp_options().len(), 2);
        assert_eq!(p.source_ll_addr(), Err(Error::Malformed)); // [0, 0]: length 0
        p.ndp_options_mut()[1] = 1;
        assert_eq!(p.source_ll_addr(), Err(Error::Truncated));
    }
}
