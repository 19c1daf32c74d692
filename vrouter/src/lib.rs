//! The vRouter: a DPDK poll-mode data plane with vifs, VRFs, routes, nexthops and an
//! MPLSoUDP/VXLAN overlay.
//!
//! Layout (find a concept by its file):
//! - [`config`]: the TOML schema and its validation;
//! - [`drop_reason`], [`stats`]: the single drop-reason table and the memory-mapped counters
//!   region other processes read live (from the read-side crate `vrouter_abi`, re-exported);
//! - [`vif_info`]: a configured vif's record in the stats region;
//! - [`packet`]: zero-copy, checked views over packet bytes (Ethernet ... VXLAN);
//! - [`fib`]: forwarding state built from the config (vifs, VRFs, routes, nexthops, labels);
//! - [`pipeline`]: the per-packet forwarding decision, independent of DPDK;
//! - [`mirror`]: mirroring to analyzers (mirror table region, encapsulation, copy path);
//! - [`trace`]: live packet tracing (trace requests, step records in per-lcore rings);
//! - [`agent`]: policy, flow setup (its requests in [`agent::request`]), export, control
//!   socket; builds without DPDK, reading the TSC through [`clock`];
//! - `dpdk`, `datapath` (feature `dataplane`): EAL, ports, mempools, pinned lcore loops.

#![warn(missing_docs)]

pub mod agent;
pub mod clock;
pub mod config;
pub mod control;
pub mod fib;
pub mod hugepages;
pub mod mirror;
pub mod packet;
pub mod pipeline;
pub mod spsc;
pub mod trace;
pub mod vif_info;

pub use vrouter_abi::{drop_reason, stats};

#[cfg(feature = "dataplane")]
pub mod datapath;
#[cfg(feature = "dataplane")]
pub mod dpdk;
