//! `collector`: the analytics collector daemon.
//!
//! Receives Sandesh (flow records, UVEs) from vRouter agents, stores them in an embedded
//! SQLite database and answers the analytics REST API. See the README section "Analytics
//! collector".

use anyhow::Context;
use clap::Parser;
use collector::config::CollectorConfig;
use collector::server::Collector;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Analytics collector: Sandesh ingest, embedded storage, UVE and flow-record query API.
#[derive(Debug, Parser)]
#[command(name = "collector", version)]
struct Cli {
    /// TOML configuration file (a `[collector]` table); flags override it.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address for Sandesh generators (default 0.0.0.0:8086).
    #[arg(long, value_name = "ADDR:PORT")]
    sandesh_listen: Option<String>,
    /// Address of the REST API (default 0.0.0.0:8081).
    #[arg(long, value_name = "ADDR:PORT")]
    http_listen: Option<String>,
    /// Directory of the database.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// How long flow records are kept, in seconds.
    #[arg(long, value_name = "SECONDS")]
    flow_retention_s: Option<u64>,
    /// Host name in the control replies (default: the system's).
    #[arg(long)]
    hostname: Option<String>,
    /// Print the listening addresses as one JSON line once ready.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    // A panic on any thread (an lcore, the agent, a runtime worker) stops the process, as the
    // release profile's `panic = "abort"` does; the hook makes it so in every profile (the
    // tests' `test-release` profile unwinds).
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        std::process::abort();
    }));
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("collector: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let mut cfg = match &cli.config {
        Some(p) => CollectorConfig::load(p)?,
        None => CollectorConfig::default(),
    };
    if let Some(v) = cli.sandesh_listen {
        cfg.sandesh_listen = v;
    }
    if let Some(v) = cli.http_listen {
        cfg.http_listen = v;
    }
    if let Some(v) = cli.data_dir {
        cfg.data_dir = v;
    }
    if let Some(v) = cli.flow_retention_s {
        cfg.flow_retention_s = v;
    }
    if let Some(v) = cli.hostname {
        cfg.hostname = v;
    }
    cfg.validate("command line", None)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let c = Collector::start(&cfg).await.context("cannot start the collector")?;
        let line = if cli.json {
            serde_json::json!({
                "sandesh_listen": c.sandesh_addr.to_string(),
                "http_listen": c.http_addr.to_string(),
                "data_dir": cfg.data_dir.display().to_string(),
                "database": c.store.path().display().to_string(),
            })
            .to_string()
        } else {
            format!(
                "collector: Sandesh on {}, REST API on http://{}, database {}",
                c.sandesh_addr,
                c.http_addr,
                c.store.path().display()
            )
        };
        // A closed stdout is not an error: the collector keeps running.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}").and_then(|_| out.flush());
        drop(out);
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("cannot install the SIGTERM handler")?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        c.stop().await;
        Ok(())
    })
}
