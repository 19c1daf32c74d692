//! Typed trace steps and their fixed binary form (a kind and four 64-bit words), written by
//! the data plane and the agent, decoded and rendered to text only by readers.

use crate::drop_reason::DropReason;
use serde_json::{json, Value};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One step of a traced packet's way through the vRouter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The packet matched trace request `request` (UUID bytes); `new_trace` when it starts a
    /// trace (the first packet of a traced flow).
    Matched {
        /// UUID of the matching trace request (big-endian bytes).
        request: [u8; 16],
        /// Whether this packet started a new trace id (otherwise it continues its flow's).
        new_trace: bool,
    },
    /// Received on `vif`, RX queue `queue`, `len` bytes.
    Ingress {
        /// The vif the frame arrived on (`vif0/<vif>`).
        vif: u16,
        /// The RX queue of that vif's port that the lcore polled.
        queue: u16,
        /// Frame length in bytes as received, outer headers included.
        len: u32,
    },
    /// Parse result: ethertype, IP protocol and ports (0 when none), the VRF the packet is
    /// looked up in, its IP length and TTL/hop limit.
    Parsed {
        /// EtherType of the (inner, after decap) frame: 0x0800 IPv4, 0x86dd IPv6, ...
        ethertype: u16,
        /// IP protocol (IPv6: the transport protocol after extension headers); 0 for non-IP.
        proto: u8,
        /// TCP/UDP source port; 0 for other protocols and IPv4 fragments.
        sport: u16,
        /// TCP/UDP destination port; 0 for other protocols and IPv4 fragments.
        dport: u16,
        /// VRF id the packet is looked up in (the vif's, or the one its label/VNI maps to).
        vrf: u32,
        /// IP total length in bytes (IPv6: 40 + payload length); 0 for non-IP.
        ip_len: u16,
        /// IPv4 TTL or IPv6 hop limit as received; 0 for non-IP.
        ttl: u8,
    },
    /// Source and destination address (IPv4 as `::ffff:a.b.c.d`).
    Addresses {
        /// Source IP address (IPv4-mapped for IPv4).
        src: u128,
        /// Destination IP address (IPv4-mapped for IPv4).
        dst: u128,
    },
    /// Outer headers terminated on the fabric: MPLSoUDP label or VXLAN VNI, outer source.
    Decap {
        /// VXLAN (true) or MPLSoUDP (false).
        vxlan: bool,
        /// The MPLS label or the VXLAN VNI.
        label: u32,
        /// Outer IPv4 source: the sending vRouter.
        outer_src: Ipv4Addr,
    },
    /// Flow table lookup: hit or miss (a miss creates the entry), index, generation and the
    /// entry's action at that time.
    FlowLookup {
        /// The entry existed; false when this packet created it.
        hit: bool,
        /// Flow table index of the entry.
        index: u32,
        /// The entry's generation id (bumped each time the slot is reused; tf `fe_gen_id`).
        gen: u16,
        /// The entry's [`Action`](crate::flow::Action) code ([`action_name`]).
        action: u8,
    },
    /// Queued until the agent sets up `flow` (`new`: this packet created the flow).
    Held {
        /// Flow table index of the flow waiting for setup.
        flow: u32,
        /// This packet created the flow and asked the agent for its setup.
        new: bool,
    },
    /// Released from the hold queue after `held_ns`, re-run from the start.
    Released {
        /// Flow table index of the flow that was set up.
        flow: u32,
        /// Time spent in the hold queue, in nanoseconds.
        held_ns: u64,
    },
    /// The agent's policy decision at flow setup: action, flow drop reason, and the UUID of
    /// the deciding rule (all zero when no rule decided).
    Policy {
        /// Forward (true) or drop the flow.
        forward: bool,
        /// [`FlowDropReason`](crate::flow::FlowDropReason) code (`VR_FLOW_DR_*`) of a drop.
        drop_reason: u8,
        /// UUID of the deciding rule (big-endian bytes), all zero when none.
        rule: [u8; 16],
        /// Flow table index of the flow set up.
        flow: u32,
    },
    /// The flow action applied to the packet (and the flow's mirror indices, 255 = none).
    FlowAction {
        /// The flow's [`Action`](crate::flow::Action) code ([`action_name`]).
        action: u8,
        /// The flow's [`FlowDropReason`](crate::flow::FlowDropReason) code, meaningful on drop.
        drop_reason: u8,
        /// The flow's first mirror index, 255 = none.
        mirror: u8,
        /// The flow's second mirror index, 255 = none.
        sec_mirror: u8,
    },
    /// A copy to the analyzer at mirror index `analyzer`: queued (`bytes` long) or failed.
    Mirror {
        /// Mirror index the copy goes to (the flow's `mirror` or `sec_mirror`).
        analyzer: u8,
        /// The copy is for the flow's second mirror (`sec_mirror`).
        secondary: bool,
        /// Length of the queued copy in bytes, encapsulation included; 0 when it failed.
        bytes: u32,
        /// Why the copy was not sent (a mirror drop reason); `None` when queued.
        failed: Option<DropReason>,
    },
    /// Route lookup in `vrf`: the matched prefix, nexthop id and kind ([`NhKind`]), out vif
    /// (or `u16::MAX`). Recorded where the pipeline decided, not looked up again.
    Route {
        /// VRF id of the route lookup (0 for an MPLS label lookup).
        vrf: u32,
        /// The matched prefix (IPv4 as `::ffff:a.b.c.d`), or the MPLS label when
        /// `prefix_len` is [`ROUTE_BY_LABEL`], or the destination MAC (low 48 bits) when it is
        /// [`ROUTE_BY_MAC`].
        prefix: u128,
        /// Length of the matched prefix (IPv4: 0-32), or [`ROUTE_BY_LABEL`] / [`ROUTE_BY_MAC`].
        prefix_len: u8,
        /// Configured id of the nexthop found.
        nh_id: u32,
        /// [`NhKind`] code of that nexthop.
        nh_kind: u8,
        /// The vif the packet was sent on, `u16::MAX` when it was not sent.
        out_vif: u16,
    },
    /// ECMP: the member the packet's flow hash chose in composite nexthop `nh_id`.
    Ecmp {
        /// Configured id of the ECMP composite nexthop.
        nh_id: u32,
        /// The member's number in the composite (from 0).
        member: u16,
        /// Number of members.
        members: u16,
        /// Configured id of the member nexthop.
        member_id: u32,
        /// [`NhKind`] code of the member.
        member_kind: u8,
    },
    /// Pushed tunnel: MPLSoUDP label or VXLAN VNI, remote vRouter, UDP source port.
    Encap {
        /// VXLAN (true) or MPLSoUDP (false).
        vxlan: bool,
        /// The MPLS label or the VXLAN VNI pushed.
        label: u32,
        /// Outer IPv4 destination: the remote vRouter.
        remote: Ipv4Addr,
        /// Outer UDP source port (the flow's entropy).
        sport: u16,
    },
    /// Sent on `vif`, `len` bytes.
    Egress {
        /// The vif the frame was handed to for transmission (`vif0/<vif>`).
        vif: u16,
        /// Frame length in bytes as sent, encapsulation included.
        len: u32,
    },
    /// Dropped with this reason.
    Drop {
        /// Why the vRouter dropped the packet.
        reason: DropReason,
    },
    /// The packet arrived with the trace mark of vRouter `from` in its encapsulation: this
    /// vRouter continues that trace (same trace id).
    Marked {
        /// Outer IPv4 source of the marked packet: the vRouter that sent it.
        from: Ipv4Addr,
    },
}

crate::code_enum! {
    /// The kind of a [`Step`] as stored in a trace record; the key is the step's name in text
    /// and JSON ([`Step::name`]).
    pub enum StepKind: u16 {
        /// [`Step::Matched`].
        Matched = 1 => "matched";
        /// [`Step::Ingress`].
        Ingress = 2 => "ingress";
        /// [`Step::Parsed`].
        Parsed = 3 => "parse";
        /// [`Step::Addresses`].
        Addresses = 4 => "addresses";
        /// [`Step::Decap`].
        Decap = 5 => "decap";
        /// [`Step::FlowLookup`].
        FlowLookup = 6 => "flow_lookup";
        /// [`Step::Held`].
        Held = 7 => "hold";
        /// [`Step::Released`].
        Released = 8 => "release";
        /// [`Step::Policy`].
        Policy = 9 => "policy";
        /// [`Step::FlowAction`].
        FlowAction = 10 => "flow_action";
        /// [`Step::Mirror`].
        Mirror = 11 => "mirror";
        /// [`Step::Route`].
        Route = 12 => "route";
        /// [`Step::Encap`].
        Encap = 13 => "encap";
        /// [`Step::Egress`].
        Egress = 14 => "egress";
        /// [`Step::Drop`].
        Drop = 15 => "drop";
        /// [`Step::Marked`].
        Marked = 16 => "marked";
        /// [`Step::Ecmp`].
        Ecmp = 17 => "ecmp";
    }
}

crate::code_enum! {
    /// Nexthop kinds as a [`Step::Route`] records them (the data plane's nexthop variants);
    /// the key is what trace text and JSON print.
    pub enum NhKind: u8 {
        /// L2 rewrite and transmit on a local vif.
        Encap = 1 => "encap", "Encap";
        /// Overlay tunnel over the fabric.
        Tunnel = 2 => "tunnel", "Tunnel";
        /// Hand to the host interface.
        Receive = 3 => "receive", "Receive";
        /// Discard.
        Discard = 4 => "discard", "Discard";
        /// ECMP group (tf's composite nexthop).
        Ecmp = 5 => "ecmp", "ECMP";
    }
}

/// [`Step::Route`]'s `prefix_len` when the nexthop came from an MPLS label (in `prefix`).
pub const ROUTE_BY_LABEL: u8 = 0xff;
/// [`Step::Route`]'s `prefix_len` when the nexthop came from a bridge lookup of the
/// destination MAC (in `prefix`).
pub const ROUTE_BY_MAC: u8 = 0xfe;

/// What selected a [`Step::Route`]'s nexthop, as text: `10.128.0.0/9`, `label 40`,
/// `mac 02:00:00:00:00:01`.
pub fn route_by(prefix: u128, prefix_len: u8) -> String {
    match prefix_len {
        ROUTE_BY_LABEL => format!("label {}", prefix as u32),
        ROUTE_BY_MAC => {
            let b = (prefix as u64).to_be_bytes();
            format!("mac {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[2], b[3], b[4], b[5], b[6], b[7])
        }
        len => format!("{}/{len}", show_addr(prefix)),
    }
}

/// The key of a stored nexthop kind ([`NhKind::key`]; `"unknown"` for codes this build does
/// not know).
pub fn nh_kind_name(k: u8) -> &'static str {
    NhKind::from_code(k).map_or("unknown", NhKind::key)
}

/// The key of a stored flow action ([`Action::key`](crate::flow::Action::key): `drop`, `hold`,
/// `forward`, `nat`; `"unknown"` for codes this build does not know).
pub fn action_name(a: u8) -> &'static str {
    crate::flow::Action::from_code(a).map_or("unknown", crate::flow::Action::key)
}

fn u128_words(v: u128) -> [u64; 2] {
    [(v >> 64) as u64, v as u64]
}

fn words_u128(hi: u64, lo: u64) -> u128 {
    (u128::from(hi) << 64) | u128::from(lo)
}

impl Step {
    /// The stored form: kind and four data words.
    pub fn encode(&self) -> (u16, [u64; 4]) {
        use StepKind::*;
        let (kind, words) = match *self {
            Step::Matched { request, new_trace } => {
                let r = u128::from_be_bytes(request);
                let [a, b] = u128_words(r);
                (Matched, [a, b, u64::from(new_trace), 0])
            }
            Step::Ingress { vif, queue, len } => (Ingress, [u64::from(vif), u64::from(queue), u64::from(len), 0]),
            Step::Parsed { ethertype, proto, sport, dport, vrf, ip_len, ttl } => (
                Parsed,
                [
                    u64::from(ethertype) | u64::from(proto) << 16 | u64::from(ttl) << 24 | u64::from(ip_len) << 32,
                    u64::from(sport) | u64::from(dport) << 16,
                    u64::from(vrf),
                    0,
                ],
            ),
            Step::Addresses { src, dst } => {
                let [a, b] = u128_words(src);
                let [c, d] = u128_words(dst);
                (Addresses, [a, b, c, d])
            }
            Step::Decap { vxlan, label, outer_src } => {
                (Decap, [u64::from(vxlan), u64::from(label), u64::from(u32::from(outer_src)), 0])
            }
            Step::FlowLookup { hit, index, gen, action } => {
                (FlowLookup, [u64::from(hit), u64::from(index), u64::from(gen), u64::from(action)])
            }
            Step::Held { flow, new } => (Held, [u64::from(flow), u64::from(new), 0, 0]),
            Step::Released { flow, held_ns } => (Released, [u64::from(flow), held_ns, 0, 0]),
            Step::Policy { forward, drop_reason, rule, flow } => {
                let [a, b] = u128_words(u128::from_be_bytes(rule));
                (Policy, [u64::from(forward) | u64::from(drop_reason) << 8, a, b, u64::from(flow)])
            }
            Step::FlowAction { action, drop_reason, mirror, sec_mirror } => {
                (FlowAction, [u64::from(action), u64::from(drop_reason), u64::from(mirror), u64::from(sec_mirror)])
            }
            Step::Mirror { analyzer, secondary, bytes, failed } => (
                Mirror,
                [
                    u64::from(analyzer),
                    u64::from(secondary),
                    u64::from(bytes),
                    failed.map_or(u64::MAX, |r| r.index() as u64),
                ],
            ),
            Step::Route { vrf, prefix, prefix_len, nh_id, nh_kind, out_vif } => {
                let [a, b] = u128_words(prefix);
                let w0 =
                    u64::from(vrf) | u64::from(nh_kind) << 32 | u64::from(prefix_len) << 40 | u64::from(out_vif) << 48;
                (Route, [w0, u64::from(nh_id), a, b])
            }
            Step::Ecmp { nh_id, member, members, member_id, member_kind } => (
                Ecmp,
                [
                    u64::from(nh_id),
                    u64::from(member) | u64::from(members) << 16 | u64::from(member_kind) << 32,
                    u64::from(member_id),
                    0,
                ],
            ),
            Step::Encap { vxlan, label, remote, sport } => {
                (Encap, [u64::from(vxlan), u64::from(label), u64::from(u32::from(remote)), u64::from(sport)])
            }
            Step::Egress { vif, len } => (Egress, [u64::from(vif), u64::from(len), 0, 0]),
            Step::Drop { reason } => (Drop, [reason.index() as u64, 0, 0, 0]),
            Step::Marked { from } => (Marked, [u64::from(u32::from(from)), 0, 0, 0]),
        };
        (kind.code(), words)
    }

    /// Decodes a stored step; `None` for an unknown kind or an invalid value.
    pub fn decode(k: u16, w: [u64; 4]) -> Option<Step> {
        use StepKind::*;
        Some(match StepKind::from_code(k)? {
            Matched => Step::Matched { request: words_u128(w[0], w[1]).to_be_bytes(), new_trace: w[2] != 0 },
            Ingress => Step::Ingress { vif: w[0] as u16, queue: w[1] as u16, len: w[2] as u32 },
            Parsed => Step::Parsed {
                ethertype: w[0] as u16,
                proto: (w[0] >> 16) as u8,
                ttl: (w[0] >> 24) as u8,
                ip_len: (w[0] >> 32) as u16,
                sport: w[1] as u16,
                dport: (w[1] >> 16) as u16,
                vrf: w[2] as u32,
            },
            Addresses => Step::Addresses { src: words_u128(w[0], w[1]), dst: words_u128(w[2], w[3]) },
            Decap => Step::Decap { vxlan: w[0] != 0, label: w[1] as u32, outer_src: Ipv4Addr::from(w[2] as u32) },
            FlowLookup => Step::FlowLookup { hit: w[0] != 0, index: w[1] as u32, gen: w[2] as u16, action: w[3] as u8 },
            Held => Step::Held { flow: w[0] as u32, new: w[1] != 0 },
            Released => Step::Released { flow: w[0] as u32, held_ns: w[1] },
            Policy => Step::Policy {
                forward: w[0] & 1 != 0,
                drop_reason: (w[0] >> 8) as u8,
                rule: words_u128(w[1], w[2]).to_be_bytes(),
                flow: w[3] as u32,
            },
            FlowAction => Step::FlowAction {
                action: w[0] as u8,
                drop_reason: w[1] as u8,
                mirror: w[2] as u8,
                sec_mirror: w[3] as u8,
            },
            Mirror => Step::Mirror {
                analyzer: w[0] as u8,
                secondary: w[1] != 0,
                bytes: w[2] as u32,
                failed: if w[3] == u64::MAX { None } else { Some(DropReason::from_index(w[3] as usize)?) },
            },
            Route => Step::Route {
                vrf: w[0] as u32,
                nh_kind: (w[0] >> 32) as u8,
                prefix_len: (w[0] >> 40) as u8,
                out_vif: (w[0] >> 48) as u16,
                nh_id: w[1] as u32,
                prefix: words_u128(w[2], w[3]),
            },
            Ecmp => Step::Ecmp {
                nh_id: w[0] as u32,
                member: w[1] as u16,
                members: (w[1] >> 16) as u16,
                member_kind: (w[1] >> 32) as u8,
                member_id: w[2] as u32,
            },
            Encap => Step::Encap {
                vxlan: w[0] != 0,
                label: w[1] as u32,
                remote: Ipv4Addr::from(w[2] as u32),
                sport: w[3] as u16,
            },
            Egress => Step::Egress { vif: w[0] as u16, len: w[1] as u32 },
            Drop => Step::Drop { reason: DropReason::from_index(w[0] as usize)? },
            Marked => Step::Marked { from: Ipv4Addr::from(w[0] as u32) },
        })
    }

    /// The step's kind.
    pub fn kind(&self) -> StepKind {
        match self {
            Step::Matched { .. } => StepKind::Matched,
            Step::Ingress { .. } => StepKind::Ingress,
            Step::Parsed { .. } => StepKind::Parsed,
            Step::Addresses { .. } => StepKind::Addresses,
            Step::Decap { .. } => StepKind::Decap,
            Step::FlowLookup { .. } => StepKind::FlowLookup,
            Step::Held { .. } => StepKind::Held,
            Step::Released { .. } => StepKind::Released,
            Step::Policy { .. } => StepKind::Policy,
            Step::FlowAction { .. } => StepKind::FlowAction,
            Step::Mirror { .. } => StepKind::Mirror,
            Step::Route { .. } => StepKind::Route,
            Step::Ecmp { .. } => StepKind::Ecmp,
            Step::Encap { .. } => StepKind::Encap,
            Step::Egress { .. } => StepKind::Egress,
            Step::Drop { .. } => StepKind::Drop,
            Step::Marked { .. } => StepKind::Marked,
        }
    }

    /// Short name of the step kind ([`StepKind::key`]).
    pub fn name(&self) -> &'static str {
        self.kind().key()
    }

    /// Whether this step ends the packet's way through this vRouter (or parks it).
    pub fn is_final(&self) -> bool {
        matches!(self, Step::Egress { .. } | Step::Drop { .. } | Step::Held { .. })
    }

    /// The step as one line of text.
    pub fn render(&self) -> String {
        match *self {
            Step::Matched { request, new_trace } => format!(
                "matched trace request {}{}",
                super::uuid::format_uuid(&request),
                if new_trace { " (new trace)" } else { "" }
            ),
            Step::Ingress { vif, queue, len } => format!("received on vif0/{vif} queue {queue}, {len} bytes"),
            Step::Parsed { ethertype, proto, sport, dport, vrf, ip_len, ttl } => {
                if ethertype == 0x0800 || ethertype == 0x86dd {
                    format!(
                        "parsed {} proto {proto} ports {sport} -> {dport}, ip length {ip_len}, ttl {ttl}, vrf {vrf}",
                        ether_name(ethertype)
                    )
                } else {
                    format!("parsed ethertype {ethertype:#06x} ({}), vrf {vrf}", ether_name(ethertype))
                }
            }
            Step::Addresses { src, dst } => format!("addresses {} -> {}", show_addr(src), show_addr(dst)),
            Step::Decap { vxlan, label, outer_src } => {
                if vxlan {
                    format!("decapsulated VXLAN vni {label} from {outer_src}")
                } else {
                    format!("decapsulated MPLSoUDP label {label} from {outer_src}")
                }
            }
            Step::FlowLookup { hit, index, gen, action } => format!(
                "flow lookup {}: flow {index} gen {gen}, action {}",
                if hit { "hit" } else { "miss (flow created)" },
                action_name(action)
            ),
            Step::Held { flow, new } => {
                format!(
                    "held for flow setup of flow {index}{}",
                    if new { " (setup requested)" } else { "" },
                    index = flow
                )
            }
            Step::Released { flow, held_ns } => {
                format!("released after flow {flow} was set up, held {} us", held_ns / 1000)
            }
            Step::Policy { forward, drop_reason, rule, flow } => {
                let rule = if rule == [0; 16] {
                    "no rule".to_string()
                } else {
                    format!("rule {}", super::uuid::format_uuid(&rule))
                };
                if forward {
                    format!("policy: flow {flow} forward ({rule})")
                } else {
                    format!("policy: flow {flow} drop, flow drop reason {drop_reason} ({rule})")
                }
            }
            Step::FlowAction { action, drop_reason, mirror, sec_mirror } => {
                let mut s = format!("flow action {}", action_name(action));
                if action == 0 {
                    s.push_str(&format!(" (flow drop reason {drop_reason})"));
                }
                if mirror != 255 {
                    s.push_str(&format!(", mirror {mirror}"));
                    if sec_mirror != 255 {
                        s.push_str(&format!(" and {sec_mirror}"));
                    }
                }
                s
            }
            Step::Mirror { analyzer, secondary, bytes, failed } => {
                let which = if secondary { "secondary" } else { "primary" };
                match failed {
                    None => format!("mirrored to analyzer index {analyzer} ({which}), copy of {bytes} bytes queued"),
                    Some(r) => format!("mirror to analyzer index {analyzer} ({which}) failed: {}", r.name()),
                }
            }
            Step::Route { vrf, prefix, prefix_len, nh_id, nh_kind, out_vif } => {
                let out = if out_vif == u16::MAX { String::new() } else { format!(" via vif0/{out_vif}") };
                let by = route_by(prefix, prefix_len);
                if prefix_len == ROUTE_BY_LABEL {
                    format!("route by {by}: nexthop {nh_id} ({}){out}", nh_kind_name(nh_kind))
                } else {
                    format!("route in vrf {vrf}: {by} -> nexthop {nh_id} ({}){out}", nh_kind_name(nh_kind))
                }
            }
            Step::Ecmp { nh_id, member, members, member_id, member_kind } => format!(
                "ecmp nexthop {nh_id}: member {member} of {members}, nexthop {member_id} ({})",
                nh_kind_name(member_kind)
            ),
            Step::Encap { vxlan, label, remote, sport } => {
                if vxlan {
                    format!("encapsulated VXLAN vni {label} to {remote}, udp source port {sport}")
                } else {
                    format!("encapsulated MPLSoUDP label {label} to {remote}, udp source port {sport}")
                }
            }
            Step::Egress { vif, len } => format!("sent on vif0/{vif}, {len} bytes"),
            Step::Drop { reason } => format!("dropped: {}", reason.name()),
            Step::Marked { from } => format!("trace mark from vRouter {from}: continuing its trace"),
        }
    }

    /// The step as JSON (`step` = kind name, then its fields).
    pub fn to_json(&self) -> Value {
        let mut v = match *self {
            Step::Matched { request, new_trace } => {
                json!({"request": super::uuid::format_uuid(&request), "new_trace": new_trace})
            }
            Step::Ingress { vif, queue, len } => json!({"vif": vif, "queue": queue, "len": len}),
            Step::Parsed { ethertype, proto, sport, dport, vrf, ip_len, ttl } => json!({
                "ethertype": ethertype, "protocol": proto, "src_port": sport, "dst_port": dport,
                "vrf": vrf, "ip_len": ip_len, "ttl": ttl
            }),
            Step::Addresses { src, dst } => json!({"src_ip": show_addr(src), "dst_ip": show_addr(dst)}),
            Step::Decap { vxlan, label, outer_src } => json!({
                "encap": if vxlan { "vxlan" } else { "mplsoudp" }, "label": label, "outer_src": outer_src.to_string()
            }),
            Step::FlowLookup { hit, index, gen, action } => {
                json!({"hit": hit, "index": index, "gen": gen, "action": action_name(action)})
            }
            Step::Held { flow, new } => json!({"flow": flow, "new": new}),
            Step::Released { flow, held_ns } => json!({"flow": flow, "held_ns": held_ns}),
            Step::Policy { forward, drop_reason, rule, flow } => json!({
                "action": if forward { "forward" } else { "drop" },
                "flow_drop_reason": drop_reason,
                "rule_uuid": if rule == [0; 16] { Value::Null } else { Value::from(super::uuid::format_uuid(&rule)) },
                "flow": flow
            }),
            Step::FlowAction { action, drop_reason, mirror, sec_mirror } => json!({
                "action": action_name(action), "flow_drop_reason": drop_reason,
                "mirror": (mirror != 255).then_some(mirror), "sec_mirror": (sec_mirror != 255).then_some(sec_mirror)
            }),
            Step::Mirror { analyzer, secondary, bytes, failed } => json!({
                "analyzer_index": analyzer, "secondary": secondary, "bytes": bytes,
                "result": failed.map_or("queued", |r| r.key())
            }),
            Step::Route { vrf, prefix, prefix_len, nh_id, nh_kind, out_vif } => {
                let mut v = json!({
                    "vrf": vrf, "nexthop": nh_id, "nexthop_type": nh_kind_name(nh_kind),
                    "out_vif": (out_vif != u16::MAX).then_some(out_vif)
                });
                match prefix_len {
                    ROUTE_BY_LABEL => v["label"] = Value::from(prefix as u32),
                    ROUTE_BY_MAC => v["mac"] = Value::from(route_by(prefix, prefix_len)),
                    _ => {
                        v["prefix"] = Value::from(show_addr(prefix));
                        v["prefix_len"] = Value::from(prefix_len);
                    }
                }
                v
            }
            Step::Ecmp { nh_id, member, members, member_id, member_kind } => json!({
                "nexthop": nh_id, "member": member, "members": members, "member_nexthop": member_id,
                "member_nexthop_type": nh_kind_name(member_kind)
            }),
            Step::Encap { vxlan, label, remote, sport } => json!({
                "encap": if vxlan { "vxlan" } else { "mplsoudp" }, "label": label, "remote": remote.to_string(), "src_port": sport
            }),
            Step::Egress { vif, len } => json!({"vif": vif, "len": len}),
            Step::Drop { reason } => json!({"reason": reason.key(), "reason_name": reason.name()}),
            Step::Marked { from } => json!({"from": from.to_string()}),
        };
        v["step"] = Value::from(self.name());
        v
    }
}

fn ether_name(e: u16) -> &'static str {
    match e {
        0x0800 => "IPv4",
        0x86dd => "IPv6",
        0x0806 => "ARP",
        0x8100 => "VLAN",
        _ => "other",
    }
}

/// An address of a record as text (IPv4-mapped shown as IPv4).
pub fn show_addr(a: u128) -> String {
    let v6 = Ipv6Addr::from(a);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4).to_string(),
        None => v6.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_round_trips() {
        let steps = [
            Step::Matched { request: [7; 16], new_trace: true },
            Step::Ingress { vif: 1, queue: 3, len: 60 },
            Step::Parsed { ethertype: 0x0800, proto: 17, sport: 4000, dport: 80, vrf: 1, ip_len: 46, ttl: 64 },
            Step::Addresses { src: 1 << 100 | 5, dst: u128::MAX },
            Step::Decap { vxlan: true, label: 5001, outer_src: Ipv4Addr::new(10, 10, 0, 2) },
            Step::FlowLookup { hit: false, index: 77, gen: 9, action: 1 },
            Step::Held { flow: 77, new: true },
            Step::Released { flow: 77, held_ns: 12345 },
            Step::Policy { forward: false, drop_reason: 3, rule: [0xbb; 16], flow: 77 },
            Step::FlowAction { action: 2, drop_reason: 0, mirror: 1, sec_mirror: 255 },
            Step::Mirror { analyzer: 1, secondary: false, bytes: 120, failed: None },
            Step::Mirror { analyzer: 3, secondary: true, bytes: 0, failed: Some(DropReason::MirrorNoNh) },
            Step::Route {
                vrf: 1,
                prefix: u128::from(Ipv4Addr::new(10, 128, 0, 0).to_ipv6_mapped()),
                prefix_len: 9,
                nh_id: 3,
                nh_kind: NhKind::Tunnel as u8,
                out_vif: 0,
            },
            Step::Route { vrf: 0, prefix: 40, prefix_len: ROUTE_BY_LABEL, nh_id: 2, nh_kind: 1, out_vif: u16::MAX },
            Step::Ecmp { nh_id: 5, member: 1, members: 2, member_id: 3, member_kind: NhKind::Tunnel as u8 },
            Step::Encap { vxlan: false, label: 40, remote: Ipv4Addr::new(10, 10, 0, 2), sport: 50000 },
            Step::Egress { vif: 2, len: 60 },
            Step::Drop { reason: DropReason::FlowActionDrop },
            Step::Marked { from: Ipv4Addr::new(10, 10, 0, 1) },
        ];
        for s in steps {
            let (k, w) = s.encode();
            assert_eq!(Step::decode(k, w), Some(s), "{s:?}");
            assert!(!s.render().is_empty());
            assert_eq!(s.to_json()["step"], s.name());
        }
        assert_eq!(Step::decode(999, [0; 4]), None);
        assert_eq!(Step::decode(StepKind::Drop as u16, [100_000, 0, 0, 0]), None);
    }

    #[test]
    fn routes_render_their_prefix_label_or_mac() {
        let p = u128::from(Ipv4Addr::new(10, 128, 0, 0).to_ipv6_mapped());
        let s = Step::Route { vrf: 1, prefix: p, prefix_len: 9, nh_id: 3, nh_kind: 2, out_vif: 0 };
        assert_eq!(s.render(), "route in vrf 1: 10.128.0.0/9 -> nexthop 3 (tunnel) via vif0/0");
        assert_eq!(s.to_json()["prefix"], "10.128.0.0");
        assert_eq!(route_by(0x0200_0000_0001, ROUTE_BY_MAC), "mac 02:00:00:00:00:01");
        assert_eq!(route_by(40, ROUTE_BY_LABEL), "label 40");
        let e = Step::Ecmp { nh_id: 5, member: 1, members: 2, member_id: 3, member_kind: 2 };
        assert_eq!(e.render(), "ecmp nexthop 5: member 1 of 2, nexthop 3 (tunnel)");
    }

    #[test]
    fn addresses_render_v4_mapped_as_v4() {
        let a = u128::from(Ipv4Addr::new(192, 168, 1, 3).to_ipv6_mapped());
        assert_eq!(show_addr(a), "192.168.1.3");
        assert_eq!(show_addr(u128::from("fd00:1::4".parse::<Ipv6Addr>().unwrap())), "fd00:1::4");
    }
}
