//! What the forwarding lcores and the agent exchange over the flow-setup rings, with no
//! DPDK type in it: the data plane (`datapath`) produces [`SetupRequest`]s, the agent
//! (`agent::flows`) consumes them.

/// A flow setup request from a forwarding lcore to the agent: `flow` was created in HOLD
/// by a packet that entered on `vif`.
#[derive(Debug, Clone, Copy)]
pub struct SetupRequest {
    pub flow: u32,
    pub gen: flow_table::Gen,
    pub vif: u16,
    pub lcore: u16,
    /// When the miss happened (TSC), for setup-latency measurement.
    pub tsc: u64,
    /// Trace id and packet number of the packet that asked (0: not traced): the agent
    /// records its policy decision in the trace.
    pub trace: u64,
    pub trace_pkt: u32,
}
