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

/// What is wrong with one route, as `(key, message)`: its VRF (`vrf_defined`), its prefix
/// (host bits), its nexthop (`nh_defined`). The file's check and the programming API's
/// `route_set` both use it.
pub fn route_problem(r: &RouteConfig, vrf_defined: bool, nh_defined: bool) -> Option<(&'static str, String)> {
    if !vrf_defined {
        return Some(("vrf", format!("vrf {} is not defined", r.vrf)));
    }
    let canonical = canonical(r.prefix);
    if canonical != r.prefix {
        return Some(("prefix", format!("{} has host bits set; the prefix is {canonical}", r.prefix)));
    }
    if !nh_defined {
        return Some(("nexthop", format!("nexthop {} is not defined", r.nexthop)));
    }
    None
}

impl Checker<'_> {
    pub(super) fn routes(&self) -> Result<(), ConfigError> {
        let mut seen = Unique::entries("route", &self.cfg.routes);
        for (i, e) in self.cfg.routes.iter().enumerate() {
            let r = e.get_ref();
            let err = |key: &str, msg: String| Err(self.entry("route", i, e, key, msg));
            if let Some((key, msg)) =
                route_problem(r, self.vrfs.contains_key(&r.vrf), self.nexthops.contains_key(&r.nexthop))
            {
                return err(key, msg);
            }
            seen.check(self, i, "prefix", (r.vrf, r.prefix), |_, at| {
                format!("duplicate route {} in vrf {} ({at})", r.prefix, r.vrf)
            })?;
        }
        Ok(())
    }
}
