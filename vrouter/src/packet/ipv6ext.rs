//! IPv6 extension headers (RFC 8200 section 4): the walk from the fixed header's next
//! header to the upper-layer (transport) header.
//!
//! ```text
//! hop-by-hop (0), routing (43), destination options (60), authentication (51):
//! +----------+-----------+------------------------------------+
//! | next hdr | hdr len   |  ... (hdr len + 1) * 8 bytes       |   AH: (hdr len + 2) * 4
//! +----------+-----------+------------------------------------+
//! fragment (44), always 8 bytes:
//! +----------+-----------+-------------------------+---+---+--+
//! | next hdr | reserved  | fragment offset (13 bit)| res |M |
//! +----------+-----------+-------------------------+------+--+
//! |                    identification (32 bit)                |
//! +-----------------------------------------------------------+
//! ```
//!
//! [`upper_layer`] walks at most [`MAX_EXT_HEADERS`] headers. It fails (`Truncated`) when
//! a header runs past the payload and (`Malformed`) when the chain is longer than the limit,
//! a hop-by-hop header is not the first one, or a second fragment header follows the first.
//! A non-first fragment ends the walk at its fragment header: what follows is fragment data,
//! not headers. Never panics, whatever the bytes.

use super::{Error, IpProtocol, Result};

/// Most extension headers walked before the upper-layer header. Real stacks send one or
/// two (hop-by-hop for MLD, a fragment header, a routing header for SRv6); a longer chain
/// only serves to push the transport header out of a middlebox's view.
pub const MAX_EXT_HEADERS: usize = 8;

/// Authentication header (RFC 4302): walked, its length counts 4-byte words.
pub const AUTH_HEADER: u8 = 51;

/// Fragment header fields (RFC 8200 section 4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment {
    /// Offset of this fragment's data in the original packet, in bytes (a multiple of 8).
    pub offset: u16,
    /// More fragments follow (M flag).
    pub more: bool,
    /// Identification shared by the fragments of one original packet.
    pub ident: u32,
    /// Offset from the start of the IPv6 payload of this fragment's data (right after the
    /// fragment header): the payload length minus it is the fragment's data length.
    pub data_offset: usize,
}

/// Where the upper-layer header is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpperLayer {
    /// The upper-layer protocol (the last next-header value of the chain).
    pub proto: u8,
    /// Offset of the upper-layer header from the start of the IPv6 payload (for a
    /// non-first fragment: of the fragment data).
    pub offset: usize,
    /// The fragment header, if the packet has one.
    pub frag: Option<Fragment>,
}

impl UpperLayer {
    /// Whether the bytes at `offset` are the upper-layer header (not a non-first fragment's
    /// data).
    #[inline]
    pub fn has_header(&self) -> bool {
        self.frag.is_none_or(|f| f.offset == 0)
    }
}

/// Whether `next_header` names an extension header [`upper_layer`] walks.
#[inline(always)]
pub const fn is_extension(next_header: u8) -> bool {
    matches!(
        next_header,
        IpProtocol::HOP_BY_HOP | IpProtocol::IPV6_ROUTE | IpProtocol::IPV6_FRAG | IpProtocol::IPV6_OPTS | AUTH_HEADER
    )
}

/// Walks the extension headers of an IPv6 payload whose first header is `first` (the fixed
/// header's next header). See the module documentation for the errors.
pub fn upper_layer(first: u8, payload: &[u8]) -> Result<UpperLayer> {
    let mut proto = first;
    let mut offset = 0usize;
    let mut frag: Option<Fragment> = None;
    for i in 0..=MAX_EXT_HEADERS {
        if !is_extension(proto) {
            return Ok(UpperLayer { proto, offset, frag });
        }
        if i == MAX_EXT_HEADERS {
            return Err(Error::Malformed);
        }
        let hdr = payload.get(offset..).unwrap_or(&[]);
        let (next, len) = match proto {
            IpProtocol::IPV6_FRAG => {
                if frag.is_some() {
                    return Err(Error::Malformed);
                }
                let Some(h) = hdr.first_chunk::<8>() else { return Err(Error::Truncated) };
                let f = Fragment {
                    offset: u16::from_be_bytes([h[2], h[3]]) & !7,
                    more: h[3] & 1 != 0,
                    ident: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
                    data_offset: offset + 8,
                };
                frag = Some(f);
                if f.offset != 0 {
                    // Fragment data follows, not headers.
                    return Ok(UpperLayer { proto: h[0], offset: offset + 8, frag });
                }
                (h[0], 8)
            }
            _ => {
                if proto == IpProtocol::HOP_BY_HOP && i != 0 {
                    return Err(Error::Malformed);
                }
                let Some(h) = hdr.first_chunk::<2>() else { return Err(Error::Truncated) };
                let len = if proto == AUTH_HEADER { (usize::from(h[1]) + 2) * 4 } else { (usize::from(h[1]) + 1) * 8 };
                (h[0], len)
            }
        };
        if hdr.len() < len {
            return Err(Error::Truncated);
        }
        proto = next;
        offset += len;
    }
    Err(Error::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(next: u8, words: u8) -> Vec<u8> {
        let mut h = vec![0u8; (usize::from(words) + 1) * 8];
        h[0] = next;
        h[1] = words;
        h
    }

    fn frag(next: u8, offset: u16, more: bool, ident: u32) -> Vec<u8> {
        let mut h = vec![next, 0];
        h.extend_from_slice(&(offset | u16::from(more)).to_be_bytes());
        h.extend_from_slice(&ident.to_be_bytes());
        h
    }

    #[test]
    fn no_extension_headers() {
        let u = upper_layer(IpProtocol::UDP, &[0u8; 8]).unwrap();
        assert_eq!(u, UpperLayer { proto: IpProtocol::UDP, offset: 0, frag: None });
        assert!(u.has_header());
        // ESP, no next header: not walked.
        assert_eq!(upper_layer(50, &[]).unwrap().proto, 50);
        assert_eq!(upper_layer(IpProtocol::IPV6_NO_NXT, &[]).unwrap().proto, IpProtocol::IPV6_NO_NXT);
    }

    #[test]
    fn every_kind_of_header_is_walked() {
        let mut p = opts(IpProtocol::IPV6_ROUTE, 0);
        p.extend(opts(IpProtocol::IPV6_OPTS, 2));
        p.extend(opts(AUTH_HEADER, 1));
        let mut ah = vec![IpProtocol::IPV6_FRAG, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        p.append(&mut ah);
        p.extend(frag(IpProtocol::TCP, 0, true, 0xdead_beef));
        let tcp_at = p.len();
        p.extend([0x12, 0x34, 0x00, 0x50]);
        let u = upper_layer(IpProtocol::HOP_BY_HOP, &p).unwrap();
        assert_eq!(u.proto, IpProtocol::TCP);
        assert_eq!(u.offset, tcp_at);
        assert_eq!(u.frag, Some(Fragment { offset: 0, more: true, ident: 0xdead_beef, data_offset: tcp_at }));
        assert!(u.has_header());
    }

    #[test]
    fn a_later_fragment_stops_at_its_fragment_header() {
        let mut p = frag(IpProtocol::UDP, 1480, false, 7);
        // Fragment data that happens to look like a hop-by-hop header: not walked.
        p.extend([0u8; 16]);
        let u = upper_layer(IpProtocol::IPV6_FRAG, &p).unwrap();
        assert_eq!(
            u,
            UpperLayer {
                proto: IpProtocol::UDP,
                offset: 8,
                frag: Some(Fragment { offset: 1480, more: false, ident: 7, data_offset: 8 })
            }
        );
        assert!(!u.has_header());
    }

    #[test]
    fn bad_chains_are_errors() {
        // Runs past the payload.
        assert_eq!(upper_layer(IpProtocol::IPV6_OPTS, &opts(IpProtocol::UDP, 1)[..12]), Err(Error::Truncated));
        assert_eq!(upper_layer(IpProtocol::IPV6_ROUTE, &[]), Err(Error::Truncated));
        assert_eq!(upper_layer(IpProtocol::IPV6_FRAG, &[17, 0, 0]), Err(Error::Truncated));
        // Hop-by-hop after another header.
        let mut p = opts(IpProtocol::HOP_BY_HOP, 0);
        p.extend(opts(IpProtocol::UDP, 0));
        assert_eq!(upper_layer(IpProtocol::IPV6_OPTS, &p), Err(Error::Malformed));
        // Two fragment headers.
        let mut p = frag(IpProtocol::IPV6_FRAG, 0, true, 1);
        p.extend(frag(IpProtocol::UDP, 0, true, 2));
        assert_eq!(upper_layer(IpProtocol::IPV6_FRAG, &p), Err(Error::Malformed));
        // The limit: MAX_EXT_HEADERS headers are walked, one more is refused.
        let chain = |n: usize| {
            let mut p = Vec::new();
            for i in 0..n {
                p.extend(opts(if i + 1 == n { IpProtocol::UDP } else { IpProtocol::IPV6_OPTS }, 0));
            }
            p
        };
        assert_eq!(upper_layer(IpProtocol::IPV6_OPTS, &chain(MAX_EXT_HEADERS)).unwrap().offset, 8 * MAX_EXT_HEADERS);
        assert_eq!(upper_layer(IpProtocol::IPV6_OPTS, &chain(MAX_EXT_HEADERS + 1)), Err(Error::Malformed));
    }

    #[test]
    fn never_panics_on_any_prefix() {
        let mut p = opts(IpProtocol::IPV6_FRAG, 3);
        p.extend(frag(IpProtocol::UDP, 0, true, 9));
        p.extend([1, 2, 3, 4]);
        for n in 0..=p.len() {
            for first in [0u8, 43, 44, 51, 60, 17] {
                let _ = upper_layer(first, &p[..n]);
            }
        }
    }
}
