//! Lcore loops (being written).
