//! The Prometheus text exposition format, version 0.0.4 (what a `GET /metrics` answers with
//! `Content-Type: text/plain; version=0.0.4`), for exporters that read every figure at scrape
//! time from somewhere else (shared-memory regions, counters files, a control socket) and so
//! have no live metric objects to register: they write each family once per scrape.
//!
//! ```text
//! # HELP vrouter_vif_rx_packets_total Packets received on the vif.
//! # TYPE vrouter_vif_rx_packets_total counter
//! vrouter_vif_rx_packets_total{vif="1",name="tap1"} 1027
//! # HELP vrouter_lcore_burst_packets Packets per received burst.
//! # TYPE vrouter_lcore_burst_packets histogram
//! vrouter_lcore_burst_packets_bucket{lcore="0",le="1"} 3
//! vrouter_lcore_burst_packets_bucket{lcore="0",le="+Inf"} 10
//! vrouter_lcore_burst_packets_sum{lcore="0"} 97
//! vrouter_lcore_burst_packets_count{lcore="0"} 10
//! ```
//!
//! [`Exposition`] checks what the format and `promtool check metrics` demand, so that a
//! mistake in an exporter is an error in its unit tests rather than a scrape Prometheus
//! rejects: metric and label names of the allowed characters, each family written once and
//! its samples together (a [`Family`] borrows the exposition until it is done), `HELP` and
//! `TYPE` before the samples, help text and label values escaped, counters named `..._total`
//! and nothing else so, `_count`/`_sum`/`_bucket` only on histograms, no `le` label but the
//! one a histogram writes, bucket bounds increasing, cumulative bucket counts computed here.
//!
//! Written from the format's description (Prometheus documentation, "Exposition formats",
//! text-based format) and promtool's lint rules. The `prometheus-client` crate writes
//! OpenMetrics text instead (a counter family `x` with samples `x_total`, and `# EOF`), which
//! Prometheus scrapes but `promtool check metrics`, a 0.0.4 parser, rejects.

#![warn(missing_docs)]

use std::collections::BTreeSet;
use std::fmt::Write as _;

/// The `Content-Type` of a response carrying an [`Exposition`].
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What makes an exposition invalid; the exporter's mistake, named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpositionError {
    /// A metric name outside `[a-zA-Z_:][a-zA-Z0-9_:]*`.
    #[error("invalid metric name `{0}`")]
    MetricName(String),
    /// A label name outside `[a-zA-Z_][a-zA-Z0-9_]*`, or starting with `__` (reserved).
    #[error("metric `{metric}`: invalid label name `{label}`")]
    LabelName {
        /// The family.
        metric: String,
        /// The label name.
        label: String,
    },
    /// A family name written twice in one exposition.
    #[error("metric family `{0}` written twice")]
    Duplicate(String),
    /// A name that contradicts its type (promtool's lint): a counter not ending `_total`, a
    /// non-counter ending `_total`, a non-histogram ending `_count`, `_sum` or `_bucket`.
    #[error("metric `{name}`: {why}")]
    Naming {
        /// The family.
        name: String,
        /// The rule it breaks.
        why: &'static str,
    },
    /// A histogram sample whose bounds are not finite and strictly increasing, or whose
    /// counts are not one per bound plus the `+Inf` bucket, or that has an `le` label.
    #[error("histogram `{name}`: {why}")]
    Histogram {
        /// The family.
        name: String,
        /// What is wrong.
        why: &'static str,
    },
}

/// The type of a metric family (`# TYPE` line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A monotonic count (resets only when its source restarts); the name ends `_total`.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// Observations counted in cumulative buckets, with their sum and count.
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A sample value: an integer written exactly, or a float (`NaN`, `+Inf`, `-Inf` spelled as
/// the format wants).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    /// An integer count.
    Int(u64),
    /// A float.
    Float(f64),
}

impl From<u64> for Value {
    fn from(v: u64) -> Value {
        Value::Int(v)
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Value {
        Value::Int(v.into())
    }
}

impl From<usize> for Value {
    fn from(v: usize) -> Value {
        Value::Int(v as u64)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Int(v.into())
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Float(v)
    }
}

fn write_float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{v}");
    }
}

fn write_value(out: &mut String, v: Value) {
    match v {
        Value::Int(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Float(f) => write_float(out, f),
    }
}

fn valid_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    !s.starts_with("__")
        && matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The naming rule `name` breaks as a family of `kind`, if any.
fn naming_rule(name: &str, kind: Kind) -> Option<&'static str> {
    match kind {
        Kind::Counter if !name.ends_with("_total") => Some("a counter's name ends with `_total`"),
        Kind::Gauge | Kind::Histogram if name.ends_with("_total") => Some("only a counter's name ends with `_total`"),
        Kind::Counter | Kind::Gauge if ["_count", "_sum", "_bucket"].iter().any(|s| name.ends_with(s)) => {
            Some("only a histogram's or summary's name ends with `_count`, `_sum` or `_bucket`")
        }
        _ => None,
    }
}

/// One scrape's text: families written one after the other.
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
    names: BTreeSet<String>,
}

impl Exposition {
    /// An empty exposition.
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// Starts family `name` of `kind`: writes its `# HELP` and `# TYPE` lines; its samples
    /// follow through the returned [`Family`].
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) -> Result<Family<'_>, ExpositionError> {
        if !valid_metric_name(name) {
            return Err(ExpositionError::MetricName(name.into()));
        }
        if let Some(why) = naming_rule(name, kind) {
            return Err(ExpositionError::Naming { name: name.into(), why });
        }
        if !self.names.insert(name.to_string()) {
            return Err(ExpositionError::Duplicate(name.into()));
        }
        let t = &mut self.text;
        let _ = write!(t, "# HELP {name} ");
        for c in help.chars() {
            match c {
                '\\' => t.push_str("\\\\"),
                '\n' => t.push_str("\\n"),
                c => t.push(c),
            }
        }
        let _ = writeln!(t, "\n# TYPE {name} {}", kind.name());
        Ok(Family { exp: self, name: name.to_string(), kind })
    }

    /// [`Exposition::family`] of a [`Kind::Counter`].
    pub fn counter(&mut self, name: &str, help: &str) -> Result<Family<'_>, ExpositionError> {
        self.family(name, Kind::Counter, help)
    }

    /// [`Exposition::family`] of a [`Kind::Gauge`].
    pub fn gauge(&mut self, name: &str, help: &str) -> Result<Family<'_>, ExpositionError> {
        self.family(name, Kind::Gauge, help)
    }

    /// [`Exposition::family`] of a [`Kind::Histogram`].
    pub fn histogram(&mut self, name: &str, help: &str) -> Result<Family<'_>, ExpositionError> {
        self.family(name, Kind::Histogram, help)
    }

    /// The text written so far.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The finished text.
    pub fn into_string(self) -> String {
        self.text
    }
}

/// The family being written: its samples, each with its labels.
#[derive(Debug)]
pub struct Family<'a> {
    exp: &'a mut Exposition,
    name: String,
    kind: Kind,
}

impl Family<'_> {
    /// Writes `{a="x",b="y"}` (nothing without labels) plus `extra` (the histogram's `le`).
    fn labels(&mut self, labels: &[(&str, &str)], extra: Option<(&str, &str)>) -> Result<(), ExpositionError> {
        for (k, _) in labels {
            if !valid_label_name(k) || (self.kind == Kind::Histogram && *k == "le") {
                return Err(ExpositionError::LabelName { metric: self.name.clone(), label: (*k).into() });
            }
        }
        if labels.is_empty() && extra.is_none() {
            return Ok(());
        }
        let t = &mut self.exp.text;
        t.push('{');
        for (i, (k, v)) in labels.iter().chain(extra.as_ref()).enumerate() {
            if i > 0 {
                t.push(',');
            }
            t.push_str(k);
            t.push_str("=\"");
            for c in v.chars() {
                match c {
                    '\\' => t.push_str("\\\\"),
                    '"' => t.push_str("\\\""),
                    '\n' => t.push_str("\\n"),
                    c => t.push(c),
                }
            }
            t.push('"');
        }
        t.push('}');
        Ok(())
    }

    fn line(
        &mut self,
        suffix: &str,
        labels: &[(&str, &str)],
        extra: Option<(&str, &str)>,
        v: Value,
    ) -> Result<(), ExpositionError> {
        self.exp.text.push_str(&self.name);
        self.exp.text.push_str(suffix);
        self.labels(labels, extra)?;
        self.exp.text.push(' ');
        write_value(&mut self.exp.text, v);
        self.exp.text.push('\n');
        Ok(())
    }

    /// One sample of a counter or gauge. Each label set should appear once per family (the
    /// caller's duty: the figures come from one table, one row each).
    pub fn sample(&mut self, labels: &[(&str, &str)], value: impl Into<Value>) -> Result<&mut Self, ExpositionError> {
        if self.kind == Kind::Histogram {
            return Err(ExpositionError::Histogram { name: self.name.clone(), why: "a histogram takes observe()" });
        }
        self.line("", labels, None, value.into())?;
        Ok(self)
    }

    /// One histogram: `counts[i]` observations fell in bucket `i`, that is at most
    /// `bounds[i]` and above `bounds[i - 1]` (not cumulative: the cumulative `_bucket` lines
    /// and `_count` are computed here), the last count being the `+Inf` bucket's (above every
    /// bound); `sum` is the sum of the observed values.
    pub fn observe(
        &mut self,
        labels: &[(&str, &str)],
        bounds: &[f64],
        counts: &[u64],
        sum: impl Into<Value>,
    ) -> Result<&mut Self, ExpositionError> {
        let bad = |why| Err(ExpositionError::Histogram { name: self.name.clone(), why });
        if self.kind != Kind::Histogram {
            return bad("observe() is for histograms");
        }
        if counts.len() != bounds.len() + 1 {
            return bad("one count per bound plus the +Inf bucket's");
        }
        if bounds.iter().any(|b| !b.is_finite()) || bounds.windows(2).any(|w| w[0] >= w[1]) {
            return bad("bucket bounds must be finite and strictly increasing");
        }
        let mut cumulative = 0u64;
        let mut le = String::new();
        for (i, &n) in counts.iter().enumerate() {
            cumulative = cumulative.wrapping_add(n);
            le.clear();
            match bounds.get(i) {
                Some(&b) => write_float(&mut le, b),
                None => le.push_str("+Inf"),
            }
            self.line("_bucket", labels, Some(("le", &le)), Value::Int(cumulative))?;
        }
        self.line("_sum", labels, None, sum.into())?;
        self.line("_count", labels, None, Value::Int(cumulative))?;
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_and_gauge_families() {
        let mut e = Exposition::new();
        e.counter("x_rx_packets_total", "Packets received.\nSecond \\ line")
            .unwrap()
            .sample(&[("vif", "1"), ("name", "tap\"a\"\\b\nc")], 7u64)
            .unwrap()
            .sample(&[("vif", "2"), ("name", "")], 0u64)
            .unwrap();
        e.gauge("x_up", "Up.").unwrap().sample(&[], true).unwrap();
        e.gauge("x_ratio", "Ratio.").unwrap().sample(&[], 0.25).unwrap().sample(&[("a", "b")], f64::NAN).unwrap();
        assert_eq!(
            e.into_string(),
            "# HELP x_rx_packets_total Packets received.\\nSecond \\\\ line\n\
             # TYPE x_rx_packets_total counter\n\
             x_rx_packets_total{vif=\"1\",name=\"tap\\\"a\\\"\\\\b\\nc\"} 7\n\
             x_rx_packets_total{vif=\"2\",name=\"\"} 0\n\
             # HELP x_up Up.\n# TYPE x_up gauge\nx_up 1\n\
             # HELP x_ratio Ratio.\n# TYPE x_ratio gauge\nx_ratio 0.25\nx_ratio{a=\"b\"} NaN\n"
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut e = Exposition::new();
        e.histogram("x_burst_packets", "Packets per burst.")
            .unwrap()
            .observe(&[("lcore", "0")], &[1.0, 2.0, 4.5], &[3, 0, 5, 2], 40u64)
            .unwrap();
        assert_eq!(
            e.as_str(),
            "# HELP x_burst_packets Packets per burst.\n# TYPE x_burst_packets histogram\n\
             x_burst_packets_bucket{lcore=\"0\",le=\"1\"} 3\n\
             x_burst_packets_bucket{lcore=\"0\",le=\"2\"} 3\n\
             x_burst_packets_bucket{lcore=\"0\",le=\"4.5\"} 8\n\
             x_burst_packets_bucket{lcore=\"0\",le=\"+Inf\"} 10\n\
             x_burst_packets_sum{lcore=\"0\"} 40\n\
             x_burst_packets_count{lcore=\"0\"} 10\n"
        );
        let mut e = Exposition::new();
        e.histogram("h", "H.").unwrap().observe(&[], &[], &[4], f64::INFINITY).unwrap();
        assert!(e.as_str().ends_with("h_bucket{le=\"+Inf\"} 4\nh_sum +Inf\nh_count 4\n"), "{}", e.as_str());
    }

    #[test]
    fn mistakes_are_errors() {
        let mut e = Exposition::new();
        assert_eq!(e.counter("1x_total", "").unwrap_err(), ExpositionError::MetricName("1x_total".into()));
        assert_eq!(e.counter("a-b_total", "").unwrap_err(), ExpositionError::MetricName("a-b_total".into()));
        assert!(matches!(e.counter("x_packets", ""), Err(ExpositionError::Naming { .. })));
        assert!(matches!(e.gauge("x_total", ""), Err(ExpositionError::Naming { .. })));
        assert!(matches!(e.gauge("x_count", ""), Err(ExpositionError::Naming { .. })));
        assert!(matches!(e.histogram("x_seconds_total", ""), Err(ExpositionError::Naming { .. })));
        e.gauge("x", "").unwrap();
        assert_eq!(e.gauge("x", "").unwrap_err(), ExpositionError::Duplicate("x".into()));
        let mut f = e.gauge("y", "").unwrap();
        assert!(matches!(f.sample(&[("__name", "a")], 1u64), Err(ExpositionError::LabelName { .. })));
        assert!(matches!(f.sample(&[("1a", "a")], 1u64), Err(ExpositionError::LabelName { .. })));
        assert!(matches!(f.observe(&[], &[], &[0], 0u64), Err(ExpositionError::Histogram { .. })));
        let mut h = e.histogram("z", "").unwrap();
        assert!(matches!(h.sample(&[], 1u64), Err(ExpositionError::Histogram { .. })));
        assert!(matches!(h.observe(&[("le", "1")], &[], &[0], 0u64), Err(ExpositionError::LabelName { .. })));
        assert!(matches!(h.observe(&[], &[2.0, 1.0], &[0, 0, 0], 0u64), Err(ExpositionError::Histogram { .. })));
        assert!(matches!(h.observe(&[], &[f64::INFINITY], &[0, 0], 0u64), Err(ExpositionError::Histogram { .. })));
        assert!(matches!(h.observe(&[], &[1.0], &[0], 0u64), Err(ExpositionError::Histogram { .. })));
    }

    /// `promtool check metrics` (Debian's `prometheus` package) accepts what the writer
    /// writes; skipped where promtool is not installed (`ci/setup.sh` installs it).
    #[test]
    fn promtool_accepts_the_text() {
        use std::io::Write as _;
        let mut e = Exposition::new();
        e.counter("x_rx_packets_total", "Packets \\ received.")
            .unwrap()
            .sample(&[("vif", "1"), ("name", "a\"b")], 7u64)
            .unwrap();
        e.gauge("x_up", "Up.").unwrap().sample(&[], true).unwrap();
        e.histogram("x_latency_seconds", "Latency.")
            .unwrap()
            .observe(&[("k", "v")], &[0.001, 0.01], &[1, 2, 3], 0.5)
            .unwrap();
        let child = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn();
        let Ok(mut child) = child else {
            eprintln!("promtool not installed (Debian package prometheus): check skipped");
            return;
        };
        child.stdin.take().unwrap().write_all(e.as_str().as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let said = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && said.trim().is_empty(), "promtool: {said}\n{}", e.as_str());
    }
}
