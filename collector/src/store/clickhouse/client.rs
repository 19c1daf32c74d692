//! ClickHouse's HTTP interface, spoken directly (`ureq`): statements are the body of a POST
//! to `<url>/`, the database and settings are URL parameters, credentials are HTTP basic
//! authentication, an answer other than 200 carries ClickHouse's own message
//! (`Code: N, e.displayText() = ...`). Selects come back as `JSONCompact` with 64-bit
//! integers as numbers; inserts send `RowBinary` ([`super::rowbinary`]). The client crates on
//! crates.io speak the native protocol of much newer servers or need features that Debian's
//! 18.16 lacks; the HTTP interface is the same from 1.1 on.
//!
//! One [`Client`] is shared (cloned) by the writer, the inserter and the REST handlers: its
//! `ureq` agent keeps a pool of idle keep-alive connections ([`POOL_IDLE`]), so each request
//! reuses a connection when one is free and opens one otherwise.

use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;

/// Idle connections the pool keeps.
pub const POOL_IDLE: usize = 16;

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChError {
    /// No answer: connection refused, reset, timed out, name not resolved.
    Unreachable(String),
    /// ClickHouse answered with an error: its code (when the text has one) and message.
    Server {
        /// `Code: N` of the message.
        code: Option<u32>,
        /// The HTTP status.
        status: u16,
        /// The message, trimmed.
        message: String,
    },
    /// The answer was not what was asked for.
    Decode(String),
}

impl std::fmt::Display for ChError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChError::Unreachable(m) => write!(f, "unreachable: {m}"),
            ChError::Server { status, message, .. } => write!(f, "HTTP {status}: {message}"),
            ChError::Decode(m) => write!(f, "unexpected answer: {m}"),
        }
    }
}

impl ChError {
    /// ClickHouse's codes for a user it does not know (192), a wrong password (193), a
    /// password required (194) and failed authentication (516, newer servers).
    pub fn is_auth(&self) -> bool {
        matches!(self, ChError::Server { code: Some(192..=194 | 516), .. })
            || matches!(self, ChError::Server { status: 401 | 403, .. })
    }
    /// Unknown database (81).
    pub fn is_unknown_database(&self) -> bool {
        matches!(self, ChError::Server { code: Some(81), .. })
    }
    /// Unknown table (60).
    pub fn is_unknown_table(&self) -> bool {
        matches!(self, ChError::Server { code: Some(60), .. })
    }
}

/// A client of one server and database.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    url: String,
    database: String,
    auth: String,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("url", &self.url).field("database", &self.database).finish()
    }
}

#[derive(Deserialize)]
struct Compact {
    data: Vec<Vec<Value>>,
}

/// `user:password` in base64 (RFC 4648, with padding), for `Authorization: Basic`.
fn basic(user: &str, password: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{user}:{password}").into_bytes();
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * k)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `Code: N` at the start of a ClickHouse error message.
fn error_code(message: &str) -> Option<u32> {
    let rest = message.trim_start().strip_prefix("Code: ")?;
    rest[..rest.find(|c: char| !c.is_ascii_digit())?].parse().ok()
}

impl Client {
    /// A client of `url` (`http://host:port`, a trailing `/` ignored) for `database`; every
    /// request may take `timeout` at most.
    pub fn new(url: &str, database: &str, user: &str, password: &str, timeout: Duration) -> Client {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(5).min(timeout)))
            .timeout_global(Some(timeout))
            .max_idle_connections(POOL_IDLE)
            .max_idle_connections_per_host(POOL_IDLE)
            .build()
            .into();
        Client {
            agent,
            url: url.trim_end_matches('/').to_owned(),
            database: database.to_owned(),
            auth: format!("Basic {}", basic(user, password)),
        }
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// POSTs `body` with URL parameters `params` and returns the answer's text.
    fn post(&self, params: &[(&str, &str)], body: &[u8]) -> Result<String, ChError> {
        let mut req = self.agent.post(format!("{}/", self.url)).header("Authorization", &self.auth);
        for (k, v) in params {
            req = req.query(*k, *v);
        }
        let resp = req.send(body).map_err(|e| ChError::Unreachable(e.to_string()))?;
        let status = resp.status().as_u16();
        let text = resp
            .into_body()
            .with_config()
            .limit(1 << 30)
            .read_to_string()
            .map_err(|e| ChError::Unreachable(format!("reading the answer: {e}")))?;
        if status != 200 {
            let message = text.trim().to_owned();
            return Err(ChError::Server { code: error_code(&message), status, message });
        }
        Ok(text)
    }

    /// Runs a statement that returns no rows (DDL, `ALTER`), in the database unless
    /// `in_database` is false (creating the database itself).
    pub fn execute(&self, sql: &str, in_database: bool) -> Result<(), ChError> {
        let params: &[(&str, &str)] = if in_database { &[("database", &self.database)] } else { &[] };
        self.post(params, sql.as_bytes()).map(drop)
    }

    /// Runs a select and returns its rows, each the list of its values (64-bit integers as
    /// numbers, null as null).
    pub fn select(&self, sql: &str) -> Result<Vec<Vec<Value>>, ChError> {
        let text = self.post(
            &[
                ("database", &self.database),
                ("default_format", "JSONCompact"),
                ("output_format_json_quote_64bit_integers", "0"),
                // Statements with long IN lists (flow lookups).
                ("max_query_size", "67108864"),
            ],
            sql.as_bytes(),
        )?;
        let c: Compact = serde_json::from_str(&text).map_err(|e| ChError::Decode(format!("{e}: {text:.200}")))?;
        Ok(c.data)
    }

    /// Inserts `data`, rows in `RowBinary` of `columns` (comma-separated), into `table`.
    pub fn insert(&self, table: &str, columns: &str, data: &[u8]) -> Result<(), ChError> {
        let query = format!("INSERT INTO {table} ({columns}) FORMAT RowBinary");
        self.post(&[("database", &self.database), ("query", &query)], data).map(drop)
    }

    /// `GET /ping`: whether the server answers at all (no credentials needed).
    pub fn ping(&self) -> Result<(), ChError> {
        let resp =
            self.agent.get(format!("{}/ping", self.url)).call().map_err(|e| ChError::Unreachable(e.to_string()))?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(ChError::Server { code: None, status, message: format!("/ping answered {status}") });
        }
        Ok(())
    }
}

/// A string literal of ClickHouse's SQL: single quotes, with `\`, `'` and NUL escaped.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_is_rfc4648_base64() {
        assert_eq!(basic("Aladdin", "open sesame"), "QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert_eq!(basic("default", ""), "ZGVmYXVsdDo=");
        assert_eq!(basic("ab", "c"), "YWI6Yw==");
        assert_eq!(basic("a", "bc"), "YTpiYw==");
        assert_eq!(basic("ab", "cd"), "YWI6Y2Q=");
    }

    #[test]
    fn error_codes_and_quoting() {
        assert_eq!(error_code("Code: 60, e.displayText() = DB::Exception: Table x doesn't exist."), Some(60));
        assert_eq!(error_code("Code: 192, e.displayText() = Unknown user"), Some(192));
        assert_eq!(error_code("something else"), None);
        assert_eq!(quote(r"it's a \ path"), r"'it\'s a \\ path'");
        assert_eq!(quote("nul\0"), r"'nul\0'");
        assert!(ChError::Server { code: Some(193), status: 500, message: String::new() }.is_auth());
        assert!(!ChError::Server { code: Some(60), status: 404, message: String::new() }.is_auth());
    }
}
