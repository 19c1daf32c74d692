//! `collector`: the analytics collector daemon.
//!
//! Receives Sandesh (flow records, UVEs) from vRouter agents, stores them in an embedded
//! SQLite database or in ClickHouse (`store = "clickhouse"`) and answers the analytics REST
//! API. See the README section "Analytics collector". `--init-schema` makes the store's
//! tables and exits (ClickHouse's must exist before a collector starts on it).
//!
//! Under systemd (`deploy/systemd/vrouter-collector.service`, `Type=notify`) it says
//! `READY=1` once both listeners are bound, sends `WATCHDOG=1` every half `WatchdogSec=`
//! while the database writer keeps up (see [`writer_alive`]) and `STOPPING=1` when SIGTERM
//! or SIGINT arrives.

use anyhow::Context;
use clap::Parser;
use collector::config::CollectorConfig;
use collector::server::Collector;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;

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
    /// The store: sqlite (default) or clickhouse.
    #[arg(long, value_name = "sqlite|clickhouse")]
    store: Option<collector::config::StoreKind>,
    /// ClickHouse's HTTP interface (with --store clickhouse).
    #[arg(long, value_name = "URL")]
    clickhouse_url: Option<String>,
    /// The ClickHouse database.
    #[arg(long, value_name = "NAME")]
    clickhouse_database: Option<String>,
    /// Make the store's database and tables (checking the version of those there) and exit.
    #[arg(long)]
    init_schema: bool,
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
            // Through the logs once they are set up (JSON stays JSON), else (the configuration
            // did not load) straight to stderr.
            if logging::initialised() {
                tracing::error!("collector: {e:#}");
            } else {
                eprintln!("collector: {e:#}");
            }
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
    if let Some(v) = cli.store {
        cfg.store = v;
    }
    if let Some(v) = cli.clickhouse_url {
        cfg.clickhouse_url = v;
    }
    if let Some(v) = cli.clickhouse_database {
        cfg.clickhouse_database = v;
    }
    cfg.validate("command line", None)?;
    cfg.log.init()?;
    if cli.init_schema {
        let at = collector::store::init_schema(&cfg).context("cannot make the schema")?;
        println!("collector: schema version {} ready in {at}", schema_version(&cfg));
        return Ok(());
    }
    // systemd: an unusable NOTIFY_SOCKET or WATCHDOG_USEC is reported and the collector runs
    // without notifications rather than not at all.
    let notifier = sdnotify::Notifier::from_env().unwrap_or_else(|e| {
        tracing::warn!("collector: systemd notifications off: {e}");
        None
    });
    let watchdog = sdnotify::Watchdog::from_env().unwrap_or_else(|e| {
        tracing::warn!("collector: systemd watchdog off: {e}");
        None
    });
    let notifier = notifier.map(Arc::new);
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
                "database": c.store.location(),
            })
            .to_string()
        } else {
            format!(
                "collector: Sandesh on {}, REST API on http://{}, database {}",
                c.sandesh_addr,
                c.http_addr,
                c.store.location()
            )
        };
        // A closed stdout is not an error: the collector keeps running.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}").and_then(|_| out.flush());
        drop(out);
        let keep_alive = match (&notifier, watchdog) {
            (Some(n), Some(w)) => Some(tokio::spawn(keep_alive(n.clone(), w, c.stats.clone(), c.ingest.clone()))),
            _ => None,
        };
        if let Some(n) = &notifier {
            notify(n.ready(&format!("Sandesh on {}, REST API on http://{}", c.sandesh_addr, c.http_addr)));
        }
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("cannot install the SIGTERM handler")?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        if let Some(n) = &notifier {
            notify(n.stopping("stopping: draining sessions, committing what they sent"));
        }
        if let Some(k) = keep_alive {
            k.abort();
        }
        c.stop().await;
        Ok(())
    })
}

fn schema_version(cfg: &CollectorConfig) -> i64 {
    match cfg.store {
        collector::config::StoreKind::Sqlite => collector::store::SCHEMA_VERSION,
        collector::config::StoreKind::Clickhouse => collector::store::clickhouse::SCHEMA_VERSION,
    }
}

/// A failed notification is logged; the collector goes on.
fn notify(r: Result<(), sdnotify::NotifyError>) {
    if let Err(e) = r {
        tracing::warn!("collector: {e}");
    }
}

/// Whether the database writer is alive at a watchdog check: stuck means it had work queued
/// at the previous check (`queued_before`) and still has (`queued`), and committed no
/// transaction in between (`batches` is still `last`). A message that arrived just before a
/// check, after an idle interval, is not a stall. A writer stuck with work queued withholds
/// the keep-alive from the second check on, and systemd restarts the collector after
/// `WatchdogSec=` without one.
fn writer_alive(queued_before: usize, queued: usize, batches: u64, last: u64) -> bool {
    queued_before == 0 || queued == 0 || batches != last
}

/// Sends `WATCHDOG=1` every half timeout while [`writer_alive`]; a withheld keep-alive says
/// why in `STATUS=`. Running on the runtime, it also stops when the runtime stops making
/// progress.
async fn keep_alive(
    n: Arc<sdnotify::Notifier>,
    w: sdnotify::Watchdog,
    stats: Arc<collector::stats::Stats>,
    ingest: collector::ingest::IngestHandle,
) {
    let mut tick = tokio::time::interval(w.interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = stats.writer_batches.load(Ordering::Relaxed);
    let mut queued_before = 0;
    let mut withheld = false;
    loop {
        tick.tick().await;
        let batches = stats.writer_batches.load(Ordering::Relaxed);
        let queued = ingest.queued();
        if writer_alive(queued_before, queued, batches, last) {
            notify(n.watchdog());
            if withheld {
                notify(n.status("database writer progressing again"));
                withheld = false;
            }
        } else {
            notify(n.status(&format!(
                "database writer committed nothing in {} ms with {queued} message(s) queued: watchdog withheld",
                w.interval().as_millis()
            )));
            withheld = true;
        }
        last = batches;
        queued_before = queued;
    }
}

#[cfg(test)]
mod tests {
    use super::writer_alive;

    #[test]
    fn writer_is_alive_when_idle_or_committing() {
        assert!(writer_alive(0, 0, 5, 5), "nothing queued, nothing to commit");
        assert!(writer_alive(0, 1, 5, 5), "a message arrived just before the check, after an idle interval");
        assert!(writer_alive(10, 10, 6, 5), "work queued and a transaction committed");
        assert!(writer_alive(10, 0, 5, 5), "the queue drained");
        assert!(!writer_alive(10, 3, 5, 5), "work queued at both checks, nothing committed: stuck");
    }
}
