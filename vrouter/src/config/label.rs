//! `[[label]]`: MPLS labels for fabric decap.

use super::check::{Checker, ConfigError, Unique, MPLS_FIRST_LABEL, MPLS_LABEL_LIMIT};
use serde::{Deserialize, Serialize};

/// An MPLS label for fabric decap: label -> nexthop (typically an encap nexthop to a VM).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LabelConfig {
    /// Incoming MPLS label (16..2^20; 0-15 are reserved), unique.
    pub label: u32,
    /// Nexthop id (`[[nexthop]]`) that decapsulated packets carrying the label are sent through.
    pub nexthop: u32,
}

impl Checker<'_> {
    pub(super) fn labels(&self) -> Result<(), ConfigError> {
        let mut seen = Unique::entries("label", &self.cfg.labels);
        for (i, e) in self.cfg.labels.iter().enumerate() {
            let l = e.get_ref();
            let err = |key: &str, msg: String| Err(self.entry("label", i, e, key, msg));
            if l.label < MPLS_FIRST_LABEL {
                return err("label", format!("MPLS label {} is reserved (0-15)", l.label));
            }
            if l.label >= MPLS_LABEL_LIMIT {
                return err(
                    "label",
                    format!("MPLS label {} does not fit in 20 bits (max {})", l.label, MPLS_LABEL_LIMIT - 1),
                );
            }
            seen.check(self, i, "label", l.label, |_, at| format!("duplicate label {} ({at})", l.label))?;
            if !self.nexthops.contains_key(&l.nexthop) {
                return err("nexthop", format!("nexthop {} is not defined", l.nexthop));
            }
        }
        Ok(())
    }
}
