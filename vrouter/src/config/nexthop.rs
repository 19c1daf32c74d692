//! `[[nexthop]]`: nexthops (encap, tunnel, receive, discard, ECMP).

use super::check::{unicast_v4_problem, Checker, ConfigError, Unique, MPLS_FIRST_LABEL, MPLS_LABEL_LIMIT, VNI_MAX};
use super::value::Mac;
use super::vif::{type_name, VifType};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// Members of one ECMP nexthop.
const MAX_ECMP_MEMBERS: usize = 16;

/// Tunnel encapsulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TunnelEncap {
    /// MPLS over UDP (RFC 7510): an MPLS label in a UDP datagram, destination port 6635.
    Mplsoudp,
    /// VXLAN (RFC 7348): `label` is the 24-bit VNI, UDP destination port 4789.
    Vxlan,
}

/// A nexthop. The `type` field selects the variant.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum NexthopConfig {
    /// L2 rewrite and send on a local vif (a VM, or the fabric for underlay next hops).
    Encap {
        /// Nexthop id, unique; routes, labels, bridge entries and ECMP members refer to it.
        id: u32,
        /// The vif (`[[vif]]` id) the frame is sent on.
        vif: u16,
        /// Destination MAC written into the frame (the VM's MAC).
        dst_mac: Mac,
        /// Source MAC; defaults to the vRouter MAC.
        #[serde(default)]
        src_mac: Option<Mac>,
    },
    /// Overlay tunnel to a remote vRouter over the fabric.
    Tunnel {
        /// Nexthop id, unique.
        id: u32,
        /// Overlay encapsulation: MPLSoUDP or VXLAN.
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
    Receive {
        /// Nexthop id, unique.
        id: u32,
        /// The host vif (`type = "host"`) the packets are delivered on.
        vif: u16,
    },
    /// Drop, counted as `Discards`.
    Discard {
        /// Nexthop id, unique.
        id: u32,
    },
    /// ECMP composite: one member chosen per flow by the 5-tuple hash.
    Ecmp {
        /// Nexthop id, unique.
        id: u32,
        /// Member nexthop ids (at most 16, not themselves ECMP).
        members: Vec<u32>,
    },
}

impl NexthopConfig {
    /// The nexthop's id, whatever its type.
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

impl Checker<'_> {
    pub(super) fn nexthops(&self) -> Result<(), ConfigError> {
        let mut ids = Unique::entries("nexthop", &self.cfg.nexthops);
        for (i, e) in self.cfg.nexthops.iter().enumerate() {
            let nh = e.get_ref();
            let err = |key: &str, msg: String| Err(self.entry("nexthop", i, e, key, msg));
            ids.check(self, i, "id", nh.id(), |_, at| format!("duplicate nexthop id {} ({at})", nh.id()))?;
            // The vif a nexthop sends on must exist (and for some kinds be of one type).
            let vif_type = |vif: u16| self.vifs.get(&vif).map(|&v| self.cfg.vifs[v].get_ref().kind);
            match nh {
                NexthopConfig::Encap { vif, dst_mac, .. } => {
                    if vif_type(*vif).is_none() {
                        return err("vif", format!("vif {vif} is not defined"));
                    }
                    if *dst_mac == Mac::default() {
                        return err("dst_mac", "must not be all zero".into());
                    }
                }
                NexthopConfig::Tunnel { encap, remote_ip, label, vif, .. } => {
                    match vif_type(*vif) {
                        None => return err("vif", format!("vif {vif} is not defined")),
                        Some(VifType::Fabric) => {}
                        Some(t) => {
                            return err(
                                "vif",
                                format!("vif {vif} is of type {}; tunnels leave on a fabric vif", type_name(t)),
                            )
                        }
                    }
                    match encap {
                        TunnelEncap::Mplsoudp => {
                            if *label < MPLS_FIRST_LABEL {
                                return err("label", format!("MPLS label {label} is reserved (0-15)"));
                            }
                            if *label >= MPLS_LABEL_LIMIT {
                                return err(
                                    "label",
                                    format!(
                                        "MPLS label {label} does not fit in 20 bits (max {})",
                                        MPLS_LABEL_LIMIT - 1
                                    ),
                                );
                            }
                        }
                        TunnelEncap::Vxlan => {
                            if !(1..=VNI_MAX).contains(label) {
                                return err("label", format!("VNI {label} is out of range 1..={VNI_MAX}"));
                            }
                        }
                    }
                    if let Some(why) = unicast_v4_problem(*remote_ip) {
                        return err("remote_ip", format!("{remote_ip} is {why}"));
                    }
                    if *remote_ip == self.cfg.vrouter.router_ip {
                        return err("remote_ip", format!("{remote_ip} is this vRouter's own router_ip"));
                    }
                }
                NexthopConfig::Receive { vif, .. } => match vif_type(*vif) {
                    None => return err("vif", format!("vif {vif} is not defined")),
                    Some(VifType::Host) => {}
                    Some(t) => {
                        return err(
                            "vif",
                            format!("vif {vif} is of type {}; receive nexthops deliver to the host vif", type_name(t)),
                        )
                    }
                },
                NexthopConfig::Discard { .. } => {}
                NexthopConfig::Ecmp { members, .. } => {
                    if members.is_empty() || members.len() > MAX_ECMP_MEMBERS {
                        return err(
                            "members",
                            format!("{} members; an ECMP nexthop needs 1 to {MAX_ECMP_MEMBERS}", members.len()),
                        );
                    }
                    let mut seen = Unique::items();
                    for &m in members {
                        let Some(&mi) = self.nexthops.get(&m) else {
                            return err("members", format!("nexthop {m} is not defined"));
                        };
                        if matches!(self.cfg.nexthops[mi].get_ref(), NexthopConfig::Ecmp { .. }) {
                            return err("members", format!("nexthop {m} is an ECMP nexthop; ECMP cannot be nested"));
                        }
                        if seen.repeated(m) {
                            return err("members", format!("nexthop {m} is listed twice"));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
