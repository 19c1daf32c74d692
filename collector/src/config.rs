//! The collector's configuration (TOML), e.g.
//!
//! ```toml
//! [collector]
//! sandesh_listen = "0.0.0.0:8086"   # Sandesh generators connect here
//! http_listen = "0.0.0.0:8081"      # analytics REST API
//! data_dir = "/var/lib/vrouter-collector"
//! flow_retention_s = 172800         # keep flow records and series 48 h (and traces)
//! admin_token = "…"                 # operator token of the trace API (optional)
//!
//! [[tenant]]                        # a tenant of the trace API (optional, repeatable)
//! name = "red"                      # its project, as in the vRouter's [[tenant]]
//! token = "…"                       # its bearer token
//! ```
//!
//! With no `[[tenant]]` and no `admin_token`, `/analytics/traces` is open like the rest of
//! the API; otherwise it needs a token ([`crate::trace`]).
//!
//! Every key is optional (defaults below); unknown keys are errors. Errors name the file, the
//! line and the field: `collector.toml:4: collector.ingest_queue: must be at least 1`.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use thiserror::Error;

/// Default Sandesh listen address (the reference `CollectorPort`).
pub const DEFAULT_SANDESH_LISTEN: &str = "0.0.0.0:8086";
/// Default REST listen address (the reference `OpServerPort`).
pub const DEFAULT_HTTP_LISTEN: &str = "0.0.0.0:8081";

/// Why a configuration could not be loaded.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Not TOML, or not the schema.
    #[error("{origin}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Parse {
        /// File name.
        origin: String,
        /// Line, when known.
        line: Option<usize>,
        /// toml's message.
        message: String,
    },
    /// A value out of range.
    #[error("{origin}{}: {field}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        /// File name (or `command line`).
        origin: String,
        /// Line, when known.
        line: Option<usize>,
        /// TOML path of the field.
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// The file's top level.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// `[collector]`.
    #[serde(default)]
    pub collector: CollectorConfig,
    /// `[[tenant]]`.
    #[serde(default, rename = "tenant")]
    pub tenants: Vec<TenantConfig>,
}

/// `[[tenant]]`: a tenant allowed to read its own project's traces.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// The project name (what trace requests created with this tenant's token on the vRouter
    /// carry).
    pub name: String,
    /// The bearer token.
    pub token: String,
}

/// Shortest accepted token.
pub const MIN_TOKEN_LEN: usize = 8;

/// `[collector]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CollectorConfig {
    /// Sandesh listen address.
    pub sandesh_listen: String,
    /// REST API listen address.
    pub http_listen: String,
    /// Directory of the database.
    pub data_dir: PathBuf,
    /// `Source` of the control replies; empty: the host name.
    pub hostname: String,
    /// How long flow records and series rows are kept (seconds).
    pub flow_retention_s: u64,
    /// How often expired flow data is removed (seconds).
    pub purge_interval_s: u64,
    /// Capacity of the queue between sessions and the writer (messages).
    pub ingest_queue: usize,
    /// How long a new connection may take to send its handshake (seconds).
    pub handshake_timeout_s: u64,
    /// Largest accepted Sandesh frame (bytes).
    pub max_frame_len: usize,
    /// Most rows a query may return.
    pub query_max_rows: usize,
    /// The operator's token for the trace API (sees every trace).
    pub admin_token: Option<String>,
    /// The tenants (`[[tenant]]`, outside `[collector]`).
    #[serde(skip)]
    pub tenants: Vec<TenantConfig>,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        CollectorConfig {
            sandesh_listen: DEFAULT_SANDESH_LISTEN.into(),
            http_listen: DEFAULT_HTTP_LISTEN.into(),
            data_dir: PathBuf::from("/var/lib/vrouter-collector"),
            hostname: String::new(),
            flow_retention_s: 48 * 3600,
            purge_interval_s: 60,
            ingest_queue: 1024,
            handshake_timeout_s: 30,
            max_frame_len: 1 << 20,
            query_max_rows: 100_000,
            admin_token: None,
            tenants: Vec::new(),
        }
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|b| *b == b'\n').count() + 1
}

/// Line of the `i`-th `[[tenant]]` header of `text`, if present.
fn tenant_line(text: &str, i: usize) -> Option<usize> {
    text.lines().enumerate().filter(|(_, l)| l.trim() == "[[tenant]]").nth(i).map(|(n, _)| n + 1)
}

/// Line of `key = ` in the `[collector]` section of `text`, if present.
fn key_line(text: &str, key: &str) -> Option<usize> {
    let mut in_section = false;
    for (n, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            in_section = t == "[collector]";
            continue;
        }
        if in_section {
            if let Some(rest) = t.strip_prefix(key) {
                if rest.trim_start().starts_with('=') {
                    return Some(n + 1);
                }
            }
        }
    }
    None
}

impl CollectorConfig {
    /// Parses and validates TOML text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<CollectorConfig, ConfigError> {
        let file: ConfigFile = toml::from_str(text).map_err(|e| ConfigError::Parse {
            origin: origin.to_owned(),
            line: e.span().map(|s| line_of(text, s.start)),
            message: e.message().trim_end().to_owned(),
        })?;
        let mut c = file.collector;
        c.tenants = file.tenants;
        c.validate(origin, Some(text))?;
        Ok(c)
    }

    /// Reads, parses and validates a file.
    pub fn load(path: &std::path::Path) -> Result<CollectorConfig, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io { path: origin.clone(), source })?;
        Self::from_toml(&text, &origin)
    }

    /// Checks values; `text` (the file) locates the offending line.
    pub fn validate(&self, origin: &str, text: Option<&str>) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            origin: origin.to_owned(),
            line: text.and_then(|t| key_line(t, key)),
            field: format!("collector.{key}"),
            message,
        };
        for (key, v) in [("sandesh_listen", &self.sandesh_listen), ("http_listen", &self.http_listen)] {
            v.parse::<SocketAddr>()
                .map_err(|_| invalid(key, format!("`{v}` is not an address:port such as 0.0.0.0:8086")))?;
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "must not be empty".into()));
        }
        if self.flow_retention_s == 0 {
            return Err(invalid("flow_retention_s", "must be at least 1".into()));
        }
        if self.flow_retention_s > 10 * 365 * 86_400 {
            return Err(invalid("flow_retention_s", "must be at most 10 years (315360000)".into()));
        }
        if self.purge_interval_s == 0 {
            return Err(invalid("purge_interval_s", "must be at least 1".into()));
        }
        if !(1..=1_000_000).contains(&self.ingest_queue) {
            return Err(invalid("ingest_queue", "must be between 1 and 1000000".into()));
        }
        if self.handshake_timeout_s == 0 {
            return Err(invalid("handshake_timeout_s", "must be at least 1".into()));
        }
        if !(4096..=64 << 20).contains(&self.max_frame_len) {
            return Err(invalid("max_frame_len", "must be between 4096 and 67108864".into()));
        }
        if self.query_max_rows == 0 {
            return Err(invalid("query_max_rows", "must be at least 1".into()));
        }
        if let Some(t) = &self.admin_token {
            if t.trim().len() < MIN_TOKEN_LEN || t.contains(char::is_whitespace) {
                return Err(invalid(
                    "admin_token",
                    format!("must be at least {MIN_TOKEN_LEN} characters without spaces"),
                ));
            }
        }
        for (i, t) in self.tenants.iter().enumerate() {
            let tenant = |field: &str, message: String| ConfigError::Invalid {
                origin: origin.to_owned(),
                line: text.and_then(|x| tenant_line(x, i)),
                field: format!("tenant[{i}].{field}"),
                message,
            };
            if t.name.trim().is_empty() {
                return Err(tenant("name", "must not be empty".into()));
            }
            if t.token.len() < MIN_TOKEN_LEN || t.token.contains(char::is_whitespace) {
                return Err(tenant("token", format!("must be at least {MIN_TOKEN_LEN} characters without spaces")));
            }
            if let Some(j) = self.tenants[..i].iter().position(|o| o.name == t.name) {
                return Err(tenant("name", format!("`{}` is also tenant[{j}]", t.name)));
            }
            if let Some(j) = self.tenants[..i].iter().position(|o| o.token == t.token) {
                return Err(tenant("token", format!("is also the token of tenant[{j}]")));
            }
            if self.admin_token.as_deref() == Some(t.token.as_str()) {
                return Err(tenant("token", "is also the admin_token".into()));
            }
        }
        Ok(())
    }

    /// The parsed Sandesh listen address (valid after [`Self::validate`]).
    pub fn sandesh_addr(&self) -> SocketAddr {
        self.sandesh_listen.parse().expect("validated")
    }

    /// The parsed REST listen address (valid after [`Self::validate`]).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_listen.parse().expect("validated")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let c = CollectorConfig::from_toml("", "c.toml").unwrap();
        assert_eq!(c, CollectorConfig::default());
        assert_eq!(c.sandesh_addr().port(), 8086);
        assert_eq!(c.http_addr().port(), 8081);
        let c = CollectorConfig::from_toml(
            "[collector]\nsandesh_listen = \"127.0.0.1:9086\"\ndata_dir = \"/tmp/x\"\nflow_retention_s = 60\n",
            "c.toml",
        )
        .unwrap();
        assert_eq!(c.sandesh_addr().port(), 9086);
        assert_eq!(c.flow_retention_s, 60);
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let e = CollectorConfig::from_toml("[collector]\n\ningest_queue = 0\n", "c.toml").unwrap_err();
        assert_eq!(e.to_string(), "c.toml:3: collector.ingest_queue: must be between 1 and 1000000");
        let e = CollectorConfig::from_toml("[collector]\nhttp_listen = \"localhost\"\n", "c.toml").unwrap_err();
        assert_eq!(
            e.to_string(),
            "c.toml:2: collector.http_listen: `localhost` is not an address:port such as 0.0.0.0:8086"
        );
        let e = CollectorConfig::from_toml("[collector]\nretention = 5\n", "c.toml").unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with("c.toml:2: unknown field `retention`"), "{s}");
        let e = CollectorConfig::from_toml("[collector]\nflow_retention_s = \"x\"\n", "c.toml").unwrap_err();
        assert!(e.to_string().starts_with("c.toml:2: "), "{e}");
    }

    #[test]
    fn tenants_and_admin_token() {
        let ok = "[collector]\nadmin_token = \"admin-secret\"\n\n[[tenant]]\nname = \"red\"\ntoken = \"red-secret\"\n\n[[tenant]]\nname = \"blue\"\ntoken = \"blue-secret\"\n";
        let c = CollectorConfig::from_toml(ok, "c.toml").unwrap();
        assert_eq!(c.admin_token.as_deref(), Some("admin-secret"));
        assert_eq!(c.tenants.len(), 2);
        assert_eq!((c.tenants[1].name.as_str(), c.tenants[1].token.as_str()), ("blue", "blue-secret"));
        let e = CollectorConfig::from_toml(&ok.replace("blue-secret", "red-secret"), "c.toml").unwrap_err();
        assert_eq!(e.to_string(), "c.toml:8: tenant[1].token: is also the token of tenant[0]");
        let e = CollectorConfig::from_toml(&ok.replace("\"blue\"", "\"red\""), "c.toml").unwrap_err();
        assert_eq!(e.to_string(), "c.toml:8: tenant[1].name: `red` is also tenant[0]");
        let e = CollectorConfig::from_toml(&ok.replace("red-secret", "short"), "c.toml").unwrap_err();
        assert_eq!(e.to_string(), "c.toml:4: tenant[0].token: must be at least 8 characters without spaces");
        let e = CollectorConfig::from_toml(&ok.replace("admin-secret", "x"), "c.toml").unwrap_err();
        assert_eq!(e.to_string(), "c.toml:2: collector.admin_token: must be at least 8 characters without spaces");
        let e = CollectorConfig::from_toml(&ok.replace("blue-secret", "admin-secret"), "c.toml").unwrap_err();
        assert_eq!(e.to_string(), "c.toml:8: tenant[1].token: is also the admin_token");
        let e = CollectorConfig::from_toml("[[tenant]]\nname = \"red\"\ntoken = \"red-secret\"\nvns = []\n", "c.toml")
            .unwrap_err();
        assert!(e.to_string().starts_with("c.toml:"), "{e}");
        assert!(e.to_string().contains("unknown field `vns`"), "{e}");
    }
}
