//! The trace mark of an MPLSoUDP packet: how a traced packet tells the next vRouter which
//! trace it belongs to (MidoNet's trace bit in the tunnel key, here with the trace id).
//!
//! VXLAN has room for it in reserved fields (see [`super::dp`]); an MPLS label stack entry
//! has none, so the mark is four extra label stack entries (16 bytes) pushed *above* the
//! service label, right after the UDP header:
//!
//! ```text
//! UDP | XL (15) | ESPL 240 | 0x10000 | id >> 16 | 0x10000 | id & 0xffff | service label (S=1) | IP packet
//!       S=0       S=0        S=0                   S=0
//! ```
//!
//! - Label 15 is the Extension Label (RFC 7274): the entry after it is an Extended
//!   Special-Purpose Label (ESPL), whose meaning is given by its value. 240 is the first of
//!   the ESPL values RFC 7274 reserves for experimental use (240-255), so the mark collides
//!   with no assigned special-purpose label (0-15, e.g. 7 ELI, 13 GAL) nor with any service
//!   label a vRouter allocates (16 and up).
//! - The two entries after it carry the 32-bit trace id, 16 bits each, with label bit 16 set
//!   so that neither falls in the special-purpose range 0-15 whatever the id.
//! - Above the service label, not below: the service label stays the bottom of the stack,
//!   byte for byte, with the inner IP packet right after it (whose first nibble tells IPv4
//!   from IPv6, as RFC 7510 receivers expect); a receiver meets the mark first, reads it and
//!   pops it before it looks up the service label. Below it, the service label would lose its
//!   S bit and the mark would sit where the receiver looks for the IP header.
//! - TC and TTL of the mark entries are 0 and ignored: the stack is inside UDP, no LSR
//!   between the vRouters looks at it.
//!
//! Untraced packets carry no mark and are byte-identical to before. A receiver that does not
//! know the mark drops a marked packet (an unknown special-purpose label), as RFC 3032 and
//! RFC 7274 require of it: every vRouter of a fabric where tracing crosses MPLSoUDP tunnels
//! must be of a version that strips it (this one does even when tracing is compiled out or
//! no request is enabled: the decapsulation skips the mark).

use crate::packet::mpls;

/// The Extension Label (RFC 7274).
pub const EXTENSION_LABEL: u32 = 15;
/// The ESPL that says "trace mark": the first experimental ESPL value (RFC 7274).
pub const TRACE_MARK_ESPL: u32 = 240;
/// Label bit set in the two entries that carry the trace id.
const ID_BIT: u32 = 0x1_0000;
/// Bytes of the mark: four label stack entries.
pub const MPLS_MARK_LEN: usize = 4 * mpls::HEADER_LEN;

/// The mark for trace `id`.
pub fn mpls_mark(id: u32) -> [u8; MPLS_MARK_LEN] {
    let mut m = [0u8; MPLS_MARK_LEN];
    let entries = [EXTENSION_LABEL, TRACE_MARK_ESPL, ID_BIT | id >> 16, ID_BIT | (id & 0xffff)];
    for (i, l) in entries.into_iter().enumerate() {
        m[i * 4..i * 4 + 4].copy_from_slice(&mpls::entry(l, 0, false, 0).to_be_bytes());
    }
    m
}

/// The trace id of an MPLS label stack (the UDP payload of an MPLSoUDP packet) that starts
/// with a trace mark; `None` when it does not (an ordinary stack, a short one, or another
/// special-purpose label).
#[inline]
pub fn read_mpls_mark(stack: &[u8]) -> Option<u32> {
    let e = stack.get(..MPLS_MARK_LEN)?;
    let entry = |i: usize| u32::from_be_bytes([e[i * 4], e[i * 4 + 1], e[i * 4 + 2], e[i * 4 + 3]]);
    let label = |i: usize| entry(i) >> 12;
    let bos = |i: usize| entry(i) & 0x100 != 0;
    if label(0) != EXTENSION_LABEL || label(1) != TRACE_MARK_ESPL || (0..4).any(bos) {
        return None;
    }
    let (hi, lo) = (label(2), label(3));
    if hi & !0xffff != ID_BIT || lo & !0xffff != ID_BIT {
        return None;
    }
    Some((hi & 0xffff) << 16 | (lo & 0xffff))
}

/// Inserts the mark for trace `id` between the UDP header and the label stack of an
/// MPLSoUDP frame (Ethernet, IPv4, UDP, MPLS) that has just grown by [`MPLS_MARK_LEN`] bytes
/// at the front: the headers are moved to the new front, the mark written after them, and
/// the IPv4 total length and checksum and the UDP length updated (the UDP checksum is 0,
/// as vRouters send it over IPv4, RFC 7510). False, with the frame unchanged past the
/// grown bytes, if the frame is not such a frame.
pub fn insert_mpls_mark(frame: &mut [u8], id: u32) -> bool {
    use crate::packet::{checksum, ethernet, udp};
    let g = MPLS_MARK_LEN;
    let e = ethernet::HEADER_LEN;
    let Some(&vihl) = frame.get(g + e) else { return false };
    let ihl = usize::from(vihl & 0xf) * 4;
    let hdrs = e + ihl + udp::HEADER_LEN;
    if vihl >> 4 != 4 || ihl < 20 || frame.len() < g + hdrs + mpls::HEADER_LEN {
        return false;
    }
    frame.copy_within(g..g + hdrs, 0);
    frame[hdrs..hdrs + g].copy_from_slice(&mpls_mark(id));
    let add = |b: &mut [u8]| {
        let v = u16::from_be_bytes([b[0], b[1]]).wrapping_add(g as u16);
        b.copy_from_slice(&v.to_be_bytes());
    };
    add(&mut frame[e + 2..e + 4]);
    frame[e + 10..e + 12].copy_from_slice(&[0, 0]);
    let sum = !checksum::data(&frame[e..e + ihl]);
    frame[e + 10..e + 12].copy_from_slice(&sum.to_be_bytes());
    let u = e + ihl;
    add(&mut frame[u + 4..u + 6]);
    frame[u + 6..u + 8].copy_from_slice(&[0, 0]);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_round_trip_and_stay_out_of_the_special_range() {
        for id in [1u32, 0xffff, 0x1_0000, 0x8000_0001, u32::MAX, 0x0000_000f] {
            let m = mpls_mark(id);
            assert_eq!(read_mpls_mark(&m), Some(id), "{id:#x}");
            for i in 2..4 {
                let p = mpls::Packet::new_checked(&m[i * 4..]).unwrap();
                assert!(p.label() >= mpls::FIRST_UNRESERVED_LABEL, "{id:#x}: entry {i} label {}", p.label());
                assert!(!p.bottom_of_stack());
            }
            // Followed by a service label, as on the wire.
            let mut stack = m.to_vec();
            stack.extend_from_slice(&mpls::entry(40, 0, true, 64).to_be_bytes());
            assert_eq!(read_mpls_mark(&stack), Some(id));
        }
    }

    #[test]
    fn ordinary_stacks_are_not_marks() {
        // A service label alone, short input, other special labels, a bottom-of-stack XL.
        assert_eq!(read_mpls_mark(&mpls::entry(40, 0, true, 64).to_be_bytes()), None);
        assert_eq!(read_mpls_mark(&mpls_mark(7)[..15]), None);
        let mut m = mpls_mark(7);
        m[4..8].copy_from_slice(&mpls::entry(241, 0, false, 0).to_be_bytes());
        assert_eq!(read_mpls_mark(&m), None, "another ESPL");
        let mut m = mpls_mark(7);
        m[0..4].copy_from_slice(&mpls::entry(7, 0, false, 0).to_be_bytes());
        assert_eq!(read_mpls_mark(&m), None, "entropy label indicator");
        let mut m = mpls_mark(7);
        m[12..16].copy_from_slice(&mpls::entry(7, 0, false, 0).to_be_bytes());
        assert_eq!(read_mpls_mark(&m), None, "id entry without its bit");
        let mut m = mpls_mark(7);
        m[2] |= 1;
        assert_eq!(read_mpls_mark(&m), None, "bottom of stack inside the mark");
    }

    #[test]
    fn insertion_moves_the_headers_and_fixes_lengths_and_checksum() {
        use crate::packet::{checksum, ipv4};
        // Ethernet + IPv4 + UDP(6635) + label 40 + 4 payload bytes, with 16 bytes of headroom.
        let mut f = vec![0u8; MPLS_MARK_LEN];
        let mut body = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        let ip_len: u16 = 20 + 8 + 4 + 4;
        let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 10, 0, 1, 10, 10, 0, 2];
        ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
        let c = !checksum::data(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        body.extend_from_slice(&ip);
        body.extend_from_slice(&[0xc3, 0x50, 0x19, 0xeb, 0, 16, 0, 0]);
        body.extend_from_slice(&mpls::entry(40, 0, true, 64).to_be_bytes());
        body.extend_from_slice(b"data");
        f.extend_from_slice(&body);
        assert!(insert_mpls_mark(&mut f, 0xdead_beef));
        assert_eq!(f.len(), body.len() + MPLS_MARK_LEN);
        assert_eq!(f[..14], body[..14], "Ethernet moved to the front");
        let ip = ipv4::Packet::new_checked(&f[14..]).unwrap();
        assert_eq!(ip.total_len(), ip_len + 16);
        assert!(ip.verify_checksum());
        assert_eq!(u16::from_be_bytes([f[38], f[39]]), 16 + 16, "UDP length");
        assert_eq!(read_mpls_mark(&f[42..]), Some(0xdead_beef));
        assert_eq!(f[58..], body[42..], "service label and payload untouched");
        // Not an IPv4 frame: refused.
        let mut bad = vec![0u8; 16 + 14 + 20];
        assert!(!insert_mpls_mark(&mut bad, 1));
    }
}
