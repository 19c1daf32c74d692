//! `vif`: the vRouter's interfaces and their counters, read live from the stats region;
//! `--add` / `--delete` change them through the running vRouter's control socket.
//!
//! `vif --list`, `vif --get N [--get-drop-stats]`, optionally `--core N` (one forwarding
//! lcore's counters) and `--json`; with `--rate [--interval S]`, each counter per second
//! over an interval (two reads of the region, S seconds apart, default 1). `vif --add NAME --id N --type T --device D --mac M --vrf V
//! [--ip, --ip6, --mtu, --rx-queues, --vn-name, --devargs]` sends a `[[vif]]` table
//! (`--devargs` hot-plugs the DPDK vdev `--device`; `--vhost-socket` adds a vhost-user VM
//! port, `--vhost-mode`, `--vhost-queues`); `vif --delete N`. Output follows
//! tf-vrouter's `vif` tool.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser};
use tools::control::Client;
use tools::program::{only_with, render_change, to_json};
use tools::rate::{render_vif_rates, render_vif_rates_json, vif_rates};
use tools::vifprog::{add_request, delete_request, VifAddArgs, VIF_TYPES};
use tools::{
    emit, eprint_line, fail, load, render_drop_stats, render_drop_stats_json, render_vif_table, render_vifs_json,
    warn_liveness, CommonArgs, Failure, Snapshot,
};

#[derive(Parser, Debug)]
#[command(name = "vif", version, about = "Show and change the vRouter interfaces (vifs) and their counters")]
struct Cli {
    #[command(flatten)]
    mode: Mode,
    /// Show the counters of forwarding lcore N only.
    #[arg(long, value_name = "N")]
    core: Option<usize>,
    /// With --get: print the vif's drop counters (dropstats format).
    #[arg(long, conflicts_with = "list")]
    get_drop_stats: bool,
    /// With --list or --get: packets, bytes, errors and drops per second, from two reads of
    /// the counters --interval apart.
    #[arg(long, conflicts_with = "get_drop_stats")]
    rate: bool,
    /// Seconds between the two reads of --rate.
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0, requires = "rate")]
    interval: f64,
    #[command(flatten)]
    add: AddArgs,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
struct Mode {
    /// List every vif.
    #[arg(short, long)]
    list: bool,
    /// Show vif ID.
    #[arg(short, long, value_name = "ID")]
    get: Option<u16>,
    /// Add (or replace) the vif named NAME: --id, --type, --device, --mac, --vrf.
    #[arg(long, value_name = "NAME")]
    add: Option<String>,
    /// Delete vif ID.
    #[arg(long, value_name = "ID")]
    delete: Option<u16>,
}

/// The options of `--add`.
#[derive(Args, Debug)]
struct AddArgs {
    /// vif id (--add).
    #[arg(long, value_name = "ID")]
    id: Option<u16>,
    /// vif type: fabric, virtual or host (--add).
    #[arg(long = "type", value_name = "TYPE", value_parser = VIF_TYPES)]
    kind: Option<String>,
    /// DPDK device name, e.g. net_tap5 or a PCI address (--add).
    #[arg(long, value_name = "DEV")]
    device: Option<String>,
    /// The vif's MAC (--add).
    #[arg(long, value_name = "MAC")]
    mac: Option<String>,
    /// The vif's IPv4 address (--add).
    #[arg(long, value_name = "IP")]
    ip: Option<String>,
    /// The vif's IPv6 address (--add).
    #[arg(long, value_name = "IP6")]
    ip6: Option<String>,
    /// VRF id (--add).
    #[arg(long, value_name = "VRF")]
    vrf: Option<u32>,
    /// MTU (--add).
    #[arg(long, value_name = "BYTES")]
    mtu: Option<u16>,
    /// RX queues (--add).
    #[arg(long, value_name = "N")]
    rx_queues: Option<u16>,
    /// Virtual network name (--add).
    #[arg(long, value_name = "VN")]
    vn_name: Option<String>,
    /// Arguments of the DPDK vdev --device, to hot-plug it (--add), e.g. iface=tap5.
    #[arg(long, value_name = "ARGS")]
    devargs: Option<String>,
    /// A vhost-user VM port on this UNIX socket (--add; --device may then be left out).
    #[arg(long, value_name = "PATH")]
    vhost_socket: Option<String>,
    /// vhost-user mode (--add): client (connect to the VM's socket; default) or server.
    #[arg(long, value_name = "MODE", value_parser = ["client", "server"])]
    vhost_mode: Option<String>,
    /// vhost-user queue pairs (--add), 1..=16.
    #[arg(long, value_name = "N")]
    vhost_queues: Option<u16>,
}

impl AddArgs {
    fn given(&self) -> [(&'static str, bool); 14] {
        [
            ("--id", self.id.is_some()),
            ("--type", self.kind.is_some()),
            ("--device", self.device.is_some()),
            ("--mac", self.mac.is_some()),
            ("--ip", self.ip.is_some()),
            ("--ip6", self.ip6.is_some()),
            ("--vrf", self.vrf.is_some()),
            ("--mtu", self.mtu.is_some()),
            ("--rx-queues", self.rx_queues.is_some()),
            ("--vn-name", self.vn_name.is_some()),
            ("--devargs", self.devargs.is_some()),
            ("--vhost-socket", self.vhost_socket.is_some()),
            ("--vhost-mode", self.vhost_mode.is_some()),
            ("--vhost-queues", self.vhost_queues.is_some()),
        ]
    }
}

fn render(cli: &Cli, snap: &Snapshot) -> Result<String, Failure> {
    let json = cli.common.json;
    let pretty = cli.common.pretty;
    let Some(id) = cli.mode.get else {
        return Ok(if json { render_vifs_json(&snap.vifs, pretty) } else { render_vif_table(&snap.vifs, cli.core) });
    };
    let row = snap.vif(id)?;
    Ok(match (cli.get_drop_stats, json) {
        (true, true) => render_drop_stats_json(&row.drops, pretty),
        (true, false) => render_drop_stats(&row.drops, cli.core),
        (false, true) => render_vifs_json(std::slice::from_ref(row), pretty),
        (false, false) => render_vif_table(std::slice::from_ref(row), cli.core),
    })
}

/// `--add` / `--delete`: one change request.
fn change(cli: &Cli) -> Result<String, Failure> {
    let a = &cli.add;
    let (req, what, done) = if let Some(name) = &cli.mode.add {
        let args = VifAddArgs {
            name: name.clone(),
            id: a.id,
            kind: a.kind.clone(),
            device: a.device.clone(),
            mac: a.mac.clone(),
            ip: a.ip.clone(),
            ip6: a.ip6.clone(),
            vrf: a.vrf,
            mtu: a.mtu,
            rx_queues: a.rx_queues,
            vn_name: a.vn_name.clone(),
            devargs: a.devargs.clone(),
            vhost_socket: a.vhost_socket.clone(),
            vhost_mode: a.vhost_mode.clone(),
            vhost_queues: a.vhost_queues,
        };
        (add_request(&args)?, format!("vif0/{} ({name})", a.id.unwrap_or_default()), "added")
    } else {
        let id = cli.mode.delete.expect("--add or --delete");
        only_with("--delete", &a.given())?;
        (delete_request(id), format!("vif0/{id}"), "deleted")
    };
    let opt = if cli.mode.add.is_some() { "--add" } else { "--delete" };
    only_with(opt, &[("--core", cli.core.is_some()), ("--get-drop-stats", cli.get_drop_stats)])?;
    let r = Client::new(&cli.common.run_dir, "vif").change(&req)?;
    Ok(if cli.common.json { to_json(&r, cli.common.pretty) } else { render_change(&what, done, &r) })
}

/// `--rate`: two snapshots `--interval` apart, then the rates of the vifs in both (`--get`:
/// of that vif).
fn rates(cli: &Cli) -> Result<String, Failure> {
    if !(cli.interval.is_finite() && cli.interval > 0.0 && cli.interval <= 3600.0) {
        return Err(Failure(format!("--interval: {} s is not between 0 and 3600 s", cli.interval)));
    }
    let before = load(&cli.common.run_dir, cli.core)?;
    let t0 = Instant::now();
    if let Some(id) = cli.mode.get {
        before.vif(id)?;
    }
    std::thread::sleep(Duration::from_secs_f64(cli.interval));
    let after = load(&cli.common.run_dir, cli.core)?;
    let seconds = t0.elapsed().as_secs_f64();
    warn_liveness(&after);
    if after.header.generation != before.header.generation {
        eprint_line("warning: the vRouter restarted during the interval; its counters continued across the restart");
    }
    let mut rows = vif_rates(&before, &after, seconds);
    if let Some(id) = cli.mode.get {
        rows.retain(|r| r.info.id == id);
    }
    Ok(if cli.common.json {
        render_vif_rates_json(&rows, cli.common.pretty)
    } else {
        render_vif_rates(&rows, seconds, cli.core)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.mode.add.is_some() || cli.mode.delete.is_some() {
        if cli.rate {
            return fail(&Failure("--rate goes with --list or --get".into()));
        }
        return match change(&cli) {
            Ok(out) => emit(&out),
            Err(e) => fail(&e),
        };
    }
    let mode = if cli.mode.list { "--list" } else { "--get" };
    if let Err(e) = only_with(mode, &cli.add.given()) {
        return fail(&e);
    }
    if cli.rate {
        return match rates(&cli) {
            Ok(out) => emit(&out),
            Err(e) => fail(&e),
        };
    }
    let snap = match load(&cli.common.run_dir, cli.core) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    warn_liveness(&snap);
    match render(&cli, &snap) {
        Ok(out) => emit(&out),
        Err(e) => fail(&e),
    }
}
