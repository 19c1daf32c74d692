//! Forwarding state: vifs, VRFs with their route and bridge tables, nexthops and the MPLS
//! label table, resolved from the configuration into dense, index-addressed arrays so that
//! the per-packet path does array indexing instead of map lookups wherever it can.
//!
//! Nexthops are referenced by their dense index ([`NhIdx`]) everywhere inside the FIB; the
//! configured ids only exist at the edges (config, tools).

pub mod lpm;
pub mod publish;

use crate::config::{Config, Mac, NexthopConfig, Prefix, TunnelEncap, VifType};
use lpm::{IntMap, Lpm, Lpm4};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// Dense nexthop index.
pub type NhIdx = u32;

/// MPLS-over-UDP destination port (RFC 7510).
pub const MPLSOUDP_PORT: u16 = 6635;
/// VXLAN destination port (RFC 7348).
pub const VXLAN_PORT: u16 = 4789;
/// TTL of the outer IPv4 header of tunnels and of the MPLS label.
pub const TUNNEL_TTL: u8 = 64;

/// A vRouter interface as the data plane sees it.
#[derive(Debug, Clone)]
pub struct Vif {
    /// vif index (`vif0/<id>`), also its slot in [`Fib::vifs`].
    pub id: u16,
    /// Interface name (e.g. `tap-vm1`, `eth0`).
    pub name: String,
    /// Fabric, virtual (VM) or host vif (tf `VIF_TYPE_PHYSICAL`/`VIRTUAL`/`HOST`).
    pub kind: VifType,
    /// DPDK device name (`net_pcap0`, a PCI address) the vif's port is opened from.
    pub device: String,
    /// The vif's own MAC: frames to it are for the vRouter (like [`Fib::router_mac`]); the
    /// source of ICMP errors sent on the vif.
    pub mac: [u8; 6],
    /// The vif's IPv4 address (the VM's on a VM vif): source check, ARP answers.
    pub ip: Option<Ipv4Addr>,
    /// The vif's IPv6 address (the VM's on a VM vif): source check, ND answers.
    pub ip6: Option<Ipv6Addr>,
    /// VRF id that packets received on this vif are looked up in.
    pub vrf: u32,
    /// RX queues opened on the vif's port (RSS spreads packets over them).
    pub rx_queues: u16,
    /// MTU in bytes: the configured one, 1500 when unset.
    pub mtu: u16,
    /// Answer ARP requests and IPv6 neighbour solicitations for routed addresses.
    pub proxy_arp: bool,
    /// Virtual network of the VM behind this vif (policy, export).
    pub vn_name: Option<Arc<str>>,
    /// Source (anti-spoofing) checks on what this vif receives: true only for a virtual
    /// vif with `source_check` on (see [`crate::pipeline::source`]).
    pub source_check: bool,
    /// The VM's own MAC: when set, the only source MAC accepted besides the pairs' MACs.
    pub vm_mac: Option<[u8; 6]>,
    /// The allowed address pairs' IPv4 and IPv6 prefixes and MACs (config order), each in
    /// its own dense array so the per-packet scan touches only what it compares.
    pub pairs_v4: Box<[PairPrefix<u32>]>,
    /// The allowed address pairs' IPv6 prefixes.
    pub pairs_v6: Box<[PairPrefix<u128>]>,
    /// The allowed address pairs' MACs (pairs without one are left out).
    pub pair_macs: Box<[[u8; 6]]>,
}

/// An allowed source prefix as network and mask (the host bits of `net` are clear).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairPrefix<T> {
    /// Network address as an integer (`u32::from(Ipv4Addr)`, `u128::from(Ipv6Addr)`).
    pub net: T,
    /// Prefix mask: the top `len` bits set.
    pub mask: T,
}

impl PairPrefix<u32> {
    /// The IPv4 prefix `addr/len` (`len` above 32 is taken as 32; host bits are cleared).
    pub fn v4(addr: Ipv4Addr, len: u8) -> Self {
        let mask = u32::MAX.checked_shl(32 - u32::from(len.min(32))).unwrap_or(0);
        PairPrefix { net: u32::from(addr) & mask, mask }
    }

    /// Whether IPv4 address `a` (as `u32::from(Ipv4Addr)`) lies in the prefix.
    #[inline(always)]
    pub fn contains(&self, a: u32) -> bool {
        a & self.mask == self.net
    }
}

impl PairPrefix<u128> {
    /// The IPv6 prefix `addr/len` (`len` above 128 is taken as 128; host bits are cleared).
    pub fn v6(addr: Ipv6Addr, len: u8) -> Self {
        let mask = u128::MAX.checked_shl(128 - u32::from(len.min(128))).unwrap_or(0);
        PairPrefix { net: u128::from(addr) & mask, mask }
    }

    /// Whether IPv6 address `a` (as `u128::from(Ipv6Addr)`) lies in the prefix.
    #[inline(always)]
    pub fn contains(&self, a: u128) -> bool {
        a & self.mask == self.net
    }
}

/// A routing instance.
#[derive(Debug, Clone, Default)]
pub struct Vrf {
    /// VRF id (`[[vrf]]` id), also its slot in [`Fib::vrfs`].
    pub id: u32,
    /// VRF name (tf routing-instance name).
    pub name: String,
    /// IPv4 route table: longest-prefix match to a nexthop index.
    pub v4: Lpm4,
    /// IPv6 route table: longest-prefix match to a nexthop index.
    pub v6: Lpm<u128>,
    /// Bridge table: destination MAC ([`mac_key`]) to nexthop index.
    pub bridge: IntMap<u64, NhIdx>,
    /// Source addresses of ICMP errors sent to this VRF's VMs (`gateway_ip`/`gateway_ip6`;
    /// `None`: the defaults of the config schema).
    pub gateway_ip: Option<Ipv4Addr>,
    /// IPv6 source of ICMPv6 errors sent to this VRF's VMs (`None`: the schema default).
    pub gateway_ip6: Option<Ipv6Addr>,
}

impl Vrf {
    /// Longest-prefix match of an IPv4 destination: the route's nexthop index, if any.
    #[inline]
    pub fn route_v4(&self, dst: Ipv4Addr) -> Option<NhIdx> {
        self.v4.lookup(u32::from(dst)).map(|(nh, _)| nh)
    }

    /// Longest-prefix match of an IPv6 destination (network byte order): its nexthop index.
    #[inline]
    pub fn route_v6(&self, dst: &[u8; 16]) -> Option<NhIdx> {
        self.v6.lookup(u128::from_be_bytes(*dst)).map(|(nh, _)| nh)
    }

    /// Exact match of a destination MAC in the bridge table: its nexthop index.
    #[inline]
    pub fn bridge_lookup(&self, mac: &[u8; 6]) -> Option<NhIdx> {
        self.bridge.get(&mac_key(mac)).copied()
    }
}

/// A MAC as a map key.
#[inline]
pub fn mac_key(m: &[u8; 6]) -> u64 {
    u64::from_be_bytes([0, 0, m[0], m[1], m[2], m[3], m[4], m[5]])
}

/// A resolved nexthop.
#[derive(Debug, Clone)]
pub enum Nexthop {
    /// L2 rewrite to `dst_mac`/`src_mac` and transmit on `vif`.
    Encap {
        /// Configured nexthop id.
        id: u32,
        /// Local vif the frame is sent on (a VM vif, or the fabric for underlay next hops).
        vif: u16,
        /// Destination MAC written into the frame (the VM's MAC).
        dst_mac: [u8; 6],
        /// Source MAC written into the frame (default: the router MAC).
        src_mac: [u8; 6],
    },
    /// Overlay tunnel over the fabric vif `vif`.
    Tunnel {
        /// Configured nexthop id.
        id: u32,
        /// Overlay encapsulation: MPLSoUDP or VXLAN.
        encap: TunnelEncap,
        /// Fabric vif the encapsulated packet leaves on.
        vif: u16,
        /// Outer Ethernet: underlay next hop, the fabric vif's MAC.
        outer_dst_mac: [u8; 6],
        /// Outer source MAC: the fabric vif's MAC.
        outer_src_mac: [u8; 6],
        /// Outer IPv4 source: this vRouter's [`Fib::router_ip`].
        src_ip: Ipv4Addr,
        /// Outer IPv4 destination: the remote vRouter.
        dst_ip: Ipv4Addr,
        /// MPLS label or VXLAN VNI.
        label: u32,
        /// Inner destination MAC of routed packets sent over VXLAN.
        inner_dst_mac: [u8; 6],
        /// The outer headers with every per-tunnel constant filled in (see
        /// [`TunnelHeader`]); the data plane copies it and patches three fields.
        header: TunnelHeader,
    },
    /// Hand to the host interface.
    Receive {
        /// Configured nexthop id.
        id: u32,
        /// The host vif the packets are delivered on.
        vif: u16,
    },
    /// Drop the packet, counted under the `Discard` drop reason (tf's discard nexthop).
    Discard {
        /// Configured nexthop id.
        id: u32,
    },
    /// Members are dense indices of non-composite nexthops.
    Ecmp {
        /// Configured nexthop id.
        id: u32,
        /// Member nexthops (never ECMP themselves, never empty); one is chosen per flow by the
        /// 5-tuple hash (tf's composite ECMP nexthop).
        members: Vec<NhIdx>,
    },
}

impl Nexthop {
    /// The nexthop's id (as configured).
    pub fn id(&self) -> u32 {
        match self {
            Nexthop::Encap { id, .. }
            | Nexthop::Tunnel { id, .. }
            | Nexthop::Receive { id, .. }
            | Nexthop::Discard { id }
            | Nexthop::Ecmp { id, .. } => *id,
        }
    }

    /// The nexthop's kind as trace records store and the tools name it (one table:
    /// [`vrouter_abi::trace::step::NhKind`]).
    pub fn kind(&self) -> vrouter_abi::trace::step::NhKind {
        use vrouter_abi::trace::step::NhKind;
        match self {
            Nexthop::Encap { .. } => NhKind::Encap,
            Nexthop::Tunnel { .. } => NhKind::Tunnel,
            Nexthop::Receive { .. } => NhKind::Receive,
            Nexthop::Discard { .. } => NhKind::Discard,
            Nexthop::Ecmp { .. } => NhKind::Ecmp,
        }
    }
}

/// Precomputed outer headers of a tunnel nexthop: Ethernet, IPv4 (DF, TTL 64, ident 0),
/// UDP (checksum 0, allowed for IPv4 tunnels by RFC 7510 and RFC 7348) and the MPLS label
/// entry (bottom of stack, TTL 64) or VXLAN header.
///
/// Per packet the data plane copies `bytes[..len]` in front of the payload and patches the
/// IPv4 total length and checksum (from `ip_csum_base`, the ones'-complement sum of the
/// constant header words, so no 20-byte checksum pass per packet), the UDP source port (flow
/// entropy) and the UDP length.
#[derive(Debug, Clone, Copy)]
pub struct TunnelHeader {
    /// The header bytes, valid up to `len` (IPv4 total length and checksum, UDP source port
    /// and length left zero).
    pub bytes: [u8; TunnelHeader::MAX_LEN],
    /// Header length: 46 for MPLSoUDP, 50 for VXLAN.
    pub len: usize,
    /// Ones'-complement sum of the IPv4 header with total length and checksum zero.
    pub ip_csum_base: u32,
}

impl TunnelHeader {
    /// Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8 (MPLS needs 4 of the last 8).
    pub const MAX_LEN: usize = 50;
    /// Offset of the IPv4 header.
    pub const IP: usize = 14;
    /// Offset of the UDP header.
    pub const UDP: usize = 34;

    /// Builds the outer headers of a tunnel to `dst` from `src` carrying MPLS label or VNI
    /// `label`, with Ethernet addresses `dst_mac`/`src_mac`.
    pub fn new(
        encap: TunnelEncap,
        dst_mac: [u8; 6],
        src_mac: [u8; 6],
        src: Ipv4Addr,
        dst: Ipv4Addr,
        label: u32,
    ) -> TunnelHeader {
        use crate::packet::{checksum, ethernet, ipv4, mpls, udp, vxlan, EtherType, IpProtocol};
        let (len, dport) = match encap {
            TunnelEncap::Mplsoudp => (Self::UDP + udp::HEADER_LEN + mpls::HEADER_LEN, MPLSOUDP_PORT),
            TunnelEncap::Vxlan => (Self::UDP + udp::HEADER_LEN + vxlan::HEADER_LEN, VXLAN_PORT),
        };
        let mut b = [0u8; Self::MAX_LEN];
        {
            let mut eth = ethernet::Frame::new_unchecked(&mut b[..]);
            eth.set_dst_addr(dst_mac);
            eth.set_src_addr(src_mac);
            eth.set_ethertype(EtherType::IPV4);
        }
        {
            let mut ip = ipv4::Packet::new_unchecked(&mut b[Self::IP..Self::UDP]);
            ip.set_version(4);
            ip.set_header_len(20);
            ip.set_dont_frag(true);
            ip.set_ttl(TUNNEL_TTL);
            ip.set_protocol(IpProtocol::UDP);
            ip.set_src_addr(src);
            ip.set_dst_addr(dst);
        }
        // Total length and checksum are still zero: this is the sum of the constant words.
        let ip_csum_base = u32::from(checksum::data(&b[Self::IP..Self::UDP]));
        udp::Packet::new_unchecked(&mut b[Self::UDP..Self::UDP + udp::HEADER_LEN]).set_dst_port(dport);
        let tail = &mut b[Self::UDP + udp::HEADER_LEN..len];
        match encap {
            TunnelEncap::Mplsoudp => mpls::Packet::new_unchecked(tail).fill(label, 0, true, TUNNEL_TTL),
            TunnelEncap::Vxlan => vxlan::Packet::new_unchecked(tail).fill(label),
        }
        TunnelHeader { bytes: b, len, ip_csum_base }
    }
}

/// Errors building the FIB from a configuration that passed validation (these indicate a
/// reference validation did not catch; they name the entry).
#[derive(Debug, thiserror::Error)]
pub enum FibError {
    /// The entry refers to a nexthop id that no `[[nexthop]]` defines.
    #[error("{0}: nexthop {1} is not defined")]
    UnknownNexthop(String, u32),
    /// The entry refers to a vif id that no `[[vif]]` defines.
    #[error("{0}: vif {1} is not defined")]
    UnknownVif(String, u16),
    /// The entry refers to a VRF id that no `[[vrf]]` defines.
    #[error("{0}: VRF {1} is not defined")]
    UnknownVrf(String, u32),
    /// The entry is inconsistent otherwise (too many nexthops, a bad ECMP group); the message
    /// says how.
    #[error("{0}: {1}")]
    Invalid(String, String),
}

/// The complete forwarding state. Read-only while lcores forward: a change is made on a
/// copy and published ([`publish::FibCell`]); the VRFs are shared between copies (`Arc`),
/// so a route change copies only its own VRF.
#[derive(Debug, Clone)]
pub struct Fib {
    /// This vRouter's fabric IPv4 address: source of its tunnels, destination of decap.
    pub router_ip: Ipv4Addr,
    /// The vRouter MAC: frames to it are routed; source MAC of routed packets to VMs and of
    /// ARP/ND answers for gateways.
    pub router_mac: [u8; 6],
    /// Indexed by vif id; `None` for unused ids.
    pub vifs: Vec<Option<Vif>>,
    /// Indexed by VRF id; `None` for unused ids.
    pub vrfs: Vec<Option<Arc<Vrf>>>,
    /// Indexed by [`NhIdx`] (config order).
    pub nexthops: Vec<Nexthop>,
    /// MPLS label -> nexthop (fabric decap).
    pub labels: IntMap<u32, NhIdx>,
    /// VXLAN VNI -> VRF id (fabric decap).
    pub vnis: IntMap<u32, u32>,
    /// The host vif, if configured.
    pub host_vif: Option<u16>,
    /// Configured nexthop id -> dense index.
    pub nh_ids: IntMap<u32, NhIdx>,
}

impl Fib {
    /// Resolves a validated configuration into the forwarding state (dense vif, VRF and
    /// nexthop arrays; route, bridge, label and VNI tables).
    pub fn from_config(cfg: &Config) -> Result<Fib, FibError> {
        let router_mac = cfg.vrouter.router_mac.0;
        let max_vif = cfg.vifs.iter().map(|v| v.get_ref().id).max().unwrap_or(0);
        let mut vifs: Vec<Option<Vif>> = vec![None; usize::from(max_vif) + 1];
        let mut host_vif = None;
        for v in &cfg.vifs {
            let v = v.get_ref();
            if v.kind == VifType::Host {
                host_vif = Some(v.id);
            }
            vifs[usize::from(v.id)] = Some(Vif {
                id: v.id,
                name: v.name.clone(),
                kind: v.kind,
                device: v.device.clone(),
                mac: v.mac.0,
                ip: v.ip,
                ip6: v.ip6,
                vrf: v.vrf,
                rx_queues: v.rx_queues,
                mtu: v.mtu.unwrap_or(1500),
                proxy_arp: v.proxy_arp.unwrap_or(v.kind == VifType::Virtual),
                vn_name: v.vn_name.as_deref().map(Arc::from),
                source_check: v.kind == VifType::Virtual && v.source_check.unwrap_or(true),
                vm_mac: v.vm_mac.map(|m| m.0),
                pairs_v4: (v.allowed_address_pairs.iter())
                    .filter_map(|p| match p.ip.addr {
                        IpAddr::V4(a) => Some(PairPrefix::v4(a, p.ip.len)),
                        IpAddr::V6(_) => None,
                    })
                    .collect(),
                pairs_v6: (v.allowed_address_pairs.iter())
                    .filter_map(|p| match p.ip.addr {
                        IpAddr::V6(a) => Some(PairPrefix::v6(a, p.ip.len)),
                        IpAddr::V4(_) => None,
                    })
                    .collect(),
                pair_macs: v.allowed_address_pairs.iter().filter_map(|p| p.mac.map(|m| m.0)).collect(),
            });
        }
        let vif_of = |what: &str, id: u16| -> Result<&Vif, FibError> {
            vifs.get(usize::from(id)).and_then(Option::as_ref).ok_or_else(|| FibError::UnknownVif(what.to_string(), id))
        };

        let max_vrf = cfg.vrfs.iter().map(|v| v.get_ref().id).max().unwrap_or(0);
        let mut vrfs: Vec<Option<Vrf>> = vec![None; max_vrf as usize + 1];
        let mut vnis = IntMap::default();
        for v in &cfg.vrfs {
            let v = v.get_ref();
            vrfs[v.id as usize] = Some(Vrf {
                id: v.id,
                name: v.name.clone(),
                gateway_ip: v.gateway_ip,
                gateway_ip6: v.gateway_ip6,
                ..Vrf::default()
            });
            if let Some(vni) = v.vxlan_vni {
                vnis.insert(vni, v.id);
            }
        }
        for v in vifs.iter().flatten() {
            if vrfs.get(v.vrf as usize).and_then(Option::as_ref).is_none() {
                return Err(FibError::UnknownVrf(format!("vif {}", v.id), v.vrf));
            }
        }

        if cfg.nexthops.len() as u64 > u64::from(lpm::LPM4_MAX_NH) {
            return Err(FibError::Invalid("nexthop".into(), format!("more than {} nexthops", lpm::LPM4_MAX_NH)));
        }
        // Dense nexthop indices in config order.
        let mut index: IntMap<u32, NhIdx> = IntMap::default();
        for (i, nh) in cfg.nexthops.iter().enumerate() {
            index.insert(nh.get_ref().id(), i as NhIdx);
        }
        let resolve = |what: &str, id: u32| -> Result<NhIdx, FibError> {
            index.get(&id).copied().ok_or_else(|| FibError::UnknownNexthop(what.to_string(), id))
        };
        let mut nexthops = Vec::with_capacity(cfg.nexthops.len());
        for nh in &cfg.nexthops {
            let nh = nh.get_ref();
            let what = format!("nexthop {}", nh.id());
            nexthops.push(match nh {
                NexthopConfig::Encap { id, vif, dst_mac, src_mac } => {
                    vif_of(&what, *vif)?;
                    Nexthop::Encap {
                        id: *id,
                        vif: *vif,
                        dst_mac: dst_mac.0,
                        src_mac: src_mac.unwrap_or(Mac(router_mac)).0,
                    }
                }
                NexthopConfig::Tunnel { id, encap, remote_ip, label, vif, dst_mac, inner_dst_mac } => {
                    let fabric = vif_of(&what, *vif)?;
                    Nexthop::Tunnel {
                        id: *id,
                        encap: *encap,
                        vif: *vif,
                        outer_dst_mac: dst_mac.0,
                        outer_src_mac: fabric.mac,
                        src_ip: cfg.vrouter.router_ip,
                        dst_ip: *remote_ip,
                        label: *label,
                        inner_dst_mac: inner_dst_mac.unwrap_or(Mac(router_mac)).0,
                        header: TunnelHeader::new(
                            *encap,
                            dst_mac.0,
                            fabric.mac,
                            cfg.vrouter.router_ip,
                            *remote_ip,
                            *label,
                        ),
                    }
                }
                NexthopConfig::Receive { id, vif } => {
                    vif_of(&what, *vif)?;
                    Nexthop::Receive { id: *id, vif: *vif }
                }
                NexthopConfig::Discard { id } => Nexthop::Discard { id: *id },
                NexthopConfig::Ecmp { id, members } => {
                    let mut m = Vec::with_capacity(members.len());
                    for mid in members {
                        let idx = resolve(&what, *mid)?;
                        if matches!(cfg.nexthops[idx as usize].get_ref(), NexthopConfig::Ecmp { .. }) {
                            return Err(FibError::Invalid(what, format!("member {mid} is itself ECMP")));
                        }
                        m.push(idx);
                    }
                    if m.is_empty() {
                        return Err(FibError::Invalid(what, "no members".into()));
                    }
                    Nexthop::Ecmp { id: *id, members: m }
                }
            });
        }

        for r in &cfg.routes {
            let r = r.get_ref();
            let what = format!("route {} in VRF {}", r.prefix, r.vrf);
            let nh = resolve(&what, r.nexthop)?;
            let vrf = vrfs
                .get_mut(r.vrf as usize)
                .and_then(Option::as_mut)
                .ok_or_else(|| FibError::UnknownVrf(what.clone(), r.vrf))?;
            match r.prefix.addr {
                IpAddr::V4(a) => vrf.v4.insert(u32::from(a), r.prefix.len, nh),
                IpAddr::V6(a) => vrf.v6.insert(u128::from(a), r.prefix.len, nh),
            };
        }
        for b in &cfg.bridge {
            let b = b.get_ref();
            let what = format!("bridge entry {} in VRF {}", b.mac, b.vrf);
            let nh = resolve(&what, b.nexthop)?;
            let vrf = vrfs
                .get_mut(b.vrf as usize)
                .and_then(Option::as_mut)
                .ok_or_else(|| FibError::UnknownVrf(what.clone(), b.vrf))?;
            vrf.bridge.insert(mac_key(&b.mac.0), nh);
        }
        let mut labels = IntMap::default();
        for l in &cfg.labels {
            let l = l.get_ref();
            labels.insert(l.label, resolve(&format!("label {}", l.label), l.nexthop)?);
        }

        let vrfs = vrfs.into_iter().map(|v| v.map(Arc::new)).collect();
        Ok(Fib {
            router_ip: cfg.vrouter.router_ip,
            router_mac,
            vifs,
            vrfs,
            nexthops,
            labels,
            vnis,
            host_vif,
            nh_ids: index,
        })
    }

    /// The vif with id `id`, if configured.
    #[inline]
    pub fn vif(&self, id: u16) -> Option<&Vif> {
        self.vifs.get(usize::from(id)).and_then(Option::as_ref)
    }

    /// The VRF with id `id`, if configured.
    #[inline]
    pub fn vrf(&self, id: u32) -> Option<&Vrf> {
        self.vrfs.get(id as usize).and_then(Option::as_deref)
    }

    /// The dense index of the nexthop with configured id `id`.
    #[inline]
    pub fn nh_index(&self, id: u32) -> Option<NhIdx> {
        self.nh_ids.get(&id).copied()
    }

    /// Adds or replaces the route `prefix` of VRF `vrf` with nexthop index `nh`; returns the
    /// previous nexthop. Only that VRF is copied when another snapshot shares it.
    pub fn route_set(&mut self, vrf: u32, prefix: Prefix, nh: NhIdx) -> Result<Option<NhIdx>, FibError> {
        let what = || format!("route {prefix} in VRF {vrf}");
        if self.nexthop(nh).is_none() {
            return Err(FibError::Invalid(what(), format!("nexthop index {nh} out of range")));
        }
        let v = self
            .vrfs
            .get_mut(vrf as usize)
            .and_then(Option::as_mut)
            .ok_or_else(|| FibError::UnknownVrf(what(), vrf))?;
        let v = Arc::make_mut(v);
        Ok(match prefix.addr {
            IpAddr::V4(a) => v.v4.insert(u32::from(a), prefix.len, nh),
            IpAddr::V6(a) => v.v6.insert(u128::from(a), prefix.len, nh),
        })
    }

    /// Removes the route `prefix` of VRF `vrf`; returns its nexthop (`None`: there was none).
    pub fn route_remove(&mut self, vrf: u32, prefix: Prefix) -> Option<NhIdx> {
        let v = Arc::make_mut(self.vrfs.get_mut(vrf as usize)?.as_mut()?);
        match prefix.addr {
            IpAddr::V4(a) => v.v4.remove(u32::from(a), prefix.len),
            IpAddr::V6(a) => v.v6.remove(u128::from(a), prefix.len),
        }
    }

    /// The nexthop at dense index `idx` (not a configured id).
    #[inline]
    pub fn nexthop(&self, idx: NhIdx) -> Option<&Nexthop> {
        self.nexthops.get(idx as usize)
    }

    /// Configured vifs in id order.
    pub fn vif_list(&self) -> impl Iterator<Item = &Vif> {
        self.vifs.iter().flatten()
    }
}
