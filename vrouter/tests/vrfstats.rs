//! Per-VRF counters on the real data plane (real EAL, pcap virtual devices): every kind of
//! decision counted exactly, in the VRF it was made in, read live by the `vrfstats` tool and
//! after the stop from the stats region.

mod common;
use common::*;
use std::process::Command;
use std::time::{Duration, Instant};
use vrouter::drop_reason::DropReason;
use vrouter::stats::{StatsReader, VrfCounters};

fn vm1_udp_to(dst: &str, sport: u16) -> Vec<u8> {
    let ip = ipv4_udp(ip4("192.168.1.3"), ip4(dst), 64, sport, 5201, b"vrfstats-payload");
    eth(mac(ROUTER_MAC), mac(VM1_MAC), 0x0800, &ip)
}

/// `vrfstats --get <vrf> --json` of the running vRouter, as counters.
fn tool_counts(run_dir: &std::path::Path, vrf: u32) -> VrfCounters {
    let out = Command::new(tool("vrfstats"))
        .arg("--run-dir")
        .arg(run_dir)
        .args(["--get", &vrf.to_string(), "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["vrf"], vrf);
    let mut c = VrfCounters::default();
    let get = |k: &str| v[0][k].as_u64().unwrap_or_else(|| panic!("{k} missing in {v}"));
    c.discards = get("discards");
    c.resolves = get("resolves");
    c.receives = get("receives");
    c.l2_receives = get("l2_receives");
    c.ecmp_composites = get("ecmp_composites");
    c.l2_encaps = get("l2_encaps");
    c.encaps = get("encaps");
    c.udp_mpls_tunnels = get("udp_mpls_tunnels");
    c.vxlan_tunnels = get("vxlan_tunnels");
    c.mplsoudp_decaps = get("mplsoudp_decaps");
    c.vxlan_decaps = get("vxlan_decaps");
    c.no_route_drops = get("no_route_drops");
    c
}

#[test]
fn vrf_counters_count_real_traffic_exactly() {
    const MPLS: usize = 7;
    const VXLAN: usize = 3;
    // VM1 (VRF 1): MPLSoUDP (distinct flows), VXLAN, to vm2, discard route, ECMP route (both
    // members MPLSoUDP), no route, and an ARP request answered by proxy.
    let mut vm1 = Vec::new();
    vm1.extend((0..MPLS).map(|i| vm1_udp_to("192.168.2.10", 41000 + i as u16)));
    vm1.extend((0..VXLAN).map(|i| vm1_udp_to("192.168.3.20", 42000 + i as u16)));
    vm1.extend([vm1_udp_to("192.168.1.4", 43000), vm1_udp_to("192.168.1.4", 43000)]);
    vm1.extend([vm1_udp_to("192.168.9.1", 44000), vm1_udp_to("192.168.9.1", 44001)]);
    vm1.push(vm1_udp_to("192.168.10.5", 45000));
    vm1.push(vm1_udp_to("172.16.0.1", 46000));
    vm1.push(pad60(eth(
        [0xff; 6],
        mac(VM1_MAC),
        0x0806,
        &arp(1, mac(VM1_MAC), ip4("192.168.1.3"), [0; 6], ip4("192.168.1.4")),
    )));
    // Fabric (VRF 0): MPLSoUDP label 17 -> vm1, VXLAN bridged to vm2 and routed to vm1 (both
    // into VRF 1), an ARP request for the vRouter IP (answered in VRF 0).
    let inner = ipv4_udp(ip4("192.168.2.10"), ip4("192.168.1.3"), 63, 5201, 40000, b"from-remote");
    let mut mp = mpls(17, 64).to_vec();
    mp.extend_from_slice(&inner);
    let mpls_in = tunnel_outer(mac(FABRIC_MAC), mac(GW_MAC), ip4("10.10.0.2"), ip4("10.10.0.1"), 50000, 6635, &mp);
    let bridged = eth(
        mac(VM2_MAC),
        mac(REMOTE_VXLAN_VM_MAC),
        0x0800,
        &ipv4_udp(ip4("192.168.3.20"), ip4("192.168.1.4"), 63, 5201, 40001, b"vxlan-in"),
    );
    let mut vx = vxlan(5001).to_vec();
    vx.extend_from_slice(&bridged);
    let vxlan_in = tunnel_outer(mac(FABRIC_MAC), mac(GW_MAC), ip4("10.10.0.3"), ip4("10.10.0.1"), 50001, 4789, &vx);
    let routed = eth(
        mac(ROUTER_MAC),
        mac(REMOTE_VXLAN_VM_MAC),
        0x0800,
        &ipv4_udp(ip4("192.168.3.20"), ip4("192.168.1.3"), 63, 5201, 40002, b"vxlan-routed"),
    );
    let mut vx2 = vxlan(5001).to_vec();
    vx2.extend_from_slice(&routed);
    let vxlan_routed =
        tunnel_outer(mac(FABRIC_MAC), mac(GW_MAC), ip4("10.10.0.3"), ip4("10.10.0.1"), 50002, 4789, &vx2);
    let fabric_arp =
        pad60(eth([0xff; 6], mac(GW_MAC), 0x0806, &arp(1, mac(GW_MAC), ip4("10.10.0.254"), [0; 6], ip4("10.10.0.1"))));
    let fabric = vec![mpls_in, vxlan_in, vxlan_routed, fabric_arp];
    let n_in = (vm1.len() + fabric.len()) as u64;

    let vrf1 = VrfCounters {
        udp_mpls_tunnels: MPLS as u64 + 1,
        ecmp_composites: 1,
        vxlan_tunnels: VXLAN as u64,
        // vm1 -> vm2 twice, the MPLSoUDP decap and the routed VXLAN decap to vm1.
        encaps: 4,
        l2_encaps: 1,
        discards: 2,
        no_route_drops: 1,
        resolves: 1,
        mplsoudp_decaps: 1,
        vxlan_decaps: 2,
        ..Default::default()
    };
    let vrf0 = VrfCounters { resolves: 1, ..Default::default() };

    let out = run_live(
        Inputs { vm1, fabric, ..Default::default() },
        |c| c,
        |run_dir| {
            // The counts of a burst are written when it ends: poll briefly for the last one.
            let deadline = Instant::now() + Duration::from_secs(10);
            while tool_counts(run_dir, 1) != vrf1 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            assert_eq!(tool_counts(run_dir, 1), vrf1, "vrfstats --get 1 --json while running");
            assert_eq!(tool_counts(run_dir, 0), vrf0);
            let text = Command::new(tool("vrfstats")).arg("--run-dir").arg(run_dir).arg("--dump").output().unwrap();
            assert!(text.status.success());
            let text = String::from_utf8(text.stdout).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines[0], "Vrf: 0");
            let v1 = lines.iter().position(|l| *l == "Vrf: 1").unwrap_or_else(|| panic!("{text}"));
            // tf's line order: the tunnel counters on the VRF's fourth line.
            assert_eq!(lines[v1 + 1], "Discards 2, Resolves 1, Receives 0, L2 Receives 0");
            assert_eq!(lines[v1 + 3], format!("Udp Mpls Tunnels {}, Vxlan Tunnels {VXLAN}", MPLS + 1));
            assert_eq!(text.matches("Vrf: ").count(), 2, "only the VRFs that counted: {text}");
            let core0 = Command::new(tool("vrfstats"))
                .arg("--run-dir")
                .arg(run_dir)
                .args(["--get", "1", "--core", "0"])
                .output()
                .unwrap();
            let core0 = String::from_utf8(core0.stdout).unwrap();
            assert!(core0.starts_with("Statistics for core 0\n\nVrf: 1\n"), "{core0}");
        },
    );
    out.assert_accounted(n_in);
    assert_eq!(out.drop_count(DropReason::Discard), 2);
    assert_eq!(out.drop_count(DropReason::NoL3Route), 1);
    assert_eq!(out.fabric.len(), MPLS + VXLAN + 1 + 1, "tunnels and the ARP answer");
    // After the stop, the region holds the same final counts.
    let r = StatsReader::open(&out.run_dir).unwrap();
    assert_eq!(r.vrf_counters(1, None), vrf1);
    assert_eq!(r.vrf_counters(0, None), vrf0);
    let active: Vec<u32> = r.active_vrfs(None).iter().map(|(v, _)| *v).collect();
    assert_eq!(active, [0, 1]);
}
