//! `[[label]]`: MPLS labels for fabric decap.

use super::check::{Checker, ConfigError, MPLS_FIRST_LABEL, MPLS_LABEL_LIMIT};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// An MPLS label for fabric decap: label -> nexthop (typically an encap nexthop to a VM).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LabelConfig {
    pub label: u32,
    pub nexthop: u32,
}

impl Checker<'_> {
    pub(super) fn labels(&self) -> Result<(), ConfigError> {
        let mut seen: HashMap<u32, usize> = HashMap::new();
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
            if let Some(&first) = seen.get(&l.label) {
                let at = self.first_at(&self.cfg.labels[first]);
                return err("label", format!("duplicate label {} ({at})", l.label));
            }
            seen.insert(l.label, i);
            if !self.nexthops.contains_key(&l.nexthop) {
                return err("nexthop", format!("nexthop {} is not defined", l.nexthop));
            }
        }
        Ok(())
    }
}
