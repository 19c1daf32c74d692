//! Flow keys and the flow hash.
//!
//! The flow hash is shared by everything that must agree on "which flow is this": ECMP member
//! choice and the outer UDP source port of MPLSoUDP/VXLAN tunnels in the data plane, and the
//! bucket index of the shared-memory flow table. Keeping one function means a flow always maps
//! to the same ECMP member, the same underlay path (source-port entropy) and the same bucket.

pub mod hash;

pub use hash::{flow_hash_v4, flow_hash_v6, tunnel_source_port};
