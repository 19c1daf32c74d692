//! The control side of tracing: the list of trace requests (persisted in the run
//! directory), the control-socket commands that manage them, and the compiled set of enabled
//! requests the forwarding lcores read.
//!
//! # Who reads which records
//!
//! The records in the trace region (`<run_dir>/trace`, owner-only) are read by the operator
//! straight from the file, or through here (`trace_records`, the REST `GET
//! /traces/<id>/records`), where a tenant's token limits them to the traces of its own
//! requests:
//!
//! - A trace started on this vRouter names its request in its `Matched` step: it belongs to
//!   that request, and is readable with the token of the request's project while the request
//!   exists (a removed request's traces are the operator's only; a tenant cannot choose a
//!   request id, so it cannot take over the id of a removed request of another tenant).
//! - A trace continued here from another vRouter (it came in with a trace mark) carries only
//!   the trace id: the request that started it lives on the other vRouter. It is shown under
//!   each request of this vRouter whose condition holds for the packet as it came in
//!   (decapsulated, on the fabric vif) and whose scope holds the vif the packet was delivered
//!   or headed to (the egress vif, else the vif of the route's nexthop). So a tenant sees
//!   the continuation of a trace when it asks this vRouter for such packets on its own vifs,
//!   that is for traffic to its own VMs, and the two halves share the trace id; a packet that
//!   did not get as far as a route (a drop before) is the operator's only.
//!
//! The data plane sees two things: `enabled`, a word that is non-zero while at least one
//! request is enabled (read once per burst), and the published active set with its `epoch`
//! (re-read by an lcore only when the epoch changes).

use super::region::{RegionInfo, TraceReader, TraceRegionError};
use super::request::{
    bad, new_uuid, parse_uuid, Condition, FieldError, IpFields, Limit, Matcher, PacketFields, Scope, TraceRequest,
};
use super::step::Step;
use super::view::{self, Trace};
use crate::config::VifType;
use crate::control::protocol::{cmd_of, ProtocolError, TraceAdd, TraceAuth, TraceCommand, TraceId};
use crate::fib::publish::FibCell;
use crate::fib::{Fib, Nexthop};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// File of the persisted requests inside the run directory.
pub const REQUESTS_FILE_NAME: &str = "trace-requests.json";

/// An enabled request as the data plane uses it.
#[derive(Debug)]
pub struct Active {
    /// The request's UUID (recorded with every traced packet, names the trace it is shown under).
    pub uuid: [u8; 16],
    /// The compiled condition and scope.
    pub matcher: Matcher,
    /// The request's limit (packets or flows).
    pub limit: Limit,
    /// What is left of the limit (packets or flows), shared by every lcore.
    pub budget: Arc<AtomicU32>,
}

/// What the lcores share with the control side. Aligned to two cache lines so that no other
/// heap object shares its line: `enabled` is read by every lcore on every burst, and a
/// neighbour written by another thread would make that read a coherence miss.
#[derive(Debug)]
#[repr(align(128))]
pub struct Published {
    /// Non-zero while a request is enabled: the one word the data plane reads per burst.
    pub enabled: AtomicU32,
    /// Bumped whenever the active set changes.
    pub epoch: AtomicU64,
    set: Mutex<Arc<Vec<Active>>>,
    next_trace: AtomicU64,
    trace_base: u32,
}

impl Published {
    /// No request enabled; trace ids start at a random 32-bit base.
    pub fn new() -> Published {
        // A random start: ids of different vRouters do not collide in practice, and an id
        // fits the 32 bits of the trace mark a packet carries to the next vRouter.
        let b = parse_uuid(&new_uuid()).unwrap_or([0; 16]);
        Published {
            enabled: AtomicU32::new(0),
            epoch: AtomicU64::new(0),
            set: Mutex::new(Arc::new(Vec::new())),
            next_trace: AtomicU64::new(0),
            trace_base: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        }
    }

    /// The current active set (taken by an lcore when the epoch changed).
    pub fn active(&self) -> Arc<Vec<Active>> {
        self.set.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A new trace id: 32 bits (what the trace mark carries across hosts), never 0.
    pub fn new_trace_id(&self) -> u64 {
        loop {
            let n = self.next_trace.fetch_add(1, Ordering::Relaxed) as u32;
            let id = self.trace_base.wrapping_add(n);
            if id != 0 {
                return u64::from(id);
            }
        }
    }

    fn publish(&self, set: Vec<Active>) {
        let n = set.len() as u32;
        *self.set.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(set);
        self.epoch.fetch_add(1, Ordering::Release);
        self.enabled.store(n, Ordering::Release);
    }
}

impl Default for Published {
    fn default() -> Self {
        Published::new()
    }
}

/// Why the persisted requests could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The requests file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid JSON of the expected shape, or of another version.
    #[error("{}: {msg}", path.display())]
    Format {
        /// The requests file.
        path: PathBuf,
        /// What is wrong with it.
        msg: String,
    },
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Stored {
    version: u32,
    requests: Vec<TraceRequest>,
    /// What was left of each enabled request's limit when the file was written, by request
    /// id: a restarted vRouter continues from it instead of tracing the whole limit again.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    remaining: std::collections::BTreeMap<String, u32>,
}

/// A tenant (project): its token and the VNs (and so the vifs) it may trace.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// Tenant name (`[[tenant]].name`): the project its requests are created under.
    pub name: String,
    /// Bearer token the tenant authenticates with.
    pub token: String,
    /// The VNs whose vifs the tenant may trace.
    pub vns: Vec<String>,
}

/// Who sent a command: the operator (the control socket is owner-only) or a tenant.
#[derive(Debug, Clone, Copy)]
enum Caller<'a> {
    Operator,
    Tenant(&'a Tenant),
}

/// The trace requests of a running vRouter.
pub struct TraceControl {
    state: Mutex<Vec<(TraceRequest, Arc<AtomicU32>)>>,
    path: PathBuf,
    /// The forwarding state vifs and nexthops are looked up in (the latest published).
    cell: Arc<FibCell>,
    published: Arc<Published>,
    tenants: Vec<Tenant>,
    /// The budgets as last written by [`TraceControl::save_budgets`].
    saved_budgets: Mutex<Vec<u32>>,
}

impl TraceControl {
    fn fib(&self) -> Arc<Fib> {
        self.cell.fib()
    }

    /// Loads the requests persisted in `run_dir` (none when the file does not exist) and
    /// publishes the enabled ones. A request that no longer compiles against this
    /// configuration (its vif or VN is gone) is kept, disabled, with a warning on stderr.
    pub fn load(run_dir: &Path, cell: Arc<FibCell>) -> Result<TraceControl, StoreError> {
        let path = run_dir.join(REQUESTS_FILE_NAME);
        let mut reqs = Vec::new();
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let s: Stored = serde_json::from_str(&text)
                    .map_err(|e| StoreError::Format { path: path.clone(), msg: e.to_string() })?;
                if s.version != 1 {
                    return Err(StoreError::Format { path, msg: format!("version {} (expected 1)", s.version) });
                }
                reqs = s
                    .requests
                    .into_iter()
                    .map(|r| {
                        let left = s.remaining.get(&r.id).copied();
                        (r, left)
                    })
                    .collect();
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::Io { path, source: e }),
        }
        let ctl = TraceControl {
            saved_budgets: Mutex::new(Vec::new()),
            state: Mutex::new(Vec::new()),
            path,
            cell,
            published: Arc::new(Published::new()),
            tenants: Vec::new(),
        };
        {
            let mut st = ctl.lock();
            for (mut r, left) in reqs {
                if r.enabled {
                    if let Err(e) = ctl.compile(&r) {
                        tracing::warn!("vrouter: trace request {} disabled: {e}", r.id);
                        r.enabled = false;
                    }
                }
                let full = limit_count(r.limit);
                let budget = Arc::new(AtomicU32::new(left.map_or(full, |l| l.min(full))));
                st.push((r, budget));
            }
            ctl.republish(&st);
        }
        Ok(ctl)
    }

    /// The tenants whose tokens are accepted (`[[tenant]]`).
    pub fn with_tenants(mut self, tenants: Vec<Tenant>) -> TraceControl {
        self.tenants = tenants;
        self
    }

    /// The tenants of a configuration.
    pub fn tenants_of(cfg: &crate::config::Config) -> Vec<Tenant> {
        cfg.tenants
            .iter()
            .map(|t| {
                let t = t.get_ref();
                Tenant { name: t.name.clone(), token: t.token.clone(), vns: t.vns.clone() }
            })
            .collect()
    }

    fn caller(&self, token: Option<&str>) -> Result<Caller<'_>, FieldError> {
        let Some(t) = token else { return Ok(Caller::Operator) };
        // Compared in full (no early exit on the first differing byte).
        let same = |a: &str| a.len() == t.len() && a.bytes().zip(t.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0;
        self.tenants
            .iter()
            .find(|x| same(&x.token))
            .map(Caller::Tenant)
            .ok_or_else(|| bad("token", "not a valid tenant token"))
    }

    /// Whether the caller of `token` (none: the operator) may simulate a packet entering
    /// `vif`: a tenant only on the vifs of its own VNs. `Err((field, message))`.
    pub fn may_simulate(&self, token: Option<&str>, vif: u16) -> Result<(), (&'static str, String)> {
        match self.caller(token).map_err(|e| (e.field, e.to_string()))? {
            Caller::Operator => Ok(()),
            Caller::Tenant(t) => {
                let fib = self.fib();
                let vn = fib.vif(vif).and_then(|v| v.vn_name.as_deref());
                if vn.is_some_and(|vn| t.vns.iter().any(|x| x == vn)) {
                    Ok(())
                } else {
                    Err(("vif", format!("vif: vif {vif} is not in a VN of tenant {}", t.name)))
                }
            }
        }
    }

    /// A tenant may only trace on the vifs of its own VNs.
    fn check_tenant(&self, t: &Tenant, r: &TraceRequest) -> Result<(), FieldError> {
        let own_vif = |id: u16| {
            self.fib().vif(id).and_then(|v| v.vn_name.as_deref()).is_some_and(|vn| t.vns.iter().any(|x| x == vn))
        };
        match &r.scope {
            Scope::Vrouter => {
                return Err(bad(
                    "scope",
                    format!("tenant {} may only trace its own vifs and VNs (give a vif or vn scope)", t.name),
                ))
            }
            Scope::Vif { vif } if !own_vif(*vif) => {
                return Err(bad("scope.vif", format!("vif {vif} is not in a virtual network of tenant {}", t.name)))
            }
            Scope::Vn { vn } if !t.vns.iter().any(|x| x == vn) => {
                return Err(bad("scope.vn", format!("{vn:?} is not a virtual network of tenant {}", t.name)))
            }
            _ => {}
        }
        if let Some(v) = r.condition.ingress_vif {
            if !own_vif(v) {
                return Err(bad("ingress_vif", format!("vif {v} is not in a virtual network of tenant {}", t.name)));
            }
        }
        Ok(())
    }

    fn visible(caller: Caller<'_>, r: &TraceRequest) -> bool {
        match caller {
            Caller::Operator => true,
            Caller::Tenant(t) => r.project.as_deref() == Some(t.name.as_str()),
        }
    }

    /// The state the lcores share: the enabled flag and the active set (for their `TraceLcore`s).
    pub fn published(&self) -> Arc<Published> {
        self.published.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(TraceRequest, Arc<AtomicU32>)>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn compile(&self, r: &TraceRequest) -> Result<Matcher, FieldError> {
        let fib = &self.fib();
        Matcher::compile(
            r,
            |v| fib.vif(v).is_some(),
            |vn| fib.vif_list().filter(|v| v.vn_name.as_deref() == Some(vn)).map(|v| v.id).collect(),
        )
    }

    fn republish(&self, st: &[(TraceRequest, Arc<AtomicU32>)]) {
        let mut set = Vec::new();
        for (r, budget) in st.iter().filter(|(r, _)| r.enabled) {
            let (Ok(matcher), Some(uuid)) = (self.compile(r), parse_uuid(&r.id)) else { continue };
            set.push(Active { uuid, matcher, limit: r.limit, budget: budget.clone() });
        }
        self.published.publish(set);
    }

    /// Writes the requests and what is left of their limits when a limit moved since the
    /// last write (the agent calls it on its housekeeping tick and when it stops): a restart,
    /// even after a crash, does not trace a spent limit again (at most what one tick traced).
    pub fn save_budgets(&self) -> Result<(), StoreError> {
        let st = self.lock();
        let now: Vec<u32> = st.iter().map(|(_, b)| b.load(Ordering::Relaxed)).collect();
        let mut saved = self.saved_budgets.lock().unwrap_or_else(|p| p.into_inner());
        if *saved == now {
            return Ok(());
        }
        self.save(&st)?;
        *saved = now;
        Ok(())
    }

    fn save(&self, st: &[(TraceRequest, Arc<AtomicU32>)]) -> Result<(), StoreError> {
        let remaining =
            st.iter().filter(|(r, _)| r.enabled).map(|(r, b)| (r.id.clone(), b.load(Ordering::Relaxed))).collect();
        let s = Stored { version: 1, requests: st.iter().map(|(r, _)| r.clone()).collect(), remaining };
        let text = serde_json::to_string_pretty(&s).expect("requests serialize");
        let tmp = self.path.with_extension(format!("json.{}.tmp", std::process::id()));
        let io = |e| StoreError::Io { path: self.path.clone(), source: e };
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io(e)
        })
    }

    /// The project of request `uuid`: `Some(None)` for an operator's request, `None` when no
    /// such request exists (any more).
    pub fn project_of(&self, uuid: &[u8; 16]) -> Option<Option<String>> {
        self.lock().iter().find(|(r, _)| parse_uuid(&r.id).as_ref() == Some(uuid)).map(|(r, _)| r.project.clone())
    }

    /// Every request with its state.
    pub fn list(&self) -> Vec<Value> {
        self.list_for(Caller::Operator)
    }

    fn list_for(&self, caller: Caller<'_>) -> Vec<Value> {
        self.lock().iter().filter(|(r, _)| Self::visible(caller, r)).map(|(r, b)| show(r, b)).collect()
    }

    /// Adds a request (disabled unless `enabled` is given); returns it. `req` has the fields
    /// of `trace_add` ([`TraceAdd`]).
    pub fn add(&self, req: &Value) -> Result<Value, FieldError> {
        if !req.is_object() {
            return Err(bad("request", "must be a JSON object"));
        }
        let add = TraceAdd::decode(req).map_err(|e| match e {
            ProtocolError::Field { field, msg } if field == "id" => bad("id", msg),
            ProtocolError::Field { field, msg } if field == "enabled" => bad("enabled", msg),
            e => bad("request", e.to_string()),
        })?;
        self.add_for(Caller::Operator, &add)
    }

    fn add_for(&self, caller: Caller<'_>, add: &TraceAdd) -> Result<Value, FieldError> {
        let mut r = TraceRequest {
            id: new_uuid(),
            condition: parse_condition(&add.condition)?,
            scope: parse_scope(&add.scope)?,
            limit: parse_limit(&add.limit)?,
            enabled: add.enabled.unwrap_or(false),
            created_ms: crate::stats::unix_time_ms(),
            project: None,
        };
        if let Caller::Tenant(t) = caller {
            self.check_tenant(t, &r)?;
            r.project = Some(t.name.clone());
        }
        self.compile(&r)?;
        if let Some(id) = &add.id {
            if let Caller::Tenant(t) = caller {
                // An id is a capability to the records that carry it: a chosen id could be the
                // one of another tenant's removed request, whose records are still in the region.
                return Err(bad("id", format!("tenant {} may not choose a request id (one is generated)", t.name)));
            }
            let b = parse_uuid(id).ok_or_else(|| bad("id", format!("{id:?} is not a UUID")))?;
            r.id = super::request::format_uuid(&b);
        }
        let mut st = self.lock();
        if st.iter().any(|(x, _)| x.id == r.id) {
            return Err(bad("id", format!("a trace request {} already exists", r.id)));
        }
        let budget = Arc::new(AtomicU32::new(limit_count(r.limit)));
        let shown = show(&r, &budget);
        st.push((r, budget));
        self.commit(&st)?;
        Ok(shown)
    }

    fn commit(&self, st: &[(TraceRequest, Arc<AtomicU32>)]) -> Result<(), FieldError> {
        self.republish(st);
        self.save(st).map_err(|e| bad("run_dir", format!("saving trace requests: {e}")))
    }

    /// The request `id` as `caller` sees it (another tenant's requests do not exist for it).
    fn find(caller: Caller<'_>, st: &[(TraceRequest, Arc<AtomicU32>)], id: &str) -> Result<usize, FieldError> {
        let b = parse_uuid(id).ok_or_else(|| bad("id", format!("{id:?} is not a UUID")))?;
        let id = super::request::format_uuid(&b);
        st.iter()
            .position(|(r, _)| r.id == id && Self::visible(caller, r))
            .ok_or_else(|| bad("id", format!("no trace request {id}")))
    }

    /// Enables or disables a request. Enabling restarts its limit.
    pub fn set_enabled(&self, id: &str, enabled: bool) -> Result<Value, FieldError> {
        self.set_enabled_for(Caller::Operator, id, enabled)
    }

    fn set_enabled_for(&self, caller: Caller<'_>, id: &str, enabled: bool) -> Result<Value, FieldError> {
        let mut st = self.lock();
        let i = Self::find(caller, &st, id)?;
        if enabled {
            self.compile(&st[i].0)?;
            st[i].1.store(limit_count(st[i].0.limit), Ordering::Relaxed);
        }
        st[i].0.enabled = enabled;
        let shown = show(&st[i].0, &st[i].1);
        self.commit(&st)?;
        Ok(shown)
    }

    /// Deletes request `id` as the operator (any tenant's request).
    pub fn remove(&self, id: &str) -> Result<Value, FieldError> {
        self.remove_for(Caller::Operator, id)
    }

    fn remove_for(&self, caller: Caller<'_>, id: &str) -> Result<Value, FieldError> {
        let mut st = self.lock();
        let i = Self::find(caller, &st, id)?;
        let (r, b) = st.remove(i);
        self.commit(&st)?;
        Ok(show(&r, &b))
    }

    /// Removes every request (of the caller); returns how many.
    pub fn flush(&self) -> Result<usize, FieldError> {
        self.flush_for(Caller::Operator)
    }

    fn flush_for(&self, caller: Caller<'_>) -> Result<usize, FieldError> {
        let mut st = self.lock();
        let n = st.len();
        st.retain(|(r, _)| !Self::visible(caller, r));
        let n = n - st.len();
        self.commit(&st)?;
        Ok(n)
    }

    /// The trace region's records the operator may read: all of them.
    pub fn records(&self) -> Result<(RegionInfo, Vec<Trace>), FieldError> {
        self.records_for(Caller::Operator, None)
    }

    fn region_dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// The traces `caller` may read: of request `id` when given (an unknown id, or another
    /// tenant's, is the same error as for the request itself), else of every request it
    /// sees (the operator: every trace). See the module documentation for how traces are
    /// attributed to requests.
    fn records_for(&self, caller: Caller<'_>, id: Option<&str>) -> Result<(RegionInfo, Vec<Trace>), FieldError> {
        let allowed: Option<Vec<TraceRequest>> = {
            let st = self.lock();
            match (caller, id) {
                (Caller::Operator, None) => None,
                (_, Some(i)) => Some(vec![st[Self::find(caller, &st, i)?].0.clone()]),
                (Caller::Tenant(_), None) => {
                    Some(st.iter().filter(|(r, _)| Self::visible(caller, r)).map(|(r, _)| r.clone()).collect())
                }
            }
        };
        let reader = TraceReader::open_run_dir(self.region_dir()).map_err(|e| match e {
            TraceRegionError::NotRunning { path, .. } => {
                bad("region", format!("no trace region at {}: nothing is recorded", path.display()))
            }
            e => bad("region", e.to_string()),
        })?;
        let info = reader.info();
        let traces = view::collect(&reader.records());
        let Some(allowed) = allowed else { return Ok((info, traces)) };
        let uuids: Vec<[u8; 16]> = allowed.iter().filter_map(|r| parse_uuid(&r.id)).collect();
        // A request that no longer compiles (its vif or VN is gone) attributes no continued trace.
        let matchers: Vec<Matcher> = allowed.iter().filter_map(|r| self.compile(r).ok()).collect();
        let traces = traces
            .into_iter()
            .filter(|t| match t.request_uuid() {
                Some(u) => uuids.contains(&u),
                None => {
                    t.continued_from().is_some()
                        && self
                            .continued_packet(t)
                            .is_some_and(|(p, to)| matchers.iter().any(|m| m.matches_continued(&p, to)))
                }
            })
            .collect();
        Ok((info, traces))
    }

    /// A continued trace's packet as it came in (from its first ingress, parse and address
    /// steps), and the vif it was delivered or headed to.
    fn continued_packet(&self, t: &Trace) -> Option<(PacketFields, Option<u16>)> {
        let ingress = t.records.iter().find_map(|r| match r.step {
            Step::Ingress { vif, .. } => Some(vif),
            _ => None,
        })?;
        let (Some(Step::Parsed { ethertype, proto, sport, dport, vrf, .. }), addrs) = t.headers() else { return None };
        let ip = match addrs {
            Some(Step::Addresses { src, dst }) => Some(IpFields { src, dst, proto, sport, dport }),
            _ => None,
        };
        let p = PacketFields { src_mac: [0; 6], dst_mac: [0; 6], ethertype, ip, ingress_vif: ingress, vrf };
        let fib = self.fib();
        let local = |v: u16| fib.vif(v).is_some_and(|x| x.kind != VifType::Fabric);
        let to = t.records.iter().find_map(|r| match r.step {
            Step::Egress { vif, .. } if local(vif) => Some(vif),
            Step::Route { out_vif, .. } if local(out_vif) => Some(out_vif),
            Step::Route { nh_id, .. } => match fib.nexthops.iter().find(|n| n.id() == nh_id) {
                Some(Nexthop::Encap { vif, .. }) if local(*vif) => Some(*vif),
                _ => None,
            },
            _ => None,
        });
        Some((p, to))
    }

    /// Request `id` as the operator sees it (any tenant's request), as JSON.
    pub fn get(&self, id: &str) -> Result<Value, FieldError> {
        self.get_for(Caller::Operator, id)
    }

    fn get_for(&self, caller: Caller<'_>, id: &str) -> Result<Value, FieldError> {
        let st = self.lock();
        let i = Self::find(caller, &st, id)?;
        Ok(show(&st[i].0, &st[i].1))
    }

    /// Serves a `trace_*` control command: the caller ([`TraceAuth`]) is checked first, then
    /// the command ([`TraceCommand`]) decoded and run.
    pub fn command(&self, v: &Value) -> Value {
        let c = match TraceAuth::decode(v) {
            Ok(auth) => match self.caller(auth.token.as_deref()) {
                Ok(c) => c,
                Err(e) => return failed(e.field, e.to_string()),
            },
            Err(e) => return protocol_failed(e),
        };
        match TraceCommand::decode(v) {
            Ok(TraceCommand::Unknown) | Err(ProtocolError::MissingCmd | ProtocolError::UnknownCommand(_)) => {
                let e = bad("cmd", format!("unknown trace command {:?}", cmd_of(v).unwrap_or("")));
                failed(e.field, e.to_string())
            }
            Ok(cmd) => self.run(c, &cmd),
            Err(e) => protocol_failed(e),
        }
    }

    /// Runs `cmd` for the tenant of `token` (none: the operator); the reply is that of
    /// [`TraceControl::command`].
    pub fn execute(&self, token: Option<&str>, cmd: &TraceCommand) -> Value {
        match self.caller(token) {
            Ok(c) => self.run(c, cmd),
            Err(e) => failed(e.field, e.to_string()),
        }
    }

    fn run(&self, c: Caller<'_>, cmd: &TraceCommand) -> Value {
        let id = |t: &TraceId| t.id.clone().ok_or_else(|| bad("id", "missing (the trace request UUID)"));
        let one = |r: Result<Value, FieldError>| r.map(|r| json!({"ok": true, "request": r}));
        let r = match cmd {
            TraceCommand::TraceAdd(add) => one(self.add_for(c, add)),
            TraceCommand::TraceShow => {
                Ok(json!({"ok": true, "requests": self.list_for(c), "recording": cfg!(feature = "trace")}))
            }
            TraceCommand::TraceGet(t) => one(id(t).and_then(|i| self.get_for(c, &i))),
            TraceCommand::TraceEnable(t) => one(id(t).and_then(|i| self.set_enabled_for(c, &i, true))),
            TraceCommand::TraceDisable(t) => one(id(t).and_then(|i| self.set_enabled_for(c, &i, false))),
            TraceCommand::TraceRemove(t) => one(id(t).and_then(|i| self.remove_for(c, &i))),
            TraceCommand::TraceFlush => self.flush_for(c).map(|n| json!({"ok": true, "removed": n})),
            TraceCommand::TraceRecords { id } => self.records_for(c, id.as_deref()).map(|(info, traces)| {
                let recs: Vec<Value> = traces.iter().flat_map(|t| t.records.iter().map(view::record_to_json)).collect();
                json!({"ok": true, "region": info, "records": recs})
            }),
            TraceCommand::TraceSimulate(_) => Err(bad("cmd", "trace_simulate is answered by the agent")),
            TraceCommand::Unknown => Err(bad("cmd", "unknown trace command")),
        };
        r.unwrap_or_else(|e| failed(e.field, e.to_string()))
    }
}

/// The reply to a command that failed.
fn failed(field: &str, error: String) -> Value {
    json!({"ok": false, "error": error, "field": field})
}

/// The reply to a request that could not be decoded.
fn protocol_failed(e: ProtocolError) -> Value {
    match e {
        ProtocolError::Field { field, msg } => failed(&field, format!("{field}: {msg}")),
        e => failed("cmd", e.to_string()),
    }
}

fn limit_count(l: Limit) -> u32 {
    match l {
        Limit::Packets(n) | Limit::Flows(n) => n,
    }
}

/// A request with its live state.
fn show(r: &TraceRequest, budget: &AtomicU32) -> Value {
    let mut v = serde_json::to_value(r).expect("request serializes");
    let left = budget.load(Ordering::Relaxed);
    let state = match (r.enabled, left) {
        (false, _) => "disabled",
        (true, 0) => "limit reached",
        (true, _) => "enabled",
    };
    v["state"] = Value::from(state);
    v["remaining"] = Value::from(left);
    v
}

fn parse_condition(v: &Value) -> Result<Condition, FieldError> {
    let mut c = Condition::default();
    let obj = match v {
        Value::Null => return Ok(c),
        Value::Object(o) => o,
        _ => return Err(bad("condition", "must be a JSON object")),
    };
    fn s(o: &Map<String, Value>, k: &'static str) -> Result<Option<String>, FieldError> {
        match o.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(x)) => Ok(Some(x.trim().to_string())),
            Some(_) => Err(bad(k, "must be a string")),
        }
    }
    fn n(o: &Map<String, Value>, k: &'static str, max: u64) -> Result<Option<u64>, FieldError> {
        match o.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(x) => match x.as_u64() {
                Some(n) if n <= max => Ok(Some(n)),
                _ => Err(bad(k, format!("must be an integer 0..={max}"))),
            },
        }
    }
    for k in obj.keys() {
        const KNOWN: [&str; 10] = [
            "src_mac",
            "dst_mac",
            "ethertype",
            "src_ip",
            "dst_ip",
            "protocol",
            "src_port",
            "dst_port",
            "ingress_vif",
            "vrf",
        ];
        if !KNOWN.contains(&k.as_str()) {
            return Err(bad("condition", format!("unknown field {k:?} (known: {})", KNOWN.join(", "))));
        }
    }
    c.src_mac = s(obj, "src_mac")?.map(|m| m.to_ascii_lowercase());
    c.dst_mac = s(obj, "dst_mac")?.map(|m| m.to_ascii_lowercase());
    c.ethertype = n(obj, "ethertype", 0xffff)?.map(|x| x as u16);
    c.src_ip = s(obj, "src_ip")?;
    c.dst_ip = s(obj, "dst_ip")?;
    c.protocol = n(obj, "protocol", 255)?.map(|x| x as u8);
    c.src_port = n(obj, "src_port", 0xffff)?.map(|x| x as u16);
    c.dst_port = n(obj, "dst_port", 0xffff)?.map(|x| x as u16);
    c.ingress_vif = n(obj, "ingress_vif", 0xffff)?.map(|x| x as u16);
    c.vrf = n(obj, "vrf", u64::from(u32::MAX))?.map(|x| x as u32);
    Ok(c)
}

fn parse_scope(v: &Value) -> Result<Scope, FieldError> {
    match v {
        Value::Null => Ok(Scope::Vrouter),
        Value::String(s) if s == "vrouter" => Ok(Scope::Vrouter),
        Value::Object(o) => match (o.get("vif"), o.get("vn")) {
            (Some(vif), None) => match vif.as_u64() {
                Some(n) if n <= 0xffff => Ok(Scope::Vif { vif: n as u16 }),
                _ => Err(bad("scope.vif", "must be a vif id")),
            },
            (None, Some(Value::String(vn))) => Ok(Scope::Vn { vn: vn.clone() }),
            (None, Some(_)) => Err(bad("scope.vn", "must be a virtual network name")),
            _ => Err(bad("scope", "give one of {\"vif\": N}, {\"vn\": \"name\"} or \"vrouter\"")),
        },
        _ => Err(bad("scope", "give one of {\"vif\": N}, {\"vn\": \"name\"} or \"vrouter\"")),
    }
}

fn parse_limit(v: &Value) -> Result<Limit, FieldError> {
    let num = |x: &Value, f: &'static str| match x.as_u64() {
        Some(n) if n >= 1 && n <= u64::from(super::request::MAX_LIMIT) => Ok(n as u32),
        _ => Err(bad(f, format!("must be an integer 1..={}", super::request::MAX_LIMIT))),
    };
    match v {
        Value::Null => Ok(Limit::default()),
        Value::Number(_) => Ok(Limit::Packets(num(v, "limit")?)),
        Value::Object(o) => match (o.get("packets"), o.get("flows")) {
            (Some(p), None) => Ok(Limit::Packets(num(p, "limit.packets")?)),
            (None, Some(f)) => Ok(Limit::Flows(num(f, "limit.flows")?)),
            _ => Err(bad("limit", "give one of {\"packets\": N} or {\"flows\": N}")),
        },
        _ => Err(bad("limit", "give one of {\"packets\": N} or {\"flows\": N}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fib() -> Arc<Fib> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../demo/demo.toml");
        let text = std::fs::read_to_string(path).expect("demo config");
        let cfg = crate::config::parse(&text, path).expect("demo config parses");
        Arc::new(Fib::from_config(&cfg).expect("fib"))
    }

    #[test]
    fn requests_persist_and_publish_only_enabled() {
        let dir = tempfile::tempdir().unwrap();
        let ctl = TraceControl::load(dir.path(), FibCell::fixed(fib())).unwrap();
        let p = ctl.published();
        assert_eq!(p.enabled.load(Ordering::Relaxed), 0);
        let r = ctl.command(
            &json!({"cmd": "trace_add", "condition": {"dst_port": 80, "protocol": 17}, "limit": {"packets": 3}}),
        );
        assert_eq!(r["ok"], true, "{r}");
        assert_eq!(r["request"]["enabled"], false, "creating does not enable");
        assert_eq!(r["request"]["state"], "disabled");
        let id = r["request"]["id"].as_str().unwrap().to_string();
        assert_eq!(p.enabled.load(Ordering::Relaxed), 0);
        let e0 = p.epoch.load(Ordering::Relaxed);
        let r = ctl.command(&json!({"cmd": "trace_enable", "id": id}));
        assert_eq!(r["request"]["state"], "enabled", "{r}");
        assert_eq!(p.enabled.load(Ordering::Relaxed), 1);
        assert!(p.epoch.load(Ordering::Relaxed) > e0);
        assert_eq!(p.active()[0].budget.load(Ordering::Relaxed), 3);
        drop(ctl);
        // Survives a restart, still enabled.
        let ctl = TraceControl::load(dir.path(), FibCell::fixed(fib())).unwrap();
        assert_eq!(ctl.published().enabled.load(Ordering::Relaxed), 1);
        let l = ctl.list();
        assert_eq!(l.len(), 1);
        assert_eq!(l[0]["id"], id.as_str());
        assert_eq!(l[0]["condition"]["dst_port"], 80);
        let r = ctl.command(&json!({"cmd": "trace_remove", "id": id.to_uppercase()}));
        assert_eq!(r["ok"], true, "{r}");
        assert_eq!(ctl.published().enabled.load(Ordering::Relaxed), 0);
        let r = ctl.command(&json!({"cmd": "trace_get", "id": id}));
        assert_eq!((r["ok"].clone(), r["field"].clone()), (json!(false), json!("id")));
        ctl.command(&json!({"cmd": "trace_add", "enabled": true}));
        ctl.command(&json!({"cmd": "trace_add"}));
        assert_eq!(ctl.command(&json!({"cmd": "trace_flush"}))["removed"], 2);
        assert!(TraceControl::load(dir.path(), FibCell::fixed(fib())).unwrap().list().is_empty());
    }

    #[test]
    fn bad_requests_name_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let ctl = TraceControl::load(dir.path(), FibCell::fixed(fib())).unwrap();
        let field = |v: Value| {
            let r = ctl.command(&v);
            assert_eq!(r["ok"], false, "{r}");
            r["field"].as_str().unwrap().to_string()
        };
        assert_eq!(field(json!({"cmd": "trace_add", "condition": {"dst_port": 70000}})), "dst_port");
        assert_eq!(field(json!({"cmd": "trace_add", "condition": {"src_ip": "1.2.3"}})), "src_ip");
        assert_eq!(field(json!({"cmd": "trace_add", "condition": {"dport": 1}})), "condition");
        assert_eq!(field(json!({"cmd": "trace_add", "limit": {"packets": 0}})), "limit.packets");
        assert_eq!(field(json!({"cmd": "trace_add", "limit": "lots"})), "limit");
        assert_eq!(field(json!({"cmd": "trace_add", "scope": {"vif": 999}})), "scope.vif");
        assert_eq!(field(json!({"cmd": "trace_add", "enabled": "yes"})), "enabled");
        assert_eq!(field(json!({"cmd": "trace_enable"})), "id");
        assert_eq!(field(json!({"cmd": "trace_enable", "id": "x"})), "id");
        assert_eq!(field(json!({"cmd": "trace_nope"})), "cmd");
        assert!(ctl.list().is_empty(), "nothing was added by a bad request");
    }

    #[test]
    fn tenants_see_and_create_only_their_own_requests() {
        let dir = tempfile::tempdir().unwrap();
        let f = fib();
        let vn_of = |id: u16| f.vif(id).and_then(|v| v.vn_name.as_deref()).map(str::to_string);
        let (own_vif, own_vn) = f.vif_list().find_map(|v| vn_of(v.id).map(|vn| (v.id, vn))).expect("a vif with a VN");
        let other_vif =
            f.vif_list().find(|v| vn_of(v.id).as_deref() != Some(own_vn.as_str())).expect("a vif outside it").id;
        let tenants = vec![
            Tenant { name: "red".into(), token: "red-token-0123456789".into(), vns: vec![own_vn.clone()] },
            Tenant { name: "blue".into(), token: "blue-token-0123456789".into(), vns: vec![own_vn.clone()] },
        ];
        let ctl = TraceControl::load(dir.path(), FibCell::fixed(f.clone())).unwrap().with_tenants(tenants);
        let red = "red-token-0123456789";
        let blue = "blue-token-0123456789";
        let err = |v: Value| {
            let r = ctl.command(&v);
            assert_eq!(r["ok"], false, "{r}");
            (r["field"].as_str().unwrap().to_string(), r["error"].as_str().unwrap().to_string())
        };
        // A bad token is refused, whatever the command.
        assert_eq!(err(json!({"cmd": "trace_show", "token": "guess"})).0, "token");
        assert_eq!(err(json!({"cmd": "trace_add", "token": 7, "scope": {"vif": own_vif}})).0, "token");
        // The caller is checked before the command: a bad token hides what else is wrong.
        assert_eq!(err(json!({"cmd": "trace_add", "token": "guess", "enabled": "yes"})).0, "token");
        assert_eq!(err(json!({"cmd": "trace_nope", "token": "guess"})).0, "token");
        // A tenant may not trace the whole vRouter or a vif or VN that is not its own.
        assert_eq!(err(json!({"cmd": "trace_add", "token": red})).0, "scope");
        assert_eq!(err(json!({"cmd": "trace_add", "token": red, "scope": {"vif": other_vif}})).0, "scope.vif");
        assert_eq!(err(json!({"cmd": "trace_add", "token": red, "scope": {"vn": "someone-else"}})).0, "scope.vn");
        let e = err(
            json!({"cmd": "trace_add", "token": red, "scope": {"vn": own_vn}, "condition": {"ingress_vif": other_vif}}),
        );
        assert_eq!(e.0, "ingress_vif");
        // Its own vif: created, tagged with its project.
        let r = ctl.command(&json!({"cmd": "trace_add", "token": red, "scope": {"vif": own_vif}}));
        assert_eq!(r["request"]["project"], "red", "{r}");
        let id = r["request"]["id"].as_str().unwrap().to_string();
        let op = ctl.command(&json!({"cmd": "trace_add"}));
        let op_id = op["request"]["id"].as_str().unwrap().to_string();
        // What the trace exporter tags exported traces with.
        assert_eq!(ctl.project_of(&parse_uuid(&id).unwrap()), Some(Some("red".to_string())));
        assert_eq!(ctl.project_of(&parse_uuid(&op_id).unwrap()), Some(None), "the operator's: no project");
        assert_eq!(ctl.project_of(&[0x42; 16]), None, "no such request");
        // Red sees its own request only; blue sees none and cannot touch red's.
        let shown = |tok: Option<&str>| {
            let r = ctl.command(&json!({"cmd": "trace_show", "token": tok}));
            r["requests"].as_array().unwrap().iter().map(|x| x["id"].as_str().unwrap().to_string()).collect::<Vec<_>>()
        };
        assert_eq!(shown(Some(red)), vec![id.clone()]);
        assert!(shown(Some(blue)).is_empty());
        assert_eq!(shown(None).len(), 2, "the operator sees every request");
        for cmd in ["trace_get", "trace_enable", "trace_disable", "trace_remove"] {
            let (field, msg) = err(json!({"cmd": cmd, "token": blue, "id": id}));
            assert_eq!(field, "id");
            assert!(msg.contains("no trace request"), "{msg}");
            assert_eq!(
                err(json!({"cmd": cmd, "token": red, "id": op_id})).0,
                "id",
                "red cannot reach the operator's request"
            );
        }
        assert_eq!(ctl.command(&json!({"cmd": "trace_flush", "token": blue}))["removed"], 0);
        assert_eq!(ctl.command(&json!({"cmd": "trace_enable", "token": red, "id": id}))["request"]["state"], "enabled");
        assert_eq!(ctl.command(&json!({"cmd": "trace_flush", "token": red}))["removed"], 1);
        assert_eq!(shown(None), vec![op_id], "a tenant's flush leaves the others' requests");
    }

    /// Red traces vif 1, blue vif 2 (same VN), the operator everything; the region holds
    /// traces of each request, continued traces from another vRouter (one delivered to
    /// blue's vif and matching blue's condition, one matching no condition, one dropped
    /// before a route), and the ids of the three requests.
    fn records_setup(dir: &Path) -> (TraceControl, super::super::TraceRegion, [String; 3]) {
        use super::super::TraceRegion;
        use crate::drop_reason::DropReason;
        use std::net::Ipv4Addr;
        let vn = "default-domain:demo:vn1".to_string();
        let tenants = vec![
            Tenant { name: "red".into(), token: RED.into(), vns: vec![vn.clone()] },
            Tenant { name: "blue".into(), token: BLUE.into(), vns: vec![vn] },
        ];
        let ctl = TraceControl::load(dir, FibCell::fixed(fib())).unwrap().with_tenants(tenants);
        let add = |v: Value| {
            let r = ctl.command(&v);
            assert_eq!(r["ok"], true, "{r}");
            r["request"]["id"].as_str().unwrap().to_string()
        };
        let red = add(
            json!({"cmd": "trace_add", "token": RED, "scope": {"vif": 1}, "condition": {"dst_port": 9000}, "enabled": true}),
        );
        let blue = add(
            json!({"cmd": "trace_add", "token": BLUE, "scope": {"vif": 2}, "condition": {"protocol": 17, "dst_port": 7300}, "enabled": true}),
        );
        let op = add(json!({"cmd": "trace_add", "enabled": true}));
        let region = TraceRegion::create(dir, 2, 64, 1_000_000_000, 0).unwrap();
        let mut w = region.writer(0).unwrap();
        let uuid = |s: &str| parse_uuid(s).unwrap();
        let v4 = |a: [u8; 4]| u128::from(Ipv4Addr::from(a).to_ipv6_mapped());
        let local = |w: &mut super::super::RingWriter, t: u64, id: u64, req: &str, dport: u16| {
            w.push(t, id, 1, &Step::Ingress { vif: 1, queue: 0, len: 60 });
            w.push(t + 1, id, 1, &Step::Matched { request: uuid(req), new_trace: true });
            w.push(
                t + 2,
                id,
                1,
                &Step::Parsed { ethertype: 0x0800, proto: 17, sport: 4000, dport, vrf: 1, ip_len: 46, ttl: 64 },
            );
            w.push(t + 3, id, 1, &Step::Egress { vif: 2, len: 60 });
        };
        local(&mut w, 100, 0x11, &red, 9000);
        local(&mut w, 200, 0x22, &blue, 7300);
        local(&mut w, 300, 0x33, &op, 1);
        let continued = |w: &mut super::super::RingWriter, t: u64, id: u64, dport: u16, delivered: bool| {
            w.push(t, id, 1, &Step::Ingress { vif: 0, queue: 0, len: 110 });
            w.push(t, id, 1, &Step::Marked { from: Ipv4Addr::new(10, 10, 0, 2) });
            w.push(t, id, 1, &Step::Decap { vxlan: false, label: 18, outer_src: Ipv4Addr::new(10, 10, 0, 2) });
            w.push(
                t,
                id,
                1,
                &Step::Parsed { ethertype: 0x0800, proto: 17, sport: 4300, dport, vrf: 1, ip_len: 46, ttl: 63 },
            );
            w.push(t, id, 1, &Step::Addresses { src: v4([192, 168, 2, 7]), dst: v4([192, 168, 1, 4]) });
            if delivered {
                // Label 18 -> nexthop 2 (encap to vif 2); dropped after the route.
                w.push(
                    t + 1,
                    id,
                    1,
                    &Step::Route {
                        vrf: 0,
                        prefix: 18,
                        prefix_len: super::super::step::ROUTE_BY_LABEL,
                        nh_id: 2,
                        nh_kind: super::super::step::NhKind::Encap as u8,
                        out_vif: u16::MAX,
                    },
                );
            }
            w.push(t + 2, id, 1, &Step::Drop { reason: DropReason::FlowActionDrop });
        };
        continued(&mut w, 400, 0x44, 7300, true);
        continued(&mut w, 500, 0x55, 7301, true);
        continued(&mut w, 600, 0x66, 7300, false);
        (ctl, region, [red, blue, op])
    }

    const RED: &str = "red-token-0123456789";
    const BLUE: &str = "blue-token-0123456789";

    fn trace_ids(r: &Value) -> Vec<u64> {
        assert_eq!(r["ok"], true, "{r}");
        let recs: Vec<_> =
            r["records"].as_array().unwrap().iter().map(|v| view::record_from_json(v).unwrap()).collect();
        view::collect(&recs).iter().map(|t| t.id).collect()
    }

    #[test]
    fn tenants_read_only_the_records_of_their_own_requests() {
        let dir = tempfile::tempdir().unwrap();
        let (ctl, _region, [red, blue, op]) = records_setup(dir.path());
        let recs = |v: Value| ctl.command(&v);
        // The operator reads everything, or one request's traces.
        assert_eq!(trace_ids(&recs(json!({"cmd": "trace_records"}))), [0x11, 0x22, 0x33, 0x44, 0x55, 0x66]);
        assert_eq!(trace_ids(&recs(json!({"cmd": "trace_records", "id": red}))), [0x11]);
        // The operator's request traces the whole vRouter with no condition: the continued
        // traces are the kind of packet it asks for, wherever they went.
        assert_eq!(trace_ids(&recs(json!({"cmd": "trace_records", "id": op}))), [0x33, 0x44, 0x55, 0x66]);
        // Red: its request's trace only; blue: its own, and the continued trace delivered to
        // its vif that its condition matches (not the one it does not match, not the one
        // dropped before any route).
        assert_eq!(trace_ids(&recs(json!({"cmd": "trace_records", "token": RED}))), [0x11]);
        assert_eq!(trace_ids(&recs(json!({"cmd": "trace_records", "token": RED, "id": red.to_uppercase()}))), [0x11]);
        assert_eq!(trace_ids(&recs(json!({"cmd": "trace_records", "token": BLUE}))), [0x22, 0x44]);
        assert_eq!(trace_ids(&recs(json!({"cmd": "trace_records", "token": BLUE, "id": blue}))), [0x22, 0x44]);
        // Another tenant's request, or the operator's, does not exist for a tenant.
        let err = |v: Value| {
            let r = ctl.command(&v);
            assert_eq!(r["ok"], false, "{r}");
            assert!(r.get("records").is_none());
            (r["field"].as_str().unwrap().to_string(), r["error"].as_str().unwrap().to_string())
        };
        for (tok, id) in [(RED, &blue), (BLUE, &red), (RED, &op)] {
            let (f, m) = err(json!({"cmd": "trace_records", "token": tok, "id": id}));
            assert_eq!(f, "id");
            assert!(m.contains("no trace request"), "{m}");
        }
        // Bad input names the field.
        assert_eq!(err(json!({"cmd": "trace_records", "token": "guess"})).0, "token");
        assert_eq!(err(json!({"cmd": "trace_records", "token": RED, "id": "not-a-uuid"})).0, "id");
        assert_eq!(err(json!({"cmd": "trace_records", "id": 7})).0, "id");
        // A removed request's traces are no longer a tenant's, and a tenant cannot take the
        // id of a request over (it could be another tenant's removed one).
        assert_eq!(ctl.command(&json!({"cmd": "trace_remove", "token": RED, "id": red}))["ok"], true);
        assert!(trace_ids(&recs(json!({"cmd": "trace_records", "token": RED}))).is_empty());
        let (f, m) = err(json!({"cmd": "trace_add", "token": BLUE, "id": red, "scope": {"vif": 2}}));
        assert_eq!(f, "id");
        assert!(m.contains("may not choose a request id"), "{m}");
        assert_eq!(trace_ids(&recs(json!({"cmd": "trace_records"}))).len(), 6, "the operator still sees them");
        // No trace region (a vRouter without one): a clear error, not an empty answer.
        let other = tempfile::tempdir().unwrap();
        let ctl2 = TraceControl::load(other.path(), FibCell::fixed(fib())).unwrap();
        let r = ctl2.command(&json!({"cmd": "trace_records"}));
        assert_eq!((r["ok"].clone(), r["field"].clone()), (json!(false), json!("region")), "{r}");
    }

    #[cfg(feature = "rest")]
    #[test]
    fn rest_records_of_a_request() {
        use super::super::rest::{handle, Request};
        let dir = tempfile::tempdir().unwrap();
        let (ctl, _region, [red, blue, op]) = records_setup(dir.path());
        let get = |path: &str, token: Option<&str>| {
            handle(
                &ctl,
                &Request { method: "GET".into(), path: path.into(), token: token.map(str::to_string), body: vec![] },
            )
        };
        let (st, v) = get(&format!("/traces/{red}/records"), Some(RED));
        assert_eq!(st, 200, "{v}");
        let list = v.as_array().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0]["trace_id"], "0000000000000011");
        assert_eq!(list[0]["request"], red.as_str());
        assert_eq!(list[0]["disposition"], "forwarded vif0/2");
        let steps: Vec<&str> =
            list[0]["trace"][0]["steps"].as_array().unwrap().iter().map(|s| s["step"].as_str().unwrap()).collect();
        assert_eq!(steps, ["ingress", "matched", "parse", "egress"]);
        let (st, v) = get(&format!("/traces/{blue}/records/"), Some(BLUE));
        assert_eq!(st, 200, "{v}");
        let ids: Vec<&str> = v.as_array().unwrap().iter().map(|t| t["trace_id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["0000000000000022", "0000000000000044"]);
        assert_eq!(v[1]["continued_from"], "10.10.0.2");
        assert_eq!(v[1]["request"], Value::Null);
        // Another tenant's request, the operator's: 404 as for the request itself.
        for (path, tok) in [(format!("/traces/{red}/records"), BLUE), (format!("/traces/{op}/records"), RED)] {
            let (st, v) = get(&path, Some(tok));
            assert_eq!((st, v["field"].as_str()), (404, Some("id")), "{v}");
        }
        let (st, v) = get(&format!("/traces/{red}/records"), None);
        assert_eq!((st, v["field"].as_str()), (401, Some("token")), "{v}");
        let (st, v) = get(&format!("/traces/{red}/records"), Some("wrong-token"));
        assert_eq!((st, v["field"].as_str()), (401, Some("token")), "{v}");
        let (st, v) = get("/traces/nope/records", Some(RED));
        assert_eq!((st, v["field"].as_str()), (400, Some("id")), "{v}");
        let del = Request {
            method: "DELETE".into(),
            path: format!("/traces/{red}/records"),
            token: Some(RED.into()),
            body: vec![],
        };
        assert_eq!(handle(&ctl, &del).0, 405);
        assert_eq!(get("/traces/a/b/records", Some(RED)).0, 404);
    }

    #[test]
    fn a_corrupt_store_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(REQUESTS_FILE_NAME), "{not json").unwrap();
        let e = TraceControl::load(dir.path(), FibCell::fixed(fib())).err().unwrap().to_string();
        assert!(e.contains(REQUESTS_FILE_NAME), "{e}");
    }
}
