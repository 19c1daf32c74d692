//! What the forwarding lcores and the agent exchange over the flow-setup rings, with no
//! DPDK type in it: the data plane (`datapath`) produces [`SetupRequest`]s, the agent
//! (`agent::flows`) consumes them.

/// A flow setup request from a forwarding lcore to the agent: `flow` was created in HOLD
/// by a packet that entered on `vif`.
#[derive(Debug, Clone, Copy)]
pub struct SetupRequest {
    /// The HOLD flow's index in the flow table.
    pub flow: u32,
    /// Its generation when the lcore created it (a reused index has another: the request is stale).
    pub gen: flow_table::Gen,
    /// The vif the flow's first packet entered on.
    pub vif: u16,
    /// The forwarding lcore that sent the request (the agent tells it on its `done` ring).
    pub lcore: u16,
    /// When the miss happened (TSC), for setup-latency measurement.
    pub tsc: u64,
    /// Trace id and packet number of the packet that asked (0: not traced): the agent
    /// records its policy decision in the trace.
    pub trace: u64,
    /// Packet number within trace `trace` (meaningless when `trace` is 0).
    pub trace_pkt: u32,
}
