//! `[eal]`: DPDK EAL settings.

use super::check::{Checker, ConfigError, Unique};
use serde::{Deserialize, Serialize};

/// Highest CPU id (exclusive) accepted in `[eal]`.
const MAX_CORES: u32 = 1024;

/// DPDK EAL settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EalConfig {
    /// EAL lcore id of the main (control) thread; it runs on the CPU of the same number
    /// unless `main_cpu` says otherwise.
    #[serde(default)]
    pub main_core: u32,
    /// EAL lcore ids of the forwarding lcores, one pinned thread each; each runs on the CPU
    /// of the same number unless `forwarding_cpus` says otherwise. Must not contain
    /// `main_core`.
    pub forwarding_cores: Vec<u32>,
    /// The CPU each forwarding lcore is pinned to, in the order of `forwarding_cores` (same
    /// length; a CPU may be listed more than once, so more lcores than CPUs can run, slower
    /// but correct). When this or `main_cpu` is set the EAL gets `--lcores=<lcore>@<cpu>,...`
    /// instead of `-l`.
    #[serde(default)]
    pub forwarding_cpus: Option<Vec<u32>>,
    /// The CPU the main (control) thread, the agent and the exporter are pinned to (default:
    /// `main_core`).
    #[serde(default)]
    pub main_cpu: Option<u32>,
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
    /// TX descriptors per queue (default as `rx_desc`).
    #[serde(default = "default_ring")]
    pub tx_desc: u16,
    /// With `no_huge = false`: the hugetlbfs mount point DPDK takes its pages from
    /// (`--huge-dir`); by default, every mounted page size. See `crate::hugepages`.
    #[serde(default)]
    pub huge_dir: Option<std::path::PathBuf>,
    /// DPDK's packet-capture framework (`rte_pdump_init`), so that `dpdk-dumpcap` and
    /// `vifdump` capture the vifs. Default: on with `no_huge = false` unless `extra_args`
    /// rule out secondary processes (`--in-memory`, `--no-shconf`, `--huge-unlink`); it then
    /// keeps the hugepage files (no `--huge-unlink`) while the vRouter runs, which a secondary
    /// process maps, and removes them when it stops. See [`EalConfig::pdump_enabled`].
    #[serde(default)]
    pub pdump: Option<bool>,
}

/// Longest `file_prefix`: DPDK names its hugepage files `<prefix>map_<n>`, a takeover adds
/// `.t<pid>`, and the stats region records the prefix in 64 bytes for `vifdump`.
pub const MAX_FILE_PREFIX: usize = 48;

/// The `extra_args` after which no secondary process can attach, so `dpdk-dumpcap` cannot:
/// the argument, or `None`.
pub fn secondary_blocker(extra_args: &[String]) -> Option<&str> {
    extra_args
        .iter()
        .find(|a| matches!(a.as_str(), "--in-memory" | "--no-shconf" | "--huge-unlink" | "--huge-unlink=always"))
        .map(String::as_str)
}

impl Checker<'_> {
    pub(super) fn eal(&self, eal: &EalConfig) -> Result<(), ConfigError> {
        let err = |key: &str, msg: String| Err(self.table("eal", key, msg));
        if eal.main_core >= MAX_CORES {
            return err("main_core", format!("core {} is not below {MAX_CORES}", eal.main_core));
        }
        if eal.forwarding_cores.is_empty() {
            return err("forwarding_cores", "at least one forwarding core is needed".into());
        }
        let mut seen = Unique::items();
        for &core in &eal.forwarding_cores {
            if core >= MAX_CORES {
                return err("forwarding_cores", format!("core {core} is not below {MAX_CORES}"));
            }
            if core == eal.main_core {
                return err(
                    "forwarding_cores",
                    format!("core {core} is the main_core; forwarding cores must differ from it"),
                );
            }
            if seen.repeated(core) {
                return err("forwarding_cores", format!("core {core} is listed twice"));
            }
        }
        if let Some(cpu) = eal.main_cpu {
            if cpu >= MAX_CORES {
                return err("main_cpu", format!("CPU {cpu} is not below {MAX_CORES}"));
            }
        }
        if let Some(cpus) = &eal.forwarding_cpus {
            if cpus.len() != eal.forwarding_cores.len() {
                return err(
                    "forwarding_cpus",
                    format!(
                        "{} CPU(s) for {} forwarding core(s); give one CPU per entry of forwarding_cores",
                        cpus.len(),
                        eal.forwarding_cores.len()
                    ),
                );
            }
            if let Some(cpu) = cpus.iter().find(|&&c| c >= MAX_CORES) {
                return err("forwarding_cpus", format!("CPU {cpu} is not below {MAX_CORES}"));
            }
        }
        if eal.memory_mb < 64 {
            return err("memory_mb", format!("{} MiB is too little; at least 64", eal.memory_mb));
        }
        if eal.mbufs < 1024 {
            return err("mbufs", format!("{} mbufs is too few; at least 1024", eal.mbufs));
        }
        for (key, n) in [("rx_desc", eal.rx_desc), ("tx_desc", eal.tx_desc)] {
            if !n.is_power_of_two() || !(64..=16384).contains(&n) {
                return err(key, format!("{n} must be a power of two from 64 to 16384"));
            }
        }
        if let Some(prefix) = &eal.file_prefix {
            if prefix.is_empty() {
                return err("file_prefix", "must not be empty".into());
            }
            if let Some(c) = prefix.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-')) {
                return err(
                    "file_prefix",
                    format!("{prefix:?} contains {c:?}; only letters, digits, '_' and '-' are allowed"),
                );
            }
            if prefix.len() > MAX_FILE_PREFIX {
                return err(
                    "file_prefix",
                    format!("{prefix:?} has {} characters; at most {MAX_FILE_PREFIX}", prefix.len()),
                );
            }
        }
        if eal.pdump == Some(true) {
            if eal.no_huge {
                return err(
                    "pdump",
                    "needs no_huge = false: dpdk-dumpcap attaches as a DPDK secondary process, which maps the \
                     vRouter's huge pages (with no_huge = true its memory is private); set no_huge = false \
                     (see README, Memory modes) or pdump = false"
                        .into(),
                );
            }
            if let Some(a) = secondary_blocker(&eal.extra_args) {
                return err(
                    "pdump",
                    format!(
                        "extra_args has {a}, which lets no secondary process (dpdk-dumpcap) attach; remove it \
                         or set pdump = false"
                    ),
                );
            }
        }
        if let Some(i) = eal.vdevs.iter().position(|v| v.trim().is_empty()) {
            return err("vdevs", format!("entry {i} is empty"));
        }
        if let Some(msg) = crate::hugepages::huge_dir_problem(eal) {
            return err("huge_dir", msg);
        }
        Ok(())
    }
}

impl EalConfig {
    /// The CPU the main (control) thread and the agent threads run on.
    pub fn main_cpu(&self) -> u32 {
        self.main_cpu.unwrap_or(self.main_core)
    }

    /// The CPU each forwarding lcore runs on, in the order of `forwarding_cores`.
    pub fn forwarding_cpus(&self) -> Vec<u32> {
        self.forwarding_cpus.clone().unwrap_or_else(|| self.forwarding_cores.clone())
    }

    /// Whether the vRouter initialises DPDK's packet-capture framework: `pdump` when set,
    /// else on huge pages (`no_huge = false`) when `extra_args` let secondary processes
    /// attach ([`secondary_blocker`]).
    pub fn pdump_enabled(&self) -> bool {
        self.pdump.unwrap_or(!self.no_huge && secondary_blocker(&self.extra_args).is_none())
    }

    /// Whether the lcores are mapped onto CPUs explicitly (`--lcores`) rather than one lcore
    /// per CPU of the same number (`-l`).
    pub fn maps_cpus(&self) -> bool {
        self.forwarding_cpus.is_some() || self.main_cpu.is_some()
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
