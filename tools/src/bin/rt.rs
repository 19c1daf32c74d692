//! `rt`: the routes of a VRF (tf-vrouter's `rt`), through the running vRouter's control
//! socket. `rt --dump <vrf> [--family inet|inet6|bridge]`, `rt --get <addr> --vrf V`,
//! `rt --add --vrf V --prefix P --nh N` (bridge: `--mac M` instead of `--prefix`),
//! `rt --delete --vrf V --prefix P` (bridge: `--mac M`); `--json` on all.

use std::process::ExitCode;

use clap::{Args, Parser};
use tools::control::Client;
use tools::program::{mac_config, only_with, parse_mac, parse_prefix, render_change, required, to_json};
use tools::rt::{
    bridge_delete_request, bridge_set_request, render_dump, render_dump_json, render_get, route_delete_request,
    route_set_request, FAMILIES,
};
use tools::{emit, fail, CommonArgs, Failure};

#[derive(Parser, Debug)]
#[command(name = "rt", version, about = "Show and change the routes of the vRouter's VRFs")]
struct Cli {
    #[command(flatten)]
    mode: Mode,
    /// Route family: inet, inet6 or bridge (--dump; default inet).
    #[arg(long, value_parser = FAMILIES)]
    family: Option<String>,
    /// VRF id (--get, --add, --delete).
    #[arg(long, value_name = "VRF")]
    vrf: Option<u32>,
    /// IPv4/IPv6 prefix, a.b.c.d/len or x::y/len (--add, --delete).
    #[arg(long, value_name = "PREFIX")]
    prefix: Option<String>,
    /// Bridge entry MAC (--add, --delete of a bridge entry).
    #[arg(long, value_name = "MAC")]
    mac: Option<String>,
    /// Nexthop id (--add).
    #[arg(long, value_name = "ID")]
    nh: Option<u32>,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
struct Mode {
    /// Print the routes of VRF.
    #[arg(long, value_name = "VRF")]
    dump: Option<u32>,
    /// Print the route that matches ADDR (an IP address or a MAC) in --vrf.
    #[arg(long, value_name = "ADDR")]
    get: Option<String>,
    /// Add (or replace) a route: --vrf, --prefix or --mac, --nh.
    #[arg(long)]
    add: bool,
    /// Delete a route: --vrf, --prefix or --mac.
    #[arg(long)]
    delete: bool,
}

fn run(cli: &Cli) -> Result<String, Failure> {
    let (json, pretty) = (cli.common.json, cli.common.pretty);
    let client = Client::new(&cli.common.run_dir, "rt");
    if let Some(vrf) = cli.mode.dump {
        only_with(
            "--dump",
            &[
                ("--vrf", cli.vrf.is_some()),
                ("--prefix", cli.prefix.is_some()),
                ("--mac", cli.mac.is_some()),
                ("--nh", cli.nh.is_some()),
            ],
        )?;
        let family = cli.family.as_deref().unwrap_or("inet");
        let routes = client.route_dump(vrf, family)?;
        return Ok(if json { render_dump_json(&routes, pretty) } else { render_dump(vrf, family, &routes) });
    }
    if let Some(addr) = &cli.mode.get {
        only_with(
            "--get",
            &[("--prefix", cli.prefix.is_some()), ("--mac", cli.mac.is_some()), ("--nh", cli.nh.is_some())],
        )?;
        let vrf = required(cli.vrf, "--get", "--vrf")?;
        let addr = match addr.parse::<std::net::IpAddr>() {
            Ok(a) => a.to_string(),
            Err(_) => mac_config(&parse_mac("--get", addr)?),
        };
        let route = client.try_route_lookup(vrf, &addr).map_err(|e| e.into_failure("rt"))?;
        return Ok(if json { to_json(&route, pretty) } else { render_get(vrf, &addr, route.as_ref()) });
    }
    let mode = if cli.mode.add { "--add" } else { "--delete" };
    if cli.mode.delete {
        only_with(mode, &[("--nh", cli.nh.is_some())])?;
    }
    let vrf = required(cli.vrf, mode, "--vrf")?;
    let bridge = cli.family.as_deref() == Some("bridge") || cli.mac.is_some();
    let (req, what) = if bridge {
        only_with(&format!("{mode} of a bridge entry"), &[("--prefix", cli.prefix.is_some())])?;
        let mac = parse_mac("--mac", &required(cli.mac.clone(), &format!("{mode} of a bridge entry"), "--mac")?)?;
        let what = format!("bridge entry {} in vrf {vrf}", mac_config(&mac));
        if cli.mode.add {
            (bridge_set_request(vrf, &mac, required(cli.nh, mode, "--nh")?), what)
        } else {
            (bridge_delete_request(vrf, &mac), what)
        }
    } else {
        let p = required(cli.prefix.clone(), mode, "--prefix (or --mac for a bridge entry)")?;
        let (addr, len) = parse_prefix("--prefix", &p)?;
        if let Some(f) = cli.family.as_deref() {
            if (f == "inet") != addr.is_ipv4() {
                return Err(Failure(format!("--prefix: {p} is not an {f} prefix")));
            }
        }
        let prefix = format!("{addr}/{len}");
        let what = format!("route {prefix} in vrf {vrf}");
        if cli.mode.add {
            (route_set_request(vrf, &prefix, required(cli.nh, mode, "--nh")?), what)
        } else {
            (route_delete_request(vrf, &prefix), what)
        }
    };
    let r = client.change(&req)?;
    Ok(if json {
        to_json(&r, pretty)
    } else {
        render_change(&what, if cli.mode.add { "added" } else { "deleted" }, &r)
    })
}

fn main() -> ExitCode {
    match run(&Cli::parse()) {
        Ok(out) => emit(&out),
        Err(e) => fail(&e),
    }
}
