//! OVS-DPDK with two `dpdkvhostuserclient` ports, the anchor of `vrouter-bench --vhost`.
//!
//! Runs privately like `shared/bench/run_ovs_dpdk.py` (whose recipe it follows: a throw-away
//! work dir, unix sockets only, its own DPDK `--file-prefix`, one PMD on CPU 1 and the main
//! thread on CPU 0, `fail-mode=secure` and the OpenFlow rules installed before the ports,
//! stopped by PID), but its ports are vhost-user clients of the benchmark's VM sockets:
//!
//! ```text
//!   vm-guest sender  (server) <- vm1: dpdkvhostuserclient, ofport 1
//!   vm-guest sink    (server) <- vm2: dpdkvhostuserclient, ofport 2
//! ```
//!
//! Pipelines (the same as the script's): `l3` = `ip,in_port=1,nw_dst=10.128.0.0/9 ->
//! output:2` (EMC/SMC/dpcls path, stateless); `ct` = table 0 `ip,ct_state=-trk,in_port=1 ->
//! ct(zone=1,table=1)`, table 1 `+trk+new -> ct(commit,zone=1),output:2`, `+trk+est ->
//! output:2` (conntrack lookup and one recirculation per packet).
//!
//! With hugepages, OVS gets `dpdk-socket-mem`; without, `--no-huge --legacy-mem -m` (OVS
//! 3.x adds `--in-memory`, which EAL 22.11 refuses with `--no-huge` unless legacy memory is
//! asked for).

use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The Debian `openvswitch-switch-dpdk` daemon.
pub const VSWITCHD: &str = "/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk";
const SCHEMA: &str = "/usr/share/openvswitch/vswitch.ovsschema";

/// Which OpenFlow pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pipeline {
    /// Stateless L3 match.
    L3,
    /// Conntrack firewall.
    Ct,
}

impl Pipeline {
    /// The OpenFlow rules from port 1 to port 2.
    pub fn flows(self) -> Vec<&'static str> {
        let mut f = vec!["priority=0,actions=drop"];
        match self {
            Pipeline::L3 => f.push("ip,in_port=1,nw_dst=10.128.0.0/9,actions=output:2"),
            Pipeline::Ct => f.extend([
                "table=0,priority=100,ip,ct_state=-trk,in_port=1,actions=ct(zone=1,table=1)",
                "table=1,priority=100,ip,ct_state=+trk+new,actions=ct(commit,zone=1),output:2",
                "table=1,priority=100,ip,ct_state=+trk+est,actions=output:2",
                "table=1,priority=0,actions=drop",
            ]),
        }
        f
    }

    /// `l3` or `ct`.
    pub fn name(self) -> &'static str {
        match self {
            Pipeline::L3 => "l3",
            Pipeline::Ct => "ct",
        }
    }
}

/// Installs `openvswitch-switch-dpdk` with apt when the daemon is missing (as the shared
/// script does on first use).
pub fn ensure_installed() -> Result<()> {
    if Path::new(VSWITCHD).exists() && which("ovs-vsctl") {
        return Ok(());
    }
    eprintln!("vrouter-bench: installing openvswitch-switch-dpdk (apt-get)");
    let _ = Command::new("apt-get").args(["update", "-qq"]).status();
    let st = Command::new("apt-get")
        .args(["install", "-y", "-qq", "openvswitch-switch-dpdk"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("running apt-get")?;
    if !st.success() || !Path::new(VSWITCHD).exists() {
        bail!("installing openvswitch-switch-dpdk failed ({st})");
    }
    Ok(())
}

fn which(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// How to run OVS.
#[derive(Debug, Clone)]
pub struct OvsSpec {
    /// Work directory (created; removed on drop unless `keep`).
    pub work: PathBuf,
    /// The pipeline.
    pub pipeline: Pipeline,
    /// The sender's socket (OVS port `vm1`, ofport 1).
    pub vm1_socket: PathBuf,
    /// The sink's socket (OVS port `vm2`, ofport 2).
    pub vm2_socket: PathBuf,
    /// Hugepages or `--no-huge`.
    pub huge: bool,
    /// DPDK memory, MiB.
    pub memory_mb: u32,
    /// DPDK `--file-prefix`.
    pub file_prefix: String,
}

impl OvsSpec {
    /// `other_config:dpdk-extra`.
    pub fn dpdk_extra(&self) -> String {
        if self.huge {
            format!("--no-pci --file-prefix={}", self.file_prefix)
        } else {
            format!("--no-huge --legacy-mem -m {} --no-pci --file-prefix={}", self.memory_mb, self.file_prefix)
        }
    }

    /// The `other_config` settings (ovs-vsctl set Open_vSwitch . ...).
    pub fn other_config(&self) -> Vec<String> {
        let mut c = vec![
            "other_config:dpdk-init=true".to_string(),
            format!("other_config:dpdk-extra=\"{}\"", self.dpdk_extra()),
            "other_config:pmd-cpu-mask=0x2".into(),
            "other_config:dpdk-lcore-mask=0x1".into(),
        ];
        if self.huge {
            c.push(format!("other_config:dpdk-socket-mem={}", self.memory_mb));
        }
        c
    }
}

/// A running OVS (ovsdb-server + ovs-vswitchd-dpdk); stopped by PID when dropped.
pub struct Ovs {
    spec: OvsSpec,
    db: String,
    pids: Vec<u32>,
    /// ovs-vswitchd's pid.
    pub vswitchd: u32,
    ctl: PathBuf,
    /// The commands that set it up, for the report.
    pub commands: Vec<String>,
}

impl Ovs {
    fn p(&self, rel: &str) -> PathBuf {
        self.spec.work.join(rel)
    }

    fn run(&mut self, argv: &[String], timeout_s: u64) -> Result<String> {
        self.commands.push(crate::shell_line(argv));
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .env("OVS_RUNDIR", self.p("run"))
            .env("OVS_LOGDIR", self.p("log"))
            .env("OVS_DBDIR", self.p("db"))
            .env("OVS_SYSCONFDIR", self.p("etc"))
            .stdin(Stdio::null());
        let out = run_with_timeout(cmd, Duration::from_secs(timeout_s))
            .with_context(|| format!("running {}", crate::shell_line(argv)))?;
        if !out.status.success() {
            bail!(
                "{} failed ({}): {} {}",
                crate::shell_line(argv),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn vsctl(&mut self, args: &[&str]) -> Result<String> {
        let mut a = vec!["ovs-vsctl".to_string(), format!("--db={}", self.db), "--timeout=120".into()];
        a.extend(args.iter().map(|s| s.to_string()));
        self.run(&a, 180)
    }

    /// `ovs-appctl -t <control socket> ARGS`.
    pub fn appctl(&self, args: &[&str]) -> Result<String> {
        let mut cmd = Command::new("ovs-appctl");
        cmd.arg("-t").arg(&self.ctl).args(args).stdin(Stdio::null());
        let out = run_with_timeout(cmd, Duration::from_secs(30))?;
        if !out.status.success() {
            bail!("ovs-appctl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Starts ovsdb-server and ovs-vswitchd, installs the rules, adds the two ports (the
    /// guest must be listening on both sockets).
    pub fn start(spec: &OvsSpec) -> Result<Ovs> {
        let _ = std::fs::remove_dir_all(&spec.work);
        for d in ["run", "log", "db", "etc"] {
            std::fs::create_dir_all(spec.work.join(d))?;
        }
        let db = format!("unix:{}", spec.work.join("run/db.sock").display());
        let mut o = Ovs { spec: spec.clone(), db, pids: vec![], vswitchd: 0, ctl: PathBuf::new(), commands: vec![] };
        let conf = o.p("db/conf.db").display().to_string();
        o.run(&["ovsdb-tool".into(), "create".into(), conf.clone(), SCHEMA.into()], 30)?;
        o.run(
            &[
                "ovsdb-server".into(),
                conf,
                format!("--remote=punix:{}", o.p("run/db.sock").display()),
                format!("--pidfile={}", o.p("run/ovsdb-server.pid").display()),
                "--detach".into(),
                format!("--log-file={}", o.p("log/ovsdb-server.log").display()),
            ],
            30,
        )?;
        let dbpid = read_pid(&o.p("run/ovsdb-server.pid"))?;
        o.pids.push(dbpid);
        o.vsctl(&["--no-wait", "init"])?;
        let mut set = vec!["--no-wait".to_string(), "set".into(), "Open_vSwitch".into(), ".".into()];
        set.extend(spec.other_config());
        let set_ref: Vec<&str> = set.iter().map(String::as_str).collect();
        o.vsctl(&set_ref)?;
        o.run(
            &[
                VSWITCHD.into(),
                o.db.clone(),
                format!("--pidfile={}", o.p("run/ovs-vswitchd.pid").display()),
                "--detach".into(),
                format!("--log-file={}", o.p("log/ovs-vswitchd.log").display()),
            ],
            300,
        )?;
        o.vswitchd = read_pid(&o.p("run/ovs-vswitchd.pid"))?;
        o.pids.insert(0, o.vswitchd);
        o.ctl = o.p(&format!(
            "run/{}.{}.ctl",
            Path::new(VSWITCHD).file_name().unwrap_or_default().to_string_lossy(),
            o.vswitchd
        ));
        o.vsctl(&["add-br", "br0", "--", "set", "bridge", "br0", "datapath_type=netdev", "fail-mode=secure"])?;
        let flows = o.p("flows.txt");
        std::fs::write(&flows, spec.pipeline.flows().join("\n") + "\n")?;
        let flows = flows.display().to_string();
        o.run(&["ovs-ofctl".into(), "del-flows".into(), "br0".into()], 30)?;
        o.run(&["ovs-ofctl".into(), "add-flows".into(), "br0".into(), flows], 30)?;
        for (name, sock, ofport) in [("vm1", &spec.vm1_socket, 1), ("vm2", &spec.vm2_socket, 2)] {
            let path = format!("options:vhost-server-path={}", sock.display());
            let ofp = format!("ofport_request={ofport}");
            o.vsctl(&[
                "add-port",
                "br0",
                name,
                "--",
                "set",
                "Interface",
                name,
                "type=dpdkvhostuserclient",
                &path,
                &ofp,
            ])?;
        }
        Ok(o)
    }

    /// Where ovs-vswitchd logs.
    pub fn log_path(&self) -> PathBuf {
        self.p("log/ovs-vswitchd.log")
    }

    /// On-CPU ns of the PMD threads (summed; one PMD here).
    pub fn pmd_cpu_ns(&self) -> Result<u64> {
        let t: Vec<u32> = crate::procfs::threads(self.vswitchd)?
            .into_iter()
            .filter(|(_, c)| c.starts_with("pmd"))
            .map(|(t, _)| t)
            .collect();
        if t.is_empty() {
            bail!("no pmd thread in ovs-vswitchd {}", self.vswitchd);
        }
        t.iter().map(|&tid| crate::procfs::thread_cpu_ns(self.vswitchd, tid)).sum()
    }

    /// Whether ovs-vswitchd still runs.
    pub fn alive(&self) -> bool {
        Path::new(&format!("/proc/{}", self.vswitchd)).exists()
    }

    /// Stops everything (SIGTERM, bounded wait, SIGKILL) and removes the work dir and the
    /// DPDK runtime directory.
    pub fn stop(&mut self) {
        for pid in std::mem::take(&mut self.pids) {
            // SAFETY: a pid read from the pidfile of a daemon we started.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
            let by = Instant::now() + Duration::from_secs(15);
            while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < by {
                std::thread::sleep(Duration::from_millis(50));
            }
            if Path::new(&format!("/proc/{pid}")).exists() {
                // SAFETY: as above.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            }
        }
        let _ = std::fs::remove_dir_all(Path::new("/var/run/dpdk").join(&self.spec.file_prefix));
    }
}

impl Drop for Ovs {
    fn drop(&mut self) {
        self.stop();
    }
}

fn read_pid(p: &Path) -> Result<u32> {
    let by = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(pid) = std::fs::read_to_string(p).ok().and_then(|s| s.trim().parse().ok()) {
            return Ok(pid);
        }
        if Instant::now() > by {
            bail!("no pid in {}", p.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Result<std::process::Output> {
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(r) => Ok(r?),
        Err(_) => {
            // SAFETY: our own child, still running.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            bail!("timed out after {timeout:?}")
        }
    }
}

/// The counters of the (single) PMD thread in `dpif-netdev/pmd-stats-show`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct PmdStats {
    /// `packets received`.
    pub rx: u64,
    /// `packet recirculations`.
    pub recirc: u64,
    /// `emc hits`.
    pub emc: u64,
    /// `smc hits`.
    pub smc: u64,
    /// `megaflow hits`.
    pub megaflow: u64,
    /// `simple match hits`.
    pub simple: u64,
    /// `miss with success upcall`.
    pub upcall_ok: u64,
    /// `idle cycles` (TSC cycles of iterations that received nothing).
    pub idle_cycles: u64,
    /// `processing cycles` (TSC cycles of iterations that received packets).
    pub processing_cycles: u64,
}

impl PmdStats {
    /// Share of the PMD's cycles spent in iterations that received packets.
    pub fn processing_share(&self) -> f64 {
        let all = self.processing_cycles + self.idle_cycles;
        if all == 0 {
            0.0
        } else {
            self.processing_cycles as f64 / all as f64
        }
    }
}

/// Parses the first PMD thread's section of `pmd-stats-show`.
pub fn parse_pmd_stats(text: &str) -> Option<PmdStats> {
    let mut s = PmdStats::default();
    let mut in_pmd = false;
    let mut any = false;
    for line in text.lines() {
        if line.starts_with("pmd thread") {
            if in_pmd {
                break; // only the first PMD
            }
            in_pmd = true;
            continue;
        }
        if !line.starts_with(' ') && !line.starts_with('\t') {
            in_pmd = false;
            continue;
        }
        if !in_pmd {
            continue;
        }
        let Some((k, v)) = line.trim().split_once(':') else { continue };
        let Some(n) = v.split_whitespace().next().and_then(|x| x.parse::<f64>().ok()) else { continue };
        let n = n as u64;
        let slot = match k.trim() {
            "packets received" => &mut s.rx,
            "packet recirculations" => &mut s.recirc,
            "emc hits" => &mut s.emc,
            "smc hits" => &mut s.smc,
            "megaflow hits" => &mut s.megaflow,
            "simple match hits" => &mut s.simple,
            "miss with success upcall" => &mut s.upcall_ok,
            "idle cycles" => &mut s.idle_cycles,
            "processing cycles" => &mut s.processing_cycles,
            _ => continue,
        };
        *slot = n;
        any = true;
    }
    any.then_some(s)
}

/// RX and TX packets per port name from `dpctl/show -s`.
pub fn parse_dpctl_show(text: &str) -> Vec<(String, u64, u64)> {
    let mut out: Vec<(String, u64, u64)> = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("port ") {
            if let Some((_, name)) = rest.split_once(": ") {
                let name = name.split_whitespace().next().unwrap_or("").to_string();
                out.push((name, 0, 0));
            }
            continue;
        }
        let Some(cur) = out.last_mut() else { continue };
        for (prefix, rx) in [("RX packets:", true), ("TX packets:", false)] {
            if let Some(v) = t.strip_prefix(prefix) {
                let n = v.split_whitespace().next().and_then(|x| x.parse().ok()).unwrap_or(0);
                if rx {
                    cur.1 = n;
                } else {
                    cur.2 = n;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PMD: &str = "pmd thread numa_id 0 core_id 1:
  packets received: 32000000
  packet recirculations: 32000000
  avg. datapath passes per packet: 2.00
  phwol hits: 0
  mfex opt hits: 0
  simple match hits: 0
  emc hits: 63000000
  smc hits: 0
  megaflow hits: 1000000
  avg. subtable lookups per megaflow hit: 1.00
  miss with success upcall: 2000
  miss with failed upcall: 0
  avg. packets per output batch: 31.50
  idle cycles: 2500000000 (20.00%)
  processing cycles: 10000000000 (80.00%)
  avg cycles per packet: 390.63 (12500000000/32000000)
  avg processing cycles per packet: 312.50 (10000000000/32000000)
main thread:
  packets received: 7
  idle cycles: 1 (100.00%)
";

    #[test]
    fn pmd_stats_of_the_pmd_section() {
        let s = parse_pmd_stats(PMD).unwrap();
        assert_eq!(s.rx, 32_000_000);
        assert_eq!(s.recirc, 32_000_000);
        assert_eq!((s.emc, s.megaflow, s.upcall_ok), (63_000_000, 1_000_000, 2000));
        assert_eq!((s.idle_cycles, s.processing_cycles), (2_500_000_000, 10_000_000_000));
        assert!((s.processing_share() - 0.8).abs() < 1e-12);
        assert!(parse_pmd_stats("main thread:\n  packets received: 7\n").is_none());
    }

    #[test]
    fn dpctl_ports() {
        let t = "netdev@ovs-netdev:
  lookups: hit:0 missed:0 lost:0
  flows: 1
  port 0: ovs-netdev (tap)
    RX packets:0 errors:0 dropped:0 overruns:0 frame:0
    TX packets:0 errors:0 dropped:0 aborted:0 carrier:0
  port 1: vm1 (dpdkvhostuserclient: configured_rx_queues=1)
    RX packets:12345 errors:0 dropped:0 overruns:0 frame:0
    TX packets:0 errors:0 dropped:0 aborted:0 carrier:0
  port 2: vm2 (dpdkvhostuserclient: configured_rx_queues=1)
    RX packets:0 errors:0 dropped:0 overruns:0 frame:0
    TX packets:12000 errors:0 dropped:345 aborted:0 carrier:0
";
        let p = parse_dpctl_show(t);
        assert_eq!(p[1], ("vm1".to_string(), 12345, 0));
        assert_eq!(p[2], ("vm2".to_string(), 0, 12000));
    }

    #[test]
    fn configs() {
        let s = OvsSpec {
            work: "/tmp/w".into(),
            pipeline: Pipeline::Ct,
            vm1_socket: "/s/1".into(),
            vm2_socket: "/s/2".into(),
            huge: false,
            memory_mb: 1024,
            file_prefix: "ovsv1".into(),
        };
        assert_eq!(s.dpdk_extra(), "--no-huge --legacy-mem -m 1024 --no-pci --file-prefix=ovsv1");
        assert!(!s.other_config().iter().any(|c| c.contains("socket-mem")));
        let h = OvsSpec { huge: true, ..s };
        assert!(!h.dpdk_extra().contains("no-huge"));
        assert!(h.other_config().contains(&"other_config:dpdk-socket-mem=1024".to_string()));
        assert!(Pipeline::Ct.flows().iter().any(|f| f.contains("ct(commit,zone=1),output:2")));
        assert!(Pipeline::L3.flows()[1].contains("nw_dst=10.128.0.0/9"));
    }
}
