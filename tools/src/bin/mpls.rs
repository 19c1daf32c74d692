//! `mpls`: the vRouter's MPLS input label map (tf-vrouter's `mpls`), through the running
//! vRouter's control socket. `mpls --dump`, `mpls --get <label>`,
//! `mpls --create <label> --nh <id>`, `mpls --delete <label>`; `--json` on all.

use std::process::ExitCode;

use clap::{Args, Parser};
use tools::control::Client;
use tools::mpls::{create_request, delete_request, render_dump_json, render_get_json, render_labels};
use tools::program::{only_with, render_change, required, to_json};
use tools::{emit, fail, CommonArgs, Failure};

#[derive(Parser, Debug)]
#[command(name = "mpls", version, about = "Show and change the vRouter's MPLS input label map")]
struct Cli {
    #[command(flatten)]
    mode: Mode,
    /// Nexthop id the label decapsulates to (--create).
    #[arg(long, value_name = "ID")]
    nh: Option<u32>,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
struct Mode {
    /// Print every label.
    #[arg(long)]
    dump: bool,
    /// Print one label.
    #[arg(long, value_name = "LABEL")]
    get: Option<u32>,
    /// Map LABEL to --nh (replaces an existing mapping).
    #[arg(long, value_name = "LABEL")]
    create: Option<u32>,
    /// Remove LABEL.
    #[arg(long, value_name = "LABEL")]
    delete: Option<u32>,
}

fn run(cli: &Cli) -> Result<String, Failure> {
    let (json, pretty) = (cli.common.json, cli.common.pretty);
    let client = Client::new(&cli.common.run_dir, "mpls");
    if let Some(label) = cli.mode.create {
        let nh = required(cli.nh, "--create", "--nh")?;
        let r = client.change(&create_request(label, nh))?;
        return Ok(if json { to_json(&r, pretty) } else { render_change(&format!("label {label}"), "created", &r) });
    }
    let mode = if cli.mode.dump {
        "--dump"
    } else if cli.mode.get.is_some() {
        "--get"
    } else {
        "--delete"
    };
    only_with(mode, &[("--nh", cli.nh.is_some())])?;
    if let Some(label) = cli.mode.delete {
        let r = client.change(&delete_request(label))?;
        return Ok(if json { to_json(&r, pretty) } else { render_change(&format!("label {label}"), "deleted", &r) });
    }
    if let Some(label) = cli.mode.get {
        let l = client.label_get(label)?;
        return Ok(if json { render_get_json(&l, pretty) } else { render_labels(std::slice::from_ref(&l)) });
    }
    let labels = client.label_dump()?;
    Ok(if json { render_dump_json(&labels, pretty) } else { render_labels(&labels) })
}

fn main() -> ExitCode {
    match run(&Cli::parse()) {
        Ok(out) => emit(&out),
        Err(e) => fail(&e),
    }
}
