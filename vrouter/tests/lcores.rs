//! Forwarding on several lcores through the real vRouter binary: two and three forwarding
//! lcores mapped onto CPUs 0 and 1 (`[eal] forwarding_cpus`, EAL `--lcores`), every port
//! with one RX queue per lcore (one `rx_pcap` each) and one TX queue per lcore (one
//! `tx_pcap` each).
//!
//! Every input frame has a known fate: sent on a vif as a known frame, or dropped for a
//! known reason, plus the mirror copies it makes. The test knows which lcore polls each RX
//! queue (the plan the vRouter prints, checked against the least-loaded assignment), so it
//! checks each lcore on its own: RX per vif, drops per reason, TX per vif, mirror counters,
//! and the frames on that lcore's TX queue of each port, byte for byte. Every flow's packet,
//! byte and mirror counters are checked against the input, and both directions of every
//! flow are linked. Cases: many flows whose packets spread over every lcore, flows whose two
//! directions enter on different lcores, drops for several reasons on every lcore, and
//! interface and flow mirroring on every lcore; and, over veth pairs where the test decides
//! when each direction arrives, a flow set up for one lcore and then hit on another.

mod common;
use common::*;
use flow_table::{Action, FlowSnapshot, FlowTableReader};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;
use vrouter::drop_reason::{DropReason, DROP_REASON_COUNT};
use vrouter::stats::StatsReader;

/// vifs of the standard topology: 0 fabric, 1 vm1, 2 vm2.
const VIFS: usize = 3;
const VM_MACS: [&str; 3] = ["", VM1_MAC, VM2_MAC];
const VM_IPS: [&str; 3] = ["", "192.168.1.3", "192.168.1.4"];
/// Labels the fabric sends to reach vm1 and vm2.
const VM_LABELS: [u32; 3] = [0, 17, 18];

const UDP: u8 = 17;
const TCP: u8 = 6;

/// A flow's 5-tuple (all flows here are IPv4 in VRF 1).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Hash)]
struct Tuple {
    proto: u8,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
}

impl Tuple {
    fn reverse(self) -> Tuple {
        Tuple { proto: self.proto, src: self.dst, dst: self.src, sport: self.dport, dport: self.sport }
    }

    fn of(f: &FlowSnapshot) -> Option<Tuple> {
        match (f.key.src_ip(), f.key.dst_ip()) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                Some(Tuple { proto: f.key.proto(), src, dst, sport: f.key.sport(), dport: f.key.dport() })
            }
            _ => None,
        }
    }

    /// The IPv4 packet of this tuple (TCP: ACK|PSH, no connection opening or closing,
    /// so no packet changes the flow's TCP state).
    fn ip(self, ttl: u8, payload: &[u8]) -> Vec<u8> {
        match self.proto {
            UDP => ipv4_udp(self.src, self.dst, ttl, self.sport, self.dport, payload),
            TCP => ipv4_tcp(self.src, self.dst, ttl, self.sport, self.dport, 0x18, payload),
            p => panic!("protocol {p}"),
        }
    }
}

fn ipv4_tcp(src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut tcp = vec![0u8; 20];
    tcp[0..2].copy_from_slice(&sport.to_be_bytes());
    tcp[2..4].copy_from_slice(&dport.to_be_bytes());
    tcp[4..8].copy_from_slice(&1000u32.to_be_bytes());
    tcp[8..12].copy_from_slice(&2000u32.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = flags;
    tcp[14..16].copy_from_slice(&8192u16.to_be_bytes());
    tcp.extend_from_slice(payload);
    let mut pseudo = 0u32;
    for w in src.octets().chunks(2).chain(dst.octets().chunks(2)) {
        pseudo += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    pseudo += 6 + tcp.len() as u32;
    let c = csum(&tcp, pseudo);
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    let mut ip = ipv4_hdr(src, dst, 6, ttl, tcp.len(), true);
    ip.extend_from_slice(&tcp);
    ip
}

/// What must become of an input frame.
#[derive(Clone, Debug)]
enum Fate {
    /// Sent on vif `.0` as exactly these bytes.
    Out(usize, Vec<u8>),
    Drop(DropReason),
}

/// One input frame: the vif and RX queue it arrives on, what must become of it, the flow
/// it counts on (tuple, IP length) if any, and the mirror copies it must make: one per VNI
/// listed, each the frame as received in VXLAN to an analyzer, on the fabric's TX queue of
/// the lcore that received it.
struct Pkt {
    vif: usize,
    queue: usize,
    frame: Vec<u8>,
    fate: Fate,
    flow: Option<(Tuple, u64)>,
    copies: Vec<u32>,
}

/// A packet from VM `vm` (1 or 2) with tuple `t`, routed by the vRouter: to the other VM
/// (TTL decremented, the VM's L2 header) or to a remote host behind 10.10.0.2 (MPLSoUDP,
/// label 40).
fn from_vm(vm: usize, queue: usize, t: Tuple, payload: &[u8]) -> Pkt {
    assert_eq!(t.src, ip4(VM_IPS[vm]));
    let ip = t.ip(64, payload);
    let frame = eth(mac(ROUTER_MAC), mac(VM_MACS[vm]), 0x0800, &ip);
    let routed = decrement_ttl_v4(&ip);
    let fate = match (1..VIFS).find(|&v| ip4(VM_IPS[v]) == t.dst) {
        Some(to) => Fate::Out(to, eth(mac(VM_MACS[to]), mac(ROUTER_MAC), 0x0800, &routed)),
        None => {
            assert_eq!(t.dst.octets()[..3], [192, 168, 2], "a remote host behind 10.10.0.2");
            let sport = flow_table::tunnel_source_port(flow_table::flow_hash_v4(
                u32::from(t.src),
                u32::from(t.dst),
                t.proto,
                t.sport,
                t.dport,
            ));
            let mut payload = mpls(40, 64).to_vec();
            payload.extend_from_slice(&routed);
            let tunnel =
                tunnel_outer(mac(GW_MAC), mac(FABRIC_MAC), ip4("10.10.0.1"), ip4("10.10.0.2"), sport, 6635, &payload);
            Fate::Out(0, tunnel)
        }
    };
    Pkt { vif: vm, queue, frame, fate, flow: Some((t, ip.len() as u64)), copies: Vec::new() }
}

/// A packet from the remote host `t.src` (behind 10.10.0.2) to VM `t.dst`, MPLSoUDP with
/// the VM's label: decapsulated and sent to the VM unchanged under its L2 header.
fn from_fabric(queue: usize, t: Tuple, payload: &[u8]) -> Pkt {
    let vm = (1..VIFS).find(|&v| ip4(VM_IPS[v]) == t.dst).expect("to a local VM");
    let inner = t.ip(63, payload);
    let mut mp = mpls(VM_LABELS[vm], 64).to_vec();
    mp.extend_from_slice(&inner);
    let frame = tunnel_outer(mac(FABRIC_MAC), mac(GW_MAC), ip4("10.10.0.2"), ip4("10.10.0.1"), 50000, 6635, &mp);
    let fate = Fate::Out(vm, eth(mac(VM_MACS[vm]), mac(ROUTER_MAC), 0x0800, &inner));
    Pkt { vif: 0, queue, frame, fate, flow: Some((t, inner.len() as u64)), copies: Vec::new() }
}

/// A frame dropped for `reason` without a flow.
fn dropped(vif: usize, queue: usize, frame: Vec<u8>, reason: DropReason) -> Pkt {
    Pkt { vif, queue, frame, fate: Fate::Drop(reason), flow: None, copies: Vec::new() }
}

fn udp(src: &str, sport: u16, dst: &str, dport: u16) -> Tuple {
    Tuple { proto: UDP, src: ip4(src), dst: ip4(dst), sport, dport }
}

fn tcp(src: &str, sport: u16, dst: &str, dport: u16) -> Tuple {
    Tuple { proto: TCP, src: ip4(src), dst: ip4(dst), sport, dport }
}

/// A payload of `n` bytes that differs per packet.
fn payload(seed: usize, n: usize) -> Vec<u8> {
    (0..n).map(|i| (seed * 31 + i) as u8).collect()
}

/// The RX queue plan the vRouter must make ([`vrouter::datapath::assign_rx_queues`]: in
/// vif order then queue order, each queue to the lcore with the fewest so far, ties to the
/// lowest index): lcore index of each (vif, queue).
fn expected_plan(queues: [usize; VIFS], lcores: usize) -> BTreeMap<(usize, usize), usize> {
    let mut load = vec![0usize; lcores];
    let mut plan = BTreeMap::new();
    for (v, &n) in queues.iter().enumerate() {
        for q in 0..n {
            let l = (0..lcores).min_by_key(|&l| (load[l], l)).unwrap();
            load[l] += 1;
            plan.insert((v, q), l);
        }
    }
    plan
}

/// The plan the vRouter printed (`vrouter: lcore 2 (CPU 0) polls vif0/1 q0, vif0/2 q1`):
/// lcore index (forwarding lcore ids are 1..=n) of each (vif, queue), and the CPU of each
/// lcore index.
fn printed_plan(stdout: &str) -> (BTreeMap<(usize, usize), usize>, BTreeMap<usize, u32>) {
    let mut plan = BTreeMap::new();
    let mut cpus = BTreeMap::new();
    for line in stdout.lines() {
        let Some(rest) = line.strip_prefix("vrouter: lcore ") else { continue };
        let (id, rest) = rest.split_once(" (CPU ").unwrap_or_else(|| panic!("plan line {line:?}"));
        let (cpu, queues) = rest.split_once(") polls").unwrap_or_else(|| panic!("plan line {line:?}"));
        let index = id.parse::<usize>().unwrap() - 1;
        cpus.insert(index, cpu.parse().unwrap());
        for q in queues.split(',').map(str::trim).filter(|q| !q.is_empty()) {
            let (vif, queue) = q.strip_prefix("vif0/").and_then(|q| q.split_once(" q")).expect("vif0/N qM");
            plan.insert((vif.parse().unwrap(), queue.parse().unwrap()), index);
        }
    }
    (plan, cpus)
}

/// CPUs of the forwarding lcores: alternately 1 and 0, so two lcores run on two CPUs and a
/// third shares CPU 1 with the first.
fn cpus_for(lcores: usize) -> Vec<u32> {
    (0..lcores).map(|i| if i % 2 == 0 { 1 } else { 0 }).collect()
}

/// The configuration edit: `lcores` forwarding lcores (ids 1..=n) on [`cpus_for`], the main
/// lcore on CPU 0, a small flow table, and room for every packet of a flow to wait in HOLD
/// on one lcore.
fn with_lcores(cfg: String, lcores: usize) -> String {
    let ids: Vec<String> = (1..=lcores).map(|i| i.to_string()).collect();
    let cpus: Vec<String> = cpus_for(lcores).iter().map(u32::to_string).collect();
    let eal = format!("forwarding_cores = [{}]\nforwarding_cpus = [{}]\nmain_cpu = 0", ids.join(", "), cpus.join(", "));
    assert_eq!(cfg.matches("forwarding_cores = [1]").count(), 1);
    format!(
        "{}\n[flow]\nentries = 4096\nheld_packets_per_flow = {MAX_HELD}\n",
        cfg.replacen("forwarding_cores = [1]", &eal, 1)
    )
}

/// Most packets of one flow direction a case puts on one lcore: all may wait in HOLD there
/// at once (the pcap devices deliver everything before the agent sets the flow up), and
/// none may be dropped for want of room, or the fate of a packet would depend on timing.
const MAX_HELD: usize = 16;

/// What a checked run leaves for further assertions.
struct Checked {
    /// Frames received per lcore index (its stats block, all vifs).
    rx_per_lcore: Vec<u64>,
    /// Frames sent per lcore index (its stats block, all vifs).
    tx_per_lcore: Vec<u64>,
    /// Lcore index of each (vif, RX queue).
    plan: BTreeMap<(usize, usize), usize>,
    /// Flows by tuple.
    flows: HashMap<Tuple, FlowSnapshot>,
    stats: StatsReader,
    out: Outcome,
}

/// Runs `pkts` through the vRouter on `lcores` forwarding lcores (every vif with one RX and
/// one TX queue per lcore) and checks everything the input determines: the plan, per lcore
/// RX/TX/drops and TX queue contents, mirror copies and counters, the totals, and every
/// flow's counters and pair. `edit` adds to the topology (policies, analyzers); `denied`:
/// tuples whose flows its policy drops.
fn run_case(lcores: usize, pkts: &[Pkt], edit: &dyn Fn(String) -> String, denied: &[Tuple]) -> Checked {
    let queues = [lcores; VIFS];
    let mut inputs = Inputs { tx_queues: queues, ..Default::default() };
    for v in 0..VIFS {
        inputs.more_rx[v] = vec![Vec::new(); lcores - 1];
    }
    for p in pkts {
        assert!(p.queue < lcores, "queue {} of {lcores}", p.queue);
        match (p.vif, p.queue) {
            (0, 0) => inputs.fabric.push(p.frame.clone()),
            (1, 0) => inputs.vm1.push(p.frame.clone()),
            (2, 0) => inputs.vm2.push(p.frame.clone()),
            (v, q) => inputs.more_rx[v][q - 1].push(p.frame.clone()),
        }
    }
    let started = Instant::now();
    let out = run_with(inputs, |c| with_lcores(edit(c), lcores));
    eprintln!("{lcores} lcores, {} packets: {:.1} s", pkts.len(), started.elapsed().as_secs_f64());

    // The plan: every queue polled, by the lcore the least-loaded assignment gives it, each
    // lcore on its configured CPU.
    let (plan, cpus) = printed_plan(&out.stdout);
    assert_eq!(plan, expected_plan(queues, lcores), "{}", out.stdout);
    let want_cpus: BTreeMap<usize, u32> = cpus_for(lcores).into_iter().enumerate().collect();
    assert_eq!(cpus, want_cpus, "{}", out.stdout);

    // Ground truth per lcore.
    let mut rx = vec![[(0u64, 0u64); VIFS]; lcores];
    let mut tx = vec![[(0u64, 0u64); VIFS]; lcores];
    let mut drops = vec![[0u64; DROP_REASON_COUNT]; lcores];
    let mut vif_drops = vec![[[0u64; DROP_REASON_COUNT]; VIFS]; lcores];
    let mut frames_out: Vec<[Vec<Vec<u8>>; VIFS]> = vec![Default::default(); lcores];
    let mut per_flow: HashMap<Tuple, (u64, u64)> = HashMap::new();
    let mut held_per_lcore: HashMap<(Tuple, usize), usize> = HashMap::new();
    // Mirror copies per lcore: (VNI, inner frame), and per flow: (copies, bytes) by VNI.
    let mut copies: Vec<Vec<(u32, Vec<u8>)>> = vec![Vec::new(); lcores];
    let mut flow_copies: HashMap<(Tuple, u32), (u64, u64)> = HashMap::new();
    for p in pkts {
        let l = plan[&(p.vif, p.queue)];
        for &vni in &p.copies {
            let len = (COPY_HEADERS + p.frame.len()) as u64;
            copies[l].push((vni, p.frame.clone()));
            tx[l][0].0 += 1;
            tx[l][0].1 += len;
            if let Some((t, _)) = p.flow {
                let c = flow_copies.entry((t, vni)).or_default();
                c.0 += 1;
                c.1 += len;
            }
        }
        rx[l][p.vif].0 += 1;
        rx[l][p.vif].1 += p.frame.len() as u64;
        match &p.fate {
            Fate::Out(v, f) => {
                tx[l][*v].0 += 1;
                tx[l][*v].1 += f.len() as u64;
                frames_out[l][*v].push(f.clone());
            }
            Fate::Drop(r) => {
                drops[l][r.index()] += 1;
                vif_drops[l][p.vif][r.index()] += 1;
            }
        }
        if let Some((t, len)) = p.flow {
            let c = per_flow.entry(t).or_default();
            c.0 += 1;
            c.1 += len;
            let n = held_per_lcore.entry((t, l)).or_default();
            *n += 1;
            assert!(*n <= MAX_HELD, "the case puts more than {MAX_HELD} packets of {t:?} on lcore {l}");
        }
    }

    // Per lcore: RX and TX per vif, drops per reason (globally and per vif), and the frames
    // on the lcore's own TX queue of every port.
    let stats = StatsReader::open(&out.run_dir).unwrap();
    assert_eq!(stats.n_lcores(), lcores);
    for l in 0..lcores {
        for v in 0..VIFS {
            let c = stats.vif_counters(v as u16, Some(l));
            assert_eq!((c.rx_packets, c.rx_bytes), rx[l][v], "lcore {l} vif {v} RX");
            assert_eq!((c.tx_packets, c.tx_bytes), tx[l][v], "lcore {l} vif {v} TX");
            assert_eq!(stats.vif_drops(v as u16, Some(l)), vif_drops[l][v], "lcore {l} vif {v} drops");
            let (mirrored, mut got): (Vec<Vec<u8>>, Vec<Vec<u8>>) =
                out.tx_by_queue[v][l].iter().cloned().partition(|f| v == 0 && copy_of(f).is_some());
            let mut got_copies: Vec<(u32, Vec<u8>)> = mirrored.iter().filter_map(|f| copy_of(f)).collect();
            got_copies.sort();
            let mut want_copies = if v == 0 { copies[l].clone() } else { Vec::new() };
            want_copies.sort();
            assert!(
                got_copies == want_copies,
                "lcore {l}: {} mirror copies, {} expected",
                got_copies.len(),
                want_copies.len()
            );
            got.sort();
            let mut want = frames_out[l][v].clone();
            want.sort();
            assert!(got == want, "lcore {l}: TX queue {l} of vif {v}: {} frames, {} expected", got.len(), want.len());
        }
        assert_eq!(drops_list(&stats.drops(Some(l))), drops_list(&drops[l]), "lcore {l} drops");
        let lc = stats.lcore_counters(Some(l));
        assert_eq!(lc.icmp_errors_sent, 0);
        let copy_bytes: u64 = copies[l].iter().map(|(_, f)| (COPY_HEADERS + f.len()) as u64).sum();
        assert_eq!(
            (lc.mirror_packets, lc.mirror_bytes, lc.mirror_errors),
            (copies[l].len() as u64, copy_bytes, 0),
            "lcore {l} mirror counters"
        );
    }
    out.assert_accounted(pkts.len() as u64);

    // Every flow: both directions present and linked, counters as the input says, the
    // verdict as the policy says; and no other flow.
    let reader = FlowTableReader::open_run_dir(&out.run_dir).expect("flow table");
    let mut flows: HashMap<Tuple, FlowSnapshot> = HashMap::new();
    for f in reader.iter_active() {
        let t = Tuple::of(&f).unwrap_or_else(|| panic!("unexpected flow {f:?}"));
        assert_eq!(f.key.vrf(), 1, "{f:?}");
        assert!(flows.insert(t, f).is_none(), "two flows for {t:?}");
    }
    let mut want_flows: Vec<Tuple> = per_flow.keys().flat_map(|&t| [t, t.reverse()]).collect();
    want_flows.sort();
    want_flows.dedup();
    let mut got_flows: Vec<Tuple> = flows.keys().copied().collect();
    got_flows.sort();
    assert_eq!(got_flows, want_flows, "the flows in the table");
    for (t, f) in &flows {
        let want = per_flow.get(t).copied().unwrap_or_default();
        assert_eq!((f.packets, f.bytes), want, "counters of {t:?}");
        let r = &flows[&t.reverse()];
        assert_eq!((f.rflow, r.rflow), (Some(r.index), Some(f.index)), "{t:?} and its reverse are not linked");
        let deny = denied.iter().any(|d| *d == *t || d.reverse() == *t);
        assert_eq!(f.action, if deny { Action::Drop } else { Action::Forward }, "{t:?}");
        let fc = flow_copies.get(&(*t, FLOW_MIRROR_VNI)).copied().unwrap_or_default();
        assert_eq!((f.mirror_packets, f.mirror_bytes), fc, "flow mirror counters of {t:?}");
    }

    let sum = |l: usize, f: fn(&vrouter::stats::VifCounters) -> u64| {
        (0..VIFS).map(|v| f(&stats.vif_counters(v as u16, Some(l)))).sum()
    };
    let rx_per_lcore = (0..lcores).map(|l| sum(l, |c| c.rx_packets)).collect();
    let tx_per_lcore = (0..lcores).map(|l| sum(l, |c| c.tx_packets)).collect();
    Checked { rx_per_lcore, tx_per_lcore, plan, flows, stats, out }
}

/// Outer Ethernet, IPv4, UDP and VXLAN headers of a mirror copy to an analyzer without the
/// Juniper header.
const COPY_HEADERS: usize = 50;
/// The VNIs of the analyzers of [`MIRRORS`]: interface mirroring and flow mirroring.
const IF_MIRROR_VNI: u32 = 50;
const FLOW_MIRROR_VNI: u32 = 60;

/// A mirror copy among the frames a fabric port sent (VXLAN to an analyzer in
/// 10.20.0.0/24): its VNI and the frame inside.
fn copy_of(f: &[u8]) -> Option<(u32, Vec<u8>)> {
    let to_analyzer = f.len() >= COPY_HEADERS
        && f[12..14] == [0x08, 0x00]
        && f[23] == 17
        && f[30..33] == [10, 20, 0]
        && f[36..38] == 4789u16.to_be_bytes();
    to_analyzer.then(|| (u32::from_be_bytes([0, f[46], f[47], f[48]]), f[COPY_HEADERS..].to_vec()))
}

/// Non-zero drop counters by reason name (readable in a failure).
fn drops_list(d: &[u64; DROP_REASON_COUNT]) -> Vec<(&'static str, u64)> {
    DropReason::ALL.iter().filter(|r| d[r.index()] > 0).map(|r| (r.name(), d[r.index()])).collect()
}

// ---------------------------------------------------------------- (a) many flows

/// 64 conversations between vm1 and vm2 (UDP and TCP, both directions, each direction's
/// packets spread over the RX queues and so over the lcores) and 16 between the VMs and
/// remote hosts over MPLSoUDP (replies from the fabric's queues).
fn many_flows(lcores: usize) -> Vec<Pkt> {
    let mut convs: Vec<(usize, Tuple, usize, usize)> = Vec::new(); // (from vm, tuple, fwd, rev)
    for i in 0..64usize {
        let (a, b) = if i % 2 == 0 { (1, 2) } else { (2, 1) };
        let sport = 10_000 + i as u16;
        let dport = [80, 443, 5201, 8080][i % 4];
        let t =
            if i % 3 == 0 { tcp(VM_IPS[a], sport, VM_IPS[b], dport) } else { udp(VM_IPS[a], sport, VM_IPS[b], dport) };
        convs.push((a, t, 1 + i % 7, i % 5));
    }
    for i in 0..16usize {
        let vm = 1 + i % 2;
        let remote = format!("192.168.2.{}", 10 + i);
        let t = if i % 4 == 0 {
            tcp(VM_IPS[vm], 20_000 + i as u16, &remote, 22)
        } else {
            udp(VM_IPS[vm], 20_000 + i as u16, &remote, 53)
        };
        convs.push((vm, t, 1 + i % 4, 1 + i % 3));
    }
    // Round robin over the conversations, so the first packets of every flow come early and
    // the rest interleave; packet k of conversation i on queue (i + k) % lcores.
    let mut pkts = Vec::new();
    for k in 0..7 {
        for (i, &(vm, t, fwd, rev)) in convs.iter().enumerate() {
            let q = (i + k) % lcores;
            if k < fwd {
                pkts.push(from_vm(vm, q, t, &payload(i * 8 + k, 10 + (i * 37 + k * 11) % 300)));
            }
            if k < rev {
                let r = t.reverse();
                let body = payload(i * 8 + k + 4, 20 + (i * 13 + k * 7) % 200);
                if r.src.octets()[2] == 2 {
                    pkts.push(from_fabric((q + 1) % lcores, r, &body));
                } else {
                    let back = if vm == 1 { 2 } else { 1 };
                    pkts.push(from_vm(back, (q + 1) % lcores, r, &body));
                }
            }
        }
    }
    pkts
}

fn many_flows_on(lcores: usize) {
    let pkts = many_flows(lcores);
    let c = run_case(lcores, &pkts, &|c| c, &[]);
    assert_eq!(c.flows.len(), 2 * 80, "80 flow pairs");
    // Every lcore received and forwarded a share (each has queues of every vif).
    for l in 0..lcores {
        assert!(c.rx_per_lcore[l] > 50 && c.tx_per_lcore[l] > 50, "lcore {l}: {:?}", (c.rx_per_lcore, c.tx_per_lcore));
        let polls = c.stats.lcore_counters(Some(l)).busy_polls;
        assert!(polls > 0, "lcore {l} never received a burst");
    }
}

#[test]
fn many_flows_on_two_lcores() {
    many_flows_on(2);
}

#[test]
fn many_flows_on_three_lcores() {
    many_flows_on(3);
}

// ---------------------------------------------------------------- (b) one flow, two lcores

/// Conversations whose forward direction enters on one lcore and reverse direction on
/// another: vm1 sends on the queue of lcore A, vm2 answers on the queue of lcore B != A,
/// for every ordered pair (A, B); the reverse packets leave on vm1's TX queue of lcore B,
/// so B forwarded them.
fn split_flow_on(lcores: usize) {
    let plan = expected_plan([lcores; VIFS], lcores);
    let queue_of = |vif: usize, l: usize| plan.iter().find(|(&(v, _), &pl)| v == vif && pl == l).unwrap().0 .1;
    let mut pkts = Vec::new();
    let mut pairs = Vec::new();
    for a in 0..lcores {
        for b in (0..lcores).filter(|&b| b != a) {
            for j in 0..4u16 {
                let proto = if j % 2 == 0 { UDP } else { TCP };
                let sport = 30_000 + (a * 16 + b * 4) as u16 + j;
                let t = Tuple { proto, src: ip4(VM_IPS[1]), dst: ip4(VM_IPS[2]), sport, dport: 7000 + j };
                pairs.push((a, b, t));
            }
        }
    }
    // Forward packets first in each queue, then the replies: 6 forward and 5 reverse per
    // conversation.
    for k in 0..6 {
        for (i, &(a, _, t)) in pairs.iter().enumerate() {
            pkts.push(from_vm(1, queue_of(1, a), t, &payload(i * 16 + k, 40 + k * 30)));
        }
    }
    for k in 0..5 {
        for (i, &(_, b, t)) in pairs.iter().enumerate() {
            pkts.push(from_vm(2, queue_of(2, b), t.reverse(), &payload(i * 16 + 8 + k, 60 + k * 20)));
        }
    }
    let c = run_case(lcores, &pkts, &|c| c, &[]);
    assert_eq!(c.flows.len(), 2 * pairs.len());
    for &(a, b, t) in &pairs {
        assert_ne!(c.plan[&(1, queue_of(1, a))], c.plan[&(2, queue_of(2, b))]);
        let (f, r) = (&c.flows[&t], &c.flows[&t.reverse()]);
        assert_eq!((f.packets, r.packets), (6, 5), "{t:?}");
        assert_eq!((f.action, r.action), (Action::Forward, Action::Forward));
    }
    // Per lcore: vm1 entered only where forward directions were sent, vm2 only where
    // replies were; each lcore forwarded the replies it received to vm1 on its own queue.
    for l in 0..lcores {
        let fwd_here = pairs.iter().filter(|p| p.0 == l).count() as u64;
        let rev_here = pairs.iter().filter(|p| p.1 == l).count() as u64;
        assert_eq!(c.stats.vif_counters(1, Some(l)).rx_packets, 6 * fwd_here, "lcore {l}");
        assert_eq!(c.stats.vif_counters(2, Some(l)).rx_packets, 5 * rev_here, "lcore {l}");
        assert_eq!(c.stats.vif_counters(1, Some(l)).tx_packets, 5 * rev_here, "lcore {l}");
        assert_eq!(c.stats.vif_counters(2, Some(l)).tx_packets, 6 * fwd_here, "lcore {l}");
    }
}

#[test]
fn a_flow_split_over_two_lcores_on_two_lcores() {
    split_flow_on(2);
}

#[test]
fn a_flow_split_over_two_lcores_on_three_lcores() {
    split_flow_on(3);
}

// ---------------------------------------------------------------- (c) drops on every lcore

const DENY_UDP_53: &str = r#"
[[network_policy]]
name = "no-dns"
vns = ["default-domain:demo:vn1"]
[[network_policy.rule]]
uuid = "aaaaaaaa-0000-4000-8000-000000000053"
protocol = "udp"
dst_ports = "53"
action = "deny"
[[network_policy.rule]]
uuid = "aaaaaaaa-0000-4000-8000-0000000000ff"
action = "pass"
"#;

/// On every RX queue (so on every lcore), with counts that differ per queue: frames too
/// short for an Ethernet header (`Pull Fails`), frames to an unknown MAC (`No L2 Route`),
/// spoofed sources (`Invalid Source`), MPLSoUDP with an unknown label from the fabric
/// (`Invalid Label`), and packets of flows the policy denies, each flow's packets on
/// several lcores (`Flow Action Drop`); mixed with forwarded traffic.
fn drops_on(lcores: usize) {
    let mut pkts = Vec::new();
    let mut denied = Vec::new();
    for q in 0..lcores {
        let n = q + 1;
        for i in 0..n + 1 {
            pkts.push(dropped(1 + i % 2, q, vec![0u8; 6 + i], DropReason::PullFails));
        }
        for i in 0..n + 2 {
            let vm = 1 + i % 2;
            let ip = ipv4_udp(ip4(VM_IPS[vm]), ip4(VM_IPS[3 - vm]), 64, 1, 2, b"to nobody");
            pkts.push(dropped(
                vm,
                q,
                eth(mac("02:00:00:00:99:99"), mac(VM_MACS[vm]), 0x0800, &ip),
                DropReason::NoL2Route,
            ));
        }
        for i in 0..2 * n {
            let vm = 1 + i % 2;
            let ip = ipv4_udp(ip4("192.168.1.77"), ip4(VM_IPS[3 - vm]), 64, 9, 9, b"spoofed");
            pkts.push(dropped(vm, q, eth(mac(ROUTER_MAC), mac(VM_MACS[vm]), 0x0800, &ip), DropReason::InvalidSource));
        }
        for i in 0..n + 3 {
            let inner = ipv4_udp(ip4("192.168.2.10"), ip4(VM_IPS[1]), 63, 1, 2, b"bad label");
            let mut mp = mpls(999 + i as u32, 64).to_vec();
            mp.extend_from_slice(&inner);
            let f = tunnel_outer(mac(FABRIC_MAC), mac(GW_MAC), ip4("10.10.0.2"), ip4("10.10.0.1"), 50000, 6635, &mp);
            pkts.push(dropped(0, q, f, DropReason::InvalidLabel));
        }
    }
    // Denied flows from both VMs (forward direction only: the policy denies the flow the
    // first packet opens), each flow's packets over every queue.
    for i in 0..6usize {
        let vm = 1 + i % 2;
        let t = udp(VM_IPS[vm], 40_000 + i as u16, VM_IPS[3 - vm], 53);
        denied.push(t);
        for k in 0..(2 + i) {
            let mut p = from_vm(vm, (i + k) % lcores, t, &payload(i * 10 + k, 16 + k));
            p.fate = Fate::Drop(DropReason::FlowActionDrop);
            pkts.push(p);
        }
    }
    // Forwarded traffic in between: one pair per queue of each VM.
    for q in 0..lcores {
        let t = udp(VM_IPS[1], 41_000 + q as u16, VM_IPS[2], 9000);
        for k in 0..3 {
            pkts.push(from_vm(1, q, t, &payload(q * 7 + k, 64)));
            pkts.push(from_vm(2, (q + 1) % lcores, t.reverse(), &payload(q * 7 + k + 3, 32)));
        }
    }
    // Interleave: a stable shuffle by a fixed key, so drops and forwarded packets mix in
    // every queue while the run stays reproducible.
    let mut keyed: Vec<(u64, Pkt)> =
        pkts.into_iter().enumerate().map(|(i, p)| ((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40, p)).collect();
    keyed.sort_by_key(|(k, _)| *k);
    let pkts: Vec<Pkt> = keyed.into_iter().map(|(_, p)| p).collect();

    let c = run_case(lcores, &pkts, &|c| c + DENY_UDP_53, &denied);
    // Each lcore dropped for every reason (the per-lcore totals were checked exactly).
    for l in 0..lcores {
        let d = c.stats.drops(Some(l));
        for r in [
            DropReason::PullFails,
            DropReason::NoL2Route,
            DropReason::InvalidSource,
            DropReason::InvalidLabel,
            DropReason::FlowActionDrop,
        ] {
            assert!(d[r.index()] > 0, "lcore {l} dropped nothing as {}", r.name());
        }
    }
}

#[test]
fn drops_are_exact_per_lcore_on_two_lcores() {
    drops_on(2);
}

#[test]
fn drops_are_exact_per_lcore_on_three_lcores() {
    drops_on(3);
}

// ---------------------------------------------------------------- (d) mirroring on every lcore

/// Two analyzers behind the fabric gateway, VXLAN without the Juniper header: one for vm1's
/// interface mirroring, one for flows to UDP port 80 (both directions of the pair).
const MIRRORS: &str = r#"
[[nexthop]]
id = 20
type = "encap"
vif = 0
dst_mac = "02:00:00:00:00:02"

[[route]]
vrf = 0
prefix = "10.20.0.0/24"
nexthop = 20

[[analyzer]]
name = "an-if"
ip = "10.20.0.5"
juniper_header = false
vni = 50
index = 1

[[analyzer]]
name = "an-flow"
ip = "10.20.0.6"
juniper_header = false
vni = 60
index = 2

[[network_policy]]
name = "mirror-web"
vns = ["default-domain:demo:vn1"]
[[network_policy.rule]]
uuid = "cccccccc-0000-4000-8000-000000000080"
protocol = "udp"
dst_ports = "80"
action = "pass"
mirror_to = ["an-flow"]
[[network_policy.rule]]
uuid = "cccccccc-0000-4000-8000-0000000000ff"
action = "pass"
"#;

/// Mirroring with the packets of each flow spread over every lcore: vm1's RX mirrored to one
/// analyzer, flows to UDP port 80 (and their replies) to another. Each copy leaves on the
/// fabric TX queue of the lcore that received the packet; per lcore the copies (frame inside
/// byte for byte) and the mirror counters are exact, per flow the mirror counters are, and
/// per analyzer (mirror region) per lcore too.
fn mirroring_on(lcores: usize) {
    let mut pkts = Vec::new();
    for i in 0..12usize {
        let dport = if i % 2 == 0 { 80 } else { 8000 };
        let t = udp(VM_IPS[1], 50_000 + i as u16, VM_IPS[2], dport);
        for k in 0..5 {
            let mut p = from_vm(1, (i + k) % lcores, t, &payload(i * 10 + k, 30 + 40 * k));
            p.copies.push(IF_MIRROR_VNI);
            if dport == 80 {
                p.copies.push(FLOW_MIRROR_VNI);
            }
            pkts.push(p);
        }
        for k in 0..3 {
            let mut p = from_vm(2, (i + k + 1) % lcores, t.reverse(), &payload(i * 10 + 5 + k, 20 + 30 * k));
            if dport == 80 {
                p.copies.push(FLOW_MIRROR_VNI);
            }
            pkts.push(p);
        }
    }
    let edit = |c: String| {
        let vm1 = "vm_uuid = \"5f2a1c3e-0000-4000-8000-000000000001\"";
        assert_eq!(c.matches(vm1).count(), 1);
        c.replacen(vm1, &format!("{vm1}\nmirror_to = \"an-if\"\nmirror_rx = true"), 1) + MIRRORS
    };
    let c = run_case(lcores, &pkts, &edit, &[]);
    // The analyzers' counters in the mirror region, per lcore: what the packets say.
    let m = vrouter::mirror::MirrorReader::open(&c.out.run_dir).unwrap();
    for l in 0..lcores {
        for (index, vni) in [(1, IF_MIRROR_VNI), (2, FLOW_MIRROR_VNI)] {
            let mine: Vec<&Pkt> =
                pkts.iter().filter(|p| c.plan[&(p.vif, p.queue)] == l && p.copies.contains(&vni)).collect();
            let bytes = mine.iter().map(|p| (COPY_HEADERS + p.frame.len()) as u64).sum::<u64>();
            let st = m.stats(index, Some(l));
            assert_eq!(
                (st.packets, st.bytes, st.errors),
                (mine.len() as u64, bytes, 0),
                "analyzer {index} on lcore {l}"
            );
            assert!(st.packets > 0, "lcore {l} mirrored nothing to analyzer {index}");
        }
        let v1 = c.stats.vif_counters(1, Some(l));
        assert_eq!(
            v1.mirror_packets,
            c.stats.vif_counters(1, Some(l)).rx_packets,
            "lcore {l}: one copy per vm1 packet"
        );
    }
}

#[test]
fn mirroring_is_exact_per_lcore_on_two_lcores() {
    mirroring_on(2);
}

#[test]
fn mirroring_is_exact_per_lcore_on_three_lcores() {
    mirroring_on(3);
}

// ---------------------------------------------------------------- (b') set up on one, hit on another

/// A flow set up for one lcore and then hit, never held, on another: vm1 and vm2 are
/// af_packet ports on veth pairs (one queue each, on different lcores: the plan gives vm1's
/// queue to lcore index 1 and vm2's to lcore 0 of two, 2 of three), so the test decides
/// when each direction arrives. vm1 opens the flow and its packets are forwarded; only then
/// does vm2 answer. The agent has set up one flow pair and no other request came (vm2's
/// lcore never held the reverse flow: it hit the entry the agent made for vm1's lcore). The
/// ports have one TX queue, which the lcores share under its lock. Needs CAP_NET_ADMIN
/// (root), as the other tests over veths do.
fn set_up_on_one_hit_on_another(lcores: usize) {
    let tag = std::process::id() % 10_000;
    let names: Vec<String> = ["a1", "b1", "a2", "b2"].iter().map(|s| format!("lc{lcores}{s}{tag}")).collect();
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
        .replacen("device = \"net_pcap2\"", "device = \"net_af_packet2\"", 1);
    let cfg_path = d.join("vrouter.toml");
    std::fs::write(&cfg_path, with_lcores(cfg, lcores)).unwrap();
    let vm1 = Raw::open(&names[1]);
    let vm2 = Raw::open(&names[3]);
    let mut child = spawn_vrouter(&cfg_path, prefix);
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    let stats = loop {
        if let (true, Ok(s)) = (run_dir.join("control.sock").exists(), StatsReader::open(&run_dir)) {
            break s;
        }
        assert!(child.try_wait().unwrap().is_none(), "the vRouter exited");
        assert!(Instant::now() < deadline, "the vRouter did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let status = |key: &str| control(&run_dir, &serde_json::json!({"cmd": "status"}))["counters"][key].clone();
    let wait_for = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + std::time::Duration::from_secs(20);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    };
    let receive = |raw: &Raw, n: usize| -> Vec<Vec<u8>> {
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        let mut got = Vec::new();
        while got.len() < n && Instant::now() < deadline {
            got.extend(raw.recv());
        }
        got
    };

    let t = udp(VM_IPS[1], 33_000, VM_IPS[2], 7777);
    let forward: Vec<Pkt> = (0..5).map(|k| from_vm(1, 0, t, &payload(k, 30 + 10 * k))).collect();
    let reverse: Vec<Pkt> = (0..4).map(|k| from_vm(2, 0, t.reverse(), &payload(50 + k, 70 + 5 * k))).collect();
    let expect = |pkts: &[Pkt]| -> Vec<Vec<u8>> {
        pkts.iter()
            .map(|p| match &p.fate {
                Fate::Out(_, f) => f.clone(),
                Fate::Drop(r) => panic!("{r:?}"),
            })
            .collect()
    };

    // 1. vm1 opens the flow: set up at its lcore's request, its packets forwarded to vm2.
    for p in &forward {
        vm1.send(&p.frame);
    }
    wait_for("vm1's packets to reach vm2", &|| stats.vif_counters(2, None).tx_packets == 5);
    assert_eq!(receive(&vm2, 5), expect(&forward), "vm2 got vm1's packets in order, rewritten");
    assert_eq!((status("setups"), status("setup_stale")), (1.into(), 0.into()));

    // 2. vm2 answers: its lcore finds the reverse flow set up and forwards at once.
    for p in &reverse {
        vm2.send(&p.frame);
    }
    wait_for("vm2's answers to reach vm1", &|| stats.vif_counters(1, None).tx_packets == 4);
    assert_eq!(receive(&vm1, 4), expect(&reverse), "vm1 got vm2's answers in order, rewritten");
    assert_eq!(
        (status("setups"), status("setup_stale")),
        (1.into(), 0.into()),
        "the answers asked for no setup: they hit the reverse flow"
    );

    // vm1's packets entered on one lcore, vm2's on another, and each lcore sent what it
    // received.
    let lcore_of = |vif: u16, n: u64| -> usize {
        let on: Vec<usize> = (0..lcores).filter(|&l| stats.vif_counters(vif, Some(l)).rx_packets > 0).collect();
        assert_eq!(on.len(), 1, "vif {vif} received on lcores {on:?}");
        assert_eq!(stats.vif_counters(vif, Some(on[0])).rx_packets, n);
        on[0]
    };
    let (a, b) = (lcore_of(1, 5), lcore_of(2, 4));
    assert_ne!(a, b, "both directions entered on lcore {a}");
    assert_eq!(stats.vif_counters(2, Some(a)).tx_packets, 5);
    assert_eq!(stats.vif_counters(1, Some(b)).tx_packets, 4);
    assert_eq!(stats.drops(None), [0; DROP_REASON_COUNT]);

    let stdout = stop(&mut child);
    let (plan, _) = printed_plan(&stdout);
    assert_eq!((plan[&(1, 0)], plan[&(2, 0)]), (a, b), "{stdout}");
    let reader = FlowTableReader::open_run_dir(&run_dir).expect("flow table");
    let flows: HashMap<Tuple, FlowSnapshot> = reader.iter_active().filter_map(|f| Some((Tuple::of(&f)?, f))).collect();
    assert_eq!(flows.len(), 2, "{flows:#?}");
    let (f, r) = (&flows[&t], &flows[&t.reverse()]);
    let bytes = |pkts: &[Pkt]| pkts.iter().map(|p| p.flow.unwrap().1).sum::<u64>();
    assert_eq!((f.packets, f.bytes), (5, bytes(&forward)));
    assert_eq!((r.packets, r.bytes), (4, bytes(&reverse)));
    assert_eq!((f.rflow, r.rflow), (Some(r.index), Some(f.index)));
    assert_eq!((f.action, r.action), (Action::Forward, Action::Forward));
}

#[test]
fn a_flow_set_up_for_one_lcore_is_hit_on_another_on_two_lcores() {
    set_up_on_one_hit_on_another(2);
}

#[test]
fn a_flow_set_up_for_one_lcore_is_hit_on_another_on_three_lcores() {
    set_up_on_one_hit_on_another(3);
}
