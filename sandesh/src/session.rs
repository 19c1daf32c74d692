//! The generator session: the client side of the Sandesh TCP protocol, on its own thread.
//!
//! States ([`SessionState`]) follow the reference client state machine: **Idle** (waiting out
//! the backoff) → **Connect** (TCP connect to the current collector) → **ClientInit** (the
//! control handshake: `SandeshCtrlClientToServer` is the only thing written until the
//! collector's `SandeshCtrlServerToClient` with `success=true` arrives) → **Established**.
//! Any failure or close goes back to Idle, rotates to the next collector in the list and waits
//! `min(base · 2^(n−1), max)` after the n-th consecutive failure (1, 2, 4, 8, 16, 30 s with the
//! defaults); the count resets when a session is established.
//!
//! What callers hand over, and what happens to it:
//! * **Flow records** ([`SessionHandle::send_flow`]) go into a bounded buffer (a lock-free
//!   bounded channel) and never block the caller. The session moves them into the send queue
//!   in `FlowLogDataObject`s of at most [`SessionConfig::flows_per_message`] records while it is
//!   Established and the queue is below its first watermark. While the collector is away they
//!   stay in the buffer and are sent after the reconnect; a record that finds the buffer full
//!   is dropped and counted ([`SessionStats::flows_dropped`]). Frames already queued when a
//!   connection drops are kept and re-sent whole on the next one.
//! * **Trace messages** ([`SessionHandle::send_trace`]) go into their own bounded buffer and
//!   travel like flow records (moved into the send queue only below the first watermark,
//!   kept across outages and reconnects); a message that finds the buffer full is handed
//!   back to the caller, which keeps it (the trace exporter then stops reading its rings, so
//!   back-pressure ends in the rings, where overwritten steps are counted as lost).
//! * **UVEs** ([`SessionHandle::update_uve`]) go into a cache keyed by (UVE type, key). Changed
//!   entries are sent while Established; after every (re)connect the whole cache is re-sent
//!   with the SYNC hint. A UVE with `deleted=true` is sent once and leaves the cache.
//!
//! The send queue ([`crate::sendq`]) applies the level watermarks; reaching `SYS_UVE` closes
//! the session to force a resync, as the reference does.
//!
//! Sockets get the reference's TCP keepalive (15 s idle, 3 s interval, 5 probes) and a 30 s
//! `TCP_USER_TIMEOUT`, so a collector that vanished without a reset is noticed.
//!
//! Not covered: a frame the kernel accepted but the collector never read when the connection
//! died is lost (the protocol has no application-level acknowledgement); TLS.

use crate::decode::DecodeError;
use crate::encode::EncodeError;
use crate::field::SandeshStruct;
use crate::frame::{encode_frame_into, FrameDecoder};
use crate::messages::{
    decode_message, encode_message, uve_key, FlowLogData, FlowLogDataObject, GeneratorId, Message, PacketTraceData,
    SandeshCtrlClientToServer, SandeshHeader, SandeshMessage, CTRL_LEVEL,
};
use crate::model::{hints, level, MessageDef, MessageKind, StructValue};
use crate::sendq::{FrameKind, SendQueue, Watermarks};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use thiserror::Error;

/// The collector port the reference uses.
pub const DEFAULT_COLLECTOR_PORT: u16 = 8086;

/// Session configuration.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Collectors, tried in order and rotated through on failure.
    pub collectors: Vec<SocketAddr>,
    /// Who we are.
    pub generator: GeneratorId,
    /// Process id sent in the handshake.
    pub pid: u32,
    /// Introspect port sent in the handshake.
    pub http_port: u32,
    /// UVE type names sent in the handshake.
    pub uve_types: Vec<String>,
    /// First backoff delay.
    pub backoff_base: Duration,
    /// Largest backoff delay.
    pub backoff_max: Duration,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// How long to wait for the collector's handshake reply.
    pub handshake_timeout: Duration,
    /// Flow records buffered (across outages) before new ones are dropped.
    pub flow_buffer: usize,
    /// Records per `FlowLogDataObject`.
    pub flows_per_message: usize,
    /// Trace messages (`PacketTraceData`) buffered before the caller gets them back.
    pub trace_buffer: usize,
    /// Send-queue watermarks.
    pub watermarks: Watermarks,
    /// TCP keepalive: idle time, probe interval, probes (reference: 15 s, 3 s, 5).
    pub keepalive: (Duration, Duration, u32),
    /// `TCP_USER_TIMEOUT`: unacknowledged data older than this closes the connection
    /// (reference: 30 s).
    pub user_timeout: Duration,
}

impl SessionConfig {
    /// Defaults: collector 127.0.0.1:8086, backoff 1 s … 30 s, 16 records per message, a
    /// 65 536-record flow buffer, the reference watermarks.
    pub fn new(generator: GeneratorId) -> Self {
        Self {
            collectors: vec![SocketAddr::from(([127, 0, 0, 1], DEFAULT_COLLECTOR_PORT))],
            generator,
            pid: std::process::id(),
            http_port: 0,
            uve_types: vec!["UVEVMIStats".into(), "VrouterStats".into()],
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(30),
            flow_buffer: 65_536,
            flows_per_message: 16,
            trace_buffer: 1024,
            watermarks: Watermarks::default(),
            keepalive: (Duration::from_secs(15), Duration::from_secs(3), 5),
            user_timeout: Duration::from_secs(30),
        }
    }

    /// The delay before the next attempt after `failures` consecutive failures (≥ 1).
    pub fn backoff(&self, failures: u32) -> Duration {
        let shift = failures.saturating_sub(1).min(20);
        self.backoff_base.saturating_mul(1u32 << shift).min(self.backoff_max)
    }

    fn validate(&self) -> Result<(), SessionError> {
        let bad = |field: &'static str, message: &str| Err(SessionError::Config { field, message: message.to_owned() });
        if self.collectors.is_empty() {
            return bad("collectors", "at least one collector is required");
        }
        if self.generator.node_type.is_empty() {
            return bad("node_type", "must not be empty (the collector rejects it)");
        }
        if self.generator.instance_id.is_empty() {
            return bad("instance_id", "must not be empty (the collector rejects it)");
        }
        if self.flow_buffer == 0 {
            return bad("flow_buffer", "must be at least 1");
        }
        if self.trace_buffer == 0 {
            return bad("trace_buffer", "must be at least 1");
        }
        if self.flows_per_message == 0 {
            return bad("flows_per_message", "must be at least 1");
        }
        if self.backoff_base.is_zero() || self.backoff_max < self.backoff_base {
            return bad("backoff", "base must be > 0 and <= max");
        }
        Ok(())
    }
}

/// Session errors.
#[derive(Debug, Error)]
pub enum SessionError {
    /// Invalid configuration.
    #[error("session config: {field}: {message}")]
    Config {
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The message is not a UVE (header Type UVE with a `key=` field in its data struct).
    #[error("{0} is not a UVE message")]
    NotUve(&'static str),
    /// Encoding failed.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The session thread could not be started.
    #[error("cannot start the session thread: {0}")]
    Spawn(#[source] std::io::Error),
}

/// Client states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SessionState {
    /// Waiting before the next connection attempt.
    Idle = 0,
    /// TCP connect in progress.
    Connect = 1,
    /// Handshake sent, waiting for the reply.
    ClientInit = 2,
    /// Handshake done; everything is sent.
    Established = 3,
}

impl SessionState {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Connect,
            2 => Self::ClientInit,
            3 => Self::Established,
            _ => Self::Idle,
        }
    }

    /// Name for displays.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "Idle",
            Self::Connect => "Connect",
            Self::ClientInit => "ClientInit",
            Self::Established => "Established",
        }
    }
}

/// Something that happened to the session (the last [`EVENT_LOG_LEN`] are kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// Waiting this long before the next attempt.
    Backoff(Duration),
    /// Connecting to this collector.
    Connecting(SocketAddr),
    /// The connection attempt failed.
    ConnectFailed(SocketAddr, String),
    /// Keepalive / user timeout could not be set on the connection (it is used anyway).
    SocketOptions(SocketAddr, String),
    /// The handshake failed or timed out.
    HandshakeFailed(SocketAddr, String),
    /// Established with this collector.
    Established(SocketAddr),
    /// The established session ended.
    Disconnected(SocketAddr, String),
}

/// Events kept by the session.
pub const EVENT_LOG_LEN: usize = 256;

/// Counters; all cumulative except the gauges noted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Current state.
    pub state: Option<SessionState>,
    /// Index of the current collector in the list.
    pub collector_index: u64,
    /// Flow records accepted into the buffer.
    pub flows_enqueued: u64,
    /// Flow records whose frame was completely written to the socket.
    pub flows_sent: u64,
    /// Flow records dropped because the buffer was full.
    pub flows_dropped: u64,
    /// Gauge: flow records waiting (buffer plus send queue).
    pub flows_buffered: u64,
    /// Flow records dropped by the send-queue level.
    pub flows_level_dropped: u64,
    /// Flow frames sent.
    pub flow_messages_sent: u64,
    /// Trace messages accepted into the buffer.
    pub traces_enqueued: u64,
    /// Trace messages whose frame was completely written to the socket.
    pub traces_sent: u64,
    /// Trace steps in those messages.
    pub trace_steps_sent: u64,
    /// Gauge: trace messages waiting (buffer plus send queue).
    pub traces_buffered: u64,
    /// Trace messages dropped (send-queue level, or not encodable).
    pub traces_dropped: u64,
    /// Trace messages handed back because the buffer was full.
    pub traces_refused: u64,
    /// UVE frames sent (updates and resyncs).
    pub uves_sent: u64,
    /// UVE frames sent with the SYNC hint.
    pub uve_syncs_sent: u64,
    /// Gauge: UVEs in the cache.
    pub uves_cached: u64,
    /// Sessions established.
    pub established: u64,
    /// Connection attempts.
    pub connect_attempts: u64,
    /// Failed connection attempts.
    pub connect_failures: u64,
    /// Failed handshakes.
    pub handshake_failures: u64,
    /// Established sessions that ended.
    pub disconnects: u64,
    /// Sessions closed because the send queue reached the SYS_UVE watermark.
    pub forced_resyncs: u64,
    /// Bytes written to collectors.
    pub bytes_sent: u64,
    /// Messages received from the collector after the handshake.
    pub messages_received: u64,
    /// Gauge: send queue bytes.
    pub send_queue_bytes: u64,
    /// Gauge: the send queue's sending level.
    pub sending_level: i64,
}

#[derive(Default)]
struct Counters {
    collector_index: AtomicU64,
    flows_enqueued: AtomicU64,
    flows_dequeued: AtomicU64,
    flows_sent: AtomicU64,
    flows_dropped: AtomicU64,
    flows_in_queue: AtomicU64,
    flows_level_dropped: AtomicU64,
    flow_messages_sent: AtomicU64,
    traces_enqueued: AtomicU64,
    traces_dequeued: AtomicU64,
    traces_sent: AtomicU64,
    trace_steps_sent: AtomicU64,
    traces_in_queue: AtomicU64,
    traces_dropped: AtomicU64,
    traces_refused: AtomicU64,
    uves_sent: AtomicU64,
    uve_syncs_sent: AtomicU64,
    established: AtomicU64,
    connect_attempts: AtomicU64,
    connect_failures: AtomicU64,
    handshake_failures: AtomicU64,
    disconnects: AtomicU64,
    forced_resyncs: AtomicU64,
    bytes_sent: AtomicU64,
    messages_received: AtomicU64,
    send_queue_bytes: AtomicU64,
    sending_level: AtomicU64,
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// One cached UVE.
struct UveEntry {
    def: &'static MessageDef,
    body: StructValue,
    dirty: bool,
    deleted: bool,
}

struct Shared {
    counters: Counters,
    state: AtomicU8,
    stop: AtomicBool,
    /// Flush deadline for a graceful stop (set with `stop`).
    flush_until: Mutex<Option<Instant>>,
    uves: Mutex<BTreeMap<(&'static str, String), UveEntry>>,
    events: Mutex<VecDeque<(Instant, SessionEvent)>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking holder cannot leave these maps half-updated in a way that matters more
    // than losing the session; keep going with the data.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn event(&self, e: SessionEvent) {
        let mut ev = lock(&self.events);
        if ev.len() == EVENT_LOG_LEN {
            ev.pop_front();
        }
        ev.push_back((Instant::now(), e));
    }

    fn set_state(&self, s: SessionState) {
        self.state.store(s as u8, Ordering::Relaxed);
    }
}

/// The caller's side of a running session. Cheap to share (`&self` methods, `Sync`).
pub struct SessionHandle {
    shared: Arc<Shared>,
    flows: SyncSender<FlowLogData>,
    traces: SyncSender<PacketTraceData>,
    thread: Option<JoinHandle<()>>,
}

impl SessionHandle {
    /// Starts the session thread.
    pub fn start(config: SessionConfig) -> Result<Self, SessionError> {
        config.validate()?;
        let (tx, rx) = mpsc::sync_channel(config.flow_buffer);
        let (ttx, trx) = mpsc::sync_channel(config.trace_buffer);
        let shared = Arc::new(Shared {
            counters: Counters::default(),
            state: AtomicU8::new(SessionState::Idle as u8),
            stop: AtomicBool::new(false),
            flush_until: Mutex::new(None),
            uves: Mutex::new(BTreeMap::new()),
            events: Mutex::new(VecDeque::new()),
        });
        shared.counters.sending_level.store(level::INVALID as u64, Ordering::Relaxed);
        let worker = Worker {
            sendq: SendQueue::new(config.watermarks.clone()),
            config,
            shared: Arc::clone(&shared),
            flows: rx,
            traces: trx,
            pending: Vec::new(),
            seq: HashMap::new(),
            scratch: String::new(),
            successful_connections: 0,
        };
        let thread = std::thread::Builder::new()
            .name("sandesh-session".into())
            .spawn(move || worker.run())
            .map_err(SessionError::Spawn)?;
        Ok(Self { shared, flows: tx, traces: ttx, thread: Some(thread) })
    }

    /// Hands a trace message to the session without blocking. When the buffer is full (or
    /// the session has stopped) the message comes back (counted in
    /// [`SessionStats::traces_refused`]) for the caller to keep and offer again later.
    pub fn send_trace(&self, msg: PacketTraceData) -> Result<(), PacketTraceData> {
        match self.traces.try_send(msg) {
            Ok(()) => {
                add(&self.shared.counters.traces_enqueued, 1);
                Ok(())
            }
            Err(TrySendError::Full(m)) | Err(TrySendError::Disconnected(m)) => {
                add(&self.shared.counters.traces_refused, 1);
                Err(m)
            }
        }
    }

    /// Hands a flow record to the session without blocking. Returns false (and counts the
    /// drop) when the buffer is full.
    pub fn send_flow(&self, record: FlowLogData) -> bool {
        match self.flows.try_send(record) {
            Ok(()) => {
                add(&self.shared.counters.flows_enqueued, 1);
                true
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                add(&self.shared.counters.flows_dropped, 1);
                false
            }
        }
    }

    /// Stores a UVE in the cache (replacing the previous value for its key) and marks it for
    /// sending. A UVE whose data has `deleted=true` is sent once and then forgotten. Takes a
    /// short lock shared only with the session thread; meant for the agent thread, not the
    /// forwarding path.
    pub fn update_uve<M: SandeshMessage>(&self, msg: &M) -> Result<(), SessionError> {
        let def = M::MESSAGE;
        let body = msg.to_struct_value();
        if def.kind != MessageKind::Uve {
            return Err(SessionError::NotUve(def.body.name));
        }
        let key = uve_key(&body).ok_or(SessionError::NotUve(def.body.name))?.1.to_owned();
        let deleted = matches!(
            body.fields.first().and_then(Option::as_ref),
            Some(crate::model::Value::Struct(d))
                if d.get("deleted") == Some(&crate::model::Value::Bool(true))
        );
        lock(&self.shared.uves).insert((def.body.name, key), UveEntry { def, body, dirty: true, deleted });
        Ok(())
    }

    /// The current state.
    pub fn state(&self) -> SessionState {
        SessionState::from_u8(self.shared.state.load(Ordering::Relaxed))
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> SessionStats {
        let c = &self.shared.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let enq = g(&c.flows_enqueued);
        let deq = g(&c.flows_dequeued);
        let tenq = g(&c.traces_enqueued);
        let tdeq = g(&c.traces_dequeued);
        SessionStats {
            state: Some(self.state()),
            collector_index: g(&c.collector_index),
            flows_enqueued: enq,
            flows_sent: g(&c.flows_sent),
            flows_dropped: g(&c.flows_dropped),
            flows_buffered: enq.saturating_sub(deq) + g(&c.flows_in_queue),
            flows_level_dropped: g(&c.flows_level_dropped),
            flow_messages_sent: g(&c.flow_messages_sent),
            traces_enqueued: tenq,
            traces_sent: g(&c.traces_sent),
            trace_steps_sent: g(&c.trace_steps_sent),
            traces_buffered: tenq.saturating_sub(tdeq) + g(&c.traces_in_queue),
            traces_dropped: g(&c.traces_dropped),
            traces_refused: g(&c.traces_refused),
            uves_sent: g(&c.uves_sent),
            uve_syncs_sent: g(&c.uve_syncs_sent),
            uves_cached: lock(&self.shared.uves).len() as u64,
            established: g(&c.established),
            connect_attempts: g(&c.connect_attempts),
            connect_failures: g(&c.connect_failures),
            handshake_failures: g(&c.handshake_failures),
            disconnects: g(&c.disconnects),
            forced_resyncs: g(&c.forced_resyncs),
            bytes_sent: g(&c.bytes_sent),
            messages_received: g(&c.messages_received),
            send_queue_bytes: g(&c.send_queue_bytes),
            sending_level: g(&c.sending_level) as i32 as i64,
        }
    }

    /// The recent session events, oldest first.
    pub fn events(&self) -> Vec<(Instant, SessionEvent)> {
        lock(&self.shared.events).iter().cloned().collect()
    }

    /// Stops the session: if Established, keeps sending buffered records for up to `flush`,
    /// then closes and joins the thread.
    pub fn shutdown(mut self, flush: Duration) {
        self.stop(flush);
    }

    fn stop(&mut self, flush: Duration) {
        *lock(&self.shared.flush_until) = Some(Instant::now() + flush);
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for SessionHandle {
    fn drop(&mut self) {
        self.stop(Duration::ZERO);
    }
}

/// Sets TCP keepalive (so a collector that vanished without a reset is noticed while the
/// session is idle) and `TCP_USER_TIMEOUT` (so one that stopped acknowledging is noticed while
/// data is pending).
pub fn tune_socket(
    stream: &TcpStream,
    keepalive: (Duration, Duration, u32),
    user_timeout: Duration,
) -> std::io::Result<()> {
    let s = socket2::SockRef::from(stream);
    let ka = socket2::TcpKeepalive::new().with_time(keepalive.0).with_interval(keepalive.1).with_retries(keepalive.2);
    s.set_tcp_keepalive(&ka)?;
    s.set_tcp_user_timeout(Some(user_timeout))?;
    Ok(())
}

/// Why an established or initialising connection ended.
enum Ended {
    Stop,
    Closed(String),
}

struct Worker {
    config: SessionConfig,
    shared: Arc<Shared>,
    flows: Receiver<FlowLogData>,
    traces: Receiver<PacketTraceData>,
    /// Records taken from the buffer, not yet encoded.
    pending: Vec<FlowLogData>,
    sendq: SendQueue,
    seq: HashMap<&'static str, i32>,
    scratch: String,
    successful_connections: u32,
}

fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

impl Worker {
    fn stopping(&self) -> bool {
        self.shared.stop.load(Ordering::Acquire)
    }

    fn flush_expired(&self) -> bool {
        lock(&self.shared.flush_until).is_none_or(|t| Instant::now() >= t)
    }

    fn next_seq(&mut self, name: &'static str) -> i32 {
        let s = self.seq.entry(name).or_insert(0);
        *s = s.wrapping_add(1);
        *s
    }

    /// Sleeps up to `d`, returning early (true) when asked to stop.
    fn sleep(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        loop {
            if self.stopping() {
                return true;
            }
            let now = Instant::now();
            if now >= end {
                return false;
            }
            std::thread::sleep((end - now).min(Duration::from_millis(10)));
        }
    }

    fn publish_queue(&self) {
        let c = &self.shared.counters;
        c.send_queue_bytes.store(self.sendq.bytes() as u64, Ordering::Relaxed);
        c.sending_level.store(self.sendq.sending_level() as u32 as u64, Ordering::Relaxed);
        c.flows_in_queue.store(self.sendq.flow_records() + self.pending.len() as u64, Ordering::Relaxed);
        c.traces_in_queue.store(self.sendq.trace_messages(), Ordering::Relaxed);
    }

    fn run(mut self) {
        let mut failures: u32 = 0;
        let mut idx = 0usize;
        let n = self.config.collectors.len();
        loop {
            if self.stopping() {
                break;
            }
            if failures > 0 {
                self.shared.set_state(SessionState::Idle);
                let d = self.config.backoff(failures);
                self.shared.event(SessionEvent::Backoff(d));
                if self.sleep(d) {
                    break;
                }
            }
            let addr = self.config.collectors[idx];
            self.shared.counters.collector_index.store(idx as u64, Ordering::Relaxed);
            self.shared.set_state(SessionState::Connect);
            self.shared.event(SessionEvent::Connecting(addr));
            add(&self.shared.counters.connect_attempts, 1);
            let stream = match TcpStream::connect_timeout(&addr, self.config.connect_timeout) {
                Ok(s) => s,
                Err(e) => {
                    add(&self.shared.counters.connect_failures, 1);
                    self.shared.event(SessionEvent::ConnectFailed(addr, e.to_string()));
                    failures = failures.saturating_add(1);
                    idx = (idx + 1) % n;
                    continue;
                }
            };
            if let Err(e) = tune_socket(&stream, self.config.keepalive, self.config.user_timeout) {
                // Not fatal: the session works without them, it only notices a dead peer later.
                self.shared.event(SessionEvent::SocketOptions(addr, e.to_string()));
            }
            self.shared.set_state(SessionState::ClientInit);
            let mut frames = FrameDecoder::new();
            match self.handshake(&stream, &mut frames) {
                Ok(()) => {}
                Err(Ended::Stop) => break,
                Err(Ended::Closed(why)) => {
                    add(&self.shared.counters.handshake_failures, 1);
                    self.shared.event(SessionEvent::HandshakeFailed(addr, why));
                    failures = failures.saturating_add(1);
                    idx = (idx + 1) % n;
                    continue;
                }
            }
            // (The failure count restarts here: the session ended below counts as the first.)
            self.successful_connections = self.successful_connections.wrapping_add(1);
            add(&self.shared.counters.established, 1);
            self.shared.set_state(SessionState::Established);
            self.shared.event(SessionEvent::Established(addr));
            let end = self.established(stream, frames);
            // Keep flow frames for the next connection; UVE frames are resynced from the cache.
            self.sendq.retain_flows();
            self.publish_queue();
            match end {
                Ended::Stop => break,
                Ended::Closed(why) => {
                    add(&self.shared.counters.disconnects, 1);
                    self.shared.event(SessionEvent::Disconnected(addr, why));
                    failures = 1;
                    idx = (idx + 1) % n;
                }
            }
        }
        self.shared.set_state(SessionState::Idle);
    }

    /// ClientInit: writes the control message, then reads until the collector's reply.
    fn handshake(&mut self, stream: &TcpStream, frames: &mut FrameDecoder) -> Result<(), Ended> {
        let io = |e: std::io::Error| Ended::Closed(e.to_string());
        let hello = SandeshCtrlClientToServer {
            source: self.config.generator.source.clone(),
            module_name: self.config.generator.module.clone(),
            sucessful_connections: self.successful_connections.wrapping_add(1),
            uve_types: self.config.uve_types.clone(),
            pid: self.config.pid,
            http_port: self.config.http_port,
            node_type_name: self.config.generator.node_type.clone(),
            instance_id_name: self.config.generator.instance_id.clone(),
        };
        let seq = self.next_seq(SandeshCtrlClientToServer::STRUCT.name);
        let header = self.config.generator.header::<SandeshCtrlClientToServer>(now_us(), seq, CTRL_LEVEL, 0);
        let mut out = Vec::new();
        encode_message(&mut out, &mut self.scratch, &header, &hello).map_err(|e| Ended::Closed(e.to_string()))?;
        let deadline = Instant::now() + self.config.handshake_timeout;
        stream.set_nodelay(true).map_err(io)?;
        stream.set_write_timeout(Some(self.config.handshake_timeout)).map_err(io)?;
        let mut s = stream;
        s.write_all(&out).map_err(io)?;
        add(&self.shared.counters.bytes_sent, out.len() as u64);
        let mut buf = [0u8; 4096];
        loop {
            if self.stopping() {
                return Err(Ended::Stop);
            }
            match frames.next_frame() {
                Err(e) => return Err(Ended::Closed(format!("bad frame from collector: {e}"))),
                Ok(Some(body)) => {
                    return match decode_message(&body) {
                        Ok(d) => match d.message {
                            Message::CtrlServerToClient(r) if r.success => Ok(()),
                            Message::CtrlServerToClient(_) => {
                                Err(Ended::Closed("collector refused the session".into()))
                            }
                            other => Err(Ended::Closed(format!("{} before the handshake reply", other.name()))),
                        },
                        Err(e) => Err(Ended::Closed(format!("bad handshake reply: {e}"))),
                    }
                }
                Ok(None) => {}
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Ended::Closed("handshake timed out".into()));
            }
            stream.set_read_timeout(Some((deadline - now).min(Duration::from_millis(50)))).map_err(io)?;
            match s.read(&mut buf) {
                Ok(0) => return Err(Ended::Closed("collector closed the connection".into())),
                Ok(n) => frames.push(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(io(e)),
            }
        }
    }

    fn header_for(&mut self, def: &'static MessageDef, lvl: i32, extra: i32) -> SandeshHeader {
        let seq = self.next_seq(def.body.name);
        self.config.generator.header_for(def, now_us(), seq, lvl, extra)
    }

    fn encode_uve(&mut self, def: &'static MessageDef, body: &StructValue, sync: bool) -> Option<Vec<u8>> {
        let extra = if sync { hints::SYNC } else { 0 };
        let header = self.header_for(def, level::SYS_NOTICE, extra);
        self.scratch.clear();
        let mut out = Vec::new();
        crate::encode::encode_body(&mut self.scratch, &header.to_struct_value(), def, body).ok()?;
        encode_frame_into(&mut out, self.scratch.as_bytes()).ok()?;
        Some(out)
    }

    /// Frames for every cached UVE with the SYNC hint; clears the dirty marks and forgets
    /// deleted entries.
    fn sync_frames(&mut self) -> Vec<(Vec<u8>, FrameKind)> {
        let entries: Vec<(&'static MessageDef, StructValue)> = {
            let mut cache = lock(&self.shared.uves);
            cache.retain(|_, e| !e.deleted);
            cache
                .values_mut()
                .map(|e| {
                    e.dirty = false;
                    (e.def, e.body.clone())
                })
                .collect()
        };
        entries
            .into_iter()
            .filter_map(|(def, body)| self.encode_uve(def, &body, true))
            .map(|f| (f, FrameKind::Uve { sync: true }))
            .collect()
    }

    /// Queues the UVEs changed since they were last sent.
    fn queue_dirty_uves(&mut self) -> bool {
        let entries: Vec<(&'static MessageDef, StructValue)> = {
            let mut cache = lock(&self.shared.uves);
            let mut out = Vec::new();
            cache.retain(|_, e| {
                if e.dirty {
                    e.dirty = false;
                    out.push((e.def, e.body.clone()));
                }
                !e.deleted
            });
            out
        };
        let any = !entries.is_empty();
        for (def, body) in entries {
            if let Some(f) = self.encode_uve(def, &body, false) {
                // UVEs are never dropped by level.
                let _ = self.sendq.push(f, FrameKind::Uve { sync: false }, level::SYS_NOTICE);
            }
        }
        any
    }

    /// Takes records from the buffer into `pending` and queues full (or final) batches while
    /// the send queue is below its first watermark. Returns whether anything was queued.
    fn queue_flows(&mut self, wait: Duration) -> bool {
        let per = self.config.flows_per_message;
        let admit = self.config.watermarks.first_rising();
        let mut queued = false;
        let mut waited = false;
        while self.sendq.bytes() < admit {
            while self.pending.len() < per {
                match self.flows.try_recv() {
                    Ok(r) => {
                        add(&self.shared.counters.flows_dequeued, 1);
                        self.pending.push(r);
                    }
                    Err(_) => break,
                }
            }
            if self.pending.is_empty() && !waited && !queued && self.sendq.is_empty() {
                // Nothing to do: block briefly for the next record.
                waited = true;
                match self.flows.recv_timeout(wait) {
                    Ok(r) => {
                        add(&self.shared.counters.flows_dequeued, 1);
                        self.pending.push(r);
                        continue;
                    }
                    Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {}
                }
            }
            if self.pending.is_empty() {
                break;
            }
            let batch = std::mem::take(&mut self.pending);
            let records = batch.len() as u32;
            let msg = FlowLogDataObject { flowdata: batch };
            let seq = self.next_seq(FlowLogDataObject::STRUCT.name);
            let header = self.config.generator.header::<FlowLogDataObject>(now_us(), seq, level::SYS_INFO, 0);
            let mut out = Vec::new();
            match encode_message(&mut out, &mut self.scratch, &header, &msg) {
                Ok(_) => {
                    if self.sendq.push(out, FrameKind::Flow { records }, level::SYS_INFO).is_err() {
                        add(&self.shared.counters.flows_level_dropped, u64::from(records));
                    }
                }
                // A record that cannot be encoded (an oversized frame) is dropped and counted.
                Err(_) => add(&self.shared.counters.flows_dropped, u64::from(records)),
            }
            queued = true;
        }
        queued
    }

    /// Moves trace messages from their buffer into the send queue while it is below its
    /// first watermark. Returns whether anything was queued.
    fn queue_traces(&mut self) -> bool {
        let admit = self.config.watermarks.first_rising();
        let mut queued = false;
        while self.sendq.bytes() < admit {
            let Ok(msg) = self.traces.try_recv() else {
                break;
            };
            add(&self.shared.counters.traces_dequeued, 1);
            let steps = msg.steps.len() as u32;
            let seq = self.next_seq(PacketTraceData::STRUCT.name);
            let header = self.config.generator.header::<PacketTraceData>(now_us(), seq, level::SYS_INFO, 0);
            let mut out = Vec::new();
            match encode_message(&mut out, &mut self.scratch, &header, &msg) {
                Ok(_) => {
                    if self.sendq.push(out, FrameKind::Trace { steps }, level::SYS_INFO).is_err() {
                        add(&self.shared.counters.traces_dropped, 1);
                    }
                }
                Err(_) => add(&self.shared.counters.traces_dropped, 1),
            }
            queued = true;
        }
        queued
    }

    /// Established: write the resync, then flows and UVE updates as they come.
    fn established(&mut self, stream: TcpStream, mut frames: FrameDecoder) -> Ended {
        if let Err(e) = stream.set_nonblocking(true) {
            return Ended::Closed(e.to_string());
        }
        let sync = self.sync_frames();
        self.sendq.prepend(sync);
        let mut s = &stream;
        let mut buf = [0u8; 4096];
        let mut stop_seen = false;
        loop {
            if self.stopping() {
                if !stop_seen {
                    stop_seen = true;
                }
                let c = &self.shared.counters;
                let drained = self.sendq.is_empty()
                    && self.pending.is_empty()
                    && c.flows_enqueued.load(Ordering::Relaxed) == c.flows_dequeued.load(Ordering::Relaxed)
                    && c.traces_enqueued.load(Ordering::Relaxed) == c.traces_dequeued.load(Ordering::Relaxed);
                if drained || self.flush_expired() {
                    return Ended::Stop;
                }
            }
            let mut progress = self.queue_dirty_uves();
            // Write as much as the socket takes.
            while let Some(head) = self.sendq.head() {
                match s.write(head) {
                    Ok(0) => return Ended::Closed("socket write returned 0".into()),
                    Ok(n) => {
                        progress = true;
                        add(&self.shared.counters.bytes_sent, n as u64);
                        match self.sendq.advance(n) {
                            Some(FrameKind::Flow { records }) => {
                                add(&self.shared.counters.flows_sent, u64::from(records));
                                add(&self.shared.counters.flow_messages_sent, 1);
                            }
                            Some(FrameKind::Trace { steps }) => {
                                add(&self.shared.counters.traces_sent, 1);
                                add(&self.shared.counters.trace_steps_sent, u64::from(steps));
                            }
                            Some(FrameKind::Uve { sync }) => {
                                add(&self.shared.counters.uves_sent, 1);
                                if sync {
                                    add(&self.shared.counters.uve_syncs_sent, 1);
                                }
                            }
                            None => {}
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Ended::Closed(format!("write: {e}")),
                }
            }
            // Read what the collector sends (and notice when it goes away).
            loop {
                match s.read(&mut buf) {
                    Ok(0) => return Ended::Closed("collector closed the connection".into()),
                    Ok(n) => {
                        frames.push(&buf[..n]);
                        progress = true;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Ended::Closed(format!("read: {e}")),
                }
            }
            loop {
                match frames.next_frame() {
                    Ok(Some(body)) => {
                        // Known or not, a well-framed message is counted and otherwise ignored
                        // (introspect requests are not served here).
                        let _: Result<_, DecodeError> = decode_message(&body);
                        add(&self.shared.counters.messages_received, 1);
                    }
                    Ok(None) => break,
                    Err(e) => return Ended::Closed(format!("bad frame from collector: {e}")),
                }
            }
            if self.sendq.sending_level() == level::SYS_UVE {
                add(&self.shared.counters.forced_resyncs, 1);
                return Ended::Closed("send queue reached the SYS_UVE watermark".into());
            }
            let wait = if progress || !self.sendq.is_empty() { Duration::ZERO } else { Duration::from_millis(5) };
            let traced = self.queue_traces();
            let wait = if traced { Duration::ZERO } else { wait };
            let queued = self.queue_flows(wait) | traced;
            self.publish_queue();
            if !progress && !queued && !self.sendq.is_empty() {
                // The socket is full: let the collector catch up.
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gen() -> GeneratorId {
        GeneratorId { source: "h".into(), module: "m".into(), node_type: "Compute".into(), instance_id: "0".into() }
    }

    #[test]
    fn backoff_sequence_is_1_2_4_8_16_30() {
        let c = SessionConfig::new(gen());
        let secs: Vec<u64> = (1..=8).map(|n| c.backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(c.backoff(u32::MAX).as_secs(), 30);
        let mut fast = SessionConfig::new(gen());
        fast.backoff_base = Duration::from_millis(10);
        fast.backoff_max = Duration::from_millis(300);
        let ms: Vec<u128> = (1..=7).map(|n| fast.backoff(n).as_millis()).collect();
        assert_eq!(ms, [10, 20, 40, 80, 160, 300, 300]);
    }

    #[test]
    fn socket_options_are_the_reference_ones() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let cfg = SessionConfig::new(gen());
        tune_socket(&c, cfg.keepalive, cfg.user_timeout).unwrap();
        let s = socket2::SockRef::from(&c);
        assert!(s.keepalive().unwrap());
        assert_eq!(s.tcp_keepalive_time().unwrap(), Duration::from_secs(15));
        assert_eq!(s.tcp_keepalive_interval().unwrap(), Duration::from_secs(3));
        assert_eq!(s.tcp_keepalive_retries().unwrap(), 5);
        assert_eq!(s.tcp_user_timeout().unwrap(), Some(Duration::from_secs(30)));
    }

    #[test]
    fn config_errors_name_the_field() {
        let mut c = SessionConfig::new(gen());
        c.collectors.clear();
        assert!(SessionHandle::start(c).err().unwrap().to_string().contains("collectors"));
        let mut c = SessionConfig::new(gen());
        c.generator.node_type.clear();
        assert!(SessionHandle::start(c).err().unwrap().to_string().contains("node_type"));
        let mut c = SessionConfig::new(gen());
        c.flow_buffer = 0;
        assert!(SessionHandle::start(c).err().unwrap().to_string().contains("flow_buffer"));
    }

    #[test]
    fn full_buffer_drops_and_counts_without_blocking() {
        let mut c = SessionConfig::new(gen());
        // Nothing listens on port 9 of a reserved test address; the session stays Idle.
        c.collectors = vec!["127.0.0.1:9".parse().unwrap()];
        c.flow_buffer = 5;
        c.backoff_base = Duration::from_millis(50);
        let s = SessionHandle::start(c).unwrap();
        let rec = FlowLogData::new(
            "u".into(),
            1,
            "a".into(),
            "1.1.1.1".parse().unwrap(),
            "b".into(),
            "2.2.2.2".parse().unwrap(),
            6,
            1,
            2,
        );
        let t = Instant::now();
        let accepted = (0..8).filter(|_| s.send_flow(rec.clone())).count();
        assert!(t.elapsed() < Duration::from_millis(100));
        assert_eq!(accepted, 5);
        let st = s.stats();
        assert_eq!((st.flows_enqueued, st.flows_dropped, st.flows_buffered), (5, 3, 5));
        assert!(s.update_uve(&FlowLogDataObject { flowdata: vec![] }).is_err());
    }
}
