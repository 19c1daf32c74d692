//! The counters of the region, each declared once: one line (field name, which is also its
//! JSON key, and help text) generates the field of the shared `#[repr(C)]` block (an
//! `AtomicU64`, in line order), the field of the summed view (a `u64`), the summing code, and
//! the entry of the view's [`CounterField`] list that tools and exporters iterate.
//!
//! Adding a counter is adding one line (and bumping [`super::LAYOUT_VERSION`]: the block's
//! size or offsets change; `layout.rs` asserts them).

use std::sync::atomic::AtomicU64;

use super::layout::{bump, load, pad_words};
use crate::drop_reason::DROP_REASON_COUNT;

/// One counter of a summed view: its JSON key (the field name) and what it counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CounterField {
    /// Field name and JSON key.
    pub key: &'static str,
    /// What the counter counts.
    pub help: &'static str,
}

macro_rules! counters {
    (
        $(#[$smeta:meta])*
        pub struct $Sum:ident { $( $(#[$xdoc:meta])* extra $xfield:ident, )* }
        $(#[$bmeta:meta])*
        pub(crate) struct $Block:ident { $( $(#[$tdoc:meta])* tail $tfield:ident: $tty:ty, )* }
        counters {
            $( $(#[$doc:meta])* $field:ident: $help:literal; )*
        }
    ) => {
        $(#[$smeta])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct $Sum {
            $(
                $(#[$doc])*
                #[doc = concat!("\n\n", $help, ".")]
                pub $field: u64,
            )*
            $( $(#[$xdoc])* pub $xfield: u64, )*
        }

        $(#[$bmeta])*
        #[repr(C, align(64))]
        pub(crate) struct $Block {
            $( $(#[$doc])* pub $field: AtomicU64, )*
            $( $(#[$tdoc])* pub $tfield: $tty, )*
        }

        impl $Sum {
            /// The block's counters, in layout order (the extras are not in the list).
            pub const FIELDS: &'static [CounterField] = &[$(CounterField { key: stringify!($field), help: $help },)*];

            /// Each counter of [`Self::FIELDS`] with its value, in the same order.
            pub fn values(&self) -> [(&'static str, u64); [$(stringify!($field),)*].len()] {
                [$((stringify!($field), self.$field),)*]
            }

            /// Adds one block's counters (wrapping, `Relaxed` loads).
            pub(crate) fn add_block(&mut self, b: &$Block) {
                $( self.$field = self.$field.wrapping_add(load(&b.$field)); )*
            }

            /// Adds these counts to a block its one writer owns ([`bump`]; zeros are
            /// skipped, so only the counters that moved are written).
            pub(crate) fn bump_block(&self, b: &$Block) {
                $( if self.$field != 0 { bump(&b.$field, self.$field); } )*
            }
        }
    };
}

/// Scalar counters of a vif block (before its drop counters).
pub(crate) const VIF_SCALARS: usize = VifCounters::FIELDS.len();
const VIF_DROP_PAD: usize = pad_words(VIF_SCALARS + DROP_REASON_COUNT);
const LCORE_DROP_PAD: usize = pad_words(DROP_REASON_COUNT);
/// Counters of a VRF block.
pub(crate) const VRF_SCALARS: usize = VrfCounters::FIELDS.len();
const VRF_PAD: usize = pad_words(VRF_SCALARS);

counters! {
    /// Counters of one vif, summed over lcores or of a single lcore.
    pub struct VifCounters {
        /// Sum of this vif's per-reason drop counters (`Drops:` in `vif --list`).
        extra drops,
    }
    /// One vif's counters within one lcore block.
    pub(crate) struct VifCounterBlock {
        /// Per-reason drop counters, by [`crate::drop_reason::DropReason::index`].
        tail drops: [AtomicU64; DROP_REASON_COUNT],
        /// Pads the block to whole cache lines.
        tail _pad: [u64; VIF_DROP_PAD],
    }
    counters {
        rx_packets: "Packets received on the vif";
        rx_bytes: "Bytes received on the vif";
        rx_errors: "Receive errors";
        tx_packets: "Packets sent on the vif";
        tx_bytes: "Bytes sent on the vif";
        tx_errors: "Packets the vif's TX queue did not take";
        /// Interface-mirroring copies of this vif's received/transmitted packets sent to the
        /// analyzer (`Mirror packets:`), their bytes as sent (encapsulation included), and
        /// copies that failed.
        mirror_packets: "Interface-mirroring copies sent to the analyzer";
        mirror_bytes: "Bytes of interface-mirroring copies, encapsulation included";
        mirror_errors: "Interface-mirroring copies that failed";
    }
}

counters! {
    /// Per-lcore loop counters.
    pub struct LcoreCounters {}
    /// Start of each lcore block: loop counters, then the lcore's global drop counters.
    pub(crate) struct LcoreHead {
        /// Global per-reason drop counters, by [`crate::drop_reason::DropReason::index`].
        tail drops: [AtomicU64; DROP_REASON_COUNT],
        /// Pads the block to whole cache lines.
        tail _pad: [u64; LCORE_DROP_PAD],
    }
    counters {
        busy_polls: "Poll-loop iterations that received at least one packet";
        idle_polls: "Poll-loop iterations that received nothing";
        invalid_vif: "Counter updates ignored because the vif id was >= max_vifs";
        /// vRouter-wide mirror counters (`mir_tpkts`, `mir_bytes`): every copy handed to the
        /// fabric TX queue, flow and interface mirroring alike, with its encapsulation.
        mirror_packets: "Mirror copies sent (mir_tpkts)";
        mirror_bytes: "Bytes of mirror copies sent (mir_bytes)";
        /// Mirror copies that were due but not sent (each also counted under a mirror drop
        /// reason).
        mirror_errors: "Mirror copies that failed";
        /// ICMP error answers to VMs (Time Exceeded) handed to a TX queue (each then counted
        /// as a TX packet of the vif, or as a TX error + `IF TX Discard` if the queue refused
        /// it), and answers not sent because the lcore's `icmp_error_rate` was exhausted.
        icmp_errors_sent: "ICMP error answers to VMs handed to a TX queue";
        icmp_errors_suppressed: "ICMP error answers suppressed by icmp_error_rate";
    }
}

counters! {
    /// Per-lcore performance counters (OVS `dpif-netdev/pmd-perf-show`, VPP `show runtime`),
    /// summed over lcores or of a single lcore: where the loop's TSC cycles go. Each lcore
    /// reads the TSC once at the start of each poll-loop iteration, and once more only for a
    /// second non-empty burst in the same iteration, never per packet ([`super::perf`]).
    pub struct LcorePerf {}
    /// One lcore's performance block, right after its [`LcoreHead`]: the counters, the
    /// burst maxima, the two histograms and the RX queue slots ([`super::perf`]).
    pub(crate) struct LcorePerfBlock {
        /// Most TSC cycles one burst took since the start (or the restart it continues).
        tail burst_cycles_max: AtomicU64,
        /// Most TSC cycles one burst took in the last complete window of about one second.
        tail burst_cycles_max_recent: AtomicU64,
        /// RX queues the lcore polls now (the first [`super::perf::RXQ_SLOTS`] are itemized).
        tail rx_queues: AtomicU64,
        /// Bursts by packet count, by [`super::perf::burst_size_bucket`].
        tail burst_sizes: [AtomicU64; super::perf::BURST_SIZE_BUCKETS],
        /// Pads the histograms to whole cache lines.
        tail _pad: [u64; super::perf::PERF_PAD],
        /// Packets by the TSC cycles per packet of their burst, by
        /// [`super::perf::packet_cycles_bucket`].
        tail packet_cycles: [AtomicU64; super::perf::PACKET_CYCLES_BUCKETS],
        /// Usage of each RX queue the lcore polls, by its position in the lcore's poll list.
        tail rxqs: [super::perf::RxqSlot; super::perf::RXQ_SLOTS],
    }
    counters {
        busy_cycles: "TSC cycles of poll-loop iterations that received packets";
        idle_cycles: "TSC cycles of poll-loop iterations that received nothing";
        bursts: "Non-empty RX bursts";
        burst_packets: "Packets of the non-empty RX bursts";
        /// Each burst is timed from one TSC read to the next (see [`super::perf`]).
        burst_cycles: "TSC cycles spent on non-empty RX bursts, forwarding and transmit included";
    }
}

counters! {
    /// Counters of one VRF (tf-vrouter's `vrfstats`), summed over lcores or of a single
    /// lcore. Each forwarding decision adds to the VRF it was made in: the VRF of the route
    /// or bridge lookup (the receiving vif's), or, for a packet decapsulated from the
    /// fabric, the VRF it is delivered into (the label's vif's, the VNI's). Packets held for
    /// a flow's setup count when they are released and forwarded.
    pub struct VrfCounters {}
    /// One VRF's counters within one lcore block.
    pub(crate) struct VrfCounterBlock {
        /// Pads the block to whole cache lines.
        tail _pad: [u64; VRF_PAD],
    }
    counters {
        discards: "Packets dropped by a discard nexthop (tf Discards)";
        resolves: "ARP requests and IPv6 neighbour solicitations answered by the vRouter (tf Resolves)";
        /// Routed to a receive nexthop, or addressed to the vRouter IP without being a tunnel
        /// it terminates: handed to the host vif.
        receives: "Routed packets handed to the host by a receive nexthop (tf Receives)";
        l2_receives: "Bridged frames handed to the host by a receive nexthop (tf L2 Receives)";
        ecmp_composites: "Packets that took an ECMP nexthop, one member chosen by flow hash (tf Ecmp Composites)";
        l2_encaps: "Bridged frames sent on a local vif by an encap nexthop (tf L2 Encaps)";
        /// Decapsulated MPLSoUDP packets delivered to their VM count here too: the label's
        /// nexthop is an encap nexthop.
        encaps: "Routed packets sent on a local vif by an encap nexthop (tf Encaps)";
        udp_mpls_tunnels: "Packets sent in an MPLSoUDP tunnel (tf Udp Mpls Tunnels)";
        vxlan_tunnels: "Packets sent in a VXLAN tunnel (tf Vxlan Tunnels)";
        mplsoudp_decaps: "MPLSoUDP packets decapsulated into the VRF and forwarded";
        vxlan_decaps: "VXLAN packets decapsulated into the VRF and forwarded";
        no_route_drops: "Packets dropped for want of a route (No L3 Route, No L2 Route)";
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::offset_of;

    #[test]
    fn fields_follow_the_block_layout() {
        let keys: Vec<_> = VifCounters::FIELDS.iter().map(|f| f.key).collect();
        assert_eq!(
            keys,
            [
                "rx_packets",
                "rx_bytes",
                "rx_errors",
                "tx_packets",
                "tx_bytes",
                "tx_errors",
                "mirror_packets",
                "mirror_bytes",
                "mirror_errors"
            ]
        );
        assert_eq!(offset_of!(VifCounterBlock, drops), VIF_SCALARS * 8);
        assert_eq!(LcoreCounters::FIELDS.len() * 8, offset_of!(LcoreHead, icmp_errors_suppressed) + 8);
        let c = LcoreCounters { idle_polls: 7, icmp_errors_suppressed: 2, ..Default::default() };
        let v = c.values();
        assert_eq!((v[1], v[7]), (("idle_polls", 7), ("icmp_errors_suppressed", 2)));
        assert_eq!(VrfCounters::FIELDS.len() * 8, offset_of!(VrfCounterBlock, _pad));
        assert_eq!(VrfCounters::FIELDS[7].key, "udp_mpls_tunnels");
    }

    #[test]
    fn bump_block_adds_only_what_moved() {
        let b = VrfCounterBlock {
            discards: AtomicU64::new(5),
            resolves: AtomicU64::new(0),
            receives: AtomicU64::new(0),
            l2_receives: AtomicU64::new(0),
            ecmp_composites: AtomicU64::new(0),
            l2_encaps: AtomicU64::new(0),
            encaps: AtomicU64::new(0),
            udp_mpls_tunnels: AtomicU64::new(1),
            vxlan_tunnels: AtomicU64::new(0),
            mplsoudp_decaps: AtomicU64::new(0),
            vxlan_decaps: AtomicU64::new(0),
            no_route_drops: AtomicU64::new(0),
            _pad: [0; VRF_PAD],
        };
        VrfCounters { udp_mpls_tunnels: 31, vxlan_decaps: 2, ..Default::default() }.bump_block(&b);
        let mut sum = VrfCounters::default();
        sum.add_block(&b);
        assert_eq!(sum, VrfCounters { discards: 5, udp_mpls_tunnels: 32, vxlan_decaps: 2, ..Default::default() });
    }
}
