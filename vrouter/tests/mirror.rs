//! Mirroring through the real vRouter (real EAL, pcap vdevs): the analyzers sit behind the
//! fabric vif, so every copy is captured in the fabric's TX pcap. Checks exact copy counts
//! per analyzer, byte-identical inner frames, the metadata TLVs and the VXLAN header, the
//! per-flow / per-vif / per-entry / vRouter-wide counters against the captured bytes, the
//! captures decoded by tshark, and the failure paths with their named drop reasons.

mod common;
use common::*;
use flow_table::{Action, FlowSnapshot, FlowTableReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use vrouter::drop_reason::DropReason;
use vrouter::mirror::MirrorReader;
use vrouter::stats::StatsReader;
use vrouter_abi::mirror::{split_metadata, MetaTlv, FLAG_INGRESS};

const AN_A: &str = "10.20.0.5";
const AN_B: &str = "10.20.0.6";
const VN1: &str = "default-domain:demo:vn1";
const RULE_WEB: &str = "bbbbbbbb-0000-4000-8000-000000000080";
const RULE_DNS: &str = "bbbbbbbb-0000-4000-8000-000000000053";
const RULE_ALL: &str = "bbbbbbbb-0000-4000-8000-0000000000ff";

/// Analyzers A (Juniper header, index 1) and B (VXLAN VNI 50, index 2) behind the fabric
/// gateway, plus C (index 3) with no route; `extra` is appended (policies, vif settings).
fn with_analyzers(cfg: String, extra: &str) -> String {
    format!(
        r#"{cfg}
{ANALYZER_NET}

[[analyzer]]
name = "an-a"
ip = "{AN_A}"
index = 1

[[analyzer]]
name = "an-b"
ip = "{AN_B}"
juniper_header = false
vni = 50
index = 2

[[analyzer]]
name = "an-far"
ip = "172.31.9.9"
index = 3
{extra}"#
    )
}

/// vn1 policy: web (udp 80) mirrored to A and B, DNS (udp 53) denied and mirrored to A,
/// udp 7000 mirrored to the unreachable analyzer, everything else passes unmirrored.
fn flow_policy() -> String {
    format!(
        r#"
[flow]
held_packets_per_flow = 16

[[network_policy]]
name = "mirror-web"
vns = ["{VN1}"]
[[network_policy.rule]]
uuid = "{RULE_WEB}"
protocol = "udp"
dst_ports = "80"
action = "pass"
mirror_to = ["an-a", "an-b"]
[[network_policy.rule]]
uuid = "{RULE_DNS}"
protocol = "udp"
dst_ports = "53"
action = "deny"
mirror_to = ["an-a"]
[[network_policy.rule]]
uuid = "bbbbbbbb-0000-4000-8000-000000007000"
protocol = "udp"
dst_ports = "7000"
action = "pass"
mirror_to = ["an-far"]
[[network_policy.rule]]
uuid = "{RULE_ALL}"
action = "pass"
"#
    )
}

fn vm_udp(src: &str, dst: &str, sport: u16, dport: u16, payload: &[u8], from_mac: &str) -> Vec<u8> {
    let ip = ipv4_udp(ip4(src), ip4(dst), 64, sport, dport, payload);
    eth(mac(ROUTER_MAC), mac(from_mac), 0x0800, &ip)
}

fn flows(run_dir: &Path) -> Vec<FlowSnapshot> {
    let r = FlowTableReader::open_run_dir(run_dir).expect("flow table");
    r.iter_active().collect()
}

fn find(fl: &[FlowSnapshot], dport: u16) -> &FlowSnapshot {
    fl.iter()
        .find(|f| f.key.dport() == dport && f.key.src_ip() == std::net::IpAddr::V4(ip4("192.168.1.3")))
        .unwrap_or_else(|| panic!("no flow to port {dport} in {fl:#?}"))
}

/// One copy as the analyzer receives it.
#[derive(Debug)]
struct Copy {
    /// Length of the whole captured frame (what the mirror counters count).
    len: usize,
    /// Metadata TLVs (Juniper header) or the VNI (VXLAN).
    tlvs: Vec<MetaTlv>,
    vni: Option<u32>,
    /// The mirrored frame inside.
    inner: Vec<u8>,
}

/// The copies sent to `analyzer` among the frames captured on the fabric: checks the
/// outer Ethernet/IPv4/UDP headers (addresses, lengths, IPv4 checksum) and decodes either
/// the metadata TLVs (UDP 8099) or the VXLAN header (UDP 4789).
fn copies_to(frames: &[Vec<u8>], analyzer: &str) -> Vec<Copy> {
    let mut out = Vec::new();
    for f in frames {
        if f.len() < 42 || f[12..14] != [0x08, 0x00] || f[23] != 17 || f[30..34] != ip4(analyzer).octets() {
            continue;
        }
        assert_eq!(f[..6], mac(GW_MAC), "copy goes to the fabric gateway");
        assert_eq!(f[6..12], mac(ROUTER_MAC));
        assert_eq!(f[26..30], ip4("10.10.0.1").octets(), "outer source is the vRouter");
        assert_eq!(csum(&f[14..34], 0), 0, "outer IPv4 checksum");
        assert_eq!(usize::from(u16::from_be_bytes([f[16], f[17]])), f.len() - 14, "IPv4 total length");
        assert_eq!(usize::from(u16::from_be_bytes([f[38], f[39]])), f.len() - 34, "UDP length");
        assert!(u16::from_be_bytes([f[34], f[35]]) >= 49152, "UDP source port from the entropy range");
        let payload = &f[42..];
        match u16::from_be_bytes([f[36], f[37]]) {
            8099 => {
                let (tlvs, inner) = split_metadata(payload).expect("metadata TLVs");
                out.push(Copy { len: f.len(), tlvs, vni: None, inner: inner.to_vec() });
            }
            4789 => {
                assert_eq!(payload[0], 0x08, "VXLAN I flag");
                let vni = u32::from_be_bytes([0, payload[4], payload[5], payload[6]]);
                out.push(Copy { len: f.len(), tlvs: Vec::new(), vni: Some(vni), inner: payload[8..].to_vec() });
            }
            p => panic!("copy to {analyzer} on unexpected UDP port {p}"),
        }
    }
    out
}

fn flow_md() -> Vec<MetaTlv> {
    vec![
        MetaTlv::CaptureHost(ip4("10.10.0.1")),
        MetaTlv::Flags(FLAG_INGRESS),
        MetaTlv::SourceVn(VN1.into()),
        MetaTlv::DestVn(VN1.into()),
    ]
}

/// tshark's reading of a capture: one line per frame with the requested fields.
fn tshark(pcap: &Path, filter: &str, fields: &[&str]) -> Vec<String> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-n").arg("-r").arg(pcap).arg("-Y").arg(filter).arg("-T").arg("fields");
    for f in fields {
        cmd.arg("-e").arg(f);
    }
    let out = cmd.stderr(Stdio::piped()).output().expect("tshark must be installed (apt install tshark)");
    assert!(out.status.success(), "tshark failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect()
}

#[test]
fn flow_mirrored_to_two_analyzers_both_encapsulations() {
    // N = 5 web packets (mirrored to A and B, forwarded) and 2 DNS packets (mirrored to A,
    // dropped by the policy: mirrored before the drop).
    let web: Vec<Vec<u8>> = [10usize, 100, 300, 800, 1400]
        .iter()
        .map(|&n| vm_udp("192.168.1.3", "192.168.1.4", 4000, 80, &vec![0x5a; n], VM1_MAC))
        .collect();
    let dns: Vec<Vec<u8>> = [20usize, 40]
        .iter()
        .map(|&n| vm_udp("192.168.1.3", "192.168.1.4", 5353, 53, &vec![0x11; n], VM1_MAC))
        .collect();
    let mut vm1 = web.clone();
    vm1.extend(dns.clone());
    let out = run_with(Inputs { vm1, ..Default::default() }, |c| with_analyzers(c, &flow_policy()));
    assert_eq!(out.vm2.len(), 5, "web passes, DNS is dropped");
    assert_eq!(out.drop_list(), vec![(DropReason::FlowActionDrop, 2)], "no mirror failure");
    out.assert_accounted(7);
    assert_eq!(out.vifs[&0].tx_packets, 12, "the 12 copies are the fabric's TX");

    let a = copies_to(&out.fabric, AN_A);
    let b = copies_to(&out.fabric, AN_B);
    assert_eq!(out.fabric.len(), a.len() + b.len(), "nothing else on the fabric");
    assert_eq!(a.len(), 7, "5 web + 2 DNS copies at analyzer A");
    assert_eq!(b.len(), 5, "5 web copies at analyzer B");
    // Every copy's inner frame is byte-identical to the original, in order (held packets
    // are copied when released, in their order).
    let a_inner: Vec<&Vec<u8>> = a.iter().map(|c| &c.inner).collect();
    for f in web.iter().chain(&dns) {
        assert!(a_inner.contains(&f), "copy of a {}-byte frame missing at A", f.len());
    }
    let a_web: Vec<&Vec<u8>> = a.iter().filter(|c| c.inner[36..38] == 80u16.to_be_bytes()).map(|c| &c.inner).collect();
    assert_eq!(a_web, web.iter().collect::<Vec<_>>(), "A: web copies in order, byte-identical");
    assert_eq!(b.iter().map(|c| &c.inner).collect::<Vec<_>>(), web.iter().collect::<Vec<_>>(), "B: byte-identical");
    for c in &a {
        assert_eq!(c.tlvs, flow_md(), "flow metadata");
        assert_eq!(c.len, 42 + 6 + 6 + 2 + VN1.len() + 2 + VN1.len() + 2 + c.inner.len());
    }
    for c in &b {
        assert_eq!(c.vni, Some(50));
        assert_eq!(c.len, 50 + c.inner.len());
    }

    // Per flow: matched = mirrored, bytes = bytes captured at each analyzer.
    let fl = flows(&out.run_dir);
    let w = find(&fl, 80);
    let d = find(&fl, 53);
    let bytes = |v: &[&Copy]| v.iter().map(|c| c.len as u64).sum::<u64>();
    let a_web_copies: Vec<&Copy> = a.iter().filter(|c| c.inner[36..38] == 80u16.to_be_bytes()).collect();
    let a_dns_copies: Vec<&Copy> = a.iter().filter(|c| c.inner[36..38] == 53u16.to_be_bytes()).collect();
    let b_copies: Vec<&Copy> = b.iter().collect();
    assert_eq!((w.mirror, w.sec_mirror), (1, 2));
    assert_eq!(w.packets, 5);
    assert_eq!((w.mirror_packets, w.sec_mirror_packets), (5, 5));
    assert_eq!(w.mirror_bytes, bytes(&a_web_copies));
    assert_eq!(w.sec_mirror_bytes, bytes(&b_copies));
    assert_eq!(d.action, Action::Drop);
    assert_eq!((d.packets, d.mirror_packets, d.mirror_bytes), (2, 2, bytes(&a_dns_copies)));
    assert_eq!(d.sec_mirror_packets, 0);

    // Per entry (mirror region) and vRouter-wide.
    let m = MirrorReader::open(&out.run_dir).unwrap();
    let all_a: Vec<&Copy> = a.iter().collect();
    let sa = m.stats(1, None);
    let sb = m.stats(2, None);
    assert_eq!((sa.packets, sa.bytes, sa.errors), (7, bytes(&all_a), 0));
    assert_eq!((sb.packets, sb.bytes, sb.errors), (5, bytes(&b_copies), 0));
    assert_eq!(m.entry(1).unwrap().analyzer_name, "an-a");
    assert_eq!(out.mirror.mirror_packets, 12, "mir_tpkts");
    assert_eq!(out.mirror.mirror_bytes, bytes(&all_a) + bytes(&b_copies), "mir_bytes");
    assert_eq!(out.mirror.mirror_errors, 0);

    // The captured analyzer traffic as tshark reads it: VXLAN natively (VNI 50, the inner
    // UDP to port 80), the Juniper-header copies as UDP to 8099 of the right lengths.
    let fabric_pcap = out.run_dir.parent().unwrap().join("fabric-out.pcap");
    let vx = tshark(&fabric_pcap, "vxlan", &["ip.dst", "vxlan.vni", "udp.dstport"]);
    assert_eq!(vx.len(), 5, "{vx:?}");
    for l in &vx {
        assert_eq!(l, &format!("{AN_B},192.168.1.4\t50\t4789,80"), "tshark: outer and inner IP / UDP");
    }
    let jh = tshark(&fabric_pcap, "udp.dstport == 8099", &["ip.dst", "frame.len"]);
    let mut want: Vec<String> = a.iter().map(|c| format!("{AN_A}\t{}", c.len)).collect();
    let mut got = jh.clone();
    want.sort();
    got.sort();
    assert_eq!(got, want);
}

#[test]
fn interface_mirroring_rx_and_tx() {
    // vm1's RX mirrored to A (Juniper header, {SOURCE_VN, END}), vm2's TX mirrored to B
    // (VXLAN): N packets from vm1 to vm2.
    let edit = |c: String| {
        let c = c.replacen(
            "vm_uuid = \"5f2a1c3e-0000-4000-8000-000000000001\"",
            "vm_uuid = \"5f2a1c3e-0000-4000-8000-000000000001\"\nmirror_to = \"an-a\"\nmirror_rx = true",
            1,
        );
        let c = c.replacen("ip6 = \"fd00:1::4\"", "ip6 = \"fd00:1::4\"\nmirror_to = \"an-b\"\nmirror_tx = true", 1);
        with_analyzers(c, "")
    };
    let frames: Vec<Vec<u8>> = (0..6usize)
        .map(|i| vm_udp("192.168.1.3", "192.168.1.4", 6000 + i as u16, 9000, &vec![i as u8; 50 + i * 200], VM1_MAC))
        .collect();
    let out = run_with(Inputs { vm1: frames.clone(), ..Default::default() }, edit);
    assert_eq!(out.vm2.len(), 6);
    out.assert_accounted(6);
    let a = copies_to(&out.fabric, AN_A);
    let b = copies_to(&out.fabric, AN_B);
    assert_eq!((a.len(), b.len()), (6, 6));
    assert_eq!(out.fabric.len(), 12);
    for (c, f) in a.iter().zip(&frames) {
        assert_eq!(&c.inner, f, "RX copy is the frame as received");
        assert_eq!(c.tlvs, vec![MetaTlv::SourceVn(VN1.into())]);
    }
    for (c, f) in b.iter().zip(&out.vm2) {
        assert_eq!(&c.inner, f, "TX copy is the frame as transmitted");
        assert_eq!(c.vni, Some(50));
    }
    let sum = |v: &[Copy]| v.iter().map(|c| c.len as u64).sum::<u64>();
    let r = StatsReader::open(&out.run_dir).unwrap();
    let v1 = r.vif_counters(1, None);
    let v2 = r.vif_counters(2, None);
    assert_eq!((v1.mirror_packets, v1.mirror_bytes, v1.mirror_errors), (6, sum(&a), 0));
    assert_eq!((v2.mirror_packets, v2.mirror_bytes, v2.mirror_errors), (6, sum(&b), 0));
    assert_eq!((out.mirror.mirror_packets, out.mirror.mirror_bytes), (12, sum(&a) + sum(&b)));
    let info = r.vif(1).unwrap();
    assert_eq!(info.mirror_id, Some(1));
    assert_eq!(r.vif(2).unwrap().mirror_id, Some(2));
    assert_eq!(r.vif(0).unwrap().mirror_id, None);
}

/// `(captured length, original length)` of every record of a pcap file.
fn pcap_record_lengths(path: &Path) -> Vec<(u32, u32)> {
    let data = std::fs::read(path).unwrap();
    let magic = u32::from_le_bytes(data[0..4].try_into().unwrap());
    assert!(magic == 0xa1b2c3d4 || magic == 0xa1b23c4d, "little-endian pcap (us or ns), magic {magic:#x}");
    let mut out = Vec::new();
    let mut off = 24;
    while off + 16 <= data.len() {
        let caplen = u32::from_le_bytes(data[off + 8..off + 12].try_into().unwrap());
        let origlen = u32::from_le_bytes(data[off + 12..off + 16].try_into().unwrap());
        out.push((caplen, origlen));
        off += 16 + caplen as usize;
    }
    out
}

/// Every frame that leaves a port is in its vif's TX counters, mirror copies included:
/// with flow mirroring (web to A and B) and interface mirroring (vm1 RX to A, vm2 TX to B)
/// at once, each vif's TX packets and bytes are the number of frames and the sum of their
/// lengths in the port's output capture (captured whole: captured length = wire length =
/// the mbuf's pkt_len the counters add up).
#[test]
fn vif_tx_counters_match_the_port_captures_with_flow_and_interface_mirroring() {
    let edit = |c: String| {
        let c = c.replacen(
            "vm_uuid = \"5f2a1c3e-0000-4000-8000-000000000001\"",
            "vm_uuid = \"5f2a1c3e-0000-4000-8000-000000000001\"\nmirror_to = \"an-a\"\nmirror_rx = true",
            1,
        );
        let c = c.replacen("ip6 = \"fd00:1::4\"", "ip6 = \"fd00:1::4\"\nmirror_to = \"an-b\"\nmirror_tx = true", 1);
        with_analyzers(c, &flow_policy())
    };
    // vm1 -> vm2 web (flow copies to A and B, vm1 RX copy to A, vm2 TX copy to B: 4 each),
    // vm1 -> vm2 other (interface copies only: 2 each), vm2 -> vm1 (no copy).
    let mut vm1: Vec<Vec<u8>> = [10usize, 700, 1400]
        .iter()
        .map(|&n| vm_udp("192.168.1.3", "192.168.1.4", 4000, 80, &vec![0x5a; n], VM1_MAC))
        .collect();
    vm1.extend(
        [30usize, 300].iter().map(|&n| vm_udp("192.168.1.3", "192.168.1.4", 4001, 9000, &vec![0x33; n], VM1_MAC)),
    );
    let vm2: Vec<Vec<u8>> = [40usize, 900]
        .iter()
        .map(|&n| vm_udp("192.168.1.4", "192.168.1.3", 4002, 9001, &vec![0x44; n], VM2_MAC))
        .collect();
    let out = run_with(Inputs { vm1, vm2, ..Default::default() }, edit);
    assert_eq!((out.vm1.len(), out.vm2.len()), (2, 5), "originals delivered");
    assert_eq!(out.fabric.len(), 3 * 4 + 2 * 2, "copies on the fabric");
    assert_eq!((out.mirror.mirror_packets, out.mirror.mirror_errors), (16, 0));
    assert_eq!(out.total_drops(), 0, "{:?}", out.drop_list());
    out.assert_accounted(7);
    let dir = out.run_dir.parent().unwrap();
    for (vif, name, frames) in [(0u16, "fabric", &out.fabric), (1, "vm1", &out.vm1), (2, "vm2", &out.vm2)] {
        let c = &out.vifs[&vif];
        let bytes: u64 = frames.iter().map(|f| f.len() as u64).sum();
        assert_eq!((c.tx_packets, c.tx_bytes), (frames.len() as u64, bytes), "vif {vif} TX vs {name}-out.pcap");
        assert_eq!(c.tx_errors, 0);
        for (caplen, origlen) in pcap_record_lengths(&dir.join(format!("{name}-out.pcap"))) {
            assert_eq!(caplen, origlen, "{name}: frames captured whole");
        }
    }
    // The fabric's TX bytes are exactly the copies' bytes (nothing else left there).
    assert_eq!(out.vifs[&0].tx_bytes, out.mirror.mirror_bytes);
}

/// A frame whose copy does not fit one mbuf (2000 bytes + 42 of headers + 27 of metadata is
/// more than the 2048 bytes of data room after the headroom): the copy fails with
/// `Mirror Encap Fail` on the mirrored vif, the frame itself is forwarded, smaller frames
/// of the same vif are mirrored.
#[test]
fn copy_too_long_for_an_mbuf_is_an_encap_failure() {
    let edit = |c: String| {
        let c = c.replacen(
            "vm_uuid = \"5f2a1c3e-0000-4000-8000-000000000001\"",
            "vm_uuid = \"5f2a1c3e-0000-4000-8000-000000000001\"\nmirror_to = \"an-a\"\nmirror_rx = true",
            1,
        );
        with_analyzers(c, "")
    };
    let big = vm_udp("192.168.1.3", "192.168.1.4", 6100, 9000, &vec![7u8; 2000 - 42], VM1_MAC);
    let small = vm_udp("192.168.1.3", "192.168.1.4", 6101, 9000, b"small", VM1_MAC);
    assert_eq!(big.len(), 2000);
    let out = run_with(Inputs { vm1: vec![big.clone(), small.clone(), big.clone()], ..Default::default() }, edit);
    assert_eq!(out.vm2.len(), 3, "originals forwarded");
    out.assert_accounted(3);
    let a = copies_to(&out.fabric, AN_A);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].inner, small);
    assert_eq!(out.drop_list(), vec![(DropReason::MirrorEncapFail, 2)]);
    let r = StatsReader::open(&out.run_dir).unwrap();
    let v1 = r.vif_counters(1, None);
    assert_eq!((v1.mirror_packets, v1.mirror_bytes, v1.mirror_errors), (1, a[0].len as u64, 2));
    let m = MirrorReader::open(&out.run_dir).unwrap();
    assert_eq!((m.stats(1, None).packets, m.stats(1, None).errors), (1, 2));
}

#[test]
fn unreachable_analyzer_counts_errors_and_leaves_traffic_alone() {
    let frames: Vec<Vec<u8>> =
        (0..4).map(|i| vm_udp("192.168.1.3", "192.168.1.4", 7100 + i, 7000, b"to-far", VM1_MAC)).collect();
    let out = run_with(Inputs { vm1: frames.clone(), ..Default::default() }, |c| with_analyzers(c, &flow_policy()));
    assert_eq!(out.vm2.len(), 4, "originals unaffected");
    assert!(out.fabric.is_empty(), "no copy leaves");
    assert_eq!(out.drop_list(), vec![(DropReason::MirrorNoNh, 4)]);
    assert_eq!(out.vif_drops[&1][DropReason::MirrorNoNh.index()], 4, "counted on the input vif");
    out.assert_accounted(4);
    assert_eq!((out.mirror.mirror_packets, out.mirror.mirror_errors), (0, 4));
    let m = MirrorReader::open(&out.run_dir).unwrap();
    assert_eq!(m.stats(3, None).errors, 4);
    assert_eq!(m.entry(3).unwrap().nh_vif, None);
    // matched - mirrored is explained per flow: 4 matched, 0 mirrored, 4 "Mirror No NH".
    let fl = flows(&out.run_dir);
    let total: u64 = fl.iter().filter(|f| f.key.dport() == 7000).map(|f| f.packets - f.mirror_packets).sum();
    assert_eq!(total, out.drop_count(DropReason::MirrorNoNh));
}

/// Live: vm1 replays its pcap forever (`infinite_rx`), so traffic runs while the mirror
/// entry is deleted over the control socket and created again. Nothing crashes, every
/// original is forwarded, and for the mirrored flow
/// `packets = mirror_packets + Mirror No Entry drops` exactly.
#[test]
fn entry_deleted_while_traffic_runs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run_dir = d.join("run");
    let rx = d.join("vm1-in.pcap");
    write_pcap(&rx, &[vm_udp("192.168.1.3", "192.168.1.4", 4100, 80, b"stream", VM1_MAC)]);
    let empty = d.join("empty.pcap");
    write_pcap(&empty, &[]);
    let vdevs = [
        format!("\"net_pcap0,rx_pcap={}\"", empty.display()),
        format!("\"net_pcap1,rx_pcap={},infinite_rx=1\"", rx.display()),
        format!("\"net_pcap2,rx_pcap={}\"", empty.display()),
    ];
    let prefix = unique_prefix();
    let cfg = with_analyzers(topology(&vdevs.join(", "), &prefix, &run_dir), &flow_policy());
    let cfg_path = d.join("vrouter.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let mut child = Running(
        Command::new(env!("CARGO_BIN_EXE_vrouter"))
            .arg("--config")
            .arg(&cfg_path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        prefix,
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let flow_of = |run_dir: &Path| -> Option<FlowSnapshot> {
        let r = FlowTableReader::open_run_dir(run_dir).ok()?;
        let f = r.iter_active().find(|f| f.key.dport() == 80 && f.action == Action::Forward);
        f
    };
    // Wait for mirrored traffic.
    while flow_of(&run_dir).is_none_or(|f| f.mirror_packets < 1000) {
        assert!(Instant::now() < deadline, "no mirrored traffic");
        assert!(child.try_wait().unwrap().is_none(), "vrouter exited");
        std::thread::sleep(Duration::from_millis(20));
    }
    let del = control(&run_dir, &serde_json::json!({"cmd": "mirror_delete", "name": "an-a"}));
    assert_eq!(del["ok"], true, "{del}");
    let stats = StatsReader::open(&run_dir).unwrap();
    while stats.drops(None)[DropReason::MirrorNoEntry.index()] < 1000 {
        assert!(Instant::now() < deadline, "no Mirror No Entry drops after the delete");
        std::thread::sleep(Duration::from_millis(20));
    }
    let again = control(&run_dir, &serde_json::json!({"cmd": "mirror_create", "name": "an-a", "ip": AN_A, "index": 1}));
    assert_eq!(again["ok"], true, "{again}");
    let m = MirrorReader::open(&run_dir).unwrap();
    let before = m.stats(1, None).packets;
    while m.stats(1, None).packets < before + 1000 {
        assert!(Instant::now() < deadline, "mirroring did not resume after re-creating the entry");
        std::thread::sleep(Duration::from_millis(20));
    }
    stop(&mut child);

    let f = flow_of(&run_dir).expect("flow");
    let st = StatsReader::open(&run_dir).unwrap();
    let drops = st.drops(None);
    let no_entry = drops[DropReason::MirrorNoEntry.index()];
    assert!(no_entry >= 1000);
    // Originals dropped before the flow was set up (held-queue overflow) were counted on
    // the flow but never had an action to mirror them with.
    let orig_drops: u64 = drops.iter().sum::<u64>() - no_entry;
    // Primary (A): matched = mirrored + no-entry failures (+ the pre-setup drops);
    // secondary (B) never failed.
    assert_eq!(f.packets, f.mirror_packets + no_entry + orig_drops, "matched - mirrored is explained");
    assert_eq!(f.packets - orig_drops, f.sec_mirror_packets);
    let sa = m.stats(1, None);
    assert_eq!((sa.packets, sa.errors), (f.mirror_packets, no_entry));
    assert_eq!(m.stats(2, None).packets, f.sec_mirror_packets);
    // Originals: every received packet is the flow's, and forwarded unless dropped before
    // setup; a mirror failure never costs an original.
    let v1 = st.vif_counters(1, None);
    let v2 = st.vif_counters(2, None);
    assert_eq!(v1.rx_packets, f.packets);
    assert_eq!(v2.tx_packets + orig_drops, v1.rx_packets, "no original lost to mirroring");
    let lc = st.lcore_counters(None);
    assert_eq!(lc.mirror_errors, no_entry);
    assert_eq!(lc.mirror_packets, f.mirror_packets + f.sec_mirror_packets);
}

/// Live: the fabric vif is a `net_ring` device whose TX ring is drained only by the
/// vRouter's own RX poll of the same port (the copies come back and are dropped as
/// `No L2 Route`: they are addressed to the gateway MAC). Two copies per packet fill the
/// 1024-slot ring faster than one RX burst per loop drains it, so the TX queue is full for
/// part of the copies. Nothing crashes, no original is lost to it, and every copy that was
/// due is either mirrored or counted as `Mirror TX Queue Full`, on the flow's numbers.
#[test]
fn full_fabric_tx_queue_counts_mirror_tx_full() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run_dir = d.join("run");
    let rx = d.join("vm1-in.pcap");
    write_pcap(&rx, &[vm_udp("192.168.1.3", "192.168.1.4", 4200, 80, b"fill-the-ring", VM1_MAC)]);
    let empty = d.join("empty.pcap");
    write_pcap(&empty, &[]);
    let vdevs = [
        "\"net_ring0\"".to_string(),
        format!("\"net_pcap1,rx_pcap={},infinite_rx=1\"", rx.display()),
        format!("\"net_pcap2,rx_pcap={}\"", empty.display()),
    ];
    let prefix = unique_prefix();
    let cfg = with_analyzers(topology(&vdevs.join(", "), &prefix, &run_dir), &flow_policy()).replacen(
        "device = \"net_pcap0\"",
        "device = \"net_ring0\"",
        1,
    );
    let cfg_path = d.join("vrouter.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let mut child = Running(
        Command::new(env!("CARGO_BIN_EXE_vrouter"))
            .arg("--config")
            .arg(&cfg_path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        prefix,
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let stats = loop {
        if let Ok(r) = StatsReader::open(&run_dir) {
            break r;
        }
        assert!(child.try_wait().unwrap().is_none(), "vrouter exited");
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    };
    while stats.drops(None)[DropReason::MirrorTxFull.index()] < 1000 || stats.lcore_counters(None).mirror_packets < 1000
    {
        assert!(Instant::now() < deadline, "no full TX queue: drops {:?}", stats.drops(None));
        assert!(child.try_wait().unwrap().is_none(), "vrouter exited");
        std::thread::sleep(Duration::from_millis(20));
    }
    stop(&mut child);
    let st = StatsReader::open(&run_dir).unwrap();
    let drops = st.drops(None);
    let tx_full = drops[DropReason::MirrorTxFull.index()];
    let fl = flows(&run_dir);
    let f = fl
        .iter()
        .find(|f| f.key.dport() == 80 && f.key.src_ip() == std::net::IpAddr::V4(ip4("192.168.1.3")))
        .expect("flow");
    // Originals of the flow dropped before setup (held-queue overflow) had no action yet.
    let pre_setup = drops[DropReason::FlowQueueLimitExceeded.index()] + drops[DropReason::FlowUnusable.index()];
    let v1 = st.vif_counters(1, None);
    let v2 = st.vif_counters(2, None);
    assert_eq!(v1.rx_packets, f.packets);
    assert_eq!(v2.tx_packets + pre_setup, v1.rx_packets, "no original lost to the full fabric queue");
    let due = 2 * (f.packets - pre_setup);
    assert_eq!(f.mirror_packets + f.sec_mirror_packets + tx_full, due, "every copy mirrored or counted");
    let m = MirrorReader::open(&run_dir).unwrap();
    let (a, b) = (m.stats(1, None), m.stats(2, None));
    assert_eq!((a.packets, b.packets), (f.mirror_packets, f.sec_mirror_packets));
    assert_eq!(a.errors + b.errors, tx_full);
    let lc = st.lcore_counters(None);
    assert_eq!((lc.mirror_packets, lc.mirror_errors), (a.packets + b.packets, tx_full));
    // On the fabric vif: the copies sent are its TX (bytes as counted for mir_bytes), the
    // copies the queue refused its TX errors; each refused copy is one drop (Mirror TX
    // Queue Full on the input vif), not also an IF TX Discard.
    let v0 = st.vif_counters(0, None);
    assert_eq!((v0.tx_packets, v0.tx_bytes, v0.tx_errors), (lc.mirror_packets, lc.mirror_bytes, tx_full));
    assert_eq!(drops[DropReason::InterfaceTxDiscard.index()], 0);
    // The copies that did leave came back on the ring and were dropped as bridged frames
    // to an unknown MAC: the fabric vif received exactly what was mirrored (minus what was
    // still in the ring at the stop).
    let v0 = st.vif_counters(0, None);
    assert!(v0.rx_packets <= lc.mirror_packets && v0.rx_packets + 1024 >= lc.mirror_packets, "{v0:?} {lc:?}");
    assert_eq!(st.vif_drops(0, None)[DropReason::NoL2Route.index()], v0.rx_packets);
}

/// IPv6 flows are mirrored the same way (route_v6 path): copies at both analyzers,
/// byte-identical, counted on the flow.
#[test]
fn ipv6_flow_mirrored_to_both_analyzers() {
    let frames: Vec<Vec<u8>> = [8usize, 64, 512]
        .iter()
        .map(|&n| {
            let ip = ipv6_udp(ip6("fd00:1::3"), ip6("fd00:1::4"), 64, 4400, 80, &vec![0x66; n]);
            eth(mac(ROUTER_MAC), mac(VM1_MAC), 0x86dd, &ip)
        })
        .collect();
    let out = run_with(Inputs { vm1: frames.clone(), ..Default::default() }, |c| with_analyzers(c, &flow_policy()));
    assert_eq!(out.vm2.len(), 3);
    out.assert_accounted(3);
    let a = copies_to(&out.fabric, AN_A);
    let b = copies_to(&out.fabric, AN_B);
    assert_eq!(a.iter().map(|c| &c.inner).collect::<Vec<_>>(), frames.iter().collect::<Vec<_>>());
    assert_eq!(b.iter().map(|c| &c.inner).collect::<Vec<_>>(), frames.iter().collect::<Vec<_>>());
    let fl = flows(&out.run_dir);
    let f =
        fl.iter().find(|f| f.key.dport() == 80 && f.key.src_ip() == std::net::IpAddr::V6(ip6("fd00:1::3"))).unwrap();
    assert_eq!((f.packets, f.mirror_packets, f.sec_mirror_packets), (3, 3, 3));
    assert_eq!(f.mirror_bytes, a.iter().map(|c| c.len as u64).sum::<u64>());
    assert_eq!(f.sec_mirror_bytes, b.iter().map(|c| c.len as u64).sum::<u64>());
}

/// A flow entering from the fabric (MPLSoUDP, label 17 -> vm1) is mirrored with the
/// Ethernet header it is delivered with in front of the inner IP packet, which is what vm1
/// receives; the metadata has no ingress flag (the packet did not come from a VM).
#[test]
fn fabric_decap_flow_mirrored_with_its_delivery_l2_header() {
    let inner = ipv4_udp(ip4("192.168.2.10"), ip4("192.168.1.3"), 63, 4500, 80, b"from-remote");
    let mut mp = mpls(17, 64).to_vec();
    mp.extend_from_slice(&inner);
    let pkt = tunnel_outer(mac(FABRIC_MAC), mac(GW_MAC), ip4("10.10.0.2"), ip4("10.10.0.1"), 50000, 6635, &mp);
    let out = run_with(Inputs { fabric: vec![pkt.clone(), pkt], ..Default::default() }, |c| {
        with_analyzers(c, &flow_policy())
    });
    assert_eq!(out.vm1.len(), 2);
    out.assert_accounted(2);
    let a = copies_to(&out.fabric, AN_A);
    let b = copies_to(&out.fabric, AN_B);
    assert_eq!((a.len(), b.len()), (2, 2));
    for (c, delivered) in a.iter().zip(&out.vm1) {
        assert_eq!(&c.inner, delivered);
        assert_eq!(c.tlvs[1], MetaTlv::Flags(0));
        assert_eq!(c.tlvs[2..], [MetaTlv::SourceVn(VN1.into()), MetaTlv::DestVn(VN1.into())]);
    }
    assert_eq!(b[0].inner, out.vm1[0]);
    let fl = flows(&out.run_dir);
    let f =
        fl.iter().find(|f| f.key.dport() == 80 && f.key.src_ip() == std::net::IpAddr::V4(ip4("192.168.2.10"))).unwrap();
    assert_eq!((f.packets, f.mirror_packets, f.sec_mirror_packets), (2, 2, 2));
}
