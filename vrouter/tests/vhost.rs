//! VMs on vhost-user vifs, end to end: the real vRouter binary with vif 1 and vif 2 on
//! `net_vhost` ports in client mode (its default, as TF's) and two `vm-guest` processes as
//! the VMs (DPDK `net_virtio_user` in server mode, as QEMU is); the fabric is an af_packet
//! port on a veth pair whose other end the test reads and writes.
//!
//! Checked: VM to VM both ways and VM to a remote host over MPLSoUDP and back, frames byte
//! for byte and counters exact; a VM killed while traffic is sent to it (the drops counted
//! as `Link Down`, nothing else lost) and restarted (the vRouter reconnects, traffic
//! resumes); the vRouter restarted under running VMs (they reconnect without a restart).
//! Needs root (veth pairs, raw sockets), as the other live tests.

mod common;
#[path = "../../flow-table/tests/support/hugepages.rs"]
mod huge;

use common::guest::Guest;
use common::vm_host::*;
use common::*;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use vrouter::drop_reason::DropReason;
use vrouter_abi::stats::{VIF_LINK_DOWN, VIF_LINK_UP};

#[test]
fn two_vms_exchange_traffic_over_vhost_user() {
    let _s = serial();
    let mut h = Host::start("a");
    // vif --list shows the vhost vifs as the operator configured them.
    let infos: BTreeMap<u16, _> = h.stats().vifs().into_iter().map(|v| (v.id, v)).collect();
    assert_eq!((infos[&1].vhost_mode, infos[&1].vhost_queues), (vrouter_abi::stats::VIF_VHOST_CLIENT, 1));
    let out = std::process::Command::new(tool("vif")).arg("--list").arg("--run-dir").arg(&h.run_dir).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("Vhostuser Mode: client Queues: 1 Link: up"), "{text}");

    let (to_vm2, expect_vm2) =
        udp_frames(("192.168.1.3", VM1_MAC), ("192.168.1.4", VM2_MAC), 200, 20, "vm1-to-vm2", false);
    let (to_vm1, expect_vm1) =
        udp_frames(("192.168.1.4", VM2_MAC), ("192.168.1.3", VM1_MAC), 150, 20, "vm2-to-vm1", true);
    send_flows(&mut h, 1, 2, &to_vm2, 20, "to-vm2");
    // The answers hit the reverse flows the agent set up with the forward ones: no wait.
    let p2 = h.pcap("to-vm1", &to_vm1);
    assert_eq!(h.vm2().send(&p2, "0")["sent"], 150);
    let r2 = h.vm2().wait_rx(200, Duration::from_secs(20));
    let r1 = h.vm1().wait_rx(150, Duration::from_secs(20));
    let why = format!("{r1} {r2} drops {:?} vif1 {:?} vif2 {:?}", drop_list(&h.stats()), h.counters(1), h.counters(2));
    assert_eq!((r2["received"].as_u64(), r1["received"].as_u64()), (Some(200), Some(150)), "{why}");
    // Every frame arrived exactly as routed (the flows' first packets wait for flow set-up,
    // so frames of different flows may change places; a flow's own stay in order).
    let got_vm2 = h.vm2().received();
    let got_vm1 = h.vm1().received();
    assert_eq!(sorted(got_vm2.clone()), sorted(expect_vm2.clone()));
    assert_eq!(sorted(got_vm1), sorted(expect_vm1.clone()));
    let flow_of = |f: &Vec<u8>| u16::from_be_bytes([f[34], f[35]]);
    for port in 40000..40020 {
        let got: Vec<_> = got_vm2.iter().filter(|f| flow_of(f) == port).collect();
        let want: Vec<_> = expect_vm2.iter().filter(|f| flow_of(f) == port).collect();
        assert_eq!(got, want, "flow from port {port} reordered");
    }
    // Counters: what each guest sent is what its vif received, and the other way round.
    let (c1, c2) = (h.counters(1), h.counters(2));
    assert_eq!((c1.rx_packets, c1.rx_bytes), (200, bytes(&to_vm2)));
    assert_eq!((c2.tx_packets, c2.tx_bytes), (200, bytes(&expect_vm2)));
    assert_eq!((c2.rx_packets, c2.rx_bytes), (150, bytes(&to_vm1)));
    assert_eq!((c1.tx_packets, c1.tx_bytes), (150, bytes(&expect_vm1)));
    assert_eq!(h.stats().drops(None).iter().sum::<u64>(), 0, "{:?}", drop_list(&h.stats()));
    h.assert_accounted();
    let s1 = h.vm1().stats();
    assert_eq!(
        (s1["sent_bytes"].as_u64(), s1["received_bytes"].as_u64()),
        (Some(bytes(&to_vm2)), Some(bytes(&expect_vm1)))
    );
    h.stop_vrouter();
}

#[test]
fn vm_to_remote_over_mplsoudp_and_back() {
    let _s = serial();
    let mut h = Host::start("b");
    let n = 64;
    let mut to_remote = Vec::new();
    let mut expect_fabric = Vec::new();
    let mut from_remote = Vec::new();
    let mut expect_vm1 = Vec::new();
    for i in 0..n {
        let sport = 41000 + (i % 8) as u16;
        let payload = format!("to-remote-{i:04}");
        let ip = ipv4_udp(ip4("192.168.1.3"), ip4("192.168.2.10"), 64, sport, 5201, payload.as_bytes());
        to_remote.push(eth(mac(ROUTER_MAC), mac(VM1_MAC), 0x0800, &ip));
        let tsport = flow_table::tunnel_source_port(flow_table::flow_hash_v4(
            u32::from(ip4("192.168.1.3")),
            u32::from(ip4("192.168.2.10")),
            17,
            sport,
            5201,
        ));
        let mut inner = mpls(40, 64).to_vec();
        inner.extend_from_slice(&decrement_ttl_v4(&ip));
        expect_fabric.push(tunnel_outer(
            mac(GW_MAC),
            mac(FABRIC_MAC),
            ip4("10.10.0.1"),
            ip4("10.10.0.2"),
            tsport,
            6635,
            &inner,
        ));
        // The remote host's answer: MPLSoUDP label 17 (vm1's), inner TTL as it arrives.
        let back =
            ipv4_udp(ip4("192.168.2.10"), ip4("192.168.1.3"), 63, 5201, sport, format!("reply-{i:04}").as_bytes());
        let mut mp = mpls(17, 64).to_vec();
        mp.extend_from_slice(&back);
        from_remote.push(tunnel_outer(
            mac(FABRIC_MAC),
            mac(GW_MAC),
            ip4("10.10.0.2"),
            ip4("10.10.0.1"),
            50000,
            6635,
            &mp,
        ));
        expect_vm1.push(eth(mac(VM1_MAC), mac(ROUTER_MAC), 0x0800, &back));
    }
    // One frame per flow first (the rest would wait for flow set-up), then the others.
    let p = h.pcap("to-remote-open", &to_remote[..8]);
    assert_eq!(h.vm1().send(&p, "0")["sent"], 8);
    let mut got = h.fabric_frames(8, Duration::from_secs(20));
    let p = h.pcap("to-remote-rest", &to_remote[8..]);
    assert_eq!(h.vm1().send(&p, "0")["sent"], n as u64 - 8);
    got.extend(h.fabric_frames(n - 8, Duration::from_secs(20)));
    assert_eq!(sorted(got), sorted(expect_fabric.clone()), "fabric frames");
    for f in &from_remote {
        h.fabric.send(f);
    }
    assert_eq!(h.vm1().wait_rx(n as u64, Duration::from_secs(20))["received"], n as u64);
    assert_eq!(sorted(h.vm1().received()), sorted(expect_vm1.clone()));
    let (c0, c1) = (h.counters(0), h.counters(1));
    assert_eq!((c1.rx_packets, c1.rx_bytes), (n as u64, bytes(&to_remote)));
    assert_eq!((c0.tx_packets, c0.tx_bytes), (n as u64, bytes(&expect_fabric)));
    assert_eq!((c0.rx_packets, c0.rx_bytes), (n as u64, bytes(&from_remote)));
    assert_eq!((c1.tx_packets, c1.tx_bytes), (n as u64, bytes(&expect_vm1)));
    assert_eq!(h.stats().drops(None).iter().sum::<u64>(), 0, "{:?}", drop_list(&h.stats()));
    h.assert_accounted();
    h.stop_vrouter();
}

#[test]
fn a_killed_vm_restarts_and_traffic_resumes_with_the_gap_counted() {
    let _s = serial();
    let mut h = Host::start("c");
    let (before, expect_before) =
        udp_frames(("192.168.1.3", VM1_MAC), ("192.168.1.4", VM2_MAC), 50, 5, "before", false);
    let (gap, _) = udp_frames(("192.168.1.3", VM1_MAC), ("192.168.1.4", VM2_MAC), 40, 5, "gap", false);
    let (after, expect_after) = udp_frames(("192.168.1.3", VM1_MAC), ("192.168.1.4", VM2_MAC), 60, 5, "after", false);
    let (p_gap, p_after) = (h.pcap("gap", &gap), h.pcap("after", &after));

    send_flows(&mut h, 1, 2, &before, 5, "before");
    h.vm2().wait_rx(50, Duration::from_secs(20));
    assert_eq!(sorted(h.vm2().received()), sorted(expect_before.clone()));

    // The VM crashes: its socket closes, the vRouter marks the port down at once.
    h.vm2.take().unwrap().kill();
    h.wait_link(2, VIF_LINK_DOWN);
    let out = std::process::Command::new(tool("vif")).arg("--list").arg("--run-dir").arg(&h.run_dir).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("Link: down"), "{}", String::from_utf8_lossy(&out.stdout));
    // Traffic to it meanwhile is dropped as Link Down on vif 2, every frame counted.
    assert_eq!(h.vm1().send(&p_gap, "0")["sent"], 40);
    let deadline = Instant::now() + Duration::from_secs(20);
    while h.counters(1).rx_packets < 90 {
        assert!(Instant::now() < deadline, "vif 1 received {} of 90", h.counters(1).rx_packets);
        std::thread::sleep(Duration::from_millis(20));
    }
    h.assert_accounted();
    let r = h.stats();
    assert_eq!(r.drops(None)[DropReason::LinkDown as usize], 40, "{:?}", drop_list(&r));
    assert_eq!(r.vif_drops(2, None)[DropReason::LinkDown as usize], 40);
    assert_eq!(r.drops(None).iter().sum::<u64>(), 40, "{:?}", drop_list(&r));

    // The VM comes back on the same socket; the vRouter (client) reconnects by itself.
    let d = h.d();
    h.vm2 = Some(Guest::start(&d, "vm2", &d.join("vm2.sock"), 1, &[]));
    h.vm2().ready();
    h.wait_link(2, VIF_LINK_UP);
    h.vm1().send(&p_after, "0");
    assert_eq!(h.vm2().wait_rx(60, Duration::from_secs(20))["received"], 60);
    assert_eq!(sorted(h.vm2().received()), sorted(expect_after.clone()));
    let c2 = h.counters(2);
    assert_eq!((c2.tx_packets, c2.tx_bytes), (110, bytes(&expect_before) + bytes(&expect_after)));
    assert_eq!(h.counters(1).rx_packets, 150);
    assert_eq!(h.stats().drops(None).iter().sum::<u64>(), 40);
    h.assert_accounted();
    h.stop_vrouter();
}

#[test]
fn a_restarted_vrouter_reconnects_to_running_vms() {
    let _s = serial();
    let mut h = Host::start("d");
    let (first, expect_first) = udp_frames(("192.168.1.3", VM1_MAC), ("192.168.1.4", VM2_MAC), 30, 3, "first", false);
    let (second, expect_second) = udp_frames(("192.168.1.4", VM2_MAC), ("192.168.1.3", VM1_MAC), 30, 3, "second", true);
    send_flows(&mut h, 1, 2, &first, 3, "first");
    h.vm2().wait_rx(30, Duration::from_secs(20));
    assert_eq!(sorted(h.vm2().received()), sorted(expect_first));

    // The vRouter stops; the VMs keep running and see their link go down.
    h.stop_vrouter();
    // The stopped run's final counters, which the next vRouter continues.
    let (b1, b2) = (h.counters(1), h.counters(2));
    assert!(b1.rx_packets >= 30 && b2.tx_packets >= 30, "the first run's traffic: {b1:?} {b2:?}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while h.vm1().stats()["link"] != "down" || h.vm2().stats()["link"] != "down" {
        assert!(Instant::now() < deadline, "the guests still see their link up");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A new vRouter on the same configuration connects to the same guests.
    h.start_vrouter();
    h.wait_link(1, VIF_LINK_UP);
    h.wait_link(2, VIF_LINK_UP);
    let deadline = Instant::now() + Duration::from_secs(20);
    while h.vm1().stats()["link"] != "up" || h.vm2().stats()["link"] != "up" {
        assert!(Instant::now() < deadline, "the guests do not see their link up again");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The new vRouter has no flows yet: they are set up again by the first frames.
    send_flows(&mut h, 2, 1, &second, 3, "second");
    assert_eq!(h.vm1().wait_rx(30, Duration::from_secs(20))["received"], 30);
    assert_eq!(sorted(h.vm1().received()), sorted(expect_second.clone()));
    // The new vRouter continues the first run's counters (`vif --list` goes on from them).
    let (c1, c2) = (h.counters(1), h.counters(2));
    assert_eq!((c1.rx_packets, c2.tx_packets), (b1.rx_packets, b2.tx_packets), "continued, not reset");
    let grown = (c2.rx_packets - b2.rx_packets, c1.tx_packets - b1.tx_packets, c1.tx_bytes - b1.tx_bytes);
    assert_eq!(grown, (30, 30, bytes(&expect_second)));
    h.assert_accounted();
    let out = h.stop_vrouter();
    for (kind, file, what) in
        [("stats", "stats", "counters"), ("mirror", "mirror", "counters"), ("trace", "trace", "trace rings")]
    {
        let line = format!(
            "vrouter: {kind} region {}: continuing {what} from the previous run",
            h.run_dir.join(file).display()
        );
        assert!(out.contains(&line), "{line:?} not in:\n{out}");
    }
}

/// Runs a tool of the tools crate against the host's vRouter; panics with its output when it
/// fails.
fn tool_ok(h: &Host, name: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(tool(name)).arg("--run-dir").arg(&h.run_dir).args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{name} {args:?}: {text}");
    text
}

const VM3_MAC: &str = "02:00:00:00:01:05";

/// Adds vif 3 (2 queue pairs) at run time with its nexthop and route, and its VM: in client
/// mode the VM listens first and the vif connects; in server mode the vif listens (replacing
/// a stale socket file) and the VM connects.
fn attach_vm3(h: &mut Host, server: bool) {
    let d = h.d();
    let sock = d.join("vm3.sock");
    let sock_s = sock.display().to_string();
    let mut add = vec![
        "--add",
        "tap-vm3",
        "--id",
        "3",
        "--type",
        "virtual",
        "--vhost-socket",
        &sock_s,
        "--vhost-queues",
        "2",
        "--mac",
        ROUTER_MAC,
        "--ip",
        "192.168.1.5",
        "--vrf",
        "1",
    ];
    if server {
        // What a crashed vRouter would leave: a socket file nobody listens on.
        drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
        assert!(sock.exists());
        add.extend(["--vhost-mode", "server"]);
        tool_ok(h, "vif", &add);
        h.vm3 = Some(Guest::start(&d, "vm3", &sock, 2, &["--client"]));
    } else {
        h.vm3 = Some(Guest::start(&d, "vm3", &sock, 2, &[]));
        tool_ok(h, "vif", &add);
    }
    tool_ok(h, "nh", &["--create", "--id", "20", "--type", "encap", "--oif", "3", "--dmac", VM3_MAC]);
    tool_ok(h, "rt", &["--add", "--vrf", "1", "--prefix", "192.168.1.5/32", "--nh", "20"]);
    h.guest(3).ready();
    h.wait_link(3, VIF_LINK_UP);
    let list = tool_ok(h, "vif", &["--get", "3"]);
    let mode = if server { "server" } else { "client" };
    assert!(list.contains(&format!("Vhostuser Mode: {mode} Queues: 2 Link: up")), "{list}");
}

/// VM 1 and the runtime VM 3 exchange 40 frames each way (VM 3's spread over its two queues).
fn vm1_and_vm3_talk(h: &mut Host) {
    let (to_vm3, expect_vm3) = udp_frames(("192.168.1.3", VM1_MAC), ("192.168.1.5", VM3_MAC), 40, 4, "to-vm3", false);
    let (back, expect_back) = udp_frames(("192.168.1.5", VM3_MAC), ("192.168.1.3", VM1_MAC), 40, 4, "from-vm3", true);
    send_flows(h, 1, 3, &to_vm3, 4, "to-vm3");
    assert_eq!(h.guest(3).wait_rx(40, Duration::from_secs(20))["received"], 40);
    assert_eq!(sorted(h.guest(3).received()), sorted(expect_vm3.clone()));
    // The answers leave on both of vm3's queues (spread by flow), both polled by the vRouter.
    let p = h.pcap("from-vm3", &back);
    let sent = h.guest(3).send(&p, "hash");
    assert_eq!(sent["sent"], 40);
    let per_queue: Vec<u64> = sent["sent_per_queue"].as_array().unwrap().iter().map(|q| q.as_u64().unwrap()).collect();
    assert!(per_queue.len() == 2 && per_queue.iter().all(|&n| n > 0), "queues used: {per_queue:?}");
    assert_eq!(h.vm1().wait_rx(40, Duration::from_secs(20))["received"], 40);
    assert_eq!(sorted(h.vm1().received()), sorted(expect_back.clone()));
    let c3 = h.counters(3);
    assert_eq!((c3.tx_packets, c3.tx_bytes, c3.rx_packets, c3.rx_bytes), (40, bytes(&expect_vm3), 40, bytes(&back)));
    assert_eq!(h.stats().drops(None).iter().sum::<u64>(), 0, "{:?}", drop_list(&h.stats()));
    h.assert_accounted();
}

/// Deletes vif 3 and its route and nexthop; its VM sees the link go down.
fn detach_vm3(h: &mut Host) {
    tool_ok(h, "rt", &["--delete", "--vrf", "1", "--prefix", "192.168.1.5/32"]);
    tool_ok(h, "nh", &["--delete", "20"]);
    tool_ok(h, "vif", &["--delete", "3"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while h.guest(3).stats()["link"] != "down" {
        assert!(Instant::now() < deadline, "vm3 still sees its link up after vif 3 was deleted");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_vhost_vif_added_at_runtime_serves_its_vm_and_goes_when_deleted() {
    let _s = serial();
    let mut h = Host::start("e");
    attach_vm3(&mut h, false);
    vm1_and_vm3_talk(&mut h);
    detach_vm3(&mut h);
    h.stop_vrouter();
}

#[test]
fn a_server_mode_vif_replaces_a_stale_socket_and_takes_a_client_vm() {
    let _s = serial();
    let mut h = Host::start("f");
    attach_vm3(&mut h, true);
    vm1_and_vm3_talk(&mut h);
    detach_vm3(&mut h);
    // The vRouter created the socket and removes it with the vif.
    assert!(!h.d().join("vm3.sock").exists(), "vif 3's server socket is left behind");
    h.stop_vrouter();
}

/// A guest's queues over several forwarding lcores: vm1 sends on both of its queue pairs
/// (by flow), which the vRouter polls from different lcores; vm2's guest enables one queue
/// pair of its vif's two, so the lcore whose TX queue it leaves off must send on the other;
/// vm2's answers (one RX queue, one lcore) meet flows set up by the other lcore.
fn vhost_queues_over_lcores(lcores: u16) {
    let _s = serial();
    let mut h = Host::start_with(
        &format!("m{lcores}"),
        &Layout { lcores, vif_queues: [2, 2], guest_queues: [2, 1], ..Layout::default() },
    );
    let flows = 32;
    let (to_vm2, expect_vm2) = udp_frames(("192.168.1.3", VM1_MAC), ("192.168.1.4", VM2_MAC), 128, flows, "mq", false);
    let (back, expect_back) =
        udp_frames(("192.168.1.4", VM2_MAC), ("192.168.1.3", VM1_MAC), 128, flows, "mq-back", true);
    send_flows_on(&mut h, 1, 2, &to_vm2, usize::from(flows), "mq", "hash");
    let got = h.vm2().wait_rx(128, Duration::from_secs(30));
    let why = format!("{got} drops {:?}", drop_list(&h.stats()));
    assert_eq!(got["received"], 128, "{why}");
    assert_eq!(sorted(h.vm2().received()), sorted(expect_vm2.clone()));
    let per_queue = h.vm1().stats()["sent_per_queue"].clone();
    assert!(per_queue[0].as_u64() > Some(0) && per_queue[1].as_u64() > Some(0), "vm1 used one queue: {per_queue}");
    let p = h.pcap("mq-back", &back);
    assert_eq!(h.vm2().send(&p, "0")["sent"], 128);
    let got = h.vm1().wait_rx(128, Duration::from_secs(30));
    assert_eq!(got["received"], 128, "{got} drops {:?}", drop_list(&h.stats()));
    assert_eq!(sorted(h.vm1().received()), sorted(expect_back.clone()));

    let r = h.stats();
    assert_eq!(r.drops(None).iter().sum::<u64>(), 0, "{:?}", drop_list(&r));
    h.assert_accounted();
    // Both lcores received vm1's traffic and sent to vm2 (one of them on the other's queue).
    let cores: Vec<usize> = (0..usize::from(lcores)).collect();
    let rx1: Vec<u64> = cores.iter().map(|&c| r.vif_counters(1, Some(c)).rx_packets).collect();
    let tx2: Vec<u64> = cores.iter().map(|&c| r.vif_counters(2, Some(c)).tx_packets).collect();
    let rx2: Vec<u64> = cores.iter().map(|&c| r.vif_counters(2, Some(c)).rx_packets).collect();
    assert_eq!(rx1.iter().filter(|&&n| n > 0).count(), 2, "vif 1 RX per lcore {rx1:?}");
    assert_eq!(tx2.iter().filter(|&&n| n > 0).count(), 2, "vif 2 TX per lcore {tx2:?}");
    assert_eq!((rx1.iter().sum::<u64>(), tx2.iter().sum::<u64>(), rx2.iter().sum::<u64>()), (128, 128, 128));
    // vm2's answers came in on one lcore; part of vm1's traffic (the forward flows) on another.
    let answering = rx2.iter().position(|&n| n > 0).unwrap();
    assert!(rx1.iter().enumerate().any(|(c, &n)| c != answering && n > 0), "rx1 {rx1:?} rx2 {rx2:?}");
    let c1 = h.counters(1);
    assert_eq!((c1.tx_packets, c1.tx_bytes), (128, bytes(&expect_back)));
    h.stop_vrouter();
}

#[test]
fn vhost_queues_over_two_lcores() {
    vhost_queues_over_lcores(2);
}

#[test]
fn vhost_queues_over_three_lcores() {
    vhost_queues_over_lcores(3);
}

/// The VMs and the vRouter on huge pages, as a production node runs them: the vRouter's DPDK
/// memory from a hugetlbfs mount (`no_huge = false`, `huge_dir`), the guests' on huge pages
/// too (`vm-guest --huge`: one memfd per segment list, which vhost-user shares); VM to VM
/// both ways byte for byte, counters exact. Needs root to reserve pages (as `ci/test.sh` does).
#[test]
fn vms_and_vrouter_on_huge_pages() {
    const TEST: &str = "vrouter::vhost::vms_and_vrouter_on_huge_pages";
    let _s = serial();
    // The vRouter's 256 MiB, two guests' 128 MiB, its flow table and room to grow.
    let _pages = match huge::Reservation::ensure(128 + 2 * 64 + 56 + 32) {
        Ok(r) => r,
        Err(why) => return huge::skip(TEST, &why),
    };
    let mnt = match huge::TempMount::new("pagesize=2M") {
        Ok(m) => m,
        Err(why) => return huge::skip(TEST, &why),
    };
    remove_orphaned_flow_tables();
    let layout = Layout { huge_dir: Some(mnt.path().to_path_buf()), ..Layout::default() };
    let mut h = Host::start_with("h", &layout);
    // The vRouter's DPDK memory lies in files of the mount (kept for packet capture, the
    // default on huge pages).
    let pid = h.vrouter.as_ref().unwrap().id();
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mount = mnt.path().display().to_string();
    assert!(maps.lines().any(|l| l.contains(&mount)), "no mapping under {mount}");

    let (to_vm2, expect_vm2) = udp_frames(("192.168.1.3", VM1_MAC), ("192.168.1.4", VM2_MAC), 100, 10, "huge", false);
    let (back, expect_back) =
        udp_frames(("192.168.1.4", VM2_MAC), ("192.168.1.3", VM1_MAC), 100, 10, "huge-back", true);
    send_flows(&mut h, 1, 2, &to_vm2, 10, "huge");
    assert_eq!(h.vm2().wait_rx(100, Duration::from_secs(20))["received"], 100);
    assert_eq!(sorted(h.vm2().received()), sorted(expect_vm2.clone()));
    let p = h.pcap("huge-back", &back);
    assert_eq!(h.vm2().send(&p, "0")["sent"], 100);
    assert_eq!(h.vm1().wait_rx(100, Duration::from_secs(20))["received"], 100);
    assert_eq!(sorted(h.vm1().received()), sorted(expect_back.clone()));
    let (c1, c2) = (h.counters(1), h.counters(2));
    assert_eq!((c1.rx_packets, c2.tx_packets, c2.tx_bytes), (100, 100, bytes(&expect_vm2)));
    assert_eq!((c2.rx_packets, c1.tx_packets, c1.tx_bytes), (100, 100, bytes(&expect_back)));
    assert_eq!(h.stats().drops(None).iter().sum::<u64>(), 0, "{:?}", drop_list(&h.stats()));
    h.assert_accounted();
    h.stop_vrouter();
}
