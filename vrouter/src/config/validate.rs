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

use super::locate::{error_location, line_of, Spans};
use super::schema::{
    AnalyzerConfig, Config, EalConfig, EtherType, FlowConfig, Mac, NexthopConfig, PolicyAddress, PortRange, Prefix,
    Protocol, SgRemote, TenantConfig, TunnelEncap, VifType, VrouterConfig,
};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
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
                let (offset, table) = error_location(text, span, &message);
                (Some(line_of(text, offset)), table)
            }
            None => (None, None),
        };
        ConfigError::Parse { origin: origin.into(), line, table, message }
    }
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
    ck.labels()?;
    ck.flow(&cfg.flow)?;
    cfg.export.check().map_err(|(key, msg)| ck.table("export", key, msg))?;
    ck.analyzers()?;
    let mut rule_uuids = HashMap::new();
    ck.network_policies(&mut rule_uuids)?;
    ck.security_groups(&mut rule_uuids)?;
    ck.tenants()
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
/// Main flow table entries: a power of two in this range.
const MIN_FLOW_ENTRIES: u32 = 1024;
const MAX_FLOW_ENTRIES: u32 = 1 << 24;
/// Packets queued per HOLD flow.
const MAX_HELD_PACKETS: u32 = 16;
/// Analyzers one flow is mirrored to (tf `kMaxMirrorsPerFlow`).
const MAX_MIRRORS_PER_FLOW: usize = 2;
/// Mirror table slots 0..=254; 255 means "no mirror".
const MIRROR_SLOTS: u32 = 255;
/// Allowed address pairs of one VM vif (the source check scans them linearly).
const MAX_ADDRESS_PAIRS: usize = 32;

/// Validation context: the configuration, the text it came from and indexes of the
/// entries other entries refer to (first definition wins; duplicates are errors).
struct Checker<'a> {
    cfg: &'a Config,
    /// The text, parsed for line numbers.
    spans: Spans<'a>,
    origin: &'a str,
    /// VRF id -> index in `cfg.vrfs`.
    vrfs: HashMap<u32, usize>,
    /// vif id -> index in `cfg.vifs`.
    vifs: HashMap<u16, usize>,
    /// nexthop id -> index in `cfg.nexthops`.
    nexthops: HashMap<u32, usize>,
    /// analyzer name -> index in `cfg.analyzers`.
    analyzers: HashMap<&'a str, usize>,
    /// security group name -> index in `cfg.security_groups`.
    sgs: HashMap<&'a str, usize>,
}

impl<'a> Checker<'a> {
    fn new(cfg: &'a Config, text: &'a str, origin: &'a str) -> Self {
        fn index<'l, K: std::hash::Hash + Eq, T>(
            list: &'l [Spanned<T>],
            key: impl Fn(&'l T) -> K,
        ) -> HashMap<K, usize> {
            let mut map = HashMap::new();
            for (i, e) in list.iter().enumerate() {
                map.entry(key(e.get_ref())).or_insert(i);
            }
            map
        }
        Checker {
            cfg,
            spans: Spans::new(text),
            origin,
            vrfs: index(&cfg.vrfs, |v| v.id),
            vifs: index(&cfg.vifs, |v| v.id),
            nexthops: index(&cfg.nexthops, |n| n.id()),
            analyzers: index(&cfg.analyzers, |a| a.name.as_str()),
            sgs: index(&cfg.security_groups, |g| g.name.as_str()),
        }
    }

    // ---- error construction ----

    fn invalid(&self, line: Option<usize>, field: String, message: String) -> ConfigError {
        ConfigError::Invalid { origin: self.origin.into(), line, field, message }
    }

    /// 1-based line of a byte offset in the text.
    fn line_of(&self, offset: usize) -> usize {
        self.spans.line_of(offset)
    }

    /// Line where `key` is written in entry `e` (TOML path `path`), else the entry's first
    /// line.
    fn key_line<T>(&self, path: &str, e: &Spanned<T>, key: &str) -> usize {
        self.spans.key_line(path, key).unwrap_or_else(|| self.line_of(e.span().start))
    }

    /// An error on `key` of entry `i` of the `[[list]]` array: field `list[i].key`.
    fn entry<T>(&self, list: &str, i: usize, e: &Spanned<T>, key: &str, message: impl Into<String>) -> ConfigError {
        let line = self.key_line(&format!("{list}[{i}]"), e, key);
        self.invalid(Some(line), format!("{list}[{i}].{key}"), message.into())
    }

    /// An error on `key` of the `[table]` table: field `table.key`. The line is that of
    /// `key =` in the table (a `[table]` section, an inline `table = { ... }` or dotted
    /// `table.key = ...` keys), none when the key is not written (a default).
    fn table(&self, table: &str, key: &str, message: impl Into<String>) -> ConfigError {
        self.invalid(self.spans.key_line(table, key), format!("{table}.{key}"), message.into())
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
            if let Some(c) = prefix.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-')) {
                return err(
                    "file_prefix",
                    format!("{prefix:?} contains {c:?}; only letters, digits, '_' and '-' are allowed"),
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
        if vr.icmp_error_rate > MAX_ICMP_ERROR_RATE {
            let msg = format!("{} per second is more than {MAX_ICMP_ERROR_RATE}", vr.icmp_error_rate);
            return Err(self.table("vrouter", "icmp_error_rate", msg));
        }
        if !(1..=MAX_ICMP_ERROR_BURST).contains(&vr.icmp_error_burst) {
            let msg = format!("{} is out of range 1..={MAX_ICMP_ERROR_BURST}", vr.icmp_error_burst);
            return Err(self.table("vrouter", "icmp_error_burst", msg));
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
            if let Some(gw) = vrf.gateway_ip {
                if let Some(why) = unicast_v4_problem(gw) {
                    return err("gateway_ip", format!("{gw} is {why}"));
                }
            }
            if let Some(gw) = vrf.gateway_ip6 {
                if gw.is_unspecified() || gw.is_multicast() {
                    let why = if gw.is_multicast() { "a multicast address" } else { "the unspecified address" };
                    return err("gateway_ip6", format!("{gw} is {why}"));
                }
            }
            if let Some(vni) = vrf.vxlan_vni {
                if !(1..=VNI_MAX).contains(&vni) {
                    return err("vxlan_vni", format!("VNI {vni} is out of range 1..={VNI_MAX}"));
                }
                if let Some(&first) = vnis.get(&vni) {
                    let at = self.first_at(&self.cfg.vrfs[first]);
                    return err("vxlan_vni", format!("VNI {vni} is already used by vrf[{first}] ({at})"));
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
                return err("device", format!("device {:?} is already bound to vif[{first}] ({at})", vif.device));
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
                    return err("type", format!("only one host vif is allowed; vif[{first}] is one ({at})"));
                }
                host = Some(i);
            }
            for (key, uuid) in [("vm_uuid", &vif.vm_uuid), ("vmi_uuid", &vif.vmi_uuid)] {
                if let Some(uuid) = uuid {
                    if !is_uuid(uuid) {
                        return err(key, format!("{uuid:?} is not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)"));
                    }
                }
            }
            if let Some(vn) = &vif.vn_name {
                if vn.len() > MAX_VN_NAME {
                    return err("vn_name", format!("{vn:?} is longer than {MAX_VN_NAME} bytes"));
                }
            }
            if !vif.security_groups.is_empty() && vif.kind != VifType::Virtual {
                return err(
                    "security_groups",
                    format!(
                        "vif {} is of type {}; security groups apply to virtual (VM) vifs",
                        vif.id,
                        type_name(vif.kind)
                    ),
                );
            }
            let mut seen = HashSet::new();
            for sg in &vif.security_groups {
                if !self.sgs.contains_key(sg.as_str()) {
                    return err("security_groups", format!("security group {sg:?} is not defined"));
                }
                if !seen.insert(sg.as_str()) {
                    return err("security_groups", format!("security group {sg:?} is listed twice"));
                }
            }
            match (&vif.mirror_to, vif.mirror_rx || vif.mirror_tx) {
                (Some(name), true) => {
                    if !self.analyzers.contains_key(name.as_str()) {
                        return err("mirror_to", format!("analyzer {name:?} is not defined"));
                    }
                }
                (Some(_), false) => {
                    return err("mirror_to", "set mirror_rx and/or mirror_tx to mirror this vif".into())
                }
                (None, true) => {
                    let key = if vif.mirror_rx { "mirror_rx" } else { "mirror_tx" };
                    return err(key, "needs mirror_to (the analyzer that receives the copies)".into());
                }
                (None, false) => {}
            }
            self.vif_source_check(i, e)?;
        }
        Ok(())
    }

    /// `source_check`, `vm_mac` and `allowed_address_pairs`: VM vifs only; unicast MACs;
    /// pair prefixes without host bits, at most [`MAX_ADDRESS_PAIRS`].
    fn vif_source_check(&self, i: usize, e: &Spanned<super::schema::VifConfig>) -> Result<(), ConfigError> {
        let vif = e.get_ref();
        let err = |key: &str, msg: String| Err(self.entry("vif", i, e, key, msg));
        if vif.kind != VifType::Virtual {
            let set = [
                ("source_check", vif.source_check.is_some()),
                ("vm_mac", vif.vm_mac.is_some()),
                ("allowed_address_pairs", !vif.allowed_address_pairs.is_empty()),
            ];
            if let Some((key, _)) = set.iter().find(|(_, set)| *set) {
                return err(
                    key,
                    format!(
                        "vif {} is of type {}; source checks apply to virtual (VM) vifs",
                        vif.id,
                        type_name(vif.kind)
                    ),
                );
            }
            return Ok(());
        }
        if let Some(m) = vif.vm_mac {
            if let Some(why) = unicast_mac_problem(m) {
                return err("vm_mac", format!("{m} is {why}"));
            }
        }
        let pairs = &vif.allowed_address_pairs;
        if pairs.len() > MAX_ADDRESS_PAIRS {
            return err(
                "allowed_address_pairs",
                format!("{} pairs; at most {MAX_ADDRESS_PAIRS} are allowed", pairs.len()),
            );
        }
        let line = self.key_line(&format!("vif[{i}]"), e, "allowed_address_pairs");
        let pair_err = |j: usize, key: &str, msg: String| {
            Err(self.invalid(Some(line), format!("vif[{i}].allowed_address_pairs[{j}].{key}"), msg))
        };
        for (j, p) in pairs.iter().enumerate() {
            if let Some(why) = prefix_problem(p.ip) {
                return pair_err(j, "ip", why);
            }
            if let Some(m) = p.mac {
                if let Some(why) = unicast_mac_problem(m) {
                    return pair_err(j, "mac", format!("{m} is {why}"));
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
                                format!("vif {vif} is of type {}; tunnels leave on a fabric vif", type_name(t)),
                            )
                        }
                    }
                    match encap {
                        TunnelEncap::Mplsoudp => {
                            if *label < MPLS_FIRST_LABEL {
                                return err("label", format!("MPLS label {label} is reserved (0-15)"));
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
                                return err("label", format!("VNI {label} is out of range 1..={VNI_MAX}"));
                            }
                        }
                    }
                    if let Some(why) = unicast_v4_problem(*remote_ip) {
                        return err("remote_ip", format!("{remote_ip} is {why}"));
                    }
                    if *remote_ip == self.cfg.vrouter.router_ip {
                        return err("remote_ip", format!("{remote_ip} is this vRouter's own router_ip"));
                    }
                }
                NexthopConfig::Receive { vif, .. } => match vif_type(*vif) {
                    None => return err("vif", format!("vif {vif} is not defined")),
                    Some(VifType::Host) => {}
                    Some(t) => {
                        return err(
                            "vif",
                            format!("vif {vif} is of type {}; receive nexthops deliver to the host vif", type_name(t)),
                        )
                    }
                },
                NexthopConfig::Discard { .. } => {}
                NexthopConfig::Ecmp { members, .. } => {
                    if members.is_empty() || members.len() > MAX_ECMP_MEMBERS {
                        return err(
                            "members",
                            format!("{} members; an ECMP nexthop needs 1 to {MAX_ECMP_MEMBERS}", members.len()),
                        );
                    }
                    let mut seen = HashSet::new();
                    for &m in members {
                        let Some(&mi) = self.nexthops.get(&m) else {
                            return err("members", format!("nexthop {m} is not defined"));
                        };
                        if matches!(self.cfg.nexthops[mi].get_ref(), NexthopConfig::Ecmp { .. }) {
                            return err("members", format!("nexthop {m} is an ECMP nexthop; ECMP cannot be nested"));
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
                return err("prefix", format!("{} has host bits set; the prefix is {canonical}", r.prefix));
            }
            if !self.nexthops.contains_key(&r.nexthop) {
                return err("nexthop", format!("nexthop {} is not defined", r.nexthop));
            }
            if let Some(&first) = seen.get(&(r.vrf, r.prefix)) {
                let at = self.first_at(&self.cfg.routes[first]);
                return err("prefix", format!("duplicate route {} in vrf {} ({at})", r.prefix, r.vrf));
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
                return err("mac", format!("duplicate bridge entry {} in vrf {} ({at})", b.mac, b.vrf));
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
                    format!("MPLS label {} does not fit in 20 bits (max {})", l.label, MPLS_LABEL_LIMIT - 1),
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

    // ---- [flow] ----

    fn flow(&self, f: &FlowConfig) -> Result<(), ConfigError> {
        let err = |key: &str, msg: String| Err(self.table("flow", key, msg));
        let n = f.entries;
        if !n.is_power_of_two() || !(MIN_FLOW_ENTRIES..=MAX_FLOW_ENTRIES).contains(&n) {
            return err("entries", format!("{n} must be a power of two from {MIN_FLOW_ENTRIES} to {MAX_FLOW_ENTRIES}"));
        }
        if f.overflow_entries > MAX_FLOW_ENTRIES {
            return err("overflow_entries", format!("{} is more than {MAX_FLOW_ENTRIES}", f.overflow_entries));
        }
        if f.hold_limit == 0 {
            return err("hold_limit", "must be at least 1".into());
        }
        if !(1..=MAX_HELD_PACKETS).contains(&f.held_packets_per_flow) {
            return err(
                "held_packets_per_flow",
                format!("{} is out of range 1..={MAX_HELD_PACKETS}", f.held_packets_per_flow),
            );
        }
        if f.age_timeout_s == 0 {
            return err("age_timeout_s", "must be at least 1 second".into());
        }
        if f.hold_audit_s == 0 {
            return err("hold_audit_s", "must be at least 1 second".into());
        }
        if f.flow_table_path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            return err("flow_table_path", "must not be empty".into());
        }
        Ok(())
    }

    // ---- [[analyzer]] ----

    fn tenants(&self) -> Result<(), ConfigError> {
        let list = &self.cfg.tenants;
        if self.cfg.vrouter.trace_api.is_some() && list.is_empty() {
            return Err(self.table("vrouter", "trace_api", "the trace API only serves tenants: add a [[tenant]]"));
        }
        let vns: std::collections::HashSet<&str> =
            self.cfg.vifs.iter().filter_map(|v| v.get_ref().vn_name.as_deref()).collect();
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut tokens: HashMap<&str, usize> = HashMap::new();
        for (i, e) in list.iter().enumerate() {
            let t: &TenantConfig = e.get_ref();
            let err = |key: &str, msg: String| Err(self.entry("tenant", i, e, key, msg));
            if t.name.trim().is_empty() {
                return err("name", "must not be empty".into());
            }
            if let Some(&first) = names.get(t.name.as_str()) {
                let at = self.first_at(&list[first]);
                return err("name", format!("duplicate tenant name {:?} ({at})", t.name));
            }
            names.insert(&t.name, i);
            if t.token.len() < 16 || t.token.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return err("token", "must be at least 16 characters, without spaces".into());
            }
            if let Some(&first) = tokens.get(t.token.as_str()) {
                let at = self.first_at(&list[first]);
                return err("token", format!("the same token as another tenant ({at})"));
            }
            tokens.insert(&t.token, i);
            if t.vns.is_empty() {
                return err("vns", "must name at least one virtual network".into());
            }
            if let Some(vn) = t.vns.iter().find(|vn| !vns.contains(vn.as_str())) {
                return err("vns", format!("no vif is in virtual network {vn:?}"));
            }
        }
        Ok(())
    }

    fn analyzers(&self) -> Result<(), ConfigError> {
        let list = &self.cfg.analyzers;
        let mut indices: HashMap<u32, usize> = HashMap::new();
        for (i, e) in list.iter().enumerate() {
            let a: &AnalyzerConfig = e.get_ref();
            let err = |key: &str, msg: String| Err(self.entry("analyzer", i, e, key, msg));
            if a.name.trim().is_empty() {
                return err("name", "must not be empty".into());
            }
            let first = self.analyzers[a.name.as_str()];
            if first != i {
                let at = self.first_at(&list[first]);
                return err("name", format!("duplicate analyzer name {:?} ({at})", a.name));
            }
            if let Some(why) = unicast_v4_problem(a.ip) {
                return err("ip", format!("{} is {why}", a.ip));
            }
            if a.udp_port == 0 {
                return err("udp_port", "must not be 0".into());
            }
            match (a.juniper_header, a.vni) {
                (false, None) => {
                    return err(
                        "juniper_header",
                        "juniper_header = false needs a vni (the VXLAN VNI towards the analyzer)".into(),
                    )
                }
                (true, Some(_)) => return err("vni", "vni is only used with juniper_header = false".into()),
                (false, Some(vni)) if !(1..=VNI_MAX).contains(&vni) => {
                    return err("vni", format!("VNI {vni} is out of range 1..={VNI_MAX}"))
                }
                _ => {}
            }
            if let Some(index) = a.index {
                if index == MIRROR_SLOTS {
                    return err("index", format!("mirror index {index} means \"no mirror\"; use 0..=254"));
                }
                if index > MIRROR_SLOTS {
                    return err("index", format!("mirror index {index} is out of range 0..=254"));
                }
                if let Some(&first) = indices.get(&index) {
                    let at = self.first_at(&list[first]);
                    return err("index", format!("mirror index {index} is already used by analyzer[{first}] ({at})"));
                }
                indices.insert(index, i);
            }
        }
        super::schema::assign_mirror_indices(list)
            .map(|_| ())
            .map_err(|(i, msg)| self.entry("analyzer", i, &list[i], "index", msg))
    }

    // ---- [[network_policy]] ----

    /// `rule_uuids`: rule UUID (lower case) -> TOML path and line of its first definition,
    /// shared with the security group rules (UUIDs are unique across both).
    fn network_policies(&self, rule_uuids: &mut HashMap<String, (String, usize)>) -> Result<(), ConfigError> {
        let list = &self.cfg.network_policies;
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut uuids: HashMap<String, usize> = HashMap::new();
        for (i, e) in list.iter().enumerate() {
            let p = e.get_ref();
            let err = |key: &str, msg: String| Err(self.entry("network_policy", i, e, key, msg));
            if p.name.trim().is_empty() {
                return err("name", "must not be empty".into());
            }
            if let Some(&first) = names.get(p.name.as_str()) {
                let at = self.first_at(&list[first]);
                return err("name", format!("duplicate network policy name {:?} ({at})", p.name));
            }
            names.insert(&p.name, i);
            if let Some(uuid) = &p.uuid {
                if !is_uuid(uuid) {
                    return err("uuid", not_a_uuid(uuid));
                }
                if let Some(&first) = uuids.get(&uuid.to_ascii_lowercase()) {
                    let at = self.first_at(&list[first]);
                    return err("uuid", format!("duplicate network policy uuid {uuid} ({at})"));
                }
                uuids.insert(uuid.to_ascii_lowercase(), i);
            }
            let mut vns = HashSet::new();
            for (k, vn) in p.vns.iter().enumerate() {
                if let Some(why) = vn_name_problem(vn) {
                    return err("vns", format!("entry {k}: {why}"));
                }
                if !vns.insert(vn.as_str()) {
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
                let mut seen = HashSet::new();
                for name in &r.mirror_to {
                    if !self.analyzers.contains_key(name.as_str()) {
                        return err("mirror_to", format!("analyzer {name:?} is not defined"));
                    }
                    if !seen.insert(name.as_str()) {
                        return err("mirror_to", format!("analyzer {name:?} is listed twice"));
                    }
                }
            }
        }
        Ok(())
    }

    // ---- [[security_group]] ----

    fn security_groups(&self, rule_uuids: &mut HashMap<String, (String, usize)>) -> Result<(), ConfigError> {
        let list = &self.cfg.security_groups;
        let mut uuids: HashMap<String, usize> = HashMap::new();
        for (i, e) in list.iter().enumerate() {
            let g = e.get_ref();
            let err = |key: &str, msg: String| Err(self.entry("security_group", i, e, key, msg));
            if g.name.trim().is_empty() {
                return err("name", "must not be empty".into());
            }
            let first = self.sgs[g.name.as_str()];
            if first != i {
                let at = self.first_at(&list[first]);
                return err("name", format!("duplicate security group name {:?} ({at})", g.name));
            }
            if let Some(uuid) = &g.uuid {
                if !is_uuid(uuid) {
                    return err("uuid", not_a_uuid(uuid));
                }
                if let Some(&first) = uuids.get(&uuid.to_ascii_lowercase()) {
                    let at = self.first_at(&list[first]);
                    return err("uuid", format!("duplicate security group uuid {uuid} ({at})"));
                }
                uuids.insert(uuid.to_ascii_lowercase(), i);
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

    /// Checks a rule's UUID: well formed and not used by an earlier rule of any policy or
    /// security group.
    fn rule_uuid<T>(
        &self,
        rules: &str,
        j: usize,
        e: &Spanned<T>,
        uuid: &str,
        seen: &mut HashMap<String, (String, usize)>,
    ) -> Result<(), ConfigError> {
        if !is_uuid(uuid) {
            return Err(self.entry(rules, j, e, "uuid", not_a_uuid(uuid)));
        }
        let key = uuid.to_ascii_lowercase();
        if let Some((path, line)) = seen.get(&key) {
            return Err(self.entry(
                rules,
                j,
                e,
                "uuid",
                format!("duplicate rule uuid {uuid} (first used by {path} at line {line})"),
            ));
        }
        let line = self.key_line(&format!("{rules}[{j}]"), e, "uuid");
        seen.insert(key, (format!("{rules}[{j}]"), line));
        Ok(())
    }
}

// ---- value helpers ----

/// Why an IPv4 address cannot be a unicast host address, if it cannot.
/// Most ICMP error answers per second and lcore (`[vrouter] icmp_error_rate`).
pub const MAX_ICMP_ERROR_RATE: u32 = 1_000_000;
/// Largest ICMP error burst (`[vrouter] icmp_error_burst`).
pub const MAX_ICMP_ERROR_BURST: u32 = 10_000;

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
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
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

/// The "not a UUID" message.
fn not_a_uuid(uuid: &str) -> String {
    format!("{uuid:?} is not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)")
}

/// Why a VN name in a policy cannot be used, if it cannot.
fn vn_name_problem(vn: &str) -> Option<String> {
    if vn.is_empty() {
        Some("the VN name is empty".into())
    } else if vn.len() > MAX_VN_NAME {
        Some(format!("{vn:?} is longer than {MAX_VN_NAME} bytes"))
    } else {
        None
    }
}

/// Why a rule's prefix is not usable: host bits set.
fn prefix_problem(p: Prefix) -> Option<String> {
    let c = canonical(p);
    (c != p).then(|| format!("{p} has host bits set; the prefix is {c}"))
}

/// Why a rule's protocol can never match its address family, if it cannot.
fn protocol_family_problem(proto: Protocol, v4: bool) -> Option<String> {
    match proto {
        Protocol::Number(Protocol::ICMP) if !v4 => Some("icmp never matches IPv6 traffic (use icmp6)".into()),
        Protocol::Number(Protocol::ICMP6) if v4 => Some("icmp6 never matches IPv4 traffic (use icmp)".into()),
        _ => None,
    }
}

/// Why a port range cannot be used with a protocol, if it cannot.
fn ports_problem(ports: PortRange, proto: Protocol) -> Option<String> {
    if ports.lo > ports.hi {
        return Some(format!("port range {ports} is empty (the first port is above the last)"));
    }
    match proto {
        Protocol::Number(p) if !ports.is_any() && !Protocol::has_ports(p) => {
            Some(format!("protocol {proto} has no ports; port ranges apply to tcp, udp, dccp, sctp and udplite"))
        }
        _ => None,
    }
}

fn ethertype_name(e: EtherType) -> &'static str {
    match e {
        EtherType::Ipv4 => "IPv4",
        EtherType::Ipv6 => "IPv6",
    }
}

fn type_name(t: VifType) -> &'static str {
    match t {
        VifType::Fabric => "fabric",
        VifType::Virtual => "virtual",
        VifType::Host => "host",
    }
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
        let lines: Vec<usize> =
            text.lines().enumerate().filter(|(_, l)| l.contains("# HERE")).map(|(i, _)| i + 1).collect();
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
        let text =
            edit("prefix = \"192.168.2.0/24\"\nnexthop = 20", "prefix = \"192.168.2.0/24\"\nnexthop = 99 # HERE");
        let shown = expect_invalid(&text, "route[2].nexthop", "nexthop 99 is not defined");
        let line = marked_line(&text);
        assert_eq!(shown, format!("test.toml:{line}: route[2].nexthop: nexthop 99 is not defined"));
        let e = ConfigError::Invalid { origin: "x.toml".into(), line: None, field: "vif".into(), message: "m".into() };
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
        expect_parse(&edit("mbufs = 8191", "mbuf = 8191 # HERE"), Some("eal"), "unknown field `mbuf`");
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
        expect_parse(&with("[[nexthop]] # HERE\ntype = \"discard\"\n"), Some("nexthop[7]"), "missing field `id`");
        expect_parse(
            &edit("[[nexthop]]\nid = 10\n", "[[nexthop]] # HERE\nid = 10\n").replace("label = 100", "label = \"x\""),
            Some("nexthop[2]"),
            "invalid type",
        );
        expect_parse(
            &edit("type = \"discard\"", "type = \"drop\" # HERE"),
            Some("nexthop[5].type"),
            "unknown variant `drop`",
        );
        expect_parse(&edit("memory_mb = 256", "memory_mb = 256 x # HERE"), Some("eal.memory_mb"), "expected newline");
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
        expect_invalid(&edit("memory_mb = 256", "memory_mb = 63 # HERE"), "eal.memory_mb", "at least 64");
        expect_invalid(&edit("mbufs = 8191", "mbufs = 1023 # HERE"), "eal.mbufs", "at least 1024");
        expect_invalid(&edit("rx_desc = 512", "rx_desc = 500 # HERE"), "eal.rx_desc", "power of two");
        expect_invalid(&edit("rx_desc = 512", "rx_desc = 32 # HERE"), "eal.rx_desc", "power of two");
        expect_invalid(&edit("tx_desc = 1024", "tx_desc = 32768 # HERE"), "eal.tx_desc", "power of two");
        // Bounds are inclusive.
        parse(&edit("rx_desc = 512", "rx_desc = 64").replace("tx_desc = 1024", "tx_desc = 16384"), "t").unwrap();
    }

    #[test]
    fn eal_file_prefix_and_vdevs() {
        expect_invalid(&edit("file_prefix = \"vr-test_1\"", "file_prefix = \"\" # HERE"), "eal.file_prefix", "empty");
        expect_invalid(&edit("file_prefix = \"vr-test_1\"", "file_prefix = \"vr/1\" # HERE"), "eal.file_prefix", "'/'");
        let text = edit("    \"net_tap1,iface=vm2\",\n", "    \"net_tap1,iface=vm2\",\n    \"\",\n")
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
            &edit("router_mac = \"00:00:5e:00:01:00\"", "router_mac = \"01:00:5e:00:00:01\" # HERE"),
            "vrouter.router_mac",
            "multicast",
        );
        expect_invalid(
            &edit("router_mac = \"00:00:5e:00:01:00\"", "router_mac = \"00:00:00:00:00:00\" # HERE"),
            "vrouter.router_mac",
            "all zero",
        );
        expect_invalid(&edit("run_dir = \"/run/vrouter\"", "run_dir = \"\" # HERE"), "vrouter.run_dir", "empty");
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
        expect_invalid(&edit("name = \"tap-vm2\"", "name = \"tap-vm1\" # HERE"), "vif[3].name", "duplicate vif name");
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
        expect_invalid(&edit("device = \"net_tap1\"", "device = \" \" # HERE"), "vif[3].device", "empty");
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
        expect_invalid(&edit("rx_queues = 2", "rx_queues = 0 # HERE"), "vif[0].rx_queues", "1..=16");
        expect_invalid(&edit("rx_queues = 2", "rx_queues = 17 # HERE"), "vif[0].rx_queues", "1..=16");
        expect_invalid(&edit("mtu = 9000", "mtu = 9001 # HERE"), "vif[0].mtu", "68..=9000");
        expect_invalid(&edit("mtu = 1500", "mtu = 67 # HERE"), "vif[2].mtu", "68..=9000");
    }

    #[test]
    fn vif_one_host() {
        expect_invalid(&edit("type = \"vm\"", "type = \"host\" # HERE"), "vif[3].type", "only one host vif");
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
            &edit("vn_name = \"default-domain:demo:vn1\"", &format!("vn_name = \"{}\" # HERE", "v".repeat(64))),
            "vif[2].vn_name",
            "63 bytes",
        );
    }

    #[test]
    fn vif_source_check() {
        let ok = edit(
            "proxy_arp = true",
            "proxy_arp = true\nsource_check = false\nvm_mac = \"02:00:00:00:01:01\"\n\
             allowed_address_pairs = [{ ip = \"10.0.0.0/24\", mac = \"02:00:00:00:00:09\" }, { ip = \"fd00:9::1\" }, { ip = \"10.9.9.9\" }]",
        );
        let cfg = parse(&ok, "test.toml").unwrap_or_else(|e| panic!("{e}"));
        let vif = cfg.vifs[2].get_ref();
        assert_eq!((vif.source_check, vif.vm_mac), (Some(false), Some(Mac([2, 0, 0, 0, 1, 1]))));
        let pairs: Vec<_> = vif.allowed_address_pairs.iter().map(|p| (p.ip.to_string(), p.mac)).collect();
        assert_eq!(
            pairs,
            [
                ("10.0.0.0/24".to_string(), Some(Mac([2, 0, 0, 0, 0, 9]))),
                ("fd00:9::1/128".to_string(), None),
                ("10.9.9.9/32".to_string(), None),
            ]
        );
        // Unset: nothing configured (the FIB turns source_check on for VM vifs).
        let cfg = parse(VALID, "test.toml").unwrap();
        let vif = cfg.vifs[3].get_ref();
        assert!(vif.source_check.is_none() && vif.vm_mac.is_none() && vif.allowed_address_pairs.is_empty());

        // Only on virtual vifs.
        expect_invalid(
            &edit("mtu = 9000", "mtu = 9000\nsource_check = true # HERE"),
            "vif[0].source_check",
            "virtual (VM) vifs",
        );
        expect_invalid(
            &edit("name = \"vhost0\"", "name = \"vhost0\"\nvm_mac = \"02:00:00:00:00:09\" # HERE"),
            "vif[1].vm_mac",
            "is of type host",
        );
        expect_invalid(
            &edit("mtu = 9000", "mtu = 9000\nallowed_address_pairs = [{ ip = \"10.0.0.0/8\" }] # HERE"),
            "vif[0].allowed_address_pairs",
            "is of type fabric",
        );
        // MACs must be unicast.
        expect_invalid(
            &edit("proxy_arp = true", "proxy_arp = true\nvm_mac = \"03:00:00:00:00:01\" # HERE"),
            "vif[2].vm_mac",
            "multicast",
        );
        expect_invalid(
            &edit(
                "proxy_arp = true",
                "proxy_arp = true\nallowed_address_pairs = [{ ip = \"10.0.0.0/8\" }, { ip = \"10.1.0.0/16\", mac = \"00:00:00:00:00:00\" }] # HERE",
            ),
            "vif[2].allowed_address_pairs[1].mac",
            "all zero",
        );
        // Prefixes without host bits; the field names the pair.
        expect_invalid(
            &edit("proxy_arp = true", "proxy_arp = true\nallowed_address_pairs = [{ ip = \"10.0.0.5/24\" }] # HERE"),
            "vif[2].allowed_address_pairs[0].ip",
            "the prefix is 10.0.0.0/24",
        );
        // A bounded list (the data plane scans it).
        let many: Vec<String> = (0..33).map(|i| format!("{{ ip = \"10.0.{i}.0/24\" }}")).collect();
        expect_invalid(
            &edit(
                "proxy_arp = true",
                &format!("proxy_arp = true\nallowed_address_pairs = [{}] # HERE", many.join(", ")),
            ),
            "vif[2].allowed_address_pairs",
            "at most 32",
        );
        // Parse errors: a bad address, an unknown key in a pair.
        expect_parse(
            &edit("proxy_arp = true", "proxy_arp = true\nallowed_address_pairs = [{ ip = \"10.0.0.300\" }] # HERE"),
            Some("vif[2].allowed_address_pairs"),
            "invalid address",
        );
        expect_parse(
            &edit(
                "proxy_arp = true",
                "proxy_arp = true\nallowed_address_pairs = [{ ip = \"10.0.0.0/8\", mask = 8 }] # HERE",
            ),
            Some("vif[2].allowed_address_pairs"),
            "unknown field `mask`",
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
        expect_invalid(&edit("vxlan_vni = 5001", "vxlan_vni = 0 # HERE"), "vrf[1].vxlan_vni", "out of range");
        expect_invalid(&edit("vxlan_vni = 5001", "vxlan_vni = 16777216 # HERE"), "vrf[1].vxlan_vni", "out of range");
        expect_invalid(
            &edit("vxlan_vni = 5001", "vxlan_vni = 5001 # HERE")
                .replace("name = \"fabric\"\n", "name = \"fabric\"\nvxlan_vni = 5001\n"),
            "vrf[1].vxlan_vni",
            "already used by vrf[0]",
        );
    }

    #[test]
    fn vrf_gateway_addresses() {
        let gw = |line: &str| edit("vxlan_vni = 5001", &format!("vxlan_vni = 5001\n{line}"));
        expect_invalid(&gw("gateway_ip = \"224.0.0.9\" # HERE"), "vrf[1].gateway_ip", "multicast");
        expect_invalid(&gw("gateway_ip = \"0.0.0.0\" # HERE"), "vrf[1].gateway_ip", "unspecified");
        expect_invalid(&gw("gateway_ip6 = \"ff02::1\" # HERE"), "vrf[1].gateway_ip6", "multicast");
        expect_invalid(&gw("gateway_ip6 = \"::\" # HERE"), "vrf[1].gateway_ip6", "unspecified");
        let cfg = parse(&gw("gateway_ip = \"192.168.1.1\"\ngateway_ip6 = \"fd00:1::1\""), "test.toml").unwrap();
        let v = cfg.vrfs[1].get_ref();
        assert_eq!(
            (v.gateway_ip, v.gateway_ip6),
            (Some("192.168.1.1".parse().unwrap()), Some("fd00:1::1".parse().unwrap()))
        );
        assert_eq!(cfg.vrfs[0].get_ref().gateway_ip, None, "default: none (the data plane uses DEFAULT_GATEWAY_IP)");
    }

    #[test]
    fn vrouter_icmp_error_rate_and_burst() {
        let cfg = parse(VALID, "test.toml").unwrap();
        assert_eq!((cfg.vrouter.icmp_error_rate, cfg.vrouter.icmp_error_burst), (100, 10), "defaults");
        let with = |line: &str| edit("summary_interval_s = 5", &format!("summary_interval_s = 5\n{line}"));
        expect_invalid(&with("icmp_error_rate = 1000001 # HERE"), "vrouter.icmp_error_rate", "more than 1000000");
        expect_invalid(&with("icmp_error_burst = 0 # HERE"), "vrouter.icmp_error_burst", "out of range 1..=10000");
        expect_invalid(&with("icmp_error_burst = 10001 # HERE"), "vrouter.icmp_error_burst", "out of range");
        let ok = parse(&with("icmp_error_rate = 0\nicmp_error_burst = 1"), "test.toml").unwrap();
        assert_eq!((ok.vrouter.icmp_error_rate, ok.vrouter.icmp_error_burst), (0, 1));
    }

    // ---- [[nexthop]] ----

    #[test]
    fn nexthop_ids() {
        expect_invalid(&edit("id = 30\n", "id = 20 # HERE\n"), "nexthop[5].id", "duplicate nexthop id 20");
    }

    #[test]
    fn nexthop_encap() {
        expect_invalid(&edit("vif = 3\ndst_mac", "vif = 9 # HERE\ndst_mac"), "nexthop[1].vif", "vif 9 is not defined");
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
        expect_invalid(&edit("label = 100\nvif = 0", "label = 100\nvif = 2 # HERE"), "nexthop[2].vif", "type virtual");
    }

    #[test]
    fn nexthop_tunnel_labels() {
        expect_invalid(&edit("label = 100\n", "label = 15 # HERE\n"), "nexthop[2].label", "reserved");
        expect_invalid(&edit("label = 100\n", "label = 1048576 # HERE\n"), "nexthop[2].label", "20 bits");
        parse(&edit("label = 100\n", "label = 1048575\n"), "t").unwrap();
        parse(&edit("label = 100\n", "label = 16\n"), "t").unwrap();
        expect_invalid(&edit("label = 5001\n", "label = 0 # HERE\n"), "nexthop[3].label", "VNI 0");
        expect_invalid(&edit("label = 5001\n", "label = 16777216 # HERE\n"), "nexthop[3].label", "out of range");
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
        expect_invalid(&edit(members, "members = [10, 99] # HERE"), "nexthop[4].members", "nexthop 99 is not defined");
        expect_invalid(&edit(members, "members = [10, 20] # HERE"), "nexthop[4].members", "cannot be nested");
        expect_invalid(&edit(members, "members = [10, 11, 10] # HERE"), "nexthop[4].members", "10 is listed twice");
        // Members may be defined after the ECMP nexthop.
        parse(&edit(members, "members = [10, 30]"), "t").unwrap();
    }

    // ---- [[route]] ----

    #[test]
    fn route_references() {
        expect_invalid(
            &edit("vrf = 1\nprefix = \"192.168.2.0/24\"", "vrf = 2 # HERE\nprefix = \"192.168.2.0/24\""),
            "route[2].vrf",
            "vrf 2 is not defined",
        );
        expect_invalid(
            &edit("prefix = \"fd00:2::/64\"\nnexthop = 10", "prefix = \"fd00:2::/64\"\nnexthop = 12 # HERE"),
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
        parse(&with("[[route]]\nvrf = 0\nprefix = \"192.168.2.0/24\"\nnexthop = 30\n"), "t").unwrap();
    }

    // ---- [[bridge]] ----

    #[test]
    fn bridge_entries() {
        let extra =
            |vrf: &str, mac: &str, nh: &str| with(&format!("[[bridge]]\nvrf = {vrf}\nmac = {mac}\nnexthop = {nh}\n"));
        let mac = "\"02:00:00:00:01:02\"";
        expect_invalid(&extra("3 # HERE", mac, "2"), "bridge[1].vrf", "vrf 3 is not defined");
        expect_invalid(&extra("1", mac, "77 # HERE"), "bridge[1].nexthop", "nexthop 77 is not defined");
        expect_invalid(&extra("1", "\"00:00:00:00:00:00\" # HERE", "2"), "bridge[1].mac", "all zero");
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
        let extra = |label: &str, nh: &str| with(&format!("[[label]]\nlabel = {label}\nnexthop = {nh}\n"));
        expect_invalid(&extra("15 # HERE", "1"), "label[1].label", "reserved");
        expect_invalid(&extra("1048576 # HERE", "1"), "label[1].label", "20 bits");
        expect_invalid(&extra("17 # HERE", "2"), "label[1].label", "duplicate label 17");
        expect_invalid(&extra("18", "3 # HERE"), "label[1].nexthop", "nexthop 3 is not defined");
        parse(&extra("16", "2"), "t").unwrap();
        parse(&extra("1048575", "2"), "t").unwrap();
    }

    // ---- [flow], [[analyzer]], [[network_policy]], [[security_group]] ----

    /// Flow settings, analyzers, a network policy and a security group (used by vif[2]).
    const POLICY: &str = r#"
[flow]
entries = 4096
hold_limit = 100
held_packets_per_flow = 4
age_timeout_s = 60
hold_audit_s = 10
tcp_close_evict = false
flow_table_path = "/dev/hugepages/flow"

[[analyzer]]
name = "an-1"
ip = "10.1.1.20"

[[analyzer]]
name = "an-2"
ip = "10.1.1.21"
udp_port = 9000
juniper_header = false
vni = 77
nh_mode = "static"
index = 0

[[network_policy]]
name = "web-db"
uuid = "11111111-1111-4111-8111-111111111111"
vns = ["default-domain:demo:vn1", "default-domain:demo:vn2"]

[[network_policy.rule]]
uuid = "aaaaaaaa-0000-4000-8000-000000000001"
src = "vn:default-domain:demo:vn1"
dst = "10.2.0.0/16"
protocol = "tcp"
src_ports = "any"
dst_ports = "5432"
direction = "<>"
action = "pass"
log = true
mirror_to = ["an-1", "an-2"]

[[network_policy.rule]]
uuid = "aaaaaaaa-0000-4000-8000-000000000002"
dst = "fd00::/64"
protocol = 58
direction = ">"
action = "deny"

[[security_group]]
name = "web"
uuid = "22222222-2222-4222-8222-222222222222"

[[security_group.rule]]
uuid = "bbbbbbbb-0000-4000-8000-000000000001"
direction = "ingress"
remote = "sg:web"
protocol = "tcp"
ports = "80-443"
ethertype = "IPv4"

[[security_group.rule]]
uuid = "bbbbbbbb-0000-4000-8000-000000000002"
direction = "egress"
remote = "0.0.0.0/0"
"#;

    /// `VALID` with vif[2] in security group "web", plus `POLICY`, with each `(from, to)`
    /// applied (`from` must occur once), plus `extra` at the end.
    fn policy_edits(edits: &[(&str, &str)], extra: &str) -> String {
        let mut text = edit(
            "vn_name = \"default-domain:demo:vn1\"",
            "vn_name = \"default-domain:demo:vn1\"\nsecurity_groups = [\"web\"]",
        ) + POLICY;
        for (from, to) in edits {
            assert_eq!(text.matches(from).count(), 1, "{from:?} must occur once");
            text = text.replacen(from, to, 1);
        }
        text + extra
    }

    fn policy(from: &str, to: &str) -> String {
        policy_edits(&[(from, to)], "")
    }

    #[test]
    fn policy_config_is_valid() {
        use crate::config::schema::*;
        let cfg = parse(&policy_edits(&[], ""), "test.toml").unwrap_or_else(|e| panic!("{e}"));
        let f = &cfg.flow;
        assert_eq!((f.entries, f.hold_limit, f.held_packets_per_flow), (4096, 100, 4));
        assert_eq!((f.age_timeout_s, f.hold_audit_s, f.tcp_close_evict), (60, 10, false));
        assert_eq!(f.overflow_entries_effective(), 1024);
        assert_eq!(f.flow_table_path.as_deref(), Some(std::path::Path::new("/dev/hugepages/flow")));

        let a = cfg.analyzers[0].get_ref();
        assert_eq!(
            (a.udp_port, a.juniper_header, a.nh_mode, a.vni, a.index),
            (8099, true, MirrorNhMode::Dynamic, None, None)
        );
        let a = cfg.analyzers[1].get_ref();
        assert_eq!(
            (a.udp_port, a.juniper_header, a.nh_mode, a.vni, a.index),
            (9000, false, MirrorNhMode::Static, Some(77), Some(0))
        );
        assert_eq!(assign_mirror_indices(&cfg.analyzers).unwrap(), [1, 0]);

        let p = cfg.network_policies[0].get_ref();
        assert_eq!(p.vns.len(), 2);
        let r = p.rules[0].get_ref();
        assert_eq!(r.src, PolicyAddress::Vn("default-domain:demo:vn1".into()));
        assert_eq!(r.dst, PolicyAddress::Prefix("10.2.0.0/16".parse().unwrap()));
        assert_eq!(r.protocol, Protocol::Number(6));
        assert_eq!((r.src_ports, r.dst_ports), (PortRange::ANY, PortRange { lo: 5432, hi: 5432 }));
        assert_eq!((r.direction, r.action, r.log), (PolicyDirection::Both, PolicyAction::Pass, true));
        assert_eq!(r.mirror_to, ["an-1", "an-2"]);
        let r = p.rules[1].get_ref();
        assert_eq!(
            (r.src.clone(), r.protocol, r.direction),
            (PolicyAddress::Any, Protocol::Number(58), PolicyDirection::OneWay)
        );
        assert!(!r.log && r.mirror_to.is_empty());

        let g = cfg.security_groups[0].get_ref();
        let r = g.rules[0].get_ref();
        assert_eq!(
            (r.direction, r.remote.clone(), r.ports),
            (SgDirection::Ingress, SgRemote::Sg("web".into()), PortRange { lo: 80, hi: 443 })
        );
        assert_eq!(r.ethertype, Some(EtherType::Ipv4));
        assert_eq!(g.rules[1].get_ref().ethertype, None);
        assert_eq!(cfg.vifs[2].get_ref().security_groups, ["web"]);
        assert!(cfg.vifs[3].get_ref().security_groups.is_empty());

        // The string forms round-trip through serialization.
        let text = toml::to_string(&cfg).unwrap();
        let again = parse(&text, "again.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(again.flow, cfg.flow);
        let r2 = again.network_policies[0].get_ref().rules[0].get_ref().clone();
        assert_eq!(
            (r2.src, r2.dst, r2.protocol, r2.dst_ports),
            (
                PolicyAddress::Vn("default-domain:demo:vn1".into()),
                PolicyAddress::Prefix("10.2.0.0/16".parse().unwrap()),
                Protocol::Number(6),
                PortRange { lo: 5432, hi: 5432 }
            )
        );
    }

    #[test]
    fn value_forms() {
        use crate::config::schema::*;
        assert_eq!("any".parse::<Protocol>().unwrap(), Protocol::Any);
        assert_eq!("ICMP6".parse::<Protocol>().unwrap(), Protocol::Number(58));
        assert_eq!("255".parse::<Protocol>().unwrap(), Protocol::Number(255));
        assert!("256".parse::<Protocol>().unwrap_err().contains("0..=255"));
        assert_eq!(Protocol::Number(17).to_string(), "udp");
        assert_eq!(Protocol::Number(132).to_string(), "132");
        assert_eq!("1000-2000".parse::<PortRange>().unwrap(), PortRange { lo: 1000, hi: 2000 });
        assert_eq!("any".parse::<PortRange>().unwrap(), PortRange::ANY);
        assert_eq!("0-65535".parse::<PortRange>().unwrap().to_string(), "any");
        assert!("80-".parse::<PortRange>().is_err());
        assert!("65536".parse::<PortRange>().is_err());
        assert_eq!("sg:web".parse::<SgRemote>().unwrap(), SgRemote::Sg("web".into()));
        assert_eq!("vn:".parse::<PolicyAddress>().unwrap(), PolicyAddress::Vn(String::new()));
        assert!("sg:web".parse::<PolicyAddress>().is_err());
        assert!("10.0.0.1".parse::<PolicyAddress>().is_err());
        assert_eq!("fd00::/64".parse::<PolicyAddress>().unwrap().to_string(), "fd00::/64");
    }

    #[test]
    fn flow_defaults() {
        use crate::config::schema::FlowConfig;
        let cfg = parse(VALID, "test.toml").unwrap();
        assert_eq!(cfg.flow, FlowConfig::default());
        assert_eq!(cfg.flow.entries, 524_288);
        assert_eq!(cfg.flow.overflow_entries_effective(), 105_472);
        assert_eq!((cfg.flow.hold_limit, cfg.flow.held_packets_per_flow), (1000, 3));
        assert_eq!((cfg.flow.age_timeout_s, cfg.flow.hold_audit_s), (180, 5));
        assert!(cfg.flow.tcp_close_evict && cfg.flow.flow_table_path.is_none());
        let explicit = FlowConfig { overflow_entries: 5000, ..FlowConfig::default() };
        assert_eq!(explicit.overflow_entries_effective(), 5000);
        assert!(cfg.analyzers.is_empty() && cfg.network_policies.is_empty());
    }

    #[test]
    fn flow_values() {
        let e = |to: &str| policy("entries = 4096", to);
        expect_invalid(&e("entries = 1000 # HERE"), "flow.entries", "power of two");
        expect_invalid(&e("entries = 512 # HERE"), "flow.entries", "from 1024");
        expect_invalid(&e("entries = 33554432 # HERE"), "flow.entries", "power of two");
        parse(&e("entries = 1024"), "t").unwrap();
        expect_invalid(&e("entries = 4096\noverflow_entries = 33554432 # HERE"), "flow.overflow_entries", "more than");
        expect_invalid(&policy("hold_limit = 100", "hold_limit = 0 # HERE"), "flow.hold_limit", "at least 1");
        for n in ["0", "17"] {
            expect_invalid(
                &policy("held_packets_per_flow = 4", &format!("held_packets_per_flow = {n} # HERE")),
                "flow.held_packets_per_flow",
                "1..=16",
            );
        }
        parse(&policy("held_packets_per_flow = 4", "held_packets_per_flow = 16"), "t").unwrap();
        expect_invalid(&policy("age_timeout_s = 60", "age_timeout_s = 0 # HERE"), "flow.age_timeout_s", "at least 1");
        expect_invalid(&policy("hold_audit_s = 10", "hold_audit_s = 0 # HERE"), "flow.hold_audit_s", "at least 1");
        expect_invalid(
            &policy("flow_table_path = \"/dev/hugepages/flow\"", "flow_table_path = \"\" # HERE"),
            "flow.flow_table_path",
            "empty",
        );
        expect_parse(&policy("hold_limit = 100", "hold_limt = 100 # HERE"), Some("flow"), "unknown field `hold_limt`");
    }

    #[test]
    fn tenants() {
        let t = |name: &str, token: &str, vns: &str| {
            format!("\n[[tenant]]\nname = \"{name}\"\ntoken = \"{token}\"\nvns = [{vns}]\n")
        };
        let vn1 = "\"default-domain:demo:vn1\"";
        let ok = policy_edits(&[], &t("red", "red-token-0123456789", vn1));
        let cfg = parse(&ok, "test.toml").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.tenants[0].get_ref().name, "red");
        expect_invalid(
            &policy_edits(
                &[],
                &(t("red", "red-token-0123456789", vn1)
                    + &t("blue", "short # HERE", vn1).replace("short # HERE\"", "short\" # HERE")),
            ),
            "tenant[1].token",
            "at least 16 characters",
        );
        expect_invalid(
            &policy_edits(
                &[],
                &(t("red", "red-token-0123456789", vn1)
                    + &t("red", "blue-token-0123456789", vn1).replace("name = \"red\"\n", "name = \"red\" # HERE\n")),
            ),
            "tenant[1].name",
            "duplicate tenant name",
        );
        expect_invalid(
            &policy_edits(
                &[],
                &t("red", "red-token-0123456789", "\"nope\"").replace("vns = [\"nope\"]", "vns = [\"nope\"] # HERE"),
            ),
            "tenant[0].vns",
            "no vif is in virtual network \"nope\"",
        );
        let api =
            policy_edits(&[], "").replacen("[vrouter]\n", "[vrouter]\ntrace_api = \"127.0.0.1:8085\" # HERE\n", 1);
        assert!(api.contains("trace_api"));
        let e = parse(&api, "test.toml").unwrap_err().to_string();
        assert!(e.contains("vrouter.trace_api") && e.contains("[[tenant]]"), "{e}");
        let with_tenant = format!("{api}{}", t("red", "red-token-0123456789", vn1));
        let cfg = parse(&with_tenant, "test.toml").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.vrouter.trace_api, Some("127.0.0.1:8085".parse().unwrap()));
    }

    #[test]
    fn analyzer_names_and_addresses() {
        expect_invalid(
            &policy("name = \"an-2\"", "name = \"an-1\" # HERE"),
            "analyzer[1].name",
            "duplicate analyzer name \"an-1\"",
        );
        expect_invalid(&policy("name = \"an-2\"", "name = \"\" # HERE"), "analyzer[1].name", "empty");
        expect_invalid(&policy("ip = \"10.1.1.20\"", "ip = \"224.0.0.5\" # HERE"), "analyzer[0].ip", "multicast");
        expect_invalid(&policy("udp_port = 9000", "udp_port = 0 # HERE"), "analyzer[1].udp_port", "0");
        expect_parse(
            &policy("nh_mode = \"static\"", "nh_mode = \"fixed\" # HERE"),
            Some("analyzer[1].nh_mode"),
            "unknown variant `fixed`",
        );
    }

    #[test]
    fn analyzer_vni() {
        expect_invalid(
            &policy_edits(&[("juniper_header = false", "juniper_header = false # HERE"), ("vni = 77\n", "")], ""),
            "analyzer[1].juniper_header",
            "needs a vni",
        );
        expect_invalid(
            &policy_edits(&[("juniper_header = false", "juniper_header = true"), ("vni = 77", "vni = 77 # HERE")], ""),
            "analyzer[1].vni",
            "only used with juniper_header = false",
        );
        expect_invalid(&policy("vni = 77", "vni = 0 # HERE"), "analyzer[1].vni", "out of range");
        expect_invalid(&policy("vni = 77", "vni = 16777216 # HERE"), "analyzer[1].vni", "out of range");
    }

    #[test]
    fn analyzer_indices() {
        expect_invalid(&policy("index = 0", "index = 255 # HERE"), "analyzer[1].index", "no mirror");
        expect_invalid(&policy("index = 0", "index = 300 # HERE"), "analyzer[1].index", "out of range 0..=254");
        parse(&policy("index = 0", "index = 254"), "t").unwrap();
        expect_invalid(
            &policy_edits(
                &[("ip = \"10.1.1.20\"", "ip = \"10.1.1.20\"\nindex = 3"), ("index = 0", "index = 3 # HERE")],
                "",
            ),
            "analyzer[1].index",
            "mirror index 3 is already used by analyzer[0]",
        );
        // 255 analyzers fit (indices 0..=254), the 256th has no index left.
        let more = |n: usize, mark: usize| -> String {
            (0..n)
                .map(|i| {
                    let here = if i == mark { " # HERE" } else { "" };
                    format!("\n[[analyzer]]{here}\nname = \"x{i}\"\nip = \"10.1.2.3\"\n")
                })
                .collect()
        };
        parse(&policy_edits(&[], &more(253, usize::MAX)), "t").unwrap();
        expect_invalid(&policy_edits(&[], &more(254, 253)), "analyzer[255].index", "no free mirror index");
    }

    #[test]
    fn policy_mirror_to() {
        let m = "mirror_to = [\"an-1\", \"an-2\"]";
        expect_invalid(
            &policy(m, "mirror_to = [\"an-1\", \"an-9\"] # HERE"),
            "network_policy[0].rule[0].mirror_to",
            "analyzer \"an-9\" is not defined",
        );
        expect_invalid(
            &policy(m, "mirror_to = [\"an-1\", \"an-2\", \"an-1\"] # HERE"),
            "network_policy[0].rule[0].mirror_to",
            "3 analyzers; a flow is mirrored to at most 2",
        );
        expect_invalid(
            &policy(m, "mirror_to = [\"an-2\", \"an-2\"] # HERE"),
            "network_policy[0].rule[0].mirror_to",
            "listed twice",
        );
        parse(&policy(m, "mirror_to = []"), "t").unwrap();
    }

    #[test]
    fn policy_ports_and_protocol() {
        expect_invalid(
            &policy("dst_ports = \"5432\"", "dst_ports = \"2000-1000\" # HERE"),
            "network_policy[0].rule[0].dst_ports",
            "port range 2000-1000 is empty",
        );
        expect_invalid(
            &policy("protocol = 58", "protocol = 58\nsrc_ports = \"80\" # HERE"),
            "network_policy[0].rule[1].src_ports",
            "protocol icmp6 has no ports",
        );
        expect_invalid(
            &policy("protocol = 58", "protocol = \"icmp\" # HERE"),
            "network_policy[0].rule[1].protocol",
            "icmp never matches IPv6",
        );
        parse(&policy("dst_ports = \"5432\"", "dst_ports = 5432"), "t").unwrap();
        parse(&policy("protocol = \"tcp\"\nsrc_ports", "protocol = \"any\"\nsrc_ports"), "t").unwrap();
        expect_parse(
            &policy("protocol = \"tcp\"\nsrc_ports", "protocol = \"tcpx\" # HERE\nsrc_ports"),
            Some("network_policy[0].rule[0].protocol"),
            "invalid protocol \"tcpx\"",
        );
        expect_parse(
            &policy("protocol = 58", "protocol = 256 # HERE"),
            Some("network_policy[0].rule[1].protocol"),
            "out of range 0..=255",
        );
        expect_parse(
            &policy("dst_ports = \"5432\"", "dst_ports = \"http\" # HERE"),
            Some("network_policy[0].rule[0].dst_ports"),
            "invalid port range",
        );
        expect_parse(
            &policy("direction = \">\"", "direction = \"<\" # HERE"),
            Some("network_policy[0].rule[1].direction"),
            "unknown variant `<`",
        );
    }

    #[test]
    fn policy_addresses() {
        expect_invalid(
            &policy("src = \"vn:default-domain:demo:vn1\"", "src = \"vn:\" # HERE"),
            "network_policy[0].rule[0].src",
            "VN name is empty",
        );
        // VNs need not be local.
        parse(&policy("src = \"vn:default-domain:demo:vn1\"", "src = \"vn:elsewhere\""), "t").unwrap();
        expect_invalid(
            &policy("dst = \"10.2.0.0/16\"", "dst = \"10.2.0.1/16\" # HERE"),
            "network_policy[0].rule[0].dst",
            "host bits set; the prefix is 10.2.0.0/16",
        );
        expect_invalid(
            &policy("dst = \"fd00::/64\"", "src = \"10.0.0.0/8\"\ndst = \"fd00::/64\" # HERE"),
            "network_policy[0].rule[1].dst",
            "different IP versions",
        );
        expect_parse(
            &policy("dst = \"10.2.0.0/16\"", "dst = \"10.2.0.1\" # HERE"),
            Some("network_policy[0].rule[0].dst"),
            "invalid address",
        );
        expect_parse(
            &policy("dst = \"10.2.0.0/16\"", "dst = \"sg:web\" # HERE"),
            Some("network_policy[0].rule[0].dst"),
            "vn:<name>",
        );
    }

    #[test]
    fn policy_names_vns_and_uuids() {
        let vns = "vns = [\"default-domain:demo:vn1\", \"default-domain:demo:vn2\"]";
        expect_invalid(&policy(vns, "vns = [\"a\", \"\"] # HERE"), "network_policy[0].vns", "entry 1");
        expect_invalid(&policy(vns, "vns = [\"a\", \"a\"] # HERE"), "network_policy[0].vns", "listed twice");
        expect_invalid(
            &policy(vns, &format!("vns = [\"{}\"] # HERE", "v".repeat(64))),
            "network_policy[0].vns",
            "63 bytes",
        );
        expect_invalid(&policy("name = \"web-db\"", "name = \"\" # HERE"), "network_policy[0].name", "empty");
        expect_invalid(
            &policy_edits(&[], "\n[[network_policy]]\nname = \"web-db\" # HERE\n"),
            "network_policy[1].name",
            "duplicate network policy name",
        );
        expect_invalid(
            &policy("uuid = \"11111111-1111-4111-8111-111111111111\"", "uuid = \"1111\" # HERE"),
            "network_policy[0].uuid",
            "not a UUID",
        );
        expect_invalid(
            &policy(
                "uuid = \"aaaaaaaa-0000-4000-8000-000000000002\"",
                "uuid = \"aaaaaaaa-0000-4000-8000-00000000002\" # HERE",
            ),
            "network_policy[0].rule[1].uuid",
            "not a UUID",
        );
        // Rule UUIDs are unique (case-insensitively) across policies and security groups.
        expect_invalid(
            &policy(
                "uuid = \"aaaaaaaa-0000-4000-8000-000000000002\"",
                "uuid = \"AAAAAAAA-0000-4000-8000-000000000001\" # HERE",
            ),
            "network_policy[0].rule[1].uuid",
            "duplicate rule uuid AAAAAAAA-0000-4000-8000-000000000001 (first used by network_policy[0].rule[0] at line",
        );
        expect_invalid(
            &policy(
                "uuid = \"bbbbbbbb-0000-4000-8000-000000000002\"",
                "uuid = \"aaaaaaaa-0000-4000-8000-000000000002\" # HERE",
            ),
            "security_group[0].rule[1].uuid",
            "first used by network_policy[0].rule[1]",
        );
        expect_parse(
            &policy(
                "[[network_policy.rule]]\nuuid = \"aaaaaaaa-0000-4000-8000-000000000002\"",
                "[[network_policy.rule]] # HERE\nuuid = \"aaaaaaaa-0000-4000-8000-000000000002\"",
            )
            .replace("action = \"deny\"\n", ""),
            Some("network_policy[0].rule[1]"),
            "missing field `action`",
        );
        expect_parse(
            &policy("action = \"deny\"", "action = \"deny\"\nactoin = \"pass\" # HERE"),
            Some("network_policy[0].rule[1]"),
            "unknown field `actoin`",
        );
    }

    #[test]
    fn security_group_rules() {
        expect_invalid(
            &policy("remote = \"sg:web\"", "remote = \"sg:db\" # HERE"),
            "security_group[0].rule[0].remote",
            "security group \"db\" is not defined",
        );
        expect_invalid(
            &policy("remote = \"sg:web\"", "remote = \"sg:\" # HERE"),
            "security_group[0].rule[0].remote",
            "needs a security group name",
        );
        expect_invalid(
            &policy("remote = \"0.0.0.0/0\"", "remote = \"::/0\" # HERE\nethertype = \"IPv4\""),
            "security_group[0].rule[1].remote",
            "::/0 is not IPv4",
        );
        expect_invalid(
            &policy("remote = \"0.0.0.0/0\"", "remote = \"10.0.0.1/8\" # HERE"),
            "security_group[0].rule[1].remote",
            "host bits",
        );
        expect_invalid(
            &policy("protocol = \"tcp\"\nports = \"80-443\"", "protocol = \"icmp6\" # HERE"),
            "security_group[0].rule[0].protocol",
            "icmp6 never matches IPv4 traffic (use icmp) (ethertype is IPv4)",
        );
        expect_invalid(
            &policy("ports = \"80-443\"", "ports = \"443-80\" # HERE"),
            "security_group[0].rule[0].ports",
            "port range 443-80 is empty",
        );
        expect_invalid(
            &policy("protocol = \"tcp\"\nports = \"80-443\"", "protocol = \"icmp\"\nports = \"8\" # HERE"),
            "security_group[0].rule[0].ports",
            "has no ports",
        );
        expect_parse(
            &policy("ethertype = \"IPv4\"", "ethertype = \"IPv5\" # HERE"),
            Some("security_group[0].rule[0].ethertype"),
            "unknown variant `IPv5`",
        );
        expect_parse(
            &policy("direction = \"egress\"", "direction = \"out\" # HERE"),
            Some("security_group[0].rule[1].direction"),
            "unknown variant `out`",
        );
        parse(&policy("ethertype = \"IPv4\"", "ethertype = \"ipv4\""), "t").unwrap();
    }

    #[test]
    fn security_group_names() {
        expect_invalid(
            &policy_edits(&[], "\n[[security_group]]\nname = \"web\" # HERE\n"),
            "security_group[1].name",
            "duplicate security group name \"web\"",
        );
        expect_invalid(
            &policy("uuid = \"22222222-2222-4222-8222-222222222222\"", "uuid = \"x\" # HERE"),
            "security_group[0].uuid",
            "not a UUID",
        );
        expect_invalid(
            &policy_edits(
                &[],
                "\n[[security_group]]\nname = \"db\"\nuuid = \"22222222-2222-4222-8222-222222222222\" # HERE\n",
            ),
            "security_group[1].uuid",
            "duplicate security group uuid",
        );
    }

    #[test]
    fn vif_security_groups() {
        let sgs = "security_groups = [\"web\"]";
        expect_invalid(
            &policy(sgs, "security_groups = [\"web\", \"db\"] # HERE"),
            "vif[2].security_groups",
            "security group \"db\" is not defined",
        );
        expect_invalid(
            &policy(sgs, "security_groups = [\"web\", \"web\"] # HERE"),
            "vif[2].security_groups",
            "listed twice",
        );
        expect_invalid(
            &policy("rx_queues = 2", "rx_queues = 2\nsecurity_groups = [\"web\"] # HERE"),
            "vif[0].security_groups",
            "type fabric",
        );
        parse(&policy(sgs, "security_groups = []"), "t").unwrap();
    }

    #[test]
    fn vif_interface_mirroring() {
        let sgs = "security_groups = [\"web\"]";
        let cfg = parse(
            &policy(sgs, "security_groups = [\"web\"]\nmirror_to = \"an-2\"\nmirror_rx = true\nmirror_tx = true"),
            "t",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let v = cfg.vifs[2].get_ref();
        assert_eq!((v.mirror_to.as_deref(), v.mirror_rx, v.mirror_tx), (Some("an-2"), true, true));
        assert!(!cfg.vifs[0].get_ref().mirror_rx && cfg.vifs[0].get_ref().mirror_to.is_none());
        expect_invalid(
            &policy(sgs, "security_groups = [\"web\"]\nmirror_rx = true\nmirror_to = \"an-9\" # HERE"),
            "vif[2].mirror_to",
            "analyzer \"an-9\" is not defined",
        );
        expect_invalid(
            &policy(sgs, "security_groups = [\"web\"]\nmirror_to = \"an-1\" # HERE"),
            "vif[2].mirror_to",
            "set mirror_rx and/or mirror_tx",
        );
        expect_invalid(
            &policy(sgs, "security_groups = [\"web\"]\nmirror_tx = true # HERE"),
            "vif[2].mirror_tx",
            "needs mirror_to",
        );
    }

    #[test]
    fn key_lines_from_spans() {
        // A quoted key in an entry.
        expect_invalid(&edit("mtu = 9000", "\"mtu\" = 9001 # HERE"), "vif[0].mtu", "68..=9000");
        // Dotted keys at the top level instead of an [eal] table.
        let dotted = "eal.forwarding_cores = [1]\neal . \"memory_mb\" = 8 # HERE\n".to_string()
            + &VALID[VALID.find("[vrouter]").unwrap()..];
        expect_invalid(&dotted, "eal.memory_mb", "at least 64");
        // An inline table for [flow].
        let inline = format!("flow = {{ hold_limit = 0 }} # HERE\n{VALID}");
        expect_invalid(&inline, "flow.hold_limit", "at least 1");
        // A key of a nested [[network_policy.rule]]: the line of the earlier rule's key.
        let text = policy(
            "uuid = \"aaaaaaaa-0000-4000-8000-000000000002\"",
            "uuid = \"aaaaaaaa-0000-4000-8000-000000000001\" # HERE",
        );
        let first = text.lines().position(|l| l == "uuid = \"aaaaaaaa-0000-4000-8000-000000000001\"").unwrap() + 1;
        expect_invalid(
            &text,
            "network_policy[0].rule[1].uuid",
            &format!("(first used by network_policy[0].rule[0] at line {first})"),
        );
    }

    // ---- helpers ----

    #[test]
    fn text_helpers() {
        assert!(is_uuid("6f1c2a3b-4d5e-4f60-8a1b-2c3d4e5f6a7b"));
        assert!(!is_uuid("6f1c2a3b4d5e4f608a1b2c3d4e5f6a7b"));
    }
}
