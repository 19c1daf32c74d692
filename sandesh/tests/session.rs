//! Generator session against a real TCP collector started in the test. The test collector
//! speaks the server side of the handshake with this crate's own strict decoder and encoder,
//! records every message per connection, and flags any message that arrives on a connection
//! before its handshake reply was sent.

use sandesh::{
    decode_message, encode_message_frame, hints, Decoded, FlowLogData, FrameDecoder, GeneratorId, Message,
    SandeshCtrlServerToClient, SessionConfig, SessionEvent, SessionHandle, SessionState, UVEVMIStats, VMIStats,
    VmInterfaceStats, VrouterStats, VrouterStatsAgent,
};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Default)]
struct Inner {
    /// (connection number, message) in arrival order.
    received: Mutex<Vec<(u64, Decoded)>>,
    /// Protocol violations seen (message before the handshake reply, bad frames, …).
    violations: Mutex<Vec<String>>,
    conns: Mutex<Vec<TcpStream>>,
    next_conn: AtomicU64,
    stop: AtomicBool,
    /// While set, connections stop reading (the client's writes back up).
    paused: AtomicBool,
}

struct TestCollector {
    addr: SocketAddr,
    inner: Arc<Inner>,
    accept: Option<JoinHandle<()>>,
}

#[derive(Clone, Copy)]
struct Behaviour {
    /// Delay before the handshake reply; anything the client sends meanwhile is a violation.
    reply_delay: Duration,
    success: bool,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self { reply_delay: Duration::from_millis(150), success: true }
    }
}

impl TestCollector {
    fn start(port: u16, behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind test collector");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let inner = Arc::new(Inner::default());
        let inn = Arc::clone(&inner);
        let accept = std::thread::spawn(move || {
            while !inn.stop.load(Ordering::Acquire) {
                match listener.accept() {
                    Ok((s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        inn.conns.lock().unwrap().push(s.try_clone().unwrap());
                        let id = inn.next_conn.fetch_add(1, Ordering::Relaxed);
                        let i2 = Arc::clone(&inn);
                        std::thread::spawn(move || serve(s, id, i2, behaviour));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
            // The listener is dropped here: new connections are refused.
        });
        Self { addr, inner, accept: Some(accept) }
    }

    /// Closes every open connection (the listener stays).
    fn drop_connections(&self) {
        for c in self.inner.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    /// Stops listening and closes every connection.
    fn stop(mut self) {
        self.inner.stop.store(true, Ordering::Release);
        if let Some(t) = self.accept.take() {
            t.join().unwrap();
        }
        self.drop_connections();
    }

    fn received(&self) -> Vec<(u64, Decoded)> {
        self.inner.received.lock().unwrap().clone()
    }

    fn violations(&self) -> Vec<String> {
        self.inner.violations.lock().unwrap().clone()
    }

    fn flows(&self) -> Vec<FlowLogData> {
        self.received()
            .into_iter()
            .flat_map(|(_, d)| match d.message {
                Message::FlowLogDataObject(o) => o.flowdata,
                _ => vec![],
            })
            .collect()
    }

    fn wait_for(&self, what: &str, timeout: Duration, cond: impl Fn(&Self) -> bool) {
        let end = Instant::now() + timeout;
        while !cond(self) {
            assert!(Instant::now() < end, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// One connection: ctrl first, reply after the delay, then record everything.
fn serve(mut s: TcpStream, id: u64, inner: Arc<Inner>, b: Behaviour) {
    let mut frames = FrameDecoder::new();
    let mut buf = [0u8; 8192];
    let mut reply_at: Option<Instant> = None;
    let mut replied = false;
    s.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
    loop {
        if let Some(at) = reply_at {
            if !replied && Instant::now() >= at {
                let gen = GeneratorId {
                    source: "collector1".into(),
                    module: "contrail-collector".into(),
                    node_type: "Analytics".into(),
                    instance_id: "0".into(),
                };
                let reply = SandeshCtrlServerToClient { type_info: vec![], success: b.success };
                let h = gen.header::<SandeshCtrlServerToClient>(0, 0, sandesh::CTRL_LEVEL, 0);
                if s.write_all(&encode_message_frame(&h, &reply).unwrap()).is_err() {
                    return;
                }
                replied = true;
                if !b.success {
                    return; // the client must close
                }
            }
        }
        if replied && inner.paused.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => frames.push(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
        loop {
            let body = match frames.next_frame() {
                Ok(Some(b)) => b,
                Ok(None) => break,
                Err(e) => {
                    inner.violations.lock().unwrap().push(format!("conn {id}: {e}"));
                    return;
                }
            };
            let d = match decode_message(&body) {
                Ok(d) => d,
                Err(e) => {
                    inner.violations.lock().unwrap().push(format!("conn {id}: {e}"));
                    return;
                }
            };
            let is_ctrl = matches!(d.message, Message::CtrlClientToServer(_));
            if reply_at.is_none() {
                if !is_ctrl {
                    inner
                        .violations
                        .lock()
                        .unwrap()
                        .push(format!("conn {id}: {} before the handshake", d.message.name()));
                    return;
                }
                reply_at = Some(Instant::now() + b.reply_delay);
            } else if !replied {
                inner
                    .violations
                    .lock()
                    .unwrap()
                    .push(format!("conn {id}: {} before the handshake reply", d.message.name()));
            } else if is_ctrl {
                inner.violations.lock().unwrap().push(format!("conn {id}: second handshake"));
            }
            inner.received.lock().unwrap().push((id, d));
        }
    }
}

fn generator() -> GeneratorId {
    GeneratorId {
        source: "host1".into(),
        module: "contrail-vrouter-agent".into(),
        node_type: "Compute".into(),
        instance_id: "0".into(),
    }
}

fn config(collectors: Vec<SocketAddr>) -> SessionConfig {
    let mut c = SessionConfig::new(generator());
    c.collectors = collectors;
    c.backoff_base = Duration::from_millis(50);
    c.backoff_max = Duration::from_millis(400);
    c.connect_timeout = Duration::from_millis(500);
    c.handshake_timeout = Duration::from_secs(2);
    c
}

fn flow(i: usize) -> FlowLogData {
    let mut f = FlowLogData::new(
        format!("00000000-0000-4000-8000-{i:012}"),
        1,
        "default-domain:demo:left".into(),
        "10.1.1.3".parse().unwrap(),
        "default-domain:demo:right".into(),
        "10.2.2.3".parse().unwrap(),
        6,
        (1000 + i % 60000) as u16,
        80,
    );
    f.diff_bytes = Some(i as i64);
    f.analyzer_name = Some("analyzer-a".into());
    f.mirror_bytes = Some(2 * i as i64);
    f
}

fn vmi_uve(name: &str, pkts: u64) -> UVEVMIStats {
    UVEVMIStats {
        data: VMIStats {
            name: name.into(),
            deleted: None,
            vm_name: Some("vm1".into()),
            vm_uuid: None,
            virtual_network: None,
            raw_if_stats: Some(VmInterfaceStats {
                in_pkts: pkts,
                in_bytes: 64 * pkts,
                out_pkts: pkts,
                out_bytes: 64 * pkts,
                mir_pkts: Some(pkts),
                mir_bytes: Some(80 * pkts),
            }),
            if_stats: None,
        },
    }
}

fn vrouter_uve() -> VrouterStats {
    VrouterStats {
        data: VrouterStatsAgent {
            name: "host1".into(),
            deleted: None,
            in_tpkts: Some(1),
            in_bytes: Some(2),
            out_tpkts: Some(3),
            out_bytes: Some(4),
            mir_tpkts: Some(5),
            mir_bytes: Some(6),
            mirror_analyzers: None,
        },
    }
}

fn wait_state(s: &SessionHandle, want: SessionState, timeout: Duration) {
    let end = Instant::now() + timeout;
    while s.state() != want {
        assert!(Instant::now() < end, "state {:?}, wanted {want:?}", s.state());
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A port with nothing listening.
fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

#[test]
fn handshake_comes_first_and_nothing_else_before_the_reply() {
    let server = TestCollector::start(0, Behaviour::default());
    let mut c = config(vec![server.addr]);
    c.http_port = 8085;
    c.uve_types = vec!["UVEVMIStats".into()];
    let s = SessionHandle::start(c).unwrap();
    // Queued while the handshake is pending (the server delays its reply by 150 ms).
    s.update_uve(&vmi_uve("vmi1", 3)).unwrap();
    for i in 0..40 {
        assert!(s.send_flow(flow(i)));
    }
    server.wait_for("40 flows", Duration::from_secs(5), |sv| sv.flows().len() == 40);
    assert_eq!(server.violations(), Vec::<String>::new());
    let got = server.received();
    // First message: the handshake, with our identity.
    let (conn, first) = &got[0];
    assert_eq!(*conn, 0);
    let Message::CtrlClientToServer(hello) = &first.message else {
        panic!("first message is {}", first.message.name())
    };
    assert_eq!(hello.source, "host1");
    assert_eq!(hello.module_name, "contrail-vrouter-agent");
    assert_eq!(hello.node_type_name, "Compute");
    assert_eq!(hello.instance_id_name, "0");
    assert_eq!(hello.sucessful_connections, 1);
    assert_eq!(hello.http_port, 8085);
    assert_eq!(hello.uve_types, ["UVEVMIStats"]);
    assert_eq!(first.header.context, "ctrl");
    assert_eq!(first.header.hints, hints::CONTROL);
    assert_eq!(first.header.kind, 2);
    // Then the UVE (cached before the session was up: sent as a SYNC resync) before the flows.
    let Message::UveVmiStats(u) = &got[1].1.message else { panic!("second message is {}", got[1].1.message.name()) };
    assert_eq!(u, &vmi_uve("vmi1", 3));
    assert_eq!(got[1].1.header.hints, hints::KEY | hints::SYNC);
    assert_eq!(got[1].1.header.kind, 6);
    // Flows: in order, at most 16 per message, Type FLOW, level SYS_INFO.
    assert_eq!(server.flows(), (0..40).map(flow).collect::<Vec<_>>());
    let flow_msgs: Vec<_> = got
        .iter()
        .filter_map(|(_, d)| match &d.message {
            Message::FlowLogDataObject(o) => Some((d.header.kind, d.header.level, o.flowdata.len())),
            _ => None,
        })
        .collect();
    assert!(flow_msgs.iter().all(|(k, l, n)| *k == 8 && *l == 6 && *n <= 16));
    let st = s.stats();
    assert_eq!(st.state, Some(SessionState::Established));
    assert_eq!((st.flows_enqueued, st.flows_sent, st.flows_dropped), (40, 40, 0));
    assert_eq!((st.uves_sent, st.uve_syncs_sent, st.established), (1, 1, 1));
    // A later UVE change goes out as an update (KEY hint only).
    s.update_uve(&vmi_uve("vmi1", 4)).unwrap();
    server.wait_for("the update", Duration::from_secs(5), |sv| {
        sv.received()
            .iter()
            .any(|(_, d)| d.message == Message::UveVmiStats(vmi_uve("vmi1", 4)) && d.header.hints == hints::KEY)
    });
    drop(s);
    server.stop();
}

#[test]
fn refused_handshake_sends_nothing_and_retries() {
    let server = TestCollector::start(0, Behaviour { reply_delay: Duration::from_millis(20), success: false });
    let s = SessionHandle::start(config(vec![server.addr])).unwrap();
    s.update_uve(&vrouter_uve()).unwrap();
    s.send_flow(flow(1));
    let end = Instant::now() + Duration::from_secs(5);
    while s.stats().handshake_failures < 3 {
        assert!(Instant::now() < end, "{:?}", s.stats());
        std::thread::sleep(Duration::from_millis(10));
    }
    // Every connection carried exactly one message: the handshake.
    let got = server.received();
    assert!(got.iter().all(|(_, d)| matches!(d.message, Message::CtrlClientToServer(_))));
    let conns: std::collections::BTreeSet<u64> = got.iter().map(|(c, _)| *c).collect();
    assert_eq!(conns.len(), got.len());
    assert_eq!(server.violations(), Vec::<String>::new());
    let st = s.stats();
    assert_eq!((st.established, st.flows_sent, st.uves_sent), (0, 0, 0));
    assert_eq!(st.flows_buffered, 1);
    drop(s);
    server.stop();
}

#[test]
fn reconnect_with_backoff_and_rotation_and_uve_resync() {
    let dead = dead_addr();
    let server = TestCollector::start(0, Behaviour::default());
    let port = server.addr.port();
    // The dead collector first: the session must rotate to the live one.
    let s = SessionHandle::start(config(vec![dead, server.addr])).unwrap();
    s.update_uve(&vmi_uve("vmi1", 1)).unwrap();
    s.update_uve(&vmi_uve("vmi2", 2)).unwrap();
    s.update_uve(&vrouter_uve()).unwrap();
    wait_state(&s, SessionState::Established, Duration::from_secs(5));
    let ev: Vec<SessionEvent> = s.events().into_iter().map(|(_, e)| e).collect();
    assert!(matches!(&ev[0], SessionEvent::Connecting(a) if *a == dead));
    assert!(matches!(&ev[1], SessionEvent::ConnectFailed(a, _) if *a == dead));
    assert_eq!(ev[2], SessionEvent::Backoff(Duration::from_millis(50)));
    assert_eq!(ev[3], SessionEvent::Connecting(server.addr));
    assert_eq!(ev[4], SessionEvent::Established(server.addr));
    server.wait_for("3 UVEs", Duration::from_secs(5), |sv| sv.received().len() == 4);

    // Delete one UVE while connected: sent once with deleted=true, then out of the cache.
    let mut gone = vmi_uve("vmi2", 2);
    gone.data.deleted = Some(true);
    s.update_uve(&gone).unwrap();
    server.wait_for("the delete", Duration::from_secs(5), |sv| sv.received().len() == 5);

    // Outage: the collector goes away completely for ~1.5 s.
    let down_at = Instant::now();
    server.stop();
    wait_state(&s, SessionState::Idle, Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(1500));
    let server = TestCollector::start(port, Behaviour::default());
    wait_state(&s, SessionState::Established, Duration::from_secs(5));

    // Backoff after the disconnect: 50, 100, 200, 400, 400 … ms, alternating collectors.
    let events = s.events();
    let after: Vec<&(Instant, SessionEvent)> = events.iter().filter(|(t, _)| *t >= down_at).collect();
    assert!(matches!(after[0].1, SessionEvent::Disconnected(a, _) if a == server.addr));
    let backoffs: Vec<Duration> = after
        .iter()
        .filter_map(|(_, e)| match e {
            SessionEvent::Backoff(d) => Some(*d),
            _ => None,
        })
        .collect();
    assert!(backoffs.len() >= 5, "{backoffs:?}");
    let ms: Vec<u128> = backoffs.iter().map(|d| d.as_millis()).collect();
    assert_eq!(ms[..5], [50, 100, 200, 400, 400]);
    assert!(ms[5..].iter().all(|m| *m == 400), "{ms:?}");
    // Each attempt really waited its backoff, and attempts rotate between the two collectors.
    let mut last_backoff: Option<(Instant, Duration)> = None;
    let mut targets = Vec::new();
    for (t, e) in &after {
        match e {
            SessionEvent::Backoff(d) => last_backoff = Some((*t, *d)),
            SessionEvent::Connecting(a) => {
                let (bt, d) = last_backoff.expect("backoff before each attempt");
                assert!(t.duration_since(bt) >= d);
                targets.push(*a);
            }
            _ => {}
        }
    }
    assert!(targets.windows(2).all(|w| w[0] != w[1]), "{targets:?}");
    assert!(targets.contains(&dead));

    // On the new connection: handshake (second successful connection), then the two live UVEs
    // with the SYNC hint; the deleted one is not resent.
    server.wait_for("resync", Duration::from_secs(5), |sv| sv.received().len() == 3);
    let got = server.received();
    let Message::CtrlClientToServer(hello) = &got[0].1.message else { panic!() };
    assert_eq!(hello.sucessful_connections, 2);
    let mut resync: Vec<String> = got[1..]
        .iter()
        .map(|(_, d)| {
            assert_eq!(d.header.hints, hints::KEY | hints::SYNC);
            match &d.message {
                Message::UveVmiStats(u) => u.data.name.clone(),
                Message::VrouterStats(u) => u.data.name.clone(),
                other => panic!("{}", other.name()),
            }
        })
        .collect();
    resync.sort();
    assert_eq!(resync, ["host1", "vmi1"]);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(server.received().len(), 3);
    assert_eq!(server.violations(), Vec::<String>::new());
    let st = s.stats();
    assert_eq!((st.established, st.disconnects, st.uves_cached), (2, 1, 2));
    drop(s);
    server.stop();
}

#[test]
fn connection_reset_while_established_resyncs_on_the_same_collector() {
    let server = TestCollector::start(0, Behaviour::default());
    let s = SessionHandle::start(config(vec![server.addr])).unwrap();
    s.update_uve(&vrouter_uve()).unwrap();
    server.wait_for("UVE", Duration::from_secs(5), |sv| sv.received().len() == 2);
    server.drop_connections();
    server.wait_for("resync", Duration::from_secs(5), |sv| sv.received().len() == 4);
    let got = server.received();
    assert_eq!(got[2].0, 1);
    assert!(matches!(got[2].1.message, Message::CtrlClientToServer(_)));
    assert_eq!(got[3].1.message, Message::VrouterStats(vrouter_uve()));
    assert_eq!(got[3].1.header.hints, hints::KEY | hints::SYNC);
    drop(s);
    server.stop();
}

/// Flow records buffered through a 10-second outage are all delivered afterwards, in order;
/// records beyond the bound are refused and counted exactly.
#[test]
fn flows_survive_a_ten_second_outage_and_drops_are_counted() {
    const BOUND: usize = 1000;
    const EXTRA: usize = 250;
    let server = TestCollector::start(0, Behaviour::default());
    let port = server.addr.port();
    let mut c = config(vec![server.addr]);
    c.flow_buffer = BOUND;
    c.backoff_max = Duration::from_millis(500);
    let s = SessionHandle::start(c).unwrap();
    // Some traffic before the outage.
    for i in 0..100 {
        assert!(s.send_flow(flow(i)));
    }
    server.wait_for("first 100", Duration::from_secs(5), |sv| sv.flows().len() == 100);

    server.stop();
    wait_state(&s, SessionState::Idle, Duration::from_secs(5));
    let outage = Instant::now();
    // During 10 s: the bound fills up over the first 9 s, then EXTRA more are refused.
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    for k in 0..(BOUND + EXTRA) {
        let i = 100 + k;
        if k < BOUND && k % 100 == 0 {
            let due = Duration::from_millis(900 * (k / 100) as u64);
            if let Some(d) = due.checked_sub(outage.elapsed()) {
                std::thread::sleep(d);
            }
        }
        if s.send_flow(flow(i)) {
            accepted.push(i);
        } else {
            refused.push(i);
        }
    }
    assert_eq!(accepted, (100..100 + BOUND).collect::<Vec<_>>());
    assert_eq!(refused, (100 + BOUND..100 + BOUND + EXTRA).collect::<Vec<_>>());
    let st = s.stats();
    assert_eq!(st.flows_buffered, BOUND as u64);
    assert_eq!(st.flows_dropped, EXTRA as u64);
    assert_ne!(s.state(), SessionState::Established);
    if let Some(d) = Duration::from_secs(10).checked_sub(outage.elapsed()) {
        std::thread::sleep(d);
    }

    let server = TestCollector::start(port, Behaviour::default());
    server.wait_for("buffered flows", Duration::from_secs(10), |sv| sv.flows().len() == BOUND);
    let got: Vec<FlowLogData> = server.flows();
    assert_eq!(got, accepted.iter().map(|&i| flow(i)).collect::<Vec<_>>());
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(server.flows().len(), BOUND);
    assert_eq!(server.violations(), Vec::<String>::new());
    let st = s.stats();
    assert_eq!(st.flows_enqueued, (100 + BOUND) as u64);
    assert_eq!(st.flows_sent, (100 + BOUND) as u64);
    assert_eq!(st.flows_dropped, EXTRA as u64);
    assert_eq!(st.flows_buffered, 0);
    drop(s);
    server.stop();
}

#[test]
fn shutdown_flushes_buffered_flows() {
    let server = TestCollector::start(0, Behaviour::default());
    let s = SessionHandle::start(config(vec![server.addr])).unwrap();
    wait_state(&s, SessionState::Established, Duration::from_secs(5));
    for i in 0..500 {
        assert!(s.send_flow(flow(i)));
    }
    s.shutdown(Duration::from_secs(5));
    server.wait_for("500 flows", Duration::from_secs(5), |sv| sv.flows().len() == 500);
    server.stop();
}

/// A collector that stops reading: the socket and the send queue fill up, records back up in
/// the bounded buffer (never dropped by level), the excess is refused and counted, and
/// everything accepted is delivered once the collector reads again.
#[test]
fn slow_collector_backs_records_up_into_the_bounded_buffer() {
    use sandesh::sendq::{Watermark, Watermarks};
    const BOUND: usize = 2000;
    let server = TestCollector::start(0, Behaviour::default());
    let mut c = config(vec![server.addr]);
    c.flow_buffer = BOUND;
    let w = |bytes, level| Watermark { bytes, level };
    c.watermarks = Watermarks {
        rising: vec![w(64 * 1024, sandesh::level::SYS_DEBUG), w(1 << 30, sandesh::level::SYS_UVE)],
        falling: vec![w(1024, sandesh::level::INVALID)],
    };
    let s = SessionHandle::start(c).unwrap();
    wait_state(&s, SessionState::Established, Duration::from_secs(5));
    server.inner.paused.store(true, Ordering::Release);
    // Far more than socket buffers, send queue and flow buffer together can hold.
    let mut accepted = Vec::new();
    let mut refused = 0u64;
    let t = Instant::now();
    for i in 0..60_000 {
        if s.send_flow(flow(i)) {
            accepted.push(i);
        } else {
            refused += 1;
        }
        if i % 1000 == 999 {
            // Let the session move records while the socket still takes them.
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    // Enqueueing never blocked (60k records, with the 2 ms pauses, well under 5 s).
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(refused > 0, "the collector never backed up");
    let st = s.stats();
    assert_eq!(st.flows_dropped, refused);
    assert_eq!(st.flows_level_dropped, 0);
    assert!(st.flows_buffered >= BOUND as u64, "{st:?}");
    server.inner.paused.store(false, Ordering::Release);
    server.wait_for("every accepted record", Duration::from_secs(20), |sv| sv.flows().len() == accepted.len());
    let got = server.flows();
    assert_eq!(got.len(), accepted.len());
    assert!(got.iter().zip(&accepted).all(|(r, &i)| *r == flow(i)));
    let st = s.stats();
    assert_eq!(st.flows_sent, accepted.len() as u64);
    assert_eq!(st.flows_buffered, 0);
    assert_eq!(st.disconnects, 0);
    drop(s);
    server.stop();
}

fn trace_msg(id: u64, steps: usize) -> sandesh::PacketTraceData {
    sandesh::PacketTraceData {
        trace_id: id,
        request: Some("aaaaaaaa-0000-4000-8000-000000000001".into()),
        project: None,
        generation: 1,
        agent_ring: 2,
        steps: (0..steps)
            .map(|i| sandesh::PacketTraceStep {
                vif: Some(1),
                ..sandesh::PacketTraceStep::new(
                    1,
                    1_700_000_000_000_000 + i as i64,
                    1000 + i as u64,
                    0,
                    i as u64,
                    "ingress",
                    format!("received on vif0/1 queue 0, {i} bytes"),
                )
            })
            .collect(),
        file: "export.rs".into(),
        line: 1,
    }
}

fn traces(sv: &TestCollector) -> Vec<sandesh::PacketTraceData> {
    sv.received()
        .into_iter()
        .filter_map(|(_, d)| match d.message {
            Message::PacketTraceData(t) => {
                assert_eq!(d.header.kind, 7, "trace messages are object logs");
                Some(t)
            }
            _ => None,
        })
        .collect()
}

/// Trace messages wait in their bounded buffer across an outage, a full buffer hands the
/// message back (nothing is dropped silently), and everything accepted arrives once, in
/// order, with the step counts in the counters.
#[test]
fn trace_messages_survive_an_outage_and_a_full_buffer_hands_them_back() {
    let mut c = config(vec![dead_addr()]);
    c.trace_buffer = 4;
    c.backoff_max = Duration::from_millis(100);
    let s = SessionHandle::start(c).unwrap();
    for id in 1..=4 {
        assert!(s.send_trace(trace_msg(id, id as usize)).is_ok());
    }
    let back = s.send_trace(trace_msg(5, 2)).expect_err("the buffer holds 4");
    assert_eq!(back, trace_msg(5, 2), "the refused message comes back whole");
    let st = s.stats();
    assert_eq!((st.traces_enqueued, st.traces_refused, st.traces_buffered), (4, 1, 4));
    drop(s);

    let server = TestCollector::start(0, Behaviour::default());
    let mut c = config(vec![server.addr]);
    c.trace_buffer = 4;
    let s = SessionHandle::start(c).unwrap();
    let mut next = 1u64;
    let mut pending = None;
    let t = Instant::now();
    while next <= 50 {
        let m = pending.take().unwrap_or_else(|| trace_msg(next, 3));
        match s.send_trace(m) {
            Ok(()) => next += 1,
            Err(m) => {
                pending = Some(m);
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        assert!(t.elapsed() < Duration::from_secs(10));
    }
    server.wait_for("50 trace messages", Duration::from_secs(10), |sv| traces(sv).len() == 50);
    let got = traces(&server);
    assert_eq!(got, (1..=50).map(|i| trace_msg(i, 3)).collect::<Vec<_>>());
    let st = s.stats();
    assert_eq!((st.traces_sent, st.trace_steps_sent, st.traces_buffered, st.traces_dropped), (50, 150, 0, 0));
    assert_eq!(server.violations(), Vec::<String>::new());
    drop(s);
    server.stop();
}
