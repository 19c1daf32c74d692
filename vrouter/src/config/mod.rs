//! vRouter configuration: TOML in, validated [`Config`] out.
//!
//! [`load`] parses the file (serde errors already carry the field and line), then
//! [`validate()`] checks cross-references and values and reports the offending field with
//! its line. Nothing is started from a configuration that failed either step.
//!
//! Each table has a module holding its serde type(s) and their checks: `eal`, `vrouter`,
//! `vif`, `vrf`, `nexthop`, `route`, `bridge`, `label`, `flow`, `analyzer`, `policy`
//! (`[[network_policy]]`), `security_group`, `tenant`, [`export`] and [`ipfix`] (`[log]` is `logging::LogConfig`); `value` has the
//! string-typed values (MACs, prefixes, protocols, port ranges). [`schema`] re-exports them
//! all next to the whole file, [`Config`]; `check` is the driver and the shared helpers
//! of [`validate()`]; `locate` finds line numbers from `toml_edit` spans.

mod analyzer;
mod bridge;
mod check;
mod eal;
pub mod export;
mod flow;
pub mod ipfix;
mod label;
mod locate;
mod nexthop;
mod policy;
mod route;
pub mod schema;
mod security_group;
mod tenant;
mod value;
mod vif;
mod vrf;
mod vrouter;

#[cfg(test)]
mod tests;

pub use self::ipfix::IpfixConfig;
pub use check::{validate, ConfigError};
pub use export::ExportConfig;
pub use route::route_problem;
pub use schema::*;
pub use vif::MAX_VIFS;

use std::path::Path;

/// Reads, parses and validates a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| ConfigError::Io { path: path.display().to_string(), source: e })?;
    parse(&text, &path.display().to_string())
}

/// Parses and validates configuration text; `origin` names it in errors.
pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
    let mut cfg: Config = toml::from_str(text).map_err(|e| ConfigError::parse(origin, text, e))?;
    for v in &mut cfg.vifs {
        v.get_mut().resolve();
    }
    validate(&cfg, text, origin)?;
    Ok(cfg)
}
