//! `[vrouter]`: vRouter-wide settings.

use super::check::{unicast_mac_problem, unicast_v4_problem, Checker, ConfigError};
use super::value::Mac;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::path::PathBuf;

/// Most ICMP error answers per second and lcore (`[vrouter] icmp_error_rate`).
pub const MAX_ICMP_ERROR_RATE: u32 = 1_000_000;
/// Largest ICMP error burst (`[vrouter] icmp_error_burst`).
pub const MAX_ICMP_ERROR_BURST: u32 = 10_000;

/// vRouter-wide settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VrouterConfig {
    /// Run directory: the stats region (and later the flow table) are created here.
    pub run_dir: PathBuf,
    /// This vRouter's fabric (underlay) IPv4 address: source of tunnels, target of decap.
    pub router_ip: Ipv4Addr,
    /// MAC the vRouter answers ARP/ND with for VM gateways and uses as L3 source MAC
    /// towards VMs (tf-vrouter uses the VRRP MAC 00:00:5e:00:01:00).
    #[serde(default = "default_router_mac")]
    pub router_mac: Mac,
    /// Seconds between one-line summaries on stdout (0 disables).
    #[serde(default = "default_summary")]
    pub summary_interval_s: u32,
    /// Address of the trace REST API (`POST/GET/PUT/DELETE /traces[/<id>]`, tenant tokens
    /// only); none when absent.
    #[serde(default)]
    pub trace_api: Option<std::net::SocketAddr>,
    /// File holding the controller's token for the programming API over HTTP
    /// (`POST /api/v1/control` on the `trace_api` address, `Authorization: Bearer <token>`;
    /// at least 16 characters, surrounding whitespace ignored). None: the programming API is
    /// served on the owner-only control socket only.
    #[serde(default)]
    pub control_token_file: Option<PathBuf>,
    /// ICMP Time Exceeded answers to VMs (a routed packet whose TTL / hop limit expired):
    /// at most this many per second on each forwarding lcore (token bucket; 0 = never
    /// answer). Packets over the limit are still dropped (`TTL Exceeded`), unanswered, and
    /// counted as suppressed answers.
    #[serde(default = "default_icmp_error_rate")]
    pub icmp_error_rate: u32,
    /// Burst of the ICMP error token bucket: answers that may leave back to back (1..=10000).
    #[serde(default = "default_icmp_error_burst")]
    pub icmp_error_burst: u32,
}

impl Checker<'_> {
    pub(super) fn vrouter(&self, vr: &VrouterConfig) -> Result<(), ConfigError> {
        if let Some(why) = unicast_v4_problem(vr.router_ip) {
            return Err(self.table("vrouter", "router_ip", format!("{} is {why}", vr.router_ip)));
        }
        if let Some(why) = unicast_mac_problem(vr.router_mac) {
            return Err(self.table("vrouter", "router_mac", format!("{} is {why}", vr.router_mac)));
        }
        if vr.run_dir.as_os_str().is_empty() {
            return Err(self.table("vrouter", "run_dir", "must not be empty"));
        }
        if vr.control_token_file.is_some() && vr.trace_api.is_none() {
            return Err(self.table(
                "vrouter",
                "control_token_file",
                "needs vrouter.trace_api (the agent's HTTP address)",
            ));
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
}

fn default_summary() -> u32 {
    1
}
fn default_icmp_error_rate() -> u32 {
    100
}
fn default_icmp_error_burst() -> u32 {
    10
}
fn default_router_mac() -> Mac {
    Mac([0x00, 0x00, 0x5e, 0x00, 0x01, 0x00])
}
