//! The server side of Sandesh sessions.
//!
//! Per connection:
//!
//! 1. The first frame must arrive within the handshake timeout and must be
//!    `SandeshCtrlClientToServer`; anything else closes the session (counted as
//!    `handshake_missing`, `handshake_timeouts` or `malformed_frames`). An empty
//!    `node_type_name` or `instance_id_name` is refused: the reply says `success=false` and the
//!    session is closed (`handshake_refused`).
//! 2. The generator is registered under (source, node type, module, instance id). If the same
//!    generator already has a session, that session is told to stop, and this one waits until
//!    it has stopped — so nothing the old session read can land after what the new one sends.
//!    Then every UVE the generator had is removed (it resynchronises them right after the
//!    handshake), and the reply `SandeshCtrlServerToClient` (UVE type info, `success=true`)
//!    goes out.
//! 3. Frames are read with the strict framing of [`sandesh::FrameDecoder`] and decoded with
//!    the strict decoder [`sandesh::decode_message`]. A malformed frame closes the session and
//!    is counted (`malformed_frames`). A well-formed frame of a message type this collector has
//!    no definition for is counted (`messages_ignored`) and skipped. Flow records and UVEs go to
//!    the writer through the bounded ingest queue; when it is full the session stops reading,
//!    and TCP flow control pushes back on the generator.
//! 4. When the connection ends (and it was not replaced by a newer session), the generator's
//!    UVEs are removed.

use crate::ingest::{IngestHandle, IngestMsg};
use crate::model::{uve_update_from_struct, FlowRecordInput, GeneratorKey, UveField, UveValue};
use crate::stats::Stats;
use sandesh::{
    decode_message, encode_message_frame, DecodeErrorKind, FieldType, FlowLogData, FrameDecoder, GeneratorId, Message,
    SandeshCtrlServerToClient, SandeshStruct, StructValue, UVETypeInfo, Value, CTRL_LEVEL,
};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};

/// Session settings.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// `Source` of the control replies.
    pub hostname: String,
    /// How long a new connection may take to complete its handshake.
    pub handshake_timeout: Duration,
    /// Largest accepted frame.
    pub max_frame_len: usize,
}

struct Entry {
    id: u64,
    stop: Arc<Notify>,
    done: watch::Receiver<()>,
}

/// The established sessions, by generator.
#[derive(Default)]
pub struct Registry {
    sessions: Mutex<HashMap<GeneratorKey, Entry>>,
    next_id: AtomicU64,
}

impl Registry {
    /// Generators with an established session.
    pub fn generators(&self) -> Vec<GeneratorKey> {
        let mut v: Vec<_> = self.sessions.lock().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect();
        v.sort();
        v
    }

    fn is_current(&self, gen: &GeneratorKey, id: u64) -> bool {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner()).get(gen).is_some_and(|e| e.id == id)
    }

    fn remove_if_current(&self, gen: &GeneratorKey, id: u64) {
        let mut s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if s.get(gen).is_some_and(|e| e.id == id) {
            s.remove(gen);
        }
    }
}

/// What every session shares.
pub struct Shared {
    /// Settings.
    pub config: SessionConfig,
    /// The writer queue.
    pub ingest: IngestHandle,
    /// Counters.
    pub stats: Arc<Stats>,
    /// Established sessions.
    pub registry: Registry,
    /// Set to true when the collector stops: sessions drain (see [`DRAIN_TIME`]).
    pub shutdown: watch::Sender<bool>,
}

/// On an orderly stop, each session half-closes its connection (the generator sees EOF and
/// starts buffering) and keeps reading and storing for at most this long, so the frames the
/// generator wrote before it noticed are not lost with the socket.
pub const DRAIN_TIME: Duration = Duration::from_secs(2);

/// Accepts connections until the listener fails, one task per session.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let shared = shared.clone();
                tokio::spawn(async move { run_session(stream, peer, shared).await });
            }
            Err(e) => {
                // Out of file descriptors and the like: keep serving the sessions we have.
                logging::rate_limited!(WARN, "collector: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

enum ReadError {
    Eof,
    Io(std::io::Error),
    Frame(sandesh::FrameError),
}

/// Next complete frame body. Cancel-safe: a cancelled call loses no bytes (they are either in
/// the decoder or still in the socket).
async fn read_frame(rd: &mut OwnedReadHalf, dec: &mut FrameDecoder, buf: &mut [u8]) -> Result<Vec<u8>, ReadError> {
    loop {
        if let Some(f) = dec.next_frame().map_err(ReadError::Frame)? {
            return Ok(f);
        }
        let n = rd.read(buf).await.map_err(ReadError::Io)?;
        if n == 0 {
            return Err(ReadError::Eof);
        }
        dec.push(&buf[..n]);
    }
}

struct ActiveGuard(Arc<Stats>);
impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.sessions_active.fetch_sub(1, Relaxed);
    }
}

fn now_us() -> i64 {
    crate::http::now_us() as i64
}

fn reply_frame(shared: &Shared, type_info: Vec<UVETypeInfo>, success: bool) -> Vec<u8> {
    let me = GeneratorId {
        source: shared.config.hostname.clone(),
        module: "contrail-collector".into(),
        node_type: "Analytics".into(),
        instance_id: "0".into(),
    };
    let header = me.header::<SandeshCtrlServerToClient>(now_us(), 0, CTRL_LEVEL, 0);
    encode_message_frame(&header, &SandeshCtrlServerToClient { type_info, success })
        .expect("the control reply always encodes")
}

/// TCP keepalive on sessions: idle 15 s, then probes every 3 s, 5 of them (the reference
/// session's values). A generator whose host vanished without a FIN or RST is noticed within
/// about 30 s, its session ends and its UVEs are removed.
pub const KEEPALIVE: (Duration, Duration, u32) = (Duration::from_secs(15), Duration::from_secs(3), 5);

/// Applies [`KEEPALIVE`] to an accepted connection.
pub fn set_keepalive(stream: &TcpStream) -> std::io::Result<()> {
    let ka = socket2::TcpKeepalive::new().with_time(KEEPALIVE.0).with_interval(KEEPALIVE.1).with_retries(KEEPALIVE.2);
    socket2::SockRef::from(stream).set_tcp_keepalive(&ka)
}

/// Runs one session to its end.
pub async fn run_session(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let stats = shared.stats.clone();
    stats.sessions_accepted.fetch_add(1, Relaxed);
    stats.sessions_active.fetch_add(1, Relaxed);
    let _active = ActiveGuard(stats.clone());
    let _ = stream.set_nodelay(true);
    if let Err(e) = set_keepalive(&stream) {
        logging::rate_limited!(WARN, "collector: {peer}: cannot set TCP keepalive: {e}");
    }
    let (mut rd, mut wr) = stream.into_split();
    let mut dec = FrameDecoder::with_max_frame_len(shared.config.max_frame_len);
    let mut buf = vec![0u8; 64 * 1024];

    let mut shutdown = shared.shutdown.subscribe();
    // 1. Handshake.
    let first = tokio::select! {
        r = tokio::time::timeout(shared.config.handshake_timeout, read_frame(&mut rd, &mut dec, &mut buf)) => r,
        _ = shutdown.wait_for(|stopping| *stopping) => return,
    };
    let first = match first {
        Err(_) => {
            stats.handshake_timeouts.fetch_add(1, Relaxed);
            logging::rate_limited!(
                WARN,
                "collector: {peer}: no handshake within {:?}, closing",
                shared.config.handshake_timeout
            );
            return;
        }
        Ok(Err(ReadError::Frame(e))) => {
            stats.malformed_frames.fetch_add(1, Relaxed);
            logging::rate_limited!(WARN, "collector: {peer}: malformed frame before the handshake: {e}; closing");
            return;
        }
        Ok(Err(_)) => return,
        Ok(Ok(f)) => f,
    };
    stats.frames_received.fetch_add(1, Relaxed);
    let hello = match decode_message(&first) {
        Ok(d) => match d.message {
            Message::CtrlClientToServer(h) => h,
            other => {
                stats.handshake_missing.fetch_add(1, Relaxed);
                logging::rate_limited!(
                    WARN,
                    "collector: {peer}: first message is {}, not SandeshCtrlClientToServer; closing",
                    other.name()
                );
                return;
            }
        },
        Err(e) if matches!(e.kind, DecodeErrorKind::UnknownMessage(_)) => {
            stats.handshake_missing.fetch_add(1, Relaxed);
            logging::rate_limited!(WARN, "collector: {peer}: first message is not the handshake ({e}); closing");
            return;
        }
        Err(e) => {
            stats.malformed_frames.fetch_add(1, Relaxed);
            logging::rate_limited!(WARN, "collector: {peer}: malformed handshake: {e}; closing");
            return;
        }
    };
    if hello.node_type_name.is_empty() || hello.instance_id_name.is_empty() || hello.source.is_empty() {
        stats.handshake_refused.fetch_add(1, Relaxed);
        logging::rate_limited!(
            WARN,
            "collector: {peer}: handshake refused: empty {}",
            if hello.source.is_empty() {
                "source"
            } else if hello.node_type_name.is_empty() {
                "node_type_name"
            } else {
                "instance_id_name"
            }
        );
        let _ = wr.write_all(&reply_frame(&shared, vec![], false)).await;
        let _ = wr.shutdown().await;
        return;
    }
    let gen = GeneratorKey {
        source: hello.source.clone(),
        node_type: hello.node_type_name.clone(),
        module: hello.module_name.clone(),
        instance_id: hello.instance_id_name.clone(),
    };

    // 2. Register, replacing an older session of the same generator.
    let id = shared.registry.next_id.fetch_add(1, Relaxed);
    let stop = Arc::new(Notify::new());
    let (done_tx, done_rx) = watch::channel(());
    let old = shared
        .registry
        .sessions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(gen.clone(), Entry { id, stop: stop.clone(), done: done_rx });
    if let Some(mut old) = old {
        stats.sessions_replaced.fetch_add(1, Relaxed);
        logging::rate_limited!(
            WARN,
            "collector: {peer}: generator {gen} connected again; closing its previous session"
        );
        old.stop.notify_one();
        while old.done.changed().await.is_ok() {}
    }
    if !shared.ingest.send(IngestMsg::DeleteGenerator(gen.clone())).await {
        return;
    }
    let type_info = hello.uve_types.iter().map(|t| UVETypeInfo { type_name: t.clone(), seq_num: 0 }).collect();
    if wr.write_all(&reply_frame(&shared, type_info, true)).await.is_err() {
        end_session(&shared, &gen, id).await;
        return;
    }
    stats.sessions_established.fetch_add(1, Relaxed);

    // 3. Messages.
    let mut drain_until: Option<tokio::time::Instant> = None;
    let mut shutdown_open = true;
    let replaced = loop {
        if drain_until.is_none() && *shutdown.borrow_and_update() {
            // Orderly stop: FIN to the generator, then read what it already sent.
            let _ = wr.shutdown().await;
            drain_until = Some(tokio::time::Instant::now() + DRAIN_TIME);
        }
        let far = tokio::time::Instant::now() + Duration::from_secs(86_400);
        let frame = tokio::select! {
            r = read_frame(&mut rd, &mut dec, &mut buf) => r,
            _ = stop.notified() => break true,
            r = shutdown.changed(), if drain_until.is_none() && shutdown_open => {
                // Err: no orderly stop can come any more (cannot happen while this session
                // holds `shared`); stop watching.
                shutdown_open = r.is_ok();
                continue;
            }
            _ = tokio::time::sleep_until(drain_until.unwrap_or(far)), if drain_until.is_some() => break false,
        };
        let frame = match frame {
            Ok(f) => f,
            Err(ReadError::Frame(e)) => {
                stats.malformed_frames.fetch_add(1, Relaxed);
                logging::rate_limited!(WARN, "collector: {peer}: {gen}: malformed frame: {e}; closing");
                break false;
            }
            Err(ReadError::Eof) => break false,
            Err(ReadError::Io(e)) => {
                logging::rate_limited!(WARN, "collector: {peer}: {gen}: read failed: {e}");
                break false;
            }
        };
        stats.frames_received.fetch_add(1, Relaxed);
        let decoded = match decode_message(&frame) {
            Ok(d) => d,
            Err(e) if matches!(e.kind, DecodeErrorKind::UnknownMessage(_)) => {
                stats.messages_ignored.fetch_add(1, Relaxed);
                continue;
            }
            Err(e) => {
                stats.malformed_frames.fetch_add(1, Relaxed);
                logging::rate_limited!(WARN, "collector: {peer}: {gen}: malformed message: {e}; closing");
                break false;
            }
        };
        let ts = decoded.header.timestamp;
        let msg = match decoded.message {
            Message::FlowLogDataObject(obj) => {
                let source = &decoded.header.source;
                let recs: Vec<_> = obj.flowdata.into_iter().map(|f| flow_record(source, ts, f)).collect();
                stats.flow_records_received.fetch_add(recs.len() as u64, Relaxed);
                IngestMsg::Flows(recs)
            }
            Message::UveVmiStats(u) => match uve_msg(&u.data.to_struct_value(), ts) {
                Some(u) => IngestMsg::Uve(gen.clone(), u),
                None => {
                    stats.malformed_frames.fetch_add(1, Relaxed);
                    break false;
                }
            },
            Message::VrouterStats(u) => match uve_msg(&u.data.to_struct_value(), ts) {
                Some(u) => IngestMsg::Uve(gen.clone(), u),
                None => {
                    stats.malformed_frames.fetch_add(1, Relaxed);
                    break false;
                }
            },
            Message::PacketTraceData(t) => {
                stats.trace_messages_received.fetch_add(1, Relaxed);
                IngestMsg::Traces(crate::model::TraceInput { host: decoded.header.source.clone(), data: t })
            }
            Message::CtrlClientToServer(_) | Message::CtrlServerToClient(_) => {
                stats.messages_ignored.fetch_add(1, Relaxed);
                continue;
            }
        };
        if matches!(msg, IngestMsg::Uve(..)) {
            stats.uve_updates_received.fetch_add(1, Relaxed);
        }
        if !shared.ingest.send(msg).await {
            break false;
        }
    };
    if !replaced {
        end_session(&shared, &gen, id).await;
    }
    drop(done_tx);
}

/// Removes the generator's UVEs if this session is still its current one, then unregisters.
/// The removal is queued before the entry goes away, so a session of the same generator that
/// replaces this one meanwhile waits for it (through `done`) before sending anything.
async fn end_session(shared: &Shared, gen: &GeneratorKey, id: u64) {
    if shared.registry.is_current(gen, id) {
        shared.ingest.send(IngestMsg::GeneratorEnded(gen.clone())).await;
        shared.registry.remove_if_current(gen, id);
    }
}

/// A flow sample from a decoded `FlowLogData` (its strings moved, not copied).
pub fn flow_record(source: &str, timestamp_us: i64, f: FlowLogData) -> FlowRecordInput {
    FlowRecordInput {
        vrouter: source.to_owned(),
        timestamp_us,
        flowuuid: f.flowuuid,
        direction_ing: f.direction_ing,
        sourcevn: f.sourcevn,
        sourceip: f.sourceip.to_string(),
        destvn: f.destvn,
        destip: f.destip.to_string(),
        protocol: f.protocol,
        sport: f.sport,
        dport: f.dport,
        tcp_flags: f.tcp_flags,
        vm: f.vm,
        reverse_uuid: f.reverse_uuid,
        setup_time: f.setup_time,
        teardown_time: f.teardown_time,
        bytes: f.bytes,
        packets: f.packets,
        diff_bytes: f.diff_bytes,
        diff_packets: f.diff_packets,
        action: f.action,
        sg_rule_uuid: f.sg_rule_uuid,
        nw_ace_uuid: f.nw_ace_uuid,
        vrouter_ip: f.vrouter_ip,
        other_vrouter_ip: f.other_vrouter_ip,
        underlay_proto: f.underlay_proto,
        underlay_source_port: f.underlay_source_port,
        vmi_uuid: f.vmi_uuid,
        drop_reason: f.drop_reason,
        forward_flow: f.forward_flow,
        analyzer_name: f.analyzer_name,
        mirror_bytes: f.mirror_bytes,
        mirror_packets: f.mirror_packets,
        sec_analyzer_name: f.sec_analyzer_name,
        sec_mirror_bytes: f.sec_mirror_bytes,
        sec_mirror_packets: f.sec_mirror_packets,
        mirror_lost_packets: f.mirror_lost_packets,
        sec_mirror_lost_packets: f.sec_mirror_lost_packets,
        before_mirror_packets: f.before_mirror_packets,
        held_dropped_packets: f.held_dropped_packets,
    }
}

fn uuid_text(u: &[u8; 16]) -> String {
    let h: String = u.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// The text a scalar has on the wire.
fn scalar_text(v: &Value) -> String {
    match v {
        Value::Bool(b) => b.to_string(),
        Value::Byte(x) => x.to_string(),
        Value::I16(x) => x.to_string(),
        Value::I32(x) => x.to_string(),
        Value::I64(x) => x.to_string(),
        Value::U16(x) => x.to_string(),
        Value::U32(x) => x.to_string(),
        Value::U64(x) => x.to_string(),
        Value::Ipv4(a) => u32::from(*a).to_string(),
        Value::IpAddr(a) => a.to_string(),
        Value::Double(x) => x.to_string(),
        Value::String(s) | Value::Xml(s) => s.clone(),
        Value::Uuid(u) => uuid_text(u),
        Value::Struct(_) | Value::List(_) | Value::Set(_) | Value::Map(_) => String::new(),
    }
}

fn uve_value(v: &Value, ty: &FieldType) -> UveValue {
    match (v, ty) {
        (Value::Struct(s), _) => UveValue::Struct { name: s.def.name.to_owned(), fields: uve_fields(s) },
        (Value::List(items), FieldType::List(e)) | (Value::Set(items), FieldType::Set(e)) => UveValue::List {
            kind: ty.sandesh_type().as_str().to_owned(),
            elem_ty: e.sandesh_type().as_str().to_owned(),
            items: items.iter().map(|i| uve_value(i, e)).collect(),
        },
        (Value::Map(entries), FieldType::Map(k, val)) => UveValue::Map {
            key_ty: k.sandesh_type().as_str().to_owned(),
            value_ty: val.sandesh_type().as_str().to_owned(),
            entries: entries.iter().map(|(a, b)| (uve_value(a, k), uve_value(b, val))).collect(),
        },
        (v, ty) => UveValue::Scalar { ty: ty.sandesh_type().as_str().to_owned(), text: scalar_text(v) },
    }
}

/// The set fields of a decoded struct, with their wire metadata.
pub fn uve_fields(s: &StructValue) -> Vec<UveField> {
    s.def
        .fields
        .iter()
        .zip(&s.fields)
        .filter_map(|(d, v)| {
            v.as_ref().map(|v| UveField {
                name: d.name.to_owned(),
                sandesh_type: d.ty.sandesh_type().as_str().to_owned(),
                identifier: i32::from(d.id),
                annotations: d.annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                value: uve_value(v, &d.ty),
            })
        })
        .collect()
}

fn uve_msg(data: &StructValue, ts: i64) -> Option<crate::model::UveUpdate> {
    uve_update_from_struct(data.def.name, uve_fields(data), ts).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_sessions_get_tcp_keepalive() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let _c = TcpStream::connect(addr).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        set_keepalive(&s).unwrap();
        let r = socket2::SockRef::from(&s);
        assert!(r.keepalive().unwrap());
        assert_eq!(r.tcp_keepalive_time().unwrap(), KEEPALIVE.0);
        assert_eq!(r.tcp_keepalive_interval().unwrap(), KEEPALIVE.1);
        assert_eq!(r.tcp_keepalive_retries().unwrap(), KEEPALIVE.2);
    }
}
