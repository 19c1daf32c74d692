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
    /// Tenants (projects) and the tokens that let them manage trace requests on their own
    /// VNs (`[[tenant]]`).
    #[serde(default, rename = "tenant")]
    pub tenants: Vec<Spanned<TenantConfig>>,
}

/// A tenant (project) for trace requests:
///
/// ```toml
/// [[tenant]]
/// name = "demo"
/// token = "a-secret-of-16-or-more-characters"
/// vns = ["default-domain:demo:vn1"]
/// ```
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    pub name: String,
    /// Bearer token of the tenant (at least 16 characters).
    pub token: String,
    /// The virtual networks (vif `vn_name`s) the tenant owns.
    pub vns: Vec<String>,
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
    /// Address of the trace REST API (`POST/GET/PUT/DELETE /traces[/<id>]`, tenant tokens
    /// only); none when absent.
    #[serde(default)]
    pub trace_api: Option<std::net::SocketAddr>,
    /// ICMP Time Exceeded answers to VMs (a routed packet whose TTL / hop limit expired):
    /// at most this many per second on each forwarding lcore (token bucket; 0 = never
    /// answer). Packets over the limit are still dropped (`TTL Exceeded`), unanswered, and
    /// counted as suppressed answers.
    #[serde(default = "default_icmp_error_rate")]
    pub icmp_error_rate: u32,
    /// Burst of the ICMP error token bucket: answers that may leave back to back (1..=10000).
    #[serde(default = "default_icmp_error_burst")]
    pub icmp_error_burst: u32,
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

/// A VRF (routing instance).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VrfConfig {
    pub id: u32,
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

// ---- [flow] ----

/// tf-vrouter's default main flow table size (`VR_DEF_FLOW_ENTRIES`).
pub const DEFAULT_FLOW_ENTRIES: u32 = 512 * 1024;

/// Flow table, aging and HOLD settings (`[flow]`). Every key is optional.
///
/// ```toml
/// [flow]
/// enabled = true                # false: stateless forwarding, no policy
/// entries = 524288          # main table, a power of two >= 1024
/// overflow_entries = 0      # 0 = 20 % of entries rounded up to a multiple of 1024
/// hold_limit = 1000         # flows in HOLD at once (tf DPDK default)
/// held_packets_per_flow = 3 # packets queued per HOLD flow (1..=16)
/// age_timeout_s = 180       # idle (both directions) flows are deleted after this
/// hold_audit_s = 5          # HOLD longer than this -> short DROP flow, reason Audit
/// tcp_close_evict = true    # evict TCP flows after FIN/FIN or RST
/// # flow_table_path = "/dev/hugepages/flow"   # default: in the run directory
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlowConfig {
    /// Stateful flow processing for VM traffic (flow table, policy, holding). When false
    /// the data plane forwards statelessly (routes and nexthops only): no policy applies.
    pub enabled: bool,
    /// Main table entries (a power of two, at least 1024).
    pub entries: u32,
    /// Overflow entries; 0 means [`FlowConfig::overflow_entries_effective`].
    pub overflow_entries: u32,
    /// Most flows in HOLD at once (`vr_flow_hold_limit`).
    pub hold_limit: u32,
    /// Packets queued per flow while it is in HOLD (`VR_MAX_FLOW_QUEUE_ENTRIES`).
    pub held_packets_per_flow: u32,
    /// Seconds after which a flow idle in both directions is deleted.
    pub age_timeout_s: u32,
    /// Seconds a flow may stay in HOLD before the audit turns it into a DROP flow.
    pub hold_audit_s: u32,
    /// Evict TCP flows once both sides sent FIN, or after an RST.
    pub tcp_close_evict: bool,
    /// Where the shared flow table file is created (default: in `vrouter.run_dir`).
    pub flow_table_path: Option<PathBuf>,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            enabled: true,
            entries: DEFAULT_FLOW_ENTRIES,
            overflow_entries: 0,
            hold_limit: 1000,
            held_packets_per_flow: 3,
            age_timeout_s: 180,
            hold_audit_s: 5,
            tcp_close_evict: true,
            flow_table_path: None,
        }
    }
}

impl FlowConfig {
    /// The overflow table size in use: `overflow_entries`, or when it is 0, 20 % of
    /// `entries` rounded up to a multiple of 1024 (`((entries / 5) + 1023) & !1023`, as
    /// tf-vrouter's `vr_compute_size_oflow_table`; 105 472 for the default 524 288).
    pub fn overflow_entries_effective(&self) -> u32 {
        if self.overflow_entries != 0 {
            self.overflow_entries
        } else {
            ((self.entries / 5).saturating_add(1023)) & !1023
        }
    }
}

// ---- [[analyzer]] ----

/// How the mirror nexthop towards an analyzer is resolved (tf `nh_mode`): the mirror data
/// model's one enum (`dynamic`, the default, or `static`).
pub use vrouter_abi::mirror::NhMode as MirrorNhMode;

/// A mirror destination (tf "analyzer"), referenced by `name` from policy rules.
///
/// ```toml
/// [[analyzer]]
/// name = "default-domain:demo:analyzer1"
/// ip = "10.10.0.20"
/// udp_port = 8099        # default
/// juniper_header = true  # default; false needs `vni` (VXLAN to the analyzer)
/// nh_mode = "dynamic"    # default, or "static"
/// index = 3              # optional mirror index 0..=254; else the lowest free, in order
/// ```
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AnalyzerConfig {
    pub name: String,
    /// Analyzer (tunnel destination) address.
    pub ip: Ipv4Addr,
    /// UDP port of the Juniper-header encapsulation (tf `AnalyzerUdpPort`, 8099).
    #[serde(default = "default_analyzer_port")]
    pub udp_port: u16,
    /// Juniper metadata header over UDP (true), or VXLAN with `vni` (false).
    #[serde(default = "default_true")]
    pub juniper_header: bool,
    #[serde(default)]
    pub nh_mode: MirrorNhMode,
    /// VXLAN VNI; required (and only used) when `juniper_header = false`.
    #[serde(default)]
    pub vni: Option<u32>,
    /// Mirror table index 0..=254 (255 means "no mirror"); assigned when absent.
    #[serde(default)]
    pub index: Option<u32>,
}

/// The mirror index of each analyzer, in `analyzers` order: an explicit `index` as given,
/// the others the lowest index (0..=254) no explicit index and no earlier analyzer uses.
///
/// On failure returns the position of the offending analyzer and why: an explicit index
/// above 254, an explicit index used twice, or more analyzers than indices.
pub fn assign_mirror_indices(analyzers: &[Spanned<AnalyzerConfig>]) -> Result<Vec<u8>, (usize, String)> {
    const SLOTS: usize = 255;
    let mut taken = [false; SLOTS];
    let mut owner = [usize::MAX; SLOTS];
    for (i, a) in analyzers.iter().enumerate() {
        let Some(index) = a.get_ref().index else { continue };
        let slot = match usize::try_from(index) {
            Ok(s) if s < SLOTS => s,
            _ if index == 255 => return Err((i, "mirror index 255 means \"no mirror\"; use 0..=254".into())),
            _ => return Err((i, format!("mirror index {index} is out of range 0..=254"))),
        };
        if taken[slot] {
            return Err((i, format!("mirror index {index} is already used by analyzer[{}]", owner[slot])));
        }
        taken[slot] = true;
        owner[slot] = i;
    }
    let mut next = 0usize;
    let mut out = Vec::with_capacity(analyzers.len());
    for (i, a) in analyzers.iter().enumerate() {
        let slot = match a.get_ref().index {
            Some(index) => index as usize,
            None => {
                while next < SLOTS && taken[next] {
                    next += 1;
                }
                if next == SLOTS {
                    return Err((i, format!("no free mirror index: at most {SLOTS} analyzers")));
                }
                taken[next] = true;
                next
            }
        };
        out.push(slot as u8);
    }
    Ok(out)
}

// ---- [[network_policy]] and [[security_group]] ----

/// What a rule does with matching traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyAction {
    Pass,
    Deny,
}

/// Direction of a network policy rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
pub enum PolicyDirection {
    /// `<>`: src -> dst and dst -> src.
    #[default]
    #[serde(rename = "<>")]
    Both,
    /// `>`: only traffic from src to dst.
    #[serde(rename = ">")]
    OneWay,
}

/// A network policy: ordered rules, attached to the VNs in `vns`.
///
/// ```toml
/// [[network_policy]]
/// name = "web-to-db"
/// vns = ["default-domain:demo:web", "default-domain:demo:db"]
///
/// [[network_policy.rule]]
/// uuid = "2b4d3c1e-0f9a-4b8c-9d7e-6f5a4b3c2d1e"   # nw_ace_uuid
/// src = "vn:default-domain:demo:web"             # any | CIDR | vn:<name>
/// dst = "10.2.0.0/16"
/// protocol = "tcp"                               # any | tcp | udp | icmp | icmp6 | 0..255
/// src_ports = "any"
/// dst_ports = "5432"                             # any | N | LO-HI
/// direction = "<>"                               # <> (default) | >
/// action = "pass"                                # pass | deny
/// log = true
/// mirror_to = ["default-domain:demo:analyzer1"]  # 0 to 2 analyzer names
/// ```
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkPolicyConfig {
    pub name: String,
    #[serde(default)]
    pub uuid: Option<String>,
    /// VN names (`vn_name` of vifs, or VNs of remote endpoints) the policy is attached to.
    #[serde(default)]
    pub vns: Vec<String>,
    #[serde(default, rename = "rule")]
    pub rules: Vec<Spanned<PolicyRuleConfig>>,
}

/// One rule (tf ACE) of a network policy.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRuleConfig {
    /// The rule's UUID, reported as `nw_ace_uuid`.
    pub uuid: String,
    #[serde(default)]
    pub src: PolicyAddress,
    #[serde(default)]
    pub dst: PolicyAddress,
    #[serde(default)]
    pub protocol: Protocol,
    #[serde(default)]
    pub src_ports: PortRange,
    #[serde(default)]
    pub dst_ports: PortRange,
    #[serde(default)]
    pub direction: PolicyDirection,
    pub action: PolicyAction,
    #[serde(default)]
    pub log: bool,
    /// Analyzer names: primary, then secondary.
    #[serde(default)]
    pub mirror_to: Vec<String>,
}

/// Direction of a security group rule, seen from the VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SgDirection {
    /// Traffic to the VM; `remote` is the source.
    Ingress,
    /// Traffic from the VM; `remote` is the destination.
    Egress,
}

/// Address family a security group rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum EtherType {
    #[serde(rename = "IPv4", alias = "ipv4")]
    Ipv4,
    #[serde(rename = "IPv6", alias = "ipv6")]
    Ipv6,
}

/// A security group: an allow-list of rules; vifs that list it in `security_groups` only
/// send and receive what some rule of one of their groups allows.
///
/// ```toml
/// [[security_group]]
/// name = "web"
/// uuid = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
///
/// [[security_group.rule]]
/// uuid = "1f2e3d4c-5b6a-4978-8695-a4b3c2d1e0f9"   # sg_rule_uuid
/// direction = "ingress"                          # ingress | egress
/// remote = "sg:web"                              # any | CIDR | sg:<name>
/// protocol = "tcp"
/// ports = "80-443"                               # destination ports; any (default)
/// ethertype = "IPv4"                             # IPv4 | IPv6; both when absent
/// ```
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityGroupConfig {
    pub name: String,
    #[serde(default)]
    pub uuid: Option<String>,
    #[serde(default, rename = "rule")]
    pub rules: Vec<Spanned<SgRuleConfig>>,
}

/// One security group rule.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SgRuleConfig {
    /// The rule's UUID, reported as `sg_rule_uuid`.
    pub uuid: String,
    pub direction: SgDirection,
    #[serde(default)]
    pub remote: SgRemote,
    #[serde(default)]
    pub protocol: Protocol,
    /// Destination port range.
    #[serde(default)]
    pub ports: PortRange,
    /// IPv4 or IPv6 only; both when absent.
    #[serde(default)]
    pub ethertype: Option<EtherType>,
}

/// A network policy rule's `src`/`dst`: `any`, a CIDR, or `vn:<VN name>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum PolicyAddress {
    #[default]
    Any,
    Prefix(Prefix),
    /// Any address of the named VN (the VN the flow's endpoint is in).
    Vn(String),
}

/// A security group rule's `remote`: `any`, a CIDR, or `sg:<group name>` (any address of a
/// vif in that group).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum SgRemote {
    #[default]
    Any,
    Prefix(Prefix),
    Sg(String),
}

/// The `src`/`dst`/`remote` forms, parsed once for both address types.
enum Address {
    Any,
    Prefix(Prefix),
    Named(String),
}

fn parse_address(s: &str, tag: &str) -> Result<Address, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("any") {
        return Ok(Address::Any);
    }
    if let Some(name) = t.strip_prefix(tag) {
        return Ok(Address::Named(name.to_string()));
    }
    if t.contains('/') {
        return t.parse().map(Address::Prefix);
    }
    Err(format!(
        "invalid address {s:?}: expected \"any\", a CIDR such as \"10.0.0.0/8\" or \
         \"fd00::/64\", or \"{tag}<name>\""
    ))
}

impl std::str::FromStr for PolicyAddress {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match parse_address(s, "vn:")? {
            Address::Any => PolicyAddress::Any,
            Address::Prefix(p) => PolicyAddress::Prefix(p),
            Address::Named(n) => PolicyAddress::Vn(n),
        })
    }
}

impl std::fmt::Display for PolicyAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicyAddress::Any => f.write_str("any"),
            PolicyAddress::Prefix(p) => write!(f, "{p}"),
            PolicyAddress::Vn(n) => write!(f, "vn:{n}"),
        }
    }
}

impl std::str::FromStr for SgRemote {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match parse_address(s, "sg:")? {
            Address::Any => SgRemote::Any,
            Address::Prefix(p) => SgRemote::Prefix(p),
            Address::Named(n) => SgRemote::Sg(n),
        })
    }
}

impl std::fmt::Display for SgRemote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SgRemote::Any => f.write_str("any"),
            SgRemote::Prefix(p) => write!(f, "{p}"),
            SgRemote::Sg(n) => write!(f, "sg:{n}"),
        }
    }
}

/// An IP protocol: `any`, a name (`tcp`, `udp`, `icmp`, `icmp6`) or a number 0..=255
/// (written as a string or an integer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Protocol {
    #[default]
    Any,
    Number(u8),
}

impl Protocol {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMP6: u8 = 58;

    /// Whether flows of this protocol carry ports (TCP, UDP, DCCP, SCTP, UDP-Lite): only
    /// for those do port ranges other than `any` mean something.
    pub const fn has_ports(proto: u8) -> bool {
        matches!(proto, 6 | 17 | 33 | 132 | 136)
    }
}

impl std::str::FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim().to_ascii_lowercase();
        Ok(match t.as_str() {
            "any" => Protocol::Any,
            "tcp" => Protocol::Number(Self::TCP),
            "udp" => Protocol::Number(Self::UDP),
            "icmp" => Protocol::Number(Self::ICMP),
            "icmp6" | "ipv6-icmp" => Protocol::Number(Self::ICMP6),
            _ => match t.parse::<u32>() {
                Ok(n) => {
                    Protocol::Number(u8::try_from(n).map_err(|_| format!("protocol {n} is out of range 0..=255"))?)
                }
                Err(_) => {
                    return Err(format!("invalid protocol {s:?}: expected any, tcp, udp, icmp, icmp6 or 0..=255"))
                }
            },
        })
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Protocol::Any => f.write_str("any"),
            Protocol::Number(Self::TCP) => f.write_str("tcp"),
            Protocol::Number(Self::UDP) => f.write_str("udp"),
            Protocol::Number(Self::ICMP) => f.write_str("icmp"),
            Protocol::Number(Self::ICMP6) => f.write_str("icmp6"),
            Protocol::Number(n) => write!(f, "{n}"),
        }
    }
}

/// An inclusive port range: `any` (0-65535), `80`, or `1000-2000` (a string, or an
/// integer for one port). `lo > hi` parses, and is rejected by validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl PortRange {
    pub const ANY: PortRange = PortRange { lo: 0, hi: u16::MAX };

    pub const fn is_any(self) -> bool {
        self.lo == 0 && self.hi == u16::MAX
    }

    pub const fn contains(self, port: u16) -> bool {
        self.lo <= port && port <= self.hi
    }
}

impl Default for PortRange {
    fn default() -> Self {
        PortRange::ANY
    }
}

impl std::str::FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("any") {
            return Ok(PortRange::ANY);
        }
        let port = |p: &str| {
            p.trim().parse::<u16>().map_err(|_| {
                format!("invalid port range {s:?}: expected any, a port (80) or a range (1000-2000) of ports 0..=65535")
            })
        };
        match t.split_once('-') {
            Some((lo, hi)) => Ok(PortRange { lo: port(lo)?, hi: port(hi)? }),
            None => {
                let p = port(t)?;
                Ok(PortRange { lo: p, hi: p })
            }
        }
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_any() {
            f.write_str("any")
        } else if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

/// Serialize as the string form; deserialize from it (and, with `$int`, from an integer).
macro_rules! string_serde {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any(StrOrInt::<$t>(std::marker::PhantomData))
            }
        }
    };
}

/// Visitor taking a string (parsed with `FromStr`) or a non-negative integer (parsed from
/// its decimal text: a port or a protocol number).
struct StrOrInt<T>(std::marker::PhantomData<T>);

impl<T> serde::de::Visitor<'_> for StrOrInt<T>
where
    T: std::str::FromStr<Err = String>,
{
    type Value = T;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
        v.parse().map_err(E::custom)
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<T, E> {
        v.to_string().parse().map_err(E::custom)
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<T, E> {
        v.to_string().parse().map_err(E::custom)
    }
}

string_serde!(PolicyAddress);
string_serde!(SgRemote);
string_serde!(Protocol);
string_serde!(PortRange);

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
        let (a, l) = s.split_once('/').ok_or_else(|| format!("invalid prefix {s:?} (expected address/length)"))?;
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
fn default_icmp_error_rate() -> u32 {
    100
}
fn default_icmp_error_burst() -> u32 {
    10
}
fn default_analyzer_port() -> u16 {
    8099
}
fn default_router_mac() -> Mac {
    Mac([0x00, 0x00, 0x5e, 0x00, 0x01, 0x00])
}
