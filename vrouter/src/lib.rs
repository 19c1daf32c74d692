//! The vRouter: a DPDK poll-mode data plane with vifs, VRFs, routes, nexthops and an
//! MPLSoUDP/VXLAN overlay.
//!
//! Layout (find a concept by its file):
//! - [`config`]: the TOML schema and its validation;
//! - [`drop_reason`]: the single drop-reason table shared by the data plane and the tools;
//! - [`packet`]: zero-copy, checked views over packet bytes (Ethernet ... VXLAN);
//! - [`stats`]: the memory-mapped counters region other processes read live;
//! - [`fib`]: forwarding state built from the config (vifs, VRFs, routes, nexthops, labels);
//! - [`pipeline`]: the per-packet forwarding decision, independent of DPDK;
//! - [`mirror`]: mirroring to analyzers (mirror table region, encapsulation, copy path);
//! - [`trace`]: live packet tracing (trace requests, step records in per-lcore rings);
//! - `dpdk`, `datapath` (feature `dataplane`): EAL, ports, mempools, pinned lcore loops.

pub mod agent;
pub mod config;
pub mod control;
pub mod drop_reason;
pub mod fib;
pub mod mirror;
pub mod packet;
pub mod pipeline;
pub mod spsc;
pub mod stats;
pub mod trace;

#[cfg(feature = "dataplane")]
pub mod datapath;
#[cfg(feature = "dataplane")]
pub mod dpdk;
