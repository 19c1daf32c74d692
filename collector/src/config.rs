//! The collector's configuration (TOML), e.g.
//!
//! ```toml
//! [collector]
//! sandesh_listen = "0.0.0.0:8086"   # Sandesh generators connect here
//! http_listen = "0.0.0.0:8081"      # analytics REST API
//! data_dir = "/var/lib/vrouter-collector"
//! flow_retention_s = 172800         # keep flow records and series 48 h (and traces)
//! admin_token = "…"                 # operator token of the trace API (optional)
//! store = "sqlite"                  # or "clickhouse": the clickhouse_* keys below
//! clickhouse_url = "http://127.0.0.1:8123"
//! clickhouse_database = "vrouter_analytics"
//! clickhouse_user = "default"
//! clickhouse_password = ""
//! clickhouse_batch_size = 20000     # flow samples per insert
//! clickhouse_flush_ms = 1000        # longest wait of a row before its insert
//! clickhouse_retention_days = 2     # whole days kept (daily partitions dropped)
//! clickhouse_max_buffered_rows = 2000000   # held while ClickHouse is unreachable
//! clickhouse_flow_cache = 200000    # flows whose aggregates the writer keeps in memory
//!
//! [[tenant]]                        # a tenant of the trace API (optional, repeatable)
//! name = "red"                      # its project, as in the vRouter's [[tenant]]
//! token = "…"                       # its bearer token
//!
//! [log]                             # the logs (optional; RUST_LOG overrides level and filter)
//! level = "info"                    # off, error, warn, info, debug, trace
//! filter = "collector::session=debug"   # per-target directives (RUST_LOG syntax)
//! format = "text"                   # or "json"
//! ```
//!
//! With no `[[tenant]]` and no `admin_token`, `/analytics/traces` is open like the rest of
//! the API; otherwise it needs a token ([`crate::trace`]).
//!
//! Every key is optional (defaults below); unknown keys are errors. Errors name the file, the
//! line and the field: `collector.toml:4: collector.ingest_queue: must be at least 1`.

pub use logging::LogConfig;
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
    /// `[log]`.
    #[serde(default)]
    pub log: LogConfig,
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

/// Where the collector keeps what it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// One SQLite file in `data_dir` (the default).
    #[default]
    Sqlite,
    /// A ClickHouse server (`clickhouse_*`), shared by any number of collectors.
    Clickhouse,
}

impl std::str::FromStr for StoreKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sqlite" => Ok(StoreKind::Sqlite),
            "clickhouse" => Ok(StoreKind::Clickhouse),
            _ => Err(format!("`{s}` is not a store (sqlite, clickhouse)")),
        }
    }
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
    /// The store.
    pub store: StoreKind,
    /// ClickHouse's HTTP interface, `http://host:port`.
    pub clickhouse_url: String,
    /// The ClickHouse database (made by `collector --init-schema`).
    pub clickhouse_database: String,
    /// The ClickHouse user.
    pub clickhouse_user: String,
    /// Its password.
    pub clickhouse_password: String,
    /// Flow samples per ClickHouse insert.
    pub clickhouse_batch_size: usize,
    /// Longest time a row waits before its insert (ms).
    pub clickhouse_flush_ms: u64,
    /// Days of data ClickHouse keeps (whole daily partitions are dropped).
    pub clickhouse_retention_days: u64,
    /// Most rows held while ClickHouse is unreachable (then the oldest are dropped, counted).
    pub clickhouse_max_buffered_rows: usize,
    /// Flows whose aggregates the writer keeps in memory (others are read back).
    pub clickhouse_flow_cache: usize,
    /// The tenants (`[[tenant]]`, outside `[collector]`).
    #[serde(skip)]
    pub tenants: Vec<TenantConfig>,
    /// The logs (`[log]`, outside `[collector]`).
    #[serde(skip)]
    pub log: LogConfig,
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
            store: StoreKind::Sqlite,
            clickhouse_url: "http://127.0.0.1:8123".into(),
            clickhouse_database: "vrouter_analytics".into(),
            clickhouse_user: "default".into(),
            clickhouse_password: String::new(),
            clickhouse_batch_size: 20_000,
            clickhouse_flush_ms: 1000,
            clickhouse_retention_days: 2,
            clickhouse_max_buffered_rows: 2_000_000,
            clickhouse_flow_cache: 200_000,
            tenants: Vec::new(),
            log: LogConfig::default(),
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

/// Line of `key = ` in the `[section]` section of `text`, if present.
fn key_line(text: &str, section: &str, key: &str) -> Option<usize> {
    let mut in_section = false;
    for (n, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            in_section = t.strip_prefix('[').and_then(|t| t.strip_suffix(']')) == Some(section);
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
        c.log = file.log;
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
            line: text.and_then(|t| key_line(t, "collector", key)),
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
        self.validate_clickhouse(&invalid)?;
        self.log.check().map_err(|(key, message)| ConfigError::Invalid {
            origin: origin.to_owned(),
            line: text.and_then(|t| key_line(t, "log", key)),
            field: format!("log.{key}"),
            message,
        })?;
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

    /// The `clickhouse_*` keys (checked whatever the store, so that a switch to ClickHouse
    /// finds them valid).
    fn validate_clickhouse(&self, invalid: &dyn Fn(&str, String) -> ConfigError) -> Result<(), ConfigError> {
        let url = &self.clickhouse_url;
        let Some(rest) = url.strip_prefix("http://") else {
            return Err(invalid(
                "clickhouse_url",
                format!("`{url}` is not an http:// URL such as http://127.0.0.1:8123"),
            ));
        };
        if rest.trim_end_matches('/').is_empty() || rest.trim_end_matches('/').contains(['/', '?', '#', ' ']) {
            return Err(invalid("clickhouse_url", format!("`{url}` must be http://host:port, without a path")));
        }
        let db = &self.clickhouse_database;
        if db.is_empty()
            || !db.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || db.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(invalid(
                "clickhouse_database",
                format!("`{db}` is not a database name (letters, digits and _, not starting with a digit)"),
            ));
        }
        if self.clickhouse_user.is_empty() {
            return Err(invalid("clickhouse_user", "must not be empty".into()));
        }
        if !(1..=1_000_000).contains(&self.clickhouse_batch_size) {
            return Err(invalid("clickhouse_batch_size", "must be between 1 and 1000000".into()));
        }
        if !(1..=60_000).contains(&self.clickhouse_flush_ms) {
            return Err(invalid("clickhouse_flush_ms", "must be between 1 and 60000".into()));
        }
        if !(1..=3650).contains(&self.clickhouse_retention_days) {
            return Err(invalid("clickhouse_retention_days", "must be between 1 and 3650".into()));
        }
        if self.clickhouse_max_buffered_rows < self.clickhouse_batch_size {
            return Err(invalid(
                "clickhouse_max_buffered_rows",
                format!("must be at least clickhouse_batch_size ({})", self.clickhouse_batch_size),
            ));
        }
        if self.clickhouse_flow_cache < 2 {
            return Err(invalid("clickhouse_flow_cache", "must be at least 2".into()));
        }
        Ok(())
    }

    /// How long data is kept and queries reach back (µs): `flow_retention_s` with SQLite,
    /// `clickhouse_retention_days` with ClickHouse.
    pub fn retention_us(&self) -> u64 {
        match self.store {
            StoreKind::Sqlite => self.flow_retention_s.saturating_mul(1_000_000),
            StoreKind::Clickhouse => self.clickhouse_retention_days.saturating_mul(86_400_000_000),
        }
    }

    /// The ClickHouse backend's settings; `collector_id` names this collector in the store.
    pub fn clickhouse(&self, collector_id: &str) -> crate::store::clickhouse::ClickHouseConfig {
        crate::store::clickhouse::ClickHouseConfig {
            url: self.clickhouse_url.clone(),
            database: self.clickhouse_database.clone(),
            user: self.clickhouse_user.clone(),
            password: self.clickhouse_password.clone(),
            batch_size: self.clickhouse_batch_size,
            flush_ms: self.clickhouse_flush_ms,
            max_buffered_rows: self.clickhouse_max_buffered_rows,
            flow_cache: self.clickhouse_flow_cache,
            retention_days: self.clickhouse_retention_days,
            collector_id: collector_id.to_owned(),
            ..crate::store::clickhouse::ClickHouseConfig::default()
        }
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
    fn store_and_clickhouse_keys() {
        let c = CollectorConfig::from_toml(
            "[collector]\nstore = \"clickhouse\"\nclickhouse_url = \"http://ch1:8123\"\nclickhouse_database = \"a_1\"\n\
             clickhouse_retention_days = 7\nclickhouse_batch_size = 500\n",
            "c.toml",
        )
        .unwrap();
        assert_eq!(c.store, StoreKind::Clickhouse);
        assert_eq!(c.retention_us(), 7 * 86_400_000_000);
        let ch = c.clickhouse("c1");
        assert_eq!((ch.url.as_str(), ch.database.as_str(), ch.batch_size), ("http://ch1:8123", "a_1", 500));
        assert_eq!(ch.collector_id, "c1");
        assert_eq!(CollectorConfig::default().retention_us(), 48 * 3_600_000_000);
        let err = |text: &str| {
            CollectorConfig::from_toml(&format!("[collector]\n{text}\n"), "c.toml").unwrap_err().to_string()
        };
        assert!(
            err("store = \"cassandra\"").starts_with("c.toml:2: unknown variant `cassandra`"),
            "{}",
            err("store = \"cassandra\"")
        );
        assert_eq!(
            err("clickhouse_url = \"https://x:8443\""),
            "c.toml:2: collector.clickhouse_url: `https://x:8443` is not an http:// URL such as http://127.0.0.1:8123"
        );
        assert_eq!(
            err("clickhouse_url = \"http://x:8123/db\""),
            "c.toml:2: collector.clickhouse_url: `http://x:8123/db` must be http://host:port, without a path"
        );
        assert!(
            err("clickhouse_database = \"a-b\"").starts_with("c.toml:2: collector.clickhouse_database: `a-b` is not")
        );
        assert_eq!(
            err("clickhouse_retention_days = 0"),
            "c.toml:2: collector.clickhouse_retention_days: must be between 1 and 3650"
        );
        assert_eq!(
            err("clickhouse_batch_size = 10\nclickhouse_max_buffered_rows = 5"),
            "c.toml:3: collector.clickhouse_max_buffered_rows: must be at least clickhouse_batch_size (10)"
        );
        assert_eq!("clickhouse".parse::<StoreKind>(), Ok(StoreKind::Clickhouse));
        assert!("x".parse::<StoreKind>().is_err());
    }

    #[test]
    fn log_section() {
        assert_eq!(CollectorConfig::from_toml("", "c.toml").unwrap().log, LogConfig::default());
        let c = CollectorConfig::from_toml(
            "[collector]\ningest_queue = 5\n\n[log]\nlevel = \"warn\"\nfilter = \"collector::session=debug\"\nformat = \"json\"\n",
            "c.toml",
        )
        .unwrap();
        assert_eq!((c.log.level.as_str(), c.log.format()), ("warn", logging::LogFormat::Json));
        assert_eq!(c.log.filter, "collector::session=debug");
        let err = |text: &str| CollectorConfig::from_toml(text, "c.toml").unwrap_err().to_string();
        assert_eq!(
            err("[log]\nlevel = \"info\"\nformat = \"xml\"\n"),
            "c.toml:3: log.format: expected \"text\" or \"json\", not `xml`"
        );
        assert!(err("[log]\nlevel = \"loud\"\n").starts_with("c.toml:2: log.level: `loud` is not a level"));
        let e = err("[collector]\n[log]\n\nfilter = \"collector=bogus\"\n");
        assert!(e.starts_with("c.toml:4: log.filter: `collector=bogus` is not a filter"), "{e}");
        assert!(err("[log]\ncolour = true\n").contains("unknown field `colour`"));
        // `format` in [collector] is not the one in [log].
        assert!(err("[collector]\nformat = \"json\"\n").contains("unknown field `format`"));
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
