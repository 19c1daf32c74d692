//! One house for the vRouter's memory-mapped region files (`stats`, the flow table,
//! `mirror`, `trace`).
//!
//! Every region file starts with the same 64-byte [`RegionHeader`]: magic (stored last),
//! layout version, header size, the size the layout needs, generation, the owner's pid and
//! process start time, and the creation time. A region's own header embeds it as its first
//! field and adds its own fields after it.
//!
//! - [`Pod`] marks the plain shared-memory types (integers, atomics, arrays and `repr(C)`
//!   structs of them): a cast from mapped bytes to one of them is proven once, in
//!   [`Bytes::get`] / [`Bytes::slice`] (bounds and alignment checked) or, on the per-packet
//!   paths that index pre-validated arrays, [`Bytes::get_unchecked`] (contract documented
//!   there, once).
//! - [`create`] builds a region file (temporary name, mode, zero fill, the prefix, the
//!   caller's `init`, `magic` last, rename into place; generation = previous file's + 1).
//! - [`open`] maps a region file read-only and checks it in a fixed order (see there),
//!   including the owner's liveness ([`owner_alive`]: pid exists *and* started at the
//!   recorded time), unless the caller accepts a stale region ([`OpenOptions::allow_stale`]).
//! - [`adopt`] maps a region file left by a previous run read-write, with the same checks,
//!   and makes this process its owner (a restart that keeps its state).
//! - [`previous`] looks at the file a restarting owner left at the path before [`create`]
//!   replaces it: nothing, a compatible region to continue from (its owner gone, or alive but
//!   stopped: a takeover), or a file it may not trust, which it renames to `<path>.old` and
//!   reports ([`Previous`]).
//! - [`RegionError`] is the one error type of all of it; every message names the region
//!   kind and the path.

#![warn(missing_docs)]

mod error;
mod header;
pub mod pod;
mod process;
mod region;

pub use error::RegionError;
pub use header::{RegionHeader, REGION_HEADER_SIZE};
pub use pod::{Bytes, Pod};
pub use process::{owner_alive, process_start_ticks, region_owner, unix_time_ns};
pub use region::previous::{previous, set_aside_path, Previous};
pub use region::{
    adopt, create, open, CreateOptions, InitMap, Mapped, Mismatch, OpenOptions, RegionSpec, WORLD_READABLE_HINT,
};
