//! Semantic validation of a parsed configuration.
//!
//! [`validate`] checks values and cross-references (a route's nexthop, a vif's VRF, ...)
//! and returns the first problem as one [`ConfigError`] that names the file, the line and
//! the field by its TOML path, e.g.
//!
//! ```text
//! vrouter.toml:42: route[3].nexthop: nexthop 99 is not defined
//! ```
//!
//! Entries of the `[[vif]]`, `[[vrf]]`, ... arrays are `toml::Spanned`, so their line is
//! known exactly; within an entry the line of the offending key is looked up in the
//! entry's text. For the `[eal]` and `[vrouter]` tables the key is looked up in the
//! table's section of the file (or its inline `eal = { ... }`); when it cannot be found
//! the message has no line.
//!
//! Parse errors ([`ConfigError::parse`]) keep toml's message and get the line of its span
//! and the path of the enclosing table, e.g.
//!
//! ```text
//! vrouter.toml:7: vif[0]: unknown field `rx_queue`, expected one of `id`, `name`, ...
//! ```

use super::schema::{
    Config, EalConfig, Mac, NexthopConfig, Prefix, TunnelEncap, VifType, VrouterConfig,
};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::ops::Range;
use toml::Spanned;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: std::io::Error },
    /// The text is not valid TOML or does not match the schema (unknown field, wrong type,
    /// missing field). `table` is the TOML path of the enclosing table, e.g. `vif[1]`.
    #[error("{}: {}{message}", location(.origin, .line), in_table(.table))]
    Parse { origin: String, line: Option<usize>, table: Option<String>, message: String },
    /// A value is out of range or a reference is dangling. `field` is the TOML path,
    /// e.g. `route[3].nexthop` or `eal.forwarding_cores`.
    #[error("{}: {field}: {message}", location(.origin, .line))]
    Invalid { origin: String, line: Option<usize>, field: String, message: String },
}

/// `origin:line`, or `origin` when the line is not known.
fn location(origin: &str, line: &Option<usize>) -> String {
    match line {
        Some(line) => format!("{origin}:{line}"),
        None => origin.to_string(),
    }
}

/// `table: ` when the enclosing table is known.
fn in_table(table: &Option<String>) -> String {
    table.as_ref().map(|t| format!("{t}: ")).unwrap_or_default()
}

impl ConfigError {
    /// Wraps a TOML/serde error with the file line of its span and the enclosing table.
    pub fn parse(origin: &str, text: &str, e: toml::de::Error) -> Self {
        let message = e.message().trim_end().to_string();
        let (line, table) = match e.span() {
            Some(span) => {
                let (offset, table) = locate(text, span, &message);
                (Some(line_of(text, offset)), with_value_key(text, offset, table))
            }
            None => (None, None),
        };
        ConfigError::Parse { origin: origin.into(), line, table, message }
    }
}

/// When the error points at a value (`key = <here>`), names the key after the table:
/// toml's message for a wrong type ("invalid type: string, expected u32") does not.
fn with_value_key(text: &str, offset: usize, table: Option<String>) -> Option<String> {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let before = &text[line_start..offset];
    let Some((key, _)) = before.split_once('=') else { return table };
    let key = key.trim().trim_matches('"');
    if key.is_empty() || key.contains(['[', '{', ',']) {
        return table;
    }
    Some(match table {
        Some(t) if !t.ends_with(key) => format!("{t}.{key}"),
        Some(t) => t,
        None => key.to_string(),
    })
}

/// Checks a parsed configuration; `text` is the file it was parsed from (for line numbers)
/// and `origin` names it in errors.
pub fn validate(cfg: &Config, text: &str, origin: &str) -> Result<(), ConfigError> {
    let ck = Checker::new(cfg, text, origin);
    ck.eal(&cfg.eal)?;
    ck.vrouter(&cfg.vrouter)?;
    ck.vrfs()?;
    ck.vifs()?;
    ck.nexthops()?;
    ck.routes()?;
    ck.bridge()?;
    ck.labels()
}

/// Highest vif and VRF id (exclusive).
const MAX_VIFS: u32 = 4096;
const MAX_VRFS: u32 = 4096;
/// Highest CPU id (exclusive) accepted in `[eal]`.
const MAX_CORES: u32 = 1024;
/// Members of one ECMP nexthop.
const MAX_ECMP_MEMBERS: usize = 16;
/// MPLS labels 0..=15 are reserved; labels are 20 bits.
const MPLS_FIRST_LABEL: u32 = 16;
const MPLS_LABEL_LIMIT: u32 = 1 << 20;
/// VXLAN VNIs are 24 bits; 0 is not used.
const VNI_MAX: u32 = 0xFF_FFFF;
const MAX_VIF_NAME: usize = 31;
const MAX_VN_NAME: usize = 63;

/// Validation context: the configuration, the text it came from and indexes of the
/// entries other entries refer to (first definition wins; duplicates are errors).
struct Checker<'a> {
    cfg: &'a Config,
    text: &'a str,
    origin: &'a str,
    /// VRF id -> index in `cfg.vrfs`.
    vrfs: HashMap<u32, usize>,
    /// vif id -> index in `cfg.vifs`.
    vifs: HashMap<u16, usize>,
    /// nexthop id -> index in `cfg.nexthops`.
    nexthops: HashMap<u32, usize>,
}

impl<'a> Checker<'a> {
    fn new(cfg: &'a Config, text: &'a str, origin: &'a str) -> Self {
        fn index<K: std::hash::Hash + Eq, T>(
            list: &[Spanned<T>],
            key: impl Fn(&T) -> K,
        ) -> HashMap<K, usize> {
            let mut map = HashMap::new();
            for (i, e) in list.iter().enumerate() {
                map.entry(key(e.get_ref())).or_insert(i);
            }
            map
        }
        Checker {
            cfg,
            text,
            origin,
            vrfs: index(&cfg.vrfs, |v| v.id),
            vifs: index(&cfg.vifs, |v| v.id),
            nexthops: index(&cfg.nexthops, |n| n.id()),
        }
    }

    // ---- error construction ----

    fn invalid(&self, line: Option<usize>, field: String, message: String) -> ConfigError {
        ConfigError::Invalid { origin: self.origin.into(), line, field, message }
    }

    /// 1-based line of a byte offset in the text.
    fn line_of(&self, offset: usize) -> usize {
        line_of(self.text, offset)
    }

    /// Line where `key` is written inside an entry, else the entry's first line.
    fn key_line(&self, span: Range<usize>, key: &str) -> usize {
        let body = self.text.get(span.clone()).unwrap_or("");
        self.line_of(span.start + find_key(body, key).unwrap_or(0))
    }

    /// An error on `key` of entry `i` of the `[[list]]` array: field `list[i].key`.
    fn entry<T>(
        &self,
        list: &str,
        i: usize,
        e: &Spanned<T>,
        key: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        let line = self.key_line(e.span(), key);
        self.invalid(Some(line), format!("{list}[{i}].{key}"), message.into())
    }

    /// An error on `key` of the `[table]` table: field `table.key`. The line is that of
    /// `key =` in the `[table]` section, or of an inline `table = { ... }` at the top.
    fn table(&self, table: &str, key: &str, message: impl Into<String>) -> ConfigError {
        let text = self.text;
        let sections = sections(text);
        let offset = match sections.iter().find(|s| s.name == table && s.index.is_none()) {
            Some(s) => find_key(&text[s.header.end..s.end], key).map(|at| s.header.end + at),
            None => {
                let top = &text[..sections.first().map_or(text.len(), |s| s.header.start)];
                find_key(top, table).and_then(|at| {
                    // Inline tables are written on one line.
                    let line_end = top[at..].find('\n').map_or(top.len(), |n| at + n);
                    let inline = &top[at..line_end];
                    let open = inline.find('{')?;
                    find_key(&inline[open + 1..], key).map(|k| at + open + 1 + k)
                })
            }
        };
        self.invalid(offset.map(|o| self.line_of(o)), format!("{table}.{key}"), message.into())
    }

    /// "first defined at line N", for duplicate messages.
    fn first_at<T>(&self, e: &Spanned<T>) -> String {
        format!("first defined at line {}", self.line_of(e.span().start))
    }

    // ---- [eal] ----

    fn eal(&self, eal: &EalConfig) -> Result<(), ConfigError> {
        let err = |key: &str, msg: String| Err(self.table("eal", key, msg));
        if eal.main_core >= MAX_CORES {
            return err("main_core", format!("core {} is not below {MAX_CORES}", eal.main_core));
        }
        if eal.forwarding_cores.is_empty() {
            return err("forwarding_cores", "at least one forwarding core is needed".into());
        }
        let mut seen = HashSet::new();
        for &core in &eal.forwarding_cores {
            if core >= MAX_CORES {
                return err("forwarding_cores", format!("core {core} is not below {MAX_CORES}"));
            }
            if core == eal.main_core {
                return err(
                    "forwarding_cores",
                    format!("core {core} is the main_core; forwarding cores must differ from it"),
                );
            }
            if !seen.insert(core) {
                return err("forwarding_cores", format!("core {core} is listed twice"));
            }
        }
        if eal.memory_mb < 64 {
            return err("memory_mb", format!("{} MiB is too little; at least 64", eal.memory_mb));
        }
        if eal.mbufs < 1024 {
            return err("mbufs", format!("{} mbufs is too few; at least 1024", eal.mbufs));
        }
        for (key, n) in [("rx_desc", eal.rx_desc), ("tx_desc", eal.tx_desc)] {
            if !n.is_power_of_two() || !(64..=16384).contains(&n) {
                return err(key, format!("{n} must be a power of two from 64 to 16384"));
            }
        }
        if let Some(prefix) = &eal.file_prefix {
            if prefix.is_empty() {
                return err("file_prefix", "must not be empty".into());
            }
            if let Some(c) =
                prefix.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
            {
                return err(
                    "file_prefix",
                    format!(
                        "{prefix:?} contains {c:?}; only letters, digits, '_' and '-' are allowed"
                    ),
                );
            }
        }
        if let Some(i) = eal.vdevs.iter().position(|v| v.trim().is_empty()) {
            return err("vdevs", format!("entry {i} is empty"));
        }
        Ok(())
    }

    // ---- [vrouter] ----

    fn vrouter(&self, vr: &VrouterConfig) -> Result<(), ConfigError> {
        if let Some(why) = unicast_v4_problem(vr.router_ip) {
            return Err(self.table("vrouter", "router_ip", format!("{} is {why}", vr.router_ip)));
        }
        if let Some(why) = unicast_mac_problem(vr.router_mac) {
            return Err(self.table("vrouter", "router_mac", format!("{} is {why}", vr.router_mac)));
        }
        if vr.run_dir.as_os_str().is_empty() {
            return Err(self.table("vrouter", "run_dir", "must not be empty"));
        }
        Ok(())
    }

    // ---- [[vrf]] ----

    fn vrfs(&self) -> Result<(), ConfigError> {
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut vnis: HashMap<u32, usize> = HashMap::new();
        for (i, e) in self.cfg.vrfs.iter().enumerate() {
            let vrf = e.get_ref();
            let err = |key: &str, msg: String| Err(self.entry("vrf", i, e, key, msg));
            if vrf.id >= MAX_VRFS {
                return err("id", format!("VRF id {} is not below {MAX_VRFS}", vrf.id));
            }
            let first = self.vrfs[&vrf.id];
            if first != i {
                let at = self.first_at(&self.cfg.vrfs[first]);
                return err("id", format!("duplicate VRF id {} ({at})", vrf.id));
            }
            if vrf.name.is_empty() {
                return err("name", "must not be empty".into());
            }
            if let Some(&first) = names.get(vrf.name.as_str()) {
                let at = self.first_at(&self.cfg.vrfs[first]);
                return err("name", format!("duplicate VRF name {:?} ({at})", vrf.name));
            }
            names.insert(&vrf.name, i);
            if let Some(vni) = vrf.vxlan_vni {
                if !(1..=VNI_MAX).contains(&vni) {
                    return err("vxlan_vni", format!("VNI {vni} is out of range 1..={VNI_MAX}"));
                }
                if let Some(&first) = vnis.get(&vni) {
                    let at = self.first_at(&self.cfg.vrfs[first]);
                    return err(
                        "vxlan_vni",
                        format!("VNI {vni} is already used by vrf[{first}] ({at})"),
                    );
                }
                vnis.insert(vni, i);
            }
        }
        Ok(())
    }

    // ---- [[vif]] ----

    fn vifs(&self) -> Result<(), ConfigError> {
        if self.cfg.vifs.is_empty() {
            return Err(self.invalid(None, "vif".into(), "at least one [[vif]] is needed".into()));
        }
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut devices: HashMap<&str, usize> = HashMap::new();
        let mut host: Option<usize> = None;
        for (i, e) in self.cfg.vifs.iter().enumerate() {
            let vif = e.get_ref();
            let err = |key: &str, msg: String| Err(self.entry("vif", i, e, key, msg));
            if u32::from(vif.id) >= MAX_VIFS {
                return err("id", format!("vif id {} is not below {MAX_VIFS}", vif.id));
            }
            let first = self.vifs[&vif.id];
            if first != i {
                let at = self.first_at(&self.cfg.vifs[first]);
                return err("id", format!("duplicate vif id {} ({at})", vif.id));
            }
            if vif.name.is_empty() {
                return err("name", "must not be empty".into());
            }
            if vif.name.len() > MAX_VIF_NAME {
                return err("name", format!("{:?} is longer than {MAX_VIF_NAME} bytes", vif.name));
            }
            if let Some(&first) = names.get(vif.name.as_str()) {
                let at = self.first_at(&self.cfg.vifs[first]);
                return err("name", format!("duplicate vif name {:?} ({at})", vif.name));
            }
            names.insert(&vif.name, i);
            if vif.device.trim().is_empty() {
                return err("device", "must not be empty".into());
            }
            if let Some(&first) = devices.get(vif.device.as_str()) {
                let at = self.first_at(&self.cfg.vifs[first]);
                return err(
                    "device",
                    format!("device {:?} is already bound to vif[{first}] ({at})", vif.device),
                );
            }
            devices.insert(&vif.device, i);
            if let Some(why) = unicast_mac_problem(vif.mac) {
                return err("mac", format!("{} is {why}", vif.mac));
            }
            if !self.vrfs.contains_key(&vif.vrf) {
                return err("vrf", format!("vrf {} is not defined", vif.vrf));
            }
            if !(1..=16).contains(&vif.rx_queues) {
                return err("rx_queues", format!("{} is out of range 1..=16", vif.rx_queues));
            }
            if let Some(mtu) = vif.mtu {
                if !(68..=9000).contains(&mtu) {
                    return err("mtu", format!("{mtu} is out of range 68..=9000"));
                }
            }
            if vif.kind == VifType::Host {
                if let Some(first) = host {
                    let at = self.first_at(&self.cfg.vifs[first]);
                    return err(
                        "type",
                        format!("only one host vif is allowed; vif[{first}] is one ({at})"),
                    );
                }
                host = Some(i);
            }
            for (key, uuid) in [("vm_uuid", &vif.vm_uuid), ("vmi_uuid", &vif.vmi_uuid)] {
                if let Some(uuid) = uuid {
                    if !is_uuid(uuid) {
                        return err(
                            key,
                            format!(
                                "{uuid:?} is not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)"
                            ),
                        );
                    }
                }
            }
            if let Some(vn) = &vif.vn_name {
                if vn.len() > MAX_VN_NAME {
                    return err("vn_name", format!("{vn:?} is longer than {MAX_VN_NAME} bytes"));
                }
            }
        }
        Ok(())
    }

    // ---- [[nexthop]] ----

    fn nexthops(&self) -> Result<(), ConfigError> {
        for (i, e) in self.cfg.nexthops.iter().enumerate() {
            let nh = e.get_ref();
            let err = |key: &str, msg: String| Err(self.entry("nexthop", i, e, key, msg));
            let first = self.nexthops[&nh.id()];
            if first != i {
                let at = self.first_at(&self.cfg.nexthops[first]);
                return err("id", format!("duplicate nexthop id {} ({at})", nh.id()));
            }
            // The vif a nexthop sends on must exist (and for some kinds be of one type).
            let vif_type = |vif: u16| self.vifs.get(&vif).map(|&v| self.cfg.vifs[v].get_ref().kind);
            match nh {
                NexthopConfig::Encap { vif, dst_mac, .. } => {
                    if vif_type(*vif).is_none() {
                        return err("vif", format!("vif {vif} is not defined"));
                    }
                    if *dst_mac == Mac::default() {
                        return err("dst_mac", "must not be all zero".into());
                    }
                }
                NexthopConfig::Tunnel { encap, remote_ip, label, vif, .. } => {
                    match vif_type(*vif) {
                        None => return err("vif", format!("vif {vif} is not defined")),
                        Some(VifType::Fabric) => {}
                        Some(t) => {
                            return err(
                                "vif",
                                format!(
                                    "vif {vif} is of type {}; tunnels leave on a fabric vif",
                                    type_name(t)
                                ),
                            )
                        }
                    }
                    match encap {
                        TunnelEncap::Mplsoudp => {
                            if *label < MPLS_FIRST_LABEL {
                                return err(
                                    "label",
                                    format!("MPLS label {label} is reserved (0-15)"),
                                );
                            }
                            if *label >= MPLS_LABEL_LIMIT {
                                return err(
                                    "label",
                                    format!(
                                        "MPLS label {label} does not fit in 20 bits (max {})",
                                        MPLS_LABEL_LIMIT - 1
                                    ),
                                );
                            }
                        }
                        TunnelEncap::Vxlan => {
                            if !(1..=VNI_MAX).contains(label) {
                                return err(
                                    "label",
                                    format!("VNI {label} is out of range 1..={VNI_MAX}"),
                                );
                            }
                        }
                    }
                    if let Some(why) = unicast_v4_problem(*remote_ip) {
                        return err("remote_ip", format!("{remote_ip} is {why}"));
                    }
                    if *remote_ip == self.cfg.vrouter.router_ip {
                        return err(
                            "remote_ip",
                            format!("{remote_ip} is this vRouter's own router_ip"),
                        );
                    }
                }
                NexthopConfig::Receive { vif, .. } => match vif_type(*vif) {
                    None => return err("vif", format!("vif {vif} is not defined")),
                    Some(VifType::Host) => {}
                    Some(t) => {
                        return err(
                            "vif",
                            format!(
                                "vif {vif} is of type {}; receive nexthops deliver to the host vif",
                                type_name(t)
                            ),
                        )
                    }
                },
                NexthopConfig::Discard { .. } => {}
                NexthopConfig::Ecmp { members, .. } => {
                    if members.is_empty() || members.len() > MAX_ECMP_MEMBERS {
                        return err(
                            "members",
                            format!(
                                "{} members; an ECMP nexthop needs 1 to {MAX_ECMP_MEMBERS}",
                                members.len()
                            ),
                        );
                    }
                    let mut seen = HashSet::new();
                    for &m in members {
                        let Some(&mi) = self.nexthops.get(&m) else {
                            return err("members", format!("nexthop {m} is not defined"));
                        };
                        if matches!(self.cfg.nexthops[mi].get_ref(), NexthopConfig::Ecmp { .. }) {
                            return err(
                                "members",
                                format!("nexthop {m} is an ECMP nexthop; ECMP cannot be nested"),
                            );
                        }
                        if !seen.insert(m) {
                            return err("members", format!("nexthop {m} is listed twice"));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    // ---- [[route]] ----

    fn routes(&self) -> Result<(), ConfigError> {
        let mut seen: HashMap<(u32, Prefix), usize> = HashMap::new();
        for (i, e) in self.cfg.routes.iter().enumerate() {
            let r = e.get_ref();
            let err = |key: &str, msg: String| Err(self.entry("route", i, e, key, msg));
            if !self.vrfs.contains_key(&r.vrf) {
                return err("vrf", format!("vrf {} is not defined", r.vrf));
            }
            let canonical = canonical(r.prefix);
            if canonical != r.prefix {
                return err(
                    "prefix",
                    format!("{} has host bits set; the prefix is {canonical}", r.prefix),
                );
            }
            if !self.nexthops.contains_key(&r.nexthop) {
                return err("nexthop", format!("nexthop {} is not defined", r.nexthop));
            }
            if let Some(&first) = seen.get(&(r.vrf, r.prefix)) {
                let at = self.first_at(&self.cfg.routes[first]);
                return err(
                    "prefix",
                    format!("duplicate route {} in vrf {} ({at})", r.prefix, r.vrf),
                );
            }
            seen.insert((r.vrf, r.prefix), i);
        }
        Ok(())
    }

    // ---- [[bridge]] ----

    fn bridge(&self) -> Result<(), ConfigError> {
        let mut seen: HashMap<(u32, Mac), usize> = HashMap::new();
        for (i, e) in self.cfg.bridge.iter().enumerate() {
            let b = e.get_ref();
            let err = |key: &str, msg: String| Err(self.entry("bridge", i, e, key, msg));
            if !self.vrfs.contains_key(&b.vrf) {
                return err("vrf", format!("vrf {} is not defined", b.vrf));
            }
            if b.mac == Mac::default() {
                return err("mac", "must not be all zero".into());
            }
            if !self.nexthops.contains_key(&b.nexthop) {
                return err("nexthop", format!("nexthop {} is not defined", b.nexthop));
            }
            if let Some(&first) = seen.get(&(b.vrf, b.mac)) {
                let at = self.first_at(&self.cfg.bridge[first]);
                return err(
                    "mac",
                    format!("duplicate bridge entry {} in vrf {} ({at})", b.mac, b.vrf),
                );
            }
            seen.insert((b.vrf, b.mac), i);
        }
        Ok(())
    }

    // ---- [[label]] ----

    fn labels(&self) -> Result<(), ConfigError> {
        let mut seen: HashMap<u32, usize> = HashMap::new();
        for (i, e) in self.cfg.labels.iter().enumerate() {
            let l = e.get_ref();
            let err = |key: &str, msg: String| Err(self.entry("label", i, e, key, msg));
            if l.label < MPLS_FIRST_LABEL {
                return err("label", format!("MPLS label {} is reserved (0-15)", l.label));
            }
            if l.label >= MPLS_LABEL_LIMIT {
                return err(
                    "label",
                    format!(
                        "MPLS label {} does not fit in 20 bits (max {})",
                        l.label,
                        MPLS_LABEL_LIMIT - 1
                    ),
                );
            }
            if let Some(&first) = seen.get(&l.label) {
                let at = self.first_at(&self.cfg.labels[first]);
                return err("label", format!("duplicate label {} ({at})", l.label));
            }
            seen.insert(l.label, i);
            if !self.nexthops.contains_key(&l.nexthop) {
                return err("nexthop", format!("nexthop {} is not defined", l.nexthop));
            }
        }
        Ok(())
    }
}

// ---- value helpers ----

/// Why an IPv4 address cannot be a unicast host address, if it cannot.
fn unicast_v4_problem(ip: Ipv4Addr) -> Option<&'static str> {
    if ip.is_unspecified() {
        Some("the unspecified address")
    } else if ip.is_broadcast() {
        Some("the broadcast address")
    } else if ip.is_multicast() {
        Some("a multicast address")
    } else {
        None
    }
}

/// Why a MAC cannot be an interface's own address, if it cannot.
fn unicast_mac_problem(mac: Mac) -> Option<&'static str> {
    if mac == Mac::default() {
        Some("all zero")
    } else if mac.0[0] & 1 != 0 {
        Some("a multicast MAC (low bit of the first byte set)")
    } else {
        None
    }
}

/// RFC 4122 text form: 8-4-4-4-12 hex digits.
fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The prefix with its host bits cleared.
fn canonical(p: Prefix) -> Prefix {
    let addr = match p.addr {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(p.len)).unwrap_or(0);
            IpAddr::V4((u32::from(a) & mask).into())
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(p.len)).unwrap_or(0);
            IpAddr::V6((u128::from(a) & mask).into())
        }
    };
    Prefix { addr, len: p.len }
}

fn type_name(t: VifType) -> &'static str {
    match t {
        VifType::Fabric => "fabric",
        VifType::Virtual => "virtual",
        VifType::Host => "host",
    }
}

// ---- text helpers ----

/// 1-based line number of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count() + 1
}

/// Byte offset in `body` where `key = ...` is written: `key` at the start of a line or
/// after `{` / `,` (inline tables), followed by `=`.
fn find_key(body: &str, key: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(pos) = body[from..].find(key) {
        let at = from + pos;
        let before = body[..at].trim_end_matches([' ', '\t']);
        let after = body[at + key.len()..].trim_start_matches([' ', '\t']);
        let starts = before.is_empty() || before.ends_with(['\n', '{', ',']);
        if starts && after.starts_with('=') {
            return Some(at);
        }
        from = at + key.len();
    }
    None
}

/// A `[name]` or `[[name]]` section of the file.
struct Section<'t> {
    name: &'t str,
    /// Position among the `[[name]]` entries; `None` for a `[name]` table.
    index: Option<usize>,
    /// The header line (including its newline).
    header: Range<usize>,
    /// End of the section: the next header or the end of the text.
    end: usize,
}

impl Section<'_> {
    /// TOML path of the section: `vif[1]` or `eal`.
    fn path(&self) -> String {
        match self.index {
            Some(i) => format!("{}[{i}]", self.name),
            None => self.name.to_string(),
        }
    }
}

/// The table headers of a TOML text, in order. A line is a header when it is `[name]` or
/// `[[name]]` with a bare, quoted or dotted name, optionally followed by a comment.
fn sections(text: &str) -> Vec<Section<'_>> {
    let mut out: Vec<Section<'_>> = Vec::new();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let t = line.trim();
        let (open, close) = if t.starts_with("[[") { ("[[", "]]") } else { ("[", "]") };
        let Some(rest) = t.strip_prefix(open) else { continue };
        let Some(end) = rest.find(close) else { continue };
        let name = rest[..end].trim();
        let tail = rest[end + close.len()..].trim_start();
        let name_ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '"' | ' '));
        if !name_ok || !(tail.is_empty() || tail.starts_with('#')) {
            continue;
        }
        let index = (open == "[[").then(|| {
            let n = counts.entry(name).or_insert(0);
            *n += 1;
            *n - 1
        });
        if let Some(prev) = out.last_mut() {
            prev.end = start;
        }
        out.push(Section { name, index, header: start..offset, end: text.len() });
    }
    out
}

/// Where a parse error with `span` lies: the byte offset to report and the TOML path
/// (`vif[1]`, `eal`) of the enclosing table. The table is known when the span is in a
/// table's body or is the whole table (a missing field); it is `None` at the top level and
/// for errors in a header itself (an unknown table name).
///
/// Entries of an internally tagged enum (`[[nexthop]]`) lose their span in serde: the error
/// then spans the whole array, and the failing entry is found by parsing each on its own.
fn locate(text: &str, span: Range<usize>, message: &str) -> (usize, Option<String>) {
    let sections = sections(text);
    let Some(s) = sections.iter().rev().find(|s| s.header.start <= span.start) else {
        return (span.start, None);
    };
    if span.start >= s.header.end {
        return (span.start, Some(s.path()));
    }
    if span.start != s.header.start || span.is_empty() {
        return (span.start, None);
    }
    if s.index.is_none() || span.end <= s.end {
        return (span.start, Some(s.path()));
    }
    // The span covers several `[[name]]` entries: the whole array.
    let entries = sections
        .iter()
        .filter(|t| t.name == s.name && t.index.is_some())
        .filter(|t| t.header.start >= span.start && t.header.start < span.end);
    for t in entries {
        let Some(err) = entry_error(t.name, &text[t.header.start..t.end]) else { continue };
        let body = &text[t.header.end..t.end];
        // Serde names an unknown field in its message; point at the line that sets it.
        let offset = unknown_field(err.message())
            .or_else(|| unknown_field(message))
            .and_then(|key| find_key(body, key))
            .map_or(t.header.start, |at| t.header.end + at);
        return (offset, Some(t.path()));
    }
    (span.start, Some(s.name.to_string()))
}

/// The error of parsing one `[[name]]` entry of the file on its own, if it fails.
fn entry_error(name: &str, entry: &str) -> Option<toml::de::Error> {
    use super::schema::{BridgeConfig, LabelConfig, RouteConfig, VifConfig, VrfConfig};
    fn check<T: serde::de::DeserializeOwned>(entry: &str) -> Option<toml::de::Error> {
        toml::from_str::<HashMap<String, Vec<T>>>(entry).err()
    }
    match name {
        "vif" => check::<VifConfig>(entry),
        "vrf" => check::<VrfConfig>(entry),
        "nexthop" => check::<NexthopConfig>(entry),
        "route" => check::<RouteConfig>(entry),
        "bridge" => check::<BridgeConfig>(entry),
        "label" => check::<LabelConfig>(entry),
        _ => None,
    }
}

/// The field named by serde's "unknown field `x`, expected ..." message.
fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next().filter(|k| !k.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    /// A complete, valid configuration: two VMs in VRF 1, a fabric vif and the host vif in
    /// VRF 0, every nexthop type, IPv4 and IPv6 routes, a bridge entry and a label.
    const VALID: &str = r#"# vRouter test configuration
[eal]
main_core = 0
forwarding_cores = [1, 2]
memory_mb = 256
no_huge = true
file_prefix = "vr-test_1"
vdevs = [
    "net_pcap0,rx_pcap=fabric-in.pcap,tx_pcap=fabric-out.pcap",
    "net_tap0,iface=vm1",
    "net_tap1,iface=vm2",
    "net_tap2,iface=vhost0",
]
mbufs = 8191
rx_desc = 512
tx_desc = 1024

[vrouter]
run_dir = "/run/vrouter"
router_ip = "10.1.1.1"
router_mac = "00:00:5e:00:01:00"
summary_interval_s = 5

[[vrf]]
id = 0
name = "fabric"

[[vrf]]
id = 1
name = "default-domain:demo:vn1"
vxlan_vni = 5001

[[vif]]
id = 0
name = "eth0"
type = "fabric"
device = "net_pcap0"
mac = "02:00:00:00:00:01"
ip = "10.1.1.1"
vrf = 0
rx_queues = 2
mtu = 9000

[[vif]]
id = 1
name = "vhost0"
type = "host"
device = "net_tap2"
mac = "02:00:00:00:00:02"
ip = "10.1.1.1"
vrf = 0

[[vif]]
id = 2
name = "tap-vm1"
type = "virtual"
device = "net_tap0"
mac = "02:00:00:00:01:01"
ip = "192.168.1.3"
ip6 = "fd00:1::3"
vrf = 1
mtu = 1500
vm_uuid = "6f1c2a3b-4d5e-4f60-8a1b-2c3d4e5f6a7b"
vmi_uuid = "0A1B2C3D-4E5F-4A6B-9C8D-7E6F5A4B3C2D"
vn_name = "default-domain:demo:vn1"
proxy_arp = true

[[vif]]
id = 3
name = "tap-vm2"
type = "vm"
device = "net_tap1"
mac = "02:00:00:00:01:02"
ip = "192.168.1.4"
vrf = 1

[[nexthop]]
id = 1
type = "encap"
vif = 2
dst_mac = "02:00:00:00:01:01"

[[nexthop]]
id = 2
type = "encap"
vif = 3
dst_mac = "02:00:00:00:01:02"
src_mac = "00:00:5e:00:01:00"

[[nexthop]]
id = 10
type = "tunnel"
encap = "mplsoudp"
remote_ip = "10.1.1.2"
label = 100
vif = 0
dst_mac = "02:00:00:00:00:fe"

[[nexthop]]
id = 11
type = "tunnel"
encap = "vxlan"
remote_ip = "10.1.1.3"
label = 5001
vif = 0
dst_mac = "02:00:00:00:00:fe"
inner_dst_mac = "02:00:00:00:02:01"

[[nexthop]]
id = 20
type = "ecmp"
members = [10, 11]

[[nexthop]]
id = 30
type = "discard"

[[nexthop]]
id = 40
type = "receive"
vif = 1

[[route]]
vrf = 1
prefix = "192.168.1.3/32"
nexthop = 1

[[route]]
vrf = 1
prefix = "192.168.1.4/32"
nexthop = 2

[[route]]
vrf = 1
prefix = "192.168.2.0/24"
nexthop = 20

[[route]]
vrf = 1
prefix = "0.0.0.0/0"
nexthop = 30

[[route]]
vrf = 1
prefix = "fd00:1::3/128"
nexthop = 1

[[route]]
vrf = 1
prefix = "fd00:2::/64"
nexthop = 10

[[route]]
vrf = 0
prefix = "10.1.1.1/32"
nexthop = 40

[[bridge]]
vrf = 1
mac = "02:00:00:00:01:01"
nexthop = 1

[[label]]
label = 17
nexthop = 1
"#;

    /// The 1-based line of the only line containing `# HERE`.
    fn marked_line(text: &str) -> usize {
        let lines: Vec<usize> = text
            .lines()
            .enumerate()
            .filter(|(_, l)| l.contains("# HERE"))
            .map(|(i, _)| i + 1)
            .collect();
        assert_eq!(lines.len(), 1, "exactly one line must be marked # HERE");
        lines[0]
    }

    /// `VALID` with `from` (which must occur exactly once) replaced by `to`.
    fn edit(from: &str, to: &str) -> String {
        assert_eq!(VALID.matches(from).count(), 1, "{from:?} must occur once in VALID");
        VALID.replacen(from, to, 1)
    }

    /// `VALID` with `extra` appended.
    fn with(extra: &str) -> String {
        format!("{VALID}\n{extra}")
    }

    /// Parses `text`, expects an `Invalid` error on `field` at the `# HERE` line (no line
    /// when nothing is marked) whose message contains `needle`; returns it as displayed.
    #[track_caller]
    fn expect_invalid(text: &str, field: &str, needle: &str) -> String {
        let want_line = text.contains("# HERE").then(|| marked_line(text));
        let Err(e) = parse(text, "test.toml") else {
            panic!("expected an error on {field}, the config was accepted");
        };
        let shown = e.to_string();
        let ConfigError::Invalid { origin, line, field: f, message } = e else {
            panic!("expected an Invalid error on {field}, got {shown}");
        };
        assert_eq!(origin, "test.toml");
        assert_eq!(f, field, "wrong field in {shown:?}");
        assert_eq!(line, want_line, "wrong line in {shown:?}");
        assert!(message.contains(needle), "{shown:?} does not mention {needle:?}");
        let at = line.map(|l| format!(":{l}")).unwrap_or_default();
        assert_eq!(shown, format!("test.toml{at}: {field}: {message}"));
        shown
    }

    /// Parses `text`, expects a `Parse` error at the `# HERE` line in `table` whose
    /// message contains `needle`; returns it as displayed.
    #[track_caller]
    fn expect_parse(text: &str, table: Option<&str>, needle: &str) -> String {
        let want_line = marked_line(text);
        let Err(e) = parse(text, "test.toml") else {
            panic!("expected a parse error, the config was accepted");
        };
        let shown = e.to_string();
        let ConfigError::Parse { line, table: t, message, .. } = e else {
            panic!("expected a parse error, got {shown}");
        };
        assert_eq!(line, Some(want_line), "wrong line in {shown:?}");
        assert_eq!(t.as_deref(), table, "wrong table in {shown:?}");
        assert!(message.contains(needle), "{shown:?} does not mention {needle:?}");
        assert!(!shown.contains('\n'), "one line expected: {shown:?}");
        shown
    }

    #[test]
    fn full_config_is_valid() {
        let cfg = parse(VALID, "test.toml").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.vifs.len(), 4);
        assert_eq!(cfg.nexthops.len(), 7);
        assert_eq!(cfg.routes.len(), 7);
    }

    #[test]
    fn display_format() {
        let text = edit(
            "prefix = \"192.168.2.0/24\"\nnexthop = 20",
            "prefix = \"192.168.2.0/24\"\nnexthop = 99 # HERE",
        );
        let shown = expect_invalid(&text, "route[2].nexthop", "nexthop 99 is not defined");
        let line = marked_line(&text);
        assert_eq!(shown, format!("test.toml:{line}: route[2].nexthop: nexthop 99 is not defined"));
        let e = ConfigError::Invalid {
            origin: "x.toml".into(),
            line: None,
            field: "vif".into(),
            message: "m".into(),
        };
        assert_eq!(e.to_string(), "x.toml: vif: m");
    }

    // ---- parse errors ----

    #[test]
    fn unknown_field_names_field_table_and_line() {
        let text = edit("rx_queues = 2\n", "rx_queues = 2\nrx_queue = 2 # HERE\n");
        let shown = expect_parse(&text, Some("vif[0]"), "unknown field `rx_queue`");
        let line = marked_line(&text);
        assert!(shown.starts_with(&format!("test.toml:{line}: vif[0]: unknown field `rx_queue`")));
    }

    #[test]
    fn unknown_field_in_eal_and_top_level() {
        expect_parse(
            &edit("mbufs = 8191", "mbuf = 8191 # HERE"),
            Some("eal"),
            "unknown field `mbuf`",
        );
        expect_parse(&with("[[vifs]] # HERE\nid = 9\n"), None, "unknown field `vifs`");
        expect_parse(
            &edit("id = 30\ntype = \"discard\"", "id = 30\ntype = \"discard\"\nvif = 1 # HERE"),
            Some("nexthop[5]"),
            "unknown field `vif`",
        );
    }

    #[test]
    fn parse_errors_have_lines() {
        expect_parse(
            &edit("vrf = 0\nrx_queues", "vrf = \"zero\" # HERE\nrx_queues"),
            Some("vif[0].vrf"),
            "invalid type",
        );
        expect_parse(
            &edit("\nmac = \"02:00:00:00:01:02\"", "\nmac = \"02:00:00:00:01\" # HERE"),
            Some("vif[3].mac"),
            "invalid MAC",
        );
        expect_parse(
            &with("[[route]] # HERE\nvrf = 1\nprefix = \"10.0.0.0/8\"\n"),
            Some("route[7]"),
            "missing field `nexthop`",
        );
        // Nexthops are an internally tagged enum: serde loses the entry's span, the
        // failing entry is still found.
        expect_parse(
            &with("[[nexthop]] # HERE\ntype = \"discard\"\n"),
            Some("nexthop[7]"),
            "missing field `id`",
        );
        expect_parse(
            &edit("[[nexthop]]\nid = 10\n", "[[nexthop]] # HERE\nid = 10\n")
                .replace("label = 100", "label = \"x\""),
            Some("nexthop[2]"),
            "invalid type",
        );
        expect_parse(
            &edit("type = \"discard\"", "type = \"drop\" # HERE"),
            Some("nexthop[5].type"),
            "unknown variant `drop`",
        );
        expect_parse(
            &edit("memory_mb = 256", "memory_mb = 256 x # HERE"),
            Some("eal.memory_mb"),
            "expected newline",
        );
    }

    // ---- [eal] ----

    #[test]
    fn eal_forwarding_cores() {
        expect_invalid(
            &edit("forwarding_cores = [1, 2]", "forwarding_cores = [] # HERE"),
            "eal.forwarding_cores",
            "at least one",
        );
        expect_invalid(
            &edit("forwarding_cores = [1, 2]", "forwarding_cores = [1, 2, 1] # HERE"),
            "eal.forwarding_cores",
            "core 1 is listed twice",
        );
        expect_invalid(
            &edit("forwarding_cores = [1, 2]", "forwarding_cores = [0, 2] # HERE"),
            "eal.forwarding_cores",
            "main_core",
        );
        expect_invalid(
            &edit("forwarding_cores = [1, 2]", "forwarding_cores = [1, 1024] # HERE"),
            "eal.forwarding_cores",
            "1024",
        );
        expect_invalid(&edit("main_core = 0", "main_core = 4096 # HERE"), "eal.main_core", "4096");
    }

    #[test]
    fn eal_sizes() {
        expect_invalid(
            &edit("memory_mb = 256", "memory_mb = 63 # HERE"),
            "eal.memory_mb",
            "at least 64",
        );
        expect_invalid(&edit("mbufs = 8191", "mbufs = 1023 # HERE"), "eal.mbufs", "at least 1024");
        expect_invalid(
            &edit("rx_desc = 512", "rx_desc = 500 # HERE"),
            "eal.rx_desc",
            "power of two",
        );
        expect_invalid(
            &edit("rx_desc = 512", "rx_desc = 32 # HERE"),
            "eal.rx_desc",
            "power of two",
        );
        expect_invalid(
            &edit("tx_desc = 1024", "tx_desc = 32768 # HERE"),
            "eal.tx_desc",
            "power of two",
        );
        // Bounds are inclusive.
        parse(
            &edit("rx_desc = 512", "rx_desc = 64").replace("tx_desc = 1024", "tx_desc = 16384"),
            "t",
        )
        .unwrap();
    }

    #[test]
    fn eal_file_prefix_and_vdevs() {
        expect_invalid(
            &edit("file_prefix = \"vr-test_1\"", "file_prefix = \"\" # HERE"),
            "eal.file_prefix",
            "empty",
        );
        expect_invalid(
            &edit("file_prefix = \"vr-test_1\"", "file_prefix = \"vr/1\" # HERE"),
            "eal.file_prefix",
            "'/'",
        );
        let text =
            edit("    \"net_tap1,iface=vm2\",\n", "    \"net_tap1,iface=vm2\",\n    \"\",\n")
                .replace("vdevs = [\n", "vdevs = [ # HERE\n");
        expect_invalid(&text, "eal.vdevs", "entry 3 is empty");
    }

    #[test]
    fn eal_key_line_found_in_section() {
        // A commented-out key does not confuse the lookup.
        let text = edit("memory_mb = 256", "#memory_mb = 1024\nmemory_mb = 8 # HERE");
        expect_invalid(&text, "eal.memory_mb", "at least 64");
        // A key of an inline `eal = { ... }` table is found too.
        let inline = "eal = { forwarding_cores = [1], memory_mb = 8 } # HERE\n".to_string()
            + &VALID[VALID.find("[vrouter]").unwrap()..];
        expect_invalid(&inline, "eal.memory_mb", "at least 64");
    }

    // ---- [vrouter] ----

    #[test]
    fn vrouter_router_ip() {
        expect_invalid(
            &edit("router_ip = \"10.1.1.1\"", "router_ip = \"0.0.0.0\" # HERE"),
            "vrouter.router_ip",
            "unspecified",
        );
        expect_invalid(
            &edit("router_ip = \"10.1.1.1\"", "router_ip = \"224.0.0.1\" # HERE"),
            "vrouter.router_ip",
            "multicast",
        );
        expect_invalid(
            &edit("router_ip = \"10.1.1.1\"", "router_ip = \"255.255.255.255\" # HERE"),
            "vrouter.router_ip",
            "broadcast",
        );
    }

    #[test]
    fn vrouter_router_mac_and_run_dir() {
        expect_invalid(
            &edit(
                "router_mac = \"00:00:5e:00:01:00\"",
                "router_mac = \"01:00:5e:00:00:01\" # HERE",
            ),
            "vrouter.router_mac",
            "multicast",
        );
        expect_invalid(
            &edit(
                "router_mac = \"00:00:5e:00:01:00\"",
                "router_mac = \"00:00:00:00:00:00\" # HERE",
            ),
            "vrouter.router_mac",
            "all zero",
        );
        expect_invalid(
            &edit("run_dir = \"/run/vrouter\"", "run_dir = \"\" # HERE"),
            "vrouter.run_dir",
            "empty",
        );
    }

    // ---- [[vif]] ----

    #[test]
    fn vif_at_least_one() {
        let no_vifs = r#"
[eal]
forwarding_cores = [1]
[vrouter]
run_dir = "/run"
router_ip = "10.0.0.1"
[[vrf]]
id = 0
name = "f"
"#;
        expect_invalid(no_vifs, "vif", "at least one");
    }

    #[test]
    fn vif_ids() {
        expect_invalid(
            &edit("id = 3\nname = \"tap-vm2\"", "id = 2 # HERE\nname = \"tap-vm2\""),
            "vif[3].id",
            "duplicate vif id 2",
        );
        expect_invalid(
            &edit("id = 3\nname = \"tap-vm2\"", "id = 4096 # HERE\nname = \"tap-vm2\""),
            "vif[3].id",
            "4096",
        );
    }

    #[test]
    fn vif_names_and_devices() {
        expect_invalid(
            &edit("name = \"tap-vm2\"", "name = \"tap-vm1\" # HERE"),
            "vif[3].name",
            "duplicate vif name",
        );
        expect_invalid(&edit("name = \"tap-vm2\"", "name = \"\" # HERE"), "vif[3].name", "empty");
        expect_invalid(
            &edit("name = \"tap-vm2\"", &format!("name = \"{}\" # HERE", "x".repeat(32))),
            "vif[3].name",
            "31 bytes",
        );
        parse(&edit("name = \"tap-vm2\"", &format!("name = \"{}\"", "x".repeat(31))), "t").unwrap();
        expect_invalid(
            &edit("device = \"net_tap1\"", "device = \"net_tap0\" # HERE"),
            "vif[3].device",
            "already bound to vif[2]",
        );
        expect_invalid(
            &edit("device = \"net_tap1\"", "device = \" \" # HERE"),
            "vif[3].device",
            "empty",
        );
    }

    #[test]
    fn vif_mac_and_vrf() {
        expect_invalid(
            &edit("\nmac = \"02:00:00:00:01:02\"", "\nmac = \"03:00:00:00:01:02\" # HERE"),
            "vif[3].mac",
            "multicast",
        );
        expect_invalid(
            &edit("\nmac = \"02:00:00:00:01:02\"", "\nmac = \"00:00:00:00:00:00\" # HERE"),
            "vif[3].mac",
            "all zero",
        );
        expect_invalid(
            &edit("ip = \"192.168.1.4\"\nvrf = 1", "ip = \"192.168.1.4\"\nvrf = 7 # HERE"),
            "vif[3].vrf",
            "vrf 7 is not defined",
        );
    }

    #[test]
    fn vif_queues_and_mtu() {
        expect_invalid(
            &edit("rx_queues = 2", "rx_queues = 0 # HERE"),
            "vif[0].rx_queues",
            "1..=16",
        );
        expect_invalid(
            &edit("rx_queues = 2", "rx_queues = 17 # HERE"),
            "vif[0].rx_queues",
            "1..=16",
        );
        expect_invalid(&edit("mtu = 9000", "mtu = 9001 # HERE"), "vif[0].mtu", "68..=9000");
        expect_invalid(&edit("mtu = 1500", "mtu = 67 # HERE"), "vif[2].mtu", "68..=9000");
    }

    #[test]
    fn vif_one_host() {
        expect_invalid(
            &edit("type = \"vm\"", "type = \"host\" # HERE"),
            "vif[3].type",
            "only one host vif",
        );
    }

    #[test]
    fn vif_uuids_and_vn_name() {
        expect_invalid(
            &edit(
                "vm_uuid = \"6f1c2a3b-4d5e-4f60-8a1b-2c3d4e5f6a7b\"",
                "vm_uuid = \"6f1c2a3b-4d5e-4f60-8a1b-2c3d4e5f6a7\" # HERE",
            ),
            "vif[2].vm_uuid",
            "not a UUID",
        );
        expect_invalid(
            &edit(
                "vmi_uuid = \"0A1B2C3D-4E5F-4A6B-9C8D-7E6F5A4B3C2D\"",
                "vmi_uuid = \"0A1B2C3D-4E5F-4A6B-9C8D7E6F5A4B3C2D\" # HERE",
            ),
            "vif[2].vmi_uuid",
            "not a UUID",
        );
        expect_invalid(
            &edit(
                "vmi_uuid = \"0A1B2C3D-4E5F-4A6B-9C8D-7E6F5A4B3C2D\"",
                "vmi_uuid = \"0A1B2C3D-4E5F-4A6B-9C8D-7E6F5A4B3CZD\" # HERE",
            ),
            "vif[2].vmi_uuid",
            "not a UUID",
        );
        expect_invalid(
            &edit(
                "vn_name = \"default-domain:demo:vn1\"",
                &format!("vn_name = \"{}\" # HERE", "v".repeat(64)),
            ),
            "vif[2].vn_name",
            "63 bytes",
        );
    }

    // ---- [[vrf]] ----

    #[test]
    fn vrf_ids_and_names() {
        expect_invalid(
            &edit("id = 1\nname = \"default-domain", "id = 0 # HERE\nname = \"default-domain"),
            "vrf[1].id",
            "duplicate VRF id 0",
        );
        expect_invalid(
            &edit("id = 1\nname = \"default-domain", "id = 4096 # HERE\nname = \"default-domain"),
            "vrf[1].id",
            "4096",
        );
        expect_invalid(
            &edit("name = \"default-domain:demo:vn1\"\nvxlan", "name = \"fabric\" # HERE\nvxlan"),
            "vrf[1].name",
            "duplicate VRF name",
        );
    }

    #[test]
    fn vrf_vni() {
        expect_invalid(
            &edit("vxlan_vni = 5001", "vxlan_vni = 0 # HERE"),
            "vrf[1].vxlan_vni",
            "out of range",
        );
        expect_invalid(
            &edit("vxlan_vni = 5001", "vxlan_vni = 16777216 # HERE"),
            "vrf[1].vxlan_vni",
            "out of range",
        );
        expect_invalid(
            &edit("vxlan_vni = 5001", "vxlan_vni = 5001 # HERE")
                .replace("name = \"fabric\"\n", "name = \"fabric\"\nvxlan_vni = 5001\n"),
            "vrf[1].vxlan_vni",
            "already used by vrf[0]",
        );
    }

    // ---- [[nexthop]] ----

    #[test]
    fn nexthop_ids() {
        expect_invalid(
            &edit("id = 30\n", "id = 20 # HERE\n"),
            "nexthop[5].id",
            "duplicate nexthop id 20",
        );
    }

    #[test]
    fn nexthop_encap() {
        expect_invalid(
            &edit("vif = 3\ndst_mac", "vif = 9 # HERE\ndst_mac"),
            "nexthop[1].vif",
            "vif 9 is not defined",
        );
        expect_invalid(
            &edit("dst_mac = \"02:00:00:00:01:02\"", "dst_mac = \"00:00:00:00:00:00\" # HERE"),
            "nexthop[1].dst_mac",
            "all zero",
        );
    }

    #[test]
    fn nexthop_tunnel_vif() {
        expect_invalid(
            &edit("label = 100\nvif = 0", "label = 100\nvif = 8 # HERE"),
            "nexthop[2].vif",
            "vif 8 is not defined",
        );
        expect_invalid(
            &edit("label = 100\nvif = 0", "label = 100\nvif = 2 # HERE"),
            "nexthop[2].vif",
            "type virtual",
        );
    }

    #[test]
    fn nexthop_tunnel_labels() {
        expect_invalid(
            &edit("label = 100\n", "label = 15 # HERE\n"),
            "nexthop[2].label",
            "reserved",
        );
        expect_invalid(
            &edit("label = 100\n", "label = 1048576 # HERE\n"),
            "nexthop[2].label",
            "20 bits",
        );
        parse(&edit("label = 100\n", "label = 1048575\n"), "t").unwrap();
        parse(&edit("label = 100\n", "label = 16\n"), "t").unwrap();
        expect_invalid(&edit("label = 5001\n", "label = 0 # HERE\n"), "nexthop[3].label", "VNI 0");
        expect_invalid(
            &edit("label = 5001\n", "label = 16777216 # HERE\n"),
            "nexthop[3].label",
            "out of range",
        );
        parse(&edit("label = 5001\n", "label = 16777215\n"), "t").unwrap();
    }

    #[test]
    fn nexthop_tunnel_remote_ip() {
        expect_invalid(
            &edit("remote_ip = \"10.1.1.2\"", "remote_ip = \"239.1.1.1\" # HERE"),
            "nexthop[2].remote_ip",
            "multicast",
        );
        expect_invalid(
            &edit("remote_ip = \"10.1.1.2\"", "remote_ip = \"0.0.0.0\" # HERE"),
            "nexthop[2].remote_ip",
            "unspecified",
        );
        expect_invalid(
            &edit("remote_ip = \"10.1.1.3\"", "remote_ip = \"10.1.1.1\" # HERE"),
            "nexthop[3].remote_ip",
            "router_ip",
        );
    }

    #[test]
    fn nexthop_receive() {
        expect_invalid(
            &edit("type = \"receive\"\nvif = 1", "type = \"receive\"\nvif = 5 # HERE"),
            "nexthop[6].vif",
            "not defined",
        );
        expect_invalid(
            &edit("type = \"receive\"\nvif = 1", "type = \"receive\"\nvif = 0 # HERE"),
            "nexthop[6].vif",
            "type fabric",
        );
    }

    #[test]
    fn nexthop_ecmp() {
        let members = "members = [10, 11]";
        expect_invalid(&edit(members, "members = [] # HERE"), "nexthop[4].members", "1 to 16");
        let many: Vec<String> = (0..17).map(|_| "10".to_string()).collect();
        expect_invalid(
            &edit(members, &format!("members = [{}] # HERE", many.join(", "))),
            "nexthop[4].members",
            "17 members",
        );
        expect_invalid(
            &edit(members, "members = [10, 99] # HERE"),
            "nexthop[4].members",
            "nexthop 99 is not defined",
        );
        expect_invalid(
            &edit(members, "members = [10, 20] # HERE"),
            "nexthop[4].members",
            "cannot be nested",
        );
        expect_invalid(
            &edit(members, "members = [10, 11, 10] # HERE"),
            "nexthop[4].members",
            "10 is listed twice",
        );
        // Members may be defined after the ECMP nexthop.
        parse(&edit(members, "members = [10, 30]"), "t").unwrap();
    }

    // ---- [[route]] ----

    #[test]
    fn route_references() {
        expect_invalid(
            &edit(
                "vrf = 1\nprefix = \"192.168.2.0/24\"",
                "vrf = 2 # HERE\nprefix = \"192.168.2.0/24\"",
            ),
            "route[2].vrf",
            "vrf 2 is not defined",
        );
        expect_invalid(
            &edit(
                "prefix = \"fd00:2::/64\"\nnexthop = 10",
                "prefix = \"fd00:2::/64\"\nnexthop = 12 # HERE",
            ),
            "route[5].nexthop",
            "nexthop 12 is not defined",
        );
    }

    #[test]
    fn route_host_bits() {
        expect_invalid(
            &edit("prefix = \"192.168.2.0/24\"", "prefix = \"192.168.2.1/24\" # HERE"),
            "route[2].prefix",
            "the prefix is 192.168.2.0/24",
        );
        expect_invalid(
            &edit("prefix = \"fd00:2::/64\"", "prefix = \"fd00:2::1/64\" # HERE"),
            "route[5].prefix",
            "the prefix is fd00:2::/64",
        );
        expect_invalid(
            &edit("prefix = \"0.0.0.0/0\"", "prefix = \"10.0.0.0/0\" # HERE"),
            "route[3].prefix",
            "0.0.0.0/0",
        );
        assert_eq!(canonical("10.0.0.1/24".parse().unwrap()).to_string(), "10.0.0.0/24");
        assert_eq!(canonical("10.0.0.1/32".parse().unwrap()).to_string(), "10.0.0.1/32");
        assert_eq!(canonical("::1/0".parse().unwrap()).to_string(), "::/0");
    }

    #[test]
    fn route_duplicates() {
        expect_invalid(
            &with("[[route]]\nvrf = 1\nprefix = \"192.168.2.0/24\" # HERE\nnexthop = 30\n"),
            "route[7].prefix",
            "duplicate route 192.168.2.0/24 in vrf 1",
        );
        // Same prefix in another VRF is fine.
        parse(&with("[[route]]\nvrf = 0\nprefix = \"192.168.2.0/24\"\nnexthop = 30\n"), "t")
            .unwrap();
    }

    // ---- [[bridge]] ----

    #[test]
    fn bridge_entries() {
        let extra = |vrf: &str, mac: &str, nh: &str| {
            with(&format!("[[bridge]]\nvrf = {vrf}\nmac = {mac}\nnexthop = {nh}\n"))
        };
        let mac = "\"02:00:00:00:01:02\"";
        expect_invalid(&extra("3 # HERE", mac, "2"), "bridge[1].vrf", "vrf 3 is not defined");
        expect_invalid(
            &extra("1", mac, "77 # HERE"),
            "bridge[1].nexthop",
            "nexthop 77 is not defined",
        );
        expect_invalid(
            &extra("1", "\"00:00:00:00:00:00\" # HERE", "2"),
            "bridge[1].mac",
            "all zero",
        );
        expect_invalid(
            &extra("1", "\"02:00:00:00:01:01\" # HERE", "2"),
            "bridge[1].mac",
            "duplicate bridge entry 02:00:00:00:01:01 in vrf 1",
        );
        parse(&extra("0", "\"02:00:00:00:01:01\"", "2"), "t").unwrap();
        parse(&extra("1", "\"ff:ff:ff:ff:ff:ff\"", "20"), "t").unwrap();
    }

    // ---- [[label]] ----

    #[test]
    fn labels() {
        let extra =
            |label: &str, nh: &str| with(&format!("[[label]]\nlabel = {label}\nnexthop = {nh}\n"));
        expect_invalid(&extra("15 # HERE", "1"), "label[1].label", "reserved");
        expect_invalid(&extra("1048576 # HERE", "1"), "label[1].label", "20 bits");
        expect_invalid(&extra("17 # HERE", "2"), "label[1].label", "duplicate label 17");
        expect_invalid(&extra("18", "3 # HERE"), "label[1].nexthop", "nexthop 3 is not defined");
        parse(&extra("16", "2"), "t").unwrap();
        parse(&extra("1048575", "2"), "t").unwrap();
    }

    // ---- helpers ----

    #[test]
    fn text_helpers() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 99), 3);
        assert_eq!(find_key("id = 1\nvif = 2\n", "vif"), Some(7));
        assert_eq!(find_key("remote_ip = 1\n", "ip"), None);
        assert_eq!(find_key("{ id = 1, vif = 2 }", "vif"), Some(10));
        assert!(is_uuid("6f1c2a3b-4d5e-4f60-8a1b-2c3d4e5f6a7b"));
        assert!(!is_uuid("6f1c2a3b4d5e4f608a1b2c3d4e5f6a7b"));
        let s = sections("# x\n[eal]\na = 1\n[[vif]]\n[[vif]] # c\n[vrouter]\n");
        let names: Vec<_> = s.iter().map(|s| (s.name, s.index)).collect();
        assert_eq!(names, [("eal", None), ("vif", Some(0)), ("vif", Some(1)), ("vrouter", None)]);
    }
}
