//! The TOML configuration schema (what an operator writes).
//!
//! Every table rejects unknown fields, so a typo is an error that names the field and line
//! instead of a silently ignored setting. Each table's type lives in its own module next to
//! its validation (`vif`, `nexthop`, ...); this module holds the whole file, [`Config`],
//! and re-exports them all. Cross-references (a route's nexthop, a vif's VRF) are checked
//! in [`fn@super::validate`].

pub use super::analyzer::{assign_mirror_indices, AnalyzerConfig, MirrorNhMode};
pub use super::bridge::BridgeConfig;
pub use super::eal::{secondary_blocker, EalConfig, MAX_FILE_PREFIX};
pub use super::flow::{FlowConfig, DEFAULT_FLOW_ENTRIES};
pub use super::label::LabelConfig;
pub use super::nexthop::{NexthopConfig, TunnelEncap};
pub use super::policy::{NetworkPolicyConfig, PolicyAction, PolicyDirection, PolicyRuleConfig};
pub use super::route::RouteConfig;
pub use super::security_group::{EtherType, SecurityGroupConfig, SgDirection, SgRuleConfig};
pub use super::tenant::TenantConfig;
pub use super::value::{Mac, PolicyAddress, PortRange, Prefix, Protocol, SgRemote};
pub use super::vif::{AddressPairConfig, VhostConfig, VhostMode, VifConfig, VifType, MAX_VHOST_QUEUES};
pub use super::vrf::{VrfConfig, DEFAULT_GATEWAY_IP, DEFAULT_GATEWAY_IP6};
pub use super::vrouter::{VrouterConfig, MAX_ICMP_ERROR_BURST, MAX_ICMP_ERROR_RATE};
pub use logging::LogConfig;
use serde::{Deserialize, Serialize};
use toml::Spanned;

/// The whole file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// DPDK EAL settings (`[eal]`: cores, memory, devices).
    pub eal: EalConfig,
    /// vRouter-wide settings (`[vrouter]`: router MAC, stats region, control socket, ...).
    pub vrouter: VrouterConfig,
    /// vRouter interfaces (`[[vif]]`), each bound to a DPDK port.
    #[serde(default, rename = "vif")]
    pub vifs: Vec<Spanned<VifConfig>>,
    /// Routing instances (`[[vrf]]`).
    #[serde(default, rename = "vrf")]
    pub vrfs: Vec<Spanned<VrfConfig>>,
    /// Nexthops (`[[nexthop]]`) that routes, labels and bridge entries resolve to.
    #[serde(default, rename = "nexthop")]
    pub nexthops: Vec<Spanned<NexthopConfig>>,
    /// IPv4/IPv6 routes in VRFs (`[[route]]`).
    #[serde(default, rename = "route")]
    pub routes: Vec<Spanned<RouteConfig>>,
    /// L2 bridge entries: MAC -> nexthop in a VRF (`[[bridge]]`).
    #[serde(default, rename = "bridge")]
    pub bridge: Vec<Spanned<BridgeConfig>>,
    /// MPLS labels for fabric decap: label -> nexthop (`[[label]]`).
    #[serde(default, rename = "label")]
    pub labels: Vec<Spanned<LabelConfig>>,
    /// Flow table sizing, aging and hold limits (`[flow]`; every key has a default).
    #[serde(default)]
    pub flow: FlowConfig,
    /// Mirror analyzers referenced by name from policy rules (`[[analyzer]]`).
    #[serde(default, rename = "analyzer")]
    pub analyzers: Vec<Spanned<AnalyzerConfig>>,
    /// Network policies attached to VNs (`[[network_policy]]`).
    #[serde(default, rename = "network_policy")]
    pub network_policies: Vec<Spanned<NetworkPolicyConfig>>,
    /// Security groups referenced by vifs (`[[security_group]]`).
    #[serde(default, rename = "security_group")]
    pub security_groups: Vec<Spanned<SecurityGroupConfig>>,
    /// Flow and UVE export to analytics collectors (`[export]`; off by default).
    #[serde(default)]
    pub export: super::export::ExportConfig,
    /// Flow records to IPFIX collectors (`[ipfix]`; off by default).
    #[serde(default)]
    pub ipfix: super::ipfix::IpfixConfig,
    /// Tenants (projects) and the tokens that let them manage trace requests on their own
    /// VNs (`[[tenant]]`).
    #[serde(default, rename = "tenant")]
    pub tenants: Vec<Spanned<TenantConfig>>,
    /// The binary's logs (`[log]`: level, per-target filter, text or JSON; `RUST_LOG`
    /// overrides the level and the filter).
    #[serde(default)]
    pub log: LogConfig,
}
