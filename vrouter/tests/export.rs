//! Flow and UVE export from the real vRouter to a collector started in the test (which speaks
//! the server side of the Sandesh handshake with the sandesh crate's strict decoder): for
//! every flow, the sums over the received FlowLogData of diff bytes and diff packets equal the
//! flow table's counters and the last mirror figures equal its mirror counters; analyzer
//! names are the configured ones; the VMI and vRouter UVEs carry the vif counters.
//!
//! Every flow is mirrored to two analyzers: each packet is copied to both (checked), and the
//! mirror figures of a record are cumulative, like its `bytes`/`packets` (the diffs are
//! `diff_bytes`/`diff_packets`), so the last record of a flow carries its final counters.

mod common;
use common::*;
use flow_table::{FlowSnapshot, FlowTableReader};
use sandesh::{
    decode_message, encode_message_frame, Decoded, FlowLogData, FrameDecoder, GeneratorId, Message,
    SandeshCtrlServerToClient,
};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Received = Arc<Mutex<Vec<Decoded>>>;

/// A minimal collector: accepts connections, answers the handshake, records every message.
fn collector() -> (SocketAddr, Received) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let got: Received = Arc::default();
    let g = got.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let g = g.clone();
            std::thread::spawn(move || serve(s, g));
        }
    });
    (addr, got)
}

fn serve(mut s: TcpStream, got: Received) {
    let mut frames = FrameDecoder::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        frames.push(&buf[..n]);
        while let Ok(Some(body)) = frames.next_frame() {
            let d = decode_message(&body).expect("strictly decodable message");
            if matches!(d.message, Message::CtrlClientToServer(_)) {
                let gen = GeneratorId {
                    source: "collector".into(),
                    module: "contrail-collector".into(),
                    node_type: "Analytics".into(),
                    instance_id: "0".into(),
                };
                let h = gen.header::<SandeshCtrlServerToClient>(0, 0, sandesh::CTRL_LEVEL, 0);
                let reply = SandeshCtrlServerToClient { type_info: vec![], success: true };
                s.write_all(&encode_message_frame(&h, &reply).unwrap()).unwrap();
            }
            got.lock().unwrap().push(d);
        }
    }
}

fn flows_of(got: &Received) -> Vec<FlowLogData> {
    got.lock()
        .unwrap()
        .iter()
        .flat_map(|d| match &d.message {
            Message::FlowLogDataObject(o) => o.flowdata.clone(),
            _ => vec![],
        })
        .collect()
}

/// Per flow UUID: (sum diff bytes, sum diff packets, last record).
fn sums(records: &[FlowLogData]) -> HashMap<String, (i64, i64, FlowLogData)> {
    let mut m: HashMap<String, (i64, i64, FlowLogData)> = HashMap::new();
    for r in records {
        let e = m.entry(r.flowuuid.clone()).or_insert_with(|| (0, 0, r.clone()));
        e.0 += r.diff_bytes.unwrap();
        e.1 += r.diff_packets.unwrap();
        e.2 = r.clone();
    }
    m
}

fn record_of<'a>(s: &'a HashMap<String, (i64, i64, FlowLogData)>, f: &FlowSnapshot) -> &'a (i64, i64, FlowLogData) {
    let prefix = format!("{:08x}-{:04x}-", f.index, f.gen);
    s.iter()
        .find(|(k, _)| k.starts_with(&prefix))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no record for flow {} in {:?}", f.index, s.keys()))
}

fn udp(src: &str, dst: &str, sport: u16, dport: u16, n: usize, from: &str) -> Vec<u8> {
    let ip = ipv4_udp(ip4(src), ip4(dst), 64, sport, dport, &vec![0x5a; n]);
    eth(mac(ROUTER_MAC), mac(from), 0x0800, &ip)
}

fn config(addr: SocketAddr) -> impl FnOnce(String) -> String {
    move |cfg| {
        format!(
            r#"{cfg}
{ANALYZER_NET}

[[analyzer]]
name = "analyzer-one"
ip = "10.20.0.10"

[[analyzer]]
name = "analyzer-two"
ip = "10.20.0.11"

[[network_policy]]
name = "mirror-all"
vns = ["default-domain:demo:vn1"]
[[network_policy.rule]]
uuid = "7e570000-0000-4000-8000-000000000001"
action = "pass"
mirror_to = ["analyzer-one", "analyzer-two"]

[export]
enabled = true
collectors = ["{addr}"]
source = "vrouter-test"
uve_interval_s = 1
backoff_base_ms = 50
backoff_max_ms = 200
"#
        )
    }
}

#[test]
fn exported_flow_records_add_up_to_the_flow_counters() {
    let (addr, got) = collector();
    let mut vm1 = Vec::new();
    let mut vm2 = Vec::new();
    for i in 0..6u16 {
        for n in [10usize, 300, 1200] {
            vm1.push(udp("192.168.1.3", "192.168.1.4", 1000 + i, 53, n + usize::from(i), VM1_MAC));
        }
        vm2.push(udp("192.168.1.4", "192.168.1.3", 53, 1000 + i, 40, VM2_MAC));
    }
    let n_in = (vm1.len() + vm2.len()) as u64;
    let got2 = got.clone();
    let out = run_live(Inputs { vm1, vm2, ..Default::default() }, config(addr), move |run_dir| {
        // While it runs: wait until the collector has every flow's current figures and a
        // VMI UVE that counts every packet vif 1 received.
        let reader = FlowTableReader::open_run_dir(run_dir).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let live: Vec<FlowSnapshot> = reader.iter_active().collect();
            let s = sums(&flows_of(&got2));
            let flows_ok = live.len() == 12
                && live.iter().all(|f| {
                    let p = format!("{:08x}-{:04x}-", f.index, f.gen);
                    s.iter().any(|(k, v)| k.starts_with(&p) && v.0 as u64 == f.bytes)
                });
            let uve_ok = got2.lock().unwrap().iter().any(|d| match &d.message {
                Message::UveVmiStats(u) => {
                    u.data.name == "5f2a1c3e-0000-4000-8000-0000000000a1"
                        && u.data.raw_if_stats.as_ref().is_some_and(|r| r.in_pkts == 18)
                }
                _ => false,
            });
            if flows_ok && uve_ok {
                break;
            }
            assert!(Instant::now() < deadline, "export incomplete: {} flows, {} records", live.len(), s.len());
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    out.assert_accounted(n_in);
    // After the stop (final sweep and flush): the records of every flow add up exactly.
    let table: Vec<FlowSnapshot> = FlowTableReader::open_run_dir(&out.run_dir).unwrap().iter_active().collect();
    assert_eq!(table.len(), 12, "6 pairs");
    let records = flows_of(&got);
    let s = sums(&records);
    let mut total_bytes = 0;
    for f in &table {
        let (db, dp, last) = record_of(&s, f);
        assert_eq!((*db as u64, *dp as u64), (f.bytes, f.packets), "flow {}", f.index);
        assert_eq!((last.bytes, last.packets), (Some(f.bytes as i64), Some(f.packets as i64)));
        assert_eq!(last.analyzer_name.as_deref(), Some("analyzer-one"));
        assert_eq!(last.sec_analyzer_name.as_deref(), Some("analyzer-two"));
        assert_eq!(
            (last.mirror_bytes, last.mirror_packets),
            (Some(f.mirror_bytes as i64), Some(f.mirror_packets as i64))
        );
        assert_eq!(
            (last.sec_mirror_bytes, last.sec_mirror_packets),
            (Some(f.sec_mirror_bytes as i64), Some(f.sec_mirror_packets as i64))
        );
        // Every packet of every flow was mirrored to both analyzers (the routes to them exist).
        assert_eq!((f.mirror_packets, f.sec_mirror_packets), (f.packets, f.packets), "flow {}", f.index);
        assert!(f.mirror_bytes > f.bytes && f.sec_mirror_bytes > f.bytes, "copies carry outer headers");
        assert_eq!(last.action.as_deref(), Some("pass|mirror"));
        assert_eq!(last.nw_ace_uuid.as_deref(), Some("7e570000-0000-4000-8000-000000000001"));
        assert_eq!(last.sourcevn, "default-domain:demo:vn1");
        total_bytes += f.bytes;
    }
    // The datapath counters: every byte vif 1 and vif 2 received is in some flow.
    let ip_bytes: u64 = [1u16, 2].iter().map(|v| out.vifs[v].rx_bytes - 14 * out.vifs[v].rx_packets).sum();
    assert_eq!(total_bytes, ip_bytes);
    // Every record came from our generator, every header is a FLOW header.
    let all = got.lock().unwrap();
    assert!(all.iter().all(|d| d.header.source == "vrouter-test" && d.header.node_type == "Compute"));
    assert!(all.iter().any(|d| matches!(&d.message, Message::VrouterStats(v) if v.data.name == "vrouter-test")));
}
