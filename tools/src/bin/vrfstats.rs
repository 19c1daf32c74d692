//! `vrfstats`: the vRouter's per-VRF forwarding counters (discards, receives, resolves,
//! encaps, tunnels, decapsulations, ...), read live from the stats region.
//!
//! `vrfstats --dump` (every VRF that counted something), `vrfstats --get <vrf>`, optionally
//! `--core N` (one forwarding lcore's counters) and `--json`. Output follows tf-vrouter's
//! `vrfstats` tool.

use std::process::ExitCode;

use clap::{Args, Parser};
use tools::vrfstats::{load, render_vrfs, render_vrfs_json};
use tools::{emit, eprint_line, fail, liveness_warning, CommonArgs};
use vrouter_abi::MAX_VRFS;

#[derive(Parser, Debug)]
#[command(name = "vrfstats", version, about = "Show the vRouter's per-VRF forwarding counters")]
struct Cli {
    #[command(flatten)]
    mode: Mode,
    /// Show the counters of forwarding lcore N only.
    #[arg(long, value_name = "N")]
    core: Option<usize>,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
struct Mode {
    /// Show every VRF that has counted something.
    #[arg(long)]
    dump: bool,
    /// Show VRF VRF (zeros included).
    #[arg(long, value_name = "VRF", value_parser = clap::value_parser!(u32).range(..MAX_VRFS as i64))]
    get: Option<u32>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let snap = match load(&cli.common.run_dir, cli.core, cli.mode.get) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    if let Some(w) = liveness_warning(snap.liveness, snap.header.creator_pid) {
        eprint_line(&w);
    }
    emit(&if cli.common.json {
        render_vrfs_json(&snap.rows, cli.common.pretty)
    } else {
        render_vrfs(&snap.rows, cli.core)
    })
}
