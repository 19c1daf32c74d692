//! The forwarding-path fuzz harness without the fuzzer: the committed seed corpus and the
//! minimized regression inputs replayed through `fuzz/src/harness.rs` (shared with the
//! libFuzzer target, see fuzz/README.md), and the seed corpus kept in step with the
//! generator below (`UPDATE_FUZZ_SEEDS=1 cargo test -p vrouter --test fuzz_replay` rewrites
//! it).

#[path = "../../fuzz/src/harness.rs"]
#[allow(dead_code)]
mod harness;

use harness::{encode, oracle, Oracle};
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// Frame builders (test data only; the oracle has its own parser).
mod build {
    pub const GW: [u8; 6] = [0x00, 0x00, 0x5e, 0x00, 0x01, 0x00];
    pub const VM2_VIF: [u8; 6] = [0x02, 0, 0, 0, 0xff, 0x02];
    pub const VM1_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x03];
    pub const VM2_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x04];
    pub const FABRIC_VIF: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
    pub const PEER: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
    pub const VM1: [u8; 4] = [192, 168, 1, 3];
    pub const VM2: [u8; 4] = [192, 168, 1, 4];
    pub const REMOTE: [u8; 4] = [192, 168, 2, 10];

    pub fn v6(s: &str) -> [u8; 16] {
        s.parse::<std::net::Ipv6Addr>().unwrap().octets()
    }

    fn csum(b: &[u8]) -> u16 {
        let mut s = 0u32;
        for c in b.chunks(2) {
            s += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }

    pub fn eth(dst: [u8; 6], src: [u8; 6], et: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = dst.to_vec();
        f.extend_from_slice(&src);
        f.extend_from_slice(&et.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// IPv4 with `opts` (a multiple of 4 bytes) and flags/fragment offset `ff`.
    pub fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, id: u16, ff: u16, opts: &[u8], payload: &[u8]) -> Vec<u8> {
        let hl = 20 + opts.len();
        let total = (hl + payload.len()) as u16;
        let mut h = vec![0x40 | (hl / 4) as u8, 0];
        h.extend_from_slice(&total.to_be_bytes());
        h.extend_from_slice(&id.to_be_bytes());
        h.extend_from_slice(&ff.to_be_bytes());
        h.extend_from_slice(&[64, proto, 0, 0]);
        h.extend_from_slice(&src);
        h.extend_from_slice(&dst);
        h.extend_from_slice(opts);
        let c = csum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h.extend_from_slice(payload);
        h
    }

    pub fn ipv6(src: [u8; 16], dst: [u8; 16], nh: u8, payload: &[u8]) -> Vec<u8> {
        let mut h = vec![0x60, 0, 0, 0];
        h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        h.extend_from_slice(&[nh, 64]);
        h.extend_from_slice(&src);
        h.extend_from_slice(&dst);
        h.extend_from_slice(payload);
        h
    }

    /// An 8-byte extension header (hop-by-hop, routing, destination options) before `next`.
    pub fn ext(next: u8, kind: u8) -> Vec<u8> {
        match kind {
            // Routing type 4 (segment routing) style header with 0 segments left: 8 bytes.
            43 => vec![next, 0, 4, 0, 0, 0, 0, 0],
            // PadN option filling the 6 bytes.
            _ => vec![next, 0, 1, 4, 0, 0, 0, 0],
        }
    }

    pub fn frag6(next: u8, offset_units: u16, more: bool, id: u32) -> Vec<u8> {
        let mut h = vec![next, 0];
        h.extend_from_slice(&((offset_units << 3) | u16::from(more)).to_be_bytes());
        h.extend_from_slice(&id.to_be_bytes());
        h
    }

    pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut u = sport.to_be_bytes().to_vec();
        u.extend_from_slice(&dport.to_be_bytes());
        u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.extend_from_slice(payload);
        u
    }

    pub fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
        let mut t = sport.to_be_bytes().to_vec();
        t.extend_from_slice(&dport.to_be_bytes());
        t.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        t
    }

    pub fn icmp_echo(ty: u8, ident: u16) -> Vec<u8> {
        let mut i = vec![ty, 0, 0, 0];
        i.extend_from_slice(&ident.to_be_bytes());
        i.extend_from_slice(&[0, 1, b'p', b'i', b'n', b'g']);
        let c = csum(&i);
        i[2..4].copy_from_slice(&c.to_be_bytes());
        i
    }

    pub fn arp_request(sha: [u8; 6], spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
        let mut a = vec![0, 1, 0x08, 0x00, 6, 4, 0, 1];
        a.extend_from_slice(&sha);
        a.extend_from_slice(&spa);
        a.extend_from_slice(&[0; 6]);
        a.extend_from_slice(&tpa);
        eth([0xff; 6], sha, 0x0806, &a)
    }

    pub fn neighbor_solicit(src: [u8; 16], target: [u8; 16], mac: [u8; 6]) -> Vec<u8> {
        let mut ns = vec![135, 0, 0, 0, 0, 0, 0, 0];
        ns.extend_from_slice(&target);
        ns.extend_from_slice(&[1, 1]);
        ns.extend_from_slice(&mac);
        let mut snm = v6("ff02::1:ff00:0");
        snm[13..].copy_from_slice(&target[13..]);
        let ip = ipv6(src, snm, 58, &ns);
        eth([0x33, 0x33, 0xff, target[13], target[14], target[15]], mac, 0x86dd, &ip)
    }

    /// A fabric frame from 10.10.0.2 to the vRouter, UDP to `dport` carrying `payload`.
    pub fn fabric_udp(dport: u16, payload: &[u8]) -> Vec<u8> {
        let ip = ipv4([10, 10, 0, 2], [10, 10, 0, 1], 17, 7, 0x4000, &[], &udp(49152, dport, payload));
        eth(FABRIC_VIF, PEER, 0x0800, &ip)
    }

    pub fn mplsoudp(label: u32, inner: &[u8]) -> Vec<u8> {
        let mut p = ((label << 12) | 0x100 | 64).to_be_bytes().to_vec();
        p.extend_from_slice(inner);
        fabric_udp(6635, &p)
    }

    pub fn vxlan(vni: u32, inner_frame: &[u8]) -> Vec<u8> {
        let mut p = vec![0x08, 0, 0, 0];
        p.extend_from_slice(&(vni << 8).to_be_bytes());
        p.extend_from_slice(inner_frame);
        fabric_udp(4789, &p)
    }
}

/// A named input: `(sel, frame)` records.
type Seed = (&'static str, Vec<(u8, Vec<u8>)>);

/// The seed corpus: valid frames of each kind, alone or in short sequences.
fn seeds() -> Vec<Seed> {
    use build::*;
    let (v61, v62, v6r) = (v6("fd01::3"), v6("fd01::4"), v6("fd02::10"));
    let vm1_v4 =
        |dst: [u8; 4], proto: u8, l4: Vec<u8>| eth(GW, VM1_MAC, 0x0800, &ipv4(VM1, dst, proto, 1, 0x4000, &[], &l4));
    let vm1_v6 = |dst: [u8; 16], nh: u8, body: Vec<u8>| eth(GW, VM1_MAC, 0x86dd, &ipv6(v61, dst, nh, &body));
    let cat = |a: Vec<u8>, b: Vec<u8>| [a, b].concat();
    let dns = udp(40000, 53, b"\x12\x34\x01\x00\x00\x01");
    vec![
        (
            "ipv4-udp-vm1-vm2-and-reply",
            vec![
                (1, vm1_v4(VM2, 17, udp(40000, 5353, b"hello"))),
                (2, eth(VM2_VIF, VM2_MAC, 0x0800, &ipv4(VM2, VM1, 17, 2, 0x4000, &[], &udp(5353, 40000, b"olleh")))),
            ],
        ),
        ("ipv4-udp-dns-denied", vec![(1, vm1_v4(VM2, 17, dns.clone())), (1, vm1_v4(VM2, 17, dns.clone()))]),
        ("ipv4-udp-dns-remote-denied", vec![(1, vm1_v4([192, 168, 2, 7], 17, dns.clone()))]),
        ("ipv4-tcp-dns-denied", vec![(1, vm1_v4([8, 8, 8, 8], 6, tcp(40001, 53, 0x02)))]),
        (
            "ipv4-tcp-vm2-http-allowed",
            vec![
                (1, vm1_v4(VM2, 6, tcp(40002, 80, 0x02))),
                (2, eth(VM2_VIF, VM2_MAC, 0x0800, &ipv4(VM2, VM1, 6, 3, 0x4000, &[], &tcp(80, 40002, 0x12)))),
            ],
        ),
        ("ipv4-tcp-vm2-ssh-sg-denied", vec![(1, vm1_v4(VM2, 6, tcp(40003, 22, 0x02)))]),
        (
            "ipv4-icmp-echo",
            vec![(1, vm1_v4(VM2, 1, icmp_echo(8, 0x77))), (1, vm1_v4([192, 168, 3, 1], 1, icmp_echo(8, 0x78)))],
        ),
        (
            "ipv4-options-udp-dns",
            vec![(1, eth(GW, VM1_MAC, 0x0800, &ipv4(VM1, VM2, 17, 4, 0, &[0x94, 4, 0, 0], &dns)))],
        ),
        (
            "ipv4-fragments-udp-dns",
            vec![
                (
                    1,
                    eth(
                        GW,
                        VM1_MAC,
                        0x0800,
                        &ipv4(VM1, VM2, 17, 0x77, 0x2000, &[], &udp(40000, 53, &[0xab; 16])[..16]),
                    ),
                ),
                (1, eth(GW, VM1_MAC, 0x0800, &ipv4(VM1, VM2, 17, 0x77, 2, &[], &[0xcd; 16]))),
            ],
        ),
        (
            "ipv4-later-fragment-alone",
            vec![(1, eth(GW, VM1_MAC, 0x0800, &ipv4(VM1, VM2, 17, 0x78, 5, &[], &[0xcd; 24])))],
        ),
        ("ipv6-udp-dns-denied", vec![(1, vm1_v6(v62, 17, dns.clone()))]),
        ("ipv6-udp-allowed-remote", vec![(1, vm1_v6(v6r, 17, udp(40000, 5353, b"x")))]),
        ("ipv6-tcp-vm2-ssh-sg-denied", vec![(1, vm1_v6(v62, 6, tcp(40004, 22, 0x02)))]),
        ("ipv6-hop-by-hop-udp-dns", vec![(1, vm1_v6(v6r, 0, cat(ext(17, 0), dns.clone())))]),
        ("ipv6-routing-udp-dns", vec![(1, vm1_v6(v6r, 43, cat(ext(17, 43), dns.clone())))]),
        ("ipv6-dest-options-tcp-dns", vec![(1, vm1_v6(v6r, 60, cat(ext(6, 60), tcp(40005, 53, 0x02))))]),
        (
            "ipv6-fragments-udp-dns",
            vec![
                (1, vm1_v6(v6r, 44, cat(frag6(17, 0, true, 0x99), udp(40000, 53, &[0xab; 16])[..16].to_vec()))),
                (1, vm1_v6(v6r, 44, cat(frag6(17, 2, false, 0x99), vec![0xcd; 16]))),
            ],
        ),
        (
            "ipv6-hbh-frag-dest-chain-udp",
            vec![(1, vm1_v6(v6r, 0, [ext(44, 0), frag6(60, 0, false, 0x9a), ext(17, 60), dns.clone()].concat()))],
        ),
        ("ipv6-icmp-echo", vec![(1, vm1_v6(v62, 58, icmp_echo(128, 0x79)))]),
        (
            "arp-request",
            vec![(1, arp_request(VM1_MAC, VM1, VM2)), (0, arp_request(PEER, [10, 10, 0, 2], [10, 10, 0, 1]))],
        ),
        ("nd-solicit", vec![(1, neighbor_solicit(v61, v62, VM1_MAC))]),
        ("mplsoudp-to-vm1", vec![(0, mplsoudp(17, &ipv4(REMOTE, VM1, 17, 5, 0x4000, &[], &udp(40000, 5353, b"in"))))]),
        ("mplsoudp-dns-to-vm1-denied", vec![(0, mplsoudp(17, &ipv4(REMOTE, VM1, 17, 6, 0x4000, &[], &dns)))]),
        ("mplsoudp-ipv6-tcp-to-vm2", vec![(0, mplsoudp(18, &ipv6(v6r, v62, 6, &tcp(40006, 8080, 0x02))))]),
        (
            "vxlan-routed-dns-to-vm1",
            vec![(0, vxlan(5001, &eth(GW, [2, 0, 0, 0, 2, 9], 0x0800, &ipv4(REMOTE, VM1, 17, 8, 0x4000, &[], &dns))))],
        ),
        (
            "vxlan-bridged-to-vm1",
            vec![(
                0,
                vxlan(
                    5001,
                    &eth(
                        VM1_MAC,
                        [2, 0, 0, 0, 2, 9],
                        0x0800,
                        &ipv4(REMOTE, VM1, 17, 9, 0x4000, &[], &udp(1, 2, b"l2")),
                    ),
                ),
            )],
        ),
        (
            "vxlan-bridged-dns-to-vm1",
            vec![(
                0,
                vxlan(5001, &eth(VM1_MAC, [2, 0, 0, 0, 2, 9], 0x0800, &ipv4(REMOTE, VM1, 17, 11, 0x4000, &[], &dns))),
            )],
        ),
        (
            "l2-bridged-udp-dns-vm1-to-vm2",
            vec![(1, eth(VM2_MAC, VM1_MAC, 0x0800, &ipv4(VM1, VM2, 17, 10, 0x4000, &[], &dns)))],
        ),
        ("ipv4-udp-low-headroom-tunnel", vec![(0x81, vm1_v4([192, 168, 2, 7], 17, udp(40000, 5353, b"t")))]),
    ]
}

fn corpus_dir() -> PathBuf {
    fuzz_dir().join("corpus/pipeline")
}

#[test]
fn seed_corpus_is_current() {
    let dir = corpus_dir();
    let update = std::env::var("UPDATE_FUZZ_SEEDS").is_ok_and(|v| v == "1");
    if update {
        std::fs::create_dir_all(&dir).unwrap();
    }
    let mut stale = Vec::new();
    for (name, frames) in seeds() {
        let path = dir.join(format!("seed-{name}"));
        let bytes = encode(&frames);
        if update {
            std::fs::write(&path, &bytes).unwrap();
        } else if std::fs::read(&path).ok().as_deref() != Some(&bytes[..]) {
            stale.push(path.display().to_string());
        }
    }
    assert!(stale.is_empty(), "seed files missing or out of date (UPDATE_FUZZ_SEEDS=1 to rewrite): {stale:?}");
}

/// Every committed input (seeds, inputs the fuzzer added, minimized regressions) passes
/// every invariant with the oracle parts the environment selects.
#[test]
fn committed_inputs_replay_clean() {
    let o = Oracle::from_env();
    let mut files = Vec::new();
    for d in [corpus_dir(), fuzz_dir().join("regressions")] {
        if let Ok(rd) = std::fs::read_dir(&d) {
            files.extend(rd.map(|e| e.unwrap().path()).filter(|p| p.is_file() && !p.ends_with("README.md")));
        }
    }
    files.sort();
    assert!(files.len() >= seeds().len(), "corpus missing: {} files", files.len());
    let mut failures = Vec::new();
    let (mut frames, mut judged, mut held, mut copies) = (0, 0, 0, 0);
    for f in &files {
        match harness::run(&std::fs::read(f).unwrap(), o) {
            Ok(r) => {
                frames += r.frames;
                judged += r.judged;
                held += r.held;
                copies += r.mirror_copies;
            }
            Err(e) => failures.push(format!("{}: {e}", f.display())),
        }
    }
    eprintln!("{} inputs, {frames} frames, {held} held and re-run, {judged} judged by the deny oracle, {copies} mirror copies ({o:?})", files.len());
    assert!(failures.is_empty(), "{} of {} inputs fail:\n{}", failures.len(), files.len(), failures.join("\n"));
    // The seeds exercise what the invariants are about.
    assert!(held > 0 && judged > 0 && copies > 0, "held {held}, judged {judged}, copies {copies}");
}

fn judged(frames: &[(u8, Vec<u8>)], o: Oracle) -> Vec<bool> {
    let mut st = oracle::State::default();
    frames
        .iter()
        .map(|(sel, f)| {
            let vif = match sel & 3 {
                0 => 0,
                2 => 2,
                _ => 1,
            };
            let j = oracle::judge(&mut st, vif, f, o).is_some();
            // As if every frame reached a verdict (a judged one: dropped by its flow).
            oracle::settled(&mut st, vif, f, true, j);
            oracle::record(&mut st, vif, f);
            j
        })
        .collect()
}

fn seed(name: &str) -> Vec<(u8, Vec<u8>)> {
    seeds().into_iter().find(|(n, _)| *n == name).unwrap().1
}

/// The oracle judges what it should, and only that.
#[test]
fn oracle_judges_denied_frames_only() {
    let base = Oracle { frag_ext: false, l2: false };
    let full = Oracle { frag_ext: true, l2: true };
    for (name, want_base, want_full) in [
        ("ipv4-udp-dns-denied", vec![true, true], vec![true, true]),
        ("ipv4-tcp-dns-denied", vec![true], vec![true]),
        ("ipv4-udp-vm1-vm2-and-reply", vec![false, false], vec![false, false]),
        ("ipv4-tcp-vm2-http-allowed", vec![false, false], vec![false, false]),
        ("ipv4-tcp-vm2-ssh-sg-denied", vec![true], vec![true]),
        ("ipv4-options-udp-dns", vec![true], vec![true]),
        ("ipv4-fragments-udp-dns", vec![false, false], vec![true, true]),
        ("ipv4-later-fragment-alone", vec![false], vec![false]),
        ("ipv6-udp-dns-denied", vec![true], vec![true]),
        ("ipv6-tcp-vm2-ssh-sg-denied", vec![true], vec![true]),
        ("ipv6-hop-by-hop-udp-dns", vec![false], vec![true]),
        ("ipv6-routing-udp-dns", vec![false], vec![true]),
        ("ipv6-dest-options-tcp-dns", vec![false], vec![true]),
        ("ipv6-fragments-udp-dns", vec![false, false], vec![true, true]),
        ("ipv6-hbh-frag-dest-chain-udp", vec![false], vec![true]),
        ("mplsoudp-dns-to-vm1-denied", vec![true], vec![true]),
        ("mplsoudp-to-vm1", vec![false], vec![false]),
        ("mplsoudp-ipv6-tcp-to-vm2", vec![true], vec![true]),
        ("vxlan-routed-dns-to-vm1", vec![true], vec![true]),
        ("l2-bridged-udp-dns-vm1-to-vm2", vec![false], vec![true]),
        ("vxlan-bridged-dns-to-vm1", vec![false], vec![true]),
        ("vxlan-bridged-to-vm1", vec![false], vec![false]),
        ("arp-request", vec![false, false], vec![false, false]),
    ] {
        let s = seed(name);
        assert_eq!(judged(&s, base), want_base, "{name} (base oracle)");
        assert_eq!(judged(&s, full), want_full, "{name} (full oracle)");
    }
    // The SG's stateful exception: vm2 answering from port 22 first lets vm1's TCP to port
    // 22 through (the reverse of an allowed flow), so the oracle does not judge it.
    let mut s = vec![(
        2u8,
        build::eth(
            build::VM2_VIF,
            build::VM2_MAC,
            0x0800,
            &build::ipv4(build::VM2, build::VM1, 6, 1, 0x4000, &[], &build::tcp(22, 40003, 0x02)),
        ),
    )];
    s.extend(seed("ipv4-tcp-vm2-ssh-sg-denied"));
    assert_eq!(judged(&s, base), vec![false, false]);
}
