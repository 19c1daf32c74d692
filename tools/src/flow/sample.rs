//! The arithmetic of `flow -r` (rates from the table counters) and `flow -s` (a scan of
//! the entries), and local timestamps; pure functions of their inputs.

use std::borrow::Borrow;

use flow_table::{flags, Action, FlowSnapshot, TableStats};
use serde::Serialize;

/// A broken-down local time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalTime {
    /// Calendar year.
    pub year: i32,
    /// Month, 1-12.
    pub month: u32,
    /// Day of the month, 1-31.
    pub day: u32,
    /// Hour, 0-23.
    pub hour: u32,
    /// Minute, 0-59.
    pub minute: u32,
    /// Second, 0-60 (leap second).
    pub second: u32,
    /// Milliseconds, 0-999.
    pub millis: u32,
    /// Offset from UTC, seconds east.
    pub utc_offset_s: i64,
}

impl LocalTime {
    /// `unix_ms` in the local time zone (`localtime_r`; UTC if that fails).
    pub fn from_unix_ms(unix_ms: u64) -> LocalTime {
        let secs = (unix_ms / 1000) as libc::time_t;
        // SAFETY: `tm` is plain old data (all-zero is valid); localtime_r only writes it.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointers to a time_t and a tm, both live for the call.
        let ok = !unsafe { libc::localtime_r(&secs, &mut tm) }.is_null();
        if !ok {
            // SAFETY: as above.
            unsafe { libc::gmtime_r(&secs, &mut tm) };
            tm.tm_gmtoff = 0;
        }
        LocalTime {
            year: tm.tm_year + 1900,
            month: (tm.tm_mon + 1) as u32,
            day: tm.tm_mday as u32,
            hour: tm.tm_hour as u32,
            minute: tm.tm_min as u32,
            second: tm.tm_sec as u32,
            millis: (unix_ms % 1000) as u32,
            utc_offset_s: tm.tm_gmtoff as i64,
        }
    }

    /// `%Y-%m-%d %H:%M:%S`.
    pub fn date_time(&self) -> String {
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// `%Y-%m-%d %H:%M:%S %z`.
    pub fn with_zone(&self) -> String {
        let off = self.utc_offset_s.abs();
        format!(
            "{} {}{:02}{:02}",
            self.date_time(),
            if self.utc_offset_s < 0 { '-' } else { '+' },
            off / 3600,
            off % 3600 / 60
        )
    }

    /// `%Y-%m-%d %H:%M:%S.mmm`.
    pub fn with_millis(&self) -> String {
        format!("{}.{:03}", self.date_time(), self.millis)
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn unix_ms_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// One sample of `flow -r`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateSample {
    /// When the sample was taken, local time.
    pub time: LocalTime,
    /// When the sample was taken, Unix milliseconds.
    pub unix_ms: u64,
    /// Flows in use (`ftable_used_entries`).
    pub entries: u64,
    /// Flow operations per second: (fwd + rev + del) over the interval.
    pub rate: i64,
    /// HOLD -> action transitions in the interval (`ftable_processed`).
    pub fwd: u64,
    /// Flows created by the agent in the interval (`ftable_added`).
    pub rev: u64,
    /// Flows deleted or evicted in the interval (`ftable_deleted`).
    pub del: u64,
    /// Flows in HOLD now.
    pub hold: u64,
    /// Flows created by the data plane in the interval (`ftable_created`; tf's line has
    /// no column for it, the JSON has).
    pub created: u64,
}

impl RateSample {
    /// tf prints a line only when something happened: an operation in the interval, or
    /// flows waiting in HOLD.
    pub fn is_quiet(&self) -> bool {
        self.fwd == 0 && self.rev == 0 && self.del == 0 && self.hold == 0
    }
}

/// Per-second rate of `delta` over `ms` milliseconds (integer, like tf).
fn per_second(delta: u64, ms: u64) -> i64 {
    (i128::from(delta) * 1000 / i128::from(ms.max(1))) as i64
}

/// The `flow -r` sample between two reads of the counters `elapsed_ms` apart.
pub fn rate_sample(prev: &TableStats, cur: &TableStats, elapsed_ms: u64, unix_ms: u64, time: LocalTime) -> RateSample {
    let fwd = cur.processed.wrapping_sub(prev.processed);
    let rev = cur.added.wrapping_sub(prev.added);
    let del = cur.deleted.wrapping_sub(prev.deleted);
    RateSample {
        time,
        unix_ms,
        entries: cur.used_entries,
        rate: per_second(fwd, elapsed_ms) + per_second(rev, elapsed_ms) + per_second(del, elapsed_ms),
        fwd,
        rev,
        del,
        hold: cur.hold_count,
        created: cur.created.wrapping_sub(prev.created),
    }
}

/// Flows by state, from a scan of the table (evicted flows are not counted).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FlowCounts {
    /// Every active, non-evicted flow.
    pub total: u64,
    /// Flows with an action (not HOLD).
    pub active: u64,
    /// Flows in HOLD (waiting for the agent's verdict).
    pub hold: u64,
    /// Flows with action FORWARD.
    pub fwd: u64,
    /// Flows with action DROP.
    pub drop: u64,
    /// Flows with action NAT.
    pub nat: u64,
}

/// Counts the non-evicted flows of a scan by action.
pub fn count_flows<S: Borrow<FlowSnapshot>>(flows: impl IntoIterator<Item = S>) -> FlowCounts {
    let mut c = FlowCounts::default();
    for s in flows {
        let s = s.borrow();
        if s.flags & flags::EVICTED != 0 {
            continue;
        }
        c.total += 1;
        match s.action {
            Action::Hold => c.hold += 1,
            Action::Forward => c.fwd += 1,
            Action::Drop => c.drop += 1,
            Action::Nat => c.nat += 1,
        }
    }
    c.active = c.total - c.hold;
    c
}

/// One screen of `flow -s`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SummarySample {
    /// When the sample was taken, local time.
    pub time: LocalTime,
    /// When the sample was taken, Unix milliseconds.
    pub unix_ms: u64,
    /// Flows by state now.
    pub counts: FlowCounts,
    /// Change since the previous sample (the first sample: since zero, like tf).
    pub total_new: i64,
    /// Change of active (not HOLD) flows since the previous sample.
    pub active_new: i64,
    /// Change of HOLD flows since the previous sample.
    pub hold_new: i64,
    /// Change of active flows per second (0 on the first sample).
    pub rate: i64,
    /// Running averages over the intervals where more than 1000 flows/s were set up
    /// (torn down).
    pub avg_setup_rate: u64,
    /// Running average teardown rate, flows/s (see `avg_setup_rate`).
    pub avg_teardown_rate: u64,
    /// Change of all flows per second (0 on the first sample).
    pub total_rate: i64,
}

/// The state `flow -s` carries from one sample to the next.
#[derive(Clone, Debug, Default)]
pub struct SummaryTracker {
    prev: FlowCounts,
    first_done: bool,
    avg_setup_rate: u64,
    avg_teardown_rate: u64,
    setup_ms: u64,
    teardown_ms: u64,
}

impl SummaryTracker {
    /// A tracker before the first sample.
    pub fn new() -> SummaryTracker {
        SummaryTracker::default()
    }

    /// The sample for `counts`, `elapsed_ms` after the previous one (or the start).
    pub fn sample(&mut self, counts: FlowCounts, elapsed_ms: u64, unix_ms: u64, time: LocalTime) -> SummarySample {
        let ms = elapsed_ms.max(1) as i64;
        let d = |a: u64, b: u64| a as i64 - b as i64;
        let active_delta = d(counts.active, self.prev.active);
        let total_delta = d(counts.total, self.prev.total);
        let (mut rate, mut total_rate) = (active_delta * 1000 / ms, total_delta * 1000 / ms);
        if !self.first_done {
            rate = 0;
            total_rate = 0;
            self.first_done = true;
        }
        if rate < -1000 {
            let sum = self.avg_teardown_rate as i64 * self.teardown_ms as i64 - active_delta * 1000;
            self.teardown_ms += ms as u64;
            self.avg_teardown_rate = (sum / self.teardown_ms as i64).max(0) as u64;
        }
        if rate > 1000 {
            let sum = self.avg_setup_rate as i64 * self.setup_ms as i64 + active_delta * 1000;
            self.setup_ms += ms as u64;
            self.avg_setup_rate = (sum / self.setup_ms as i64).max(0) as u64;
        }
        let out = SummarySample {
            time,
            unix_ms,
            counts,
            total_new: total_delta,
            active_new: active_delta,
            hold_new: d(counts.hold, self.prev.hold),
            rate,
            avg_setup_rate: self.avg_setup_rate,
            avg_teardown_rate: self.avg_teardown_rate,
            total_rate,
        };
        self.prev = counts;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flow_table::FlowKey;

    fn t() -> LocalTime {
        LocalTime {
            year: 2024,
            month: 1,
            day: 2,
            hour: 3,
            minute: 4,
            second: 5,
            millis: 6,
            utc_offset_s: -(5 * 3600 + 30 * 60),
        }
    }

    #[test]
    fn time_formats() {
        assert_eq!(t().date_time(), "2024-01-02 03:04:05");
        assert_eq!(t().with_millis(), "2024-01-02 03:04:05.006");
        assert_eq!(t().with_zone(), "2024-01-02 03:04:05 -0530");
        let now = LocalTime::from_unix_ms(1_700_000_000_123);
        assert_eq!(now.millis, 123);
        assert!(now.year == 2023 && (1..=12).contains(&now.month));
    }

    #[test]
    fn rates_from_counter_deltas() {
        let prev = TableStats { processed: 10, added: 4, deleted: 1, created: 20, ..Default::default() };
        let cur = TableStats {
            processed: 20,
            added: 9,
            deleted: 1,
            created: 31,
            hold_count: 3,
            used_entries: 40,
            ..Default::default()
        };
        let r = rate_sample(&prev, &cur, 500, 7, t());
        assert_eq!((r.fwd, r.rev, r.del, r.created, r.hold, r.entries), (10, 5, 0, 11, 3, 40));
        assert_eq!(r.rate, 20 + 10);
        assert!(!r.is_quiet());
        let idle = rate_sample(&cur, &TableStats { hold_count: 0, ..cur.clone() }, 500, 7, t());
        assert!(idle.is_quiet());
        assert_eq!(idle.rate, 0);
    }

    fn flow(action: Action, extra: u32) -> FlowSnapshot {
        FlowSnapshot {
            index: 0,
            gen: 1,
            key: FlowKey::v4(1, 6, [1, 1, 1, 1].into(), [2, 2, 2, 2].into(), 1, 2),
            flags: flags::ACTIVE | extra,
            action,
            drop_reason: 0,
            rflow: None,
            src_nh: 0,
            tcp_flags: 0,
            setup_time: 0,
            last_seen: 0,
            mirror: 255,
            sec_mirror: 255,
            underlay_sport: 0,
            bytes: 0,
            packets: 0,
            mirror_bytes: 0,
            mirror_packets: 0,
            sec_mirror_bytes: 0,
            sec_mirror_packets: 0,
            accounting: Default::default(),
            hash: 0,
            bucket: 0,
            overflow_next: None,
        }
    }

    #[test]
    fn counts_skip_evicted() {
        let flows = [
            flow(Action::Forward, 0),
            flow(Action::Forward, flags::EVICTED),
            flow(Action::Drop, flags::DELETE_MARKED),
            flow(Action::Hold, flags::HOLD),
            flow(Action::Nat, 0),
        ];
        assert_eq!(count_flows(&flows), FlowCounts { total: 4, active: 3, hold: 1, fwd: 1, drop: 1, nat: 1 });
    }

    #[test]
    fn summary_rates_and_averages() {
        let mut tr = SummaryTracker::new();
        let c = |total, hold| FlowCounts { total, active: total - hold, hold, fwd: total - hold, drop: 0, nat: 0 };
        let s = tr.sample(c(5000, 0), 500, 0, t());
        // First sample: "new" counts from zero, rates forced to 0.
        assert_eq!((s.total_new, s.active_new, s.rate, s.total_rate), (5000, 5000, 0, 0));
        let s = tr.sample(c(6000, 100), 500, 0, t());
        assert_eq!((s.total_new, s.active_new, s.hold_new), (1000, 900, 100));
        assert_eq!((s.rate, s.total_rate), (1800, 2000));
        assert_eq!(s.avg_setup_rate, 1800);
        let s = tr.sample(c(6000, 100), 500, 0, t());
        assert_eq!((s.rate, s.avg_setup_rate, s.avg_teardown_rate), (0, 1800, 0));
        let s = tr.sample(c(3000, 0), 1000, 0, t());
        assert_eq!(s.rate, -2900);
        assert_eq!(s.avg_teardown_rate, 2900);
        // A slow change (|rate| <= 1000) leaves the averages alone.
        let s = tr.sample(c(3100, 0), 1000, 0, t());
        assert_eq!((s.rate, s.avg_setup_rate, s.avg_teardown_rate), (100, 1800, 2900));
    }
}
