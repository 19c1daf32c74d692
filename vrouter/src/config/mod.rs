//! vRouter configuration: TOML in, validated [`Config`] out.
//!
//! [`load`] parses the file (serde errors already carry the field and line), then
//! [`validate()`] checks cross-references and values and reports the offending field with
//! its line. Nothing is started from a configuration that failed either step.

pub mod export;
mod locate;
pub mod schema;
pub mod validate;

pub use export::ExportConfig;
pub use schema::*;
pub use validate::{validate, ConfigError};

use std::path::Path;

/// Reads, parses and validates a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| ConfigError::Io { path: path.display().to_string(), source: e })?;
    parse(&text, &path.display().to_string())
}

/// Parses and validates configuration text; `origin` names it in errors.
pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
    let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::parse(origin, text, e))?;
    validate(&cfg, text, origin)?;
    Ok(cfg)
}
