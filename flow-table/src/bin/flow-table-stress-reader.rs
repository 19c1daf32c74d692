//! The reader process of the flow-table stress test (`tests/stress.rs`).
//!
//! `flow-table-stress-reader TABLE STOP_FILE`: maps TABLE read-only and snapshots every
//! active entry, over and over, until STOP_FILE exists. The stress writers add
//! `weight(id)` bytes per packet to the flow whose source address is `10.0.0.0 + id`, where
//! `weight(id)` is the id-th prime above 10 000, so a snapshot whose counters came from
//! another occupant of the slot than its key shows up as `bytes % weight(id) != 0`. Also
//! checks that the stored hash is the key's, that mirror bytes follow the same rule, and
//! that a slot that keeps its key and generation never sees its packet count go down.
//! Prints a one-line summary and exits 0, or prints the first violation and exits 1.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use flow_table::{FlowSnapshot, FlowTableReader};

/// The first `n` primes above 10 000 (the stress test computes the same table).
fn primes(n: usize) -> Vec<u64> {
    let mut out = Vec::with_capacity(n);
    let mut c = 10_001u64;
    while out.len() < n {
        if (2..).take_while(|d| d * d <= c).all(|d| !c.is_multiple_of(d)) {
            out.push(c);
        }
        c += 2;
    }
    out
}

fn check(s: &FlowSnapshot, weights: &[u64], last: &mut HashMap<u32, (u16, u64, u64)>) -> Result<(), String> {
    let IpAddr::V4(src) = s.key.src_ip() else { return Err(format!("unexpected v6 key {:?}", s.key)) };
    let id = u32::from(src).wrapping_sub(0x0a00_0000) as usize;
    let Some(&w) = weights.get(id) else { return Err(format!("key {:?} is not a stress key", s.key)) };
    if s.hash != s.key.hash() {
        return Err(format!("entry {}: stored hash {:#x} is not the hash of its key {:?}", s.index, s.hash, s.key));
    }
    if !s.bytes.is_multiple_of(w) || !s.mirror_bytes.is_multiple_of(w) {
        return Err(format!(
            "entry {} gen {}: key {:?} (weight {w}) has bytes {} / mirror bytes {}: counters of another flow",
            s.index, s.gen, s.key, s.bytes, s.mirror_bytes
        ));
    }
    // Packets are read before bytes; at most one add per writer (two writers) is between
    // a packet increment and its byte increment.
    if s.bytes / w + 2 < s.packets {
        return Err(format!(
            "entry {}: {} packets but only {} bytes ({} packets' worth)",
            s.index,
            s.packets,
            s.bytes,
            s.bytes / w
        ));
    }
    match last.get(&s.index) {
        Some(&(gen, seen_id, packets)) if gen == s.gen && seen_id == id as u64 && s.packets < packets => {
            return Err(format!("entry {} gen {}: packets went down from {packets} to {}", s.index, s.gen, s.packets));
        }
        _ => {}
    }
    last.insert(s.index, (s.gen, id as u64, s.packets));
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: {} TABLE STOP_FILE", args[0]);
        return ExitCode::from(2);
    }
    let (table, stop) = (Path::new(&args[1]), Path::new(&args[2]));
    let r = match FlowTableReader::open(table) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("stress reader: {e}");
            return ExitCode::from(1);
        }
    };
    let weights = primes(4096);
    let mut last = HashMap::new();
    let (mut passes, mut snapshots, mut nonzero, mut torn) = (0u64, 0u64, 0u64, 0u64);
    let start = Instant::now();
    // SAFETY: getppid has no preconditions.
    let parent = unsafe { libc::getppid() };
    // Also stops if the test process died (reparented) or after two minutes.
    // SAFETY: as above.
    while !stop.exists() && start.elapsed() < Duration::from_secs(120) && unsafe { libc::getppid() } == parent {
        for s in r.iter_active() {
            if let Err(e) = check(&s, &weights, &mut last) {
                eprintln!("stress reader: VIOLATION: {e}");
                return ExitCode::from(1);
            }
            snapshots += 1;
            nonzero += u64::from(s.packets > 0);
        }
        // Point reads of every slot too (the agent's access pattern).
        for i in (passes as u32 % 7..r.capacity()).step_by(7) {
            match r.snapshot(i) {
                Ok(Some(s)) => {
                    if let Err(e) = check(&s, &weights, &mut last) {
                        eprintln!("stress reader: VIOLATION: {e}");
                        return ExitCode::from(1);
                    }
                    snapshots += 1;
                }
                Ok(None) => {}
                Err(_) => torn += 1,
            }
        }
        passes += 1;
    }
    let st = r.stats();
    println!(
        "stress reader: {passes} passes, {snapshots} snapshots checked ({nonzero} with traffic), {torn} gave up as torn, table created {} deleted {}",
        st.created, st.deleted
    );
    ExitCode::SUCCESS
}
