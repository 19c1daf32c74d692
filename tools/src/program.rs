//! What the programming tools (`rt`, `nh`, `mpls`, `vif --add/--delete`) share: checking the
//! operator's input before anything is sent (errors name the option), and the text of a
//! change's reply.

use std::net::IpAddr;

use serde::Serialize;
use vrouter_abi::control::ChangeReply;

use crate::Failure;

/// Parses a MAC (`02:00:00:00:00:01`, `2:0:0:0:0:1`, also with `-`) given to `opt`; returns
/// it in the configuration's canonical form (two lowercase hex digits per byte).
pub fn parse_mac(opt: &str, s: &str) -> Result<[u8; 6], Failure> {
    let bad = || Failure(format!("{opt}: invalid MAC {s:?} (expected six hex bytes, e.g. 02:00:00:00:00:01)"));
    let parts: Vec<&str> = s.split([':', '-']).collect();
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut mac = [0u8; 6];
    for (b, p) in mac.iter_mut().zip(parts) {
        if p.is_empty() || p.len() > 2 {
            return Err(bad());
        }
        *b = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    Ok(mac)
}

/// A MAC as the configuration writes it: `02:00:00:00:00:01`.
pub fn mac_config(m: &[u8; 6]) -> String {
    format!("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
}

/// A MAC as tf-vrouter prints it (`ether_ntoa`: no leading zeros, `2:0:0:0:0:1`); a string
/// that is not a MAC is returned as it is.
pub fn mac_tf(s: &str) -> String {
    match parse_mac("mac", s) {
        Ok(m) => m.iter().map(|b| format!("{b:x}")).collect::<Vec<_>>().join(":"),
        Err(_) => s.to_string(),
    }
}

/// An IPv4 or IPv6 prefix given to `opt`: `a.b.c.d/len` or `x::y/len`; a plain address is the
/// host prefix. Host bits must be clear (the vRouter refuses them too; this names the option).
pub fn parse_prefix(opt: &str, s: &str) -> Result<(IpAddr, u8), Failure> {
    let (addr_s, len_s) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let addr: IpAddr = addr_s
        .trim()
        .parse()
        .map_err(|_| Failure(format!("{opt}: invalid prefix {s:?} (expected a.b.c.d/len or x::y/len)")))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len_s {
        None => max,
        Some(l) => l
            .parse::<u8>()
            .ok()
            .filter(|&l| l <= max)
            .ok_or_else(|| Failure(format!("{opt}: invalid prefix length {l:?} in {s:?} (0..={max})")))?,
    };
    let masked = mask(addr, len);
    if masked != addr {
        return Err(Failure(format!("{opt}: {s} has host bits set; the prefix is {masked}/{len}")));
    }
    Ok((addr, len))
}

fn mask(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let m = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            let m = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) };
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

/// The option of `given` (name, whether given) that is set although `mode` does not take
/// it, as the error to print.
pub fn only_with(mode: &str, given: &[(&str, bool)]) -> Result<(), Failure> {
    match given.iter().find(|(_, g)| *g) {
        Some((opt, _)) => Err(Failure(format!("{opt} is not valid with {mode}"))),
        None => Ok(()),
    }
}

/// `Some(v)` or the "`mode` needs `opt`" error.
pub fn required<T>(v: Option<T>, mode: &str, opt: &str) -> Result<T, Failure> {
    v.ok_or_else(|| Failure(format!("{mode} needs {opt}")))
}

/// The text of a change's reply: `<what> <done>` when the state changed, `<what> unchanged`
/// when it matched, with the generation and the flows re-evaluated.
pub fn render_change(what: &str, done: &str, r: &ChangeReply) -> String {
    let head = if r.changed { format!("{what} {done}") } else { format!("{what} unchanged") };
    format!(
        "{head} (generation {}; flows re-evaluated {}, changed {}, deleted {})\n",
        r.generation, r.reevaluated, r.flows_changed, r.flows_deleted
    )
}

/// `value` as one JSON line (or pretty-printed), with a trailing newline.
pub fn to_json<T: Serialize + ?Sized>(value: &T, pretty: bool) -> String {
    let mut s = if pretty { serde_json::to_string_pretty(value) } else { serde_json::to_string(value) }
        .expect("serializing plain data cannot fail");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs() {
        assert_eq!(parse_mac("--mac", "2:0:0:0:a:FF").unwrap(), [2, 0, 0, 0, 10, 255]);
        assert_eq!(mac_config(&parse_mac("--mac", "02-00-00-00-00-01").unwrap()), "02:00:00:00:00:01");
        assert_eq!(mac_tf("02:00:0a:00:00:01"), "2:0:a:0:0:1");
        for bad in ["", "02:00:00:00:00", "02:00:00:00:00:01:02", "02:00:00:00:00:1g", "002:0:0:0:0:1"] {
            let e = parse_mac("--dmac", bad).unwrap_err();
            assert!(e.0.starts_with("--dmac: invalid MAC"), "{e}");
        }
    }

    #[test]
    fn prefixes() {
        assert_eq!(parse_prefix("--prefix", "10.1.0.0/16").unwrap(), ("10.1.0.0".parse().unwrap(), 16));
        assert_eq!(parse_prefix("--prefix", "10.1.0.5").unwrap().1, 32);
        assert_eq!(parse_prefix("--prefix", "fd00::/8").unwrap().1, 8);
        assert_eq!(parse_prefix("--prefix", "0.0.0.0/0").unwrap().1, 0);
        assert_eq!(
            parse_prefix("--prefix", "10.1.0.5/16").unwrap_err().0,
            "--prefix: 10.1.0.5/16 has host bits set; the prefix is 10.1.0.0/16"
        );
        assert!(parse_prefix("--prefix", "10.1.0.0/33").unwrap_err().0.contains("invalid prefix length"));
        assert!(parse_prefix("--prefix", "10.1.0/24").unwrap_err().0.starts_with("--prefix: invalid prefix"));
    }

    #[test]
    fn change_text() {
        let r = ChangeReply { changed: true, generation: 7, reevaluated: 4, flows_changed: 1, flows_deleted: 0 };
        assert_eq!(
            render_change("route 10.1.0.0/16 in vrf 1", "added", &r),
            "route 10.1.0.0/16 in vrf 1 added (generation 7; flows re-evaluated 4, changed 1, deleted 0)\n"
        );
        let same = ChangeReply { changed: false, generation: 7, ..ChangeReply::default() };
        assert!(render_change("nexthop 3", "created", &same).starts_with("nexthop 3 unchanged ("));
        assert_eq!(
            only_with("--dump", &[("--nh", false), ("--mac", true)]).unwrap_err().0,
            "--mac is not valid with --dump"
        );
    }
}
