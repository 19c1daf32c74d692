//! The flow table's own sentinels and generation type, and the flow codes it stores: flow
//! actions, flag bits, TCP state bits and drop reasons are declared once in
//! [`vrouter_abi::flow`] (tf-vrouter numbering) and re-exported here, so
//! `flow_table::Action`, `flow_table::flags::ACTIVE`, `flow_table::FLOW_DR_POLICY`, ... name
//! the same items.

pub use vrouter_abi::flow::*;

/// "No flow index": the reverse flow is unknown, the overflow chain ends, ...
pub const NO_INDEX: u32 = u32::MAX;

/// "No mirror": the value of `mirror`/`sec_mirror` when the flow is not mirrored there.
pub const NO_MIRROR: u8 = 255;

/// Per-entry generation id; bumped (wrapping) every time a slot is (re)allocated.
///
/// tf uses a `u8` (`fe_gen_id`); 16 bits make a stale handle 256 times less likely to
/// alias a later occupant of the same slot, and still fit the control word (see
/// [`crate::FlowEntry`]).
pub type Gen = u16;
