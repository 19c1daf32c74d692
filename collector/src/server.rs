//! Wiring: opens the store, starts the writer, the retention timer, the Sandesh listener and
//! the REST listener.

use crate::config::CollectorConfig;
use crate::http::{now_us, router, ApiState};
use crate::ingest::{start_writer, IngestHandle, IngestMsg};
use crate::session::{serve, Registry, SessionConfig, Shared};
use crate::stats::Stats;
use crate::store::{Store, StoreError};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Why the collector could not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// The database could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Listen {
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The writer thread could not be spawned.
    #[error("cannot start the writer thread: {0}")]
    Thread(std::io::Error),
}

/// A running collector.
pub struct Collector {
    /// Where generators connect.
    pub sandesh_addr: SocketAddr,
    /// Where the REST API listens.
    pub http_addr: SocketAddr,
    /// Counters.
    pub stats: Arc<Stats>,
    /// The store (its read side).
    pub store: Store,
    /// The writer queue.
    pub ingest: IngestHandle,
    /// Sessions.
    pub shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

/// Host name for the control replies and this collector's name in a shared store.
pub fn default_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "collector".into())
}

impl Collector {
    /// Starts everything on the current tokio runtime.
    pub async fn start(cfg: &CollectorConfig) -> Result<Collector, StartError> {
        let hostname = if cfg.hostname.is_empty() { default_hostname() } else { cfg.hostname.clone() };
        let (store, mut writer) = crate::store::open(cfg, &hostname)?;
        // No generator is connected yet: UVEs left from the previous run belong to sessions
        // that ended with it; each generator resynchronises its own when it connects.
        writer.clear_uves()?;
        let stats = Arc::new(Stats::default());
        let (ingest, _writer_thread) =
            start_writer(writer, cfg.ingest_queue, stats.clone()).map_err(StartError::Thread)?;

        let retention_us = cfg.retention_us();
        let mut tasks = Vec::new();
        {
            let ingest = ingest.clone();
            let every = Duration::from_secs(cfg.purge_interval_s);
            tasks.push(tokio::spawn(async move {
                loop {
                    let horizon = now_us().saturating_sub(retention_us) as i64;
                    if !ingest.send(IngestMsg::Purge(horizon)).await {
                        return;
                    }
                    tokio::time::sleep(every).await;
                }
            }));
        }

        let sandesh_addr = cfg.sandesh_addr();
        let sl = TcpListener::bind(sandesh_addr).await.map_err(|source| StartError::Listen {
            what: "Sandesh",
            addr: sandesh_addr,
            source,
        })?;
        let http_addr = cfg.http_addr();
        let hl = TcpListener::bind(http_addr).await.map_err(|source| StartError::Listen {
            what: "REST API",
            addr: http_addr,
            source,
        })?;
        let sandesh_addr =
            sl.local_addr().map_err(|source| StartError::Listen { what: "Sandesh", addr: sandesh_addr, source })?;
        let http_addr =
            hl.local_addr().map_err(|source| StartError::Listen { what: "REST API", addr: http_addr, source })?;

        let shared = Arc::new(Shared {
            config: SessionConfig {
                hostname,
                handshake_timeout: Duration::from_secs(cfg.handshake_timeout_s),
                max_frame_len: cfg.max_frame_len,
            },
            ingest: ingest.clone(),
            stats: stats.clone(),
            registry: Registry::default(),
            shutdown: tokio::sync::watch::channel(false).0,
        });
        tasks.push(tokio::spawn(serve(sl, shared.clone())));
        let app = router(ApiState {
            store: store.clone(),
            stats: stats.clone(),
            ingest: ingest.clone(),
            retention_us,
            query_max_rows: cfg.query_max_rows,
            trace_access: Arc::new(crate::trace::TraceAccess::new(cfg.tenants.clone(), cfg.admin_token.clone())),
            async_queries: Arc::default(),
        });
        tasks.push(tokio::spawn(async move {
            if let Err(e) = axum::serve(hl, app).await {
                tracing::error!("collector: REST API server failed: {e}");
            }
        }));
        Ok(Collector { sandesh_addr, http_addr, stats, store, ingest, shared, tasks })
    }

    /// Stops accepting connections and serving HTTP, lets every session drain (half-close,
    /// then read what the generator already sent, at most [`crate::session::DRAIN_TIME`]),
    /// and waits until everything received is committed.
    pub async fn stop(self) {
        for t in &self.tasks {
            t.abort();
        }
        // Let the sessions drain what their generators already sent, then commit it all.
        self.shared.shutdown.send_replace(true);
        let deadline = tokio::time::Instant::now() + crate::session::DRAIN_TIME + Duration::from_secs(1);
        while self.stats.sessions_active.load(std::sync::atomic::Ordering::Relaxed) > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.ingest.flush().await;
    }
}
