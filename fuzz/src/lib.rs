//! The forwarding-path fuzz harness (see `harness.rs`); the libFuzzer target is
//! `fuzz_targets/pipeline.rs`.
pub mod harness;
pub use harness::*;
