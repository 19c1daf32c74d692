//! Stateful flows through the real vRouter: flow pairs with exact counters, policy denies
//! with their drop reason and rule UUID, held packets released in order, aging, and the
//! tools reading flows live.

mod common;
use common::*;
use flow_table::{Action, FlowSnapshot, FlowTableReader, FLOW_DR_POLICY};
use std::time::{Duration, Instant};
use vrouter::drop_reason::DropReason;

fn vm_udp(src: &str, dst: &str, sport: u16, dport: u16, payload: &[u8], from_mac: &str) -> (Vec<u8>, Vec<u8>) {
    let ip = ipv4_udp(ip4(src), ip4(dst), 64, sport, dport, payload);
    (eth(mac(ROUTER_MAC), mac(from_mac), 0x0800, &ip), ip)
}

fn flows(run_dir: &std::path::Path) -> Vec<FlowSnapshot> {
    let r = FlowTableReader::open_run_dir(run_dir).expect("flow table");
    let mut v: Vec<_> = r.iter_active().collect();
    v.sort_by_key(|f| f.index);
    v
}

fn find<'a>(fl: &'a [FlowSnapshot], src: &str, dst: &str, sport: u16, dport: u16) -> &'a FlowSnapshot {
    fl.iter()
        .find(|f| {
            f.key.src_ip() == std::net::IpAddr::V4(ip4(src))
                && f.key.dst_ip() == std::net::IpAddr::V4(ip4(dst))
                && f.key.sport() == sport
                && f.key.dport() == dport
        })
        .unwrap_or_else(|| panic!("no flow {src}:{sport} -> {dst}:{dport} in {fl:#?}"))
}

#[test]
fn traffic_creates_linked_flow_pairs_with_exact_counters() {
    let mut vm1 = Vec::new();
    let mut fwd_bytes = 0u64;
    for n in [10usize, 200, 700] {
        let (f, ip) = vm_udp("192.168.1.3", "192.168.1.4", 1000, 2000, &vec![0xab; n], VM1_MAC);
        fwd_bytes += ip.len() as u64;
        vm1.push(f);
    }
    let mut vm2 = Vec::new();
    let mut rev_bytes = 0u64;
    for n in [30usize, 40] {
        let (f, ip) = vm_udp("192.168.1.4", "192.168.1.3", 2000, 1000, &vec![0xcd; n], VM2_MAC);
        rev_bytes += ip.len() as u64;
        vm2.push(f);
    }
    let out = run(Inputs { vm1: vm1.clone(), vm2: vm2.clone(), ..Default::default() });
    assert_eq!(out.vm2.len(), 3, "held packets are released, none lost");
    assert_eq!(out.vm1.len(), 2);
    // Released in order.
    for (o, i) in out.vm2.iter().zip(&vm1) {
        assert_eq!(o.len(), i.len());
        assert_eq!(o[14 + 28..], i[14 + 28..]);
    }
    out.assert_accounted(5);
    let fl = flows(&out.run_dir);
    assert_eq!(fl.len(), 2, "{fl:#?}");
    let f = find(&fl, "192.168.1.3", "192.168.1.4", 1000, 2000);
    let r = find(&fl, "192.168.1.4", "192.168.1.3", 2000, 1000);
    assert_eq!((f.packets, f.bytes), (3, fwd_bytes));
    assert_eq!((r.packets, r.bytes), (2, rev_bytes));
    assert_eq!(f.rflow, Some(r.index));
    assert_eq!(r.rflow, Some(f.index));
    assert_eq!((f.action, r.action), (Action::Forward, Action::Forward));
    assert_eq!(f.key.vrf(), 1);
}

#[test]
fn fabric_decap_traffic_matches_the_reverse_of_a_vm_flow() {
    // vm1 -> remote over MPLSoUDP, and the reply comes back from the fabric with label 17.
    let (out_frame, _) = vm_udp("192.168.1.3", "192.168.2.10", 3000, 4000, b"request", VM1_MAC);
    let inner = ipv4_udp(ip4("192.168.2.10"), ip4("192.168.1.3"), 63, 4000, 3000, b"reply");
    let mut mp = mpls(17, 64).to_vec();
    mp.extend_from_slice(&inner);
    let reply = tunnel_outer(mac(FABRIC_MAC), mac(GW_MAC), ip4("10.10.0.2"), ip4("10.10.0.1"), 50000, 6635, &mp);
    let out = run(Inputs { vm1: vec![out_frame], fabric: vec![reply], ..Default::default() });
    assert_eq!(out.fabric.len(), 1);
    assert_eq!(out.vm1.len(), 1);
    out.assert_accounted(2);
    let fl = flows(&out.run_dir);
    assert_eq!(fl.len(), 2, "one pair, not two: {fl:#?}");
    let f = find(&fl, "192.168.1.3", "192.168.2.10", 3000, 4000);
    let r = find(&fl, "192.168.2.10", "192.168.1.3", 4000, 3000);
    assert_eq!((f.packets, r.packets), (1, 1));
    assert_eq!(f.rflow, Some(r.index));
}

const DENY_UDP_53: &str = "aaaaaaaa-0000-4000-8000-000000000053";
const PASS_ALL: &str = "aaaaaaaa-0000-4000-8000-0000000000ff";

fn with_policy(cfg: String) -> String {
    format!(
        r#"{cfg}
[[network_policy]]
name = "no-dns"
vns = ["default-domain:demo:vn1"]
[[network_policy.rule]]
uuid = "{DENY_UDP_53}"
protocol = "udp"
dst_ports = "53"
action = "deny"
[[network_policy.rule]]
uuid = "{PASS_ALL}"
action = "pass"
"#
    )
}

#[test]
fn denied_flows_drop_with_the_policy_reason_and_rule_uuid() {
    let (dns1, _) = vm_udp("192.168.1.3", "192.168.1.4", 5353, 53, b"q1", VM1_MAC);
    let (dns2, _) = vm_udp("192.168.1.3", "192.168.1.4", 5353, 53, b"q2", VM1_MAC);
    let (web, _) = vm_udp("192.168.1.3", "192.168.1.4", 5000, 80, b"get", VM1_MAC);
    let mut uuids = (serde_json::Value::Null, serde_json::Value::Null);
    let out = run_live(Inputs { vm1: vec![dns1, dns2, web], ..Default::default() }, with_policy, |run_dir| {
        let fl = flows(run_dir);
        let dns = find(&fl, "192.168.1.3", "192.168.1.4", 5353, 53);
        let web = find(&fl, "192.168.1.3", "192.168.1.4", 5000, 80);
        uuids.0 = control(run_dir, &serde_json::json!({"cmd": "flow", "index": dns.index}));
        uuids.1 = control(run_dir, &serde_json::json!({"cmd": "flow", "index": web.index}));
    });
    assert_eq!(out.vm2.len(), 1, "only the web packet passes");
    assert_eq!(out.drop_list(), vec![(DropReason::FlowActionDrop, 2)]);
    out.assert_accounted(3);
    let fl = flows(&out.run_dir);
    let dns = find(&fl, "192.168.1.3", "192.168.1.4", 5353, 53);
    assert_eq!((dns.action, dns.drop_reason), (Action::Drop, FLOW_DR_POLICY));
    assert_eq!(dns.packets, 2, "dropped packets are counted on their flow");
    assert_eq!(uuids.0["meta"]["nw_ace_uuid"], DENY_UDP_53, "{}", uuids.0);
    assert_eq!(uuids.0["meta"]["action"], "deny");
    assert_eq!(uuids.1["meta"]["nw_ace_uuid"], PASS_ALL, "{}", uuids.1);
}

#[test]
fn packets_beyond_the_per_flow_hold_queue_drop_with_their_reason() {
    let frames: Vec<Vec<u8>> =
        (0..6u8).map(|i| vm_udp("192.168.1.3", "192.168.1.4", 7000, 7001, &[i; 8], VM1_MAC).0).collect();
    let out = run(Inputs { vm1: frames.clone(), ..Default::default() });
    out.assert_accounted(6);
    let queued = out.drop_count(DropReason::FlowQueueLimitExceeded);
    assert_eq!(out.vm2.len() as u64 + queued, 6);
    assert!(out.vm2.len() >= 3, "the first three are held and released");
    assert_eq!(out.total_drops(), queued, "{:?}", out.drop_list());
    // Whatever was forwarded left in order.
    for (o, i) in out.vm2.iter().zip(&frames) {
        assert_eq!(o[14 + 28..], i[14 + 28..]);
    }
    let fl = flows(&out.run_dir);
    assert_eq!(find(&fl, "192.168.1.3", "192.168.1.4", 7000, 7001).packets, 6);
}

#[test]
fn idle_flows_age_out() {
    let (f, _) = vm_udp("192.168.1.3", "192.168.1.4", 8000, 8001, b"age", VM1_MAC);
    let mut remaining = usize::MAX;
    run_live(
        Inputs { vm1: vec![f], ..Default::default() },
        |c| format!("{c}\n[flow]\nage_timeout_s = 1\n"),
        |run_dir| {
            assert_eq!(flows(run_dir).len(), 2);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                remaining = flows(run_dir).len();
                if remaining == 0 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        },
    );
    assert_eq!(remaining, 0, "idle pair not aged within 10 s of a 1 s timeout");
}

#[test]
fn stateless_mode_creates_no_flows() {
    let (f, _) = vm_udp("192.168.1.3", "192.168.1.4", 9000, 9001, b"x", VM1_MAC);
    let out = run_with(Inputs { vm1: vec![f], ..Default::default() }, |c| format!("{c}\n[flow]\nenabled = false\n"));
    assert_eq!(out.vm2.len(), 1);
    assert!(FlowTableReader::open_run_dir(&out.run_dir).is_err(), "no flow table without flows");
}

fn tcp_frame(src: &str, dst: &str, sport: u16, dport: u16, flags: u8, from_mac: &str) -> Vec<u8> {
    let (s, d) = (ip4(src), ip4(dst));
    let mut tcp = vec![0u8; 20];
    tcp[0..2].copy_from_slice(&sport.to_be_bytes());
    tcp[2..4].copy_from_slice(&dport.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = flags;
    tcp[14] = 0xff;
    let mut pseudo = 0u32;
    for w in s.octets().chunks(2).chain(d.octets().chunks(2)) {
        pseudo += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    pseudo += 6 + 20;
    let c = csum(&tcp, pseudo);
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    let mut ip = ipv4_hdr(s, d, 6, 64, 20, true);
    ip.extend_from_slice(&tcp);
    eth(mac(ROUTER_MAC), mac(from_mac), 0x0800, &ip)
}

#[test]
fn closed_tcp_connections_are_evicted() {
    const SYN: u8 = 0x02;
    const ACK: u8 = 0x10;
    const FIN: u8 = 0x01;
    let a = |f| tcp_frame("192.168.1.3", "192.168.1.4", 40000, 22, f, VM1_MAC);
    let b = |f| tcp_frame("192.168.1.4", "192.168.1.3", 22, 40000, f, VM2_MAC);
    let mut status = serde_json::Value::Null;
    let mut left = usize::MAX;
    let out = run_live(
        Inputs {
            vm1: vec![a(SYN), a(ACK), a(FIN | ACK), a(ACK)],
            vm2: vec![b(SYN | ACK), b(FIN | ACK)],
            ..Default::default()
        },
        // A small table is swept whole on every housekeeping tick (large ones in slices).
        |c| format!("{c}\n[flow]\nentries = 1024\n"),
        |run_dir| {
            let deadline = Instant::now() + Duration::from_secs(8);
            while Instant::now() < deadline {
                left = flows(run_dir).len();
                if left == 0 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            status = control(run_dir, &serde_json::json!({"cmd": "status"}));
        },
    );
    out.assert_accounted(6);
    assert_eq!(left, 0, "closed TCP pair still in the table");
    assert_eq!(status["counters"]["tcp_evicted"], 1, "{status}");
    assert_eq!(status["counters"]["aged"], 0, "{status}");
}

#[test]
fn a_full_table_drops_new_flows_with_their_reason() {
    let frames: Vec<Vec<u8>> =
        (0..3000u16).map(|i| vm_udp("192.168.1.3", "192.168.1.4", 10000 + i, 53, b"f", VM1_MAC).0).collect();
    let out = run_with(Inputs { vm1: frames, ..Default::default() }, |c| {
        format!("{c}\n[flow]\nentries = 1024\noverflow_entries = 1024\nhold_limit = 100000\n")
    });
    out.assert_accounted(3000);
    let full = out.drop_count(DropReason::FlowTableFull);
    assert!(full > 0, "{:?}", out.drop_list());
    // Every packet is either forwarded or dropped for lack of room, never silently lost.
    let other: u64 = out
        .drop_list()
        .iter()
        .filter(|(r, _)| *r != DropReason::FlowTableFull && *r != DropReason::FlowActionDrop)
        .map(|(_, n)| n)
        .sum();
    assert_eq!(other, 0, "{:?}", out.drop_list());
    assert_eq!(out.vm2.len() as u64 + out.total_drops(), 3000);
    let fl = flows(&out.run_dir);
    assert!(fl.len() <= 2048, "{} flows in a 2048-entry table", fl.len());
}

#[test]
fn policy_changes_at_runtime_through_the_control_socket() {
    let ip = ipv4_udp(ip4("192.168.1.3"), ip4("192.168.1.4"), 64, 5353, 53, b"dns");
    let frame = eth(mac(ROUTER_MAC), mac(VM1_MAC), 0x0800, &ip);
    let (mut child, run_dir, guard) = start_live(|d: &std::path::Path, i: usize| {
        let rx = d.join(format!("in{i}.pcap"));
        write_pcap(&rx, if i == 1 { std::slice::from_ref(&frame) } else { &[] });
        let extra = if i == 1 { ",infinite_rx=1" } else { "" };
        format!("net_pcap{i},rx_pcap={}{extra}", rx.display())
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let reader = loop {
        if let Ok(r) = vrouter::stats::StatsReader::open(&run_dir) {
            if r.vif_counters(2, None).tx_packets > 1000 {
                break r;
            }
        }
        assert!(Instant::now() < deadline, "vRouter did not start forwarding");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(reader.drops(None)[DropReason::FlowActionDrop.index()], 0);

    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(run_dir.join("control.sock")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the control socket is restricted to its owner");

    // Deny DNS in the file, then reload through the socket (the vrouter-ctl tool).
    let cfg_path = guard.path().join("vrouter.toml");
    let text = std::fs::read_to_string(&cfg_path).unwrap();
    std::fs::write(&cfg_path, with_policy(text)).unwrap();
    let ctl = std::path::Path::new(env!("CARGO_BIN_EXE_vrouter")).with_file_name("vrouter-ctl");
    let out = std::process::Command::new(&ctl).arg("--run-dir").arg(&run_dir).arg("reload").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("re-evaluated"));

    std::thread::sleep(Duration::from_millis(300));
    let tx1 = reader.vif_counters(2, None).tx_packets;
    let d1 = reader.drops(None)[DropReason::FlowActionDrop.index()];
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(reader.vif_counters(2, None).tx_packets, tx1, "denied traffic still forwarded");
    assert!(reader.drops(None)[DropReason::FlowActionDrop.index()] > d1, "no policy drops after reload");
    let fl = flows(&run_dir);
    let dns = find(&fl, "192.168.1.3", "192.168.1.4", 5353, 53);
    assert_eq!((dns.action, dns.drop_reason), (Action::Drop, FLOW_DR_POLICY));
    let meta = control(&run_dir, &serde_json::json!({"cmd": "flow", "index": dns.index}));
    assert_eq!(meta["meta"]["nw_ace_uuid"], DENY_UDP_53, "{meta}");

    // A broken file is refused and the running policy stays.
    std::fs::write(&cfg_path, "not toml [").unwrap();
    let out = std::process::Command::new(&ctl).arg("--run-dir").arg(&run_dir).arg("reload").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("vrouter.toml"), "{}", String::from_utf8_lossy(&out.stderr));
    stop(&mut child);
}

/// Voluntary context switches of the process's thread named `name`.
fn thread_switches(pid: u32, name: &str) -> u64 {
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        if std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name) {
            let status = std::fs::read_to_string(t.path().join("status")).unwrap();
            let line = status.lines().find(|l| l.starts_with("voluntary_ctxt_switches:")).unwrap();
            return line.split_whitespace().nth(1).unwrap().parse().unwrap();
        }
    }
    panic!("no thread {name} in process {pid}");
}

/// An idle agent sleeps (it used to wake every 100 us; the control socket's accept loop every
/// 2 ms), and still sets a new flow up as soon
/// as an lcore asks and answers a control request at once: the lcores and the control
/// threads wake it. With a lost wake-up each would wait for the next housekeeping pass
/// (up to 100 ms, 50 ms on average), which the medians below would show.
#[test]
fn an_idle_agent_sleeps_and_wakes_for_new_flows_and_requests() {
    let tag = std::process::id() % 100_000;
    let (va, vb) = (format!("agva{tag}"), format!("agvb{tag}"));
    let _v = veth_pair(&va, &vb);
    // VM 1 on an af_packet port (packets sent one at a time, when the test wants); the
    // fabric and VM 2 on empty captures.
    let (mut child, run_dir, _dir) = start_live_with(
        |d: &std::path::Path, i: usize| match i {
            1 => format!("net_af_packet1,iface={va}"),
            _ => {
                let empty = d.join("empty.pcap");
                write_pcap(&empty, &[]);
                format!("net_pcap{i},rx_pcap={},tx_pcap={}", empty.display(), d.join(format!("out{i}.pcap")).display())
            }
        },
        |cfg| cfg.replacen("device = \"net_pcap1\"", "device = \"net_af_packet1\"", 1),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !run_dir.join("control.sock").exists()
        || control(&run_dir, &serde_json::json!({"cmd": "status"}))["ok"] != true
    {
        assert!(child.try_wait().unwrap().is_none(), "the vRouter exited: {}", stop(&mut child));
        assert!(Instant::now() < deadline, "the vRouter did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let vm = Raw::open(&vb);

    // Idle: a few wake-ups a second (housekeeping every 100 ms), not thousands.
    std::thread::sleep(Duration::from_millis(300));
    let (a0, c0) = (thread_switches(child.id(), "vr-agent"), thread_switches(child.id(), "vr-control"));
    std::thread::sleep(Duration::from_secs(1));
    let idle_switches = thread_switches(child.id(), "vr-agent") - a0;
    assert!(idle_switches < 200, "the idle agent woke {idle_switches} times in a second");
    let accept_switches = thread_switches(child.id(), "vr-control") - c0;
    assert!(accept_switches < 20, "the idle control socket thread woke {accept_switches} times in a second");

    // New flows, one at a time with the agent asleep in between. Watched in the flow table
    // (shared memory): a control request would wake the agent itself.
    let table = FlowTableReader::open_run_dir(&run_dir).expect("flow table");
    for i in 0..10u16 {
        std::thread::sleep(Duration::from_millis(30));
        let sport = 4000 + i;
        let (frame, _) = vm_udp("192.168.1.3", "192.168.1.4", sport, 53, b"wake", VM1_MAC);
        vm.send(&frame);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !table.iter_active().any(|f| f.key.sport() == sport && f.action == Action::Forward) {
            assert!(Instant::now() < deadline, "flow {i} was not set up");
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let st = control(&run_dir, &serde_json::json!({"cmd": "status"}));
    let p50_ms = st["setup_latency_ns"]["p50"].as_u64().unwrap() as f64 / 1e6;
    assert!(p50_ms < 25.0, "setup latency p50 {p50_ms} ms with the agent asleep: {st}");

    // Control requests to a sleeping agent.
    let mut waits: Vec<Duration> = (0..10)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(30));
            let t = Instant::now();
            assert_eq!(control(&run_dir, &serde_json::json!({"cmd": "status"}))["ok"], true);
            t.elapsed()
        })
        .collect();
    waits.sort();
    assert!(waits[5] < Duration::from_millis(25), "control requests waited {waits:?}");
    stop(&mut child);
}
