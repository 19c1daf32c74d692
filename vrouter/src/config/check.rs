//! Semantic validation of a parsed configuration: the driver and what the tables share.
//!
//! [`validate`] runs the checks each table's module adds to `Checker` (`[eal]` in `eal`,
//! `[[vif]]` in `vif`, ...) in a fixed order. It checks values and cross-references (a
//! route's nexthop, a vif's VRF, ...) and returns the first problem as one [`ConfigError`]
//! that names the file, the line and the field by its TOML path, e.g.
//!
//! ```text
//! vrouter.toml:42: route[3].nexthop: nexthop 99 is not defined
//! ```
//!
//! The line is that of the offending key, looked up by TOML path in the `toml_edit` spans
//! of the text (`super::locate`). When an entry of the `[[vif]]`, `[[vrf]]`, ... arrays
//! does not write the key, its first line (the entries are `toml::Spanned`); when a key of
//! the `[eal]`, `[vrouter]`, ... tables is not written (a default), the message has no line.
//!
//! Parse errors ([`ConfigError::parse`]) keep toml's message and get the line of its span
//! and the path of the enclosing table, e.g.
//!
//! ```text
//! vrouter.toml:7: vif[0]: unknown field `rx_queue`, expected one of `id`, `name`, ...
//! ```

use super::locate::{error_location, line_of, Spans};
use super::schema::{Config, Mac, PortRange, Prefix, Protocol};
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr};
use toml::Spanned;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path that was read.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The text is not valid TOML or does not match the schema (unknown field, wrong type,
    /// missing field). `table` is the TOML path of the enclosing table, e.g. `vif[1]`.
    #[error("{}: {}{message}", location(.origin, .line), in_table(.table))]
    Parse {
        /// Where the text came from (the file path, as given to [`super::parse`]).
        origin: String,
        /// 1-based line of the error's span, when toml reports one.
        line: Option<usize>,
        /// TOML path of the enclosing table (`vif[1]`), when known.
        table: Option<String>,
        /// toml's message.
        message: String,
    },
    /// A value is out of range or a reference is dangling. `field` is the TOML path,
    /// e.g. `route[3].nexthop` or `eal.forwarding_cores`.
    #[error("{}: {field}: {message}", location(.origin, .line))]
    Invalid {
        /// Where the text came from (the file path, as given to [`super::parse`]).
        origin: String,
        /// 1-based line of the offending key (or entry); `None` for a default not written.
        line: Option<usize>,
        /// TOML path of the offending field, e.g. `route[3].nexthop`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
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
    cfg.ipfix.check().map_err(|(key, msg)| ck.table("ipfix", key, msg))?;
    cfg.log.check().map_err(|(key, msg)| ck.table("log", key, msg))?;
    ck.analyzers()?;
    let mut rule_uuids = HashMap::new();
    ck.network_policies(&mut rule_uuids)?;
    ck.security_groups(&mut rule_uuids)?;
    ck.tenants()
}

/// MPLS labels 0..=15 are reserved; labels are 20 bits.
pub(super) const MPLS_FIRST_LABEL: u32 = 16;
pub(super) const MPLS_LABEL_LIMIT: u32 = 1 << 20;
/// VXLAN VNIs are 24 bits ([`vrouter_abi::MAX_VNI`]); 0 is not used.
pub(super) use vrouter_abi::MAX_VNI as VNI_MAX;
/// Longest VN name (vif `vn_name`, policy `vns` and `vn:` addresses).
pub(super) const MAX_VN_NAME: usize = 63;

/// Validation context: the configuration, the text it came from and indexes of the
/// entries other entries refer to (first definition wins; duplicates are errors).
pub(super) struct Checker<'a> {
    pub(super) cfg: &'a Config,
    /// The text, parsed for line numbers.
    pub(super) spans: Spans<'a>,
    pub(super) origin: &'a str,
    /// VRF id -> index in `cfg.vrfs`.
    pub(super) vrfs: HashMap<u32, usize>,
    /// vif id -> index in `cfg.vifs`.
    pub(super) vifs: HashMap<u16, usize>,
    /// nexthop id -> index in `cfg.nexthops`.
    pub(super) nexthops: HashMap<u32, usize>,
    /// analyzer name -> index in `cfg.analyzers`.
    pub(super) analyzers: HashMap<&'a str, usize>,
    /// security group name -> index in `cfg.security_groups`.
    pub(super) sgs: HashMap<&'a str, usize>,
}

impl<'a> Checker<'a> {
    pub(super) fn new(cfg: &'a Config, text: &'a str, origin: &'a str) -> Self {
        fn index<'l, K: Hash + Eq, T>(list: &'l [Spanned<T>], key: impl Fn(&'l T) -> K) -> HashMap<K, usize> {
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

    pub(super) fn invalid(&self, line: Option<usize>, field: String, message: String) -> ConfigError {
        ConfigError::Invalid { origin: self.origin.into(), line, field, message }
    }

    /// 1-based line of a byte offset in the text.
    pub(super) fn line_of(&self, offset: usize) -> usize {
        self.spans.line_of(offset)
    }

    /// Line where `key` is written in entry `e` (TOML path `path`), else the entry's first
    /// line.
    pub(super) fn key_line<T>(&self, path: &str, e: &Spanned<T>, key: &str) -> usize {
        self.spans.key_line(path, key).unwrap_or_else(|| self.line_of(e.span().start))
    }

    /// An error on `key` of entry `i` of the `[[list]]` array: field `list[i].key`.
    pub(super) fn entry<T>(
        &self,
        list: &str,
        i: usize,
        e: &Spanned<T>,
        key: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        let line = self.key_line(&format!("{list}[{i}]"), e, key);
        self.invalid(Some(line), format!("{list}[{i}].{key}"), message.into())
    }

    /// An error on `key` of the `[table]` table: field `table.key`. The line is that of
    /// `key =` in the table (a `[table]` section, an inline `table = { ... }` or dotted
    /// `table.key = ...` keys), none when the key is not written (a default).
    pub(super) fn table(&self, table: &str, key: &str, message: impl Into<String>) -> ConfigError {
        self.invalid(self.spans.key_line(table, key), format!("{table}.{key}"), message.into())
    }

    /// "first defined at line N", for duplicate messages.
    pub(super) fn first_at<T>(&self, e: &Spanned<T>) -> String {
        format!("first defined at line {}", self.line_of(e.span().start))
    }

    /// Checks a rule's UUID: well formed and not used by an earlier rule of any policy or
    /// security group.
    pub(super) fn rule_uuid<T>(
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

/// Uniqueness of a key among the entries of a `[[list]]` array (`Unique::entries`), or
/// among the items of one list value (`Unique::items`): the one helper behind every
/// "duplicate ..." and "... is listed twice" check. The first entry with a key keeps it;
/// a later one is the duplicate.
pub(super) struct Unique<'c, K, T = ()> {
    /// The array's name (`vrf`), for the field of the error.
    list: &'c str,
    /// The array's entries, for the line of the first definition.
    entries: &'c [Spanned<T>],
    /// Key -> position of the first entry (or item) with it.
    first: HashMap<K, usize>,
}

impl<'c, K: Hash + Eq, T> Unique<'c, K, T> {
    /// Keys of the entries of the `[[list]]` array.
    pub(super) fn entries(list: &'c str, entries: &'c [Spanned<T>]) -> Self {
        Unique { list, entries, first: HashMap::new() }
    }

    /// Records `key` for position `i`; the position of an earlier one with the same key.
    pub(super) fn first(&mut self, key: K, i: usize) -> Option<usize> {
        match self.first.entry(key) {
            Entry::Occupied(e) => Some(*e.get()),
            Entry::Vacant(e) => {
                e.insert(i);
                None
            }
        }
    }

    /// Records `key` for entry `i`. When an earlier entry has the same key, the error on
    /// `list[i].field` whose message `duplicate` writes from the position of the earlier
    /// entry and "first defined at line N".
    pub(super) fn check(
        &mut self,
        ck: &Checker<'_>,
        i: usize,
        field: &str,
        key: K,
        duplicate: impl FnOnce(usize, &str) -> String,
    ) -> Result<(), ConfigError> {
        match self.first(key, i) {
            None => Ok(()),
            Some(first) => {
                let at = ck.first_at(&self.entries[first]);
                Err(ck.entry(self.list, i, &self.entries[i], field, duplicate(first, &at)))
            }
        }
    }
}

impl<K: Hash + Eq> Unique<'static, K> {
    /// Items of one list value (`forwarding_cores`, `members`, ...).
    pub(super) fn items() -> Self {
        Unique { list: "", entries: &[], first: HashMap::new() }
    }

    /// Records `item`; whether an earlier item is the same.
    pub(super) fn repeated(&mut self, item: K) -> bool {
        let i = self.first.len();
        self.first(item, i).is_some()
    }
}

// ---- value helpers ----

/// Why an IPv4 address cannot be a unicast host address, if it cannot.
pub(super) fn unicast_v4_problem(ip: Ipv4Addr) -> Option<&'static str> {
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
pub(super) fn unicast_mac_problem(mac: Mac) -> Option<&'static str> {
    if mac == Mac::default() {
        Some("all zero")
    } else if mac.0[0] & 1 != 0 {
        Some("a multicast MAC (low bit of the first byte set)")
    } else {
        None
    }
}

/// RFC 4122 text form: 8-4-4-4-12 hex digits.
pub(super) fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The prefix with its host bits cleared.
pub(super) fn canonical(p: Prefix) -> Prefix {
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
pub(super) fn not_a_uuid(uuid: &str) -> String {
    format!("{uuid:?} is not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)")
}

/// Why a VN name in a policy cannot be used, if it cannot.
pub(super) fn vn_name_problem(vn: &str) -> Option<String> {
    if vn.is_empty() {
        Some("the VN name is empty".into())
    } else if vn.len() > MAX_VN_NAME {
        Some(format!("{vn:?} is longer than {MAX_VN_NAME} bytes"))
    } else {
        None
    }
}

/// Why a rule's prefix is not usable: host bits set.
pub(super) fn prefix_problem(p: Prefix) -> Option<String> {
    let c = canonical(p);
    (c != p).then(|| format!("{p} has host bits set; the prefix is {c}"))
}

/// Why a rule's protocol can never match its address family, if it cannot.
pub(super) fn protocol_family_problem(proto: Protocol, v4: bool) -> Option<String> {
    match proto {
        Protocol::Number(Protocol::ICMP) if !v4 => Some("icmp never matches IPv6 traffic (use icmp6)".into()),
        Protocol::Number(Protocol::ICMP6) if v4 => Some("icmp6 never matches IPv4 traffic (use icmp)".into()),
        _ => None,
    }
}

/// Why a port range cannot be used with a protocol, if it cannot.
pub(super) fn ports_problem(ports: PortRange, proto: Protocol) -> Option<String> {
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
