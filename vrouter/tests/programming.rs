//! Live programming against a running vRouter (real EAL, traffic flowing throughout): routes
//! moved and tunnels changed under a paced stream whose every packet is checked, a VM vif
//! hot-plugged and deleted, invalid requests refused whole, runtime state restored after a
//! restart.
//!
//! Traffic: the VM vif and the fabric vif are af_packet ports on two veth pairs; the test
//! sends numbered UDP packets from the VM side at a steady rate and captures what the
//! vRouter sends on the fabric side, so each packet's fate (old state, new state, lost,
//! duplicated) is known. Needs CAP_NET_ADMIN (root), as the trace tests over veths do.

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The tests of this file each run a vRouter whose lcore polls a CPU at 100 %; one at a
/// time, so that the paced stream's timing is not at the mercy of the others.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The topology with the fabric (vif 0) and VM 1 (vif 1) on af_packet ports and flows on.
fn start(run_dir: &Path, d: &Path, fabric_if: &str, vm_if: &str) -> (Running, PathBuf) {
    let empty = d.join("empty.pcap");
    write_pcap(&empty, &[]);
    let vdevs = [
        // Rings of 8192 frames: the stream survives the forwarding lcore losing its CPU for a
        // second (a 2-CPU CI machine runs other things too).
        format!("\"net_af_packet0,iface={fabric_if},framecnt=8192,blocksz=4096,framesz=2048\""),
        format!("\"net_af_packet1,iface={vm_if},framecnt=8192,blocksz=4096,framesz=2048\""),
        format!("\"net_pcap2,rx_pcap={},tx_pcap={}\"", empty.display(), d.join("vm2-out.pcap").display()),
    ];
    let prefix = unique_prefix();
    let cfg = topology(&vdevs.join(", "), &prefix, run_dir)
        .replacen("device = \"net_pcap0\"", "device = \"net_af_packet0\"", 1)
        .replacen("device = \"net_pcap1\"", "device = \"net_af_packet1\"", 1);
    let cfg_path = d.join("vrouter.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let child = spawn_vrouter(&cfg_path, prefix);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !run_dir.join("control.sock").exists() || !ready(run_dir) {
        assert!(Instant::now() < deadline, "the vRouter did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, cfg_path)
}

fn ready(run_dir: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(run_dir.join("control.sock")).is_ok()
        && control(run_dir, &json!({"cmd": "info"}))["ok"] == true
}

fn ok(run_dir: &Path, req: Value) -> Value {
    let r = control(run_dir, &req);
    assert_eq!(r["ok"], true, "{req} -> {r}");
    r
}

/// A numbered UDP packet from VM 1 to 192.168.2.5 (routed over the fabric).
fn numbered(seq: u32, dst: Ipv4Addr) -> Vec<u8> {
    let mut payload = seq.to_be_bytes().to_vec();
    payload.extend_from_slice(b"live-programming");
    let ip = ipv4_udp(ip4("192.168.1.3"), dst, 64, 1000, 2000, &payload);
    eth(mac(ROUTER_MAC), mac(VM1_MAC), 0x0800, &ip)
}

/// (outer destination, MPLS label, sequence number) of an MPLSoUDP frame the vRouter sent.
fn decode_fabric(f: &[u8]) -> Option<(Ipv4Addr, u32, u32)> {
    if f.len() < 46 + 28 + 4 || f[12..14] != [0x08, 0x00] || f[23] != 17 || f[36..38] != 6635u16.to_be_bytes() {
        return None;
    }
    let dst = Ipv4Addr::new(f[30], f[31], f[32], f[33]);
    let label = u32::from_be_bytes([0, f[42], f[43], f[44]]) >> 4;
    let inner = &f[46..];
    if inner[9] != 17 || inner[16..20] != [192, 168, 2, 5] {
        return None;
    }
    let seq = u32::from_be_bytes(inner[28..32].try_into().ok()?);
    Some((dst, label, seq))
}

/// `trace simulate` of the stream's packet: (outer destination, MPLS label) of the frame the
/// live pipeline would send.
fn simulated_tunnel(run_dir: &Path) -> (Ipv4Addr, u32) {
    let r = ok(
        run_dir,
        json!({"cmd": "trace_simulate", "vif": 1, "src_ip": "192.168.1.3", "dst_ip": "192.168.2.5",
            "proto": "udp", "src_port": 1000, "dst_port": 2000}),
    );
    let hex = r["out_hex"].as_str().unwrap_or_else(|| panic!("no frame out: {r}"));
    let f: Vec<u8> = (0..hex.len() / 2).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap()).collect();
    assert!(f.len() > 46, "{r}");
    (Ipv4Addr::new(f[30], f[31], f[32], f[33]), u32::from_be_bytes([0, f[42], f[43], f[44]]) >> 4)
}

#[test]
fn routes_nexthops_and_vifs_change_while_forwarding() {
    let _serial = serial();
    let tag = std::process::id() % 100_000;
    let (fa, fb, va, vb) = (format!("lpfa{tag}"), format!("lpfb{tag}"), format!("lpva{tag}"), format!("lpvb{tag}"));
    let _f = veth_pair(&fa, &fb);
    let _v = veth_pair(&va, &vb);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run_dir = d.join("run");
    let (mut child, _) = start(&run_dir, d, &fa, &va);
    let fabric = Raw::open(&fb);
    let vm = Arc::new(Raw::open(&vb));

    // The capture of the fabric side, in arrival order.
    let stop = Arc::new(AtomicBool::new(false));
    let seen: Arc<Mutex<Vec<(Ipv4Addr, u32, u32)>>> = Arc::default();
    // Mirror copies to the analyzer added at runtime (10.20.0.5).
    let mirrored = Arc::new(AtomicU32::new(0));
    let capture = {
        let (stop, seen, mirrored) = (stop.clone(), seen.clone(), mirrored.clone());
        std::thread::spawn(move || {
            let mut idle_after_stop = 0;
            loop {
                match fabric.recv() {
                    Some(f) => {
                        if let Some(x) = decode_fabric(&f) {
                            seen.lock().unwrap().push(x);
                        } else if f.len() > 34 && f[12..14] == [0x08, 0x00] && f[30..34] == [10, 20, 0, 5] {
                            mirrored.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    None if stop.load(Ordering::SeqCst) => {
                        idle_after_stop += 1;
                        if idle_after_stop > 5 {
                            return;
                        }
                    }
                    None => {}
                }
            }
        })
    };
    // The paced stream: one packet every 200 us.
    let sent = Arc::new(AtomicU32::new(0));
    let sender = {
        let (stop, sent, vm) = (stop.clone(), sent.clone(), vm.clone());
        std::thread::spawn(move || {
            let start = Instant::now();
            let mut seq = 0u32;
            while !stop.load(Ordering::SeqCst) {
                vm.send(&numbered(seq, ip4("192.168.2.5")));
                seq += 1;
                sent.store(seq, Ordering::SeqCst);
                let next = start + Duration::from_micros(200) * seq;
                if let Some(w) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(w);
                }
            }
        })
    };
    let wait_sent = |n: u32| {
        let target = sent.load(Ordering::SeqCst) + n;
        while sent.load(Ordering::SeqCst) < target {
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    // The stream's flow is set up by its first packet (the packets beyond the few held
    // while the agent decides are dropped and counted, as in tf); from then on every packet
    // must arrive.
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the stream never reached the fabric");
        std::thread::sleep(Duration::from_millis(5));
    }
    let base = sent.load(Ordering::SeqCst) + 1;
    wait_sent(1000);

    // An invalid request is refused whole, naming the field; nothing changes.
    let before = ok(&run_dir, json!({"cmd": "route_dump", "vrf": 1}));
    let r = control(
        &run_dir,
        &json!({"cmd": "route_set", "routes": [
            {"vrf": 1, "prefix": "192.168.2.0/24", "nexthop": 6},
            {"vrf": 1, "prefix": "192.168.77.0/24", "nexthop": 99}]}),
    );
    assert_eq!(r["ok"], false);
    assert_eq!(r["error"], "routes[1].nexthop: nexthop 99 is not defined", "{r}");
    let r = control(
        &run_dir,
        &json!({"cmd": "vif_set", "vif": {"id": 9, "name": "x", "type": "virtual", "device": "net_null9", "mac": "zz", "vrf": 1}}),
    );
    assert_eq!(r["ok"], false);
    assert!(r["error"].as_str().unwrap().starts_with("vif.mac:"), "{r}");
    let r = control(&run_dir, &json!({"cmd": "vrf_delete", "id": 1}));
    assert_eq!(r["ok"], false, "a VRF that vifs and routes use cannot be deleted: {r}");
    assert_eq!(ok(&run_dir, json!({"cmd": "route_dump", "vrf": 1})), before, "a refused request changed the routes");

    assert_eq!(simulated_tunnel(&run_dir), (ip4("10.10.0.2"), 40));

    // 1. Move the route: nexthop 3 (10.10.0.2, label 40) -> nexthop 6 (10.10.0.4, label 41).
    let r = ok(&run_dir, json!({"cmd": "route_set", "routes": [{"vrf": 1, "prefix": "192.168.2.0/24", "nexthop": 6}]}));
    // A simulation right after the reply takes the new route.
    assert_eq!(simulated_tunnel(&run_dir), (ip4("10.10.0.4"), 41));
    assert_eq!(r["changed"], true);
    assert!(r["reevaluated"].as_u64().unwrap() >= 1, "the flow to 192.168.2.5 is re-evaluated: {r}");
    // The same request again changes nothing (PUT).
    let r = ok(&run_dir, json!({"cmd": "route_set", "routes": [{"vrf": 1, "prefix": "192.168.2.0/24", "nexthop": 6}]}));
    assert_eq!(r["changed"], false);
    wait_sent(1000);

    // 2. Change the tunnel's remote address: nexthop 6 now goes to 10.10.0.9.
    let r = ok(
        &run_dir,
        json!({"cmd": "nh_set", "nexthop": {"id": 6, "type": "tunnel", "encap": "mplsoudp", "remote_ip": "10.10.0.9",
            "label": 41, "vif": 0, "dst_mac": GW_MAC}}),
    );
    assert_eq!(r["changed"], true);
    assert!(r["reevaluated"].as_u64().unwrap() >= 1, "{r}");
    assert_eq!(simulated_tunnel(&run_dir), (ip4("10.10.0.9"), 41));
    let nh = ok(&run_dir, json!({"cmd": "nh_get", "id": 6}));
    assert_eq!(nh["nexthop"]["dst_ip"], "10.10.0.9");
    wait_sent(1000);

    // 3. A VM vif hot-plugged with its nexthop, route and label: it sends to VM 1 and gets
    //    traffic from VM 1.
    let vm3_in = d.join("vm3-in.pcap");
    let vm3_out = d.join("vm3-out.pcap");
    let vm3_mac = "02:00:00:00:01:07";
    let from_vm3: Vec<Vec<u8>> = (0..3u8)
        .map(|i| {
            let ip = ipv4_udp(ip4("192.168.1.7"), ip4("192.168.1.3"), 64, 7000, 7001, &[i; 8]);
            eth(mac(ROUTER_MAC), mac(vm3_mac), 0x0800, &ip)
        })
        .collect();
    write_pcap(&vm3_in, &from_vm3);
    // An analyzer added at runtime (reached through the fabric gateway) that the new vif
    // mirrors what it receives to.
    ok(&run_dir, json!({"cmd": "nh_set", "nexthop": {"id": 20, "type": "encap", "vif": 0, "dst_mac": GW_MAC}}));
    ok(&run_dir, json!({"cmd": "route_set", "routes": [{"vrf": 0, "prefix": "10.20.0.0/24", "nexthop": 20}]}));
    ok(&run_dir, json!({"cmd": "analyzer_set", "analyzer": {"name": "an-live", "ip": "10.20.0.5"}}));
    let r = ok(
        &run_dir,
        json!({"cmd": "vif_set", "vif": {"id": 3, "name": "tap-vm3", "type": "virtual", "device": "net_pcap3",
            "devargs": format!("rx_pcap={},tx_pcap={}", vm3_in.display(), vm3_out.display()),
            "mac": ROUTER_MAC, "ip": "192.168.1.7", "vrf": 1, "vn_name": "default-domain:demo:vn1",
            "mirror_to": "an-live", "mirror_rx": true}}),
    );
    assert_eq!(r["changed"], true);
    ok(&run_dir, json!({"cmd": "nh_set", "nexthop": {"id": 10, "type": "encap", "vif": 3, "dst_mac": vm3_mac}}));
    ok(&run_dir, json!({"cmd": "route_set", "routes": [{"vrf": 1, "prefix": "192.168.1.7/32", "nexthop": 10}]}));
    ok(&run_dir, json!({"cmd": "label_set", "label": {"label": 19, "nexthop": 10}}));
    let vifs = ok(&run_dir, json!({"cmd": "vif_dump"}));
    let v3 = vifs["vifs"].as_array().unwrap().iter().find(|v| v["config"]["id"] == 3).expect("vif 3 listed").clone();
    assert_eq!(v3["runtime"], true);
    assert!(v3["port"].is_u64(), "{v3}");
    // vif 3's frames reach VM 1 (on the VM veth).
    let got_from_vm3 = {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut n = 0;
        while n < 3 && Instant::now() < deadline {
            if let Some(f) = vm.recv() {
                if f.len() >= 34 && f[26..30] == [192, 168, 1, 7] {
                    n += 1;
                }
            }
        }
        n
    };
    assert_eq!(got_from_vm3, 3, "the hot-plugged vif's packets were forwarded to VM 1");
    let deadline = Instant::now() + Duration::from_secs(5);
    while mirrored.load(Ordering::SeqCst) < 3 {
        assert!(
            Instant::now() < deadline,
            "the hot-plugged vif's interface mirroring sent {} copies",
            mirrored.load(Ordering::SeqCst)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // And VM 1 reaches it: three packets to 192.168.1.7.
    for i in 0..3 {
        vm.send(&numbered(1_000_000 + i, ip4("192.168.1.7")));
    }
    let stats = vrouter::stats::StatsReader::open(&run_dir).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while stats.vif_counters(3, None).tx_packets < 3 {
        assert!(Instant::now() < deadline, "no packets sent on the hot-plugged vif");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(stats.vif_counters(3, None).rx_packets, 3);

    // 4. Delete it: what refers to it first (refused otherwise), then the vif; its flows go
    //    and its counters stay readable.
    let r = control(&run_dir, &json!({"cmd": "vif_delete", "id": 3}));
    assert_eq!(r["ok"], false, "nexthop 10 still uses vif 3: {r}");
    ok(&run_dir, json!({"cmd": "label_delete", "label": 19}));
    ok(&run_dir, json!({"cmd": "route_delete", "routes": [{"vrf": 1, "prefix": "192.168.1.7/32"}]}));
    ok(&run_dir, json!({"cmd": "nh_delete", "id": 10}));
    let r = ok(&run_dir, json!({"cmd": "vif_delete", "id": 3}));
    // Both pairs: VM 3 -> VM 1 (in on vif 3) and VM 1 -> VM 3 (to its address).
    assert_eq!(r["flows_deleted"], 4, "the flows of vif 3 are deleted: {r}");
    assert!(stats.vif(3).is_none(), "a deleted vif is not listed as configured");
    let retired = stats.retired_vifs();
    assert!(retired.iter().any(|v| v.id == 3), "the deleted vif's record is kept for its counters");
    assert_eq!(stats.vif_counters(3, None).tx_packets, 3, "its final counters stay readable");
    let out = read_pcap(&vm3_out);
    assert_eq!(out.len(), 3, "the hot-plugged vif's capture was flushed when it was removed");
    assert!(out.iter().all(|f| f[30..34] == [192, 168, 1, 7]));
    wait_sent(500);

    // 5. Back to nexthop 3, then stop the stream and check every packet.
    ok(&run_dir, json!({"cmd": "route_set", "routes": [{"vrf": 1, "prefix": "192.168.2.0/24", "nexthop": 3}]}));
    wait_sent(500);
    stop.store(true, Ordering::SeqCst);
    sender.join().unwrap();
    capture.join().unwrap();
    let total = sent.load(Ordering::SeqCst);
    let seen = seen.lock().unwrap().clone();
    let mut by_seq: BTreeMap<u32, (Ipv4Addr, u32)> = BTreeMap::new();
    for (dst, label, seq) in &seen {
        assert!(by_seq.insert(*seq, (*dst, *label)).is_none(), "packet {seq} delivered twice");
    }
    by_seq.retain(|s, _| *s >= base);
    let missing: Vec<u32> = (base..total).filter(|s| !by_seq.contains_key(s)).collect();
    if !missing.is_empty() {
        let st = vrouter::stats::StatsReader::open(&run_dir).unwrap();
        let drops: Vec<_> = (vrouter::drop_reason::DropReason::ALL.iter())
            .map(|r| (r.name(), st.drops(None)[r.index()]))
            .filter(|(_, n)| *n > 0)
            .collect();
        panic!(
            "{} of {total} packets lost: {:?}; vif 1 rx {} vif 0 tx {}; drops {drops:?}",
            missing.len(),
            &missing[..missing.len().min(20)],
            st.vif_counters(1, None).rx_packets,
            st.vif_counters(0, None).tx_packets
        );
    }
    // Each packet went by one of the states, and the states follow each other in order.
    let state = |x: &(Ipv4Addr, u32)| match (x.0.octets(), x.1) {
        ([10, 10, 0, 2], 40) => 0,
        ([10, 10, 0, 4], 41) => 1,
        ([10, 10, 0, 9], 41) => 2,
        other => panic!("misdelivered: {other:?}"),
    };
    let states: Vec<u8> = by_seq.values().map(state).collect();
    let mut phases = vec![states[0]];
    for s in &states {
        if *phases.last().unwrap() != *s {
            phases.push(*s);
        }
    }
    assert_eq!(phases, vec![0, 1, 2, 0], "the states in packet order");
    let st = ok(&run_dir, json!({"cmd": "status"}));
    assert!(st["counters"]["reevaluated"].as_u64().unwrap() >= 3, "{st}");
    common::stop(&mut child);
}

/// What was programmed at runtime survives a restart (journal in the run directory), and a
/// journal that no longer fits the file is set aside with one line, the vRouter starting
/// from the file.
#[test]
fn runtime_state_is_restored_after_a_restart() {
    let _serial = serial();
    let (mut child, run1, guard) = start_live(|dd: &Path, i: usize| {
        let empty = dd.join("empty.pcap");
        write_pcap(&empty, &[]);
        format!("net_pcap{i},rx_pcap={}", empty.display())
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready(&run1) {
        assert!(Instant::now() < deadline, "the vRouter did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    ok(&run1, json!({"cmd": "vrf_set", "vrf": {"id": 7, "name": "blue"}}));
    ok(&run1, json!({"cmd": "nh_set", "nexthop": {"id": 20, "type": "discard"}}));
    ok(
        &run1,
        json!({"cmd": "route_set", "routes": [
        {"vrf": 7, "prefix": "10.7.0.0/16", "nexthop": 20},
        {"vrf": 1, "prefix": "192.168.2.0/24", "nexthop": 6}]}),
    );
    ok(&run1, json!({"cmd": "route_delete", "routes": [{"vrf": 1, "prefix": "192.168.9.0/24"}]}));
    let dump1 = ok(&run1, json!({"cmd": "route_dump", "vrf": 1}));
    stop(&mut child);

    // Same configuration file, same run directory.
    let cfg_path = guard.path().join("vrouter.toml");
    let restart = |expect_restored: bool| {
        let text = std::fs::read_to_string(&cfg_path).unwrap();
        let prefix = unique_prefix();
        let text = text
            .lines()
            .map(|l| if l.starts_with("file_prefix") { format!("file_prefix = \"{prefix}\"") } else { l.to_string() })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(&cfg_path, text).unwrap();
        let mut child = spawn_vrouter(&cfg_path, prefix);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ready(&run1) || std::fs::metadata(run1.join("control.sock")).is_err() {
            assert!(child.try_wait().unwrap().is_none(), "the vRouter exited");
            assert!(Instant::now() < deadline, "the vRouter did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        let info = ok(&run1, json!({"cmd": "info"}));
        assert_eq!(info["info"]["runtime_objects"].as_u64().unwrap() > 0, expect_restored, "{info}");
        child
    };
    let mut child = restart(true);
    assert_eq!(ok(&run1, json!({"cmd": "route_dump", "vrf": 1})), dump1, "the routes after the restart");
    let blue = ok(&run1, json!({"cmd": "route_dump", "vrf": 7}));
    assert_eq!(blue["routes"][0]["prefix"], "10.7.0.0/16");
    let out = stop(&mut child);
    assert!(out.contains("restored 5 runtime-programmed object(s)"), "{out}");

    // The file drops nexthop 6, which a runtime route uses: the journal is set aside.
    let text = std::fs::read_to_string(&cfg_path).unwrap();
    let text = text.replace("[[nexthop]]\nid = 7\ntype = \"ecmp\"\nmembers = [3, 6]\n", "");
    let text = text.replace("prefix = \"192.168.10.0/24\"\nnexthop = 7", "prefix = \"192.168.10.0/24\"\nnexthop = 3");
    let text = text.replace("id = 6\ntype = \"tunnel\"", "id = 66\ntype = \"tunnel\"");
    std::fs::write(&cfg_path, text).unwrap();
    let mut child = restart(false);
    let out = stop(&mut child);
    let _ = out;
    assert!(run1.join("programmed.journal.rejected").exists(), "the rejected journal is kept aside");
}

/// The programming API over HTTP on the agent's port needs the controller's token; a client
/// that connects to the control socket and sends nothing stalls neither other clients nor
/// flow setup.
#[test]
fn http_control_needs_the_token_and_silent_clients_stall_nothing() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run_dir = d.join("run");
    let flow_in = d.join("vm1-in.pcap");
    // One new flow every packet (source ports 1..), looping: setups keep coming.
    let frames: Vec<Vec<u8>> = (1..=200u16)
        .map(|p| {
            eth(
                mac(ROUTER_MAC),
                mac(VM1_MAC),
                0x0800,
                &ipv4_udp(ip4("192.168.1.3"), ip4("192.168.1.4"), 64, p, 53, b"x"),
            )
        })
        .collect();
    write_pcap(&flow_in, &frames);
    let empty = d.join("empty.pcap");
    write_pcap(&empty, &[]);
    let vdevs = [
        format!("\"net_pcap0,rx_pcap={}\"", empty.display()),
        format!("\"net_pcap1,rx_pcap={}\"", flow_in.display()),
        format!("\"net_pcap2,rx_pcap={},tx_pcap={}\"", empty.display(), d.join("vm2-out.pcap").display()),
    ];
    let token_file = d.join("token");
    let token = "0123456789abcdef-controller";
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let port = 20_000 + std::process::id() % 20_000;
    let addr = format!("127.0.0.1:{port}");
    let prefix = unique_prefix();
    let cfg = topology(&vdevs.join(", "), &prefix, &run_dir).replacen(
        "summary_interval_s = 0",
        &format!("summary_interval_s = 0\ntrace_api = \"{addr}\"\ncontrol_token_file = \"{}\"", token_file.display()),
        1,
    );
    let cfg_path = d.join("vrouter.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    // Silent clients connect before the traffic's flows are set up and stay silent.
    let mut child = spawn_vrouter(&cfg_path, prefix);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready(&run_dir) {
        if child.try_wait().unwrap().is_some() {
            panic!("the vRouter exited: {}", stop(&mut child));
        }
        assert!(Instant::now() < deadline, "the vRouter did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let silent: Vec<_> =
        (0..8).map(|_| std::os::unix::net::UnixStream::connect(run_dir.join("control.sock")).unwrap()).collect();
    let t0 = Instant::now();
    let r = control(&run_dir, &json!({"cmd": "status"}));
    assert_eq!(r["ok"], true);
    assert!(t0.elapsed() < Duration::from_millis(500), "a request waited behind silent clients: {:?}", t0.elapsed());
    // Flows keep being set up meanwhile: the 200 flows of the capture.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let st = control(&run_dir, &json!({"cmd": "status"}));
        if st["counters"]["setups"].as_u64().unwrap() >= 200 {
            break;
        }
        assert!(Instant::now() < deadline, "flow setup stalled: {st}");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(silent);

    let body = json!({"cmd": "route_set", "routes": [{"vrf": 1, "prefix": "10.99.0.0/16", "nexthop": 5}]}).to_string();
    let (code, r) = http_json(&addr, "POST", "/api/v1/control", None, Some(&body));
    assert_eq!(code, 401, "{r}");
    let (code, _) = http_json(&addr, "POST", "/api/v1/control", Some("0123456789abcdef-wrong!!!!"), Some(&body));
    assert_eq!(code, 401);
    let (code, r) = http_json(&addr, "POST", "/api/v1/control", Some(token), Some(&body));
    assert_eq!((code, &r["changed"]), (200, &json!(true)), "{r}");
    let bad = json!({"cmd": "route_set", "routes": [{"vrf": 1, "prefix": "10.98.0.1/16", "nexthop": 5}]}).to_string();
    let (code, r) = http_json(&addr, "POST", "/api/v1/control", Some(token), Some(&bad));
    assert_eq!(code, 400);
    assert_eq!(r["error"], "routes[0].prefix: 10.98.0.1/16 has host bits set; the prefix is 10.98.0.0/16", "{r}");
    let (_, r) = http_json(
        &addr,
        "POST",
        "/api/v1/control",
        Some(token),
        Some(&json!({"cmd": "route_lookup", "vrf": 1, "addr": "10.99.3.4"}).to_string()),
    );
    assert_eq!(r["route"]["prefix"], "10.99.0.0/16", "{r}");
    assert_eq!(r["route"]["nexthop"], 5);
    stop(&mut child);
}
