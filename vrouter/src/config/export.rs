//! `[export]`: flow records and UVEs sent to analytics collectors over Sandesh.
//!
//! ```toml
//! [export]
//! enabled = true
//! collectors = ["127.0.0.1:8086"]   # tried in order, rotated through on failure
//! # source = "compute-1"            # generator name (default: the host name)
//! node_type = "Compute"
//! instance_id = "0"
//! module = "contrail-vrouter-agent"
//! # flow_export_rate = 1000        # sampled flow records per second; 0 disables flow export;
//! #                                 # absent: every record is exported, unsampled
//! scan_percent = 25                 # the whole flow table is scanned within this % of the age time
//! scan_interval_ms = 100            # scan timer
//! uve_interval_s = 30               # VMI and vRouter UVEs
//! flow_buffer = 65536               # records buffered while no collector is reachable
//! backoff_base_ms = 1000            # reconnect backoff: 1, 2, 4, 8, 16, 30 s by default
//! backoff_max_ms = 30000
//! ```

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// The `[export]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExportConfig {
    /// Run the exporter.
    pub enabled: bool,
    /// Collector addresses (`host:port` with a literal IP).
    pub collectors: Vec<String>,
    /// Generator name (`Source`); default: the host name.
    pub source: Option<String>,
    /// `NodeType`.
    pub node_type: String,
    /// `InstanceId`.
    pub instance_id: String,
    /// `Module`.
    pub module: String,
    /// Target rate of exported flow records per second (reference §7.4 sampling); 0 disables
    /// flow export; absent exports every record unsampled.
    pub flow_export_rate: Option<u32>,
    /// The whole table is scanned within this percentage of `flow.age_timeout_s`.
    pub scan_percent: u32,
    /// Scan timer period.
    pub scan_interval_ms: u32,
    /// UVE period.
    pub uve_interval_s: u32,
    /// Flow records buffered while disconnected.
    pub flow_buffer: u32,
    /// First reconnect delay.
    pub backoff_base_ms: u32,
    /// Largest reconnect delay.
    pub backoff_max_ms: u32,
}

impl Default for ExportConfig {
    fn default() -> Self {
        ExportConfig {
            enabled: false,
            collectors: vec!["127.0.0.1:8086".into()],
            source: None,
            node_type: "Compute".into(),
            instance_id: "0".into(),
            module: "contrail-vrouter-agent".into(),
            flow_export_rate: None,
            scan_percent: 25,
            scan_interval_ms: 100,
            uve_interval_s: 30,
            flow_buffer: 65_536,
            backoff_base_ms: 1000,
            backoff_max_ms: 30_000,
        }
    }
}

/// Largest flow buffer accepted (records).
pub const MAX_EXPORT_FLOW_BUFFER: u32 = 16 << 20;

impl ExportConfig {
    /// The collector addresses, parsed.
    pub fn collector_addrs(&self) -> Vec<SocketAddr> {
        self.collectors.iter().filter_map(|c| c.parse().ok()).collect()
    }

    /// Checks the values; on failure returns the offending key and why.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.collectors.is_empty() {
            return Err(("collectors", "at least one collector is required".into()));
        }
        for c in &self.collectors {
            if c.parse::<SocketAddr>().is_err() {
                return Err(("collectors", format!("`{c}` is not an IP:port address (e.g. \"127.0.0.1:8086\")")));
            }
        }
        if self.source.as_deref().is_some_and(str::is_empty) {
            return Err(("source", "must not be empty (omit it for the host name)".into()));
        }
        for (key, v) in [("node_type", &self.node_type), ("instance_id", &self.instance_id), ("module", &self.module)] {
            if v.is_empty() {
                return Err((key, "must not be empty (the collector rejects it)".into()));
            }
        }
        if !(1..=100).contains(&self.scan_percent) {
            return Err(("scan_percent", format!("{} is out of range 1..=100", self.scan_percent)));
        }
        if !(10..=10_000).contains(&self.scan_interval_ms) {
            return Err(("scan_interval_ms", format!("{} is out of range 10..=10000", self.scan_interval_ms)));
        }
        if self.uve_interval_s == 0 {
            return Err(("uve_interval_s", "must be at least 1 second".into()));
        }
        if !(1..=MAX_EXPORT_FLOW_BUFFER).contains(&self.flow_buffer) {
            return Err(("flow_buffer", format!("{} is out of range 1..={MAX_EXPORT_FLOW_BUFFER}", self.flow_buffer)));
        }
        if self.backoff_base_ms == 0 {
            return Err(("backoff_base_ms", "must be at least 1".into()));
        }
        if self.backoff_max_ms < self.backoff_base_ms {
            return Err(("backoff_max_ms", "must not be below backoff_base_ms".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let c = ExportConfig::default();
        assert_eq!(c.check(), Ok(()));
        assert_eq!(c.collector_addrs(), vec!["127.0.0.1:8086".parse().unwrap()]);
        assert!(!c.enabled);
    }

    #[test]
    fn bad_values_name_the_key() {
        let bad = |f: &dyn Fn(&mut ExportConfig)| {
            let mut c = ExportConfig::default();
            f(&mut c);
            c.check().unwrap_err().0
        };
        assert_eq!(bad(&|c| c.collectors = vec!["localhost".into()]), "collectors");
        assert_eq!(bad(&|c| c.collectors.clear()), "collectors");
        assert_eq!(bad(&|c| c.node_type.clear()), "node_type");
        assert_eq!(bad(&|c| c.scan_percent = 0), "scan_percent");
        assert_eq!(bad(&|c| c.flow_buffer = 0), "flow_buffer");
        assert_eq!(bad(&|c| c.backoff_max_ms = 10), "backoff_max_ms");
        assert_eq!(bad(&|c| c.source = Some(String::new())), "source");
    }
}
