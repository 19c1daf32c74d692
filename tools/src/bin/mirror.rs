//! `mirror`: the vRouter's mirror table (analyzers) with per-entry mirrored packets, bytes
//! and errors, read live from `<run_dir>/mirror`; `--create`/`--delete` go to the running
//! vRouter over its control socket; `--reconcile` puts, per analyzer and per rule, the
//! packets of the flows mirrored next to the copies sent, lost and otherwise explained (flow
//! table and mirror region; each flow's rule from the agent).

use std::process::ExitCode;

use clap::{Args, Parser};
use std::collections::HashMap;
use tools::control::Client;

use flow_table::{FlowSnapshot, FlowTableReader, NO_MIRROR};
use tools::mirror::{
    load_mirrors, load_totals, reconcile, render_dump, render_dump_json, render_get, render_get_json, render_reconcile,
    render_reconcile_json,
};
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
    /// Per analyzer and per rule: packets of the flows mirrored, copies sent, copies lost
    /// by reason, and what explains the rest (flows set up before the rule, packets dropped
    /// while held).
    #[arg(long)]
    reconcile: bool,
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
    if cli.mode.reconcile {
        return reconcile_run(cli);
    }
    let rows = load_mirrors(&cli.common.run_dir)?;
    if let Some(i) = cli.mode.get {
        let row = rows.iter().find(|r| r.index == i).ok_or_else(|| Failure(format!("mirror index {i} is empty")))?;
        return Ok(if json { render_get_json(row, cli.common.pretty) } else { render_get(row) });
    }
    let totals = load_totals(&cli.common.run_dir);
    Ok(if json { render_dump_json(&rows, totals, cli.common.pretty) } else { render_dump(&rows, totals) })
}

/// The rule of each mirrored flow, from the agent (`flows`): its network-policy rule UUID,
/// else its security-group rule UUID, by flow index (and generation: a reused index is
/// another flow). `Err`: why the agent could not be asked.
fn rules_of(cli: &Cli, flows: &[FlowSnapshot]) -> Result<HashMap<u32, Option<String>>, String> {
    let mirrored: Vec<&FlowSnapshot> =
        flows.iter().filter(|f| f.mirror != NO_MIRROR || f.sec_mirror != NO_MIRROR).collect();
    let indices: Vec<u32> = mirrored.iter().map(|f| f.index).collect();
    let reply = Client::new(&cli.common.run_dir, "mirror")
        .try_request(&serde_json::json!({"cmd": "flows", "indices": indices}))
        .map_err(|e| e.into_failure("mirror").0)?;
    let metas = reply["metas"].as_array().ok_or("the agent's reply has no metas")?;
    Ok(mirrored
        .iter()
        .zip(metas)
        .map(|(f, m)| {
            let rule = (m["gen"].as_u64() == Some(u64::from(f.gen)))
                .then(|| m["nw_ace_uuid"].as_str().or(m["sg_rule_uuid"].as_str()).map(str::to_owned))
                .flatten();
            (f.index, rule)
        })
        .collect())
}

fn reconcile_run(cli: &Cli) -> Result<String, Failure> {
    let run_dir = &cli.common.run_dir;
    let mirrors = vrouter_abi::mirror::MirrorReader::open(run_dir).map_err(|e| Failure(e.to_string()))?;
    let rows = load_mirrors(run_dir)?;
    let flows: Vec<FlowSnapshot> = FlowTableReader::open_run_dir(run_dir)
        .map_err(|e| Failure(format!("flow table: {e}")))?
        .iter_active()
        .collect();
    let rules = rules_of(cli, &flows);
    let rule_of = |f: &FlowSnapshot| rules.as_ref().ok().and_then(|r| r.get(&f.index).cloned().flatten());
    let named: Result<tools::mirror::RuleOf<'_>, String> = match &rules {
        Ok(_) => Ok(&rule_of),
        Err(e) => Err(e.clone()),
    };
    let r = reconcile(&flows, &rows, |i| mirrors.stats(usize::from(i), None), named);
    Ok(if cli.common.json { render_reconcile_json(&r, cli.common.pretty) } else { render_reconcile(&r) })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(out) => emit(&out),
        Err(e) => fail(&e),
    }
}
