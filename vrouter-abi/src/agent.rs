//! The agent's `status` reply on the control socket (`{"cmd": "status"}`): its counters,
//! declared once ([`AgentCounters::FIELDS`]: the tools and the Prometheus exporter take key,
//! type and help from there), and the flow setup latency (miss to action programmed) with
//! its percentiles and a bucketed histogram ([`SETUP_LATENCY_BOUNDS_NS`]).
//!
//! ```text
//! {"ok": true, "counters": {"setups": 12, ...},
//!  "setup_latency_ns": {"count": 12, "p50": 5000, ..., "sum": 71000, "buckets": [0, 3, ...]}}
//! ```

use serde::{Deserialize, Serialize};

crate::described_figures! {
    /// Counters of the agent thread.
    pub struct AgentCounters {
        /// The forward flow is programmed from the lcore's setup request, the reverse flow
        /// created.
        setups: Counter "Flow pairs set up";
        setup_denied: Counter "Flow pairs set up whose decision was deny (both flows DROP)";
        setup_stale: Counter "Setup requests that found their flow reused, deleted or already set up";
        aged: Counter "Flow pairs (or lone flows) deleted after being idle for the age timeout";
        tcp_evicted: Counter "TCP pairs evicted after FIN both ways or a RST";
        hold_audited: Counter "Flows stuck in HOLD past the audit time, made DROP flows (reason Audit)";
        policy_reloads: Counter "Successful reload commands (configuration re-read, new policy engine)";
        reevaluated: Counter "Flow pairs re-evaluated against new policies or forwarding state";
        reevaluated_changed: Counter "Flows whose action or flags changed on re-evaluation";
        state_deleted: Counter "Flows deleted because their vif or VRF was deleted at runtime";
        adopted: Counter "Flows of a reattached table whose agent state was rebuilt from the entry";
        adopted_held: Counter "Flows of a reattached table found in HOLD and set up again";
    }
    extra {}
}

/// Upper bounds (ns) of the setup latency histogram's buckets: 1-2-5 steps from 1 µs to 1 s;
/// bucket `i` counts the setups that took more than bound `i - 1` and at most bound `i`, the
/// last bucket those that took more than 1 s.
pub const SETUP_LATENCY_BOUNDS_NS: [u64; 19] = [
    1_000,
    2_000,
    5_000,
    10_000,
    20_000,
    50_000,
    100_000,
    200_000,
    500_000,
    1_000_000,
    2_000_000,
    5_000_000,
    10_000_000,
    20_000_000,
    50_000_000,
    100_000_000,
    200_000_000,
    500_000_000,
    1_000_000_000,
];

/// The bucket of [`SETUP_LATENCY_BOUNDS_NS`] a setup of `ns` nanoseconds falls in.
pub fn setup_latency_bucket(ns: u64) -> usize {
    SETUP_LATENCY_BOUNDS_NS.partition_point(|&b| b < ns)
}

/// Flow setup latency, from the lcore's miss to the action programmed (ns).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupLatency {
    /// Setups measured.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
    /// Sum of every latency measured.
    #[serde(default)]
    pub sum: u64,
    /// Setups per bucket of [`SETUP_LATENCY_BOUNDS_NS`] (not cumulative; one more than the
    /// bounds: the last is above 1 s). Empty from an agent that does not keep them.
    #[serde(default)]
    pub buckets: Vec<u64>,
}

/// The reply to `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatus {
    /// The agent's counters.
    pub counters: AgentCounters,
    /// Flow setup latency.
    pub setup_latency_ns: SetupLatency,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_follow_the_bounds() {
        assert_eq!(setup_latency_bucket(0), 0);
        assert_eq!(setup_latency_bucket(1_000), 0);
        assert_eq!(setup_latency_bucket(1_001), 1);
        assert_eq!(setup_latency_bucket(7_000), 3);
        assert_eq!(setup_latency_bucket(1_000_000_000), 18);
        assert_eq!(setup_latency_bucket(1_000_000_001), 19);
        assert!(SETUP_LATENCY_BOUNDS_NS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn counters_are_declared_once() {
        let c = AgentCounters { setups: 4, adopted_held: 1, ..Default::default() };
        let v = c.values();
        assert_eq!(v.len(), AgentCounters::FIELDS.len());
        assert_eq!((v[0].0.key, v[0].1), ("setups", 4));
        assert_eq!((v[11].0.key, v[11].1), ("adopted_held", 1));
        // The reply of an older agent (fewer counters, no buckets) still reads.
        let s: AgentStatus = serde_json::from_str(
            r#"{"ok":true,"counters":{"setups":12},"setup_latency_ns":{"count":12,"p50":1,"p99":2,"p999":3,"max":4}}"#,
        )
        .unwrap();
        assert_eq!((s.counters.setups, s.setup_latency_ns.max, s.setup_latency_ns.buckets.len()), (12, 4, 0));
    }
}
