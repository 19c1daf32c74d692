//! What other processes share with a running vRouter, and nothing of the vRouter itself: the
//! layouts of its shared-memory regions with their writers and readers, the tables and codecs
//! the operator tools need to print what they read. No DPDK, no configuration, no Sandesh.
//!
//! - [`continued`]: what a region created by a restarting vRouter took over from its
//!   previous run's file (counters, rings), or why it started fresh;
//! - [`codes`]: the one-declaration macros every table of codes is declared with;
//! - [`control`]: the programming API's requests and typed replies (live changes, dumps);
//! - [`drop_reason`]: the single drop-reason table shared by the data plane and the tools;
//! - [`flow`]: flow actions, flag bits, TCP state bits and flow drop reasons (the flow
//!   table, `flow-table`, stores them and re-exports this module);
//! - [`limits`]: limits shared by several regions ([`MAX_LCORES`], [`MAX_VNI`]);
//! - [`stats`]: `<run_dir>/stats`, the memory-mapped counters region;
//! - [`mirror`]: the mirror data model (indices, entries, table, metadata TLVs) and
//!   `<run_dir>/mirror`, the mirror table region with its counters;
//! - [`trace`]: trace step records, `<run_dir>/trace` (per-lcore rings) and the trace view;
//! - [`export`]: the exporter's counters file, `<run_dir>/export.json`;
//! - [`agent`]: the agent's `status` reply (its counters and the flow setup latency);
//! - [`fields`]: figures declared once with key, type and help (what the exporter of
//!   Prometheus metrics names and describes them by);
#![warn(missing_docs)]

pub mod agent;
pub mod codes;
pub mod continued;
pub mod control;
pub mod drop_reason;
pub mod export;
pub mod fields;
pub mod flow;
pub mod limits;
pub mod mirror;
pub mod stats;
pub mod trace;

pub use continued::{Continuation, Continued};
pub use limits::{MAX_LCORES, MAX_VNI, MAX_VRFS};
