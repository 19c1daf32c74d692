//! `[[tenant]]`: tenants (projects) and the tokens that let them manage trace requests on
//! their own VNs.

use super::check::{Checker, ConfigError, Unique};
use serde::{Deserialize, Serialize};

/// A tenant (project) for trace requests:
///
/// ```toml
/// [[tenant]]
/// name = "demo"
/// token = "a-secret-of-16-or-more-characters"
/// vns = ["default-domain:demo:vn1"]
/// ```
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// Tenant name, unique and non-empty.
    pub name: String,
    /// Bearer token of the tenant (at least 16 characters).
    pub token: String,
    /// The virtual networks (vif `vn_name`s) the tenant owns.
    pub vns: Vec<String>,
}

impl Checker<'_> {
    pub(super) fn tenants(&self) -> Result<(), ConfigError> {
        let list = &self.cfg.tenants;
        // The HTTP port serves tenants' traces and, with a controller token, the programming API.
        let served = !list.is_empty() || self.cfg.vrouter.control_token_file.is_some();
        if self.cfg.vrouter.trace_api.is_some() && !served {
            return Err(self.table(
                "vrouter",
                "trace_api",
                "the trace API only serves tenants and a controller: add a [[tenant]] or vrouter.control_token_file",
            ));
        }
        let vns: std::collections::HashSet<&str> =
            self.cfg.vifs.iter().filter_map(|v| v.get_ref().vn_name.as_deref()).collect();
        let (mut names, mut tokens) = (Unique::entries("tenant", list), Unique::entries("tenant", list));
        for (i, e) in list.iter().enumerate() {
            let t: &TenantConfig = e.get_ref();
            let err = |key: &str, msg: String| Err(self.entry("tenant", i, e, key, msg));
            if t.name.trim().is_empty() {
                return err("name", "must not be empty".into());
            }
            names.check(self, i, "name", t.name.as_str(), |_, at| {
                format!("duplicate tenant name {:?} ({at})", t.name)
            })?;
            if t.token.len() < 16 || t.token.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return err("token", "must be at least 16 characters, without spaces".into());
            }
            tokens.check(self, i, "token", t.token.as_str(), |_, at| {
                format!("the same token as another tenant ({at})")
            })?;
            if t.vns.is_empty() {
                return err("vns", "must name at least one virtual network".into());
            }
            if let Some(vn) = t.vns.iter().find(|vn| !vns.contains(vn.as_str())) {
                return err("vns", format!("no vif is in virtual network {vn:?}"));
            }
        }
        Ok(())
    }
}
