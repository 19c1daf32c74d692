//! Per-VRF counting of forwarding decisions (the counters of `vrfstats`,
//! [`VrfCounters`]).
//!
//! The pipeline counts each decision where it makes it (a discard, receive, encap or
//! tunnel nexthop taken, an ECMP member chosen, an ARP / ND answer, a decapsulation, a
//! missing route) through a [`VrfCount`]: `vc.count(vrf, |c| &mut c.encaps)`. The counter is
//! picked by a field projection, so adding a counter is its line in
//! `vrouter-abi/src/stats/counters.rs` and the `count` call where its decision is made.
//!
//! [`super::process`] counts into `()`, which compiles the counting away (tests, fuzzing).
//! The data plane counts into a [`VrfTally`]: plain `u64`s of one VRF in the lcore's own
//! memory, written to the lcore's block of the stats region once per burst (or when a
//! packet counts in another VRF), so a packet of the flow-hit path costs a compare and an
//! increment.
//!
//! Only final decisions count: a packet held for its flow's setup (or a fragment parked)
//! is counted when it is run again, and a decision counts once however the packet then
//! leaves (a full TX queue is a vif TX error, not a VRF counter).

use crate::stats::{LcoreStats, VrfCounters};

/// Where the pipeline counts its decisions per VRF.
pub trait VrfCount {
    /// Adds one to the counter that `field` selects, in VRF `vrf`.
    fn count(&mut self, vrf: u32, field: impl FnOnce(&mut VrfCounters) -> &mut u64);
}

/// No counting: every call compiles to nothing.
impl VrfCount for () {
    #[inline(always)]
    fn count(&mut self, _vrf: u32, _field: impl FnOnce(&mut VrfCounters) -> &mut u64) {}
}

/// An lcore's VRF counts not yet in its stats block: those of one VRF at a time.
#[derive(Debug, Default)]
pub struct VrfTally {
    vrf: u32,
    counts: VrfCounters,
}

impl VrfTally {
    /// Writes the counts to `stats` (the lcore's block of VRF `vrf`: only the counters that
    /// moved are written) and starts again from zero.
    #[inline]
    pub fn flush(&mut self, stats: &LcoreStats) {
        stats.vrf_add(self.vrf, &self.counts);
        self.counts = VrfCounters::default();
    }

    /// The VRF being counted and its counts so far.
    pub fn pending(&self) -> (u32, &VrfCounters) {
        (self.vrf, &self.counts)
    }

    /// A packet counts in another VRF than the pending counts: those are written first.
    #[cold]
    #[inline(never)]
    fn switch(&mut self, vrf: u32, stats: &LcoreStats) {
        self.flush(stats);
        self.vrf = vrf;
    }
}

/// A [`VrfTally`] with the lcore's stats handle it flushes to when the VRF changes: what the
/// data plane hands the pipeline for one packet.
pub struct TallySink<'a> {
    /// The lcore's pending counts.
    pub tally: &'a mut VrfTally,
    /// The lcore's counters in the stats region.
    pub stats: &'a LcoreStats,
}

impl VrfCount for TallySink<'_> {
    #[inline(always)]
    fn count(&mut self, vrf: u32, field: impl FnOnce(&mut VrfCounters) -> &mut u64) {
        if vrf != self.tally.vrf {
            self.tally.switch(vrf, self.stats);
        }
        let c = field(&mut self.tally.counts);
        *c = c.wrapping_add(1);
    }
}

/// Counts per VRF in a map (tests and tools that want every VRF's counts at once).
impl VrfCount for std::collections::BTreeMap<u32, VrfCounters> {
    fn count(&mut self, vrf: u32, field: impl FnOnce(&mut VrfCounters) -> &mut u64) {
        *field(self.entry(vrf).or_default()) += 1;
    }
}

/// Counting only: records no decision.
impl crate::pipeline::Record for TallySink<'_> {}

/// Recording only: counts nothing.
impl VrfCount for crate::pipeline::Decision {
    #[inline(always)]
    fn count(&mut self, _vrf: u32, _field: impl FnOnce(&mut VrfCounters) -> &mut u64) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{StatsReader, StatsRegion};

    #[test]
    fn tally_writes_on_flush_and_on_vrf_change() {
        let dir = tempfile::tempdir().unwrap();
        let region = StatsRegion::create(dir.path(), 2, 1, &[], 0).unwrap();
        let stats = region.lcore(0).unwrap();
        let mut tally = VrfTally::default();
        let mut sink = TallySink { tally: &mut tally, stats: &stats };
        sink.count(1, |c| &mut c.encaps);
        sink.count(1, |c| &mut c.encaps);
        assert_eq!(region.vrf_counters(1, None), VrfCounters::default(), "nothing written before a flush");
        sink.count(2, |c| &mut c.vxlan_decaps);
        assert_eq!(region.vrf_counters(1, None).encaps, 2, "VRF 1's counts written when VRF 2 counts");
        tally.flush(&stats);
        assert_eq!(tally.pending(), (2, &VrfCounters::default()));
        tally.flush(&stats);
        let r = StatsReader::open(dir.path()).unwrap();
        assert_eq!(r.vrf_counters(2, None), VrfCounters { vxlan_decaps: 1, ..Default::default() });
        assert_eq!(r.vrf_counters(1, None), VrfCounters { encaps: 2, ..Default::default() });
    }
}
