//! Looking at a VM's packets as the troubleshooting guide does (`tcpdump -i tapXXX`, `watch
//! ip -s link show tapXXX`), on DPDK ports: Debian's `dpdk-dumpcap` and `vifdump` capture a
//! vif of a running vRouter on huge pages (`[eal] pdump`, on by default there) and the
//! capture holds exactly the frames the vif received and sent in the window, byte for byte,
//! with their direction, decoded by `tshark`; a capture filter and a count; `vif --list --rate`
//! against the counters read around it. The VMs are af_packet ports on veth pairs, so the test
//! decides when each frame arrives. On 4 KiB pages `vifdump` says why it cannot capture.

mod common;
#[path = "../../flow-table/tests/support/hugepages.rs"]
mod huge;

use common::*;
use huge::{Reservation, TempMount, PAGE_2M};
use serde_json::Value;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use vrouter::stats::{EalFacts, StatsReader};

const MIB: u64 = 1 << 20;
/// DPDK's memory in this test (`-m`).
const MEMORY_MB: u64 = 128;
const DUMPCAP: &str = "/usr/bin/dpdk-dumpcap";

/// A capture process (dpdk-dumpcap, or vifdump in its place) whose stderr is collected; stopped
/// with SIGINT (so it removes its callbacks from the vRouter) and killed if still there when
/// dropped.
struct Capture {
    child: Child,
    err: mpsc::Receiver<Vec<u8>>,
    stderr: String,
}

impl Capture {
    fn start(cmd: &mut Command) -> Capture {
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start the capture");
        let mut stderr = child.stderr.take().unwrap();
        let (tx, err) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Capture { child, err, stderr: String::new() }
    }

    /// Waits until stderr shows `what` (dpdk-dumpcap prints `Packets captured:` once its
    /// callbacks are installed in the vRouter).
    fn wait_for(&mut self, what: &str) {
        let by = Instant::now() + Duration::from_secs(60);
        while !self.stderr.contains(what) {
            if let Some(st) = self.child.try_wait().unwrap() {
                while let Ok(b) = self.err.recv_timeout(Duration::from_millis(200)) {
                    self.stderr.push_str(&String::from_utf8_lossy(&b));
                }
                panic!("the capture exited ({st}) before {what:?}: {}", self.stderr);
            }
            assert!(Instant::now() < by, "no {what:?} from the capture: {}", self.stderr);
            if let Ok(b) = self.err.recv_timeout(Duration::from_millis(50)) {
                self.stderr.push_str(&String::from_utf8_lossy(&b));
            }
        }
    }

    /// SIGINT (unless it already ended) and its exit status, stdout and stderr.
    fn stop(mut self, interrupt: bool) -> (std::process::ExitStatus, String, String) {
        if interrupt {
            // SAFETY: a signal to our own child.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        }
        let by = Instant::now() + Duration::from_secs(30);
        let st = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st;
            }
            assert!(Instant::now() < by, "the capture did not end: {}", self.stderr);
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut out = String::new();
        self.child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        while let Ok(b) = self.err.recv_timeout(Duration::from_millis(500)) {
            self.stderr.push_str(&String::from_utf8_lossy(&b));
        }
        (st, out, std::mem::take(&mut self.stderr))
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: a signal to our own child.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
            std::thread::sleep(Duration::from_millis(500));
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A packet of a pcapng file: its bytes and its direction (`epb_flags` bits 0-1: 1 inbound,
/// 2 outbound, 0 not given).
#[derive(Debug, PartialEq, Eq)]
struct Packet {
    data: Vec<u8>,
    direction: u32,
}

/// The enhanced packet blocks of a pcapng file (little-endian, as written on this host),
/// parsed from the format's definition: block type, length, body, length.
fn read_pcapng(path: &Path) -> Vec<Packet> {
    let d = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let u32_at = |o: usize| u32::from_le_bytes(d[o..o + 4].try_into().unwrap());
    assert_eq!(u32_at(0), 0x0A0D_0D0A, "not a pcapng file");
    assert_eq!(u32_at(8), 0x1A2B_3C4D, "not little-endian");
    let mut out = Vec::new();
    let mut off = 0;
    while off + 12 <= d.len() {
        let (kind, len) = (u32_at(off), u32_at(off + 4) as usize);
        assert!(len >= 12 && off + len <= d.len(), "block at {off}: length {len}");
        assert_eq!(u32_at(off + len - 4) as usize, len, "block at {off}: trailing length");
        if kind == 6 {
            let caplen = u32_at(off + 20) as usize;
            let data = d[off + 28..off + 28 + caplen].to_vec();
            let mut o = off + 28 + caplen.div_ceil(4) * 4;
            let mut direction = 0;
            while o + 4 <= off + len - 4 {
                let code = u16::from_le_bytes([d[o], d[o + 1]]);
                let olen = u16::from_le_bytes([d[o + 2], d[o + 3]]) as usize;
                if code == 0 {
                    break;
                }
                if code == 2 && olen == 4 {
                    direction = u32_at(o + 4) & 3;
                }
                o += 4 + olen.div_ceil(4) * 4;
            }
            out.push(Packet { data, direction });
        }
        off += len;
    }
    out
}

/// `tshark -r FILE` with these extra arguments: decodes without an error; its stdout.
fn tshark(path: &Path, args: &[&str]) -> String {
    let o = Command::new("tshark").arg("-n").arg("-r").arg(path).args(args).output().expect("tshark");
    let err = String::from_utf8_lossy(&o.stderr);
    // As root tshark warns that it runs as root; nothing else may be said.
    let said: Vec<&str> = err.lines().filter(|l| !l.contains("Running as user \"root\"") && !l.is_empty()).collect();
    assert!(o.status.success() && said.is_empty(), "tshark -r {}: {} {err}", path.display(), o.status);
    String::from_utf8(o.stdout).unwrap()
}

fn frame_vm1_to_vm2(k: usize, dport: u16) -> (Vec<u8>, Vec<u8>) {
    let payload = vec![b'a' + (k % 26) as u8; 10 + 37 * k];
    let ip = ipv4_udp(ip4("192.168.1.3"), ip4("192.168.1.4"), 64, 40000 + k as u16, dport, &payload);
    (
        eth(mac(ROUTER_MAC), mac(VM1_MAC), 0x0800, &ip),
        eth(mac(VM2_MAC), mac(ROUTER_MAC), 0x0800, &decrement_ttl_v4(&ip)),
    )
}

fn frame_vm2_to_vm1(k: usize) -> (Vec<u8>, Vec<u8>) {
    let payload = vec![b'A' + (k % 26) as u8; 5 + 61 * k];
    let ip = ipv4_udp(ip4("192.168.1.4"), ip4("192.168.1.3"), 64, 5201, 41000 + k as u16, &payload);
    (
        eth(mac(ROUTER_MAC), mac(VM2_MAC), 0x0800, &ip),
        eth(mac(VM1_MAC), mac(ROUTER_MAC), 0x0800, &decrement_ttl_v4(&ip)),
    )
}

/// `n` frames from `raw`, within 10 s.
fn receive(raw: &Raw, n: usize) -> Vec<Vec<u8>> {
    let by = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < by {
        got.extend(raw.recv());
    }
    got
}

fn wait_until(what: &str, done: impl Fn() -> bool) {
    let by = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < by, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn dumpcap_and_vifdump_capture_exactly_what_a_vif_received_and_sent() {
    const TEST: &str = "vrouter::dumpcap::dumpcap_and_vifdump_capture_exactly_what_a_vif_received_and_sent";
    if !Path::new(DUMPCAP).exists() {
        return huge::skip(TEST, &format!("{DUMPCAP} is not installed (apt install dpdk)"));
    }
    // DPDK's -m, the capture's ring and mbufs (a few MiB, allocated by dpdk-dumpcap from the
    // vRouter's memory) and room to grow.
    let _res = match Reservation::ensure(MEMORY_MB * MIB / PAGE_2M + 64) {
        Ok(r) => r,
        Err(why) => return huge::skip(TEST, &why),
    };
    let mnt = match TempMount::new("pagesize=2M") {
        Ok(m) => m,
        Err(why) => return huge::skip(TEST, &why),
    };
    let tag = std::process::id() % 10_000;
    let names: Vec<String> = ["a1", "b1", "a2", "b2"].iter().map(|s| format!("dc{s}{tag}")).collect();
    let _vm1_link = veth_pair(&names[0], &names[1]);
    let _vm2_link = veth_pair(&names[2], &names[3]);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run_dir = d.join("run");
    let empty = d.join("empty.pcap");
    write_pcap(&empty, &[]);
    let vdevs = [
        format!("\"net_pcap0,rx_pcap={},tx_pcap={}\"", empty.display(), d.join("fabric-out.pcap").display()),
        format!("\"net_af_packet1,iface={}\"", names[0]),
        format!("\"net_af_packet2,iface={}\"", names[2]),
    ];
    let prefix = unique_prefix();
    let cfg = topology(&vdevs.join(", "), &prefix, &run_dir)
        .replacen("device = \"net_pcap1\"", "device = \"net_af_packet1\"", 1)
        .replacen("device = \"net_pcap2\"", "device = \"net_af_packet2\"", 1)
        .replacen(
            "memory_mb = 256",
            &format!("memory_mb = {MEMORY_MB}\nno_huge = false\nhuge_dir = \"{}\"", mnt.path().display()),
            1,
        )
        + "\n[flow]\nenabled = false\n";
    let cfg_path = d.join("vrouter.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let vm1 = Raw::open(&names[1]);
    let vm2 = Raw::open(&names[3]);
    let mut child = spawn_vrouter(&cfg_path, prefix.clone());
    let by = Instant::now() + Duration::from_secs(60);
    let stats = loop {
        if let Ok(s) = StatsReader::open(&run_dir) {
            break s;
        }
        if let Some(st) = child.try_wait().unwrap() {
            let mut err = String::new();
            child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            panic!("the vRouter exited ({st}): {err}");
        }
        assert!(Instant::now() < by, "the vRouter did not start");
        std::thread::sleep(Duration::from_millis(20));
    };
    // What dpdk-dumpcap needs, recorded for the tools.
    assert_eq!(stats.eal(), Some(EalFacts { file_prefix: prefix.clone(), hugepages: true, pdump: true }));
    let counters = |vif: u16| stats.vif_counters(vif, None);

    // 1. Debian's dpdk-dumpcap, by hand, on vif0/1's port: what vm1 sends (received by the
    // vif) and what vm2 sends to vm1 (sent by the vif), nothing before or after the window.
    let (early, _) = frame_vm1_to_vm2(9, 5201);
    vm1.send(&early);
    wait_until("the frame before the capture", || counters(2).tx_packets == 1);
    assert_eq!(receive(&vm2, 1).len(), 1);
    let cap1 = d.join("vif1.pcapng");
    let mut c = Capture::start(
        Command::new(DUMPCAP)
            .arg(format!("--file-prefix={prefix}"))
            .args(["-i", "net_af_packet1", "-p", "-w"])
            .arg(&cap1),
    );
    c.wait_for("Packets captured:");
    let (rx_sent, rx_out): (Vec<_>, Vec<_>) = (0..6).map(|k| frame_vm1_to_vm2(k, 5201)).unzip();
    let (tx_sent, tx_out): (Vec<_>, Vec<_>) = (0..4).map(frame_vm2_to_vm1).unzip();
    for f in &rx_sent {
        vm1.send(f);
    }
    wait_until("vm1's frames at vm2", || counters(2).tx_packets == 7);
    for f in &tx_sent {
        vm2.send(f);
    }
    wait_until("vm2's frames at vm1", || counters(1).tx_packets == 4);
    assert_eq!(receive(&vm2, 6), rx_out, "vm2 got vm1's frames, rewritten");
    let at_vm1 = receive(&vm1, 4);
    assert_eq!(at_vm1, tx_out, "vm1 got vm2's frames, rewritten");
    let (st, _, err) = c.stop(true);
    assert!(st.success(), "dpdk-dumpcap: {st}: {err}");
    assert!(err.contains("Packets received/dropped on interface 'net_af_packet1': 10/0"), "{err}");
    // Sent after the capture stopped: not in it.
    vm1.send(&early);
    wait_until("the frame after the capture", || counters(2).tx_packets == 8);

    let got = read_pcapng(&cap1);
    let inbound: Vec<Vec<u8>> = got.iter().filter(|p| p.direction == 1).map(|p| p.data.clone()).collect();
    let outbound: Vec<Vec<u8>> = got.iter().filter(|p| p.direction == 2).map(|p| p.data.clone()).collect();
    assert_eq!(got.len(), 10, "{got:?}");
    assert_eq!(inbound, rx_sent, "received by vif0/1: what vm1 sent, byte for byte");
    assert_eq!(outbound, at_vm1, "sent by vif0/1: what vm1 received, byte for byte");
    assert_eq!((counters(1).rx_packets, counters(1).tx_packets), (8, 4));
    // tshark decodes every one: UDP between the VMs, lengths as sent.
    let lines = tshark(&cap1, &["-T", "fields", "-e", "ip.src", "-e", "ip.dst", "-e", "udp.length", "-e", "frame.len"]);
    let expect: Vec<String> = rx_sent
        .iter()
        .map(|f| ("192.168.1.3\t192.168.1.4", f))
        .chain(at_vm1.iter().map(|f| ("192.168.1.4\t192.168.1.3", f)))
        .map(|(ips, f)| format!("{ips}\t{}\t{}", f.len() - 34, f.len()))
        .collect();
    assert_eq!(lines.lines().collect::<Vec<_>>(), expect, "{lines}");

    // 2. vifdump with -w, a capture filter and -c, on vif0/2 named as the operator knows it:
    // only vm1's frames to port 7000, as vif0/2 sent them.
    let cap2 = d.join("vif2.pcapng");
    let mut c = Capture::start(
        Command::new(tool("vifdump"))
            .arg("--run-dir")
            .arg(&run_dir)
            .args(["-i", "tap-vm2", "-c", "3", "-w"])
            .arg(&cap2)
            .args(["udp", "dst", "port", "7000"]),
    );
    c.wait_for("Packets captured:");
    let mut matching = Vec::new();
    for k in 0..5 {
        let (f, out) = frame_vm1_to_vm2(k, if k % 2 == 0 { 7000 } else { 7001 });
        vm1.send(&f);
        if k % 2 == 0 {
            matching.push(out);
        }
    }
    let (st, _, err) = c.stop(false);
    assert!(st.success(), "vifdump: {st}: {err}");
    let got = read_pcapng(&cap2);
    assert_eq!(
        got.iter().map(|p| (p.direction, p.data.clone())).collect::<Vec<_>>(),
        matching.into_iter().map(|f| (2, f)).collect::<Vec<_>>()
    );
    assert_eq!(tshark(&cap2, &["-T", "fields", "-e", "udp.dstport"]), "7000\n7000\n7000\n");
    // The capture says which vif it is (the section header's comment).
    let info = Command::new("capinfos").arg(&cap2).output().unwrap();
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(info.contains("vif0/2 tap-vm2 (vifdump)"), "{info}");
    assert_eq!(receive(&vm2, 5).len(), 5);

    // 3. vifdump decoding, as tcpdump prints: two lines, vm2's frames as vif0/1 sends them.
    let c =
        Capture::start(Command::new(tool("vifdump")).arg("--run-dir").arg(&run_dir).args(["-i", "vif0/1", "-c", "2"]));
    let halt = Arc::new(AtomicBool::new(false));
    // dpdk-dumpcap's -q hides when its capture starts: vm2 sends until two are decoded.
    let sender = {
        let halt = halt.clone();
        let iface = names[3].clone();
        std::thread::spawn(move || {
            let raw = Raw::open(&iface);
            let (f, _) = frame_vm2_to_vm1(1);
            while !halt.load(Ordering::Relaxed) {
                raw.send(&f);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let (st, out, err) = c.stop(false);
    halt.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    assert!(st.success(), "vifdump: {st}: {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    for l in &lines {
        assert!(l.contains("192.168.1.4 → 192.168.1.3") && l.contains("UDP") && l.contains("5201 → 41001"), "{l}");
    }

    // 4. vif --list --rate: vm1 sends steadily while it measures; its deltas lie within what
    // the counters moved around it, its rates are the deltas per second of its interval.
    let halt = Arc::new(AtomicBool::new(false));
    let sender = {
        let halt = halt.clone();
        let iface = names[1].clone();
        std::thread::spawn(move || {
            let raw = Raw::open(&iface);
            let (f, _) = frame_vm1_to_vm2(2, 5201);
            while !halt.load(Ordering::Relaxed) {
                raw.send(&f);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    wait_until("the steady source", || counters(1).rx_packets > 100);
    let before = counters(1);
    let o = Command::new(tool("vif"))
        .arg("--run-dir")
        .arg(&run_dir)
        .args(["--list", "--rate", "--interval", "1", "--json"])
        .output()
        .unwrap();
    let after = counters(1);
    halt.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows: Value = serde_json::from_slice(&o.stdout).unwrap();
    let vif1 = rows.as_array().unwrap().iter().find(|r| r["id"] == 1).unwrap();
    let secs = vif1["interval_s"].as_f64().unwrap();
    let moved = vif1["delta"]["rx_packets"].as_u64().unwrap();
    let bytes = vif1["delta"]["rx_bytes"].as_u64().unwrap();
    assert!(moved > 0 && moved <= after.rx_packets - before.rx_packets, "{moved} of {before:?} -> {after:?}");
    assert!(bytes <= after.rx_bytes - before.rx_bytes && bytes == moved * frame_vm1_to_vm2(2, 5201).0.len() as u64);
    assert!((vif1["rx_packets_per_s"].as_f64().unwrap() - moved as f64 / secs).abs() < 1e-6);
    assert_eq!(vif1["delta"]["tx_packets"], 0);
    // No traffic: 0/s.
    std::thread::sleep(Duration::from_millis(200));
    let o = Command::new(tool("vif"))
        .arg("--run-dir")
        .arg(&run_dir)
        .args(["--get", "1", "--rate", "--interval", "0.5"])
        .output()
        .unwrap();
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.contains("RX packets:0/s  bytes:0/s errors:0/s") && text.contains("TX packets:0/s"), "{text}");

    // Stopped: it said capture was ready, and DPDK's hugepage files are gone (it kept them
    // while it ran, for dpdk-dumpcap to map).
    let files = |m: &Path| -> Vec<String> {
        std::fs::read_dir(m).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()
    };
    assert!(files(mnt.path()).iter().any(|f| f.starts_with(&format!("{prefix}map_"))), "{:?}", files(mnt.path()));
    let stdout = stop(&mut child);
    assert!(
        stdout.contains(&format!(
            "vrouter: packet capture ready (vifdump -i vif0/N, or dpdk-dumpcap --file-prefix={prefix} -p)"
        )),
        "{stdout}"
    );
    assert_eq!(files(mnt.path()), Vec::<String>::new(), "DPDK's hugepage files are removed at the stop");
}

#[test]
fn vifdump_says_why_it_cannot_capture_on_4k_pages() {
    let (f, _) = frame_vm1_to_vm2(0, 5201);
    let inputs = Inputs { vm1: vec![f], ..Default::default() };
    let mut said = None;
    let out = run_live(
        inputs,
        |c| c,
        |run_dir| {
            let r = StatsReader::open(run_dir).unwrap();
            let eal = r.eal().expect("recorded");
            assert!(!eal.hugepages && !eal.pdump && eal.file_prefix.starts_with("vrt"), "{eal:?}");
            let o = Command::new(tool("vifdump"))
                .arg("--run-dir")
                .arg(run_dir)
                .args(["-i", "vif0/1", "-w", "x.pcapng"])
                .output()
                .unwrap();
            said = Some((o.status.code(), String::from_utf8(o.stderr).unwrap()));
        },
    );
    let (code, err) = said.unwrap();
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("[eal] no_huge = true") && err.contains("set [eal] no_huge = false"), "{err}");
    assert!(!out.stdout.contains("packet capture ready"), "{}", out.stdout);
}
