//! Test harness: pcap files, independent frame builders, and a runner that starts the real
//! `vrouter` binary (real EAL, pcap virtual devices), waits until every input packet is
//! accounted for in the stats region, stops it with SIGINT and collects the captured frames.
#![allow(dead_code)]

pub mod guest;
pub mod vm_host;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vrouter::drop_reason::{DropReason, DROP_REASON_COUNT};
use vrouter::stats::{Liveness, StatsReader, VifCounters};

// ---------------------------------------------------------------- pcap

/// A tool binary (`vif`, `flow`, `trace`, ...) of the tools crate: it lives next to the vrouter
/// binary in the target directory.
pub fn tool(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_vrouter")).with_file_name(name);
    assert!(p.exists(), "{} not built (run the tests with --workspace)", p.display());
    p
}

pub fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    for (i, f) in frames.iter().enumerate() {
        out.extend_from_slice(&1_700_000_000u32.to_le_bytes());
        out.extend_from_slice(&(i as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
    }
    std::fs::write(path, out).unwrap();
}

pub fn read_pcap(path: &Path) -> Vec<Vec<u8>> {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    assert!(data.len() >= 24, "{} is not a pcap file", path.display());
    let magic = u32::from_le_bytes(data[0..4].try_into().unwrap());
    let le = match magic {
        0xa1b2c3d4 | 0xa1b23c4d => true,
        0xd4c3b2a1 | 0x4d3cb2a1 => false,
        m => panic!("bad pcap magic {m:#x} in {}", path.display()),
    };
    let rd = |b: &[u8]| {
        let a: [u8; 4] = b.try_into().unwrap();
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    let mut frames = Vec::new();
    let mut off = 24;
    while off + 16 <= data.len() {
        let caplen = rd(&data[off + 8..off + 12]) as usize;
        let start = off + 16;
        frames.push(data[start..start + caplen].to_vec());
        off = start + caplen;
    }
    frames
}

// ---------------------------------------------------------------- frame builders
// Written independently of the vRouter's own packet code, straight from the RFCs.

pub fn mac(s: &str) -> [u8; 6] {
    let v: Vec<u8> = s.split(':').map(|p| u8::from_str_radix(p, 16).unwrap()).collect();
    v.try_into().unwrap()
}

pub fn csum(data: &[u8], init: u32) -> u16 {
    let mut s = init;
    for c in data.chunks(2) {
        let w = if c.len() == 2 { u16::from_be_bytes([c[0], c[1]]) } else { u16::from(c[0]) << 8 };
        s += u32::from(w);
    }
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

pub fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Pads a frame to the 60-byte Ethernet minimum, as a NIC (and a pcap) shows it.
pub fn pad60(mut f: Vec<u8>) -> Vec<u8> {
    if f.len() < 60 {
        f.resize(60, 0);
    }
    f
}

pub fn ipv4_hdr(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, ttl: u8, payload_len: usize, df: bool) -> Vec<u8> {
    let total = 20 + payload_len;
    let mut h = vec![0x45, 0, (total >> 8) as u8, total as u8, 0x12, 0x34];
    h.extend_from_slice(&(if df { 0x4000u16 } else { 0 }).to_be_bytes());
    h.extend_from_slice(&[ttl, proto, 0, 0]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    let c = csum(&h, 0);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h
}

fn pseudo4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: usize) -> u32 {
    let mut s = 0u32;
    for w in src.octets().chunks(2).chain(dst.octets().chunks(2)) {
        s += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    s + u32::from(proto) + len as u32
}

fn pseudo6(src: Ipv6Addr, dst: Ipv6Addr, nh: u8, len: usize) -> u32 {
    let mut s = 0u32;
    for w in src.octets().chunks(2).chain(dst.octets().chunks(2)) {
        s += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    s + u32::from(nh) + len as u32
}

pub fn udp_bytes(sport: u16, dport: u16, payload: &[u8], pseudo: u32) -> Vec<u8> {
    let len = 8 + payload.len();
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&(len as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    let mut c = csum(&u, pseudo);
    if c == 0 {
        c = 0xffff;
    }
    u[6..8].copy_from_slice(&c.to_be_bytes());
    u
}

/// IPv4 + UDP packet (no Ethernet).
pub fn ipv4_udp(src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let u = udp_bytes(sport, dport, payload, pseudo4(src, dst, 17, 8 + payload.len()));
    let mut p = ipv4_hdr(src, dst, 17, ttl, u.len(), false);
    p.extend_from_slice(&u);
    p
}

pub fn ipv6_hdr(src: Ipv6Addr, dst: Ipv6Addr, nh: u8, hop: u8, payload_len: usize) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload_len as u16).to_be_bytes());
    h.push(nh);
    h.push(hop);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h
}

pub fn ipv6_udp(src: Ipv6Addr, dst: Ipv6Addr, hop: u8, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let u = udp_bytes(sport, dport, payload, pseudo6(src, dst, 17, 8 + payload.len()));
    let mut p = ipv6_hdr(src, dst, 17, hop, u.len());
    p.extend_from_slice(&u);
    p
}

pub fn icmpv6(src: Ipv6Addr, dst: Ipv6Addr, body: &[u8]) -> Vec<u8> {
    let mut b = body.to_vec();
    let c = csum(&b, pseudo6(src, dst, 58, b.len()));
    b[2..4].copy_from_slice(&c.to_be_bytes());
    b
}

pub fn arp(op: u16, sha: [u8; 6], spa: Ipv4Addr, tha: [u8; 6], tpa: Ipv4Addr) -> Vec<u8> {
    let mut a = vec![0, 1, 8, 0, 6, 4];
    a.extend_from_slice(&op.to_be_bytes());
    a.extend_from_slice(&sha);
    a.extend_from_slice(&spa.octets());
    a.extend_from_slice(&tha);
    a.extend_from_slice(&tpa.octets());
    a
}

/// Outer Ethernet + IPv4 + UDP of a tunnel (DF set, TTL 64, ident 0, UDP checksum 0).
pub fn tunnel_outer(
    dmac: [u8; 6],
    smac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    inner: &[u8],
) -> Vec<u8> {
    let udp_len = 8 + inner.len();
    let mut ip = ipv4_hdr(src, dst, 17, 64, udp_len, true);
    // ident 0 as the vRouter writes it
    ip[4] = 0;
    ip[5] = 0;
    ip[10] = 0;
    ip[11] = 0;
    let c = csum(&ip, 0);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut p = ip;
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&(udp_len as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(inner);
    eth(dmac, smac, 0x0800, &p)
}

pub fn mpls(label: u32, ttl: u8) -> [u8; 4] {
    ((label << 12) | (1 << 8) | u32::from(ttl)).to_be_bytes()
}

pub fn vxlan(vni: u32) -> [u8; 8] {
    let v = vni << 8;
    [0x08, 0, 0, 0, (v >> 24) as u8, (v >> 16) as u8, (v >> 8) as u8, 0]
}

/// IPv4 with TTL decremented and checksum recomputed (what a router emits).
pub fn decrement_ttl_v4(ip: &[u8]) -> Vec<u8> {
    let mut p = ip.to_vec();
    p[8] -= 1;
    p[10] = 0;
    p[11] = 0;
    let hl = usize::from(p[0] & 0xf) * 4;
    let c = csum(&p[..hl], 0);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p
}

// ---------------------------------------------------------------- running the vRouter

/// The standard test topology: fabric vif0/0 on port "fabric", VMs vif0/1 and vif0/2.
pub const ROUTER_MAC: &str = "00:00:5e:00:01:00";
pub const FABRIC_MAC: &str = "02:00:00:00:00:01";
pub const GW_MAC: &str = "02:00:00:00:00:02";
pub const VM1_MAC: &str = "02:00:00:00:01:03";
pub const VM2_MAC: &str = "02:00:00:00:01:04";
pub const REMOTE_VXLAN_VM_MAC: &str = "02:00:00:00:03:0a";

/// The analyzers' network (10.20.0.0/24) of the standard topology, as configuration: a route
/// through the fabric gateway ([`GW_MAC`]) on vif0/0. `{ANALYZER_NET}` in a test's TOML.
pub const ANALYZER_NET: &str = r#"[[nexthop]]
id = 20
type = "encap"
vif = 0
dst_mac = "02:00:00:00:00:02"

[[route]]
vrf = 0
prefix = "10.20.0.0/24"
nexthop = 20
"#;

/// The two analyzers of the mirroring tests, on [`ANALYZER_NET`] (10.20.0.10 and .11).
pub const ANALYZER_A: &str = "default-domain:demo:analyzer-a";
pub const ANALYZER_B: &str = "default-domain:demo:analyzer-b";

/// Configuration: [`ANALYZER_NET`] with [`ANALYZER_A`] (10.20.0.10) and [`ANALYZER_B`]
/// (10.20.0.11) on it.
pub fn both_analyzers() -> String {
    format!(
        r#"{ANALYZER_NET}
[[analyzer]]
name = "{ANALYZER_A}"
ip = "10.20.0.10"

[[analyzer]]
name = "{ANALYZER_B}"
ip = "10.20.0.11"
"#
    )
}

/// Configuration: [`ANALYZER_A`] and [`ANALYZER_B`] on [`ANALYZER_NET`], and a policy on vn1
/// that passes every flow and mirrors it to both (rule `bbbbbbbb-0000-4000-8000-000000000001`).
pub fn mirror_everything_to_both() -> String {
    format!(
        r#"{}
[[network_policy]]
name = "mirror-everything"
vns = ["default-domain:demo:vn1"]
[[network_policy.rule]]
uuid = "bbbbbbbb-0000-4000-8000-000000000001"
action = "pass"
mirror_to = ["{ANALYZER_A}", "{ANALYZER_B}"]
"#,
        both_analyzers()
    )
}

/// Configuration: `[export]` to the Sandesh collector at `collector` as generator `source`,
/// scanning every 20 ms, UVEs every second.
pub fn export_to(collector: impl std::fmt::Display, source: &str) -> String {
    format!(
        r#"[export]
enabled = true
collectors = ["{collector}"]
source = "{source}"
scan_interval_ms = 20
uve_interval_s = 1
"#
    )
}

pub fn ip4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}
pub fn ip6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

pub fn topology(vdevs: &str, prefix: &str, run_dir: &Path) -> String {
    debug_assert!(ANALYZER_NET.contains(GW_MAC), "the analyzers' gateway is the fabric gateway");
    format!(
        r#"
[eal]
main_core = 0
forwarding_cores = [1]
memory_mb = 256
mbufs = 4095
file_prefix = "{prefix}"
vdevs = [{vdevs}]

[vrouter]
run_dir = "{run_dir}"
router_ip = "10.10.0.1"
summary_interval_s = 0

[[vif]]
id = 0
name = "fabric0"
type = "fabric"
device = "net_pcap0"
mac = "{FABRIC_MAC}"
ip = "10.10.0.1"
vrf = 0

[[vif]]
id = 1
name = "tap-vm1"
type = "virtual"
device = "net_pcap1"
mac = "{ROUTER_MAC}"
ip = "192.168.1.3"
vrf = 1
vn_name = "default-domain:demo:vn1"
vm_uuid = "5f2a1c3e-0000-4000-8000-000000000001"
vmi_uuid = "5f2a1c3e-0000-4000-8000-0000000000a1"

[[vif]]
id = 2
name = "tap-vm2"
type = "virtual"
device = "net_pcap2"
mac = "{ROUTER_MAC}"
ip = "192.168.1.4"
ip6 = "fd00:1::4"
vrf = 1
vn_name = "default-domain:demo:vn1"

[[vrf]]
id = 0
name = "fabric"

[[vrf]]
id = 1
name = "default-domain:demo:vn1"
vxlan_vni = 5001

[[nexthop]]
id = 1
type = "encap"
vif = 1
dst_mac = "{VM1_MAC}"

[[nexthop]]
id = 2
type = "encap"
vif = 2
dst_mac = "{VM2_MAC}"

[[nexthop]]
id = 3
type = "tunnel"
encap = "mplsoudp"
remote_ip = "10.10.0.2"
label = 40
vif = 0
dst_mac = "{GW_MAC}"

[[nexthop]]
id = 4
type = "tunnel"
encap = "vxlan"
remote_ip = "10.10.0.3"
label = 5001
vif = 0
dst_mac = "{GW_MAC}"
inner_dst_mac = "{REMOTE_VXLAN_VM_MAC}"

[[nexthop]]
id = 5
type = "discard"

[[nexthop]]
id = 6
type = "tunnel"
encap = "mplsoudp"
remote_ip = "10.10.0.4"
label = 41
vif = 0
dst_mac = "{GW_MAC}"

[[nexthop]]
id = 7
type = "ecmp"
members = [3, 6]

[[route]]
vrf = 1
prefix = "192.168.1.3/32"
nexthop = 1

[[route]]
vrf = 1
prefix = "192.168.1.4/32"
nexthop = 2

[[route]]
vrf = 1
prefix = "192.168.2.0/24"
nexthop = 3

[[route]]
vrf = 1
prefix = "192.168.3.0/24"
nexthop = 4

[[route]]
vrf = 1
prefix = "192.168.9.0/24"
nexthop = 5

[[route]]
vrf = 1
prefix = "192.168.10.0/24"
nexthop = 7

[[route]]
vrf = 1
prefix = "fd00:1::3/128"
nexthop = 1

[[route]]
vrf = 1
prefix = "fd00:1::4/128"
nexthop = 2

[[route]]
vrf = 1
prefix = "fd00:2::/64"
nexthop = 3

[[bridge]]
vrf = 1
mac = "{VM1_MAC}"
nexthop = 1

[[bridge]]
vrf = 1
mac = "{VM2_MAC}"
nexthop = 2

[[label]]
label = 17
nexthop = 1

[[label]]
label = 18
nexthop = 2
"#,
        run_dir = run_dir.display()
    )
}

/// Sends one JSON request to the vRouter's control socket and returns the JSON reply.
pub fn control(run_dir: &Path, request: &serde_json::Value) -> serde_json::Value {
    use std::io::{BufRead, BufReader, Write};
    let mut s = std::os::unix::net::UnixStream::connect(run_dir.join("control.sock")).expect("control socket");
    writeln!(s, "{request}").unwrap();
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad reply {line:?}: {e}"))
}

/// Inputs per vif (0 fabric, 1 vm1, 2 vm2).
#[derive(Default)]
pub struct Inputs {
    /// RX queue 0 of each vif.
    pub fabric: Vec<Vec<u8>>,
    pub vm1: Vec<Vec<u8>>,
    pub vm2: Vec<Vec<u8>>,
    /// Further RX queues, by vif (0 fabric, 1 vm1, 2 vm2): `more_rx[v][q]` feeds RX queue
    /// `q + 1` of vif `v` (one `rx_pcap` per queue; the vif gets `rx_queues = 1 + len`).
    pub more_rx: [Vec<Vec<Vec<u8>>>; 3],
    /// TX queues of each vif (one `tx_pcap` per queue; 0 counts as 1). The vRouter opens one
    /// per forwarding lcore, at most this many.
    pub tx_queues: [usize; 3],
}

impl Inputs {
    /// The frames of RX queue `q` of vif `v`.
    pub fn rx_queue(&self, v: usize, q: usize) -> &[Vec<u8>] {
        match q {
            0 => [&self.fabric, &self.vm1, &self.vm2][v],
            _ => &self.more_rx[v][q - 1],
        }
    }

    /// RX queues of vif `v`.
    pub fn rx_queues(&self, v: usize) -> usize {
        1 + self.more_rx[v].len()
    }

    fn total(&self) -> u64 {
        (0..3).map(|v| (0..self.rx_queues(v)).map(|q| self.rx_queue(v, q).len() as u64).sum::<u64>()).sum()
    }
}

/// What a run produced.
pub struct Outcome {
    /// What each vif sent, all its TX queues in queue order.
    pub fabric: Vec<Vec<u8>>,
    pub vm1: Vec<Vec<u8>>,
    pub vm2: Vec<Vec<u8>>,
    /// What each vif sent, by TX queue: `tx_by_queue[v][q]` (0 fabric, 1 vm1, 2 vm2).
    pub tx_by_queue: [Vec<Vec<Vec<u8>>>; 3],
    pub vifs: BTreeMap<u16, VifCounters>,
    pub drops: [u64; DROP_REASON_COUNT],
    pub vif_drops: BTreeMap<u16, [u64; DROP_REASON_COUNT]>,
    pub run_dir: PathBuf,
    pub stdout: String,
    /// vRouter-wide counters (mirror copies sent, their bytes, failed copies).
    pub mirror: vrouter::stats::LcoreCounters,
    _dir: tempfile::TempDir,
}

impl Outcome {
    pub fn drop_count(&self, r: DropReason) -> u64 {
        self.drops[r.index()]
    }
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }
    pub fn total_rx(&self) -> u64 {
        self.vifs.values().map(|c| c.rx_packets).sum()
    }
    pub fn total_tx(&self) -> u64 {
        self.vifs.values().map(|c| c.tx_packets).sum()
    }
    /// Non-zero drop reasons.
    pub fn drop_list(&self) -> Vec<(DropReason, u64)> {
        DropReason::ALL.iter().filter(|r| self.drops[r.index()] > 0).map(|r| (*r, self.drops[r.index()])).collect()
    }
    /// packets in = packets out + sum of drops, per vif and in total; per-vif drops add up to
    /// the global ones. Frames the vRouter made (mirror copies, ICMP error answers) are TX
    /// of their port too: they are taken out of TX (copies sent, answers queued: an answer
    /// the queue refused is an `IF TX Discard` drop instead) and failed copies out of the
    /// drops.
    pub fn assert_accounted(&self, n_in: u64) {
        assert_eq!(self.total_rx(), n_in, "rx counters {:?}", self.vifs);
        assert_eq!(
            self.total_rx() + self.mirror.mirror_packets + self.mirror.mirror_errors + self.mirror.icmp_errors_sent,
            self.total_tx() + self.total_drops(),
            "in != out + drops (made frames excluded): {:?} drops {:?} {:?}",
            self.vifs,
            self.drop_list(),
            self.mirror
        );
        let mut sum = [0u64; DROP_REASON_COUNT];
        for d in self.vif_drops.values() {
            for (s, v) in sum.iter_mut().zip(d) {
                *s += v;
            }
        }
        assert_eq!(sum, self.drops, "per-vif drops do not add up to the global drops");
    }
}

/// Removes the flow tables that vRouters of earlier tests left on a hugetlbfs mount (the
/// automatic pick puts a table there, named after its run directory, whenever a mount has
/// room): a table file stays after its vRouter stops, for the tools, but the test's temporary
/// directory is gone by then and the file would hold its huge pages until the next boot.
/// Only files named after a run directory inside a `tempfile` directory that no longer
/// exists are removed; called before every vRouter the harness starts.
pub fn remove_orphaned_flow_tables() {
    let tmp = std::env::temp_dir();
    let prefix = format!("{}_", flow_table::file_name_for_run_dir(&tmp));
    for m in flow_table::hugetlbfs_mounts() {
        let Ok(rd) = std::fs::read_dir(&m.path) else { continue };
        for e in rd.flatten() {
            let name = e.file_name();
            let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else { continue };
            // `flow.tmp_.tmpAbC123_run`: tempfile's directory names are `.tmp` and letters or
            // digits, so the first `_` ends it.
            let dir = rest.split('_').next().unwrap_or("");
            if dir.starts_with(".tmp") && !tmp.join(dir).exists() {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

pub fn unique_prefix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!("vrt{}_{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst))
}

/// A vRouter child process that is killed if the test panics before stopping it, so a failed
/// test never leaves a forwarding loop spinning on the machine.
/// Also removes the run's EAL runtime directory (`/var/run/dpdk/<prefix>`) when dropped.
pub struct Running(pub Child, pub String);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
        let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{}", self.1));
    }
}

impl std::ops::Deref for Running {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

/// Starts the vRouter on the standard topology with the given vdev strings and returns the
/// child, the run directory and the temp dir guard; the caller stops it with [`stop`].
pub fn start_live(vdev_for: impl Fn(&Path, usize) -> String) -> (Running, PathBuf, tempfile::TempDir) {
    start_live_with(vdev_for, |c| c)
}

/// Like [`start_live`], letting the caller edit the configuration text.
pub fn start_live_with(
    vdev_for: impl Fn(&Path, usize) -> String,
    edit: impl FnOnce(String) -> String,
) -> (Running, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let run_dir = d.join("run");
    let vdevs: Vec<String> = (0..3).map(|i| format!("\"{}\"", vdev_for(&d, i))).collect();
    let prefix = unique_prefix();
    let cfg = edit(topology(&vdevs.join(", "), &prefix, &run_dir));
    let cfg_path = d.join("vrouter.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    remove_orphaned_flow_tables();
    let child = Command::new(env!("CARGO_BIN_EXE_vrouter"))
        .arg("--config")
        .arg(&cfg_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start vrouter");
    (Running(child, prefix), run_dir, dir)
}

/// Runs the vRouter binary on the standard topology with these inputs.
pub fn run(inputs: Inputs) -> Outcome {
    run_with(inputs, |c| c)
}

/// Like [`run`], letting the caller edit the configuration text.
pub fn run_with(inputs: Inputs, edit: impl FnOnce(String) -> String) -> Outcome {
    run_live(inputs, edit, |_| {})
}

/// Like [`run_with`]; `during` runs once every input packet is accounted for, while the
/// vRouter is still running (to query its control socket or run the tools live).
pub fn run_live(inputs: Inputs, edit: impl FnOnce(String) -> String, during: impl FnOnce(&Path)) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run_dir = d.join("run");
    let n_in = inputs.total();
    let names = ["fabric", "vm1", "vm2"];
    // Output captures by vif and TX queue: queue 0 keeps the single-queue name.
    let tx_paths: Vec<Vec<PathBuf>> = (0..3)
        .map(|v| {
            (0..inputs.tx_queues[v].max(1))
                .map(|q| match q {
                    0 => d.join(format!("{}-out.pcap", names[v])),
                    _ => d.join(format!("{}-out-q{q}.pcap", names[v])),
                })
                .collect()
        })
        .collect();
    let mut vdevs = Vec::new();
    for (v, name) in names.iter().enumerate() {
        let mut vdev = format!("net_pcap{v}");
        for q in 0..inputs.rx_queues(v) {
            let rx = match q {
                0 => d.join(format!("{name}-in.pcap")),
                _ => d.join(format!("{name}-in-q{q}.pcap")),
            };
            write_pcap(&rx, inputs.rx_queue(v, q));
            vdev.push_str(&format!(",rx_pcap={}", rx.display()));
        }
        for tx in &tx_paths[v] {
            vdev.push_str(&format!(",tx_pcap={}", tx.display()));
        }
        vdevs.push(format!("\"{vdev}\""));
    }
    let prefix = unique_prefix();
    let mut cfg = topology(&vdevs.join(", "), &prefix, &run_dir);
    for v in 0..3 {
        if inputs.rx_queues(v) > 1 {
            let device = format!("device = \"net_pcap{v}\"");
            cfg = cfg.replacen(&device, &format!("{device}\nrx_queues = {}", inputs.rx_queues(v)), 1);
        }
    }
    let cfg = edit(cfg);
    // The edit may move the run directory (to keep it across runs).
    let run_dir = cfg
        .lines()
        .find_map(|l| l.strip_prefix("run_dir = \""))
        .map_or(run_dir, |r| PathBuf::from(r.trim_end().trim_end_matches('"')));
    let cfg_path = d.join("vrouter.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    remove_orphaned_flow_tables();

    let mut child = Running(
        Command::new(env!("CARGO_BIN_EXE_vrouter"))
            .arg("--config")
            .arg(&cfg_path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start vrouter"),
        prefix.clone(),
    );

    let deadline = Instant::now() + Duration::from_secs(60);
    let reader = loop {
        if let Ok(r) = StatsReader::open(&run_dir) {
            break r;
        }
        if let Some(st) = child.try_wait().unwrap() {
            let mut out = String::new();
            let mut err = String::new();
            use std::io::Read;
            child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
            child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            panic!("vrouter exited early ({st}): {out}\n{err}");
        }
        assert!(Instant::now() < deadline, "vrouter did not create its stats region");
        std::thread::sleep(Duration::from_millis(20));
    };
    // Wait until every input packet was received and either sent or dropped.
    loop {
        let (rx, tx, drops) = totals(&reader);
        if rx >= n_in && rx == tx + drops {
            break;
        }
        if Instant::now() > deadline {
            stop(&mut child);
            panic!("timed out: rx {rx} tx {tx} drops {drops}, expected {n_in} in");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    during(&run_dir);
    let stdout = stop(&mut child);

    let reader = StatsReader::open(&run_dir).unwrap();
    assert_eq!(reader.liveness(), Liveness::Stopped, "a clean stop leaves the stats region marked stopped");
    let mut vifs = BTreeMap::new();
    let mut vif_drops = BTreeMap::new();
    for v in 0..3u16 {
        vifs.insert(v, reader.vif_counters(v, None));
        vif_drops.insert(v, reader.vif_drops(v, None));
    }
    let tx_by_queue: [Vec<Vec<Vec<u8>>>; 3] =
        std::array::from_fn(|v| tx_paths[v].iter().map(|p| read_pcap(p)).collect());
    Outcome {
        fabric: tx_by_queue[0].concat(),
        vm1: tx_by_queue[1].concat(),
        vm2: tx_by_queue[2].concat(),
        tx_by_queue,
        vifs,
        drops: reader.drops(None),
        vif_drops,
        run_dir,
        stdout,
        mirror: reader.lcore_counters(None),
        _dir: dir,
    }
}

fn totals(r: &StatsReader) -> (u64, u64, u64) {
    let mut rx = 0;
    let mut tx = 0;
    for v in 0..3u16 {
        let c = r.vif_counters(v, None);
        rx += c.rx_packets;
        tx += c.tx_packets;
    }
    // Failed mirror copies are counted under mirror drop reasons, mirror copies sent and ICMP
    // answers queued are TX: none of them are input packets. The lcore counters are read
    // after the vif counters and move before them, so this never over-counts.
    let lc = r.lcore_counters(None);
    let made_tx = lc.mirror_packets + lc.icmp_errors_sent;
    (rx, tx.saturating_sub(made_tx), r.drops(None).iter().sum::<u64>() - lc.mirror_errors)
}

/// SIGINT, then wait (bounded) for a clean exit; returns stdout.
pub fn stop(child: &mut Child) -> String {
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            let mut out = String::new();
            let mut err = String::new();
            use std::io::Read;
            child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
            child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            assert!(st.success(), "vrouter exited with {st}\nstdout:\n{out}\nstderr:\n{err}");
            return out;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("vrouter did not stop within 20 s of SIGINT");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One HTTP/1.1 request (`Connection: close`, optional bearer token and JSON body) to `addr`;
/// returns the status and the JSON body (chunked transfer encoding undone). Panics with the
/// path and the text when the body is not JSON.
pub fn http_json(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, serde_json::Value) {
    let (status, text) =
        collector::client::request(addr, method, path, token, body).unwrap_or_else(|e| panic!("{addr} {path}: {e}"));
    (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}")))
}

/// Starts the `vrouter` binary on the configuration file `cfg_path` (EAL file prefix
/// `prefix`), stdout and stderr piped; the caller waits for what it needs.
pub fn spawn_vrouter(cfg_path: &Path, prefix: String) -> Running {
    spawn_vrouter_with(cfg_path, prefix, &[])
}

/// [`spawn_vrouter`] with more arguments (`--takeover`).
pub fn spawn_vrouter_with(cfg_path: &Path, prefix: String, args: &[&str]) -> Running {
    remove_orphaned_flow_tables();
    Running(
        Command::new(env!("CARGO_BIN_EXE_vrouter"))
            .arg("--config")
            .arg(cfg_path)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start vrouter"),
        prefix,
    )
}

/// A veth pair, deleted when dropped.
pub struct Veth(pub String);

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).status();
    }
}

/// Creates the veth pair `a`/`b` (needs CAP_NET_ADMIN), up, IPv6 off (no router
/// solicitations on the test's links).
pub fn veth_pair(a: &str, b: &str) -> Veth {
    let st = Command::new("ip").args(["link", "add", a, "type", "veth", "peer", "name", b]).status().unwrap();
    assert!(st.success(), "creating a veth pair (needs CAP_NET_ADMIN)");
    let v = Veth(a.to_string());
    for i in [a, b] {
        let _ = Command::new("sysctl").args(["-qw", &format!("net.ipv6.conf.{i}.disable_ipv6=1")]).status();
        assert!(Command::new("ip").args(["link", "set", i, "up"]).status().unwrap().success());
    }
    v
}

/// A raw AF_PACKET socket bound to one interface (all protocols).
pub struct Raw {
    fd: i32,
    ifindex: i32,
}

impl Raw {
    pub fn open(iface: &str) -> Raw {
        let name = std::ffi::CString::new(iface).unwrap();
        // SAFETY: plain libc calls with valid arguments; the fd is closed in Drop.
        unsafe {
            let ifindex = libc::if_nametoindex(name.as_ptr()) as i32;
            assert!(ifindex > 0, "no interface {iface}");
            let proto = (libc::ETH_P_ALL as u16).to_be();
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto));
            assert!(fd >= 0, "AF_PACKET socket");
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto;
            sll.sll_ifindex = ifindex;
            let r = libc::bind(fd, (&sll as *const libc::sockaddr_ll).cast(), size_of::<libc::sockaddr_ll>() as u32);
            assert_eq!(r, 0, "bind AF_PACKET");
            // Room for a few seconds of the test's stream while this process waits for a CPU.
            let size: i32 = 16 << 20;
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&size as *const i32).cast(),
                size_of::<i32>() as u32,
            );
            let tv = libc::timeval { tv_sec: 0, tv_usec: 100_000 };
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                size_of::<libc::timeval>() as u32,
            );
            Raw { fd, ifindex }
        }
    }

    pub fn send(&self, frame: &[u8]) {
        // SAFETY: the frame buffer is valid for its length; sockaddr_ll is initialised.
        unsafe {
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_ifindex = self.ifindex;
            sll.sll_halen = 6;
            let r = libc::sendto(
                self.fd,
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&sll as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            );
            assert_eq!(r, frame.len() as isize, "sendto");
        }
    }

    /// One frame received on the interface (not one it sent), or None after the timeout.
    pub fn recv(&self) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 2048];
        // SAFETY: buf is valid for its length; sll is an out-parameter of the given size.
        unsafe {
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            let mut len = size_of::<libc::sockaddr_ll>() as u32;
            loop {
                let n = libc::recvfrom(
                    self.fd,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    (&mut sll as *mut libc::sockaddr_ll).cast(),
                    &mut len,
                );
                if n < 0 {
                    return None;
                }
                if sll.sll_pkttype == libc::PACKET_OUTGOING {
                    continue;
                }
                buf.truncate(n as usize);
                return Some(buf);
            }
        }
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        // SAFETY: our own fd.
        unsafe { libc::close(self.fd) };
    }
}
