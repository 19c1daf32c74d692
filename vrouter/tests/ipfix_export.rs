//! End to end: the real vRouter forwards UDP flows (IPv4 both ways, IPv6, a flow to a remote
//! VM over MPLSoUDP, and a flow the policy denies) mirrored by the policy to two analyzers,
//! replayed without end by the pcap devices, so every flow gets a setup record and many
//! periodic ones; it exports them over IPFIX (`[ipfix]`, with `[export]` off) to two
//! collectors at once, and once stopped (its last sweep exports the final diffs):
//!
//! * a real IPFIX collector, Debian's `nfcapd` (nfdump), on 127.0.0.1: the records it stores,
//!   read back with `nfdump -o json`, add up per flow (5-tuple and VRF) to the flow table's
//!   packets and bytes (`FlowTableReader::iter_active`), and carry the flow's vifs;
//! * a UDP socket of this test, whose datagrams (the same messages) are decoded with the
//!   `ipfix` crate and written to a pcap that `tshark` (Wireshark's cflow dissector) decodes
//!   without an expert warning or error, with octet and packet counts adding up to the same
//!   totals.

mod common;
use common::*;
use flow_table::{FlowSnapshot, FlowTableReader};
use serde_json::Value;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A child process killed when the test ends, however it ends.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free UDP port on 127.0.0.1 (bound and released: nfcapd binds it next).
fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// nfcapd on 127.0.0.1:`port`, storing into `dir`, once it has bound its socket.
fn start_nfcapd(port: u16, dir: &Path) -> Guard {
    let log = dir.join("nfcapd.log");
    let data = dir.join("flows");
    std::fs::create_dir_all(&data).unwrap();
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new("nfcapd")
        .args(["-b", "127.0.0.1", "-p", &port.to_string(), "-t", "3600", "-w"])
        .arg(&data)
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("nfcapd must be installed (ci/setup.sh installs nfdump)");
    let g = Guard(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("Startup") {
        assert!(Instant::now() < deadline, "nfcapd did not start: {}", std::fs::read_to_string(&log).unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }
    g
}

/// Stops nfcapd with SIGTERM (it closes its current file) and waits for it.
fn stop_nfcapd(mut g: Guard) {
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(g.0.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while g.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "nfcapd did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The flow key nfdump and the flow table both identify a flow by.
type Key = (IpAddr, IpAddr, u16, u16, u8, u32);

fn key_of(f: &FlowSnapshot) -> Key {
    (f.key.src_ip(), f.key.dst_ip(), f.key.sport(), f.key.dport(), f.key.proto(), f.key.vrf())
}

fn nfdump_records(dir: &Path) -> Vec<Value> {
    let out = Command::new("nfdump").arg("-R").arg(dir.join("flows")).args(["-o", "json"]).output().unwrap();
    assert!(out.status.success(), "nfdump: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str::<Value>(&text)
        .unwrap_or_else(|e| panic!("nfdump -o json: {e}\n{text}"))
        .as_array()
        .unwrap()
        .clone()
}

fn nf_key(r: &Value) -> Key {
    let addr = |v4: &str, v6: &str| r[v4].as_str().or(r[v6].as_str()).unwrap().parse::<IpAddr>().unwrap();
    (
        addr("src4_addr", "src6_addr"),
        addr("dst4_addr", "dst6_addr"),
        r["src_port"].as_u64().unwrap() as u16,
        r["dst_port"].as_u64().unwrap() as u16,
        r["proto"].as_u64().unwrap() as u8,
        r["ingress_vrf"].as_str().unwrap().parse().unwrap(),
    )
}

/// The UDP datagrams wrapped in Ethernet/IPv4/UDP from 127.0.0.1:4739 to `port`, for tshark.
fn write_capture(path: &Path, datagrams: &[Vec<u8>], port: u16) {
    let frames: Vec<Vec<u8>> = datagrams
        .iter()
        .map(|d| eth([0; 6], [0; 6], 0x0800, &ipv4_udp(ip4("127.0.0.1"), ip4("127.0.0.1"), 64, 4739, port, d)))
        .collect();
    write_pcap(path, &frames);
}

fn tshark(pcap: &Path, port: u16, args: &[&str]) -> String {
    let out = Command::new("tshark")
        .arg("-n")
        .arg("-r")
        .arg(pcap)
        .args(["-d", &format!("udp.port=={port},cflow")])
        .args(args)
        .output()
        .expect("tshark must be installed (ci/setup.sh installs it)");
    let err = String::from_utf8_lossy(&out.stderr);
    let err: Vec<&str> = err.lines().filter(|l| !l.starts_with("Running as user")).collect();
    assert!(out.status.success() && err.is_empty(), "tshark {args:?}: {}\n{}", out.status, err.join("\n"));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn nfcapd_stores_the_flow_table_counters_and_tshark_decodes_the_export() {
    let dir = tempfile::tempdir().unwrap();
    let nf_port = free_udp_port();
    let nfcapd = start_nfcapd(nf_port, dir.path());
    // This test's own collector: every datagram, as received.
    let own = UdpSocket::bind("127.0.0.1:0").unwrap();
    let own_addr: SocketAddr = own.local_addr().unwrap();
    let datagrams: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    {
        let d = datagrams.clone();
        own.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            loop {
                if let Ok(n) = own.recv(&mut buf) {
                    d.lock().unwrap().push(buf[..n].to_vec());
                }
            }
        });
    }

    let mut vm1 = Vec::new();
    let mut vm2 = Vec::new();
    for (k, n) in [10usize, 200, 700, 1200, 64].into_iter().enumerate() {
        let ip = ipv4_udp(ip4("192.168.1.3"), ip4("192.168.1.4"), 64, 1000, 2000, &vec![k as u8; n]);
        vm1.push(eth(mac(ROUTER_MAC), mac(VM1_MAC), 0x0800, &ip));
        let ip = ipv6_udp(ip6("fd00:1::3"), ip6("fd00:1::4"), 64, 4400, 80, &vec![k as u8; n / 2]);
        vm1.push(eth(mac(ROUTER_MAC), mac(VM1_MAC), 0x86dd, &ip));
        let ip = ipv4_udp(ip4("192.168.1.3"), ip4("192.168.2.9"), 64, 1002, 53, &vec![k as u8; n / 3]);
        vm1.push(eth(mac(ROUTER_MAC), mac(VM1_MAC), 0x0800, &ip));
    }
    for n in [30usize, 40, 1400] {
        let ip = ipv4_udp(ip4("192.168.1.4"), ip4("192.168.1.3"), 64, 2000, 1000, &vec![0xcd; n]);
        vm2.push(eth(mac(ROUTER_MAC), mac(VM2_MAC), 0x0800, &ip));
        let ip = ipv4_udp(ip4("192.168.1.4"), ip4("192.168.1.3"), 64, 3000, 9999, &vec![0xee; n]);
        vm2.push(eth(mac(ROUTER_MAC), mac(VM2_MAC), 0x0800, &ip));
    }

    let analyzers = both_analyzers();
    let edit = |c: String| {
        format!(
            r#"{c}
[flow]
entries = 1024

{analyzers}
[[network_policy]]
name = "deny-9999-mirror-the-rest"
vns = ["default-domain:demo:vn1"]
[[network_policy.rule]]
uuid = "cccccccc-0000-4000-8000-000000000001"
protocol = "udp"
dst_ports = "9999"
direction = ">"
action = "deny"
[[network_policy.rule]]
uuid = "cccccccc-0000-4000-8000-000000000002"
action = "pass"
mirror_to = ["{ANALYZER_A}", "{ANALYZER_B}"]

[export]
enabled = false
scan_interval_ms = 20

[ipfix]
enabled = true
collectors = ["127.0.0.1:{nf_port}", "udp://{own_addr}"]
template_refresh_s = 1
observation_domain_id = 7
"#
        )
    };

    // The standard topology, vm1's and vm2's frames replayed without end.
    let run_tmp = tempfile::tempdir().unwrap();
    let d = run_tmp.path();
    let run_dir = d.join("run");
    let vdevs: Vec<String> = [Vec::new(), vm1, vm2]
        .iter()
        .enumerate()
        .map(|(i, frames)| {
            let rx = d.join(format!("in{i}.pcap"));
            write_pcap(&rx, frames);
            let extra = if frames.is_empty() { "" } else { ",infinite_rx=1" };
            format!("\"net_pcap{i},rx_pcap={}{extra}\"", rx.display())
        })
        .collect();
    let prefix = unique_prefix();
    let cfg = edit(topology(&vdevs.join(", "), &prefix, &run_dir));
    let cfg_path = d.join("vrouter.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let mut child = spawn_vrouter(&cfg_path, prefix);

    // Per flow (flowId), the records this test's collector has and the sums of their deltas.
    let received = || {
        let mut dec = ipfix::Decoder::new();
        let mut sums: HashMap<u64, (u64, u64, u64)> = HashMap::new();
        for d in datagrams.lock().unwrap().iter() {
            for r in dec.flow_records(d, ipfix::DOCUMENTATION_PEN).unwrap() {
                let e = sums.entry(r.flow_id).or_default();
                e.0 += r.octet_delta;
                e.1 += r.packet_delta;
                e.2 += 1;
            }
        }
        sums
    };
    let id = |f: &FlowSnapshot| u64::from(f.index) << 32 | u64::from(f.gen);
    // Running: wait for the eight flows and at least three records of each flow with traffic
    // (setup, then periodic records while the traffic goes on); the reverse flows of one-way
    // traffic have their setup record only.
    let deadline = Instant::now() + Duration::from_secs(60);
    let reader = loop {
        if let Ok(r) = FlowTableReader::open_run_dir(&run_dir) {
            let flows: Vec<FlowSnapshot> = r.iter_active().collect();
            let sums = received();
            if flows.len() == 8
                && flows.iter().all(|f| sums.get(&id(f)).is_some_and(|s| s.2 >= if f.packets > 0 { 3 } else { 1 }))
            {
                break r;
            }
        }
        if let Some(st) = child.try_wait().unwrap() {
            panic!("vrouter exited: {st}");
        }
        assert!(Instant::now() < deadline, "no periodic records of every flow: {:?}", received());
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = stop(&mut child);
    // Stopped: the lcores first, then the exporter with its last sweep. The table's final
    // counters are what the deltas must add up to.
    let dp: Vec<FlowSnapshot> = reader.iter_active().collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let sums = received();
        if dp.iter().all(|f| sums.get(&id(f)).is_some_and(|s| (s.0, s.1) == (f.bytes, f.packets))) {
            break;
        }
        let export = vrouter::agent::export::read_counters(&run_dir);
        assert!(
            Instant::now() < deadline,
            "the export never matched the flow table:\n{sums:?}\n{dp:#?}\n{export:?}\n{stdout}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let c = vrouter::agent::export::read_counters(&run_dir).unwrap();
    assert_eq!((c.ipfix_collectors, c.ipfix_records_dropped, c.ipfix_errors), (2, 0, 0), "{c:?}");
    // Every packet the VM vifs received is on a flow.
    let stats = vrouter::stats::StatsReader::open(&run_dir).unwrap();
    let vm_rx = stats.vif_counters(1, None).rx_packets + stats.vif_counters(2, None).rx_packets;
    assert_eq!(dp.iter().map(|f| f.packets).sum::<u64>(), vm_rx, "every packet is on a flow");
    // Four pairs of flows (each direction its own entry): vm1 <-> vm2 (UDP, traffic both
    // ways), vm1 -> vm2 over IPv6, vm1 -> the remote VM, and vm2 -> vm1 port 9999, denied.
    let keys: Vec<Key> = dp.iter().map(key_of).collect();
    assert_eq!(dp.len(), 8, "{keys:#?}");
    assert!(dp.iter().any(|f| f.mirror_packets > 0 && f.sec_mirror_packets > 0), "mirrored flows: {dp:#?}");
    // Let nfcapd read what is queued on its socket, then stop it: it closes its file.
    std::thread::sleep(Duration::from_millis(500));
    stop_nfcapd(nfcapd);

    // nfcapd's stored records, per flow, equal the flow table's counters.
    let recs = nfdump_records(dir.path());
    let mut nf: HashMap<Key, (u64, u64, u64, u64)> = HashMap::new();
    for r in &recs {
        let e = nf.entry(nf_key(r)).or_default();
        e.0 += r["in_bytes"].as_u64().unwrap();
        e.1 += r["in_packets"].as_u64().unwrap();
        e.2 = r["input_snmp"].as_u64().unwrap();
        e.3 = r["output_snmp"].as_u64().unwrap();
    }
    for f in &dp {
        let got = nf.get(&key_of(f)).unwrap_or_else(|| panic!("nfdump has no record of {:?}: {nf:#?}", key_of(f)));
        assert_eq!((got.0, got.1), (f.bytes, f.packets), "flow {:?}", key_of(f));
    }
    assert_eq!(nf.len(), dp.len(), "no record of a flow the table does not have: {nf:#?}");
    let vif = |src: &str, dst: &str, dport: u16| {
        let (s, d) = (src.parse::<IpAddr>().unwrap(), dst.parse::<IpAddr>().unwrap());
        nf.iter().find(|(k, _)| k.0 == s && k.1 == d && k.3 == dport).map(|(_, v)| (v.2, v.3)).unwrap()
    };
    assert_eq!(vif("192.168.1.3", "192.168.1.4", 2000), (1, 2), "ingress vif1, egress vif2");
    assert_eq!(vif("192.168.1.4", "192.168.1.3", 1000), (2, 1));
    assert_eq!(vif("fd00:1::3", "fd00:1::4", 80), (1, 2));
    assert_eq!(vif("192.168.1.3", "192.168.2.9", 53), (1, 0), "towards the tunnel: out of the fabric vif 0");
    assert_eq!(vif("192.168.1.4", "192.168.1.3", 9999), (2, 0), "denied: no egress interface");

    // This test's collector got the same messages: as many records as nfcapd stored.
    let datagrams = datagrams.lock().unwrap().clone();
    let mut dec = ipfix::Decoder::new();
    let mut mine: Vec<ipfix::FlowRecord> = Vec::new();
    for d in &datagrams {
        let m = dec.message(d).unwrap();
        assert_eq!(m.observation_domain_id, 7);
        for (tid, fields) in &m.records {
            let r = ipfix::FlowRecord::from_fields(
                *tid,
                fields.iter().map(|(s, b)| (*s, &b[..])),
                ipfix::DOCUMENTATION_PEN,
            );
            mine.push(r.unwrap());
        }
    }
    assert_eq!(mine.len(), recs.len(), "both collectors got every record");
    let denied = mine.iter().find(|r| r.destination_port == 9999).unwrap();
    assert_eq!((denied.forwarding_status, denied.policy_action.as_str()), (0x81, "deny"));
    assert_eq!(denied.network_policy_rule, "cccccccc-0000-4000-8000-000000000001");
    let mirrored = mine.iter().rfind(|r| r.destination_port == 2000).unwrap();
    assert_eq!((mirrored.analyzer_name.as_str(), mirrored.secondary_analyzer_name.as_str()), (ANALYZER_A, ANALYZER_B));
    let f = dp.iter().find(|f| f.key.dport() == 2000).unwrap();
    assert_eq!((mirrored.mirror_packets, mirrored.mirror_octets), (f.mirror_packets, f.mirror_bytes));
    assert_eq!(
        (mirrored.secondary_mirror_packets, mirrored.secondary_mirror_octets),
        (f.sec_mirror_packets, f.sec_mirror_bytes)
    );
    assert_eq!(mirrored.layer2_segment_id, (1 << 56) | 5001, "vn1's VNI");

    // tshark decodes every message without an expert note, and its octet and packet counts
    // add up to the flow table's.
    let own_port = own_addr.port();
    let pcap = dir.path().join("ipfix.pcap");
    write_capture(&pcap, &datagrams, own_port);
    let expert = tshark(&pcap, own_port, &["-q", "-z", "expert"]);
    assert!(
        !["Error", "Warn", "Malformed", "Note"].iter().any(|w| expert.contains(w)),
        "tshark's expert info is not empty:\n{expert}"
    );
    let fields = tshark(
        &pcap,
        own_port,
        &["-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,", "-e", "cflow.octets", "-e", "cflow.packets"],
    );
    let (mut octets, mut packets, mut n) = (0u64, 0u64, 0usize);
    for line in fields.lines() {
        let mut cols = line.split('\t');
        let o: Vec<u64> =
            cols.next().unwrap_or("").split(',').filter(|s| !s.is_empty()).map(|s| s.parse().unwrap()).collect();
        let p: Vec<u64> =
            cols.next().unwrap_or("").split(',').filter(|s| !s.is_empty()).map(|s| s.parse().unwrap()).collect();
        assert_eq!(o.len(), p.len());
        n += o.len();
        octets += o.iter().sum::<u64>();
        packets += p.iter().sum::<u64>();
    }
    assert_eq!(n, mine.len(), "tshark decodes every record");
    eprintln!(
        "{} flows; nfcapd stored {} records, this test's collector got {} in {} messages; tshark decoded {n}:\n{expert}",
        dp.len(),
        recs.len(),
        mine.len(),
        datagrams.len()
    );
    assert_eq!((octets, packets), (dp.iter().map(|f| f.bytes).sum(), dp.iter().map(|f| f.packets).sum()));
    let verbose = tshark(&pcap, own_port, &["-V"]);
    assert!(
        verbose.contains("Example Enterprise Number for Documentation Use (32473)"),
        "the PEN of the enterprise elements"
    );
    assert!(verbose.contains("Ingress VRFID: 1") && verbose.contains("Firewall Event: Flow denied (3)"), "{verbose}");
}
