use super::*;
use std::sync::Arc;

/// A `MakeWriter` into a shared buffer.
#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Buf {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl io::Write for Buf {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Buf {
    type Writer = Buf;
    fn make_writer(&'a self) -> Buf {
        self.clone()
    }
}

fn cfg(level: &str, filter: &str, format: &str) -> LogConfig {
    LogConfig { level: level.into(), filter: filter.into(), format: format.into() }
}

/// Runs `f` under the subscriber of `c` (with `rust_log` as `RUST_LOG`); returns what went to
/// stdout and to stderr.
fn capture(c: &LogConfig, rust_log: Option<&str>, f: impl FnOnce()) -> (String, String) {
    capture_to(c, rust_log, false, f)
}

/// [`capture`], for the journal or not.
fn capture_to(c: &LogConfig, rust_log: Option<&str>, journal: bool, f: impl FnOnce()) -> (String, String) {
    let (out, err) = (Buf::default(), Buf::default());
    let sub = c.subscriber(c.env_filter(rust_log).unwrap(), out.clone(), err.clone(), journal);
    tracing::subscriber::with_default(sub, f);
    (out.text(), err.text())
}

#[test]
fn the_section_parses_with_defaults() {
    let c: LogConfig = toml::from_str("").unwrap();
    assert_eq!(c, LogConfig::default());
    assert_eq!(c.check(), Ok(()));
    assert_eq!(c.format(), LogFormat::Text);
    let c: LogConfig =
        toml::from_str("level = \"debug\"\nfilter = \"vrouter::agent=trace\"\nformat = \"json\"").unwrap();
    assert_eq!(c.check(), Ok(()));
    assert_eq!(c.format(), LogFormat::Json);
    assert!(toml::from_str::<LogConfig>("colour = true").is_err(), "unknown keys are errors");
}

#[test]
fn bad_values_name_the_key() {
    assert_eq!(cfg("loud", "", "text").check().unwrap_err().0, "level");
    assert_eq!(
        cfg("info", "", "xml").check().unwrap_err(),
        ("format", "expected \"text\" or \"json\", not `xml`".into())
    );
    assert_eq!(cfg("info", "vrouter=bogus", "text").check().unwrap_err().0, "filter");
    assert_eq!(cfg("info", "a=b=c", "text").check().unwrap_err().0, "filter");
    assert_eq!(cfg("WARN", "vrouter::agent=debug,info", "json").check(), Ok(()), "levels are case-insensitive");
    let e = cfg("info", "vrouter=bogus", "text").env_filter(None).unwrap_err();
    assert!(e.to_string().starts_with("log.filter: `vrouter=bogus` is not a filter"), "{e}");
    let e = cfg("info", "", "text").env_filter(Some("x=nonsense")).unwrap_err();
    assert!(e.to_string().starts_with("RUST_LOG: "), "{e}");
}

#[test]
fn journal_lines_carry_their_priority() {
    let c = cfg("debug", "", "text");
    let (out, err) = capture_to(&c, None, true, || {
        tracing::info!("vrouter: forwarding on {} lcore(s)", 2);
        tracing::debug!("rx 0 pps");
        tracing::warn!("vrouter: systemd watchdog off: {}", "bad");
        tracing::error!("vrouter: error: boom");
    });
    assert_eq!(out, "<6>vrouter: forwarding on 2 lcore(s)\n<7>rx 0 pps\n");
    assert_eq!(err, "<4>vrouter: systemd watchdog off: bad\n<3>vrouter: error: boom\n");
}

#[test]
fn only_the_stream_journal_stream_names_is_the_journal() {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata("/proc/self/fd/2").unwrap();
    assert!(stderr_is(&format!("{}:{}", m.dev(), m.ino())));
    assert!(!stderr_is(&format!("{}:{}", m.dev(), m.ino() + 1)), "inherited by a redirected child");
    assert!(!stderr_is("garbage"));
}

#[test]
fn text_is_the_message_alone_and_warnings_go_to_stderr() {
    let (out, err) = capture(&LogConfig::default(), None, || {
        tracing::info!("vrouter: forwarding on {} lcore(s)", 2);
        tracing::debug!("rx 0 pps");
        tracing::warn!("vrouter: systemd watchdog off: {}", "bad");
        tracing::error!("vrouter: error: boom");
    });
    assert_eq!(out, "vrouter: forwarding on 2 lcore(s)\n");
    assert_eq!(err, "vrouter: systemd watchdog off: bad\nvrouter: error: boom\n");
}

#[test]
fn level_filter_and_rust_log() {
    mod agent {
        pub fn log() {
            tracing::debug!("agent debug");
            tracing::info!("agent info");
        }
    }
    let run = || {
        tracing::debug!("top debug");
        tracing::info!("top info");
        agent::log();
    };
    let (out, _) = capture(&cfg("info", "", "text"), None, run);
    assert_eq!(out, "top info\nagent info\n");
    let (out, _) = capture(&cfg("warn", "logging::tests::agent=debug", "text"), None, run);
    assert_eq!(out, "agent debug\nagent info\n", "the filter applies after the level");
    let (out, _) = capture(&cfg("warn", "logging::tests::agent=debug,info", "text"), None, run);
    assert_eq!(out, "top info\nagent debug\nagent info\n", "a bare level in the filter replaces `level`");
    let (out, _) = capture(&cfg("info", "", "text"), Some("debug"), run);
    assert_eq!(out, "top debug\ntop info\nagent debug\nagent info\n", "RUST_LOG replaces level and filter");
    let (out, _) = capture(&cfg("debug", "", "text"), Some(""), run);
    assert_eq!(out.lines().count(), 4, "an empty RUST_LOG is not set");
}

#[test]
fn json_format_is_one_object_per_line() {
    let (out, err) = capture(&cfg("info", "", "json"), None, || {
        tracing::info!("vrouter: stopping");
        tracing::warn!("vrouter: agent: {}", "no");
    });
    let v: serde_json::Value = serde_json::from_str(out.trim_end()).unwrap();
    assert_eq!(v["message"], "vrouter: stopping");
    assert_eq!(v["level"], "INFO");
    assert_eq!(v["target"], "logging::tests");
    assert!(v["timestamp"].is_string(), "{v}");
    assert_eq!(out.lines().count(), 1);
    let v: serde_json::Value = serde_json::from_str(err.trim_end()).unwrap();
    assert_eq!((v["level"].as_str(), v["message"].as_str()), (Some("WARN"), Some("vrouter: agent: no")));
}

#[test]
fn the_rate_limit_drops_past_max_and_counts_them() {
    let limit = RateLimit::new(3, Duration::from_secs(10));
    let t0 = Instant::now();
    let admitted: Vec<Option<u64>> = (0..1000).map(|i| limit.admit_at(t0 + Duration::from_millis(i))).collect();
    assert_eq!(admitted.iter().filter(|a| a.is_some()).count(), 3, "3 of 1000 within one interval");
    assert_eq!(&admitted[..4], &[Some(0), Some(0), Some(0), None]);
    // The next interval lets messages through again; the first says how many were dropped.
    assert_eq!(limit.admit_at(t0 + Duration::from_secs(10)), Some(997));
    assert_eq!(limit.admit_at(t0 + Duration::from_secs(11)), Some(0));
}

#[test]
fn rate_limited_logs_at_most_max_per_call_site() {
    let (_, err) = capture(&LogConfig::default(), None, || {
        for i in 0..100 {
            rate_limited!(WARN, "collector: peer {i}: malformed frame; closing");
            rate_limited!(ERROR, "other site {i}");
        }
        tracing::info!("not limited");
    });
    let lines: Vec<&str> = err.lines().collect();
    let max = RATE_LIMIT_MAX as usize;
    assert_eq!(lines.iter().filter(|l| l.starts_with("collector: peer ")).count(), max, "{err}");
    assert_eq!(lines.iter().filter(|l| l.starts_with("other site ")).count(), max, "per call site: {err}");
    assert_eq!(lines.len(), 2 * max, "{err}");
    assert_eq!(lines[0], "collector: peer 0: malformed frame; closing");
    // Disabled: nothing admitted, nothing counted.
    let (out, err) = capture(&cfg("error", "", "text"), None, || {
        for _ in 0..100 {
            rate_limited!(INFO, "quiet");
        }
    });
    assert_eq!((out.as_str(), err.as_str()), ("", ""));
}
