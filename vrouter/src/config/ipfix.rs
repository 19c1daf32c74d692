//! `[ipfix]`: flow records to IPFIX collectors (RFC 7011), next to (or instead of) Sandesh.
//!
//! ```toml
//! [ipfix]
//! enabled = true
//! collectors = ["127.0.0.1:4739"]   # IP:PORT or udp://IP:PORT (UDP), tcp://IP:PORT; each gets every record
//! observation_domain_id = 1
//! template_refresh_s = 60           # UDP: templates again this often (TCP: once per connection)
//! max_message_size = 1400           # bytes per message (keep UDP under the path MTU)
//! enterprise_number = 32473         # PEN of the enterprise-specific elements (RFC 5612's
//!                                   # documentation number: a placeholder, see the README)
//! ```
//!
//! The records are those of the Sandesh exporter (the same scan, diffs and sampling), so the
//! scan and sampling settings of `[export]` (`scan_percent`, `scan_interval_ms`,
//! `flow_export_rate`) apply to both, whether or not `[export]` itself is enabled.

use serde::{Deserialize, Serialize};

/// The `[ipfix]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct IpfixConfig {
    /// Export flow records over IPFIX.
    pub enabled: bool,
    /// Collectors: `IP:PORT` or `udp://IP:PORT` (UDP), `tcp://IP:PORT` (TCP).
    pub collectors: Vec<String>,
    /// Observation Domain ID of every message.
    pub observation_domain_id: u32,
    /// UDP: seconds between template refreshes.
    pub template_refresh_s: u32,
    /// Largest message, bytes.
    pub max_message_size: u32,
    /// Private enterprise number of the enterprise-specific elements.
    pub enterprise_number: u32,
}

impl Default for IpfixConfig {
    fn default() -> Self {
        IpfixConfig {
            enabled: false,
            collectors: vec![format!("127.0.0.1:{}", ipfix::IPFIX_PORT)],
            observation_domain_id: 1,
            template_refresh_s: 60,
            max_message_size: 1400,
            enterprise_number: ipfix::DOCUMENTATION_PEN,
        }
    }
}

/// Longest template refresh period accepted (a day).
pub const MAX_TEMPLATE_REFRESH_S: u32 = 86_400;

impl IpfixConfig {
    /// The collectors, parsed (the ones that parse: [`IpfixConfig::check`] refuses the rest).
    pub fn collector_addrs(&self) -> Vec<ipfix::Collector> {
        self.collectors.iter().filter_map(|c| c.parse().ok()).collect()
    }

    /// The exporter's configuration.
    pub fn exporter_config(&self) -> ipfix::ExporterConfig {
        let mut e = ipfix::ExporterConfig::new(self.collector_addrs());
        e.observation_domain_id = self.observation_domain_id;
        e.template_refresh = std::time::Duration::from_secs(u64::from(self.template_refresh_s));
        e.max_message_size = self.max_message_size as usize;
        e.enterprise_number = self.enterprise_number;
        e
    }

    /// Checks the values; on failure returns the offending key and why.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.collectors.is_empty() {
            return Err(("collectors", "at least one collector is required".into()));
        }
        for c in &self.collectors {
            c.parse::<ipfix::Collector>().map_err(|e| ("collectors", e.to_string()))?;
        }
        if !(1..=MAX_TEMPLATE_REFRESH_S).contains(&self.template_refresh_s) {
            return Err((
                "template_refresh_s",
                format!("{} is out of range 1..={MAX_TEMPLATE_REFRESH_S}", self.template_refresh_s),
            ));
        }
        let min = ipfix::export::MIN_MESSAGE_SIZE as u32;
        if !(min..=65_535).contains(&self.max_message_size) {
            return Err(("max_message_size", format!("{} is out of range {min}..=65535", self.max_message_size)));
        }
        if self.enterprise_number == 0 {
            return Err(("enterprise_number", "0 is IANA's own number; use a private enterprise number".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_off() {
        let c = IpfixConfig::default();
        assert_eq!(c.check(), Ok(()));
        assert!(!c.enabled);
        let e = c.exporter_config();
        assert_eq!(e.collectors, vec!["udp://127.0.0.1:4739".parse().unwrap()]);
        assert_eq!((e.enterprise_number, e.max_message_size), (32473, 1400));
    }

    #[test]
    fn bad_values_name_the_key() {
        let bad = |f: &dyn Fn(&mut IpfixConfig)| {
            let mut c = IpfixConfig::default();
            f(&mut c);
            c.check().unwrap_err().0
        };
        assert_eq!(bad(&|c| c.collectors.clear()), "collectors");
        assert_eq!(bad(&|c| c.collectors = vec!["collector:4739".into()]), "collectors");
        assert_eq!(bad(&|c| c.collectors = vec!["sctp://127.0.0.1:4739".into()]), "collectors");
        assert_eq!(bad(&|c| c.template_refresh_s = 0), "template_refresh_s");
        assert_eq!(bad(&|c| c.max_message_size = 100), "max_message_size");
        assert_eq!(bad(&|c| c.max_message_size = 70_000), "max_message_size");
        assert_eq!(bad(&|c| c.enterprise_number = 0), "enterprise_number");
        let c =
            IpfixConfig { collectors: vec!["tcp://10.0.0.9:4739".into(), "[::1]:4739".into()], ..Default::default() };
        assert_eq!(c.check(), Ok(()));
        assert_eq!(c.collector_addrs().len(), 2);
    }
}
