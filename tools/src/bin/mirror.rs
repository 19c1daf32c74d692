//! `mirror`: the vRouter's mirror table (analyzers) with per-entry mirrored packets, bytes
//! and errors, read live from `<run_dir>/mirror`; `--create`/`--delete` go to the running
//! vRouter over its control socket.

use std::process::ExitCode;

use clap::{Args, Parser};
use tools::control::Client;
use tools::mirror::{load_mirrors, load_totals, render_dump, render_dump_json, render_get, render_get_json};
use tools::{emit, fail, CommonArgs, Failure};

#[derive(Parser, Debug)]
#[command(name = "mirror", version, about = "Show and change the vRouter mirror table (analyzers)")]
struct Cli {
    #[command(flatten)]
    mode: Mode,
    /// With --create: mirror index 0..=254 (default: the lowest free one).
    #[arg(long, value_name = "N")]
    index: Option<u32>,
    /// With --create: analyzer name (unique).
    #[arg(long)]
    name: Option<String>,
    /// With --create: analyzer IPv4 address.
    #[arg(long)]
    ip: Option<String>,
    /// With --create: analyzer UDP port of the Juniper-header encapsulation (default 8099).
    #[arg(long)]
    udp_port: Option<u16>,
    /// With --create: nexthop mode, dynamic or static.
    #[arg(long)]
    nh_mode: Option<String>,
    /// With --create: VXLAN without Juniper header, with this VNI.
    #[arg(long)]
    vni: Option<u32>,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
struct Mode {
    /// List every mirror entry with its counters.
    #[arg(long)]
    dump: bool,
    /// Show mirror index N.
    #[arg(long, value_name = "N")]
    get: Option<u8>,
    /// Create an entry (--name, --ip; optional --index, --udp-port, --nh-mode, --vni).
    #[arg(long)]
    create: bool,
    /// Delete mirror index N.
    #[arg(long, value_name = "N")]
    delete: Option<u32>,
}

fn request(cli: &Cli, req: &serde_json::Value) -> Result<serde_json::Value, Failure> {
    Client::new(&cli.common.run_dir, "mirror").request(req)
}

fn run(cli: &Cli) -> Result<String, Failure> {
    let json = cli.common.json;
    let create_only = [
        ("--index", cli.index.is_some()),
        ("--name", cli.name.is_some()),
        ("--ip", cli.ip.is_some()),
        ("--udp-port", cli.udp_port.is_some()),
        ("--nh-mode", cli.nh_mode.is_some()),
        ("--vni", cli.vni.is_some()),
    ];
    if !cli.mode.create {
        if let Some((opt, _)) = create_only.iter().find(|(_, given)| *given) {
            return Err(Failure(format!("{opt} is only valid with --create")));
        }
    }
    if cli.mode.create {
        let mut req = serde_json::json!({"cmd": "mirror_create"});
        req["name"] = cli.name.clone().ok_or_else(|| Failure("--create needs --name".into()))?.into();
        req["ip"] = cli.ip.clone().ok_or_else(|| Failure("--create needs --ip".into()))?.into();
        if let Some(i) = cli.index {
            req["index"] = i.into();
        }
        if let Some(p) = cli.udp_port {
            req["udp_port"] = p.into();
        }
        if let Some(m) = &cli.nh_mode {
            req["nh_mode"] = m.clone().into();
        }
        if let Some(v) = cli.vni {
            req["vni"] = v.into();
            req["juniper_header"] = false.into();
        }
        let r = request(cli, &req)?;
        return Ok(if json { format!("{}\n", r["entry"]) } else { format!("mirror index {} created\n", r["index"]) });
    }
    if let Some(i) = cli.mode.delete {
        let r = request(cli, &serde_json::json!({"cmd": "mirror_delete", "index": i}))?;
        return Ok(if json {
            format!("{r}\n")
        } else {
            format!("mirror index {} ({}) deleted\n", r["index"], r["analyzer_name"].as_str().unwrap_or(""))
        });
    }
    let rows = load_mirrors(&cli.common.run_dir)?;
    if let Some(i) = cli.mode.get {
        let row = rows.iter().find(|r| r.index == i).ok_or_else(|| Failure(format!("mirror index {i} is empty")))?;
        return Ok(if json { render_get_json(row, cli.common.pretty) } else { render_get(row) });
    }
    let totals = load_totals(&cli.common.run_dir);
    Ok(if json { render_dump_json(&rows, totals, cli.common.pretty) } else { render_dump(&rows, totals) })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(out) => emit(&out),
        Err(e) => fail(&e),
    }
}
