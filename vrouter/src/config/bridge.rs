//! `[[bridge]]`: L2 bridge entries.

use super::check::{Checker, ConfigError, Unique};
use super::value::Mac;
use serde::{Deserialize, Serialize};

/// An L2 bridge entry: destination MAC -> nexthop in a VRF.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeConfig {
    /// VRF whose bridge table holds the entry (must be a `[[vrf]]` id).
    pub vrf: u32,
    /// Destination MAC looked up in the VRF's bridge table; not all zero, unique per VRF.
    pub mac: Mac,
    /// Nexthop id (`[[nexthop]]`) that frames to `mac` are sent through.
    pub nexthop: u32,
}

impl Checker<'_> {
    pub(super) fn bridge(&self) -> Result<(), ConfigError> {
        let mut seen = Unique::entries("bridge", &self.cfg.bridge);
        for (i, e) in self.cfg.bridge.iter().enumerate() {
            let b = e.get_ref();
            let err = |key: &str, msg: String| Err(self.entry("bridge", i, e, key, msg));
            if !self.vrfs.contains_key(&b.vrf) {
                return err("vrf", format!("vrf {} is not defined", b.vrf));
            }
            if b.mac == Mac::default() {
                return err("mac", "must not be all zero".into());
            }
            if !self.nexthops.contains_key(&b.nexthop) {
                return err("nexthop", format!("nexthop {} is not defined", b.nexthop));
            }
            seen.check(self, i, "mac", (b.vrf, b.mac), |_, at| {
                format!("duplicate bridge entry {} in vrf {} ({at})", b.mac, b.vrf)
            })?;
        }
        Ok(())
    }
}
