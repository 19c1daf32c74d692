//! `rt`: the routes of a VRF (tf-vrouter's `rt --dump`, utils/rt.c), and the requests of
//! `rt --add` / `rt --delete`. Renderers are pure functions of the `route_dump` reply.

use std::fmt::Write as _;

use serde_json::{json, Value};
use vrouter_abi::control::RouteEntry;

use crate::program::{mac_config, mac_tf, to_json};

/// Route families `rt --family` takes.
pub const FAMILIES: [&str; 3] = ["inet", "inet6", "bridge"];

const INET_LEGEND: &str = "Flags: L=Label Valid, P=Proxy ARP, T=Trap ARP, F=Flood ARP\n";
const BRIDGE_LEGEND: &str = "Flags: L=Label Valid, Df=DHCP flood, Mm=Mac Moved, L2c=L2 Evpn Control Word\n";

fn pad_to(s: &mut String, start: usize, width: usize) {
    while s.len() - start < width {
        s.push(' ');
    }
}

/// The legend and column titles of a dump (also of `rt --get`).
pub fn render_header(vrf: u32, family: &str) -> String {
    if family == "bridge" {
        format!(
            "{BRIDGE_LEGEND}vRouter bridge table 0/{vrf}\n\
             Index       DestMac                  Flags           Label/VNID      Nexthop           Stats\n"
        )
    } else {
        let v = if family == "inet6" { '6' } else { '4' };
        format!(
            "{INET_LEGEND}vRouter inet{v} routing table 0/{vrf}/unicast\n\
             Destination           PPL        Flags        Label         Nexthop    Stitched MAC(Index)\n"
        )
    }
}

/// One IPv4/IPv6 route line: prefix (21 columns), PPL (the replacement prefix length: 0,
/// this vRouter keeps none), flags (`L` when the nexthop carries a label), label or `-`,
/// nexthop, and the stitched MAC or `-` (this vRouter has no bridge index to add).
pub fn render_inet_route(r: &RouteEntry) -> String {
    let mut s = String::new();
    let prefix = if r.prefix.contains('/') { r.prefix.clone() } else { format!("{}/{}", r.prefix, r.prefix_len) };
    s.push_str(&prefix);
    pad_to(&mut s, 0, 21);
    let flags = if r.label.is_some() { "L" } else { "" };
    let label = r.label.map_or_else(|| "-".to_string(), |l| l.to_string());
    let mac = r.stitched_mac.as_deref().map_or_else(|| "-".to_string(), mac_tf);
    let _ = writeln!(s, "{:4}{:8}{flags:>5}{:6}{label:>5}{:8}{:>7}{:8}{mac}", 0, "", "", "", r.nexthop, "");
    s
}

/// One bridge line: index (the entry's position in the dump), MAC, flags, label/VNI or `-`,
/// nexthop, and `-` for the packet count (this vRouter does not count per bridge entry).
pub fn render_bridge_route(index: usize, r: &RouteEntry) -> String {
    let mut s = format!("{index:<9}");
    pad_to(&mut s, 0, 12);
    let start = s.len();
    s.push_str(&mac_tf(&r.prefix));
    pad_to(&mut s, start, 20);
    let flags = if r.label.is_some() { "L" } else { "" };
    let label = r.label.map_or_else(|| "-".to_string(), |l| l.to_string());
    let _ = writeln!(s, " {flags:>9}{:11} {label:>9}{:6}{:>7}{:4}{:>12}", "", "", r.nexthop, "", "-");
    s
}

/// `rt --dump <vrf> --family F`: legend, titles, one line per route.
pub fn render_dump(vrf: u32, family: &str, routes: &[RouteEntry]) -> String {
    let mut s = render_header(vrf, family);
    for (i, r) in routes.iter().enumerate() {
        s.push_str(&if family == "bridge" { render_bridge_route(i, r) } else { render_inet_route(r) });
    }
    s
}

/// `rt --get <addr> --vrf V`: tf's `Match ... in vRouter ... table` banner, then the route
/// (or none).
pub fn render_get(vrf: u32, addr: &str, route: Option<&RouteEntry>) -> String {
    let family = route.map_or_else(|| family_of(addr), |r| r.family.clone());
    let mut s = if family == "bridge" {
        format!("Match {} in vRouter bridge table 0/{vrf}/unicast\n\n", mac_tf(addr))
    } else {
        let v = if family == "inet6" { '6' } else { '4' };
        format!("Match {addr} in vRouter inet{v} table 0/{vrf}/unicast\n\n")
    };
    s.push_str(&render_header(vrf, &family));
    if let Some(r) = route {
        s.push_str(&if family == "bridge" { render_bridge_route(0, r) } else { render_inet_route(r) });
    }
    s
}

/// The family of an address or MAC as given on the command line.
pub fn family_of(addr: &str) -> String {
    if addr.contains(':') && addr.parse::<std::net::Ipv6Addr>().is_err() {
        "bridge".into()
    } else if addr.contains(':') {
        "inet6".into()
    } else {
        "inet".into()
    }
}

/// `rt --dump --json`: the `route_dump` entries as an array.
pub fn render_dump_json(routes: &[RouteEntry], pretty: bool) -> String {
    to_json(routes, pretty)
}

/// `route_set` of one route.
pub fn route_set_request(vrf: u32, prefix: &str, nexthop: u32) -> Value {
    json!({"cmd": "route_set", "routes": [{"vrf": vrf, "prefix": prefix, "nexthop": nexthop}]})
}

/// `route_delete` of one route.
pub fn route_delete_request(vrf: u32, prefix: &str) -> Value {
    json!({"cmd": "route_delete", "routes": [{"vrf": vrf, "prefix": prefix}]})
}

/// `bridge_set` of one bridge entry.
pub fn bridge_set_request(vrf: u32, mac: &[u8; 6], nexthop: u32) -> Value {
    json!({"cmd": "bridge_set", "bridge": {"vrf": vrf, "mac": mac_config(mac), "nexthop": nexthop}})
}

/// `bridge_delete` of one bridge entry.
pub fn bridge_delete_request(vrf: u32, mac: &[u8; 6]) -> Value {
    json!({"cmd": "bridge_delete", "vrf": vrf, "mac": mac_config(mac)})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(prefix: &str, len: u8, nh: u32, label: Option<u32>, mac: Option<&str>) -> RouteEntry {
        RouteEntry {
            vrf: 1,
            family: if prefix.contains('/') { "inet".into() } else { "bridge".into() },
            prefix: prefix.into(),
            prefix_len: len,
            nexthop: nh,
            label,
            stitched_mac: mac.map(str::to_string),
        }
    }

    #[test]
    fn inet_dump_text() {
        let routes = [
            route("0.0.0.0/0", 0, 1, None, None),
            route("10.0.0.3/32", 32, 21, None, Some("02:15:92:87:39:41")),
            route("10.2.0.0/16", 16, 7, Some(40), None),
        ];
        let out = render_dump(1, "inet", &routes);
        let want = "\
Flags: L=Label Valid, P=Proxy ARP, T=Trap ARP, F=Flood ARP
vRouter inet4 routing table 0/1/unicast
Destination           PPL        Flags        Label         Nexthop    Stitched MAC(Index)
0.0.0.0/0               0                       -              1        -
10.0.0.3/32             0                       -             21        2:15:92:87:39:41
10.2.0.0/16             0            L         40              7        -
";
        assert_eq!(out, want);
        assert!(render_header(3, "inet6").contains("vRouter inet6 routing table 0/3/unicast\n"));
    }

    #[test]
    fn bridge_dump_text() {
        let out = render_dump(2, "bridge", &[route("02:00:00:00:00:0a", 48, 5, None, None)]);
        let want = "\
Flags: L=Label Valid, Df=DHCP flood, Mm=Mac Moved, L2c=L2 Evpn Control Word
vRouter bridge table 0/2
Index       DestMac                  Flags           Label/VNID      Nexthop           Stats
0           2:0:0:0:0:a                                       -            5               -
";
        assert_eq!(out, want);
    }

    #[test]
    fn get_text() {
        let r = route("10.0.0.0/24", 24, 3, None, None);
        let out = render_get(1, "10.0.0.7", Some(&r));
        assert!(out.starts_with("Match 10.0.0.7 in vRouter inet4 table 0/1/unicast\n\nFlags: "), "{out}");
        assert!(out.ends_with("10.0.0.0/24             0                       -              3        -\n"));
        let none = render_get(1, "02:00:00:00:00:01", None);
        assert!(none.starts_with("Match 2:0:0:0:0:1 in vRouter bridge table 0/1/unicast\n\n"), "{none}");
        assert!(none.ends_with("Stats\n"));
        assert_eq!(family_of("fd00::1"), "inet6");
    }

    #[test]
    fn dump_json_is_the_contract() {
        let routes = [route("10.2.0.0/16", 16, 7, Some(40), None)];
        let v: Vec<RouteEntry> = serde_json::from_str(&render_dump_json(&routes, false)).unwrap();
        assert_eq!(v, routes);
        let v: Value = serde_json::from_str(&render_dump_json(&routes, true)).unwrap();
        assert_eq!(v[0]["label"], 40);
        assert_eq!(v[0]["prefix"], "10.2.0.0/16");
    }

    #[test]
    fn requests() {
        assert_eq!(
            route_set_request(1, "10.0.0.0/24", 3),
            json!({"cmd":"route_set","routes":[{"vrf":1,"prefix":"10.0.0.0/24","nexthop":3}]})
        );
        assert_eq!(route_delete_request(1, "10.0.0.0/24")["routes"][0], json!({"vrf":1,"prefix":"10.0.0.0/24"}));
        let mac = [2, 0, 0, 0, 0, 0xa];
        assert_eq!(bridge_set_request(2, &mac, 5)["bridge"], json!({"vrf":2,"mac":"02:00:00:00:00:0a","nexthop":5}));
        assert_eq!(bridge_delete_request(2, &mac), json!({"cmd":"bridge_delete","vrf":2,"mac":"02:00:00:00:00:0a"}));
    }
}
