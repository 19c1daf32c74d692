//! `lcore --stats`: each forwarding lcore's performance counters (OVS `dpif-netdev/pmd-perf-show`,
//! VPP `show runtime`): busy and idle iterations and TSC cycles, packets per burst and cycles
//! per packet with their histograms, the largest burst, and the usage of each RX queue, read
//! live from the stats region.

use std::process::ExitCode;

use clap::Parser;
use tools::perf::{load_perf, render_perf, render_perf_json};
use tools::{emit, eprint_line, fail, liveness_warning, CommonArgs};

#[derive(Parser, Debug)]
#[command(name = "lcore", version, about = "Show the forwarding lcores' performance counters")]
struct Cli {
    /// Print the performance counters (the default).
    #[arg(long)]
    stats: bool,
    /// Forwarding lcore N only.
    #[arg(long, value_name = "N")]
    core: Option<usize>,
    #[command(flatten)]
    common: CommonArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let snap = match load_perf(&cli.common.run_dir, cli.core) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    if let Some(w) = liveness_warning(snap.liveness, snap.header.creator_pid) {
        eprint_line(&w);
    }
    emit(&if cli.common.json { render_perf_json(&snap, cli.common.pretty) } else { render_perf(&snap) })
}
