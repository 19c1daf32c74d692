//! `vrouter-info`: tf-vrouter's `vrouter --info` (this project's data-plane binary is named
//! `vrouter`, so the tool has its own name): build, limits, table sizes and their use, from
//! the control socket's `info` request and the `flow` and `stats` regions. With the vRouter
//! stopped it prints what the regions still give and says the rest is unavailable.

use std::process::ExitCode;

use clap::Parser;
use tools::control::{Client, ControlError};
use tools::info::{region_facts, render_info, render_info_json, Info};
use tools::{emit, fail, CommonArgs};

#[derive(Parser, Debug)]
#[command(
    name = "vrouter-info",
    version,
    about = "Show the vRouter's build, limits and table use (tf's `vrouter --info`)"
)]
struct Cli {
    /// Print the information (tf's `--info`; the default).
    #[arg(long)]
    info: bool,
    #[command(flatten)]
    common: CommonArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let reply = Client::new(&cli.common.run_dir, "vrouter-info").try_info();
    let (flow, stats) = region_facts(&cli.common.run_dir);
    // Only an unreachable socket falls back to the regions; a refusal is the tool's error.
    let reply = match reply {
        Ok(i) => Ok(i),
        Err(ControlError::Unreachable(why)) if flow.is_some() || stats.is_some() => Err(why),
        Err(e) => return fail(&e.into_failure("vrouter-info")),
    };
    let x = Info::new(reply, flow, stats);
    emit(&if cli.common.json { render_info_json(&x, cli.common.pretty) } else { render_info(&x) })
}
