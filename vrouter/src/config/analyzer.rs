//! `[[analyzer]]`: mirror destinations, and the mirror index each one gets.

use super::check::{unicast_v4_problem, Checker, ConfigError, Unique, VNI_MAX};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use toml::Spanned;

/// Mirror table slots 0..=254; 255 means "no mirror".
const MIRROR_SLOTS: u32 = 255;

/// How the mirror nexthop towards an analyzer is resolved (tf `nh_mode`): the mirror data
/// model's one enum.
pub use vrouter_abi::mirror::NhMode as MirrorNhMode;

/// A mirror destination (tf "analyzer"), referenced by `name` from policy rules.
///
/// ```toml
/// [[analyzer]]
/// name = "default-domain:demo:analyzer1"
/// ip = "10.10.0.20"
/// udp_port = 8099        # default
/// juniper_header = true  # default; false needs `vni` (VXLAN to the analyzer)
/// nh_mode = "dynamic"    # default, or "static"
/// index = 3              # optional mirror index 0..=254; else the lowest free, in order
/// ```
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AnalyzerConfig {
    /// Unique analyzer name (tf analyzer FQ name) that policy rules and vifs name in `mirror_to`.
    pub name: String,
    /// Analyzer (tunnel destination) address.
    pub ip: Ipv4Addr,
    /// UDP port of the Juniper-header encapsulation (tf `AnalyzerUdpPort`, 8099).
    #[serde(default = "default_analyzer_port")]
    pub udp_port: u16,
    /// Juniper metadata header over UDP (true), or VXLAN with `vni` (false).
    #[serde(default = "default_true")]
    pub juniper_header: bool,
    /// How the mirror nexthop to the analyzer is resolved (tf `nh_mode`); default `dynamic`.
    #[serde(default)]
    pub nh_mode: MirrorNhMode,
    /// VXLAN VNI; required (and only used) when `juniper_header = false`.
    #[serde(default)]
    pub vni: Option<u32>,
    /// Mirror table index 0..=254 (255 means "no mirror"); assigned when absent.
    #[serde(default)]
    pub index: Option<u32>,
}

/// The mirror index of each analyzer, in `analyzers` order: an explicit `index` as given,
/// the others the lowest index (0..=254) no explicit index and no earlier analyzer uses.
///
/// On failure returns the position of the offending analyzer and why: an explicit index
/// above 254, an explicit index used twice, or more analyzers than indices.
pub fn assign_mirror_indices(analyzers: &[Spanned<AnalyzerConfig>]) -> Result<Vec<u8>, (usize, String)> {
    const SLOTS: usize = 255;
    let mut taken = [false; SLOTS];
    let mut owner = [usize::MAX; SLOTS];
    for (i, a) in analyzers.iter().enumerate() {
        let Some(index) = a.get_ref().index else { continue };
        let slot = match usize::try_from(index) {
            Ok(s) if s < SLOTS => s,
            _ if index == 255 => return Err((i, "mirror index 255 means \"no mirror\"; use 0..=254".into())),
            _ => return Err((i, format!("mirror index {index} is out of range 0..=254"))),
        };
        if taken[slot] {
            return Err((i, format!("mirror index {index} is already used by analyzer[{}]", owner[slot])));
        }
        taken[slot] = true;
        owner[slot] = i;
    }
    let mut next = 0usize;
    let mut out = Vec::with_capacity(analyzers.len());
    for (i, a) in analyzers.iter().enumerate() {
        let slot = match a.get_ref().index {
            Some(index) => index as usize,
            None => {
                while next < SLOTS && taken[next] {
                    next += 1;
                }
                if next == SLOTS {
                    return Err((i, format!("no free mirror index: at most {SLOTS} analyzers")));
                }
                taken[next] = true;
                next
            }
        };
        out.push(slot as u8);
    }
    Ok(out)
}

impl Checker<'_> {
    pub(super) fn analyzers(&self) -> Result<(), ConfigError> {
        let list = &self.cfg.analyzers;
        let (mut names, mut indices) = (Unique::entries("analyzer", list), Unique::entries("analyzer", list));
        for (i, e) in list.iter().enumerate() {
            let a: &AnalyzerConfig = e.get_ref();
            let err = |key: &str, msg: String| Err(self.entry("analyzer", i, e, key, msg));
            if a.name.trim().is_empty() {
                return err("name", "must not be empty".into());
            }
            names.check(self, i, "name", a.name.as_str(), |_, at| {
                format!("duplicate analyzer name {:?} ({at})", a.name)
            })?;
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
                indices.check(self, i, "index", index, |first, at| {
                    format!("mirror index {index} is already used by analyzer[{first}] ({at})")
                })?;
            }
        }
        assign_mirror_indices(list).map(|_| ()).map_err(|(i, msg)| self.entry("analyzer", i, &list[i], "index", msg))
    }
}

fn default_analyzer_port() -> u16 {
    8099
}
fn default_true() -> bool {
    true
}
