//! `[flow]`: flow table sizing, aging and HOLD limits.

use super::check::{Checker, ConfigError};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Main flow table entries: a power of two in this range.
const MIN_FLOW_ENTRIES: u32 = 1024;
const MAX_FLOW_ENTRIES: u32 = 1 << 24;
/// Packets queued per HOLD flow.
const MAX_HELD_PACKETS: u32 = 16;

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

impl Checker<'_> {
    pub(super) fn flow(&self, f: &FlowConfig) -> Result<(), ConfigError> {
        let err = |key: &str, msg: String| Err(self.table("flow", key, msg));
        let n = f.entries;
        if !n.is_power_of_two() || !(MIN_FLOW_ENTRIES..=MAX_FLOW_ENTRIES).contains(&n) {
            return err("entries", format!("{n} must be a power of two from {MIN_FLOW_ENTRIES} to {MAX_FLOW_ENTRIES}"));
        }
        if f.overflow_entries > MAX_FLOW_ENTRIES {
            return err("overflow_entries", format!("{} is more than {MAX_FLOW_ENTRIES}", f.overflow_entries));
        }
        if f.hold_limit == 0 {
            return err("hold_limit", "must be at least 1".into());
        }
        if !(1..=MAX_HELD_PACKETS).contains(&f.held_packets_per_flow) {
            return err(
                "held_packets_per_flow",
                format!("{} is out of range 1..={MAX_HELD_PACKETS}", f.held_packets_per_flow),
            );
        }
        if f.age_timeout_s == 0 {
            return err("age_timeout_s", "must be at least 1 second".into());
        }
        if f.hold_audit_s == 0 {
            return err("hold_audit_s", "must be at least 1 second".into());
        }
        if f.flow_table_path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            return err("flow_table_path", "must not be empty".into());
        }
        Ok(())
    }
}
