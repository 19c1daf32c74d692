//! The path from Sandesh sessions to the database: a bounded channel and one writer thread.
//!
//! Sessions `send` into the channel; when the writer falls behind the channel fills, `send`
//! waits, the session stops reading its socket and TCP flow control pushes back on the
//! generator — memory stays bounded: the channel capacity plus the one batch of at most
//! [`MAX_BATCH`] messages the writer is applying (each message is at most one frame). The writer takes whatever is queued (up to [`MAX_BATCH`] messages) and applies it in
//! one transaction; the order of messages is preserved, so a generator's UVE removal on
//! disconnect is ordered after everything that generator sent before.

use crate::model::{FlowRecordInput, GeneratorKey, TraceInput, UveUpdate};
use crate::stats::Stats;
use crate::store::{StoreError, Tx, Writer};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::thread::JoinHandle;
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
    /// Remove every UVE of a generator (it disconnected, or reconnected and will resync).
    DeleteGenerator(GeneratorKey),
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

/// Starts the writer thread with a queue of `capacity` messages. The thread ends when every
/// [`IngestHandle`] is dropped and the queue is drained.
pub fn start_writer(
    writer: Writer,
    capacity: usize,
    stats: Arc<Stats>,
) -> std::io::Result<(IngestHandle, JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let st = stats.clone();
    let join =
        std::thread::Builder::new().name("collector-writer".into()).spawn(move || writer_loop(writer, rx, st))?;
    Ok((IngestHandle { tx, stats }, join))
}

fn apply(t: &mut Tx<'_>, msg: &IngestMsg, stats: &Stats) -> Result<(), StoreError> {
    match msg {
        IngestMsg::Flows(recs) => {
            for r in recs {
                t.apply_flow_log(r)?;
            }
            stats.flow_records_stored.fetch_add(recs.len() as u64, Relaxed);
        }
        IngestMsg::Uve(g, u) => {
            t.set_uve(g, u)?;
            stats.uve_updates_stored.fetch_add(1, Relaxed);
        }
        IngestMsg::DeleteGenerator(g) => {
            let n = t.delete_generator_uves(g)?;
            stats.uve_rows_removed.fetch_add(n as u64, Relaxed);
        }
        IngestMsg::Traces(tr) => {
            let n = t.add_trace_steps(tr)?;
            stats.trace_steps_stored.fetch_add(n as u64, Relaxed);
        }
        IngestMsg::Purge(horizon) => {
            let (r, s) = t.purge_flows_before(*horizon)?;
            stats.flow_records_purged.fetch_add(r as u64, Relaxed);
            stats.flow_series_purged.fetch_add(s as u64, Relaxed);
            let n = t.purge_traces_before(*horizon)?;
            stats.traces_purged.fetch_add(n as u64, Relaxed);
        }
        IngestMsg::Flush(_) => {}
    }
    Ok(())
}

fn writer_loop(mut writer: Writer, mut rx: mpsc::Receiver<IngestMsg>, stats: Arc<Stats>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        let result = writer.transaction(|t| {
            for m in &batch {
                apply(t, m, &stats)?;
            }
            Ok(())
        });
        if let Err(e) = result {
            // The whole batch was rolled back; apply message by message so one bad message
            // does not lose the others.
            stats.store_errors.fetch_add(1, Relaxed);
            eprintln!("collector: storing a batch of {} messages failed: {e}; retrying one by one", batch.len());
            for m in &batch {
                if let Err(e) = writer.transaction(|t| apply(t, m, &stats)) {
                    stats.store_errors.fetch_add(1, Relaxed);
                    if let IngestMsg::Flows(r) = m {
                        stats.flow_records_lost.fetch_add(r.len() as u64, Relaxed);
                    }
                    if let IngestMsg::Traces(t) = m {
                        stats.trace_steps_lost.fetch_add(t.data.steps.len() as u64, Relaxed);
                    }
                    eprintln!("collector: storing a message failed: {e}");
                }
            }
        }
        stats.writer_batches.fetch_add(1, Relaxed);
        for m in batch.drain(..) {
            if let IngestMsg::Flush(reply) = m {
                let _ = reply.send(());
            }
        }
    }
}
