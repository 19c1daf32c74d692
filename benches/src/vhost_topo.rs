//! The vRouter configuration of `vrouter-bench --vhost`: two VM vifs on vhost-user sockets
//! (client mode, the vRouter's default: the guest listens, as QEMU does) and a fabric vif on
//! DPDK's `net_null` device with `no-rx=1` (its RX returns nothing, its TX frees and counts:
//! the cheapest sink DPDK has, like a NIC that takes every frame).
//!
//! ```text
//!  vm-guest sender (vm1.sock)    vif0/1 "tap-vm1", VRF 1, mac 02:00:00:00:00:02 (the frames' destination)
//!  vm-guest sink   (vm2.sock)    vif0/2 "tap-vm2", VRF 1
//!  net_null0,no-rx=1             vif0/0 "fabric0", VRF 0, 10.10.0.1
//!
//!  VM -> VM:     route 10.128.0.0/9 (VRF 1) -> nexthop 2: encap, out of vif 2 (to the sink VM)
//!  VM -> fabric: route 10.128.0.0/9 (VRF 1) -> nexthop 1: MPLSoUDP 10.10.0.1 -> 10.10.0.2,
//!                label 40, out of the fabric vif
//! ```
//!
//! The flow table is on (`[flow] enabled = true`, sized for the pcap's flows); both VM vifs
//! are in one virtual network with no policy, so every flow is set up as a forwarding flow.
//! The frames of `gen_flows_pcap.py` come from 10.0.0.0/10, the sender vif's allowed
//! address pair (a router VM), so they pass the source check.

use crate::topology::{FlowSettings, LABEL, REMOTE_IP, ROUTE, ROUTER_IP, VM_SOURCES, VM_VIF_MAC, VN_NAME};
use serde::Serialize;
use std::path::PathBuf;

/// The fabric vif.
pub const FABRIC_VIF: u16 = 0;
/// The sender VM's vif.
pub const VM1_VIF: u16 = 1;
/// The sink VM's vif.
pub const VM2_VIF: u16 = 2;
/// The fabric's sink device.
pub const FABRIC_VDEV: &str = "net_null0,no-rx=1";

/// Where the traffic goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Path {
    /// To the sink VM (vif 2).
    VmToVm,
    /// Into the MPLSoUDP tunnel on the fabric vif.
    VmToFabric,
}

impl Path {
    /// The vif whose TX counts the forwarded packets.
    pub fn out_vif(self) -> u16 {
        match self {
            Path::VmToVm => VM2_VIF,
            Path::VmToFabric => FABRIC_VIF,
        }
    }
}

/// What varies between runs.
#[derive(Debug, Clone)]
pub struct VhostTopology {
    /// Where the traffic goes.
    pub path: Path,
    /// The sender's socket.
    pub vm1_socket: PathBuf,
    /// The sink's socket.
    pub vm2_socket: PathBuf,
    /// Queue pairs of each vhost vif.
    pub queues: u16,
    /// The run directory.
    pub run_dir: PathBuf,
    /// DPDK `--file-prefix`.
    pub file_prefix: String,
    /// Hugepages (`no_huge = false`) or not.
    pub huge: bool,
    /// DPDK memory, MiB.
    pub memory_mb: u32,
    /// Mbufs in the packet pool.
    pub mbufs: u32,
    /// CPU of the main thread.
    pub main_core: u32,
    /// The forwarding lcores (EAL lcore ids; each on the CPU of the same number unless
    /// `forwarding_cpus` says otherwise).
    pub forwarding_cores: Vec<u32>,
    /// `[eal] forwarding_cpus`: the CPU of each forwarding lcore (DPDK `--lcores` mapping),
    /// so that 2 lcores can run on a 2-CPU machine whose CPU 0 is the generator's.
    pub forwarding_cpus: Option<Vec<u32>>,
    /// The flow table.
    pub flow: FlowSettings,
}

fn q(s: &str) -> String {
    serde_json::to_string(s).expect("string serialises")
}

impl VhostTopology {
    /// The vRouter configuration file.
    pub fn config_toml(&self) -> String {
        let (route_nh, what) = match self.path {
            Path::VmToVm => (2, "VM -> VM (vif 1 -> vif 2)"),
            Path::VmToFabric => (1, "VM -> fabric, MPLSoUDP"),
        };
        let list = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
        let mut cores = format!("forwarding_cores = [{}]", list(&self.forwarding_cores));
        if let Some(cpus) = &self.forwarding_cpus {
            cores.push_str(&format!("\nforwarding_cpus = [{}]", list(cpus)));
        }
        format!(
            r#"# vrouter-bench --vhost: {what}, flows on.
[eal]
main_core = {main}
{cores}
no_huge = {no_huge}
# No packet capture (dpdk-dumpcap): --huge-unlink, the pages go back however a run ends.
pdump = false
memory_mb = {mem}
mbufs = {mbufs}
file_prefix = {prefix}
# The fabric's sink: RX returns nothing, TX frees and counts.
vdevs = [{fabric_vdev}]

[vrouter]
run_dir = {run_dir}
router_ip = "{ROUTER_IP}"
summary_interval_s = 0

[[vif]]
id = {FABRIC_VIF}
name = "fabric0"
type = "fabric"
device = "net_null0"
mac = "02:00:00:00:10:01"
ip = "{ROUTER_IP}"
vrf = 0

[[vif]]
id = {VM1_VIF}
name = "tap-vm1"
type = "virtual"
mac = "{VM_VIF_MAC}"
vrf = 1
vn_name = "{VN_NAME}"
# A router VM: it sends from the whole source range of the pcap.
allowed_address_pairs = [{{ ip = "{VM_SOURCES}" }}]
vhost = {{ socket = {s1}, mode = "client", queues = {queues} }}

[[vif]]
id = {VM2_VIF}
name = "tap-vm2"
type = "virtual"
mac = "02:00:00:00:00:12"
vrf = 1
vn_name = "{VN_NAME}"
vhost = {{ socket = {s2}, mode = "client", queues = {queues} }}

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

[[nexthop]]
id = 2
type = "encap"
vif = {VM2_VIF}
dst_mac = "02:00:00:00:00:22"

[[route]]
vrf = 1
prefix = "{ROUTE}"
nexthop = {route_nh}

{flow}"#,
            main = self.main_core,
            no_huge = !self.huge,
            mem = self.memory_mb,
            mbufs = self.mbufs,
            prefix = q(&self.file_prefix),
            fabric_vdev = q(FABRIC_VDEV),
            run_dir = q(&self.run_dir.display().to_string()),
            s1 = q(&self.vm1_socket.display().to_string()),
            s2 = q(&self.vm2_socket.display().to_string()),
            queues = self.queues,
            flow = self.flow_toml(),
        )
    }

    /// The `[flow]` section. Without hugepages the flow table goes in the run directory (a
    /// tmpfs) too; on hugepages the vRouter puts it on hugetlbfs by itself.
    fn flow_toml(&self) -> String {
        let f = &self.flow;
        let path = if self.huge {
            String::new()
        } else {
            format!("flow_table_path = {}\n", q(&self.run_dir.join(flow_table::FLOW_FILE_NAME).display().to_string()))
        };
        format!(
            "[flow]\n{path}enabled = true\nentries = {}\nhold_limit = {}\nheld_packets_per_flow = {}\nage_timeout_s = {}\nhold_audit_s = {}\n",
            f.entries, f.hold_limit, f.held_packets_per_flow, f.age_timeout_s, f.hold_audit_s
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topo(path: Path) -> VhostTopology {
        VhostTopology {
            path,
            vm1_socket: "/tmp/vb/vm1.sock".into(),
            vm2_socket: "/tmp/vb/vm2.sock".into(),
            queues: 1,
            run_dir: "/dev/shm/vb/run".into(),
            file_prefix: "vbv1".into(),
            huge: true,
            memory_mb: 512,
            mbufs: 16383,
            main_core: 0,
            forwarding_cores: vec![1],
            forwarding_cpus: None,
            flow: FlowSettings::for_flows(1000),
        }
    }

    /// The vRouter's own parser accepts the file; the route goes where the path says.
    #[test]
    fn configs_are_valid_and_route_as_named() {
        for path in [Path::VmToVm, Path::VmToFabric] {
            let t = topo(path);
            let text = t.config_toml();
            let cfg = vrouter::config::parse(&text, "vhost.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
            assert!(!cfg.eal.no_huge);
            assert!(cfg.flow.enabled);
            assert_eq!(cfg.eal.vdevs, vec![FABRIC_VDEV.to_string()]);
            let vm1 = cfg.vifs.iter().map(|v| v.get_ref()).find(|v| v.id == VM1_VIF).unwrap();
            assert_eq!(vm1.device, "net_vhost1");
            assert_eq!(vm1.probe_args().as_deref(), Some("net_vhost1,iface=/tmp/vb/vm1.sock,queues=1,client=1"));
            let fib = vrouter::fib::Fib::from_config(&cfg).unwrap();
            let nh = fib.vrf(1).unwrap().route_v4("10.128.3.4".parse().unwrap()).expect("routed");
            assert_eq!(Some(nh), fib.nh_index(if path == Path::VmToVm { 2 } else { 1 }), "{path:?}");
            let vif = fib.vif(VM1_VIF).unwrap();
            assert!(vrouter::pipeline::source::v4_allowed(&fib, vif, "10.33.4.5".parse().unwrap()));
        }
        let mut two = topo(Path::VmToVm);
        two.queues = 2;
        let cfg = vrouter::config::parse(&two.config_toml(), "vhost.toml").unwrap();
        assert!(!two.config_toml().contains("forwarding_cpus"));
        assert!(cfg.vifs.iter().all(|v| v.get_ref().vhost.as_ref().is_none_or(|h| h.queues == 2)));
        let two_lcores = VhostTopology { forwarding_cores: vec![1, 2], forwarding_cpus: Some(vec![1, 1]), ..two };
        let text = two_lcores.config_toml();
        assert!(text.contains("forwarding_cores = [1, 2]\nforwarding_cpus = [1, 1]\n"), "{text}");
        let nohuge = VhostTopology { huge: false, ..topo(Path::VmToFabric) };
        let cfg = vrouter::config::parse(&nohuge.config_toml(), "vhost.toml").unwrap();
        assert!(cfg.eal.no_huge);
        assert_eq!(cfg.flow.flow_table_path.as_deref(), Some(std::path::Path::new("/dev/shm/vb/run/flow")));
        let huge = vrouter::config::parse(&topo(Path::VmToFabric).config_toml(), "vhost.toml").unwrap();
        assert_eq!(huge.flow.flow_table_path, None, "on hugepages the vRouter picks hugetlbfs");
    }
}
