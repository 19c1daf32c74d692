//! `[[route]]`: IPv4 and IPv6 routes in VRFs.

use super::check::{canonical, Checker, ConfigError, Unique};
use super::value::Prefix;
use serde::{Deserialize, Serialize};

/// An IPv4 or IPv6 route in a VRF.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// VRF id (`[[vrf]]`) whose FIB holds the route.
    pub vrf: u32,
    /// `a.b.c.d/len` or `x::y/len`.
    pub prefix: Prefix,
    /// Nexthop id (`[[nexthop]]`) that matching packets are forwarded through.
    pub nexthop: u32,
}

impl Checker<'_> {
    pub(super) fn routes(&self) -> Result<(), ConfigError> {
        let mut seen = Unique::entries("route", &self.cfg.routes);
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
            seen.check(self, i, "prefix", (r.vrf, r.prefix), |_, at| {
                format!("duplicate route {} in vrf {} ({at})", r.prefix, r.vrf)
            })?;
        }
        Ok(())
    }
}
