pub mod export;
#[cfg(feature = "dataplane")]
pub mod flows;
pub mod policy;
pub mod setup;
#[cfg(feature = "trace")]
pub mod trace_export;
