pub mod export;
pub mod policy;
pub mod setup;
#[cfg(feature = "trace")]
pub mod trace_export;
#[cfg(feature = "dataplane")]
pub mod flows;
