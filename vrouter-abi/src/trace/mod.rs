//! Live packet tracing, read side: typed step records and their fixed binary form ([`step`]),
//! the per-lcore rings of shared memory they are written to ([`region`]: `<run_dir>/trace`),
//! traces as readers see them, grouped and rendered ([`view`]), and the UUIDs of trace
//! requests ([`uuid`]). Requests, their control and the data-plane hooks are the vRouter's
//! (`vrouter::trace`).

pub mod region;
pub mod step;
pub mod uuid;
pub mod view;

pub use region::{RegionInfo, RingRead, RingWriter, TraceReader, TraceRecord, TraceRegion, TRACE_FILE_NAME};
pub use step::Step;
