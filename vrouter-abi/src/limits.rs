//! Limits that several regions and crates share, declared by the code that owns them.

/// Largest VXLAN network identifier: the VNI is a 24-bit field of the VXLAN header (RFC 7348).
/// Configuration checks, the mirror entries and the VXLAN header code use this one value.
pub const MAX_VNI: u32 = 0x00FF_FFFF;

/// Largest number of forwarding lcores any shared-memory region accepts (stats blocks,
/// mirror counter blocks, flow-table lcore blocks, trace rings but the agent's). The data
/// plane checks at compile time that DPDK's `RTE_MAX_LCORE` does not exceed it.
pub const MAX_LCORES: usize = 1024;

/// Highest VRF id + 1 (Tungsten Fabric's default VRF table size): the configuration's and the
/// programming API's bound on `[[vrf]] id`, and the size of per-VRF tables.
pub const MAX_VRFS: u32 = 4096;
