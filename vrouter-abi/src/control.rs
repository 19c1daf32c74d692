//! The programming API of a running vRouter (version [`API_VERSION`]): what a controller or
//! an operator tool sends to change the forwarding state while it forwards, and the typed
//! replies of its dump requests.
//!
//! Transport: the agent's control socket (`<run_dir>/control.sock`, one JSON request per
//! line, one JSON reply per line) and, for a controller, HTTP on the agent's REST port
//! (`POST /api/v1/control` with the same body and `Authorization: Bearer <token>`).
//!
//! A request is `{"cmd": "<name>", ...}`. The objects a `*_set` request carries are exactly
//! the tables of the configuration file, in JSON (`vif_set` carries a `[[vif]]` table,
//! `route_set` a list of `[[route]]` tables, ...), validated with the same rules; an invalid
//! request is refused whole with an error naming the field (`route[0].nexthop: nexthop 99 is
//! not defined`) and changes nothing. Requests are idempotent: a `*_set` of an object that
//! already exists replaces it (PUT), a `*_set` equal to what is there changes nothing, a
//! `*_delete` of something that is not there is an error naming it.
//!
//! Every reply has `"ok"`; a failed one has `"error"`. A change's reply carries the
//! [`ChangeReply`] fields; the dumps reply with the structures below.
//!
//! | cmd | fields | reply |
//! | --- | --- | --- |
//! | `vif_set` | `vif`: a `[[vif]]` table (`devargs` to hot-plug a vdev) | [`ChangeReply`] |
//! | `vif_delete` | `id` | [`ChangeReply`] |
//! | `vrf_set` / `vrf_delete` | `vrf` / `id` | [`ChangeReply`] |
//! | `nh_set` / `nh_delete` | `nexthop` / `id` | [`ChangeReply`] |
//! | `route_set` | `routes`: `[[route]]` tables | [`ChangeReply`] |
//! | `route_delete` | `routes`: `{vrf, prefix}` list | [`ChangeReply`] |
//! | `label_set` / `label_delete` | `label` (a `[[label]]` table) / `label` (the number) | [`ChangeReply`] |
//! | `bridge_set` / `bridge_delete` | `bridge` / `vrf`, `mac` | [`ChangeReply`] |
//! | `analyzer_set` / `analyzer_delete` | `analyzer` / `name` | [`ChangeReply`] |
//! | `policy_set` / `policy_delete` | `policy` (a `[[network_policy]]`) / `name` | [`ChangeReply`] |
//! | `security_group_set` / `security_group_delete` | `security_group` / `name` | [`ChangeReply`] |
//! | `vif_dump` | | `vifs`: [`VifEntry`] list |
//! | `vrf_dump` | | `vrfs`: [`VrfEntry`] list |
//! | `route_dump` | `vrf`, `family` (`inet`, `inet6`, `bridge`) | `routes`: [`RouteEntry`] list |
//! | `route_lookup` | `vrf`, `addr` (an IP address or a MAC) | `route`: [`RouteEntry`] or null |
//! | `nh_dump` / `nh_get` | / `id` | `nexthops`: [`NexthopEntry`] list / `nexthop` |
//! | `label_dump` / `label_get` | / `label` | `labels`: [`LabelEntry`] list / `label` |
//! | `info` | | `info`: [`InfoReply`] |

use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// Version of this API; [`InfoReply::api_version`] reports it, a request may carry
/// `"version"` and is refused when it names another.
pub const API_VERSION: u32 = 1;

/// What a change request did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeReply {
    /// Whether the forwarding state changed (false: the request matched what was there).
    pub changed: bool,
    /// Generation of the forwarding state after the request (each published change adds one).
    pub generation: u64,
    /// Flow pairs whose verdict was re-evaluated because of the change.
    pub reevaluated: u64,
    /// Flows whose action changed on re-evaluation ("Changed" in the `flow -l` header).
    pub flows_changed: u64,
    /// Flows deleted because their vif or VRF went away.
    pub flows_deleted: u64,
}

/// One vif as the agent holds it (the `[[vif]]` table plus its port).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VifEntry {
    /// The `[[vif]]` table, in JSON.
    pub config: serde_json::Value,
    /// DPDK port id, when the vif's port is open.
    pub port: Option<u16>,
    /// Whether the vif was added at runtime (not from the configuration file).
    pub runtime: bool,
}

/// One VRF.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VrfEntry {
    /// VRF id.
    pub id: u32,
    /// VRF name.
    pub name: String,
    /// VXLAN VNI mapped to the VRF.
    pub vxlan_vni: Option<u32>,
    /// IPv4 routes.
    pub routes_v4: u64,
    /// IPv6 routes.
    pub routes_v6: u64,
    /// Bridge entries.
    pub bridge_entries: u64,
    /// vifs in the VRF.
    pub vifs: Vec<u16>,
}

/// One route (`rt --dump`): an IPv4/IPv6 prefix or a bridge MAC and its nexthop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteEntry {
    /// VRF id.
    pub vrf: u32,
    /// `inet`, `inet6` or `bridge`.
    pub family: String,
    /// `a.b.c.d/len` or `x::/len`; for a bridge entry the MAC.
    pub prefix: String,
    /// Prefix length (48 for a bridge entry).
    pub prefix_len: u8,
    /// Nexthop id.
    pub nexthop: u32,
    /// MPLS label or VNI of the nexthop when it is a tunnel (tf's `Label`), else none.
    pub label: Option<u32>,
    /// Destination MAC the nexthop writes (tf's "Stitched MAC"), when it writes one.
    pub stitched_mac: Option<String>,
}

/// One nexthop (`nh --list`, `nh --get`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NexthopEntry {
    /// Nexthop id.
    pub id: u32,
    /// `encap`, `tunnel`, `receive`, `discard` or `ecmp`.
    pub kind: String,
    /// Dense index in the data plane's nexthop array.
    pub index: u32,
    /// Routes, labels, bridge entries and ECMP groups that refer to it.
    pub refs: u32,
    /// Outgoing vif (`Oif`), for the kinds that have one.
    pub vif: Option<u16>,
    /// VRF of the outgoing vif.
    pub vrf: Option<u32>,
    /// Ethernet header the nexthop writes: destination, source, ethertype (hex bytes), for
    /// encap and tunnel nexthops.
    pub encap_data: Option<String>,
    /// Tunnel encapsulation (`mplsoudp`, `vxlan`).
    pub encap: Option<String>,
    /// Tunnel source.
    pub src_ip: Option<Ipv4Addr>,
    /// Tunnel destination.
    pub dst_ip: Option<Ipv4Addr>,
    /// MPLS label or VNI.
    pub label: Option<u32>,
    /// ECMP members (nexthop ids).
    pub members: Vec<u32>,
}

/// One MPLS label (`mpls --dump`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelEntry {
    /// The label.
    pub label: u32,
    /// Nexthop id it decapsulates to.
    pub nexthop: u32,
}

/// `vrouter --info`: build, limits, table sizes and occupancy, lcores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InfoReply {
    /// Crate version of the running vRouter.
    pub version: String,
    /// Build profile and target (`release x86_64-linux`).
    pub build: String,
    /// [`API_VERSION`].
    pub api_version: u32,
    /// Process id.
    pub pid: u32,
    /// Seconds since start.
    pub uptime_s: u64,
    /// Forwarding lcores (EAL ids).
    pub lcores: Vec<u32>,
    /// Flow table entries.
    pub flow_entries: u64,
    /// Flow table overflow entries.
    pub flow_overflow_entries: u64,
    /// Active flows now.
    pub flows_active: u64,
    /// Highest vif id + 1 the configuration accepts.
    pub max_vifs: u32,
    /// Highest VRF id + 1.
    pub max_vrfs: u32,
    /// Most nexthops.
    pub max_nexthops: u32,
    /// Configured vifs.
    pub vifs: u64,
    /// Configured VRFs.
    pub vrfs: u64,
    /// Nexthops.
    pub nexthops: u64,
    /// IPv4 + IPv6 routes.
    pub routes: u64,
    /// Bridge entries.
    pub bridge_entries: u64,
    /// MPLS labels.
    pub labels: u64,
    /// Generation of the forwarding state (changes published since start, plus one).
    pub generation: u64,
    /// Objects programmed at runtime (kept in `<run_dir>/programmed.json`).
    pub runtime_objects: u64,
}
