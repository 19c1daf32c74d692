//! Per-thread CPU time and machine load from /proc.

use anyhow::{bail, Context, Result};

/// `(tid, comm)` of every thread of `pid`.
pub fn threads(pid: u32) -> Result<Vec<(u32, String)>> {
    let mut out = Vec::new();
    let dir = format!("/proc/{pid}/task");
    for e in std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        let e = e?;
        let Some(tid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Ok(comm) = std::fs::read_to_string(format!("{dir}/{tid}/comm")) {
            out.push((tid, comm.trim().to_string()));
        }
    }
    out.sort();
    Ok(out)
}

/// The thread ids of `pid` whose name is `comm`.
pub fn threads_named(pid: u32, comm: &str) -> Result<Vec<u32>> {
    Ok(threads(pid)?.into_iter().filter(|(_, c)| c == comm).map(|(t, _)| t).collect())
}

/// On-CPU nanoseconds of one thread (first field of `/proc/PID/task/TID/schedstat`).
pub fn thread_cpu_ns(pid: u32, tid: u32) -> Result<u64> {
    let p = format!("/proc/{pid}/task/{tid}/schedstat");
    let s = std::fs::read_to_string(&p).with_context(|| format!("reading {p}"))?;
    parse_schedstat(&s).with_context(|| format!("parsing {p}: {s:?}"))
}

/// First field of a schedstat line (`run_ns wait_ns timeslices`).
pub fn parse_schedstat(s: &str) -> Result<u64> {
    match s.split_whitespace().next().map(str::parse::<u64>) {
        Some(Ok(v)) => Ok(v),
        _ => bail!("unexpected schedstat content"),
    }
}

/// On-CPU nanoseconds of a whole process, its exited threads included (`utime + stime` of
/// `/proc/PID/stat`, in clock ticks: 10 ms resolution with the usual `CLK_TCK` of 100).
pub fn process_cpu_ns(pid: u32) -> Result<u64> {
    let p = format!("/proc/{pid}/stat");
    let s = std::fs::read_to_string(&p).with_context(|| format!("reading {p}"))?;
    // SAFETY: sysconf has no preconditions.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(parse_stat_ticks(&s).with_context(|| format!("parsing {p}"))? * (1_000_000_000 / tck))
}

/// `utime + stime` (fields 14 and 15) of a `/proc/PID/stat` line; the command name, field 2,
/// is in parentheses and may hold spaces and parentheses itself.
pub fn parse_stat_ticks(s: &str) -> Result<u64> {
    let rest = s.rfind(')').map(|i| &s[i + 1..]).context("no ')' in stat")?;
    // `rest` starts at field 3 (state): utime is its 12th field, stime the 13th.
    let f: Vec<&str> = rest.split_whitespace().collect();
    match (f.get(11).map(|x| x.parse::<u64>()), f.get(12).map(|x| x.parse::<u64>())) {
        (Some(Ok(u)), Some(Ok(s))) => Ok(u + s),
        _ => bail!("unexpected stat content"),
    }
}

/// The 1-, 5- and 15-minute load averages.
pub fn loadavg() -> Result<[f64; 3]> {
    let s = std::fs::read_to_string("/proc/loadavg").context("reading /proc/loadavg")?;
    parse_loadavg(&s)
}

/// Parses the content of `/proc/loadavg`.
pub fn parse_loadavg(s: &str) -> Result<[f64; 3]> {
    let v: Vec<f64> = s.split_whitespace().take(3).map(|x| x.parse()).collect::<Result<_, _>>()?;
    if v.len() != 3 {
        bail!("unexpected /proc/loadavg content {s:?}");
    }
    Ok([v[0], v[1], v[2]])
}

/// Busy and total jiffies per CPU from /proc/stat (`cpuN` lines), indexed by CPU number.
pub fn cpu_jiffies() -> Result<Vec<(u64, u64)>> {
    let s = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    Ok(parse_cpu_jiffies(&s))
}

/// Steal jiffies per CPU (time the hypervisor ran something else), from /proc/stat.
pub fn cpu_steal() -> Vec<u64> {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    parse_cpu_steal(&s)
}

/// Parses the steal column (the 8th) of the `cpuN` lines of `/proc/stat`.
pub fn parse_cpu_steal(s: &str) -> Vec<u64> {
    let mut out = Vec::new();
    for line in s.lines() {
        let mut f = line.split_whitespace();
        let Some(idx) = f.next().and_then(|n| n.strip_prefix("cpu")).and_then(|n| n.parse::<usize>().ok()) else {
            continue;
        };
        if out.len() <= idx {
            out.resize(idx + 1, 0);
        }
        out[idx] = f.nth(7).and_then(|x| x.parse().ok()).unwrap_or(0);
    }
    out
}

/// Parses the content of `/proc/stat` (see [`cpu_jiffies`]).
pub fn parse_cpu_jiffies(s: &str) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for line in s.lines() {
        let mut f = line.split_whitespace();
        let Some(name) = f.next() else { continue };
        let Some(idx) = name.strip_prefix("cpu").and_then(|n| n.parse::<usize>().ok()) else {
            continue;
        };
        let v: Vec<u64> = f.filter_map(|x| x.parse().ok()).collect();
        if v.len() < 4 {
            continue;
        }
        // user nice system idle iowait irq softirq steal ...
        let idle = v[3] + v.get(4).copied().unwrap_or(0);
        let total: u64 = v.iter().take(8).sum();
        if out.len() <= idx {
            out.resize(idx + 1, (0, 0));
        }
        out[idx] = (total - idle, total);
    }
    out
}

/// Busy share of each CPU between two [`cpu_jiffies`] samples.
pub fn cpu_busy_share(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<f64> {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let dt = y.1.saturating_sub(x.1);
            if dt == 0 {
                0.0
            } else {
                y.0.saturating_sub(x.0) as f64 / dt as f64
            }
        })
        .collect()
}

/// Resident memory of a process from `/proc/PID/status`, in bytes.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, PartialEq, Eq)]
pub struct Rss {
    /// Private anonymous memory (heap; with `--no-huge` also DPDK's memory).
    pub anon: u64,
    /// File-backed mappings.
    pub file: u64,
    /// Shared memory (tmpfs files such as a flow table in /dev/shm, the stats region).
    pub shmem: u64,
}

/// Resident memory of process `pid`.
pub fn rss(pid: u32) -> Result<Rss> {
    let p = format!("/proc/{pid}/status");
    let s = std::fs::read_to_string(&p).with_context(|| format!("reading {p}"))?;
    Ok(parse_rss(&s))
}

/// Parses the content of `/proc/PID/status` (see [`Rss`]).
pub fn parse_rss(s: &str) -> Rss {
    let kib = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    Rss { anon: kib("RssAnon:"), file: kib("RssFile:"), shmem: kib("RssShmem:") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steal_per_cpu() {
        let stat = "cpu  1 2 3 4 5 6 7 8 9 10\ncpu0 1 1 1 1 1 1 1 11 0 0\ncpu1 1 1 1 1 1 1 1 22 0 0\nintr 5\n";
        assert_eq!(parse_cpu_steal(stat), vec![11, 22]);
    }

    #[test]
    fn parses() {
        assert_eq!(parse_schedstat("123456789 42 7\n").unwrap(), 123456789);
        assert!(parse_schedstat("").is_err());
        assert_eq!(parse_loadavg("2.16 1.15 0.58 3/245 1234\n").unwrap(), [2.16, 1.15, 0.58]);
        let stat = "cpu  10 0 10 80 0 0 0 0 0 0\ncpu0 5 0 5 40 0 0 0 0 0 0\ncpu1 5 0 5 40 0 0 0 0 0 0\nintr 1\n";
        assert_eq!(parse_cpu_jiffies(stat), vec![(10, 50), (10, 50)]);
        let later = "cpu0 5 0 5 50 0 0 0 0 0 0\ncpu1 15 0 5 40 0 0 0 0 0 0\n";
        assert_eq!(cpu_busy_share(&parse_cpu_jiffies(stat), &parse_cpu_jiffies(later)), vec![0.0, 1.0]);
    }

    #[test]
    fn stat_ticks() {
        let line =
            "4242 (tokio (x) y) S 1 2 3 0 -1 4194560 100 0 0 0 17 5 0 0 20 0 3 0 99 1000 10 18446744073709551615\n";
        assert_eq!(parse_stat_ticks(line).unwrap(), 22);
        assert!(parse_stat_ticks("1 (x) S 1 2").is_err());
        assert!(process_cpu_ns(std::process::id()).is_ok());
    }

    #[test]
    fn rss_fields() {
        let r = parse_rss("Name:\tx\nRssAnon:\t    1024 kB\nRssFile:\t  2 kB\nRssShmem:\t 3 kB\n");
        assert_eq!(r, Rss { anon: 1 << 20, file: 2048, shmem: 3072 });
        assert!(rss(std::process::id()).unwrap().anon > 0);
    }

    #[test]
    fn own_threads_are_listed() {
        let me = std::process::id();
        let t = threads(me).unwrap();
        assert!(t.iter().any(|(tid, _)| *tid == me));
        assert!(thread_cpu_ns(me, me).unwrap() > 0);
    }
}
