pub mod export;
pub mod flows;
pub mod policy;
pub mod request;
pub mod setup;
#[cfg(feature = "trace")]
pub mod trace_export;
