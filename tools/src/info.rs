//! `vrouter-info`: tf-vrouter's `vrouter --info` (build, limits, table sizes and use) from
//! the `info` request plus what the regions give (flow table limits and use from
//! `<run_dir>/flow`, lcores and vifs from `<run_dir>/stats`). When the control socket cannot
//! be reached, the region lines are printed alone with a note.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;
use vrouter_abi::control::InfoReply;
use vrouter_abi::mirror::MAX_MIRROR_INDICES;

use crate::program::to_json;

/// Flow table limits and use, from the flow region.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FlowFacts {
    /// Main-table entries (`Flow Table limit`).
    pub entries: u32,
    /// Overflow entries (`Flow Table overflow limit`).
    pub overflow_entries: u32,
    /// `Used Flow entries`.
    pub used_entries: u64,
    /// `Used Over Flow entries`.
    pub used_overflow_entries: u64,
    /// Flows in HOLD.
    pub hold_entries: u64,
}

/// What the stats region says about the process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StatsFacts {
    /// Forwarding lcores.
    pub lcores: usize,
    /// vif slots of the region.
    pub max_vifs: usize,
    /// Configured vifs.
    pub vifs: usize,
    /// Pid of the vRouter that created the region.
    pub pid: u32,
    /// Whether it still runs.
    pub running: bool,
}

/// Everything `vrouter-info` prints.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Info {
    /// The `info` reply, when the control socket answered.
    pub info: Option<InfoReply>,
    /// Why there is no `info` reply.
    pub unavailable: Option<String>,
    /// From `<run_dir>/flow`, when there is one.
    pub flow_table: Option<FlowFacts>,
    /// From `<run_dir>/stats`, when there is one.
    pub stats: Option<StatsFacts>,
    /// Mirror indices (`Mirror entries limit`).
    pub mirror_entries_limit: usize,
}

/// Reads the regions of `run_dir` (each optional).
pub fn region_facts(run_dir: &Path) -> (Option<FlowFacts>, Option<StatsFacts>) {
    let flow = flow_table::FlowTableReader::open_run_dir(run_dir).ok().map(|r| {
        let h = r.header();
        let st = r.stats();
        FlowFacts {
            entries: h.main_entries,
            overflow_entries: h.overflow_entries,
            used_entries: st.used_entries,
            used_overflow_entries: st.used_overflow_entries,
            hold_entries: st.hold_count,
        }
    });
    let stats = crate::load(run_dir, None).ok().map(|s| StatsFacts {
        lcores: s.header.n_lcores,
        max_vifs: s.header.max_vifs,
        vifs: s.vifs.len(),
        pid: s.header.creator_pid,
        running: s.liveness == vrouter_abi::stats::Liveness::Running,
    });
    (flow, stats)
}

impl Info {
    /// The regions' facts plus the `info` reply (or why there is none).
    pub fn new(info: Result<InfoReply, String>, flow: Option<FlowFacts>, stats: Option<StatsFacts>) -> Info {
        let (info, unavailable) = match info {
            Ok(i) => (Some(i), None),
            Err(e) => (None, Some(e)),
        };
        Info { info, unavailable, flow_table: flow, stats, mirror_entries_limit: MAX_MIRROR_INDICES }
    }
}

fn line(s: &mut String, label: &str, value: impl std::fmt::Display) {
    let _ = writeln!(s, "{label:<28}{value}");
}

fn uptime(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

/// `vrouter-info` text: `Label<padded to 28>value` lines, as tf's `vrouter --info`.
pub fn render_info(x: &Info) -> String {
    let mut s = String::new();
    if let Some(i) = &x.info {
        line(&mut s, "vRouter version", &i.version);
        line(&mut s, "Build", &i.build);
        line(&mut s, "Programming API version", i.api_version);
        line(&mut s, "Process id", i.pid);
        line(&mut s, "Uptime", uptime(i.uptime_s));
        let lcores: Vec<String> = i.lcores.iter().map(u32::to_string).collect();
        line(&mut s, "Forwarding lcores", format!("{} ({})", i.lcores.len(), lcores.join(", ")));
        line(&mut s, "Interfaces limit", i.max_vifs);
        line(&mut s, "VRF tables limit", i.max_vrfs);
        line(&mut s, "NextHops limit", i.max_nexthops);
    } else if let Some(st) = &x.stats {
        line(&mut s, "Process id", format!("{}{}", st.pid, if st.running { "" } else { " (not running)" }));
        line(&mut s, "Forwarding lcores", st.lcores);
        line(&mut s, "Interfaces limit", st.max_vifs);
    }
    match (&x.flow_table, &x.info) {
        (Some(f), _) => {
            line(&mut s, "Flow Table limit", f.entries);
            line(&mut s, "Flow Table overflow limit", f.overflow_entries);
        }
        (None, Some(i)) => {
            line(&mut s, "Flow Table limit", i.flow_entries);
            line(&mut s, "Flow Table overflow limit", i.flow_overflow_entries);
        }
        (None, None) => {}
    }
    line(&mut s, "Mirror entries limit", x.mirror_entries_limit);
    if let Some(f) = &x.flow_table {
        line(&mut s, "Used Flow entries", f.used_entries);
        line(&mut s, "Used Over Flow entries", f.used_overflow_entries);
        line(&mut s, "Flows in HOLD", f.hold_entries);
    }
    if let Some(i) = &x.info {
        line(&mut s, "Active flows", i.flows_active);
        line(&mut s, "Interfaces", i.vifs);
        line(&mut s, "VRF tables", i.vrfs);
        line(&mut s, "NextHops", i.nexthops);
        line(&mut s, "Routes", i.routes);
        line(&mut s, "Bridge entries", i.bridge_entries);
        line(&mut s, "MPLS labels", i.labels);
        line(&mut s, "Forwarding state generation", i.generation);
        line(&mut s, "Runtime programmed objects", i.runtime_objects);
    } else if let Some(st) = &x.stats {
        line(&mut s, "Interfaces", st.vifs);
    }
    if let Some(why) = &x.unavailable {
        let _ = writeln!(s, "\nProgramming state unavailable: {why}");
    }
    s
}

/// `vrouter-info --json`: one object (`info` null when the socket did not answer).
pub fn render_info_json(x: &Info, pretty: bool) -> String {
    to_json(x, pretty)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply() -> InfoReply {
        InfoReply {
            version: "0.1.0".into(),
            build: "release x86_64-linux".into(),
            api_version: 1,
            pid: 4242,
            uptime_s: 3723,
            lcores: vec![1, 2],
            flow_entries: 524288,
            flow_overflow_entries: 8192,
            flows_active: 10,
            max_vifs: 4096,
            max_vrfs: 4096,
            max_nexthops: 65536,
            vifs: 3,
            vrfs: 2,
            nexthops: 5,
            routes: 7,
            bridge_entries: 1,
            labels: 2,
            generation: 9,
            runtime_objects: 4,
        }
    }

    const FLOW: FlowFacts = FlowFacts {
        entries: 524288,
        overflow_entries: 8192,
        used_entries: 12,
        used_overflow_entries: 1,
        hold_entries: 0,
    };

    #[test]
    fn text_with_the_agent() {
        let out = render_info(&Info::new(Ok(reply()), Some(FLOW), None));
        let want = "\
vRouter version             0.1.0
Build                       release x86_64-linux
Programming API version     1
Process id                  4242
Uptime                      01:02:03
Forwarding lcores           2 (1, 2)
Interfaces limit            4096
VRF tables limit            4096
NextHops limit              65536
Flow Table limit            524288
Flow Table overflow limit   8192
Mirror entries limit        255
Used Flow entries           12
Used Over Flow entries      1
Flows in HOLD               0
Active flows                10
Interfaces                  3
VRF tables                  2
NextHops                    5
Routes                      7
Bridge entries              1
MPLS labels                 2
Forwarding state generation 9
Runtime programmed objects  4
";
        assert_eq!(out, want);
    }

    #[test]
    fn text_from_the_regions_alone() {
        let st = StatsFacts { lcores: 2, max_vifs: 64, vifs: 3, pid: 77, running: false };
        let out = render_info(&Info::new(Err("vRouter is not running".into()), Some(FLOW), Some(st)));
        assert!(
            out.starts_with("Process id                  77 (not running)\nForwarding lcores           2\n"),
            "{out}"
        );
        assert!(out.contains("Flow Table limit            524288\n"));
        assert!(out.contains("Interfaces                  3\n"));
        assert!(out.ends_with("\nProgramming state unavailable: vRouter is not running\n"));
        assert_eq!(uptime(90061), "1d 01:01:01");
    }

    #[test]
    fn json_shape() {
        let v: serde_json::Value =
            serde_json::from_str(&render_info_json(&Info::new(Ok(reply()), Some(FLOW), None), false)).unwrap();
        assert_eq!(v["info"]["max_nexthops"], 65536);
        assert_eq!(v["flow_table"]["used_entries"], 12);
        assert_eq!(v["mirror_entries_limit"], 255);
        assert!(v["unavailable"].is_null());
        let v: serde_json::Value =
            serde_json::from_str(&render_info_json(&Info::new(Err("down".into()), None, None), true)).unwrap();
        assert!(v["info"].is_null());
        assert_eq!(v["unavailable"], "down");
    }
}
