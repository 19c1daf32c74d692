//! The path from Sandesh sessions to storage: a bounded channel and one writer thread.
//!
//! Sessions `send` into the channel; when the writer falls behind the channel fills, `send`
//! waits, the session stops reading its socket and TCP flow control pushes back on the
//! generator — memory stays bounded: the channel capacity plus the one batch of at most
//! [`MAX_BATCH`] messages the writer is storing (each message is at most one frame), plus
//! what the backend buffers (bounded by the backend). The writer takes whatever is queued (up
//! to [`MAX_BATCH`] messages) and hands it to the backend's [`StoreWriter`] in order, so a
//! generator's UVE removal on disconnect is ordered after everything that generator sent
//! before. SQLite stores each batch in one transaction; a backend that buffers
//! ([`StoreWriter::linger`]) is told to flush once the oldest data it holds has waited that
//! long, and to commit before any [`IngestMsg::Flush`] is answered.

use crate::model::{FlowRecordInput, GeneratorKey, TraceInput, UveUpdate};
use crate::stats::Stats;
use crate::store::StoreError;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Most messages applied in one transaction.
pub const MAX_BATCH: usize = 512;

/// Work for the writer.
#[derive(Debug)]
pub enum IngestMsg {
    /// Flow samples (one `FlowLogDataObject`).
    Flows(Vec<FlowRecordInput>),
    /// A UVE update from a generator.
    Uve(GeneratorKey, UveUpdate),
    /// Trace steps (one `PacketTraceData`).
    Traces(TraceInput),
    /// Remove every UVE of a generator: it connected, and resynchronises them.
    DeleteGenerator(GeneratorKey),
    /// Remove the UVEs this collector stored for a generator whose session ended (in a shared
    /// store, not those it sent through another collector since).
    GeneratorEnded(GeneratorKey),
    /// Remove flow data and traces older than the horizon (µs).
    Purge(i64),
    /// Reply once everything sent before is committed.
    Flush(oneshot::Sender<()>),
}

/// The sending side, cloned into every session.
#[derive(Debug, Clone)]
pub struct IngestHandle {
    tx: mpsc::Sender<IngestMsg>,
    stats: Arc<Stats>,
}

impl IngestHandle {
    /// Queues a message, waiting while the queue is full (counted as back-pressure). Returns
    /// false when the writer has stopped.
    pub async fn send(&self, msg: IngestMsg) -> bool {
        match self.tx.try_send(msg) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(msg)) => {
                self.stats.ingest_backpressure.fetch_add(1, Relaxed);
                self.tx.send(msg).await.is_ok()
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Waits until everything queued before this call is committed.
    pub async fn flush(&self) -> bool {
        let (tx, rx) = oneshot::channel();
        if !self.send(IngestMsg::Flush(tx)).await {
            return false;
        }
        rx.await.is_ok()
    }

    /// Messages waiting in the queue.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Capacity of the queue.
    pub fn capacity(&self) -> usize {
        self.tx.max_capacity()
    }
}

/// The write side of a storage backend, owned by the writer thread.
pub trait StoreWriter: Send {
    /// Stores `batch` in order (a [`IngestMsg::Flush`] in it needs nothing here), counting
    /// what was stored, removed and lost in `stats`. Failures are the backend's to retry,
    /// count and report: the writer goes on with the next batch.
    fn write(&mut self, batch: &[IngestMsg], stats: &Arc<Stats>);
    /// Starts storing what the backend buffers, without waiting for it (a no-op where
    /// [`StoreWriter::write`] stores at once).
    fn flush(&mut self, _stats: &Arc<Stats>) {}
    /// Returns once everything written so far is stored and visible to queries, as far as
    /// the backend can tell (a no-op where [`StoreWriter::write`] commits).
    fn commit(&mut self, _stats: &Arc<Stats>) {}
    /// How long written data may wait in the backend for more before it is flushed
    /// (`None`: `write` stores at once).
    fn linger(&self) -> Option<Duration> {
        None
    }
    /// Removes the UVEs this collector's previous run left (at start, before any generator is
    /// connected: each resynchronises its own when it connects). Returns the rows removed.
    fn clear_uves(&mut self) -> Result<usize, StoreError>;
}

/// Starts the writer thread with a queue of `capacity` messages. The thread ends when every
/// [`IngestHandle`] is dropped and the queue is drained.
pub fn start_writer(
    writer: Box<dyn StoreWriter>,
    capacity: usize,
    stats: Arc<Stats>,
) -> std::io::Result<(IngestHandle, JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let st = stats.clone();
    let join =
        std::thread::Builder::new().name("collector-writer".into()).spawn(move || writer_loop(writer, rx, st))?;
    Ok((IngestHandle { tx, stats }, join))
}

fn writer_loop(mut writer: Box<dyn StoreWriter>, mut rx: mpsc::Receiver<IngestMsg>, stats: Arc<Stats>) {
    // A runtime of this thread only, for waiting on the queue with a timeout.
    let rt = match tokio::runtime::Builder::new_current_thread().enable_time().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("collector: the writer cannot start its timer: {e}");
            return;
        }
    };
    let linger = writer.linger();
    // When the oldest data written since the last flush must be flushed.
    let mut deadline: Option<std::time::Instant> = None;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        if deadline.is_some_and(|d| d <= std::time::Instant::now()) {
            writer.flush(&stats);
            deadline = None;
        }
        let first = match deadline {
            None => rx.blocking_recv(),
            Some(d) => match rt.block_on(async { tokio::time::timeout_at(d.into(), rx.recv()).await }) {
                Ok(m) => m,
                Err(_) => continue,
            },
        };
        let Some(first) = first else { break };
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        writer.write(&batch, &stats);
        if batch.iter().any(|m| matches!(m, IngestMsg::Flush(_))) {
            writer.commit(&stats);
            deadline = None;
        } else if deadline.is_none() {
            deadline = linger.map(|l| std::time::Instant::now() + l);
        }
        stats.writer_batches.fetch_add(1, Relaxed);
        for m in batch.drain(..) {
            if let IngestMsg::Flush(reply) = m {
                let _ = reply.send(());
            }
        }
    }
    writer.commit(&stats);
}
