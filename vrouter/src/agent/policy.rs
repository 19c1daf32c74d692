//! Policy evaluation for new flows: network policies per VN, security groups per VMI, mirror
//! analyzers.
//!
//! The agent builds one [`PolicyEngine`] from the configuration ([`PolicyEngine::from_config`])
//! and asks it for a [`Decision`] on every flow setup request ([`PolicyEngine::evaluate`]).
//! The engine is immutable: on a configuration change the agent builds a new one and swaps
//! an `Arc`. Names, prefixes and analyzer indices are resolved when the engine is built;
//! evaluation does not allocate (the strings of a [`Decision`] are shared `Arc<str>`s and
//! `&'static str`s).
//!
//! # Semantics
//!
//! A flow is evaluated as the initiating direction of a session (forward flow). tf's policies
//! and security groups are stateful: the agent gives the reverse flow the forward flow's
//! decision, it does not evaluate it on its own (so `RevSG`/`RevOutSG` are not produced here).
//!
//! ## Network policy
//!
//! Policies are attached to VNs by name (`network_policy.vns`). The source endpoint's VN is
//! [`FlowContext::src_vn`], the destination's [`FlowContext::dst_vn`] (`None` or `""` for an
//! address in no known VN, e.g. the fabric). The flow is checked in up to two stages:
//!
//! 1. **Source stage**, when the source VN is known: the policies attached to it, in
//!    configuration order, each rule in order. A rule matches when its `src` matches the
//!    flow's source and its `dst` the flow's destination (address prefix, or `vn:<name>` =
//!    the endpoint's VN), its protocol and port ranges match (`src_ports` against the source
//!    port, `dst_ports` against the destination port); a `<>` rule also matches the reverse
//!    sense (its `src` against the flow's destination, `src_ports` against the destination
//!    port, and so on). The first matching rule decides the stage.
//! 2. **Destination stage**, when the destination VN is known and differs from the source VN:
//!    the same with the policies attached to the destination VN (same src/dst sense).
//!
//! A stage in which no rule matches (including a VN with no policy attached) passes when
//! source and destination are in the same VN (intra-VN traffic is allowed by default, as in
//! Contrail) and when either VN is unknown (traffic to or from the fabric or addresses
//! outside any VN); it denies ("implicit deny", no `nw_ace_uuid`) traffic between two known,
//! different VNs: without a policy there is no route leak between VNs. A deny in the source
//! stage gives drop reason `Policy` (0x15), in the destination stage `OutPolicy` (0x16); a
//! denied source stage ends the evaluation.
//!
//! Port ranges other than `any` only match protocols with ports (TCP, UDP, DCCP, SCTP,
//! UDP-Lite). An `icmp` rule does not match ICMPv6 (protocol 58, `icmp6`).
//!
//! ## Security groups
//!
//! Security groups are allow-lists attached to local VMIs (`vif.security_groups`). When the
//! source vif ([`FlowContext::src_vif`]) has groups, some `egress` rule of one of them must
//! match with `remote` = the flow's destination; when the destination vif has groups, some
//! `ingress` rule must match with `remote` = the flow's source. A rule matches on ethertype
//! (the flow's address family; absent = both), protocol, `ports` (the flow's destination
//! port) and `remote` (`any`, a prefix, or `sg:<name>`: an address (`ip`/`ip6`) of a local vif
//! in that group). Groups are searched in the vif's order, rules in configuration order; the
//! first match is the reported `sg_rule_uuid`. No match denies: `SG` (0x17) for the
//! destination's ingress, `OutSG` (0x18) for the source's egress. A vif without groups, and a
//! remote endpoint (`None`), are not filtered.
//!
//! ## Combining
//!
//! Network policy and security groups must both pass. Denies are checked in tf's drop-reason
//! order: `Policy`, `OutPolicy`, `SG`, `OutSG`; the first one found is the decision, with the
//! UUID of the decisive rule only (`nw_ace_uuid` for a policy deny, `sg_rule_uuid` for an SG
//! deny; none for an implicit deny). A passing flow reports the `nw_ace_uuid` of the first
//! matching policy rule (source stage first) and the `sg_rule_uuid` of the first matching SG
//! rule (egress first), if any.
//!
//! ## Log and mirror
//!
//! Every policy rule that matched in an evaluated stage contributes: `log = true` sets
//! [`Decision::log`], and its `mirror_to` analyzers are added in order, without duplicates,
//! up to two (primary, secondary; tf `kMaxMirrorsPerFlow`). This holds for denying rules and
//! for denied flows too: tf mirrors dropped flows. [`Decision::mirror`] holds the analyzers'
//! mirror indices: `analyzer.index` when given, else the lowest free index in `[[analyzer]]`
//! order ([`crate::config::assign_mirror_indices`]).
//!
//! [`Decision::action_names`] is the FlowLogData `action` string: `pass` or `deny`, then
//! `log` and `mirror` when set, joined by `|` (`"pass|log|mirror"`).

use crate::config::schema::{
    assign_mirror_indices, Config, EtherType, MirrorNhMode, PolicyAddress, PolicyDirection, PortRange, Prefix,
    Protocol, SgDirection, SgRemote,
};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

pub use crate::config::schema::PolicyAction;
use flow_table::{FLOW_DR_OUT_POLICY, FLOW_DR_OUT_SG, FLOW_DR_POLICY, FLOW_DR_SG};

/// A mirror analyzer as resolved by the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnalyzerInfo {
    /// Analyzer name (`[[analyzer]].name`), as exported in the flow record.
    pub name: Arc<str>,
    /// Mirror table index (0..=254).
    pub index: u8,
    /// Analyzer (tunnel destination) IPv4 address.
    pub ip: Ipv4Addr,
    /// UDP destination port of the Juniper-header encapsulation (default 8099).
    pub udp_port: u16,
    /// Juniper metadata header over UDP (true), or VXLAN with `vni` (false).
    pub juniper_header: bool,
    /// How the mirror nexthop is resolved (tf `nh_mode`).
    pub nh_mode: MirrorNhMode,
    /// VXLAN VNI towards the analyzer (only with `juniper_header = false`).
    pub vni: Option<u32>,
}

/// What the engine needs to know about a new flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowContext<'a> {
    /// Source address of the flow (the forward direction's key).
    pub src: IpAddr,
    /// Destination address of the flow.
    pub dst: IpAddr,
    /// IP protocol number.
    pub proto: u8,
    /// Source port, as in the flow key (only compared for protocols with ports).
    pub sport: u16,
    /// Destination port, as in the flow key (only compared for protocols with ports).
    pub dport: u16,
    /// VN of the source endpoint: a local VM's `vn_name`, a remote endpoint's VN from its
    /// route, or `None` (the empty string counts as `None`).
    pub src_vn: Option<&'a str>,
    /// VN of the destination endpoint.
    pub dst_vn: Option<&'a str>,
    /// The source vif when the source is a local VMI (for its security groups).
    pub src_vif: Option<u16>,
    /// The destination vif when the destination is a local VMI.
    pub dst_vif: Option<u16>,
}

impl<'a> FlowContext<'a> {
    /// The same flow seen in the other direction (the reverse flow's key and endpoints).
    pub fn reversed(&self) -> FlowContext<'a> {
        FlowContext {
            src: self.dst,
            dst: self.src,
            proto: self.proto,
            sport: self.dport,
            dport: self.sport,
            src_vn: self.dst_vn,
            dst_vn: self.src_vn,
            src_vif: self.dst_vif,
            dst_vif: self.src_vif,
        }
    }
}

/// The verdict for a flow: what the agent programs into the flow entry and exports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Pass or deny, for both flows of the pair.
    pub action: PolicyAction,
    /// tf `VR_FLOW_DR_*` code ([`flow_table::FlowDropReason`]); 0 when the flow passes.
    pub drop_reason: u8,
    /// Some matching policy rule asked for logging.
    pub log: bool,
    /// Mirror indices of the analyzers, primary then secondary.
    pub mirror: [Option<u8>; 2],
    /// Names of the same analyzers.
    pub mirror_names: [Option<Arc<str>>; 2],
    /// The deciding (or, for a pass, first matching) network policy rule.
    pub nw_ace_uuid: Option<Arc<str>>,
    /// The deciding (or, for a pass, first matching) security group rule.
    pub sg_rule_uuid: Option<Arc<str>>,
    /// FlowLogData action string: `"pass"`, `"deny|log"`, `"pass|log|mirror"`, ...
    pub action_names: &'static str,
}

impl Decision {
    /// Whether the flow passes (action `Pass`).
    pub fn is_pass(&self) -> bool {
        self.action == PolicyAction::Pass
    }

    /// Whether the flow is mirrored (tf flow flag MIRROR).
    pub fn is_mirrored(&self) -> bool {
        self.mirror[0].is_some()
    }

    /// `(mirror index, analyzer name)` of each analyzer, primary first.
    pub fn mirrors(&self) -> impl Iterator<Item = (u8, &str)> + '_ {
        self.mirror.iter().zip(&self.mirror_names).filter_map(|(i, n)| Some((((*i)?), n.as_deref()?)))
    }
}

/// Why an engine could not be built from a configuration: a name that does not resolve or
/// an analyzer index that cannot be assigned. `field` is the TOML path as in
/// [`crate::config::ConfigError`], e.g. `network_policy[0].rule[2].mirror_to`.
/// (A configuration that passed [`crate::config::validate()`] always builds.)
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct PolicyError {
    /// TOML path of the field that does not resolve, e.g. `network_policy[0].rule[2].mirror_to`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

fn error(field: String, message: String) -> PolicyError {
    PolicyError { field, message }
}

/// A resolved address matcher.
#[derive(Debug, Clone, Copy)]
enum AddrMatch {
    Any,
    V4 {
        net: u32,
        mask: u32,
    },
    V6 {
        net: u128,
        mask: u128,
    },
    /// The endpoint's VN, by engine VN id.
    Vn(u32),
    /// An address of a local vif in the group, by engine SG id.
    Sg(u32),
}

impl AddrMatch {
    fn prefix(p: Prefix) -> AddrMatch {
        match p.addr {
            IpAddr::V4(a) => {
                let mask = match p.len {
                    0 => 0,
                    l if l >= 32 => u32::MAX,
                    l => u32::MAX << (32 - u32::from(l)),
                };
                AddrMatch::V4 { net: u32::from(a) & mask, mask }
            }
            IpAddr::V6(a) => {
                let mask = match p.len {
                    0 => 0,
                    l if l >= 128 => u128::MAX,
                    l => u128::MAX << (128 - u32::from(l)),
                };
                AddrMatch::V6 { net: u128::from(a) & mask, mask }
            }
        }
    }
}

/// One side of a flow as a rule sees it.
#[derive(Clone, Copy)]
struct Side {
    addr: IpAddr,
    /// Engine VN id of the endpoint's VN, when some rule or policy knows that VN.
    vn: Option<u32>,
    port: u16,
}

/// A compiled network policy rule.
#[derive(Debug)]
struct NetRule {
    src: AddrMatch,
    dst: AddrMatch,
    proto: Option<u8>,
    src_ports: PortRange,
    dst_ports: PortRange,
    bidirectional: bool,
    action: PolicyAction,
    log: bool,
    /// Positions in `PolicyEngine::analyzers`.
    mirror: [Option<u16>; 2],
    uuid: Arc<str>,
}

/// A compiled security group rule.
#[derive(Debug)]
struct SgRule {
    remote: AddrMatch,
    /// `Some(true)` IPv4 only, `Some(false)` IPv6 only.
    v4: Option<bool>,
    proto: Option<u8>,
    ports: PortRange,
    uuid: Arc<str>,
}

#[derive(Debug, Default)]
struct Sg {
    ingress: Box<[SgRule]>,
    egress: Box<[SgRule]>,
    /// Addresses of the local vifs in the group, sorted.
    members_v4: Box<[u32]>,
    members_v6: Box<[u128]>,
}

/// A VN some policy is attached to or some rule names.
#[derive(Debug)]
struct Vn {
    id: u32,
    /// Policies attached, in configuration order (indices into `PolicyEngine::policies`).
    policies: Box<[u32]>,
}

/// The compiled policy configuration. Cheap to evaluate, immutable, `Send + Sync`.
#[derive(Debug)]
pub struct PolicyEngine {
    analyzers: Vec<AnalyzerInfo>,
    analyzer_by_name: HashMap<Arc<str>, u16>,
    /// Rules of each network policy.
    policies: Vec<Box<[NetRule]>>,
    vns: HashMap<Box<str>, Vn>,
    sgs: Vec<Sg>,
    /// Security groups of each vif (engine SG ids), indexed by vif id.
    vif_sgs: Vec<Box<[u32]>>,
}

/// Builds the engine's VN table.
struct VnTable {
    map: HashMap<Box<str>, (u32, Vec<u32>)>,
}

impl VnTable {
    /// The id of VN `name`, added when new.
    fn id(&mut self, name: &str) -> u32 {
        self.entry(name).0
    }

    /// The policies attached to VN `name`, added when new.
    fn attached(&mut self, name: &str) -> &mut Vec<u32> {
        &mut self.entry(name).1
    }

    fn entry(&mut self, name: &str) -> &mut (u32, Vec<u32>) {
        let next = self.map.len() as u32;
        if !self.map.contains_key(name) {
            self.map.insert(name.into(), (next, Vec::new()));
        }
        self.map.get_mut(name).expect("present")
    }
}

impl PolicyEngine {
    /// Compiles the `[[analyzer]]`, `[[network_policy]]`, `[[security_group]]` tables and the
    /// vifs' `security_groups` / addresses of a configuration.
    pub fn from_config(cfg: &Config) -> Result<PolicyEngine, PolicyError> {
        // Analyzers.
        let indices =
            assign_mirror_indices(&cfg.analyzers).map_err(|(i, msg)| error(format!("analyzer[{i}].index"), msg))?;
        let mut analyzers = Vec::with_capacity(cfg.analyzers.len());
        let mut analyzer_by_name = HashMap::new();
        for (i, (a, &index)) in cfg.analyzers.iter().zip(&indices).enumerate() {
            let a = a.get_ref();
            let name: Arc<str> = a.name.as_str().into();
            if analyzer_by_name.insert(name.clone(), i as u16).is_some() {
                return Err(error(format!("analyzer[{i}].name"), format!("duplicate analyzer name {:?}", a.name)));
            }
            analyzers.push(AnalyzerInfo {
                name,
                index,
                ip: a.ip,
                udp_port: a.udp_port,
                juniper_header: a.juniper_header,
                nh_mode: a.nh_mode,
                vni: a.vni,
            });
        }

        // Security group names first: rules refer to groups by name.
        let mut sg_ids: HashMap<&str, u32> = HashMap::new();
        for (i, g) in cfg.security_groups.iter().enumerate() {
            sg_ids.entry(g.get_ref().name.as_str()).or_insert(i as u32);
        }
        let sg_id = |name: &str, field: String| {
            sg_ids.get(name).copied().ok_or_else(|| error(field, format!("security group {name:?} is not defined")))
        };

        // Network policies and the VNs they mention.
        let mut vns = VnTable { map: HashMap::new() };
        let mut policies = Vec::with_capacity(cfg.network_policies.len());
        for (i, p) in cfg.network_policies.iter().enumerate() {
            let p = p.get_ref();
            for vn in &p.vns {
                if vn.is_empty() {
                    continue;
                }
                let attached = vns.attached(vn);
                if !attached.contains(&(i as u32)) {
                    attached.push(i as u32);
                }
            }
            let mut rules = Vec::with_capacity(p.rules.len());
            for (j, r) in p.rules.iter().enumerate() {
                let r = r.get_ref();
                let field = |key: &str| format!("network_policy[{i}].rule[{j}].{key}");
                let mut addr = |a: &PolicyAddress| match a {
                    PolicyAddress::Any => AddrMatch::Any,
                    PolicyAddress::Prefix(p) => AddrMatch::prefix(*p),
                    PolicyAddress::Vn(name) => AddrMatch::Vn(vns.id(name)),
                };
                let (src, dst) = (addr(&r.src), addr(&r.dst));
                if r.mirror_to.len() > 2 {
                    return Err(error(
                        field("mirror_to"),
                        format!("{} analyzers; a flow is mirrored to at most 2", r.mirror_to.len()),
                    ));
                }
                let mut mirror = [None; 2];
                for (k, name) in r.mirror_to.iter().enumerate() {
                    let at = analyzer_by_name
                        .get(name.as_str())
                        .copied()
                        .ok_or_else(|| error(field("mirror_to"), format!("analyzer {name:?} is not defined")))?;
                    mirror[k] = Some(at);
                }
                rules.push(NetRule {
                    src,
                    dst,
                    proto: protocol(r.protocol),
                    src_ports: r.src_ports,
                    dst_ports: r.dst_ports,
                    bidirectional: r.direction == PolicyDirection::Both,
                    action: r.action,
                    log: r.log,
                    mirror,
                    uuid: r.uuid.as_str().into(),
                });
            }
            policies.push(rules.into_boxed_slice());
        }
        let vns =
            vns.map.into_iter().map(|(name, (id, attached))| (name, Vn { id, policies: attached.into() })).collect();

        // Security groups, then their members.
        let mut sgs = Vec::with_capacity(cfg.security_groups.len());
        for (i, g) in cfg.security_groups.iter().enumerate() {
            let (mut ingress, mut egress) = (Vec::new(), Vec::new());
            for (j, r) in g.get_ref().rules.iter().enumerate() {
                let r = r.get_ref();
                let remote = match &r.remote {
                    SgRemote::Any => AddrMatch::Any,
                    SgRemote::Prefix(p) => AddrMatch::prefix(*p),
                    SgRemote::Sg(name) => AddrMatch::Sg(sg_id(name, format!("security_group[{i}].rule[{j}].remote"))?),
                };
                let rule = SgRule {
                    remote,
                    v4: r.ethertype.map(|e| e == EtherType::Ipv4),
                    proto: protocol(r.protocol),
                    ports: r.ports,
                    uuid: r.uuid.as_str().into(),
                };
                match r.direction {
                    SgDirection::Ingress => ingress.push(rule),
                    SgDirection::Egress => egress.push(rule),
                }
            }
            sgs.push(Sg { ingress: ingress.into(), egress: egress.into(), ..Sg::default() });
        }
        let mut members: Vec<(Vec<u32>, Vec<u128>)> = vec![Default::default(); sgs.len()];
        let mut vif_sgs: Vec<Box<[u32]>> = Vec::new();
        let mut seen_vifs = std::collections::HashSet::new();
        for (i, v) in cfg.vifs.iter().enumerate() {
            let v = v.get_ref();
            // The first definition of a vif id wins (validation rejects duplicates).
            if !seen_vifs.insert(v.id) || v.security_groups.is_empty() {
                continue;
            }
            let mut ids = Vec::with_capacity(v.security_groups.len());
            for name in &v.security_groups {
                let id = sg_id(name, format!("vif[{i}].security_groups"))?;
                if ids.contains(&id) {
                    continue;
                }
                ids.push(id);
                let (m4, m6) = &mut members[id as usize];
                m4.extend(v.ip.map(u32::from));
                m6.extend(v.ip6.map(u128::from));
            }
            let slot = usize::from(v.id);
            if vif_sgs.len() <= slot {
                vif_sgs.resize_with(slot + 1, Default::default);
            }
            vif_sgs[slot] = ids.into();
        }
        for (sg, (mut m4, mut m6)) in sgs.iter_mut().zip(members) {
            m4.sort_unstable();
            m4.dedup();
            m6.sort_unstable();
            m6.dedup();
            sg.members_v4 = m4.into();
            sg.members_v6 = m6.into();
        }

        Ok(PolicyEngine { analyzers, analyzer_by_name, policies, vns, sgs, vif_sgs })
    }

    /// The mirror index of the analyzer `name`.
    pub fn analyzer_index(&self, name: &str) -> Option<u8> {
        self.analyzer_by_name.get(name).map(|&at| self.analyzers[usize::from(at)].index)
    }

    /// Every analyzer, in configuration order.
    pub fn analyzers(&self) -> &[AnalyzerInfo] {
        &self.analyzers
    }

    /// The decision for a new flow (see the module documentation).
    pub fn evaluate(&self, flow: &FlowContext) -> Decision {
        let src_vn = flow.src_vn.filter(|n| !n.is_empty());
        let dst_vn = flow.dst_vn.filter(|n| !n.is_empty());
        let src_entry = src_vn.and_then(|n| self.vns.get(n));
        let dst_entry = dst_vn.and_then(|n| self.vns.get(n));
        let src = Side { addr: flow.src, vn: src_entry.map(|v| v.id), port: flow.sport };
        let dst = Side { addr: flow.dst, vn: dst_entry.map(|v| v.id), port: flow.dport };
        let intra = src_vn.is_some() && src_vn == dst_vn;
        let both_known = src_vn.is_some() && dst_vn.is_some();

        let mut acc = Acc::default();

        // Network policy: source stage, then destination stage.
        if src_vn.is_some() {
            match self.policy_stage(src_entry, &src, &dst, flow.proto, &mut acc) {
                Some(rule) if rule.action == PolicyAction::Deny => {
                    return self.deny(&acc, FLOW_DR_POLICY, Some(&rule.uuid), None)
                }
                Some(rule) => acc.nw_ace = Some(&rule.uuid),
                None if both_known && !intra => return self.deny(&acc, FLOW_DR_POLICY, None, None),
                None => {}
            }
        }
        let mut out_policy_deny: Option<Option<&Arc<str>>> = None;
        if dst_vn.is_some() && !intra {
            match self.policy_stage(dst_entry, &src, &dst, flow.proto, &mut acc) {
                Some(rule) if rule.action == PolicyAction::Deny => out_policy_deny = Some(Some(&rule.uuid)),
                Some(rule) => {
                    acc.nw_ace.get_or_insert(&rule.uuid);
                }
                None if both_known => out_policy_deny = Some(None),
                None => {}
            }
        }
        if let Some(uuid) = out_policy_deny {
            return self.deny(&acc, FLOW_DR_OUT_POLICY, uuid, None);
        }

        // Security groups: the destination's ingress, then the source's egress.
        let v4 = flow.src.is_ipv4();
        let mut sg_pass: [Option<&Arc<str>>; 2] = [None; 2];
        if let Some(groups) = self.groups_of(flow.dst_vif) {
            match self.sg_match(groups, SgDirection::Ingress, &src, v4, flow.proto, flow.dport) {
                Some(uuid) => sg_pass[1] = Some(uuid),
                None => return self.deny(&acc, FLOW_DR_SG, None, None),
            }
        }
        if let Some(groups) = self.groups_of(flow.src_vif) {
            match self.sg_match(groups, SgDirection::Egress, &dst, v4, flow.proto, flow.dport) {
                Some(uuid) => sg_pass[0] = Some(uuid),
                None => return self.deny(&acc, FLOW_DR_OUT_SG, None, None),
            }
        }

        let nw = acc.nw_ace;
        self.decision(&acc, PolicyAction::Pass, 0, nw, sg_pass[0].or(sg_pass[1]))
    }

    /// The first rule of the policies attached to `vn` that matches, recording log and
    /// mirror of the match in `acc`.
    fn policy_stage<'s>(
        &'s self,
        vn: Option<&Vn>,
        src: &Side,
        dst: &Side,
        proto: u8,
        acc: &mut Acc<'s>,
    ) -> Option<&'s NetRule> {
        let vn = vn?;
        for &p in vn.policies.iter() {
            for rule in self.policies[p as usize].iter() {
                let hit = self.rule_matches(rule, src, dst, proto)
                    || (rule.bidirectional && self.rule_matches(rule, dst, src, proto));
                if hit {
                    acc.log |= rule.log;
                    for at in rule.mirror.iter().flatten() {
                        acc.add_mirror(*at);
                    }
                    return Some(rule);
                }
            }
        }
        None
    }

    /// Whether `rule` matches traffic from `src` to `dst` in the rule's own sense.
    fn rule_matches(&self, rule: &NetRule, src: &Side, dst: &Side, proto: u8) -> bool {
        (rule.proto.is_none() || rule.proto == Some(proto))
            && ports_match(rule.src_ports, proto, src.port)
            && ports_match(rule.dst_ports, proto, dst.port)
            && self.addr_matches(rule.src, src)
            && self.addr_matches(rule.dst, dst)
    }

    fn addr_matches(&self, m: AddrMatch, side: &Side) -> bool {
        match (m, side.addr) {
            (AddrMatch::Any, _) => true,
            (AddrMatch::V4 { net, mask }, IpAddr::V4(a)) => u32::from(a) & mask == net,
            (AddrMatch::V6 { net, mask }, IpAddr::V6(a)) => u128::from(a) & mask == net,
            (AddrMatch::V4 { .. } | AddrMatch::V6 { .. }, _) => false,
            (AddrMatch::Vn(id), _) => side.vn == Some(id),
            (AddrMatch::Sg(id), addr) => self.sgs.get(id as usize).is_some_and(|sg| match addr {
                IpAddr::V4(a) => sg.members_v4.binary_search(&u32::from(a)).is_ok(),
                IpAddr::V6(a) => sg.members_v6.binary_search(&u128::from(a)).is_ok(),
            }),
        }
    }

    /// The security groups of a local vif, when it has any.
    fn groups_of(&self, vif: Option<u16>) -> Option<&[u32]> {
        let groups = self.vif_sgs.get(usize::from(vif?))?;
        (!groups.is_empty()).then_some(&**groups)
    }

    /// The UUID of the first rule of `groups` in `direction` that allows the traffic.
    fn sg_match(
        &self,
        groups: &[u32],
        direction: SgDirection,
        remote: &Side,
        v4: bool,
        proto: u8,
        dport: u16,
    ) -> Option<&Arc<str>> {
        for &g in groups {
            let sg = &self.sgs[g as usize];
            let rules = match direction {
                SgDirection::Ingress => &sg.ingress,
                SgDirection::Egress => &sg.egress,
            };
            for rule in rules.iter() {
                if (rule.v4.is_none() || rule.v4 == Some(v4))
                    && (rule.proto.is_none() || rule.proto == Some(proto))
                    && ports_match(rule.ports, proto, dport)
                    && self.addr_matches(rule.remote, remote)
                {
                    return Some(&rule.uuid);
                }
            }
        }
        None
    }

    fn deny(&self, acc: &Acc, drop_reason: u8, nw_ace: Option<&Arc<str>>, sg_rule: Option<&Arc<str>>) -> Decision {
        self.decision(acc, PolicyAction::Deny, drop_reason, nw_ace, sg_rule)
    }

    fn decision(
        &self,
        acc: &Acc,
        action: PolicyAction,
        drop_reason: u8,
        nw_ace: Option<&Arc<str>>,
        sg_rule: Option<&Arc<str>>,
    ) -> Decision {
        let analyzer = |k: usize| acc.mirror[k].map(|at| &self.analyzers[usize::from(at)]);
        let mirrored = acc.mirror[0].is_some();
        Decision {
            action,
            drop_reason,
            log: acc.log,
            mirror: [analyzer(0).map(|a| a.index), analyzer(1).map(|a| a.index)],
            mirror_names: [analyzer(0).map(|a| a.name.clone()), analyzer(1).map(|a| a.name.clone())],
            nw_ace_uuid: nw_ace.cloned(),
            sg_rule_uuid: sg_rule.cloned(),
            action_names: action_names(action, acc.log, mirrored),
        }
    }
}

/// Log, mirror and the passing policy rule collected during one evaluation.
#[derive(Default)]
struct Acc<'s> {
    log: bool,
    /// Positions in `PolicyEngine::analyzers`, primary first.
    mirror: [Option<u16>; 2],
    nw_ace: Option<&'s Arc<str>>,
}

impl Acc<'_> {
    fn add_mirror(&mut self, at: u16) {
        for slot in &mut self.mirror {
            match slot {
                Some(x) if *x == at => return,
                Some(_) => {}
                None => {
                    *slot = Some(at);
                    return;
                }
            }
        }
    }
}

fn protocol(p: Protocol) -> Option<u8> {
    match p {
        Protocol::Any => None,
        Protocol::Number(n) => Some(n),
    }
}

/// `any` matches every flow; a narrower range only flows of a protocol with ports.
fn ports_match(range: PortRange, proto: u8, port: u16) -> bool {
    range.is_any() || (Protocol::has_ports(proto) && range.contains(port))
}

/// The FlowLogData `action` string.
fn action_names(action: PolicyAction, log: bool, mirror: bool) -> &'static str {
    match (action, log, mirror) {
        (PolicyAction::Pass, false, false) => "pass",
        (PolicyAction::Pass, true, false) => "pass|log",
        (PolicyAction::Pass, false, true) => "pass|mirror",
        (PolicyAction::Pass, true, true) => "pass|log|mirror",
        (PolicyAction::Deny, false, false) => "deny",
        (PolicyAction::Deny, true, false) => "deny|log",
        (PolicyAction::Deny, false, true) => "deny|mirror",
        (PolicyAction::Deny, true, true) => "deny|log|mirror",
    }
}

#[cfg(test)]
mod tests;
