//! The programming tools (`rt`, `nh`, `mpls`, `vif --add/--delete`, `vrouter-info`,
//! `flow --get`'s Source/Destination Information) against a live vRouter on a real EAL:
//! add / list / get / delete round trips through the control socket, and invalid requests
//! (refused by the vRouter, or by the tool before sending) that name the field and change
//! nothing.

mod common;
use common::*;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn run(run_dir: &Path, tool_name: &str, args: &[&str]) -> Output {
    Command::new(tool(tool_name))
        .arg("--run-dir")
        .arg(run_dir)
        .args(args)
        .env_remove("VROUTER_RUN_DIR")
        .output()
        .unwrap()
}

fn ok(run_dir: &Path, t: &str, args: &[&str]) -> String {
    let o = run(run_dir, t, args);
    assert!(o.status.success(), "{t} {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

/// Runs a command that must fail with status 1; returns its stderr.
fn err(run_dir: &Path, t: &str, args: &[&str]) -> String {
    let o = run(run_dir, t, args);
    assert_eq!(o.status.code(), Some(1), "{t} {args:?} should fail: {}", String::from_utf8_lossy(&o.stdout));
    assert!(o.stdout.is_empty(), "{t} {args:?} printed {}", String::from_utf8_lossy(&o.stdout));
    String::from_utf8(o.stderr).unwrap()
}

fn json(run_dir: &Path, t: &str, args: &[&str]) -> serde_json::Value {
    let mut a = args.to_vec();
    a.push("--json");
    serde_json::from_str(&ok(run_dir, t, &a)).unwrap()
}

fn generation(run_dir: &Path) -> u64 {
    json(run_dir, "vrouter-info", &[])["info"]["generation"].as_u64().unwrap()
}

#[test]
fn programming_tools_round_trip_on_a_live_vrouter() {
    // vm1 replays one VM->VM frame forever, so there is a flow for `flow --get`.
    let ip = ipv4_udp(ip4("192.168.1.3"), ip4("192.168.1.4"), 64, 4100, 8080, b"program-tools");
    let frame = eth(mac(ROUTER_MAC), mac(VM1_MAC), 0x0800, &ip);
    let (mut child, run_dir, guard) = start_live(|d: &Path, i: usize| {
        let rx = d.join(format!("in{i}.pcap"));
        write_pcap(&rx, if i == 1 { std::slice::from_ref(&frame) } else { &[] });
        let inf = if i == 1 { ",infinite_rx=1" } else { "" };
        format!("net_pcap{i},rx_pcap={}{inf}", rx.display())
    });
    let rd = run_dir.as_path();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let o = run(rd, "rt", &["--dump", "1"]);
        if o.status.success() {
            break;
        }
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let mut log = String::new();
            use std::io::Read;
            child.stderr.take().unwrap().read_to_string(&mut log).unwrap();
            panic!("control socket did not answer: {}\nvrouter stderr:\n{log}", String::from_utf8_lossy(&o.stderr));
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    // rt --dump: tf's table, the tunnel route with its label.
    let dump = ok(rd, "rt", &["--dump", "1"]);
    assert!(dump.starts_with("Flags: L=Label Valid"), "{dump}");
    assert!(dump.contains("vRouter inet4 routing table 0/1/unicast\nDestination           PPL"), "{dump}");
    assert!(dump.contains("192.168.2.0/24          0            L         40              3        -\n"), "{dump}");
    let v6 = ok(rd, "rt", &["--dump", "1", "--family", "inet6"]);
    assert!(v6.contains("fd00:2::/64"), "{v6}");
    let routes_before = json(rd, "rt", &["--dump", "1"]);
    let gen0 = generation(rd);
    let info = ok(rd, "vrouter-info", &[]);
    assert!(info.contains("Flow Table limit") && info.contains("NextHops limit"), "{info}");

    // nh --create / --get / --list.
    let out = ok(rd, "nh", &["--create", "--id", "20", "--type", "encap", "--oif", "2", "--dmac", "02:00:00:00:00:22"]);
    assert!(out.starts_with("nexthop 20 created (generation "), "{out}");
    let got = ok(rd, "nh", &["--get", "20"]);
    assert!(got.starts_with("Id:20         Type:Encap          Fmly: AF_INET"), "{got}");
    assert!(got.contains("EncapFmly:0806 Oif:2 Len:14\n") && got.contains("Encap Data: 02 00 00 00 00 22 "), "{got}");
    assert!(ok(rd, "nh", &["--list"]).contains("Id:7          Type:Composite"));
    assert_eq!(json(rd, "nh", &["--get", "20"])["vif"], 2);

    // rt --add / --get; mpls --create / --get.
    let out = ok(rd, "rt", &["--add", "--vrf", "1", "--prefix", "192.168.50.0/24", "--nh", "20"]);
    assert!(out.starts_with("route 192.168.50.0/24 in vrf 1 added"), "{out}");
    let got = ok(rd, "rt", &["--get", "192.168.50.7", "--vrf", "1"]);
    assert!(got.starts_with("Match 192.168.50.7 in vRouter inet4 table 0/1/unicast\n\n"), "{got}");
    assert!(
        got.contains("\n192.168.50.0/24         0                       -             20        2:0:0:0:0:22\n"),
        "{got}"
    );
    ok(rd, "mpls", &["--create", "30", "--nh", "20"]);
    assert!(ok(rd, "mpls", &["--get", "30"]).ends_with("-------------------\n      30        20\n"));
    let labels = json(rd, "mpls", &["--dump"]);
    assert!(labels.as_array().unwrap().iter().any(|l| l["label"] == 30 && l["nexthop"] == 20), "{labels}");

    // Bridge entries.
    ok(rd, "rt", &["--add", "--vrf", "1", "--mac", "02:00:00:00:00:33", "--nh", "2"]);
    assert!(ok(rd, "rt", &["--dump", "1", "--family", "bridge"]).contains("2:0:0:0:0:33"));
    ok(rd, "rt", &["--delete", "--vrf", "1", "--mac", "2:0:0:0:0:33"]);
    assert!(!ok(rd, "rt", &["--dump", "1", "--family", "bridge"]).contains("2:0:0:0:0:33"));

    // Invalid requests: refused by the vRouter with the field named, or by the tool before
    // anything is sent; nothing changes either way.
    let gen1 = generation(rd);
    let routes1 = json(rd, "rt", &["--dump", "1"]);
    let e = err(rd, "rt", &["--add", "--vrf", "1", "--prefix", "192.168.60.0/24", "--nh", "99"]);
    assert!(e.starts_with("rt: ") && e.contains("nexthop") && e.contains("99"), "{e}");
    let e = err(rd, "nh", &["--create", "--id", "21", "--type", "encap", "--oif", "77", "--dmac", "02:00:00:00:00:23"]);
    assert!(e.starts_with("nh: ") && e.contains("vif"), "{e}");
    let e = err(rd, "mpls", &["--delete", "999"]);
    assert!(e.starts_with("mpls: ") && e.contains("999"), "{e}");
    let e = err(rd, "rt", &["--add", "--vrf", "1", "--prefix", "192.168.60.1/24", "--nh", "20"]);
    assert!(e.starts_with("--prefix: 192.168.60.1/24 has host bits set"), "{e}");
    let e = err(rd, "nh", &["--create", "--id", "21", "--type", "tunnel", "--oif", "0", "--dmac", "02:00:00:00:00:23"]);
    assert!(e.starts_with("--type tunnel needs --encap"), "{e}");
    let e = err(rd, "rt", &["--add", "--vrf", "1", "--mac", "02:00:00:00:00:zz", "--nh", "2"]);
    assert!(e.starts_with("--mac: invalid MAC"), "{e}");
    assert_eq!(generation(rd), gen1, "an invalid request changed the state");
    assert_eq!(json(rd, "rt", &["--dump", "1"]), routes1);

    // flow --get: the Source/Destination Information blocks of the live flow.
    let flows = json(rd, "flow", &["-l"]);
    let f = flows
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["src"] == "192.168.1.3" && f["dst"] == "192.168.1.4")
        .unwrap_or_else(|| panic!("no vm1->vm2 flow in {flows}"))
        .clone();
    let idx = f["index"].to_string();
    let text = ok(rd, "flow", &["--get", &idx]);
    assert!(text.contains("Source Information:           VRF: 1\n"), "{text}");
    assert!(text.contains("Matching Route: 192.168.1.3/32\n"), "{text}");
    assert!(text.contains("NextHop(Index, VRF, Type): 1, 1, ENCAP\n"), "{text}");
    assert!(text.contains("Ingress Interface(Index, VRF, OS): vif0/1, 1, net_pcap1\n"), "{text}");
    assert!(text.contains("Destination Information:      VRF: 1\n"), "{text}");
    assert!(text.contains("Egress Interface(Index, VRF, OS): vif0/2, 1, net_pcap2\n"), "{text}");
    assert!(
        text.contains("Layer 2 Route Information\n                              DestinationMAC: 2:0:0:0:1:4\n"),
        "{text}"
    );
    let j = json(rd, "flow", &["--get", &idx]);
    assert_eq!(j[0]["destination_information"]["layer2"]["nexthop"]["id"], 2);
    assert!(j[0]["source_information"]["layer3"]["interface"]["in_packets"].as_u64().unwrap() > 0);

    // Deletes, and the tools' "not there" errors.
    ok(rd, "mpls", &["--delete", "30"]);
    ok(rd, "rt", &["--delete", "--vrf", "1", "--prefix", "192.168.50.0/24"]);
    let out = ok(rd, "nh", &["--delete", "20"]);
    assert!(out.starts_with("nexthop 20 deleted"), "{out}");
    let e = err(rd, "nh", &["--get", "20"]);
    assert!(e.starts_with("nh: ") && e.contains("20"), "{e}");
    let e = err(rd, "rt", &["--delete", "--vrf", "1", "--prefix", "192.168.50.0/24"]);
    assert!(e.starts_with("rt: "), "{e}");
    assert_eq!(json(rd, "rt", &["--dump", "1"]), routes_before);
    assert!(generation(rd) > gen0);

    // vif --add hot-plugs a pcap vdev; vif --get reads it from the stats region.
    let rx = guard.path().join("in9.pcap");
    write_pcap(&rx, &[]);
    let devargs = format!("rx_pcap={}", rx.display());
    let out = ok(
        rd,
        "vif",
        &[
            "--add",
            "tap-vm9",
            "--id",
            "9",
            "--type",
            "virtual",
            "--device",
            "net_pcap9",
            "--devargs",
            &devargs,
            "--mac",
            "00:00:5e:00:01:00",
            "--vrf",
            "1",
            "--ip",
            "192.168.1.9",
        ],
    );
    assert!(out.starts_with("vif0/9 (tap-vm9) added"), "{out}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let o = run(rd, "vif", &["--get", "9"]);
        if o.status.success() {
            assert!(String::from_utf8_lossy(&o.stdout).contains("Name: tap-vm9"));
            break;
        }
        assert!(Instant::now() < deadline, "vif 9 did not appear: {}", String::from_utf8_lossy(&o.stderr));
        std::thread::sleep(Duration::from_millis(50));
    }
    let e = err(
        rd,
        "vif",
        &[
            "--add",
            "tap-vm10",
            "--id",
            "10",
            "--type",
            "virtual",
            "--device",
            "net_pcap10",
            "--mac",
            "00:00:5e:00:01:00",
        ],
    );
    assert_eq!(e.trim(), "--add needs --vrf");
    ok(rd, "vif", &["--delete", "9"]);
    let e = err(rd, "vif", &["--delete", "9"]);
    assert!(e.starts_with("vif: "), "{e}");

    // Stopped: flow --get still prints the blocks and says the routes are unavailable;
    // vrouter-info prints the regions' part.
    stop(&mut child);
    let o = run(rd, "flow", &["--get", &idx]);
    if o.status.success() {
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(text.contains("Route information unavailable: control socket unreachable"), "{text}");
    }
    let o = run(rd, "rt", &["--dump", "1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not running"));
}
