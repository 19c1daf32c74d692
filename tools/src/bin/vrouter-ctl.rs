//! `vrouter-ctl`: talks to a running vRouter's agent over its control socket
//! (`<run_dir>/control.sock`, owner-only): reload the policy from the configuration file,
//! show the agent's counters and flow-setup latency, or the agent's state for one flow
//! (decision, rule UUIDs, VNs, analyzers).

use clap::{Parser, Subcommand};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::time::Duration;
use tools::{emit, fail, Failure, DEFAULT_RUN_DIR};

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

fn request(cli: &Cli, req: &serde_json::Value) -> Result<serde_json::Value, Failure> {
    let path = cli.run_dir.join("control.sock");
    let mut s = UnixStream::connect(&path)
        .map_err(|e| Failure(format!("vRouter is not running (cannot connect to {}: {e})", path.display())))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    writeln!(s, "{req}").map_err(|e| Failure(format!("sending to {}: {e}", path.display())))?;
    let mut line = String::new();
    BufReader::new(&s)
        .read_line(&mut line)
        .map_err(|e| Failure(format!("reading the reply from {}: {e}", path.display())))?;
    serde_json::from_str(&line).map_err(|e| Failure(format!("bad reply from the agent: {e}: {line:?}")))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let req = match &cli.cmd {
        Cmd::Reload => serde_json::json!({"cmd": "reload"}),
        Cmd::Status => serde_json::json!({"cmd": "status"}),
        Cmd::Flow { index } => serde_json::json!({"cmd": "flow", "index": index}),
    };
    let reply = match request(&cli, &req) {
        Ok(r) => r,
        Err(f) => return fail(&f),
    };
    if reply["ok"] != true {
        let msg = reply["error"].as_str().unwrap_or("request failed").to_string();
        return fail(&Failure(format!("vrouter-ctl: {msg}")));
    }
    if cli.json {
        return emit(&format!("{reply}\n"));
    }
    let text = match &cli.cmd {
        Cmd::Reload => format!("policy reloaded; {} flow(s) re-evaluated\n", reply["reevaluated"]),
        Cmd::Status | Cmd::Flow { .. } => serde_json::to_string_pretty(&reply).unwrap_or_default() + "\n",
    };
    emit(&text)
}
