//! Zero-copy, checked views over packet bytes.
//!
//! One file per protocol: [`ethernet`], [`vlan`] (802.1Q tag), [`arp`], [`ipv4`], [`ipv6`]
//! (and [`ipv6ext`], the walk over its extension headers),
//! [`udp`], [`tcp`], [`icmp`] (ICMPv4), [`icmpv6`] (incl. Neighbor Discovery), [`mpls`] (one
//! label stack entry) and [`vxlan`], plus [`checksum`] for the Internet checksum.
//!
//! Every protocol offers a view `Packet<T: AsRef<[u8]>>` (`Frame` for Ethernet) that wraps a
//! buffer without copying it:
//!
//! - `new_unchecked(buffer)` wraps anything; accessors may then panic on short buffers;
//! - `new_checked(buffer)` wraps and calls `check_len()`: after it succeeds **no getter,
//!   setter, `payload()` or `options()` panics, whatever the bytes are**. Header-length
//!   fields (IPv4 IHL and total length, IPv6 payload length, UDP length, TCP data offset)
//!   are validated there, and variable-length slices are additionally clamped to the buffer
//!   so that even a setter that rewrites a length field cannot make a later call panic;
//! - getters read big-endian fields in place (`#[inline]`, no allocation);
//! - setters live in `impl<T: AsRef<[u8]> + AsMut<[u8]>>` and write in place.
//!
//! Parsing a stack is a chain of views over the previous view's payload:
//!
//! ```
//! use vrouter::packet::{ethernet, ipv4, udp, EtherType, IpProtocol};
//!
//! # fn f(bytes: &[u8]) -> vrouter::packet::Result<()> {
//! let frame = ethernet::Frame::new_checked(bytes)?;
//! if frame.ethertype() == EtherType::IPV4 {
//!     let ip = ipv4::Packet::new_checked(frame.payload())?;
//!     if ip.protocol() == IpProtocol::UDP && !ip.is_fragment() {
//!         let udp = udp::Packet::new_checked(ip.payload())?;
//!         let _ = (udp.src_port(), udp.dst_port());
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Errors are one small [`Error`] enum whose variant picks the drop reason (see
//! [`Error::drop_reason`]).

use crate::drop_reason::DropReason;
use core::fmt;

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmp;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod ipv6ext;
pub mod mpls;
pub mod tcp;
pub mod udp;
pub mod vlan;
pub mod vxlan;

#[cfg(test)]
mod proptests;

pub use arp::Packet as ArpPacket;
pub use ethernet::{EtherType, Frame as EthernetFrame, MacAddr};
pub use icmp::Packet as IcmpPacket;
pub use icmpv6::Packet as Icmpv6Packet;
pub use ipv4::Packet as Ipv4Packet;
pub use ipv6::Packet as Ipv6Packet;
pub use mpls::Packet as MplsPacket;
pub use tcp::Packet as TcpPacket;
pub use udp::Packet as UdpPacket;
pub use vlan::Packet as VlanPacket;
pub use vxlan::Packet as VxlanPacket;

/// A byte range of a fixed-size header field.
pub(crate) type Field = core::ops::Range<usize>;
/// Everything from an offset to the end of the buffer.
pub(crate) type Rest = core::ops::RangeFrom<usize>;

/// Why a buffer cannot be viewed as a packet of some protocol.
///
/// The variant, not a message, is what the data plane acts on: it selects the drop reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The buffer is shorter than the fixed header, or than a length field announces
    /// (IPv4 IHL/total length, IPv6 payload length, UDP length, TCP data offset, an NDP
    /// option length).
    Truncated,
    /// A field has a value the protocol forbids: bad IP version, IPv4 IHL < 5 or total
    /// length < header length, UDP length < 8, TCP data offset < 5, ARP hardware/protocol
    /// length not 6/4 for Ethernet/IPv4, NDP option length 0, VXLAN without the I flag.
    Malformed,
    /// Valid, but not something this vRouter handles (e.g. ARP for a hardware type other
    /// than Ethernet or a protocol other than IPv4).
    Unsupported,
}

impl Error {
    /// The default drop reason for this error: `Truncated` is a failed header pull,
    /// `Malformed` an invalid packet and `Unsupported` an invalid protocol. (ARP callers
    /// usually prefer [`DropReason::InvalidArp`] for all three.)
    #[inline]
    pub const fn drop_reason(self) -> DropReason {
        match self {
            Error::Truncated => DropReason::PullFails,
            Error::Malformed => DropReason::InvalidPacket,
            Error::Unsupported => DropReason::InvalidProtocol,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::Truncated => "truncated packet",
            Error::Malformed => "malformed packet",
            Error::Unsupported => "unsupported packet",
        })
    }
}

impl std::error::Error for Error {}

/// The result of a packet check.
pub type Result<T> = core::result::Result<T, Error>;

/// IP protocol numbers (IPv4 `protocol`, IPv6 `next_header`), as associated constants:
/// `IpProtocol::UDP`. The getters return a plain `u8` so that any value can be matched.
#[derive(Debug)]
pub enum IpProtocol {}

impl IpProtocol {
    /// IPv6 hop-by-hop options header (only valid right after the IPv6 header).
    pub const HOP_BY_HOP: u8 = 0;
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// IPv4 in IP (IP-in-IP).
    pub const IPV4: u8 = 4;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// IPv6 in IP (6in4, or IPv6-in-IPv6).
    pub const IPV6: u8 = 41;
    /// IPv6 routing header.
    pub const IPV6_ROUTE: u8 = 43;
    /// IPv6 fragment header.
    pub const IPV6_FRAG: u8 = 44;
    /// GRE.
    pub const GRE: u8 = 47;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
    /// IPv6: no next header (nothing follows).
    pub const IPV6_NO_NXT: u8 = 59;
    /// IPv6 destination options header.
    pub const IPV6_OPTS: u8 = 60;
    /// MPLS in IP (RFC 4023).
    pub const MPLS_IN_IP: u8 = 137;
}

/// `&buf[start..end]`, with both ends clamped to the buffer (never panics).
#[inline]
pub(crate) fn clamped(buf: &[u8], start: usize, end: usize) -> &[u8] {
    let end = end.min(buf.len());
    let start = start.min(end);
    &buf[start..end]
}

/// `&mut buf[start..end]`, with both ends clamped to the buffer (never panics).
#[inline]
pub(crate) fn clamped_mut(buf: &mut [u8], start: usize, end: usize) -> &mut [u8] {
    let end = end.min(buf.len());
    let start = start.min(end);
    &mut buf[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_display_and_reason() {
        assert_eq!(Error::Truncated.to_string(), "truncated packet");
        assert_eq!(Error::Malformed.to_string(), "malformed packet");
        assert_eq!(Error::Unsupported.to_string(), "unsupported packet");
        assert_eq!(Error::Truncated.drop_reason(), DropReason::PullFails);
        assert_eq!(Error::Malformed.drop_reason(), DropReason::InvalidPacket);
        assert_eq!(Error::Unsupported.drop_reason(), DropReason::InvalidProtocol);
        let e: Box<dyn std::error::Error> = Box::new(Error::Malformed);
        assert_eq!(e.to_string(), "malformed packet");
    }

    #[test]
    fn clamp_never_panics() {
        let b = [1u8, 2, 3];
        assert_eq!(clamped(&b, 1, 2), &[2]);
        assert_eq!(clamped(&b, 2, 10), &[3]);
        assert_eq!(clamped(&b, 5, 10), &[] as &[u8]);
        assert_eq!(clamped(&b, 3, 1), &[] as &[u8]);
    }
}
