//! Shared-memory stats region (being written).
