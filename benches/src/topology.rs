//! The benchmark topology: one VM vif fed by the pcap source, one fabric vif whose TX frees
//! and counts, and a route that sends all the traffic into an MPLSoUDP tunnel.
//!
//! ```text
//!  net_pcap0 (rx_pcap=udp_N.pcap, infinite_rx=1)           net_pcap1 (rx_pcap=empty.pcap)
//!  vif0/0 "tap-bench0", virtual, VRF 1, mac 02:..:02  -->  vif0/1 "fabric0", fabric, VRF 0
//!     route 10.128.0.0/9 (VRF 1) -> nexthop 1: tunnel mplsoudp 10.10.0.1 -> 10.10.0.2, label 40
//! ```
//!
//! The frames of `gen_flows_pcap.py` go from 02:00:00:00:00:01 to 02:00:00:00:00:02 and from
//! 10.0.0.0/10 to 10.128.0.0/16, so the VM vif's MAC must be 02:00:00:00:00:02 for them to be
//! routed (not bridged), and every one of them matches the /9 route. The VM vif has no
//! address of its own; its allowed address pair 10.0.0.0/10 (a router VM's) lets those sources
//! through the vRouter's source check.

use crate::memory::Memory;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Destination MAC of every frame written by `gen_flows_pcap.py` (its `ETH_DST`).
pub const VM_VIF_MAC: &str = "02:00:00:00:00:02";
/// The VM vif (packet source).
pub const VM_VIF: u16 = 0;
/// The fabric vif (tunnel output).
pub const FABRIC_VIF: u16 = 1;
/// The vRouter's fabric address: the tunnel source.
pub const ROUTER_IP: &str = "10.10.0.1";
/// The remote vRouter: the tunnel destination.
pub const REMOTE_IP: &str = "10.10.0.2";
/// The MPLS label of the tunnel nexthop.
pub const LABEL: u32 = 40;
/// The route (VRF 1) that sends every benchmark frame into the tunnel.
pub const ROUTE: &str = "10.128.0.0/9";
/// The sources of the benchmark's frames: the VM vif's allowed address pair.
pub const VM_SOURCES: &str = "10.0.0.0/10";

/// The virtual network of the VM vif: with no `[[network_policy]]`, traffic inside one VN
/// passes, so every flow of the benchmark is set up as a forwarding flow.
pub const VN_NAME: &str = "default-domain:bench:vn1";

/// What varies between runs.
#[derive(Debug, Clone)]
pub struct Topology {
    /// The capture the VM vif's pcap device replays forever.
    pub pcap: PathBuf,
    /// The empty capture the fabric vif's pcap device reads.
    pub empty_pcap: PathBuf,
    /// The vRouter's run directory (regions, control socket).
    pub run_dir: PathBuf,
    /// DPDK `--file-prefix` (keeps concurrent runs' runtime directories apart).
    pub file_prefix: String,
    /// DPDK memory, MiB (see [`crate::memory::sizing`]).
    pub memory_mb: u64,
    /// Huge pages (`no_huge = false`, the flow table on hugetlbfs when a mount has room) or
    /// `--no-huge` (the flow table pinned to the run directory).
    pub memory: Memory,
    /// Mbufs in the packet pool.
    pub mbufs: u64,
    /// CPU of the vRouter's main thread.
    pub main_core: u32,
    /// CPU of the one forwarding lcore.
    pub fwd_core: u32,
    /// `[flow]` settings; `None` = `[flow] enabled = false` (the stateless path).
    pub flow: Option<FlowSettings>,
    /// The route-storm latency probe (`--route-storm`): a second VM vif fed by its own pcap
    /// and an output vif the probe's route points at when it is programmed.
    pub probe: Option<Probe>,
}

/// The probe stream of `vrouter-bench --route-storm` (see `route_storm`).
///
/// ```text
///  net_pcap2 (rx_pcap=probe.pcap, infinite_rx=1)       net_pcap3 (rx_pcap=empty.pcap)
///  vif0/2 "probe-in", virtual, VRF 1          -->      vif0/3 "probe-out", virtual, VRF 1
///     no route for 172.16.0.0/24 at start (dropped); route_set 172.16.0.0/24 -> nexthop 5
///     (encap, out of vif 3) makes it forwarded, route_delete drops it again
/// ```
#[derive(Debug, Clone)]
pub struct Probe {
    /// The probe capture (frames to [`PROBE_PREFIX`], from [`PROBE_IN_MAC`]'s peer).
    pub pcap: PathBuf,
    /// Where the probe output vif's pcap device writes what it sends (`tx_pcap`: every
    /// forwarded probe with the PMD's TX timestamp); `None`: TX frees and counts.
    pub out_pcap: Option<PathBuf>,
}

/// The probe input vif.
pub const PROBE_IN_VIF: u16 = 2;
/// The probe output vif (its TX counter shows the first probe forwarded by the new route).
pub const PROBE_OUT_VIF: u16 = 3;
/// MAC of the probe input vif (the probe frames' destination).
pub const PROBE_IN_MAC: &str = "02:00:00:00:00:03";
/// The encap nexthop towards the probe output vif.
pub const PROBE_NEXTHOP: u32 = 5;
/// The probe traffic's destination prefix (VRF 1): no route at start.
pub const PROBE_PREFIX: &str = "172.16.0.0/24";

/// The `[flow]` section of a stateful run (see `vrouter::config::FlowConfig`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FlowSettings {
    /// Main table entries (a power of two, at least 1024).
    pub entries: u32,
    /// `None`: the vRouter's default (20 % of `entries`).
    pub overflow_entries: Option<u32>,
    /// Most flows in HOLD at once (`vr_flow_hold_limit`).
    pub hold_limit: u32,
    /// Packets queued per flow while it is in HOLD.
    pub held_packets_per_flow: u32,
    /// Seconds after which an idle flow is deleted.
    pub age_timeout_s: u32,
    /// Seconds a flow may stay in HOLD before the audit turns it into a DROP flow.
    pub hold_audit_s: u32,
    /// Mirror every flow to one analyzer behind the fabric vif (Juniper header, UDP 8099):
    /// a network policy on the VM's VN passes everything with `mirror_to`.
    pub mirror: bool,
    /// `[ipfix] enabled = true` with this one (UDP) collector: every flow record of the
    /// exporter thread (`vr-export`, on the main core) goes there, with the default scan and
    /// template settings (`vrouter-bench --ops`). `None`: `[ipfix]` off, as by default.
    pub ipfix_collector: Option<SocketAddr>,
}

/// The benchmark analyzer (reached through the fabric vif; its copies are freed by the
/// fabric pcap device's TX like the tunnel traffic).
pub const ANALYZER_IP: &str = "10.99.0.9";
/// Name of the benchmark analyzer in the mirror table.
pub const ANALYZER_NAME: &str = "bench-analyzer";

impl FlowSettings {
    /// A table for `flows` forward flows and their reverse flows: the next power of two of
    /// 4 x `flows` (2 x for the pairs, 2 x headroom so buckets rarely overflow), at least
    /// 1024. Flows never age during a run (one day), the vRouter's other defaults.
    pub fn for_flows(flows: u64) -> FlowSettings {
        let entries = (flows.saturating_mul(4)).next_power_of_two().clamp(1024, 1 << 30) as u32;
        FlowSettings {
            entries,
            overflow_entries: None,
            hold_limit: 1000,
            held_packets_per_flow: 3,
            age_timeout_s: 86_400,
            hold_audit_s: 5,
            mirror: false,
            ipfix_collector: None,
        }
    }

    /// Bytes of the flow table file these settings make (one forwarding lcore).
    pub fn table_bytes(&self) -> u64 {
        flow_table::FlowTableConfig {
            main_entries: self.entries,
            overflow_entries: self.overflow_entries.unwrap_or(0),
            max_lcores: 1,
        }
        .file_size()
        .unwrap_or(0)
    }

    /// Packets the data plane may hold at once (mbufs the pool needs beyond the source).
    pub fn max_held_packets(&self) -> u64 {
        u64::from(self.hold_limit) * u64::from(self.held_packets_per_flow)
    }

    fn toml(&self) -> String {
        let mut s = format!("[flow]\nenabled = true\nentries = {}\n", self.entries);
        if let Some(o) = self.overflow_entries {
            s.push_str(&format!("overflow_entries = {o}\n"));
        }
        s.push_str(&format!(
            "hold_limit = {}\nheld_packets_per_flow = {}\nage_timeout_s = {}\nhold_audit_s = {}\n",
            self.hold_limit, self.held_packets_per_flow, self.age_timeout_s, self.hold_audit_s
        ));
        if self.mirror {
            s.push_str(&format!(
                r#"
# Mirroring: every flow to {ANALYZER_NAME} ({ANALYZER_IP}, Juniper header), over the fabric.
[[nexthop]]
id = 2
type = "encap"
vif = {FABRIC_VIF}
dst_mac = "02:00:00:00:10:02"

[[route]]
vrf = 0
prefix = "10.99.0.0/24"
nexthop = 2

[[analyzer]]
name = "{ANALYZER_NAME}"
ip = "{ANALYZER_IP}"

[[network_policy]]
name = "mirror-all"
vns = ["{VN_NAME}"]
[[network_policy.rule]]
uuid = "cccccccc-0000-4000-8000-000000000001"
action = "pass"
mirror_to = ["{ANALYZER_NAME}"]
"#
            ));
        }
        if let Some(c) = self.ipfix_collector {
            s.push_str(&format!(
                r#"
# Flow records over IPFIX (UDP) to the benchmark's collector; scan and templates as by default.
[ipfix]
enabled = true
collectors = [{c}]
"#,
                c = q(&c.to_string())
            ));
        }
        s
    }
}

/// A TOML basic string (JSON string escapes are valid TOML escapes).
fn q(s: &str) -> String {
    serde_json::to_string(s).expect("string serialises")
}

fn qp(p: &Path) -> String {
    q(&p.display().to_string())
}

impl Topology {
    /// The `--vdev` arguments (also what the config lists).
    pub fn vdevs(&self) -> [String; 2] {
        [
            format!("net_pcap0,rx_pcap={},infinite_rx=1", self.pcap.display()),
            format!("net_pcap1,rx_pcap={}", self.empty_pcap.display()),
        ]
    }

    /// The vdevs and tables of the probe, when there is one: (vdev list tail, TOML tables).
    fn probe_toml(&self) -> (String, String) {
        let Some(p) = &self.probe else { return (String::new(), String::new()) };
        let v2 = q(&format!("net_pcap2,rx_pcap={},infinite_rx=1", p.pcap.display()));
        let v3 = match &p.out_pcap {
            Some(o) => q(&format!("net_pcap3,rx_pcap={},tx_pcap={}", self.empty_pcap.display(), o.display())),
            None => q(&format!("net_pcap3,rx_pcap={}", self.empty_pcap.display())),
        };
        let tables = format!(
            r#"
# Route-storm latency probe: {PROBE_PREFIX} has no route at start; the benchmark programs
# it towards nexthop {PROBE_NEXTHOP} (out of vif {PROBE_OUT_VIF}) and deletes it again.
[[vif]]
id = {PROBE_IN_VIF}
name = "probe-in"
type = "virtual"
device = "net_pcap2"
mac = "{PROBE_IN_MAC}"
vrf = 1
vn_name = "{VN_NAME}"
allowed_address_pairs = [{{ ip = "{VM_SOURCES}" }}]

[[vif]]
id = {PROBE_OUT_VIF}
name = "probe-out"
type = "virtual"
device = "net_pcap3"
mac = "02:00:00:00:00:04"
vrf = 1
vn_name = "{VN_NAME}"

[[nexthop]]
id = {PROBE_NEXTHOP}
type = "encap"
vif = {PROBE_OUT_VIF}
dst_mac = "02:00:00:00:00:05"
"#
        );
        (format!(", {v2}, {v3}"), tables)
    }

    /// The vRouter configuration file.
    pub fn config_toml(&self) -> String {
        let [v0, v1] = self.vdevs();
        let (probe_vdevs, probe_tables) = self.probe_toml();
        let flow = match &self.flow {
            // --no-huge: 4 KiB pages throughout, the table too (the run directory is a tmpfs).
            Some(f) if self.memory == Memory::NoHuge => f.toml().replacen(
                "[flow]\n",
                &format!("[flow]\nflow_table_path = {}\n", qp(&self.run_dir.join(flow_table::FLOW_FILE_NAME))),
                1,
            ),
            Some(f) => f.toml(),
            None => "[flow]\nenabled = false   # the stateless path: routes and nexthops only\n".into(),
        };
        format!(
            r#"# vrouter-bench: VM vif -> route {ROUTE} -> MPLSoUDP tunnel on the fabric vif.
[eal]
main_core = {main}
forwarding_cores = [{fwd}]
no_huge = {no_huge}
# No packet capture (dpdk-dumpcap): --huge-unlink, the pages go back however a run ends.
pdump = false
memory_mb = {mem}
mbufs = {mbufs}
file_prefix = {prefix}
vdevs = [{v0}, {v1}{probe_vdevs}]

[vrouter]
run_dir = {run_dir}
router_ip = "{ROUTER_IP}"
summary_interval_s = 0

[[vif]]
id = {VM_VIF}
name = "tap-bench0"
type = "virtual"
device = "net_pcap0"
mac = "{VM_VIF_MAC}"
vrf = 1
vn_name = "{VN_NAME}"
# A router VM: it sends from the whole source range, not from one address.
allowed_address_pairs = [{{ ip = "{VM_SOURCES}" }}]

[[vif]]
id = {FABRIC_VIF}
name = "fabric0"
type = "fabric"
device = "net_pcap1"
mac = "02:00:00:00:10:01"
ip = "{ROUTER_IP}"
vrf = 0

[[vrf]]
id = 0
name = "fabric"

[[vrf]]
id = 1
name = "{VN_NAME}"

[[nexthop]]
id = 1
type = "tunnel"
encap = "mplsoudp"
remote_ip = "{REMOTE_IP}"
label = {LABEL}
vif = {FABRIC_VIF}
dst_mac = "02:00:00:00:10:02"

[[route]]
vrf = 1
prefix = "{ROUTE}"
nexthop = 1
{probe_tables}
{flow}"#,
            main = self.main_core,
            fwd = self.fwd_core,
            mem = self.memory_mb,
            no_huge = self.memory == Memory::NoHuge,
            mbufs = self.mbufs,
            prefix = q(&self.file_prefix),
            v0 = q(&v0),
            v1 = q(&v1),
            run_dir = qp(&self.run_dir),
            flow = flow,
            probe_vdevs = probe_vdevs,
            probe_tables = probe_tables,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topo() -> Topology {
        Topology {
            pcap: "/tmp/vrouter-bench/pcaps/udp_1000.pcap".into(),
            empty_pcap: "/tmp/vrouter-bench/empty.pcap".into(),
            run_dir: "/tmp/vrouter-bench/run/vrbench1_0".into(),
            file_prefix: "vrbench1_0".into(),
            memory_mb: 1465,
            memory: Memory::NoHuge,
            mbufs: 98304,
            main_core: 0,
            fwd_core: 1,
            flow: None,
            probe: None,
        }
    }

    /// The generated file is accepted by the vRouter's own parser and validator, and says
    /// what the benchmark promises.
    #[test]
    fn config_is_valid_for_the_vrouter() {
        let t = topo();
        let text = t.config_toml();
        let cfg = vrouter::config::parse(&text, "bench.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(cfg.eal.forwarding_cores, vec![1]);
        assert_eq!(cfg.eal.main_core, 0);
        assert!(cfg.eal.no_huge);
        assert_eq!(cfg.eal.memory_mb, 1465);
        assert_eq!(cfg.eal.mbufs, 98304);
        assert_eq!(cfg.eal.file_prefix.as_deref(), Some("vrbench1_0"));
        assert_eq!(
            cfg.eal.vdevs,
            vec![
                "net_pcap0,rx_pcap=/tmp/vrouter-bench/pcaps/udp_1000.pcap,infinite_rx=1".to_string(),
                "net_pcap1,rx_pcap=/tmp/vrouter-bench/empty.pcap".to_string()
            ]
        );
        assert_eq!(cfg.vrouter.summary_interval_s, 0);
        let vm = cfg.vifs.iter().map(|v| v.get_ref()).find(|v| v.id == VM_VIF).unwrap();
        assert_eq!(vm.mac.to_string(), VM_VIF_MAC);
        assert_eq!(vm.vrf, 1);
        // Every source of gen_flows_pcap.py (10.0.0.0/10) passes the VM vif's source check.
        let fib = vrouter::fib::Fib::from_config(&cfg).unwrap();
        let vif = fib.vif(VM_VIF).unwrap();
        assert!(vif.source_check);
        for src in ["10.0.0.0", "10.0.0.1", "10.33.4.5", "10.63.255.255"] {
            assert!(vrouter::pipeline::source::v4_allowed(&fib, vif, src.parse().unwrap()), "{src}");
        }
        assert!(!vrouter::pipeline::source::v4_allowed(&fib, vif, "10.64.0.0".parse().unwrap()));
        assert_eq!(cfg.routes.len(), 1);
        assert_eq!(cfg.routes[0].get_ref().prefix.to_string(), ROUTE);
        match cfg.nexthops[0].get_ref() {
            vrouter::config::NexthopConfig::Tunnel { encap, label, vif, remote_ip, .. } => {
                assert_eq!(*encap, vrouter::config::TunnelEncap::Mplsoudp);
                assert_eq!(*label, LABEL);
                assert_eq!(*vif, FABRIC_VIF);
                assert_eq!(remote_ip.to_string(), REMOTE_IP);
            }
            other => panic!("unexpected nexthop {other:?}"),
        }
    }

    #[test]
    fn stateless_disables_flows_explicitly() {
        let text = topo().config_toml();
        assert!(text.contains("[flow]\nenabled = false"), "{text}");
        let cfg = vrouter::config::parse(&text, "bench.toml").unwrap();
        assert!(!cfg.flow.enabled);
        let vm = cfg.vifs.iter().map(|v| v.get_ref()).find(|v| v.id == VM_VIF).unwrap();
        assert_eq!(vm.vn_name.as_deref(), Some(VN_NAME));
    }

    #[test]
    fn stateful_flow_section_is_valid() {
        let mut t = topo();
        let mut f = FlowSettings::for_flows(1_048_576);
        assert_eq!(f.entries, 4 << 20);
        assert_eq!(FlowSettings::for_flows(1).entries, 1024);
        assert_eq!(FlowSettings::for_flows(1000).entries, 4096);
        assert_eq!(FlowSettings::for_flows(65536).entries, 262_144);
        f.hold_limit = 65536;
        f.overflow_entries = Some(2048);
        assert_eq!(f.max_held_packets(), 3 * 65536);
        t.flow = Some(f.clone());
        let cfg = vrouter::config::parse(&t.config_toml(), "bench.toml").unwrap();
        assert!(cfg.flow.enabled);
        assert_eq!(cfg.flow.entries, f.entries);
        assert_eq!(cfg.flow.overflow_entries, 2048);
        assert_eq!(cfg.flow.hold_limit, 65536);
        assert_eq!(cfg.flow.held_packets_per_flow, 3);
        assert_eq!(cfg.flow.age_timeout_s, 86_400);
        assert_eq!(cfg.flow.hold_audit_s, 5);
    }

    #[test]
    fn memory_modes() {
        let mut t = topo();
        t.flow = Some(FlowSettings::for_flows(1000));
        // --no-huge: 4 KiB pages, the flow table pinned to the run directory.
        let cfg = vrouter::config::parse(&t.config_toml(), "bench.toml").unwrap();
        assert!(cfg.eal.no_huge);
        assert_eq!(cfg.flow.flow_table_path, Some(t.run_dir.join("flow")));
        // Huge pages: DPDK on them, the table where the vRouter's automatic pick puts it.
        t.memory = Memory::Huge;
        let cfg = vrouter::config::parse(&t.config_toml(), "bench.toml").unwrap();
        assert!(!cfg.eal.no_huge);
        assert_eq!(cfg.flow.flow_table_path, None);
        assert_eq!(cfg.flow.entries, 4096);
        // Stateless: no table either way.
        t.flow = None;
        let cfg = vrouter::config::parse(&t.config_toml(), "bench.toml").unwrap();
        assert!(!cfg.eal.no_huge && !cfg.flow.enabled);
        // The table's size as the vRouter makes it (4096 main entries, 20 % overflow, one lcore).
        let b = FlowSettings::for_flows(1000).table_bytes();
        let direct = flow_table::FlowTableConfig { main_entries: 4096, overflow_entries: 0, max_lcores: 1 };
        assert_eq!(b, direct.file_size().unwrap());
        assert!(b > 4096 * 128, "{b}");
    }

    #[test]
    fn mirror_section_is_valid() {
        let mut t = topo();
        let mut f = FlowSettings::for_flows(1000);
        f.mirror = true;
        t.flow = Some(f);
        let cfg = vrouter::config::parse(&t.config_toml(), "bench.toml").unwrap();
        assert_eq!(cfg.analyzers.len(), 1);
        assert_eq!(cfg.network_policies[0].get_ref().rules[0].get_ref().mirror_to, [ANALYZER_NAME]);
        let fib = vrouter::fib::Fib::from_config(&cfg).unwrap();
        let (vif, _, _) = vrouter::mirror::encap::resolve_nexthop(&fib, ANALYZER_IP.parse().unwrap())
            .expect("the analyzer is reachable through the fabric vif");
        assert_eq!(vif, FABRIC_VIF);
    }

    #[test]
    fn ipfix_section_is_valid() {
        let mut t = topo();
        let mut f = FlowSettings::for_flows(1000);
        t.flow = Some(f.clone());
        let plain = t.config_toml();
        assert!(!plain.contains("[ipfix]"), "{plain}");
        assert!(!vrouter::config::parse(&plain, "bench.toml").unwrap().ipfix.enabled);
        f.ipfix_collector = Some("127.0.0.1:40123".parse().unwrap());
        f.mirror = true;
        t.flow = Some(f);
        let text = t.config_toml();
        assert!(text.contains("[ipfix]\nenabled = true\ncollectors = [\"127.0.0.1:40123\"]\n"), "{text}");
        let cfg = vrouter::config::parse(&text, "bench.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert!(cfg.ipfix.enabled);
        assert_eq!(cfg.ipfix.collectors, ["127.0.0.1:40123"]);
        let d = vrouter::config::IpfixConfig::default();
        assert_eq!(cfg.ipfix.template_refresh_s, d.template_refresh_s);
        assert_eq!(cfg.ipfix.observation_domain_id, d.observation_domain_id);
        // Scanning as by default; Sandesh export stays off (IPFIX alone runs the exporter).
        assert_eq!(cfg.export, vrouter::config::ExportConfig::default());
        assert!(!cfg.export.enabled && cfg.flow.enabled);
        // The mirror tables after [ipfix] still parse as such.
        assert_eq!(cfg.analyzers.len(), 1);
    }

    #[test]
    fn probe_section_is_valid() {
        let mut t = topo();
        t.flow = Some(FlowSettings::for_flows(1000));
        t.probe = Some(Probe { pcap: "/tmp/p.pcap".into(), out_pcap: Some("/tmp/o.pcap".into()) });
        let text = t.config_toml();
        let cfg = vrouter::config::parse(&text, "bench.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(cfg.eal.vdevs.len(), 4);
        assert!(cfg.eal.vdevs[2].contains("rx_pcap=/tmp/p.pcap,infinite_rx=1"));
        assert!(cfg.eal.vdevs[3].ends_with(",tx_pcap=/tmp/o.pcap"));
        let fib = vrouter::fib::Fib::from_config(&cfg).unwrap();
        assert_eq!(fib.vif(PROBE_OUT_VIF).unwrap().vrf, 1);
        assert!(fib.nh_index(PROBE_NEXTHOP).is_some());
        // No route for the probe's prefix at start.
        assert!(fib.vrf(1).unwrap().route_v4("172.16.0.1".parse().unwrap()).is_none());
        assert_eq!(topo().config_toml().matches("[[vif]]").count(), 2);
    }

    #[test]
    fn odd_paths_are_escaped() {
        let mut t = topo();
        t.run_dir = "/tmp/a \"b\"\\c".into();
        let cfg = vrouter::config::parse(&t.config_toml(), "bench.toml").unwrap();
        assert_eq!(cfg.vrouter.run_dir, PathBuf::from("/tmp/a \"b\"\\c"));
    }
}
