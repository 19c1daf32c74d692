//! The agent: policy evaluation, flow setup and housekeeping, flow/UVE export and the
//! control socket. It runs as threads of the vrouter process, off the forwarding cores, and
//! builds without DPDK.
//!
//! - [`flows`]: the agent thread (setup requests, aging, HOLD audit, control commands);
//! - [`policy`]: network policies, security groups and mirror analyzers per flow;
//! - [`request`]: the setup requests the forwarding lcores send it;
//! - [`setup`]: one flow pair's setup, shared with the fuzz harness;
//! - [`export`]: flow records and UVEs to analytics collectors over Sandesh;
//! - [`ipfix`]: the same flow records to IPFIX collectors;
//! - [`export_state`]: the exporter's per-flow state in `<run_dir>/export-state`, restored
//!   after a restart;
//! - `trace_export` (feature `trace`): packet-trace steps to the collector.

pub mod export;
pub mod export_state;
pub mod flows;
pub mod ipfix;
pub mod policy;
pub mod request;
pub mod setup;
#[cfg(feature = "trace")]
pub mod trace_export;
pub mod wake;
