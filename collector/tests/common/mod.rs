//! Helpers for the collector's integration tests: an in-process collector on loopback, a
//! minimal HTTP/1.1 client over a real TCP socket, and a Sandesh generator speaking the wire
//! format through the sandesh crate's encoder.

#![allow(dead_code, unused_macros, unused_imports)]

use collector::config::CollectorConfig;
use collector::server::Collector;
use sandesh::{
    decode_message, encode_message_frame, FlowLogData, FlowLogDataObject, FrameDecoder, GeneratorId, Message,
    SandeshCtrlClientToServer, SandeshCtrlServerToClient, SandeshMessage, UVEVMIStats, VMIStats, VmInterfaceStats,
    VrouterStats, VrouterStatsAgent,
};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

pub fn now_us() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as i64
}

/// The store a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite in the test's directory.
    Sqlite,
    /// A fresh database on the test binary's local ClickHouse server.
    ClickHouse,
}

/// `fn name(backend: Backend)` test bodies, each run as `sqlite::name` and `clickhouse::name`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name(super::common::Backend::Sqlite) } )*
        }
        mod clickhouse {
            $( #[test] fn $name() { super::$name(super::common::Backend::ClickHouse) } )*
        }
    };
}
pub(crate) use on_both_backends;

/// [`test_config`] on `backend`: for ClickHouse a fresh database (its schema made) on the
/// shared local server, inserts flushed within 50 ms; `None`, after saying why, where
/// ClickHouse cannot run here.
pub fn config(backend: Backend, dir: &Path) -> Option<CollectorConfig> {
    let mut c = test_config(dir);
    if backend == Backend::ClickHouse {
        let ch = collector::store::clickhouse::local::test_config("it")?;
        c.store = collector::config::StoreKind::Clickhouse;
        c.clickhouse_url = ch.url;
        c.clickhouse_database = ch.database;
        c.clickhouse_flush_ms = ch.flush_ms;
    }
    Some(c)
}

/// A configuration under another collector name (several collectors on one store).
pub trait CollectorConfigExt {
    fn named(&self, hostname: &str) -> CollectorConfig;
}

impl CollectorConfigExt for CollectorConfig {
    fn named(&self, hostname: &str) -> CollectorConfig {
        CollectorConfig { hostname: hostname.into(), ..self.clone() }
    }
}

pub fn test_config(dir: &Path) -> CollectorConfig {
    CollectorConfig {
        sandesh_listen: "127.0.0.1:0".into(),
        http_listen: "127.0.0.1:0".into(),
        data_dir: dir.to_owned(),
        hostname: "collector-test".into(),
        ..CollectorConfig::default()
    }
}

/// A collector running on its own tokio runtime.
pub struct TestCollector {
    pub rt: tokio::runtime::Runtime,
    pub c: Option<Collector>,
    pub sandesh: SocketAddr,
    pub http: SocketAddr,
}

impl TestCollector {
    pub fn start(cfg: CollectorConfig) -> TestCollector {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let c = rt.block_on(Collector::start(&cfg)).unwrap();
        let (sandesh, http) = (c.sandesh_addr, c.http_addr);
        TestCollector { rt, c: Some(c), sandesh, http }
    }

    pub fn col(&self) -> &Collector {
        self.c.as_ref().unwrap()
    }

    /// Waits until everything the sessions queued so far is committed.
    pub fn flush(&self) {
        assert!(self.rt.block_on(self.col().ingest.flush()));
    }

    pub fn stat(&self, name: &str) -> u64 {
        let (code, v) = http_get(self.http, "/analytics/collector/stats");
        assert_eq!(code, 200);
        v[name].as_u64().unwrap_or_else(|| panic!("no counter {name}"))
    }

    /// Polls a counter until it reaches `want` (sessions run on other threads).
    pub fn wait_stat(&self, name: &str, want: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let v = self.stat(name);
            if v >= want {
                assert_eq!(v, want, "{name} overshot");
                return;
            }
            assert!(Instant::now() < deadline, "{name} stayed at {v}, wanted {want}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Polls a counter until it equals `want` (for counters that go down too).
    pub fn wait_stat_eq(&self, name: &str, want: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.stat(name) != want {
            assert!(Instant::now() < deadline, "{name} is {}, wanted {want}", self.stat(name));
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn stop(mut self) {
        let c = self.c.take().unwrap();
        self.rt.block_on(c.stop());
        self.rt.shutdown_timeout(Duration::from_secs(5));
    }
}

/// One HTTP/1.1 request over a fresh TCP connection; returns status and JSON body.
pub fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let (code, text) = http_raw(addr, method, path, body);
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: body is not JSON ({e}): {text}"));
    (code, v)
}

pub fn http_raw(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    collector::client::request(&addr.to_string(), method, path, None, body)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

pub fn http_get(addr: SocketAddr, path: &str) -> (u16, Value) {
    http(addr, "GET", path, None)
}

pub fn query(addr: SocketAddr, q: &Value) -> (u16, Value) {
    http(addr, "POST", "/analytics/query", Some(&q.to_string()))
}

/// One request over a fresh TCP connection with extra headers (`Expect: 202-accepted`, a
/// bearer token): status and JSON body (chunked bodies decoded).
pub fn http_with(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        req.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, rest) = resp.split_once("\r\n\r\n").unwrap_or_else(|| panic!("{method} {path}: {resp}"));
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    let mut text = String::new();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        let mut rest = rest;
        while let Some((len, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(len.trim(), 16).unwrap();
            if n == 0 {
                break;
            }
            text.push_str(&after[..n]);
            rest = &after[n + 2..];
        }
    } else {
        text = rest.to_owned();
    }
    (code, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text}")))
}

/// Rows of a successful query.
pub fn rows(addr: SocketAddr, q: &Value) -> Vec<Value> {
    let (code, v) = query(addr, q);
    assert_eq!(code, 200, "{v}");
    v["value"].as_array().unwrap().clone()
}

/// A Sandesh generator over a real TCP connection.
pub struct Generator {
    pub id: GeneratorId,
    pub sock: TcpStream,
    dec: FrameDecoder,
    seq: i32,
}

impl Generator {
    pub fn id(source: &str) -> GeneratorId {
        GeneratorId {
            source: source.into(),
            module: "contrail-vrouter-agent".into(),
            node_type: "Compute".into(),
            instance_id: "0".into(),
        }
    }

    /// Connects without a handshake.
    pub fn connect_raw(addr: SocketAddr, id: GeneratorId) -> Generator {
        let sock = TcpStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Generator { id, sock, dec: FrameDecoder::new(), seq: 0 }
    }

    pub fn hello(&self) -> SandeshCtrlClientToServer {
        SandeshCtrlClientToServer {
            source: self.id.source.clone(),
            module_name: self.id.module.clone(),
            sucessful_connections: 1,
            uve_types: vec!["VMIStats".into(), "VrouterStatsAgent".into()],
            pid: std::process::id(),
            http_port: 8085,
            node_type_name: self.id.node_type.clone(),
            instance_id_name: self.id.instance_id.clone(),
        }
    }

    /// Connects and completes the handshake.
    pub fn connect(addr: SocketAddr, source: &str) -> Generator {
        let mut g = Generator::connect_raw(addr, Generator::id(source));
        let hello = g.hello();
        g.send(&hello, 0);
        let reply = g.read_reply().expect("handshake reply");
        assert!(reply.success);
        assert_eq!(
            reply.type_info.iter().map(|t| t.type_name.as_str()).collect::<Vec<_>>(),
            ["VMIStats", "VrouterStatsAgent"]
        );
        g
    }

    pub fn frame<M: SandeshMessage>(&mut self, msg: &M, hints: i32) -> Vec<u8> {
        self.frame_at(msg, hints, now_us())
    }

    /// A frame whose header carries `timestamp_us`.
    pub fn frame_at<M: SandeshMessage>(&mut self, msg: &M, hints: i32, timestamp_us: i64) -> Vec<u8> {
        self.seq += 1;
        let level = if M::MESSAGE.kind == sandesh::MessageKind::Uve {
            sandesh::level::SYS_NOTICE
        } else {
            sandesh::level::SYS_INFO
        };
        let level = if M::MESSAGE.body.name.starts_with("SandeshCtrl") { sandesh::CTRL_LEVEL } else { level };
        let header = self.id.header::<M>(timestamp_us, self.seq, level, hints);
        encode_message_frame(&header, msg).unwrap()
    }

    pub fn send<M: SandeshMessage>(&mut self, msg: &M, hints: i32) {
        let f = self.frame(msg, hints);
        self.sock.write_all(&f).unwrap();
    }

    pub fn send_bytes(&mut self, b: &[u8]) {
        self.sock.write_all(b).unwrap();
    }

    /// Reads the control reply; `None` if the collector closed the connection first.
    pub fn read_reply(&mut self) -> Option<SandeshCtrlServerToClient> {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(f) = self.dec.next_frame().unwrap() {
                let d = decode_message(&f).unwrap();
                assert_eq!(d.header.context, "ctrl");
                assert_eq!(d.header.hints & sandesh::hints::CONTROL, sandesh::hints::CONTROL);
                match d.message {
                    Message::CtrlServerToClient(r) => return Some(r),
                    other => panic!("unexpected {}", other.name()),
                }
            }
            match self.sock.read(&mut buf) {
                Ok(0) => return None,
                Ok(n) => self.dec.push(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// True once the collector has closed the connection (EOF or reset within 10 s).
    pub fn closed_by_peer(&mut self) -> bool {
        self.sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 1024];
        loop {
            match self.sock.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }

    pub fn send_flows(&mut self, recs: Vec<FlowLogData>) {
        self.send(&FlowLogDataObject { flowdata: recs }, 0);
    }

    pub fn send_vmi(&mut self, data: VMIStats, hints: i32) {
        self.send(&UVEVMIStats { data }, hints);
    }

    pub fn send_vrouter(&mut self, data: VrouterStatsAgent, hints: i32) {
        self.send(&VrouterStats { data }, hints);
    }
}

pub fn vmi(name: &str, in_pkts: u64, mir_pkts: u64, mir_bytes: u64) -> VMIStats {
    VMIStats {
        name: name.into(),
        deleted: None,
        vm_name: Some("vm1".into()),
        vm_uuid: None,
        virtual_network: Some("default-domain:demo:net1".into()),
        raw_if_stats: Some(VmInterfaceStats {
            in_pkts,
            in_bytes: in_pkts * 100,
            out_pkts: 2 * in_pkts,
            out_bytes: 200 * in_pkts,
            mir_pkts: Some(mir_pkts),
            mir_bytes: Some(mir_bytes),
        }),
        if_stats: None,
    }
}

pub fn vrouter(name: &str, mir_tpkts: u64, mir_bytes: u64) -> VrouterStatsAgent {
    VrouterStatsAgent {
        name: name.into(),
        deleted: None,
        in_tpkts: Some(1000),
        in_bytes: Some(100_000),
        out_tpkts: Some(900),
        out_bytes: Some(90_000),
        mir_tpkts: Some(mir_tpkts),
        mir_bytes: Some(mir_bytes),
        mirror_analyzers: None,
    }
}

/// A flow record with the 7-tuple and counters.
pub fn flow(uuid: &str, sport: u16, bytes: i64, packets: i64, diff_bytes: i64, diff_packets: i64) -> FlowLogData {
    let mut f = FlowLogData::new(
        uuid.into(),
        1,
        "default-domain:demo:net1".into(),
        "10.1.1.3".parse().unwrap(),
        "default-domain:demo:net2".into(),
        "10.2.2.3".parse().unwrap(),
        6,
        sport,
        80,
    );
    f.setup_time = Some(now_us() - 1_000_000);
    f.bytes = Some(bytes);
    f.packets = Some(packets);
    f.diff_bytes = Some(diff_bytes);
    f.diff_packets = Some(diff_packets);
    f.action = Some("pass".into());
    f
}
