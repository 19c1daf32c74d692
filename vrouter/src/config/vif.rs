//! `[[vif]]`: vRouter interfaces, with their source (anti-spoofing) check settings.

use super::check::{is_uuid, prefix_problem, unicast_mac_problem, Checker, ConfigError, Unique, MAX_VN_NAME};
use super::value::{Mac, Prefix};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use toml::Spanned;

/// Highest vif id (exclusive).
pub const MAX_VIFS: u32 = 4096;
/// Longest vif name (bytes).
const MAX_VIF_NAME: usize = 31;
/// Allowed address pairs of one VM vif (the source check scans them linearly).
const MAX_ADDRESS_PAIRS: usize = 32;

/// vif type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VifType {
    /// Fabric (underlay) port; `physical` is accepted as an alias.
    #[serde(alias = "physical")]
    Fabric,
    /// VM interface; `vm` is accepted as an alias.
    #[serde(alias = "vm")]
    Virtual,
    /// The host (vhost0) interface: receives packets for the vRouter's own addresses.
    Host,
}

/// One vRouter interface bound to a DPDK port.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VifConfig {
    /// vif index (`vif0/<id>`), unique.
    pub id: u16,
    /// Interface name (e.g. `tap-vm1`, `eth0`), unique, at most 31 bytes.
    pub name: String,
    /// Fabric, virtual (VM) or host; `type` in TOML.
    #[serde(rename = "type")]
    pub kind: VifType,
    /// DPDK device name (e.g. `net_pcap0` or a PCI address) the vif is bound to. A vhost-user
    /// vif may leave it out: its device is then `net_vhost<id>`.
    #[serde(default)]
    pub device: String,
    /// Arguments to probe the device with when the vif is added at runtime (a vdev not in
    /// `eal.vdevs`): the device is hot-plugged with `rte_dev_probe("<device>,<devargs>")`
    /// and removed with the vif.
    #[serde(default)]
    pub devargs: Option<String>,
    /// A vhost-user VM port (`vhost = { socket = "...", mode = "client", queues = 2 }`): the
    /// vRouter creates a `net_vhost` device on the socket (virtual vifs only; not with
    /// `devargs`). Its RX and TX queue pairs are `queues`; `rx_queues` follows.
    #[serde(default)]
    pub vhost: Option<VhostConfig>,
    /// The vif's MAC (unicast): frames to it are for the vRouter (as to the router MAC); the source
    /// of ICMP errors sent on the vif.
    pub mac: Mac,
    /// The vif's IPv4 address (the VM's address on a VM vif); used by the source check and ARP.
    #[serde(default)]
    pub ip: Option<Ipv4Addr>,
    /// The vif's IPv6 address (the VM's address on a VM vif); used by the source check and ND.
    #[serde(default)]
    pub ip6: Option<Ipv6Addr>,
    /// VRF id (`[[vrf]]`) that packets received on the vif are routed in.
    pub vrf: u32,
    /// RX queues to open (RSS spreads packets over them). Default 1.
    #[serde(default = "default_queues")]
    pub rx_queues: u16,
    /// MTU in bytes, 68..=9000; default 1500 (set on the DPDK port and reported in the vif record).
    #[serde(default)]
    pub mtu: Option<u16>,
    /// UUID of the VM the vif belongs to (reported in the exported VMI UVE).
    #[serde(default)]
    pub vm_uuid: Option<String>,
    /// UUID of the VM interface (tf VMI); names the vif in exported UVEs when set.
    #[serde(default)]
    pub vmi_uuid: Option<String>,
    /// Virtual network (tf FQ VN name) of the vif: matched by `vn:` policy addresses, tenants and
    /// flow records.
    #[serde(default)]
    pub vn_name: Option<String>,
    /// Answer ARP/ND for addresses routed in the VRF (VM vifs; default true there).
    #[serde(default)]
    pub proxy_arp: Option<bool>,
    /// Security groups (by `[[security_group]]` name) applied to this VMI; none = no filtering.
    #[serde(default)]
    pub security_groups: Vec<String>,
    /// Interface mirroring: the `[[analyzer]]` that receives copies of this vif's traffic
    /// (needs `mirror_rx` and/or `mirror_tx`).
    #[serde(default)]
    pub mirror_to: Option<String>,
    /// Mirror every packet the vif receives, as received (vif flag `Mr`).
    #[serde(default)]
    pub mirror_rx: bool,
    /// Mirror every packet the vif transmits, as sent (vif flag `Mt`).
    #[serde(default)]
    pub mirror_tx: bool,
    /// Source (anti-spoofing) checks on what the VM sends: source MAC (with `vm_mac`) and
    /// source IP (the vif's `ip`/`ip6`, an allowed address pair, or a route in the VRF back
    /// to this vif). Virtual vifs only; default true there. Setting it on another vif type
    /// is an error.
    #[serde(default)]
    pub source_check: Option<bool>,
    /// The VM's own MAC: when set (and `source_check` is on), frames from the VM must carry
    /// it, or an allowed address pair's `mac`, as source MAC. Virtual vifs only.
    #[serde(default)]
    pub vm_mac: Option<Mac>,
    /// Other source addresses the VM may use (OpenStack / TF allowed address pairs): a
    /// prefix (a plain address is a /32 or /128) and optionally a MAC. Virtual vifs only.
    #[serde(default)]
    pub allowed_address_pairs: Vec<AddressPairConfig>,
}

/// Which side of the vhost-user socket the vRouter is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VhostMode {
    /// The vRouter connects to the VM's socket (QEMU is the server, `server=on` on its
    /// chardev) and reconnects whenever it goes away: the vRouter can restart without the VM.
    #[default]
    Client,
    /// The vRouter creates the socket and the VM connects (QEMU `reconnect=N` to survive a
    /// vRouter restart).
    Server,
}

/// Most vhost-user queue pairs of one vif (tf `VR_DPDK_VIRTIO_MAX_QUEUES`).
pub const MAX_VHOST_QUEUES: u16 = 16;
/// Longest vhost-user socket path (`sun_path` holds 108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;

/// A vhost-user port: `{ socket = "/var/run/vrouter/vm1.sock", mode = "client", queues = 1 }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VhostConfig {
    /// Path of the vhost-user UNIX socket (absolute, at most 107 bytes, no `,`).
    pub socket: String,
    /// `client` (default) or `server`.
    #[serde(default)]
    pub mode: VhostMode,
    /// Queue pairs (1..=16, default 1): the guest's queues are spread over the forwarding lcores.
    #[serde(default = "default_queues")]
    pub queues: u16,
}

impl VifConfig {
    /// Fills what the configuration leaves to be derived: a vhost-user vif's device name
    /// (`net_vhost<id>`) and RX queues (its queue pairs). Run before validation by every
    /// path that makes a `VifConfig` (the file and the programming API).
    pub fn resolve(&mut self) {
        if let Some(v) = &self.vhost {
            if self.device.is_empty() {
                self.device = format!("net_vhost{}", self.id);
            }
            if self.rx_queues == default_queues() {
                self.rx_queues = v.queues;
            }
        }
    }

    /// The device arguments the vRouter probes the vif's device with itself
    /// (`rte_dev_probe`), when it creates the device: a vhost-user port
    /// (`net_vhost3,iface=/run/vm.sock,queues=2,client=1`) or a vif with `devargs`. `None`:
    /// the device comes from the EAL arguments (`eal.vdevs`, `eal.pci`).
    pub fn probe_args(&self) -> Option<String> {
        if let Some(v) = &self.vhost {
            let client = u8::from(v.mode == VhostMode::Client);
            return Some(format!("{},iface={},queues={},client={client}", self.device, v.socket, v.queues));
        }
        self.devargs.as_ref().map(|a| format!("{},{a}", self.device))
    }
}

/// One allowed address pair of a VM vif: `{ ip = "10.0.0.0/24", mac = "02:00:00:00:00:09" }`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AddressPairConfig {
    /// IPv4 or IPv6 prefix; a plain address means the host prefix (/32 or /128).
    #[serde(deserialize_with = "host_or_prefix")]
    pub ip: Prefix,
    /// A source MAC the VM may also use (accepted by the source MAC check when `vm_mac` is set).
    #[serde(default)]
    pub mac: Option<Mac>,
}

/// A prefix written `addr/len`, or a plain address (the host prefix).
fn host_or_prefix<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Prefix, D::Error> {
    let s = String::deserialize(d)?;
    if s.contains('/') {
        return s.parse().map_err(serde::de::Error::custom);
    }
    let addr: IpAddr = s
        .trim()
        .parse()
        .map_err(|_| serde::de::Error::custom(format!("invalid address {s:?} (expected an IP address or prefix)")))?;
    Ok(Prefix { addr, len: if addr.is_ipv4() { 32 } else { 128 } })
}

impl Checker<'_> {
    pub(super) fn vifs(&self) -> Result<(), ConfigError> {
        if self.cfg.vifs.is_empty() {
            return Err(self.invalid(None, "vif".into(), "at least one [[vif]] is needed".into()));
        }
        let list = &self.cfg.vifs;
        let (mut ids, mut names) = (Unique::entries("vif", list), Unique::entries("vif", list));
        let (mut devices, mut host) = (Unique::entries("vif", list), Unique::entries("vif", list));
        let mut sockets = Unique::entries("vif", list);
        for (i, e) in list.iter().enumerate() {
            let vif = e.get_ref();
            let err = |key: &str, msg: String| Err(self.entry("vif", i, e, key, msg));
            if u32::from(vif.id) >= MAX_VIFS {
                return err("id", format!("vif id {} is not below {MAX_VIFS}", vif.id));
            }
            ids.check(self, i, "id", vif.id, |_, at| format!("duplicate vif id {} ({at})", vif.id))?;
            if vif.name.is_empty() {
                return err("name", "must not be empty".into());
            }
            if vif.name.len() > MAX_VIF_NAME {
                return err("name", format!("{:?} is longer than {MAX_VIF_NAME} bytes", vif.name));
            }
            names.check(self, i, "name", vif.name.as_str(), |_, at| {
                format!("duplicate vif name {:?} ({at})", vif.name)
            })?;
            if vif.device.trim().is_empty() {
                return err("device", "must not be empty".into());
            }
            self.vif_vhost(i, e)?;
            if let Some(v) = &vif.vhost {
                sockets.check(self, i, "vhost", v.socket.as_str(), |first, at| {
                    format!("socket {:?} is already vif[{first}]'s ({at})", v.socket)
                })?;
            }
            if let Some(a) = &vif.devargs {
                if a.trim().is_empty() || a.contains(char::is_whitespace) {
                    return err("devargs", "must be non-empty key=value pairs without spaces".into());
                }
            }
            devices.check(self, i, "device", vif.device.as_str(), |first, at| {
                format!("device {:?} is already bound to vif[{first}] ({at})", vif.device)
            })?;
            if let Some(why) = unicast_mac_problem(vif.mac) {
                return err("mac", format!("{} is {why}", vif.mac));
            }
            if !self.vrfs.contains_key(&vif.vrf) {
                return err("vrf", format!("vrf {} is not defined", vif.vrf));
            }
            if !(1..=16).contains(&vif.rx_queues) {
                return err("rx_queues", format!("{} is out of range 1..=16", vif.rx_queues));
            }
            if let Some(mtu) = vif.mtu {
                if !(68..=9000).contains(&mtu) {
                    return err("mtu", format!("{mtu} is out of range 68..=9000"));
                }
            }
            if vif.kind == VifType::Host {
                host.check(self, i, "type", (), |first, at| {
                    format!("only one host vif is allowed; vif[{first}] is one ({at})")
                })?;
            }
            for (key, uuid) in [("vm_uuid", &vif.vm_uuid), ("vmi_uuid", &vif.vmi_uuid)] {
                if let Some(uuid) = uuid {
                    if !is_uuid(uuid) {
                        return err(key, format!("{uuid:?} is not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)"));
                    }
                }
            }
            if let Some(vn) = &vif.vn_name {
                if vn.len() > MAX_VN_NAME {
                    return err("vn_name", format!("{vn:?} is longer than {MAX_VN_NAME} bytes"));
                }
            }
            if !vif.security_groups.is_empty() && vif.kind != VifType::Virtual {
                return err(
                    "security_groups",
                    format!(
                        "vif {} is of type {}; security groups apply to virtual (VM) vifs",
                        vif.id,
                        type_name(vif.kind)
                    ),
                );
            }
            let mut seen = Unique::items();
            for sg in &vif.security_groups {
                if !self.sgs.contains_key(sg.as_str()) {
                    return err("security_groups", format!("security group {sg:?} is not defined"));
                }
                if seen.repeated(sg.as_str()) {
                    return err("security_groups", format!("security group {sg:?} is listed twice"));
                }
            }
            match (&vif.mirror_to, vif.mirror_rx || vif.mirror_tx) {
                (Some(name), true) => {
                    if !self.analyzers.contains_key(name.as_str()) {
                        return err("mirror_to", format!("analyzer {name:?} is not defined"));
                    }
                }
                (Some(_), false) => {
                    return err("mirror_to", "set mirror_rx and/or mirror_tx to mirror this vif".into())
                }
                (None, true) => {
                    let key = if vif.mirror_rx { "mirror_rx" } else { "mirror_tx" };
                    return err(key, "needs mirror_to (the analyzer that receives the copies)".into());
                }
                (None, false) => {}
            }
            self.vif_source_check(i, e)?;
        }
        Ok(())
    }

    /// `vhost`: virtual vifs only, not with `devargs`; an absolute socket path that fits
    /// `sun_path` and the device arguments; 1..=16 queue pairs; a `net_vhost` device.
    fn vif_vhost(&self, i: usize, e: &Spanned<VifConfig>) -> Result<(), ConfigError> {
        let vif = e.get_ref();
        let Some(v) = &vif.vhost else { return Ok(()) };
        let line = self.key_line(&format!("vif[{i}]"), e, "vhost");
        let err = |key: &str, msg: String| Err(self.invalid(Some(line), format!("vif[{i}].vhost.{key}"), msg));
        if vif.kind != VifType::Virtual {
            return Err(self.entry(
                "vif",
                i,
                e,
                "vhost",
                format!("vif {} is of type {}; vhost-user ports are virtual (VM) vifs", vif.id, type_name(vif.kind)),
            ));
        }
        if vif.devargs.is_some() {
            return Err(self.entry("vif", i, e, "devargs", "a vhost-user vif's device arguments come from vhost"));
        }
        if !vif.device.starts_with("net_vhost") {
            return Err(self.entry(
                "vif",
                i,
                e,
                "device",
                format!("{:?}: a vhost-user vif's device is a net_vhost<N> (or left out)", vif.device),
            ));
        }
        if !v.socket.starts_with('/') {
            return err("socket", format!("{:?} is not an absolute path", v.socket));
        }
        if v.socket.len() > MAX_SOCKET_PATH {
            return err(
                "socket",
                format!("{} bytes; a UNIX socket path holds at most {MAX_SOCKET_PATH}", v.socket.len()),
            );
        }
        if v.socket.contains(|c: char| c == ',' || c.is_whitespace() || c.is_control()) {
            return err("socket", format!("{:?} has a comma, a space or a control character", v.socket));
        }
        if !(1..=MAX_VHOST_QUEUES).contains(&v.queues) {
            return err("queues", format!("{} is out of range 1..={MAX_VHOST_QUEUES}", v.queues));
        }
        if vif.rx_queues != v.queues {
            return Err(self.entry(
                "vif",
                i,
                e,
                "rx_queues",
                format!(
                    "{}: a vhost-user vif has vhost.queues ({}) RX queues; leave rx_queues out",
                    vif.rx_queues, v.queues
                ),
            ));
        }
        Ok(())
    }

    /// `source_check`, `vm_mac` and `allowed_address_pairs`: VM vifs only; unicast MACs;
    /// pair prefixes without host bits, at most [`MAX_ADDRESS_PAIRS`].
    pub(super) fn vif_source_check(&self, i: usize, e: &Spanned<VifConfig>) -> Result<(), ConfigError> {
        let vif = e.get_ref();
        let err = |key: &str, msg: String| Err(self.entry("vif", i, e, key, msg));
        if vif.kind != VifType::Virtual {
            let set = [
                ("source_check", vif.source_check.is_some()),
                ("vm_mac", vif.vm_mac.is_some()),
                ("allowed_address_pairs", !vif.allowed_address_pairs.is_empty()),
            ];
            if let Some((key, _)) = set.iter().find(|(_, set)| *set) {
                return err(
                    key,
                    format!(
                        "vif {} is of type {}; source checks apply to virtual (VM) vifs",
                        vif.id,
                        type_name(vif.kind)
                    ),
                );
            }
            return Ok(());
        }
        if let Some(m) = vif.vm_mac {
            if let Some(why) = unicast_mac_problem(m) {
                return err("vm_mac", format!("{m} is {why}"));
            }
        }
        let pairs = &vif.allowed_address_pairs;
        if pairs.len() > MAX_ADDRESS_PAIRS {
            return err(
                "allowed_address_pairs",
                format!("{} pairs; at most {MAX_ADDRESS_PAIRS} are allowed", pairs.len()),
            );
        }
        let line = self.key_line(&format!("vif[{i}]"), e, "allowed_address_pairs");
        let pair_err = |j: usize, key: &str, msg: String| {
            Err(self.invalid(Some(line), format!("vif[{i}].allowed_address_pairs[{j}].{key}"), msg))
        };
        for (j, p) in pairs.iter().enumerate() {
            if let Some(why) = prefix_problem(p.ip) {
                return pair_err(j, "ip", why);
            }
            if let Some(m) = p.mac {
                if let Some(why) = unicast_mac_problem(m) {
                    return pair_err(j, "mac", format!("{m} is {why}"));
                }
            }
        }
        Ok(())
    }
}

pub(super) fn type_name(t: VifType) -> &'static str {
    match t {
        VifType::Fabric => "fabric",
        VifType::Virtual => "virtual",
        VifType::Host => "host",
    }
}

fn default_queues() -> u16 {
    1
}
