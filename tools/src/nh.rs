//! `nh`: the vRouter's nexthops (tf-vrouter's `nh --list` / `nh --get`, utils/nh.c), and the
//! `nh_set` request of `nh --create`. Renderers are pure functions of the `nh_dump` /
//! `nh_get` replies.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use serde_json::{json, Map, Value};
use vrouter_abi::control::NexthopEntry;

use crate::program::{mac_config, to_json};
use crate::Failure;

/// Nexthop types `nh --create --type` takes (the `[[nexthop]]` `type`).
pub const TYPES: [&str; 5] = ["encap", "tunnel", "receive", "discard", "ecmp"];

/// tf's name of a nexthop kind (`Type:` column).
pub fn type_name(kind: &str) -> &str {
    match kind {
        "encap" => "Encap",
        "tunnel" => "Tunnel",
        "receive" => "Receive",
        "discard" => "Drop",
        "ecmp" => "Composite",
        other => other,
    }
}

/// The kind in upper case, as `flow --get` prints it in `NextHop(Index, VRF, Type)`.
pub fn type_upper(kind: &str) -> String {
    type_name(kind).to_uppercase()
}

/// The bytes of an `encap_data` string: hex digits, in pairs, with or without separators.
pub fn encap_bytes(data: &str) -> Vec<String> {
    let hex: String = data.chars().filter(char::is_ascii_hexdigit).collect();
    if data.contains([' ', ':']) {
        data.split([' ', ':']).filter(|p| !p.is_empty()).map(|p| format!("{:0>2}", p.to_lowercase())).collect()
    } else {
        hex.as_bytes().chunks(2).map(|c| String::from_utf8_lossy(c).to_lowercase()).collect()
    }
}

/// One nexthop as `nh --list` prints it (ends with a blank line). ECMP members print as
/// `id(label)` with the member's label from `all` when it is a tunnel, else `id(-)`.
pub fn render_nh(e: &NexthopEntry, all: &[NexthopEntry]) -> String {
    let mut s = format!("Id:{}", e.id);
    while s.len() < 14 {
        s.push(' ');
    }
    let t = format!("Type:{}", type_name(&e.kind));
    let _ = writeln!(s, "{t:<20}Fmly:{:>8}  Rid:0  Ref_cnt:{:<11}Vrf:{}", "AF_INET", e.refs, e.vrf.unwrap_or(0));
    const IND: &str = "              ";
    let mut flags = String::from("Valid, ");
    match (e.kind.as_str(), e.encap.as_deref()) {
        ("tunnel", Some("mplsoudp")) => flags.push_str("MPLSoUDP, "),
        ("tunnel", Some("vxlan")) => flags.push_str("Vxlan, "),
        ("ecmp", _) => flags.push_str("Ecmp, "),
        _ => {}
    }
    let _ = writeln!(s, "{IND}Flags:{flags}");
    let data = e.encap_data.as_deref().map(encap_bytes).unwrap_or_default();
    let oif = e.vif.map_or_else(|| "-".to_string(), |v| v.to_string());
    match e.kind.as_str() {
        "encap" => {
            let _ = writeln!(s, "{IND}EncapFmly:0806 Oif:{oif} Len:{}", data.len());
            let _ = writeln!(s, "{IND}Encap Data: {}", data.join(" "));
        }
        "tunnel" => {
            let _ = writeln!(s, "{IND}Oif:{oif} Len:{} Data:{}", data.len(), data.join(" "));
            let ip = |a: Option<Ipv4Addr>| a.map_or_else(|| "-".to_string(), |a| a.to_string());
            let _ = write!(s, "{IND}Sip:{} Dip:{}", ip(e.src_ip), ip(e.dst_ip));
            match (e.encap.as_deref(), e.label) {
                (Some("vxlan"), Some(l)) => writeln!(s, " VNI:{l}"),
                (_, Some(l)) => writeln!(s, " Label:{l}"),
                (_, None) => writeln!(s),
            }
            .expect("writing to a String");
        }
        "receive" => {
            let _ = writeln!(s, "{IND}Oif:{oif}");
        }
        "ecmp" => {
            let members: Vec<String> = e
                .members
                .iter()
                .map(|m| {
                    let label = all.iter().find(|n| n.id == *m).and_then(|n| n.label);
                    format!("{m}({})", label.map_or_else(|| "-".to_string(), |l| l.to_string()))
                })
                .collect();
            let _ = writeln!(s, "{IND}Sub NH(label): {}", members.join(" "));
        }
        _ => {}
    }
    s.push('\n');
    s
}

/// `nh --list`: every nexthop, in the order of the dump.
pub fn render_list(all: &[NexthopEntry]) -> String {
    all.iter().map(|e| render_nh(e, all)).collect()
}

/// `nh --list --json`: the `nh_dump` entries as an array.
pub fn render_list_json(all: &[NexthopEntry], pretty: bool) -> String {
    to_json(all, pretty)
}

/// `nh --get --json`: the `nh_get` entry as an object.
pub fn render_get_json(e: &NexthopEntry, pretty: bool) -> String {
    to_json(e, pretty)
}

/// What `nh --create` was given (options of every type; [`create_request`] checks which the
/// type takes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateArgs {
    /// `--id`.
    pub id: Option<u32>,
    /// `--type`.
    pub kind: Option<String>,
    /// `--oif`: the vif sent on (encap, tunnel, receive).
    pub oif: Option<u16>,
    /// `--dmac`: destination MAC (encap; the underlay next hop's MAC for a tunnel).
    pub dmac: Option<[u8; 6]>,
    /// `--smac`: source MAC (encap).
    pub smac: Option<[u8; 6]>,
    /// `--inner-dmac`: inner destination MAC (vxlan tunnel).
    pub inner_dmac: Option<[u8; 6]>,
    /// `--encap`: mplsoudp or vxlan (tunnel).
    pub encap: Option<String>,
    /// `--dip`: tunnel destination (tunnel).
    pub dip: Option<Ipv4Addr>,
    /// `--label`: MPLS label or VNI (tunnel).
    pub label: Option<u32>,
    /// `--members`: member nexthop ids (ecmp).
    pub members: Option<Vec<u32>>,
}

/// The `nh_set` request of `nh --create`, or the error naming the option that is missing or
/// that the type does not take (nothing is sent then).
pub fn create_request(a: &CreateArgs) -> Result<Value, Failure> {
    let id = a.id.ok_or_else(|| Failure("--create needs --id".into()))?;
    let kind = a
        .kind
        .as_deref()
        .ok_or_else(|| Failure("--create needs --type (encap, tunnel, receive, discard, ecmp)".into()))?;
    if !TYPES.contains(&kind) {
        return Err(Failure(format!("--type: unknown nexthop type {kind:?} (encap, tunnel, receive, discard, ecmp)")));
    }
    let given: [(&str, bool); 8] = [
        ("--oif", a.oif.is_some()),
        ("--dmac", a.dmac.is_some()),
        ("--smac", a.smac.is_some()),
        ("--inner-dmac", a.inner_dmac.is_some()),
        ("--encap", a.encap.is_some()),
        ("--dip", a.dip.is_some()),
        ("--label", a.label.is_some()),
        ("--members", a.members.is_some()),
    ];
    let (needs, takes): (&[&str], &[&str]) = match kind {
        "encap" => (&["--oif", "--dmac"], &["--smac"]),
        "tunnel" => (&["--oif", "--dmac", "--encap", "--dip", "--label"], &["--inner-dmac"]),
        "receive" => (&["--oif"], &[]),
        "discard" => (&[], &[]),
        _ => (&["--members"], &[]),
    };
    for (opt, g) in &given {
        if !g && needs.contains(opt) {
            return Err(Failure(format!("--type {kind} needs {opt}")));
        }
        if *g && !needs.contains(opt) && !takes.contains(opt) {
            return Err(Failure(format!("{opt} is not valid with --type {kind}")));
        }
    }
    if let Some(e) = &a.encap {
        if e != "mplsoudp" && e != "vxlan" {
            return Err(Failure(format!("--encap: unknown encapsulation {e:?} (mplsoudp, vxlan)")));
        }
        if a.inner_dmac.is_some() && e != "vxlan" {
            return Err(Failure("--inner-dmac is only valid with --encap vxlan".into()));
        }
    }
    if a.members.as_ref().is_some_and(Vec::is_empty) {
        return Err(Failure("--members: at least one member nexthop id is needed".into()));
    }
    let mut nh = Map::new();
    nh.insert("type".into(), kind.into());
    nh.insert("id".into(), id.into());
    let mac = |m: &Option<[u8; 6]>| m.as_ref().map(|m| Value::from(mac_config(m)));
    for (k, v) in [
        ("vif", a.oif.map(Value::from)),
        ("dst_mac", mac(&a.dmac)),
        ("src_mac", mac(&a.smac)),
        ("inner_dst_mac", mac(&a.inner_dmac)),
        ("encap", a.encap.clone().map(Value::from)),
        ("remote_ip", a.dip.map(|d| Value::from(d.to_string()))),
        ("label", a.label.map(Value::from)),
        ("members", a.members.clone().map(Value::from)),
    ] {
        if let Some(v) = v {
            nh.insert(k.into(), v);
        }
    }
    Ok(json!({"cmd": "nh_set", "nexthop": nh}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nh(id: u32, kind: &str) -> NexthopEntry {
        NexthopEntry {
            id,
            kind: kind.into(),
            index: id,
            refs: 2,
            vif: None,
            vrf: None,
            encap_data: None,
            encap: None,
            src_ip: None,
            dst_ip: None,
            label: None,
            members: vec![],
        }
    }

    fn sample() -> Vec<NexthopEntry> {
        let mut encap = nh(3, "encap");
        encap.vif = Some(1);
        encap.vrf = Some(1);
        encap.refs = 13;
        encap.encap_data = Some("02:f5:71:51:39:f1:00:00:5e:00:01:00:08:00".into());
        let mut tunnel = nh(19, "tunnel");
        tunnel.vif = Some(0);
        tunnel.vrf = Some(0);
        tunnel.encap = Some("mplsoudp".into());
        tunnel.encap_data = Some("90e2ba3f197890e2ba3f19770800".into());
        tunnel.src_ip = Some("10.0.0.1".parse().unwrap());
        tunnel.dst_ip = Some("10.0.0.2".parse().unwrap());
        tunnel.label = Some(20);
        let mut ecmp = nh(25, "ecmp");
        ecmp.members = vec![19, 3];
        let mut rcv = nh(2, "receive");
        rcv.vif = Some(2);
        vec![nh(1, "discard"), rcv, encap, tunnel, ecmp]
    }

    #[test]
    fn list_text() {
        let want = "\
Id:1          Type:Drop           Fmly: AF_INET  Rid:0  Ref_cnt:2          Vrf:0
              Flags:Valid, 

Id:2          Type:Receive        Fmly: AF_INET  Rid:0  Ref_cnt:2          Vrf:0
              Flags:Valid, 
              Oif:2

Id:3          Type:Encap          Fmly: AF_INET  Rid:0  Ref_cnt:13         Vrf:1
              Flags:Valid, 
              EncapFmly:0806 Oif:1 Len:14
              Encap Data: 02 f5 71 51 39 f1 00 00 5e 00 01 00 08 00

Id:19         Type:Tunnel         Fmly: AF_INET  Rid:0  Ref_cnt:2          Vrf:0
              Flags:Valid, MPLSoUDP, 
              Oif:0 Len:14 Data:90 e2 ba 3f 19 78 90 e2 ba 3f 19 77 08 00
              Sip:10.0.0.1 Dip:10.0.0.2 Label:20

Id:25         Type:Composite      Fmly: AF_INET  Rid:0  Ref_cnt:2          Vrf:0
              Flags:Valid, Ecmp, 
              Sub NH(label): 19(20) 3(-)

";
        assert_eq!(render_list(&sample()), want);
    }

    #[test]
    fn vxlan_tunnel_prints_vni() {
        let mut t = sample()[3].clone();
        t.encap = Some("vxlan".into());
        let out = render_nh(&t, &[]);
        assert!(out.contains("Flags:Valid, Vxlan, \n"), "{out}");
        assert!(out.contains("Dip:10.0.0.2 VNI:20\n"), "{out}");
    }

    #[test]
    fn json_round_trips() {
        let all = sample();
        let back: Vec<NexthopEntry> = serde_json::from_str(&render_list_json(&all, false)).unwrap();
        assert_eq!(back, all);
        let one: Value = serde_json::from_str(&render_get_json(&all[3], true)).unwrap();
        assert_eq!(one["kind"], "tunnel");
        assert_eq!(one["dst_ip"], "10.0.0.2");
        assert_eq!(one["label"], 20);
    }

    #[test]
    fn create_requests() {
        let a = CreateArgs {
            id: Some(9),
            kind: Some("encap".into()),
            oif: Some(1),
            dmac: Some([2, 0, 0, 0, 0, 1]),
            ..CreateArgs::default()
        };
        assert_eq!(
            create_request(&a).unwrap(),
            json!({"cmd":"nh_set","nexthop":{"type":"encap","id":9,"vif":1,"dst_mac":"02:00:00:00:00:01"}})
        );
        let t = CreateArgs {
            id: Some(10),
            kind: Some("tunnel".into()),
            oif: Some(0),
            dmac: Some([2, 0, 0, 0, 0, 2]),
            encap: Some("vxlan".into()),
            dip: Some("192.168.1.2".parse().unwrap()),
            label: Some(100),
            ..CreateArgs::default()
        };
        let r = create_request(&t).unwrap();
        assert_eq!(r["nexthop"]["remote_ip"], "192.168.1.2");
        assert_eq!(r["nexthop"]["encap"], "vxlan");
        let e =
            CreateArgs { id: Some(11), kind: Some("ecmp".into()), members: Some(vec![9, 10]), ..CreateArgs::default() };
        assert_eq!(create_request(&e).unwrap()["nexthop"]["members"], json!([9, 10]));
        let d = CreateArgs { id: Some(12), kind: Some("discard".into()), ..CreateArgs::default() };
        assert_eq!(create_request(&d).unwrap(), json!({"cmd":"nh_set","nexthop":{"type":"discard","id":12}}));
    }

    #[test]
    fn create_errors_name_the_option() {
        let base = CreateArgs { id: Some(9), kind: Some("encap".into()), oif: Some(1), ..CreateArgs::default() };
        assert_eq!(create_request(&base).unwrap_err().0, "--type encap needs --dmac");
        let extra = CreateArgs { dmac: Some([2; 6]), label: Some(3), ..base.clone() };
        assert_eq!(create_request(&extra).unwrap_err().0, "--label is not valid with --type encap");
        let no_id = CreateArgs { id: None, ..base.clone() };
        assert_eq!(create_request(&no_id).unwrap_err().0, "--create needs --id");
        let bad_type = CreateArgs { kind: Some("resolve".into()), ..base.clone() };
        assert!(create_request(&bad_type).unwrap_err().0.starts_with("--type: unknown nexthop type \"resolve\""));
        let t = CreateArgs {
            id: Some(10),
            kind: Some("tunnel".into()),
            oif: Some(0),
            dmac: Some([2; 6]),
            encap: Some("gre".into()),
            dip: Some("192.168.1.2".parse().unwrap()),
            label: Some(100),
            ..CreateArgs::default()
        };
        assert!(create_request(&t).unwrap_err().0.starts_with("--encap: unknown encapsulation"));
        let no_members =
            CreateArgs { id: Some(1), kind: Some("ecmp".into()), members: Some(vec![]), ..CreateArgs::default() };
        assert!(create_request(&no_members).unwrap_err().0.starts_with("--members:"));
    }

    #[test]
    fn encap_data_forms() {
        assert_eq!(encap_bytes("0a0b"), ["0a", "0b"]);
        assert_eq!(encap_bytes("a b"), ["0a", "0b"]);
        assert_eq!(encap_bytes("0A:0b"), ["0a", "0b"]);
        assert_eq!(type_upper("encap"), "ENCAP");
    }
}
