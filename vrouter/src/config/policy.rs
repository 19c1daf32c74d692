//! `[[network_policy]]`: network policies (ordered rules, tf ACEs) attached to VNs.

use super::check::{
    is_uuid, not_a_uuid, ports_problem, prefix_problem, protocol_family_problem, vn_name_problem, Checker, ConfigError,
    Unique,
};
use super::value::{PolicyAddress, PortRange, Protocol};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use toml::Spanned;

/// Analyzers one flow is mirrored to (tf `kMaxMirrorsPerFlow`).
const MAX_MIRRORS_PER_FLOW: usize = 2;

/// What a rule does with matching traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyAction {
    /// Let the matching flow through (tf `pass`).
    Pass,
    /// Drop the matching flow (tf `deny`): drop reason `Policy` or `OutPolicy` by stage.
    Deny,
}

/// Direction of a network policy rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
pub enum PolicyDirection {
    /// `<>`: src -> dst and dst -> src.
    #[default]
    #[serde(rename = "<>")]
    Both,
    /// `>`: only traffic from src to dst.
    #[serde(rename = ">")]
    OneWay,
}

/// A network policy: ordered rules, attached to the VNs in `vns`.
///
/// ```toml
/// [[network_policy]]
/// name = "web-to-db"
/// vns = ["default-domain:demo:web", "default-domain:demo:db"]
///
/// [[network_policy.rule]]
/// uuid = "2b4d3c1e-0f9a-4b8c-9d7e-6f5a4b3c2d1e"   # nw_ace_uuid
/// src = "vn:default-domain:demo:web"             # any | CIDR | vn:<name>
/// dst = "10.2.0.0/16"
/// protocol = "tcp"                               # any | tcp | udp | icmp | icmp6 | 0..255
/// src_ports = "any"
/// dst_ports = "5432"                             # any | N | LO-HI
/// direction = "<>"                               # <> (default) | >
/// action = "pass"                                # pass | deny
/// log = true
/// mirror_to = ["default-domain:demo:analyzer1"]  # 0 to 2 analyzer names
/// ```
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkPolicyConfig {
    /// Policy name, unique and non-empty (tf FQ name of the network policy).
    pub name: String,
    /// The policy's UUID (tf `nw_policy_uuid`); optional, must be a UUID when given.
    #[serde(default)]
    pub uuid: Option<String>,
    /// VN names (`vn_name` of vifs, or VNs of remote endpoints) the policy is attached to.
    #[serde(default)]
    pub vns: Vec<String>,
    /// Ordered rules (`[[network_policy.rule]]`): in each stage the first matching rule decides.
    #[serde(default, rename = "rule")]
    pub rules: Vec<Spanned<PolicyRuleConfig>>,
}

/// One rule (tf ACE) of a network policy.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRuleConfig {
    /// The rule's UUID, reported as `nw_ace_uuid`.
    pub uuid: String,
    /// Source: `any`, a CIDR, or `vn:<VN name>`; default `any` (a `<>` rule matches both senses).
    #[serde(default)]
    pub src: PolicyAddress,
    /// Destination: `any`, a CIDR, or `vn:<VN name>`; default `any`.
    #[serde(default)]
    pub dst: PolicyAddress,
    /// IP protocol the rule matches; default `any`.
    #[serde(default)]
    pub protocol: Protocol,
    /// Source port range (only for protocols with ports); default `any`.
    #[serde(default)]
    pub src_ports: PortRange,
    /// Destination port range (only for protocols with ports); default `any`.
    #[serde(default)]
    pub dst_ports: PortRange,
    /// `<>` (both ways, default) or `>` (src to dst only).
    #[serde(default)]
    pub direction: PolicyDirection,
    /// What matching traffic gets: `pass` or `deny`.
    pub action: PolicyAction,
    /// Log matching flows: sets the decision's `log` (`pass|log` in the FlowLogData action).
    #[serde(default)]
    pub log: bool,
    /// Analyzer names: primary, then secondary.
    #[serde(default)]
    pub mirror_to: Vec<String>,
}

impl Checker<'_> {
    /// `rule_uuids`: rule UUID (lower case) -> TOML path and line of its first definition,
    /// shared with the security group rules (UUIDs are unique across both).
    pub(super) fn network_policies(
        &self,
        rule_uuids: &mut HashMap<String, (String, usize)>,
    ) -> Result<(), ConfigError> {
        let list = &self.cfg.network_policies;
        let (mut names, mut uuids) = (Unique::entries("network_policy", list), Unique::entries("network_policy", list));
        for (i, e) in list.iter().enumerate() {
            let p = e.get_ref();
            let err = |key: &str, msg: String| Err(self.entry("network_policy", i, e, key, msg));
            if p.name.trim().is_empty() {
                return err("name", "must not be empty".into());
            }
            names.check(self, i, "name", p.name.as_str(), |_, at| {
                format!("duplicate network policy name {:?} ({at})", p.name)
            })?;
            if let Some(uuid) = &p.uuid {
                if !is_uuid(uuid) {
                    return err("uuid", not_a_uuid(uuid));
                }
                uuids.check(self, i, "uuid", uuid.to_ascii_lowercase(), |_, at| {
                    format!("duplicate network policy uuid {uuid} ({at})")
                })?;
            }
            let mut vns = Unique::items();
            for (k, vn) in p.vns.iter().enumerate() {
                if let Some(why) = vn_name_problem(vn) {
                    return err("vns", format!("entry {k}: {why}"));
                }
                if vns.repeated(vn.as_str()) {
                    return err("vns", format!("VN {vn:?} is listed twice"));
                }
            }
            let rules = format!("network_policy[{i}].rule");
            for (j, re) in p.rules.iter().enumerate() {
                let r = re.get_ref();
                let err = |key: &str, msg: String| Err(self.entry(&rules, j, re, key, msg));
                self.rule_uuid(&rules, j, re, &r.uuid, rule_uuids)?;
                for (key, addr) in [("src", &r.src), ("dst", &r.dst)] {
                    match addr {
                        PolicyAddress::Any => {}
                        PolicyAddress::Prefix(prefix) => {
                            if let Some(why) = prefix_problem(*prefix) {
                                return err(key, why);
                            }
                        }
                        PolicyAddress::Vn(vn) => {
                            if let Some(why) = vn_name_problem(vn) {
                                return err(key, format!("vn: {why}"));
                            }
                        }
                    }
                }
                if let (PolicyAddress::Prefix(s), PolicyAddress::Prefix(d)) = (&r.src, &r.dst) {
                    if s.addr.is_ipv4() != d.addr.is_ipv4() {
                        return err(
                            "dst",
                            format!("{d} and src {s} are of different IP versions; the rule never matches"),
                        );
                    }
                }
                for (key, addr) in [("src", &r.src), ("dst", &r.dst)] {
                    if let PolicyAddress::Prefix(prefix) = addr {
                        if let Some(why) = protocol_family_problem(r.protocol, prefix.addr.is_ipv4()) {
                            return err("protocol", format!("{why} ({key} is {prefix})"));
                        }
                    }
                }
                for (key, ports) in [("src_ports", r.src_ports), ("dst_ports", r.dst_ports)] {
                    if let Some(why) = ports_problem(ports, r.protocol) {
                        return err(key, why);
                    }
                }
                if r.mirror_to.len() > MAX_MIRRORS_PER_FLOW {
                    return err(
                        "mirror_to",
                        format!(
                            "{} analyzers; a flow is mirrored to at most {MAX_MIRRORS_PER_FLOW}",
                            r.mirror_to.len()
                        ),
                    );
                }
                let mut seen = Unique::items();
                for name in &r.mirror_to {
                    if !self.analyzers.contains_key(name.as_str()) {
                        return err("mirror_to", format!("analyzer {name:?} is not defined"));
                    }
                    if seen.repeated(name.as_str()) {
                        return err("mirror_to", format!("analyzer {name:?} is listed twice"));
                    }
                }
            }
        }
        Ok(())
    }
}
