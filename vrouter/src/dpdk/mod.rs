//! Safe DPDK layer (being written).
