//! The logs of the `vrouter` and `collector` binaries.
//!
//! Libraries log with the [`tracing`] macros (`tracing::info!`, `warn!`, ...) and
//! [`rate_limited!`] for what can fire per packet, per flow or per connection; a binary installs
//! the subscriber once, from the `[log]` section of its configuration ([`LogConfig`]) with
//! [`LogConfig::init`]:
//!
//! ```toml
//! [log]
//! level = "info"                      # off, error, warn, info (default), debug, trace
//! filter = "vrouter::agent=debug"     # per-target directives (RUST_LOG syntax), after `level`
//! format = "text"                     # or "json": one JSON object per line
//! ```
//!
//! `RUST_LOG`, when set and not empty, replaces `level` and `filter`.
//!
//! The text format is the message alone, one line per event, without colours, time stamps,
//! levels or targets: the messages start with the program's name (`vrouter: ...`), the lines
//! are what the binaries printed before they used `tracing`, and systemd's journal adds the
//! time. Errors and warnings go to stderr, the rest to stdout (as before). The JSON format
//! has the time, the level, the target and the message of each event, with the same
//! stream split.

#![warn(missing_docs)]

use serde::{Deserialize, Serialize};
use std::io;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tracing::{Level, Subscriber};
use tracing_subscriber::fmt::writer::MakeWriterExt;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

// The macros below name `tracing` through this crate, so callers need not depend on it.
#[doc(hidden)]
pub use tracing;

/// The levels `level` accepts (case-insensitive).
pub const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// The `[log]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// The level of every target the filter does not name: one of [`LEVELS`].
    pub level: String,
    /// Directives in `RUST_LOG`'s syntax (`target=level,...`), applied after `level` (a bare
    /// level here replaces it). Empty: none.
    pub filter: String,
    /// `text` (the message alone per line) or `json` (one object per line).
    pub format: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { level: "info".into(), filter: String::new(), format: "text".into() }
    }
}

/// The output format of the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// The message alone, one line per event.
    Text,
    /// One JSON object per event and line: `timestamp`, `level`, `target`, `message`.
    Json,
}

/// Why the subscriber could not be installed.
#[derive(Debug)]
pub enum InitError {
    /// `RUST_LOG` does not parse.
    RustLog(String),
    /// The `[log]` section does not check ([`LogConfig::check`]): the key and why.
    Config(&'static str, String),
    /// A global subscriber was installed already.
    AlreadySet,
}

impl std::fmt::Display for InitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InitError::RustLog(e) => write!(f, "RUST_LOG: {e}"),
            InitError::Config(key, e) => write!(f, "log.{key}: {e}"),
            InitError::AlreadySet => write!(f, "a log subscriber is installed already"),
        }
    }
}

impl std::error::Error for InitError {}

impl LogConfig {
    /// Checks the values; on failure returns the offending key (`level`, `filter`, `format`)
    /// and why.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if !LEVELS.iter().any(|l| l.eq_ignore_ascii_case(self.level.trim())) {
            return Err((
                "level",
                format!("`{}` is not a level: expected one of \"{}\"", self.level, LEVELS.join("\", \"")),
            ));
        }
        self.format_kind()?;
        parse_filter(&self.filter).map_err(|e| ("filter", e))?;
        Ok(())
    }

    fn format_kind(&self) -> Result<LogFormat, (&'static str, String)> {
        match self.format.as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            f => Err(("format", format!("expected \"text\" or \"json\", not `{f}`"))),
        }
    }

    /// The format (text when `format` does not check).
    pub fn format(&self) -> LogFormat {
        self.format_kind().unwrap_or(LogFormat::Text)
    }

    /// The filter: `rust_log` when it is set and not empty (the value of `RUST_LOG`), else
    /// `level` then `filter`.
    pub fn env_filter(&self, rust_log: Option<&str>) -> Result<EnvFilter, InitError> {
        match rust_log.map(str::trim).filter(|s| !s.is_empty()) {
            Some(env) => parse_filter(env).map_err(InitError::RustLog),
            None => {
                self.check().map_err(|(k, e)| InitError::Config(k, e))?;
                let level = self.level.trim().to_ascii_lowercase();
                let filter = self.filter.trim();
                let dirs = if filter.is_empty() { level } else { format!("{level},{filter}") };
                parse_filter(&dirs).map_err(|e| InitError::Config("filter", e))
            }
        }
    }

    /// The subscriber these settings make, writing to `err` (errors and warnings) and `out`
    /// (the rest); [`Self::init`] gives it stdout and stderr. `journal`: the text lines start
    /// with their syslog priority as sd-daemon(3) defines it (`<3>` error, `<4>` warning,
    /// `<6>` info, `<7>` debug and trace), which systemd's journal takes as each line's
    /// priority (`journalctl -p warning`) and removes.
    pub fn subscriber<O, E>(
        &self,
        filter: EnvFilter,
        out: O,
        err: E,
        journal: bool,
    ) -> Box<dyn Subscriber + Send + Sync>
    where
        O: for<'w> MakeWriter<'w> + Send + Sync + 'static,
        E: for<'w> MakeWriter<'w> + Send + Sync + 'static,
    {
        let writer = err.with_max_level(Level::WARN).or_else(out);
        let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_ansi(false);
        match self.format() {
            LogFormat::Text if journal => Box::new(builder.event_format(JournalText).finish()),
            LogFormat::Text => Box::new(builder.without_time().with_level(false).with_target(false).finish()),
            LogFormat::Json => {
                Box::new(builder.json().flatten_event(true).with_current_span(false).with_span_list(false).finish())
            }
        }
    }

    /// Installs the global subscriber: the filter from `RUST_LOG` or `level` and `filter`,
    /// the format, errors and warnings to stderr and the rest to stdout, with priority
    /// prefixes when systemd connected them to its journal (stderr is `JOURNAL_STREAM`). Records
    /// of the `log` crate (some dependencies) are forwarded to it.
    pub fn init(&self) -> Result<(), InitError> {
        let rust_log = std::env::var(EnvFilter::DEFAULT_ENV).ok();
        let filter = self.env_filter(rust_log.as_deref())?;
        let journal = std::env::var("JOURNAL_STREAM").is_ok_and(|v| stderr_is(&v));
        self.subscriber(filter, io::stdout, io::stderr, journal).try_init().map_err(|_| InitError::AlreadySet)
    }
}

/// Whether stderr is the stream `JOURNAL_STREAM` (`<device>:<inode>`) names: systemd sets it
/// for a service whose output goes to the journal, and a child whose stderr was redirected
/// (a pipe, a file) inherits the variable, so only the match counts (systemd.exec(5)).
fn stderr_is(journal_stream: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some((dev, ino)) = journal_stream.split_once(':') else { return false };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else { return false };
    std::fs::metadata("/proc/self/fd/2").is_ok_and(|m| m.dev() == dev && m.ino() == ino)
}

/// The text format for systemd's journal: `<N>` (the event's syslog priority), then the
/// message and its fields as the plain text format writes them.
struct JournalText;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for JournalText
where
    S: Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut w: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let priority = match *event.metadata().level() {
            Level::ERROR => 3,
            Level::WARN => 4,
            Level::INFO => 6,
            _ => 7,
        };
        write!(w, "<{priority}>")?;
        ctx.field_format().format_fields(w.by_ref(), event)?;
        writeln!(w)
    }
}

/// Whether [`LogConfig::init`] (or another global subscriber) was installed: a binary's last
/// error goes through it when so, else straight to stderr.
pub fn initialised() -> bool {
    tracing::dispatcher::has_been_set()
}

fn parse_filter(dirs: &str) -> Result<EnvFilter, String> {
    EnvFilter::builder().with_regex(false).parse(dirs).map_err(|e| format!("`{dirs}` is not a filter: {e}"))
}

/// A limit of messages per interval, for one call site ([`rate_limited!`] makes one per
/// site): at most `max` in each interval, the others counted and said in one line with the
/// next message let through.
#[derive(Debug)]
pub struct RateLimit {
    max: u32,
    interval: Duration,
    state: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    start: Option<Instant>,
    passed: u32,
    suppressed: u64,
}

impl RateLimit {
    /// At most `max` messages per `interval`.
    pub const fn new(max: u32, interval: Duration) -> Self {
        RateLimit { max, interval, state: Mutex::new(Window { start: None, passed: 0, suppressed: 0 }) }
    }

    /// Whether a message may be logged now: `Some(n)` with the number of messages suppressed
    /// since the last one let through, `None` to drop it.
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(Instant::now())
    }

    /// [`Self::admit`] at `now`.
    pub fn admit_at(&self, now: Instant) -> Option<u64> {
        let mut w = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match w.start {
            Some(start) if now.saturating_duration_since(start) < self.interval => {}
            _ => {
                w.start = Some(now);
                w.passed = 0;
            }
        }
        if w.passed < self.max {
            w.passed += 1;
            Some(std::mem::take(&mut w.suppressed))
        } else {
            w.suppressed += 1;
            None
        }
    }
}

/// Messages per call site and interval that [`rate_limited!`] lets through.
pub const RATE_LIMIT_MAX: u32 = 10;
/// The interval of [`rate_limited!`].
pub const RATE_LIMIT_INTERVAL: Duration = Duration::from_secs(60);

/// A `tracing` event at `$level` (`ERROR`, `WARN`, `INFO`, `DEBUG`, `TRACE`) limited to
/// [`RATE_LIMIT_MAX`] per [`RATE_LIMIT_INTERVAL`] at this call site; the first message let
/// through after some were dropped is preceded by a line that counts them:
///
/// ```
/// logging::rate_limited!(WARN, "collector: {}: malformed frame: {}; closing", "peer", "bad");
/// ```
///
/// Nothing is counted while the level is disabled.
#[macro_export]
macro_rules! rate_limited {
    ($level:ident, $($arg:tt)+) => {{
        static LIMIT: $crate::RateLimit = $crate::RateLimit::new($crate::RATE_LIMIT_MAX, $crate::RATE_LIMIT_INTERVAL);
        if $crate::tracing::enabled!($crate::tracing::Level::$level) {
            if let Some(suppressed) = LIMIT.admit() {
                if suppressed > 0 {
                    $crate::tracing::event!(
                        $crate::tracing::Level::$level,
                        "{} message(s) of {}:{} suppressed (at most {} per {} s)",
                        suppressed,
                        file!(),
                        line!(),
                        $crate::RATE_LIMIT_MAX,
                        $crate::RATE_LIMIT_INTERVAL.as_secs()
                    );
                }
                $crate::tracing::event!($crate::tracing::Level::$level, $($arg)+);
            }
        }
    }};
}

#[cfg(test)]
mod tests;
