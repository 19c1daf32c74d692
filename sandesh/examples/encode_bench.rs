//! FlowLogData encode (and strict decode) throughput.
//!
//! `cargo run --release -p sandesh --example encode_bench [seconds [decode-seconds]]`
//!
//! Encodes `FlowLogDataObject`s of 16 fully populated records (every optional field set, both
//! analyzers) into framed bytes, as the session does (typed fast path), for the given time
//! (default 3 s) on one thread; then the same through the dynamic value tree; then decodes
//! the last buffer of frames with the strict decoder, repeatedly, for `decode-seconds`
//! (default: the same time). Prints records per second.

use sandesh::{
    decode_message, encode_message, FlowLogData, FlowLogDataObject, FrameDecoder, GeneratorId, SandeshStruct,
};
use std::time::{Duration, Instant};

fn record(i: u64) -> FlowLogData {
    let mut f = FlowLogData::new(
        format!("0000{:04x}-0000-4000-8000-{:012x}", i & 0xffff, i),
        1,
        "default-domain:demo:left".into(),
        std::net::IpAddr::from([10, 1, (i >> 8) as u8, i as u8]),
        "default-domain:demo:right".into(),
        "10.2.2.3".parse().unwrap(),
        6,
        (i % 65536) as u16,
        80,
    );
    f.tcp_flags = Some(0x12);
    f.vm = Some("vm-left".into());
    f.reverse_uuid = Some(format!("0000{:04x}-0000-4000-8000-{:012x}", i & 0xffff, i + 1));
    f.setup_time = Some(1_700_000_000_000_000 + i as i64);
    f.teardown_time = Some(1_700_000_000_100_000 + i as i64);
    f.bytes = Some(3000 * i as i64);
    f.packets = Some(30 * i as i64);
    f.diff_bytes = Some(1000);
    f.diff_packets = Some(10);
    f.action = Some("pass|mirror".into());
    f.sg_rule_uuid = Some("00000000-0000-0000-0000-00000000abcd".into());
    f.nw_ace_uuid = Some("00000000-0000-0000-0000-00000000abce".into());
    f.vrouter_ip = Some("192.168.0.1".into());
    f.other_vrouter_ip = Some("192.168.0.2".into());
    f.underlay_proto = Some(17);
    f.underlay_source_port = Some(52000);
    f.vmi_uuid = Some("00000000-0000-0000-0000-0000000000a1".into());
    f.drop_reason = Some(String::new());
    f.forward_flow = Some(true);
    f.analyzer_name = Some("analyzer-a".into());
    f.mirror_bytes = Some(3420 * i as i64);
    f.mirror_packets = Some(30 * i as i64);
    f.sec_analyzer_name = Some("analyzer-b".into());
    f.sec_mirror_bytes = Some(3420 * i as i64);
    f.sec_mirror_packets = Some(30 * i as i64);
    f
}

/// CPU time of this thread, ns (`/proc/thread-self/schedstat`).
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let secs: f64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let decode_secs: f64 = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(secs);
    let gen = GeneratorId {
        source: "host1".into(),
        module: "contrail-vrouter-agent".into(),
        node_type: "Compute".into(),
        instance_id: "0".into(),
    };
    let batches: Vec<FlowLogDataObject> =
        (0..256u64).map(|b| FlowLogDataObject { flowdata: (0..16).map(|i| record(b * 16 + i)).collect() }).collect();
    let mut out = Vec::with_capacity(64 << 20);
    let mut scratch = String::new();
    let mut records = 0u64;
    let mut frames = 0u64;
    let start = Instant::now();
    let limit = Duration::from_secs_f64(secs);
    let mut seq = 0;
    let cpu0 = cpu_ns();
    while start.elapsed() < limit {
        for b in &batches {
            seq += 1;
            let h = gen.header::<FlowLogDataObject>(1_700_000_000_000_000, seq, 6, 0);
            if out.len() > 48 << 20 {
                out.clear();
            }
            encode_message(&mut out, &mut scratch, &h, b).expect("encode");
            records += b.flowdata.len() as u64;
            frames += 1;
        }
    }
    let el = start.elapsed().as_secs_f64();
    let cpu = (cpu_ns() - cpu0) as f64 / 1e9;
    println!(
        "encode: {records} records in {frames} frames, {el:.2} s wall, {cpu:.2} s CPU: {:.0} records/s wall, {:.0} records per CPU second, {:.0} bytes/record",
        records as f64 / el,
        records as f64 / cpu,
        scratch.len() as f64 / 16.0
    );

    // The same through the dynamic value tree (typed -> StructValue -> generic encoder).
    let mut dyn_out = Vec::with_capacity(64 << 20);
    let mut drecords = 0u64;
    let start = Instant::now();
    let cpu0 = cpu_ns();
    while start.elapsed() < limit {
        for b in &batches {
            let h = gen.header::<FlowLogDataObject>(1_700_000_000_000_000, 1, 6, 0);
            if dyn_out.len() > 48 << 20 {
                dyn_out.clear();
            }
            sandesh::encode::encode_frame_with(
                &mut dyn_out,
                &mut scratch,
                &h.to_struct_value(),
                <FlowLogDataObject as sandesh::SandeshMessage>::MESSAGE,
                &b.to_struct_value(),
            )
            .expect("encode");
            drecords += b.flowdata.len() as u64;
        }
    }
    let el = start.elapsed().as_secs_f64();
    let cpu = (cpu_ns() - cpu0) as f64 / 1e9;
    println!(
        "encode via the dynamic value tree: {drecords} records, {el:.2} s wall, {cpu:.2} s CPU: {:.0} records/s wall, {:.0} records per CPU second",
        drecords as f64 / el,
        drecords as f64 / cpu
    );

    // Decode the last buffer of frames, again and again for the given time.
    let start = Instant::now();
    let cpu0 = cpu_ns();
    let mut drec = 0u64;
    while start.elapsed() < Duration::from_secs_f64(decode_secs) {
        let mut d = FrameDecoder::new();
        d.push(&out);
        while let Some(body) = d.next_frame().expect("frame") {
            match decode_message(&body).expect("decode").message {
                sandesh::Message::FlowLogDataObject(o) => drec += o.flowdata.len() as u64,
                _ => unreachable!(),
            }
        }
    }
    let el = start.elapsed().as_secs_f64();
    let cpu = (cpu_ns() - cpu0) as f64 / 1e9;
    println!(
        "strict decode: {drec} records, {el:.2} s wall: {:.0} records/s wall, {:.0} records per CPU second",
        drec as f64 / el,
        drec as f64 / cpu
    );
}
