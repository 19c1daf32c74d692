//! `vif --add` / `vif --delete`: the `vif_set` request (a `[[vif]]` table, with `devargs`
//! when the vif's DPDK device is a vdev to hot-plug) and `vif_delete`.

use std::net::{Ipv4Addr, Ipv6Addr};

use serde_json::{json, Map, Value};

use crate::program::{mac_config, parse_mac};
use crate::Failure;

/// vif types `vif --add --type` takes (the `[[vif]]` `type`; `physical` and `vm` are the
/// configuration's aliases).
pub const VIF_TYPES: [&str; 5] = ["fabric", "physical", "virtual", "vm", "host"];

/// What `vif --add` was given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VifAddArgs {
    /// `--add NAME`: the interface name.
    pub name: String,
    /// `--id`.
    pub id: Option<u16>,
    /// `--type`.
    pub kind: Option<String>,
    /// `--device`: DPDK device name (a vdev name such as `net_tap5`, or a PCI address).
    pub device: Option<String>,
    /// `--mac`.
    pub mac: Option<String>,
    /// `--ip`.
    pub ip: Option<String>,
    /// `--ip6`.
    pub ip6: Option<String>,
    /// `--vrf`.
    pub vrf: Option<u32>,
    /// `--mtu`.
    pub mtu: Option<u16>,
    /// `--rx-queues`.
    pub rx_queues: Option<u16>,
    /// `--vn-name`.
    pub vn_name: Option<String>,
    /// `--devargs`: the vdev's arguments, to hot-plug it (`iface=tap5`).
    pub devargs: Option<String>,
    /// `--vhost-socket`: a vhost-user VM port on this socket (then `--device` may be left out).
    pub vhost_socket: Option<String>,
    /// `--vhost-mode`: `client` (the default) or `server`.
    pub vhost_mode: Option<String>,
    /// `--vhost-queues`: queue pairs of the vhost-user port.
    pub vhost_queues: Option<u16>,
}

/// The `vif_set` request, or the error naming the option that is missing or invalid
/// (nothing is sent then).
pub fn add_request(a: &VifAddArgs) -> Result<Value, Failure> {
    let need = |v: bool, opt: &str| if v { Ok(()) } else { Err(Failure(format!("--add needs {opt}"))) };
    need(a.id.is_some(), "--id")?;
    need(a.kind.is_some(), "--type")?;
    need(a.device.is_some() || a.vhost_socket.is_some(), "--device (or --vhost-socket)")?;
    if a.vhost_socket.is_none() {
        if a.vhost_mode.is_some() {
            return Err(Failure("--vhost-mode needs --vhost-socket".into()));
        }
        if a.vhost_queues.is_some() {
            return Err(Failure("--vhost-queues needs --vhost-socket".into()));
        }
    }
    need(a.mac.is_some(), "--mac")?;
    need(a.vrf.is_some(), "--vrf")?;
    if a.name.is_empty() || a.name.len() > 31 {
        return Err(Failure(format!("--add: interface name {:?} must be 1 to 31 bytes", a.name)));
    }
    let mac = parse_mac("--mac", a.mac.as_deref().unwrap_or_default())?;
    let mut vif = Map::new();
    vif.insert("id".into(), a.id.into());
    vif.insert("name".into(), a.name.clone().into());
    vif.insert("type".into(), a.kind.clone().into());
    if let Some(d) = &a.device {
        vif.insert("device".into(), d.clone().into());
    }
    vif.insert("mac".into(), mac_config(&mac).into());
    vif.insert("vrf".into(), a.vrf.into());
    if let Some(ip) = &a.ip {
        let ip: Ipv4Addr = ip.parse().map_err(|_| Failure(format!("--ip: invalid IPv4 address {ip:?}")))?;
        vif.insert("ip".into(), ip.to_string().into());
    }
    if let Some(ip) = &a.ip6 {
        let ip: Ipv6Addr = ip.parse().map_err(|_| Failure(format!("--ip6: invalid IPv6 address {ip:?}")))?;
        vif.insert("ip6".into(), ip.to_string().into());
    }
    if let Some(m) = a.mtu {
        vif.insert("mtu".into(), m.into());
    }
    if let Some(q) = a.rx_queues {
        vif.insert("rx_queues".into(), q.into());
    }
    if let Some(v) = &a.vn_name {
        vif.insert("vn_name".into(), v.clone().into());
    }
    if let Some(d) = &a.devargs {
        vif.insert("devargs".into(), d.clone().into());
    }
    if let Some(socket) = &a.vhost_socket {
        let mut v = Map::new();
        v.insert("socket".into(), socket.clone().into());
        if let Some(m) = &a.vhost_mode {
            v.insert("mode".into(), m.clone().into());
        }
        if let Some(q) = a.vhost_queues {
            v.insert("queues".into(), q.into());
        }
        vif.insert("vhost".into(), v.into());
    }
    Ok(json!({"cmd": "vif_set", "vif": vif}))
}

/// The `vif_delete` request.
pub fn delete_request(id: u16) -> Value {
    json!({"cmd": "vif_delete", "id": id})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> VifAddArgs {
        VifAddArgs {
            name: "tap-vm9".into(),
            id: Some(9),
            kind: Some("virtual".into()),
            device: Some("net_tap9".into()),
            mac: Some("2:0:0:0:0:9".into()),
            vrf: Some(1),
            ..VifAddArgs::default()
        }
    }

    #[test]
    fn add_request_is_a_vif_table() {
        let a =
            VifAddArgs { ip: Some("10.0.0.9".into()), devargs: Some("iface=tap9".into()), mtu: Some(1400), ..args() };
        assert_eq!(
            add_request(&a).unwrap(),
            json!({"cmd":"vif_set","vif":{"id":9,"name":"tap-vm9","type":"virtual","device":"net_tap9",
                   "mac":"02:00:00:00:00:09","vrf":1,"ip":"10.0.0.9","mtu":1400,"devargs":"iface=tap9"}})
        );
        assert_eq!(delete_request(9), json!({"cmd":"vif_delete","id":9}));
        let vh =
            VifAddArgs { device: None, vhost_socket: Some("/run/vm9.sock".into()), vhost_queues: Some(2), ..args() };
        assert_eq!(
            add_request(&vh).unwrap(),
            json!({"cmd":"vif_set","vif":{"id":9,"name":"tap-vm9","type":"virtual",
                   "mac":"02:00:00:00:00:09","vrf":1,"vhost":{"socket":"/run/vm9.sock","queues":2}}})
        );
        let e = add_request(&VifAddArgs { device: None, ..args() }).unwrap_err().0;
        assert_eq!(e, "--add needs --device (or --vhost-socket)");
        let e = add_request(&VifAddArgs { vhost_queues: Some(2), ..args() }).unwrap_err().0;
        assert_eq!(e, "--vhost-queues needs --vhost-socket");
    }

    #[test]
    fn add_errors_name_the_option() {
        assert_eq!(add_request(&VifAddArgs { vrf: None, ..args() }).unwrap_err().0, "--add needs --vrf");
        assert_eq!(add_request(&VifAddArgs { id: None, ..args() }).unwrap_err().0, "--add needs --id");
        assert!(add_request(&VifAddArgs { mac: Some("zz".into()), ..args() })
            .unwrap_err()
            .0
            .starts_with("--mac: invalid MAC"));
        assert!(add_request(&VifAddArgs { ip: Some("10.0.0".into()), ..args() })
            .unwrap_err()
            .0
            .starts_with("--ip: invalid"));
        assert!(add_request(&VifAddArgs { name: "x".repeat(32), ..args() }).unwrap_err().0.contains("1 to 31 bytes"));
    }
}
