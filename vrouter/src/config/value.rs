//! Value types written as strings in the configuration: MAC addresses, prefixes, policy
//! and security group addresses, protocols and port ranges.

use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// A network policy rule's `src`/`dst`: `any`, a CIDR, or `vn:<VN name>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum PolicyAddress {
    /// Any address (`any`, the default).
    #[default]
    Any,
    /// Addresses in a CIDR prefix (IPv4 or IPv6).
    Prefix(Prefix),
    /// Any address of the named VN (the VN the flow's endpoint is in).
    Vn(String),
}

/// A security group rule's `remote`: `any`, a CIDR, or `sg:<group name>` (any address of a
/// vif in that group).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum SgRemote {
    /// Any address (`any`, the default).
    #[default]
    Any,
    /// Addresses in a CIDR prefix (IPv4 or IPv6).
    Prefix(Prefix),
    /// Any address of a vif in the named security group (`sg:<name>`).
    Sg(String),
}

/// The `src`/`dst`/`remote` forms, parsed once for both address types.
enum Address {
    Any,
    Prefix(Prefix),
    Named(String),
}

fn parse_address(s: &str, tag: &str) -> Result<Address, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("any") {
        return Ok(Address::Any);
    }
    if let Some(name) = t.strip_prefix(tag) {
        return Ok(Address::Named(name.to_string()));
    }
    if t.contains('/') {
        return t.parse().map(Address::Prefix);
    }
    Err(format!(
        "invalid address {s:?}: expected \"any\", a CIDR such as \"10.0.0.0/8\" or \
         \"fd00::/64\", or \"{tag}<name>\""
    ))
}

impl std::str::FromStr for PolicyAddress {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match parse_address(s, "vn:")? {
            Address::Any => PolicyAddress::Any,
            Address::Prefix(p) => PolicyAddress::Prefix(p),
            Address::Named(n) => PolicyAddress::Vn(n),
        })
    }
}

impl std::fmt::Display for PolicyAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicyAddress::Any => f.write_str("any"),
            PolicyAddress::Prefix(p) => write!(f, "{p}"),
            PolicyAddress::Vn(n) => write!(f, "vn:{n}"),
        }
    }
}

impl std::str::FromStr for SgRemote {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match parse_address(s, "sg:")? {
            Address::Any => SgRemote::Any,
            Address::Prefix(p) => SgRemote::Prefix(p),
            Address::Named(n) => SgRemote::Sg(n),
        })
    }
}

impl std::fmt::Display for SgRemote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SgRemote::Any => f.write_str("any"),
            SgRemote::Prefix(p) => write!(f, "{p}"),
            SgRemote::Sg(n) => write!(f, "sg:{n}"),
        }
    }
}

/// An IP protocol: `any`, a name (`tcp`, `udp`, `icmp`, `icmp6`) or a number 0..=255
/// (written as a string or an integer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Protocol {
    /// Any protocol (`any`, the default).
    #[default]
    Any,
    /// One IP protocol number (IPv4 protocol / IPv6 next header), 0..=255.
    Number(u8),
}

impl Protocol {
    /// IP protocol number of ICMP (`icmp`).
    pub const ICMP: u8 = 1;
    /// IP protocol number of TCP (`tcp`).
    pub const TCP: u8 = 6;
    /// IP protocol number of UDP (`udp`).
    pub const UDP: u8 = 17;
    /// IP protocol number of ICMPv6 (`icmp6`, `ipv6-icmp`).
    pub const ICMP6: u8 = 58;

    /// Whether flows of this protocol carry ports (TCP, UDP, DCCP, SCTP, UDP-Lite): only
    /// for those do port ranges other than `any` mean something.
    pub const fn has_ports(proto: u8) -> bool {
        matches!(proto, 6 | 17 | 33 | 132 | 136)
    }
}

impl std::str::FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim().to_ascii_lowercase();
        Ok(match t.as_str() {
            "any" => Protocol::Any,
            "tcp" => Protocol::Number(Self::TCP),
            "udp" => Protocol::Number(Self::UDP),
            "icmp" => Protocol::Number(Self::ICMP),
            "icmp6" | "ipv6-icmp" => Protocol::Number(Self::ICMP6),
            _ => match t.parse::<u32>() {
                Ok(n) => {
                    Protocol::Number(u8::try_from(n).map_err(|_| format!("protocol {n} is out of range 0..=255"))?)
                }
                Err(_) => {
                    return Err(format!("invalid protocol {s:?}: expected any, tcp, udp, icmp, icmp6 or 0..=255"))
                }
            },
        })
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Protocol::Any => f.write_str("any"),
            Protocol::Number(Self::TCP) => f.write_str("tcp"),
            Protocol::Number(Self::UDP) => f.write_str("udp"),
            Protocol::Number(Self::ICMP) => f.write_str("icmp"),
            Protocol::Number(Self::ICMP6) => f.write_str("icmp6"),
            Protocol::Number(n) => write!(f, "{n}"),
        }
    }
}

/// An inclusive port range: `any` (0-65535), `80`, or `1000-2000` (a string, or an
/// integer for one port). `lo > hi` parses, and is rejected by validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    /// First port of the range (inclusive).
    pub lo: u16,
    /// Last port of the range (inclusive).
    pub hi: u16,
}

impl PortRange {
    /// Every port, 0-65535 (written `any`; the default).
    pub const ANY: PortRange = PortRange { lo: 0, hi: u16::MAX };

    /// Whether the range is every port (`any`), i.e. matches without looking at ports.
    pub const fn is_any(self) -> bool {
        self.lo == 0 && self.hi == u16::MAX
    }

    /// Whether `port` is in `lo..=hi`.
    pub const fn contains(self, port: u16) -> bool {
        self.lo <= port && port <= self.hi
    }
}

impl Default for PortRange {
    fn default() -> Self {
        PortRange::ANY
    }
}

impl std::str::FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("any") {
            return Ok(PortRange::ANY);
        }
        let port = |p: &str| {
            p.trim().parse::<u16>().map_err(|_| {
                format!("invalid port range {s:?}: expected any, a port (80) or a range (1000-2000) of ports 0..=65535")
            })
        };
        match t.split_once('-') {
            Some((lo, hi)) => Ok(PortRange { lo: port(lo)?, hi: port(hi)? }),
            None => {
                let p = port(t)?;
                Ok(PortRange { lo: p, hi: p })
            }
        }
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_any() {
            f.write_str("any")
        } else if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

/// Serialize as the string form; deserialize from it (and, with `$int`, from an integer).
macro_rules! string_serde {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any(StrOrInt::<$t>(std::marker::PhantomData))
            }
        }
    };
}

/// Visitor taking a string (parsed with `FromStr`) or a non-negative integer (parsed from
/// its decimal text: a port or a protocol number).
struct StrOrInt<T>(std::marker::PhantomData<T>);

impl<T> serde::de::Visitor<'_> for StrOrInt<T>
where
    T: std::str::FromStr<Err = String>,
{
    type Value = T;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
        v.parse().map_err(E::custom)
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<T, E> {
        v.to_string().parse().map_err(E::custom)
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<T, E> {
        v.to_string().parse().map_err(E::custom)
    }
}

string_serde!(PolicyAddress);
string_serde!(SgRemote);
string_serde!(Protocol);
string_serde!(PortRange);

/// A MAC address written `aa:bb:cc:dd:ee:ff`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Mac(pub [u8; 6]);

impl std::fmt::Debug for Mac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::fmt::Display for Mac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
    }
}

impl std::str::FromStr for Mac {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut out = [0u8; 6];
        let mut n = 0;
        for part in s.split(':') {
            if n == 6 || part.len() != 2 {
                return Err(format!("invalid MAC address {s:?} (expected aa:bb:cc:dd:ee:ff)"));
            }
            out[n] = u8::from_str_radix(part, 16)
                .map_err(|_| format!("invalid MAC address {s:?} (expected aa:bb:cc:dd:ee:ff)"))?;
            n += 1;
        }
        if n != 6 {
            return Err(format!("invalid MAC address {s:?} (expected aa:bb:cc:dd:ee:ff)"));
        }
        Ok(Mac(out))
    }
}

impl Serialize for Mac {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An IP prefix written `addr/len`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Prefix {
    /// Network address (validation rejects host bits set in routes and rules).
    pub addr: IpAddr,
    /// Prefix length: 0..=32 for IPv4, 0..=128 for IPv6.
    pub len: u8,
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl std::str::FromStr for Prefix {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, l) = s.split_once('/').ok_or_else(|| format!("invalid prefix {s:?} (expected address/length)"))?;
        let addr: IpAddr = a.parse().map_err(|_| format!("invalid address in prefix {s:?}"))?;
        let len: u8 = l.parse().map_err(|_| format!("invalid length in prefix {s:?}"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if len > max {
            return Err(format!("prefix length {len} exceeds {max} in {s:?}"));
        }
        Ok(Prefix { addr, len })
    }
}

impl Serialize for Prefix {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Prefix {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
