use ipfix::*;
use std::time::Instant;
fn main() {
    let to: Collector = std::env::args().nth(1).unwrap().parse().unwrap();
    let mut ex = Exporter::<FlowRecord>::new(ExporterConfig::new(vec![to])).unwrap();
    for i in 0..5u32 {
        let mut r =
            FlowRecord { protocol: 17, source_port: 1000 + i as u16, destination_port: 53, ..Default::default() };
        if i == 4 {
            r.set_addresses("fd00::3".parse().unwrap(), "fd00::4".parse().unwrap());
        } else {
            r.set_addresses("192.168.1.3".parse().unwrap(), "192.168.1.4".parse().unwrap());
        }
        r.octet_delta = 100 * (i as u64 + 1);
        r.packet_delta = i as u64 + 1;
        r.octet_total = 99999;
        r.packet_total = 999;
        r.flow_start_ms = 1_760_000_000_000;
        r.flow_end_ms = 1_760_000_001_000;
        r.flow_end_reason = 2;
        r.tcp_control_bits = 0x12;
        r.ingress_interface = 1;
        r.egress_interface = 2;
        r.ingress_vrf = 7;
        r.egress_vrf = 8;
        r.flow_direction = 1;
        r.layer2_segment_id = (1u64 << 56) | 5001;
        r.forwarding_status = 0x40;
        r.firewall_event = 1;
        r.flow_id = 12345;
        r.exporter_ipv4 = "10.10.0.1".parse().unwrap();
        r.mirror_octets = 5;
        r.analyzer_name = "analyzer-a".into();
        r.flow_uuid = "x".repeat(300);
        ex.add(&r, Instant::now());
    }
    ex.flush(Instant::now());
    println!("{:?}", ex.stats());
}
