//! `vrouter-exporter`: the Prometheus exporter of a vRouter. `GET /metrics` reads the
//! vRouter's run directory at scrape time (its stats, flow and mirror regions, the exporter's
//! counters file and the agent's `status` on the control socket, through the same readers as
//! the tools: `tools::metrics`) and answers in the text exposition format 0.0.4.
//!
//! A process of its own, like VPP's `vpp_prometheus_export` beside its stats segment: the
//! forwarding lcores and the agent never serve a scrape, the exporter keeps answering while
//! the vRouter restarts (`vrouter_up 0`, then the new run's counters), and it needs only read
//! access to the run directory (the agent's figures also need the control socket, owner
//! only: run it as the vRouter's user for those).
//!
//! ```sh
//! vrouter-exporter --run-dir /var/run/vrouter --listen 127.0.0.1:9433
//! vrouter-exporter --run-dir /var/run/vrouter --once | promtool check metrics
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use clap::Parser;
use tools::metrics::{scrape, DEFAULT_LISTEN};
use tools::{emit, fail, Failure, DEFAULT_RUN_DIR};

#[derive(Parser, Debug)]
#[command(name = "vrouter-exporter", version, about = "Serve a vRouter's counters to Prometheus (GET /metrics)")]
struct Cli {
    /// Run directory of the vRouter.
    #[arg(long, value_name = "DIR", env = "VROUTER_RUN_DIR", default_value = DEFAULT_RUN_DIR)]
    run_dir: PathBuf,
    /// Address to serve `/metrics` on.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Print one scrape to stdout and exit (no server).
    #[arg(long)]
    once: bool,
}

async fn metrics(State(run_dir): State<PathBuf>) -> Response {
    // File and socket reads: off the runtime's thread.
    match tokio::task::spawn_blocking(move || scrape(&run_dir)).await {
        Ok(Ok(text)) => ([(header::CONTENT_TYPE, promtext::CONTENT_TYPE)], text).into_response(),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("exposition error: {e}\n")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("scrape failed: {e}\n")).into_response(),
    }
}

async fn index() -> &'static str {
    "vrouter-exporter: the vRouter's metrics are at /metrics\n"
}

async fn stopped() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn serve(cli: &Cli) -> Result<(), Failure> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure(format!("vrouter-exporter: runtime: {e}")))?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(cli.listen)
            .await
            .map_err(|e| Failure(format!("vrouter-exporter: cannot listen on {}: {e}", cli.listen)))?;
        let local = listener.local_addr().map_err(|e| Failure(e.to_string()))?;
        println!("vrouter-exporter: serving {} on http://{local}/metrics", cli.run_dir.display());
        let app = Router::new().route("/metrics", get(metrics)).route("/", get(index)).with_state(cli.run_dir.clone());
        axum::serve(listener, app)
            .with_graceful_shutdown(stopped())
            .await
            .map_err(|e| Failure(format!("vrouter-exporter: {e}")))
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.once {
        return match scrape(&cli.run_dir) {
            Ok(text) => emit(&text),
            Err(e) => fail(&Failure(format!("vrouter-exporter: {e}"))),
        };
    }
    match serve(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}
