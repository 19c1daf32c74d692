//! `flow --match "IP:PORT[,IP:PORT] [& vrf N] [& proto tcp|udp|icmp|icmp6|sctp]"`.
//!
//! Criteria are separated by `&`, endpoints by `,`. An endpoint is `a.b.c.d`,
//! `a.b.c.d:port`, `[v6]:port`, a bare IPv6 address (no port), or `*` for any address;
//! a missing port or `*` matches any port. One endpoint matches flows where it is the
//! source or the destination; two endpoints must be the flow's (source, destination) in
//! either order (tf-vrouter `utils/flow.c`). IPv4 and IPv6 endpoints cannot be mixed;
//! an address restricts the listing to its family.

use std::fmt::{self, Write as _};
use std::net::IpAddr;
use std::str::FromStr;

use flow_table::FlowSnapshot;

use super::text::proto_name;

/// One end of a flow: an address and a port, each optional (`None` = any).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The address, `None` for any.
    pub addr: Option<IpAddr>,
    /// The port, `None` for any.
    pub port: Option<u16>,
}

impl Endpoint {
    fn matches(&self, addr: IpAddr, port: u16) -> bool {
        self.addr.is_none_or(|a| a == addr) && self.port.is_none_or(|p| p == port)
    }
}

impl fmt::Display for Endpoint {
    /// `[ip]:port`, `[ip]:*`, `[*]:port` (the banner's notation).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr {
            Some(a) => write!(f, "[{a}]:")?,
            None => f.write_str("[*]:")?,
        }
        match self.port {
            Some(p) => write!(f, "{p}"),
            None => f.write_str("*"),
        }
    }
}

/// A parsed `--match` filter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowMatch {
    /// At most two.
    pub endpoints: Vec<Endpoint>,
    /// Key VRF / nexthop (`K(nh)`) to match, `None` for any.
    pub vrf: Option<u32>,
    /// IP protocol number to match, `None` for any.
    pub proto: Option<u8>,
}

impl FlowMatch {
    /// `Some(true)` for IPv6, `Some(false)` for IPv4, `None` when no endpoint names an
    /// address.
    pub fn family_v6(&self) -> Option<bool> {
        self.endpoints.iter().find_map(|e| e.addr).map(|a| a.is_ipv6())
    }

    /// Whether flow `s` passes the filter (endpoints match in either direction).
    pub fn matches(&self, s: &FlowSnapshot) -> bool {
        let k = &s.key;
        if self.vrf.is_some_and(|v| v != k.vrf()) || self.proto.is_some_and(|p| p != k.proto()) {
            return false;
        }
        if self.family_v6().is_some_and(|v6| v6 != k.is_v6()) {
            return false;
        }
        let (src, sport, dst, dport) = (k.src_ip(), k.sport(), k.dst_ip(), k.dport());
        match self.endpoints.as_slice() {
            [] => true,
            [e] => e.matches(src, sport) || e.matches(dst, dport),
            [a, b, ..] => {
                (a.matches(src, sport) && b.matches(dst, dport)) || (b.matches(src, sport) && a.matches(dst, dport))
            }
        }
    }

    /// `Listing flows matching (...)` and a blank line.
    pub fn banner(&self) -> String {
        let mut parts: Vec<String> = self.endpoints.iter().map(|e| e.to_string()).collect();
        if let Some(p) = self.proto {
            parts.push(format!("Protocol {}", proto_name(p)));
        }
        if let Some(v) = self.vrf {
            parts.push(format!("VRF {v}"));
        }
        let mut s = String::from("Listing flows matching (");
        let _ = write!(s, "{})\n\n", parts.join(", "));
        s
    }

    fn add_endpoint(&mut self, token: &str) -> Result<(), String> {
        let e = parse_endpoint(token)?;
        if self.endpoints.len() == 2 {
            return Err(format!("match: \"{token}\": both ends of the flow are already specified"));
        }
        if let (Some(a), Some(v6)) = (e.addr, self.family_v6()) {
            if a.is_ipv6() != v6 {
                return Err("match: IPv4 and IPv6 endpoints cannot be matched together".into());
            }
        }
        self.endpoints.push(e);
        Ok(())
    }
}

fn parse_port(s: &str, token: &str) -> Result<Option<u16>, String> {
    match s {
        "*" => Ok(None),
        _ => s.parse().map(Some).map_err(|_| format!("match: invalid port \"{s}\" in \"{token}\"")),
    }
}

fn parse_addr(s: &str, token: &str) -> Result<Option<IpAddr>, String> {
    match s {
        "*" => Ok(None),
        _ => s.parse().map(Some).map_err(|_| format!("match: invalid address \"{s}\" in \"{token}\"")),
    }
}

/// `a.b.c.d`, `a.b.c.d:p`, `[addr]:p`, a bare IPv6 address, or `*`/`*:p`.
fn parse_endpoint(token: &str) -> Result<Endpoint, String> {
    if let Some(rest) = token.strip_prefix('[') {
        let Some((addr, after)) = rest.rsplit_once(']') else {
            return Err(format!("match: no closing ']' in \"{token}\""));
        };
        let Some(port) = after.strip_prefix(':').filter(|p| !p.is_empty()) else {
            return Err(format!("match: \"{token}\" should be in [aa:aa::aa:aa]:p format"));
        };
        return Ok(Endpoint { addr: parse_addr(addr, token)?, port: parse_port(port, token)? });
    }
    match token.matches(':').count() {
        0 => Ok(Endpoint { addr: parse_addr(token, token)?, port: None }),
        1 => {
            let (addr, port) = token.split_once(':').expect("one ':'");
            let addr = parse_addr(addr, token)?;
            if addr.is_some_and(|a| a.is_ipv6()) {
                return Err(format!("match: write an IPv6 endpoint as [addr]:port, not \"{token}\""));
            }
            Ok(Endpoint { addr, port: parse_port(port, token)? })
        }
        // A bare IPv6 address (no port).
        _ => match token.parse::<IpAddr>() {
            Ok(a) => Ok(Endpoint { addr: Some(a), port: None }),
            Err(_) => Err(format!("match: invalid address \"{token}\"")),
        },
    }
}

fn parse_proto(s: &str) -> Result<u8, String> {
    match s {
        "tcp" => Ok(6),
        "udp" => Ok(17),
        "icmp" => Ok(1),
        "icmp6" | "icmpv6" => Ok(58),
        "sctp" => Ok(132),
        _ => s.parse().map_err(|_| format!("Unsupported protocol \"{s}\"")),
    }
}

/// `keyword value` (`vrf 1`, `proto tcp`), if `token` starts with `keyword` and a space.
fn keyword<'a>(token: &'a str, kw: &str) -> Option<&'a str> {
    let rest = token.strip_prefix(kw)?;
    rest.starts_with(char::is_whitespace).then(|| rest.trim())
}

impl FromStr for FlowMatch {
    type Err = String;

    fn from_str(s: &str) -> Result<FlowMatch, String> {
        let mut m = FlowMatch::default();
        for token in s.split('&').map(str::trim) {
            if token.is_empty() {
                return Err(format!("match: empty criterion in \"{s}\""));
            }
            if let Some(v) = keyword(token, "vrf") {
                m.vrf = Some(v.parse().map_err(|_| format!("match: invalid VRF \"{v}\""))?);
            } else if let Some(p) = keyword(token, "proto") {
                m.proto = Some(parse_proto(p)?);
            } else {
                for ep in token.split(',').map(str::trim) {
                    if ep.is_empty() {
                        return Err(format!("match: empty endpoint in \"{token}\""));
                    }
                    m.add_endpoint(ep)?;
                }
            }
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flow_table::{flags, Action, FlowKey};

    fn flow(key: FlowKey) -> FlowSnapshot {
        FlowSnapshot {
            index: 0,
            gen: 1,
            key,
            flags: flags::ACTIVE,
            action: Action::Forward,
            drop_reason: 0,
            rflow: None,
            src_nh: 0,
            tcp_flags: 0,
            setup_time: 0,
            last_seen: 0,
            mirror: 255,
            sec_mirror: 255,
            underlay_sport: 0,
            bytes: 0,
            packets: 0,
            mirror_bytes: 0,
            mirror_packets: 0,
            sec_mirror_bytes: 0,
            sec_mirror_packets: 0,
            accounting: Default::default(),
            hash: 0,
            bucket: 0,
            overflow_next: None,
        }
    }

    fn v4(vrf: u32, proto: u8, s: [u8; 4], sp: u16, d: [u8; 4], dp: u16) -> FlowSnapshot {
        flow(FlowKey::v4(vrf, proto, s.into(), d.into(), sp, dp))
    }

    fn m(s: &str) -> FlowMatch {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_tf_examples() {
        assert_eq!(
            m("1.1.1.1:20"),
            FlowMatch {
                endpoints: vec![Endpoint { addr: Some("1.1.1.1".parse().unwrap()), port: Some(20) }],
                ..Default::default()
            }
        );
        let x = m("10.204.217.10:56910,169.254.0.3:22 & vrf 0 & proto tcp");
        assert_eq!(x.endpoints.len(), 2);
        assert_eq!(x.endpoints[1].port, Some(22));
        assert_eq!((x.vrf, x.proto), (Some(0), Some(6)));
        let x = m("[fe80::225:90ff:fec3:afa]:22");
        assert_eq!(x.endpoints[0].addr, Some("fe80::225:90ff:fec3:afa".parse().unwrap()));
        assert_eq!(x.family_v6(), Some(true));
        let x = m("fe80::1");
        assert_eq!(x.endpoints[0], Endpoint { addr: Some("fe80::1".parse().unwrap()), port: None });
        let x = m("[fd00::1]:*");
        assert_eq!(x.endpoints[0].port, None);
        let x = m("*:53 & proto udp");
        assert_eq!(x.endpoints[0], Endpoint { addr: None, port: Some(53) });
        assert_eq!(x.family_v6(), None);
        assert_eq!(m("vrf 3").vrf, Some(3));
        assert_eq!(m("proto icmp6").proto, Some(58));
        assert_eq!(m("proto 47").proto, Some(47));
    }

    #[test]
    fn rejects_bad_strings() {
        for (s, msg) in [
            ("1.1.1.1,2.2.2.2,3.3.3.3", "both ends of the flow are already specified"),
            ("1.1.1.1,[fd00::1]:2", "IPv4 and IPv6"),
            ("[fd00::1", "no closing ']'"),
            ("[fd00::1]", "[aa:aa::aa:aa]:p format"),
            ("1.1.1.1:http", "invalid port"),
            ("1.1.1:80", "invalid address"),
            ("proto gre", "Unsupported protocol \"gre\""),
            ("vrf x", "invalid VRF"),
            ("1.1.1.1 &", "empty criterion"),
            ("", "empty criterion"),
            ("1.1.1.1,", "empty endpoint"),
        ] {
            let e = s.parse::<FlowMatch>().unwrap_err();
            assert!(e.contains(msg), "{s}: {e}");
        }
    }

    #[test]
    fn one_endpoint_is_source_or_destination() {
        let f = v4(1, 6, [10, 0, 0, 1], 1000, [10, 0, 0, 2], 80);
        assert!(m("10.0.0.1").matches(&f));
        assert!(m("10.0.0.2").matches(&f));
        assert!(m("10.0.0.2:80").matches(&f));
        assert!(m("10.0.0.1:1000").matches(&f));
        assert!(!m("10.0.0.1:80").matches(&f)); // the source's port is 1000
        assert!(!m("10.0.0.3").matches(&f));
        assert!(m("*:80").matches(&f));
        assert!(!m("*:81").matches(&f));
        assert!(!m("[fd00::1]:80").matches(&f)); // other family
    }

    #[test]
    fn two_endpoints_either_order() {
        let f = v4(1, 17, [10, 0, 0, 1], 1000, [10, 0, 0, 2], 53);
        assert!(m("10.0.0.1:1000,10.0.0.2:53").matches(&f));
        assert!(m("10.0.0.2:53,10.0.0.1").matches(&f));
        assert!(!m("10.0.0.1,10.0.0.3").matches(&f));
        assert!(!m("10.0.0.1:53,10.0.0.2:1000").matches(&f));
        // Both ends the same address: src/dst must both match.
        let same = v4(1, 17, [10, 0, 0, 1], 1, [10, 0, 0, 1], 2);
        assert!(m("10.0.0.1:2,10.0.0.1:1").matches(&same));
        assert!(!m("10.0.0.1:2,10.0.0.1:2").matches(&same));
    }

    #[test]
    fn vrf_and_proto() {
        let f = v4(2, 6, [10, 0, 0, 1], 1000, [10, 0, 0, 2], 80);
        assert!(m("10.0.0.1 & vrf 2 & proto tcp").matches(&f));
        assert!(!m("10.0.0.1 & vrf 1").matches(&f));
        assert!(!m("proto udp").matches(&f));
        let v6 = flow(FlowKey::v6(2, 17, "fd00::1".parse().unwrap(), "fd00::2".parse().unwrap(), 5, 53));
        assert!(m("vrf 2").matches(&v6));
        assert!(m("[fd00::2]:53").matches(&v6));
        assert!(m("fd00::1").matches(&v6));
        assert!(!m("10.0.0.1").matches(&v6));
    }

    #[test]
    fn banner() {
        assert_eq!(
            m("10.0.0.1:80,10.0.0.2 & proto tcp & vrf 3").banner(),
            "Listing flows matching ([10.0.0.1]:80, [10.0.0.2]:*, Protocol TCP, VRF 3)\n\n"
        );
        assert_eq!(m("vrf 0").banner(), "Listing flows matching (VRF 0)\n\n");
        assert_eq!(m("*:53 & proto icmp6").banner(), "Listing flows matching ([*]:53, Protocol ICMPv6)\n\n");
    }
}
