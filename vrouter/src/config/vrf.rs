//! `[[vrf]]`: VRFs (routing instances).

use super::check::{unicast_v4_problem, Checker, ConfigError, Unique, VNI_MAX};
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, Ipv6Addr};

// Highest VRF id (exclusive): shared with the per-VRF tables.
use vrouter_abi::limits::MAX_VRFS;

/// A VRF (routing instance).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VrfConfig {
    /// VRF id, unique and below 4096; routes, vifs and bridge entries refer to it.
    pub id: u32,
    /// VRF (routing instance) name, unique and non-empty (tf `vrf_name`).
    pub name: String,
    /// VXLAN VNI that maps fabric packets into this VRF.
    #[serde(default)]
    pub vxlan_vni: Option<u32>,
    /// Source address of the ICMP Time Exceeded answers sent to this VRF's VMs: the VN's
    /// gateway (service) address, as tf-vrouter's agent answers from the subnet gateway.
    /// Default [`DEFAULT_GATEWAY_IP`] (link-local, so no underlay address leaks to VMs).
    #[serde(default)]
    pub gateway_ip: Option<Ipv4Addr>,
    /// IPv6 source of the ICMPv6 Time Exceeded answers; default [`DEFAULT_GATEWAY_IP6`].
    #[serde(default)]
    pub gateway_ip6: Option<Ipv6Addr>,
}

/// Source of ICMP errors to VMs when the VRF sets no `gateway_ip`.
pub const DEFAULT_GATEWAY_IP: Ipv4Addr = Ipv4Addr::new(169, 254, 0, 1);
/// Source of ICMPv6 errors to VMs when the VRF sets no `gateway_ip6`.
pub const DEFAULT_GATEWAY_IP6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

impl Checker<'_> {
    pub(super) fn vrfs(&self) -> Result<(), ConfigError> {
        let list = &self.cfg.vrfs;
        let (mut ids, mut names, mut vnis) =
            (Unique::entries("vrf", list), Unique::entries("vrf", list), Unique::entries("vrf", list));
        for (i, e) in list.iter().enumerate() {
            let vrf = e.get_ref();
            let err = |key: &str, msg: String| Err(self.entry("vrf", i, e, key, msg));
            if vrf.id >= MAX_VRFS {
                return err("id", format!("VRF id {} is not below {MAX_VRFS}", vrf.id));
            }
            ids.check(self, i, "id", vrf.id, |_, at| format!("duplicate VRF id {} ({at})", vrf.id))?;
            if vrf.name.is_empty() {
                return err("name", "must not be empty".into());
            }
            names.check(self, i, "name", vrf.name.as_str(), |_, at| {
                format!("duplicate VRF name {:?} ({at})", vrf.name)
            })?;
            if let Some(gw) = vrf.gateway_ip {
                if let Some(why) = unicast_v4_problem(gw) {
                    return err("gateway_ip", format!("{gw} is {why}"));
                }
            }
            if let Some(gw) = vrf.gateway_ip6 {
                if gw.is_unspecified() || gw.is_multicast() {
                    let why = if gw.is_multicast() { "a multicast address" } else { "the unspecified address" };
                    return err("gateway_ip6", format!("{gw} is {why}"));
                }
            }
            if let Some(vni) = vrf.vxlan_vni {
                if !(1..=VNI_MAX).contains(&vni) {
                    return err("vxlan_vni", format!("VNI {vni} is out of range 1..={VNI_MAX}"));
                }
                vnis.check(self, i, "vxlan_vni", vni, |first, at| {
                    format!("VNI {vni} is already used by vrf[{first}] ({at})")
                })?;
            }
        }
        Ok(())
    }
}
