//! The vRouter agent's control socket (`<run_dir>/control.sock`): one JSON request line,
//! one JSON reply line. The benchmark asks `{"cmd":"status"}` for the setup counters and
//! the setup-latency histogram (miss -> action programmed, hdrhistogram in the agent).

use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Setup latency percentiles in nanoseconds, as the agent reports them.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Latency {
    /// Setups measured.
    pub count: u64,
    /// Median, ns.
    pub p50: u64,
    /// 99th percentile, ns.
    pub p99: u64,
    /// 99.9th percentile, ns.
    pub p999: u64,
    /// Largest, ns.
    pub max: u64,
}

/// The agent's `status` reply: its counters (all of them, by name) and the latency.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AgentStatus {
    /// Flows set up by the agent (its `setups` counter).
    pub setups: u64,
    /// Every counter of the reply, by name.
    pub counters: serde_json::Map<String, serde_json::Value>,
    /// Setup latency (miss -> action programmed).
    pub setup_latency_ns: Latency,
}

/// Parses a `status` reply line.
pub fn parse_status(line: &str) -> Result<AgentStatus> {
    let v: serde_json::Value = serde_json::from_str(line.trim()).with_context(|| format!("bad reply {line:?}"))?;
    if v.get("ok").and_then(|o| o.as_bool()) != Some(true) {
        bail!("agent refused status: {line}");
    }
    let counters = v.get("counters").and_then(|c| c.as_object()).cloned().unwrap_or_default();
    let u = |o: Option<&serde_json::Value>, k: &str| o.and_then(|o| o.get(k)).and_then(|x| x.as_u64()).unwrap_or(0);
    let lat = v.get("setup_latency_ns");
    Ok(AgentStatus {
        setups: counters.get("setups").and_then(|x| x.as_u64()).unwrap_or(0),
        counters,
        setup_latency_ns: Latency {
            count: u(lat, "count"),
            p50: u(lat, "p50"),
            p99: u(lat, "p99"),
            p999: u(lat, "p999"),
            max: u(lat, "max"),
        },
    })
}

/// Asks the agent of the vRouter running in `run_dir` for its status. The agent serves the
/// socket between its housekeeping scans, so a reply can take a while on a large table.
pub fn status(run_dir: &Path, timeout: Duration) -> Result<AgentStatus> {
    let path = run_dir.join("control.sock");
    let s = UnixStream::connect(&path).with_context(|| format!("connecting {}", path.display()))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    (&s).write_all(b"{\"cmd\":\"status\"}\n")?;
    let mut line = String::new();
    BufReader::new(&s)
        .read_line(&mut line)
        .with_context(|| format!("reading the status reply from {}", path.display()))?;
    parse_status(&line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_agent_reply() {
        let line = r#"{"ok":true,"counters":{"setups":12,"setup_denied":0,"aged":3},"setup_latency_ns":{"count":12,"p50":5000,"p99":9000,"p999":9100,"max":12000}}"#;
        let s = parse_status(line).unwrap();
        assert_eq!(s.setups, 12);
        assert_eq!(s.counters.get("aged").and_then(|v| v.as_u64()), Some(3));
        assert_eq!(s.setup_latency_ns, Latency { count: 12, p50: 5000, p99: 9000, p999: 9100, max: 12000 });
        assert!(parse_status(r#"{"ok":false,"error":"x"}"#).is_err());
        assert!(parse_status("garbage").is_err());
    }

    #[test]
    fn talks_to_a_socket() {
        let dir = std::env::temp_dir().join(format!("bench-agent-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let l = std::os::unix::net::UnixListener::bind(dir.join("control.sock")).unwrap();
        let t = std::thread::spawn(move || {
            let (c, _) = l.accept().unwrap();
            let mut req = String::new();
            BufReader::new(&c).read_line(&mut req).unwrap();
            assert_eq!(req.trim(), r#"{"cmd":"status"}"#);
            (&c).write_all(b"{\"ok\":true,\"counters\":{\"setups\":7},\"setup_latency_ns\":{\"count\":7,\"p50\":1,\"p99\":2,\"p999\":3,\"max\":4}}\n").unwrap();
        });
        let s = status(&dir, Duration::from_secs(5)).unwrap();
        t.join().unwrap();
        assert_eq!(s.setups, 7);
        assert_eq!(s.setup_latency_ns.max, 4);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
