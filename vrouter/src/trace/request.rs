//! Trace requests: what to trace (a condition), where (a scope), how much (a limit), and
//! whether it is enabled. Requests are kept by [`super::TraceControl`], persisted as JSON in
//! `<run_dir>/trace-requests.json` (written to a temporary file, then renamed) and compiled
//! into [`Matcher`]s for the data plane.
//!
//! The JSON shape follows the flow tracing API (`condition`, `limit`, `enabled`,
//! `creationTimestampMs`), with the condition spelled out as fields.

use serde::{Deserialize, Serialize};
use std::net::IpAddr;

pub use vrouter_abi::trace::uuid::{format_uuid, new_uuid, parse_uuid};

/// A bad request: names the field and says what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {msg}")]
pub struct FieldError {
    /// The request field, e.g. `condition.src_ip` or `scope.vif`.
    pub field: &'static str,
    /// What is wrong with it.
    pub msg: String,
}

pub(crate) fn bad(field: &'static str, msg: impl Into<String>) -> FieldError {
    FieldError { field, msg: msg.into() }
}

/// The packet fields a request matches on; absent fields match anything. Addresses may be
/// prefixes (`10.1.0.0/16`); MACs are `aa:bb:cc:dd:ee:ff`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// Source MAC (`aa:bb:cc:dd:ee:ff`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_mac: Option<String>,
    /// Destination MAC (`aa:bb:cc:dd:ee:ff`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_mac: Option<String>,
    /// EtherType of the frame (after any VLAN tag), e.g. 0x0800 or 0x86dd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ethertype: Option<u16>,
    /// Source IP address or prefix (`10.1.0.0/16`, `fd00::/64`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_ip: Option<String>,
    /// Destination IP address or prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_ip: Option<String>,
    /// IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<u8>,
    /// TCP or UDP source port (needs `protocol` 6 or 17).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_port: Option<u16>,
    /// TCP or UDP destination port (needs `protocol` 6 or 17).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_port: Option<u16>,
    /// The vif the packet entered on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_vif: Option<u16>,
    /// VRF of the packet (of the ingress vif, or of the decapsulated packet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vrf: Option<u32>,
}

/// Where a request applies: packets entering one vif, the vifs of one virtual network, or
/// every packet of the vRouter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Scope {
    /// Every packet of the vRouter (the default).
    #[default]
    Vrouter,
    /// Packets entering one vif.
    Vif {
        /// The vif id; it must exist.
        vif: u16,
    },
    /// Packets entering the vifs of one virtual network.
    Vn {
        /// The VN name (vif `vn_name`); some vif must be in it.
        vn: String,
    },
}

/// How much a request traces before it stops matching new packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Limit {
    /// The first N matching packets.
    Packets(u32),
    /// The first N matching flows, each up to [`PACKETS_PER_TRACED_FLOW`] packets.
    Flows(u32),
}

/// Packets recorded per traced flow under a flow limit.
pub const PACKETS_PER_TRACED_FLOW: u32 = 1000;
/// Largest limit accepted.
pub const MAX_LIMIT: u32 = 1_000_000;

impl Default for Limit {
    fn default() -> Limit {
        Limit::Packets(10)
    }
}

/// A trace request as stored and shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceRequest {
    /// The request's UUID, assigned when it is created.
    pub id: String,
    /// Which packets it matches; empty matches every packet in scope.
    #[serde(default)]
    pub condition: Condition,
    /// Which ingress vifs it applies to; default the whole vRouter.
    #[serde(default)]
    pub scope: Scope,
    /// How much it traces; default the first 10 packets.
    #[serde(default)]
    pub limit: Limit,
    /// Whether the data plane matches packets against it now.
    #[serde(default)]
    pub enabled: bool,
    /// Creation time, ms since the Unix epoch (`creationTimestampMs`).
    #[serde(rename = "creationTimestampMs")]
    pub created_ms: u64,
    /// The tenant (project) that created it; `None` for the operator's own requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
}

/// An IP prefix of a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    /// The address as 16 bytes (IPv4 as `::ffff:a.b.c.d`).
    addr: u128,
    /// Prefix length over the 128-bit form.
    len: u8,
}

impl Prefix {
    /// Parses `addr` or `addr/len` (IPv4 or IPv6); `field` names the field in the error.
    pub fn parse(field: &'static str, s: &str) -> Result<Prefix, FieldError> {
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let ip: IpAddr = a.trim().parse().map_err(|_| bad(field, format!("{s:?} is not an IP address or prefix")))?;
        let (max, addr) = match ip {
            IpAddr::V4(v) => (32u8, u128::from(v.to_ipv6_mapped())),
            IpAddr::V6(v) => (128u8, u128::from(v)),
        };
        let len = match l {
            None => max,
            Some(l) => match l.trim().parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(bad(field, format!("prefix length in {s:?} must be 0..={max}"))),
            },
        };
        let len = len + (128 - max);
        let p = Prefix { addr: addr & mask(len), len };
        Ok(p)
    }

    /// Whether `addr` (the 128-bit form, see [`addr128`]) is in the prefix.
    #[inline]
    pub fn contains(&self, addr: u128) -> bool {
        addr & mask(self.len) == self.addr
    }
}

#[inline]
fn mask(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len))
    }
}

/// The 128-bit form of an address (IPv4 mapped).
#[inline]
pub fn addr128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v) => u128::from(v.to_ipv6_mapped()),
        IpAddr::V6(v) => u128::from(v),
    }
}

/// Parses a MAC written `aa:bb:cc:dd:ee:ff`; `field` names the field in the error.
pub fn parse_mac(field: &'static str, s: &str) -> Result<[u8; 6], FieldError> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return Err(bad(field, format!("{s:?} is not a MAC address (aa:bb:cc:dd:ee:ff)")));
    }
    let mut m = [0u8; 6];
    for (o, p) in m.iter_mut().zip(parts) {
        *o = u8::from_str_radix(p, 16)
            .map_err(|_| bad(field, format!("{s:?} is not a MAC address (aa:bb:cc:dd:ee:ff)")))?;
    }
    Ok(m)
}

/// What the data plane knows of a packet when it matches it against requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PacketFields {
    /// Source MAC of the frame.
    pub src_mac: [u8; 6],
    /// Destination MAC of the frame.
    pub dst_mac: [u8; 6],
    /// EtherType of the frame (after any VLAN tag).
    pub ethertype: u16,
    /// IP fields (None for non-IP frames).
    pub ip: Option<IpFields>,
    /// The vif the packet entered on.
    pub ingress_vif: u16,
    /// VRF of the ingress vif, or of the decapsulated packet.
    pub vrf: u32,
}

/// The IP part of [`PacketFields`]: addresses in the 128-bit form ([`addr128`]), protocol and
/// ports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IpFields {
    /// Source address (IPv4 mapped).
    pub src: u128,
    /// Destination address (IPv4 mapped).
    pub dst: u128,
    /// IP protocol (IPv6: the fixed header's next header).
    pub proto: u8,
    /// TCP/UDP source port; 0 for other protocols and for IPv4 fragments.
    pub sport: u16,
    /// TCP/UDP destination port; 0 for other protocols and for IPv4 fragments.
    pub dport: u16,
}

/// A compiled condition and scope (no allocation, no strings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matcher {
    src_mac: Option<[u8; 6]>,
    dst_mac: Option<[u8; 6]>,
    ethertype: Option<u16>,
    src_ip: Option<Prefix>,
    dst_ip: Option<Prefix>,
    protocol: Option<u8>,
    src_port: Option<u16>,
    dst_port: Option<u16>,
    ingress_vif: Option<u16>,
    vrf: Option<u32>,
    /// Scope as the set of ingress vifs (None: the whole vRouter).
    scope_vifs: Option<Vec<u16>>,
    /// The header part of the condition as masked compares over plain IPv4 frames (None:
    /// the condition never holds for an IPv4 frame).
    quick_v4: Option<QuickV4>,
    /// `quick_v4` over the flow key of an IPv4 packet instead of its frame (None: no IPv4
    /// frame matches, or the condition names a MAC, which the key does not hold).
    quick_key: Option<QuickKey>,
}

/// Bytes of a frame [`QuickV4`] compares: Ethernet (14), a 20-byte IPv4 header, the ports.
const QUICK_LEN: usize = 40;

/// A condition's header fields as one masked compare over the first 40 bytes of an untagged
/// IPv4 frame with a 20-byte header ([`v4_words`]): MACs, protocol, addresses under their
/// prefix masks, and with a port condition the ports and a zero fragment offset/MF. Five
/// 64-bit AND/XOR per request instead of a field-by-field walk, for the per-packet test of
/// a burst while a request is enabled. It never rejects a frame the full match accepts
/// (the full match reads ports 0 from a TCP/UDP header cut short by the IPv4 total length,
/// which this test, like [`Matcher::quick_reject`], reads from the frame).
///
/// Per packet only the words the condition names are read and compared ([`Self::accepts_header`]:
/// `udp dst port 9` is two words, the protocol's and the ports'), so a request that matches
/// nothing costs a few instructions per packet of the burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuickV4 {
    mask: [u64; QUICK_LEN / 8],
    value: [u64; QUICK_LEN / 8],
    /// The words with a non-zero mask: `n` of them, at word offsets `at`, compacted into
    /// `cmask` / `cvalue`.
    n: usize,
    at: [usize; QUICK_LEN / 8],
    cmask: [u64; QUICK_LEN / 8],
    cvalue: [u64; QUICK_LEN / 8],
}

impl QuickV4 {
    /// Whether a frame with these words (from [`v4_words`]) may match.
    #[inline(always)]
    pub fn accepts(&self, w: &[u64; QUICK_LEN / 8]) -> bool {
        let mut diff = 0;
        for ((w, m), v) in w.iter().zip(&self.mask).zip(&self.value) {
            diff |= (w & m) ^ v;
        }
        diff == 0
    }

    /// How many header words the condition names (see [`Self::word`]).
    #[inline(always)]
    pub fn words(&self) -> usize {
        self.n
    }

    /// The masked difference of the `i`-th named word of `h` (0: that word matches).
    #[inline(always)]
    pub fn word(&self, h: &[u8; QUICK_LEN], i: usize) -> u64 {
        let i = i.min(QUICK_LEN / 8 - 1);
        let at = self.at[i].min(QUICK_LEN / 8 - 1) * 8;
        let mut b = [0u8; 8];
        b.copy_from_slice(&h[at..at + 8]);
        (u64::from_ne_bytes(b) & self.cmask[i]) ^ self.cvalue[i]
    }

    /// [`Self::accepts`] reading only the words the condition names from the header bytes
    /// of a plain IPv4 frame (from [`v4_header`]).
    #[inline(always)]
    pub fn accepts_header(&self, h: &[u8; QUICK_LEN]) -> bool {
        let word = |i: usize| self.word(h, i);
        // Unrolled for the usual one to three words (a protocol and a port: two).
        let diff = match self.n {
            0 => 0,
            1 => word(0),
            2 => word(0) | word(1),
            3 => word(0) | word(1) | word(2),
            n => (0..n.min(QUICK_LEN / 8)).fold(0, |d, i| d | word(i)),
        };
        diff == 0
    }
}

/// The first [`QUICK_LEN`] bytes of `frame` if it is an untagged IPv4 frame with a 20-byte
/// header and at least that long (what [`QuickV4::accepts_header`] reads; None: use
/// [`Matcher::quick_reject`]).
#[inline(always)]
pub fn v4_header(frame: &[u8]) -> Option<&[u8; QUICK_LEN]> {
    let h = frame.first_chunk::<QUICK_LEN>()?;
    (u32::from_be_bytes([h[12], h[13], h[14], 0]) == 0x0800_4500).then_some(h)
}

/// The words [`QuickV4`] compares, if `frame` is an untagged IPv4 frame with a 20-byte
/// header and at least 40 bytes (None: use [`Matcher::quick_reject`]).
#[inline(always)]
pub fn v4_words(frame: &[u8]) -> Option<[u64; QUICK_LEN / 8]> {
    let h = frame.get(..QUICK_LEN)?;
    if h[12] != 0x08 || h[13] != 0x00 || h[14] != 0x45 {
        return None;
    }
    let mut w = [0u64; QUICK_LEN / 8];
    for (w, c) in w.iter_mut().zip(h.chunks_exact(8)) {
        *w = u64::from_ne_bytes(<[u8; 8]>::try_from(c).unwrap_or_default());
    }
    Some(w)
}

/// [`QuickV4`] over the flow key the burst pre-pass computes for an IPv4 packet (the six
/// words of `flow_table::FlowKey`, see `FlowKey::as_words`) instead of the frame's bytes:
/// protocol, addresses under their prefix masks and ports are key fields, so a burst whose
/// keys are computed anyway is filtered without reading its frames again (no mbuf data
/// pointer, no Ethernet/IPv4 check per packet). Only for conditions without a MAC.
///
/// Contract (held by `quick_key_agrees_with_quick_v4`): on the key of a keyed IPv4 packet
/// (not a fragment, not an ICMP error: the pre-pass keys those out of line) it never
/// rejects a packet the full match accepts, whatever its IPv4 options (the key holds the
/// ports where they are, not at byte 34), and for TCP and UDP it accepts exactly what
/// [`QuickV4::accepts_header`] accepts. The key's VRF word and family byte are not
/// compared: the VRF is the burst's, a keyed IPv4 packet's family is IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuickKey {
    /// Masks and values of key words 0 (family, protocol, source port), 1 (destination
    /// port), 2 (source address) and 4 (destination address); words 3 and 5 are zero in
    /// an IPv4 key.
    mask: [u64; 4],
    value: [u64; 4],
}

/// Byte offsets in the flow key (`flow_table::FlowKey`'s layout, const-asserted there).
const KEY_LEN: usize = 48;
const KEY_PROTO: usize = 5;
const KEY_SPORT: usize = 6;
const KEY_DPORT: usize = 8;
const KEY_SRC: usize = 16;
const KEY_DST: usize = 32;

impl QuickKey {
    /// Whether the IPv4 packet with this flow key may match (see the type's contract).
    #[inline(always)]
    pub fn accepts(&self, w: &[u64; KEY_LEN / 8]) -> bool {
        let (m, v) = (&self.mask, &self.value);
        (((w[0] & m[0]) ^ v[0]) | ((w[1] & m[1]) ^ v[1]) | ((w[2] & m[2]) ^ v[2]) | ((w[4] & m[3]) ^ v[3])) == 0
    }

    /// The condition names no address: [`Self::accepts_ports`] decides.
    #[inline]
    pub fn ports_only(&self) -> bool {
        self.mask[2] | self.mask[3] == 0
    }

    /// [`Self::accepts`] for a condition that names no address ([`Self::ports_only`]):
    /// the two words of the protocol and the ports.
    #[inline(always)]
    pub fn accepts_ports(&self, w: &[u64; KEY_LEN / 8]) -> bool {
        let (m, v) = (&self.mask, &self.value);
        (((w[0] & m[0]) ^ v[0]) | ((w[1] & m[1]) ^ v[1])) == 0
    }

    /// The key form of a [`QuickV4`]'s bytes; None when it compares a MAC.
    fn from_frame_bytes(mask: &[u8; QUICK_LEN], value: &[u8; QUICK_LEN]) -> Option<QuickKey> {
        if mask[..12].iter().any(|&b| b != 0) {
            return None;
        }
        let (mut km, mut kv) = ([0u8; KEY_LEN], [0u8; KEY_LEN]);
        let mut put = |key_at: usize, m: &[u8], v: &[u8]| {
            km[key_at..key_at + m.len()].copy_from_slice(m);
            kv[key_at..key_at + v.len()].copy_from_slice(v);
        };
        put(KEY_PROTO, &mask[23..24], &value[23..24]);
        put(KEY_SRC, &mask[26..30], &value[26..30]);
        put(KEY_DST, &mask[30..34], &value[30..34]);
        // Ports are big-endian on the wire, native-endian in the key.
        let port = |b: &[u8; QUICK_LEN], at: usize| u16::from_be_bytes([b[at], b[at + 1]]).to_ne_bytes();
        put(KEY_SPORT, &port(mask, 34), &port(value, 34));
        put(KEY_DPORT, &port(mask, 36), &port(value, 36));
        // Bytes 20-21 (no fragment with a port condition) hold for every keyed packet.
        let word = |b: &[u8; KEY_LEN], i: usize| {
            u64::from_ne_bytes(<[u8; 8]>::try_from(&b[i * 8..i * 8 + 8]).unwrap_or_default())
        };
        let words = [0, 1, 2, 4];
        Some(QuickKey { mask: words.map(|i| word(&km, i)), value: words.map(|i| word(&kv, i)) })
    }
}

/// Builds a [`QuickV4`] byte by byte.
struct QuickBuilder {
    mask: [u8; QUICK_LEN],
    value: [u8; QUICK_LEN],
}

impl QuickBuilder {
    fn set(&mut self, at: usize, mask: &[u8], value: &[u8]) {
        for (i, (m, v)) in mask.iter().zip(value).enumerate() {
            self.mask[at + i] = *m;
            self.value[at + i] = v & m;
        }
    }

    /// An address condition on the IPv4 address at `at`; false if it never holds for one.
    fn prefix(&mut self, at: usize, p: &Prefix) -> bool {
        const V4_MAPPED: u128 = 0xffff << 32;
        let m = mask(p.len);
        let low = u128::from(u32::MAX);
        if V4_MAPPED & m & !low != p.addr & !low {
            return false;
        }
        self.set(at, &((m & low) as u32).to_be_bytes(), &((p.addr & low) as u32).to_be_bytes());
        true
    }

    fn build(self) -> (QuickV4, Option<QuickKey>) {
        let key = QuickKey::from_frame_bytes(&self.mask, &self.value);
        let word = |b: &[u8; QUICK_LEN], i: usize| {
            u64::from_ne_bytes(<[u8; 8]>::try_from(&b[i * 8..i * 8 + 8]).unwrap_or_default())
        };
        let mask: [u64; QUICK_LEN / 8] = std::array::from_fn(|i| word(&self.mask, i));
        let value: [u64; QUICK_LEN / 8] = std::array::from_fn(|i| word(&self.value, i));
        let mut q = QuickV4 { mask, value, n: 0, at: [0; QUICK_LEN / 8], cmask: [0; 5], cvalue: [0; 5] };
        for i in (0..QUICK_LEN / 8).filter(|&i| mask[i] != 0) {
            q.at[q.n] = i;
            q.cmask[q.n] = mask[i];
            q.cvalue[q.n] = value[i];
            q.n += 1;
        }
        (q, key)
    }
}

impl Matcher {
    /// Compiles a request; `vn_vifs` gives the vifs of a VN (for a VN scope) and `vif_exists`
    /// checks vif ids.
    pub fn compile(
        req: &TraceRequest,
        vif_exists: impl Fn(u16) -> bool,
        vn_vifs: impl Fn(&str) -> Vec<u16>,
    ) -> Result<Matcher, FieldError> {
        let c = &req.condition;
        let src_mac = c.src_mac.as_deref().map(|s| parse_mac("src_mac", s)).transpose()?;
        let dst_mac = c.dst_mac.as_deref().map(|s| parse_mac("dst_mac", s)).transpose()?;
        let src_ip = c.src_ip.as_deref().map(|s| Prefix::parse("src_ip", s)).transpose()?;
        let dst_ip = c.dst_ip.as_deref().map(|s| Prefix::parse("dst_ip", s)).transpose()?;
        if let Some(v) = c.ingress_vif {
            if !vif_exists(v) {
                return Err(bad("ingress_vif", format!("vif {v} does not exist")));
            }
        }
        if (c.src_port.is_some() || c.dst_port.is_some()) && !matches!(c.protocol, None | Some(6) | Some(17)) {
            return Err(bad("protocol", "ports only match TCP (6) or UDP (17)"));
        }
        let scope_vifs = match &req.scope {
            Scope::Vrouter => None,
            Scope::Vif { vif } => {
                if !vif_exists(*vif) {
                    return Err(bad("scope.vif", format!("vif {vif} does not exist")));
                }
                Some(vec![*vif])
            }
            Scope::Vn { vn } => {
                let v = vn_vifs(vn);
                if v.is_empty() {
                    return Err(bad("scope.vn", format!("no vif is in virtual network {vn:?}")));
                }
                Some(v)
            }
        };
        match req.limit {
            Limit::Packets(n) | Limit::Flows(n) if n == 0 || n > MAX_LIMIT => {
                return Err(bad("limit", format!("{n} is out of range (1..={MAX_LIMIT})")));
            }
            _ => {}
        }
        let mut m = Matcher {
            src_mac,
            dst_mac,
            ethertype: c.ethertype,
            src_ip,
            dst_ip,
            protocol: c.protocol,
            src_port: c.src_port,
            dst_port: c.dst_port,
            ingress_vif: c.ingress_vif,
            vrf: c.vrf,
            scope_vifs,
            quick_v4: None,
            quick_key: None,
        };
        let quick = m.compile_quick_v4();
        m.quick_v4 = quick.map(|(q, _)| q);
        m.quick_key = quick.and_then(|(_, k)| k);
        Ok(m)
    }

    fn compile_quick_v4(&self) -> Option<(QuickV4, Option<QuickKey>)> {
        if self.ethertype.is_some_and(|e| e != 0x0800) {
            return None;
        }
        let mut q = QuickBuilder { mask: [0; QUICK_LEN], value: [0; QUICK_LEN] };
        if let Some(mac) = self.dst_mac {
            q.set(0, &[0xff; 6], &mac);
        }
        if let Some(mac) = self.src_mac {
            q.set(6, &[0xff; 6], &mac);
        }
        if let Some(p) = self.protocol {
            q.set(23, &[0xff], &[p]);
        }
        if let Some(p) = &self.src_ip {
            if !q.prefix(26, p) {
                return None;
            }
        }
        if let Some(p) = &self.dst_ip {
            if !q.prefix(30, p) {
                return None;
            }
        }
        if self.src_port.is_some() || self.dst_port.is_some() {
            // A fragment has no ports (the first one's are not read either).
            q.set(20, &[0x3f, 0xff], &[0, 0]);
        }
        if let Some(port) = self.src_port {
            q.set(34, &[0xff; 2], &port.to_be_bytes());
        }
        if let Some(port) = self.dst_port {
            q.set(36, &[0xff; 2], &port.to_be_bytes());
        }
        Some(q.build())
    }

    /// The condition as masked compares over plain IPv4 frames (see [`QuickV4`]); None when
    /// no IPv4 frame can match.
    #[inline]
    pub fn quick_v4(&self) -> Option<&QuickV4> {
        self.quick_v4.as_ref()
    }

    /// [`Self::quick_v4`] over an IPv4 packet's flow key (see [`QuickKey`]); None when no
    /// IPv4 frame can match or the condition names a MAC.
    #[inline]
    pub fn quick_key(&self) -> Option<&QuickKey> {
        self.quick_key.as_ref()
    }

    /// Whether a packet entering `vif` can match at all (checked once per burst).
    #[inline]
    pub fn may_match_vif(&self, vif: u16) -> bool {
        self.ingress_vif.is_none_or(|v| v == vif) && self.scope_vifs.as_ref().is_none_or(|s| s.contains(&vif))
    }

    /// True when the Ethernet frame `frame` entering `vif` certainly does not match, read
    /// straight from the header bytes (no parse); false means "run [`Matcher::matches`]".
    /// For frames entering a vif where they are not tunnelled (not fabric decap).
    #[inline]
    pub fn quick_reject(&self, vif: u16, frame: &[u8]) -> bool {
        if !self.may_match_vif(vif) {
            return true;
        }
        if frame.len() < 34 {
            return false;
        }
        let et = u16::from_be_bytes([frame[12], frame[13]]);
        if self.ethertype.is_some_and(|e| e != et) {
            return true;
        }
        if et != 0x0800 || frame[14] >> 4 != 4 {
            return false;
        }
        let proto = frame[23];
        if self.protocol.is_some_and(|p| p != proto) {
            return true;
        }
        let v4 = |o: usize| {
            u128::from(0xffffu32) << 32
                | u128::from(u32::from_be_bytes([frame[o], frame[o + 1], frame[o + 2], frame[o + 3]]))
        };
        if self.src_ip.is_some_and(|x| !x.contains(v4(26))) || self.dst_ip.is_some_and(|x| !x.contains(v4(30))) {
            return true;
        }
        if self.src_port.is_none() && self.dst_port.is_none() {
            return false;
        }
        let fragment = u16::from_be_bytes([frame[20], frame[21]]) & 0x3fff != 0;
        let l4 = 14 + usize::from(frame[14] & 0xf) * 4;
        let (sport, dport) = match frame.get(l4..l4 + 4) {
            Some(p) if !fragment && (proto == 6 || proto == 17) => {
                (u16::from_be_bytes([p[0], p[1]]), u16::from_be_bytes([p[2], p[3]]))
            }
            // Not decidable here (short or odd header): the full match decides.
            Some(_) if !fragment && (proto == 6 || proto == 17) => return false,
            None if !fragment && (proto == 6 || proto == 17) => return false,
            // No ports: a port condition cannot match.
            _ => return true,
        };
        self.src_port.is_some_and(|x| x != sport) || self.dst_port.is_some_and(|x| x != dport)
    }

    /// Whether a packet is in the request's scope and satisfies its condition.
    #[inline]
    pub fn matches(&self, p: &PacketFields) -> bool {
        self.may_match_vif(p.ingress_vif) && self.matches_headers(p)
    }

    /// Whether a packet whose trace was continued here from another vRouter (it came in
    /// with a trace mark, so no request matched it here) is one this request asks about:
    /// the condition holds for it as it entered (`p`, the decapsulated packet on the fabric
    /// vif), and the vif it was headed to (`to_vif`) is in the scope. Decides which
    /// requests a continued trace is shown under (see [`super::control`]). A MAC condition
    /// never holds: the inner MACs of a continued packet are not recorded.
    pub fn matches_continued(&self, p: &PacketFields, to_vif: Option<u16>) -> bool {
        if self.src_mac.is_some() || self.dst_mac.is_some() || self.ingress_vif.is_some_and(|v| v != p.ingress_vif) {
            return false;
        }
        let in_scope = match &self.scope_vifs {
            None => true,
            Some(s) => to_vif.is_some_and(|v| s.contains(&v)),
        };
        in_scope && self.matches_headers(p)
    }

    #[inline]
    fn matches_headers(&self, p: &PacketFields) -> bool {
        if self.src_mac.is_some_and(|m| m != p.src_mac)
            || self.dst_mac.is_some_and(|m| m != p.dst_mac)
            || self.ethertype.is_some_and(|e| e != p.ethertype)
            || self.vrf.is_some_and(|v| v != p.vrf)
        {
            return false;
        }
        let needs_ip = self.src_ip.is_some()
            || self.dst_ip.is_some()
            || self.protocol.is_some()
            || self.src_port.is_some()
            || self.dst_port.is_some();
        if !needs_ip {
            return true;
        }
        let Some(ip) = p.ip else { return false };
        let ports = ip.proto == 6 || ip.proto == 17;
        !(self.src_ip.is_some_and(|x| !x.contains(ip.src))
            || self.dst_ip.is_some_and(|x| !x.contains(ip.dst))
            || self.protocol.is_some_and(|x| x != ip.proto)
            || self.src_port.is_some_and(|x| !ports || x != ip.sport)
            || self.dst_port.is_some_and(|x| !ports || x != ip.dport))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(c: Condition) -> TraceRequest {
        TraceRequest {
            id: new_uuid(),
            condition: c,
            scope: Scope::Vrouter,
            limit: Limit::Packets(5),
            enabled: true,
            created_ms: 1,
            project: None,
        }
    }

    fn pkt(src: &str, dst: &str, proto: u8, sport: u16, dport: u16) -> PacketFields {
        PacketFields {
            ethertype: 0x0800,
            ip: Some(IpFields {
                src: addr128(src.parse().unwrap()),
                dst: addr128(dst.parse().unwrap()),
                proto,
                sport,
                dport,
            }),
            ingress_vif: 1,
            vrf: 1,
            ..Default::default()
        }
    }

    #[test]
    fn prefixes_ports_and_protocol() {
        let c = Condition {
            src_ip: Some("192.168.1.0/24".into()),
            dst_ip: Some("192.168.1.4".into()),
            protocol: Some(17),
            dst_port: Some(80),
            ..Default::default()
        };
        let m = Matcher::compile(&req(c), |_| true, |_| vec![]).unwrap();
        assert!(m.matches(&pkt("192.168.1.3", "192.168.1.4", 17, 1000, 80)));
        assert!(!m.matches(&pkt("192.168.2.3", "192.168.1.4", 17, 1000, 80)));
        assert!(!m.matches(&pkt("192.168.1.3", "192.168.1.5", 17, 1000, 80)));
        assert!(!m.matches(&pkt("192.168.1.3", "192.168.1.4", 6, 1000, 80)));
        assert!(!m.matches(&pkt("192.168.1.3", "192.168.1.4", 17, 1000, 81)));
        let mut non_ip = pkt("192.168.1.3", "192.168.1.4", 17, 1000, 80);
        non_ip.ip = None;
        assert!(!m.matches(&non_ip));
        let v6 = Condition { dst_ip: Some("fd00:1::/64".into()), ..Default::default() };
        let m6 = Matcher::compile(&req(v6), |_| true, |_| vec![]).unwrap();
        assert!(m6.matches(&pkt("fd00:1::3", "fd00:1::4", 17, 1, 2)));
        assert!(!m6.matches(&pkt("fd00:1::3", "fd00:2::4", 17, 1, 2)));
        // An IPv4 prefix never matches an IPv6 address.
        let any4 = Condition { dst_ip: Some("0.0.0.0/0".into()), ..Default::default() };
        let m4 = Matcher::compile(&req(any4), |_| true, |_| vec![]).unwrap();
        assert!(!m4.matches(&pkt("fd00:1::3", "fd00:1::4", 17, 1, 2)));
        assert!(m4.matches(&pkt("1.2.3.4", "5.6.7.8", 17, 1, 2)));
    }

    #[test]
    fn scope_and_macs() {
        let mut r = req(Condition { src_mac: Some("02:00:00:00:01:03".into()), ..Default::default() });
        r.scope = Scope::Vn { vn: "vn1".into() };
        let m = Matcher::compile(&r, |_| true, |vn| if vn == "vn1" { vec![1, 2] } else { vec![] }).unwrap();
        let mut p = pkt("1.1.1.1", "2.2.2.2", 17, 1, 2);
        p.src_mac = [2, 0, 0, 0, 1, 3];
        assert!(m.matches(&p));
        assert!(m.may_match_vif(2) && !m.may_match_vif(0));
        p.ingress_vif = 0;
        assert!(!m.matches(&p));
        p.ingress_vif = 2;
        p.src_mac[5] = 4;
        assert!(!m.matches(&p));
    }

    #[test]
    fn errors_name_the_field() {
        let e = |c: Condition| Matcher::compile(&req(c), |v| v < 3, |_| vec![]).unwrap_err();
        assert_eq!(e(Condition { src_ip: Some("10.0.0.300".into()), ..Default::default() }).field, "src_ip");
        assert_eq!(e(Condition { dst_ip: Some("10.0.0.0/33".into()), ..Default::default() }).field, "dst_ip");
        assert_eq!(e(Condition { src_mac: Some("02:00".into()), ..Default::default() }).field, "src_mac");
        assert_eq!(e(Condition { ingress_vif: Some(7), ..Default::default() }).field, "ingress_vif");
        assert_eq!(e(Condition { protocol: Some(1), dst_port: Some(8), ..Default::default() }).field, "protocol");
        let mut r = req(Condition::default());
        r.limit = Limit::Packets(0);
        assert_eq!(Matcher::compile(&r, |_| true, |_| vec![]).unwrap_err().field, "limit");
        r.limit = Limit::Flows(1);
        r.scope = Scope::Vn { vn: "nope".into() };
        assert_eq!(Matcher::compile(&r, |_| true, |_| vec![]).unwrap_err().field, "scope.vn");
    }

    /// Test frames for the matchers.
    #[cfg(feature = "trace")]
    mod frames {
        pub fn test_vif() -> crate::fib::Vif {
            crate::fib::Vif {
                id: 1,
                name: "v".into(),
                kind: crate::config::VifType::Virtual,
                device: "d".into(),
                mac: [0; 6],
                ip: None,
                ip6: None,
                vrf: 1,
                rx_queues: 1,
                mtu: 1500,
                proxy_arp: false,
                vn_name: None,
                source_check: false,
                vm_mac: None,
                pairs_v4: Box::new([]),
                pairs_v6: Box::new([]),
                pair_macs: Box::new([]),
            }
        }

        #[derive(Debug, Clone, Copy)]
        pub struct Hdr {
            pub dst_mac: [u8; 6],
            pub src_mac: [u8; 6],
            pub proto: u8,
            pub frag: u16,
            pub src: [u8; 4],
            pub dst: [u8; 4],
            pub sport: u16,
            pub dport: u16,
            pub payload: u16,
        }

        /// An untagged IPv4 frame with a 20-byte header and `payload` bytes after it.
        pub fn frame(h: &Hdr) -> Vec<u8> {
            let mut f = vec![0u8; 14 + 20 + usize::from(h.payload)];
            f[0..6].copy_from_slice(&h.dst_mac);
            f[6..12].copy_from_slice(&h.src_mac);
            f[12] = 0x08;
            f[14] = 0x45;
            f[16..18].copy_from_slice(&(20 + h.payload).to_be_bytes());
            f[20..22].copy_from_slice(&h.frag.to_be_bytes());
            f[22] = 64;
            f[23] = h.proto;
            f[26..30].copy_from_slice(&h.src);
            f[30..34].copy_from_slice(&h.dst);
            f[34..36].copy_from_slice(&h.sport.to_be_bytes());
            f[36..38].copy_from_slice(&h.dport.to_be_bytes());
            f
        }
    }

    /// `quick_reject` never rejects a frame `matches` accepts, and rejects the plain misses.
    #[cfg(feature = "trace")]
    #[test]
    fn quick_reject_agrees_with_matches() {
        use frames::*;
        let base = Hdr {
            dst_mac: [0; 6],
            src_mac: [0; 6],
            proto: 17,
            frag: 0,
            src: [0; 4],
            dst: [192, 168, 1, 4],
            sport: 0,
            dport: 0,
            payload: 8,
        };
        let vif = test_vif();
        let conds = [
            Condition { dst_port: Some(80), protocol: Some(17), ..Default::default() },
            Condition { src_ip: Some("10.0.0.0/8".into()), ..Default::default() },
            Condition { dst_ip: Some("192.168.1.4".into()), src_port: Some(7), ..Default::default() },
            Condition { ethertype: Some(0x86dd), ..Default::default() },
            Condition { ingress_vif: Some(2), ..Default::default() },
        ];
        let mut rejected = 0;
        for c in conds {
            let m = Matcher::compile(&req(c), |_| true, |_| vec![]).unwrap();
            for (sp, dp, proto, src, frag) in [
                (7, 80, 17, [10, 1, 2, 3], 0),
                (7, 81, 17, [10, 1, 2, 3], 0),
                (7, 80, 6, [11, 1, 2, 3], 0),
                (8, 80, 17, [10, 1, 2, 3], 0x2000),
                (7, 80, 1, [10, 1, 2, 3], 0),
            ] {
                let f = frame(&Hdr { sport: sp, dport: dp, proto, src, frag, ..base });
                let full = crate::trace::dp::fields_for_test(&vif, &f).unwrap();
                if m.quick_reject(1, &f) {
                    rejected += 1;
                    assert!(!m.matches(&full), "{m:?} rejected a matching frame {sp} {dp} {proto} {src:?} {frag:#x}");
                }
            }
        }
        assert!(rejected >= 15, "quick_reject should decide the plain misses ({rejected})");
    }

    /// The masked IPv4 filter never rejects a frame the full match accepts, and decides the
    /// plain misses: conditions built from the frame's own fields (each kept, dropped or
    /// changed at random) against frames with random headers.
    #[cfg(feature = "trace")]
    mod quick_v4 {
        use super::frames::*;
        use super::*;
        use proptest::prelude::*;

        fn hdr() -> impl Strategy<Value = Hdr> {
            (
                (any::<[u8; 6]>(), any::<[u8; 6]>()),
                prop_oneof![Just(6u8), Just(17u8), Just(1u8), any::<u8>()],
                prop_oneof![3 => Just(0u16), 1 => Just(0x2000u16), 1 => Just(0x4000u16), 1 => any::<u16>()],
                (any::<[u8; 4]>(), any::<[u8; 4]>()),
                (prop_oneof![Just(53u16), any::<u16>()], prop_oneof![Just(80u16), any::<u16>()]),
                // A UDP/TCP header's first 4 bytes are always inside the packet.
                6u16..64,
            )
                .prop_map(|((dst_mac, src_mac), proto, frag, (src, dst), (sport, dport), payload)| Hdr {
                    dst_mac,
                    src_mac,
                    proto,
                    frag,
                    src,
                    dst,
                    sport,
                    dport,
                    payload,
                })
        }

        /// `p[i]` for field `i`: 0 no condition, 1 the frame's value, 2 another value.
        fn cond(h: &Hdr, p: &[u8; 9], len: (u8, u8), other: &Hdr) -> Condition {
            let mac = |m: [u8; 6]| m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
            fn sel<T>(pick: u8, mine: T, theirs: T) -> Option<T> {
                match pick {
                    1 => Some(mine),
                    2 => Some(theirs),
                    _ => None,
                }
            }
            let ip = |a: [u8; 4], l: u8| format!("{}/{}", std::net::Ipv4Addr::from(a), l);
            let ports = h.proto == 6 || h.proto == 17;
            Condition {
                dst_mac: sel(p[0], mac(h.dst_mac), mac(other.dst_mac)),
                src_mac: sel(p[1], mac(h.src_mac), mac(other.src_mac)),
                ethertype: sel(p[2], 0x0800, 0x86dd),
                protocol: sel(p[3], h.proto, other.proto).filter(|_| p[7] == 0 && p[8] == 0 || ports),
                src_ip: sel(p[4], ip(h.src, len.0), ip(other.src, len.0)),
                dst_ip: sel(p[5], ip(h.dst, len.1), if p[6] == 2 { "fd00::1".into() } else { ip(other.dst, len.1) }),
                src_port: sel(p[7], h.sport, other.sport),
                dst_port: sel(p[8], h.dport, other.dport),
                ..Default::default()
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]
            #[test]
            fn never_rejects_a_match(h in hdr(), other in hdr(), p in any::<[u8; 9]>().prop_map(|a| a.map(|x| x % 3)), len in (0u8..=32, 0u8..=32)) {
                let c = cond(&h, &p, len, &other);
                let m = match Matcher::compile(&req(c), |_| true, |_| vec![]) {
                    Ok(m) => m,
                    Err(_) => return Ok(()),
                };
                let f = frame(&h);
                let full = crate::trace::dp::fields_for_test(&test_vif(), &f).unwrap();
                let w = v4_words(&f).unwrap();
                let accepts = m.quick_v4().is_some_and(|q| q.accepts(&w));
                let hb = v4_header(&f).unwrap();
                prop_assert_eq!(m.quick_v4().is_some_and(|q| q.accepts_header(hb)), accepts);
                if m.matches(&full) {
                    prop_assert!(accepts, "{m:?} rejected a matching frame {h:?}");
                }
                // As precise as quick_reject for TCP and UDP (for other protocols a port
                // condition without a protocol compares the bytes where ports would be, and
                // the full match decides what passes).
                if (h.proto == 6 || h.proto == 17) && m.quick_reject(1, &f) {
                    prop_assert!(!accepts, "quick_reject decided a miss that the mask accepted: {m:?} {h:?}");
                }
            }
        }

        /// `frame` with `n` 4-byte words of IPv4 options (IHL 5 + n) before the payload.
        fn with_options(f: &[u8], n: usize) -> Vec<u8> {
            let mut g = f[..34].to_vec();
            g[14] = 0x45 + n as u8;
            let total = u16::from_be_bytes([g[16], g[17]]) + 4 * n as u16;
            g[16..18].copy_from_slice(&total.to_be_bytes());
            g.extend(std::iter::repeat_n(1u8, 4 * n));
            g.extend_from_slice(&f[34..]);
            g
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]
            /// QuickKey's contract: on the flow key of a keyed IPv4 packet (what the burst
            /// pre-pass computes: not a fragment, not an ICMP error) it accepts exactly what
            /// QuickV4 accepts on the frame for TCP and UDP, never rejects a packet the full
            /// match accepts (with or without IPv4 options), and exists unless a MAC is named.
            #[test]
            fn quick_key_agrees_with_quick_v4(h in hdr(), other in hdr(), p in any::<[u8; 9]>().prop_map(|a| a.map(|x| x % 3)), len in (0u8..=32, 0u8..=32), opts in 0usize..3) {
                let c = cond(&h, &p, len, &other);
                let m = match Matcher::compile(&req(c), |_| true, |_| vec![]) {
                    Ok(m) => m,
                    Err(_) => return Ok(()),
                };
                let f = with_options(&frame(&h), opts);
                let ip = crate::packet::ipv4::Packet::new_checked(&f[14..]).unwrap();
                if crate::pipeline::flow::needs_special_key(false, ip.protocol(), ip.is_fragment(), ip.payload()) {
                    return Ok(());
                }
                let (key, _) = crate::pipeline::flow::key_v4_tuple(7, &ip);
                let names_mac = p[0] != 0 || p[1] != 0;
                prop_assert_eq!(m.quick_key().is_some(), m.quick_v4().is_some() && !names_mac);
                let Some(q) = m.quick_key() else { return Ok(()) };
                let by_key = q.accepts(key.as_words());
                if q.ports_only() {
                    prop_assert_eq!(q.accepts_ports(key.as_words()), by_key);
                }
                let full = crate::trace::dp::fields_for_test(&test_vif(), &f).unwrap();
                if m.matches(&full) {
                    prop_assert!(by_key, "{m:?} rejected by key a matching packet {h:?} options {opts}");
                }
                if opts == 0 && (h.proto == 6 || h.proto == 17) {
                    let by_frame = m.quick_v4().is_some_and(|q| q.accepts_header(v4_header(&f).unwrap()));
                    prop_assert_eq!(by_key, by_frame, "{:?} {:?}", m, h);
                }
            }
        }

        #[test]
        fn plain_misses_and_non_ip_conditions() {
            let h = Hdr {
                dst_mac: [2; 6],
                src_mac: [4; 6],
                proto: 17,
                frag: 0,
                src: [10, 0, 0, 1],
                dst: [10, 0, 0, 2],
                sport: 1000,
                dport: 53,
                payload: 8,
            };
            let w = v4_words(&frame(&h)).unwrap();
            let q = |c: Condition| Matcher::compile(&req(c), |_| true, |_| vec![]).unwrap().quick_v4().copied();
            let yes = |c: Condition| q(c).is_some_and(|q| q.accepts(&w));
            assert!(yes(Condition::default()));
            assert!(yes(Condition { dst_port: Some(53), protocol: Some(17), ..Default::default() }));
            assert!(!yes(Condition { dst_port: Some(9), protocol: Some(17), ..Default::default() }));
            assert!(yes(Condition { src_ip: Some("10.0.0.0/8".into()), ..Default::default() }));
            assert!(!yes(Condition { src_ip: Some("11.0.0.0/8".into()), ..Default::default() }));
            assert!(yes(Condition { src_ip: Some("::/0".into()), ..Default::default() }));
            // No IPv4 frame matches an IPv6 prefix or another ethertype.
            assert!(q(Condition { dst_ip: Some("fd00::/16".into()), ..Default::default() }).is_none());
            assert!(q(Condition { ethertype: Some(0x0806), ..Default::default() }).is_none());
            // A fragment has no ports.
            let frag = Hdr { frag: 0x2000, ..h };
            let wf = v4_words(&frame(&frag)).unwrap();
            assert!(!q(Condition { dst_port: Some(53), ..Default::default() }).unwrap().accepts(&wf));
            assert!(q(Condition { protocol: Some(17), ..Default::default() }).unwrap().accepts(&wf));
            // Frames the mask does not cover.
            let mut opts = frame(&h);
            opts[14] = 0x46;
            assert!(v4_words(&opts).is_none());
            assert!(v4_words(&frame(&h)[..39]).is_none());
        }
    }

    #[test]
    fn json_shape() {
        let r = TraceRequest {
            id: "bbbbbbbb-0000-4000-8000-000000000080".into(),
            condition: Condition { dst_port: Some(80), ..Default::default() },
            scope: Scope::Vif { vif: 1 },
            limit: Limit::Flows(2),
            enabled: false,
            created_ms: 42,
            project: Some("demo".into()),
        };
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["condition"]["dst_port"], 80);
        assert_eq!(j["scope"], serde_json::json!({"type": "vif", "vif": 1}));
        assert_eq!(j["limit"], serde_json::json!({"flows": 2}));
        assert_eq!(j["creationTimestampMs"], 42);
        let back: TraceRequest = serde_json::from_value(j).unwrap();
        assert_eq!(back, r);
    }
}
