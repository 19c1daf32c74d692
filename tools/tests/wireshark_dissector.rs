//! The Wireshark dissector for mirror copies (`tools/wireshark/vrouter_mirror.lua`) in
//! tshark, on copies built here with the metadata encoder the vRouter uses
//! (`vrouter_abi::mirror`): every TLV as a named field, the mirror kind, the inner frame
//! handed to Wireshark's Ethernet dissector, other analyzer ports through the preference and
//! Decode As, and malformed metadata reported as such instead of decoded. (The vRouter's
//! own captures through the same dissector: `vrouter/tests/mirror_dissector.rs`.)

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use vrouter_abi::mirror::metadata::END_ONLY;
use vrouter_abi::mirror::{
    encode_metadata, flow_metadata, interface_rx_metadata, interface_tx_metadata, MetaTlv, DEFAULT_ANALYZER_PORT,
    FLAG_INGRESS,
};

const VN_A: &str = "default-domain:demo:vn-a";
const VN_B: &str = "default-domain:demo:vn-b";

fn dissector() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("wireshark/vrouter_mirror.lua")
}

fn csum(data: &[u8]) -> u16 {
    let mut s: u32 = data.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// Ethernet | IPv4 | UDP | payload.
fn eth_ipv4_udp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    let total = (20 + 8 + payload.len()) as u16;
    let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    let c = csum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

/// The mirrored frame: a VM's UDP datagram from 192.168.1.3:4000 to 192.168.1.4:`dport`.
fn inner(dport: u16) -> Vec<u8> {
    eth_ipv4_udp(Ipv4Addr::new(192, 168, 1, 3), Ipv4Addr::new(192, 168, 1, 4), 4000, dport, b"mirrored")
}

/// A copy as the vRouter 10.10.0.1 sends it to the analyzer 10.20.0.5 on `port`.
fn copy(port: u16, metadata: &[u8], inner: &[u8]) -> Vec<u8> {
    let mut payload = metadata.to_vec();
    payload.extend_from_slice(inner);
    eth_ipv4_udp(Ipv4Addr::new(10, 10, 0, 1), Ipv4Addr::new(10, 20, 0, 5), 50000, port, &payload)
}

fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    let mut out = Vec::new();
    for v in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 65535, 1] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for (i, f) in frames.iter().enumerate() {
        for v in [i as u32, 0, f.len() as u32, f.len() as u32] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(f);
    }
    std::fs::write(path, out).unwrap();
}

/// tshark with the dissector: one tab-separated line of `fields` per frame. The dissector
/// must load without a word on stderr (a Lua error is only a message there, tshark still
/// succeeds).
fn tshark(pcap: &Path, extra: &[&str], fields: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-n").arg("-X").arg(format!("lua_script:{}", dissector().display())).arg("-r").arg(pcap).args(extra);
    cmd.args(["-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,"]);
    for f in fields {
        cmd.arg("-e").arg(f);
    }
    let out = cmd.output().expect("tshark must be installed (ci/setup.sh installs it)");
    let err = String::from_utf8_lossy(&out.stderr);
    let err: Vec<&str> = err.lines().filter(|l| !l.starts_with("Running as user")).collect();
    assert!(out.status.success() && err.is_empty(), "tshark: {}\n{}", out.status, err.join("\n"));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| l.split('\t').map(str::to_owned).collect()).collect()
}

const FIELDS: &[&str] = &[
    "vrouter_mirror.kind",
    "vrouter_mirror.capture_host",
    "vrouter_mirror.flags",
    "vrouter_mirror.flags.ingress",
    "vrouter_mirror.source_vn",
    "vrouter_mirror.dest_vn",
    "vrouter_mirror.metadata_length",
    "ip.src",
    "ip.dst",
    "udp.dstport",
    "_ws.expert.message",
];

#[test]
fn every_metadata_field_and_the_inner_frame() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("analyzer.pcap");
    let host = Ipv4Addr::new(10, 10, 0, 1);
    let flow = flow_metadata(host, FLAG_INGRESS, VN_A, VN_B).unwrap();
    let egress = flow_metadata(host, 0, VN_B, VN_A).unwrap();
    let rx = interface_rx_metadata(VN_A).unwrap();
    let tx = interface_tx_metadata(VN_B).unwrap();
    let frames = vec![
        copy(8099, &flow, &inner(80)),
        copy(8099, &egress, &inner(81)),
        copy(8099, &rx, &inner(82)),
        copy(8099, &tx, &inner(83)),
        copy(8099, &END_ONLY, &inner(84)),
    ];
    write_pcap(&pcap, &frames);
    let rows = tshark(&pcap, &[], FIELDS);
    let md = |m: &[u8]| m.len().to_string();
    let want = [
        [
            "flow",
            "10.10.0.1",
            "0x40000000",
            "1",
            VN_A,
            VN_B,
            &md(&flow),
            "10.10.0.1,192.168.1.3",
            "10.20.0.5,192.168.1.4",
            "8099,80",
            "",
        ],
        [
            "flow",
            "10.10.0.1",
            "0x00000000",
            "0",
            VN_B,
            VN_A,
            &md(&egress),
            "10.10.0.1,192.168.1.3",
            "10.20.0.5,192.168.1.4",
            "8099,81",
            "",
        ],
        [
            "interface-rx",
            "",
            "",
            "",
            VN_A,
            "",
            &md(&rx),
            "10.10.0.1,192.168.1.3",
            "10.20.0.5,192.168.1.4",
            "8099,82",
            "",
        ],
        [
            "interface-tx",
            "",
            "",
            "",
            "",
            VN_B,
            &md(&tx),
            "10.10.0.1,192.168.1.3",
            "10.20.0.5,192.168.1.4",
            "8099,83",
            "",
        ],
        ["unknown", "", "", "", "", "", "2", "10.10.0.1,192.168.1.3", "10.20.0.5,192.168.1.4", "8099,84", ""],
    ];
    assert_eq!(rows.len(), want.len());
    for (got, want) in rows.iter().zip(&want) {
        assert_eq!(got, &want.map(str::to_owned).to_vec());
    }
    // The TLVs one by one, types named.
    let tlvs = tshark(&pcap, &["-Y", "frame.number == 1"], &["vrouter_mirror.tlv.type", "vrouter_mirror.tlv.length"]);
    assert_eq!(tlvs, vec![vec!["1,2,3,4,255".to_owned(), format!("4,4,{},{},0", VN_A.len(), VN_B.len())]]);
    // The summary line names the copy, then the inner frame's own.
    let summary = tshark(&pcap, &["-Y", "frame.number == 3"], &["_ws.col.Info", "_ws.col.Protocol"]);
    assert_eq!(summary[0][0], format!("[mirror interface-rx from {VN_A}] 4000 → 82 Len=8"));
    assert_eq!(summary[0][1], "UDP");
}

#[test]
fn other_analyzer_ports_by_preference_or_decode_as() {
    // Registered by default on the vRouter's default analyzer port.
    let lua = std::fs::read_to_string(dissector()).unwrap();
    assert!(lua.contains(&format!("local DEFAULT_PORTS = \"{DEFAULT_ANALYZER_PORT}\"")));
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("analyzer.pcap");
    let md = interface_tx_metadata(VN_B).unwrap();
    write_pcap(&pcap, &[copy(9099, &md, &inner(80))]);
    let fields = ["vrouter_mirror.dest_vn", "udp.dstport"];
    assert_eq!(tshark(&pcap, &[], &fields), vec![vec!["".to_owned(), "9099".to_owned()]], "not on 9099 by default");
    let decoded = vec![vec![VN_B.to_owned(), "9099,80".to_owned()]];
    assert_eq!(tshark(&pcap, &["-o", "vrouter_mirror.udp_ports:8099,9099"], &fields), decoded);
    assert_eq!(tshark(&pcap, &["-d", "udp.port==9099,vrouter_mirror"], &fields), decoded);
}

#[test]
fn malformed_metadata_is_reported_not_decoded() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("analyzer.pcap");
    let unknown = {
        // An unknown type before END: named as unknown, the rest still decoded.
        let mut m = vec![9, 2, 0xaa, 0xbb];
        m.extend(encode_metadata(&[MetaTlv::SourceVn(VN_A.into())]).unwrap());
        m
    };
    let frames = vec![
        copy(8099, &[3, 200, b'x'], &[]),                   // value runs past the packet
        copy(8099, &[1, 3, 10, 10, 0, 255, 0], &inner(80)), // CAPTURE_HOST of 3 bytes
        copy(8099, &[3, 4, b'v', b'n', b'-', b'a'], &[]),   // no END
        copy(8099, &[3, 0, 255, 0], &inner(80)),            // empty VN
        copy(8099, &unknown, &inner(80)),
    ];
    write_pcap(&pcap, &frames);
    let rows = tshark(&pcap, &[], &["vrouter_mirror.kind", "ip.dst", "_ws.expert.message", "_ws.col.Protocol"]);
    let outer_only =
        |msg: &str| vec!["".to_owned(), "10.20.0.5".to_owned(), msg.to_owned(), "vRouter mirror".to_owned()];
    assert_eq!(rows[0], outer_only("TLV type 3 at byte 0: length 200 runs past the packet"));
    assert_eq!(rows[1], outer_only("CAPTURE_HOST at byte 0 has length 3, expected 4"));
    assert_eq!(rows[2], outer_only("no END TLV"));
    assert_eq!(rows[3], outer_only("SOURCE_VN at byte 0 is empty"));
    assert_eq!(
        rows[4],
        vec!["interface-rx", "10.20.0.5,192.168.1.4", "Unknown TLV type 9", "UDP"]
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    );
}
