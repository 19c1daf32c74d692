//! Exporter scan cost on a table of 1M active flows.
//!
//! `cargo run --release -p vrouter --example export_scan_bench [flows] [dir]`
//!
//! Creates a flow table (in `dir`, default `/dev/shm`) with `flows` (default 1 048 576)
//! programmed, mirrored flows, then measures with the real [`FlowScanner`]:
//! 1. the first full sweep (every flow new: metadata, policy evaluation, setup record);
//! 2. a full sweep after traffic on 10 % of the flows (periodic records);
//! 3. a full sweep with no change (the steady-state cost of watching the table);
//! 4. one timer tick at the configured slice size.
//!
//! Wall time and the thread's CPU time (`/proc/thread-self/schedstat`) for each; records are
//! counted (and encoded into Sandesh frames in step 2, as the session would).

use flow_table::{Action, FlowKey, FlowTable, FlowTableConfig, FlowUpdate};
use sandesh::{encode_message, FlowLogData, FlowLogDataObject, GeneratorId};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Instant;
use vrouter::agent::export::{FlowScanner, RecordFacts, RecordSink};

const CONFIG: &str = r#"
[eal]
forwarding_cores = [1]
[vrouter]
run_dir = "/tmp/export-bench"
router_ip = "10.10.0.1"
[[vrf]]
id = 0
name = "fabric"
[[vrf]]
id = 1
name = "overlay"
[[vif]]
id = 0
name = "fab"
type = "fabric"
device = "d0"
mac = "02:00:00:00:00:01"
vrf = 0
[[vif]]
id = 1
name = "tap1"
type = "virtual"
device = "d1"
mac = "02:00:00:00:01:01"
ip = "10.1.0.3"
vrf = 1
vn_name = "vn-red"
[[vif]]
id = 2
name = "tap2"
type = "virtual"
device = "d2"
mac = "02:00:00:00:01:02"
ip = "10.2.0.3"
vrf = 1
vn_name = "vn-blue"
[[analyzer]]
name = "an-a"
ip = "10.10.0.20"
[[network_policy]]
name = "red-blue"
vns = ["vn-red", "vn-blue"]
[[network_policy.rule]]
uuid = "10000000-0000-4000-8000-000000000001"
src = "vn:vn-red"
dst = "vn:vn-blue"
protocol = "tcp"
action = "pass"
mirror_to = ["an-a"]
[export]
enabled = true
"#;

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

struct Counting {
    n: u64,
    encode: bool,
    batch: Vec<FlowLogData>,
    out: Vec<u8>,
    scratch: String,
    gen: GeneratorId,
}

impl RecordSink for Counting {
    fn send(&mut self, rec: FlowLogData, _: &RecordFacts) -> bool {
        self.n += 1;
        if self.encode {
            self.batch.push(rec);
            if self.batch.len() == 16 {
                let h = self.gen.header::<FlowLogDataObject>(0, 0, 6, 0);
                let msg = FlowLogDataObject { flowdata: std::mem::take(&mut self.batch) };
                self.out.clear();
                encode_message(&mut self.out, &mut self.scratch, &h, &msg).unwrap();
            }
        }
        true
    }
}

fn measure(what: &str, flows: u32, f: impl FnOnce() -> u64) {
    let (t, c) = (Instant::now(), cpu_ns());
    let records = f();
    let wall = t.elapsed().as_secs_f64();
    let cpu = (cpu_ns() - c) as f64 / 1e9;
    println!(
        "{what:<44} wall {wall:>7.3} s  cpu {cpu:>7.3} s  records {records:>8}  ({:.0} ns/entry)",
        wall * 1e9 / f64::from(flows)
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let flows: u32 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1 << 20);
    let dir = std::path::PathBuf::from(args.next().unwrap_or_else(|| "/dev/shm".into()));
    let path = dir.join(format!("export-bench-flow.{}", std::process::id()));
    let cfg = vrouter::config::parse(CONFIG, "bench").expect("config");
    let table = Arc::new(
        FlowTable::create(
            &path,
            &FlowTableConfig { main_entries: flows.next_power_of_two(), overflow_entries: 0, max_lcores: 1 },
        )
        .expect("flow table"),
    );
    let _ = std::fs::remove_file(&path); // the mapping stays valid
    let t = Instant::now();
    let mut idx = Vec::with_capacity(flows as usize);
    let mut up = FlowUpdate::new(Action::Forward);
    up.mirror = Some(0);
    let mut i = 0u32;
    while idx.len() < flows as usize {
        let k = FlowKey::v4(
            1,
            6,
            Ipv4Addr::new(10, 1, 0, 3),
            Ipv4Addr::from(0x0a02_0000 | (i >> 16)),
            (i & 0xffff) as u16,
            80,
        );
        i += 1;
        let Ok(l) = table.lookup_or_hold(&k, k.hash(), 1) else {
            break;
        };
        let f = l.index();
        let g = table.entry(f).unwrap().gen();
        table.set_action(f, g, &up).unwrap();
        table.account(f, 100, 2);
        table.account_mirror(f, false, 120);
        idx.push(f);
    }
    let n = idx.len() as u32;
    println!("table: {} entries, {n} active flows, filled in {:.1} s", table.capacity(), t.elapsed().as_secs_f64());
    let rss_table = rss_kb();
    println!("RSS after filling the table: {rss_table} kB");
    let mut scanner = FlowScanner::new(&cfg, table.clone()).expect("scanner");
    let slice = scanner.slice();
    let mut sink = Counting {
        n: 0,
        encode: false,
        batch: Vec::new(),
        out: Vec::new(),
        scratch: String::new(),
        gen: GeneratorId {
            source: "host1".into(),
            module: "contrail-vrouter-agent".into(),
            node_type: "Compute".into(),
            instance_id: "0".into(),
        },
    };
    let cap = table.capacity();
    measure("1. first sweep (all flows new)", cap, || {
        scanner.sweep(&mut sink);
        sink.n
    });
    for &f in idx.iter().step_by(10) {
        table.account(f, 100, 3);
        table.account_mirror(f, false, 120);
    }
    sink.n = 0;
    sink.encode = true;
    measure("2. sweep, 10% changed (records encoded)", cap, || {
        scanner.sweep(&mut sink);
        sink.n
    });
    sink.n = 0;
    sink.encode = false;
    measure("3. sweep, nothing changed", cap, || {
        scanner.sweep(&mut sink);
        sink.n
    });
    sink.n = 0;
    measure(&format!("4. one tick ({slice} entries)"), slice, || {
        scanner.tick(&mut sink);
        sink.n
    });
    let rss = rss_kb();
    println!(
        "RSS after the sweeps: {rss} kB; exporter state {} kB ({} bytes per active flow)",
        rss - rss_table,
        (rss - rss_table) * 1024 / u64::from(n)
    );
    let ticks_per_sweep = f64::from(cap) / f64::from(slice);
    println!(
        "configured: slice {slice} per 100 ms tick, {ticks_per_sweep:.0} ticks per sweep ({:.1} s)",
        ticks_per_sweep * 0.1
    );
}
