//! `[[security_group]]`: security groups (allow-lists of rules) applied to VM vifs.

use super::check::{
    is_uuid, not_a_uuid, ports_problem, prefix_problem, protocol_family_problem, Checker, ConfigError, Unique,
};
use super::value::{PortRange, Protocol, SgRemote};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use toml::Spanned;

/// Direction of a security group rule, seen from the VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SgDirection {
    /// Traffic to the VM; `remote` is the source.
    Ingress,
    /// Traffic from the VM; `remote` is the destination.
    Egress,
}

/// Address family a security group rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum EtherType {
    /// IPv4 only (`IPv4`, also `ipv4`).
    #[serde(rename = "IPv4", alias = "ipv4")]
    Ipv4,
    /// IPv6 only (`IPv6`, also `ipv6`).
    #[serde(rename = "IPv6", alias = "ipv6")]
    Ipv6,
}

/// A security group: an allow-list of rules; vifs that list it in `security_groups` only
/// send and receive what some rule of one of their groups allows.
///
/// ```toml
/// [[security_group]]
/// name = "web"
/// uuid = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
///
/// [[security_group.rule]]
/// uuid = "1f2e3d4c-5b6a-4978-8695-a4b3c2d1e0f9"   # sg_rule_uuid
/// direction = "ingress"                          # ingress | egress
/// remote = "sg:web"                              # any | CIDR | sg:<name>
/// protocol = "tcp"
/// ports = "80-443"                               # destination ports; any (default)
/// ethertype = "IPv4"                             # IPv4 | IPv6; both when absent
/// ```
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityGroupConfig {
    /// Group name, unique and non-empty; vifs name it in `security_groups`, rules in `sg:<name>`.
    pub name: String,
    /// The group's UUID (tf `sg_uuid`); optional, must be a UUID when given.
    #[serde(default)]
    pub uuid: Option<String>,
    /// The group's rules (`[[security_group.rule]]`); a packet is allowed when any rule matches.
    #[serde(default, rename = "rule")]
    pub rules: Vec<Spanned<SgRuleConfig>>,
}

/// One security group rule.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SgRuleConfig {
    /// The rule's UUID, reported as `sg_rule_uuid`.
    pub uuid: String,
    /// Ingress (to the VM) or egress (from the VM).
    pub direction: SgDirection,
    /// The other end: `any`, a CIDR, or `sg:<group>`; default `any`.
    #[serde(default)]
    pub remote: SgRemote,
    /// IP protocol the rule allows; default `any`.
    #[serde(default)]
    pub protocol: Protocol,
    /// Destination port range.
    #[serde(default)]
    pub ports: PortRange,
    /// IPv4 or IPv6 only; both when absent.
    #[serde(default)]
    pub ethertype: Option<EtherType>,
}

impl Checker<'_> {
    pub(super) fn security_groups(&self, rule_uuids: &mut HashMap<String, (String, usize)>) -> Result<(), ConfigError> {
        let list = &self.cfg.security_groups;
        let (mut names, mut uuids) = (Unique::entries("security_group", list), Unique::entries("security_group", list));
        for (i, e) in list.iter().enumerate() {
            let g = e.get_ref();
            let err = |key: &str, msg: String| Err(self.entry("security_group", i, e, key, msg));
            if g.name.trim().is_empty() {
                return err("name", "must not be empty".into());
            }
            names.check(self, i, "name", g.name.as_str(), |_, at| {
                format!("duplicate security group name {:?} ({at})", g.name)
            })?;
            if let Some(uuid) = &g.uuid {
                if !is_uuid(uuid) {
                    return err("uuid", not_a_uuid(uuid));
                }
                uuids.check(self, i, "uuid", uuid.to_ascii_lowercase(), |_, at| {
                    format!("duplicate security group uuid {uuid} ({at})")
                })?;
            }
            let rules = format!("security_group[{i}].rule");
            for (j, re) in g.rules.iter().enumerate() {
                let r = re.get_ref();
                let err = |key: &str, msg: String| Err(self.entry(&rules, j, re, key, msg));
                self.rule_uuid(&rules, j, re, &r.uuid, rule_uuids)?;
                match &r.remote {
                    SgRemote::Any => {}
                    SgRemote::Prefix(prefix) => {
                        if let Some(why) = prefix_problem(*prefix) {
                            return err("remote", why);
                        }
                        let v4 = prefix.addr.is_ipv4();
                        if let Some(et) = r.ethertype {
                            if v4 != (et == EtherType::Ipv4) {
                                return err(
                                    "remote",
                                    format!("{prefix} is not {}; the rule never matches", ethertype_name(et)),
                                );
                            }
                        }
                        if let Some(why) = protocol_family_problem(r.protocol, v4) {
                            return err("protocol", format!("{why} (remote is {prefix})"));
                        }
                    }
                    SgRemote::Sg(name) => {
                        if name.is_empty() {
                            return err("remote", "sg: needs a security group name".into());
                        }
                        if !self.sgs.contains_key(name.as_str()) {
                            return err("remote", format!("security group {name:?} is not defined"));
                        }
                    }
                }
                if let Some(et) = r.ethertype {
                    if let Some(why) = protocol_family_problem(r.protocol, et == EtherType::Ipv4) {
                        return err("protocol", format!("{why} (ethertype is {})", ethertype_name(et)));
                    }
                }
                if let Some(why) = ports_problem(r.ports, r.protocol) {
                    return err("ports", why);
                }
            }
        }
        Ok(())
    }
}

fn ethertype_name(e: EtherType) -> &'static str {
    match e {
        EtherType::Ipv4 => "IPv4",
        EtherType::Ipv6 => "IPv6",
    }
}
