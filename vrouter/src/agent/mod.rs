pub mod export;
pub mod policy;
#[cfg(feature = "trace")]
pub mod trace_export;
#[cfg(feature = "dataplane")]
pub mod flows;
