//! Anchors measured in the same session with the shared scripts: `run_testpmd.py` (testpmd
//! io / 5tswap / rxonly on the same pcap source, core and memory layout) and optionally
//! `run_ovs_dpdk.py --variant l3`. Both append one CSV row per run to a file; the rows of
//! this invocation are the ones after the file's length before the call.

use crate::memory::Memory;
use crate::{interrupted, shell_line};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A CSV row by column name (the scripts write plain, unquoted CSV).
pub type Row = HashMap<String, String>;

/// Rows of a CSV text whose first line is the header. Lines with another column count (such
/// as a repeated header) are skipped.
pub fn parse_csv(header: &str, body: &str) -> Vec<Row> {
    let cols: Vec<&str> = header.trim().split(',').collect();
    body.lines()
        .filter(|l| !l.trim().is_empty() && l.trim() != header.trim())
        .filter_map(|l| {
            let f: Vec<&str> = l.trim().split(',').collect();
            (f.len() == cols.len()).then(|| cols.iter().zip(f).map(|(c, v)| (c.to_string(), v.to_string())).collect())
        })
        .collect()
}

fn num(r: &Row, k: &str) -> f64 {
    r.get(k).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN)
}

/// One testpmd run (a row of testpmd_results.csv).
#[derive(Debug, Clone, Serialize)]
pub struct TestpmdRow {
    /// The replayed capture.
    pub pcap: String,
    /// testpmd forwarding mode (`io`, `5tswap`, `rxonly`).
    pub mode: String,
    /// Repetition number within the invocation (from 1).
    pub rep: u32,
    /// Packets received per wall-clock second of the window, millions.
    pub wall_mpps: f64,
    /// Packets received per on-CPU second of the forwarding thread, millions (the figure of merit).
    pub cpu_mpps: f64,
    /// On-CPU nanoseconds per packet.
    pub ns_per_pkt: f64,
    /// Share of the window the forwarding thread was on a CPU.
    pub fwd_cpu_share: f64,
    /// Packets transmitted over packets received.
    pub tx_over_rx: f64,
    /// 1-minute load average during the run.
    pub load1: f64,
    /// DPDK's memory in the run (`--huge` passed to the script or not).
    pub memory: Memory,
}

impl TestpmdRow {
    /// The testpmd run of a CSV row; `None` for another system's row or a row without `pcap`/`mode`.
    pub fn from_row(r: &Row) -> Option<TestpmdRow> {
        if r.get("system").map(String::as_str) != Some("testpmd") {
            return None;
        }
        Some(TestpmdRow {
            pcap: r.get("pcap")?.clone(),
            mode: r.get("mode")?.clone(),
            rep: r.get("rep").and_then(|v| v.parse().ok()).unwrap_or(1),
            wall_mpps: num(r, "wall_mpps"),
            cpu_mpps: num(r, "cpu_mpps"),
            ns_per_pkt: num(r, "ns_per_pkt"),
            fwd_cpu_share: num(r, "fwd_cpu_share"),
            tx_over_rx: num(r, "tx_over_rx"),
            load1: num(r, "load1"),
            memory: Memory::NoHuge,
        })
    }
}

/// One OVS-DPDK run (a row of ovs_results.csv).
#[derive(Debug, Clone, Serialize)]
pub struct OvsRow {
    /// The replayed capture (`memif<-FILE` when fed by the memif generator).
    pub pcap: String,
    /// OVS pipeline variant (`l3` stateless, `ct` conntrack).
    pub variant: String,
    /// Packets received per wall-clock second of the window, millions.
    pub wall_mpps: f64,
    /// Packets received per on-CPU second of the PMD thread, millions.
    pub cpu_mpps: f64,
    /// Packets per PMD processing cycle (the figure to use with the memif generator).
    pub proc_mpps: f64,
    /// On-CPU nanoseconds per packet.
    pub ns_per_pkt: f64,
    /// Share of the window the PMD thread was on a CPU.
    pub pmd_cpu_share: f64,
    /// Packets transmitted over packets received.
    pub tx_over_rx: f64,
    /// Share of packets that hit the exact-match cache.
    pub emc_hit: f64,
    /// Share of packets that hit the megaflow cache.
    pub megaflow_hit: f64,
    /// Datapath passes per packet (2 with the `ct` pipeline's recirculation).
    pub dp_passes: f64,
    /// Datapath flows and conntrack connections at the end of the run.
    pub dp_flows: f64,
    /// Conntrack connections at the end of the run.
    pub ct_conns: f64,
    /// 1-minute load average during the run.
    pub load1: f64,
    /// Fed by the testpmd->memif generator (`--memif-gen`) rather than a pcap port.
    pub memif: bool,
    /// DPDK's memory in the run (`--huge` passed to the script or not).
    pub memory: Memory,
}

impl OvsRow {
    /// The OVS-DPDK run of a CSV row; `None` for another system's row or a row without `pcap`.
    pub fn from_row(r: &Row) -> Option<OvsRow> {
        if r.get("system").map(String::as_str) != Some("ovs-dpdk") {
            return None;
        }
        let pcap = r.get("pcap")?.clone();
        Some(OvsRow {
            memif: pcap.starts_with("memif<-"),
            pcap,
            variant: r.get("variant")?.clone(),
            wall_mpps: num(r, "wall_mpps"),
            cpu_mpps: num(r, "cpu_mpps"),
            proc_mpps: num(r, "proc_mpps"),
            ns_per_pkt: num(r, "ns_per_pkt"),
            pmd_cpu_share: num(r, "pmd_cpu_share"),
            tx_over_rx: num(r, "tx_over_rx"),
            emc_hit: num(r, "emc_hit"),
            megaflow_hit: num(r, "megaflow_hit"),
            dp_passes: num(r, "dp_passes"),
            dp_flows: num(r, "dp_flows"),
            ct_conns: num(r, "ct_conns"),
            load1: num(r, "load1"),
            memory: Memory::NoHuge,
        })
    }

    /// The Mpps-per-core figure comparable with the others: `cpu_mpps` when pcap-fed,
    /// `proc_mpps` when memif-fed (the PMD idles whenever the generator is slower).
    pub fn mpps(&self) -> f64 {
        if self.memif {
            self.proc_mpps
        } else {
            self.cpu_mpps
        }
    }
}

/// Runs a script (in its own process group, so it can be stopped as a whole), inheriting
/// stdout/stderr, bounded by `limit`; then returns the CSV rows it appended to `csv`.
fn run_and_collect(argv: &[String], csv: &Path, limit: Duration) -> Result<Vec<Row>> {
    let before = std::fs::metadata(csv).map(|m| m.len()).unwrap_or(0);
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", shell_line(argv)))?;
    let pgid = child.id() as libc::pid_t;
    let deadline = Instant::now() + limit;
    let mut signalled: Option<Instant> = None;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        let now = Instant::now();
        match signalled {
            None if interrupted() || now > deadline => {
                eprintln!(
                    "vrouter-bench: stopping {} ({})",
                    argv[1],
                    if interrupted() { "interrupted" } else { "time limit" }
                );
                // SAFETY: signalling the process group we created for this child.
                unsafe { libc::kill(-pgid, libc::SIGINT) };
                signalled = Some(now);
            }
            Some(t) if now - t > Duration::from_secs(60) => {
                // SAFETY: as above.
                unsafe { libc::kill(-pgid, libc::SIGKILL) };
            }
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if interrupted() {
        bail!("interrupted");
    }
    if !status.success() {
        eprintln!("vrouter-bench: {} exited with {status}", argv[1]);
    }
    let text = std::fs::read(csv).unwrap_or_default();
    let header = String::from_utf8_lossy(&text).lines().next().unwrap_or("").to_string();
    let new = String::from_utf8_lossy(text.get(before as usize..).unwrap_or(&[])).to_string();
    Ok(parse_csv(&header, &new))
}

/// The memory a script's command line asks for: `--huge` or not.
fn argv_memory(argv: &[String]) -> Memory {
    if argv.iter().any(|a| a == "--huge") {
        Memory::Huge
    } else {
        Memory::NoHuge
    }
}

/// `python3 <shared>/bench/run_testpmd.py PCAPS --modes M --dur D --warm W --reps R --out CSV`,
/// and `--huge` for [`Memory::Huge`] (see [`crate::memory::anchor_memory`]).
#[allow(clippy::too_many_arguments)]
pub fn testpmd_command(
    shared: &Path,
    pcaps: &[PathBuf],
    modes: &str,
    dur: f64,
    warm: f64,
    reps: u32,
    csv: &Path,
    memory: Memory,
) -> Vec<String> {
    let mut v = vec!["python3".to_string(), shared.join("bench/run_testpmd.py").display().to_string()];
    v.extend(pcaps.iter().map(|p| p.display().to_string()));
    v.extend([
        "--modes".into(),
        modes.into(),
        "--dur".into(),
        dur.to_string(),
        "--warm".into(),
        warm.to_string(),
        "--reps".into(),
        reps.to_string(),
        "--out".into(),
        csv.display().to_string(),
    ]);
    if memory == Memory::Huge {
        v.push("--huge".into());
    }
    v
}

/// Runs `run_testpmd.py` (`argv` from [`testpmd_command`]) and returns the rows it appended to
/// `csv`; `runs` runs of `warm` + `dur` seconds bound the time it may take.
pub fn run_testpmd(argv: &[String], csv: &Path, runs: usize, dur: f64, warm: f64) -> Result<Vec<TestpmdRow>> {
    // Each run: EAL start and pcap preload (the script allows 180 s), warm-up, window, stop.
    let limit = Duration::from_secs_f64(runs as f64 * (dur + warm + 240.0));
    let memory = argv_memory(argv);
    Ok(run_and_collect(argv, csv, limit)?
        .iter()
        .filter_map(TestpmdRow::from_row)
        .map(|r| TestpmdRow { memory, ..r })
        .collect())
}

/// `python3 <shared>/bench/run_ovs_dpdk.py (--pcap F | --memif-gen F) --variant V ...`
/// (`l3` for the stateless comparison, `ct` for the conntrack pipeline), and `--huge` for
/// [`Memory::Huge`].
#[allow(clippy::too_many_arguments)]
pub fn ovs_command(
    shared: &Path,
    pcap: &Path,
    memif: bool,
    variant: &str,
    dur: f64,
    warm: f64,
    csv: &Path,
    memory: Memory,
) -> Vec<String> {
    let mut v = vec![
        "python3".to_string(),
        shared.join("bench/run_ovs_dpdk.py").display().to_string(),
        if memif { "--memif-gen" } else { "--pcap" }.to_string(),
        pcap.display().to_string(),
        "--variant".into(),
        variant.into(),
        "--dur".into(),
        dur.to_string(),
        "--warm".into(),
        warm.to_string(),
        "--out".into(),
        csv.display().to_string(),
    ];
    if memory == Memory::Huge {
        v.push("--huge".into());
    }
    v
}

/// Runs `run_ovs_dpdk.py` (`argv` from [`ovs_command`]) and returns the rows it appended to
/// `csv`, within a time limit from `dur` and `warm`.
pub fn run_ovs(argv: &[String], csv: &Path, dur: f64, warm: f64) -> Result<Vec<OvsRow>> {
    // OVS start (and possibly apt-get install on first use) + a 300 s wait for packets.
    let limit = Duration::from_secs_f64(dur + warm + 900.0);
    let memory = argv_memory(argv);
    Ok(run_and_collect(argv, csv, limit)?.iter().filter_map(OvsRow::from_row).map(|r| OvsRow { memory, ..r }).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP_HDR: &str =
        "system,pcap,mode,rep,wall_mpps,cpu_mpps,ns_per_pkt,fwd_cpu_share,main_cpu_share,tx_over_rx,load1";

    #[test]
    fn parses_testpmd_rows() {
        let body = "testpmd,udp_1000.pcap,io,1,19.012,20.100,49.8,0.95,0.01,1.000,1.52\n\
                    testpmd,udp_1000.pcap,rxonly,1,18.000,18.500,54.1,0.97,0.01,0.000,1.40\n\
                    garbage line\n";
        let rows: Vec<TestpmdRow> = parse_csv(TP_HDR, body).iter().filter_map(TestpmdRow::from_row).collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].mode, "io");
        assert_eq!(rows[0].cpu_mpps, 20.1);
        assert_eq!(rows[1].ns_per_pkt, 54.1);
        assert_eq!(rows[1].load1, 1.40);
    }

    #[test]
    fn parses_ovs_rows() {
        let hdr = "system,pcap,variant,wall_mpps,cpu_mpps,proc_mpps,ns_per_pkt,pmd_cpu_share,tx_over_rx,simple_hit,emc_hit,smc_hit,megaflow_hit,dp_passes,proc_cycles_per_pkt,dp_flows,ct_conns,load1";
        let body = "ovs-dpdk,udp_65536.pcap,l3,7.1,7.7,8.0,129.9,0.92,1.000,0.00,0.12,0.00,0.88,1.00,300,1,0,1.9\n\
                    ovs-dpdk,memif<-udp_1048576.pcap,l3,6.0,8.1,9.7,123.0,0.74,1.000,0.00,0.10,0.00,0.90,1.00,268,1,0,2.1\n";
        let rows: Vec<OvsRow> = parse_csv(hdr, body).iter().filter_map(OvsRow::from_row).collect();
        assert_eq!(rows.len(), 2);
        assert!(!rows[0].memif);
        assert_eq!(rows[0].mpps(), 7.7);
        assert!(rows[1].memif);
        assert_eq!(rows[1].mpps(), 9.7);
    }

    #[test]
    fn commands() {
        let c = testpmd_command(
            Path::new("/s"),
            &["/o/p/udp_1.pcap".into()],
            "io,5tswap,rxonly",
            5.0,
            2.0,
            1,
            Path::new("/o/t.csv"),
            Memory::NoHuge,
        );
        assert_eq!(
            shell_line(&c),
            "python3 /s/bench/run_testpmd.py /o/p/udp_1.pcap --modes io,5tswap,rxonly --dur 5 --warm 2 --reps 1 --out /o/t.csv"
        );
        let o = ovs_command(
            Path::new("/s"),
            Path::new("/p.pcap"),
            true,
            "l3",
            10.0,
            3.0,
            Path::new("/o.csv"),
            Memory::NoHuge,
        );
        assert_eq!(
            shell_line(&o),
            "python3 /s/bench/run_ovs_dpdk.py --memif-gen /p.pcap --variant l3 --dur 10 --warm 3 --out /o.csv"
        );
        let o = ovs_command(
            Path::new("/s"),
            Path::new("/p.pcap"),
            false,
            "ct",
            5.0,
            2.0,
            Path::new("/o.csv"),
            Memory::Huge,
        );
        assert!(shell_line(&o).ends_with("--out /o.csv --huge"));
        assert_eq!(argv_memory(&o), Memory::Huge);
        let t =
            testpmd_command(Path::new("/s"), &["/p.pcap".into()], "io", 5.0, 2.0, 1, Path::new("/t.csv"), Memory::Huge);
        assert_eq!(t.last().map(String::as_str), Some("--huge"));
        assert_eq!(argv_memory(&c), Memory::NoHuge);
    }
}
