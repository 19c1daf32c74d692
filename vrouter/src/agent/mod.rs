pub mod export;
pub mod policy;
#[cfg(feature = "dataplane")]
pub mod flows;
