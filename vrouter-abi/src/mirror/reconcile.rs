//! Mirror reconciliation: the packets of the flows mirrored to an analyzer (or by a rule)
//! next to the copies sent, with every packet that has no copy explained.
//!
//! The mirror blueprint's purpose: "compare number of packets matching a network policy to
//! the number of packets mirrored". For each mirror of a flow (primary or secondary) the
//! flow table keeps what makes the two differ ([`FlowShare`]), so that
//!
//! ```text
//! packets = copies sent + copies lost + packets before the rule + packets held and dropped
//! ```
//!
//! holds to the packet: a copy that was due and not sent is *lost* (its reason is in the
//! entry's counters and the drop table), a flow set up before the rule that mirrors it had
//! counted packets *before the rule* (set aside when its mirroring was turned on), and a
//! packet dropped while its flow waited in HOLD was counted on the flow and never copied.
//! What is left, [`Balance::unexplained_packets`], is zero except for packets that were in
//! flight on another core at the moment a flow's mirroring changed.
//!
//! The `mirror --reconcile` tool sums the shares of the live flows; the collector sums the
//! same figures from the exported flow records. Both report a [`Balance`] per analyzer and
//! per rule with these field names.

use serde::{Deserialize, Serialize};

/// One mirror's share of one flow: the flow's packets and bytes, the copies sent to that
/// mirror and what explains the packets without one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowShare {
    /// Packets of the flow (the packets matching the rule).
    pub packets: u64,
    /// Bytes of the flow.
    pub bytes: u64,
    /// Copies sent to this mirror.
    pub sent_packets: u64,
    /// Bytes of those copies (encapsulation included).
    pub sent_bytes: u64,
    /// Copies due to this mirror and not sent.
    pub lost_packets: u64,
    /// Packets counted before the flow's mirroring was turned on.
    pub before_mirror_packets: u64,
    /// Packets dropped while the flow waited in HOLD.
    pub held_dropped_packets: u64,
}

/// Flows of one analyzer (or rule) summed: the packets matching, the copies sent and what
/// explains the difference.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    /// Flows mirrored (to this analyzer, or by this rule).
    pub flows: u64,
    /// Packets of those flows.
    pub packets: u64,
    /// Bytes of those flows.
    pub bytes: u64,
    /// Copies sent.
    pub sent_packets: u64,
    /// Bytes of the copies sent.
    pub sent_bytes: u64,
    /// Copies due and not sent.
    pub lost_packets: u64,
    /// Packets the flows counted before their mirroring was turned on.
    pub before_mirror_packets: u64,
    /// Packets dropped while the flows waited in HOLD.
    pub held_dropped_packets: u64,
    /// `packets - sent - lost - before - held`: 0 unless packets were in flight while a
    /// flow's mirroring changed (negative: copied and set aside both).
    pub unexplained_packets: i64,
}

impl Balance {
    /// Adds one flow's share.
    pub fn add(&mut self, s: &FlowShare) {
        self.flows += 1;
        self.packets = self.packets.wrapping_add(s.packets);
        self.bytes = self.bytes.wrapping_add(s.bytes);
        self.sent_packets = self.sent_packets.wrapping_add(s.sent_packets);
        self.sent_bytes = self.sent_bytes.wrapping_add(s.sent_bytes);
        self.lost_packets = self.lost_packets.wrapping_add(s.lost_packets);
        self.before_mirror_packets = self.before_mirror_packets.wrapping_add(s.before_mirror_packets);
        self.held_dropped_packets = self.held_dropped_packets.wrapping_add(s.held_dropped_packets);
        self.unexplained_packets = self.unexplained();
    }

    /// What the explained terms leave of `packets`.
    pub fn unexplained(&self) -> i64 {
        let explained = i128::from(self.sent_packets)
            + i128::from(self.lost_packets)
            + i128::from(self.before_mirror_packets)
            + i128::from(self.held_dropped_packets);
        (i128::from(self.packets) - explained) as i64
    }

    /// Whether every packet is explained.
    pub fn balanced(&self) -> bool {
        self.unexplained() == 0
    }

    /// The identity in words: `12 = 9 sent + 2 lost + 1 before the rule + 0 held and
    /// dropped` (with `+ N unexplained` when it does not balance).
    pub fn identity(&self) -> String {
        let mut s = format!(
            "{} = {} sent + {} lost + {} before the rule + {} held and dropped",
            self.packets, self.sent_packets, self.lost_packets, self.before_mirror_packets, self.held_dropped_packets
        );
        let u = self.unexplained();
        if u != 0 {
            s.push_str(&format!(" {} {} unexplained", if u < 0 { '-' } else { '+' }, u.unsigned_abs()));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balance_adds_shares_and_states_the_identity() {
        let mut b = Balance::default();
        b.add(&FlowShare {
            packets: 10,
            bytes: 1000,
            sent_packets: 7,
            sent_bytes: 900,
            lost_packets: 2,
            before_mirror_packets: 0,
            held_dropped_packets: 1,
        });
        b.add(&FlowShare { packets: 5, bytes: 500, before_mirror_packets: 5, ..FlowShare::default() });
        assert_eq!((b.flows, b.packets, b.bytes, b.sent_packets, b.sent_bytes), (2, 15, 1500, 7, 900));
        assert!(b.balanced());
        assert_eq!(b.unexplained_packets, 0);
        assert_eq!(b.identity(), "15 = 7 sent + 2 lost + 5 before the rule + 1 held and dropped");
        // A packet in flight while mirroring was turned on: copied and set aside.
        b.add(&FlowShare { packets: 3, sent_packets: 2, before_mirror_packets: 2, ..FlowShare::default() });
        assert_eq!(b.unexplained_packets, -1);
        assert!(!b.balanced());
        assert!(b.identity().ends_with("held and dropped - 1 unexplained"), "{}", b.identity());
        let v = serde_json::to_value(b).unwrap();
        assert_eq!(v["unexplained_packets"], -1);
        assert_eq!(serde_json::from_value::<Balance>(v).unwrap(), b);
    }
}
