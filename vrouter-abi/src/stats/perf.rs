//! Per-lcore performance counters: where a forwarding lcore's TSC cycles go, like OVS's
//! `dpif-netdev/pmd-perf-show` and VPP's `show runtime`.
//!
//! Each lcore block holds, after its [`super::LcoreCounters`] head, one performance block
//! (its counters are [`LcorePerf`]) that only that lcore writes, with plain stores
//! ([`super::LcoreStats::iteration`], [`super::LcoreStats::before_burst`],
//! [`super::LcoreStats::after_burst`]):
//!
//! - **busy and idle cycles**: the TSC is read once at the start of every poll-loop
//!   iteration (the loop already did, for its clock); the cycles from one start to the next
//!   go to `busy_cycles` when the iteration received packets, else to `idle_cycles`.
//! - **bursts**: a non-empty RX burst is timed from one TSC read to the next: from the
//!   iteration's start (or the end of the burst before it) to the next iteration's start,
//!   which the loop reads anyway, or, when another queue gives a burst in the same iteration,
//!   to a read just before that one. Its forwarding and transmit flush are in it, and the
//!   polls of empty queues between reads. Counted: bursts, their packets and cycles, the most
//!   cycles one burst took (since start, and in the last complete window of about a second),
//!   the bursts by packet count ([`BURST_SIZE_BOUNDS`]) and the packets by the cycles per
//!   packet of their burst ([`PACKET_CYCLES_BOUNDS`]; the histogram's sum is
//!   `burst_cycles`, its count `burst_packets`), and the same packets, bursts and cycles per
//!   RX queue.
//! - **RX queues**: slot `i` counts the `i`-th queue of the lcore's poll list; the lcore
//!   writes the slot's identity (vif and queue) when its list changes (start, live
//!   programming) and starts the slot's counters again when the queue in it changes. The
//!   first [`RXQ_SLOTS`] queues of a list are itemized; `rx_queues` says how many there are.
//!
//! Nothing is counted per packet: no TSC read beyond the loop's own while an iteration gets
//! one burst (one more for each further burst of the same iteration), and a few stores into
//! the lcore's own cache lines per burst. Cycles are TSC cycles, so wall time: a forwarding
//! thread that shares its CPU counts the time it was descheduled too.

use std::sync::atomic::AtomicU64;

pub use super::counters::LcorePerf;
use super::counters::LcorePerfBlock;
use super::layout::{load, pad_words};

/// Upper bounds of the packets-per-burst histogram's buckets: bucket `i` counts the bursts
/// of more than `BURST_SIZE_BOUNDS[i - 1]` and at most `BURST_SIZE_BOUNDS[i]` packets; the
/// last bucket, those of more than 32 (none: a burst is at most 32).
pub const BURST_SIZE_BOUNDS: [u64; 6] = [1, 2, 4, 8, 16, 32];
/// Buckets of the packets-per-burst histogram (the bounds, plus the overflow bucket).
pub const BURST_SIZE_BUCKETS: usize = BURST_SIZE_BOUNDS.len() + 1;
/// Pad words after the packets-per-burst histogram (to a whole cache line).
pub(crate) const PERF_PAD: usize = pad_words(BURST_SIZE_BUCKETS);

/// Upper bounds of the cycles-per-packet histogram's buckets (TSC cycles, powers of two from
/// 32 to 2^19): bucket `i` counts the packets whose burst took more than
/// `PACKET_CYCLES_BOUNDS[i - 1]` and at most `PACKET_CYCLES_BOUNDS[i]` cycles per packet;
/// the last bucket, more than 2^19.
pub const PACKET_CYCLES_BOUNDS: [u64; 15] = {
    let mut b = [0u64; 15];
    let mut i = 0;
    while i < b.len() {
        b[i] = 1 << (i + 5);
        i += 1;
    }
    b
};
/// Buckets of the cycles-per-packet histogram (the bounds, plus the overflow bucket).
pub const PACKET_CYCLES_BUCKETS: usize = PACKET_CYCLES_BOUNDS.len() + 1;

/// RX queues itemized per lcore (the first ones of its poll list).
pub const RXQ_SLOTS: usize = 32;

/// `ceil(log2(n))` for `n >= 1` (0 for 0 and 1), without a branch.
#[inline(always)]
fn ceil_log2(n: u64) -> usize {
    (64 - n.saturating_sub(1).leading_zeros()) as usize
}

/// The packets-per-burst bucket of a burst of `n` packets.
#[inline(always)]
pub fn burst_size_bucket(n: u64) -> usize {
    ceil_log2(n).min(BURST_SIZE_BUCKETS - 1)
}

/// The cycles-per-packet bucket of a burst of `n` packets that took `cycles` TSC cycles.
#[inline(always)]
pub fn packet_cycles_bucket(cycles: u64, n: u64) -> usize {
    // 32-bit division, once per burst: a burst of more than 2^32 cycles (a second or more)
    // lands in the overflow bucket anyway.
    let per = (cycles.min(u64::from(u32::MAX)) as u32) / (n.clamp(1, u64::from(u32::MAX)) as u32);
    ceil_log2(u64::from(per)).saturating_sub(5).min(PACKET_CYCLES_BUCKETS - 1)
}

/// One RX queue's slot: which queue, and its usage.
#[repr(C, align(32))]
pub(crate) struct RxqSlot {
    /// 0: no queue; else [`rxq_id`] of the queue in the slot.
    pub id: AtomicU64,
    pub packets: AtomicU64,
    pub bursts: AtomicU64,
    pub cycles: AtomicU64,
}

/// The slot identity word of queue `queue` of vif `vif` (never 0).
pub(crate) fn rxq_id(vif: u16, queue: u16) -> u64 {
    1 << 32 | u64::from(vif) << 16 | u64::from(queue)
}

/// One RX queue's usage, as read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RxqUsage {
    /// The vif of the queue's port.
    pub vif: u16,
    /// The queue index on the port.
    pub queue: u16,
    /// Packets received from the queue.
    pub packets: u64,
    /// Non-empty bursts received from the queue.
    pub bursts: u64,
    /// TSC cycles of those bursts.
    pub cycles: u64,
}

/// One lcore's performance counters, as read ([`super::StatsReader::lcore_perf`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LcorePerfStats {
    /// Busy and idle cycles, bursts, their packets and cycles.
    pub counters: LcorePerf,
    /// Most TSC cycles one burst took since start.
    pub burst_cycles_max: u64,
    /// Most TSC cycles one burst took in the last complete window of about a second.
    pub burst_cycles_max_recent: u64,
    /// RX queues the lcore polls (the first [`RXQ_SLOTS`] are in `rxqs`).
    pub rx_queues: u64,
    /// Bursts per bucket of [`BURST_SIZE_BOUNDS`] (not cumulative).
    pub burst_sizes: [u64; BURST_SIZE_BUCKETS],
    /// Packets per bucket of [`PACKET_CYCLES_BOUNDS`] (not cumulative).
    pub packet_cycles: [u64; PACKET_CYCLES_BUCKETS],
    /// The itemized RX queues, in poll order.
    pub rxqs: Vec<RxqUsage>,
}

impl LcorePerfStats {
    /// Reads a block (`Relaxed` loads; the caller fences).
    pub(crate) fn read(b: &LcorePerfBlock) -> LcorePerfStats {
        let mut counters = LcorePerf::default();
        counters.add_block(b);
        let rxqs = b
            .rxqs
            .iter()
            .filter_map(|s| {
                let id = load(&s.id);
                let u = RxqUsage {
                    vif: (id >> 16) as u16,
                    queue: id as u16,
                    packets: load(&s.packets),
                    bursts: load(&s.bursts),
                    cycles: load(&s.cycles),
                };
                // A slot whose queue changed while it was read is left out this time.
                (id != 0 && load(&s.id) == id).then_some(u)
            })
            .collect();
        LcorePerfStats {
            counters,
            burst_cycles_max: load(&b.burst_cycles_max),
            burst_cycles_max_recent: load(&b.burst_cycles_max_recent),
            rx_queues: load(&b.rx_queues),
            burst_sizes: std::array::from_fn(|i| load(&b.burst_sizes[i])),
            packet_cycles: std::array::from_fn(|i| load(&b.packet_cycles[i])),
            rxqs,
        }
    }

    /// Share of the loop's cycles spent in busy iterations, 0..=1 (0 before any).
    pub fn busy_ratio(&self) -> f64 {
        let c = &self.counters;
        let all = c.busy_cycles.saturating_add(c.idle_cycles);
        if all == 0 {
            0.0
        } else {
            c.busy_cycles as f64 / all as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_functions_follow_the_bounds() {
        for n in 1..=40u64 {
            let b = burst_size_bucket(n);
            let upper = BURST_SIZE_BOUNDS.get(b).copied().unwrap_or(u64::MAX);
            let lower = if b == 0 { 0 } else { BURST_SIZE_BOUNDS[b - 1] };
            assert!(n > lower && n <= upper, "n {n} bucket {b}");
        }
        assert_eq!(PACKET_CYCLES_BOUNDS[0], 32);
        assert_eq!(PACKET_CYCLES_BOUNDS[14], 1 << 19);
        for per in [1u64, 31, 32, 33, 64, 65, 100, 1000, 4096, 4097, 1 << 19, (1 << 19) + 1, 1 << 30] {
            for n in [1u64, 7, 32] {
                let b = packet_cycles_bucket(per * n, n);
                let upper = PACKET_CYCLES_BOUNDS.get(b).copied().unwrap_or(u64::MAX);
                let lower = if b == 0 { 0 } else { PACKET_CYCLES_BOUNDS[b - 1] };
                assert!(per > lower && per <= upper, "per {per} n {n} bucket {b}");
            }
        }
        assert_eq!(packet_cycles_bucket(u64::MAX, 1), PACKET_CYCLES_BUCKETS - 1);
        assert_eq!(packet_cycles_bucket(0, 0), 0);
    }
}
