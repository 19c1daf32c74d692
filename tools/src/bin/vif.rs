//! `vif`: the vRouter's interfaces and their counters, read live from the stats region.
//!
//! `vif --list`, `vif --get N [--get-drop-stats]`, optionally `--core N` (one forwarding
//! lcore's counters) and `--json`. Output follows tf-vrouter's `vif` tool.

use std::process::ExitCode;

use clap::{Args, Parser};
use tools::{
    emit, fail, load, render_drop_stats, render_drop_stats_json, render_vif_table, render_vifs_json, warn_liveness,
    CommonArgs, Failure, Snapshot,
};

#[derive(Parser, Debug)]
#[command(name = "vif", version, about = "Show the vRouter interfaces (vifs) and their counters")]
struct Cli {
    #[command(flatten)]
    mode: Mode,
    /// Show the counters of forwarding lcore N only.
    #[arg(long, value_name = "N")]
    core: Option<usize>,
    /// With --get: print the vif's drop counters (dropstats format).
    #[arg(long, conflicts_with = "list")]
    get_drop_stats: bool,
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

fn main() -> ExitCode {
    let cli = Cli::parse();
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
