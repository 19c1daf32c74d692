//! `[[route]]`: IPv4 and IPv6 routes in VRFs.

use super::check::{canonical, Checker, ConfigError};
use super::value::Prefix;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// An IPv4 or IPv6 route in a VRF.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub vrf: u32,
    /// `a.b.c.d/len` or `x::y/len`.
    pub prefix: Prefix,
    pub nexthop: u32,
}

impl Checker<'_> {
    pub(super) fn routes(&self) -> Result<(), ConfigError> {
        let mut seen: HashMap<(u32, Prefix), usize> = HashMap::new();
        for (i, e) in self.cfg.routes.iter().enumerate() {
            let r = e.get_ref();
            let err = |key: &str, msg: String| Err(self.entry("route", i, e, key, msg));
            if !self.vrfs.contains_key(&r.vrf) {
                return err("vrf", format!("vrf {} is not defined", r.vrf));
            }
            let canonical = canonical(r.prefix);
            if canonical != r.prefix {
                return err("prefix", format!("{} has host bits set; the prefix is {canonical}", r.prefix));
            }
            if !self.nexthops.contains_key(&r.nexthop) {
                return err("nexthop", format!("nexthop {} is not defined", r.nexthop));
            }
            if let Some(&first) = seen.get(&(r.vrf, r.prefix)) {
                let at = self.first_at(&self.cfg.routes[first]);
                return err("prefix", format!("duplicate route {} in vrf {} ({at})", r.prefix, r.vrf));
            }
            seen.insert((r.vrf, r.prefix), i);
        }
        Ok(())
    }
}
