//! Live programming: the forwarding state changed while the vRouter forwards.
//!
//! The [`Programmer`] holds the desired state as one [`Config`]: the configuration file
//! plus what was programmed at runtime. A request ([`ProgramCommand`], the contract in
//! `vrouter_abi::control`) edits a copy of it, and the copy is validated by the same checks
//! as the file (`config::validate`); an invalid request is refused whole with the error of
//! the field, and nothing changes. A valid one becomes a new [`Fib`] that is published to the
//! lcores ([`FibCell`], RCU style), then the agent re-evaluates the flows it affects.
//!
//! Routes, the high-volume object, take a shorter path: they are checked one by one (VRF,
//! canonical prefix, nexthop) and applied to a copy of the current FIB that shares every
//! VRF but the ones changed, so a batch of routes costs what its own VRFs cost, not a
//! rebuild of everything. Everything else rebuilds the FIB from the desired state.
//!
//! What was programmed at runtime is journaled to `<run_dir>/programmed.journal` (one JSON
//! line per object set or deleted) and restored at start after the file ([`restore`]); the
//! journal is compacted when it grows past twice what it describes.

use super::protocol::ProtocolError;
use crate::config::{
    self, AnalyzerConfig, BridgeConfig, Config, LabelConfig, Mac, NetworkPolicyConfig, NexthopConfig, Prefix,
    RouteConfig, SecurityGroupConfig, TunnelEncap, VifConfig, VrfConfig,
};
use crate::fib::lpm::Lpm;
use crate::fib::publish::{FibCell, PortMap, PortSlot};
use crate::fib::{Fib, Nexthop};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use toml::Spanned;
use vrouter_abi::control::{
    ChangeReply, InfoReply, LabelEntry, NexthopEntry, RouteEntry, VifEntry, VrfEntry, API_VERSION,
};

/// File name of the journal of runtime-programmed objects in the run directory.
pub const JOURNAL_FILE: &str = "programmed.journal";

/// A route named by VRF and prefix (`route_delete`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteKey {
    /// VRF id.
    pub vrf: u32,
    /// The prefix.
    pub prefix: Prefix,
}

/// Address families of `route_dump`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// IPv4 routes.
    Inet,
    /// IPv6 routes.
    Inet6,
    /// Bridge (MAC) entries.
    Bridge,
}

/// A programming request, decoded ([`ProgramCommand::decode`]); see `vrouter_abi::control`.
#[derive(Debug, Clone)]
pub enum ProgramCommand {
    /// Adds or replaces a vif.
    VifSet(Box<VifConfig>),
    /// Deletes a vif.
    VifDelete(u16),
    /// Adds or replaces a VRF.
    VrfSet(VrfConfig),
    /// Deletes a VRF.
    VrfDelete(u32),
    /// Adds or replaces a nexthop.
    NhSet(NexthopConfig),
    /// Deletes a nexthop.
    NhDelete(u32),
    /// Adds or replaces routes.
    RouteSet(Vec<RouteConfig>),
    /// Deletes routes.
    RouteDelete(Vec<RouteKey>),
    /// Adds or replaces an MPLS label.
    LabelSet(LabelConfig),
    /// Deletes an MPLS label.
    LabelDelete(u32),
    /// Adds or replaces a bridge entry.
    BridgeSet(BridgeConfig),
    /// Deletes a bridge entry.
    BridgeDelete(u32, Mac),
    /// Adds or replaces an analyzer.
    AnalyzerSet(AnalyzerConfig),
    /// Deletes an analyzer.
    AnalyzerDelete(String),
    /// Adds or replaces a network policy.
    PolicySet(NetworkPolicyConfig),
    /// Deletes a network policy.
    PolicyDelete(String),
    /// Adds or replaces a security group.
    SecurityGroupSet(SecurityGroupConfig),
    /// Deletes a security group.
    SecurityGroupDelete(String),
    /// Every vif.
    VifDump,
    /// Every VRF.
    VrfDump,
    /// The routes of a VRF.
    RouteDump(u32, Family),
    /// The route a destination (address or MAC) takes in a VRF.
    RouteLookup(u32, String),
    /// Every nexthop.
    NhDump,
    /// One nexthop.
    NhGet(u32),
    /// Every label.
    LabelDump,
    /// One label.
    LabelGet(u32),
    /// Build, limits, sizes.
    Info,
}

/// The commands this module serves (every other goes to the agent).
pub const COMMANDS: &[&str] = &[
    "vif_set",
    "vif_delete",
    "vrf_set",
    "vrf_delete",
    "nh_set",
    "nh_delete",
    "route_set",
    "route_delete",
    "label_set",
    "label_delete",
    "bridge_set",
    "bridge_delete",
    "analyzer_set",
    "analyzer_delete",
    "policy_set",
    "policy_delete",
    "security_group_set",
    "security_group_delete",
    "vif_dump",
    "vrf_dump",
    "route_dump",
    "route_lookup",
    "nh_dump",
    "nh_get",
    "label_dump",
    "label_get",
    "info",
];

/// Decodes field `name` of request `v` as `T`; errors name the field's path (`vif.mac`).
fn field<T: DeserializeOwned>(v: &Value, name: &str) -> Result<T, ProtocolError> {
    let Some(x) = v.get(name) else {
        return Err(ProtocolError::Field { field: name.into(), msg: "missing".into() });
    };
    serde_path_to_error::deserialize(x).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." || path.is_empty() { name.to_string() } else { format!("{name}.{path}") };
        ProtocolError::Field { field, msg: e.into_inner().to_string() }
    })
}

/// A configuration object from its JSON form, through a TOML document: objects with
/// `Spanned` members (a policy's or a security group's rules, whose spans give the file's
/// line numbers) deserialize only from TOML. The spans then point into the generated
/// document and are never shown. Errors: (the path inside the object, the message).
fn via_toml<T: DeserializeOwned>(x: &Value) -> Result<T, (String, String)> {
    // TOML has no null: an absent key is what a `null` (an unset optional field, as the
    // journal writes it) means.
    fn drop_nulls(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                Value::Object(m.iter().filter(|(_, x)| !x.is_null()).map(|(k, x)| (k.clone(), drop_nulls(x))).collect())
            }
            Value::Array(a) => Value::Array(a.iter().map(drop_nulls).collect()),
            other => other.clone(),
        }
    }
    let table = match toml::Value::try_from(drop_nulls(x)) {
        Ok(toml::Value::Table(t)) => t,
        Ok(_) => return Err((String::new(), "must be an object".into())),
        Err(e) => return Err((String::new(), e.to_string())),
    };
    let text = toml::to_string(&table).map_err(|e| (String::new(), e.to_string()))?;
    serde_path_to_error::deserialize(toml::Deserializer::new(&text)).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        (path, e.into_inner().message().trim_end().to_owned())
    })
}

/// [`field`] for the objects [`via_toml`] decodes.
fn spanned_field<T: DeserializeOwned>(v: &Value, name: &str) -> Result<T, ProtocolError> {
    let Some(x) = v.get(name) else {
        return Err(ProtocolError::Field { field: name.into(), msg: "missing".into() });
    };
    via_toml(x).map_err(|(path, msg)| {
        let field = if path.is_empty() { name.to_string() } else { format!("{name}.{path}") };
        ProtocolError::Field { field, msg }
    })
}

fn opt_field<T: DeserializeOwned>(v: &Value, name: &str) -> Result<Option<T>, ProtocolError> {
    match v.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => field(v, name).map(Some),
    }
}

impl ProgramCommand {
    /// Whether `cmd` is a programming command.
    pub fn is_program(cmd: &str) -> bool {
        COMMANDS.contains(&cmd)
    }

    /// Decodes a request; its `version`, when given, must be [`API_VERSION`].
    pub fn decode(v: &Value) -> Result<ProgramCommand, ProtocolError> {
        let cmd = super::protocol::cmd_of(v).ok_or(ProtocolError::MissingCmd)?;
        if let Some(ver) = opt_field::<u32>(v, "version")? {
            if ver != API_VERSION {
                return Err(ProtocolError::Field {
                    field: "version".into(),
                    msg: format!("API version {ver} is not served (this vRouter serves {API_VERSION})"),
                });
            }
        }
        use ProgramCommand as C;
        Ok(match cmd {
            "vif_set" => C::VifSet(Box::new(field(v, "vif")?)),
            "vif_delete" => C::VifDelete(field(v, "id")?),
            "vrf_set" => C::VrfSet(field(v, "vrf")?),
            "vrf_delete" => C::VrfDelete(field(v, "id")?),
            "nh_set" => C::NhSet(field(v, "nexthop")?),
            "nh_delete" => C::NhDelete(field(v, "id")?),
            "route_set" => C::RouteSet(field(v, "routes")?),
            "route_delete" => C::RouteDelete(field(v, "routes")?),
            "label_set" => C::LabelSet(field(v, "label")?),
            "label_delete" => C::LabelDelete(field(v, "label")?),
            "bridge_set" => C::BridgeSet(field(v, "bridge")?),
            "bridge_delete" => C::BridgeDelete(field(v, "vrf")?, field(v, "mac")?),
            "analyzer_set" => C::AnalyzerSet(field(v, "analyzer")?),
            "analyzer_delete" => C::AnalyzerDelete(field(v, "name")?),
            "policy_set" => C::PolicySet(spanned_field(v, "policy")?),
            "policy_delete" => C::PolicyDelete(field(v, "name")?),
            "security_group_set" => C::SecurityGroupSet(spanned_field(v, "security_group")?),
            "security_group_delete" => C::SecurityGroupDelete(field(v, "name")?),
            "vif_dump" => C::VifDump,
            "vrf_dump" => C::VrfDump,
            "route_dump" => C::RouteDump(field(v, "vrf")?, opt_field(v, "family")?.unwrap_or(Family::Inet)),
            "route_lookup" => C::RouteLookup(field(v, "vrf")?, field(v, "addr")?),
            "nh_dump" => C::NhDump,
            "nh_get" => C::NhGet(field(v, "id")?),
            "label_dump" => C::LabelDump,
            "label_get" => C::LabelGet(field(v, "label")?),
            "info" => C::Info,
            other => return Err(ProtocolError::UnknownCommand(other.into())),
        })
    }
}

/// Opens and closes DPDK ports for vifs added and deleted at runtime (the data plane
/// implements it; without one, a vif change that needs a port is refused).
pub trait PortOps: Send {
    /// Probes (when `vif.devargs` is set), configures and starts the port of `vif`.
    fn open(&mut self, vif: &VifConfig) -> Result<PortSlot, String>;
    /// Drains (freeing and counting what is left in its RX queues), stops and closes the port
    /// of a vif no lcore polls any more, and removes a hot-plugged device; returns the packets
    /// drained.
    fn close(&mut self, vif: &VifConfig, slot: &PortSlot) -> Result<u64, String>;
}

/// What the agent is asked to do after a change was published.
#[derive(Debug)]
pub enum FlowWork {
    /// Re-evaluate the flow pairs whose source or destination lies in one of these prefixes
    /// (per VRF), with the current FIB.
    Prefixes(Vec<(u32, Prefix)>),
    /// Re-evaluate every flow pair (a nexthop, vif, policy or security-group change), with
    /// the policies of `cfg` when they changed; delete the flows of `deleted_vifs` (ingress)
    /// and `deleted_vrfs`.
    All {
        /// The new desired state, when policies, security groups or analyzers changed.
        cfg: Option<Arc<Config>>,
        /// vifs deleted: their flows (and the reverse flows) are deleted.
        deleted_vifs: Vec<u16>,
        /// The deleted vifs' VMs (VRF, address): flows to and from them are deleted too.
        deleted_ends: Vec<(u32, IpAddr)>,
        /// VRFs deleted: their flows are deleted.
        deleted_vrfs: Vec<u32>,
    },
}

/// A [`FlowWork`] request and where its counts go.
pub struct FlowJob {
    /// The work.
    pub work: FlowWork,
    /// Gets (re-evaluated, changed, deleted).
    pub reply: std::sync::mpsc::SyncSender<(u64, u64, u64)>,
}

/// See [`Hooks::before_publish`].
pub type BeforePublish = Box<dyn FnMut(&Config, &Arc<Fib>) + Send>;

/// Hooks of a running vRouter the programmer drives (all optional: a programmer without
/// them only changes the FIB).
#[derive(Default)]
pub struct Hooks {
    /// Hot-plugs ports.
    pub ports: Option<Box<dyn PortOps>>,
    /// The agent's queue of flow work.
    pub agent: Option<crate::agent::wake::Mailbox<FlowJob>>,
    /// The stats region, to publish the records of vifs added and deleted.
    pub stats: Option<Arc<crate::stats::StatsRegion>>,
    /// The mirror table, to follow analyzer changes.
    pub mirror: Option<Arc<crate::mirror::MirrorControl>>,
    /// Forwarding lcores (EAL ids), for `info`.
    pub lcores: Vec<u32>,
    /// The flow table, for `info`.
    pub flows: Option<Arc<flow_table::FlowTable>>,
    /// The configuration file, re-read on `reload`.
    pub config_path: Option<PathBuf>,
    /// Called with each new desired state and its FIB just before they are published (the
    /// data plane rebuilds what it derives from them, e.g. the interface mirroring table).
    pub before_publish: Option<BeforePublish>,
}

/// Serves programming requests (see the module doc).
pub struct Programmer {
    cfg: Config,
    cell: Arc<FibCell>,
    hooks: Hooks,
    journal: Option<Journal>,
    /// (VRF, prefix) -> index in `cfg.routes`.
    routes: HashMap<(u32, Prefix), usize>,
    /// Objects set or deleted at runtime: key -> the object (`None`: deleted).
    overlay: BTreeMap<String, Option<Value>>,
    started: Instant,
    /// Whether requests are served (see [`Programmer::set_hooks`]).
    ready: bool,
}

/// A request's failure: the message (`field: what is wrong`).
pub type ProgramError = String;

impl Programmer {
    /// A programmer of `cfg` (the state the FIB in `cell` was built from); `run_dir`: where
    /// the journal is kept (`None`: not persisted).
    pub fn new(cfg: Config, cell: Arc<FibCell>, run_dir: Option<&Path>, hooks: Hooks) -> Programmer {
        let routes = cfg.routes.iter().enumerate().map(|(i, r)| ((r.get_ref().vrf, r.get_ref().prefix), i)).collect();
        let (journal, overlay) = match run_dir {
            Some(d) => {
                let path = d.join(JOURNAL_FILE);
                let overlay = read_journal(&path).unwrap_or_default();
                (Some(Journal { path, lines: overlay.len() }), overlay)
            }
            None => (None, BTreeMap::new()),
        };
        let ready = hooks.ports.is_some() || hooks.agent.is_some();
        Programmer { cfg, cell, hooks, journal, routes, overlay, started: Instant::now(), ready }
    }

    /// Sets the hooks of the running vRouter (ports, agent, stats, ...), once its data plane
    /// runs; until then every request is refused (the vRouter is starting).
    pub fn set_hooks(&mut self, hooks: Hooks) {
        self.hooks = hooks;
        self.ready = true;
    }

    /// The desired state now.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Serves one request; the reply (`{"ok": true, ...}` or `{"ok": false, "error": ...}`).
    pub fn serve(&mut self, v: &Value) -> Value {
        if !self.ready {
            return json!({"ok": false, "error": "the vRouter is starting; try again"});
        }
        match ProgramCommand::decode(v) {
            Err(e) => json!({"ok": false, "error": e.to_string()}),
            Ok(cmd) => match self.apply(cmd) {
                Ok(mut reply) => {
                    if let Some(o) = reply.as_object_mut() {
                        o.insert("ok".into(), Value::Bool(true));
                    }
                    reply
                }
                Err(e) => json!({"ok": false, "error": e}),
            },
        }
    }

    /// Applies a decoded request.
    pub fn apply(&mut self, cmd: ProgramCommand) -> Result<Value, ProgramError> {
        use ProgramCommand as C;
        let change = |r: ChangeReply| serde_json::to_value(r).map_err(|e| e.to_string());
        match cmd {
            C::RouteSet(routes) => change(self.route_set(routes)?),
            C::RouteDelete(keys) => change(self.route_delete(keys)?),
            C::VifSet(mut v) => {
                v.resolve();
                let key = format!("vif/{}", v.id);
                let obj = to_value(&*v);
                change(self.edit(&key, Some(obj), Table::Vif, move |c| upsert(&mut c.vifs, *v, |a, b| a.id == b.id))?)
            }
            C::VifDelete(id) => change(self.edit(&format!("vif/{id}"), None, Table::Vif, move |c| {
                remove(&mut c.vifs, "vif", id, |v| v.id == id)
            })?),
            C::VrfSet(v) => {
                let key = format!("vrf/{}", v.id);
                let obj = to_value(&v);
                change(self.edit(&key, Some(obj), Table::Vrf, move |c| upsert(&mut c.vrfs, v, |a, b| a.id == b.id))?)
            }
            C::VrfDelete(id) => change(self.edit(&format!("vrf/{id}"), None, Table::Vrf, move |c| {
                remove(&mut c.vrfs, "vrf", id, |v| v.id == id)
            })?),
            C::NhSet(n) => {
                let key = format!("nexthop/{}", n.id());
                let obj = to_value(&n);
                change(self.edit(&key, Some(obj), Table::Nexthop, move |c| {
                    upsert(&mut c.nexthops, n, |a, b| a.id() == b.id())
                })?)
            }
            C::NhDelete(id) => change(self.edit(&format!("nexthop/{id}"), None, Table::Nexthop, move |c| {
                remove(&mut c.nexthops, "nexthop", id, |n| n.id() == id)
            })?),
            C::LabelSet(l) => {
                let key = format!("label/{}", l.label);
                let obj = to_value(&l);
                change(self.edit(&key, Some(obj), Table::Label, move |c| {
                    upsert(&mut c.labels, l, |a, b| a.label == b.label)
                })?)
            }
            C::LabelDelete(label) => change(self.edit(&format!("label/{label}"), None, Table::Label, move |c| {
                remove(&mut c.labels, "label", label, |l| l.label == label)
            })?),
            C::BridgeSet(b) => {
                let key = format!("bridge/{}/{}", b.vrf, b.mac);
                let obj = to_value(&b);
                change(self.edit(&key, Some(obj), Table::Bridge, move |c| {
                    upsert(&mut c.bridge, b, |a, b| a.vrf == b.vrf && a.mac == b.mac)
                })?)
            }
            C::BridgeDelete(vrf, mac) => {
                change(self.edit(&format!("bridge/{vrf}/{mac}"), None, Table::Bridge, move |c| {
                    remove(&mut c.bridge, "bridge entry", format!("{mac} in vrf {vrf}"), |b| {
                        b.vrf == vrf && b.mac == mac
                    })
                })?)
            }
            C::AnalyzerSet(a) => {
                let key = format!("analyzer/{}", a.name);
                let obj = to_value(&a);
                change(self.edit(&key, Some(obj), Table::Analyzer, move |c| {
                    upsert(&mut c.analyzers, a, |x, y| x.name == y.name)
                })?)
            }
            C::AnalyzerDelete(name) => {
                change(self.edit(&format!("analyzer/{name}"), None, Table::Analyzer, move |c| {
                    let n = name.clone();
                    remove(&mut c.analyzers, "analyzer", name, |a| a.name == n)
                })?)
            }
            C::PolicySet(p) => {
                let key = format!("network_policy/{}", p.name);
                let obj = to_value(&p);
                change(self.edit(&key, Some(obj), Table::Policy, move |c| {
                    upsert(&mut c.network_policies, p, |x, y| x.name == y.name)
                })?)
            }
            C::PolicyDelete(name) => {
                change(self.edit(&format!("network_policy/{name}"), None, Table::Policy, move |c| {
                    let n = name.clone();
                    remove(&mut c.network_policies, "network policy", name, |p| p.name == n)
                })?)
            }
            C::SecurityGroupSet(s) => {
                let key = format!("security_group/{}", s.name);
                let obj = to_value(&s);
                change(self.edit(&key, Some(obj), Table::SecurityGroup, move |c| {
                    upsert(&mut c.security_groups, s, |x, y| x.name == y.name)
                })?)
            }
            C::SecurityGroupDelete(name) => {
                change(self.edit(&format!("security_group/{name}"), None, Table::SecurityGroup, move |c| {
                    let n = name.clone();
                    remove(&mut c.security_groups, "security group", name, |s| s.name == n)
                })?)
            }
            C::VifDump => Ok(json!({ "vifs": self.vif_dump() })),
            C::VrfDump => Ok(json!({ "vrfs": self.vrf_dump() })),
            C::RouteDump(vrf, family) => Ok(json!({ "routes": self.route_dump(vrf, family)? })),
            C::RouteLookup(vrf, addr) => Ok(json!({ "route": self.route_lookup(vrf, &addr)? })),
            C::NhDump => {
                let fib = self.cell.fib();
                let refs = nh_refs(&fib);
                Ok(
                    json!({ "nexthops": (0..fib.nexthops.len()).map(|i| nh_entry(&fib, i as u32, &refs)).collect::<Vec<_>>() }),
                )
            }
            C::NhGet(id) => {
                let fib = self.cell.fib();
                let idx = fib.nh_index(id).ok_or_else(|| format!("id: nexthop {id} is not defined"))?;
                Ok(json!({ "nexthop": nh_entry(&fib, idx, &nh_refs(&fib)) }))
            }
            C::LabelDump => {
                let mut labels: Vec<LabelEntry> = self.cfg.labels.iter().map(|l| label_entry(l.get_ref())).collect();
                labels.sort_by_key(|l| l.label);
                Ok(json!({ "labels": labels }))
            }
            C::LabelGet(label) => {
                let l = (self.cfg.labels.iter().map(|l| l.get_ref()))
                    .find(|l| l.label == label)
                    .ok_or_else(|| format!("label: label {label} is not defined"))?;
                Ok(json!({ "label": label_entry(l) }))
            }
            C::Info => Ok(json!({ "info": self.info() })),
        }
    }

    /// Validates `new` as the file's checks do; the error names the request's field when it
    /// is about the entry the request set (`vif[3].mac` -> `vif.mac`).
    fn validate(new: &Config, table: Table, at: Option<usize>) -> Result<(), ProgramError> {
        config::validate(new, "", "request").map_err(|e| match e {
            config::ConfigError::Invalid { field, message, .. } => {
                let own = at.map(|i| format!("{}[{i}]", table.key()));
                match own.as_deref().and_then(|p| field.strip_prefix(p)) {
                    Some(rest) => format!("{}{rest}: {message}", table.field()),
                    None => format!("{field}: {message}"),
                }
            }
            other => other.to_string(),
        })
    }

    /// A change of anything but routes: edit a copy of the desired state, validate it, build
    /// the FIB, open/close ports, publish, let the agent follow.
    fn edit(
        &mut self,
        key: &str,
        obj: Option<Value>,
        table: Table,
        f: impl FnOnce(&mut Config) -> Result<Option<usize>, ProgramError>,
    ) -> Result<ChangeReply, ProgramError> {
        let mut new = self.cfg.clone();
        let Some(at) = f(&mut new)? else {
            // Equal to what is there.
            return Ok(ChangeReply { generation: self.cell.generation(), ..ChangeReply::default() });
        };
        let at = (at != usize::MAX).then_some(at);
        Self::validate(&new, table, at)?;
        let policies = matches!(table, Table::Policy | Table::SecurityGroup | Table::Analyzer | Table::Vif);
        let reply = self.commit(new, policies)?;
        self.journal(key, obj);
        Ok(reply)
    }

    /// `reload`: the configuration file read again, with the runtime-programmed objects on
    /// top (they stay), validated and applied as one change; the flows are re-evaluated.
    pub fn reload(&mut self) -> Result<ChangeReply, ProgramError> {
        let path = self.hooks.config_path.clone().ok_or("reload: no configuration file")?;
        let mut new = config::load(&path).map_err(|e| e.to_string())?;
        for (key, value) in &self.overlay {
            apply_overlay(&mut new, key, value.as_ref())
                .map_err(|e| format!("runtime object {key} does not apply to the file: {e}"))?;
        }
        config::validate(&new, "", "configuration with the runtime state").map_err(|e| e.to_string())?;
        self.commit(new, true)
    }

    /// Makes a validated desired state current: the FIB built, analyzers synced, ports
    /// opened and closed, the state published, vif records written, the flows followed.
    fn commit(&mut self, new: Config, policies: bool) -> Result<ChangeReply, ProgramError> {
        let fib = Arc::new(Fib::from_config(&new).map_err(|e| e.to_string())?);

        // Ports: vifs removed or whose device changed are closed after the publish (once no
        // lcore polls them); new ones are opened before it.
        let old_vifs: HashMap<u16, &VifConfig> = self.cfg.vifs.iter().map(|v| (v.get_ref().id, v.get_ref())).collect();
        let new_vifs: HashMap<u16, &VifConfig> = new.vifs.iter().map(|v| (v.get_ref().id, v.get_ref())).collect();
        let same_port = |a: &VifConfig, b: &VifConfig| {
            a.probe_args() == b.probe_args() && a.device == b.device && a.rx_queues == b.rx_queues
        };
        let gone: Vec<u16> = (old_vifs.iter())
            .filter(|(id, v)| new_vifs.get(id).is_none_or(|n| !same_port(v, n)))
            .map(|(id, _)| *id)
            .collect();
        let added: Vec<u16> = (new_vifs.iter())
            .filter(|(id, v)| old_vifs.get(id).is_none_or(|o| !same_port(o, v)))
            .map(|(id, _)| *id)
            .collect();
        let snap = self.cell.load();
        let mut ports: PortMap = (*snap.ports).clone();
        let mut closing = Vec::new();
        for id in &gone {
            if let Some(slot) = ports.detach(*id) {
                closing.push((*id, slot));
            }
        }
        let mut opened = Vec::new();
        if let Some(stats) = &self.hooks.stats {
            if let Some(id) = added.iter().find(|id| usize::from(**id) >= stats.max_vifs()) {
                return Err(format!(
                    "vif.id: {id} does not fit the stats region of this run (vif ids below {}; a restart makes room)",
                    stats.max_vifs()
                ));
            }
        }
        for id in &added {
            let vc = new_vifs[id];
            let Some(ops) = self.hooks.ports.as_mut() else {
                if snap.ports.lcore_rx.is_empty() {
                    // No data plane (an agent-only programmer): nothing to open.
                    continue;
                }
                return Err(format!("vif.device: cannot open {:?}: no data plane", vc.device));
            };
            match ops.open(vc) {
                Ok(slot) => {
                    opened.push((*id, slot.clone()));
                    ports.attach(*id, slot);
                }
                Err(e) => {
                    // Undo the ports opened by this request.
                    for (oid, slot) in opened {
                        let _ = ops.close(new_vifs[&oid], &slot);
                    }
                    return Err(format!("vif.device: {e}"));
                }
            }
        }
        if let Some(m) = &self.hooks.mirror {
            // New and changed analyzer entries (resolved again once the state is published,
            // below, with the others: their route or nexthop may have changed).
            if let Err(e) = m.sync_config(&new) {
                if let Some(ops) = self.hooks.ports.as_mut() {
                    for (oid, slot) in &opened {
                        let _ = ops.close(new_vifs[oid], slot);
                    }
                }
                return Err(format!("analyzer: {e}"));
            }
        }
        if let Some(f) = &mut self.hooks.before_publish {
            f(&new, &fib);
        }
        let generation = self.cell.publish(fib, Arc::new(ports));
        if let Some(m) = &self.hooks.mirror {
            m.republish_where(|_| true);
        }
        let mut reply = ChangeReply { changed: true, generation, ..ChangeReply::default() };
        if !closing.is_empty() {
            if !self.cell.wait_quiescent(generation, Duration::from_secs(2)) {
                tracing::warn!("vrouter: lcores did not take generation {generation} within 2 s; closing ports anyway");
            }
            for (id, slot) in &closing {
                if let (Some(ops), Some(vc)) = (self.hooks.ports.as_mut(), old_vifs.get(id)) {
                    match ops.close(vc, slot) {
                        Ok(0) => {}
                        Ok(n) => tracing::info!("vrouter: vif {id} removed; {n} packet(s) left in its RX queues freed"),
                        Err(e) => tracing::warn!("vrouter: vif {id}: closing its port: {e}"),
                    }
                }
            }
        }
        if let Some(stats) = &self.hooks.stats {
            for (id, slot) in &opened {
                if let Some(vc) = new_vifs.get(id) {
                    let mirror = (vc.mirror_to.as_deref())
                        .and_then(|n| self.hooks.mirror.as_ref().and_then(|m| m.find(n)))
                        .map_or(255, |i| i.raw());
                    if let Err(e) = publish_vif_record(stats, vc, slot, mirror) {
                        tracing::warn!("vrouter: vif {id}: stats record: {e}");
                    }
                }
            }
            for id in &gone {
                if !new_vifs.contains_key(id) {
                    stats.retire_vif(*id);
                }
            }
        }
        let deleted_vifs: Vec<u16> = gone.iter().copied().filter(|id| !new_vifs.contains_key(id)).collect();
        let deleted_ends: Vec<(u32, IpAddr)> = (deleted_vifs.iter().filter_map(|id| old_vifs.get(id)))
            .flat_map(|v| {
                let addrs = [v.ip.map(IpAddr::V4), v.ip6.map(IpAddr::V6)];
                addrs.into_iter().flatten().map(move |a| (v.vrf, a))
            })
            .collect();
        let deleted_vrfs: Vec<u32> = (self.cfg.vrfs.iter().map(|v| v.get_ref().id))
            .filter(|id| !new.vrfs.iter().any(|v| v.get_ref().id == *id))
            .collect();
        drop(old_vifs);
        drop(new_vifs);
        self.cfg = new;
        self.routes =
            self.cfg.routes.iter().enumerate().map(|(i, r)| ((r.get_ref().vrf, r.get_ref().prefix), i)).collect();
        let work = FlowWork::All {
            cfg: policies.then(|| Arc::new(self.cfg.clone())),
            deleted_vifs,
            deleted_ends,
            deleted_vrfs,
        };
        self.flow_work(work, &mut reply);
        Ok(reply)
    }

    /// Sends flow work to the agent and waits (up to 5 s) for its counts.
    fn flow_work(&self, work: FlowWork, reply: &mut ChangeReply) {
        let Some(agent) = &self.hooks.agent else { return };
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        if agent.send(FlowJob { work, reply: tx }).is_err() {
            return;
        }
        if let Ok((re, changed, deleted)) = rx.recv_timeout(Duration::from_secs(5)) {
            reply.reevaluated = re;
            reply.flows_changed = changed;
            reply.flows_deleted = deleted;
        }
    }

    /// `route_set`: every route is checked first (the batch is refused whole), then the
    /// batch is applied to a copy of the FIB sharing the untouched VRFs and published once.
    fn route_set(&mut self, routes: Vec<RouteConfig>) -> Result<ChangeReply, ProgramError> {
        let fib = self.cell.fib();
        let mut seen = HashMap::new();
        for (i, r) in routes.iter().enumerate() {
            if let Some((key, msg)) =
                config::route_problem(r, fib.vrf(r.vrf).is_some(), fib.nh_index(r.nexthop).is_some())
            {
                return Err(format!("routes[{i}].{key}: {msg}"));
            }
            if let Some(j) = seen.insert((r.vrf, r.prefix), i) {
                return Err(format!("routes[{i}].prefix: {} in vrf {} is also routes[{j}]", r.prefix, r.vrf));
            }
        }
        let mut new = (*fib).clone();
        let mut changed = Vec::new();
        let mut journal = Vec::new();
        for r in routes {
            let nh = fib.nh_index(r.nexthop).expect("checked above");
            let key = (r.vrf, r.prefix);
            match self.routes.get(&key) {
                Some(&i) if self.cfg.routes[i].get_ref().nexthop == r.nexthop => continue,
                Some(&i) => *self.cfg.routes[i].get_mut() = r.clone(),
                None => {
                    self.routes.insert(key, self.cfg.routes.len());
                    self.cfg.routes.push(Spanned::new(0..0, r.clone()));
                }
            }
            new.route_set(r.vrf, r.prefix, nh).map_err(|e| e.to_string())?;
            journal.push((route_key(r.vrf, r.prefix), Some(to_value(&r))));
            changed.push(key);
        }
        self.journal_batch(journal);
        self.publish_routes(new, changed)
    }

    /// `route_delete`: every route must exist (else nothing is deleted).
    fn route_delete(&mut self, keys: Vec<RouteKey>) -> Result<ChangeReply, ProgramError> {
        for (i, k) in keys.iter().enumerate() {
            if !self.routes.contains_key(&(k.vrf, k.prefix)) {
                return Err(format!("routes[{i}]: no route {} in vrf {}", k.prefix, k.vrf));
            }
        }
        let mut new = (*self.cell.fib()).clone();
        let mut changed = Vec::new();
        let mut journal = Vec::new();
        for k in keys {
            let Some(i) = self.routes.remove(&(k.vrf, k.prefix)) else { continue };
            // swap_remove: the last route moves into slot i.
            self.cfg.routes.swap_remove(i);
            if let Some(moved) = self.cfg.routes.get(i) {
                let m = moved.get_ref();
                self.routes.insert((m.vrf, m.prefix), i);
            }
            new.route_remove(k.vrf, k.prefix);
            journal.push((route_key(k.vrf, k.prefix), None));
            changed.push((k.vrf, k.prefix));
        }
        self.journal_batch(journal);
        self.publish_routes(new, changed)
    }

    fn publish_routes(&mut self, fib: Fib, changed: Vec<(u32, Prefix)>) -> Result<ChangeReply, ProgramError> {
        if changed.is_empty() {
            return Ok(ChangeReply { generation: self.cell.generation(), ..ChangeReply::default() });
        }
        let ports = self.cell.load().ports.clone();
        let fib = Arc::new(fib);
        let generation = self.cell.publish(fib.clone(), ports);
        if let Some(m) = &self.hooks.mirror {
            // The entries of analyzers whose route changed are resolved again (analyzers
            // are reached through the fabric vif's VRF).
            let set = ChangedPrefixes::new(&changed);
            if let Some(fvrf) = fib.vif_list().find(|v| v.kind == config::VifType::Fabric).map(|v| v.vrf) {
                m.republish_where(|ip| set.contains(fvrf, IpAddr::V4(ip)));
            }
        }
        let mut reply = ChangeReply { changed: true, generation, ..ChangeReply::default() };
        self.flow_work(FlowWork::Prefixes(changed), &mut reply);
        Ok(reply)
    }

    /// Journals a request's routes with one write (a `route_set` of 1000 routes used to
    /// open, append and close the journal 1000 times).
    fn journal_batch(&mut self, entries: Vec<(String, Option<Value>)>) {
        if entries.is_empty() {
            return;
        }
        let n = entries.len();
        let mut text = String::new();
        for (key, obj) in entries {
            if self.journal.is_some() {
                text.push_str(&json!({"key": key, "value": obj}).to_string());
                text.push('\n');
            }
            self.overlay.insert(key, obj);
        }
        let Some(j) = &mut self.journal else { return };
        // The rule of `journal` (compact once the file holds twice what it describes),
        // checked once per request.
        let res = if j.lines + n > 1024 && j.lines + n > 2 * self.overlay.len() {
            j.compact(&self.overlay)
        } else {
            j.append_text(&text, n)
        };
        if let Err(e) = res {
            // Once per programming request: limited.
            logging::rate_limited!(
                WARN,
                "vrouter: {}: {e} (runtime state may not survive a restart)",
                j.path.display()
            );
        }
    }

    fn journal(&mut self, key: &str, obj: Option<Value>) {
        self.journal_batch(vec![(key.to_string(), obj)]);
    }

    fn vif_dump(&self) -> Vec<VifEntry> {
        let snap = self.cell.load();
        let mut v: Vec<VifEntry> = (self.cfg.vifs.iter().map(|v| v.get_ref()))
            .map(|v| VifEntry {
                config: to_value(v),
                port: snap.ports.port(v.id).map(|p| p.port),
                runtime: self.overlay.contains_key(&format!("vif/{}", v.id)),
            })
            .collect();
        v.sort_by_key(|e| e.config.get("id").and_then(Value::as_u64));
        v
    }

    fn vrf_dump(&self) -> Vec<VrfEntry> {
        let fib = self.cell.fib();
        let mut out: Vec<VrfEntry> = (self.cfg.vrfs.iter().map(|v| v.get_ref()))
            .map(|c| {
                let v = fib.vrf(c.id);
                VrfEntry {
                    id: c.id,
                    name: c.name.clone(),
                    vxlan_vni: c.vxlan_vni,
                    routes_v4: v.map_or(0, |v| v.v4.len() as u64),
                    routes_v6: v.map_or(0, |v| v.v6.len() as u64),
                    bridge_entries: v.map_or(0, |v| v.bridge.len() as u64),
                    vifs: fib.vif_list().filter(|x| x.vrf == c.id).map(|x| x.id).collect(),
                }
            })
            .collect();
        out.sort_by_key(|v| v.id);
        out
    }

    fn route_dump(&self, vrf: u32, family: Family) -> Result<Vec<RouteEntry>, ProgramError> {
        let fib = self.cell.fib();
        let v = fib.vrf(vrf).ok_or_else(|| format!("vrf: vrf {vrf} is not defined"))?;
        let mut out = Vec::new();
        match family {
            Family::Inet => {
                let mut r: Vec<_> = v.v4.iter().collect();
                r.sort();
                for (a, len, nh) in r {
                    out.push(route_entry(&fib, vrf, "inet", format!("{}/{len}", std::net::Ipv4Addr::from(a)), len, nh));
                }
            }
            Family::Inet6 => {
                let mut r: Vec<_> = v.v6.iter().collect();
                r.sort();
                for (a, len, nh) in r {
                    out.push(route_entry(
                        &fib,
                        vrf,
                        "inet6",
                        format!("{}/{len}", std::net::Ipv6Addr::from(a)),
                        len,
                        nh,
                    ));
                }
            }
            Family::Bridge => {
                let mut r: Vec<_> = v.bridge.iter().map(|(k, nh)| (*k, *nh)).collect();
                r.sort();
                for (k, nh) in r {
                    let b = k.to_be_bytes();
                    let mac = Mac([b[2], b[3], b[4], b[5], b[6], b[7]]);
                    out.push(route_entry(&fib, vrf, "bridge", mac.to_string(), 48, nh));
                }
            }
        }
        Ok(out)
    }

    fn route_lookup(&self, vrf: u32, addr: &str) -> Result<Option<RouteEntry>, ProgramError> {
        let fib = self.cell.fib();
        let v = fib.vrf(vrf).ok_or_else(|| format!("vrf: vrf {vrf} is not defined"))?;
        if let Ok(ip) = addr.parse::<IpAddr>() {
            return Ok(match ip {
                IpAddr::V4(a) => v.v4.lookup(u32::from(a)).map(|(nh, len)| {
                    let net = crate::fib::PairPrefix::v4(a, len).net;
                    route_entry(&fib, vrf, "inet", format!("{}/{len}", std::net::Ipv4Addr::from(net)), len, nh)
                }),
                IpAddr::V6(a) => v.v6.lookup(u128::from(a)).map(|(nh, len)| {
                    let net = crate::fib::PairPrefix::v6(a, len).net;
                    route_entry(&fib, vrf, "inet6", format!("{}/{len}", std::net::Ipv6Addr::from(net)), len, nh)
                }),
            });
        }
        let mac: Mac = addr.parse().map_err(|_| format!("addr: {addr:?} is neither an IP address nor a MAC"))?;
        Ok(v.bridge_lookup(&mac.0).map(|nh| route_entry(&fib, vrf, "bridge", mac.to_string(), 48, nh)))
    }

    fn info(&self) -> InfoReply {
        let fib = self.cell.fib();
        let vrfs = fib.vrfs.iter().flatten();
        let (mut routes, mut bridge) = (0u64, 0u64);
        for v in vrfs {
            routes += (v.v4.len() + v.v6.len()) as u64;
            bridge += v.bridge.len() as u64;
        }
        let (flow_entries, flow_overflow_entries, flows_active) = match &self.hooks.flows {
            Some(t) => {
                let h = t.header();
                (u64::from(h.main_entries), u64::from(h.overflow_entries), t.iter_active().count() as u64)
            }
            None => (0, 0, 0),
        };
        InfoReply {
            version: env!("CARGO_PKG_VERSION").into(),
            build: format!(
                "{} {}-{}",
                if cfg!(debug_assertions) { "debug" } else { "release" },
                std::env::consts::ARCH,
                std::env::consts::OS
            ),
            api_version: API_VERSION,
            pid: std::process::id(),
            uptime_s: self.started.elapsed().as_secs(),
            lcores: self.hooks.lcores.clone(),
            flow_entries,
            flow_overflow_entries,
            flows_active,
            max_vifs: config::MAX_VIFS,
            max_vrfs: vrouter_abi::limits::MAX_VRFS as u32,
            max_nexthops: crate::fib::lpm::LPM4_MAX_NH,
            vifs: fib.vif_list().count() as u64,
            vrfs: fib.vrfs.iter().flatten().count() as u64,
            nexthops: fib.nexthops.len() as u64,
            routes,
            bridge_entries: bridge,
            labels: fib.labels.len() as u64,
            generation: self.cell.generation(),
            runtime_objects: self.overlay.len() as u64,
        }
    }
}

/// The tables a request may change (error field names and journal keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Table {
    Vif,
    Vrf,
    Nexthop,
    Label,
    Bridge,
    Analyzer,
    Policy,
    SecurityGroup,
}

impl Table {
    /// The TOML array name (`vif` for `[[vif]]`).
    fn key(self) -> &'static str {
        match self {
            Table::Vif => "vif",
            Table::Vrf => "vrf",
            Table::Nexthop => "nexthop",
            Table::Label => "label",
            Table::Bridge => "bridge",
            Table::Analyzer => "analyzer",
            Table::Policy => "network_policy",
            Table::SecurityGroup => "security_group",
        }
    }

    /// The request's field that carries the object.
    fn field(self) -> &'static str {
        match self {
            Table::Policy => "policy",
            t => t.key(),
        }
    }
}

fn to_value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn route_key(vrf: u32, p: Prefix) -> String {
    format!("route/{vrf}/{p}")
}

/// Adds `v` or replaces the entry `same` finds; `Ok(None)` when equal to what is there,
/// else the index it took.
fn upsert<T: Serialize>(
    list: &mut Vec<Spanned<T>>,
    v: T,
    same: impl Fn(&T, &T) -> bool,
) -> Result<Option<usize>, ProgramError> {
    match list.iter().position(|e| same(e.get_ref(), &v)) {
        Some(i) if to_value(list[i].get_ref()) == to_value(&v) => Ok(None),
        Some(i) => {
            *list[i].get_mut() = v;
            Ok(Some(i))
        }
        None => {
            list.push(Spanned::new(0..0, v));
            Ok(Some(list.len() - 1))
        }
    }
}

/// Removes the entry `is` finds; an error naming it when there is none.
fn remove<T>(
    list: &mut Vec<Spanned<T>>,
    what: &str,
    name: impl std::fmt::Display,
    is: impl Fn(&T) -> bool,
) -> Result<Option<usize>, ProgramError> {
    let i = list.iter().position(|e| is(e.get_ref())).ok_or_else(|| format!("{what} {name} is not defined"))?;
    list.remove(i);
    Ok(Some(usize::MAX))
}

fn route_entry(fib: &Fib, vrf: u32, family: &str, prefix: String, len: u8, nh: u32) -> RouteEntry {
    let n = fib.nexthop(nh);
    RouteEntry {
        vrf,
        family: family.into(),
        prefix,
        prefix_len: len,
        nexthop: n.map_or(0, Nexthop::id),
        label: match n {
            Some(Nexthop::Tunnel { label, .. }) => Some(*label),
            _ => None,
        },
        stitched_mac: match n {
            Some(Nexthop::Encap { dst_mac, .. }) => Some(Mac(*dst_mac).to_string()),
            // Only VXLAN carries an inner Ethernet header (MPLSoUDP carries the IP packet).
            Some(Nexthop::Tunnel { encap: TunnelEncap::Vxlan, inner_dst_mac, .. }) => {
                Some(Mac(*inner_dst_mac).to_string())
            }
            _ => None,
        },
    }
}

/// References to each nexthop index: routes, bridge entries, labels, ECMP groups.
fn nh_refs(fib: &Fib) -> Vec<u32> {
    let mut refs = vec![0u32; fib.nexthops.len()];
    let mut bump = |i: u32| {
        if let Some(r) = refs.get_mut(i as usize) {
            *r += 1;
        }
    };
    for v in fib.vrfs.iter().flatten() {
        v.v4.iter().for_each(|(_, _, nh)| bump(nh));
        v.v6.iter().for_each(|(_, _, nh)| bump(nh));
        v.bridge.values().for_each(|nh| bump(*nh));
    }
    fib.labels.values().for_each(|nh| bump(*nh));
    for n in &fib.nexthops {
        if let Nexthop::Ecmp { members, .. } = n {
            members.iter().for_each(|m| bump(*m));
        }
    }
    refs
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(" ")
}

fn nh_entry(fib: &Fib, idx: u32, refs: &[u32]) -> NexthopEntry {
    let n = &fib.nexthops[idx as usize];
    let vif_of = |v: u16| (Some(v), fib.vif(v).map(|x| x.vrf));
    let mut e = NexthopEntry {
        id: n.id(),
        kind: n.kind().key().to_string(),
        index: idx,
        refs: refs.get(idx as usize).copied().unwrap_or(0),
        vif: None,
        vrf: None,
        encap_data: None,
        encap: None,
        src_ip: None,
        dst_ip: None,
        label: None,
        members: Vec::new(),
    };
    match n {
        Nexthop::Encap { vif, dst_mac, src_mac, .. } => {
            (e.vif, e.vrf) = vif_of(*vif);
            e.encap_data = Some(hex(&[&dst_mac[..], &src_mac[..], &[0x08, 0x00]].concat()));
        }
        Nexthop::Tunnel { encap, vif, outer_dst_mac, outer_src_mac, src_ip, dst_ip, label, .. } => {
            (e.vif, e.vrf) = vif_of(*vif);
            e.encap_data = Some(hex(&[&outer_dst_mac[..], &outer_src_mac[..], &[0x08, 0x00]].concat()));
            e.encap = Some(to_value(encap).as_str().unwrap_or_default().to_string());
            e.src_ip = Some(*src_ip);
            e.dst_ip = Some(*dst_ip);
            e.label = Some(*label);
        }
        Nexthop::Receive { vif, .. } => (e.vif, e.vrf) = vif_of(*vif),
        Nexthop::Discard { .. } => {}
        Nexthop::Ecmp { members, .. } => {
            e.members = members.iter().filter_map(|m| fib.nexthop(*m)).map(Nexthop::id).collect();
        }
    }
    e
}

fn label_entry(l: &LabelConfig) -> LabelEntry {
    LabelEntry { label: l.label, nexthop: l.nexthop }
}

/// Writes the stats region's record of a vif added at runtime.
fn publish_vif_record(
    stats: &crate::stats::StatsRegion,
    v: &VifConfig,
    slot: &PortSlot,
    mirror_index: u8,
) -> Result<(), String> {
    let info = crate::vif_info::from_config(v, slot.port, slot.tx_queues, &slot.driver)
        .map_err(|e| e.to_string())?
        .port(slot.port, slot.rx_queues, slot.tx_queues)
        .mtu(u32::from(v.mtu.unwrap_or(1500)))
        .mirror(v.mirror_rx, v.mirror_tx, mirror_index);
    stats.set_vif(&info).map_err(|e| e.to_string())
}

/// The journal of runtime-programmed objects.
struct Journal {
    path: PathBuf,
    lines: usize,
}

impl Journal {
    /// Appends `lines` journal lines (`text`, newline-terminated) with one write.
    fn append_text(&mut self, text: &str, lines: usize) -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&self.path)?;
        f.write_all(text.as_bytes())?;
        self.lines += lines;
        Ok(())
    }

    /// Rewrites the journal as one line per object (temporary file, then rename).
    fn compact(&mut self, overlay: &BTreeMap<String, Option<Value>>) -> std::io::Result<()> {
        let tmp = self.path.with_extension("tmp");
        {
            let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
            for (k, v) in overlay {
                writeln!(f, "{}", json!({"key": k, "value": v}))?;
            }
            f.flush()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        self.lines = overlay.len();
        Ok(())
    }
}

/// Reads a journal: the last line of each key wins. A line that is not a journal entry
/// stops the reading there (a torn last write) and is reported.
fn read_journal(path: &Path) -> std::io::Result<BTreeMap<String, Option<Value>>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(e),
    };
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let entry: Result<Value, _> = serde_json::from_str(line);
        match entry.ok().and_then(|v| Some((v.get("key")?.as_str()?.to_string(), v.get("value")?.clone()))) {
            Some((k, v)) => {
                out.insert(k, (!v.is_null()).then_some(v));
            }
            None => {
                tracing::warn!("vrouter: {}:{}: not a journal entry; the rest is ignored", path.display(), n + 1);
                break;
            }
        }
    }
    Ok(out)
}

/// Applies the journal of `run_dir` to the configuration `cfg` read from the file: the
/// objects programmed at runtime come back (sets replace the file's entry of the same key,
/// deletes remove it), and the result is validated. On a journal that no longer fits the
/// file (validation fails), the journal is moved aside (`programmed.journal.rejected`), the
/// problem printed in one line, and the file's configuration returned unchanged.
pub fn restore(cfg: &Config, run_dir: &Path) -> (Config, usize) {
    let path = run_dir.join(JOURNAL_FILE);
    let overlay = match read_journal(&path) {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!("vrouter: cannot read {}: {e}; starting from the configuration file", path.display());
            return (cfg.clone(), 0);
        }
    };
    if overlay.is_empty() {
        return (cfg.clone(), 0);
    }
    let mut new = cfg.clone();
    let res = (|| -> Result<(), String> {
        for (key, value) in &overlay {
            apply_overlay(&mut new, key, value.as_ref()).map_err(|e| format!("{key}: {e}"))?;
        }
        config::validate(&new, "", "journal").map_err(|e| e.to_string())
    })();
    match res {
        Ok(()) => (new, overlay.len()),
        Err(e) => {
            let aside = run_dir.join(format!("{JOURNAL_FILE}.rejected"));
            let _ = std::fs::rename(&path, &aside);
            tracing::warn!(
                "vrouter: the runtime state in {} does not fit the configuration ({e}); moved to {}, starting from the file",
                path.display(),
                aside.display()
            );
            (cfg.clone(), 0)
        }
    }
}

fn apply_overlay(cfg: &mut Config, key: &str, value: Option<&Value>) -> Result<(), String> {
    fn set<T: DeserializeOwned + Serialize>(
        list: &mut Vec<Spanned<T>>,
        value: Option<&Value>,
        same: impl Fn(&T) -> bool,
    ) -> Result<(), String> {
        list.retain(|e| !same(e.get_ref()));
        if let Some(v) = value {
            list.push(Spanned::new(0..0, serde_json::from_value(v.clone()).map_err(|e| e.to_string())?));
        }
        Ok(())
    }
    // Policies and security groups have `Spanned` rules: through TOML (see `via_toml`).
    fn set_spanned<T: DeserializeOwned + Serialize>(
        list: &mut Vec<Spanned<T>>,
        value: Option<&Value>,
        same: impl Fn(&T) -> bool,
    ) -> Result<(), String> {
        list.retain(|e| !same(e.get_ref()));
        if let Some(v) = value {
            let t = via_toml(v).map_err(|(path, msg)| if path.is_empty() { msg } else { format!("{path}: {msg}") })?;
            list.push(Spanned::new(0..0, t));
        }
        Ok(())
    }
    let parts: Vec<&str> = key.split('/').collect();
    let num = |s: &str| s.parse::<u64>().map_err(|_| format!("bad key part {s:?}"));
    match parts.as_slice() {
        ["vif", id] => {
            let id = num(id)?;
            set(&mut cfg.vifs, value, |v| u64::from(v.id) == id)
        }
        ["vrf", id] => {
            let id = num(id)?;
            set(&mut cfg.vrfs, value, |v| u64::from(v.id) == id)
        }
        ["nexthop", id] => {
            let id = num(id)?;
            set(&mut cfg.nexthops, value, |v| u64::from(v.id()) == id)
        }
        ["label", l] => {
            let l = num(l)?;
            set(&mut cfg.labels, value, |v| u64::from(v.label) == l)
        }
        ["bridge", vrf, mac] => {
            let (vrf, mac) = (num(vrf)?, mac.to_string());
            set(&mut cfg.bridge, value, |v| u64::from(v.vrf) == vrf && v.mac.to_string() == mac)
        }
        ["route", vrf, rest @ ..] => {
            let vrf = num(vrf)?;
            let p: Prefix = rest.join("/").parse().map_err(|e: String| e)?;
            set(&mut cfg.routes, value, |r| u64::from(r.vrf) == vrf && r.prefix == p)
        }
        ["analyzer", n] => set(&mut cfg.analyzers, value, |v| v.name == *n),
        ["network_policy", n] => set_spanned(&mut cfg.network_policies, value, |v| v.name == *n),
        ["security_group", n] => set_spanned(&mut cfg.security_groups, value, |v| v.name == *n),
        _ => Err("unknown object kind".into()),
    }
}

/// Flow pairs to re-evaluate for a route change: those whose source or destination falls in
/// one of the changed prefixes of their VRF. One LPM of the changed prefixes per VRF.
#[derive(Default)]
pub struct ChangedPrefixes {
    // The generic LPM (a map per prefix length): no 384 KiB direct stage to build per batch.
    v4: HashMap<u32, Lpm<u32>>,
    v6: HashMap<u32, Lpm<u128>>,
}

impl ChangedPrefixes {
    /// The set of `changed` (VRF, prefix) pairs.
    pub fn new(changed: &[(u32, Prefix)]) -> ChangedPrefixes {
        let mut s = ChangedPrefixes::default();
        for (vrf, p) in changed {
            match p.addr {
                IpAddr::V4(a) => {
                    s.v4.entry(*vrf).or_default().insert(u32::from(a), p.len, 0);
                }
                IpAddr::V6(a) => {
                    s.v6.entry(*vrf).or_default().insert(u128::from(a), p.len, 0);
                }
            }
        }
        s
    }

    /// Whether `addr` in `vrf` lies in a changed prefix.
    pub fn contains(&self, vrf: u32, addr: IpAddr) -> bool {
        match addr {
            IpAddr::V4(a) => self.v4.get(&vrf).is_some_and(|l| l.lookup(u32::from(a)).is_some()),
            IpAddr::V6(a) => self.v6.get(&vrf).is_some_and(|l| l.lookup(u128::from(a)).is_some()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = r#"
[eal]
forwarding_cores = [1]
[vrouter]
run_dir = "/tmp/unused"
router_ip = "10.0.0.1"
router_mac = "02:00:00:00:00:01"
[[vif]]
id = 0
name = "fabric0"
type = "fabric"
device = "net_pcap0"
mac = "02:00:00:00:00:02"
vrf = 0
[[vif]]
id = 1
name = "tap1"
type = "virtual"
device = "net_pcap1"
mac = "02:00:00:00:00:03"
vrf = 1
[[vrf]]
id = 0
name = "fabric"
[[vrf]]
id = 1
name = "vn1"
[[nexthop]]
id = 1
type = "encap"
vif = 1
dst_mac = "02:00:00:00:01:01"
[[nexthop]]
id = 2
type = "discard"
[[route]]
vrf = 1
prefix = "10.1.0.0/16"
nexthop = 1
"#;

    fn programmer(run_dir: Option<&Path>) -> (Programmer, Arc<FibCell>) {
        let cfg = config::parse(CFG, "t.toml").unwrap();
        let cfg = match run_dir {
            Some(d) => restore(&cfg, d).0,
            None => cfg,
        };
        let fib = Arc::new(Fib::from_config(&cfg).unwrap());
        let cell = Arc::new(FibCell::new(fib, PortMap::default(), 1));
        let mut p = Programmer::new(cfg, cell.clone(), run_dir, Hooks::default());
        p.set_hooks(Hooks::default());
        (p, cell)
    }

    fn err(p: &mut Programmer, v: Value) -> String {
        let r = p.serve(&v);
        assert_eq!(r["ok"], false, "{v} -> {r}");
        r["error"].as_str().unwrap().to_string()
    }

    #[test]
    fn decode_errors_name_the_field_path() {
        let (mut p, _) = programmer(None);
        let e = err(
            &mut p,
            json!({"cmd": "vif_set", "vif": {"id": 5, "name": "x", "type": "virtual", "device": "d", "mac": "zz", "vrf": 1}}),
        );
        assert!(e.starts_with("vif.mac: "), "{e}");
        assert_eq!(err(&mut p, json!({"cmd": "route_set"})), "routes: missing");
        let e = err(&mut p, json!({"cmd": "route_set", "routes": [{"vrf": 1, "prefix": "10.2.0.0/16"}]}));
        assert!(e.starts_with("routes.[0]: missing field `nexthop`") || e.contains("nexthop"), "{e}");
        let e = err(&mut p, json!({"cmd": "route_dump", "vrf": 1, "version": 2}));
        assert!(e.starts_with("version: API version 2"), "{e}");
        assert_eq!(err(&mut p, json!({"cmd": "nope"})), "unknown command \"nope\"");
    }

    #[test]
    fn a_route_batch_is_refused_whole_and_applied_in_one_publish() {
        let (mut p, cell) = programmer(None);
        let g = cell.generation();
        let e = err(
            &mut p,
            json!({"cmd": "route_set", "routes": [
                {"vrf": 1, "prefix": "10.2.0.0/16", "nexthop": 2},
                {"vrf": 1, "prefix": "10.3.0.1/16", "nexthop": 2}]}),
        );
        assert_eq!(e, "routes[1].prefix: 10.3.0.1/16 has host bits set; the prefix is 10.3.0.0/16");
        assert_eq!(cell.generation(), g, "nothing published");
        assert!(cell.fib().vrf(1).unwrap().route_v4("10.2.0.1".parse().unwrap()).is_none());
        let r = p.serve(&json!({"cmd": "route_set", "routes": [
            {"vrf": 1, "prefix": "10.2.0.0/16", "nexthop": 2},
            {"vrf": 1, "prefix": "10.1.0.0/16", "nexthop": 2}]}));
        assert_eq!(
            (r["ok"].clone(), r["changed"].clone(), r["generation"].clone()),
            (json!(true), json!(true), json!(g + 1))
        );
        let fib = cell.fib();
        let v = fib.vrf(1).unwrap();
        assert_eq!(v.route_v4("10.1.2.3".parse().unwrap()), fib.nh_index(2));
        // Again: nothing changes, nothing is published.
        let r = p.serve(&json!({"cmd": "route_set", "routes": [{"vrf": 1, "prefix": "10.2.0.0/16", "nexthop": 2}]}));
        assert_eq!((r["changed"].clone(), cell.generation()), (json!(false), g + 1));
        // Deletes: all must exist.
        let e = err(
            &mut p,
            json!({"cmd": "route_delete", "routes": [{"vrf": 1, "prefix": "10.2.0.0/16"}, {"vrf": 1, "prefix": "10.9.0.0/16"}]}),
        );
        assert_eq!(e, "routes[1]: no route 10.9.0.0/16 in vrf 1");
        assert!(cell.fib().vrf(1).unwrap().route_v4("10.2.0.1".parse().unwrap()).is_some());
        let r = p.serve(&json!({"cmd": "route_delete", "routes": [{"vrf": 1, "prefix": "10.2.0.0/16"}]}));
        assert_eq!(r["changed"], true);
        let dump = p.serve(&json!({"cmd": "route_dump", "vrf": 1}));
        let prefixes: Vec<&str> =
            dump["routes"].as_array().unwrap().iter().map(|r| r["prefix"].as_str().unwrap()).collect();
        assert_eq!(prefixes, ["10.1.0.0/16"]);
    }

    #[test]
    fn objects_in_use_cannot_be_deleted_and_a_refusal_changes_nothing() {
        let (mut p, cell) = programmer(None);
        let g = cell.generation();
        let e = err(&mut p, json!({"cmd": "nh_delete", "id": 1}));
        assert_eq!(e, "route[0].nexthop: nexthop 1 is not defined");
        let e = err(&mut p, json!({"cmd": "vrf_delete", "id": 1}));
        assert!(e.contains("vrf 1 is not defined") || e.contains("VRF 1"), "{e}");
        let e = err(&mut p, json!({"cmd": "nh_delete", "id": 77}));
        assert_eq!(e, "nexthop 77 is not defined");
        let e = err(&mut p, json!({"cmd": "label_set", "label": {"label": 3, "nexthop": 1}}));
        assert!(e.starts_with("label.label: "), "{e}");
        assert_eq!(cell.generation(), g);
        assert_eq!(p.config().nexthops.len(), 2);
        // A nexthop change rebuilds the FIB: the route now leads to the new MAC.
        let r = p.serve(
            &json!({"cmd": "nh_set", "nexthop": {"id": 1, "type": "encap", "vif": 1, "dst_mac": "02:00:00:00:01:09"}}),
        );
        assert_eq!(r["changed"], true, "{r}");
        let nh = p.serve(&json!({"cmd": "nh_get", "id": 1}));
        assert_eq!(nh["nexthop"]["encap_data"], "02 00 00 00 01 09 02 00 00 00 00 01 08 00", "{nh}");
        assert_eq!(nh["nexthop"]["refs"], 1);
        let lookup = p.serve(&json!({"cmd": "route_lookup", "vrf": 1, "addr": "10.1.200.1"}));
        assert_eq!(lookup["route"]["prefix"], "10.1.0.0/16");
        assert_eq!(lookup["route"]["stitched_mac"], "02:00:00:00:01:09");
    }

    #[test]
    fn the_journal_restores_runtime_objects_and_is_compacted() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut p, _) = programmer(Some(dir.path()));
            assert_eq!(p.serve(&json!({"cmd": "vrf_set", "vrf": {"id": 2, "name": "blue"}}))["ok"], true);
            assert_eq!(
                p.serve(&json!({"cmd": "route_set", "routes": [{"vrf": 2, "prefix": "10.9.0.0/16", "nexthop": 2}]}))
                    ["ok"],
                true
            );
            assert_eq!(
                p.serve(&json!({"cmd": "route_delete", "routes": [{"vrf": 1, "prefix": "10.1.0.0/16"}]}))["ok"],
                true
            );
            // Many changes of one route: the journal is compacted to one line per object.
            for i in 0..3000 {
                let nh = if i % 2 == 0 { 1 } else { 2 };
                p.serve(&json!({"cmd": "route_set", "routes": [{"vrf": 1, "prefix": "10.4.0.0/16", "nexthop": nh}]}));
            }
        }
        let lines = std::fs::read_to_string(dir.path().join(JOURNAL_FILE)).unwrap().lines().count();
        assert!(lines < 2100, "the journal was not compacted: {lines} lines");
        let (p, cell) = programmer(Some(dir.path()));
        let fib = cell.fib();
        assert!(fib.vrf(2).is_some_and(|v| v.route_v4("10.9.1.1".parse().unwrap()) == fib.nh_index(2)));
        assert!(
            fib.vrf(1).unwrap().route_v4("10.1.0.1".parse().unwrap()).is_none(),
            "the deleted file route stays deleted"
        );
        assert_eq!(fib.vrf(1).unwrap().route_v4("10.4.0.1".parse().unwrap()), fib.nh_index(2), "the last change wins");
        assert_eq!(p.info().runtime_objects, 4);
    }

    /// A policy (and a security group) with rules is set at run time, its errors name the
    /// rule's field, and it comes back from the journal: their rules are `Spanned` in the
    /// configuration, which only the TOML deserializer builds.
    #[test]
    fn policies_and_security_groups_with_rules_are_set_and_journaled() {
        let dir = tempfile::tempdir().unwrap();
        let policy = json!({"name": "web", "vns": ["vn1"], "rule": [
            {"uuid": "bbbbbbbb-0000-4000-8000-000000000001", "protocol": "udp", "dst_ports": "80", "action": "pass"},
            {"uuid": "bbbbbbbb-0000-4000-8000-000000000002", "action": "deny"},
        ]});
        let sg =
            json!({"name": "sg1", "rule": [{"uuid": "cccccccc-0000-4000-8000-000000000001", "direction": "ingress"}]});
        {
            let (mut p, _) = programmer(Some(dir.path()));
            let r = p.serve(&json!({"cmd": "policy_set", "policy": policy}));
            assert_eq!(r["ok"], true, "{r}");
            let mut bad = policy.clone();
            bad["rule"][1]["acton"] = json!("deny");
            let e = err(&mut p, json!({"cmd": "policy_set", "policy": bad}));
            assert!(e.starts_with("policy.rule[1]") && e.contains("unknown field `acton`"), "{e}");
            let r = p.serve(&json!({"cmd": "security_group_set", "security_group": sg}));
            assert_eq!(r["ok"], true, "{r}");
        }
        let cfg = config::parse(CFG, "t.toml").unwrap();
        let (restored, n) = restore(&cfg, dir.path());
        assert_eq!(n, 2);
        let p = restored.network_policies.iter().find(|p| p.get_ref().name == "web").expect("restored");
        let uuids: Vec<&str> = p.get_ref().rules.iter().map(|r| r.get_ref().uuid.as_str()).collect();
        assert_eq!(uuids, ["bbbbbbbb-0000-4000-8000-000000000001", "bbbbbbbb-0000-4000-8000-000000000002"]);
        assert_eq!(
            restored.security_groups.iter().find(|g| g.get_ref().name == "sg1").unwrap().get_ref().rules.len(),
            1
        );
    }

    #[test]
    fn a_journal_that_does_not_fit_the_file_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(JOURNAL_FILE),
            "{\"key\":\"route/1/10.5.0.0/16\",\"value\":{\"vrf\":1,\"prefix\":\"10.5.0.0/16\",\"nexthop\":42}}\n",
        )
        .unwrap();
        let cfg = config::parse(CFG, "t.toml").unwrap();
        let (restored, n) = restore(&cfg, dir.path());
        assert_eq!(n, 0);
        assert_eq!(restored.routes.len(), cfg.routes.len());
        assert!(dir.path().join(format!("{JOURNAL_FILE}.rejected")).exists());
        assert!(!dir.path().join(JOURNAL_FILE).exists());
    }

    #[test]
    fn changed_prefixes_select_flows_by_source_or_destination() {
        let set = ChangedPrefixes::new(&[(1, "10.2.0.0/16".parse().unwrap()), (2, "fd00::/64".parse().unwrap())]);
        assert!(set.contains(1, "10.2.3.4".parse().unwrap()));
        assert!(!set.contains(2, "10.2.3.4".parse().unwrap()));
        assert!(set.contains(2, "fd00::9".parse().unwrap()));
        assert!(!set.contains(1, "10.3.0.1".parse().unwrap()));
    }
}
