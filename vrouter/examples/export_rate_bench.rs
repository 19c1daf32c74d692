//! Export rate: flow records per second the exporter produces and sends, over Sandesh and
//! over IPFIX, from the real [`FlowScanner`] on a table where every flow has new traffic.
//!
//! `cargo run --release -p vrouter --example export_rate_bench [flows] [rounds] [dir] [sinks]`
//!
//! (`sinks`: a comma-separated subset of `scan,sandesh,ipfix,both`; default all four.)
//!
//! Creates a flow table (in `dir`, default `/dev/shm`) of `flows` (default 262 144)
//! programmed, mirrored TCP flows, then for each sink runs a fresh scanner over it: one sweep
//! in which every flow is new (setup records: endpoint metadata, policy evaluation, UUIDs),
//! then `rounds` (default 3) sweeps after one more packet on every flow (periodic records),
//! each timed from the start of the sweep until the last record has left the process:
//!
//! * `scan only`: the records are built and dropped (the scanner's own cost);
//! * `sandesh`: the real session ([`sandesh::SessionHandle`], its own thread: XML encoding,
//!   `FlowLogDataObject` batches) to a collector stand-in on 127.0.0.1 that answers the
//!   handshake and reads and discards the rest; done when the session's `flows_sent` counts
//!   every record;
//! * `ipfix`: the real IPFIX sink ([`vrouter::agent::ipfix::IpfixSink`]: the record mapping,
//!   the encoder, 1400-byte messages over UDP) to a socket on 127.0.0.1 read by a thread
//!   that counts what arrives; done when the sweep and the flush return;
//! * `sandesh + ipfix`: both, as the exporter thread runs them.
//!
//! Reported: records, wall time, records per second, and the CPU time of the scanning
//! thread (the Sandesh session's encoding runs on its own thread, so for `sandesh` the wall
//! time is the figure). Nothing is asserted.

use flow_table::{Action, FlowKey, FlowTable, FlowTableConfig, FlowUpdate};
use sandesh::{encode_message_frame, FrameDecoder, GeneratorId, SandeshCtrlServerToClient, SessionHandle};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vrouter::agent::export::{FlowScanner, RecordFacts, RecordSink, Sinks};
use vrouter::agent::ipfix::IpfixSink;

const CONFIG: &str = r#"
[eal]
forwarding_cores = [1]
[vrouter]
run_dir = "/tmp/export-rate-bench"
router_ip = "10.10.0.1"
[[vrf]]
id = 0
name = "fabric"
[[vrf]]
id = 1
name = "overlay"
vxlan_vni = 5001
[[vif]]
id = 0
name = "fab"
type = "fabric"
device = "d0"
mac = "02:00:00:00:00:01"
vrf = 0
[[vif]]
id = 1
name = "tap1"
type = "virtual"
device = "d1"
mac = "02:00:00:00:01:01"
ip = "10.1.0.3"
vrf = 1
vn_name = "vn-red"
vm_uuid = "00000000-0000-0000-0000-0000000000b1"
vmi_uuid = "00000000-0000-0000-0000-0000000000a1"
[[vif]]
id = 2
name = "tap2"
type = "virtual"
device = "d2"
mac = "02:00:00:00:01:02"
ip = "10.2.0.3"
vrf = 1
vn_name = "vn-blue"
[[analyzer]]
name = "default-domain:demo:analyzer-a"
ip = "10.10.0.20"
[[network_policy]]
name = "red-blue"
vns = ["vn-red", "vn-blue"]
[[network_policy.rule]]
uuid = "10000000-0000-4000-8000-000000000001"
src = "vn:vn-red"
dst = "vn:vn-blue"
protocol = "tcp"
action = "pass"
mirror_to = ["default-domain:demo:analyzer-a"]
"#;

fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Builds the records and drops them.
struct Discard;

impl RecordSink for Discard {
    fn send(&mut self, _: sandesh::FlowLogData, _: &RecordFacts) -> bool {
        true
    }
}

/// A Sandesh collector stand-in: answers the handshake, then reads and discards.
fn sandesh_peer() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut frames = FrameDecoder::new();
                let mut buf = vec![0u8; 1 << 20];
                let mut answered = false;
                loop {
                    let n = match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    if answered {
                        continue;
                    }
                    frames.push(&buf[..n]);
                    if let Ok(Some(_hello)) = frames.next_frame() {
                        let gen = GeneratorId {
                            source: "bench-collector".into(),
                            module: "contrail-collector".into(),
                            node_type: "Analytics".into(),
                            instance_id: "0".into(),
                        };
                        let h = gen.header::<SandeshCtrlServerToClient>(0, 0, sandesh::CTRL_LEVEL, 0);
                        let reply = SandeshCtrlServerToClient { type_info: vec![], success: true };
                        s.write_all(&encode_message_frame(&h, &reply).unwrap()).unwrap();
                        answered = true;
                    }
                }
            });
        }
    });
    addr
}

/// An IPFIX collector stand-in: counts datagrams and bytes.
fn ipfix_peer() -> (SocketAddr, Arc<AtomicU64>, Arc<AtomicU64>) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = s.local_addr().unwrap();
    let (n, bytes) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (n2, b2) = (n.clone(), bytes.clone());
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while let Ok(k) = s.recv(&mut buf) {
            n2.fetch_add(1, Ordering::Relaxed);
            b2.fetch_add(k as u64, Ordering::Relaxed);
        }
    });
    (addr, n, bytes)
}

struct Row {
    what: String,
    records: u64,
    wall: f64,
    cpu: f64,
}

fn print(r: &Row) {
    println!(
        "{:<34} records {:>8}  wall {:>7.3} s  {:>10.0} records/s  (scan thread cpu {:>6.3} s)",
        r.what,
        r.records,
        r.wall,
        r.records as f64 / r.wall,
        r.cpu
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let flows: u32 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1 << 18);
    let rounds: u32 = args.next().and_then(|s| s.parse().ok()).unwrap_or(3);
    let dir = std::path::PathBuf::from(args.next().unwrap_or_else(|| "/dev/shm".into()));
    let sinks = args.next().unwrap_or_else(|| "scan,sandesh,ipfix,both".into());
    let wanted: Vec<&str> = sinks.split(',').collect();
    let path = dir.join(format!("export-rate-bench-flow.{}", std::process::id()));
    let table = Arc::new(
        FlowTable::create(
            &path,
            &FlowTableConfig { main_entries: flows.next_power_of_two(), overflow_entries: 0, max_lcores: 1 },
        )
        .expect("flow table"),
    );
    let _ = std::fs::remove_file(&path); // the mapping stays valid
    let mut idx = Vec::with_capacity(flows as usize);
    let mut up = FlowUpdate::new(Action::Forward);
    up.mirror = Some(0);
    let now_ms = vrouter::stats::unix_time_ms();
    let mut i = 0u32;
    while idx.len() < flows as usize {
        let k = FlowKey::v4(
            1,
            6,
            Ipv4Addr::new(10, 1, 0, 3),
            Ipv4Addr::from(0x0a02_0000 | (i >> 16)),
            (i & 0xffff) as u16,
            80,
        );
        i += 1;
        let Ok(l) = table.lookup_or_hold(&k, k.hash(), now_ms) else {
            break;
        };
        let f = l.index();
        let g = table.entry(f).unwrap().gen();
        table.set_action(f, g, &up).unwrap();
        idx.push(f);
    }
    let touch = || {
        let now = vrouter::stats::unix_time_ms();
        for &f in &idx {
            table.account(f, 100, now);
            table.account_mirror(f, false, 120);
        }
    };
    touch();
    println!(
        "table: {} entries, {} active mirrored TCP flows; {rounds} periodic sweeps per sink; records per sweep = flows",
        table.capacity(),
        idx.len()
    );

    let sandesh_addr = sandesh_peer();
    let (ipfix_addr, dgrams, dbytes) = ipfix_peer();
    let text = format!(
        "{CONFIG}[export]\nenabled = true\ncollectors = [\"{sandesh_addr}\"]\nflow_buffer = {}\n[ipfix]\nenabled = true\ncollectors = [\"{ipfix_addr}\"]\n",
        (u64::from(flows) * 2).min(16 << 20)
    );
    let cfg = vrouter::config::parse(&text, "bench").expect("config");

    for (key, mode) in [("scan", "scan only"), ("sandesh", "sandesh"), ("ipfix", "ipfix"), ("both", "sandesh + ipfix")]
    {
        if !wanted.contains(&key) {
            continue;
        }
        let with_sandesh = mode.contains("sandesh");
        let with_ipfix = mode.contains("ipfix");
        let mut session = with_sandesh.then(|| {
            let s = SessionHandle::start(vrouter::agent::export::session_config(&cfg)).expect("session");
            let deadline = Instant::now() + Duration::from_secs(10);
            while s.stats().established == 0 {
                assert!(Instant::now() < deadline, "no Sandesh session");
                std::thread::sleep(Duration::from_millis(10));
            }
            s
        });
        let mut ipfix = with_ipfix.then(|| IpfixSink::new(&cfg).expect("ipfix"));
        let mut scanner = FlowScanner::new(&cfg, table.clone()).expect("scanner");
        let (d0, b0) = (dgrams.load(Ordering::Relaxed), dbytes.load(Ordering::Relaxed));
        let mut total = Row { what: format!("{mode}: periodic (x{rounds})"), records: 0, wall: 0.0, cpu: 0.0 };
        for round in 0..=rounds {
            if round > 0 {
                touch();
            }
            let sent_before = session.as_ref().map_or(0, |s| s.stats().flows_sent);
            let exported_before = scanner.counters().records_exported;
            let (t, c) = (Instant::now(), cpu_ns());
            if with_sandesh || with_ipfix {
                scanner.sweep(&mut Sinks { sandesh: session.as_mut(), ipfix: ipfix.as_mut() });
            } else {
                scanner.sweep(&mut Discard);
            }
            if let Some(i) = ipfix.as_mut() {
                i.flush();
            }
            let records = scanner.counters().records_exported - exported_before;
            if let Some(s) = &session {
                while s.stats().flows_sent < sent_before + records {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            let row = Row {
                what: format!("{mode}: {}", if round == 0 { "setup sweep" } else { "periodic sweep" }),
                records,
                wall: t.elapsed().as_secs_f64(),
                cpu: (cpu_ns() - c) as f64 / 1e9,
            };
            if round == 0 {
                print(&row);
            } else {
                total.records += row.records;
                total.wall += row.wall;
                total.cpu += row.cpu;
            }
        }
        print(&total);
        if let Some(s) = &session {
            let st = s.stats();
            println!("    sandesh: {} records sent, {} dropped by the buffer", st.flows_sent, st.flows_dropped);
        }
        if let Some(i) = &ipfix {
            std::thread::sleep(Duration::from_millis(200));
            let st = i.stats();
            let c = &st.collectors[0];
            println!(
                "    ipfix: {} records in {} messages ({} bytes) sent, {} dropped; the peer read {} datagrams ({} bytes)",
                c.records,
                c.messages,
                c.bytes,
                c.records_dropped,
                dgrams.load(Ordering::Relaxed) - d0,
                dbytes.load(Ordering::Relaxed) - b0
            );
        }
        if let Some(s) = session {
            s.shutdown(Duration::from_secs(1));
        }
    }
}
