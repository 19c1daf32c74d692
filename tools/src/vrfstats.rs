//! `vrfstats`: the per-VRF forwarding counters the data plane keeps in the stats region
//! ([`VrfCounters`]), in tf-vrouter's `vrfstats` text format or as JSON.
//!
//! The text keeps tf-vrouter's line order (scripts read `Udp Mpls Tunnels` from the fourth
//! line of a VRF): `Vrf: N`, then the discard / resolve / receive line, the composite line,
//! the tunnel line and the encap line, each with the counters of that line this vRouter
//! keeps; the counters tf-vrouter does not have follow on one more line, named after their
//! keys, so a counter added to the region shows up without a change here.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::ser::{Serialize, SerializeMap, Serializer};
use vrouter_abi::stats::{HeaderInfo, Liveness, StatsReader, VrfCounters};

use crate::{check_core, Failure};

/// tf-vrouter's `vrfstats` lines, as (label, counter key), of the counters kept here.
const TF_LINES: &[&[(&str, &str)]] = &[
    &[("Discards", "discards"), ("Resolves", "resolves"), ("Receives", "receives"), ("L2 Receives", "l2_receives")],
    &[("Ecmp Composites", "ecmp_composites")],
    &[("Udp Mpls Tunnels", "udp_mpls_tunnels"), ("Vxlan Tunnels", "vxlan_tunnels")],
    &[("L2 Encaps", "l2_encaps"), ("Encaps", "encaps")],
];

/// One VRF's counters (all lcores, or the selected one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VrfRow {
    /// The VRF id.
    pub vrf: u32,
    /// Its counters.
    pub counters: VrfCounters,
}

/// The VRFs `vrfstats` prints, read from one mapping of the region.
#[derive(Clone, Debug)]
pub struct VrfSnapshot {
    /// The region file read.
    pub path: PathBuf,
    /// The region's header, decoded.
    pub header: HeaderInfo,
    /// Whether the vRouter that writes the region still runs.
    pub liveness: Liveness,
    /// The lcore the counters are restricted to, if any.
    pub core: Option<usize>,
    /// The VRFs asked for: one for `--get`, every VRF with a non-zero counter for `--dump`.
    pub rows: Vec<VrfRow>,
}

/// Reads VRF `vrf`'s counters (`Some`) or those of every VRF that counted something
/// (`None`) from `<run_dir>/stats`, of lcore `core` only if given; read again if the vRouter
/// restarted meanwhile.
pub fn load(run_dir: &Path, core: Option<usize>, vrf: Option<u32>) -> Result<VrfSnapshot, Failure> {
    let mut attempt = 0;
    loop {
        let reader = StatsReader::open(run_dir)?;
        check_core(&reader, core)?;
        let rows = match vrf {
            Some(v) if v as usize >= reader.max_vrfs() => {
                return Err(Failure(format!("vrf {v} does not exist (VRF ids are 0..={})", reader.max_vrfs() - 1)))
            }
            Some(v) => vec![VrfRow { vrf: v, counters: reader.vrf_counters(v, core) }],
            None => reader.active_vrfs(core).into_iter().map(|(vrf, counters)| VrfRow { vrf, counters }).collect(),
        };
        let snap = VrfSnapshot {
            path: reader.path().to_path_buf(),
            header: reader.header(),
            liveness: reader.liveness(),
            core,
            rows,
        };
        attempt += 1;
        if !reader.restarted() || attempt == 3 {
            return Ok(snap);
        }
    }
}

/// `no_route_drops` -> `No Route Drops`.
fn title(key: &str) -> String {
    key.split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_uppercase().chain(c).collect::<String>()).unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// One VRF as tf-vrouter's `vrfstats` prints it (ends with a blank line).
pub fn render_vrf(row: &VrfRow) -> String {
    let values = row.counters.values();
    let value = |key: &str| values.iter().find(|(k, _)| *k == key).map_or(0, |(_, v)| *v);
    let mut s = format!("Vrf: {}\n", row.vrf);
    let join = |pairs: Vec<(String, u64)>| {
        pairs.iter().map(|(label, v)| format!("{label} {v}")).collect::<Vec<_>>().join(", ")
    };
    for line in TF_LINES {
        let _ = writeln!(s, "{}", join(line.iter().map(|(label, key)| (label.to_string(), value(key))).collect()));
    }
    let rest: Vec<(String, u64)> = values
        .iter()
        .filter(|(k, _)| !TF_LINES.iter().any(|l| l.iter().any(|(_, key)| key == k)))
        .map(|(k, v)| (title(k), *v))
        .collect();
    if !rest.is_empty() {
        let _ = writeln!(s, "{}", join(rest));
    }
    s.push('\n');
    s
}

/// `vrfstats --dump` / `--get`: each VRF; `--core` adds the `Statistics for core N` banner.
pub fn render_vrfs(rows: &[VrfRow], core: Option<usize>) -> String {
    let mut s = String::new();
    if let Some(c) = core {
        let _ = write!(s, "Statistics for core {c}\n\n");
    }
    for r in rows {
        s.push_str(&render_vrf(r));
    }
    s
}

/// A VRF as a JSON object: `"vrf"`, then every counter by key, in layout order.
struct VrfJson<'a>(&'a VrfRow);

impl Serialize for VrfJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("vrf", &self.0.vrf)?;
        for (k, v) in self.0.counters.values() {
            m.serialize_entry(k, &v)?;
        }
        m.end()
    }
}

/// `vrfstats --json`: an array of VRF objects (also for `--get`).
pub fn render_vrfs_json(rows: &[VrfRow], pretty: bool) -> String {
    let objs: Vec<VrfJson<'_>> = rows.iter().map(VrfJson).collect();
    crate::to_json(&objs, pretty)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> VrfRow {
        VrfRow {
            vrf: 1,
            counters: VrfCounters {
                discards: 3,
                resolves: 2,
                receives: 7,
                l2_receives: 1,
                ecmp_composites: 4,
                l2_encaps: 5,
                encaps: 130955,
                udp_mpls_tunnels: 32,
                vxlan_tunnels: 6,
                mplsoudp_decaps: 8,
                vxlan_decaps: 9,
                no_route_drops: 10,
            },
        }
    }

    #[test]
    fn tf_text_format() {
        let expected = "\
Vrf: 1
Discards 3, Resolves 2, Receives 7, L2 Receives 1
Ecmp Composites 4
Udp Mpls Tunnels 32, Vxlan Tunnels 6
L2 Encaps 5, Encaps 130955
Mplsoudp Decaps 8, Vxlan Decaps 9, No Route Drops 10

";
        assert_eq!(render_vrf(&row()), expected);
        // tf scripts read the tunnel counters from the fourth line.
        let text = render_vrfs(&[row()], None);
        assert!(text.lines().nth(3).unwrap().contains("Udp Mpls Tunnels 32"));
    }

    #[test]
    fn every_counter_is_printed_once() {
        let text = render_vrf(&row());
        for f in VrfCounters::FIELDS {
            let label = TF_LINES
                .iter()
                .flat_map(|l| l.iter())
                .find(|(_, k)| *k == f.key)
                .map_or_else(|| title(f.key), |(label, _)| label.to_string());
            let n = text
                .split(", ")
                .flat_map(|p| p.split('\n'))
                .filter(|p| p.rsplit_once(' ').map(|(l, _)| l) == Some(&label))
                .count();
            assert_eq!(n, 1, "{} ({label}) in:\n{text}", f.key);
        }
        for (_, key) in TF_LINES.iter().flat_map(|l| l.iter()) {
            assert!(VrfCounters::FIELDS.iter().any(|f| f.key == *key), "{key} is not a counter");
        }
    }

    #[test]
    fn dump_with_core_banner_and_nothing() {
        let two = [row(), VrfRow { vrf: 4095, counters: VrfCounters::default() }];
        let text = render_vrfs(&two, Some(2));
        assert!(text.starts_with("Statistics for core 2\n\nVrf: 1\n"), "{text}");
        assert!(text.contains("\n\nVrf: 4095\nDiscards 0, "), "{text}");
        assert_eq!(render_vrfs(&[], None), "");
    }

    #[test]
    fn json_keys_in_layout_order() {
        let s = render_vrfs_json(&[row()], false);
        assert!(s.starts_with("[{\"vrf\":1,\"discards\":3,\"resolves\":2,"), "{s}");
        assert!(s.ends_with("\"no_route_drops\":10}]\n"), "{s}");
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v[0].as_object().unwrap().len(), 1 + VrfCounters::FIELDS.len());
        assert_eq!(v[0]["udp_mpls_tunnels"], 32);
        assert_eq!(render_vrfs_json(&[], false), "[]\n");
    }

    #[test]
    fn titles() {
        assert_eq!(title("no_route_drops"), "No Route Drops");
        assert_eq!(title("x"), "X");
    }
}
