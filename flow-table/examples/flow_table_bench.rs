//! Flow-table micro-benchmark: the figures in the crate docs come from this.
//!
//! ```text
//! cargo run --release -p flow-table --example flow_table_bench -- [--dir /dev/shm]
//!     [--flows 1000,65536,1000000] [--load 0.8] [--ops 8000000] [--reps 3]
//! ```
//!
//! For each flow count N: a table with `main_entries = N / load` (overflow: the default
//! 20 %) in `--dir`; N distinct random-looking IPv4 keys inserted in random order
//! (`insert`); then `--ops` packets whose flows are drawn uniformly at random from the N:
//! each packet's key is built from its flow number with a few arithmetic operations (as
//! a parser builds it from headers already in cache; no key array is read) and goes
//! through:
//!
//! * `base`: build the key + hash it (the cost outside the table, for reference);
//! * `lookup`: base + lookup, one packet at a time;
//! * `plain`: hash + lookup + account (`account_as`: owner-lcore plain adds and a store), one at a time;
//! * `batch32`: per burst of 32: hash all and prefetch their buckets, then lookup +
//!   account each;
//! * `burst32`: per burst of 32: hash + prefetch, then `lookup_burst` (tag scan of all 32
//!   and prefetch of the candidate entries, then key compares), then account each.
//!
//! Best of `--reps`, CPU-time ns per packet (or per insert) of the benchmark thread (the
//! machine may be shared). Also prints bytes per flow.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use flow_table::{FlowKey, FlowTable, FlowTableConfig};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (((self.next() >> 32) * n as u64) >> 32) as usize
    }
}

struct Args {
    dir: PathBuf,
    flows: Vec<usize>,
    load: f64,
    ops: usize,
    reps: usize,
}

fn args() -> Args {
    let mut a = Args {
        dir: PathBuf::from("/dev/shm"),
        flows: vec![1000, 65536, 1_000_000],
        load: 0.8,
        ops: 8_000_000,
        reps: 3,
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < v.len() {
        let val = v.get(i + 1).cloned().unwrap_or_default();
        match v[i].as_str() {
            "--dir" => a.dir = PathBuf::from(val),
            "--flows" => a.flows = val.split(',').map(|s| s.parse().expect("--flows N,N,...")).collect(),
            "--load" => a.load = val.parse().expect("--load F"),
            "--ops" => a.ops = val.parse().expect("--ops N"),
            "--reps" => a.reps = val.parse().expect("--reps N"),
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    a
}

/// The key of flow `i`: distinct by construction (the source address carries `i`), other
/// fields scrambled.
#[inline(always)]
fn key_of(i: u32) -> FlowKey {
    let r = u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    FlowKey::v4(
        1 + (r >> 62) as u32,
        if r & 0x100 != 0 { 6 } else { 17 },
        Ipv4Addr::from(0x0a00_0000 + i),
        Ipv4Addr::from((r >> 32) as u32),
        (r >> 16) as u16,
        (r >> 40) as u16,
    )
}

/// CPU time of this thread in nanoseconds: the machine is shared, wall time would count
/// the time other processes run on our CPU.
fn cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid clock id and a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn best<F: FnMut() -> f64>(reps: usize, mut f: F) -> f64 {
    (0..reps).map(|_| f()).fold(f64::INFINITY, f64::min)
}

fn main() {
    let a = args();
    println!(
        "{:>9} {:>9} {:>8} | {:>6} {:>7} {:>7} {:>7} {:>7} {:>7} | {:>7} | {:>6} {:>8} {:>8}",
        "flows",
        "main",
        "oflow%",
        "base",
        "lookup",
        "plain",
        "batch32",
        "burst32",
        "pipe32",
        "insert",
        "B/slot",
        "B/flow",
        "file MiB"
    );
    for &n in &a.flows {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ n as u64);
        let main = ((n as f64 / a.load).ceil() as u32).max(8);
        let cfg = FlowTableConfig { main_entries: main, overflow_entries: 0, max_lcores: 4 };
        let path = a.dir.join(format!("flow-bench-{}", std::process::id()));
        let mut order: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            order.swap(i, rng.below(i + 1));
        }

        // Insert: a fresh table per repetition.
        let mut table = None;
        let insert = best(a.reps, || {
            table = None;
            // Free the previous table's memory first (hugetlbfs may not hold two).
            let _ = std::fs::remove_file(&path);
            let t = FlowTable::create(&path, &cfg).expect("creating the table");
            t.quiescent(0); // this thread is lcore 0 (its own statistics block)
            let t0 = cpu_ns();
            for &i in &order {
                let k = key_of(i as u32);
                black_box(t.lookup_or_hold(&k, k.hash(), 1).expect("room"));
            }
            let ns = (cpu_ns() - t0) as f64 / n as f64;
            table = Some(t);
            ns
        });
        let t = table.expect("built above");
        let st = t.stats();
        assert_eq!(st.used_entries, n as u64);

        // Packets in bursts of 32, flows uniformly at random.
        let ops = a.ops.div_ceil(32) * 32;
        let seed = rng.next() | 1;
        let run = |f: &mut dyn FnMut(&[FlowKey; 32], u64)| -> f64 {
            let mut rng = Rng(seed);
            let mut burst = [key_of(0); 32];
            let t0 = cpu_ns();
            for now in 0..(ops / 32) as u64 {
                for k in burst.iter_mut() {
                    *k = key_of(rng.below(n) as u32);
                }
                f(&burst, now);
                t.quiescent(0); // once per burst loop, as a forwarding lcore does
            }
            (cpu_ns() - t0) as f64 / ops as f64
        };

        let base = best(a.reps, || {
            run(&mut |c, _| {
                for k in c.iter() {
                    black_box(k.hash());
                }
            })
        });
        let lookup = best(a.reps, || {
            run(&mut |c, _| {
                for k in c.iter() {
                    black_box(t.lookup(k, k.hash()));
                }
            })
        });
        let plain = best(a.reps, || {
            run(&mut |c, now| {
                for k in c.iter() {
                    if let Some(i) = t.lookup(k, k.hash()) {
                        t.account_as(0, i, 64, now);
                    }
                }
            })
        });
        let batch = best(a.reps, || {
            run(&mut |c, now| {
                let mut h = [0u32; 32];
                for (hj, k) in h.iter_mut().zip(c) {
                    *hj = k.hash();
                    t.prefetch(*hj);
                }
                for (k, &hj) in c.iter().zip(&h) {
                    if let Some(i) = t.lookup(k, hj) {
                        t.account_as(0, i, 64, now);
                    }
                }
            })
        });
        let burst = best(a.reps, || {
            run(&mut |c, now| {
                let mut h = [0u32; 32];
                for (hj, k) in h.iter_mut().zip(c) {
                    *hj = k.hash();
                    t.prefetch(*hj);
                }
                let mut out = [None; 32];
                t.lookup_burst(c, &h, &mut out);
                for i in out.iter().flatten() {
                    t.account_as(0, *i, 64, now);
                }
            })
        });
        // Software-pipelined: hash + prefetch the buckets of burst k+1 before looking up
        // burst k (what a data plane can do by polling the next burst first).
        let pipe = best(a.reps, || {
            let mut prev: Option<([FlowKey; 32], [u32; 32])> = None;
            let ns = run(&mut |c, now| {
                let mut h = [0u32; 32];
                for (hj, k) in h.iter_mut().zip(c) {
                    *hj = k.hash();
                    t.prefetch(*hj);
                }
                if let Some((pk, ph)) = prev.replace((*c, h)) {
                    let mut out = [None; 32];
                    t.lookup_burst(&pk, &ph, &mut out);
                    for i in out.iter().flatten() {
                        t.account_as(0, *i, 64, now);
                    }
                }
            });
            if let Some((pk, ph)) = prev {
                let mut out = [None; 32];
                t.lookup_burst(&pk, &ph, &mut out);
                for i in out.iter().flatten() {
                    t.account_as(0, *i, 64, 0);
                }
            }
            ns
        });
        // Every packet was counted exactly once per accounting run.
        let total: u64 = t.iter_active().map(|(_, s)| s.packets).sum();
        assert_eq!(total, 4 * a.reps as u64 * ops as u64, "lost or misplaced counts");

        let file = t.header().file_size as f64;
        println!(
            "{:>9} {:>9} {:>7.1}% | {:>6.1} {:>7.1} {:>7.1} {:>7.1} {:>7.1} {:>7.1} | {:>7.1} | {:>6.0} {:>8.0} {:>8.1}",
            n,
            t.main_entries(),
            100.0 * st.used_overflow_entries as f64 / n as f64,
            base,
            lookup,
            plain,
            batch,
            burst,
            pipe,
            insert,
            file / f64::from(t.capacity()),
            file / n as f64,
            file / (1 << 20) as f64
        );
        drop(t);
        let _ = std::fs::remove_file(&path);
    }
    println!("(ns per packet or insert, best of {}; {} packets per run; dir {})", a.reps, a.ops, a.dir.display());
}
