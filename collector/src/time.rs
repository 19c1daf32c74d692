//! Time expressions and query windows of the analytics query API.
//!
//! `start_time` and `end_time` of a `POST /analytics/query` request are either an absolute
//! timestamp in microseconds since the Unix epoch, or relative to the moment the query is
//! handled:
//!
//! ```text
//! expr     = "now" | "now" sign amount unit | digits
//! sign     = "+" | "-"
//! amount   = digits                       ; decimal, at least one digit
//! unit     = "s" | "m" | "h" | "d"        ; seconds, minutes, hours, days
//! ```
//!
//! e.g. `now`, `now-10m`, `now-1h`, `now-30s`, `now-1d`, `now+30s`, `1494846979256107`. This is the
//! grammar of the reference query engine's `parse_time`; unlike it, this parser is exact: no
//! whitespace, no upper case, no trailing characters, and arithmetic that would leave the `u64`
//! microsecond range (before the epoch, or past year ~586 000) is an error instead of wrapping.
//!
//! The resolved window is then clamped the way the reference query engine does it before
//! running a query: not before the earliest data the collector holds, not after "now"
//! ([`clamp_query_window`]).

use std::fmt;
use std::str::FromStr;
use thiserror::Error;

/// Microseconds in a second.
pub const USEC_PER_SEC: u64 = 1_000_000;

/// Unit of a relative offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeUnit {
    /// `s`
    Seconds,
    /// `m`
    Minutes,
    /// `h`
    Hours,
    /// `d`
    Days,
}

impl TimeUnit {
    /// The suffix letter.
    pub const fn suffix(self) -> char {
        match self {
            TimeUnit::Seconds => 's',
            TimeUnit::Minutes => 'm',
            TimeUnit::Hours => 'h',
            TimeUnit::Days => 'd',
        }
    }

    /// The unit from its suffix string (exactly one of `s`, `m`, `h`, `d`).
    pub fn from_suffix(s: &str) -> Option<Self> {
        match s {
            "s" => Some(TimeUnit::Seconds),
            "m" => Some(TimeUnit::Minutes),
            "h" => Some(TimeUnit::Hours),
            "d" => Some(TimeUnit::Days),
            _ => None,
        }
    }

    /// Length of one unit in microseconds.
    pub const fn usec(self) -> u64 {
        match self {
            TimeUnit::Seconds => USEC_PER_SEC,
            TimeUnit::Minutes => 60 * USEC_PER_SEC,
            TimeUnit::Hours => 3600 * USEC_PER_SEC,
            TimeUnit::Days => 86_400 * USEC_PER_SEC,
        }
    }
}

/// Direction of a relative offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sign {
    /// `+`: after now.
    Plus,
    /// `-`: before now.
    Minus,
}

/// A parsed time expression, not yet resolved against a clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeExpr {
    /// Microseconds since the Unix epoch.
    Absolute(u64),
    /// The time the query is handled.
    Now,
    /// `now` plus or minus `amount` units.
    Relative {
        /// Before or after now.
        sign: Sign,
        /// Number of units.
        amount: u64,
        /// The unit.
        unit: TimeUnit,
    },
}

/// Why a time expression was rejected. Variants carry the expression: as given when parsing
/// failed, in canonical form ([`TimeExpr`]'s `Display`) when resolving it failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TimeError {
    /// The empty string.
    #[error("invalid time expression: empty")]
    Empty,
    /// Neither `now…` nor all decimal digits.
    #[error("invalid time expression `{expr}`: expected `now`, `now[+-]<N><s|m|h|d>` or microseconds since the epoch")]
    Malformed {
        /// The expression.
        expr: String,
    },
    /// `now` followed by something other than `+` or `-`.
    #[error("invalid time expression `{expr}`: expected `+` or `-` after `now`")]
    MissingSign {
        /// The expression.
        expr: String,
    },
    /// No digits after the sign (`now-`, `now-m`).
    #[error("invalid time expression `{expr}`: missing the amount after the sign")]
    MissingAmount {
        /// The expression.
        expr: String,
    },
    /// Digits but no unit (`now-10`).
    #[error("invalid time expression `{expr}`: missing the unit (s, m, h or d)")]
    MissingUnit {
        /// The expression.
        expr: String,
    },
    /// Something other than one of `s m h d` after the amount (`now-10x`, `now-10mm`).
    #[error("invalid time expression `{expr}`: unknown unit `{unit}` (expected s, m, h or d)")]
    BadUnit {
        /// The expression.
        expr: String,
        /// What stood where the unit belongs.
        unit: String,
    },
    /// A number or a sum beyond `u64` microseconds.
    #[error("invalid time expression `{expr}`: out of range")]
    Overflow {
        /// The expression.
        expr: String,
    },
    /// `now-…` reaching before the Unix epoch.
    #[error("invalid time expression `{expr}`: before the Unix epoch")]
    BeforeEpoch {
        /// The expression.
        expr: String,
    },
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

impl FromStr for TimeExpr {
    type Err = TimeError;

    fn from_str(expr: &str) -> Result<Self, Self::Err> {
        let owned = || expr.to_owned();
        if expr.is_empty() {
            return Err(TimeError::Empty);
        }
        let Some(rel) = expr.strip_prefix("now") else {
            if !all_digits(expr) {
                return Err(TimeError::Malformed { expr: owned() });
            }
            return expr.parse().map(TimeExpr::Absolute).map_err(|_| TimeError::Overflow { expr: owned() });
        };
        if rel.is_empty() {
            return Ok(TimeExpr::Now);
        }
        let (sign, rest) = match rel.as_bytes()[0] {
            b'+' => (Sign::Plus, &rel[1..]),
            b'-' => (Sign::Minus, &rel[1..]),
            _ => return Err(TimeError::MissingSign { expr: owned() }),
        };
        let digits_end = rest.bytes().position(|b| !b.is_ascii_digit()).unwrap_or(rest.len());
        let (digits, unit) = rest.split_at(digits_end);
        if digits.is_empty() {
            return Err(TimeError::MissingAmount { expr: owned() });
        }
        if unit.is_empty() {
            return Err(TimeError::MissingUnit { expr: owned() });
        }
        let unit =
            TimeUnit::from_suffix(unit).ok_or_else(|| TimeError::BadUnit { expr: owned(), unit: unit.to_owned() })?;
        let amount = digits.parse().map_err(|_| TimeError::Overflow { expr: owned() })?;
        Ok(TimeExpr::Relative { sign, amount, unit })
    }
}

impl fmt::Display for TimeExpr {
    /// The canonical text, which parses back to the same value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimeExpr::Absolute(us) => write!(f, "{us}"),
            TimeExpr::Now => f.write_str("now"),
            TimeExpr::Relative { sign, amount, unit } => {
                let s = if *sign == Sign::Plus { '+' } else { '-' };
                write!(f, "now{s}{amount}{}", unit.suffix())
            }
        }
    }
}

impl From<u64> for TimeExpr {
    /// An absolute time (a JSON number in a query request).
    fn from(us: u64) -> Self {
        TimeExpr::Absolute(us)
    }
}

impl TimeExpr {
    /// Microseconds since the epoch that this expression denotes when "now" is `now_us`.
    pub fn resolve(&self, now_us: u64) -> Result<u64, TimeError> {
        match *self {
            TimeExpr::Absolute(us) => Ok(us),
            TimeExpr::Now => Ok(now_us),
            TimeExpr::Relative { sign, amount, unit } => {
                let expr = || self.to_string();
                let offset = amount.checked_mul(unit.usec()).ok_or_else(|| TimeError::Overflow { expr: expr() })?;
                match sign {
                    Sign::Plus => now_us.checked_add(offset).ok_or_else(|| TimeError::Overflow { expr: expr() }),
                    Sign::Minus => now_us.checked_sub(offset).ok_or_else(|| TimeError::BeforeEpoch { expr: expr() }),
                }
            }
        }
    }
}

/// Parses `expr` and resolves it against `now_us` (microseconds since the epoch).
pub fn parse_time(expr: &str, now_us: u64) -> Result<u64, TimeError> {
    expr.parse::<TimeExpr>()?.resolve(now_us)
}

/// A query's time range in microseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimeWindow {
    /// Start of the range.
    pub start_us: u64,
    /// End of the range.
    pub end_us: u64,
}

impl TimeWindow {
    /// `end_us - start_us` (0 if the range is empty or inverted).
    pub fn duration_us(&self) -> u64 {
        self.end_us.saturating_sub(self.start_us)
    }
}

/// Clamps a requested window to the data that exists, as the reference query engine does
/// before running a query:
///
/// * a start before `data_start_us` (the earliest time the collector holds data for) is raised
///   to it;
/// * an end before `data_start_us` is raised to it, an end after `now_us` lowered to it;
/// * if the start is then after the end, the start becomes `end - 1` (a 1 µs window rather than
///   an inverted one).
pub fn clamp_query_window(
    requested_start_us: u64,
    requested_end_us: u64,
    data_start_us: u64,
    now_us: u64,
) -> TimeWindow {
    let start_us = requested_start_us.max(data_start_us);
    let end_us = if requested_end_us < data_start_us { data_start_us } else { requested_end_us.min(now_us) };
    let start_us = if start_us > end_us { end_us.saturating_sub(1) } else { start_us };
    TimeWindow { start_us, end_us }
}

/// Parses and resolves both ends of a query window, then clamps it with
/// [`clamp_query_window`].
pub fn resolve_query_window(start: &str, end: &str, data_start_us: u64, now_us: u64) -> Result<TimeWindow, TimeError> {
    let start_us = parse_time(start, now_us)?;
    let end_us = parse_time(end, now_us)?;
    Ok(clamp_query_window(start_us, end_us, data_start_us, now_us))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2017-05-15T11:16:19.256107Z, the timestamp of the reference flow-log frame.
    const NOW: u64 = 1_494_846_979_256_107;

    #[test]
    fn now_and_relative_forms() {
        assert_eq!(parse_time("now", NOW), Ok(NOW));
        assert_eq!(parse_time("now-10m", NOW), Ok(NOW - 600 * USEC_PER_SEC));
        assert_eq!(parse_time("now-1h", NOW), Ok(NOW - 3_600_000_000));
        assert_eq!(parse_time("now-30s", NOW), Ok(NOW - 30_000_000));
        assert_eq!(parse_time("now-1d", NOW), Ok(NOW - 86_400_000_000));
        assert_eq!(parse_time("now+30s", NOW), Ok(NOW + 30_000_000));
        assert_eq!(parse_time("now+2h", NOW), Ok(NOW + 7_200_000_000));
        assert_eq!(parse_time("now-0s", NOW), Ok(NOW));
        assert_eq!(parse_time("now-007m", NOW), Ok(NOW - 420_000_000));
    }

    #[test]
    fn absolute_microseconds() {
        assert_eq!(parse_time("1494846979256107", 0), Ok(1_494_846_979_256_107));
        assert_eq!(parse_time("0", NOW), Ok(0));
        assert_eq!(parse_time("18446744073709551615", 0), Ok(u64::MAX));
        assert_eq!(TimeExpr::from(5).resolve(NOW), Ok(5));
    }

    #[test]
    fn parsed_structure_and_display() {
        assert_eq!(
            "now-10m".parse(),
            Ok(TimeExpr::Relative { sign: Sign::Minus, amount: 10, unit: TimeUnit::Minutes })
        );
        for s in ["now", "now-10m", "now+30s", "now-1d", "now-4h", "123"] {
            let e: TimeExpr = s.parse().unwrap();
            assert_eq!(e.to_string(), s);
        }
        // Leading zeros are not kept, but the value is.
        assert_eq!("now-007m".parse::<TimeExpr>().unwrap().to_string(), "now-7m");
    }

    fn err(expr: &str) -> TimeError {
        parse_time(expr, NOW).unwrap_err()
    }

    #[test]
    fn syntax_errors() {
        let s = |x: &str| x.to_owned();
        assert_eq!(err(""), TimeError::Empty);
        assert_eq!(err("now-"), TimeError::MissingAmount { expr: s("now-") });
        assert_eq!(err("now+m"), TimeError::MissingAmount { expr: s("now+m") });
        assert_eq!(err("now--5m"), TimeError::MissingAmount { expr: s("now--5m") });
        assert_eq!(err("now-10"), TimeError::MissingUnit { expr: s("now-10") });
        assert_eq!(err("now-10x"), TimeError::BadUnit { expr: s("now-10x"), unit: s("x") });
        assert_eq!(err("now-10mm"), TimeError::BadUnit { expr: s("now-10mm"), unit: s("mm") });
        assert_eq!(err("now-10M"), TimeError::BadUnit { expr: s("now-10M"), unit: s("M") });
        assert_eq!(err("now-1h30m"), TimeError::BadUnit { expr: s("now-1h30m"), unit: s("h30m") });
        assert_eq!(err("now-10 m"), TimeError::BadUnit { expr: s("now-10 m"), unit: s(" m") });
        assert_eq!(err("now10m"), TimeError::MissingSign { expr: s("now10m") });
        assert_eq!(err("now "), TimeError::MissingSign { expr: s("now ") });
        for bad in ["NOW", " now", "-10m", "+5", "-5", "12a", "1e6", "1.5", "yesterday", "\"now\""] {
            assert_eq!(err(bad), TimeError::Malformed { expr: s(bad) }, "{bad:?}");
        }
    }

    #[test]
    fn range_errors() {
        let s = |x: &str| x.to_owned();
        assert_eq!(err("18446744073709551616"), TimeError::Overflow { expr: s("18446744073709551616") });
        assert_eq!(err("now-99999999999999999999s"), TimeError::Overflow { expr: s("now-99999999999999999999s") });
        // Fits u64 as a count, overflows once multiplied by the unit.
        assert_eq!(err("now+213503983d"), TimeError::Overflow { expr: s("now+213503983d") });
        assert_eq!(parse_time("now+213503982d", 0), Ok(213_503_982 * 86_400_000_000));
        // The addition itself overflowing.
        assert_eq!(parse_time("now+1s", u64::MAX - 999_999), Err(TimeError::Overflow { expr: s("now+1s") }));
        assert_eq!(parse_time("now+1s", u64::MAX - 1_000_000), Ok(u64::MAX));
        // Before the epoch.
        assert_eq!(parse_time("now-1s", 999_999), Err(TimeError::BeforeEpoch { expr: s("now-1s") }));
        assert_eq!(parse_time("now-1s", 1_000_000), Ok(0));
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            err("now-10x").to_string(),
            "invalid time expression `now-10x`: unknown unit `x` (expected s, m, h or d)"
        );
        assert_eq!(err("now-").to_string(), "invalid time expression `now-`: missing the amount after the sign");
    }

    #[test]
    fn clamping_to_data_and_now() {
        let data_start = NOW - 48 * TimeUnit::Hours.usec();
        // Inside: unchanged.
        let w = resolve_query_window("now-10m", "now", data_start, NOW).unwrap();
        assert_eq!(w, TimeWindow { start_us: NOW - 600_000_000, end_us: NOW });
        assert_eq!(w.duration_us(), 600_000_000);
        // Start before the oldest data: raised to it.
        let w = resolve_query_window("now-7d", "now-1h", data_start, NOW).unwrap();
        assert_eq!(w, TimeWindow { start_us: data_start, end_us: NOW - 3_600_000_000 });
        // End in the future: lowered to now.
        let w = resolve_query_window("now-1h", "now+1h", data_start, NOW).unwrap();
        assert_eq!(w.end_us, NOW);
        // Entirely before the oldest data: collapses onto data_start.
        let w = clamp_query_window(0, 10, data_start, NOW);
        assert_eq!(w, TimeWindow { start_us: data_start, end_us: data_start });
        assert_eq!(w.duration_us(), 0);
        // Entirely in the future: start ends up 1 µs before now.
        let w = resolve_query_window("now+1h", "now+2h", data_start, NOW).unwrap();
        assert_eq!(w, TimeWindow { start_us: NOW - 1, end_us: NOW });
        // Inverted request inside the data: start pulled to end - 1.
        let w = clamp_query_window(NOW - 10, NOW - 20, data_start, NOW);
        assert_eq!(w, TimeWindow { start_us: NOW - 21, end_us: NOW - 20 });
        // No underflow at the epoch.
        assert_eq!(clamp_query_window(5, 0, 0, 0), TimeWindow { start_us: 0, end_us: 0 });
    }

    #[test]
    fn window_errors_propagate() {
        assert_eq!(
            resolve_query_window("now-1h", "now-", 0, NOW),
            Err(TimeError::MissingAmount { expr: "now-".into() })
        );
        assert_eq!(resolve_query_window("bogus", "now", 0, NOW), Err(TimeError::Malformed { expr: "bogus".into() }));
    }

    #[test]
    fn unit_table() {
        for (u, c, us) in [
            (TimeUnit::Seconds, 's', 1_000_000),
            (TimeUnit::Minutes, 'm', 60_000_000),
            (TimeUnit::Hours, 'h', 3_600_000_000),
            (TimeUnit::Days, 'd', 86_400_000_000),
        ] {
            assert_eq!(u.suffix(), c);
            assert_eq!(u.usec(), us);
            assert_eq!(TimeUnit::from_suffix(&c.to_string()), Some(u));
        }
        assert_eq!(TimeUnit::from_suffix("w"), None);
    }
}
