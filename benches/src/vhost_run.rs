//! Running the vRouter of the vhost-user benchmarks (`--vhost`, `--restart`): its run
//! directory, the process with its output lines time-stamped as they come, and the waits
//! between start and traffic (stats region, links up, every flow set up).

use crate::interrupted;
use anyhow::{bail, Context, Result};
use flow_table::FlowTableReader;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vrouter::stats::{StatsReader, VIF_LINK_UP};

/// `CLOCK_MONOTONIC` now, ns: the clock `vm-guest` reports its events in.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out-pointer for the call's duration.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A vRouter run directory, removed with the flow table it points to (on hugetlbfs) when
/// dropped.
pub struct RunDir(pub PathBuf);

impl Drop for RunDir {
    fn drop(&mut self) {
        crate::memory::remove_table_outside(&self.0);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One line of the vRouter's output and when it arrived (`CLOCK_MONOTONIC` ns).
#[derive(Debug, Clone)]
pub struct Line {
    /// When the harness read it.
    pub at_ns: u64,
    /// The line.
    pub text: String,
}

/// A vRouter process whose stdout and stderr are read line by line, each line time-stamped
/// on arrival (the vRouter's `println!` is line-buffered) and written to the log with its
/// time since the start. Stopped with SIGINT (then SIGKILL) when dropped, and its DPDK
/// runtime directories removed.
pub struct VrProc {
    child: Option<Child>,
    /// The DPDK `--file-prefix`es to remove after it has exited.
    prefixes: Vec<String>,
    lines: Arc<Mutex<Vec<Line>>>,
    log_path: PathBuf,
    /// When it was started (`CLOCK_MONOTONIC` ns).
    pub started_ns: u64,
}

impl VrProc {
    /// Starts `binary` with `args`, its output to `log_path`; `prefix` is its DPDK file
    /// prefix (removed after it has exited).
    pub fn spawn(binary: &Path, args: &[String], log_path: &Path, prefix: Option<&str>) -> Result<VrProc> {
        let log = std::fs::File::create(log_path).with_context(|| format!("creating {}", log_path.display()))?;
        let log = Arc::new(Mutex::new(log));
        let started_ns = mono_ns();
        let mut child = Command::new(binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out: Box<dyn Read + Send> = Box::new(child.stdout.take().context("piped stdout")?);
        let err: Box<dyn Read + Send> = Box::new(child.stderr.take().context("piped stderr")?);
        for stream in [out, err] {
            let (lines, log) = (lines.clone(), log.clone());
            std::thread::spawn(move || {
                for text in BufReader::new(stream).lines() {
                    let Ok(text) = text else { break };
                    let at_ns = mono_ns();
                    {
                        let mut f = log.lock().unwrap_or_else(|e| e.into_inner());
                        let _ = writeln!(f, "[{:>10.3}] {text}", at_ns.saturating_sub(started_ns) as f64 / 1e9);
                    }
                    lines.lock().unwrap_or_else(|e| e.into_inner()).push(Line { at_ns, text });
                }
            });
        }
        Ok(VrProc {
            child: Some(child),
            prefixes: prefix.map(str::to_string).into_iter().collect(),
            lines,
            log_path: log_path.to_path_buf(),
            started_ns,
        })
    }

    /// Its process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Also removes the runtime directory of DPDK prefix `p` after it has exited.
    pub fn add_prefix(&mut self, p: String) {
        self.prefixes.push(p);
    }

    /// Leaves its DPDK runtime directories in place (a successor uses them).
    pub fn keep_prefixes(&mut self) {
        self.prefixes.clear();
    }

    /// Its output lines so far.
    pub fn lines(&self) -> Vec<Line> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The first output line containing `needle`.
    pub fn line_with(&self, needle: &str) -> Option<Line> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).iter().find(|l| l.text.contains(needle)).cloned()
    }

    /// Where its output goes.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Its exit status if it has exited (reaped now).
    pub fn try_exited(&mut self) -> Result<Option<std::process::ExitStatus>> {
        match self.child.as_mut() {
            Some(c) => Ok(c.try_wait()?),
            None => bail!("the vRouter was already stopped"),
        }
    }

    /// An error with the log's tail if it has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(c) = self.child.as_mut() {
            if let Some(st) = c.try_wait()? {
                self.child = None;
                bail!("vrouter exited ({st}); log {}:\n{}", self.log_path.display(), log_tail(&self.log_path));
            }
        }
        Ok(())
    }

    /// SIGKILL, and waits until it is gone (its runtime files stay, as after a crash).
    pub fn kill(&mut self) -> Result<()> {
        let c = self.child.as_mut().context("the vRouter was already stopped")?;
        c.kill().context("SIGKILL to the vRouter")?;
        c.wait()?;
        Ok(())
    }

    /// Stops it: SIGINT, up to 60 s, then SIGKILL; `true` for a successful exit (also when
    /// it had exited successfully by itself).
    pub fn stop(&mut self) -> bool {
        let Some(mut c) = self.child.take() else { return false };
        let clean = match c.try_wait() {
            Ok(Some(st)) => st.success(),
            _ => {
                // SAFETY: our own child, not yet reaped.
                unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGINT) };
                let by = Instant::now() + Duration::from_secs(60);
                loop {
                    match c.try_wait() {
                        Ok(Some(st)) => break st.success(),
                        Ok(None) if Instant::now() < by => std::thread::sleep(Duration::from_millis(50)),
                        _ => {
                            let _ = c.kill();
                            let _ = c.wait();
                            break false;
                        }
                    }
                }
            }
        };
        for p in self.prefixes.drain(..) {
            let _ = std::fs::remove_dir_all(Path::new("/var/run/dpdk").join(p));
        }
        clean
    }
}

impl Drop for VrProc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Calls `f` every 20 ms until it returns a value, errors, `timeout` passes or Ctrl-C.
pub fn wait_until<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    let by = Instant::now() + timeout;
    loop {
        if let Some(v) = f()? {
            return Ok(v);
        }
        if Instant::now() > by {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        if interrupted() {
            bail!("interrupted");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The last 20 lines of a log.
pub fn log_tail(p: &Path) -> String {
    let s = std::fs::read_to_string(p).unwrap_or_default();
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(20)..].join("\n")
}

/// Waits for the vRouter's stats region in `run_dir` (`alive` errors when it has exited).
pub fn wait_stats(run_dir: &Path, timeout: Duration, mut alive: impl FnMut() -> Result<()>) -> Result<StatsReader> {
    wait_until(timeout, "the vRouter's stats region", || {
        alive()?;
        Ok(StatsReader::open(run_dir).ok())
    })
}

/// Waits until the vRouter has the links of `vifs` up.
pub fn wait_links_up(
    reader: &StatsReader,
    vifs: &[u16],
    timeout: Duration,
    mut alive: impl FnMut() -> Result<()>,
) -> Result<()> {
    wait_until(timeout, &format!("the links of vifs {vifs:?} up in the vRouter"), || {
        alive()?;
        Ok(vifs.iter().all(|&v| reader.vif(v).is_some_and(|i| i.link == VIF_LINK_UP)).then_some(()))
    })
}

/// Waits until every flow is set up: the flow table of `run_dir` has created at least
/// `created` flows and holds at least `entries` published entries, none in HOLD, unchanged
/// for 1 s; returns when that started.
pub fn wait_flows_set_up(
    run_dir: &Path,
    created: u64,
    entries: u64,
    timeout: Duration,
    mut alive: impl FnMut() -> Result<()>,
) -> Result<Instant> {
    let table = wait_until(timeout, "the flow table", || Ok(FlowTableReader::open_run_dir(run_dir).ok()))?;
    let mut stable: Option<(Instant, u64)> = None;
    wait_until(timeout, "every flow set up", || {
        alive()?;
        let s = table.stats();
        if s.created >= created && s.used_entries >= entries && s.hold_count == 0 {
            match stable {
                Some((t, c)) if c == s.created && t.elapsed() >= Duration::from_secs(1) => return Ok(Some(t)),
                Some((_, c)) if c == s.created => {}
                _ => stable = Some((Instant::now(), s.created)),
            }
        } else {
            stable = None;
        }
        Ok(None)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_stamped_and_logged() {
        let dir = std::env::temp_dir().join(format!("bench-vrproc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("out.log");
        let t0 = mono_ns();
        let args = ["-c".to_string(), "echo one; echo two >&2; sleep 0.2; echo three".to_string()];
        let mut p = VrProc::spawn(Path::new("/bin/sh"), &args, &log, None).unwrap();
        let st = wait_until(Duration::from_secs(10), "exit", || p.try_exited()).unwrap();
        assert!(st.success());
        wait_until(Duration::from_secs(5), "three lines", || Ok((p.lines().len() == 3).then_some(()))).unwrap();
        let one = p.line_with("one").unwrap();
        let three = p.line_with("three").unwrap();
        assert!(one.at_ns >= t0 && three.at_ns >= one.at_ns + 150_000_000, "{one:?} {three:?}");
        assert!(p.line_with("two").is_some(), "stderr too");
        assert!(p.stop(), "exited successfully by itself");
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.lines().any(|l| l.starts_with('[') && l.ends_with("] three")), "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
