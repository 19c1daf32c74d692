//! Why a mirror copy that was due was not sent: the `Mirror *` drop reasons, as per-entry
//! counters (one per reason, flow and interface mirroring apart) and as what reconciliation
//! reports.
//!
//! The reasons are the drop table's ([`DropReason`]): a lost copy counts one drop under its
//! reason (`dropstats`), one error of its entry, and here one under its reason, so the three
//! views agree. [`LOSS_REASONS`] fixes their order in the mirror region's counter blocks
//! (append only, with a layout bump).

use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::drop_reason::DropReason;

/// Number of reasons a copy can be lost for.
pub const N_LOSS_REASONS: usize = 5;

/// The reasons, in counter order.
pub const LOSS_REASONS: [DropReason; N_LOSS_REASONS] = [
    DropReason::MirrorNoEntry,
    DropReason::MirrorNoNh,
    DropReason::MirrorCloneFail,
    DropReason::MirrorEncapFail,
    DropReason::MirrorTxFull,
];

/// Lost copies by reason. Serialized as an object keyed by the drop reason's key
/// (`{"mirror_no_nh": 3, ...}`, every reason present).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LossCounts(pub [u64; N_LOSS_REASONS]);

impl LossCounts {
    /// The counter position of `reason`; `None` for a reason that is not a mirror loss.
    pub fn slot(reason: DropReason) -> Option<usize> {
        LOSS_REASONS.iter().position(|&r| r == reason)
    }

    /// Copies lost for `reason` (0 for a reason that is not a mirror loss).
    pub fn get(&self, reason: DropReason) -> u64 {
        Self::slot(reason).map_or(0, |i| self.0[i])
    }

    /// Adds `n` copies lost for `reason` (ignored for a reason that is not a mirror loss).
    pub fn add(&mut self, reason: DropReason, n: u64) {
        if let Some(i) = Self::slot(reason) {
            self.0[i] = self.0[i].wrapping_add(n);
        }
    }

    /// Every reason with its count, in counter order.
    pub fn iter(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        LOSS_REASONS.iter().copied().zip(self.0.iter().copied())
    }

    /// Copies lost for any reason.
    pub fn total(&self) -> u64 {
        self.0.iter().fold(0u64, |a, &b| a.wrapping_add(b))
    }

    /// The reasons with a non-zero count as `Name N, Name N` (tf names), or `none`.
    pub fn describe(&self) -> String {
        let parts: Vec<String> =
            self.iter().filter(|(_, n)| *n > 0).map(|(r, n)| format!("{} {n}", r.name())).collect();
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }
}

impl Serialize for LossCounts {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(N_LOSS_REASONS))?;
        for (r, n) in self.iter() {
            m.serialize_entry(r.key(), &n)?;
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_by_key_in_counter_order() {
        let mut l = LossCounts::default();
        l.add(DropReason::MirrorNoNh, 3);
        l.add(DropReason::MirrorTxFull, 1);
        l.add(DropReason::FlowActionDrop, 9);
        assert_eq!((l.get(DropReason::MirrorNoNh), l.get(DropReason::FlowActionDrop), l.total()), (3, 0, 4));
        assert_eq!(l.describe(), "Mirror No NH 3, Mirror TX Queue Full 1");
        assert_eq!(LossCounts::default().describe(), "none");
        assert_eq!(
            serde_json::to_string(&l).unwrap(),
            r#"{"mirror_no_entry":0,"mirror_no_nh":3,"mirror_clone_fail":0,"mirror_encap_fail":0,"mirror_tx_full":1}"#
        );
        // Every reason is a `Mirror *` drop reason, each once.
        for (i, r) in LOSS_REASONS.iter().enumerate() {
            assert!(r.key().starts_with("mirror_"), "{r:?}");
            assert_eq!(LossCounts::slot(*r), Some(i));
        }
        let all_mirror = DropReason::ALL.iter().filter(|r| r.key().starts_with("mirror_")).count();
        assert_eq!(all_mirror, N_LOSS_REASONS, "a new mirror drop reason belongs in LOSS_REASONS");
    }
}
