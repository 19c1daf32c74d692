//! Forwarding tables (being written).
