//! A restart keeps the vRouter's state: two VMs on vhost-user exchange traffic on flows a
//! policy mirrors to an analyzer, one flow traced, flows and UVEs exported to a real
//! collector; the vRouter is then stopped and started (SIGTERM), killed and started
//! (SIGKILL), or taken over by a new process (`--takeover`), and the VMs send more on the same
//! flows.
//!
//! Checked after each: the same flows at the same indices and generations, with their rule
//! UUIDs; no new flow setup (table and agent counters); every flow's counters equal the
//! ground truth of what the guests sent (before + after, exactly); vif, drop and mirror
//! counters continue; the trace recorded before the restart is still listed and readable; and
//! the collector's per-flow `agg-bytes`, `agg-packets` and mirror aggregates equal the data
//! plane's (nothing double counted, nothing lost).

mod common;

use common::vm_host::*;
use common::*;
use flow_table::{Action, FlowSnapshot, FlowTableReader};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use vrouter_abi::stats::VIF_LINK_UP;

const ANALYZER: &str = "default-domain:demo:analyzer-a";
const RULE: &str = "cccccccc-0000-4000-8000-000000000001";
const ADMIN_TOKEN: &str = "admin-token-0123456789";
/// Flows from VM 1 (source ports 40000..) to VM 2's port 5201, and their answers.
const FLOWS: u16 = 6;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum How {
    Stop,
    Kill,
    Takeover,
}

fn extra(sandesh: SocketAddr) -> String {
    format!(
        r#"
[flow]
entries = 4096

{ANALYZER_NET}

[[analyzer]]
name = "{ANALYZER}"
ip = "10.20.0.10"

[[network_policy]]
name = "mirror-everything"
vns = ["default-domain:demo:vn1"]
[[network_policy.rule]]
uuid = "{RULE}"
action = "pass"
mirror_to = ["{ANALYZER}"]

{export}"#,
        export = export_to(sandesh, "restart-vrouter")
    )
}

fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, Value) {
    http_json(&addr.to_string(), method, path, None, Some(body))
}

/// The collector's flow records by UUID.
fn records(http_addr: SocketAddr) -> BTreeMap<String, Value> {
    let q = json!({
        "table": "FlowRecordTable", "start_time": "now-10m", "end_time": "now",
        "select_fields": ["UuidKey", "agg-bytes", "agg-packets", "agg-mir-bytes", "agg-mir-packets"],
    });
    let (code, v) = http(http_addr, "POST", "/analytics/query", &q.to_string());
    assert_eq!(code, 200, "{v}");
    v["value"].as_array().unwrap().iter().map(|r| (r["UuidKey"].as_str().unwrap().to_string(), r.clone())).collect()
}

fn flows(run_dir: &std::path::Path) -> BTreeMap<(u16, u16), FlowSnapshot> {
    let r = FlowTableReader::open_run_dir(run_dir).expect("flow table");
    r.iter_active().map(|f| ((f.key.sport(), f.key.dport()), f)).collect()
}

/// The flows once their mirror counters caught up: every packet is mirrored, and a flow's mirror
/// counters move when its copy is sent, which may come after the guest received the packet.
fn settled_flows(run_dir: &std::path::Path) -> BTreeMap<(u16, u16), FlowSnapshot> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let f = flows(run_dir);
        if f.values().all(|f| f.mirror_packets == f.packets) || Instant::now() > deadline {
            return f;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the collector holds one record per data-plane flow whose aggregates equal the
/// flow's counters, and every record is one of those flows (no flow counted under two UUIDs).
fn wait_records_match(http_addr: SocketAddr, dp: &BTreeMap<(u16, u16), FlowSnapshot>, when: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let recs = records(http_addr);
        let of = |f: &FlowSnapshot| {
            let prefix = format!("{:08x}-{:04x}-", f.index, f.gen);
            recs.iter().filter(|(u, _)| u.starts_with(&prefix)).map(|(_, r)| r).collect::<Vec<_>>()
        };
        let ok = recs.len() == dp.len()
            && dp.values().all(|f| {
                let r = of(f);
                r.len() == 1
                    && r[0]["agg-bytes"] == json!(f.bytes)
                    && r[0]["agg-packets"] == json!(f.packets)
                    && r[0]["agg-mir-bytes"] == json!(f.mirror_bytes)
                    && r[0]["agg-mir-packets"] == json!(f.mirror_packets)
            });
        if ok {
            return;
        }
        if Instant::now() > deadline {
            let mut why = format!("{} records for {} flows\n", recs.len(), dp.len());
            for f in dp.values() {
                let r: Vec<String> = of(f)
                    .iter()
                    .map(|r| {
                        format!(
                            "{} {} {} {}",
                            r["agg-packets"], r["agg-bytes"], r["agg-mir-packets"], r["agg-mir-bytes"]
                        )
                    })
                    .collect();
                why += &format!(
                    "flow {} gen {}: {} {} {} {} | records {r:?}\n",
                    f.index, f.gen, f.packets, f.bytes, f.mirror_packets, f.mirror_bytes
                );
            }
            let uuids: Vec<&String> = recs.keys().collect();
            panic!("{when}: records never matched the data plane:\n{why}{uuids:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// VM 1 sends `n` frames over the flows to VM 2, VM 2 answers each flow with `n / 2`.
fn traffic(h: &mut Host, tag: &str, n: usize, open: bool) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let (to_vm2, _) = udp_frames(("192.168.1.3", VM1_MAC), ("192.168.1.4", VM2_MAC), n, FLOWS, tag, false);
    let (to_vm1, _) = udp_frames(("192.168.1.4", VM2_MAC), ("192.168.1.3", VM1_MAC), n / 2, FLOWS, tag, true);
    let (base2, base1) = (h.vm2().stats()["received"].as_u64().unwrap(), h.vm1().stats()["received"].as_u64().unwrap());
    if open {
        send_flows(h, 1, 2, &to_vm2, usize::from(FLOWS), tag);
    } else {
        // Established flows: nothing waits for a set-up.
        let p = h.pcap(&format!("{tag}-all"), &to_vm2);
        assert_eq!(h.vm1().send(&p, "0")["sent"], n as u64);
    }
    let r2 = h.vm2().wait_rx(base2 + n as u64, Duration::from_secs(20));
    assert_eq!(r2["received"].as_u64(), Some(base2 + n as u64), "{tag}: {r2}");
    let p = h.pcap(&format!("{tag}-answers"), &to_vm1);
    assert_eq!(h.vm2().send(&p, "0")["sent"], (n / 2) as u64);
    let r1 = h.vm1().wait_rx(base1 + (n / 2) as u64, Duration::from_secs(20));
    assert_eq!(r1["received"].as_u64(), Some(base1 + (n / 2) as u64), "{tag}: {r1}");
    (to_vm2, to_vm1)
}

/// Packets and bytes per flow (source port, destination port) of `frames` (Ethernet, IPv4,
/// UDP): the ground truth of the flow counters (the flow counts the frame's IP length).
fn truth(frames: &[Vec<u8>], into: &mut BTreeMap<(u16, u16), (u64, u64)>) {
    for f in frames {
        let sport = u16::from_be_bytes([f[34], f[35]]);
        let dport = u16::from_be_bytes([f[36], f[37]]);
        let e = into.entry((sport, dport)).or_default();
        e.0 += 1;
        e.1 += (f.len() - 14) as u64;
    }
}

fn restart_keeps_state(how: How, tag: &str) {
    let _s = serial();
    let data = tempfile::tempdir().unwrap();
    let ccfg = collector::config::CollectorConfig {
        sandesh_listen: "127.0.0.1:0".into(),
        http_listen: "127.0.0.1:0".into(),
        data_dir: data.path().to_owned(),
        hostname: "restart-collector".into(),
        admin_token: Some(ADMIN_TOKEN.into()),
        ..Default::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let c = rt.block_on(collector::server::Collector::start(&ccfg)).unwrap();
    let mut h = Host::start_with(tag, &Layout { extra: extra(c.sandesh_addr), ..Layout::default() });
    let run_dir = h.run_dir.clone();

    // A trace of one flow's first packets.
    let r = control(
        &run_dir,
        &json!({"cmd": "trace_add", "condition": {"protocol": 17, "src_port": 40001}, "limit": {"packets": 2}}),
    );
    assert_eq!(r["ok"], true, "{r}");
    let trace_req = r["request"]["id"].as_str().unwrap().to_string();
    assert_eq!(control(&run_dir, &json!({"cmd": "trace_enable", "id": trace_req}))["ok"], true);

    let mut want = BTreeMap::new();
    let (a2, a1) = traffic(&mut h, &format!("{tag}-before"), 60, true);
    truth(&a2, &mut want);
    truth(&a1, &mut want);
    let before = settled_flows(&run_dir);
    assert_eq!(before.len(), 2 * usize::from(FLOWS), "{before:#?}");
    for (k, f) in &before {
        assert_eq!((f.packets, f.bytes), want[k], "flow {k:?} before the restart");
        assert_eq!(f.action, Action::Forward);
    }
    let table_before = FlowTableReader::open_run_dir(&run_dir).unwrap().stats();
    let stats = h.stats();
    let (vif1, vif2) = (stats.vif_counters(1, None), stats.vif_counters(2, None));
    let mirror_before = stats.lcore_counters(None);
    let traces_before = vrouter::trace::TraceReader::open_run_dir(&run_dir).unwrap().records();
    assert!(traces_before.iter().any(|r| r.pkt == 1), "the trace recorded its packets");
    wait_records_match(c.http_addr, &before, "before the restart");
    // The trace's limit is spent, and the vRouter wrote that down (within one agent tick), so
    // no restart traces it again.
    let requests = run_dir.join("trace-requests.json");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&requests).unwrap_or_default().contains(&format!("\"{trace_req}\": 0")) {
        assert!(Instant::now() < deadline, "{}", std::fs::read_to_string(&requests).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(20));
    }

    // The restart.
    let t = Instant::now();
    match how {
        How::Stop => {
            // SIGTERM, as systemd and operators stop it.
            let mut old = h.vrouter.take().unwrap();
            // SAFETY: kill(2) on our own child process.
            unsafe { libc::kill(old.id() as i32, libc::SIGTERM) };
            let st = old.wait().unwrap();
            assert!(st.success(), "the vRouter stopped with {st}");
            h.start_vrouter();
        }
        How::Kill => {
            let mut old = h.vrouter.take().unwrap();
            old.kill().unwrap();
            old.wait().unwrap();
            h.start_vrouter();
        }
        How::Takeover => {
            let mut old = h.vrouter.take().unwrap();
            let mut new = spawn_vrouter_with(&h.cfg, h.prefix.clone(), &["--takeover"]);
            // A takeover runs its EAL under a prefix of its own.
            new.1 = format!("{}.t{}", h.prefix, new.id());
            let st = old.wait().unwrap();
            assert!(st.success(), "the old vRouter stopped with {st}");
            h.adopt_vrouter(new);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !h.stats().vifs().iter().filter(|v| v.id == 1 || v.id == 2).all(|v| v.link == VIF_LINK_UP) {
        if Instant::now() > deadline {
            let mut child = h.vrouter.take().unwrap();
            let out = stop(&mut child);
            panic!("{how:?}: the VMs' links did not come up again; the vRouter said:\n{out}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("{how:?}: forwarding again after {} ms", t.elapsed().as_millis());

    // Same flows, same indices and generations, same verdicts and rule UUIDs.
    let after_restart = flows(&run_dir);
    assert_eq!(
        after_restart.iter().map(|(k, f)| (*k, f.index, f.gen, f.rflow, f.mirror)).collect::<Vec<_>>(),
        before.iter().map(|(k, f)| (*k, f.index, f.gen, f.rflow, f.mirror)).collect::<Vec<_>>()
    );
    for f in after_restart.values() {
        let meta = control(&run_dir, &json!({"cmd": "flow", "index": f.index}));
        assert_eq!(meta["meta"]["nw_ace_uuid"], RULE, "{meta}");
    }
    // Counters continue.
    let s = h.stats();
    assert_eq!(s.vif_counters(1, None).rx_packets, vif1.rx_packets, "vif 1 counters continue");
    assert_eq!(s.vif_counters(2, None).tx_packets, vif2.tx_packets, "vif 2 counters continue");
    assert_eq!(s.lcore_counters(None).mirror_packets, mirror_before.mirror_packets, "mirror counters continue");
    // The trace is still there.
    let out = std::process::Command::new(tool("trace"))
        .arg("--run-dir")
        .arg(&run_dir)
        .args(["--json", "list", "--request", &trace_req])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(listed.as_array().is_some_and(|a| !a.is_empty()), "trace list after the restart: {listed}");
    let traces_after = vrouter::trace::TraceReader::open_run_dir(&run_dir).unwrap().records();
    for r in &traces_before {
        assert!(traces_after.iter().any(|a| a.trace_id == r.trace_id && a.step == r.step), "trace step {r:?} lost");
    }

    // More traffic on the same flows: no new set-up, counters exact.
    let (b2, b1) = traffic(&mut h, &format!("{tag}-after"), 90, false);
    truth(&b2, &mut want);
    truth(&b1, &mut want);
    let after = settled_flows(&run_dir);
    assert_eq!(after.len(), before.len(), "no new flows: {after:#?}");
    for (k, f) in &after {
        assert_eq!((f.index, f.gen), (before[k].index, before[k].gen));
        assert_eq!((f.packets, f.bytes), want[k], "flow {k:?}: before + after exactly");
        assert!(f.mirror_packets >= before[k].mirror_packets);
    }
    let table_after = FlowTableReader::open_run_dir(&run_dir).unwrap().stats();
    assert_eq!((table_after.created, table_after.added), (table_before.created, table_before.added), "no set-up");
    let status = control(&run_dir, &json!({"cmd": "status"}));
    assert_eq!(status["counters"]["setups"], 0, "{status}");
    assert_eq!(status["counters"]["adopted"], json!(after.len()), "{status}");
    let s = h.stats();
    assert_eq!(s.vif_counters(1, None).rx_packets, vif1.rx_packets + 90);
    assert_eq!(s.vif_counters(2, None).tx_packets, vif2.tx_packets + 90);
    // In = out + drops, where out also holds the mirror copies sent on the fabric.
    let (mut rx, mut tx) = (0, 0);
    for v in 0..3u16 {
        rx += s.vif_counters(v, None).rx_packets;
        tx += s.vif_counters(v, None).tx_packets;
    }
    let drops: u64 = s.drops(None).iter().sum();
    let copies = s.lcore_counters(None).mirror_packets;
    assert_eq!(rx + copies, tx + drops, "in {rx} + mirror copies {copies} != out {tx} + drops {drops}");
    assert_eq!(rx, 60 + 30 + 90 + 45, "every packet of both runs received");
    // Analytics: one record per flow, equal to the data plane.
    wait_records_match(c.http_addr, &after, "after the restart");
    // The trace's steps reached the collector once: the restarted exporter did not send the
    // steps carried over from the previous run again.
    let stored = || {
        let (code, list) = http_json(&c.http_addr.to_string(), "GET", "/analytics/traces", Some(ADMIN_TOKEN), None);
        assert_eq!(code, 200, "{list}");
        list["value"].as_array().unwrap().iter().map(|r| r["steps"].as_u64().unwrap()).sum::<u64>()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while stored() < traces_before.len() as u64 {
        assert!(Instant::now() < deadline, "{} of {} trace steps stored", stored(), traces_before.len());
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(stored(), traces_before.len() as u64, "trace steps stored twice");
    h.stop_vrouter();
    rt.block_on(c.stop());
}

#[test]
fn a_stopped_and_started_vrouter_keeps_flows_counters_mirrors_and_traces() {
    restart_keeps_state(How::Stop, "s");
}

#[test]
fn a_killed_and_started_vrouter_keeps_flows_counters_mirrors_and_traces() {
    restart_keeps_state(How::Kill, "k");
}

#[test]
fn a_takeover_keeps_flows_counters_mirrors_and_traces() {
    restart_keeps_state(How::Takeover, "t");
}

/// Patches the layout version (bytes 8..12 of every region header) of the file at `path`,
/// through a mapping (a table on hugetlbfs takes no write(2)).
fn patch_version(path: &std::path::Path) {
    let f = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    // SAFETY: a shared mapping of a region file no process uses any more (its vRouter
    // stopped); only this test touches it while mapped.
    let mut m = unsafe { memmap2::MmapMut::map_mut(&f) }.unwrap();
    let v = u32::from_ne_bytes(m[8..12].try_into().unwrap());
    m[8..12].copy_from_slice(&(v + 100).to_ne_bytes());
    m.flush().unwrap();
}

/// The first `n` bytes of the file at `path` (read through a mapping, as hugetlbfs wants).
fn head(path: &std::path::Path, n: usize) -> Vec<u8> {
    let f = std::fs::File::open(path).unwrap();
    // SAFETY: a read-only mapping of a file no process writes any more.
    let m = unsafe { memmap2::Mmap::map(&f) }.unwrap();
    m[..n.min(m.len())].to_vec()
}

#[test]
fn untrusted_previous_state_is_kept_aside_and_the_vrouter_starts_fresh() {
    let _s = serial();
    // vm1 replays one frame forever: flows, counters and regions to continue.
    let ip = ipv4_udp(ip4("192.168.1.3"), ip4("192.168.1.4"), 64, 4000, 80, b"again");
    let frame = eth(mac(ROUTER_MAC), mac(VM1_MAC), 0x0800, &ip);
    let (mut child, run_dir, guard) = start_live(|d: &std::path::Path, i: usize| {
        let rx = d.join(format!("in{i}.pcap"));
        write_pcap(&rx, if i == 1 { std::slice::from_ref(&frame) } else { &[] });
        let extra = if i == 1 { ",infinite_rx=1" } else { "" };
        format!("net_pcap{i},rx_pcap={}{extra}", rx.display())
    });
    let forwarding = |run_dir: &std::path::Path| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = vrouter::stats::StatsReader::open(run_dir) {
                if r.vif_counters(2, None).tx_packets > 1000 {
                    return r.vif_counters(2, None).tx_packets;
                }
            }
            assert!(Instant::now() < deadline, "vRouter did not start forwarding");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    forwarding(&run_dir);
    stop(&mut child);

    // Another layout version for the flow table and the mirror region, a truncated stats
    // region, a trace region whose magic is garbage.
    let flow = std::fs::canonicalize(run_dir.join("flow")).unwrap();
    patch_version(&flow);
    patch_version(&run_dir.join("mirror"));
    let stats = std::fs::OpenOptions::new().write(true).open(run_dir.join("stats")).unwrap();
    stats.set_len(100).unwrap();
    let mut trace = std::fs::read(run_dir.join("trace")).unwrap();
    trace[..8].copy_from_slice(b"garbage!");
    std::fs::write(run_dir.join("trace"), &trace).unwrap();
    let kept: Vec<(std::path::PathBuf, Vec<u8>)> =
        [flow.clone(), run_dir.join("mirror"), run_dir.join("stats"), run_dir.join("trace")]
            .into_iter()
            .map(|p| {
                let b = head(&p, 4096);
                (p, b)
            })
            .collect();

    let mut again = spawn_vrouter(&guard.path().join("vrouter.toml"), child.1.clone());
    forwarding(&run_dir);
    let out = stop(&mut again);
    // One line per region names the file and why; the vRouter started fresh and exited 0
    // (`stop` checks the exit status).
    assert!(out.contains("the previous flow table was not reattached") && out.contains("version"), "{out}");
    for name in ["mirror", "stats", "trace"] {
        let line = out.lines().find(|l| l.contains(&format!("{}", run_dir.join(name).display())) && l.contains(".old"));
        assert!(line.is_some(), "no set-aside line for {name}:\n{out}");
    }
    // The old files are kept, byte for byte, next to the fresh ones.
    for (p, bytes) in kept {
        let old = p.with_file_name(format!("{}.old", p.file_name().unwrap().to_string_lossy()));
        assert!(old.exists(), "{} not kept", old.display());
        let now = head(&old, 4096);
        let first_diff = now.iter().zip(&bytes).position(|(a, b)| a != b);
        assert!(now.len() == bytes.len() && first_diff.is_none(), "{} changed at byte {first_diff:?}", old.display());
    }
    let r = FlowTableReader::open_run_dir(&run_dir).unwrap();
    assert_eq!(r.iter_active().count(), 2, "a fresh table with the one flow pair set up again");
}
