//! The TOML configuration schema (what an operator writes).
//!
//! Every table rejects unknown fields, so a typo is an error that names the field and line
//! instead of a silently ignored setting. Cross-references (a route's nexthop, a vif's VRF)
//! are checked in [`fn@super::validate`].

use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub eal: EalConfig,
    pub vrouter: VrouterConfig,
    #[serde(default, rename = "vif")]
    pub vifs: Vec<Spanned<VifConfig>>,
    #[serde(default, rename = "vrf")]
    pub vrfs: Vec<Spanned<VrfConfig>>,
    #[serde(default, rename = "nexthop")]
    pub nexthops: Vec<Spanned<NexthopConfig>>,
    #[serde(default, rename = "route")]
    pub routes: Vec<Spanned<RouteConfig>>,
    #[serde(default, rename = "bridge")]
    pub bridge: Vec<Spanned<BridgeConfig>>,
    #[serde(default, rename = "label")]
    pub labels: Vec<Spanned<LabelConfig>>,
}

/// DPDK EAL settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EalConfig {
    /// CPU that runs the main (control) thread.
    #[serde(default)]
    pub main_core: u32,
    /// CPUs that run forwarding lcores, one pinned lcore each. Must not contain `main_core`.
    pub forwarding_cores: Vec<u32>,
    /// Memory for DPDK in MiB (`-m`).
    #[serde(default = "default_memory_mb")]
    pub memory_mb: u32,
    /// Run without hugepages (`--no-huge`).
    #[serde(default = "default_true")]
    pub no_huge: bool,
    /// `--file-prefix`: one primary process per prefix. Defaults to `vrouter`.
    #[serde(default)]
    pub file_prefix: Option<String>,
    /// Virtual devices (`--vdev`), e.g. `net_pcap0,rx_pcap=in.pcap,tx_pcap=out.pcap`.
    #[serde(default)]
    pub vdevs: Vec<String>,
    /// PCI devices to use (`-a`). When empty, `--no-pci` is passed.
    #[serde(default)]
    pub pci: Vec<String>,
    /// Further EAL arguments, passed as given.
    #[serde(default)]
    pub extra_args: Vec<String>,
    /// Mbufs in the packet pool (per socket).
    #[serde(default = "default_mbufs")]
    pub mbufs: u32,
    /// RX and TX descriptors per queue.
    #[serde(default = "default_ring")]
    pub rx_desc: u16,
    #[serde(default = "default_ring")]
    pub tx_desc: u16,
}

/// vRouter-wide settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VrouterConfig {
    /// Run directory: the stats region (and later the flow table) are created here.
    pub run_dir: PathBuf,
    /// This vRouter's fabric (underlay) IPv4 address: source of tunnels, target of decap.
    pub router_ip: Ipv4Addr,
    /// MAC the vRouter answers ARP/ND with for VM gateways and uses as L3 source MAC
    /// towards VMs (tf-vrouter uses the VRRP MAC 00:00:5e:00:01:00).
    #[serde(default = "default_router_mac")]
    pub router_mac: Mac,
    /// Seconds between one-line summaries on stdout (0 disables).
    #[serde(default = "default_summary")]
    pub summary_interval_s: u32,
}

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
    pub name: String,
    #[serde(rename = "type")]
    pub kind: VifType,
    /// DPDK device name (e.g. `net_pcap0` or a PCI address) the vif is bound to.
    pub device: String,
    pub mac: Mac,
    #[serde(default)]
    pub ip: Option<Ipv4Addr>,
    #[serde(default)]
    pub ip6: Option<Ipv6Addr>,
    pub vrf: u32,
    /// RX queues to open (RSS spreads packets over them). Default 1.
    #[serde(default = "default_queues")]
    pub rx_queues: u16,
    #[serde(default)]
    pub mtu: Option<u16>,
    #[serde(default)]
    pub vm_uuid: Option<String>,
    #[serde(default)]
    pub vmi_uuid: Option<String>,
    #[serde(default)]
    pub vn_name: Option<String>,
    /// Answer ARP/ND for addresses routed in the VRF (VM vifs; default true there).
    #[serde(default)]
    pub proxy_arp: Option<bool>,
}

/// A VRF (routing instance).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VrfConfig {
    pub id: u32,
    pub name: String,
    /// VXLAN VNI that maps fabric packets into this VRF.
    #[serde(default)]
    pub vxlan_vni: Option<u32>,
}

/// Tunnel encapsulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TunnelEncap {
    Mplsoudp,
    Vxlan,
}

/// A nexthop. The `type` field selects the variant.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum NexthopConfig {
    /// L2 rewrite and send on a local vif (a VM, or the fabric for underlay next hops).
    Encap {
        id: u32,
        vif: u16,
        /// Destination MAC written into the frame (the VM's MAC).
        dst_mac: Mac,
        /// Source MAC; defaults to the vRouter MAC.
        #[serde(default)]
        src_mac: Option<Mac>,
    },
    /// Overlay tunnel to a remote vRouter over the fabric.
    Tunnel {
        id: u32,
        encap: TunnelEncap,
        /// Remote vRouter (tunnel destination) IP.
        remote_ip: Ipv4Addr,
        /// MPLS label (mplsoudp) or VNI (vxlan).
        label: u32,
        /// Fabric vif the tunnel leaves on.
        vif: u16,
        /// Underlay next-hop MAC (gateway or remote host) on the fabric.
        dst_mac: Mac,
        /// Inner destination MAC for VXLAN (the remote VM's MAC); default: router MAC.
        #[serde(default)]
        inner_dst_mac: Option<Mac>,
    },
    /// Deliver to the vRouter host interface (packets for the vRouter itself).
    Receive { id: u32, vif: u16 },
    /// Drop, counted as `Discards`.
    Discard { id: u32 },
    /// ECMP composite: one member chosen per flow by the 5-tuple hash.
    Ecmp { id: u32, members: Vec<u32> },
}

impl NexthopConfig {
    pub fn id(&self) -> u32 {
        match self {
            NexthopConfig::Encap { id, .. }
            | NexthopConfig::Tunnel { id, .. }
            | NexthopConfig::Receive { id, .. }
            | NexthopConfig::Discard { id }
            | NexthopConfig::Ecmp { id, .. } => *id,
        }
    }
}

/// An IPv4 or IPv6 route in a VRF.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub vrf: u32,
    /// `a.b.c.d/len` or `x::y/len`.
    pub prefix: Prefix,
    pub nexthop: u32,
}

/// An L2 bridge entry: destination MAC -> nexthop in a VRF.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeConfig {
    pub vrf: u32,
    pub mac: Mac,
    pub nexthop: u32,
}

/// An MPLS label for fabric decap: label -> nexthop (typically an encap nexthop to a VM).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LabelConfig {
    pub label: u32,
    pub nexthop: u32,
}

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
    pub addr: IpAddr,
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
        let (a, l) = s
            .split_once('/')
            .ok_or_else(|| format!("invalid prefix {s:?} (expected address/length)"))?;
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

fn default_true() -> bool {
    true
}
fn default_memory_mb() -> u32 {
    512
}
fn default_mbufs() -> u32 {
    16383
}
fn default_ring() -> u16 {
    1024
}
fn default_queues() -> u16 {
    1
}
fn default_summary() -> u32 {
    1
}
fn default_router_mac() -> Mac {
    Mac([0x00, 0x00, 0x5e, 0x00, 0x01, 0x00])
}
