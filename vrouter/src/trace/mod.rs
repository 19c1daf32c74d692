//! Live packet tracing: trace requests ([`request`], managed by [`control`] over the agent's
//! control socket and persisted in the run directory), typed step records ([`step`]) in
//! per-lcore rings of shared memory ([`region`]), written by the data plane ([`dp`], feature
//! `trace`) and the agent, grouped into traces by [`view`] (for the `trace` tool, and for
//! the agent, which serves each tenant the traces of its own requests), and rendered to text
//! only by readers. The step codec, the region and the view are the read side, in
//! `vrouter_abi::trace`; they are re-exported here. [`mark`] is the trace mark of MPLSoUDP packets (VXLAN's is in [`dp`]).

pub mod control;
pub mod mark;
pub mod request;
#[cfg(feature = "rest")]
pub mod rest;
pub mod simulate;
pub mod steps;

pub use vrouter_abi::trace::{region, step, view};

#[cfg(feature = "trace")]
pub mod dp;

pub use steps::{trace_mark, TRACE_MARK_FLAG};

pub use control::{Published, TraceControl, REQUESTS_FILE_NAME};
pub use region::{RegionInfo, RingRead, RingWriter, TraceReader, TraceRecord, TraceRegion, TRACE_FILE_NAME};
pub use request::{Condition, Limit, Scope, TraceRequest};
pub use step::Step;
