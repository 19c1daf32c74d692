//! `dropstats`: the vRouter's packet drop counters by reason, read live from the stats
//! region. Prints only non-zero counters (like tf-vrouter); `--json` prints all of them.

use std::process::ExitCode;

use clap::Parser;
use tools::{
    emit, fail, load, render_drop_stats, render_drop_stats_json, warn_liveness, CommonArgs, Failure, Snapshot,
};

#[derive(Parser, Debug)]
#[command(name = "dropstats", version, about = "Show the vRouter packet drop counters")]
struct Cli {
    /// Counters of forwarding lcore N only.
    #[arg(long, value_name = "N")]
    core: Option<usize>,
    /// Counters of vif ID only.
    #[arg(long, value_name = "ID")]
    vif: Option<u16>,
    #[command(flatten)]
    common: CommonArgs,
}

fn render(cli: &Cli, snap: &Snapshot) -> Result<String, Failure> {
    let drops = match cli.vif {
        Some(id) => &snap.vif(id)?.drops,
        None => &snap.drops,
    };
    Ok(if cli.common.json {
        render_drop_stats_json(drops, cli.common.pretty)
    } else {
        render_drop_stats(drops, cli.core)
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
