//! Packet traces as the analytics API shows them: steps from every vRouter that exported a
//! trace id, merged into one story, and who may read which trace.
//!
//! # Order of the merged story
//!
//! Steps are ordered by packet number first. Within a packet, the steps of each vRouter stay
//! together, in that vRouter's own order (region generation, TSC, ring, position: exactly
//! the order `trace get` shows). The vRouters' clocks differ, so they are not interleaved by
//! time; they are ordered the way the packet crossed them: first the vRouter where the
//! packet did **not** come in from the fabric (no `decap` or `marked` step for this packet:
//! it entered from a VM vif there), then the vRouters that decapsulated it and continued the
//! trace from its mark. Ties (two vRouters of the same kind) go by the time of their first
//! step for the packet, then by name.
//!
//! # Access
//!
//! With no `[[tenant]]` and no `admin_token` configured, the trace API is open like the rest
//! of the analytics API. Otherwise every `/analytics/traces` request needs
//! `Authorization: Bearer <token>`: the operator's `admin_token` sees every trace, a tenant's
//! token sees only the traces whose request belongs to its project (another project's trace
//! id, or a trace of an operator request, answers 404 as if it did not exist).

use crate::config::TenantConfig;
use crate::store::{StoredStep, TraceRow};
use serde_json::{json, Map, Value};

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Every trace (open API, or the operator's token).
    All,
    /// The traces of this project only.
    Project(String),
}

impl Caller {
    /// The project filter for queries (`None`: all).
    pub fn project(&self) -> Option<&str> {
        match self {
            Caller::All => None,
            Caller::Project(p) => Some(p),
        }
    }

    /// Whether this caller may read a trace of `project`.
    pub fn may_read(&self, project: Option<&str>) -> bool {
        match self {
            Caller::All => true,
            Caller::Project(p) => project == Some(p.as_str()),
        }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("Authorization: a bearer token is required for the trace API (Authorization: Bearer <token>)")]
    Missing,
    /// Not `Bearer <token>`.
    #[error("Authorization: expected `Bearer <token>`")]
    Malformed,
    /// A token nobody has.
    #[error("Authorization: unknown token")]
    Unknown,
}

/// The configured tokens.
#[derive(Debug, Clone, Default)]
pub struct TraceAccess {
    tenants: Vec<TenantConfig>,
    admin_token: Option<String>,
}

/// Compares without stopping at the first difference.
fn same_token(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl TraceAccess {
    /// Access with these tenants and operator token.
    pub fn new(tenants: Vec<TenantConfig>, admin_token: Option<String>) -> TraceAccess {
        TraceAccess { tenants, admin_token }
    }

    /// Whether tokens are required.
    pub fn enforced(&self) -> bool {
        !self.tenants.is_empty() || self.admin_token.is_some()
    }

    /// The caller an `Authorization` header value makes.
    pub fn caller(&self, authorization: Option<&str>) -> Result<Caller, AuthError> {
        if !self.enforced() {
            return Ok(Caller::All);
        }
        let h = authorization.ok_or(AuthError::Missing)?;
        let token = match h.split_once(' ') {
            Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") && !t.trim().is_empty() => t.trim(),
            _ => return Err(AuthError::Malformed),
        };
        if self.admin_token.as_deref().is_some_and(|a| same_token(a, token)) {
            return Ok(Caller::All);
        }
        self.tenants
            .iter()
            .find(|t| same_token(&t.token, token))
            .map(|t| Caller::Project(t.name.clone()))
            .ok_or(AuthError::Unknown)
    }
}

fn came_from_fabric(steps: &[&StoredStep]) -> bool {
    steps.iter().any(|s| s.step == "decap" || s.step == "marked")
}

/// Orders `steps` as described in the module documentation.
pub fn order_steps(steps: &mut [StoredStep]) {
    use std::collections::BTreeMap;
    // Per (packet, host): (came from the fabric, first time) decides the host order.
    let mut rank: BTreeMap<(u32, &str), (bool, i64)> = BTreeMap::new();
    {
        let mut by: BTreeMap<(u32, &str), Vec<&StoredStep>> = BTreeMap::new();
        for s in steps.iter() {
            by.entry((s.pkt, s.host.as_str())).or_default().push(s);
        }
        for (k, v) in by {
            let first = v.iter().map(|s| s.time_us).min().unwrap_or(0);
            rank.insert(k, (came_from_fabric(&v), first));
        }
    }
    let rank: BTreeMap<(u32, String), (bool, i64)> =
        rank.into_iter().map(|((p, h), r)| ((p, h.to_owned()), r)).collect();
    steps.sort_by(|a, b| {
        let ra = rank[&(a.pkt, a.host.clone())];
        let rb = rank[&(b.pkt, b.host.clone())];
        (a.pkt, ra.0, ra.1, &a.host, a.generation, a.tsc, a.ring, a.seq).cmp(&(
            b.pkt,
            rb.0,
            rb.1,
            &b.host,
            b.generation,
            b.tsc,
            b.ring,
            b.seq,
        ))
    });
}

fn is_final(s: &StoredStep) -> bool {
    matches!(s.step.as_str(), "egress" | "drop" | "hold")
}

/// The summary of a trace from its ordered steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The vRouters, in the order the first packet crossed them.
    pub hosts: Vec<String>,
    /// Packets traced.
    pub packets: u32,
    /// Steps in all.
    pub steps: usize,
    /// `vrf V proto P src:sport -> dst:dport` of the first packet (as `trace list` shows it).
    pub flow: String,
    /// The 5-tuple and VRF as fields (absent parts omitted).
    pub flow_key: Value,
    /// Where the last packet went (as `trace list` shows it).
    pub disposition: String,
    /// The vRouter of that final step.
    pub disposition_host: Option<String>,
}

/// Summarises ordered steps.
pub fn summarize(steps: &[StoredStep]) -> Summary {
    let mut hosts: Vec<String> = Vec::new();
    for s in steps {
        if !hosts.contains(&s.host) {
            hosts.push(s.host.clone());
        }
    }
    let packets = steps.iter().map(|s| s.pkt).max().unwrap_or(0);
    let parse = steps.iter().find(|s| s.step == "parse");
    let addrs = steps.iter().find(|s| s.step == "addresses");
    let mut key = Map::new();
    if let Some(p) = parse {
        key.insert("vrf".into(), json!(p.vrf));
        key.insert("protocol".into(), json!(p.protocol));
        key.insert("src_port".into(), json!(p.sport));
        key.insert("dst_port".into(), json!(p.dport));
    }
    if let Some(a) = addrs {
        key.insert("src_ip".into(), json!(a.src_ip));
        key.insert("dst_ip".into(), json!(a.dst_ip));
    }
    let flow = match (parse, addrs) {
        (Some(p), Some(a)) if p.protocol.is_some() => format!(
            "vrf {} proto {} {}:{} -> {}:{}",
            p.vrf.unwrap_or(0),
            p.protocol.unwrap_or(0),
            a.src_ip.as_deref().unwrap_or("?"),
            p.sport.unwrap_or(0),
            a.dst_ip.as_deref().unwrap_or("?"),
            p.dport.unwrap_or(0)
        ),
        (Some(p), _) => format!("vrf {} {}", p.vrf.unwrap_or(0), p.detail.trim_start_matches("parsed ")),
        _ => "-".into(),
    };
    let fin = steps.iter().rev().filter(|s| s.pkt == packets).find(|s| is_final(s));
    let disposition = match fin {
        Some(s) if s.step == "egress" => format!("forwarded vif0/{}", s.vif.unwrap_or(0)),
        Some(s) if s.step == "drop" => format!("dropped ({})", s.detail.strip_prefix("dropped: ").unwrap_or(&s.detail)),
        Some(_) => "held".into(),
        None => "in progress".into(),
    };
    Summary {
        hosts,
        packets,
        steps: steps.len(),
        flow,
        flow_key: Value::Object(key),
        disposition,
        disposition_host: fin.map(|s| s.host.clone()),
    }
}

/// A trace id as the API shows it (the `trace` tool's form).
pub fn format_id(id: u64) -> String {
    format!("{id:016x}")
}

/// A trace id from the URL (hex, with or without `0x`).
pub fn parse_id(s: &str) -> Option<u64> {
    let h = s.trim().trim_start_matches("0x");
    if h.is_empty() || h.len() > 16 {
        return None;
    }
    u64::from_str_radix(h, 16).ok()
}

/// One row of `GET /analytics/traces`.
pub fn row_json(row: &TraceRow, ordered: &[StoredStep]) -> Value {
    let s = summarize(ordered);
    json!({
        "trace_id": format_id(row.trace_id),
        "request": row.request,
        "project": row.project,
        "hosts": s.hosts,
        "first_time_us": row.first_us,
        "last_time_us": row.last_us,
        "packets": s.packets,
        "steps": s.steps,
        "flow": s.flow,
        "flow_key": s.flow_key,
        "disposition": s.disposition,
        "disposition_host": s.disposition_host,
    })
}

fn step_json(s: &StoredStep) -> Value {
    let mut v = json!({
        "host": s.host,
        "source": if s.agent { "agent".to_owned() } else { format!("lcore {}", s.ring) },
        "step": s.step,
        "detail": s.detail,
        "time_us": s.time_us,
    });
    let m = v.as_object_mut().expect("object");
    let mut opt = |k: &str, val: Value| {
        if !val.is_null() {
            m.insert(k.into(), val);
        }
    };
    opt("vif", json!(s.vif));
    opt("drop_reason", json!(s.drop_reason));
    opt("flow", json!(s.flow));
    opt("action", json!(s.action));
    opt("rule", json!(s.rule));
    opt("protocol", json!(s.protocol));
    opt("src_port", json!(s.sport));
    opt("dst_port", json!(s.dport));
    opt("vrf", json!(s.vrf));
    opt("src_ip", json!(s.src_ip));
    opt("dst_ip", json!(s.dst_ip));
    v
}

/// `GET /analytics/traces/<id>`: the summary and the merged story, packet by packet.
pub fn detail_json(row: &TraceRow, ordered: &[StoredStep]) -> Value {
    let mut v = row_json(row, ordered);
    let mut packets: Vec<Value> = Vec::new();
    let mut cur: Option<(u32, Vec<Value>)> = None;
    for s in ordered {
        match &mut cur {
            Some((p, list)) if *p == s.pkt => list.push(step_json(s)),
            _ => {
                if let Some((p, list)) = cur.take() {
                    packets.push(json!({"packet": p, "steps": list}));
                }
                cur = Some((s.pkt, vec![step_json(s)]));
            }
        }
    }
    if let Some((p, list)) = cur {
        packets.push(json!({"packet": p, "steps": list}));
    }
    v["trace"] = Value::Array(packets);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(host: &str, pkt: u32, time_us: i64, tsc: u64, ring: u16, seq: u64, step: &str) -> StoredStep {
        StoredStep {
            host: host.into(),
            generation: 1,
            ring,
            seq,
            agent: ring == 1,
            pkt,
            time_us,
            tsc,
            step: step.into(),
            detail: format!("{step} on {host}"),
            ..Default::default()
        }
    }

    #[test]
    fn packets_then_hosts_in_crossing_order_then_each_hosts_own_order() {
        // Host "b" (the receiver) has a clock 5 s behind "a"; its name sorts first too.
        let mut steps = vec![
            st("b", 1, 1_000, 900, 0, 0, "ingress"),
            st("b", 1, 1_001, 901, 0, 1, "marked"),
            st("b", 1, 1_002, 902, 0, 2, "decap"),
            st("b", 1, 1_003, 903, 0, 3, "egress"),
            st("a", 2, 6_100, 200, 0, 10, "ingress"),
            st("a", 1, 6_000, 100, 0, 0, "ingress"),
            st("a", 1, 6_000, 105, 0, 1, "hold"),
            // The agent's policy step: the same µs as hold and release, between them by TSC,
            // on another ring (ordering by time, ring, position would put it after release).
            st("a", 1, 6_000, 107, 1, 0, "policy"),
            st("a", 1, 6_000, 110, 0, 2, "release"),
            st("a", 1, 6_001, 111, 0, 3, "encap"),
            st("a", 1, 6_001, 112, 0, 4, "egress"),
        ];
        order_steps(&mut steps);
        let got: Vec<(u32, &str, &str)> = steps.iter().map(|s| (s.pkt, s.host.as_str(), s.step.as_str())).collect();
        assert_eq!(
            got,
            [
                (1, "a", "ingress"),
                (1, "a", "hold"),
                (1, "a", "policy"),
                (1, "a", "release"),
                (1, "a", "encap"),
                (1, "a", "egress"),
                (1, "b", "ingress"),
                (1, "b", "marked"),
                (1, "b", "decap"),
                (1, "b", "egress"),
                (2, "a", "ingress"),
            ]
        );
        let s = summarize(&steps);
        assert_eq!(s.hosts, ["a", "b"]);
        assert_eq!((s.packets, s.steps), (2, 11));
        assert_eq!(s.disposition, "in progress", "packet 2 has no final step yet");
    }

    #[test]
    fn summary_flow_and_disposition() {
        let mut parse = st("a", 1, 1, 1, 0, 1, "parse");
        (parse.protocol, parse.sport, parse.dport, parse.vrf) = (Some(17), Some(4001), Some(9000), Some(1));
        let mut addrs = st("a", 1, 1, 2, 0, 2, "addresses");
        (addrs.src_ip, addrs.dst_ip) = (Some("192.168.1.3".into()), Some("192.168.1.4".into()));
        let mut drop = st("a", 1, 1, 3, 0, 3, "drop");
        drop.detail = "dropped: Flow Action Drop".into();
        let s = summarize(&[parse.clone(), addrs.clone(), drop]);
        assert_eq!(s.flow, "vrf 1 proto 17 192.168.1.3:4001 -> 192.168.1.4:9000");
        assert_eq!(s.disposition, "dropped (Flow Action Drop)");
        assert_eq!(s.flow_key["dst_port"], 9000);
        let mut out = st("b", 1, 1, 9, 0, 0, "egress");
        out.vif = Some(2);
        let s = summarize(&[parse, addrs, out]);
        assert_eq!((s.disposition.as_str(), s.disposition_host.as_deref()), ("forwarded vif0/2", Some("b")));
        assert_eq!(summarize(&[]).flow, "-");
    }

    #[test]
    fn detail_groups_steps_by_packet() {
        let row = TraceRow { trace_id: 0xabc, request: Some("r".into()), project: None, first_us: 1, last_us: 2 };
        let steps = vec![
            st("a", 1, 1, 1, 0, 0, "ingress"),
            st("a", 1, 1, 2, 1, 0, "policy"),
            st("a", 2, 2, 3, 0, 1, "ingress"),
        ];
        let v = detail_json(&row, &steps);
        assert_eq!(v["trace_id"], "0000000000000abc");
        assert_eq!(v["trace"][0]["packet"], 1);
        assert_eq!(v["trace"][0]["steps"][1]["source"], "agent");
        assert_eq!(v["trace"][0]["steps"][0]["source"], "lcore 0");
        assert_eq!(v["trace"][1]["steps"].as_array().unwrap().len(), 1);
        assert!(v["trace"][0]["steps"][0].get("vif").is_none(), "unset fields are omitted");
        assert_eq!(parse_id("0000000000000abc"), Some(0xabc));
        assert_eq!(parse_id("0xABC"), Some(0xabc));
        assert_eq!(parse_id("xyz"), None);
        assert_eq!(parse_id(""), None);
    }

    #[test]
    fn tokens_map_to_callers() {
        let open = TraceAccess::default();
        assert_eq!(open.caller(None), Ok(Caller::All), "no tenants: open");
        let t = |n: &str, tok: &str| TenantConfig { name: n.into(), token: tok.into() };
        let a = TraceAccess::new(
            vec![t("red", "red-token-123"), t("blue", "blue-token-456")],
            Some("admin-token-789".into()),
        );
        assert_eq!(a.caller(None), Err(AuthError::Missing));
        assert_eq!(a.caller(Some("Basic abc")), Err(AuthError::Malformed));
        assert_eq!(a.caller(Some("Bearer ")), Err(AuthError::Malformed));
        assert_eq!(a.caller(Some("Bearer nope")), Err(AuthError::Unknown));
        assert_eq!(a.caller(Some("Bearer red-token-12")), Err(AuthError::Unknown), "a prefix is not the token");
        assert_eq!(a.caller(Some("Bearer red-token-123")), Ok(Caller::Project("red".into())));
        assert_eq!(a.caller(Some("bearer blue-token-456")), Ok(Caller::Project("blue".into())));
        assert_eq!(a.caller(Some("Bearer admin-token-789")), Ok(Caller::All));
        let red = Caller::Project("red".into());
        assert!(red.may_read(Some("red")));
        assert!(!red.may_read(Some("blue")));
        assert!(!red.may_read(None), "an operator's trace is not a tenant's");
        assert!(Caller::All.may_read(None));
    }
}
