//! `nh`: the vRouter's nexthops (tf-vrouter's `nh`), through the running vRouter's control
//! socket. `nh --list`, `nh --get <id>`, `nh --create --id N --type T ...`,
//! `nh --delete <id>`; `--json` on all.

use std::net::Ipv4Addr;
use std::process::ExitCode;

use clap::{Args, Parser};
use tools::control::Client;
use tools::nh::{create_request, render_get_json, render_list, render_list_json, render_nh, CreateArgs, TYPES};
use tools::program::{only_with, parse_mac, render_change, to_json};
use tools::{emit, fail, CommonArgs, Failure};

const AFTER_HELP: &str = "\
Nexthop types and their options (--create):
  encap    --oif VIF --dmac MAC [--smac MAC]
  tunnel   --oif VIF --dmac MAC --encap mplsoudp|vxlan --dip IP --label N [--inner-dmac MAC]
  receive  --oif VIF
  discard
  ecmp     --members ID,ID,...";

#[derive(Parser, Debug)]
#[command(name = "nh", version, about = "Show and change the vRouter's nexthops", after_help = AFTER_HELP)]
struct Cli {
    #[command(flatten)]
    mode: Mode,
    /// Nexthop id (--create).
    #[arg(long, value_name = "ID")]
    id: Option<u32>,
    /// Nexthop type (--create).
    #[arg(long = "type", value_name = "TYPE", value_parser = TYPES)]
    kind: Option<String>,
    /// Outgoing vif (encap, tunnel, receive).
    #[arg(long, value_name = "VIF")]
    oif: Option<u16>,
    /// Destination MAC (encap; the underlay next hop for a tunnel).
    #[arg(long, value_name = "MAC")]
    dmac: Option<String>,
    /// Source MAC (encap; default the vRouter MAC).
    #[arg(long, value_name = "MAC")]
    smac: Option<String>,
    /// Inner destination MAC (vxlan tunnel; default the router MAC).
    #[arg(long, value_name = "MAC")]
    inner_dmac: Option<String>,
    /// Tunnel encapsulation: mplsoudp or vxlan.
    #[arg(long, value_name = "ENCAP", value_parser = ["mplsoudp", "vxlan"])]
    encap: Option<String>,
    /// Tunnel destination (the remote vRouter).
    #[arg(long, value_name = "IP")]
    dip: Option<String>,
    /// MPLS label (mplsoudp) or VNI (vxlan) of a tunnel.
    #[arg(long, value_name = "N")]
    label: Option<u32>,
    /// ECMP member nexthop ids, comma-separated.
    #[arg(long, value_name = "IDS", value_delimiter = ',')]
    members: Option<Vec<u32>>,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
struct Mode {
    /// Print every nexthop.
    #[arg(long)]
    list: bool,
    /// Print nexthop ID.
    #[arg(long, value_name = "ID")]
    get: Option<u32>,
    /// Create (or replace) a nexthop: --id, --type and the type's options.
    #[arg(long)]
    create: bool,
    /// Delete nexthop ID.
    #[arg(long, value_name = "ID")]
    delete: Option<u32>,
}

fn create_args(cli: &Cli) -> Result<CreateArgs, Failure> {
    let mac = |opt: &str, v: &Option<String>| v.as_deref().map(|s| parse_mac(opt, s)).transpose();
    let dip = cli
        .dip
        .as_deref()
        .map(|s| s.parse::<Ipv4Addr>().map_err(|_| Failure(format!("--dip: invalid IPv4 address {s:?}"))))
        .transpose()?;
    Ok(CreateArgs {
        id: cli.id,
        kind: cli.kind.clone(),
        oif: cli.oif,
        dmac: mac("--dmac", &cli.dmac)?,
        smac: mac("--smac", &cli.smac)?,
        inner_dmac: mac("--inner-dmac", &cli.inner_dmac)?,
        encap: cli.encap.clone(),
        dip,
        label: cli.label,
        members: cli.members.clone(),
    })
}

fn run(cli: &Cli) -> Result<String, Failure> {
    let (json, pretty) = (cli.common.json, cli.common.pretty);
    let client = Client::new(&cli.common.run_dir, "nh");
    if cli.mode.create {
        let a = create_args(cli)?;
        let req = create_request(&a)?;
        let r = client.change(&req)?;
        let what = format!("nexthop {}", a.id.unwrap_or_default());
        return Ok(if json { to_json(&r, pretty) } else { render_change(&what, "created", &r) });
    }
    let mode = if cli.mode.list {
        "--list"
    } else if cli.mode.get.is_some() {
        "--get"
    } else {
        "--delete"
    };
    only_with(
        mode,
        &[
            ("--id", cli.id.is_some()),
            ("--type", cli.kind.is_some()),
            ("--oif", cli.oif.is_some()),
            ("--dmac", cli.dmac.is_some()),
            ("--smac", cli.smac.is_some()),
            ("--inner-dmac", cli.inner_dmac.is_some()),
            ("--encap", cli.encap.is_some()),
            ("--dip", cli.dip.is_some()),
            ("--label", cli.label.is_some()),
            ("--members", cli.members.is_some()),
        ],
    )?;
    if let Some(id) = cli.mode.delete {
        let r = client.change(&serde_json::json!({"cmd": "nh_delete", "id": id}))?;
        return Ok(if json { to_json(&r, pretty) } else { render_change(&format!("nexthop {id}"), "deleted", &r) });
    }
    if let Some(id) = cli.mode.get {
        let e = client.try_nh_get(id).map_err(|e| e.into_failure("nh"))?;
        if json {
            return Ok(render_get_json(&e, pretty));
        }
        // Members' labels of an ECMP nexthop come from the members themselves.
        let members: Vec<_> = e.members.iter().filter_map(|m| client.try_nh_get(*m).ok()).collect();
        return Ok(render_nh(&e, &members));
    }
    let all = client.nh_dump()?;
    Ok(if json { render_list_json(&all, pretty) } else { render_list(&all) })
}

fn main() -> ExitCode {
    match run(&Cli::parse()) {
        Ok(out) => emit(&out),
        Err(e) => fail(&e),
    }
}
