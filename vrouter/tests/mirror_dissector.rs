//! The vRouter's mirror copies as an analyzer's operator reads them: the fabric's TX capture
//! of a real vRouter run (real EAL, pcap vdevs; the analyzers sit behind the fabric gateway)
//! decoded by tshark with the repository's Lua dissector
//! (`tools/wireshark/vrouter_mirror.lua`). For flow mirroring to a primary analyzer (on the
//! default port 8099) and a secondary one (port 9099, given to tshark as the dissector's
//! preference), and for interface mirroring (a vif's RX to one analyzer, another vif's TX to
//! the other): every metadata field and the inner frame, field by field, against what the
//! test sent.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

const AN_A: &str = "10.20.0.5";
const AN_B: &str = "10.20.0.6";
const VN1: &str = "default-domain:demo:vn1";

/// Analyzers A (index 1, UDP 8099) and B (index 2, UDP 9099), both with the Juniper header,
/// behind the fabric gateway; `extra` is appended.
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
udp_port = 9099
index = 2
{extra}"#
    )
}

fn dissector() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("tools/wireshark/vrouter_mirror.lua")
}

/// The copies tshark finds in `pcap` with the dissector (analyzer B's port as its
/// preference): one map of field -> value per frame, in capture order. The dissector must
/// load without a word on stderr (a Lua error is only a message there).
fn decode(pcap: &Path, fields: &[&str]) -> Vec<std::collections::BTreeMap<String, String>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-n")
        .arg("-X")
        .arg(format!("lua_script:{}", dissector().display()))
        .args(["-o", "vrouter_mirror.udp_ports:8099,9099", "-r"])
        .arg(pcap)
        .args(["-T", "fields"]);
    for f in fields {
        cmd.arg("-e").arg(f);
    }
    let out = cmd.output().expect("tshark must be installed (ci/setup.sh installs it)");
    let err = String::from_utf8_lossy(&out.stderr);
    let err: Vec<&str> = err.lines().filter(|l| !l.starts_with("Running as user")).collect();
    assert!(out.status.success() && err.is_empty(), "tshark: {}\n{}", out.status, err.join("\n"));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| fields.iter().zip(l.split('\t')).map(|(f, v)| (f.to_string(), v.to_owned())).collect())
        .collect()
}

const FIELDS: &[&str] = &[
    "vrouter_mirror.kind",
    "vrouter_mirror.capture_host",
    "vrouter_mirror.flags",
    "vrouter_mirror.flags.ingress",
    "vrouter_mirror.source_vn",
    "vrouter_mirror.dest_vn",
    "vrouter_mirror.metadata_length",
    "eth.src",
    "eth.dst",
    "ip.src",
    "ip.dst",
    "udp.srcport",
    "udp.dstport",
    "data.data",
    "_ws.expert.message",
];

fn vm_udp(src: &str, dst: &str, sport: u16, dport: u16, payload: &[u8], from_mac: &str) -> Vec<u8> {
    let ip = ipv4_udp(ip4(src), ip4(dst), 64, sport, dport, payload);
    eth(mac(ROUTER_MAC), mac(from_mac), 0x0800, &ip)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Payloads told apart by their first byte.
fn payload(i: usize) -> Vec<u8> {
    let mut p = vec![0xa0 + i as u8; 20 + 100 * i];
    p[1] = i as u8;
    p
}

#[test]
fn flow_copies_at_primary_and_secondary_analyzer_in_tshark() {
    let policy = format!(
        r#"
[flow]
held_packets_per_flow = 16

[[network_policy]]
name = "mirror-web"
vns = ["{VN1}"]
[[network_policy.rule]]
uuid = "bbbbbbbb-0000-4000-8000-000000000080"
protocol = "udp"
dst_ports = "80"
action = "pass"
mirror_to = ["an-a", "an-b"]
[[network_policy.rule]]
uuid = "bbbbbbbb-0000-4000-8000-0000000000ff"
action = "pass"
"#
    );
    let web: Vec<Vec<u8>> =
        (0..3).map(|i| vm_udp("192.168.1.3", "192.168.1.4", 4000, 80, &payload(i), VM1_MAC)).collect();
    let mut vm1 = web.clone();
    vm1.push(vm_udp("192.168.1.3", "192.168.1.4", 4001, 7777, b"not mirrored", VM1_MAC));
    let out = run_with(Inputs { vm1, ..Default::default() }, |c| with_analyzers(c, &policy));
    assert_eq!(out.vm2.len(), 4, "all forwarded");
    assert_eq!(out.fabric.len(), 6, "3 copies at each analyzer");

    let rows = decode(&out.run_dir.parent().unwrap().join("fabric-out.pcap"), FIELDS);
    assert_eq!(rows.len(), 6);
    // Metadata: CAPTURE_HOST, FLAGS, SOURCE_VN, DEST_VN, END = 6 + 6 + 25 + 25 + 2.
    let md_len = (6 + 6 + 2 + VN1.len() + 2 + VN1.len() + 2).to_string();
    for (analyzer, port) in [(AN_A, "8099"), (AN_B, "9099")] {
        let at: Vec<_> = rows.iter().filter(|r| r["ip.dst"].starts_with(&format!("{analyzer},"))).collect();
        assert_eq!(at.len(), 3, "3 copies at {analyzer}: {rows:#?}");
        for (i, r) in at.iter().enumerate() {
            let want = [
                ("vrouter_mirror.kind", "flow".to_owned()),
                ("vrouter_mirror.capture_host", "10.10.0.1".to_owned()),
                ("vrouter_mirror.flags", "0x40000000".to_owned()),
                ("vrouter_mirror.flags.ingress", "1".to_owned()),
                ("vrouter_mirror.source_vn", VN1.to_owned()),
                ("vrouter_mirror.dest_vn", VN1.to_owned()),
                ("vrouter_mirror.metadata_length", md_len.clone()),
                // Outer (vRouter -> gateway) then inner (vm1 -> vRouter, as received).
                ("eth.src", format!("{ROUTER_MAC},{VM1_MAC}")),
                ("eth.dst", format!("{GW_MAC},{ROUTER_MAC}")),
                ("ip.src", "10.10.0.1,192.168.1.3".to_owned()),
                ("ip.dst", format!("{analyzer},192.168.1.4")),
                ("udp.dstport", format!("{port},80")),
                ("data.data", hex(&payload(i))),
                ("_ws.expert.message", String::new()),
            ];
            for (k, v) in want {
                assert_eq!(r[k], v, "{analyzer} copy {i}: {k}");
            }
            let sport = r["udp.srcport"].split(',').nth(1).unwrap();
            assert_eq!(sport, "4000", "inner UDP source port");
        }
    }
}

#[test]
fn interface_copies_rx_and_tx_in_tshark() {
    // vm1's RX mirrored to A, vm2's TX mirrored to B.
    let edit = |c: String| {
        let c = c.replacen(
            "vm_uuid = \"5f2a1c3e-0000-4000-8000-000000000001\"",
            "vm_uuid = \"5f2a1c3e-0000-4000-8000-000000000001\"\nmirror_to = \"an-a\"\nmirror_rx = true",
            1,
        );
        let c = c.replacen("ip6 = \"fd00:1::4\"", "ip6 = \"fd00:1::4\"\nmirror_to = \"an-b\"\nmirror_tx = true", 1);
        with_analyzers(c, "")
    };
    let frames: Vec<Vec<u8>> =
        (0..3).map(|i| vm_udp("192.168.1.3", "192.168.1.4", 6000 + i as u16, 7777, &payload(i), VM1_MAC)).collect();
    let out = run_with(Inputs { vm1: frames.clone(), ..Default::default() }, edit);
    assert_eq!(out.vm2.len(), 3);
    assert_eq!(out.fabric.len(), 6);

    let rows = decode(&out.run_dir.parent().unwrap().join("fabric-out.pcap"), FIELDS);
    let at = |an: &str| -> Vec<_> { rows.iter().filter(|r| r["ip.dst"].starts_with(&format!("{an},"))).collect() };
    let (a, b) = (at(AN_A), at(AN_B));
    assert_eq!((a.len(), b.len()), (3, 3), "{rows:#?}");
    let md_len = (2 + VN1.len() + 2).to_string();
    for (i, (r, sent)) in a.iter().zip(&frames).enumerate() {
        // RX: the frame as vm1 sent it, {SOURCE_VN, END}.
        let want = [
            ("vrouter_mirror.kind", "interface-rx".to_owned()),
            ("vrouter_mirror.capture_host", String::new()),
            ("vrouter_mirror.flags", String::new()),
            ("vrouter_mirror.source_vn", VN1.to_owned()),
            ("vrouter_mirror.dest_vn", String::new()),
            ("vrouter_mirror.metadata_length", md_len.clone()),
            ("eth.src", format!("{ROUTER_MAC},{VM1_MAC}")),
            ("eth.dst", format!("{GW_MAC},{ROUTER_MAC}")),
            ("ip.src", "10.10.0.1,192.168.1.3".to_owned()),
            ("ip.dst", format!("{AN_A},192.168.1.4")),
            ("udp.srcport", format!("{},{}", r["udp.srcport"].split(',').next().unwrap(), 6000 + i)),
            ("udp.dstport", "8099,7777".to_owned()),
            ("data.data", hex(&payload(i))),
            ("_ws.expert.message", String::new()),
        ];
        for (k, v) in want {
            assert_eq!(r[k], v, "RX copy {i}: {k}");
        }
        assert_eq!(sent[6..12], mac(VM1_MAC));
    }
    for (i, r) in b.iter().enumerate() {
        // TX: the frame as vm2 received it (rewritten: vRouter MAC -> vm2's MAC, TTL 63),
        // {DEST_VN, END}.
        let want = [
            ("vrouter_mirror.kind", "interface-tx".to_owned()),
            ("vrouter_mirror.source_vn", String::new()),
            ("vrouter_mirror.dest_vn", VN1.to_owned()),
            ("vrouter_mirror.metadata_length", md_len.clone()),
            ("eth.src", format!("{ROUTER_MAC},{ROUTER_MAC}")),
            ("eth.dst", format!("{GW_MAC},{VM2_MAC}")),
            ("ip.src", "10.10.0.1,192.168.1.3".to_owned()),
            ("ip.dst", format!("{AN_B},192.168.1.4")),
            ("udp.dstport", "9099,7777".to_owned()),
            ("data.data", hex(&payload(i))),
            ("_ws.expert.message", String::new()),
        ];
        for (k, v) in want {
            assert_eq!(r[k], v, "TX copy {i}: {k}");
        }
    }
    // The inner frames are those vm2 received, byte for byte (frame length = outer 42 +
    // metadata + inner).
    for (r, got) in b.iter().zip(&out.vm2) {
        assert_eq!(r["data.data"], hex(&got[42..]));
    }
}
