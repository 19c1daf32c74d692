//! A private ClickHouse server on loopback, for the tests, the examples and the benchmark:
//! Debian's `clickhouse-server` run as the current user on a free port, with its data,
//! logs and a minimal `config.xml`/`users.xml` in a fresh directory of its own.
//!
//! The server is started through a small shell guard that reads its standard input, a pipe
//! from this process: when the [`LocalServer`] is dropped, or this process ends in any way,
//! the pipe closes, the guard kills the server, waits for it and removes the directory, so no
//! server outlives its tests.
//!
//! [`shared`] starts one server per process (the tests of one binary share it, each in a
//! database of its own, [`fresh_database`]); `CLICKHOUSE_URL` names an external server
//! instead, and `CLICKHOUSE_SERVER` another binary.

use super::ClickHouseConfig;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The user with a password that `users.xml` defines besides `default` (no password).
pub const TEST_USER: &str = "tester";
/// Its password.
pub const TEST_PASSWORD: &str = "tester-secret";

/// A running server; stopped and its directory removed when dropped.
#[derive(Debug)]
pub struct LocalServer {
    child: Child,
    url: String,
    dir: PathBuf,
}

/// The server binary: `$CLICKHOUSE_SERVER`, else `clickhouse-server` on the `PATH` or in
/// `/usr/bin`.
pub fn binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CLICKHOUSE_SERVER") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join("clickhouse-server"))
        .find(|p| p.is_file())
}

fn config_xml(dir: &Path, port: u16) -> String {
    let d = dir.display();
    format!(
        r#"<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>{d}/server.log</log>
        <errorlog>{d}/server.err.log</errorlog>
        <console>0</console>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <http_port>{port}</http_port>
    <path>{d}/data/</path>
    <tmp_path>{d}/tmp/</tmp_path>
    <user_files_path>{d}/user_files/</user_files_path>
    <format_schema_path>{d}/format_schemas/</format_schema_path>
    <users_config>{d}/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <mark_cache_size>268435456</mark_cache_size>
    <max_concurrent_queries>64</max_concurrent_queries>
</yandex>
"#
    )
}

fn users_xml() -> String {
    let net = "<networks><ip>127.0.0.1</ip><ip>::1</ip></networks>";
    format!(
        r#"<?xml version="1.0"?>
<yandex>
    <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
    <users>
        <default><password></password>{net}<profile>default</profile><quota>default</quota></default>
        <{TEST_USER}><password>{TEST_PASSWORD}</password>{net}<profile>default</profile><quota>default</quota></{TEST_USER}>
    </users>
    <quotas><default></default></quotas>
</yandex>
"#
    )
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The shell guard: starts the server (`$0`, config `$1`), waits for its own standard input
/// to close, then stops the server and removes its directory (`$2`).
const GUARD: &str = r#""$0" --config-file="$1" >/dev/null 2>&1 </dev/null &
ch=$!
trap 'kill $ch 2>/dev/null; wait $ch 2>/dev/null; rm -rf "$2"' EXIT
read -r _ || true"#;

fn ping(url: &str) -> bool {
    super::client::Client::new(url, "default", "default", "", Duration::from_secs(2)).ping().is_ok()
}

impl LocalServer {
    /// Starts a server and waits until it answers `/ping` (an error says why not, with the
    /// end of its error log).
    pub fn start() -> Result<LocalServer, String> {
        let bin = binary().ok_or_else(|| {
            "clickhouse-server is not installed (Debian: apt-get install clickhouse-server; ci/setup.sh installs it)"
                .to_owned()
        })?;
        let mut last = String::new();
        // A port taken between choosing it and the server binding it: try another.
        for _ in 0..3 {
            let port = free_port().map_err(|e| format!("choosing a port: {e}"))?;
            match Self::start_once(&bin, port) {
                Ok(s) => return Ok(s),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Starts a server on `port` (for tests of a server that comes back where it was).
    pub fn start_on(port: u16) -> Result<LocalServer, String> {
        let bin = binary().ok_or_else(|| "clickhouse-server is not installed".to_owned())?;
        Self::start_once(&bin, port)
    }

    fn start_once(bin: &Path, port: u16) -> Result<LocalServer, String> {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "collector-clickhouse-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let io = |e: std::io::Error| format!("{}: {e}", dir.display());
        std::fs::create_dir_all(&dir).map_err(io)?;
        let config = dir.join("config.xml");
        std::fs::write(&config, config_xml(&dir, port)).map_err(io)?;
        std::fs::write(dir.join("users.xml"), users_xml()).map_err(io)?;
        let child = Command::new("sh")
            .arg("-c")
            .arg(GUARD)
            .arg(bin)
            .arg(&config)
            .arg(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        let server = LocalServer { child, url: format!("http://127.0.0.1:{port}"), dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if ping(&server.url) {
                return Ok(server);
            }
            let mut log = String::new();
            let _ = std::fs::File::open(server.dir.join("server.err.log")).and_then(|mut f| f.read_to_string(&mut log));
            if log.contains("Address already in use") {
                return Err(format!("port {port} was taken"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut log = String::new();
        let _ = std::fs::File::open(server.dir.join("server.err.log")).and_then(|mut f| f.read_to_string(&mut log));
        let tail: String =
            log.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
        Err(format!("{} did not answer /ping on port {port} within 60 s; its error log ends:\n{tail}", bin.display()))
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        // Closing the guard's standard input stops the server and removes the directory.
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// The URL of this process's shared server: `$CLICKHOUSE_URL`, or a [`LocalServer`] started
/// on first use (and stopped when the process ends). An error says why there is none.
pub fn shared() -> Result<&'static str, String> {
    static SERVER: OnceLock<Result<String, String>> = OnceLock::new();
    static KEEP: OnceLock<LocalServer> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            if let Ok(url) = std::env::var("CLICKHOUSE_URL") {
                return Ok(url);
            }
            let s = LocalServer::start()?;
            let url = s.url().to_owned();
            let _ = KEEP.set(s);
            Ok(url)
        })
        .as_deref()
        .map_err(Clone::clone)
}

/// A database name not used before in this process (`<prefix>_<pid>_<n>`).
pub fn fresh_database(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let clean: String = prefix.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    format!("{clean}_{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// The configuration of a fresh database on the shared server, its schema made; `None`,
/// after saying why on stderr, where there is no server (and `COLLECTOR_REQUIRE_CLICKHOUSE`
/// is not set: then it panics).
pub fn test_config(prefix: &str) -> Option<ClickHouseConfig> {
    let url = match shared() {
        Ok(u) => u,
        Err(why) => {
            if std::env::var_os("COLLECTOR_REQUIRE_CLICKHOUSE").is_some() {
                panic!("ClickHouse is required (COLLECTOR_REQUIRE_CLICKHOUSE) but: {why}");
            }
            eprintln!("SKIPPED (ClickHouse backend): {why}");
            return None;
        }
    };
    let cfg = ClickHouseConfig {
        url: url.to_owned(),
        database: fresh_database(prefix),
        flush_ms: 50,
        collector_id: "collector-test".into(),
        ..ClickHouseConfig::default()
    };
    super::init_schema(&cfg).unwrap_or_else(|e| panic!("init_schema on {url}: {e}"));
    Some(cfg)
}
