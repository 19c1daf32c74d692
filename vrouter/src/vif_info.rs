//! The stats region's record of a configured vif ([`VifInfo`], in `vrouter_abi::stats`), built
//! from its `[[vif]]` configuration.

use crate::config::{VifConfig, VifType};
use crate::stats::{
    parse_uuid, StatsError, VifInfo, VIF_FLAG_L2_ENABLED, VIF_FLAG_L3_ENABLED, VIF_FLAG_MAC_PROXY,
    VIF_FLAG_NO_ARP_PROXY, VIF_FLAG_PMD, VIF_TYPE_HOST, VIF_TYPE_PHYSICAL, VIF_TYPE_VIRTUAL,
};

/// Builds the record of a configured vif: type from `kind`, flags `L3 L2 Dpdk` plus
/// `Proxy` (answers ARP/ND; default for VM vifs) or `Mnp` (`proxy_arp = false`); `mtu`
/// is the configured one or 0 (unknown; set it with [`VifInfo::mtu`]).
pub fn from_config(cfg: &VifConfig, port_id: u16, tx_queues: u16, driver: &str) -> Result<VifInfo, StatsError> {
    let (vif_type, default_proxy) = match cfg.kind {
        VifType::Fabric => (VIF_TYPE_PHYSICAL, None),
        VifType::Virtual => (VIF_TYPE_VIRTUAL, Some(true)),
        VifType::Host => (VIF_TYPE_HOST, None),
    };
    let mut flags = VIF_FLAG_L3_ENABLED | VIF_FLAG_L2_ENABLED | VIF_FLAG_PMD;
    match cfg.proxy_arp.or(default_proxy) {
        Some(true) => flags |= VIF_FLAG_MAC_PROXY,
        Some(false) => flags |= VIF_FLAG_NO_ARP_PROXY,
        None => {}
    }
    let uuid = |what: &str, s: &Option<String>| -> Result<Option<[u8; 16]>, StatsError> {
        s.as_deref()
            .map(|s| {
                parse_uuid(s).map_err(|e| StatsError::InvalidArgument {
                    kind: vrouter_abi::stats::REGION_KIND,
                    msg: format!("vif {}: {what}: {e}", cfg.id),
                })
            })
            .transpose()
    };
    let mut v = VifInfo::new(cfg.id, vif_type, &cfg.name)
        .port(port_id, cfg.rx_queues, tx_queues)
        .vrf(cfg.vrf)
        .mtu(cfg.mtu.map_or(0, u32::from))
        .flags(flags)
        .mac(cfg.mac.0)
        .device(&cfg.device)
        .driver(driver)
        .vn_name(cfg.vn_name.as_deref().unwrap_or(""));
    if let Some(vh) = &cfg.vhost {
        let mode = match vh.mode {
            crate::config::VhostMode::Client => crate::stats::VIF_VHOST_CLIENT,
            crate::config::VhostMode::Server => crate::stats::VIF_VHOST_SERVER,
        };
        v = v.vhost(mode, vh.queues.min(255) as u8).link(crate::stats::VIF_LINK_DOWN);
    }
    if let Some(ip) = cfg.ip {
        v = v.ipv4(ip);
    }
    if let Some(ip6) = cfg.ip6 {
        v = v.ipv6(ip6);
    }
    if let Some(u) = uuid("vm_uuid", &cfg.vm_uuid)? {
        v = v.vm_uuid(u);
    }
    if let Some(u) = uuid("vmi_uuid", &cfg.vmi_uuid)? {
        v = v.vmi_uuid(u);
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn vif_info_from_config() {
        let cfg: VifConfig = toml::from_str(
            r#"
            id = 2
            name = "vm1"
            type = "virtual"
            device = "net_pcap1"
            mac = "02:00:00:00:01:01"
            ip = "192.168.1.3"
            vrf = 1
            rx_queues = 2
            vm_uuid = "7c3a5f0e-1b2c-4d5e-8f90-a1b2c3d4e5f6"
            "#,
        )
        .unwrap();
        let v = from_config(&cfg, 1, 3, "net_pcap").unwrap().decode();
        assert_eq!((v.id, v.vif_type, v.port_id, v.rx_queues, v.tx_queues, v.vrf), (2, VIF_TYPE_VIRTUAL, 1, 2, 3, 1));
        assert_eq!(v.flag_symbols(), "L3L2DpdkProxy");
        assert_eq!(v.ip, Some(Ipv4Addr::new(192, 168, 1, 3)));
        assert!(v.vm_uuid.is_some() && v.vmi_uuid.is_none());
        let mut bad = cfg.clone();
        bad.vmi_uuid = Some("nope".into());
        assert!(from_config(&bad, 1, 1, "").unwrap_err().to_string().contains("vmi_uuid"));
        bad.vmi_uuid = None;
        bad.proxy_arp = Some(false);
        assert_eq!(from_config(&bad, 1, 1, "").unwrap().decode().flag_symbols(), "L3L2MnpDpdk");
    }
}
