//! The control side of mirroring: the mirror table (analyzer definitions), kept in step with
//! the shared region the data plane reads. Entries come from `[[analyzer]]` at start and from
//! the control socket at run time (`mirror_create`, `mirror_delete`, `mirror_get`,
//! `mirror_dump`).

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use vrouter_abi::mirror::{MirrorEntry, MirrorIndex, MirrorTable};

use super::encap::{resolve_nexthop, template};
use super::region::{entry_json, MirrorRegion, SlotEntry};
use crate::config::{assign_mirror_indices, Config};
use crate::control::protocol::{cmd_of, MirrorCommand, MirrorCreate, MirrorSelect, ProtocolError};
use crate::fib::publish::FibCell;
use crate::fib::Fib;

/// Why a control operation failed (the message names the field).
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The mirror table refused the change (slot in use, duplicate name, invalid entry, ...).
    #[error(transparent)]
    Table(#[from] vrouter_abi::mirror::TableError),
    /// A mirror index out of range, or 255 ("none") where a slot is needed.
    #[error(transparent)]
    Index(#[from] vrouter_abi::mirror::IndexError),
    /// A request field (or an analyzer's configured index) is missing or invalid.
    #[error("{field}: {msg}")]
    Field {
        /// The field, e.g. `name`, `ip` or `index`.
        field: &'static str,
        /// What is wrong with it.
        msg: String,
    },
}

fn field(field: &'static str, msg: impl Into<String>) -> ControlError {
    ControlError::Field { field, msg: msg.into() }
}

/// The mirror table of a running vRouter and the region it publishes to.
pub struct MirrorControl {
    state: Mutex<State>,
    region: MirrorRegion,
    /// The forwarding state analyzer addresses are resolved in (the latest published one).
    cell: Arc<FibCell>,
}

struct State {
    table: MirrorTable,
    /// Slots whose entry comes from `[[analyzer]]` (a reload may change or remove them;
    /// entries created over the control socket are left alone).
    from_config: Vec<bool>,
}

impl MirrorControl {
    /// A control over `region` with no entries.
    /// (`cell`: the published forwarding state analyzers are resolved in.)
    pub fn new(region: MirrorRegion, cell: Arc<FibCell>) -> MirrorControl {
        let state = State { table: MirrorTable::new(), from_config: vec![false; MirrorTable::CAPACITY] };
        MirrorControl { state: Mutex::new(state), region, cell }
    }

    fn fib(&self) -> Arc<Fib> {
        self.cell.fib()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates the entries of `[[analyzer]]` (indices as the policy engine assigns them).
    pub fn load_config(&self, cfg: &Config) -> Result<(), ControlError> {
        self.sync_config(cfg).map(|_| ())
    }

    /// Makes the table match `[[analyzer]]` after a configuration (re)load: every analyzer
    /// at the index the policy engine assigns it (created, or replaced when it changed),
    /// entries of earlier configurations that are gone deleted. Entries created over the
    /// control socket stay unless a configured analyzer takes their index. Returns the
    /// number of slots changed. Checked as a whole before anything changes.
    pub fn sync_config(&self, cfg: &Config) -> Result<usize, ControlError> {
        let indices = assign_mirror_indices(&cfg.analyzers)
            .map_err(|(i, msg)| field("index", format!("analyzer[{i}]: {msg}")))?;
        let mut wanted = Vec::with_capacity(indices.len());
        for (a, index) in cfg.analyzers.iter().zip(indices) {
            let a = a.get_ref();
            let entry = MirrorEntry {
                analyzer_name: a.name.clone(),
                analyzer_ip: a.ip,
                udp_port: a.udp_port,
                nh_mode: a.nh_mode,
                juniper_header: a.juniper_header,
                vni: a.vni,
                hw_vlan: None,
            };
            entry.validate().map_err(vrouter_abi::mirror::TableError::from)?;
            wanted.push((MirrorIndex::new(u32::from(index))?, entry));
        }
        let mut st = self.lock();
        // Trial run on a copy: names must stay unique across configured and runtime entries.
        let mut next = st.table.clone();
        let mut next_owned = vec![false; MirrorTable::CAPACITY];
        for (i, owned) in st.from_config.iter().enumerate() {
            if *owned && !wanted.iter().any(|(w, _)| w.slot() == Some(i)) {
                next.delete(MirrorIndex::from_raw(i as u8))?;
            }
        }
        for (i, e) in &wanted {
            if let Some((other, _)) = next.find_by_name(&e.analyzer_name) {
                if other != *i {
                    next.delete(other)?;
                }
            }
        }
        for (i, e) in &wanted {
            next.replace(*i, e.clone())?;
            next_owned[i.slot().expect("real slot")] = true;
        }
        let mut changed = 0;
        for i in 0..MirrorTable::CAPACITY {
            let idx = MirrorIndex::from_raw(i as u8);
            match (st.table.get(idx), next.get(idx)) {
                (a, b) if a == b => {}
                (_, Some(e)) => {
                    self.publish(idx, e);
                    changed += 1;
                }
                (Some(_), None) => {
                    self.region.clear_slot(i);
                    changed += 1;
                }
                (None, None) => {}
            }
        }
        st.table = next;
        st.from_config = next_owned;
        Ok(changed)
    }

    /// Publishes again the entries whose analyzer address `pred` picks, with the nexthop
    /// resolved in the current FIB (the route to an analyzer moved); returns how many.
    pub fn republish_where(&self, pred: impl Fn(Ipv4Addr) -> bool) -> usize {
        let st = self.lock();
        let mut n = 0;
        for (idx, e) in st.table.iter() {
            if pred(e.analyzer_ip) {
                self.publish(idx, e);
                n += 1;
            }
        }
        n
    }

    /// The region the data plane reads.
    pub fn region(&self) -> &MirrorRegion {
        &self.region
    }

    /// Adds `entry` at `index` (or the lowest free index) and publishes it; returns the index.
    pub fn create(&self, index: Option<MirrorIndex>, entry: MirrorEntry) -> Result<MirrorIndex, ControlError> {
        let mut st = self.lock();
        let index = match index {
            Some(i) => {
                st.table.add(i, entry.clone())?;
                i
            }
            None => st.table.allocate(entry.clone())?,
        };
        self.publish(index, &entry);
        Ok(index)
    }

    /// Removes the entry at `index`. Flows and vifs pointing at it keep the index; their
    /// later copies count as "Mirror No Entry" until they are re-pointed or the index is
    /// created again.
    pub fn delete(&self, index: MirrorIndex) -> Result<MirrorEntry, ControlError> {
        let mut st = self.lock();
        let e = st.table.delete(index)?;
        let slot = index.slot().expect("deleted a real slot");
        st.from_config[slot] = false;
        self.region.clear_slot(slot);
        Ok(e)
    }

    /// The index of the analyzer `name`.
    pub fn find(&self, name: &str) -> Option<MirrorIndex> {
        self.lock().table.find_by_name(name).map(|(i, _)| i)
    }

    fn publish(&self, index: MirrorIndex, e: &MirrorEntry) {
        let slot = index.slot().expect("published a real slot");
        let fib = self.fib();
        let nh = resolve_nexthop(&fib, e.analyzer_ip);
        let (hdr, hdr_len, ip_csum_base) = match nh {
            Some((_, dst, src)) => {
                let t = template(e, fib.router_ip, dst, src);
                (t.hdr, t.len, t.ip_csum_base)
            }
            None => ([0; super::region::HDR_MAX], 0, 0),
        };
        self.region.write_slot(
            slot,
            &SlotEntry {
                analyzer_name: e.analyzer_name.clone(),
                analyzer_ip: e.analyzer_ip,
                udp_port: e.udp_port,
                vni: e.vni,
                nh_mode: e.nh_mode,
                juniper_header: e.juniper_header,
                flags: e.flags().bits(),
                nh_vif: nh.map(|(vif, _, _)| vif),
                hdr,
                hdr_len,
                ip_csum_base,
                created_ms: crate::stats::unix_time_ms(),
            },
        );
    }

    /// Serves one control-socket command whose `cmd` starts with `mirror_` ([`MirrorCommand`]).
    pub fn command(&self, v: &Value) -> Value {
        let r = match MirrorCommand::decode(v) {
            Err(ProtocolError::Field { field, msg }) => Err(format!("{field}: {msg}")),
            Err(_) | Ok(MirrorCommand::Unknown) => Err(format!("cmd: unknown mirror command {:?}", cmd_of(v))),
            Ok(c) => self.execute(&c).map_err(|e| e.to_string()),
        };
        match r {
            Ok(mut v) => {
                v["ok"] = json!(true);
                v
            }
            Err(e) => json!({"ok": false, "error": e}),
        }
    }

    fn execute(&self, c: &MirrorCommand) -> Result<Value, ControlError> {
        match c {
            MirrorCommand::MirrorCreate(c) => self.cmd_create(c),
            MirrorCommand::MirrorDelete(sel) => self.cmd_delete(sel),
            MirrorCommand::MirrorGet(sel) => self.cmd_index(sel).and_then(|i| {
                self.region
                    .read_slot(usize::from(i.raw()))
                    .map(|e| json!({"entry": entry_json(i.raw(), &e, self.region.stats(usize::from(i.raw()), None))}))
                    .ok_or_else(|| field("index", format!("mirror index {i} is empty")))
            }),
            MirrorCommand::MirrorDump => Ok(json!({"entries": (0..super::region::SLOTS)
                .filter_map(|i| self.region.read_slot(i).map(|e| entry_json(i as u8, &e, self.region.stats(i, None))))
                .collect::<Vec<_>>()})),
            MirrorCommand::Unknown => Err(field("cmd", "unknown mirror command")),
        }
    }

    fn cmd_index(&self, sel: &MirrorSelect) -> Result<MirrorIndex, ControlError> {
        if let Some(name) = &sel.name {
            return self.find(name).ok_or_else(|| field("name", format!("no analyzer named {name:?}")));
        }
        let i = sel.index.ok_or_else(|| field("index", "missing (or give name)"))?;
        Ok(MirrorIndex::new(u32::try_from(i).unwrap_or(u32::MAX))?)
    }

    fn cmd_create(&self, c: &MirrorCreate) -> Result<Value, ControlError> {
        let name = c.name.as_deref().ok_or_else(|| field("name", "missing"))?;
        let ip: Ipv4Addr =
            c.ip.as_deref().ok_or_else(|| field("ip", "missing"))?.parse().map_err(|e| field("ip", format!("{e}")))?;
        let mut e = MirrorEntry::analyzer(name, ip);
        if let Some(p) = c.udp_port {
            e = e.with_udp_port(p);
        }
        if let Some(m) = &c.nh_mode {
            e = e
                .with_nh_mode(m.parse().map_err(|x: vrouter_abi::mirror::EntryError| field("nh_mode", x.to_string()))?);
        }
        if let Some(j) = c.juniper_header {
            e.juniper_header = j;
        }
        if let Some(vni) = c.vni {
            e.vni = Some(vni);
        }
        let index = c.index.map(MirrorIndex::new).transpose()?;
        let i = self.create(index, e)?;
        let slot = self.region.read_slot(usize::from(i.raw())).expect("just published");
        Ok(
            json!({"index": i.raw(), "entry": entry_json(i.raw(), &slot, self.region.stats(usize::from(i.raw()), None))}),
        )
    }

    fn cmd_delete(&self, sel: &MirrorSelect) -> Result<Value, ControlError> {
        let i = self.cmd_index(sel)?;
        let e = self.delete(i)?;
        Ok(json!({"index": i.raw(), "analyzer_name": e.analyzer_name}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = r#"
[eal]
main_core = 0
forwarding_cores = [1]
memory_mb = 64
no_huge = true

[vrouter]
run_dir = "/tmp/x"
router_ip = "10.0.0.1"
router_mac = "02:00:00:00:00:01"

[[vrf]]
id = 0
name = "fabric"

[[vrf]]
id = 1
name = "vn1"

[[vif]]
id = 0
name = "eth0"
type = "fabric"
device = "net_pcap0"
mac = "02:00:00:00:00:01"
ip = "10.0.0.1"
vrf = 0

[[vif]]
id = 1
name = "tap1"
type = "virtual"
device = "net_pcap1"
mac = "02:00:00:00:01:01"
vrf = 1
mirror_to = "an-b"
mirror_rx = true

[[nexthop]]
id = 1
type = "encap"
vif = 0
dst_mac = "02:00:00:00:00:fe"

[[route]]
vrf = 0
prefix = "10.9.0.0/24"
nexthop = 1

[[analyzer]]
name = "an-a"
ip = "10.9.0.5"

[[analyzer]]
name = "an-b"
ip = "10.9.0.6"
juniper_header = false
vni = 50
index = 0

[[analyzer]]
name = "an-far"
ip = "192.168.7.7"
"#;

    #[test]
    fn config_entries_runtime_create_delete() {
        let cfg = crate::config::parse(CFG, "t").unwrap();
        let fib = Arc::new(Fib::from_config(&cfg).unwrap());
        let dir = tempfile::tempdir().unwrap();
        let region = MirrorRegion::create(dir.path(), 1, fib.router_ip).unwrap();
        let c = MirrorControl::new(region.clone(), FibCell::fixed(fib));
        c.load_config(&cfg).unwrap();
        let a = region.read_slot(1).unwrap();
        assert_eq!((a.analyzer_name.as_str(), a.nh_vif, a.hdr_len, a.juniper_header), ("an-a", Some(0), 42, true));
        let b = region.read_slot(0).unwrap();
        assert_eq!((b.analyzer_name.as_str(), b.vni, b.hdr_len), ("an-b", Some(50), 50));
        let far = region.read_slot(2).unwrap();
        assert_eq!(far.nh_vif, None, "no route to the analyzer: no nexthop");

        let r = c.command(&json!({"cmd": "mirror_create", "name": "an-x", "ip": "10.9.0.9", "udp_port": 9000}));
        assert_eq!(r["ok"], json!(true), "{r}");
        assert_eq!(r["index"], json!(3));
        assert_eq!(region.read_slot(3).unwrap().udp_port, 9000);
        let dup = c.command(&json!({"cmd": "mirror_create", "name": "an-x", "ip": "10.9.0.9"}));
        assert_eq!(dup["ok"], json!(false));
        assert!(dup["error"].as_str().unwrap().contains("already used"), "{dup}");
        let bad = c.command(&json!({"cmd": "mirror_create", "name": "v", "ip": "10.9.0.9", "juniper_header": false}));
        assert!(bad["error"].as_str().unwrap().starts_with("mirror entry: vni:"), "{bad}");
        let bad_ip = c.command(&json!({"cmd": "mirror_create", "name": "v", "ip": "nope"}));
        assert!(bad_ip["error"].as_str().unwrap().starts_with("ip:"), "{bad_ip}");

        let d = c.command(&json!({"cmd": "mirror_delete", "name": "an-a"}));
        assert_eq!((d["ok"].clone(), d["index"].clone()), (json!(true), json!(1)));
        assert!(region.read_slot(1).is_none());
        let again = c.command(&json!({"cmd": "mirror_delete", "index": 1}));
        assert!(again["error"].as_str().unwrap().contains("empty"), "{again}");
        let none = c.command(&json!({"cmd": "mirror_delete", "index": 255}));
        assert_eq!(none["ok"], json!(false));
        // A reload: an-b changes its VNI, an-far is gone, an-new appears; the runtime entry
        // an-x stays.
        let cfg2 = crate::config::parse(
            &CFG.replace("vni = 50", "vni = 51")
                .replace("name = \"an-far\"\nip = \"192.168.7.7\"", "name = \"an-new\"\nip = \"10.9.0.7\""),
            "t",
        )
        .unwrap();
        let changed = c.sync_config(&cfg2).unwrap();
        assert_eq!(region.read_slot(0).unwrap().vni, Some(51));
        assert_eq!(c.find("an-far"), None);
        assert_eq!(region.read_slot(2).unwrap().analyzer_name, "an-new", "assigned the freed index");
        assert_eq!(region.read_slot(1).unwrap().analyzer_name, "an-a", "deleted at run time, back from the config");
        assert_eq!(c.find("an-x").map(|i| i.raw()), Some(3), "runtime entry kept");
        assert_eq!(changed, 3);
        assert_eq!(c.sync_config(&cfg2).unwrap(), 0, "idempotent");
        c.command(&json!({"cmd": "mirror_delete", "name": "an-a"}));
        c.command(&json!({"cmd": "mirror_delete", "name": "an-new"}));
        let dump = c.command(&json!({"cmd": "mirror_dump"}));
        let names: Vec<&str> =
            dump["entries"].as_array().unwrap().iter().map(|e| e["analyzer_name"].as_str().unwrap()).collect();
        assert_eq!(names, ["an-b", "an-x"]);
    }
}
