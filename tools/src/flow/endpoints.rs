//! The Source Information and Destination Information blocks of `flow --get` (the
//! mirror-statistics blueprint's section 3.4.2): per end of the flow its VRF, the Layer 3
//! route that matches the address (`route_lookup`) with its nexthop (`nh_get`) and the
//! interface the nexthop uses, with the interface's statistics and, when the interface is
//! mirrored, its mirror statistics (from the stats region's vif rows); for the destination
//! also the Layer 2 route of the route's stitched MAC.
//!
//! [`gather`] asks a [`Lookup`] (the control socket) and reads the vif rows; when the socket
//! cannot be reached it keeps what the regions give (the ingress interface is the vif whose
//! nexthop is the flow's expected source nexthop) and says why the routes are missing.
//! [`render_endpoints`] and [`endpoints_json`] are pure.

use std::fmt::Write as _;

use flow_table::FlowSnapshot;
use serde::Serialize;
use vrouter_abi::control::{NexthopEntry, RouteEntry};

use crate::control::{Client, ControlError};
use crate::nh::type_upper;
use crate::program::mac_tf;
use crate::VifRow;

/// What [`gather`] asks the vRouter.
pub trait Lookup {
    /// `route_lookup`: the route matching `addr` (an IP address or a MAC) in `vrf`.
    fn route_lookup(&self, vrf: u32, addr: &str) -> Result<Option<RouteEntry>, ControlError>;
    /// `nh_get`.
    fn nh_get(&self, id: u32) -> Result<NexthopEntry, ControlError>;
}

impl Lookup for Client {
    fn route_lookup(&self, vrf: u32, addr: &str) -> Result<Option<RouteEntry>, ControlError> {
        self.try_route_lookup(vrf, addr)
    }
    fn nh_get(&self, id: u32) -> Result<NexthopEntry, ControlError> {
        self.try_nh_get(id)
    }
}

/// `NextHop(Index, VRF, Type)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NhRef {
    /// Nexthop id.
    pub id: u32,
    /// VRF of its outgoing vif, if it has one.
    pub vrf: Option<u32>,
    /// Kind (`encap`, `tunnel`, ...).
    #[serde(rename = "type")]
    pub kind: String,
}

/// `Mirror Statistics(Index, Bytes, Packets)` of a mirrored interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MirrorStats {
    /// Mirror index the interface is mirrored to.
    pub index: u8,
    /// Bytes mirrored.
    pub bytes: u64,
    /// Packets mirrored.
    pub packets: u64,
}

/// `Ingress/Egress Interface(Index, VRF, OS)` and `Interface Statistics(Out, In, Errors)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IfaceRef {
    /// vif id.
    pub index: u16,
    /// Its VRF.
    pub vrf: u32,
    /// Its device (as `vif --list` prints after `OS:`), else its name.
    pub os: String,
    /// Packets sent.
    pub out_packets: u64,
    /// Packets received.
    pub in_packets: u64,
    /// RX plus TX errors.
    pub errors: u64,
    /// Mirror counters, when the interface is mirrored.
    pub mirror: Option<MirrorStats>,
}

impl IfaceRef {
    /// The interface of vif `id` from the stats region's rows, if there is one.
    pub fn from_rows(rows: &[VifRow], id: u16) -> Option<IfaceRef> {
        let r = rows.iter().find(|r| r.info.id == id)?;
        let (v, c) = (&r.info, &r.counters);
        Some(IfaceRef {
            index: v.id,
            vrf: v.vrf,
            os: if v.device.is_empty() { v.name.clone() } else { v.device.clone() },
            out_packets: c.tx_packets,
            in_packets: c.rx_packets,
            errors: c.rx_errors.wrapping_add(c.tx_errors),
            mirror: v.mirror_id.map(|index| MirrorStats { index, bytes: c.mirror_bytes, packets: c.mirror_packets }),
        })
    }
}

/// Layer 3 route information of one end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct L3Info {
    /// The matching route's prefix (none: no route matches).
    pub matching_route: Option<String>,
    /// Its nexthop.
    pub nexthop: Option<NhRef>,
    /// The nexthop's interface.
    pub interface: Option<IfaceRef>,
}

/// Layer 2 route information of the destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct L2Info {
    /// Destination MAC (the L3 route's stitched MAC).
    pub destination_mac: String,
    /// The bridge entry's nexthop (none: no bridge entry for the MAC).
    pub nexthop: Option<NhRef>,
    /// The nexthop's interface.
    pub interface: Option<IfaceRef>,
}

/// One end of the flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointInfo {
    /// VRF.
    pub vrf: u32,
    /// Layer 3 route information (none when the route information is unavailable).
    pub layer3: Option<L3Info>,
    /// Layer 2 route information (destination, when the L3 route has a stitched MAC).
    pub layer2: Option<L2Info>,
    /// Without route information: the interface the regions give (the source's vif whose
    /// nexthop is the flow's expected source nexthop).
    pub interface: Option<IfaceRef>,
}

/// Both blocks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlowEndpoints {
    /// Source Information.
    pub source: EndpointInfo,
    /// Destination Information.
    pub destination: EndpointInfo,
    /// Why the route information is missing (the control socket could not be reached).
    pub route_information_unavailable: Option<String>,
}

fn nh_ref(e: &NexthopEntry) -> NhRef {
    NhRef { id: e.id, vrf: e.vrf, kind: e.kind.clone() }
}

/// The nexthop `id` and its interface.
fn resolve_nh(l: &dyn Lookup, rows: &[VifRow], id: u32) -> Result<(Option<NhRef>, Option<IfaceRef>), ControlError> {
    match l.nh_get(id) {
        Ok(e) => Ok((Some(nh_ref(&e)), e.vif.and_then(|v| IfaceRef::from_rows(rows, v)))),
        Err(ControlError::Refused(_)) => Ok((None, None)),
        Err(e) => Err(e),
    }
}

fn l3(l: &dyn Lookup, rows: &[VifRow], vrf: u32, addr: &str) -> Result<(L3Info, Option<String>), ControlError> {
    let route = match l.route_lookup(vrf, addr) {
        Ok(r) => r,
        Err(ControlError::Refused(_)) => None,
        Err(e) => return Err(e),
    };
    let Some(r) = route else {
        return Ok((L3Info { matching_route: None, nexthop: None, interface: None }, None));
    };
    let (nexthop, interface) = resolve_nh(l, rows, r.nexthop)?;
    Ok((L3Info { matching_route: Some(r.prefix.clone()), nexthop, interface }, r.stitched_mac))
}

fn l2(l: &dyn Lookup, rows: &[VifRow], vrf: u32, mac: String) -> Result<L2Info, ControlError> {
    let entry = match l.route_lookup(vrf, &mac) {
        Ok(r) => r,
        Err(ControlError::Refused(_)) => None,
        Err(e) => return Err(e),
    };
    let (nexthop, interface) = match entry {
        Some(b) => resolve_nh(l, rows, b.nexthop)?,
        None => (None, None),
    };
    Ok(L2Info { destination_mac: mac, nexthop, interface })
}

/// What the blocks say when the control socket cannot be reached.
pub const UNREACHABLE: &str = "control socket unreachable (vRouter not running)";

/// Both blocks of `snap`: from `lookup` when it answers, else from the vif rows alone.
pub fn gather(snap: &FlowSnapshot, rows: &[VifRow], lookup: &dyn Lookup) -> FlowEndpoints {
    let k = &snap.key;
    let vrf = k.vrf();
    let asked = (|| -> Result<(EndpointInfo, EndpointInfo), ControlError> {
        let (src, _) = l3(lookup, rows, vrf, &k.src_ip().to_string())?;
        let (dst, mac) = l3(lookup, rows, vrf, &k.dst_ip().to_string())?;
        let layer2 = mac.map(|m| l2(lookup, rows, vrf, m)).transpose()?;
        Ok((
            EndpointInfo { vrf, layer3: Some(src), layer2: None, interface: None },
            EndpointInfo { vrf, layer3: Some(dst), layer2, interface: None },
        ))
    })();
    match asked {
        Ok((source, destination)) => FlowEndpoints { source, destination, route_information_unavailable: None },
        Err(e) => {
            let why = match e {
                ControlError::Unreachable(_) => UNREACHABLE.to_string(),
                ControlError::Broken(m) | ControlError::Refused(m) => m,
            };
            let ingress = rows
                .iter()
                .find(|r| r.info.nh_id == Some(snap.src_nh))
                .and_then(|r| IfaceRef::from_rows(rows, r.info.id));
            FlowEndpoints {
                source: EndpointInfo { vrf, layer3: None, layer2: None, interface: ingress },
                destination: EndpointInfo { vrf, layer3: None, layer2: None, interface: None },
                route_information_unavailable: Some(why),
            }
        }
    }
}

const FIELD_WIDTH: usize = 30;

fn pad(s: &mut String) {
    s.push_str(&" ".repeat(FIELD_WIDTH));
}

fn nh_line(s: &mut String, nh: Option<&NhRef>) {
    pad(s);
    match nh {
        Some(n) => {
            let vrf = n.vrf.map_or_else(|| "-".to_string(), |v| v.to_string());
            let _ = writeln!(s, "NextHop(Index, VRF, Type): {}, {vrf}, {}", n.id, type_upper(&n.kind));
        }
        None => s.push_str("NextHop(Index, VRF, Type): -\n"),
    }
}

fn iface_lines(s: &mut String, dir: &str, i: &IfaceRef) {
    pad(s);
    let _ = writeln!(s, "{dir} Interface(Index, VRF, OS): vif0/{}, {}, {}", i.index, i.vrf, i.os);
    pad(s);
    let _ = writeln!(s, "Interface Statistics(Out, In, Errors): {}, {}, {}", i.out_packets, i.in_packets, i.errors);
    if let Some(m) = &i.mirror {
        pad(s);
        let _ = writeln!(s, "Mirror Statistics(Index, Bytes, Packets): {}, {}, {}", m.index, m.bytes, m.packets);
    }
}

fn block(s: &mut String, title: &str, dir: &str, e: &EndpointInfo, unavailable: Option<&str>) {
    let _ = writeln!(s, "{:<FIELD_WIDTH$}VRF: {}", format!("{title}:"), e.vrf);
    pad(s);
    s.push_str("Layer 3 Route Information\n");
    match &e.layer3 {
        Some(l3) => {
            pad(s);
            let _ = writeln!(s, "Matching Route: {}", l3.matching_route.as_deref().unwrap_or("none"));
            if l3.matching_route.is_some() {
                nh_line(s, l3.nexthop.as_ref());
            }
            if let Some(i) = &l3.interface {
                iface_lines(s, dir, i);
            }
        }
        None => {
            pad(s);
            let _ = writeln!(s, "Route information unavailable: {}", unavailable.unwrap_or("no reply"));
        }
    }
    if let Some(i) = &e.interface {
        iface_lines(s, dir, i);
    }
    if let Some(l2) = &e.layer2 {
        s.push('\n');
        pad(s);
        s.push_str("Layer 2 Route Information\n");
        pad(s);
        let _ = writeln!(s, "DestinationMAC: {}", mac_tf(&l2.destination_mac));
        nh_line(s, l2.nexthop.as_ref());
        if let Some(i) = &l2.interface {
            iface_lines(s, dir, i);
        }
    }
}

/// The `Source Information:` and `Destination Information:` blocks.
pub fn render_endpoints(x: &FlowEndpoints) -> String {
    let mut s = String::new();
    let why = x.route_information_unavailable.as_deref();
    block(&mut s, "Source Information", "Ingress", &x.source, why);
    block(&mut s, "Destination Information", "Egress", &x.destination, why);
    s
}

/// The blocks as JSON values (`source_information`, `destination_information`,
/// `route_information_unavailable`), to add to the flow's object.
pub fn endpoints_json(x: &FlowEndpoints) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    let v = |e: &EndpointInfo| serde_json::to_value(e).expect("plain data");
    m.insert("source_information".into(), v(&x.source));
    m.insert("destination_information".into(), v(&x.destination));
    m.insert("route_information_unavailable".into(), x.route_information_unavailable.clone().into());
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use flow_table::{Action, FlowKey};
    use vrouter_abi::drop_reason::DROP_REASON_COUNT;
    use vrouter_abi::stats::{VifCounters, VifInfo, VIF_TYPE_VIRTUAL};

    pub(crate) fn snap() -> FlowSnapshot {
        FlowSnapshot {
            index: 1604,
            gen: 2,
            key: FlowKey::v4(1, 1, [192, 168, 122, 1].into(), [11, 0, 0, 3].into(), 6123, 0),
            flags: flow_table::flags::ACTIVE,
            action: Action::Forward,
            drop_reason: 0,
            rflow: Some(2348),
            src_nh: 9,
            tcp_flags: 0,
            setup_time: 0,
            last_seen: 0,
            mirror: 255,
            sec_mirror: 255,
            underlay_sport: 51969,
            bytes: 84,
            packets: 1,
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

    pub(crate) fn rows() -> Vec<VifRow> {
        let row =
            |info: VifInfo, c: VifCounters| VifRow { info: info.decode(), counters: c, drops: [0; DROP_REASON_COUNT] };
        let vgw = VifInfo::new(3, VIF_TYPE_VIRTUAL, "vgw").vrf(1).device("vgw").nh(9);
        let tap =
            VifInfo::new(5, VIF_TYPE_VIRTUAL, "tap15928739-41").vrf(1).device("tap15928739-41").mirror(true, true, 0);
        vec![
            row(vgw, VifCounters { tx_packets: 24548, rx_packets: 17, ..VifCounters::default() }),
            row(
                tap,
                VifCounters {
                    tx_packets: 24542,
                    rx_packets: 24532,
                    mirror_bytes: 1693570,
                    mirror_packets: 24538,
                    ..VifCounters::default()
                },
            ),
        ]
    }

    struct Fake(bool);

    fn route(prefix: &str, nh: u32, mac: Option<&str>) -> RouteEntry {
        RouteEntry {
            vrf: 1,
            family: "inet".into(),
            prefix: prefix.into(),
            prefix_len: 0,
            nexthop: nh,
            label: None,
            stitched_mac: mac.map(str::to_string),
        }
    }

    impl Lookup for Fake {
        fn route_lookup(&self, _vrf: u32, addr: &str) -> Result<Option<RouteEntry>, ControlError> {
            if !self.0 {
                return Err(ControlError::Unreachable("vRouter is not running".into()));
            }
            Ok(match addr {
                "192.168.122.1" => Some(route("0.0.0.0/0", 9, None)),
                "11.0.0.3" => Some(route("11.0.0.3/32", 21, Some("02:15:92:87:39:41"))),
                "02:15:92:87:39:41" => Some(route("02:15:92:87:39:41", 24, None)),
                _ => None,
            })
        }
        fn nh_get(&self, id: u32) -> Result<NexthopEntry, ControlError> {
            let vif = match id {
                9 => 3,
                21 | 24 => 5,
                _ => return Err(ControlError::Refused(format!("nexthop {id} does not exist"))),
            };
            Ok(NexthopEntry {
                id,
                kind: "encap".into(),
                index: id,
                refs: 1,
                vif: Some(vif),
                vrf: Some(1),
                encap_data: None,
                encap: None,
                src_ip: None,
                dst_ip: None,
                label: None,
                members: vec![],
            })
        }
    }

    #[test]
    fn blocks_like_the_blueprint() {
        let x = gather(&snap(), &rows(), &Fake(true));
        let want = "\
Source Information:           VRF: 1
                              Layer 3 Route Information
                              Matching Route: 0.0.0.0/0
                              NextHop(Index, VRF, Type): 9, 1, ENCAP
                              Ingress Interface(Index, VRF, OS): vif0/3, 1, vgw
                              Interface Statistics(Out, In, Errors): 24548, 17, 0
Destination Information:      VRF: 1
                              Layer 3 Route Information
                              Matching Route: 11.0.0.3/32
                              NextHop(Index, VRF, Type): 21, 1, ENCAP
                              Egress Interface(Index, VRF, OS): vif0/5, 1, tap15928739-41
                              Interface Statistics(Out, In, Errors): 24542, 24532, 0
                              Mirror Statistics(Index, Bytes, Packets): 0, 1693570, 24538

                              Layer 2 Route Information
                              DestinationMAC: 2:15:92:87:39:41
                              NextHop(Index, VRF, Type): 24, 1, ENCAP
                              Egress Interface(Index, VRF, OS): vif0/5, 1, tap15928739-41
                              Interface Statistics(Out, In, Errors): 24542, 24532, 0
                              Mirror Statistics(Index, Bytes, Packets): 0, 1693570, 24538
";
        assert_eq!(render_endpoints(&x), want);
        let j = endpoints_json(&x);
        assert_eq!(j["source_information"]["layer3"]["matching_route"], "0.0.0.0/0");
        assert_eq!(j["destination_information"]["layer3"]["interface"]["mirror"]["packets"], 24538);
        assert_eq!(j["destination_information"]["layer2"]["nexthop"]["type"], "encap");
        assert!(j["route_information_unavailable"].is_null());
    }

    #[test]
    fn without_the_control_socket() {
        let x = gather(&snap(), &rows(), &Fake(false));
        let want = "\
Source Information:           VRF: 1
                              Layer 3 Route Information
                              Route information unavailable: control socket unreachable (vRouter not running)
                              Ingress Interface(Index, VRF, OS): vif0/3, 1, vgw
                              Interface Statistics(Out, In, Errors): 24548, 17, 0
Destination Information:      VRF: 1
                              Layer 3 Route Information
                              Route information unavailable: control socket unreachable (vRouter not running)
";
        assert_eq!(render_endpoints(&x), want);
        let j = endpoints_json(&x);
        assert_eq!(j["route_information_unavailable"], UNREACHABLE);
        assert!(j["source_information"]["layer3"].is_null());
        assert_eq!(j["source_information"]["interface"]["os"], "vgw");
    }

    #[test]
    fn no_matching_route() {
        let mut s = snap();
        s.key = FlowKey::v4(1, 1, [1, 1, 1, 1].into(), [2, 2, 2, 2].into(), 1, 2);
        let out = render_endpoints(&gather(&s, &rows(), &Fake(true)));
        assert!(out.contains("Matching Route: none\nDestination Information:"), "{out}");
    }
}
