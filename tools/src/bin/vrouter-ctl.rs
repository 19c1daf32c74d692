//! `vrouter-ctl`: talks to a running vRouter's agent over its control socket
//! (`<run_dir>/control.sock`, owner-only): reload the policy from the configuration file,
//! show the agent's counters and flow-setup latency, or the agent's state for one flow
//! (decision, rule UUIDs, VNs, analyzers).

use clap::{Parser, Subcommand};
use std::process::ExitCode;
use tools::control::Client;
use tools::{emit, fail, DEFAULT_RUN_DIR};

#[derive(Parser, Debug)]
#[command(name = "vrouter-ctl", version, about = "Control a running vRouter's agent")]
struct Cli {
    /// Run directory of the vRouter (holds control.sock).
    #[arg(long, value_name = "DIR", env = "VROUTER_RUN_DIR", default_value = DEFAULT_RUN_DIR)]
    run_dir: std::path::PathBuf,
    /// Print the agent's JSON reply as is.
    #[arg(short = 'j', long)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Re-read the configuration file and apply its policies, security groups and
    /// analyzers; every set-up flow is re-evaluated.
    Reload,
    /// Agent counters and flow-setup latency percentiles.
    Status,
    /// The agent's state of one flow: action, rule UUIDs, VNs, analyzers.
    Flow {
        /// Flow index (as in `flow -l`).
        index: u32,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let req = match &cli.cmd {
        Cmd::Reload => serde_json::json!({"cmd": "reload"}),
        Cmd::Status => serde_json::json!({"cmd": "status"}),
        Cmd::Flow { index } => serde_json::json!({"cmd": "flow", "index": index}),
    };
    let reply = match Client::new(&cli.run_dir, "vrouter-ctl").request(&req) {
        Ok(r) => r,
        Err(f) => return fail(&f),
    };
    if cli.json {
        return emit(&format!("{reply}\n"));
    }
    let text = match &cli.cmd {
        Cmd::Reload => format!("policy reloaded; {} flow(s) re-evaluated\n", reply["reevaluated"]),
        Cmd::Status | Cmd::Flow { .. } => serde_json::to_string_pretty(&reply).unwrap_or_default() + "\n",
    };
    emit(&text)
}
