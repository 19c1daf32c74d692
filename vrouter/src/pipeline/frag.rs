//! The fragment table: classifies IP fragments by their datagram's first fragment.
//!
//! Only the first fragment of a datagram carries the transport header, so only it can be
//! keyed by its real ports. Keying the others with ports 0 (or letting them match the
//! first permissive rule) lets a VM slip a denied datagram past policy. Instead, as
//! tf-vrouter does (`vr_fragment_add` / `vr_fragment_get`), the first fragment records its
//! transport protocol and ports here under its datagram's identity (IPv4: VRF, protocol,
//! source, destination, identification; IPv6: VRF, source, destination, identification, as
//! RFC 8200 has it) and every later fragment of the datagram takes them: all fragments hit
//! the same flow, get the same verdict, the same counters and the same mirror copies.
//! Nothing is reassembled.
//!
//! - A fragment that arrives before its first fragment waits in a bounded queue
//!   ([`FragTable::park`]) for at most [`FRAG_TIMEOUT_MS`]; when the first fragment comes,
//!   the waiting ones are handed back to the data plane in arrival order
//!   ([`FragTable::take_ready`]) and run again; when the time is up they drop with
//!   `No Fragment Entries`. A full queue drops with `Fragment Queueing Failures`.
//! - Each datagram's received byte ranges are kept: a fragment that overlaps one already
//!   seen (RFC 5722; the classic TCP-header overwrite of RFC 1858), ends past 65535 bytes,
//!   is not a multiple of 8 bytes without being the last, or lies past the announced end,
//!   drops with `Fragment errors`, as does a first fragment too short to hold the ports.
//!   An entry is removed when the datagram is complete, or [`FRAG_TIMEOUT_MS`] after its
//!   last fragment.
//! - At most [`FRAG_ENTRIES`] datagrams are tracked per lcore; a first fragment that finds
//!   no room (after expired entries are reclaimed) drops with `Fragment Table Full`.
//!
//! One table per forwarding lcore (single writer, no locks). Fragments of one datagram
//! must enter on one RX queue to meet on one lcore: NICs hash fragments on their addresses
//! only, and this vRouter gives every fragment of a datagram one tunnel source port (its
//! 5-tuple hash has no ports for any fragment), so the receiving vRouter's RSS keeps them
//! together. A later fragment that arrives on another lcore waits there and drops with
//! `No Fragment Entries`. The table is shared by every vif of the lcore (no per-VM quota).
//!
//! Packets are opaque handles (`usize`, mbuf addresses in the data plane), as in
//! [`super::flow::HoldStore`].

use crate::drop_reason::DropReason;
use std::collections::HashMap;

/// Datagrams tracked per lcore.
pub const FRAG_ENTRIES: usize = 1024;
/// Fragments waiting for their first fragment, per lcore.
pub const FRAG_QUEUE: usize = 256;
/// How long an entry lives after its last fragment, and how long a fragment waits for its
/// first fragment (ms).
pub const FRAG_TIMEOUT_MS: u64 = 1000;
/// Disjoint byte ranges kept per datagram (in-order fragments merge into one).
const MAX_RANGES: usize = 8;
/// Largest IP datagram: no fragment may end past it.
const MAX_DATAGRAM: u32 = 65535;

/// What identifies a datagram in a VRF: RFC 791's (source, destination, protocol,
/// identification) for IPv4 (addresses stored IPv4-mapped), RFC 8200's (source,
/// destination, identification) for IPv6 (`proto` 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FragKey {
    /// VRF the datagram was received in.
    pub vrf: u32,
    /// IP protocol for IPv4; 0 for IPv6 (not part of RFC 8200's identity).
    pub proto: u8,
    /// Source address (IPv4-mapped for IPv4).
    pub src: [u8; 16],
    /// Destination address (IPv4-mapped for IPv4).
    pub dst: [u8; 16],
    /// Identification (16 bits for IPv4, 32 for IPv6).
    pub ident: u32,
}

impl FragKey {
    /// The key of an IPv4 datagram (addresses stored IPv4-mapped).
    pub fn v4(vrf: u32, proto: u8, src: std::net::Ipv4Addr, dst: std::net::Ipv4Addr, ident: u16) -> FragKey {
        FragKey {
            vrf,
            proto,
            src: src.to_ipv6_mapped().octets(),
            dst: dst.to_ipv6_mapped().octets(),
            ident: u32::from(ident),
        }
    }

    /// The key of an IPv6 datagram (`proto` 0).
    pub fn v6(vrf: u32, src: std::net::Ipv6Addr, dst: std::net::Ipv6Addr, ident: u32) -> FragKey {
        FragKey { vrf, proto: 0, src: src.octets(), dst: dst.octets(), ident }
    }
}

/// One fragment: where its data lies in the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragPiece {
    /// Offset of the data in the datagram (bytes).
    pub offset: u32,
    /// Bytes of data (after the IP header, and for IPv6 after the fragment header).
    pub len: u32,
    /// More fragments follow.
    pub more: bool,
}

impl FragPiece {
    /// The checks that need no table: the fragment must end inside the largest datagram,
    /// and a fragment that is not the last must carry a multiple of 8 bytes.
    pub fn check(&self) -> Result<(), DropReason> {
        let end = self.offset + self.len;
        if end > MAX_DATAGRAM || (self.more && !self.len.is_multiple_of(8)) || (self.more && self.len == 0) {
            return Err(DropReason::FragmentError);
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The transport protocol and ports of the first fragment.
    proto: u8,
    sport: u16,
    dport: u16,
    expires: u64,
    /// End of the datagram, once its last fragment was seen.
    total: Option<u32>,
    n: u8,
    ranges: [(u32, u32); MAX_RANGES],
}

impl Entry {
    /// Records `[start, end)`; refuses an overlap or a range past the announced end.
    fn add(&mut self, p: &FragPiece) -> Result<(), DropReason> {
        let (start, end) = (p.offset, p.offset + p.len);
        let ranges = &self.ranges[..usize::from(self.n)];
        if ranges.iter().any(|&(a, b)| start < b && a < end) {
            return Err(DropReason::FragmentError);
        }
        match (self.total, p.more) {
            (Some(t), _) if end > t => return Err(DropReason::FragmentError),
            (Some(t), false) if end != t => return Err(DropReason::FragmentError),
            (None, false) if ranges.iter().any(|&(_, b)| b > end) => return Err(DropReason::FragmentError),
            _ => {}
        }
        // Ranges stay sorted and coalesced (in-order fragments keep one range).
        let n = usize::from(self.n);
        let at = self.ranges[..n].iter().position(|&(a, _)| a > start).unwrap_or(n);
        let joins_prev = at > 0 && self.ranges[at - 1].1 == start;
        let joins_next = at < n && self.ranges[at].0 == end;
        match (joins_prev, joins_next) {
            (true, true) => {
                self.ranges[at - 1].1 = self.ranges[at].1;
                self.ranges.copy_within(at + 1..n, at);
                self.n -= 1;
            }
            (true, false) => self.ranges[at - 1].1 = end,
            (false, true) => self.ranges[at].0 = start,
            (false, false) => {
                if n == MAX_RANGES {
                    return Err(DropReason::FragmentError);
                }
                self.ranges.copy_within(at..n, at + 1);
                self.ranges[at] = (start, end);
                self.n += 1;
            }
        }
        if !p.more {
            self.total = Some(end);
        }
        Ok(())
    }

    /// Every byte of the datagram seen (one range from 0 to the end): nothing more will come.
    fn complete(&self) -> bool {
        self.n == 1 && self.ranges[0].0 == 0 && self.total == Some(self.ranges[0].1)
    }
}

#[derive(Debug, Clone, Copy)]
struct Parked {
    key: FragKey,
    pkt: usize,
    vif: u16,
    expires: u64,
}

/// What a non-first fragment learned from the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Later {
    /// The datagram's transport protocol and ports, from its first fragment.
    Found {
        /// Transport protocol (IPv6: the upper-layer header after the extension headers).
        proto: u8,
        /// Source "port" of the flow key, from the first fragment (an ICMP echo's identifier).
        sport: u16,
        /// Destination "port" of the flow key, from the first fragment (an ICMP error's type).
        dport: u16,
    },
    /// No first fragment yet: the data plane should [`FragTable::park`] the packet.
    Wait,
}

/// One lcore's fragment table and waiting queue.
#[derive(Debug)]
pub struct FragTable {
    entries: HashMap<FragKey, Entry>,
    parked: Vec<Parked>,
    /// Parked packets whose first fragment has come, to run again (arrival order).
    ready: Vec<(usize, u16)>,
    /// The key of the last fragment told to wait and when (what [`FragTable::park`] files
    /// it under).
    waiting: Option<(FragKey, u64)>,
    capacity: usize,
    queue: usize,
    timeout_ms: u64,
    /// The earliest expiry time among entries and parked packets (a lower bound).
    next_expiry: u64,
}

impl Default for FragTable {
    fn default() -> Self {
        FragTable::new(FRAG_ENTRIES, FRAG_QUEUE, FRAG_TIMEOUT_MS)
    }
}

impl FragTable {
    /// A table for `entries` datagrams and `queue` waiting fragments, allocated up front
    /// (the per-packet path never allocates).
    pub fn new(entries: usize, queue: usize, timeout_ms: u64) -> FragTable {
        FragTable {
            entries: HashMap::with_capacity(entries),
            parked: Vec::with_capacity(queue),
            ready: Vec::with_capacity(queue),
            waiting: None,
            capacity: entries.max(1),
            queue,
            timeout_ms,
            next_expiry: u64::MAX,
        }
    }

    /// Datagrams tracked.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No datagram tracked and no fragment waiting or ready.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.parked.is_empty() && self.ready.is_empty()
    }

    /// Fragments waiting for their first fragment.
    pub fn parked(&self) -> usize {
        self.parked.len()
    }

    /// A first fragment (offset 0, more fragments follow) with its transport protocol and
    /// ports: records the datagram and moves the fragments that were waiting for it to the
    /// ready list.
    pub fn first(
        &mut self,
        key: FragKey,
        proto: u8,
        ports: (u16, u16),
        piece: FragPiece,
        now: u64,
    ) -> Result<(), DropReason> {
        piece.check()?;
        let expires = now + self.timeout_ms;
        if let Some(e) = self.entries.get_mut(&key) {
            // A second first fragment: a retransmission or an overwrite attempt; the
            // overlap check refuses both.
            e.add(&piece)?;
            e.expires = expires;
            return Ok(());
        }
        if self.entries.len() >= self.capacity {
            // Only when some entry may have expired: a full table of live entries is not
            // scanned for every first fragment.
            if now >= self.next_expiry {
                self.expire_entries(now);
                self.next_expiry = self.entries.values().map(|e| e.expires).min().unwrap_or(u64::MAX);
            }
            if self.entries.len() >= self.capacity {
                return Err(DropReason::FragTableFull);
            }
        }
        let mut e =
            Entry { proto, sport: ports.0, dport: ports.1, expires, total: None, n: 0, ranges: [(0, 0); MAX_RANGES] };
        e.add(&piece)?;
        self.entries.insert(key, e);
        self.next_expiry = self.next_expiry.min(expires);
        if !self.parked.is_empty() {
            let ready = &mut self.ready;
            self.parked.retain(|p| {
                if p.key == key {
                    ready.push((p.pkt, p.vif));
                    false
                } else {
                    true
                }
            });
        }
        Ok(())
    }

    /// A non-first fragment: the ports of its datagram, or [`Later::Wait`] when its first
    /// fragment has not been seen (the key is kept for [`FragTable::park`]).
    pub fn later(&mut self, key: FragKey, piece: FragPiece, now: u64) -> Result<Later, DropReason> {
        piece.check()?;
        let Some(e) = self.entries.get_mut(&key) else {
            self.waiting = Some((key, now));
            return Ok(Later::Wait);
        };
        if e.expires <= now {
            // Timed out: a fragment of an old datagram, or of a new one reusing its id.
            self.entries.remove(&key);
            self.waiting = Some((key, now));
            return Ok(Later::Wait);
        }
        e.add(&piece)?;
        let found = Later::Found { proto: e.proto, sport: e.sport, dport: e.dport };
        if e.complete() {
            self.entries.remove(&key);
        } else {
            e.expires = now + self.timeout_ms;
        }
        Ok(found)
    }

    /// Queues the packet whose fragment [`FragTable::later`] just told to wait, until its
    /// first fragment comes or the timeout. Err: the queue is full (or nothing was told to
    /// wait); the caller drops the packet.
    pub fn park(&mut self, pkt: usize, vif: u16) -> Result<(), DropReason> {
        let Some((key, now)) = self.waiting.take() else { return Err(DropReason::NoFragEntry) };
        if self.parked.len() >= self.queue {
            return Err(DropReason::FragmentQueueFail);
        }
        let expires = now + self.timeout_ms;
        self.parked.push(Parked { key, pkt, vif, expires });
        self.next_expiry = self.next_expiry.min(expires);
        Ok(())
    }

    /// Hands the packets whose first fragment has come (arrival order) to `out`.
    pub fn take_ready(&mut self, mut out: impl FnMut(usize, u16)) {
        for (p, v) in self.ready.drain(..) {
            out(p, v);
        }
    }

    /// Whether some parked packets are ready to run again.
    #[inline]
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Drops what has timed out: entries silently, waiting packets through `out` (the
    /// caller frees and counts them as `No Fragment Entries`). Cheap when nothing is due.
    pub fn expire(&mut self, now: u64, mut out: impl FnMut(usize, u16)) {
        if now < self.next_expiry {
            return;
        }
        self.expire_entries(now);
        self.parked.retain(|p| {
            if p.expires <= now {
                out(p.pkt, p.vif);
                false
            } else {
                true
            }
        });
        self.next_expiry = self
            .entries
            .values()
            .map(|e| e.expires)
            .chain(self.parked.iter().map(|p| p.expires))
            .min()
            .unwrap_or(u64::MAX);
    }

    /// Every waiting and ready packet, for the data plane to free at shutdown.
    pub fn drain_all(&mut self, mut out: impl FnMut(usize, u16)) {
        for p in self.parked.drain(..) {
            out(p.pkt, p.vif);
        }
        for (p, v) in self.ready.drain(..) {
            out(p, v);
        }
        self.entries.clear();
        self.waiting = None;
        self.next_expiry = u64::MAX;
    }

    fn expire_entries(&mut self, now: u64) {
        self.entries.retain(|_, e| e.expires > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn key(ident: u16) -> FragKey {
        FragKey::v4(1, 17, Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2), ident)
    }

    fn piece(offset: u32, len: u32, more: bool) -> FragPiece {
        FragPiece { offset, len, more }
    }

    #[test]
    fn in_order_fragments_take_the_first_ones_ports_and_the_entry_goes_when_complete() {
        let mut t = FragTable::default();
        t.first(key(1), 17, (1000, 53), piece(0, 1480, true), 0).unwrap();
        assert_eq!(t.later(key(1), piece(1480, 1480, true), 1), Ok(Later::Found { proto: 17, sport: 1000, dport: 53 }));
        assert_eq!(t.len(), 1);
        assert_eq!(t.later(key(1), piece(2960, 100, false), 2), Ok(Later::Found { proto: 17, sport: 1000, dport: 53 }));
        assert_eq!(t.len(), 0, "complete: removed");
        // Another datagram of the same flow, other id: waits.
        assert_eq!(t.later(key(2), piece(8, 8, false), 3), Ok(Later::Wait));
    }

    #[test]
    fn out_of_order_fragments_wait_and_are_released_by_the_first() {
        let mut t = FragTable::default();
        assert_eq!(t.later(key(7), piece(16, 8, false), 0), Ok(Later::Wait));
        t.park(0xa, 1).unwrap();
        assert_eq!(t.later(key(7), piece(8, 8, true), 1), Ok(Later::Wait));
        t.park(0xb, 1).unwrap();
        assert_eq!(t.later(key(8), piece(8, 8, true), 1), Ok(Later::Wait));
        t.park(0xc, 2).unwrap();
        assert!(!t.has_ready());
        t.first(key(7), 17, (5, 6), piece(0, 8, true), 2).unwrap();
        let mut out = Vec::new();
        t.take_ready(|p, v| out.push((p, v)));
        assert_eq!(out, vec![(0xa, 1), (0xb, 1)], "arrival order, only this datagram's");
        assert_eq!(t.parked(), 1);
        // Re-run: they now find the entry.
        assert_eq!(t.later(key(7), piece(16, 8, false), 3), Ok(Later::Found { proto: 17, sport: 5, dport: 6 }));
        assert_eq!(t.later(key(7), piece(8, 8, true), 3), Ok(Later::Found { proto: 17, sport: 5, dport: 6 }));
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn waiting_fragments_time_out_and_the_queue_is_bounded() {
        let mut t = FragTable::new(4, 2, 100);
        for (i, pkt) in [1usize, 2, 3].into_iter().enumerate() {
            assert_eq!(t.later(key(i as u16), piece(8, 8, false), 10), Ok(Later::Wait));
            let r = t.park(pkt, 1);
            assert_eq!(r.is_ok(), i < 2, "{i}: {r:?}");
            if i == 2 {
                assert_eq!(r, Err(DropReason::FragmentQueueFail));
            }
        }
        let mut out = Vec::new();
        t.expire(109, |p, _| out.push(p));
        assert!(out.is_empty());
        t.expire(110, |p, _| out.push(p));
        assert_eq!(out, vec![1, 2]);
        assert_eq!(t.parked(), 0);
        // Park without a preceding Wait: refused.
        assert_eq!(t.park(9, 1), Err(DropReason::NoFragEntry));
    }

    #[test]
    fn overlaps_oversize_and_bad_lengths_are_fragment_errors() {
        let mut t = FragTable::default();
        t.first(key(1), 17, (1, 2), piece(0, 16, true), 0).unwrap();
        // Overlaps the first fragment's transport header (RFC 1858).
        assert_eq!(t.later(key(1), piece(8, 16, true), 0), Err(DropReason::FragmentError));
        // Duplicate of the first fragment.
        assert_eq!(t.first(key(1), 17, (1, 2), piece(0, 16, true), 0), Err(DropReason::FragmentError));
        // Not a multiple of 8 without being last.
        assert_eq!(t.later(key(1), piece(16, 12, true), 0), Err(DropReason::FragmentError));
        // Past 65535.
        assert_eq!(t.later(key(1), piece(65528, 16, false), 0), Err(DropReason::FragmentError));
        // A last fragment, then one past its end.
        assert_eq!(t.later(key(1), piece(32, 8, false), 0), Ok(Later::Found { proto: 17, sport: 1, dport: 2 }));
        assert_eq!(t.later(key(1), piece(40, 8, true), 0), Err(DropReason::FragmentError));
        // A second, different end.
        assert_eq!(t.later(key(1), piece(16, 8, false), 0), Err(DropReason::FragmentError));
        // The hole fills: complete.
        assert_eq!(t.later(key(1), piece(16, 16, true), 0), Ok(Later::Found { proto: 17, sport: 1, dport: 2 }));
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn a_full_table_refuses_new_datagrams_until_entries_expire() {
        let mut t = FragTable::new(2, 4, 100);
        t.first(key(1), 17, (1, 1), piece(0, 8, true), 0).unwrap();
        t.first(key(2), 17, (1, 1), piece(0, 8, true), 0).unwrap();
        assert_eq!(t.first(key(3), 17, (1, 1), piece(0, 8, true), 50), Err(DropReason::FragTableFull));
        t.first(key(3), 17, (1, 1), piece(0, 8, true), 100).unwrap();
        assert_eq!(t.len(), 1);
        // An expired entry is not used: the fragment waits.
        assert_eq!(t.later(key(3), piece(8, 8, false), 300), Ok(Later::Wait));
    }
}
