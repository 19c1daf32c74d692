//! Forwarding pipeline (being written).
